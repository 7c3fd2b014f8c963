# make bench: skynet on Boost.Fiber with lacuna stacks beside Boost's own stack allocators, at
# depth 4 and 5 (docs/adapters.md's table, printed by tools/results.d/boost-skynet.sh), into
# boost-skynet.csv with the command and the load average in its header. Skipped, saying so, when
# lacuna-bench was built without Boost.Fiber.
set -euo pipefail
if "$BENCH" boost-skynet --help 2>&1 | grep -q 'skipped'; then
  echo "SKIP boost-skynet: lacuna-bench was built without Boost.Fiber (libboost-fiber-dev)" >&2
  exit 0
fi
depths="4 5"; runs=3
[ -n "${QUICK:-}" ] && depths="2 3" runs=1
f=$OUT/boost-skynet.csv
{
  echo "# command: for D in $depths; do lacuna-bench boost-skynet --depth \$D --runs $runs --csv; done"
  echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  first=1
  for d in $depths; do
    if [ -n "$first" ]; then "$BENCH" boost-skynet --depth "$d" --runs $runs --csv; first=
    else "$BENCH" boost-skynet --depth "$d" --runs $runs --csv | tail -n +2; fi
  done
} > "$f.new"
mv "$f.new" "$f"
cat "$f"
