# test/lib.sh — what every stage's shell test shares. Source it after setting T (a temporary directory):
#   ok NAME / bad NAME           count a pass / a failure and say so
#   report NAME                  a number printed for the record with no bound on it: not a check, so it is
#                                counted apart from the passes
#   check NAME COMMAND...        passes when the command succeeds
#   expect_error NAME WANT CMD   bad input: a non-zero exit below 128 (no crash, no signal) and exactly one
#                                line on stderr that contains WANT
#   quiet COMMAND...             run it silently; print its output only when it fails
pass=0 fail=0 reported=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }
report() { echo "rep  $1"; reported=$((reported + 1)); }
check() {
  name=$1; shift
  if "$@"; then ok "$name"; else bad "$name"; fi
}
expect_error() {
  name=$1 want=$2; shift 2
  "$@" > "$T/out" 2> "$T/err"; rc=$?
  if [ $rc -eq 0 ] || [ $rc -ge 128 ]; then bad "$name (exit $rc): $(cat "$T/err")"; return; fi
  if [ "$(wc -l < "$T/err")" -eq 1 ] && grep -q -- "$want" "$T/err"; then ok "$name -> $(cat "$T/err")"
  else bad "$name: stderr was: $(cat "$T/err")"; fi
}
quiet() { "$@" > "$T/q.log" 2>&1 || { cat "$T/q.log"; return 1; }; }
