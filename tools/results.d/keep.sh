#!/usr/bin/env bash
# The keep_resident table: release and refault the top pages, or keep and memset them
# (bench/results/keep.csv). README carries it between <!-- results keep --> markers
# (tools/results-sync.sh). Usage: keep.sh RESULTS_DIR
set -euo pipefail
in=$1
[ -s "$in/keep.csv" ] || exit 0
echo "**keep_resident** — per region: release the top pages and refault them, or keep them and"
echo "memset (\`lacuna-bench keep\`):"
echo
echo "| top pages | release + refault ns (min–max) | keep + memset ns (min–max) | cheaper |"
echo "|---:|---:|---:|---|"
awk -F, '!/^#/ && $1 != "pages" { printf "| %s | %s (%s–%s) | %s (%s–%s) | %s |\n", $1, $2, $5, $6, $3, $7, $8, $4 }' "$in/keep.csv"
