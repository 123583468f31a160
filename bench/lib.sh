# shellcheck shell=bash
# What the load benchmarks (bench/enc.sh, bench/host.sh) share: the run
# directory and its facts, the tools, PostgreSQL primary + replica with the
# generated fleet, the release bridge, oha. Sourced, not run; the sourcing
# script has `set -euo pipefail` and runs from the repository root.
#
#   bench_start NAME         bench_init NAME, bench_tmp, bench_tools
#   bench_init NAME          run directory bench/runs/<date>-NAME, facts.env
#   bench_tmp                temp dir, cleanup on exit (bridge, PostgreSQL)
#   bench_tools              oha into bench/.tools, release build copied to the temp dir
#   machine_facts VAR...     machine, commit, and the given knobs as param_*
#   pg_up                    primary + replica, Foreman fixture, fleet functions
#   grow_fleet N FACT TAG    N more hosts (timed into FACT), ANALYZE, host lists
#   bench_report             rewrite this benchmark's section of docs/benchmarks.md
#   start_bridge / stop_bridge / admin_post / metric / oha_run / alternate / ...

OHA_VERSION=1.16.0  # flags used by the benchmarks checked against this version's --help

# A PVC_* variable from the caller's shell (PVC_CONFIG, a log level ...) would
# silently change what is measured: start from none.
while read -r var; do unset "$var"; done < <(compgen -e | grep '^PVC_' || true)

log() { printf 'bench: %s\n' "$*" >&2; }
fact() { printf '%s=%s\n' "$1" "$2" >>"$FACTS"; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }
free_port() {
  # Ask the kernel for a free port; the tiny race until the bridge binds it
  # is acceptable for a benchmark.
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# bench_init NAME: RUN_DIR (raw results, git-ignored) and its FACTS file.
bench_init() {
  # The reports draw their charts with matplotlib (PyPI, into whichever
  # python3 runs them).
  if ! python3 -c 'import matplotlib' 2>/dev/null; then
    log "installing matplotlib from PyPI (the reports' charts)"
    python3 -m pip install --quiet --disable-pip-version-check matplotlib
  fi
  RUN_ID=$(date -u +%Y-%m-%dT%H-%M-%SZ)
  RUN_DIR=bench/runs/$RUN_ID${1:+-$1}
  mkdir -p "$RUN_DIR"
  FACTS=$RUN_DIR/facts.env
  : >"$FACTS"
}

# bench_start NAME: the run directory, the temp dir, the tools.
bench_start() {
  bench_init "$1"
  bench_tmp
  bench_tools
  fact bench "$1"
}

# bench_report: the end of a run: its section of docs/benchmarks.md.
bench_report() {
  fact loadavg_end "$(cut -d' ' -f1-3 /proc/loadavg)"
  python3 bench/report.py "$RUN_DIR" docs/benchmarks.md
  log "raw results in $RUN_DIR; summary in docs/benchmarks.md"
}

# ---------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------
bench_tools() {
  bash scripts/install-deps.sh
  OHA=bench/.tools/bin/oha
  if [ "$("$OHA" --version 2>/dev/null || true)" != "oha $OHA_VERSION" ]; then
    log "installing oha $OHA_VERSION into bench/.tools (once)"
    cargo install oha --locked --version "$OHA_VERSION" --root bench/.tools
  fi
  log "building (release)"
  cargo build --release -q -p pvc-bridge -p pvc-testkit
  # Copies: a build in the same tree during the run must not replace the
  # binary being measured (nor leave perf without its symbols).
  mkdir -p "$TMP/bin"
  cp target/release/pvc-pg target/release/pvc-bridge "$TMP/bin/"
  PVC_PG=$TMP/bin/pvc-pg
  # The PostgreSQL 15 client that install-deps.sh guarantees (psql on PATH may
  # be a wrapper or another version).
  PSQL=/usr/lib/postgresql/15/bin/psql
  [ -x "$PSQL" ] || PSQL=psql
  BRIDGE=$TMP/bin/pvc-bridge
}

# ---------------------------------------------------------------------------
# Cleanup: the bridge and both PostgreSQL servers stop whatever happens.
# ---------------------------------------------------------------------------
BRIDGE_PID=
stop_bridge() {
  if [ -n "$BRIDGE_PID" ]; then
    kill "$BRIDGE_PID" 2>/dev/null || true
    wait "$BRIDGE_PID" 2>/dev/null || true
    BRIDGE_PID=
  fi
}
# Background helpers a benchmark started (their pids): stopped on exit too.
BACKGROUND_PIDS=
cleanup() {
  local pid
  for pid in $BACKGROUND_PIDS; do kill "$pid" 2>/dev/null || true; done
  stop_bridge
  [ -z "${PVC_PG:-}" ] || "$PVC_PG" down --dir "$PG_DIR" >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
bench_tmp() {
  TMP=$(mktemp -d "${TMPDIR:-/tmp}/pvc-bench.XXXXXX")
  # pvc-pg runs PostgreSQL as user postgres when started as root: let it in.
  chmod 755 "$TMP"
  PG_DIR=$TMP/pg
  trap cleanup EXIT
  trap 'exit 130' INT TERM
}

# ---------------------------------------------------------------------------
# Machine and commit
# ---------------------------------------------------------------------------
# machine_facts VAR...: the machine, the commit, then each knob as param_VAR.
machine_facts() {
  fact date "$(date -u '+%Y-%m-%d %H:%M UTC')"
  fact run_dir "$RUN_DIR"
  fact commit "$(git rev-parse --short HEAD)"
  # Uncommitted changes to tracked files are built into the measured binary.
  # docs/ is not built into anything (an earlier benchmark of `make bench`
  # has just rewritten docs/benchmarks.md).
  fact dirty "$(git status --porcelain --untracked-files=no | awk '$2 !~ /^docs\// { print $2 }' | paste -sd' ')"
  fact nproc "$(nproc)"
  fact cpu "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
  fact ram_gib "$(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)"
  fact kernel "$(uname -r)"
  fact postgres "$("${PSQL:-/usr/lib/postgresql/15/bin/postgres}" --version | awk '{ print $3 }')"
  # Benchmarks without an HTTP load (bench/e2e.sh) have no oha.
  if [ -n "${OHA:-}" ]; then fact oha "$("$OHA" --version)"; fi
  fact loadavg_start "$(cut -d' ' -f1-3 /proc/loadavg)"
  # One core's speed right now (a shared VM's varies by the hour): SHA-256
  # throughput for about a second, so runs on other days can be compared.
  fact cpu_sha256_mb_s "$(python3 -c 'import hashlib, time
b = bytes(1 << 20); n = 0; t = time.perf_counter()
while time.perf_counter() - t < 1.0:
    hashlib.sha256(b).digest(); n += 1
print(round(n / (time.perf_counter() - t)))')"
  local var
  for var in "$@"; do
    fact "param_$var" "${!var}"
  done
}

# ---------------------------------------------------------------------------
# Database: primary + replica, fixture, generated fleet
# ---------------------------------------------------------------------------
# pg_sql TEXT: run SQL on the primary's foreman database; returns once the
# replica has replayed it.
pg_sql() {
  echo "$1" | "$PVC_PG" load --dir "$PG_DIR" --db foreman --sql - 2> >(tee -a "$RUN_DIR/pvc-pg.log" >&2)
}
pg_up() {
  log "starting PostgreSQL primary + replica in $PG_DIR"
  "$PVC_PG" up --dir "$PG_DIR" --foreman-db foreman >/dev/null 2> >(tee -a "$RUN_DIR/pvc-pg.log" >&2)
  set -a
  # shellcheck disable=SC1091
  . "$PG_DIR/env"
  set +a
  "$PVC_PG" load --dir "$PG_DIR" --db foreman --sql tests/fixtures/fleet/fleet.sql 2> >(tee -a "$RUN_DIR/pvc-pg.log" >&2)
}
# generate_fleet N FACT: N more generated hosts; the time goes to FACT. The
# timing includes replication, i.e. until the bridge can read the fleet.
generate_fleet() {
  local t
  log "generating $1 hosts"
  t=$(now)
  pg_sql "SELECT pvc_fleet_generate($1);"
  fact "$2" "$(since "$t")"
}
# analyze TAG: a bulk-loaded fleet has no planner statistics until autovacuum
# gets to it (a minute or more later), and the plans the bridge's queries get
# meanwhile (sequential scans) are not those of a live Foreman database. ANALYZE
# on the primary; the statistics replicate to the replica.
analyze() {
  local t
  t=$(now)
  pg_sql "ANALYZE;"
  fact "analyze_$1_s" "$(since "$t")"
}
# grow_fleet N FACT TAG: N more generated hosts (the time in FACT), ANALYZE,
# the host lists, their count as fact hosts_TAG.
grow_fleet() {
  generate_fleet "$1" "$2"
  analyze "$3"
  host_lists "$3"
  fact "hosts_$3" "$(wc -l <"$RUN_DIR/hosts-$3.txt")"
}
# host_lists TAG: every host of the replica, as names and as ENC paths.
host_lists() {
  "$PSQL" "$PVC_DATABASE__REPLICAS" -X -A -t -c "SELECT name FROM hosts ORDER BY id" >"$RUN_DIR/hosts-$1.txt"
  sed 's|^\(.*\)$|/node/\1?format=yml|' "$RUN_DIR/hosts-$1.txt" >"$RUN_DIR/paths-$1.txt"
}

# ---------------------------------------------------------------------------
# The bridge and the load generators
# ---------------------------------------------------------------------------
BASE=
BRIDGE_PORT=
# start_bridge LABEL [VAR=value ...] [-- SERVE_ARG ...]: start the release
# bridge on a free port with the given environment and `serve` arguments;
# wait for /healthz. Its log is RUN_DIR/bridge-LABEL.log.
start_bridge() {
  local label=$1 envs=()
  shift
  while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  BRIDGE_PORT=$(free_port)
  BASE=http://127.0.0.1:$BRIDGE_PORT
  # The admin API (/admin/...) needs the admin token (docs/security.md).
  ADMIN_TOKEN_FILE=${ADMIN_TOKEN_FILE:-$RUN_DIR/admin.token}
  [ -s "$ADMIN_TOKEN_FILE" ] || (umask 077 && head -c 32 /dev/urandom | base64 | tr -d '/+=\n' >"$ADMIN_TOKEN_FILE")
  env PVC_PLAIN_HTTP=true PVC_ACCESS__ADMIN_TOKEN_FILE="$ADMIN_TOKEN_FILE" "${envs[@]}" PVC_LISTEN="127.0.0.1:$BRIDGE_PORT" "$BRIDGE" serve "$@" >"$RUN_DIR/bridge-$label.log" 2>&1 &
  BRIDGE_PID=$!
  for _ in $(seq 300); do
    if curl -fsS "$BASE/healthz" >/dev/null 2>&1; then return 0; fi
    kill -0 "$BRIDGE_PID" 2>/dev/null || { log "bridge exited; see $RUN_DIR/bridge-$label.log"; exit 1; }
    sleep 0.1
  done
  log "bridge not healthy after 30 s; see $RUN_DIR/bridge-$label.log"
  exit 1
}
# admin_post PATH: POST to the admin API with the admin token.
admin_post() { curl -fsS -X POST -H "Authorization: Bearer $(cat "$ADMIN_TOKEN_FILE")" "$BASE$1"; }
metric() { curl -fsS "$BASE/metrics" | awk -v n="$1" '$1 == n { print $2 }'; }
proc_kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$BRIDGE_PID/status"; }
# oha_run NAME ARGS...: one oha run, JSON kept as RUN_DIR/NAME.json.
oha_run() {
  local name=$1; shift
  log "oha $* -> $name"
  "$OHA" --no-tui --output-format json "$@" >"$RUN_DIR/$name.json"
}
# alternate RUNNER NAME URLS: REPEATS closed-loop samples (CONNS connections,
# DURATION each) of /healthz and of the URLs in file URLS, in turn, named
# healthz-max-i and NAME-max-i; RUNNER is oha_run or a wrapper taking the same
# arguments. With --urls-from-file oha picks a random line for every request.
alternate() {
  local i
  for i in $(seq "$REPEATS"); do
    "$1" "healthz-max-$i" -c "$CONNS" -z "$DURATION" "$BASE/healthz"
    "$1" "$2-max-$i" -c "$CONNS" -z "$DURATION" --urls-from-file "$3"
  done
}
# urls PATHS OUT: the paths of a list as full URLs of the running bridge.
urls() { sed "s|^|$BASE|" "$1" >"$2"; }
# cpu: CPU seconds so far of the bridge and of the replica's PostgreSQL.
cpu() { python3 bench/cpu.py "$BRIDGE_PID" "$(head -n1 "$PG_DIR/replica/postmaster.pid")"; }
# malloc_stats PREFIX [LOG_LABEL]: glibc's own account (bytes in use vs. taken from the
# system), to tell live data from allocator overhead in the RSS. gdb makes the
# bridge call malloc_stats(), which prints to the bridge's stderr (its log).
# Facts PREFIX_malloc_system/_in_use; the log is bridge-LOG_LABEL.log
# (default PREFIX). Skipped without gdb or ptrace permission.
malloc_stats() {
  local log=$RUN_DIR/bridge-${2:-$1}.log seen
  command -v gdb >/dev/null || return 0
  # Only what this call prints counts (the log may hold earlier accounts).
  # gdb's exit status is not reliable here, and a call now and then prints
  # nothing: try twice; no output simply means no numbers.
  seen=$(wc -l <"$log")
  for _ in 1 2; do
    timeout 120 gdb -p "$BRIDGE_PID" -batch -ex 'call (void) malloc_stats()' >/dev/null 2>&1 || true
    sleep 0.5
    [ "$(tail -n +"$((seen + 1))" "$log" | grep -c '^Total (incl. mmap):' || true)" = 0 ] || break
  done
  tail -n +"$((seen + 1))" "$log" | awk '/^Total \(incl. mmap\):/ { t = 1; next }
       t && /system bytes/ { print "'"$1"'_malloc_system=" $NF }
       t && /in use bytes/ { print "'"$1"'_malloc_in_use=" $NF; t = 0 }' | tail -n 2 >>"$FACTS"
}
