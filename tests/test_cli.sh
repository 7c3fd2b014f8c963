#!/usr/bin/env bash
# lacuna-bench and the examples given bad input, as a new user would: every case must exit with
# the documented status (0 --help, 1 refused run, 2 usage error) and name what is wrong and what
# is allowed. Runs no benchmark: every command here stops before measuring anything.
# Usage: test_cli.sh LACUNA_BENCH EXAMPLE_ECHO EXAMPLE_SPARSE_TABLE EXAMPLE_STACKS
set -uo pipefail
bench=$1 echo_=$2 sparse=$3 stacks=$4
fails=0 n=0

# expect STATUS PATTERN CMD...: CMD exits with STATUS and its output matches PATTERN (grep -E).
expect() {
  local want=$1 pattern=$2; shift 2
  local out rc
  out=$(timeout 20 "$@" 2>&1 </dev/null); rc=$?
  n=$((n + 1))
  if [ "$rc" != "$want" ] || ! grep -qE -- "$pattern" <<<"$out"; then
    echo "FAIL: ${*}: exit $rc (want $want), output:"
    sed 's/^/  | /' <<<"$out" | head -8
    echo "  (wanted /$pattern/)"
    fails=$((fails + 1))
  fi
}

# --help everywhere: exit 0, on stdout.
expect 0 'cases' "$bench" --help
for c in demo churn burst seed keep pair skynet switch pingpong crossfree sync select parked census deep wipe; do
  expect 0 "usage: lacuna-bench $c" "$bench" "$c" --help
  expect 0 "--csv +(every .* as )?CSV instead of" "$bench" "$c" --help # CSV everywhere
  expect 2 "unknown option '--no-such-option'" "$bench" "$c" --no-such-option
done
# The two smallest runs there are, as CSV: a machine comment, a header, a row.
expect 0 '^pairs,ns_per_pair' "$bench" pair --csv 1
expect 0 '^fibers,stack,spawn_ms,.*peak_rss_kib' "$bench" parked --n 1 --csv
expect 0 '^ratio_rss_to_needed_plus_baseline,' "$bench" deep --fibers 2 --depth 8K --runs 1 --no-go --csv
expect 0 '^measure,value,n,runs' "$bench" sync --n 1000 --contended 1000 --runs 1 --no-go --csv
expect 0 '^measure,ns,n,runs' "$bench" select --n 1000 --runs 1 --csv
expect 0 '^measure,ns_per_fiber,.*ended_elsewhere' "$bench" crossfree --n 100 --runs 1 --csv
# Without Go the comparison is skipped with the reason, and the run still succeeds.
expect 0 'SKIP go: no .go. command on PATH' env PATH=/nonexistent "$bench" deep --fibers 2 --depth 8K --runs 1
expect 0 'go: skipped: no .go. command on PATH' env PATH=/nonexistent "$bench" sync --n 1000 --contended 1000 --runs 1
expect 0 'go: skipped: no .go. command on PATH' env PATH=/nonexistent "$bench" skynet --go --depth 2 --runs 1
expect 0 'usage: example_echo' "$echo_" --help
expect 0 'usage: example_sparse_table' "$sparse" --help
expect 0 'usage:' "$stacks" --help
expect 2 'which case' "$bench"
expect 2 "unknown case 'nosuch'; one of: demo churn" "$bench" nosuch
expect 2 "unexpected argument 'extra'" "$bench" demo extra
expect 2 "unexpected argument" "$stacks" extra

# Sizes and counts: the bad value named, with the allowed range.
expect 2 '--stack 20480: must be a power of two' "$bench" parked --stack 20K
expect 2 '--stack 4K: must be between 16K and 8M' "$bench" parked --stack 4K
expect 2 '--n 0: must be a whole number between 1 and 10000000' "$bench" parked --n 0
expect 2 '--keep 17: more than the 16 pages' "$bench" census --keep 17
expect 2 '--fibers 0: must be a whole number between 1 and 1000000' "$bench" deep --fibers 0
expect 2 '--depth 60K: deeper than the 64 KiB stack less 8 KiB' "$bench" deep --depth 60K
expect 2 '--stack 24576: must be a power of two' "$bench" deep --stack 24K
expect 2 '--depth 48Q: not a size' "$bench" deep --depth 48Q
expect 1 'refusing to run' "$bench" deep --fibers 1000000 --depth 8000K --stack 8M
expect 0 'histogram matches the touched depths' "$bench" census --regions 300
expect 0 'resident after lacuna_fiber_release_idle' "$bench" census --fibers --regions 300
expect 2 '--region 1T: must be between 4K and 1G' "$bench" churn --region 1T
expect 2 '--region 100G: must be between 4K and 1G' "$bench" churn --region 100G
expect 2 '--region 12Q: not a size' "$bench" churn --region 12Q
expect 2 '--region 0.1K: not a size' "$bench" churn --region 0.1K
expect 2 '--live 0: must be a whole number between 1 and' "$bench" churn --live 0
expect 2 '--live 1e6: must be a whole number' "$bench" churn --live 1e6
expect 2 '--threads 65: must be a whole number between 1 and 64' "$bench" churn --threads 65
expect 2 '--cross 101: must be a whole number between 0 and 100' "$bench" churn --cross 101
expect 2 '--cross 50: needs --threads 2 or more' "$bench" churn --cross 50
expect 2 '--touch 17: a 64K region has only 16 pages' "$bench" churn --touch 17
expect 2 '--region needs a value' "$bench" churn --region
expect 2 "'--csv=1' takes no value" "$bench" churn --csv=1
expect 2 '--backend nosuch: must be one of: all, naive,.*lacuna' "$bench" churn --backend nosuch
expect 2 '--backend nosuch: must be one of: all, naive-noguard' "$bench" burst --backend nosuch
expect 2 '--peak 0: must be a whole number between 1' "$bench" burst --peak 0
expect 2 '--n -1: must be a whole number between 1' "$bench" switch --n -1
expect 2 '--runs 0: must be a whole number between 1 and 100' "$bench" switch --runs 0
expect 2 '--threads 11: must be a whole number between 1 and 10' "$bench" skynet --threads 11
expect 2 '--depth 9: must be a whole number between 1 and 8' "$bench" skynet --depth 9
expect 2 '--stack 1K: must be between 16K and 8M' "$bench" skynet --stack 1K
expect 2 "--go: Go's skynet follows the standard rules" "$bench" skynet --go --buffered
expect 2 "--go: Go's skynet follows the standard rules" "$bench" skynet --go --threads 2
expect 2 '--size 512K: must be between 1M and 1T' "$bench" wipe --size 512K
expect 2 "--resident 1,200: '200' must be a percentage" "$bench" wipe --resident 1,200
expect 2 '--pattern striped: must be one of: random, clustered' "$bench" wipe --pattern striped
expect 2 'PAIRS abc: must be a whole number' "$bench" pair abc
expect 2 '--port 99999: must be a whole number between 0 and 65535' "$echo_" --port 99999
expect 2 '--port abc: must be a whole number between 0 and 65535' "$echo_" --port abc
expect 2 '--max -5: must be a whole number' "$echo_" --max -5
expect 2 'KEYS 99999999999: must be a whole number between 1 and 33554432' "$sparse" 1 99999999999
expect 2 'ROUNDS 0: must be a whole number between 1' "$sparse" 0

# Runs the machine cannot hold are refused before they start, with what they need: exit 1.
expect 1 'refusing to run: it needs about .* available \(MemAvailable' "$bench" churn --live 1000000000 --region 1G
expect 1 'refusing to run' "$bench" burst --peak 100000000 --idle-ms 0 --rounds 1
expect 1 'refusing to run' "$bench" wipe --size 1T
# ... and so is one over a resource limit (ulimit -v): 64 MiB here.
expect 1 'RLIMIT_AS' bash -c 'ulimit -v 65536; exec "$0" churn --live 100000 --runs 1' "$bench"

echo "$((n - fails)) of $n CLI checks passed"
[ "$fails" = 0 ]
