#!/usr/bin/env bash
# The select and mutex table (issue 11's targets), from the text `make bench` saved
# (tools/bench.d/fibers.sh: `lacuna-bench select` and `lacuna-bench sync`). docs/fibers.md carries
# it between <!-- results sync --> markers (tools/results-sync.sh). Usage: sync.sh RESULTS_DIR
set -euo pipefail
in=$1
[ -s "$in/select.txt" ] && [ -s "$in/sync.txt" ] || exit 0
machine() { grep -m1 '^machine' "$1" | sed 's/^machine: //'; }
# FILE PREFIX -> the first number after the first colon of the line that starts with PREFIX
num() { grep -m1 -F "$2" "$in/$1" | sed 's/^[^:]*: *//' | grep -oE '[0-9]+(\.[0-9]+)?' | head -1; }
runs=$(sed -nE 's/.*\(median of ([0-9]+)\).*/\1/p' "$in/select.txt" | head -1)
echo "Measured by \`lacuna-bench select --runs $runs\` and \`lacuna-bench sync --runs $runs\` ($(machine "$in/sync.txt")); medians:"
echo
echo "| measure | lacuna | beside it, same run | target |"
echo "|---|---:|---:|---|"
echo "| select over 4 receive cases, one ready (one fiber) | $(num select.txt 'lacuna_select, 4') ns | a plain \`lacuna_chan_recv\`: $(num select.txt 'lacuna_chan_recv, element') ns; select/recv $(num select.txt 'select / recv')x | ≤ 2x a receive |"
echo "| mutex lock+unlock, uncontended, in a fiber | $(num sync.txt 'uncontended lock+unlock, in a fiber') ns | thread context: $(num sync.txt 'uncontended lock+unlock, thread context') ns | ≤ 20 ns |"
if grep -q '^Go sync.Mutex' "$in/sync.txt"; then
  # the rounds by where each side ran: "both on one core at a time: 3, lacuna/Go 1.21x; ..."
  kinds=$(sed -nE 's/^  rounds with (.*): ([0-9]+), lacuna\/Go ([0-9.]+)x$/\1: \2, \3x/p' "$in/sync.txt" |
    paste -sd';' | sed 's/;/; /g')
  echo "| mutex, contended: 2 workers × 2 fibers, short critical section | $(num sync.txt 'contended, 2 workers') ns per lock+unlock; CPU/wall $(num sync.txt 'CPU time / wall time of those') | Go's \`sync.Mutex\`, GOMAXPROCS=2 × 2 goroutines, a run beside each of lacuna's: $(num sync.txt 'Go sync.Mutex') ns, CPU/wall $(num sync.txt "CPU time / wall time of Go"); lacuna/Go throughput $(num sync.txt 'lacuna/Go throughput')x${kinds:+ (rounds by where each side ran — $kinds)} | ≥ 1x Go's throughput |"
else
  why=$(grep -m1 '^go: ' "$in/sync.txt" | sed -E 's/^go: (skipped: )?//' || true)
  echo "| mutex, contended: 2 workers × 2 fibers, short critical section | $(num sync.txt 'contended, 2 workers') ns per lock+unlock | Go: not run (${why:-no figure}) | ≥ 1x Go's throughput |"
fi
