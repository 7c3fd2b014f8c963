#!/usr/bin/env bash
# Where the threads case's cross-thread time goes (bench/results/threads-parts.csv, written by
# tools/bench.d/threads-parts.sh): CPU ns per cycle on 1 thread and on 2 with half the frees
# cross-thread, with a page touched per region and with none, medians and minimums over rounds;
# what 2 threads cost over 1 per cycle; and the best 2-vs-1 throughput any round reached. README
# carries it between <!-- results threads-parts --> markers (tools/results-sync.sh).
# Usage: threads-parts.sh RESULTS_DIR
set -euo pipefail
in=$1
[ -s "$in/threads-parts.csv" ] || exit 0
machine=$(grep -m1 '^# machine' "$in/threads-parts.csv" | sed 's/^# machine: //')
cycles=$(awk -F, '!/^#/ && $1 != "round" { print $6; exit }' "$in/threads-parts.csv")
read -r rounds lo hi < <(awk -F, '!/^#/ && $1 != "round" { r[$1] = 1; l = $2 + 0
    if (lo == "" || l < lo) lo = l; if (l > hi) hi = l } END { print length(r), lo, hi }' "$in/threads-parts.csv")
echo "**Where the cross-thread time goes** (\`tools/bench.d/threads-parts.sh\`, \`bench/results/threads-parts.csv\`:"
echo "every row below in each of $rounds rounds, one after the other, \`--runs 3 --cycles $cycles\`; load average"
echo "$lo–$hi (other work and the run's own threads); $machine). CPU ns per cycle, median over the rounds (minimum in"
echo "brackets); *extra*: what a cycle on 2 threads with 50 % cross-thread frees costs over one on"
echo "1 thread; *best 2 vs 1*: one thread's fastest wall time over the fastest 2-thread cross run."
echo "For 1.5x, a cycle on 2 threads may cost at most 1.33x one thread's CPU time (2 / 1.5):"
echo
echo "| backend | touch | 1 thread | 2 threads, private | 2 threads, 50 % cross | extra | best 2 vs 1, cross |"
echo "|---|---:|---:|---:|---:|---:|---:|"
awk -F, 'function med(k,   n, i, j, t, a) { n = split(v[k], a, " ")
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
  function mn(k,   n, i, a, m) { n = split(v[k], a, " "); m = a[1]; for (i = 2; i <= n; i++) if (a[i] + 0 < m + 0) m = a[i]; return m }
  function mnw(k,   n, i, a, m) { n = split(w[k], a, " "); m = a[1]; for (i = 2; i <= n; i++) if (a[i] + 0 < m + 0) m = a[i]; return m }
  !/^#/ && $1 != "round" && $20 == "" {
    m = $8 == 1 ? "1" : $9 == 0 ? "p" : "x"; k = $3 SUBSEP $7 SUBSEP m
    v[k] = v[k] " " $22; w[k] = w[k] " " $10
    if (!seen[$3]++) order[++nb] = $3 }
  END { for (t = 0; t <= 1; t++) for (i = 1; i <= nb; i++) { b = order[i]
      k1 = b SUBSEP t SUBSEP "1"; kp = b SUBSEP t SUBSEP "p"; kx = b SUBSEP t SUBSEP "x"
      if (!(k1 in v) || !(kx in v)) continue
      printf "| %s | %d | %.1f (%.1f) | %.1f (%.1f) | %.1f (%.1f) | +%.1f (+%.1f) | %.2f× |\n", b, t,
        med(k1), mn(k1), med(kp), mn(kp), med(kx), mn(kx), med(kx) - med(k1), mn(kx) - mn(k1), mnw(k1) / mnw(kx) } }' \
  "$in/threads-parts.csv"
