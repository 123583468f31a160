#!/usr/bin/env bash
# `make bench` (then bench/host.sh): the ENC load benchmark. NOT a test: it
# measures, prints a summary and rewrites the ENC section of
# docs/benchmarks.md; nothing here fails on a slow number.
#
# One run, everything on this machine and on 127.0.0.1 only:
#   1. a PostgreSQL primary + streaming replica (pvc-pg) in a temp dir, the
#      Foreman fixture grown to a 10K-host fleet (tests/fixtures/fleet);
#   2. the release bridge (default workers) reading from the replica;
#   3. /healthz max req/s (the baseline), warm ENC max req/s, warm ENC and
#      /healthz latency at a fixed open-loop rate, cold-cache latency (each
#      host's first request, so each is a replica load);
#      then the uncached baseline: the same bridge with `cache.documents =
#      false`, every request built by SQL (max req/s, latency at COLD_RATE);
#   4. memory: the fleet grown to 100K hosts, every document cached, RSS
#      against the documents' size; then the same under a 50 MiB byte budget.
# Raw results (oha JSON, driver JSON, bridge logs) go to bench/runs/<date>-enc/
# (git-ignored); bench/report.py turns them into the ENC section of
# docs/benchmarks.md. bench/host.sh measures `/host`; `make bench` runs both.
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
# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_start enc

# ---------------------------------------------------------------------------
# Helpers of this benchmark (the shared ones are in bench/lib.sh)
# ---------------------------------------------------------------------------
# drive NAME ARGS...: bench/drive.py (each path once, in order), JSON kept.
drive() {
  local name=$1; shift
  log "drive.py $* -> $name"
  python3 bench/drive.py --port "$BRIDGE_PORT" "$@" >"$RUN_DIR/$name.json"
}
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

machine_facts FLEET BIG_FLEET DURATION CONNS REPEATS RATE COLD_RATE COLD_HOSTS WARM_CONNS BUDGET_BYTES

# ---------------------------------------------------------------------------
# Database: primary + replica, fixture, 10K fleet
# ---------------------------------------------------------------------------
pg_up
grow_fleet "$FLEET" fleet_gen_s small

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
alternate oha_run enc "$RUN_DIR/urls-small.txt"
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
# The warm ENC at the cold runs' rate too: the same rate as the uncached
# baseline below.
oha_run enc-rate-low -c "$CONNS" -q "$COLD_RATE" --latency-correction -z "$DURATION" \
  --urls-from-file "$RUN_DIR/urls-small.txt"

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

admin_post "/admin/cache/invalidate?all=true"
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
admin_post "/admin/cache/invalidate?documents=true"
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
# Baseline: an ENC built by SQL on every request (no document cache)
# ---------------------------------------------------------------------------
# The same bridge with `cache.documents = false`: each request runs the
# host's queries on the replica and builds the document, as an ENC without a
# cache does (the shared layers stay in memory, so this is the best case of
# one). Same URLs, same connections, same rates as the warm runs above.
start_bridge uncached PVC_CACHE__DOCUMENTS=false
urls "$RUN_DIR/paths-small.txt" "$RUN_DIR/urls-uncached.txt"  # this bridge's port
drive uncached-prime --concurrency 4 --paths <(head -n 100 "$RUN_DIR/paths-small.txt")
loads=$(metric pvc_bridge_enc_loads_total)
cpu >"$RUN_DIR/cpu-uncached-before.json"
oha_run uncached-max -c "$CONNS" -z "$DURATION" --urls-from-file "$RUN_DIR/urls-uncached.txt"
cpu >"$RUN_DIR/cpu-uncached-after.json"
fact uncached_max_loads "$(( $(metric pvc_bridge_enc_loads_total) - loads ))"
oha_run uncached-rate -c "$CONNS" -q "$COLD_RATE" --latency-correction -z "$DURATION" \
  --urls-from-file "$RUN_DIR/urls-uncached.txt"
stop_bridge

# ---------------------------------------------------------------------------
# Memory: 100K hosts, every document cached
# ---------------------------------------------------------------------------
grow_fleet "$(( BIG_FLEET - FLEET ))" big_fleet_gen_s big
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

bench_report
