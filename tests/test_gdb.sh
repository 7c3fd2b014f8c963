#!/usr/bin/env bash
# The gdb view (tools/gdb/lacuna-gdb.py) on tests/gdb_target.c, whose fibers park in known places
# (two on a channel, one asleep, one in an fd wait, one three calls deep, one on a mutex, one on a
# waitgroup) before a running fiber calls lacuna_gdb_target_ready. Checked, in gdb's batch mode:
#  1. a live process: `lacuna fibers` lists each fiber with its name, state and wait, and
#     `lacuna bt deep` shows deep_c, deep_b, deep_a and deep, in that order;
#  2. the same on a copy of liblacuna.so stripped of everything but its dynamic symbols (the
#     script needs no DWARF), where the backtrace still names the program's frames;
#  3. a core file written by gdb's gcore (with mprotect guards: see docs/debugging.md);
#  4. a kernel core dump of the program aborting at the marker (when core_pattern writes a file
#     in the working directory; else said and skipped).
# Exit 77 (skip) without gdb, without gdb's Python, or where ptrace is not permitted.
# Usage: tests/test_gdb.sh GDB_TARGET SCRIPT LIBLACUNA_SO
set -uo pipefail
target=$(readlink -f "$1") script=$2 libso=$3
if ! command -v gdb >/dev/null; then
  echo "SKIP: gdb is not installed (apt-get install gdb)"
  exit 77
fi
if ! gdb -batch -nx -ex 'python import gdb.unwinder' >/dev/null 2>&1; then
  echo "SKIP: this gdb has no Python support with frame unwinders"
  exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# shellcheck source-path=SCRIPTDIR source=gdb_checks.sh
source "$(dirname "$0")/gdb_checks.sh"

# gdb on the live target, stopped at the marker; extra commands after the checks. Output to $1.
live() {
  local out=$1
  shift
  gdb -batch -nx -x "$script" -ex 'set confirm off' -ex 'break lacuna_gdb_target_ready' -ex run \
    -ex 'lacuna fibers' -ex 'lacuna bt deep' -ex 'info lacuna-fibers' -ex 'lacuna bt marker' \
    "$@" -ex kill "$target" >"$out" 2>&1
}

# gdb on core file $1, the same commands as live(). Output to $2.
read_core() {
  gdb -batch -nx -x "$script" -ex 'lacuna fibers' -ex 'lacuna bt deep' -ex 'info lacuna-fibers' \
    -ex 'lacuna bt marker' "$target" "$1" >"$2" 2>&1
}

# ---- 1. live ----
live "$tmp/live.txt"
if grep -q 'ptrace: Operation not permitted\|Could not trace the inferior\|Couldn.t get registers' "$tmp/live.txt"; then
  echo "SKIP: gdb may not trace processes here (ptrace not permitted)"
  exit 77
fi
if ! grep -q 'Breakpoint 1, lacuna_gdb_target_ready' "$tmp/live.txt"; then
  cat "$tmp/live.txt"
  echo "FAIL: the target did not reach lacuna_gdb_target_ready under gdb"
  exit 1
fi
check "$tmp/live.txt" "live"
echo "== live process"
awk '/^ID / && !seen++ { on = 1 } on { print } /^8 fibers/ { on = 0 }' "$tmp/live.txt"
sed -n '/^fiber 0x[0-9a-f]* "deep"/,/^fiber /p' "$tmp/live.txt" | grep '^#' 

# ---- 2. a stripped library ----
mkdir "$tmp/lib"
soname=$(basename "$(readlink -f "$libso")")
cp "$(readlink -f "$libso")" "$tmp/lib/$soname"
ln -sf "$soname" "$tmp/lib/liblacuna.so.0"
if command -v strip >/dev/null && strip --strip-all "$tmp/lib/$soname"; then
  LD_LIBRARY_PATH="$tmp/lib" live "$tmp/stripped.txt" -ex 'info sharedlibrary'
  if grep -q "$tmp/lib/liblacuna.so.0" "$tmp/stripped.txt"; then
    check "$tmp/stripped.txt" "stripped library" nolib
    echo "== stripped library: checked"
  else
    echo "note: the target does not load liblacuna from LD_LIBRARY_PATH (DT_RPATH): stripped check skipped"
  fi
else
  echo "note: no strip (binutils): stripped check skipped"
fi

# ---- 3. gcore ----
# Guard markers (MADV_GUARD_INSTALL) make gdb's gcore drop the pool's memory: mprotect guards.
LACUNA_FORCE_FALLBACK=guard live "$tmp/gcore.txt" -ex "gcore $tmp/gcore.core"
if [ -s "$tmp/gcore.core" ]; then
  read_core "$tmp/gcore.core" "$tmp/gcore-read.txt"
  check "$tmp/gcore-read.txt" "gcore core file"
  echo "== gcore core file: checked"
else
  fail "gcore wrote no core file"
  cat "$tmp/gcore.txt"
fi

# ---- 4. a kernel core dump ----
pattern=$(cat /proc/sys/kernel/core_pattern 2>/dev/null || echo '|?')
case $pattern in
  core | core.%p | core.%e.%p)
    mkdir "$tmp/crash"
    (cd "$tmp/crash" && ulimit -c unlimited && "$target" crash >/dev/null 2>&1) 2>/dev/null
    core=
    for c in "$tmp"/crash/core*; do [ -f "$c" ] && core=$c && break; done
    if [ -n "$core" ]; then
      read_core "$core" "$tmp/kcore.txt"
      check "$tmp/kcore.txt" "kernel core dump"
      echo "== kernel core dump: checked"
    else
      echo "note: no kernel core dump was written (ulimit or policy): that check skipped"
    fi
    ;;
  *) echo "note: core_pattern is '$pattern' (not a file here): kernel core dump check skipped" ;;
esac

if [ "$status" -ne 0 ]; then
  for f in "$tmp"/*.txt; do
    echo "---- $(basename "$f")"
    cat "$f"
  done
fi
exit "$status"
