#!/bin/sh
# test/evidence_gpu.sh — `make evidence-gpu`: does the Sheared-LLaMA recipe hold at 100M parameters? The
# comparison of `make evidence` (test/evidence.sh) on one GPU, on the large corpus (data/prepare_large.sh):
# a Gemma-3-shaped teacher (the 270M's body at a byte vocabulary: 18 layers, 3 full, d 640, 100.3M
# non-embedding parameters, window 256 of 1024-token sequences) trained from scratch on 201.5M tokens, then
# every row below, each with its exact token budget, held-out on the test split (profile eval --split test).
#
#   SIZE=full sh test/evidence_gpu.sh        on the GPU machine (the packed hip/build binaries, --device gpu)
#   SIZE=tiny sh test/evidence_gpu.sh        the same pipeline on the CPU at toy size over the corpus slice:
#                                            proves it end to end where nobody can debug the GPU run
#   SIZE=smoke sh test/evidence_gpu.sh       the full-size shapes (teacher, target, layer drops) and corpus on
#                                            the CPU, a few steps of 64 tokens each (`make data-large` first)
#   sh test/evidence_gpu.sh pack             on the CPU machine: .carry/evidence-gpu/ with the corpus (xz,
#                                            made once by data/prepare_large.sh --pack) and the GPU binaries
#                                            (built here, tar.xz): the one folder the GPU machine needs
#                                            besides the working tree
#   sh test/evidence_gpu.sh unpack           what a GPU call does first, alone: the binaries into
#                                            runs/evidence-gpu/bin, the corpus into data/shards-large (runs
#                                            on the CPU machine too: the rehearsal of the device side)
#
# Calls. A device call runs 10 minutes at most: DEADLINE (seconds, default 550) ends this call; a run cut
# off there resumes from its last checkpoint in the next call (runs/ survives on a warm machine; the teacher
# alone is 1.2 GB, so nothing carried back could replace it). A fresh machine keeps nothing: then the call
# starts again from the pack. Finished rows are skipped. Three calls hold everything at the speeds NOTES.md
# §9b expects; the rows run in this order, the first ones deciding "learned masks vs the best one-shot +
# continued pretraining" (ROWS picks a subset):
#   teacher sheared_cpt wanda_cpt scratch activation_cpt magnitude_cpt sheared_static lottery drop_full ablate
# with seed 1 of sheared_cpt, wanda_cpt and scratch first, then their seed 2. SEEDS (default "1 2") applies
# to those and to activation_cpt and sheared_static; the other rows use seed 1. Every call ends with `profile
# eval` of every finished model (cached per model) and copies the results to $OUT: results.json, results.md,
# results.csv, status.txt, three PNGs, logs.tar.xz (.gz where xz is missing); the table is printed last.
set -e
cd "$(dirname "$0")/.."
START=$(date +%s)
SIZE=${SIZE:-full}
case "$1" in pack|unpack) ACTION=$1 ;; "") ACTION=run ;; *) echo "usage: [SIZE=full|tiny] sh test/evidence_gpu.sh [pack|unpack]" >&2; exit 2 ;; esac
PACK=${PACK:-.carry/evidence-gpu}
DEADLINE=${DEADLINE:-550}
SEEDS=${SEEDS:-"1 2"}
ROWS=${ROWS:-"teacher sheared_cpt wanda_cpt scratch activation_cpt magnitude_cpt sheared_static lottery drop_full ablate"}
GPU_BINS="train prune profile mkshards"
say() { _el=$(( $(date +%s) - START )); printf '\n=== evidence-gpu [%dm%02ds] %s\n' $((_el / 60)) $((_el % 60)) "$*"; }
die() { echo "evidence-gpu: $*" >&2; exit 1; }

# --- pack: what the GPU machine gets (it reaches no package registry) ------------------------------------------
if [ $ACTION = pack ]; then
  # shellcheck disable=SC2046
  make --no-print-directory -s $(for b in $GPU_BINS; do echo hip/build/$b; done) || die "the GPU build failed (make gpu needs nvcc)"
  [ -d hip/build/lib ] || die "hip/build/lib is missing; run \`make gpu\`"
  # the corpus once (xz -9 of 175 MB takes ~25 min here): a pack that has every domain and its manifest is kept
  complete=1
  for d in $(sed -n 's/^[0-9a-f]*  \(.*\)\.txt$/\1/p' "$PACK/manifest.txt" 2>/dev/null); do [ -f "$PACK/$d.txt.xz" ] || complete=0; done
  [ "$(grep -c '\.txt$' "$PACK/manifest.txt" 2>/dev/null)" = 9 ] || complete=0
  if [ $complete = 1 ]; then echo "[evidence-gpu] corpus pack $PACK: complete (9 domains and manifest.txt), kept"
  else sh data/prepare_large.sh --pack "$PACK"; fi
  # shellcheck disable=SC2046
  tar -cf - $(for b in $GPU_BINS; do echo hip/build/$b; done) hip/build/lib | xz -9 > "$PACK/gpu-bin.tar.xz.tmp"
  mv "$PACK/gpu-bin.tar.xz.tmp" "$PACK/gpu-bin.tar.xz"
  echo "[evidence-gpu] $PACK: $(du -cb "$PACK"/* | tail -1 | cut -f1) bytes in all:"
  ls -l "$PACK"
  exit 0
fi

# --- sizes: every budget in one place -------------------------------------------------------------------------
# B x T tokens per step everywhere. P: Sheared's pruning steps (the weights train too); C: continued
# pretraining steps after it. Every other pruned model gets P + C continued steps (the same weight updates),
# the shape from scratch P + C steps (the same tokens).
if [ "$SIZE" = tiny ]; then
  R=${EVIDENCE_DIR:-runs/evidence-gpu-tiny}
  DATA=${DATA:-data/shards-slice}
  B=4 T=128 TEACHER_STEPS=60 P=20 C=20 EVAL_EVERY=10 EVAL_BATCHES=2 TEST_BATCHES=2 CALIB=2 SAVE=10 SAVE_TEACHER=10
  BIN=. DEVICE=cpu
  LR_TEACHER=3e-3 LR_CPT=1e-3 LR_SCRATCH=3e-3
  L=6 TEACHER_CFG='"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2, "num_key_value_heads": 1,
    "head_dim": 32, "query_pre_attn_scalar": 32, "sliding_window": 32'
  TARGET_CFG='"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 4, "num_attention_heads": 1'
  THREADS_GPU=1 THREADS_CPU=1  # a shared 2-core machine: OpenMP threads that wait on each other cost most
else
  R=${EVIDENCE_DIR:-runs/evidence-gpu}
  DATA=${DATA:-data/shards-large}
  B=16 T=1024 TEACHER_STEPS=12300 P=600 C=1200 EVAL_EVERY=100 EVAL_BATCHES=2 TEST_BATCHES=8 CALIB=8 SAVE=500
  SAVE_TEACHER=1000  # 1.2 GB a checkpoint (~1 s); a call that cuts the teacher loses ~25 s of steps on average
  BIN=$R/bin/hip/build DEVICE=gpu  # the packed binaries, never a hip/build left by other work
  LR_TEACHER=6e-4 LR_CPT=3e-4 LR_SCRATCH=1e-3
  L=18 TEACHER_CFG='"hidden_size": 640, "intermediate_size": 2048, "num_attention_heads": 4, "num_key_value_heads": 1,
    "head_dim": 256, "query_pre_attn_scalar": 256, "sliding_window": 256'
  TARGET_CFG='"hidden_size": 512, "intermediate_size": 1536, "num_hidden_layers": 12, "num_attention_heads": 2'
  THREADS_GPU=4 THREADS_CPU=12  # the GPU runs' host side; the one-shot scoring and ablation run beside them
  if [ "$SIZE" = smoke ]; then  # the full shapes and corpus at toy budgets on the CPU: every shape the GPU run meets
    R=${EVIDENCE_DIR:-runs/evidence-gpu-smoke}
    B=1 T=64 TEACHER_STEPS=4 P=2 C=2 EVAL_EVERY=2 EVAL_BATCHES=1 TEST_BATCHES=1 CALIB=1 SAVE=2 SAVE_TEACHER=2
    BIN=. DEVICE=cpu THREADS_GPU=1 THREADS_CPU=1 EVAL_RESERVE=${EVAL_RESERVE:-0}
  fi
fi
OUT=${OUT:-$R/out}
mkdir -p "$R" "$OUT"
OUT=$(cd "$OUT" && pwd)
TEACH="$R/teacher/checkpoint"
echo "--- call of $(date -u)" >> "$R/status.txt"
note() { echo "$*" | tee -a "$R/status.txt"; }

# --- the GPU machine: libraries, binaries and corpus from the pack ----------------------------------------------
if [ $DEVICE = gpu ] || [ $ACTION = unpack ]; then
  for d in /usr/local/cuda/lib64 /usr/local/cuda/lib $(python3 -c 'import nvidia, os; print(os.path.dirname(nvidia.__file__) + "/cu13/lib")' 2>/dev/null); do
    [ -d "$d" ] && LD_LIBRARY_PATH="$d:$LD_LIBRARY_PATH"
  done
  export LD_LIBRARY_PATH
  [ -f "$PACK/gpu-bin.tar.xz" ] || die "no $PACK/gpu-bin.tar.xz: carry $PACK (made by \`sh test/evidence_gpu.sh pack\`)"
  stamp=$(cksum < "$PACK/gpu-bin.tar.xz")
  if [ "$(cat "$R/bin/stamp" 2>/dev/null)" != "$stamp" ]; then  # this pack's binaries, extracted once
    rm -rf "$R/bin" && mkdir -p "$R/bin"
    if command -v xz >/dev/null; then xz -dc "$PACK/gpu-bin.tar.xz" | tar -xf - -C "$R/bin"
    else python3 -c 'import tarfile, sys; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$PACK/gpu-bin.tar.xz" "$R/bin"; fi
    echo "$stamp" > "$R/bin/stamp"
  fi
  for b in $GPU_BINS; do [ -x "$R/bin/hip/build/$b" ] || die "$PACK/gpu-bin.tar.xz holds no hip/build/$b; make the pack again"; done
  command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | sed 's/^/[evidence-gpu] device: /'
  if [ ! -f "$DATA/domains.json" ]; then
    say "corpus: unpacking $PACK and making the shards"
    MKSHARDS="$R/bin/hip/build/mkshards" TEXT=${TEXT:-data/text-large} SHARDS="$DATA" sh data/prepare_large.sh --from "$PACK" \
      > "$R/data.log" 2>&1 || { tail "$R/data.log"; exit 1; }
  fi
  if [ $ACTION = unpack ]; then
    say "unpacked: binaries in $R/bin/hip/build, shards in $DATA ($(cat "$DATA"/*/info.json | grep -c train_tokens) domains)"
    exit 0
  fi
elif [ ! -f "$DATA/domains.json" ]; then
  say "corpus slice: the first 40 documents of each domain (data/prepare_large.sh SLICE=40)"
  make --no-print-directory -s data/mkshards > /dev/null
  SLICE=40 TEXT=${TEXT:-data/text-slice} SHARDS="$DATA" sh data/prepare_large.sh > "$R/data.log" 2>&1 || { tail "$R/data.log"; exit 1; }
fi

# --- configs: the teacher (Gemma 3's 5:1 pattern: every 6th layer full) and the target shape every pruning
# method cuts to (a missing key keeps the teacher's value)
types=$(awk -v L=$L 'BEGIN { for (l = 0; l < L; l++) printf "%s\"%s_attention\"", l ? ", " : "", l % 6 == 5 ? "full" : "sliding" }')
cat > "$R/teacher.json" <<EOF
{"model_type": "gemma3_text", "vocab_size": 261, "num_hidden_layers": $L, $TEACHER_CFG,
 "layer_types": [$types],
 "max_position_embeddings": 4096, "final_logit_softcapping": null, "tie_word_embeddings": true,
 "rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
                     "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}}
EOF
echo "{$TARGET_CFG}" > "$R/target.json"
# the teacher's mixture: each domain in proportion to its train tokens (every token seen about equally often);
# also the static rows' mixture and where dynamic batch loading starts
awk 'FNR == 1 { d = FILENAME; sub(/\/info.json$/, "", d); sub(/.*\//, "", d) }
     /"train_tokens"/ { gsub(/[^0-9]/, ""); n[d] = $0; s += $0 }
     END { printf "{"; k = 0; for (d in n) printf "%s\"%s\": %.6f", k++ ? ", " : "", d, n[d] / s; print "}" }' \
  "$DATA"/*/info.json > "$R/weights.json"
TRAIN_TOKENS=$(awk '/"train_tokens"/ { gsub(/[^0-9]/, ""); s += $0 } END { print s }' "$DATA"/*/info.json)

# --- running with a deadline ------------------------------------------------------------------------------------
left() { echo $(( DEADLINE - ($(date +%s) - START) )); }
# seconds kept for the results at the end: profile eval of the models finished since the last call (~5 s each
# on the GPU); while the teacher trains there is at most the teacher to evaluate
EVAL_RESERVE=${EVAL_RESERVE:-$([ "$SIZE" = tiny ] && echo 0 || echo 60)}
reserve() { if [ -f "$R/teacher/done" ]; then echo "$EVAL_RESERVE"; else echo $(( EVAL_RESERVE / 4 )); fi; }
MIN_RUN=${MIN_RUN:-20}  # a run is not started with less time than this left
# resumable DIR: a run cut off in an earlier call left a checkpoint (OUT/checkpoint[.old]; prune's older OUT/state)
resumable() { [ -d "$1/checkpoint" ] || [ -d "$1/checkpoint.old" ] || [ -d "$1/state" ]; }
BG=""
if [ -f "$R/running.pid" ]; then  # a run of an earlier call that was killed from outside
  p=$(cat "$R/running.pid")
  if grep -q timeout "/proc/$p/cmdline" 2>/dev/null; then kill "$p" 2>/dev/null || true; sleep 2; note "stopped run $p left by a killed call"; fi
  rm -f "$R/running.pid"
fi
trap '[ -n "$BG" ] && kill $BG 2>/dev/null; true' EXIT  # the background job restarts in the next call
stop() {  # the deadline came: evaluate what is finished, say how to go on, exit 0
  note "deadline: stopped after $(( $(date +%s) - START ))s; $1 continues in the next call (run the same command)"
  if [ -n "$BG" ]; then kill $BG 2>/dev/null || true; fi  # set -e: a finished job's failed kill must not end us
  BG=""
  results
  exit 0
}
# run NAME DIR CMD...: one GPU (or CPU) run into DIR unless DIR/done exists; cut off at the deadline
run() {
  name=$1 dir=$2; shift 2
  [ -f "$dir/done" ] && return 0
  t=$(( $(left) - $(reserve) ))
  [ $t -gt $MIN_RUN ] || stop "$name"
  mkdir -p "$dir"
  t0=$(date +%s)
  rc=0
  # timeout runs the program in a process group of its own: its pid is kept so that the next call can stop a run
  # that outlived a call killed from outside (it would hold the GPU)
  OMP_NUM_THREADS=$THREADS_GPU timeout $t "$@" >> "$dir.log" 2>&1 &
  echo $! > "$R/running.pid"
  wait $! || rc=$?
  rm -f "$R/running.pid"
  [ $rc = 124 ] && stop "$name"
  # cut off after its last checkpoint: ./train will not resume at the final step, and that checkpoint is the model
  if [ $rc != 0 ] && tail -1 "$dir.log" | grep -q "is at step .* nothing to do"; then rc=0; fi
  if [ $rc != 0 ] && tail -1 "$dir.log" | grep -q "without --resume"; then  # killed while saving: start it again
    note "$name: its checkpoint is incomplete (cut off while saving); starting the run again"
    rm -rf "$dir"
    for a in "$@"; do shift; [ "$a" = --resume ] || set -- "$@" "$a"; done
    run "$name" "$dir" "$@"
    return 0
  fi
  [ $rc = 0 ] || { tail -5 "$dir.log"; die "$name failed (rc $rc); log $dir.log"; }
  grep -a "^step\|pruned:\|done:" "$dir.log" | tail -1
  echo "$name $(( $(date +%s) - t0 ))" >> "$R/seconds.txt"
  touch "$dir/done"
}
# train_run NAME DIR ARGS...: ./train, resumed from DIR/checkpoint when a call cut it off
train_run() {
  name=$1 dir=$2; shift 2
  resume=""; resumable "$dir" && resume="--resume"
  run "$name" "$dir" $BIN/train --data "$DATA" --out "$dir" --batch $B --seq $T --device $DEVICE --save-every $SAVE \
    --eval-batches $EVAL_BATCHES $resume "$@"
}
# cpt NAME DIR STEPS WEIGHTS ARGS...: continued pretraining of a pruned model, dynamic batch loading against the
# teacher starting from WEIGHTS, with CPT (below)
cpt() {
  name=$1 dir=$2 steps=$3 w=$4; shift 4
  train_run "$name" "$dir" --steps "$steps" $CPT --mix dynamic --weights "$w" --ref-model "$TEACH" --eval-every $EVAL_EVERY "$@"
}
# child CMD...: in the background job, each command runs as a child that a signal to the job stops too
child() { "$@" & cpid=$!; wait $cpid; }
# oneshot METHOD SEED: one-shot pruning to the target on the CPU (its scoring has no GPU path), no evaluation
oneshot() {
  d="$R/$1@$2"
  [ -f "$d/done" ] && return 0
  rm -rf "$d"
  child $BIN/prune --model "$TEACH" --data "$DATA" --out "$d" --method "$1" --target "$R/target.json" --batch $B \
    --seq $T --calib-batches $CALIB --eval-batches 0 --seed "$2" > "$d.log" 2>&1 && touch "$d/done"
}
# wait_for DIR: a one-shot model from the background job
wait_for() {
  while [ ! -f "$1/done" ]; do
    [ -n "$BG" ] && kill -0 $BG 2>/dev/null || { tail -3 "$1.log" 2>/dev/null; die "the one-shot pruning of $1 failed"; }
    [ $(( $(left) - $(reserve) )) -gt $MIN_RUN ] || stop "$(basename "$1")"
    sleep 2
  done
}
has() { case " $ROWS " in *" $1 "*) return 0 ;; esac; return 1; }
SEED1=$(echo $SEEDS | cut -d' ' -f1)

# --- results: profile eval of every finished model on the test split, copied to $OUT -----------------------------
results() {
  say "held-out loss on the test split of every finished model"
  ev=""
  add() {  # add NAME RUN [MODEL]: a finished run's model (RUN/checkpoint for ./train, RUN itself for ./prune)
    [ -f "$2/done" ] || return 0
    ev="$ev --model $1=${3:-$2/checkpoint}"
  }
  add teacher "$R/teacher"
  for s in $SEEDS; do
    add "sheared_pruned@$s" "$R/sheared@$s" "$R/sheared@$s"
    add "sheared_cpt_dynamic@$s" "$R/sheared_cpt@$s"
    add "sheared_cpt_static@$s" "$R/sheared_static@$s"
    for m in wanda activation magnitude; do
      add "${m}_pruned@$s" "$R/$m@$s" "$R/$m@$s"
      add "${m}_cpt@$s" "$R/${m}_cpt@$s"
    done
    add "scratch_same_tokens@$s" "$R/scratch@$s"
  done
  add lottery_B_source_weights "$R/lottery_B"
  add drop_full_pruned "$R/drop_full" "$R/drop_full"
  add drop_full_cpt "$R/drop_full_cpt"
  if [ -n "$ev" ]; then
    # shellcheck disable=SC2086
    # never past the call's 600 s: a model not evaluated now is evaluated (and cached) in the next call
    OMP_NUM_THREADS=$THREADS_CPU timeout $(( $(left) + 30 > 10 ? $(left) + 30 : 10 )) $BIN/profile eval $ev --unigram --data "$DATA" --split test --batch $B --seq $T \
      --eval-batches $TEST_BATCHES --device $DEVICE --cache "$R/eval" --out "$R/results.json" --table "$R/results.md" --csv "$R/results.csv" \
      > "$R/eval.log" 2>&1 || { tail -5 "$R/eval.log"; echo "evidence-gpu: profile eval failed" >&2; }
  fi
  {
    echo "evidence-gpu $SIZE, $(date -u), $(hostname)"
    if [ $DEVICE = gpu ]; then nvidia-smi --query-gpu=name --format=csv,noheader || true; fi
    echo "tokens per step $((B * T)); teacher $TEACHER_STEPS steps = $((TEACHER_STEPS * B * T)) tokens ($(awk -v a=$((TEACHER_STEPS * B * T)) -v b="$TRAIN_TOKENS" 'BEGIN { printf "%.2f", a / b }') x the train split)"
    echo "sheared: $P pruning + $C continued steps; one-shot, lottery B, scratch (= lottery C): $((P + C)) steps; drop-full: $C continued steps"
    echo "seconds per run (this machine):"; cat "$R/seconds.txt" 2>/dev/null
    for a in teacher drop_full_cpt; do  # loss by position on long documents, inside vs beyond the window
      [ -f "$R/ablate_$a.log" ] && grep -a "^positions\|^no full layers" "$R/ablate_$a.log" | sed "s/^/ablate $a: /"
    done
    for f in "$R"/*.log; do  # the last step line of every run: loss and throughput
      l=$(grep -a "^step" "$f" 2>/dev/null | tail -1); [ -n "$l" ] && echo "$(basename "$f" .log): $l"
    done
    cat "$R/status.txt"
  } > "$OUT/status.txt"
  for f in results.json results.md results.csv; do [ -f "$R/$f" ] && cp "$R/$f" "$OUT/"; done
  [ -f "$R/teacher/loss.png" ] && cp "$R/teacher/loss.png" "$OUT/teacher_loss.png"
  [ -f "$R/sheared_cpt@$SEED1/weights.png" ] && cp "$R/sheared_cpt@$SEED1/weights.png" "$OUT/sheared_cpt_weights.png"
  [ -f "$R/ablate_teacher/ablate_positions.png" ] && cp "$R/ablate_teacher/ablate_positions.png" "$OUT/positions_teacher.png"
  (cd "$R" && find . -maxdepth 3 \( -name '*.log' -o -name '*.csv' -o -name '*.png' -o -name '*.json' -o -name '*.md' \
     -o -name '*.txt' \) -not -path './out/*' -size -8M | sort | tar -cf - -T - > "$OUT/logs.tar")
  if command -v xz > /dev/null; then xz -9f "$OUT/logs.tar"; else gzip -9f "$OUT/logs.tar"; fi  # xz may be missing there
  say "results in $OUT: $(ls "$OUT" | tr '\n' ' ')"
  if [ -f "$R/results.md" ]; then cat "$R/results.md"; fi
}

# Continued pretraining as published where this train has it (--recipe sheared: lr 1e-4, 3% warmup, no weight
# decay, cosine to 10%), and Sheared's own run starting from its pruning run's final domain weights (train
# --weights PRUNE_REPORT); a train without them gets lr LR_CPT and the domains' sizes
CPT="--lr $LR_CPT" SHEARED_W=""
if $BIN/train --help 2>&1 | grep -q -- --recipe; then CPT="--recipe sheared" SHEARED_W=1; fi  # one change brought both
note "evidence-gpu $SIZE: rows [$ROWS], seeds [$SEEDS], deadline ${DEADLINE}s, data $DATA ($TRAIN_TOKENS train tokens), CPT $CPT${SHEARED_W:+, Sheared's from its pruning's domain weights}"

# --- 1. the teacher -------------------------------------------------------------------------------------------
say "teacher: $TEACHER_STEPS steps x $((B * T)) tokens from scratch, mixture in proportion to the domains' sizes"
SAVE0=$SAVE SAVE=$SAVE_TEACHER
train_run teacher "$R/teacher" --config "$R/teacher.json" --init random --steps $TEACHER_STEPS --lr $LR_TEACHER \
  --warmup $((TEACHER_STEPS / 50)) --mix static --weights "$R/weights.json" --eval-every $((TEACHER_STEPS / 10 + (TEACHER_STEPS < 10))) \
  --seed 1
SAVE=$SAVE0

# On the CPU, in the background beside the GPU runs: the one-shot baselines' scoring (no GPU path), then the
# teacher's loss by position on long documents with and without its full-attention layers
( trap 'kill $cpid 2>/dev/null; exit 1' TERM
  export OMP_NUM_THREADS=$THREADS_CPU
  for m in wanda activation magnitude; do  # in the order the GPU side needs them
    has ${m}_cpt || continue
    for s in $SEEDS; do
      [ $m = magnitude ] && [ "$s" != "$SEED1" ] && continue
      oneshot $m "$s" || exit 1
    done
  done
  if has ablate && [ ! -f "$R/ablate_teacher/ablate.json" ]; then
    child $BIN/profile ablate --model "$TEACH" --data "$DATA" --out "$R/ablate_teacher" --split test --long-docs --no-layers \
      --seq $T --batch 4 --calib-batches 2 > "$R/ablate_teacher.log" 2>&1
  fi ) &
BG=$!

# --- 2. the rows, deciding ones first: per seed Sheared + CPT, Wanda + CPT, the shape from scratch --------------
for s in $SEEDS; do
  if has sheared_cpt; then
    say "seed $s: Sheared-LLaMA pruning to the target ($P steps, layers dropped), then $C continued steps"
    resume=""; resumable "$R/sheared@$s" && resume="--resume"
    run "sheared@$s" "$R/sheared@$s" $BIN/prune --model "$TEACH" --data "$DATA" --out "$R/sheared@$s" --method sheared \
      --target "$R/target.json" --steps $P --batch $B --seq $T --lr 1e-4 --eval-every $EVAL_EVERY --eval-batches $EVAL_BATCHES \
      --save-every $SAVE --log-every 10 --device $DEVICE --seed "$s" $resume
    w="$R/weights.json"; [ -n "$SHEARED_W" ] && w="$R/sheared@$s/prune_report.json"
    cpt "sheared_cpt@$s" "$R/sheared_cpt@$s" $C "$w" --model "$R/sheared@$s" --seed "$s"
  fi
  if has wanda_cpt; then
    say "seed $s: wanda one-shot to the target (CPU), then $((P + C)) continued steps"
    wait_for "$R/wanda@$s"
    cpt "wanda_cpt@$s" "$R/wanda_cpt@$s" $((P + C)) "$R/weights.json" --model "$R/wanda@$s" --seed "$s"
  fi
  if has scratch && [ -f "$R/sheared@$SEED1/done" ]; then  # the shape as Sheared's pruned config.json has it
    say "seed $s: the target shape from scratch, $((P + C)) steps (Sheared's pruning tokens counted)"
    train_run "scratch@$s" "$R/scratch@$s" --config "$R/sheared@$SEED1/config.json" --init random --steps $((P + C)) \
      --lr $LR_SCRATCH --mix dynamic --weights "$R/weights.json" --ref-model "$TEACH" --eval-every $EVAL_EVERY --seed "$s"
  fi
done
note "deciding rows done (Sheared + CPT, Wanda + CPT, scratch; seeds $SEEDS)"
for m in activation magnitude; do
  has ${m}_cpt || continue
  for s in $SEEDS; do
    [ $m = magnitude ] && [ "$s" != "$SEED1" ] && continue
    say "seed $s: $m one-shot to the target (CPU), then $((P + C)) continued steps"
    wait_for "$R/$m@$s"
    cpt "${m}_cpt@$s" "$R/${m}_cpt@$s" $((P + C)) "$R/weights.json" --model "$R/$m@$s" --seed "$s"
  done
done
for s in $SEEDS; do
  if has sheared_static && [ -f "$R/sheared@$s/done" ]; then
    say "seed $s: Sheared's pruned model, $C continued steps with the static mixture"
    train_run "sheared_static@$s" "$R/sheared_static@$s" --model "$R/sheared@$s" --steps $C $CPT --mix static \
      --weights "$R/weights.json" --eval-every $EVAL_EVERY --seed "$s"
  fi
done
if has lottery && [ -f "$R/sheared@$SEED1/done" ]; then
  # A is sheared_cpt; C (a random init of the pruned shape) is the scratch row: the same config, lr, mixture and
  # seed make it the same run (the CPU rehearsal gave both the same losses), so it runs once
  say "lottery ticket B on Sheared's survivors: the teacher's own weights there, $((P + C)) steps"
  cpt lottery_B "$R/lottery_B" $((P + C)) "$R/weights.json" --lottery B --report "$R/sheared@$SEED1/prune_report.json" --source "$TEACH" --seed "$SEED1"
fi
if has drop_full; then
  say "drop every full-attention layer (one-shot), then $C continued steps"
  [ -f "$R/drop_full/done" ] || { rm -rf "$R/drop_full"; OMP_NUM_THREADS=$THREADS_CPU $BIN/prune --model "$TEACH" \
    --data "$DATA" --out "$R/drop_full" --method drop-full --eval-batches 0 --seed 1 > "$R/drop_full.log" 2>&1 && touch "$R/drop_full/done"; }
  cpt drop_full_cpt "$R/drop_full_cpt" $C "$R/weights.json" --model "$R/drop_full" --seed 1
fi
if has ablate && [ -f "$R/drop_full_cpt/done" ] && [ ! -f "$R/ablate_drop_full_cpt/ablate.json" ]; then
  say "loss by position on long documents: the sliding-only model after its continued pretraining (CPU)"
  OMP_NUM_THREADS=$THREADS_CPU timeout $(( $(left) > 30 ? $(left) - 20 : 10 )) $BIN/profile ablate \
    --model "$R/drop_full_cpt/checkpoint" --data "$DATA" --out "$R/ablate_drop_full_cpt" --split test --long-docs --no-layers \
    --seq $T --batch 4 --calib-batches 2 > "$R/ablate_drop_full_cpt.log" 2>&1 || note "ablate of drop_full_cpt did not finish"
fi
while [ -n "$BG" ] && kill -0 $BG 2>/dev/null; do  # the CPU side's last work
  [ $(( $(left) - $(reserve) )) -gt 5 ] || stop "the CPU side (one-shot scoring, ablation)"
  sleep 2
done
BG=""
note "all rows done"
results
