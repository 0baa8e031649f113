#!/bin/sh
# test/fuzz/run.sh [SECONDS] — runs every libFuzzer target (test/fuzz/fuzz_<input>.c) for SECONDS each (default
# 60; `make test` gives each a few), starting from the committed seeds in test/fuzz/corpus/<input>/. Inputs that
# reach new code go to test/fuzz/work/<input>/ (ignored by git); a crash stops the run and its input is saved as
# test/fuzz/crashes/<input>-crash-* (replay it: test/fuzz/fuzz_<input> FILE). Skips, saying so, without clang.
cd "$(dirname "$0")/../.."
secs=${1:-60}
FUZZ_CC=${FUZZ_CC:-clang}
if ! command -v "$FUZZ_CC" > /dev/null; then echo "skip fuzz: $FUZZ_CC is missing (make deps installs clang)"; exit 0; fi
make --no-print-directory fuzz-bins > test/fuzz/build.log 2>&1 || { cat test/fuzz/build.log; echo "fuzz: build failed"; exit 1; }
mkdir -p test/fuzz/crashes
failed=""
for t in config safetensors shard tokenizer gguf; do
  mkdir -p "test/fuzz/work/$t"
  runs=0 left=$secs
  while [ "$left" -gt 0 ]; do  # rounds of at most 60 s: memory kept by refused inputs goes when a round ends
    r=$((left < 60 ? left : 60))
    ASAN_OPTIONS=detect_leaks=0 OMP_NUM_THREADS=1 "test/fuzz/fuzz_$t" -max_total_time="$r" -print_final_stats=1 \
      -artifact_prefix="test/fuzz/crashes/$t-" "test/fuzz/work/$t" "test/fuzz/corpus/$t" > "test/fuzz/work/$t.log" 2>&1
    rc=$?
    runs=$((runs + $(sed -n 's/^stat::number_of_executed_units: *//p' "test/fuzz/work/$t.log" | head -1)))
    if [ $rc -ne 0 ]; then
      grep -v "^#\|^INFO\|^stat::" "test/fuzz/work/$t.log" | head -40
      failed="$failed $t"
      break
    fi
    left=$((left - r))
  done
  echo "fuzz $t: $runs inputs in ${secs}s, $(ls "test/fuzz/work/$t" | wc -l) in the working corpus$(case " $failed " in *" $t "*) echo ", FAILED";; esac)"
done
[ -z "$failed" ] || { echo "fuzz: FAILED:$failed (inputs in test/fuzz/crashes/)"; exit 1; }
