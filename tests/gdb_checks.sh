# shellcheck shell=bash disable=SC2034 # status is read by the sourcing script
# What tests/test_gdb.sh and tests/test_gdb_aarch64.sh check in gdb's output (sourced by both):
# `lacuna fibers` and `info lacuna-fibers` list the eight fibers of tests/gdb_target.c with their
# names, states and waits, and `lacuna bt deep` / `lacuna bt marker` show their frames.
status=0
fail() {
  echo "FAIL: $*"
  status=1
}

# The listing and the deep backtrace in gdb output $1 ($2: what this run is, for messages; $3:
# "nolib" when the library has no symbols of its own, so waits inside it are not named).
check() {
  local out=$1 what=$2 lib=${3:-}
  local chan='channel recv 0x[0-9a-f]+'
  [ "$lib" = nolib ] && chan='.*'
  grep -Eq '^0x[0-9a-f]+ +recv-1 +parked +[0-9.]+ (B|KiB) / 64\.0 KiB +'"$chan"'$' "$out" ||
    fail "$what: recv-1 is not listed parked on a channel"
  grep -Eq '^0x[0-9a-f]+ +recv-2 +parked +.* +'"$chan"'$' "$out" ||
    fail "$what: recv-2 is not listed parked on a channel"
  grep -Eq '^0x[0-9a-f]+ +sleeper +parked +.* timer \(sleep\), due ' "$out" ||
    fail "$what: sleeper is not listed parked on a timer"
  grep -Eq '^0x[0-9a-f]+ +reader +parked +.* fd [0-9]+ \(in\)$' "$out" ||
    fail "$what: reader is not listed parked on an fd"
  grep -Eq '^0x[0-9a-f]+ +deep +parked +.* +'"$chan"'$' "$out" ||
    fail "$what: deep is not listed parked on a channel"
  # The object's address only where the frame still holds it (deadline forms tail-call inward).
  local mutex='mutex_lock' group='waitgroup_wait( 0x[0-9a-f]+)?'
  [ "$lib" = nolib ] && mutex='.*' group='.*'
  grep -Eq '^0x[0-9a-f]+ +locker +parked +.* +'"$mutex"'$' "$out" ||
    fail "$what: locker is not listed parked on a mutex"
  grep -Eq '^0x[0-9a-f]+ +group +parked +.* +'"$group"'( <group>)?$' "$out" ||
    fail "$what: group is not listed parked on a waitgroup"
  grep -Eq '^0x[0-9a-f]+ +marker +running +.* running on thread 1 ' "$out" ||
    fail "$what: marker is not listed running"
  [ "$(grep -c '^8 fibers$' "$out")" = 2 ] || fail "$what: not 8 fibers, twice (lacuna fibers, info lacuna-fibers)"
  # deep's frames, innermost first, in one block after its header.
  local bt
  bt=$(sed -n '/^fiber 0x[0-9a-f]* "deep" (parked/,/^fiber /p' "$out")
  grep -q '^fiber 0x[0-9a-f]* "deep" (parked, worker 0):$' "$out" || fail "$what: no header for deep's backtrace"
  local order
  order=$(echo "$bt" | grep -Eo ' in (deep_c|deep_b|deep_a|deep) ' | tr -d ' ' | sed 's/^in//' | tr '\n' ' ')
  [ "$order" = "deep_c deep_b deep_a deep " ] ||
    fail "$what: lacuna bt deep shows '${order}', not 'deep_c deep_b deep_a deep'"
  # A here-string, not echo | grep -q: grep -q quits at its first match, and under pipefail the
  # echo it cut off (SIGPIPE) would fail the check.
  grep -q 'lac_ctx_start\|fiber_entry' <<<"$bt" || [ "$lib" = nolib ] ||
    fail "$what: lacuna bt deep does not reach the fiber's start"
  grep -Eq '^#[0-9]+ +0x[0-9a-f]+ in marker \(\)' "$out" || fail "$what: lacuna bt marker has no marker frame"
  if grep -q 'Python Exception\|Error occurred in Python\|^lacuna: ' "$out"; then
    fail "$what: the script reported an error"
  fi
}

