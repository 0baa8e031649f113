// hip/dev/gelu.hip — workbench for the gated GELU (tanh) with the FFN mask (hip/gelu.h: k_gelu_fwd,
// k_gelu_bwd, TermGelu for the mask gradient) against model.h's gelu_gate_forward / gelu_gate_backward.
//   v1: two adjacent channels per thread (32-bit loads of bf16 pairs), grid-stride over N·F/2 with a 64-bit
//       index division per pair: about half the bandwidth.
//   v2: eight channels per thread (16-byte loads; two where F % 8 != 0: F = 90 below), rows on the grid's y;
//       the backward may write d gate | d up over gate | up (in place: the GPU step does).
// Tolerances: bf16 outputs 4e-3 (one rounding); the mask gradient (fp32 column sums of products of
//   bf16-exact inputs and an fp32 gelu) 1e-5.
//   build: make hip/build/dev_gelu   run: hip/build/dev_gelu [--no-time]
#include "hip/dev/bench.h"
#include "hip/gelu.h"

typedef struct {
    bf16 *hm, *gu, *dhm, *dgu, *hm2;  // hm2: the backward's rewrite of hm
    float *zf;
    int N, F;
} Args;

static void run_fwd(void *p) {
    Args *a = (Args *)p;
    gelu_fwd(a->hm, a->gu, a->zf, a->N, a->F);
}
static void run_bwd(void *p) {
    Args *a = (Args *)p;
    gelu_bwd(a->dgu, a->hm2, a->dhm, a->gu, a->zf, a->N, a->F);
}

static void case_run(int N, int F, int timing) {
    printf("N=%d F=%d (FFN mask with zeros)\n", N, F);
    size_t n = (size_t)N * F;
    Rng r = rng_seed(5 + F);
    float *gu = (float *)mallocCheck(sizeof(float) * 2 * n), *dhm = (float *)mallocCheck(sizeof(float) * n);
    float *zf = (float *)mallocCheck(sizeof(float) * F);
    fill_normal(gu, 2 * n, &r, 2.0f), fill_normal(dhm, n, &r, 1.0f);
    for (int i = 0; i < F; i++) zf[i] = rng_uniform(&r) < 0.2 ? 0.0f : (float)rng_uniform(&r);
    round_bf16(gu, 2 * n), round_bf16(dhm, n);
    Args a = {dev_bf16(n, 1), to_dev_bf16(gu, 2 * n), to_dev_bf16(dhm, n), dev_bf16(2 * n, 1), dev_bf16(n, 1), to_dev_f32(zf, F), N, F};
    if (!timing) {
        float *hm = (float *)mallocCheck(sizeof(float) * n), *dgu = (float *)mallocCheck(sizeof(float) * 2 * n);
        float *dz = (float *)callocCheck(sizeof(float) * F), *h = (float *)mallocCheck(sizeof(float) * n);
        float *dh = (float *)mallocCheck(sizeof(float) * n);  // the backward masks it in place
        memcpy(dh, dhm, sizeof(float) * n);
        gelu_gate_forward(h, hm, gu, zf, N, F);
        gelu_gate_backward(dgu, dz, dh, gu, h, zf, N, F);
        free(h), free(dh);
        run_fwd(&a);
        run_bwd(&a);
        int nrb = (int)gs_cdiv(N, COLSUM_ROWS);
        float *part = dev_f32((size_t)nrb * F, 0), *dzd = dev_f32(F, 0);
        TermGelu tg = {a.dhm, a.gu, F};
        k_colsum<<<dim3(gs_cdiv(F, 32), nrb), dim3(32, 8)>>>(part, tg, N, F);
        colsum_finish(part, nrb, F, 1, 1.0f, dzd);
        hipCheckLaunch();
        float *ghm = from_dev_bf16(a.hm, n), *gdgu = from_dev_bf16(a.dgu, 2 * n), *gdz = from_dev_f32(dzd, F);
        check("forward gelu(g)*u*z (bf16)", ghm, hm, n, 4e-3);
        check("backward d gate | d up (bf16)", gdgu, dgu, 2 * n, 4e-3);
        float *ghm2 = from_dev_bf16(a.hm2, n);
        check("backward's rewrite of gelu(g)*u*z (bf16)", ghm2, hm, n, 4e-3);
        free(ghm2);
        // in place: d gate | d up over gate | up
        bf16 *gu2 = to_dev_bf16(gu, 2 * n);
        gelu_bwd(gu2, NULL, a.dhm, gu2, a.zf, N, F);
        hipCheckLaunch();
        float *s2 = from_dev_bf16(gu2, 2 * n);
        check("backward in place", s2, dgu, 2 * n, 4e-3);
        free(s2);
        hipCheck(hipFree(gu2));
        check("FFN mask gradient", gdz, dz, F, 1e-5);
        free(hm), free(dgu), free(dz), free(ghm), free(gdgu), free(gdz);
        hipCheck(hipFree(part)), hipCheck(hipFree(dzd));
    } else {
        float tf = time_ms(run_fwd, &a, 20), tb = time_ms(run_bwd, &a, 20);
        printf("  v2 forward %7.3f ms %6.0f GB/s | backward (+ hm rewrite) %7.3f ms %6.0f GB/s\n", tf, n * 6.0 / tf / 1e6, tb,
               n * 12.0 / tb / 1e6);
    }
    free(gu), free(dhm), free(zf);
}

int main(int argc, char **argv) {
    int timing = !(argc > 1 && strcmp(argv[1], "--no-time") == 0);
    printf("gated GELU workbench on %s\n", GS_VENDOR);
    case_run(301, 96, 0);
    case_run(130, 2048, 0);
    case_run(77, 90, 0);
    if (timing) {
        printf("timing: N=16384\n");
        case_run(16384, 2048, 1);
        case_run(16384, 6912, 1);
    }
    return bench_exit("gelu");
}
