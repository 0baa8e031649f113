// hip/adamw.h — the optimizers over the flat parameter block and the gradient's sum of squares: AdamW (model.h
// adamw_update), 8-bit AdamW (model.h adamw8_shard, its state format), grad_norm2; checked and timed by
// hip/dev/adamw.hip.
#pragma once
#include "common.h"
#include "elementwise.h"  // splitmix64_at: the stochastic rounding's random bits

// =================================================================================================
// AdamW over the whole flat parameter block (model.h adamw_update; torch.optim.AdamW semantics):
//   g *= gscale (clip and averaging); m = b1 m + (1−b1) g; v = b2 v + (1−b2) g²;
//   p *= 1 − lr·wd (decaying tensors only); p −= lr/bc1 · m / (sqrt(v)/sqrt(bc2) + eps); bf16 copy refreshed.
// Where each tensor's weights and gradient live: OptBlock below (hip/plan.h's layout).
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
// The parameter block as the optimizers see it (hip/plan.h): element i of tensor s (table offset off[s]) has its
// bf16 copy at wb[i], its fp32 master at w32[wofs[s] + i − off[s]] (OPT_NO_MASTER: none, the bf16 copy is the
// weight), its gradient at g32 or (OPT_G16) g16 [gofs[s] + i − off[s]]. The offsets are congruent mod 8, so four
// elements at a table offset that is a multiple of 4 are four aligned elements of each buffer.

enum { OPT_DECAY = 1, OPT_FROZEN = 2, OPT_G16 = 16, OPT_NO_MASTER = 32, OPT_SMALL = 64 };  // seg flag bits (4, 8: norm, matrix)

typedef struct {
    float *w32;
    bf16 *wb;
    const float *g32;
    const bf16 *g16;
    const size_t *off, *wofs, *gofs;  // [nseg + 1], [nseg], [nseg]
    const unsigned char *flag;
    int nseg;
    size_t total;
} OptBlock;

typedef struct {
    float lr, b1, b2, eps, wd, bc1, bc2s, gscale;
    uint64_t seed;  // stochastic rounding of the weights without a master: splitmix64(seed + element)
} OptHyper;

// w consecutive values from tensor sg at table offset i (the first of them): weights, gradients
template <int W> __device__ __forceinline__ void opt_load_p(float *p, const OptBlock &o, int sg, unsigned char f, size_t i) {
    if (f & OPT_NO_MASTER) ldv<W>(p, o.wb + i);
    else ldv<W>(p, o.w32 + o.wofs[sg] + (i - o.off[sg]));
}
template <int W> __device__ __forceinline__ void opt_load_g(float *g, const OptBlock &o, int sg, unsigned char f, size_t i) {
    if (f & OPT_G16) ldv<W>(g, o.g16 + o.gofs[sg] + (i - o.off[sg]));
    else ldv<W>(g, o.g32 + o.gofs[sg] + (i - o.off[sg]));
}
// round x to one of its two neighbours in bf16, up with probability (x − down) / (up − down): 16 random bits added
// below bf16's last bit, then truncation (sign and magnitude, so the same for negative x); inf and NaN as f2bf
__device__ __forceinline__ bf16 f2bf_sr(float x, uint64_t r) {
    unsigned u = __float_as_uint(x);
    if ((u & 0x7f800000u) == 0x7f800000u) return f2bf(x);
    return (bf16)((u + (unsigned)(r & 0xffffu)) >> 16);
}
template <int W>
__device__ __forceinline__ void opt_store_p(const OptBlock &o, int sg, unsigned char f, size_t i, const float *p, uint64_t seed) {
    if (f & OPT_NO_MASTER) {
#pragma unroll
        for (int k = 0; k < W; k++) o.wb[i + k] = f2bf_sr(p[k], splitmix64_at(seed + i + k));
    } else {
        stv<W>(o.w32 + o.wofs[sg] + (i - o.off[sg]), p);
        stv<W>(o.wb + i, p);
    }
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
// segment search per thread), element by element across a tensor boundary; frozen tensors are not touched
__global__ void k_adamw(OptBlock o, float *m, float *v, OptHyper h) {
    for (size_t q = blockIdx.x * (size_t)blockDim.x + threadIdx.x; q < (o.total + 3) / 4; q += (size_t)gridDim.x * blockDim.x) {
        size_t i = 4 * q;
        int sg = seg_of(o.off, o.nseg, i);
        if (i + 4 <= o.total && o.off[sg + 1] >= i + 4) {
            unsigned char f = o.flag[sg];
            if (f & OPT_FROZEN) continue;
            float pv[4], gv[4], mv[4], vv[4];
            opt_load_p<4>(pv, o, sg, f, i), opt_load_g<4>(gv, o, sg, f, i), ldv<4>(mv, m + i), ldv<4>(vv, v + i);
#pragma unroll
            for (int k = 0; k < 4; k++)
                pv[k] = adamw_elem(pv[k], gv[k], &mv[k], &vv[k], f, h.lr, h.b1, h.b2, h.eps, h.wd, h.bc1, h.bc2s, h.gscale);
            opt_store_p<4>(o, sg, f, i, pv, h.seed);
            stv<4>(m + i, mv), stv<4>(v + i, vv);
        } else
            for (size_t e = i; e < i + 4 && e < o.total; e++) {
                int se = seg_of(o.off, o.nseg, e);
                unsigned char f = o.flag[se];
                if (f & OPT_FROZEN) continue;
                float p, g;
                opt_load_p<1>(&p, o, se, f, e), opt_load_g<1>(&g, o, se, f, e);
                p = adamw_elem(p, g, &m[e], &v[e], f, h.lr, h.b1, h.b2, h.eps, h.wd, h.bc1, h.bc2s, h.gscale);
                opt_store_p<1>(o, se, f, e, &p, h.seed);
            }
    }
}

// ZeRO 1: AdamW over one rank's shard (hip/comm.h's partition). Shard element i lies in piece k (off[k] <= i <
// off[k + 1]) at table offset t = tofs[k] + (i − off[k]): its fp32 master and moments are ms[i], m[i], v[i], its
// gradient g32[t] (fp32, the table's layout; ZeRO 2: gs[i], the shard's) and its bf16 copy wb[t] (ZeRO 3: wbs[i]);
// where the piece has OPT_SMALL its fp32 also goes to w32 at sofs[k] + (i − off[k]) (the norm weights kernels read;
// the caller sums that buffer over the ranks, so a frozen element is written too). One element per thread: a piece's
// shard and table offsets differ by any amount, so 16-byte loads would not be aligned. The same adamw_elem as k_adamw: at one rank (shard = table) the same values.
// m NULL: no update, the master as it is published (every element's bf16 and w32: a shard uploaded from the host).
typedef struct {
    float *ms, *w32;
    bf16 *wb, *wbs;                   // wbs (ZeRO 3, else NULL): the bf16 copy in the shard's layout, wbs[i]
    const float *g32, *gs;            // gs (ZeRO 2, else NULL): the gradient in the shard's layout, gs[i]
    const size_t *off, *tofs, *sofs;  // [n + 1], [n], [n]
    const unsigned char *flag;
    int n;
    size_t total;
} ShardBlock;

__global__ void k_adamw_shard(ShardBlock o, float *m, float *v, OptHyper h) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < o.total; i += (size_t)gridDim.x * blockDim.x) {
        int k = seg_of(o.off, o.n, i);
        unsigned char f = o.flag[k];
        size_t j = i - o.off[k], t = o.tofs[k] + j;
        float p = o.ms[i];
        if (m && !(f & OPT_FROZEN))
            o.ms[i] = p = adamw_elem(p, o.gs ? o.gs[i] : o.g32[t], &m[i], &v[i], f, h.lr, h.b1, h.b2, h.eps, h.wd, h.bc1,
                                     h.bc2s, h.gscale);
        if (!m || !(f & OPT_FROZEN)) {
            if (o.wbs) o.wbs[i] = f2bf(p);
            else o.wb[t] = f2bf(p);
        }
        if (f & OPT_SMALL) o.w32[o.sofs[k] + j] = p;
    }
}

// Σ g² per block in double (the host adds the block sums in order: deterministic), over fp32 gradients or bf16 ones
// (GpuSpec.grad_bf16's g16). g 16-byte aligned; four independent 16-byte loads per thread per pass (v1, one 4-byte
// load per pass, kept too few bytes in flight to reach the memory bandwidth: hip/dev/adamw.hip)
__device__ __forceinline__ double sumsq16(float4 a) {
    return (double)a.x * a.x + (double)a.y * a.y + (double)a.z * a.z + (double)a.w * a.w;
}
__device__ __forceinline__ double sumsq16(uint4 a) {  // eight bf16
    const bf16 *e = (const bf16 *)&a;
    double s = 0;
#pragma unroll
    for (int k = 0; k < 8; k++) s += (double)bf2f(e[k]) * bf2f(e[k]);
    return s;
}
template <typename T> struct Vec16 { typedef float4 t; };  // 16 bytes of T
template <> struct Vec16<bf16> { typedef uint4 t; };
template <typename T> __global__ void k_sumsq(double *part, const T *g, size_t n) {
    typedef typename Vec16<T>::t V;
    const int E = sizeof(V) / sizeof(T);
    __shared__ double sh[32];
    const V *gv = (const V *)g;
    const size_t nv = n / E, st = (size_t)gridDim.x * blockDim.x, t0 = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    double s = 0;
    size_t i = t0;
    for (; i + 3 * st < nv; i += 4 * st) {
        V a[4] = {gv[i], gv[i + st], gv[i + 2 * st], gv[i + 3 * st]};
#pragma unroll
        for (int k = 0; k < 4; k++) s += sumsq16(a[k]);
    }
    for (; i < nv; i += st) s += sumsq16(gv[i]);
    for (size_t e = E * nv + t0; e < n; e += st) s += (double)ldf(g, e) * ldf(g, e);
    s = block_sum(s, sh);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

// =================================================================================================
// 8-bit AdamW (model.h adamw8_shard, its state format): per block of 256 elements of one unit, m on a signed
// square-root code of the block's max |m|, sqrt(v) on a square-root code of sqrt(max v):
//   m = max|m| · sign(q) · (q/127)²,   v = max v · (q/255)⁴
// each step decodes, updates in fp32 like AdamW, then encodes each value to the nearest level (m zeroed where
// v's code is 0). One thread block per quantization block. The fp32 operations are written as the _rn
// intrinsics in the CPU's order, so the compiler fuses none of them into an FMA: on the same gradients the
// codes, scales and weights come out as the CPU's (a CPU build that fuses may differ by an ulp, and a code
// that sits on a tie between two levels by one level: hip/dev/adamw.hip).
// =================================================================================================

__device__ __forceinline__ float q8m_decode_d(int8_t q, float s) {
    float x = __fdiv_rn((float)q, 127.0f);
    return __fmul_rn(__fmul_rn(x, fabsf(x)), s);
}
__device__ __forceinline__ float q8v_decode_d(uint8_t q, float s) {
    float x = __fdiv_rn((float)q, 255.0f);
    x = __fmul_rn(x, x);
    return __fmul_rn(__fmul_rn(x, x), s);
}
// the nearer of the two levels (q/n)² around a in [0, 1]
__device__ __forceinline__ int q8_nearest_d(float a, int n) {
    float fn = (float)n;
    int q = (int)__fmul_rn(fn, __fsqrt_rn(a));
    if (q >= n) return n;
    float lo = __fmul_rn((float)q, (float)q), hi = __fmul_rn((float)(q + 1), (float)(q + 1));
    return __fmul_rn(__fmul_rn(a, fn), fn) > __fmul_rn(0.5f, __fadd_rn(lo, hi)) ? q + 1 : q;
}
__device__ __forceinline__ int8_t q8m_encode_d(float m, float s) {
    if (!(s > 0)) return 0;
    int q = q8_nearest_d(__fdiv_rn(fabsf(m), s), 127);
    return (int8_t)(m < 0 ? -q : q);
}
__device__ __forceinline__ uint8_t q8v_encode_d(float v, float s) {
    return s > 0 ? (uint8_t)q8_nearest_d(__fsqrt_rn(__fdiv_rn(v, s)), 255) : 0;
}

#define Q8_BLOCK 256  // model.h QBLOCK
// The blocks (model.h adamw8_shard): q8[0..nu] where each of the nu units starts (in the table, or a ZeRO shard; q8[nu]
// the end), q8[nu + 1 + u] unit u's first block. Block b's elements start at its unit's start + 256 (b - first block),
// the unit's last block shorter; a block may hold the ends of several tensors, each element takes its own tensor's
// flags (a frozen one keeps state 0 and is not updated).
__device__ __forceinline__ size_t q8_block_start(const size_t *q8, int nu, size_t b, size_t *end) {
    int u = seg_of(q8 + nu + 1, nu, b);
    *end = q8[u + 1];
    return q8[u] + (b - q8[nu + 1 + u]) * Q8_BLOCK;
}
// one element's update (model.h adamw8_block's arithmetic): m and v from the decoded codes and the gradient, the weight
__device__ __forceinline__ float adamw8_elem(float p, float g, int8_t qm, uint8_t qv, float sm, float sv, float wd,
                                             const OptHyper &h, float *m, float *v) {
    g = __fmul_rn(g, h.gscale);
    *m = __fadd_rn(__fmul_rn(h.b1, q8m_decode_d(qm, sm)), __fmul_rn(1.0f - h.b1, g));
    *v = __fadd_rn(__fmul_rn(h.b2, q8v_decode_d(qv, sv)), __fmul_rn(__fmul_rn(1.0f - h.b2, g), g));
    p = __fmul_rn(p, __fsub_rn(1.0f, __fmul_rn(h.lr, wd)));
    float u = __fdiv_rn(__fmul_rn(__fdiv_rn(h.lr, h.bc1), *m), __fadd_rn(__fdiv_rn(__fsqrt_rn(*v), h.bc2s), h.eps));
    return __fsub_rn(p, u);
}
// the block's new scales (every thread of it calls this, after all of them read the old ones) and this element's codes
__device__ __forceinline__ void q8_block_store(float m, float v, int valid, size_t i, size_t b, int8_t *qm, uint8_t *qv,
                                               float *sm, float *sv, float *sh) {
    float mmax = block_max(fabsf(m), sh), vmax = block_max(v, sh);
    if (threadIdx.x == 0) sm[b] = mmax, sv[b] = vmax;
    if (valid) {
        uint8_t cv = q8v_encode_d(v, vmax);
        qv[i] = cv;
        qm[i] = cv ? q8m_encode_d(m, mmax) : 0;
    }
}

// the whole table (OptBlock's layout), nb blocks
__global__ void __launch_bounds__(Q8_BLOCK) k_adamw8(OptBlock o, int8_t *qm, uint8_t *qv, float *sm, float *sv,
                                                     const size_t *q8, int nu, OptHyper h) {
    __shared__ float sh[32];
    size_t nblocks = q8[2 * nu + 1];
    for (size_t b = blockIdx.x; b < nblocks; b += gridDim.x) {
        size_t end, i = q8_block_start(q8, nu, b, &end) + threadIdx.x;
        int valid = i < end, sg = valid ? seg_of(o.off, o.nseg, i) : 0;
        unsigned char f = o.flag[sg];
        float m = 0.0f, v = 0.0f;
        if (valid && !(f & OPT_FROZEN)) {
            float p, g;
            opt_load_p<1>(&p, o, sg, f, i), opt_load_g<1>(&g, o, sg, f, i);
            p = adamw8_elem(p, g, qm[i], qv[i], sm[b], sv[b], (f & OPT_DECAY) ? h.wd : 0.0f, h, &m, &v);
            opt_store_p<1>(o, sg, f, i, &p, h.seed);
        }
        q8_block_store(m, v, valid, i, b, qm, qv, sm, sv, sh);
    }
}

// ZeRO 1-3: over one rank's shard (ShardBlock's layout, as k_adamw_shard: the master ms[i], the gradient, the bf16
// copy and the small tensors' fp32 where this rank owns them); the blocks of the shard's units
__global__ void __launch_bounds__(Q8_BLOCK) k_adamw8_shard(ShardBlock o, int8_t *qm, uint8_t *qv, float *sm, float *sv,
                                                           const size_t *q8, int nu, OptHyper h) {
    __shared__ float sh[32];
    size_t nblocks = q8[2 * nu + 1];
    for (size_t b = blockIdx.x; b < nblocks; b += gridDim.x) {
        size_t end, i = q8_block_start(q8, nu, b, &end) + threadIdx.x;
        int valid = i < end, k = valid ? seg_of(o.off, o.n, i) : 0;
        unsigned char f = o.flag[k];
        size_t j = i - o.off[k], t = o.tofs[k] + j;
        float m = 0.0f, v = 0.0f;
        if (valid) {
            float p = o.ms[i];
            if (!(f & OPT_FROZEN)) {
                o.ms[i] = p = adamw8_elem(p, o.gs ? o.gs[i] : o.g32[t], qm[i], qv[i], sm[b], sv[b],
                                          (f & OPT_DECAY) ? h.wd : 0.0f, h, &m, &v);
                if (o.wbs) o.wbs[i] = f2bf(p);
                else o.wb[t] = f2bf(p);
            }
            if (f & OPT_SMALL) o.w32[o.sofs[k] + j] = p;
        }
        q8_block_store(m, v, valid, i, b, qm, qv, sm, sv, sh);
    }
}
