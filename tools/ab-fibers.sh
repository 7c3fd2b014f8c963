#!/usr/bin/env bash
# "A busy runtime is not slowed": skynet and the switch benchmark of two builds, alternated in one
# run (A B B A A B ...: drift on a shared machine hits both alike), medians of ROUNDS single runs
# each and the ratio B/A; then callgrind's instruction count of a short switch run of each
# (repeatable where time is not), when valgrind is installed.
# Usage: tools/ab-fibers.sh A_LACUNA_BENCH B_LACUNA_BENCH [ROUNDS]   (default 5)
set -euo pipefail
a=$1 b=$2 rounds=${3:-5}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# CPU time of the whole process too (perf stat's task-clock, where perf is): unlike the wall time
# the benchmarks print, it does not count the time spent waiting for a CPU that others hold.
metrics="skynet switch"
cpu=()
if command -v perf >/dev/null && perf stat -x, -e task-clock -o "$tmp/probe" true 2>/dev/null; then
  metrics="skynet switch skynet-cpu switch-cpu"
  cpu=(perf stat -x, -e task-clock -o "$tmp/ps")
fi
task_ms() { awk -F, '/task-clock/ {print $1}' "$tmp/ps"; }
one() { # bench label
  "${cpu[@]}" "$1" skynet --runs 1 | sed -n 's/^skynet: median \([0-9.]*\) ms.*/\1/p' >>"$tmp/$2.skynet"
  [ ${#cpu[@]} = 0 ] || task_ms >>"$tmp/$2.skynet-cpu"
  "${cpu[@]}" "$1" switch --runs 1 --n 5000000 |
    sed -n 's/^switch (lacuna_yield[^:]*: \([0-9.]*\) ns.*/\1/p' >>"$tmp/$2.switch"
  [ ${#cpu[@]} = 0 ] || task_ms >>"$tmp/$2.switch-cpu"
}
for r in $(seq "$rounds"); do
  if [ $((r % 2)) = 1 ]; then one "$a" A; one "$b" B; else one "$b" B; one "$a" A; fi
done
median() { sort -g "$1" | awk '{v[NR] = $1} END {print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2)}'; }
echo "A: $a"
echo "B: $b"
bench_machine=$("$a" switch --runs 1 --n 1 | sed -n 's/^machine: //p')
echo "machine: $bench_machine; $rounds alternated rounds, one run of each per round"
# Three estimates of B/A: of the medians; of the minimums (the run least disturbed by other
# tenants); and the median of the rounds' own ratios (A and B of a round ran back to back, under
# the same load).
for m in $metrics; do
  ma=$(median "$tmp/A.$m") mb=$(median "$tmp/B.$m")
  mina=$(sort -g "$tmp/A.$m" | head -1) minb=$(sort -g "$tmp/B.$m" | head -1)
  paste -d' ' "$tmp/A.$m" "$tmp/B.$m" | awk '{printf "%.4f\n", $2 / $1}' >"$tmp/R.$m"
  case $m in
  skynet) unit=ms ;; switch) unit="ns per lacuna_yield" ;; *) unit="ms of CPU, whole process" ;;
  esac
  echo "$m ($unit): A median $ma, min $mina [$(sort -g "$tmp/A.$m" | tr '\n' ' ')]"
  echo "$m ($unit): B median $mb, min $minb [$(sort -g "$tmp/B.$m" | tr '\n' ' ')]"
  echo "$m: B/A of the medians $(awk -v a="$ma" -v b="$mb" 'BEGIN {printf "%.3f", b / a}'), of the minimums $(awk -v a="$mina" -v b="$minb" 'BEGIN {printf "%.3f", b / a}'), median of the $rounds rounds' ratios $(median "$tmp/R.$m")"
done
if command -v valgrind >/dev/null; then
  for x in A B; do
    bin=$a; [ $x = B ] && bin=$b
    valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.$x" "$bin" switch --runs 1 --n 200000 \
      >/dev/null 2>&1
    ir=$(callgrind_annotate "$tmp/cg.$x" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    echo "callgrind: $x switch --runs 1 --n 200000: $ir Ir in all"
  done
else
  echo "callgrind: skipped: valgrind is not installed (apt-get install valgrind)"
fi
