// hip/dev/embed.hip — workbench for the embedding (hip/embed.h: k_embed_fwd, k_embed_bwd, TermEmbed)
// against model.h's embedding_forward (x = E[tok]·sqrt(d)·z_hidden) and embedding_backward (rows of the
// embedding gradient, the hidden mask's gradient).
//   v1: grid-stride over N·d; the backward adds rows with fp32 atomics (tokens repeat).
// Tolerances: fp32 everywhere, inputs bf16-exact: 1e-5 (atomics change only the order of the sums).
//   build: make hip/build/dev_embed   run: hip/build/dev_embed [--no-time]
#include "hip/dev/bench.h"
#include "hip/embed.h"

typedef struct {
    float *x, *gE, *dx, *z;
    bf16 *E;
    int *tok;
    int N, d;
    float scale;
} Args;

static void run_fwd(void *p) {
    Args *a = (Args *)p;
    k_embed_fwd<<<gs_cdiv((size_t)a->N * a->d, 256), 256>>>(a->x, a->E, a->tok, a->z, a->scale, a->N, a->d);
}
static void run_bwd(void *p) {
    Args *a = (Args *)p;
    k_embed_bwd<<<gs_cdiv((size_t)a->N * a->d, 256), 256>>>(a->gE, a->dx, a->tok, a->z, a->scale, a->N, a->d);
}

static void case_run(int V, int N, int d, int timing) {
    printf("V=%d N=%d d=%d (hidden mask)\n", V, N, d);
    Rng r = rng_seed(11 + d);
    size_t nE = (size_t)V * d, n = (size_t)N * d;
    float *E = (float *)mallocCheck(sizeof(float) * nE), *dx = (float *)mallocCheck(sizeof(float) * n);
    float *z = (float *)mallocCheck(sizeof(float) * d);
    int *tok = (int *)mallocCheck(sizeof(int) * N);
    fill_normal(E, nE, &r, 0.02f), fill_normal(dx, n, &r, 1.0f);
    round_bf16(E, nE);
    for (int i = 0; i < d; i++) z[i] = rng_uniform(&r) < 0.1 ? 0.0f : (float)rng_uniform(&r);
    for (int i = 0; i < N; i++) tok[i] = (int)(rng_uniform(&r) * (V < 50 ? V : 50));  // many repeats
    float scale = embed_scale_for(d, ST_BF16);
    Args a = {dev_f32(n, 1), dev_f32(nE, 0), to_dev_f32(dx, n), to_dev_f32(z, d), to_dev_bf16(E, nE), NULL, N, d, scale};
    hipCheck(hipMalloc(&a.tok, sizeof(int) * N));
    hipCheck(hipMemcpy(a.tok, tok, sizeof(int) * N, hipMemcpyHostToDevice));
    if (!timing) {
        float *x = (float *)mallocCheck(sizeof(float) * n), *gE = (float *)callocCheck(sizeof(float) * nE);
        float *dz = (float *)callocCheck(sizeof(float) * d);
        embedding_forward(x, E, tok, N, d, scale, z);
        embedding_backward(gE, dz, dx, E, tok, N, d, scale, z);
        run_fwd(&a);
        run_bwd(&a);
        int nrb = (int)gs_cdiv(N, COLSUM_ROWS);
        float *part = dev_f32((size_t)nrb * d, 0), *dzd = dev_f32(d, 0);
        TermEmbed te = {a.dx, a.E, a.tok, d};
        k_colsum<<<dim3(gs_cdiv(d, 32), nrb), dim3(32, 8)>>>(part, te, N, d);
        colsum_finish(part, nrb, d, 1, scale, dzd);
        hipCheckLaunch();
        float *gx = from_dev_f32(a.x, n), *ggE = from_dev_f32(a.gE, nE), *gdz = from_dev_f32(dzd, d);
        check("forward x", gx, x, n, 1e-5);
        check("backward embedding gradient", ggE, gE, nE, 1e-5);
        check("hidden-mask gradient", gdz, dz, d, 1e-5);
        free(x), free(gE), free(dz), free(gx), free(ggE), free(gdz);
        hipCheck(hipFree(part)), hipCheck(hipFree(dzd));
    } else {
        float tf = time_ms(run_fwd, &a, 20), tb = time_ms(run_bwd, &a, 20);
        printf("  v1 forward %7.3f ms %6.0f GB/s | backward %7.3f ms %6.0f GB/s\n", tf, n * 6.0 / tf / 1e6, tb,
               n * 12.0 / tb / 1e6);
    }
    free(E), free(dx), free(z), free(tok);
}

int main(int argc, char **argv) {
    int timing = !(argc > 1 && strcmp(argv[1], "--no-time") == 0);
    printf("embedding workbench on %s\n", GS_VENDOR);
    case_run(261, 300, 64, 0);
    case_run(1000, 257, 640, 0);
    if (timing) {
        printf("timing: V=262144 N=16384 d=640\n");
        case_run(262144, 16384, 640, 1);
    }
    return bench_exit("embed");
}
