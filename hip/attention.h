// hip/attention.h — causal attention with sliding window, GQA and optional softcap, forward and
// backward (model.h attention_forward / attention_backward). The forward keeps the log-sum-exp per query
// row and the backward recomputes the probabilities from it.
//   q [N rows, ldq] (head h at column h·D), k/v [N rows, ldk/ldv] (kv head g at column g·D), row
//   n = b·T + t. Query t of a sliding layer sees keys t−W+1 .. t; a full layer (window 0) 0 .. t.
//   Query head h reads kv head h / (H/K). lse [B, H, T] natural log.
// Four implementations:
//   *_simple : one warp per query row (forward, dQ) or per key row (dK, dV), fp32 dot products.
//              Portable (AMD, any D <= GS_WARP·ATT_MAXE); the reference the tensor-core kernels are
//              checked against in hip/dev/attention.hip.
//   *_mma    : NVIDIA sm_80+, D in {64, 128, 256}: 64-row tiles in shared memory (cp.async,
//              XOR-swizzled 16-byte chunks so ldmatrix is conflict-free), bf16 mma.sync m16n8k16 with
//              fp32 accumulators, online softmax in registers (FlashAttention-2's scheme). The backward
//              runs one block per 64 keys (dK, dV in registers, summed over the group's query heads) and
//              adds dQ with fp32 atomics into a zeroed fp32 buffer.
//   *_wg     : the forward on Hopper (sm_90a, D = 256): the mma kernel's scheme with the two products as
//              warpgroup products (wgmma) reading Q, K, V from shared memory themselves; 1.2x (sliding) and
//              1.35x (full) the mma forward at 1B's shapes. The backward stays as below.
//   *_band, *_full : the backward of layers with one kv head (Gemma 3's 270M and 1B): the band of scores
//              in memory and the products through the vendor BLAS (batched), portable; 2.2x (sliding) and
//              2.0x (full) the mma backward at 1B's shapes. On Hopper at D = 256 (k_attn_band_wg) the band's
//              P and dS come from warpgroup products straight to bf16; elsewhere S and dP go through memory
//              in fp32 first (see below).
#pragma once
#include "blas.h"
#include "common.h"
#include "plan.h"  // the banded backward's sizes and when a layer takes it (ATT_BQ, ATT_FG; gpu_create sizes by them)

typedef struct {
    const bf16 *q, *k, *v;
    int ldq, ldk, ldv;
    bf16 *o;
    int ldo;
    float *lse;
    int B, T, H, K, D, window;
    float scale, softcap;
} AttnFwd;

typedef struct {
    AttnFwd f;          // the forward's inputs (o = its output)
    const bf16 *dout;   // d loss / d o
    int lddo;
    float *Di;          // [B, H, T] rowsum(dO · O) (k_attn_dot)
    float *dq;          // fp32 [N, lddq]: zeroed by the caller, accumulated
    int lddq;
    bf16 *dk, *dv;      // written
    int lddk, lddv;
} AttnBwd;

#define ATT_MAXE 16  // per-lane elements of a row in the simple kernels: D <= GS_WARP * ATT_MAXE
#define LOG2E 1.4426950408889634f

// The tensor-core kernels' block order: tiles with the most work first across every head and sequence
// (blocks start in linear index order; causal tiles differ in work up to T/64 times), so the last wave
// holds the cheap ones. tile = the linear index over (y, z) first; y, z as launched.
__device__ __forceinline__ void attn_block(int &tile, int &y, int &z) {
    int lin = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z), yz = gridDim.y * gridDim.z;
    tile = lin / yz, y = lin % yz % gridDim.y, z = lin % yz / gridDim.y;
}

__device__ __forceinline__ int attn_sees(int key, int t, int T, int window) {
    return key <= t && t < T && (window <= 0 || key > t - window);
}

// Di[b, h, t] = Σ_i dO[n, h, i] O[n, h, i]; one warp per (n, h)
__global__ void k_attn_dot(float *Di, const bf16 *dO, int lddo, const bf16 *O, int ldo, int B, int T, int H, int D) {
    size_t row = (size_t)blockIdx.x * (blockDim.x / GS_WARP) + threadIdx.x / GS_WARP;
    int lane = threadIdx.x % GS_WARP;
    if (row >= (size_t)B * T * H) return;
    int h = (int)(row % H);
    size_t n = row / H;
    float s = 0;
    const bf16 *x = dO + n * lddo + h * D, *y = O + n * ldo + h * D;
    if (D % 4 == 0 && lddo % 4 == 0 && ldo % 4 == 0)  // 8-byte loads (the rows are 8-byte aligned)
        for (int i = 4 * lane; i < D; i += 4 * GS_WARP) {
            float u[4], v[4];
            ldv<4>(u, x + i), ldv<4>(v, y + i);
            s += u[0] * v[0] + u[1] * v[1] + u[2] * v[2] + u[3] * v[3];
        }
    else
        for (int i = lane; i < D; i += GS_WARP) s += bf2f(x[i]) * bf2f(y[i]);
    s = warp_sum(s);
    if (lane == 0) Di[((n / T) * H + h) * T + n % T] = s;
}

// ----------------------------------------------------------------------------------- simple
__device__ __forceinline__ float attn_score(float dot, float scale, float cap, float *tc) {
    float s = dot * scale;
    if (cap > 0) {
        *tc = tanhf(s / cap);
        return cap * *tc;
    }
    *tc = 0;
    return s;
}

// one row of D values over the warp: lane's element i = lane + e·GS_WARP in v[e], 0 past D
__device__ __forceinline__ void attn_row_load(float v[ATT_MAXE], const bf16 *r, int D, int lane) {
#pragma unroll
    for (int e = 0; e < ATT_MAXE; e++) {
        int i = lane + e * GS_WARP;
        v[e] = i < D ? bf2f(r[i]) : 0.0f;
    }
}
// this lane's part of v · r for a row v of attn_row_load (warp_sum completes it)
__device__ __forceinline__ float attn_row_dot(const float v[ATT_MAXE], const bf16 *r, int D, int lane) {
    float dot = 0;
#pragma unroll
    for (int e = 0; e < ATT_MAXE; e++) {
        int i = lane + e * GS_WARP;
        if (i < D) dot += v[e] * bf2f(r[i]);
    }
    return dot;
}

__global__ void k_attn_fwd_simple(AttnFwd a) {
    size_t row = (size_t)blockIdx.x * (blockDim.x / GS_WARP) + threadIdx.x / GS_WARP;  // (b·T + t)·H + h
    int lane = threadIdx.x % GS_WARP;
    if (row >= (size_t)a.B * a.T * a.H) return;
    int h = (int)(row % a.H), g = h / (a.H / a.K);
    size_t n = row / a.H;
    int b = (int)(n / a.T), t = (int)(n % a.T);
    float qv[ATT_MAXE], ov[ATT_MAXE] = {0};
    attn_row_load(qv, a.q + n * a.ldq + h * a.D, a.D, lane);
    float m = -INFINITY, l = 0, tc;
    int j0 = a.window > 0 && t - a.window + 1 > 0 ? t - a.window + 1 : 0;
    for (int j = j0; j <= t; j++) {
        const bf16 *kr = a.k + ((size_t)b * a.T + j) * a.ldk + g * a.D, *vr = a.v + ((size_t)b * a.T + j) * a.ldv + g * a.D;
        float s = attn_score(warp_sum(attn_row_dot(qv, kr, a.D, lane)), a.scale, a.softcap, &tc);
        float mn = fmaxf(m, s), alpha = __expf(m - mn), p = __expf(s - mn);
        l = l * alpha + p;
#pragma unroll
        for (int e = 0; e < ATT_MAXE; e++) {
            int i = lane + e * GS_WARP;
            if (i < a.D) ov[e] = ov[e] * alpha + p * bf2f(vr[i]);
        }
        m = mn;
    }
#pragma unroll
    for (int e = 0; e < ATT_MAXE; e++) {
        int i = lane + e * GS_WARP;
        if (i < a.D) a.o[n * a.ldo + h * a.D + i] = f2bf(ov[e] / l);
    }
    if (lane == 0) a.lse[((size_t)b * a.H + h) * a.T + t] = m + logf(l);
}

// dQ (overwrites): one warp per query row
__global__ void k_attn_bwd_dq_simple(AttnBwd a) {
    const AttnFwd &f = a.f;
    size_t row = (size_t)blockIdx.x * (blockDim.x / GS_WARP) + threadIdx.x / GS_WARP;
    int lane = threadIdx.x % GS_WARP;
    if (row >= (size_t)f.B * f.T * f.H) return;
    int h = (int)(row % f.H), g = h / (f.H / f.K);
    size_t n = row / f.H;
    int b = (int)(n / f.T), t = (int)(n % f.T);
    float qv[ATT_MAXE], dov[ATT_MAXE], dq[ATT_MAXE] = {0};
    attn_row_load(qv, f.q + n * f.ldq + h * f.D, f.D, lane);
    attn_row_load(dov, a.dout + n * a.lddo + h * f.D, f.D, lane);
    size_t bh = ((size_t)b * f.H + h) * f.T + t;
    float L = f.lse[bh], Dt = a.Di[bh], tc;
    int j0 = f.window > 0 && t - f.window + 1 > 0 ? t - f.window + 1 : 0;
    for (int j = j0; j <= t; j++) {
        const bf16 *kr = f.k + ((size_t)b * f.T + j) * f.ldk + g * f.D, *vr = f.v + ((size_t)b * f.T + j) * f.ldv + g * f.D;
        float dot = attn_row_dot(qv, kr, f.D, lane), dp = attn_row_dot(dov, vr, f.D, lane);
        float s = attn_score(warp_sum(dot), f.scale, f.softcap, &tc), p = __expf(s - L);
        float ds = p * (warp_sum(dp) - Dt) * (f.softcap > 0 ? 1.0f - tc * tc : 1.0f) * f.scale;
#pragma unroll
        for (int e = 0; e < ATT_MAXE; e++) {
            int i = lane + e * GS_WARP;
            if (i < f.D) dq[e] += ds * bf2f(kr[i]);
        }
    }
#pragma unroll
    for (int e = 0; e < ATT_MAXE; e++) {
        int i = lane + e * GS_WARP;
        if (i < f.D) a.dq[n * a.lddq + h * f.D + i] = dq[e];
    }
}

// dK, dV (overwrite): one warp per (key row, kv head), over the group's query heads and the queries that see it
__global__ void k_attn_bwd_dkdv_simple(AttnBwd a) {
    const AttnFwd &f = a.f;
    size_t row = (size_t)blockIdx.x * (blockDim.x / GS_WARP) + threadIdx.x / GS_WARP;  // (b·T + j)·K + g
    int lane = threadIdx.x % GS_WARP;
    if (row >= (size_t)f.B * f.T * f.K) return;
    int g = (int)(row % f.K), G = f.H / f.K;
    size_t n = row / f.K;
    int b = (int)(n / f.T), j = (int)(n % f.T);
    float kv[ATT_MAXE], vv[ATT_MAXE], dk[ATT_MAXE] = {0}, dv[ATT_MAXE] = {0};
    attn_row_load(kv, f.k + n * f.ldk + g * f.D, f.D, lane);
    attn_row_load(vv, f.v + n * f.ldv + g * f.D, f.D, lane);
    int t1 = f.window > 0 && j + f.window - 1 < f.T - 1 ? j + f.window - 1 : f.T - 1;
    float tc;
    for (int h = g * G; h < (g + 1) * G; h++)
        for (int t = j; t <= t1; t++) {
            size_t qn = (size_t)b * f.T + t, bh = ((size_t)b * f.H + h) * f.T + t;
            const bf16 *qr = f.q + qn * f.ldq + h * f.D, *dor = a.dout + qn * a.lddo + h * f.D;
            float dot = attn_row_dot(kv, qr, f.D, lane), dp = attn_row_dot(vv, dor, f.D, lane);
            float s = attn_score(warp_sum(dot), f.scale, f.softcap, &tc), p = __expf(s - f.lse[bh]);
            float ds = p * (warp_sum(dp) - a.Di[bh]) * (f.softcap > 0 ? 1.0f - tc * tc : 1.0f) * f.scale;
#pragma unroll
            for (int e = 0; e < ATT_MAXE; e++) {
                int i = lane + e * GS_WARP;
                if (i < f.D) dv[e] += p * bf2f(dor[i]), dk[e] += ds * bf2f(qr[i]);
            }
        }
#pragma unroll
    for (int e = 0; e < ATT_MAXE; e++) {
        int i = lane + e * GS_WARP;
        if (i < f.D) a.dk[n * a.lddk + g * f.D + i] = f2bf(dk[e]), a.dv[n * a.lddv + g * f.D + i] = f2bf(dv[e]);
    }
}

// ----------------------------------------------------------------------- tensor cores (NVIDIA)
#if GS_NVIDIA  // NVIDIA-only: the tensor-core kernels; AMD runs the *_simple kernels and the BLAS band
// element offset of 16-byte chunk ch of row r in a [rows][W] bf16 tile, chunks XOR-swizzled by r % 8
template <int W> __device__ __forceinline__ int swz(int r, int ch) { return r * W + ((ch ^ (r & 7)) << 3); }

// rows row0 .. row0+63 of a matrix whose row t is base + t·ld (D wide) -> tile; rows >= T become zeros
template <int D, int NT> __device__ __forceinline__ void load_tile(bf16 *s, const bf16 *base, int ld, int row0, int T) {
    const int CH = D / 8;
    for (int c = threadIdx.x; c < 64 * CH; c += NT) {
        int r = c / CH, ch = c % CH, t = row0 + r;
        cp_async16(s + swz<D>(r, ch), base + (size_t)(t < T ? t : 0) * ld + ch * 8, t < T ? 16 : 0);
    }
}

// What both tensor-core forwards share. A thread holds two query rows, r0 and r0 + 8 (r0 = q0 + 16·warp + lane/4), and
// of a 64-key block the scores s[4j + e] (key k0 + 8j + 2·(lane%4) + e%2, row r0 + 8·(e/2): mma_bf16_16816's C
// layout, which wgmma's accumulators share). One key block of the online softmax: scores to log2 units, masked
// unless every query of the block sees every key of it (whole), P = exp2(score − running max) into s, the
// running max / sum (mrow, lrow) updated; returns in alpha what the output accumulators are to be scaled by.
__device__ __forceinline__ void attn_softmax_block(float s[32], float mrow[2], float lrow[2], float alpha[2], const AttnFwd &a,
                                                   int r0, int q0, int k0, int lane) {
    const int T = a.T;
    const bool whole = k0 + 64 <= T && q0 + 64 <= T && k0 + 63 <= q0 && (a.window <= 0 || k0 > q0 + 63 - a.window);
    // (each test on a block-uniform value outside its loop: one path per element, not both)
    if (a.softcap > 0) {
        const float c = a.softcap * LOG2E, sc = a.scale / a.softcap;
#pragma unroll
        for (int i = 0; i < 32; i++) s[i] = c * tanhf(s[i] * sc);
    } else {
        const float sl2 = a.scale * LOG2E;
#pragma unroll
        for (int i = 0; i < 32; i++) s[i] *= sl2;
    }
    if (!whole) {  // row t sees keys lo .. hi (none past the sequence)
        int lo[2], hi[2];
#pragma unroll
        for (int r = 0; r < 2; r++) {
            int t = r0 + 8 * r;
            lo[r] = a.window > 0 && t - a.window + 1 > 0 ? t - a.window + 1 : 0;
            hi[r] = t < T ? t : -1;
        }
#pragma unroll
        for (int i = 0; i < 32; i++) {
            int r = (i >> 1) & 1, key = k0 + (i >> 2) * 8 + (lane & 3) * 2 + (i & 1);
            s[i] = key >= lo[r] && key <= hi[r] ? s[i] : -INFINITY;
        }
    }
    float mx[2] = {mrow[0], mrow[1]};
#pragma unroll
    for (int i = 0; i < 32; i++) mx[(i >> 1) & 1] = fmaxf(mx[(i >> 1) & 1], s[i]);
    float base[2], ps[2] = {0, 0};
#pragma unroll
    for (int r = 0; r < 2; r++) {  // a row's 4 threads share its max
        mx[r] = fmaxf(mx[r], gs_shfl_xor(mx[r], 1));
        mx[r] = fmaxf(mx[r], gs_shfl_xor(mx[r], 2));
        base[r] = mx[r] == -INFINITY ? 0.0f : mx[r];  // a row that sees nothing yet: no NaN from -inf - -inf
        alpha[r] = exp2f(mrow[r] - base[r]);
        mrow[r] = mx[r];
    }
#pragma unroll
    for (int i = 0; i < 32; i++) {
        float p = exp2f(s[i] - base[(i >> 1) & 1]);
        s[i] = p;
        ps[(i >> 1) & 1] += p;
    }
    lrow[0] = lrow[0] * alpha[0] + ps[0];
    lrow[1] = lrow[1] * alpha[1] + ps[1];
}
// the output accumulators (o[4i + e], rows r0 + 8·(e/2)) times each row's alpha
template <int D> __device__ __forceinline__ void attn_scale_o(float o[D / 2], const float alpha[2]) {
#pragma unroll
    for (int i = 0; i < D / 8; i++) o[4 * i] *= alpha[0], o[4 * i + 1] *= alpha[0], o[4 * i + 2] *= alpha[1], o[4 * i + 3] *= alpha[1];
}
// keys 16·ks .. 16·ks + 15 of P as the A operand of a product of k 16 (the C layout is already in A-fragment order)
__device__ __forceinline__ void attn_p_frag(uint32_t pa[4], const float s[32], int ks) {
    pa[0] = pack_bf16x2(s[8 * ks], s[8 * ks + 1]), pa[1] = pack_bf16x2(s[8 * ks + 2], s[8 * ks + 3]);
    pa[2] = pack_bf16x2(s[8 * ks + 4], s[8 * ks + 5]), pa[3] = pack_bf16x2(s[8 * ks + 6], s[8 * ks + 7]);
}
// the output rows o / l (o[4i + e]: columns 8i + 2·(lane%4) + e%2 of row r0 + 8·(e/2)) and their log-sum-exp
template <int D> __device__ __forceinline__ void attn_fwd_store(const AttnFwd &a, const float o[D / 2], const float mrow[2],
                                                                const float lrow[2], int r0, int b, int h, int lane) {
#pragma unroll
    for (int r = 0; r < 2; r++) {
        float l = lrow[r];
        l += gs_shfl_xor(l, 1);
        l += gs_shfl_xor(l, 2);
        int t = r0 + r * 8;
        if (t >= a.T) continue;
        float inv = 1.0f / l;
        bf16 *orow = a.o + ((size_t)b * a.T + t) * a.ldo + h * D + (lane & 3) * 2;
#pragma unroll
        for (int i = 0; i < D / 8; i++) *(uint32_t *)(orow + i * 8) = pack_bf16x2(o[4 * i + 2 * r] * inv, o[4 * i + 2 * r + 1] * inv);
        if ((lane & 3) == 0) a.lse[((size_t)b * a.H + h) * a.T + t] = (mrow[r] + log2f(l)) * 0.6931471805599453f;
    }
}

// grid (ceil(T/64), H, B), 4 warps; warp w owns query rows q0 + 16w .. +15. Heaviest query blocks first.
template <int D> __global__ void __launch_bounds__(128) k_attn_fwd_mma(AttnFwd a) {
#if GS_HAVE_MMA  // NVIDIA-only (sm_80+): empty elsewhere, never launched there (attn_mma_ok)
    extern __shared__ __align__(16) unsigned char att_smem[];
    bf16 *sQ = (bf16 *)att_smem, *sK = sQ + 64 * D, *sV = sK + 64 * D;
    int tile, h, b;
    attn_block(tile, h, b);
    const int T = a.T, qb = gridDim.x - 1 - tile, g = h / (a.H / a.K);
    const int q0 = qb * 64, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    load_tile<D, 128>(sQ, a.q + (size_t)b * T * a.ldq + h * D, a.ldq, q0, T);
    cp_async_commit();
    const bf16 *kbase = a.k + (size_t)b * T * a.ldk + g * D, *vbase = a.v + (size_t)b * T * a.ldv + g * D;
    float o[D / 2];  // o[4i + e]: output columns 8i.. (attn_fwd_store)
#pragma unroll
    for (int i = 0; i < D / 2; i++) o[i] = 0;
    float mrow[2] = {-INFINITY, -INFINITY}, lrow[2] = {0, 0};
    const int kstart = a.window > 0 && q0 - a.window + 1 > 0 ? q0 - a.window + 1 : 0;
    const int kend = T < q0 + 64 ? T : q0 + 64;
    const int r0 = q0 + warp * 16 + lane / 4;  // this thread's rows: r0 and r0 + 8
    for (int kb = kstart / 64; kb * 64 < kend; kb++) {
        const int k0 = kb * 64;
        __syncthreads();  // all warps are done with the previous K, V tiles
        load_tile<D, 128>(sK, kbase, a.ldk, k0, T);
        cp_async_commit();
        load_tile<D, 128>(sV, vbase, a.ldv, k0, T);
        cp_async_commit();
        cp_async_wait<1>();  // Q and K have landed, V may still be in flight
        __syncthreads();
        float s[32];  // s[4j + e]: keys 8j.. (attn_softmax_block)
#pragma unroll
        for (int i = 0; i < 32; i++) s[i] = 0;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            uint32_t af[4];
            ldmatrix_x4(af, sQ + swz<D>(warp * 16 + (lane & 15), kk * 2 + (lane >> 4)));
#pragma unroll
            for (int n2 = 0; n2 < 4; n2++) {
                uint32_t bfr[4];
                ldmatrix_x4(bfr, sK + swz<D>(n2 * 16 + ((lane >> 4) << 3) + (lane & 7), kk * 2 + ((lane >> 3) & 1)));
                mma_bf16_16816(s + 8 * n2, af, bfr[0], bfr[1]);
                mma_bf16_16816(s + 8 * n2 + 4, af, bfr[2], bfr[3]);
            }
        }
        float alpha[2];
        attn_softmax_block(s, mrow, lrow, alpha, a, r0, q0, k0, lane);
        attn_scale_o<D>(o, alpha);
        cp_async_wait<0>();
        __syncthreads();  // V has landed
#pragma unroll
        for (int ks = 0; ks < 4; ks++) {  // O += P V
            uint32_t pa[4];
            attn_p_frag(pa, s, ks);
#pragma unroll
            for (int d2 = 0; d2 < D / 16; d2++) {
                uint32_t bfr[4];
                ldmatrix_x4_trans(bfr, sV + swz<D>(ks * 16 + ((lane >> 3) & 1) * 8 + (lane & 7), d2 * 2 + (lane >> 4)));
                mma_bf16_16816(o + 8 * d2, pa, bfr[0], bfr[1]);
                mma_bf16_16816(o + 8 * d2 + 4, pa, bfr[2], bfr[3]);
            }
        }
    }
    attn_fwd_store<D>(a, o, mrow, lrow, r0, b, h, lane);
#endif
}

// The forward on Hopper (wgmma, D = 256): k_attn_fwd_mma's tiles, order and online softmax, with S = Q K^T (16
// products of k 16, A and B from shared memory) and O += P V (4 products of 16 keys, P from the S accumulators'
// registers, V read transposed) as asynchronous warpgroup products: the tensor cores read the operands themselves,
// so the warps hold no K or V fragments (mma.sync's ldmatrix traffic and registers).
// NH warpgroups per block, one per query head of the same kv group, over the same 64 queries: they share each K
// and V tile (half the loads from L2 at NH = 2). One block per SM at NH = 2 (128 KB of shared memory), so the loads
// are pipelined in the block: K of the next key block loads during this one's softmax and P V, V of the next during
// its Q K^T. Measured (hip/dev/attention.hip v4): NH = 2 and NH = 1 (two blocks per SM) within 3% of each other;
// neither the loads nor the products' chains of dependent steps are what holds it at ~210-300 TFLOP/s.
// Tiles: 64 rows x 256 columns as four 64-column slices of 128-byte swizzled rows (load_tile_sw); Q and K K-major
// (rows along the reduction), V MN-major for P V: 8-key row groups 1024 bytes apart (sbo), the slices (64 output
// columns each) 8192 bytes apart (lbo).
#define ATT_WG_D 256
static size_t attn_fwd_wg_smem(int nh) { return (size_t)(nh + 2) * 64 * ATT_WG_D * 2 + 1024; }  // + room to align
// rows row0 .. row0+63 (D = 256) -> 4 slices of [64 rows][64 columns], 16-byte chunk c of row r at chunk c ^ (r % 8)
template <int NT> __device__ __forceinline__ void load_tile_sw(bf16 *s, const bf16 *base, int ld, int row0, int T) {
    for (int c = threadIdx.x; c < 64 * 32; c += NT) {
        int r = c / 32, ch = c % 32, t = row0 + r;
        cp_async16(s + (ch >> 3) * 4096 + swz<64>(r, ch & 7), base + (size_t)(t < T ? t : 0) * ld + ch * 8, t < T ? 16 : 0);
    }
}
// grid (ceil(T/64), H / NH, B), NH warpgroups; warpgroup w: head y·NH + w, its warp w4 the rows q0 + 16·w4 ..
template <int NH> __global__ void __launch_bounds__(128 * NH) k_attn_fwd_wg(AttnFwd a) {
#if GS_HAVE_WGMMA  // NVIDIA-only (sm_90a): empty elsewhere, never launched there (attn_wg_ok)
    constexpr int D = ATT_WG_D, NT = 128 * NH;
    extern __shared__ __align__(16) unsigned char att_smem[];
    bf16 *sK = (bf16 *)(((uintptr_t)att_smem + 1023) & ~(uintptr_t)1023), *sV = sK + 64 * D, *sQ = sV + 64 * D;
    int tile, hy, b;
    attn_block(tile, hy, b);
    const int T = a.T, qb = gridDim.x - 1 - tile, wg = threadIdx.x / 128, h = hy * NH + wg, g = h / (a.H / a.K);
    const int q0 = qb * 64, warp = threadIdx.x / 32 % 4, lane = threadIdx.x % 32;
    const bf16 *kbase = a.k + (size_t)b * T * a.ldk + g * D, *vbase = a.v + (size_t)b * T * a.ldv + g * D;
    const int kstart = a.window > 0 && q0 - a.window + 1 > 0 ? q0 - a.window + 1 : 0;
    const int kend = T < q0 + 64 ? T : q0 + 64, kb0 = kstart / 64, kb1 = (kend - 1) / 64;
    // the Q tiles and the first K (one group), the first V (the next)
    for (int w = 0; w < NH; w++) load_tile_sw<NT>(sQ + w * 64 * D, a.q + (size_t)b * T * a.ldq + (hy * NH + w) * D, a.ldq, q0, T);
    load_tile_sw<NT>(sK, kbase, a.ldk, kb0 * 64, T);
    cp_async_commit();
    load_tile_sw<NT>(sV, vbase, a.ldv, kb0 * 64, T);
    cp_async_commit();
    // descriptors (wgmma_desc): Q, K as in k_attn_band_wg; V's 16-key step ks at ks·2048 bytes
    const uint64_t dQ0 = wgmma_desc(sQ + wg * 64 * D, 16, 1024), dK0 = wgmma_desc(sK, 16, 1024);
    const uint64_t dV0 = wgmma_desc(sV, 8192, 1024);
    float o[D / 2];  // o[4i + e]: output columns 8i.., mma_bf16_16816's C layout
#pragma unroll
    for (int i = 0; i < D / 2; i++) o[i] = 0;
    float mrow[2] = {-INFINITY, -INFINITY}, lrow[2] = {0, 0};
    const int r0 = q0 + warp * 16 + lane / 4;
    for (int kb = kb0; kb <= kb1; kb++) {
        const int k0 = kb * 64;
        cp_async_wait<1>();  // K of this block (and Q) have landed; its V may be in flight
        fence_async_smem();
        __syncthreads();
        float s[32];
#pragma unroll
        for (int i = 0; i < 32; i++) s[i] = 0;
        wgmma_hold(s);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            int st = (kk >> 2) * 512 + (kk & 3) * 2;
            wgmma_64x64_ss(s, dQ0 + st, dK0 + st, kk > 0);
        }
        wgmma_commit();
        wgmma_wait<0>();
        wgmma_hold(s);
        __syncthreads();  // every warpgroup is done with K: the next block's K loads during the rest
        if (kb < kb1) load_tile_sw<NT>(sK, kbase, a.ldk, k0 + 64, T);
        cp_async_commit();  // (empty at the last block: the group count stays the same)
        float alpha[2];
        attn_softmax_block(s, mrow, lrow, alpha, a, r0, q0, k0, lane);
        attn_scale_o<D>(o, alpha);
        uint32_t pa[16];  // P as the A operand of the 4 products of 16 keys
#pragma unroll
        for (int ks = 0; ks < 4; ks++) attn_p_frag(pa + 4 * ks, s, ks);
        cp_async_wait<1>();  // V of this block has landed (the next K may be in flight)
        fence_async_smem();
        __syncthreads();
        wgmma_hold(o), wgmma_hold(pa);
        wgmma_fence();
#pragma unroll
        for (int ks = 0; ks < 4; ks++) wgmma_64x256_rs(o, pa + 4 * ks, dV0 + ks * 128);
        wgmma_commit();
        wgmma_wait<0>();
        wgmma_hold(o);
        __syncthreads();  // every warpgroup is done with V: the next block's V loads during its Q K^T
        if (kb < kb1) load_tile_sw<NT>(sV, vbase, a.ldv, k0 + 64, T);
        cp_async_commit();
    }
    attn_fwd_store<D>(a, o, mrow, lrow, r0, b, h, lane);
#endif
}

// grid (ceil(T/64), K, B), 8 warps. Block owns keys k0 .. k0+63 of kv head g; for each query head of
// the group and each 64-query block that sees those keys: S^T = K Q^T and dP^T = V dO^T (warp w: keys
// 16(w%4).., queries 32(w/4)..), P^T and dS^T to shared memory, then dV += P^T dO, dK += dS^T Q
// (warp w: keys 16(w%4).., columns (w/4)·D/2..) and dQ += dS K (queries 16(w%4).., same columns) by atomics.
// Q and dO tiles are double-buffered: the next (head, query block) loads while this one computes (one
// 8-warp block fills an SM's shared memory, so nothing else would hide the load latency).
template <int D> __global__ void __launch_bounds__(256) k_attn_bwd_mma(AttnBwd a) {
#if GS_HAVE_MMA  // NVIDIA-only (sm_80+): empty elsewhere, never launched there (attn_mma_ok)
    extern __shared__ __align__(16) unsigned char att_smem[];
    // K, V | Q, dO double-buffered (the next query block loads while this one computes) | P^T, dS^T | lse, Di x2
    bf16 *sK = (bf16 *)att_smem, *sV = sK + 64 * D, *sQb = sV + 64 * D, *sdOb = sQb + 2 * 64 * D;
    bf16 *sP = sdOb + 2 * 64 * D, *sdS = sP + 64 * 64;
    float *sLb = (float *)(sdS + 64 * 64), *sDib = sLb + 2 * 64;
    const AttnFwd &f = a.f;
    int kb, g, b;
    attn_block(kb, g, b);
    const int T = f.T, H = f.H, G = f.H / f.K, k0 = kb * 64;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, wr = (warp & 3) * 16, wc = warp >> 2;
    constexpr int HD = D / 2, DQC = HD < 64 ? HD : 64;
    load_tile<D, 256>(sK, f.k + (size_t)b * T * f.ldk + g * D, f.ldk, k0, T);
    load_tile<D, 256>(sV, f.v + (size_t)b * T * f.ldv + g * D, f.ldv, k0, T);
    float dk[HD / 8][4], dv[HD / 8][4];
#pragma unroll
    for (int i = 0; i < HD / 8; i++) dk[i][0] = dk[i][1] = dk[i][2] = dk[i][3] = dv[i][0] = dv[i][1] = dv[i][2] = dv[i][3] = 0;
    const int qlast = f.window > 0 && k0 + 63 + f.window - 1 < T - 1 ? k0 + 63 + f.window - 1 : T - 1;
    const int nq = qlast >= k0 ? (qlast - k0) / 64 + 1 : 0, nit = nq * G;  // iterations: (query head, query block)
    // issue the loads of iteration `it` into buffer it % 2 (Q, dO by cp.async; lse, Di by plain stores)
    auto prefetch = [&](int it) {
        int h = g * G + it / nq, q0 = k0 + (it % nq) * 64, bf = it & 1;
        load_tile<D, 256>(sQb + bf * 64 * D, f.q + (size_t)b * T * f.ldq + h * D, f.ldq, q0, T);
        load_tile<D, 256>(sdOb + bf * 64 * D, a.dout + (size_t)b * T * a.lddo + h * D, a.lddo, q0, T);
        cp_async_commit();
        if (threadIdx.x < 64) {
            int t = q0 + threadIdx.x;
            size_t bh = ((size_t)b * H + h) * T;
            sLb[bf * 64 + threadIdx.x] = t < T ? f.lse[bh + t] * LOG2E : INFINITY;
            sDib[bf * 64 + threadIdx.x] = t < T ? a.Di[bh + t] : 0.0f;
        }
    };
    if (nit > 0) prefetch(0);  // K and V ride in the same group
    else cp_async_commit();
    for (int it = 0; it < nit; it++) {
        const int h = g * G + it / nq, q0 = k0 + (it % nq) * 64, bf = it & 1;
        const bf16 *sQ = sQb + bf * 64 * D, *sdO = sdOb + bf * 64 * D;
        const float *sL = sLb + bf * 64, *sDi = sDib + bf * 64;
        cp_async_wait<0>();  // this iteration's tiles (the only group in flight)
        __syncthreads();     // ... visible to all; every warp is done with iteration it-1 (P^T, dS^T, the other buffer)
        if (it + 1 < nit) prefetch(it + 1);
        {
            float st[4][4], dpt[4][4];
#pragma unroll
            for (int j = 0; j < 4; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) st[j][e] = dpt[j][e] = 0;
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) {
                uint32_t ak[4], av[4];
                ldmatrix_x4(ak, sK + swz<D>(wr + (lane & 15), kk * 2 + (lane >> 4)));
                ldmatrix_x4(av, sV + swz<D>(wr + (lane & 15), kk * 2 + (lane >> 4)));
#pragma unroll
                for (int n2 = 0; n2 < 2; n2++) {
                    uint32_t bq[4], bo[4];
                    int qr = wc * 32 + n2 * 16 + ((lane >> 4) << 3) + (lane & 7), ch = kk * 2 + ((lane >> 3) & 1);
                    ldmatrix_x4(bq, sQ + swz<D>(qr, ch));
                    ldmatrix_x4(bo, sdO + swz<D>(qr, ch));
                    mma_bf16_16816(st[2 * n2], ak, bq[0], bq[1]);
                    mma_bf16_16816(st[2 * n2 + 1], ak, bq[2], bq[3]);
                    mma_bf16_16816(dpt[2 * n2], av, bo[0], bo[1]);
                    mma_bf16_16816(dpt[2 * n2 + 1], av, bo[2], bo[3]);
                }
            }
            // P^T = exp(S^T − lse), dS^T = P^T (dP^T − Di) [· softcap'] · scale, as bf16 pairs into shared memory
#pragma unroll
            for (int j = 0; j < 4; j++) {
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    int key = k0 + wr + lane / 4 + (e >> 1) * 8, ql = wc * 32 + j * 8 + (lane & 3) * 2 + (e & 1);
                    int t = q0 + ql;
                    float sc = st[j][e] * f.scale, tc = 0;
                    if (f.softcap > 0) tc = tanhf(sc / f.softcap), sc = f.softcap * tc;
                    float p = key < T && attn_sees(key, t, T, f.window) ? exp2f(sc * LOG2E - sL[ql]) : 0.0f;
                    float ds = p * (dpt[j][e] - sDi[ql]);
                    if (f.softcap > 0) ds *= 1.0f - tc * tc;
                    st[j][e] = p;
                    dpt[j][e] = ds * f.scale;
                }
#pragma unroll
                for (int r = 0; r < 2; r++) {
                    int kr = wr + lane / 4 + r * 8, qc = wc * 32 + j * 8 + (lane & 3) * 2;
                    *(uint32_t *)(sP + swz<64>(kr, qc >> 3) + (qc & 7)) = pack_bf16x2(st[j][2 * r], st[j][2 * r + 1]);
                    *(uint32_t *)(sdS + swz<64>(kr, qc >> 3) + (qc & 7)) = pack_bf16x2(dpt[j][2 * r], dpt[j][2 * r + 1]);
                }
            }
            __syncthreads();
            // dV += P^T dO, dK += dS^T Q  (k = the 64 queries)
#pragma unroll
            for (int ks = 0; ks < 4; ks++) {
                uint32_t ap[4], ads[4];
                ldmatrix_x4(ap, sP + swz<64>(wr + (lane & 15), ks * 2 + (lane >> 4)));
                ldmatrix_x4(ads, sdS + swz<64>(wr + (lane & 15), ks * 2 + (lane >> 4)));
#pragma unroll
                for (int d2 = 0; d2 < HD / 16; d2++) {
                    int qr = ks * 16 + ((lane >> 3) & 1) * 8 + (lane & 7), ch = (wc * HD) / 8 + d2 * 2 + (lane >> 4);
                    uint32_t bo[4], bq[4];
                    ldmatrix_x4_trans(bo, sdO + swz<D>(qr, ch));
                    ldmatrix_x4_trans(bq, sQ + swz<D>(qr, ch));
                    mma_bf16_16816(dv[2 * d2], ap, bo[0], bo[1]);
                    mma_bf16_16816(dv[2 * d2 + 1], ap, bo[2], bo[3]);
                    mma_bf16_16816(dk[2 * d2], ads, bq[0], bq[1]);
                    mma_bf16_16816(dk[2 * d2 + 1], ads, bq[2], bq[3]);
                }
            }
            // dQ += dS K  (k = the 64 keys), DQC columns at a time, added to fp32 dq
#pragma unroll
            for (int nc = 0; nc < HD; nc += DQC) {
                float dq[DQC / 8][4];
#pragma unroll
                for (int i = 0; i < DQC / 8; i++) dq[i][0] = dq[i][1] = dq[i][2] = dq[i][3] = 0;
#pragma unroll
                for (int ks = 0; ks < 4; ks++) {
                    uint32_t ad[4];  // A = dS (queries x keys): transposed loads of dS^T
                    ldmatrix_x4_trans(ad, sdS + swz<64>(ks * 16 + ((lane >> 4) << 3) + (lane & 7), (wr >> 3) + ((lane >> 3) & 1)));
#pragma unroll
                    for (int n2 = 0; n2 < DQC / 16; n2++) {
                        int kr = ks * 16 + ((lane >> 3) & 1) * 8 + (lane & 7), ch = (wc * HD + nc) / 8 + n2 * 2 + (lane >> 4);
                        uint32_t bk[4];
                        ldmatrix_x4_trans(bk, sK + swz<D>(kr, ch));
                        mma_bf16_16816(dq[2 * n2], ad, bk[0], bk[1]);
                        mma_bf16_16816(dq[2 * n2 + 1], ad, bk[2], bk[3]);
                    }
                }
#pragma unroll
                for (int r = 0; r < 2; r++) {
                    int t = q0 + wr + lane / 4 + r * 8;
                    if (t >= T) continue;
                    float *dst = a.dq + ((size_t)b * T + t) * a.lddq + h * D + wc * HD + nc + (lane & 3) * 2;
#pragma unroll
                    for (int i = 0; i < DQC / 8; i++) atomic_add2(dst + i * 8, dq[i][2 * r], dq[i][2 * r + 1]);
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        int key = k0 + wr + lane / 4 + r * 8;
        if (key >= T) continue;
        bf16 *dkr = a.dk + ((size_t)b * T + key) * a.lddk + g * D + wc * HD + (lane & 3) * 2;
        bf16 *dvr = a.dv + ((size_t)b * T + key) * a.lddv + g * D + wc * HD + (lane & 3) * 2;
#pragma unroll
        for (int i = 0; i < HD / 8; i++) {
            *(uint32_t *)(dkr + i * 8) = pack_bf16x2(dk[i][2 * r], dk[i][2 * r + 1]);
            *(uint32_t *)(dvr + i * 8) = pack_bf16x2(dv[i][2 * r], dv[i][2 * r + 1]);
        }
    }
#endif
}

static size_t attn_fwd_smem(int D) { return (size_t)3 * 64 * D * 2; }
static size_t attn_bwd_smem(int D) { return (size_t)6 * 64 * D * 2 + 2 * 64 * 64 * 2 + 4 * 64 * 4; }
#endif  // GS_NVIDIA

// ------------------------------------------------------------------- banded (sliding window, BLAS)
// A sliding layer's scores live in a band: the ATT_BQ queries of block i see only keys (i − nb)·ATT_BQ ..
// i·ATT_BQ + ATT_BQ − 1, nb = window / ATT_BQ, band = window + ATT_BQ keys. With one kv head (K = 1) the
// block's rows (query, head) are R = ATT_BQ·H consecutive rows of q (stride D), so the whole backward is
// batched products of the vendor BLAS, which run near the tensor cores' peak, around one elementwise pass
// (the forward the same way measured slower than the mma kernel, 0.210 against 0.189 ms at 1B's shapes):
//   per query block q (flat over sequences, NB = N / ATT_BQ of them):
//     S_q = Q_q K_band^T, dP_q = dO_q V_band^T             [R × band] fp32
//     P = exp(score(S) − lse), dS = P ⊙ (dP − Di)·score'    k_attn_band: bf16, 0 where masked
//     dQ_q = dS_q K_band                                     fp32, written (no atomics, no zeroing)
//   per key block j: dK_j = dS_j^T Q_span, dV_j = P_j^T dO_span, where P_j / dS_j are the same buffers read
//     as [(nb+1)·R rows × ATT_BQ keys]: with a batch stride of R·band + ATT_BQ the nb + 1 query blocks that
//     see key block j line up under one leading dimension (row r of query block j + m, columns
//     (nb − m)·ATT_BQ.., sits at j·stride + nb·ATT_BQ + (m·R + r)·band), and Q_span / dO_span are the
//     (nb+1)·R rows of q / dO from query j·ATT_BQ on.
// Same roundings as the flash kernels (P and dS to bf16 before their products, fp32 accumulation); the band
// computes the 64-wide tiles the mma kernel computes (576 keys per 64 queries at window 512), as products.
// Reads past the sequences: the first nb blocks read k and v rows −nb·ATT_BQ..−1 and the last ones q and dO
// rows N..N + nb·ATT_BQ − 1; P and dS are 0 there, but 0·NaN is not 0, so those rows of k, q and dO must be
// the caller's memory, which attn_backward_band zeroes; v's need only be readable (dP is masked by select).
typedef struct {
    float *S, *dP;  // [N·H, band] fp32
    bf16 *P, *dS;   // [NB + nb] blocks of R·band + ATT_BQ
    int blas;       // 1: S and dP by the BLAS products even where k_attn_band_wg could (the workbench's comparison)
} AttnBand;

// Full (causal) layers, one kv head: the T queries of a sequence in ATT_FG groups of Tg = T / ATT_FG; group g
// sees keys 0 .. (g+1)·Tg − 1, so it is a band of (g+1)·Tg keys starting at key 0 (1.25x the causal
// triangle's products at ATT_FG = 4, against 2x for the whole square). Per group, batched over sequences:
// S, dP, P / dS, dQ as in the sliding band; P and dS go into [T·H, T] per sequence (group g's rows at g·Tg·H),
// so that key group kg's dK = dS[rows of groups kg.., its Tg columns]^T Q[those rows] is one product per
// sequence (the upper triangle of that square is never read).
// (sizes and shapes: hip/plan.h) the layout both take: q / dO / dQ rows (query, head) at stride D, k rows compact
static int attn_blas_layout_ok(const AttnBwd &a) {
    const AttnFwd &f = a.f;
    return f.ldq == f.H * f.D && f.ldk == f.D && a.lddo == f.H * f.D && a.lddq == f.H * f.D;
}
static int attn_full_ok(const AttnBwd &a) {
    return attn_blas_layout_ok(a) && attn_full_shape_ok(a.f.K, a.f.D, a.f.window, a.f.T);
}
static int attn_band_ok(const AttnBwd &a) {
    return attn_blas_layout_ok(a) && attn_band_shape_ok(a.f.K, a.f.D, a.f.window, a.f.T);
}

// Where a block of rows sits: batch q has rows (query, head) of query block i = q % nq + i0 of sequence
// q / nq (Bq queries each), and its column c is key (i − nb)·Bq + c. Sliding layers: nq = T / ATT_BQ, i0 = 0,
// nb = window / ATT_BQ; a full layer's query group g (below): nq = 1, i0 = nb = g.
typedef struct {
    int nq, i0, nb, Bq, band, T, H, W;
} BandRows;

// P and dS of nbatch blocks of rows into P / dS + q·ps + r·ldp + c (S, dP dense: [nbatch·R, band]), then
// nzero blocks of zeros; 8 keys per thread
__global__ void k_attn_band(bf16 *P, bf16 *dS, int ldp, size_t ps, const float *S, const float *dP, const float *lse,
                            const float *Di, int nbatch, int nzero, BandRows g, float scale, float cap) {
    int R = g.Bq * g.H, c8 = g.band / 8;
    size_t total = (size_t)(nbatch + nzero) * R * c8;
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        int c = (int)(e % c8) * 8, r = (int)(e / c8 % R), q = (int)(e / c8 / R);
        float p[8], ds[8];
        if (q < nbatch) {
            int b = q / g.nq, i = q % g.nq + g.i0, t = i * g.Bq + r / g.H, h = r % g.H, k0 = (i - g.nb) * g.Bq + c;
            size_t bh = ((size_t)b * g.H + h) * g.T + t, so = ((size_t)q * R + r) * g.band + c;
            float L = lse[bh], Dt = Di[bh], sv[8], dp[8];
            ldv<4>(sv, S + so), ldv<4>(sv + 4, S + so + 4), ldv<4>(dp, dP + so), ldv<4>(dp + 4, dP + so + 4);
#pragma unroll
            for (int j = 0; j < 8; j++) {
                float tc, sc = attn_score(sv[j], scale, cap, &tc), pj = __expf(sc - L);
                int vis = k0 + j >= 0 && k0 + j <= t && (g.W <= 0 || k0 + j > t - g.W);
                p[j] = vis ? pj : 0.0f;
                ds[j] = vis ? pj * (dp[j] - Dt) * (cap > 0 ? 1.0f - tc * tc : 1.0f) * scale : 0.0f;
            }
        } else {
#pragma unroll
            for (int j = 0; j < 8; j++) p[j] = ds[j] = 0.0f;
        }
        size_t po = (size_t)q * ps + (size_t)r * ldp + c;
        stv<8>(P + po, p), stv<8>(dS + po, ds);
    }
}

// ------------------------------------------------------------------------------------ shared helpers
static int aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

// 1 when the tensor-core kernels can run this shape (NVIDIA, D in {64, 128, 256}, 16-byte rows)
static int attn_mma_ok(const AttnFwd *a) {
#if GS_NVIDIA  // NVIDIA-only: AMD answers 0 (the portable kernels)
    return (a->D == 64 || a->D == 128 || a->D == 256) && a->ldq % 8 == 0 && a->ldk % 8 == 0 && a->ldv % 8 == 0 &&
           aligned16(a->q) && aligned16(a->k) && aligned16(a->v);
#else
    return 0;
#endif
}

#if GS_NVIDIA  // NVIDIA-only: the tensor-core kernels' shared-memory attribute
// a kernel's dynamic shared memory past the default 48 KB, allowed before its first launch (the 10 kernels here that
// need it are remembered; more would only be set again at each launch)
static void attn_smem_once(const void *kernel, size_t bytes) {
    static const void *done[16];
    static int ndone = 0;
    for (int i = 0; i < ndone; i++)
        if (done[i] == kernel) return;
    hipCheck(hipFuncSetAttribute(kernel, hipFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    if (ndone < 16) done[ndone++] = kernel;
}

// The band's P and dS on Hopper (D = 256): S = Q K^T and dP = dO V^T of each 64-row tile against each 64-key
// block of its band as warpgroup products (k_attn_fwd_wg's swizzled tiles and descriptors), P and dS made from
// the accumulators in registers and stored as bf16: what the two BLAS products and k_attn_band make, without
// writing S and dP to memory in fp32 and reading them back (16 of the 20 bytes per score that path moves).
// grid (R / 64 / NW, nbatch); NW warpgroups per block, each one 64-row tile of the batch's R rows, sharing the
// K and V tiles; a key block no row of a tile sees is written as zeros without its products, and one no row of
// the block sees is not loaded.
typedef struct {
    bf16 *P, *dS;
    int ldp;
    size_t ps;
    const bf16 *q, *dO, *k, *v;  // q / dO rows (query, head) at stride D; k, v rows at ldk, ldv
    int ldk, ldv;
    const float *lse, *Di;
    BandRows g;
    float scale, cap;
} BandScores;
// K, V, NW x (Q, dO), NW x (P, dS staging tiles): 225 KB at NW = 2
static size_t attn_band_wg_smem(int nw) { return (size_t)(2 + 2 * nw) * 64 * ATT_WG_D * 2 + (size_t)nw * 2 * 64 * 64 * 2 + 1024; }
// keys k0 .. k0+63 against the queries tmin .. tmax: 0 = none sees any, 2 = every query sees every key, 1 = else
__device__ __forceinline__ int band_vis(int k0, int tmin, int tmax, int W) {
    if (k0 > tmax || k0 + 63 < 0 || (W > 0 && k0 + 63 <= tmin - W)) return 0;
    return k0 >= 0 && k0 + 63 <= tmin && (W <= 0 || k0 > tmax - W) ? 2 : 1;
}
// P and dS of one 64-key block from the accumulators (this thread's rows r, r + 8: e = 0, 1) into the rows of two
// [64][64] staging tiles in shared memory (Pr, dSr: the rows plus this thread's column pair; chunks swizzled);
// vis: band_vis of the block and the tile (2: no mask; 1: key k0 + col seen by row e where lo[e] <= key <= t[e]; 0:
// zeros). Scores to log2 units first (Ls = lse·log2 e), so one exp2 per score.
template <bool CAP> __device__ __forceinline__ void band_store(bf16 *const Pr[2], bf16 *const dSr[2], const float s[32],
                                                              const float dp[32], int vis, int k0, int lane,
                                                              const int lo[2], const int t[2], const float Ls[2],
                                                              const float Dt[2], float scale, float cap) {
    const float sl2 = scale * LOG2E;
#pragma unroll
    for (int j = 0; j < 8; j++)
#pragma unroll
        for (int e = 0; e < 2; e++) {
            float p[2], ds[2];
#pragma unroll
            for (int c = 0; c < 2; c++) {
                int x = 4 * j + 2 * e + c;
                float tc = 0, v = CAP ? cap * LOG2E * (tc = tanhf(s[x] * (scale / cap))) : s[x] * sl2;
                float pj = exp2f(v - Ls[e]), dj = pj * scale * (dp[x] - Dt[e]);
                if (CAP) dj *= 1.0f - tc * tc;
                if (vis == 1) {
                    int key = k0 + 8 * j + (lane & 3) * 2 + c;
                    bool ok = (unsigned)(key - lo[e]) <= (unsigned)(t[e] - lo[e]);
                    pj = ok ? pj : 0.0f, dj = ok ? dj : 0.0f;
                }
                p[c] = vis ? pj : 0.0f, ds[c] = vis ? dj : 0.0f;
            }
            int o = (j ^ (lane >> 2)) << 3;  // 16-byte chunk j of the row, swizzled by row % 8 (= lane / 4)
            *(uint32_t *)(Pr[e] + o) = pack_bf16x2(p[0], p[1]);
            *(uint32_t *)(dSr[e] + o) = pack_bf16x2(ds[0], ds[1]);
        }
}
// S = Q K^T into s and dP = dO V^T into dp for the warpgroup's 64 rows and one 64-key block, issued as one group of
// asynchronous products (wgmma_wait before reading them). Descriptors (wgmma_desc) of K-major 128-byte-swizzled
// tiles: step kk of 16 columns sits (kk / 4)·8192 + (kk % 4)·32 bytes on; the start address counts 16 bytes.
__device__ __forceinline__ void band_products(float (&s)[32], float (&dp)[32], uint64_t dQ, uint64_t dO, uint64_t dK,
                                              uint64_t dV) {
    wgmma_hold(s), wgmma_hold(dp);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < ATT_WG_D / 16; kk++) {
        int st = (kk >> 2) * 512 + (kk & 3) * 2;
        wgmma_64x64_ss(s, dQ + st, dK + st, kk > 0);
    }
#pragma unroll
    for (int kk = 0; kk < ATT_WG_D / 16; kk++) {
        int st = (kk >> 2) * 512 + (kk & 3) * 2;
        wgmma_64x64_ss(dp, dO + st, dV + st, kk > 0);
    }
    wgmma_commit();
}
template <int NW, bool CAP> __global__ void __launch_bounds__(128 * NW) k_attn_band_wg(BandScores a) {
#if GS_HAVE_WGMMA  // NVIDIA-only (sm_90a): empty elsewhere, never launched there (attn_band_wg_ok)
    constexpr int D = ATT_WG_D, NT = 128 * NW;
    extern __shared__ __align__(16) unsigned char att_smem[];
    bf16 *sK = (bf16 *)(((uintptr_t)att_smem + 1023) & ~(uintptr_t)1023), *sV = sK + 64 * D, *sQ = sV + 64 * D;
    bf16 *sO = sQ + NW * 64 * D, *sP = sO + NW * 64 * D + (threadIdx.x / 128) * 2 * 64 * 64, *sdS = sP + 64 * 64;
    const BandRows &g = a.g;
    const int q = blockIdx.y, b = q / g.nq, i = q % g.nq + g.i0, H = g.H, W = g.W, nkb = g.band / 64;
    const int wg = threadIdx.x / 128, warp = threadIdx.x / 32 % 4, lane = threadIdx.x % 32;
    const int rb = blockIdx.x * NW * 64, rt = rb + wg * 64, t0 = i * g.Bq;  // first row of the block / tile
    const int tmin = t0 + rt / H, tmax = t0 + (rt + 63) / H, bmin = t0 + rb / H, bmax = t0 + (rb + NW * 64 - 1) / H;
    const int kq = (i - g.nb) * g.Bq;  // the key of column 0
    const size_t qrow = ((size_t)b * g.T + t0) * H + rb;
    const bf16 *kbase = a.k + ((ptrdiff_t)b * g.T + kq) * a.ldk, *vbase = a.v + ((ptrdiff_t)b * g.T + kq) * a.ldv;
    for (int w = 0; w < NW; w++) {
        load_tile_sw<NT>(sQ + w * 64 * D, a.q + (qrow + w * 64) * D, D, 0, 64);
        load_tile_sw<NT>(sO + w * 64 * D, a.dO + (qrow + w * 64) * D, D, 0, 64);
    }
    if (band_vis(kq, bmin, bmax, W)) load_tile_sw<NT>(sK, kbase, a.ldk, 0, 64), load_tile_sw<NT>(sV, vbase, a.ldv, 0, 64);
    cp_async_commit();
    // this thread's rows of the tile: lr and lr + 8 (the accumulators' C layout): their queries, first keys seen,
    // lse (log2 units), Di, and where their P and dS rows start
    const int lr = warp * 16 + lane / 4;
    int tr[2], lo[2];
    float Ls[2], Dt[2];
    bf16 *Pr[2], *dSr[2];
    for (int e = 0; e < 2; e++) {
        int r = rt + lr + 8 * e, h = r % H;
        size_t bh = ((size_t)b * H + h) * g.T + t0 + r / H;
        tr[e] = t0 + r / H, lo[e] = W > 0 && tr[e] - W + 1 > 0 ? tr[e] - W + 1 : 0;
        Ls[e] = a.lse[bh] * LOG2E, Dt[e] = a.Di[bh];
        Pr[e] = sP + (lr + 8 * e) * 64 + (lane & 3) * 2, dSr[e] = sdS + (lr + 8 * e) * 64 + (lane & 3) * 2;
    }
    // the tile's P and dS rows in memory, written from the staging tiles in 16-byte chunks (row x / 8, chunk x % 8)
    const size_t tile0 = (size_t)q * a.ps + (size_t)rt * a.ldp;
    const int tid = threadIdx.x % 128;
    const uint64_t dQ0 = wgmma_desc(sQ + wg * 64 * D, 16, 1024), dO0 = wgmma_desc(sO + wg * 64 * D, 16, 1024);
    const uint64_t dK0 = wgmma_desc(sK, 16, 1024), dV0 = wgmma_desc(sV, 16, 1024);
    float s[32], dp[32];
#pragma unroll
    for (int j = 0; j < 32; j++) s[j] = dp[j] = 0;
    for (int kb = 0; kb < nkb; kb++) {
        const int k0 = kq + kb * 64, vis = band_vis(k0, tmin, tmax, W);
        cp_async_wait<0>();  // this block's K and V (and at the first, Q and dO) have landed
        fence_async_smem();
        __syncthreads();
        if (vis) {
            band_products(s, dp, dQ0, dO0, dK0, dV0);
            wgmma_wait<0>();
            wgmma_hold(s), wgmma_hold(dp);
        }
        __syncthreads();  // every warpgroup is done with K and V: the next block's load during this one's P, dS
        if (kb + 1 < nkb && band_vis(k0 + 64, bmin, bmax, W))
            load_tile_sw<NT>(sK, kbase + (size_t)(kb + 1) * 64 * a.ldk, a.ldk, 0, 64),
                load_tile_sw<NT>(sV, vbase + (size_t)(kb + 1) * 64 * a.ldv, a.ldv, 0, 64);
        cp_async_commit();
        if (vis == 2) band_store<CAP>(Pr, dSr, s, dp, 2, k0, lane, lo, tr, Ls, Dt, a.scale, a.cap);
        else if (vis == 1) band_store<CAP>(Pr, dSr, s, dp, 1, k0, lane, lo, tr, Ls, Dt, a.scale, a.cap);
        else band_store<CAP>(Pr, dSr, s, dp, 0, k0, lane, lo, tr, Ls, Dt, a.scale, a.cap);
        warpgroup_sync(1 + wg);  // the warpgroup's staging tiles are whole (the next block's barriers guard their reuse)
#pragma unroll
        for (int x = tid; x < 64 * 8; x += 128) {
            size_t go = tile0 + (size_t)(x / 8) * a.ldp + kb * 64 + (x % 8) * 8;
            *(uint4 *)(a.P + go) = *(const uint4 *)(sP + swz<64>(x / 8, x % 8));
            *(uint4 *)(a.dS + go) = *(const uint4 *)(sdS + swz<64>(x / 8, x % 8));
        }
    }
#endif
}
template <int NW, bool CAP> static void band_wg_launch(const BandScores &sc, int R, int nbatch) {
    attn_smem_once((const void *)k_attn_band_wg<NW, CAP>, attn_band_wg_smem(NW));
    k_attn_band_wg<NW, CAP><<<dim3(R / 64 / NW, nbatch), 128 * NW, attn_band_wg_smem(NW)>>>(sc);
}
#endif  // GS_NVIDIA
// 1 where k_attn_band_wg makes the band's P and dS (Hopper, D = 256, the tensor-core kernels' alignment), its
// Bq (64 or a full layer's Tg) a multiple of 64
static int attn_band_wg_ok(const AttnBwd &a, int Bq) {
#if GS_NVIDIA  // NVIDIA-only: AMD answers 0 (the band's scores through the BLAS)
    return gs_have_wgmma() && a.f.D == ATT_WG_D && attn_mma_ok(&a.f) && a.lddo % 8 == 0 && aligned16(a.dout) && Bq % 64 == 0;
#else
    (void)a, (void)Bq;
    return 0;
#endif
}
// P and dS of nbatch blocks of rows (BandRows g) into P / dS + q·ps + r·ldp + c: by k_attn_band_wg where
// attn_band_wg_ok, else S and dP by two batched products into w.S / w.dP (whose batch strides sq, sk, sv step q, k,
// v from one batch's rows to the next: kb, vb point at batch 0's first key) and k_attn_band (nzero: blocks of zeros
// after the nbatch)
static void attn_band_pds(const AttnBwd &a, const AttnBand &w, bf16 *P, bf16 *dS, int ldp, size_t ps, BandRows g,
                          const bf16 *q, const bf16 *dO, const bf16 *kb, const bf16 *vb, long long sq, long long sk,
                          long long sv, int nbatch, int nzero) {
    const AttnFwd &f = a.f;
    int R = g.Bq * g.H;
#if GS_NVIDIA  // NVIDIA-only: the band's P and dS from wgmma; else the BLAS scores below
    if (!w.blas && attn_band_wg_ok(a, g.Bq)) {
        BandScores sc = {P, dS, ldp, ps, f.q, a.dout, f.k, f.v, f.ldk, f.ldv, f.lse, a.Di, g, f.scale, f.softcap};
        if ((R / 64) % 2 == 0) {
            if (f.softcap > 0) band_wg_launch<2, true>(sc, R, nbatch);
            else band_wg_launch<2, false>(sc, R, nbatch);
        } else {
            if (f.softcap > 0) band_wg_launch<1, true>(sc, R, nbatch);
            else band_wg_launch<1, false>(sc, R, nbatch);
        }
        hipCheckLaunch();
        if (nzero) {
            hipCheck(hipMemsetAsync(P + (size_t)nbatch * ps, 0, sizeof(bf16) * nzero * ps));
            hipCheck(hipMemsetAsync(dS + (size_t)nbatch * ps, 0, sizeof(bf16) * nzero * ps));
        }
        return;
    }
#endif
    long long ss = (long long)R * g.band;
    gs_gemm_batched(0, 1, R, g.band, f.D, 1.0f, q, GS_BF16, f.D, sq, kb, GS_BF16, f.ldk, sk, 0.0f, w.S, GS_F32, g.band, ss, nbatch);
    gs_gemm_batched(0, 1, R, g.band, f.D, 1.0f, dO, GS_BF16, f.D, sq, vb, GS_BF16, f.ldv, sv, 0.0f, w.dP, GS_F32, g.band, ss,
                    nbatch);
    size_t total = (size_t)(nbatch + nzero) * R * (g.band / 8);
    k_attn_band<<<(unsigned)gs_cdiv(total, 256), 256>>>(P, dS, ldp, ps, w.S, w.dP, f.lse, a.Di, nbatch, nzero, g, f.scale,
                                                        f.softcap);
    hipCheckLaunch();
}

// The backward of a full layer as above (attn_full_ok): dq written, dk and dv written; S / dP hold
// attn_full_f32 floats, P / dS attn_full_bf16 bf16.
static void attn_backward_full(const AttnBwd &a, const AttnBand &w) {
    const AttnFwd &f = a.f;
    int T = f.T, H = f.H, D = f.D, B = f.B, Tg = T / ATT_FG, Rg = Tg * H;
    long long sqs = (long long)T * H * D, sk = (long long)T * f.ldk, sv = (long long)T * f.ldv, sp = (long long)T * H * T;
    for (int g = 0; g < ATT_FG; g++) {
        int band = (g + 1) * Tg;
        const bf16 *qg = f.q + (size_t)g * Rg * D, *dog = a.dout + (size_t)g * Rg * D;
        BandRows br = {1, g, g, Tg, band, T, H, 0};
        size_t off = (size_t)g * Rg * T;
        attn_band_pds(a, w, w.P + off, w.dS + off, T, (size_t)sp, br, qg, dog, f.k, f.v, sqs, sk, sv, B, 0);
        gs_gemm_batched(0, 0, Rg, D, band, 1.0f, w.dS + off, GS_BF16, T, sp, f.k, GS_BF16, f.ldk, sk, 0.0f,
                        a.dq + (size_t)g * Rg * D, GS_F32, D, sqs, B);
    }
    for (int kg = 0; kg < ATT_FG; kg++) {  // keys kg·Tg..: the rows of query groups kg.. (they see all of them)
        size_t off = (size_t)kg * Rg * T + (size_t)kg * Tg, rows = (size_t)kg * Rg * D;
        int K = (ATT_FG - kg) * Rg;
        gs_gemm_batched(1, 0, Tg, D, K, 1.0f, w.dS + off, GS_BF16, T, sp, f.q + rows, GS_BF16, D, sqs, 0.0f,
                        a.dk + (size_t)kg * Tg * a.lddk, GS_BF16, a.lddk, (long long)T * a.lddk, B);
        gs_gemm_batched(1, 0, Tg, D, K, 1.0f, w.P + off, GS_BF16, T, sp, a.dout + rows, GS_BF16, D, sqs, 0.0f,
                        a.dv + (size_t)kg * Tg * a.lddv, GS_BF16, a.lddv, (long long)T * a.lddv, B);
    }
}

// The backward of a sliding layer as above (attn_band_ok); Di must hold rowsum(dO · O). Writes dq (no zeroing
// needed), dk, dv.
static void attn_backward_band(const AttnBwd &a, const AttnBand &w) {
    const AttnFwd &f = a.f;
    int N = f.B * f.T, H = f.H, D = f.D, W = f.window, nb = W / ATT_BQ, band = W + ATT_BQ, R = ATT_BQ * H;
    int NB = N / ATT_BQ, pad = attn_band_pad(W);
    long long bs = (long long)R * band + ATT_BQ;
    hipCheck(hipMemsetAsync((void *)(f.k - (size_t)pad * f.ldk), 0, sizeof(bf16) * pad * f.ldk));
    hipCheck(hipMemsetAsync((void *)(f.q + (size_t)N * f.ldq), 0, sizeof(bf16) * pad * f.ldq));
    hipCheck(hipMemsetAsync((void *)(a.dout + (size_t)N * a.lddo), 0, sizeof(bf16) * pad * a.lddo));
    const bf16 *kb = f.k - (size_t)pad * f.ldk, *vb = f.v - (size_t)pad * f.ldv;  // key block −nb of query block 0
    long long sk = (long long)ATT_BQ * f.ldk, sv = (long long)ATT_BQ * f.ldv, sq = (long long)R * D;
    BandRows br = {f.T / ATT_BQ, 0, nb, ATT_BQ, band, f.T, H, W};
    attn_band_pds(a, w, w.P, w.dS, band, (size_t)bs, br, f.q, a.dout, kb, vb, sq, sk, sv, NB, nb);
    gs_gemm_batched(0, 0, R, D, band, 1.0f, w.dS, GS_BF16, band, bs, kb, GS_BF16, f.ldk, sk, 0.0f, a.dq, GS_F32, D, sq, NB);
    const bf16 *dsj = w.dS + (size_t)nb * ATT_BQ, *pj = w.P + (size_t)nb * ATT_BQ;
    gs_gemm_batched(1, 0, ATT_BQ, D, (nb + 1) * R, 1.0f, dsj, GS_BF16, band, bs, f.q, GS_BF16, D, sq, 0.0f, a.dk, GS_BF16,
                    a.lddk, (long long)ATT_BQ * a.lddk, NB);
    gs_gemm_batched(1, 0, ATT_BQ, D, (nb + 1) * R, 1.0f, pj, GS_BF16, band, bs, a.dout, GS_BF16, D, sq, 0.0f, a.dv, GS_BF16,
                    a.lddv, (long long)ATT_BQ * a.lddv, NB);
}

// ------------------------------------------------------------------------------------ dispatch
#if GS_NVIDIA  // NVIDIA-only: launchers of the tensor-core kernels
template <int D> static void attn_fwd_mma_launch(const AttnFwd &a) {
    attn_smem_once((const void *)k_attn_fwd_mma<D>, attn_fwd_smem(D));
    k_attn_fwd_mma<D><<<dim3(gs_cdiv(a.T, 64), a.H, a.B), 128, attn_fwd_smem(D)>>>(a);
}
template <int D> static void attn_bwd_mma_launch(const AttnBwd &a) {
    attn_smem_once((const void *)k_attn_bwd_mma<D>, attn_bwd_smem(D));
    k_attn_bwd_mma<D><<<dim3(gs_cdiv(a.f.T, 64), a.f.K, a.f.B), 256, attn_bwd_smem(D)>>>(a);
}
#endif

// Hopper's wgmma forward: built for sm_90a (GS_HAVE_WGMMA in the device pass), a device of compute capability 9,
// D = 256 and the mma kernels' alignment
static int attn_wg_ok(const AttnFwd *a) {
#if GS_NVIDIA  // NVIDIA-only: AMD answers 0 (the mma or portable forward)
    return gs_have_wgmma() && a->D == ATT_WG_D && attn_mma_ok(a);
#else
    (void)a;  // ATT_WG_D and the kernel exist on NVIDIA only
    return 0;
#endif
}
#if GS_NVIDIA  // NVIDIA-only: launcher of the wgmma forward
template <int NH> static void attn_fwd_wg_launch(const AttnFwd &a) {
    attn_smem_once((const void *)k_attn_fwd_wg<NH>, attn_fwd_wg_smem(NH));
    k_attn_fwd_wg<NH><<<dim3(gs_cdiv(a.T, 64), a.H / NH, a.B), 128 * NH, attn_fwd_wg_smem(NH)>>>(a);
}
#endif

// mode: 0 = always the simple kernels, 1 = mma.sync (attn_mma_ok), 2 = wgmma where attn_wg_ok (two heads per block
// where the kv groups are even), else as 1; 3 = wgmma one head per block (hip/dev/attention.hip compares them)
static void attn_forward(const AttnFwd &a, int mode) {
    if (a.D > GS_WARP * ATT_MAXE) {
        fprintf(stderr, "error: head_dim %d is larger than the attention kernels support (%d)\n", a.D, GS_WARP * ATT_MAXE);
        exit(1);
    }
#if GS_NVIDIA  // NVIDIA-only: wgmma / mma.sync forwards; else k_attn_fwd_simple below
    if (mode >= 2 && attn_wg_ok(&a)) {
        if (mode == 2 && (a.H / a.K) % 2 == 0) attn_fwd_wg_launch<2>(a);
        else attn_fwd_wg_launch<1>(a);
        hipCheckLaunch();
        return;
    }
    if (mode && attn_mma_ok(&a)) {
        if (a.D == 64) attn_fwd_mma_launch<64>(a);
        else if (a.D == 128) attn_fwd_mma_launch<128>(a);
        else attn_fwd_mma_launch<256>(a);
        hipCheckLaunch();
        return;
    }
#endif
    size_t rows = (size_t)a.B * a.T * a.H;
    k_attn_fwd_simple<<<gs_cdiv(rows, 4), 4 * GS_WARP>>>(a);
    hipCheckLaunch();
}

// Di must already hold rowsum(dO · O) (k_attn_dot); dq, dk, dv are written. mode (gpu_set_attention's): 2 = the
// batched-BLAS backward where the layer can take it (w: its buffers, attn_band_* / attn_full_* sizes), 1 = tensor
// cores where they apply, 0 = the simple kernels
static void attn_backward(const AttnBwd &a, int mode, const AttnBand *w) {
    if (mode == 2 && w && w->S && attn_band_ok(a)) return attn_backward_band(a, *w);
    if (mode == 2 && w && w->S && attn_full_ok(a)) return attn_backward_full(a, *w);
#if GS_NVIDIA  // NVIDIA-only: the mma.sync backward; else the portable kernels below
    if (mode && attn_mma_ok(&a.f) && a.lddo % 8 == 0 && aligned16(a.dout)) {
        hipCheck(hipMemsetAsync(a.dq, 0, sizeof(float) * (size_t)a.f.B * a.f.T * a.lddq));  // it accumulates
        if (a.f.D == 64) attn_bwd_mma_launch<64>(a);
        else if (a.f.D == 128) attn_bwd_mma_launch<128>(a);
        else attn_bwd_mma_launch<256>(a);
        hipCheckLaunch();
        return;
    }
#endif
    size_t rows = (size_t)a.f.B * a.f.T * a.f.H, krows = (size_t)a.f.B * a.f.T * a.f.K;
    k_attn_bwd_dq_simple<<<gs_cdiv(rows, 4), 4 * GS_WARP>>>(a);
    hipCheckLaunch();
    k_attn_bwd_dkdv_simple<<<gs_cdiv(krows, 4), 4 * GS_WARP>>>(a);
    hipCheckLaunch();
}
