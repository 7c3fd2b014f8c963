#!/usr/bin/env bash
# The churn table at 64 KiB, touch 1: every backend, ns per cycle against lacuna's, RSS, VMAs,
# faults, release syscalls. README carries it between <!-- results churn --> markers
# (tools/results-sync.sh). Usage: churn.sh RESULTS_DIR
set -euo pipefail
in=$1
[ -s "$in/churn.csv" ] || exit 0
echo "| backend | ns/cycle (min–max) | vs lacuna | peak RSS | RSS after free | VMAs | minor faults | release syscalls |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
awk -F, '!/^#/ && $1 != "backend" && $2 == 65536 && $5 == 1 {
    row[NR] = $0; if ($1 == "lacuna") base = $8 }
  END { for (i in row) { split(row[i], f, ",");
    if (f[18] != "") { printf "| %s | failed: %s after %s live | | | | %s | | |\n", f[1], f[18], f[17], f[13]; continue }
    printf "| %s | %.1f (%.1f–%.1f) | %.2f× | %.1f MiB | %.1f MiB | %s | %s | %s |\n",
      f[1], f[8], f[9], f[10], f[8] / base, f[11] / 1024, f[12] / 1024, f[13], f[14], f[15] } }' \
  "$in/churn.csv" | sort -t'|' -k3 -g
