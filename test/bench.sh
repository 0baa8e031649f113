#!/bin/sh
# make bench: CPU training-step throughput of model.h vs PyTorch on the same model, side by side.
# PyTorch is Debian's python3-torch, which calls the same system BLIS; both run with BLIS's AVX-512
# (skx) kernels when the CPU has them (our binaries pick them themselves; torch gets BLIS_ARCH_TYPE).
# Runs alternate C, torch, C, torch so a drifting machine hits both alike. Prints one line per run.
# SHAPES="S G" picks shapes, THREADS the team size of both.
cd "$(dirname "$0")/.."
set -e
/usr/bin/python3 -c "import torch" 2>/dev/null || { echo "[bench] no PyTorch: run make bench (its deps install python3-torch)" >&2; exit 1; }
THREADS=${THREADS:-2}
ARCH=$(grep -q avx512f /proc/cpuinfo && grep -q avx512bw /proc/cpuinfo && echo 0 || echo 3)  # BLIS: 0 skx, 3 haswell
SHAPES=${SHAPES:-"S M G 270M"}  # test/bench_model.c's table; G and 270M have Gemma's 262,144-token vocabulary
echo "[bench] $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $THREADS threads, $(date -u +%Y-%m-%d)"
for shape in $SHAPES; do
  case $shape in S) steps=8 ;; 270M) steps=2 ;; *) steps=4 ;; esac
  for round in 1 2 3; do
    echo "[bench] load average $(cut -d' ' -f1-3 /proc/loadavg) (the machine may be shared: compare runs of one round)"
    OMP_NUM_THREADS=$THREADS ./test/bench_model $shape --steps $steps
    BLIS_ARCH_TYPE=$ARCH OMP_NUM_THREADS=$THREADS /usr/bin/python3 test/ref/torch_gemma.py bench --config $shape --steps $steps
  done
done
