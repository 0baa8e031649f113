// hip/comm.hip — the device collectives of hip/comm.h: NCCL on NVIDIA, RCCL (the same API) on AMD, one
// communicator per process on GPU `local`, made from an id that rank 0 creates and hip/comm.h hands to every
// rank (MPI_Bcast under mpirun, as karpathy/llm.c's llmc/zero.cuh does, or a file). Host buffers without MPI
// go through a device staging buffer. Where no RCCL is installed (Debian's hipcc) this file compiles to a stub
// that stops at the first call, so every other hip source still builds.
#define GS_WANT_COMM 1
#include "hip/common.h"
#include "hip/comm.h"
#include <string.h>

#if GS_HAVE_COMM
static void nccl_check(ncclResult_t r, const char *call, const char *file, int line) {
    if (r == ncclSuccess) return;
    fprintf(stderr, "error: %s failed at %s:%d: %s\n  hint: every rank must start (mpirun -np N, or RANK/WORLD_SIZE "
                    "with GS_COMM_DIR), one GPU per rank; NCCL_DEBUG=WARN says more\n",
            call, file, line, ncclGetErrorString(r));
    exit(1);
}
#define ncclCheck(call) nccl_check((call), #call, __FILE__, __LINE__)

struct GpuComm {
    ncclComm_t comm;
    int rank, world;
    void *stage;        // device staging for gpu_comm_host
    size_t stage_bytes;
};

static const ncclDataType_t nccl_type[COMM_NTYPES] = {ncclFloat32, ncclFloat64, ncclBfloat16, ncclInt64};
static const size_t type_bytes[COMM_NTYPES] = {4, 8, 2, 8};
static ncclRedOp_t nccl_op(int op) { return op == COMM_AVG ? ncclAvg : ncclSum; }

extern "C" void gpu_comm_unique_id(unsigned char *id) {
    static_assert(sizeof(ncclUniqueId) == GPU_COMM_ID_BYTES, "GPU_COMM_ID_BYTES must be NCCL_UNIQUE_ID_BYTES");
    ncclUniqueId u;
    ncclCheck(ncclGetUniqueId(&u));
    memcpy(id, &u, sizeof u);
}

extern "C" GpuComm *gpu_comm_open(const unsigned char *id, int rank, int world, int local) {
    // NVLink multicast (NVLS) stays off, always: on a shared host a program using it can take every GPU out of
    // service. Set before NCCL reads its environment (at the first communicator)
    setenv("NCCL_NVLS_ENABLE", "0", 1);
    int ndev = 0;
    hipCheck(hipGetDeviceCount(&ndev));
    if (local >= ndev)
        fprintf(stderr, "error: rank %d wants GPU %d (its local rank) but %d are visible; start at most %d ranks per "
                        "machine\n", rank, local, ndev, ndev), exit(1);
    hipCheck(hipSetDevice(local));
    GpuComm *g = (GpuComm *)calloc(1, sizeof(GpuComm));
    if (!g) fprintf(stderr, "error: out of memory\n"), exit(1);
    ncclUniqueId u;
    memcpy(&u, id, sizeof u);
    ncclCheck(ncclCommInitRank(&g->comm, world, u, rank));
    g->rank = rank, g->world = world;
    return g;
}

extern "C" void gpu_comm_close(GpuComm *g) {
    if (!g) return;
    ncclCheck(ncclCommDestroy(g->comm));
    if (g->stage) hipCheck(hipFree(g->stage));
    free(g);
}

extern "C" void gpu_comm_allreduce(GpuComm *g, void *buf, size_t n, int type, int op, void *stream) {
    ncclCheck(ncclAllReduce(buf, buf, n, nccl_type[type], nccl_op(op), g->comm, (hipStream_t)stream));
}

extern "C" void gpu_comm_reduce_scatter(GpuComm *g, const void *send, void *recv, size_t count, int type, int op,
                                        void *stream) {
    ncclCheck(ncclReduceScatter(send, recv, count, nccl_type[type], nccl_op(op), g->comm, (hipStream_t)stream));
}

extern "C" void gpu_comm_allgather(GpuComm *g, const void *send, void *recv, size_t count, int type, void *stream) {
    ncclCheck(ncclAllGather(send, recv, count, nccl_type[type], g->comm, (hipStream_t)stream));
}

extern "C" void gpu_comm_group(GpuComm *g, int start) {
    (void)g;
    ncclCheck(start ? ncclGroupStart() : ncclGroupEnd());
}

extern "C" void gpu_comm_host(GpuComm *g, int what, const void *send, void *recv, size_t count, int type) {
    size_t b = type_bytes[type], in = what == COMM_REDUCE_SCATTER ? count * g->world : count,
           out = what == COMM_ALLGATHER ? count * g->world : count, need = (in + out) * b;
    if (need > g->stage_bytes) {
        if (g->stage) hipCheck(hipFree(g->stage));
        hipCheck(hipMalloc(&g->stage, need));
        g->stage_bytes = need;
    }
    char *din = (char *)g->stage, *dout = din + in * b;
    hipCheck(hipMemcpy(din, send, in * b, hipMemcpyHostToDevice));
    if (what == COMM_ALLREDUCE) gpu_comm_allreduce(g, din, count, type, COMM_SUM, NULL), dout = din;
    else if (what == COMM_REDUCE_SCATTER) gpu_comm_reduce_scatter(g, din, dout, count, type, COMM_SUM, NULL);
    else gpu_comm_allgather(g, din, dout, count, type, NULL);
    hipCheck(hipMemcpy(recv, dout, out * b, hipMemcpyDeviceToHost));
}
#else
// ------------------------------------------------------------------------------------ no RCCL here
static void no_comm(void) {
    fprintf(stderr, "error: this build has no RCCL (rccl/rccl.h was not found); install RCCL and rebuild\n");
    exit(1);
}
extern "C" void gpu_comm_unique_id(unsigned char *id) { no_comm(); }
extern "C" GpuComm *gpu_comm_open(const unsigned char *id, int rank, int world, int local) { no_comm(); return NULL; }
extern "C" void gpu_comm_close(GpuComm *g) {}
extern "C" void gpu_comm_allreduce(GpuComm *g, void *buf, size_t n, int type, int op, void *stream) { no_comm(); }
extern "C" void gpu_comm_reduce_scatter(GpuComm *g, const void *send, void *recv, size_t count, int type, int op,
                                        void *stream) { no_comm(); }
extern "C" void gpu_comm_allgather(GpuComm *g, const void *send, void *recv, size_t count, int type, void *stream) {
    no_comm();
}
extern "C" void gpu_comm_group(GpuComm *g, int start) { no_comm(); }
extern "C" void gpu_comm_host(GpuComm *g, int what, const void *send, void *recv, size_t count, int type) { no_comm(); }
#endif
