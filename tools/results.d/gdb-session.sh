#!/usr/bin/env bash
# docs/debugging.md's example session: what tools/gdb-session.sh printed (bench/results/
# gdb-session.txt, tools/bench.d/gdb-session.sh), as a code block between
# <!-- results gdb-session --> markers (tools/results-sync.sh). Usage: gdb-session.sh RESULTS_DIR
set -euo pipefail
in=$1
[ -s "$in/gdb-session.txt" ] || exit 0
echo '```'
cat "$in/gdb-session.txt"
echo '```'
