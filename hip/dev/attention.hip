// hip/dev/attention.hip — workbench for causal / sliding-window / GQA / softcap attention, forward and
// backward (hip/attention.h) against model.h's attention_forward / attention_backward (fp32, on the
// same bf16-exact inputs).
//   v1 simple: one warp per query row (forward, dQ) or key row (dK, dV); fp32 dot products via warp
//              reductions. Portable (AMD); any D up to 512. Slow: every key costs two shuffle trees.
//   v2 mma:    FlashAttention-2 scheme on NVIDIA tensor cores: 64x64 tiles in XOR-swizzled shared memory
//              (cp.async), ldmatrix + mma.sync m16n8k16 bf16 -> fp32, online softmax in registers,
//              P reused from the accumulators as the next product's A operand; backward per 64-key block
//              with dK/dV in registers and dQ by fp32 atomics. D in {64, 128, 256}.
//              Backward history on H100 (B=8 T=2048 H=4 K=1 D=256, sliding W=512 / full): single-buffered
//              Q/dO 0.933 / 2.343 ms; Q/dO double-buffered 0.903 / 2.326 (load latency was not the limit);
//              dQ by one float2 atomic per pair instead of two scalar atomics 0.716 / 1.849 (it was).
//              Tried on H200 and not kept: one float4 atomic per four columns after a lane swap, 0.729 /
//              1.228 (v2: 0.696 / 1.189 in the next call, 0.697 / 1.186 a session earlier); 32-key blocks of 4
//              warps with Q/dO single-buffered so that two blocks share an SM (104.5 KB of shared memory each),
//              0.830 / 1.440 in the same call as v2's 0.696 / 1.189: the doubled dQ atomics and Q/dO loads per
//              key cost more than the second block's overlap gains.
//   v3 band:   the backward of sliding layers with K = 1 (forward: v2's): the band of 64 + window keys
//              per 64 queries as batched BLAS products (S, dP, dQ per query block; dK, dV per key block over
//              the same buffers) around one elementwise pass (attention.h). Pads before k, v and after q, dO hold NaN here except
//              where the contract asks for zeros, so a masked score that leaks into a product fails.
//              Full layers with K = 1: the backward in 4 query groups, each a band from key 0 (attention.h);
//              the forward stays v2's. The unwritten upper triangle of its P / dS square is NaN here too.
//              On Hopper at D = 256 the band's P and dS come from k_attn_band_wg (S and dP as warpgroup products,
//              P and dS made in registers and stored as bf16); "v3 band blas" is the portable path, S and dP by
//              two batched products into fp32 buffers and k_attn_band. H200, sliding W=512 / full: 0.324 / 0.590
//              ms against 0.396 / 0.801. Before P and dS went out through shared-memory staging tiles in 16-byte
//              rows (4-byte stores straight from the accumulators; Nsight Compute: stalls on the store queue):
//              0.370 / 0.725 (1B step 214.5 -> 210.1 ms, 3 alternating pairs). The kernel's first
//              version, with a per-score epilogue of ~50 instructions (softcap and mask tested per score,
//              descriptors rebuilt per product): 0.378 / 0.751 and no gain in the step. Tried, not kept: one
//              warpgroup per block with K, V double-buffered and the next block's products issued before this
//              block's P, dS (FlashAttention-3's overlap; 255 registers and ~280 bytes of spills): 0.433 / 0.864.
//   v4 wgmma:  the forward on Hopper (attention.h k_attn_fwd_wg, D = 256): S = Q K^T and O += P V as warpgroup
//              products reading Q, K, V from 128-byte-swizzled shared memory (P from registers); two query heads
//              of one kv group per block sharing K and V, loads pipelined (v4 1h: one head per block, two blocks
//              per SM). Backward: v2's. H200, B=8 T=2048 H=4 K=1 D=256, sliding W=512 / full: v2 0.170 / 0.308 ms,
//              v4 0.141 / 0.229, v4 1h 0.140 / 0.245 (before v2 and v4 shared their softmax over flat arrays:
//              v2 0.184 / 0.339, v4 0.156 / 0.257, a one-head build without the pipeline 0.151 / 0.268).
//              Tried and not kept: S and P V each as two independent chains of half the width (keys 0-31 |
//              32-63, output columns 0-127 | 128-255; 250 registers): 0.165 / 0.279, slower. Sharing K, V
//              between two heads (half the loads from L2) and the pipeline did not speed it up either: the
//              ~4 TB/s of L2 reads one head per block makes is not the limit. V's descriptor ran both ways
//              on the device: with its two offsets swapped the outputs were wrong (rel. 1.2): these cases see it.
// Tolerances: o, dq, dk, dv 1e-2 relative L2 (P and dS are rounded to bf16 before their products, as in
// every bf16 flash attention; the output is bf16); lse 1e-4 (fp32 statistics of exact-input scores).
//   build: make -C . hip/build/dev_attention   run: hip/build/dev_attention [--no-time | --time-only]
#include "hip/dev/bench.h"
#include "hip/attention.h"

typedef struct {
    int B, T, H, K, D, window;
    float softcap;
} Shape;

typedef struct {
    AttnFwd f;
    AttnBwd b;
    int mma;       // 0 simple, 1 mma, 2 mma forward + banded backward (sliding or full), 3 / 4 wgmma forward (3: two
                   // heads per block where it can, 4: one) + mma backward, 5 = 2 with the band's S and dP by the BLAS products
    AttnBand band;
} Run;

static void run_fwd(void *p) {
    Run *r = (Run *)p;
    attn_forward(r->f, r->mma >= 5 ? 1 : r->mma >= 3 ? r->mma - 1 : r->mma > 0);
}
static void run_bwd(void *p) {
    Run *r = (Run *)p;
    int N = r->f.B * r->f.T;
    k_attn_dot<<<gs_cdiv((size_t)N * r->f.H, 4), 4 * GS_WARP>>>(r->b.Di, r->b.dout, r->b.lddo, r->f.o, r->f.ldo, r->f.B,
                                                                r->f.T, r->f.H, r->f.D);
    attn_backward(r->b, r->mma >= 5 ? 2 : r->mma >= 3 ? 1 : r->mma, &r->band);
}

static double visible_keys(const Shape *s) {  // Σ over queries of the keys each sees, per (b, h)
    double n = 0;
    for (int t = 0; t < s->T; t++) n += s->window > 0 && t + 1 > s->window ? s->window : t + 1;
    return n;
}

static void case_run(const Shape *s, int timing) {
    int N = s->B * s->T, H = s->H, K = s->K, D = s->D;
    size_t nq = (size_t)N * H * D, nk = (size_t)N * K * D;
    float scale = 1.0f / sqrtf((float)D);
    printf("B=%d T=%d H=%d K=%d D=%d window=%d softcap=%g\n", s->B, s->T, H, K, D, s->window, s->softcap);
    Rng r = rng_seed(1234 + D + s->T);
    float *q = (float *)mallocCheck(sizeof(float) * nq), *k = (float *)mallocCheck(sizeof(float) * nk);
    float *v = (float *)mallocCheck(sizeof(float) * nk), *dout = (float *)mallocCheck(sizeof(float) * nq);
    fill_normal(q, nq, &r, 1.0f), fill_normal(k, nk, &r, 1.0f), fill_normal(v, nk, &r, 1.0f), fill_normal(dout, nq, &r, 1.0f);
    round_bf16(q, nq), round_bf16(k, nk), round_bf16(v, nk), round_bf16(dout, nq);
    float *o = NULL, *lse = NULL, *dq = NULL, *dk = NULL, *dv = NULL;
    if (!timing) {  // the CPU reference (skipped at benchmark sizes)
        o = (float *)mallocCheck(sizeof(float) * nq), lse = (float *)mallocCheck(sizeof(float) * N * H);
        dq = (float *)mallocCheck(sizeof(float) * nq), dk = (float *)mallocCheck(sizeof(float) * nk);
        dv = (float *)mallocCheck(sizeof(float) * nk);
        attention_forward(o, lse, q, k, v, s->B, s->T, H, K, D, s->window, scale, s->softcap);
        attention_backward(dq, dk, dv, dout, o, lse, q, k, v, s->B, s->T, H, K, D, s->window, scale, s->softcap);
    }
    Run run = {};
    AttnFwd *f = &run.f;
    f->q = to_dev_bf16(q, nq), f->k = to_dev_bf16(k, nk), f->v = to_dev_bf16(v, nk);
    f->ldq = H * D, f->ldk = K * D, f->ldv = K * D, f->ldo = H * D;
    f->B = s->B, f->T = s->T, f->H = H, f->K = K, f->D = D, f->window = s->window, f->scale = scale, f->softcap = s->softcap;
    run.b.dout = to_dev_bf16(dout, nq), run.b.lddo = H * D, run.b.lddq = H * D, run.b.lddk = K * D, run.b.lddv = K * D;
    hipCheck(hipMalloc(&run.b.Di, sizeof(float) * N * H));
    double fl = visible_keys(s) * s->B * H * D * 2.0 * 2.0;  // two products of 2 flops per multiply-add
    // the banded backward reads `pad` rows before k, v and after q, dO: copies with that room
    int pad = attn_band_pad(s->window);
    bf16 *qp = dev_bf16(nq + (size_t)pad * H * D, 1), *kp = dev_bf16(nk + (size_t)pad * K * D, 1);  // NaN pads
    bf16 *vp = dev_bf16(nk + (size_t)pad * K * D, 1), *dop = dev_bf16(nq + (size_t)pad * H * D, 1);
    const bf16 *q0 = f->q, *k0 = f->k, *v0 = f->v, *do0 = run.b.dout;
    hipCheck(hipMemcpy(qp, q0, sizeof(bf16) * nq, hipMemcpyDeviceToDevice));
    hipCheck(hipMemcpy(kp + (size_t)pad * K * D, k0, sizeof(bf16) * nk, hipMemcpyDeviceToDevice));
    hipCheck(hipMemcpy(vp + (size_t)pad * K * D, v0, sizeof(bf16) * nk, hipMemcpyDeviceToDevice));
    hipCheck(hipMemcpy(dop, do0, sizeof(bf16) * nq, hipMemcpyDeviceToDevice));
    for (int mma = 0; mma <= 5; mma++) {
        if (mma && !attn_mma_ok(f)) continue;
        if ((mma == 3 || mma == 4) && !attn_wg_ok(f)) continue;
        run.mma = mma;
        f->q = q0, f->k = k0, f->v = v0, run.b.dout = do0;
        run.b.f = *f;
        if (mma == 2 || mma >= 5) {
            int full = attn_full_ok(run.b);
            if (!attn_band_ok(run.b) && !full) continue;
            if (mma >= 5 && !attn_band_wg_ok(run.b, full ? s->T / ATT_FG : ATT_BQ)) continue;  // 2 was this already
            run.band.blas = mma == 5;
            f->q = qp, f->k = kp + (size_t)pad * K * D, f->v = vp + (size_t)pad * K * D, run.b.dout = dop;
            size_t nf = full ? attn_full_f32(N, H, s->T) : attn_band_f32(N, H, s->window);
            size_t nh = full ? attn_full_bf16(N, H, s->T) : attn_band_bf16(N, H, s->window);
            run.band.S = dev_f32(nf, 1), run.band.dP = dev_f32(nf, 1), run.band.P = dev_bf16(nh, 1), run.band.dS = dev_bf16(nh, 1);
        }
        f->o = dev_bf16(nq, 1), f->lse = dev_f32((size_t)N * H, 1);
        run.b.dq = dev_f32(nq, 1), run.b.dk = dev_bf16(nk, 1), run.b.dv = dev_bf16(nk, 1);
        run.b.f = *f;
        run_fwd(&run);
        run_bwd(&run);
        hipCheck(hipDeviceSynchronize());
        const char *names[] = {"v1 simple", "v2 mma", "v3 band", "v4 wgmma", "v4 wgmma 1h", "v3 band blas"}, *name = names[mma];
        if (!timing) {
            char w[64];
            float *go = from_dev_bf16(f->o, nq), *gl = from_dev_f32(f->lse, (size_t)N * H), *gdq = from_dev_f32(run.b.dq, nq);
            float *gdk = from_dev_bf16(run.b.dk, nk), *gdv = from_dev_bf16(run.b.dv, nk);
            snprintf(w, sizeof w, "%s out", name), check(w, go, o, nq, 1e-2);
            snprintf(w, sizeof w, "%s lse", name), check(w, gl, lse, (size_t)N * H, 1e-4);
            snprintf(w, sizeof w, "%s dq", name), check(w, gdq, dq, nq, 1e-2);
            snprintf(w, sizeof w, "%s dk", name), check(w, gdk, dk, nk, 1e-2);
            snprintf(w, sizeof w, "%s dv", name), check(w, gdv, dv, nk, 1e-2);
            free(go), free(gl), free(gdq), free(gdk), free(gdv);
        } else {
            int reps = mma ? 10 : 2;
            float tf = time_ms(run_fwd, &run, reps), tb = time_ms(run_bwd, &run, reps);
            printf("  %-12s forward %8.3f ms %6.1f TFLOP/s | backward %8.3f ms %6.1f TFLOP/s (useful flops: masked "
                   "scores not counted; backward = 2.5x forward)\n",
                   name, tf, fl / tf / 1e9, tb, 2.5 * fl / tb / 1e9);
        }
        hipCheck(hipFree(f->o)), hipCheck(hipFree(f->lse)), hipCheck(hipFree(run.b.dq)), hipCheck(hipFree(run.b.dk));
        hipCheck(hipFree(run.b.dv));
        if (mma == 2 || mma >= 5) {
            hipCheck(hipFree(run.band.S)), hipCheck(hipFree(run.band.dP)), hipCheck(hipFree(run.band.P));
            hipCheck(hipFree(run.band.dS));
        }
    }
    f->q = q0, f->k = k0, f->v = v0, run.b.dout = do0;
    hipCheck(hipFree(qp)), hipCheck(hipFree(kp)), hipCheck(hipFree(vp)), hipCheck(hipFree(dop));
    hipCheck(hipFree((void *)f->q)), hipCheck(hipFree((void *)f->k)), hipCheck(hipFree((void *)f->v));
    hipCheck(hipFree((void *)run.b.dout)), hipCheck(hipFree(run.b.Di));
    free(q), free(k), free(v), free(dout), free(o), free(lse), free(dq), free(dk), free(dv);
}

int main(int argc, char **argv) {
    // --no-time: the checks only; --time-only: the timing cases only (what a profiler run wants first)
    int timing = !(argc > 1 && strcmp(argv[1], "--no-time") == 0), checking = !(argc > 1 && strcmp(argv[1], "--time-only") == 0);
    if (argc > 1 && timing && checking) {
        fprintf(stderr, "usage: %s [--no-time | --time-only]\n", argv[0]);
        return 1;
    }
    printf("attention workbench on %s\n", GS_VENDOR);
    Shape checks[] = {
        {2, 200, 4, 2, 64, 70, 0.0f},  // GQA 2:1, window not a multiple of the tile, T not either
        {1, 130, 2, 1, 256, 0, 0.0f},  // Gemma 3's D, full causal
        {2, 96, 4, 4, 128, 40, 0.0f},  // MHA
        {1, 150, 4, 1, 64, 0, 20.0f},  // softcap
        {2, 50, 4, 2, 32, 17, 0.0f},   // D without a tensor-core kernel: simple only
        {2, 384, 4, 1, 256, 128, 0.0f},  // Gemma 3's heads, window a multiple of 64: the banded backward too
        {3, 192, 2, 1, 64, 64, 30.0f},  // banded with softcap, three sequences
        {2, 256, 4, 1, 256, 0, 0.0f},   // full layer, banded backward in 4 query groups
        {1, 160, 2, 1, 64, 0, 20.0f},   // the same with softcap, groups of 40 queries
        {2, 200, 4, 2, 256, 70, 30.0f},  // D = 256 (wgmma forward) with GQA 2:1, a window off the tiles, softcap
    };
    for (size_t i = 0; checking && i < sizeof checks / sizeof checks[0]; i++) case_run(&checks[i], 0);
    if (timing) {
        printf("timing: Gemma-3-270M/1B attention (B=8, T=2048, H=4, K=1, D=256)\n");
        Shape t1 = {8, 2048, 4, 1, 256, 512, 0.0f}, t2 = {8, 2048, 4, 1, 256, 0, 0.0f};
        case_run(&t1, 1);
        case_run(&t2, 1);
    }
    return bench_exit("attention");
}
