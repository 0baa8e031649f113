// hip/adamw.h — the optimizer over the flat parameter block and the gradient's sum of squares (model.h
// adamw_update, grad_norm2); checked and timed by hip/dev/adamw.hip.
#pragma once
#include "common.h"

// =================================================================================================
// AdamW over the whole flat parameter block (model.h adamw_update; torch.optim.AdamW semantics):
//   g *= gscale (clip and averaging); m = b1 m + (1−b1) g; v = b2 v + (1−b2) g²;
//   p *= 1 − lr·wd (decaying tensors only); p −= lr/bc1 · m / (sqrt(v)/sqrt(bc2) + eps); bf16 copy refreshed.
// seg_off[s] .. seg_off[s+1] is tensor s; seg_flag bit 0: weight decay, bit 1: frozen (not updated).
// =================================================================================================

__device__ __forceinline__ int seg_of(const size_t *seg_off, int nseg, size_t i) {  // the tensor holding element i
    int lo = 0, hi = nseg - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (seg_off[mid] <= i) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}
// one element; returns the new p (the caller stores it and its bf16 copy)
__device__ __forceinline__ float adamw_elem(float p, float g, float *m, float *v, unsigned char f, float lr, float b1,
                                            float b2, float eps, float wd, float bc1, float bc2s, float gscale) {
    if (f & 2) return p;
    float gi = g * gscale, mi = b1 * *m + (1.0f - b1) * gi, vi = b2 * *v + (1.0f - b2) * gi * gi;
    *m = mi, *v = vi;
    float pi = p * (1.0f - lr * ((f & 1) ? wd : 0.0f));
    return pi - (lr / bc1) * mi / (sqrtf(vi) / bc2s + eps);
}
// four elements per thread with 16-byte loads where one tensor holds all four (v1: one element and one
// segment search per thread), element by element across a tensor boundary
__global__ void k_adamw(float *p, bf16 *pb, const float *g, float *m, float *v, size_t total, const size_t *seg_off,
                        const unsigned char *seg_flag, int nseg, float lr, float b1, float b2, float eps, float wd,
                        float bc1, float bc2s, float gscale) {
    for (size_t q = blockIdx.x * (size_t)blockDim.x + threadIdx.x; q < (total + 3) / 4; q += (size_t)gridDim.x * blockDim.x) {
        size_t i = 4 * q;
        int sg = seg_of(seg_off, nseg, i);
        if (i + 4 <= total && seg_off[sg + 1] >= i + 4) {
            unsigned char f = seg_flag[sg];
            float pv[4], gv[4], mv[4], vv[4];
            ldv<4>(pv, p + i), ldv<4>(gv, g + i), ldv<4>(mv, m + i), ldv<4>(vv, v + i);
#pragma unroll
            for (int k = 0; k < 4; k++) pv[k] = adamw_elem(pv[k], gv[k], &mv[k], &vv[k], f, lr, b1, b2, eps, wd, bc1, bc2s, gscale);
            stv<4>(p + i, pv), stv<4>(pb + i, pv);
            if (!(f & 2)) stv<4>(m + i, mv), stv<4>(v + i, vv);
        } else
            for (size_t e = i; e < i + 4 && e < total; e++) {
                p[e] = adamw_elem(p[e], g[e], &m[e], &v[e], seg_flag[seg_of(seg_off, nseg, e)], lr, b1, b2, eps, wd, bc1,
                                  bc2s, gscale);
                pb[e] = f2bf(p[e]);
            }
    }
}

// Σ g² per block in double (the host adds the block sums in order: deterministic). g 16-byte aligned; four
// independent 16-byte loads per thread per pass (v1, one 4-byte load per pass, kept too few bytes in flight
// to reach the memory bandwidth: hip/dev/adamw.hip)
__device__ __forceinline__ double sumsq4(float4 a) {
    return (double)a.x * a.x + (double)a.y * a.y + (double)a.z * a.z + (double)a.w * a.w;
}
__global__ void k_sumsq(double *part, const float *g, size_t n) {
    __shared__ double sh[32];
    const float4 *g4 = (const float4 *)g;
    const size_t n4 = n / 4, st = (size_t)gridDim.x * blockDim.x, t0 = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    double s = 0;
    size_t i = t0;
    for (; i + 3 * st < n4; i += 4 * st) {
        float4 a[4] = {g4[i], g4[i + st], g4[i + 2 * st], g4[i + 3 * st]};
#pragma unroll
        for (int k = 0; k < 4; k++) s += sumsq4(a[k]);
    }
    for (; i < n4; i += st) s += sumsq4(g4[i]);
    for (size_t e = 4 * n4 + t0; e < n; e += st) s += (double)g[e] * g[e];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}
