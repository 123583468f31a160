#!/usr/bin/env bash
# `make bench-facts`, and `make bench` after bench/host.sh: fact uploads
# (~30 KB facter JSON, 10% with a real change) stored on the primary,
# forwarded to a Foreman stand-in and written to the git audit trail. A
# measurement, not a test: the numbers go to the `facts` section of
# docs/benchmarks.md, and a slow one fails nothing.
#
# All local (127.0.0.1), in this order:
#   1. pvc-pg's primary + replica with the fixture and HOSTS generated hosts
#      (Foreman knows them: real changes go to the outbox, not synchronously),
#      then `pvc-bridge migrate`;
#   2. bench/foreman_standin.py (answers Foreman's upload API 201, counts
#      every request) and the release bridge with forwarding to it
#      (PVC_FORWARD__RATE_PER_SEC=FORWARD_RATE), the audit trail
#      (PVC_AUDIT__REPO, a fresh bare repository) and the write spool on;
#   3. warm-up: every host's first upload (outcome `new`: forwarded during
#      the upload), measured on its own;
#   4. closed loop: REPEATS runs of DURATION s with CONNS connections;
#   5. open loop: RATE uploads/s for RATE_DURATION s, latency from the
#      intended send time;
#      after each run: how long until the outbox and the audit queue are
#      empty again; during it, both sampled every second;
#   6. when perf is there: a system-wide profile during one more closed-loop
#      run (not measured), to say where the CPU goes;
#   7. the baseline: the same bridge restarted with forwarding off and no
#      audit repository, the same closed and open loop runs.
# Every upload is bench/facts_drive.py's (one template per host, volatile
# facts changed each time, CHANGE_SHARE of them with a real change, ENC_SHARE
# of those an interface address, FOREMAN_SHARE sent to /api/v2/hosts/facts).
# Raw results go to bench/runs/<date>-facts/ (git-ignored); bench/report.py
# turns them into the `facts` section of docs/benchmarks.md.
#
# Knobs (environment): HOSTS=2000 CONNS=16 DURATION=15 REPEATS=3 RATE=500
# RATE_DURATION=60 CHANGE_SHARE=0.10 ENC_SHARE=0.10 FOREMAN_SHARE=0.20
# FORWARD_RATE=200 FOREMAN_DELAY_MS=0 DRAIN_TIMEOUT=120 PROFILE_DURATION=15
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

HOSTS=${HOSTS:-2000}                    # generated hosts (plus the fixture's 40): the certnames
CONNS=${CONNS:-16}                      # closed-loop connections
DURATION=${DURATION:-15}                # seconds per closed-loop run
REPEATS=${REPEATS:-3}                   # closed-loop runs per bridge
RATE=${RATE:-500}                       # open-loop uploads/s (the target)
RATE_DURATION=${RATE_DURATION:-60}      # seconds of the open-loop run
CHANGE_SHARE=${CHANGE_SHARE:-0.10}      # uploads with a real change
ENC_SHARE=${ENC_SHARE:-0.10}            # of those, an interface address (forwarded during the upload)
FOREMAN_SHARE=${FOREMAN_SHARE:-0.20}    # uploads by Foreman's API (the stock ENC script's payload)
FORWARD_RATE=${FORWARD_RATE:-200}       # forward.rate_per_sec
FOREMAN_DELAY_MS=${FOREMAN_DELAY_MS:-0} # the stand-in's answer delay
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-120}     # longest wait for the outbox and audit queue to empty
PROFILE_DURATION=${PROFILE_DURATION:-15} # perf record -a during one more closed-loop run; 0 skips it

# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_start facts
machine_facts HOSTS CONNS DURATION REPEATS RATE RATE_DURATION CHANGE_SHARE ENC_SHARE FOREMAN_SHARE \
  FORWARD_RATE FOREMAN_DELAY_MS PROFILE_DURATION

# == Helpers of this benchmark (the shared ones are in bench/lib.sh) ==
STANDIN=
AUDIT_REPO=
psql_primary() { "$PSQL" "$PVC_DATABASE__PRIMARY" -X -q -A -t -F ' ' -c "$1"; }
# cpu_all: CPU seconds so far: the bridge, its exited children (git), the
# primary's and the replica's PostgreSQL (all backends), the stand-in, the
# whole machine.
cpu_all() {
  python3 - "$BRIDGE_PID" "$(head -n1 "$PG_DIR/primary/postmaster.pid")" \
    "$(head -n1 "$PG_DIR/replica/postmaster.pid")" "$STANDIN_PID" <<'EOF'
import json, os, sys
sys.path.insert(0, "bench")
import cpu
bridge, primary, replica, standin = (int(x) for x in sys.argv[1:])
def tree(pm):
    _, own, gone = cpu.stat(pm)
    total = own + gone
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                ppid, ticks, _ = cpu.stat(int(e))
            except (FileNotFoundError, ProcessLookupError):
                continue
            if ppid == pm:
                total += ticks
    return total / cpu.TICK
_, b, b_children = cpu.stat(bridge)
json.dump({"bridge": b / cpu.TICK, "bridge_children": b_children / cpu.TICK, "primary": tree(primary),
           "replica": tree(replica), "standin": cpu.stat(standin)[1] / cpu.TICK,
           "machine": cpu.machine_busy() / cpu.TICK}, sys.stdout)
print()
EOF
}
# git_counts FILE: host branches and commits of the audit repository.
git_counts() {
  if [ -n "$AUDIT_REPO" ] && [ -d "$AUDIT_REPO" ]; then
    printf 'branches=%s\ncommits=%s\n' \
      "$(git -C "$AUDIT_REPO" for-each-ref refs/heads/hosts | wc -l)" \
      "$(git -C "$AUDIT_REPO" rev-list --all --count 2>/dev/null || echo 0)" >"$1"
  else
    printf 'branches=0\ncommits=0\n' >"$1"
  fi
}
# queues: outbox items (not dead) and audit events not yet committed.
queues() { psql_primary "SELECT (SELECT count(*) FROM pvc.outbox WHERE NOT dead), (SELECT count(*) FROM pvc.audit_queue)"; }
snapshot() {
  curl -fsS "$BASE/metrics" >"$RUN_DIR/$1.metrics-$2.txt"
  curl -fsS "$STANDIN/counts" >"$RUN_DIR/$1.standin-$2.json"
  git_counts "$RUN_DIR/$1.git-$2.txt"
  psql_primary "SELECT (SELECT count(*) FROM pvc.outbox WHERE NOT dead), (SELECT count(*) FROM pvc.audit_queue), \
    (SELECT count(*) FROM pvc.audit_events)" >"$RUN_DIR/$1.queues-$2.txt"
}
# measure NAME DRAIN DRIVER_ARGS...: one driver run (--seed: the same for a
# run of the full bridge and its baseline, so both get the same uploads) with /metrics, the
# stand-in's counts, the audit repository, CPU before and after it; the
# outbox and audit queue sampled every second meanwhile; with DRAIN=1 then
# timed until both are empty (fact NAME_drain_s) and snapshotted again.
measure() {
  local name=$1 drain=$2
  shift 2
  snapshot "$name" before
  cpu_all >"$RUN_DIR/$name.cpu-before.json"
  python3 bench/facts_drive.py sample-loop --out "$RUN_DIR/$name.samples.jsonl" --psql "$PSQL" \
    --db "$PVC_DATABASE__PRIMARY" --bridge "$BASE" --standin "$STANDIN" &
  local sampler=$!
  local start
  start=$(now)
  log "facts_drive $* -> $name"
  python3 bench/facts_drive.py run --port "$BRIDGE_PORT" --hosts "$RUN_DIR/certnames.txt" \
    --state "$RUN_DIR/state.json" --change-share "$CHANGE_SHARE" --enc-share "$ENC_SHARE" \
    --foreman-share "$FOREMAN_SHARE" "$@" >"$RUN_DIR/$name.json" ||
    log "$name: the driver saw errors (see $RUN_DIR/$name.json)"
  local end
  end=$(now)
  printf '%s %s %s\n' "$name" "$start" "$end" >>"$RUN_DIR/windows.txt"
  cpu_all >"$RUN_DIR/$name.cpu-after.json"
  snapshot "$name" after
  if [ "$drain" = 1 ]; then
    local drained=
    for _ in $(seq $((DRAIN_TIMEOUT * 10))); do
      if [ "$(queues)" = "0 0" ]; then drained=1; break; fi
      sleep 0.1
    done
    if [ -n "$drained" ]; then
      fact "${name}_drain_s" "$(since "$end")"
    else
      fact "${name}_drain_s" "not within ${DRAIN_TIMEOUT} s ($(queues))"
    fi
    # The audit writer commits after its round; the repository is read after it.
    sleep 1.5
    cpu_all >"$RUN_DIR/$name.cpu-drained.json"
    snapshot "$name" drained
  fi
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
}

# == Database: primary + replica, fixture, the fleet, the bridge's schema ==
pg_up
grow_fleet "$HOSTS" fleet_gen_s fleet
t=$(now)
"$BRIDGE" migrate >"$RUN_DIR/migrate.log" 2>&1
fact migrate_s "$(since "$t")"
cp "$RUN_DIR/hosts-fleet.txt" "$RUN_DIR/certnames.txt"
fact certnames "$(wc -l <"$RUN_DIR/certnames.txt")"
python3 bench/facts_drive.py sample "$(head -n1 "$RUN_DIR/certnames.txt")" >"$RUN_DIR/sample-facts.json"
fact sample_bytes "$(wc -c <"$RUN_DIR/sample-facts.json")"
fact sample_facts "$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))))' "$RUN_DIR/sample-facts.json")"

# == The Foreman stand-in ==
STANDIN_PORT=$(free_port)
STANDIN=http://127.0.0.1:$STANDIN_PORT
python3 bench/foreman_standin.py --port "$STANDIN_PORT" --delay-ms "$FOREMAN_DELAY_MS" \
  >"$RUN_DIR/standin.log" 2>&1 &
STANDIN_PID=$!
BACKGROUND_PIDS="$BACKGROUND_PIDS $STANDIN_PID"
for _ in $(seq 100); do curl -fsS "$STANDIN/counts" >/dev/null 2>&1 && break; sleep 0.1; done

# == The bridge with forwarding and the audit trail ==
AUDIT_REPO=$TMP/audit.git
t=$(now)
start_bridge full PVC_LOG__FORMAT=json \
  PVC_FOREMAN__URL="$STANDIN" PVC_FOREMAN__USERNAME=admin PVC_FOREMAN__PASSWORD=bench \
  PVC_FORWARD__RATE_PER_SEC="$FORWARD_RATE" PVC_AUDIT__REPO="$AUDIT_REPO" \
  PVC_WRITES__SPOOL_DIR="$TMP/spool-full"
fact healthy_s "$(since "$t")"
fact bridge_workers "default ($(nproc) = one per core)"
# Both leaders (forwarding, audit) are elected through the primary: wait for them.
for _ in $(seq 300); do
  [ "$(metric pvc_bridge_forward_leader)" = 1 ] && [ -d "$AUDIT_REPO" ] && break
  sleep 0.1
done
fact forward_leader "$(metric pvc_bridge_forward_leader)"
fact audit_repo_created "$([ -d "$AUDIT_REPO" ] && echo yes || echo no)"

# == Warm-up: every host's first facts (`new`, forwarded during the upload) ==
measure warmup 1 --warmup --concurrency "$CONNS" --seed 1

# == Throughput, closed loop ==
for i in $(seq "$REPEATS"); do
  measure "full-max-$i" 1 --closed --concurrency "$CONNS" --duration "$DURATION" --seed "$((10 + i))"
done

# == The target rate, open loop ==
measure full-rate 1 --rate "$RATE" --duration "$RATE_DURATION" --seed 100

# == Profile: where the machine's CPU goes under the closed loop (not measured) ==
if [ "$PROFILE_DURATION" != 0 ] && command -v perf >/dev/null; then
  log "perf record -a during a closed-loop run of ${PROFILE_DURATION} s"
  perf record -q -a -F 499 -o "$TMP/perf.data" >/dev/null 2>&1 &
  perf_pid=$!
  sleep 0.5
  measure full-profile 1 --closed --concurrency "$CONNS" --duration "$PROFILE_DURATION" --seed 200
  kill -INT "$perf_pid" 2>/dev/null || true
  wait "$perf_pid" 2>/dev/null || true
  perf_report() { perf report -i "$TMP/perf.data" --no-children --stdio "$@" 2>/dev/null || true; }
  perf_report --sort comm,dso --percent-limit 0.5 >"$RUN_DIR/profile-comm-dso.txt"
  perf_report --sort comm,symbol --percent-limit 0.05 >"$RUN_DIR/profile-symbols.txt"
fi
fact end_rss_kb "$(proc_kb VmRSS)"
fact end_hwm_kb "$(proc_kb VmHWM)"
fact audit_events_total "$(psql_primary 'SELECT count(*) FROM pvc.audit_events')"
git_counts "$RUN_DIR/git-final.txt"
curl -fsS "$BASE/metrics" >"$RUN_DIR/full-final.metrics.txt"
stop_bridge

# == Baseline: the same bridge without forwarding and audit trail ==
# The uploads still queue for Foreman and the audit trail in the database
# (the same SQL, in the same transaction); nothing sends or commits them.
AUDIT_REPO=
start_bridge base PVC_LOG__FORMAT=json PVC_FOREMAN__URL="$STANDIN" PVC_FOREMAN__USERNAME=admin \
  PVC_FOREMAN__PASSWORD=bench PVC_FORWARD__ENABLED=false PVC_WRITES__SPOOL_DIR="$TMP/spool-base"
for i in $(seq "$REPEATS"); do
  measure "base-max-$i" 0 --closed --concurrency "$CONNS" --duration "$DURATION" --seed "$((10 + i))"
done
measure base-rate 0 --rate "$RATE" --duration "$RATE_DURATION" --seed 100
stop_bridge
bench_report
