// test_profile.c — profile.c and plot.h. Builds profile.c in (its main left out) and checks:
//   statistics on hand-computable cases: entropy of known distributions; FFN sparsity of a known
//     activation matrix; Block Influence and relative update of known vectors; per-token losses
//     against model_forward's loss (fixtures with and without softcap, Gemma 3 and 4);
//   parameter counts: shape.h's counter against model.h's count_params on every preset and fixture (E2B
//     included) and on cuts of each, and against the published figures (Gemma 3 270M: "170 million embedding parameters ... 100 million
//     for our transformer blocks"; Gemma 4 31B "30.7B"; E2B "2.3B effective");
//   the planner: for every preset and several budgets, the target config (parsed back by model.h's
//     config reader) is valid — hidden divisible by heads and by the rounding multiple, GQA ratio and
//     head_dim kept (E2B: only heads and FFN cut), the sliding/full constraint holds, prune's target rules
//     accept it — and model.h counts it within 2% of the budget; an E2B budget below its smallest cut gets no
//     plan; with a profile the least important layer goes first;
//   memory: the parameter figures for the g3_mqa fixture against the hand calculation written below; the
//     activation and scratch figures against what model_alloc_acts allocates (g3_mqa, g4_keqv, g4_e2b); the GPU's
//     parameter block (hip/plan.h) against model.h's table and 8-bit AdamW blocks;
//   PNG files: signature, IHDR width/height (and its CRC), a full decode with stb_image, pixel colours;
//   end to end (stats, ablate, diff through their command functions) on a tiny random model built so
//     that the answers are known: queries zeroed -> uniform attention (entropy = ln(keys seen) exactly);
//     layer 1's up_proj zeroed -> every channel of that layer never active; layer 2's post-norms at -1
//     (Gemma 3 scales by 1 + w = 0) -> layer 2 is the identity: Block Influence 0, removing it changes
//     no loss, the planner with its profile drops it first; a checkpoint with one matrix scaled by 1.1
//     -> relative change 0.1 there and 0 elsewhere.
// Tolerances: 1e-12 relative on double arithmetic fed exact inputs; 1e-5 where fp32 model arithmetic
// is involved (entropy of a softmax computed in fp32 over <= 64 keys, loss means); 2% on plans (the
// planner's --tolerance default); published counts to the precision they were published with.
//   test/test_profile              run everything (needs test/fixtures; writes under a temp dir)
//   test/test_profile --check-png FILE   exit 0 when FILE is a valid PNG (prints its size)
#define PROFILE_NO_MAIN
#include "profile.c"
#include "check.h"
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_ONLY_PNG
#include <stb_image.h>
#pragma GCC diagnostic pop

static int close_rel(double a, double b, double rtol) { return fabs(a - b) <= rtol * fmax(fabs(b), 1e-300) || a == b; }

// ------------------------------------------------------------------------------------------------
// PNG checking

static uint32_t crc32_png(const unsigned char *p, size_t n) {
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
    }
    return c ^ 0xffffffffu;
}

static uint32_t be32(const unsigned char *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

// 1 when path is a PNG whose IHDR is intact and whose image decodes; its size in *w, *h
static int png_valid(const char *path, int *w, int *h, const char **why) {
    size_t n;
    *why = "ok";
    if (!file_exists(path)) return *why = "missing", 0;
    unsigned char *b = (unsigned char *)read_file(path, &n);
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    int ok = n >= 33 && !memcmp(b, sig, 8) && be32(b + 8) == 13 && !memcmp(b + 12, "IHDR", 4);
    if (!ok) *why = "bad signature or IHDR";
    if (ok && crc32_png(b + 12, 17) != be32(b + 29)) ok = 0, *why = "IHDR CRC";
    if (ok) {
        *w = (int)be32(b + 16), *h = (int)be32(b + 20);
        int dw, dh, comp;
        unsigned char *px = stbi_load_from_memory(b, (int)n, &dw, &dh, &comp, 3);
        if (!px || dw != *w || dh != *h) ok = 0, *why = "does not decode";
        stbi_image_free(px);
    }
    free(b);
    return ok;
}

static void check_png(const char *path, int want_w, int want_h) {
    int w = 0, h = 0;
    const char *why;
    int ok = png_valid(path, &w, &h, &why);
    if (want_w > 0) ok = ok && w == want_w && h == want_h;
    check(ok, "PNG %s: %s, %dx%d%s", path, why, w, h, want_w > 0 ? " (size as expected)" : "");
}

static void test_png(const char *dir) {
    printf("plot.h: PNG files\n");
    char *p = path_join(dir, "canvas.png");
    Image im = image_new(37, 23);
    fill_rect(&im, 3, 4, 2, 2, 0x123456);
    draw_text(&im, 10, 8, "Hi", 0x000000, 1);
    image_save_png(&im, p);
    image_free(&im);
    check_png(p, 37, 23);
    int w = 0, h = 0, comp = 0;
    unsigned char *px = stbi_load(p, &w, &h, &comp, 3);
    const unsigned char *q = px + ((size_t)4 * w + 3) * 3, *white = px;
    check(px && q[0] == 0x12 && q[1] == 0x34 && q[2] == 0x56 && white[0] == 255 && white[1] == 255 && white[2] == 255,
          "pixel (3,4) is 0x123456, (0,0) is white: rows top first, RGB order");
    // 'H' starts with a full 7-pixel column at x = 10
    int col = 1;
    for (int y = 8; y < 15; y++) col &= px[((size_t)y * w + 10) * 3] == 0;
    check(col, "the glyph H draws its left column");
    stbi_image_free(px);
    // a second save over the first leaves no temporary behind
    im = image_new(5, 6);
    image_save_png(&im, p);
    image_free(&im);
    check_png(p, 5, 6);
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", p, (int)getpid());
    check(!file_exists(tmp), "no temporary file left after the atomic save");
    free(p);
    // the three chart kinds
    double x[50], y1[50], y2[50], bars[12];
    int hl[12];
    for (int i = 0; i < 50; i++) x[i] = i, y1[i] = exp(-i / 10.0), y2[i] = i == 20 ? NAN : 0.5 + 0.01 * i;
    for (int i = 0; i < 12; i++) bars[i] = sin(i) - 0.2, hl[i] = i % 6 == 5;
    Series s[2] = {{"decay", x, y1, 50}, {"ramp (gap at 20)", x, y2, 50}};
    p = path_join(dir, "lines.png");
    plot_lines(p, "Lines", "x", "y", s, 2);
    check_png(p, 900, 560);  // the line chart's canvas
    free(p);
    p = path_join(dir, "bars.png");
    plot_bars(p, "Bars", "value", bars, 12, NULL, hl);
    check_png(p, 890, 514);  // 80 + 780 + 30 wide; 44 + 400 + 70 high
    free(p);
    float hmv[6 * 3];
    for (int i = 0; i < 18; i++) hmv[i] = i == 7 ? NAN : (float)i;
    int full[6] = {0, 0, 1, 0, 0, 1};
    p = path_join(dir, "heat.png");
    plot_heatmap(p, "Heatmap", "col", "row", hmv, 6, 3, 0, 0, NULL, full);
    check_png(p, 0, 0);
    free(p);
    check(colormap_viridis(0) == 0x440154 && colormap_viridis(1) == 0xfde725 && colormap_viridis(0.5) == 0x21918c,
          "viridis: 0 -> #440154, 0.5 -> #21918c, 1 -> #fde725");
}

// ------------------------------------------------------------------------------------------------
// statistics on hand-computable cases

static void test_stat_units(void) {
    printf("stats: hand-computable cases\n");
    float u4[4] = {0.25f, 0.25f, 0.25f, 0.25f}, one[3] = {0, 1, 0}, mix[3] = {0.5f, 0.25f, 0.25f};
    check(close_rel(entropy_nats(u4, 4), log(4.0), 1e-7), "entropy of uniform over 4 = ln 4 (%.9f)", entropy_nats(u4, 4));
    check(entropy_nats(one, 3) == 0, "entropy of a one-hot = 0");
    check(close_rel(entropy_nats(mix, 3), 1.5 * log(2.0), 1e-7), "entropy of (1/2, 1/4, 1/4) = 1.5 ln 2 (%.9f)",
          entropy_nats(mix, 3));
    // FFN: 2 tokens x 4 channels. Token 0: |h| = 1, 0, 3, 0.05 -> mean 1.0125, threshold (tau 0.1) 0.10125:
    // channels 1 and 3 near zero. Token 1: |h| = 2, 0, 0.5, 0.1 -> mean 0.65, threshold 0.065: channel 1 only.
    float h[8] = {1, 0, -3, 0.05f, -2, 0, 0.5f, 0.1f};
    double as[4] = {0}, z[4] = {0};
    ffn_activity(h, 2, 4, 4, 0.1, as, z);
    check(z[0] == 0 && z[1] == 2 && z[2] == 0 && z[3] == 1, "near-zero counts per channel = 0, 2, 0, 1 (got %g %g %g %g)",
          z[0], z[1], z[2], z[3]);
    check(as[0] == 3 && as[1] == 0 && as[2] == 3.5 && close_rel(as[3], 0.15, 1e-7), "sum |h| per channel = 3, 0, 3.5, 0.15");
    // residual: x_in = (1, 0) -> x_out (0, 1): BI 1, update sqrt 2; (3, 0) -> (2, 0): BI 0, update 1/3;
    // (1, 1) -> (-1, -1): BI 2, update 2; zero in: BI 0.5 (ShortGPT's NaN rule), update 0
    float xin[8] = {1, 0, 3, 0, 1, 1, 0, 0}, xout[8] = {0, 1, 2, 0, -1, -1, 5, 0};
    double s[4] = {0};
    for (int n = 0; n < 4; n++) {
        double t[4] = {0};
        resid_stats(xin + 2 * n, xout + 2 * n, 1.0f, 1, 2, t);
        double want_bi[4] = {1, 0, 2, 0.5}, want_up[4] = {sqrt(2.0), 1.0 / 3, 2, 0};
        check(close_rel(t[2], want_bi[n], 1e-12) && close_rel(t[3], want_up[n], 1e-12),
              "token %d: BI %.6g (want %.6g), update %.6g (want %.6g)", n, t[2], want_bi[n], t[3], want_up[n]);
    }
    resid_stats(xin, xout, 1.0f, 4, 2, s);
    check(close_rel(s[0], 1 + 3 + sqrt(2.0), 1e-12) && close_rel(s[1], 1 + 2 + sqrt(2.0) + 5, 1e-12),
          "sums of ||x_in|| and ||x_out|| over 4 tokens");
    double t[4] = {0};
    resid_stats(xin + 2, xout + 2, 0.5f, 1, 2, t);  // out_scale: (2, 0) read as (1, 0)
    check(close_rel(t[3], 2.0 / 3, 1e-12), "out_scale 0.5: update ||(1,0)-(3,0)||/3 = 2/3");
}

// per-token losses against model_forward's loss
static void test_token_losses(const char *fixtures) {
    printf("token_losses vs model_forward\n");
    const char *names[3] = {"g3_gqa", "g4_keqv", "g3_mqa"};
    for (int f = 0; f < 3; f++) {
        char *dir = path_join(fixtures, names[f]);
        Model m;
        model_load(&m, dir);
        int B = 2, T = 12, N = B * T;
        int tok[24], tgt[24];
        Rng r = rng_seed(7 + f);
        for (int n = 0; n < N; n++) tok[n] = (int)(rng_next(&r) % (uint64_t)m.c.V);
        for (int n = 0; n < N; n++) tgt[n] = n % T == T - 1 ? -1 : tok[n + 1];
        float loss = model_forward(&m, tok, tgt, B, T, 0, NULL), tl[24];
        token_losses(&m, tgt, tl);
        double s = 0;
        int k = 0, nan_ok = 1;
        for (int n = 0; n < N; n++)
            if (tgt[n] >= 0) s += tl[n], k++;
            else nan_ok &= tl[n] != tl[n];
        check(close_rel(s / k, loss, 1e-6) && nan_ok, "%s (softcap %g): mean %.7f vs model_forward %.7f", names[f],
              m.c.final_softcap, s / k, loss);
        model_free(&m);
        free(dir);
    }
}

// ------------------------------------------------------------------------------------------------
// counts, planner, memory

static Config fixture_config(const char *fixtures, const char *name) {
    char *dir = path_join(fixtures, name), *path = path_join(dir, "config.json");
    Config c;
    config_load(&c, path);
    free(path), free(dir);
    return c;
}

static const char *count_fixtures[6] = {"g3_gqa", "g3_mqa", "g3_bf16", "g4_keqv", "g4_kv", "g4_e2b"};

// shape.h's counter against model.h's parameter table of the config it describes: the whole model, and cuts of
// it (the --keep 0.5 plan; on dense models also half the layers, chosen by the rule)
static void counts_agree(const Config *c, const char *name) {
    Count n = config_count(c);
    int ok = n.nonemb == (double)count_params(c, 0) && n.total == (double)count_params(c, 1);
    Shape cuts[2] = {plan_keep(c, 0.5), plan_keep(c, 0.3)};
    if (!has_e2b_extras(c)) cuts[1].L = (c->L + 1) / 2;
    for (int k = 0; k < 2; k++) {
        int take[MAX_LAYERS];
        if (!choose_layers(c, NULL, cuts[k].L, default_full_every(c), take)) {  // the rule allows every cut here
            ok = 0;
            continue;
        }
        Count m = target_count(c, &cuts[k], take);
        Config t = target_config(c, &cuts[k], take);
        ok &= m.nonemb == (double)count_params(&t, 0) && m.total == (double)count_params(&t, 1);
    }
    check(ok, "%s: shape.h's counter == model.h's count_params (%.0f non-embedding), and on two cuts of it", name,
          n.nonemb);
}

static void test_counts(const char *fixtures) {
    printf("parameter counts\n");
    for (int i = 0; i < NPRESETS; i++) {
        Config c = preset_config(&presets[i]);
        counts_agree(&c, presets[i].name);
    }
    for (int i = 0; i < 6; i++) {
        Config c = fixture_config(fixtures, count_fixtures[i]);
        counts_agree(&c, count_fixtures[i]);
    }
    // published: Gemma 3 270M "170 million embedding parameters ... 100 million for our transformer blocks"
    // (stated to 2 significant digits); Gemma 4 31B "30.7B"; E2B "2.3B effective" (without the PLE table)
    Config s270 = preset_config(find_preset("270m")), s31 = preset_config(find_preset("31b")), se2 = preset_config(find_preset("e2b"));
    Count n270 = config_count(&s270), n31 = config_count(&s31), ne2 = config_count(&se2);
    check(fabs(n270.nonemb - 100e6) < 0.5e6 && fabs(n270.embed - 170e6) < 5e6,
          "gemma3-270m: %.4gM blocks (published 100M), %.4gM embedding (published 170M)", n270.nonemb / 1e6, n270.embed / 1e6);
    check(fabs(n31.total - 30.7e9) < 0.05e9, "gemma4-31b: %.4gB total (published 30.7B)", n31.total / 1e9);
    check(fabs(ne2.total - ne2.ple_table - 2.3e9) < 0.05e9, "gemma4-e2b: %.4gB effective (published 2.3B)",
          (ne2.total - ne2.ple_table) / 1e9);
}

// every rule a plan must satisfy, checked on the JSON the planner writes (parsed by model.h) and by prune's own
// target rules (shape.h's check_target: a plan prune would refuse fails the test)
static void check_plan(const Config *s, const Candidate *cd, double budget, const PlanOpts *po, const char *what) {
    cJSON *j = plan_json(s, "test", cd, budget, po->mode);
    char *text = cJSON_Print(j);  // through text, as prune.c reads the file (the floats are raw JSON items)
    cJSON *back = cJSON_Parse(text);
    Config t;
    config_from_json(&t, back, what);
    cJSON_Delete(back);
    free(text);
    const Config *c = &t;
    Count n = config_count(&t);
    double got = count_of(&n, po->mode), err = (got - budget) / budget;
    int ok = fabs(err) <= po->tol, mult = po->mult;
    ok &= c->d % c->H == 0 && c->d % mult == 0 && c->F % mult == 0 && c->H % c->K == 0;
    ok &= c->D == s->D && c->Dg == s->Dg && c->d <= s->d && c->F <= s->F && c->H <= s->H && c->L <= s->L;
    if (has_e2b_extras(s))  // only query heads and the FFN move
        ok &= c->L == s->L && c->d == s->d && c->K == s->K && c->Kg == s->Kg && c->P == s->P && c->n_shared == s->n_shared;
    else ok &= c->H / c->K == s->H / s->K && c->H / c->Kg == s->H / s->Kg;
    // layers: the rule on the target's own layer_types, and they match the source layers kept
    int keep_all[MAX_LAYERS];
    for (int l = 0; l < c->L; l++) keep_all[l] = 1;
    ok &= layers_ok(c, keep_all, po->N);
    const cJSON *sl = json_get(j, "source_layers");
    ok &= sl && cJSON_GetArraySize(sl) == c->L;
    for (int l = 0; ok && l < c->L; l++) ok &= s->full[(int)cJSON_GetArrayItem(sl, l)->valuedouble] == c->full[l];
    check_target(s, &cd->t, po->N, 0, what);  // prune's rules (fails the test program on a refusal)
    check(ok, "%s: L %d d %d H %d K %d F %d -> %.4g (%+.2f%% of %.4g)", what, c->L, c->d, c->H, c->K, c->F, got,
          100 * err, budget);
    cJSON_Delete(j);
}

static void test_planner(void) {
    printf("planner\n");
    FamilyFit fit = family_fit();
    Candidate best[2];
    const double frac[4] = {0.7, 0.5, 0.3, 0.2};
    for (int i = 0; i < NPRESETS; i++) {
        Config s = preset_config(&presets[i]);
        PlanOpts po = {0, plan_multiple_default(s.d), 0.02, default_full_every(&s), NULL, &fit};
        for (po.mode = 0; po.mode < 3; po.mode += 2)
            for (int k = 0; k < 4; k++) {
                Count sn = config_count(&s);
                double budget = frac[k] * count_of(&sn, po.mode);
                int found = plan_search(&s, budget, &po, best, 1);
                char what[256];
                snprintf(what, sizeof what, "%s %.0f%% of %s", presets[i].name, 100 * frac[k], count_names[po.mode]);
                if (has_e2b_extras(&s)) {  // E2B: the smallest cut (one query head per kv head, the FFN at the multiple)
                    Shape t = shape_of(&s);
                    t.H = s.K / gcd_i(s.K, s.Kg) * s.Kg, t.F = po.mult;
                    Count mn = target_count(&s, &t, NULL);
                    if (count_of(&mn, po.mode) > budget * (1 + po.tol)) {
                        check(!found, "%s: below the smallest cut (%.4g), no plan", what, count_of(&mn, po.mode));
                        continue;
                    }
                }
                if (!found) {
                    check(0, "%s: no plan", what);
                    continue;
                }
                check_plan(&s, &best[0], budget, &po, what);
            }
    }
    // the seed's question: Gemma 4 31B (60 layers) -> 8B / 4B / 2B / 1.5B
    Config s = preset_config(find_preset("31b"));
    PlanOpts po = {COUNT_TOTAL, 128, 0.02, default_full_every(&s), NULL, &fit};
    const double b31[4] = {8e9, 4e9, 2e9, 1.5e9};
    for (int k = 0; k < 4; k++) {
        char what[64];
        snprintf(what, sizeof what, "gemma4-31b -> %.3gB total", b31[k] / 1e9);
        if (plan_search(&s, b31[k], &po, best, 1)) check_plan(&s, &best[0], b31[k], &po, what);
        else check(0, "%s: no plan", what);
    }
    // with a profile: the least important removable layer goes first; a full layer whose removal would
    // break the constraint stays even when it is the least important
    Config g = preset_config(find_preset("gemma3-1b"));
    double imp[MAX_LAYERS];
    int keep[MAX_LAYERS];
    for (int l = 0; l < g.L; l++) imp[l] = 1 + l;
    imp[7] = 0.1, imp[11] = 0.05;  // 11 is full: dropping it leaves 6..16 without one
    int chose = choose_layers(&g, imp, g.L - 1, 6, keep);
    check(chose && !keep[7] && keep[11], "profile: drops layer 7 (least important removable), keeps full layer 11");
    chose = choose_layers(&g, NULL, 20, 6, keep);
    int spread = chose, nf = 0;
    for (int l = 0; chose && l < g.L; l++) nf += keep[l] && g.full[l];
    spread = spread && keep[0] && keep[23] && nf >= 3;  // the first sliding and the last full layer; at least 20 x 4/26 full
    check(spread && layers_ok(&g, keep, 6), "no profile: 20 of 26 layers evenly spaced (%d full) satisfy the constraint", nf);
}

// profile memory's activation figures against what model_alloc_acts really allocates for B x T tokens: each block's
// size as glibc's malloc_usable_size reports it (it rounds a request up by < 16 bytes: < 1 value per token at
// N = 16) and, through mallinfo2, that nothing else is allocated. blas_init keeps blocks out of mmap.
static void memory_vs_alloc(const char *fixtures, const char *name) {
    const int B = 2, T = 8, N = B * T;
    Model m;
    memset(&m, 0, sizeof m);
    m.c = fixture_config(fixtures, name);
    const Config *c = &m.c;
    blas_init();
    struct mallinfo2 before = mallinfo2();
    model_alloc_acts(&m, B, T);
    struct mallinfo2 after = mallinfo2();
    double layers = 0, max_layer = 0, inuse = (double)malloc_usable_size(m.act) + 8;  // the LayerActs array
    for (int l = 0; l < c->L; l++) {
        size_t u = malloc_usable_size(m.act[l].x);
        double v = (double)(u / (4 * (size_t)N));
        layers += v, max_layer = v > max_layer ? v : max_layer, inuse += (double)u + 8;  // + glibc's chunk header
    }
    double model = (double)(malloc_usable_size(m.xL) / (4 * (size_t)N));
    double scratch = (double)(malloc_usable_size(m.scratch) / (4 * (size_t)N));
    inuse += (double)malloc_usable_size(m.xL) + 8 + (double)malloc_usable_size(m.scratch) + 8;
    MemOpts o = {OPT_ADAMW, 1, 0, 0, 1, B, T, 2, 4, 4, 192, 0};
    MemUse u = mem_use(c, &o);
    o.ckpt = 1;
    MemUse uc = mem_use(c, &o);
    double delta = (double)(after.uordblks - before.uordblks);
    check(u.act_per_token == layers + model && uc.act_per_token == (double)c->L * c->d + max_layer + model &&
              u.scratch == (double)N * scratch * 4 && delta == inuse,
          "%s: activations %.0f values/token (checkpointing %.0f), scratch %.0f = what model_alloc_acts allocates "
          "(%.0f bytes in all)", name, u.act_per_token, uc.act_per_token, scratch, delta);
    model_free_acts(&m);
}

static void test_memory(const char *fixtures) {
    printf("memory (parameters by hand for the g3_mqa fixture: V 256, d 48, L 3, H 4, K 1, D 16, F 80)\n");
    // parameters per layer: q 64x48 = 3072, k 16x48 = 768, v 768, o 48x64 = 3072, gate/up/down 3x80x48 = 11520,
    // four norms 4x48 = 192, q/k norms 2x16 = 32: 19424; 3 layers + final norm 48 = 58320; + embedding
    // 256x48 = 12288 -> P = 70608, of which 2-D hidden matrices (3072+768+768+3072+11520) x 3 = 57600.
    const double P = 70608, Pmat = 57600;
    Config s = fixture_config(fixtures, "g3_mqa");
    MemOpts o = {OPT_ADAMW, 1, 0, 0, 1, 1, 8, 2, 4, 2, 192, 0};
    MemUse u = mem_use(&s, &o);
    // the head (model.h head_work) at 8 tokens of V 256: one chunk of the 8 rows, one tile of the whole vocabulary
    // (4 MiB holds 8 x 256 floats): 8 row states of 16 B + 8 x 256 logits + 8 losses (4 B) + 8 no-target ids (4 B)
    double head = 8 * 16 + 4 * (8 * 256 + 8) + 4 * 8;
    check(u.weights == 2 * P && u.master == 4 * P && u.grads == 4 * P && u.states == 8 * P,
          "adamw: weights 2P, master 4P, gradients 4P, states 8P (P = %.0f)", P);
    check(u.acts == 8 * u.act_per_token * 2 && u.head == head && u.total == 18 * P + u.acts + u.scratch + head,
          "total = 18 P + activations (8 tokens x %.0f values x 2 B) + scratch + head (%.0f B)", u.act_per_token, head);
    const char *fx[3] = {"g3_mqa", "g4_keqv", "g4_e2b"};  // E2B: 2F layers, per-layer inputs, K/V sent back
    for (int i = 0; i < 3; i++) memory_vs_alloc(fixtures, fx[i]);
    o.ckpt = 0, o.opt = OPT_ADAMW8;
    u = mem_use(&s, &o);
    check(u.states == 2 * P + 8 * ceil(P / 256), "adamw8: 2P + 8 ceil(P / 256) = %.0f", u.states);
    o.opt = OPT_MUON;
    u = mem_use(&s, &o);
    check(u.states == 4 * Pmat + 8 * (P - Pmat), "muon: 4 x %.0f (matrices) + 8 x %.0f (the rest)", Pmat, P - Pmat);
    o.opt = OPT_ADAMW, o.gpus = 4, o.zero = 1;
    u = mem_use(&s, &o);
    check(u.weights == 2 * P && u.grads == 4 * P && u.master == P && u.states == 2 * P, "ZeRO 1 over 4: master, states / 4");
    o.zero = 2;
    u = mem_use(&s, &o);
    check(u.grads == P && u.weights == 2 * P, "ZeRO 2 over 4: gradients / 4 too");
    o.zero = 3;
    u = mem_use(&s, &o);
    check(u.weights == P / 2, "ZeRO 3 over 4: weights / 4 too");
    // the seed's case: Gemma 4 31B, one 192 GB MI300X: AdamW fp32 states alone ~ 8 B x 30.7B = 245.6 GB
    Config s31 = preset_config(find_preset("31b"));
    MemOpts o31 = {OPT_ADAMW, 1, 0, 0, 1, 1, 4096, 2, 4, 2, 192, 0};
    u = mem_use(&s31, &o31);
    // 4096 tokens: chunks of 2048 rows (head_rows), tiles of 2048 x 512 floats (4 MiB, head_tile), one per thread
    // (at most 8); 512 tiles in 8 runs (head_groups), each with 2048 row states and, after the first, a 2048 x d dxf
    // part; the first 32 tiles of each run kept between the passes (head_keep: 1 GiB = 256 tiles of 4 MiB)
    int team = omp_get_max_threads() < 8 ? omp_get_max_threads() : 8;
    head = 8 * 2048 * 16 + 4 * ((double)team * 2048 * 512 + 7.0 * 2048 * s31.d + 4096) + 4 * 2048 +
           4.0 * 8 * 32 * 2048 * 512;
    check(u.head == head, "31B: the head's working memory %.0f B: %d 2048 x 512 logits tiles, 8 runs' row states and "
          "dxf parts, 256 kept tiles", u.head, team);
    check(fabs(u.states / 1e9 - 245.6) < 0.1 && !u.fits, "31B: AdamW states %.1f GB; the run does not fit 192 GB",
          u.states / 1e9);
}

// hip/plan.h's parameter block (what ./profile memory --device gpu and gpu_create share), without a GPU: for each
// storage option every tensor has a place of its own in each buffer, at an offset congruent to its table offset
// mod 8 (the optimizers' 16-byte loads), the buffers hold exactly what the option says (the matrices' weights or
// gradients leave the fp32 ones), and the 8-bit blocks are model.h's: each unit's first element and first block, and
// nblocks, equal optimizer_init's (adamw8_shard over the world of one), so the host arrays train.c saves are what
// gpu_copy_adamw8 moves. Exact (integer arithmetic).
static void test_gpu_plan(const char *fixtures) {
    printf("the GPU's parameter block (hip/plan.h) against model.h's table and 8-bit blocks\n");
    const char *names[] = {"g3_mqa", "g4_keqv"};
    for (int f = 0; f < 2; f++) {
        Config c = fixture_config(fixtures, names[f]);
        ParamTable tab;
        param_table(&c, &tab);
        size_t nmat = 0;
        GpuSpec *s = gpu_spec_from_config(&c, &tab, 1.0f);
        for (int i = 0; i < tab.n; i++) nmat += plan_is_matrix(s, i) ? s->tensor_off[i + 1] - s->tensor_off[i] : 0;
        Optimizer o8;
        optimizer_init(&o8, &tab, OPT_ADAMW8, 0.9f, 0.95f, 1e-8f, 0.0f);
        for (int opt = 0; opt < 4; opt++) {
            s->grad_bf16 = opt & 1, s->bf16_only = opt >> 1, s->optimizer = GPU_ADAMW8;
            GpuPlan p;
            gpu_plan_layout(s, &p);
            int placed = 1, blocks = p.nblocks == o8.nblocks;
            for (int b = 0; b < 2; b++) {  // b 0: w32 (tensors with a master), 1: the gradients (g32 and g16 apart)
                for (int i = 0; i < tab.n; i++) {
                    int mat = plan_is_matrix(s, i), in32 = b == 0 ? !(s->bf16_only && mat) : !(s->grad_bf16 && mat);
                    if (b == 0 && !in32) continue;
                    size_t at = b == 0 ? p.wofs[i] : p.gofs[i], len = s->tensor_off[i + 1] - s->tensor_off[i];
                    size_t cap = b == 0 ? p.n_w32 : in32 ? p.n_g32 : p.n_g16;
                    placed &= at % 8 == s->tensor_off[i] % 8 && at + len <= cap;
                    for (int k = 0; k < i; k++) {  // no two tensors of one buffer overlap
                        int kmat = plan_is_matrix(s, k), k32 = b == 0 ? !(s->bf16_only && kmat) : !(s->grad_bf16 && kmat);
                        if (k32 != in32) continue;
                        size_t ak = b == 0 ? p.wofs[k] : p.gofs[k], lk = s->tensor_off[k + 1] - s->tensor_off[k];
                        placed &= ak + lk <= at || at + len <= ak;
                    }
                }
            }
            for (int u = 0; u <= s->q8_units; u++) {
                blocks &= p.q8[u] == (u < s->q8_units ? o8.whole.u[u].at : o8.whole.shard);
                blocks &= p.q8[s->q8_units + 1 + u] == (u < s->q8_units ? o8.blocks.u[u].at : o8.blocks.shard);
            }
            size_t want32 = s->bf16_only ? tab.total - nmat : tab.total;
            int sizes = p.n_w32 >= want32 && p.n_w32 < want32 + 8 * (size_t)tab.n &&
                        (s->grad_bf16 ? p.n_g16 >= nmat && p.n_g16 < nmat + 8 * (size_t)tab.n : p.n_g16 == 0 && p.n_g32 == tab.total);
            check(placed && blocks && sizes && p.states >= optimizer_bytes(&o8) && p.states < optimizer_bytes(&o8) + 1024,
                  "%s, %s gradients, %s: every tensor in place (mod 8), buffers of the right size, 8-bit blocks = "
                  "optimizer_init's (%zu)", names[f], s->grad_bf16 ? "bf16" : "fp32", s->bf16_only ? "bf16-only weights" :
                  "fp32 master", p.nblocks);
            gpu_plan_free(&p);
        }
        optimizer_free(&o8);
        gpu_spec_free(s);
        free(tab.e);
    }
}

// ZeRO 2 and 3's gradient (and stage 3's bf16 weight) layout (hip/plan.h plan_grad_buckets), without a GPU: on the
// partitions of 1-3 ranks, each tensor sits at an offset congruent to its table offset mod 8, its unit's tensors at
// their table distances from the unit's start, the first and last units apart from everything, layer l in bucket
// l % 2 (layers of one parity at one base, give or take the mod-8 shift), no two tensors a layer can hold at once
// (its own, the other bucket's, the whole units') overlapping, and everything inside g32; stage 3's wb is g32's size.
static void test_gpu_buckets(const char *fixtures) {
    printf("ZeRO 2 and 3 on the GPU: the buckets of hip/plan.h\n");
    const char *names[] = {"g3_gqa", "g4_keqv"};
    for (int f = 0; f < 2; f++) {
        Config c = fixture_config(fixtures, names[f]);
        ParamTable tab;
        param_table(&c, &tab);
        for (int world = 1; world <= 3; world++)
            for (int stage = 2; stage <= 3; stage++) {
                GpuSpec *s = gpu_spec_from_config(&c, &tab, 1.0f);
                ZeroPlan z = zero_plan(&tab, c.L, stage, world - 1, world);
                gpu_spec_zero(s, &z);
                GpuPlan p;
                gpu_plan_layout(s, &p);
                int ok = s->shard_grads && s->shard_weights == (stage == 3) && p.n_wb == (stage == 3 ? p.n_g32 : tab.total);
                int *unit = (int *)mallocCheck(sizeof(int) * (size_t)tab.n);
                for (int i = 0; i < tab.n; i++) {
                    int u = 0;
                    while (u + 1 < z.nunit && tab.e[i].offset >= z.u[u + 1].off) u++;
                    unit[i] = u;
                    size_t at = p.gofs[i], len = tab.e[i].rows * tab.e[i].cols;
                    ok &= at % 8 == tab.e[i].offset % 8 && at + len <= p.n_g32;
                    ok &= at - p.uofs[u] == tab.e[i].offset - z.u[u].off;
                }
                for (int u = 3; u + 1 < z.nunit; u++) ok &= p.uofs[u] - p.uofs[u] % 8 == p.uofs[u - 2] - p.uofs[u - 2] % 8;
                for (int i = 0; i < tab.n; i++)
                    for (int k = 0; k < i; k++) {  // together on the device: not layers of one parity
                        int a = unit[i], b = unit[k], layers = a > 0 && a + 1 < z.nunit && b > 0 && b + 1 < z.nunit;
                        if (layers && a != b && a % 2 == b % 2) continue;
                        size_t ai = p.gofs[i], li = tab.e[i].rows * tab.e[i].cols, ak = p.gofs[k], lk = tab.e[k].rows * tab.e[k].cols;
                        ok &= ak + lk <= ai || ai + li <= ak;
                    }
                check(ok, "%s, %d rank(s), ZeRO %d: g32 %zu floats for a table of %zu, every tensor in its unit's place, the "
                      "first and last units and the two buckets apart", names[f], world, stage, p.n_g32, tab.total);
                free(unit);
                gpu_plan_free(&p);
                zero_plan_free(&z);
                gpu_spec_free(s);
            }
        free(tab.e);
    }
}

// ------------------------------------------------------------------------------------------------
// end to end: a tiny model whose statistics are known, shards, and the commands

static const char *tiny_config =
    "{\"model_type\": \"gemma3_text\", \"vocab_size\": 261, \"hidden_size\": 64, \"intermediate_size\": 128,"
    " \"num_hidden_layers\": 4, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": 16,"
    " \"sliding_window\": 16, \"max_position_embeddings\": 256, \"query_pre_attn_scalar\": 16,"
    " \"layer_types\": [\"sliding_attention\", \"full_attention\", \"sliding_attention\", \"sliding_attention\"]}";

static void write_tiny_model(const char *dir, int scale_wq1) {
    Model m;
    memset(&m, 0, sizeof(m));
    cJSON *j = cJSON_Parse(tiny_config);
    config_from_json(&m.c, j, "tiny config");
    cJSON_Delete(j);
    model_init_layout(&m);
    model_init_random(&m, 1234, 0.1);
    int d = m.c.d;
    for (int l = 0; l < m.c.L; l++)  // queries zero: every attention row uniform over the keys it sees
        memset(m.p.layer[l].wq, 0, sizeof(float) * (size_t)m.c.H * m.c.D * d);
    memset(m.p.layer[1].wup, 0, sizeof(float) * (size_t)m.c.F * d);  // layer 1: h = gelu(g) * 0
    for (int i = 0; i < d; i++) m.p.layer[2].post_attn_norm[i] = m.p.layer[2].post_ffn_norm[i] = -1;  // identity
    if (scale_wq1) {  // the diff test: layer 1's k_proj x 1.1, layer 0's input norm scale 1 -> 1.5
        for (size_t i = 0; i < (size_t)m.c.K * m.c.D * d; i++) m.p.layer[1].wk[i] *= 1.1f;
        for (int i = 0; i < d; i++) m.p.layer[0].in_norm[i] = 0.5f;
    }
    model_save(&m, dir, ST_F32);
    model_free(&m);
}

static void write_shards(const char *dir, int vocab) {
    const char *doms[2] = {"alpha", "beta"};
    Rng r = rng_seed(99);
    for (int k = 0; k < 2; k++)
        for (int split = 0; split < 2; split++) {
            uint64_t n = split ? 700 : 2000;
            uint32_t *t = (uint32_t *)mallocCheck(sizeof(uint32_t) * n);
            for (uint64_t i = 0; i < n; i++)  // a domain is a skewed distribution over part of the vocabulary
                t[i] = i % 50 == 0 ? 2 : (uint32_t)((k * 97 + (rng_next(&r) % 40) * (rng_next(&r) % 3 + 1)) % (uint64_t)vocab);
            char sub[512];
            snprintf(sub, sizeof sub, "%s/%s", dir, doms[k]);
            make_dirs(sub);
            char *p = path_join(sub, split ? "val.bin" : "train.bin");
            shard_write(p, (uint32_t)vocab, t, n, n / 50);
            free(p);
            free(t);
        }
}

// run a command function in this process with its log sent to dir/log (a forked child would hang: GNU
// OpenMP's thread pool does not survive fork). A failing command exits, and with it the test.
static int run_cmd(int (*fn)(int, char **), const char *const *args) {
    char *argv[64];
    int argc = 0;
    argv[argc++] = (char *)"profile";
    for (; args[argc - 1]; argc++) argv[argc] = (char *)args[argc - 1];
    argv[argc] = NULL;
    printf("  $ profile");
    for (int i = 1; i < argc; i++) printf(" %s", argv[i]);
    printf("\n");
    fflush(stdout);
    int saved = dup(1), fd = open("/dev/null", O_WRONLY);
    dup2(fd, 1);
    close(fd);
    int rc = fn(argc, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    return rc;
}

static const cJSON *jpath(const cJSON *j, const char *a, const char *b) {
    const cJSON *x = json_get(j, a);
    return x && b ? json_get(x, b) : x;
}

static void test_end_to_end(const char *tmp, const char *fixtures) {
    printf("end to end: stats, ablate, plan --profile, diff on a tiny model with known answers\n");
    char *model = path_join(tmp, "tiny"), *model2 = path_join(tmp, "tiny_changed"), *data = path_join(tmp, "shards");
    char *out = path_join(tmp, "stats"), *aout = path_join(tmp, "ablate"), *dout = path_join(tmp, "diff");
    write_tiny_model(model, 0);
    write_tiny_model(model2, 1);
    write_shards(data, 261);
    const int T = 48, W = 16;
    const char *sa[] = {"stats", "--model", model, "--data", data, "--out", out, "--calib-batches", "2", "--batch", "2", "--seq",
                        "48", NULL};
    check(run_cmd(cmd_stats, sa) == 0, "profile stats exits 0");
    char *sj = path_join(out, "stats.json");
    // the sums are taken in a fixed order: one thread gives the same bytes as several
    char *out1 = path_join(tmp, "stats1");
    int nth = omp_get_max_threads();
    omp_set_num_threads(1);
    const char *sa1[] = {"stats", "--model", model, "--data", data, "--out", out1, "--calib-batches", "2", "--batch", "2",
                         "--seq", "48", NULL};
    run_cmd(cmd_stats, sa1);
    omp_set_num_threads(nth);
    const char *same[4] = {"stats.json", "layers.csv", "heads.csv", "ffn.csv"};
    int identical = 1;
    for (int i = 0; i < 4; i++) {
        char *a = path_join(out, same[i]), *b = path_join(out1, same[i]);
        size_t na, nb;
        char *ta = read_file(a, &na), *tb = read_file(b, &nb);
        identical &= na == nb && !memcmp(ta, tb, na);
        free(ta), free(tb), free(a), free(b);
    }
    check(identical, "stats.json and the CSV files are byte-identical with 1 and %d threads", nth);
    free(out1);
    cJSON *j = json_read(sj);
    const cJSON *all = jpath(j, "domains", "all"), *layers = json_get(all, "layers");
    check(cJSON_GetArraySize(layers) == 4 && json_get(j, "domains") && jpath(j, "domains", "alpha") &&
              jpath(j, "domains", "beta"),
          "stats.json has 4 layers and the domains alpha, beta, all");
    // uniform attention: entropy of a row at position t = ln(keys seen), keys = t + 1 (full) or min(t + 1, W)
    double want_s = 0, want_f = 0;
    for (int t = 1; t < T; t++) want_f += log(t + 1.0), want_s += log(t + 1 < W ? t + 1.0 : W);
    want_s /= T - 1, want_f /= T - 1;
    const cJSON *he = json_get(all, "head_entropy"), *hn = json_get(all, "head_entropy_norm");
    double worst = 0, worstn = 0;
    for (int l = 0; l < 4; l++)
        for (int h = 0; h < 4; h++) {
            double e = cJSON_GetArrayItem(cJSON_GetArrayItem(he, l), h)->valuedouble;
            double en = cJSON_GetArrayItem(cJSON_GetArrayItem(hn, l), h)->valuedouble;
            worst = fmax(worst, fabs(e - (l == 1 ? want_f : want_s)) / (l == 1 ? want_f : want_s));
            worstn = fmax(worstn, fabs(en - 1));
        }
    check(worst < 1e-5 && worstn < 1e-5, "uniform attention: entropy = mean ln(keys seen) (%.6f sliding, %.6f full): "
          "worst rel err %.2g; entropy/ln(keys) = 1: worst err %.2g", want_s, want_f, worst, worstn);
    const cJSON *l1 = cJSON_GetArrayItem(layers, 1), *l2 = cJSON_GetArrayItem(layers, 2), *l0 = cJSON_GetArrayItem(layers, 0);
    check(json_num(l1, "ffn_never_active", -1, "") == 128 && json_num(l1, "ffn_near_zero", -1, "") == 1 &&
              json_num(l0, "ffn_never_active", -1, "") < 128,
          "layer 1 (up_proj zero): 128 of 128 channels never active, near-zero fraction 1; layer 0 has active ones");
    check(fabs(json_num(l2, "block_influence", -1, "")) < 1e-6 && fabs(json_num(l2, "rel_update", -1, "")) < 1e-6 &&
              json_num(l0, "block_influence", 0, "") > 1e-3,
          "layer 2 (post-norms -1): Block Influence %.2g, update %.2g; layer 0 BI %.3g", json_num(l2, "block_influence", -1, ""),
          json_num(l2, "rel_update", -1, ""), json_num(l0, "block_influence", 0, ""));
    // gradients: layer 2's branches are multiplied by 0, so its MLP weights get no gradient
    check(json_num(l2, "grad_mlp", -1, "") == 0 && json_num(l0, "grad_mlp", 0, "") > 0,
          "gradients: layer 2's MLP gets none (its output is scaled by 0), layer 0's does");
    const char *pngs[] = {"entropy_heads.png", "ffn_activity.png", "ffn_sparsity.png", "block_influence.png", "updates.png",
                          "residual_norm.png", "grad_layers.png", "grad_heads.png", "domains_bi.png"};
    for (int i = 0; i < 9; i++) {
        char *p = path_join(out, pngs[i]);
        int bars = strstr(pngs[i], "sparsity") || strstr(pngs[i], "influence"),
            lines = strstr(pngs[i], "updates") || strstr(pngs[i], "residual") || strstr(pngs[i], "layers.png");
        check_png(p, bars || lines ? 890 + 10 * lines : 0, bars ? 528 : lines ? 560 : 0);
        free(p);
    }
    const char *csvs[3] = {"layers.csv", "heads.csv", "ffn.csv"};
    int lines_want[3] = {1 + 3 * 4, 1 + 3 * 4 * 4, 1 + 4 * 128};
    for (int i = 0; i < 3; i++) {
        char *p = path_join(out, csvs[i]), *txt = read_file(p, NULL);
        int n = 0;
        for (char *c = txt; *c; c++) n += *c == '\n';
        check(n == lines_want[i], "%s: %d lines (header + one per row)", csvs[i], n);
        free(txt);
        free(p);
    }
    cJSON_Delete(j);
    // the same shape from its config alone, with model.h's random weights (no checkpoint): runs, and is not the
    // checkpoint's model (layer 1's up_proj is not zero there)
    char *cfg = path_join(model, "config.json"), *rout = path_join(tmp, "stats_random");
    const char *sr[] = {"stats", "--config", cfg, "--data", data, "--out", rout, "--calib-batches", "1", "--batch", "2",
                        "--seq", "48", "--no-grad", NULL};
    check(run_cmd(cmd_stats, sr) == 0, "profile stats --config (random weights) exits 0");
    char *rj = path_join(rout, "stats.json");
    cJSON *jr = json_read(rj);
    const cJSON *r1 = cJSON_GetArrayItem(json_get(jpath(jr, "domains", "all"), "layers"), 1);
    check(r1 && json_num(r1, "ffn_never_active", -1, "") < 128, "random weights: layer 1 has active FFN channels (%g never "
          "active of 128)", r1 ? json_num(r1, "ffn_never_active", -1, "") : -1);
    cJSON_Delete(jr);
    free(cfg), free(rout), free(rj);
    // plan with the profile: layer 2 has the lowest Block Influence (0): 3 of 4 layers drop it
    char *target = path_join(tmp, "target.json");
    const char *pa[] = {"plan", "--model", model, "--params", "30000", "--count", "non-embedding", "--profile", sj,
                        "--tolerance", "0.5", "--full-every", "0", "--out", target, NULL};
    check(run_cmd(cmd_plan, pa) == 0, "profile plan --profile stats.json exits 0");
    cJSON *tj = json_read(target);
    const cJSON *sl = json_get(tj, "source_layers");
    int has2 = 0;
    for (int i = 0; i < cJSON_GetArraySize(sl); i++) has2 |= cJSON_GetArrayItem(sl, i)->valuedouble == 2;
    check(!has2 && cJSON_GetArraySize(sl) < 4, "the planned %d-layer target drops layer 2 (Block Influence 0)",
          cJSON_GetArraySize(sl));
    cJSON_Delete(tj);
    // ablate: removing the identity layer 2 changes nothing; removing layer 0 does
    const char *ab[] = {"ablate", "--model", model, "--data", data, "--out", aout, "--calib-batches", "2", "--batch", "2", "--seq",
                        "48", NULL};
    check(run_cmd(cmd_ablate, ab) == 0, "profile ablate exits 0");
    char *ajp = path_join(aout, "ablate.json");
    cJSON *aj = json_read(ajp);
    const cJSON *al = json_get(aj, "layers");
    double d2a = json_num(jpath(cJSON_GetArrayItem(al, 2), "delta", NULL), "alpha", 1, "");
    double d2b = json_num(jpath(cJSON_GetArrayItem(al, 2), "delta", NULL), "beta", 1, "");
    double d0 = json_num(cJSON_GetArrayItem(al, 0), "delta_mean", 0, "");
    check(fabs(d2a) < 1e-6 && fabs(d2b) < 1e-6 && fabs(d0) > 1e-4,
          "removing layer 2: dloss %.2g / %.2g (alpha / beta); removing layer 0: %.4f", d2a, d2b, d0);
    const cJSON *pos = jpath(aj, "no_full_layers", "positions");
    check(pos && json_num(pos, "window", 0, "") == W && json_num(pos, "beyond_tokens", 0, "") > 0,
          "no-full ablation reports loss inside and beyond the window of %d", W);
    cJSON_Delete(aj);
    free(ajp);
    const char *apng[3] = {"ablate_layers.png", "ablate_domains.png", "ablate_positions.png"};
    for (int i = 0; i < 3; i++) {
        char *p = path_join(aout, apng[i]);
        check_png(p, i == 2 ? 900 : i == 0 ? 890 : 0, i == 2 ? 560 : i == 0 ? 528 : 0);
        free(p);
    }
    // diff: self -> zeros; changed -> 0.1 at layer 1's k_proj, 0.5 at layer 0's input norm ((1 + 0.5) vs 1)
    const char *df[] = {"diff", "--a", model2, "--b", model, "--out", dout, NULL};
    check(run_cmd(cmd_diff, df) == 0, "profile diff exits 0");
    char *djp = path_join(dout, "diff.json");
    cJSON *dj = json_read(djp);
    const cJSON *tt = json_get(dj, "tensors");
    int others_zero = 1;
    double k1 = 0, n0 = 0;
    for (const cJSON *e = tt->child; e; e = e->next) {
        if (streq(e->string, "model.layers.1.self_attn.k_proj.weight")) k1 = e->valuedouble;
        else if (streq(e->string, "model.layers.0.input_layernorm.weight")) n0 = e->valuedouble;
        else others_zero &= e->valuedouble == 0;
    }
    check(close_rel(k1, 0.1, 1e-6) && close_rel(n0, 0.5, 1e-6) && others_zero,
          "diff: k_proj of layer 1 %.7f (want 0.1), input norm of layer 0 %.7f (want 0.5), the rest 0", k1, n0);
    cJSON_Delete(dj);
    free(djp);
    char *dp = path_join(dout, "diff.png");
    check_png(dp, 0, 0);
    free(dp);
    // Gemma 4 (K = V, layer_scalar, its own full-layer shape): stats and ablate run and stay finite
    char *g4 = path_join(fixtures, "g4_keqv"), *d256 = path_join(tmp, "shards256"), *g4out = path_join(tmp, "g4");
    write_shards(d256, 256);
    const char *g4s[] = {"stats", "--model", g4, "--data", d256, "--out", g4out, "--calib-batches", "1", "--batch", "2", "--seq",
                         "24", NULL};
    check(run_cmd(cmd_stats, g4s) == 0, "profile stats on the Gemma 4 K=V fixture exits 0");
    char *g4j = path_join(g4out, "stats.json");
    cJSON *gj = json_read(g4j);
    const cJSON *gl = jpath(jpath(gj, "domains", "all"), "layers", NULL);
    int finite = cJSON_GetArraySize(gl) == 4;
    for (int l = 0; l < 4 && finite; l++) {
        const cJSON *e = cJSON_GetArrayItem(gl, l);
        double en = json_num(e, "entropy_norm", NAN, ""), bi = json_num(e, "block_influence", NAN, "");
        finite &= en >= 0 && en <= 1 + 1e-6 && bi >= 0 && bi <= 2 && json_num(e, "grad_attn", NAN, "") > 0;
    }
    check(finite, "Gemma 4: entropy/ln(keys) in [0, 1], BI in [0, 2], attention gradients > 0 on every layer");
    cJSON_Delete(gj);
    free(g4j);
    free(g4);
    free(d256);
    free(g4out);
    free(target);
    free(sj);
    free(model);
    free(model2);
    free(data);
    free(out);
    free(aout);
    free(dout);
}

int main(int argc, char **argv) {
    if (argc == 3 && streq(argv[1], "--check-png")) {
        int w, h;
        const char *why;
        int ok = png_valid(argv[2], &w, &h, &why);
        printf("%s: %s %dx%d\n", argv[2], why, ok ? w : 0, ok ? h : 0);
        return !ok;
    }
    const char *fixtures = argc > 1 ? argv[1] : "test/fixtures";
    char tmp[] = "/tmp/test_profile.XXXXXX";
    if (!mkdtemp(tmp)) fail("cannot make a temporary directory: %s", strerror(errno));
    double t0 = now_sec();
    test_png(tmp);
    test_stat_units();
    test_token_losses(fixtures);
    test_counts(fixtures);
    test_planner();
    test_memory(fixtures);
    test_gpu_plan(fixtures);
    test_gpu_buckets(fixtures);
    test_end_to_end(tmp, fixtures);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) printf("note: could not remove %s\n", tmp);
    printf("test_profile: %d checks, %d failed (%.1fs)\n", checks, failures, now_sec() - t0);
    return failures != 0;
}
