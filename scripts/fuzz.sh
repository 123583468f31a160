#!/usr/bin/env bash
# Builds every fuzz target of fuzz/ (docs/fuzzing.md) and runs each for a
# bounded time: FUZZ_SECS seconds (default 20), FUZZ_JOBS targets at a time
# (default: one per core). Prints one line per target,
#   fuzz: <target>: <N> executions in <S> s, no crash
# and exits non-zero, naming the saved crashing input, if any target finds
# a crash, a hang (over FUZZ_TIMEOUT s for one input, default 10) or runs
# out of memory. Corpus growth goes to a temporary directory; crashing
# inputs are kept in fuzz/artifacts/<target>/ (git-ignored).
#
# Stable Rust only: `--sanitizer none` keeps cargo-fuzz from passing
# `-Zsanitizer=address`, the one flag that needs a nightly compiler (or
# RUSTC_BOOTSTRAP=1). The code under test has no `unsafe` of its own
# (`unsafe_code = "forbid"`), so what the fuzzers look for are panics,
# aborts, hangs and runaway memory, which libFuzzer catches without a
# sanitizer; AddressSanitizer would also double the build and run time.
# `--codegen-units 16` instead of cargo-fuzz's default of 1: the cold
# build of the bridge's dependencies dominates CI time on two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export PATH="$HOME/.cargo/bin:$PATH"

secs=${FUZZ_SECS:-20}
jobs=${FUZZ_JOBS:-$(nproc)}
timeout=${FUZZ_TIMEOUT:-10}
flags=(--sanitizer none --codegen-units 16)
triple=x86_64-unknown-linux-gnu

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

started=$(date +%s)
cargo fuzz build "${flags[@]}"
mapfile -t targets < <(cargo fuzz list)
echo "fuzz: built ${#targets[@]} targets in $(($(date +%s) - started)) s"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The configuration targets write their input to a file under TMPDIR.
export TMPDIR=$work
mkdir -p fuzz/artifacts

# Which dictionary helps which target (fuzz/dict/).
dictionary() {
  case $1 in
    certname) ;;
    config) echo fuzz/dict/bridge_toml.dict ;;
    agent_config) echo fuzz/dict/pvc_conf.dict ;;
    host_answer) echo fuzz/dict/host_answer.dict ;;
    *) echo fuzz/dict/json.dict ;;
  esac
}

# Runs one target; its output goes to $work/<target>.log.
run() {
  local target=$1 dict
  dict=$(dictionary "$target")
  mkdir -p "$work/corpus/$target" "fuzz/artifacts/$target"
  # The first corpus directory receives what the run adds; the checked-in
  # seeds and past findings (fuzz/regressions/) are only read, and run
  # first.
  local corpora=("$work/corpus/$target" "$root/fuzz/corpus/$target")
  if [ -d "fuzz/regressions/$target" ]; then
    corpora+=("$root/fuzz/regressions/$target")
  fi
  "$root/fuzz/target/$triple/release/$target" "${corpora[@]}" \
    -max_total_time="$secs" -timeout="$timeout" -print_final_stats=1 \
    -artifact_prefix="$root/fuzz/artifacts/$target/" \
    ${dict:+-dict="$root/$dict"} \
    >"$work/$target.log" 2>&1
}

# Prints a finished target's line; returns non-zero on a finding.
report() {
  local target=$1 status=$2 log=$work/$1.log executions seconds artifact
  executions=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\)$/\1/p' "$log" | tail -n1)
  seconds=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n1)
  if [ "$status" -eq 0 ] && [ -n "$executions" ]; then
    echo "fuzz: $target: $executions executions in ${seconds:-$secs} s, no crash"
    return 0
  fi
  artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n1)
  echo "fuzz: $target: FAILED (exit $status) after ${executions:-?} executions" >&2
  tail -n 60 "$log" >&2
  if [ -n "$artifact" ]; then
    echo "fuzz: $target: crashing input: $artifact" >&2
    echo "fuzz: reproduce with: cargo fuzz run ${flags[*]} $target $artifact" >&2
  fi
  return 1
}

failed=0
pending=("${targets[@]}")
while [ ${#pending[@]} -gt 0 ]; do
  batch=("${pending[@]:0:$jobs}")
  pending=("${pending[@]:$jobs}")
  pids=()
  for target in "${batch[@]}"; do
    run "$target" &
    pids+=($!)
  done
  for i in "${!batch[@]}"; do
    status=0
    wait "${pids[$i]}" || status=$?
    report "${batch[$i]}" "$status" || failed=1
  done
done

echo "fuzz: ${#targets[@]} targets, ${secs} s each, $(($(date +%s) - started)) s in all"
if [ "$failed" -ne 0 ]; then
  echo "fuzz: a target failed; see above" >&2
  exit 1
fi
