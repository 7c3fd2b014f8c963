#!/usr/bin/env bash
# `make demo`'s output as make bench saved it (bench/results/demo.txt), as a code block; README
# carries it between <!-- results demo --> markers (tools/results-sync.sh). Usage: demo.sh DIR
set -euo pipefail
in=$1
[ -s "$in/demo.txt" ] || exit 0
echo '```'
cat "$in/demo.txt"
echo '```'
