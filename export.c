// export.c — a Hugging Face Gemma directory to one GGUF file that llama.cpp loads and runs with the
// same numbers (test/test_export.sh compares its logits with ours). Read top to bottom:
//   1. GGUF v3 writer      typed key/value header, tensor directory, aligned data (every offset as
//                          llama.cpp's gguf.cpp checks it), written to a temporary name and renamed
//   2. Tensor types        f32, f16, bf16 and ggml's reference q8_0 / q4_0 quantizers
//   3. Gemma -> GGUF       keys llama.cpp reads for arch gemma3 / gemma4 with the exact types it checks,
//                          tensor names and shapes, and the folds that make llama.cpp's graph compute
//                          what transformers computes (norm +1, attention scale, embedding scale)
//   4. Tokenizer metadata  byte-level vocabulary, Gemma 3 tokenizer.json, or a placeholder
//   5. main
//   ./export --model DIR --out FILE.gguf --type f32|f16|bf16|q8_0|q4_0
// Facts about llama.cpp cite its source files as shipped in npm node-llama-cpp 3.22.1 (tag v0.5.0).
#include "model.h"
#include "data/tokenizer.h"

// ================================================================================================
// 1. GGUF v3 writer
//    "GGUF" | u32 version 3 | i64 n_tensors | i64 n_kv | n_kv x {string key, i32 type, value} |
//    n_tensors x {string name, u32 n_dims, i64 ne[n_dims], i32 ggml_type, u64 offset} | pad | data.
//    Strings are u64 length + bytes (no NUL). ne[0] is the contiguous dimension (the LAST of the
//    safetensors shape). Tensor i's offset (from the data start) must equal the sum of the previous
//    tensors' sizes each padded to the alignment (gguf.cpp: "tensor '%s' has offset %lu, expected %zu").
// ================================================================================================

enum { GGUF_U8, GGUF_I8, GGUF_U16, GGUF_I16, GGUF_U32, GGUF_I32, GGUF_F32, GGUF_BOOL, GGUF_STRING, GGUF_ARRAY,
       GGUF_U64, GGUF_I64, GGUF_F64 };
#define GGUF_ALIGN 32  // GGUF_DEFAULT_ALIGNMENT; we write no general.alignment key

typedef struct {
    unsigned char *p;
    size_t n, cap;
} Buf;

static void buf_put(Buf *b, const void *p, size_t n) {
    if (b->n + n > b->cap) {
        while (b->n + n > b->cap) b->cap = b->cap ? 2 * b->cap : 4096;
        b->p = (unsigned char *)realloc(b->p, b->cap);
        if (!b->p) fail("out of memory (GGUF header of %zu bytes)", b->cap);
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}
static void buf_u32(Buf *b, uint32_t v) { buf_put(b, &v, 4); }
static void buf_i32(Buf *b, int32_t v) { buf_put(b, &v, 4); }
static void buf_u64(Buf *b, uint64_t v) { buf_put(b, &v, 8); }
static void buf_str(Buf *b, const char *s) {
    buf_u64(b, strlen(s));
    buf_put(b, s, strlen(s));
}

// ggml tensor types we write (ggml.h enum ggml_type) and their block geometry
enum { GT_F32 = 0, GT_F16 = 1, GT_Q4_0 = 2, GT_Q8_0 = 8, GT_BF16 = 30 };
static int gtype_block(int t) { return t == GT_Q4_0 || t == GT_Q8_0 ? 32 : 1; }
static int gtype_block_bytes(int t) {
    return t == GT_F32 ? 4 : t == GT_F16 || t == GT_BF16 ? 2 : t == GT_Q8_0 ? 34 : 18;
}
static const char *gtype_name(int t) {
    return t == GT_F32 ? "f32" : t == GT_F16 ? "f16" : t == GT_BF16 ? "bf16" : t == GT_Q8_0 ? "q8_0" : "q4_0";
}

// One tensor to write: rows x cols values, stored as (x + shift) * scale in `type`, read from the
// loaded model's src_rows x src_cols block and zero beyond it (FFN padding, see plan_ffn). The
// shift/scale pair carries every fold (Gemma 3's 1+w norms, the attention and embedding scales), so
// nothing is copied.
typedef struct {
    char name[64];     // GGML_MAX_NAME: names must be shorter than 64 bytes
    int ndim;          // 1 or 2
    int64_t ne[2];     // GGUF order: ne[0] = cols (contiguous), ne[1] = rows
    int type;
    const float *src;  // src_rows * src_cols floats, row-major
    int src_rows, src_cols;
    float shift, scale;
    size_t nbytes;
} GTensor;

typedef struct {
    Buf kv;
    int64_t n_kv;
    GTensor *t;
    int nt, cap;
} Gguf;

static void kv_key(Gguf *g, const char *key, int32_t type) {
    buf_str(&g->kv, key);
    buf_i32(&g->kv, type);
    g->n_kv++;
}
static void kv_u32(Gguf *g, const char *key, uint32_t v) { kv_key(g, key, GGUF_U32), buf_u32(&g->kv, v); }
static void kv_f32(Gguf *g, const char *key, float v) { kv_key(g, key, GGUF_F32), buf_put(&g->kv, &v, 4); }
static void kv_bool(Gguf *g, const char *key, int v) {
    int8_t b = v != 0;
    kv_key(g, key, GGUF_BOOL), buf_put(&g->kv, &b, 1);
}
static void kv_str(Gguf *g, const char *key, const char *s) { kv_key(g, key, GGUF_STRING), buf_str(&g->kv, s); }
static void kv_arr(Gguf *g, const char *key, int32_t elem_type, uint64_t n) {
    kv_key(g, key, GGUF_ARRAY);
    buf_i32(&g->kv, elem_type);
    buf_u64(&g->kv, n);
}
// arrays of 4-byte elements (u32, i32, f32) and of bools
static void kv_arr4(Gguf *g, const char *key, int32_t elem_type, const void *v, uint64_t n) {
    kv_arr(g, key, elem_type, n);
    buf_put(&g->kv, v, 4 * n);
}
static void kv_arr_bool(Gguf *g, const char *key, const int *v, uint64_t n) {
    kv_arr(g, key, GGUF_BOOL, n);
    for (uint64_t i = 0; i < n; i++) {
        int8_t b = v[i] != 0;
        buf_put(&g->kv, &b, 1);
    }
}

static GTensor *gguf_add(Gguf *g, const char *name, int rows, int cols, int ndim, int type, const float *src) {
    if (g->nt == g->cap) {
        g->cap = g->cap ? 2 * g->cap : 256;
        g->t = (GTensor *)realloc(g->t, sizeof(GTensor) * (size_t)g->cap);
        if (!g->t) fail("out of memory (tensor directory)");
    }
    GTensor *t = &g->t[g->nt++];
    memset(t, 0, sizeof(*t));
    if (strlen(name) >= sizeof t->name) fail("internal: tensor name %s is too long for GGUF", name);
    strcpy(t->name, name);
    t->ndim = ndim;
    t->ne[0] = cols, t->ne[1] = rows;
    t->type = type;
    t->src = src;
    t->src_rows = rows, t->src_cols = cols;
    t->shift = 0.0f, t->scale = 1.0f;
    t->nbytes = (size_t)rows * (size_t)(cols / gtype_block(type)) * (size_t)gtype_block_bytes(type);
    return t;
}

static size_t pad_to(size_t n, size_t a) { return (n + a - 1) / a * a; }

// ================================================================================================
// 2. Tensor types. f16 and bf16 round to nearest even (util.h, as ggml's GGML_FP32_TO_FP16 and
//    ggml_compute_fp32_to_bf16). q8_0 / q4_0: blocks of 32 values with one fp16 scale, exactly as
//    ggml-quants.c quantize_row_q8_0_ref / quantize_row_q4_0_ref (test_export.sh checks the bytes
//    against ggml's own quantizer).
// ================================================================================================

static void quantize_q8_0(const float *x, unsigned char *y, int64_t n) {
    for (int64_t b = 0; b < n / 32; b++, x += 32, y += 34) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        if (!isfinite(id)) id = 0.0f;  // a denormal d has no finite inverse (x * inf does not fit an int8); its
                                       // f16 scale is 0, so the block reads back as zeros whatever the quants
        uint16_t dh = f32_to_f16(d);
        memcpy(y, &dh, 2);
        for (int j = 0; j < 32; j++) y[2 + j] = (unsigned char)(int8_t)roundf(x[j] * id);
    }
}

static void quantize_q4_0(const float *x, unsigned char *y, int64_t n) {
    for (int64_t b = 0; b < n / 32; b++, x += 32, y += 18) {
        float amax = 0.0f, max = 0.0f;  // the signed value of largest magnitude (first one on ties)
        for (int j = 0; j < 32; j++)
            if (amax < fabsf(x[j])) amax = fabsf(x[j]), max = x[j];
        float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        if (!isfinite(id)) id = 0.0f;  // as in q8_0: a denormal scale, a block of zeros
        uint16_t dh = f32_to_f16(d);
        memcpy(y, &dh, 2);
        for (int j = 0; j < 16; j++) {  // low nibble: element j, high nibble: element j + 16
            int a = (int8_t)(x[j] * id + 8.5f), c = (int8_t)(x[j + 16] * id + 8.5f);
            y[2 + j] = (unsigned char)((a < 15 ? a : 15) | (c < 15 ? c : 15) << 4);
        }
    }
}

// one row of n values -> `type`: (x + shift) * scale for the nx values of x (none when x is NULL), zeros
// after them; tmp holds n floats
static void convert_row(int type, const float *x, int64_t nx, int64_t n, float shift, float scale, float *tmp,
                        void *out) {
    const float *v = x;
    if (!x || nx < n || shift != 0.0f || scale != 1.0f) {
        for (int64_t i = 0; i < n; i++) tmp[i] = x && i < nx ? (x[i] + shift) * scale : 0.0f;
        v = tmp;
    }
    uint16_t *h = (uint16_t *)out;
    switch (type) {
    case GT_F32: memcpy(out, v, sizeof(float) * (size_t)n); break;
    case GT_F16: for (int64_t i = 0; i < n; i++) h[i] = f32_to_f16(v[i]); break;
    case GT_BF16: for (int64_t i = 0; i < n; i++) h[i] = f32_to_bf16(v[i]); break;
    case GT_Q8_0: quantize_q8_0(v, (unsigned char *)out, n); break;
    default: quantize_q4_0(v, (unsigned char *)out, n); break;
    }
}

// rows r0 .. r0+nr-1 of tensor t, converted to its type, into out (nr rows of nbytes / rows bytes)
static void gguf_rows(const GTensor *t, int64_t r0, int64_t nr, unsigned char *out) {
    int64_t cols = t->ne[0];
    size_t row_bytes = t->nbytes / (size_t)t->ne[1];
#pragma omp parallel
    {
        float *tmp = (float *)mallocCheck(sizeof(float) * (size_t)cols);
#pragma omp for schedule(static)
        for (int64_t r = 0; r < nr; r++) {
            const float *x = r0 + r < t->src_rows ? t->src + (size_t)(r0 + r) * t->src_cols : NULL;
            convert_row(t->type, x, t->src_cols, cols, t->shift, t->scale, tmp, out + (size_t)r * row_bytes);
        }
        free(tmp);
    }
}

// Write the whole file to "<path>.tmp.<pid>", then rename: a full disk or a crash leaves nothing
// under `path` (and an existing file there stays as it was).
static size_t gguf_write(Gguf *g, const char *path, int quiet) {
    AtomicFile a = atomic_open(path);
    Buf h = {0};
    buf_put(&h, "GGUF", 4);
    buf_u32(&h, 3);
    buf_u64(&h, (uint64_t)g->nt);
    buf_u64(&h, (uint64_t)g->n_kv);
    buf_put(&h, g->kv.p, g->kv.n);
    size_t off = 0, total = 0;
    for (int i = 0; i < g->nt; i++) {
        const GTensor *t = &g->t[i];
        buf_str(&h, t->name);
        buf_u32(&h, (uint32_t)t->ndim);
        for (int k = 0; k < t->ndim; k++) buf_u64(&h, (uint64_t)t->ne[k]);
        buf_i32(&h, t->type);
        buf_u64(&h, off);
        off += pad_to(t->nbytes, GGUF_ALIGN);
        total += (size_t)t->ne[0] * (size_t)t->ne[1];
    }
    static const unsigned char zeros[GGUF_ALIGN] = {0};
    buf_put(&h, zeros, pad_to(h.n, GGUF_ALIGN) - h.n);
    atomic_write(&a, h.p, h.n);
    size_t written = h.n, done = 0;
    free(h.p);

    double t0 = now_sec();
    for (int i = 0; i < g->nt; i++) {
        const GTensor *t = &g->t[i];
        int64_t cols = t->ne[0], rows = t->ne[1];
        size_t row_bytes = t->nbytes / (size_t)rows;
        // chunks of about 4M values, rows converted in parallel
        int64_t chunk = (int64_t)((1 << 22) / cols) + 1;
        if (chunk > rows) chunk = rows;
        unsigned char *out = (unsigned char *)mallocCheck(row_bytes * (size_t)chunk);
        for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
            int64_t nr = rows - r0 < chunk ? rows - r0 : chunk;
            gguf_rows(t, r0, nr, out);
            atomic_write(&a, out, row_bytes * (size_t)nr);
        }
        free(out);
        atomic_write(&a, zeros, pad_to(t->nbytes, GGUF_ALIGN) - t->nbytes);
        written += pad_to(t->nbytes, GGUF_ALIGN);
        done += (size_t)cols * (size_t)rows;
        double el = now_sec() - t0, eta = done ? el * (double)(total - done) / (double)done : 0;
        char eb[32];
        if (!quiet)
            printf("tensor %d/%d | %-32s | %-4s [%lld, %lld] | %.2f MiB written | ETA %s\n", i + 1, g->nt, t->name,
                   gtype_name(t->type), (long long)t->ne[0], (long long)t->ne[1], written / 1048576.0,
                   fmt_duration(eta, eb));
    }
    atomic_commit(&a);
    return written;
}

// ================================================================================================
// 3. Gemma -> GGUF
// ================================================================================================

// GGUF tensor name of a parameter table entry (src/llama-arch.cpp LLM_TENSOR_NAMES)
static const char *gguf_tensor_name(const PEntry *e, char *buf, size_t cap) {
    static const char *layer_names[T_NKINDS] = {
        "attn_norm", "attn_q", "attn_k", "attn_v", "attn_q_norm", "attn_k_norm", "attn_output",
        "post_attention_norm", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down", "post_ffw_norm", "inp_gate", "proj",
        "post_norm", "layer_output_scale"};
    if (e->kind == T_EMBED) snprintf(buf, cap, "token_embd.weight");
    else if (e->kind == T_FINAL_NORM) snprintf(buf, cap, "output_norm.weight");
    else if (e->kind == T_PLE_EMBED) snprintf(buf, cap, "per_layer_token_embd.weight");  // Gemma 4 E2B/E4B
    else if (e->kind == T_PLE_MODEL_PROJ) snprintf(buf, cap, "per_layer_model_proj.weight");
    else if (e->kind == T_PLE_PROJ_NORM) snprintf(buf, cap, "per_layer_proj_norm.weight");
    else snprintf(buf, cap, "blk.%d.%s.weight", e->layer, layer_names[e->kind]);
    return buf;
}

// llama.cpp's gemma3 graph scales q by a constant it picks from the layer count (src/models/gemma3.cpp:
// 62 layers = "27B": 1/sqrt(n_embd / n_head) in integer division, else 1/sqrt(head_dim)) and never reads
// query_pre_attn_scalar. Returns the factor to fold into q_norm so q·k is scaled by 1/sqrt(qscalar).
static double gemma3_q_fold(const Config *c, float *llama_scale) {
    if (c->L == 62 && c->d / c->H == 0)
        fail("a 62-layer Gemma 3 with hidden_size %d < num_attention_heads %d: llama.cpp's gemma3 graph would scale "
             "attention by 1/sqrt(0); it cannot load this shape",
             c->d, c->H);
    *llama_scale = c->L == 62 ? 1.0f / sqrtf((float)(c->d / c->H)) : 1.0f / sqrtf((float)c->D);
    return (1.0 / sqrt(c->qscalar)) / (double)*llama_scale;
}

// Both llama.cpp graphs scale the embedding by sqrtf(n_embd) in fp32; transformers rounds sqrt(d) to the
// checkpoint dtype first (bf16: sqrt(48) = 6.928 -> 6.9375). Fold the ratio r into the (tied) embedding
// and 1/r into the final norm: the final norm is the only reader of the residual stream that sees the
// output matrix, and every other reader is a scale-equivariant path from the scaled embedding.
static double embed_fold(const Config *c) { return (double)embed_scale_for(c->d, c->scale_dtype) / sqrtf((float)c->d); }

typedef struct {
    int type;       // requested GT_* for 2-D weights
    int F;          // FFN width written: the model's, or padded up to a multiple of 32 for q8_0 / q4_0
    int fallbacks;  // 2-D weights stored as f16 because their rows do not split into blocks of 32
    char fallback_example[96];
} TypePlan;

// q8_0 / q4_0 need rows (ne[0]) in whole blocks of 32. down_proj's rows are F long, and a pruned F is
// rarely a multiple of 32; padding F with zero channels is exact (gate and up rows of zeros give
// gelu(0) * 0 = 0, and down's extra columns multiply those zeros), so pad instead of falling back to f16.
// hidden_size and H*D cannot be padded that way (a norm's mean square would change); those fall back.
static int plan_ffn(const Config *c, int type, int multiple) {
    int b = multiple > 0 ? multiple : gtype_block(type);
    return (c->F + b - 1) / b * b;
}

static int weight_type(TypePlan *tp, const char *name, int cols) {
    if (cols % gtype_block(tp->type) == 0) return tp->type;
    if (!tp->fallbacks++) snprintf(tp->fallback_example, sizeof tp->fallback_example, "%s (rows of %d)", name, cols);
    return GT_F16;
}

// every tensor of the model, in the parameter table's order (then rope_freqs for Gemma 4)
static void add_tensors(Gguf *g, const Model *m, TypePlan *tp, float **extra) {
    const Config *c = &m->c;
    float llama_scale = 0;
    double qfold = c->arch == 3 ? gemma3_q_fold(c, &llama_scale) : 1.0;
    double efold = embed_fold(c);
    float off = norm_offset(c);  // Gemma 3 stores w for (1 + w); llama.cpp multiplies by the stored weight
    for (int i = 0; i < m->tab.n; i++) {
        const PEntry *e = &m->tab.e[i];
        char name[64];
        gguf_tensor_name(e, name, sizeof name);
        int rows = (int)e->rows, cols = (int)e->cols, is2d = cols > 1 || e->kind == T_EMBED;
        int wide = e->layer >= 0 ? layer_F(c, e->layer) / c->F : 1;  // E2B's double-wide layers: 2F
        if (e->kind == T_WGATE || e->kind == T_WUP) rows = wide * tp->F;  // zero channels past the model's F
        if (e->kind == T_WDOWN) cols = wide * tp->F;
        GTensor *t;
        if (is2d) t = gguf_add(g, name, rows, cols, 2, weight_type(tp, name, cols), m->w + e->offset);
        else t = gguf_add(g, name, 1, rows, 1, GT_F32, m->w + e->offset);  // vectors stay f32 (llama.h ftypes)
        t->src_rows = is2d ? (int)e->rows : 1;
        t->src_cols = is2d ? (int)e->cols : (int)e->rows;
        if (is_rms_weight(e)) t->shift = off;
        if (e->kind == T_Q_NORM) t->scale = (float)qfold;
        if (e->kind == T_EMBED) t->scale = (float)efold;
        if (e->kind == T_FINAL_NORM) t->scale = (float)(1.0 / efold);
    }
    if (c->arch == 4) {
        // proportional RoPE on full layers: ggml's NeoX rope over all Dg dims with frequency factors 1 for
        // the first floor(p*Dg/2) pairs and 1e30 (angle ~0) for the rest (conversion/gemma.py)
        int half = c->Dg / 2, n = (int)floor(c->partial_rotary * c->Dg / 2.0);
        *extra = (float *)mallocCheck(sizeof(float) * (size_t)half);
        for (int i = 0; i < half; i++) (*extra)[i] = i < n ? 1.0f : 1e30f;
        gguf_add(g, "rope_freqs.weight", 1, half, 1, GT_F32, *extra);
    }
}

// hyperparameters, each with the exact GGUF type llama.cpp's loader checks (llama-model-loader.cpp:168)
static void add_hparams(Gguf *g, const Config *c, int F, const char *name, int ftype, uint32_t ctx) {
    const char *arch = c->arch == 3 ? "gemma3" : "gemma4";
    char key[128];
#define KEY(suffix) (snprintf(key, sizeof key, "%s.%s", arch, suffix), key)
    kv_str(g, "general.architecture", arch);
    kv_str(g, "general.name", name);
    kv_u32(g, "general.file_type", (uint32_t)ftype);
    kv_u32(g, "general.quantization_version", 2);
    kv_u32(g, KEY("context_length"), ctx);
    kv_u32(g, KEY("embedding_length"), (uint32_t)c->d);
    kv_u32(g, KEY("block_count"), (uint32_t)c->L);
    if (c->double_wide && c->n_shared > 0) {  // E2B: 2F on the KV-shared layers, one entry per layer
        uint32_t ff[MAX_LAYERS];
        for (int l = 0; l < c->L; l++) ff[l] = (uint32_t)(layer_F(c, l) / c->F * F);
        kv_arr4(g, KEY("feed_forward_length"), GGUF_U32, ff, (uint64_t)c->L);
    } else kv_u32(g, KEY("feed_forward_length"), (uint32_t)F);
    kv_u32(g, KEY("attention.head_count"), (uint32_t)c->H);
    if (c->Kg == c->K) kv_u32(g, KEY("attention.head_count_kv"), (uint32_t)c->K);
    else {  // Gemma 4: full layers have their own kv head count
        uint32_t kv[MAX_LAYERS];
        for (int l = 0; l < c->L; l++) kv[l] = (uint32_t)layer_K(c, l);
        kv_arr4(g, KEY("attention.head_count_kv"), GGUF_U32, kv, (uint64_t)c->L);
    }
    // key_length is the FULL layers' head size; without it llama.cpp assumes n_embd / n_head
    kv_u32(g, KEY("attention.key_length"), (uint32_t)c->Dg);
    kv_u32(g, KEY("attention.value_length"), (uint32_t)c->Dg);
    kv_f32(g, KEY("attention.layer_norm_rms_epsilon"), (float)c->eps);
    kv_f32(g, KEY("rope.freq_base"), (float)c->rope_global);  // llama.cpp's default would be 10000
    kv_f32(g, KEY("rope.freq_base_swa"), (float)c->rope_local);
    // always written: 0 turns it off, and an absent key means 30 to llama.cpp (llama-hparams.h, read by gemma4)
    kv_f32(g, KEY("final_logit_softcapping"), c->final_softcap > 0 ? (float)c->final_softcap : 0.0f);
    int nslide = 0;
    for (int l = 0; l < c->L; l++) nslide += !c->full[l];
    if (c->arch == 3) {
        if (c->rope_scale != 1.0) {  // linear, full layers only (SWA layers use rope_freq_scale_train_swa = 1)
            kv_str(g, KEY("rope.scaling.type"), "linear");
            kv_f32(g, KEY("rope.scaling.factor"), (float)c->rope_scale);
        }
        // sliding_window 0 or absent turns SWA off for every layer, so write it only when a layer slides
        if (nslide) kv_u32(g, KEY("attention.sliding_window"), (uint32_t)c->W);
    } else {
        kv_u32(g, KEY("attention.sliding_window"), (uint32_t)c->W);  // required by gemma4
        kv_u32(g, KEY("attention.key_length_swa"), (uint32_t)c->D);
        kv_u32(g, KEY("attention.value_length_swa"), (uint32_t)c->D);
        kv_u32(g, KEY("rope.dimension_count"), (uint32_t)c->Dg);     // proportional: rope_freqs masks pairs
        kv_u32(g, KEY("rope.dimension_count_swa"), (uint32_t)c->D);  // default would be the full layers' Dg
        kv_u32(g, KEY("embedding_length_per_layer_input"), (uint32_t)c->P);  // 0: dense, no per-layer inputs
        kv_u32(g, KEY("attention.shared_kv_layers"), (uint32_t)c->n_shared);
    }
    if (nslide || c->arch == 4) {  // per layer, true = sliding: a pruned model's pattern is not periodic
        int swa[MAX_LAYERS];
        for (int l = 0; l < c->L; l++) swa[l] = !c->full[l];
        kv_arr_bool(g, KEY("attention.sliding_window_pattern"), swa, (uint64_t)c->L);
    }
#undef KEY
}

// shapes a valid config can have but llama.cpp cannot run
static void export_refuse(const Config *c, const char *cfg) {
    // llama.cpp's KV-shared layer il reads layer (L - shared) - (sliding ? 2 : 1): the last two layers before the
    // shared ones must be sliding then full, which is where transformers' rule (the last earlier layer of the
    // same type) points too
    for (int l = c->L - c->n_shared; c->n_shared > 0 && l < c->L; l++)
        if (kv_source(c, l) != c->L - c->n_shared - (c->full[l] ? 1 : 2))
            fail("%s: KV-shared layer %d reads layer %d, but llama.cpp's gemma4 takes K/V from the last two layers before "
                 "the shared ones (sliding, then full); this layer pattern cannot be exported", cfg, l, kv_source(c, l));
    if (c->arch == 4 && c->rope_scale != 1.0)
        fail("%s: linear RoPE scaling on a Gemma 4 model is not supported (model.h ignores it there too)", cfg);
}

// config.json forms llama.cpp's gemma3 cannot represent: it takes layer 0's head and FFN counts for
// every layer (LLAMA_LOAD_LOCALS), so per-layer lists are refused here by name (model.h would only say
// "must be a number").
static void refuse_per_layer_shapes(const char *cfg_path) {
    cJSON *root = json_read(cfg_path);
    const cJSON *j = json_get(root, "text_config") ? json_get(root, "text_config") : root;
    static const char *keys[] = {"intermediate_size", "num_attention_heads", "num_key_value_heads", "head_dim"};
    for (int k = 0; k < 4; k++) {
        const cJSON *v = json_get(j, keys[k]);
        if (!v || !cJSON_IsArray(v)) continue;
        int n = cJSON_GetArraySize(v), differ = 0;
        for (int i = 1; i < n; i++) differ |= cJSON_GetArrayItem(v, i)->valuedouble != v->child->valuedouble;
        if (differ)
            fail("%s: %s differs between layers; llama.cpp's gemma3 uses layer 0's value for every layer, so this "
                 "shape cannot be exported (prune with the same %s in every layer)",
                 cfg_path, keys[k], keys[k]);
        fail("%s: %s is a per-layer list; write it as one number (all %d entries are equal)", cfg_path, keys[k], n);
    }
    cJSON_Delete(root);
}

// ================================================================================================
// 4. Tokenizer metadata: an SPM-style "llama" vocabulary (llama-vocab.cpp). Tokens in id order,
//    scores (llama.cpp's SPM merges the adjacent pair whose merged token scores highest; tokenizer.h
//    gives −rank of the BPE merge that makes a token), token types, special ids; no space prefix.
// ================================================================================================

typedef struct {
    const char *what;  // for the settings line
    Tokenizer *tok;    // NULL: placeholder
    int n;             // tokens written (= the model's V)
} VocabPlan;

static void add_vocab(Gguf *g, const VocabPlan *vp, const Config *c) {
    int V = c->V, n_src = vp->tok ? tok_vocab(vp->tok) : 0;
    Tokenizer *bytes = vp->tok ? NULL : tok_load_bytes();  // the placeholder borrows the byte layout
    const Tokenizer *t = vp->tok ? vp->tok : bytes;
    if (!vp->tok) n_src = V < tok_vocab(bytes) ? V : tok_vocab(bytes);
    kv_str(g, "tokenizer.ggml.model", "llama");
    kv_str(g, "tokenizer.ggml.pre", "default");
    kv_arr(g, "tokenizer.ggml.tokens", GGUF_STRING, (uint64_t)V);
    char pad[32];
    for (int i = 0; i < V; i++) {  // ids past the tokenizer (Gemma 3 4B+: 262208 rows, 262145 tokens) are unused
        if (i < n_src) buf_str(&g->kv, tok_piece(t, (uint32_t)i));
        else snprintf(pad, sizeof pad, "[PAD%d]", i), buf_str(&g->kv, pad);
    }
    float *score = (float *)mallocCheck(sizeof(float) * (size_t)V);
    int32_t *type = (int32_t *)mallocCheck(sizeof(int32_t) * (size_t)V);
    for (int i = 0; i < V; i++) {
        score[i] = i < n_src ? tok_score(t, (uint32_t)i) : 0.0f;
        type[i] = i < n_src ? tok_type(t, (uint32_t)i) : TOK_UNUSED;
        // HF cuts every added token out of the raw text, <unusedN> included; llama.cpp does that only for
        // CONTROL (with parse_special), USER_DEFINED and UNKNOWN tokens, never for UNUSED ones
        if (i < n_src && type[i] == TOK_UNUSED) type[i] = TOK_USER_DEFINED;
    }
    kv_arr4(g, "tokenizer.ggml.scores", GGUF_F32, score, (uint64_t)V);
    kv_arr4(g, "tokenizer.ggml.token_type", GGUF_I32, type, (uint64_t)V);
    free(score);
    free(type);
    // llama.cpp's SPM defaults (bos 1, eos 2, unk 0) are wrong for Gemma: always write them
    uint32_t ids[4] = {tok_bos(t), tok_eos(t), tok_unk(t), tok_pad(t)};
    static const char *keys[4] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                                  "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id"};
    for (int k = 0; k < 4; k++)
        if (ids[k] != TOK_NONE && (int)ids[k] < V) kv_u32(g, keys[k], ids[k]);
    if (vp->tok) {
        uint32_t eot = tok_lookup(vp->tok, "<end_of_turn>", 13);
        if (eot != TOK_NONE && (int)eot < V) kv_u32(g, "tokenizer.ggml.eot_token_id", eot);
    }
    kv_bool(g, "tokenizer.ggml.add_bos_token", 1);
    kv_bool(g, "tokenizer.ggml.add_eos_token", 0);
    kv_bool(g, "tokenizer.ggml.add_space_prefix", 0);
    if ((int)tok_bos(t) != c->bos || (int)tok_eos(t) != c->eos)
        fprintf(stderr, "warning: config.json says bos %d eos %d but the vocabulary has bos %u eos %u; the GGUF uses "
                        "the vocabulary's\n", c->bos, c->eos, tok_bos(t), tok_eos(t));
    tok_free(bytes);
}

// --tokenizer: bytes | PATH (tokenizer.json or a directory holding one) | unset: DIR/tokenizer.json when
// it is there, bytes when V is 261, else a placeholder vocabulary
static VocabPlan plan_vocab(const char *spec, const char *model_dir, int V) {
    VocabPlan vp = {NULL, NULL, V};
    char *own = path_join(model_dir, "tokenizer.json");
    if (!spec && file_exists(own)) spec = own;
    if (!spec && V == 261) spec = "bytes";
    if (!spec) {
        vp.what = str_dup("placeholder");
        fprintf(stderr,
                "warning: vocab_size %d matches no tokenizer (the byte-level one has 261) and --model has no "
                "tokenizer.json; writing a placeholder vocabulary (specials, byte tokens, [PADn]): the file runs on "
                "token ids, but text tokenization with it is meaningless (pass --tokenizer PATH/tokenizer.json)\n",
                V);
        free(own);
        return vp;
    }
    vp.tok = tok_load(spec);
    vp.what = strcmp(spec, "bytes") == 0 ? "bytes" : spec == own ? "tokenizer.json of --model" : spec;
    tok_fit(vp.tok, V, vp.what);  // a token id past the embedding would crash llama.cpp
    vp.what = str_dup(vp.what);
    free(own);
    return vp;
}

// ================================================================================================
// 5. main
// ================================================================================================

typedef struct {
    const char *model, *out, *type, *tokenizer, *name;
    int ffn_multiple, ctx, force, quiet;
} Args;
#define ARG(f) offsetof(Args, f)
static const Flag flags[] = {
    {"model", F_STR, ARG(model), NULL, NULL, SAVE_NO, "Hugging Face model directory (config.json + safetensors)"},
    {"out", F_STR, ARG(out), NULL, NULL, SAVE_NO, "the .gguf to write; an existing file needs --force"},
    {"type", F_STR, ARG(type), "f16", "f32|f16|bf16|q8_0|q4_0", SAVE_NO, "2-D weights as f32 | f16 | bf16 | q8_0 | q4_0; "
     "vectors stay f32; q8_0/q4_0 rows that are not a multiple of 32 long are stored as f16, except down_proj's "
     "(see --ffn-multiple)"},
    {"ffn-multiple", F_INT, ARG(ffn_multiple), "0", "[0, 4096]", SAVE_NO, "pad the FFN width with zero channels (exact) to a "
     "multiple of N; 0: 32 for q8_0 and q4_0, else 1"},
    {"tokenizer", F_STR, ARG(tokenizer), "", NULL, SAVE_NO, "bytes | PATH/tokenizer.json | a directory holding one; none: "
     "DIR/tokenizer.json, else bytes if V = 261, else a placeholder"},
    {"name", F_STR, ARG(name), "", NULL, SAVE_NO, "general.name; none: the directory name"},
    {"ctx", F_INT, ARG(ctx), "-1", ">= -1", SAVE_NO, "context_length written to the file; -1: max_position_embeddings"},
    {"force", F_BOOL, ARG(force), "0", NULL, SAVE_NO, "overwrite an existing --out"},
    {"quiet", F_BOOL, ARG(quiet), "0", NULL, SAVE_NO, "no per-tensor lines"},
};
static const Cli cli = {"./export", "usage: ./export --model DIR --out FILE.gguf --type f32|f16|bf16|q8_0|q4_0 [flags]\n"
                        "Writes a Gemma 3 / Gemma 4 (dense or E2B/E4B) Hugging Face directory as one GGUF file for llama.cpp "
                        "(arch gemma3 or\ngemma4), folding query_pre_attn_scalar and the embedding scale so llama.cpp "
                        "computes what transformers does.\n",
                        flags, COUNT_OF(flags), NULL, 0, NULL, "q=quiet"};

int main(int argc, char **argv) {
    Args a;
    flags_defaults(&cli, &a);
    flags_parse(&cli, &a, argc, argv, 1, NULL);
    flags_print(&cli, &a, stdout);
    const char *model_dir = a.model, *out = a.out, *type_s = a.type, *tok_spec = *a.tokenizer ? a.tokenizer : NULL;
    const char *name = *a.name ? a.name : NULL;
    int force = a.force, quiet = a.quiet, ffn_multiple = a.ffn_multiple;
    long ctx = a.ctx;
    static const char *tnames[] = {"f32", "f16", "bf16", "q8_0", "q4_0"};
    static const int tvals[] = {GT_F32, GT_F16, GT_BF16, GT_Q8_0, GT_Q4_0}, ftypes[] = {0, 1, 32, 7, 2};
    int ti = -1;
    for (int k = 0; k < 5; k++)
        if (!strcmp(type_s, tnames[k])) ti = k;
    if (ti < 0) fail("--type %s is not supported; use f32, f16, bf16, q8_0 or q4_0", type_s);
    struct stat ost;  // only a regular file is "existing": a device, FIFO or "-" is written directly
    if (strcmp(out, "-") != 0 && stat(out, &ost) == 0 && S_ISREG(ost.st_mode) && !force)
        fail("--out %s already exists; pass --force to overwrite it", out);
    if (ctx == 0) usage_fail(&cli, "--ctx 0: expected a positive number of tokens (or -1)");

    double t0 = now_sec();
    char *cfg = path_join(model_dir, "config.json");
    if (!file_exists(cfg)) fail("%s: no config.json; point --model at a Hugging Face model directory", model_dir);
    refuse_per_layer_shapes(cfg);
    Config pre;  // what the file describes, before reading any weights
    config_load(&pre, cfg);
    export_refuse(&pre, cfg);
    Model m;
    model_load(&m, model_dir);
    const Config *c = &m.c;
    VocabPlan vp = plan_vocab(tok_spec, model_dir, c->V);
    char *dir_name = NULL;
    if (!name) {
        const char *s = model_dir + strlen(model_dir);
        while (s > model_dir && s[-1] == '/') s--;
        const char *b = s;
        while (b > model_dir && b[-1] != '/') b--;
        name = *b ? (dir_name = strndup(b, (size_t)(s - b))) : "model";
    }
    if (ctx < 0) ctx = c->max_pos;

    printf("| export: %s -> %s\n|   arch %s, 2-D weights %s, vectors f32, tokenizer %s (%d tokens), context %ld\n",
           model_dir, out, c->arch == 3 ? "gemma3" : "gemma4", tnames[ti], vp.what, vp.n, ctx);
    config_print(c, stdout);
    if (c->arch == 3) {
        float ls;
        double f = gemma3_q_fold(c, &ls);
        printf("|   attention scale: llama.cpp's gemma3 uses %.6g (%s), Gemma wants 1/sqrt(%g) = %.6g: q_norm x %.6f\n", ls,
               c->L == 62 ? "62 layers: 1/sqrt(n_embd/n_head)" : "1/sqrt(head_dim)", c->qscalar, 1.0 / sqrt(c->qscalar),
               f);
    }
    double ef = embed_fold(c);
    if (ef != 1.0)
        printf("|   embedding scale: checkpoint rounds sqrt(%d) to %.6g, llama.cpp uses %.6g: embedding x %.7f, final norm "
               "/ same\n", c->d, embed_scale_for(c->d, c->scale_dtype), sqrtf((float)c->d), ef);

    TypePlan tp = {tvals[ti], plan_ffn(c, tvals[ti], ffn_multiple), 0, ""};
    if (tp.F != c->F)
        printf("|   FFN width %d padded with %d zero channels to %d (exact: gelu(0) * 0 = 0)\n", c->F, tp.F - c->F, tp.F);
    Gguf g = {0};
    add_hparams(&g, c, tp.F, name, ftypes[ti], (uint32_t)ctx);
    add_vocab(&g, &vp, c);
    float *rope_freqs = NULL;
    add_tensors(&g, &m, &tp, &rope_freqs);
    if (tp.fallbacks)
        printf("|   note: %d 2-D weights have rows that are not a multiple of 32, e.g. %s: stored as f16\n", tp.fallbacks,
               tp.fallback_example);
    size_t bytes = 0;
    for (int i = 0; i < g.nt; i++) bytes += pad_to(g.t[i].nbytes, GGUF_ALIGN);
    printf("|   %d tensors, %lld keys, %.2f MiB of tensor data, %zu parameters (%zu non-embedding)\n", g.nt,
           (long long)g.n_kv, bytes / 1048576.0, count_params(c, 1), count_params(c, 0));

    size_t wrote = gguf_write(&g, out, quiet);
    printf("wrote %s: %.2f MiB in %.1fs\n", out, (double)wrote / 1048576.0, now_sec() - t0);
    free(g.kv.p);
    free(g.t);
    free(rope_freqs);
    tok_free(vp.tok);
    model_free(&m);
    free(cfg);
    free(dir_name);
    free((char *)vp.what);
    return 0;
}
