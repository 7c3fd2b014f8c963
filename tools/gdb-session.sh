#!/usr/bin/env bash
# docs/debugging.md's example session, run for real: gdb in batch mode on tests/gdb_target (seven
# parked fibers and a running one, from the test build), the doc's commands echoed as "(gdb) CMD"
# before their output. Source paths are printed relative to the repository (gdb prints them
# absolute); nothing else is changed. Prints the transcript; exit 77 without gdb or the target.
# Usage: tools/gdb-session.sh [TEST_BUILD_DIR]   (default build-test, which make test builds)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-test}
target=$build/tests/gdb_target
script=tools/gdb/lacuna-gdb.py
if ! command -v gdb >/dev/null || [ ! -x "$target" ]; then
  echo "gdb-session: needs gdb and $target (make test builds it)" >&2
  exit 77
fi
cmds=('break lacuna_gdb_target_ready' 'run' 'lacuna fibers' 'lacuna bt deep' 'lacuna bt sleeper full')
args=()
for c in "${cmds[@]}"; do args+=(-ex "echo (gdb) $c\\n" -ex "$c"); done
echo "\$ gdb -q -x $script $target"
gdb -batch -nx -q -x "$script" -ex 'set confirm off' -ex 'set pagination off' "${args[@]}" \
  -ex kill "$target" 2>&1 | sed -e "s|$PWD/||g" -e '/^\[Inferior 1 (process [0-9]*) killed\]$/d'
