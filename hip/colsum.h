// hip/colsum.h — deterministic column sums over the N token rows, the reduction the norms', masks' and
// embedding's parameter gradients share (their kernels hand k_colsum a term; hip/dev/rmsnorm.hip, gelu.hip,
// embed.hip and rope.hip check it through their ops).
#pragma once
#include "common.h"

// =================================================================================================
// Column sums: part[y][c] = Σ over the rows of block y of f(n, c). The weight, mask and gate
// gradients of the norms (and the masks' gradients) are such sums over N rows. Two passes (partials,
// then a fixed-order sum of the partials) keep them deterministic, unlike atomics; only the per-head
// and layer-gate totals of pruning add a handful of values atomically.
// Block (32, 8): threadIdx.x walks 32 adjacent columns (coalesced), threadIdx.y 8 rows.
// =================================================================================================

#define COLSUM_ROWS 128  // rows per partial (N / COLSUM_ROWS partials)

template <class Fn> __global__ void k_colsum(float *part, Fn f, int N, int C) {
    __shared__ float sh[8][33];
    int c = blockIdx.x * 32 + threadIdx.x;
    int n0 = blockIdx.y * COLSUM_ROWS, n1 = min(N, n0 + COLSUM_ROWS);
    float acc = 0;
    if (c < C)
        for (int n = n0 + threadIdx.y; n < n1; n += 8) acc += f(n, c);
    sh[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        float s = 0;
        for (int j = 0; j < 8; j++) s += sh[j][threadIdx.x];
        part[(size_t)blockIdx.y * C + c] = s;
    }
}

// f(n, c) = dy[n, c] · x[n, c] · r[n]   (r NULL: 1) — d y/d w of an RMSNorm, d/dz of a gated product
template <typename TY, typename TX> struct TermDyXR {
    const TY *dy;
    int lddy;
    const TX *x;
    int ldx;
    const float *r;
    __device__ float operator()(int n, int c) const {
        return ldf(dy, (size_t)n * lddy + c) * ldf(x, (size_t)n * ldx + c) * (r ? r[n] : 1.0f);
    }
};

// The second pass: t_c = Σ_b part[b][c], in a fixed order. Block (32, 32): threadIdx.x walks 32 adjacent
// columns, threadIdx.y 32 interleaved partial rows, then a fixed-order sum in shared memory. Valid in
// threads with threadIdx.y == 0.
__device__ __forceinline__ float colsum_parts(const float *part, int nrb, int C, int c) {
    __shared__ float sh[32][33];
    float t = 0;
    if (c < C)
        for (int b = threadIdx.y; b < nrb; b += 32) t += part[(size_t)b * C + c];
    sh[threadIdx.y][threadIdx.x] = t;
    __syncthreads();
    t = 0;
    if (threadIdx.y == 0)
        for (int j = 0; j < 32; j++) t += sh[j][threadIdx.x];
    return t;
}

// out[c / group] += scale · t_c  (group 1: per column; group D: per head, added atomically)
__global__ void k_colsum_finish(const float *part, int nrb, int C, int group, float scale, float *out) {
    int c = blockIdx.x * 32 + threadIdx.x;
    float t = colsum_parts(part, nrb, C, c);
    if (threadIdx.y != 0 || c >= C) return;
    if (group == 1) out[c] += scale * t;
    else atomicAdd(&out[c / group], scale * t);
}

// host launchers (one place for the launch shape)
static void colsum_finish(const float *part, int nrb, int C, int group, float scale, float *out) {
    k_colsum_finish<<<gs_cdiv(C, 32), dim3(32, 32)>>>(part, nrb, C, group, scale, out);
}
