#!/usr/bin/env bash
# `make demo`: a PostgreSQL primary + streaming replica loaded with the real
# Foreman fixture (plus FLEET generated hosts), the bridge reading from the
# replica and scheduling runs on two (static) puppetservers; real pvc-agent
# daemons for three of the fixture's hosts (with a stand-in `puppet`, there is
# no puppetserver here) and stand-in agents for the others, polling it.
# Serves until Ctrl-C, then stops everything.
#
#   FLEET=10000 make demo     # add 10,000 hosts cloned from the real ones
#   LISTEN=0.0.0.0:8081 make demo
#   PUPPET=1 make demo        # with a real puppetserver and real Puppet agents
if [ "${PUPPET:-0}" = 1 ]; then exec bash "$(dirname "$0")/demo-puppetserver.sh" "$@"; fi
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

PG_DIR=$(realpath -m "${PG_DIR:-.demo/pg}")
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
# The demo serves plain HTTP on loopback; production bridges serve HTTPS
# with Puppet CA certificates (docs/security.md).
export PVC_PLAIN_HTTP=true
# The fixture's Foreman ran with foreman_url https://localhost.localdomain.net.
export PVC_ENC__FOREMAN_URL=${PVC_ENC__FOREMAN_URL:-https://localhost.localdomain.net}

# Two puppetservers with static capacity, and a short period so the demo
# shows runs within minutes.
CONFIG=$PG_DIR/../bridge.toml
# The admin API (/admin/...) always needs a credential: a token in a file
# only this user can read (docs/security.md).
ADMIN_TOKEN_FILE=$PG_DIR/../admin.token
if [ ! -s "$ADMIN_TOKEN_FILE" ]; then
  (umask 077 && head -c 32 /dev/urandom | base64 | tr -d '/+=\n' >"$ADMIN_TOKEN_FILE")
fi
cat >"$CONFIG" <<TOML
[access]
admin_token_file = "$ADMIN_TOKEN_FILE"
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

# Three real pvc-agent daemons: each node gets a directory with its
# pvc.conf, a stand-in `puppet` (scripts/demo-puppet.sh), Puppet's state
# files, and a file the bridge tells it to watch (a Foreman host parameter,
# pvc_files_monitored, as an operator would set it).
AGENT_HOSTS=$(head -n3 tests/fixtures/foreman/hosts.txt)
AGENTS_DIR=$(cd "$PG_DIR/.." && pwd)/agents
rm -rf "$AGENTS_DIR"
for h in $AGENT_HOSTS; do
  d=$AGENTS_DIR/$h
  mkdir -p "$d/state" "$d/watched" "$d/spool"
  cp scripts/demo-puppet.sh "$d/puppet"
  printf '#!/bin/sh\necho %s\n' "'{\"networking\":{\"fqdn\":\"$h\"}}'" >"$d/facter"
  chmod +x "$d/facter"
  echo "managed by Puppet" >"$d/watched/motd"
  cat >"$d/pvc.conf" <<CONF
bridge_url=http://$LISTEN
certname=$h
puppet_command=$d/puppet
facter_command=$d/facter
agent_catalog_run_lockfile=$d/state/agent_catalog_run.lock
agent_disabled_lockfile=$d/state/agent_disabled.lock
lastrunfile=$d/state/last_run_summary.yaml
lastrunreport=$d/state/last_run_report.yaml
spool_dir=$d/spool
info=1
warnings=1
CONF
  echo "INSERT INTO parameters (type, reference_id, name, key_type, value, created_at, updated_at)
        SELECT 'HostParameter', id, 'pvc_files_monitored', 'string', '$d/watched/motd', now(), now()
        FROM hosts WHERE name = '$h';" |
    target/release/pvc-pg load --dir "$PG_DIR" --db foreman --sql - >/dev/null
done
first_agent=$(echo "$AGENT_HOSTS" | head -n1)

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
  curl -s -X POST -H "Authorization: Bearer \$(cat $ADMIN_TOKEN_FILE)" '$url/admin/cache/invalidate?certname=$host'
  curl -s '$url/host?fqdn=$host'                    # a run decision, as agents get it
  curl -s '$url/host?fqdn=$host&trigger=file_change' # a forced run
  PVC_DATABASE__PRIMARY='$PVC_DATABASE__PRIMARY' PVC_LISTEN=$LISTEN PVC_CONFIG=$CONFIG target/release/pvc-bridge explain $host   # sends the admin token
  /usr/lib/postgresql/15/bin/psql '$PVC_DATABASE__PRIMARY' -c "UPDATE hosts SET comment = 'edited in Foreman' WHERE name = '$host'"
  curl -s '$url/node/$host?format=yml' | grep '^  comment'   # the change is in the ENC within a second (docs/changes.md)
  curl -s -X POST -H "Authorization: Bearer \$(cat $ADMIN_TOKEN_FILE)" '$url/admin/converge' -H 'Content-Type: application/json' -d '{"environment": "production", "within_secs": 120}'
  curl -s '$url/metrics' | grep -E 'pvc_bridge_(runs|pool|server)'
  target/release/pvc-pg status --dir $PG_DIR

pvc-agent runs for $(echo $AGENT_HOSTS | tr ' ' ','): they poll, run the stand-in
puppet when granted, and post their reports; to see a forced run, tamper with
a watched file (the agent asks at once, the bridge grants, "Puppet" restores it):
  echo tampered > $AGENTS_DIR/$first_agent/watched/motd
  target/release/pvc-agent --config $AGENTS_DIR/$first_agent/pvc.conf check   # the agent's view
Stand-in agents for the other hosts print each run they are granted.
Ctrl-C stops the bridge, the agents and the databases.

MSG
AGENTS_PID=
target/release/pvc-bridge serve &
BRIDGE_PID=$!
trap 'kill $BRIDGE_PID $AGENTS_PID 2>/dev/null; wait 2>/dev/null; echo; echo "demo: stopping the databases"; target/release/pvc-pg down --dir "$PG_DIR"' EXIT
for _ in $(seq 100); do curl -fsS "$url/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
for h in $AGENT_HOSTS; do
  target/release/pvc-agent --config "$AGENTS_DIR/$h/pvc.conf" run \
    > >(sed -u "s/^/pvc-agent $h: /") 2>&1 &
  AGENTS_PID="$AGENTS_PID $!"
done
tail -n +4 tests/fixtures/foreman/hosts.txt >"$AGENTS_DIR/stand-in-hosts.txt"
python3 scripts/demo-agents.py "$url" "$AGENTS_DIR/stand-in-hosts.txt" &
AGENTS_PID="$AGENTS_PID $!"
wait "$BRIDGE_PID"
