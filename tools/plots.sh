#!/usr/bin/env bash
# Plots for README from bench/results/*.csv (gnuplot; the shared look is tools/plots.d/style.gp).
# Each plot draws the backends its CSV has rows for, each in its own style, and says in its title
# what the rows are (region sizes, pages touched: read from the data, not assumed).
# Usage: tools/plots.sh RESULTS_DIR DOCS_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
in=$1 out=$2
style=tools/plots.d/style.gp
machine() { grep -m1 '^# machine' "$1" | sed 's/^# machine: //'; }
# The backends with rows matching an awk condition, in the order they first appear.
backends() { awk -F, '!/^#/ && $1 != "backend" && $18 == "" && '"$2"' && !seen[$1]++ { print $1 }' "$1" | tr '\n' ' '; }

if [ -s "$in/churn.csv" ]; then
  rss_touch=8; awk -F, '$5 == 8 {found=1} END {exit !found}' "$in/churn.csv" || rss_touch=1
  sizes=$(awk -F, '!/^#/ && $1 != "backend" { print $2 / 1024 }' "$in/churn.csv" | sort -gu | tr '\n' ',' | sed 's/,$//')
  b1=$(backends "$in/churn.csv" '$5 == 1') bt=$(backends "$in/churn.csv" "\$5 == $rss_touch")
  gnuplot <<GP
load '$style'
set output '$out/churn.png'
set title "churn: free a random live region, allocate one, touch 1 page of it; 1000 live, median of 5\n$(machine "$in/churn.csv")"
set xlabel 'region size (KiB, log scale)'; set ylabel 'ns per cycle (log scale)'
set logscale xy; set xtics ($sizes); set xrange [*:*] noextend
list = "$b1"
plot for [i=1:words(list)] sprintf("< awk -F, '\$1 == \"%s\" && \$5 == 1 && \$18 == \"\"' $in/churn.csv | sort -t, -k2,2n", word(list, i)) \
  using (\$2/1024):8 with linespoints ls i lw width(i) title word(list, i)
set output '$out/churn-rss.png'
set title "churn: RSS after every region is freed (and the pool trimmed); $rss_touch pages touched per region\n$(machine "$in/churn.csv")"
set ylabel 'RSS at the end (MiB, log scale)'
list = "$bt"
plot for [i=1:words(list)] sprintf("< awk -F, '\$1 == \"%s\" && \$5 == $rss_touch && \$18 == \"\"' $in/churn.csv | sort -t, -k2,2n", word(list, i)) \
  using (\$2/1024):(\$12/1024) with linespoints ls i lw width(i) title word(list, i)
GP
fi

if [ -s "$in/burst.csv" ]; then
  what=$(sed -n 2p "$in/burst.csv" | sed 's/^# burst: //; s/, \(RSS[^,]* sampled\)/\\n\1/')
  gnuplot <<GP
load '$style'
set output '$out/burst.png'
set title "burst: $what\n$(machine "$in/burst.csv")"
set xlabel 'time (s)'; set ylabel 'RSS (MiB)'
list = "$(backends "$in/burst.csv" 1)"
plot for [i=1:words(list)] sprintf("< awk -F, '\$1 == \"%s\"' $in/burst.csv", word(list, i)) \
  using (\$2/1000):(\$5/1024) with lines ls i lw width(i) title word(list, i)
GP
fi

# Throughput (million cycles per second) of each backend in the three setups, side by side.
if [ -s "$in/threads.csv" ]; then
  dat=$(mktemp)
  awk -F, '!/^#/ && $1 != "backend" && $18 == "" {
      k = $6 == 1 ? 1 : $7 == 0 ? 2 : 3; v[$1, k] = 1000 / $8; if (!seen[$1]++) order[++n] = $1 }
    END { for (i = 1; i <= n; i++) { b = order[i]
      printf "%s,%s,%s,%s\n", b, ((b, 1) in v ? v[b, 1] : "NaN"), ((b, 2) in v ? v[b, 2] : "NaN"), ((b, 3) in v ? v[b, 3] : "NaN") } }' \
    "$in/threads.csv" > "$dat"
  gnuplot <<GP
load '$style'
set output '$out/threads.png'
set title "churn on 1 and 2 threads, each thread with its own 1000 live 64 KiB regions; wall-clock throughput\n$(machine "$in/threads.csv")"
set ylabel 'million cycles per second'; set yrange [0:*]
set style data histogram; set style histogram clustered gap 1; set style fill solid 0.85 border -1
set boxwidth 0.9; set xtics nomirror; set key below horizontal
plot '$dat' using 2:xtic(1) ls 1 dt 1 title '1 thread', '' using 3 ls 2 dt 1 title '2 threads, private frees', \
  '' using 4 ls 4 dt 1 title '2 threads, 50 % of frees cross-thread'
GP
  rm -f "$dat"
fi

for extra in tools/plots.d/*.sh; do # plots added by other layers
  [ -e "$extra" ] && bash "$extra" "$in" "$out"
done
ls "$out"/*.png >&2
