#!/bin/sh
# test/test_prune.sh — prune.c: the C test test/test_prune (masked == sliced on the Gemma 3 fixtures,
# finite-difference mask gradients, the constrained layer choice vs brute force, transformers' logits of a
# sliced model when that fixture exists), then ./prune end to end on a small random model and two small
# token domains: every method's output checked by `test/test_prune --check-run` (report, shape == target,
# sliding/full rule, masked source == written model), same seed -> byte-identical masks and model,
# --stop-at + --resume == uninterrupted (bit for bit), and bad input -> one line on stderr.
#
#   sh test/test_prune.sh                      run the tests
#   sh test/test_prune.sh --write-sample DIR   write a sliced model + DIR/tokens.json for transformers
#                                              (test/ref/make_fixtures.py loads test/ref/c_written/<name>/)
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
if [ "$1" = "--write-sample" ]; then
  [ -n "$2" ] || { echo "usage: sh test/test_prune.sh --write-sample DIR" >&2; exit 1; }
  make --no-print-directory -s test/test_prune > /dev/null || exit 1
  mkdir -p "$2" && exec ./test/test_prune --write-sample "$2"
fi
T=$(mktemp -d /tmp/test_prune_sh.XXXXXX)
trap 'rm -rf "$T"' EXIT
. test/lib.sh

make --no-print-directory -s prune test/test_prune > "$T/build.log" 2>&1 \
  || { cat "$T/build.log"; echo "FAIL build"; echo "test_prune.sh: 0 passed, 1 failed"; exit 1; }
check "test/test_prune (masked == sliced, gradients, layer choice, transformers sample)" ./test/test_prune

# --- a source (V 261, d 48, L 4 = s s F s, H 4, K 2, D 12, F 64) and two domains ------------------------------
./test/test_prune --write-model "$T/src" 261 > /dev/null && ./test/test_prune --write-shards "$T/data" 261 > /dev/null \
  || { echo "FAIL could not write the test model and shards"; exit 1; }
echo '{"hidden_size": 30, "intermediate_size": 37, "num_hidden_layers": 3, "num_attention_heads": 2, "num_key_value_heads": 1}' > "$T/t1.json"
echo '{"hidden_size": 40, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 50}' > "$T/t2.json"
P="./prune --model $T/src --data $T/data --batch 4 --seq 32 --eval-every 4 --eval-batches 2 --log-every 4"

# --- sheared: determinism, resume, the output --------------------------------------------------------------------
$P --out "$T/a" --target "$T/t1.json" --steps 10 > "$T/a.log" 2>&1 || { cat "$T/a.log"; bad "sheared run"; }
check "sheared: a step line every --log-every steps (step N/10 | loss ... | tok/s)" \
  sh -c "[ \$(grep -c '^step [0-9]*/10 | loss [0-9.]* | lag .* | params .* tok/s' $T/a.log) -eq 3 ]"
check "sheared: eval lines with per-domain loss and dynamic batch loading weights" \
  sh -c "grep -q '^eval step 8 | val loss a ' $T/a.log && grep -q '^eval step 8 | domain weights a ' $T/a.log"
check "sheared: output passes --check-run" quiet ./test/test_prune --check-run "$T/a"
check "sheared: survivors.png written" test -s "$T/a/survivors.png"
$P --out "$T/b" --target "$T/t1.json" --steps 10 > "$T/b.log" 2>&1
check "same seed: masks.safetensors byte-identical" cmp -s "$T/a/masks.safetensors" "$T/b/masks.safetensors"
check "same seed: model.safetensors byte-identical" cmp -s "$T/a/model.safetensors" "$T/b/model.safetensors"
check "same seed: prune_report.json identical but for the timings" \
  sh -c "grep -v '\"seconds\"\|\"tokens_per_second\"' $T/a/prune_report.json > $T/ra && grep -v '\"seconds\"\|\"tokens_per_second\"' $T/b/prune_report.json > $T/rb && cmp -s $T/ra $T/rb"
$P --out "$T/s2" --target "$T/t1.json" --steps 10 --seed 2 > /dev/null 2>&1
check "another seed: other masks" sh -c "! cmp -s $T/a/masks.safetensors $T/s2/masks.safetensors"
$P --out "$T/c" --target "$T/t1.json" --steps 10 --stop-at 3 > "$T/c1.log" 2>&1
check "--stop-at 3 stops with a checkpoint" sh -c "grep -q 'stopped at step 3' $T/c1.log && test -f $T/c/prune_state.json && ! test -f $T/c/model.safetensors"
$P --out "$T/c" --target "$T/t1.json" --steps 10 --resume > "$T/c2.log" 2>&1
check "resume: continues at step 4" grep -q '^step 4/10' "$T/c2.log"
check "resume == uninterrupted: masks.safetensors bit for bit" cmp -s "$T/a/masks.safetensors" "$T/c/masks.safetensors"
check "resume == uninterrupted: model.safetensors bit for bit" cmp -s "$T/a/model.safetensors" "$T/c/model.safetensors"
check "resume == uninterrupted: the step-8 loss line" sh -c "[ \"\$(grep '^step 8/10' $T/a.log)\" != '' ] && \
  [ \"\$(grep '^step 8/10' $T/a.log | cut -d'|' -f2-6)\" = \"\$(grep '^step 8/10' $T/c2.log | cut -d'|' -f2-6)\" ]"
check "only the last checkpoint is kept" sh -c "[ \$(ls $T/c/state | wc -l) -eq 1 ]"
$P --out "$T/bf" --target "$T/t2.json" --steps 4 --dtype bf16 > /dev/null 2>&1
check "sheared, --dtype bf16: output passes --check-run" quiet ./test/test_prune --check-run "$T/bf"
./prune --model "$T/src" --data "$T/data" --seq 32 --batch 2 --grad-accum 2 --eval-every 4 --eval-batches 2 --log-every 4 \
  --out "$T/ga" --target "$T/t1.json" --steps 4 > "$T/ga.log" 2>&1 || { cat "$T/ga.log"; bad "--grad-accum run"; }
check "--grad-accum 2: the step's tokens (2 x 32 x 2) and the run's beside the published 131k and 0.42B" \
  grep -q '^| tokens per step 128 (batch 2 x seq 32 x accum 2: 2 draws of the masks), 512 in 4 steps; published: 131k per step' "$T/ga.log"
check "--grad-accum 2: output passes --check-run" quiet ./test/test_prune --check-run "$T/ga"
mkdir -p "$T/srcw" && cp "$T/src/model.safetensors" "$T/srcw/" && sed 's/"sliding_window":[[:space:]]*[0-9]*/"sliding_window": 200/' "$T/src/config.json" > "$T/srcw/config.json"
./prune --model "$T/srcw" --data "$T/data" --out "$T/sw" --method magnitude --keep 0.5 --eval-batches 0 > "$T/sw.log" 2>&1 || { cat "$T/sw.log"; bad "--seq default run"; }
check "--seq default: twice the sliding window (200 -> 400)" grep -q ' seq=400 ' "$T/sw.log"

# --- the one-shot baselines and --keep -----------------------------------------------------------------------------
for m in magnitude activation wanda bi; do
  ./prune --model "$T/src" --data "$T/data" --out "$T/$m" --method $m --target "$T/t1.json" --batch 4 --seq 32 \
    --calib-batches 2 --eval-batches 1 > "$T/$m.log" 2>&1 || { cat "$T/$m.log"; bad "$m run"; }
  check "$m: output passes --check-run" quiet ./test/test_prune --check-run "$T/$m"
done
./prune --model "$T/src" --data "$T/data" --out "$T/df" --method drop-full > "$T/df.log" 2>&1 || { cat "$T/df.log"; bad "drop-full run"; }
check "drop-full: output passes --check-run (no full layer left)" quiet ./test/test_prune --check-run "$T/df"
./prune --model "$T/src" --data "$T/data" --out "$T/keep" --method magnitude --keep 0.5 > "$T/keep.log" 2>&1 || { cat "$T/keep.log"; bad "--keep run"; }
check "--keep 0.5: says which shape and why, keeps ~half" sh -c "grep -q 'target: L=4 .*--keep 0.5: every layer' $T/keep.log && \
  grep -Eq 'target keeps 0\.(4[5-9]|5[0-5])[0-9]* of the non-embedding' $T/keep.log"
check "--keep 0.5: output passes --check-run" quiet ./test/test_prune --check-run "$T/keep"
check "--help lists every flag with its type and default" sh -c "./prune --help | grep -q -- '--lagrangian-warmup  int     steps.*\\[-1\\]\$' && ./prune --help | grep -q -- '--full-every  *int '"

# --- bad input: one line, the input named, non-zero exit ---------------------------------------------------------
B="./prune --model $T/src --data $T/data --steps 2"
j() { echo "$1" > "$T/bad.json"; echo "$T/bad.json"; }
expect_error "target larger than the source" "more than the source" $B --out "$T/x" --target "$(j '{"hidden_size": 64}')"
expect_error "heads not divisible into kv groups" "not a multiple of num_key_value_heads" $B --out "$T/x" --target "$(j '{"num_attention_heads": 3, "num_key_value_heads": 2}')"
expect_error "more query heads per kv head than the source" "query heads per kv head" $B --out "$T/x" --target "$(j '{"num_attention_heads": 3, "num_key_value_heads": 1, "hidden_size": 30}')"
expect_error "hidden_size not divisible by the heads" "not divisible by num_attention_heads 4" $B --out "$T/x" --target "$(j '{"hidden_size": 46}')"
expect_error "head_dim changed" "head_dim" $B --out "$T/x" --target "$(j '{"head_dim": 8}')"
expect_error "zero layers" "at least 1" $B --out "$T/x" --target "$(j '{"num_hidden_layers": 0}')"
expect_error "sliding/full rule impossible" "consecutive layers" $B --out "$T/x" --full-every 1 --target "$(j '{"num_hidden_layers": 2}')"
expect_error "a target field of the wrong type" "must be a number" $B --out "$T/x" --target "$(j '{"hidden_size": "big"}')"
expect_error "malformed target JSON" "malformed JSON" $B --out "$T/x" --target "$(j '{"hidden_size": ')"
expect_error "a misspelt target key" 'unknown key "hiden_size"; a target shape sets hidden_size' $B --out "$T/x" --target "$(j '{"hiden_size": 32}')"
expect_error "a config.json target without a size" 'no "intermediate_size"' $B --out "$T/x" --target "$(j '{"model_type": "gemma3_text", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1}')"
expect_error "--keep out of range" "fraction in (0, 1]" $B --out "$T/x" --keep 1.5
expect_error "--target and --keep together" "not both" $B --out "$T/x" --keep 0.5 --target "$T/t1.json"
expect_error "no target" "a target is required" $B --out "$T/x"
expect_error "unknown method" "--method prune-it" $B --out "$T/x" --method prune-it --keep 0.5
expect_error "unknown flag" "unknown flag --bogus" $B --out "$T/x" --keep 0.5 --bogus
expect_error "missing model directory" "no config.json" ./prune --model "$T/none" --out "$T/x" --keep 0.5
expect_error "missing data for sheared" "does not exist" ./prune --model "$T/src" --data "$T/none" --out "$T/x" --keep 0.5
expect_error "--out already holds a model" "already holds" $B --out "$T/a" --keep 0.5
expect_error "--out is the source" "source model directory" $B --out "$T/src" --keep 0.5
expect_error "--resume without a run" "does not exist" $B --out "$T/fresh" --keep 0.5 --resume
expect_error "--resume with other settings" "was made with --steps 10, this run has --steps 12" $P --out "$T/c" --target "$T/t1.json" --steps 12 --resume
check "a refused run leaves no output directory" test ! -e "$T/x"

# --- Gemma 4 (fixture g4_keqv: d 64, L 4 = s F s F, H 4, K 2, D 16; full layers K=V, Kg 1, Dg 32) ----------------
./test/test_prune --write-shards "$T/data256" 256 > /dev/null || { echo "FAIL could not write shards for vocab 256"; exit 1; }
G4="./prune --model test/fixtures/g4_keqv --data $T/data256 --batch 4 --seq 32 --eval-every 4 --eval-batches 2 --log-every 4 --steps 8"
$G4 --out "$T/g4" --keep 0.5 > "$T/g4.log" 2>&1 || { cat "$T/g4.log"; bad "Gemma 4 sheared --keep 0.5"; }
check "Gemma 4 sheared --keep 0.5: output passes --check-run" quiet ./test/test_prune --check-run "$T/g4"
$G4 --out "$T/g4t" --target "$(j '{"num_hidden_layers": 2, "hidden_size": 48, "num_attention_heads": 2, "num_key_value_heads": 1, "intermediate_size": 40}')" \
  > "$T/g4t.log" 2>&1 || { cat "$T/g4t.log"; bad "Gemma 4 sheared, 2 of 4 layers"; }
check "Gemma 4 sheared, 2 of 4 layers: output passes --check-run (last layer full, scalars carried)" quiet ./test/test_prune --check-run "$T/g4t"
E2="./prune --model test/fixtures/g4_e2b --data $T/data256 --batch 4 --seq 32 --eval-every 4 --eval-batches 2 --log-every 4 --steps 8"
$E2 --out "$T/e2b" --keep 0.5 > "$T/e2b.log" 2>&1 || { cat "$T/e2b.log"; bad "Gemma 4 E2B sheared --keep 0.5"; }
check "Gemma 4 E2B --keep 0.5 (query heads and FFN only): output passes --check-run" quiet ./test/test_prune --check-run "$T/e2b"
expect_error "Gemma 4 E2B: a target that drops layers is refused" "query heads and FFN channels only" $E2 --out "$T/x" --target "$(j '{"num_hidden_layers": 4}')"
expect_error "Gemma 4: one-shot baselines refused" "method sheared" ./prune --model test/fixtures/g4_keqv --data "$T/data256" --out "$T/x" --method magnitude --keep 0.5
expect_error "Gemma 4: drop-full refused" "end Gemma 4 on a sliding layer" ./prune --model test/fixtures/g4_keqv --data "$T/data256" --out "$T/x" --method drop-full
expect_error "Gemma 4: full-layer kv heads above the source" "num_global_key_value_heads" $G4 --out "$T/x" --target "$(j '{"num_global_key_value_heads": 2}')"

echo "test_prune.sh: $pass passed, $fail failed"
[ $fail -eq 0 ]
