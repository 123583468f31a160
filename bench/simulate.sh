#!/usr/bin/env bash
# `make bench` (and `make bench-simulate`): the scheduler's simulated day,
# `pvc-bridge simulate`, with its two baselines in the same run: Puppet's
# agent daemon (`runinterval` + splay) and cron with an fqdn_rand minute.
# NOT a test: it measures and rewrites the `simulate` section of
# docs/benchmarks.md (and docs/bench/simulate-*.png); docs/scheduling.md
# explains the model.
#
# Knobs (environment): SIM_ARGS (extra `pvc-bridge simulate` options, e.g.
# "--hosts 20000 --hours 6" for a quick look; the default is the documented
# day: 100,000 hosts on 4 x 24 JRubies, 24 h).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
SIM_ARGS=${SIM_ARGS:-}

# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_init simulate
fact bench simulate
bash scripts/install-deps.sh >/dev/null
machine_facts SIM_ARGS
log "building (release)"
cargo build --release -q -p pvc-bridge
mkdir -p "$RUN_DIR/sim"
log "simulating (about a minute on 2 cores); progress in $RUN_DIR/sim/stderr.log"
t=$(now)
# shellcheck disable=SC2086 # SIM_ARGS is a list of options
target/release/pvc-bridge simulate --out "$RUN_DIR/sim" $SIM_ARGS \
  >"$RUN_DIR/sim/stdout.md" 2>"$RUN_DIR/sim/stderr.log" || {
  tail -20 "$RUN_DIR/sim/stderr.log" >&2
  log "simulate failed; nothing written"
  exit 1
}
fact wall_s "$(since "$t")"
bench_report
