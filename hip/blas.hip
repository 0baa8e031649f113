// hip/blas.hip — the one translation unit that calls the vendor BLAS (cuBLAS on NVIDIA, hipBLAS on
// AMD). Every matrix product of the step goes through gs_gemm: bf16 operands, fp32 accumulation,
// bf16 or fp32 output (fp32 for the weight gradients, which accumulate with beta = 1).
// Debian ships hipcc but no hipBLAS headers, so on AMD without <hipblas/hipblas.h> this file builds a
// stub that stops with a message at the first call; every kernel file still compiles (test_hip.sh).
// How a product (batched ones too) picks its algorithm (gs_blas_mode): GS_BLAS_DEFAULT, the library's default
// (GemmEx); on NVIDIA also GS_BLAS_LT, cuBLASLt's first heuristic choice, and GS_BLAS_TUNED (the default there),
// cuBLASLt where the first call of each shape (with beta = 0, so repeating it is harmless) times the heuristic's
// first TUNE_CANDIDATES algorithms on the real operands and keeps the fastest (hip/dev/gemm.hip measures all
// three). Tuning makes the choice depend on timings: two runs may pick different algorithms and so round
// differently (GPU runs were not bit-reproducible before either: some kernels add with atomics).
#include "blas.h"

#include "common.h"

#if GS_NVIDIA
#include <cublas_v2.h>
#define GS_HAVE_BLAS 1
typedef cublasHandle_t blas_handle_t;
#define BLAS_OP(t) ((t) ? CUBLAS_OP_T : CUBLAS_OP_N)
#define BLAS_TYPE(t) ((t) == GS_BF16 ? CUDA_R_16BF : CUDA_R_32F)
static const char *blas_status(cublasStatus_t s) { return cublasGetStatusString(s); }
#define blasCreate cublasCreate
#define blasGemmEx(h, ta, tb, m, n, k, al, A, tA, lda, B, tB, ldb, be, C, tC, ldc)                                      \
    cublasGemmEx(h, ta, tb, m, n, k, al, A, tA, lda, B, tB, ldb, be, C, tC, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT)
#define blasGemmBatched(h, ta, tb, m, n, k, al, A, tA, lda, sA, B, tB, ldb, sB, be, C, tC, ldc, sC, nb)                  \
    cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, al, A, tA, lda, sA, B, tB, ldb, sB, be, C, tC, ldc, sC, nb,              \
                               CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT)
#define BLAS_OK CUBLAS_STATUS_SUCCESS
#elif __has_include(<hipblas/hipblas.h>)
#include <hipblas/hipblas.h>
#define GS_HAVE_BLAS 1
typedef hipblasHandle_t blas_handle_t;
#define BLAS_OP(t) ((t) ? HIPBLAS_OP_T : HIPBLAS_OP_N)
#define BLAS_TYPE(t) ((t) == GS_BF16 ? HIPBLAS_R_16B : HIPBLAS_R_32F)
static const char *blas_status(hipblasStatus_t s) { return hipblasStatusToString(s); }
#define blasCreate hipblasCreate
#define blasGemmEx(h, ta, tb, m, n, k, al, A, tA, lda, B, tB, ldb, be, C, tC, ldc)                                      \
    hipblasGemmEx(h, ta, tb, m, n, k, al, A, tA, lda, B, tB, ldb, be, C, tC, ldc, HIPBLAS_R_32F, HIPBLAS_GEMM_DEFAULT)
#define blasGemmBatched(h, ta, tb, m, n, k, al, A, tA, lda, sA, B, tB, ldb, sB, be, C, tC, ldc, sC, nb)                  \
    hipblasGemmStridedBatchedEx(h, ta, tb, m, n, k, al, A, tA, lda, sA, B, tB, ldb, sB, be, C, tC, ldc, sC, nb,             \
                                HIPBLAS_R_32F, HIPBLAS_GEMM_DEFAULT)
#define BLAS_OK HIPBLAS_STATUS_SUCCESS
#else
#define GS_HAVE_BLAS 0
#endif

#if GS_HAVE_BLAS
static blas_handle_t handle;
static int ready = 0, mode = GS_NVIDIA ? GS_BLAS_TUNED : GS_BLAS_DEFAULT;  // measured: hip/dev/RESULTS.md §8

#if GS_NVIDIA
#include <cublasLt.h>
// tune_max_ms: products whose first candidate takes longer are not tuned but left to GemmEx. The fifth session
// kept the head's 3-4 ms products off the tuner (its picks then measured 9-21% slower in the workbench); the eighth
// tuned them again (GS_TUNE_MAX_MS=100 against 1, same call, 1B step, binaries alternating: 213.5 against 214.3 ms
// mean over 9 pairs, the head's logits product 3.34 against GemmEx's 3.72 ms; hip/dev/RESULTS.md §11), so the
// limit now only stops a runaway tuning
enum { TUNE_CANDIDATES = 12, TUNE_ROUNDS = 4, LT_WORKSPACE = 32 << 20 };
static float tune_max_ms = 100.0f;  // GS_TUNE_MAX_MS overrides it
static int blas_log = 0;          // GS_BLAS_LOG=1: each tuned product's candidates and choice on stderr
// one product shape: its key (with the operands' alignment, which cuBLASLt's algorithms depend on), the
// descriptors and the algorithm it runs (tuned: chosen by timing)
typedef struct {
    int ta, tb, M, N, K, tA, lda, tB, ldb, tC, ldc, batch, align, tuned, none;  // none: no cuBLASLt algorithm (GemmEx runs it)
    long long sA, sB, sC;                                                         // batch strides (elements)
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
    cublasLtMatmulAlgo_t cand[TUNE_CANDIDATES];  // the heuristic's candidates, best guess first (the tuner times them)
    int ncand;
} Plan;
static cublasLtHandle_t lt;
static void *lt_ws;
static Plan *plans;
static int nplans, cap_plans;

static void lt_check(cublasStatus_t st, const char *what) {
    if (st == CUBLAS_STATUS_SUCCESS) return;
    fprintf(stderr, "error: cuBLASLt %s failed: %s\n", what, cublasGetStatusString(st));
    exit(1);
}
// cuBLASLt's candidates (up to `max`, best guess first) for a plan's descriptors, into out; returns how many
static int lt_heuristic(const Plan *p, cublasLtMatmulAlgo_t *out, int max) {
    cublasLtMatmulHeuristicResult_t res[64];
    cublasLtMatmulPreference_t pref;
    size_t wsz = LT_WORKSPACE;
    int nres = 0;
    max = max < 64 ? max : 64;
    lt_check(cublasLtMatmulPreferenceCreate(&pref), "preference");
    lt_check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsz, sizeof wsz), "preference");
    uint32_t al = (uint32_t)p->align;
    cublasLtMatmulPreferenceAttributes_t at[] = {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                 CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    for (int i = 0; i < 4; i++) lt_check(cublasLtMatmulPreferenceSetAttribute(pref, at[i], &al, sizeof al), "alignment");
    lt_check(cublasLtMatmulAlgoGetHeuristic(lt, p->op, p->la, p->lb, p->lc, p->lc, pref, max, res, &nres), "heuristic");
    cublasLtMatmulPreferenceDestroy(pref);
    for (int i = 0; i < nres; i++) out[i] = res[i].algo;
    return nres;
}
static void lt_candidates(Plan *p) { p->ncand = lt_heuristic(p, p->cand, TUNE_CANDIDATES); }
// the plan of this shape, made on first use: column-major C^T = op(B)^T op(A)^T as in gs_gemm (cuBLASLt's A is
// our B), running the heuristic's first algorithm until a call tunes it
static Plan *lt_plan(int ta, int tb, int M, int N, int K, int tA, int lda, long long sA, int tB, int ldb, long long sB,
                     int tC, int ldc, long long sC, int batch, int align) {
    for (int i = 0; i < nplans; i++) {
        Plan *p = &plans[i];
        if (p->ta == ta && p->tb == tb && p->M == M && p->N == N && p->K == K && p->tA == tA && p->lda == lda &&
            p->tB == tB && p->ldb == ldb && p->tC == tC && p->ldc == ldc && p->batch == batch && p->align == align &&
            p->sA == sA && p->sB == sB && p->sC == sC)
            return p;
    }
    if (nplans == cap_plans) {
        cap_plans = cap_plans ? 2 * cap_plans : 64;
        plans = (Plan *)realloc(plans, sizeof(Plan) * cap_plans);
        if (!plans) fprintf(stderr, "error: out of host memory\n"), exit(1);
    }
    Plan *p = &plans[nplans++];
    *p = (Plan){ta, tb, M, N, K, tA, lda, tB, ldb, tC, ldc, batch, align, 0, 0, sA, sB, sC};
    cublasOperation_t oa = BLAS_OP(tb), ob = BLAS_OP(ta);
    int m = N, n = M;
    lt_check(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "descriptor");
    lt_check(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &oa, sizeof oa), "transa");
    lt_check(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &ob, sizeof ob), "transb");
    lt_check(cublasLtMatrixLayoutCreate(&p->la, BLAS_TYPE(tB), tb ? K : m, tb ? m : K, ldb), "layout");
    lt_check(cublasLtMatrixLayoutCreate(&p->lb, BLAS_TYPE(tA), ta ? n : K, ta ? K : n, lda), "layout");
    lt_check(cublasLtMatrixLayoutCreate(&p->lc, BLAS_TYPE(tC), m, n, ldc), "layout");
    if (batch > 1) {
        cublasLtMatrixLayout_t l3[] = {p->la, p->lb, p->lc};
        long long st[] = {sB, sA, sC};
        for (int i = 0; i < 3; i++) {
            lt_check(cublasLtMatrixLayoutSetAttribute(l3[i], CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch, sizeof batch), "batch");
            lt_check(cublasLtMatrixLayoutSetAttribute(l3[i], CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &st[i], sizeof st[i]),
                     "batch stride");
        }
    }
    lt_candidates(p);
    if (p->ncand > 0) p->algo = p->cand[0];
    else p->none = 1;
    return p;
}
// 0: the algorithm turned these operands down (CUBLAS_STATUS_NOT_SUPPORTED); any other failure stops
static int lt_run(const Plan *p, const cublasLtMatmulAlgo_t *algo, float alpha, const void *A, const void *B, float beta,
                  void *C) {
    cublasStatus_t st = cublasLtMatmul(lt, p->op, &alpha, B, p->la, A, p->lb, &beta, C, p->lc, C, p->lc, algo, lt_ws,
                                       LT_WORKSPACE, 0);
    if (st == CUBLAS_STATUS_NOT_SUPPORTED) return 0;
    lt_check(st, "matmul");
    return 1;
}
// one run of algo (NULL: GemmEx) on a plan's operands, timed by device events into *ms; 0 where algo refused them
static int lt_timed_run(const Plan *p, const cublasLtMatmulAlgo_t *algo, float alpha, const void *A, const void *B,
                        float beta, void *C, float *ms) {
    static hipEvent_t e0, e1;
    static int have = 0;
    if (!have) hipCheck(hipEventCreate(&e0)), hipCheck(hipEventCreate(&e1)), have = 1;
    hipCheck(hipEventRecord(e0, 0));
    int ok = 1;
    if (algo) ok = lt_run(p, algo, alpha, A, B, beta, C);
    else lt_check(blasGemmEx(handle, BLAS_OP(p->tb), BLAS_OP(p->ta), p->N, p->M, p->K, &alpha, B, BLAS_TYPE(p->tB), p->ldb,
                             A, BLAS_TYPE(p->tA), p->lda, &beta, C, BLAS_TYPE(p->tC), p->ldc), "GemmEx");
    hipCheck(hipEventRecord(e1, 0));
    hipCheck(hipEventSynchronize(e1));
    hipCheck(hipEventElapsedTime(ms, e0, e1));
    return ok;
}
// the plan of these operands: the largest power of two (up to 256) that divides every operand address (and,
// batched, every batch's) is part of its key
static Plan *lt_plan_for(int ta, int tb, int M, int N, int K, const void *A, int tA, int lda, long long sA, const void *B,
                         int tB, int ldb, long long sB, const void *C, int tC, int ldc, long long sC, int batch) {
    uintptr_t es[] = {4, 2}, bits = (uintptr_t)A | (uintptr_t)B | (uintptr_t)C | 256;
    if (batch > 1) bits |= (uintptr_t)(sA * es[tA]) | (uintptr_t)(sB * es[tB]) | (uintptr_t)(sC * es[tC]);
    return lt_plan(ta, tb, M, N, K, tA, lda, sA, tB, ldb, sB, tC, ldc, sC, batch, (int)(bits & (~bits + 1)));
}
// 0: cuBLASLt has no algorithm for it (the caller runs GemmEx)
static int lt_gemm(int ta, int tb, int M, int N, int K, float alpha, const void *A, int tA, int lda, long long sA,
                   const void *B, int tB, int ldb, long long sB, float beta, void *C, int tC, int ldc, long long sC,
                   int batch) {
    Plan *p = lt_plan_for(ta, tb, M, N, K, A, tA, lda, sA, B, tB, ldb, sB, C, tC, ldc, sC, batch);
    if (p->none) return 0;
    if (mode == GS_BLAS_TUNED && !p->tuned && beta == 0.0f) {
        // TUNE_ROUNDS rounds over the candidates, each keeping its fastest run (taking turns: clock drift does not
        // favour whoever runs first), each warmed up by one untimed run before its first. The lead is the first
        // candidate that takes these operands; GemmEx where it takes longer than tune_max_ms (then the rest never
        // run) or where no candidate takes them
        float best[TUNE_CANDIDATES], ms;
        int ok[TUNE_CANDIDATES], lead = -1;  // ok: -1 not run yet, 0 refused these operands, 1 runs
        for (int i = 0; i < p->ncand; i++) best[i] = 1e30f, ok[i] = -1;
        for (int r = 0; r < TUNE_ROUNDS; r++)
            for (int i = 0; i < p->ncand && (lead < 0 || i <= lead || best[lead] <= tune_max_ms); i++) {
                if (ok[i] < 0) ok[i] = lt_timed_run(p, &p->cand[i], alpha, A, B, beta, C, &ms);  // the warm-up
                if (!ok[i]) continue;
                if (lead < 0) lead = i;
                lt_timed_run(p, &p->cand[i], alpha, A, B, beta, C, &ms);
                best[i] = ms < best[i] ? ms : best[i];
            }
        p->tuned = 1, p->none = lead < 0 || best[lead] > tune_max_ms;
        if (p->none) return 0;
        int bi = lead;  // refused candidates keep best = 1e30
        for (int i = lead + 1; i < p->ncand; i++) bi = best[i] < best[bi] ? i : bi;
        p->algo = p->cand[bi];
        if (blas_log) {
            fprintf(stderr, "tuned M %d N %d K %d batch %d: #%d of", M, N, K, batch, bi);
            for (int i = 0; i < p->ncand; i++) fprintf(stderr, " %.3f", ok[i] > 0 ? best[i] : -1.0f);
            fprintf(stderr, " ms\n");
        }
    }
    if (lt_run(p, &p->algo, alpha, A, B, beta, C)) return 1;
    p->none = 1;  // from now on GemmEx, which takes any alignment
    return 0;
}
// one candidate in words (hip/dev/gemm.hip --sweep): cuBLASLt's algorithm id, tile, stages, split-K, cluster shape
static void lt_describe(const cublasLtMatmulAlgo_t *a, char *out, size_t n) {
    int32_t id = 0, splitk = 0;
    uint32_t tile = 0, stages = 0;
    uint16_t cluster = 0;
    size_t w;
    cublasLtMatmulAlgoConfigGetAttribute(a, CUBLASLT_ALGO_CONFIG_ID, &id, sizeof id, &w);
    cublasLtMatmulAlgoConfigGetAttribute(a, CUBLASLT_ALGO_CONFIG_TILE_ID, &tile, sizeof tile, &w);
    cublasLtMatmulAlgoConfigGetAttribute(a, CUBLASLT_ALGO_CONFIG_STAGES_ID, &stages, sizeof stages, &w);
    cublasLtMatmulAlgoConfigGetAttribute(a, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splitk, sizeof splitk, &w);
    cublasLtMatmulAlgoConfigGetAttribute(a, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, &cluster, sizeof cluster, &w);
    snprintf(out, n, "algo %d tile %u stages %u splitk %d cluster %u", id, tile, stages, splitk, cluster);
}
#endif

void gs_blas_mode(int m) {
#if GS_NVIDIA
    mode = m;
#else
    mode = GS_BLAS_DEFAULT;  // hipBLASLt is not wired in: every mode is the default here
    (void)m;
#endif
}

void gs_blas_init(void) {
    if (ready) return;
    auto st = blasCreate(&handle);
    if (st != BLAS_OK) {
        fprintf(stderr, "error: creating the BLAS handle failed: %s\n  hint: is the GPU visible and the BLAS library "
                        "installed?\n", blas_status(st));
        exit(1);
    }
#if GS_NVIDIA
    if (getenv("GS_TUNE_MAX_MS")) tune_max_ms = (float)atof(getenv("GS_TUNE_MAX_MS"));
    blas_log = getenv("GS_BLAS_LOG") && atoi(getenv("GS_BLAS_LOG")) > 0;
    lt_check(cublasLtCreate(&lt), "create");
    hipCheck(hipMalloc(&lt_ws, LT_WORKSPACE));
#endif
    ready = 1;
}

// Row-major C[M,N] = alpha op(A)[M,K] op(B)[K,N] + beta C. Column-major BLAS sees row-major matrices
// transposed, so it computes C^T = op(B)^T op(A)^T: swap the operands and M, N.
void gs_gemm(int transA, int transB, int M, int N, int K, float alpha, const void *A, int tA, int lda, const void *B,
             int tB, int ldb, float beta, void *C, int tC, int ldc) {
    if (M == 0 || N == 0) return;
    gs_blas_init();
#if GS_NVIDIA
    if (mode != GS_BLAS_DEFAULT && K > 0 && lt_gemm(transA, transB, M, N, K, alpha, A, tA, lda, 0, B, tB, ldb, 0, beta, C, tC, ldc, 0, 1))
        return;
#endif
    auto st = blasGemmEx(handle, BLAS_OP(transB), BLAS_OP(transA), N, M, K, &alpha, B, BLAS_TYPE(tB), ldb, A,
                         BLAS_TYPE(tA), lda, &beta, C, BLAS_TYPE(tC), ldc);
    if (st != BLAS_OK) {
        fprintf(stderr, "error: gemm (transA %d transB %d M %d N %d K %d lda %d ldb %d ldc %d) failed: %s\n", transA,
                transB, M, N, K, lda, ldb, ldc, blas_status(st));
        exit(1);
    }
}
void gs_gemm_batched(int transA, int transB, int M, int N, int K, float alpha, const void *A, int tA, int lda, long long sA,
                     const void *B, int tB, int ldb, long long sB, float beta, void *C, int tC, int ldc, long long sC,
                     int batch) {
    if (M == 0 || N == 0 || batch == 0) return;
    gs_blas_init();
#if GS_NVIDIA
    if (mode != GS_BLAS_DEFAULT && K > 0 &&
        lt_gemm(transA, transB, M, N, K, alpha, A, tA, lda, sA, B, tB, ldb, sB, beta, C, tC, ldc, sC, batch))
        return;
#endif
    auto st = blasGemmBatched(handle, BLAS_OP(transB), BLAS_OP(transA), N, M, K, &alpha, B, BLAS_TYPE(tB), ldb, sB, A,
                              BLAS_TYPE(tA), lda, sA, &beta, C, BLAS_TYPE(tC), ldc, sC, batch);
    if (st != BLAS_OK) {
        fprintf(stderr, "error: batched gemm (transA %d transB %d M %d N %d K %d batch %d) failed: %s\n", transA, transB,
                M, N, K, batch, blas_status(st));
        exit(1);
    }
}

int gs_gemm_sweep(int ta, int tb, int M, int N, int K, const void *A, int tA, int lda, const void *B, int tB, int ldb,
                  float beta, void *C, int tC, int ldc, int rounds, int max, float *ms, char (*desc)[64]) {
#if GS_NVIDIA
    gs_blas_init();
    Plan *p = lt_plan_for(ta, tb, M, N, K, A, tA, lda, 0, B, tB, ldb, 0, C, tC, ldc, 0, 1);
    cublasLtMatmulAlgo_t cand[64];
    int n = lt_heuristic(p, cand, max - 1 < 64 ? max - 1 : 64), ok[65];
    for (int i = 0; i <= n; i++) {
        ms[i] = 1e30f, ok[i] = -1;
        if (i < n) lt_describe(&cand[i], desc[i], 64);
        else snprintf(desc[i], 64, "GemmEx (the library's default)");
    }
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i <= n; i++) {  // in turns, as the tuner (lt_gemm); GemmEx last
            const cublasLtMatmulAlgo_t *algo = i < n ? &cand[i] : NULL;
            float t;
            if (ok[i] < 0) ok[i] = lt_timed_run(p, algo, 1.0f, A, B, beta, C, &t);  // the warm-up
            if (!ok[i]) continue;
            lt_timed_run(p, algo, 1.0f, A, B, beta, C, &t);
            ms[i] = t < ms[i] ? t : ms[i];
        }
    for (int i = 0; i <= n; i++)
        if (!ok[i]) ms[i] = -1;
    return n + 1;
#else
    (void)ta, (void)tb, (void)M, (void)N, (void)K, (void)A, (void)tA, (void)lda, (void)B, (void)tB, (void)ldb, (void)beta;
    (void)C, (void)tC, (void)ldc, (void)rounds, (void)max, (void)ms, (void)desc;
    return 0;
#endif
}
#else
void gs_blas_init(void) {}
void gs_blas_mode(int m) { (void)m; }
void gs_gemm(int transA, int transB, int M, int N, int K, float alpha, const void *A, int tA, int lda, const void *B,
             int tB, int ldb, float beta, void *C, int tC, int ldc) {
    fprintf(stderr, "error: this build has no BLAS (hipBLAS headers were not found at compile time)\n"
                    "  hint: install hipblas-dev (ROCm) and rebuild with make gpu\n");
    exit(1);
}
void gs_gemm_batched(int transA, int transB, int M, int N, int K, float alpha, const void *A, int tA, int lda, long long sA,
                     const void *B, int tB, int ldb, long long sB, float beta, void *C, int tC, int ldc, long long sC,
                     int batch) {
    gs_gemm(transA, transB, M, N, K, alpha, A, tA, lda, B, tB, ldb, beta, C, tC, ldc);  // stops with the message
}
int gs_gemm_sweep(int ta, int tb, int M, int N, int K, const void *A, int tA, int lda, const void *B, int tB, int ldb,
                  float beta, void *C, int tC, int ldc, int rounds, int max, float *ms, char (*desc)[64]) {
    return 0;
}
#endif
