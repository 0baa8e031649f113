// hip/dev/bench.h — what every workbench in hip/dev shares: random inputs, device copies, the
// comparison against the CPU reference (relative L2 error and the worst element), and timing with
// device events (median of repeats after a warm-up).
//
// Tolerances (relative L2 error ‖gpu − cpu‖ / ‖cpu‖, on inputs that are exact in bf16):
//   fp32 kernels (AdamW, hard-concrete, reductions)                    1e-5 (fp32 rounding, different order)
//   one bf16 rounding of the output (norms, rope, gelu, embedding)      4e-3 (bf16 keeps 8 bits: 2^-9 = 2e-3 per value)
//   bf16 operands inside (attention: P and dS are rounded to bf16 before the products) 1e-2
// NaN never passes.
#pragma once
#include "model.h"
#include "hip/common.h"

static int bench_failures = 0;

static void fill_normal(float *x, size_t n, Rng *r, float std) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(std * rng_normal(r));
}
static void round_bf16(float *x, size_t n) {  // make host values exactly representable in bf16
    for (size_t i = 0; i < n; i++) x[i] = bf16_to_f32(f32_to_bf16(x[i]));
}
static bf16 *to_dev_bf16(const float *x, size_t n) {
    bf16 *h = (bf16 *)mallocCheck(sizeof(bf16) * n), *d;
    for (size_t i = 0; i < n; i++) h[i] = f32_to_bf16(x[i]);
    hipCheck(hipMalloc(&d, sizeof(bf16) * n));
    hipCheck(hipMemcpy(d, h, sizeof(bf16) * n, hipMemcpyHostToDevice));
    free(h);
    return d;
}
static float *to_dev_f32(const float *x, size_t n) {
    float *d;
    hipCheck(hipMalloc(&d, sizeof(float) * n));
    hipCheck(hipMemcpy(d, x, sizeof(float) * n, hipMemcpyHostToDevice));
    return d;
}
static float *dev_f32(size_t n, int poison) {  // poison = fill with NaN so unwritten elements fail the check
    float *d;
    hipCheck(hipMalloc(&d, sizeof(float) * n));
    hipCheck(hipMemset(d, poison ? 0xff : 0, sizeof(float) * n));
    return d;
}
static bf16 *dev_bf16(size_t n, int poison) {
    bf16 *d;
    hipCheck(hipMalloc(&d, sizeof(bf16) * n));
    hipCheck(hipMemset(d, poison ? 0xff : 0, sizeof(bf16) * n));
    return d;
}
static float *from_dev_bf16(const bf16 *d, size_t n) {
    bf16 *h = (bf16 *)mallocCheck(sizeof(bf16) * n);
    float *f = (float *)mallocCheck(sizeof(float) * n);
    hipCheck(hipMemcpy(h, d, sizeof(bf16) * n, hipMemcpyDeviceToHost));
    for (size_t i = 0; i < n; i++) f[i] = bf16_to_f32(h[i]);
    free(h);
    return f;
}
static float *from_dev_f32(const float *d, size_t n) {
    float *f = (float *)mallocCheck(sizeof(float) * n);
    hipCheck(hipMemcpy(f, d, sizeof(float) * n, hipMemcpyDeviceToHost));
    return f;
}

// relative L2 error, the worst element; prints one line; counts a failure
static double check(const char *what, const float *gpu, const float *cpu, size_t n, double tol) {
    double num = 0, den = 0, worst = 0;
    size_t wi = 0;
    int nan = 0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)gpu[i] - cpu[i];
        if (gpu[i] != gpu[i]) nan = 1;
        num += e * e, den += (double)cpu[i] * cpu[i];
        if (fabs(e) > worst) worst = fabs(e), wi = i;
    }
    double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    int bad = nan || !(rel <= tol);
    printf("  %s %-44s rel.L2 %.2e (tol %.0e)  worst [%zu] %.6g vs %.6g%s\n", bad ? "FAIL" : "ok  ", what, rel, tol, wi,
           n ? gpu[wi] : 0.0f, n ? cpu[wi] : 0.0f, nan ? "  NaN!" : "");
    if (bad) bench_failures++;
    return rel;
}

// median time of `reps` runs of fn(arg) in ms, after 2 warm-ups
typedef void (*bench_fn)(void *);
static float time_ms(bench_fn fn, void *arg, int reps) {
    hipEvent_t a, b;
    hipCheck(hipEventCreate(&a));
    hipCheck(hipEventCreate(&b));
    fn(arg), fn(arg);
    float *t = (float *)mallocCheck(sizeof(float) * reps);
    for (int i = 0; i < reps; i++) {
        hipCheck(hipEventRecord(a, 0));
        fn(arg);
        hipCheck(hipEventRecord(b, 0));
        hipCheck(hipEventSynchronize(b));
        hipCheck(hipEventElapsedTime(&t[i], a, b));
    }
    for (int i = 1; i < reps; i++)  // insertion sort, then the median
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
            float x = t[j];
            t[j] = t[j - 1], t[j - 1] = x;
        }
    float med = t[reps / 2];
    free(t);
    hipCheck(hipEventDestroy(a));
    hipCheck(hipEventDestroy(b));
    return med;
}

static int bench_exit(const char *name) {
    printf("%s: %s\n", name, bench_failures ? "FAILED" : "all checks passed");
    return bench_failures ? 1 : 0;
}
