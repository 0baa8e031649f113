// hip/dev/rmsnorm.hip — workbench for the d-sized RMSNorm with the pruning masks (hip/rmsnorm.h:
// k_norm_fwd, k_norm_add_fwd, k_norm_bwd, k_colsum + k_norm_grads_finish) against model.h's
// rmsnorm_forward / rmsnorm_backward: (1+w) weights, a hidden mask with zeros (statistics over kept
// dims), a layer gate, the residual add and Gemma 4's layer_scalar.
//   v1: one block of 128 threads per row, the row read twice (statistic, then output) from L1/L2;
//       weight/mask/gate gradients as deterministic column sums (partials of 128 rows, then one block).
//   v2 (d % 4 == 0, d <= 1536): one warp per row, the row in registers (16-byte loads); the backward leaves
//       the column partials of its 32 rows itself (no second pass); the post-attention norm, residual add
//       and pre-feedforward norm in one kernel. The launchers (norm_fwd, norm_add_fwd, norm_bwd) pick v2
//       where it applies: C = 66 below runs v1, the others v2.
//   residual_undo (every C): the backward's way back from a layer's output residual to its input (the forward
//       keeps none), checked against the CPU's forward of the two adds.
// Tolerances: bf16 outputs 4e-3 (one rounding); fp32 outputs and gradients 1e-5 (inputs are bf16-exact, so
//   nothing is rounded on those paths: only the order of fp32 sums differs).
//   build: make hip/build/dev_rmsnorm   run: hip/build/dev_rmsnorm [--no-time]
#include "hip/dev/bench.h"
#include "hip/rmsnorm.h"

typedef struct {
    bf16 *y;
    float *rstd, *x, *w, *z, *out, *res, *dx, *part, *dw, *dz, *dgate;
    bf16 *dyb;
    int N, C;
    float gate;
} Args;

static void run_fwd(void *p) {
    Args *a = (Args *)p;
    norm_fwd<float>(a->y, a->rstd, a->x, a->w, 1.0f, a->z, 1.0f / a->C, 1e-6f, a->C, a->N);
}
static void run_bwd(void *p) {
    Args *a = (Args *)p;
    int nrb = norm_bwd<bf16, float, float, true>(a->dx, a->part, a->dyb, a->x, a->rstd, a->w, 1.0f, a->z, 1.0f / a->C,
                                                 a->gate, a->C, a->N);
    norm_grads_finish(a->part, nrb, a->C, a->dw, a->dz, a->dgate, a->w, 1.0f, a->z, a->gate);
}

static void case_run(int N, int C, int masked, int timing) {
    printf("N=%d C=%d %s\n", N, C, masked ? "(hidden mask with zeros, gate 0.7, layer_scalar 0.9)" : "(no masks)");
    Rng r = rng_seed(7 + C);
    size_t n = (size_t)N * C;
    float *x = (float *)mallocCheck(sizeof(float) * n), *dy = (float *)mallocCheck(sizeof(float) * n);
    float *res = (float *)mallocCheck(sizeof(float) * n), *dx0 = (float *)mallocCheck(sizeof(float) * n);
    float *w = (float *)mallocCheck(sizeof(float) * C), *z = (float *)mallocCheck(sizeof(float) * C);
    fill_normal(x, n, &r, 2.0f), fill_normal(dy, n, &r, 1.0f), fill_normal(res, n, &r, 1.0f), fill_normal(dx0, n, &r, 1.0f);
    fill_normal(w, C, &r, 0.3f);
    round_bf16(x, n), round_bf16(dy, n), round_bf16(w, C);
    int kept = C;
    for (int i = 0; i < C; i++) z[i] = 1.0f;
    if (masked) {
        kept = 0;
        for (int i = 0; i < C; i++) z[i] = rng_uniform(&r) < 0.15 ? 0.0f : (float)rng_uniform(&r), kept += z[i] != 0.0f;
    }
    float gate = masked ? 0.7f : 1.0f, ls = masked ? 0.9f : 1.0f;
    Args a;
    a.N = N, a.C = C, a.gate = gate;
    a.x = to_dev_f32(x, n), a.w = to_dev_f32(w, C), a.z = masked ? to_dev_f32(z, C) : NULL;
    a.y = dev_bf16(n, 1), a.rstd = dev_f32(N, 1), a.out = dev_f32(n, 1), a.res = to_dev_f32(res, n);
    a.dx = to_dev_f32(dx0, n), a.dyb = to_dev_bf16(dy, n);
    a.part = dev_f32(norm_bwd_parts(C, N), 0), a.dw = dev_f32(C, 0), a.dz = dev_f32(C, 0), a.dgate = dev_f32(1, 0);
    float *d_ls = to_dev_f32(&ls, 1);
    if (!timing) {
        const float *zc = masked ? z : NULL;
        float *y = (float *)mallocCheck(sizeof(float) * n), *rs = (float *)mallocCheck(sizeof(float) * N);
        float *y2 = (float *)mallocCheck(sizeof(float) * n), *rs2 = (float *)mallocCheck(sizeof(float) * N);
        float *dw = (float *)callocCheck(sizeof(float) * C), *dz = (float *)callocCheck(sizeof(float) * C), dgate = 0;
        float *dx = (float *)mallocCheck(sizeof(float) * n);
        memcpy(dx, dx0, sizeof(float) * n);
        rmsnorm_forward(y, C, rs, x, C, w, 1.0f, zc, kept, 1.0f, N, C, 1e-6);
        rmsnorm_forward(y2, C, rs2, x, C, w, 1.0f, zc, kept, gate, N, C, 1e-6);
        for (size_t i = 0; i < n; i++) y2[i] = (res[i] + y2[i]) * ls;
        rmsnorm_backward(dx, C, dw, masked ? dz : NULL, masked ? &dgate : NULL, dy, C, x, C, rs, w, 1.0f, zc, kept, gate, N, C);
        norm_fwd<float>(a.y, a.rstd, a.x, a.w, 1.0f, a.z, 1.0f / kept, 1e-6f, C, N);
        hipCheckLaunch();
        float *gy = from_dev_bf16(a.y, n), *gr = from_dev_f32(a.rstd, N);
        check("k_norm_fwd y (bf16)", gy, y, n, 4e-3);
        check("k_norm_fwd rstd", gr, rs, N, 1e-5);
        // the add kernel reads a bf16 input: feed it the bf16-exact x
        bf16 *xb = to_dev_bf16(x, n);
        norm_add_fwd(a.out, a.rstd, a.res, xb, a.w, 1.0f, a.z, 1.0f / kept, gate, masked ? d_ls : NULL, 1e-6f, C, N, NULL,
                     NULL, NULL);
        hipCheckLaunch();
        float *go = from_dev_f32(a.out, n);
        check("k_norm_add_fwd out (fp32)", go, y2, n, 1e-5);
        // fused: the same, then y3 = RMSNorm(out; w) (the pre-feedforward norm) in the same pass
        float *y3 = (float *)mallocCheck(sizeof(float) * n), *rs3 = (float *)mallocCheck(sizeof(float) * N);
        rmsnorm_forward(y3, C, rs3, y2, C, w, 1.0f, zc, kept, 1.0f, N, C, 1e-6);
        float *d_r3 = dev_f32(N, 1);
        norm_add_fwd(a.out, a.rstd, a.res, xb, a.w, 1.0f, a.z, 1.0f / kept, gate, masked ? d_ls : NULL, 1e-6f, C, N, a.y,
                     d_r3, a.w);
        hipCheckLaunch();
        float *go2 = from_dev_f32(a.out, n), *gy3 = from_dev_bf16(a.y, n), *gr3 = from_dev_f32(d_r3, N);
        check("fused add + second norm: out (fp32)", go2, y2, n, 1e-5);
        check("fused add + second norm: y (bf16)", gy3, y3, n, 4e-3);
        check("fused add + second norm: rstd", gr3, rs3, N, 1e-5);
        free(y3), free(rs3), free(go2), free(gy3), free(gr3);
        hipCheck(hipFree(d_r3));
        // backward: rstd from the CPU so both use the same statistic
        hipCheck(hipMemcpy(a.rstd, rs, sizeof(float) * N, hipMemcpyHostToDevice));
        float *d_dz = masked ? a.dz : NULL, *d_dg = masked ? a.dgate : NULL;
        int nrb = norm_bwd<bf16, float, float, true>(a.dx, a.part, a.dyb, a.x, a.rstd, a.w, 1.0f, a.z, 1.0f / kept, gate, C, N);
        norm_grads_finish(a.part, nrb, C, a.dw, d_dz, d_dg, a.w, 1.0f, a.z, gate);
        hipCheckLaunch();
        float *gdx = from_dev_f32(a.dx, n), *gdw = from_dev_f32(a.dw, C);
        check("k_norm_bwd dx (fp32, accumulated)", gdx, dx, n, 1e-5);
        check("norm weight gradient", gdw, dw, C, 1e-5);
        if (masked) {
            float *gdz = from_dev_f32(d_dz, C), *gdg = from_dev_f32(d_dg, 1);
            check("hidden-mask gradient", gdz, dz, C, 1e-5);
            check("layer-gate gradient", gdg, &dgate, 1, 1e-5);
            free(gdz), free(gdg);
        }
        // bf16-out variant (the branch gradients): dx = d, not accumulated
        bf16 *dxb = dev_bf16(n, 1);
        float *dyf = to_dev_f32(dy, n);
        norm_bwd<float, bf16, bf16, false>(dxb, a.part, dyf, xb, a.rstd, a.w, 1.0f, a.z, 1.0f / kept, gate, C, N);
        hipCheckLaunch();
        for (size_t i = 0; i < n; i++) dx[i] = 0;
        rmsnorm_backward(dx, C, NULL, NULL, NULL, dy, C, x, C, rs, w, 1.0f, zc, kept, gate, N, C);
        float *gdxb = from_dev_bf16(dxb, n);
        check("k_norm_bwd dx (bf16, overwritten)", gdxb, dx, n, 4e-3);
        // the backward's residual_undo: from x_next = (x2 + RMSNorm(f)·gate)·ls, x2 = x + RMSNorm(o)·gate (made here
        // on the CPU with x = res, o = x, f = dy and four different norm weights), back to x2 and x (fp32: within an
        // ulp of x_next, so 1e-5) and the two norms the weight gradients need (bf16)
        {
            float *wk = (float *)mallocCheck(sizeof(float) * 4 * C), *t = (float *)mallocCheck(sizeof(float) * n);
            float *x2 = (float *)mallocCheck(sizeof(float) * n), *xn = (float *)mallocCheck(sizeof(float) * n);
            float *s1 = (float *)mallocCheck(sizeof(float) * n), *s3 = (float *)mallocCheck(sizeof(float) * n);
            float *rk = (float *)mallocCheck(sizeof(float) * 4 * N);  // 1/rms of o, x2, f, x
            for (int k = 0; k < 4; k++)
                for (int c = 0; c < C; c++) wk[k * C + c] = w[c] * (1.0f + 0.25f * k) + 0.05f * k;
            rmsnorm_forward(t, C, rk, x, C, wk, 1.0f, zc, kept, gate, N, C, 1e-6);  // post-attention norm of o
            for (size_t i = 0; i < n; i++) x2[i] = res[i] + t[i];
            rmsnorm_forward(s1, C, rk + N, x2, C, wk + C, 1.0f, zc, kept, 1.0f, N, C, 1e-6);  // pre-feedforward
            rmsnorm_forward(t, C, rk + 2 * N, dy, C, wk + 2 * C, 1.0f, zc, kept, gate, N, C, 1e-6);  // post-feedforward
            for (size_t i = 0; i < n; i++) xn[i] = (x2[i] + t[i]) * ls;
            rmsnorm_forward(s3, C, rk + 3 * N, res, C, wk + 3 * C, 1.0f, zc, kept, 1.0f, N, C, 1e-6);  // input norm
            float *d_x = to_dev_f32(xn, n), *d_x2 = dev_f32(n, 1), *d_w = to_dev_f32(wk, 4 * C), *d_r = to_dev_f32(rk, 4 * N);
            bf16 *d_s1 = dev_bf16(n, 1), *d_s3 = dev_bf16(n, 1), *d_f = to_dev_bf16(dy, n);
            residual_undo(d_x, d_x2, d_s1, d_s3, d_f, xb, d_r + 2 * N, d_r, d_r + N, d_r + 3 * N, d_w + 2 * C, d_w, d_w + C,
                          d_w + 3 * C, 1.0f, a.z, gate, masked ? d_ls : NULL, C, N);
            hipCheckLaunch();
            float *gx = from_dev_f32(d_x, n), *gx2 = from_dev_f32(d_x2, n), *gs1 = from_dev_bf16(d_s1, n), *gs3 = from_dev_bf16(d_s3, n);
            check("residual_undo x (fp32)", gx, res, n, 1e-5);
            check("residual_undo x2 (fp32)", gx2, x2, n, 1e-5);
            check("residual_undo pre-feedforward norm (bf16)", gs1, s1, n, 4e-3);
            check("residual_undo input norm (bf16)", gs3, s3, n, 4e-3);
            free(wk), free(t), free(x2), free(xn), free(s1), free(s3), free(rk), free(gx), free(gx2), free(gs1), free(gs3);
            hipCheck(hipFree(d_x)), hipCheck(hipFree(d_x2)), hipCheck(hipFree(d_w)), hipCheck(hipFree(d_r));
            hipCheck(hipFree(d_s1)), hipCheck(hipFree(d_s3)), hipCheck(hipFree(d_f));
        }
        free(y), free(rs), free(y2), free(rs2), free(dw), free(dz), free(dx), free(gy), free(gr), free(go), free(gdx);
        free(gdw), free(gdxb);
        hipCheck(hipFree(xb)), hipCheck(hipFree(dxb)), hipCheck(hipFree(dyf));
    } else {
        float tf = time_ms(run_fwd, &a, 20), tb = time_ms(run_bwd, &a, 20);
        double bf = n * (4.0 + 2.0), bb = n * (2.0 + 4.0 + 8.0) + (row_nv(C) ? 0 : n * (2.0 + 4.0));  // bytes read + written
        printf("  %s forward %7.3f ms %6.0f GB/s | backward+grads %7.3f ms %6.0f GB/s\n", row_nv(C) ? "v2" : "v1", tf, bf / tf / 1e6, tb, bb / tb / 1e6);
    }
    free(x), free(dy), free(res), free(dx0), free(w), free(z);
}

int main(int argc, char **argv) {
    int timing = !(argc > 1 && strcmp(argv[1], "--no-time") == 0);
    printf("rmsnorm workbench on %s\n", GS_VENDOR);
    case_run(300, 64, 0, 0);
    case_run(301, 66, 1, 0);
    case_run(517, 640, 1, 0);
    case_run(200, 1152, 1, 0);
    if (timing) {
        printf("timing: N=16384 tokens\n");
        case_run(16384, 640, 0, 1);
        case_run(16384, 1152, 0, 1);
    }
    return bench_exit("rmsnorm");
}
