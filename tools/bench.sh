#!/usr/bin/env bash
# `make bench`: the whole side-by-side suite. Writes bench/results/*.csv (each with the machine
# in a header comment), with gnuplot docs/*.png, and the results tables of README.md and docs/*.md
# (tools/results-sync.sh); with OUT=dir the results and plots go to dir and README and docs/ are
# left alone. Progress goes to stderr. Budget: 10 minutes on 2 cores.
# Usage: tools/bench.sh [build-dir]   (QUICK=1 for a fast smoke run)
# It installs nothing unless asked: with gnuplot missing it says so and skips the plots
# (INSTALL=1 lets it apt-get install gnuplot-nox, saying so first).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
bench="$build/tools/lacuna-bench"
out=${OUT:-bench/results} # OUT=dir: somewhere else (a smoke run that keeps the committed ones)
plots=docs # committed plots are redrawn only from the committed results' directory
[ "$out" = bench/results ] || plots=$out
mkdir -p "$out" "$plots"
runs=${RUNS:-5}
fast_cycles=500000 slow_cycles=20000 regions="16K 64K 256K 1M" touches="1 2 8"
if [ -n "${QUICK:-}" ]; then
  runs=1 fast_cycles=20000 slow_cycles=2000 regions="64K" touches="1"
fi
step() { printf '\n== %s\n' "$*" >&2; }
# Append one lacuna-bench --csv run to a file: the first keeps its machine comment and header.
# A backend that is skipped (its library missing) or fails still leaves its row, with the reason.
csv_to() {
  local file=$1; shift
  if [ ! -s "$file" ]; then "$@" > "$file" || echo "note: exit $? from: $*" >&2
  else { "$@" || echo "note: exit $? from: $*" >&2; } | grep -v '^#' | tail -n +2 >> "$file"; fi
}
start=$(date +%s)
if [ "$out" = bench/results ]; then
  where="results go to $out/ and plots to $plots/, replacing the committed ones (git diff shows"
  where="$where what changed), and the results tables in README.md and docs/*.md are rewritten from"
  where="$where them (OUT=dir: all of it to dir instead, README and docs/ left alone)"
else
  where="results and plots go to $out/; the committed ones, README and docs/ are left alone"
fi
if [ -n "${INSTALL:-}" ]; then
  installs="as INSTALL=1 asks, it installs gnuplot-nox and golang-go from Debian if missing"
else
  installs="it installs nothing (INSTALL=1: gnuplot-nox and golang-go from Debian, for the plots"
  installs="$installs and the Go peer)"
fi
echo "make bench: $where; $installs." >&2

step "demo"
"$bench" demo | tee "$out/demo.txt"

# Boost.Context's own stack allocators, where lacuna-bench was built with them.
peers=$("$bench" churn --help | grep -o 'boost-[a-z]*' | sort -u | tr '\n' ' ' || true)
[ -n "$peers" ] || echo "churn: no Boost.Context peers (install libboost-context-dev and rebuild)" >&2

step "churn: regions ($regions) x touch ($touches) x backends, median of $runs"
rm -f "$out/churn.csv"
for region in $regions; do
  for touch in $touches; do
    case $region in *M) bytes=$(( ${region%M} * 1048576 )) ;; *K) bytes=$(( ${region%K} * 1024 )) ;; esac
    [ $(( touch * 4096 )) -le $bytes ] || continue # a 16 KiB region has 4 pages to touch
    for b in naive naive-noguard malloc lacuna lacuna-never lacuna-dontneed lacuna-free \
             tcmalloc mimalloc jemalloc jemalloc-tcache $peers; do
      cycles=$fast_cycles
      case $b in naive|naive-noguard|lacuna-dontneed|boost-protected) cycles=$slow_cycles ;; esac
      csv_to "$out/churn.csv" "$bench" churn --backend $b --region $region --touch $touch \
        --cycles $cycles --runs $runs --csv
    done
  done
done

# threads.csv: tools/bench.d/threads.sh (it can be run alone).

step "burst: RSS and page tables over time"
rounds=3; [ -n "${QUICK:-}" ] && rounds=1
"$bench" burst --rounds $rounds --csv > "$out/burst.csv"
"$bench" burst --rounds $rounds > "$out/burst.txt" # the table: peaks, idle and trimmed ends, back in

step "seed: every answer to 'give these pages back'"
"$bench" seed --csv > "$out/seed.csv"

step "keep: memset vs release of a stack's top pages"
"$bench" keep --csv > "$out/keep.csv"

if command -v valgrind >/dev/null; then
  step "pair: instructions per warm alloc+free (callgrind)"
  tools/callgrind-pair.sh "$bench" | tee "$out/pair.txt"
fi

for extra in tools/bench.d/*.sh; do # cases added by other layers (wipe, fibers)
  [ -e "$extra" ] || continue
  step "$(basename "$extra" .sh)"
  BENCH="$bench" OUT="$out" RUNS=$runs QUICK=${QUICK:-} bash "$extra"
done

step "plots"
if ! command -v gnuplot >/dev/null && [ -n "${INSTALL:-}" ] && [ "$(id -u)" = 0 ] &&
  command -v apt-get >/dev/null; then
  echo "INSTALL=1: apt-get install gnuplot-nox (for the plots)" >&2
  (apt-get install -y -qq gnuplot-nox >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq gnuplot-nox >/dev/null 2>&1; }) || true
fi
if command -v gnuplot >/dev/null; then
  tools/plots.sh "$out" "$plots"
else
  echo "SKIP plots: gnuplot is not installed (apt-get install gnuplot-nox, or INSTALL=1 make bench)" >&2
fi
step "summary (tools/results-md.sh)"
tools/results-md.sh "$out"
if [ "$out" = bench/results ]; then # the tables README and docs/ carry (a smoke run's stay out)
  tools/results-sync.sh "$out"
fi
# The duration too, so README's "about N minutes" has a source.
echo "make bench: done in $(( $(date +%s) - start )) s on $(grep -m1 '^# machine' "$out/churn.csv" | sed 's/^# machine: //')" |
  tee "$out/duration.txt" >&2
echo "results in $out/, plots in $plots/" >&2
