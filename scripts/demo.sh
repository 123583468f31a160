#!/usr/bin/env bash
# `make demo`: a PostgreSQL primary + streaming replica loaded with the real
# Foreman fixture (plus FLEET generated hosts), and the bridge reading from
# the replica. Serves until Ctrl-C, then stops the databases.
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
  target/release/pvc-pg status --dir $PG_DIR

Ctrl-C stops the bridge and the databases.

MSG
target/release/pvc-bridge serve
