// hip/dev/adamw.hip — workbench for the optimizer (hip/adamw.h):
//   k_adamw over the flat parameter block (per-tensor weight decay and frozen flags by binary search)
//     against model.h's adamw_update, three steps, gradient scaled (clipping) on the way;
//   k_sumsq (the gradient norm) against model.h's grad_norm2.
//   v1 of each: grid-stride, one element per thread per iteration. k_sumsq v2 (hip/adamw.h): four 16-byte loads
//   per thread per pass; v1 is kept below (timing only).
// Tolerances: fp32 (AdamW: same formula, same order) 1e-6; norms 1e-9 (double).
//   build: make hip/build/dev_adamw   run: hip/build/dev_adamw [--no-time]
#include "hip/dev/bench.h"
#include "hip/adamw.h"
#include "hip/elementwise.h"

typedef struct {
    float *p, *g, *m, *v;
    bf16 *pb;
    size_t n, *seg;
    unsigned char *flag;
    int nseg;
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
static void run_adamw(void *q) {
    Args *a = (Args *)q;
    size_t b = (a->n + 255) / 256;
    k_adamw<<<(unsigned)(b < 65536 ? b : 65536), 256>>>(a->p, a->pb, a->g, a->m, a->v, a->n, a->seg, a->flag, a->nseg,
                                                        1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, 0.5f, 0.7f);
}

int main(int argc, char **argv) {
    int timing = !(argc > 1 && strcmp(argv[1], "--no-time") == 0);
    printf("AdamW / grad norm workbench on %s\n", GS_VENDOR);
    // --- AdamW: five tensors, decay on some, one frozen
    size_t sizes[] = {1000, 37, 4096, 1, 777}, seg[6] = {0};
    unsigned char flag[5] = {1, 0, 1, 2, 0};
    int nseg = 5;
    for (int i = 0; i < nseg; i++) seg[i + 1] = seg[i] + sizes[i];
    size_t n = seg[nseg];
    Rng r = rng_seed(21);
    float *p = (float *)mallocCheck(sizeof(float) * n), *g = (float *)mallocCheck(sizeof(float) * n);
    float *m = (float *)callocCheck(sizeof(float) * n), *v = (float *)callocCheck(sizeof(float) * n);
    fill_normal(p, n, &r, 0.05f);
    Args a = {to_dev_f32(p, n), dev_f32(n, 0), dev_f32(n, 0), dev_f32(n, 0), dev_bf16(n, 1), n, NULL, NULL, nseg};
    hipCheck(hipMalloc(&a.seg, sizeof(size_t) * (nseg + 1)));
    hipCheck(hipMalloc(&a.flag, nseg));
    hipCheck(hipMemcpy(a.seg, seg, sizeof(size_t) * (nseg + 1), hipMemcpyHostToDevice));
    hipCheck(hipMemcpy(a.flag, flag, nseg, hipMemcpyHostToDevice));
    float lr = 1e-3f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f, gscale = 0.7f;
    for (int step = 1; step <= 3; step++) {
        fill_normal(g, n, &r, 1e-2f);
        hipCheck(hipMemcpy(a.g, g, sizeof(float) * n, hipMemcpyHostToDevice));
        for (size_t i = 0; i < n; i++) g[i] *= gscale;
        for (int s = 0; s < nseg; s++)
            if (!(flag[s] & 2))
                adamw_update(p + seg[s], g + seg[s], m + seg[s], v + seg[s], sizes[s], lr, b1, b2, eps,
                             (flag[s] & 1) ? wd : 0.0f, step);
        float bc1 = 1.0f - powf(b1, (float)step), bc2s = sqrtf(1.0f - powf(b2, (float)step));
        k_adamw<<<4, 256>>>(a.p, a.pb, a.g, a.m, a.v, n, a.seg, a.flag, nseg, lr, b1, b2, eps, wd, bc1, bc2s, gscale);
        hipCheckLaunch();
    }
    float *gp = from_dev_f32(a.p, n), *gpb = from_dev_bf16(a.pb, n), *gm = from_dev_f32(a.m, n), *gv = from_dev_f32(a.v, n);
    check("AdamW weights after 3 steps", gp, p, n, 1e-6);
    check("AdamW first moments", gm, m, n, 1e-6);
    check("AdamW second moments", gv, v, n, 1e-6);
    check("AdamW bf16 copy", gpb, p, n, 4e-3);
    // --- the gradient's squared norm: the whole block over 64 blocks (every thread in the one-load loop), then
    // n − 5 elements from g + 4 (a length that is not a multiple of 4: the scalar tail) over 3 blocks of 64
    // threads (the four-load loop, then the one-load loop and the tail)
    double *part;
    hipCheck(hipMalloc(&part, sizeof(double) * 1024));
    float *graw = from_dev_f32(a.g, n);
    for (int c = 0; c < 2; c++) {
        size_t off = c ? 4 : 0, len = c ? n - 5 : n;
        int nb = c ? 3 : 64;
        k_sumsq<<<nb, c ? 64 : 256>>>(part, a.g + off, len);
        double hp[64], s = 0;
        hipCheck(hipMemcpy(hp, part, sizeof(double) * nb, hipMemcpyDeviceToHost));
        for (int i = 0; i < nb; i++) s += hp[i];
        float fs = (float)s, fr = (float)grad_norm2(graw + off, len);
        check(c ? "gradient sum of squares (odd length, 3 blocks of 64)" : "gradient sum of squares", &fs, &fr, 1, 1e-6);
    }
    if (timing) {  // the Gemma-3-270M parameter block (268M floats) as one tensor with decay
        size_t N = 268098176;
        size_t sg2[2] = {0, N};
        unsigned char fl = 1;
        Args b = {dev_f32(N, 0), dev_f32(N, 0), dev_f32(N, 0), dev_f32(N, 0), dev_bf16(N, 0), N, NULL, NULL, 1};
        hipCheck(hipMalloc(&b.seg, sizeof sg2));
        hipCheck(hipMalloc(&b.flag, 1));
        hipCheck(hipMemcpy(b.seg, sg2, sizeof sg2, hipMemcpyHostToDevice));
        hipCheck(hipMemcpy(b.flag, &fl, 1, hipMemcpyHostToDevice));
        k_init<<<65536, 256>>>(b.g, N, 1, 0.01f, 0);
        float t = time_ms(run_adamw, &b, 10);
        printf("timing: AdamW over %zu parameters: %.3f ms, %.0f GB/s (4 reads + 3 writes fp32, 1 bf16 write)\n", N, t,
               N * 30.0 / t / 1e6);
        sumsq_part = part;
        for (int ver = 1; ver <= 2; ver++) {  // gpu_grad_sumsq's launch: 1024 blocks of 256
            float ts = time_ms(ver == 1 ? run_sumsq_v1 : run_sumsq_v2, &b, 10);
            printf("timing: gradient sum of squares v%d over %zu parameters: %.3f ms, %.0f GB/s\n", ver, N, ts, N * 4.0 / ts / 1e6);
        }
    }
    return bench_exit("adamw");
}
