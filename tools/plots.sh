#!/usr/bin/env bash
# Plots for README from bench/results/*.csv (gnuplot). Usage: tools/plots.sh RESULTS_DIR DOCS_DIR
set -euo pipefail
in=$1 out=$2
machine=$(grep -m1 '^# machine' "$in/churn.csv" | sed 's/^# machine: //')
common="set datafile separator ','; set terminal pngcairo size 900,540 font 'sans,10'; set grid;
set key outside right; set label 1 \"$machine\" at screen 0.01,0.02 font 'sans,8'"
backends="naive naive-noguard malloc lacuna lacuna-never lacuna-dontneed lacuna-free boost-protected boost-pooled"

if [ -s "$in/churn.csv" ]; then
rss_touch=8; awk -F, '$5 == 8 {found=1} END {exit !found}' "$in/churn.csv" || rss_touch=1
gnuplot <<GP
$common
set output '$out/churn.png'
set title 'churn: free a random live region, allocate one, touch 1 page (1000 live)'
set xlabel 'region size (KiB)'; set ylabel 'ns per cycle (log scale)'
set logscale xy; set xtics (16, 64, 256, 1024)
plot for [b in "$backends"] sprintf("< awk -F, '\$1 == \"%s\" && \$5 == 1' $in/churn.csv", b) \
  using (\$2/1024):8 with linespoints lw 2 title b
set output '$out/churn-rss.png'
set title 'churn: RSS after everything is freed (and trimmed), touch $rss_touch pages'
set ylabel 'end RSS (MiB, log scale)'
plot for [b in "$backends"] sprintf("< awk -F, '\$1 == \"%s\" && \$5 == $rss_touch' $in/churn.csv", b) \
  using (\$2/1024):(\$12/1024) with linespoints lw 2 title b
GP
fi

if [ -s "$in/burst.csv" ]; then
gnuplot <<GP
$common
set output '$out/burst.png'
set title 'burst: live 64 KiB regions ramp 0 -> 100,000 -> 0, three times (2 pages touched each)'
set xlabel 'time (s)'; set ylabel 'RSS (MiB)'
plot for [b in "naive-noguard malloc lacuna-never lacuna lacuna-free"] \
  sprintf("< awk -F, '\$1 == \"%s\"' $in/burst.csv", b) using (\$2/1000):(\$5/1024) with lines lw 2 title b
GP
fi

if [ -s "$in/threads.csv" ]; then
gnuplot <<GP
$common
set output '$out/threads.png'
set title 'churn throughput, 1 and 2 threads (half the frees cross-thread), 64 KiB, 1000 live'
set xlabel 'threads'; set ylabel 'million cycles per second'; set xrange [0.5:2.5]; set xtics 1
set yrange [0:*]
plot for [b in "malloc lacuna lacuna-never"] sprintf("< awk -F, '\$1 == \"%s\" && \$7 != 0 || \$6 == 1' $in/threads.csv | awk -F, '\$1 == \"%s\"'", b, b) \
  using 6:(1000/\$8) with linespoints lw 2 title b
GP
fi

for extra in tools/plots.d/*.sh; do # plots added by other layers
  [ -e "$extra" ] && bash "$extra" "$in" "$out"
done
ls "$out"/*.png >&2
