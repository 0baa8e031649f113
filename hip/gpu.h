// hip/gpu.h — the C interface to the GPU path (implemented in hip/gpu.hip, kernels in hip/*.h).
// A GpuModel holds one Gemma on one GPU: fp32 master weights, their bf16 copy for compute, fp32
// gradients, AdamW moments, the activations of one B x T batch, and the pruning masks' hooks.
// Layout is model.h's parameter table: the same offsets on host and device, so weights and
// gradients move with one copy each.
//
// Use from C (train.c / prune.c behind #ifdef USE_GPU, hip/bench.c, hip/dev/check_step.c):
//   #include "model.h"
//   #include "hip/gpu.h"                       // after model.h: adds gpu_spec_from_model()
//   GpuSpec *s = gpu_spec_from_model(&m);
//   s->recompute = 0;                           // or N: the first N layers recompute gate|up (less memory)
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
    unsigned char *tensor_flag;  // bit 0 weight decay, bit 1 frozen (not trained), bit 2 norm weight
    int recompute;          // layers (from the first) that keep no gate|up and recompute it in the backward:
                            // N·2F bf16 less memory each, for one more N x 2F x d product (default 0)
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
double gpu_grad_sumsq(GpuModel *g);                // Σ g² over all weight gradients (frozen ones stay 0)
// AdamW (model.h adamw_update) on every non-frozen tensor; wd only where bit 0 is set; g scaled by gscale first
void gpu_adamw(GpuModel *g, float lr, float b1, float b2, float eps, float wd, int step, float gscale);
void gpu_adam_moments(GpuModel *g, float *m, float *v, int upload);  // [total] each, host <-> device
// Masks (host arrays; NULL turns that hook off): zl [L], zh [L*H], zf [L*F], zd [d]
void gpu_set_masks(GpuModel *g, const float *zl, const float *zh, const float *zf, const float *zd);
void gpu_get_mask_grads(GpuModel *g, float *dzl, float *dzh, float *dzf, float *dzd);  // NULL: skip
// Hard-concrete sample on the device (prune.c masks_from_u): host la, u [n] -> z, dz/dla [n]
void gpu_hard_concrete(GpuModel *g, const float *la, const float *u, float *z, float *dzdla, size_t n);
// attention kernels: 2 (default) = the backward as batched BLAS where a layer has one kv head (attention.h:
// sliding band, full layers in query groups) and tensor cores elsewhere, 1 = tensor cores where they apply,
// 0 = the portable kernels everywhere
void gpu_set_attention(GpuModel *g, int mode);
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
// NULL when the GPU kernels take this shape, else why not (gpu_create stops on the same conditions)
static const char *gpu_unsupported(const Config *c) {
    if (has_e2b_extras(c)) return "the GPU path does not run Gemma 4 E2B/E4B's per-layer inputs or KV-shared layers";
    if (c->F % 2) return "the GPU path needs an even intermediate_size";
    for (int l = 0; l < c->L; l++)
        if (layer_D(c, l) > 512) return "head_dim is larger than the GPU kernels support (512)";
    return NULL;
}

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
        s->tensor_flag[i] = (unsigned char)((param_decays(e) ? 1 : 0) |
                                            (e->frozen ? 2 : 0) | (e->is_norm ? 4 : 0));
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
    return s;
}
static GpuSpec *gpu_spec_from_model(const Model *m) { return gpu_spec_from_config(&m->c, &m->tab, m->embed_scale); }
static void gpu_spec_free(GpuSpec *s) {
    if (!s) return;
    free(s->inv_freq), free(s->tensor_off), free(s->tensor_flag), free(s);
}

// --- train.c / prune.c `--device gpu`: one model on the GPU, driven with model.h's host arrays -------------
// The host keeps its Model (config, table, fp32 weights for checkpoints); the GPU holds the working copy.
typedef struct {
    GpuModel *g;
    GpuSpec *s;
    int B, T;
    int *tok, *tgt;  // [B*T] padding for forward passes of fewer than B rows
} GpuRun;

// recompute: GpuSpec.recompute (--gpu-recompute of train and prune; 0 for forward-only use)
static void gpu_run_open(GpuRun *r, const Model *m, int B, int T, int recompute) {
    const char *why = gpu_unsupported(&m->c);
    if (why) fail("--device gpu: %s; use --device cpu", why);
    if (recompute < 0 || recompute > m->c.L)
        fail("--gpu-recompute %d: expected 0 to %d (the model's layers)", recompute, m->c.L);
    size_t used0, used, total;
    gpu_memory(&used0, &total);
    r->s = gpu_spec_from_model(m);
    r->s->recompute = recompute;
    r->g = gpu_create(r->s, B, T);
    r->B = B, r->T = T;
    r->tok = (int *)mallocCheck(sizeof(int) * (size_t)B * T);
    r->tgt = (int *)mallocCheck(sizeof(int) * (size_t)B * T);
    gpu_upload(r->g, m->w);
    gpu_memory(&used, &total);
    printf("| device: %s, %.2f GiB allocated for the model and one %d x %d batch (%.2f of %.2f GiB in use)\n",
           gpu_device_name(), gpu_bytes(r->g) / 1073741824.0, B, T, used / 1073741824.0, total / 1073741824.0);
}

static void gpu_run_close(GpuRun *r) {
    if (!r->g) return;
    gpu_free(r->g), gpu_spec_free(r->s), free(r->tok), free(r->tgt);
    memset(r, 0, sizeof *r);
}

// data/mixture.h's EvalFn on the GPU: rows <= B windows of T tokens, the rest padded with ignored targets
static float gpu_eval_fn(void *ctx, const int *tok, const int *tgt, int rows, int T) {
    GpuRun *r = (GpuRun *)ctx;
    if (T != r->T || rows > r->B) fail("GPU forward pass: %d x %d windows for a model set up for %d x %d", rows, T, r->B, r->T);
    if (rows == r->B) return gpu_forward(r->g, tok, tgt, 0);
    size_t n = (size_t)rows * T, all = (size_t)r->B * T;
    memcpy(r->tok, tok, sizeof(int) * n), memcpy(r->tgt, tgt, sizeof(int) * n);
    for (size_t i = n; i < all; i++) r->tok[i] = 0, r->tgt[i] = -1;
    return gpu_forward(r->g, r->tok, r->tgt, 0);
}

static double gpu_used_gib(void) {
    size_t used, total;
    gpu_memory(&used, &total);
    return used / 1073741824.0;
}
#endif
