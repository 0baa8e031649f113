#!/bin/sh
# make evidence — does the Sheared-LLaMA recipe hold at this scale? Held-out per-domain loss, at equal
# continued-pretraining token budgets, for: the teacher; Sheared (learned masks) right after pruning and
# after continued pretraining; the same shape from scratch with the same total tokens (pruning tokens
# counted); one-shot baselines + the same continued budget, with the same seeds; a depth target (6 -> 4 layers)
# for Sheared and bi; lottery tickets A/B/C with the same number of weight updates; dynamic vs static mixture;
# and "drop every full-attention layer" (loss inside vs beyond the sliding window).
# Writes runs/evidence/results.json and results.md. Deterministic for given seeds; resumable (a finished
# run is skipped). Every row ran on the CPU (device column). Sizes: EV_PRUNE_STEPS, EV_CPT_STEPS, SEEDS.
set -e
cd "$(dirname "$0")/.."
R=${EVIDENCE_DIR:-runs/evidence}
SEEDS=${SEEDS:-"1 2 3"}
TEACHER_STEPS=${TEACHER_STEPS:-1200}
PS=${EV_PRUNE_STEPS:-300}   # pruning steps (sheared)
CS=${EV_CPT_STEPS:-300}     # continued-pretraining steps, the same for every pruned model
B=8
T=256
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
START=$(date +%s)
mkdir -p "$R"
say() { _el=$(( $(date +%s) - START )); printf '\n=== evidence [%dm%02ds] %s\n' $((_el / 60)) $((_el % 60)) "$*"; }
# train DIR ARGS...: a ./train run into DIR unless DIR/done exists; resumes a cut-off run
train_run() {
  out=$1; shift
  [ -f "$out/done" ] && return 0
  resume=""; [ -d "$out/checkpoint" ] && resume="--resume"
  ./train --data data/shards --out "$out" --batch $B --seq $T --eval-every 0 --save-every 100 $resume "$@" > "$out.log" 2>&1 \
    || { tail -5 "$out.log"; exit 1; }
  grep -a "^step" "$out.log" | tail -1
  touch "$out/done"
}
# prune DIR ARGS...: a ./prune run into DIR unless its report exists
prune_run() {
  out=$1; shift
  [ -f "$out/prune_report.json" ] && return 0
  resume=""; { [ -d "$out/checkpoint" ] || [ -d "$out/checkpoint.old" ]; } && resume="--resume"
  ./prune --data data/shards --out "$out" --batch $B --seq $T $resume "$@" > "$out.log" 2>&1 || { tail -5 "$out.log"; exit 1; }
  grep -a "pruned:" "$out.log" | tail -1
}

say "corpus"
sh data/prepare.sh > "$R/data.log" 2>&1 || { tail "$R/data.log"; exit 1; }
say "teacher (data/teacher.json, $TEACHER_STEPS steps, seed 1: the demo's teacher)"
train_run "$R/teacher" --config data/teacher.json --init random --steps "$TEACHER_STEPS" --lr 2e-3 --seed 1
TEACH="$R/teacher/checkpoint"

echo '{"num_hidden_layers": 4}' > "$R/depth.json"   # 6 -> 4 layers, the full one kept: the layer masks at work
EVAL="--model teacher=$TEACH"
for s in $SEEDS; do
  say "seed $s: Sheared-LLaMA prune to half the non-embedding parameters ($PS steps), then $CS steps of continued pretraining"
  prune_run "$R/sheared@$s" --model "$TEACH" --method sheared --keep 0.5 --steps "$PS" --lr 1e-3 --eval-every 50 --seed "$s" --log-every 50
  # as published: continued pretraining starts from the pruning run's final domain weights
  train_run "$R/sheared_cpt@$s" --model "$R/sheared@$s" --mix dynamic --ref-model "$TEACH" --weights "$R/sheared@$s/prune_report.json" \
    --steps "$CS" --lr 1e-3 --eval-every 50 --seed "$s"
  say "seed $s: the same continued pretraining with a static (uniform) mixture"
  train_run "$R/sheared_static@$s" --model "$R/sheared@$s" --mix static --steps "$CS" --lr 1e-3 --seed "$s"
  say "seed $s: the target shape from scratch, $((PS + CS)) steps (the pruning tokens counted)"
  train_run "$R/scratch@$s" --config "$R/sheared@1/config.json" --init random --steps $((PS + CS)) --lr 2e-3 --seed "$s"
  EVAL="$EVAL --model sheared_pruned@$s=$R/sheared@$s --model sheared_cpt_dynamic@$s=$R/sheared_cpt@$s/checkpoint"
  EVAL="$EVAL --model sheared_cpt_static@$s=$R/sheared_static@$s/checkpoint --model scratch_same_tokens@$s=$R/scratch@$s/checkpoint"
  for m in magnitude activation wanda bi; do
    say "seed $s: one-shot baseline $m to the same shape (the seed picks its calibration batches), then the same $CS steps"
    prune_run "$R/$m@$s" --model "$TEACH" --method "$m" --target "$R/sheared@1/config.json" --seed "$s"
    train_run "$R/${m}_cpt@$s" --model "$R/$m@$s" --mix dynamic --ref-model "$TEACH" --steps "$CS" --lr 1e-3 --eval-every 50 --seed "$s"
    EVAL="$EVAL --model ${m}_pruned@$s=$R/$m@$s --model ${m}_cpt@$s=$R/${m}_cpt@$s/checkpoint"
  done
  say "seed $s: depth, 6 -> 4 layers: Sheared ($PS steps) and bi (ShortGPT, one-shot), then $CS steps each"
  prune_run "$R/depth_sheared@$s" --model "$TEACH" --method sheared --target "$R/depth.json" --steps "$PS" --lr 1e-3 \
    --eval-every 50 --seed "$s" --log-every 50
  train_run "$R/depth_sheared_cpt@$s" --model "$R/depth_sheared@$s" --mix dynamic --ref-model "$TEACH" \
    --weights "$R/depth_sheared@$s/prune_report.json" --steps "$CS" --lr 1e-3 --eval-every 50 --seed "$s"
  prune_run "$R/depth_bi@$s" --model "$TEACH" --method bi --target "$R/depth.json" --seed "$s"
  train_run "$R/depth_bi_cpt@$s" --model "$R/depth_bi@$s" --mix dynamic --ref-model "$TEACH" --steps "$CS" --lr 1e-3 \
    --eval-every 50 --seed "$s"
  EVAL="$EVAL --model depth_sheared_pruned@$s=$R/depth_sheared@$s --model depth_sheared_cpt@$s=$R/depth_sheared_cpt@$s/checkpoint"
  EVAL="$EVAL --model depth_bi_pruned@$s=$R/depth_bi@$s --model depth_bi_cpt@$s=$R/depth_bi_cpt@$s/checkpoint"
done

# lottery tickets: as many weight updates as A (Sheared's pruning steps, then its continued pretraining)
say "lottery tickets on the Sheared shape (seed 1), $((PS + CS)) steps each: B = the teacher's original weights on the survivors, C = random"
train_run "$R/lottery_B" --lottery B --report "$R/sheared@1/prune_report.json" --source "$TEACH" --mix dynamic \
  --ref-model "$TEACH" --steps $((PS + CS)) --lr 1e-3 --eval-every 50 --seed 1
train_run "$R/lottery_C" --lottery C --report "$R/sheared@1/prune_report.json" --source "$TEACH" --mix dynamic \
  --ref-model "$TEACH" --steps $((PS + CS)) --lr 2e-3 --eval-every 50 --seed 1
EVAL="$EVAL --model lottery_A_pruned_weights@1=$R/sheared_cpt@1/checkpoint"
EVAL="$EVAL --model lottery_B_source_weights=$R/lottery_B/checkpoint --model lottery_C_random=$R/lottery_C/checkpoint"

say "drop every full-attention layer, then the same $CS steps"
prune_run "$R/drop_full" --model "$TEACH" --method drop-full --seed 1
train_run "$R/drop_full_cpt" --model "$R/drop_full" --mix dynamic --ref-model "$TEACH" --steps "$CS" --lr 1e-3 --eval-every 50 --seed 1
EVAL="$EVAL --model drop_full_pruned=$R/drop_full --model drop_full_cpt=$R/drop_full_cpt/checkpoint"

say "loss by position, inside vs beyond the sliding window (128): the teacher with and without its full layer"
# sequences of 512 so that 3/4 of the positions lie beyond the window
[ -f "$R/ablate_teacher/ablate.json" ] || ./profile ablate --model "$TEACH" --out "$R/ablate_teacher" --seq 512 --batch 4 --calib-batches 4 \
  > "$R/ablate_teacher.log" 2>&1 || { tail "$R/ablate_teacher.log"; exit 1; }
[ -f "$R/ablate_drop_full_cpt/ablate.json" ] || ./profile ablate --model "$R/drop_full_cpt/checkpoint" --out "$R/ablate_drop_full_cpt" \
  --seq 512 --batch 4 --calib-batches 4 > "$R/ablate_drop_full_cpt.log" 2>&1 || { tail "$R/ablate_drop_full_cpt.log"; exit 1; }
grep -a -i "window\|position" "$R/ablate_teacher.log" "$R/ablate_drop_full_cpt.log" | grep -v "^.*step" | head -20

say "held-out loss of every model on the same windows (disjoint from those dynamic batch loading read)"
# shellcheck disable=SC2086
./profile eval $EVAL --unigram --data data/shards --batch $B --seq $T --eval-batches 8 --out "$R/results.json" --table "$R/results.md"
echo "device: every row ran on the CPU ($(nproc) threads, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
say "done: $R/results.json, $R/results.md"
