# make bench: churn on 1 and 2 threads, each thread with its own 1000 live regions, with 0 % and
# 50 % of the frees cross-thread (README's threads table, tools/results.d/threads.sh), for every
# backend one after the other, into threads.csv with the load average before it in its header.
# floor: no allocator at all (a per-thread LIFO), the bound every backend is measured against;
# floor-owner: the same, but cross-thread frees go back to the thread that carved the region.
# 4,000,000 cycles (tens of ms a run): 500,000 were a few ms, within a scheduler tick's noise.
# Alone: BENCH=build/tools/lacuna-bench OUT=bench/results RUNS=5 bash tools/bench.d/threads.sh
set -euo pipefail
cycles=4000000; [ -n "${QUICK:-}" ] && cycles=20000
peers=$("$BENCH" churn --help | grep -o 'boost-pooled' | sort -u || true)
backends="malloc lacuna lacuna-never tcmalloc mimalloc${peers:+ $peers} floor floor-owner"
f=$OUT/threads.csv
{
  # the machine line and the column names, from a tiny run
  "$BENCH" churn --backend floor --threads 1 --cycles 1000 --runs 1 --csv | grep '^# machine'
  echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# command: for B in $backends; lacuna-bench churn --backend \$B --runs $RUNS --cycles $cycles --csv with --threads 1, then --threads 2 --cross 0, then --threads 2 --cross 50"
  "$BENCH" churn --backend floor --threads 1 --cycles 1000 --runs 1 --csv | grep -v '^#' | head -1
  for b in $backends; do
    for mode in "--threads 1" "--threads 2 --cross 0" "--threads 2 --cross 50"; do
      # shellcheck disable=SC2086
      { "$BENCH" churn --backend $b $mode --runs "$RUNS" --cycles $cycles --csv ||
        echo "note: exit $? from: lacuna-bench churn --backend $b $mode" >&2; } | grep -v '^#' | tail -n +2
    done
  done
} > "$f.new"
mv "$f.new" "$f"
cat "$f"
