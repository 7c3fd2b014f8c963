#!/usr/bin/env bash
# The threads table: churn on 1 and 2 threads, private and 50 % cross-thread frees, wall-clock and
# CPU ns per cycle, each cell marked when its threads waited for a CPU. README carries it between
# <!-- results threads --> markers (tools/results-sync.sh). Usage: threads.sh RESULTS_DIR
set -euo pipefail
in=$1
[ -s "$in/threads.csv" ] || exit 0
machine() { grep -m1 '^# machine' "$1" | sed 's/^# machine: //'; }
echo "**threads** — churn on 1 and 2 threads, every thread with its own 1000 live 64 KiB regions"
echo "(so 2 threads hold twice the regions); with \`--cross 50\` exactly half of each thread's"
echo "frees are done by the other thread (\`lacuna-bench churn --backend B --threads T --cross PCT"
load=$(sed -nE 's/^# load average before: (.*)/; load average before: \1/p' "$in/threads.csv")
echo "--cycles 4000000 --runs 5\` by \`tools/bench.d/threads.sh\`; $(machine "$in/threads.csv")$load)."
echo "Wall-clock ns per cycle (all"
echo "threads' cycles together), then the CPU time per cycle: on 2 threads that run at once, ns ×"
echo "2 ≈ CPU ns; a cell marked *busy* had ns × threads more than 15 % above its CPU time, so its"
echo "threads waited for a CPU (other work on the machine) and its 2-vs-1 ratio says more about"
echo "the machine than the allocator:"
echo
echo "| backend | 1 thread: ns (CPU ns) | 2 threads, private: ns (CPU ns) | 2 vs 1 | 2 threads, 50 % cross: ns (CPU ns) | 2 vs 1 |"
echo "|---|---:|---:|---:|---:|---:|"
awk -F, '!/^#/ && $1 != "backend" && $18 == "" {
    k = $6 == 1 ? 1 : $7 == 0 ? 2 : 3; ns[$1, k] = $8; cpu[$1, k] = $20
    busy[$1, k] = $20 != "" && $8 * $6 > 1.15 * $20 ? " *busy*" : ""; if (!seen[$1]++) order[++n] = $1 }
  function cell(b, k) { return (b, k) in ns ? (cpu[b, k] == "" ? sprintf("%.1f", ns[b, k]) : sprintf("%.1f (%.1f)%s", ns[b, k], cpu[b, k], busy[b, k])) : "" }
  function ratio(b, k) { return (b, k) in ns && (b, 1) in ns ? sprintf("%.2f×", ns[b, 1] / ns[b, k]) : "" }
  END { for (i = 1; i <= n; i++) { b = order[i]
    printf "| %s | %s | %s | %s | %s | %s |\n", b, cell(b, 1), cell(b, 2), ratio(b, 2), cell(b, 3), ratio(b, 3) } }' \
  "$in/threads.csv"
