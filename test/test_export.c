// test/test_export.c — helpers for test/test_export.sh (the export test compares ./profile logits with
// llama.cpp's logits of the exported GGUF; llama.cpp runs in test/llama_logits.c):
//   random CONFIG.json OUTDIR [--std 0.2] [--seed 7] [--bf16] [--zero-ffn] [--edge]
//          a random model of the config (transformers-style names) saved by model_save; norms random too, so
//          a missing +1 or a wrong fold shows; --zero-ffn zeroes every down_proj (no MLP branch, so no GELU);
//          --edge puts quantizer corner cases (zeros, ties, fp16 overflow/underflow) in the embedding
//   zero-ffn MODEL_DIR OUTDIR          the model with every down_proj zeroed (and E2B's per_layer_projection)
//   tokens V B T SEED OUT.json          B random sequences of T token ids in [0, V)
//   compare REF.f32 GOT.f32 V TOL [MIN_TOP1]
//          logits [N, V] of each position: err = max_i |got - ref| / max_i |ref| of that position;
//          passes when the worst position's err <= TOL (and top-1 agreement >= MIN_TOP1 when given;
//          TOL < 0 only reports). Prints worst and mean err, top-1 agreement.
//   cases GEMMA3_IDS.json OUTDIR        the HF tokenizer fixture's cases as OUTDIR/NN.txt + OUTDIR/NN.ids
//                                       (ids_special: with <bos>, as HF's tokenizers encodes them)
//   encode TOKENIZER V TEXTFILE...      one line of ids per file, <bos> first, with the tokenizer fitted to a
//                                       model of V rows (tok_fit: what export writes and train --generate uses)
#include "model.h"
#include "data/tokenizer.h"

static int cmd_random(int argc, char **argv) {
    if (argc < 4) fail("usage: test_export random CONFIG.json OUTDIR [--std S] [--seed N] [--bf16]");
    double std = 0.2;
    uint64_t seed = 7;
    int bf16 = 0, zero_ffn = 0, edge = 0;
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "--std")) std = arg_float(argc, argv, &i);
        else if (!strcmp(argv[i], "--seed")) seed = (uint64_t)arg_int(argc, argv, &i);
        else if (!strcmp(argv[i], "--bf16")) bf16 = 1;
        else if (!strcmp(argv[i], "--zero-ffn")) zero_ffn = 1;
        else if (!strcmp(argv[i], "--edge")) edge = 1;
        else fail("test_export random: unknown flag %s", argv[i]);
    }
    Model m;
    memset(&m, 0, sizeof m);
    config_load(&m.c, argv[2]);
    m.c.scale_dtype = bf16 ? ST_BF16 : ST_F32;
    model_init_layout(&m);
    model_init_random(&m, seed, std);
    Rng r = rng_seed(seed + 1);
    for (int i = 0; i < m.tab.n; i++) {
        const PEntry *e = &m.tab.e[i];
        if (!e->is_norm) continue;
        for (size_t k = 0; k < e->rows; k++)
            m.w[e->offset + k] = (float)(e->frozen ? 0.5 + rng_uniform(&r) : norm_offset(&m.c) == 0 ? 1 + 0.3 * rng_normal(&r)
                                                                                                   : 0.3 * rng_normal(&r));
    }
    for (int l = 0; zero_ffn && l < m.c.L; l++)  // no MLP branch: isolates llama.cpp's fp16 GELU from the rest
        memset(m.p.layer[l].wdown, 0, sizeof(float) * (size_t)m.c.d * m.c.F);
    if (edge) {  // quantizer corner cases in the first embedding rows (the file is for byte checks, not for running)
        float *e = m.p.embed;
        int d = m.c.d;
        for (int j = 0; j < d; j++) {
            e[0 * d + j] = 0.0f;                                   // all-zero blocks: d = 0, id = 0
            e[1 * d + j] = j % 2 ? 0.75f : -0.75f;                 // |max| ties: q4_0 keeps the first
            e[2 * d + j] = 1e-9f * (float)(j - 7);                 // scales that underflow fp16
            e[3 * d + j] = (float)(j % 32) - 16.0f;                // q4_0: x*id + 8.5 lands on .5 exactly
            e[4 * d + j] = j % 3 ? 7e4f : -3e-3f;                  // beyond fp16's range: inf in f16
            e[5 * d + j] = j % 2 ? -0.0f : 65504.0f;               // fp16 max and negative zero
            e[6 * d + j] = (float)j * 1e-5f + 3.0517578125e-05f;   // around fp16's smallest normal
        }
    }
    if (bf16)  // what a bf16 checkpoint holds: round the weights so the f32 copy equals the file
        for (size_t i = 0; i < m.tab.total; i++) m.w[i] = bf16_to_f32(f32_to_bf16(m.w[i]));
    model_save(&m, argv[3], bf16 ? ST_BF16 : ST_F32);
    printf("random model -> %s (%zu parameters)\n", argv[3], m.tab.total);
    model_free(&m);
    return 0;
}

// a copy of a model with every down_proj zeroed (no MLP branch, so llama.cpp's fp16 GELU plays no part)
static int cmd_zero_ffn(int argc, char **argv) {
    if (argc < 4) fail("usage: test_export zero-ffn MODEL_DIR OUTDIR");
    Model m;
    model_load(&m, argv[2]);
    for (int l = 0; l < m.c.L; l++) {  // (E2B: the per-layer input's projection too: its gate is a GELU as well)
        memset(m.p.layer[l].wdown, 0, sizeof(float) * (size_t)m.c.d * layer_F(&m.c, l));
        if (m.c.P) memset(m.p.layer[l].ple_proj, 0, sizeof(float) * (size_t)m.c.d * m.c.P);
    }
    model_save(&m, argv[3], m.c.scale_dtype == ST_BF16 ? ST_BF16 : ST_F32);
    model_free(&m);
    return 0;
}

static int cmd_tokens(int argc, char **argv) {
    if (argc < 7) fail("usage: test_export tokens V B T SEED OUT.json");
    int V = atoi(argv[2]), B = atoi(argv[3]), T = atoi(argv[4]);
    Rng r = rng_seed((uint64_t)atoll(argv[5]));
    cJSON *j = cJSON_CreateArray();
    for (int b = 0; b < B; b++) {
        cJSON *row = cJSON_CreateArray();
        for (int t = 0; t < T; t++) cJSON_AddItemToArray(row, cJSON_CreateNumber((double)(rng_next(&r) % (uint64_t)V)));
        cJSON_AddItemToArray(j, row);
    }
    write_json_atomic(argv[6], j);
    cJSON_Delete(j);
    return 0;
}

static float *read_f32(const char *path, size_t *n) {
    size_t len;
    char *b = read_file(path, &len);
    if (len % 4) fail("%s: %zu bytes is not a float32 array", path, len);
    *n = len / 4;
    return (float *)b;
}

static int cmd_compare(int argc, char **argv) {
    if (argc < 6) fail("usage: test_export compare REF.f32 GOT.f32 V TOL [MIN_TOP1]");
    size_t na, nb;
    float *ref = read_f32(argv[2], &na), *got = read_f32(argv[3], &nb);
    int V = atoi(argv[4]);
    double tol = atof(argv[5]), min_top1 = argc > 6 ? atof(argv[6]) : -1;
    if (na != nb || V <= 0 || na % (size_t)V) fail("compare: %s has %zu floats, %s has %zu (V %d)", argv[2], na, argv[3], nb, V);
    size_t N = na / (size_t)V, agree = 0, worst_pos = 0;
    double worst = 0, mean = 0;
    for (size_t p = 0; p < N; p++) {
        const float *a = ref + p * V, *b = got + p * V;
        double e = 0, mx = 0;
        int ia = 0, ib = 0;
        for (int i = 0; i < V; i++) {
            double d = fabs((double)a[i] - b[i]);
            if (!(d <= e)) e = d;  // NaN counts as worst
            mx = fmax(mx, fabs(a[i]));
            if (a[i] > a[ia]) ia = i;
            if (b[i] > b[ib]) ib = i;
        }
        double rel = mx > 0 ? e / mx : e;
        if (!(rel <= worst)) worst = rel, worst_pos = p;
        mean += rel;
        agree += ia == ib;
    }
    mean /= (double)N;
    double top1 = (double)agree / (double)N;
    int ok = (tol < 0 || worst <= tol) && (min_top1 < 0 || top1 >= min_top1);
    printf("%s %zu positions: worst max|err|/max|ref| %.2e (position %zu), mean %.2e, top-1 agreement %.1f%%",
           tol < 0 && min_top1 < 0 ? "info" : ok ? "ok  " : "FAIL", N, worst, worst_pos, mean, 100 * top1);
    if (tol >= 0) printf(" (bound %.0e", tol);
    if (min_top1 >= 0) printf("%s top-1 >= %.0f%%", tol >= 0 ? "," : " (bound", 100 * min_top1);
    printf("%s\n", tol >= 0 || min_top1 >= 0 ? ")" : "");
    free(ref), free(got);
    return !ok;
}

static int cmd_cases(int argc, char **argv) {
    if (argc < 4) fail("usage: test_export cases GEMMA3_IDS.json OUTDIR");
    cJSON *j = json_read(argv[2]);
    const cJSON *cases = json_get(j, "cases");
    if (!cJSON_IsArray(cases)) fail("%s: no cases array", argv[2]);
    make_dirs(argv[3]);
    int k = 0;
    for (const cJSON *c = cases->child; c; c = c->next, k++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/%02d.txt", argv[3], k);
        write_text_atomic(p, json_str(c, "text", "", argv[2]));
        const cJSON *ids = json_get(c, "ids_special");
        if (!cJSON_IsArray(ids)) fail("%s: case %d has no ids_special", argv[2], k);
        char *s = (char *)mallocCheck(16 * (size_t)cJSON_GetArraySize(ids) + 2), *q = s;
        *q = 0;
        for (const cJSON *e = ids->child; e; e = e->next) q += sprintf(q, e == ids->child ? "%d" : " %d", e->valueint);
        strcat(s, "\n");
        snprintf(p, sizeof p, "%s/%02d.ids", argv[3], k);
        write_text_atomic(p, s);
        free(s);
    }
    printf("%d cases -> %s\n", k, argv[3]);
    cJSON_Delete(j);
    return 0;
}

static int cmd_encode(int argc, char **argv) {
    if (argc < 5) fail("usage: test_export encode TOKENIZER V TEXTFILE...");
    Tokenizer *t = tok_load(argv[2]);
    tok_fit(t, atoi(argv[3]), argv[2]);
    for (int a = 4; a < argc; a++) {
        size_t n;
        char *text = read_file(argv[a], &n);
        uint32_t *ids;
        size_t k = tok_encode(t, text, n, &ids);
        printf("%u", tok_bos(t));
        for (size_t i = 0; i < k; i++) printf(" %u", ids[i]);
        printf("\n");
        free(ids), free(text);
    }
    tok_free(t);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) fail("usage: test_export random|tokens|zero-ffn|compare|cases|encode ...");
    if (!strcmp(argv[1], "random")) return cmd_random(argc, argv);
    if (!strcmp(argv[1], "tokens")) return cmd_tokens(argc, argv);
    if (!strcmp(argv[1], "zero-ffn")) return cmd_zero_ffn(argc, argv);
    if (!strcmp(argv[1], "compare")) return cmd_compare(argc, argv);
    if (!strcmp(argv[1], "cases")) return cmd_cases(argc, argv);
    if (!strcmp(argv[1], "encode")) return cmd_encode(argc, argv);
    fail("test_export: unknown command %s", argv[1]);
}
