#!/usr/bin/env bash
# The ELF marks of the built library, read with readelf (binutils; exit 77 without it):
#  - liblacuna.so is DF_1_NODELETE (dlclose leaves it mapped: tests/test_dlclose.c);
#  - every object of liblacuna.a, the switch assembly included, carries the IBT (x86-64) or BTI
#    (AArch64) property, and on x86-64 never SHSTK;
#  - the switch assembly's global functions (lac_ctx_switch, lac_ctx_init) open with their
#    landing pad (endbr64, bti c): the property is a promise about them;
#  - a program object built with full protection (test_cet.c.o) linked with all of liblacuna.a
#    keeps IBT / BTI and, on x86-64, loses SHSTK: the safe outcome, as fibers switch stacks
#    without switching shadow stacks. This link is relocatable (-r): the final link would also
#    take the C library's start files, whose marks are the toolchain's, not lacuna's;
#  - liblacuna.so carries the property too, when this toolchain can mark a shared object at all
#    (a probe library linked with the same flag; Debian 12's crti.o has no property, so there
#    nothing linked carries IBT and this part only says so).
# Run by ctest. Usage: tests/test_elf_notes.sh CPU LIBSO LIBA CC CF_FLAG PROGRAM_OBJECT...
set -euo pipefail
cpu=$1 so=$2 lib=$(realpath "$3") cc=$4 cf=$5
shift 5
if ! command -v readelf >/dev/null; then
  echo "SKIP: readelf is not installed (apt-get install binutils)"
  exit 77
fi
case $cpu in
  x86_64 | AMD64 | amd64) want=IBT pad=endbr64 switch=switch_x86_64.S.o ;;
  aarch64 | arm64 | ARM64) want=BTI pad='bti[[:space:]]+c' switch=switch_aarch64.S.o ;;
  *) want= ;;
esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
fail() {
  echo "FAIL: $*"
  status=1
}

# The branch-protection features a file is marked with, e.g. "IBT, SHSTK", or "none".
features() {
  local f
  f=$(readelf -n "$1" | sed -n 's/.*\(x86\|AArch64\) feature: //Ip' | head -1)
  echo "${f:-none}"
}
has() { [[ ", $1," == *", $2,"* ]]; }

if grep -q 'Flags:.*NODELETE' <<<"$(readelf -d "$so")"; then # no pipe: grep -q quitting early fails it under pipefail
  echo "ok   $so: DF_1_NODELETE"
else
  fail "$so is not DF_1_NODELETE (link it with -z nodelete)"
fi

if [ -z "$want" ]; then
  echo "SKIP: no branch-protection property on $cpu"
  exit $((status ? status : 77))
fi
if [ -z "$cf" ]; then
  echo "SKIP: the compiler has no branch-protection flag (-fcf-protection / -mbranch-protection)"
  exit $((status ? status : 77))
fi

# Every member of the archive, one by one.
mkdir "$tmp/members"
(cd "$tmp/members" && ar x "$lib")
for o in "$tmp"/members/*.o; do
  f=$(features "$o")
  if ! has "$f" "$want"; then
    fail "$(basename "$o") is not marked $want ($f)"
  elif has "$f" SHSTK; then
    fail "$(basename "$o") claims SHSTK, which a fiber switch breaks ($f)"
  else
    echo "ok   $(basename "$o"): $f"
  fi
done

# The landing pads the switch's property promises (objdump reads this CPU's code only).
if ! command -v objdump >/dev/null; then
  echo "note objdump is not installed: landing pads not checked"
elif [ ! -f "$tmp/members/$switch" ]; then
  fail "$switch is not in $lib"
else
  for fn in $(nm --defined-only -g "$tmp/members/$switch" | awk '$2 == "T" { print $3 }'); do
    first=$(objdump -d --no-show-raw-insn "$tmp/members/$switch" |
      awk -v fn="<$fn>:" '$2 == fn { getline; print; exit }')
    if [[ $first =~ $pad ]]; then
      echo "ok   $fn opens with its landing pad:${first#*:}"
    else
      fail "$fn does not open with its landing pad: $first"
    fi
  done
fi

# A hardened program object linked with all of lacuna.
prog=$(features "$1")
cc_r() { "$cc" -r -nostdlib -o "$tmp/linked.o" "$@" -Wl,--whole-archive "$lib" -Wl,--no-whole-archive; }
if ! has "$prog" "$want"; then
  fail "the program object $1 is not marked $want ($prog): was it built with full protection?"
elif cc_r "$@"; then
  f=$(features "$tmp/linked.o")
  if ! has "$f" "$want"; then
    fail "program ($prog) + liblacuna.a lost $want: $f"
  elif has "$f" SHSTK; then
    fail "program ($prog) + liblacuna.a kept SHSTK: $f"
  else
    echo "ok   program ($prog) + liblacuna.a: $f"
  fi
else
  fail "could not link $* with $lib (-r)"
fi

# The shared library, where the toolchain's own start files let any shared object be marked.
echo 'int lac_probe(void) { return 0; }' >"$tmp/probe.c"
"$cc" "$cf" -fPIC -shared "$tmp/probe.c" -o "$tmp/probe.so"
probe=$(features "$tmp/probe.so")
f=$(features "$so")
if has "$probe" "$want"; then
  if has "$f" "$want" && ! has "$f" SHSTK; then
    echo "ok   $(basename "$so"): $f"
  else
    fail "$(basename "$so") is marked '$f', a probe library linked the same way '$probe'"
  fi
else
  echo "note $(basename "$so"): $f; this toolchain marks no shared object $want (a probe" \
    "library built with $cf: $probe), as its start files (crti.o) carry no property"
fi
exit $status
