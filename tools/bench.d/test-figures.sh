# make bench: figures that tests measure and print, recorded where docs/reliability.md and README
# can quote them: the peak RSS of test_memory_given_back's three cases (20 waves of 20,000 live
# 64 KiB regions against 200 MiB of other memory), the stack a release used in test_fault's
# release_fits_small_stack (a painted 16 KiB stack), and the /proc/self/maps lines a growing pool
# adds for 1,000,000 live regions (test_pool_grow million_live_default). Those tests live in the
# test build, with the fault injector (make test: build-test/, or TEST_BUILD=dir); without it this
# says so and the committed test-figures.txt stays. About 10 s on a quiet machine (20 s at load
# 5). Into test-figures.txt.
set -euo pipefail
tests=${TEST_BUILD:-build-test}/tests
if [ ! -x "$tests/test_memory_given_back" ] || [ ! -x "$tests/test_fault" ] || [ ! -x "$tests/test_pool_grow" ]; then
  echo "SKIP test-figures: no $tests/test_memory_given_back, test_fault, test_pool_grow (make test builds them)" >&2
  exit 0
fi
f=$OUT/test-figures.txt
{
  echo "# commands: $tests/test_memory_given_back; $tests/test_fault release_fits_small_stack; $tests/test_pool_grow million_live_default (the lines they print)"
  echo "# load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  "$tests/test_memory_given_back" 2>&1 | grep -E 'rounds: hwm_kib='
  "$tests/test_fault" release_fits_small_stack 2>&1 | grep -E 'released on a [0-9]+ KiB stack'
  "$tests/test_pool_grow" million_live_default 2>&1 | grep -E '^1,000,000 live: '
} > "$f.new"
mv "$f.new" "$f"
cat "$f"
