// hip/dev/rope.hip — workbench for the per-head RMSNorm fused with RoPE (hip/rope.h:
// k_headnorm_rope_fwd / k_headnorm_rope_bwd) against model.h's headnorm_forward + rope_apply and
// rope_apply(-1) + headnorm_backward. Both RoPE bases (1e4 sliding, 1e6 full with linear scaling x8),
// Gemma 4's proportional RoPE (frequencies past p·D/2 are 0), a weightless norm (Gemma 4's v).
//   v1: one warp per (token, head) row; lane owns frequency pairs (i, i + D/2); cos/sin from a table made
//       on the host exactly as the CPU makes its angles; the backward keeps the un-rotated gradient in
//       registers and accumulates the weight gradient per lane, then per block (partials).
//   v2: two adjacent pairs per lane group where D % 4 == 0 (4-byte bf16, 8-byte fp32 loads; v1's 2-byte
//       loads held it to 1.7 / 1.1 TB/s); D = 18 below runs the one-pair path.
// Tolerances: bf16 outputs 4e-3 (one rounding); fp32 weight gradient 1e-5... (dq input fp32 and exact).
//   build: make hip/build/dev_rope   run: hip/build/dev_rope [--no-time]
#include "hip/dev/bench.h"
#include "hip/rope.h"

typedef struct {
    bf16 *out, *qkv, *dqkv;
    float *rstd, *w, *dy, *part;
    float2 *cs;
    int N, T, ld, nh, D;
} Args;

static void run_fwd(void *p) {
    Args *a = (Args *)p;
    headnorm_rope_fwd(a->out, a->rstd, a->qkv, a->ld, 0, a->nh, a->D, a->w, 1.0f, a->cs, a->T, 1e-6f, a->N);
}
static void run_bwd(void *p) {
    Args *a = (Args *)p;
    int nb = headnorm_rope_bwd<float, false>(a->dqkv, a->part, a->dy, a->qkv, a->ld, 0, a->nh, a->D, a->rstd, a->w, 1.0f,
                                             a->cs, a->T, a->N);
    colsum_finish(a->part, nb, a->D, 1, 1.0f, a->dy);
}

// kind 0: θ 1e4; 1: θ 1e6 linear x8; 2: proportional (θ 1e6, p = 0.25); 3: weightless norm, no RoPE
static void case_run(int B, int T, int nh, int D, int kind, int timing) {
    static const char *kinds[] = {"theta 1e4", "theta 1e6 linear x8", "proportional 0.25", "weightless, no rope"};
    printf("N=%d heads=%d D=%d %s\n", B * T, nh, D, kinds[kind]);
    int N = B * T, ld = nh * D + 64;  // the heads sit at column 0 of wider rows, like q in the fused qkv
    size_t n = (size_t)N * nh * D;
    Rng r = rng_seed(99 + D + kind);
    float *qkv = (float *)mallocCheck(sizeof(float) * (size_t)N * ld), *w = (float *)mallocCheck(sizeof(float) * D);
    float *dy = (float *)mallocCheck(sizeof(float) * n);
    fill_normal(qkv, (size_t)N * ld, &r, 1.5f), fill_normal(w, D, &r, 0.3f), fill_normal(dy, n, &r, 1.0f);
    round_bf16(qkv, (size_t)N * ld), round_bf16(w, D);
    double inv[1024];
    float invf[1024];
    for (int i = 0; i < D / 2; i++) {
        inv[i] = kind == 0 ? pow(1e4, -2.0 * i / D) : kind == 1 ? pow(1e6, -2.0 * i / D) / 8 :
                 kind == 2 ? (i < (int)floor(0.25 * D / 2) ? pow(1e6, -2.0 * i / D) : 0.0) : 0.0;
        invf[i] = (float)inv[i];
    }
    int rope = kind != 3;
    const float *wc = kind == 3 ? NULL : w;
    Args a;
    a.N = N, a.T = T, a.ld = ld, a.nh = nh, a.D = D;
    a.qkv = to_dev_bf16(qkv, (size_t)N * ld), a.w = kind == 3 ? NULL : to_dev_f32(w, D), a.dy = to_dev_f32(dy, n);
    a.out = dev_bf16(n, 1), a.rstd = dev_f32((size_t)N * nh, 1), a.dqkv = dev_bf16((size_t)N * ld, 1);
    a.part = dev_f32((size_t)gs_cdiv((size_t)N * nh, HN_ROWS) * D, 0);
    a.cs = NULL;
    if (rope) {
        float2 *h = (float2 *)mallocCheck(sizeof(float2) * (size_t)T * (D / 2));
        rope_table_host(h, invf, T, D);
        hipCheck(hipMalloc(&a.cs, sizeof(float2) * (size_t)T * (D / 2)));
        hipCheck(hipMemcpy(a.cs, h, sizeof(float2) * (size_t)T * (D / 2), hipMemcpyHostToDevice));
        free(h);
    }
    if (!timing) {
        float *y = (float *)mallocCheck(sizeof(float) * n), *rs = (float *)mallocCheck(sizeof(float) * N * nh);
        headnorm_forward(y, rs, qkv, ld, 0, nh, D, wc, 1.0f, N, 1e-6);
        if (rope) rope_apply(y, N, T, nh, D, inv, 1.0f);
        run_fwd(&a);
        hipCheckLaunch();
        float *gy = from_dev_bf16(a.out, n), *gr = from_dev_f32(a.rstd, (size_t)N * nh);
        check("forward out (bf16)", gy, y, n, 4e-3);
        check("forward rstd", gr, rs, (size_t)N * nh, 1e-5);
        // backward (rstd from the CPU)
        hipCheck(hipMemcpy(a.rstd, rs, sizeof(float) * N * nh, hipMemcpyHostToDevice));
        float *dyr = (float *)mallocCheck(sizeof(float) * n), *dq = (float *)callocCheck(sizeof(float) * (size_t)N * ld);
        float *dw = (float *)callocCheck(sizeof(float) * D);
        memcpy(dyr, dy, sizeof(float) * n);
        if (rope) rope_apply(dyr, N, T, nh, D, inv, -1.0f);
        headnorm_backward(dq, kind == 3 ? NULL : dw, dyr, qkv, ld, 0, nh, D, rs, wc, 1.0f, N);
        float *dwd = dev_f32(D, 0);
        int nb = headnorm_rope_bwd<float, false>(a.dqkv, kind == 3 ? NULL : a.part, a.dy, a.qkv, ld, 0, nh, D, a.rstd, a.w,
                                                 1.0f, a.cs, T, N);
        if (kind != 3) colsum_finish(a.part, nb, D, 1, 1.0f, dwd);
        hipCheckLaunch();
        float *gdq = from_dev_bf16(a.dqkv, (size_t)N * ld), *gdw = from_dev_f32(dwd, D);
        for (int i = 0; i < N; i++)  // columns past the heads are not written: compare only the heads
            for (int c = nh * D; c < ld; c++) gdq[(size_t)i * ld + c] = 0;
        check("backward dqkv (bf16)", gdq, dq, (size_t)N * ld, 4e-3);
        if (kind != 3) check("backward weight gradient", gdw, dw, D, 1e-5);
        free(y), free(rs), free(gy), free(gr), free(dyr), free(dq), free(dw), free(gdq), free(gdw);
        hipCheck(hipFree(dwd));
    } else {
        float tf = time_ms(run_fwd, &a, 20), tb = time_ms(run_bwd, &a, 20);
        double bf = n * (2.0 + 2.0), bb = n * (4.0 + 2.0 + 2.0);
        printf("  v2 forward %7.3f ms %6.0f GB/s | backward %7.3f ms %6.0f GB/s\n", tf, bf / tf / 1e6, tb, bb / tb / 1e6);
    }
    free(qkv), free(w), free(dy);
}

int main(int argc, char **argv) {
    int timing = !(argc > 1 && strcmp(argv[1], "--no-time") == 0);
    printf("rope (+ per-head norm) workbench on %s\n", GS_VENDOR);
    case_run(2, 37, 4, 256, 0, 0);
    case_run(2, 37, 4, 256, 1, 0);
    case_run(1, 50, 2, 512, 2, 0);
    case_run(2, 20, 3, 16, 3, 0);
    case_run(1, 33, 8, 32, 0, 0);
    case_run(1, 29, 3, 18, 0, 0);  // D % 4 != 0: one pair per lane group
    if (timing) {
        printf("timing: q of Gemma-3-270M (N=16384, H=4, D=256)\n");
        case_run(8, 2048, 4, 256, 0, 1);
    }
    return bench_exit("rope");
}
