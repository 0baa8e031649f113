// hip/elementwise.h — small elementwise kernels over the step's state (gradient ranges zeroed, a scale,
// the bf16 copy of the weights, random init); hip/dev/check_step.c covers them through the whole step.
#pragma once
#include "common.h"

// x[off .. off+len) = 0 for each (off, len) pair of rng; blockIdx.y picks the pair (fp32 or bf16 gradients)
template <typename T> __global__ void k_zero_ranges(T *x, const size_t *rng) {
    size_t off = rng[2 * blockIdx.y], len = rng[2 * blockIdx.y + 1];
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < len; i += (size_t)gridDim.x * blockDim.x) x[off + i] = 0;
}
__global__ void k_add_f32(float *x, const float *y, size_t n) {  // x += y (ZeRO 2: a unit's part into the shard)
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) x[i] += y[i];
}
__global__ void k_scale_f32(float *x, const float *s, size_t n) {  // x *= *s (Gemma 4's layer_scalar)
    float v = *s;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) x[i] *= v;
}

__global__ void k_f32_to_bf16(bf16 *o, const float *x, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        o[i] = f2bf(x[i]);
}
__global__ void k_bf16_to_f32(float *o, const bf16 *x, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        o[i] = bf2f(x[i]);
}

// =================================================================================================
// Random init on the device (benchmarks: a 1B model need not pass through host memory):
// w[i] = std · N(0,1) from a counter-based hash of (seed, i0 + i) (splitmix64, Box–Muller), or `value` when
// std == 0; i0: where this piece starts in its tensor (a tensor drawn in pieces gets the values drawn whole).
// =================================================================================================

__device__ __forceinline__ uint64_t splitmix64_at(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}
__global__ void k_init(float *w, size_t n, size_t i0, uint64_t seed, float std, float value) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        if (std == 0.0f) {
            w[i] = value;
            continue;
        }
        uint64_t h = splitmix64_at(seed * 0x100000001B3ull + i0 + i);
        float u1 = ((h >> 40) + 1) * (1.0f / 16777217.0f), u2 = ((h >> 16) & 0xffffff) * (1.0f / 16777216.0f);
        w[i] = std * sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
    }
}
