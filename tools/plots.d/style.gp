# The look every plot shares (loaded by tools/plots.sh and tools/plots.d/*.sh). Text is taken
# literally (noenhanced: "x86_64" stays x86_64, no subscripts); the machine goes on the title's
# second line, so nothing is printed over the axis labels; the key sits outside the plot, right.
# Line styles 1-14: each its own colour, point type and dash pattern, so that series which
# coincide stay distinguishable: plots draw series i with width(i), widest first, so a line
# drawn later over an earlier one shows as a thin line inside a wider one of another colour.
set terminal pngcairo size 1000,560 font 'sans,10' noenhanced
set datafile separator ','
set grid
set offsets graph 0, graph 0, graph 0.06, graph 0 # headroom: a flat top series clears the border
set key outside right top vertical Left reverse noautotitle spacing 1.2
set style line 1  lc rgb '#1f77b4' lw 2   pt 7  ps 1.0 dt 1
set style line 2  lc rgb '#ff7f0e' lw 2   pt 5  ps 1.0 dt 2
set style line 3  lc rgb '#2ca02c' lw 2   pt 9  ps 1.2 dt 3
set style line 4  lc rgb '#d62728' lw 3   pt 13 ps 1.2 dt 1
set style line 5  lc rgb '#9467bd' lw 2   pt 11 ps 1.2 dt 4
set style line 6  lc rgb '#8c564b' lw 2   pt 4  ps 1.4 dt 2
set style line 7  lc rgb '#e377c2' lw 2   pt 6  ps 1.4 dt 3
set style line 8  lc rgb '#7f7f7f' lw 2   pt 8  ps 1.4 dt 4
set style line 9  lc rgb '#bcbd22' lw 2   pt 10 ps 1.4 dt 1
set style line 10 lc rgb '#17becf' lw 2   pt 12 ps 1.4 dt 2
set style line 11 lc rgb '#000000' lw 1.5 pt 1  ps 1.4 dt 3
set style line 12 lc rgb '#f0027f' lw 2   pt 2  ps 1.4 dt 4
set style line 13 lc rgb '#66a61e' lw 2   pt 3  ps 1.4 dt 1
set style line 14 lc rgb '#a6761d' lw 2   pt 14 ps 1.4 dt 2
width(i) = 5.0 - 0.3 * (i - 1) > 1.2 ? 5.0 - 0.3 * (i - 1) : 1.2
