#!/bin/sh
# test/test_prune.sh — prune.c: the C test test/test_prune (masked == sliced on the Gemma 3 fixtures,
# finite-difference mask gradients, the constrained layer choice vs brute force, transformers' logits of a
# sliced model when that fixture exists), then ./prune end to end on a small random model and two small
# token domains: every method's output checked by `test/test_prune --check-run` (report, shape == target,
# sliding/full rule, masked source == written model), same seed -> byte-identical masks and model,
# --stop-at + --resume == uninterrupted (bit for bit), a kill while checkpointing (test hook, real SIGKILLs)
# resumes to the same result and leaves no orphans, damaged resume state and bad input -> one line on stderr.
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

make --no-print-directory -s prune train test/test_prune > "$T/build.log" 2>&1 \
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
check "--stop-at 3 stops with a checkpoint" sh -c "grep -q 'stopped at step 3' $T/c1.log && test -f $T/c/checkpoint/prune_state.json && ! test -f $T/c/model.safetensors"
$P --out "$T/c" --target "$T/t1.json" --steps 10 --resume > "$T/c2.log" 2>&1
check "resume: continues at step 4" grep -q '^step 4/10' "$T/c2.log"
check "resume == uninterrupted: masks.safetensors bit for bit" cmp -s "$T/a/masks.safetensors" "$T/c/masks.safetensors"
check "resume == uninterrupted: model.safetensors bit for bit" cmp -s "$T/a/model.safetensors" "$T/c/model.safetensors"
check "resume == uninterrupted: the step-8 loss line" sh -c "[ \"\$(grep '^step 8/10' $T/a.log)\" != '' ] && \
  [ \"\$(grep '^step 8/10' $T/a.log | cut -d'|' -f2-6)\" = \"\$(grep '^step 8/10' $T/c2.log | cut -d'|' -f2-6)\" ]"
check "only the last checkpoint is kept" sh -c "[ \"\$(ls $T/c | grep checkpoint)\" = checkpoint ]"
# --optimizer adamw8: the weights' states are train's 8-bit blocks, in the same checkpoint codec, resumed bit for bit
$P --out "$T/a8" --target "$T/t1.json" --steps 10 --optimizer adamw8 > "$T/a8.log" 2>&1 || { cat "$T/a8.log"; bad "adamw8 run"; }
check "adamw8: 8-bit states (~2 bytes a parameter), a model other than adamw's, output passes --check-run" \
  sh -c "grep -q \"^| weights' optimizer adamw8: state .*(2\.[0-9]* bytes per parameter)\" $T/a8.log && \
  ! cmp -s $T/a/model.safetensors $T/a8/model.safetensors && ./test/test_prune --check-run $T/a8 > /dev/null"
$P --out "$T/c8" --target "$T/t1.json" --steps 10 --optimizer adamw8 --stop-at 3 > /dev/null 2>&1
check "adamw8: the checkpoint holds the 8-bit states, not AdamW's" sh -c "grep -aq 'exp_avg.q8' $T/c8/checkpoint/optimizer.safetensors \
  && ! grep -aq '\"exp_avg\"' $T/c8/checkpoint/optimizer.safetensors"
expect_error "adamw8: --resume with another --optimizer" "--optimizer" ./prune --out "$T/c8" --resume --optimizer adamw
$P --out "$T/c8" --resume > "$T/c8.log" 2>&1 || { cat "$T/c8.log"; bad "adamw8 resume"; }
check "adamw8: resume == uninterrupted (masks and model bit for bit)" \
  sh -c "cmp -s $T/a8/masks.safetensors $T/c8/masks.safetensors && cmp -s $T/a8/model.safetensors $T/c8/model.safetensors"
# a process killed while writing a checkpoint (test hook): the previous checkpoint is in place, what the dead one
# left (checkpoint.tmp, atomic-write temporaries) is removed at the next start, and the resumed run ends as U
PRUNE_TEST_CRASH=files@6 $P --out "$T/k" --target "$T/t1.json" --steps 10 --save-every 3 > /dev/null 2>&1; rc=$?
check "killed while writing the step-6 checkpoint (exit $rc): the step-3 one is in place, checkpoint.tmp left over" \
  sh -c "[ $rc -eq 86 ] && grep -qE '\"step\":[[:space:]]*3,' $T/k/checkpoint/prune_state.json && [ -d $T/k/checkpoint.tmp ]"
touch "$T/k/model.safetensors.tmp.99999998" "$T/k/checkpoint/config.json.tmp.99999999" "$T/k/log.json.tmp.$$"
$P --out "$T/k" --resume > "$T/k.log" 2>&1 || { cat "$T/k.log"; bad "resume after the crash"; }
check "resume after the crash == uninterrupted (masks and model bit for bit)" \
  sh -c "cmp -s $T/a/masks.safetensors $T/k/masks.safetensors && cmp -s $T/a/model.safetensors $T/k/model.safetensors"
check "orphans removed at the next start: no checkpoint.tmp, no *.tmp.<pid> of a dead process (a live one's kept)" \
  sh -c "[ ! -e $T/k/checkpoint.tmp ] && [ \"\$(find $T/k -name '*.tmp.*')\" = $T/k/log.json.tmp.$$ ]"
PRUNE_TEST_CRASH=rename@6 $P --out "$T/kr" --target "$T/t1.json" --steps 10 --save-every 3 > /dev/null 2>&1
check "killed between the fallback's two renames: only checkpoint.old (step 3) is left" \
  sh -c "[ ! -d $T/kr/checkpoint ] && grep -qE '\"step\":[[:space:]]*3,' $T/kr/checkpoint.old/prune_state.json"
$P --out "$T/kr" --resume > /dev/null 2>&1 || bad "resume from checkpoint.old"
check "resumed from checkpoint.old == uninterrupted, and checkpoint.old is gone" \
  sh -c "cmp -s $T/a/masks.safetensors $T/kr/masks.safetensors && [ -d $T/kr/checkpoint ] && [ ! -e $T/kr/checkpoint.old ]"
# real SIGKILLs at random moments of a run that checkpoints every step: each resumes to U's masks, and at most
# one checkpoint and no temporaries are left (before, 12 kills left 9 step directories, ~12 GB each at 1B)
Q="$P --target $T/t1.json --steps 8 --eval-batches 0 --save-every 1"
$Q --out "$T/qu" > /dev/null 2>&1
kills=0 okk=0
for i in 1 2 3; do
  rm -rf "$T/q"
  $Q --out "$T/q" > /dev/null 2>&1 &
  pid=$!
  n=0; while [ ! -d "$T/q/checkpoint" ] && [ $n -lt 3000 ]; do sleep 0.01; n=$((n + 1)); done
  sleep "0.$(( (i * 37) % 10 ))"
  kill -9 $pid 2> /dev/null && kills=$((kills + 1))
  wait $pid 2> /dev/null
  if [ -d "$T/q/checkpoint" ] || [ -d "$T/q/checkpoint.old" ]; then ./prune --out "$T/q" --resume > "$T/q.log" 2>&1
  else $Q --out "$T/q" > "$T/q.log" 2>&1; fi
  cmp -s "$T/qu/masks.safetensors" "$T/q/masks.safetensors" && [ "$(ls "$T/q" | grep -c checkpoint)" -eq 1 ] \
    && [ -z "$(find "$T/q" -name '*.tmp*')" ] && okk=$((okk + 1))
done
check "SIGKILL at 3 moments ($kills landed mid-run): each resumed to the uninterrupted masks, one checkpoint left" [ $okk -eq 3 ]
# damaged resume state: one line naming the file, nothing in --out changed
snapshot() { (cd "$1" && find . -type f | sort | xargs md5sum); }
$P --out "$T/d" --target "$T/t1.json" --steps 10 --stop-at 3 > /dev/null 2>&1
damaged() {  # damaged NAME WANT SED-EXPRESSION: prune_state.json edited, then --resume must refuse it
  rm -rf "$T/e"; cp -r "$T/d" "$T/e"; sed -i "$3" "$T/e/checkpoint/prune_state.json"
  before=$(snapshot "$T/e"); expect_error "damaged state: $1" "$2" ./prune --out "$T/e" --resume
  [ "$before" = "$(snapshot "$T/e")" ] || bad "damaged state: $1: --out was changed"
}
damaged "step past --steps" 'prune_state.json: "step" is 99, expected a whole number in \[0, 10\]' 's/"step":[[:space:]]*3,/"step": 99,/'
damaged "step as a boolean" '"step" is true' 's/"step":[[:space:]]*3,/"step": true,/'
damaged "truncated JSON" "prune_state.json: malformed JSON" '$d'
damaged "an RNG word that is not hex" '"mask_rng" is' '0,/"mask_rng":[[:space:]]*\["[0-9a-f]/s//"mask_rng": ["z/'
damaged "domain weights that do not sum to 1" '"weights" is \[0.5,0.7\]' 's/"weights":[[:space:]]*\[0.5, 0.5\]/"weights": [0.5, 0.7]/'
damaged "a negative data cursor" '"data_drawn" is -12' 's/"data_drawn":[[:space:]]*12/"data_drawn": -12/'
damaged "a setting of the wrong type" 'setting "steps" is "ten"' 's/"steps":[[:space:]]*10/"steps": "ten"/'
damaged "a setting no flag has" 'settings name "sequence"' 's/"seq":[[:space:]]*32/"seq": 32, "sequence": 32/'
damaged "another target" "was made for the target" 's/"hidden_size":[[:space:]]*30/"hidden_size": 36/'
./test/test_prune --write-model "$T/src300" 300 > /dev/null
./prune --model "$T/src300" --data "$T/data" --batch 4 --seq 32 --eval-batches 0 --out "$T/o300" --target "$T/t1.json" \
  --steps 10 --stop-at 1 > /dev/null 2>&1
rm -rf "$T/e"; cp -r "$T/d" "$T/e"; cp "$T/o300/checkpoint/optimizer.safetensors" "$T/e/checkpoint/"
expect_error "damaged state: optimizer tensors of another size" "optimizer.safetensors: tensor \"exp_avg\" is F32\[" ./prune --out "$T/e" --resume
rm -rf "$T/e"; cp -r "$T/d" "$T/e"; head -c $(( $(stat -c %s "$T/d/checkpoint/masks.safetensors") / 2 )) "$T/d/checkpoint/masks.safetensors" > "$T/e/checkpoint/masks.safetensors"
expect_error "damaged state: truncated masks.safetensors" "masks.safetensors" ./prune --out "$T/e" --resume
# a checkpoint of another source model, of ./train, or of an older ./prune's layout: refused, nothing written
cp -r "$T/src" "$T/srcx"
./prune --model "$T/srcx" --data "$T/data" --batch 4 --seq 32 --eval-batches 0 --out "$T/ox" --target "$T/t1.json" \
  --steps 10 --stop-at 1 > /dev/null 2>&1
rm -rf "$T/srcx"; cp -r "$T/src300" "$T/srcx"; before=$(snapshot "$T/ox")
expect_error "resume after the source directory was replaced by another model" "was made for the source model" ./prune --out "$T/ox" --resume
[ "$before" = "$(snapshot "$T/ox")" ] || bad "resume with another source model: --out was changed"
expect_error "./train --resume on a pruning run" "is a checkpoint of ./prune, not of ./train" ./train --out "$T/d" --resume
./train --model "$T/src" --data "$T/data" --out "$T/tr" --steps 2 --batch 2 --seq 16 --eval-every 0 --eval-batches 1 \
  > /dev/null 2>&1 || bad "a small ./train run for the next check"
expect_error "./prune --resume on a training run" "is a checkpoint of ./train, not of ./prune" ./prune --out "$T/tr" --resume
mkdir -p "$T/old/state/step_000003"; echo '{"step": 3, "checkpoint": "state/step_000003"}' > "$T/old/prune_state.json"
expect_error "--out of an older ./prune (state/step_NNNNNN)" "older ./prune" $P --out "$T/old" --target "$T/t1.json" --steps 10
$P --out "$T/bf" --target "$T/t2.json" --steps 4 --dtype bf16 > /dev/null 2>&1
check "sheared, --dtype bf16: output passes --check-run" quiet ./test/test_prune --check-run "$T/bf"
./prune --model "$T/src" --data "$T/data" --seq 32 --batch 2 --grad-accum 2 --eval-every 4 --eval-batches 2 --log-every 4 \
  --out "$T/ga" --target "$T/t1.json" --steps 4 > "$T/ga.log" 2>&1 || { cat "$T/ga.log"; bad "--grad-accum run"; }
check "--grad-accum 2: the step's tokens (2 x 32 x 2) and the run's beside the published 131k and 0.42B" \
  grep -q '^| tokens per step 128 (batch 2 x seq 32 x accum 2 x ranks 1: 2 draws of the masks), 512 in 4 steps; published: 131k per step' "$T/ga.log"
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
expect_error "an optimizer prune has not (Muon is train's)" "--optimizer muon is not one of: adamw, adamw8" $B --out "$T/x" --keep 0.5 --optimizer muon
expect_error "unknown flag" "unknown flag --bogus" $B --out "$T/x" --keep 0.5 --bogus
expect_error "missing model directory" "no config.json" ./prune --model "$T/none" --out "$T/x" --keep 0.5
expect_error "missing data for sheared" "does not exist" ./prune --model "$T/src" --data "$T/none" --out "$T/x" --keep 0.5
expect_error "--out already holds a model" "already holds" $B --out "$T/a" --keep 0.5
expect_error "--out is the source" "source model directory" $B --out "$T/src" --keep 0.5
expect_error "--resume without a run" "has no checkpoint/ to resume" $B --out "$T/fresh" --keep 0.5 --resume
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
