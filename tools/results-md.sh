#!/usr/bin/env bash
# Markdown tables for README's Results section, from the CSVs `make bench` wrote. Every number in
# README's tables comes from here. Usage: tools/results-md.sh [bench/results]
set -euo pipefail
in=${1:-bench/results}

machine() { grep -m1 '^# machine' "$1" | sed 's/^# machine: //'; }

if [ -s "$in/seed.csv" ]; then
  echo "**seed** — one 64 KiB region with 4 pages written; each answer to \"give these pages back\""
  echo "(\`lacuna-bench seed\`; cycle = the answer + writing the 4 pages again):"
  echo
  echo "| answer | apply µs (min–max) | cycle µs (min–max) | RSS drop | shared pages freed | refaults | reads zero | VMAs added | what it proves |"
  echo "|---|---:|---:|---:|---:|---:|---|---:|---|"
  awk -F, '!/^#/ && $1 != "answer" { printf "| %s | %s (%s–%s) | %s (%s–%s) | %s KiB | %s KiB | %s | %s | %s | %s |\n",
      $1, $2, $10, $11, $3, $12, $13, $4, $5, $6, $7, $8, $9 }' "$in/seed.csv"
  echo
fi

if [ -s "$in/keep.csv" ]; then
  echo "**keep_resident** — per region: release the top pages and refault them, or keep them and"
  echo "memset (\`lacuna-bench keep\`):"
  echo
  echo "| top pages | release + refault ns (min–max) | keep + memset ns (min–max) | cheaper |"
  echo "|---:|---:|---:|---|"
  awk -F, '!/^#/ && $1 != "pages" { printf "| %s | %s (%s–%s) | %s (%s–%s) | %s |\n", $1, $2, $5, $6, $3, $7, $8, $4 }' "$in/keep.csv"
  echo
fi

[ -s "$in/pair.txt" ] && { echo "**warm path** (\`tools/callgrind-pair.sh\`): $(cat "$in/pair.txt")"; echo; }

for extra in tools/results.d/*.sh; do # tables added by other layers
  [ -e "$extra" ] && bash "$extra" "$in"
done
exit 0
