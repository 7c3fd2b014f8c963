#!/usr/bin/env bash
# The fiber and pool tests on AArch64: cross-build them statically with aarch64-linux-gnu-gcc and
# run them under qemu-aarch64 (user mode). Run by ctest on other hosts; exits 77 (skip) with the
# reason when the Debian packages gcc-aarch64-linux-gnu and qemu-user are not installed.
# Usage: tests/aarch64_qemu.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$1 build=$2
if [ "$(uname -m)" = aarch64 ]; then
  echo "SKIP: the host is AArch64: the native fiber tests cover it"
  exit 77
fi
for tool in aarch64-linux-gnu-gcc qemu-aarch64; do
  if ! command -v "$tool" >/dev/null; then
    echo "SKIP: $tool is not installed (apt-get install gcc-aarch64-linux-gnu qemu-user)"
    exit 77
  fi
done
cmake -S "$src" -B "$build" -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 \
  -DCMAKE_C_COMPILER=aarch64-linux-gnu-gcc -DCMAKE_ASM_COMPILER=aarch64-linux-gnu-gcc \
  -DCMAKE_EXE_LINKER_FLAGS=-static -DCMAKE_DISABLE_FIND_PACKAGE_Boost=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLACUNA_BUILD_TOOLS=OFF >/dev/null
# The fiber tests, and the pool tests that do not fork a threaded process (qemu-user asserts
# in its own code then: test_fork). test_features holds the probes to what qemu-user does:
# MADV_GUARD_INSTALL accepted and ignored, no process_madvise; so the pool runs its
# fallbacks here (mprotect guards, one madvise per region) on a second architecture.
targets="test_features test_pool_api test_pool_release test_guard"
targets="$targets test_fiber_api test_fiber_switch test_fiber_stress"
cmake --build "$build" -j "$(nproc)" --target $targets >/dev/null
cd "$build/tests"
ulimit -c 0 # the overflow tests die by SIGSEGV on purpose: no core files
status=0
for t in $targets; do
  echo "== $t (qemu-aarch64)"
  LACUNA_TEST_EXPECT_FEATURES=guard_marker=0,batch_release=0 qemu-aarch64 "./$t" || status=1
done
exit $status
