#!/usr/bin/env bash
# `make bench-e2e`: the real-Puppet end-to-end suite (tests/tests/puppet.rs)
# run once as a measurement: how long a tampered monitored file stays
# tampered under pvc-agent (a forced full run with server capacity, a forced
# cached-catalog run without), beside the Puppet run that restored it (the
# floor, measured in the same run), and the compile load the puppetserver's
# status API showed against the budget the bridge derived from it. The
# suite's assertions still apply; the numbers go to the `e2e` section of
# docs/benchmarks.md. Needs root (puppetserver, agents) like the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_init e2e
fact bench e2e
machine_facts
fact puppetserver "$(dpkg-query -W -f '${Version}' puppetserver 2>/dev/null || echo missing)"
fact puppet_agent "$(dpkg-query -W -f '${Version}' puppet-agent 2>/dev/null || echo missing)"

log "running the real-Puppet suite (2-5 minutes); its output: $RUN_DIR/suite.log"
PUPPET=1 bash scripts/install-deps.sh >/dev/null
cargo test -q -p pvc-tests --test puppet -- --nocapture >"$RUN_DIR/suite.log" 2>&1 || {
  tail -40 "$RUN_DIR/suite.log" >&2
  log "the suite failed; nothing written"
  exit 1
}
bench_report
