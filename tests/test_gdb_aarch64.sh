#!/usr/bin/env bash
# The gdb view (tools/gdb/lacuna-gdb.py) on AArch64: tests/gdb_target.c cross-built statically
# with aarch64-linux-gnu-gcc, run under qemu-aarch64's gdb stub, and listed and backtraced by
# gdb-multiarch: the same checks as tests/test_gdb.sh's live run (tests/gdb_checks.sh), which
# exercise the AArch64 context layout (switch_aarch64.S). Exit 77 (skip) with the reason without
# gcc-aarch64-linux-gnu, qemu-user or gdb-multiarch (.ci/run installs them). Builds into BUILD_DIR.
# Usage: tests/test_gdb_aarch64.sh SOURCE_DIR BUILD_DIR
set -uo pipefail
src=$1 build=$2
script=$src/tools/gdb/lacuna-gdb.py
if [ "$(uname -m)" = aarch64 ]; then
  echo "SKIP: the host is AArch64: test_gdb covers it natively"
  exit 77
fi
for tool in aarch64-linux-gnu-gcc qemu-aarch64 gdb-multiarch; do
  if ! command -v "$tool" >/dev/null; then
    echo "SKIP: $tool is not installed (apt-get install gcc-aarch64-linux-gnu qemu-user gdb-multiarch)"
    exit 77
  fi
done
if ! gdb-multiarch -batch -nx -ex 'python import gdb.unwinder' >/dev/null 2>&1; then
  echo "SKIP: gdb-multiarch has no Python support with frame unwinders"
  exit 77
fi
cmake -S "$src" -B "$build" -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 \
  -DCMAKE_C_COMPILER=aarch64-linux-gnu-gcc -DCMAKE_ASM_COMPILER=aarch64-linux-gnu-gcc \
  -DCMAKE_DISABLE_FIND_PACKAGE_Boost=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DLACUNA_BUILD_TOOLS=OFF -DLACUNA_BUILD_TESTS=OFF >/dev/null || exit 1
cmake --build "$build" -j "$(nproc)" --target lacuna_static >/dev/null || exit 1
target=$build/gdb_target
aarch64-linux-gnu-gcc -std=c11 -g -O0 -static -I"$src/include" "$src/tests/gdb_target.c" \
  "$build/liblacuna.a" -lpthread -o "$target" || exit 1

tmp=$(mktemp -d)
qemu=
trap '[ -n "$qemu" ] && kill "$qemu" 2>/dev/null; rm -rf "$tmp"' EXIT
# shellcheck source-path=SCRIPTDIR source=gdb_checks.sh
source "$(dirname "$0")/gdb_checks.sh"

# qemu's gdb stub on a free port: a few tries, as another program may take the one picked.
out=$tmp/live.txt
for try in 1 2 3 4 5; do
  port=$((20000 + (RANDOM % 30000)))
  qemu-aarch64 -g "$port" "$target" >/dev/null 2>&1 &
  qemu=$!
  for _ in $(seq 50); do # until the stub listens (or qemu died: port taken)
    kill -0 "$qemu" 2>/dev/null || break
    grep -q ":$(printf '%04X' "$port") " /proc/net/tcp /proc/net/tcp6 2>/dev/null && break
    sleep 0.1
  done
  if kill -0 "$qemu" 2>/dev/null; then
    timeout 120 gdb-multiarch -batch -nx -x "$script" -ex 'set confirm off' \
      -ex "target remote 127.0.0.1:$port" -ex 'break lacuna_gdb_target_ready' -ex continue \
      -ex 'lacuna fibers' -ex 'lacuna bt deep' -ex 'info lacuna-fibers' -ex 'lacuna bt marker' \
      -ex kill "$target" >"$out" 2>&1
    kill "$qemu" 2>/dev/null
    wait "$qemu" 2>/dev/null
    qemu=
    break
  fi
  qemu=
  echo "note: qemu-aarch64 could not listen on port $port (try $try)"
done
if ! grep -q 'Breakpoint 1, lacuna_gdb_target_ready' "$out" 2>/dev/null; then
  cat "$out" 2>/dev/null
  echo "FAIL: the target did not reach lacuna_gdb_target_ready under qemu-aarch64 and gdb"
  exit 1
fi
check "$out" "aarch64 (qemu)"
awk '/^ID / && !seen++ { on = 1 } on { print } /^8 fibers/ { on = 0 }' "$out"
sed -n '/^fiber 0x[0-9a-f]* "deep"/,/^fiber /p' "$out" | grep '^#'
[ "$status" -eq 0 ] || cat "$out"
exit "$status"
