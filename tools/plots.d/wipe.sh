#!/usr/bin/env bash
# Plot: wipe cycle time (wipe + rewriting the same pages) vs residency per strategy, log scale.
set -euo pipefail
in=$1 out=$2
[ -s "$in/wipe.csv" ] || exit 0
machine=$(grep -m1 '^# machine' "$in/wipe.csv" | sed 's/^# machine: //')
# crossovers: the lowest residency where memset's cycle beats remap's / mincore's
cross() { awk -F, -v a="$1" -v b="$2" '!/^#/ && $3 == "random" { c[$2, $4] = $6; r[$2] = 1 }
  END { for (p in r) if (c[p, a] < c[p, b]) print p }' "$in/wipe.csv" | sort -g | head -1; }
remap_x=$(cross memset remap); mincore_x=$(cross memset mincore)
# A crossover is a dotted line with its label at the bottom, left of the line, clear of the
# curves (which all rise to the right) and of the key (outside the plot).
mark() { # N X TEXT Y
  [ -n "$2" ] || return 0
  echo "set arrow $1 from $2, graph 0 to $2, graph 1 nohead dt 3 lw 1.5 lc rgb '#555555'"
  echo "set label $1 '$3 ->' at $2, graph $4 right offset -0.6,0 front tc rgb '#333333'"
}
gnuplot <<GP
load '$(dirname "$0")/style.gp'
set output '$out/wipe.png'
set title "wipe a 1 GiB range, random pages resident: cycle = wipe + writing the same pages again\n$machine"
set xlabel 'resident (% of pages, log scale; 0 % drawn at 0.01)'; set ylabel 'cycle time (ms, log scale)'
set logscale xy; set xtics ("0" 0.01, "0.1" 0.1, "1" 1, "10" 10, "30" 30, "100" 100)
$(mark 2 "$remap_x" 'memset beats remap from here' 0.05)
$(mark 3 "$mincore_x" 'memset beats mincore from here' 0.11)
list = "memset dontneed remap mincore pagemap auto table-manual table-auto"
plot for [i=1:words(list)] sprintf("< awk -F, '\$4 == \"%s\" && \$3 == \"random\"' $in/wipe.csv", word(list, i)) \
  using (\$2 == 0 ? 0.01 : \$2):6 with linespoints ls i lw width(i) title word(list, i)
GP
