#!/usr/bin/env bash
# The figures README.md and docs/*.md quote in their prose, each computed from bench/results/:
# prints "NAME<TAB>VALUE" lines. A document writes a figure as
#     <!--fig NAME-->VALUE<!--/fig-->
# (the comments do not render) and tools/results-sync.sh rewrites VALUE from here, or with
# --check fails when it differs, so no number in the prose is typed by hand. A figure whose
# results file is missing is not printed (a document quoting it then fails the check).
# Usage: tools/results-figures.sh [RESULTS_DIR]
set -euo pipefail
in=${1:-bench/results}
fig() { printf '%s\t%s\n' "$1" "$2"; }
# a whole number with thousands separators: 16470 -> 16,470
commas() { printf '%s' "$1" | sed -E ':a; s/^([0-9]+)([0-9]{3})/\1,\2/; ta'; }
# "median min max" of the numbers on stdin
stats() { sort -g | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)], a[1], a[NR] }'; }
# "lo-hi" of the numbers on stdin, each printed with FORMAT (the range collapses when they agree)
range() {
  sort -g | awk -v f="$1" 'NR == 1 { lo = $1 } { hi = $1 }
    END { a = sprintf(f, lo); b = sprintf(f, hi); print (a == b ? a : a "-" b) }'
}

if [ -s "$in/duration.txt" ]; then
  s=$(sed -nE 's/.*done in ([0-9]+) s.*/\1/p' "$in/duration.txt")
  fig bench.seconds "$s"
  fig bench.minutes "$(( (s + 30) / 60 ))"
fi

if [ -s "$in/pair.txt" ]; then
  n=$(sed -nE 's/.*pair: ([0-9]+) .*/\1/p' "$in/pair.txt")
  fig pair.instructions "$n"
  fig pair.without-ibt "$((n - 2))"
  fig pair.ir "$(sed -nE 's/.*\(([0-9]+) Ir over.*/\1/p' "$in/pair.txt")"
  fig pair.pairs "$(sed -nE 's/.* Ir over ([0-9]+) pairs.*/\1/p' "$in/pair.txt")" # the two endbr64 pads of lacuna_alloc and lacuna_free
fi

if [ -s "$in/demo.txt" ]; then
  # "lacuna (one reservation)  100000  199.9  68.2  47  398 MiB  9 MiB ..." -> RSS after
  fig demo.lacuna.rss-after-mib \
    "$(sed -nE 's/^lacuna \(one reservation\) +[0-9]+ +[0-9.]+ +[0-9.]+ +[0-9]+ +[0-9]+ MiB +([0-9]+) MiB.*/\1/p' "$in/demo.txt")"
fi

# churn at 64 KiB, 1 page touched: every backend's ns/cycle and its ratio to lacuna's.
if [ -s "$in/churn.csv" ]; then
  awk -F, 'function commas(n, s, r) { s = sprintf("%d", n); r = ""
      while (length(s) > 3) { r = "," substr(s, length(s) - 2) r; s = substr(s, 1, length(s) - 3) }
      return s r }
    !/^#/ && $1 != "backend" && $2 == 65536 && $5 == 1 && $18 == "" {
      ns[$1] = $8; end[$1] = $12; calls[$1] = $15; regions[$1] = $16 }
    END { base = ns["lacuna"]
      for (b in ns) { printf "churn.%s.ns\t%.1f\n", b, ns[b]; printf "churn.%s.x\t%.2f\n", b, ns[b] / base
        printf "churn.%s.x0\t%.0f\n", b, ns[b] / base }
      printf "churn.lacuna.end-rss-mib\t%.1f\n", end["lacuna"] / 1024
      printf "churn.lacuna.release-calls\t%d\n", calls["lacuna"]
      printf "churn.lacuna.released-regions\t%s\n", commas(regions["lacuna"])
      printf "churn.lacuna.vs-malloc\t%.2f\n", base / ns["malloc"]
      printf "churn.target-naive\t%s\n", (ns["naive"] / base >= 300 ? "met, as a cache vs an unmap" : "not met")
      printf "churn.target-malloc\t%s\n", (base / ns["malloc"] <= 0.6 ? "met" : "not met")
      d = ns["lacuna-dontneed"]
      printf "churn.naive.vs-dontneed\t%.1f\n", ns["naive"] / d
      # how much faster releasing on every free is than the rows that unmap every region
      lo = hi = ""; split("naive naive-noguard boost-protected", u, " ")
      for (i = 1; i <= 3; i++) if (u[i] in ns) { r = ns[u[i]] / d
        if (lo == "" || r < lo) lo = r; if (hi == "" || r > hi) hi = r }
      printf "churn.unmap.vs-dontneed\t%.1f-%.1f\n", lo, hi }' "$in/churn.csv"
  for b in naive lacuna-dontneed; do
    fig "churn.$b.ns-int" "$(commas "$(awk -F, -v b="$b" '$1 == b && $2 == 65536 && $5 == 1 { printf "%.0f", $8 }' "$in/churn.csv")")"
  done
fi

# churn-peers.csv: lacuna and its peers one after the other (tools/bench.d/churn-peers.sh).
if [ -s "$in/churn-peers.csv" ]; then
  awk -F, '!/^#/ && $1 != "backend" && $18 == "" { ns[$1] = $8 }
    END { for (b in ns) printf "peers.%s.ns\t%.1f\n", b, ns[b]
      printf "peers.lacuna.vs-tcmalloc\t%.2f\n", ns["lacuna"] / ns["tcmalloc"]
      printf "peers.target\t%s\n", (ns["lacuna"] / ns["tcmalloc"] <= 0.8 ? "met" : "not met") }' "$in/churn-peers.csv"
  fig peers.load "$(sed -nE 's/^# load average before: (.*)/\1/p' "$in/churn-peers.csv")"
fi

# threads.csv: 2 threads against 1, private and 50 % cross-thread frees.
if [ -s "$in/threads.csv" ]; then
  awk -F, '!/^#/ && $1 != "backend" && $18 == "" {
      k = $6 == 1 ? "1" : $7 == 0 ? "private" : "cross"; ns[$1, k] = $8; cpu[$1, k] = $20; b[$1] = 1 }
    END { for (x in b) { if (!((x, "1") in ns)) continue
        printf "threads.%s.1.cpu\t%.1f\n", x, cpu[x, "1"]; printf "threads.%s.1.ns\t%.1f\n", x, ns[x, "1"]
        for (i = 1; i <= 2; i++) { k = i == 1 ? "private" : "cross"; if (!((x, k) in ns)) continue
          printf "threads.%s.%s.x\t%.2f\n", x, k, ns[x, "1"] / ns[x, k]
          printf "threads.%s.%s.cpu\t%.1f\n", x, k, cpu[x, k]; printf "threads.%s.%s.ns\t%.1f\n", x, k, ns[x, k] } }
      printf "threads.target-private\t%s\n", (ns["lacuna", "1"] / ns["lacuna", "private"] >= 1.8 ? "met" : "not met")
      printf "threads.target-cross\t%s\n", (ns["lacuna", "1"] / ns["lacuna", "cross"] >= 1.5 ? "met" : "not met") }' "$in/threads.csv"
fi

# threads-parts.csv (tools/bench.d/threads-parts.sh): per backend B, touch T and mode M (1: one
# thread, p: 2 private, x: 2 with 50 % cross), tp.B.tT.M = median CPU ns per cycle over the
# rounds and tp.B.tT.M-min the minimum; tp.B.tT.extra = x - 1 (medians; -min: minimums);
# tp.B.tT.allowed = what x may cost over 1 for 1.5x (1/3 of one thread's cycle); tp.B.tT.best =
# one thread's fastest wall time over the fastest cross run.
if [ -s "$in/threads-parts.csv" ]; then
  awk -F, 'function med(k,   n, i, j, t, a) { n = split(v[k], a, " ")
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
    function mn(s,   n, i, a, m) { n = split(s, a, " "); m = a[1]; for (i = 2; i <= n; i++) if (a[i] + 0 < m + 0) m = a[i]; return m }
    !/^#/ && $1 != "round" && $20 == "" {
      m = $8 == 1 ? "1" : $9 == 0 ? "p" : "x"; k = $3 ".t" $7; v[k SUBSEP m] = v[k SUBSEP m] " " $22
      w[k SUBSEP m] = w[k SUBSEP m] " " $10; keys[k] = 1 }
    END { for (k in keys) { split("1 p x", ms, " ")
        for (i = 1; i <= 3; i++) if ((k SUBSEP ms[i]) in v) {
          printf "tp.%s.%s\t%.1f\n", k, ms[i], med(k SUBSEP ms[i]); printf "tp.%s.%s-min\t%.1f\n", k, ms[i], mn(v[k SUBSEP ms[i]]) }
        if (!((k SUBSEP "1") in v) || !((k SUBSEP "x") in v)) continue
        printf "tp.%s.extra\t%.1f\n", k, med(k SUBSEP "x") - med(k SUBSEP "1")
        printf "tp.%s.extra-min\t%.1f\n", k, mn(v[k SUBSEP "x"]) - mn(v[k SUBSEP "1"])
        printf "tp.%s.allowed\t%.1f\n", k, med(k SUBSEP "1") / 3
        printf "tp.%s.best\t%.2f\n", k, mn(w[k SUBSEP "1"]) / mn(w[k SUBSEP "x"]) } }' "$in/threads-parts.csv"
  # whether any round of either floor reached 1.5x with cross-thread frees, touched or not
  fig tp.floors-verdict "$(awk -F, '!/^#/ && $1 != "round" && $20 == "" && $3 ~ /^floor/ {
      k = $3 SUBSEP $7; if ($8 == 1) { if (!(k in one) || $10 < one[k]) one[k] = $10 }
      else if ($9 == 50) { if (!(k in x) || $10 < x[k]) x[k] = $10 } }
    END { best = 0; for (k in x) if ((k in one) && one[k] / x[k] > best) { best = one[k] / x[k]; split(k, b, SUBSEP); at = b[1] " at --touch " b[2] }
      if (best < 1.5) printf "neither floor reaches 1.5x in any round (at best %.2fx, %s)", best, at
      else printf "a floor reached 1.5x in a round (%.2fx, %s): the machine was quiet enough", best, at }' "$in/threads-parts.csv")"
  # the single-thread cycle above which the floors' cheapest hand-over would fit 1.5x's allowance
  fig tp.handover-fits-above "$(awk -F, '!/^#/ && $1 != "round" && $20 == "" && $3 ~ /^floor/ && $7 == 0 {
      k = $3; if ($8 == 1) { if (!(k in one) || $22 < one[k]) one[k] = $22 }
      else if ($9 == 50) { if (!(k in x) || $22 < x[k]) x[k] = $22 } }
    END { m = ""; for (k in x) if ((k in one) && (m == "" || x[k] - one[k] < m)) m = x[k] - one[k]; printf "%.0f", 3 * m }' "$in/threads-parts.csv")"
  fig tp.rounds "$(awk -F, '!/^#/ && $1 != "round" { r[$1] = 1 } END { print length(r) }' "$in/threads-parts.csv")"
  fig tp.load "$(awk -F, '!/^#/ && $1 != "round" { l = $2 + 0; if (lo == "" || l < lo) lo = l; if (l > hi) hi = l } END { print lo "–" hi }' "$in/threads-parts.csv")"
fi

# boost-skynet.csv: what Boost's protected_fixedsize_stack did past vm.max_map_count (its deepest
# run): its mmap failed, or its mprotect did and it went on without guards, or neither.
if [ -s "$in/boost-skynet.csv" ]; then
  fig bs.protected.outcome "$(awk -F, 'function commas(n, s, r) { s = sprintf("%d", n); r = ""
      while (length(s) > 3) { r = "," substr(s, length(s) - 2) r; s = substr(s, 1, length(s) - 3) }
      return s r }
    $1 == "protected" { d = $2; f = $12; u = $13; live = $11 }
    END { if (f > 0) print "failed (std::bad_alloc from its mmap) at " commas(f) " live stacks"
      else if (u > 0) print "went on without guards: at depth " d " the bench found stack " commas(u) " unguarded, and the run completed with " commas(live) " live"
      else print "kept every checked stack guarded" }' "$in/boost-skynet.csv")"
  fig bs.load "$(sed -nE 's/^# load average before: ([0-9.]+).*/\1/p' "$in/boost-skynet.csv")"
fi

# burst.txt: the lacuna row of its table (idle and trimmed ends over the start), and malloc's.
if [ -s "$in/burst.txt" ]; then
  awk '$1 == "lacuna" || $1 == "malloc" || $1 == "naive-noguard" {
      p = $1; printf "burst.%s.pte-per-region\t%s\n", p, $6
      printf "burst.%s.idle-rss-kib\t%s\n", p, $8; printf "burst.%s.idle-pte-kib\t%s\n", p, $10
      printf "burst.%s.back-in-ms\t%s\n", p, $12
      printf "burst.%s.trim-rss-kib\t%s\n", p, $14; printf "burst.%s.trim-pte-kib\t%s\n", p, $16
      if (p == "lacuna") { idle = $8; trim = $14 } }
    END { printf "burst.lacuna.idle-minus-trim-kib\t%d\n", idle - trim }' "$in/burst.txt"
  fig burst.pointers-kib "$(sed -nE 's/.*the ([0-9]+) KiB array of pointers.*/\1/p' "$in/burst.txt")"
fi

# skynet.txt: the RSS of a fresh process (at the start of each run), median.
if [ -s "$in/skynet.txt" ]; then
  read -r m _ _ < <(sed -nE 's/.*RSS at start ([0-9.]+) MiB.*/\1/p' "$in/skynet.txt" | stats)
  fig skynet.rss-start-mib "$m"
fi

# skynet by the standard rules, 1 thread, against Go's with GOMAXPROCS=1: the per-round ratios
# of skynet.txt (lacuna-bench skynet --go: a Go run beside each of lacuna's).
if grep -q '^lacuna/go, median of per-round ratios' "$in/skynet.txt" 2>/dev/null; then
  read -r rt rm < <(sed -nE 's/^lacuna\/go, median of per-round ratios: time ([0-9.]+)x, peak RSS ([0-9.]+)x.*/\1 \2/p' "$in/skynet.txt")
  fig skynet.vs-go-time "$(awk -v r="$rt" 'BEGIN { printf "%.1f", 1 / r }')"
  fig skynet.vs-go-rss "$(awk -v r="$rm" 'BEGIN { printf "%.0f", 1 / r }')"
fi

# deep.txt (lacuna-bench deep --runs 5, with tools/go/deep.go): the prose under its table.
if [ -s "$in/deep.txt" ]; then
  awk 'function num(k,   i) { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9][0-9.]*$/ && --k == 0) return $i }
    /^lacuna-bench deep:/ { s = "l" } /^go deep:/ { g++; s = "g" g }
    s == "l" && /^baseline/ { match($0, /RSS [0-9.]+/); base = substr($0, RSTART + 4, RLENGTH - 4) }
    s == "l" && /^RSS after lacuna_fiber_release_idle/ { after = num(1) }
    s == "l" && /^needed:/ { match($0, /\(([0-9]+)\.\./); used = substr($0, RSTART + 1, RLENGTH - 3) }
    s == "l" && /^ +[0-9]+ pages \(/ { if ($1 + 0 > hw) hw = $1 + 0 }
    s == "l" && /^resident stack pages after/ { match($0, / [0-9]+\.\./); kept = substr($0, RSTART + 1, RLENGTH - 3) }
    s == "l" && /^  go deep again/ { again_us = num(1); again_f = num(2) }
    /^RSS, all parked, no GC yet/ { gbase[s] = num(1) }
    s == "g1" && /^RSS after FreeOSMemory until flat/ { match($0, /\([0-9]+ GCs/); gcs = substr($0, RSTART + 1, RLENGTH - 5)
      match($0, /\([0-9.]+ MiB/); gstack = substr($0, RSTART + 1, RLENGTH - 5) }
    /^lacuna-bench deep:/ { n = $3 }
    END { printf "deep.used-bytes\t%s\n", used; printf "deep.pages-kept\t%s\n", kept
      printf "deep.pages-released\t%d\n", hw - kept; printf "deep.residue-mib\t%.1f\n", after - base
      printf "deep.again-us-per-fault\t%.1f\n", again_us / again_f
      if ("g2" in gbase) printf "deep.go-shallow-lighter-mib\t%.0f\n", base - gbase["g2"]
      if (gcs != "") { printf "deep.go-gcs\t%s\n", gcs; printf "deep.go-stack-kib\t%.0f\n", gstack * 1024 / n } }' "$in/deep.txt"
fi

# parked.txt and parked-go.txt (tools/bench.d/fibers.sh): a million parked fibers, per phase.
if [ -s "$in/parked.txt" ]; then
  read -r sp wj < <(sed -nE 's/^spawn and park: ([0-9]+) ms; wake and join: ([0-9]+) ms.*/\1 \2/p' "$in/parked.txt")
  fig parked.spawn-s "$(awk -v v="$sp" 'BEGIN { printf "%.1f", v / 1000 }')"
  fig parked.wake-s "$(awk -v v="$wj" 'BEGIN { printf "%.1f", v / 1000 }')"
  fig parked.bytes-per-fiber "$(commas "$(sed -nE 's/.*RSS [0-9.]+ MiB \(([0-9]+) bytes per fiber\).*/\1/p' "$in/parked.txt")")"
  after=$(sed -nE 's/^all joined: RSS ([0-9.]+) MiB.*/\1/p' "$in/parked.txt")
  [ -z "$after" ] || fig parked.after-mib "$(commas "$(printf '%.0f' "$after")")"
fi
if [ -s "$in/parked-go.txt" ]; then
  read -r n sp wj < <(sed -nE 's/^go parked: ([0-9]+) goroutines: spawn and park ([0-9]+) ms; wake and join ([0-9]+) ms.*/\1 \2 \3/p' "$in/parked-go.txt")
  fig parked.go.spawn-s "$(awk -v v="$sp" 'BEGIN { printf "%.1f", v / 1000 }')"
  fig parked.go.wake-s "$(awk -v v="$wj" 'BEGIN { printf "%.2f", v / 1000 }')"
  fig parked.go.bytes-per-fiber "$(commas "$(sed -nE 's/^while parked: RSS ([0-9]+) kB.*/\1/p' "$in/parked-go.txt" |
    awk -v n="$n" '{ printf "%.0f", $1 * 1024 / n }')")"
  after=$(sed -nE 's/^all joined: RSS ([0-9]+) kB.*/\1/p' "$in/parked-go.txt")
  [ -z "$after" ] || fig parked.go.after-mib "$(commas "$(awk -v v="$after" 'BEGIN { printf "%.0f", v / 1024 }')")"
  gc=$(sed -nE 's/^not timed: runtime.GC\(\) before reading RSS, ([0-9]+) ms.*/\1/p' "$in/parked-go.txt")
  [ -z "$gc" ] || fig parked.go.gc-s "$(awk -v v="$gc" 'BEGIN { printf "%.1f", v / 1000 }')"
fi

# crossfree.txt: fibers that end on another worker than their spawner's, and on the same one.
if [ -s "$in/crossfree.txt" ]; then
  fig crossfree.share "$(sed -nE 's/^crossfree \(spawn, ends on the other worker\):.* ([0-9]+) % ended on another worker.*/\1/p' "$in/crossfree.txt")"
  fig crossfree.ns "$(commas "$(sed -nE 's/^crossfree \(spawn, ends on the other worker\): ([0-9.]+) ns.*/\1/p' "$in/crossfree.txt" | awk '{ printf "%.0f", $1 }')")"
  fig crossfree.same-ns "$(commas "$(sed -nE 's/^crossfree \(spawn, same worker\): ([0-9.]+) ns.*/\1/p' "$in/crossfree.txt" | awk '{ printf "%.0f", $1 }')")"
fi

# test-figures.txt (tools/bench.d/test-figures.sh): what test_memory_given_back and test_fault
# printed: each case's peak RSS in MiB, and the stack a release used on a painted small stack.
if [ -s "$in/test-figures.txt" ]; then
  for c in default+trim default+decay never; do
    fig "given-back.${c//+/-}.mib" "$(sed -nE "s/^${c//+/\\+}: [0-9]+ rounds: hwm_kib=([0-9]+) .*/\\1/p" "$in/test-figures.txt" |
      awk '{ printf "%.0f", $1 / 1024 }')"
  done
  fig given-back.rounds "$(sed -nE 's/^default\+trim: ([0-9]+) rounds:.*/\1/p' "$in/test-figures.txt")"
  fig release-stack.bytes "$(commas "$(sed -nE 's/^released on a [0-9]+ KiB stack, ([0-9]+) bytes of it used.*/\1/p' "$in/test-figures.txt")")"
  fig release-stack.kib "$(sed -nE 's/^released on a ([0-9]+) KiB stack.*/\1/p' "$in/test-figures.txt")"
  fig grow.million.vmas "$(sed -nE 's/^1,000,000 live: \+([0-9]+) VMAs.*/\1/p' "$in/test-figures.txt")"
fi

# pingpong.txt and pingpong-go.txt: the channel round trip's medians.
if [ -s "$in/pingpong.txt" ]; then
  fig pingpong.pinned "$(sed -nE 's/^pingpong \(channel round trip, pinned.*: ([0-9.]+) ns .*/\1/p' "$in/pingpong.txt")"
  fig pingpong.unpinned "$(sed -nE 's/^pingpong \(channel round trip, unpinned.*: ([0-9.]+) ns .*/\1/p' "$in/pingpong.txt")"
  fig pingpong.floor "$(sed -nE 's/^pingpong floor .*: ([0-9.]+) ns .*/\1/p' "$in/pingpong.txt")"
fi
[ -s "$in/pingpong-go.txt" ] &&
  fig pingpong.go "$(sed -nE 's/^pingpong \(Go.*: ([0-9.]+) ns .*/\1/p' "$in/pingpong-go.txt")"

# wipe: AUTO against the best fixed strategy, memset against AUTO at 1 %, and the crossovers.
for f in "$in/wipe.csv" "$in/wipe-clustered.csv"; do
  [ -s "$f" ] || continue
  p=$(awk -F, '!/^#/ && $1 != "size" { print $3; exit }' "$f")
  awk -F, -v p="$p" '!/^#/ && $1 != "size" { c[$2, $4] = $6; r[$2] = 1 }
    END { split("memset dontneed remap mincore pagemap", fx, " "); lo = hi = ""
      n = 0; for (x in r) res[++n] = x + 0
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (res[j] < res[i]) { t = res[i]; res[i] = res[j]; res[j] = t }
      for (i = 1; i <= n; i++) { x = res[i]; best = ""
        for (j = 1; j <= 5; j++) if (best == "" || c[x, fx[j]] < c[x, best]) best = fx[j]
        q = c[x, "auto"] / c[x, best]; if (lo == "" || q < lo) lo = q; if (hi == "" || q > hi) hi = q }
      printf "wipe.%s.auto-vs-best\t%.2f–%.2f\n", p, lo, hi
      printf "wipe.%s.memset-vs-auto-1\t%.0f\n", p, c[1, "memset"] / c[1, "auto"]
      # memset of everything against remapping: the lowest residency from which memset wins
      # for good, and the two cycles just below it
      from = ""; for (i = n; i >= 1; i--) { if (c[res[i], "memset"] < c[res[i], "remap"]) from = i; else break }
      printf "wipe.%s.memset-beats-remap-from\t%s\n", p, res[from]
      below = res[from - 1]
      printf "wipe.%s.remap-below\t%.0f\n", p, c[below, "remap"]
      printf "wipe.%s.memset-below\t%.0f\n", p, c[below, "memset"]
      printf "wipe.%s.below\t%s\n", p, below
      printf "wipe.%s.remap-ahead-pct\t%.0f\n", p, 100 * (c[below, "memset"] / c[below, "remap"] - 1)
      # mincore-guided zeroing against memset at full residency
      printf "wipe.%s.memset-100\t%.1f\n", p, c[100, "memset"]
      printf "wipe.%s.mincore-100\t%.1f\n", p, c[100, "mincore"]
      printf "wipe.%s.memset-ahead-100-pct\t%.0f\n", p, 100 * (c[100, "mincore"] / c[100, "memset"] - 1)
      m = 1; for (i = 1; i <= n; i++) if (res[i] < 100 && c[res[i], "mincore"] >= c[res[i], "memset"]) m = 0
      printf "wipe.%s.mincore-wins-below-100\t%s\n", p, m ? "every residency below 100 %" : "not at every residency below 100 %"
      # the lowest residency from which mincore-guided zeroing is at least as fast as PAGEMAP_SCAN for good
      from = ""; for (i = n; i >= 1; i--) { if (c[res[i], "mincore"] <= c[res[i], "pagemap"]) from = i; else break }
      printf "wipe.%s.mincore-beats-pagemap-from\t%s\n", p, res[from]
      # kernel-tracked (AUTO) tables against manual ones, from 10 % resident up
      lo = hi = ""; for (i = 1; i <= n; i++) if (res[i] >= 10) { q = c[res[i], "table-auto"] / c[res[i], "table-manual"]
        if (lo == "" || q < lo) lo = q; if (hi == "" || q > hi) hi = q }
      printf "wipe.%s.table-auto-vs-manual\t%.0f-%.0f\n", p, lo, hi }' "$f"
done
if [ -s "$in/wipe-runlen.txt" ]; then
  # rows "L runs | zero z.cycle release r.cycle | ...": releasing against zeroing, alone and with the faults
  fig wipe.runlen.release-vs-zero "$(awk '$1 ~ /^[0-9]+$/ && $3 == "|" { print $6 / $4 }' "$in/wipe-runlen.txt" | range %.0f)"
  fig wipe.runlen.cycle-vs-zero "$(awk '$1 ~ /^[0-9]+$/ && $3 == "|" { print $7 / $5 }' "$in/wipe-runlen.txt" | range %.0f)"
  fig wipe.runlen.zero-range "$(awk '$1 ~ /^[0-9]+$/ && $3 == "|" { print $4 }' "$in/wipe-runlen.txt" | range %.0f)"
  fig wipe.runlen.release-range "$(awk '$1 ~ /^[0-9]+$/ && $3 == "|" { print $6 }' "$in/wipe-runlen.txt" | range %.0f)"
  fig wipe.runlen.zero-1 "$(awk '$1 == 1 && $3 == "|" { print $4 }' "$in/wipe-runlen.txt")"
  fig wipe.runlen.memset-1 "$(awk '$1 == 1 && $3 == "|" { print $9 }' "$in/wipe-runlen.txt")"
  fig wipe.runlen.max "$(awk '$1 ~ /^[0-9]+$/ && $3 == "|" { m = $1 } END { print m }' "$in/wipe-runlen.txt")"
  # the page fault of writing a released page again: r.cycle - release
  fig wipe.runlen.refault-range "$(awk '$1 ~ /^[0-9]+$/ && $3 == "|" { print $7 - $6 }' "$in/wipe-runlen.txt" | range %.0f |
    sed -E ':a; s/(^|[^0-9])([0-9]+)([0-9]{3})/\1\2,\3/; ta')"
  # memset against lacuna's streaming zeroing, on single pages and on the longest runs
  fig wipe.runlen.memset-vs-zero-1 "$(awk '$1 == 1 && $3 == "|" { printf "%.1f", $9 / $4 }' "$in/wipe-runlen.txt")"
  fig wipe.runlen.memset-vs-zero-max "$(awk '$1 ~ /^[0-9]+$/ && $3 == "|" { r = $9 / $4 } END { printf "%.1f", r }' "$in/wipe-runlen.txt")"
fi
if [ -s "$in/sparse_table.txt" ]; then
  read -r a b c < <(sed -nE 's/^faster than memset: manual \(lines\) ([0-9]+)x, manual with LACUNA_TABLE_PAGES ([0-9]+)x, automatic ([0-9]+)x/\1 \2 \3/p' "$in/sparse_table.txt")
  fig table.lines-x "$a"
  fig table.pages-x "$b"
  fig table.auto-x "$c"
  # the first memset (faulting the table in), and the GB/s of memset and of page-tracked wipes
  read -r first ms < <(sed -nE 's/^memset of the whole table +([0-9.]+) ms per wipe .*faulting it all in: ([0-9.]+) ms.*/\2 \1/p' "$in/sparse_table.txt")
  pages=$(sed -nE 's/^lacuna_table_wipe, PAGES +([0-9.]+) ms per wipe.*/\1/p' "$in/sparse_table.txt")
  read -r size keys < <(sed -nE 's/^open-addressing hash table, ([0-9]+) GiB .*, ([0-9]+) keys per round.*/\1 \2/p' "$in/sparse_table.txt")
  fig table.first-memset-ms "$(awk -v v="$first" 'BEGIN { printf "%.0f", v }')"
  fig table.pages-vs-first-x "$(awk -v a="$first" -v b="$pages" 'BEGIN { printf "%.0f", a / b }')"
  fig table.memset-gbs "$(awk -v g="$size" -v t="$ms" 'BEGIN { printf "%.0f", g * 1073741824 / (t / 1000) / 1e9 }')"
  fig table.pages-gbs "$(awk -v k="$keys" -v t="$pages" 'BEGIN { printf "%.0f", k * 4096 / (t / 1000) / 1e9 }')"
fi
exit 0
