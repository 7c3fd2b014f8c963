#!/usr/bin/env bash
# Every results table, from what `make bench` wrote: each is printed by a script of
# tools/results.d/ (churn, threads, seed, keep, burst, fibers, wipe, ...), and README.md and
# docs/*.md carry those same tables between <!-- results NAME --> markers (tools/results-sync.sh),
# so every number in them comes from here. Usage: tools/results-md.sh [bench/results]
set -euo pipefail
in=${1:-bench/results}

[ -s "$in/pair.txt" ] && { echo "**warm path** (\`tools/callgrind-pair.sh\`): $(cat "$in/pair.txt")"; echo; }

for extra in tools/results.d/*.sh; do
  [ -e "$extra" ] || continue
  bash "$extra" "$in"
  echo
done
exit 0
