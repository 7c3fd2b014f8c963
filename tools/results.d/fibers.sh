#!/usr/bin/env bash
# The fibers table, from the text `make bench` saved (tools/bench.d/fibers.sh): skynet by its
# standard rules (1 and 2 M:N workers, and 2 separate runtimes), the buffered variant, a million parked fibers, switch and
# spawn+join, with Go's skynet and parked from the same run beside them. README and
# docs/fibers.md both carry this table between <!-- results fibers --> markers, filled in by
# tools/results-sync.sh, so the two cannot disagree. Usage: fibers.sh RESULTS_DIR
set -euo pipefail
in=$1
[ -s "$in/skynet.txt" ] && [ -s "$in/switch.txt" ] || exit 0

# "median min max" of the numbers on stdin
stats() { sort -g | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)], a[1], a[NR] }'; }
# a number with thousands separators: 1041 -> 1,041
commas() { printf '%s' "$1" | sed -E ':a; s/^([0-9]+)([0-9]{3})/\1,\2/; ta'; }
# "skynet: median 131.1 ms (min 129.6, max 149.1), median peak RSS 2.4 MiB" -> "131 (130–149), 2.4 MiB"
skynet() {
  grep -m1 -E '^skynet( --buffered \(variant\))?: median' "$1" |
    sed -E 's/.*median ([0-9.]+) ms \(min ([0-9.]+), max ([0-9.]+)\), median peak RSS ([0-9.]+) MiB/\1 \2 \3 \4/' |
    awk '{ printf "%.0f ms (%.0f–%.0f), peak RSS %s MiB", $1, $2, $3, $4 }'
}
slots() { grep -oE '[0-9]+ slots ever used' "$1" | tail -1 | cut -d' ' -f1; }
# "--go " when FILE was made with Go's runs beside lacuna's (lacuna-bench skynet --go)
gogo() { if grep -q '^go skynet GOMAXPROCS=' "$1" 2>/dev/null; then printf -- '--go '; fi; }
go_skynet() { # GOMAXPROCS -> "908 ms (885–1,011), 219 MiB; a run beside each of lacuna's; ..."
  # Go's runs made beside lacuna's (lacuna-bench skynet --go), with the per-round ratios.
  local own="$in/skynet.txt" t a b m
  [ "$1" = 2 ] && own="$in/skynet-workers2.txt"
  grep -q "^go skynet GOMAXPROCS=$1, one run per round" "$own" 2>/dev/null || return 0
  read -r t a b m < <(grep -m1 "^go skynet GOMAXPROCS=$1, one run per round" "$own" |
    sed -E 's/.*median ([0-9.]+) ms \(min ([0-9.]+), max ([0-9.]+)\), median peak RSS ([0-9.]+) MiB/\1 \2 \3 \4/' |
    awk '{ printf "%.0f %.0f %.0f %.0f", $1, $2, $3, $4 }')
  printf "%s ms (%s–%s), %s MiB; a run beside each of lacuna's" "$(commas "$t")" "$(commas "$a")" \
    "$(commas "$b")" "$m"
  grep -m1 '^lacuna/go, median of per-round ratios' "$own" |
    sed -E 's/.*time ([0-9.]+)x, peak RSS ([0-9.]+)x/; lacuna\/Go per round: time \1x, peak RSS \2x/'
}
ns() { # switch.txt line prefix -> "9.07 ns (9.05–9.23)"
  grep -m1 "^$1" "$in/switch.txt" | sed -E 's/.*: ([0-9.]+) ns \(min ([0-9.]+), max ([0-9.]+)\)/\1 ns (\2–\3)/'
}

echo "| measure | target | lacuna | Go |"
echo "|---|---|---:|---:|"
echo "| skynet, **standard rules** (unbuffered channels), 1 thread / GOMAXPROCS=1, 1,111,111 fibers, 64 KiB guarded stacks (\`lacuna-bench skynet $(gogo "$in/skynet.txt")--runs 9\`) | ≤ 200 ms, ≤ 64 MiB peak RSS; ≤ 0.2x Go's time, ≤ 0.05x its RSS | $(skynet "$in/skynet.txt"), $(slots "$in/skynet.txt") stack slots ever used | $(go_skynet 1) |"
[ -s "$in/skynet-workers2.txt" ] &&
  echo "| the same on **2 M:N workers** (\`$(gogo "$in/skynet-workers2.txt")--workers 2\`: one runtime, work stealing) / GOMAXPROCS=2 | ≤ 0.2x Go's time; ≥ 1.5x the 1-worker throughput | $(skynet "$in/skynet-workers2.txt") | $(go_skynet 2) |"
[ -s "$in/skynet-threads2.txt" ] &&
  echo "| **variant** \`--threads 2\`: the root's ten subtrees dealt to two separate runtimes (no stealing) | | $(skynet "$in/skynet-threads2.txt") | |"
[ -s "$in/skynet-buffered.txt" ] &&
  echo "| skynet **variant** \`--buffered\` (10-slot channels) | | $(skynet "$in/skynet-buffered.txt") | |"
if [ -s "$in/parked.txt" ]; then
  read -r t tmin tmax < <(sed -nE 's/.*total ([0-9]+) ms.*/\1/p' "$in/parked.txt" | stats)
  read -r rss pte floor < <(grep -m1 '^while parked' "$in/parked.txt" |
    sed -E 's/.*RSS ([0-9.]+) MiB .*\(VmPTE\) ([0-9.]+) MiB \([0-9.]+x the floor of ([0-9.]+) MiB.*/\1 \2 \3/')
  runs=$(grep -c 'total [0-9]* ms' "$in/parked.txt")
  lacuna=$(awk -v t="$t" -v a="$tmin" -v b="$tmax" -v r="$rss" -v p="$pte" -v f="$floor" -v n="$runs" 'BEGIN {
    printf "%.1f s (%.1f–%.1f; %d runs); RSS %.0f MiB; page tables %.1f MiB = %.2fx their floor", t / 1000, a / 1000, b / 1000, n, r, p, p / f }')
  go="" target="time ≤ 0.5x Go, RSS ≤ 1.6x Go, page tables ≤ 1.1x their floor"
  if [ -s "$in/parked-go.txt" ]; then
    read -r gt gtmin gtmax < <(sed -nE 's/.*total ([0-9]+) ms.*/\1/p' "$in/parked-go.txt" | stats)
    read -r grss _ _ < <(sed -nE 's/^while parked: RSS ([0-9]+) kB.*/\1/p' "$in/parked-go.txt" | stats)
    read -r gpte _ _ < <(sed -nE 's/.*\(VmPTE\) ([0-9]+) kB.*/\1/p' "$in/parked-go.txt" | stats)
    gruns=$(grep -c 'total [0-9]* ms' "$in/parked-go.txt")
    go=$(awk -v t="$gt" -v a="$gtmin" -v b="$gtmax" -v r="$grss" -v p="$gpte" -v n="$gruns" 'BEGIN {
      printf "%.1f s (%.1f–%.1f; %d runs); RSS %.0f MiB; page tables %.1f MiB", t / 1000, a / 1000, b / 1000, n, r / 1024, p / 1024 }')
    lacuna="$lacuna; $(awk -v t="$t" -v g="$gt" -v r="$rss" -v gr="$grss" 'BEGIN {
      printf "%.2fx Go'"'"'s time, %.2fx its RSS", t / g, r / (gr / 1024) }')"
  fi
  echo "| a million parked fibers, each blocked on its own channel, 16 KiB stacks, then all woken and joined (\`lacuna-bench parked\`; Go: \`tools/go/parked.go\`) | $target | $lacuna | $go |"
fi
boost=$(grep -m1 '^Boost.Context jump_fcontext round trip' "$in/switch.txt" |
  sed -E 's/.*: ([0-9.]+) ns \(min ([0-9.]+), max ([0-9.]+)\)/\1 ns (\2–\3)/' || true)
echo "| context switch (\`lacuna_yield\` between two fibers, one worker; \`lacuna-bench switch --runs 5\`) | ≤ 10 ns; ≤ Boost.Context's raw \`jump_fcontext\` round trip | $(ns switch)${boost:+; Boost.Context \`jump_fcontext\` round trip (two raw switches, no scheduler), same run: $boost} | |"
echo "| spawn + join of an empty fiber, from a fiber | ≤ 100 ns | $(ns spawn+join) | |"
if [ -s "$in/pingpong.txt" ]; then
  pp() { grep -m1 "^pingpong (channel round trip, $1" "$in/pingpong.txt" | sed -E 's/.*: ([0-9.]+) ns \(min ([0-9.]+), max ([0-9.]+)\).*/\1 ns (\2–\3)/'; }
  gopp=$(grep -m1 '^pingpong (Go' "$in/pingpong-go.txt" 2>/dev/null | sed -E 's/.*: ([0-9.]+) ns \(min ([0-9.]+), max ([0-9.]+)\).*/\1 ns (\2–\3)/' || true)
  fl=$(grep -m1 '^pingpong floor' "$in/pingpong.txt" | sed -E 's/.*: ([0-9.]+) ns \(min ([0-9.]+), max ([0-9.]+)\).*/; the floor, two plain threads bouncing one cache line: \1 ns (\2–\3)/' || true)
  echo "| channel round trip between fibers on 2 workers (\`lacuna-bench pingpong\`; Go: \`tools/go/pingpong.go\`, GOMAXPROCS=2, which may keep both goroutines on one thread) | pinned to two workers: ≤ Go's | pinned to 2 workers: $(pp pinned); unpinned: $(pp unpinned)$fl | $gopp |"
fi
