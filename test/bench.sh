#!/bin/sh
# make bench: CPU training-step throughput of model.h vs PyTorch on the same model, side by side.
# PyTorch is Debian's python3-torch, which calls the same system BLIS; both run with BLIS's AVX-512
# (skx) kernels when the CPU has them (our binaries pick them themselves; torch gets BLIS_ARCH_TYPE).
# Runs alternate C, torch, C, torch so a drifting machine hits both alike. Prints one line per run.
cd "$(dirname "$0")/.."
set -e
if ! /usr/bin/python3 -c "import torch" 2>/dev/null; then
  echo "[bench] installing Debian's python3-torch (PyTorch on the system BLAS) for the comparison"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q python3-torch >/dev/null
fi
THREADS=${THREADS:-2}
ARCH=$(grep -q avx512f /proc/cpuinfo && grep -q avx512bw /proc/cpuinfo && echo 0 || echo 3)  # BLIS: 0 skx, 3 haswell
echo "[bench] $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $THREADS threads, $(date -u +%Y-%m-%d)"
for shape in S M; do
  steps=8; [ $shape = M ] && steps=4
  for round in 1 2 3; do
    OMP_NUM_THREADS=$THREADS ./test/bench_model $shape --steps $steps
    BLIS_ARCH_TYPE=$ARCH OMP_NUM_THREADS=$THREADS /usr/bin/python3 test/ref/torch_gemma.py bench --config $shape --steps $steps
  done
done
