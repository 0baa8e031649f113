// hip/rmsnorm.h — RMSNorm over d with the pruning masks, the residual adds around it and the backward's
// way back along the residual stream (model.h rmsnorm_forward / rmsnorm_backward); checked and timed by
// hip/dev/rmsnorm.hip.
// Conventions: N = B*T token rows, row-major; the residual stream is fp32, everything a matrix
// product reads or writes is bf16; norm weights, masks and statistics are fp32.
#pragma once
#include "colsum.h"

// The gradients an RMSNorm's output scale (off + w_c) · z_c · gate hands to w, z and gate, from
// t_c = Σ_n dy_c x_c r (model.h rmsnorm_backward): dw_c += t z gate, dz_c += t (off + w) gate,
// dgate += Σ_c t (off + w) z (atomically). Any of dw, dz, dgate may be NULL.
__global__ void k_norm_grads_finish(const float *part, int nrb, int C, float *dw, float *dz, float *dgate,
                                    const float *w, float off, const float *z, float gate) {
    int c = blockIdx.x * 32 + threadIdx.x;
    float t = colsum_parts(part, nrb, C, c);
    if (threadIdx.y != 0 || c >= C) return;
    float g = w ? off + w[c] : 1.0f, zc = z ? z[c] : 1.0f;
    if (dw) dw[c] += t * zc * gate;
    if (dz) dz[c] += t * g * gate;
    if (dgate) atomicAdd(dgate, t * g * zc);
}

static void norm_grads_finish(const float *part, int nrb, int C, float *dw, float *dz, float *dgate, const float *w,
                              float off, const float *z, float gate) {
    k_norm_grads_finish<<<gs_cdiv(C, 32), dim3(32, 32)>>>(part, nrb, C, dw, dz, dgate, w, off, z, gate);
}

// =================================================================================================
// RMSNorm over d with the masks of pruning (model.h rms_row_forward / rms_row_backward):
//   y_c = x_c · r · (off + w_c) · z_c · gate,  r = 1/sqrt(Σ_{c kept} x_c² / n_kept + eps),
//   kept = {c : z_c != 0} (all when z is NULL), inv_kept = 1/n_kept. One block per row.
// =================================================================================================

template <typename TX>
__device__ __forceinline__ float row_rstd(const TX *x, const float *z, float inv_kept, float eps, int C, float *sh) {
    float ss = 0;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float v = ldf(x, c);
        if (!z || z[c] != 0.0f) ss += v * v;
    }
    ss = block_sum(ss, sh);
    return rsqrtf(ss * inv_kept + eps);
}

// y = RMSNorm(x) as bf16 (the input of the next matrix product); rstd saved for the backward
template <typename TX>
__global__ void k_norm_fwd(bf16 *y, float *rstd, const TX *x, const float *w, float off, const float *z,
                           float inv_kept, float eps, int C) {
    __shared__ float sh[32];
    size_t n = blockIdx.x;
    const TX *xr = x + n * C;
    float r = row_rstd(xr, z, inv_kept, eps, C, sh);
    if (threadIdx.x == 0) rstd[n] = r;
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        y[n * C + c] = f2bf(ldf(xr, c) * r * (w ? off + w[c] : 1.0f) * (z ? z[c] : 1.0f));
}

// out = (res + RMSNorm(x) · gate) · ls: a branch output (post_attention / post_feedforward norm, layer
// gate after it) added to the residual stream; ls is Gemma 4's layer_scalar (NULL: 1)
__global__ void k_norm_add_fwd(float *out, float *rstd, const float *res, const bf16 *x, const float *w, float off,
                               const float *z, float inv_kept, float gate, const float *ls, float eps, int C) {
    __shared__ float sh[32];
    size_t n = blockIdx.x;
    const bf16 *xr = x + n * C;
    float r = row_rstd(xr, z, inv_kept, eps, C, sh), s = ls ? *ls : 1.0f;
    if (threadIdx.x == 0) rstd[n] = r;
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        out[n * C + c] = (res[n * C + c] + bf2f(xr[c]) * r * (w ? off + w[c] : 1.0f) * (z ? z[c] : 1.0f) * gate) * s;
}

// Backward of the row given dy: d_c = r dy_c g_c - x_c r³/n_kept Σ_{j kept} dy_j g_j x_j, g = (off+w)·z·gate,
// over kept c. ACC: dx (fp32) += d (the residual stream); otherwise dx (bf16) = d, 0 where not kept.
template <typename TY, typename TX, typename TO, bool ACC>
__global__ void k_norm_bwd(TO *dx, const TY *dy, const TX *x, const float *rstd, const float *w, float off,
                           const float *z, float inv_kept, float gate, int C) {
    __shared__ float sh[32];
    size_t n = blockIdx.x;
    const TY *dyr = dy + n * C;
    const TX *xr = x + n * C;
    float r = rstd[n], dot = 0;
    for (int c = threadIdx.x; c < C; c += blockDim.x)
        if (!z || z[c] != 0.0f) dot += ldf(dyr, c) * (w ? off + w[c] : 1.0f) * (z ? z[c] : 1.0f) * ldf(xr, c);
    dot = block_sum(dot, sh) * gate;
    float c3 = dot * r * r * r * inv_kept;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        int kept = !z || z[c] != 0.0f;
        float d = kept ? r * ldf(dyr, c) * (w ? off + w[c] : 1.0f) * (z ? z[c] : 1.0f) * gate - ldf(xr, c) * c3 : 0.0f;
        if (ACC) {
            if (kept) stf(dx, n * C + c, ldf(dx, n * C + c) + d);
        } else stf(dx, n * C + c, d);
    }
}

// v2: one warp per row with the row in registers, for d % 4 == 0 and d <= 4·GS_WARP·ROW_MAXNV (the v1
// kernels above take every other d). Lane holds columns 4(lane + GS_WARP·j) .. +3 for j < NV: 16-byte fp32
// and 8-byte bf16 loads, each input read once, statistics by warp shuffles. The backward takes ROW_BLOCK
// rows per block and leaves the column partial t_c = Σ dy_c x_c r of its rows in
// part[blockIdx.x] (the warps added in a fixed order), so the norm's parameter gradients need no second
// pass over dy and x. Same arithmetic per element as v1 (only the order of the sums differs).
#define ROW_MAXNV 12
#define ROW_WARPS 8
#define ROW_BLOCK 32

#define ROW_COLS(j) (4 * (lane + GS_WARP * (j)))  // first column of lane's j-th group
#define ROW_W(w, off, c) ((w) ? (off) + (w)[c] : 1.0f)
#define ROW_Z(z, c) ((z) ? (z)[c] : 1.0f)
#define ROW_KEPT(z, c) (!(z) || (z)[c] != 0.0f)

// lane's columns of row xr into v; returns the row's Σ x² over kept columns (all lanes)
template <int NV, typename TX>
__device__ __forceinline__ float row_load_ss(float v[NV][4], const TX *xr, const float *z, int C, int lane) {
    float ss = 0;
#pragma unroll
    for (int j = 0; j < NV; j++) {
        int c = ROW_COLS(j);
        if (c >= C) continue;
        ldv<4>(v[j], xr + c);
#pragma unroll
        for (int i = 0; i < 4; i++)
            if (ROW_KEPT(z, c + i)) ss += v[j][i] * v[j][i];
    }
    return warp_sum(ss);
}
// yr = v · r · (off + w) · z as bf16 (lane's columns)
template <int NV>
__device__ __forceinline__ void row_store_norm(bf16 *yr, const float v[NV][4], float r, const float *w, float off,
                                               const float *z, int C, int lane) {
#pragma unroll
    for (int j = 0; j < NV; j++) {
        int c = ROW_COLS(j);
        if (c >= C) continue;
        float o[4];
#pragma unroll
        for (int i = 0; i < 4; i++) o[i] = v[j][i] * r * ROW_W(w, off, c + i) * ROW_Z(z, c + i);
        stv<4>(yr + c, o);
    }
}

// y = RMSNorm(x) as bf16, rstd saved (k_norm_fwd)
template <int NV, typename TX>
__global__ void k_rnorm_fwd(bf16 *y, float *rstd, const TX *x, const float *w, float off, const float *z, float inv_kept,
                            float eps, int C, int N) {
    int lane = threadIdx.x % GS_WARP;
    size_t n = (size_t)blockIdx.x * (blockDim.x / GS_WARP) + threadIdx.x / GS_WARP;
    if (n >= (size_t)N) return;  // warp-uniform
    float v[NV][4];
    float r = rsqrtf(row_load_ss<NV>(v, x + n * C, z, C, lane) * inv_kept + eps);
    if (lane == 0) rstd[n] = r;
    row_store_norm<NV>(y + n * C, v, r, w, off, z, C, lane);
}

// out = (res + RMSNorm(x)·gate)·ls (k_norm_add_fwd); with NORM2 also y2 = RMSNorm(out; w2) as bf16 and its
// rstd2: the post-attention norm, the residual add and the pre-feedforward norm in one pass
template <int NV, bool NORM2>
__global__ void k_rnorm_add_fwd(float *out, float *rstd, const float *res, const bf16 *x, const float *w, float off,
                                const float *z, float inv_kept, float gate, const float *ls, float eps, int C, int N,
                                bf16 *y2, float *rstd2, const float *w2) {
    int lane = threadIdx.x % GS_WARP;
    size_t n = (size_t)blockIdx.x * (blockDim.x / GS_WARP) + threadIdx.x / GS_WARP;
    if (n >= (size_t)N) return;
    float v[NV][4];
    float r = rsqrtf(row_load_ss<NV>(v, x + n * C, z, C, lane) * inv_kept + eps), s = ls ? *ls : 1.0f, ss2 = 0;
    if (lane == 0) rstd[n] = r;
#pragma unroll
    for (int j = 0; j < NV; j++) {
        int c = ROW_COLS(j);
        if (c >= C) continue;
        float rs[4];
        ldv<4>(rs, res + n * C + c);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            v[j][i] = (rs[i] + v[j][i] * r * ROW_W(w, off, c + i) * ROW_Z(z, c + i) * gate) * s;
            if (NORM2 && ROW_KEPT(z, c + i)) ss2 += v[j][i] * v[j][i];
        }
        stv<4>(out + n * C + c, v[j]);
    }
    if (!NORM2) return;
    float r2 = rsqrtf(warp_sum(ss2) * inv_kept + eps);
    if (lane == 0) rstd2[n] = r2;
    row_store_norm<NV>(y2 + n * C, v, r2, w2, off, z, C, lane);
}

// The backward's view of layer l without a kept residual (the forward keeps only the stream after the last layer):
// from x = x_next (fp32, overwritten with the layer's input) undo the two adds of k_rnorm_add_fwd,
//   x2 = x_next / ls - RMSNorm(f)·gate,   x = x2 - RMSNorm(o)·gate,
// with the forward's saved 1/rms (rf, ro), and make the norms of the two inputs the weight gradients need,
//   y1 = RMSNorm(x2; w1) (saved r1: pre-feedforward),   y0 = RMSNorm(x; w0) (saved r0: input norm), as bf16.
// Purely elementwise: each value is off by at most an ulp of x_next from the forward's (fp32 rounding of the add
// undone), far below the bf16 roundings the backward already makes. VW columns per thread (4: 16-byte loads).
template <int VW>
__global__ void k_residual_undo(float *x, float *x2, bf16 *y1, bf16 *y0, const bf16 *f, const bf16 *o, const float *rf,
                                const float *ro, const float *r1, const float *r0, const float *wf, const float *wo,
                                const float *w1, const float *w0, float off, const float *z, float gate,
                                const float *ls, int C, size_t total) {
    float inv_s = ls ? 1.0f / *ls : 1.0f;
    for (size_t i = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) * VW; i < total; i += (size_t)gridDim.x * blockDim.x * VW) {
        size_t n = i / C;
        int c = (int)(i - n * C);
        float xv[VW], fv[VW], ov[VW], a[VW], b[VW];
        ldv<VW>(xv, x + i), ldv<VW>(fv, f + i), ldv<VW>(ov, o + i);
        float rfn = rf[n], ron = ro[n], r1n = r1[n], r0n = r0[n];
#pragma unroll
        for (int k = 0; k < VW; k++) {
            float zc = ROW_Z(z, c + k);
            a[k] = xv[k] * inv_s - fv[k] * rfn * ROW_W(wf, off, c + k) * zc * gate;  // x2
            b[k] = a[k] - ov[k] * ron * ROW_W(wo, off, c + k) * zc * gate;           // x
            xv[k] = a[k] * r1n * ROW_W(w1, off, c + k) * zc, fv[k] = b[k] * r0n * ROW_W(w0, off, c + k) * zc;
        }
        stv<VW>(x2 + i, a), stv<VW>(x + i, b), stv<VW>(y1 + i, xv), stv<VW>(y0 + i, fv);
    }
}
static void residual_undo(float *x, float *x2, bf16 *y1, bf16 *y0, const bf16 *f, const bf16 *o, const float *rf,
                          const float *ro, const float *r1, const float *r0, const float *wf, const float *wo,
                          const float *w1, const float *w0, float off, const float *z, float gate, const float *ls, int C,
                          int N) {
    size_t total = (size_t)N * C;
    unsigned blocks = gs_grid(total, 4 * 256);
    if (C % 4 == 0)
        k_residual_undo<4><<<blocks, 256>>>(x, x2, y1, y0, f, o, rf, ro, r1, r0, wf, wo, w1, w0, off, z, gate, ls, C, total);
    else
        k_residual_undo<1><<<blocks, 256>>>(x, x2, y1, y0, f, o, rf, ro, r1, r0, wf, wo, w1, w0, off, z, gate, ls, C, total);
}

// The backward of k_norm_bwd, plus part[blockIdx.x][c] = Σ over the block's rows of dy_c x_c r. Blocks of
// ROWB_WARPS warps; (off + w)·z and z sit in shared memory (v2's first version read them from global memory
// twice per row, and kept every column partial in registers: 144 registers, one block per SM, 1.3 TB/s); each
// warp adds its rows into its own shared partial, and the warps' partials are added in a fixed order at the end.
#define ROWB_WARPS 4
template <int NV, typename TY, typename TX, typename TO, bool ACC>
__global__ void __launch_bounds__(ROWB_WARPS * GS_WARP, 4)
    k_rnorm_bwd(TO *dx, float *part, const TY *dy, const TX *x, const float *rstd, const float *w, float off,
                const float *z, float inv_kept, float gate, int C, int N) {
    extern __shared__ float row_sh[];  // [2 + warps][C]: (off + w)·z, z, then one partial per warp
    int lane = threadIdx.x % GS_WARP, wi = threadIdx.x / GS_WARP, nw = blockDim.x / GS_WARP;
    float *sg = row_sh, *sz = row_sh + C, *sacc = row_sh + (size_t)(2 + wi) * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) sg[c] = ROW_W(w, off, c) * ROW_Z(z, c), sz[c] = ROW_Z(z, c);
#pragma unroll
    for (int j = 0; j < NV; j++)
        if (ROW_COLS(j) < C) *(float4 *)(sacc + ROW_COLS(j)) = make_float4(0, 0, 0, 0);
    __syncthreads();
    size_t n0 = (size_t)blockIdx.x * ROW_BLOCK;
    for (size_t n = n0 + wi; n < n0 + ROW_BLOCK && n < (size_t)N; n += nw) {
        float a[NV][4], b[NV][4], o[ACC ? NV : 1][4], dot = 0, r = rstd[n];
#pragma unroll
        for (int j = 0; j < NV; j++) {
            int c = ROW_COLS(j);
            if (c >= C) continue;
            ldv<4>(a[j], dy + n * C + c);
            ldv<4>(b[j], x + n * C + c);
            if (ACC) ldv<4>(o[ACC ? j : 0], dx + n * C + c);
        }
#pragma unroll
        for (int j = 0; j < NV; j++) {
            int c = ROW_COLS(j);
            if (c >= C) continue;
            float4 g4 = *(const float4 *)(sg + c);
            dot += a[j][0] * g4.x * b[j][0] + a[j][1] * g4.y * b[j][1] + a[j][2] * g4.z * b[j][2] + a[j][3] * g4.w * b[j][3];
        }
        dot = warp_sum(dot) * gate;  // columns not kept have (off + w)·z = 0: they add nothing
        float c3 = dot * r * r * r * inv_kept;
#pragma unroll
        for (int j = 0; j < NV; j++) {
            int c = ROW_COLS(j);
            if (c >= C) continue;
            float4 g4 = *(const float4 *)(sg + c), z4 = *(const float4 *)(sz + c), t = *(float4 *)(sacc + c);
            float gv[4] = {g4.x, g4.y, g4.z, g4.w}, zv[4] = {z4.x, z4.y, z4.z, z4.w}, d[4];
#pragma unroll
            for (int i = 0; i < 4; i++) {
                d[i] = zv[i] != 0.0f ? r * a[j][i] * gv[i] * gate - b[j][i] * c3 : 0.0f;
                if (ACC && zv[i] != 0.0f) o[ACC ? j : 0][i] += d[i];
            }
            t.x += a[j][0] * b[j][0] * r, t.y += a[j][1] * b[j][1] * r, t.z += a[j][2] * b[j][2] * r, t.w += a[j][3] * b[j][3] * r;
            *(float4 *)(sacc + c) = t;
            stv<4>(dx + n * C + c, ACC ? o[ACC ? j : 0] : d);
        }
    }
    __syncthreads();
    for (int c = threadIdx.x; c < C; c += blockDim.x) {  // fixed order over the warps
        float t = 0;
        for (int k = 0; k < nw; k++) t += row_sh[(size_t)(2 + k) * C + c];
        part[(size_t)blockIdx.x * C + c] = t;
    }
}

// host: the v2 register count for C columns, 0 when C needs v1
static int row_nv(int C) { return C % 4 == 0 && C <= 4 * GS_WARP * ROW_MAXNV ? (int)gs_cdiv(C, 4 * GS_WARP) : 0; }
#define ROW_CASE(k, ...)              \
    case k: {                         \
        constexpr int NV = k;         \
        __VA_ARGS__;                  \
    } break;
#define ROW_SWITCH(nv, ...)                                                                                        \
    switch (nv) {                                                                                                  \
        ROW_CASE(1, __VA_ARGS__) ROW_CASE(2, __VA_ARGS__) ROW_CASE(3, __VA_ARGS__) ROW_CASE(4, __VA_ARGS__)      \
        ROW_CASE(5, __VA_ARGS__) ROW_CASE(6, __VA_ARGS__) ROW_CASE(7, __VA_ARGS__) ROW_CASE(8, __VA_ARGS__)      \
        ROW_CASE(9, __VA_ARGS__) ROW_CASE(10, __VA_ARGS__) ROW_CASE(11, __VA_ARGS__) ROW_CASE(12, __VA_ARGS__) \
    }

// host launchers: v2 where row_nv allows, v1 otherwise
template <typename TX>
static void norm_fwd(bf16 *y, float *rstd, const TX *x, const float *w, float off, const float *z, float inv_kept,
                     float eps, int C, int N) {
    int nv = row_nv(C);
    if (!nv) k_norm_fwd<TX><<<N, 128>>>(y, rstd, x, w, off, z, inv_kept, eps, C);
    else ROW_SWITCH(nv, k_rnorm_fwd<NV, TX><<<gs_cdiv(N, ROW_WARPS), ROW_WARPS * GS_WARP>>>(y, rstd, x, w, off, z, inv_kept, eps, C, N))
}
// out = (res + RMSNorm(x)·gate)·ls; y2 != NULL: also y2 = RMSNorm(out; w2), rstd2
static void norm_add_fwd(float *out, float *rstd, const float *res, const bf16 *x, const float *w, float off,
                         const float *z, float inv_kept, float gate, const float *ls, float eps, int C, int N, bf16 *y2,
                         float *rstd2, const float *w2) {
    int nv = row_nv(C);
    if (!nv) {
        k_norm_add_fwd<<<N, 128>>>(out, rstd, res, x, w, off, z, inv_kept, gate, ls, eps, C);
        if (y2) k_norm_fwd<float><<<N, 128>>>(y2, rstd2, out, w2, off, z, inv_kept, eps, C);
    } else if (y2)
        ROW_SWITCH(nv, k_rnorm_add_fwd<NV, true><<<gs_cdiv(N, ROW_WARPS), ROW_WARPS * GS_WARP>>>(
                           out, rstd, res, x, w, off, z, inv_kept, gate, ls, eps, C, N, y2, rstd2, w2))
    else
        ROW_SWITCH(nv, k_rnorm_add_fwd<NV, false><<<gs_cdiv(N, ROW_WARPS), ROW_WARPS * GS_WARP>>>(
                           out, rstd, res, x, w, off, z, inv_kept, gate, ls, eps, C, N, y2, rstd2, w2))
}
// dx (ACC: +=) the input gradient; part[b][c] partial column sums of dy x r; returns the number of partials b
template <typename TY, typename TX, typename TO, bool ACC>
static int norm_bwd(TO *dx, float *part, const TY *dy, const TX *x, const float *rstd, const float *w, float off,
                    const float *z, float inv_kept, float gate, int C, int N) {
    int nv = row_nv(C);
    if (nv) {
        int nb = (int)gs_cdiv(N, ROW_BLOCK);
        ROW_SWITCH(nv, k_rnorm_bwd<NV, TY, TX, TO, ACC><<<nb, ROWB_WARPS * GS_WARP, sizeof(float) * (2 + ROWB_WARPS) * C>>>(
                           dx, part, dy, x, rstd, w, off, z, inv_kept, gate, C, N))
        return nb;
    }
    k_norm_bwd<TY, TX, TO, ACC><<<N, 128>>>(dx, dy, x, rstd, w, off, z, inv_kept, gate, C);
    int nrb = (int)gs_cdiv(N, COLSUM_ROWS);
    TermDyXR<TY, TX> f = {dy, C, x, C, rstd};
    k_colsum<<<dim3(gs_cdiv(C, 32), nrb), dim3(32, 8)>>>(part, f, N, C);
    return nrb;
}
// the partial rows norm_bwd leaves for N rows of C columns (the size of part)
static size_t norm_bwd_parts(int C, int N) { return (size_t)(row_nv(C) ? gs_cdiv(N, ROW_BLOCK) : gs_cdiv(N, COLSUM_ROWS)) * C; }
