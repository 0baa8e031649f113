// hip/rope.h — the per-head RMSNorm (q_norm, k_norm, Gemma 4's v norm) fused with RoPE, forward and
// backward (model.h headnorm_forward / rope_apply); checked and timed by hip/dev/rope.hip.
#pragma once
#include "colsum.h"  // colsum_finish sums the backward's weight-gradient partials

// =================================================================================================
// Per-head RMSNorm over D (q_norm, k_norm, Gemma 4's weightless v norm) fused with RoPE, NeoX halves
// (model.h headnorm_forward + rope_apply): rows (n, j) of nh heads at column `col` of the fused qkv
// rows; out[(n·nh + j)·D + i]. cs[t·D/2 + p] = (cos, sin) of position t, frequency p (NULL: no RoPE).
// One warp per row.
// =================================================================================================

// host: the cos/sin table of one RoPE, angles in fp32 exactly as model.h's rope_apply computes them:
// (float)inv_freq[i] * (float)t. h: [T][D/2].
static void rope_table_host(float2 *h, const float *inv, int T, int D) {
    for (int t = 0; t < T; t++)
        for (int i = 0; i < D / 2; i++) {
            float ang = inv[i] * (float)t;
            h[(size_t)t * (D / 2) + i] = make_float2(cosf(ang), sinf(ang));
        }
}

#define HN_MAXP 8
#define HN_ROWS 64  // rows per block of the backward
// PW adjacent frequency pairs per lane group (2 where D % 4 == 0: 4-byte bf16 and 8-byte fp32 loads; v1 was
// PW = 1, 2-byte loads, about 1.7 / 1.1 TB/s forward / backward): lane owns p = PW·(lane + GS_WARP·m) + e.

template <int PW>
__global__ void k_headnorm_rope_fwd(bf16 *out, float *rstd, const bf16 *qkv, int ld, int col, int nh, int D,
                                    const float *w, float off, const float2 *cs, int T, float eps, int N) {
    constexpr int M = HN_MAXP / PW;
    size_t row = (size_t)blockIdx.x * (blockDim.x / GS_WARP) + threadIdx.x / GS_WARP;
    int lane = threadIdx.x % GS_WARP, half = D / 2;
    if (row >= (size_t)N * nh) return;  // warp-uniform
    int n = (int)(row / nh), j = (int)(row % nh);
    const bf16 *x = qkv + (size_t)n * ld + col + (size_t)j * D;
    float xa[HN_MAXP], xb[HN_MAXP], ss = 0;
#pragma unroll
    for (int m = 0; m < M; m++) {
        int p = PW * (lane + GS_WARP * m);
        if (p >= half) continue;
        ldv<PW>(xa + PW * m, x + p);
        ldv<PW>(xb + PW * m, x + p + half);
#pragma unroll
        for (int e = 0; e < PW; e++) ss += xa[PW * m + e] * xa[PW * m + e] + xb[PW * m + e] * xb[PW * m + e];
    }
    float r = rsqrtf(warp_sum(ss) / D + eps);
    if (lane == 0) rstd[row] = r;
    bf16 *o = out + row * D;
    const float2 *c = cs ? cs + (size_t)(n % T) * half : NULL;
#pragma unroll
    for (int m = 0; m < M; m++) {
        int p = PW * (lane + GS_WARP * m);
        if (p >= half) continue;
        float oa[PW], ob[PW];
#pragma unroll
        for (int e = 0; e < PW; e++) {
            float a = xa[PW * m + e] * r * (w ? off + w[p + e] : 1.0f), b = xb[PW * m + e] * r * (w ? off + w[p + e + half] : 1.0f);
            if (c) {
                float cc = c[p + e].x, sn = c[p + e].y, a2 = a * cc - b * sn;
                b = b * cc + a * sn;
                a = a2;
            }
            oa[e] = a, ob[e] = b;
        }
        stv<PW>(o + p, oa);
        stv<PW>(o + p + half, ob);
    }
}

// Backward: dy [(n·nh + j)·D] (fp32 for dq, bf16 for dk/dv) -> inverse rotation -> norm backward ->
// dqkv columns (ACC adds: Gemma 4's K=V layers send k's and v's gradients to the same columns).
// part[blockIdx.x][i] = Σ over this block's rows of dyn_i x_i r (the weight gradient; dyn = un-rotated dy).
// HN_MAXP pairs per lane bound D <= 2·GS_WARP·HN_MAXP.
template <typename TD, bool ACC, int PW>
__global__ void k_headnorm_rope_bwd(bf16 *dqkv, float *part, const TD *dy, const bf16 *qkv, int ld, int col, int nh,
                                    int D, const float *rstd, const float *w, float off, const float2 *cs, int T, int N) {
    constexpr int M = HN_MAXP / PW;
    extern __shared__ float hn_sh[];  // [warps][D]
    int lane = threadIdx.x % GS_WARP, wi = threadIdx.x / GS_WARP, nw = blockDim.x / GS_WARP, half = D / 2;
    float acc_a[HN_MAXP], acc_b[HN_MAXP];
#pragma unroll
    for (int m = 0; m < HN_MAXP; m++) acc_a[m] = acc_b[m] = 0;
    size_t rows = (size_t)N * nh, r0 = (size_t)blockIdx.x * HN_ROWS;
    for (size_t row = r0 + wi; row < r0 + HN_ROWS && row < rows; row += nw) {
        int n = (int)(row / nh), j = (int)(row % nh);
        const bf16 *x = qkv + (size_t)n * ld + col + (size_t)j * D;
        bf16 *dx = dqkv + (size_t)n * ld + col + (size_t)j * D;
        const TD *g = dy + row * D;
        const float2 *c = cs ? cs + (size_t)(n % T) * half : NULL;
        float r = rstd[row], dot = 0;
        float da[HN_MAXP], db[HN_MAXP], xa[HN_MAXP], xb[HN_MAXP];
#pragma unroll
        for (int m = 0; m < M; m++) {
            int p = PW * (lane + GS_WARP * m);
            if (p >= half) continue;
            float ya[PW], yb[PW];
            ldv<PW>(ya, g + p), ldv<PW>(yb, g + p + half);
            ldv<PW>(xa + PW * m, x + p), ldv<PW>(xb + PW * m, x + p + half);
#pragma unroll
            for (int e = 0; e < PW; e++) {
                int k = PW * m + e;
                if (c) {  // inverse rotation (the transpose): a = ya c + yb s, b = yb c - ya s
                    float cc = c[p + e].x, sn = c[p + e].y;
                    da[k] = ya[e] * cc + yb[e] * sn;
                    db[k] = yb[e] * cc - ya[e] * sn;
                } else da[k] = ya[e], db[k] = yb[e];
                float ga = w ? off + w[p + e] : 1.0f, gb = w ? off + w[p + e + half] : 1.0f;
                dot += da[k] * ga * xa[k] + db[k] * gb * xb[k];
            }
        }
        float c3 = warp_sum(dot) * r * r * r / D;
#pragma unroll
        for (int m = 0; m < M; m++) {
            int p = PW * (lane + GS_WARP * m);
            if (p >= half) continue;
            float va[PW], vb[PW], oa[PW], ob[PW];
            if (ACC) ldv<PW>(oa, dx + p), ldv<PW>(ob, dx + p + half);
#pragma unroll
            for (int e = 0; e < PW; e++) {
                int k = PW * m + e;
                float ga = w ? off + w[p + e] : 1.0f, gb = w ? off + w[p + e + half] : 1.0f;
                va[e] = r * da[k] * ga - xa[k] * c3, vb[e] = r * db[k] * gb - xb[k] * c3;
                if (ACC) va[e] += oa[e], vb[e] += ob[e];
                acc_a[k] += da[k] * xa[k] * r;
                acc_b[k] += db[k] * xb[k] * r;
            }
            stv<PW>(dx + p, va);
            stv<PW>(dx + p + half, vb);
        }
    }
    if (!part) return;
#pragma unroll
    for (int m = 0; m < M; m++) {
        int p = PW * (lane + GS_WARP * m);
        if (p >= half) continue;
#pragma unroll
        for (int e = 0; e < PW; e++) hn_sh[wi * D + p + e] = acc_a[PW * m + e], hn_sh[wi * D + p + e + half] = acc_b[PW * m + e];
    }
    __syncthreads();
    for (int i = threadIdx.x; i < D; i += blockDim.x) {
        float s = 0;
        for (int k = 0; k < nw; k++) s += hn_sh[k * D + i];
        part[(size_t)blockIdx.x * D + i] = s;
    }
}

// host launchers (the launch shapes in one place); the backward returns its number of partial rows
static void headnorm_rope_fwd(bf16 *out, float *rstd, const bf16 *qkv, int ld, int col, int nh, int D, const float *w,
                              float off, const float2 *cs, int T, float eps, int N) {
    unsigned grid = gs_cdiv((size_t)N * nh, 4);
    if (D % 4 == 0) k_headnorm_rope_fwd<2><<<grid, 4 * GS_WARP>>>(out, rstd, qkv, ld, col, nh, D, w, off, cs, T, eps, N);
    else k_headnorm_rope_fwd<1><<<grid, 4 * GS_WARP>>>(out, rstd, qkv, ld, col, nh, D, w, off, cs, T, eps, N);
}
template <typename TD, bool ACC>
static int headnorm_rope_bwd(bf16 *dqkv, float *part, const TD *dy, const bf16 *qkv, int ld, int col, int nh, int D,
                             const float *rstd, const float *w, float off, const float2 *cs, int T, int N) {
    unsigned nb = gs_cdiv((size_t)N * nh, HN_ROWS);
    size_t sm = (size_t)(256 / GS_WARP) * D * sizeof(float);
    if (D % 4 == 0) k_headnorm_rope_bwd<TD, ACC, 2><<<nb, 256, sm>>>(dqkv, part, dy, qkv, ld, col, nh, D, rstd, w, off, cs, T, N);
    else k_headnorm_rope_bwd<TD, ACC, 1><<<nb, 256, sm>>>(dqkv, part, dy, qkv, ld, col, nh, D, rstd, w, off, cs, T, N);
    return (int)nb;
}
