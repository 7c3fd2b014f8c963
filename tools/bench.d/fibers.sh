# make bench, fiber layer: skynet by its standard rules (unbuffered channels, 1,111,111 fibers),
# the 10-slot buffered variant beside it (labelled so in its file), 1 and 2 M:N workers, switch
# costs (with Boost.Context's raw switch in the same run), a channel round trip across workers,
# fibers that end on another worker than their spawner's, a select over 4 channels beside a plain
# receive, the mutex (with Go's), and deep-then-parked fibers giving their stack pages back.
set -euo pipefail
# The Go peers (tools/go/) need Debian's golang-go: INSTALL=1 installs it first (saying so), else
# each Go step says why it is skipped.
if ! command -v go >/dev/null && [ -n "${INSTALL:-}" ]; then
  echo "installing golang-go from Debian (apt-get install golang-go) for the Go peers" >&2
  apt-get install -y -qq golang-go >/dev/null || true
fi
# --go: a run of Go's skynet (GOMAXPROCS = workers) beside each of lacuna's: ratios of one moment
# 9 runs, not RUNS: single skynet runs on this host swing by 1.5x for seconds at a time (181-281 ms
# in one 5-run recording), and the 1-worker to 2-worker ratio is read from these two medians.
"$BENCH" skynet --go --runs 9 | tee "$OUT/skynet.txt"
"$BENCH" skynet --buffered --runs "$RUNS" | tee "$OUT/skynet-buffered.txt"
"$BENCH" skynet --go --workers 2 --runs 9 | tee "$OUT/skynet-workers2.txt"
"$BENCH" skynet --threads 2 --runs "$RUNS" | tee "$OUT/skynet-threads2.txt"
"$BENCH" switch --runs "$RUNS" | tee "$OUT/switch.txt"
"$BENCH" pingpong --runs "$RUNS" | tee "$OUT/pingpong.txt"
"$BENCH" crossfree --runs "$RUNS" | tee "$OUT/crossfree.txt"
"$BENCH" select --runs "$RUNS" | tee "$OUT/select.txt"
"$BENCH" sync --runs "$RUNS" | tee "$OUT/sync.txt" # with Go's sync.Mutex when `go` is there
# A warm-up first: this VM's host backs guest memory again on its first touch after a while, and
# whichever of lacuna and Go ran first would pay that (docs/fibers.md: a 2.6x swing).
"$BENCH" parked --n 1000000 --stack 16K >/dev/null
"$BENCH" parked --n 1000000 --stack 16K | tee "$OUT/parked.txt"
# Deep once, then parked (issue 13): runs Go's version itself (tools/go/deep.go), or says SKIP go.
"$BENCH" deep --runs "$RUNS" | tee "$OUT/deep.txt"

# Go's parked and ping-pong by the same rules (tools/go/), in the same run. (Go's skynet runs
# inside lacuna-bench skynet --go above, a run beside each of lacuna's.)
if command -v go >/dev/null; then
  gobin=$(mktemp -d)
  GOCACHE="$gobin/cache" go build -o "$gobin/parked-go" tools/go/parked.go
  GOCACHE="$gobin/cache" go build -o "$gobin/pingpong-go" tools/go/pingpong.go
  GOMAXPROCS=2 "$gobin/pingpong-go" --runs "$RUNS" | tee "$OUT/pingpong-go.txt"
  GOMAXPROCS=1 "$gobin/parked-go" --n 1000000 | tee "$OUT/parked-go.txt"
  rm -rf "$gobin"
else
  echo "go peers: skipped: no go compiler (apt-get install golang-go, or INSTALL=1)" >&2
fi
