#!/bin/sh
# test/test_train.sh — train.c: the C test (test/test_train: 8-bit AdamW and Muon against float64
# transcriptions, the distillation head, lottery B against model.h's masks), then ./train on a tiny model
# and synthetic shards (count / noise / pattern; made by test/test_train --make-shards):
#   loss goes down with each optimizer; a resumed run equals the uninterrupted one bit for bit (losses and
#   the saved weights and optimizer state) for adamw, adamw8, muon and bf16 + grad-accum; a process killed
#   while writing a checkpoint (test hook, and real SIGKILLs) leaves one that resumes to the same result;
#   dynamic batch loading moves weight to the domain furthest above its reference; distillation, lottery
#   tickets, generation; bad input: one stderr line, non-zero exit, nothing in --out changed.
# The AdamW step itself is model.h's adamw_update, checked against torch by test/test_model.
cd "$(dirname "$0")/.."
# the tiny models here gain nothing from threads; one thread also keeps the timing sane on a busy machine.
# The 2-thread case (BLIS and OpenMP threads must be deterministic too) has its own resume check below.
export OMP_NUM_THREADS=1
T=$(mktemp -d /tmp/test_train_sh.XXXXXX)
trap 'rm -rf "$T"' EXIT
. test/lib.sh
snapshot() { [ -d "$1" ] && (cd "$1" && find . -type f | sort | xargs md5sum) || echo none; }
# expect_error_keeps NAME WANT OUTDIR COMMAND...: expect_error (test/lib.sh), and every file under OUTDIR
# unchanged (OUTDIR may not exist: then it must still not exist)
expect_error_keeps() {
  name=$1 want=$2 dir=$3; shift 3
  before=$(snapshot "$dir")
  expect_error "$name" "$want" "$@"
  after=$(snapshot "$dir")
  if [ "$before" != "$after" ]; then bad "$name: $dir was changed"; fi
}
col() { cut -d, -f"$2" "$1"; }  # a column of a CSV log

make --no-print-directory -s train test/test_train > "$T/build.log" 2>&1 \
  || { cat "$T/build.log"; echo "FAIL build"; echo "test_train.sh: 0 passed, 1 failed"; exit 1; }
check "test/test_train (8-bit AdamW, Muon, distillation, lottery B)" ./test/test_train

./test/test_train --make-shards "$T/data"
./test/test_train --make-shards "$T/data1000" --vocab 1000
cat > "$T/tiny.json" <<'EOF'
{"model_type": "gemma3_text", "vocab_size": 261, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
 "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16, "sliding_window": 8,
 "layer_types": ["sliding_attention", "full_attention"], "max_position_embeddings": 512}
EOF
sed 's/"vocab_size": 261/"vocab_size": 300/' "$T/tiny.json" > "$T/tiny300.json"
D="--data $T/data --batch 4 --seq 32"

# --- loss goes down, with each optimizer -------------------------------------------------------------------------
# first 3 steps vs last 5 steps of 40; the pattern domain is learnable, noise (uniform bytes) is not
for opt in adamw adamw8 muon; do
  ./train --config "$T/tiny.json" $D --out "$T/loss_$opt" --steps 40 --lr 1e-2 --eval-every 40 --optimizer $opt \
    > "$T/loss_$opt.log" 2>&1 || { bad "train --optimizer $opt: exit $?"; cat "$T/loss_$opt.log"; continue; }
  first=$(col "$T/loss_$opt/log_steps.csv" 2 | sed -n 2,4p | awk '{s+=$1} END {print s/NR}')
  last=$(col "$T/loss_$opt/log_steps.csv" 2 | tail -5 | awk '{s+=$1} END {print s/NR}')
  pat=$(grep '^40,pattern' "$T/loss_$opt/log_eval.csv" | cut -d, -f3)
  noise=$(grep '^40,noise' "$T/loss_$opt/log_eval.csv" | cut -d, -f3)
  check "$opt: loss $first -> $last over 40 steps (val: pattern $pat, noise $noise)" \
    awk -v a="$first" -v b="$last" -v p="$pat" -v n="$noise" 'BEGIN {exit !(b < a - 1.0 && p < 3.5 && n > 5.0)}'
done
check "step lines are greppable: 'step 40/40 | loss ... | lr ... | grad ... | tok/s | elapsed ... | eta ...'" \
  grep -qE '^step 40/40 \| loss [0-9.]+ \| lr [0-9.e+-]+ \| grad [0-9.]+ \| [0-9]+ tok/s \| elapsed [0-9.hms]+ \| eta [0-9.hms]+$' "$T/loss_adamw.log"
check "optimizer state bytes reported: adamw 8, adamw8 ~2, muon < 8 per parameter" sh -c \
  "grep -q 'optimizer adamw: state .* (8.00 bytes' $T/loss_adamw.log && grep -q 'optimizer adamw8: state .* (2.0[0-9] bytes' $T/loss_adamw8.log && grep -qE 'optimizer muon: state .* \([4-7]\.[0-9]+ bytes' $T/loss_muon.log"
check "loss.png written (PNG)" sh -c "head -c 4 $T/loss_adamw/loss.png | grep -q PNG"

# --- resume is bit-exact; a crash while writing a checkpoint leaves the previous one ------------------------------
# U: 30 steps uninterrupted. C: the same run killed (test hook) after writing the step-20 checkpoint but before
# swapping it in, so the step-10 one must be loadable; --resume from it must reproduce U exactly.
same_run() {  # same_run NAME A B: same per-step losses, lr and grad norms; identical weights and optimizer state
  if [ "$(cut -d, -f1-4 "$2/log_steps.csv")" = "$(cut -d, -f1-4 "$3/log_steps.csv")" ] \
     && cmp -s "$2/checkpoint/model.safetensors" "$3/checkpoint/model.safetensors" \
     && cmp -s "$2/checkpoint/optimizer.safetensors" "$3/checkpoint/optimizer.safetensors"; then ok "$1"
  else bad "$1"; diff "$2/log_steps.csv" "$3/log_steps.csv" | head -6; fi
}
R="--config $T/tiny.json $D --steps 30 --eval-every 10 --save-every 10 --lr 3e-3"
for v in "adamw" "adamw8" "muon" "adamw --dtype bf16 --grad-accum 2" "muon --threads 2"; do
  tag=$(echo "$v" | tr -d ' -')
  th=1; case "$v" in *"--threads 2"*) th=2; v=${v%% --threads 2};; esac
  OMP_NUM_THREADS=$th ./train $R --optimizer $v --out "$T/u_$tag" > /dev/null 2>&1 || bad "uninterrupted run $v"
  TRAIN_TEST_CRASH=files@20 OMP_NUM_THREADS=$th ./train $R --optimizer $v --out "$T/c_$tag" > /dev/null 2> "$T/crash.err"; rc=$?
  check "$v, $th thread(s): killed while writing the step-20 checkpoint (exit $rc), the step-10 one is in place" \
    sh -c "[ $rc -eq 86 ] && grep -qE '\"step\":[[:space:]]*10,' $T/c_$tag/checkpoint/train_state.json"
  OMP_NUM_THREADS=$th ./train $R --optimizer $v --out "$T/c_$tag" --resume > "$T/resume.log" 2>&1 || { bad "resume $v"; cat "$T/resume.log"; }
  same_run "$v, $th thread(s): resumed from step 10 = uninterrupted, bit for bit (losses, weights, optimizer state)" "$T/u_$tag" "$T/c_$tag"
done
check "bf16 checkpoint: weights saved as BF16, fp32 master weights in optimizer.safetensors" sh -c \
  "grep -qE '\"dtype\":[[:space:]]*\"bfloat16\"' $T/u_adamwdtypebf16gradaccum2/checkpoint/config.json && grep -aq master_weights $T/u_adamwdtypebf16gradaccum2/checkpoint/optimizer.safetensors"
# the fallback swap (two renames): killed between them, --resume finds checkpoint.old
TRAIN_TEST_CRASH=rename@20 ./train $R --out "$T/r" > /dev/null 2>&1
check "killed between the fallback's two renames: only checkpoint.old (step 10) is left" \
  sh -c "[ ! -d $T/r/checkpoint ] && grep -qE '\"step\":[[:space:]]*10,' $T/r/checkpoint.old/train_state.json"
./train $R --out "$T/r" --resume > /dev/null 2>&1 || bad "resume from checkpoint.old"
same_run "resumed from checkpoint.old = uninterrupted, bit for bit" "$T/u_adamw" "$T/r"
# real SIGKILLs at random moments of a run that checkpoints every step: what is left always resumes to U's result
K="--config $T/tiny.json $D --steps 40 --eval-every 0 --save-every 1 --lr 3e-3"
./train $K --out "$T/ku" > /dev/null 2>&1
kills=0 okk=0
for i in 1 2 3 4 5; do
  rm -rf "$T/k"
  ./train $K --out "$T/k" > /dev/null 2>&1 &
  pid=$!
  n=0; while [ ! -d "$T/k/checkpoint" ] && [ $n -lt 500 ]; do sleep 0.01; n=$((n + 1)); done
  sleep "0.0$(( (i * 37) % 10 ))"
  kill -9 $pid 2> /dev/null && kills=$((kills + 1))
  wait $pid 2> /dev/null
  if ./train $K --out "$T/k" --resume > "$T/k.log" 2>&1 || grep -q "nothing to do" "$T/k.log"; then
    cmp -s "$T/ku/checkpoint/model.safetensors" "$T/k/checkpoint/model.safetensors" && okk=$((okk + 1))
  fi
done
check "SIGKILL at 5 moments ($kills landed mid-run): every run resumed to the uninterrupted weights" [ $okk -eq 5 ]

# --- dynamic batch loading --------------------------------------------------------------------------------------
# references: pattern 0.3 (far below what 5 steps reach), count 1.0, noise 5.6 (its entropy floor, ln 256 = 5.55):
# after the first update the weight must move to pattern, the domain furthest ABOVE its reference, although
# noise has the highest loss
echo '{"pattern": 0.3, "count": 1.0, "noise": 5.6}' > "$T/ref.json"
./train --config "$T/tiny.json" $D --out "$T/dyn" --steps 10 --eval-every 5 --lr 3e-3 --mix dynamic --ref-loss "$T/ref.json" \
  > "$T/dyn.log" 2>&1 || { bad "dynamic run"; cat "$T/dyn.log"; }
w() { grep "^$2,$3," "$1/log_eval.csv" | cut -d, -f5; }
wp=$(w "$T/dyn" 5 pattern) wn=$(w "$T/dyn" 5 noise) wc=$(w "$T/dyn" 5 count)
check "dynamic: after step 5 pattern $wp > count $wc, noise $wn (pattern above 1/3, noise below)" \
  awk -v p="$wp" -v c="$wc" -v n="$wn" 'BEGIN {exit !(p > c && p > 0.34 && n < 0.333)}'
check "dynamic: weights logged at every update and plotted" sh -c \
  "grep -c '^weights step' $T/dyn.log | grep -qx 2 && head -c 4 $T/dyn/weights.png | grep -q PNG"
echo '{"pattern": 3, "count": 1}' > "$T/w.json"
./train --config "$T/tiny.json" $D --out "$T/wst" --steps 2 --eval-every 0 --weights "$T/w.json" > "$T/wst.log" 2>&1
check "--weights: static weights from a file (a domain left out gets 0)" \
  grep -q 'count w=0.2500, noise w=0.0000, pattern w=0.7500' "$T/wst.log"
echo '{"method": "sheared", "layers": [0], "domain_weights": {"count": 0.2, "noise": 0.3, "pattern": 0.5}}' > "$T/wrep.json"
./train --config "$T/tiny.json" $D --out "$T/wrep" --steps 2 --eval-every 0 --weights "$T/wrep.json" > "$T/wrep.log" 2>&1
check "--weights PRUNE_REPORT: the pruning run's final domain weights" \
  grep -q 'count w=0.2000, noise w=0.3000, pattern w=0.5000' "$T/wrep.log"
./train --config "$T/tiny.json" $D --out "$T/rcp" --steps 100 --stop-at 1 --eval-every 0 --recipe sheared > "$T/rcp.log" 2>&1
./train --config "$T/tiny.json" $D --out "$T/rcp2" --steps 100 --stop-at 1 --eval-every 0 --recipe sheared --lr 3e-3 > "$T/rcp2.log" 2>&1
check "--recipe sheared: lr 1e-4, 3% warmup, cosine to 10%, no weight decay; an explicit --lr wins" sh -c \
  "grep -q 'warmup 3, cosine to 0.1 x 0.0001,' $T/rcp.log && grep -Eq 'weight-decay[ =]+0( |\$)' $T/rcp.log && \
   grep -q 'warmup 3, cosine to 0.1 x 0.003,' $T/rcp2.log"
# --dbl-clip: a domain below its reference counts as on target (delta 0) instead of being pushed down
echo '{"pattern": 9, "count": 9, "noise": 5.6}' > "$T/ref_hi.json"
./train --config "$T/tiny.json" $D --out "$T/clip0" --steps 5 --eval-every 5 --mix dynamic --ref-loss "$T/ref_hi.json" > /dev/null 2>&1
./train --config "$T/tiny.json" $D --out "$T/clip1" --steps 5 --eval-every 5 --mix dynamic --ref-loss "$T/ref_hi.json" --dbl-clip > /dev/null 2>&1
a=$(w "$T/clip0" 5 pattern) b=$(w "$T/clip1" 5 pattern)
check "--dbl-clip: pattern below its reference keeps its weight ($b, code variant $a)" \
  awk -v a="$a" -v b="$b" 'BEGIN {exit !(a < 0.2 && b > 0.3)}'
./train --config "$T/tiny.json" $D --out "$T/refm" --steps 2 --eval-every 2 --mix dynamic --ref-model "$T/loss_adamw/checkpoint" \
  > "$T/refm.log" 2>&1 || { bad "--ref-model run"; cat "$T/refm.log"; }
check "--ref-model: per-domain losses evaluated and written to ref_loss.json" sh -c \
  "grep -q '\"noise\"' $T/refm/ref_loss.json && grep -q '\"pattern\"' $T/refm/ref_loss.json"

# --- distillation, lottery tickets, generation -------------------------------------------------------------------
./train --config "$T/tiny.json" $D --out "$T/kd" --steps 20 --lr 3e-3 --eval-every 0 --teacher "$T/loss_adamw/checkpoint" \
  --alpha 0.5 --temperature 2 > "$T/kd.log" 2>&1 || { bad "distillation run"; cat "$T/kd.log"; }
k1=$(grep '^step 1/' "$T/kd.log" | sed 's/.*| kl //') k20=$(grep '^step 20/' "$T/kd.log" | sed 's/.*| kl //')
check "distillation: KL(teacher || student) $k1 -> $k20 in 20 steps" awk -v a="$k1" -v b="$k20" 'BEGIN {exit !(b < a)}'
cat > "$T/report.json" <<'EOF'
{"method": "sheared", "target_shape": {"hidden_size": 24, "intermediate_size": 40, "num_hidden_layers": 1,
  "num_attention_heads": 1, "num_key_value_heads": 1, "head_dim": 16},
 "layers": [1], "kv_heads": [[0]], "query_heads": [[1]], "ffn": [[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,
  20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39]],
 "hidden": [0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23], "layer_types": ["full_attention"]}
EOF
S="$T/loss_adamw/checkpoint"
./train --lottery B --report "$T/report.json" --source "$S" $D --out "$T/lb" --steps 3 --eval-every 0 > "$T/lb.log" 2>&1
check "lottery B: trains the sliced shape (d 24, 1 full layer, F 40)" sh -c \
  "grep -q 'V=261 d=24 L=1 (1 full) H=1 K=1 D=16 F=40' $T/lb.log && grep -qE '\"hidden_size\":[[:space:]]*24,' $T/lb/checkpoint/config.json"
./train --lottery C --report "$T/report.json" --source "$S" $D --out "$T/lc" --steps 3 --eval-every 0 > "$T/lc.log" 2>&1
./train --lottery A --model "$T/lb/checkpoint" $D --out "$T/la" --steps 3 --eval-every 0 > "$T/la.log" 2>&1
check "lottery C (random init, lr 3e-4) and A (pruned weights, lr 1e-4) run on the same shape" sh -c \
  "grep -Eq ' lr=0\.0003( |\$)' $T/lc.log && grep -Eq ' lr=0\.0001( |\$)' $T/la.log && grep -q 'd=24 L=1' $T/lc.log && grep -q 'd=24 L=1' $T/la.log"
G="--model $T/loss_adamw/checkpoint --generate the --tokens 40 --seq 32"
./train $G --temperature 0 > "$T/g1.txt" 2> /dev/null
./train $G --temperature 0 > "$T/g2.txt" 2> /dev/null
./train $G --temperature 0.8 --top-k 20 --seed 3 > "$T/g3.txt" 2> /dev/null
check "generate: starts with the prompt, greedy is repeatable, sampling runs: '$(head -c 60 "$T/g1.txt" | tr '\n' ' ')'" \
  sh -c "head -c 3 $T/g1.txt | grep -q the && cmp -s $T/g1.txt $T/g2.txt && [ \$(wc -c < $T/g3.txt) -gt 3 ]"

# --- Gemma 4 E2B's extras (fixture g4_e2b: per-layer inputs, KV-shared layers, double-wide MLPs) ---------------
./test/test_train --make-shards "$T/data256" --vocab 256
E="--data $T/data256 --batch 2 --seq 32 --eval-every 4 --steps 8 --lr 1e-3"
./train --model test/fixtures/g4_e2b $E --out "$T/e2b_a" > "$T/e2b_a.log" 2>&1 || { cat "$T/e2b_a.log"; bad "E2B run"; }
./train --model test/fixtures/g4_e2b $E --out "$T/e2b_b" --stop-at 4 > /dev/null 2>&1 && ./train --out "$T/e2b_b" --resume > "$T/e2b_b.log" 2>&1
check "E2B-shaped model: trains, and --stop-at 4 + --resume == uninterrupted (steps 5-8, bit for bit)" \
  sh -c "grep '^step [5-8]/' $T/e2b_a.log | cut -d'|' -f1-4 > $T/e2b_a.s && grep '^step [5-8]/' $T/e2b_b.log | cut -d'|' -f1-4 > $T/e2b_b.s && [ -s $T/e2b_a.s ] && cmp -s $T/e2b_a.s $T/e2b_b.s"
make --no-print-directory -s profile > /dev/null 2>&1
check "E2B-shaped model: its checkpoint profiles (stats, heatmaps)" \
  quiet ./profile stats --model "$T/e2b_a/checkpoint" --data "$T/data256" --out "$T/e2b_prof" --calib-batches 1 --batch 2 --seq 32
expect_error "E2B on the GPU is refused (CPU build: no GPU path)" "make gpu" ./train --model test/fixtures/g4_e2b $E --out "$T/e2b_x" --device gpu

# --- bad input: one line, non-zero exit, nothing in --out changed ------------------------------------------------
cp -r "$T/data" "$T/data_missing"; rm "$T/data_missing/noise/val.bin"
expect_error_keeps "a domain without val.bin" "is missing" "$T/e1" ./train --config "$T/tiny.json" --data "$T/data_missing" --out "$T/e1" --steps 2
expect_error_keeps "shards of another tokenizer (vocab 1000, model 261)" "1000 ids but the model has vocab 261" "$T/e2" \
  ./train --config "$T/tiny.json" --data "$T/data1000" --out "$T/e2" --steps 2
cp -r "$T/u_adamw" "$T/e3"; head -c 5000 "$T/u_adamw/checkpoint/optimizer.safetensors" > "$T/e3/checkpoint/optimizer.safetensors"
expect_error_keeps "truncated optimizer.safetensors on resume" "optimizer.safetensors" "$T/e3" ./train --out "$T/e3" --resume --steps 40
cp -r "$T/u_adamw" "$T/e4"
expect_error_keeps "resume with another --optimizer" "trained with --optimizer adamw, not muon" "$T/e4" ./train --out "$T/e4" --resume --steps 40 --optimizer muon
cp "$T/lb/checkpoint/optimizer.safetensors" "$T/e4/checkpoint/optimizer.safetensors"
expect_error_keeps "optimizer state of another model" "belongs to another model" "$T/e4" ./train --out "$T/e4" --resume --steps 40
expect_error_keeps "optimizer state of another model, read into a ZeRO shard" "belongs to another model" "$T/e4" \
  ./train --out "$T/e4" --resume --steps 40 --zero 1
# the disk full while each rank writes its shard (ZeRO 1 in one process runs the sharded writer): one line, the
# checkpoint as it was
rm -rf "$T/eq"; cp -r "$T/u_adamw" "$T/eq"
expect_error_keeps "a full disk while writing a sharded checkpoint" "nothing was written under that name" "$T/eq" \
  sh -c "trap '' XFSZ; ulimit -f 100; exec ./train --out '$T/eq' --resume --steps 40 --zero 1"
rm -rf "$T/en"; cp -r "$T/u_adamw" "$T/en"
python3 - "$T/en/checkpoint/optimizer.safetensors" <<'PY'
import json, struct, sys  # the last element of exp_avg_sq becomes NaN
f = open(sys.argv[1], "r+b"); n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n))
f.seek(8 + n + h["exp_avg_sq"]["data_offsets"][1] - 4); f.write(struct.pack("<f", float("nan")))
PY
expect_error_keeps "a NaN in the moments, read into a ZeRO shard" "the file is damaged" "$T/en" \
  ./train --out "$T/en" --resume --steps 40 --zero 1
expect_error_keeps "a NaN in the moments, one process" "the file is damaged" "$T/en" ./train --out "$T/en" --resume --steps 40
cp -r "$T/u_adamw" "$T/e5"; printf '{"step": 30, ' > "$T/e5/checkpoint/train_state.json"
expect_error_keeps "corrupt train_state.json" "malformed JSON" "$T/e5" ./train --out "$T/e5" --resume --steps 40
damaged() {  # damaged NAME WANT SED-EXPRESSION: train_state.json edited, then --resume must refuse it, changing nothing
  rm -rf "$T/e5"; cp -r "$T/u_adamw" "$T/e5"; sed -i "$3" "$T/e5/checkpoint/train_state.json"
  expect_error_keeps "damaged state: $1" "$2" "$T/e5" ./train --out "$T/e5" --resume --steps 40
}
damaged "a step the history does not have" "train_state.json: history has 30 steps but step is 31" 's/"step":[[:space:]]*30,/"step": 31,/'
damaged "a step that is not a whole number" '"step" is 29.5' 's/"step":[[:space:]]*30,/"step": 29.5,/'
damaged "an RNG word that is not hex" '"data_rng" is' '0,/"data_rng":[[:space:]]*\["[0-9a-f]/s//"data_rng": ["z/'
damaged "a setting of the wrong type" 'setting "lr" is true' 's/"lr":[[:space:]]*0.003,/"lr": true,/'
damaged "domain weights that do not sum to 1" '"weights" is' '0,/"weights":[[:space:]]*\[/s//"weights": [0.9, /'
damaged "an unknown embedding-scale dtype" '"embed_scale_dtype" is "F8"' 's/"embed_scale_dtype":[[:space:]]*"F32"/"embed_scale_dtype": "F8"/'
# what a killed run leaves (an unswapped checkpoint.tmp, atomic-write temporaries) is gone after the next start
cp -r "$T/u_adamw" "$T/o1"; mkdir "$T/o1/checkpoint.tmp"; touch "$T/o1/checkpoint.tmp/model.safetensors" \
  "$T/o1/log.json.tmp.99999998" "$T/o1/checkpoint/optimizer.safetensors.tmp.99999999"
./train --out "$T/o1" --resume --steps 31 > "$T/o1.log" 2>&1 || { cat "$T/o1.log"; bad "resume next to orphans"; }
check "orphans of a killed run removed at the next start (checkpoint.tmp, *.tmp.<pid>)" \
  sh -c "[ ! -e $T/o1/checkpoint.tmp ] && [ -z \"\$(find $T/o1 -name '*.tmp*')\" ] && grep -q '^step 31/31' $T/o1.log"
echo '{"pattern": 1, "count": 1, "noise": 5, "poetry": 2}' > "$T/ref_bad.json"
expect_error_keeps "reference losses naming an unknown domain" 'names domain "poetry"' "$T/e6" \
  ./train --config "$T/tiny.json" $D --out "$T/e6" --mix dynamic --ref-loss "$T/ref_bad.json"
echo '{"pattern": 1, "count": 1}' > "$T/ref_short.json"
expect_error_keeps "reference losses missing a domain" 'no reference loss for domain "noise"' "$T/e6" \
  ./train --config "$T/tiny.json" $D --out "$T/e6" --mix dynamic --ref-loss "$T/ref_short.json"
expect_error_keeps "--mix dynamic without references" "needs reference losses" "$T/e6" ./train --config "$T/tiny.json" $D --out "$T/e6" --mix dynamic
expect_error_keeps "a new run over an existing checkpoint" "already holds a checkpoint" "$T/u_adamw" ./train --config "$T/tiny.json" $D --out "$T/u_adamw"
expect_error_keeps "--resume without a checkpoint" "no checkpoint" "$T/e7" ./train --out "$T/e7" --resume
expect_error_keeps "--resume of a finished run" "nothing to do" "$T/u_adamw" ./train --out "$T/u_adamw" --resume
./train --config "$T/tiny300.json" $D --out "$T/v300" --steps 1 --eval-every 0 > /dev/null 2>&1
expect_error_keeps "teacher with another vocabulary" "same vocabulary" "$T/e8" ./train --config "$T/tiny.json" $D --out "$T/e8" --teacher "$T/v300/checkpoint"
sed 's/"query_heads": \[\[1\]\]/"query_heads": [[0]]/; s/"kv_heads": \[\[0\]\]/"kv_heads": [[0]], "x": 0/' "$T/report.json" > "$T/report_bad.json"
sed -i 's/"num_attention_heads": 1, "num_key_value_heads": 1/"num_attention_heads": 2, "num_key_value_heads": 1/; s/"query_heads": \[\[0\]\]/"query_heads": [[0, 5]]/' "$T/report_bad.json"
expect_error_keeps "report with a query head out of range" "query_heads\[0\]" "$T/e9" ./train --lottery B --report "$T/report_bad.json" --source "$S" $D --out "$T/e9"
expect_error_keeps "unknown --optimizer" "not one of: adamw, adamw8, muon" "$T/e10" ./train --config "$T/tiny.json" $D --out "$T/e10" --optimizer sgd
expect_error_keeps "unknown flag" "unknown flag --lr-max" "$T/e10" ./train --config "$T/tiny.json" --out "$T/e10" --lr-max 1
check "--help lists every flag with type and default" sh -c "./train --help | grep -qE -- '--grad-accum +int +' && ./train --help | grep -qE -- '--dbl-clip +flag '"

echo "test_train.sh: $pass passed, $fail failed"
[ $fail -eq 0 ]
