// hip/dev/gemm.hip — workbench for the matrix products of the training step (hip/blas.hip: gs_gemm), at the
// shapes the step runs them on the Gemma-3-1B and 270M shapes (N = 16384 rows, the head in 4096-row chunks).
//   v1: GS_BLAS_DEFAULT, the library's default algorithm (the vendor BLAS's GemmEx)
//   v2: GS_BLAS_LT (NVIDIA), cuBLASLt's first heuristic choice
//   v3: GS_BLAS_TUNED (NVIDIA), cuBLASLt with the fastest of the heuristic's first candidates, timed at the
//       shape's first call (hip/blas.hip)
// Check: v2's and v3's outputs against v1's (the same bf16 operands, fp32 accumulation: only the summation
//   order differs): bf16 outputs 4e-3 (one rounding), fp32 outputs 1e-5.
// Output: one line per shape, then the whole step's product time (each shape times its count per step).
//   --sweep: instead, every candidate of each shape timed (gs_gemm_sweep), with the beta the step runs it with
//   build: make hip/build/dev_gemm   run: hip/build/dev_gemm [--model 1b|270m] [--no-check] [--sweep]
#include "hip/dev/bench.h"
#include "hip/blas.h"

typedef struct {
    const char *name;
    int ta, tb, M, N, K, tc, count;  // count: how many times one training step runs it
} Shape;

typedef struct {
    const Shape *s;
    bf16 *A, *B;
    void *C;
} Args;

static void run(void *p) {
    Args *a = (Args *)p;
    const Shape *s = a->s;
    int lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N;
    gs_gemm(s->ta, s->tb, s->M, s->N, s->K, 1.0f, a->A, GS_BF16, lda, a->B, GS_BF16, ldb, 0.0f, a->C, s->tc, s->N);
}

// operands on the device, uniform in [-1, 1) from a hash of the index (the head's 2 GB operand would take the host
// half a minute through fill_normal)
__global__ void k_fill(bf16 *x, size_t n, unsigned seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        unsigned h = (unsigned)i * 2654435761u ^ seed;
        h ^= h >> 15, h *= 2246822519u, h ^= h >> 13, h *= 3266489917u, h ^= h >> 16;
        x[i] = f2bf(h * (2.0f / 4294967296.0f) - 1.0f);
    }
}
static bf16 *dev_random(size_t n, unsigned seed) {
    bf16 *p = dev_bf16(n, 0);
    k_fill<<<1024, 256>>>(p, n, seed);
    hipCheckLaunch();
    return p;
}

static double flops(const Shape *s) { return 2.0 * s->M * s->N * (double)s->K; }

// --sweep: every shape's candidates timed with the beta the step runs it with (the head's embedding gradient adds
// into the fp32 gradient in 3 of its 4 chunks: beta = 1, into an output of its real size), cuBLASLt's first 32
// and GemmEx in turns over 4 rounds; one line per shape, every candidate for the head's products
enum { SWEEP_MAX = 33 };
static int sweep_all(const Shape *sh, int ns) {
    double tot[3] = {0, 0, 0};
    for (int i = 0; i < ns; i++) {
        const Shape *s = &sh[i];
        int head = !strncmp(s->name, "head", 4), acc = !strncmp(s->name, "head dE", 7);
        size_t na = (size_t)s->M * s->K, nb = (size_t)s->K * s->N, nc = (size_t)s->M * s->N, esz = s->tc == GS_BF16 ? 2 : 4;
        bf16 *A = dev_random(na, 2 * i + 1), *B = dev_random(nb, 2 * i + 2);
        void *C;
        hipCheck(hipMalloc(&C, esz * nc));
        hipCheck(hipMemset(C, 0, esz * nc));
        float ms[SWEEP_MAX];
        char desc[SWEEP_MAX][64];
        int lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N;
        int n = gs_gemm_sweep(s->ta, s->tb, s->M, s->N, s->K, A, GS_BF16, lda, B, GS_BF16, ldb, acc ? 1.0f : 0.0f, C,
                              s->tc, s->N, 4, SWEEP_MAX, ms, desc);
        if (n == 0) {
            printf("  sweep: no cuBLASLt in this build\n");
            return 0;
        }
        int best = n - 1, first = -1;
        for (int c = 0; c < n; c++) {
            if (ms[c] < 0) continue;
            if (first < 0 && c < n - 1) first = c;
            if (ms[c] < ms[best]) best = c;
            if (head) printf("    %-18s #%-2d %7.3f ms %4.0f TFLOP/s  %s\n", s->name, c, ms[c], flops(s) / ms[c] / 1e9, desc[c]);
        }
        float fm = first >= 0 ? ms[first] : ms[n - 1];
        printf("  sweep %-18s M %6d N %6d K %6d beta %d x%-3d GemmEx %7.3f | first %7.3f %+5.1f%% | best #%d %7.3f %+5.1f%% "
               "%4.0f TFLOP/s (%s)\n", s->name, s->M, s->N, s->K, acc, s->count, ms[n - 1], fm,
               100.0 * (fm - ms[n - 1]) / ms[n - 1], best, ms[best], 100.0 * (ms[best] - ms[n - 1]) / ms[n - 1],
               flops(s) / ms[best] / 1e9, desc[best]);
        tot[0] += ms[n - 1] * s->count, tot[1] += fm * s->count, tot[2] += ms[best] * s->count;
        hipCheck(hipFree(A)), hipCheck(hipFree(B)), hipCheck(hipFree(C));
    }
    printf("sweep, step products (each shape x its count): GemmEx %.1f ms | first %.1f ms | best %.1f ms\n", tot[0], tot[1],
           tot[2]);
    return 0;
}

int main(int argc, char **argv) {
    const char *model = "1b";
    int do_check = 1, sweep = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--no-check")) do_check = 0;
        else if (!strcmp(argv[i], "--sweep")) sweep = 1;
        else {
            fprintf(stderr, "usage: %s [--model 1b|270m] [--no-check] [--sweep]\n", argv[0]);
            return 1;
        }
    }
    int big = !strcmp(model, "1b");
    if (!big && strcmp(model, "270m")) {
        fprintf(stderr, "error: --model %s: expected 1b or 270m\n", model);
        return 1;
    }
    const int N = 16384, L = big ? 26 : 18, d = big ? 1152 : 640, F = big ? 6912 : 2048, Q = 6 * 256, HD = 1024;
    const int V = 262144, ch = 4096, nch = N / ch;
    Shape sh[] = {
        {"qkv      x Wqkv^T", 0, 1, N, Q, d, GS_BF16, L},        {"o        att Wo^T", 0, 1, N, d, HD, GS_BF16, L},
        {"gate|up  m Wgu^T", 0, 1, N, 2 * F, d, GS_BF16, L},      {"down     h Wd^T", 0, 1, N, d, F, GS_BF16, L},
        {"head     xf E^T", 0, 1, ch, V, d, GS_BF16, nch},        {"head dX  dl E", 0, 0, ch, d, V, GS_F32, nch},
        {"head dE  dl^T xf", 1, 0, V, d, ch, GS_F32, nch},        {"dh       dy Wd", 0, 0, N, F, d, GS_BF16, L},
        {"dWd      dy^T h", 1, 0, d, F, N, GS_F32, L},            {"dWgu     dgu^T m", 1, 0, 2 * F, d, N, GS_F32, L},
        {"dm       dgu Wgu", 0, 0, N, d, 2 * F, GS_BF16, L},      {"dWo      dy^T att", 1, 0, d, HD, N, GS_F32, L},
        {"datt     dy Wo", 0, 0, N, HD, d, GS_BF16, L},           {"dWqkv    dqkv^T a", 1, 0, Q, d, N, GS_F32, L},
        {"da       dqkv Wqkv", 0, 0, N, d, Q, GS_BF16, L},
    };
    int ns = sizeof sh / sizeof sh[0];
    hipDeviceProp_t prop;
    hipCheck(hipGetDeviceProperties(&prop, 0));
    printf("products of the %s training step (N=%d, d=%d, F=%d, L=%d), %s\n", model, N, d, F, L, prop.name);
    gs_blas_init();
    if (sweep) return sweep_all(sh, ns);
    const char *vn[] = {"default", "lt", "tuned"};
    double tot[3] = {0, 0, 0};
    for (int i = 0; i < ns; i++) {
        const Shape *s = &sh[i];
        size_t na = (size_t)s->M * s->K, nb = (size_t)s->K * s->N, nc = (size_t)s->M * s->N, esz = s->tc == GS_BF16 ? 2 : 4;
        Args a = {s, dev_random(na, 2 * i + 1), dev_random(nb, 2 * i + 2), NULL};
        hipCheck(hipMalloc(&a.C, esz * nc));
        float t[3], *ref = NULL;
        for (int v = 0; v < 3; v++) {
            gs_blas_mode(v);
            hipCheck(hipMemset(a.C, 0xff, esz * nc));
            t[v] = time_ms(run, &a, 10);
            tot[v] += t[v] * s->count;
            if (!do_check) continue;
            float *got = s->tc == GS_BF16 ? from_dev_bf16((bf16 *)a.C, nc) : from_dev_f32((float *)a.C, nc);
            if (v == 0) ref = got;
            else {
                char what[64];
                snprintf(what, sizeof what, "%s %s vs default", s->name, vn[v]);
                check(what, got, ref, nc, s->tc == GS_BF16 ? 4e-3 : 1e-5);
                free(got);
            }
        }
        printf("  %-18s M %6d N %6d K %6d %s x%-3d default %7.3f ms %4.0f TFLOP/s | lt %7.3f %+5.1f%% | tuned %7.3f %+5.1f%% "
               "%4.0f TFLOP/s\n", s->name, s->M, s->N, s->K, s->tc == GS_BF16 ? "bf16" : "f32 ", s->count, t[0],
               flops(s) / t[0] / 1e9, t[1], 100.0 * (t[1] - t[0]) / t[0], t[2], 100.0 * (t[2] - t[0]) / t[0],
               flops(s) / t[2] / 1e9);
        free(ref);
        hipCheck(hipFree(a.A)), hipCheck(hipFree(a.B)), hipCheck(hipFree(a.C));
    }
    printf("step products (each shape x its count): default %.1f ms | lt %.1f ms (%+.1f%%) | tuned %.1f ms (%+.1f%%)\n",
           tot[0], tot[1], 100.0 * (tot[1] - tot[0]) / tot[0], tot[2], 100.0 * (tot[2] - tot[0]) / tot[0]);
    return bench_exit("gemm");
}
