# make bench, wipe layer: every lacuna_wipe strategy and the table modes per residency of 1 GiB,
# zeroing vs releasing per run length, and the hash table example.
set -euo pipefail
if [ -n "${QUICK:-}" ]; then
  "$BENCH" wipe --resident 1,50 --runs 1 --csv > "$OUT/wipe.csv"
else
  "$BENCH" wipe --runs "$RUNS" --csv > "$OUT/wipe.csv"
  "$BENCH" wipe --runs "$RUNS" --pattern clustered --csv > "$OUT/wipe-clustered.csv"
  "$BENCH" wipe --runlen --size 256M | tee "$OUT/wipe-runlen.txt"
fi
# The hash table example: 10,000 keys over a 1 GiB lacuna_table, wiped 1,000 times.
"$(dirname "$BENCH")/../examples/example_sparse_table" | tee "$OUT/sparse_table.txt"
