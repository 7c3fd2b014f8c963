#!/usr/bin/env bash
# Install the built library into a temporary prefix, then build examples/stacks.c against that
# copy twice: through pkg-config (run through the rpath, as README shows) and through CMake's
# find_package(lacuna) (examples/consumer). Run by ctest.
set -euo pipefail
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null

if command -v pkg-config >/dev/null; then
  export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig:$tmp/prefix/lib/x86_64-linux-gnu/pkgconfig"
  pkg-config --exists lacuna
  # shared library, run with the installed copy
  libdir=$(cd "$(pkg-config --variable=libdir lacuna)" && pwd -P)
  # shellcheck disable=SC2046 # pkg-config's flags are meant to be split into words
  cc -std=c11 "$src/examples/stacks.c" -o "$tmp/stacks-pc" $(pkg-config --cflags --libs lacuna) \
    -Wl,-rpath,"$libdir"
  "$tmp/stacks-pc"
  # it ran the installed liblacuna.so, not another one
  # (ldd's output is read whole first: grep -q stopping early must not fail the pipe)
  loads=$(ldd "$tmp/stacks-pc")
  grep -q "liblacuna.so.* => $libdir/liblacuna.so" <<<"$loads" ||
    { echo "stacks-pc does not load $libdir/liblacuna.so"; echo "$loads"; exit 1; }
  echo "pkg-config: ok"
else
  echo "SKIP pkg-config part: pkg-config not installed"
fi

# The gdb script, and its auto-load copy named after the installed library's real path.
real=$(cd "$tmp/prefix" && readlink -f "$(ls -d "$tmp"/prefix/lib*/liblacuna.so "$tmp"/prefix/lib/*/liblacuna.so 2>/dev/null | head -1)")
[ -f "$tmp/prefix/share/lacuna/lacuna-gdb.py" ] || { echo "share/lacuna/lacuna-gdb.py not installed"; exit 1; }
[ -f "$tmp/prefix/share/gdb/auto-load$real-gdb.py" ] ||
  { echo "no auto-load script share/gdb/auto-load$real-gdb.py"; find "$tmp/prefix/share" -name '*gdb*'; exit 1; }
echo "gdb script: ok"

# The project README's CMake commands build (examples/consumer), shared and static.
for target in lacuna::lacuna lacuna::lacuna_static; do
  rm -rf "$tmp/consumer"
  cmake -S "$src/examples/consumer" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$tmp/prefix" \
    -DLACUNA_TARGET=$target >/dev/null
  cmake --build "$tmp/consumer" >/dev/null
  "$tmp/consumer/stacks"
  echo "find_package, $target: ok"
done
