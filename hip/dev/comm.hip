// hip/dev/comm.hip — workbench for the device collectives (hip/comm.hip: NCCL / RCCL) at any world size:
// one process per GPU, started like the programs (mpirun -np N with GPU_MPI=1, or RANK / WORLD_SIZE /
// LOCAL_RANK / GS_COMM_DIR from any launcher; alone it is a world of 1).
//   checks: all-reduce (fp32 sum, bf16 sum), reduce-scatter (fp32 average), all-gather (bf16, in place and not),
//   and the host-buffer path through the device; the CPU reference is the sum of every rank's values, which
//   each rank computes itself. Values are small multiples of powers of two, so fp32 and bf16 sums are exact in
//   any order: tolerance 0, except the average (1e-6 relative: a division by the world size).
//   timing: bus bandwidth as nccl-tests reports it (algorithm bandwidth x 2(n-1)/n for all-reduce, (n-1)/n
//   for reduce-scatter and all-gather) over a range of sizes, median of 20 runs.
//   build: make hip/build/dev_comm   run: [launcher] hip/build/dev_comm [--no-time] [--max-mib N]
#define USE_GPU 1
#include "hip/dev/bench.h"
#include "hip/comm.h"

static Comm C;

static float val(int r, size_t k) { return (float)((int)((k * 7 + (size_t)r * 13) % 17) - 8); }  // bf16-exact

static size_t count_bad(const float *got, const float *want, size_t n, double rtol, size_t *first) {
    size_t bad = 0;
    *first = n;
    for (size_t i = 0; i < n; i++)
        if (!(fabs((double)got[i] - want[i]) <= rtol * fabs((double)want[i]))) bad++, *first = *first < n ? *first : i;
    return bad;
}

static void report(const char *what, size_t bad, size_t first, size_t n, const float *got, const float *want) {
    if (bad) bench_failures++;
    if (bad || C.rank == 0)
        printf("  %s [rank %d] %-40s %zu of %zu differ%s", bad ? "FAIL" : "ok  ", C.rank, what, bad, n, bad ? "" : "\n");
    if (bad) printf(" (first [%zu] %g, want %g)\n", first, got[first], want[first]);
}

static void checks(size_t q) {
    int W = C.world, R = C.rank;
    size_t n = q * W, first;
    float *h = (float *)mallocCheck(sizeof(float) * n), *want = (float *)mallocCheck(sizeof(float) * n);
    if (R == 0) printf("checks: %zu per rank, world %d\n", q, W);
    // all-reduce fp32 and bf16: the sum
    for (size_t k = 0; k < n; k++) {
        h[k] = val(R, k), want[k] = 0;
        for (int r = 0; r < W; r++) want[k] += val(r, k);
    }
    float *d32 = to_dev_f32(h, n);
    bf16 *d16 = to_dev_bf16(h, n);
    gpu_comm_allreduce(C.gpu, d32, n, COMM_F32, COMM_SUM, NULL);
    gpu_comm_allreduce(C.gpu, d16, n, COMM_BF16, COMM_SUM, NULL);
    float *g32 = from_dev_f32(d32, n), *g16 = from_dev_bf16(d16, n);
    size_t bad = count_bad(g32, want, n, 0, &first);
    report("all-reduce fp32 sum", bad, first, n, g32, want);
    bad = count_bad(g16, want, n, 0, &first);
    report("all-reduce bf16 sum", bad, first, n, g16, want);
    free(g32), free(g16);
    // reduce-scatter fp32, average: block R
    hipCheck(hipMemcpy(d32, h, sizeof(float) * n, hipMemcpyHostToDevice));
    float *rs = dev_f32(q, 1);
    gpu_comm_reduce_scatter(C.gpu, d32, rs, q, COMM_F32, COMM_AVG, NULL);
    float *grs = from_dev_f32(rs, q);
    for (size_t j = 0; j < q; j++) {
        want[j] = 0;
        for (int r = 0; r < W; r++) want[j] += val(r, (size_t)R * q + j);
        want[j] /= W;
    }
    bad = count_bad(grs, want, q, 1e-6, &first);
    report("reduce-scatter fp32 average", bad, first, q, grs, want);
    free(grs);
    // all-gather bf16: out of place, then in place (send = recv + R q)
    for (size_t j = 0; j < q; j++) h[j] = val(R, j + 5);
    bf16 *mine = to_dev_bf16(h, q);
    hipCheck(hipMemset(d16, 0xff, sizeof(bf16) * n));
    gpu_comm_allgather(C.gpu, mine, d16, q, COMM_BF16, NULL);
    for (int r = 0; r < W; r++)
        for (size_t j = 0; j < q; j++) want[(size_t)r * q + j] = val(r, j + 5);
    g16 = from_dev_bf16(d16, n);
    bad = count_bad(g16, want, n, 0, &first);
    report("all-gather bf16", bad, first, n, g16, want);
    free(g16);
    hipCheck(hipMemset(d16, 0xff, sizeof(bf16) * n));
    hipCheck(hipMemcpy(d16 + (size_t)R * q, mine, sizeof(bf16) * q, hipMemcpyDeviceToDevice));
    gpu_comm_allgather(C.gpu, d16 + (size_t)R * q, d16, q, COMM_BF16, NULL);
    g16 = from_dev_bf16(d16, n);
    bad = count_bad(g16, want, n, 0, &first);
    report("all-gather bf16 in place", bad, first, n, g16, want);
    free(g16);
    // host buffers through the device (the path without MPI): all-reduce fp64
    double hd[3] = {(double)R, 1.0, 0.5 * R};
    gpu_comm_host(C.gpu, COMM_ALLREDUCE, hd, hd, 3, COMM_F64);
    int okh = hd[0] == W * (W - 1) / 2.0 && hd[1] == W && hd[2] == W * (W - 1) / 4.0;
    if (!okh) bench_failures++;
    if (!okh || R == 0) printf("  %s [rank %d] host all-reduce fp64 through the device: %g %g %g\n", okh ? "ok  " : "FAIL", R,
                               hd[0], hd[1], hd[2]);
    hipCheck(hipFree(d32)), hipCheck(hipFree(d16)), hipCheck(hipFree(rs)), hipCheck(hipFree(mine));
    free(h), free(want);
}

typedef struct {
    int what;
    void *buf, *out;
    size_t count;  // elements per rank
} Coll;
static void run_coll(void *p) {
    Coll *c = (Coll *)p;
    if (c->what == COMM_ALLREDUCE) gpu_comm_allreduce(C.gpu, c->buf, c->count, COMM_BF16, COMM_SUM, NULL);
    else if (c->what == COMM_REDUCE_SCATTER) gpu_comm_reduce_scatter(C.gpu, c->buf, c->out, c->count, COMM_BF16, COMM_SUM, NULL);
    else gpu_comm_allgather(C.gpu, c->out, c->buf, c->count, COMM_BF16, NULL);
}

static void timing(size_t max_mib) {
    int W = C.world;
    static const char *names[3] = {"all-reduce", "reduce-scatter", "all-gather"};
    if (C.rank == 0) printf("timing (bf16, world %d; bus bandwidth as nccl-tests: 0 for a world of 1):\n", W);
    size_t max = max_mib << 20;
    void *buf, *out;
    hipCheck(hipMalloc(&buf, max));
    hipCheck(hipMalloc(&out, max));
    hipCheck(hipMemset(buf, 0, max)), hipCheck(hipMemset(out, 0, max));
    for (size_t bytes = 1 << 20; bytes <= max; bytes *= 4)
        for (int w = 0; w < 3; w++) {
            size_t total = bytes / 2;  // bf16 elements in the whole buffer
            Coll c = {w, buf, out, w == COMM_ALLREDUCE ? total : total / W};
            float ms = time_ms(run_coll, &c, 20);
            double alg = bytes / (ms * 1e-3) / 1e9, f = w == COMM_ALLREDUCE ? 2.0 * (W - 1) / W : (double)(W - 1) / W;
            if (C.rank == 0)
                printf("  %-15s %8.1f MiB  %8.3f ms  algbw %7.1f GB/s  busbw %7.1f GB/s\n", names[w], bytes / 1048576.0,
                       ms, alg, alg * f);
        }
    hipCheck(hipFree(buf)), hipCheck(hipFree(out));
}

int main(int argc, char **argv) {
    int timed = 1;
    size_t max_mib = 1024;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--no-time")) timed = 0;
        else if (!strcmp(argv[i], "--max-mib") && i + 1 < argc) max_mib = (size_t)atol(argv[++i]);
        else fail("dev_comm: unknown argument %s; usage: dev_comm [--no-time] [--max-mib N]", argv[i]);
    }
    C = comm_init();
    comm_gpu_open(&C);
    if (C.rank == 0) printf("dev_comm: world %d (%s)\n", C.world, C.mpi ? "mpirun" : "RANK/WORLD_SIZE or alone");
    checks(1000003);
    checks(7);
    if (timed) timing(max_mib);
    int fails = (int)comm_sum(&C, bench_failures);
    bench_failures = fails;
    comm_finish(&C);
    return C.rank == 0 ? bench_exit("dev_comm") : fails > 0;
}
