// hip/gpu.h — the C interface to the GPU path (implemented in hip/gpu.hip, kernels in hip/*.h).
// A GpuModel holds one Gemma on one GPU: fp32 master weights, their bf16 copy for compute, fp32
// gradients, AdamW moments, the activations of one B x T batch, and the pruning masks' hooks.
// Layout is model.h's parameter table: the same offsets on host and device, so weights and
// gradients move with one copy each.
//
// train.c and prune.c do not call this directly: the end of this file implements model.h section 7's
// step on the GPU (gpu_step_open), and model.h includes it in the builds of `make gpu` (USE_GPU).
// The raw interface, as hip/bench.c and hip/dev/check_step.c use it:
//   GpuSpec *s = gpu_spec_from_model(&m);     // model.h's Model (or gpu_spec_from_config)
//   s->recompute = 0;                           // or N: the first N layers recompute gate|up (less memory)
//   s->checkpoint = 0;                          // or N: the first N layers keep only their input (far less)
//   GpuModel *g = gpu_create(s, B, T);          // allocates everything once
//   gpu_upload(g, m.w);
//   each step: gpu_zero_grad(g); loss = gpu_forward(g, tok, tgt, 1); gpu_backward(g);
//              norm = sqrt(gpu_grad_sumsq(g)); gpu_adamw(g, lr, b1, b2, eps, wd, step, clip_coef(norm, 1.0));
//   pruning:   gpu_set_masks(g, zl, zh, zf, zd) before the forward; gpu_get_mask_grads(g, dzl, dzh, dzf, dzd) after
//              the backward (the hooks and their gradients mean what they mean in model.h's Model).
//   gpu_download(g, m.w); gpu_free(g); gpu_spec_free(s);
// Every call is synchronous from the caller's side where it returns data (loss, norms, downloads).
#pragma once
#include <stddef.h>
#include <stdint.h>

#define GPU_MAX_LAYERS 512
enum { GPU_ADAMW = 0, GPU_ADAMW8 = 1 };  // GpuSpec.optimizer

typedef struct {
    int D, K, hasv, full;   // head size, kv heads, has v_proj (Gemma 4 K=V layers do not), full attention
    size_t in_norm, wq, q_norm, k_norm, wo, post_attn, pre_ffn, wgate, wdown, post_ffn, layer_scalar;  // offsets (floats)
} GpuLayerSpec;             // wq: q, k, v rows adjacent; wgate: gate, up rows adjacent (as in model.h)

typedef struct {
    int arch;               // 3 = Gemma 3, 4 = Gemma 4
    int V, d, L, H, F, W;   // vocab, hidden, layers, query heads, FFN size, sliding window
    float eps, attn_scale, final_softcap, attn_softcap, embed_scale, norm_off;
    GpuLayerSpec layer[GPU_MAX_LAYERS];
    float *inv_freq;        // [L][inv_stride] RoPE inverse frequencies as model.h's rope_inv_freq gives them
    int inv_stride;
    size_t total;           // parameters (floats)
    size_t embed, final_norm;
    int ntensor;            // the parameter table, for the optimizer: tensor i is [off[i], off[i+1])
    size_t *tensor_off;     // [ntensor + 1]
    unsigned char *tensor_flag;  // bit 0 weight decay, bit 1 frozen (not trained), bit 2 norm weight,
                                 // bit 3 a product's weight matrix (q|k|v, o, gate|up, down; not the token table)
    int recompute;          // layers (from the first) that keep no gate|up and recompute it in the backward:
                            // N·2F bf16 less memory each, for one more N x 2F x d product (default 0)
    // What the parameter block keeps (hip/plan.h; all 0 by default: 18 bytes a parameter):
    int optimizer;          // GPU_ADAMW: m, v in fp32 (8 B a parameter); GPU_ADAMW8: model.h's 8-bit blocks (~2 B)
    int grad_bf16;          // 1: the weight matrices' gradients in bf16 (2 B a parameter less; one more rounding)
    int bf16_only;          // 1: the weight matrices without an fp32 master (4 B a parameter less): the bf16 copy is
                            // the weight, updated with stochastic rounding (norms and the embedding keep theirs)
    uint64_t seed;          // the stochastic rounding's random stream
    int checkpoint;         // layers (from the first) that keep only their input (N·d fp32) and run their forward
                            // again in the backward: about a third more products for those layers (default 0)
    int forward_only;       // 1: evaluation and statistics only: the matrices in bf16 alone, no gradients or optimizer
                            // state, every layer's buffers shared (one layer's worth); gpu_backward and the update refuse
    // ZeRO 1 (data parallel, hip/comm.h's partition): this rank's shard of the table, in floats (0: nothing sharded).
    // The fp32 master and AdamW's moments exist for the shard only; the bf16 copy and the fp32 gradients stay whole,
    // and so does the fp32 of the tensors kernels read in fp32 (norm weights, layer_scalar). gpu_set_shard says which
    // pieces of the table the shard holds.
    size_t shard;
    int shard_units;        // the partition's units (L + 2): bounds its pieces and ranges for the plan
    // ZeRO 2 (shard_grads, with shard): the gradients sharded too. The device keeps the fp32 gradient of the shard
    // (accumulated over the micro-batches) and, for the backward to write into, the embedding's and the final norm's
    // units whole and two buckets of one layer's unit each (layer l in bucket l % 2, hip/plan.h); as the backward
    // leaves a unit its gradient is averaged over the ranks on a second stream (gpu_set_collectives) while the next
    // layer's backward runs, and this rank's part is added into the shard's gradient. unit: [shard_units][4] rows
    // of (table offset, floats, q, shard offset) of the partition (hip/comm.h ZeroUnit); rank, world: this rank's.
    int shard_grads, rank, world;
    size_t *unit;
    // ZeRO 3 (shard_weights, with shard_grads): the weights sharded too. The bf16 copy exists for the shard (the
    // optimizer writes it) and, for the products, the embedding's and final norm's units whole (gathered after each
    // update) and two buckets: before a layer's forward and again before its backward its unit is all-gathered into
    // bucket l % 2 on the second stream, the next layer's prefetched while this one computes (GpuGather)
    int shard_weights;
    // 8-bit AdamW's blocks (model.h adamw8_shard, hip/comm.h zero_block_plan): where each unit of the partition starts
    // in the shard (the table's offsets at ZeRO 0) [q8_units + 1, the last the end]; each unit's blocks of 256 run
    // from its start. gpu_spec_from_config sets them for ZeRO 0, gpu_spec_zero for a shard.
    int q8_units;
    size_t *q8_at;
} GpuSpec;

typedef struct GpuModel GpuModel;

#ifdef __cplusplus
extern "C" {
#endif
GpuModel *gpu_create(const GpuSpec *s, int B, int T);
void gpu_free(GpuModel *g);
const char *gpu_device_name(void);
void gpu_upload(GpuModel *g, const float *w);      // host fp32 weights (table layout) -> master + bf16 copy
void gpu_download(GpuModel *g, float *w);          // master weights -> host
void gpu_download_grads(GpuModel *g, float *gw);   // gradients -> host
void gpu_init_random(GpuModel *g, uint64_t seed, float std);  // model.h's init, drawn on the device
void gpu_zero_grad(GpuModel *g);                   // weight and mask gradients (the products' at their next backward)
// Mean next-token cross-entropy over targets >= 0 (tok, tgt: host [B*T]). With want_grad the head's
// gradient is made on the way (like model.h) and gpu_backward may follow, once: it takes the residual stream
// back layer by layer in place (the forward keeps none per layer), so each backward needs its own forward.
float gpu_forward(GpuModel *g, const int *tok, const int *tgt, int want_grad);
void gpu_backward(GpuModel *g);                    // gradients ACCUMULATE (as in model.h)
double gpu_grad_sumsq(GpuModel *g);
// the gradients as the device keeps them (hip/plan.h), for collectives: fp32 [n32] and, with grad_bf16, the
// matrices' bf16 [n16]
void gpu_grad_buffers(GpuModel *g, float **g32, size_t *n32, void **g16, size_t *n16);                // Σ g² over all weight gradients (frozen ones stay 0)
// GpuSpec.optimizer on every non-frozen tensor: AdamW (model.h adamw_update) or 8-bit AdamW (model.h adamw8_shard);
// wd only where bit 0 is set; g scaled by gscale first. The states are made, zero, at the first call.
void gpu_adamw(GpuModel *g, float lr, float b1, float b2, float eps, float wd, int step, float gscale);
// floats [off, off + n) of the weights (to the device: their bf16 copy too), the gradients or AdamW's moments, in the
// table's layout, to (to_device = 1) or from the host, wherever the device keeps them (hip/plan.h: fp32 or bf16);
// moments the device has not made yet (before its first update) read 0. A sharded model's moments (ZeRO) move as
// its whole shard: the host holds GpuSpec.shard floats in the shard layout (model.h optimizer_shard)
enum { GPU_WEIGHTS, GPU_GRADS, GPU_ADAM_M, GPU_ADAM_V };
void gpu_copy(GpuModel *g, int what, size_t off, size_t n, float *host, int to_device);
// 8-bit AdamW's whole state, both ways, in model.h's layout (the Optimizer's arrays): codes qm, qv [total] at the
// table's offsets (ZeRO >= 1: [shard] at the shard's), the blocks' max |m| and max v, sm, sv, in GpuSpec.q8_at's
// blocks; before the first update the device has none (zeros come back)
void gpu_copy_adamw8(GpuModel *g, int8_t *qm, uint8_t *qv, float *sm, float *sv, int to_device);
// ZeRO 1 (GpuSpec.shard > 0): the shard's pieces, npiece rows of (table offset, shard offset, floats, tail) in table
// order (hip/comm.h ZeroPlan: a tail is replicated, every rank updates it, rank 0 counts it). After it: gpu_upload and
// gpu_copy take the whole table (the shard's part of the master is what moves; the moments are the shard),
// gpu_grad_sumsq sums what this rank owns, gpu_adamw updates the shard and leaves the caller two collectives to run
// (gpu_shard_buffers): the sum over the ranks of the fp32 norm weights (each rank wrote what it owns, zeros
// elsewhere) and the all-gather of each unit's bf16 copy
void gpu_set_shard(GpuModel *g, int rank, int npiece, const size_t *piece);
void gpu_shard_buffers(GpuModel *g, float **w32, size_t *n32, void **wb);
// ZeRO 2: the collectives of unit i's gradient as the backward leaves it (grad: the unit's floats in its bucket,
// the table's order): the q-blocks reduce-scattered in place (rank r's average on block r) and the tail all-reduced
// (averaged), enqueued on `stream`; gpu_backward then adds this rank's part into the shard's gradient. After
// gpu_set_collectives gpu_grad_sumsq, gpu_adamw and gpu_copy(GPU_GRADS) work on that shard's gradient.
// ZeRO 3: the all-gather of unit i's bf16 weights: this rank's q of them (shard, bf16) to block r of the unit
// (unit_bf16, the table's order; out of place), enqueued on `stream`; gpu.hip copies the tail from the shard.
typedef void (*GpuGradReduce)(void *ctx, int unit, float *grad, void *stream);
typedef void (*GpuGather)(void *ctx, int unit, const void *shard, void *unit_bf16, void *stream);
void gpu_set_collectives(GpuModel *g, GpuGradReduce reduce, GpuGather gather, void *ctx);
// Two ranks in one process (hip/dev/check_step: a world of 2 on one GPU, its collectives done by the check): any
// bytes on either side (stream NULL: before returning; else queued on it), the shard's bf16 (ZeRO 3, else NULL),
// and ZeRO 3's embedding and final-norm units gathered again once every rank's shard is current
void gpu_memcpy(void *dst, const void *src, size_t bytes, void *stream);
void *gpu_shard_bf16(GpuModel *g);
void gpu_shard_regather(GpuModel *g);
// Masks (host arrays; NULL turns that hook off): zl [L], zh [L*H], zf [L*F], zd [d]
void gpu_set_masks(GpuModel *g, const float *zl, const float *zh, const float *zf, const float *zd);
void gpu_get_mask_grads(GpuModel *g, float *dzl, float *dzh, float *dzf, float *dzd);  // NULL: skip
// Hard-concrete sample on the device (prune.c masks_from_u): host la, u [n] -> z, dz/dla [n]
void gpu_hard_concrete(GpuModel *g, const float *la, const float *u, float *z, float *dzdla, size_t n);
// attention kernels: 2 (default) = the backward as batched BLAS where a layer has one kv head (attention.h:
// sliding band, full layers in query groups) and tensor cores elsewhere, 1 = tensor cores where they apply,
// 0 = the portable kernels everywhere
void gpu_set_attention(GpuModel *g, int mode);
// Forward statistics (./profile stats --device gpu): after gpu_stats_on every forward adds, over the tokens of
// its first `rows` sequences, per layer l what profile.c's acc_batch adds: res [L][3][4] (the whole layer, its
// attention branch, its MLP branch: sums of ||x_in||, ||x_out||, 1 - cos, ||x_out - x_in|| / ||x_in||), the
// attention entropy and entropy / ln(keys seen) per head over rows t >= 1 ([L·H] each), the FFN's Σ|h| and count
// of |h| <= tau · the token's mean |h| per channel ([L·F] each). gpu_stats_get fetches the sums and zeroes them.
void gpu_stats_on(GpuModel *g, float tau, int rows);
void gpu_stats_get(GpuModel *g, double *res, double *ent, double *entn, double *fabs_, double *fzero);
size_t gpu_bytes(const GpuModel *g);               // device memory this model allocated
void gpu_memory(size_t *used, size_t *total);      // the device's memory in use (all processes) and its size
void gpu_sync(void);
void gpu_profile_print(GpuModel *g);               // with GS_PROFILE=1: time per kind of work
#ifdef __cplusplus
}
#endif

// ------------------------------------------------------------------------------------------------
// From model.h's Model / Config (only when model.h was included first: it defines MAX_LAYERS)
// ------------------------------------------------------------------------------------------------
#if defined(MAX_LAYERS) && !defined(__cplusplus)
// NULL when the GPU runs ZeRO stage `zero` with these storage options (optimizer: OPT_*, -1 not known yet), else why
// not: stage 0 with any, stages 1-3 with AdamW (fp32 or 8-bit states), fp32 master and fp32 gradients
// (gpu_step_refuses, and ./profile memory --device gpu)
static const char *gpu_zero_refuses(int zero, int grad_bf16, int bf16_only, int optimizer) {
    static char why[200];
    if (zero > 0 && (grad_bf16 || bf16_only || optimizer == OPT_MUON))
        snprintf(why, sizeof why, "--zero %d on the GPU shards AdamW's states (adamw, adamw8) and the fp32 master over "
                 "fp32 gradients: use it without --grads bf16 and --master none", zero);
    else return NULL;
    return why;
}

// NULL when the GPU kernels take this shape, else why not (gpu_create stops on the same conditions)
static const char *gpu_unsupported(const Config *c) {
    if (has_e2b_extras(c)) return "the GPU path does not run Gemma 4 E2B/E4B's per-layer inputs or KV-shared layers";
    if (c->F % 2) return "the GPU path needs an even intermediate_size";
    for (int l = 0; l < c->L; l++)
        if (layer_D(c, l) > 512) return "head_dim is larger than the GPU kernels support (512)";
    return NULL;
}

#ifdef GS_COMM_ZERO
// the ZeRO stage of partition z (hip/comm.h) in the spec: the 8-bit blocks' units, stage 1 the shard, stage 2 the
// units too
static void gpu_spec_zero(GpuSpec *s, const ZeroPlan *z) {
    free(s->q8_at);
    s->q8_units = z->nunit;
    s->q8_at = (size_t *)mallocCheck(sizeof(size_t) * (size_t)(z->nunit + 1));
    for (int i = 0; i < z->nunit; i++) s->q8_at[i] = z->u[i].at;
    s->q8_at[z->nunit] = z->shard;
    if (z->stage == 0) return;
    s->shard = z->shard, s->shard_units = z->nunit;
    if (z->stage < 2) return;
    s->shard_grads = 1, s->shard_weights = z->stage >= 3, s->rank = z->rank, s->world = z->world;
    s->unit = (size_t *)mallocCheck(sizeof(size_t) * 4 * (size_t)z->nunit);
    for (int i = 0; i < z->nunit; i++) {
        const ZeroUnit *u = &z->u[i];
        size_t *r = s->unit + 4 * (size_t)i;
        r[0] = u->off, r[1] = u->n, r[2] = u->q, r[3] = u->at;
    }
}
#endif

static GpuSpec *gpu_spec_from_config(const Config *c, const ParamTable *tab, float embed_scale) {
    if (c->L > GPU_MAX_LAYERS) fail("the GPU path supports at most %d layers (the model has %d)", GPU_MAX_LAYERS, c->L);
    GpuSpec *s = (GpuSpec *)callocCheck(sizeof(GpuSpec));
    s->arch = c->arch, s->V = c->V, s->d = c->d, s->L = c->L, s->H = c->H, s->F = c->F, s->W = c->W;
    s->eps = (float)c->eps, s->final_softcap = (float)c->final_softcap, s->attn_softcap = (float)c->attn_softcap;
    s->attn_scale = c->arch == 3 ? (float)(1.0 / sqrt(c->qscalar)) : 1.0f;
    s->embed_scale = embed_scale, s->norm_off = norm_offset(c);
    int maxD = 0;
    for (int l = 0; l < c->L; l++) maxD = layer_D(c, l) > maxD ? layer_D(c, l) : maxD;
    s->inv_stride = maxD / 2;
    s->inv_freq = (float *)callocCheck(sizeof(float) * (size_t)c->L * s->inv_stride);
    double inv[1024];
    for (int l = 0; l < c->L; l++) {
        GpuLayerSpec *ls = &s->layer[l];
        ls->D = layer_D(c, l), ls->K = layer_K(c, l), ls->hasv = layer_has_v(c, l), ls->full = c->full[l];
        rope_inv_freq(c, l, inv);
        for (int i = 0; i < ls->D / 2; i++) s->inv_freq[(size_t)l * s->inv_stride + i] = (float)inv[i];
    }
    s->total = tab->total;
    s->ntensor = tab->n;
    s->tensor_off = (size_t *)callocCheck(sizeof(size_t) * (size_t)(tab->n + 1));
    s->tensor_flag = (unsigned char *)callocCheck((size_t)tab->n);
    for (int i = 0; i < tab->n; i++) {
        const PEntry *e = &tab->e[i];
        s->tensor_off[i] = e->offset;
        // weight decay: model.h's param_decays, as train.c's optimizers
        s->tensor_flag[i] = (unsigned char)((param_decays(e) ? 1 : 0) | (e->frozen ? 2 : 0) | (e->is_norm ? 4 : 0) |
                                            (e->cols > 1 && !is_token_table(e) ? 8 : 0));
        if (e->kind == T_EMBED) { s->embed = e->offset; continue; }
        if (e->kind == T_FINAL_NORM) { s->final_norm = e->offset; continue; }
        GpuLayerSpec *ls = &s->layer[e->layer];
        switch (e->kind) {
        case T_IN_NORM: ls->in_norm = e->offset; break;
        case T_WQ: ls->wq = e->offset; break;
        case T_Q_NORM: ls->q_norm = e->offset; break;
        case T_K_NORM: ls->k_norm = e->offset; break;
        case T_WO: ls->wo = e->offset; break;
        case T_POST_ATTN_NORM: ls->post_attn = e->offset; break;
        case T_PRE_FFN_NORM: ls->pre_ffn = e->offset; break;
        case T_WGATE: ls->wgate = e->offset; break;
        case T_WDOWN: ls->wdown = e->offset; break;
        case T_POST_FFN_NORM: ls->post_ffn = e->offset; break;
        case T_LAYER_SCALAR: ls->layer_scalar = e->offset; break;
        default: break;  // wk, wv, wup: adjacent to wq / wgate
        }
    }
    s->tensor_off[tab->n] = tab->total;
#ifdef GS_COMM_ZERO
    ZeroPlan z = zero_plan(tab, c->L, 0, 0, 1);  // 8-bit AdamW's blocks at ZeRO 0: each unit's from its first element
    gpu_spec_zero(s, &z);
    zero_plan_free(&z);
#endif
    return s;
}
static GpuSpec *gpu_spec_from_model(const Model *m) { return gpu_spec_from_config(&m->c, &m->tab, m->embed_scale); }
static void gpu_spec_free(GpuSpec *s) {
    if (!s) return;
    free(s->inv_freq), free(s->tensor_off), free(s->tensor_flag), free(s->unit), free(s->q8_at), free(s);
}


#endif

// --- model.h section 7's step on one GPU (train.c and prune.c --device gpu) ----------------------
// (builds linked with hip/gpu.hip only: model.h includes this file for them; ./profile includes it for the spec)
#if defined(MAX_LAYERS) && !defined(__cplusplus) && defined(USE_GPU)
// The host keeps its Model (config, table, the fp32 weights checkpoints read) and Optimizer (the state
// checkpoints read); the GPU holds the working copies, which step_get / step_put move tensor by tensor.
// AdamW and 8-bit AdamW run here, in the CPU's state format (the table's offsets; the same 8-bit blocks), so a
// checkpoint resumes on either device; StepOpts' storage options pick what the parameter block keeps (hip/plan.h).
typedef struct {
    GpuModel *g;
    GpuSpec *s;
    int *tok, *tgt;  // [B*T] an evaluation batch of fewer than B rows, padded
} GpuStep;

// the rank's pieces of z to a model made from a spec gpu_spec_zero set: (table offset, shard offset, floats, tail)
static void gpu_set_pieces(GpuModel *g, const ZeroPlan *z) {
    size_t *pc = (size_t *)mallocCheck(sizeof(size_t) * 4 * (size_t)(z->npiece + 1));
    for (int k = 0; k < z->npiece; k++) {
        const ZeroPiece *q = &z->p[k];
        pc[4 * k] = q->w, pc[4 * k + 1] = q->s, pc[4 * k + 2] = q->n, pc[4 * k + 3] = (size_t)q->tail;
    }
    gpu_set_shard(g, z->rank, z->npiece, pc);
    free(pc);
}

static GpuModel *gpu_of(Step *S) { return ((GpuStep *)S->dev)->g; }

static const char *gpu_step_refuses(const StepOpts *o, const Config *c, int optimizer) {
    static char why[512];
    const char *z;
    const char *u = c ? gpu_unsupported(c) : NULL;
    if (optimizer >= 0 && optimizer != OPT_ADAMW && optimizer != OPT_ADAMW8)
        snprintf(why, sizeof why, "--device gpu trains with AdamW only (adamw or adamw8; got --optimizer %s); use "
                 "--device cpu for %s", opt_names[optimizer], opt_names[optimizer]);
    else if (u) snprintf(why, sizeof why, "--device gpu: %s; use --device cpu", u);
    else if (c && (o->recompute < 0 || o->recompute > c->L))
        snprintf(why, sizeof why, "--gpu-recompute %d: expected 0 to %d (the model's layers)", o->recompute, c->L);
    else if (c && (o->checkpoint < 0 || o->checkpoint > c->L))
        snprintf(why, sizeof why, "--gpu-checkpoint %d: expected 0 to %d (the model's layers)", o->checkpoint, c->L);
    else if ((z = gpu_zero_refuses(o->zero, o->grad_bf16, o->bf16_only, optimizer)))
        snprintf(why, sizeof why, "--device gpu: %s", z);
    else return NULL;
    return why;
}

static void gpu_step_masks(Step *S, const float *zl, const float *zh, const float *zf, const float *zd) {
    gpu_set_masks(gpu_of(S), zl, zh, zf, zd);
}
static void gpu_step_zero_grad(Step *S) { gpu_zero_grad(gpu_of(S)); }
static float gpu_step_forward(Step *S, const int *tok, const int *tgt, int want_grad) {
    return gpu_forward(gpu_of(S), tok, tgt, want_grad);
}
static void gpu_step_backward(Step *S) { gpu_backward(gpu_of(S)); }
// Data parallel: the gradients averaged over the ranks by NCCL all-reduces in place on the step's (default) stream
// (fp32, and the matrices' bf16 ones with --grads bf16, in one group), the global batch's loss returned (frozen
// tensors get no gradient, so nothing to clear)
// ZeRO 1: each unit's gradient reduce-scattered in place (rank r's average lands on the part it owns, at its table
// offsets) and its replicated tail all-reduced, the units from the last layer down in one group. ZeRO 2: the
// backward did that unit by unit (gpu_unit_reduce below), so only the loss is left.
static double gpu_step_reduce(Step *S, double loss) {
    if (!S->dp) return loss;
    if (S->z.stage >= 2) return comm_sum(S->comm, loss) / S->comm->world;
    float *g32;
    void *g16;
    size_t n32, n16;
    GpuComm *c = S->comm->gpu;
    const ZeroPlan *z = &S->z;
    gpu_grad_buffers(gpu_of(S), &g32, &n32, &g16, &n16);
    gpu_comm_group(c, 1);
    if (z->stage == 0) {
        gpu_comm_allreduce(c, g32, n32, COMM_F32, COMM_AVG, NULL);
        if (n16) gpu_comm_allreduce(c, g16, n16, COMM_BF16, COMM_AVG, NULL);
    } else
        for (int i = z->nunit - 1; i >= 0; i--) {
            const ZeroUnit *u = &z->u[i];
            float *g = g32 + u->off;
            if (u->q) gpu_comm_reduce_scatter(c, g, g + (size_t)z->rank * u->q, u->q, COMM_F32, COMM_AVG, NULL);
            if (u->tail) gpu_comm_allreduce(c, g + (size_t)z->world * u->q, u->tail, COMM_F32, COMM_AVG, NULL);
        }
    gpu_comm_group(c, 0);
    return comm_sum(S->comm, loss) / S->comm->world;
}
// ZeRO 2 (GpuGradReduce): unit i's gradient as the backward leaves it, averaged over the ranks on the backward's
// second stream, in place: rank r's q-block lands where it was, the tail everywhere
static void gpu_unit_reduce(void *ctx, int i, float *grad, void *stream) {
    Step *S = (Step *)ctx;
    const ZeroPlan *z = &S->z;
    const ZeroUnit *u = &z->u[i];
    GpuComm *c = S->comm->gpu;
    gpu_comm_group(c, 1);
    if (u->q) gpu_comm_reduce_scatter(c, grad, grad + (size_t)z->rank * u->q, u->q, COMM_F32, COMM_AVG, stream);
    if (u->tail) gpu_comm_allreduce(c, grad + (size_t)z->world * u->q, u->tail, COMM_F32, COMM_AVG, stream);
    gpu_comm_group(c, 0);
}
// ZeRO 3 (GpuGather): unit i's bf16 weights from every rank's shard, before a layer's forward or backward
static void gpu_unit_gather(void *ctx, int i, const void *shard, void *unit_bf16, void *stream) {
    Step *S = (Step *)ctx;
    const ZeroUnit *u = &S->z.u[i];
    if (u->q) gpu_comm_allgather(S->comm->gpu, shard, unit_bf16, u->q, COMM_BF16, stream);
}
static void gpu_step_mask_grads(Step *S, float *dzl, float *dzh, float *dzf, float *dzd) {
    gpu_get_mask_grads(gpu_of(S), dzl, dzh, dzf, dzd);
}
// ZeRO 1-3: each rank's sum over what it owns (rank 0 the tails too), summed over the ranks
static double gpu_step_grad_sumsq(Step *S) {
    double ss = gpu_grad_sumsq(gpu_of(S));
    return S->dp && S->z.stage > 0 ? comm_sum(S->comm, ss) : ss;
}

// ZeRO 1 and 2, after the shard's master changed (an update, an upload): the norm weights' fp32 summed over the ranks
// (each wrote what it owns, zeros elsewhere) and each unit's bf16 copy all-gathered in place, in one group. ZeRO 3:
// the norm weights' sum only (the embedding's and the final norm's units were gathered; the layers' are when used)
static void gpu_step_share(Step *S) {
    const ZeroPlan *z = &S->z;
    GpuComm *c = S->comm->gpu;
    float *w32;
    size_t n32;
    void *wb;
    gpu_shard_buffers(gpu_of(S), &w32, &n32, &wb);
    gpu_comm_group(c, 1);
    if (n32) gpu_comm_allreduce(c, w32, n32, COMM_F32, COMM_SUM, NULL);
    for (int i = 0; i < z->nunit && z->stage < 3; i++) {
        const ZeroUnit *u = &z->u[i];
        uint16_t *b = (uint16_t *)wb + u->off;  // bf16
        if (u->q) gpu_comm_allgather(c, b + (size_t)z->rank * u->q, b, u->q, COMM_BF16, NULL);
    }
    gpu_comm_group(c, 0);
}

static void gpu_step_update(Step *S, float lr, float wd, float gscale, int t) {
    Optimizer *o = S->opt;
    if (!o) fail("internal: step_update on a step opened for evaluation only");
    gpu_adamw(gpu_of(S), lr, o->b1, o->b2, o->eps, wd, t, gscale);
    o->t = t;
    if (S->dp && S->z.stage > 0) gpu_step_share(S);
}

// rows <= B windows of T tokens, the rest padded with ignored targets
static float gpu_step_eval(Step *S, const int *tok, const int *tgt, int rows) {
    GpuStep *G = (GpuStep *)S->dev;
    if (rows == S->B) return gpu_forward(G->g, tok, tgt, 0);
    size_t n = (size_t)rows * S->T, all = (size_t)S->B * S->T;
    memcpy(G->tok, tok, sizeof(int) * n), memcpy(G->tgt, tgt, sizeof(int) * n);
    for (size_t i = n; i < all; i++) G->tok[i] = 0, G->tgt[i] = -1;
    return gpu_forward(G->g, G->tok, G->tgt, 0);
}

// ZeRO 1-3: the whole table moves (i is -1). The weights: each rank sends up what it owns (the host may hold no
// more: model_load_shard) and the device gathers the rest; from the device each rank brings what it owns, and the
// units are gathered on the host (STEP_OWNED: not, for a checkpoint every rank writes its part of); AdamW's
// states: the host Optimizer's shard (optimizer_shard) <-> the device's, as they are.
static void gpu_step_copy(Step *S, int what, int i, int to_device) {
    const ParamTable *tab = &S->m->tab;
    if (S->dp && S->z.stage > 0) {
        if (i >= 0) fail("internal: a sharded GPU step moves the whole table (step_get / step_put with -1)");
        Optimizer *o = S->opt;
        if (what & STEP_WEIGHTS) {
            gpu_copy(gpu_of(S), GPU_WEIGHTS, 0, tab->total, S->m->w, to_device);
            if (to_device) gpu_step_share(S);
            for (int u = 0; !to_device && !(what & STEP_OWNED) && u < S->z.nunit; u++)
                zero_gather_unit(S->comm, &S->z, u, S->m->w);
            if (!to_device && !(what & STEP_OWNED)) S->m->w_owned = 0;  // the whole table, current
        }
        if ((what & STEP_OPTIMIZER) && o) {
            if (!o->z || o->z->shard != S->z.shard) fail("internal: the optimizer is not sharded as the step is");
            if (o->kind == OPT_ADAMW8) gpu_copy_adamw8(gpu_of(S), o->qm, o->qv, o->sm, o->sv, to_device);
            else {
                gpu_copy(gpu_of(S), GPU_ADAM_M, 0, tab->total, o->m, to_device);  // the shard, as it is
                gpu_copy(gpu_of(S), GPU_ADAM_V, 0, tab->total, o->v, to_device);
            }
        }
        return;
    }
    size_t off = i < 0 ? 0 : tab->e[i].offset, n = i < 0 ? tab->total : tab->e[i].rows * tab->e[i].cols;
    if (what & STEP_WEIGHTS) gpu_copy(gpu_of(S), GPU_WEIGHTS, off, n, S->m->w + off, to_device);
    Optimizer *o = S->opt;
    if (!(what & STEP_OPTIMIZER) || !o) return;
    if (o->kind == OPT_ADAMW8) {
        if (i >= 0) fail("internal: 8-bit AdamW's blocks span tensors; its state moves whole (step_get / step_put with -1)");
        gpu_copy_adamw8(gpu_of(S), o->qm, o->qv, o->sm, o->sv, to_device);
    } else {  // AdamW: both moments over the whole table (voff = offset)
        gpu_copy(gpu_of(S), GPU_ADAM_M, off, n, o->m + off, to_device);
        gpu_copy(gpu_of(S), GPU_ADAM_V, off, n, o->v + off, to_device);
    }
}

static double gpu_used_gib(void) {
    size_t used, total;
    gpu_memory(&used, &total);
    return used / 1073741824.0;
}
static double gpu_step_memory(Step *S) { return gpu_used_gib(); }

static void gpu_step_close(Step *S) {
    GpuStep *G = (GpuStep *)S->dev;
    if (S->dp) zero_plan_free(&S->z);
    gpu_free(G->g), gpu_spec_free(G->s), free(G->tok), free(G->tgt), free(G), free(S);
}

static Step *gpu_step_open(Model *m, Optimizer *opt, const StepOpts *o) {
    static const StepImpl gpu = {gpu_step_masks, gpu_step_zero_grad, gpu_step_forward, gpu_step_backward,
                                 gpu_step_reduce, gpu_step_mask_grads, gpu_step_grad_sumsq, gpu_step_update,
                                 gpu_step_eval, gpu_step_copy, gpu_step_memory, gpu_step_close};
    if (opt && opt->nv != opt->total) fail("internal: AdamW state is not laid out over the whole table");
    Step *S = (Step *)callocCheck(sizeof(Step));
    GpuStep *G = (GpuStep *)callocCheck(sizeof(GpuStep));
    S->f = &gpu, S->device = DEVICE_GPU, S->B = o->B, S->T = o->T, S->m = m, S->opt = opt, S->dev = G;
    S->comm = o->comm, S->dp = comm_dp(o->comm, o->zero);
    if (m->w_owned && (!S->dp || !opt || o->zero == 0)) fail("internal: a model loaded as ZeRO pieces in a step without ZeRO");
    if (S->dp && !o->comm->gpu) comm_gpu_open(o->comm);  // picks GPU `local` before anything is allocated
    S->name = gpu_device_name();
    G->s = gpu_spec_from_model(m);
    G->s->recompute = o->recompute, G->s->checkpoint = o->checkpoint;
    G->s->forward_only = opt == NULL;  // opened for evaluation: bf16 weights and one layer's buffers
    G->s->optimizer = opt && opt->kind == OPT_ADAMW8 ? GPU_ADAMW8 : GPU_ADAMW;
    G->s->grad_bf16 = o->grad_bf16, G->s->bf16_only = o->bf16_only;
    G->s->seed = 0x5eed;  // the stochastic rounding's stream (each step draws new bits: gpu_adamw)
    if (S->dp) {
        S->z = zero_plan(&m->tab, m->c.L, opt ? o->zero : 0, o->comm->rank, o->comm->world);
        gpu_spec_zero(G->s, &S->z);
    }
    G->g = gpu_create(G->s, o->B, o->T);
    if (G->s->shard_grads) gpu_set_collectives(G->g, gpu_unit_reduce, gpu_unit_gather, S);
    if (G->s->shard) gpu_set_pieces(G->g, &S->z);
    G->tok = (int *)mallocCheck(sizeof(int) * (size_t)o->B * o->T);
    G->tgt = (int *)mallocCheck(sizeof(int) * (size_t)o->B * o->T);
    step_put(S, STEP_WEIGHTS | (opt && opt->t > 0 ? STEP_OPTIMIZER : 0), -1);
    size_t used, total;
    gpu_memory(&used, &total);
    printf("| device: %s, %.2f GiB allocated for the model and one %d x %d batch (%.2f of %.2f GiB in use); matrices: "
           "%s weights, %s gradients%s%s\n", S->name, gpu_bytes(G->g) / 1073741824.0, o->B, o->T, used / 1073741824.0,
           total / 1073741824.0, o->bf16_only ? "bf16-only" : "fp32 master +", o->grad_bf16 ? "bf16" : "fp32",
           opt ? (opt->kind == OPT_ADAMW8 ? ", 8-bit AdamW" : ", AdamW") : "",
           G->s->shard_weights ? "; ZeRO 3: weights, master, moments and gradients of this rank's shard"
           : G->s->shard_grads ? "; ZeRO 2: master, moments and gradients of this rank's shard"
                             : G->s->shard ? "; ZeRO 1: master and moments of this rank's shard" : "");
    return S;
}
#endif
