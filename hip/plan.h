// hip/plan.h — what gpu_create allocates, as arithmetic over a GpuSpec and one B x T batch: gpu_create carves its
// buffers by this plan, and ./profile memory --device gpu predicts the device memory by it (no GPU needed).
// Plain C, also compiled as C++ (hip/gpu.hip, hip/attention.h). Sizes in bytes unless named as elements.
//
// The parameter block. Every tensor has its table offset (model.h's layout); what the GPU keeps of it:
//   bf16 copy      wb over the whole table (every product reads it)                                  2 B
//   fp32 master    w32, every tensor; with GpuSpec.bf16_only the matrices have none (their bf16 copy is
//                  the weight, updated with stochastic rounding): the norms and the embedding only   4 B / 0
//   gradient       g32 (fp32), every tensor; with GpuSpec.grad_bf16 the matrices' in g16 (bf16)       4 B / 2 B
//   optimizer      AdamW: m, v fp32 over the table; 8-bit AdamW: a byte each over the table and two
//                  fp32 scales per block of 256 (train.c's layout); made at the first update          8 B / 2 B
// ZeRO 1 (GpuSpec.shard): the fp32 master and AdamW's m, v of the rank's shard only (4 + 8 B a parameter / ranks);
// w32 keeps the tensors kernels read in fp32 (norm weights, layer_scalar), whole; the piece tables.
// ZeRO 2 (GpuSpec.shard_grads): the gradient of the shard (4 B a parameter / ranks), and g32 holds only what the
// backward writes into before its unit leaves: the first unit (the embedding) and the last (the final norm) whole,
// then two buckets of the largest layer's unit; layer l writes into bucket l % 2.
// ZeRO 3 (GpuSpec.shard_weights): the bf16 copy of the shard (2 B a parameter / ranks), and wb laid out as stage 2's
// g32 (the same element offsets): the embedding and the final norm whole, two buckets a layer's weights are gathered
// into before its forward and its backward.
// A buffer that holds only some tensors packs them in table order, each at an offset congruent to its table
// offset mod 8 (the optimizer's 16-byte loads stay aligned; tensors adjacent in the table, such as q|k|v, stay
// adjacent); one that holds all of them is laid out as the table.
// Device allocations: w32, wb, g32, g16, one pool (the small tables, the residual stream and the head's inputs,
// every layer's kept activations, carved at 256-byte boundaries), the scratch region ws; later the optimizer's
// states, and the pruning masks.
#pragma once
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu.h"

// --- the banded attention backward's buffers (hip/attention.h) -------------------------------------------------
// With one kv head, a sliding layer whose window is a multiple of ATT_BQ (and at most T − ATT_BQ) takes its
// backward as batched BLAS products over the band of window + ATT_BQ keys per query block; a full layer in ATT_FG
// query groups. Their buffers live in the scratch region.
#define ATT_BQ 64
#define ATT_FG 4
static inline int attn_band_shape_ok(int K, int D, int window, int T) {
    return K == 1 && D % 8 == 0 && window > 0 && window % ATT_BQ == 0 && window + ATT_BQ <= T && T % ATT_BQ == 0;
}
static inline int attn_full_shape_ok(int K, int D, int window, int T) {
    return K == 1 && D % 8 == 0 && (window <= 0 || window >= T) && T % (8 * ATT_FG) == 0;
}
static inline int attn_band_pad(int window) { return window; }  // rows of padding around k, v, q, dO (nb·ATT_BQ)
static inline size_t attn_band_f32(int N, int H, int window) { return (size_t)N * H * (window + ATT_BQ); }
static inline size_t attn_band_bf16(int N, int H, int window) {
    return (size_t)(N / ATT_BQ + window / ATT_BQ) * ((size_t)ATT_BQ * H * (window + ATT_BQ) + ATT_BQ);
}
static inline size_t attn_full_f32(int N, int H, int T) { return (size_t)N * H * (T / ATT_FG); }
static inline size_t attn_full_bf16(int N, int H, int T) { return (size_t)N * H * T; }

// What the device holds beyond gpu_create's buffers while it steps: cuBLASLt's workspace (32 MiB, hip/blas.hip),
// cuBLAS's own (32 MiB on Hopper) and the handles. The 1B step's peak (bench, H200) sat 0.11 GiB above its
// allocations; ./profile memory --device gpu adds this much.
#define GPU_PLAN_RUNTIME ((size_t)128 << 20)

// --- the plan ----------------------------------------------------------------------------------------------------
// the pool's small tables, stream buffers and per-layer buffers (hip/gpu.hip's LayerBuf), in carving order
enum { TB_SEG_OFF, TB_SEG_WOFS, TB_SEG_GOFS, TB_Q8, TB_SEG_FLAG, TB_PROD, TB_ZERO, TB_PART, TB_SUMSQ, TB_N };
enum { ST_XL, ST_RF, ST_XF, ST_TOK, ST_TGT, ST_LOSS, ST_DXF, ST_DI, ST_N };
enum { GACT_R_IN, GACT_QKV, GACT_RQ, GACT_RK, GACT_RV, GACT_ATT, GACT_LSE, GACT_O, GACT_R_PA, GACT_R_PF, GACT_GU, GACT_F, GACT_R_PFF,
       GACT_CK, GACT_N };  // (GACT_: model.h's ACT_ name the CPU path's); GACT_CK: a checkpointed layer's input
// the scratch region's buffers, in carving order (the head's logits chunk shares the region instead)
enum { WS_X2, WS_DX, WS_S1, WS_S2, WS_S3, WS_SF1, WS_SF2, WS_SG, WS_QS, WS_KS, WS_VS, WS_DQ, WS_DK, WS_DV, WS_BAND_S,
       WS_BAND_DP, WS_BAND_P, WS_BAND_DS, WS_CK, WS_N };  // WS_CK: the checkpointed layers' shared buffers

typedef struct {
    // the parameter block (elements): each tensor's offset in w32 and in g32 or g16 (by GpuSpec.tensor_flag bit 3
    // and grad_bf16); the 8-bit blocks: each unit's first element in the shard (the table at ZeRO 0) and first block
    size_t *wofs, *gofs, *q8;    // [ntensor], [ntensor], [2 (q8_units + 1)]: GpuSpec.q8_at, then the block starts
    size_t *uofs;                // ZeRO 2: where each unit of the partition starts in g32 [shard_units]
    int *tunit;                  // ZeRO 2: each tensor's unit [ntensor]
    size_t n_w32, n_wb, n_g16, n_g32, nblocks;  // n_wb: the bf16 copy's elements (the table, or ZeRO 3's buckets)
    int nprod, nzero;            // gradient ranges the products overwrite / gpu_zero_grad zeroes
    // where things sit: byte offsets in the pool (tables, stream, layers, RoPE) and in ws
    size_t tb[TB_N], st[ST_N], act[GPU_MAX_LAYERS][GACT_N], rope[GPU_MAX_LAYERS], ws_off[WS_N];
    size_t act_len[GPU_MAX_LAYERS][GACT_N];  // bytes of each kept buffer (0: not kept)
    size_t ws_len[WS_N];
    int pad;                     // rows of padding around k, v, q, dO (the banded backward), and before each qkv
    int chunk;                   // rows of the head's bf16 logits per pass
    size_t part;                 // floats of the column-sum partials: a bound all the kernels' partials fit
    // bytes, by kind
    size_t params, grads, tables, stream, acts, ws;
    size_t pool;                 // tables + stream + acts: one allocation
    size_t create;               // gpu_bytes() right after gpu_create
    size_t states;               // the optimizer's, at its first update
    size_t masks;                // pruning: the four masks, their gradients, the hard-concrete scratch
    size_t shard_tables;         // ZeRO 1: the piece tables and the sum-of-squares partials (gpu_set_shard)
    int npiece_max;
} GpuPlan;

static inline size_t plan_align(size_t b) { return (b + 255) / 256 * 256; }
static inline size_t plan_carve(size_t *at, size_t bytes) {  // the next 256-aligned piece of `bytes`
    size_t o = *at;
    *at += plan_align(bytes);
    return o;
}
static inline int plan_is_matrix(const GpuSpec *s, int i) { return (s->tensor_flag[i] & 8) != 0; }
static inline int plan_qkv_cols(const GpuSpec *s, const GpuLayerSpec *ls) { return (s->H + (ls->hasv ? 2 : 1) * ls->K) * ls->D; }
static inline size_t plan_max(size_t a, size_t b) { return a > b ? a : b; }

// the tensors kernels read in fp32 (norm weights, layer_scalar): neither a product's matrix nor the token table
static inline int plan_is_small(const GpuSpec *s, int i) { return !plan_is_matrix(s, i) && s->tensor_off[i] != s->embed; }
enum { PACK_ALL, PACK_MATRIX, PACK_REST, PACK_SMALL };  // which tensors a buffer holds (PACK_REST: not matrices)
static inline int plan_in(const GpuSpec *s, int i, int cls) {
    return cls == PACK_ALL || (cls == PACK_MATRIX ? plan_is_matrix(s, i) : cls == PACK_REST ? !plan_is_matrix(s, i) : plan_is_small(s, i));
}
// the tensors of class cls packed into one buffer (PACK_ALL: laid out as the table), offsets congruent to the table's
// mod 8; returns the buffer's elements
static size_t plan_pack(const GpuSpec *s, size_t *ofs, int cls) {
    size_t at = 0;
    int all = cls == PACK_ALL;
    for (int i = 0; i < s->ntensor; i++) {
        size_t off = s->tensor_off[i];
        if (!plan_in(s, i, cls)) continue;
        at = all ? off : at + (off % 8 + 8 - at % 8) % 8;
        ofs[i] = at;
        at += s->tensor_off[i + 1] - off;
    }
    return all ? s->total : at;
}

static void gpu_plan_free(GpuPlan *p) {
    free(p->wofs), free(p->gofs), free(p->q8), free(p->uofs), free(p->tunit);
    p->wofs = p->gofs = p->q8 = p->uofs = NULL;
    p->tunit = NULL;
}

// ZeRO 2's g32 (above): each unit's start (congruent to its table offset mod 8, like plan_pack), every tensor's unit
// and its gradient offset through that unit; returns g32's elements
static size_t plan_grad_buckets(const GpuSpec *s, size_t *uofs, int *tunit, size_t *gofs) {
    int nu = s->shard_units;
    const size_t *u = s->unit;  // rows of (table offset, floats, q, shard offset)
    size_t big = 0, at = u[0] + u[1];  // the first unit at its table offset (it starts the table)
    for (int i = 1; i < nu - 1; i++) big = plan_max(big, u[4 * i + 1]);
    uofs[0] = u[0];
    uofs[nu - 1] = (at + 7) / 8 * 8 + u[4 * (nu - 1)] % 8, at = uofs[nu - 1] + u[4 * (nu - 1) + 1];
    size_t b0 = (at + 7) / 8 * 8, b1 = b0 + (big + 7) / 8 * 8 + 8;
    for (int i = 1; i < nu - 1; i++) uofs[i] = (i % 2 ? b0 : b1) + u[4 * i] % 8;  // unit i is layer i - 1
    for (int t = 0, i = 0; t < s->ntensor; t++) {
        while (i < nu - 1 && s->tensor_off[t] >= u[4 * (i + 1)]) i++;
        tunit[t] = i, gofs[t] = uofs[i] + (s->tensor_off[t] - u[4 * i]);
    }
    return b1 + (big + 7) / 8 * 8 + 8;
}

// the parameter block's part of the plan (wofs, gofs, q8, n_*, params, grads, states): it needs only the table
// (GpuSpec's ntensor, tensor_off, tensor_flag, total) and the storage options
static void gpu_plan_layout(const GpuSpec *s, GpuPlan *p) {
    size_t nt = s->ntensor, total = s->total;
    memset(p, 0, sizeof *p);
    p->wofs = (size_t *)calloc(nt + 1, sizeof(size_t));
    p->gofs = (size_t *)calloc(nt + 1, sizeof(size_t));
    size_t nu = (size_t)s->q8_units;
    p->q8 = (size_t *)calloc(2 * (nu + 1), sizeof(size_t));
    size_t *o32 = (size_t *)calloc(nt + 1, sizeof(size_t));
    if (!p->wofs || !p->gofs || !p->q8 || !o32) {
        fprintf(stderr, "error: out of host memory planning the GPU model\n");
        exit(1);
    }
    p->n_w32 = plan_pack(s, p->wofs, s->shard ? PACK_SMALL : s->bf16_only || s->forward_only ? PACK_REST : PACK_ALL);
    if (s->forward_only) {  // no gradients
    } else if (s->grad_bf16) {  // each tensor's gradient in one of the two: matrices in g16, the rest in g32
        p->n_g16 = plan_pack(s, p->gofs, PACK_MATRIX);
        p->n_g32 = plan_pack(s, o32, PACK_REST);
        for (size_t i = 0; i < nt; i++)
            if (!plan_is_matrix(s, (int)i)) p->gofs[i] = o32[i];
    } else if (s->shard_grads) {
        p->uofs = (size_t *)calloc((size_t)s->shard_units, sizeof(size_t));
        p->tunit = (int *)calloc(nt, sizeof(int));
        p->n_g32 = plan_grad_buckets(s, p->uofs, p->tunit, p->gofs);
    } else p->n_g32 = plan_pack(s, p->gofs, PACK_ALL);
    free(o32);
    // model.h's 8-bit blocks (adamw8_shard): 256 elements, each unit's from its own first element
    size_t *bl = p->q8 + nu + 1;
    for (size_t i = 0; i <= nu && s->q8_at; i++) p->q8[i] = s->q8_at[i];
    for (size_t i = 0; i < nu; i++) bl[i + 1] = bl[i] + (p->q8[i + 1] - p->q8[i] + 255) / 256;
    p->nblocks = bl[nu];
    p->n_wb = s->shard_weights ? p->n_g32 : total;
    p->params = plan_align(p->n_w32 * 4) + plan_align(p->n_wb * 2) + plan_align(s->shard * 4) +
                (s->shard_weights ? plan_align(s->shard * 2) : 0);
    p->grads = plan_align(p->n_g32 * 4) + plan_align(p->n_g16 * 2) + (s->shard_grads ? plan_align(s->shard * 4) : 0);
    p->states = s->forward_only ? 0 : s->optimizer == GPU_ADAMW8 ? 2 * plan_align(s->shard ? s->shard : total) + 2 * plan_align(p->nblocks * 4)
                                                                 : 2 * plan_align((s->shard ? s->shard : total) * 4);
    // ZeRO 1's piece tables (hip/gpu.hip gpu_set_shard): a unit's owned run and its tail split at tensor boundaries
    // (at most ntensor + 2 x units pieces), and the gradient's sum of squares: one range per piece at most, 1025
    // partials each
    p->npiece_max = s->shard ? s->ntensor + 2 * s->shard_units : 0;
    p->shard_tables = s->shard ? plan_align((p->npiece_max + 1) * 8 * 3 + p->npiece_max) + plan_align(p->npiece_max * 1025 * 8) : 0;
}

// The buffers one layer keeps (GACT_*) as the checkpointed layers share them, in the scratch region (WS_CK): at the
// widest q|k|v, attention output and kv heads of any layer; gate|up in WS_SG. Byte offsets into WS_CK and lengths
// (NULL: not wanted); returns its bytes. Each layer's q|k|v starts after its own `pad` rows (hip/gpu.hip).
static size_t plan_shared_layer(const GpuSpec *s, size_t N, size_t pad, size_t *off, size_t *len) {
    size_t d = s->d, H = s->H, maxqkv = 0, maxhd = 0, K = 0, at = 0, n[GACT_N] = {0};
    for (int l = 0; l < s->L; l++) {
        const GpuLayerSpec *ls = &s->layer[l];
        maxqkv = plan_max(maxqkv, plan_qkv_cols(s, ls)), maxhd = plan_max(maxhd, H * ls->D), K = plan_max(K, ls->K);
    }
    n[GACT_R_IN] = n[GACT_R_PA] = n[GACT_R_PF] = n[GACT_R_PFF] = N * 4;
    n[GACT_QKV] = (pad + N) * maxqkv * 2, n[GACT_RQ] = N * H * 4, n[GACT_RK] = N * K * 4, n[GACT_RV] = s->arch == 4 ? N * K * 4 : 0;
    n[GACT_ATT] = N * maxhd * 2, n[GACT_LSE] = N * H * 4, n[GACT_O] = n[GACT_F] = N * d * 2;
    for (int k = 0; k < GACT_N; k++) {
        if (off) off[k] = at;
        if (len) len[k] = n[k];
        at += plan_align(n[k]);
    }
    return at;
}

// the plan of gpu_create(s, B, T); free with gpu_plan_free
static void gpu_plan(const GpuSpec *s, int B, int T, GpuPlan *p) {
    size_t N = (size_t)B * T, d = s->d, H = s->H, F = s->F, L = s->L, nt = s->ntensor;
    gpu_plan_layout(s, p);
    // the gradient ranges (hip/gpu.hip grad_ranges): 4 products per layer; the rest at most one range per tensor
    p->nprod = 4 * s->L, p->nzero = s->ntensor;
    // --- the banded attention backward, where a layer takes it
    size_t bf = 0, bh = 0;
    int band = 0;
    for (size_t l = 0; l < L; l++) {
        const GpuLayerSpec *ls = &s->layer[l];
        int W = ls->full ? 0 : s->W;
        size_t f32 = 0, b16 = 0;
        if (s->forward_only) break;  // the attention backward's buffers: none
        if (attn_band_shape_ok(ls->K, ls->D, W, T))
            band = 1, f32 = attn_band_f32((int)N, (int)H, W), b16 = attn_band_bf16((int)N, (int)H, W);
        else if (attn_full_shape_ok(ls->K, ls->D, W, T)) f32 = attn_full_f32((int)N, (int)H, T), b16 = attn_full_bf16((int)N, (int)H, T);
        bf = plan_max(bf, f32 * 4), bh = plan_max(bh, b16 * 2);
    }
    p->pad = band ? attn_band_pad(s->W) : 0;
    size_t pad = p->pad, maxqkv = 0, maxhd = 0, maxkd = 0;
    for (size_t l = 0; l < L; l++) {
        const GpuLayerSpec *ls = &s->layer[l];
        maxqkv = plan_max(maxqkv, plan_qkv_cols(s, ls)), maxhd = plan_max(maxhd, H * ls->D);
        maxkd = plan_max(maxkd, (size_t)ls->K * ls->D);
    }
    // --- the pool: small tables, the stream, the layers
    size_t at = 0, cmax = plan_max(plan_max(F, d), maxhd);
    p->part = (N / 32 + 1) * cmax;  // rows per partial: 128 (k_colsum), 64 x heads of D (head norms), 32 (row norms)
    size_t tb[TB_N] = {(nt + 1) * 8, nt * 8, nt * 8, 2 * ((size_t)s->q8_units + 1) * 8, nt, 2 * (size_t)p->nprod * 8, 2 * (size_t)p->nzero * 8,
                       p->part * 4, 2048 * 8};
    for (int k = 0; k < TB_N; k++) p->tb[k] = plan_carve(&at, tb[k]);
    for (size_t l = 0; l < L; l++) {  // RoPE cos/sin tables; layers with the same head size and frequencies share one
        int D = s->layer[l].D;
        const float *inv = s->inv_freq + l * s->inv_stride;
        size_t q = 0;
        for (; q < l; q++)
            if (s->layer[q].D == D && !memcmp(inv, s->inv_freq + q * s->inv_stride, sizeof(float) * (D / 2))) break;
        p->rope[l] = q < l ? p->rope[q] : plan_carve(&at, (size_t)T * (D / 2) * 8);
    }
    p->tables = at;
    size_t fo = !s->forward_only;  // the head's gradient and the attention backward's row sums: not in a forward-only model
    size_t st[ST_N] = {N * d * 4, N * 4, N * d * 2, N * 4, N * 4, N * 4, fo * N * d * 4, fo * N * H * 4};
    for (int k = 0; k < ST_N; k++) p->st[k] = plan_carve(&at, st[k]);
    p->stream = at - p->tables;
    for (size_t l = 0; l < L; l++) {
        const GpuLayerSpec *ls = &s->layer[l];
        size_t D = ls->D, K = ls->K, *a = p->act_len[l];
        a[GACT_R_IN] = a[GACT_R_PA] = a[GACT_R_PF] = a[GACT_R_PFF] = N * 4;
        a[GACT_QKV] = (pad + N) * plan_qkv_cols(s, ls) * 2;  // v's pad rows: read, never used
        a[GACT_RQ] = N * H * 4, a[GACT_RK] = N * K * 4, a[GACT_RV] = s->arch == 4 ? N * K * 4 : 0;
        a[GACT_ATT] = N * H * D * 2, a[GACT_LSE] = N * H * 4, a[GACT_O] = a[GACT_F] = N * d * 2;
        a[GACT_GU] = (int)l < s->recompute ? 0 : N * 2 * F * 2;
        if ((int)l < s->checkpoint || s->forward_only) {  // checkpointed: its input, fp32 (the rest in WS_CK while it runs)
            memset(a, 0, sizeof(size_t) * GACT_N);
            a[GACT_CK] = s->forward_only ? 0 : N * d * 4;
        }
        for (int k = 0; k < GACT_N; k++) p->act[l][k] = plan_carve(&at, a[k]);
    }
    p->acts = at - p->tables - p->stream;
    p->pool = at;
    // --- the scratch region: the backward's buffers one after another, or the head's bf16 logits of `chunk` rows
    // (2 GiB at most: each chunk re-reads and re-writes the fp32 embedding gradient once), whichever is larger
    size_t maxw = plan_max(plan_max(F, maxhd), maxqkv), *w = p->ws_len;
    w[WS_X2] = w[WS_DX] = N * d * 4, w[WS_S1] = w[WS_S2] = w[WS_S3] = N * d * 2, w[WS_SF1] = N * maxw * 2;
    w[WS_SF2] = (N * maxw + pad * maxhd) * 2;
    w[WS_SG] = s->recompute > 0 || s->checkpoint > 0 || s->forward_only ? N * 2 * F * 2 : 0;
    w[WS_QS] = (N + pad) * maxhd * 2, w[WS_KS] = (pad + N) * maxkd * 2, w[WS_VS] = s->arch == 4 ? (pad + N) * maxkd * 2 : 0;
    w[WS_DQ] = N * maxhd * 4, w[WS_DK] = w[WS_DV] = N * maxkd * 2;
    w[WS_BAND_S] = w[WS_BAND_DP] = bf, w[WS_BAND_P] = w[WS_BAND_DS] = bh;
    w[WS_CK] = s->checkpoint > 0 || s->forward_only ? plan_shared_layer(s, N, pad, NULL, NULL) : 0;
    if (s->forward_only) w[WS_S2] = w[WS_S3] = w[WS_SF2] = w[WS_DK] = w[WS_DV] = 0;  // the backward's only (DQ, DX: stats)
    size_t scratch = 0;
    for (int k = 0; k < WS_N; k++) p->ws_off[k] = plan_carve(&scratch, w[k]);
    size_t chunk = ((size_t)2 << 30) / ((size_t)s->V * 2);
    p->chunk = (int)(chunk < 1 ? 1 : chunk > N ? N : chunk);
    p->ws = plan_max(scratch, (size_t)p->chunk * s->V * 2);
    p->create = p->params + p->grads + plan_align(p->pool) + plan_align(p->ws) + p->shard_tables;
    size_t nm = L + L * H + L * F + d;
    p->masks = 2 * (plan_align(L * 4) + plan_align(L * H * 4) + plan_align(L * F * 4) + plan_align(d * 4)) + plan_align(16 * nm);
}
