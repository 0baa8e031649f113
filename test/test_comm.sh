#!/bin/sh
# test/test_comm.sh — hip/comm.h on the CPU (test/test_comm.c says what each check is): one process, then
# `mpirun -np 2 --oversubscribe` (2 cores: one thread per rank); the launch errors; a build without MPI still
# builds and runs as one process and refuses mpirun's environment in one line. Then ./train and ./prune data
# parallel against one process with the same global batch (the tolerances and why: at each block below).
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
# CI runs as root: OpenMPI refuses that unless asked
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
T=$(mktemp -d /tmp/test_comm_sh.XXXXXX)
trap 'rm -rf "$T"' EXIT
. test/lib.sh

make --no-print-directory -s test/test_comm > "$T/build.log" 2>&1 || { cat "$T/build.log"; bad "build test/test_comm"; }
check "test_comm, one process" quiet ./test/test_comm
if ! grep -q "MPI      found" "$T/build.log" && ! command -v mpirun > /dev/null; then
  bad "MPI missing: make deps installs openmpi-bin and libopenmpi-dev"
else
  check "test_comm, mpirun -np 2" quiet mpirun -np 2 --oversubscribe ./test/test_comm
  grep -h -E "^(ok|FAIL)" "$T/q.log" | head -40
fi

expect_error "WORLD_SIZE=2 without mpirun" "mpirun -np 2" env WORLD_SIZE=2 RANK=0 ./test/test_comm
expect_error "RANK=2 of WORLD_SIZE=2" "0 <= RANK < WORLD_SIZE" env WORLD_SIZE=2 RANK=2 ./test/test_comm
expect_error "RANK=x" "RANK=x" env WORLD_SIZE=2 RANK=x ./test/test_comm

# without MPI: the same source, compiled with no USE_MPI, is one process and says so under a launcher
if cc -O1 -std=gnu11 -fopenmp -I. -I/usr/include/stb -o "$T/nompi" test/test_comm.c -lcjson -lm > "$T/nompi.log" 2>&1; then
  ok "test_comm builds without MPI"
  check "test_comm without MPI, one process" quiet "$T/nompi"
  expect_error "a build without MPI under mpirun" "has no MPI" env OMPI_COMM_WORLD_SIZE=2 "$T/nompi"
else cat "$T/nompi.log"; bad "test_comm builds without MPI"; fi

# --- ./train over mpirun ----------------------------------------------------------------------------------------
# `mpirun -np 2 ./train --batch 2` against one process with --batch 4 (the same global batch): every step's loss and
# every held-out loss within 1e-5 relative, the weights within 1e-5 relative L2 per tensor (fp32 sums in another
# order: the two ranks' gradients are added after their backward instead of inside one); ZeRO 1, 2 and 3 give ZeRO
# 0's weights within 1e-7 (the same sums and updates; only the clipping norm is summed in another order); a
# checkpoint of 2 ranks resumes in 1 process and one of 1 process in 2 ranks to the same weights.
if command -v mpirun > /dev/null; then
make --no-print-directory -s train prune > "$T/build.log" 2>&1 || { cat "$T/build.log"; bad "build ./train ./prune"; }
A="--config data/teacher.json --init random --data data/shards --steps 3 --seq 64 --eval-every 3 --eval-batches 2 --seed 3"
MP="mpirun -np 2 --oversubscribe"
# close A.csv B.csv COLUMN: every row's value in COLUMN within 1e-5 relative
close() {
  paste -d, "$1" "$2" | awk -F, -v c="$3" -v n="$(head -1 "$1" | tr , '\n' | wc -l)" 'NR > 1 {
    a = $c; b = $(c + n); d = a - b; if (d < 0) d = -d; m = b < 0 ? -b : b
    if (d > 1e-5 * m + 1e-7) { bad++; print "  row " NR ": " a " vs " b } if (d / (m + 1e-30) > w) w = d / (m + 1e-30) }
    END { printf "  worst relative difference %.2e over %d rows\n", w, NR - 1; exit bad > 0 }'
}
same_weights() {  # NAME A_DIR B_DIR TOL
  check "$1" ./test/test_comm --compare "$2/checkpoint/model.safetensors" "$3/checkpoint/model.safetensors" "$4"
}
if quiet ./train $A --out "$T/one" --batch 4; then ok "train, one process, --batch 4"; else bad "train, one process"; fi
for z in 0 1 2 3; do
  if quiet $MP ./train $A --out "$T/two$z" --batch 2 --zero $z; then
    grep -q "data parallel: 2 ranks (mpirun), ZeRO $z; the global batch is 4 sequences" "$T/q.log" &&
      ok "train, mpirun -np 2 --batch 2 --zero $z: $(grep 'tokens per step' "$T/q.log" | cut -c3-62)" ||
      bad "train --zero $z: no data-parallel line"
    check "train --zero $z: step losses as one process" close "$T/one/log_steps.csv" "$T/two$z/log_steps.csv" 2
    check "train --zero $z: held-out losses as one process" close "$T/one/log_eval.csv" "$T/two$z/log_eval.csv" 3
    same_weights "train --zero $z: weights as one process" "$T/two$z" "$T/one" 1e-5
  else bad "train, mpirun -np 2 --zero $z"; fi
done
for z in 1 2 3; do same_weights "train --zero $z: weights as --zero 0 (2 ranks)" "$T/two$z" "$T/two0" 1e-7; done
# dynamic batch loading: the reference losses and every evaluation split over the ranks and all-reduced, so both
# ranks move the domain weights as one process does (held-out losses and weights within 1e-5 relative)
D="--mix dynamic --ref-model $T/one/checkpoint --steps 2 --eval-every 1"
if quiet ./train $A $D --out "$T/d1" --batch 4 && quiet $MP ./train $A $D --out "$T/d2" --batch 2; then
  check "train --mix dynamic, 2 ranks: held-out losses as one process" close "$T/d1/log_eval.csv" "$T/d2/log_eval.csv" 3
  check "train --mix dynamic, 2 ranks: domain weights as one process" close "$T/d1/log_eval.csv" "$T/d2/log_eval.csv" 5
else bad "train --mix dynamic, one process or mpirun -np 2"; fi
# resume with another number of ranks: 2 -> 1 and 1 -> 2 (ZeRO 2: the moments go from the file into the shards)
quiet $MP ./train $A --out "$T/r21" --batch 2 --zero 1 --stop-at 2 && quiet ./train $A --out "$T/r21" --resume --batch 4 &&
  same_weights "train: 2 ranks (ZeRO 1) stopped at step 2, resumed in 1 process" "$T/r21" "$T/one" 1e-5 ||
  bad "train: resume from 2 ranks in 1 process"
quiet ./train $A --out "$T/r12" --batch 4 --stop-at 2 && quiet $MP ./train $A --out "$T/r12" --resume --batch 2 --zero 2 &&
  same_weights "train: 1 process stopped at step 2, resumed in 2 ranks (ZeRO 2)" "$T/r12" "$T/one" 1e-5 ||
  bad "train: resume from 1 process in 2 ranks"
# A checkpoint every rank writes its shard of (ZeRO >= 1: hip/comm.h zero_write_tensors) is the file rank 0 writes
# alone at ZeRO 0, byte for byte: model.safetensors in bf16, optimizer.safetensors with both moments and the fp32
# master. Each rank holds its shard of the moments only (the state line), and the checkpoint resumes in another
# number of ranks either way (1 process from the sharded file, 2 ranks' shards read from rank 0's file).
S2="--batch 2 --dtype bf16 --stop-at 2"
if quiet $MP ./train $A --out "$T/s0" $S2 && quiet $MP ./train $A --out "$T/s3" $S2 --zero 3; then
  grep -q "state .* MiB on each rank, its ZeRO 3 shard (4.0[0-9] bytes per parameter over 2 ranks)" "$T/q.log" &&
    ok "train --zero 3, 2 ranks: $(grep -o 'state .* MiB on each rank' "$T/q.log"), half of one process's" ||
    bad "train --zero 3: no state line of a shard"
  mib=$(./profile memory --device gpu --config data/teacher.json --gpus 2 --zero 3 --json "$T/pm.json" > /dev/null &&
    python3 -c 'import json, sys; print("%.2f" % (json.load(open(sys.argv[1]))["host_optimizer"] / 1048576))' "$T/pm.json")
  check "profile memory --gpus 2 --zero 3: the host's optimizer shard is what train's rank 0 allocated ($mib MiB)" \
    grep -q "state $mib MiB on each rank" "$T/q.log"
  for f in model optimizer; do
    check "train: $f.safetensors written by 2 ranks' shards (ZeRO 3) == by rank 0 (ZeRO 0)" \
      cmp "$T/s3/checkpoint/$f.safetensors" "$T/s0/checkpoint/$f.safetensors"
  done
  quiet ./train $A --out "$T/s3" --resume --batch 4 && quiet $MP ./train $A --out "$T/s0" --resume --batch 2 --zero 1 &&
    check "train: the sharded checkpoint resumed in 1 process as rank 0's in 2 ranks (ZeRO 1): master and moments" \
      ./test/test_comm --compare "$T/s3/checkpoint/optimizer.safetensors" "$T/s0/checkpoint/optimizer.safetensors" 1e-5 ||
    bad "train: resume of the checkpoints written at ZeRO 3 and 0"
  # that resume read only rank 0's pieces of the model (model_load_shard): what is resident of its table (mincore)
  # is profile memory's host_model for 2 GPUs at ZeRO 1, plus at most the two pages each unit's ends may share
  ./profile memory --device gpu --config data/teacher.json --gpus 2 --zero 1 --json "$T/pm1.json" > /dev/null &&
    python3 - "$T/pm1.json" "$T/q.log" data/teacher.json <<'PY' && ok "train --zero 1, 2 ranks: $(cat "$T/res.txt")" || bad "train --zero 1: the model's resident pieces"
import json, re, sys
want = json.load(open(sys.argv[1]))["host_model"] / 1048576
got = re.search(r"this rank read its ZeRO 1 pieces of \S+, ([0-9.]+) of ([0-9.]+) MiB resident", open(sys.argv[2]).read())
units = json.load(open(sys.argv[3]))["num_hidden_layers"] + 2
fringe = 2 * units * 4096 / 1048576
msg = "rank 0 holds %s of %s MiB of the model, profile memory predicts %.2f (+ at most %.2f of page ends)" % (
    got.group(1), got.group(2), want, fringe) if got else "no resident line"
open(sys.argv[2].replace("q.log", "res.txt"), "w").write(msg)
print(msg)
sys.exit(0 if got and want - 0.01 <= float(got.group(1)) <= want + fringe + 0.01 else 1)
PY
else bad "train, mpirun -np 2 --dtype bf16 --stop-at 2 at ZeRO 0 and 3"; fi

# 8-bit AdamW under ZeRO: its blocks are laid over the partition's units (model.h adamw8_shard), so ZeRO 1, 2 and 3
# update the same blocks as ZeRO 0 and end at its weights bit for bit (the same gradients: 0 difference), and a
# checkpoint written from the shards (codes by element, scales by block) is rank 0's file at ZeRO 0 byte for byte.
# It resumes in another number of ranks: weights within 1e-5 of the run resumed the other way (fp32 sums in another
# order), codes within 1e-3 (a value on the tie between two levels takes the other on an fp32 rounding difference:
# one level of 127 or 255 for that element, ~4e-5 relative over a tensor here)
A8="$A --optimizer adamw8"
if quiet $MP ./train $A8 --out "$T/e0" --batch 2 --zero 0 && quiet $MP ./train $A8 --out "$T/e2" --batch 2 --zero 2; then
  grep -q "adamw8: state .* MiB on each rank, its ZeRO 2 shard (1.0[0-9] bytes per parameter over 2 ranks)" "$T/q.log" &&
    ok "train --optimizer adamw8 --zero 2, 2 ranks: $(grep -o 'state .* MiB on each rank' "$T/q.log"), half of ZeRO 0's" ||
    bad "train adamw8 --zero 2: no state line of a shard"
  same_weights "train adamw8 --zero 2: weights as --zero 0 (2 ranks), bit for bit" "$T/e2" "$T/e0" 0
  mib=$(./profile memory --device gpu --config data/teacher.json --gpus 2 --zero 2 --optimizer adamw8 --json "$T/p8.json" > /dev/null &&
    python3 -c 'import json, sys; print("%.2f" % (json.load(open(sys.argv[1]))["host_optimizer"] / 1048576))' "$T/p8.json")
  check "profile memory --gpus 2 --zero 2 --optimizer adamw8: the host's 8-bit shard is what train's rank 0 allocated ($mib MiB)" \
    grep -q "adamw8: state $mib MiB on each rank" "$T/q.log"
else bad "train --optimizer adamw8, mpirun -np 2 at ZeRO 0 and 2"; fi
if quiet $MP ./train $A8 --out "$T/f0" $S2 && quiet $MP ./train $A8 --out "$T/f3" $S2 --zero 3 &&
   quiet $MP ./train $A8 --out "$T/f1" $S2 --zero 1; then
  for f in model optimizer; do
    check "train adamw8: $f.safetensors written by 2 ranks' shards (ZeRO 3) == by rank 0 (ZeRO 0)" \
      cmp "$T/f3/checkpoint/$f.safetensors" "$T/f0/checkpoint/$f.safetensors"
  done
  check "train adamw8: the ZeRO 1 checkpoint == ZeRO 0's" cmp "$T/f1/checkpoint/optimizer.safetensors" "$T/f0/checkpoint/optimizer.safetensors"
  if quiet ./train $A8 --out "$T/f3" --resume --batch 4 && quiet $MP ./train $A8 --out "$T/f0" --resume --batch 2 --zero 1; then
    for x in master_weights:1e-5 exp_avg.q8:1e-3 exp_avg_sq.q8:1e-3; do
      check "train adamw8: the ZeRO 3 checkpoint resumed in 1 process as rank 0's in 2 ranks (ZeRO 1): ${x%:*}" \
        ./test/test_comm --compare "$T/f3/checkpoint/optimizer.safetensors" "$T/f0/checkpoint/optimizer.safetensors" "${x#*:}" "${x%:*}"
    done
  else bad "train adamw8: resume of the checkpoints written at ZeRO 3 and 0"; fi
else bad "train --optimizer adamw8 --dtype bf16 --stop-at 2 at ZeRO 0, 1 and 3"; fi

# --- ./prune over mpirun: each rank draws its own z per micro-batch -----------------------------------------------
# 2 ranks x --batch 2 against one process with --batch 2 --grad-accum 2: the same sequences and the same z draws
# (draw a x ranks + r is micro-batch a of rank r), so every step's loss, every validation loss (batches of 2 x 2
# windows against 4 batches of 2: the same windows, the same forwards) and the pruned weights and masks agree within
# 1e-5 (fp32 sums in another order: the two micro-batches' weight gradients are added after their backward instead
# of inside the second one, and the one process takes the second draw's mask gradients as a difference of sums);
# likewise 2 ranks x --grad-accum 2 against one process with --grad-accum 4. ZeRO 1 gives ZeRO 0's weights within
# 1e-7; 2 ranks at ZeRO 2 stopped at step 2 and resumed end where the run without a stop ends.
P="--model $T/one/checkpoint --data data/shards --keep 0.5 --steps 4 --batch 2 --seq 64 --eval-every 2 --save-every 2 \
  --seed 3 --lr 1e-3"
# the losses, Lagrangians and validation losses a log prints (all with 4 decimals), one per line
losses() { grep -E "^(step [0-9]|eval step [0-9]+ \| val)" "$1" | sed -E 's/ \| sparsity.*//' | grep -oE "[-+]?[0-9]+\.[0-9]{4}"; }
# A B: as many numbers, each pair within one unit of the 4th decimal (what printing values that agree to ~1e-7
# can still part by: a rounding boundary between them); the files written are compared at full precision
printed_alike() {
  [ "$(wc -l < "$1")" -ge 12 ] && [ "$(wc -l < "$1")" -eq "$(wc -l < "$2")" ] || { echo "  $(wc -l < "$1") vs $(wc -l < "$2") numbers"; return 1; }
  paste "$1" "$2" | awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > 1.01e-4) { bad++; print "  line " NR ": " $1 " vs " $2 }
    if (d > w) w = d } END { printf "  %d numbers, worst difference %.1e\n", NR, w; exit bad > 0 }'
}
prune_alike() {  # NAME ONE_DIR TWO_DIR: printed numbers, pruned weights and masks
  losses "$2.log" > "$2.txt"; losses "$3.log" > "$3.txt"
  check "$1: losses, Lagrangians, validation losses" printed_alike "$2.txt" "$3.txt"
  check "$1: pruned weights" ./test/test_comm --compare "$3/model.safetensors" "$2/model.safetensors" 1e-5
  check "$1: masks and lambdas" ./test/test_comm --compare "$3/masks.safetensors" "$2/masks.safetensors" 1e-5
}
if quiet ./prune $P --out "$T/p1" --grad-accum 2 --eval-batches 4 && cp "$T/q.log" "$T/p1.log" &&
   quiet $MP ./prune $P --out "$T/p2" --eval-batches 2 && cp "$T/q.log" "$T/p2.log"; then
  grep -q "batch 2 x seq 64 x accum 1 x ranks 2: 2 draws" "$T/p2.log" &&
    ok "prune, mpirun -np 2: $(grep '^| tokens per step' "$T/p2.log" | cut -c3-80)" || bad "prune: no step line of 2 ranks"
  prune_alike "prune, 2 ranks x batch 2 as 1 process x accum 2" "$T/p1" "$T/p2"
  quiet $MP ./prune $P --out "$T/pz" --eval-batches 2 --zero 1 &&
    check "prune --zero 1: pruned weights as --zero 0" ./test/test_comm --compare "$T/pz/model.safetensors" "$T/p2/model.safetensors" 1e-7 ||
    bad "prune, mpirun -np 2 --zero 1"
  quiet $MP ./prune $P --out "$T/pr" --eval-batches 2 --zero 2 --stop-at 2 &&
    quiet $MP ./prune $P --out "$T/pr" --eval-batches 2 --zero 2 --resume &&
    check "prune: 2 ranks (ZeRO 2: each writes and reads its shard) stopped at step 2 and resumed" \
      ./test/test_comm --compare "$T/pr/model.safetensors" "$T/p2/model.safetensors" 1e-7 ||
    bad "prune: 2 ranks stopped and resumed"
  # the weights' 8-bit AdamW (--optimizer adamw8) at ZeRO 3, stopped at step 2 and resumed, against ZeRO 0 (1e-7)
  quiet $MP ./prune $P --out "$T/q0" --eval-batches 2 --optimizer adamw8 &&
    quiet $MP ./prune $P --out "$T/q3" --eval-batches 2 --optimizer adamw8 --zero 3 --stop-at 2 &&
    quiet $MP ./prune $P --out "$T/q3" --eval-batches 2 --optimizer adamw8 --zero 3 --resume &&
    check "prune --optimizer adamw8: 2 ranks at ZeRO 3 stopped at step 2 and resumed, pruned weights as ZeRO 0" \
      ./test/test_comm --compare "$T/q3/model.safetensors" "$T/q0/model.safetensors" 1e-7 ||
    bad "prune --optimizer adamw8 at ZeRO 0, or at ZeRO 3 stopped and resumed"
else bad "prune, one process --grad-accum 2 or mpirun -np 2"; fi
if quiet ./prune $P --out "$T/a1" --grad-accum 4 --eval-batches 4 && cp "$T/q.log" "$T/a1.log" &&
   quiet $MP ./prune $P --out "$T/a2" --grad-accum 2 --eval-batches 2 && cp "$T/q.log" "$T/a2.log"; then
  prune_alike "prune, 2 ranks x accum 2 as 1 process x accum 4" "$T/a1" "$T/a2"
else bad "prune, one process --grad-accum 4 or mpirun -np 2 --grad-accum 2"; fi
expect_error "prune --method magnitude --zero 1" "method sheared" ./prune --model "$T/one/checkpoint" --data data/shards \
  --out "$T/pm" --keep 0.5 --method magnitude --zero 1
expect_error "train --zero 4" "--zero 4" ./train $A --out "$T/bad" --batch 2 --zero 4
expect_error "train --zero 1 --optimizer muon" "adamw, adamw8" ./train $A --out "$T/bad" --batch 2 --zero 1 --optimizer muon
else echo "skip train and prune over mpirun: no mpirun (make deps installs openmpi-bin)"; fi

echo "test_comm: $pass passed, $fail failed"
[ $fail -eq 0 ]
