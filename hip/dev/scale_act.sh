#!/bin/sh
# hip/dev/scale_act.sh — activations and scale on one GPU (run_device.sh `act`, `profile`, `h100`, `h200`; one part per
# call, each within 10 minutes). Binaries from `make gpu` in hip/build; logs in $OUT/<part>.log, the part's table in
# $OUT/<part>.txt (printed last). Every new path is validated against the existing one before anything is timed.
#   act      whole-layer checkpointing (--gpu-checkpoint): check_step (its checkpoint cases against the same GPU step
#            without: loss, every gradient, mask gradients), then the step's time and memory with 0, some and all
#            layers checkpointed: the 1B at 8 x 2048 (NOTES' default shape) and the 4B at 1 x 8192
#   profile  ./profile stats --device gpu (forward only, bf16, statistics on the device) against --device cpu on small
#            random Gemma 3 and Gemma 4 models (hip/dev/compare_stats.py: tolerances there), then the Gemma 3 27B and
#            Gemma 4 31B shapes (random weights drawn on the device) on this card: time and memory. Needs data/shards.
#   h100     one 80 GB card: the 7.0B Gemma 3 scale-up (d 3072, F 12288, 44 layers, 12 heads, 6 kv heads) and the 4B
#            at 8192 tokens per micro-batch, training and pruning steps (bench: 20 of each), then torch's standard
#            recipe on the same card (eager, with and without gradient checkpointing; torch.compile where it fits)
#   h200     one 141 GB card (kind nvidia-h200): the Gemma 3 12B, training and pruning steps (20 of each), then torch
# The scale rows use hip/build/bench (random weights drawn on the device, the training step and the pruning step of
# train and prune --device gpu) with the memory options bench has (--optimizer adamw8, --grads bf16, --master none:
# those missing from this build are skipped, said in the table). Settings ./profile memory --device gpu predicts
# not to fit are left out (AdamW with fp32 states: 7B 122 GiB, 12B 202 GiB). ROWS overrides the act and profile rows.
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/gs_out}
part=${1:?usage: sh hip/dev/scale_act.sh act|profile|h100|h200}
W=$(mktemp -d)
LOG="$OUT/$part.log" TAB="$OUT/$part.txt"
mkdir -p "$OUT"
: > "$LOG"
: > "$TAB"
trap 'rm -rf "$W"; cat "$TAB"' EXIT
# run SECONDS FILE COMMAND...: with a timeout, output to FILE and the part's log
run() { _t=$1 _f=$2; shift 2; echo "+ $*" >> "$LOG"; timeout "$_t" "$@" > "$_f" 2>&1; _rc=$?; cat "$_f" >> "$LOG"; return $_rc; }
field() { grep "^summary $2" "$1" | sed -E "s/$3/\\1/"; }
has() { hip/build/bench --help 2>&1 | grep -q -- "--$1"; }
# bench_row NAME FLAGS...: train and prune steps (20 each, or STEPS), one table line each
bench_row() {
  name=$1; shift
  for f in optimizer grads master; do
    case " $* " in *" --$f "*) has $f || { printf "%-40s skipped: this bench has no --%s\n" "$name" $f >> "$TAB"; return; } ;; esac
  done
  f="$W/bench_$(echo "$name" | tr -c 'a-z0-9\n' '_').log"
  run ${BENCH_S:-240} "$f" hip/build/bench --steps ${STEPS:-20} --untimed 2 "$@"; rc=$?
  kinds="train prune"
  case " $* " in *" --prune 0 "*) kinds=train ;; esac
  for k in $kinds; do
    l=$(grep "^summary $k" "$f")
    if [ -n "$l" ]; then
      printf "%-40s %-5s %9s %9s %9s\n" "$name" $k "$(field "$f" $k '.*median step ([0-9.]+) ms.*')" \
        "$(field "$f" $k '.* ([0-9]+) tok\/s.*')" "$(field "$f" $k '.*grown since start[^0-9]*([0-9.]+) GiB.*')" >> "$TAB"
    else
      printf "%-40s %-5s no result (rc %s): %s\n" "$name" $k $rc "$(grep -m1 -iE 'error|out of memory' "$f")" >> "$TAB"
      break
    fi
  done
}
bench_head() { printf "%-40s %-5s %9s %9s %9s\n" "ours: shape, B x T, settings" step "ms/step" "tok/s" "grown GiB" >> "$TAB"; }
# torch_row MODEL MODE CKPT B T: torch's standard recipe (fp32 master, fused AdamW, bf16 autocast) in its own process
torch_row() {
  f="$W/torch_$1_$2_$3.log"
  PYTHONUNBUFFERED=1 run ${TORCH_S:-240} "$f" python3 hip/dev/torch_bench.py --model $1 --mode $2 --ckpt $3 --batch $4 \
    --seq $5 --steps ${TSTEPS:-6} --warmup 2; rc=$?
  l=$(grep '^summary' "$f" | tail -1)
  printf "torch %-4s %-8s ckpt %s %sx%s: %s\n" $1 $2 $3 $4 $5 "${l:-no result (rc $rc): $(grep -m1 -iE 'error' "$f")}" >> "$TAB"
}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader >> "$TAB"

case $part in
act)
  OMP_NUM_THREADS=1 run 300 "$W/check.log" hip/build/check_step; rc=$?
  echo "check_step rc=$rc: $(grep -c '^    ok' "$W/check.log") ok, $(grep -c FAIL "$W/check.log") FAIL" >> "$TAB"
  grep -E "FAIL|checkpointing:|checkpointed vs not|with the step without" "$W/check.log" >> "$TAB"
  printf "%-4s %6s %3s %3s %9s %9s %10s\n" model BxT ck rec "ms/step" "tok/s" "grown GiB" >> "$TAB"
  for v in ${ROWS:-1b:8:2048:0:3 1b:8:2048:0:0 1b:8:2048:13:0 1b:8:2048:26:0 4b:1:8192:0:34 4b:1:8192:17:17 4b:1:8192:34:0 4b:2:8192:34:0}; do
    set -- $(echo "$v" | tr : ' '); m=$1 b=$2 t=$3 ck=$4 rec=$5
    f="$W/act_$m-$b-$t-$ck-$rec.log"
    run 180 "$f" hip/build/bench --model $m --batch $b --seq $t --steps 4 --untimed 1 --prune 0 --gpu-checkpoint $ck \
      --gpu-recompute $rec; rc=$?
    if grep -q '^summary train' "$f"; then
      printf "%-4s %6s %3s %3s %9s %9s %10s\n" $m ${b}x$t $ck $rec "$(field "$f" train '.*median step ([0-9.]+) ms.*')" \
        "$(field "$f" train '.* ([0-9]+) tok\/s.*')" "$(field "$f" train '.*grown since start[^0-9]*([0-9.]+) GiB.*')" >> "$TAB"
    else printf "%-4s %6s %3s %3s  no result (rc %s): %s\n" $m ${b}x$t $ck $rec $rc "$(grep -m1 -iE 'error' "$f")" >> "$TAB"; fi
  done ;;
profile)
  [ -d data/shards ] || { echo "profile: data/shards missing (carry make data's shards)" >> "$TAB"; exit 1; }
  # small random models, written once (train on the CPU, one step) so both devices read the same weights
  cat > "$W/g3a.json" <<'EOF'
{"model_type":"gemma3_text","vocab_size":512,"hidden_size":256,"intermediate_size":512,"num_hidden_layers":4,
 "num_attention_heads":4,"num_key_value_heads":1,"head_dim":256,"sliding_window":128,"query_pre_attn_scalar":256,
 "layer_types":["sliding_attention","sliding_attention","full_attention","sliding_attention"],"max_position_embeddings":4096}
EOF
  cat > "$W/g3b.json" <<'EOF'
{"model_type":"gemma3_text","vocab_size":512,"hidden_size":128,"intermediate_size":384,"num_hidden_layers":3,
 "num_attention_heads":4,"num_key_value_heads":2,"head_dim":64,"sliding_window":48,"query_pre_attn_scalar":64,
 "final_logit_softcapping":30.0,"layer_types":["sliding_attention","full_attention","sliding_attention"],
 "max_position_embeddings":4096}
EOF
  python3 - "$W/g4.json" <<'EOF'
import json, sys
c = json.load(open("test/fixtures/g4_kv/config.json"))
c.update(vocab_size=512, hidden_size=128, intermediate_size=256, head_dim=64, sliding_window=64, max_position_embeddings=4096,
         per_layer_config={"1": {"head_dim": 128}, "3": {"head_dim": 128}})
json.dump(c, open(sys.argv[1], "w"))
EOF
  for m in g3a g3b g4; do
    # the CPU side on one thread: OpenMP over the device machine's 16 vCPUs made these tiny steps time out
    run 120 "$W/mk_$m.log" env OMP_NUM_THREADS=1 hip/build/train --config "$W/$m.json" --init random --data data/shards \
      --steps 1 --batch 2 --seq 128 --device cpu --out "$W/run_$m" ||
      { echo "$m: could not write the model (rc $_rc): $(grep -m1 error "$W/mk_$m.log")" >> "$TAB"; continue; }
    for dev in cpu gpu; do
      run 180 "$W/st_${m}_$dev.log" env OMP_NUM_THREADS=1 hip/build/profile stats --model "$W/run_$m/checkpoint" --data data/shards \
        --out "$W/st_${m}_$dev" --calib-batches 2 --batch 4 --seq 256 --no-grad --device $dev ||
        echo "$m --device $dev: $(grep -m1 error "$W/st_${m}_$dev.log")" >> "$TAB"
    done
    python3 hip/dev/compare_stats.py "$W/st_${m}_cpu/stats.json" "$W/st_${m}_gpu/stats.json" "$m" >> "$TAB" 2>&1
  done
  for p in ${ROWS:-gemma3-27b gemma4-31b}; do
    f="$W/big_$p.log"
    run 300 "$f" hip/build/profile stats --device gpu --preset $p --data data/shards --out "$W/big_$p" --calib-batches 1 \
      --batch 4 --seq 1024; rc=$?
    peak=$(grep -m1 '^| device' "$f")
    sec=$(grep '^step ' "$f" | tail -1 | sed -E 's/.*elapsed ([^ ]+).*/\1/')
    printf "profile stats --device gpu --preset %s (random weights, 6 domains x 4 x 1024 tokens): rc %s, elapsed %s\n  %s\n  %s\n" \
      $p $rc "${sec:-?}" "${peak:-no device line}" "$(grep -m1 -E '^summary|error' "$f")" >> "$TAB"
  done ;;
h100)
  bench_head
  C7="--config hip/dev/gemma3-7b.json"
  [ -f hip/dev/gemma3-7b.json ] || C7=""
  if [ -n "$C7" ] && hip/build/bench --help 2>&1 | grep -q -- --config; then
    bench_row "7B 1x4096 adamw8 bf16-grads ckpt44" $C7 --batch 1 --seq 4096 --optimizer adamw8 --grads bf16 --gpu-checkpoint 44
    bench_row "7B 1x4096 adamw8 bf16 no-master ckpt44" $C7 --batch 1 --seq 4096 --optimizer adamw8 --grads bf16 --master none --gpu-checkpoint 44
  else echo "7B: this bench has no --config (or hip/dev/gemma3-7b.json is missing): skipped" >> "$TAB"; fi
  bench_row "4B 1x8192 adamw ckpt34" --model 4b --batch 1 --seq 8192 --gpu-checkpoint 34
  bench_row "4B 1x8192 adamw8 bf16-grads ckpt34" --model 4b --batch 1 --seq 8192 --optimizer adamw8 --grads bf16 --gpu-checkpoint 34
  bench_row "4B 1x4096 adamw rec34 (issue's row)" --model 4b --batch 1 --seq 4096 --gpu-recompute 34 --prune 0
  torch_row 4b eager 1 1 4096
  torch_row 4b compile 1 1 4096
  torch_row 4b eager 1 1 8192
  torch_row 7b eager 1 1 4096 ;;
h200)
  bench_head
  bench_row "12B 1x4096 adamw8 bf16-grads ckpt48" --model 12b --batch 1 --seq 4096 --optimizer adamw8 --grads bf16 --gpu-checkpoint 48
  torch_row 12b eager 1 1 4096  # the deciding rows first: a call cut short still answers
  bench_row "12B 1x4096 adamw8 bf16 no-master ckpt48" --model 12b --batch 1 --seq 4096 --optimizer adamw8 --grads bf16 --master none --gpu-checkpoint 48
  torch_row 7b eager 1 1 4096
  torch_row 7b compile 1 1 4096 ;;
*) echo "scale_act.sh: unknown part $part (act | profile | h100 | h200)" >> "$TAB"; exit 2 ;;
esac
