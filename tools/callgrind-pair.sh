#!/usr/bin/env bash
# Instructions per warm lacuna_alloc + lacuna_free pair, counted by callgrind (repeatable, unlike
# time on a shared VM). Usage: tools/callgrind-pair.sh [path/to/lacuna-bench]
set -euo pipefail
bench=${1:-./build/tools/lacuna-bench}
pairs=100000
out=$(mktemp)
valgrind --tool=callgrind --callgrind-out-file="$out" --toggle-collect='lacuna_alloc' \
  --toggle-collect='lacuna_free' "$bench" pair $pairs >/dev/null 2>&1
ir=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
rm -f "$out"
echo "instructions per warm alloc+free pair: $(( ir / pairs )) ($ir Ir over $pairs pairs, $bench)"
