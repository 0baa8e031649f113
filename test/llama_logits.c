// test/llama_logits.c — export.c's files checked by llama.cpp itself: a small program linked against the
// prebuilt libllama / libggml that npm node-llama-cpp@3.22.1 ships (llama.cpp tag v0.5.0). Built and
// driven by test/test_export.sh. Commands:
//   logits     MODEL.gguf TOKENS.json OUT.f32 [--threads N] [--llama-defaults]
//              all-position logits [B, T, V] (float32, row-major) like ./profile logits; by default with
//              flash attention off and an f32 KV cache (llama.cpp's defaults, f16 cache + flash attention,
//              move logits by ~1e-3; --llama-defaults keeps them to measure that)
//   tokenize   MODEL.gguf [--special] TEXTFILE...   llama_tokenize(add_special=true): one line of ids per file
//   bench      MODEL.gguf [--threads N] [--prompt 64] [--gen 128]   prompt and decode tok/s on CPU
//   quantcheck REF_F32.gguf OTHER.gguf   every f16/bf16/q8_0/q4_0 tensor of OTHER must be byte-identical
//              to ggml's own conversion (ggml_quantize_chunk / ggml_fp32_to_*_row) of REF's f32 tensor
//              (zero-padded to OTHER's shape where export padded the FFN width)
// The CPU backend lives in a separate libggml-cpu-*.so: ggml_backend_load_all_from_path(<bins dir>) must
// run before anything is loaded; the directory comes from $LLAMA_BIN_DIR.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cjson/cJSON.h>
#include "llama.h"
#include "ggml.h"
#include "ggml-backend.h"
#include "gguf.h"

static void die(const char *msg, const char *arg) {
    fprintf(stderr, "error: llama_logits: %s%s\n", msg, arg ? arg : "");
    exit(1);
}

static int verbose = 0;
static void log_cb(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    if (verbose || level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static char *slurp(const char *path, long *len) {
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open ", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (!b || fread(b, 1, (size_t)n, f) != (size_t)n) die("cannot read ", path);
    b[n] = 0;
    fclose(f);
    if (len) *len = n;
    return b;
}

static int opt_int(int argc, char **argv, const char *flag, int def) {
    for (int i = 0; i + 1 < argc; i++)
        if (!strcmp(argv[i], flag)) return atoi(argv[i + 1]);
    return def;
}
static int opt_flag(int argc, char **argv, const char *flag) {
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], flag)) return 1;
    return 0;
}

static void init_backends(void) {
    const char *dir = getenv("LLAMA_BIN_DIR");
    if (!dir) die("set LLAMA_BIN_DIR to node-llama-cpp's bins/linux-x64 directory", NULL);
    llama_log_set(log_cb, NULL);
    ggml_backend_load_all_from_path(dir);
    llama_backend_init();
}

static struct llama_model *load(const char *path, int vocab_only) {
    struct llama_model_params mp = llama_model_default_params();
    mp.vocab_only = vocab_only;
    struct llama_model *m = llama_model_load_from_file(path, mp);
    if (!m) die("llama.cpp could not load ", path);
    return m;
}

static struct llama_context *context(struct llama_model *m, int n_ctx, int threads, int llama_defaults) {
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = cp.n_batch = cp.n_ubatch = (uint32_t)n_ctx;
    cp.n_threads = cp.n_threads_batch = threads;
    cp.no_perf = 1;
    if (!llama_defaults) {
        cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
        cp.type_k = cp.type_v = GGML_TYPE_F32;
    }
    struct llama_context *ctx = llama_init_from_model(m, cp);
    if (!ctx) die("llama_init_from_model failed", NULL);
    return ctx;
}

// decode tokens [0, n) at positions 0.. as one batch; want_all: logits for every position
static void decode(struct llama_context *ctx, const llama_token *tok, int n, int pos0, int want_all) {
    struct llama_batch b = llama_batch_init(n, 0, 1);
    for (int i = 0; i < n; i++) {
        b.token[i] = tok[i];
        b.pos[i] = pos0 + i;
        b.n_seq_id[i] = 1;
        b.seq_id[i][0] = 0;
        b.logits[i] = want_all || i == n - 1;
    }
    b.n_tokens = n;
    if (llama_decode(ctx, b) != 0) die("llama_decode failed", NULL);
    llama_batch_free(b);
}

static int cmd_logits(int argc, char **argv) {
    if (argc < 5) die("usage: logits MODEL.gguf TOKENS.json OUT.f32 [--threads N] [--llama-defaults]", NULL);
    int threads = opt_int(argc, argv, "--threads", 2), defaults = opt_flag(argc, argv, "--llama-defaults");
    char *text = slurp(argv[3], NULL);
    cJSON *j = cJSON_Parse(text);
    if (!cJSON_IsArray(j) || !cJSON_IsArray(j->child)) die("expected a JSON array of token-id arrays in ", argv[3]);
    int B = cJSON_GetArraySize(j), T = cJSON_GetArraySize(j->child);
    struct llama_model *m = load(argv[2], 0);
    int V = llama_vocab_n_tokens(llama_model_get_vocab(m));
    struct llama_context *ctx = context(m, T, threads, defaults);
    FILE *out = fopen(argv[4], "wb");
    if (!out) die("cannot write ", argv[4]);
    llama_token *tok = malloc(sizeof(llama_token) * (size_t)T);
    int b = 0;
    for (cJSON *row = j->child; row; row = row->next, b++) {
        if (cJSON_GetArraySize(row) != T) die("sequences must have equal lengths in ", argv[3]);
        int t = 0;
        for (cJSON *e = row->child; e; e = e->next) tok[t++] = (llama_token)e->valuedouble;
        llama_memory_clear(llama_get_memory(ctx), 1);
        decode(ctx, tok, T, 0, 1);
        for (t = 0; t < T; t++) {
            float *l = llama_get_logits_ith(ctx, t);
            if (!l || fwrite(l, sizeof(float), (size_t)V, out) != (size_t)V) die("no logits / write failed", NULL);
        }
    }
    if (fclose(out)) die("write failed: ", argv[4]);
    printf("llama.cpp logits [%d, %d, %d] -> %s (flash attention %s, KV cache %s)\n", B, T, V, argv[4],
           defaults ? "default" : "off", defaults ? "default" : "f32");
    llama_free(ctx);
    llama_model_free(m);
    cJSON_Delete(j);
    free(text);
    free(tok);
    return 0;
}

// one line of ids per text file (the vocabulary is loaded once: 262k Gemma tokens take a while)
static int cmd_tokenize(int argc, char **argv) {
    if (argc < 4) die("usage: tokenize MODEL.gguf [--special] TEXTFILE...", NULL);
    int special = opt_flag(argc, argv, "--special");
    struct llama_model *m = load(argv[2], 1);
    const struct llama_vocab *v = llama_model_get_vocab(m);
    for (int a = 3; a < argc; a++) {
        if (!strcmp(argv[a], "--special")) continue;
        long n;
        char *text = slurp(argv[a], &n);
        int cap = (int)n + 16;
        llama_token *ids = malloc(sizeof(llama_token) * (size_t)cap);
        int k = llama_tokenize(v, text, (int32_t)n, ids, cap, 1, special);
        if (k < 0) die("llama_tokenize failed on ", argv[a]);
        for (int i = 0; i < k; i++) printf(i ? " %d" : "%d", ids[i]);
        printf("\n");
        free(ids);
        free(text);
    }
    llama_model_free(m);
    return 0;
}

// decode speed as llama-bench measures it: a prompt in one batch, then one token per llama_decode
static int cmd_bench(int argc, char **argv) {
    if (argc < 3) die("usage: bench MODEL.gguf [--threads N] [--prompt 64] [--gen 128]", NULL);
    int threads = opt_int(argc, argv, "--threads", 2), np = opt_int(argc, argv, "--prompt", 64),
        ng = opt_int(argc, argv, "--gen", 128);
    struct llama_model *m = load(argv[2], 0);
    int V = llama_vocab_n_tokens(llama_model_get_vocab(m));
    struct llama_context *ctx = context(m, np + ng, threads, 1);  // llama.cpp's defaults: what users get
    llama_token *tok = malloc(sizeof(llama_token) * (size_t)(np + ng));
    for (int i = 0; i < np + ng; i++) tok[i] = (llama_token)(4 + (i * 7919) % (V - 4));
    decode(ctx, tok, 8, 0, 0);  // warm-up
    llama_memory_clear(llama_get_memory(ctx), 1);
    double t0 = now();
    decode(ctx, tok, np, 0, 0);
    double t1 = now();
    for (int i = 0; i < ng; i++) decode(ctx, tok + np + i, 1, np + i, 0);
    double t2 = now();
    printf("bench %s | threads %d | prompt %d tokens %.1f tok/s | decode %d tokens %.1f tok/s\n", argv[2], threads, np,
           np / (t1 - t0), ng, ng / (t2 - t1));
    llama_free(ctx);
    llama_model_free(m);
    free(tok);
    return 0;
}

static struct gguf_context *open_gguf(const char *path, struct ggml_context **data) {
    struct gguf_init_params p = {0, data};
    struct gguf_context *g = gguf_init_from_file(path, p);
    if (!g) die("gguf could not read ", path);
    return g;
}

static int cmd_quantcheck(int argc, char **argv) {
    if (argc < 4) die("usage: quantcheck REF_F32.gguf OTHER.gguf", NULL);
    struct ggml_context *rd = NULL, *od = NULL;
    struct gguf_context *rg = open_gguf(argv[2], &rd), *og = open_gguf(argv[3], &od);
    int checked = 0, bad = 0;
    for (int64_t i = 0; i < gguf_get_n_tensors(og); i++) {
        const char *name = gguf_get_tensor_name(og, i);
        struct ggml_tensor *o = ggml_get_tensor(od, name), *r = ggml_get_tensor(rd, name);
        if (!r || r->type != GGML_TYPE_F32) die("reference has no f32 tensor ", name);
        if (o->type == GGML_TYPE_F32) continue;
        // OTHER may be zero-padded (export's FFN padding for q8_0/q4_0): pad REF's values the same way
        int64_t rows = ggml_nrows(o), cols = o->ne[0], rrows = ggml_nrows(r), rcols = r->ne[0];
        if (rows < rrows || cols < rcols) die("tensor is smaller than in the reference: ", name);
        float *x = calloc((size_t)(rows * cols), sizeof(float));
        for (int64_t i = 0; i < rrows; i++) memcpy(x + i * cols, (float *)r->data + i * rcols, sizeof(float) * rcols);
        size_t nb = ggml_nbytes(o);
        void *mine = malloc(nb);
        if (o->type == GGML_TYPE_F16) ggml_fp32_to_fp16_row(x, mine, rows * cols);
        else if (o->type == GGML_TYPE_BF16) ggml_fp32_to_bf16_row_ref(x, mine, rows * cols);
        else ggml_quantize_chunk(o->type, x, mine, 0, rows, cols, NULL);
        free(x);
        checked++;
        if (memcmp(mine, o->data, nb)) {
            bad++;
            fprintf(stderr, "  %s (%s): bytes differ from ggml's conversion\n", name, ggml_type_name(o->type));
        }
        free(mine);
    }
    printf("quantcheck %s: %d tensors byte-identical to ggml's conversion, %d differ\n", argv[3], checked - bad, bad);
    gguf_free(rg), gguf_free(og), ggml_free(rd), ggml_free(od);
    return bad != 0;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help")) {
        printf("usage: llama_logits logits|tokenize|bench|quantcheck ...  (LLAMA_BIN_DIR=<node-llama-cpp bins dir>)\n");
        return argc < 2;
    }
    verbose = getenv("LLAMA_LOGITS_VERBOSE") != NULL;
    init_backends();
    int rc = !strcmp(argv[1], "logits")     ? cmd_logits(argc, argv)
             : !strcmp(argv[1], "tokenize") ? cmd_tokenize(argc, argv)
             : !strcmp(argv[1], "bench")    ? cmd_bench(argc, argv)
             : !strcmp(argv[1], "quantcheck") ? cmd_quantcheck(argc, argv)
                                            : (die("unknown command ", argv[1]), 1);
    llama_backend_free();
    return rc;
}
