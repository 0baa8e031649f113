// hip/embed.h — the token embedding, forward and backward (model.h model_forward / model_backward);
// checked and timed by hip/dev/embed.hip.
#pragma once
#include "colsum.h"

// =================================================================================================
// Embedding (model.h model_forward / model_backward): x = E[tok] · sqrt(d) · z_hidden
// =================================================================================================

__global__ void k_embed_fwd(float *x, const bf16 *E, const int *tok, const float *z, float scale, int N, int d) {
    size_t total = (size_t)N * d;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        int n = (int)(i / d), c = (int)(i % d);
        x[i] = bf2f(E[(size_t)tok[n] * d + c]) * scale * (z ? z[c] : 1.0f);
    }
}

// gE[tok[n], c] += dx[n, c] · scale · z_c. Rows repeat (the same token twice), so this adds atomically:
// the order of the fp32 additions, and so the last bits, can differ from run to run.
__global__ void k_embed_bwd(float *gE, const float *dx, const int *tok, const float *z, float scale, int N, int d) {
    size_t total = (size_t)N * d;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        int n = (int)(i / d), c = (int)(i % d);
        atomicAdd(&gE[(size_t)tok[n] * d + c], dx[i] * scale * (z ? z[c] : 1.0f));
    }
}

// d/dz_hidden of the embedding output: Σ_n dx[n, c] E[tok[n], c] (times scale in the finish)
struct TermEmbed {
    const float *dx;
    const bf16 *E;
    const int *tok;
    int d;
    __device__ float operator()(int n, int c) const { return dx[(size_t)n * d + c] * bf2f(E[(size_t)tok[n] * d + c]); }
};
