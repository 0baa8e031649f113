// profile.c — look inside a model before cutting it (phase 0 of the method). Commands:
//   logits   dump all-position logits for reference checks (a fixed interface)
//   plan     target shapes for a parameter budget (Sheared-style), from a model, a config or a preset
//   memory   the training memory budget per GPU: weights, gradients, optimizer states, activations
//   stats    importance statistics over calibration data, per domain: residual norms, Block Influence,
//            attention entropy per head, FFN sparsity, gradient magnitude per structure (JSON, CSV, PNG)
//   ablate   remove each layer in turn (Δloss per domain); remove every full-attention layer (loss by
//            position, inside vs beyond the sliding window)
//   diff     per-layer, per-matrix relative change between two checkpoints of one shape (CSV, PNG)
// Read top to bottom: shared helpers, sources, plan, memory, calibration data, stats, ablate, diff, eval,
// main. plan and memory need no weights: they are front-ends over shape.h (presets, counter, planner) and
// model.h's activation table.
#include "model.h"
#include "shape.h"
#include "data/mixture.h"
#include "hip/gpu.h"   // memory --device gpu: the GPU path's spec ...
#include "hip/plan.h"  // ... and what gpu_create allocates for it (plain arithmetic, no GPU needed)
#include "plot.h"

// ------------------------------------------------------------------------------------------------
// logits: ./profile logits --model DIR --tokens FILE.json --out FILE.f32
// FILE.json is a JSON array of equal-length token-id arrays. Writes float32 [B, T, V] row-major
// (after softcapping) and prints the mean next-token cross-entropy as "loss X".

static int *read_token_json(const char *path, int V, int *B, int *T) {
    cJSON *j = json_read(path);
    if (!cJSON_IsArray(j) || cJSON_GetArraySize(j) == 0)
        fail("%s: expected a JSON array of token-id arrays, e.g. [[2, 651, 6037]]", path);
    *B = cJSON_GetArraySize(j);
    *T = -1;
    int *tok = NULL, b = 0;
    for (const cJSON *row = j->child; row; row = row->next, b++) {
        if (!cJSON_IsArray(row)) fail("%s: sequence %d is not an array of token ids", path, b);
        int n = cJSON_GetArraySize(row);
        if (*T < 0) {
            if (n == 0) fail("%s: sequence 0 is empty", path);
            *T = n;
            tok = (int *)mallocCheck(sizeof(int) * (size_t)*B * n);
        } else if (n != *T) fail("%s: sequence %d has %d tokens but sequence 0 has %d; all must be equal", path, b, n, *T);
        int t = 0;
        for (const cJSON *e = row->child; e; e = e->next, t++) {
            if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble))
                fail("%s: sequence %d position %d is not an integer token id", path, b, t);
            double v = e->valuedouble;
            if (v < 0 || v >= V)
                fail("%s: token id %.0f (sequence %d position %d) is outside the model's vocabulary [0, %d)", path, v, b,
                     t, V);
            tok[(size_t)b * *T + t] = (int)v;
        }
    }
    cJSON_Delete(j);
    return tok;
}

typedef struct {
    const char *model, *tokens, *out;
} LogitsArgs;
#define LOGITS(f) offsetof(LogitsArgs, f)
static const Flag logits_flags[] = {
    {"model", F_STR, LOGITS(model), NULL, NULL, SAVE_NO, "Hugging Face model directory (config.json + safetensors)"},
    {"tokens", F_STR, LOGITS(tokens), NULL, NULL, SAVE_NO, "JSON array of equal-length token-id arrays"},
    {"out", F_STR, LOGITS(out), NULL, NULL, SAVE_NO, "float32 logits [B, T, V], row-major, after softcapping"},
};
static const Cli logits_cli = {"./profile logits", "usage: ./profile logits --model DIR --tokens FILE.json --out FILE.f32\n",
                               logits_flags, COUNT_OF(logits_flags), NULL, 0,
                               "prints \"loss X\": mean next-token cross-entropy over the B*(T-1) predictions\n", NULL};

static int cmd_logits(int argc, char **argv) {
    LogitsArgs a;
    flags_defaults(&logits_cli, &a);
    flags_parse(&logits_cli, &a, argc, argv, 2, NULL);
    flags_print(&logits_cli, &a, stdout);
    const char *model_dir = a.model, *tokens = a.tokens, *out = a.out;
    Model m;
    model_load(&m, model_dir);
    int B, T;
    int *tok = read_token_json(tokens, m.c.V, &B, &T);
    int *tgt = (int *)mallocCheck(sizeof(int) * (size_t)B * T);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) tgt[b * T + t] = t + 1 < T ? tok[b * T + t + 1] : -1;
    size_t n = (size_t)B * T * m.c.V;
    float *logits = (float *)mallocCheck(sizeof(float) * n);
    float loss = model_forward(&m, tok, tgt, B, T, 0, logits);
    AtomicFile f = atomic_open(out);
    atomic_write(&f, logits, sizeof(float) * n);
    atomic_commit(&f);
    printf("logits [%d, %d, %d] -> %s\n", B, T, m.c.V, out);
    printf("loss %.6f\n", loss);
    free(logits);
    free(tok);
    free(tgt);
    model_free(&m);
    return 0;
}


// ================================================================================================
// Shared helpers: a growing text buffer (CSV files, reports), counts with units, flag values
// ================================================================================================

typedef struct {
    char *p;
    size_t n, cap;
} Buf;

__attribute__((format(printf, 2, 3))) static void bprintf(Buf *b, const char *fmt, ...) {
    for (;;) {
        size_t room = b->cap - b->n;
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p ? b->p + b->n : NULL, room, fmt, ap);
        va_end(ap);
        if (k < 0) fail("bprintf: bad format \"%s\"", fmt);
        if ((size_t)k < room) {
            b->n += (size_t)k;
            return;
        }
        b->cap = 2 * (b->n + (size_t)k + 1024);
        b->p = (char *)realloc(b->p, b->cap);
        if (!b->p) fail("out of memory");
    }
}

// write the buffer to dir/name atomically and free it
static void buf_save(Buf *b, const char *dir, const char *name) {
    char *path = path_join(dir, name);
    write_text_atomic(path, b->p ? b->p : "");
    printf("wrote %s\n", path);
    free(path);
    free(b->p);
    memset(b, 0, sizeof(*b));
}

static void json_save(const cJSON *j, const char *dir, const char *name) {
    char *path = path_join(dir, name);
    write_json_atomic(path, j);
    printf("wrote %s\n", path);
    free(path);
}

// a parameter count: "8B", "1.5B", "300M", "8e9", "8000000000"
static double parse_count(const char *s, const char *flag) {
    char *end;
    double v = strtod(s, &end);
    double mult = 1;
    if (*end == 'K' || *end == 'k') mult = 1e3, end++;
    else if (*end == 'M' || *end == 'm') mult = 1e6, end++;
    else if (*end == 'B' || *end == 'b' || *end == 'G' || *end == 'g') mult = 1e9, end++;
    else if (*end == 'T' || *end == 't') mult = 1e12, end++;
    if (end == s || *end || !(v > 0))
        fail("%s: \"%s\" is not a parameter count; write e.g. 8B, 1.5B, 300M or 8e9", flag, s);
    return v * mult;
}

static int streq(const char *a, const char *b) { return strcmp(a, b) == 0; }
static int is_help(const char *a) { return streq(a, "--help") || streq(a, "-h"); }

// ================================================================================================
// Sources: plan and memory take a model's config.json, a config file or a public preset (shape.h) and need no
// weights, so they answer questions about models nobody here has the weights of.
// ================================================================================================

// --model DIR (its config.json), --config FILE or --preset NAME: exactly one; name: where it came from (160 bytes)
static Config source_config(const char *model_dir, const char *config, const char *preset, const char *cmd, char *name) {
    if (!!model_dir + !!config + !!preset != 1)
        fail("profile %s needs exactly one of --model DIR, --config FILE or --preset NAME; see --help", cmd);
    if (preset) {
        const Preset *p = find_preset(preset);
        snprintf(name, 160, "%s", p->name);
        return preset_config(p);
    }
    char *path = model_dir ? path_join(model_dir, "config.json") : str_dup(config);
    if (!file_exists(path)) fail("%s: no such file; %s", path, model_dir ? "is --model a model directory?" : "check --config");
    Config c;
    config_load(&c, path);
    c.scale_dtype = ST_BF16;  // the released checkpoints' dtype (what a loader rounds sqrt(d) to)
    snprintf(name, 160, "%s", path);
    free(path);
    return c;
}

// one line: the shape of c
static void shape_print(const Config *c, FILE *f) {
    fprintf(f, "Gemma %d  L %d (%d full) d %d H %d K %d D %d F %d", c->arch, c->L, count_full(c), c->d, c->H, c->K, c->D, c->F);
    if (c->arch == 4) fprintf(f, " | full layers K %d D %d%s", c->Kg, c->Dg, c->k_eq_v ? " K=V" : "");
    if (c->P) fprintf(f, " | PLE %d", c->P);
    if (c->n_shared) fprintf(f, " | %d KV-shared layers%s", c->n_shared, c->double_wide ? " (double-wide MLP)" : "");
}

// ================================================================================================
// plan: ./profile plan --model DIR|--config FILE|--preset NAME --params N[,N...]
// shape.h's planner, family style: every cut of the source within the tolerance of each budget, nearest the
// proportions of the public Gemma family at that size; prints the best and the alternatives, writes targets.
// ================================================================================================

static double *read_layer_importance(const char *path, int L, char *metric, size_t metric_cap) {
    char *p = dir_exists(path) ? path_join(path, "stats.json") : str_dup(path);
    cJSON *j = json_read(p);
    const cJSON *a = json_get(j, "layer_importance");
    if (!a || !cJSON_IsArray(a))
        fail("%s: no \"layer_importance\" array; pass a stats.json (profile stats) or ablate.json (profile ablate)", p);
    if (cJSON_GetArraySize(a) != L)
        fail("%s: layer_importance has %d entries but the source model has %d layers; profile the same model", p,
             cJSON_GetArraySize(a), L);
    double *imp = (double *)mallocCheck(sizeof(double) * (size_t)L);
    for (int l = 0; l < L; l++) {
        const cJSON *e = cJSON_GetArrayItem(a, l);
        if (!cJSON_IsNumber(e)) fail("%s: layer_importance[%d] is not a number", p, l);
        imp[l] = e->valuedouble;
    }
    snprintf(metric, metric_cap, "%s", json_str(j, "layer_importance_metric", "unnamed", p));
    cJSON_Delete(j);
    free(p);
    return imp;
}

typedef struct {
    const char *model, *config, *preset, *params, *count, *profile, *out;
    int multiple, full_every, alternatives;
    double tolerance;
} PlanArgs;
#define PLAN(f) offsetof(PlanArgs, f)
static const Flag plan_flags[] = {
    {"model", F_STR, PLAN(model), "", NULL, SAVE_NO, "source model directory (reads its config.json)"},
    {"config", F_STR, PLAN(config), "", NULL, SAVE_NO, "or: source config.json"},
    {"preset", F_STR, PLAN(preset), "", NULL, SAVE_NO, "or: a public Gemma config (below; a unique tail works too: 31b, e2b, 270m)"},
    {"params", F_STR, PLAN(params), NULL, NULL, SAVE_NO, "budgets, comma-separated: 8B,4B,2B,1.5B or 8e9"},
    {"count", F_STR, PLAN(count), "total", "total|effective|non-embedding", SAVE_NO, "what a budget counts: total | effective "
     "(total without the per-layer-embedding table, E2B) | non-embedding"},
    {"profile", F_STR, PLAN(profile), "", NULL, SAVE_NO, "stats.json or ablate.json: drop the least important layers "
     "(default: keep each layer type evenly spaced)"},
    {"multiple", F_INT, PLAN(multiple), "0", ">= 0", SAVE_NO, "round hidden and FFN sizes to this; 0: by width, 128/64/16/8"},
    {"full-every", F_INT, PLAN(full_every), "-1", ">= -1", SAVE_NO, "keep a full-attention layer in every run of this many "
     "layers (0: no constraint); -1: the source's longest sliding run + 1"},
    {"tolerance", F_FLOAT, PLAN(tolerance), "0.02", "(0, 0.5]", SAVE_NO, "largest relative distance from the budget"},
    {"alternatives", F_INT, PLAN(alternatives), "3", ">= 0", SAVE_NO, "other shapes to list per budget"},
    {"out", F_STR, PLAN(out), "", NULL, SAVE_NO, "write target config(s): FILE.json for one budget, or a directory "
     "(target_<budget>.json each)"},
};
static const Cli plan_cli = {"./profile plan", "usage: ./profile plan --model DIR | --config FILE | --preset NAME  --params N[,N...] [flags]\n"
                             "Proposes Sheared-style target shapes for parameter budgets; needs no weights.\n",
                             plan_flags, COUNT_OF(plan_flags), NULL, 0, NULL, NULL};

static void print_presets(void) {
    printf("presets:");
    for (int k = 0; k < NPRESETS; k++) printf(" %s", presets[k].name);
    printf("\n");
}

static const char *or_null(const char *s) { return s && *s ? s : NULL; }

// --params LIST: up to 32 budgets and their labels as written
static int parse_budgets(const char *params, double *budgets, char (*labels)[24]) {
    int nb = 0;
    char *list = str_dup(params);
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        if (nb == 32) fail("--params: at most 32 budgets");
        budgets[nb] = parse_count(tok, "--params");
        snprintf(labels[nb++], 24, "%.23s", tok);
    }
    free(list);
    return nb;
}

static void plan_header(const Config *c, const char *name, const PlanOpts *po, const FamilyFit *fit, const char *metric) {
    Count sn = config_count(c);
    char b1[32], b2[32], b3[32], b4[32];
    printf("plan: source %s\n| ", name);
    shape_print(c, stdout);
    printf("\n| non-embedding %s + embedding %s%s%s = total %s  (model.h's parameter table)\n", fmt_count(sn.nonemb, b1),
           fmt_count(sn.embed, b2), c->P ? " + PLE table " : "", c->P ? fmt_count(sn.ple_table, b4) : "",
           fmt_count(sn.total, b3));
    printf("| budgets count %s parameters; sizes on multiples of %d; tolerance %.1f%%; full layer in every %d; layers: %s%s\n",
           count_names[po->mode], po->mult, 100 * po->tol, po->N,
           po->imp ? "least important dropped first, by " : "evenly spaced per type", po->imp ? metric : "");
    if (has_e2b_extras(c)) printf("| E2B/E4B: only query heads and FFN channels are cut (what prune can cut)\n");
    printf("| family fit over the dense presets: L = %.3g * P^%.3f, d = %.3g * P^%.3f (P = non-embedding)\n",
           exp(fit->aL), fit->bL, exp(fit->ad), fit->bd);
}

// one budget: the plan, its alternatives, the target file; a budget without a plan leaves its reason in why
static void plan_budget(const Config *c, const char *name, double budget, const char *label, const PlanOpts *po,
                        int nalt, const char *out, int many, char *why) {
    char b1[32], b2[32], b3[32];
    Count sn = config_count(c);
    double srcv = count_of(&sn, po->mode);
    if (budget >= srcv) {
        snprintf(why, 300, "budget %.23s is not smaller than the source (%s %s parameters); nothing to prune", label,
                 fmt_count(srcv, b2), count_names[po->mode]);
        printf("%s\n", why);
        return;
    }
    Candidate *best = (Candidate *)mallocCheck(sizeof(Candidate) * (size_t)(nalt + 1));
    int found = plan_search(c, budget, po, best, nalt + 1);
    if (!found) {
        snprintf(why, 300, "budget %.23s: no shape within %.1f%% (try --multiple %d, a larger --tolerance, or --count %s)",
                 label, 100 * po->tol, po->mult / 2 > 0 ? po->mult / 2 : 1,
                 po->mode == COUNT_NONEMB ? "total" : "non-embedding");
        printf("%s\n", why);
    }
    for (int k = 0; k < found; k++) {
        const Candidate *cd = &best[k];
        Config t = target_config(c, &cd->t, cd->take);
        printf("%s %-7s -> L %2d (%d full) d %5d H %2d K %2d", k ? "   alt " : "budget", k ? "" : fmt_count(budget, b1),
               t.L, count_full(&t), t.d, t.H, t.K);
        if (c->arch == 4) printf(" | full K %d D %d", t.Kg, t.Dg);
        printf(" F %5d | non-emb %s emb %s total %s (%+.2f%%) | score %.3f\n", t.F, fmt_count(cd->n.nonemb, b1),
               fmt_count(cd->n.embed, b2), fmt_count(cd->n.total, b3), 100 * cd->err, cd->score);
        if (k == 0) {
            printf("         layers kept:");
            for (int l = 0; l < c->L; l++)
                if (cd->take[l]) printf(" %d%s", l, c->full[l] ? "F" : "");
            printf("\n");
        }
    }
    if (out && found) {
        char file[48], *path;
        snprintf(file, sizeof file, "target_%.23s.json", label);
        path = many ? path_join(out, file) : str_dup(out);
        cJSON *j = plan_json(c, name, &best[0], budget, po->mode);
        write_json_atomic(path, j);
        cJSON_Delete(j);
        printf("         -> %s\n", path);
        free(path);
    }
    free(best);
}

static int cmd_plan(int argc, char **argv) {
    PlanArgs pa;
    flags_defaults(&plan_cli, &pa);
    for (int i = 2; i < argc; i++)
        if (is_help(argv[i])) return flags_usage(&plan_cli), print_presets(), 0;
    flags_parse(&plan_cli, &pa, argc, argv, 2, NULL);
    flags_print(&plan_cli, &pa, stdout);
    const char *model_dir = or_null(pa.model), *config = or_null(pa.config), *preset = or_null(pa.preset);
    const char *params = pa.params, *out = or_null(pa.out), *profile = or_null(pa.profile), *count = pa.count;
    int mult = pa.multiple, N = pa.full_every, nalt = pa.alternatives;
    double tol = pa.tolerance;
    int count_mode = streq(count, "total") ? COUNT_TOTAL : streq(count, "effective") ? COUNT_EFFECTIVE
                     : streq(count, "non-embedding") ? COUNT_NONEMB : -1;
    char name[160];
    Config c = source_config(model_dir, config, preset, "plan", name);
    FamilyFit fit = family_fit();
    PlanOpts po = {count_mode, mult > 0 ? mult : plan_multiple_default(c.d), tol, N >= 0 ? N : default_full_every(&c),
                   NULL, &fit};
    double *imp = NULL;
    char metric[64] = "";
    if (profile) po.imp = imp = read_layer_importance(profile, c.L, metric, sizeof metric);
    double budgets[32];
    char labels[32][24];
    int nb = parse_budgets(params, budgets, labels);
    int many = nb > 1 || (out && !strstr(out, ".json"));
    if (out && many) make_dirs(out);
    plan_header(&c, name, &po, &fit, metric);
    char why[300] = "";
    for (int b = 0; b < nb; b++) plan_budget(&c, name, budgets[b], labels[b], &po, nalt, out, many, why);
    free(imp);
    if (why[0]) fail("profile plan: %s", why);
    return 0;
}

// ================================================================================================
// memory: ./profile memory --config FILE|--preset NAME --optimizer adamw|adamw8|muon --gpus N --gpu-mem GB
// What training needs per GPU, with the arithmetic shown:
//   weights      the compute copy (bf16 by default)
//   master       fp32 master weights when the compute copy is bf16 (--master none: pure bf16 training)
//   gradients    fp32 (bf16 with --master none, or --grads bf16)
//   optimizer    as train.c keeps them. adamw: m and v in fp32 (8 B/param); adamw8: m and v in 8 bits
//                with one fp32 scale each per block of 256 values (model.h's QBLOCK; block-wise 8-bit states
//                after Dettmers et al., arXiv 2110.02861); muon: one fp32 momentum for the 2-D hidden
//                matrices, AdamW's two (8 B) for the embedding and the norms
//   activations  what model.h's backward keeps per layer and token (its activation table), in --act-bytes
//                per value, at the micro-batch --batch x --seq; with --checkpointing only each layer's
//                input plus one layer's worth recomputed during backward; plus the backward scratch
//                (scratch_layout) and the head's working memory (head_work: a 4 MiB logits tile per thread, up to
//                head_keep = 1 GiB of tiles kept between its two passes, logits never whole, a few values per row)
// ZeRO (data parallel over --gpus): stage 1 shards the optimizer states and the master weights, stage 2
// also the gradients, stage 3 also the weights. Not counted: the runtime context, library workspaces,
// communication buffers and allocator fragmentation (add them with --reserve GB).
// ================================================================================================

#define ADAMW8_BLOCK QBLOCK  // model.h's 8-bit AdamW blocks (laid over each ZeRO unit: a few more than P / 256)

typedef struct {
    int opt, master, zero, ckpt, gpus, B, T;
    int weight_bytes, grad_bytes, act_bytes;
    double gpu_mem, reserve;  // GB (1e9 bytes)
} MemOpts;

typedef struct {
    double weights, master, grads, states, acts, scratch, head, reserve, total;  // bytes per GPU
    double act_per_token;  // values kept per token (all layers, or inputs + one layer when checkpointing)
    int fits;
} MemUse;

// Activation values per token: every layer's, the largest layer's (what checkpointing recomputes) and the
// model-level ones (after the last layer; E2B's per-layer inputs). The CPU path keeps what model.h's activation
// table says (fill_in_layer_act_sizes / fill_in_model_act_sizes: what model_alloc_acts allocates). The GPU path
// (hip/gpu.h) keeps its own buffers (bf16, recompute of gate|up): its table plugs in here, selected by the path
// the run trains on, and nowhere else.
typedef struct {
    double layers, max_layer, model;
} ActValues;

static ActValues act_values_per_token(const Config *c) {
    ActValues v = {0, 0, 0};
    size_t sz[NUM_LAYER_ACTS + NUM_MODEL_ACTS];
    for (int l = 0; l < c->L; l++) {  // B = T = 1: every size is proportional to the tokens
        fill_in_layer_act_sizes(sz, c, l, 1, 1);
        double n = 0;
        for (int i = 0; i < NUM_LAYER_ACTS; i++) n += (double)sz[i];
        v.layers += n, v.max_layer = n > v.max_layer ? n : v.max_layer;
    }
    fill_in_model_act_sizes(sz, c, 1, 1);
    for (int i = 0; i < NUM_MODEL_ACTS; i++) v.model += (double)sz[i];
    return v;
}

// parameters in the hidden matrices (model.h's param_is_matrix): Muon's one momentum, AdamW's two for the rest
static double count_matrices(const Config *c) {
    ParamTable t;
    param_table(c, &t);
    double n = 0;
    for (int i = 0; i < t.n; i++)
        if (param_is_matrix(&t.e[i])) n += (double)(t.e[i].rows * t.e[i].cols);
    free(t.e);
    return n;
}

static MemUse mem_use(const Config *c, const MemOpts *o) {
    Count n = config_count(c);
    double P = n.total, Pmat = count_matrices(c), g = o->gpus;
    MemUse u;
    memset(&u, 0, sizeof(u));
    u.weights = P * o->weight_bytes / (o->zero >= 3 ? g : 1);
    u.master = (o->master && o->weight_bytes < 4 ? P * 4 : 0) / (o->zero >= 1 ? g : 1);
    u.grads = P * o->grad_bytes / (o->zero >= 2 ? g : 1);
    double st = o->opt == OPT_ADAMW    ? 8 * P
                : o->opt == OPT_ADAMW8 ? 2 * P + 2 * 4 * ceil(P / ADAMW8_BLOCK)
                                       : 4 * Pmat + 8 * (P - Pmat);
    u.states = st / (o->zero >= 1 ? g : 1);
    ActValues av = act_values_per_token(c);  // checkpointing: each layer's input, one layer recomputed
    u.act_per_token = (o->ckpt ? (double)c->L * c->d + av.max_layer : av.layers) + av.model;
    double N = (double)o->B * o->T;
    u.acts = N * u.act_per_token * o->act_bytes;
    u.scratch = N * (double)scratch_layout(c, 1).total * o->act_bytes;
    u.head = (double)head_work(c, o->B * o->T, 1).bytes;
    u.reserve = o->reserve * 1e9;
    u.total = u.weights + u.master + u.grads + u.states + u.acts + u.scratch + u.head + u.reserve;
    u.fits = u.total <= o->gpu_mem * 1e9;
    return u;
}

static void mem_report(const Config *c, const MemOpts *o, const MemUse *u) {
    Count n = config_count(c);
    double mat = count_matrices(c);
    char b1[32], b2[32], b3[32], b4[32];
    double G = 1e9, g = o->gpus;
    const char *wd = o->weight_bytes == 2 ? "bf16" : "fp32", *gd = o->grad_bytes == 2 ? "bf16" : "fp32";
    printf("parameters %s total (%s non-embedding, %s embedding%s), %s in 2-D hidden matrices\n",
           fmt_count(n.total, b1), fmt_count(n.nonemb, b2), fmt_count(n.embed, b3),
           c->P ? " + PLE table" : "", fmt_count(mat, b4));
#define SHARD(on) ((on) ? g : 1.0)
    printf("  weights     %-6s %s x %d B                 = %8.2f GB / %g = %8.2f GB\n", wd, fmt_count(n.total, b1),
           o->weight_bytes, n.total * o->weight_bytes / G, SHARD(o->zero >= 3), u->weights / G);
    if (u->master > 0)
        printf("  master      fp32   %s x 4 B                 = %8.2f GB / %g = %8.2f GB\n", fmt_count(n.total, b1),
               n.total * 4 / G, SHARD(o->zero >= 1), u->master / G);
    printf("  gradients   %-6s %s x %d B                 = %8.2f GB / %g = %8.2f GB\n", gd, fmt_count(n.total, b1),
           o->grad_bytes, n.total * o->grad_bytes / G, SHARD(o->zero >= 2), u->grads / G);
    if (o->opt == OPT_ADAMW)
        printf("  optimizer   adamw  %s x 8 B (m, v fp32)     = %8.2f GB / %g = %8.2f GB\n", fmt_count(n.total, b1),
               8 * n.total / G, SHARD(o->zero >= 1), u->states / G);
    else if (o->opt == OPT_ADAMW8)
        printf("  optimizer   adamw8 %s x (2 B + 8 B/%d)     = %8.2f GB / %g = %8.2f GB\n", fmt_count(n.total, b1),
               ADAMW8_BLOCK, u->states * SHARD(o->zero >= 1) / G, SHARD(o->zero >= 1), u->states / G);
    else
        printf("  optimizer   muon   %s x 4 B + %s x 8 B    = %8.2f GB / %g = %8.2f GB\n", fmt_count(mat, b1),
               fmt_count(n.total - mat, b2), u->states * SHARD(o->zero >= 1) / G, SHARD(o->zero >= 1),
               u->states / G);
#undef SHARD
    printf("  activations %d x %d tokens x %.0f values x %d B%s = %8.2f GB\n", o->B, o->T, u->act_per_token,
           o->act_bytes, o->ckpt ? " (checkpointing: layer inputs + one layer)" : "", u->acts / G);
    printf("  backward scratch %d x %d tokens x %zu values x %d B           = %8.2f GB\n", o->B, o->T,
           scratch_layout(c, 1).total, o->act_bytes, u->scratch / G);
    printf("  head: logits tile, row states                        = %8.2f GB\n", u->head / G);
    if (u->reserve > 0) printf("  reserve (--reserve)                                  = %8.2f GB\n", u->reserve / G);
    printf("  total per GPU = %.2f GB of %g GB -> %s (%s %.2f GB)\n", u->total / G, o->gpu_mem,
           u->fits ? "fits" : "does NOT fit", u->fits ? "headroom" : "over by", fabs(o->gpu_mem * G - u->total) / G);
    if (u->reserve == 0)
        printf("  (not counted: runtime context, library workspaces, communication buffers, fragmentation: "
               "several GB; add --reserve GB)\n");
}

static cJSON *mem_json(const MemOpts *o, const MemUse *u) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "optimizer", opt_names[o->opt]);
    cJSON_AddNumberToObject(j, "gpus", o->gpus);
    cJSON_AddNumberToObject(j, "zero", o->zero);
    cJSON_AddBoolToObject(j, "checkpointing", o->ckpt);
    cJSON_AddBoolToObject(j, "master_fp32", u->master > 0);
    cJSON_AddNumberToObject(j, "weights", u->weights);
    cJSON_AddNumberToObject(j, "master", u->master);
    cJSON_AddNumberToObject(j, "gradients", u->grads);
    cJSON_AddNumberToObject(j, "optimizer_states", u->states);
    cJSON_AddNumberToObject(j, "activations", u->acts);
    cJSON_AddNumberToObject(j, "activation_values_per_token", u->act_per_token);
    cJSON_AddNumberToObject(j, "backward_scratch", u->scratch);
    cJSON_AddNumberToObject(j, "head_chunk", u->head);
    cJSON_AddNumberToObject(j, "reserve", u->reserve);
    cJSON_AddNumberToObject(j, "total", u->total);
    cJSON_AddBoolToObject(j, "fits", u->fits);
    return j;
}

// --device gpu: what hip/build/train and prune allocate on one GPU (hip/plan.h, the arithmetic gpu_create
// allocates by) for this shape, optimizer, gradient and weight storage and gate|up recompute, and the peak the
// device shows while it steps
static int mem_gpu(const Config *c, const MemOpts *o, int recompute, int checkpoint, int prune, const char *json) {
    const char *why = gpu_unsupported(c);
    if (why) fail("profile memory --device gpu: %s", why);
    if (o->opt == OPT_MUON) fail("profile memory --device gpu: the GPU path runs adamw and adamw8, not muon");
    const char *zw = gpu_zero_refuses(o->zero, o->grad_bytes == 2, !o->master, o->opt);  // what the GPU path runs
    if (zw) fail("profile memory --device gpu: %s", zw);
    if (o->ckpt)
        fail("profile memory --device gpu: --checkpointing is the CPU path's; on the GPU whole-layer checkpointing per "
             "layer is --gpu-checkpoint N");
    if (o->weight_bytes != 2) fail("profile memory --device gpu: the GPU computes with bf16 weights (--dtype bf16)");
    if (recompute < 0 || recompute > c->L) fail("--gpu-recompute %d: expected 0 to %d (the layers)", recompute, c->L);
    if (checkpoint < 0 || checkpoint > c->L) fail("--gpu-checkpoint %d: expected 0 to %d (the layers)", checkpoint, c->L);
    ParamTable tab;
    param_table(c, &tab);
    GpuSpec *s = gpu_spec_from_config(c, &tab, 1.0f);
    s->recompute = recompute, s->checkpoint = checkpoint, s->optimizer = o->opt == OPT_ADAMW8 ? GPU_ADAMW8 : GPU_ADAMW;
    s->grad_bf16 = o->grad_bytes == 2, s->bf16_only = !o->master;
    ZeroPlan z = zero_plan(&tab, c->L, o->zero, 0, o->gpus);  // every rank's shard has the same size
    gpu_spec_zero(s, &z);
    GpuPlan *p = (GpuPlan *)mallocCheck(sizeof(GpuPlan));
    gpu_plan(s, o->B, o->T, p);
    double G = 1073741824.0, n = (double)tab.total;
    size_t peak = p->create + p->states + (prune ? p->masks : 0) + GPU_PLAN_RUNTIME;
    char acts[128];
    snprintf(acts, sizeof acts, "%d x %d tokens, %d of %d layers checkpointed, gate|up recomputed in %d", o->B, o->T,
             checkpoint, c->L, recompute);
    printf("one GPU (hip/plan.h: what gpu_create allocates; GiB = 2^30 bytes):\n");
#define ROW(what, how, bytes) printf("  %-12s %-52s %8.2f GiB (%.2f B/param)\n", what, how, (bytes) / G, (bytes) / n)
    ROW("weights", s->shard_weights ? "bf16 + fp32 master of the shard; bf16 embedding, 2 layers" : s->shard ?
        "bf16 copy + fp32 master of the shard (and the norms)" : s->bf16_only ?
        "bf16 copy; fp32 master of the norms and the embedding" : "bf16 copy + fp32 master", p->params);
    ROW("gradients", s->grad_bf16 ? "bf16 matrices, fp32 the rest" : s->shard_grads ? "fp32 of the shard + the embedding "
        "and 2 layers whole" : "fp32", p->grads);
    ROW("optimizer", s->shard ? (s->optimizer == GPU_ADAMW8 ? "adamw8 of the shard (made at the first update)" :
        "adamw of the shard (made at the first update)") : s->optimizer == GPU_ADAMW8 ? "adamw8 (made at the first update)"
        : "adamw (made at the first update)", p->states);
    if (s->shard) ROW("shard", "ZeRO's piece tables", p->shard_tables);
    ROW("activations", acts, p->acts);
    ROW("stream", "residual stream, head inputs, tables", p->stream + p->tables);
    ROW("scratch", "backward buffers, or the head's logits chunk", p->ws);
    if (prune) ROW("masks", "pruning masks, their gradients, sampling scratch", p->masks);
    ROW("runtime", "BLAS workspaces and handles", GPU_PLAN_RUNTIME);
#undef ROW
    printf("  peak while stepping %.2f GiB = %.2f GB of %g GB -> %s (the device's context, ~0.5 GiB, on top)\n", peak / G,
           peak / 1e9, o->gpu_mem, peak + 0.5 * G <= o->gpu_mem * 1e9 ? "fits" : "does NOT fit");
    if (o->zero)  // hip/gpu.h: ZeRO's reduce-scatters and all-gathers run in place, no second buffer
        printf("  data parallel over %d GPUs (ZeRO %d): each GPU holds its shard of the fp32 master and AdamW's states%s "
               "(%zu floats), the rest whole; NCCL's own buffers are not counted\n", o->gpus, o->zero,
               o->zero >= 3 ? ", gradients and weights (a layer's gathered into, and its gradient written into, one of two "
               "buckets)" : o->zero >= 2 ? " and of the gradients (the backward writes each layer into one of two buckets)"
               : "", s->shard);
    else if (o->gpus > 1)  // hip/gpu.h gpu_step_reduce: NCCL all-reduces in place, no second gradient buffer
        printf("  data parallel over %d GPUs (ZeRO 0): each GPU holds all of the above; the gradients are all-reduced in "
               "place; NCCL's own buffers are not counted\n", o->gpus);
    // the host side of each process (hip/build/train and prune): model.h's Model in fp32 (loads, uploads and
    // checkpoints go through it) and the host Optimizer, whole, or at ZeRO >= 1 the rank's shard of both (the
    // model's pieces: model_load_shard; the moments: optimizer_shard)
    double host_w = 4.0 * (s->shard ? (double)s->shard : n);
    double host_o = o->opt == OPT_ADAMW8 ? 2.0 * (s->shard ? (double)s->shard : n) + 8.0 * (double)p->nblocks
                                         : 8.0 * (s->shard ? (double)s->shard : n);
    printf("  host memory per process: %.2f GiB (the fp32 model%s %.2f + the optimizer's %s %.2f)", (host_w + host_o) / G,
           s->shard ? "'s shard" : "", host_w / G, s->shard ? "shard" : "state", host_o / G);
    if (o->gpus > 1) printf("; %d processes on one host: %.2f GiB", o->gpus, o->gpus * (host_w + host_o) / G);
    printf("\n");
    if (prune && s->shard)  // prune.c fold_and_slice from the checkpoint: one source tensor at a time
        printf("  prune's end: rank 0 slices the checkpoint tensor by tensor (its largest %.2f GiB in fp32), the pruned "
               "model reaches the other ranks by broadcast\n", 4.0 * param_largest(&tab) / G);
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "device", "gpu");
        cJSON_AddStringToObject(j, "optimizer", opt_names[o->opt]);
        cJSON_AddBoolToObject(j, "grads_bf16", s->grad_bf16), cJSON_AddBoolToObject(j, "bf16_only", s->bf16_only);
        cJSON_AddNumberToObject(j, "gpu_recompute", recompute), cJSON_AddNumberToObject(j, "gpu_checkpoint", checkpoint);
        cJSON_AddNumberToObject(j, "gpus", o->gpus), cJSON_AddNumberToObject(j, "zero", o->zero);
        cJSON_AddNumberToObject(j, "weights", (double)p->params), cJSON_AddNumberToObject(j, "gradients", (double)p->grads);
        cJSON_AddNumberToObject(j, "optimizer_states", (double)p->states), cJSON_AddNumberToObject(j, "activations", (double)p->acts);
        cJSON_AddNumberToObject(j, "stream_tables", (double)(p->stream + p->tables)), cJSON_AddNumberToObject(j, "scratch", (double)p->ws);
        cJSON_AddNumberToObject(j, "masks", prune ? (double)p->masks : 0.0);
        cJSON_AddNumberToObject(j, "shard_tables", (double)p->shard_tables), cJSON_AddNumberToObject(j, "shard", (double)s->shard);
        cJSON_AddNumberToObject(j, "gpu_create", (double)p->create);
        cJSON_AddNumberToObject(j, "gpu_peak", (double)peak);
        cJSON_AddNumberToObject(j, "host_per_process", host_w + host_o), cJSON_AddNumberToObject(j, "host_optimizer", host_o);
        cJSON_AddNumberToObject(j, "host_model", host_w);
        write_json_atomic(json, j);
        cJSON_Delete(j);
        printf("wrote %s\n", json);
    }
    gpu_plan_free(p), free(p), gpu_spec_free(s), zero_plan_free(&z), free(tab.e);
    return 0;
}

typedef struct {
    const char *model, *config, *preset, *optimizer, *dtype, *master, *grads, *json;
    int gpus, zero, checkpointing, batch, seq, act_bytes, prune;
    double gpu_mem, reserve;
    StepFlags step;  // --device, --gpu-recompute, --gpu-checkpoint as train and prune take them
} MemArgs;
#define MEM(f) offsetof(MemArgs, f)
static const Flag memory_flags[] = {
    {"model", F_STR, MEM(model), "", NULL, SAVE_NO, "the model: its directory (reads config.json)"},
    {"config", F_STR, MEM(config), "", NULL, SAVE_NO, "or: a config.json"},
    {"preset", F_STR, MEM(preset), "", NULL, SAVE_NO, "or: a public Gemma config (as in profile plan)"},
    {"optimizer", F_STR, MEM(optimizer), "adamw", "adamw|adamw8|muon", SAVE_NO, "adamw | adamw8 | muon"},
    {"gpus", F_INT, MEM(gpus), "1", ">= 1", SAVE_NO, "data-parallel GPUs"},
    {"gpu-mem", F_FLOAT, MEM(gpu_mem), "192", "> 0", SAVE_NO, "memory per GPU, GB (192: one MI300X)"},
    {"zero", F_INT, MEM(zero), "0", "[0, 3]", SAVE_NO, "ZeRO stage: 1 shards optimizer states and master weights, 2 also "
     "gradients, 3 also weights"},
    {"checkpointing", F_BOOL, MEM(checkpointing), "0", NULL, SAVE_NO, "keep only layer inputs; recompute in backward"},
    {"batch", F_INT, MEM(batch), "1", ">= 1", SAVE_NO, "micro-batch per GPU"},
    {"seq", F_INT, MEM(seq), "4096", ">= 1", SAVE_NO, "sequence length"},
    {"dtype", F_STR, MEM(dtype), "bf16", "bf16|f32", SAVE_NO, "the compute copy of the weights: bf16 | f32"},
    {"master", F_STR, MEM(master), "f32", "f32|none", SAVE_NO, "f32 master weights with bf16 compute: f32 | none"},
    {"grads", F_STR, MEM(grads), "", "|f32|bf16", SAVE_NO, "gradients: f32 | bf16; none: f32, bf16 with --master none"},
    {"act-bytes", F_INT, MEM(act_bytes), "2", ">= 1", SAVE_NO, "bytes per activation value"},
    {"reserve", F_FLOAT, MEM(reserve), "0", ">= 0", SAVE_NO, "GB for runtime context, workspaces, fragmentation"},
    {"json", F_STR, MEM(json), "", NULL, SAVE_NO, "also write the figures (bytes per GPU) as JSON"},
    STEP_DEVICE_FLAG(MemArgs, step, "gpu: what hip/build/train and prune allocate on one GPU (hip/plan.h), with "
                     "--optimizer adamw|adamw8, --grads, --master"),
    STEP_LAYER_FLAGS(MemArgs, step),
    {"prune", F_BOOL, MEM(prune), "0", NULL, SAVE_NO, "with --device gpu: add the pruning masks"},
};
static const Renamed memory_renamed[] = {{"weights", "--dtype bf16|f32 (the compute copy's dtype)"}};
static const Cli memory_cli = {"./profile memory", "usage: ./profile memory --model DIR | --config FILE | --preset NAME [flags]\n"
                               "Training memory per GPU (weights, master, gradients, optimizer states, activations) and\n"
                               "whether it fits; then which other options would fit. Needs no weights. GB = 1e9 bytes.\n",
                               memory_flags, COUNT_OF(memory_flags), memory_renamed, COUNT_OF(memory_renamed), NULL, NULL};

// the alternatives: every optimizer x precision x checkpointing, per ZeRO stage, on these GPUs; when nothing fits,
// the fewest GPUs with everything sharded
static void mem_alternatives(const Config *s, const MemOpts *base) {
    MemOpts o = *base;
    printf("\nper-GPU GB for other options on %d GPU(s) of %g GB, micro-batch %d x %d (* = fits):\n", o.gpus, o.gpu_mem,
           o.B, o.T);
    printf("  %-8s %-22s %-6s %10s %10s %10s %10s\n", "optimizer", "precision", "ckpt", "ZeRO 0", "ZeRO 1", "ZeRO 2",
           "ZeRO 3");
    int any = 0;
    for (int op = 0; op < 3; op++)
        for (int ms = 1; ms >= 0; ms--)
            for (int ck = 0; ck < 2; ck++) {
                MemOpts a = o;
                a.opt = op, a.master = ms, a.ckpt = ck, a.weight_bytes = 2, a.grad_bytes = ms ? 4 : 2;
                printf("  %-8s %-22s %-6s", opt_names[op], ms ? "bf16 + fp32 master" : "bf16 only (bf16 grads)",
                       ck ? "on" : "off");
                for (int z = 0; z < 4; z++) {
                    a.zero = z;
                    MemUse v = mem_use(s, &a);
                    printf(" %9.1f%s", v.total / 1e9, v.fits ? "*" : " ");
                    any |= v.fits;
                }
                printf("\n");
            }
    if (!any) {  // the fewest GPUs with everything sharded
        MemOpts a = o;
        a.zero = 3, a.ckpt = 1, a.opt = OPT_ADAMW8, a.master = 0, a.grad_bytes = 2;
        int g = o.gpus;
        for (; g <= 4096; g *= 2) {
            a.gpus = g;
            if (mem_use(s, &a).fits) break;
        }
        printf("nothing fits on %d GPU(s); with adamw8, bf16 only, checkpointing and ZeRO 3 it takes %s%d GPUs\n",
               o.gpus, g > 4096 ? "more than " : "", g > 4096 ? 4096 : g);
    }
}

static int cmd_memory(int argc, char **argv) {
    MemArgs ma;
    flags_defaults(&memory_cli, &ma);
    flags_parse(&memory_cli, &ma, argc, argv, 2, NULL);
    flags_print(&memory_cli, &ma, stdout);
    const char *model_dir = or_null(ma.model), *config = or_null(ma.config), *preset = or_null(ma.preset);
    const char *weights = ma.dtype, *master = ma.master, *grads = or_null(ma.grads), *json = or_null(ma.json);
    MemOpts o = {0, 0, ma.zero, ma.checkpointing, ma.gpus, ma.batch, ma.seq, 0, 0, ma.act_bytes, ma.gpu_mem, ma.reserve};
    o.opt = streq(ma.optimizer, "adamw") ? OPT_ADAMW : streq(ma.optimizer, "adamw8") ? OPT_ADAMW8 : OPT_MUON;
    o.master = streq(master, "f32");
    o.weight_bytes = streq(weights, "bf16") ? 2 : 4;
    o.grad_bytes = grads ? (streq(grads, "bf16") ? 2 : 4) : (o.master || o.weight_bytes == 4 ? 4 : 2);
    if (streq(ma.step.device, "cpu") && (ma.step.recompute || ma.step.checkpoint || ma.prune))
        fail("--gpu-recompute, --gpu-checkpoint and --prune apply to --device gpu only");
    char name[160];
    Config s = source_config(model_dir, config, preset, "memory", name);
    printf("memory: %s\n| ", name);
    shape_print(&s, stdout);
    printf("\n| optimizer %s, %s weights, master %s, %s gradients, ZeRO %d over %d GPU(s) of %g GB, "
           "micro-batch %d x %d, checkpointing %s, %d B per activation\n",
           opt_names[o.opt], weights, o.master && o.weight_bytes == 2 ? "f32" : "none",
           o.grad_bytes == 2 ? "bf16" : "f32", o.zero, o.gpus, o.gpu_mem, o.B, o.T, o.ckpt ? "on" : "off", o.act_bytes);
    if (streq(ma.step.device, "gpu")) return mem_gpu(&s, &o, ma.step.recompute, ma.step.checkpoint, ma.prune, json);
    MemUse u = mem_use(&s, &o);
    mem_report(&s, &o, &u);
    if (json) {
        cJSON *j = mem_json(&o, &u);
        write_json_atomic(json, j);
        cJSON_Delete(j);
        printf("wrote %s\n", json);
    }
    mem_alternatives(&s, &o);
    return 0;
}

// ================================================================================================
// Calibration data: fixed windows of each domain's validation (train, test) shard, taken in order, so
// every command and every run sees the same tokens.
// ================================================================================================

// The windows of T+1 tokens a command reads from one domain, at most `max`: at multiples of T in order, or
// (long_docs) one at the start of each document that holds at least T+1 tokens, so that every position of
// the window lies inside one document (its BOS, id 2 in both tokenizers, first).
typedef struct {
    const Shard *s;
    uint64_t *off, n;
} Windows;

static const Shard *split_shard(const Mixture *mx, const char *split, int d) {
    const Shard *s = streq(split, "train") ? &mx->ds.train[d] : streq(split, "test") ? &mx->ds.test[d] : &mx->ds.val[d];
    if (!s->path) fail("domain %s has no %s split (%s.bin); make the shards with data/mkshards --test-split", mx->ds.name[d],
                       split, split);
    return s;
}

static Windows calib_windows(const Mixture *mx, const char *split, int d, int T, uint64_t max, int long_docs) {
    Windows w = {split_shard(mx, split, d), (uint64_t *)mallocCheck(sizeof(uint64_t) * (max ? max : 1)), 0};
    const Shard *s = w.s;
    if (!long_docs)
        for (; w.n < max && (w.n + 1) * (uint64_t)T < s->n; w.n++) w.off[w.n] = w.n * (uint64_t)T;
    else
        for (uint64_t i = 0; i < s->n && w.n < max; i++) {
            if (shard_tok(s, i) != 2) continue;
            uint64_t e = i + 1;
            while (e < s->n && shard_tok(s, e) != 2) e++;
            if (e - i >= (uint64_t)T + 1) w.off[w.n++] = i;
            i = e - 1;
        }
    return w;
}

// batch i (B windows) of a domain's windows; returns the rows filled (0 once they run out)
static int calib_batch(const Mixture *mx, const Windows *w, int i, int B, int T, int *tok, int *tgt) {
    int rows = 0;
    for (uint64_t k = (uint64_t)i * B; rows < B && k < w->n; rows++, k++)
        window_fill(mx, w->s, w->off[k], T, tok + (size_t)rows * T, tgt + (size_t)rows * T);
    return rows;
}

// default sequence length: twice the sliding window (so half the positions see beyond it), in [64, 1024]
static int seq_default(const Config *c) {
    int T = 2 * c->W;
    T = T < 64 ? 64 : T > 1024 ? 1024 : T;
    return T < c->max_pos ? T : c->max_pos;
}

// Per-token next-token cross-entropy of the last forward (model.h's head, again, keeping each row):
// the mean over valid targets is model_forward's loss. out[n] = NaN where tgt[n] < 0.
static void token_losses(Model *m, const int *tgt, float *out) {
    head_forward_rows(m, tgt, 0, NULL, out);
    for (int n = 0; n < m->B * m->T; n++)
        if (tgt[n] < 0) out[n] = NAN;
}

// ================================================================================================
// stats: ./profile stats --model DIR --data DIR --out DIR [--batches N]
// One pass over each domain's calibration windows (forward + backward) collects, per layer:
//   residual stream norm in and out; Block Influence 1 - cos(x_in, x_out) (ShortGPT; Minitron's depth
//   score); the relative update ||x_out - x_in|| / ||x_in|| of the layer and of each branch;
//   attention entropy per head (recomputed per query row from q, k and the stored log-sum-exp);
//   FFN activity per channel (mean |gelu(gate) * up|: Minitron's activation score) and sparsity;
//   gradient magnitude per layer and per structure (query head, kv head, FFN channel) with the
//   first-order Taylor score |sum w * g| (LLM-Pruner).
// Per domain and over all domains ("all"): stats.json, layers.csv, heads.csv, ffn.csv, PNG pictures.
// ================================================================================================

// entropy in nats of a distribution p[0..n)
static double entropy_nats(const float *p, int n) {
    double h = 0;
    for (int i = 0; i < n; i++)
        if (p[i] > 0) h -= (double)p[i] * log((double)p[i]);
    return h;
}

// Attention entropy of layer l over query rows t >= 1 (row 0 sees one key: entropy 0 by construction):
// per head, adds the sum of H(p) and of H(p) / ln(keys the row may see) — 1 = uniform over its window,
// 0 = all weight on one key — to ent[h] and entn[h]; returns the rows counted per head.
static double attn_entropy(const Model *m, int l, double *ent, double *entn) {
    const Config *c = &m->c;
    const LayerActs *a = &m->act[l], *kv = &m->act[kv_source(c, l)];  // E2B's KV-shared layers read another's k
    int B = m->B, T = m->T, H = c->H, K = layer_K(c, l), D = layer_D(c, l), window = c->full[l] ? 0 : c->W;
    float scale = c->arch == 3 ? (float)(1.0 / sqrt(c->qscalar)) : 1.0f;
    double *part = (double *)callocCheck(sizeof(double) * (size_t)B * H * 2);
#pragma omp parallel
    {
        float *p = (float *)mallocCheck(sizeof(float) * (size_t)T);
#pragma omp for collapse(2) schedule(dynamic)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++) {
                double e = 0, en = 0;
                for (int t = 1; t < T; t++) {
                    int j0 = attn_first_key(t, window), nk = t - j0 + 1;
                    attention_row_probs(p, a->q, kv->k, a->lse, b, h, t, T, H, K, D, window, scale,
                                        (float)c->attn_softcap);
                    double x = entropy_nats(p + j0, nk);
                    e += x;
                    en += nk > 1 ? x / log((double)nk) : 0;
                }
                part[((size_t)b * H + h) * 2] = e, part[((size_t)b * H + h) * 2 + 1] = en;
            }
        free(p);
    }
    for (int b = 0; b < B; b++)  // in a fixed order: the same sums for any thread count
        for (int h = 0; h < H; h++) ent[h] += part[((size_t)b * H + h) * 2], entn[h] += part[((size_t)b * H + h) * 2 + 1];
    free(part);
    return (double)B * (T - 1);
}

// FFN activity of N tokens of h = gelu(gate) * up [N, ld]: per channel adds the sum of |h_i| to abs_sum[i]
// and the number of tokens on which it is near zero, |h_i| <= tau * mean_j |h_j| (that token's mean
// over its ld channels), to near0[i]. A channel near zero on every token is "never active". The first F
// channels are recorded (E2B's double-wide layers have ld = 2F; the tables keep F per layer).
static void ffn_activity(const float *h, int N, int F, int ld, double tau, double *abs_sum, double *near0) {
    double *thr = (double *)mallocCheck(sizeof(double) * (size_t)N);
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        double s = 0;
        for (int i = 0; i < ld; i++) s += fabs(h[(size_t)n * ld + i]);
        thr[n] = tau * s / ld;
    }
#pragma omp parallel for schedule(static)
    for (int i = 0; i < F; i++) {
        double s = 0, z = 0;
        for (int n = 0; n < N; n++) {
            double x = fabs(h[(size_t)n * ld + i]);
            s += x;
            z += x <= thr[n];
        }
        abs_sum[i] += s, near0[i] += z;
    }
    free(thr);
}

// Sums over one domain (or all): activations per token, entropy per query row, gradients at the end.
typedef struct {
    double batches, tokens, loss_sum, loss_n;
    double *res;                      // [L, 4] sums of ||x_in||, ||x_out||, BI, ||dx||/||x_in|| (whole layer)
    double *upd_attn, *upd_mlp;       // [L] sums of the attention / MLP branch's ||dx|| / ||x||
    double *ent, *entn, *erows;       // [L, H], [L, H], [L]
    double *fabs_, *fzero;            // [L, F]
    int has_grad;                     // gradient part (means over batches, not sums):
    double *g_attn, *g_mlp, *g_norm;  // [L] ||g|| of attention (q,k,v,o, q/k norms), MLP, the 4 d-sized norms
    double *g_head, *t_head;          // [L, H] ||g|| and |sum w g| of each query head (q rows, o columns)
    double *g_kv;                     // [L, Kmax] ||g|| of each kv head (k, v rows)
    double *g_ffn, *t_ffn;            // [L, F] of each FFN channel (gate, up rows; down column)
    double *block;
} Acc;

static int kv_max(const Config *c) { return c->K > c->Kg ? c->K : c->Kg; }

static Acc acc_new(const Config *c) {
    size_t L = (size_t)c->L, H = (size_t)c->H, F = (size_t)c->F, Km = (size_t)kv_max(c);
    size_t n = L * 4 + 2 * L + 2 * L * H + L + 2 * L * F + 3 * L + 2 * L * H + L * Km + 2 * L * F;
    Acc a;
    memset(&a, 0, sizeof(a));
    double *p = a.block = (double *)callocCheck(sizeof(double) * n);
#define TAKE(f, k) (a.f = p, p += (k))
    TAKE(res, L * 4); TAKE(upd_attn, L); TAKE(upd_mlp, L); TAKE(ent, L * H); TAKE(entn, L * H); TAKE(erows, L);
    TAKE(fabs_, L * F); TAKE(fzero, L * F); TAKE(g_attn, L); TAKE(g_mlp, L); TAKE(g_norm, L);
    TAKE(g_head, L * H); TAKE(t_head, L * H); TAKE(g_kv, L * Km); TAKE(g_ffn, L * F); TAKE(t_ffn, L * F);
#undef TAKE
    return a;
}

// the activation sums lie first in the block, in this many doubles
static size_t acc_sums(const Config *c) {
    size_t L = (size_t)c->L, H = (size_t)c->H, F = (size_t)c->F;
    return L * 4 + 2 * L + 2 * L * H + L + 2 * L * F;
}

// add src's activation sums into dst (the gradient part is computed from the summed gradient instead)
static void acc_add(Acc *dst, const Acc *src, const Config *c) {
    dst->batches += src->batches, dst->tokens += src->tokens;
    dst->loss_sum += src->loss_sum, dst->loss_n += src->loss_n;
    for (size_t i = 0; i < acc_sums(c); i++) dst->block[i] += src->block[i];
}

// one batch's activations, layer by layer, into a
static void acc_batch(Acc *a, const Model *m, double tau) {
    const Config *c = &m->c;
    int N = m->B * m->T, d = c->d, F = c->F, H = c->H;
    for (int l = 0; l < c->L; l++) {
        const LayerActs *x = &m->act[l];
        const float *xout = l + 1 < c->L ? m->act[l + 1].x : m->xL;
        float ls = c->arch == 4 ? m->p.layer[l].layer_scalar[0] : 1.0f;  // Gemma 4 scales the whole stream
        double t[4] = {0, 0, 0, 0}, u[4] = {0, 0, 0, 0};
        resid_stats(x->x, xout, 1.0f, N, d, a->res + (size_t)l * 4);
        resid_stats(x->x, x->x2, 1.0f, N, d, t);                      // attention branch
        if (c->P) resid_stats(x->x2, x->x3, 1.0f, N, d, u);              // E2B: x3 is the stream after the MLP
        else resid_stats(x->x2, xout, ls != 0 ? 1.0f / ls : 1.0f, N, d, u);  // MLP branch, before layer_scalar
        a->upd_attn[l] += t[3], a->upd_mlp[l] += u[3];
        a->erows[l] += attn_entropy(m, l, a->ent + (size_t)l * H, a->entn + (size_t)l * H);
        ffn_activity(x->h, N, F, layer_F(c, l), tau, a->fabs_ + (size_t)l * F, a->fzero + (size_t)l * F);
    }
    a->tokens += N;
    a->batches++;
}

static double sumsq_f(const float *x, size_t n) { return dot_det(x, x, n); }

// Gradient magnitude per layer and structure from g (model.h's layout) times scale (1 / batches: the
// mean gradient). A query head is its D rows of q_proj and D columns of o_proj; a kv head its rows of
// k_proj and v_proj; an FFN channel its rows of gate_proj and up_proj and its column of down_proj.
static void grad_stats(Acc *a, const Model *m, const float *g, double scale) {
    const Config *c = &m->c;
    Params gp = params_carve(c, &m->tab, (float *)g);
    size_t d = (size_t)c->d, H = (size_t)c->H, F = (size_t)c->F, Km = (size_t)kv_max(c);
    for (int l = 0; l < c->L; l++) {
        const LayerParams *G = &gp.layer[l], *W = &m->p.layer[l];
        size_t D = (size_t)layer_D(c, l), K = (size_t)layer_K(c, l), Fl = (size_t)layer_F(c, l);
        int own = !layer_shared(c, l), hasv = own && layer_has_v(c, l);  // E2B's KV-shared layers: no k/v of their own
        double att = sumsq_f(G->wq, H * D * d) + (own ? sumsq_f(G->wk, K * D * d) + sumsq_f(G->k_norm, D) : 0) +
                     (hasv ? sumsq_f(G->wv, K * D * d) : 0) + sumsq_f(G->wo, d * H * D) + sumsq_f(G->q_norm, D);
        double mlp = sumsq_f(G->wgate, Fl * d) + sumsq_f(G->wup, Fl * d) + sumsq_f(G->wdown, d * Fl);
        double nrm = sumsq_f(G->in_norm, d) + sumsq_f(G->post_attn_norm, d) + sumsq_f(G->pre_ffn_norm, d) +
                     sumsq_f(G->post_ffn_norm, d);
        a->g_attn[l] = sqrt(att) * scale, a->g_mlp[l] = sqrt(mlp) * scale, a->g_norm[l] = sqrt(nrm) * scale;
#pragma omp parallel for schedule(static)
        for (size_t h = 0; h < H; h++) {
            double s = 0, t = 0;
            for (size_t i = h * D * d; i < (h + 1) * D * d; i++) s += (double)G->wq[i] * G->wq[i], t += (double)W->wq[i] * G->wq[i];
            for (size_t r = 0; r < d; r++)
                for (size_t i = h * D; i < (h + 1) * D; i++) {
                    double gv = G->wo[r * H * D + i];
                    s += gv * gv, t += gv * W->wo[r * H * D + i];
                }
            a->g_head[l * H + h] = sqrt(s) * scale, a->t_head[l * H + h] = fabs(t) * scale;
        }
        for (size_t k = 0; own && k < K; k++) {
            double s = 0;
            for (size_t i = k * D * d; i < (k + 1) * D * d; i++)
                s += (double)G->wk[i] * G->wk[i] + (hasv ? (double)G->wv[i] * G->wv[i] : 0);
            a->g_kv[l * Km + k] = sqrt(s) * scale;
        }
        for (size_t k = own ? K : 0; k < Km; k++) a->g_kv[l * Km + k] = NAN;  // fewer kv heads, or shared ones
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < F; i++) {
            double s = 0, t = 0;
            for (size_t j = 0; j < d; j++) {
                double gg = G->wgate[i * d + j], gu = G->wup[i * d + j], gd = G->wdown[j * Fl + i];
                s += gg * gg + gu * gu + gd * gd;
                t += gg * W->wgate[i * d + j] + gu * W->wup[i * d + j] + gd * W->wdown[j * Fl + i];
            }
            a->g_ffn[l * F + i] = sqrt(s) * scale, a->t_ffn[l * F + i] = fabs(t) * scale;
        }
    }
    a->has_grad = 1;
    free(gp.layer);
}

// --- derived values (means) for output ------------------------------------------------------------

static double acc_layer(const Acc *a, int l, int k) { return a->tokens ? a->res[l * 4 + k] / a->tokens : NAN; }
static double acc_head_ent(const Acc *a, const Config *c, int l, int h, int norm) {
    return a->erows[l] ? (norm ? a->entn : a->ent)[(size_t)l * c->H + h] / a->erows[l] : NAN;
}
static double acc_layer_ent(const Acc *a, const Config *c, int l, int norm) {
    double s = 0;
    for (int h = 0; h < c->H; h++) s += acc_head_ent(a, c, l, h, norm);
    return s / c->H;
}
static double acc_near0(const Acc *a, const Config *c, int l) {  // fraction of (token, channel) near zero
    double s = 0;
    for (int i = 0; i < c->F; i++) s += a->fzero[(size_t)l * c->F + i];
    return a->tokens ? s / (a->tokens * c->F) : NAN;
}
static int acc_never(const Acc *a, const Config *c, int l) {  // channels near zero on every token
    int n = 0;
    for (int i = 0; i < c->F; i++) n += a->tokens > 0 && a->fzero[(size_t)l * c->F + i] == a->tokens;
    return n;
}

static const char *ltype(const Config *c, int l) { return c->full[l] ? "full" : "sliding"; }

static cJSON *json_row(const double *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, v[i] == v[i] ? cJSON_CreateNumber(v[i]) : cJSON_CreateNull());
    return a;
}

static cJSON *acc_json(const Acc *a, const Config *c) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "loss", a->loss_n ? a->loss_sum / a->loss_n : 0);
    cJSON_AddNumberToObject(j, "tokens", a->tokens);
    cJSON_AddNumberToObject(j, "batches", a->batches);
    cJSON *ls = cJSON_AddArrayToObject(j, "layers");
    for (int l = 0; l < c->L; l++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "layer", l);
        cJSON_AddStringToObject(e, "type", ltype(c, l));
        cJSON_AddNumberToObject(e, "resid_in", acc_layer(a, l, 0));
        cJSON_AddNumberToObject(e, "resid_out", acc_layer(a, l, 1));
        cJSON_AddNumberToObject(e, "block_influence", acc_layer(a, l, 2));
        cJSON_AddNumberToObject(e, "rel_update", acc_layer(a, l, 3));
        cJSON_AddNumberToObject(e, "attn_update", a->upd_attn[l] / a->tokens);
        cJSON_AddNumberToObject(e, "mlp_update", a->upd_mlp[l] / a->tokens);
        cJSON_AddNumberToObject(e, "entropy", acc_layer_ent(a, c, l, 0));
        cJSON_AddNumberToObject(e, "entropy_norm", acc_layer_ent(a, c, l, 1));
        cJSON_AddNumberToObject(e, "ffn_near_zero", acc_near0(a, c, l));
        cJSON_AddNumberToObject(e, "ffn_never_active", acc_never(a, c, l));
        if (a->has_grad) {
            cJSON_AddNumberToObject(e, "grad_attn", a->g_attn[l]);
            cJSON_AddNumberToObject(e, "grad_mlp", a->g_mlp[l]);
            cJSON_AddNumberToObject(e, "grad_norms", a->g_norm[l]);
        }
        cJSON_AddItemToArray(ls, e);
    }
    double *row = (double *)mallocCheck(sizeof(double) * (size_t)c->H);
    const char *keys[4] = {"head_entropy", "head_entropy_norm", "head_grad", "head_taylor"};
    for (int k = 0; k < (a->has_grad ? 4 : 2); k++) {
        cJSON *m = cJSON_AddArrayToObject(j, keys[k]);
        for (int l = 0; l < c->L; l++) {
            for (int h = 0; h < c->H; h++)
                row[h] = k < 2 ? acc_head_ent(a, c, l, h, k) : (k == 2 ? a->g_head : a->t_head)[(size_t)l * c->H + h];
            cJSON_AddItemToArray(m, json_row(row, c->H));
        }
    }
    free(row);
    return j;
}

static void acc_csv(Buf *layers, Buf *heads, const Acc *a, const Config *c, const char *dom) {
    int Km = kv_max(c);
    for (int l = 0; l < c->L; l++) {
        bprintf(layers, "%s,%d,%s,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%d", dom, l, ltype(c, l),
                a->loss_n ? a->loss_sum / a->loss_n : 0, acc_layer(a, l, 0), acc_layer(a, l, 1), acc_layer(a, l, 2),
                acc_layer(a, l, 3), a->upd_attn[l] / a->tokens, a->upd_mlp[l] / a->tokens, acc_layer_ent(a, c, l, 0),
                acc_layer_ent(a, c, l, 1), acc_near0(a, c, l), acc_never(a, c, l));
        if (a->has_grad) bprintf(layers, ",%.6g,%.6g,%.6g\n", a->g_attn[l], a->g_mlp[l], a->g_norm[l]);
        else bprintf(layers, ",,,\n");
        int G = c->H / layer_K(c, l);
        for (int h = 0; h < c->H; h++) {
            bprintf(heads, "%s,%d,%s,%d,%d,%.6g,%.6g", dom, l, ltype(c, l), h, h / G, acc_head_ent(a, c, l, h, 0),
                    acc_head_ent(a, c, l, h, 1));
            if (a->has_grad)
                bprintf(heads, ",%.6g,%.6g,%.6g\n", a->g_head[(size_t)l * c->H + h], a->t_head[(size_t)l * c->H + h],
                        a->g_kv[(size_t)l * Km + h / G]);
            else bprintf(heads, ",,,\n");
        }
    }
}

// --- pictures -------------------------------------------------------------------------------------

// a per-layer line chart: x = layer index, the full-attention layers shaded
static void plot_layer_lines(const char *dir, const char *name, const char *title, const char *ylabel,
                             const Config *c, const double *const *ys, const char *const *labels, int ns, int logy) {
    double *x = (double *)mallocCheck(sizeof(double) * (size_t)c->L * 2), *fl = x + c->L;
    int nf = 0;
    for (int l = 0; l < c->L; l++) {
        x[l] = l;
        if (c->full[l]) fl[nf++] = l;
    }
    Series s[8];
    for (int k = 0; k < ns; k++) s[k].label = labels[k], s[k].x = x, s[k].y = ys[k], s[k].n = c->L;
    LinesOpts o = {0};
    o.logy = logy, o.integer_x = 1, o.bands = fl, o.nbands = nf;
    char *path = path_join(dir, name);
    plot_lines_ex(path, title, "layer", ylabel, s, ns, &o);
    printf("wrote %s\n", path);
    free(path);
    free(x);
}

static void plot_layer_bars(const char *dir, const char *name, const char *title, const char *ylabel, const Config *c,
                            const double *v, const char *note) {
    BarsOpts o = {NULL, NULL, "layer", note};
    char *path = path_join(dir, name);
    plot_bars_ex(path, title, ylabel, v, c->L, NULL, c->full, &o);
    printf("wrote %s\n", path);
    free(path);
}

static void plot_layer_heatmap(const char *dir, const char *name, const char *title, const char *xlabel,
                               const Config *c, const float *v, int cols, float vmin, float vmax,
                               const char *const *col_labels, const char *cbar, const char *note) {
    HeatmapOpts o = {col_labels, cbar, NULL, NULL, note};
    char *path = path_join(dir, name);
    plot_heatmap_ex(path, title, xlabel, "layer", v, c->L, cols, vmin, vmax, NULL, c->full, &o);
    printf("wrote %s\n", path);
    free(path);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void stats_pictures(const char *dir, const Config *c, const Acc *all, const Acc *dom, char **names, int k) {
    int L = c->L, H = c->H, F = c->F;
    double *v = (double *)mallocCheck(sizeof(double) * (size_t)L * 4);
    int cols = H > 32 ? H : 32;
    cols = k > cols ? k : cols;
    float *hm = (float *)mallocCheck(sizeof(float) * (size_t)L * cols);
    // attention entropy per head, normalised
    for (int l = 0; l < L; l++)
        for (int h = 0; h < H; h++) hm[l * H + h] = (float)acc_head_ent(all, c, l, h, 1);
    plot_layer_heatmap(dir, "entropy_heads.png", "Attention entropy per head", "query head", c, hm, H, 0, 1, NULL,
                       "entropy / ln(keys seen)", "1 = uniform over the keys a query may see, 0 = one key");
    // FFN channel activity: each layer's channels sorted by mean |h|, in 32 percentile bins, log10 of
    // the bin's mean over the layer's mean (dead channels show at the floor, -3)
    const int NB = 32;
    double *act = (double *)mallocCheck(sizeof(double) * (size_t)F);
    for (int l = 0; l < L; l++) {
        double mean = 0;
        for (int i = 0; i < F; i++) mean += (act[i] = all->fabs_[(size_t)l * F + i] / all->tokens);
        mean /= F;
        qsort(act, (size_t)F, sizeof(double), cmp_double);
        for (int b = 0; b < NB; b++) {
            int i0 = (int)((long)b * F / NB), i1 = (int)((long)(b + 1) * F / NB);
            double s = 0;
            for (int i = i0; i < i1; i++) s += act[i];
            double r = i1 > i0 && mean > 0 ? s / (i1 - i0) / mean : NAN;
            hm[l * NB + b] = r != r ? NAN : (float)(r > 1e-3 ? log10(r) : -3);
        }
    }
    const char *pct[32];
    char pbuf[32][8];
    for (int b = 0; b < NB; b++) snprintf(pbuf[b], 8, "%d", (int)lround(100.0 * b / NB)), pct[b] = pbuf[b];
    plot_layer_heatmap(dir, "ffn_activity.png", "FFN channel activity, channels sorted per layer",
                       "channel percentile (least active left)", c, hm, NB, -3, 1, pct, "log10 mean|h| / layer mean",
                       "mean |gelu(gate) * up| per channel over the calibration tokens");
    free(act);
    // per-layer bars and lines
    int never = 0;
    for (int l = 0; l < L; l++) v[l] = acc_near0(all, c, l), never += acc_never(all, c, l);
    char note[160];
    snprintf(note, sizeof note, "fraction of (token, channel) with |h| <= tau * token mean; never-active channels: %d of %d",
             never, L * F);
    plot_layer_bars(dir, "ffn_sparsity.png", "FFN sparsity per layer", "near-zero fraction", c, v, note);
    for (int l = 0; l < L; l++) v[l] = acc_layer(all, l, 2);
    plot_layer_bars(dir, "block_influence.png", "Block Influence per layer: 1 - cos(x_in, x_out)", "BI", c, v,
                    "low = the layer barely turns the residual stream (ShortGPT drops the lowest)");
    double *ys[3] = {v, v + L, v + 2 * L};
    for (int l = 0; l < L; l++) v[l] = acc_layer(all, l, 3), v[L + l] = all->upd_attn[l] / all->tokens,
                                v[2 * L + l] = all->upd_mlp[l] / all->tokens;
    const char *ul[3] = {"whole layer", "attention branch", "MLP branch"};
    plot_layer_lines(dir, "updates.png", "Relative update per layer ||x_out - x_in|| / ||x_in||", "relative update", c,
                     (const double *const *)ys, ul, 3, 0);
    for (int l = 0; l < L; l++) v[l] = acc_layer(all, l, 0), v[L + l] = acc_layer(all, l, 1);
    const char *nl[2] = {"||x_in||", "||x_out||"};
    plot_layer_lines(dir, "residual_norm.png", "Residual stream norm per layer (mean over tokens)", "L2 norm", c,
                     (const double *const *)ys, nl, 2, 1);
    if (all->has_grad) {
        for (int l = 0; l < L; l++) v[l] = all->g_attn[l], v[L + l] = all->g_mlp[l], v[2 * L + l] = all->g_norm[l];
        const char *gl[3] = {"attention weights", "MLP weights", "norms"};
        plot_layer_lines(dir, "grad_layers.png", "Gradient norm per layer (mean gradient over the calibration set)",
                         "||grad||", c, (const double *const *)ys, gl, 3, 1);
        for (int l = 0; l < L; l++)
            for (int h = 0; h < H; h++) hm[l * H + h] = (float)all->g_head[(size_t)l * H + h];
        plot_layer_heatmap(dir, "grad_heads.png", "Gradient norm per query head (q rows + o columns)", "query head", c,
                           hm, H, 0, 0, NULL, "||grad||", NULL);
    }
    if (k > 1) {  // Block Influence per domain: which layers matter for which data
        for (int l = 0; l < L; l++)
            for (int d = 0; d < k; d++) hm[l * k + d] = (float)acc_layer(&dom[d], l, 2);
        plot_layer_heatmap(dir, "domains_bi.png", "Block Influence per layer and domain", "domain", c, hm, k, 0, 0,
                           (const char *const *)names, "BI", NULL);
    }
    free(hm);
    free(v);
}

// one line: the layers ordered by v, smallest first, full-attention layers marked F
static void print_layer_order(const char *title, const Config *c, const double *v, const char *fmt) {
    int ord[MAX_LAYERS];
    for (int l = 0; l < c->L; l++) ord[l] = l;
    for (int a = 1; a < c->L; a++)  // insertion sort: L is small
        for (int b = a; b > 0 && v[ord[b]] < v[ord[b - 1]]; b--) {
            int t = ord[b];
            ord[b] = ord[b - 1], ord[b - 1] = t;
        }
    printf("%s", title);
    for (int l = 0; l < c->L; l++) {
        printf(" %d%s", ord[l], c->full[ord[l]] ? "F" : "");
        printf(fmt, v[ord[l]]);
    }
    printf("\n");
}

// settings shared by stats and ablate
typedef struct {
    const char *model, *data, *out, *split;
    int batches, B, T;
    double tau;  // stats only
    int no_grad;
    int long_docs, no_layers;  // ablate only
    const char *preset, *config, *device;  // stats only
} CalibArgs;
#define CAL(f) offsetof(CalibArgs, f)
#define CALIB_FLAGS(nbatch, need_model)                                                                                 \
    {"model", F_STR, CAL(model), need_model ? NULL : "", NULL, SAVE_NO, "Hugging Face model directory"},               \
    {"data", F_STR, CAL(data), "data/shards", NULL, SAVE_NO, "token shards, one subdirectory per domain"},              \
    {"out", F_STR, CAL(out), NULL, NULL, SAVE_NO, "where the JSON, CSV and PNG files go"},                             \
    {"split", F_STR, CAL(split), "val", "val|train|test", SAVE_NO, "val | train | test: which shard the windows come from"}, \
    {"calib-batches", F_INT, CAL(batches), nbatch, ">= 1", SAVE_NO, "batches per domain"},                            \
    {"batch", F_INT, CAL(B), "4", ">= 1", SAVE_NO, "sequences per batch"},                                              \
    {"seq", F_INT, CAL(T), "0", ">= 0", SAVE_NO, "tokens per sequence; 0: 2 x sliding_window, within [64, 1024]"}
static const Flag stats_flags[] = {
    CALIB_FLAGS("4", 0),
    {"preset", F_STR, CAL(preset), "", NULL, SAVE_NO, "or: a public Gemma config with random weights (as in profile plan; "
     "memory and speed, not meaning)"},
    {"config", F_STR, CAL(config), "", NULL, SAVE_NO, "or: a config.json with random weights"},
    {"device", F_STR, CAL(device), "cpu", "cpu|gpu", SAVE_NO, "cpu | gpu: the forward on the GPU in bf16, no gradient "
     "statistics (the build of `make gpu`: hip/build/profile); weights go to the device tensor by tensor"},
    {"tau", F_FLOAT, CAL(tau), "0.1", ">= 0", SAVE_NO, "a channel is near zero on a token when |h| <= tau x that token's "
     "mean |h| over channels"},
    {"no-grad", F_BOOL, CAL(no_grad), "0", NULL, SAVE_NO, "skip the backward pass (no gradient statistics; ~3x faster)"},
};
static const Flag ablate_flags[] = {
    CALIB_FLAGS("2", 1),
    {"long-docs", F_BOOL, CAL(long_docs), "0", NULL, SAVE_NO, "one window at the start of each document of >= --seq + 1 "
     "tokens (domains with none are left out)"},
    {"no-layers", F_BOOL, CAL(no_layers), "0", NULL, SAVE_NO, "skip the one-layer-at-a-time part: positions only"},
};
static const Renamed calib_renamed[] = {{"batches", "--calib-batches N"}};
static const Cli stats_cli = {"./profile stats", "usage: ./profile stats --model DIR --data DIR --out DIR [flags]\n"
                              "Importance statistics per domain and over all: residual norms, Block Influence, attention\n"
                              "entropy per head, FFN activity and sparsity, gradient magnitude per structure.\n"
                              "Writes stats.json, layers.csv, heads.csv, ffn.csv and PNG pictures into --out.\n",
                              stats_flags, COUNT_OF(stats_flags), calib_renamed, COUNT_OF(calib_renamed), NULL, NULL};
static const Cli ablate_cli = {"./profile ablate", "usage: ./profile ablate --model DIR --data DIR --out DIR [flags]\n"
                               "Removes each layer in turn (Δloss per domain), then every full-attention layer at once\n"
                               "(loss by position: inside vs beyond the sliding window). Writes ablate.json,\n"
                               "ablate_layers.csv, ablate_positions.csv and PNG pictures into --out.\n",
                               ablate_flags, COUNT_OF(ablate_flags), calib_renamed, COUNT_OF(calib_renamed), NULL, NULL};

// --model DIR, or --preset / --config with random weights (model.h's init, seed 1): config and table; the weights
// on the host unless `host` is 0 (m->w NULL: the caller takes them from ck, or draws them)
static Checkpoint calib_model(CalibArgs *a, Model *m, int host) {
    Checkpoint ck = {0, NULL};
    const char *preset = or_null(a->preset), *config = or_null(a->config), *dir = or_null(a->model);
    if (dir && !preset && !config) {
        if (host) model_load(m, dir);
        else ck = model_open(m, dir);
        return ck;
    }
    static char name[160];  // (kept for the run)
    memset(m, 0, sizeof *m);
    m->c = source_config(dir, config, preset, "stats", name);
    param_table(&m->c, &m->tab);
    m->embed_scale = embed_scale_for(m->c.d, m->c.scale_dtype);
    if (host) {
        m->w = (float *)callocCheck(sizeof(float) * m->tab.total);
        m->p = params_carve(&m->c, &m->tab, m->w);
        model_init_random(m, 1, 0.02);
    }
    a->model = name;
    model_masks_changed(m);
    return ck;
}

// the data for the model, the settings checked and printed
static void calib_data(CalibArgs *a, const char *cmd, Model *m, Mixture *mx) {
    if (a->T == 0) a->T = seq_default(&m->c);
    int random = or_null(a->preset) || or_null(a->config);  // random weights: any tokenizer's shards whose ids fit
    *mx = mixture_open(a->data, random ? 0 : m->c.V, 0);
    mx->V = m->c.V;
    make_dirs(a->out);
    printf("profile %s: model %s, data %s (%d domains, %s split), %d batches x %d x %d tokens per domain, %d threads, "
           "BLAS %s\n",
           cmd, a->model, a->data, mx->k, a->split, a->batches, a->B, a->T, omp_get_max_threads(), blas_kernels());
    config_print(&m->c, stdout);
}
static void calib_open(CalibArgs *a, const char *cmd, Model *m, Mixture *mx) {
    calib_model(a, m, 1);
    calib_data(a, cmd, m, mx);
}

// one greppable progress line; amount / elapsed is the throughput, in unit ("tok/s", "MB/s")
static void step_line(int step, int total, double t0, double amount, const char *unit, const char *what) {
    double el = now_sec() - t0;
    char b1[32], b2[32];
    printf("step %d/%d | %s | %.0f %s | elapsed %s | eta %s\n", step, total, what, amount / (el > 0 ? el : 1e-9), unit,
           fmt_duration(el, b1), fmt_duration(el / step * (total - step), b2));
    fflush(stdout);
}


#ifdef USE_GPU
// --device gpu: one forward-only model on the GPU (bf16 matrices, one layer's buffers: hip/gpu.h), its weights sent
// tensor by tensor from the checkpoint's mapped files (the host never holds the model) or drawn there; the
// statistics made on the device (hip/stats.h), only the per-layer sums fetched
typedef struct {
    GpuModel *g;
    GpuSpec *s;
    const ParamTable *tab;
} GpuFwd;
static void gpu_fwd_put(void *ctx, int i, const float *buf) {
    GpuFwd *G = (GpuFwd *)ctx;
    const PEntry *e = &G->tab->e[i];
    gpu_copy(G->g, GPU_WEIGHTS, e->offset, e->rows * e->cols, (float *)buf, 1);
}
static void gpu_fwd_open(GpuFwd *G, Model *m, Checkpoint *ck, const char *dir, int B, int T) {
    const char *why = gpu_unsupported(&m->c);
    if (why) fail("--device gpu: %s; use --device cpu", why);
    G->s = gpu_spec_from_config(&m->c, &m->tab, m->embed_scale);
    G->s->forward_only = 1;
    G->g = gpu_create(G->s, B, T);
    G->tab = &m->tab;
    double t0 = now_sec();
    if (ck->nfiles) checkpoint_read(ck, dir, &m->tab, NULL, gpu_fwd_put, G);
    else gpu_init_random(G->g, 1, 0.02f);
    size_t used, total;
    gpu_memory(&used, &total);
    printf("| device: %s, forward only: %.2f GiB allocated (bf16 matrices, one layer's buffers, %d x %d tokens), %.2f of "
           "%.2f GiB in use; weights %s in %.1f s\n", gpu_device_name(), gpu_bytes(G->g) / 1073741824.0, B, T,
           used / 1073741824.0, total / 1073741824.0, ck->nfiles ? "sent tensor by tensor" : "drawn on the device",
           now_sec() - t0);
}
// one batch of `rows` sequences (the rest padded and not counted) through the device's forward: its statistics into
// a (what acc_batch adds), the loss returned, the valid targets in *nv
static float gpu_fwd_batch(GpuFwd *G, Acc *a, const Config *c, int *tok, int *tgt, int rows, int B, int T, double tau,
                           int *nv) {
    size_t L = c->L, H = c->H, F = c->F;
    for (size_t i = (size_t)rows * T; i < (size_t)B * T; i++) tok[i] = 0, tgt[i] = -1;
    *nv = 0;
    for (size_t i = 0; i < (size_t)rows * T; i++) *nv += tgt[i] >= 0;
    gpu_stats_on(G->g, (float)tau, rows);
    float loss = gpu_forward(G->g, tok, tgt, 0);
    double *res = (double *)mallocCheck(sizeof(double) * (L * 12 + 2 * L * H + 2 * L * F));
    double *ent = res + L * 12, *entn = ent + L * H, *fa = entn + L * H, *fz = fa + L * F;
    gpu_stats_get(G->g, res, ent, entn, fa, fz);
    for (size_t l = 0; l < L; l++) {  // res[l]: the whole layer, its attention branch, its MLP branch
        for (int k = 0; k < 4; k++) a->res[l * 4 + k] += res[l * 12 + k];
        a->upd_attn[l] += res[l * 12 + 4 + 3], a->upd_mlp[l] += res[l * 12 + 8 + 3];
        a->erows[l] += (double)rows * (T - 1);
    }
    for (size_t i = 0; i < L * H; i++) a->ent[i] += ent[i], a->entn[i] += entn[i];
    for (size_t i = 0; i < L * F; i++) a->fabs_[i] += fa[i], a->fzero[i] += fz[i];
    a->tokens += (double)rows * T;
    a->batches++;
    free(res);
    return loss;
}
#endif

static int cmd_stats(int argc, char **argv) {
    CalibArgs ca = {0};  // (ablate sets no --preset, --config, --device)
    flags_defaults(&stats_cli, &ca);
    flags_parse(&stats_cli, &ca, argc, argv, 2, NULL);
    flags_print(&stats_cli, &ca, stdout);
    double tau = ca.tau;
    int grad = !ca.no_grad, gpu = streq(ca.device, "gpu");
    Model m;
    Mixture mx;
#ifdef USE_GPU
    GpuFwd G = {0};
    if (gpu) {
        const char *dir = or_null(ca.model);
        Checkpoint ck = calib_model(&ca, &m, 0);
        calib_data(&ca, "stats", &m, &mx);
        gpu_fwd_open(&G, &m, &ck, dir, ca.B, ca.T);
        checkpoint_close(&ck);
        grad = 0;
    } else
#else
    if (gpu) fail("--device gpu: this ./profile is the CPU build; the GPU's is hip/build/profile (make gpu)");
#endif
        calib_open(&ca, "stats", &m, &mx);
    printf("| tau %g, gradients %s\n", tau, grad ? "on" : gpu ? "off (--device gpu runs the forward only)" : "off");
    const Config *c = &m.c;
    int k = mx.k, B = ca.B, T = ca.T;
    Acc *acc = (Acc *)mallocCheck(sizeof(Acc) * (size_t)(k + 1));
    for (int d = 0; d <= k; d++) acc[d] = acc_new(c);
    int *tok = (int *)mallocCheck(sizeof(int) * (size_t)B * T), *tgt = (int *)mallocCheck(sizeof(int) * (size_t)B * T);
    float *gsum = grad ? (float *)callocCheck(sizeof(float) * m.tab.total) : NULL;
    double t0 = now_sec(), seen = 0;
    int step = 0, total = k * ca.batches;
    for (int d = 0; d < k; d++) {
        if (grad) {
            model_alloc_grads(&m);
            model_zero_grad(&m);
        }
        Windows win = calib_windows(&mx, ca.split, d, T, (uint64_t)ca.batches * B, 0);
        for (int i = 0; i < ca.batches; i++) {
            int rows = calib_batch(&mx, &win, i, B, T, tok, tgt);
            if (!rows) {
                printf("| domain %s: its %s shard holds only %d batches of %d x %d\n", mx.ds.name[d], ca.split, i, B, T);
                total -= ca.batches - i;
                break;
            }
            float loss;
            int nv = 0;
#ifdef USE_GPU
            if (gpu) loss = gpu_fwd_batch(&G, &acc[d], c, tok, tgt, rows, B, T, tau, &nv);
            else
#endif
            {
                loss = model_forward(&m, tok, tgt, rows, T, grad, NULL);
                acc_batch(&acc[d], &m, tau);
                if (grad) model_backward(&m);
                nv = m.n_valid;
            }
            acc[d].loss_sum += (double)loss * nv, acc[d].loss_n += nv;
            seen += (double)rows * T;
            char what[160];
            snprintf(what, sizeof what, "%s batch %d/%d | loss %.4f", mx.ds.name[d], i + 1, ca.batches, loss);
            step_line(++step, total, t0, seen, "tok/s", what);
        }
        if (grad && acc[d].batches > 0) {
            grad_stats(&acc[d], &m, m.gw, 1.0 / acc[d].batches);
            for (size_t j = 0; j < m.tab.total; j++) gsum[j] += m.gw[j];
        }
        acc_add(&acc[k], &acc[d], c);
        free(win.off);
    }
    if (acc[k].batches == 0) fail("%s: no calibration batches of %d tokens in any domain; use a smaller --seq", ca.data, T + 1);
    if (grad) grad_stats(&acc[k], &m, gsum, 1.0 / acc[k].batches);

    // outputs: stats.json, layers.csv, heads.csv, ffn.csv, pictures
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", ca.model);
    cJSON_AddStringToObject(j, "data", ca.data);
    cJSON *st = cJSON_AddObjectToObject(j, "settings");
    cJSON_AddStringToObject(st, "split", ca.split);
    cJSON_AddStringToObject(st, "device", ca.device);
    cJSON_AddNumberToObject(st, "batches", ca.batches);
    cJSON_AddNumberToObject(st, "batch", B);
    cJSON_AddNumberToObject(st, "seq", T);
    cJSON_AddNumberToObject(st, "tau", tau);
    cJSON_AddBoolToObject(st, "gradients", grad);
    cJSON *lt = cJSON_AddArrayToObject(j, "layer_types");
    for (int l = 0; l < c->L; l++) cJSON_AddItemToArray(lt, cJSON_CreateString(ltype(c, l)));
    // the planner's input: Block Influence over all domains (higher = keep)
    double *bi = (double *)mallocCheck(sizeof(double) * (size_t)c->L);
    for (int l = 0; l < c->L; l++) bi[l] = acc_layer(&acc[k], l, 2);
    cJSON_AddItemToObject(j, "layer_importance", json_row(bi, c->L));
    cJSON_AddStringToObject(j, "layer_importance_metric", "block_influence");
    cJSON *dj = cJSON_AddObjectToObject(j, "domains");
    Buf layers = {0}, heads = {0}, ffn = {0};
    bprintf(&layers, "domain,layer,type,loss,resid_in,resid_out,block_influence,rel_update,attn_update,mlp_update,"
                     "entropy,entropy_norm,ffn_near_zero,ffn_never_active,grad_attn,grad_mlp,grad_norms\n");
    bprintf(&heads, "domain,layer,type,head,kv_head,entropy,entropy_norm,grad,taylor,kv_grad\n");
    for (int d = 0; d <= k; d++) {
        if (acc[d].batches == 0) continue;
        const char *name = d < k ? mx.ds.name[d] : "all";
        cJSON_AddItemToObject(dj, name, acc_json(&acc[d], c));
        acc_csv(&layers, &heads, &acc[d], c, name);
    }
    // summary over all domains: sliding vs full layers
    double es[2] = {0, 0}, en[2] = {0, 0}, nl[2] = {0, 0};
    int never = 0;
    for (int l = 0; l < c->L; l++) {
        int f = c->full[l];
        es[f] += acc_layer_ent(&acc[k], c, l, 0), en[f] += acc_layer_ent(&acc[k], c, l, 1), nl[f]++;
        never += acc_never(&acc[k], c, l);
    }
    cJSON *sm = cJSON_AddObjectToObject(j, "summary");
    for (int f = 0; f < 2; f++) {
        char key[64];
        snprintf(key, sizeof key, "entropy_%s", f ? "full" : "sliding");
        cJSON_AddNumberToObject(sm, key, nl[f] ? es[f] / nl[f] : 0);
        snprintf(key, sizeof key, "entropy_norm_%s", f ? "full" : "sliding");
        cJSON_AddNumberToObject(sm, key, nl[f] ? en[f] / nl[f] : 0);
    }
    cJSON_AddNumberToObject(sm, "ffn_never_active", never);
    cJSON_AddNumberToObject(sm, "ffn_channels", (double)c->L * c->F);
    json_save(j, ca.out, "stats.json");
    cJSON_Delete(j);
    buf_save(&layers, ca.out, "layers.csv");
    buf_save(&heads, ca.out, "heads.csv");
    bprintf(&ffn, "layer,type,channel,mean_abs,near_zero,grad,taylor\n");
    for (int l = 0; l < c->L; l++)
        for (int i = 0; i < c->F; i++) {
            size_t q = (size_t)l * c->F + i;
            bprintf(&ffn, "%d,%s,%d,%.6g,%.6g", l, ltype(c, l), i, acc[k].fabs_[q] / acc[k].tokens,
                    acc[k].fzero[q] / acc[k].tokens);
            if (grad) bprintf(&ffn, ",%.6g,%.6g\n", acc[k].g_ffn[q], acc[k].t_ffn[q]);
            else bprintf(&ffn, ",,\n");
        }
    buf_save(&ffn, ca.out, "ffn.csv");
    stats_pictures(ca.out, c, &acc[k], acc, mx.ds.name, k);
    // the console summary
    printf("summary | loss %.4f over %.0f tokens | entropy/ln(keys) sliding %.3f full %.3f | never-active FFN "
           "channels %d of %d\n",
           acc[k].loss_sum / acc[k].loss_n, acc[k].tokens, nl[0] ? en[0] / nl[0] : 0, nl[1] ? en[1] / nl[1] : 0, never,
           c->L * c->F);
    print_layer_order("layers by Block Influence (least first):", c, bi, "(%.3f)");
    free(bi);
    for (int d = 0; d <= k; d++) free(acc[d].block);
    free(acc);
    free(tok);
    free(tgt);
    free(gsum);
    mixture_close(&mx);
#ifdef USE_GPU
    if (gpu) gpu_free(G.g), gpu_spec_free(G.s);
#endif
    model_free(&m);
    return 0;
}

// ================================================================================================
// ablate: ./profile ablate --model DIR --data DIR --out DIR [--batches N]
// Removing a layer = the mask hook zl[l] = 0, which zeroes both branch outputs after their post-norms
// (on Gemma 4 the layer's layer_scalar still scales the stream, as in the masked model prune.c trains).
//   1. each layer in turn: loss per domain and Δloss against the whole model
//   2. every full-attention layer at once: next-token loss by position. A query at position t < W sees
//      its whole context through the sliding layers; beyond the window only full layers reach back, so
//      this is where removing them must hurt.
// ================================================================================================

// mean loss per domain over the calibration batches (per-position sums too, when pos_sum is given)
static void ablate_eval(Model *m, const Mixture *mx, const CalibArgs *ca, const Windows *win, double *loss,
                        double *pos_sum, double *pos_n, int *tok, int *tgt, float *tl) {
    int T = ca->T;
    for (int d = 0; d < mx->k; d++) {
        double s = 0, n = 0;
        for (int i = 0; i < ca->batches; i++) {
            int rows = calib_batch(mx, &win[d], i, ca->B, T, tok, tgt);
            if (!rows) break;
            float l = model_forward(m, tok, tgt, rows, T, 0, NULL);
            s += (double)l * m->n_valid, n += m->n_valid;
            if (!pos_sum) continue;
            token_losses(m, tgt, tl);
            for (int r = 0; r < rows; r++)
                for (int t = 0; t < T; t++)
                    if (tl[r * T + t] == tl[r * T + t]) pos_sum[t] += tl[r * T + t], pos_n[t]++;
        }
        loss[d] = n ? s / n : NAN;
    }
}

static double mean_finite(const double *v, int n) {
    double s = 0;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (v[i] == v[i]) s += v[i], k++;
    return k ? s / k : NAN;
}

static int cmd_ablate(int argc, char **argv) {
    CalibArgs ca = {0};  // (ablate sets no --preset, --config, --device)
    flags_defaults(&ablate_cli, &ca);
    flags_parse(&ablate_cli, &ca, argc, argv, 2, NULL);
    flags_print(&ablate_cli, &ca, stdout);
    Model m;
    Mixture mx;
    calib_open(&ca, "ablate", &m, &mx);
    const Config *c = &m.c;
    int k = mx.k, L = c->L, T = ca.T, B = ca.B, nfull = 0;
    for (int l = 0; l < L; l++) nfull += c->full[l];
    if (T <= c->W && nfull) printf("| note: --seq %d <= sliding window %d: no position lies beyond the window\n", T, c->W);
    int *tok = (int *)mallocCheck(sizeof(int) * (size_t)B * T), *tgt = (int *)mallocCheck(sizeof(int) * (size_t)B * T);
    float *tl = (float *)mallocCheck(sizeof(float) * (size_t)B * T);
    double *base = (double *)mallocCheck(sizeof(double) * (size_t)k), *nofull = (double *)mallocCheck(sizeof(double) * (size_t)k);
    double *loss = (double *)mallocCheck(sizeof(double) * (size_t)L * k);  // [L, k] with layer l removed
    double *pos = (double *)callocCheck(sizeof(double) * (size_t)T * 4);   // sums and counts: base, no full
    m.zl = (float *)mallocCheck(sizeof(float) * (size_t)L);
    double t0 = now_sec(), tokens_per_eval = 0;
    Windows *win = (Windows *)mallocCheck(sizeof(Windows) * (size_t)k);
    for (int d = 0; d < k; d++) {  // tokens one evaluation reads (for the tok/s figure)
        win[d] = calib_windows(&mx, ca.split, d, T, (uint64_t)ca.batches * B, ca.long_docs);
        tokens_per_eval += (double)win[d].n * T;
        if (ca.long_docs) printf("| domain %s: %llu windows at document starts\n", mx.ds.name[d], (unsigned long long)win[d].n);
    }
    int total = (ca.no_layers ? 0 : L) + 1 + (nfull > 0), step = 0;
    char what[200];
    for (int l = 0; l < L; l++) m.zl[l] = 1;
    ablate_eval(&m, &mx, &ca, win, base, pos, pos + T, tok, tgt, tl);
    snprintf(what, sizeof what, "whole model | loss %.4f", mean_finite(base, k));
    step++;
    step_line(step, total, t0, tokens_per_eval * step, "tok/s", what);
    for (int l = 0; l < L && !ca.no_layers; l++) {
        m.zl[l] = 0;
        ablate_eval(&m, &mx, &ca, win, loss + (size_t)l * k, NULL, NULL, tok, tgt, tl);
        m.zl[l] = 1;
        double dl = 0;
        for (int d = 0; d < k; d++) dl += loss[(size_t)l * k + d] - base[d];
        snprintf(what, sizeof what, "remove layer %d (%s) | loss %.4f | dloss %+.4f", l, ltype(c, l),
                 mean_finite(loss + (size_t)l * k, k), dl / k);
        step++;
    step_line(step, total, t0, tokens_per_eval * step, "tok/s", what);
    }
    if (nfull) {
        for (int l = 0; l < L; l++) m.zl[l] = c->full[l] ? 0.0f : 1.0f;
        ablate_eval(&m, &mx, &ca, win, nofull, pos + 2 * T, pos + 3 * T, tok, tgt, tl);
        snprintf(what, sizeof what, "remove all %d full-attention layers | loss %.4f", nfull, mean_finite(nofull, k));
        step++;
    step_line(step, total, t0, tokens_per_eval * step, "tok/s", what);
    }

    // results
    double *dmean = (double *)mallocCheck(sizeof(double) * (size_t)L);
    float *hm = (float *)mallocCheck(sizeof(float) * (size_t)L * k);
    Buf csv = {0};
    bprintf(&csv, "layer,type,domain,loss,base_loss,delta\n");
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "model", ca.model);
    cJSON *bj = cJSON_AddObjectToObject(j, "base_loss");
    for (int d = 0; d < k; d++) cJSON_AddNumberToObject(bj, mx.ds.name[d], base[d]);
    cJSON *lj = cJSON_AddArrayToObject(j, "layers");
    for (int l = 0; l < L && !ca.no_layers; l++) {
        cJSON *e = cJSON_CreateObject(), *dd = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "layer", l);
        cJSON_AddStringToObject(e, "type", ltype(c, l));
        double s = 0;
        for (int d = 0; d < k; d++) {
            double x = loss[(size_t)l * k + d] - base[d];
            s += x;
            hm[l * k + d] = (float)x;
            cJSON_AddNumberToObject(dd, mx.ds.name[d], x);
            bprintf(&csv, "%d,%s,%s,%.6g,%.6g,%.6g\n", l, ltype(c, l), mx.ds.name[d], loss[(size_t)l * k + d], base[d], x);
        }
        dmean[l] = s / k;
        cJSON_AddItemToObject(e, "delta", dd);
        cJSON_AddNumberToObject(e, "delta_mean", dmean[l]);
        cJSON_AddItemToArray(lj, e);
    }
    if (!ca.no_layers) {
        cJSON_AddItemToObject(j, "layer_importance", json_row(dmean, L));
        cJSON_AddStringToObject(j, "layer_importance_metric", "ablation_dloss");
        buf_save(&csv, ca.out, "ablate_layers.csv");
    } else free(csv.p);
    // positions: inside [0, W) and beyond [W, T)
    double in[4] = {0, 0, 0, 0}, out[4] = {0, 0, 0, 0};
    for (int t = 0; t < T; t++)
        for (int q = 0; q < 4; q++) (t < c->W ? in : out)[q] += pos[q * T + t];
    Buf pcsv = {0};
    bprintf(&pcsv, "position,loss,loss_no_full,tokens\n");
    for (int t = 0; t < T; t++)
        bprintf(&pcsv, "%d,%.6g,%.6g,%.0f\n", t, pos[t] / pos[T + t], nfull ? pos[2 * T + t] / pos[3 * T + t] : NAN, pos[T + t]);
    buf_save(&pcsv, ca.out, "ablate_positions.csv");
    cJSON *bp = cJSON_AddObjectToObject(j, "positions");  // the model as it is (also one without full layers)
    cJSON_AddNumberToObject(bp, "window", c->W);
    cJSON_AddNumberToObject(bp, "inside", in[1] ? in[0] / in[1] : NAN);
    cJSON_AddNumberToObject(bp, "beyond", out[1] ? out[0] / out[1] : NAN);
    cJSON_AddNumberToObject(bp, "inside_tokens", in[1]);
    cJSON_AddNumberToObject(bp, "beyond_tokens", out[1]);
    printf("positions | inside the window (t < %d): loss %.4f over %.0f tokens | beyond: %.4f over %.0f tokens\n", c->W,
           in[1] ? in[0] / in[1] : NAN, in[1], out[1] ? out[0] / out[1] : NAN, out[1]);
    if (nfull) {
        cJSON *nj = cJSON_AddObjectToObject(j, "no_full_layers");
        cJSON *nd = cJSON_AddObjectToObject(nj, "loss");
        for (int d = 0; d < k; d++) cJSON_AddNumberToObject(nd, mx.ds.name[d], nofull[d]);
        cJSON *pj = cJSON_AddObjectToObject(nj, "positions");
        cJSON_AddNumberToObject(pj, "window", c->W);
        cJSON_AddNumberToObject(pj, "inside_base", in[1] ? in[0] / in[1] : NAN);
        cJSON_AddNumberToObject(pj, "inside_no_full", in[3] ? in[2] / in[3] : NAN);
        cJSON_AddNumberToObject(pj, "beyond_base", out[1] ? out[0] / out[1] : NAN);
        cJSON_AddNumberToObject(pj, "beyond_no_full", out[3] ? out[2] / out[3] : NAN);
        cJSON_AddNumberToObject(pj, "beyond_tokens", out[1]);
    }
    json_save(j, ca.out, "ablate.json");
    cJSON_Delete(j);
    // pictures
    if (!ca.no_layers)
        plot_layer_bars(ca.out, "ablate_layers.png", "Loss increase when one layer is removed (mean over domains)",
                        "delta loss", c, dmean, "each layer skipped in turn (zl = 0); the whole model is the baseline");
    if (k > 1 && !ca.no_layers) {
        float vmax = 0;
        for (int i = 0; i < L * k; i++) vmax = fabsf(hm[i]) > vmax ? fabsf(hm[i]) : vmax;
        plot_layer_heatmap(ca.out, "ablate_domains.png", "Loss increase when one layer is removed, per domain", "domain",
                           c, hm, k, 0, 0, (const char *const *)mx.ds.name, "delta loss", NULL);
        (void)vmax;
    }
    if (nfull) {  // loss by position, in bins of ~T/64 positions
        int bw = (T + 63) / 64, nbins = (T + bw - 1) / bw;
        double *x = (double *)mallocCheck(sizeof(double) * (size_t)nbins * 3), *y0 = x + nbins, *y1 = y0 + nbins;
        for (int b = 0; b < nbins; b++) {
            double s0 = 0, n0 = 0, s1 = 0, n1 = 0;
            for (int t = b * bw; t < (b + 1) * bw && t < T; t++)
                s0 += pos[t], n0 += pos[T + t], s1 += pos[2 * T + t], n1 += pos[3 * T + t];
            x[b] = b * bw + (bw - 1) / 2.0, y0[b] = n0 ? s0 / n0 : NAN, y1[b] = n1 ? s1 / n1 : NAN;
        }
        Series s[2] = {{"whole model", x, y0, nbins}, {"all full-attention layers removed", x, y1, nbins}};
        double vx[1] = {c->W};
        char wl[64];
        snprintf(wl, sizeof wl, "sliding window %d", c->W);
        const char *vl[1] = {wl};
        LinesOpts o = {0};
        o.vx = vx, o.vx_labels = vl, o.nvx = 1;
        char *path = path_join(ca.out, "ablate_positions.png");
        plot_lines_ex(path, "Next-token loss by position", "position in the sequence", "loss", s, 2, &o);
        printf("wrote %s\n", path);
        free(path);
        free(x);
        printf("no full layers | inside the window (t < %d): loss %.4f -> %.4f (%+.4f) | beyond: %.4f -> %.4f (%+.4f) "
               "over %.0f tokens\n",
               c->W, in[0] / in[1], in[2] / in[3], in[2] / in[3] - in[0] / in[1], out[1] ? out[0] / out[1] : NAN,
               out[3] ? out[2] / out[3] : NAN, out[1] && out[3] ? out[2] / out[3] - out[0] / out[1] : NAN, out[1]);
    }
    if (!ca.no_layers) print_layer_order("layers by removal cost (cheapest first):", c, dmean, "(%+.3f)");
    for (int d = 0; d < k; d++) free(win[d].off);
    free(win);
    free(dmean);
    free(hm);
    free(pos);
    free(loss);
    free(base);
    free(nofull);
    free(tok);
    free(tgt);
    free(tl);
    free(m.zl);
    m.zl = NULL;
    mixture_close(&mx);
    model_free(&m);
    return 0;
}

// ================================================================================================
// diff: ./profile diff --a DIR --b DIR --out DIR
// Per layer and matrix, the relative change ||W_a - W_b|| / ||W_b|| (b is the reference, e.g. the
// model before fine-tuning). Norm weights are compared as the scale they apply — (1 + w) on Gemma 3,
// w on Gemma 4 — since a Gemma 3 norm stored near 0 would make any change look huge. Streams one tensor
// at a time, so it needs memory for the largest tensor, not for the models.
// ================================================================================================

static const char *kind_short[T_NKINDS] = {"in_norm", "q", "k", "v", "q_norm", "k_norm", "o", "post_attn",
                                           "pre_ffn", "gate", "up", "down", "post_ffn", "ple_gate", "ple_proj",
                                           "ple_norm", "layer_scalar"};
// heatmap columns: the matrices first, then the norms, Gemma 4's layer_scalar, E2B's per-layer input tensors
static const int diff_cols[T_NKINDS] = {T_WQ, T_WK, T_WV, T_WO, T_WGATE, T_WUP, T_WDOWN, T_IN_NORM,
                                        T_POST_ATTN_NORM, T_PRE_FFN_NORM, T_POST_FFN_NORM, T_Q_NORM, T_K_NORM,
                                        T_LAYER_SCALAR, T_PLE_GATE, T_PLE_PROJ, T_PLE_NORM};

static void same_shape(const Config *a, const Config *b, const char *pa, const char *pb) {
    int ok = a->arch == b->arch && a->V == b->V && a->d == b->d && a->L == b->L && a->H == b->H && a->K == b->K &&
             a->D == b->D && a->F == b->F && a->Dg == b->Dg && a->Kg == b->Kg && a->k_eq_v == b->k_eq_v;
    for (int l = 0; ok && l < a->L; l++) ok = a->full[l] == b->full[l];
    if (!ok)
        fail("%s and %s have different shapes (Gemma %d d %d L %d H %d K %d F %d vs Gemma %d d %d L %d H %d K %d F %d); "
             "diff compares checkpoints of one shape", pa, pb, a->arch, a->d, a->L, a->H, a->K, a->F, b->arch, b->d, b->L,
             b->H, b->K, b->F);
}

typedef struct {
    const char *a, *b, *out;
} DiffArgs;
#define DIFF(f) offsetof(DiffArgs, f)
static const Flag diff_flags[] = {
    {"a", F_STR, DIFF(a), NULL, NULL, SAVE_NO, "the changed model directory"},
    {"b", F_STR, DIFF(b), NULL, NULL, SAVE_NO, "the reference model directory"},
    {"out", F_STR, DIFF(out), NULL, NULL, SAVE_NO, "output directory"},
};
static const Cli diff_cli = {"./profile diff", "usage: ./profile diff --a DIR --b DIR --out DIR\n"
                             "Relative change ||W_a - W_b|| / ||W_b|| per layer and matrix between two checkpoints of one\n"
                             "shape (b = the reference, e.g. before fine-tuning). Writes diff.csv, diff.json, diff.png.\n",
                             diff_flags, COUNT_OF(diff_flags), NULL, 0, NULL, NULL};

static int cmd_diff(int argc, char **argv) {
    DiffArgs da_;
    flags_defaults(&diff_cli, &da_);
    flags_parse(&diff_cli, &da_, argc, argv, 2, NULL);
    flags_print(&diff_cli, &da_, stdout);
    const char *da = da_.a, *db = da_.b, *out = da_.out;
    Config ca, cb;
    char *pa = path_join(da, "config.json"), *pb = path_join(db, "config.json");
    if (!file_exists(pa)) fail("%s: no config.json; point --a at a Hugging Face model directory", da);
    if (!file_exists(pb)) fail("%s: no config.json; point --b at a Hugging Face model directory", db);
    config_load(&ca, pa);
    config_load(&cb, pb);
    same_shape(&ca, &cb, da, db);
    make_dirs(out);
    printf("diff: a %s, b %s (reference)\n", da, db);
    config_print(&cb, stdout);
    Checkpoint ka = checkpoint_open(da), kb = checkpoint_open(db);
    ParamTable t;
    param_table(&cb, &t);
    int L = cb.L, ncol = cb.arch == 3 ? T_NKINDS - 4 : cb.P > 0 ? T_NKINDS : T_NKINDS - 3;
    float *hm = (float *)mallocCheck(sizeof(float) * (size_t)L * ncol);
    for (int i = 0; i < L * ncol; i++) hm[i] = NAN;
    float off = norm_offset(&cb);
    Buf csv = {0};
    bprintf(&csv, "tensor,layer,kind,rel_change,norm_diff,norm_b\n");
    cJSON *j = cJSON_CreateObject(), *tj = cJSON_AddObjectToObject(j, "tensors");
    double t0 = now_sec(), bytes = 0;
    size_t maxn = 0;
    for (int i = 0; i < t.n; i++) maxn = t.e[i].rows * t.e[i].cols > maxn ? t.e[i].rows * t.e[i].cols : maxn;
    float *wa = (float *)mallocCheck(sizeof(float) * maxn), *wb = (float *)mallocCheck(sizeof(float) * maxn);
    for (int i = 0; i < t.n; i++) {
        const PEntry *e = &t.e[i];
        const STensor *sa = checkpoint_find(&ka, e->name), *sb = checkpoint_find(&kb, e->name);
        if (!sa) fail("%s: tensor %s is missing", da, e->name);
        if (!sb) fail("%s: tensor %s is missing", db, e->name);
        size_t n = e->rows * e->cols;
        if (sa->numel != n || sb->numel != n)
            fail("%s: %zu values in %s / %zu in %s, config.json implies %zu", e->name, sa->numel, da, sb->numel, db, n);
        st_to_f32(sa, wa);
        st_to_f32(sb, wb);
        bytes += (double)(sa->nbytes + sb->nbytes);
        double o = is_rms_weight(e) ? off : 0, dd = 0, bb = 0;
        for (size_t q = 0; q < n; q++) {
            double x = wa[q] + o, y = wb[q] + o;
            dd += (x - y) * (x - y), bb += y * y;
        }
        double rel = bb > 0 ? sqrt(dd / bb) : (dd > 0 ? INFINITY : 0);
        const char *kind = e->kind == T_EMBED ? "embed" : e->kind == T_FINAL_NORM ? "final_norm" : kind_short[e->kind];
        bprintf(&csv, "%s,%d,%s,%.6g,%.6g,%.6g\n", e->name, e->layer, kind, rel, sqrt(dd), sqrt(bb));
        cJSON_AddNumberToObject(tj, e->name, rel == INFINITY ? 1e308 : rel);
        if (e->layer >= 0)
            for (int col = 0; col < ncol; col++)
                if (diff_cols[col] == e->kind) hm[e->layer * ncol + col] = (float)rel;
        if (e->layer < 0) printf("  %-28s %.6g\n", e->name, rel);
        if (e->layer >= 0 && (i + 1 == t.n || t.e[i + 1].layer != e->layer)) {
            char what[64];
            snprintf(what, sizeof what, "layer %d", e->layer);
            step_line(e->layer + 1, L, t0, bytes / 1e6, "MB/s", what);
        }
    }
    free(wa);
    free(wb);
    buf_save(&csv, out, "diff.csv");
    json_save(j, out, "diff.json");
    cJSON_Delete(j);
    const char *cl[T_NKINDS];
    for (int col = 0; col < ncol; col++) cl[col] = kind_short[diff_cols[col]];
    char title[160];
    snprintf(title, sizeof title, "Relative change ||W_a - W_b|| / ||W_b||");
    plot_layer_heatmap(out, "diff.png", title, "tensor", &cb, hm, ncol, 0, 0, cl, "relative change",
                       "norms compared as the scale they apply: (1+w) on Gemma 3, w on Gemma 4; grey = no such tensor");
    free(hm);
    free(t.e);
    checkpoint_close(&ka);
    checkpoint_close(&kb);
    free(pa);
    free(pb);
    return 0;
}

// ================================================================================================
// main
// ================================================================================================

// ================================================================================================
// eval: ./profile eval --model [NAME=]DIR [--model ...] --out FILE.json [--data DIR --batch B --seq T
// --eval-batches N --split val|test]. Per-domain held-out loss of each model on the same fixed windows
// (mixture_eval: validation = the windows train.c evaluates on; test = windows spread over the test
// split, which nothing else reads) with its standard error over the batches, and the model's parameter
// counts: the numbers a pipeline summary compares.
// ================================================================================================

typedef struct {
    StrList model;
    const char *data, *out, *table, *csv, *split, *device, *cache;
    int batch, seq, batches, unigram;
} EvalArgs;
#define EVAL(f) offsetof(EvalArgs, f)
static const Flag eval_flags[] = {
    {"model", F_LIST, EVAL(model), NULL, NULL, SAVE_NO, "[NAME=]DIR: a Hugging Face model directory, optionally named; repeatable"},
    {"out", F_STR, EVAL(out), NULL, NULL, SAVE_NO, "FILE.json: where the results go"},
    {"data", F_STR, EVAL(data), "data/shards", NULL, SAVE_NO, "token shards, one subdirectory per domain"},
    {"batch", F_INT, EVAL(batch), "8", ">= 1", SAVE_NO, "windows per batch"},
    {"seq", F_INT, EVAL(seq), "256", ">= 1", SAVE_NO, "tokens per window"},
    {"eval-batches", F_INT, EVAL(batches), "8", ">= 1", SAVE_NO, "batches per domain"},
    {"unigram", F_BOOL, EVAL(unigram), "0", NULL, SAVE_NO, "also the unigram baseline: each domain's train-token frequencies "
     "(add-one) scored on the same windows"},
    {"table", F_STR, EVAL(table), "", NULL, SAVE_NO, "FILE.md: also a Markdown table; models named VARIANT@SEED are grouped: "
     "mean, sample standard deviation, min and max over the seeds"},
    {"csv", F_STR, EVAL(csv), "", NULL, SAVE_NO, "FILE.csv: the same table as CSV (one row per variant)"},
    {"split", F_STR, EVAL(split), "val", "val|test", SAVE_NO, "val: windows spread over each validation shard, never "
     "those dynamic batch loading reads; test: windows spread over each test shard (data/mkshards --test-split)"},
    {"device", F_STR, EVAL(device), "cpu", "cpu|gpu", SAVE_NO, "the forward passes on the GPU (the build of `make gpu`: "
     "hip/build/profile; bf16 compute)"},
    {"cache", F_STR, EVAL(cache), "", NULL, SAVE_NO, "DIR: keep each model's result in DIR/NAME.json and reuse it while "
     "the weights file and these settings are the same"},
};
static const Renamed eval_renamed[] = {{"batches", "--eval-batches N"}};
static const Cli eval_cli = {"./profile eval", "usage: ./profile eval --model [NAME=]DIR [--model ...] --out FILE.json [flags]\n"
                             "Per-domain held-out loss with its standard error over the batches, and parameter counts.\n",
                             eval_flags, COUNT_OF(eval_flags), eval_renamed, COUNT_OF(eval_renamed), NULL, NULL};

typedef struct {
    const char *data, *split;
    int batches;
    StepOpts so;  // the device and the B x T windows of every forward
} EvalSettings;

// what identifies a model's weights for the cache: the size and time of its weights file
static void weights_stamp(const char *dir, double *bytes, double *mtime) {
    struct stat st;
    char *p = path_join(dir, "model.safetensors");
    if (stat(p, &st) != 0) {
        free(p);
        p = path_join(dir, "model.safetensors.index.json");
    }
    *bytes = -1, *mtime = -1;
    if (stat(p, &st) == 0) *bytes = (double)st.st_size, *mtime = (double)st.st_mtime;
    free(p);
}

// One model's held-out losses: per domain the token-weighted mean over the batches and its standard error
// (from the spread of the batch losses: batch b alone is mixture_eval_part's one batch of B x `batches` windows
// seen by rank b), the mean
// over domains, parameter counts, and the settings that made them.
static cJSON *eval_model(const char *name, const char *dir, const EvalSettings *es) {
    int B = es->so.B, T = es->so.T, batches = es->batches;
    Model m;
    model_load(&m, dir);
    Mixture mx = mixture_open(es->data, m.c.V, 0);
    mx.heldout = 1, mx.eval_test = streq(es->split, "test");  // never the windows dynamic batch loading read
    Step *S = step_open(&m, NULL, &es->so);  // model.h's step: the forward passes on either device
    cJSON *e = cJSON_CreateObject(), *lj = cJSON_AddObjectToObject(e, "loss"), *sj = cJSON_AddObjectToObject(e, "stderr");
    double mean = 0, var = 0, t0 = now_sec(), *bl = (double *)mallocCheck(sizeof(double) * (size_t)batches);
    for (int d = 0; d < mx.k; d++) {
        double sum = 0, count = 0, s1 = 0, s2 = 0;
        int nb = 0;
        for (int b = 0; b < batches; b++) {
            double bs = 0, bc = 0;
            mixture_eval_part(&mx, step_eval_fn, S, d, B, T, 1, b, batches, &bs, &bc);
            if (bc == 0) break;
            sum += bs, count += bc, bl[nb++] = bs / bc;
        }
        for (int b = 0; b < nb; b++) s1 += bl[b], s2 += bl[b] * bl[b];
        double l = sum / count, se = nb > 1 ? sqrt(fmax(0, (s2 - s1 * s1 / nb) / (nb - 1)) / nb) : NAN;
        cJSON_AddNumberToObject(lj, mx.ds.name[d], l);
        json_add_num(sj, mx.ds.name[d], se);
        mean += l / mx.k, var += se * se / ((double)mx.k * mx.k);
    }
    free(bl);
    step_close(S);
    cJSON_AddNumberToObject(e, "mean", mean);
    json_add_num(e, "mean_stderr", sqrt(var));
    cJSON *pj = cJSON_AddObjectToObject(e, "params");
    size_t ne = count_params(&m.c, 0), tot = count_params(&m.c, 1);
    cJSON_AddNumberToObject(pj, "non_embedding", (double)ne);
    cJSON_AddNumberToObject(pj, "embedding", (double)(tot - ne));
    cJSON_AddNumberToObject(pj, "total", (double)tot);
    double bytes, mtime;
    weights_stamp(dir, &bytes, &mtime);
    cJSON_AddStringToObject(e, "model", dir);
    cJSON_AddStringToObject(e, "data", es->data);
    cJSON_AddStringToObject(e, "split", es->split);
    cJSON_AddNumberToObject(e, "batch", B);
    cJSON_AddNumberToObject(e, "seq", T);
    cJSON_AddNumberToObject(e, "batches", batches);
    cJSON_AddStringToObject(e, "device", device_names[es->so.device]);
    cJSON_AddNumberToObject(e, "weights_bytes", bytes);
    cJSON_AddNumberToObject(e, "weights_mtime", mtime);
    char nbuf[32];
    printf("eval %-10s %s | mean %s loss %.4f ± %.4f over %d domains | %s non-embedding params | %s | %.1fs\n", name, dir,
           es->split, mean, sqrt(var), mx.k, fmt_count((double)ne, nbuf), device_names[es->so.device], now_sec() - t0);
    mixture_close(&mx);
    model_free(&m);
    return e;
}

// the cached entry at path when it was made from the same weights file and settings, else NULL
static cJSON *eval_cached(const char *path, const char *dir, const EvalSettings *es) {
    if (!file_exists(path)) return NULL;
    char *text = read_file(path, NULL);
    cJSON *e = cJSON_Parse(text);
    free(text);
    if (!e) return NULL;
    double bytes, mtime;
    weights_stamp(dir, &bytes, &mtime);
    int same = bytes >= 0 && streq(json_str(e, "model", "", path), dir) && streq(json_str(e, "data", "", path), es->data) &&
               streq(json_str(e, "split", "", path), es->split) && json_int(e, "batch", 0, path) == es->so.B &&
               json_int(e, "seq", 0, path) == es->so.T && json_int(e, "batches", 0, path) == es->batches &&
               streq(json_str(e, "device", "", path), device_names[es->so.device]) &&
               json_num(e, "weights_bytes", -2, path) == bytes && json_num(e, "weights_mtime", -2, path) == mtime;
    if (!same) {
        cJSON_Delete(e);
        return NULL;
    }
    return e;
}

static int cmd_eval(int argc, char **argv) {
    EvalArgs ea;
    flags_defaults(&eval_cli, &ea);
    flags_parse(&eval_cli, &ea, argc, argv, 2, NULL);
    flags_print(&eval_cli, &ea, stdout);
    const char *data = ea.data, *out = ea.out, *table = or_null(ea.table), *csv = or_null(ea.csv), **models = ea.model.v;
    const char *split = ea.split, *cache = or_null(ea.cache);
    int nm = ea.model.n, B = ea.batch, T = ea.seq, batches = ea.batches, unigram = ea.unigram, gpu = streq(ea.device, "gpu");
    EvalSettings es = {data, split, batches, {gpu ? DEVICE_GPU : DEVICE_CPU, B, T, 0, 0, 0, 0, NULL, 0}};
    const char *why = step_refuses(&es.so, NULL, -1);
    if (why) fail("profile eval %s", why);
    cJSON *root = cJSON_CreateObject();
    for (int i = 0; i < nm; i++) {
        const char *eq = strchr(models[i], '='), *dir = eq ? eq + 1 : models[i];
        char name[128];
        snprintf(name, sizeof name, "%.*s", eq ? (int)(eq - models[i]) : (int)strlen(dir), models[i]);
        char *cp = NULL;
        cJSON *e = NULL;
        if (cache) {  // an earlier call's result for this name, model file and settings
            char fn[160];
            snprintf(fn, sizeof fn, "%s.json", name);
            cp = path_join(cache, fn);
            e = eval_cached(cp, dir, &es);
            if (e) printf("eval %-10s %s | mean %s loss %.4f (cached in %s)\n", name, dir, split, json_num(e, "mean", NAN, cp), cp);
        }
        if (!e) {
            e = eval_model(name, dir, &es);
            if (cp) {
                make_dirs(cache);
                write_json_atomic(cp, e);
            }
        }
        cJSON_AddItemToObject(root, name, e);
        free(cp);
    }
    if (unigram) {  // the floor a language model must clear: no context at all
        Mixture mx = mixture_open(data, 0, 0);
        mx.heldout = 1, mx.eval_test = streq(split, "test");
        cJSON *e = cJSON_AddObjectToObject(root, "unigram"), *lj = cJSON_AddObjectToObject(e, "loss");
        double mean = 0;
        for (int d = 0; d < mx.k; d++) {
            const Shard *tr = &mx.ds.train[d];
            EvalWindows ew = mixture_eval_windows(&mx, d, T, (uint64_t)batches * B);
            const Shard *va = ew.s;
            uint64_t nw = ew.n;
            uint32_t V = tr->vocab;
            double *cnt = (double *)callocCheck(sizeof(double) * V);
            for (uint64_t i = 0; i < tr->n; i++) cnt[shard_tok(tr, i)] += 1;
            double sum = 0, total = (double)tr->n + V;
            for (uint64_t w = 0; w < nw; w++)  // the targets of window w: the T tokens after its start
                for (int t = 1; t <= T; t++) sum -= log((cnt[shard_tok(va, eval_window_start(&ew, w, T) + t)] + 1) / total);
            double l = nw ? sum / ((double)nw * T) : NAN;
            cJSON_AddNumberToObject(lj, mx.ds.name[d], l);
            mean += l / mx.k;
            free(cnt);
        }
        cJSON_AddNumberToObject(e, "mean", mean);
        printf("eval %-10s unigram frequencies of each domain's train split | mean %s loss %.4f\n", "unigram", split, mean);
        mixture_close(&mx);
    }
    // group VARIANT@SEED entries: mean and spread over the seeds
    cJSON *groups = cJSON_CreateObject();
    Buf md = {0}, cs = {0};
    for (cJSON *e = root->child; e; e = e->next) {
        const char *at = strchr(e->string, '@');
        char key[128];
        snprintf(key, sizeof key, "%.*s", at ? (int)(at - e->string) : (int)strlen(e->string), e->string);
        if (json_get(groups, key)) continue;
        int n = 0;
        double sum = 0, sq = 0, mn = INFINITY, mx = -INFINITY, se = 0;
        cJSON *g = cJSON_AddObjectToObject(groups, key), *gl = cJSON_AddObjectToObject(g, "loss");
        for (cJSON *f = e; f; f = f->next) {  // the same variant under other seeds
            const char *fat = strchr(f->string, '@');
            size_t fl = fat ? (size_t)(fat - f->string) : strlen(f->string);
            if (fl != strlen(key) || strncmp(f->string, key, fl)) continue;
            double v = json_num(f, "mean", NAN, "eval");
            n++, sum += v, sq += v * v, mn = fmin(mn, v), mx = fmax(mx, v), se += json_num(f, "mean_stderr", NAN, "eval");
            for (const cJSON *d = json_get(f, "loss")->child; d; d = d->next) {
                cJSON *acc = cJSON_GetObjectItemCaseSensitive(gl, d->string);
                if (acc) cJSON_SetNumberValue(acc, acc->valuedouble + d->valuedouble);
                else cJSON_AddNumberToObject(gl, d->string, d->valuedouble);
            }
        }
        for (cJSON *d = gl->child; d; d = d->next) cJSON_SetNumberValue(d, d->valuedouble / n);
        double mean = sum / n, sd = n > 1 ? sqrt(fmax(0, (sq - n * mean * mean) / (n - 1))) : 0;
        cJSON_AddNumberToObject(g, "seeds", n);
        cJSON_AddNumberToObject(g, "mean", mean);
        cJSON_AddNumberToObject(g, "std", sd);
        cJSON_AddNumberToObject(g, "min", mn);
        cJSON_AddNumberToObject(g, "max", mx);
        json_add_num(g, "mean_stderr", se / n);  // the test sample's own uncertainty, beside the seeds'
        if (!md.n) {
            bprintf(&md, "| variant | seeds | mean %s loss | min / max | window s.e. |", split);
            bprintf(&cs, "variant,seeds,mean,std,min,max,window_se");
            for (const cJSON *d = gl->child; d; d = d->next) bprintf(&md, " %s |", d->string), bprintf(&cs, ",%s", d->string);
            bprintf(&cs, "\n");
            bprintf(&md, "\n|---|---|---|---|---|");
            for (const cJSON *d = gl->child; d; d = d->next) bprintf(&md, "---|");
            bprintf(&md, "\n");
        }
        bprintf(&md, "| %s | %d | %.4f%s", key, n, mean, n > 1 ? "" : " |");
        if (n > 1) bprintf(&md, " ± %.4f | %.4f / %.4f |", sd, mn, mx);
        else bprintf(&md, " |");
        if (se == se) bprintf(&md, " %.4f |", se / n);
        else bprintf(&md, " |");
        for (const cJSON *d = gl->child; d; d = d->next) bprintf(&md, " %.4f |", d->valuedouble);
        bprintf(&md, "\n");
        bprintf(&cs, "%s,%d,%.6f,%.6f,%.6f,%.6f,%.6f", key, n, mean, sd, mn, mx, se / n);
        for (const cJSON *d = gl->child; d; d = d->next) bprintf(&cs, ",%.6f", d->valuedouble);
        bprintf(&cs, "\n");
    }
    cJSON_AddItemToObject(root, "groups", groups);
    write_json_atomic(out, root);
    printf("wrote %s\n", out);
    if (table) {
        write_text_atomic(table, md.p ? md.p : "");
        printf("%s", md.p ? md.p : "");
        printf("wrote %s\n", table);
    }
    if (csv) {
        write_text_atomic(csv, cs.p ? cs.p : "");
        printf("wrote %s\n", csv);
    }
    free(md.p);
    free(cs.p);
    cJSON_Delete(root);
    return 0;
}

static void usage(void) {
    printf("usage: profile COMMAND [flags]   (profile COMMAND --help for its flags)\n"
           "  logits    all-position logits and loss of a model on given tokens\n"
           "  plan      target shapes for parameter budgets (model, config or public preset; no weights)\n"
           "  memory    training memory per GPU and what fits (model, config or public preset; no weights)\n"
           "  stats     importance statistics over calibration data per domain: JSON, CSV, PNG\n"
           "  ablate    loss per domain with each layer removed; loss by position without full layers\n"
           "  diff      per-layer, per-matrix relative change between two checkpoints\n"
           "  eval      per-domain validation loss and parameter counts of one or more models\n");
}

#ifndef PROFILE_NO_MAIN
int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage();
        return argc < 2;
    }
    if (!strcmp(argv[1], "logits")) return cmd_logits(argc, argv);
    if (!strcmp(argv[1], "plan")) return cmd_plan(argc, argv);
    if (!strcmp(argv[1], "memory")) return cmd_memory(argc, argv);
    if (!strcmp(argv[1], "stats")) return cmd_stats(argc, argv);
    if (!strcmp(argv[1], "ablate")) return cmd_ablate(argc, argv);
    if (!strcmp(argv[1], "diff")) return cmd_diff(argc, argv);
    if (!strcmp(argv[1], "eval")) return cmd_eval(argc, argv);
    usage();
    fail("profile: unknown command \"%s\"", argv[1]);
}
#endif
