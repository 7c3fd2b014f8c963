# make bench: what examples/stacks.c prints (README's "use it from your project" shows it).
set -euo pipefail
"$(dirname "$BENCH")/../examples/example_stacks" | tee "$OUT/stacks.txt"
