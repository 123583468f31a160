#!/usr/bin/env bash
# The status page in a real browser against a running bridge fed with real
# data: a PostgreSQL primary + streaming replica loaded with the Foreman
# fixture (pvc-pg), `pvc-bridge migrate` and `serve` (plain HTTP on
# loopback, two static puppetservers, a short period), ENC requests, polls,
# forced runs, reports and a converge request sent with curl; Foreman's
# rollout plugin tables (tests/fixtures/foreman/foreman_pvc_schema.sql)
# with a rollout in its second wave and one paused by a failed canary; and
# four hosts that ran two minutes ago on another bridge process and stopped
# polling (behind max_interval, in their hostgroups); then
# status-page.mjs drives Debian's chromium over it and saves
# docs/status-page.png. Prints one summary line; exits non-zero on failure
# (keeping the work directory with the bridge's log).
#
#   bash tests/browser/run.sh
#
# Needs: chromium, nodejs + npm (installs playwright-core into
# tests/browser/node_modules), PostgreSQL 15 with psql (as the Rust tests).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$HOME/.cargo/bin:$PATH"
started=$(date +%s)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pvc-browser.XXXXXX")
# PostgreSQL runs as its own user when this runs as root: it must reach pg/.
chmod 755 "$WORK"
LOG=$WORK/run.log
BRIDGE_PID=
PG_UP=0
ok=0

fail() {
  echo "browser: FAIL $* (log: $LOG)"
  exit 1
}
cleanup() {
  [ -n "$BRIDGE_PID" ] && kill "$BRIDGE_PID" 2>/dev/null && wait "$BRIDGE_PID" 2>/dev/null
  [ "$PG_UP" = 1 ] && target/debug/pvc-pg down --dir "$WORK/pg" >>"$LOG" 2>&1
  if [ "$ok" = 1 ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

[ -x /usr/bin/chromium ] || fail "/usr/bin/chromium is missing: apt-get install chromium"
command -v node >/dev/null || fail "node is missing: apt-get install nodejs npm"
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  (cd tests/browser && npm ci --no-audit --no-fund) >>"$LOG" 2>&1 || fail "npm ci in tests/browser"
fi
cargo build -q -p pvc-bridge --bin pvc-bridge -p pvc-testkit --bin pvc-pg >>"$LOG" 2>&1 || fail "cargo build"

target/debug/pvc-pg up --dir "$WORK/pg" --foreman-db foreman >>"$LOG" 2>&1 || fail "pvc-pg up"
PG_UP=1
set -a
# shellcheck disable=SC1091
. "$WORK/pg/env"
set +a
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$PORT"
export PVC_LISTEN="127.0.0.1:$PORT" PVC_PLAIN_HTTP=true
export PVC_ENC__FOREMAN_URL=https://localhost.localdomain.net
(umask 077 && head -c 32 /dev/urandom | base64 | tr -d '/+=\n' >"$WORK/admin.token")
cat >"$WORK/bridge.toml" <<TOML
[access]
admin_token_file = "$WORK/admin.token"
[scheduler]
target_period_secs = 60
min_interval_secs = 30
max_interval_secs = 120
check_interval_secs = 20
[[scheduler.servers]]
name = "puppet1.browser.test"
jrubies = 2
[[scheduler.servers]]
name = "puppet2.browser.test"
jrubies = 2
TOML
export PVC_CONFIG=$WORK/bridge.toml
target/debug/pvc-bridge migrate >>"$LOG" 2>&1 || fail "pvc-bridge migrate"
command -v psql >/dev/null || fail "psql is missing: apt-get install postgresql-client"
# Foreman with the rollout plugin: its real tables, then two rollouts over
# the fixture's hosts (ids and names from Foreman, as the plugin freezes
# them). kernel-6.1: canary passed, wave 2 of 3 under way; openssl-3.0.15:
# paused by the gate after its canary failed.
{
  cat tests/fixtures/foreman/foreman_pvc_schema.sql
  cat <<'SQL'
INSERT INTO foreman_pvc_rollouts (id, name, search, flag_name, flag_value, waves, failure_threshold,
  state, current_wave, created_by, resolved_at, host_count, created_at, updated_at, status_reason)
VALUES
  (1, 'kernel-6.1', 'hostgroup ^ web', 'update_flag', true, '2,25%,100%', 10, 'running', 1, 'admin',
   now() AT TIME ZONE 'UTC' - interval '40 minutes', 20, now() AT TIME ZONE 'UTC' - interval '40 minutes',
   now() AT TIME ZONE 'UTC' - interval '10 minutes', NULL),
  (2, 'openssl-3.0.15', 'os = Debian', 'openssl_update', true, '3,100%', 0, 'paused', 0, 'admin',
   now() AT TIME ZONE 'UTC' - interval '25 minutes', 10, now() AT TIME ZONE 'UTC' - interval '25 minutes',
   now() AT TIME ZONE 'UTC' - interval '5 minutes', 'wave 1: 2 of 3 hosts failed');
INSERT INTO foreman_pvc_waves (id, rollout_id, position, state, started_at, deadline_at, finished_at,
  gate_reason, created_at, updated_at)
VALUES
  (1, 1, 0, 'passed', now() AT TIME ZONE 'UTC' - interval '40 minutes', NULL,
   now() AT TIME ZONE 'UTC' - interval '10 minutes', NULL, now(), now()),
  (2, 1, 1, 'active', now() AT TIME ZONE 'UTC' - interval '10 minutes',
   now() AT TIME ZONE 'UTC' + interval '50 minutes', NULL, NULL, now(), now()),
  (3, 1, 2, 'pending', NULL, NULL, NULL, NULL, now(), now()),
  (4, 2, 0, 'failed', now() AT TIME ZONE 'UTC' - interval '25 minutes', NULL,
   now() AT TIME ZONE 'UTC' - interval '5 minutes', '2 of 3 hosts failed (threshold 0 %)', now(), now()),
  (5, 2, 1, 'pending', NULL, NULL, NULL, NULL, now(), now());
-- kernel-6.1: hosts 1-2 the canary (ok), 3-7 wave 2 (2 ok, 1 failed, 1
-- unreachable, 1 pending), 8-20 wave 3; openssl: 3 canaries, 7 waiting.
WITH h AS (SELECT id, name, row_number() OVER (ORDER BY id) AS n FROM hosts
           WHERE type = 'Host::Managed' ORDER BY id LIMIT 20)
INSERT INTO foreman_pvc_wave_hosts (wave_id, rollout_id, host_id, hostname, position, outcome)
SELECT CASE WHEN n <= 2 THEN 1 WHEN n <= 7 THEN 2 ELSE 3 END, 1, id, name, n,
       CASE WHEN n <= 4 THEN 'ok' WHEN n = 5 THEN 'failed' WHEN n = 6 THEN 'unreachable' ELSE 'pending' END
FROM h;
WITH h AS (SELECT id, name, row_number() OVER (ORDER BY id DESC) AS n FROM hosts
           WHERE type = 'Host::Managed' ORDER BY id DESC LIMIT 10)
INSERT INTO foreman_pvc_wave_hosts (wave_id, rollout_id, host_id, hostname, position, outcome)
SELECT CASE WHEN n <= 3 THEN 4 ELSE 5 END, 2, id, name, n,
       CASE WHEN n <= 2 THEN 'failed' WHEN n = 3 THEN 'ok' ELSE 'pending' END
FROM h;
SQL
} | psql -q -v ON_ERROR_STOP=1 "$PVC_DATABASE__PRIMARY" >>"$LOG" 2>&1 || fail "the rollout plugin's tables"
target/debug/pvc-bridge serve >>"$LOG" 2>&1 &
BRIDGE_PID=$!
for _ in $(seq 150); do curl -fsS "$url/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS "$url/readyz" >/dev/null 2>&1 || fail "the bridge is not ready"

mapfile -t HOSTS <tests/fixtures/foreman/hosts.txt
# The last four hosts ran 119 s ago on a server another bridge process
# knows (no longer in this one's list, so the run charts stay this
# process's) and poll no more: the lease feed reads it (it looks back
# max_interval = 120 s from the start) and they fall behind max_interval.
STOPPED=("${HOSTS[@]: -4}")
for h in "${STOPPED[@]}"; do
  echo "INSERT INTO pvc.leases (certname, server, trigger, mode, granted, expires, ended, end_reason, exit_code)
        VALUES ('$h', 'puppet9.browser.test', 'schedule', 'full', now() - interval '119 seconds',
                now() + interval '1 hour', now() - interval '110 seconds', 'report', 0);"
done | psql -q -v ON_ERROR_STOP=1 "$PVC_DATABASE__PRIMARY" >>"$LOG" 2>&1 || fail "leases of the stopped hosts"
POLLED=$((${#HOSTS[@]} - 4))
# The ENC: each host twice (a load, then a cache hit).
for h in "${HOSTS[@]}" "${HOSTS[@]}"; do
  curl -fsS -o /dev/null "$url/node/$h?format=yml" || fail "GET /node/$h"
done
# A converge request still running while the page is looked at.
converge=$(printf '"%s",' "${HOSTS[@]:10:10}")
curl -fsS -o /dev/null -X POST -H "Authorization: Bearer $(cat "$WORK/admin.token")" \
  -H 'Content-Type: application/json' -d "{\"certnames\": [${converge%,}], \"within_secs\": 3600}" \
  "$url/admin/converge" || fail "POST /admin/converge"

# A poll as pvc-agent makes it; a granted run is reported at once, every
# fifth host's with failures (exit code 4).
poll() { # host index, extra query
  local h=${HOSTS[$1]} answer run_id trigger mode code=0
  answer=$(curl -fsS "$url/host?fqdn=$h$2") || fail "GET /host?fqdn=$h$2"
  grep -q "^PVC_RUN='1'" <<<"$answer" || return 0
  run_id=$(sed -n "s/^PVC_RUN_ID='\(.*\)'$/\1/p" <<<"$answer")
  trigger=$(sed -n "s/^PVC_RUN_TRIGGER='\(.*\)'$/\1/p" <<<"$answer")
  mode=$(sed -n "s/^PVC_RUN_MODE='\(.*\)'$/\1/p" <<<"$answer")
  [ $(($1 % 5)) = 0 ] && code=4
  curl -fsS -o /dev/null -X POST -H 'Content-Type: application/json' \
    -d "{\"run_id\": \"$run_id\", \"trigger\": \"$trigger\", \"mode\": \"$mode\", \"exit_code\": $code, \"duration_secs\": 4.2}" \
    "$url/report?fqdn=$h" || fail "POST /report?fqdn=$h"
}
for i in 0 1 2; do poll "$i" "&trigger=file_change"; done
for _round in 1 2 3 4 5; do
  for ((i = 0; i < POLLED; i++)); do poll "$i" ""; done
  sleep 2
done

out=$(node tests/browser/status-page.mjs "$url" docs/status-page.png 2>&1) || fail "$out"
ok=1
echo "browser: $out; $(($(date +%s) - started)) s"
