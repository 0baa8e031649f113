#!/bin/sh
# make test: every test, in order; a summary at the end; non-zero exit if any failed.
# Each stage owns one test (a C program or a script) named below; a missing one is a failure.
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
failed=""
run() {
  name=$1; shift
  echo "=== $name"
  start=$(date +%s)
  if "$@"; then echo "=== $name: passed ($(( $(date +%s) - start ))s)"; else echo "=== $name: FAILED"; failed="$failed $name"; fi
}
run model        ./test/test_model
run bad-input    sh test/test_badinput.sh
for t in data prune train export profile comm hip; do
  if [ -f "test/test_$t.sh" ]; then run "$t" sh "test/test_$t.sh"
  else echo "=== $t: FAILED (test/test_$t.sh is missing)"; failed="$failed $t"; fi
done
run fuzz         sh test/fuzz/run.sh "${FUZZ_TEST_TIME:-5}"
if [ -n "$failed" ]; then echo "make test: FAILED:$failed"; exit 1; fi
echo "make test: all passed"
