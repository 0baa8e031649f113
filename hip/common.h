// hip/common.h — the vendor layer: with hip/blas.hip (the BLAS) the only place that knows which GPU we build for.
// Kernels are written in HIP. Built with hipcc (AMD) this header includes the HIP runtime; built with
// nvcc (NVIDIA) it maps the HIP runtime names we use onto CUDA's. It also holds what every kernel
// file shares: checked calls (hipCheck), the warp width (never hard-coded elsewhere), warp/block
// reductions, bf16 <-> fp32 conversion, and (NVIDIA sm_80+ only) the tensor-core primitives that the
// attention kernels use when GS_HAVE_MMA is 1 (cp.async, ldmatrix, mma.sync m16n8k16 bf16).
//
// The vendor rule (test/test_hip.sh checks each point):
//   1. Vendor names (CUDA / ROCm runtime and library names, __CUDA_ARCH__, __nv_*, warp shuffles,
//      inline assembly) appear only here and in hip/blas.hip, the one file that calls the vendor BLAS.
//      Every other file uses HIP's names and the helpers below.
//   2. NVIDIA-only fast paths sit outside these two files only under `#if GS_NVIDIA` or
//      `#if GS_HAVE_MMA / GS_HAVE_WGMMA / GS_HAVE_CLUSTER`, each such line marked `// NVIDIA-only: ...` with
//      what runs elsewhere; the portable path is the reference the fast one is checked against.
//   3. The warp width is GS_WARP; a literal 32 for it only inside those NVIDIA-only regions.
//   4. Every hip source compiles for both vendors (nvcc sm_90a, hipcc gfx90a).
// Kernels: one header per op (hip/<op>.h: attention, rmsnorm, rope, gelu, embed, xent, adamw, masks, with
// colsum.h and elementwise.h shared), each paired with its workbench hip/dev/<op>.hip that holds the
// numbered versions and the CPU check; hip/ keeps only the winners (and the portable fallbacks).
//
// bf16 is stored as raw 16-bit words (typedef uint16_t bf16): the same bits on both vendors, the
// same round-to-nearest-even conversion as util.h's f32_to_bf16, no dependency on either vendor's
// bf16 class (HIP 5.2's hip_bfloat16 and CUDA's __nv_bfloat16 differ).
#pragma once
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#if defined(__HIPCC__) || defined(__HIP_PLATFORM_AMD__) || defined(__HIP_PLATFORM_HCC__)
// ------------------------------------------------------------------------------------------- AMD
#include <hip/hip_runtime.h>
#define GS_VENDOR "AMD (HIP)"
#define GS_NVIDIA 0
#ifdef __AMDGCN_WAVEFRONT_SIZE
#define GS_WARP __AMDGCN_WAVEFRONT_SIZE
#else
#define GS_WARP 64
#endif
#define gs_shfl_xor(v, m) __shfl_xor((v), (m))
#define GS_HAVE_MMA 0  // the tensor-core attention is written with NVIDIA's mma.sync; AMD uses the portable kernels
#else
// ---------------------------------------------------------------------------------------- NVIDIA
#include <cuda_runtime.h>
#define GS_VENDOR "NVIDIA (CUDA)"
#define GS_NVIDIA 1
#define GS_WARP 32
#define gs_shfl_xor(v, m) __shfl_xor_sync(0xffffffffu, (v), (m))
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#define GS_HAVE_MMA 1
#else
#define GS_HAVE_MMA 0  // host pass, or an older GPU
#endif
#define hipError_t cudaError_t
#define hipSuccess cudaSuccess
#define hipGetErrorString cudaGetErrorString
#define hipGetLastError cudaGetLastError
#define hipMalloc cudaMalloc
#define hipFree cudaFree
#define hipMemcpy cudaMemcpy
#define hipMemcpyAsync cudaMemcpyAsync
#define hipMemset cudaMemset
#define hipMemsetAsync cudaMemsetAsync
#define hipMemcpyHostToDevice cudaMemcpyHostToDevice
#define hipMemcpyDeviceToHost cudaMemcpyDeviceToHost
#define hipMemcpyDeviceToDevice cudaMemcpyDeviceToDevice
#define hipMemcpyDefault cudaMemcpyDefault
#define hipStreamSynchronize cudaStreamSynchronize
#define hipDeviceSynchronize cudaDeviceSynchronize
#define hipStream_t cudaStream_t
#define hipEvent_t cudaEvent_t
#define hipEventCreate cudaEventCreate
#define hipEventRecord cudaEventRecord
#define hipEventSynchronize cudaEventSynchronize
#define hipEventElapsedTime cudaEventElapsedTime
#define hipEventDestroy cudaEventDestroy
#define hipEventCreateWithFlags cudaEventCreateWithFlags
#define hipEventDisableTiming cudaEventDisableTiming
#define hipStreamCreateWithFlags cudaStreamCreateWithFlags
#define hipStreamNonBlocking cudaStreamNonBlocking
#define hipStreamWaitEvent cudaStreamWaitEvent
#define hipStreamDestroy cudaStreamDestroy
#define hipFuncSetAttribute cudaFuncSetAttribute
#define hipFuncAttributeMaxDynamicSharedMemorySize cudaFuncAttributeMaxDynamicSharedMemorySize
#define hipGetDeviceProperties cudaGetDeviceProperties
#define hipDeviceProp_t cudaDeviceProp
#define hipMemGetInfo cudaMemGetInfo
#define hipGetDevice cudaGetDevice
#define hipSetDevice cudaSetDevice
#define hipGetDeviceCount cudaGetDeviceCount
#endif

// ------------------------------------------------------------------------------- collectives
// NCCL on NVIDIA; RCCL on AMD, with the same API and names. Only hip/comm.hip asks for them (GS_WANT_COMM).
// Debian's hipcc comes without RCCL: GS_HAVE_COMM 0 there, and hip/comm.hip builds its stub.
#ifdef GS_WANT_COMM
#if GS_NVIDIA
#include <nccl.h>
#define GS_HAVE_COMM 1
#elif __has_include(<rccl/rccl.h>)
#include <rccl/rccl.h>
#define GS_HAVE_COMM 1
#else
#define GS_HAVE_COMM 0
#endif
#endif

// --------------------------------------------------------------------------------- checked calls
// hipCheck(call): on failure prints the call, file:line, the runtime's message and a hint, then exits.
static inline void hip_check(hipError_t e, const char *call, const char *file, int line) {
    if (e == hipSuccess) return;
    fprintf(stderr, "error: %s failed at %s:%d: %s\n  hint: is a GPU visible (nvidia-smi / rocm-smi)? out of "
                    "memory? run with a smaller --batch or model\n",
            call, file, line, hipGetErrorString(e));
    exit(1);
}
#define hipCheck(call) hip_check((call), #call, __FILE__, __LINE__)
// after a kernel launch: launch errors (bad configuration, too much shared memory) show up here
#define hipCheckLaunch() hip_check(hipGetLastError(), "kernel launch", __FILE__, __LINE__)

typedef uint16_t bf16;  // raw bfloat16 bits

#ifdef __cplusplus
// ------------------------------------------------------------------------- device-side helpers
__device__ __forceinline__ float bf2f(bf16 h) { return __uint_as_float(((unsigned)h) << 16); }
__device__ __forceinline__ bf16 f2bf(float f) {  // round to nearest even; NaN stays NaN (util.h's rule)
    unsigned u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (bf16)(u >> 16);
}
// two floats -> one 32-bit word {lo in bits 0-15, hi in 16-31}
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
#if GS_NVIDIA && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    uint32_t r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
#else
    return (uint32_t)f2bf(lo) | ((uint32_t)f2bf(hi) << 16);
#endif
}

// load/store as float whatever the storage type (float or bf16)
__device__ __forceinline__ float ldf(const float *p, size_t i) { return p[i]; }
__device__ __forceinline__ float ldf(const bf16 *p, size_t i) { return bf2f(p[i]); }
__device__ __forceinline__ void stf(float *p, size_t i, float v) { p[i] = v; }
__device__ __forceinline__ void stf(bf16 *p, size_t i, float v) { p[i] = f2bf(v); }

// W consecutive values (W = 1, 2, 4, 8 bf16; 1, 2, 4 float) as floats, with one load or store of W elements
// (p aligned to W elements)
template <int W> struct BfVec { typedef uint32_t t; };
template <> struct BfVec<1> { typedef uint16_t t; };
template <> struct BfVec<4> { typedef uint2 t; };
template <> struct BfVec<8> { typedef uint4 t; };
template <int W> struct F32Vec { typedef float t; };
template <> struct F32Vec<2> { typedef float2 t; };
template <> struct F32Vec<4> { typedef float4 t; };
template <int W> __device__ __forceinline__ void ldv(float *o, const bf16 *p) {
    typename BfVec<W>::t raw = *(const typename BfVec<W>::t *)p;
    const bf16 *e = (const bf16 *)&raw;
#pragma unroll
    for (int k = 0; k < W; k++) o[k] = bf2f(e[k]);
}
template <int W> __device__ __forceinline__ void ldv(float *o, const float *p) {
    typename F32Vec<W>::t raw = *(const typename F32Vec<W>::t *)p;
    const float *e = (const float *)&raw;
#pragma unroll
    for (int k = 0; k < W; k++) o[k] = e[k];
}
template <int W> __device__ __forceinline__ void stv(bf16 *p, const float *v) {
    if constexpr (W == 1) {
        *p = f2bf(v[0]);
    } else {
        typename BfVec<W>::t raw;
        uint32_t *e = (uint32_t *)&raw;
#pragma unroll
        for (int k = 0; k < W / 2; k++) e[k] = pack_bf16x2(v[2 * k], v[2 * k + 1]);
        *(typename BfVec<W>::t *)p = raw;
    }
}
template <int W> __device__ __forceinline__ void stv(float *p, const float *v) {
    typename F32Vec<W>::t raw;
    float *e = (float *)&raw;
#pragma unroll
    for (int k = 0; k < W; k++) e[k] = v[k];
    *(typename F32Vec<W>::t *)p = raw;
}

template <typename T> __device__ __forceinline__ T warp_sum(T v) {  // float, or double (k_sumsq)
    for (int o = GS_WARP / 2; o > 0; o >>= 1) v += gs_shfl_xor(v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = GS_WARP / 2; o > 0; o >>= 1) v = fmaxf(v, gs_shfl_xor(v, o));
    return v;
}
// Sum (or max) over the block; every thread gets the result (warp sums, then the warps' in order). blockDim.x
// must be a multiple of GS_WARP; sh holds >= 32 values. Safe to call repeatedly (the first barrier protects sh
// from the last call).
template <bool MAX, typename T> __device__ __forceinline__ T block_reduce(T v, T *sh) {
    int lane = threadIdx.x % GS_WARP, w = threadIdx.x / GS_WARP, nw = blockDim.x / GS_WARP;
    if constexpr (MAX) v = warp_max(v);
    else v = warp_sum(v);
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    T t = MAX ? -INFINITY : 0;
    for (int i = 0; i < nw; i++) {
        if constexpr (MAX) t = fmaxf(t, sh[i]);
        else t += sh[i];
    }
    return t;
}
template <typename T> __device__ __forceinline__ T block_sum(T v, T *sh) { return block_reduce<false>(v, sh); }
__device__ __forceinline__ float block_max(float v, float *sh) { return block_reduce<true>(v, sh); }

// p[0] += a, p[1] += b atomically (p 8-byte aligned): one vector atomic on Hopper, two elsewhere
__device__ __forceinline__ void atomic_add2(float *p, float a, float b) {
#if GS_NVIDIA && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    atomicAdd((float2 *)p, make_float2(a, b));
#else
    atomicAdd(p, a);
    atomicAdd(p + 1, b);
#endif
}

// ----------------------------------------------------- NVIDIA tensor-core primitives (sm_80+)
#if GS_NVIDIA
// 16-byte global -> shared copy that bypasses registers; src_bytes = 0 writes zeros (out-of-range rows)
__device__ __forceinline__ void cp_async16(void *smem, const void *gmem, int src_bytes) {
#if GS_HAVE_MMA
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(src_bytes));
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if GS_HAVE_MMA
    asm volatile("cp.async.commit_group;\n" ::);
#endif
}
template <int N> __device__ __forceinline__ void cp_async_wait() {
#if GS_HAVE_MMA
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}
// four 8x8 bf16 matrices from shared memory; lane i gives the row address of matrix i/8, row i%8
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void *smem) {
#if GS_HAVE_MMA
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s));
#endif
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void *smem) {
#if GS_HAVE_MMA
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(s));
#endif
}
// D[16x8] += A[16x16] B[16x8], bf16 in, fp32 accumulate. Fragment layouts (g = lane/4, t = lane%4):
//   A: a0 (row g, k 2t..2t+1) a1 (row g+8, k 2t..) a2 (row g, k 2t+8..) a3 (row g+8, k 2t+8..)
//   B: b0 (k 2t..2t+1, col g) b1 (k 2t+8.., col g)
//   C: c0,c1 (row g, cols 2t, 2t+1) c2,c3 (row g+8, cols 2t, 2t+1)
__device__ __forceinline__ void mma_bf16_16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
#if GS_HAVE_MMA
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

// ------------------------------------------------ Hopper warpgroup products (NVIDIA sm_90a): wgmma
// A warpgroup (4 consecutive warps) multiplies 64 rows at once, operands read by the tensor cores straight from
// shared memory through 64-bit descriptors (B always, A optionally; A may come from registers). The product is
// asynchronous: wgmma_fence before the first (after any register write of its operands), wgmma_commit, then
// wgmma_wait<n> (at most n groups still running) before the accumulators are read; wgmma_hold tells the compiler
// the registers changed there (so it moves no read of them above the wait, no write below the fence).
// Shared memory the products read was written through the generic proxy (stores, cp.async): fence_async_smem
// after it lands, before the barrier. Layout here: 128-byte swizzle, rows of 64 bf16 (128 bytes) whose 16-byte
// chunk c of row r sits at c ^ (r % 8) (swz<64> in attention.h), 8-row groups 1024 bytes apart, 1024-aligned.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define GS_HAVE_WGMMA 1
#else
#define GS_HAVE_WGMMA 0  // host pass, or not built for sm_90a
#endif
// descriptor of a 128B-swizzled operand at smem: lbo / sbo the leading / stride byte offsets (K-major: sbo = 1024,
// the 8-row groups; MN-major: lbo = the distance of 64-element blocks along M or N, sbo = 1024 along K)
__device__ __forceinline__ uint64_t wgmma_desc(const void *smem, unsigned lbo, unsigned sbo) {
    uint64_t a = (uint64_t)__cvta_generic_to_shared(smem);
    return ((a & 0x3FFFF) >> 4) | ((uint64_t)(lbo >> 4) << 16) | ((uint64_t)(sbo >> 4) << 32) | (1ull << 62);
}
__device__ __forceinline__ void wgmma_fence() {
#if GS_HAVE_WGMMA
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmma_commit() {
#if GS_HAVE_WGMMA
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
template <int N> __device__ __forceinline__ void wgmma_wait() {
#if GS_HAVE_WGMMA
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}
template <int N> __device__ __forceinline__ void wgmma_hold(float (&r)[N]) {
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+f"(r[i])::"memory");
}
template <int N> __device__ __forceinline__ void wgmma_hold(uint32_t (&r)[N]) {
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+r"(r[i])::"memory");
}
// a barrier for the 128 threads of one warpgroup (named barrier id 1..15; 0 is __syncthreads')
__device__ __forceinline__ void warpgroup_sync(int id) {
#if GS_HAVE_WGMMA
    asm volatile("bar.sync %0, 128;\n" ::"r"(id) : "memory");
#endif
}
__device__ __forceinline__ void fence_async_smem() {
#if GS_HAVE_WGMMA
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}
// D[64x64] (+)= A[64x16] B[16x64] for the warpgroup, A and B from shared memory (K-major descriptors); scale_d = 0
// overwrites D. d[4j + e]: the C layout of mma_bf16_16816 for key chunk j, rows 16·(warp % 4) + g (+8)
__device__ __forceinline__ void wgmma_64x64_ss(float d[32], uint64_t da, uint64_t db, int scale_d) {
#if GS_HAVE_WGMMA
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, 0;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                 "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
                 "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                 "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
                 : "l"(da), "l"(db), "r"(scale_d));
#endif
}
// D[64x256] += A[64x16] B[16x256], A from registers (the A layout of mma_bf16_16816 per warp's 16 rows), B from
// shared memory N-major (an MN-major descriptor, transposed: imm-trans-b = 1)
__device__ __forceinline__ void wgmma_64x256_rs(float d[128], const uint32_t a[4], uint64_t db) {
#if GS_HAVE_WGMMA
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %133, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, {%128, %129, %130, %131}, %132, p, 1, 1, 1;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                 "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
                 "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
                 "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
                 "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
                 "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
                 "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
                 "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),
                 "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]),
                 "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]),
                 "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]),
                 "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]),
                 "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]),
                 "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]),
                 "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]),
                 "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
#endif
}

// ------------------------------------------------ thread-block clusters (NVIDIA sm_90+): the blocks of one
// cluster run at once on neighbouring SMs and read each other's shared memory. GS_CLUSTER(n) on a kernel
// makes its clusters n blocks along x (the grid a multiple of n); gs_have_cluster() says at run time whether
// the device has them (the kernels' bodies exist only where GS_HAVE_CLUSTER is 1).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define GS_HAVE_CLUSTER 1
#else
#define GS_HAVE_CLUSTER 0
#endif
#define GS_CLUSTER(n) __cluster_dims__(n, 1, 1)
__device__ __forceinline__ unsigned cluster_rank() {  // this block's index in its cluster
    unsigned r = 0;
#if GS_HAVE_CLUSTER
    asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
#endif
    return r;
}
// every thread of every block of the cluster arrives; shared-memory writes before it are visible after it
__device__ __forceinline__ void cluster_sync() {
#if GS_HAVE_CLUSTER
    asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::: "memory");
#endif
}
// *p in the shared memory of the cluster's block `rank` (p: this block's address of the same variable)
__device__ __forceinline__ float cluster_ld(const float *p, unsigned rank) {
    float v = 0.0f;
#if GS_HAVE_CLUSTER
    unsigned a = (unsigned)__cvta_generic_to_shared(p), r;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(r) : "r"(a), "r"(rank));
    asm volatile("ld.shared::cluster.f32 %0, [%1];\n" : "=f"(v) : "r"(r) : "memory");
#endif
    return v;
}
#endif  // GS_NVIDIA
#endif  // __cplusplus

static inline int gs_cc_major(void) {  // NVIDIA: the device's compute capability (major), once; AMD: 0
#if GS_NVIDIA
    static int major = -1;
    if (major < 0) {
        int dev;
        hipCheck(hipGetDevice(&dev));
        hipCheck(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    }
    return major;
#else
    return 0;
#endif
}
// host-side: whether the device has thread-block clusters (NVIDIA compute capability 9 and up; never on AMD), and
// Hopper's wgmma
static inline int gs_have_cluster(void) { return gs_cc_major() >= 9; }
static inline int gs_have_wgmma(void) { return gs_cc_major() == 9; }  // the binaries carry sm_90a code (Makefile)
// host-side: how many clusters of `kernel` (cluster size fixed at compile time by GS_CLUSTER, `threads` per
// block, static shared memory only) the device runs at once; 0 without clusters
static inline int gs_max_clusters(const void *kernel, int cluster, int threads) {
#if GS_NVIDIA
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(cluster, 1, 1), cfg.blockDim = dim3(threads, 1, 1);
    int n = 0;
    hipCheck(cudaOccupancyMaxActiveClusters(&n, kernel, &cfg));
    return n;
#else
    (void)kernel, (void)cluster, (void)threads;
    return 0;
#endif
}
// host-side: ceil division for grid sizes
static inline unsigned gs_cdiv(size_t a, size_t b) { return (unsigned)((a + b - 1) / b); }
// host-side: the blocks of a grid-stride kernel over `items`, `per_block` of them per block per pass: one pass where
// that takes at most 65536 blocks (enough to fill the device), otherwise 65536 and the kernel loops over the rest
static inline unsigned gs_grid(size_t items, size_t per_block) {
    size_t b = (items + per_block - 1) / per_block;
    return (unsigned)(b < 65536 ? (b ? b : 1) : 65536);
}
