#!/usr/bin/env bash
# What examples/stacks.c printed (bench/results/stacks.txt, tools/bench.d/stacks.sh), as a code
# block; README carries it between <!-- results stacks --> markers (tools/results-sync.sh).
# Usage: stacks.sh RESULTS_DIR
set -euo pipefail
in=$1
[ -s "$in/stacks.txt" ] || exit 0
echo '```'
cat "$in/stacks.txt"
echo '```'
