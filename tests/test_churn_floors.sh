#!/usr/bin/env bash
# The threads case's two floors run to the end on 2 threads with half the frees cross-thread:
# "floor-owner" (cross-thread frees go back to the thread that carved the region) exists, counts
# exactly 50 % cross-thread frees and, as "floor", never runs out of regions. With --touch 0 the
# faster thread of "floor" used to carve past its mapping (ENOMEM) while the slower one's LIFO
# grew; a few runs of it made that likely. Asserts no timing. Usage: test_churn_floors.sh LACUNA_BENCH
set -uo pipefail
bench=$1
fails=0
for b in floor-owner floor floor-owner floor floor-owner floor; do
  out=$("$bench" churn --backend $b --threads 2 --cross 50 --touch 0 --cycles 4000000 --runs 1 --csv 2>&1)
  row=$(grep "^$b," <<<"$out" | tail -1)
  # columns: ... 18 error, 19 cross_measured
  err=$(cut -d, -f18 <<<"$row") cross=$(cut -d, -f19 <<<"$row")
  if [ -z "$row" ] || [ -n "$err" ] || [ "$cross" != 50.0 ]; then
    echo "FAIL: churn --backend $b --threads 2 --cross 50 --touch 0: error '${err}', cross '${cross}'"
    sed 's/^/  | /' <<<"$out" | tail -3
    fails=$((fails + 1))
  fi
done
[ "$fails" = 0 ] && echo "ok: both floors ran with 50 % cross-thread frees"
[ "$fails" = 0 ]
