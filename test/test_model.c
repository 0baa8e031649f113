// test_model.c — model.h against Hugging Face transformers. For every fixture in test/fixtures/
// (made by test/ref/make_fixtures.py with transformers in float64): logits, loss and the gradient of
// every parameter, compared by name; then 10 AdamW steps against torch.optim.AdamW's losses.
//
// Tolerances (element passes when |ours - ref| <= atol + rtol * |ref|):
//   rtol 1e-5, atol 1e-5 * max|ref| of that tensor, for every fixture (bf16 ones too: their weights
//     are exact in fp32). Our arithmetic is fp32 with double accumulators in the norms and the loss;
//     the reference is transformers in float64 (its loss upcast is float32). The worst element of every
//     tensor is printed; the worst over all fixtures sits at 0.25 of this bound (NOTES.md).
//   g4_e2b's gradients: 2e-5 (both parts). That 6-layer fixture is worse conditioned in fp32: moving every
//     weight by half an fp32 ulp (relative 6e-8, what storing them in fp32 costs) already moves its layer-0
//     gate_proj and per_layer_input_gate gradients by 1.0e-5 x max|grad| (0.18 at most on g4_kv), so no fp32
//     computation can match the float64 reference closer there; measured error 1.0e-5 x max, at 0.50 of 2e-5.
//   AdamW losses: rtol 1e-5 per step, at lr 1e-3 (see make_fixtures.py: at lr 1e-2 Adam turns the
//     rounding noise of near-zero gradients into full-size updates, and two float64 implementations
//     already differ by 3e-5 at step 2). Measured: float32 vs float64 of the same code differ by
//     <= 1.4e-6 at lr 1e-3.
// Exit status is non-zero if any comparison fails or a required fixture is missing.
//
//   test/test_model [FIXTURE_DIR]          run the comparisons (default test/fixtures)
//   test/test_model --write-sample DIR [bf16|g4]  write a random C-made checkpoint (+ tokens.json) for
//                                          test/ref/make_fixtures.py to load in transformers
#include "model.h"
#include "check.h"

static float *tensor_f32(const SFile *f, const char *name, size_t *n) {
    const STensor *t = st_find(f, name);
    if (!t) fail("%s: no tensor %s", f->path, name);
    float *p = (float *)mallocCheck(sizeof(float) * t->numel);
    st_to_f32(t, p);
    if (n) *n = t->numel;
    return p;
}

static int *tensor_i32(const SFile *f, const char *name, size_t *n) {
    const STensor *t = st_find(f, name);
    if (!t || t->dtype != ST_I32) fail("%s: no I32 tensor %s", f->path, name);
    int *p = (int *)mallocCheck(sizeof(int) * t->numel);
    memcpy(p, t->data, sizeof(int) * t->numel);
    if (n) *n = t->numel;
    return p;
}

static void next_token_targets(const int *tok, int *tgt, int B, int T) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) tgt[b * T + t] = t + 1 < T ? tok[b * T + t + 1] : -1;
}

// logits, loss and every gradient of the model in `dir` against `refdir`/ref.safetensors
static void check_fixture(const char *dir, const char *refdir, double gtol) {
    printf("fixture %s (reference %s)\n", dir, refdir);
    Model m;
    model_load(&m, dir);
    char *rp = path_join(refdir, "ref.safetensors");
    SFile *ref = st_open(rp);
    const STensor *tt = st_find(ref, "tokens");
    if (!tt || tt->ndim != 2) fail("%s: no tokens [B,T]", rp);
    int B = (int)tt->shape[0], T = (int)tt->shape[1];
    int *tok = tensor_i32(ref, "tokens", NULL), *tgt = (int *)mallocCheck(sizeof(int) * (size_t)B * T);
    next_token_targets(tok, tgt, B, T);
    size_t nl;
    float *ref_logits = tensor_f32(ref, "logits", &nl), *ref_loss = tensor_f32(ref, "loss", NULL);
    if (nl != (size_t)B * T * m.c.V) fail("%s: logits size %zu != B*T*V", rp, nl);
    float *logits = (float *)mallocCheck(sizeof(float) * nl);
    model_zero_grad(&m);
    float loss = model_forward(&m, tok, tgt, B, T, 1, logits);
    model_backward(&m);
    compare("logits", logits, ref_logits, nl, 1e-5, 1e-5);
    compare("loss", &loss, ref_loss, 1, 1e-5, 0);
    int ngrad = 0;
    for (int i = 0; i < m.tab.n; i++) {
        const PEntry *e = &m.tab.e[i];
        if (e->frozen) continue;  // a buffer in transformers: no gradient to compare
        char name[160];
        snprintf(name, sizeof name, "grad.%s", e->name);
        size_t n;
        float *g = tensor_f32(ref, name, &n);
        if (n != e->rows * e->cols) fail("%s: %s has %zu elements, expected %zu", rp, name, n, e->rows * e->cols);
        compare(name, m.gw + e->offset, g, n, gtol, gtol);
        free(g);
        ngrad++;
    }
    // every gradient in the reference must be one of ours
    int nref = 0;
    for (int i = 0; i < ref->n; i++) nref += strncmp(ref->t[i].name, "grad.", 5) == 0;
    if (nref != ngrad) check(0, "reference has %d gradients, the model %d", nref, ngrad);
    free(logits), free(ref_logits), free(ref_loss), free(tok), free(tgt), free(rp);
    st_close(ref);
    model_free(&m);
}

// 10 AdamW steps (decay on 2-D weights except the embedding, clip 1.0) against torch.optim.AdamW
static void check_adamw(const char *dir) {
    char *fj = path_join(dir, "fixture.json"), *ap = path_join(dir, "adamw.safetensors");
    if (!file_exists(ap)) return;
    cJSON *info = json_read(fj);
    const cJSON *hp = json_get(info, "adamw");
    if (!hp) fail("%s: no adamw settings", fj);
    float lr = (float)json_num(hp, "lr", 0, fj), b1 = (float)json_num(hp, "beta1", 0, fj);
    float b2 = (float)json_num(hp, "beta2", 0, fj), eps = (float)json_num(hp, "eps", 0, fj);
    float wd = (float)json_num(hp, "weight_decay", 0, fj), clip = (float)json_num(hp, "grad_clip", 0, fj);
    printf("adamw %s: lr %g betas (%g, %g) eps %g wd %g clip %g\n", dir, lr, b1, b2, eps, wd, clip);
    Model m;
    model_load(&m, dir);
    SFile *f = st_open(ap);
    const STensor *tt = st_find(f, "tokens");
    int S = (int)tt->shape[0], B = (int)tt->shape[1], T = (int)tt->shape[2];
    int *tok = tensor_i32(f, "tokens", NULL), *tgt = (int *)mallocCheck(sizeof(int) * (size_t)B * T);
    float *ref = tensor_f32(f, "losses", NULL), *ours = (float *)mallocCheck(sizeof(float) * (size_t)S);
    float *mom = (float *)callocCheck(sizeof(float) * m.tab.total), *var = (float *)callocCheck(sizeof(float) * m.tab.total);
    for (int s = 0; s < S; s++) {
        const int *bt = tok + (size_t)s * B * T;
        next_token_targets(bt, tgt, B, T);
        model_zero_grad(&m);
        ours[s] = model_forward(&m, bt, tgt, B, T, 1, NULL);
        model_backward(&m);
        float coef = clip_coef(sqrt(grad_norm2(m.gw, m.tab.total)), clip);
        for (size_t i = 0; i < m.tab.total; i++) m.gw[i] *= coef;
        for (int i = 0; i < m.tab.n; i++) {
            const PEntry *e = &m.tab.e[i];
            int decay = e->cols > 1 && e->kind != T_EMBED;
            adamw_update(m.w + e->offset, m.gw + e->offset, mom + e->offset, var + e->offset, e->rows * e->cols, lr, b1,
                         b2, eps, decay ? wd : 0.0f, s + 1);
        }
    }
    for (int s = 0; s < S; s++) printf("    step %2d  loss %.7f  torch %.7f\n", s + 1, ours[s], ref[s]);
    compare("adamw losses (10 steps)", ours, ref, (size_t)S, 1e-5, 0);
    free(tok), free(tgt), free(ref), free(ours), free(mom), free(var), free(fj), free(ap);
    cJSON_Delete(info);
    st_close(f);
    model_free(&m);
}

// Checkpoints written by this code (model_save, and a sliced model from prune.c), loaded by
// transformers on the GPU box: its logits and loss (transformers.safetensors) against ours.
static void check_c_written(const char *root) {
    static const char *names[] = {"f32", "bf16", "g4", "pruned", "pruned_g4", "e2b", "pruned_e2b"};
    for (int i = 0; i < 7; i++) {
        char sub[64];
        snprintf(sub, sizeof sub, "c_written/%s", names[i]);
        char *dir = path_join(root, sub);
        if (!dir_exists(dir)) {
            check(0, "missing fixture %s (make it with test/ref/make_fixtures.py)", dir);
            free(dir);
            continue;
        }
        printf("C-written checkpoint %s, as transformers loaded it\n", dir);
        Model m;
        model_load(&m, dir);
        char *tp = path_join(dir, "tokens.json"), *rp = path_join(dir, "transformers.safetensors");
        cJSON *tj = json_read(tp);
        int B = cJSON_GetArraySize(tj), T = cJSON_GetArraySize(cJSON_GetArrayItem(tj, 0));
        int *tok = (int *)mallocCheck(sizeof(int) * (size_t)B * T), *tgt = (int *)mallocCheck(sizeof(int) * (size_t)B * T);
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) tok[b * T + t] = cJSON_GetArrayItem(cJSON_GetArrayItem(tj, b), t)->valueint;
        next_token_targets(tok, tgt, B, T);
        SFile *ref = st_open(rp);
        size_t nl;
        float *ref_logits = tensor_f32(ref, "logits", &nl), *ref_loss = tensor_f32(ref, "loss", NULL);
        float *logits = (float *)mallocCheck(sizeof(float) * nl);
        float loss = model_forward(&m, tok, tgt, B, T, 0, logits);
        compare("logits", logits, ref_logits, nl, 1e-5, 1e-5);
        compare("loss", &loss, ref_loss, 1, 1e-5, 0);
        free(logits), free(ref_logits), free(ref_loss), free(tok), free(tgt), free(tp), free(rp), free(dir);
        cJSON_Delete(tj);
        st_close(ref);
        model_free(&m);
    }
}

// Streaming checkpoint I/O (model.h model_load_each / model_save_each, what the GPU path loads and saves with):
// g3_bf16 rewritten as bf16 shards with model.safetensors.index.json (tensors spread over three files out of table
// order) must load, whole and tensor by tensor, to exactly the tensors model_load reads from the single file (each
// handed over once, at its own table index, and no host weights kept); and a model written tensor by tensor from a
// source must be byte for byte the file model_save writes from host weights, for bf16 and f32.
typedef struct {
    const Model *m;
    float *w;
    int *seen;
} StreamCtx;
static void stream_put(void *ctx, int i, const float *buf) {
    StreamCtx *s = (StreamCtx *)ctx;
    const PEntry *e = &s->m->tab.e[i];
    memcpy(s->w + e->offset, buf, sizeof(float) * e->rows * e->cols);
    s->seen[i]++;
}
static void stream_get(void *ctx, int i, float *buf) {
    StreamCtx *s = (StreamCtx *)ctx;
    const PEntry *e = &s->m->tab.e[i];
    memcpy(buf, s->w + e->offset, sizeof(float) * e->rows * e->cols);
    s->seen[i]++;
}
static void check_streaming(const char *root) {
    char *src = path_join(root, "g3_bf16");
    if (!dir_exists(src)) {
        printf("FAIL missing fixture %s\n", src);
        failures++;
        free(src);
        return;
    }
    printf("streaming checkpoint I/O: %s as bf16 shards, read whole and tensor by tensor; written tensor by tensor\n", src);
    Model a, b, c;
    model_load(&a, src);
    char tmp[] = "/tmp/test_model.XXXXXX";
    if (!mkdtemp(tmp)) fail("cannot make a temporary directory: %s", strerror(errno));
    char *sh = path_join(tmp, "sharded"), *cfg = path_join(src, "config.json");
    make_dirs(sh);
    size_t nc;
    char *ctext = read_file(cfg, &nc), *cdst = path_join(sh, "config.json");
    FILE *f = fopen(cdst, "wb");
    if (!f || fwrite(ctext, 1, nc, f) != nc || fclose(f)) fail("cannot write %s", cdst);
    cJSON *index = cJSON_CreateObject(), *wm = cJSON_AddObjectToObject(index, "weight_map");
    for (int k = 0; k < 3; k++) {  // shard k holds the tensors i with i % 3 == 2 - k
        char name[64];
        snprintf(name, sizeof name, "model-%05d-of-00003.safetensors", k + 1);
        STWriter w = {0};
        for (int i = a.tab.n - 1; i >= 0; i--) {
            const PEntry *e = &a.tab.e[i];
            if (i % 3 != 2 - k) continue;
            int64_t shape[2] = {(int64_t)e->rows, (int64_t)e->cols};
            stw_add_f32(&w, e->name, ST_BF16, e->cols == 1 && e->kind != T_EMBED ? 1 : 2, shape, a.w + e->offset);
            cJSON_AddStringToObject(wm, e->name, name);
        }
        char *p = path_join(sh, name);
        stw_write(&w, p);
        free(p);
    }
    char *ip = path_join(sh, "model.safetensors.index.json");
    write_json_atomic(ip, index);
    model_load(&b, sh);
    int ok = b.tab.total == a.tab.total && !memcmp(a.w, b.w, sizeof(float) * a.tab.total);
    printf("  %s bf16 shards with an index load to the single file's tensors\n", ok ? "ok  " : "FAIL");
    failures += !ok;
    StreamCtx s = {&c, (float *)callocCheck(sizeof(float) * a.tab.total), (int *)callocCheck(sizeof(int) * a.tab.n)};
    model_load_each(&c, sh, stream_put, &s);
    int once = c.w == NULL && c.tab.n == a.tab.n;
    for (int i = 0; i < a.tab.n; i++) once &= s.seen[i] == 1;
    ok = once && !memcmp(a.w, s.w, sizeof(float) * a.tab.total);
    printf("  %s tensor by tensor (model_load_each): the same tensors, each once, no host weights\n", ok ? "ok  " : "FAIL");
    failures += !ok;
    // written tensor by tensor from a source (c has no weights) against model_save from a's
    for (int k = 0; k < 2; k++) {
        int dt = k ? ST_F32 : ST_BF16;
        char *d1 = path_join(tmp, k ? "w32" : "w16"), *d2 = path_join(tmp, k ? "e32" : "e16");
        model_save(&a, d1, dt);
        memset(s.seen, 0, sizeof(int) * a.tab.n);
        model_save_each(&c, d2, dt, stream_get, &s);
        char *f1 = path_join(d1, "model.safetensors"), *f2 = path_join(d2, "model.safetensors");
        once = 1;
        for (int i = 0; i < a.tab.n; i++) once &= s.seen[i] == 1;
        ok = once && same_file(f1, f2);
        printf("  %s %s written tensor by tensor (model_save_each) == model_save's file, byte for byte\n",
               ok ? "ok  " : "FAIL", st_dtype_name[dt]);
        failures += !ok;
        free(d1), free(d2), free(f1), free(f2);
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) printf("  (could not remove %s)\n", tmp);
    cJSON_Delete(index);
    free(s.w), free(s.seen), free(src), free(sh), free(cfg), free(ctext), free(cdst), free(ip);
    model_free(&a), model_free(&b), model_free(&c);
}

// a random C-made checkpoint for transformers to load
static void write_sample(const char *dir, int bf16, int g4) {
    Model m;
    memset(&m, 0, sizeof m);
    const char *cfg4 = "{\"model_type\":\"gemma4_text\",\"vocab_size\":300,\"hidden_size\":48,\"intermediate_size\":72,"
                       "\"num_hidden_layers\":3,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":12,"
                       "\"global_head_dim\":24,\"num_global_key_value_heads\":1,\"attention_k_eq_v\":true,"
                       "\"sliding_window\":4,\"final_logit_softcapping\":10.0,\"hidden_size_per_layer_input\":0,"
                       "\"layer_types\":[\"sliding_attention\",\"sliding_attention\",\"full_attention\"]}";
    const char *cfg = g4 ? cfg4 : "{\"model_type\":\"gemma3_text\",\"vocab_size\":300,\"hidden_size\":48,\"intermediate_size\":72,"
                      "\"num_hidden_layers\":3,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":24,"
                      "\"query_pre_attn_scalar\":20,\"sliding_window\":4,\"final_logit_softcapping\":10.0,"
                      "\"layer_types\":[\"sliding_attention\",\"full_attention\",\"sliding_attention\"],"
                      "\"rope_parameters\":{\"full_attention\":{\"rope_type\":\"linear\",\"factor\":2.0,"
                      "\"rope_theta\":1000000.0},\"sliding_attention\":{\"rope_type\":\"default\",\"rope_theta\":10000.0}}}";
    cJSON *j = cJSON_Parse(cfg);
    config_from_json(&m.c, j, "sample");
    cJSON_Delete(j);
    m.c.scale_dtype = bf16 ? ST_BF16 : ST_F32;
    model_init_layout(&m);
    model_init_random(&m, 7, 0.2);
    Rng r = rng_seed(8);
    for (int i = 0; i < m.tab.n; i++)  // random norms too
        if (m.tab.e[i].is_norm)
            for (size_t k = 0; k < m.tab.e[i].rows; k++)
                m.w[m.tab.e[i].offset + k] = (float)(m.tab.e[i].frozen ? 0.5 + rng_uniform(&r) : 0.3 * rng_normal(&r));
    model_save(&m, dir, bf16 ? ST_BF16 : ST_F32);
    char *tp = path_join(dir, "tokens.json");
    char buf[4096], *p = buf;
    p += sprintf(p, "[");
    for (int b = 0; b < 2; b++) {
        p += sprintf(p, b ? ",[" : "[");
        for (int t = 0; t < 12; t++) p += sprintf(p, t ? ",%d" : "%d", (int)(rng_next(&r) % 300));
        p += sprintf(p, "]");
    }
    sprintf(p, "]\n");
    write_text_atomic(tp, buf);
    free(tp);
    model_free(&m);
    printf("wrote %s\n", dir);
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "--write-sample")) {
        write_sample(argv[2], argc >= 4 && !strcmp(argv[3], "bf16"), argc >= 4 && !strcmp(argv[3], "g4"));
        return 0;
    }
    const char *root = argc >= 2 ? argv[1] : "test/fixtures";
    printf("test_model: model.h vs transformers fixtures in %s (BLIS kernels: %s, %d threads)\n", root, blas_kernels(),
           omp_get_max_threads());
    // fixture -> the fixture whose reference it shares (same weights, other file layout)
    static const char *fixtures[][2] = {{"g3_gqa", "g3_gqa"},      {"g3_sharded", "g3_gqa"}, {"g3_multimodal", "g3_gqa"},
                                        {"g3_mqa", "g3_mqa"},      {"g3_bf16", "g3_bf16"},   {"g4_kv", "g4_kv"},
                                        {"g4_keqv", "g4_keqv"},   {"g4_e2b", "g4_e2b"}};
    for (size_t i = 0; i < sizeof fixtures / sizeof fixtures[0]; i++) {
        char *d = path_join(root, fixtures[i][0]), *r = path_join(root, fixtures[i][1]);
        if (!dir_exists(d)) check(0, "missing fixture %s (make it with test/ref/make_fixtures.py)", d);
        else check_fixture(d, r, strcmp(fixtures[i][0], "g4_e2b") ? 1e-5 : 2e-5);
        free(d), free(r);
    }
    // the head in small tiles: several vocabulary tiles and row chunks (ragged ones too) against the same
    // references, so the tiled path that Gemma's 262k vocabulary takes is checked on these small vocabularies;
    // the second pass takes the first tile of each run from the first (kept) and makes the others again
    // (g3_gqa), or makes every tile again (g4_kv)
    for (size_t i = 0; i < 2; i++) {
        const char *name = i == 0 ? "g3_gqa" : "g4_kv";  // final softcaps 3 and 5
        char *d = path_join(root, name);
        if (dir_exists(d)) {
            int tile = head_tile, rows = head_rows, groups = head_groups;
            size_t keep = head_keep;
            head_rows = 16, head_tile = 16 * 48;  // 40 rows: chunks of 16, 16, 8; 256 columns: 5 tiles of 48, one of 16
            head_groups = 4;                       // runs of 1, 2, 1 and 2 tiles, each its own softmax state and dxf part
            head_keep = i == 0 ? sizeof(float) * 16 * 48 * 4 : 0;  // one tile a run, or none
            printf("tiled head (chunks of %d rows, tiles of 48 columns in %d runs, %s kept between the passes):\n",
                   head_rows, head_groups, i == 0 ? "the first tile of each run" : "no tile");
            check_fixture(d, d, 1e-5);
            head_tile = tile, head_rows = rows, head_groups = groups, head_keep = keep;
        } else check(0, "missing fixture %s: the tiled head needs it", d);
        free(d);
    }
    check_c_written(root);
    check_streaming(root);
    char *g = path_join(root, "g3_gqa");
    if (dir_exists(g)) check_adamw(g);
    else check(0, "missing fixture %s: the AdamW check needs it (make it with test/ref/make_fixtures.py)", g);
    free(g);
    printf("test_model: %s (%d failures)\n", failures ? "FAILED" : "passed", failures);
    return failures != 0;
}
