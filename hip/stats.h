// hip/stats.h — what ./profile stats measures per layer (profile.c acc_batch), made on the device from the
// forward's own buffers and reduced there, so only per-layer sums come back: residual norms and Block Influence,
// attention entropy per head, FFN activity per channel. Checked end to end against the CPU's stats on a small model
// (hip/dev/run_device.sh `profile`). Sums run in a fixed order: the same inputs give the same bits.
#pragma once
#include "attention.h"
#include "common.h"

// --- residual contribution (profile.c resid_stats) ---------------------------------------------------------------
// Row n of [N, d]: ||x_in||, ||x_out·s||, 1 − cos(x_in, x_out) (0.5 where either is zero), ||x_out·s − x_in|| /
// ||x_in|| (0 where x_in is zero), s = 1 / *inv_s (NULL: 1; Gemma 4's MLP branch before layer_scalar) -> v[n][4].
// One warp per row, double accumulators as on the CPU.
__global__ void k_resid_rows(double *v, const float *xin, const float *xout, const float *inv_s, int d, int N) {
    int n = blockIdx.x * (blockDim.x / GS_WARP) + threadIdx.x / GS_WARP, lane = threadIdx.x % GS_WARP;
    if (n >= N) return;
    float s = inv_s && *inv_s != 0.0f ? 1.0f / *inv_s : 1.0f;
    const float *a = xin + (size_t)n * d, *b = xout + (size_t)n * d;
    double aa = 0, bb = 0, ab = 0, dd = 0;
    for (int i = lane; i < d; i += GS_WARP) {
        double x = a[i], y = (double)b[i] * s;
        aa += x * x, bb += y * y, ab += x * y, dd += (y - x) * (y - x);
    }
    aa = warp_sum(aa), bb = warp_sum(bb), ab = warp_sum(ab), dd = warp_sum(dd);
    if (lane) return;
    double na = sqrt(aa), nb = sqrt(bb);
    v[(size_t)n * 4] = na, v[(size_t)n * 4 + 1] = nb;
    v[(size_t)n * 4 + 2] = na > 0 && nb > 0 ? 1 - ab / (na * nb) : 0.5;
    v[(size_t)n * 4 + 3] = na > 0 ? sqrt(dd) / na : 0;
}

// acc[c] += Σ_n v[n][c] for c < C, one block per column, the rows in a fixed order (strided per thread, then
// common.h's block_sum)
__global__ void k_sum_cols(double *acc, const double *v, int N, int C) {
    __shared__ double sh[32];
    int c = blockIdx.x;
    double s = 0;
    for (int n = threadIdx.x; n < N; n += blockDim.x) s += v[(size_t)n * C + c];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) acc[c] += s;
}

// resid_stats(x_in, x_out) of N rows into acc[0..3] (rows: [N][4] doubles of scratch)
static void stats_resid(double *acc, double *rows, const float *xin, const float *xout, const float *inv_s, int d, int N) {
    k_resid_rows<<<gs_cdiv(N, 256 / GS_WARP), 256>>>(rows, xin, xout, inv_s, d, N);
    k_sum_cols<<<4, 256>>>(acc, rows, N, 4);
}

// --- attention entropy (profile.c attn_entropy) ------------------------------------------------------------------
// Query row (b, t, h), t >= 1: H = −Σ_j p_j ln p_j = lse − Σ_j p_j s_j over the keys it sees (p_j = exp(s_j − lse),
// the forward's lse), and H / ln(keys seen); row 0 sees one key (0, 0). One warp per row, like the portable forward.
// -> e[(n·H + h)·2 + {0, 1}]
__global__ void k_attn_entropy(float *e, AttnFwd f) {
    size_t row = (size_t)blockIdx.x * (blockDim.x / GS_WARP) + threadIdx.x / GS_WARP;
    int lane = threadIdx.x % GS_WARP;
    if (row >= (size_t)f.B * f.T * f.H) return;
    int h = (int)(row % f.H), g = h / (f.H / f.K);
    size_t n = row / f.H;
    int b = (int)(n / f.T), t = (int)(n % f.T);
    float qv[ATT_MAXE];
    attn_row_load(qv, f.q + n * f.ldq + h * f.D, f.D, lane);
    float L = f.lse[((size_t)b * f.H + h) * f.T + t], ps = 0, tc;
    int j0 = f.window > 0 && t - f.window + 1 > 0 ? t - f.window + 1 : 0;
    for (int j = j0; j <= t; j++) {
        const bf16 *kr = f.k + ((size_t)b * f.T + j) * f.ldk + g * f.D;
        float s = attn_score(warp_sum(attn_row_dot(qv, kr, f.D, lane)), f.scale, f.softcap, &tc);
        ps += __expf(s - L) * s;
    }
    if (lane) return;
    int nk = t - j0 + 1;
    float H = t > 0 ? fmaxf(L - ps, 0.0f) : 0.0f;  // rounding can take a near-one-hot row a hair below zero
    e[row * 2] = H, e[row * 2 + 1] = nk > 1 ? H / logf((float)nk) : 0.0f;
}

// ent[h] += Σ_n e[(n·H + h)·2], entn[h] += Σ_n e[(n·H + h)·2 + 1]: one block per (head, which), fixed order
__global__ void k_sum_heads(double *ent, double *entn, const float *e, int N, int H) {
    __shared__ double sh[32];
    int h = blockIdx.x % H, w = blockIdx.x / H;
    double s = 0;
    for (int n = threadIdx.x; n < N; n += blockDim.x) s += e[((size_t)n * H + h) * 2 + w];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) (w ? entn : ent)[h] += s;
}

// the first N token rows of the batch counted; rows: [B·T·H·2] floats of scratch
static void stats_entropy(double *ent, double *entn, float *rows, const AttnFwd &f, int N) {
    size_t nr = (size_t)f.B * f.T * f.H;
    k_attn_entropy<<<(unsigned)gs_cdiv(nr, 256 / GS_WARP), 256>>>(rows, f);
    k_sum_heads<<<2 * f.H, 256>>>(ent, entn, rows, N, f.H);
}

// --- FFN activity (profile.c ffn_activity) -----------------------------------------------------------------------
// thr[n] = tau · mean_i |h[n][i]| (one warp per row)
__global__ void k_ffn_thr(float *thr, const bf16 *h, int F, float tau, int N) {
    int n = blockIdx.x * (blockDim.x / GS_WARP) + threadIdx.x / GS_WARP, lane = threadIdx.x % GS_WARP;
    if (n >= N) return;
    double s = 0;
    for (int i = lane; i < F; i += GS_WARP) s += fabsf(bf2f(h[(size_t)n * F + i]));
    s = warp_sum(s);
    if (lane == 0) thr[n] = (float)(tau * s / F);
}
// per channel i and block of FFN_ROWS rows: Σ |h| and the count of |h| <= thr[n] into part[blockIdx.y][2][F]
#define FFN_ROWS 256
__global__ void k_ffn_part(double *part, const bf16 *h, const float *thr, int F, int N) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= F) return;
    int n0 = blockIdx.y * FFN_ROWS, n1 = n0 + FFN_ROWS < N ? n0 + FFN_ROWS : N;
    double s = 0, z = 0;
    for (int n = n0; n < n1; n++) {
        float x = fabsf(bf2f(h[(size_t)n * F + i]));
        s += x, z += x <= thr[n];
    }
    part[((size_t)blockIdx.y * 2) * F + i] = s, part[((size_t)blockIdx.y * 2 + 1) * F + i] = z;
}
__global__ void k_ffn_finish(double *abs_sum, double *near0, const double *part, int nb, int F) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= F) return;
    double s = 0, z = 0;
    for (int b = 0; b < nb; b++) s += part[((size_t)b * 2) * F + i], z += part[((size_t)b * 2 + 1) * F + i];
    abs_sum[i] += s, near0[i] += z;
}
// part: [ceil(N / FFN_ROWS)][2][F] doubles, thr: [N] floats of scratch
static void stats_ffn(double *abs_sum, double *near0, double *part, float *thr, const bf16 *h, int F, float tau, int N) {
    int nb = (int)gs_cdiv(N, FFN_ROWS);
    k_ffn_thr<<<gs_cdiv(N, 256 / GS_WARP), 256>>>(thr, h, F, tau, N);
    k_ffn_part<<<dim3(gs_cdiv(F, 256), nb), 256>>>(part, h, thr, F, N);
    k_ffn_finish<<<gs_cdiv(F, 256), 256>>>(abs_sum, near0, part, nb, F);
}
