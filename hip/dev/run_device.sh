#!/bin/sh
# hip/dev/run_device.sh — one call on the GPU machine: validation (check_step, every workbench) and the
# benchmark (ours, then PyTorch eager and torch.compile in the same session). Binaries come prebuilt from
# `make gpu` (carried in hip/build); logs go to $OUT (check, dev, bench, prof, torch). check_step's CPU side
# runs on one thread: its models are tiny, and on the 16-vCPU H200 machine OpenMP made each CPU step 30-50 s.
#   sh hip/dev/run_device.sh [check] [dev] [bench] [prof] [sweep] [torch] [ncu] [comm] [dp] [dp8] [dpn] [big] [scale] [act] [profile] [h100] [h200]   (default: check dev bench torch)
#   comm: the device collectives at world 1 (NCCL, NCCL_NVLS_ENABLE=0): dev_comm's checks and bandwidth table, alone
#   and started as RANK=0 WORLD_SIZE=1 (the launcher path); a one-line verdict
#   dp: the data-parallel GPU step at world 1 (needs data/shards): hip/build/train (fp32 and bf16 gradients) and
#   hip/build/prune (--grad-accum 2) --device gpu started as RANK=0 WORLD_SIZE=1 (every gradient through NCCL's
#   all-reduce, the losses through the host collectives) against the same runs alone (twice: the plain step's own
#   spread), and --zero 1, 2, 3 at world 1 (master and moments sharded: reduce-scatter, shard update, all-gather; 2: the
#   gradients too, each unit reduce-scattered as the backward leaves it; 3: the weights too, each layer gathered before
#   its forward and backward); the plain step
#   is not bit-reproducible (atomics, tuned products), so each run's weights, optimizer state, masks and losses must
#   be as close to the plain run's as a second plain run is (hip/dev/compare_runs.py); also a ZeRO 3 train stopped at
#   step 10 and resumed (the sharded checkpoint written and read back)
#   scale: hip/dev/scale.sh, the memory options (8-bit AdamW, bf16 gradients, bf16-only weights) and hip/plan.h's
#   prediction against the device: validation, memory per shape, speed, loss, 8-bit resume across devices (~7 min;
#   SCALE picks parts)
#   dpn: data parallel over every GPU of the machine (several-GPU kinds), ranks started as RANK / WORLD_SIZE /
#   LOCAL_RANK: train ZeRO 0-3 (and ZeRO 3 with adamw8) and prune ZeRO 0 and 3 against one process with the same
#   global batch
#   big: the Gemma 3 27B shape at ZeRO 3 over every GPU, stopped after a few steps: memory (device, host) and speed
#   act, profile, h100, h200: hip/dev/scale_act.sh (whole-layer checkpointing; profile stats on the GPU against the
#   CPU, then the 27B and 31B shapes; the 7B-class and 4B rows on an 80 GB card; the 12B row on a 141 GB card)
#   ncu: Nsight Compute on the first launch of each attention forward kernel in dev_attention's timing cases
#   (sliding W=512 at 1B's shapes): throughput, warp stalls, pipes
#   BENCH_RUNS: model:recompute pairs of `bench` (default "270m:0 1b:0"); BENCH_ARGS: extra flags for every bench
#   and prof run; SWEEP: the --gpu-recompute values of `sweep` (1B, training steps only); DEV: which workbenches
#   `dev` runs; TORCH_VARIANTS: which torch runs
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/gs_out}
mkdir -p "$OUT"
what=${*:-check dev bench torch}
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib $(python3 -c 'import nvidia, os; print(os.path.dirname(nvidia.__file__) + "/cu13/lib")' 2>/dev/null); do
  [ -d "$d" ] && LD_LIBRARY_PATH="$d:$LD_LIBRARY_PATH"
done
export LD_LIBRARY_PATH
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total,clocks.sm --format=csv,noheader
date -u
N=$(nvidia-smi -L | wc -l)  # the GPUs: dpn and big run one rank on each
# launch DIR NAME COMMAND...: N ranks of COMMAND in the background, started as RANK / WORLD_SIZE / LOCAL_RANK (the
# GPU machines have no MPI) with the NCCL id through DIR/id_NAME; rank r's log in DIR/NAME.r.log, the pids in $pids
launch() {
  ld=$1 ln=$2; shift 2; mkdir -p "$ld/id_$ln"; r=0; pids=
  while [ $r -lt $N ]; do
    GS_COMM_DIR=$ld/id_$ln RANK=$r WORLD_SIZE=$N LOCAL_RANK=$r "$@" > "$ld/$ln.$r.log" 2>&1 &
    pids="$pids $!"; r=$((r + 1))
  done
}
for w in $what; do
  case $w in
  comm)  : > "$OUT/comm.log"
         timeout 120 hip/build/dev_comm --max-mib 256 >> "$OUT/comm.log" 2>&1; a=$?
         d=$(mktemp -d); RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 GS_COMM_DIR=$d timeout 60 hip/build/dev_comm --no-time \
           >> "$OUT/comm.log" 2>&1; b=$?; rm -rf "$d"
         grep -E "FAIL|ok  |busbw|dev_comm" "$OUT/comm.log" | head -40
         [ $a -eq 0 ] && [ $b -eq 0 ] && echo "comm: PASSED (world 1: NCCL checks alone and through RANK/WORLD_SIZE)" ||
           echo "comm: FAILED (rc $a, $b; see $OUT/comm.log)" ;;
  dp)    d=$(mktemp -d); ok=1; : > "$OUT/dp.log"
         A="--config data/teacher.json --init random --data data/shards --steps 20 --batch 8 --seq 128 --eval-every 10 --eval-batches 2 --seed 3 --device gpu"
         P="--data data/shards --keep 0.5 --steps 8 --batch 8 --seq 128 --grad-accum 2 --eval-every 4 --eval-batches 2 --save-every 8 --seed 3 --device gpu"
         for r in alone again world1 zero1 zero2 zero3; do
           L=; Z=; case $r in world1|zero*) L="env RANK=0 WORLD_SIZE=1 LOCAL_RANK=0" ;; esac
           case $r in zero*) Z="--zero ${r#zero}" ;; esac
           mkdir -p "$d/id_t$r" "$d/id_b$r" "$d/id_p$r"
           GS_COMM_DIR=$d/id_t$r timeout 200 $L hip/build/train $A $Z --out "$d/t_$r" > "$d/t_$r.log" 2>&1 || ok=0
           case $r in zero*) : > "$d/b_$r.log" ;; *)  # ZeRO takes fp32 gradients only
           GS_COMM_DIR=$d/id_b$r timeout 200 $L hip/build/train $A --grads bf16 --out "$d/b_$r" > "$d/b_$r.log" 2>&1 || ok=0 ;; esac
           GS_COMM_DIR=$d/id_p$r timeout 200 $L hip/build/prune --model "$d/t_alone/checkpoint" $P $Z --out "$d/p_$r" > "$d/p_$r.log" 2>&1 || ok=0
           cat "$d/t_$r.log" "$d/b_$r.log" "$d/p_$r.log" >> "$OUT/dp.log"
         done
         # a sharded checkpoint resumed: ZeRO 3 stopped at step 10 (every rank writes its shard), then --resume (the
         # moments read into the shard and sent to the device)
         mkdir -p "$d/id_zs" "$d/id_zr"
         GS_COMM_DIR=$d/id_zs timeout 200 env RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 hip/build/train $A --zero 3 --stop-at 10 \
           --out "$d/t_zres" > "$d/t_zres.log" 2>&1 || ok=0
         GS_COMM_DIR=$d/id_zr timeout 200 env RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 hip/build/train $A --zero 3 --resume \
           --out "$d/t_zres" >> "$d/t_zres.log" 2>&1 || ok=0
         cat "$d/t_zres.log" >> "$OUT/dp.log"
         grep -q "resuming" "$d/t_zres.log" || { echo "FAIL the zero3 run did not resume"; ok=0; }
         # ZeRO >= 1 loads its pieces of the model only (model.h model_load_shard), sends them up and gathers on the
         # device: the resume, and every sharded prune (--model)
         grep -q "this rank read its ZeRO 3 pieces" "$d/t_zres.log" || { echo "FAIL the zero3 resume did not load its pieces"; ok=0; }
         for r in zero1 zero2 zero3; do
           grep -q "this rank read its ZeRO ${r#zero} pieces" "$d/p_$r.log" || { echo "FAIL the $r prune did not load its pieces"; ok=0; }
         done
         for r in world1 zero1 zero2 zero3; do
           grep -q "data parallel: 1 ranks" "$d/t_$r.log" && grep -q "data parallel: 1 ranks" "$d/p_$r.log" ||
             { echo "FAIL the $r runs did not run data parallel"; ok=0; }
         done
         grep -q "ZeRO 1: master and moments" "$d/t_zero1.log" || { echo "FAIL the zero1 run did not shard"; ok=0; }
         grep -q "ZeRO 2: master, moments and gradients" "$d/t_zero2.log" || { echo "FAIL the zero2 run did not shard"; ok=0; }
         grep -q "ZeRO 3: weights, master" "$d/t_zero3.log" || { echo "FAIL the zero3 run did not shard"; ok=0; }
         # the plain GPU step is not bit-reproducible: each run against the plain one, beside a second plain run
         CR="python3 hip/dev/compare_runs.py"
         for r in world1 zero1 zero2 zero3; do
           $CR "$d/t_alone" "$d/t_again" "$d/t_$r" checkpoint/model.safetensors checkpoint/optimizer.safetensors || ok=0
           case $r in zero*) ;; *) $CR "$d/b_alone" "$d/b_again" "$d/b_$r" checkpoint/model.safetensors || ok=0 ;; esac
           # prune: which channels survive is a discrete choice one rounding can flip, so two plain runs' pruned
           # weights were 0 to 1.24 apart and their masks 0 to 6.8e-2 in the calls of 2026-12-06 (H100): the masks (the
           # log_alphas and lambdas) and the losses bound the run, the pruned weights cannot
           $CR "$d/p_alone" "$d/p_again" "$d/p_$r" masks.safetensors:6.8e-2 || ok=0
         done
         $CR "$d/t_alone" "$d/t_again" "$d/t_zres" checkpoint/model.safetensors checkpoint/optimizer.safetensors || ok=0
         rm -rf "$d"
         [ $ok = 1 ] && echo "dp: PASSED (world 1 through NCCL, ZeRO 0-3, as close to the plain GPU step as a second plain run: train 20 steps fp32 and bf16 gradients, prune 8 x 2 draws, ZeRO 3 stopped at step 10 and resumed)" ||
           echo "dp: FAILED (see $OUT/dp.log)" ;;
  dp8)   # 8-bit AdamW under ZeRO at world 1 (its blocks laid over the partition's units, model.h adamw8_shard):
         # train --optimizer adamw8 alone, again, and at ZeRO 1 and 3 (RANK=0 WORLD_SIZE=1), a ZeRO 3 run stopped at step
         # 10 and resumed, and prune --optimizer adamw8 at ZeRO 0 and 3; each as close to the plain run as a second
         # plain run is (weights, the 8-bit codes and scales, the master; prune's masks)
         d=$(mktemp -d); ok=1; : > "$OUT/dp8.log"
         A="--config data/teacher.json --init random --data data/shards --steps 20 --batch 8 --seq 128 --eval-every 10 --eval-batches 2 --seed 3 --device gpu --optimizer adamw8"
         P="--data data/shards --keep 0.5 --steps 8 --batch 8 --seq 128 --grad-accum 2 --eval-every 4 --eval-batches 2 --save-every 8 --seed 3 --device gpu --optimizer adamw8"
         W1="env RANK=0 WORLD_SIZE=1 LOCAL_RANK=0"
         for r in alone again zero1 zero3; do
           L=; Z=; case $r in zero*) L=$W1; Z="--zero ${r#zero}" ;; esac
           mkdir -p "$d/id_t$r" "$d/id_p$r"
           GS_COMM_DIR=$d/id_t$r timeout 200 $L hip/build/train $A $Z --out "$d/t_$r" > "$d/t_$r.log" 2>&1 || ok=0
           case $r in zero1) : > "$d/p_$r.log" ;; *)
           GS_COMM_DIR=$d/id_p$r timeout 200 $L hip/build/prune --model "$d/t_alone/checkpoint" $P $Z --out "$d/p_$r" > "$d/p_$r.log" 2>&1 || ok=0 ;; esac
           cat "$d/t_$r.log" "$d/p_$r.log" >> "$OUT/dp8.log"
         done
         mkdir -p "$d/id_zs" "$d/id_zr"
         GS_COMM_DIR=$d/id_zs timeout 200 $W1 hip/build/train $A --zero 3 --stop-at 10 --out "$d/t_zres" > "$d/t_zres.log" 2>&1 || ok=0
         GS_COMM_DIR=$d/id_zr timeout 200 $W1 hip/build/train $A --zero 3 --resume --out "$d/t_zres" >> "$d/t_zres.log" 2>&1 || ok=0
         cat "$d/t_zres.log" >> "$OUT/dp8.log"
         grep -q "resuming" "$d/t_zres.log" || { echo "FAIL the adamw8 zero3 run did not resume"; ok=0; }
         grep -q "adamw8: state .* its ZeRO 3 shard" "$d/t_zero3.log" || { echo "FAIL the adamw8 zero3 run did not shard its states"; ok=0; }
         CR="python3 hip/dev/compare_runs.py"
         for r in zero1 zero3 zres; do
           $CR "$d/t_alone" "$d/t_again" "$d/t_$r" checkpoint/model.safetensors checkpoint/optimizer.safetensors || ok=0
         done
         $CR "$d/p_alone" "$d/p_again" "$d/p_zero3" masks.safetensors:6.8e-2 || ok=0
         echo "train adamw8: alone $(grep -o '[0-9]* tok/s' "$d/t_alone.log" | tail -1), ZeRO 3 $(grep -o '[0-9]* tok/s' "$d/t_zero3.log" | tail -1)"
         rm -rf "$d"
         [ $ok = 1 ] && echo "dp8: PASSED (8-bit AdamW at world 1, ZeRO 1 and 3, a ZeRO 3 resume, prune at ZeRO 3: as close to the plain GPU step as a second plain run)" ||
           echo "dp8: FAILED (see $OUT/dp8.log)" ;;
  dpn)   # every GPU of the machine (N from nvidia-smi; N must divide 8), one rank each, started as RANK / WORLD_SIZE /
         # LOCAL_RANK (the GPU machines have no MPI): train's global batch of 8 as N x 8/N at ZeRO 0-3 and prune's at
         # ZeRO 0 and 3 against the same runs in one process (twice: the plain step's own spread); each rank's log
         # beside the others in $OUT/dpn.log; the step speed of each run, and the device memory rank 0 reports
         d=$(mktemp -d); ok=1; : > "$OUT/dpn.log"
         A="--config data/teacher.json --init random --data data/shards --steps 20 --seq 128 --eval-every 10 --eval-batches 2 --seed 3 --device gpu"
         # prune: each rank draws its own z, so N ranks x accum 2 is one process x accum 2N (and its evaluation
         # batches of 8/N windows, 2N of them, are the ranks' 2 of 8)
         P="--data data/shards --keep 0.5 --steps 8 --seq 128 --eval-every 4 --save-every 8 --seed 3 --device gpu --batch $((8 / N))"
         ranks() {  # name, command...: N ranks of the command (launch), until every one is done
           n=$1; shift; launch "$d" "$n" timeout 300 "$@"
           wait
           grep -q "^done\|pruned:" "$d/$n.0.log" || { echo "FAIL $n (see $OUT/dpn.log)"; ok=0; }
           cat "$d/$n".*.log >> "$OUT/dpn.log"
         }
         for r in alone again; do
           timeout 300 hip/build/train $A --batch 8 --out "$d/t_$r" > "$d/t_$r.log" 2>&1 || ok=0
         done
         for z in 0 1 2 3; do ranks t_z$z hip/build/train $A --batch $((8 / N)) --zero $z --out "$d/t_z$z"; done
         # 8-bit AdamW at ZeRO 3 (its blocks over the units: each rank updates its own), against one process twice
         for r in alone8 again8; do
           timeout 300 hip/build/train $A --optimizer adamw8 --batch 8 --out "$d/t_$r" > "$d/t_$r.log" 2>&1 || ok=0
         done
         ranks t8_z3 hip/build/train $A --optimizer adamw8 --batch $((8 / N)) --zero 3 --out "$d/t8_z3"
         for r in alone again; do
           timeout 300 hip/build/prune --model "$d/t_alone/checkpoint" $P --grad-accum $((2 * N)) --eval-batches $((2 * N)) \
             --out "$d/p_$r" > "$d/p_$r.log" 2>&1 || ok=0
         done
         for z in 0 3; do ranks p_z$z hip/build/prune --model "$d/t_alone/checkpoint" $P --grad-accum 2 --eval-batches 2 --zero $z --out "$d/p_z$z"; done
         CR="python3 hip/dev/compare_runs.py"
         for z in 0 1 2 3; do
           cp "$d/t_z$z.0.log" "$d/t_z$z.log"
           $CR "$d/t_alone" "$d/t_again" "$d/t_z$z" checkpoint/model.safetensors checkpoint/optimizer.safetensors || ok=0
           echo "train N=$N ZeRO $z: $(grep -o '[0-9]* tok/s' "$d/t_z$z.log" | tail -1), $(grep -o 'device: .*GiB in use)' "$d/t_z$z.log" | head -1)"
         done
         echo "train alone: $(grep -o '[0-9]* tok/s' "$d/t_alone.log" | tail -1)"
         cp "$d/t8_z3.0.log" "$d/t8_z3.log"
         $CR "$d/t_alone8" "$d/t_again8" "$d/t8_z3" checkpoint/model.safetensors checkpoint/optimizer.safetensors || ok=0
         for z in 0 3; do cp "$d/p_z$z.0.log" "$d/p_z$z.log"; $CR "$d/p_alone" "$d/p_again" "$d/p_z$z" masks.safetensors:6.8e-2 || ok=0; done
         rm -rf "$d"
         [ $ok = 1 ] && echo "dpn: PASSED ($N GPUs, train ZeRO 0-3 (and 3 with adamw8) and prune ZeRO 0 and 3 as close to one process as a second one is)" ||
           echo "dpn: FAILED (see $OUT/dpn.log)" ;;
  big)   # a large shape over every GPU (default hip/dev/gemma3-27b.json, the published Gemma 3 27B config, random
         # weights: each rank draws its pieces) at ZeRO 3, every layer checkpointed, 1 x 4096 tokens a rank: the ranks
         # are stopped after BIG_STEPS steps (no checkpoint: at 27B it would be ~380 GB), then rank 0's step lines (tok/s,
         # device memory) beside ./profile memory's plan, and each process's peak host memory (VmHWM). BIG_CONFIG and
         # BIG_ARGS swap the shape and the flags (a dry run on one GPU: BIG_CONFIG=data/teacher.json; Gemma 4 31B on
         # 8 x 80 GB: BIG_CONFIG=hip/dev/gemma4-31b.json BIG_ARGS="--zero 3 --optimizer adamw8 --gpu-checkpoint 60
         # --batch 1 --seq 4096", 64.1 GiB a GPU planned)
         d=$(mktemp -d); C=${BIG_CONFIG:-hip/dev/gemma3-27b.json}; K=${BIG_STEPS:-6}
         Lc=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["num_hidden_layers"])' "$C")
         ARGS=${BIG_ARGS:---zero 3 --gpu-checkpoint $Lc --batch 1 --seq 4096}
         hip/build/profile memory --device gpu --config "$C" --gpus $N --gpu-mem 80 $ARGS > "$OUT/big_plan.log" 2>&1
         grep -E "peak|host memory" "$OUT/big_plan.log"
         launch "$d" big hip/build/train --config "$C" --init random --data data/shards --steps 1000 --device gpu $ARGS \
           --eval-every 0 --out "$d/out"
         t=0; : > "$d/hwm"
         while :; do  # each rank's peak host memory so far, until rank 0 logs step K (or a rank ends, or 9 minutes)
           for p in $pids; do grep VmHWM /proc/$p/status 2> /dev/null | sed "s/^/$p /"; done >> "$d/hwm"
           [ $t -lt 540 ] && ! grep -q "^step $K/" "$d/big.0.log" && kill -0 $pids 2> /dev/null || break
           sleep 2; t=$((t + 2))
         done
         kill $pids 2> /dev/null; wait
         cat "$d"/big.*.log > "$OUT/big.log"
         grep -E "^\| (model|device|data parallel)|^step|error" "$d/big.0.log" | head -$((K + 8))
         echo "peak host memory per process (VmHWM, GiB): $(sort -k1,1 -k3,3n "$d/hwm" | awk '{m[$1] = $3} END {for (p in m) printf " %.2f", m[p] / 1048576}')"
         grep -q "^step $K/" "$d/big.0.log" && echo "big: $K steps ran on $N GPUs" || echo "big: FAILED (see $OUT/big.log)"
         rm -rf "$d" ;;
  act|profile|h100|h200) sh hip/dev/scale_act.sh $w ;;
  check) OMP_NUM_THREADS=1 timeout 300 hip/build/check_step > "$OUT/check.log" 2>&1; echo "check_step rc=$?"
         grep -E "FAIL|worst|loss cpu|check_step" "$OUT/check.log" | head -60 ;;
  dev)   : > "$OUT/dev.log"
         for d in ${DEV:-attention rmsnorm rope gelu embed xent adamw masks}; do
           timeout 120 hip/build/dev_$d >> "$OUT/dev.log" 2>&1; echo "dev_$d rc=$?"
         done
         grep -E "FAIL|TFLOP|GB/s|passed|FAILED" "$OUT/dev.log" | head -60 ;;
  bench) : > "$OUT/bench.log"
         for v in ${BENCH_RUNS:-270m:0 1b:0}; do
           timeout 200 hip/build/bench --model ${v%:*} --gpu-recompute ${v#*:} $BENCH_ARGS >> "$OUT/bench.log" 2>&1; echo "bench $v rc=$?"
         done
         grep -E "summary|error" "$OUT/bench.log" ;;
  prof)  GS_PROFILE=1 timeout 100 hip/build/bench --model 270m --steps 1 --untimed 1 --prune 0 $BENCH_ARGS > "$OUT/prof.log" 2>&1
         GS_PROFILE=1 timeout 100 hip/build/bench --model 1b --steps 1 --untimed 1 --prune 0 $BENCH_ARGS >> "$OUT/prof.log" 2>&1
         grep -E "profile|ms " "$OUT/prof.log" | grep -v "^train" ;;
  sweep) : > "$OUT/sweep.log"
         for r in ${SWEEP:-0 8 16 26}; do
           timeout 100 hip/build/bench --model 1b --steps 6 --prune 0 --gpu-recompute $r >> "$OUT/sweep.log" 2>&1; echo "sweep $r rc=$?"
         done
         grep -E "summary|error" "$OUT/sweep.log" ;;
  torch) : > "$OUT/torch.log"   # one process per variant: a fresh allocator for each peak
         for v in ${TORCH_VARIANTS:-270m:eager 270m:compile 1b:eager 1b:compile}; do
           PYTHONUNBUFFERED=1 timeout 240 python3 hip/dev/torch_bench.py --model ${v%:*} --mode ${v#*:} >> "$OUT/torch.log" 2>&1
           echo "torch $v rc=$?"
         done
         grep -E "summary|Error|error" "$OUT/torch.log" | head -20 ;;
  ncu)   NCU=$(ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
         [ -n "$NCU" ] || { echo "ncu: Nsight Compute not found"; continue; }
         : > "$OUT/ncu.log"
         for k in k_attn_fwd_wg k_attn_fwd_mma; do
           timeout 120 "$NCU" --kernel-name "regex:$k" --launch-count 1 --section SpeedOfLight --section WarpStateStats \
             --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section Occupancy \
             hip/build/dev_attention --time-only >> "$OUT/ncu.log" 2>&1; echo "ncu $k rc=$?"
         done
         grep -E "k_attn|Duration|Throughput|Stall|Issue Slots|Pipe|Occupancy" "$OUT/ncu.log" | head -80 ;;
  scale) timeout 560 sh hip/dev/scale.sh; echo "scale rc=$?" ;;
  esac
done
