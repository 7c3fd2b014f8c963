# make bench: docs/debugging.md's example session, the real output of tools/gdb-session.sh (gdb
# on tests/gdb_target from the test build; under a second), into gdb-session.txt. Without gdb or
# the test build (make test builds it; TEST_BUILD=dir) it says so and the committed file stays.
set -euo pipefail
f=$OUT/gdb-session.txt
rc=0
tools/gdb-session.sh "${TEST_BUILD:-build-test}" > "$f.new" || rc=$?
if [ "$rc" != 0 ]; then
  rm -f "$f.new"
  echo "SKIP gdb-session: tools/gdb-session.sh exited $rc (it needs gdb and the test build: make test)" >&2
  exit 0
fi
mv "$f.new" "$f"
cat "$f"
