#!/usr/bin/env bash
# The supply-chain check of `make test` (policy: deny.toml; what to do about
# a finding: docs/supply-chain.md):
#   licenses, bans, sources  offline, over Cargo.lock
#   advisories               against the RustSec database: a clone named by
#                            ADVISORY_DB if set, else the checked-in slice
#                            deny/advisories (scripts/advisory-snapshot.sh),
#                            refused when a locked crate has advisories the
#                            slice does not carry.
# Installs cargo-deny from crates.io when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
DENY_VERSION=0.20.2

if ! cargo deny --version 2>/dev/null | grep -q " $DENY_VERSION\$"; then
  echo "deny: installing cargo-deny $DENY_VERSION from crates.io (a few minutes, once)"
  cargo install --locked --quiet cargo-deny --version "$DENY_VERSION"
fi

cargo deny --log-level error check licenses bans sources

# cargo-deny opens its database as a git repository at a path derived from
# the database URL; the slice is turned into one, dated as its source.
db_root=target/deny/advisory-dbs
db=$db_root/advisory-db-3157b0e258782691
rm -rf "$db"
mkdir -p "$db"
if [ -n "${ADVISORY_DB:-}" ]; then
  src=$ADVISORY_DB
  [ -d "$src/.git" ] && src=$src/.git
  git --git-dir="$src" archive HEAD | tar -x -C "$db"
  source_line="$ADVISORY_DB at $(git --git-dir="$src" rev-parse --short HEAD), $(git --git-dir="$src" log -1 --format=%cI HEAD)"
  date=$(git --git-dir="$src" log -1 --format=%cI HEAD)
else
  slice=deny/advisories
  read -r _ commit date <"$slice/SOURCE"
  # A locked crate the database has advisories for must be in the slice.
  missing=$(cat Cargo.lock fuzz/Cargo.lock 2>/dev/null | sed -n 's/^name = "\(.*\)"$/\1/p' | sort -u |
    comm -12 "$slice/INDEX" - | while read -r crate; do
      [ -d "$slice/crates/$crate" ] || echo "$crate"
    done)
  if [ -n "$missing" ]; then
    echo "deny: the advisory slice lacks crates now locked: $(echo "$missing" | tr '\n' ' ')" >&2
    echo "deny: refresh it: scripts/advisory-snapshot.sh <clone of https://github.com/rustsec/advisory-db>" >&2
    exit 1
  fi
  cp -r "$slice/crates" "$db/crates"
  source_line="deny/advisories (rustsec/advisory-db ${commit:0:12}, $date)"
fi
(
  cd "$db"
  git init -q
  git add -A
  GIT_AUTHOR_DATE=$date GIT_COMMITTER_DATE=$date git -c user.name=pvc -c user.email=pvc@localhost commit -q -m "advisory database"
)
echo "deny: advisories from $source_line"
cargo deny --log-level error --offline check advisories
