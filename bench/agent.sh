#!/usr/bin/env bash
# `make bench-agent`: pvc-agent's footprint and how fast a file change starts
# Puppet. A measurement, not a test: the numbers go to the `agent` section of
# docs/benchmarks.md, and a slow one fails nothing.
#
# All local (127.0.0.1), in this order:
#   1. pvc-pg's primary + replica with the Foreman fixture, `pvc-bridge
#      migrate`, one fixture host monitoring one file (a Foreman host
#      parameter pvc_files_monitored), the release bridge with one static
#      puppetserver and the scheduler's default check interval (60 s);
#   2. the release pvc-agent (`run`) for that host, with a stand-in `puppet`
#      (a shell script: records when it started, exits 0 at once);
#   3. idle: IDLE_SECS after the agent armed its watch, its RSS (VmRSS,
#      VmHWM); then its CPU time over CPU_SECS more, and the polls it made;
#   4. reaction: CHANGES appends to the monitored file, one at a time: the
#      time from just before the write to the stand-in's start (the agent's
#      debounce, the poll with trigger=file_change, the grant, the spawn),
#      waiting for the run's report before the next change;
#   5. the baseline: the original pvc.sh's way, without pvc-agent —
#      `inotifywait -m` on the file, then `curl` of /host?trigger=file_change,
#      then the same stand-in — the same CHANGES appends.
# Raw results go to bench/runs/<date>-agent/ (git-ignored); bench/report.py
# turns them into the `agent` section of docs/benchmarks.md.
#
# Knobs (environment): IDLE_SECS=60 CPU_SECS=60 CHANGES=20 SETTLE=1
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

IDLE_SECS=${IDLE_SECS:-60}  # idle time before the RSS is read
CPU_SECS=${CPU_SECS:-60}    # idle CPU measured over this long
CHANGES=${CHANGES:-20}      # file changes timed (agent, then baseline)
SETTLE=${SETTLE:-1}         # seconds between a run's end and the next change

# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_init agent
bench_tmp
fact bench agent

# == Tools: no load generator here; the release bridge, pvc-pg, pvc-agent ==
bash scripts/install-deps.sh
if ! command -v inotifywait >/dev/null; then
  log "installing inotify-tools (the baseline's inotifywait)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q inotify-tools >/dev/null
fi
log "building (release)"
cargo build --release -q -p pvc-bridge -p pvc-testkit -p pvc-agent
mkdir -p "$TMP/bin"
cp target/release/pvc-pg target/release/pvc-bridge target/release/pvc-agent "$TMP/bin/"
PVC_PG=$TMP/bin/pvc-pg
BRIDGE=$TMP/bin/pvc-bridge
AGENT=$TMP/bin/pvc-agent
PSQL=/usr/lib/postgresql/15/bin/psql
[ -x "$PSQL" ] || PSQL=psql
OHA=true  # machine_facts records a load generator's version; none here
machine_facts IDLE_SECS CPU_SECS CHANGES SETTLE
fact agent_binary_bytes "$(stat -c %s "$AGENT")"

# == Database, the monitored file, the bridge ==
pg_up
"$BRIDGE" migrate >"$RUN_DIR/migrate.log" 2>&1
NODE=$TMP/node
mkdir -p "$NODE/state" "$NODE/spool" "$NODE/stamps"
WATCHED=$NODE/watched.conf
echo "initial" >"$WATCHED"
HOST=$("$PSQL" "$PVC_DATABASE__PRIMARY" -X -A -t -c "SELECT name FROM hosts ORDER BY id LIMIT 1")
fact host "$HOST"
pg_sql "INSERT INTO parameters (type, reference_id, name, key_type, value, created_at, updated_at)
        SELECT 'HostParameter', id, 'pvc_files_monitored', 'string', '$WATCHED', now(), now()
        FROM hosts WHERE name = '$HOST';"
CONFIG=$RUN_DIR/bridge.toml
cat >"$CONFIG" <<'EOF'
[scheduler]
fact_interval_secs = 0
forced_runs_burst = 1000
forced_runs_per_hour = 100000

[[scheduler.servers]]
name = "puppet1.bench.test"
jrubies = 8
EOF
start_bridge agent -- --config "$CONFIG"

# == The stand-in puppet: when it started, then exit 0 ==
cat >"$NODE/puppet" <<EOF
#!/bin/sh
date +%s.%N >"$NODE/stamps/\$\$"
exit 0
EOF
chmod 755 "$NODE/puppet"
printf '#!/bin/sh\necho {}\n' >"$NODE/facter"
chmod 755 "$NODE/facter"
cat >"$NODE/pvc.conf" <<EOF
bridge_url=$BASE
certname=$HOST
puppet_command=$NODE/puppet
facter_command=$NODE/facter
agent_catalog_run_lockfile=$NODE/state/agent_catalog_run.lock
agent_disabled_lockfile=$NODE/state/agent_disabled.lock
lastrunfile=$NODE/state/last_run_summary.yaml
lastrunreport=$NODE/state/last_run_report.yaml
spool_dir=$NODE/spool
forced_runs_burst=1000
forced_runs_per_hour=100000
info=1
EOF

# stamps_count: runs of the stand-in so far.
stamps_count() { find "$NODE/stamps" -type f | wc -l; }
# newest_stamp: the start time of the latest run.
newest_stamp() { cat "$NODE/stamps"/* | sort -n | tail -n1; }
# reports_count: the host's reports on the primary.
reports_count() {
  "$PSQL" "$PVC_DATABASE__PRIMARY" -X -A -t -c "SELECT count(*) FROM pvc.reports WHERE certname = '$HOST'"
}
# proc_ticks PID: utime + stime in clock ticks.
proc_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
status_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
polls() { curl -fsS "$BASE/metrics" | awk '$1 ~ /^pvc_bridge_polls_total/ { n += $2 } END { print n + 0 }'; }

# time_changes LABEL WAIT_REPORT: CHANGES appends to the watched file; each
# latency (s) to RUN_DIR/LABEL-latency.txt. With WAIT_REPORT=1 the next
# change waits for the run's report to reach the bridge.
time_changes() {
  local label=$1 wait_report=$2 i before after t0 started
  : >"$RUN_DIR/$label-latency.txt"
  for i in $(seq "$CHANGES"); do
    before=$(stamps_count)
    after=$(reports_count)
    t0=$(now)
    echo "change $i" >>"$WATCHED"
    for _ in $(seq 1000); do
      [ "$(stamps_count)" -gt "$before" ] && break
      sleep 0.01
    done
    if [ "$(stamps_count)" -le "$before" ]; then
      log "$label: change $i started no run within 10 s"
      echo "none" >>"$RUN_DIR/$label-latency.txt"
      continue
    fi
    started=$(newest_stamp)
    python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.4f}')" "$t0" "$started" \
      >>"$RUN_DIR/$label-latency.txt"
    if [ "$wait_report" = 1 ]; then
      for _ in $(seq 1000); do
        [ "$(reports_count)" -gt "$after" ] && break
        sleep 0.01
      done
    fi
    sleep "$SETTLE"
  done
}

# == pvc-agent: idle footprint ==
"$AGENT" --config "$NODE/pvc.conf" run 2>"$RUN_DIR/agent.log" &
AGENT_PID=$!
BACKGROUND_PIDS="$BACKGROUND_PIDS $AGENT_PID"
for _ in $(seq 300); do
  grep -q "monitoring 1 path" "$RUN_DIR/agent.log" && break
  kill -0 "$AGENT_PID" 2>/dev/null || { log "pvc-agent exited; see $RUN_DIR/agent.log"; exit 1; }
  sleep 0.1
done
grep -q "monitoring 1 path" "$RUN_DIR/agent.log" || { log "pvc-agent never armed its watch"; exit 1; }
fact agent_threads "$(status_kb "$AGENT_PID" Threads)"
log "idle for $IDLE_SECS s"
sleep "$IDLE_SECS"
fact idle_rss_kb "$(status_kb "$AGENT_PID" VmRSS)"
fact idle_hwm_kb "$(status_kb "$AGENT_PID" VmHWM)"
fact idle_rss_anon_kb "$(status_kb "$AGENT_PID" RssAnon)"
log "idle CPU over $CPU_SECS s"
ticks0=$(proc_ticks "$AGENT_PID")
polls0=$(polls)
t=$(now)
sleep "$CPU_SECS"
fact idle_cpu_ticks "$(( $(proc_ticks "$AGENT_PID") - ticks0 ))"
fact idle_cpu_wall_s "$(since "$t")"
fact clk_tck "$(getconf CLK_TCK)"
fact idle_polls "$(( $(polls) - polls0 ))"
fact idle_runs "$(stamps_count)"

# == pvc-agent: file change → Puppet started ==
log "timing $CHANGES file changes through pvc-agent"
time_changes agent 1
fact agent_runs "$(stamps_count)"
fact after_rss_kb "$(status_kb "$AGENT_PID" VmRSS)"
fact after_hwm_kb "$(status_kb "$AGENT_PID" VmHWM)"
kill -TERM "$AGENT_PID"
wait "$AGENT_PID" 2>/dev/null && fact agent_exit 0 || fact agent_exit "$?"

# == Baseline: inotifywait → curl /host?trigger=file_change → the stand-in ==
# The original agent's mechanism, with the same stand-in; it starts Puppet
# whatever the answer (the bridge says run_in_progress after the first: no
# report releases the leases), so it measures the notification and one poll.
rm -f "$NODE/stamps"/*
log "timing $CHANGES file changes through inotifywait + curl"
(
  inotifywait -q -m -e close_write "$WATCHED" | while read -r _; do
    curl -fsS -H 'Accept: application/json' "$BASE/host?fqdn=$HOST&trigger=file_change" >/dev/null || true
    "$NODE/puppet"
  done
) 2>"$RUN_DIR/baseline.log" &
BASELINE_PID=$!
BACKGROUND_PIDS="$BACKGROUND_PIDS $BASELINE_PID"
sleep 1  # inotifywait sets its watch
time_changes baseline 0
pkill -P "$BASELINE_PID" 2>/dev/null || true
kill "$BASELINE_PID" 2>/dev/null || true

stop_bridge
bench_report
