#!/usr/bin/env bash
# Checks docs/grafana-dashboard.json and docs/alerts.yml against a live
# bridge: starts a PostgreSQL primary + replica with the Foreman fixture
# (pvc-pg), a bridge on it with scheduling, forwarding (to a Foreman that
# does not answer), the write spool and the audit trail configured, sends a
# few requests so the per-route series exist, scrapes /metrics and runs
# tests/dashboards/check.py on the scrape. Prints check.py's summary line;
# exit status 1 on any problem. Stops and removes everything it started.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$HOME/.cargo/bin:$PATH"

BIN=target/debug
cargo build -q -p pvc-bridge --bin pvc-bridge -p pvc-testkit --bin pvc-pg

WORK=$(mktemp -d -t pvc-dashboards.XXXXXX)
# PostgreSQL runs as user postgres: it must reach pg/ below.
chmod 755 "$WORK"
LOG=$WORK/bridge.log
BRIDGE_PID=
cleanup() {
  if [ -n "$BRIDGE_PID" ]; then
    kill "$BRIDGE_PID" 2>/dev/null || true
    wait "$BRIDGE_PID" 2>/dev/null || true
  fi
  "$BIN/pvc-pg" down --dir "$WORK/pg" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

fail() {
  echo "dashboards: FAILED: $*"
  [ -s "$LOG" ] && tail -n 20 "$LOG" | sed 's/^/  bridge: /'
  exit 1
}

"$BIN/pvc-pg" up --dir "$WORK/pg" --foreman-db foreman >/dev/null 2>"$WORK/pg-up.log" ||
  fail "pvc-pg up: $(cat "$WORK/pg-up.log")"
set -a
# shellcheck disable=SC1091
. "$WORK/pg/env"
set +a

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT
TOKEN=$(head -c 24 /dev/urandom | base64 | tr -d '/+=\n')
(umask 077 && printf '%s' "$TOKEN" >"$WORK/admin.token")
mkdir -p "$WORK/spool"
cat >"$WORK/bridge.toml" <<TOML
[access]
admin_token_file = "$WORK/admin.token"
[foreman]
url = "http://127.0.0.1:1"
username = "pvc-forwarder"
password = "not-used"
[writes]
spool_dir = "$WORK/spool"
[audit]
repo = "$WORK/audit"
[scheduler]
[[scheduler.servers]]
name = "puppet1.example.com"
jrubies = 4
[[scheduler.servers]]
name = "puppet2.example.com"
jrubies = 4
pool = "dmz"
TOML
export PVC_CONFIG=$WORK/bridge.toml PVC_LISTEN=127.0.0.1:$PORT PVC_PLAIN_HTTP=true
export PVC_ENC__FOREMAN_URL=https://localhost.localdomain.net
"$BIN/pvc-bridge" migrate >>"$LOG" 2>&1 || fail "pvc-bridge migrate"
"$BIN/pvc-bridge" serve >>"$LOG" 2>&1 &
BRIDGE_PID=$!
for _ in $(seq 100); do
  curl -fsS "$URL/healthz" >/dev/null 2>&1 && break
  kill -0 "$BRIDGE_PID" 2>/dev/null || fail "the bridge exited"
  sleep 0.1
done
curl -fsS "$URL/healthz" >/dev/null || fail "the bridge did not answer /healthz"

# One request per route the dashboard and the rules select, so their series
# (and label values) are in the scrape.
HOST=$(head -n1 tests/fixtures/foreman/hosts.txt)
get() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
get "$URL/node/$HOST?format=yml" >/dev/null
get "$URL/node/nosuch.example.com?format=yml" >/dev/null
get "$URL/host?fqdn=$HOST" >/dev/null
get "$URL/readyz" >/dev/null
get -H "Authorization: Bearer $TOKEN" "$URL/admin/explain/$HOST" >/dev/null
# Replica health checks run every 500 ms, the forwarder reads its outbox
# after starting: wait until both show, at most 10 s.
for _ in $(seq 50); do
  curl -fsS "$URL/metrics" >"$WORK/metrics.txt" || fail "GET /metrics"
  grep -q '^pvc_bridge_replica_lag_bytes{' "$WORK/metrics.txt" &&
    grep -q '^pvc_bridge_outbox_items ' "$WORK/metrics.txt" && break
  sleep 0.2
done
python3 tests/dashboards/check.py --metrics "$WORK/metrics.txt"
