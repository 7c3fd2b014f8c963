# make bench: where the threads case's cross-thread time goes. churn on 1 thread, on 2 with
# private frees and on 2 with 50 % of the frees cross-thread, with 1 page touched per region and
# with none (--touch 0: no region memory written, so what is left is the allocator and the
# hand-over), for the two floors (no allocator: "floor" keeps a freed region with the thread that
# freed it, "floor-owner" sends it back to the thread that carved it) beside lacuna, tcmalloc and
# mimalloc. Every configuration once per round, the rounds one after the other, so slow spells
# of the shared machine hit all alike; each row has the load average before it. Into
# threads-parts.csv; tools/results.d/threads-parts.sh prints medians and minimums over rounds.
set -euo pipefail
rounds=${ROUNDS:-4} cycles=4000000 runs=3
[ -n "${QUICK:-}" ] && rounds=1 cycles=200000 runs=1
f=$OUT/threads-parts.csv
{
  echo "# command: $rounds rounds of: for T in 0 1; for B in floor floor-owner lacuna tcmalloc mimalloc; lacuna-bench churn --backend \$B --touch \$T --cycles $cycles --runs $runs --csv with --threads 1, then --threads 2 --cross 0, then --threads 2 --cross 50"
  "$BENCH" churn --backend floor --threads 1 --cycles 1000 --runs 1 --csv | grep '^# machine'
  echo "round,load,$("$BENCH" churn --backend floor --threads 1 --cycles 1000 --runs 1 --csv | grep -v '^#' | head -1)"
  for r in $(seq "$rounds"); do
    for t in 0 1; do
      for b in floor floor-owner lacuna tcmalloc mimalloc; do
        for mode in "--threads 1" "--threads 2 --cross 0" "--threads 2 --cross 50"; do
          load=$(cut -d' ' -f1 /proc/loadavg)
          # shellcheck disable=SC2086
          "$BENCH" churn --backend $b $mode --touch $t --cycles $cycles --runs $runs --csv |
            grep -v '^#' | tail -n +2 | sed "s/^/$r,$load,/"
        done
      done
    done
  done
} > "$f.new"
mv "$f.new" "$f"
echo "threads-parts: $(($(wc -l < "$f") - 3)) rows in $f" >&2
