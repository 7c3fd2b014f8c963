#!/usr/bin/env bash
# Markdown tables for README's Results section, from the CSVs `make bench` wrote. Every number in
# README's tables comes from here. Usage: tools/results-md.sh [bench/results]
set -euo pipefail
in=${1:-bench/results}

machine() { grep -m1 '^# machine' "$1" | sed 's/^# machine: //'; }

if [ -s "$in/churn.csv" ]; then
  echo "**churn** — 64 KiB regions, 1000 live, 1 page touched per cycle; median of 5 runs"
  echo "(\`lacuna-bench churn --region 64K --touch 1 --runs 5\`; $(machine "$in/churn.csv")):"
  echo
  echo "| backend | ns/cycle (min–max) | vs lacuna | peak RSS | RSS after free | VMAs | minor faults | release syscalls |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  awk -F, '!/^#/ && $1 != "backend" && $2 == 65536 && $5 == 1 {
      row[NR] = $0; if ($1 == "lacuna") base = $8 }
    END { for (i in row) { split(row[i], f, ",");
      if (f[18] != "") { printf "| %s | failed: %s after %s live | | | | %s | | |\n", f[1], f[18], f[17], f[13]; continue }
      printf "| %s | %.1f (%.1f–%.1f) | %.2f× | %.1f MiB | %.1f MiB | %s | %s | %s |\n",
        f[1], f[8], f[9], f[10], f[8] / base, f[11] / 1024, f[12] / 1024, f[13], f[14], f[15] } }' \
    "$in/churn.csv" | sort -t'|' -k3 -g
  echo
  echo "\`naive\`, \`naive-noguard\` and \`boost-protected\` map and unmap a region every cycle, while"
  echo "\`lacuna\` reuses regions from a warm cache: the ratio between them is a warm cache against an"
  echo "unmap per region. \`lacuna-dontneed\` (no cache: the pages released on every free) is the row"
  echo "that gives memory back each time, as the naive rows do."
  echo
fi

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
