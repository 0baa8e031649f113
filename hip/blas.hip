// hip/blas.hip — the one translation unit that calls the vendor BLAS (cuBLAS on NVIDIA, hipBLAS on
// AMD). Every matrix product of the step goes through gs_gemm: bf16 operands, fp32 accumulation,
// bf16 or fp32 output (fp32 for the weight gradients, which accumulate with beta = 1).
// Debian ships hipcc but no hipBLAS headers, so on AMD without <hipblas/hipblas.h> this file builds a
// stub that stops with a message at the first call; every kernel file still compiles (test_hip.sh).
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
static int ready = 0;

void gs_blas_init(void) {
    if (ready) return;
    auto st = blasCreate(&handle);
    if (st != BLAS_OK) {
        fprintf(stderr, "error: creating the BLAS handle failed: %s\n  hint: is the GPU visible and the BLAS library "
                        "installed?\n", blas_status(st));
        exit(1);
    }
    ready = 1;
}

// Row-major C[M,N] = alpha op(A)[M,K] op(B)[K,N] + beta C. Column-major BLAS sees row-major matrices
// transposed, so it computes C^T = op(B)^T op(A)^T: swap the operands and M, N.
void gs_gemm(int transA, int transB, int M, int N, int K, float alpha, const void *A, int tA, int lda, const void *B,
             int tB, int ldb, float beta, void *C, int tC, int ldc) {
    if (M == 0 || N == 0) return;
    gs_blas_init();
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
    auto st = blasGemmBatched(handle, BLAS_OP(transB), BLAS_OP(transA), N, M, K, &alpha, B, BLAS_TYPE(tB), ldb, sB, A,
                              BLAS_TYPE(tA), lda, sA, &beta, C, BLAS_TYPE(tC), ldc, sC, batch);
    if (st != BLAS_OK) {
        fprintf(stderr, "error: batched gemm (transA %d transB %d M %d N %d K %d batch %d) failed: %s\n", transA, transB,
                M, N, K, batch, blas_status(st));
        exit(1);
    }
}
#else
void gs_blas_init(void) {}
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
#endif
