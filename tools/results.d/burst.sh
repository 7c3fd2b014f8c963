#!/usr/bin/env bash
# The burst table (peaks, what stays after, page tables and RSS kept per region), as
# `lacuna-bench burst` printed it into bench/results/burst.txt; README carries it between
# <!-- results burst --> markers (tools/results-sync.sh). Usage: burst.sh RESULTS_DIR
set -euo pipefail
in=$1
[ -s "$in/burst.txt" ] || exit 0
echo '```'
grep -v '^#' "$in/burst.txt"
echo '```'
