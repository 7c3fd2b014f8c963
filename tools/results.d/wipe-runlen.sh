#!/usr/bin/env bash
# What `lacuna-bench wipe --runlen --size 256M` printed (bench/results/wipe-runlen.txt,
# tools/bench.d/wipe.sh), as a code block; docs/wipe.md carries it between
# <!-- results wipe-runlen --> markers (tools/results-sync.sh). Usage: wipe-runlen.sh RESULTS_DIR
set -euo pipefail
in=$1
[ -s "$in/wipe-runlen.txt" ] || exit 0
echo '```'
cat "$in/wipe-runlen.txt"
echo '```'
