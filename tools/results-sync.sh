#!/usr/bin/env bash
# Every results table in README.md and docs/*.md sits between
#     <!-- results NAME -->   and   <!-- /results -->
# and is printed by tools/results.d/NAME.sh (or tools/NAME.sh) from bench/results/, the one place
# each figure comes from: README and docs/fibers.md carry the same fibers table, so they cannot
# disagree. A figure in the prose is written <!--fig NAME-->VALUE<!--/fig--> and its VALUE is
# printed by tools/results-figures.sh from the same files. This rewrites those blocks and figures
# (make bench runs it), or with --check only says which are stale and exits 1 (ctest runs that:
# docs_match_results). Usage: tools/results-sync.sh [--check] [RESULTS_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
check=
[ "${1:-}" = --check ] && { check=1; shift; }
in=${1:-bench/results}
stale=0
figures=$(mktemp)
trap 'rm -f "$figures"' EXIT
bash tools/results-figures.sh "$in" > "$figures"
for doc in README.md docs/*.md; do
  grep -qE '^<!-- results [a-z0-9-]* -->$|<!--fig ' "$doc" || continue
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
  # Then every figure in the prose, from tools/results-figures.sh; a name it does not print is an
  # error (its results file is missing, or the name is misspelt), never a figure left as typed.
  perl -e 'my %f; open my $fh, "<", shift or die;
    while (<$fh>) { chomp; my ($k, $v) = split /\t/, $_, 2; $f{$k} = $v }
    my $doc = shift; local $/; my $t = <STDIN>; my $bad = 0;
    $t =~ s{<!--fig ([a-z0-9.-]+)-->(.*?)<!--/fig-->}{exists $f{$1} ? "<!--fig $1-->$f{$1}<!--/fig-->"
      : do { print STDERR "$doc: no figure \"$1\" (tools/results-figures.sh)\n"; $bad = 1; $& }}gse;
    print $t; exit $bad' "$figures" "$doc" < "$new" > "$new.f" || { rm -f "$new" "$new.f"; exit 1; }
  mv "$new.f" "$new"
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
# A figure that bench/results cannot carry (a measurement of an older build) is labelled history
# in the text with the commit that recorded it: every such `commit HASH` must name a commit of
# this repository (checked where there is a whole git history to look in, not in a shallow clone; --check fails
# on one).
if git rev-parse --git-dir >/dev/null 2>&1 && [ "$(git rev-parse --is-shallow-repository)" = false ]; then
  while read -r doc hash; do
    git cat-file -e "$hash^{commit}" 2>/dev/null ||
      { echo "$doc: commit \`$hash\` is not a commit of this repository" >&2; [ -z "$check" ] || stale=1; }
  done < <(perl -0777 -ne 'while (/commits?\s+`([0-9a-f]{7,40})`(?:\s+and\s+`([0-9a-f]{7,40})`)?/g) {
      print "$ARGV $1\n"; print "$ARGV $2\n" if $2 }' README.md docs/*.md)
fi
exit $stale
