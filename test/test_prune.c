// test_prune.c — prune.c's method checked against references nobody here wrote: the masked model
// with deterministic masks against the physically sliced one (the test of record), finite differences
// for every mask gradient, brute-force enumeration for the constrained layer choice, model.h's parameter
// table for the GQA-aware counts, and (when the fixture exists) transformers' logits of a C-sliced model.
//
//   test/test_prune                      run every check (exit non-zero on any failure)
//   test/test_prune --write-sample DIR   write a sliced model + DIR/tokens.json for transformers
//   test/test_prune --write-sample-g4 DIR   the same for a sliced Gemma 4 (--write-sample-e2b: a pruned E2B)
//                                        (test/ref/make_fixtures.py stores its logits as
//                                        test/fixtures/c_written/pruned/transformers.safetensors)
//   test/test_prune --write-model DIR V  a small random Gemma 3 source model (vocab V) for the CLI tests
//   test/test_prune --write-shards DIR V two small domains of token shards for the CLI tests
//   test/test_prune --check-run OUT      check a ./prune output: report, shape, constraint, and the masked
//                                        model (masks.safetensors on the weights they apply to) == OUT's model
//   test/test_prune --bench S|M [STEPS]  pruning-step vs plain training-step throughput (medians)
//
// Tolerances (|ours − ref| <= atol + rtol·|ref|, atol = 1e-5·max|ref| of the tensor, rtol 1e-5), as in
// test_model: masked vs sliced logits are both fp32 and compute the same products; folding adds one fp32
// rounding per folded weight ((1+w)·z − 1, W·z, E·z·a) and slicing shortens sums by dropping exact zeros,
// so differences stay ~1e-6 relative (worst measured values are printed). Finite differences: see fd_check.
#define PRUNE_NO_MAIN
#include "prune.c"
#include "check.h"

// --- small models ----------------------------------------------------------------------------------

static void random_model(Model *m, const char *cfg_json, int scale_dtype, uint64_t seed, double std) {
    memset(m, 0, sizeof *m);
    cJSON *j = cJSON_Parse(cfg_json);
    if (!j) fail("internal: bad test config");
    config_from_json(&m->c, j, "test config");
    cJSON_Delete(j);
    m->c.scale_dtype = scale_dtype;
    model_init_layout(m);
    model_init_random(m, seed, std);
    Rng r = rng_seed(seed + 1);
    float id = 1.0f - norm_offset(&m->c);  // the identity norm weight: 0 (Gemma 3's 1+w), 1 (Gemma 4's w)
    for (int i = 0; i < m->tab.n; i++) {  // random norms: an all-identity norm would hide a folding bug
        const PEntry *e = &m->tab.e[i];
        if (e->is_norm)
            for (size_t k = 0; k < e->rows; k++) m->w[e->offset + k] = (float)(id + 0.3 * rng_normal(&r));
        if (e->kind == T_LAYER_SCALAR) m->w[e->offset] = (float)(0.3 + 1.7 * rng_uniform(&r));  // Gemma 4: not 1
    }
    model_masks_changed(m);
}

static const char *CFG_TINY =  // 6 layers (F every 3rd), GQA 3:1, softcap, for the gradient and slicing tests
    "{\"model_type\":\"gemma3_text\",\"vocab_size\":61,\"hidden_size\":32,\"intermediate_size\":24,"
    "\"num_hidden_layers\":6,\"num_attention_heads\":6,\"num_key_value_heads\":2,\"head_dim\":8,"
    "\"query_pre_attn_scalar\":8,\"sliding_window\":4,\"final_logit_softcapping\":5.0,"
    "\"layer_types\":[\"sliding_attention\",\"sliding_attention\",\"full_attention\",\"sliding_attention\","
    "\"sliding_attention\",\"full_attention\"]}";

static const char *CFG_SAMPLE =  // the transformers sample's source: bf16-rounded embedding scale (d=48)
    "{\"model_type\":\"gemma3_text\",\"vocab_size\":300,\"hidden_size\":48,\"intermediate_size\":80,"
    "\"num_hidden_layers\":4,\"num_attention_heads\":6,\"num_key_value_heads\":2,\"head_dim\":16,"
    "\"query_pre_attn_scalar\":20,\"sliding_window\":4,\"final_logit_softcapping\":10.0,"
    "\"layer_types\":[\"sliding_attention\",\"full_attention\",\"sliding_attention\",\"sliding_attention\"],"
    "\"rope_parameters\":{\"full_attention\":{\"rope_type\":\"linear\",\"factor\":2.0,\"rope_theta\":1000000.0},"
    "\"sliding_attention\":{\"rope_type\":\"default\",\"rope_theta\":10000.0}}}";

static const char *CFG_G4 =  // Gemma 4: 6 layers (F every 3rd, last full), K 2, full layers K=V with Kg 1, Dg 16
    "{\"model_type\":\"gemma4_text\",\"vocab_size\":61,\"hidden_size\":32,\"intermediate_size\":24,"
    "\"num_hidden_layers\":6,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":8,"
    "\"global_head_dim\":16,\"num_global_key_value_heads\":1,\"attention_k_eq_v\":true,"
    "\"sliding_window\":4,\"final_logit_softcapping\":5.0,"
    "\"layer_types\":[\"sliding_attention\",\"sliding_attention\",\"full_attention\",\"sliding_attention\","
    "\"sliding_attention\",\"full_attention\"],"
    "\"rope_parameters\":{\"full_attention\":{\"rope_type\":\"proportional\",\"partial_rotary_factor\":0.25,"
    "\"rope_theta\":1000000.0},\"sliding_attention\":{\"rope_type\":\"default\",\"rope_theta\":10000.0}}}";

static int *random_tokens(int n, int V, uint64_t seed) {
    int *t = (int *)mallocCheck(sizeof(int) * (size_t)n);
    Rng r = rng_seed(seed);
    for (int i = 0; i < n; i++) t[i] = (int)(rng_next(&r) % (uint64_t)V);
    return t;
}

static float *logits_of(Model *m, const int *tok, int B, int T) {
    float *lg = (float *)mallocCheck(sizeof(float) * (size_t)B * T * m->c.V);
    model_forward(m, tok, NULL, B, T, 0, lg);
    return lg;
}

// log_alphas spread over the whole clamp range, so kept soft values differ visibly from 1
static void random_log_alphas(Masks *M, uint64_t seed) {
    Rng r = rng_seed(seed);
    for (size_t i = 0; i < M->n; i++) M->la[i] = (float)(LA_MIN + (LA_MAX - LA_MIN) * rng_uniform(&r));
}

// the rule: >= 1 full layer in every run of N consecutive kept layers (N > 0), and >= 1 full layer
static int constraint_holds(const int *full, int n, int N, int need_full) {
    int run = 0, any = 0;
    for (int k = 0; k < n; k++) {
        run = full[k] ? 0 : run + 1, any |= full[k];
        if (N > 0 && run >= N) return 0;
    }
    return !need_full || any;
}

// --- 1. the test of record: masked (deterministic masks) == sliced ----------------------------------

// Source m, target t: random log_alphas -> deterministic masks at soft values -> masked logits; fold and
// slice -> logits; save + load -> logits; shape, counts and constraint.
static void masked_vs_sliced(const char *name, Model *m, Shape t, int out_dtype, uint64_t seed) {
    printf("masked == sliced: %s, target L=%d d=%d H=%d K=%d F=%d (%s)\n", name, t.L, t.d, t.H, t.K, t.F,
           out_dtype == ST_BF16 ? "bf16 loader scale" : "f32");
    int full_every = default_full_every(&m->c), B = 2, T = 14;
    shape_fix(&m->c, &t);
    check_target(&m->c, &t, full_every, 0, name);
    Masks M;
    masks_init(&M, &m->c, &t, full_layers_kept(&m->c, t.L, full_every), seed);
    random_log_alphas(&M, seed + 7);
    float *soft = (float *)mallocCheck(sizeof(float) * M.n);
    soft_values(&M, soft);
    deterministic_masks(&m->c, &M, soft, soft, full_every, 0);
    int *tok = random_tokens(B * T, m->c.V, seed + 3);
    masks_attach(m, &M);
    model_masks_changed(m);
    float *masked = logits_of(m, tok, B, T);
    masks_detach(m);
    Model out;
    Survivors sv;
    fold_and_slice(m, NULL, NULL, &M, out_dtype, &out, &sv);
    float *sliced = logits_of(&out, tok, B, T);
    size_t n = (size_t)B * T * m->c.V;
    compare("logits: sliced vs masked", sliced, masked, n, 1e-5, 1e-5);
    char dir[] = "/tmp/test_prune_XXXXXX";  // the source's files, then (fp32) the pruned model's
    if (!mkdtemp(dir)) fail("mkdtemp failed");
    {  // from the source's file tensor by tensor (prune's end at ZeRO >= 1): the same pruned model, bit for bit
        model_save(m, dir, ST_F32);
        Checkpoint ck = checkpoint_open(dir);
        Model again;
        Survivors sv2;
        fold_and_slice(m, &ck, dir, &M, out_dtype, &again, &sv2);
        checkpoint_close(&ck);
        check(again.tab.total == out.tab.total && !memcmp(again.w, out.w, sizeof(float) * out.tab.total),
              "sliced from the source's file: the same pruned weights bit for bit");
        model_free(&again), survivors_free(&sv2);
    }
    Shape got = shape_of(&out.c);
    check(got.d == t.d && got.F == t.F && got.L == t.L && got.H == t.H && got.K == t.K && got.D == t.D && got.Kg == t.Kg,
          "sliced shape L=%d d=%d H=%d K=%d F=%d (full layers K=%d) == target", got.L, got.d, got.H, got.K, got.F, got.Kg);
    if (m->c.arch == 4) {
        int dropped = 0;
        for (int l = 0; l < m->c.L; l++) dropped += M.zl[l] == 0;
        check(out.c.full[out.c.L - 1], "Gemma 4: the last kept layer is full attention (%d layers dropped, their "
              "layer_scalar carried)", dropped);
    }
    float *bin = (float *)mallocCheck(sizeof(float) * M.n);
    for (size_t i = 0; i < M.n; i++) bin[i] = M.z[i] != 0;
    double counted = params_from_keep(&m->c, &M, bin);
    Config tc = target_config(&m->c, &t, NULL);  // Gemma 4: the count depends on which layer types survived
    memcpy(tc.full, out.c.full, sizeof(int) * (size_t)out.c.L);
    check(counted == (double)count_params(&out.c, 0) && counted == (double)count_params(&tc, 0),
          "GQA-aware count of the masks %.0f == model.h's parameter table %zu == target %zu", counted,
          count_params(&out.c, 0), count_params(&tc, 0));
    check(constraint_holds(out.c.full, out.c.L, full_every, count_full(&m->c) > 0),
          "kept layers keep a full-attention layer in every %d consecutive layers", full_every);
    if (out_dtype == ST_F32) {  // through the file: what any loader sees
        model_save(&out, dir, ST_F32);
        Model back;
        model_load(&back, dir);
        float *loaded = logits_of(&back, tok, B, T);
        check(memcmp(loaded, sliced, sizeof(float) * n) == 0, "saved and reloaded: logits bit-identical to the in-memory slice");
        compare("logits: reloaded vs masked", loaded, masked, n, 1e-5, 1e-5);
        free(loaded);
        model_free(&back);
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
    free(bin), free(soft), free(tok), free(masked), free(sliced);
    survivors_free(&sv);
    model_free(&out);
    masks_free(&M);
}

static void test_masked_vs_sliced(void) {
    Model m;
    if (dir_exists("test/fixtures/g3_gqa")) {
        model_load(&m, "test/fixtures/g3_gqa");  // d 64, L 4 (sFss), H 8, K 2, D 32, F 96, softcap 3
        masked_vs_sliced("g3_gqa", &m, (Shape){48, 50, 3, 4, 1, 32, 0}, ST_F32, 11);
        masked_vs_sliced("g3_gqa", &m, (Shape){60, 96, 4, 6, 2, 32, 0}, ST_F32, 12);
        masked_vs_sliced("g3_gqa", &m, (Shape){34, 17, 2, 2, 2, 32, 0}, ST_F32, 13);
        masked_vs_sliced("g3_gqa", &m, (Shape){64, 96, 4, 8, 2, 32, 0}, ST_F32, 14);  // nothing removed: only folding
        model_free(&m);
    } else check(0, "fixture test/fixtures/g3_gqa is missing");
    if (dir_exists("test/fixtures/g3_mqa")) {
        model_load(&m, "test/fixtures/g3_mqa");  // d 48, L 3 (ssF), H 4, K 1, D 16, F 80
        masked_vs_sliced("g3_mqa", &m, (Shape){36, 41, 2, 3, 1, 16, 0}, ST_F32, 21);
        masked_vs_sliced("g3_mqa", &m, (Shape){44, 80, 3, 4, 1, 16, 0}, ST_F32, 22);
        masked_vs_sliced("g3_mqa", &m, (Shape){1, 1, 1, 1, 1, 16, 0}, ST_F32, 23);  // the smallest model there is
        model_free(&m);
    } else check(0, "fixture test/fixtures/g3_mqa is missing");
    if (dir_exists("test/fixtures/g3_bf16")) {  // sqrt(48) rounds to 6.9375 in bf16: the scale fold must match
        model_load(&m, "test/fixtures/g3_bf16");
        Shape t = shape_of(&m.c);
        t.d = t.d * 3 / 4 / t.H * t.H, t.F = t.F / 2;
        masked_vs_sliced("g3_bf16", &m, t, ST_F32, 31);
        masked_vs_sliced("g3_bf16", &m, t, ST_BF16, 32);
        model_free(&m);
    } else check(0, "fixture test/fixtures/g3_bf16 is missing");
    random_model(&m, CFG_TINY, ST_F32, 5, 0.3);
    masked_vs_sliced("random 6-layer", &m, (Shape){18, 13, 4, 3, 1, 8, 0}, ST_F32, 41);
    masked_vs_sliced("random 6-layer", &m, (Shape){24, 24, 2, 6, 2, 8, 0}, ST_BF16, 42);
    model_free(&m);
    // Gemma 4: w-scaled norms, full layers with their own D and K (and no v_proj with K=V), layer_scalar
    // (fixtures: transformers' random values; random models: 0.3-2.0) carried over dropped layers
    if (dir_exists("test/fixtures/g4_keqv")) {
        model_load(&m, "test/fixtures/g4_keqv");  // d 64, L 4 (sFsF), H 4, K 2, D 16; full: K=V, Kg 1, Dg 32; F 96
        masked_vs_sliced("g4_keqv", &m, (Shape){48, 50, 2, 2, 1, 16, 1}, ST_F32, 51);
        masked_vs_sliced("g4_keqv", &m, (Shape){64, 96, 3, 4, 2, 16, 1}, ST_F32, 52);
        masked_vs_sliced("g4_keqv", &m, (Shape){32, 30, 1, 2, 2, 16, 1}, ST_F32, 53);  // one layer: a full one
        masked_vs_sliced("g4_keqv", &m, (Shape){64, 96, 4, 4, 2, 16, 1}, ST_F32, 54);  // nothing removed: only folding
        model_free(&m);
    } else check(0, "fixture test/fixtures/g4_keqv is missing");
    if (dir_exists("test/fixtures/g4_kv")) {
        model_load(&m, "test/fixtures/g4_kv");  // as g4_keqv with v_proj, and full layers sharing K 2
        masked_vs_sliced("g4_kv", &m, (Shape){40, 60, 2, 2, 1, 16, 0}, ST_F32, 61);
        masked_vs_sliced("g4_kv", &m, (Shape){56, 70, 3, 4, 2, 16, 0}, ST_BF16, 62);
        model_free(&m);
    } else check(0, "fixture test/fixtures/g4_kv is missing");
    if (dir_exists("test/fixtures/g4_e2b")) {  // E2B: query heads and FFN channels only (2F on the shared layers)
        model_load(&m, "test/fixtures/g4_e2b");  // d 64, L 6 (sFsFsF, last 2 KV-shared, double-wide), H 4, K 2, F 48, P 8
        masked_vs_sliced("g4_e2b", &m, (Shape){64, 32, 6, 2, 2, 16, 2}, ST_F32, 81);
        masked_vs_sliced("g4_e2b", &m, (Shape){64, 20, 6, 4, 2, 16, 2}, ST_F32, 82);
        model_free(&m);
    } else check(0, "fixture test/fixtures/g4_e2b is missing");
    random_model(&m, CFG_G4, ST_F32, 6, 0.3);
    for (uint64_t seed = 71; seed < 75; seed++)  // uneven targets, different layers dropped each time
        masked_vs_sliced("random Gemma 4", &m, (Shape){20, 15, (int)(2 + seed % 3), 2, 1, 8, 1}, ST_F32, seed);
    model_free(&m);
}

// --- 2. the constrained layer choice against brute force ---------------------------------------------

static void test_choose_layers(void) {
    printf("layer choice under the sliding/full constraint vs brute-force enumeration\n");
    Rng r = rng_seed(99);
    int cases = 0, bad = 0, infeasible_agree = 0, pred_bad = 0, typed_bad = 0;
    Config c;
    memset(&c, 0, sizeof c);
    for (int it = 0; it < 400; it++) {
        int L = 1 + (int)(rng_next(&r) % 11), n = 1 + (int)(rng_next(&r) % L), N = (int)(rng_next(&r) % 5);
        int take[MAX_LAYERS], last = (int)(rng_next(&r) % 3 == 0), nf = (int)(rng_next(&r) % (unsigned)(n + 1));
        double score[MAX_LAYERS];
        c.L = L, c.arch = last ? 4 : 3;  // Gemma 4: the last kept layer must be full attention
        for (int l = 0; l < L; l++) c.full[l] = rng_uniform(&r) < 0.3, score[l] = rng_uniform(&r);
        int need = count_full(&c) > 0;
        double best = -INFINITY, best_typed = -INFINITY;  // typed: exactly nf full layers (prune's two layer rows)
        for (unsigned mask = 0; mask < (1u << L); mask++) {
            if (__builtin_popcount(mask) != n) continue;
            int kf[MAX_LAYERS], keep[MAX_LAYERS], k = 0, nfull = 0;
            double s = 0;
            for (int l = 0; l < L; l++) {
                keep[l] = mask >> l & 1;
                if (keep[l]) kf[k++] = c.full[l], s += score[l], nfull += c.full[l];
            }
            int ok = constraint_holds(kf, k, N, need) && (!last || (k && kf[k - 1]));
            pred_bad += ok != layers_ok(&c, keep, N);  // the rule's predicate agrees with this transcription
            if (ok && s > best) best = s;
            if (constraint_holds(kf, k, N, 0) && (!last || (k && kf[k - 1])) && nfull == nf && s > best_typed) best_typed = s;
        }
        int tk[MAX_LAYERS], typed = layers_best(&c, score, n, N, nf, tk);
        cases++;
        if (typed != (best_typed > -INFINITY)) typed_bad++;
        else if (typed) {
            double s = 0;
            int k = 0, nfull = 0;
            for (int l = 0; l < L; l++) k += tk[l], nfull += tk[l] && c.full[l], s += tk[l] ? score[l] : 0;
            typed_bad += k != n || nfull != nf || fabs(s - best_typed) > 1e-9;
        }
        int ok = choose_layers(&c, score, n, N, take);
        if (!ok) {
            if (best == -INFINITY) infeasible_agree++;
            else bad++;
            continue;
        }
        int kf[MAX_LAYERS], k = 0;
        double s = 0;
        for (int l = 0; l < L; l++)
            if (take[l]) kf[k++] = c.full[l], s += score[l];
        if (k != n || !constraint_holds(kf, k, N, need) || (last && !kf[k - 1]) || fabs(s - best) > 1e-9) bad++;
    }
    check(bad == 0, "%d random cases (L <= 11, a third with Gemma 4's full layer last): the choice is feasible, has n "
          "layers and the best sum (%d infeasible, both agree); %d disagreements", cases, infeasible_agree, bad);
    check(typed_bad == 0, "the same %d cases with exactly nf full layers (prune's per-type layer rows): feasible when brute "
          "force finds a choice, the best sum; %d disagreements", cases, typed_bad);
    check(pred_bad == 0, "layers_ok agrees with the transcribed rule on every subset of every case (%d disagreements)",
          pred_bad);
}

// --- 3. gradients against finite differences ------------------------------------------------------
// Float32 model, central differences with Richardson extrapolation (fd_rich). Measured on this model: the
// loss (~4) carries ~1.5e-7 of rounding noise, so the extrapolated quotient at step h carries ~5e-7/h;
// without extrapolation the h² term dominates (the hidden mask scales every norm output: at h = 1e-2 the
// plain quotient is off by 5%, shrinking as h²). At h = 7e-3 the noise is ~7e-5 and the remaining O(h⁴)
// term below it. Checks: along a random ±1 direction over all elements of a mask, and for the three
// largest single derivatives of each mask; tolerance 1e-3·|derivative| + 1e-4 (the noise floor, rounded
// up). Worst measured: 0.63 of that tolerance.
#define FD_H 7e-3

typedef struct {
    Pruner P;
    int *tok, *tgt, B, T;
    double warm;
} FdCase;

// d loss / d hook (the model.h mask gradients) for one hook array
static double ce_at(FdCase *f) {
    model_masks_changed(&f->P.m);
    return model_forward(&f->P.m, f->tok, f->tgt, f->B, f->T, 0, NULL);
}

// Central difference of obj along dir (NULL: element i only), Richardson-extrapolated: (4 D(h/2) − D(h)) / 3
// cancels the h² truncation term, which dominates for the hidden mask (it multiplies every norm output).
static double fd_rich(float *x, const float *save, size_t n, const float *dir, size_t i, double h,
                      double (*obj)(FdCase *, int), FdCase *f, int recompute) {
    double D[2];
    for (int k = 0; k < 2; k++) {
        double hk = k ? h / 2 : h, l[2];
        for (int sgn = 0; sgn < 2; sgn++) {
            float step = (float)(sgn ? -hk : hk);
            if (dir) for (size_t j = 0; j < n; j++) x[j] = save[j] + step * dir[j];
            else x[i] = save[i] + step;
            l[sgn] = obj(f, recompute);
        }
        memcpy(x, save, sizeof(float) * n);
        D[k] = (l[0] - l[1]) / (2 * hk);
    }
    return (4 * D[1] - D[0]) / 3;
}

static void fd_compare(const char *what, float *x, size_t n, const float *g, double (*obj)(FdCase *, int), FdCase *f,
                       int recompute, double h) {
    Rng r = rng_seed(n * 31 + 7);
    float *dir = (float *)mallocCheck(sizeof(float) * n), *save = (float *)mallocCheck(sizeof(float) * n);
    memcpy(save, x, sizeof(float) * n);
    double an = 0;
    for (size_t i = 0; i < n; i++) dir[i] = rng_uniform(&r) < 0.5 ? -1.0f : 1.0f, an += (double)dir[i] * g[i];
    double fd = fd_rich(x, save, n, dir, 0, h, obj, f, recompute), err = fabs(fd - an), tol = 1e-3 * fabs(an) + 1e-4;
    check(err <= tol, "%-40s directional: analytic %+.6e  finite diff %+.6e  err %.1e (%.2f of tol)", what, an, fd, err,
          err / tol);
    for (int k = 0; k < 3; k++) {  // the largest few single elements
        size_t bi = 0;
        double bg = -1;
        for (size_t i = 0; i < n; i++)
            if (fabs(g[i]) > bg && dir[i] != 0) bg = fabs(g[i]), bi = i;
        dir[bi] = 0;
        fd = fd_rich(x, save, n, NULL, bi, h, obj, f, recompute), err = fabs(fd - g[bi]), tol = 1e-3 * fabs(g[bi]) + 1e-4;
        check(err <= tol, "%-40s element %-5zu analytic %+.6e  finite diff %+.6e  err %.1e (%.2f of tol)", what, bi, g[bi],
              fd, err, err / tol);
    }
    obj(f, recompute);
    free(dir), free(save);
}

static double obj_hooks(FdCase *f, int unused) { return ce_at(f); }

// CE(z(log_alpha, u)) + Lagrangian(log_alpha) at fixed u; recompute = 1 re-derives z from log_alpha
static double obj_total(FdCase *f, int unused) {
    Masks *M = &f->P.M;
    masks_from_u(M);
    masks_compose(&f->P.m.c, M);
    return ce_at(f) + lagrangian(M, f->warm, 0, NULL, NULL);
}

static double obj_lag(FdCase *f, int unused) { return lagrangian(&f->P.M, f->warm, 0, NULL, NULL); }

static void test_gradients(void) {
    printf("mask gradients vs finite differences (random 6-layer model, z in (0.5, 1))\n");
    FdCase f;
    memset(&f, 0, sizeof f);
    random_model(&f.P.m, CFG_TINY, ST_F32, 8, 0.3);
    Shape t = {24, 12, 4, 2, 1, 8, 0};  // every mask has a row with a term (the full layers' row is idle: 2 of 2)
    masks_init(&f.P.M, &f.P.m.c, &t, full_layers_kept(&f.P.m.c, t.L, default_full_every(&f.P.m.c)), 3);
    f.B = 2, f.T = 10;
    StepOpts cpu = {DEVICE_CPU, f.B, f.T, 0, 0, 0, 0, NULL, 0};
    pruner_alloc(&f.P, &cpu);
    f.tok = random_tokens(f.B * f.T, f.P.m.c.V, 4);
    f.tgt = random_tokens(f.B * f.T, f.P.m.c.V, 5);
    Masks *M = &f.P.M;
    Model *m = &f.P.m;
    // (a) model.h's dz for each hook: z given directly
    Rng r = rng_seed(6);
    for (size_t i = 0; i < M->n; i++) M->z[i] = (float)(0.5 + 0.5 * rng_uniform(&r));
    masks_compose(&m->c, M);
    for (size_t i = 0; i < (size_t)m->c.L * m->c.H; i++) M->zh[i] = (float)(0.5 + 0.5 * rng_uniform(&r));
    model_masks_changed(m);
    model_zero_grad(m);
    model_forward(m, f.tok, f.tgt, f.B, f.T, 1, NULL);
    model_backward(m);
    size_t L = (size_t)m->c.L;
    float *g = (float *)mallocCheck(sizeof(float) * M->n + sizeof(float) * L * (m->c.H + 1));
    memcpy(g, M->dz, sizeof(float) * M->n);
    memcpy(g + M->n, M->dzh, sizeof(float) * L * m->c.H);
    memcpy(g + M->n + L * m->c.H, M->dzl, sizeof(float) * L);
    fd_compare("dz layer (model.h dzl)", m->zl, L, g + M->n + L * m->c.H, obj_hooks, &f, 0, FD_H);
    fd_compare("dz head (model.h dzh)", m->zh, L * m->c.H, g + M->n, obj_hooks, &f, 0, FD_H);
    fd_compare("dz ffn (model.h dzf)", m->zf, L * m->c.F, g + M->s[M_FFN].base, obj_hooks, &f, 0, FD_H);
    fd_compare("dz hidden (model.h dzd)", m->zd, (size_t)m->c.d, g + M->s[M_HIDDEN].base, obj_hooks, &f, 0, FD_H);
    free(g);
    // (b) d (CE + Lagrangian) / d log_alpha through sampling, the group·slot product and the Lagrangian;
    //     u is redrawn where z would cross 0 or 1 within the step (the derivative jumps there)
    for (size_t i = 0; i < M->n; i++) {
        M->la[i] = (float)(-2.0 + 4.0 * rng_uniform(&r));
        for (;;) {
            double u = HC_EPS + (1 - 2 * HC_EPS) * rng_uniform(&r), s = sigmoid((log(u) - log1p(-u) + M->la[i]) / HC_BETA);
            double zr = s * (HC_R - HC_L) + HC_L, slope = (HC_R - HC_L) * s * (1 - s) / HC_BETA * 2e-2;
            M->u[i] = (float)u;
            if (fabs(zr) > slope + 1e-3 && fabs(zr - 1) > slope + 1e-3) break;
        }
    }
    for (int k = 0; k < 2 * NLAM; k++) M->lam[k] = (float)(rng_normal(&r));
    f.warm = 0.6;
    masks_from_u(M);
    masks_compose(&m->c, M);
    memset(M->dlam, 0, sizeof M->dlam);
    masked_ce_grad(&f.P, f.tok, f.tgt);
    lagrangian(M, f.warm, 1, NULL, NULL);
    float *gla = (float *)mallocCheck(sizeof(float) * M->n);
    memcpy(gla, M->dla, sizeof(float) * M->n);
    float glam[2 * NLAM];
    memcpy(glam, M->dlam, sizeof glam);
    // idle rows (here the full layers' row, 2 of 2 kept): z = 1, no gradient from the CE or the Lagrangian, and
    // their multiplier pair none either, so none of it enters the clipped norm
    double idle_g = 0, idle_z = 0;
    int idle_n = 0;
    for (int mk = 0; mk < M_N; mk++)
        for (int row = 0; row < M->s[mk].rows; row++)
            for (int i = 0; M->s[mk].idle[row] && i < M->s[mk].len[row]; i++, idle_n++)
                idle_g += fabs(MROW(M, gla, mk, row)[i]), idle_z += fabs(MROW(M, M->z, mk, row)[i] - 1);
    check(idle_n == 2 && M->terms[M_N] == 0 && idle_g == 0 && idle_z == 0 && glam[M_N] == 0 && glam[NLAM + M_N] == 0,
          "idle rows (%d elements: the full layers, all kept): z = 1, d/d log_alpha = 0, their multipliers' gradients = 0",
          idle_n);
    for (int mk = 0; mk < M_N; mk++) {
        char what[64];
        snprintf(what, sizeof what, "d(CE+Lag)/d log_alpha %s", mask_name[mk]);
        fd_compare(what, M->la + M->s[mk].base, M->s[mk].n, gla + M->s[mk].base, obj_total, &f, 1, FD_H);
    }
    // (c) the Lagrangian alone, in double: tight
    memset(M->dla, 0, sizeof(float) * M->n);
    memset(M->dlam, 0, sizeof M->dlam);
    lagrangian(M, f.warm, 1, NULL, NULL);
    double worst = 0, worst_lam = 0;
    for (size_t i = 0; i < M->n; i += 7) {
        float s0 = M->la[i];
        M->la[i] = s0 + 1e-2f;
        double lp = obj_lag(&f, 0);
        M->la[i] = s0 - 1e-2f;
        double lm = obj_lag(&f, 0);
        M->la[i] = s0;
        double fd = (lp - lm) / ((double)(s0 + 1e-2f) - (double)(s0 - 1e-2f));
        worst = fmax(worst, fabs(fd - M->dla[i]) / (1e-3 * fabs(M->dla[i]) + 1e-6));
    }
    for (int k = 0; k < 2 * NLAM; k++) {
        float s0 = M->lam[k];
        M->lam[k] = s0 + 0.5f;
        double lp = obj_lag(&f, 0);
        M->lam[k] = s0 - 0.5f;
        double lm = obj_lag(&f, 0);
        M->lam[k] = s0;
        worst_lam = fmax(worst_lam, fabs((lp - lm) - M->dlam[k]) / (1e-5 * fabs(M->dlam[k]) + 1e-7));
    }
    check(worst <= 1, "Lagrangian d/d log_alpha vs finite differences (every 7th element): worst %.2f of tol (1e-3 rel + 1e-6)", worst);
    check(worst_lam <= 1, "Lagrangian d/d lambda vs finite differences (linear in lambda): worst %.2f of tol (1e-5 rel)", worst_lam);
    free(gla), free(f.tok), free(f.tgt);
    masks_free(M);
    step_close(f.P.S), optimizer_free(&f.P.opt), free(f.P.la_m), free(f.P.la_v);
    masks_detach(m);
    model_free(m);
}

// --- 4. hard-concrete facts that hold whatever the implementation ----------------------------------
// The sliding/full rule during training: on 6 layers (full at 2 and 5) pruned to 3, a loss that makes both full
// layers the least useful. Masks train on it (hard-concrete samples, the Lagrangian, AdamW on log_alphas and λ as
// prune_step does) once with the layer mask as one row, as the published code has it, and once with prune.c's rows
// per attention type. One row: the learned top 3 hold no full layer, so the rule's final choice would keep a layer
// the masks switched off. Per type: a full layer stays live, and the final choice is the masks' own.
static void train_layer_masks(const Config *c, const Shape *t, int kf, Masks *M) {
    static const double cost[6] = {-0.4, -0.1, 0.2, -0.3, -0.05, 0.1};  // d loss / d z_l: full layers hurt
    masks_init(M, c, t, kf, 11);
    float *la_m = (float *)callocCheck(sizeof(float) * M->n), *la_v = (float *)callocCheck(sizeof(float) * M->n);
    float lam_m[2 * NLAM] = {0}, lam_v[2 * NLAM] = {0};
    int steps = 3200, lag_warmup = 640;  // the published schedule: 3200 steps, targets reached at 20%
    for (int step = 1; step <= steps; step++) {
        masks_project(M);
        masks_sample(c, M, 0, 1);
        memset(M->dla, 0, sizeof(float) * M->n), memset(M->dlam, 0, sizeof M->dlam);
        for (int l = 0; l < c->L; l++) MLAYER(M, M->dla, l) = (float)cost[l] * MLAYER(M, M->dzdla, l);
        lagrangian(M, fmin(1.0, (double)step / lag_warmup), 1, NULL, NULL);
        float lr = (float)lr_schedule(step, steps, steps / 10, 1.0, 0.1);
        adamw_update(M->la, M->dla, la_m, la_v, M->n, lr, ADAM_B1, ADAM_B2, ADAM_EPS, 0.0f, step);
        adamw_update(M->lam, M->dlam, lam_m, lam_v, 2 * NLAM, -lr, ADAM_B1, ADAM_B2, ADAM_EPS, 0.0f, step);
    }
    masks_project(M);
    free(la_m), free(la_v);
}

static void test_layer_rows(void) {
    printf("the sliding/full rule shapes the layer masks during training (6 layers, full at 2 and 5, target 3)\n");
    Model m;
    random_model(&m, CFG_TINY, ST_F32, 5, 0.3);
    Shape t = shape_of(&m.c);
    t.L = 3;
    int N = default_full_every(&m.c);
    Masks M;
    train_layer_masks(&m.c, &t, -1, &M);  // one row: both types ranked together (the published layer mask)
    float *soft = (float *)mallocCheck(sizeof(float) * M.n);
    soft_values(&M, soft);
    int rank[6] = {0, 1, 2, 3, 4, 5}, full_in_top = 0;
    for (int a = 0; a < 6; a++)
        for (int b = a + 1; b < 6; b++)
            if (MLAYER(&M, soft, rank[b]) > MLAYER(&M, soft, rank[a])) { int x = rank[a]; rank[a] = rank[b], rank[b] = x; }
    for (int k = 0; k < 3; k++) full_in_top += m.c.full[rank[k]];
    check(M.s[M_LAYER].rows == 1 && full_in_top == 0, "one layer row: the learned top 3 (layers %d %d %d) hold no full "
          "layer (full layers: P(z > 0) %.3f, %.3f; soft values %.3f, %.3f)", rank[0], rank[1], rank[2],
          keep_prob(MLAYER(&M, M.la, 2)), keep_prob(MLAYER(&M, M.la, 5)), MLAYER(&M, soft, 2), MLAYER(&M, soft, 5));
    masks_free(&M), free(soft);
    // rows per attention type
    train_layer_masks(&m.c, &t, full_layers_kept(&m.c, t.L, N), &M);
    soft = (float *)mallocCheck(sizeof(float) * M.n);
    expected_masks(&m.c, &M);
    int learned[MAX_LAYERS], same = 1, live = 0, nfull = 0;
    for (int l = 0; l < m.c.L; l++) learned[l] = M.zl[l] != 0;
    soft_values(&M, soft);
    deterministic_masks(&m.c, &M, soft, soft, N, 0);
    for (int l = 0; l < m.c.L; l++) {
        same &= learned[l] == (M.zl[l] != 0);
        if (M.zl[l] != 0 && m.c.full[l]) nfull++, live += keep_prob(MLAYER(&M, M.la, l)) > 0.5;
    }
    check(M.s[M_LAYER].rows == 2 && M.s[M_LAYER].keep[0] == 2 && M.s[M_LAYER].keep[1] == 1,
          "rows per type: sliding 4 -> %d, full 2 -> %d", M.s[M_LAYER].keep[0], M.s[M_LAYER].keep[1]);
    check(nfull == 1 && live == 1, "rows per type: the final choice keeps %d full layer(s), %d live (P(z > 0) > 0.5; "
          "layer 2 %.3f, layer 5 %.3f; soft values %.3f, %.3f)", nfull, live, keep_prob(MLAYER(&M, M.la, 2)),
          keep_prob(MLAYER(&M, M.la, 5)), MLAYER(&M, soft, 2), MLAYER(&M, soft, 5));
    check(same, "rows per type: the final layers (%d %d %d %d %d %d) == the masks' own (round(sum P(z > 0)) per type)",
          M.zl[0] != 0, M.zl[1] != 0, M.zl[2] != 0, M.zl[3] != 0, M.zl[4] != 0, M.zl[5] != 0);
    masks_free(&M), free(soft);
    model_free(&m);
}

// --grad-accum: one step over two micro-batches, each under its own draw of z, against the two micro-batches
// computed alone from the same draws (the mask RNG replayed): d CE / d log_alpha is the mean of the two, the
// weights' gradient their sum, the CE their mean. rtol 1e-5 (the second micro-batch's hook gradients are a
// difference of fp32 accumulations), atol 1e-6·max.
static void test_grad_accum(void) {
    printf("--grad-accum: a fresh z per micro-batch, gradients = the micro-batches' own\n");
    Pruner P;
    memset(&P, 0, sizeof P);
    random_model(&P.m, CFG_TINY, ST_F32, 8, 0.3);
    Shape t = {24, 12, 4, 2, 1, 8, 0};
    masks_init(&P.M, &P.m.c, &t, full_layers_kept(&P.m.c, t.L, default_full_every(&P.m.c)), 3);
    int B = 2, T = 10;
    StepOpts cpu = {DEVICE_CPU, B, T, 0, 0, 0, 0, NULL, 0};
    pruner_alloc(&P, &cpu);
    Masks *M = &P.M;
    random_log_alphas(M, 12);
    int *tok = random_tokens(2 * B * T, P.m.c.V, 4), *tgt = random_tokens(2 * B * T, P.m.c.V, 5);
    size_t W = P.m.tab.total;
    float *dla = (float *)mallocCheck(sizeof(float) * M->n), *gw = (float *)mallocCheck(sizeof(float) * W);
    float *ref_dla = (float *)callocCheck(sizeof(float) * M->n), *ref_gw = (float *)callocCheck(sizeof(float) * W);
    Rng r0 = M->rng;
    P.accum = 2;
    masks_sample(&P.m.c, M, 0, 1);
    double ce = masked_ce_grad(&P, tok, tgt), ref_ce = 0;
    memcpy(dla, M->dla, sizeof(float) * M->n), memcpy(gw, P.m.gw, sizeof(float) * W);
    M->rng = r0, P.accum = 1;
    float z1[2];
    for (int a = 0; a < 2; a++) {
        masks_sample(&P.m.c, M, 0, 1);  // the same draws as inside the accumulated step
        z1[a] = M->z[M->s[M_FFN].base];
        ref_ce += masked_ce_grad(&P, tok + a * B * T, tgt + a * B * T) / 2;
        for (size_t i = 0; i < M->n; i++) ref_dla[i] += M->dla[i] / 2;
        for (size_t i = 0; i < W; i++) ref_gw[i] += P.m.gw[i];
    }
    check(z1[0] != z1[1], "two micro-batches, two draws of z (an FFN gate: %.4f, %.4f)", z1[0], z1[1]);
    compare("d CE / d log_alpha, accumulated vs the mean of the two", dla, ref_dla, M->n, 1e-5, 1e-6);
    compare("weight gradients, accumulated vs the sum of the two", gw, ref_gw, W, 1e-5, 1e-6);
    check(fabs(ce - ref_ce) <= 1e-6 * fabs(ref_ce), "CE: accumulated %.6f, mean of the two %.6f", ce, ref_ce);
    free(dla), free(gw), free(ref_dla), free(ref_gw), free(tok), free(tgt);
}

// Gemma 4's layer_scalar is frozen (a buffer in transformers): no gradient, so none in the clipped norm
static void test_frozen_norm(void) {
    printf("Gemma 4: the frozen layer_scalar is out of the pruning step's clip norm\n");
    Pruner P;
    memset(&P, 0, sizeof P);
    random_model(&P.m, CFG_G4, ST_F32, 9, 0.3);
    Shape t = shape_of(&P.m.c);
    t.F /= 2;
    masks_init(&P.M, &P.m.c, &t, full_layers_kept(&P.m.c, t.L, default_full_every(&P.m.c)), 3);
    int B = 2, T = 10;
    StepOpts cpu = {DEVICE_CPU, B, T, 0, 0, 0, 0, NULL, 0};
    pruner_alloc(&P, &cpu);
    P.steps = 10, P.lr = 1e-4, P.mask_lr = 1, P.lambda_lr = 1, P.lr_floor = 0.1, P.clip = 1e30;  // no clipping
    int *tok = random_tokens(B * T, P.m.c.V, 4), *tgt = random_tokens(B * T, P.m.c.V, 5);
    StepStats st = prune_step(&P, tok, tgt);
    double frozen = 0, n2 = grad_norm2(P.M.dla, P.M.n) + grad_norm2(P.M.dlam, 2 * NLAM);
    int nfrozen = 0;
    for (int i = 0; i < P.m.tab.n; i++) {
        const PEntry *e = &P.m.tab.e[i];
        for (size_t k = 0; k < e->rows * e->cols; k++) {
            double g = P.m.gw[e->offset + k];
            if (e->frozen) frozen += fabs(g), nfrozen++;
            else n2 += g * g;
        }
    }
    check(nfrozen == P.m.c.L && frozen == 0 && fabs(st.gnorm - sqrt(n2)) <= 1e-6 * sqrt(n2),
          "%d layer_scalar gradients = %g; the step's norm %.6f == the trained parameters' %.6f", nfrozen, frozen,
          st.gnorm, sqrt(n2));
    free(tok), free(tgt);
}

static void test_hard_concrete(void) {
    printf("hard-concrete sampling: P(z > 0) matches the closed form\n");
    // For a fixed log_alpha, the fraction of samples with z > 0 converges to sigmoid(la − β ln(−l/r)); with
    // 200k samples the standard error is <= 0.0012, so 0.005 is > 4 sigma.
    Masks M;
    memset(&M, 0, sizeof M);
    M.n = 200000;
    M.la = (float *)mallocCheck(sizeof(float) * M.n), M.u = (float *)mallocCheck(sizeof(float) * M.n);
    M.z = (float *)mallocCheck(sizeof(float) * M.n), M.dzdla = (float *)mallocCheck(sizeof(float) * M.n);
    Rng r = rng_seed(17);
    double las[] = {-3.0, -1.0, 0.0, 1.5, 4.0}, worst = 0;
    for (int k = 0; k < 5; k++) {
        for (size_t i = 0; i < M.n; i++) M.la[i] = (float)las[k], M.u[i] = (float)(HC_EPS + (1 - 2 * HC_EPS) * rng_uniform(&r));
        masks_from_u(&M);
        double pos = 0;
        for (size_t i = 0; i < M.n; i++) pos += M.z[i] > 0;
        worst = fmax(worst, fabs(pos / M.n - keep_prob(las[k])));
    }
    check(worst < 0.005, "empirical P(z > 0) vs sigmoid(log_alpha - beta ln(-l/r)) at 5 log_alphas: worst |diff| %.4f", worst);
    free(M.la), free(M.u), free(M.z), free(M.dzdla);
}

// --- 5. transformers' logits of a C-sliced model ---------------------------------------------------

// g4 = 0: a Gemma 3 sample from a random bf16-scaled source; g4 = 1: Gemma 4, sliced from the g4_keqv
// fixture to 2 of its 4 layers (the dropped layers' layer_scalar carried, section 7 of prune.c); g4 = 2:
// Gemma 4 E2B (fixture g4_e2b) with half its query heads and 2/3 of its FFN channels
static void sample_model(Model *out, int **tok, int g4) {
    Model src;
    Shape t = {30, 53, 3, 2, 1, 16, 0};
    if (g4 == 1) model_load(&src, "test/fixtures/g4_keqv"), t = (Shape){40, 44, 2, 2, 1, 16, 1};
    else if (g4 == 2) model_load(&src, "test/fixtures/g4_e2b"), t = (Shape){64, 32, 6, 2, 2, 16, 2};
    else random_model(&src, CFG_SAMPLE, ST_BF16, 77, 0.2);  // the source was "bf16": embed scale 6.9375
    // The fixtures were made from this exact model: the layers ranked together (one layer row) and soft values on
    // every row, idle ones too, as prune.c did before the layer rows per attention type and the idle rows.
    Masks M;
    int N = default_full_every(&src.c);
    masks_init(&M, &src.c, &t, -1, 78);
    random_log_alphas(&M, 79);
    float *soft = (float *)mallocCheck(sizeof(float) * M.n);
    for (size_t i = 0; i < M.n; i++) soft[i] = (float)sigmoid(M.la[i] / HC_BETA * HC_MAGIC);
    deterministic_masks(&src.c, &M, soft, soft, N, 0);
    Survivors sv;
    fold_and_slice(&src, NULL, NULL, &M, ST_F32, out, &sv);
    *tok = random_tokens(2 * 12, src.c.V, 80);
    survivors_free(&sv);
    free(soft);
    masks_free(&M);
    model_free(&src);
}

static void write_sample(const char *dir, int g4) {
    Model out;
    int *tok;
    sample_model(&out, &tok, g4);
    model_save(&out, dir, ST_F32);
    char *tp = path_join(dir, "tokens.json");
    char buf[1024], *p = buf;
    p += sprintf(p, "[");
    for (int b = 0; b < 2; b++) {
        p += sprintf(p, b ? ",[" : "[");
        for (int t = 0; t < 12; t++) p += sprintf(p, t ? ",%d" : "%d", tok[b * 12 + t]);
        p += sprintf(p, "]");
    }
    sprintf(p, "]\n");
    write_text_atomic(tp, buf);
    printf("wrote %s (L=%d d=%d H=%d K=%d F=%d, from %s) and %s\n", dir, out.c.L, out.c.d, out.c.H, out.c.K, out.c.F,
           g4 == 2 ? "the g4_e2b fixture" : g4 ? "the g4_keqv fixture" : "a d=48 bf16-scaled source", tp);
    free(tp), free(tok);
    model_free(&out);
}

static void test_transformers_fixture(const char *name, int g4) {
    char fx[128];
    snprintf(fx, sizeof fx, "test/fixtures/c_written/%s/transformers.safetensors", name);
    printf("a C-sliced model in transformers (%s)\n", name);
    if (!file_exists(fx)) {
        if (g4) {  // made on the GPU machine; until then this check cannot run
            printf("  SKIP %s is missing (test/test_prune --write-sample-%s test/ref/c_written/%s, then "
                   "test/ref/make_fixtures.py OUT c_written on the GPU machine)\n", fx, g4 == 2 ? "e2b" : "g4", name);
            return;
        }
        fail("%s is missing (sh test/test_prune.sh --write-sample test/ref/c_written/pruned, then "
             "test/ref/make_fixtures.py on the GPU machine)", fx);
    }
    Model out;
    int *tok;
    sample_model(&out, &tok, g4);
    SFile *f = st_open(fx);
    const STensor *lt = st_find(f, "logits");
    size_t n = (size_t)2 * 12 * out.c.V;
    if (!lt || lt->numel != n) fail("%s: no logits [2, 12, %d]", fx, out.c.V);
    float *ref = (float *)mallocCheck(sizeof(float) * n), *ours = logits_of(&out, tok, 2, 12);
    st_to_f32(lt, ref);
    compare("logits of the sliced sample vs transformers 5.17 (float64)", ours, ref, n, 1e-5, 1e-5);
    free(ref), free(ours), free(tok);
    st_close(f);
    model_free(&out);
}

// --- CLI helpers: a source model and shards; checking a ./prune output --------------------------------

static void write_model(const char *dir, int V) {
    char cfg[1024];
    snprintf(cfg, sizeof cfg,
             "{\"model_type\":\"gemma3_text\",\"vocab_size\":%d,\"hidden_size\":48,\"intermediate_size\":64,"
             "\"num_hidden_layers\":4,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":12,"
             "\"query_pre_attn_scalar\":12,\"sliding_window\":8,"
             "\"layer_types\":[\"sliding_attention\",\"sliding_attention\",\"full_attention\",\"sliding_attention\"]}", V);
    Model m;
    random_model(&m, cfg, ST_F32, 3, 0.1);
    model_save(&m, dir, ST_F32);
    model_free(&m);
    printf("wrote %s\n", dir);
}

// two domains: "a" cycles through short random phrases (learnable), "b" is uniform noise
static void write_shards(const char *dir, int V) {
    Rng r = rng_seed(12);
    const char *names[] = {"a", "b"};
    uint32_t phrases[8][6];
    for (int p = 0; p < 8; p++)
        for (int k = 0; k < 6; k++) phrases[p][k] = 4 + (uint32_t)(rng_next(&r) % (uint64_t)(V - 4));
    for (int d = 0; d < 2; d++)
        for (int split = 0; split < 2; split++) {
            uint64_t n = split ? 4000 : 40000;
            uint32_t *t = (uint32_t *)mallocCheck(sizeof(uint32_t) * n);
            for (uint64_t i = 0; i < n; i++) {
                if (i % 60 == 0) { t[i] = 2; continue; }  // BOS
                t[i] = d == 0 ? phrases[(i / 6) % 8 ^ (uint32_t)(rng_next(&r) % 2)][i % 6] : 4 + (uint32_t)(rng_next(&r) % (uint64_t)(V - 4));
            }
            char sub[512], path[600];
            snprintf(sub, sizeof sub, "%s/%s", dir, names[d]);
            make_dirs(sub);
            snprintf(path, sizeof path, "%s/%s.bin", sub, split ? "val" : "train");
            shard_write(path, (uint32_t)V, t, n, n / 60 + 1);
            free(t);
        }
    printf("wrote %s/{a,b}/{train,val}.bin\n", dir);
}

static const cJSON *need(const cJSON *j, const char *key, const char *src) {
    const cJSON *v = json_get(j, key);
    if (!v) fail("%s: no \"%s\"", src, key);
    return v;
}

static int list_sorted_in(const cJSON *a, int n, int lim) {
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != n) return 0;
    int prev = -1;
    for (const cJSON *e = a->child; e; e = e->next) {
        int v = (int)e->valuedouble;
        if (v <= prev || v < 0 || v >= lim) return 0;
        prev = v;
    }
    return 1;
}

// A ./prune output directory: the report agrees with the written model and obeys the rules, and the
// source model with OUT/masks.safetensors' z as hooks gives OUT's logits.
static void check_run(const char *out_dir) {
    printf("check %s\n", out_dir);
    char *rp = path_join(out_dir, "prune_report.json"), *mp = path_join(out_dir, "masks.safetensors");
    cJSON *rep = json_read(rp);
    const char *source = need(rep, "source", rp)->valuestring;
    Model src, out;
    model_load(&src, source);
    model_load(&out, out_dir);
    const Config *c = &src.c;
    const cJSON *ts = need(rep, "target_shape", rp);
    Shape t = {(int)json_int(ts, "hidden_size", 0, rp), (int)json_int(ts, "intermediate_size", 0, rp),
               (int)json_int(ts, "num_hidden_layers", 0, rp), (int)json_int(ts, "num_attention_heads", 0, rp),
               (int)json_int(ts, "num_key_value_heads", 0, rp), (int)json_int(ts, "head_dim", 0, rp), 0};
    t.Kg = (int)json_int(ts, "num_global_key_value_heads", t.K, rp);  // Gemma 4 only
    Shape got = shape_of(&out.c);
    check(!memcmp(&got, &t, sizeof t), "config.json shape == report target_shape (L=%d d=%d H=%d K=%d F=%d)", got.L,
          got.d, got.H, got.K, got.F);
    const cJSON *layers = need(rep, "layers", rp);
    int ok = list_sorted_in(layers, t.L, c->L) && list_sorted_in(need(rep, "hidden", rp), t.d, c->d);
    const char *per[] = {"kv_heads", "query_slots", "query_heads", "ffn"};
    for (int q = 0; q < 4; q++) {
        const cJSON *a = need(rep, per[q], rp);
        ok &= cJSON_IsArray(a) && cJSON_GetArraySize(a) == t.L;
        int k = 0;
        for (const cJSON *e = a->child; e; e = e->next, k++) {  // per kept layer: Gemma 4's full layers have their own K
            int Ks = layer_K(c, (int)cJSON_GetArrayItem(layers, k)->valuedouble), Kt = layer_K(&out.c, k);
            int ls = (int)cJSON_GetArrayItem(layers, k)->valuedouble, wide = layer_F(c, ls) / c->F;  // E2B: 2F
            int len[] = {Kt, t.H / Kt, t.H, wide * t.F}, lim[] = {Ks, c->H / Ks, c->H, layer_F(c, ls)};
            ok &= list_sorted_in(e, len[q], lim[q]);
        }
    }
    check(ok, "report index lists: one per kept layer, sorted, the target's lengths, inside the source");
    int kf[MAX_LAYERS], k = 0, lt_ok = 1;
    const cJSON *types = need(rep, "layer_types", rp);
    for (const cJSON *e = layers->child; e; e = e->next, k++) {
        kf[k] = c->full[(int)e->valuedouble];
        const cJSON *ty = cJSON_GetArrayItem(types, k);
        lt_ok &= ty && cJSON_IsString(ty) && !strcmp(ty->valuestring, kf[k] ? "full_attention" : "sliding_attention") &&
                 out.c.full[k] == kf[k];
    }
    check(lt_ok, "layer_types follow the kept source layers (report and config.json)");
    int fe = (int)json_int(rep, "full_every", 0, rp), drop = !strcmp(need(rep, "method", rp)->valuestring, "drop-full");
    if (drop) check(count_full(&out.c) == 0 && t.L == c->L - count_full(c), "drop-full: no full layer left, every sliding layer kept");
    else check(constraint_holds(kf, t.L, fe, count_full(c) > 0), "full-attention layer in every %d consecutive kept layers", fe);
    if (c->arch == 4) check(t.L > 0 && kf[t.L - 1], "Gemma 4: the last kept layer is full attention");
    const cJSON *pj = need(rep, "params", rp);
    check(json_num(pj, "non_embedding", 0, rp) == (double)count_params(&out.c, 0) &&
          json_num(pj, "total", 0, rp) == (double)count_params(&out.c, 1), "report params == model.h's count of config.json");
    // the masked model: the weights the masks apply to (sheared: the last checkpoint's trained weights)
    const cJSON *mw = json_get(rep, "masked_weights");
    if (mw) {
        char *wd = path_join(out_dir, mw->valuestring), *wp = path_join(wd, "model.safetensors");
        StateTensor *tw = (StateTensor *)mallocCheck(sizeof(StateTensor) * (size_t)src.tab.n);
        for (int i = 0; i < src.tab.n; i++)
            tw[i] = (StateTensor){src.tab.e[i].name, ST_F32, src.w + src.tab.e[i].offset, src.tab.e[i].rows * src.tab.e[i].cols};
        state_tensors_read(wp, tw, src.tab.n, "not the masked source's weights");
        free(tw);
        free(wd), free(wp);
    }
    Masks M;  // the layout the run wrote: sheared's layer rows per attention type, the baselines' one row
    int sheared = !strcmp(need(rep, "method", rp)->valuestring, "sheared");
    masks_init(&M, c, &t, sheared ? full_layers_kept(c, t.L, fe) : -1, 1);
    char zn[M_N][64];
    StateTensor tz[M_N + 2];
    for (int m = 0; m < M_N; m++) {
        snprintf(zn[m], sizeof zn[m], "z.%s", mask_name[m]);
        tz[m] = (StateTensor){zn[m], ST_F32, M.z + M.s[m].base, M.s[m].n};
    }
    tz[M_N] = (StateTensor){"lambda_1", ST_F32, M.lam, NLAM};  // sheared runs write their multipliers too
    tz[M_N + 1] = (StateTensor){"lambda_2", ST_F32, M.lam + NLAM, NLAM};
    state_tensors_read(mp, tz, sheared ? M_N + 2 : M_N, "not a finished pruning run's masks");
    // rows the target keeps whole have no mask (z = 1, nothing folded) and their multipliers never moved
    int idle_rows = 0, idle_ok = 1, idle_lam = 0;
    for (int m = 0; m < M_N; m++)
        for (int r = 0; r < M.s[m].rows; r++)
            for (int i = 0; M.s[m].idle[r] && i < M.s[m].len[r]; i++) idle_ok &= MROW(&M, M.z, m, r)[i] == 1.0f, idle_rows += !i;
    for (int q = 0; sheared && q < NLAM; q++) idle_lam += !M.terms[q], idle_ok &= M.terms[q] || (M.lam[q] == 0 && M.lam[NLAM + q] == 0);
    check(idle_ok, "idle rows (%d, the target keeps them whole): z = 1%s", idle_rows,
          sheared ? ", and the idle multiplier pairs stayed 0" : "");
    masks_compose(c, &M);
    int B = 2, T = 16, *tok = random_tokens(B * T, c->V, 5);
    masks_attach(&src, &M);
    model_masks_changed(&src);
    float *masked = logits_of(&src, tok, B, T), *sliced = logits_of(&out, tok, B, T);
    if (out.c.scale_dtype == ST_F32)
        compare("logits: OUT's model vs the masked source", sliced, masked, (size_t)B * T * c->V, 1e-5, 1e-5);
    else  // bf16 weights: the file holds rounded values, ~3 significant digits
        compare("logits: OUT's bf16 model vs the masked source (rtol 2e-2)", sliced, masked, (size_t)B * T * c->V, 2e-2, 2e-2);
    masks_detach(&src);
    free(masked), free(sliced), free(tok), free(rp), free(mp);
    masks_free(&M);
    cJSON_Delete(rep);
    model_free(&src), model_free(&out);
}

// --- benchmark: pruning step vs plain training step on the same model ------------------------------

static double cpu_sec(void) {  // CPU time of all threads: steadier than wall time on a shared machine
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void sort_d(double *v, int n) {
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) { double x = v[j]; v[j] = v[j - 1]; v[j - 1] = x; }
}

static void bench(const char *shape, int steps) {
    int S = !strcmp(shape, "S");
    if (!S && strcmp(shape, "M")) fail("--bench S|M");
    char cfg[1024];  // bench_model's shapes: S d256 L6 H4 K1 D64 F1024 T256 B8; M d512 L12 H8 K2 F2048 T256 B4
    snprintf(cfg, sizeof cfg,
             "{\"model_type\":\"gemma3_text\",\"vocab_size\":260,\"hidden_size\":%d,\"intermediate_size\":%d,"
             "\"num_hidden_layers\":%d,\"num_attention_heads\":%d,\"num_key_value_heads\":%d,\"head_dim\":64,"
             "\"query_pre_attn_scalar\":64,\"sliding_window\":%d,\"sliding_window_pattern\":6}",
             S ? 256 : 512, S ? 1024 : 2048, S ? 6 : 12, S ? 4 : 8, S ? 1 : 2, S ? 64 : 128);
    int B = S ? 8 : 4, T = 256, N = B * T;
    if (steps < 1) steps = S ? 8 : 4;
    if (steps > 60) steps = 60;
    Pruner P;
    memset(&P, 0, sizeof P);
    random_model(&P.m, cfg, ST_F32, 1, 0.02);
    Shape t = shape_of(&P.m.c);
    t.d /= 2, t.F /= 2, t.L = t.L * 3 / 4;
    masks_init(&P.M, &P.m.c, &t, full_layers_kept(&P.m.c, t.L, default_full_every(&P.m.c)), 2);
    StepOpts cpu = {DEVICE_CPU, B, T, 0, 0, 0, 0, NULL, 0};
    pruner_alloc(&P, &cpu);
    P.steps = 1000, P.warmup = 100, P.lag_warmup = 200, P.lr = 1e-4, P.mask_lr = 1, P.lambda_lr = 1, P.lr_floor = 0.1, P.clip = 1;
    int *tok = random_tokens(N, 260, 3), *tgt = random_tokens(N, 260, 4);
    double tp[64], tt[64], cp[64], ct[64];
    for (int it = 0; it < steps + 2; it++)
        for (int k = 0; k < 2; k++) {  // the two kinds take turns going first, so order effects cancel
            if ((k ^ it) & 1) {  // plain step: forward, backward, clip, AdamW (what train.c does), masks off
                masks_detach(&P.m);
                double t0 = now_sec(), c0 = cpu_sec();
                model_zero_grad(&P.m);
                model_forward(&P.m, tok, tgt, B, T, 1, NULL);
                model_backward(&P.m);
                float coef = clip_coef(sqrt(grad_norm2(P.m.gw, P.m.tab.total)), 1.0);
                if (coef < 1.0f)
                    for (size_t i = 0; i < P.m.tab.total; i++) P.m.gw[i] *= coef;
                adamw_update(P.m.w, P.m.gw, P.opt.m, P.opt.v, P.m.tab.total, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.0f, it + 1);
                tt[it] = now_sec() - t0, ct[it] = cpu_sec() - c0;
            } else {
                masks_attach(&P.m, &P.M);
                double t0 = now_sec(), c0 = cpu_sec();
                prune_step(&P, tok, tgt);
                tp[it] = now_sec() - t0, cp[it] = cpu_sec() - c0;
            }
        }
    double *all[] = {tt + 2, tp + 2, ct + 2, cp + 2};  // medians after 2 warm-up steps
    for (int k = 0; k < 4; k++) sort_d(all[k], steps);
    double mt = tt[2 + steps / 2], mp = tp[2 + steps / 2], mct = ct[2 + steps / 2], mcp = cp[2 + steps / 2];
    printf("bench %s: plain step %.0f tok/s (%.1f ms) | pruning step %.0f tok/s (%.1f ms) | ratio %.2f | CPU-time ratio %.2f "
           "| median of %d | kernels %s, %d threads\n", shape, N / mt, mt * 1e3, N / mp, mp * 1e3, mt / mp, mct / mcp, steps,
           blas_kernels(), omp_get_max_threads());
    free(tok), free(tgt);
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "--write-sample")) return write_sample(argv[2], 0), 0;
    if (argc >= 3 && !strcmp(argv[1], "--write-sample-g4")) return write_sample(argv[2], 1), 0;
    if (argc >= 3 && !strcmp(argv[1], "--write-sample-e2b")) return write_sample(argv[2], 2), 0;
    if (argc >= 4 && !strcmp(argv[1], "--write-model")) return write_model(argv[2], atoi(argv[3])), 0;
    if (argc >= 4 && !strcmp(argv[1], "--write-shards")) return write_shards(argv[2], atoi(argv[3])), 0;
    if (argc >= 3 && !strcmp(argv[1], "--check-run")) {
        check_run(argv[2]);
        printf("check-run: %s (%d failures)\n", failures ? "FAILED" : "passed", failures);
        return failures != 0;
    }
    if (argc >= 3 && !strcmp(argv[1], "--bench")) return bench(argv[2], argc >= 4 ? atoi(argv[3]) : 0), 0;
    if (argc >= 2) fail("usage: test_prune [--write-sample[-g4] DIR | --write-model DIR V | --write-shards DIR V | --check-run OUT | --bench S|M]");
    printf("test_prune: prune.c (BLIS kernels %s, %d threads)\n", blas_kernels(), omp_get_max_threads());
    test_masked_vs_sliced();
    test_choose_layers();
    test_layer_rows();
    test_grad_accum();
    test_frozen_norm();
    test_hard_concrete();
    test_gradients();
    test_transformers_fixture("pruned", 0);
    test_transformers_fixture("pruned_g4", 1);
    test_transformers_fixture("pruned_e2b", 2);
    printf("test_prune: %s (%d failures)\n", failures ? "FAILED" : "passed", failures);
    return failures != 0;
}
