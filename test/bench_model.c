// bench_model.c — CPU training-step throughput of model.h (forward + backward + AdamW) on the
// benchmark shapes of issue 3, with the share of time spent in BLIS and the whole step's FLOP rate
// against BLIS sgemm's own peak on this machine. `make bench` runs it beside PyTorch on the same model.
//
//   test/bench_model S|M|G|270M [--steps N]
#include "model.h"

typedef struct {
    const char *name;
    int V, d, L, H, K, D, F, W, T, B;
} Shape;

static const Shape shapes[] = {
    {"S", 260, 256, 6, 4, 1, 64, 1024, 64, 256, 8},
    {"M", 260, 512, 12, 8, 2, 64, 2048, 128, 256, 4},
    {"G", 262144, 128, 6, 4, 2, 32, 384, 512, 256, 8},       // Gemma's real vocabulary on a small width
    {"270M", 262144, 640, 18, 4, 1, 256, 2048, 512, 256, 4}, // Gemma 3 270M's shape
};

// model FLOPs of one training step: 3x the forward (forward + two backward products) for every
// matmul, plus attention's score and value products over the keys each query actually sees
static double step_flops(const Config *c, int B, int T) {
    double N = (double)B * T, f = 0;
    for (int l = 0; l < c->L; l++) {
        double D = layer_D(c, l), K = layer_K(c, l);
        f += 2 * N * c->d * ((c->H + 2 * K) * D + c->H * D + 3.0 * c->F);
        double keys = 0;  // sum over query positions of visible keys
        for (int t = 0; t < T; t++) keys += c->full[l] ? t + 1 : (t + 1 < c->W ? t + 1 : c->W);
        f += 2.0 * 2 * B * keys * c->H * D;  // q.k and p.v
    }
    f += 2 * N * c->d * (double)c->V;  // tied output head
    return 3 * f;
}

static double sgemm_peak(void) {  // GFLOP/s of a large square sgemm, best of 5
    int n = 1536;
    float *a = (float *)mallocCheck(sizeof(float) * n * n), *b = (float *)mallocCheck(sizeof(float) * n * n);
    float *c = (float *)mallocCheck(sizeof(float) * n * n);
    Rng r = rng_seed(1);
    for (int i = 0; i < n * n; i++) a[i] = (float)rng_uniform(&r), b[i] = (float)rng_uniform(&r);
    double best = 0;
    for (int it = 0; it < 6; it++) {
        double t0 = now_sec();
        matmul(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double g = 2.0 * n * n * n / (now_sec() - t0) / 1e9;
        if (it > 0 && g > best) best = g;
    }
    free(a), free(b), free(c);
    return best;
}

int main(int argc, char **argv) {
    if (argc < 2) fail("usage: [HEAD_KEEP_MIB=N] bench_model S|M|G|270M [--steps N]");
    const char *hk = getenv("HEAD_KEEP_MIB");  // the head's kept logits (model.h head_keep), for A/B runs
    if (hk) head_keep = (size_t)atol(hk) << 20;
    const Shape *s = NULL;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        if (!strcmp(argv[1], shapes[i].name)) s = &shapes[i];
    if (!s) fail("unknown shape %s (S, M, G or 270M)", argv[1]);
    int steps = 10;
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "--steps")) steps = (int)arg_int(argc, argv, &i);
    Model m;
    memset(&m, 0, sizeof m);
    Config *c = &m.c;
    c->arch = 3, c->V = s->V, c->d = s->d, c->L = s->L, c->H = s->H, c->K = s->K, c->D = s->D, c->F = s->F;
    c->W = s->W, c->rope_local = 1e4, c->rope_global = 1e6, c->rope_scale = 1, c->qscalar = s->D, c->eps = 1e-6;
    c->max_pos = 4096, c->Dg = s->D, c->Kg = s->K, c->scale_dtype = ST_F32;
    for (int l = 0; l < c->L; l++) c->full[l] = (l + 1) % 6 == 0;
    model_init_layout(&m);
    model_init_random(&m, 1, 0.02);
    model_masks_changed(&m);
    int B = s->B, T = s->T, N = B * T;
    int *tok = (int *)mallocCheck(sizeof(int) * N), *tgt = (int *)mallocCheck(sizeof(int) * N);
    Rng r = rng_seed(2);
    for (int i = 0; i < N; i++) tok[i] = (int)(rng_next(&r) % c->V), tgt[i] = (int)(rng_next(&r) % c->V);
    float *mom = (float *)callocCheck(sizeof(float) * m.tab.total), *var = (float *)callocCheck(sizeof(float) * m.tab.total);
    double peak = sgemm_peak();
    double *dt = (double *)mallocCheck(sizeof(double) * (steps + 2)), *blas = (double *)mallocCheck(sizeof(double) * (steps + 2));
    for (int it = 0; it < steps + 2; it++) {  // 2 warm-up steps
        double t0 = now_sec();
        blas_seconds = 0;
        model_zero_grad(&m);
        model_forward(&m, tok, tgt, B, T, 1, NULL);
        model_backward(&m);
        adamw_update(m.w, m.gw, mom, var, m.tab.total, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.0f, it + 1);
        dt[it] = now_sec() - t0;
        blas[it] = blas_seconds;
    }
    // median step
    for (int i = 2; i < steps + 2; i++)
        for (int j = i + 1; j < steps + 2; j++)
            if (dt[j] < dt[i]) {
                double t = dt[i]; dt[i] = dt[j]; dt[j] = t;
                t = blas[i]; blas[i] = blas[j]; blas[j] = t;
            }
    double med = dt[2 + steps / 2], bl = blas[2 + steps / 2], fl = step_flops(c, B, T);
    // executed FLOPs: the model's, plus the head's second logits product for the tiles its second pass makes again
    // (model.h head_work: those beyond the head_keep bytes kept from the first pass)
    HeadWork hw = head_work(c, N, 1);
    double ex = fl + 2.0 * N * c->d * (double)hw.vt * head_recomputed_tiles(&hw, c->V);
    printf("C %s: %.0f tok/s | step %.1f ms | BLIS share %.0f%% | %.0f GFLOP/s = %.0f%% of sgemm peak %.0f GFLOP/s "
           "(executed, the head's recomputed logits too: %.0f%%) | kernels %s, %d threads\n",
           s->name, N / med, med * 1e3, 100 * bl / med, fl / med / 1e9, 100 * fl / med / 1e9 / peak, peak,
           100 * ex / med / 1e9 / peak, blas_kernels(), omp_get_max_threads());
    model_free(&m);
    return 0;
}
