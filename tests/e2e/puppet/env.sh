#!/usr/bin/env bash
# The real-Puppet end-to-end environment: Debian's puppetserver (without
# systemd, on loopback, with its own CA and autosigning) using the bridge as
# its ENC (node.rb) and report destination (report processor pvc_foreman),
# and simulated nodes, each with its own Puppet directories and certificate.
# Everything lives under DIR; nothing in /etc is changed. Runs as root.
#
#   env.sh install
#   env.sh server-up DIR PORT JRUBIES BRIDGE_URL   # writes DIR/server.env
#   env.sh cert DIR CERTNAME [DNS_ALT_NAMES]       # prints CERT=… and KEY=…
#   env.sh agent DIR CERTNAME                      # writes DIR/agents/CERTNAME/agent.env
#   env.sh server-down DIR
#   env.sh jruby DIR                               # prints the jruby-metrics status JSON
#
# stdout carries only what is stated above; diagnostics go to stderr.
# The pitfalls handled here (TLS 1.2 only, facter in a sandbox, per-node
# publicdir, max-retry-delay, setsid) are described in README.md.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SERVER_CERTNAME=puppet.test
READY_TIMEOUT_SECS=${PUPPET_READY_TIMEOUT_SECS:-300}
# Autosigning answers at once; a request the CA refuses fails within a
# minute instead of being retried forever.
BOOTSTRAP_WAIT="--waitforcert 5 --maxwaitforcert 60"

log() { echo "env.sh: $*" >&2; }
die() {
  log "$*"
  exit 1
}

# DIR as an absolute path. Paths end up unquoted in KEY=value files and in
# puppet.conf, so only plain characters are allowed.
absdir() {
  local d
  d=$(realpath -m "$1")
  [[ $d =~ ^/[A-Za-z0-9._/+-]+$ ]] || die "DIR must be a plain path (letters, digits, ._/+-): $d"
  echo "$d"
}

need_root() { [ "$(id -u)" = 0 ] || die "must run as root"; }

cmd_install() {
  need_root
  if dpkg -s puppetserver puppet-agent facter >/dev/null 2>&1; then
    return 0
  fi
  log "installing puppetserver puppet-agent facter"
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q puppetserver puppet-agent facter curl >&2
}

# The nsrun wrapper (facter in a gVisor sandbox): root gets EACCES on
# /proc/1/environ there, which makes facter fail; a private mount namespace
# with an empty file bound over it fixes that. Not --pid --mount-proc: every
# run would be PID 1 and Puppet's run lock would stop working.
write_nsrun() {
  local bin=$1
  mkdir -p "$bin"
  [ -e "$bin/empty-environ" ] || : >"$bin/empty-environ"
  # Written to a temporary file and renamed: another node's bootstrap may be
  # running the current one ("Text file busy" when rewritten in place).
  cat >"$bin/nsrun.$$" <<'EOF'
#!/bin/sh
if cat /proc/1/environ >/dev/null 2>&1; then exec "$@"; fi
exec unshare --mount --propagation private sh -c 'mount --bind "$0" /proc/1/environ && exec "$@"' "$(dirname "$0")/empty-environ" "$@"
EOF
  chmod +x "$bin/nsrun.$$"
  mv -f "$bin/nsrun.$$" "$bin/nsrun"
}

server_env() {
  local dir=$1
  [ -f "$dir/server.env" ] || die "no $dir/server.env: run server-up first"
  # shellcheck disable=SC1091
  . "$dir/server.env"
}

server_running() {
  local pid
  pid=$(cat "$1/server/run/puppetserver.pid" 2>/dev/null) || return 1
  kill -0 "$pid" 2>/dev/null
}

cmd_server_up() {
  [ $# = 4 ] || die "usage: env.sh server-up DIR PORT JRUBIES BRIDGE_URL"
  need_root
  local dir port jrubies bridge_url srv
  dir=$(absdir "$1")
  port=$2 jrubies=$3 bridge_url=$4
  [[ $port =~ ^[0-9]+$ ]] || die "PORT must be a number: $port"
  [[ $jrubies =~ ^[1-9][0-9]*$ ]] || die "JRUBIES must be a positive number: $jrubies"
  [[ $bridge_url =~ ^https?://[^[:space:]]+$ ]] || die "BRIDGE_URL must be an http(s) URL: $bridge_url"
  srv=$dir/server
  server_running "$dir" && die "a puppetserver from $dir is already running (pid $(cat "$srv/run/puppetserver.pid"))"
  dpkg -s puppetserver >/dev/null 2>&1 || die "puppetserver is not installed: run env.sh install"

  # The CA (ca/, ssl/) of an earlier start is kept, with the agents it
  # signed; everything else is written again.
  rm -rf "$srv/conf.d" "$srv/services.d" "$srv/code" "$srv/bin" "$srv/run"
  mkdir -p "$srv"/{conf.d,services.d,puppet,code,ssl,ca,var,run,log,bin}
  write_nsrun "$dir/bin"

  cp /etc/puppet/puppetserver/services.d/*.cfg "$srv/services.d/"
  cp /etc/puppet/puppetserver/conf.d/{auth,metrics,web-routes}.conf "$srv/conf.d/"
  sed "s#/var/log/puppetserver#$srv/log#g" /etc/puppet/puppetserver/logback.xml >"$srv/logback.xml"
  sed "s#/var/log/puppetserver#$srv/log#g" /etc/puppet/puppetserver/request-logging.xml >"$srv/request-logging.xml"
  echo "global: { logging-config: $srv/logback.xml }" >"$srv/conf.d/global.conf"
  cat >"$srv/conf.d/ca.conf" <<EOF
certificate-authority: {
    # the bridge's certificate carries DNS alt names (localhost)
    allow-subject-alt-names: true
    # a node made again under a kept CA gets a new certificate (instead of
    # its request waiting forever for a signature that never comes)
    allow-duplicate-certs: true
}
EOF
  cat >"$srv/conf.d/webserver.conf" <<EOF
webserver: {
    access-log-config: $srv/request-logging.xml
    client-auth: want
    # TLS 1.3 + Ruby Net::HTTP keep-alive stall every new agent for 30 s
    # (ruby bug #19017): TLS 1.2 only.
    ssl-protocols: [TLSv1.2]
    ssl-host: 127.0.0.1
    ssl-port: $port
}
EOF
  cat >"$srv/conf.d/puppetserver.conf" <<EOF
jruby-puppet: {
    ruby-load-path: [/usr/lib/puppetserver/ruby/vendor_ruby]
    gem-home: /var/lib/puppetserver/jruby-gems
    gem-path: [\${jruby-puppet.gem-home}, "/usr/lib/puppetserver/vendored-jruby-gems"]
    server-conf-dir: $srv/puppet
    server-code-dir: $srv/code
    server-var-dir: $srv/var
    server-run-dir: $srv/run
    server-log-dir: $srv/log
    max-active-instances: $jrubies
    # Retry-After of a 503 is random up to this (default 1800 s)
    max-retry-delay: 3
}
http-client: { }
profiler: { }
EOF
  # /metrics/v2 (Jolokia) without a client certificate, like the status API.
  ruby - "$srv/conf.d/auth.conf" <<'RUBY'
path = ARGV[0]
text = File.read(path)
rule = <<~HOCON.chomp
  rules: [
          { match-request: { path: "/metrics/v2", type: path }
            allow-unauthenticated: true, sort-order: 400, name: "e2e metrics v2" },
HOCON
abort "env.sh: unexpected auth.conf layout: #{path}" unless text.scan('    rules: [').size == 1
File.write(path, text.sub('rules: [', rule))
RUBY
  cat >"$srv/puppet/puppet.conf" <<EOF
[main]
certname = $SERVER_CERTNAME
dns_alt_names = localhost,$SERVER_CERTNAME
server = localhost
serverport = $port
ssldir = $srv/ssl
[server]
cadir = $srv/ca
autosign = true
node_terminus = exec
external_nodes = $srv/bin/node.rb
reports = store,pvc_foreman
EOF
  # Settings of the ENC script and the report processor (Foreman's
  # foreman.yaml): the ENC reads the one beside it, the report processor the
  # one in the server's confdir.
  cat >"$srv/puppet/foreman.yaml" <<EOF
---
:url: "$bridge_url"
:ssl_ca: "$srv/ssl/certs/ca.pem"
:ssl_cert: "$srv/ssl/certs/$SERVER_CERTNAME.pem"
:ssl_key: "$srv/ssl/private_keys/$SERVER_CERTNAME.pem"
:timeout: 10
:report_timeout: 10
:enc_log: "$srv/log/enc.log"
EOF
  ln -s ../puppet/foreman.yaml "$srv/bin/foreman.yaml"
  install -m 0755 "$HERE/node.rb" "$srv/bin/node.rb"
  : >"$srv/log/enc.log"
  cp -r "$HERE/code/." "$srv/code/"

  echo -n 0 >"$srv/run/restart"
  local t0 pid
  t0=$(date +%s)
  # setsid, not nohup: nohup makes the JVM ignore SIGHUP (trapperkeeper's
  # reload). C1 only (TieredStopAtLevel=1) starts faster on 2 cores.
  setsid /usr/bin/java -Xms512m -Xmx1g -XX:TieredStopAtLevel=1 \
    --add-opens java.base/sun.nio.ch=ALL-UNNAMED --add-opens java.base/java.io=ALL-UNNAMED \
    -Djruby.logger.class=com.puppetlabs.jruby_utils.jruby.Slf4jLogger -Dlogappender=STDOUT \
    -Djruby.lib=/usr/share/jruby/lib -XX:+CrashOnOutOfMemoryError \
    -jar /usr/share/puppetserver/puppetserver.jar \
    --config "$srv/conf.d" --bootstrap-config "$srv/services.d" --restart-file "$srv/run/restart" \
    >"$srv/log/stdout.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$srv/run/puppetserver.pid"
  log "puppetserver starting (pid $pid, port $port, log $srv/log/stdout.log)"

  # Ready when trapperkeeper writes 1 into the restart file (what systemd's
  # ExecStartPost waits for) and the status API says running.
  local deadline=$((t0 + READY_TIMEOUT_SECS))
  until [ "$(head -c1 "$srv/run/restart" 2>/dev/null)" = 1 ] &&
    [ "$(curl -sk --max-time 5 "https://127.0.0.1:$port/status/v1/simple" 2>/dev/null)" = running ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 40 "$srv/log/stdout.log" >&2
      die "puppetserver exited during start"
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      tail -n 40 "$srv/log/stdout.log" >&2
      cmd_server_down "$dir"
      die "puppetserver not ready within ${READY_TIMEOUT_SECS}s"
    fi
    sleep 0.5
  done
  log "puppetserver ready after $(($(date +%s) - t0))s"

  cat >"$dir/server.env" <<EOF
PUPPET_PORT=$port
PUPPET_PID=$pid
PUPPET_CERTNAME=$SERVER_CERTNAME
PUPPET_CA=$srv/ssl/certs/ca.pem
PUPPET_CRL=$srv/ca/ca_crl.pem
PUPPET_SERVER_CERT=$srv/ssl/certs/$SERVER_CERTNAME.pem
PUPPET_SERVER_KEY=$srv/ssl/private_keys/$SERVER_CERTNAME.pem
PUPPET_LOG=$srv/log/stdout.log
PUPPET_ENC_LOG=$srv/log/enc.log
EOF
}

cmd_server_down() {
  [ $# = 1 ] || die "usage: env.sh server-down DIR"
  local dir pid
  dir=$(absdir "$1")
  pid=$(cat "$dir/server/run/puppetserver.pid" 2>/dev/null) || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "puppetserver (pid $pid) still running after 30s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  # Its process group (setsid: the group id is its pid): an ENC call in flight.
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$dir/server/run/puppetserver.pid"
}

cmd_jruby() {
  [ $# = 1 ] || die "usage: env.sh jruby DIR"
  local dir
  dir=$(absdir "$1")
  server_env "$dir"
  curl -skf --max-time 10 "https://127.0.0.1:$PUPPET_PORT/status/v1/services/jruby-metrics?level=debug"
  echo
}

# A Puppet confdir for CERTNAME under BASE, whose certificate is bootstrapped
# from the running server's CA (autosigned).
write_puppet_conf() {
  local base=$1 certname=$2 port=$3 alt_names=$4
  mkdir -p "$base"/{conf,var,ssl,run,log,public,code}
  {
    echo "[main]"
    echo "certname = $certname"
    [ -z "$alt_names" ] || echo "dns_alt_names = $alt_names"
    echo "server = localhost"
    echo "serverport = $port"
    echo "vardir = $base/var"
    echo "ssldir = $base/ssl"
    echo "rundir = $base/run"
    echo "logdir = $base/log"
    echo "codedir = $base/code"
    # Debian's default is /var/cache/puppet/public, shared by every node
    echo "publicdir = $base/public"
    # puppet.conf has no trailing comments: runinterval also caps the
    # agent's sleep on a 503's Retry-After
    echo "[agent]"
    echo "runinterval = 10"
  } >"$base/conf/puppet.conf"
}

cmd_cert() {
  [ $# = 2 ] || [ $# = 3 ] || die "usage: env.sh cert DIR CERTNAME [DNS_ALT_NAMES]"
  need_root
  local dir certname alt base
  dir=$(absdir "$1")
  certname=$2 alt=${3:-}
  [[ $certname =~ ^[a-z0-9][a-z0-9._-]*$ ]] || die "bad certname: $certname"
  server_env "$dir"
  base=$dir/certs/$certname
  if [ ! -s "$base/ssl/certs/$certname.pem" ]; then
    write_puppet_conf "$base" "$certname" "$PUPPET_PORT" "$alt"
    write_nsrun "$dir/bin"
    "$dir/bin/nsrun" /usr/bin/puppet ssl bootstrap --confdir "$base/conf" $BOOTSTRAP_WAIT >&2 ||
      die "certificate for $certname not issued"
  fi
  echo "CERT=$base/ssl/certs/$certname.pem"
  echo "KEY=$base/ssl/private_keys/$certname.pem"
}

cmd_agent() {
  [ $# = 2 ] || die "usage: env.sh agent DIR CERTNAME"
  need_root
  local dir certname a
  dir=$(absdir "$1")
  certname=$2
  [[ $certname =~ ^[a-z0-9][a-z0-9._-]*$ ]] || die "bad certname: $certname"
  server_env "$dir"
  a=$dir/agents/$certname
  write_puppet_conf "$a" "$certname" "$PUPPET_PORT" ""
  mkdir -p "$a/bin" "$a/out"
  write_nsrun "$dir/bin"
  # The node's puppet and facter: its confdir, the sandbox fix, the fact
  # pvc_e2e_root (the only place the Puppet code writes for it), and the
  # node's own name in the fqdn facts (not the machine's).
  local facts
  facts="FACTER_pvc_e2e_root=$a/out FACTER_fqdn=$certname FACTER_hostname=${certname%%.*}"
  [ "$certname" = "${certname#*.}" ] || facts="$facts FACTER_domain=${certname#*.}"
  cat >"$a/bin/puppet" <<EOF
#!/bin/sh
export $facts
exec $dir/bin/nsrun /usr/bin/puppet "\$@" --confdir $a/conf
EOF
  cat >"$a/bin/facter" <<EOF
#!/bin/sh
export $facts
exec $dir/bin/nsrun /usr/bin/facter "\$@"
EOF
  chmod +x "$a/bin/puppet" "$a/bin/facter"
  if [ ! -s "$a/ssl/certs/$certname.pem" ]; then
    "$a/bin/puppet" ssl bootstrap $BOOTSTRAP_WAIT >&2 || die "certificate for $certname not issued"
  fi
  cat >"$a/agent.env" <<EOF
PUPPET_COMMAND=$a/bin/puppet
FACTER_COMMAND=$a/bin/puppet facts show --render-as json
SSL_CERT=$a/ssl/certs/$certname.pem
SSL_KEY=$a/ssl/private_keys/$certname.pem
SSL_CA=$a/ssl/certs/ca.pem
SSL_CRL=$a/ssl/crl.pem
OUT=$a/out
CONTENT_FILE=$a/out/managed/content.conf
SOURCE_FILE=$a/out/managed/source.conf
EOF
}

main() {
  [ $# -ge 1 ] || die "usage: env.sh install|server-up|cert|agent|server-down|jruby …"
  local sub=$1
  shift
  case $sub in
  install) cmd_install "$@" ;;
  server-up) cmd_server_up "$@" ;;
  server-down) cmd_server_down "$@" ;;
  cert) cmd_cert "$@" ;;
  agent) cmd_agent "$@" ;;
  jruby) cmd_jruby "$@" ;;
  *) die "unknown subcommand: $sub" ;;
  esac
}

main "$@"
