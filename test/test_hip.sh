#!/bin/sh
# test/test_hip.sh — the GPU path on a machine WITHOUT a GPU (CI). Nothing runs on a GPU here; the
# kernels are validated on the GPU machine by hip/build/check_step and hip/build/dev_* (hip/dev/RESULTS.md).
#   1. NVIDIA: every hip source compiles with nvcc (sm_90a) and the C drivers link (make gpu)
#   2. AMD: every hip source compiles with Debian's hipcc for gfx90a (installed with apt-get if missing);
#      Debian has no hipBLAS, so hip/blas.hip builds its stub there (the kernels are all real)
#   3. the vendor rule of hip/common.h: vendor names only there and in hip/blas.hip, NVIDIA-only paths marked,
#      GS_WARP for the warp width elsewhere
#   4. the binaries print --help, refuse a bad flag with one line, and fail cleanly without a GPU
#   5. train/prune --device gpu: refused by the CPU builds, taken by the GPU builds (hip/build/{train,prune})
cd "$(dirname "$0")/.."
failed=0
bad() { echo "FAIL: $*"; failed=1; }

# --- 1. NVIDIA -------------------------------------------------------------------------------------
NVCC=${NVCC:-$(ls /usr/local/cuda/bin/nvcc 2>/dev/null || command -v nvcc)}
if [ -z "$NVCC" ]; then
  bad "nvcc not found (install the CUDA toolkit, or set NVCC=/path/to/nvcc)"
else
  echo "nvcc: $NVCC"
  if make -s -j2 gpu NVCC="$NVCC" > /tmp/test_hip_make.log 2>&1; then
    echo "ok   make gpu: $(ls hip/build/bench hip/build/check_step hip/build/dev_* | wc -l) binaries for sm_90a"
    grep -i "warning" /tmp/test_hip_make.log | head -5
  else
    cat /tmp/test_hip_make.log | tail -30
    bad "make gpu (nvcc) failed"
  fi
fi

# --- 2. AMD ----------------------------------------------------------------------------------------
if ! command -v hipcc > /dev/null 2>&1; then
  echo "hipcc missing: installing Debian's hipcc"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  ($SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq hipcc) > /tmp/test_hip_apt.log 2>&1 ||
    { tail -5 /tmp/test_hip_apt.log; bad "could not install hipcc (apt-get install hipcc, as root or with sudo)"; }
fi
if command -v hipcc > /dev/null 2>&1; then
  mkdir -p hip/build/amd
  # the workbenches include model.h (CPU references), which includes <omp.h>: Debian's hipcc has none,
  # hip/dev/shim/omp.h declares what model.h uses (compile only, nothing is linked)
  ls hip/*.hip hip/dev/*.hip | xargs -P 2 -I{} sh -c \
    'o=hip/build/amd/$(basename {} .hip).o; hipcc --offload-arch=gfx90a -x hip -std=c++17 -I. -I/usr/include/stb -isystem hip/dev/shim -c {} -o $o > $o.log 2>&1 || { echo "hipcc failed: {}"; cat $o.log | grep -v rocm_agent | head -20; }' \
    > /tmp/test_hip_amd.log 2>&1
  if grep -q "hipcc failed" /tmp/test_hip_amd.log; then
    cat /tmp/test_hip_amd.log
    bad "hipcc (gfx90a) failed"
  else
    echo "ok   hipcc gfx90a: $(ls hip/build/amd/*.o | wc -l) of $(ls hip/*.hip hip/dev/*.hip | wc -l) hip sources compiled"
  fi
fi

# --- 3. the vendor rule (hip/common.h's header states it) ------------------------------------------
# (1) vendor names and inline assembly only in hip/common.h and hip/blas.hip; (2) elsewhere every `#if` on
# GS_NVIDIA / GS_HAVE_MMA / GS_HAVE_WGMMA / GS_HAVE_CLUSTER is marked `// NVIDIA-only`; (3) outside those
# regions the warp width is GS_WARP, never a literal 32 (threadIdx.x / 32, % 32). (4) is step 2 above.
vendor_rule() {  # FILES...: prints one line per violation
  for f in "$@"; do
    case $f in hip/common.h|hip/blas.hip) continue ;; esac
    grep -n -E "cuda[A-Za-z_]|__CUDA|cublas|__nv_|__shfl|rocm|hipblas|(^|[^a-z_])asm( |\(|$)" "$f" | sed "s|^|$f: vendor name: |"
    awk -v f="$f" '
      /^[ \t]*#[ \t]*if/ { nv = $0 ~ /GS_NVIDIA|GS_HAVE_(MMA|WGMMA|CLUSTER)/; st[++d] = nv
                           if (nv && $0 !~ /\/\/ NVIDIA-only/) print f ":" NR ": unmarked NVIDIA-only #if: " $0; next }
      /^[ \t]*#[ \t]*el/ { if (d) st[d] = 0; next }
      /^[ \t]*#[ \t]*endif/ { if (d) d--; next }
      { inside = 0; for (i = 1; i <= d; i++) if (st[i]) inside = 1
        if (!inside && $0 ~ /threadIdx\.x *[\/%] *32([^0-9]|$)/) print f ":" NR ": warp width 32 outside NVIDIA-only code: " $0 }' "$f"
  done
}
leaks=$(vendor_rule hip/*.h hip/*.hip hip/*.c hip/dev/*.hip hip/dev/*.c hip/dev/*.h)
if [ -n "$leaks" ]; then echo "$leaks"; bad "the vendor rule of hip/common.h is broken (above)"
else echo "ok   vendor rule: names only in hip/common.h and hip/blas.hip, NVIDIA-only paths marked, GS_WARP elsewhere"; fi
V=/tmp/test_hip_vendor.$$
mkdir -p $V
printf '__global__ void k(float *x) { x[0] = __shfl_down(x[0], 1); }\n' > $V/name.h
printf '#if GS_HAVE_MMA\nint a;\n#endif\n' > $V/mark.h
printf '#if GS_NVIDIA  // NVIDIA-only: fine here\nint l = threadIdx.x %% 32;\n#else\nint w = threadIdx.x / 32;\n#endif\n' > $V/warp.h
for c in name mark warp; do
  if [ -n "$(vendor_rule $V/$c.h)" ]; then echo "ok   vendor rule catches a planted violation ($c)"
  else bad "the vendor-rule check misses a planted violation ($c: $(cat $V/$c.h | tr '\n' ' '))"; fi
done
rm -rf $V

# --- 4. command line without a GPU ------------------------------------------------------------------
if [ -x hip/build/bench ]; then
  export LD_LIBRARY_PATH="/usr/local/cuda/lib64:/usr/local/cuda/lib:$LD_LIBRARY_PATH"
  if hip/build/bench --help | grep -q -- "--model"; then echo "ok   bench --help"; else bad "bench --help"; fi
  out=$(hip/build/bench --model huge 2>&1); rc=$?
  if [ $rc -ne 0 ] && [ "$(echo "$out" | wc -l)" -eq 1 ] && echo "$out" | grep -q "huge"; then echo "ok   bench refuses --model huge: $out"
  else bad "bench --model huge should fail with one line (rc $rc): $out"; fi
  if ! nvidia-smi > /dev/null 2>&1; then
    out=$(hip/build/bench --model tiny 2>&1); rc=$?
    if [ $rc -ne 0 ] && echo "$out" | grep -q "^error:"; then echo "ok   bench without a GPU: $(echo "$out" | grep '^error:')"
    else bad "bench without a GPU should stop with an error line (rc $rc)"; fi
  fi
fi

# --- 5. --device gpu of train, prune and profile eval --------------------------------------------------
# the CPU builds refuse it in one line; the GPU builds (hip/build/{train,prune}) take it, refuse what the GPU
# path does not do, and without a GPU stop with an error line before writing anything
one_line_error() {  # WHAT EXPECT COMMAND...: exit code != 0, exactly one stderr line, containing EXPECT
  what=$1 expect=$2; shift 2
  err=$("$@" 2>&1 >/dev/null); rc=$?
  if [ $rc -ne 0 ] && [ "$(echo "$err" | wc -l)" -eq 1 ] && echo "$err" | grep -q -- "$expect"; then echo "ok   $what: $err"
  else bad "$what: expected one error line with '$expect' (rc $rc): $err"; fi
}
D=/tmp/test_hip_dev.$$
rm -rf $D
for p in train prune profile; do [ -x ./$p ] || make -s $p > /dev/null 2>&1; done
one_line_error "./train --device gpu (CPU build)" "make gpu" ./train --config data/teacher.json --init random --out $D/t --device gpu
one_line_error "./prune --device gpu (CPU build)" "make gpu" ./prune --model test/fixtures/g3_gqa --out $D/p --keep 0.5 --device gpu
one_line_error "./profile eval --device gpu (CPU build)" "make gpu" ./profile eval --model test/fixtures/g3_gqa --out $D/e.json \
  --device gpu
one_line_error "./train --device tpu" "device" ./train --config data/teacher.json --init random --out $D/t --device tpu
one_line_error "./train --gpu-recompute without --device gpu" "device gpu only" ./train --config data/teacher.json \
  --init random --out $D/t --gpu-recompute 2
one_line_error "./prune --gpu-recompute without --device gpu" "device gpu only" ./prune --model test/fixtures/g3_gqa \
  --out $D/p --keep 0.5 --gpu-recompute 2
one_line_error "./train --grads bf16 without --device gpu" "device gpu only" ./train --config data/teacher.json \
  --init random --out $D/t --grads bf16
one_line_error "./prune --master none without --device gpu" "device gpu only" ./prune --model test/fixtures/g3_gqa \
  --out $D/p --keep 0.5 --master none
one_line_error "./train --master half" "not one of" ./train --config data/teacher.json --init random --out $D/t --master half
if [ -x hip/build/train ] && [ -x hip/build/prune ]; then
  one_line_error "hip/build/train --device gpu --optimizer muon" "AdamW only" hip/build/train --config data/teacher.json \
    --init random --out $D/t --device gpu --optimizer muon
  [ -d data/shards ] && one_line_error "hip/build/train --device gpu on Gemma 4 E2B" "E2B" hip/build/train \
    --model test/fixtures/g4_e2b --data data/shards --out $D/e --steps 2 --batch 2 --seq 32 --device gpu
  [ -d data/shards ] && one_line_error "hip/build/train --gpu-recompute past the layers" "expected 0 to" hip/build/train \
    --model test/fixtures/g3_gqa --data data/shards --out $D/r --steps 2 --batch 2 --seq 32 --device gpu --gpu-recompute 99
  # ZeRO on the GPU: stages 1-3 over fp32 gradients and master only
  [ -d data/shards ] && one_line_error "hip/build/train --device gpu --zero 3 --master none" "without --grads bf16 and --master none" \
    hip/build/train --config data/teacher.json --init random --data data/shards --out $D/z --steps 2 --batch 2 --seq 32 \
    --device gpu --zero 3 --master none
  [ -d data/shards ] && one_line_error "hip/build/prune --device gpu --zero 1 --grads bf16" "without --grads bf16" \
    hip/build/prune --model test/fixtures/g3_gqa --data data/shards --out $D/z --keep 0.5 --steps 2 --batch 2 --seq 32 \
    --device gpu --zero 1 --grads bf16
  if hip/build/train --help | grep -q -- "--device" && hip/build/prune --help | grep -q -- "--device"; then
    echo "ok   hip/build/train and hip/build/prune --help show --device"; else bad "--help of the GPU builds lacks --device"; fi
  if ! nvidia-smi > /dev/null 2>&1 && [ -d data/shards ]; then
    out=$(hip/build/train --config data/teacher.json --init random --data data/shards --out $D/t --steps 2 --batch 2 --seq 32 \
          --device gpu 2>&1); rc=$?
    if [ $rc -ne 0 ] && echo "$out" | grep -q "^error:" && [ ! -d $D/t/checkpoint ]; then
      echo "ok   hip/build/train --device gpu without a GPU: $(echo "$out" | grep '^error:')"
    else bad "hip/build/train --device gpu without a GPU should stop with an error line and no checkpoint (rc $rc)"; fi
    # 8-bit AdamW and the storage options are taken (not refused): the run gets as far as the device
    out=$(hip/build/train --config data/teacher.json --init random --data data/shards --out $D/t8 --steps 2 --batch 2 \
          --seq 32 --device gpu --optimizer adamw8 --grads bf16 --master none 2>&1); rc=$?
    if [ $rc -ne 0 ] && echo "$out" | grep "^error:" | grep -qv "AdamW only" && [ ! -d $D/t8/checkpoint ]; then
      echo "ok   hip/build/train --device gpu --optimizer adamw8 --grads bf16 --master none: taken, stops at the device"
    else bad "hip/build/train --device gpu --optimizer adamw8 --grads bf16 --master none: $(echo "$out" | grep '^error:')"; fi
  fi
fi
rm -rf $D

[ $failed -eq 0 ] && echo "test_hip: all passed" || echo "test_hip: FAILED"
exit $failed
