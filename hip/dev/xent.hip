// hip/dev/xent.hip — workbench for the fused softcapped cross-entropy (hip/kernels.h: k_xent) against
// the inner loop of model.h's head_forward: s = c·tanh(z/c), loss = logsumexp(s) − s[tgt], gradient
// (softmax − onehot)·(1 − (s/c)²)/n_valid written over the logits; ignored targets (−1) give 0.
// The head never holds fp32 logits: the products write CHUNK rows of bf16 logits and this kernel turns
// them into loss and gradient in place (hip/gpu.hip's gpu_forward).
//   v1: one block of 1024 threads per row; 16-byte loads (8 logits) and an online max/sum in one pass,
//       the gradient in a second pass; a scalar path when V is not a multiple of 8.
// Tolerances: row losses 1e-5 (fp32 on bf16-exact logits); gradients 4e-3 (one bf16 rounding).
//   build: make hip/build/dev_xent   run: hip/build/dev_xent [--no-time]
#include "hip/dev/bench.h"
#include "hip/kernels.h"

typedef struct {
    bf16 *z, *z0;
    int *tgt;
    float *loss;
    int rows, V;
    float cap, inv_n;
} Args;

static void run_k(void *p) {
    Args *a = (Args *)p;
    hipCheck(hipMemcpyAsync(a->z, a->z0, sizeof(bf16) * (size_t)a->rows * a->V, hipMemcpyDeviceToDevice));
    k_xent<<<a->rows, 1024>>>(a->z, a->V, a->tgt, a->cap, a->inv_n, a->loss, 1);
}
static void run_copy(void *p) {
    Args *a = (Args *)p;
    hipCheck(hipMemcpyAsync(a->z, a->z0, sizeof(bf16) * (size_t)a->rows * a->V, hipMemcpyDeviceToDevice));
}

static void case_run(int rows, int V, float cap, int timing) {
    printf("rows=%d V=%d softcap=%g\n", rows, V, cap);
    size_t n = (size_t)rows * V;
    Rng r = rng_seed(3 + V);
    float *z = (float *)mallocCheck(sizeof(float) * n);
    int *tgt = (int *)mallocCheck(sizeof(int) * rows), n_valid = 0;
    fill_normal(z, n, &r, 3.0f);
    round_bf16(z, n);
    for (int i = 0; i < rows; i++) tgt[i] = i % 7 == 3 ? -1 : (int)(rng_uniform(&r) * V), n_valid += tgt[i] >= 0;
    Args a = {dev_bf16(n, 1), to_dev_bf16(z, n), NULL, dev_f32(rows, 1), rows, V, cap, 1.0f / n_valid};
    hipCheck(hipMalloc(&a.tgt, sizeof(int) * rows));
    hipCheck(hipMemcpy(a.tgt, tgt, sizeof(int) * rows, hipMemcpyHostToDevice));
    if (!timing) {
        float *loss = (float *)mallocCheck(sizeof(float) * rows), *g = (float *)mallocCheck(sizeof(float) * n);
        for (int i = 0; i < rows; i++) {  // model.h head_forward's row loop
            float *zr = z + (size_t)i * V, *gr = g + (size_t)i * V, mx = -INFINITY;
            int t = tgt[i];
            loss[i] = 0;
            if (t < 0) {
                for (int j = 0; j < V; j++) gr[j] = 0;
                continue;
            }
            for (int j = 0; j < V; j++) gr[j] = cap > 0 ? cap * tanh_fast(zr[j] / cap) : zr[j], mx = fmaxf(mx, gr[j]);
            double sum = 0;
            for (int j = 0; j < V; j++) sum += exp_fast(gr[j] - mx);
            loss[i] = (float)(mx + log(sum) - gr[t]);
            float inv = (float)(1.0 / sum), st = gr[t];
            for (int j = 0; j < V; j++) {
                float s = gr[j], q = exp_fast(s - mx) * inv;
                if (cap > 0) q *= 1.0f - (s / cap) * (s / cap);
                gr[j] = q * a.inv_n;
            }
            gr[t] -= (cap > 0 ? 1.0f - (st / cap) * (st / cap) : 1.0f) * a.inv_n;
        }
        run_k(&a);
        hipCheckLaunch();
        float *gl = from_dev_f32(a.loss, rows), *gg = from_dev_bf16(a.z, n);
        check("row losses", gl, loss, rows, 1e-5);
        check("gradient over the logits (bf16)", gg, g, n, 4e-3);
        free(loss), free(g), free(gl), free(gg);
    } else {
        float t = time_ms(run_k, &a, 10), tc = time_ms(run_copy, &a, 10), tk = t - tc;
        printf("  v1 %7.3f ms (minus the %5.3f ms reset copy) %6.0f GB/s (2 reads + 1 write of bf16 logits)\n", tk, tc,
               n * 6.0 / tk / 1e6);
    }
    free(z), free(tgt);
}

int main(int argc, char **argv) {
    int timing = !(argc > 1 && strcmp(argv[1], "--no-time") == 0);
    printf("cross-entropy workbench on %s\n", GS_VENDOR);
    case_run(40, 261, 0.0f, 0);
    case_run(40, 261, 30.0f, 0);
    case_run(9, 262144, 30.0f, 0);
    case_run(9, 4096, 0.0f, 0);
    if (timing) {
        printf("timing: one head chunk (2048 rows of V=262144)\n");
        case_run(2048, 262144, 0.0f, 1);
    }
    return bench_exit("xent");
}
