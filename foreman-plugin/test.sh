#!/usr/bin/env bash
# foreman_pvc's tests, on Debian's ruby, rails and minitest (no bundler, no
# rubygems.org): the rollout domain in a process without Rails, then the
# engine in a dummy Rails app on a real PostgreSQL primary holding a copy of
# the Foreman 3.13 fixture database (pvc-testkit's pvc-pg), which this
# script starts and stops. Ends with one line:
#   foreman-plugin: N runs, M assertions, F failures
# and exits non-zero when anything failed, errored, was skipped or did not run.
set -euo pipefail
cd "$(dirname "$0")"
plugin=$(pwd)
repo=$(cd .. && pwd)

# Debian's packages (as root, only when something is missing).
if ! ruby -e 'require "rails"; require "pg"; require "minitest"; require "mocha/minitest"; require "webmock"' \
    >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "foreman-plugin: ruby packages missing; as root: apt-get install ruby ruby-rails ruby-minitest ruby-pg ruby-mocha ruby-webmock rake" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends ruby ruby-rails ruby-minitest ruby-pg ruby-mocha ruby-webmock rake >/dev/null
fi

work=$(mktemp -d /tmp/foreman-plugin-test.XXXXXX)
chmod 755 "$work" # the PostgreSQL servers run as user postgres
pvc_pg() { (cd "$repo" && cargo run -q -p pvc-testkit --bin pvc-pg -- "$@"); }
cleanup() {
  pvc_pg down --dir "$work/pg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# A primary + replica with database `foreman` from the Foreman fixture: the
# plugin's migrations run where they will run in production, beside
# Foreman's own tables.
pvc_pg up --dir "$work/pg" --foreman-db foreman >"$work/pg-up.log" 2>&1 || {
  cat "$work/pg-up.log" >&2
  echo "foreman-plugin: could not start PostgreSQL" >&2
  exit 1
}
DATABASE_URL=$(sed -n 's/^PVC_DATABASE__PRIMARY=//p' "$work/pg/env" | head -n 1)
export DATABASE_URL

status=0
run_suite() { # name, test file glob
  local log="$work/$1.log"
  echo "== foreman-plugin: $1 tests"
  BUNDLE_GEMFILE=/nonexistent ruby -W0 -Itest -Ilib \
    -e 'ARGV.each { |f| require File.expand_path(f) }' $2 2>&1 | tee "$log" || status=1
  if ! grep -Eq '^[0-9]+ runs, [0-9]+ assertions, [0-9]+ failures, [0-9]+ errors, [0-9]+ skips' "$log"; then
    echo "foreman-plugin: the $1 tests did not finish" >&2
    echo "0 runs, 0 assertions, 1 failures, 0 errors, 0 skips (the $1 tests did not finish)" >>"$log"
    status=1
  fi
}
run_suite domain "$(ls test/unit/rollout/*_test.rb | tr '\n' ' ')"
run_suite engine "$(ls test/engine/*_test.rb | tr '\n' ' ')"

awk '/^[0-9]+ runs, [0-9]+ assertions, / { r += $1; a += $3; f += $5 + $7; s += $9 }
     END { printf "foreman-plugin: %d runs, %d assertions, %d failures\n", r, a, f;
           if (f > 0 || s > 0 || r == 0) exit 1 }' "$work"/domain.log "$work"/engine.log || status=1
exit "$status"
