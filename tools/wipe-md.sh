#!/usr/bin/env bash
# Markdown for docs/wipe.md from what `make bench` wrote: every strategy's cycle time per
# residency, and the crossovers the seed measured. Usage: tools/wipe-md.sh [bench/results]
set -euo pipefail
in=${1:-bench/results}

for f in "$in/wipe.csv" "$in/wipe-clustered.csv"; do
  [ -s "$f" ] || continue
  pattern=$(awk -F, '!/^#/ && $1 != "size" { print $3; exit }' "$f")
  echo "$pattern pages (\`lacuna-bench wipe --pattern $pattern --runs 5 --csv\`, \`$f\`), cycle ms, median of 5:"
  echo
  echo "| resident % | memset | dontneed | remap | mincore | pagemap | **auto** (scanner) | best fixed | auto / best | table, manual (lines) | table, pages | table, auto |"
  echo "|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"
  awk -F, '!/^#/ && $1 != "size" { c[$2, $4] = $6; if ($4 == "auto") ch[$2] = $11; r[$2] = 1 }
    END { n = split("memset dontneed remap mincore pagemap", fx, " ")
      for (p in r) { best = ""
        for (j = 1; j <= n; j++) if (best == "" || c[p, fx[j]] < c[p, best]) best = fx[j]
        printf "| %s |", p
        for (j = 1; j <= n; j++) printf " %.3g |", c[p, fx[j]]
        printf " **%.3g** (%s) | %s | %.2f× | %.3g | %.3g | %.3g |\n", c[p, "auto"], ch[p], best,
          c[p, "auto"] / c[p, best], c[p, "table-manual"], c[p, "table-pages"], c[p, "table-auto"] } }' \
    "$f" | sort -t'|' -k2 -g
  echo
  # The seed's two crossovers: where memset of everything starts beating remap, and mincore.
  awk -F, '!/^#/ && $1 != "size" { c[$2, $4] = $6; r[$2] = 1 }
    END { for (p in r) { if (c[p, "memset"] < c[p, "remap"]) print "remap", p
                         if (c[p, "memset"] < c[p, "mincore"]) print "mincore", p } }' "$f" |
    sort -k1,1 -k2g | awk -v pat="$pattern" '
      !seen[$1]++ { at[$1] = $2 }
      END { printf "Crossovers (%s): memset beats remap from %s %% resident; memset beats mincore-guided zeroing %s.\n\n",
              pat, ("remap" in at) ? at["remap"] : "no", ("mincore" in at) ? "from " at["mincore"] " % resident" : "at no residency" }'
done
