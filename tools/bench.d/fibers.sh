# `make bench`, fiber part (run by tools/bench.sh with BENCH, OUT, RUNS and QUICK set): skynet
# (1,111,111 fibers on guarded 64 KiB stacks) and the switch / spawn+join costs.
set -euo pipefail
n=10000000
[ -n "${QUICK:-}" ] && n=1000000
"$BENCH" skynet --runs "${RUNS:-5}" | tee "$OUT/skynet.txt"
"$BENCH" switch --runs "${RUNS:-5}" --n "$n" | tee "$OUT/switch.txt"
