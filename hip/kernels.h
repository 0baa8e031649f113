// hip/kernels.h — the hand-written kernels of one Gemma training / pruning step, except attention
// (hip/attention.h) and the matrix products (hip/blas.hip, the vendor BLAS). Each kernel mirrors one
// CPU op of model.h (named in its comment); hip/dev/<op>.hip checks it against that op and times it.
// Conventions: N = B*T token rows, row-major; the residual stream is fp32, everything a matrix
// product reads or writes is bf16; norm weights, masks and statistics are fp32.
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

// host launchers (one place for the launch shape)
static void colsum_finish(const float *part, int nrb, int C, int group, float scale, float *out) {
    k_colsum_finish<<<gs_cdiv(C, 32), dim3(32, 32)>>>(part, nrb, C, group, scale, out);
}
static void norm_grads_finish(const float *part, int nrb, int C, float *dw, float *dz, float *dgate, const float *w,
                              float off, const float *z, float gate) {
    k_norm_grads_finish<<<gs_cdiv(C, 32), dim3(32, 32)>>>(part, nrb, C, dw, dz, dgate, w, off, z, gate);
}

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

// =================================================================================================
// Head mask (model.h: attention output · zh before o_proj): y = x · zh[h]; y == x scales in place
// =================================================================================================

__global__ void k_head_gate(bf16 *y, const bf16 *x, const float *zh, int N, int H, int D) {
    size_t total = (size_t)N * H * D;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x)
        y[i] = f2bf(bf2f(x[i]) * zh[(i / D) % H]);
}

// x[off .. off+len) = 0 for each (off, len) pair of rng; blockIdx.y picks the pair
__global__ void k_zero_ranges(float *x, const size_t *rng) {
    size_t off = rng[2 * blockIdx.y], len = rng[2 * blockIdx.y + 1];
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < len; i += (size_t)gridDim.x * blockDim.x) x[off + i] = 0;
}
__global__ void k_scale_f32(float *x, const float *s, size_t n) {  // x *= *s (Gemma 4's layer_scalar)
    float v = *s;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) x[i] *= v;
}

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

__global__ void k_f32_to_bf16(bf16 *o, const float *x, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        o[i] = f2bf(x[i]);
}

// =================================================================================================
// Hard-concrete masks (prune.c masks_from_u, DESIGN §4): l = −0.1, r = 1.1, β = 2/3
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

// =================================================================================================
// Random init on the device (benchmarks: a 1B model need not pass through host memory):
// w[i] = std · N(0,1) from a counter-based hash (splitmix64, Box–Muller), or `value` when std == 0.
// =================================================================================================

__device__ __forceinline__ uint64_t splitmix64_at(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}
__global__ void k_init(float *w, size_t n, uint64_t seed, float std, float value) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        if (std == 0.0f) {
            w[i] = value;
            continue;
        }
        uint64_t h = splitmix64_at(seed * 0x100000001B3ull + i);
        float u1 = ((h >> 40) + 1) * (1.0f / 16777217.0f), u2 = ((h >> 16) & 0xffffff) * (1.0f / 16777216.0f);
        w[i] = std * sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
    }
}
