#!/usr/bin/env bash
# Install the built library into a temporary prefix, then build examples/stacks.c against that
# copy twice: through pkg-config and through CMake's find_package(lacuna). Run by ctest.
set -euo pipefail
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null

if command -v pkg-config >/dev/null; then
  export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig:$tmp/prefix/lib/x86_64-linux-gnu/pkgconfig"
  pkg-config --exists lacuna
  # shared library, run with the installed copy
  cc -std=c11 "$src/examples/stacks.c" $(pkg-config --cflags --libs lacuna) -o "$tmp/stacks-pc"
  LD_LIBRARY_PATH=$(pkg-config --variable=libdir lacuna) "$tmp/stacks-pc"
  echo "pkg-config: ok"
else
  echo "SKIP pkg-config part: pkg-config not installed"
fi

mkdir "$tmp/consumer"
cat > "$tmp/consumer/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.18)
project(consumer C)
find_package(lacuna 0.1 REQUIRED)
add_executable(stacks "$src/examples/stacks.c")
target_link_libraries(stacks PRIVATE lacuna::lacuna_static)
CMAKE
cmake -S "$tmp/consumer" -B "$tmp/consumer/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/consumer/build" >/dev/null
"$tmp/consumer/build/stacks"
echo "find_package: ok"
