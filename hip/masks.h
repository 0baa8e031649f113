// hip/masks.h — the pruning masks' own kernels: the head gate on the attention output and the
// hard-concrete sample (prune.c masks_from_u); checked by hip/dev/masks.hip.
#pragma once
#include "common.h"

// =================================================================================================
// Head mask (model.h: attention output · zh before o_proj): y = x · zh[h]; y == x scales in place
// =================================================================================================

__global__ void k_head_gate(bf16 *y, const bf16 *x, const float *zh, int N, int H, int D) {
    size_t total = (size_t)N * H * D;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x)
        y[i] = f2bf(bf2f(x[i]) * zh[(i / D) % H]);
}

// =================================================================================================
// Hard-concrete masks (prune.c masks_from_u): l = −0.1, r = 1.1, β = 2/3
//   z = clamp01(sigmoid((ln u − ln(1−u) + log_alpha)/β)·(r − l) + l), dz/d log_alpha = (r−l) s(1−s)/β
//   where 0 < z < 1 (0 where clamped); then d loss/d log_alpha = dz · dz/d log_alpha.
// In double, like the CPU path (the masks are small).
// =================================================================================================

__global__ void k_hard_concrete(float *z, float *dzdla, const float *la, const float *u, size_t n) {
    const double L = -0.1, R = 1.1, BETA = 2.0 / 3.0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        double uu = u[i], s = 1.0 / (1.0 + exp(-((log(uu) - log1p(-uu) + la[i]) / BETA))), zr = s * (R - L) + L;
        z[i] = (float)(zr <= 0 ? 0 : zr >= 1 ? 1 : zr);
        dzdla[i] = (float)(zr > 0 && zr < 1 ? (R - L) * s * (1 - s) / BETA : 0);
    }
}

__global__ void k_mul(float *o, const float *a, const float *b, size_t n) {  // o = a·b elementwise
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        o[i] = a[i] * b[i];
}
