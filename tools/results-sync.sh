#!/usr/bin/env bash
# Every results table in README.md and docs/*.md sits between
#     <!-- results NAME -->   and   <!-- /results -->
# and is printed by tools/results.d/NAME.sh (or tools/NAME.sh) from bench/results/, the one place
# each figure comes from: README and docs/fibers.md carry the same fibers table, so they cannot
# disagree. This rewrites those blocks (make bench runs it), or with --check only says which are
# stale and exits 1 (ctest runs that: docs_match_results). Usage: tools/results-sync.sh [--check] [RESULTS_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
check=
[ "${1:-}" = --check ] && { check=1; shift; }
in=${1:-bench/results}
stale=0
for doc in README.md docs/*.md; do
  grep -q '^<!-- results [a-z0-9-]* -->$' "$doc" || continue
  new=$(mktemp)
  # Each block's body is replaced by its script's output; everything else is copied.
  while IFS= read -r line; do
    if [[ $line =~ ^'<!-- results '([a-z0-9-]+)' -->'$ ]]; then
      name=${BASH_REMATCH[1]}
      script=tools/results.d/$name.sh
      [ -f "$script" ] || script=tools/$name.sh # docs/wipe.md's full tables: tools/wipe-md.sh
      [ -f "$script" ] ||
        { echo "$doc: no tools/results.d/$name.sh for <!-- results $name -->" >&2; exit 1; }
      printf '%s\n' "$line"
      bash "$script" "$in"
      skipping=1
      continue
    fi
    if [ -n "${skipping:-}" ]; then
      [ "$line" = '<!-- /results -->' ] || continue
      skipping=
    fi
    printf '%s\n' "$line"
  done < "$doc" > "$new"
  [ -z "${skipping:-}" ] || { echo "$doc: a results block has no <!-- /results -->" >&2; exit 1; }
  if cmp -s "$doc" "$new"; then
    rm -f "$new"
  elif [ -n "$check" ]; then
    echo "$doc: its results tables differ from what $in/ prints (tools/results-sync.sh updates them):"
    diff "$doc" "$new" | head -20 || true
    rm -f "$new"
    stale=1
  else
    cat "$new" > "$doc" && rm -f "$new"
    echo "results-sync: updated the tables in $doc from $in/" >&2
  fi
done
exit $stale
