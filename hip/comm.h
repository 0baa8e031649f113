// hip/comm.h — the communication layer of data parallel training: who this process is, collectives on
// host buffers (MPI, what the CPU programs use), collectives on device buffers (NCCL on NVIDIA, RCCL on
// AMD: hip/comm.hip), and the ZeRO partition of the parameter table that both paths share.
//
// Processes are started by mpirun (OpenMPI), as karpathy/llm.c does:
//   mpirun -np 8 hip/build/train ...        rank, world size and local rank from MPI
// or by any launcher that sets RANK, WORLD_SIZE and LOCAL_RANK (torchrun --no-python, a shell loop); then the
// GPU build passes the NCCL id through a file in GS_COMM_DIR (a fresh directory every rank can see) and
// carries its host collectives over NCCL too. A CPU build without MPI runs one process (a world of 1).
//
// Use from C:
//   #include "model.h"                       // first, for the ZeRO partition (it needs the ParamTable)
//   #include "hip/comm.h"
//   Comm c = comm_init();                     // MPI_Init when started by mpirun
//   comm_allreduce(&c, buf, n, COMM_F32);     // sums in place on every rank
//   ZeroPlan z = zero_plan(&m.tab, m.c.L, stage, c.rank, c.world);
//   ... comm_finish(&c);                     // MPI_Finalize; every program calls it before returning
// GPU builds (USE_GPU): comm_gpu_open(&c) after comm_init makes the NCCL communicator on device `local`.
// Two include guards: the ZeRO partition is added by the first inclusion that follows model.h.
#ifndef GS_COMM_H
#define GS_COMM_H
#include <stddef.h>
#include <stdint.h>

enum { COMM_F32, COMM_F64, COMM_BF16, COMM_I64, COMM_NTYPES };  // element types of the collectives
enum { COMM_SUM, COMM_AVG };                                     // reductions (device collectives)
#define GPU_COMM_ID_BYTES 128                                    // NCCL's ncclUniqueId (NCCL_UNIQUE_ID_BYTES)

// ------------------------------------------------------------------------------------------------
// Device collectives (hip/comm.hip). Buffers are device pointers; stream is a hipStream_t (NULL: the
// default stream, where the GPU step runs); every call only enqueues work.
// ------------------------------------------------------------------------------------------------
typedef struct GpuComm GpuComm;
#ifdef __cplusplus
extern "C" {
#endif
void gpu_comm_unique_id(unsigned char *id);  // rank 0 makes it, every rank gets it (MPI or GS_COMM_DIR)
GpuComm *gpu_comm_open(const unsigned char *id, int rank, int world, int local);  // picks device `local`
void gpu_comm_close(GpuComm *g);
void gpu_comm_allreduce(GpuComm *g, void *buf, size_t n, int type, int op, void *stream);
// send holds world x count elements; rank r receives the reduction of block r
void gpu_comm_reduce_scatter(GpuComm *g, const void *send, void *recv, size_t count, int type, int op, void *stream);
// recv receives world x count elements, block r from rank r; in place when send == recv + rank x count
void gpu_comm_allgather(GpuComm *g, const void *send, void *recv, size_t count, int type, void *stream);
void gpu_comm_group(GpuComm *g, int start);  // 1: start, 0: end a group (the collectives between run as one)
// the same three on HOST buffers through the device (when no MPI carries them): synchronous, sums
void gpu_comm_host(GpuComm *g, int what, const void *send, void *recv, size_t count, int type);
#ifdef __cplusplus
}
#endif
enum { COMM_ALLREDUCE, COMM_REDUCE_SCATTER, COMM_ALLGATHER };  // gpu_comm_host's `what`

// ------------------------------------------------------------------------------------------------
// Host side (C, and C++ for the hip/dev workbench): who we are, and collectives on host buffers
// ------------------------------------------------------------------------------------------------
#include "util.h"
#ifdef USE_MPI
#include <mpi.h>
#endif

typedef struct {
    int rank, world;  // this process and how many there are                          0, 1
    int local;        // this process's index among those on its machine (its GPU)     0
    int mpi;          // 1: started by mpirun, MPI carries the host collectives
    int launched;     // 1: started by a launcher (mpirun, or RANK / WORLD_SIZE set), a world of 1 included
    GpuComm *gpu;     // the NCCL communicator (GPU builds, after comm_gpu_open)
} Comm;

static const size_t comm_type_size[COMM_NTYPES] = {4, 8, 2, 8};

// a non-negative integer from the environment (RANK, WORLD_SIZE, LOCAL_RANK), def when unset
static int comm_env_int(const char *name, int def) {
    const char *v = getenv(name);
    if (!v || !*v) return def;
    char *end;
    long x = strtol(v, &end, 10);
    if (*end || x < 0 || x > 1 << 20) fail("%s=%s: expected a non-negative integer (the launcher sets it)", name, v);
    return (int)x;
}

#ifdef USE_MPI
static void mpi_check(int e, const char *call, const char *file, int line) {
    if (e == MPI_SUCCESS) return;
    char msg[MPI_MAX_ERROR_STRING];
    int n = 0;
    MPI_Error_string(e, msg, &n);
    fail("%s failed at %s:%d: %.*s", call, file, line, n, msg);
}
#define mpiCheck(call) mpi_check((call), #call, __FILE__, __LINE__)
// bf16 has no MPI type (the CPU path is fp32 throughout): its host collectives go through the device only
static MPI_Datatype comm_mpi(int type) {
    if (type == COMM_BF16) fail("host collectives over MPI take fp32, fp64 and int64, not bf16");
    return type == COMM_F32 ? MPI_FLOAT : type == COMM_F64 ? MPI_DOUBLE : MPI_INT64_T;
}

// a process that leaves without comm_finish (fail() exits 1) takes the job down instead of hanging the others
static void comm_abort_at_exit(void) {
    int init = 0, done = 0;
    MPI_Initialized(&init), MPI_Finalized(&done);
    if (init && !done) MPI_Abort(MPI_COMM_WORLD, 1);
}
#endif

// started by an MPI launcher (OpenMPI, MPICH's hydra, PMIx): only then is MPI_Init called, so a plain
// ./train never touches MPI
static int comm_launched_by_mpi(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

static Comm comm_init(void) {
    Comm c = {0, 1, 0, 0, 0, NULL};
    if (comm_launched_by_mpi()) {
#ifdef USE_MPI
        mpiCheck(MPI_Init(NULL, NULL));
        atexit(comm_abort_at_exit);
        mpiCheck(MPI_Comm_rank(MPI_COMM_WORLD, &c.rank));
        mpiCheck(MPI_Comm_size(MPI_COMM_WORLD, &c.world));
        MPI_Comm node;  // the processes sharing this machine: our index among them picks the GPU
        mpiCheck(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, c.rank, MPI_INFO_NULL, &node));
        mpiCheck(MPI_Comm_rank(node, &c.local));
        MPI_Comm_free(&node);
        c.mpi = c.launched = 1;
        return c;
#else
        fail("started by mpirun, but this build has no MPI; install it (make deps: openmpi-bin, libopenmpi-dev) "
             "and rebuild, or run one process");
#endif
    }
    c.launched = getenv("WORLD_SIZE") != NULL;
    c.world = comm_env_int("WORLD_SIZE", 1);
    c.rank = comm_env_int("RANK", 0);
    c.local = comm_env_int("LOCAL_RANK", c.rank);
    if (c.world < 1 || c.rank >= c.world)
        fail("RANK=%d, WORLD_SIZE=%d: expected 0 <= RANK < WORLD_SIZE", c.rank, c.world);
#ifndef USE_GPU
    if (c.world > 1)
        fail("WORLD_SIZE=%d without mpirun: the CPU programs carry their collectives over MPI; start them with "
             "mpirun -np %d", c.world, c.world);
#endif
    return c;
}

static void comm_finish(Comm *c) {
#ifdef USE_GPU
    if (c->gpu) gpu_comm_close(c->gpu);
#endif
    c->gpu = NULL;
#ifdef USE_MPI
    if (c->mpi) MPI_Finalize();
#endif
    c->mpi = 0;
}

// A program's main under mpirun (train, prune): every rank runs fn with c set up; rank 0 prints and writes, the
// others' stdout goes to /dev/null (their errors still reach stderr); MPI_Finalize after
static int comm_main(Comm *c, int (*fn)(int, char **), int argc, char **argv) {
    *c = comm_init();
    if (c->rank > 0 && !freopen("/dev/null", "w", stdout)) fail("rank %d: cannot silence stdout", c->rank);
    int rc = fn(argc, argv);
    comm_finish(c);
    return rc;
}

#ifdef USE_MPI
// MPI counts are int: long buffers go in pieces of at most 2^30 elements
#define COMM_MPI_PIECE ((size_t)1 << 30)
static int comm_mpi_count(size_t n, const char *what) {
    if (n > (size_t)INT32_MAX) fail("%s of %zu elements per rank: MPI takes at most 2^31 - 1", what, n);
    return (int)n;
}
#endif

// Σ over ranks, in place on every rank
static void comm_allreduce(const Comm *c, void *buf, size_t n, int type) {
    if (c->world == 1 || n == 0) return;
#ifdef USE_MPI
    if (c->mpi) {
        for (size_t i = 0; i < n; i += COMM_MPI_PIECE) {
            size_t k = n - i < COMM_MPI_PIECE ? n - i : COMM_MPI_PIECE;
            mpiCheck(MPI_Allreduce(MPI_IN_PLACE, (char *)buf + i * comm_type_size[type], (int)k, comm_mpi(type),
                                   MPI_SUM, MPI_COMM_WORLD));
        }
        return;
    }
#endif
#ifdef USE_GPU
    if (c->gpu) {
        gpu_comm_host(c->gpu, COMM_ALLREDUCE, buf, buf, n, type);
        return;
    }
#endif
    fail("comm_allreduce: world of %d with neither MPI nor a GPU communicator", c->world);
}

// send: world x count elements; recv (count): the sum over ranks of block `rank`
static void comm_reduce_scatter(const Comm *c, const void *send, void *recv, size_t count, int type) {
    if (c->world == 1) {
        if (recv != send) memcpy(recv, send, count * comm_type_size[type]);
        return;
    }
#ifdef USE_MPI
    if (c->mpi) {
        mpiCheck(MPI_Reduce_scatter_block(send, recv, comm_mpi_count(count, "reduce-scatter"), comm_mpi(type),
                                          MPI_SUM, MPI_COMM_WORLD));
        return;
    }
#endif
#ifdef USE_GPU
    if (c->gpu) {
        gpu_comm_host(c->gpu, COMM_REDUCE_SCATTER, send, recv, count, type);
        return;
    }
#endif
    fail("comm_reduce_scatter: world of %d with neither MPI nor a GPU communicator", c->world);
}

// recv: world x count elements, block r from rank r's send (count); in place when send == recv + rank x count
static void comm_allgather(const Comm *c, const void *send, void *recv, size_t count, int type) {
    size_t bytes = count * comm_type_size[type];
    char *mine = (char *)recv + (size_t)c->rank * bytes;
    if (c->world == 1) {
        if (mine != send) memcpy(mine, send, bytes);
        return;
    }
#ifdef USE_MPI
    if (c->mpi) {
        int n = comm_mpi_count(count, "all-gather");
        if (send == mine) mpiCheck(MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, recv, n, comm_mpi(type),
                                                 MPI_COMM_WORLD));
        else mpiCheck(MPI_Allgather(send, n, comm_mpi(type), recv, n, comm_mpi(type), MPI_COMM_WORLD));
        return;
    }
#endif
#ifdef USE_GPU
    if (c->gpu) {
        gpu_comm_host(c->gpu, COMM_ALLGATHER, send, recv, count, type);
        return;
    }
#endif
    fail("comm_allgather: world of %d with neither MPI nor a GPU communicator", c->world);
}

// root's bytes to every rank (over MPI, or through the device as an all-reduce of zeros elsewhere)
static void comm_bcast(const Comm *c, void *buf, size_t bytes, int root) {
    if (c->world == 1) return;
#ifdef USE_MPI
    if (c->mpi) {
        for (size_t i = 0; i < bytes; i += COMM_MPI_PIECE) {
            size_t k = bytes - i < COMM_MPI_PIECE ? bytes - i : COMM_MPI_PIECE;
            mpiCheck(MPI_Bcast((char *)buf + i, (int)k, MPI_BYTE, root, MPI_COMM_WORLD));
        }
        return;
    }
#endif
    // bytes as 64-bit integers: a sum with zeros from every other rank is a copy of root's
    size_t n = (bytes + 7) / 8;
    int64_t *t = (int64_t *)callocCheck(n * 8);
    if (c->rank == root) memcpy(t, buf, bytes);
    comm_allreduce(c, t, n, COMM_I64);
    memcpy(buf, t, bytes);
    free(t);
}

// Does a step over these ranks run data parallel? Whenever a launcher started the process, a world of 1 included
// (then every collective runs, over one rank: how the path is checked on one GPU), or a ZeRO stage is asked for
static int comm_dp(const Comm *c, int zero) { return c && (c->world > 1 || c->launched || zero > 0); }

static void comm_barrier(const Comm *c) {
    int64_t x = 0;
    comm_allreduce(c, &x, 1, COMM_I64);
}

// a double summed over ranks (losses, token counts)
static double comm_sum(const Comm *c, double x) {
    comm_allreduce(c, &x, 1, COMM_F64);
    return x;
}

#ifdef USE_GPU
// The NCCL id, from rank 0 to every rank before any device collective exists: over MPI when mpirun started us,
// else through GS_COMM_DIR/nccl_id (written under a temporary name and renamed, so a reader never sees half)
static void comm_share_id(const Comm *c, unsigned char *id) {
    if (c->world == 1) return;
#ifdef USE_MPI
    if (c->mpi) {
        mpiCheck(MPI_Bcast(id, GPU_COMM_ID_BYTES, MPI_BYTE, 0, MPI_COMM_WORLD));
        return;
    }
#endif
    const char *dir = getenv("GS_COMM_DIR");
    if (!dir || !*dir)
        fail("WORLD_SIZE=%d without mpirun: set GS_COMM_DIR to a fresh directory that every rank can see (the NCCL id "
             "passes through it), or start with mpirun -np %d", c->world, c->world);
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/nccl_id", dir);
    if (c->rank == 0) {
        if (access(path, F_OK) == 0) fail("%s exists from an earlier run: give GS_COMM_DIR a fresh directory", path);
        snprintf(tmp, sizeof tmp, "%s.tmp%d", path, (int)getpid());
        FILE *f = fopenCheck(tmp, "wb");
        fwriteCheck(id, 1, GPU_COMM_ID_BYTES, f, tmp);
        if (fclose(f) != 0 || rename(tmp, path) != 0) fail("cannot write %s: %s", path, strerror(errno));
        return;
    }
    for (int waited = 0;; waited++) {  // the other ranks wait up to 5 minutes for rank 0
        FILE *f = fopen(path, "rb");
        if (f) {
            size_t got = fread(id, 1, GPU_COMM_ID_BYTES, f);
            fclose(f);
            if (got == GPU_COMM_ID_BYTES) return;
        }
        if (waited == 3000) fail("rank %d: no %s after 5 minutes; did rank 0 start, with the same GS_COMM_DIR?", c->rank, path);
        usleep(100000);
    }
}

static void comm_gpu_open(Comm *c) {
    unsigned char id[GPU_COMM_ID_BYTES] = {0};
    if (c->rank == 0) gpu_comm_unique_id(id);
    comm_share_id(c, id);
    c->gpu = gpu_comm_open(id, c->rank, c->world, c->local);
}
#endif

#endif  // GS_COMM_H

// ------------------------------------------------------------------------------------------------
// The ZeRO partition of model.h's parameter table, for the CPU and the GPU alike (needs model.h first).
// The table is cut into units: 0 = everything before layer 0 (the embedding), 1 + l = layer l, L + 1 = what
// follows the last layer (the final norm); stage 2 reduces and stage 3 gathers one unit at a time. Rank r owns
// [off + r q, off + (r + 1) q) of a unit of n floats, q = floor(n / (world x 256)) x 256; the last n - world q
// (< 256 world) floats, the tail, are kept and updated by every rank. So every collective has equal counts per rank
// and runs in place on the table's own layout, with no padding anywhere. q is a multiple of model.h's QBLOCK (256)
// because 8-bit AdamW lays its blocks over each unit from its start (model.h adamw8_shard): each rank's part and the
// tail are then whole blocks, and the blocks are the same at every stage and world size. At stage 0 the partition
// has one owner (every rank keeps everything): the same optimizer loop serves every stage.
// ------------------------------------------------------------------------------------------------
#if defined(MAX_LAYERS) && !defined(GS_COMM_ZERO)
#define GS_COMM_ZERO
#ifndef QBLOCK
#error "hip/comm.h's ZeRO partition follows model.h's 8-bit blocks (QBLOCK): include model.h first"
#endif
typedef struct {
    size_t off, n;  // the unit: floats [off, off + n) of the parameter table
    size_t q;       // floats each rank owns
    size_t tail;    // n - world q floats at the unit's end, replicated
    size_t at;      // where this rank's part of the unit (its q floats, then the tail) starts in its shard
} ZeroUnit;

typedef struct {
    int tensor;      // index in the parameter table
    size_t w, s, n;  // n floats at table offset w, shard offset s
    int tail;        // part of a replicated tail (every rank holds it)
} ZeroPiece;

typedef struct {
    int stage;      // 0: nothing sharded, 1: optimizer state + master, 2: + gradients, 3: + weights
    int rank, world;  // the owners' view: world 1 at stage 0
    int nunit;      // L + 2
    ZeroUnit *u;
    size_t shard;   // floats in this rank's shard: Σ q + tail over the units
    int npiece;     // the shard as runs within single tensors, in table order (the optimizer walks these)
    ZeroPiece *p;
} ZeroPlan;

static void zero_add_run(ZeroPlan *z, const ParamTable *tab, size_t w, size_t s, size_t n, int tail, int *cap) {
    for (int t = 0; t < tab->n && n > 0; t++) {  // split [w, w + n) at tensor boundaries
        size_t lo = tab->e[t].offset, hi = lo + tab->e[t].rows * tab->e[t].cols;
        if (w >= hi || w + n <= lo) continue;
        size_t a = w > lo ? w : lo, b = w + n < hi ? w + n : hi;
        if (z->npiece == *cap) {
            ZeroPiece *p = (ZeroPiece *)mallocCheck(sizeof(ZeroPiece) * (size_t)(*cap *= 2));
            memcpy(p, z->p, sizeof(ZeroPiece) * (size_t)z->npiece);
            free(z->p), z->p = p;
        }
        ZeroPiece *p = &z->p[z->npiece++];
        p->tensor = t, p->w = a, p->s = s + (a - w), p->n = b - a, p->tail = tail;
    }
}

static ZeroPlan zero_plan(const ParamTable *tab, int L, int stage, int rank, int world) {
    if (stage < 0 || stage > 3) fail("--zero %d: the ZeRO stages are 0, 1, 2 and 3", stage);
    ZeroPlan z;
    memset(&z, 0, sizeof z);
    z.stage = stage;
    z.rank = stage == 0 ? 0 : rank, z.world = stage == 0 ? 1 : world;
    z.nunit = L + 2;
    z.u = (ZeroUnit *)callocCheck(sizeof(ZeroUnit) * (size_t)z.nunit);
    // where each unit starts: the first tensor of layer l opens unit 1 + l; a layer-less tensor after the layers
    // belongs to unit L + 1; an empty unit starts where the next one does
    size_t *start = (size_t *)mallocCheck(sizeof(size_t) * (size_t)(L + 3));
    for (int i = 0; i <= L + 1; i++) start[i] = SIZE_MAX;
    start[L + 2] = tab->total;
    int after = 0;  // past the first layer's tensors
    for (int t = 0; t < tab->n; t++) {
        const PEntry *e = &tab->e[t];
        after |= e->layer >= 0;
        int ui = e->layer >= 0 ? e->layer + 1 : after ? L + 1 : 0;
        if (start[ui] == SIZE_MAX) start[ui] = e->offset;
    }
    for (int i = L + 1; i >= 0; i--)
        if (start[i] == SIZE_MAX) start[i] = start[i + 1];
    int cap = 16;
    z.p = (ZeroPiece *)mallocCheck(sizeof(ZeroPiece) * (size_t)cap);
    for (int i = 0; i < z.nunit; i++) {
        ZeroUnit *u = &z.u[i];
        u->off = start[i];
        u->n = start[i + 1] - u->off;
        u->q = u->n / ((size_t)z.world * QBLOCK) * QBLOCK;
        u->tail = u->n - u->q * (size_t)z.world;
        u->at = z.shard;
        zero_add_run(&z, tab, u->off + (size_t)z.rank * u->q, z.shard, u->q, 0, &cap);
        zero_add_run(&z, tab, u->off + (size_t)z.world * u->q, z.shard + u->q, u->tail, 1, &cap);
        z.shard += u->q + u->tail;
    }
    free(start);
    return z;
}

static void zero_plan_free(ZeroPlan *z) {
    free(z->u), free(z->p);
    memset(z, 0, sizeof *z);
}

// what the partitioned table holds in all, every rank's parts and the tails (floats; blocks for zero_block_plan's)
static size_t zero_plan_span(const ZeroPlan *z) { return z->u[z->nunit - 1].off + z->u[z->nunit - 1].n; }

// The 8-bit blocks of partition z as a partition of its own (model.h adamw8_shard keeps one scale per block): unit i's
// ceil(n / QBLOCK) blocks are numbered on from the units before it (off: the unit's first, in every world), rank r
// owns its q / QBLOCK of them and every rank the ceil(tail / QBLOCK) of the tail; shard: this rank's blocks. Its
// pieces (tensor -1) say where the checkpoint's scale tensors put them.
static ZeroPlan zero_block_plan(const ZeroPlan *z) {
    ZeroPlan b = *z;
    b.u = (ZeroUnit *)callocCheck(sizeof(ZeroUnit) * (size_t)z->nunit);
    b.p = (ZeroPiece *)callocCheck(sizeof(ZeroPiece) * 2 * (size_t)z->nunit);
    b.shard = 0, b.npiece = 0;
    size_t off = 0;
    for (int i = 0; i < z->nunit; i++) {
        ZeroUnit *u = &b.u[i];
        u->off = off, u->n = (z->u[i].n + QBLOCK - 1) / QBLOCK, u->q = z->u[i].q / QBLOCK;
        u->tail = u->n - (size_t)z->world * u->q, u->at = b.shard;
        ZeroPiece own = {-1, off + (size_t)z->rank * u->q, b.shard, u->q, 0};
        ZeroPiece tail = {-1, off + (size_t)z->world * u->q, b.shard + u->q, u->tail, 1};
        if (own.n) b.p[b.npiece++] = own;
        if (tail.n) b.p[b.npiece++] = tail;
        b.shard += u->q + u->tail, off += u->n;
    }
    return b;
}

// the unit that holds layer l's parameters (-1: the embedding's, L: the final norm's)
static inline int zero_unit_of_layer(int l) { return l + 1; }

// --- the collectives of a step on host buffers (the CPU path; hip/ does the same on the device) --------------
// Gradients of unit i, summed over the data-parallel ranks and scaled by `scale` (1 / ranks: the average).
// Stage 0: all-reduced in place in the table-shaped g. Stage >= 1: this rank's part lands in its shard buffer gs
// (reduce-scatter of the q-blocks, all-reduce of the tail); g's unit is scratch afterwards.
static void zero_reduce_unit(const Comm *c, const ZeroPlan *z, int i, float *g, float *gs, float scale) {
    const ZeroUnit *u = &z->u[i];
    float *dst;
    if (z->stage == 0) {
        comm_allreduce(c, g + u->off, u->n, COMM_F32);
        dst = g + u->off;
    } else {
        comm_reduce_scatter(c, g + u->off, gs + u->at, u->q, COMM_F32);
        float *tail = g + u->off + (size_t)z->world * u->q;
        comm_allreduce(c, tail, u->tail, COMM_F32);
        memcpy(gs + u->at + u->q, tail, sizeof(float) * u->tail);
        dst = gs + u->at;
    }
    if (scale != 1.0f)
        for (size_t k = 0, n = z->stage == 0 ? u->n : u->q + u->tail; k < n; k++) dst[k] *= scale;
}

// Σ g² over the whole reduced gradient, the same on every rank: each rank sums what it owns (rank 0 the
// replicated tails too) and the sums are all-reduced. gs: the shard (stage >= 1) or the table (stage 0).
static double zero_sumsq(const Comm *c, const ZeroPlan *z, const float *gs) {
    double ss = 0;
    for (int i = 0; i < z->nunit; i++) {
        const ZeroUnit *u = &z->u[i];
        const float *p = gs + u->at;
        size_t n = u->q + (z->rank == 0 ? u->tail : 0);
        for (size_t k = 0; k < n; k++) ss += (double)p[k] * p[k];
    }
    return z->stage == 0 ? ss : comm_sum(c, ss);
}

// Weights of unit i after the update: every rank's q-block to every rank, in place in the table-shaped w (the
// tails were updated alike everywhere). Stage 0 updates everything everywhere: nothing to do.
static void zero_gather_unit(const Comm *c, const ZeroPlan *z, int i, float *w) {
    const ZeroUnit *u = &z->u[i];
    if (z->stage == 0 || u->q == 0) return;
    comm_allgather(c, w + u->off + (size_t)z->rank * u->q, w + u->off, u->q, COMM_F32);
}

// --- checkpoints from the shards -------------------------------------------------------------------------------
// A safetensors file is a list of tensors, each holding a run of the table's floats: a model file one tensor per
// table entry, a state file (AdamW's moments, the fp32 master) one tensor of the whole table each. A ZeroTensor
// says which run it holds and where this rank's values of it are.
typedef struct {
    const char *name;
    int ndim;
    int64_t shape[2];   // its floats: shape[0] (x shape[1]); they are the table's [lo, lo + shape product)
    size_t lo;
    void *data;         // this rank's values, indexed by table offset (shard 0: a whole-table buffer whose owned
    int shard;          // ranges are current) or by shard offset (shard 1: the shard layout of z)
    int dtype;          // 0 (ST_F32): floats, stored in the file's dtype; ST_I8 / ST_U8: bytes (8-bit codes) as they are
    const ZeroPlan *z;  // the partition its values follow (NULL: the file's; zero_block_plan's for per-block scales)
} ZeroTensor;

// element i of t's data (of the tensor's own type) and that type's bytes in the file (dtype: the file's for floats)
static inline size_t zero_tensor_esize(const ZeroTensor *t, int dtype) {
    return (size_t)st_dtype_size[t->dtype ? t->dtype : dtype];
}
static inline char *zero_tensor_at(const ZeroTensor *t, size_t i) { return (char *)t->data + i * (t->dtype ? 1 : 4); }

static size_t zero_tensor_n(const ZeroTensor *t) { return (size_t)t->shape[0] * (size_t)(t->ndim == 2 ? t->shape[1] : 1); }

// the table's tensors (model_save's names, shapes and order, `suffix` appended to each name) over data
static ZeroTensor *zero_table_tensors(const ParamTable *tab, const float *data, int shard, const char *suffix,
                                      char (*names)[160]) {
    ZeroTensor *t = (ZeroTensor *)callocCheck(sizeof(ZeroTensor) * (size_t)tab->n);
    for (int i = 0; i < tab->n; i++) {
        const PEntry *e = &tab->e[i];
        snprintf(names[i], 160, "%s%s", e->name, suffix ? suffix : "");
        t[i].name = names[i], t[i].ndim = e->cols == 1 && e->kind != T_EMBED ? 1 : 2;
        t[i].shape[0] = (int64_t)e->rows, t[i].shape[1] = (int64_t)e->cols;
        if (t[i].ndim == 1) t[i].shape[1] = 1;
        t[i].lo = e->offset, t[i].data = (void *)data, t[i].shard = shard;
    }
    return t;
}

// piece p of z within tensor t: the floats [*a, *b) of the table (none: *a == *b)
static void zero_overlap(const ZeroPiece *p, const ZeroTensor *t, size_t *a, size_t *b) {
    size_t hi = t->lo + zero_tensor_n(t);
    *a = p->w > t->lo ? p->w : t->lo;
    *b = p->w + p->n < hi ? p->w + p->n : hi;
    if (*b < *a) *b = *a;
}

// One safetensors file (dtype ST_F32 or ST_BF16 for every float tensor, bytes as they are; meta: the header's
// __metadata__, consumed, or NULL) written by every rank at once: rank 0 writes the header and sizes the file under a
// temporary name, each rank writes the bytes of what it owns (rank 0 also the replicated tails; at stage 0 rank 0
// everything) at their offsets, and rank 0 renames it into place once every rank has written. No rank holds more than
// its shard. One machine, or a file system every rank sees.
static void zero_write_tensors(const Comm *c, const ZeroPlan *z, const char *path, int dtype, const ZeroTensor *t,
                               int nt, cJSON *meta) {
    size_t *at = (size_t *)mallocCheck(sizeof(size_t) * (size_t)nt);
    char tmp[4200] = {0};
    uint64_t hdr[2] = {0, 0};  // the header's length; 1: rank 0 could not size the file (no rank writes)
    int bad = 0, err = 0;
    AtomicFile a = {0};
    if (c->rank == 0) {
        STWriter w = {0};
        for (int i = 0; i < nt; i++)
            stw_add(&w, t[i].name, t[i].dtype ? t[i].dtype : dtype, t[i].ndim, t[i].shape, NULL);
        w.meta = meta;
        size_t total = 0;
        a = stw_open(&w, path, &hdr[0]);
        for (int i = 0; i < w.n; i++) total += w.e[i].nbytes, free(w.e[i].name);
        free(w.e);
        if (fflush(a.f) != 0 || ftruncate(fileno(a.f), (off_t)(8 + hdr[0] + total)) != 0) bad = 1, err = errno, hdr[1] = 1;
        snprintf(tmp, sizeof tmp, "%s", a.tmp);
    } else cJSON_Delete(meta);
    comm_bcast(c, tmp, sizeof tmp, 0);
    comm_bcast(c, hdr, sizeof hdr, 0);
    size_t o = 8 + hdr[0];
    for (int i = 0; i < nt; i++) at[i] = o, o += zero_tensor_n(&t[i]) * zero_tensor_esize(&t[i], dtype);
    int fd = hdr[1] ? -1 : open(tmp, O_WRONLY);
    bad |= !hdr[1] && fd < 0;
    uint16_t buf16[4096];
    for (int i = 0; i < nt && !bad; i++) {
        const ZeroPlan *zi = t[i].z ? t[i].z : z;
        size_t esize = zero_tensor_esize(&t[i], dtype);
        for (int k = 0; k < zi->npiece && !bad; k++) {
            const ZeroPiece *p = &zi->p[k];
            size_t lo, hi;
            zero_overlap(p, &t[i], &lo, &hi);
            if (lo == hi || ((zi->stage == 0 || p->tail) && c->rank != 0)) continue;
            const char *src = zero_tensor_at(&t[i], t[i].shard ? p->s + (lo - p->w) : lo);
            off_t pos = (off_t)(at[i] + (lo - t[i].lo) * esize);
            for (size_t j = 0, n = hi - lo; j < n && !bad; j += 4096) {
                size_t m = n - j < 4096 ? n - j : 4096;
                const void *out = src + j * esize;
                if (!t[i].dtype && dtype == ST_BF16) {
                    for (size_t q = 0; q < m; q++) buf16[q] = f32_to_bf16(((const float *)src)[j + q]);
                    out = buf16;
                }
                bad = pwrite(fd, out, m * esize, pos + (off_t)(j * esize)) != (ssize_t)(m * esize);
            }
        }
    }
    if (bad && !err) err = errno;
    if (fd >= 0) bad |= fsync(fd) != 0, bad |= close(fd) != 0;
    int64_t nbad = bad;
    comm_allreduce(c, &nbad, 1, COMM_I64);
    free(at);
    if (c->rank == 0 && nbad) fclose(a.f), unlink(tmp);
    if (nbad) fail("writing %s failed on %lld rank(s)%s%s; nothing was written under that name (is the disk full?)",
                   path, (long long)nbad, err ? ": " : "", err ? strerror(err) : "");
    if (c->rank == 0) atomic_commit(&a);
    comm_barrier(c);  // the file is in place for every rank
}

// The table's tensors as one file (model_save's layout): data in table layout (shard_layout 0: the weights) or
// shard layout (1: moments, gradients)
static void zero_write_st(const Comm *c, const ZeroPlan *z, const ParamTable *tab, const char *path, int dtype,
                          const float *data, int shard_layout, const char *suffix) {
    char (*names)[160] = (char (*)[160])mallocCheck(160 * (size_t)tab->n);
    ZeroTensor *t = zero_table_tensors(tab, data, shard_layout, suffix, names);
    zero_write_tensors(c, z, path, dtype, t, tab->n, NULL);
    free(t), free(names);
}

// Each rank reads what it owns of tensors t (F32, or the bytes of an 8-bit one: every piece of its shard, tails
// included) from path, the file any number of ranks wrote: each tensor checked for its dtype and size, each fp32
// value read for finiteness.
// No collective: a checkpoint of one world resumes in another. hint: what a missing tensor means.
static void zero_read_tensors(const ZeroPlan *z, const char *path, const ZeroTensor *t, int nt, const char *hint) {
    SFile *f = state_file_open(path);
    for (int i = 0; i < nt; i++) {
        const ZeroPlan *zi = t[i].z ? t[i].z : z;
        size_t es = zero_tensor_esize(&t[i], ST_F32);
        const STensor *s = state_tensor_find(f, path, t[i].name, t[i].dtype, zero_tensor_n(&t[i]), hint);
        for (int k = 0; k < zi->npiece; k++) {
            const ZeroPiece *p = &zi->p[k];
            size_t lo, hi;
            zero_overlap(p, &t[i], &lo, &hi);
            char *dst = zero_tensor_at(&t[i], t[i].shard ? p->s + (lo - p->w) : lo);
            memcpy(dst, (const char *)s->data + es * (lo - t[i].lo), es * (hi - lo));
            if (!t[i].dtype) state_floats_finite(path, t[i].name, (const float *)dst, hi - lo, lo - t[i].lo);
        }
    }
    st_close(f);
}
#endif
