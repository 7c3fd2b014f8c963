#!/usr/bin/env bash
# The figures in README.md's and docs/*.md's prose follow bench/results/: a copy of the results
# with one figure's source changed must make tools/results-sync.sh --check fail and name the
# line, and a figure name tools/results-figures.sh does not print must fail too, so a number
# typed into the prose by hand cannot stand. Usage: results_figures_test.sh SOURCE_DIR
set -euo pipefail
src=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

tools=$src/tools
"$tools/results-sync.sh" --check >/dev/null || fail "the committed README/docs are stale"

# pair.txt's count feeds the warm-path figures (design bullet, targets table).
cp -r "$src/bench/results" "$tmp/results"
sed -i -E 's/pair: [0-9]+ /pair: 99 /' "$tmp/results/pair.txt"
if out=$("$tools/results-sync.sh" --check "$tmp/results" 2>&1); then
  fail "a changed pair.txt left README's figures 'in step'"
fi
grep -q 'fig pair.instructions-->99<' <<<"$out" || fail "the diff does not show the new figure: $out"

# churn-peers.csv feeds the tcmalloc target row: without it the row's figures are missing.
rm "$tmp/results/churn-peers.csv"
if out=$("$tools/results-sync.sh" --check "$tmp/results" 2>&1); then
  fail "a missing churn-peers.csv went unnoticed"
fi
grep -q 'no figure "peers.lacuna.ns"' <<<"$out" || fail "a missing figure is not named: $out"
echo "ok: README and docs figures follow bench/results"
