// hip/xent.h — the fused softcapped cross-entropy over chunks of bf16 logits (model.h head_forward);
// checked and timed by hip/dev/xent.hip.
#pragma once
#include "common.h"

// =================================================================================================
// Fused softcapped cross-entropy over one chunk of bf16 logits rows (model.h head_forward). The full
// fp32 logits never exist: the head makes CHUNK rows of bf16 logits, this kernel turns them into the
// loss and, in place, the gradient of the mean loss:
//   s = c·tanh(z/c) (no cap: s = z),  loss_n = logsumexp(s) − s[tgt],
//   d/dz = (softmax(s) − onehot(tgt)) · (1 − (s/c)²) · inv_n.   tgt < 0: no loss, zero gradient.
// One block per row; online max/sum in one pass, the gradient in a second (hip/dev/xent.hip also holds a
// version that reads each row once, no faster).
// =================================================================================================

__device__ __forceinline__ float softcap_f(float z, float cap) { return cap > 0 ? cap * tanhf(z / cap) : z; }
// d loss / d logit of one element: (softmax − onehot) · softcap' · inv_n
__device__ __forceinline__ float xent_grad(bf16 raw, int i, int t, float lse, float cap, float inv_n) {
    float v = softcap_f(bf2f(raw), cap), g = __expf(v - lse) - (i == t ? 1.0f : 0.0f);
    if (cap > 0) g *= 1.0f - (v / cap) * (v / cap);
    return g * inv_n;
}

__global__ void k_xent(bf16 *logits, int V, const int *tgt, float cap, float inv_n, float *row_loss, int want_grad) {
    __shared__ float sh[32];
    bf16 *z = logits + (size_t)blockIdx.x * V;
    int t = tgt[blockIdx.x];
    if (t < 0) {
        if (threadIdx.x == 0) row_loss[blockIdx.x] = 0;
        if (want_grad)
            for (int i = threadIdx.x; i < V; i += blockDim.x) z[i] = 0;
        return;
    }
    float m = -INFINITY, s = 0;
    int vec = (V % 8) == 0;
    if (vec) {
        for (int i = threadIdx.x * 8; i < V; i += blockDim.x * 8) {
            uint4 raw = *(const uint4 *)(z + i);
            const bf16 *e = (const bf16 *)&raw;
            float v[8], mx = m;
#pragma unroll
            for (int k = 0; k < 8; k++) v[k] = softcap_f(bf2f(e[k]), cap), mx = fmaxf(mx, v[k]);
            s *= __expf(m - mx);
#pragma unroll
            for (int k = 0; k < 8; k++) s += __expf(v[k] - mx);
            m = mx;
        }
    } else {
        for (int i = threadIdx.x; i < V; i += blockDim.x) {
            float v = softcap_f(bf2f(z[i]), cap), mx = fmaxf(m, v);
            s = s * __expf(m - mx) + __expf(v - mx);
            m = mx;
        }
    }
    float M = block_max(m, sh);
    float S = block_sum(m == -INFINITY ? 0.0f : s * __expf(m - M), sh);
    float lse = M + logf(S);
    if (threadIdx.x == 0) row_loss[blockIdx.x] = lse - softcap_f(bf2f(z[t]), cap);
    if (!want_grad) return;
    __syncthreads();  // every thread has read z[t] before it is overwritten
    if (vec) {  // last chunk first: the end of the row, read last, may still be in L2
        for (int c = (V / 8 + blockDim.x - 1) / blockDim.x - 1; c >= 0; c--) {
            int i = (c * blockDim.x + threadIdx.x) * 8;
            if (i >= V) continue;
            uint4 raw = *(const uint4 *)(z + i), out;
            const bf16 *e = (const bf16 *)&raw;
            uint32_t *o = (uint32_t *)&out;
#pragma unroll
            for (int k = 0; k < 4; k++)
                o[k] = pack_bf16x2(xent_grad(e[2 * k], i + 2 * k, t, lse, cap, inv_n),
                                   xent_grad(e[2 * k + 1], i + 2 * k + 1, t, lse, cap, inv_n));
            *(uint4 *)(z + i) = out;
        }
    } else
        for (int i = threadIdx.x; i < V; i += blockDim.x) z[i] = f2bf(xent_grad(z[i], i, t, lse, cap, inv_n));
}
