#!/bin/sh
# test/test_profile.sh — profile.c and plot.h: runs the C test test/test_profile (hand-computable statistics,
# parameter counts against model.h and published figures, the planner's rules and 2% budget, memory against
# a hand calculation, PNG validity, stats/ablate/diff end to end on a tiny model with known answers), then
# the command lines: --help of every command, plan and memory on presets (the 31B questions), and bad input
# (one line on stderr naming the input, non-zero exit, no crash, no damaged file). Builds what it needs.
cd "$(dirname "$0")/.."
T=$(mktemp -d /tmp/test_profile_sh.XXXXXX)
trap 'rm -rf "$T"' EXIT
. test/lib.sh


make --no-print-directory -s profile prune test/test_profile test/test_prune > "$T/build.log" 2>&1 \
  || { cat "$T/build.log"; echo "FAIL build"; echo "test_profile.sh: 0 passed, 1 failed"; exit 1; }
check "test/test_profile (statistics, counts, planner, memory, PNG, end to end)" ./test/test_profile

# --- help: every command lists its flags with types and defaults ------------------------------------------
for c in logits plan memory stats ablate diff; do
  check "profile $c --help" sh -c "./profile $c --help | grep -q -- '--' && ./profile $c --help | grep -qi 'usage'"
done
check "profile --help lists the commands" sh -c './profile --help | grep -q plan && ./profile --help | grep -q ablate'

# --- the seed's questions, answered without weights -------------------------------------------------------
check "plan: Gemma 4 31B -> 8B/4B/2B/1.5B writes four targets" \
  sh -c "./profile plan --preset gemma4-31b --params 8B,4B,2B,1.5B --out $T/plans > $T/plan.log && ls $T/plans/target_8B.json $T/plans/target_1.5B.json > /dev/null"
check "plan: every 31B target reloads as a Gemma 4 config (profile memory --config reads it)" \
  sh -c "for f in $T/plans/*.json; do ./profile memory --config \$f --gpu-mem 192 > /dev/null || exit 1; done"
check "plan: an E2B target (PLE, KV sharing) reloads through --config" \
  sh -c "./profile plan --preset e2b --params 3B --out $T/e2b.json > /dev/null && ./profile memory --config $T/e2b.json | grep -q 'PLE 256'"
check "plan -> prune: prune cuts a fixture to its planned target (magnitude), and the output passes --check-run" \
  sh -c "./profile plan --model test/fixtures/g3_gqa --params 150k --count non-embedding --multiple 8 --out $T/g3t.json > /dev/null && ./prune --model test/fixtures/g3_gqa --out $T/g3cut --method magnitude --target $T/g3t.json --data $T/none --eval-batches 0 > /dev/null && ./test/test_prune --check-run $T/g3cut > /dev/null"
check "memory: 31B with AdamW on one 192 GB GPU does not fit, and says so" \
  sh -c "./profile memory --preset 31b --optimizer adamw --gpus 1 --gpu-mem 192 | grep -q 'does NOT fit'"
check "memory: the options table marks 8-bit AdamW, bf16 only, checkpointing as fitting" \
  sh -c "./profile memory --preset 31b --gpus 1 --gpu-mem 192 --seq 2048 | grep 'adamw8   bf16 only' | grep on | grep -q '\*'"
check "memory: --json writes the figures" \
  sh -c "./profile memory --preset 1b --json $T/mem.json > /dev/null && grep -q '\"optimizer_states\"' $T/mem.json"
# --device gpu: hip/plan.h's arithmetic (the sizes gpu_create allocates by; hip/dev/check_step checks that on a GPU)
sum_parts='import json, sys; j = json.load(open(sys.argv[1])); parts = ["weights", "gradients", "activations", "stream_tables", "scratch", "shard_tables"]
sys.exit(0 if sum(j[k] for k in parts) == j["gpu_create"] and j["gpu_peak"] > j["gpu_create"] + j["optimizer_states"] else 1)'
check "memory --device gpu: the parts add up to what gpu_create allocates (1B, 8 x 2048, --gpu-recompute 3)" \
  sh -c "./profile memory --preset 1b --device gpu --batch 8 --seq 2048 --gpu-recompute 3 --json $T/g.json > /dev/null && python3 -c '$sum_parts' $T/g.json"
# 8-bit states: 2 bytes and two fp32 scales per 256 (AdamW: 8 bytes); bf16 matrix gradients: between 2 and 4 bytes
bpp='import json, sys; a, b = (json.load(open(f)) for f in sys.argv[1:3]); n = a["gradients"] / 4
sys.exit(0 if abs(a["optimizer_states"] / n - 8) < 1e-6 and 2 < b["optimizer_states"] / n < 2.04 and 2 * n < b["gradients"] < a["gradients"] else 1)'
check "memory --device gpu: adamw8 keeps ~2.03 B/param of states against AdamW's 8; bf16 matrix gradients" \
  sh -c "./profile memory --preset 4b --device gpu --json $T/a.json > /dev/null && ./profile memory --preset 4b --device gpu --optimizer adamw8 --grads bf16 --json $T/b.json > /dev/null && python3 -c '$bpp' $T/a.json $T/b.json"

# data parallel on the GPU is ZeRO 0 (hip/gpu.h all-reduces in place): the per-GPU figure of 8 GPUs is one GPU's
dp='import json, sys; a, b = (json.load(open(f)) for f in sys.argv[1:3]); sys.exit(0 if a["gpu_peak"] == b["gpu_peak"] and b["gpus"] == 8 else 1)'
check "memory --device gpu --gpus 8: each GPU holds what one GPU does (ZeRO 0, all-reduce in place)" \
  sh -c "./profile memory --preset 1b --device gpu --json $T/d1.json > /dev/null && ./profile memory --preset 1b --device gpu --gpus 8 --json $T/d8.json > /dev/null && python3 -c '$dp' $T/d1.json $T/d8.json"
# ZeRO 1 on the GPU: the fp32 master and AdamW's moments of 1/8 of the table (plus the units' tails, fewer than
# 8 x 256 floats each: each rank's part is whole 8-bit blocks, hip/comm.h), the bf16 copy, the fp32 gradients and the norm weights' fp32 whole; the parts still add up to what
# gpu_create allocates
z1='import json, sys; a, b = (json.load(open(f)) for f in sys.argv[1:3]); n = a["gradients"] / 4; sh = b["shard"]
ok = n / 8 <= sh <= n / 8 + 8 * 256 * 30 and b["optimizer_states"] == 2 * -(-sh * 4 // 256) * 256 and b["gradients"] == a["gradients"]
small = b["weights"] - (a["weights"] - 4 * n + 4 * sh)  # the norm weights fp32, whole on every GPU: < 0.1%
ok = ok and 0 < small < 4 * n / 1000
sys.exit(0 if ok and b["zero"] == 1 else 1)'
check "memory --device gpu --gpus 8 --zero 1: master and moments of the shard only" \
  sh -c "./profile memory --preset 1b --device gpu --json $T/z0.json > /dev/null && ./profile memory --preset 1b --device gpu --gpus 8 --zero 1 --json $T/z1.json > /dev/null && python3 -c '$z1' $T/z0.json $T/z1.json && python3 -c '$sum_parts' $T/z1.json"
# ZeRO 2 on the GPU: the fp32 gradient of the shard, and whole only what the backward writes before a unit leaves it:
# the embedding (V x d), the final norm (d) and two buckets of one layer (the 1b preset: V 262,144, d 1152, its 26
# layers of one size), each unit placed 8-float aligned (at most 8 floats of padding each, 256-byte allocations)
z2='import json, sys; a, b = (json.load(open(f)) for f in sys.argv[1:3]); n = a["gradients"] / 4; sh = b["shard"]
E, d, L = 262144 * 1152, 1152, 26; layer = (n - E - d) / L; least = 4 * sh + 4 * (E + d + 2 * layer)
ok = least <= b["gradients"] <= least + 4 * 8 * 4 + 2 * 256 and b["shard"] == a["shard"] and b["weights"] == a["weights"]
sys.exit(0 if ok and b["optimizer_states"] == a["optimizer_states"] and b["zero"] == 2 else 1)'
check "memory --device gpu --gpus 8 --zero 2: the gradient of the shard, the embedding's and two layers' buckets" \
  sh -c "./profile memory --preset 1b --device gpu --gpus 8 --zero 2 --json $T/z2.json > /dev/null && python3 -c '$z2' $T/z1.json $T/z2.json && python3 -c '$sum_parts' $T/z2.json"
# ZeRO 3 on the GPU: stage 2's gradients; of the bf16 weights the shard, and the embedding, the final norm and two
# buckets of one layer whole (stage 2's gradient layout, 2 bytes an element) instead of the whole table
z3='import json, sys; z0, z2, z3 = (json.load(open(f)) for f in sys.argv[1:4]); n = z0["gradients"] / 4; sh = z3["shard"]
ng = (z2["gradients"] - 4 * sh) / 4  # the stage-2 buckets (fp32 elements), within the 256-byte alignment
want = z2["weights"] - 2 * n + 2 * sh + 2 * ng
ok = abs(z3["weights"] - want) <= 3 * 256 and z3["gradients"] == z2["gradients"] and z3["optimizer_states"] == z2["optimizer_states"]
sys.exit(0 if ok and z3["zero"] == 3 else 1)'
check "memory --device gpu --gpus 8 --zero 3: the bf16 weights of the shard, the embedding's and two layers' buckets" \
  sh -c "./profile memory --preset 1b --device gpu --gpus 8 --zero 3 --json $T/z3.json > /dev/null && python3 -c '$z3' $T/z0.json $T/z2.json $T/z3.json && python3 -c '$sum_parts' $T/z3.json"
expect_error "memory --device gpu --zero 2 --master none" "without --grads bf16 and --master none" ./profile memory --preset 1b --device gpu --gpus 8 --zero 2 --master none
expect_error "memory --device gpu --zero 1 --grads bf16" "fp32 gradients" ./profile memory --preset 1b --device gpu --gpus 8 --zero 1 --grads bf16

# --- bad input ----------------------------------------------------------------------------------------------
expect_error "unknown command" "unknown command" ./profile frobnicate
expect_error "plan: unknown preset" "unknown" ./profile plan --preset gemma9-1t --params 1B
expect_error "plan: ambiguous preset tail" "ambiguous" ./profile plan --preset 12b --params 1B
expect_error "plan: no source" "exactly one of" ./profile plan --params 1B
expect_error "plan: two sources" "exactly one of" ./profile plan --preset 1b --config x.json --params 1B
expect_error "plan: budget that is not a count" "not a parameter count" ./profile plan --preset 1b --params lots
expect_error "plan: budget above the source" "not smaller than the source" ./profile plan --preset 1b --params 5B
expect_error "plan: missing --params" "--params is required" ./profile plan --preset 1b
expect_error "plan: --params without a value" "needs a value" ./profile plan --preset 1b --params
echo '{"layer_importance": [1, 2, 3], "layer_importance_metric": "block_influence"}' > "$T/short.json"
expect_error "plan: a profile of another model" "26 layers" ./profile plan --preset 1b --params 500M --profile "$T/short.json"
expect_error "plan: a file without a profile" "layer_importance" ./profile plan --preset 1b --params 500M --profile test/fixtures/g3_gqa/fixture.json
expect_error "memory: unknown optimizer" "not one of: adamw, adamw8, muon" ./profile memory --preset 1b --optimizer sgd
expect_error "memory: ZeRO stage 4" "--zero 4: expected a whole number in \\[0, 3\\]" ./profile memory --preset 1b --zero 4
expect_error "memory --device gpu: muon" "adamw and adamw8" ./profile memory --preset 1b --device gpu --optimizer muon
expect_error "memory --device gpu: E2B" "does not run" ./profile memory --preset e2b --device gpu
expect_error "memory: --gpu-recompute without --device gpu" "--device gpu only" ./profile memory --preset 1b --gpu-recompute 3
expect_error "memory: config that is not JSON" "malformed JSON" sh -c "printf '{\"model_type\": ' > $T/bad.json; ./profile memory --config $T/bad.json"
expect_error "stats: missing --out" "--out is required" ./profile stats --model test/fixtures/g3_mqa
expect_error "stats: no data directory" "run \`make data\`" ./profile stats --model test/fixtures/g3_mqa --data $T/none --out $T/s
expect_error "stats: unknown flag" "unknown flag --bogus" ./profile stats --bogus
expect_error "stats: a model and a preset" "exactly one of" ./profile stats --model test/fixtures/g3_mqa --preset 270m --out $T/s
expect_error "ablate: not a model directory" "config.json" ./profile ablate --model $T --out $T/a
expect_error "diff: different shapes" "different shapes" ./profile diff --a test/fixtures/g3_mqa --b test/fixtures/g3_gqa --out $T/d
# a failed write never damages what is there: an existing target stays as it was when planning fails
echo '{"keep": "me"}' > "$T/target.json"
./profile plan --preset 1b --params 5B --out "$T/target.json" > /dev/null 2>&1
check "a failing plan leaves an existing --out file untouched" grep -q keep "$T/target.json"

echo "test_profile.sh: $pass passed, $fail failed"
[ $fail -eq 0 ]
