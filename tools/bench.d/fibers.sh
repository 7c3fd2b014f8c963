# make bench, fiber layer: skynet (1,111,111 fibers on guarded pool stacks) and switch costs.
set -euo pipefail
"$BENCH" skynet --runs "$RUNS" | tee "$OUT/skynet.txt"
"$BENCH" switch --runs "$RUNS" | tee "$OUT/switch.txt"
