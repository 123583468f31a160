#!/usr/bin/env bash
# `make bench-host`, and `make bench` after bench/enc.sh: agents' run-decision
# polls (`GET /host?fqdn=`) against a 100K-host fleet. A measurement, not a
# test: the numbers go to the `/host` section of docs/benchmarks.md, and a
# slow one fails nothing.
#
# All local (127.0.0.1), in this order:
#   1. pvc-pg's primary + replica with the fixture and BIG_FLEET generated
#      hosts (the generation is timed), then `pvc-bridge migrate`;
#   2. the release bridge, configured (TOML: servers exist only there) with
#      SERVERS static puppetservers of JRUBIES each, scheduler defaults; how
#      long until its host directory holds every host, and its RSS then;
#   3. closed loop: /healthz (the baseline) and /host in turn, REPEATS pairs,
#      /host URLs for every host in oha's --urls-from-file;
#   4. open loop at HOST_RATE with --latency-correction, /healthz then /host,
#      each run long enough to include directory reloads;
#   5. when perf is there, a CPU profile and an off-CPU trace of the bridge
#      under that /host load, around a directory reload (not measured runs).
# Before and after every run /metrics is saved, so the report can say how many
# polls were granted (each grant writes one lease on the primary).
# Raw results go to bench/runs/<date>-host/ (git-ignored); bench/report.py
# turns them into the `/host` section of docs/benchmarks.md.
#
# Knobs (environment): BIG_FLEET=100000 DURATION=10s CONNS=64 REPEATS=5
# HOST_RATE=2000 RATE_DURATION=60s SERVERS=4 JRUBIES=24 PROFILE_DURATION=35s
# FOREMAN_EDIT_SECS=10
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

BIG_FLEET=${BIG_FLEET:-100000}     # generated hosts (plus the fixture's 40)
DURATION=${DURATION:-10s}          # each closed-loop oha run
CONNS=${CONNS:-64}                 # oha connections
REPEATS=${REPEATS:-5}              # alternating /healthz and /host max-throughput samples
HOST_RATE=${HOST_RATE:-2000}       # open-loop rate (100K agents polling every 60 s ≈ 1,700/s)
# 60 s: at the default scheduler.hosts_refresh_secs (30) each open-loop run
# spans two directory reloads, whose cost belongs in the tail.
RATE_DURATION=${RATE_DURATION:-60s}
SERVERS=${SERVERS:-4}              # static puppetservers in the configuration
JRUBIES=${JRUBIES:-24}             # JRubies of each
PROFILE_DURATION=${PROFILE_DURATION:-35s}  # perf record under /host load (open loop); 0 skips it
# The bridge rebuilds its directory when a check (every hosts_refresh_secs,
# 30 s) finds what it reads changed. To measure polls during rebuilds, every
# FOREMAN_EDIT_SECS one parameter is saved on the primary (as an edit in
# Foreman would), so every check rebuilds; 0: a Foreman where nothing the
# directory reads changes (the bridge then rebuilds only every tenth check).
FOREMAN_EDIT_SECS=${FOREMAN_EDIT_SECS:-10}

# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_start host
machine_facts BIG_FLEET DURATION CONNS REPEATS HOST_RATE RATE_DURATION SERVERS JRUBIES PROFILE_DURATION \
  FOREMAN_EDIT_SECS

# == Helpers of this benchmark (the shared ones are in bench/lib.sh) ==
# foreman_edits: in the background until the run ends, one parameter saved every
# FOREMAN_EDIT_SECS (see above); each save is logged in foreman-edits.txt.
EDITS_PID=
foreman_edits() {
  [ "$FOREMAN_EDIT_SECS" != 0 ] || return 0
  (
    # (and never outlives this script)
    while sleep "$FOREMAN_EDIT_SECS" && kill -0 $$ 2>/dev/null; do
      "$PSQL" "$PVC_DATABASE__PRIMARY" -X -q -A -t -c \
        "UPDATE parameters SET updated_at = now() WHERE id = (SELECT min(id) FROM parameters) RETURNING extract(epoch FROM now())" \
        >>"$RUN_DIR/foreman-edits.txt" 2>&1 || true
    done
  ) &
  EDITS_PID=$!
  BACKGROUND_PIDS="$BACKGROUND_PIDS $EDITS_PID"
}
stop_foreman_edits() {
  if [ -n "$EDITS_PID" ]; then
    kill "$EDITS_PID" 2>/dev/null || true
    wait "$EDITS_PID" 2>/dev/null || true
    EDITS_PID=
  fi
}
primary_cpu() { python3 bench/cpu.py "$BRIDGE_PID" "$(head -n1 "$PG_DIR/primary/postmaster.pid")"; }
# measure NAME ARGS...: one oha run with /metrics, CPU (bridge, replica,
# primary, oha, the whole machine) and wall-clock time saved before and after it. FORMAT (default
# json) is oha's output format; csv keeps every request (start, latency).
measure() {
  local name=$1; shift
  curl -fsS "$BASE/metrics" >"$RUN_DIR/$name.metrics-before.txt"
  cpu >"$RUN_DIR/$name.cpu-before.json"
  primary_cpu >"$RUN_DIR/$name.cpu-primary-before.json"
  local start
  start=$(now)
  # `times` (a builtin: no subshell) adds up the CPU of finished children:
  # around oha alone, that is oha's own.
  times >"$RUN_DIR/$name.times-before.txt"
  if [ "${FORMAT:-json}" = csv ]; then
    log "oha $* -> $name (csv)"
    "$OHA" --no-tui --output-format csv "$@" >"$RUN_DIR/$name.csv"
  else
    oha_run "$name" "$@"
  fi
  times >"$RUN_DIR/$name.times-after.txt"
  printf '%s %s %s\n' "$name" "$start" "$(now)" >>"$RUN_DIR/windows.txt"
  cpu >"$RUN_DIR/$name.cpu-after.json"
  primary_cpu >"$RUN_DIR/$name.cpu-primary-after.json"
  curl -fsS "$BASE/metrics" >"$RUN_DIR/$name.metrics-after.txt"
}

# == Database: primary + replica, fixture, the fleet, the bridge's schema ==
pg_up
grow_fleet "$BIG_FLEET" fleet_gen_s big
t=$(now)
"$BRIDGE" migrate >"$RUN_DIR/migrate.log" 2>&1
fact migrate_s "$(since "$t")"

# Static servers (no status_url, not pushed): always up at their JRubies, so
# grants follow the scheduler's rate, target_utilization x JRubies / run cost
# per server, not what a live puppetserver would say.
CONFIG=$RUN_DIR/bridge.toml
{
  for i in $(seq "$SERVERS"); do
    printf '[[scheduler.servers]]\nname = "puppet%s.bench.test"\njrubies = %s\n\n' "$i" "$JRUBIES"
  done
} >"$CONFIG"

# == The bridge: start, directory load, memory ==
# JSON logs, the run-decision service at debug: every directory load is
# logged with its duration, and the report places them on the runs' timeline.
t=$(now)
start_bridge host PVC_LOG__FORMAT=json PVC_LOG__LEVEL=info,pvc_bridge::runs=debug -- --config "$CONFIG"
fact healthy_s "$(since "$t")"
fact bridge_workers "default ($(nproc) = one per core)"
hosts=$(wc -l <"$RUN_DIR/hosts-big.txt")
loaded=
for _ in $(seq 3000); do
  if [ "$(metric pvc_bridge_hosts)" = "$hosts" ]; then loaded=1; break; fi
  sleep 0.1
done
fact directory_ready_s "$(since "$t")"
[ -n "$loaded" ] || log "the directory never reached $hosts hosts (pvc_bridge_hosts $(metric pvc_bridge_hosts))"
fact directory_hosts "$(metric pvc_bridge_hosts)"
fact loaded_rss_kb "$(proc_kb VmRSS)"
fact loaded_hwm_kb "$(proc_kb VmHWM)"
malloc_stats loaded host

foreman_edits
sed "s|^|$BASE/host?fqdn=|" "$RUN_DIR/hosts-big.txt" >"$RUN_DIR/urls-host.txt"
# One answer as an agent sees it (this poll may be granted: it is one more).
curl -fsS "$BASE/host?fqdn=$(head -n1 "$RUN_DIR/hosts-big.txt")" >"$RUN_DIR/answer-sample.txt"

# == Throughput, closed loop: /healthz (baseline) and /host, alternating ==
# Two cores shared by oha, the bridge and PostgreSQL: one sample is noisy, so
# the report takes the median of each and lists every sample.
alternate measure host "$RUN_DIR/urls-host.txt"

# == Latency at a fixed rate (open loop) ==
# oha counts each latency from the request's planned start when given
# --latency-correction, so a stalled bridge cannot hide behind a waiting
# client. The CSV output has one row per request: the report lines the slow
# ones up with the directory reloads in the bridge's log.
FORMAT=csv measure healthz-rate -c "$CONNS" -q "$HOST_RATE" --latency-correction -z "$RATE_DURATION" "$BASE/healthz"
FORMAT=csv measure host-rate -c "$CONNS" -q "$HOST_RATE" --latency-correction -z "$RATE_DURATION" \
  --urls-from-file "$RUN_DIR/urls-host.txt"

fact end_rss_kb "$(proc_kb VmRSS)"
fact end_hwm_kb "$(proc_kb VmHWM)"
malloc_stats end host

# == Profile: where the bridge's CPU goes under /host load (not a measured run) ==
# The fleet's load (open loop at HOST_RATE) for PROFILE_DURATION, long enough
# to span a directory reload; perf stamps samples with the wall clock, so the
# reload's span (from the bridge's log) can be cut out of the profile.
if [ "$PROFILE_DURATION" != 0 ] && command -v perf >/dev/null; then
  log "perf record of the bridge during /host at $HOST_RATE req/s for $PROFILE_DURATION"
  perf record -q -k realtime -F 999 -p "$BRIDGE_PID" -o "$TMP/perf.data" >/dev/null 2>&1 &
  perf_pid=$!
  # Off CPU: every thread switch of the bridge with its stack, for 3 s around
  # the next directory reload (loads repeat hosts_refresh_secs after the end
  # of the previous one), to see what the HTTP workers wait for then.
  next_reload=$(python3 bench/report_host.py next-reload "$RUN_DIR")
  (
    sleep "$(python3 -c 'import sys, time; print(max(0.0, float(sys.argv[1]) - 1.0 - time.time()))' "$next_reload")"
    python3 -c 'import time; print(time.time() - time.monotonic())' >"$TMP/sched.offset"
    perf record -q -k monotonic -e sched:sched_switch --call-graph dwarf,16384 -p "$BRIDGE_PID" \
      -o "$TMP/sched.data" -- sleep 3 >/dev/null 2>&1
  ) &
  sched_pid=$!
  sleep 0.5
  measure host-profile -c "$CONNS" -q "$HOST_RATE" --latency-correction -z "$PROFILE_DURATION" \
    --urls-from-file "$RUN_DIR/urls-host.txt"
  kill -INT "$perf_pid" 2>/dev/null || true
  wait "$perf_pid" 2>/dev/null || true
  wait "$sched_pid" 2>/dev/null || true
  if [ -s "$TMP/sched.data" ]; then
    perf script -i "$TMP/sched.data" -F comm,tid,time,event,trace,ip,sym,dso 2>/dev/null >"$TMP/sched.txt" || true
    python3 bench/offcpu.py --offset "$(cat "$TMP/sched.offset")" "$TMP/sched.txt" >"$RUN_DIR/offcpu.json" || true
    gzip -c "$TMP/sched.txt" >"$RUN_DIR/sched.txt.gz"
  fi
  # Self time by symbol and by shared object (kernel, libc, the bridge).
  perf_report() { perf report -i "$TMP/perf.data" --no-children -g none --stdio "$@" 2>/dev/null || true; }
  perf_report --sort symbol --percent-limit 0.3 >"$RUN_DIR/profile-symbols.txt"
  perf_report --sort dso >"$RUN_DIR/profile-dso.txt"
  span=$(python3 bench/report_host.py reload-span "$RUN_DIR" host-profile)
  if [ -n "$span" ]; then
    fact profile_reload_span "$span"
    perf_report --time "$span" --sort symbol --percent-limit 0.3 >"$RUN_DIR/profile-reload-symbols.txt"
    perf_report --time "$span" --sort dso >"$RUN_DIR/profile-reload-dso.txt"
  fi
fi
stop_foreman_edits
stop_bridge
bench_report
