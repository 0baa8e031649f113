// hip/blas.h — the matrix products of the GPU path (implemented in hip/blas.hip, the only file that
// calls the vendor BLAS). Row-major, like model.h's matmul: C[M,N] = alpha op(A) op(B) + beta C.
#pragma once
enum { GS_F32 = 0, GS_BF16 = 1 };  // operand storage types
enum { GS_BLAS_DEFAULT = 0, GS_BLAS_LT = 1, GS_BLAS_TUNED = 2 };  // how a product picks its algorithm (blas.hip)
#ifdef __cplusplus
extern "C" {
#endif
void gs_blas_init(void);
void gs_blas_mode(int mode);  // GS_BLAS_*; AMD: always the default
void gs_gemm(int transA, int transB, int M, int N, int K, float alpha, const void *A, int tA, int lda, const void *B,
             int tB, int ldb, float beta, void *C, int tC, int ldc);
// `batch` products at once, the i-th on A + i·sA, B + i·sB, C + i·sC (strides in elements)
void gs_gemm_batched(int transA, int transB, int M, int N, int K, float alpha, const void *A, int tA, int lda, long long sA,
                     const void *B, int tB, int ldb, long long sB, float beta, void *C, int tC, int ldc, long long sC,
                     int batch);
// hip/dev/gemm.hip --sweep: one product's candidates timed on these operands with this beta, in turns over `rounds`
// rounds (the fastest run of each): cuBLASLt's first max − 1, then GemmEx; ms[i] < 0 where one refused the operands,
// desc[i] the candidate in words. Returns how many (0 without cuBLASLt).
int gs_gemm_sweep(int ta, int tb, int M, int N, int K, const void *A, int tA, int lda, const void *B, int tB, int ldb,
                  float beta, void *C, int tC, int ldc, int rounds, int max, float *ms, char (*desc)[64]);
#ifdef __cplusplus
}
#endif
