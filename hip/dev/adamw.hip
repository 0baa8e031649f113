// hip/dev/adamw.hip — workbench for the optimizers (hip/adamw.h) over a parameter block laid out as hip/plan.h
// lays it out: six tensors (matrices with and without weight decay, a norm-like vector, a frozen scalar; lengths
// that end mid-vector and mid-block), three steps each, the gradient scaled (clipping) on the way.
//   AdamW (k_adamw) against model.h's adamw_update: fp32 everything; the matrices' gradients in bf16 (packed,
//     GpuSpec.grad_bf16); the matrices without an fp32 master (GpuSpec.bf16_only: stochastic rounding).
//   8-bit AdamW (k_adamw8) against model.h's adamw8_block (its state format): the six tensors as one unit of the
//     ZeRO partition, so blocks hold the ends of several tensors (the frozen scalar inside one): codes, block scales
//     and weights; the codec alone over every code and over values next to every decision boundary.
//   k_sumsq over fp32 and over bf16 gradients (the gradient norm) against model.h's grad_norm2.
//   v1 of each: grid-stride, one element per thread per iteration. k_sumsq v2 (hip/adamw.h): four 16-byte loads
//   per thread per pass; v1 is kept below (timing only).
// Tolerances:
//   AdamW 1e-6: the same fp32 formula in the same order; nvcc may fuse a multiply and an add where the CPU
//     build does not (an ulp here and there).
//   bf16-only weights: each new weight must be one of the two bf16 values around the CPU's fp32 update
//     (exactly), the rounding unbiased (mean offset within 0.05 ulp over ~6000 weights: 4 sigma of a fair
//     coin is 0.026) and not round-to-nearest (20-30% of the weights go to the farther neighbour: 25% expected
//     for offsets spread evenly between the two).
//   8-bit AdamW: the kernel spells every fp32 operation as an _rn intrinsic in the CPU's order, so the host
//     reference (built without FMA contraction) and the kernel should agree bit for bit: weights and scales
//     1e-6, and codes that differ in at most 1 of 1000 elements and never by more than one level. What can make
//     them differ: an ulp in m or v from a differently ordered or fused operation, which moves a value that
//     sits on the midpoint between two levels to the other one (the scale is then an ulp off as well).
//   norms 1e-6 in float (double sums in different orders).
//   build: make hip/build/dev_adamw   run: hip/build/dev_adamw [--no-time]
#include "hip/dev/bench.h"
#include "hip/adamw.h"
#include "hip/elementwise.h"
#include "hip/plan.h"

// --- a parameter block: six tensors, its layout by hip/plan.h for the storage options --------------------------
enum { NT = 6 };
static const size_t tsize[NT] = {1000, 37, 4096, 1, 777, 300};
static const unsigned char tflag[NT] = {1 | 8, 4, 1 | 8, 2 | 4, 8, 0};  // decay, norm, frozen, matrix bits

typedef struct {
    GpuSpec s;          // only ntensor, tensor_off, tensor_flag, total, and the storage options
    size_t off[NT + 1], wofs[NT], gofs[NT], q8at[2], q8[4], n_w32, n_g32, n_g16, nblocks;
    unsigned char dflag[NT];  // the device flags (OPT_G16, OPT_NO_MASTER added)
    OptBlock o;         // device pointers
    float *m, *v;       // AdamW states (device)
    int8_t *qm;         // 8-bit states (device)
    uint8_t *qv;
    float *sm, *sv;
    size_t *dq8;
} Block;

static void block_make(Block *b, int grad_bf16, int bf16_only) {
    memset(b, 0, sizeof *b);
    for (int i = 0; i < NT; i++) b->off[i + 1] = b->off[i] + tsize[i];
    b->s.ntensor = NT, b->s.tensor_off = b->off, b->s.tensor_flag = (unsigned char *)tflag, b->s.total = b->off[NT];
    b->s.grad_bf16 = grad_bf16, b->s.bf16_only = bf16_only;
    b->q8at[0] = 0, b->q8at[1] = b->off[NT], b->s.q8_units = 1, b->s.q8_at = b->q8at;  // one unit: the whole block
    GpuPlan p;
    gpu_plan_layout(&b->s, &p);
    memcpy(b->wofs, p.wofs, sizeof b->wofs), memcpy(b->gofs, p.gofs, sizeof b->gofs), memcpy(b->q8, p.q8, sizeof b->q8);
    b->n_w32 = p.n_w32, b->n_g32 = p.n_g32, b->n_g16 = p.n_g16, b->nblocks = p.nblocks;
    gpu_plan_free(&p);
    for (int i = 0; i < NT; i++)
        b->dflag[i] = tflag[i] | (grad_bf16 && (tflag[i] & 8) ? OPT_G16 : 0) | (bf16_only && (tflag[i] & 8) ? OPT_NO_MASTER : 0);
    size_t n = b->s.total, *doff, *dwofs, *dgofs;
    unsigned char *dfl;
    hipCheck(hipMalloc(&doff, sizeof b->off)), hipCheck(hipMalloc(&dwofs, sizeof b->wofs));
    hipCheck(hipMalloc(&dgofs, sizeof b->gofs)), hipCheck(hipMalloc(&dfl, NT)), hipCheck(hipMalloc(&b->dq8, sizeof b->q8));
    hipCheck(hipMemcpy(doff, b->off, sizeof b->off, hipMemcpyHostToDevice));
    hipCheck(hipMemcpy(dwofs, b->wofs, sizeof b->wofs, hipMemcpyHostToDevice));
    hipCheck(hipMemcpy(dgofs, b->gofs, sizeof b->gofs, hipMemcpyHostToDevice));
    hipCheck(hipMemcpy(dfl, b->dflag, NT, hipMemcpyHostToDevice));
    hipCheck(hipMemcpy(b->dq8, b->q8, sizeof b->q8, hipMemcpyHostToDevice));
    OptBlock o = {b->n_w32 ? dev_f32(b->n_w32, 1) : NULL, dev_bf16(n, 1), dev_f32(b->n_g32, 0),
                  b->n_g16 ? dev_bf16(b->n_g16, 0) : NULL, doff, dwofs, dgofs, dfl, NT, n};
    b->o = o;
    b->m = dev_f32(n, 0), b->v = dev_f32(n, 0);
    hipCheck(hipMalloc(&b->qm, n)), hipCheck(hipMalloc(&b->qv, n));
    hipCheck(hipMemset(b->qm, 0, n)), hipCheck(hipMemset(b->qv, 0, n));
    b->sm = dev_f32(b->nblocks, 0), b->sv = dev_f32(b->nblocks, 0);
}
static int is16(const Block *b, int i) { return (b->dflag[i] & OPT_G16) != 0; }
static int nomaster(const Block *b, int i) { return (b->dflag[i] & OPT_NO_MASTER) != 0; }

// host table-layout weights / gradients into the device layout (bf16 where the layout keeps bf16: the values
// must be bf16-exact there for the comparison to be exact)
static void block_put_w(Block *b, const float *p) {
    for (int i = 0; i < NT; i++) {
        size_t o = b->off[i], n = tsize[i];
        bf16 *h = (bf16 *)mallocCheck(sizeof(bf16) * n);
        for (size_t k = 0; k < n; k++) h[k] = f32_to_bf16(p[o + k]);
        hipCheck(hipMemcpy(b->o.wb + o, h, sizeof(bf16) * n, hipMemcpyHostToDevice));
        if (!nomaster(b, i)) hipCheck(hipMemcpy(b->o.w32 + b->wofs[i], p + o, sizeof(float) * n, hipMemcpyHostToDevice));
        free(h);
    }
}
static void block_put_g(Block *b, const float *g) {
    for (int i = 0; i < NT; i++) {
        size_t o = b->off[i], n = tsize[i];
        if (is16(b, i)) {
            bf16 *h = (bf16 *)mallocCheck(sizeof(bf16) * n);
            for (size_t k = 0; k < n; k++) h[k] = f32_to_bf16(g[o + k]);
            hipCheck(hipMemcpy((bf16 *)b->o.g16 + b->gofs[i], h, sizeof(bf16) * n, hipMemcpyHostToDevice));
            free(h);
        } else hipCheck(hipMemcpy((float *)b->o.g32 + b->gofs[i], g + o, sizeof(float) * n, hipMemcpyHostToDevice));
    }
}
static float *block_get_w(const Block *b) {  // the weights in table layout: the master, or the bf16 copy where none
    float *w = from_dev_bf16(b->o.wb, b->s.total);
    for (int i = 0; i < NT; i++)
        if (!nomaster(b, i)) hipCheck(hipMemcpy(w + b->off[i], b->o.w32 + b->wofs[i], sizeof(float) * tsize[i], hipMemcpyDeviceToHost));
    return w;
}
static void grads_for(float *g, size_t n, Rng *r, const Block *b) {
    fill_normal(g, n, r, 1e-2f);
    for (int i = 0; i < NT; i++)
        if (is16(b, i)) round_bf16(g + b->off[i], tsize[i]);  // the values the bf16 storage holds exactly
}

static const float LR = 1e-3f, B1 = 0.9f, B2 = 0.95f, EPS = 1e-8f, WD = 0.1f, GSCALE = 0.7f;
static OptHyper hyper(int step) {
    OptHyper h = {LR, B1, B2, EPS, WD, 1.0f - powf(B1, (float)step), sqrtf(1.0f - powf(B2, (float)step)), GSCALE,
                  (uint64_t)step * 0x9E3779B97F4A7C15ull};
    return h;
}

// --- AdamW over the three layouts ------------------------------------------------------------------------------
static void case_adamw(int grad_bf16, int bf16_only) {
    printf("AdamW: matrices' gradients %s, weights %s\n", grad_bf16 ? "bf16" : "fp32", bf16_only ? "bf16 only" : "fp32 master");
    Block b;
    block_make(&b, grad_bf16, bf16_only);
    size_t n = b.s.total;
    Rng r = rng_seed(21);
    float *p = (float *)mallocCheck(sizeof(float) * n), *g = (float *)mallocCheck(sizeof(float) * n);
    float *m = (float *)callocCheck(sizeof(float) * n), *v = (float *)callocCheck(sizeof(float) * n);
    fill_normal(p, n, &r, 0.05f);
    if (bf16_only) round_bf16(p, n);  // the bf16 copy is the weight
    block_put_w(&b, p);
    double off_sum = 0, far = 0, cnt = 0, outside = 0;
    for (int step = 1; step <= 3; step++) {
        grads_for(g, n, &r, &b);
        block_put_g(&b, g);
        for (size_t i = 0; i < n; i++) g[i] *= GSCALE;
        for (int s = 0; s < NT; s++)
            if (!(tflag[s] & 2))
                adamw_update(p + b.off[s], g + b.off[s], m + b.off[s], v + b.off[s], tsize[s], LR, B1, B2, EPS,
                             (tflag[s] & 1) ? WD : 0.0f, step);
        k_adamw<<<4, 256>>>(b.o, b.m, b.v, hyper(step));
        hipCheckLaunch();
        if (!bf16_only) continue;
        float *w = block_get_w(&b);
        for (int s = 0; s < NT; s++) {
            if (!nomaster(&b, s)) continue;
            for (size_t k = b.off[s]; k < b.off[s] + tsize[s]; k++) {  // w must be one of the two bf16 around p
                // the bf16 neighbours of p: p's bits cut to bf16 (toward zero) and the next one away from zero
                uint32_t u, t;
                memcpy(&u, &p[k], 4);
                t = u & 0xffff0000u;
                float a, c;
                memcpy(&a, &t, 4), t += 0x10000u, memcpy(&c, &t, 4);
                if (a == p[k]) outside += w[k] != a;
                else if (w[k] != a && w[k] != c) outside++;
                else {
                    off_sum += (w[k] - p[k]) / fabsf(c - a);
                    far += fabsf(w[k] - p[k]) > 0.5f * fabsf(c - a);
                    cnt++;
                }
            }
        }
        memcpy(p, w, sizeof(float) * n), free(w);  // the next step's reference starts from the device's weights
    }
    float *gm = from_dev_f32(b.m, n), *gv = from_dev_f32(b.v, n);
    if (!bf16_only) {
        float *gp = block_get_w(&b), *gpb = from_dev_bf16(b.o.wb, n);
        check("weights after 3 steps", gp, p, n, 1e-6);
        check("bf16 copy", gpb, p, n, 4e-3);
        free(gp), free(gpb);
    } else {
        double mean = cnt ? off_sum / cnt : 1, fr = cnt ? far / cnt : 0;
        int bad = outside > 0 || !(fabs(mean) <= 0.05) || !(fr >= 0.2 && fr <= 0.3);
        printf("  %s stochastic rounding over %.0f weights x 3 steps: %.0f not a neighbour of the fp32 update, mean "
               "offset %+.4f ulp (tol 0.05), %.3f to the farther one (expect ~0.25)\n",
               bad ? "FAIL" : "ok  ", cnt, outside, mean, fr);
        bench_failures += bad;
    }
    check("first moments", gm, m, n, 1e-6);
    check("second moments", gv, v, n, 1e-6);
    free(p), free(g), free(m), free(v), free(gm), free(gv);
}

#ifdef QBLOCK  // model.h's 8-bit AdamW, the CPU reference (moved there from train.c with the step interface)
// --- 8-bit AdamW ----------------------------------------------------------------------------------------------
__global__ void k_q8_codec(float *dm, float *dv, int8_t *em, uint8_t *ev, const float *x, const float *s, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        dm[i] = q8m_decode_d((int8_t)(i % 255 - 127), s[i]), dv[i] = q8v_decode_d((uint8_t)(i % 256), s[i]);
        em[i] = q8m_encode_d(x[i], s[i]), ev[i] = q8v_encode_d(fabsf(x[i]), s[i]);
    }
}
static void case_codec(void) {
    // every code at three scales for the decoders; for the encoders values at and next to each level's midpoint
    // (where nearest-level rounding decides), at those scales
    int n = 0, cap = 3 * (256 + 255 * 3 + 127 * 4);
    float *x = (float *)mallocCheck(sizeof(float) * cap), *s = (float *)mallocCheck(sizeof(float) * cap);
    float scales[3] = {1.0f, 3.7e-3f, 2.5e4f};
    for (int k = 0; k < 3; k++) {
        float sc = scales[k];
        for (int q = 0; q < 256; q++) x[n] = 0, s[n++] = sc;
        for (int q = 0; q < 255; q++) {  // v's midpoints: sqrt(v/s) halfway between (q/255)² and ((q+1)/255)²
            float mid = 0.5f * ((q / 255.0f) * (q / 255.0f) + ((q + 1) / 255.0f) * ((q + 1) / 255.0f)), v = mid * mid * sc;
            float xs[3] = {v, nextafterf(v, 0), nextafterf(v, INFINITY)};
            for (int j = 0; j < 3; j++) x[n] = xs[j], s[n++] = sc;
        }
        for (int q = 0; q < 127; q++) {  // m's: |m|/s halfway between (q/127)² and ((q+1)/127)², both signs
            float m = 0.5f * ((q / 127.0f) * (q / 127.0f) + ((q + 1) / 127.0f) * ((q + 1) / 127.0f)) * sc;
            float xs[4] = {m, nextafterf(m, 0), nextafterf(m, INFINITY), -m};
            for (int j = 0; j < 4; j++) x[n] = xs[j], s[n++] = sc;
        }
    }
    float *dx = to_dev_f32(x, n), *ds = to_dev_f32(s, n), *ddm = dev_f32(n, 1), *ddv = dev_f32(n, 1);
    int8_t *dem;
    uint8_t *dev;
    hipCheck(hipMalloc(&dem, n)), hipCheck(hipMalloc(&dev, n));
    k_q8_codec<<<8, 256>>>(ddm, ddv, dem, dev, dx, ds, n);
    hipCheckLaunch();
    float *hm = from_dev_f32(ddm, n), *hv = from_dev_f32(ddv, n);
    int8_t *em = (int8_t *)mallocCheck(n);
    uint8_t *ev = (uint8_t *)mallocCheck(n);
    hipCheck(hipMemcpy(em, dem, n, hipMemcpyDeviceToHost)), hipCheck(hipMemcpy(ev, dev, n, hipMemcpyDeviceToHost));
    int bad = 0;
    for (int i = 0; i < n; i++) {
        bad += hm[i] != q8m_decode((int8_t)(i % 255 - 127), s[i]) || hv[i] != q8v_decode((uint8_t)(i % 256), s[i]);
        bad += em[i] != q8m_encode(x[i], s[i]) || ev[i] != q8v_encode(fabsf(x[i]), s[i]);
    }
    printf("  %s 8-bit codec, device against model.h over %d values (every code, every midpoint and its neighbours): "
           "%d differ\n", bad ? "FAIL" : "ok  ", n, bad);
    bench_failures += bad > 0;
    free(x), free(s), free(hm), free(hv), free(em), free(ev);
}

static void case_adamw8(int grad_bf16) {
    printf("8-bit AdamW: matrices' gradients %s\n", grad_bf16 ? "bf16" : "fp32");
    Block b;
    block_make(&b, grad_bf16, 0);
    size_t n = b.s.total, nb = b.nblocks;
    Rng r = rng_seed(22);
    float *p = (float *)mallocCheck(sizeof(float) * n), *g = (float *)mallocCheck(sizeof(float) * n);
    int8_t *qm = (int8_t *)callocCheck(n);
    uint8_t *qv = (uint8_t *)callocCheck(n);
    float *sm = (float *)callocCheck(sizeof(float) * nb), *sv = (float *)callocCheck(sizeof(float) * nb);
    fill_normal(p, n, &r, 0.05f);
    block_put_w(&b, p);
    for (int step = 1; step <= 3; step++) {
        grads_for(g, n, &r, &b);
        for (size_t i = 0; i < 40; i++) g[b.off[2] + 256 + i] = 0.0f;  // a block stretch of zeros (v's code 0)
        block_put_g(&b, g);
        for (size_t i = 0; i < n; i++) g[i] *= GSCALE;
        float bc1 = 1.0f - powf(B1, (float)step), bc2s = sqrtf(1.0f - powf(B2, (float)step)), wd[QBLOCK];
        unsigned char live[QBLOCK];
        for (size_t k = 0; k < nb; k++) {  // blocks of 256 from the unit's start, each value its tensor's flags
            size_t i0 = k * QBLOCK, len = n - i0 < QBLOCK ? n - i0 : QBLOCK;
            for (size_t j = 0; j < len; j++) {
                int t = 0;
                while (i0 + j >= b.off[t + 1]) t++;
                live[j] = !(tflag[t] & 2), wd[j] = (tflag[t] & 1) ? WD : 0.0f;
            }
            adamw8_block(p + i0, g + i0, wd, live, qm + i0, qv + i0, sm + k, sv + k, len, LR, B1, B2, EPS, bc1, bc2s);
        }
        k_adamw8<<<5, Q8_BLOCK>>>(b.o, b.qm, b.qv, b.sm, b.sv, b.dq8, 1, hyper(step));
        hipCheckLaunch();
    }
    float *gp = block_get_w(&b), *gsm = from_dev_f32(b.sm, nb), *gsv = from_dev_f32(b.sv, nb);
    int8_t *gqm = (int8_t *)mallocCheck(n);
    uint8_t *gqv = (uint8_t *)mallocCheck(n);
    hipCheck(hipMemcpy(gqm, b.qm, n, hipMemcpyDeviceToHost)), hipCheck(hipMemcpy(gqv, b.qv, n, hipMemcpyDeviceToHost));
    check("weights after 3 steps", gp, p, n, 1e-6);
    check("blocks' max |m|", gsm, sm, nb, 1e-6);
    check("blocks' max v", gsv, sv, nb, 1e-6);
    size_t dm = 0, dv = 0, big = 0;
    for (size_t i = 0; i < n; i++) {
        dm += gqm[i] != qm[i], dv += gqv[i] != qv[i];
        big += abs(gqm[i] - qm[i]) > 1 || abs((int)gqv[i] - (int)qv[i]) > 1;
    }
    int bad = big > 0 || dm * 1000 > n || dv * 1000 > n;
    printf("  %s codes: m %zu and v %zu of %zu differ (tol 1 in 1000, one level), %zu by more than one level\n",
           bad ? "FAIL" : "ok  ", dm, dv, n, big);
    bench_failures += bad;
    free(p), free(g), free(qm), free(qv), free(sm), free(sv), free(gp), free(gsm), free(gsv), free(gqm), free(gqv);
}

#else
static void case_codec(void) {
    printf("  FAIL 8-bit AdamW: this model.h has no adamw8_block to check the kernel against\n");
    bench_failures++;
}
static void case_adamw8(int grad_bf16) { (void)grad_bf16; }
#endif

// --- the gradient's sum of squares and the timings ---------------------------------------------------------------
typedef struct {
    Block *b;
    float *g;
    bf16 *g16;
    size_t n;
} Args;
// k_sumsq v1: one 4-byte load per thread per pass
__global__ void k_sumsq_v1(double *part, const float *g, size_t n) {
    __shared__ double sh[32];
    double s = 0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        s += (double)g[i] * g[i];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}
static double *sumsq_part;
static void run_sumsq_v1(void *q) { Args *a = (Args *)q; k_sumsq_v1<<<1024, 256>>>(sumsq_part, a->g, a->n); }
static void run_sumsq_v2(void *q) { Args *a = (Args *)q; k_sumsq<<<1024, 256>>>(sumsq_part, a->g, a->n); }
static void run_sumsq_bf16(void *q) { Args *a = (Args *)q; k_sumsq<<<1024, 256>>>(sumsq_part, a->g16, a->n); }
static void run_adamw(void *q) {
    Args *a = (Args *)q;
    k_adamw<<<gs_grid(a->n, 256), 256>>>(a->b->o, a->b->m, a->b->v, hyper(1));
}
static void run_adamw8(void *q) {
    Args *a = (Args *)q;
    k_adamw8<<<gs_grid(a->b->nblocks, 1), Q8_BLOCK>>>(a->b->o, a->b->qm, a->b->qv, a->b->sm, a->b->sv, a->b->dq8, 1, hyper(1));
}

static void case_sumsq(void) {
    // fp32: the whole block over 64 blocks (every thread in the one-load loop), then n − 5 elements from g + 4 (a
    // length that is not a multiple of 4: the scalar tail) over 3 blocks of 64 threads (the four-load loop, then the
    // one-load loop and the tail); bf16: 5906 values from g + 8 over 3 blocks of 64 (tail of 2), and 8·64·3·5 over 3
    size_t n = 7700;  // case 3 reads 8 + 8·64·3·5 = 7688 values
    Rng r = rng_seed(23);
    float *g = (float *)mallocCheck(sizeof(float) * n);
    fill_normal(g, n, &r, 1e-2f);
    round_bf16(g, n);
    float *dg = to_dev_f32(g, n);
    bf16 *dg16 = to_dev_bf16(g, n);
    double *part;
    hipCheck(hipMalloc(&part, sizeof(double) * 1024));
    for (int c = 0; c < 4; c++) {
        size_t off = c == 0 ? 0 : c == 1 ? 4 : 8, len = c == 0 ? n : c == 1 ? n - 5 : c == 2 ? 5906 - 3 : 8 * 64 * 3 * 5;
        int nb = c ? 3 : 64;
        if (c < 2) k_sumsq<<<nb, c ? 64 : 256>>>(part, dg + off, len);
        else k_sumsq<<<nb, 64>>>(part, dg16 + off, len);
        hipCheckLaunch();
        double hp[64], s = 0;
        hipCheck(hipMemcpy(hp, part, sizeof(double) * nb, hipMemcpyDeviceToHost));
        for (int i = 0; i < nb; i++) s += hp[i];
        float fs = (float)s, fr = (float)grad_norm2(g + off, len);
        const char *what[4] = {"gradient sum of squares", "gradient sum of squares (odd length, 3 blocks of 64)",
                               "bf16 gradient sum of squares (tail of 7)", "bf16 gradient sum of squares (four-load loop)"};
        check(what[c], &fs, &fr, 1, 1e-6);
    }
    hipCheck(hipFree(part)), hipCheck(hipFree(dg)), hipCheck(hipFree(dg16));
    free(g);
}

int main(int argc, char **argv) {
    int timing = !(argc > 1 && strcmp(argv[1], "--no-time") == 0);
    printf("optimizer / grad norm workbench on %s\n", GS_VENDOR);
    case_adamw(0, 0);
    case_adamw(1, 0);
    case_adamw(1, 1);
    case_codec();
    case_adamw8(0);
    case_adamw8(1);
    case_sumsq();
    if (timing) {  // the Gemma-3-270M parameter block (268M floats) as one decaying matrix
        size_t N = 268098176;
        Block b;
        memset(&b, 0, sizeof b);
        size_t off[2] = {0, N}, zero = 0, blk[4] = {0, N, 0, (N + 255) / 256};  // one unit (hip/plan.h's q8)
        unsigned char fl = 1 | 8;
        size_t *doff, *dz, *dblk;
        unsigned char *dfl;
        hipCheck(hipMalloc(&doff, sizeof off)), hipCheck(hipMalloc(&dz, sizeof zero)), hipCheck(hipMalloc(&dfl, 1));
        hipCheck(hipMalloc(&dblk, sizeof blk));
        hipCheck(hipMemcpy(doff, off, sizeof off, hipMemcpyHostToDevice)), hipCheck(hipMemcpy(dz, &zero, sizeof zero, hipMemcpyHostToDevice));
        hipCheck(hipMemcpy(dfl, &fl, 1, hipMemcpyHostToDevice)), hipCheck(hipMemcpy(dblk, blk, sizeof blk, hipMemcpyHostToDevice));
        float *g = dev_f32(N, 0);
        k_init<<<65536, 256>>>(g, N, 0, 1, 0.01f, 0);
        OptBlock o = {dev_f32(N, 0), dev_bf16(N, 0), g, NULL, doff, dz, dz, dfl, 1, N};
        b.o = o;
        b.m = dev_f32(N, 0), b.v = dev_f32(N, 0), b.nblocks = blk[3], b.dq8 = dblk;
        Args a = {&b, g, NULL, N};
        float t = time_ms(run_adamw, &a, 10);
        printf("timing: AdamW over %zu parameters: %.3f ms, %.0f GB/s (4 reads + 3 writes fp32, 1 bf16 write)\n", N, t,
               N * 30.0 / t / 1e6);
        hipCheck(hipFree(b.m)), hipCheck(hipFree(b.v));
        hipCheck(hipMalloc(&b.qm, N)), hipCheck(hipMalloc(&b.qv, N));
        hipCheck(hipMemset(b.qm, 0, N)), hipCheck(hipMemset(b.qv, 0, N));
        b.sm = dev_f32(b.nblocks, 0), b.sv = dev_f32(b.nblocks, 0);
        t = time_ms(run_adamw8, &a, 10);
        printf("timing: 8-bit AdamW over %zu parameters: %.3f ms, %.0f GB/s (2 reads + 1 write fp32, 2 + 2 bytes, "
               "1 bf16 write)\n", N, t, N * 18.0 / t / 1e6);
        hipCheck(hipMalloc(&sumsq_part, sizeof(double) * 1024));
        for (int ver = 1; ver <= 2; ver++) {  // gpu_grad_sumsq's launch: 1024 blocks of 256
            float ts = time_ms(ver == 1 ? run_sumsq_v1 : run_sumsq_v2, &a, 10);
            printf("timing: gradient sum of squares v%d over %zu parameters: %.3f ms, %.0f GB/s\n", ver, N, ts, N * 4.0 / ts / 1e6);
        }
        a.g16 = b.o.wb;
        float ts = time_ms(run_sumsq_bf16, &a, 10);
        printf("timing: bf16 gradient sum of squares over %zu parameters: %.3f ms, %.0f GB/s\n", N, ts, N * 2.0 / ts / 1e6);
    }
    return bench_exit("adamw");
}
