#!/usr/bin/env bash
# `PUPPET=1 make demo`: the bridge with real Puppet. A PostgreSQL primary +
# streaming replica loaded with the Foreman fixture, Debian's puppetserver
# (tests/e2e/puppet/env.sh) using the bridge as its ENC and report
# destination, the bridge over mutual TLS with a certificate from the Puppet
# CA, reading the server's capacity from its status API, and three fixture
# hosts as real Puppet agents driven by real pvc-agent daemons, each watching
# the two files Puppet manages for it. Serves until Ctrl-C, then stops
# everything. Runs as root.
#
#   PUPPET=1 make demo
#   PUPPET_PORT=18140 BRIDGE_PORT=8443 PUPPET=1 make demo
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

DEMO_DIR=$(realpath -m "${DEMO_DIR:-.demo/puppet}")
PG_DIR=$DEMO_DIR/pg
E2E_DIR=$DEMO_DIR/e2e
PUPPET_PORT=${PUPPET_PORT:-18140}
BRIDGE_PORT=${BRIDGE_PORT:-8443}
PROFILE=${PROFILE:-release}
BIN=target/$PROFILE
ENV_SH=tests/e2e/puppet/env.sh
PSQL=/usr/lib/postgresql/15/bin/psql

[ "$(id -u)" = 0 ] || {
  echo "demo: PUPPET=1 runs puppetserver and Puppet agents: run it as root" >&2
  exit 1
}
PUPPET=1 bash scripts/install-deps.sh
echo "demo: building ($PROFILE)"
if [ "$PROFILE" = release ]; then
  cargo build --release -q -p pvc-bridge -p pvc-testkit -p pvc-agent
else
  cargo build -q -p pvc-bridge -p pvc-testkit -p pvc-agent
fi

# Everything started is stopped on exit, in reverse order (the agents
# before the bridge, so that their last reports reach it).
AGENT_PIDS=()
BRIDGE_PID=
stop() {
  trap - EXIT INT TERM
  echo
  echo "demo: stopping the agents, the bridge, puppetserver and the databases"
  local pid
  for pid in "${AGENT_PIDS[@]}" $BRIDGE_PID; do
    kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  done
  bash "$ENV_SH" server-down "$E2E_DIR" || true
  "$BIN/pvc-pg" down --dir "$PG_DIR" >/dev/null || true
}
trap stop EXIT
trap 'exit 130' INT TERM

mkdir -p "$DEMO_DIR"
rm -rf "$E2E_DIR/agents"
quiet() {
  local out
  out=$("$@" 2>&1) || {
    echo "$out" >&2
    echo "demo: failed: $*" >&2
    exit 1
  }
}
quiet "$BIN/pvc-pg" up --dir "$PG_DIR" --foreman-db foreman
set -a
# shellcheck disable=SC1091
. "$PG_DIR/env"
set +a
quiet "$BIN/pvc-bridge" migrate

bridge_url=https://localhost:$BRIDGE_PORT
echo "demo: starting puppetserver on 127.0.0.1:$PUPPET_PORT (30-120 s; the first start creates its CA)"
bash "$ENV_SH" server-up "$E2E_DIR" "$PUPPET_PORT" 2 "$bridge_url"
set -a
# shellcheck disable=SC1091
. "$E2E_DIR/server.env"
set +a
cert_pair=$(bash "$ENV_SH" cert "$E2E_DIR" pvc-bridge.test localhost 2>/dev/null)
BRIDGE_CERT=$(echo "$cert_pair" | sed -n 's/^CERT=//p')
BRIDGE_KEY=$(echo "$cert_pair" | sed -n 's/^KEY=//p')

# The bridge: HTTPS with its Puppet certificate, client certificates from
# the Puppet CA (nodes for /host, /facts, /report; puppet.test for the ENC
# and the config reports), puppetserver's capacity from its status API.
ADMIN_TOKEN_FILE=$DEMO_DIR/admin.token
if [ ! -s "$ADMIN_TOKEN_FILE" ]; then
  (umask 077 && head -c 32 /dev/urandom | base64 | tr -d '/+=\n' >"$ADMIN_TOKEN_FILE")
fi
CONFIG=$DEMO_DIR/bridge.toml
cat >"$CONFIG" <<TOML
listen = "127.0.0.1:$BRIDGE_PORT"
[tls]
cert_file = "$BRIDGE_CERT"
key_file = "$BRIDGE_KEY"
client_ca_file = "$PUPPET_CA"
client_crl_files = ["$PUPPET_CRL"]
[access]
server_certnames = ["$PUPPET_CERTNAME"]
admin_token_file = "$ADMIN_TOKEN_FILE"
[enc]
# The fixture's Foreman ran with this foreman_url.
foreman_url = "https://localhost.localdomain.net"
[scheduler]
target_period_secs = 300
min_interval_secs = 120
max_interval_secs = 600
check_interval_secs = 20
status_ca_file = "$PUPPET_CA"
status_cert_file = "$BRIDGE_CERT"
status_key_file = "$BRIDGE_KEY"
[[scheduler.servers]]
name = "localhost"
status_url = "https://localhost:$PUPPET_PORT"
TOML
export PVC_CONFIG=$CONFIG

# Three fixture hosts as Puppet nodes under pvc-agent; each watches the two
# files Puppet manages for it (a Foreman host parameter, as an operator
# would set it).
AGENT_HOSTS=$(head -n3 tests/fixtures/foreman/hosts.txt)
val() { sed -n "s/^$1=//p" "$a/agent.env"; }
for h in $AGENT_HOSTS; do
  bash "$ENV_SH" agent "$E2E_DIR" "$h" 2>/dev/null
  a=$E2E_DIR/agents/$h
  mkdir -p "$a/spool"
  cat >"$a/pvc.conf" <<CONF
bridge_url=$bridge_url
certname=$h
puppet_command=$(val PUPPET_COMMAND)
facter_command=$(val FACTER_COMMAND)
ssl_cert=$(val SSL_CERT)
ssl_key=$(val SSL_KEY)
ssl_ca=$(val SSL_CA)
ssl_crl=$(val SSL_CRL)
spool_dir=$a/spool
info=1
warnings=1
CONF
  "$PSQL" -q "$PVC_DATABASE__PRIMARY" -c "INSERT INTO parameters (type, reference_id, name, key_type, value, created_at, updated_at)
      SELECT 'HostParameter', id, 'pvc_files_monitored', 'string', '$(val CONTENT_FILE) $(val SOURCE_FILE)', now(), now()
      FROM hosts WHERE name = '$h'"
done
first=$(echo "$AGENT_HOSTS" | head -n1)
fa=$E2E_DIR/agents/$first

"$BIN/pvc-bridge" serve > >(sed -u 's/^/pvc-bridge: /') 2>&1 &
BRIDGE_PID=$!
for _ in $(seq 100); do
  curl -fsS --cacert "$PUPPET_CA" --cert "$PUPPET_SERVER_CERT" --key "$PUPPET_SERVER_KEY" \
    "$bridge_url/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
# Each node's first Puppet run (as when it was provisioned), so that the
# files it watches exist; from then on pvc-agent runs Puppet.
echo "demo: first Puppet run of $(echo $AGENT_HOSTS | tr ' ' ',')"
FIRST=()
for h in $AGENT_HOSTS; do
  "$E2E_DIR/agents/$h/bin/puppet" agent -t --detailed-exitcodes >"$E2E_DIR/agents/$h/first-run.log" 2>&1 &
  FIRST+=($!)
done
for i in "${!FIRST[@]}"; do
  rc=0
  wait "${FIRST[$i]}" || rc=$?
  [ "$rc" = 0 ] || [ "$rc" = 2 ] || echo "demo: a first Puppet run exited $rc (see $E2E_DIR/agents/*/first-run.log)" >&2
done
for h in $AGENT_HOSTS; do
  "$BIN/pvc-agent" --config "$E2E_DIR/agents/$h/pvc.conf" run \
    > >(sed -u "s/^/pvc-agent $h: /") 2>&1 &
  AGENT_PIDS+=($!)
done

cat <<MSG

pvc-bridge with real Puppet:
  bridge        $bridge_url (mutual TLS with the Puppet CA; reads the replica $PVC_DATABASE__REPLICAS)
  puppetserver  127.0.0.1:$PUPPET_PORT, the bridge as its ENC and report destination ($E2E_DIR/server)
  agents        $(echo $AGENT_HOSTS | tr ' ' ','): real Puppet under pvc-agent,
                each in $E2E_DIR/agents/<host>

Try, in another terminal:
  # what Puppet wrote from the ENC: a file with content =>, one with source =>, one record per ENC class
  cat $fa/out/managed/content.conf $fa/out/managed/source.conf
  ls $fa/out/classes
  # tamper with a watched file: pvc-agent asks at once, the bridge grants a run, Puppet restores it
  echo tampered > $fa/out/managed/content.conf; sleep 6; cat $fa/out/managed/content.conf
  # a rollout flag set in Foreman reaches the next run as FACTER_UPDATE_FLAG (forced here by a tamper)
  $PSQL '$PVC_DATABASE__PRIMARY' -c "INSERT INTO parameters (type, reference_id, name, key_type, value, created_at, updated_at) SELECT 'HostParameter', id, 'update_flag', 'boolean', 'true', now(), now() FROM hosts WHERE name = '$first'"
  echo tampered > $fa/out/managed/source.conf; sleep 6; cat $fa/out/update_flag.txt
  # the agent's view, the ENC as puppetserver reads it, the reports the server posted
  $BIN/pvc-agent --config $fa/pvc.conf check
  curl -s --cacert $PUPPET_CA --cert $PUPPET_SERVER_CERT --key $PUPPET_SERVER_KEY '$bridge_url/node/$first?format=yml' | head
  $PSQL '$PVC_DATABASE__PRIMARY' -c "SELECT id, certname, reported_at, report->'status' AS status FROM pvc.config_reports ORDER BY id DESC LIMIT 5"
  # puppetserver's JRuby pool (its status API) and the run rate the bridge derives from it
  bash $ENV_SH jruby $E2E_DIR | head -c 300; echo
  curl -s --cacert $PUPPET_CA --cert $PUPPET_SERVER_CERT --key $PUPPET_SERVER_KEY '$bridge_url/metrics' | grep '^pvc_bridge_server'
  # the server's log: compiles, ENC calls, reports posted to the bridge
  tail -f $PUPPET_LOG
Ctrl-C stops the agents, the bridge, puppetserver and the databases.

MSG
wait "$BRIDGE_PID"
