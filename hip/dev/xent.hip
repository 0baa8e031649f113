// hip/dev/xent.hip — workbench for the fused softcapped cross-entropy (hip/xent.h: k_xent) against
// model.h's crossentropy_forward / crossentropy_backward: s = c·tanh(z/c), loss = logsumexp(s) − s[tgt], gradient
// (softmax − onehot)·(1 − (s/c)²)/n_valid written over the logits; ignored targets (−1) give 0.
// The head never holds fp32 logits: the products write CHUNK rows of bf16 logits and this kernel turns
// them into loss and gradient in place (hip/gpu.hip's gpu_forward).
//   v1: one block of 1024 threads per row; 16-byte loads (8 logits) and an online max/sum in one pass,
//       the gradient in a second pass; a scalar path when V is not a multiple of 8.
//   v2 (NVIDIA sm_90+, here only): each row read once. A cluster of XENT_CL blocks holds one row at a time in
//       registers (each block a slice: XENT_NT threads × XENT_PER 16-byte loads), combines the slices' max and
//       sum through distributed shared memory (one warp per block reads the cluster's XENT_CL pairs) and writes
//       the gradient from the registers; as many clusters as fit run at once and walk the rows. V a multiple of
//       8, at most 262144. Measured on the H200: 0.717 against v1's 0.720 ms here, and slower inside the 1B
//       step (head 7.2–7.5 against 6.5 ms, GS_PROFILE); a first version with one cluster per row and every
//       thread reading the partial sums took 0.776 ms. v1's second, reversed read partly hits L2, and the
//       cluster's two barriers per row stall each SM between reading and writing. Skipped without clusters.
// Tolerances: row losses 1e-5 (fp32 on bf16-exact logits); gradients 4e-3 (one bf16 rounding).
//   build: make hip/build/dev_xent   run: hip/build/dev_xent [--no-time]
#include "hip/dev/bench.h"
#include "hip/xent.h"

enum { XENT_CL = 8, XENT_NT = 512, XENT_PER = 8 };  // blocks per row, threads per block, 16-byte loads per thread
#if GS_NVIDIA  // NVIDIA-only: v2 needs clusters (sm_90+); v1 runs everywhere
__global__ void GS_CLUSTER(XENT_CL) __launch_bounds__(XENT_NT, 2)
    k_xent_cl(bf16 *logits, int rows, int V, const int *tgt, float cap, float inv_n, float *row_loss, int want_grad) {
    __shared__ float sh[32], part[2], lse_sh;  // part: this block's slice max and its sum of exp(s − max)
    const int rank = (int)cluster_rank(), nv = V / 8, ncl = gridDim.x / XENT_CL;
    const int per = (nv + XENT_CL - 1) / XENT_CL, v0 = rank * per, v1 = v0 + per < nv ? v0 + per : nv;
    for (int row = blockIdx.x / XENT_CL; row < rows; row += ncl) {
        uint4 *z = (uint4 *)(logits + (size_t)row * V);
        const int t = tgt[row];
        if (t < 0) {  // the same for the whole cluster: no loss, zero gradient
            if (rank == 0 && threadIdx.x == 0) row_loss[row] = 0;
            if (want_grad)
                for (int i = v0 + threadIdx.x; i < v1; i += XENT_NT) z[i] = make_uint4(0, 0, 0, 0);
            continue;
        }
        // the target's logit, read before any block of the cluster writes the row (after the second barrier)
        const float st = rank == 0 && threadIdx.x == 0 ? softcap_f(bf2f(logits[(size_t)row * V + t]), cap) : 0.0f;
        uint4 raw[XENT_PER];
#pragma unroll
        for (int c = 0; c < XENT_PER; c++) {
            int i = v0 + c * XENT_NT + threadIdx.x;
            raw[c] = i < v1 ? z[i] : make_uint4(0, 0, 0, 0);
        }
        float m = -INFINITY, sum = 0;
#pragma unroll
        for (int c = 0; c < XENT_PER; c++) {  // online max and sum, as k_xent
            const bf16 *e = (const bf16 *)&raw[c];
            if (v0 + c * XENT_NT + (int)threadIdx.x >= v1) continue;
            float v[8], mx = m;
#pragma unroll
            for (int k = 0; k < 8; k++) v[k] = softcap_f(bf2f(e[k]), cap), mx = fmaxf(mx, v[k]);
            sum *= __expf(m - mx);
#pragma unroll
            for (int k = 0; k < 8; k++) sum += __expf(v[k] - mx);
            m = mx;
        }
        float M = block_max(m, sh);
        float S = block_sum(m == -INFINITY ? 0.0f : sum * __expf(m - M), sh);
        if (threadIdx.x == 0) part[0] = M, part[1] = S;
        cluster_sync();
        if (threadIdx.x < GS_WARP) {  // lanes 0 .. XENT_CL−1 read the slices; every block combines them alike
            int l = threadIdx.x;
            float mr = l < XENT_CL ? cluster_ld(&part[0], l) : -INFINITY, sr = l < XENT_CL ? cluster_ld(&part[1], l) : 0.0f;
            float Mc = mr;
            for (int o = XENT_CL / 2; o > 0; o >>= 1) Mc = fmaxf(Mc, gs_shfl_xor(Mc, o));
            float Sc = mr == -INFINITY ? 0.0f : sr * __expf(mr - Mc);
            for (int o = XENT_CL / 2; o > 0; o >>= 1) Sc += gs_shfl_xor(Sc, o);
            if (l == 0) lse_sh = Mc + logf(Sc);
        }
        cluster_sync();  // lse_sh is set, and no block reuses part while another may still read it
        const float lse = lse_sh;
        if (rank == 0 && threadIdx.x == 0) row_loss[row] = lse - st;
        if (!want_grad) continue;
#pragma unroll
        for (int c = 0; c < XENT_PER; c++) {
            int i = v0 + c * XENT_NT + threadIdx.x;
            if (i >= v1) continue;
            const bf16 *e = (const bf16 *)&raw[c];
            uint4 out;
            uint32_t *o = (uint32_t *)&out;
#pragma unroll
            for (int k = 0; k < 4; k++)
                o[k] = pack_bf16x2(xent_grad(e[2 * k], 8 * i + 2 * k, t, lse, cap, inv_n),
                                   xent_grad(e[2 * k + 1], 8 * i + 2 * k + 1, t, lse, cap, inv_n));
            z[i] = out;
        }
    }
}
#endif

typedef struct {
    bf16 *z, *z0;
    int *tgt;
    float *loss;
    int rows, V, ver;
    float cap, inv_n;
} Args;

static void run_k(void *p) {
    Args *a = (Args *)p;
    hipCheck(hipMemcpyAsync(a->z, a->z0, sizeof(bf16) * (size_t)a->rows * a->V, hipMemcpyDeviceToDevice));
    if (a->ver == 1) k_xent<<<a->rows, 1024>>>(a->z, a->V, a->tgt, a->cap, a->inv_n, a->loss, 1);
#if GS_NVIDIA  // NVIDIA-only: v2; AMD times v1 only
    else {
        static int ncl = 0;
        if (!ncl) ncl = gs_max_clusters((const void *)k_xent_cl, XENT_CL, XENT_NT);
        k_xent_cl<<<(a->rows < ncl ? a->rows : ncl) * XENT_CL, XENT_NT>>>(a->z, a->rows, a->V, a->tgt, a->cap, a->inv_n,
                                                                           a->loss, 1);
    }
#endif
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
    Args a = {dev_bf16(n, 1), to_dev_bf16(z, n), NULL, dev_f32(rows, 1), rows, V, 1, cap, 1.0f / n_valid};
    int nver = gs_have_cluster() && V % 8 == 0 && V <= XENT_CL * XENT_NT * XENT_PER * 8 ? 2 : 1;
    hipCheck(hipMalloc(&a.tgt, sizeof(int) * rows));
    hipCheck(hipMemcpy(a.tgt, tgt, sizeof(int) * rows, hipMemcpyHostToDevice));
    if (!timing) {
        float *loss = (float *)mallocCheck(sizeof(float) * rows), *g = (float *)mallocCheck(sizeof(float) * n);
        XentRow *xr = (XentRow *)mallocCheck(sizeof(XentRow) * rows);  // model.h's cross-entropy, one tile per row
        memcpy(g, z, sizeof(float) * n);
        crossentropy_init(xr, rows);
        crossentropy_forward(xr, g, V, rows, 0, V, tgt, cap);
        crossentropy_loss(loss, xr, tgt, rows);
        crossentropy_backward(g, V, xr, rows, 0, V, tgt, cap, a.inv_n);
        free(xr);
        for (a.ver = 1; a.ver <= nver; a.ver++) {
            char what[64];
            run_k(&a);
            hipCheckLaunch();
            float *gl = from_dev_f32(a.loss, rows), *gg = from_dev_bf16(a.z, n);
            snprintf(what, sizeof what, "v%d row losses", a.ver);
            check(what, gl, loss, rows, 1e-5);
            snprintf(what, sizeof what, "v%d gradient over the logits (bf16)", a.ver);
            check(what, gg, g, n, 4e-3);
            free(gl), free(gg);
        }
        free(loss), free(g);
    } else {
        float tc = time_ms(run_copy, &a, 10);
        for (a.ver = 1; a.ver <= nver; a.ver++) {  // v1 reads each logit twice, v2 once; both write it once
            float tk = time_ms(run_k, &a, 10) - tc;
            printf("  v%d %7.3f ms (minus the %5.3f ms reset copy) %6.0f GB/s (%d read%s + 1 write of bf16 logits)\n",
                   a.ver, tk, tc, n * (a.ver == 1 ? 6.0 : 4.0) / tk / 1e6, 3 - a.ver, a.ver == 1 ? "s" : "");
        }
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
    case_run(5, 262144 - 8, 0.0f, 0);  // v2: the last block's slice shorter than the others
    case_run(5, 24, 30.0f, 0);         // v2: blocks with nothing to hold
    if (timing) {
        printf("timing: one head chunk (2048 rows of V=262144)\n");
        case_run(2048, 262144, 0.0f, 1);
    }
    return bench_exit("xent");
}
