// hip/gpu.hip — one Gemma training / pruning step on one GPU: the C interface of hip/gpu.h over the
// kernels of hip/<op>.h (one header per op, each paired with its workbench hip/dev/<op>.hip) and the
// matrix products of hip/blas.hip.
// Reads top to bottom like model.h's section 4: state, forward, backward, optimizer, masks.
//
// Precision: fp32 master weights, gradients and AdamW moments; bf16 copies of the weights for every
// product; bf16 activations at the products' inputs and outputs; fp32 residual stream, norm
// statistics, softmax statistics and accumulators. What is kept for the backward (per layer): the
// residual stream entering the layer (fp32), the raw q,k,v projections, the attention output and its
// log-sum-exp, the o_proj, gate|up and down_proj outputs, and the norms' 1/rms. Cheap things are
// recomputed in the backward: both norm outputs that feed products, q and k after norm and RoPE, the
// residual after the attention branch, gelu(gate)·up. With GpuSpec.recompute = n the first n layers
// keep no gate|up and recompute it in the backward (one more product, 2F·d·N multiply-adds, each).
// With GpuSpec.checkpoint = n the first n layers keep only their input (fp32, the residual stream entering
// them); their forward runs into one shared set of the buffers above (in the scratch region), and again in
// the backward from that input, just before the layer's own backward.
// Memory: everything the forward and the backward use only for the moment (the scratch) shares one
// region with the head's chunk of bf16 logits, which is never alive at the same time.
#include <string.h>
#include <time.h>

#include "adamw.h"
#include "attention.h"  // (and plan.h)
#include "blas.h"
#include "colsum.h"
#include "elementwise.h"
#include "embed.h"
#include "gelu.h"
#include "gpu.h"
#include "masks.h"
#include "rmsnorm.h"
#include "rope.h"
#include "stats.h"
#include "xent.h"

static double wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

// =================================================================================================
// State
// =================================================================================================

typedef struct {
    float *r_in;         // [N]     1/rms of input_layernorm
    bf16 *qkv;           // [N, nqkv] raw q | k | v projections
    float *rq, *rk, *rv; // [N·H], [N·K], [N·K] 1/rms of the q, k (and Gemma 4 v) norms
    bf16 *att;           // [N, H·D] attention output before the head mask
    float *lse;          // [B, H, T]
    bf16 *o;             // [N, d]  o_proj output
    float *r_pa, *r_pf;  // [N]
    bf16 *gu;            // [N, 2F] gate | up (NULL where rec: recomputed in the backward)
    int rec;
    bf16 *f;             // [N, d]  down_proj output
    float *r_pff;        // [N]
    float *ck;           // [N, d]  checkpointed layers: the input; everything above points into the shared set
    int shared;          // its buffers are the shared set (checkpointed)
} LayerBuf;

enum { P_GEMM, P_ATTN, P_NORM, P_ELEM, P_HEAD, P_OPT, P_N };
static const char *prof_name[P_N] = {"matrix products", "attention", "norms+rope", "elementwise", "head (xent)", "optimizer"};

struct GpuModel {
    GpuSpec s;
    GpuPlan plan;                    // what is allocated and where (hip/plan.h)
    int B, T, N, use_mma;            // use_mma: gpu_set_attention's mode
    size_t bytes;                    // device memory allocated here
    // the parameter block (hip/plan.h): fp32 master weights w32, their bf16 copy wb (the table's layout), gradients
    // g32 (fp32) and g16 (the matrices' with GpuSpec.grad_bf16), the optimizer's states (at the first update)
    float *w32, *g32;
    bf16 *wb, *g16;
    float *m, *v;                    // AdamW: [total] (ZeRO 1: [shard])
    // ZeRO 1 (GpuSpec.shard): the fp32 master of the shard, its pieces (device: shard offsets [npiece + 1], table
    // offsets, w32 offsets of the small ones, flags; host: the rows gpu_set_shard took), the ranges of the gradient
    // this rank sums (host: (offset, length) in g32, ZeRO 2 in gs) and
    // their sum-of-squares partials (1024 + 1 each)
    float *ms;
    size_t *sh_off, *sh_tofs, *sh_sofs, *sh_rng, *sh_piece;  // sh_piece: host, gpu_set_shard's rows
    unsigned char *sh_flag;
    double *sh_part;
    int npiece, nrng;
    // ZeRO 2 (GpuSpec.shard_grads): the shard's gradient gs [shard]; the second stream the units' collectives run on,
    // its events (a unit left the backward, a bucket free again, everything reduced), and the step's collectives
    float *gs;
    hipStream_t side;
    hipEvent_t ev_left, ev_free[2], ev_done;
    GpuGradReduce reduce;
    GpuGather gather;
    void *coll_ctx;
    // ZeRO 3 (GpuSpec.shard_weights): the shard's bf16 copy wbs [shard]; the layer each weight bucket holds (-1:
    // none); events: stream 0 is past a point, a bucket's gather is done
    bf16 *wbs;
    int held[2];
    hipEvent_t ev_use, ev_got[2];
    int8_t *qm;                      // 8-bit AdamW: codes [total or shard], the blocks' max |m| and max v [nblocks]
    uint8_t *qv;
    float *sm, *sv;
    int gtype;                       // GS_F32 or GS_BF16: how the products' gradients are stored
    // gpu_zero_grad zeroes only the gradients that kernels add into (norm weights, ...): the weight products'
    // gradients and the head's are written with beta = 0 by the first backward / head after it, as if zero
    size_t *zero_rng, *prod_rng;     // device [2n]: (offset, length) ranges of g32 to zero / of the products' buffer
    int nzero, nprod;
    int fresh_layers, fresh_head;    // 1: those gradients are logically zero, their memory not yet written
    size_t *seg_off, *seg_wofs, *seg_gofs, *seg_q8;  // device copies of the table and the plan's offsets
    unsigned char *seg_flag;         // GpuSpec.tensor_flag with OPT_G16 / OPT_NO_MASTER (hip/adamw.h)
    char *pool;                      // the small tables, the stream and the layers' buffers (hip/plan.h)
    float2 **rope;                   // [L] cos/sin table of each layer ([T][D/2]); layers with equal RoPE share one
    LayerBuf *lb;
    // the residual stream: the forward runs it through this one buffer and leaves the stream after the last
    // layer; the backward takes it back layer by layer (residual_undo), so no layer keeps its input
    float *xL, *r_f;                 // [N, d] residual stream; final norm's 1/rms
    bf16 *xf;                        // final norm output
    int *tok, *tgt;
    float *row_loss, *row_loss_h;
    int n_valid, have_targets;       // have_targets: a forward with targets ran and no backward has taken it back yet
    // scratch shared by the forward and the backward, all inside ws (below)
    float *X2, *DX;                  // [N, d] fp32
    bf16 *S1, *S2, *S3;              // [N, d]
    bf16 *SF1, *SF2;                 // [N, max(F, H·D, nqkv)]
    bf16 *SG;                        // [N, 2F] gate | up of the layers that recompute it or are checkpointed
    char *CK;                        // the checkpointed layers' shared LayerBuf (one layer's worth: hip/plan.h)
    bf16 *QS, *KS, *VS;              // [N, H·D], [N, K·D], [N, K·D] q, k (Gemma 4: v) after norm and RoPE
    float *DQ;                       // [N, H·D] fp32 (attention dQ accumulates here)
    bf16 *DK, *DV;                   // [N, K·D]
    float *DXF;                      // [N, d] fp32 d loss / d final norm output (the head writes it: not in ws)
    float *Di;                       // [B, H, T]
    AttnBand band;                   // the banded backwards' S, dP, P, dS (NULL: no layer can use them)
    int pad;                         // rows of padding around KS / VS / QS / SF2 and before each qkv (banded path)
    float *part;                     // column-sum partials
    double *sumsq;                   // grad-norm partials [2][1024]: g32's, g16's
    char *ws;                        // the scratch region; the head's [chunk, V] bf16 logits when those are alive
    bf16 *logits;
    int chunk;
    // masks (NULL: off), their gradients, and the host copy of the layer gates the kernels take by value
    float *zl, *zh, *zf, *zd, *dzl, *dzh, *dzf, *dzd, *zl_host;
    int zd_kept;
    float *hc;                       // hard-concrete scratch
    size_t hc_n;
    // forward statistics (gpu_stats_on): per-layer sums [L][3][4] resid, [L·H] ent / entn, [L·F] fabs / fzero, then
    // the FFN partials' scratch; tau, and the token rows counted (the first st_rows of N)
    double *st, *st_res, *st_ent, *st_entn, *st_fabs, *st_fzero, *st_part;
    float *st_thr, st_tau;
    int st_rows;
    // profile
    int prof;
    double prof_t[P_N], prof_last;
};

// columns of a layer's raw q | k | v projection (Gemma 4's K=V layers have no v), and the first column of
// the v its attention reads (K=V layers: k's)
static int qkv_cols(const GpuSpec *s, const GpuLayerSpec *ls) { return plan_qkv_cols(s, ls); }
static int v_col(const GpuSpec *s, const GpuLayerSpec *ls) { return (ls->hasv ? s->H + ls->K : s->H) * ls->D; }

static void *gmalloc(GpuModel *g, size_t bytes) {
    void *p = NULL;
    if (bytes == 0) return NULL;
    hipError_t e = hipMalloc(&p, bytes);
    if (e != hipSuccess) {
        size_t fr = 0, tot = 0;
        (void)hipMemGetInfo(&fr, &tot);
        fprintf(stderr, "error: GPU allocation of %.2f GiB failed (%.2f GiB allocated so far, %.2f GiB free of %.2f)\n"
                        "  hint: a smaller --batch or --seq, or a smaller model\n",
                bytes / 1073741824.0, g->bytes / 1073741824.0, fr / 1073741824.0, tot / 1073741824.0);
        exit(1);
    }
    g->bytes += bytes;
    return p;
}
// hip/plan.h's sizes are multiples of 256 bytes: what is allocated is what the plan counts
#define GALLOC(g, type, count) ((type *)gmalloc(g, plan_align(sizeof(type) * (size_t)(count))))

// with GS_PROFILE=1, wait for the device and charge the time since the last mark to `cat`
static void prof(GpuModel *g, int cat) {
    if (!g->prof) return;
    hipCheck(hipDeviceSynchronize());
    double t = wall();
    g->prof_t[cat] += t - g->prof_last;
    g->prof_last = t;
}

static unsigned grid_for(size_t n) { return gs_grid(n, 256); }  // the grid-stride kernels here: 256 threads, one item each

static void fail_msg(const char *msg) {
    fprintf(stderr, "error: %s\n", msg);
    exit(1);
}

// --- the parameter block by table offset (hip/plan.h) -------------------------------------------------------------
static int tensor_of(const GpuModel *g, size_t off) {  // the tensor holding table element off
    int lo = 0, hi = g->s.ntensor - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (g->s.tensor_off[mid] <= off) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}
static int has_master(const GpuModel *g, int i) {  // w32 holds tensor i (ZeRO 1: the small ones; the rest in ms)
    if (g->s.shard) return plan_is_small(&g->s, i);
    return !(g->s.bf16_only || g->s.forward_only) || !plan_is_matrix(&g->s, i);
}
static int grad16(const GpuModel *g, int i) { return g->s.grad_bf16 && plan_is_matrix(&g->s, i); }
// the fp32 master of the element at table offset off (norm weights, layer_scalar: every tensor but a matrix of
// GpuSpec.bf16_only, which nothing reads in fp32)
static float *W(GpuModel *g, size_t off) {
    int i = tensor_of(g, off);
    if (!has_master(g, i)) fail_msg("internal: an fp32 read of a bf16-only weight");
    return g->w32 + g->plan.wofs[i] + (off - g->s.tensor_off[i]);
}
// the bf16 weight of the element at table offset off: the table's layout, or (ZeRO 3) where its unit is now: the
// embedding's and the final norm's whole, a layer's in its bucket (after weights_enter)
static bf16 *WB(GpuModel *g, size_t off) {
    if (!g->s.shard_weights) return g->wb + off;
    int i = tensor_of(g, off);
    return g->wb + g->plan.gofs[i] + (off - g->s.tensor_off[i]);
}
// the gradient of the element at table offset off: G32 for the fp32 ones (norms, the embedding), GP for a product's
// (in g->gtype)
static float *G32(GpuModel *g, size_t off) {
    int i = tensor_of(g, off);
    if (grad16(g, i)) fail_msg("internal: an fp32 gradient of a bf16 one");
    return g->g32 + g->plan.gofs[i] + (off - g->s.tensor_off[i]);
}
static void *GP(GpuModel *g, size_t off) {
    int i = tensor_of(g, off);
    size_t at = g->plan.gofs[i] + (off - g->s.tensor_off[i]);
    return grad16(g, i) ? (void *)(g->g16 + at) : (void *)(g->g32 + at);
}

// the (offset, length) ranges the layers' weight-gradient products write whole (q|k|v, o, gate|up, down: beta = 0
// on a fresh backward), in their buffer, and the ranges of g32 but the head's tied embedding, which gpu_zero_grad
// zeroes (adjacent tensors merged)
static void grad_ranges(GpuModel *g, size_t *pr, size_t *zr) {
    const GpuSpec *s = &g->s;
    const GpuPlan *p = &g->plan;
    size_t d = s->d, H = s->H, F = s->F;
    for (int l = 0; l < s->L; l++) {
        const GpuLayerSpec *ls = &s->layer[l];
        size_t D = ls->D, nqkv = qkv_cols(s, ls);
        size_t r[8] = {ls->wq, nqkv * d, ls->wo, d * H * D, ls->wgate, 2 * F * d, ls->wdown, d * F};
        for (int k = 0; k < 4; k++) pr[8 * l + 2 * k] = p->gofs[tensor_of(g, r[2 * k])], pr[8 * l + 2 * k + 1] = r[2 * k + 1];
    }
    g->nprod = 4 * s->L;
    int nz = 0;
    for (int i = 0; i < s->ntensor; i++) {
        size_t off = s->tensor_off[i], n = s->tensor_off[i + 1] - off;
        if (plan_is_matrix(s, i) || off == s->embed) continue;
        if (nz && zr[2 * nz - 2] + zr[2 * nz - 1] == p->gofs[i]) zr[2 * nz - 1] += n;
        else zr[2 * nz] = p->gofs[i], zr[2 * nz + 1] = n, nz++;
    }
    g->nzero = nz;
    if (g->nprod > p->nprod || g->nzero > p->nzero) fail_msg("internal: more gradient ranges than planned");
}

// the fresh gradients' memory made zero, before anything reads the gradients as a whole
static void grads_materialize(GpuModel *g) {
    if (g->s.shard_grads) return;  // ZeRO 2: every unit is written fresh by each backward (unit_enter)
    if (g->fresh_head) hipCheck(hipMemsetAsync(G32(g, g->s.embed), 0, sizeof(float) * g->s.V * g->s.d));
    if (g->fresh_layers && g->nprod) {
        if (g->gtype == GS_BF16) k_zero_ranges<<<dim3(128, g->nprod), 256>>>(g->g16, g->prod_rng);
        else k_zero_ranges<<<dim3(128, g->nprod), 256>>>(g->g32, g->prod_rng);
        hipCheckLaunch();
    }
    g->fresh_head = g->fresh_layers = 0;
}

const char *gpu_device_name(void) {
    static hipDeviceProp_t p;
    static int got = 0;
    if (!got) hipCheck(hipGetDeviceProperties(&p, 0)), got = 1;
    return p.name;
}

// Layer l's LayerBuf in the shared set (hip/plan.h plan_shared_layer) at base: a checkpointed layer's buffers while
// it runs (the forward, and again in the backward); gate|up in SG
static void layer_shared(GpuModel *g, int l, char *base) {
    const GpuSpec *s = &g->s;
    size_t off[GACT_N], len[GACT_N];
    plan_shared_layer(s, g->N, g->pad, off, len);
    LayerBuf *a = &g->lb[l];
#define SH(k, type) ((type *)(len[k] ? base + off[k] : NULL))
    a->r_in = SH(GACT_R_IN, float), a->qkv = SH(GACT_QKV, bf16) + (size_t)g->pad * qkv_cols(s, &s->layer[l]);
    a->rq = SH(GACT_RQ, float), a->rk = SH(GACT_RK, float), a->rv = SH(GACT_RV, float), a->att = SH(GACT_ATT, bf16);
    a->lse = SH(GACT_LSE, float), a->o = SH(GACT_O, bf16), a->r_pa = SH(GACT_R_PA, float), a->r_pf = SH(GACT_R_PF, float);
    a->f = SH(GACT_F, bf16), a->r_pff = SH(GACT_R_PFF, float);
#undef SH
    a->gu = g->SG, a->rec = 0, a->shared = 1;
}

GpuModel *gpu_create(const GpuSpec *spec, int B, int T) {
    GpuModel *g = (GpuModel *)calloc(1, sizeof(GpuModel));
    if (!g) fail_msg("out of host memory for the GPU model");
    g->s = *spec;
    const GpuSpec *s = &g->s;
    g->B = B, g->T = T, g->N = B * T, g->use_mma = 2;
    g->prof = getenv("GS_PROFILE") && atoi(getenv("GS_PROFILE")) > 0;
    size_t N = (size_t)g->N, d = s->d, H = s->H, F = s->F, L = s->L, nt = s->ntensor;
    if (F % 2) fail_msg("the GPU path needs an even intermediate_size");
    if (B < 1 || T < 1) fail_msg("the GPU path needs B >= 1 and T >= 1");
    if (s->recompute < 0 || s->recompute > s->L || s->checkpoint < 0 || s->checkpoint > s->L)
        fail_msg("the layers that recompute gate|up or are checkpointed: 0 to the model's layers");
    if (s->optimizer != GPU_ADAMW && s->optimizer != GPU_ADAMW8) fail_msg("GpuSpec.optimizer: GPU_ADAMW or GPU_ADAMW8");
    for (int l = 0; l < (int)L; l++)
        if (H % s->layer[l].K) fail_msg("query heads must be a multiple of kv heads");
    int maxD = 0;
    for (int l = 0; l < (int)L; l++) maxD = s->layer[l].D > maxD ? s->layer[l].D : maxD;
    if (maxD > GS_WARP * ATT_MAXE || maxD / 2 > GS_WARP * HN_MAXP) fail_msg("head_dim is larger than the GPU kernels support (512)");
    // tables: copies of the host arrays this struct points to
    g->s.tensor_off = (size_t *)malloc(sizeof(size_t) * (nt + 1));
    g->s.tensor_flag = (unsigned char *)malloc(nt);
    memcpy(g->s.tensor_off, spec->tensor_off, sizeof(size_t) * (nt + 1));
    memcpy(g->s.tensor_flag, spec->tensor_flag, nt);
    g->s.unit = NULL;
    if (s->shard_weights && !s->shard_grads) fail_msg("internal: ZeRO 3 on the GPU needs ZeRO 2's gradient shard");
    if (s->shard_grads) {  // ZeRO 2's units
        if (!s->shard || !spec->unit || s->grad_bf16) fail_msg("internal: ZeRO 2 on the GPU needs ZeRO 1's shard, the units and fp32 gradients");
        g->s.unit = (size_t *)malloc(sizeof(size_t) * 4 * s->shard_units);
        memcpy(g->s.unit, spec->unit, sizeof(size_t) * 4 * s->shard_units);
    }
    if (s->optimizer == GPU_ADAMW8 && (!s->q8_at || s->q8_at[s->q8_units] != (s->shard ? s->shard : s->total)))
        fail_msg("internal: 8-bit AdamW on the GPU needs its blocks' units (GpuSpec.q8_at: gpu_spec_from_config)");
    gpu_plan(s, B, T, &g->plan);  // reads inv_freq and q8_at, which are not kept
    g->s.inv_freq = NULL, g->s.q8_at = NULL;
    const GpuPlan *p = &g->plan;
    // the parameter block (the optimizer's states at the first update)
    g->w32 = GALLOC(g, float, p->n_w32);
    g->wb = GALLOC(g, bf16, p->n_wb);
    g->ms = GALLOC(g, float, s->shard);
    if (s->shard) {  // the piece tables (gpu_set_shard fills them)
        if (s->grad_bf16 || s->bf16_only || s->forward_only)
            fail_msg("ZeRO 1 on the GPU takes AdamW (fp32 or 8-bit states) with fp32 gradients and fp32 master weights");
        char *t = GALLOC(g, char, p->shard_tables);
        size_t np = p->npiece_max;
        g->sh_off = (size_t *)t, g->sh_tofs = g->sh_off + np + 1, g->sh_sofs = g->sh_tofs + np + 1;
        g->sh_flag = (unsigned char *)(g->sh_sofs + np + 1);
        g->sh_part = (double *)(t + plan_align((np + 1) * 8 * 3 + np));
    }
    g->g32 = GALLOC(g, float, p->n_g32);
    g->g16 = GALLOC(g, bf16, p->n_g16);
    if (s->shard_grads) {  // ZeRO 2: the shard's gradient and the second stream; ZeRO 3: the shard's bf16
        g->gs = GALLOC(g, float, s->shard);
        g->wbs = GALLOC(g, bf16, s->shard_weights ? s->shard : 0);
        hipCheck(hipStreamCreateWithFlags(&g->side, hipStreamNonBlocking));
        hipEvent_t *ev[7] = {&g->ev_left, &g->ev_free[0], &g->ev_free[1], &g->ev_done, &g->ev_use, &g->ev_got[0], &g->ev_got[1]};
        for (int k = 0; k < 7; k++) hipCheck(hipEventCreateWithFlags(ev[k], hipEventDisableTiming));
        g->held[0] = g->held[1] = -1;
    }
    if (g->g32) hipCheck(hipMemset(g->g32, 0, plan_align(sizeof(float) * p->n_g32)));  // and the packing's gaps
    if (g->g16) hipCheck(hipMemset(g->g16, 0, plan_align(sizeof(bf16) * p->n_g16)));
    g->gtype = s->grad_bf16 ? GS_BF16 : GS_F32;
    // the pool: small tables, the stream, the layers' buffers
    g->pool = GALLOC(g, char, p->pool);
    char *pl = g->pool;
    g->seg_off = (size_t *)(pl + p->tb[TB_SEG_OFF]), g->seg_wofs = (size_t *)(pl + p->tb[TB_SEG_WOFS]);
    g->seg_gofs = (size_t *)(pl + p->tb[TB_SEG_GOFS]), g->seg_q8 = (size_t *)(pl + p->tb[TB_Q8]);
    g->seg_flag = (unsigned char *)(pl + p->tb[TB_SEG_FLAG]);
    g->prod_rng = (size_t *)(pl + p->tb[TB_PROD]), g->zero_rng = (size_t *)(pl + p->tb[TB_ZERO]);
    g->part = (float *)(pl + p->tb[TB_PART]), g->sumsq = (double *)(pl + p->tb[TB_SUMSQ]);
    unsigned char *flag = (unsigned char *)malloc(nt);
    for (size_t i = 0; i < nt; i++)
        flag[i] = s->tensor_flag[i] | (grad16(g, (int)i) ? OPT_G16 : 0) | (has_master(g, (int)i) ? 0 : OPT_NO_MASTER);
    hipCheck(hipMemcpy(g->seg_off, s->tensor_off, sizeof(size_t) * (nt + 1), hipMemcpyHostToDevice));
    hipCheck(hipMemcpy(g->seg_wofs, p->wofs, sizeof(size_t) * nt, hipMemcpyHostToDevice));
    hipCheck(hipMemcpy(g->seg_gofs, p->gofs, sizeof(size_t) * nt, hipMemcpyHostToDevice));
    hipCheck(hipMemcpy(g->seg_q8, p->q8, sizeof(size_t) * 2 * (s->q8_units + 1), hipMemcpyHostToDevice));
    hipCheck(hipMemcpy(g->seg_flag, flag, nt, hipMemcpyHostToDevice));
    free(flag);
    size_t *pr = (size_t *)malloc(sizeof(size_t) * 2 * (p->nprod + 1)), *zr = (size_t *)malloc(sizeof(size_t) * 2 * (p->nzero + 1));
    grad_ranges(g, pr, zr);
    hipCheck(hipMemcpy(g->prod_rng, pr, sizeof(size_t) * 2 * g->nprod, hipMemcpyHostToDevice));
    hipCheck(hipMemcpy(g->zero_rng, zr, sizeof(size_t) * 2 * g->nzero, hipMemcpyHostToDevice));
    free(pr), free(zr);
    // the column-sum partials the kernels leave: within the plan's bound
    size_t nrb = gs_cdiv(N, COLSUM_ROWS), cmax = F > d ? F : d, maxhd = 0;
    for (int l = 0; l < (int)L; l++) maxhd = H * s->layer[l].D > maxhd ? H * s->layer[l].D : maxhd;
    cmax = cmax > maxhd ? cmax : maxhd;
    size_t need = nrb * cmax, hn = (size_t)gs_cdiv(N * H, HN_ROWS) * maxD, pn = norm_bwd_parts((int)d, (int)N);
    need = need > hn ? need : hn, need = need > pn ? need : pn;
    if (need > p->part) fail_msg("internal: the column-sum partials outgrow hip/plan.h's bound");
    // RoPE tables, angles in fp32 exactly as model.h's rope_apply: (float)inv_freq * (float)pos
    g->rope = (float2 **)calloc(L, sizeof(float2 *));
    for (int l = 0; l < (int)L; l++) {
        int D = s->layer[l].D, shared = 0;
        g->rope[l] = (float2 *)(pl + p->rope[l]);
        for (int q = 0; q < l; q++) shared |= g->rope[q] == g->rope[l];
        if (shared) continue;
        float2 *h = (float2 *)malloc(sizeof(float2) * (size_t)T * (D / 2));
        rope_table_host(h, spec->inv_freq + (size_t)l * spec->inv_stride, T, D);
        hipCheck(hipMemcpy(g->rope[l], h, sizeof(float2) * (size_t)T * (D / 2), hipMemcpyHostToDevice));
        free(h);
    }
    // the stream and the head's inputs
    g->xL = (float *)(pl + p->st[ST_XL]), g->r_f = (float *)(pl + p->st[ST_RF]), g->xf = (bf16 *)(pl + p->st[ST_XF]);
    g->tok = (int *)(pl + p->st[ST_TOK]), g->tgt = (int *)(pl + p->st[ST_TGT]);
    g->row_loss = (float *)(pl + p->st[ST_LOSS]), g->DXF = (float *)(pl + p->st[ST_DXF]), g->Di = (float *)(pl + p->st[ST_DI]);
    g->row_loss_h = (float *)malloc(sizeof(float) * N);
    // what each layer keeps for the backward; `pad` rows before each qkv for the banded backward (zeroed)
    g->pad = p->pad;
    size_t pad = g->pad;
    g->lb = (LayerBuf *)calloc(L, sizeof(LayerBuf));
    for (int l = 0; l < (int)L; l++) {
        LayerBuf *a = &g->lb[l];
        const size_t *o = p->act[l], *len = p->act_len[l];
        if (l < s->checkpoint || s->forward_only) {  // its input only, or nothing; the rest in the shared set (below)
            a->ck = len[GACT_CK] ? (float *)(pl + o[GACT_CK]) : NULL;
            continue;
        }
        size_t nqkv = qkv_cols(s, &s->layer[l]);
#define ACT(k, type) ((type *)(len[k] ? pl + o[k] : NULL))
        a->r_in = ACT(GACT_R_IN, float), a->qkv = ACT(GACT_QKV, bf16) + pad * nqkv, a->rq = ACT(GACT_RQ, float);
        a->rk = ACT(GACT_RK, float), a->rv = ACT(GACT_RV, float), a->att = ACT(GACT_ATT, bf16), a->lse = ACT(GACT_LSE, float);
        a->o = ACT(GACT_O, bf16), a->r_pa = ACT(GACT_R_PA, float), a->r_pf = ACT(GACT_R_PF, float), a->gu = ACT(GACT_GU, bf16);
        a->f = ACT(GACT_F, bf16), a->r_pff = ACT(GACT_R_PFF, float);
#undef ACT
        a->rec = l < s->recompute;
        hipCheck(hipMemset(a->qkv - pad * nqkv, 0, sizeof(bf16) * pad * nqkv));
    }
    // the scratch region: the scratch buffers one after another, or the head's bf16 logits of `chunk` rows (hip/plan.h)
    g->ws = GALLOC(g, char, p->ws);
    g->logits = (bf16 *)g->ws;
    g->chunk = p->chunk;
    void **bufs[WS_N] = {(void **)&g->X2, (void **)&g->DX, (void **)&g->S1, (void **)&g->S2, (void **)&g->S3,
                         (void **)&g->SF1, (void **)&g->SF2, (void **)&g->SG, (void **)&g->QS, (void **)&g->KS,
                         (void **)&g->VS, (void **)&g->DQ, (void **)&g->DK, (void **)&g->DV, (void **)&g->band.S,
                         (void **)&g->band.dP, (void **)&g->band.P, (void **)&g->band.dS, (void **)&g->CK};
    for (int k = 0; k < WS_N; k++) *bufs[k] = p->ws_len[k] ? (void *)(g->ws + p->ws_off[k]) : NULL;
    size_t maxkd = 0;
    for (int l = 0; l < (int)L; l++) maxkd = (size_t)s->layer[l].K * s->layer[l].D > maxkd ? (size_t)s->layer[l].K * s->layer[l].D : maxkd;
    g->KS += pad * maxkd;  // (KS and VS start `pad` rows into theirs)
    if (g->VS) g->VS += pad * maxkd;
    for (int l = 0; l < (s->forward_only ? s->L : s->checkpoint); l++) layer_shared(g, l, g->CK);
    g->zd_kept = s->d;
    if (g->bytes != p->create) fail_msg("internal: gpu_create allocated other than hip/plan.h planned");
    gs_blas_init();
    hipCheck(hipDeviceSynchronize());
    return g;
}

void gpu_free(GpuModel *g) {
    if (!g) return;
    if (g->sh_off) hipCheck(hipFree(g->sh_off));
    free(g->sh_rng), free(g->sh_piece);
    if (g->side) {
        hipEvent_t ev[7] = {g->ev_left, g->ev_free[0], g->ev_free[1], g->ev_done, g->ev_use, g->ev_got[0], g->ev_got[1]};
        for (int k = 0; k < 7; k++) hipCheck(hipEventDestroy(ev[k]));
        hipCheck(hipStreamDestroy(g->side));
    }
    free(g->s.unit);
    void *dev[] = {g->w32, g->wb, g->wbs, g->ms, g->gs, g->g32, g->g16, g->m, g->v, g->qm, g->qv, g->sm, g->sv, g->pool, g->ws,
                   g->zl, g->zh, g->zf, g->zd, g->dzl, g->dzh, g->dzf, g->dzd, g->hc, g->st, g->st_thr};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
        if (dev[i]) hipCheck(hipFree(dev[i]));
    gpu_plan_free(&g->plan);
    free(g->lb), free(g->rope), free(g->row_loss_h), free(g->zl_host), free(g->s.tensor_off), free(g->s.tensor_flag);
    free(g);
}

// --- the parameter block to and from the host, tensor by tensor where it is packed ------------------------------
// Values that have no fp32 copy on the device (bf16-only weights, bf16 gradients) pass through the scratch region
// as fp32, at most its size at a time (nothing lives there between steps).
static size_t stage_floats(const GpuModel *g) { return g->plan.ws / sizeof(float); }
// host fp32 [n] -> device bf16 (round to nearest even), through the scratch region
static void put_bf16(GpuModel *g, bf16 *dst, const float *src, size_t n) {
    for (size_t k = 0; k < n; k += stage_floats(g)) {
        size_t m = n - k < stage_floats(g) ? n - k : stage_floats(g);
        hipCheck(hipMemcpy(g->ws, src + k, sizeof(float) * m, hipMemcpyHostToDevice));
        k_f32_to_bf16<<<grid_for(m), 256>>>(dst + k, (const float *)g->ws, m);
        hipCheckLaunch();
    }
}
static void get_bf16(GpuModel *g, float *dst, const bf16 *src, size_t n) {
    for (size_t k = 0; k < n; k += stage_floats(g)) {
        size_t m = n - k < stage_floats(g) ? n - k : stage_floats(g);
        k_bf16_to_f32<<<grid_for(m), 256>>>((float *)g->ws, src + k, m);
        hipCheckLaunch();
        hipCheck(hipMemcpy(dst + k, g->ws, sizeof(float) * m, hipMemcpyDeviceToHost));
    }
}

static void states_alloc(GpuModel *g);
// ZeRO 1: the shard's pieces of dev (master or gradients, shard layout) <-> the host's table (gpu_set_shard's rows)
static void copy_pieces(GpuModel *g, float *dev, float *host, int to_device) {
    for (int k = 0; k < g->npiece; k++) {
        const size_t *q = g->sh_piece + 4 * k;  // table offset, shard offset, floats, tail
        if (to_device) hipCheck(hipMemcpy(dev + q[1], host + q[0], sizeof(float) * q[2], hipMemcpyHostToDevice));
        else hipCheck(hipMemcpy(host + q[0], dev + q[1], sizeof(float) * q[2], hipMemcpyDeviceToHost));
    }
}

static void shard_update(GpuModel *g, int up, OptHyper h);

// floats [off, off + n) of the table (any tensors), host <-> device, where the plan keeps them: the weights (the
// fp32 master and its bf16 copy, or the bf16 weight), the gradients (g32 or g16), AdamW's moments (table layout;
// a sharded model's: its whole shard, the host's GpuSpec.shard floats in the shard layout, as they are)
void gpu_copy(GpuModel *g, int what, size_t off, size_t n, float *host, int to_device) {
    const GpuSpec *s = &g->s;
    if (off + n > s->total) fail_msg("gpu_copy: a range outside the parameter table");
    if (what != GPU_WEIGHTS && s->forward_only) fail_msg("gpu_copy: a forward-only model has no gradients or optimizer state");
    if (what == GPU_GRADS) grads_materialize(g);
    // ZeRO 1: the master and moments (ZeRO 2: and the gradients) are the shard's pieces; the whole table moves, and
    // only the pieces (and from the device the small tensors' w32) move: the rest is other ranks' (the caller
    // gathers it on the host; after an upload it sums w32 over the ranks and all-gathers the units' bf16)
    int pieces = s->shard && (what != GPU_GRADS || s->shard_grads);
    if (pieces && (off != 0 || n != s->total)) fail_msg("gpu_copy: a sharded model moves the whole table at once");
    if (pieces && !g->npiece) fail_msg("internal: gpu_set_shard has not run");
    if (pieces && what == GPU_GRADS) {  // ZeRO 2: the shard's gradient
        copy_pieces(g, g->gs, host, to_device);
        return;
    }
    if (pieces && what == GPU_WEIGHTS && to_device) {  // the shard's master from the host's pieces (nothing else read
        copy_pieces(g, g->ms, host, to_device);        // there), published as an update publishes it
        OptHyper none;
        memset(&none, 0, sizeof none);
        shard_update(g, 0, none);
        return;
    }
    if (what == GPU_ADAM_M || what == GPU_ADAM_V) {
        if (s->optimizer != GPU_ADAMW) fail_msg("gpu_copy: AdamW's moments of a model with another optimizer");
        size_t len = pieces ? s->shard : n;  // (pieces: off is 0)
        if (!g->m && !to_device) {  // before the first update the device has none
            memset(host, 0, sizeof(float) * len);
            return;
        }
        states_alloc(g);
        float *dev = (what == GPU_ADAM_M ? g->m : g->v) + off;
        if (to_device) hipCheck(hipMemcpy(dev, host, sizeof(float) * len, hipMemcpyHostToDevice));
        else hipCheck(hipMemcpy(host, dev, sizeof(float) * len, hipMemcpyDeviceToHost));
        return;
    }
    for (size_t at = off; at < off + n;) {  // tensor by tensor
        int i = tensor_of(g, at);
        size_t end = s->tensor_off[i + 1] < off + n ? s->tensor_off[i + 1] : off + n, k = end - at;
        float *h = host + (at - off);
        if (what == GPU_WEIGHTS && has_master(g, i)) {
            if (to_device) {  // (a sharded model's weights went up above)
                hipCheck(hipMemcpy(W(g, at), h, sizeof(float) * k, hipMemcpyHostToDevice));
                k_f32_to_bf16<<<grid_for(k), 256>>>(WB(g, at), W(g, at), k);
                hipCheckLaunch();
            } else hipCheck(hipMemcpy(h, W(g, at), sizeof(float) * k, hipMemcpyDeviceToHost));
        } else if (what == GPU_WEIGHTS) {
            if (to_device) put_bf16(g, WB(g, at), h, k);
            else if (!pieces) get_bf16(g, h, g->wb + at, k);
        } else if (grad16(g, i)) {
            bf16 *d = (bf16 *)GP(g, at);
            if (to_device) put_bf16(g, d, h, k);
            else get_bf16(g, h, d, k);
        } else if (to_device) hipCheck(hipMemcpy(G32(g, at), h, sizeof(float) * k, hipMemcpyHostToDevice));
        else hipCheck(hipMemcpy(h, G32(g, at), sizeof(float) * k, hipMemcpyDeviceToHost));
        at = end;
    }
    if (pieces) copy_pieces(g, g->ms, host, to_device);
}
void gpu_upload(GpuModel *g, const float *w) {
    const GpuSpec *s = &g->s;
    if (s->bf16_only || s->forward_only || s->shard) return gpu_copy(g, GPU_WEIGHTS, 0, s->total, (float *)w, 1);
    hipCheck(hipMemcpy(g->w32, w, sizeof(float) * s->total, hipMemcpyHostToDevice));  // the master is the table
    k_f32_to_bf16<<<grid_for(s->total), 256>>>(g->wb, g->w32, s->total);
    hipCheckLaunch();
}
void gpu_download(GpuModel *g, float *w) { gpu_copy(g, GPU_WEIGHTS, 0, g->s.total, w, 0); }
void gpu_download_grads(GpuModel *g, float *gw) { gpu_copy(g, GPU_GRADS, 0, g->s.total, gw, 0); }

// model.h model_init_random: matrices N(0, std), norms at identity (1 - off), layer_scalar 1
void gpu_init_random(GpuModel *g, uint64_t seed, float std) {
    const GpuSpec *s = &g->s;
    if (s->shard) fail_msg("gpu_init_random: a sharded model starts from the host's weights (gpu_upload)");
    for (int i = 0; i < s->ntensor; i++) {
        size_t off = s->tensor_off[i], n = s->tensor_off[i + 1] - off;
        int norm = s->tensor_flag[i] & 4, frozen = s->tensor_flag[i] & 2;
        float value = frozen ? 1.0f : 1.0f - s->norm_off;
        if (has_master(g, i)) {
            k_init<<<grid_for(n), 256>>>(W(g, off), n, 0, seed + (uint64_t)i, norm ? 0.0f : std, value);
            hipCheckLaunch();
            continue;
        }
        for (size_t k = 0; k < n; k += stage_floats(g)) {  // the same values, drawn into the scratch and rounded
            size_t m = n - k < stage_floats(g) ? n - k : stage_floats(g);
            k_init<<<grid_for(m), 256>>>((float *)g->ws, m, k, seed + (uint64_t)i, norm ? 0.0f : std, value);
            k_f32_to_bf16<<<grid_for(m), 256>>>(g->wb + off + k, (const float *)g->ws, m);
            hipCheckLaunch();
        }
    }
    if (!s->bf16_only && !s->forward_only) k_f32_to_bf16<<<grid_for(s->total), 256>>>(g->wb, g->w32, s->total);
    else
        for (int i = 0; i < s->ntensor; i++)
            if (has_master(g, i)) {
                size_t off = s->tensor_off[i], n = s->tensor_off[i + 1] - off;
                k_f32_to_bf16<<<grid_for(n), 256>>>(g->wb + off, W(g, off), n);
            }
    hipCheckLaunch();
}

void gpu_grad_buffers(GpuModel *g, float **g32, size_t *n32, void **g16, size_t *n16) {
    grads_materialize(g);
    *g32 = g->g32, *n32 = g->plan.n_g32, *g16 = g->g16, *n16 = g->plan.n_g16;
}

void gpu_zero_grad(GpuModel *g) {
    if (g->s.forward_only) fail_msg("gpu_zero_grad: a forward-only model has no gradients or optimizer state");
    const GpuSpec *s = &g->s;
    if (s->shard_grads) hipCheck(hipMemsetAsync(g->gs, 0, sizeof(float) * s->shard));  // the units zero their own
    else if (g->nzero) {
        k_zero_ranges<<<dim3(128, g->nzero), 256>>>(g->g32, g->zero_rng);
        hipCheckLaunch();
    }
    g->fresh_layers = g->fresh_head = 1;
    if (g->dzl) hipCheck(hipMemset(g->dzl, 0, sizeof(float) * s->L));
    if (g->dzh) hipCheck(hipMemset(g->dzh, 0, sizeof(float) * s->L * s->H));
    if (g->dzf) hipCheck(hipMemset(g->dzf, 0, sizeof(float) * (size_t)s->L * s->F));
    if (g->dzd) hipCheck(hipMemset(g->dzd, 0, sizeof(float) * s->d));
}

void gpu_set_attention(GpuModel *g, int mode) { g->use_mma = mode; }
size_t gpu_bytes(const GpuModel *g) { return g->bytes; }
void gpu_memory(size_t *used, size_t *total) {
    size_t fr = 0, tot = 0;
    hipCheck(hipMemGetInfo(&fr, &tot));
    *used = tot - fr, *total = tot;
}
void gpu_sync(void) { hipCheck(hipDeviceSynchronize()); }

// =================================================================================================
// Helpers shared by forward and backward
// =================================================================================================

static void norm_fwd_f32(GpuModel *g, bf16 *y, float *rstd, const float *x, size_t wofs) {
    const GpuSpec *s = &g->s;
    norm_fwd<float>(y, rstd, x, W(g, wofs), s->norm_off, g->zd, 1.0f / g->zd_kept, s->eps, s->d, g->N);
    hipCheckLaunch();
}
// out = (res + RMSNorm(x; wofs)·zd·gate)·ls; y2 != NULL: also y2 = RMSNorm(out; wofs2)·zd (rstd2)
static void norm_add(GpuModel *g, float *out, float *rstd, const float *res, const bf16 *x, size_t wofs, float gate,
                     const float *ls, bf16 *y2, float *rstd2, size_t wofs2) {
    const GpuSpec *s = &g->s;
    norm_add_fwd(out, rstd, res, x, W(g, wofs), s->norm_off, g->zd, 1.0f / g->zd_kept, gate, ls, s->eps, s->d, g->N, y2,
                 rstd2, W(g, wofs2));
    hipCheckLaunch();
}

// Backward of an RMSNorm (model.h rmsnorm_backward): dx (ACC: +=) from dy, then the norm's weight /
// hidden-mask / layer-gate gradients from t_c = Σ_n dy x r
template <typename TY, typename TX, typename TO, bool ACC>
static void norm_back(GpuModel *g, TO *dx, const TY *dy, const TX *x, const float *r, size_t wofs, float *dgate, float gate) {
    const GpuSpec *s = &g->s;
    int nrb = norm_bwd<TY, TX, TO, ACC>(dx, g->part, dy, x, r, W(g, wofs), s->norm_off, g->zd, 1.0f / g->zd_kept, gate,
                                        s->d, g->N);
    hipCheckLaunch();
    norm_grads_finish(g->part, nrb, s->d, G32(g, wofs), g->dzd, dgate, W(g, wofs), s->norm_off, g->zd, gate);
    hipCheckLaunch();
}

// q, k (Gemma 4: v) after their per-head norms and RoPE, from the raw projections, into QS, KS (VS)
static void qkv_norm_rope(GpuModel *g, int l) {
    const GpuSpec *s = &g->s;
    const GpuLayerSpec *ls = &s->layer[l];
    LayerBuf *a = &g->lb[l];
    int N = g->N, T = g->T, H = s->H, D = ls->D, K = ls->K, nqkv = qkv_cols(s, ls), vcol = v_col(s, ls);
    float off = s->norm_off;
    headnorm_rope_fwd(g->QS, a->rq, a->qkv, nqkv, 0, H, D, W(g, ls->q_norm), off, g->rope[l], T, s->eps, N);
    headnorm_rope_fwd(g->KS, a->rk, a->qkv, nqkv, H * D, K, D, W(g, ls->k_norm), off, g->rope[l], T, s->eps, N);
    if (s->arch == 4) headnorm_rope_fwd(g->VS, a->rv, a->qkv, nqkv, vcol, K, D, NULL, 0.0f, NULL, T, s->eps, N);
    hipCheckLaunch();
}

// gate|up = m Wgu^T (m in S1) into the layer's buffer, or into SG where the layer recomputes it
static bf16 *gate_up(GpuModel *g, int l) {
    const GpuSpec *s = &g->s;
    bf16 *gu = g->lb[l].rec ? g->SG : g->lb[l].gu;
    gs_gemm(0, 1, g->N, 2 * s->F, s->d, 1.0f, g->S1, GS_BF16, s->d, WB(g, s->layer[l].wgate), GS_BF16, s->d, 0.0f, gu,
            GS_BF16, 2 * s->F);
    return gu;
}

static AttnFwd attn_args(GpuModel *g, int l) {
    const GpuSpec *s = &g->s;
    const GpuLayerSpec *ls = &s->layer[l];
    LayerBuf *a = &g->lb[l];
    int H = s->H, D = ls->D, K = ls->K, nqkv = qkv_cols(s, ls), vcol = v_col(s, ls);
    AttnFwd af;
    af.q = g->QS, af.ldq = H * D, af.k = g->KS, af.ldk = K * D;
    if (s->arch == 4) af.v = g->VS, af.ldv = K * D;
    else af.v = a->qkv + vcol, af.ldv = nqkv;  // Gemma 3: v is the raw projection
    af.o = a->att, af.ldo = H * D, af.lse = a->lse;
    af.B = g->B, af.T = g->T, af.H = H, af.K = K, af.D = D, af.window = ls->full ? 0 : s->W;
    af.scale = s->attn_scale, af.softcap = s->attn_softcap;
    return af;
}

// =================================================================================================
// Forward (model.h model_forward)
// =================================================================================================

void gpu_set_collectives(GpuModel *g, GpuGradReduce reduce, GpuGather gather, void *ctx) {
    g->reduce = reduce, g->gather = gather, g->coll_ctx = ctx;
}

// ZeRO 3: unit i's bf16 weights from the ranks' shards into where the products read them (a layer's bucket, or the
// embedding's and final norm's whole units) on `stream`: the q-blocks all-gathered, the replicated tail copied
static void unit_gather(GpuModel *g, int i, hipStream_t stream) {
    const GpuSpec *s = &g->s;
    const size_t *u = s->unit + 4 * (size_t)i;  // table offset, floats, q, shard offset
    size_t q = u[2], tail = u[1] - (size_t)s->world * q;
    bf16 *dst = g->wb + g->plan.uofs[i];
    if (!g->gather) fail_msg("internal: ZeRO 3 without gpu_set_collectives");
    g->gather(g->coll_ctx, i, g->wbs + u[3], dst, stream);
    if (tail) hipCheck(hipMemcpyAsync(dst + (size_t)s->world * q, g->wbs + u[3] + q, sizeof(bf16) * tail,
                                      hipMemcpyDeviceToDevice, stream));
}
void gpu_memcpy(void *dst, const void *src, size_t bytes, void *stream) {
    hipCheck(hipMemcpyAsync(dst, src, bytes, hipMemcpyDefault, (hipStream_t)stream));
    if (!stream) hipCheck(hipStreamSynchronize(0));
}
void *gpu_shard_bf16(GpuModel *g) { return g->wbs; }
void gpu_shard_regather(GpuModel *g) {
    if (!g->s.shard_weights) return;
    unit_gather(g, 0, 0), unit_gather(g, g->s.shard_units - 1, 0);
    g->held[0] = g->held[1] = -1;
}

// layer l's unit into bucket l % 2 on the second stream, unless it is there: once everything the compute stream
// has enqueued so far is done (the layer that held the bucket)
static void weights_fetch(GpuModel *g, int l) {
    int b = l % 2;
    if (g->held[b] == l) return;
    hipCheck(hipEventRecord(g->ev_use, 0));
    hipCheck(hipStreamWaitEvent(g->side, g->ev_use, 0));
    unit_gather(g, l + 1, g->side);  // (hip/comm.h zero_unit_of_layer)
    hipCheck(hipEventRecord(g->ev_got[b], g->side));
    g->held[b] = l;
}
// before layer l's forward or backward: its weights gathered (the compute stream waits for them), and the layer
// that comes next (-1: none) prefetched into the other bucket while this one computes
static void weights_enter(GpuModel *g, int l, int next) {
    if (!g->s.shard_weights) return;
    weights_fetch(g, l);
    hipCheck(hipStreamWaitEvent(0, g->ev_got[l % 2], 0));
    if (next >= 0 && next < g->s.L) weights_fetch(g, next);
}

// Layers [l0, l1) from the stream in xL, left there. redo: a checkpointed layer again in the backward (xL holds its
// input): the next norm is not made (the layer above is done with it).
static void layers_forward(GpuModel *g, int l0, int l1, int redo) {
    const GpuSpec *s = &g->s;
    int N = g->N, d = s->d, H = s->H, F = s->F;
    for (int l = l0; l < l1; l++) {
        const GpuLayerSpec *ls = &s->layer[l];
        LayerBuf *a = &g->lb[l];
        int D = ls->D, nqkv = qkv_cols(s, ls);
        float gate = g->zl ? g->zl_host[l] : 1.0f;
        int st = g->st && !redo;  // statistics: the layer's input into DX (free in the forward)
        weights_enter(g, l, redo ? -1 : l + 1);
        if (st) hipCheck(hipMemcpyAsync(g->DX, g->xL, sizeof(float) * N * d, hipMemcpyDeviceToDevice, 0));
        if (a->shared) {  // its input kept (when a backward will come; checkpointed), the shared q|k|v's pad rows zeroed
            if (a->ck && !redo && g->have_targets)
                hipCheck(hipMemcpyAsync(a->ck, g->xL, sizeof(float) * N * d, hipMemcpyDeviceToDevice, 0));
            if (g->pad) hipCheck(hipMemsetAsync(a->qkv - (size_t)g->pad * nqkv, 0, sizeof(bf16) * g->pad * nqkv, 0));
        }
        // a = RMSNorm(x; in) · zd (after the first layer the previous layer's last kernel made it); q,k,v = a Wqkv^T
        // (one product: the three weights are adjacent)
        if (l == l0) norm_fwd_f32(g, g->S1, a->r_in, g->xL, ls->in_norm);
        prof(g, P_NORM);
        gs_gemm(0, 1, N, nqkv, d, 1.0f, g->S1, GS_BF16, d, WB(g, ls->wq), GS_BF16, d, 0.0f, a->qkv, GS_BF16, nqkv);
        prof(g, P_GEMM);
        // per-head q/k norms, then RoPE; Gemma 4: weightless v norm
        qkv_norm_rope(g, l);
        prof(g, P_NORM);
        AttnFwd af = attn_args(g, l);
        attn_forward(af, g->use_mma);
        if (st) stats_entropy(g->st_ent + (size_t)l * H, g->st_entn + (size_t)l * H, g->DQ, af, g->st_rows);
        prof(g, P_ATTN);
        // o = (att · head mask) Wo^T
        const bf16 *attm = a->att;
        if (g->zh) {
            k_head_gate<<<grid_for((size_t)N * H * D), 256>>>(g->SF1, a->att, g->zh + (size_t)l * H, N, H, D);
            hipCheckLaunch();
            attm = g->SF1;
        }
        gs_gemm(0, 1, N, d, H * D, 1.0f, attm, GS_BF16, H * D, WB(g, ls->wo), GS_BF16, H * D, 0.0f, a->o, GS_BF16, d);
        prof(g, P_GEMM);
        // x2 = x + RMSNorm(o; post_attn)·zd·gate;  m = RMSNorm(x2; pre_ffn)·zd
        norm_add(g, g->X2, a->r_pa, g->xL, a->o, ls->post_attn, gate, NULL, g->S1, a->r_pf, ls->pre_ffn);
        if (st) stats_resid(g->st_res + ((size_t)l * 3 + 1) * 4, (double *)g->DQ, g->DX, g->X2, NULL, d, g->st_rows);
        prof(g, P_NORM);
        // gate|up = m Wgu^T; h = gelu(gate)·up·zf; f = h Wd^T
        const bf16 *gu = gate_up(g, l);
        prof(g, P_GEMM);
        gelu_fwd(g->SF1, gu, g->zf ? g->zf + (size_t)l * F : NULL, N, F);
        hipCheckLaunch();
        if (st) stats_ffn(g->st_fabs + (size_t)l * F, g->st_fzero + (size_t)l * F, g->st_part, g->st_thr, g->SF1, F,
                          g->st_tau, g->st_rows);
        prof(g, P_ELEM);
        gs_gemm(0, 1, N, d, F, 1.0f, g->SF1, GS_BF16, F, WB(g, ls->wdown), GS_BF16, F, 0.0f, a->f, GS_BF16, d);
        prof(g, P_GEMM);
        // x_next = (x2 + RMSNorm(f; post_ffn)·zd·gate) [· layer_scalar], and the next norm of it: the next layer's
        // input norm, or the final norm into xf
        int last = l + 1 == s->L;
        norm_add(g, g->xL, a->r_pff, g->X2, a->f, ls->post_ffn, gate,
                 s->arch == 4 ? W(g, ls->layer_scalar) : NULL, redo ? NULL : last ? g->xf : g->S1,
                 last ? g->r_f : g->lb[l + 1].r_in, last ? s->final_norm : s->layer[l + 1].in_norm);
        if (st) {  // the whole layer, and the MLP branch (Gemma 4: before layer_scalar)
            stats_resid(g->st_res + (size_t)l * 3 * 4, (double *)g->DQ, g->DX, g->xL, NULL, d, g->st_rows);
            stats_resid(g->st_res + ((size_t)l * 3 + 2) * 4, (double *)g->DQ, g->X2, g->xL,
                        s->arch == 4 ? W(g, ls->layer_scalar) : NULL, d, g->st_rows);
            hipCheckLaunch();
        }
        prof(g, P_NORM);
    }
}

float gpu_forward(GpuModel *g, const int *tok, const int *tgt, int want_grad) {
    const GpuSpec *s = &g->s;
    int N = g->N, d = s->d;
    for (int n = 0; n < N; n++)
        if (tok[n] < 0 || tok[n] >= s->V) {
            fprintf(stderr, "error: token id %d at position %d is outside the vocabulary [0, %d)\n", tok[n], n, s->V);
            exit(1);
        }
    g->prof_last = wall();
    hipCheck(hipMemcpy(g->tok, tok, sizeof(int) * N, hipMemcpyHostToDevice));
    if (want_grad && g->s.forward_only) fail_msg("gpu_forward: a forward-only model makes no gradients");
    g->have_targets = tgt != NULL && want_grad, g->n_valid = 0;
    if (tgt) {
        for (int n = 0; n < N; n++) g->n_valid += tgt[n] >= 0;
        hipCheck(hipMemcpy(g->tgt, tgt, sizeof(int) * N, hipMemcpyHostToDevice));
    }
    k_embed_fwd<<<grid_for((size_t)N * d), 256>>>(g->xL, WB(g, s->embed), g->tok, g->zd, s->embed_scale, N, d);
    hipCheckLaunch();
    prof(g, P_ELEM);
    layers_forward(g, 0, s->L, 0);
    if (!tgt) return 0.0f;
    // the tied head, chunk by chunk: bf16 logits -> loss and (in place) d loss / d logits -> dxf, d embedding
    float inv_n = g->n_valid ? 1.0f / g->n_valid : 0.0f;
    for (int n0 = 0; n0 < N; n0 += g->chunk) {
        int rows = N - n0 < g->chunk ? N - n0 : g->chunk;
        const bf16 *xf = g->xf + (size_t)n0 * d;
        gs_gemm(0, 1, rows, s->V, d, 1.0f, xf, GS_BF16, d, WB(g, s->embed), GS_BF16, d, 0.0f, g->logits, GS_BF16, s->V);
        prof(g, P_GEMM);
        k_xent<<<rows, 1024>>>(g->logits, s->V, g->tgt + n0, s->final_softcap, inv_n, g->row_loss + n0, want_grad);
        hipCheckLaunch();
        prof(g, P_HEAD);
        if (want_grad) {
            gs_gemm(0, 0, rows, d, s->V, 1.0f, g->logits, GS_BF16, s->V, WB(g, s->embed), GS_BF16, d, 0.0f,
                    g->DXF + (size_t)n0 * d, GS_F32, d);
            gs_gemm(1, 0, s->V, d, rows, 1.0f, g->logits, GS_BF16, s->V, xf, GS_BF16, d, g->fresh_head ? 0.0f : 1.0f,
                    G32(g, s->embed), GS_F32, d);
            g->fresh_head = 0;
            prof(g, P_GEMM);
        }
    }
    hipCheck(hipMemcpy(g->row_loss_h, g->row_loss, sizeof(float) * N, hipMemcpyDeviceToHost));
    double loss = 0;
    for (int n = 0; n < N; n++) loss += g->row_loss_h[n];
    return g->n_valid ? (float)(loss / g->n_valid) : 0.0f;
}

// =================================================================================================
// Backward (model.h model_backward). DX holds d loss / d (residual stream) going down the layers.
// =================================================================================================

// ZeRO 2: the partition's unit i (0: the embedding's, 1 + l: layer l's, L + 1: the final norm's) as the backward
// enters it (its bucket free again once the reduce of the layer two above is done; the tensors kernels add into
// zeroed, the products write theirs with beta = 0) and leaves it (its collectives on the second stream, then this
// rank's part added into the shard's gradient there, while the compute stream goes on with the next unit)
static void unit_enter(GpuModel *g, int i) {
    const GpuSpec *s = &g->s;
    if (!s->shard_grads) return;
    const size_t *u = s->unit + 4 * (size_t)i;  // table offset, floats, q, shard offset
    if (i >= 1 && i <= s->L) hipCheck(hipStreamWaitEvent(0, g->ev_free[(i - 1) % 2], 0));
    for (int t = tensor_of(g, u[0]); u[1] && t < s->ntensor && s->tensor_off[t] < u[0] + u[1]; t++)
        if (!plan_is_matrix(s, t) && s->tensor_off[t] != s->embed)
            hipCheck(hipMemsetAsync(g->g32 + g->plan.gofs[t], 0, sizeof(float) * (s->tensor_off[t + 1] - s->tensor_off[t])));
}
static void unit_leave(GpuModel *g, int i) {
    const GpuSpec *s = &g->s;
    if (!s->shard_grads) return;
    const size_t *u = s->unit + 4 * (size_t)i;
    size_t q = u[2], tail = u[1] - (size_t)s->world * q;
    float *grad = g->g32 + g->plan.uofs[i];
    if (!g->reduce) fail_msg("internal: ZeRO 2 without gpu_set_collectives");
    if (!u[1]) return;
    hipCheck(hipEventRecord(g->ev_left, 0));
    hipCheck(hipStreamWaitEvent(g->side, g->ev_left, 0));
    g->reduce(g->coll_ctx, i, grad, g->side);
    if (q) k_add_f32<<<grid_for(q), 256, 0, g->side>>>(g->gs + u[3], grad + (size_t)s->rank * q, q);
    if (tail) k_add_f32<<<grid_for(tail), 256, 0, g->side>>>(g->gs + u[3] + q, grad + (size_t)s->world * q, tail);
    hipCheckLaunch();
    if (i >= 1 && i <= s->L) hipCheck(hipEventRecord(g->ev_free[(i - 1) % 2], g->side));
}

void gpu_backward(GpuModel *g) {
    const GpuSpec *s = &g->s;
    if (!g->have_targets) fail_msg("gpu_backward needs a gpu_forward with targets and want_grad before each call");
    g->have_targets = 0;  // the residual stream is taken back in place below
    int N = g->N, B = g->B, T = g->T, d = s->d, H = s->H, F = s->F;
    if (g->fresh_head) grads_materialize(g);  // the embedding's gradient is added to below
    // the weight products: overwrite fresh gradients (ZeRO 2: always, each unit is fresh), else add
    const float gb = g->fresh_layers || s->shard_grads ? 0.0f : 1.0f;
    float off = s->norm_off;
    size_t Nd = (size_t)N * d;
    g->prof_last = wall();
    // final norm: DX = its input gradient
    unit_enter(g, s->L + 1);
    norm_back<float, float, float, false>(g, g->DX, g->DXF, g->xL, g->r_f, s->final_norm, NULL, 1.0f);
    unit_leave(g, s->L + 1);
    prof(g, P_NORM);
    for (int l = s->L - 1; l >= 0; l--) {
        const GpuLayerSpec *ls = &s->layer[l];
        unit_enter(g, l + 1);  // (hip/comm.h zero_unit_of_layer)
        LayerBuf *a = &g->lb[l];
        int D = ls->D, K = ls->K, nqkv = qkv_cols(s, ls), vcol = v_col(s, ls);
        int HD = H * D;
        float gate = g->zl ? g->zl_host[l] : 1.0f;
        float *dgate = g->dzl ? g->dzl + l : NULL;
        const float *zf = g->zf ? g->zf + (size_t)l * F : NULL;
        weights_enter(g, l, l - 1);
        // Gemma 4: x_next = s·x3; s (layer_scalar) is frozen, so only dx3 = s·dx
        if (s->arch == 4) {
            k_scale_f32<<<grid_for(Nd), 256>>>(g->DX, W(g, ls->layer_scalar), Nd);
            hipCheckLaunch();
        }
        if (a->ck) {  // checkpointed: its input back into xL, and its forward again into the shared set
            hipCheck(hipMemcpyAsync(g->xL, a->ck, sizeof(float) * Nd, hipMemcpyDeviceToDevice, 0));
            layers_forward(g, l, l + 1, 1);
        }
        // the layer's residual stream back from the one after it: xL becomes x (its input), X2 = x2, and the norms
        // m = RMSNorm(x2; pre_ffn) into S1, a = RMSNorm(x; in) into S3 (for dWgu, dWqkv below)
        residual_undo(g->xL, g->X2, g->S1, g->S3, a->f, a->o, a->r_pff, a->r_pa, a->r_pf, a->r_in, W(g, ls->post_ffn),
                      W(g, ls->post_attn), W(g, ls->pre_ffn), W(g, ls->in_norm), off, g->zd, gate,
                      s->arch == 4 ? W(g, ls->layer_scalar) : NULL, d, N);
        hipCheckLaunch();
        // --- MLP branch: x_next = x2 + PN(f)·zd·gate
        norm_back<float, bf16, bf16, false>(g, g->S2, g->DX, a->f, a->r_pff, ls->post_ffn, dgate, gate);
        prof(g, P_NORM);
        bf16 *gu = a->rec ? gate_up(g, l) : a->gu;  // its gradient replaces it below (d gate | d up)
        gs_gemm(0, 0, N, F, d, 1.0f, g->S2, GS_BF16, d, WB(g, ls->wdown), GS_BF16, F, 0.0f, g->SF2, GS_BF16, F);
        prof(g, P_GEMM);
        if (zf) {  // d/dz_ffn = Σ_n dhm · h
            int nrb = (int)gs_cdiv(N, COLSUM_ROWS);
            TermGelu tg = {g->SF2, gu, F};
            k_colsum<<<dim3(gs_cdiv(F, 32), nrb), dim3(32, 8)>>>(g->part, tg, N, F);
            colsum_finish(g->part, nrb, F, 1, 1.0f, g->dzf + (size_t)l * F);
            hipCheckLaunch();
        }
        gelu_bwd(gu, g->SF1, g->SF2, gu, zf, N, F);  // in place; hm rewritten into SF1
        hipCheckLaunch();
        prof(g, P_ELEM);
        gs_gemm(1, 0, d, F, N, 1.0f, g->S2, GS_BF16, d, g->SF1, GS_BF16, F, gb, GP(g, ls->wdown), g->gtype, F);
        gs_gemm(1, 0, 2 * F, d, N, 1.0f, gu, GS_BF16, 2 * F, g->S1, GS_BF16, d, gb, GP(g, ls->wgate), g->gtype, d);
        gs_gemm(0, 0, N, d, 2 * F, 1.0f, gu, GS_BF16, 2 * F, WB(g, ls->wgate), GS_BF16, d, 0.0f, g->S2, GS_BF16, d);
        prof(g, P_GEMM);
        // m = PN(x2): DX becomes d/dx2 (residual + this)
        norm_back<bf16, float, float, true>(g, g->DX, g->S2, g->X2, a->r_pf, ls->pre_ffn, NULL, 1.0f);
        // --- attention branch: x2 = x + PN(o)·zd·gate
        norm_back<float, bf16, bf16, false>(g, g->S2, g->DX, a->o, a->r_pa, ls->post_attn, dgate, gate);
        const bf16 *attm = a->att;
        if (g->zh) {
            k_head_gate<<<grid_for((size_t)N * HD), 256>>>(g->SF1, a->att, g->zh + (size_t)l * H, N, H, D);
            hipCheckLaunch();
            attm = g->SF1;
        }
        prof(g, P_NORM);
        gs_gemm(1, 0, d, HD, N, 1.0f, g->S2, GS_BF16, d, attm, GS_BF16, HD, gb, GP(g, ls->wo), g->gtype, HD);
        gs_gemm(0, 0, N, HD, d, 1.0f, g->S2, GS_BF16, d, WB(g, ls->wo), GS_BF16, HD, 0.0f, g->SF2, GS_BF16, HD);
        prof(g, P_GEMM);
        if (g->zh) {  // d/dzh = Σ_n Σ_i datt · att per head, then datt ·= zh
            int nrb = (int)gs_cdiv(N, COLSUM_ROWS);
            TermDyXR<bf16, bf16> th = {g->SF2, HD, a->att, HD, NULL};
            k_colsum<<<dim3(gs_cdiv(HD, 32), nrb), dim3(32, 8)>>>(g->part, th, N, HD);
            colsum_finish(g->part, nrb, HD, D, 1.0f, g->dzh + (size_t)l * H);
            k_head_gate<<<grid_for((size_t)N * HD), 256>>>(g->SF2, g->SF2, g->zh + (size_t)l * H, N, H, D);
            hipCheckLaunch();
        }
        // attention backward -> dq (fp32 DQ), dk (DK), dv (Gemma 3: straight into dqkv's v columns), from q, k
        // (and Gemma 4's v) recomputed
        qkv_norm_rope(g, l);
        bf16 *dqkv = g->SF1;
        AttnBwd ab;
        ab.f = attn_args(g, l);
        ab.dout = g->SF2, ab.lddo = HD, ab.Di = g->Di, ab.dq = g->DQ, ab.lddq = HD, ab.dk = g->DK, ab.lddk = K * D;
        if (s->arch == 4) ab.dv = g->DV, ab.lddv = K * D;
        else ab.dv = dqkv + vcol, ab.lddv = nqkv;
        k_attn_dot<<<gs_cdiv((size_t)N * H, 4), 4 * GS_WARP>>>(g->Di, g->SF2, HD, a->att, HD, B, T, H, D);
        hipCheckLaunch();
        attn_backward(ab, g->use_mma, &g->band);
        prof(g, P_ATTN);
        // RoPE and the per-head norms backward into dqkv; q_norm / k_norm weight gradients
        int nbq = headnorm_rope_bwd<float, false>(dqkv, g->part, g->DQ, a->qkv, nqkv, 0, H, D, a->rq, W(g, ls->q_norm),
                                                  off, g->rope[l], T, N);
        hipCheckLaunch();
        colsum_finish(g->part, nbq, D, 1, 1.0f, G32(g, ls->q_norm));
        int nbk = headnorm_rope_bwd<bf16, false>(dqkv, g->part, g->DK, a->qkv, nqkv, H * D, K, D, a->rk, W(g, ls->k_norm),
                                                 off, g->rope[l], T, N);
        hipCheckLaunch();
        colsum_finish(g->part, nbk, D, 1, 1.0f, G32(g, ls->k_norm));
        if (s->arch == 4) {  // weightless v norm, no RoPE; K=V layers add into k's columns
            if (ls->hasv)
                headnorm_rope_bwd<bf16, false>(dqkv, NULL, g->DV, a->qkv, nqkv, vcol, K, D, a->rv, NULL, 0.0f, NULL, T, N);
            else headnorm_rope_bwd<bf16, true>(dqkv, NULL, g->DV, a->qkv, nqkv, vcol, K, D, a->rv, NULL, 0.0f, NULL, T, N);
        }
        hipCheckLaunch();
        // dWqkv += dqkv^T a (a recomputed above); da = dqkv Wqkv
        gs_gemm(1, 0, nqkv, d, N, 1.0f, dqkv, GS_BF16, nqkv, g->S3, GS_BF16, d, gb, GP(g, ls->wq), g->gtype, d);
        gs_gemm(0, 0, N, d, nqkv, 1.0f, dqkv, GS_BF16, nqkv, WB(g, ls->wq), GS_BF16, d, 0.0f, g->S2, GS_BF16, d);
        prof(g, P_GEMM);
        norm_back<bf16, float, float, true>(g, g->DX, g->S2, g->xL, a->r_in, ls->in_norm, NULL, 1.0f);
        unit_leave(g, l + 1);
        prof(g, P_NORM);
    }
    // embedding: x0 = E[tok]·scale·zd
    k_embed_bwd<<<grid_for(Nd), 256>>>(G32(g, s->embed), g->DX, g->tok, g->zd, s->embed_scale, N, d);
    hipCheckLaunch();
    if (g->dzd) {
        int nrb = (int)gs_cdiv(N, COLSUM_ROWS);
        TermEmbed te = {g->DX, WB(g, s->embed), g->tok, d};
        k_colsum<<<dim3(gs_cdiv(d, 32), nrb), dim3(32, 8)>>>(g->part, te, N, d);
        colsum_finish(g->part, nrb, d, 1, s->embed_scale, g->dzd);
        hipCheckLaunch();
    }
    g->fresh_layers = 0;
    if (s->shard_grads) {  // the embedding's unit leaves too; the next forward's head writes it fresh
        unit_leave(g, 0);
        g->fresh_head = 1;
        hipCheck(hipEventRecord(g->ev_done, g->side));
        hipCheck(hipStreamWaitEvent(0, g->ev_done, 0));  // nothing after this backward sees a gradient half reduced
    }
    prof(g, P_ELEM);
}

// =================================================================================================
// Optimizer
// =================================================================================================

// ZeRO 1: Σ g² over the ranges of g32 this rank owns, each as k_sumsq sums a buffer (its first elements up to a
// 16-byte boundary apart), the partials added in order: at one rank the one range is the table, summed as above
static double sumsq_shard(GpuModel *g) {
    const int nb = 1024;
    const float *base = g->s.shard_grads ? g->gs : g->g32;  // ZeRO 2: ranges of the shard's gradient
    for (int r = 0; r < g->nrng; r++) {
        size_t lo = g->sh_rng[2 * r], n = g->sh_rng[2 * r + 1], head = (4 - lo % 4) % 4;
        head = head < n ? head : n;
        double *part = g->sh_part + (size_t)r * (nb + 1);
        k_sumsq<<<nb, 256>>>(part, base + lo + head, n - head);
        if (head) k_sumsq<<<1, 256>>>(part + nb, base + lo, head);
    }
    hipCheckLaunch();
    size_t np = (size_t)g->nrng * (nb + 1);
    double *h = (double *)malloc(sizeof(double) * np), s = 0;
    hipCheck(hipMemcpy(h, g->sh_part, sizeof(double) * np, hipMemcpyDeviceToHost));
    for (int r = 0; r < g->nrng; r++) {
        size_t lo = g->sh_rng[2 * r];
        for (int i = 0; i < nb; i++) s += h[(size_t)r * (nb + 1) + i];
        if (lo % 4) s += h[(size_t)r * (nb + 1) + nb];
    }
    free(h);
    return s;
}

double gpu_grad_sumsq(GpuModel *g) {  // g32's sum, then g16's (the host adds the block sums in order)
    if (g->s.forward_only) fail_msg("gpu_grad_sumsq: a forward-only model has no gradients or optimizer state");
    unsigned nb = 1024;
    grads_materialize(g);
    if (g->s.shard) return sumsq_shard(g);
    k_sumsq<<<nb, 256>>>(g->sumsq, g->g32, g->plan.n_g32);
    if (g->g16) k_sumsq<<<nb, 256>>>(g->sumsq + nb, g->g16, g->plan.n_g16);
    hipCheckLaunch();
    double h[2048], s = 0;
    int n = g->g16 ? 2 * nb : nb;
    hipCheck(hipMemcpy(h, g->sumsq, sizeof(double) * n, hipMemcpyDeviceToHost));
    for (int i = 0; i < n; i++) s += h[i];
    return s;
}

// the optimizer's states, zero, when the first update (or upload) needs them
static void states_alloc(GpuModel *g) {
    size_t n = g->s.shard ? g->s.shard : g->s.total, nb = g->plan.nblocks;
    if (g->s.optimizer == GPU_ADAMW8) {
        if (g->qm) return;
        g->qm = GALLOC(g, int8_t, n), g->qv = GALLOC(g, uint8_t, n), g->sm = GALLOC(g, float, nb), g->sv = GALLOC(g, float, nb);
        hipCheck(hipMemset(g->qm, 0, n)), hipCheck(hipMemset(g->qv, 0, n));
        hipCheck(hipMemset(g->sm, 0, sizeof(float) * nb)), hipCheck(hipMemset(g->sv, 0, sizeof(float) * nb));
        return;
    }
    if (g->m) return;
    g->m = GALLOC(g, float, n), g->v = GALLOC(g, float, n);
    hipCheck(hipMemset(g->m, 0, sizeof(float) * n)), hipCheck(hipMemset(g->v, 0, sizeof(float) * n));
}

// ZeRO 1-3: the shard's master updated by the optimizer (up 0: as it is), its bf16 copy made where the plan keeps it
// and the small tensors' fp32 written where this rank owns them, zeros elsewhere (the caller sums w32 over the ranks
// and all-gathers the units' bf16; ZeRO 3: the embedding's and the final norm's units are gathered here, the layers'
// on use)
static void shard_update(GpuModel *g, int up, OptHyper h) {
    const GpuSpec *s = &g->s;
    hipCheck(hipMemsetAsync(g->w32, 0, sizeof(float) * g->plan.n_w32));
    ShardBlock b = {g->ms, g->w32, g->wb, g->wbs, g->g32, g->gs, g->sh_off, g->sh_tofs, g->sh_sofs, g->sh_flag,
                    g->npiece, s->shard};
    if (up && s->optimizer == GPU_ADAMW8)
        k_adamw8_shard<<<gs_grid(g->plan.nblocks, 1), Q8_BLOCK>>>(b, g->qm, g->qv, g->sm, g->sv, g->seg_q8, s->q8_units, h);
    else k_adamw_shard<<<grid_for(s->shard), 256>>>(b, up ? g->m : NULL, up ? g->v : NULL, h);
    hipCheckLaunch();
    gpu_shard_regather(g);
}

void gpu_adamw(GpuModel *g, float lr, float b1, float b2, float eps, float wd, int step, float gscale) {
    if (g->s.forward_only) fail_msg("gpu_adamw: a forward-only model has no gradients or optimizer state");
    const GpuSpec *s = &g->s;
    grads_materialize(g);
    g->prof_last = wall();
    states_alloc(g);
    OptBlock o = {g->w32, g->wb, g->g32, g->g16, g->seg_off, g->seg_wofs, g->seg_gofs, g->seg_flag, s->ntensor, s->total};
    // bias corrections as model.h's adamw_update and train.c's adamw8_update compute them; a new random stream for
    // the stochastic rounding at every step
    OptHyper h = {lr, b1, b2, eps, wd, 1.0f - powf(b1, (float)step), sqrtf(1.0f - powf(b2, (float)step)), gscale,
                  (s->seed + (uint64_t)step) * 0x9E3779B97F4A7C15ull};
    if (s->shard) shard_update(g, 1, h);
    else if (s->optimizer == GPU_ADAMW8)
        k_adamw8<<<gs_grid(g->plan.nblocks, 1), Q8_BLOCK>>>(o, g->qm, g->qv, g->sm, g->sv, g->seg_q8, s->q8_units, h);
    else k_adamw<<<grid_for(s->total), 256>>>(o, g->m, g->v, h);
    hipCheckLaunch();
    prof(g, P_OPT);
}

// 8-bit AdamW's whole state in model.h's layout, both ways: codes at the table's (the shard's) offsets, scales in the
// plan's blocks (model.h adamw8_shard's); before the first update the device has none (zeros on the host)
void gpu_copy_adamw8(GpuModel *g, int8_t *qm, uint8_t *qv, float *sm, float *sv, int to_device) {
    const GpuSpec *s = &g->s;
    if (s->optimizer != GPU_ADAMW8) fail_msg("gpu_copy_adamw8: this model's optimizer is not 8-bit AdamW");
    size_t n = s->shard ? s->shard : s->total, nb = g->plan.nblocks;
    if (!g->qm && !to_device) {
        memset(qm, 0, n), memset(qv, 0, n), memset(sm, 0, sizeof(float) * nb), memset(sv, 0, sizeof(float) * nb);
        return;
    }
    states_alloc(g);
    void *dev[4] = {g->qm, g->qv, g->sm, g->sv}, *host[4] = {qm, qv, sm, sv};
    size_t bytes[4] = {n, n, sizeof(float) * nb, sizeof(float) * nb};
    for (int k = 0; k < 4; k++)
        if (to_device) hipCheck(hipMemcpy(dev[k], host[k], bytes[k], hipMemcpyHostToDevice));
        else hipCheck(hipMemcpy(host[k], dev[k], bytes[k], hipMemcpyDeviceToHost));
}

void gpu_set_shard(GpuModel *g, int rank, int npiece, const size_t *piece) {
    const GpuSpec *s = &g->s;
    const GpuPlan *p = &g->plan;
    if (!s->shard || npiece > p->npiece_max) fail_msg("internal: gpu_set_shard on a model not planned for this shard");
    size_t *so = (size_t *)calloc(npiece + 1, sizeof(size_t)), *to = (size_t *)calloc(npiece + 1, sizeof(size_t));
    size_t *sf = (size_t *)calloc(npiece + 1, sizeof(size_t));
    unsigned char *fl = (unsigned char *)calloc(npiece + 1, 1);
    free(g->sh_rng), free(g->sh_piece);
    g->sh_rng = (size_t *)calloc(2 * (size_t)npiece + 2, sizeof(size_t));
    g->sh_piece = (size_t *)calloc(4 * (size_t)npiece + 4, sizeof(size_t));
    memcpy(g->sh_piece, piece, sizeof(size_t) * 4 * npiece);
    g->nrng = 0;
    for (int k = 0; k < npiece; k++) {
        const size_t *q = piece + 4 * k;  // table offset, shard offset, floats, tail
        int i = tensor_of(g, q[0]), own = !q[3] || rank == 0;
        so[k] = q[1], to[k] = q[0];
        if (k > 0 && so[k] != so[k - 1] + piece[4 * (k - 1) + 2]) fail_msg("internal: the shard's pieces are not contiguous");
        fl[k] = s->tensor_flag[i] | (plan_is_small(s, i) && own ? OPT_SMALL : 0);
        sf[k] = plan_is_small(s, i) ? p->wofs[i] + (q[0] - s->tensor_off[i]) : 0;
        if (!own || !q[2]) continue;  // rank 0 counts the replicated tails in the norm, once; adjacent ranges merge
        size_t *r = g->sh_rng + 2 * (size_t)(g->nrng > 0 ? g->nrng - 1 : 0), at = q[s->shard_grads ? 1 : 0];
        if (g->nrng && r[0] + r[1] == at) r[1] += q[2];
        else g->sh_rng[2 * g->nrng] = at, g->sh_rng[2 * g->nrng + 1] = q[2], g->nrng++;
    }
    so[npiece] = npiece ? piece[4 * (npiece - 1) + 1] + piece[4 * (npiece - 1) + 2] : 0;
    if (so[npiece] != s->shard) fail_msg("internal: the shard's pieces do not add up to GpuSpec.shard");
    hipCheck(hipMemcpy(g->sh_off, so, sizeof(size_t) * (npiece + 1), hipMemcpyHostToDevice));
    hipCheck(hipMemcpy(g->sh_tofs, to, sizeof(size_t) * npiece, hipMemcpyHostToDevice));
    hipCheck(hipMemcpy(g->sh_sofs, sf, sizeof(size_t) * npiece, hipMemcpyHostToDevice));
    hipCheck(hipMemcpy(g->sh_flag, fl, npiece, hipMemcpyHostToDevice));
    g->npiece = npiece;
    free(so), free(to), free(sf), free(fl);
}

void gpu_shard_buffers(GpuModel *g, float **w32, size_t *n32, void **wb) {
    *w32 = g->w32, *n32 = g->plan.n_w32, *wb = g->wb;
}

// =================================================================================================
// Masks (pruning)
// =================================================================================================

static void set_mask(GpuModel *g, float **dev, float **grad, const float *host, size_t n) {
    if (!host) {
        if (*dev) hipCheck(hipFree(*dev)), hipCheck(hipFree(*grad)), g->bytes -= 2 * plan_align(sizeof(float) * n);
        *dev = *grad = NULL;
        return;
    }
    if (!*dev) {
        *dev = GALLOC(g, float, n);
        *grad = GALLOC(g, float, n);
        hipCheck(hipMemset(*grad, 0, sizeof(float) * n));
    }
    hipCheck(hipMemcpy(*dev, host, sizeof(float) * n, hipMemcpyHostToDevice));
}

void gpu_set_masks(GpuModel *g, const float *zl, const float *zh, const float *zf, const float *zd) {
    const GpuSpec *s = &g->s;
    set_mask(g, &g->zl, &g->dzl, zl, s->L);
    set_mask(g, &g->zh, &g->dzh, zh, (size_t)s->L * s->H);
    set_mask(g, &g->zf, &g->dzf, zf, (size_t)s->L * s->F);
    set_mask(g, &g->zd, &g->dzd, zd, s->d);
    free(g->zl_host);
    g->zl_host = NULL;
    if (zl) {
        g->zl_host = (float *)malloc(sizeof(float) * s->L);
        memcpy(g->zl_host, zl, sizeof(float) * s->L);
    }
    g->zd_kept = s->d;
    if (zd) {
        g->zd_kept = 0;
        for (int i = 0; i < s->d; i++) g->zd_kept += zd[i] != 0.0f;
        if (g->zd_kept == 0) fail_msg("the hidden mask removed every dimension");
    }
}

void gpu_get_mask_grads(GpuModel *g, float *dzl, float *dzh, float *dzf, float *dzd) {
    const GpuSpec *s = &g->s;
    if (dzl && g->dzl) hipCheck(hipMemcpy(dzl, g->dzl, sizeof(float) * s->L, hipMemcpyDeviceToHost));
    if (dzh && g->dzh) hipCheck(hipMemcpy(dzh, g->dzh, sizeof(float) * s->L * s->H, hipMemcpyDeviceToHost));
    if (dzf && g->dzf) hipCheck(hipMemcpy(dzf, g->dzf, sizeof(float) * (size_t)s->L * s->F, hipMemcpyDeviceToHost));
    if (dzd && g->dzd) hipCheck(hipMemcpy(dzd, g->dzd, sizeof(float) * s->d, hipMemcpyDeviceToHost));
}

void gpu_hard_concrete(GpuModel *g, const float *la, const float *u, float *z, float *dzdla, size_t n) {
    if (g->hc_n < n) {
        if (g->hc) hipCheck(hipFree(g->hc)), g->bytes -= plan_align(sizeof(float) * 4 * g->hc_n);
        g->hc = GALLOC(g, float, 4 * n);
        g->hc_n = n;
    }
    float *dla = g->hc, *du = dla + n, *dz = du + n, *dd = dz + n;
    hipCheck(hipMemcpy(dla, la, sizeof(float) * n, hipMemcpyHostToDevice));
    hipCheck(hipMemcpy(du, u, sizeof(float) * n, hipMemcpyHostToDevice));
    k_hard_concrete<<<grid_for(n), 256>>>(dz, dd, dla, du, n);
    hipCheckLaunch();
    hipCheck(hipMemcpy(z, dz, sizeof(float) * n, hipMemcpyDeviceToHost));
    hipCheck(hipMemcpy(dzdla, dd, sizeof(float) * n, hipMemcpyDeviceToHost));
}

// =================================================================================================
// Forward statistics (profile stats): hip/stats.h's kernels on the forward's buffers, sums kept here
// =================================================================================================

void gpu_stats_on(GpuModel *g, float tau, int rows) {
    const GpuSpec *s = &g->s;
    size_t L = s->L, H = s->H, F = s->F, n = L * 12 + 2 * L * H + 2 * L * F, nb = gs_cdiv(g->N, FFN_ROWS);
    if (rows < 0 || rows > g->B) fail_msg("gpu_stats_on: rows outside the batch");
    if (!g->st) {
        g->st = GALLOC(g, double, n + nb * 2 * F);
        hipCheck(hipMemset(g->st, 0, sizeof(double) * n));
        g->st_res = g->st, g->st_ent = g->st_res + L * 12, g->st_entn = g->st_ent + L * H;
        g->st_fabs = g->st_entn + L * H, g->st_fzero = g->st_fabs + L * F, g->st_part = g->st_fzero + L * F;
        g->st_thr = GALLOC(g, float, g->N);
    }
    g->st_tau = tau, g->st_rows = rows * g->T;
}

void gpu_stats_get(GpuModel *g, double *res, double *ent, double *entn, double *fabs_, double *fzero) {
    const GpuSpec *s = &g->s;
    size_t L = s->L, H = s->H, F = s->F, n = L * 12 + 2 * L * H + 2 * L * F;
    if (!g->st) fail_msg("gpu_stats_get before gpu_stats_on");
    double *h = (double *)malloc(sizeof(double) * n);
    if (!h) fail_msg("out of host memory for the statistics");
    hipCheck(hipMemcpy(h, g->st, sizeof(double) * n, hipMemcpyDeviceToHost));
    hipCheck(hipMemset(g->st, 0, sizeof(double) * n));
    memcpy(res, h, sizeof(double) * L * 12), memcpy(ent, h + L * 12, sizeof(double) * L * H);
    memcpy(entn, h + L * 12 + L * H, sizeof(double) * L * H);
    memcpy(fabs_, h + L * 12 + 2 * L * H, sizeof(double) * L * F), memcpy(fzero, h + L * 12 + 2 * L * H + L * F, sizeof(double) * L * F);
    free(h);
}

void gpu_profile_print(GpuModel *g) {
    if (!g->prof) return;
    double tot = 0;
    for (int i = 0; i < P_N; i++) tot += g->prof_t[i];
    printf("profile (GS_PROFILE=1, synchronised after each part; total %.1f ms):\n", tot * 1e3);
    for (int i = 0; i < P_N; i++)
        printf("  %-16s %9.1f ms  %5.1f%%\n", prof_name[i], g->prof_t[i] * 1e3, tot > 0 ? 100 * g->prof_t[i] / tot : 0);
    memset(g->prof_t, 0, sizeof g->prof_t);
}
