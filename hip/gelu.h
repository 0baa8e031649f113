// hip/gelu.h — the gated GELU with the FFN mask, forward and backward (model.h gelu_tanh /
// gelu_tanh_grad); checked and timed by hip/dev/gelu.hip.
#pragma once
#include "colsum.h"

// =================================================================================================
// Gated GELU, tanh form (model.h gelu_tanh / gelu_tanh_grad): h = gelu(g) · u · z_ffn, from the fused
// gate|up rows gu [N, 2F]. gelu(x) = x · sigmoid(2u), u = sqrt(2/pi)(x + 0.044715 x³).
// =================================================================================================

__device__ __forceinline__ float gelu_f(float x) {
    const float c = 0.7978845608028654f;
    float u = c * (x + 0.044715f * x * x * x);
    return x / (1.0f + __expf(-2.0f * u));
}
__device__ __forceinline__ float gelu_grad_f(float x) {
    const float c = 0.7978845608028654f;
    float u = c * (x + 0.044715f * x * x * x), s = 1.0f / (1.0f + __expf(-2.0f * u));
    return s + 2.0f * x * s * (1.0f - s) * c * (1.0f + 3.0f * 0.044715f * x * x);
}

// VW adjacent channels per thread (8: 16-byte loads when F % 8 == 0, else 2: F is even, checked at
// gpu_create); blockIdx.y walks the rows. v1 was grid-stride over N·F/2 pairs, and its 64-bit index
// division held it to about half the memory bandwidth.

template <int VW> __global__ void k_gelu_fwd(bf16 *hm, const bf16 *gu, const float *zf, int N, int F) {
    int c = (blockIdx.x * blockDim.x + threadIdx.x) * VW;
    if (c >= F) return;
    for (size_t n = blockIdx.y; n < (size_t)N; n += gridDim.y) {
        float g[VW], u[VW], h[VW];
        ldv<VW>(g, gu + n * 2 * F + c);
        ldv<VW>(u, gu + n * 2 * F + F + c);
#pragma unroll
        for (int k = 0; k < VW; k++) h[k] = gelu_f(g[k]) * u[k] * (zf ? zf[c + k] : 1.0f);
        stv<VW>(hm + n * F + c, h);
    }
}

// dh = dhm · z;  d gate = dh · u · gelu'(g),  d up = dh · gelu(g). With hm != NULL it also rewrites the
// forward's gelu(g)·u·z (the down_proj weight gradient needs it), saving a second pass over gate|up.
// dgu may be gu (in place: each thread reads its elements before it writes them).
template <int VW>
__global__ void k_gelu_bwd(bf16 *dgu, bf16 *hm, const bf16 *dhm, const bf16 *gu, const float *zf, int N, int F) {
    int c = (blockIdx.x * blockDim.x + threadIdx.x) * VW;
    if (c >= F) return;
    for (size_t n = blockIdx.y; n < (size_t)N; n += gridDim.y) {
        float g[VW], u[VW], d[VW], dg[VW], du[VW];
        ldv<VW>(g, gu + n * 2 * F + c);
        ldv<VW>(u, gu + n * 2 * F + F + c);
        ldv<VW>(d, dhm + n * F + c);
#pragma unroll
        for (int k = 0; k < VW; k++) {
            float z = zf ? zf[c + k] : 1.0f, e = gelu_f(g[k]), dz = d[k] * z;
            dg[k] = dz * u[k] * gelu_grad_f(g[k]);
            du[k] = dz * e;
            d[k] = e * u[k] * z;  // the rewrite of hm
        }
        stv<VW>(dgu + n * 2 * F + c, dg);
        stv<VW>(dgu + n * 2 * F + F + c, du);
        if (hm) stv<VW>(hm + n * F + c, d);
    }
}

// host launchers: 128 threads across the channels, rows on the grid's y (at most 65535, the rest looped)
static dim3 gelu_grid(int N, int F, int vw) { return dim3(gs_cdiv(F / vw, 128), N < 65535 ? N : 65535); }
static void gelu_fwd(bf16 *hm, const bf16 *gu, const float *zf, int N, int F) {
    if (F % 8 == 0) k_gelu_fwd<8><<<gelu_grid(N, F, 8), 128>>>(hm, gu, zf, N, F);
    else k_gelu_fwd<2><<<gelu_grid(N, F, 2), 128>>>(hm, gu, zf, N, F);
}
static void gelu_bwd(bf16 *dgu, bf16 *hm, const bf16 *dhm, const bf16 *gu, const float *zf, int N, int F) {
    if (F % 8 == 0) k_gelu_bwd<8><<<gelu_grid(N, F, 8), 128>>>(dgu, hm, dhm, gu, zf, N, F);
    else k_gelu_bwd<2><<<gelu_grid(N, F, 2), 128>>>(dgu, hm, dhm, gu, zf, N, F);
}

// d/dz_ffn: Σ_n dhm[n, c] · gelu(g) · u
struct TermGelu {
    const bf16 *dhm, *gu;
    int F;
    __device__ float operator()(int n, int c) const {
        const bf16 *r = gu + (size_t)n * 2 * F;
        return bf2f(dhm[(size_t)n * F + c]) * gelu_f(bf2f(r[c])) * bf2f(r[F + c]);
    }
};
