#!/usr/bin/env bash
# Runs every crate's tests (`make test`) and ends with one line totalling all
# test binaries, e.g. `tests: 74 passed, 0 failed`, so the outcome reads at
# a glance instead of from the last of many per-binary summaries.
set -uo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --all-targets "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
