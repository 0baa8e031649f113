// model.h — the Gemma decoder every stage shares: config, parameter layout, CPU forward and
// backward (fp32, BLIS + OpenMP), the mask hooks prune.c switches on, loading/saving Hugging Face
// checkpoint directories, the optimizers, and the step interface train and prune drive either
// device through. Read top to bottom:
//   1. Config           (what config.json says; the source of truth for every shape)
//   2. Parameter layout  (one size table, one allocation, pointers carved from it)
//   3. Ops               (matmul, RMSNorm, RoPE, attention, GELU, cross-entropy; each with its backward)
//   4. Model             (forward, backward, masks)
//   5. Checkpoints       (HF directories in and out)
//   6. Optimizers        (AdamW, 8-bit AdamW, Muon: one state format for both devices; clipping, schedule)
//   7. Step              (one interface to the device: the CPU here, the GPU in hip/gpu.h)
// Math follows transformers' modeling_gemma3.py / modeling_gemma4.py.
// Standard dimensions: B batch, T sequence, N = B*T tokens, V vocab, d hidden, L layers,
// H query heads, K kv heads, D head_dim, F intermediate size.
#pragma once
#include "util.h"
#include <malloc.h>
#include <omp.h>
#ifdef USE_BLIS
#include <blis.h>
#endif

#define MAX_LAYERS 512

// ================================================================================================
// 1. Config
// ================================================================================================

typedef struct {
    int arch;                // 3 = Gemma 3, 4 = Gemma 4 (dense text subset)
    int V;                   // vocab_size                                      262144
    int d;                   // hidden_size                                     1152
    int L;                   // num_hidden_layers                               26
    int H;                   // num_attention_heads                             4
    int K;                   // num_key_value_heads (Gemma 4: sliding layers)   1
    int D;                   // head_dim, NOT d/H (Gemma 4: sliding layers)     256
    int F;                   // intermediate_size                               6912
    int W;                   // sliding_window: a sliding query sees W keys     512
    int full[MAX_LAYERS];    // layer_types[l] == "full_attention"              0,0,0,0,0,1,...
    double rope_local;       // RoPE θ on sliding layers (rope_local_base_freq) 10000
    double rope_global;      // RoPE θ on full layers (rope_theta)              1000000
    double rope_scale;       // linear rope scaling factor, full layers only    1 (8 on 4B+)
    double qscalar;          // query_pre_attn_scalar (Gemma 3)                 256
    double eps;              // rms_norm_eps                                    1e-6
    double final_softcap;    // final_logit_softcapping, 0 = off               0 (Gemma 4: 30)
    double attn_softcap;     // attn_logit_softcapping: always 0 (see config_from_json)
    int max_pos;             // max_position_embeddings                        32768
    int bos, eos, pad;       // special token ids                               2, 1, 0
    // Gemma 4 only
    int Dg;                  // global_head_dim: head size on full layers       512
    int Kg;                  // num_global_key_value_heads on full layers       4
    int k_eq_v;              // attention_k_eq_v: full layers have no v_proj    1
    double partial_rotary;   // proportional RoPE fraction on full layers       0.25
    int P;                   // hidden_size_per_layer_input (E2B/E4B), 0 = none 256
    int Vp;                  // vocab_size_per_layer_input                      262144
    int n_shared;            // num_kv_shared_layers: the last layers reuse K/V 20
    int double_wide;         // use_double_wide_mlp: 2F on the KV-shared layers 1
    int scale_dtype;         // dtype sqrt(d) is rounded to (ST_F32/ST_BF16/ST_F16): the checkpoint's
} Config;

// per-layer shape: Gemma 4 full layers have their own head size and kv head count
static inline int layer_D(const Config *c, int l) { return (c->arch == 4 && c->full[l]) ? c->Dg : c->D; }
static inline int layer_K(const Config *c, int l) { return (c->arch == 4 && c->full[l]) ? c->Kg : c->K; }
static inline int layer_has_v(const Config *c, int l) { return !(c->arch == 4 && c->full[l] && c->k_eq_v); }
static inline int has_e2b_extras(const Config *c) { return c->P > 0 || c->n_shared > 0; }
// Gemma 4 E2B/E4B: the last n_shared layers take K and V from kv_source (no k/v projections of their
// own) and, with use_double_wide_mlp, have an FFN of 2F
static inline int layer_shared(const Config *c, int l) { return c->n_shared > 0 && l >= c->L - c->n_shared; }
static inline int layer_F(const Config *c, int l) { return c->double_wide && layer_shared(c, l) ? 2 * c->F : c->F; }
static inline int max_F(const Config *c) { return c->double_wide && c->n_shared > 0 ? 2 * c->F : c->F; }
// where layer l's FFN channels start in per-channel arrays of all layers (the zf mask, importance scores)
static inline size_t ffn_off(const Config *c, int l) {
    size_t o = 0;
    for (int j = 0; j < l; j++) o += (size_t)layer_F(c, j);
    return o;
}
static inline int layer_nqkv(const Config *c, int l) {  // rows of the fused q|k|v projection
    int D = layer_D(c, l), K = layer_K(c, l);
    return layer_shared(c, l) ? c->H * D : (c->H + (layer_has_v(c, l) ? 2 : 1) * K) * D;
}
// the layer a KV-shared layer reads K/V from: the last non-shared layer of the same type (-1: none)
static int kv_source(const Config *c, int l) {
    if (!layer_shared(c, l)) return l;
    for (int j = c->L - c->n_shared - 1; j >= 0; j--)
        if (c->full[j] == c->full[l]) return j;
    return -1;
}
static int is_kv_source(const Config *c, int l) {
    for (int j = c->L - c->n_shared; c->n_shared > 0 && j < c->L; j++)
        if (kv_source(c, j) == l) return 1;
    return 0;
}
// Gemma 3 norms scale by (1 + w), Gemma 4 norms by w
static inline float norm_offset(const Config *c) { return c->arch == 3 ? 1.0f : 0.0f; }

// sqrt(d) as the loaders compute it: cast to the checkpoint dtype first (bf16: sqrt(3072)=55.43 -> 55.5)
static float embed_scale_for(int d, int dtype) {
    float s = (float)sqrt((double)d);
    if (dtype == ST_BF16) return bf16_to_f32(f32_to_bf16(s));
    if (dtype == ST_F16) return f16_to_f32(f32_to_f16(s));
    return s;
}

// the RoPE of one layer: which base and how each frequency is scaled
static void rope_inv_freq(const Config *c, int l, double *inv) {
    int D = layer_D(c, l);
    if (c->arch == 4 && c->full[l]) {  // proportional: only the first floor(p*D/2) frequencies rotate
        int n = (int)floor(c->partial_rotary * D / 2.0);
        for (int i = 0; i < D / 2; i++) inv[i] = i < n ? pow(c->rope_global, -2.0 * i / D) : 0.0;
        return;
    }
    double theta = c->full[l] ? c->rope_global : c->rope_local;
    double scale = c->full[l] ? c->rope_scale : 1.0;
    for (int i = 0; i < D / 2; i++) inv[i] = pow(theta, -2.0 * i / D) / scale;
}

static double rope_params_theta(const cJSON *rp, const char *kind, double def, double *factor, int *proportional,
                                double *partial, const char *src) {
    const cJSON *r = json_get(rp, kind);
    if (!r) return def;
    if (!cJSON_IsObject(r)) fail("%s: rope_parameters.%s must be an object", src, kind);
    const char *type = json_str(r, "rope_type", json_str(r, "type", "default", src), src);
    if (strcmp(type, "linear") == 0) *factor = json_num(r, "factor", 1.0, src);
    else if (strcmp(type, "proportional") == 0) {
        *proportional = 1;
        *partial = json_num(r, "partial_rotary_factor", 1.0, src);
    } else if (strcmp(type, "default") != 0)
        fail("%s: rope_parameters.%s.rope_type \"%s\" is not supported (default, linear, proportional are)", src,
             kind, type);
    return json_num(r, "rope_theta", def, src);
}

// Every field's range, in one place: config_from_json ends here (every config.json, --config and saved
// checkpoint), so no program accepts a config that a loader (ours or transformers') later rejects, and no
// size can wrap an int. A Config built another way can be checked with it too. Nothing divides before it.
static void config_validate(const Config *c, const char *src) {
    // generous bounds far above every released Gemma, so int products of them cannot overflow
    enum { MAX_DIM = 1 << 20, MAX_HEADS = 1 << 12, MAX_VOCAB = 1 << 28 };
    if (c->arch != 3 && c->arch != 4) fail("%s: unknown architecture %d", src, c->arch);
    if (c->L < 1 || c->L > MAX_LAYERS) fail("%s: num_hidden_layers %d out of range [1, %d]", src, c->L, MAX_LAYERS);
    if (c->arch == 3 && (c->P || c->n_shared)) fail("%s: per-layer inputs or KV sharing in a Gemma 3 config", src);
    int Dg = c->arch == 4 ? c->Dg : c->D, Kg = c->arch == 4 ? c->Kg : c->K;  // Gemma 3: one shape (see layer_D)
    struct { const char *name; int v, lo, hi; } f[] = {
        {"vocab_size", c->V, 1, MAX_VOCAB},          {"hidden_size", c->d, 1, MAX_DIM},
        {"intermediate_size", c->F, 1, MAX_DIM},     {"num_attention_heads", c->H, 1, MAX_HEADS},
        {"num_key_value_heads", c->K, 1, MAX_HEADS}, {"head_dim", c->D, 2, MAX_DIM},
        {"sliding_window", c->W, 1, INT32_MAX},      {"max_position_embeddings", c->max_pos, 1, INT32_MAX},
        {"global_head_dim (full layers' head_dim)", Dg, 2, MAX_DIM},
        {"num_global_key_value_heads (full layers' num_key_value_heads)", Kg, 1, MAX_HEADS},
        {"hidden_size_per_layer_input", c->P, 0, MAX_DIM},
        {"vocab_size_per_layer_input", c->Vp, c->P > 0 ? 1 : 0, MAX_VOCAB},
        {"num_kv_shared_layers", c->n_shared, 0, c->L - 1},
        {"bos_token_id", c->bos, 0, c->V - 1},       {"eos_token_id", c->eos, 0, c->V - 1},
        {"pad_token_id", c->pad, 0, c->V - 1},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i].v < f[i].lo || f[i].v > f[i].hi)
            fail("%s: %s = %d is out of range [%d, %d]; fix the config", src, f[i].name, f[i].v, f[i].lo, f[i].hi);
    if (c->D % 2 || Dg % 2) fail("%s: head_dim %d / %d must be even (RoPE rotates pairs)", src, c->D, Dg);
    if (c->H % c->K || c->H % Kg)
        fail("%s: num_attention_heads %d is not a multiple of num_key_value_heads %d (full layers: %d); heads must "
             "divide into kv groups", src, c->H, c->K, Kg);
    // hidden_size % num_attention_heads may be anything: head_dim is its own field, and transformers' Gemma 3 and
    // 4 configs accept it (Gemma3TextConfig.validate_architecture does nothing)
    struct { const char *name; double v, lo, hi; } g[] = {
        {"rms_norm_eps", c->eps, 1e-30, 1},          {"query_pre_attn_scalar", c->qscalar, 1e-30, HUGE_VAL},
        {"final_logit_softcapping", c->final_softcap, 0, HUGE_VAL},
        {"rope theta of sliding layers", c->rope_local, 1e-30, HUGE_VAL},
        {"rope theta of full layers", c->rope_global, 1e-30, HUGE_VAL},
        {"linear rope scaling factor", c->rope_scale, 1e-30, HUGE_VAL},
        {"partial_rotary_factor", c->partial_rotary, 0, 1},
    };
    for (size_t i = 0; i < sizeof g / sizeof g[0]; i++)
        if (!(g[i].v >= g[i].lo && g[i].v <= g[i].hi && isfinite(g[i].v)))
            fail("%s: %s = %g is out of range [%g, %g]; fix the config", src, g[i].name, g[i].v, g[i].lo, g[i].hi);
    int64_t Kmax = c->K > Kg ? c->K : Kg, Dmax = c->D > Dg ? c->D : Dg;
    if ((c->H + 2 * Kmax) * Dmax > INT32_MAX)
        fail("%s: (num_attention_heads + 2 num_key_value_heads) x head_dim = %lld rows of q|k|v is too large; fix the "
             "config", src, (long long)((c->H + 2 * Kmax) * Dmax));
    for (int l = c->L - c->n_shared; c->n_shared > 0 && l < c->L; l++)
        if (kv_source(c, l) < 0)
            fail("%s: KV-shared layer %d has no earlier %s layer to take K/V from", src, l,
                 c->full[l] ? "full-attention" : "sliding");
}

// an integer token id, or the first of a list of them (Gemma 3 instruction models list several eos ids)
static int config_token_id(const cJSON *j, const char *key, int def, const char *src) {
    const cJSON *v = json_get(j, key);
    if (!v || !cJSON_IsArray(v)) return json_int(j, key, def, src);
    if (cJSON_GetArraySize(v) < 1) fail("%s: %s is an empty list; give at least one token id", src, key);
    for (const cJSON *e = v->child; e; e = e->next)
        if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble) || e->valuedouble < 0 ||
            e->valuedouble > INT32_MAX)
            fail("%s: %s must list token ids (non-negative integers)", src, key);
    return (int)v->child->valuedouble;
}

// Read a Hugging Face config.json (Gemma3TextConfig, Gemma3Config's text_config, Gemma4TextConfig or
// Gemma4Config's text_config). Missing fields take the transformers class defaults; anything we do
// not implement is refused with a message naming the field.
static void config_from_json(Config *c, const cJSON *root, const char *src) {
    memset(c, 0, sizeof(*c));
    if (!cJSON_IsObject(root)) fail("%s: not a JSON object; a config.json is {\"model_type\": ..., ...}", src);
    const char *mt = json_str(root, "model_type", "", src);
    const cJSON *j = root;
    if (strcmp(mt, "gemma3") == 0 || strcmp(mt, "gemma4") == 0) {
        j = json_get(root, "text_config");
        if (!cJSON_IsObject(j)) fail("%s: model_type %s without a text_config object", src, mt);
        mt = strcmp(mt, "gemma3") == 0 ? "gemma3_text" : "gemma4_text";
    }
    if (strcmp(mt, "gemma3_text") == 0) c->arch = 3;
    else if (strcmp(mt, "gemma4_text") == 0) c->arch = 4;
    else fail("%s: model_type \"%s\" is not supported (gemma3_text, gemma3, gemma4_text, gemma4 are)", src, mt);
    int g3 = c->arch == 3;
    c->V = json_int(j, "vocab_size", g3 ? 262208 : 262144, src);
    c->d = json_int(j, "hidden_size", g3 ? 2304 : 2304, src);
    c->F = json_int(j, "intermediate_size", g3 ? 9216 : 9216, src);
    c->L = json_int(j, "num_hidden_layers", g3 ? 26 : 30, src);
    c->H = json_int(j, "num_attention_heads", 8, src);
    c->K = json_int(j, "num_key_value_heads", 4, src);
    c->D = json_int(j, "head_dim", 256, src);
    c->W = json_int(j, "sliding_window", g3 ? 4096 : 512, src);
    c->max_pos = json_int(j, "max_position_embeddings", 131072, src);
    c->eps = json_num(j, "rms_norm_eps", 1e-6, src);
    c->qscalar = g3 ? json_num(j, "query_pre_attn_scalar", 256, src) : 256;  // Gemma 4 scales queries by 1
    c->final_softcap = json_num(j, "final_logit_softcapping", 0.0, src);
    c->pad = config_token_id(j, "pad_token_id", 0, src);
    c->bos = config_token_id(j, "bos_token_id", 2, src);
    c->eos = config_token_id(j, "eos_token_id", 1, src);
    // the layer pattern below indexes full[] by layer: bound L first (config_validate checks it again)
    if (c->L < 1 || c->L > MAX_LAYERS) fail("%s: num_hidden_layers %d out of range [1, %d]", src, c->L, MAX_LAYERS);
    if (!json_bool(j, "tie_word_embeddings", 1, src))
        fail("%s: tie_word_embeddings=false is not supported (every Gemma ties them)", src);
    const char *act = json_str(j, "hidden_activation", json_str(j, "hidden_act", "gelu_pytorch_tanh", src), src);
    if (strcmp(act, "gelu_pytorch_tanh") != 0 && strcmp(act, "gelu_tanh") != 0)
        fail("%s: hidden_activation \"%s\" is not supported (gelu_pytorch_tanh is)", src, act);
    // transformers' Gemma 3 never applies attn_logit_softcapping; refuse a value rather than silently differ
    if (json_get(j, "attn_logit_softcapping"))
        fail("%s: attn_logit_softcapping is set, but transformers' Gemma 3 ignores it; set it to null", src);
    if (json_bool(j, "attention_bias", 0, src)) fail("%s: attention_bias=true is not supported", src);
    // Gemma 3: a bool; Gemma 4: null, "vision" (bidirectional among image tokens only: text stays
    // causal, so a text model is unaffected) or "all" (an encoder)
    const cJSON *bidi = json_get(j, "use_bidirectional_attention");
    if (bidi && !(cJSON_IsFalse(bidi) || (cJSON_IsString(bidi) && !strcmp(bidi->valuestring, "vision"))))
        fail("%s: use_bidirectional_attention must be false, null or \"vision\" (causal text models only)", src);

    // layer pattern: layer_types, else the older sliding_window_pattern (every p-th layer is full)
    const cJSON *lt = json_get(j, "layer_types");
    if (lt) {
        if (!cJSON_IsArray(lt) || cJSON_GetArraySize(lt) != c->L)
            fail("%s: layer_types must list %d entries, one per layer", src, c->L);
        int l = 0;
        for (const cJSON *e = lt->child; e; e = e->next, l++) {
            if (!cJSON_IsString(e)) fail("%s: layer_types[%d] must be a string", src, l);
            if (strcmp(e->valuestring, "full_attention") == 0) c->full[l] = 1;
            else if (strcmp(e->valuestring, "sliding_attention") == 0) c->full[l] = 0;
            else fail("%s: layer_types[%d] = \"%s\" (expected sliding_attention or full_attention)", src, l,
                      e->valuestring);
        }
    } else {
        int p = json_int(j, "sliding_window_pattern", 6, src);
        if (p < 1) fail("%s: sliding_window_pattern must be >= 1", src);
        for (int l = 0; l < c->L; l++) c->full[l] = (l + 1) % p == 0;
    }

    // RoPE: transformers 5 writes rope_parameters per layer type; older files rope_theta,
    // rope_local_base_freq and rope_scaling (linear, full layers only)
    c->rope_global = 1e6;
    c->rope_local = 1e4;
    c->rope_scale = 1.0;
    c->partial_rotary = 1.0;
    const cJSON *rp = json_get(j, "rope_parameters");
    if (rp && !cJSON_IsObject(rp)) fail("%s: rope_parameters must be an object or null", src);
    int prop = 0;
    if (rp && (json_get(rp, "full_attention") || json_get(rp, "sliding_attention"))) {
        double f_local = 1.0, dummy_partial = 1.0;
        int prop_local = 0;
        c->rope_global = rope_params_theta(rp, "full_attention", 1e6, &c->rope_scale, &prop, &c->partial_rotary, src);
        c->rope_local = rope_params_theta(rp, "sliding_attention", 1e4, &f_local, &prop_local, &dummy_partial, src);
        if (f_local != 1.0 || prop_local) fail("%s: scaled RoPE on sliding layers is not supported", src);
    } else {
        c->rope_global = json_num(j, "rope_theta", 1e6, src);
        c->rope_local = json_num(j, "rope_local_base_freq", 1e4, src);
        const cJSON *rs = json_get(j, "rope_scaling");
        if (!rs) rs = rp;  // a flat rope_parameters dict applies to full layers
        if (rs && !cJSON_IsObject(rs)) fail("%s: rope_scaling must be an object or null", src);
        if (rs) {
            const char *type = json_str(rs, "rope_type", json_str(rs, "type", "default", src), src);
            if (strcmp(type, "linear") == 0) c->rope_scale = json_num(rs, "factor", 1.0, src);
            else if (strcmp(type, "default") != 0)
                fail("%s: rope_scaling type \"%s\" is not supported (linear is)", src, type);
            c->rope_global = json_num(rs, "rope_theta", c->rope_global, src);
        }
    }
    if (c->arch == 3) {
        if (prop) fail("%s: proportional RoPE is a Gemma 4 feature", src);
        c->Dg = c->D;
        c->Kg = c->K;
    } else {
        // E2B/E4B's extras: per-layer inputs, KV-shared layers, double-wide MLPs on them
        c->P = json_int(j, "hidden_size_per_layer_input", 0, src);
        c->Vp = c->P > 0 ? json_int(j, "vocab_size_per_layer_input", c->V, src) : 0;
        c->n_shared = json_int(j, "num_kv_shared_layers", 0, src);
        c->double_wide = json_bool(j, "use_double_wide_mlp", 0, src);
        if (json_bool(j, "enable_moe_block", 0, src))
            fail("%s: enable_moe_block=true (the 26B-A4B mixture of experts) is not supported", src);
        if (!c->full[c->L - 1]) {  // transformers forces it too (with a warning)
            fprintf(stderr, "warning: %s: Gemma 4's last layer must be full attention; treating it as one\n", src);
            c->full[c->L - 1] = 1;
        }
        // Full layers' shape. transformers 5.17 applies num_global_key_value_heads only when
        // attention_k_eq_v is set, and saves the result as per_layer_config {"<layer>": {...}}.
        c->k_eq_v = json_bool(j, "attention_k_eq_v", 0, src);
        const cJSON *plc = json_get(j, "per_layer_config");
        if (!plc) {
            c->Dg = json_int(j, "global_head_dim", 512, src);
            c->Kg = c->k_eq_v ? json_int(j, "num_global_key_value_heads", c->K, src) : c->K;
        } else {  // every layer: its override or the defaults; one shape per layer type is supported
            if (!cJSON_IsObject(plc)) fail("%s: per_layer_config must be an object {\"<layer>\": {...}}", src);
            for (const cJSON *e = plc->child; e; e = e->next) {  // every key names a layer, every value is an object
                char *end;
                long l = strtol(e->string, &end, 10);
                if (!*e->string || *end || l < 0 || l >= c->L || !cJSON_IsObject(e))
                    fail("%s: per_layer_config[\"%s\"] must be an object for a layer in [0, %d)", src, e->string, c->L);
            }
            int seen_full = 0;
            for (int l = 0; l < c->L; l++) {
                char key[16];
                snprintf(key, sizeof key, "%d", l);
                const cJSON *e = json_get(plc, key);
                int hd = e ? json_int(e, "head_dim", c->D, src) : c->D;
                int kv = e ? json_int(e, "num_key_value_heads", c->K, src) : c->K;
                if (!c->full[l] && (hd != c->D || kv != c->K))
                    fail("%s: per_layer_config gives sliding layer %d its own shape; not supported", src, l);
                if (c->full[l] && seen_full && (hd != c->Dg || kv != c->Kg))
                    fail("%s: per_layer_config gives full layers different shapes (layer %d); not supported", src, l);
                if (c->full[l]) c->Dg = hd, c->Kg = kv, seen_full = 1;
            }
            if (!seen_full) c->Dg = c->D, c->Kg = c->K;
        }
        if (!prop) c->partial_rotary = 1.0;
    }
    if (c->max_pos >= 1 && c->W > c->max_pos) c->W = c->max_pos;
    c->attn_softcap = 0;
    if (c->final_softcap == 0) c->final_softcap = 0;  // -0 is 0: written back as null, it must read back the same
    c->scale_dtype = ST_F32;
    config_validate(c, src);
}

static void config_load(Config *c, const char *path) {
    cJSON *j = json_read(path);
    config_from_json(c, j, path);
    cJSON_Delete(j);
}

// The Gemma3TextConfig / Gemma4TextConfig JSON that transformers loads back (transformers 5 form).
static cJSON *config_to_json(const Config *c, const char *dtype) {
    cJSON *j = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(j, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString(c->arch == 3 ? "Gemma3ForCausalLM" : "Gemma4ForCausalLM"));
    cJSON_AddStringToObject(j, "model_type", c->arch == 3 ? "gemma3_text" : "gemma4_text");
    cJSON_AddNumberToObject(j, "vocab_size", c->V);
    cJSON_AddNumberToObject(j, "hidden_size", c->d);
    cJSON_AddNumberToObject(j, "intermediate_size", c->F);
    cJSON_AddNumberToObject(j, "num_hidden_layers", c->L);
    cJSON_AddNumberToObject(j, "num_attention_heads", c->H);
    cJSON_AddNumberToObject(j, "num_key_value_heads", c->K);
    cJSON_AddNumberToObject(j, "head_dim", c->D);
    cJSON_AddStringToObject(j, "hidden_activation", "gelu_pytorch_tanh");
    cJSON_AddNumberToObject(j, "max_position_embeddings", c->max_pos);
    json_add_float(j, "rms_norm_eps", c->eps);
    cJSON_AddNumberToObject(j, "sliding_window", c->W);
    cJSON *lt = cJSON_AddArrayToObject(j, "layer_types");
    for (int l = 0; l < c->L; l++)
        cJSON_AddItemToArray(lt, cJSON_CreateString(c->full[l] ? "full_attention" : "sliding_attention"));
    cJSON *rp = cJSON_AddObjectToObject(j, "rope_parameters");
    cJSON *rf = cJSON_AddObjectToObject(rp, "full_attention");
    if (c->arch == 4 && c->partial_rotary != 1.0) {
        cJSON_AddStringToObject(rf, "rope_type", "proportional");
        json_add_float(rf, "partial_rotary_factor", c->partial_rotary);
    } else if (c->rope_scale != 1.0) {
        cJSON_AddStringToObject(rf, "rope_type", "linear");
        json_add_float(rf, "factor", c->rope_scale);
    } else cJSON_AddStringToObject(rf, "rope_type", "default");
    json_add_float(rf, "rope_theta", c->rope_global);
    cJSON *rs = cJSON_AddObjectToObject(rp, "sliding_attention");
    cJSON_AddStringToObject(rs, "rope_type", "default");
    json_add_float(rs, "rope_theta", c->rope_local);
    if (c->arch == 3) cJSON_AddNumberToObject(j, "query_pre_attn_scalar", c->qscalar);  // an int field
    if (c->final_softcap > 0) json_add_float(j, "final_logit_softcapping", c->final_softcap);
    else cJSON_AddNullToObject(j, "final_logit_softcapping");
    if (c->arch == 3) cJSON_AddNullToObject(j, "attn_logit_softcapping");
    if (c->arch == 4) {  // both forms: released checkpoints' keys and transformers 5.17's per_layer_config
        cJSON_AddNumberToObject(j, "global_head_dim", c->Dg);
        cJSON_AddNumberToObject(j, "num_global_key_value_heads", c->Kg);
        cJSON_AddBoolToObject(j, "attention_k_eq_v", c->k_eq_v);
        cJSON *plc = cJSON_AddObjectToObject(j, "per_layer_config");
        for (int l = 0; l < c->L; l++) {
            if (!c->full[l]) continue;
            char key[16];
            snprintf(key, sizeof key, "%d", l);
            cJSON *e = cJSON_AddObjectToObject(plc, key);
            cJSON_AddNumberToObject(e, "head_dim", c->Dg);
            cJSON_AddNumberToObject(e, "num_key_value_heads", c->Kg);
        }
        cJSON_AddNumberToObject(j, "hidden_size_per_layer_input", c->P);
        if (c->P > 0) cJSON_AddNumberToObject(j, "vocab_size_per_layer_input", c->Vp);
        cJSON_AddNumberToObject(j, "num_kv_shared_layers", c->n_shared);
        cJSON_AddBoolToObject(j, "enable_moe_block", 0);
        cJSON_AddBoolToObject(j, "use_double_wide_mlp", c->double_wide);
    }
    cJSON_AddBoolToObject(j, "tie_word_embeddings", 1);
    cJSON_AddBoolToObject(j, "attention_bias", 0);
    cJSON_AddNumberToObject(j, "pad_token_id", c->pad);
    cJSON_AddNumberToObject(j, "bos_token_id", c->bos);
    cJSON_AddNumberToObject(j, "eos_token_id", c->eos);
    cJSON_AddStringToObject(j, "dtype", dtype);
    return j;
}

static void config_print(const Config *c, FILE *f) {
    int nfull = 0;
    for (int l = 0; l < c->L; l++) nfull += c->full[l];
    fprintf(f, "| model: Gemma %d  V=%d d=%d L=%d (%d full) H=%d K=%d D=%d F=%d window=%d\n", c->arch, c->V, c->d, c->L,
            nfull, c->H, c->K, c->D, c->F, c->W);
    fprintf(f, "|   rope local %g global %g (linear x%g)  eps %g  final softcap %g", c->rope_local, c->rope_global,
            c->rope_scale, c->eps, c->final_softcap);
    if (c->arch == 3) fprintf(f, "  query_pre_attn_scalar %g\n", c->qscalar);
    else fprintf(f, "  full layers: D=%d K=%d k_eq_v=%d partial rope %g\n", c->Dg, c->Kg, c->k_eq_v, c->partial_rotary);
    fprintf(f, "|   layers: ");
    for (int l = 0; l < c->L; l++) fputc(c->full[l] ? 'F' : 's', f);
    fputc('\n', f);
    if (has_e2b_extras(c))
        fprintf(f, "|   per-layer inputs P=%d (vocab %d), last %d layers share K/V%s\n", c->P, c->Vp, c->n_shared,
                c->double_wide ? ", their FFN 2F" : "");
}

// ================================================================================================
// 2. Parameter layout: one size table, one allocation, pointers carved from it.
//    Gradients, Adam moments and importance scores reuse the same table (same offsets).
//    Within a layer q,k,v are adjacent (one fused GEMM) and so are gate,up.
// ================================================================================================

enum {  // tensor kinds, in memory order within a layer
    T_IN_NORM, T_WQ, T_WK, T_WV, T_Q_NORM, T_K_NORM, T_WO, T_POST_ATTN_NORM,
    T_PRE_FFN_NORM, T_WGATE, T_WUP, T_WDOWN, T_POST_FFN_NORM, T_PLE_GATE, T_PLE_PROJ, T_PLE_NORM, T_LAYER_SCALAR,
    T_NKINDS,
    T_EMBED = 100, T_FINAL_NORM, T_PLE_EMBED, T_PLE_MODEL_PROJ, T_PLE_PROJ_NORM  // the last three: E2B/E4B
};

static const char *kind_hf_name[T_NKINDS] = {
    "input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
    "self_attn.q_norm.weight", "self_attn.k_norm.weight", "self_attn.o_proj.weight",
    "post_attention_layernorm.weight", "pre_feedforward_layernorm.weight", "mlp.gate_proj.weight",
    "mlp.up_proj.weight", "mlp.down_proj.weight", "post_feedforward_layernorm.weight", "per_layer_input_gate.weight",
    "per_layer_projection.weight", "post_per_layer_input_norm.weight", "layer_scalar"};

typedef struct {
    int kind, layer;    // layer -1 for embedding and final norm
    size_t rows, cols;  // cols = 1 for vectors; shape [rows, cols] as in the HF file (1-D when cols == 1)
    size_t offset;      // in floats, from the start of the block
    int is_norm;        // RMSNorm weight (no weight decay; Gemma 3 stores w for (1+w))
    int frozen;         // not trained (Gemma 4's layer_scalar is a buffer in transformers)
    char name[96];      // the Hugging Face tensor name
} PEntry;

// the token tables: the tied embedding, and E2B/E4B's per-layer one
static inline int kind_is_token_table(int kind) { return kind == T_EMBED || kind == T_PLE_EMBED; }
static inline int is_token_table(const PEntry *e) { return kind_is_token_table(e->kind); }
// weight decay (train.c's CPU optimizers, the GPU's AdamW): matrices only, never norms, token tables, frozen
static inline int param_decays(const PEntry *e) { return !e->is_norm && !is_token_table(e) && !e->frozen; }
// the hidden matrices: what Muon orthogonalizes (token tables are lookups, not matrices) and what profile memory
// gives Muon's one momentum
static inline int param_is_matrix(const PEntry *e) { return e->cols > 1 && !is_token_table(e) && !e->frozen; }
// RMSNorm weights (and Gemma 4's layer_scalar, a frozen per-layer scale): vectors that are never decayed
static inline int kind_is_norm(int kind) {
    return kind == T_IN_NORM || kind == T_Q_NORM || kind == T_K_NORM || kind == T_POST_ATTN_NORM ||
           kind == T_PRE_FFN_NORM || kind == T_POST_FFN_NORM || kind == T_PLE_NORM || kind == T_LAYER_SCALAR ||
           kind == T_FINAL_NORM || kind == T_PLE_PROJ_NORM;
}
// an RMSNorm weight proper, which Gemma 3 applies as (norm_offset + w); layer_scalar multiplies as it is
static inline int is_rms_weight(const PEntry *e) { return e->is_norm && e->kind != T_LAYER_SCALAR; }

typedef struct {
    int n;
    PEntry *e;
    size_t total;  // floats
} ParamTable;

static int param_layers(const ParamTable *t) {  // the layers the table's tensors belong to (Config.L)
    int L = 0;
    for (int i = 0; i < t->n; i++) L = t->e[i].layer + 1 > L ? t->e[i].layer + 1 : L;
    return L;
}

static void table_add(ParamTable *t, int kind, int layer, size_t rows, size_t cols) {
    PEntry *p = &t->e[t->n++];
    p->kind = kind, p->layer = layer, p->rows = rows, p->cols = cols, p->is_norm = kind_is_norm(kind);
    p->offset = t->total;
    p->frozen = kind == T_LAYER_SCALAR;
    t->total += rows * cols;
    if (kind == T_EMBED) snprintf(p->name, sizeof p->name, "model.embed_tokens.weight");
    else if (kind == T_FINAL_NORM) snprintf(p->name, sizeof p->name, "model.norm.weight");
    else if (kind == T_PLE_EMBED) snprintf(p->name, sizeof p->name, "model.embed_tokens_per_layer.weight");
    else if (kind == T_PLE_MODEL_PROJ) snprintf(p->name, sizeof p->name, "model.per_layer_model_projection.weight");
    else if (kind == T_PLE_PROJ_NORM) snprintf(p->name, sizeof p->name, "model.per_layer_projection_norm.weight");
    else snprintf(p->name, sizeof p->name, "model.layers.%d.%s", layer, kind_hf_name[kind]);
}

// The shape [rows, cols] of tensor `kind` of layer l (l = -1: the model-level tensors) as the Hugging Face
// file stores it (cols = 1 for vectors); 0 when the config has none: KV-shared layers have no k/v projections
// and no k norm, K=V full layers no v_proj, Gemma 3 no layer_scalar, models without P no per-layer inputs.
// Per-layer inputs (E2B/E4B): a token table of L*P, a projection of the embedding, a norm over P.
static int tensor_dims(const Config *c, int kind, int l, size_t *rows, size_t *cols) {
    size_t d = (size_t)c->d, H = (size_t)c->H, P = (size_t)c->P, r = 0, k = 1;
    if (l < 0) {
        if (kind == T_EMBED) r = (size_t)c->V, k = d;
        else if (kind == T_FINAL_NORM) r = d;
        else if (kind == T_PLE_EMBED) r = (size_t)c->Vp, k = (size_t)c->L * P;
        else if (kind == T_PLE_MODEL_PROJ) r = (size_t)c->L * P, k = d;
        else if (kind == T_PLE_PROJ_NORM) r = P;
        *rows = r, *cols = k;
        return r * k > 0;
    }
    size_t D = (size_t)layer_D(c, l), K = (size_t)layer_K(c, l), F = (size_t)layer_F(c, l);
    int own_kv = !layer_shared(c, l);
    switch (kind) {
    case T_WQ: r = H * D, k = d; break;
    case T_WK: r = own_kv ? K * D : 0, k = d; break;
    case T_WV: r = own_kv && layer_has_v(c, l) ? K * D : 0, k = d; break;
    case T_Q_NORM: r = D; break;
    case T_K_NORM: r = own_kv ? D : 0; break;
    case T_WO: r = d, k = H * D; break;
    case T_WGATE: case T_WUP: r = F, k = d; break;
    case T_WDOWN: r = d, k = F; break;
    case T_PLE_GATE: r = P, k = d; break;
    case T_PLE_PROJ: r = P ? d : 0, k = P; break;
    case T_PLE_NORM: r = P ? d : 0; break;
    case T_LAYER_SCALAR: r = c->arch == 4; break;
    default: r = d; break;  // the four d-sized norms
    }
    *rows = r, *cols = k;
    return r * k > 0;
}

// the model-level tensors before the layers, in file order (the final norm comes after the layers)
static const int model_kinds_first[4] = {T_EMBED, T_PLE_EMBED, T_PLE_MODEL_PROJ, T_PLE_PROJ_NORM};

static void param_table(const Config *c, ParamTable *t) {
    t->n = 0, t->total = 0;
    t->e = (PEntry *)callocCheck(sizeof(PEntry) * (size_t)(5 + T_NKINDS * c->L));
    size_t r, k;
    for (int i = 0; i < 4; i++)
        if (tensor_dims(c, model_kinds_first[i], -1, &r, &k)) table_add(t, model_kinds_first[i], -1, r, k);
    for (int l = 0; l < c->L; l++)
        for (int kind = 0; kind < T_NKINDS; kind++)
            if (tensor_dims(c, kind, l, &r, &k)) table_add(t, kind, l, r, k);
    tensor_dims(c, T_FINAL_NORM, -1, &r, &k);
    table_add(t, T_FINAL_NORM, -1, r, k);
}

// floats of the table's largest tensor (the buffer that holds any one of them)
static size_t param_largest(const ParamTable *t) {
    size_t big = 0;
    for (int i = 0; i < t->n; i++) big = t->e[i].rows * t->e[i].cols > big ? t->e[i].rows * t->e[i].cols : big;
    return big;
}

// non-embedding parameters (what Sheared-LLaMA targets count) and the total
static size_t count_params(const Config *c, int with_embedding) {
    ParamTable t;
    param_table(c, &t);
    size_t emb = (size_t)c->V * c->d + (size_t)c->Vp * c->L * c->P;  // both token tables
    size_t n = with_embedding ? t.total : t.total - emb;
    free(t.e);
    return n;
}

typedef struct {
    float *in_norm, *wq, *wk, *wv, *q_norm, *k_norm, *wo, *post_attn_norm;
    float *pre_ffn_norm, *wgate, *wup, *wdown, *post_ffn_norm, *layer_scalar;
    float *ple_gate, *ple_proj, *ple_norm;  // E2B/E4B per-layer input: [P, d], [d, P], [d]
} LayerParams;

typedef struct {
    float *embed;       // [V, d]  tied: also the output matrix
    float *final_norm;  // [d]
    LayerParams *layer; // [L]
    float *ple_embed;   // [Vp, L*P]  E2B/E4B per-layer token table (NULL without)
    float *ple_mproj;   // [L*P, d]   per_layer_model_projection
    float *ple_pnorm;   // [P]        per_layer_projection_norm
} Params;

static Params params_carve(const Config *c, const ParamTable *t, float *block) {
    Params p;
    memset(&p, 0, sizeof p);
    p.layer = (LayerParams *)callocCheck(sizeof(LayerParams) * (size_t)c->L);
    for (int i = 0; i < t->n; i++) {
        const PEntry *e = &t->e[i];
        float *ptr = block + e->offset;
        if (e->kind == T_EMBED) { p.embed = ptr; continue; }
        if (e->kind == T_FINAL_NORM) { p.final_norm = ptr; continue; }
        if (e->kind == T_PLE_EMBED) { p.ple_embed = ptr; continue; }
        if (e->kind == T_PLE_MODEL_PROJ) { p.ple_mproj = ptr; continue; }
        if (e->kind == T_PLE_PROJ_NORM) { p.ple_pnorm = ptr; continue; }
        LayerParams *lp = &p.layer[e->layer];
        float **slot[T_NKINDS] = {&lp->in_norm, &lp->wq, &lp->wk, &lp->wv, &lp->q_norm, &lp->k_norm, &lp->wo,
                                  &lp->post_attn_norm, &lp->pre_ffn_norm, &lp->wgate, &lp->wup, &lp->wdown,
                                  &lp->post_ffn_norm, &lp->ple_gate, &lp->ple_proj, &lp->ple_norm, &lp->layer_scalar};
        *slot[e->kind] = ptr;
    }
    return p;
}

// ================================================================================================
// 3. Ops. Row-major throughout; a weight W[out, in] is used as y = x W^T like torch.nn.Linear.
// ================================================================================================

// --- threads: an OpenMP team no larger than the free cores -------------------------------------------
// A team larger than the cores other processes leave free collapses: every barrier (BLIS's included)
// waits for a thread the kernel has descheduled, so on a shared machine 2 threads beside one busy process
// on 2 cores are slower than 1 (NOTES.md §2). Unless OMP_NUM_THREADS is set, every program takes one thread
// per core left idle over 100 ms of /proc/stat before main() (at least 1, at most the CPUs it may use).
static double idle_cores(void) {  // -1 when /proc/stat cannot be read
    unsigned long long v[2][10] = {{0}};
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    struct timespec wait = {0, 100000000};
    for (int k = 0; k < 2; k++) {
        if (k) nanosleep(&wait, NULL);
        FILE *f = fopen("/proc/stat", "r");
        if (!f) return -1;
        int got = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[k][0], &v[k][1], &v[k][2], &v[k][3],
                         &v[k][4], &v[k][5], &v[k][6], &v[k][7]);
        fclose(f);
        if (got != 8) return -1;
    }
    unsigned long long total = 0, idle = (v[1][3] - v[0][3]) + (v[1][4] - v[0][4]);  // idle + iowait
    for (int i = 0; i < 8; i++) total += v[1][i] - v[0][i];  // user .. steal (a VM's stolen time is busy)
    return total && online > 0 ? (double)idle / total * online : -1;
}

__attribute__((constructor)) static void threads_init(void) {
    int ncpu = omp_get_num_procs();
    if (getenv("OMP_NUM_THREADS") || ncpu <= 1) return;
    double idle = idle_cores();
    if (idle < 0) return;
    int n = (int)(idle + 0.25);  // a core counts when at least 3/4 of it is idle
    omp_set_num_threads(n < 1 ? 1 : n > ncpu ? ncpu : n);
}

static int blas_ready = 0;

// Debian's BLIS 0.9 does not recognise recent AMD CPUs and picks its slow generic kernels. Ask for
// the AVX-512 (skx) kernels when, and only when, the CPU has the instructions they use.
static void blas_init(void) {
    if (blas_ready) return;
    blas_ready = 1;
    // Keep large buffers in the heap: glibc otherwise maps and unmaps every block over 128 KiB, and each
    // step would pay for fresh zeroed pages and TLB shootdowns (~15% of a step on the M bench shape).
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
#ifdef USE_BLIS
    if (!getenv("BLIS_ARCH_TYPE")) {
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
            __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
            setenv("BLIS_ARCH_TYPE", "0", 1);  // 0 = skx in BLIS 0.9's arch enum
        else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
            setenv("BLIS_ARCH_TYPE", "3", 1);  // 3 = haswell
    }
    if (!getenv("BLIS_NUM_THREADS")) bli_thread_set_num_threads(omp_get_max_threads());
#endif
}

static const char *blas_kernels(void) {
#ifdef USE_BLIS
    blas_init();
    return bli_arch_string(bli_arch_query_id());
#else
    return "plain C (no BLIS)";
#endif
}

static double blas_seconds = 0;  // time spent in matmul, for the benchmark's "share of time in BLIS"

// C[M,N] = alpha * op(A) op(B) + beta * C, row-major; op(A) is [M,K], op(B) is [K,N].
static void matmul(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                   int ldb, float beta, float *C, int ldc) {
    if (M == 0 || N == 0) return;
    double t0 = now_sec();
#ifdef USE_BLIS
    blas_init();
    // BLIS takes general strides: a row-major [r, c] matrix with leading dimension ld has rs=ld, cs=1.
    // Inside a parallel region each thread runs a product of its own: one BLIS thread, no team to start.
    rntm_t one = BLIS_RNTM_INITIALIZER;
    bli_rntm_set_num_threads(1, &one);
    bli_sgemm_ex(transA ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, transB ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, M, N, K,
                 &alpha, (float *)A, lda, 1, (float *)B, ldb, 1, &beta, C, ldc, 1, NULL,
                 omp_in_parallel() ? &one : NULL);
#else
#pragma omp parallel for schedule(static)
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        for (int j = 0; j < N; j++) c[j] = beta == 0 ? 0 : beta * c[j];
        for (int k = 0; k < K; k++) {
            float a = alpha * (transA ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]);
            if (transB) for (int j = 0; j < N; j++) c[j] += a * B[(size_t)j * ldb + k];
            else for (int j = 0; j < N; j++) c[j] += a * B[(size_t)k * ldb + j];
        }
    }
#endif
    if (omp_get_thread_num() == 0) blas_seconds += now_sec() - t0;  // in a parallel region: thread 0's share
}

// y = x W^T (+ y if accumulate): x [N, in], W [out, in], y [N, out]
static void linear_forward(float *y, const float *x, const float *W, int N, int in, int out) {
    matmul(0, 1, N, out, in, 1.0f, x, in, W, in, 0.0f, y, out);
}
// dx (+)= dy W ; dW += dy^T x
static void linear_backward(float *dx, float *dW, const float *dy, const float *x, const float *W, int N, int in,
                            int out, int accumulate_dx) {
    if (dW) matmul(1, 0, out, in, N, 1.0f, dy, out, x, in, 1.0f, dW, in);
    if (dx) matmul(0, 0, N, in, out, 1.0f, dy, out, W, in, accumulate_dx ? 1.0f : 0.0f, dx, in);
}

// --- RMSNorm, with the masks of pruning --------------------------------------------------------------
// y_i = x_i * r * (off + w_i) * z_i * gate,   r = 1 / sqrt(sum_{i kept} x_i^2 / n_kept + eps)
// kept = {i : z_i != 0} (all when z is NULL); off = 1 for Gemma 3's (1+w), 0 for Gemma 4's w;
// w == NULL is a weightless norm (Gemma 4's v norm). gate is the layer mask (1 when off).

static inline float rms_row_forward(float *y, const float *x, const float *w, float off, const float *z, int n_kept,
                                    float gate, int C, double eps) {
    double ss = 0;
    for (int i = 0; i < C; i++)
        if (!z || z[i] != 0.0f) ss += (double)x[i] * x[i];
    float r = (float)(1.0 / sqrt(ss / (z ? n_kept : C) + eps));
    for (int i = 0; i < C; i++) y[i] = x[i] * r * (w ? off + w[i] : 1.0f) * (z ? z[i] * gate : gate);
    return r;
}

// dx += d y / d x given dy (the weight, mask and gate gradients are reduced separately)
static inline void rms_row_backward(float *dx, const float *dy, const float *x, float r, const float *w, float off,
                                    const float *z, int n_kept, float gate, int C) {
    double dot = 0;  // sum_j dy_j g_j m_j x_j over kept j
    for (int i = 0; i < C; i++)
        if (!z || z[i] != 0.0f) dot += (double)dy[i] * (w ? off + w[i] : 1.0f) * (z ? z[i] * gate : gate) * x[i];
    float c3 = (float)dot * r * r * r / (float)(z ? n_kept : C);
    for (int i = 0; i < C; i++) {
        if (z && z[i] == 0.0f) continue;  // not kept: neither in the statistic nor in the output
        dx[i] += r * dy[i] * (w ? off + w[i] : 1.0f) * (z ? z[i] * gate : gate) - x[i] * c3;
    }
}

// N rows of C at strides ldx / ldy
static void rmsnorm_forward(float *y, int ldy, float *rstd, const float *x, int ldx, const float *w, float off,
                            const float *z, int n_kept, float gate, int N, int C, double eps) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        rstd[n] = rms_row_forward(y + (size_t)n * ldy, x + (size_t)n * ldx, w, off, z, n_kept, gate, C, eps);
}

// Backward of rmsnorm_forward given dy. dx is ACCUMULATED (+=). dw, dz, dgate are accumulated when
// non-NULL. Reductions over rows run per column block, so results do not depend on the thread count.
static void rmsnorm_backward(float *dx, int lddx, float *dw, float *dz, float *dgate, const float *dy, int lddy,
                             const float *x, int ldx, const float *rstd, const float *w, float off, const float *z,
                             int n_kept, float gate, int N, int C) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        rms_row_backward(dx + (size_t)n * lddx, dy + (size_t)n * lddy, x + (size_t)n * ldx, rstd[n], w, off, z, n_kept,
                         gate, C);
    if (dw || dz || dgate) {
        const int CB = 64;
        int nb = (C + CB - 1) / CB;
        double *gpart = (double *)callocCheck(sizeof(double) * (size_t)nb);
#pragma omp parallel for schedule(static)
        for (int b = 0; b < nb; b++) {
            int i0 = b * CB, i1 = i0 + CB < C ? i0 + CB : C;
            double acc[64] = {0};  // sum_n dy_i x_i r
            for (int n = 0; n < N; n++) {
                const float *xr = x + (size_t)n * ldx, *dyr = dy + (size_t)n * lddy;
                float r = rstd[n];
                for (int i = i0; i < i1; i++) acc[i - i0] += (double)dyr[i] * xr[i] * r;
            }
            double gs = 0;
            for (int i = i0; i < i1; i++) {
                double g = w ? off + w[i] : 1.0, zi = z ? z[i] : 1.0, t = acc[i - i0];
                if (dw) dw[i] += (float)(t * zi * gate);  // d y_i / d w_i = x_i r z_i gate
                if (dz) dz[i] += (float)(t * g * gate);   // d y_i / d z_i = x_i r g_i gate
                gs += t * g * zi;                         // d y_i / d gate = x_i r g_i z_i
            }
            gpart[b] = gs;
        }
        if (dgate) {
            double s = 0;
            for (int b = 0; b < nb; b++) s += gpart[b];
            *dgate += (float)s;
        }
        free(gpart);
    }
}

// Per-head norms (q_norm, k_norm, Gemma 4's v norm): rows n of the fused qkv buffer hold nh heads of
// D at column offset col; y is [N, nh, D] contiguous, rstd [N, nh].
static void headnorm_forward(float *y, float *rstd, const float *qkv, int ld, int col, int nh, int D, const float *w,
                             float off, int N, double eps) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int h = 0; h < nh; h++)
            rstd[(size_t)n * nh + h] = rms_row_forward(y + ((size_t)n * nh + h) * D, qkv + (size_t)n * ld + col + h * D,
                                                       w, off, NULL, 0, 1.0f, D, eps);
}

static void headnorm_backward(float *dqkv, float *dw, const float *dy, const float *qkv, int ld, int col, int nh,
                              int D, const float *rstd, const float *w, float off, int N) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int h = 0; h < nh; h++)
            rms_row_backward(dqkv + (size_t)n * ld + col + h * D, dy + ((size_t)n * nh + h) * D,
                             qkv + (size_t)n * ld + col + h * D, rstd[(size_t)n * nh + h], w, off, NULL, 0, 1.0f, D);
    if (!dw) return;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < D; i++) {  // d y_i / d w_i = x_i r
        double s = 0;
        for (int n = 0; n < N; n++)
            for (int h = 0; h < nh; h++)
                s += (double)dy[((size_t)n * nh + h) * D + i] * qkv[(size_t)n * ld + col + h * D + i] *
                     rstd[(size_t)n * nh + h];
        dw[i] += (float)s;
    }
}

// --- RoPE, NeoX halves: dimension i pairs with i + D/2 -------------------------------------------------
// x: [N rows of nh heads of D], position of row n is n % T. sign = -1 applies the inverse rotation
// (the backward of a rotation is its transpose).
static void rope_apply(float *x, int N, int T, int nh, int D, const double *inv, float sign) {
#pragma omp parallel
    {
        float *cs = (float *)mallocCheck(sizeof(float) * (size_t)D);  // cos | sin of one position
#pragma omp for schedule(static)
        for (int pos = 0; pos < T; pos++) {
            for (int i = 0; i < D / 2; i++) {
                // angles in fp32 like transformers (inv_freq.float() @ position_ids.float())
                float ang = (float)inv[i] * (float)pos;
                cs[i] = cosf(ang), cs[D / 2 + i] = sign * sinf(ang);
            }
            for (int n = pos; n < N; n += T)  // every sequence's row at this position
                for (int h = 0; h < nh; h++) {
                    float *v = x + ((size_t)n * nh + h) * D;
#pragma omp simd
                    for (int i = 0; i < D / 2; i++) {
                        float a = v[i], b = v[i + D / 2];
                        v[i] = a * cs[i] - b * cs[D / 2 + i];
                        v[i + D / 2] = b * cs[i] + a * cs[D / 2 + i];
                    }
                }
        }
        free(cs);
    }
}

// --- fast elementwise math ---------------------------------------------------------------------------
// libm's expf/tanhf are scalar calls; these inline forms vectorize (omp simd) and stay within ~2 ulp
// of the libm results, far below the 1e-5 the fixtures demand.
// exp(x) = 2^n * exp(r), n = round(x / ln 2), r = x - n ln 2 (ln 2 split in two), exp(r) by Cephes'
// degree-6 polynomial.
#pragma omp declare simd
static inline float exp_fast(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    float n = rintf(x * 1.44269504088896341f);
    float r = fmaf(n, -0.693359375f, x);
    r = fmaf(n, 2.12194440e-4f, r);
    float p = 1.9875691500E-4f;
    p = fmaf(p, r, 1.3981999507E-3f);
    p = fmaf(p, r, 8.3334519073E-3f);
    p = fmaf(p, r, 4.1665795894E-2f);
    p = fmaf(p, r, 1.6666665459E-1f);
    p = fmaf(p, r, 5.0000001201E-1f);
    p = fmaf(p * r, r, r) + 1.0f;
    n = n == n ? n : 0.0f;  // NaN in, NaN out (through p); converting a NaN n to int would be undefined
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, 4);
    return p * scale;
}

// tanh: odd polynomial near 0 (where 1 - 2/(e^2x + 1) would cancel), the exp form elsewhere
#pragma omp declare simd
static inline float tanh_fast(float x) {
    float ax = fabsf(x), y;
    if (ax < 0.625f) {  // Cephes tanhf minimax polynomial, relative error ~1e-7
        float z = x * x;
        float p = fmaf(fmaf(fmaf(fmaf(-5.70498872745E-3f, z, 2.06390887954E-2f), z, -5.37397155531E-2f), z,
                            1.33314422036E-1f), z, -3.33332819422E-1f);
        return fmaf(p * z, x, x);
    }
    y = 1.0f - 2.0f / (exp_fast(2.0f * ax) + 1.0f);
    return x < 0 ? -y : y;
}

// --- attention: causal, sliding window, GQA, optional softcap --------------------------------------
// q [N, H, D], k/v [N, K, D], out [N, H, D], lse [B, H, T]. Query t of a sliding layer sees keys
// t-W+1 .. t (exactly W keys, itself included); a full layer sees 0 .. t. Query head h reads kv head
// h / (H/K). Probabilities are not stored: backward recomputes them from lse (flash-style).
// Work goes in tiles of ATT_TQ queries against the keys any of them can see, so the score and
// value products are small matrix products (BLIS) instead of scalar loops.
#define ATT_TQ 64

static inline int attn_first_key(int t, int window) { return window > 0 && t - window + 1 > 0 ? t - window + 1 : 0; }

// scores of queries [q0, q1) against keys [k0, q1) into S [ATT_TQ, ldS], masked entries -INFINITY:
// S = softcap(scale * Q K^T)
static void attn_scores(float *S, int ldS, const float *q, int ldq, const float *k, int ldk, int q0, int q1, int k0,
                        int D, int window, float scale, float softcap) {
    int nq = q1 - q0, nk = q1 - k0;
    matmul(0, 1, nq, nk, D, scale, q + (size_t)q0 * ldq, ldq, k + (size_t)k0 * ldk, ldk, 0.0f, S, ldS);
    for (int i = 0; i < nq; i++) {
        float *s = S + (size_t)i * ldS;
        int t = q0 + i, j0 = attn_first_key(t, window) - k0;
        if (softcap > 0) {
#pragma omp simd
            for (int j = 0; j < nk; j++) s[j] = softcap * tanh_fast(s[j] / softcap);
        }
        for (int j = 0; j < j0; j++) s[j] = -INFINITY;
        for (int j = t - k0 + 1; j < nk; j++) s[j] = -INFINITY;
    }
}

static float *attn_scratch(int T) { return (float *)mallocCheck(sizeof(float) * (size_t)ATT_TQ * T * 2); }

static void attention_forward(float *out, float *lse, const float *q, const float *k, const float *v, int B, int T,
                              int H, int K, int D, int window, float scale, float softcap) {
    int G = H / K, ldq = H * D, ldk = K * D;
    // outer threads when there is enough independent work; otherwise BLIS threads the products
    int outer = B * H >= omp_get_max_threads();
#pragma omp parallel if (outer)
    {
        float *S = attn_scratch(T);
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++) {
                const float *qb = q + (size_t)b * T * ldq + h * D;
                const float *kb = k + (size_t)b * T * ldk + (h / G) * D, *vb = v + (size_t)b * T * ldk + (h / G) * D;
                float *ob = out + (size_t)b * T * ldq + h * D, *lb = lse + ((size_t)b * H + h) * T;
                for (int q0 = 0; q0 < T; q0 += ATT_TQ) {
                    int q1 = q0 + ATT_TQ < T ? q0 + ATT_TQ : T, k0 = attn_first_key(q0, window), nk = q1 - k0;
                    attn_scores(S, nk, qb, ldq, kb, ldk, q0, q1, k0, D, window, scale, softcap);
                    for (int i = 0; i < q1 - q0; i++) {  // softmax rows in place, keep log-sum-exp
                        float *s = S + (size_t)i * nk, mx = -INFINITY;
                        for (int j = 0; j < nk; j++) mx = s[j] > mx ? s[j] : mx;
                        float sum = 0;
#pragma omp simd reduction(+ : sum)
                        for (int j = 0; j < nk; j++) sum += (s[j] = exp_fast(s[j] - mx));
                        float inv = 1.0f / sum;
#pragma omp simd
                        for (int j = 0; j < nk; j++) s[j] *= inv;
                        lb[q0 + i] = mx + logf(sum);
                    }
                    // masked entries were exp(-inf - mx) = tiny, not zero: clear them exactly
                    for (int i = 0; i < q1 - q0; i++) {
                        float *s = S + (size_t)i * nk;
                        int t = q0 + i, j0 = attn_first_key(t, window) - k0;
                        for (int j = 0; j < j0; j++) s[j] = 0;
                        for (int j = t - k0 + 1; j < nk; j++) s[j] = 0;
                    }
                    matmul(0, 0, q1 - q0, D, nk, 1.0f, S, nk, vb + (size_t)k0 * ldk, ldk, 0.0f, ob + (size_t)q0 * ldq, ldq);
                }
            }
        free(S);
    }
}

// probabilities of one query row (for the profiler's entropy)
static void attention_row_probs(float *p, const float *q, const float *k, const float *lse, int b, int h, int t,
                                int T, int H, int K, int D, int window, float scale, float softcap) {
    int G = H / K;
    const float *qt = q + (((size_t)b * T + t) * H + h) * D;
    float l = lse[((size_t)b * H + h) * T + t];
    for (int j = attn_first_key(t, window); j <= t; j++) {
        const float *kj = k + (((size_t)b * T + j) * K + h / G) * D;
        float dot = 0;
        for (int i = 0; i < D; i++) dot += qt[i] * kj[i];
        dot *= scale;
        if (softcap > 0) dot = softcap * tanhf(dot / softcap);
        p[j] = expf(dot - l);
    }
}

// dq, dk, dv are overwritten. Parallel over (batch, kv head) so no two threads write the same dk/dv.
// Per tile: P = exp(S - lse); dP = dO V^T; dS = P (dP - rowsum(dO * O)) [* softcap'] * scale;
// dQ = dS K; dK += dS^T Q; dV += P^T dO.
static void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse,
                               const float *q, const float *k, const float *v, int B, int T, int H, int K, int D,
                               int window, float scale, float softcap) {
    int G = H / K, ldq = H * D, ldk = K * D;
    memset(dk, 0, sizeof(float) * (size_t)B * T * K * D);
    memset(dv, 0, sizeof(float) * (size_t)B * T * K * D);
    int outer = B * K >= omp_get_max_threads();
#pragma omp parallel if (outer)
    {
        float *S = attn_scratch(T), *dP = S + (size_t)ATT_TQ * T;
#pragma omp for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int g = 0; g < K; g++) {
                const float *kb = k + (size_t)b * T * ldk + g * D, *vb = v + (size_t)b * T * ldk + g * D;
                float *dkb = dk + (size_t)b * T * ldk + g * D, *dvb = dv + (size_t)b * T * ldk + g * D;
                for (int h = g * G; h < (g + 1) * G; h++) {
                    size_t off = (size_t)b * T * ldq + h * D;
                    const float *qb = q + off, *ob = out + off, *dob = dout + off, *lb = lse + ((size_t)b * H + h) * T;
                    float *dqb = dq + off;
                    for (int q0 = 0; q0 < T; q0 += ATT_TQ) {
                        int q1 = q0 + ATT_TQ < T ? q0 + ATT_TQ : T, nq = q1 - q0, k0 = attn_first_key(q0, window);
                        int nk = q1 - k0;
                        attn_scores(S, nk, qb, ldq, kb, ldk, q0, q1, k0, D, window, scale, softcap);
                        matmul(0, 1, nq, nk, D, 1.0f, dob + (size_t)q0 * ldq, ldq, vb + (size_t)k0 * ldk, ldk, 0.0f, dP,
                               nk);
                        for (int i = 0; i < nq; i++) {
                            const float *orow = ob + (size_t)(q0 + i) * ldq, *drow = dob + (size_t)(q0 + i) * ldq;
                            float Dt = 0, l = lb[q0 + i];
                            for (int e = 0; e < D; e++) Dt += drow[e] * orow[e];
                            float *s = S + (size_t)i * nk, *dp = dP + (size_t)i * nk;
#pragma omp simd
                            for (int j = 0; j < nk; j++) {
                                float sc = s[j], p = sc == -INFINITY ? 0.0f : exp_fast(sc - l);
                                float ds = p * (dp[j] - Dt);
                                if (softcap > 0) ds *= 1.0f - (sc / softcap) * (sc / softcap);
                                s[j] = p;           // S now holds P
                                dp[j] = ds * scale; // dP now holds dS (scaled)
                            }
                            if (softcap > 0)  // masked entries: (sc/softcap)^2 of -inf gave NaN * 0; clear
                                for (int j = 0; j < nk; j++)
                                    if (s[j] == 0.0f) dp[j] = 0.0f;
                        }
                        matmul(0, 0, nq, D, nk, 1.0f, dP, nk, kb + (size_t)k0 * ldk, ldk, 0.0f, dqb + (size_t)q0 * ldq,
                               ldq);
                        matmul(1, 0, nk, D, nq, 1.0f, dP, nk, qb + (size_t)q0 * ldq, ldq, 1.0f, dkb + (size_t)k0 * ldk,
                               ldk);
                        matmul(1, 0, nk, D, nq, 1.0f, S, nk, dob + (size_t)q0 * ldq, ldq, 1.0f, dvb + (size_t)k0 * ldk,
                               ldk);
                    }
                }
            }
        free(S);
    }
}

// --- gated GELU (tanh approximation, gelu_pytorch_tanh) -------------------------------------------
// 0.5 x (1 + tanh(u)) = x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3): one exp, no cancellation
#pragma omp declare simd
static inline float gelu_tanh(float x) {
    const float c = 0.7978845608028654f;  // sqrt(2/pi)
    float u = c * (x + 0.044715f * x * x * x);
    return x / (1.0f + exp_fast(-2.0f * u));
}
#pragma omp declare simd
static inline float gelu_tanh_grad(float x) {  // d/dx x s(2u) = s + 2 x s (1 - s) u'
    const float c = 0.7978845608028654f;
    float u = c * (x + 0.044715f * x * x * x), s = 1.0f / (1.0f + exp_fast(-2.0f * u));
    return s + 2.0f * x * s * (1.0f - s) * c * (1.0f + 3.0f * 0.044715f * x * x);
}

// hm = h * zf: the FFN channel mask (the backward recomputes it for the down projection's weight gradient)
static void ffn_mask_forward(float *hm, const float *h, const float *zf, int N, int F) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int i = 0; i < F; i++) hm[(size_t)n * F + i] = h[(size_t)n * F + i] * zf[i];
}

// The gated GELU with the FFN channel mask: rows of gu are [gate (F) | up (F)]; h = gelu(gate) * up and,
// with a mask, hm = h * zf (the down projection reads hm, the mask's gradient reads h).
static void gelu_gate_forward(float *h, float *hm, const float *gu, const float *zf, int N, int F) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *gr = gu + (size_t)n * 2 * F, *ur = gr + F;
        float *hr = h + (size_t)n * F;
#pragma omp simd
        for (int i = 0; i < F; i++) hr[i] = gelu_tanh(gr[i]) * ur[i];
    }
    if (zf) ffn_mask_forward(hm, h, zf, N, F);
}

// dh = d loss / d hm on entry (d loss / d h on return, when masked). dzf += sum_n dh h (column blocks in
// double: the same for any thread count); dgu = [dh u gelu'(gate) | dh gelu(gate)].
static void gelu_gate_backward(float *dgu, float *dzf, float *dh, const float *gu, const float *h, const float *zf,
                               int N, int F) {
    if (zf) {
        const int CB = 64;
#pragma omp parallel for schedule(static)
        for (int i0 = 0; i0 < F; i0 += CB) {
            int i1 = i0 + CB < F ? i0 + CB : F;
            double acc[64] = {0};
            for (int n = 0; n < N; n++)
                for (int i = i0; i < i1; i++) acc[i - i0] += (double)dh[(size_t)n * F + i] * h[(size_t)n * F + i];
            for (int i = i0; i < i1; i++) dzf[i] += (float)acc[i - i0];
        }
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++)
            for (int i = 0; i < F; i++) dh[(size_t)n * F + i] *= zf[i];
    }
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *gr = gu + (size_t)n * 2 * F, *ur = gr + F;
        const float *dhr = dh + (size_t)n * F;
        float *o = dgu + (size_t)n * 2 * F;
#pragma omp simd
        for (int i = 0; i < F; i++) {
            o[i] = dhr[i] * ur[i] * gelu_tanh_grad(gr[i]);
            o[F + i] = dhr[i] * gelu_tanh(gr[i]);
        }
    }
}

// --- head mask: y[n, h, :] = att[n, h, :] * zh[h] (one layer's query heads, before o_proj) -------------
static void head_gate_forward(float *y, const float *att, const float *zh, int N, int H, int D) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int h = 0; h < H; h++) {
            float zg = zh[h];
            for (int i = 0; i < D; i++) y[((size_t)n * H + h) * D + i] = att[((size_t)n * H + h) * D + i] * zg;
        }
}

// datt = d loss / d y on entry, d loss / d att on return; dzh[h] += sum_{n,i} datt att (per token in
// double, then over tokens in order: the same for any thread count)
static void head_gate_backward(float *dzh, float *datt, const float *att, const float *zh, int N, int H, int D) {
    double *ph = (double *)mallocCheck(sizeof(double) * (size_t)N * H);
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int h = 0; h < H; h++) {
            double s = 0;
            for (int i = 0; i < D; i++) s += (double)datt[((size_t)n * H + h) * D + i] * att[((size_t)n * H + h) * D + i];
            ph[(size_t)n * H + h] = s;
        }
    for (int h = 0; h < H; h++) {
        double s = 0;
        for (int n = 0; n < N; n++) s += ph[(size_t)n * H + h];
        dzh[h] += (float)s;
    }
    free(ph);
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int h = 0; h < H; h++) {
            float zg = zh[h];
            for (int i = 0; i < D; i++) datt[((size_t)n * H + h) * D + i] *= zg;
        }
}

// --- token embedding (llm.c's encoder_forward): x[n] = E[tok[n]] * scale * zd ------------------------------
static void embedding_forward(float *x, const float *E, const int *tok, int N, int d, float scale, const float *zd) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *e = E + (size_t)tok[n] * d;
        for (int i = 0; i < d; i++) x[(size_t)n * d + i] = e[i] * scale * (zd ? zd[i] : 1.0f);
    }
}

// Backward of a token table lookup y[n] = table[tok[n]] * scale * colscale: table[tok[n]] += g[n] * scale *
// colscale (NULL: 1) for rows of `width`; serial over tokens keeps the sums deterministic, parallel over columns
static void token_rows_backward(float *table, const int *tok, int N, const float *g, int width, float scale,
                                const float *colscale) {
#pragma omp parallel for schedule(static)
    for (int i0 = 0; i0 < width; i0 += 64) {
        int i1 = i0 + 64 < width ? i0 + 64 : width;
        for (int n = 0; n < N; n++) {
            float *ge = table + (size_t)tok[n] * width;
            for (int i = i0; i < i1; i++) ge[i] += g[(size_t)n * width + i] * scale * (colscale ? colscale[i] : 1.0f);
        }
    }
}

// dE[tok[n]] += dx[n] * scale * zd; with dzd, dzd[i] += scale * sum_n dx[n, i] E[tok[n], i]
static void embedding_backward(float *dE, float *dzd, const float *dx, const float *E, const int *tok, int N, int d,
                               float scale, const float *zd) {
    if (dzd) {
#pragma omp parallel for schedule(static)
        for (int i = 0; i < d; i++) {
            double s = 0;
            for (int n = 0; n < N; n++) s += (double)dx[(size_t)n * d + i] * E[(size_t)tok[n] * d + i];
            dzd[i] += (float)(s * scale);
        }
    }
    token_rows_backward(dE, tok, N, dx, d, scale, zd);
}

// --- softcapped cross-entropy over rows of logits (llm.c's crossentropy_forward and
// crossentropy_softmax_backward, fused with the final softcap s = c tanh(z / c)) ----------------------------
// The head never holds whole rows at Gemma's vocabulary: logits come in column tiles, z [rows, n] at leading
// dimension ld holding vocabulary columns v0 .. v0 + n. The forward softcaps a tile in place and folds it into
// each row's running max and sum of exp(s - max) (rescaled when the max moves) and picks up the target's s.
// After every tile: loss = max + log(sum) - s[tgt]; the backward turns a (recomputed) tile into
// d loss / d z = (softmax - onehot) * (1 - (s/c)^2) * scale. Rows with a target < 0 count nothing and get 0.
typedef struct {
    float mx;    // running max of s over the tiles seen
    float st;    // s at the target
    double sum;  // sum of exp(s - mx) over the tiles seen
} XentRow;

static void crossentropy_init(XentRow *r, int rows) {
    for (int n = 0; n < rows; n++) r[n].mx = -INFINITY, r[n].st = 0, r[n].sum = 0;
}

static void crossentropy_forward(XentRow *r, float *z, int ld, int rows, int v0, int n, const int *tgt, float cap) {
#pragma omp parallel for schedule(static)
    for (int row = 0; row < rows; row++) {
        float *zr = z + (size_t)row * ld;
        if (cap > 0) {
#pragma omp simd
            for (int i = 0; i < n; i++) zr[i] = cap * tanh_fast(zr[i] / cap);
        }
        int t = tgt[row];
        if (!r || t < 0) continue;  // no statistics: a recomputed tile only needs the softcap
        float mx = r[row].mx;
#pragma omp simd reduction(max : mx)
        for (int i = 0; i < n; i++) mx = zr[i] > mx ? zr[i] : mx;
        double sum = 0;
#pragma omp simd reduction(+ : sum)
        for (int i = 0; i < n; i++) sum += exp_fast(zr[i] - mx);
        if (r[row].mx != -INFINITY) sum += r[row].sum * exp((double)r[row].mx - mx);
        r[row].mx = mx, r[row].sum = sum;
        if (t >= v0 && t < v0 + n) r[row].st = zr[t - v0];
    }
}

// fold the state of a later run of tiles, b, into a (the same rule as a new tile's)
static void crossentropy_merge(XentRow *a, const XentRow *b, int rows) {
    for (int n = 0; n < rows; n++) {
        if (b[n].mx == -INFINITY) continue;  // b saw no tile of this row (or the row has no target)
        float mx = a[n].mx > b[n].mx ? a[n].mx : b[n].mx;
        double sum = b[n].sum * exp((double)b[n].mx - mx);
        if (a[n].mx != -INFINITY) sum += a[n].sum * exp((double)a[n].mx - mx);
        a[n].mx = mx, a[n].sum = sum, a[n].st += b[n].st;  // st: only the run holding the target has it, others 0
    }
}

// per-row loss (0 where the target is < 0)
static void crossentropy_loss(float *row_loss, const XentRow *r, const int *tgt, int rows) {
    for (int n = 0; n < rows; n++) row_loss[n] = tgt[n] < 0 ? 0.0f : (float)(r[n].mx + log(r[n].sum) - r[n].st);
}

// z: the softcapped tile of crossentropy_forward, replaced by d (loss * scale) / d (logit before the softcap)
static void crossentropy_backward(float *z, int ld, const XentRow *r, int rows, int v0, int n, const int *tgt,
                                  float cap, float scale) {
#pragma omp parallel for schedule(static)
    for (int row = 0; row < rows; row++) {
        float *zr = z + (size_t)row * ld;
        int t = tgt[row];
        if (t < 0) {
            memset(zr, 0, sizeof(float) * (size_t)n);
            continue;
        }
        float mx = r[row].mx, inv = (float)(1.0 / r[row].sum), st = r[row].st;
#pragma omp simd
        for (int i = 0; i < n; i++) {
            float g = exp_fast(zr[i] - mx) * inv;
            if (cap > 0) g *= 1.0f - (zr[i] / cap) * (zr[i] / cap);
            zr[i] = g * scale;
        }
        if (t >= v0 && t < v0 + n) zr[t - v0] -= (cap > 0 ? 1.0f - (st / cap) * (st / cap) : 1.0f) * scale;
    }
}

// sum_i a_i * b_i (b NULL: sum_i a_i) in double, split into fixed chunks summed in order, so the
// result is the same for any thread count (an OpenMP reduction's combine order is not fixed).
static double dot_det(const float *a, const float *b, size_t n) {
    const size_t CH = 4096;
    size_t nc = (n + CH - 1) / CH;
    double *part = (double *)mallocCheck(sizeof(double) * (nc ? nc : 1));
#pragma omp parallel for schedule(static)
    for (size_t c = 0; c < nc; c++) {
        double s = 0;
        size_t i1 = (c + 1) * CH < n ? (c + 1) * CH : n;
        for (size_t i = c * CH; i < i1; i++) s += b ? (double)a[i] * b[i] : (double)a[i];
        part[c] = s;
    }
    double s = 0;
    for (size_t c = 0; c < nc; c++) s += part[c];
    free(part);
    return s;
}

// ================================================================================================
// 4. Model: weights, gradients, masks, activations; forward and backward
// ================================================================================================

typedef struct {  // what one layer keeps from the forward pass for the backward pass
    float *x;        // [N, d] residual stream entering the layer
    float *a;        // [N, d] input_layernorm output
    float *r_in;     // [N]    its rstd
    float *qkv;      // [N, (H+2K)D] raw q,k,v projections (fused GEMM output)
    float *q, *k, *v;// [N,H,D], [N,K,D], [N,K,D] after q/k norm and RoPE (v: Gemma 4's norm)
    float *rq, *rk, *rv; // [N*H], [N*K], [N*K] rstd of q_norm, k_norm, v norm
    float *att;      // [N, H*D] attention output per head, before the head mask
    float *lse;      // [B, H, T]
    float *o;        // [N, d] o_proj output
    float *r_pa;     // [N]
    float *x2;       // [N, d] residual after the attention branch
    float *m;        // [N, d] pre_feedforward_layernorm output
    float *r_pf;     // [N]
    float *gu;       // [N, 2F] gate | up projections
    float *h;        // [N, F] gelu(gate) * up, before the intermediate mask
    float *f;        // [N, d] down_proj output
    float *r_pff;    // [N]
    // E2B/E4B (NULL otherwise)
    float *x3;       // [N, d] stream after the MLP branch, the per-layer input's residual
    float *pg;       // [N, P] per_layer_input_gate output (before GELU)
    float *py;       // [N, d] per_layer_projection output (before its norm)
    float *r_py;     // [N]
    float *dk_acc, *dv_acc;  // [N,K,D] a KV source: what the KV-shared layers send back to its k and v
} LayerActs;

typedef struct {
    Config c;
    ParamTable tab;
    float *w;            // all weights, tab.total floats
    size_t w_map;        // bytes of w when it is a mapping of its own (model_load_shard), else 0 (malloc'd)
    int w_owned;         // 1: w holds only this rank's ZeRO pieces (model_load_shard, model_init_random_shard)
    Params p;
    float *gw;           // gradients, same layout (NULL until model_alloc_grads)
    Params g;
    float embed_scale;   // sqrt(d) rounded as the loader of this checkpoint rounds it
    // Mask hooks (NULL = off). prune.c points these at its sampled or deterministic values:
    float *zl;           // [L]    layer gate on both branch outputs (after their post-norms)
    float *zh;           // [L, H] per query head, on the head's attention output before o_proj
    float *zf;           // [L, F] per FFN channel, on gelu(gate) * up (E2B: layer l at ffn_off, 2F wide)
    float *zd;           // [d]    hidden dims: embedding output and every d-sized norm output
    float *dzl, *dzh, *dzf, *dzd;  // their gradients (accumulated by backward)
    int zd_kept;         // number of nonzero zd entries (the masked norms average over these)
    // activations for B x T tokens
    int B, T;
    LayerActs *act;
    float *xL;           // [N, d] residual after the last layer
    float *xf;           // [N, d] final norm output
    float *r_f;          // [N]
    float *dxf;          // [N, d] gradient of the final norm output, filled by the fused head
    float *ple_proj, *ple_r, *ple_in, *dple;  // E2B/E4B: [N, L*P] normed projection input, [N*L] rstd,
                                              // [N, L*P] the per-layer inputs, and their gradient
    const int *tokens;   // [N] inputs of the last forward
    float *scratch;      // per-backward buffers
    size_t scratch_n;
    void *head_ws;       // the head's working memory (head_work), kept from call to call: its kept tiles are a
    size_t head_ws_n;    // gigabyte, which a fresh allocation would fault in at every step
    float loss;          // mean next-token cross-entropy of the last forward
    int n_valid;         // targets that counted
} Model;

static void model_init_layout(Model *m) {
    param_table(&m->c, &m->tab);
    m->w = (float *)callocCheck(sizeof(float) * m->tab.total);
    m->p = params_carve(&m->c, &m->tab, m->w);
    m->embed_scale = embed_scale_for(m->c.d, m->c.scale_dtype);
}

static void model_alloc_grads(Model *m) {
    if (m->gw) return;
    m->gw = (float *)callocCheck(sizeof(float) * m->tab.total);
    m->g = params_carve(&m->c, &m->tab, m->gw);
}

static void model_zero_grad(Model *m) {
    if (m->gw) memset(m->gw, 0, sizeof(float) * m->tab.total);
    const Config *c = &m->c;
    if (m->dzl) memset(m->dzl, 0, sizeof(float) * (size_t)c->L);
    if (m->dzh) memset(m->dzh, 0, sizeof(float) * (size_t)c->L * c->H);
    if (m->dzf) memset(m->dzf, 0, sizeof(float) * ffn_off(c, c->L));
    if (m->dzd) memset(m->dzd, 0, sizeof(float) * (size_t)c->d);
}

// Gemma-style init (transformers' _init_weights): matrices and embedding ~ N(0, 0.02); norms at
// identity (0 for Gemma 3's 1+w, 1 for Gemma 4's w); layer_scalar 1.
static void model_init_random(Model *m, uint64_t seed, double std) {
    Rng r = rng_seed(seed);
    for (int i = 0; i < m->tab.n; i++) {
        const PEntry *e = &m->tab.e[i];
        float *p = m->w + e->offset;
        size_t n = e->rows * e->cols;
        if (e->is_norm) for (size_t j = 0; j < n; j++) p[j] = is_rms_weight(e) ? 1.0f - norm_offset(&m->c) : 1.0f;
        else for (size_t j = 0; j < n; j++) p[j] = (float)(std * rng_normal(&r));
    }
}

// Activation sizes (llm.c's fill_in_activation_sizes): what the forward keeps for the backward, in floats for
// B x T tokens, in carving order. model_alloc_acts allocates and carves exactly these; profile memory counts
// them. Per layer (LayerActs), then after the last layer and E2B's per-layer inputs (Model).
enum { ACT_X, ACT_A, ACT_R_IN, ACT_QKV, ACT_Q, ACT_K, ACT_V, ACT_RQ, ACT_RK, ACT_RV, ACT_ATT, ACT_LSE, ACT_O, ACT_R_PA,
       ACT_X2, ACT_M, ACT_R_PF, ACT_GU, ACT_H, ACT_F, ACT_R_PFF, ACT_X3, ACT_PG, ACT_PY, ACT_R_PY, ACT_DK_ACC, ACT_DV_ACC,
       NUM_LAYER_ACTS };
enum { ACT_XL, ACT_XF, ACT_DXF, ACT_R_F, ACT_PLE_PROJ, ACT_PLE_IN, ACT_DPLE, ACT_PLE_R, NUM_MODEL_ACTS };

static void fill_in_layer_act_sizes(size_t *sz, const Config *c, int l, int B, int T) {
    size_t N = (size_t)B * T, d = (size_t)c->d, H = (size_t)c->H, P = (size_t)c->P;
    size_t D = (size_t)layer_D(c, l), K = (size_t)layer_K(c, l), F = (size_t)layer_F(c, l);
    size_t acc = is_kv_source(c, l) ? N * K * D : 0;  // what the KV-shared layers send back (E2B)
    sz[ACT_X] = N * d, sz[ACT_A] = N * d, sz[ACT_R_IN] = N;
    sz[ACT_QKV] = N * (H + 2 * K) * D;  // the fused projection at its widest (shared and K=V layers use less)
    sz[ACT_Q] = N * H * D, sz[ACT_K] = N * K * D, sz[ACT_V] = N * K * D;
    sz[ACT_RQ] = N * H, sz[ACT_RK] = N * K, sz[ACT_RV] = N * K;
    sz[ACT_ATT] = N * H * D, sz[ACT_LSE] = (size_t)B * H * T, sz[ACT_O] = N * d, sz[ACT_R_PA] = N;
    sz[ACT_X2] = N * d, sz[ACT_M] = N * d, sz[ACT_R_PF] = N, sz[ACT_GU] = N * 2 * F, sz[ACT_H] = N * F;
    sz[ACT_F] = N * d, sz[ACT_R_PFF] = N;
    sz[ACT_X3] = P ? N * d : 0, sz[ACT_PG] = N * P, sz[ACT_PY] = P ? N * d : 0, sz[ACT_R_PY] = P ? N : 0;
    sz[ACT_DK_ACC] = acc, sz[ACT_DV_ACC] = acc;
}

static void fill_in_model_act_sizes(size_t *sz, const Config *c, int B, int T) {
    size_t N = (size_t)B * T, d = (size_t)c->d, LP = (size_t)c->L * c->P;
    sz[ACT_XL] = N * d, sz[ACT_XF] = N * d, sz[ACT_DXF] = N * d, sz[ACT_R_F] = N;
    sz[ACT_PLE_PROJ] = N * LP, sz[ACT_PLE_IN] = N * LP, sz[ACT_DPLE] = N * LP, sz[ACT_PLE_R] = LP ? N * c->L : 0;
}

// Backward scratch, one block: offsets (in floats) of each buffer for N tokens, as wide as the widest layer's
// activations in the table above (the fused q|k|v, the heads, the kv heads, the FFN).
typedef struct {
    size_t dx, dx2, dtmp, dh, dgu, dqkv, datt, dq, dk, dv, hm, pt, pdt, pdy, total;
} Scratch;

static Scratch scratch_layout(const Config *c, size_t N) {
    size_t maxqkv = 0, maxhd = 0, maxkd = 0, F = 0, d = (size_t)c->d, P = (size_t)c->P, o = 0, sz[NUM_LAYER_ACTS];
    for (int l = 0; l < c->L; l++) {  // per token: B = T = 1
        fill_in_layer_act_sizes(sz, c, l, 1, 1);
        maxqkv = sz[ACT_QKV] > maxqkv ? sz[ACT_QKV] : maxqkv, maxhd = sz[ACT_ATT] > maxhd ? sz[ACT_ATT] : maxhd;
        maxkd = sz[ACT_K] > maxkd ? sz[ACT_K] : maxkd, F = sz[ACT_H] > F ? sz[ACT_H] : F;
    }
    Scratch s;
#define PLACE(field, count) (s.field = o, o += N * (count))
    PLACE(dx, d); PLACE(dx2, d); PLACE(dtmp, d); PLACE(dh, F); PLACE(dgu, 2 * F); PLACE(dqkv, maxqkv);
    PLACE(datt, maxhd); PLACE(dq, maxhd); PLACE(dk, maxkd); PLACE(dv, maxkd); PLACE(hm, F > maxhd ? F : maxhd);
    PLACE(pt, P); PLACE(pdt, P); PLACE(pdy, P ? d : 0);
#undef PLACE
    s.total = o;
    return s;
}

// point each pointer at its share of one block (NULL where a size is 0); returns the block
static float *carve_acts(float **const *ptrs, const size_t *sz, int n) {
    size_t total = 0;
    for (int i = 0; i < n; i++) total += sz[i];
    float *block = (float *)mallocCheck(sizeof(float) * (total ? total : 1)), *p = block;
    for (int i = 0; i < n; i++) *ptrs[i] = sz[i] ? p : NULL, p += sz[i];
    return block;
}

static void model_free_acts(Model *m) {
    free(m->head_ws);
    m->head_ws = NULL, m->head_ws_n = 0;
    if (!m->act) return;
    for (int l = 0; l < m->c.L; l++) free(m->act[l].x);  // one block per layer, x is its start
    free(m->act);
    free(m->xL);  // one block for the model-level ones, xL its start
    m->act = NULL;
    free(m->scratch);
    m->scratch = NULL;
}

static void model_alloc_acts(Model *m, int B, int T) {
    if (m->act && m->B == B && m->T == T) return;
    model_free_acts(m);
    const Config *c = &m->c;
    m->B = B, m->T = T;
    m->act = (LayerActs *)callocCheck(sizeof(LayerActs) * (size_t)c->L);
    size_t sz[NUM_LAYER_ACTS];
    for (int l = 0; l < c->L; l++) {
        LayerActs *a = &m->act[l];
        float **const ptrs[NUM_LAYER_ACTS] = {
            &a->x, &a->a, &a->r_in, &a->qkv, &a->q, &a->k, &a->v, &a->rq, &a->rk, &a->rv, &a->att, &a->lse, &a->o,
            &a->r_pa, &a->x2, &a->m, &a->r_pf, &a->gu, &a->h, &a->f, &a->r_pff, &a->x3, &a->pg, &a->py, &a->r_py,
            &a->dk_acc, &a->dv_acc};
        fill_in_layer_act_sizes(sz, c, l, B, T);
        carve_acts(ptrs, sz, NUM_LAYER_ACTS);
    }
    float **const mptrs[NUM_MODEL_ACTS] = {&m->xL, &m->xf, &m->dxf, &m->r_f, &m->ple_proj, &m->ple_in, &m->dple, &m->ple_r};
    size_t msz[NUM_MODEL_ACTS];
    fill_in_model_act_sizes(msz, c, B, T);
    carve_acts(mptrs, msz, NUM_MODEL_ACTS);
    m->scratch_n = scratch_layout(c, (size_t)B * T).total;  // the forward borrows its start for masked copies
    m->scratch = (float *)mallocCheck(sizeof(float) * m->scratch_n);
}

static inline float layer_gate(const Model *m, int l) { return m->zl ? m->zl[l] : 1.0f; }

// count kept hidden dims (call after changing zd)
static void model_masks_changed(Model *m) {
    m->zd_kept = m->c.d;
    if (m->zd) {
        m->zd_kept = 0;
        for (int i = 0; i < m->c.d; i++) m->zd_kept += m->zd[i] != 0.0f;
        if (m->zd_kept == 0) fail("the hidden mask removed every dimension");
    }
}

// The tied output head, fused with the (optional) final softcap and the cross-entropy. Logits are made
// in tiles of head_tile floats (rows x vocabulary columns) that stay in cache and never exist in full:
// a first pass over the vocabulary gives each row's max and sum, a second turns each tile into d loss /
// d logit for dxf and the embedding's gradient. A training pass keeps the first tiles of each run, up to
// head_keep bytes, from the first pass to the second and recomputes the rest (one extra product each):
// a kept tile costs writing and reading it through memory instead (about half the product's time here,
// NOTES.md §2), the recomputed ones no memory. Either way the second pass sees the same bits. With one
// tile (a small vocabulary) it is kept.
// Several tiles are split into head_groups runs of the vocabulary, one thread per run with one-thread BLIS
// calls (no barrier per product); each run keeps its own softmax state and dxf part, merged in run order, so
// the result does not depend on the thread count.
// With targets, returns the mean loss over valid targets (target < 0 is ignored) and, when want_grad,
// writes d loss / d xf into m->dxf and accumulates the embedding gradient. With logits_out, copies every
// (softcapped) logit there; with row_loss_out, every row's cross-entropy (0 where the target is < 0).
static int head_tile = 1 << 20;  // floats of logits at a time, per thread (4 MiB)
static int head_rows = 2048;     // rows at a time: each chunk reads and writes the embedding's gradient once
static int head_groups = 8;      // runs of tiles, each one thread's: a fixed number keeps the sums' order fixed
static size_t head_keep = (size_t)1 << 30;  // bytes of logits tiles a training pass keeps for its second pass

// The head's working memory for N rows, one block: each run's softmax state per chunk row, one logits tile
// (rows x vt) per thread, each run's dxf part after the first, every row's loss, the targets of a row
// without any, and (train) the tiles kept between the passes. head_forward_rows carves it; profile memory
// counts it.
typedef struct {
    int rows, vt;       // rows per chunk; vocabulary columns per tile
    int groups, team;   // runs of the vocabulary; threads (one tile each)
    int keep;           // train: the first tiles of each run kept from the first pass to the second
    size_t bytes;
} HeadWork;

// the logits tiles of a chunk that the second pass computes again: those beyond each run's first w.keep
static int head_recomputed_tiles(const HeadWork *w, int V) {
    int tiles = (V + w->vt - 1) / w->vt, again = 0;
    if (w->vt >= V) return 0;
    for (int g = 0; g < w->groups; g++) {
        int len = (g + 1) * tiles / w->groups - g * tiles / w->groups;
        again += len > w->keep ? len - w->keep : 0;
    }
    return again;
}

static HeadWork head_work(const Config *c, int N, int train) {
    HeadWork w;
    int V = c->V;
    w.rows = N < head_rows ? N : head_rows, w.vt = head_tile / w.rows;
    w.vt = w.vt < 16 ? 16 : w.vt - w.vt % 16;  // whole cache lines per row
    if (w.vt >= V) w.vt = V, w.rows = head_tile / V > N ? N : (head_tile / V < 1 ? 1 : head_tile / V);
    int tiles = (V + w.vt - 1) / w.vt, th = omp_get_max_threads();
    w.groups = tiles < head_groups ? tiles : head_groups, w.team = th < w.groups ? th : w.groups;
    w.keep = 0;
    if (train && w.vt < V) {  // as many whole tiles per run as head_keep holds, at most a run's
        size_t k = head_keep / (sizeof(float) * (size_t)w.rows * w.vt) / (size_t)w.groups;
        int longest = (tiles + w.groups - 1) / w.groups;
        w.keep = k < (size_t)longest ? (int)k : longest;
    }
    w.bytes = sizeof(XentRow) * (size_t)w.groups * w.rows +
              sizeof(float) * ((size_t)w.team * w.rows * w.vt + (size_t)(w.groups - 1) * w.rows * c->d + (size_t)N) +
              sizeof(int) * (size_t)w.rows + sizeof(float) * (size_t)w.groups * w.keep * w.rows * w.vt;
    return w;
}

static double head_forward_rows(Model *m, const int *targets, int want_grad, float *logits_out, float *row_loss_out) {
    const Config *c = &m->c;
    int N = m->B * m->T, V = c->V, d = c->d;
    if (want_grad && !targets) memset(m->dxf, 0, sizeof(float) * (size_t)N * d), want_grad = 0;
    HeadWork w = head_work(c, N, want_grad);
    int rows_max = w.rows, vt = w.vt, ng = w.groups, tiles = (V + vt - 1) / vt, keep = w.keep;
    if (m->head_ws_n < w.bytes) free(m->head_ws), m->head_ws = mallocCheck(w.bytes), m->head_ws_n = w.bytes;
    XentRow *xr = (XentRow *)m->head_ws;  // first: its doubles keep malloc's alignment
    float *zs = (float *)(xr + (size_t)ng * rows_max), *dxg = zs + (size_t)w.team * rows_max * vt;
    float *row_loss = dxg + (size_t)(ng - 1) * rows_max * d;
    float *kept = row_loss + N;  // run g's j-th tile (j < keep) at (g keep + j) rows_max vt
    int *none = (int *)(kept + (size_t)ng * keep * rows_max * vt);  // targets when there are none
    memset(row_loss, 0, sizeof(float) * (size_t)N);
    for (int n = 0; n < rows_max; n++) none[n] = -1;
    int n_valid = 0;
    if (targets) for (int n = 0; n < N; n++) n_valid += targets[n] >= 0;
    float cap = (float)c->final_softcap, scale = n_valid ? 1.0f / (float)n_valid : 0.0f;
    for (int n0 = 0; n0 < N; n0 += rows_max) {
        int rows = N - n0 < rows_max ? N - n0 : rows_max;
        const float *x = m->xf + (size_t)n0 * d;
        const int *tgt = targets ? targets + n0 : none;
        // pass 1: max, sum and the target's logit of each row, per run of tiles
#pragma omp parallel for schedule(dynamic) num_threads(w.team) if (ng > 1)
        for (int g = 0; g < ng; g++) {
            XentRow *r = xr + (size_t)g * rows_max;
            float *scratch = zs + (size_t)omp_get_thread_num() * rows_max * vt;
            crossentropy_init(r, rows);
            for (int v0 = g * tiles / ng * vt, j = 0; v0 < V && v0 < (g + 1) * tiles / ng * vt; v0 += vt, j++) {
                int n = V - v0 < vt ? V - v0 : vt;
                float *z = j < keep ? kept + ((size_t)g * keep + j) * rows_max * vt : scratch;
                matmul(0, 1, rows, n, d, 1.0f, x, d, m->p.embed + (size_t)v0 * d, d, 0.0f, z, n);
                crossentropy_forward(r, z, n, rows, v0, n, tgt, cap);
                if (logits_out)
                    for (int i = 0; i < rows; i++)
                        memcpy(logits_out + (size_t)(n0 + i) * V + v0, z + (size_t)i * n, sizeof(float) * (size_t)n);
            }
        }
        for (int g = 1; g < ng; g++) crossentropy_merge(xr, xr + (size_t)g * rows_max, rows);
        crossentropy_loss(row_loss + n0, xr, tgt, rows);
        if (!want_grad) continue;
        // pass 2: d loss / d logits, then dxf (run 0's part in place, the others' added after) and the
        // embedding's gradient
#pragma omp parallel for schedule(dynamic) num_threads(w.team) if (ng > 1)
        for (int g = 0; g < ng; g++) {
            float *scratch = zs + (size_t)omp_get_thread_num() * rows_max * vt;
            float *dx = g ? dxg + (size_t)(g - 1) * rows_max * d : m->dxf + (size_t)n0 * d;
            int v1 = (g + 1) * tiles / ng * vt;
            for (int v0 = g * tiles / ng * vt, j = 0; v0 < V && v0 < v1; v0 += vt, j++) {
                int n = V - v0 < vt ? V - v0 : vt, first = j == 0;
                const float *E = m->p.embed + (size_t)v0 * d;
                float *z = j < keep ? kept + ((size_t)g * keep + j) * rows_max * vt : scratch;
                if (vt < V && j >= keep) {  // a tile the first pass did not keep: made again
                    matmul(0, 1, rows, n, d, 1.0f, x, d, E, d, 0.0f, z, n);
                    crossentropy_forward(NULL, z, n, rows, v0, n, tgt, cap);
                }
                crossentropy_backward(z, n, xr, rows, v0, n, tgt, cap, scale);
                matmul(0, 0, rows, d, n, 1.0f, z, n, E, d, first ? 0.0f : 1.0f, dx, d);
                matmul(1, 0, n, d, rows, 1.0f, z, n, x, d, 1.0f, m->g.embed + (size_t)v0 * d, d);
            }
        }
        if (ng > 1) {
            float *dx = m->dxf + (size_t)n0 * d;
#pragma omp parallel for schedule(static)
            for (size_t i = 0; i < (size_t)rows * d; i++)
                for (int g = 1; g < ng; g++) dx[i] += dxg[(size_t)(g - 1) * rows_max * d + i];
        }
    }
    double loss = dot_det(row_loss, NULL, (size_t)N);
    if (row_loss_out) memcpy(row_loss_out, row_loss, sizeof(float) * (size_t)N);
    m->n_valid = n_valid;
    return n_valid ? loss / n_valid : 0.0;
}
static double head_forward(Model *m, const int *targets, int want_grad, float *logits_out) {
    return head_forward_rows(m, targets, want_grad, logits_out, NULL);
}

// --- E2B/E4B per-layer inputs (transformers' Gemma4TextModel.get_per_layer_inputs / project_per_layer_inputs
// and the end of Gemma4TextDecoderLayer): pli[n, l] = (RMSNorm_P(x0 Wpm^T / sqrt(d); w_pn) + Epl[tok][l] * sqrt(P))
// / sqrt(2), and after each layer's MLP branch x4 = x3 + RMSNorm(gelu(x3 Wg^T) * pli[:, l] Wp^T; w_post).
static void ple_inputs_forward(Model *m, const int *tokens) {
    const Config *c = &m->c;
    int N = m->B * m->T, d = c->d, P = c->P, LP = c->L * c->P;
    linear_forward(m->ple_proj, m->act[0].x, m->p.ple_mproj, N, d, LP);
    float s = (float)(1.0 / sqrt((double)d)), sp = embed_scale_for(P, c->scale_dtype), c2 = (float)M_SQRT1_2;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < (size_t)N * LP; i++) m->ple_proj[i] *= s;
    rmsnorm_forward(m->ple_in, P, m->ple_r, m->ple_proj, P, m->p.ple_pnorm, norm_offset(c), NULL, P, 1.0f, N * c->L, P,
                    c->eps);
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        if (tokens[n] >= c->Vp) fail("token id %d is outside the per-layer input vocabulary [0, %d)", tokens[n], c->Vp);
        const float *e = m->p.ple_embed + (size_t)tokens[n] * LP;
        float *o = m->ple_in + (size_t)n * LP;
        for (int i = 0; i < LP; i++) o[i] = (o[i] + e[i] * sp) * c2;
    }
}

// t = gelu(pg) * pli[:, l]  [N, P]
static void ple_gated(const Model *m, int l, float *t) {
    const Config *c = &m->c;
    int N = m->B * m->T, P = c->P, LP = c->L * c->P;
    const float *pg = m->act[l].pg;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int p = 0; p < P; p++) t[(size_t)n * P + p] = gelu_tanh(pg[(size_t)n * P + p]) * m->ple_in[(size_t)n * LP + l * P + p];
}

// y = RMSNorm(gelu(x3 Wg^T) * pli_l Wp^T; w_post) of layer l, into y [N, d]; t: [N, P] scratch
static void ple_layer_forward(Model *m, int l, float *y, float *t) {
    const Config *c = &m->c;
    LayerActs *a = &m->act[l];
    const LayerParams *lp = &m->p.layer[l];
    int N = m->B * m->T, d = c->d, P = c->P;
    linear_forward(a->pg, a->x3, lp->ple_gate, N, d, P);
    ple_gated(m, l, t);
    linear_forward(a->py, t, lp->ple_proj, N, P, d);
    rmsnorm_forward(y, d, a->r_py, a->py, d, lp->ple_norm, norm_offset(c), NULL, d, 1.0f, N, d, c->eps);
}

// Backward of layer l's per-layer input: dx is d loss / d x4 on entry and d loss / d x3 on return (the
// residual plus the gate's path); the weights' gradients and d loss / d pli (m->dple) accumulate.
static void ple_layer_backward(Model *m, int l, float *dx, float *t, float *dt, float *dpy) {
    const Config *c = &m->c;
    LayerActs *a = &m->act[l];
    const LayerParams *lp = &m->p.layer[l];
    LayerParams *gp = &m->g.layer[l];
    int N = m->B * m->T, d = c->d, P = c->P, LP = c->L * c->P;
    memset(dpy, 0, sizeof(float) * (size_t)N * d);
    rmsnorm_backward(dpy, d, gp->ple_norm, NULL, NULL, dx, d, a->py, d, a->r_py, lp->ple_norm, norm_offset(c), NULL, d,
                     1.0f, N, d);
    ple_gated(m, l, t);
    linear_backward(dt, gp->ple_proj, dpy, t, lp->ple_proj, N, P, d, 0);
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)  // t = gelu(pg) * pli: d pli = dt gelu(pg), d pg = dt pli gelu'(pg)
        for (int p = 0; p < P; p++) {
            size_t i = (size_t)n * P + p, k = (size_t)n * LP + l * P + p;
            float g = a->pg[i];
            m->dple[k] += dt[i] * gelu_tanh(g);
            dt[i] *= m->ple_in[k] * gelu_tanh_grad(g);
        }
    linear_backward(dx, gp->ple_gate, dt, a->x3, lp->ple_gate, N, d, P, 1);
}

// Backward of the per-layer inputs into d loss / d x0 (dx, accumulated) and the three global tensors
static void ple_inputs_backward(Model *m, float *dx) {
    const Config *c = &m->c;
    int N = m->B * m->T, d = c->d, P = c->P, LP = c->L * c->P;
    float s = (float)(1.0 / sqrt((double)d)), sp = embed_scale_for(P, c->scale_dtype), c2 = (float)M_SQRT1_2;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < (size_t)N * LP; i++) m->dple[i] *= c2;  // now d loss / d (norm out) = d loss / d (token part)
    token_rows_backward(m->g.ple_embed, m->tokens, N, m->dple, LP, sp, NULL);
    float *dproj = (float *)callocCheck(sizeof(float) * (size_t)N * LP);
    rmsnorm_backward(dproj, P, m->g.ple_pnorm, NULL, NULL, m->dple, P, m->ple_proj, P, m->ple_r, m->p.ple_pnorm,
                     norm_offset(c), NULL, P, 1.0f, N * c->L, P);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < (size_t)N * LP; i++) dproj[i] *= s;
    linear_backward(dx, m->g.ple_mproj, dproj, m->act[0].x, m->p.ple_mproj, N, d, LP, 1);
    free(dproj);
}

// Forward over tokens [B, T]. targets [B, T] (next tokens; < 0 ignored) may be NULL. With want_grad
// the head's gradient is computed on the way (see head_forward) and model_backward may follow.
// Returns the mean cross-entropy (0 without targets).
static float model_forward(Model *m, const int *tokens, const int *targets, int B, int T, int want_grad,
                           float *logits_out) {
    const Config *c = &m->c;
    model_alloc_acts(m, B, T);
    if (want_grad) model_alloc_grads(m);
    m->tokens = tokens;
    int N = B * T, d = c->d, H = c->H;
    float off = norm_offset(c);
    for (int n = 0; n < N; n++)
        if (tokens[n] < 0 || tokens[n] >= c->V) fail("token id %d at position %d is outside the vocabulary [0, %d)",
                                                     tokens[n], n, c->V);
    // x = E[tok] * sqrt(d) (* hidden mask)
    embedding_forward(m->act[0].x, m->p.embed, tokens, N, d, m->embed_scale, m->zd);
    if (c->P) ple_inputs_forward(m, tokens);
    double inv[1024];
    for (int l = 0; l < c->L; l++) {
        LayerActs *a = &m->act[l];
        const LayerParams *lp = &m->p.layer[l];
        int D = layer_D(c, l), K = layer_K(c, l), hasv = layer_has_v(c, l), nqkv = layer_nqkv(c, l);
        int shared = layer_shared(c, l), F = layer_F(c, l);
        const LayerActs *kv = &m->act[kv_source(c, l)];  // itself, or the layer a KV-shared one reads
        float gate = layer_gate(m, l);
        // a = RMSNorm(x; 1+w_in) * zd
        rmsnorm_forward(a->a, d, a->r_in, a->x, d, lp->in_norm, off, m->zd, m->zd_kept, 1.0f, N, d, c->eps);
        // q,k,v = a Wq^T, a Wk^T, a Wv^T in one GEMM (the three weights are adjacent in memory)
        linear_forward(a->qkv, a->a, lp->wq, N, d, nqkv);
        // per-head q/k RMSNorm over D (one weight vector shared by all heads), before RoPE.
        // Rows of qkv are [q (H*D) | k (K*D) | v (K*D)]; Gemma 4 without v_proj uses k's columns for v.
        int vcol = hasv ? (H + K) * D : H * D;
        headnorm_forward(a->q, a->rq, a->qkv, nqkv, 0, H, D, lp->q_norm, off, N, c->eps);
        if (!shared) headnorm_forward(a->k, a->rk, a->qkv, nqkv, H * D, K, D, lp->k_norm, off, N, c->eps);
        if (!shared && c->arch == 4)  // Gemma 4: v gets a weightless RMSNorm
            headnorm_forward(a->v, a->rv, a->qkv, nqkv, vcol, K, D, NULL, 0.0f, N, c->eps);
        else if (!shared)  // Gemma 3: v is the raw projection
#pragma omp parallel for schedule(static)
            for (int n = 0; n < N; n++)
                memcpy(a->v + (size_t)n * K * D, a->qkv + (size_t)n * nqkv + vcol, sizeof(float) * K * D);
        rope_inv_freq(c, l, inv);
        rope_apply(a->q, N, T, H, D, inv, 1.0f);
        if (!shared) rope_apply(a->k, N, T, K, D, inv, 1.0f);
        float scale = c->arch == 3 ? (float)(1.0 / sqrt(c->qscalar)) : 1.0f;
        attention_forward(a->att, a->lse, a->q, kv->k, kv->v, B, T, H, K, D, c->full[l] ? 0 : c->W, scale,
                          (float)c->attn_softcap);
        // o = (att * head mask) Wo^T
        float *attm = a->att;
        if (m->zh) {  // masked copy into the o buffer's space is not possible (sizes differ): use scratch
            attm = m->scratch;
            head_gate_forward(attm, a->att, m->zh + (size_t)l * H, N, H, D);
        }
        linear_forward(a->o, attm, lp->wo, N, H * D, d);
        // x2 = x + RMSNorm(o; 1+w_post_attn) * zd * layer gate
        rmsnorm_forward(a->x2, d, a->r_pa, a->o, d, lp->post_attn_norm, off, m->zd, m->zd_kept, gate, N, d, c->eps);
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < (size_t)N * d; i++) a->x2[i] += a->x[i];
        // MLP: m = RMSNorm(x2), h = gelu(m Wg^T) * (m Wu^T) * zf, f = h Wd^T
        rmsnorm_forward(a->m, d, a->r_pf, a->x2, d, lp->pre_ffn_norm, off, m->zd, m->zd_kept, 1.0f, N, d, c->eps);
        linear_forward(a->gu, a->m, lp->wgate, N, d, 2 * F);
        const float *zf = m->zf ? m->zf + ffn_off(c, l) : NULL;
        float *hm = m->scratch;  // masked h
        gelu_gate_forward(a->h, hm, a->gu, zf, N, F);
        linear_forward(a->f, zf ? hm : a->h, lp->wdown, N, F, d);
        // x_next = (x2 + RMSNorm(f; 1+w_post_ffn) * zd * gate) [* layer_scalar on Gemma 4]
        float *xn = l + 1 < c->L ? m->act[l + 1].x : m->xL;
        rmsnorm_forward(xn, d, a->r_pff, a->f, d, lp->post_ffn_norm, off, m->zd, m->zd_kept, gate, N, d, c->eps);
        float ls = c->arch == 4 ? lp->layer_scalar[0] : 1.0f;
        if (c->P) {  // E2B/E4B: x3 = x2 + PN(f); x_next = (x3 + per-layer input branch) * layer_scalar
#pragma omp parallel for schedule(static)
            for (size_t i = 0; i < (size_t)N * d; i++) a->x3[i] = xn[i] + a->x2[i];
            ple_layer_forward(m, l, xn, m->scratch);
#pragma omp parallel for schedule(static)
            for (size_t i = 0; i < (size_t)N * d; i++) xn[i] = (a->x3[i] + xn[i]) * ls;
        } else
#pragma omp parallel for schedule(static)
            for (size_t i = 0; i < (size_t)N * d; i++) xn[i] = (xn[i] + a->x2[i]) * ls;
    }
    // final norm, then the fused head
    rmsnorm_forward(m->xf, d, m->r_f, m->xL, d, m->p.final_norm, off, m->zd, m->zd_kept, 1.0f, N, d, c->eps);
    m->loss = (float)head_forward(m, targets, want_grad, logits_out);
    return m->loss;
}

// Backward from the loss of the last model_forward(..., want_grad=1). Gradients ACCUMULATE into m->gw
// (and the mask gradients), so gradient accumulation is several forward/backward pairs per zero_grad.
static void model_backward(Model *m) {
    const Config *c = &m->c;
    int B = m->B, T = m->T, N = B * T, d = c->d, H = c->H;
    float off = norm_offset(c);
    size_t Nd = (size_t)N * d;
    Scratch sl = scratch_layout(c, (size_t)N);
    float *S = m->scratch, *dx = S + sl.dx, *dx2 = S + sl.dx2, *dtmp = S + sl.dtmp, *dh = S + sl.dh;
    float *dgu = S + sl.dgu, *dqkv = S + sl.dqkv, *datt = S + sl.datt, *dq = S + sl.dq, *dk = S + sl.dk;
    float *dv = S + sl.dv, *hm = S + sl.hm;  // hm: masked h (or masked attention output) for a weight gradient
    float *pt = S + sl.pt, *pdt = S + sl.pdt, *pdy = S + sl.pdy;  // E2B/E4B per-layer inputs
    if (c->P) memset(m->dple, 0, sizeof(float) * (size_t)N * c->L * c->P);
    for (int l = 0; l < c->L; l++)  // what KV-shared layers send back to their source's k and v
        if (m->act[l].dk_acc) {
            size_t n = (size_t)N * layer_K(c, l) * layer_D(c, l);
            memset(m->act[l].dk_acc, 0, sizeof(float) * n), memset(m->act[l].dv_acc, 0, sizeof(float) * n);
        }
    // final norm
    memset(dx, 0, sizeof(float) * Nd);
    rmsnorm_backward(dx, d, m->g.final_norm, m->dzd, NULL, m->dxf, d, m->xL, d, m->r_f, m->p.final_norm, off, m->zd,
                     m->zd_kept, 1.0f, N, d);
    double inv[1024];
    for (int l = c->L - 1; l >= 0; l--) {
        LayerActs *a = &m->act[l];
        const LayerParams *lp = &m->p.layer[l];
        LayerParams *gp = &m->g.layer[l];
        int D = layer_D(c, l), K = layer_K(c, l), hasv = layer_has_v(c, l), nqkv = layer_nqkv(c, l);
        int shared = layer_shared(c, l), F = layer_F(c, l);
        LayerActs *kv = &m->act[kv_source(c, l)];
        float gate = layer_gate(m, l);
        float *dgate = m->dzl ? &m->dzl[l] : NULL;
        if (c->arch == 4) {  // x_next = s * x3 with x3 = x2 + branch: ds = sum dx * x3, dx3 = s * dx
            float s = lp->layer_scalar[0];
            float *x3 = dtmp, *r3 = dh;  // recompute x3 from the stored branch input
            if (c->P) {  // E2B/E4B: x_next = s * (x3 + y), y the per-layer input branch (recomputed)
                rmsnorm_forward(x3, d, r3, a->py, d, lp->ple_norm, off, NULL, d, 1.0f, N, d, c->eps);
                gp->layer_scalar[0] += (float)(dot_det(dx, x3, Nd) + dot_det(dx, a->x3, Nd));
            } else {
                rmsnorm_forward(x3, d, r3, a->f, d, lp->post_ffn_norm, off, m->zd, m->zd_kept, gate, N, d, c->eps);
                gp->layer_scalar[0] += (float)(dot_det(dx, x3, Nd) + dot_det(dx, a->x2, Nd));
            }
#pragma omp parallel for schedule(static)
            for (size_t i = 0; i < Nd; i++) dx[i] *= s;
            if (c->P) ple_layer_backward(m, l, dx, pt, pdt, pdy);
        }
        // --- MLP branch: x_next = x2 + PN(f) * zd * gate
        memcpy(dx2, dx, sizeof(float) * Nd);  // residual path
        float *df = dtmp;
        memset(df, 0, sizeof(float) * Nd);
        rmsnorm_backward(df, d, gp->post_ffn_norm, m->dzd, dgate, dx, d, a->f, d, a->r_pff, lp->post_ffn_norm, off,
                         m->zd, m->zd_kept, gate, N, d);
        // f = hm Wd^T, hm = h * zf
        const float *zf = m->zf ? m->zf + ffn_off(c, l) : NULL;
        if (zf) ffn_mask_forward(hm, a->h, zf, N, F);
        linear_backward(dh, gp->wdown, df, zf ? hm : a->h, lp->wdown, N, F, d, 0);
        // h = gelu(g) * u  ->  dgu = [dh * u * gelu'(g) | dh * gelu(g)] (dh masked), dzf += sum dh * h
        gelu_gate_backward(dgu, zf ? m->dzf + ffn_off(c, l) : NULL, dh, a->gu, a->h, zf, N, F);
        float *dm = dtmp;
        linear_backward(dm, gp->wgate, dgu, a->m, lp->wgate, N, d, 2 * F, 0);
        // m = PN(x2)
        rmsnorm_backward(dx2, d, gp->pre_ffn_norm, m->dzd, NULL, dm, d, a->x2, d, a->r_pf, lp->pre_ffn_norm, off,
                         m->zd, m->zd_kept, 1.0f, N, d);
        // --- attention branch: x2 = x + PN(o) * zd * gate
        memcpy(dx, dx2, sizeof(float) * Nd);  // residual path to x
        float *dO = dtmp;
        memset(dO, 0, sizeof(float) * Nd);
        rmsnorm_backward(dO, d, gp->post_attn_norm, m->dzd, dgate, dx2, d, a->o, d, a->r_pa, lp->post_attn_norm, off,
                         m->zd, m->zd_kept, gate, N, d);
        // o = attm Wo^T, attm = att * zh
        float *attm = a->att;
        const float *zh = m->zh ? m->zh + (size_t)l * H : NULL;
        if (zh) head_gate_forward(hm, a->att, zh, N, H, D), attm = hm;
        linear_backward(datt, gp->wo, dO, attm, lp->wo, N, H * D, d, 0);
        if (zh) head_gate_backward(m->dzh + (size_t)l * H, datt, a->att, zh, N, H, D);
        // attention backward into dq, dk, dv
        float scale = c->arch == 3 ? (float)(1.0 / sqrt(c->qscalar)) : 1.0f;
        attention_backward(dq, dk, dv, datt, a->att, a->lse, a->q, kv->k, kv->v, B, T, H, K, D, c->full[l] ? 0 : c->W,
                           scale, (float)c->attn_softcap);
        size_t nkv = (size_t)N * K * D;
        if (shared) {  // K and V were the source layer's: their gradient goes there
#pragma omp parallel for schedule(static)
            for (size_t i = 0; i < nkv; i++) kv->dk_acc[i] += dk[i], kv->dv_acc[i] += dv[i];
        } else if (a->dk_acc) {  // a source: add what the KV-shared layers sent back
#pragma omp parallel for schedule(static)
            for (size_t i = 0; i < nkv; i++) dk[i] += a->dk_acc[i], dv[i] += a->dv_acc[i];
        }
        // RoPE backward (inverse rotation), then the per-head norms' backward into dqkv
        rope_inv_freq(c, l, inv);
        rope_apply(dq, N, T, H, D, inv, -1.0f);
        if (!shared) rope_apply(dk, N, T, K, D, inv, -1.0f);
        memset(dqkv, 0, sizeof(float) * (size_t)N * nqkv);
        int vcol = hasv ? (H + K) * D : H * D;
        headnorm_backward(dqkv, gp->q_norm, dq, a->qkv, nqkv, 0, H, D, a->rq, lp->q_norm, off, N);
        if (!shared) headnorm_backward(dqkv, gp->k_norm, dk, a->qkv, nqkv, H * D, K, D, a->rk, lp->k_norm, off, N);
        if (!shared && c->arch == 4) headnorm_backward(dqkv, NULL, dv, a->qkv, nqkv, vcol, K, D, a->rv, NULL, 0.0f, N);
        else if (!shared)
#pragma omp parallel for schedule(static)
            for (int n = 0; n < N; n++)
                memcpy(dqkv + (size_t)n * nqkv + vcol, dv + (size_t)n * K * D, sizeof(float) * K * D);
        // qkv = a Wqkv^T
        float *da = dtmp;
        linear_backward(da, gp->wq, dqkv, a->a, lp->wq, N, d, nqkv, 0);
        // a = PN(x)
        rmsnorm_backward(dx, d, gp->in_norm, m->dzd, NULL, da, d, a->x, d, a->r_in, lp->in_norm, off, m->zd,
                         m->zd_kept, 1.0f, N, d);
    }
    if (c->P) ple_inputs_backward(m, dx);  // x0 also fed the per-layer inputs' projection
    // embedding: x0 = E[tok] * scale * zd
    embedding_backward(m->g.embed, m->dzd, dx, m->p.embed, m->tokens, N, d, m->embed_scale, m->zd);
}

// ================================================================================================
// 5. Checkpoints: Hugging Face directories (config.json + model.safetensors or sharded)
// ================================================================================================

// Strip the multimodal prefixes so every file maps to Gemma3ForCausalLM names ("model.layers.0...").
static const char *canonical_name(const char *name, char *buf, size_t cap) {
    static const char *prefixes[] = {"model.language_model.", "language_model.model.", "language_model.", "model."};
    for (int i = 0; i < 4; i++) {
        size_t n = strlen(prefixes[i]);
        if (strncmp(name, prefixes[i], n) == 0) {
            snprintf(buf, cap, "model.%s", name + n);
            return buf;
        }
    }
    snprintf(buf, cap, "%s", name);
    return buf;
}

typedef struct {
    int nfiles;
    SFile **f;
} Checkpoint;

static Checkpoint checkpoint_open(const char *dir) {
    Checkpoint ck = {0, NULL};
    char *index = path_join(dir, "model.safetensors.index.json");
    char *single = path_join(dir, "model.safetensors");
    if (file_exists(index)) {
        cJSON *j = json_read(index);
        const cJSON *wm = json_get(j, "weight_map");
        if (!wm || !cJSON_IsObject(wm)) fail("%s: no weight_map object", index);
        // distinct shard files, in order of first appearance
        char **names = (char **)callocCheck(sizeof(char *) * (size_t)(cJSON_GetArraySize(wm) + 1));
        int n = 0;
        for (const cJSON *e = wm->child; e; e = e->next) {
            if (!cJSON_IsString(e)) fail("%s: weight_map[%s] is not a file name", index, e->string);
            int seen = 0;
            for (int i = 0; i < n; i++) seen |= strcmp(names[i], e->valuestring) == 0;
            if (!seen) names[n++] = e->valuestring;
        }
        ck.f = (SFile **)callocCheck(sizeof(SFile *) * (size_t)(n + 1));
        for (int i = 0; i < n; i++) {
            char *p = path_join(dir, names[i]);
            if (!file_exists(p)) fail("%s names shard %s, which does not exist", index, p);
            ck.f[ck.nfiles++] = st_open(p);
            free(p);
        }
        free(names);
        cJSON_Delete(j);
    } else if (file_exists(single)) {
        ck.f = (SFile **)callocCheck(sizeof(SFile *));
        ck.f[ck.nfiles++] = st_open(single);
    } else fail("%s has neither model.safetensors nor model.safetensors.index.json; is it a Hugging Face model "
                "directory?", dir);
    free(index);
    free(single);
    return ck;
}

static const STensor *checkpoint_find(const Checkpoint *ck, const char *canonical) {
    char buf[512];
    for (int i = 0; i < ck->nfiles; i++)
        for (int j = 0; j < ck->f[i]->n; j++)
            if (strcmp(canonical_name(ck->f[i]->t[j].name, buf, sizeof buf), canonical) == 0) return &ck->f[i]->t[j];
    return NULL;
}

static void checkpoint_close(Checkpoint *ck) {
    for (int i = 0; i < ck->nfiles; i++) st_close(ck->f[i]);
    free(ck->f);
}

// Each tensor of the table from ck (dir names it in messages), checked for presence, shape and dtype, converted
// to fp32: into w + offset, or (w NULL) into one buffer the size of the largest tensor, handed to put(ctx, i, buf).
// The streaming form keeps host memory at that one buffer: the files are mapped, and each tensor's pages are
// dropped once converted (a device upload of a model larger than the host's memory).
typedef void (*TensorPut)(void *ctx, int i, const float *buf);
// tensor e of the table in ck (dir names it in messages), checked for presence, shape and dtype
static const STensor *checkpoint_tensor(const Checkpoint *ck, const char *dir, const PEntry *e) {
    const STensor *t = checkpoint_find(ck, e->name);
    if (!t) fail("%s: tensor %s is missing (config.json says it should be there)", dir, e->name);
    int want_ndim = e->cols == 1 && e->kind != T_EMBED ? 1 : 2;
    int64_t want[2] = {(int64_t)e->rows, (int64_t)e->cols};
    int ok = t->ndim == want_ndim && t->shape[0] == want[0] && (want_ndim == 1 || t->shape[1] == want[1]);
    if (!ok) {
        char got[128] = "", *p = got;
        for (int k = 0; k < t->ndim && k < 4; k++) p += sprintf(p, k ? ",%lld" : "%lld", (long long)t->shape[k]);
        if (want_ndim == 2)
            fail("%s: tensor %s has shape [%s] but config.json implies [%lld,%lld]", t->file, e->name, got,
                 (long long)want[0], (long long)want[1]);
        fail("%s: tensor %s has shape [%s] but config.json implies [%lld]", t->file, e->name, got, (long long)want[0]);
    }
    if (t->dtype != ST_F32 && t->dtype != ST_BF16 && t->dtype != ST_F16)
        fail("%s: tensor %s has dtype %s; only F32, BF16 and F16 are supported", t->file, e->name,
             st_dtype_name[t->dtype]);
    return t;
}

static void checkpoint_read(const Checkpoint *ck, const char *dir, const ParamTable *tab, float *w, TensorPut put,
                            void *ctx) {
    float *buf = w ? NULL : (float *)mallocCheck(sizeof(float) * param_largest(tab));
    for (int i = 0; i < tab->n; i++) {
        const PEntry *e = &tab->e[i];
        const STensor *t = checkpoint_tensor(ck, dir, e);
        st_to_f32(t, w ? w + e->offset : buf);
        if (w) continue;
        put(ctx, i, buf);
        uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), a0 = (uintptr_t)t->data / pg * pg;
        madvise((void *)a0, (uintptr_t)t->data + t->nbytes - a0, MADV_DONTNEED);  // read again from the file if touched
    }
    free(buf);
}

// config.json and the checkpoint's files (closed with checkpoint_close); the table laid out, no weights yet
static Checkpoint model_open(Model *m, const char *dir) {
    memset(m, 0, sizeof(*m));
    char *cfg = path_join(dir, "config.json");
    if (!file_exists(cfg)) fail("%s: no config.json; point --model at a Hugging Face model directory", dir);
    config_load(&m->c, cfg);
    free(cfg);
    Checkpoint ck = checkpoint_open(dir);
    const STensor *emb = checkpoint_find(&ck, "model.embed_tokens.weight");
    if (!emb) fail("%s: tensor model.embed_tokens.weight is missing", dir);
    m->c.scale_dtype = emb->dtype;
    param_table(&m->c, &m->tab);
    m->embed_scale = embed_scale_for(m->c.d, m->c.scale_dtype);
    return ck;
}

// Load dir/config.json and the weights, checking every tensor's presence, dtype and shape.
static void model_load(Model *m, const char *dir) {
    Checkpoint ck = model_open(m, dir);
    m->w = (float *)callocCheck(sizeof(float) * m->tab.total);
    m->p = params_carve(&m->c, &m->tab, m->w);
    checkpoint_read(&ck, dir, &m->tab, m->w, NULL, NULL);
    checkpoint_close(&ck);
    model_masks_changed(m);
}

// The same without host weights (m->w stays NULL): each tensor goes to put(ctx, i, fp32 values) in table order.
static void model_load_each(Model *m, const char *dir, TensorPut put, void *ctx) {
    Checkpoint ck = model_open(m, dir);
    checkpoint_read(&ck, dir, &m->tab, NULL, put, ctx);
    checkpoint_close(&ck);
    model_masks_changed(m);
}

// dir/config.json of m saved as dtype (ST_F32 or ST_BF16), atomically
static void model_save_config(const Model *m, const char *dir, int dtype) {
    cJSON *cj = config_to_json(&m->c, dtype == ST_BF16 ? "bfloat16" : "float32");
    char *cp = path_join(dir, "config.json");
    write_json_atomic(cp, cj);
    cJSON_Delete(cj);
    free(cp);
}

// Write dir/config.json + dir/model.safetensors (dtype ST_F32 or ST_BF16), each atomically: m->w, or (m->w NULL)
// each tensor fetched in table order by get(ctx, i, buf) as it is written (a device's weights, one at a time).
static void model_save_each(const Model *m, const char *dir, int dtype, TensorGet get, void *ctx) {
    make_dirs(dir);
    STWriter w = {0};
    for (int i = 0; i < m->tab.n; i++) {
        const PEntry *e = &m->tab.e[i];
        int64_t shape[2] = {(int64_t)e->rows, (int64_t)e->cols};
        int ndim = e->cols == 1 && e->kind != T_EMBED ? 1 : 2;
        stw_add_f32(&w, e->name, dtype, ndim, shape, m->w ? m->w + e->offset : NULL);
    }
    char *st = path_join(dir, "model.safetensors");
    stw_write_each(&w, st, get, ctx);
    free(st);
    model_save_config(m, dir, dtype);
}
static void model_save(const Model *m, const char *dir, int dtype) { model_save_each(m, dir, dtype, NULL, NULL); }

static void model_free(Model *m) {
    model_free_acts(m);
    if (m->w_map) munmap(m->w, m->w_map);
    else free(m->w);
    free(m->gw);
    free(m->p.layer);
    free(m->g.layer);
    free(m->tab.e);
}

// ================================================================================================
// 6. Optimizers over the parameter table: AdamW, 8-bit AdamW and Muon; global-norm clipping; the
//    learning-rate schedule. Every rule updates p in place from the (clipped, averaged) gradient g,
//    with decoupled weight decay p *= 1 − lr·wd first (torch.optim.AdamW semantics); weight decay
//    only on matrices (param_decays). They live here rather than in train.c because the step of
//    section 7 runs them on either device, and a checkpoint moves between devices only while both
//    keep one state format: the Optimizer below (the table's offsets, 8-bit blocks of QBLOCK laid
//    over the ZeRO partition's units) is that format, and hip/gpu.h reads it from here. prune.c
//    steps its weights with AdamW through section 7 and calls adamw_update itself for its log_alphas
//    and (with a negative rate: ascent) its Lagrange multipliers.
// ================================================================================================

// p -= lr * (mhat / (sqrt(vhat) + eps) + wd * p), with p decayed before the update like torch:
// p *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr * m/(1-b1^t) / (sqrt(v/(1-b2^t)) + eps)
static void adamw_update(float *p, const float *g, float *mom, float *var, size_t n, float lr, float b1, float b2,
                         float eps, float wd, int step) {
    float bc1 = 1.0f - powf(b1, (float)step), bc2 = 1.0f - powf(b2, (float)step);
    float bc2s = sqrtf(bc2);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        mom[i] = b1 * mom[i] + (1.0f - b1) * gi;
        var[i] = b2 * var[i] + (1.0f - b2) * gi * gi;
        p[i] *= 1.0f - lr * wd;
        p[i] -= (lr / bc1) * mom[i] / (sqrtf(var[i]) / bc2s + eps);
    }
}

// --- 8-bit AdamW -----------------------------------------------------------------------------------
// Both moments are stored as one byte per element, in blocks of QBLOCK elements with an fp32 scale per
// block (the block's max |m|, max v); the blocks are laid over each unit of hip/comm.h's ZeRO partition
// (adamw8_shard below). The codes are square-root companded, which spends the 256 levels where Adam's
// states mostly are (far below the block maximum):
//   m: int8,  levels  m = max|m| · sign(q) · (q/127)²,  q in [-127, 127]
//   v: uint8, levels  sqrt(v) = sqrt(max v) · (q/255)², q in [0, 255]   (v kept as its square root on a sqrt code)
// and each value takes the NEAREST level (nearest in m, and in sqrt(v), the quantity the update divides
// by), so a round trip is never off by more than the value itself. Smallest nonzero levels: |m| = 6.2e-5
// and sqrt(v) = 1.5e-5 of the block max. Worst round-trip error measured by test/test_train (heavy-tailed
// values) for values within 10x of the block max: 2.5% (m), 1.2% (sqrt v); 10-100x below: 7.4%, 3.9%;
// 100-1000x below: 22%, 12% (plain linear absmax int8: 3.7%, 33%, 100%). Each step dequantizes, updates in fp32
// exactly like AdamW (the update uses the fresh fp32 moments), then requantizes. Where v's code is 0 the
// m code is zeroed too, so no element keeps momentum without a second moment (m/sqrt(v) would blow up).
#define QBLOCK 256

static inline float q8m_decode(int8_t q, float s) {
    float x = (float)q / 127.0f;
    return x * fabsf(x) * s;
}
// the nearer of the two levels (q/n)² around a in [0, 1]: q = floor(n sqrt(a)) or q + 1
static inline int q8_nearest(float a, int n) {
    int q = (int)((float)n * sqrtf(a));
    if (q >= n) return n;
    float lo = (float)q * q, hi = (float)(q + 1) * (q + 1);
    return a * (float)n * (float)n > 0.5f * (lo + hi) ? q + 1 : q;
}
static inline int8_t q8m_encode(float m, float s) {
    if (!(s > 0)) return 0;
    int q = q8_nearest(fabsf(m) / s, 127);
    return (int8_t)(m < 0 ? -q : q);
}
static inline float q8v_decode(uint8_t q, float s) {
    float x = (float)q / 255.0f;
    x *= x;
    return x * x * s;
}
static inline uint8_t q8v_encode(float v, float s) { return s > 0 ? (uint8_t)q8_nearest(sqrtf(v / s), 255) : 0; }

// One block of len (<= QBLOCK) values: weights p, gradients g, each value's weight decay wd[j], live[j] 0 where the
// value's tensor is frozen (not updated; its state stays 0, so it never raises the block's maxima); the block's codes
// qm, qv and its scales *sm, *sv. bc1, bc2s: Adam's bias corrections, 1 - b1^t and sqrt(1 - b2^t).
static void adamw8_block(float *p, const float *g, const float *wd, const unsigned char *live, int8_t *qm, uint8_t *qv,
                         float *sm, float *sv, size_t len, float lr, float b1, float b2, float eps, float bc1, float bc2s) {
    float m[QBLOCK], v[QBLOCK], mmax = 0, vmax = 0;
    for (size_t j = 0; j < len; j++) {
        m[j] = v[j] = 0;
        if (!live[j]) continue;
        m[j] = b1 * q8m_decode(qm[j], *sm) + (1.0f - b1) * g[j];
        v[j] = b2 * q8v_decode(qv[j], *sv) + (1.0f - b2) * g[j] * g[j];
        p[j] *= 1.0f - lr * wd[j];
        p[j] -= (lr / bc1) * m[j] / (sqrtf(v[j]) / bc2s + eps);
        mmax = fmaxf(mmax, fabsf(m[j]));
        vmax = fmaxf(vmax, v[j]);
    }
    *sm = mmax, *sv = vmax;
    for (size_t j = 0; j < len; j++) {
        qv[j] = q8v_encode(v[j], vmax);
        qm[j] = qv[j] ? q8m_encode(m[j], mmax) : 0;
    }
}

// n values of one tensor in blocks from its first (test/test_train's case: the arithmetic of every block)
static void adamw8_update(float *p, const float *g, int8_t *qm, uint8_t *qv, float *sm, float *sv, size_t n, float lr,
                          float b1, float b2, float eps, float wd, int step) {
    float bc1 = 1.0f - powf(b1, (float)step), bc2s = sqrtf(1.0f - powf(b2, (float)step)), wds[QBLOCK];
    unsigned char live[QBLOCK];
    for (int j = 0; j < QBLOCK; j++) wds[j] = wd, live[j] = 1;
    size_t nb = (n + QBLOCK - 1) / QBLOCK;
#pragma omp parallel for schedule(static)
    for (size_t b = 0; b < nb; b++) {
        size_t i0 = b * QBLOCK, len = n - i0 < QBLOCK ? n - i0 : QBLOCK;
        adamw8_block(p + i0, g + i0, wds, live, qm + i0, qv + i0, sm + b, sv + b, len, lr, b1, b2, eps, bc1, bc2s);
    }
}

// --- Muon --------------------------------------------------------------------------------------------
// For each weight matrix W [rows, cols] (not the embedding), with g its gradient (Keller Jordan's Muon):
//   buf ← μ buf + (1 − μ) g ;  u = (1 − μ) g + μ buf                     (Nesterov momentum)
//   O = NS5(u / ‖u‖_F)                                                 (approximately U Vᵀ of u = U S Vᵀ)
//   W ← W (1 − lr·wd) − lr · 0.2 · sqrt(max(rows, cols)) · O
// NS5 is the quintic Newton–Schulz iteration X ← aX + (b A + c A²) X, A = X Xᵀ, (a, b, c) = (3.4445,
// −4.7750, 2.0315), 5 steps, on the wide orientation (transposed when rows > cols), in fp32 (the
// published code uses bf16). Shape scaling: Moonshot's 0.2·sqrt(max(rows, cols)) ("Muon is Scalable
// for LLM Training", 2025) instead of Keller Jordan's max(1, rows/cols)^0.5: it gives the update the
// RMS of a typical AdamW update (~0.2), so one --lr, schedule and weight decay serve both the Muon
// matrices and the AdamW-trained embedding and vectors.
static const float NS_A = 3.4445f, NS_B = -4.7750f, NS_C = 2.0315f;

static size_t muon_scratch_floats(size_t rows, size_t cols) {
    size_t r = rows < cols ? rows : cols, c = rows < cols ? cols : rows;
    return 3 * r * c + 2 * r * r;
}

// u [rows, cols] <- NS5(u / ‖u‖); work: muon_scratch_floats(rows, cols)
static void newton_schulz5(float *u, int rows, int cols, float *work) {
    int tr = rows > cols, r = tr ? cols : rows, c = tr ? rows : cols;
    size_t n = (size_t)r * c;
    float *X = work, *Y = X + n, *A = Y + n, *Bm = A + (size_t)r * r;
    float inv = (float)(1.0 / (sqrt(dot_det(u, u, n)) + 1e-7));
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) X[tr ? (size_t)j * c + i : (size_t)i * c + j] = u[(size_t)i * cols + j] * inv;
    for (int it = 0; it < 5; it++) {
        matmul(0, 1, r, r, c, 1.0f, X, c, X, c, 0.0f, A, r);                       // A = X Xᵀ
        for (size_t i = 0; i < (size_t)r * r; i++) Bm[i] = NS_B * A[i];
        matmul(0, 0, r, r, r, NS_C, A, r, A, r, 1.0f, Bm, r);                      // B = b A + c A A
        for (size_t i = 0; i < n; i++) Y[i] = NS_A * X[i];
        matmul(0, 0, r, c, r, 1.0f, Bm, r, X, c, 1.0f, Y, c);                      // Y = a X + B X
        float *t = X;
        X = Y, Y = t;
    }
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) u[(size_t)i * cols + j] = X[tr ? (size_t)j * c + i : (size_t)i * c + j];
}

static void muon_update(float *p, const float *g, float *buf, int rows, int cols, float lr, float mu, float wd,
                        float *work) {
    size_t n = (size_t)rows * cols;
    float *u = work + muon_scratch_floats((size_t)rows, (size_t)cols) - n;  // the scratch's last r*c floats
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        buf[i] = mu * buf[i] + (1.0f - mu) * g[i];
        u[i] = (1.0f - mu) * g[i] + mu * buf[i];
    }
    newton_schulz5(u, rows, cols, work);
    float scale = 0.2f * sqrtf((float)(rows > cols ? rows : cols));
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) p[i] = p[i] * (1.0f - lr * wd) - lr * scale * u[i];
}

// --- the optimizer state, laid out over the parameter table (ZeRO: over this rank's shard of it) -------
#include "hip/comm.h"  // data parallel: the ranks, the collectives, the ZeRO partition of the table

// 8-bit AdamW over partition z's shard (at one rank and stage 0: the whole table), its blocks laid over each unit
// from the start of this rank's part of it (hip/comm.h: q and the tail are whole blocks, so every world cuts the
// same blocks; bz = zero_block_plan(z) numbers them). Shard element s lies in piece k: its weight is
// w[p->w + (s - p->s)] (the table's layout), its gradient g[s], its codes qm[s], qv[s]; block j's scales sm[j], sv[j].
// A block may hold the ends of several tensors: each value takes its own tensor's weight decay, a frozen tensor's
// values are not updated and keep their state at 0.
static void adamw8_shard(const ZeroPlan *z, const ZeroPlan *bz, const ParamTable *tab, float *w, const float *g,
                         int8_t *qm, uint8_t *qv, float *sm, float *sv, float lr, float b1, float b2, float eps,
                         float wd, int step) {
    float bc1 = 1.0f - powf(b1, (float)step), bc2s = sqrtf(1.0f - powf(b2, (float)step));
#pragma omp parallel for schedule(dynamic, 64)
    for (size_t b = 0; b < bz->shard; b++) {
        int i = 0, lo = 0, hi = z->npiece - 1;
        while (i + 1 < z->nunit && bz->u[i + 1].at <= b) i++;  // b's unit (few: a linear walk)
        const ZeroUnit *u = &z->u[i];
        size_t s0 = u->at + (b - bz->u[i].at) * QBLOCK, end = u->at + u->q + u->tail;
        size_t len = end - s0 < QBLOCK ? end - s0 : QBLOCK;
        while (lo < hi) {  // the piece holding s0
            int mid = (lo + hi + 1) / 2;
            if (z->p[mid].s <= s0) lo = mid;
            else hi = mid - 1;
        }
        float p[QBLOCK], wds[QBLOCK];
        unsigned char live[QBLOCK];
        for (size_t j = 0, k = (size_t)lo; j < len; j++) {
            while (s0 + j >= z->p[k].s + z->p[k].n) k++;
            const PEntry *e = &tab->e[z->p[k].tensor];
            live[j] = !e->frozen, wds[j] = param_decays(e) ? wd : 0.0f;
            p[j] = w[z->p[k].w + (s0 + j - z->p[k].s)];
        }
        adamw8_block(p, g + s0, wds, live, qm + s0, qv + s0, sm + b, sv + b, len, lr, b1, b2, eps, bc1, bc2s);
        for (size_t j = 0, k = (size_t)lo; j < len; j++) {
            while (s0 + j >= z->p[k].s + z->p[k].n) k++;
            if (live[j]) w[z->p[k].w + (s0 + j - z->p[k].s)] = p[j];
        }
    }
}

enum { OPT_ADAMW, OPT_ADAMW8, OPT_MUON };
static const char *const opt_names[] = {"adamw", "adamw8", "muon"};

typedef struct {
    int kind;
    float b1, b2, eps, mu;
    int t;              // updates done (Adam's bias correction)
    size_t total;       // parameters
    float *m;           // [total] adamw: first moment; muon: momentum (matrices) / first moment (the rest)
    float *v;           // [nv] second moments: adamw every tensor, muon the non-matrices
    size_t nv, *voff;   // voff[i]: where tensor i's second moment starts in v (muon: unused for matrices)
    int8_t *qm;         // adamw8: codes of m and v (one per element of the table, or of the shard), the blocks'
    uint8_t *qv;        // scales (max |m|, max v; nblocks of them) laid out by adamw8_shard over `whole` (unsharded:
    float *sm, *sv;     // the world of one) or z; blocks: zero_block_plan of that partition
    size_t nblocks;     // blocks in sm, sv (a shard's when sharded; the whole table's: zero_plan_span(&blocks))
    ZeroPlan whole, blocks;
    float *work;        // Muon's Newton–Schulz scratch
    ZeroPlan *z;        // ZeRO >= 1 (optimizer_shard): AdamW's states hold this rank's shard of the table (z->shard
                        // floats, hip/comm.h's shard layout), updated by the step; NULL: the whole table
} Optimizer;

// kind: OPT_ADAMW, OPT_ADAMW8 or OPT_MUON; b1, b2, eps: Adam's; mu: Muon's momentum. Every state starts at 0.
static void optimizer_init(Optimizer *o, const ParamTable *tab, int kind, float b1, float b2, float eps, float mu) {
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->b1 = b1, o->b2 = b2, o->eps = eps, o->mu = mu;
    o->total = tab->total;
    o->voff = (size_t *)callocCheck(sizeof(size_t) * (size_t)tab->n);
    size_t work = 0;
    for (int i = 0; i < tab->n; i++) {
        const PEntry *e = &tab->e[i];
        size_t n = e->rows * e->cols;
        o->voff[i] = o->nv;
        if (o->kind == OPT_MUON && param_is_matrix(e)) {
            size_t w = muon_scratch_floats(e->rows, e->cols);
            work = w > work ? w : work;
        } else o->nv += n;
    }
    if (o->kind == OPT_ADAMW8) {
        o->whole = zero_plan(tab, param_layers(tab), 0, 0, 1);
        o->blocks = zero_block_plan(&o->whole);
        o->nblocks = o->blocks.shard;
        o->qm = (int8_t *)callocCheck(o->total);
        o->qv = (uint8_t *)callocCheck(o->total);
        o->sm = (float *)callocCheck(sizeof(float) * o->nblocks);
        o->sv = (float *)callocCheck(sizeof(float) * o->nblocks);
        return;
    }
    o->m = (float *)callocCheck(sizeof(float) * o->total);
    o->v = (float *)callocCheck(sizeof(float) * o->nv);
    if (work) o->work = (float *)mallocCheck(sizeof(float) * work);
}

// AdamW (adamw, adamw8) over ZeRO stage `stage` of c's ranks (> 0): the states become this rank's shard, what they
// held moved into it (a state read before the step opened). Again with the same partition: nothing to do.
static void optimizer_shard(Optimizer *o, const ParamTable *tab, int L, int stage, const Comm *c) {
    if (o->z) {
        if (o->z->stage != stage || o->z->rank != c->rank || o->z->world != c->world)
            fail("internal: the optimizer is sharded for another partition");
        return;
    }
    if (o->kind == OPT_MUON || stage < 1) fail("internal: optimizer_shard takes AdamW at a ZeRO stage >= 1");
    o->z = (ZeroPlan *)mallocCheck(sizeof(ZeroPlan));
    *o->z = zero_plan(tab, L, stage, c->rank, c->world);
    if (o->kind == OPT_ADAMW8) {  // codes by piece, scales by block (the whole layout's block j is global block j)
        ZeroPlan b = zero_block_plan(o->z);
        int8_t *qm = (int8_t *)mallocCheck(o->z->shard);
        uint8_t *qv = (uint8_t *)mallocCheck(o->z->shard);
        float *sm = (float *)mallocCheck(sizeof(float) * b.shard), *sv = (float *)mallocCheck(sizeof(float) * b.shard);
        for (int k = 0; k < o->z->npiece; k++) {
            const ZeroPiece *p = &o->z->p[k];
            memcpy(qm + p->s, o->qm + p->w, p->n), memcpy(qv + p->s, o->qv + p->w, p->n);
        }
        for (int k = 0; k < b.npiece; k++) {
            const ZeroPiece *p = &b.p[k];
            memcpy(sm + p->s, o->sm + p->w, sizeof(float) * p->n), memcpy(sv + p->s, o->sv + p->w, sizeof(float) * p->n);
        }
        free(o->qm), free(o->qv), free(o->sm), free(o->sv);
        zero_plan_free(&o->blocks), zero_plan_free(&o->whole);  // the shard's plan (o->z) lays the blocks out now
        o->qm = qm, o->qv = qv, o->sm = sm, o->sv = sv, o->blocks = b, o->nblocks = b.shard;
        return;
    }
    float *m = (float *)mallocCheck(sizeof(float) * o->z->shard), *v = (float *)mallocCheck(sizeof(float) * o->z->shard);
    for (int k = 0; k < o->z->npiece; k++) {
        const ZeroPiece *p = &o->z->p[k];
        memcpy(m + p->s, o->m + p->w, sizeof(float) * p->n), memcpy(v + p->s, o->v + p->w, sizeof(float) * p->n);
    }
    free(o->m), free(o->v);
    o->m = m, o->v = v;
}

static size_t optimizer_bytes(const Optimizer *o) {
    if (o->kind == OPT_ADAMW8) return 2 * (o->z ? o->z->shard : o->total) + 2 * sizeof(float) * o->nblocks;
    if (o->z) return 2 * sizeof(float) * o->z->shard;
    return sizeof(float) * (o->total + o->nv);
}

// "| <who> adamw: state 12.34 MiB (8.00 bytes per parameter)", a sharded one's per rank
static void optimizer_print(const Optimizer *o, const char *who) {
    double b = (double)optimizer_bytes(o);
    if (o->z)
        printf("| %s %s: state %.2f MiB on each rank, its ZeRO %d shard (%.2f bytes per parameter over %d ranks)\n", who,
               opt_names[o->kind], b / 1048576.0, o->z->stage, b / (double)o->total, o->z->world);
    else printf("| %s %s: state %.2f MiB (%.2f bytes per parameter)\n", who, opt_names[o->kind], b / 1048576.0,
                b / (double)o->total);
}

static void optimizer_free(Optimizer *o) {
    free(o->m), free(o->v), free(o->voff), free(o->qm), free(o->qv), free(o->sm), free(o->sv);
    free(o->work);
    zero_plan_free(&o->whole), zero_plan_free(&o->blocks);
    if (o->z) zero_plan_free(o->z), free(o->z);
}

// update number t (from 1: Adam's bias correction) of every trained tensor of m from its gradients m->gw
static void optimizer_update(Optimizer *o, Model *m, float lr, float wd, int t) {
    if (o->z) fail("internal: a sharded optimizer is updated by its step");
    o->t = t;
    if (o->kind == OPT_ADAMW8) {  // the world of one's shard is the table
        adamw8_shard(&o->whole, &o->blocks, &m->tab, m->w, m->gw, o->qm, o->qv, o->sm, o->sv, lr, o->b1, o->b2, o->eps,
                     wd, t);
        return;
    }
    for (int i = 0; i < m->tab.n; i++) {
        const PEntry *e = &m->tab.e[i];
        if (e->frozen) continue;
        size_t n = e->rows * e->cols;
        float *p = m->w + e->offset, *g = m->gw + e->offset, wdi = param_decays(e) ? wd : 0.0f;
        if (o->kind == OPT_MUON && param_is_matrix(e))
            muon_update(p, g, o->m + e->offset, (int)e->rows, (int)e->cols, lr, o->mu, wdi, o->work);
        else adamw_update(p, g, o->m + e->offset, o->v + o->voff[i], n, lr, o->b1, o->b2, o->eps, wdi, o->t);
    }
}

// global L2 norm over several gradient blocks (deterministic)
static double grad_norm2(const float *g, size_t n) { return dot_det(g, g, n); }

// scale gradients so the global norm is at most max_norm (torch clip_grad_norm_: coef = max/(norm+1e-6))
static float clip_coef(double norm, double max_norm) {
    if (max_norm <= 0) return 1.0f;
    double c = max_norm / (norm + 1e-6);
    return c < 1.0 ? (float)c : 1.0f;
}

// Learning-rate schedule both trainers use: linear warmup to `peak` over `warmup` steps, then cosine
// decay to floor_frac * peak at step `total` (Sheared-LLaMA: 10% warmup, floor 10%). step counts from 1.
static double lr_schedule(int step, int total, int warmup, double peak, double floor_frac) {
    if (warmup > 0 && step <= warmup) return peak * step / warmup;
    if (total <= warmup) return peak;
    double p = (double)(step - warmup) / (double)(total - warmup);
    if (p > 1) p = 1;
    return peak * (floor_frac + (1 - floor_frac) * 0.5 * (1 + cos(3.141592653589793 * p)));
}

// ================================================================================================
// 7. Step: what train.c and prune.c ask of the device that holds the model. One interface, two
//    implementations: the CPU's here (it works in the Model and Optimizer themselves) and one GPU's
//    in hip/gpu.h; step_open picks the device, once. One optimizer step of the method:
//      step_masks(S, zl, zh, zf, zd)           pruning: the mask values (host arrays; NULL: none)
//      step_zero_grad(S)
//      per micro-batch (--grad-accum):  loss += step_forward(S, tok, tgt, 1); step_backward(S);
//      loss = step_reduce(S, loss)             after the last micro-batch: the gradients are final
//      step_mask_grads(S, dzl, dzh, dzf, dzd)  pruning: d loss / d mask values (this rank's), on the host
//      norm = sqrt(step_grad_sumsq(S))         over every trained weight
//      step_update(S, lr, wd, gscale, t)       the optimizer given at open; gradients times gscale first
//    Evaluation: data/mixture.h's mixture_eval(mx, step_eval_fn, S, ...). Checkpoints: step_get(S,
//    what, i) brings the weights and/or optimizer state of tensor i of the table (-1: all) into the
//    host Model and Optimizer given at open, step_put sends them back (after a resume).
//    Data parallel and sharded optimizer state belong inside the implementations, so the method
//    keeps reading the same: each rank passes its own micro-batch, step_reduce averages the weights'
//    gradients over the ranks and returns the global batch's loss, the norm is global, step_update
//    updates what the rank owns. The mask values may differ per rank (one z draw each): their
//    gradients come back unreduced, for the caller to average after its own chain rule. At ZeRO
//    >= 1 step_open shards the host Optimizer (optimizer_shard): it holds this rank's moments only,
//    and every rank writes its part of a checkpoint (checkpoint_save).
// ================================================================================================

enum { DEVICE_CPU, DEVICE_GPU };
static const char *const device_names[] = {"cpu", "gpu"};
// what step_get / step_put move; STEP_OWNED (step_get of the weights at ZeRO >= 1): only this rank's ranges of the
// table need to be current on the host, for a checkpoint every rank writes its part of (checkpoint_save)
enum { STEP_WEIGHTS = 1, STEP_OPTIMIZER = 2, STEP_OWNED = 4 };

typedef struct {
    int device;     // DEVICE_CPU or DEVICE_GPU (--device)
    int B, T;       // this process's micro-batch: B sequences of T tokens
    int recompute;  // GPU: layers (from the first) that recompute gate|up in the backward (--gpu-recompute)
    int grad_bf16;  // GPU: the weight matrices' gradients stored in bf16 (--grads bf16)
    int bf16_only;  // GPU: the weight matrices without an fp32 master, stochastic rounding (--master none)
    int checkpoint; // GPU: layers (from the first) that keep only their input, run again in the backward (--gpu-checkpoint)
    Comm *comm;     // the data-parallel ranks (NULL: this process alone; the GPU opens its NCCL communicator)
    int zero;       // ZeRO stage over the ranks (--zero; hip/comm.h's partition)
} StepOpts;

// The step's flags as every program's flag table (util.h's Flag) holds them: a StepFlags member f of the
// program's settings S and one row per flag, its help written once here. --device's help is the program's own
// (what runs where); hip/bench.c (GPU only) has no --device.
typedef struct {
    const char *device;          // --device cpu | gpu
    int recompute, checkpoint;   // --gpu-recompute N, --gpu-checkpoint N
    const char *grads, *master;  // --grads f32 | bf16, --master f32 | none
    int zero;                    // --zero S (train, prune: data parallel)
} StepFlags;
#define STEP_DEVICE_FLAG(S, f, help) {"device", F_STR, offsetof(S, f.device), "cpu", "cpu|gpu", SAVE_NO, help}
#define STEP_LAYER_FLAGS(S, f)                                                                                           \
    {"gpu-recompute", F_INT, offsetof(S, f.recompute), "0", ">= 0", SAVE_NO, "GPU: layers (from the first) that "     \
     "recompute gate|up in the backward instead of keeping it (less memory, one more product each)"},                 \
    {"gpu-checkpoint", F_INT, offsetof(S, f.checkpoint), "0", ">= 0", SAVE_NO, "GPU: layers (from the first) that "   \
     "keep only their input and run again in the backward (far less memory, ~1/3 more products each)"}
#define STEP_GPU_FLAGS(S, f)                                                                                             \
    STEP_LAYER_FLAGS(S, f),                                                                                              \
    {"grads", F_STR, offsetof(S, f.grads), "f32", "f32|bf16", SAVE_NO, "GPU: the weight matrices' gradients in f32 "  \
     "| bf16 (2 bytes a parameter less; one more rounding of each gradient)"},                                          \
    {"master", F_STR, offsetof(S, f.master), "f32", "f32|none", SAVE_NO, "GPU: f32 master weights | none (the "       \
     "matrices only in bf16, updated with stochastic rounding: 4 bytes a parameter less)"}
#define STEP_ZERO_FLAG(S, f)                                                                                             \
    {"zero", F_INT, offsetof(S, f.zero), "0", "[0, 3]", SAVE_NO, "ZeRO stage over the mpirun ranks (--batch is per "   \
     "rank): 0 none, 1 AdamW's states (adamw, adamw8) and master sharded, 2 the gradients too, 3 the weights too "     \
     "(on the CPU 2 and 3 run as 1)"}

// The step options the flags ask for, micro-batches of B x T: train: the model trained (the layer options and
// the ZeRO stage apply; the caller names the ranks, so.comm), else an evaluation. The GPU's options without
// --device gpu are refused in one line.
static StepOpts step_opts(const StepFlags *f, int B, int T, int train) {
    StepOpts so = {!strcmp(f->device, "gpu") ? DEVICE_GPU : DEVICE_CPU, B, T, train ? f->recompute : 0,
                   !strcmp(f->grads, "bf16"), !strcmp(f->master, "none"), train ? f->checkpoint : 0, NULL,
                   train ? f->zero : 0};
    if (so.device == DEVICE_CPU && (f->recompute || f->checkpoint))
        fail("--gpu-recompute %d --gpu-checkpoint %d apply to --device gpu only", f->recompute, f->checkpoint);
    if (so.device == DEVICE_CPU && (so.grad_bf16 || so.bf16_only))
        fail("--grads %s --master %s: the GPU's storage options apply to --device gpu only", f->grads, f->master);
    return so;
}

typedef struct Step Step;
typedef struct {  // one device's implementation of the step_ functions below (same arguments)
    void (*masks)(Step *S, const float *zl, const float *zh, const float *zf, const float *zd);
    void (*zero_grad)(Step *S);
    float (*forward)(Step *S, const int *tok, const int *tgt, int want_grad);
    void (*backward)(Step *S);
    double (*reduce)(Step *S, double loss);
    void (*mask_grads)(Step *S, float *dzl, float *dzh, float *dzf, float *dzd);
    double (*grad_sumsq)(Step *S);
    void (*update)(Step *S, float lr, float wd, float gscale, int t);
    float (*eval)(Step *S, const int *tok, const int *tgt, int rows);
    void (*copy)(Step *S, int what, int i, int to_device);
    double (*memory)(Step *S);
    void (*close)(Step *S);
} StepImpl;

struct Step {
    const StepImpl *f;
    int device, B, T;
    const char *name;  // the device, for logs
    Model *m;          // the host model: config, table, the fp32 weights checkpoints read
    Optimizer *opt;    // the host optimizer state (NULL: a step for evaluation only)
    float *dz[4];      // CPU: the mask gradients (dzl, dzh, dzf, dzd) m's hooks point at while masks are on
    void *dev;         // GPU: its state (hip/gpu.h)
    // data parallel (dp: several ranks, a launcher, or a ZeRO stage): the ranks and the partition; on the CPU at
    // stage >= 1 this rank's shard of the gradients (gs; AdamW's moments are opt's shard: optimizer_shard)
    const Comm *comm;
    int dp;
    ZeroPlan z;
    float *gs;
};

// Masks for the next forward and backward: zl [L], zh [L, H], zf [L, F] (E2B: ffn_off), zd [d], as
// model.h's hooks; NULL turns one off. Set them before step_zero_grad: it zeroes their gradients too.
static void step_masks(Step *S, const float *zl, const float *zh, const float *zf, const float *zd) {
    S->f->masks(S, zl, zh, zf, zd);
}
static void step_zero_grad(Step *S) { S->f->zero_grad(S); }
// mean next-token cross-entropy over the targets >= 0 of tok, tgt [B, T]; with want_grad a step_backward
// may follow (one per forward)
static float step_forward(Step *S, const int *tok, const int *tgt, int want_grad) {
    return S->f->forward(S, tok, tgt, want_grad);
}
static void step_backward(Step *S) { S->f->backward(S); }  // gradients ACCUMULATE until step_zero_grad
// the gradients are final; loss: this rank's, returns the global batch's
static double step_reduce(Step *S, double loss) { return S->f->reduce(S, loss); }
static void step_mask_grads(Step *S, float *dzl, float *dzh, float *dzf, float *dzd) {
    S->f->mask_grads(S, dzl, dzh, dzf, dzd);
}
static double step_grad_sumsq(Step *S) { return S->f->grad_sumsq(S); }  // Σ g² over the trained weights
// update t (from 1) of the optimizer given at open, gradients times gscale first (clip, 1/grad-accum);
// weight decay wd where param_decays
static void step_update(Step *S, float lr, float wd, float gscale, int t) { S->f->update(S, lr, wd, gscale, t); }
static void step_get(Step *S, int what, int i) { S->f->copy(S, what, i, 0); }
static void step_put(Step *S, int what, int i) { S->f->copy(S, what, i, 1); }
static void step_close(Step *S) {
    if (S) S->f->close(S);
}

// data/mixture.h's EvalFn: the loss of rows <= B windows of T tokens, no gradients
static float step_eval_fn(void *ctx, const int *tok, const int *tgt, int rows, int T) {
    Step *S = (Step *)ctx;
    if (T != S->T || rows > S->B) fail("evaluation: %d x %d windows for a step set up for %d x %d", rows, T, S->B, S->T);
    return S->f->eval(S, tok, tgt, rows);
}

// the step log's memory field, where the device reports memory (" | gpu 12.34 GiB"; the CPU: nothing)
static void step_log_memory(Step *S) {
    double gib = S->f->memory(S);
    if (gib >= 0) printf(" | %s %.2f GiB", device_names[S->device], gib);
}

// --- the CPU: model.h's forward and backward on the Model itself ---------------------------------------------

// EvalFn over a Model (profile.c evaluates models this way)
static float model_eval_fn(void *m, const int *tok, const int *tgt, int rows, int T) {
    return model_forward((Model *)m, tok, tgt, rows, T, 0, NULL);
}

static void cpu_step_masks(Step *S, const float *zl, const float *zh, const float *zf, const float *zd) {
    Model *m = S->m;
    const Config *c = &m->c;
    const float *z[4] = {zl, zh, zf, zd};
    size_t n[4] = {(size_t)c->L, (size_t)c->L * c->H, ffn_off(c, c->L), (size_t)c->d};
    float **hook[4] = {&m->zl, &m->zh, &m->zf, &m->zd}, **dhook[4] = {&m->dzl, &m->dzh, &m->dzf, &m->dzd};
    for (int k = 0; k < 4; k++) {
        if (z[k] && !S->dz[k]) S->dz[k] = (float *)callocCheck(sizeof(float) * n[k]);
        *hook[k] = (float *)z[k];
        *dhook[k] = z[k] ? S->dz[k] : NULL;
    }
    model_masks_changed(m);
}

static void cpu_step_zero_grad(Step *S) {
    model_alloc_grads(S->m);
    model_zero_grad(S->m);
}

static float cpu_step_forward(Step *S, const int *tok, const int *tgt, int want_grad) {
    return model_forward(S->m, tok, tgt, S->B, S->T, want_grad, NULL);
}

static void cpu_step_backward(Step *S) { model_backward(S->m); }

// frozen tensors (Gemma 4's layer_scalar) neither train nor count in the norm. Data parallel: the gradients
// averaged over the ranks unit by unit from the last layer down, as a backward leaves them (stage >= 1: into
// this rank's shard), and the loss of the global batch returned. The mask gradients stay this rank's: each rank
// draws its own z (Sheared-LLaMA averages one draw per rank), so the caller averages d loss / d log_alpha after
// the chain through its own sample. On the CPU stages 2 and 3 run stage 1's collectives: model.h's backward keeps
// the whole table, so there is nothing more to shard here; the stages differ where they save memory, on a GPU.
static double cpu_step_reduce(Step *S, double loss) {
    const ParamTable *t = &S->m->tab;
    for (int i = 0; S->m->gw && i < t->n; i++)
        if (t->e[i].frozen) memset(S->m->gw + t->e[i].offset, 0, sizeof(float) * t->e[i].rows * t->e[i].cols);
    if (!S->dp) return loss;
    const Comm *c = S->comm;
    if (S->m->gw)
        for (int i = S->z.nunit - 1; i >= 0; i--) zero_reduce_unit(c, &S->z, i, S->m->gw, S->gs, 1.0f / (float)c->world);
    return comm_sum(c, loss) / c->world;
}

static void cpu_step_mask_grads(Step *S, float *dzl, float *dzh, float *dzf, float *dzd) {
    const Config *c = &S->m->c;
    float *out[4] = {dzl, dzh, dzf, dzd};
    size_t n[4] = {(size_t)c->L, (size_t)c->L * c->H, ffn_off(c, c->L), (size_t)c->d};
    for (int k = 0; k < 4; k++)
        if (out[k] && S->dz[k] && out[k] != S->dz[k]) memcpy(out[k], S->dz[k], sizeof(float) * n[k]);
}

// stage 0: every rank holds the whole averaged gradient (summed as one process sums it)
static double cpu_step_grad_sumsq(Step *S) {
    if (S->dp && S->z.stage > 0) return zero_sumsq(S->comm, &S->z, S->gs);
    return grad_norm2(S->m->gw, S->m->tab.total);
}

// ZeRO >= 1: AdamW (or 8-bit AdamW) on this rank's pieces of the table (its shard of gradients and moments), then every rank's
// updated weights to every rank
static void cpu_step_update_shard(Step *S, float lr, float wd, float gscale, int t) {
    Model *m = S->m;
    Optimizer *o = S->opt;
    const ZeroPlan *z = &S->z;
    if (gscale != 1.0f)
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < z->shard; i++) S->gs[i] *= gscale;
    o->t = t;
    if (o->kind == OPT_ADAMW8)
        adamw8_shard(z, &o->blocks, &m->tab, m->w, S->gs, o->qm, o->qv, o->sm, o->sv, lr, o->b1, o->b2, o->eps, wd, t);
    else
        for (int k = 0; k < z->npiece; k++) {
            const ZeroPiece *p = &z->p[k];
            const PEntry *e = &m->tab.e[p->tensor];
            if (e->frozen) continue;
            adamw_update(m->w + p->w, S->gs + p->s, o->m + p->s, o->v + p->s, p->n, lr, o->b1, o->b2, o->eps,
                         param_decays(e) ? wd : 0.0f, t);
        }
    for (int i = 0; i < z->nunit; i++) zero_gather_unit(S->comm, z, i, m->w);
}

static void cpu_step_update(Step *S, float lr, float wd, float gscale, int t) {
    Model *m = S->m;
    if (!S->opt) fail("internal: step_update on a step opened for evaluation only");
    if (S->dp && S->z.stage > 0) {
        cpu_step_update_shard(S, lr, wd, gscale, t);
        return;
    }
    if (gscale != 1.0f)
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < m->tab.total; i++) m->gw[i] *= gscale;
    optimizer_update(S->opt, m, lr, wd, t);
}

static float cpu_step_eval(Step *S, const int *tok, const int *tgt, int rows) {
    return model_eval_fn(S->m, tok, tgt, rows, S->T);
}

// The host Model's weights are the working copy (whole on every rank) and at ZeRO >= 1 the host Optimizer holds
// the shard the update works in: nothing to move.
static void cpu_step_copy(Step *S, int what, int i, int to_device) {}
static double cpu_step_memory(Step *S) { return -1; }

static void cpu_step_close(Step *S) {
    Model *m = S->m;
    if (S->dp) zero_plan_free(&S->z), free(S->gs);
    float **dhook[4] = {&m->dzl, &m->dzh, &m->dzf, &m->dzd};
    for (int k = 0; k < 4; k++) {
        if (*dhook[k] && *dhook[k] == S->dz[k]) *dhook[k] = NULL;
        free(S->dz[k]);
    }
    free(S);
}

static Step *cpu_step_open(Model *m, Optimizer *opt, const StepOpts *o) {
    static const StepImpl cpu = {cpu_step_masks, cpu_step_zero_grad, cpu_step_forward, cpu_step_backward,
                                 cpu_step_reduce, cpu_step_mask_grads, cpu_step_grad_sumsq, cpu_step_update,
                                 cpu_step_eval, cpu_step_copy, cpu_step_memory, cpu_step_close};
    Step *S = (Step *)callocCheck(sizeof(Step));
    S->f = &cpu, S->device = DEVICE_CPU, S->name = "cpu", S->B = o->B, S->T = o->T, S->m = m, S->opt = opt;
    S->comm = o->comm;
    S->dp = comm_dp(o->comm, o->zero);
    if (m->w_owned && (!S->dp || o->zero == 0)) fail("internal: a model loaded as ZeRO pieces in a step without ZeRO");
    if (!S->dp) return S;
    S->z = zero_plan(&m->tab, m->c.L, o->zero, o->comm->rank, o->comm->world);
    if (opt && opt->z) S->gs = (float *)callocCheck(sizeof(float) * S->z.shard);
    if (m->w_owned) {  // each rank read its pieces (model_load_shard): the CPU computes with every unit
        for (int i = 0; i < S->z.nunit; i++) zero_gather_unit(S->comm, &S->z, i, m->w);
        m->w_owned = 0;
    }
    return S;
}

// --- the device is picked here ------------------------------------------------------------------------------
// The GPU builds (`make gpu`: hip/build/train, prune, bench, check_step) define USE_GPU and link hip/gpu.hip;
// the hip/ sources (C++, some with USE_GPU) include model.h for its CPU references and never open a step.
#if defined(USE_GPU) && !defined(__cplusplus)
#include "hip/gpu.h"  // gpu_step_open, gpu_step_refuses
#else
static const char *gpu_step_refuses(const StepOpts *o, const Config *c, int optimizer) {
    static char why[256];
    snprintf(why, sizeof why, "--device gpu: this binary was built without the GPU path; on a machine with nvcc and "
             "CUDA run `make gpu` and use hip/build/%s --device gpu", program_invocation_short_name);
    return why;
}
static Step *gpu_step_open(Model *m, Optimizer *opt, const StepOpts *o) { fail("%s", gpu_step_refuses(o, &m->c, -1)); }
#endif

// NULL when this build runs o->device for model c (NULL: not known yet) with optimizer kind `optimizer`
// (-1: none or not known yet), else why not in one line; train and prune ask before writing anything
static const char *step_refuses(const StepOpts *o, const Config *c, int optimizer) {
    static char why[160];
    if (o->zero > 0 && optimizer == OPT_MUON) {  // the partition shards element-wise states: Muon's are whole matrices
        snprintf(why, sizeof why, "--zero %d shards AdamW's states (adamw, adamw8); --optimizer %s runs with --zero 0",
                 o->zero, opt_names[optimizer]);
        return why;
    }
    return o->device == DEVICE_GPU ? gpu_step_refuses(o, c, optimizer) : NULL;
}

// The step of o->device over m and opt (NULL: evaluation only), starting from their host values as they
// are now: the weights, and the optimizer state when opt has made updates (t > 0)
static Step *step_open(Model *m, Optimizer *opt, const StepOpts *o) {
    const char *why = step_refuses(o, &m->c, opt ? opt->kind : -1);
    if (why) fail("%s", why);
    if (opt && o->zero > 0 && comm_dp(o->comm, o->zero)) optimizer_shard(opt, &m->tab, m->c.L, o->zero, o->comm);
    return o->device == DEVICE_GPU ? gpu_step_open(m, opt, o) : cpu_step_open(m, opt, o);
}

// ================================================================================================
// 8. Run checkpoints: the one layout of train's and prune's OUT/checkpoint/ (util.h writes it into
//    checkpoint.tmp, swaps it in and reads its state back strictly). Both programs resume from it bit
//    for bit, on either device:
//      config.json, model.safetensors  the model the run trains (any stage loads it with --model DIR)
//      optimizer.safetensors           the weights' Optimizer, and the fp32 master weights when the model
//                                      is saved below fp32
//      <prog>_state.json               the step, RNG states, data cursor and settings of the program
//    and a method's own tensors in a file it names (prune: masks.safetensors, the log_alphas, λ and their
//    AdamW moments).
// ================================================================================================

static StateTensor state_tensor(const char *name, int dtype, const void *p, size_t n) {
    StateTensor t;
    t.name = name, t.dtype = dtype, t.p = (void *)p, t.n = n;
    return t;
}

// the Optimizer's state, then (dtype below fp32) m's fp32 weights: what is written, and what a resume
// must find with exactly these dtypes and sizes; t holds 5
static int optimizer_tensors(const Optimizer *o, const Model *m, int dtype, StateTensor *t) {
    int n = 0;
    if (o->kind == OPT_ADAMW8) {
        t[n++] = state_tensor("exp_avg.q8", ST_I8, o->qm, o->total);
        t[n++] = state_tensor("exp_avg.absmax", ST_F32, o->sm, o->nblocks);
        t[n++] = state_tensor("exp_avg_sq.q8", ST_U8, o->qv, o->total);
        t[n++] = state_tensor("exp_avg_sq.max", ST_F32, o->sv, o->nblocks);
    } else {
        t[n++] = state_tensor(o->kind == OPT_MUON ? "momentum" : "exp_avg", ST_F32, o->m, o->total);
        t[n++] = state_tensor("exp_avg_sq", ST_F32, o->v, o->nv);
    }
    if (dtype != ST_F32) t[n++] = state_tensor("master_weights", ST_F32, m->w, o->total);
    return n;
}

// optimizer_tensors' AdamW state as tensors of the ZeRO partition: the states from o's shard (8-bit: the codes by
// element, the scales by block), then (master) the fp32 master from m's table; t holds 5
static int optimizer_zero_tensors(const Optimizer *o, const Model *m, int master, ZeroTensor *t) {
    int64_t P = (int64_t)o->total;
    ZeroTensor w = {"master_weights", 1, {P, 1}, 0, m->w, 0, 0, NULL};
    if (o->kind == OPT_ADAMW8) {
        int64_t B = (int64_t)zero_plan_span(&o->blocks);
        ZeroTensor q[4] = {{"exp_avg.q8", 1, {P, 1}, 0, o->qm, 1, ST_I8, NULL},
                           {"exp_avg.absmax", 1, {B, 1}, 0, o->sm, 1, 0, &o->blocks},
                           {"exp_avg_sq.q8", 1, {P, 1}, 0, o->qv, 1, ST_U8, NULL},
                           {"exp_avg_sq.max", 1, {B, 1}, 0, o->sv, 1, 0, &o->blocks}};
        memcpy(t, q, sizeof q);
        t[4] = w;
        return master ? 5 : 4;
    }
    ZeroTensor a[2] = {{"exp_avg", 1, {P, 1}, 0, o->m, 1, 0, NULL}, {"exp_avg_sq", 1, {P, 1}, 0, o->v, 1, 0, NULL}};
    memcpy(t, a, sizeof a);
    t[2] = w;
    return master ? 3 : 2;
}

// The model of dir as a rank of a ZeRO stage >= 1 run keeps it on the host (train and prune with --zero >= 1):
// the table is mapped whole, but only this rank's pieces (hip/comm.h zero_plan: its part of every unit and the
// replicated tails) are read from the files and converted; the other ranks' ranges stay untouched zero pages,
// which take no memory (m->w_owned). Every tensor is still checked for presence, shape and dtype. A CPU step
// gathers the rest as it opens (it computes with the whole table); a GPU step uploads the pieces and gathers on
// the device, so the host of a GPU rank never holds more than its shard.
static void model_load_shard(Model *m, const char *dir, int stage, const Comm *c) {
    Checkpoint ck = model_open(m, dir);
    m->w_map = sizeof(float) * m->tab.total;
    m->w = (float *)mmap(NULL, m->w_map, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m->w == MAP_FAILED) fail("%s: cannot map %.2f GiB for the model's table: %s", dir, m->w_map / 1073741824.0,
                                 strerror(errno));
    m->p = params_carve(&m->c, &m->tab, m->w);
    ZeroPlan z = zero_plan(&m->tab, m->c.L, stage, c->rank, c->world);
    for (int i = 0, k = 0; i < m->tab.n; i++) {  // every tensor checked; the pieces come in table order
        const PEntry *e = &m->tab.e[i];
        const STensor *t = checkpoint_tensor(&ck, dir, e);
        for (; k < z.npiece && z.p[k].tensor == i; k++) st_range_f32(t, z.p[k].w - e->offset, z.p[k].n, m->w + z.p[k].w);
    }
    m->w_owned = 1;
    printf("| model: this rank read its ZeRO %d pieces of %s, %.2f of %.2f MiB resident\n", stage, dir,
           resident_bytes(m->w, m->w_map) / 1048576.0, m->w_map / 1048576.0);
    zero_plan_free(&z);
    checkpoint_close(&ck);
    model_masks_changed(m);
}

// model_init_random's values of this rank's ZeRO pieces only (m laid out, its table untouched zero pages): the one
// stream of draws is walked whole (two per matrix element, skipped where another rank owns it), so every rank's
// pieces are what one process draws; the rest stays untouched (m->w_owned). A skipped element costs ~1/17 of a
// drawn one (NOTES.md §10).
static void model_init_random_shard(Model *m, uint64_t seed, double std, int stage, const Comm *c) {
    ZeroPlan z = zero_plan(&m->tab, m->c.L, stage, c->rank, c->world);
    Rng r = rng_seed(seed);
    int k = 0;
    for (int i = 0; i < m->tab.n; i++) {
        const PEntry *e = &m->tab.e[i];
        size_t n = e->rows * e->cols, at = 0;  // draws made up to element `at` of the tensor
        for (; k < z.npiece && z.p[k].tensor == i; k++) {
            const ZeroPiece *p = &z.p[k];
            size_t a = p->w - e->offset;
            float *w = m->w + p->w;
            if (e->is_norm) {
                for (size_t j = 0; j < p->n; j++) w[j] = is_rms_weight(e) ? 1.0f - norm_offset(&m->c) : 1.0f;
                continue;
            }
            for (; at < a; at++) rng_next(&r), rng_next(&r);
            for (size_t j = 0; j < p->n; j++) w[j] = (float)(std * rng_normal(&r));
            at = a + p->n;
        }
        for (; !e->is_norm && at < n; at++) rng_next(&r), rng_next(&r);
    }
    m->w_owned = 1;
    printf("| model: this rank drew its ZeRO %d pieces of a random init, %.2f of %.2f MiB resident\n", stage,
           resident_bytes(m->w, sizeof(float) * m->tab.total) / 1048576.0, sizeof(float) * m->tab.total / 1048576.0);
    zero_plan_free(&z);
}

// OUT/checkpoint/ of step `step` of program prog ("train", "prune": names the state file and the test
// hook): m saved as dtype, o's state, the state JSON, and nx method tensors x in OUT/checkpoint/x_file. Every rank
// of c calls it (c NULL: one process). A sharded optimizer (ZeRO >= 1, o->z): each rank writes its part of
// model.safetensors and optimizer.safetensors (hip/comm.h zero_write_tensors; step_get with STEP_OWNED made its
// ranges of m current), no rank ever holding more than its shard of the state; rank 0 writes the rest. Otherwise
// rank 0 writes everything (every rank holds the same). The files are the same either way; state and x are rank 0's.
static void checkpoint_save(const Comm *c, const char *out, const char *prog, int step, const Model *m, int dtype,
                            const Optimizer *o, const cJSON *state, const char *x_file, const StateTensor *x, int nx) {
    int rank = c ? c->rank : 0;
    const ZeroPlan *z = o->z;
    if (!z && rank > 0) return;
    char *tmp = rank == 0 ? ckpt_begin(out) : path_join(out, "checkpoint.tmp"), name[64];
    if (z) comm_barrier(c);  // the directory exists for every rank
    cJSON *meta = cJSON_CreateObject();
    cJSON_AddStringToObject(meta, "optimizer", opt_names[o->kind]);
    snprintf(name, sizeof name, "%d", o->t);
    cJSON_AddStringToObject(meta, "updates", name);
    char *p = path_join(tmp, "optimizer.safetensors");
    if (z) {
        char *mp = path_join(tmp, "model.safetensors");
        zero_write_st(c, z, &m->tab, mp, dtype, m->w, 0, "");
        if (rank == 0) model_save_config(m, tmp, dtype);
        free(mp);
        ZeroTensor t[5];
        zero_write_tensors(c, z, p, ST_F32, t, optimizer_zero_tensors(o, m, dtype != ST_F32, t), meta);
    } else {
        model_save(m, tmp, dtype);
        StateTensor t[5];
        state_tensors_write(p, t, optimizer_tensors(o, m, dtype, t), meta);
    }
    free(p);
    if (rank == 0) {
        if (x_file) {
            p = path_join(tmp, x_file);
            state_tensors_write(p, x, nx, NULL);
            free(p);
        }
        snprintf(name, sizeof name, "%s_state.json", prog);
        p = path_join(tmp, name);
        write_json_atomic(p, state);
        free(p);
        ckpt_commit(out, prog, step);
    }
    if (z) comm_barrier(c);  // in place for every rank
    free(tmp);
}

// Read what checkpoint_save wrote beside the model in dir into o (and, dtype below fp32, m's fp32 weights)
// and x, every tensor checked before it is used; o must be initialized for the run being resumed. A sharded o
// (optimizer_shard) reads its shard of the moments only, whatever number of ranks wrote the file.
static void checkpoint_load_state(const char *dir, Model *m, int dtype, Optimizer *o, const char *x_file,
                                  const StateTensor *x, int nx) {
    char *p = path_join(dir, "optimizer.safetensors");
    if (!file_exists(p)) fail("%s: no optimizer.safetensors; the checkpoint is incomplete (start again without --resume)", dir);
    SFile *f = st_open(p);
    const char *have = st_find(f, "exp_avg.q8") ? "adamw8" : st_find(f, "momentum") ? "muon" : "adamw";
    st_close(f);
    char hint[200];
    snprintf(hint, sizeof hint, "it holds %s state and this run uses --optimizer %s%s; resume with the run's "
             "--optimizer and --dtype", have, opt_names[o->kind], dtype != ST_F32 ? " with fp32 master weights" : "");
    StateTensor t[5];
    if (o->z) {  // the moments' shard, and the master's pieces when m holds its pieces only (model_load_shard)
        ZeroTensor zt[5];
        zero_read_tensors(o->z, p, zt, optimizer_zero_tensors(o, m, dtype != ST_F32 && m->w_owned, zt), hint);
        if (dtype != ST_F32 && !m->w_owned) {  // the master whole
            t[0] = state_tensor("master_weights", ST_F32, m->w, o->total);
            state_tensors_read(p, t, 1, hint);
        }
    } else state_tensors_read(p, t, optimizer_tensors(o, m, dtype, t), hint);
    free(p);
    if (x_file) {
        p = path_join(dir, x_file);
        state_tensors_read(p, x, nx, "the checkpoint belongs to another run");
        free(p);
    }
}
