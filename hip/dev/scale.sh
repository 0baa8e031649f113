#!/bin/sh
# hip/dev/scale.sh — the GPU's memory options on the device in one call (run_device.sh `scale`): 8-bit AdamW,
# bf16 gradients, bf16-only weights (GpuSpec; hip/plan.h), and hip/plan.h's memory prediction. Binaries from
# `make gpu` in hip/build (hip/build/profile is ./profile built the same way); data/shards for part 4.
#   1. valid   hip/build/dev_adamw (the optimizers against the CPU, bit for bit where they should be) and
#              dev_masks; check_step's storage cases run with run_device.sh `check`
#   2. memory  ./profile memory --device gpu (hip/plan.h's arithmetic) against the device's peak (bench: memory
#              grown from before gpu_create to the peak of 2 steps), 1 x 4096 tokens: the 1B, the 4B and the
#              7.0B scale-up, each with AdamW and with 8-bit AdamW + bf16 gradients (+ bf16-only weights for the
#              7B), and the 12B with 8-bit AdamW + bf16 gradients (an H200); pruning steps (the masks on top)
#              for the 1B and the 4B; a configuration predicted not to fit the free memory is skipped, not run.
#              hip/dev/gemma3-7b.json is not a published model: the Gemma 3 family between the 4B and the 12B
#              (d 3072 and F 12288, x1.2 the 4B's; 12 heads, 6 kv heads; 44 layers): 7.03B parameters
#   3. speed   the 1B step (bench B=8 T=2048 --gpu-recompute 3, 6 timed steps) with each option, the default
#              first and last (the card's drift)
#   4. loss    ./train --device gpu on the teacher config (200 steps, 8 x 256, lr 2e-3): each option at seed 1,
#              the default at seeds 1-3 (the spread a different seed gives); final validation and the curve
#              every 20 steps
#   5. resume  8-bit AdamW's checkpoint between the devices (check_train.sh's check for AdamW): the teacher
#              config, 40 steps; a GPU run (bf16 gradients, bf16-only weights) stopped at 20 and resumed on the
#              CPU, a CPU run stopped at 20 and resumed on the GPU; each must follow the run it came from within
#              0.02 nats (mean |loss difference| over steps 21-40, check_train.sh's tolerance: bf16 compute);
#              the same for ./prune --optimizer adamw8 (keep 0.5 of a one-step teacher-config source)
# Logs to $OUT/scale.log; the tables to $OUT/scale.txt (printed last). About 7 minutes on an H100 (1: 0.3,
# 2: 2.5, 3: 1.5, 4: 1.5, 5: 1); SCALE="valid memory" (etc.) runs a subset.
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/gs_out}
W=${W:-$(mktemp -d)}
mkdir -p "$OUT"
rm -rf "$W" && mkdir -p "$W"
LOG="$OUT/scale.log" TAB="$OUT/scale.txt"
: > "$LOG"
: > "$TAB"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
B=hip/build/bench
# run SECONDS LOGFILE COMMAND...: with a timeout, output to LOGFILE and the combined log
run() { t=$1 f=$2; shift 2; echo "+ $*" >> "$LOG"; timeout "$t" "$@" > "$f" 2>&1; rc=$?; cat "$f" >> "$LOG"
        [ $rc = 0 ] || echo "FAILED (rc $rc): $*" | tee -a "$LOG"; return $rc; }
free_gib() { nvidia-smi --query-gpu=memory.free --format=csv,noheader,nounits | head -1 | awk '{printf "%.2f", $1 / 1024}'; }
grown() { grep "^summary ${2:-train}" "$1" | sed -E 's/.*grown since start[^0-9]*([0-9.]+) GiB.*/\1/'; }
ms() { grep '^summary train' "$1" | sed -E 's/.*median step ([0-9.]+) ms.*/\1/'; }
toks() { grep '^summary train' "$1" | sed -E 's/.* ([0-9]+) tok\/s.*/\1/'; }
what=${SCALE:-valid memory speed loss resume}
# bench's flag names (the one flag table renamed --warmup and --recompute)
if $B --help 2>&1 | grep -q -- --untimed; then U=--untimed R=--gpu-recompute; else U=--warmup R=--recompute; fi

for part in $what; do
  case $part in
  valid)
    for d in adamw masks; do
      run 120 "$W/dev_$d.log" hip/build/dev_$d --no-time
      echo "dev_$d: $(tail -1 "$W/dev_$d.log")" >> "$TAB"
    done
    grep -E "FAIL" "$W"/dev_*.log >> "$TAB" ;;
  memory)
    echo "memory, 1 x 4096 tokens: ./profile memory --device gpu (hip/plan.h) against the device's peak" >> "$TAB"
    printf "%-5s %-52s %10s %10s %8s\n" shape setting predicted measured "meas/pred" >> "$TAB"
    # shape (bench name | profile's model argument), setting (flags both take)
    for row in "1b|--preset gemma3-1b|--optimizer adamw" "1b|--preset gemma3-1b|--optimizer adamw8 --grads bf16" \
               "4b|--preset gemma3-4b|--optimizer adamw --gpu-recompute 34" \
               "4b|--preset gemma3-4b|--optimizer adamw8 --grads bf16" \
               "7b|--config hip/dev/gemma3-7b.json|--optimizer adamw8 --grads bf16 --gpu-recompute 44" \
               "7b|--config hip/dev/gemma3-7b.json|--optimizer adamw8 --grads bf16 --master none" \
               "7b|--config hip/dev/gemma3-7b.json|--optimizer adamw --gpu-recompute 44" \
               "12b|--preset gemma3-12b|--optimizer adamw8 --grads bf16 --gpu-recompute 48" \
               "1b|--preset gemma3-1b|--optimizer adamw8 --grads bf16 --master none --prune" \
               "4b|--preset gemma3-4b|--optimizer adamw8 --grads bf16 --gpu-recompute 34 --prune"; do
      shape=${row%%|*} rest=${row#*|} prof=${rest%%|*} set=${rest#*|}
      model="--model $shape"; [ "$shape" = 7b ] && model="--config hip/dev/gemma3-7b.json"
      tag=$(echo "$shape $set" | tr -c 'a-z0-9\n' '_')
      run 30 "$W/pred_$tag.log" hip/build/profile memory $prof --device gpu $set --batch 1 --seq 4096 --json "$W/pred_$tag.json"
      pred=$(python3 -c "import json,sys; print('%.2f' % (json.load(open(sys.argv[1]))['gpu_peak'] / 2**30))" "$W/pred_$tag.json" 2>/dev/null)
      free=$(free_gib)
      if [ -z "$pred" ]; then meas="no prediction"
      elif awk "BEGIN{exit !($pred > $free - 1)}"; then meas="skipped: $free GiB free"
      else
        kind=train; case $set in *--prune*) kind=prune ;; esac  # pruning steps (masks on) after the training ones
        run 240 "$W/mem_$tag.log" $B $model --batch 1 --seq 4096 --steps 2 $U 1 --prune $([ $kind = prune ] && echo 1 || echo 0) \
          $(echo "$set" | sed "s/--gpu-recompute/$R/; s/ --prune//")
        meas=$(grown "$W/mem_$tag.log" $kind)
      fi
      ratio=-
      case $meas in [0-9]*) ratio=$(awk -v m="$meas" -v p="$pred" 'BEGIN { printf "%.3f", m / p }') ;; esac
      printf "%-5s %-52s %10s %10s %8s\n" "$shape" "$set" "${pred:-?}" "$meas" "$ratio" >> "$TAB"
    done ;;
  speed)
    echo "speed, 1B B=8 T=2048 --gpu-recompute 3 (bench, median of 6 steps)" >> "$TAB"
    printf "%-46s %9s %9s %12s\n" setting "ms/step" "tok/s" "grown GiB" >> "$TAB"
    for set in "--optimizer adamw" "--optimizer adamw8" "--optimizer adamw --grads bf16" \
               "--optimizer adamw --master none" "--optimizer adamw8 --grads bf16 --master none" "--optimizer adamw"; do
      tag=$(echo "$set" | tr -c 'a-z0-9\n' '_')
      run 150 "$W/speed_$tag.log" $B --model 1b --batch 8 --seq 2048 --steps 6 $U 2 --prune 0 $R 3 $set
      printf "%-46s %9s %9s %12s\n" "$set" "$(ms "$W/speed_$tag.log")" "$(toks "$W/speed_$tag.log")" \
             "$(grown "$W/speed_$tag.log")" >> "$TAB"
    done ;;
  loss)
    [ -d data/shards ] || { echo "loss: data/shards missing (carry make data's shards)" >> "$TAB"; continue; }
    hip/build/train --help 2>&1 | grep -q -- "--grads" ||
      { echo "loss: hip/build/train has no --grads / --master yet (the step interface's GPU options): skipped" >> "$TAB"; continue; }
    echo "loss, teacher config from scratch on the GPU, 200 steps of 8 x 256 (final validation, mean over domains)" >> "$TAB"
    T="--config data/teacher.json --init random --data data/shards --steps 200 --batch 8 --seq 256 --lr 2e-3 --eval-every 100 --eval-batches 4 --device gpu"
    for row in "1|--optimizer adamw" "2|--optimizer adamw" "3|--optimizer adamw" "1|--optimizer adamw --grads bf16" \
               "1|--optimizer adamw --master none" "1|--optimizer adamw8" "1|--optimizer adamw8 --grads bf16 --master none"; do
      seed=${row%%|*} set=${row#*|}
      tag=$(echo "s$seed $set" | tr -c 'a-z0-9\n' '_')
      run 120 "$W/loss_$tag.log" hip/build/train $T --seed "$seed" --out "$W/run_$tag" $set
      val=$(grep -E '^eval step' "$W/loss_$tag.log" | tail -1 | sed -E 's/.*mean ([0-9.]+).*/\1/')
      curve=$(grep -E '^step [0-9]+/' "$W/loss_$tag.log" | awk -F'|' '{split($1, s, "[ /]"); if (s[2] % 20 == 0) {sub(/ loss /, "", $2); printf "%s ", $2}}')
      printf "seed %s %-46s final val %s | loss every 20 steps: %s\n" "$seed" "$set" "${val:-?}" "$curve" >> "$TAB"
    done ;;
  resume)
    [ -d data/shards ] || { echo "resume: data/shards missing (carry make data's shards)" >> "$TAB"; continue; }
    TR=hip/build/train G="--device gpu --grads bf16 --master none"
    T="--config data/teacher.json --init random --data data/shards --steps 40 --batch 8 --seq 256 --lr 2e-3 --eval-every 20 --eval-batches 2 --optimizer adamw8"
    steps() { grep -E '^step [0-9]+/' "$1" | sed -E 's/^step ([0-9]+)\/[0-9]+ \| loss ([0-9.]+).*/\1 \2/'; }
    # across PROG TAG FLAGS...: a GPU run stopped at 20 and resumed on the GPU and (a copy) on the CPU; a CPU run the same
    across() { ap=$1 at=$2; shift 2
      run 120 "$W/${at}_g1.log" $ap "$@" --out "$W/${at}_gpu" $G --stop-at 20 && cp -r "$W/${at}_gpu" "$W/${at}_g2c"
      run 120 "$W/${at}_g2.log" $ap --out "$W/${at}_gpu" --resume $G
      run 240 "$W/${at}_g2c.log" $ap --out "$W/${at}_g2c" --resume --device cpu
      run 240 "$W/${at}_c1.log" $ap "$@" --out "$W/${at}_cpu" --device cpu --stop-at 20 && cp -r "$W/${at}_cpu" "$W/${at}_c2g"
      run 240 "$W/${at}_c2.log" $ap --out "$W/${at}_cpu" --resume --device cpu
      run 120 "$W/${at}_c2g.log" $ap --out "$W/${at}_c2g" --resume $G; }
    across $TR r $T
    # the same for ./prune --optimizer adamw8 (the weights' 8-bit states; the masks' and λ's AdamW), from a source
    # of the teacher config (one CPU step of ./train), keep 0.5
    run 120 "$W/p_src.log" $TR --config data/teacher.json --init random --data data/shards --steps 1 --batch 2 --seq 256 \
      --eval-every 0 --eval-batches 1 --out "$W/p_src" --device cpu
    across hip/build/prune p --model "$W/p_src/checkpoint" --data data/shards --keep 0.5 --steps 40 --batch 8 --seq 256 \
      --eval-every 20 --eval-batches 2 --optimizer adamw8
    echo "resume, 8-bit AdamW checkpoints between the devices (teacher config, 40 steps, stop at 20; GPU: $G)" >> "$TAB"
    for pair in "r_g2c r_g2 GPU->CPU" "r_c2g r_c2 CPU->GPU" "p_g2c p_g2 prune:GPU->CPU" "p_c2g p_c2 prune:CPU->GPU"; do
      set -- $pair
      steps "$W/$1.log" > "$W/$1.steps"; steps "$W/$2.log" > "$W/$2.steps"
      awk -v what="$3" 'NR == FNR { a[$1] = $2; next } ($1 in a) { s += ($2 > a[$1] ? $2 - a[$1] : a[$1] - $2); n++ }
        END { if (n) printf "%s %s resumed: mean |loss - the run it came from| over %d steps %.4f (tol 0.02)\n",
                            (s / n <= 0.02 ? "ok  " : "FAIL"), what, n, s / n; else printf "FAIL %s: no steps\n", what }' \
        "$W/$2.steps" "$W/$1.steps" >> "$TAB"
    done ;;
  esac
done
cat "$TAB"
