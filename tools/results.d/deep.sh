#!/usr/bin/env bash
# The "parked stacks give memory back" table of docs/fibers.md, from what `lacuna-bench deep
# --runs 5` printed (bench/results/deep.txt, tools/bench.d/fibers.sh): lacuna's medians beside
# Go's runs of tools/go/deep.go (the deep one, then the never-deep one). docs/fibers.md carries it
# between <!-- results deep --> markers (tools/results-sync.sh). Usage: deep.sh RESULTS_DIR
set -euo pipefail
in=$1
[ -s "$in/deep.txt" ] || exit 0
echo "Measured by \`lacuna-bench deep --runs 5\` (\`bench/results/deep.txt\`; $(sed -nE 's/^machine: //p' "$in/deep.txt" | head -1)$(sed -nE 's/^go deep: .*(go[0-9.]+), GOMAXPROCS=([0-9]+).*/; Go: \1, GOMAXPROCS=\2, one run/p' "$in/deep.txt" | head -1)); lacuna figures are medians of 5 fresh child processes:"
echo
awk 'function num(k,   i) { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9][0-9.]*x?$/ && --k == 0) return $i }
  function commas(n, s, r) { s = sprintf("%d", n); r = ""
      while (length(s) > 3) { r = "," substr(s, length(s) - 2) r; s = substr(s, 1, length(s) - 3) }
      return s r }
  /^lacuna-bench deep:/ { n = $3; sect = "l" }
  /^go deep:/ { g++; sect = "g" g }
  sect == "l" && /^baseline/ { match($0, /RSS [0-9.]+/); base = substr($0, RSTART + 4, RLENGTH - 4)
    match($0, /stack pages [0-9.]+/); bstack = substr($0, RSTART + 12, RLENGTH - 12)
    match($0, /runtime baseline [0-9.]+/); brt = substr($0, RSTART + 17, RLENGTH - 17) }
  sect == "l" && /^RSS, all parked, before/ { before = num(1) }
  sect == "l" && /^RSS after lacuna_fiber_release_idle/ { after = num(1); rel_ms = num(2)
    match($0, /reported [0-9.]+/); reported = substr($0, RSTART + 9, RLENGTH - 9) }
  sect == "l" && /^needed:/ { needed = num(1); fibers = num(2); match($0, /\([0-9]+\.\.[0-9]+ bytes/); used = substr($0, RSTART + 1, RLENGTH - 7); split(used, u, /\.\./); if (u[1] == u[2]) used = u[1] }
  sect == "l" && /^resident stack pages after/ { resident = num(1); match($0, /[0-9]+\.\.[0-9]+ pages/); ppf = substr($0, RSTART, RLENGTH - 6) }
  sect == "l" && /^ratio RSS after \/ \(needed/ { ratio = num(1) }
  sect == "l" && /^high_water/ { match($0, /took [0-9.]+ ms, [0-9.]+ us/); split(substr($0, RSTART, RLENGTH), c, " ")
    census_ms = c[2]; census_us = c[4] }
  sect == "l" && /^ +[0-9]+ pages \(/ { hw[++nhw] = $1; match($0, /[0-9]+ fibers/); hwn[nhw] = substr($0, RSTART, RLENGTH - 7) }
  /^  spawn, go deep, (park|block)/ { first_us[sect] = $(NF - 1); first_f[sect] = $NF }
  /^  resume after/ { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9.]+$/) { resume_us[sect] = $i; resume_f[sect] = $(i + 1); break } }
  /^  go deep again/ { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9.]+$/) { again_us[sect] = $i; again_f[sect] = $(i + 1); break } }
  sect ~ /^g/ && /^RSS, all parked, no GC yet/ { gparked[sect] = num(1); match($0, /\([0-9.]+ MiB/); gstack[sect] = substr($0, RSTART + 1, RLENGTH - 5) }
  sect ~ /^g/ && /^RSS after runtime.GC\(\) x1/ { ggc1[sect] = num(1) }
  sect ~ /^g/ && /^RSS after one debug.FreeOSMemory/ { gfree1[sect] = num(1) }
  sect ~ /^g/ && /^RSS after FreeOSMemory until flat/ { match($0, /\([0-9]+ GCs\)/); gcs[sect] = substr($0, RSTART + 1, RLENGTH - 6)
    gflat[sect] = num(1); match($0, /\([0-9.]+ MiB/); gflatstack[sect] = substr($0, RSTART + 1, RLENGTH - 5) }
  END {
    go = ("g1" in gparked)
    printf "| measure | lacuna | %s |\n|---|---:|---:|\n", go ? "Go" : "Go (not run: no `go`)"
    printf "| RSS, %s parked after going 48 KiB deep, nothing released | %.1f MiB | %s |\n", commas(n), before, go ? sprintf("%.1f MiB", gparked["g1"]) : ""
    printf "| RSS after one `lacuna_fiber_release_idle` (%.0f ms, %.1f µs a fiber; it reported %s MiB) | **%.1f MiB** | |\n", rel_ms, rel_ms * 1000 / n, reported, after
    if (go) {
      printf "| Go: after `runtime.GC()` once (stacks halved once: copies made, old ones not yet returned) | | %.1f MiB |\n", ggc1["g1"]
      printf "| Go: after one `debug.FreeOSMemory()` more | | %.1f MiB |\n", gfree1["g1"]
      printf "| Go: after `debug.FreeOSMemory()` until RSS falls by < 1 %% (%s GCs; stacks %.0f KiB each) | | %.1f MiB |\n", gcs["g1"], gflatstack["g1"] * 1024 / n, gflat["g1"] }
    printf "| the same program, never deep (the baseline run) | %.1f MiB (%.1f stacks + %.1f runtime) | %s |\n", base, bstack, brt, ("g2" in gparked) ? sprintf("%.1f MiB (%s stacks)", gparked["g2"], gstack["g2"]) : ""
    printf "| needed: sum of the parked frames'"'"' `used` rounded up to pages (%s bytes each), %s fibers | %.1f MiB | |\n", used, commas(fibers), needed
    printf "| resident stack pages after the release (census) | %.1f MiB (%s pages a fiber) | |\n", resident, ppf
    printf "| **RSS after / (needed + runtime baseline)**; target ≤ 1.25x | **%s** | |\n", ratio
    if (go) printf "| RSS after / Go'"'"'s after `runtime.GC()` once; / Go'"'"'s after GCs until flat | %.2fx; %.2fx | |\n", after / ggc1["g1"], after / gflat["g1"]
    printf "| census after the release, %s `lacuna_fiber_stack_info` | %.1f ms (%.2f µs a fiber) | |\n", commas(fibers), census_ms, census_us
    h = ""; for (i = nhw; i >= 1; i--) h = h (h == "" ? "" : ", ") commas(hwn[i]) " at " hw[i] " pages"
    printf "| high_water histogram (fibers at their deepest, in pages) | %s | |\n", h
    printf "| spawn, go deep, park, first time: per fiber | %s µs, %s minor faults | %s |\n", first_us["l"], first_f["l"], go ? first_us["g1"] " µs, " first_f["g1"] " faults" : ""
    printf "| resume after the release (check the canary, park again): per fiber | %s µs, %s faults | %s |\n", resume_us["l"], resume_f["l"], go ? resume_us["g1"] " µs, " resume_f["g1"] " faults" : ""
    printf "| go deep again (the released pages fault back in as zero pages): per fiber | %s µs, %s faults | %s |\n", again_us["l"], again_f["l"], go ? again_us["g1"] " µs, " again_f["g1"] " faults" : ""
  }' "$in/deep.txt"
