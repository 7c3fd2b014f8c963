#!/usr/bin/env bash
# The seed table: every answer to "give these pages back" for one 64 KiB region
# (bench/results/seed.csv). README carries it between <!-- results seed --> markers
# (tools/results-sync.sh). Usage: seed.sh RESULTS_DIR
set -euo pipefail
in=$1
[ -s "$in/seed.csv" ] || exit 0
echo "**seed** — one 64 KiB region with 4 pages written; each answer to \"give these pages back\""
echo "(\`lacuna-bench seed\`; cycle = the answer + writing the 4 pages again):"
echo
echo "| answer | apply µs (min–max) | cycle µs (min–max) | RSS drop | shared pages freed | refaults | reads zero | VMAs added | what it proves |"
echo "|---|---:|---:|---:|---:|---:|---|---:|---|"
awk -F, '!/^#/ && $1 != "answer" { printf "| %s | %s (%s–%s) | %s (%s–%s) | %s KiB | %s KiB | %s | %s | %s | %s |\n",
    $1, $2, $10, $11, $3, $12, $13, $4, $5, $6, $7, $8, $9 }' "$in/seed.csv"
