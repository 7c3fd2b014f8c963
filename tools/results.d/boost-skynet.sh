#!/usr/bin/env bash
# docs/adapters.md's Boost.Fiber table: skynet with lacuna stacks and Boost's two stack
# allocators at two depths (bench/results/boost-skynet.csv, tools/bench.d/boost-skynet.sh),
# between <!-- results boost-skynet --> markers (tools/results-sync.sh). Usage: boost-skynet.sh DIR
set -euo pipefail
in=$1
[ -s "$in/boost-skynet.csv" ] || exit 0
awk -F, 'function commas(n, s, r) { s = sprintf("%d", n); r = ""
      while (length(s) > 3) { r = "," substr(s, length(s) - 2) r; s = substr(s, 1, length(s) - 3) }
      return s r }
  !/^#/ && $1 != "stacks" { k = $1 SUBSEP $2; ms[k] = $6; mn[k] = $7; mx[k] = $8; rss[k] = $9; vmas[k] = $10; live[k] = $11
    fail[k] = $12; ung[k] = $13; ok[k] = $5; if ($2 < lo || lo == "") lo = $2; if ($2 > hi) hi = $2
    if (!seen[$1]++) order[++n] = $1 }
  function cell(s, d,   k) { k = s SUBSEP d
    if (ok[k] == 0 || fail[k] > 0) return "fails at " commas(fail[k]) " live stacks"
    return commas(sprintf("%.0f", ms[k])) " ms (" commas(sprintf("%.0f", mn[k])) "–" commas(sprintf("%.0f", mx[k])) ")" \
      (s == "lacuna" ? "" : sprintf(", %.2fx", ms[k] / ms["lacuna" SUBSEP d])) \
      (ung[k] > 0 ? ", unguarded from stack " commas(ung[k]) : "") }
  END { name["lacuna"] = "lacuna"; name["pooled"] = "pooled_fixedsize_stack (no guard)"
    name["protected"] = "protected_fixedsize_stack"
    printf "| stacks | depth %d (%s live) | depth %d (%s live) | peak RSS, depth %d | peak VMAs |\n", lo,
      commas(live["lacuna" SUBSEP lo]), hi, commas(live["lacuna" SUBSEP hi]), hi
    print "|---|---|---|---|---|"
    for (i = 1; i <= n; i++) { s = order[i]; k = s SUBSEP hi
      printf "| %s | %s | %s | %s MiB%s | %s |\n", name[s], cell(s, lo), cell(s, hi),
        commas(sprintf("%.0f", rss[k] / 1024)), (fail[k] > 0 || ok[k] == 0) ? " when it failed" : "", commas(vmas[k]) } }' \
  "$in/boost-skynet.csv"
