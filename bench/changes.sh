#!/usr/bin/env bash
# `make bench-changes`: what the change feed costs Foreman, and how fast a
# change reaches the ENC of a loaded bridge. A measurement, not a test: the
# numbers go to the `changes` section of docs/benchmarks.md.
#
# All local (127.0.0.1), in this order:
#   1. pvc-pg's primary + replica with the fixture and HOSTS generated hosts,
#      then `pvc-bridge migrate` (the triggers);
#   2. Foreman-style writes on the primary with pgbench (CLIENTS clients,
#      DURATION s a run), each workload REPEATS times with the feed's
#      triggers disabled (the baseline: Foreman without pvc-bridge) and
#      enabled, in turn:
#        report  what every Puppet report makes Foreman write to its host
#                (last_report, updated_at, global_status: not watched);
#        edit    a host's comment (watched: one feed row each);
#        param   a host parameter created and deleted (two feed rows);
#   3. freshness under load: the release bridge (following the feed) with
#      oha sending warm ENC requests for every host at RATE req/s; meanwhile
#      CHANGES host parameter updates on random hosts, one at a time. For
#      each: when it is visible on the replica (psql, polled), when the ENC
#      of that host shows it (curl, polled).
# Raw results go to bench/runs/<date>-changes/ (git-ignored).
#
# Knobs (environment): HOSTS=10000 CLIENTS=1 DURATION=10 REPEATS=3
# RATE=2000 CHANGES=50
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

HOSTS=${HOSTS:-10000}     # generated hosts (plus the fixture's 40)
CLIENTS=${CLIENTS:-1}     # pgbench clients (1: the time a write takes, not the machine's CPU share)
DURATION=${DURATION:-10}  # seconds per pgbench run
REPEATS=${REPEATS:-3}     # pgbench runs per workload and mode
RATE=${RATE:-2000}        # warm ENC requests/s during the freshness run
CHANGES=${CHANGES:-50}    # changes timed in the freshness run

# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_start changes
machine_facts HOSTS CLIENTS DURATION REPEATS RATE CHANGES
PGBENCH=/usr/lib/postgresql/15/bin/pgbench

pg_up
grow_fleet "$HOSTS" fleet_s fleet
log "migrate (schema and triggers)"
"$BRIDGE" migrate >"$RUN_DIR/migrate.txt" 2>&1
cat "$RUN_DIR/migrate.txt" >&2
PRIMARY=$PVC_DATABASE__PRIMARY
REPLICA=$PVC_DATABASE__REPLICAS
q() { "$PSQL" "$1" -X -A -t -q -c "$2"; }

# == 2. Foreman's writes, with and without the triggers ==
read -r MINID MAXID < <(q "$PRIMARY" "SELECT min(id), max(id) FROM hosts" | tr '|' ' ')
fact host_ids "$MINID-$MAXID"
fact host_count "$(q "$PRIMARY" "SELECT count(*) FROM hosts")"
cat >"$TMP/report.sql" <<'SQL'
\set id random(:minid, :maxid)
UPDATE hosts SET last_report = now(), updated_at = now(), global_status = 0 WHERE id = :id;
SQL
cat >"$TMP/edit.sql" <<'SQL'
\set id random(:minid, :maxid)
\set n random(1, 1000000000)
UPDATE hosts SET comment = 'edited ' || :n, updated_at = now() WHERE id = :id;
SQL
cat >"$TMP/param.sql" <<'SQL'
\set id random(:minid, :maxid)
\set n random(1, 1000000000)
BEGIN;
INSERT INTO parameters (type, reference_id, name, value, key_type, created_at, updated_at)
  VALUES ('HostParameter', :id, 'bench_' || :n, 'x', 'string', now(), now());
DELETE FROM parameters WHERE type = 'HostParameter' AND reference_id = :id AND name = 'bench_' || :n;
COMMIT;
SQL
chmod 644 "$TMP"/*.sql
triggers() {  # triggers enable|disable
  q "$PRIMARY" "ALTER TABLE hosts ${1^^} TRIGGER pvc_changes; ALTER TABLE parameters ${1^^} TRIGGER pvc_changes;"
}
feed_rows() { q "$PRIMARY" "SELECT coalesce(max(id), 0) FROM pvc.changes"; }
# pgbench_run WORKLOAD MODE I: one run; tps, mean latency and feed rows per
# transaction into facts.
pgbench_run() {
  local out=$RUN_DIR/pgbench-$1-$2-$3.txt before after tx
  if [ "$2" = feed ]; then triggers enable; else triggers disable; fi
  before=$(feed_rows)
  "$PGBENCH" "$PRIMARY" -n -c "$CLIENTS" -j "$CLIENTS" -T "$DURATION" -D minid="$MINID" -D maxid="$MAXID" \
    -f "$TMP/$1.sql" >"$out" 2>&1
  after=$(feed_rows)
  tx=$(awk '/^number of transactions actually processed/ { print $NF }' "$out")
  fact "pgbench_${1}_${2}_${3}_tps" "$(awk '/^tps = / { print $3 }' "$out")"
  fact "pgbench_${1}_${2}_${3}_latency_ms" "$(awk '/^latency average = / { print $4 }' "$out")"
  fact "pgbench_${1}_${2}_${3}_tx" "$tx"
  fact "pgbench_${1}_${2}_${3}_feed_rows" "$((after - before))"
  log "pgbench $1 $2 #$3: $(awk '/^tps = / { print $3 }' "$out") tps, $((after - before)) feed rows"
}
for workload in report edit param; do
  for i in $(seq "$REPEATS"); do
    pgbench_run "$workload" baseline "$i"
    pgbench_run "$workload" feed "$i"
  done
done
triggers enable

# == 3. Freshness under read load ==
log "freshness: bridge, warm ENC load at $RATE req/s, $CHANGES changes"
start_bridge fresh PVC_ENC__FOREMAN_URL=https://localhost.localdomain.net PVC_CACHE__TTL_SECS=86400 PVC_CACHE__LAYER_TTL_SECS=86400
host_lists fresh
urls "$RUN_DIR/paths-fresh.txt" "$TMP/urls.txt"
python3 bench/drive.py --port "$BRIDGE_PORT" --paths "$RUN_DIR/paths-fresh.txt" --concurrency 16 \
  >"$RUN_DIR/warm.json" 2>>"$RUN_DIR/drive.log" || true
"$OHA" --no-tui --output-format json -c 32 -q "$RATE" --latency-correction -z 3600s \
  --urls-from-file "$TMP/urls.txt" >"$RUN_DIR/fresh-load.json" 2>/dev/null &
OHA_PID=$!
BACKGROUND_PIDS="$BACKGROUND_PIDS $OHA_PID"
sleep 2
mapfile -t NAMES < <(shuf -n "$CHANGES" --random-source=<(yes) "$RUN_DIR/hosts-fresh.txt")
: >"$RUN_DIR/freshness.txt"
for i in "${!NAMES[@]}"; do
  name=${NAMES[$i]}
  token="fresh$i$RANDOM"
  q "$PRIMARY" "INSERT INTO parameters (type, reference_id, name, value, key_type, created_at, updated_at)
                SELECT 'HostParameter', id, 'bench_fresh', '$token', 'string', now(), now()
                FROM hosts WHERE name = '$name'
                ON CONFLICT (type, reference_id, name) DO UPDATE SET value = EXCLUDED.value"
  t0=$(now)
  until [ -n "$(q "$REPLICA" "SELECT 1 FROM parameters WHERE value = '$token'")" ]; do :; done
  t1=$(now)
  deadline=$(python3 -c "print($t1 + 30)")
  until curl -fsS "$BASE/node/$name?format=yml" | grep -q "bench_fresh: $token"; do
    if python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) > float(sys.argv[2]) else 1)" "$(now)" "$deadline"; then
      echo "none" >>"$RUN_DIR/freshness.txt"; continue 2
    fi
  done
  t2=$(now)
  python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.4f} {float(sys.argv[3]) - float(sys.argv[2]):.4f}')" \
    "$t0" "$t1" "$t2" >>"$RUN_DIR/freshness.txt"
done
kill -INT "$OHA_PID" 2>/dev/null || true
wait "$OHA_PID" 2>/dev/null || true
fact superseded_loads "$(metric pvc_bridge_enc_superseded_loads_total)"
fact feed_rows_bridge "$(metric pvc_bridge_changes_rows_total)"
fact feed_resets "$(curl -fsS "$BASE/metrics" | awk '$1 == "pvc_bridge_changes_flushes_total{cause=\"reset\"}" { print $2 }')"
stop_bridge

bench_report
