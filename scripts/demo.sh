#!/usr/bin/env bash
# `make demo`: a PostgreSQL primary + streaming replica loaded with the real
# Foreman fixture (plus FLEET generated hosts), the bridge reading from the
# replica and scheduling runs on two (static) puppetservers, and stand-in
# agents for the fixture's hosts polling it. Serves until Ctrl-C, then stops
# everything.
#
#   FLEET=10000 make demo     # add 10,000 hosts cloned from the real ones
#   LISTEN=0.0.0.0:8081 make demo
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

PG_DIR=${PG_DIR:-.demo/pg}
LISTEN=${LISTEN:-127.0.0.1:8081}
FLEET=${FLEET:-0}

bash scripts/install-deps.sh
echo "demo: building (release)"
cargo build --release -q -p pvc-bridge -p pvc-testkit -p pvc-agent

target/release/pvc-pg up --dir "$PG_DIR" --foreman-db foreman >/dev/null
trap 'echo; echo "demo: stopping the databases"; target/release/pvc-pg down --dir "$PG_DIR"' EXIT

if [ "$FLEET" -gt 0 ]; then
  echo "demo: generating $FLEET hosts cloned from the fixture (tests/fixtures/fleet)"
  target/release/pvc-pg load --dir "$PG_DIR" --db foreman --sql tests/fixtures/fleet/fleet.sql
  echo "SELECT pvc_fleet_generate($FLEET);" | target/release/pvc-pg load --dir "$PG_DIR" --db foreman --sql -
fi

set -a
# shellcheck disable=SC1090
. "$PG_DIR/env"
set +a
export PVC_LISTEN="$LISTEN"
# The fixture's Foreman ran with foreman_url https://localhost.localdomain.net.
export PVC_ENC__FOREMAN_URL=${PVC_ENC__FOREMAN_URL:-https://localhost.localdomain.net}

# Two puppetservers with static capacity, and a short period so the demo
# shows runs within minutes.
CONFIG=$PG_DIR/../bridge.toml
cat >"$CONFIG" <<TOML
[scheduler]
target_period_secs = 300
min_interval_secs = 120
max_interval_secs = 600
check_interval_secs = 20
[[scheduler.servers]]
name = "puppet1.demo.test"
jrubies = 2
[[scheduler.servers]]
name = "puppet2.demo.test"
jrubies = 2
TOML
export PVC_CONFIG=$CONFIG
target/release/pvc-bridge migrate

url="http://$LISTEN"
host=$(head -n1 tests/fixtures/foreman/hosts.txt)
cat <<MSG

pvc-bridge demo: $url  (reads from the replica, $PVC_DATABASE__REPLICAS)
  $(target/release/pvc-agent --version)

Try, in another terminal:
  curl -s '$url/node/$host?format=yml'              # the ENC, as Foreman serves it
  diff <(curl -s '$url/node/$host?format=yml') tests/fixtures/foreman/enc/$host.yml && echo identical
  curl -s -o /dev/null -w '%{http_code}\n' '$url/node/nosuchhost.example.com?format=yml'   # 404
  curl -s '$url/node/bad%20name?format=yml'         # 400 with the reason
  curl -s '$url/metrics' | grep pvc_bridge_enc
  curl -s -X POST '$url/admin/cache/invalidate?certname=$host'
  curl -s '$url/host?fqdn=$host'                    # a run decision, as agents get it
  curl -s '$url/host?fqdn=$host&trigger=file_change' # a forced run
  PVC_CONFIG=$CONFIG target/release/pvc-bridge explain $host
  curl -s -X POST '$url/admin/converge' -H 'Content-Type: application/json' -d '{"environment": "production", "within_secs": 120}'
  curl -s '$url/metrics' | grep -E 'pvc_bridge_(runs|pool|server)'
  target/release/pvc-pg status --dir $PG_DIR

Stand-in agents for the fixture's hosts print each run they are granted.
Ctrl-C stops the bridge, the agents and the databases.

MSG
AGENTS_PID=
target/release/pvc-bridge serve &
BRIDGE_PID=$!
trap 'kill $BRIDGE_PID $AGENTS_PID 2>/dev/null; wait 2>/dev/null; echo; echo "demo: stopping the databases"; target/release/pvc-pg down --dir "$PG_DIR"' EXIT
for _ in $(seq 100); do curl -fsS "$url/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
python3 scripts/demo-agents.py "$url" tests/fixtures/foreman/hosts.txt &
AGENTS_PID=$!
wait "$BRIDGE_PID"
