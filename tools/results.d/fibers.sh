# README table: skynet (standard rules, then the buffered variant) and switch, from the text make
# bench saved.
set -euo pipefail
in=$1
[ -s "$in/skynet.txt" ] && [ -s "$in/switch.txt" ] || exit 0
echo "**fibers** (\`lacuna-bench skynet --runs 5\`, \`lacuna-bench switch --runs 5\`; one thread,"
echo "a guarded 64 KiB pool stack per fiber). skynet by its standard rules: every node a fiber, each"
echo "parent an unbuffered channel, 1,111,111 fibers; the buffered row is a variant (\`--buffered\`:"
echo "10-slot channels, so a child never waits for its parent):"
echo
echo "| measure | lacuna | target |"
echo "|---|---:|---:|"
grep '^skynet: median' "$in/skynet.txt" |
  sed -E 's/skynet: median ([0-9.]+) ms \(min ([0-9.]+), max ([0-9.]+)\), median peak RSS ([0-9.]+) MiB/| skynet, standard rules (min–max) | \1 ms (\2–\3) | ≤ 200 ms |\n| skynet, standard rules, peak RSS (VmHWM, whole process) | \4 MiB | ≤ 64 MiB |/'
[ -s "$in/skynet-buffered.txt" ] && grep '^skynet --buffered' "$in/skynet-buffered.txt" |
  sed -E 's/skynet --buffered \(variant\): median ([0-9.]+) ms \(min ([0-9.]+), max ([0-9.]+)\), median peak RSS ([0-9.]+) MiB/| skynet variant `--buffered` (10-slot channels) | \1 ms (\2–\3), \4 MiB peak | |/'
grep '^switch' "$in/switch.txt" | sed -E 's/.*: ([0-9.]+) ns \(min ([0-9.]+), max ([0-9.]+)\)/| context switch (lacuna_yield) | \1 ns (\2–\3) | ≤ 10 ns |/'
grep '^spawn+join' "$in/switch.txt" | sed -E 's/.*: ([0-9.]+) ns \(min ([0-9.]+), max ([0-9.]+)\)/| spawn + join of an empty fiber | \1 ns (\2–\3) | ≤ 100 ns |/'
echo
