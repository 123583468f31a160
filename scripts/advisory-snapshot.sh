#!/usr/bin/env bash
# Refreshes deny/advisories, the slice of the RustSec advisory database that
# `make test` checks the dependencies against where GitHub is out of reach:
#   deny/advisories/crates/<crate>/*.md  every advisory of a crate in a
#                                        Cargo.lock of this repository
#   deny/advisories/INDEX                every crate the database has any
#                                        advisory for (so a new dependency
#                                        with advisories is noticed)
#   deny/advisories/SOURCE               the database commit and its date
#
# Usage: scripts/advisory-snapshot.sh <advisory-db: a clone, or its .git dir>
#        (git clone https://github.com/rustsec/advisory-db)
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:?usage: $0 <advisory-db clone or git dir>}
if [ -d "$src/.git" ]; then src=$src/.git; fi
git="git --git-dir=$src"
commit=$($git rev-parse HEAD)
date=$($git log -1 --format=%cI HEAD)

out=deny/advisories
rm -rf "$out"
mkdir -p "$out/crates"
$git ls-tree -d --name-only HEAD crates/ | sed 's#^crates/##' | sort >"$out/INDEX"
# Every crate name in every lock file of the repository.
cat Cargo.lock fuzz/Cargo.lock 2>/dev/null | sed -n 's/^name = "\(.*\)"$/\1/p' | sort -u >"$out/.ours"
comm -12 "$out/INDEX" "$out/.ours" | while read -r crate; do
  mkdir -p "$out/crates/$crate"
  $git ls-tree --name-only HEAD "crates/$crate/" | while read -r file; do
    $git show "HEAD:$file" >"$out/crates/$crate/$(basename "$file")"
  done
done
rm "$out/.ours"
printf 'https://github.com/rustsec/advisory-db %s %s\n' "$commit" "$date" >"$out/SOURCE"
echo "advisory-snapshot: $(find "$out/crates" -name '*.md' | wc -l) advisories of $(ls "$out/crates" | wc -l) crates we use, database $commit ($date)"
