# Plot: wipe cycle time (wipe + rewriting the same pages) vs residency per strategy, log scale.
set -euo pipefail
in=$1 out=$2
[ -s "$in/wipe.csv" ] || exit 0
machine=$(grep -m1 '^# machine' "$in/wipe.csv" | sed 's/^# machine: //')
# crossovers: the lowest residency where memset's cycle beats remap's / mincore's
cross() { awk -F, -v a="$1" -v b="$2" '!/^#/ && $3 == "random" { c[$2, $4] = $6; r[$2] = 1 }
  END { for (p in r) if (c[p, a] < c[p, b]) print p }' "$in/wipe.csv" | sort -g | head -1; }
remap_x=$(cross memset remap); mincore_x=$(cross memset mincore)
gnuplot <<GP
set datafile separator ','; set terminal pngcairo size 900,540 font 'sans,10'; set grid
set key outside right; set label 1 "$machine" at screen 0.01,0.02 font 'sans,8'
set output '$out/wipe.png'
set title 'wipe a 1 GiB range, random pages resident: cycle = wipe + writing the same pages again'
set xlabel 'resident (% of pages, log scale; 0 % drawn at 0.01)'; set ylabel 'cycle time (ms, log scale)'
set logscale xy; set xtics ("0" 0.01, "0.1" 0.1, "1" 1, "10" 10, "30" 30, "100" 100)
$( [ -n "$remap_x" ] && echo "set arrow from $remap_x, graph 0 to $remap_x, graph 1 nohead dt 2 lc rgb 'gray'; set label 2 'memset beats remap' at $remap_x, graph 0.95 left offset 0.5,0" )
$( [ -n "$mincore_x" ] && echo "set arrow from $mincore_x, graph 0 to $mincore_x, graph 1 nohead dt 3 lc rgb 'gray'; set label 3 'memset beats mincore' at $mincore_x, graph 0.88 left offset 0.5,0" )
plot for [s in "memset dontneed remap mincore pagemap auto table-manual table-auto"] \
  sprintf("< awk -F, '\$4 == \"%s\" && \$3 == \"random\"' $in/wipe.csv", s) \
  using (\$2 == 0 ? 0.01 : \$2):6 with linespoints lw 2 title s
GP
