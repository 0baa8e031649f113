#!/bin/sh
# make demo — the whole Sheared-LLaMA pipeline on the embedded default, on CPU:
#   corpus -> teacher trained from scratch -> profile -> learned-mask pruning to ~half the
#   non-embedding parameters -> continued pretraining with dynamic batch loading -> GGUF ->
#   text from llama.cpp and from our own code -> runs/demo/summary.json.
# Resumable and deterministic: every stage is skipped when its output is complete, and a stage cut off
# half-way continues from its last checkpoint. Sizes: TEACHER_STEPS, PRUNE_STEPS, CPT_STEPS, SEED.
set -e
cd "$(dirname "$0")/.."
R=${DEMO_DIR:-runs/demo}
SEED=${SEED:-1}
TEACHER_STEPS=${TEACHER_STEPS:-1200}
PRUNE_STEPS=${PRUNE_STEPS:-300}
CPT_STEPS=${CPT_STEPS:-300}
B=8
T=256
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
START=$(date +%s)
mkdir -p "$R"
elapsed() { s=$(( $(date +%s) - START )); printf '%dm%02ds' $((s / 60)) $((s % 60)); }
stage() { echo; echo "=== demo [$(elapsed)] $*"; }
timing() { echo "\"$1\": $(( $(date +%s) - $2 ))" >> "$R/timings.txt"; }
: > "$R/timings.txt"

stage "1/7 corpus: per-domain token shards (data/shards)"
t=$(date +%s); sh data/prepare.sh; timing data $t

stage "2/7 teacher: a Gemma-3-shaped model (data/teacher.json: byte vocabulary, 5:1 sliding/full, GQA) from scratch"
t=$(date +%s)
if [ ! -f "$R/teacher/done" ]; then
  resume=""; [ -d "$R/teacher/checkpoint" ] && resume="--resume"
  ./train --config data/teacher.json --init random --data data/shards --out "$R/teacher" $resume \
    --steps "$TEACHER_STEPS" --batch $B --seq $T --lr 2e-3 --eval-every 300 --save-every 300 --seed "$SEED"
  touch "$R/teacher/done"
fi
timing teacher $t

stage "3/7 profile: where the teacher's capacity sits (PNG heatmaps in $R/profile)"
t=$(date +%s)
[ -f "$R/profile/stats.json" ] || ./profile stats --model "$R/teacher/checkpoint" --data data/shards --out "$R/profile" --calib-batches 2
timing profile $t

stage "4/7 prune: Sheared-LLaMA learned masks to ~half the non-embedding parameters"
t=$(date +%s)
if [ ! -f "$R/pruned/prune_report.json" ]; then
  resume=""; { [ -d "$R/pruned/checkpoint" ] || [ -d "$R/pruned/checkpoint.old" ]; } && resume="--resume"
  ./prune --model "$R/teacher/checkpoint" --data data/shards --out "$R/pruned" --method sheared --keep 0.5 \
    --steps "$PRUNE_STEPS" --batch $B --seq $T --lr 1e-3 --eval-every 50 --seed "$SEED" --log-every 10 $resume
fi
timing prune $t

stage "5/7 continued pretraining of the pruned model with dynamic batch loading (references: teacher's losses)"
t=$(date +%s)
if [ ! -f "$R/cpt/done" ]; then
  resume=""; [ -d "$R/cpt/checkpoint" ] && resume="--resume"
  ./train --model "$R/pruned" --data data/shards --out "$R/cpt" --mix dynamic --ref-model "$R/teacher/checkpoint" $resume \
    --steps "$CPT_STEPS" --batch $B --seq $T --lr 1e-3 --eval-every 50 --save-every 100 --seed "$SEED"
  touch "$R/cpt/done"
fi
timing cpt $t

stage "6/7 export: GGUF for llama.cpp"
t=$(date +%s)
[ -f "$R/teacher.gguf" ] || ./export --model "$R/teacher/checkpoint" --out "$R/teacher.gguf" --type f16 --quiet
[ -f "$R/pruned.gguf" ] || ./export --model "$R/cpt/checkpoint" --out "$R/pruned.gguf" --type f16 --quiet
timing export $t

stage "7/7 text from the pruned model"
PROMPT="The jury said that"
echo "--- llama.cpp (node-llama-cpp) on $R/pruned.gguf:"
node test/llama_generate.mjs "$R/pruned.gguf" "$PROMPT" 200 "$SEED" | tee "$R/sample_llama.txt"
echo "--- our own code (./train --generate) on $R/cpt/checkpoint:"
./train --model "$R/cpt/checkpoint" --generate "$PROMPT" --tokens 200 --seed "$SEED" --temperature 0.8 | tee "$R/sample_ours.txt"

stage "summary: per-domain validation loss after each stage, on the same held-out windows"
./profile eval --model teacher="$R/teacher/checkpoint" --model pruned="$R/pruned" --model continued="$R/cpt/checkpoint" \
  --unigram --data data/shards --batch $B --seq $T --eval-batches 8 --out "$R/eval.json"
{
  printf '{\n"stages": '; cat "$R/eval.json"
  printf ',\n"timings_s": {'; paste -sd, "$R/timings.txt"; printf '},\n'
  printf '"artifacts": {"teacher": "%s", "profile": "%s", "pruned": "%s", "continued": "%s",\n' \
    "$R/teacher/checkpoint" "$R/profile" "$R/pruned" "$R/cpt/checkpoint"
  printf '  "gguf": ["%s", "%s"], "samples": ["%s", "%s"]}\n}\n' \
    "$R/teacher.gguf" "$R/pruned.gguf" "$R/sample_llama.txt" "$R/sample_ours.txt"
} > "$R/summary.json.tmp" && mv "$R/summary.json.tmp" "$R/summary.json"
cat "$R/summary.json"
echo
echo "=== demo done in $(elapsed). Artifacts:"
echo "  teacher            $R/teacher/checkpoint  (loss curve $R/teacher/loss.png)"
echo "  profile            $R/profile/*.png"
echo "  pruned (sliced)    $R/pruned  (survivor map $R/pruned/survivors.png, report prune_report.json)"
echo "  continued          $R/cpt/checkpoint  (domain weights $R/cpt/weights.png)"
echo "  GGUF               $R/teacher.gguf  $R/pruned.gguf"
echo "  summary            $R/summary.json"
