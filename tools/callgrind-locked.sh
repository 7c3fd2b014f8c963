#!/usr/bin/env bash
# Locked instructions (lock-prefixed, or xchg with memory) executed by a lacuna-bench run, per
# instruction, counted by callgrind. callgrind counts such an instruction as one, but on x86 it
# costs tens of cycles (it waits for the store buffer to drain): where two builds' instruction
# counts differ less than their times, compare these.
# Usage: tools/callgrind-locked.sh path/to/lacuna-bench ARGS...   e.g.
#        tools/callgrind-locked.sh build/tools/lacuna-bench skynet --depth 5 --runs 1
set -euo pipefail
bench=$1
shift
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# (mawk, Debian's awk, has no strtonum)
hex='function hex(s,  i, v) { v = 0; s = tolower(s); sub(/^0x/, "", s)
  for (i = 1; i <= length(s); i++) v = v * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1
  return v }'
objdump -d --no-show-raw-insn "$bench" | awk "$hex"'
  /^[0-9a-f]+ <.*>:$/ { fn = $2; gsub(/[<>:]/, "", fn); next }
  /^ +[0-9a-f]+:\t(lock |xchg .*\()/ { a = $1; sub(":", "", a); ins = $0; sub(/^[^\t]*\t/, "", ins)
                                      printf "%d\t%s\t%s\n", hex(a), fn, ins }' >"$tmp/locked"
# The benchmarks run in a forked child: its profile is the largest file.
valgrind --tool=callgrind --dump-instr=yes --trace-children=yes \
  --callgrind-out-file="$tmp/cg.%p" "$bench" "$@" >/dev/null 2>&1
out=$(ls -S "$tmp"/cg.* | head -1)
awk -F'\t' -v total_label="locked instructions executed" "$hex"'
  FNR == NR { fn[$1] = $2; ins[$1] = $3; next }
  /^calls=/ { skip = 1; next }       # the next cost line is the call, not an instruction of its own
  /^(0x[0-9a-f]+|[+-][0-9]+|\*) / {
    split($0, f, " "); p = f[1]
    if (p ~ /^0x/) addr = hex(p); else if (p ~ /^\+/) addr += substr(p, 2); else if (p ~ /^-/) addr -= substr(p, 2)
    if (skip) { skip = 0; next }
    if (addr in fn) n[addr] += f[3]
  }
  END { for (a in n) { t += n[a]; if (n[a] >= 100) printf "%12d  %-32s %s\n", n[a], fn[a], ins[a] | "sort -rn" }
        close("sort -rn"); printf "%12d  %s (those run fewer than 100 times not listed)\n", t, total_label }' "$tmp/locked" FS=' ' "$out"
