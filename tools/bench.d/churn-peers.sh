# make bench: churn against the allocators a user would pick instead, one right after the other
# in one session (the targets table's "≤ 0.8× tcmalloc" row), into churn-peers.csv, whose header
# names the command and the machine's load average before it ran (2 vCPUs shared with other work:
# a ratio within this file carries over, its absolute times do not).
set -euo pipefail
cycles=500000; [ -n "${QUICK:-}" ] && cycles=20000
f=$OUT/churn-peers.csv
{
  echo "# command: for B in lacuna tcmalloc mimalloc; do lacuna-bench churn --backend \$B --region 64K --touch 1 --cycles $cycles --runs $RUNS --csv; done"
  echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  for b in lacuna tcmalloc mimalloc; do
    if [ "$b" = lacuna ]; then
      "$BENCH" churn --backend $b --region 64K --touch 1 --cycles $cycles --runs "$RUNS" --csv
    else # the machine line and the header once
      "$BENCH" churn --backend $b --region 64K --touch 1 --cycles $cycles --runs "$RUNS" --csv |
        grep -v '^#' | tail -n +2
    fi
  done
} > "$f.new"
mv "$f.new" "$f"
cat "$f"
