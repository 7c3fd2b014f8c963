# make bench, fiber layer: skynet by its standard rules (unbuffered channels, 1,111,111 fibers),
# the 10-slot buffered variant beside it (labelled so in its file), and switch costs.
set -euo pipefail
"$BENCH" skynet --runs "$RUNS" | tee "$OUT/skynet.txt"
"$BENCH" skynet --buffered --runs "$RUNS" | tee "$OUT/skynet-buffered.txt"
"$BENCH" switch --runs "$RUNS" | tee "$OUT/switch.txt"
