#!/usr/bin/env bash
# `make bench`: the ENC load benchmark. NOT a test: it measures, prints a
# summary and rewrites docs/benchmarks.md; nothing here fails on a slow number.
#
# One run, everything on this machine and on 127.0.0.1 only:
#   1. a PostgreSQL primary + streaming replica (pvc-pg) in a temp dir, the
#      Foreman fixture grown to a 10K-host fleet (tests/fixtures/fleet);
#   2. the release bridge (default workers) reading from the replica;
#   3. /healthz max req/s (the baseline), warm ENC max req/s, warm ENC and
#      /healthz latency at a fixed open-loop rate, cold-cache latency (each
#      host's first request, so each is a replica load);
#   4. memory: the fleet grown to 100K hosts, every document cached, RSS
#      against the documents' size; then the same under a 50 MiB byte budget.
# Raw results (oha JSON, driver JSON, bridge logs) go to bench/runs/<date>/
# (git-ignored); bench/report.py turns them into docs/benchmarks.md.
#
# Knobs (environment): FLEET=10000 BIG_FLEET=100000 DURATION=10s CONNS=64 REPEATS=3
# RATE=5000 COLD_RATE=1000 COLD_HOSTS=5000 BUDGET_BYTES=52428800
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

FLEET=${FLEET:-10000}            # generated hosts for the throughput/latency part
BIG_FLEET=${BIG_FLEET:-100000}   # generated hosts for the memory part
DURATION=${DURATION:-10s}        # each oha run
CONNS=${CONNS:-64}               # oha connections
REPEATS=${REPEATS:-3}            # alternating /healthz and ENC max-throughput samples
RATE=${RATE:-5000}               # open-loop rate for the warm latency runs
COLD_RATE=${COLD_RATE:-1000}     # open-loop rate for the cold run
COLD_HOSTS=${COLD_HOSTS:-5000}   # distinct hosts requested once in the cold run
WARM_CONNS=${WARM_CONNS:-16}     # connections used to warm the cache (= the bridge's pool size)
BUDGET_BYTES=${BUDGET_BYTES:-52428800}  # cache.max_bytes for the budget run (50 MiB)
OHA_VERSION=1.16.0               # flags below checked against this version's --help

# A PVC_* variable from the caller's shell (PVC_CONFIG, a log level ...) would
# silently change what is measured: start from none.
while read -r var; do unset "$var"; done < <(compgen -e | grep '^PVC_' || true)

RUN_ID=$(date -u +%Y-%m-%dT%H-%M-%SZ)
RUN_DIR=bench/runs/$RUN_ID
mkdir -p "$RUN_DIR"
FACTS=$RUN_DIR/facts.env
: >"$FACTS"

log() { printf 'bench: %s\n' "$*" >&2; }
fact() { printf '%s=%s\n' "$1" "$2" >>"$FACTS"; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }
free_port() {
  # Ask the kernel for a free port; the tiny race until the bridge binds it
  # is acceptable for a benchmark.
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------
bash scripts/install-deps.sh
OHA=bench/.tools/bin/oha
if [ "$("$OHA" --version 2>/dev/null || true)" != "oha $OHA_VERSION" ]; then
  log "installing oha $OHA_VERSION into bench/.tools (once)"
  cargo install oha --locked --version "$OHA_VERSION" --root bench/.tools
fi
log "building (release)"
cargo build --release -q -p pvc-bridge -p pvc-testkit
PVC_PG=target/release/pvc-pg
# The PostgreSQL 15 client that install-deps.sh guarantees (psql on PATH may
# be a wrapper or another version).
PSQL=/usr/lib/postgresql/15/bin/psql
[ -x "$PSQL" ] || PSQL=psql
BRIDGE=target/release/pvc-bridge

# ---------------------------------------------------------------------------
# Cleanup: the bridge and both PostgreSQL servers stop whatever happens.
# ---------------------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/pvc-bench.XXXXXX")
# pvc-pg runs PostgreSQL as user postgres when started as root: let it in.
chmod 755 "$TMP"
PG_DIR=$TMP/pg
BRIDGE_PID=
stop_bridge() {
  if [ -n "$BRIDGE_PID" ]; then
    kill "$BRIDGE_PID" 2>/dev/null || true
    wait "$BRIDGE_PID" 2>/dev/null || true
    BRIDGE_PID=
  fi
}
cleanup() {
  stop_bridge
  "$PVC_PG" down --dir "$PG_DIR" >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------
# Helpers around the bridge
# ---------------------------------------------------------------------------
BASE=
BRIDGE_PORT=
# start_bridge LABEL [VAR=value ...]: start the release bridge on a free port
# with the common settings plus the given ones; wait for /healthz.
start_bridge() {
  local label=$1; shift
  BRIDGE_PORT=$(free_port)
  BASE=http://127.0.0.1:$BRIDGE_PORT
  env "$@" PVC_LISTEN="127.0.0.1:$BRIDGE_PORT" "$BRIDGE" serve >"$RUN_DIR/bridge-$label.log" 2>&1 &
  BRIDGE_PID=$!
  for _ in $(seq 300); do
    if curl -fsS "$BASE/healthz" >/dev/null 2>&1; then return 0; fi
    kill -0 "$BRIDGE_PID" 2>/dev/null || { log "bridge exited; see $RUN_DIR/bridge-$label.log"; exit 1; }
    sleep 0.1
  done
  log "bridge not healthy after 30 s; see $RUN_DIR/bridge-$label.log"
  exit 1
}
metric() { curl -fsS "$BASE/metrics" | awk -v n="$1" '$1 == n { print $2 }'; }
proc_kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$BRIDGE_PID/status"; }
# oha_run NAME ARGS...: one oha run, JSON kept as RUN_DIR/NAME.json.
oha_run() {
  local name=$1; shift
  log "oha $* -> $name"
  "$OHA" --no-tui --output-format json "$@" >"$RUN_DIR/$name.json"
}
# drive NAME ARGS...: bench/drive.py (each path once, in order), JSON kept.
drive() {
  local name=$1; shift
  log "drive.py $* -> $name"
  python3 bench/drive.py --port "$BRIDGE_PORT" "$@" >"$RUN_DIR/$name.json"
}
cpu() { python3 bench/cpu.py "$BRIDGE_PID" "$(head -n1 "$PG_DIR/replica/postmaster.pid")"; }
# Table scans on the replica (seq scans and rows they read), to show where a
# cold load's database time goes.
table_stats() {
  "$PSQL" "$PVC_DATABASE__REPLICAS" -X -A -t -F ' ' -c \
    "SELECT relname, seq_scan, seq_tup_read, coalesce(idx_scan, 0) FROM pg_stat_user_tables ORDER BY relname"
}
# moka updates its entry count and weighted size lazily, on later cache
# operations: touch the cache a little, then read until two reads agree.
settled_cache_metrics() {
  local prev= cur=
  for _ in $(seq 20); do
    sleep 0.5
    python3 bench/drive.py --port "$BRIDGE_PORT" --concurrency 4 --paths <(head -n 200 "$1") >/dev/null
    cur="$(metric pvc_bridge_enc_cache_entries) $(metric pvc_bridge_enc_cache_bytes)"
    [ "$cur" = "$prev" ] && break
    prev=$cur
  done
  echo "$cur"
}
# malloc_stats LABEL: glibc's own account (bytes in use vs. taken from the
# system), to tell live data from allocator overhead in the RSS. gdb makes the
# bridge call malloc_stats(), which prints to the bridge's stderr (its log).
# Skipped without gdb or ptrace permission.
malloc_stats() {
  local log=$RUN_DIR/bridge-$1.log
  command -v gdb >/dev/null || return 0
  # (gdb's exit status is not reliable here; no output simply means no numbers)
  timeout 120 gdb -p "$BRIDGE_PID" -batch -ex 'call (void) malloc_stats()' >/dev/null 2>&1 || true
  sleep 0.5
  awk '/^Total \(incl. mmap\):/ { t = 1; next }
       t && /system bytes/ { print "'"$1"'_malloc_system=" $NF }
       t && /in use bytes/ { print "'"$1"'_malloc_in_use=" $NF; t = 0 }' "$log" | tail -n 2 >>"$FACTS"
}
# analyze TAG: a bulk-loaded fleet has no planner statistics until autovacuum
# gets to it (a minute or more later), and the plans the bridge's queries get
# meanwhile (sequential scans) are not those of a live Foreman database. ANALYZE
# on the primary; the statistics replicate to the replica.
analyze() {
  local t
  t=$(now)
  echo "ANALYZE;" | "$PVC_PG" load --dir "$PG_DIR" --db foreman --sql - 2> >(tee -a "$RUN_DIR/pvc-pg.log" >&2)
  fact "analyze_$1_s" "$(since "$t")"
}
# host_lists TAG: every host of the replica, as paths and as full URLs.
host_lists() {
  "$PSQL" "$PVC_DATABASE__REPLICAS" -X -A -t -c "SELECT name FROM hosts ORDER BY id" >"$RUN_DIR/hosts-$1.txt"
  sed 's|^\(.*\)$|/node/\1?format=yml|' "$RUN_DIR/hosts-$1.txt" >"$RUN_DIR/paths-$1.txt"
}
urls() { sed "s|^|$BASE|" "$1" >"$2"; }

# ---------------------------------------------------------------------------
# Machine and commit
# ---------------------------------------------------------------------------
fact date "$(date -u '+%Y-%m-%d %H:%M UTC')"
fact run_dir "$RUN_DIR"
fact commit "$(git rev-parse --short HEAD)"
# Uncommitted changes to tracked files are built into the measured binary.
fact dirty "$(git status --porcelain --untracked-files=no | awk '{ print $2 }' | paste -sd' ')"
fact nproc "$(nproc)"
fact cpu "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
fact ram_gib "$(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)"
fact kernel "$(uname -r)"
fact postgres "$("$PSQL" --version | awk '{ print $3 }')"
fact oha "$("$OHA" --version)"
fact loadavg_start "$(cut -d' ' -f1-3 /proc/loadavg)"
for var in FLEET BIG_FLEET DURATION CONNS REPEATS RATE COLD_RATE COLD_HOSTS WARM_CONNS BUDGET_BYTES; do
  fact "param_$var" "${!var}"
done

# ---------------------------------------------------------------------------
# Database: primary + replica, fixture, 10K fleet
# ---------------------------------------------------------------------------
log "starting PostgreSQL primary + replica in $PG_DIR"
"$PVC_PG" up --dir "$PG_DIR" --foreman-db foreman >/dev/null 2> >(tee -a "$RUN_DIR/pvc-pg.log" >&2)
set -a
# shellcheck disable=SC1091
. "$PG_DIR/env"
set +a
"$PVC_PG" load --dir "$PG_DIR" --db foreman --sql tests/fixtures/fleet/fleet.sql 2> >(tee -a "$RUN_DIR/pvc-pg.log" >&2)
log "generating $FLEET hosts"
t=$(now)
# `pvc-pg load` returns once the replica has replayed it: the timing includes
# replication, i.e. until the bridge can read the fleet.
echo "SELECT pvc_fleet_generate($FLEET);" | "$PVC_PG" load --dir "$PG_DIR" --db foreman --sql - 2> >(tee -a "$RUN_DIR/pvc-pg.log" >&2)
fact fleet_gen_s "$(since "$t")"
analyze small
host_lists small
fact hosts_small "$(wc -l <"$RUN_DIR/hosts-small.txt")"

# Common bridge settings. The 300 s default document TTL would expire the
# warmed set in the middle of the run, so it is raised: this measures the
# cache, not the backstop.
export PVC_ENC__FOREMAN_URL=https://localhost.localdomain.net  # the fixture's foreman_url
export PVC_CACHE__TTL_SECS=3600

start_bridge small
fact bridge_workers "default ($(nproc) = one per core)"
fact rss_idle_kb "$(proc_kb VmRSS)"
urls "$RUN_DIR/paths-small.txt" "$RUN_DIR/urls-small.txt"

# ---------------------------------------------------------------------------
# Throughput, closed loop: /healthz (baseline), then the warm ENC
# ---------------------------------------------------------------------------
# Warm every host once (this is also each host's first load, layers cold).
cpu >"$RUN_DIR/cpu-warm-small-before.json"
drive warm-small --concurrency "$WARM_CONNS" --paths "$RUN_DIR/paths-small.txt"
cpu >"$RUN_DIR/cpu-warm-small-after.json"
fact loads_after_warm_small "$(metric pvc_bridge_enc_loads_total)"

# Two cores shared by oha, the bridge and whatever else runs on the machine:
# one 10 s sample is noisy, so /healthz and the ENC alternate REPEATS times
# and the report takes the median of each (and lists every sample).
loads=$(metric pvc_bridge_enc_loads_total)
for i in $(seq "$REPEATS"); do
  oha_run "healthz-max-$i" -c "$CONNS" -z "$DURATION" "$BASE/healthz"
  # --urls-from-file: oha picks a random line of the file for every request.
  oha_run "enc-max-$i" -c "$CONNS" -z "$DURATION" --urls-from-file "$RUN_DIR/urls-small.txt"
done
fact enc_max_new_loads "$(( $(metric pvc_bridge_enc_loads_total) - loads ))"

# Documents measured: one clone of each golden host (clone batch 1), i.e.
# every shape the fleet repeats.
mkdir -p "$RUN_DIR/docs"
grep -- '-c000001' "$RUN_DIR/hosts-small.txt" | while read -r host; do
  curl -fsS "$BASE/node/$host?format=yml" -o "$RUN_DIR/docs/$host.yml"
done

# ---------------------------------------------------------------------------
# Latency at a fixed open-loop rate (warm cache)
# ---------------------------------------------------------------------------
# -q: the rate; --latency-correction: latency counted from the scheduled send
# time, not from when a busy connection got round to it (coordinated omission).
oha_run healthz-rate -c "$CONNS" -q "$RATE" --latency-correction -z "$DURATION" "$BASE/healthz"
loads=$(metric pvc_bridge_enc_loads_total)
oha_run enc-rate -c "$CONNS" -q "$RATE" --latency-correction -z "$DURATION" \
  --urls-from-file "$RUN_DIR/urls-small.txt"
fact enc_rate_new_loads "$(( $(metric pvc_bridge_enc_loads_total) - loads ))"

# ---------------------------------------------------------------------------
# Cold cache: each host's FIRST request, open loop
# ---------------------------------------------------------------------------
# oha cannot send each URL exactly once, so bench/drive.py does: the list in a
# fixed random order (puppet agents do not arrive in database order), request
# i due at t0 + i/COLD_RATE, latency from that due time.
python3 -c "import random, sys; h = open(sys.argv[1]).read().split(); random.Random(1).shuffle(h); print('\n'.join(h[:int(sys.argv[2])]))" \
  "$RUN_DIR/paths-small.txt" "$COLD_HOSTS" >"$RUN_DIR/paths-cold.txt"
fact cold_hosts "$(wc -l <"$RUN_DIR/paths-cold.txt")"
# The driver's own overhead at that rate: /healthz, same number of requests.
echo /healthz >"$RUN_DIR/paths-healthz.txt"
drive healthz-cold-rate --rate "$COLD_RATE" --paths "$RUN_DIR/paths-healthz.txt" --repeat "$COLD_HOSTS"

curl -fsS -X POST "$BASE/admin/cache/invalidate?all=true"
fact cold_loads_before "$(metric pvc_bridge_enc_loads_total)"
fact cold_layer_loads_before "$(metric pvc_bridge_enc_layer_loads_total)"
table_stats >"$RUN_DIR/tables-cold-before.txt"
cpu >"$RUN_DIR/cpu-cold-before.json"
drive cold-rate --rate "$COLD_RATE" --paths "$RUN_DIR/paths-cold.txt" --timeline "$RUN_DIR/cold-timeline.txt"
cpu >"$RUN_DIR/cpu-cold-after.json"
table_stats >"$RUN_DIR/tables-cold-after.txt"
fact cold_loads_after "$(metric pvc_bridge_enc_loads_total)"
fact cold_layer_loads_after "$(metric pvc_bridge_enc_layer_loads_total)"

# The same hosts again with only their documents dropped: the shared layers
# they use are loaded, as on a bridge that has been running (a new host, or
# one whose document was invalidated). Same rate, same order.
curl -fsS -X POST "$BASE/admin/cache/invalidate?documents=true"
fact warmlayers_loads_before "$(metric pvc_bridge_enc_loads_total)"
fact warmlayers_layer_loads_before "$(metric pvc_bridge_enc_layer_loads_total)"
drive cold-warm-layers --rate "$COLD_RATE" --paths "$RUN_DIR/paths-cold.txt"
fact warmlayers_loads_after "$(metric pvc_bridge_enc_loads_total)"
fact warmlayers_layer_loads_after "$(metric pvc_bridge_enc_layer_loads_total)"

# One cold request at a time (no queueing), on hosts not requested since the
# invalidation, layers now warm: the cost of one host's load by itself.
python3 -c "import random, sys; h = open(sys.argv[1]).read().split(); random.Random(1).shuffle(h); print('\n'.join(h[-200:]))" \
  "$RUN_DIR/paths-small.txt" >"$RUN_DIR/paths-single.txt"
drive cold-single --concurrency 1 --paths "$RUN_DIR/paths-single.txt"
stop_bridge

# ---------------------------------------------------------------------------
# Memory: 100K hosts, every document cached
# ---------------------------------------------------------------------------
log "generating $(( BIG_FLEET - FLEET )) more hosts (fleet of $BIG_FLEET)"
t=$(now)
echo "SELECT pvc_fleet_generate($(( BIG_FLEET - FLEET )));" | "$PVC_PG" load --dir "$PG_DIR" --db foreman --sql - 2> >(tee -a "$RUN_DIR/pvc-pg.log" >&2)
fact big_fleet_gen_s "$(since "$t")"
analyze big
host_lists big
fact hosts_big "$(wc -l <"$RUN_DIR/hosts-big.txt")"
# Bytes of the cache keys (the requested names), part of the bridge's weight.
fact key_bytes_big "$(tr -d '\n' <"$RUN_DIR/hosts-big.txt" | wc -c)"

# memory_run LABEL [VAR=value ...]: start, warm every host, read the numbers.
memory_run() {
  local label=$1; shift
  start_bridge "$label" "$@"
  fact "${label}_rss_idle_kb" "$(proc_kb VmRSS)"
  t=$(now)
  drive "warm-$label" --concurrency "$WARM_CONNS" --paths "$RUN_DIR/paths-big.txt"
  fact "${label}_warm_s" "$(since "$t")"
  read -r entries bytes < <(settled_cache_metrics "$RUN_DIR/paths-big.txt")
  fact "${label}_entries" "$entries"
  fact "${label}_bytes" "$bytes"
  fact "${label}_loads" "$(metric pvc_bridge_enc_loads_total)"
  fact "${label}_rss_kb" "$(proc_kb VmRSS)"
  fact "${label}_hwm_kb" "$(proc_kb VmHWM)"
  malloc_stats "$label"
  stop_bridge
}
# A budget far above the fleet's size, so every document stays cached.
memory_run full PVC_CACHE__MAX_BYTES=4294967296
memory_run budget PVC_CACHE__MAX_BYTES="$BUDGET_BYTES"

fact loadavg_end "$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------
python3 bench/report.py "$RUN_DIR" docs/benchmarks.md
log "raw results in $RUN_DIR; summary in docs/benchmarks.md"
