# README table: per residency, the best fixed strategy's cycle, AUTO's, and memset's.
set -euo pipefail
in=$1
for f in "$in/wipe.csv" "$in/wipe-clustered.csv"; do
  [ -s "$f" ] || continue
  pattern=$(awk -F, '!/^#/ && $1 != "size" { print $3; exit }' "$f")
  echo "**wipe**, 1 GiB, $pattern pages resident (\`lacuna-bench wipe --pattern $pattern --runs 5\`);"
  echo "cycle = wipe + writing the same pages again, ms, median of 5. Table columns: a 1 GiB"
  echo "\`lacuna_table\` with the same pages written, each marked with one byte (so line tracking"
  echo "zeroes one 64-byte line per page, page tracking the page):"
  echo
  echo "| resident % | best fixed | its cycle | AUTO (chose) | AUTO / best | memset / AUTO | table, manual (lines) | table, pages | table, auto |"
  echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|"
  awk -F, '!/^#/ && $1 != "size" { c[$2, $4] = $6; ch[$2] = ($4 == "auto" ? $11 : ch[$2]); r[$2] = 1 }
    END { split("memset dontneed remap mincore pagemap", fixed, " ")
      for (p in r) { best = ""
        for (j = 1; j <= 5; j++) if (best == "" || c[p, fixed[j]] < c[p, best]) best = fixed[j]
        q = c[p, "memset"] / c[p, "auto"]
        printf "| %s | %s | %.2f | %.2f (%s) | %.2f× | " (q < 10 ? "%.2f" : "%.0f") "× | %.2f | %.2f | %.2f |\n", p, best, c[p, best],
          c[p, "auto"], ch[p], c[p, "auto"] / c[p, best], q,
          c[p, "table-manual"], c[p, "table-pages"], c[p, "table-auto"] } }' "$f" | sort -t'|' -k2 -g
  echo
done
