// prune.c — Sheared-LLaMA targeted structured pruning (Xia, Gao, Zeng, Chen, ICLR 2024) for Gemma 3,
// and the one-shot baselines on the same slicing path. Reads top to bottom as the method:
//   1. masks            hard-concrete masks, one log_alpha per structure element
//   2. sampling         z = clamp01(sigmoid((ln u − ln(1−u) + log_alpha)/β)·(r − l) + l)
//   3. expected sizes   keep probabilities, expected sparsity per row, GQA-aware parameter count
//   4. Lagrangian       Σ_m mean_rows( λ1 (s − t) + λ2 (s − t)² )
//   5. step             CE + Lagrangian: weights and masks descend, λ ascends (AdamW, clip, cosine)
//   6. deterministic    exactly the target count per row; layers under the sliding/full constraint
//   7. fold             each kept soft value into the weights, once
//   8. slice            the survivors as index lists, shape.h's slicer; HF directory, report, survivor map
//   9. baselines        magnitude, activation (Minitron), wanda, bi (ShortGPT), drop-full
//  10. checkpoints      masks, λ, weights, optimizer and data cursor; exact resume
//  11. targets and main
// Constants and formulas are the published code's (princeton-nlp/LLM-Shearing, llmshearing/models/l0_module.py);
// which structure owns which rows and columns, the parameter count and the layer rule are shape.h's. Where
// Gemma differs (GQA, head_dim != d/H, (1+w) norms, post-norms, the tied embedding and its sqrt(d) scale,
// sliding/full layers) the comment says so.
// Gemma 4 (dense text): full-attention layers have their own head_dim Dg and kv heads Kg (and, with
// attention_k_eq_v, no v_proj), so every per-layer count goes through layer_K / layer_D / layer_has_v;
// its norms scale by w (not 1 + w), the last kept layer must be full attention, and a dropped layer's
// layer_scalar (which still scaled the residual stream in the masked model) is carried into the next
// kept layer (section 7). Gemma 4 E2B/E4B (per-layer inputs, KV-shared layers, double-wide FFNs) prune their
// query heads and FFN channels only: layers, hidden dims and kv heads stay whole, so the per-layer input slices,
// the shared layers' K/V sources and the 2F FFNs stay consistent (shape.h's check_target says so).
#include "model.h"
#include "shape.h"
#include "data/mixture.h"
#include "plot.h"

// ================================================================================================
// 1. Masks
// ================================================================================================

#define HC_L (-0.1)                  // stretch interval [l, r] of the hard-concrete distribution
#define HC_R 1.1
#define HC_BETA (2.0 / 3.0)          // temperature β
#define HC_EPS 1e-6                  // u ~ U(ε, 1 − ε)
#define LA_INIT 5.0                  // log_alpha starts at 5 + N(0, 0.01²): keep everything
#define LA_NOISE 0.01
#define LA_MIN (-4.605170185988091)  // ln 0.01: log_alpha is clamped to [ln 0.01, ln 100] before every use
#define LA_MAX 4.605170185988091     // ln 100
#define HC_MAGIC 0.8                 // the deterministic mask's extra temperature ("magical_number")

// A mask is rows of elements; each row has a target count and its own term in the Lagrangian. The layer mask
// has one row per attention type (Gemma: its sliding layers, then its full-attention layers), each aiming at
// the count of its type that the target shape keeps (shape.h's full_layers_kept), so the masks learn a layer
// choice that obeys the sliding/full rule instead of leaving the rule to the final choice alone. A row whose
// target is the whole row (every layer under --keep, a single kv group, the query slots when only kv groups
// go) is idle: no mask (z = 1, never sampled), no term, no multiplier; otherwise its multipliers would grow
// without bound and its log_alphas, pinned at the clamp, would dominate the clipped gradient norm.
typedef struct {
    int rows;                // 1 for hidden, L for the per-layer masks, one per attention type for the layer mask
    int len[MAX_LAYERS];     // elements per row: layers of the type | K_l | H/K_l | F_l | d (shape.h's struct_len)
    size_t off[MAX_LAYERS];  // offset of each row from the mask's base
    size_t base, n;          // the mask's offset in the flat arrays, its element count
    int keep[MAX_LAYERS];    // target survivors per row
    int idle[MAX_LAYERS];    // keep == len: no mask on this row
} MaskShape;

// The multipliers λ1, λ2: one pair per mask (the published code's), and one more for the layer mask's
// full-attention row, so that each row of the layer mask is its own constraint.
#define NLAM (M_N + 1)
static const char *lam_name[NLAM] = {"layer", "kv_group", "query_slot", "ffn", "hidden", "layer_full"};
static inline int lam_slot(int m, int r) { return m == M_LAYER && r == 1 ? M_N : m; }

// All masks live in flat arrays (one AdamW call, one norm, one file): mask m row r starts at
// s[m].base + s[m].off[r].
typedef struct {
    MaskShape s[M_N];
    size_t n;
    float *la, *dla;     // log_alpha and d loss / d log_alpha
    float *u;            // this step's uniforms (kept so a finite-difference test can hold them fixed)
    float *z, *dzdla;    // z (sampled, or deterministic) and dz / d log_alpha
    float *dz;           // d loss / d z
    float *kp;           // keep probabilities P(z > 0) of the last Lagrangian
    float *zl, *dzl;     // [L] the layer gates in layer order (model.h's hook), and their gradient
    float *zh, *dzh;     // [L, H] the per-query-head product model.h applies, and its gradient
    int lpos[MAX_LAYERS];  // layer l is element lpos[l] of the layer mask
    int terms[NLAM];       // rows with a Lagrangian term under each multiplier pair (0: the pair is idle)
    float lam[2 * NLAM];   // λ1 of slot q at [q], λ2 at [NLAM + q]
    float dlam[2 * NLAM];
    Rng rng;
    int L, H;
} Masks;

#define MROW(M, arr, m, r) ((arr) + (M)->s[m].base + (M)->s[m].off[r])
#define MLAYER(M, arr, l) ((arr)[(M)->s[M_LAYER].base + (size_t)(M)->lpos[l]])  // layer l's element

static void mask_shape(Masks *M, int m, int rows, const int *len, const int *keep) {
    MaskShape *s = &M->s[m];
    s->rows = rows, s->base = M->n, s->n = 0;
    for (int r = 0; r < rows; r++) {
        s->off[r] = s->n, s->len[r] = len[r], s->keep[r] = keep[r], s->n += (size_t)len[r];
        s->idle[r] = keep[r] == len[r];
        if (!s->idle[r]) M->terms[lam_slot(m, r)]++;
    }
    M->n += s->n;
}

// Mask shapes and targets from the source config, the target shape (shape.h's structures) and kf, the full-attention
// layers the target keeps (full_layers_kept; < 0: one layer row for both types, as the one-shot baselines rank
// them); log_alpha = 5 + N(0, 0.01²), λ = 0.
static void masks_init(Masks *M, const Config *c, const Shape *t, int kf, uint64_t seed) {
    memset(M, 0, sizeof *M);
    M->L = c->L, M->H = c->H;
    int len[MAX_LAYERS], keep[MAX_LAYERS];
    for (int m = 0; m < M_N; m++) {
        int rows = struct_rows(c, m);
        if (m == M_LAYER) {  // row 0: the sliding layers, row 1: the full ones (one row when there is one type)
            int nfull = count_full(c), both = kf >= 0 && nfull > 0 && nfull < c->L;
            int ofs[2] = {0, both ? c->L - nfull : 0};
            for (int l = 0; l < c->L; l++) M->lpos[l] = both ? ofs[c->full[l]]++ : l;
            rows = both ? 2 : 1;
            len[0] = both ? c->L - nfull : c->L, keep[0] = both ? t->L - kf : t->L;
            len[1] = nfull, keep[1] = kf;
        } else
            for (int r = 0; r < rows; r++) len[r] = struct_len(c, m, r), keep[r] = struct_target(c, t, m, r);
        mask_shape(M, m, rows, len, keep);
    }
    float **arrays[] = {&M->la, &M->dla, &M->u, &M->z, &M->dzdla, &M->dz, &M->kp};
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++) *arrays[i] = (float *)callocCheck(sizeof(float) * M->n);
    M->zl = (float *)callocCheck(sizeof(float) * (size_t)c->L);
    M->dzl = (float *)callocCheck(sizeof(float) * (size_t)c->L);
    M->zh = (float *)callocCheck(sizeof(float) * (size_t)c->L * c->H);
    M->dzh = (float *)callocCheck(sizeof(float) * (size_t)c->L * c->H);
    M->rng = rng_seed(seed);
    for (size_t i = 0; i < M->n; i++) M->la[i] = (float)(LA_INIT + LA_NOISE * rng_normal(&M->rng));
}

static void masks_free(Masks *M) {
    float *arrays[] = {M->la, M->dla, M->u, M->z, M->dzdla, M->dz, M->kp, M->zl, M->dzl, M->zh, M->dzh};
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++) free(arrays[i]);
}

// v on every element of the idle rows (z = 1: no mask there; dz/d log_alpha = 0, keep probability 1)
static void masks_idle_fill(Masks *M, float *arr, float v) {
    for (int m = 0; m < M_N; m++)
        for (int r = 0; r < M->s[m].rows; r++)
            for (int i = 0; M->s[m].idle[r] && i < M->s[m].len[r]; i++) MROW(M, arr, m, r)[i] = v;
}

// What model.h's hooks read, in layer order: the layer gates zl[l] = z_layer[lpos[l]], and the query heads
// (head h of a layer is slot h % G of kv group h / G, G = H / K_l): zh[l, h] = z_group[l, h / G] · z_slot[l, h % G]
static void masks_compose(const Config *c, Masks *M) {
    for (int l = 0; l < c->L; l++) M->zl[l] = MLAYER(M, M->z, l);
    for (int l = 0; l < c->L; l++) {
        int G = c->H / layer_K(c, l);
        const float *zg = MROW(M, M->z, M_GROUP, l), *zs = MROW(M, M->z, M_SLOT, l);
        for (int h = 0; h < c->H; h++) M->zh[(size_t)l * c->H + h] = zg[h / G] * zs[h % G];
    }
}

// its chain rule: dz_layer[lpos[l]] = dzl[l];  dz_group[g] = Σ_s dzh[g·G + s]·z_slot[s],  dz_slot[s] = Σ_g dzh[g·G + s]·z_group[g]
static void masks_backward(const Config *c, Masks *M) {
    for (int l = 0; l < c->L; l++) MLAYER(M, M->dz, l) = M->dzl[l];
    for (int l = 0; l < c->L; l++) {
        int K = layer_K(c, l), G = c->H / K;
        const float *zg = MROW(M, M->z, M_GROUP, l), *zs = MROW(M, M->z, M_SLOT, l), *dzh = M->dzh + (size_t)l * c->H;
        float *dg = MROW(M, M->dz, M_GROUP, l), *ds = MROW(M, M->dz, M_SLOT, l);
        for (int g = 0; g < K; g++) dg[g] = 0;
        for (int s = 0; s < G; s++) ds[s] = 0;
        for (int h = 0; h < c->H; h++) dg[h / G] += dzh[h] * zs[h % G], ds[h % G] += dzh[h] * zg[h / G];
    }
}

// Point model.h's hooks at the masks (layer gate, per-head product, FFN channels, hidden dims).
static void masks_attach(Model *m, Masks *M) {
    m->zl = M->zl, m->dzl = M->dzl;
    m->zh = M->zh, m->dzh = M->dzh;
    m->zf = MROW(M, M->z, M_FFN, 0), m->dzf = MROW(M, M->dz, M_FFN, 0);
    m->zd = MROW(M, M->z, M_HIDDEN, 0), m->dzd = MROW(M, M->dz, M_HIDDEN, 0);
}

static void masks_detach(Model *m) {
    m->zl = m->zh = m->zf = m->zd = NULL;
    m->dzl = m->dzh = m->dzf = m->dzd = NULL;
    model_masks_changed(m);
}

// "| masks: layer sliding 4 -> 2, full 2 -> 1 | kv_group 2 -> 1 (x6) | query_slot idle ..." at the start of a run
static void masks_print(const Masks *M) {
    printf("| masks (elements -> target per row; idle: the target keeps the row, no mask, no term):");
    for (int m = 0; m < M_N; m++) {
        const MaskShape *s = &M->s[m];
        printf(" | %s", mask_name[m]);
        for (int r = 0, run = 1; r < s->rows; r += run, run = 1) {  // equal rows in a run are printed once
            while (m != M_LAYER && r + run < s->rows && s->len[r + run] == s->len[r] && s->keep[r + run] == s->keep[r]) run++;
            const char *type = m == M_LAYER && s->rows == 2 ? (r ? " full" : " sliding") : "";
            if (s->idle[r]) printf("%s%s idle (%d)", r ? "," : "", type, s->len[r]);
            else printf("%s%s %d -> %d", r ? "," : "", type, s->len[r], s->keep[r]);
            if (run > 1) printf(" x%d", run);
        }
    }
    printf("\n");
}

// ================================================================================================
// 2. Sampling (training): u ~ U(ε, 1−ε) fresh for every element at every step
// ================================================================================================

static inline double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

// the projection the published code applies before every use: log_alpha ∈ [ln 0.01, ln 100]
static void masks_project(Masks *M) {
    for (size_t i = 0; i < M->n; i++) M->la[i] = M->la[i] < LA_MIN ? (float)LA_MIN : M->la[i] > LA_MAX ? (float)LA_MAX : M->la[i];
}

// z = clamp01(sigmoid((ln u − ln(1−u) + log_alpha)/β)·(r − l) + l) and dz/d log_alpha (0 where clamped)
static void masks_from_u(Masks *M) {
    for (size_t i = 0; i < M->n; i++) {
        double u = M->u[i], s = sigmoid((log(u) - log1p(-u) + M->la[i]) / HC_BETA), zr = s * (HC_R - HC_L) + HC_L;
        M->z[i] = (float)(zr <= 0 ? 0 : zr >= 1 ? 1 : zr);
        M->dzdla[i] = (float)(zr > 0 && zr < 1 ? (HC_R - HC_L) * s * (1 - s) / HC_BETA : 0);
    }
    masks_idle_fill(M, M->z, 1.0f), masks_idle_fill(M, M->dzdla, 0.0f);
}

// One z per micro-batch and rank: every rank draws the uniforms of all `world` ranks and keeps those of its own
// `rank`, so the generator stays the same everywhere (a checkpoint holds one) and a step's draws are one sequence
// whatever the ranks: draw a·world + r is micro-batch a of rank r, and 2 ranks draw what 1 rank with
// --grad-accum 2 draws (the published run averages its 8 ranks' draws)
static void masks_sample(const Config *c, Masks *M, int rank, int world) {
    for (int r = 0; r < world; r++)
        for (size_t i = 0; i < M->n; i++) {
            float u = (float)(HC_EPS + (1 - 2 * HC_EPS) * rng_uniform(&M->rng));
            if (r == rank) M->u[i] = u;
        }
    masks_from_u(M);
    masks_compose(c, M);
}

// ================================================================================================
// 3. Expected sizes
// ================================================================================================

// P(z > 0) = sigmoid(log_alpha − β·ln(−l/r))  (the published score = 1 − cdf_qz(0))
static inline double keep_prob(double la) { return sigmoid(la - HC_BETA * log(-HC_L / HC_R)); }

static double row_sum(const Masks *M, const float *arr, int m, int r) {
    const float *p = MROW(M, arr, m, r);
    double s = 0;
    for (int i = 0; i < M->s[m].len[r]; i++) s += p[i];
    return s;
}

// Non-embedding parameters of the model the masks describe (shape.h's counter). `keep` holds one value per
// mask element: keep probabilities give the expected count, 0/1 the count of a slice.
static double params_from_keep(const Config *c, const Masks *M, const float *keep) {
    Kept k;
    memset(&k, 0, sizeof k);
    k.hidden = row_sum(M, keep, M_HIDDEN, 0);
    for (int l = 0; l < c->L; l++) {
        k.layer[l] = MLAYER(M, keep, l);
        k.group[l] = row_sum(M, keep, M_GROUP, l), k.slot[l] = row_sum(M, keep, M_SLOT, l), k.ffn[l] = row_sum(M, keep, M_FFN, l);
    }
    return params_kept(c, &k, 0);
}

// ================================================================================================
// 4. Lagrangian: Σ_q mean_rows( λ1_q (s − t) + λ2_q (s − t)² ) over the multiplier pairs q (one per mask,
//    one more for the layer mask's full-attention row) and the rows each one constrains (idle rows: none).
//    s = 1 − Σ P(z > 0) / row size (per layer for the [L,·] masks, per attention type for layers, scalar
//    for hidden), t = t_final · min(1, step / warmup_steps). Gradients: dL/dλ1 = s − t, dL/dλ2 = (s − t)², and
//    dL/d log_alpha_i = (λ1 + 2 λ2 (s − t)) · (−P_i (1 − P_i) / size), each averaged over the rows of q.
// ================================================================================================

// s_mean, t_mean [NLAM]: the mean expected and target sparsity of each pair's rows (NAN: an idle pair)
static double lagrangian(Masks *M, double warm, int want_grad, double *s_mean, double *t_mean) {
    double total = 0, ss[NLAM] = {0}, ts[NLAM] = {0};
    for (size_t i = 0; i < M->n; i++) M->kp[i] = (float)keep_prob(M->la[i]);
    masks_idle_fill(M, M->kp, 1.0f);
    for (int m = 0; m < M_N; m++)
        for (int r = 0; r < M->s[m].rows; r++) {
            if (M->s[m].idle[r]) continue;
            int q = lam_slot(m, r), len = M->s[m].len[r], rows = M->terms[q];
            double l1 = M->lam[q], l2 = M->lam[NLAM + q];
            double s = 1 - row_sum(M, M->kp, m, r) / len, t = (1 - (double)M->s[m].keep[r] / len) * warm, diff = s - t;
            total += (l1 * diff + l2 * diff * diff) / rows;
            ss[q] += s / rows, ts[q] += t / rows;
            if (!want_grad) continue;
            M->dlam[q] += (float)(diff / rows), M->dlam[NLAM + q] += (float)(diff * diff / rows);
            double g = (l1 + 2 * l2 * diff) / rows;
            const float *kp = MROW(M, M->kp, m, r);
            float *dla = MROW(M, M->dla, m, r);
            for (int i = 0; i < len; i++) dla[i] += (float)(g * (-(double)kp[i] * (1 - kp[i]) / len));
        }
    for (int q = 0; q < NLAM; q++) {
        if (s_mean) s_mean[q] = M->terms[q] ? ss[q] : NAN;
        if (t_mean) t_mean[q] = M->terms[q] ? ts[q] : NAN;
    }
    return total;
}

// ================================================================================================
// 5. Step: loss = CE(z) + Lagrangian. Weights lr 1e-4, masks +1.0, λ −1.0 (ascent: maximise over λ),
//    decoupled AdamW (0.9, 0.95, 1e-8, wd 0; the weights' 8-bit with --optimizer adamw8), clip 1.0 over
//    everything, one cosine schedule (10% warmup, floor 10%) scaling every group's rate.
// ================================================================================================

typedef struct {
    Model m;
    Masks M;
    Optimizer opt;                        // the weights' (model.h's state: resumes on either device)
    int opt_kind;                         // its kind: OPT_ADAMW (0) or OPT_ADAMW8 (--optimizer)
    float *la_m, *la_v;                   // of the log_alphas
    float lam_m[2 * NLAM], lam_v[2 * NLAM]; // of the λ
    int step, steps, warmup, lag_warmup;  // steps done, total, lr warmup, target warmup
    double lr, mask_lr, lambda_lr, lr_floor, clip;
    Step *S;                              // the device: working weights, forward, backward, the weights' optimizer
    int accum;                            // micro-batches per step (--grad-accum), each under its own z
    float *hook_prev;                     // the hooks' accumulated gradients after the previous micro-batch
} Pruner;

static int device = DEVICE_CPU;  // --device (main sets it once): where sheared steps and evaluations run
// the data-parallel ranks (hip/comm.h): `mpirun -np N ./prune ...` runs N of these, each with --batch sequences
// of every micro-batch and its own z draws; rank 0 prints and writes. One process is a world of 1.
static Comm comm = {0, 1, 0, 0, 0, NULL};

typedef struct {
    double ce, lag, s[NLAM], t[NLAM], params, gnorm, lr_factor;
} StepStats;

static const float ADAM_B1 = 0.9f, ADAM_B2 = 0.95f, ADAM_EPS = 1e-8f;

// the optimizer states and the step of so->device over the model as it is now
static void pruner_alloc(Pruner *P, const StepOpts *so) {
    optimizer_init(&P->opt, &P->m.tab, P->opt_kind, ADAM_B1, ADAM_B2, ADAM_EPS, 0.0f);
    P->la_m = (float *)callocCheck(sizeof(float) * P->M.n);
    P->la_v = (float *)callocCheck(sizeof(float) * P->M.n);
    masks_attach(&P->m, &P->M);
    P->S = step_open(&P->m, &P->opt, so);
}

// The CE of one step and its gradients over P->accum micro-batches (tok, tgt: [accum][B][T]), each under its own
// draw of z, as the published run's ranks each draw theirs (the first: the caller's masks_sample). The weights'
// gradients accumulate on the device (their sum); each micro-batch's hook gradients (the accumulated ones less
// the previous micro-batch's) go through its own z and dz/d log_alpha. Leaves the mean d CE / d log_alpha in
// M.dla and returns the mean CE. Data parallel: each rank's dla is its own draws'; their mean over the ranks is
// all-reduced here and the weights' by step_reduce, so the Lagrangian, the norm and every update of log_alpha and λ
// are the same on every rank.
static double masked_ce_grad(Pruner *P, const int *tok, const int *tgt) {
    Masks *M = &P->M;
    Step *S = P->S;
    const Config *c = &P->m.c;
    float *hook[4] = {M->dzl, M->dzh, MROW(M, M->dz, M_FFN, 0), MROW(M, M->dz, M_HIDDEN, 0)};
    size_t nh[4] = {(size_t)c->L, (size_t)c->L * c->H, M->s[M_FFN].n, M->s[M_HIDDEN].n}, BT = (size_t)S->B * S->T;
    int A = P->accum > 1 ? P->accum : 1;
    if (A > 1 && !P->hook_prev) P->hook_prev = (float *)mallocCheck(sizeof(float) * (nh[0] + nh[1] + nh[2] + nh[3]));
    double ce = 0;
    memset(M->dla, 0, sizeof(float) * M->n);
    step_zero_grad(S);
    for (int a = 0; a < A; a++) {
        if (a) masks_sample(c, M, comm.rank, comm.world);
        step_masks(S, M->zl, M->zh, MROW(M, M->z, M_FFN, 0), MROW(M, M->z, M_HIDDEN, 0));
        ce += step_forward(S, tok + a * BT, tgt + a * BT, 1);
        step_backward(S);
        step_mask_grads(S, hook[0], hook[1], hook[2], hook[3]);
        for (int k = 0, o = 0; A > 1 && k < 4; o += (int)nh[k], k++)  // this micro-batch's part
            for (size_t i = 0; i < nh[k]; i++) {
                float acc = hook[k][i];
                hook[k][i] = a ? acc - P->hook_prev[o + i] : acc, P->hook_prev[o + i] = acc;
            }
        masks_backward(c, M);
        for (size_t i = 0; i < M->n; i++) M->dla[i] += M->dz[i] * M->dzdla[i] / A;  // through this draw
    }
    if (comm.world > 1) {
        comm_allreduce(&comm, M->dla, M->n, COMM_F32);
        for (size_t i = 0; i < M->n; i++) M->dla[i] /= (float)comm.world;
    }
    return step_reduce(S, ce / A);  // the weights' gradients: summed over micro-batches, averaged over ranks
}

static StepStats prune_step(Pruner *P, const int *tok, const int *tgt) {
    StepStats st;
    Model *m = &P->m;
    Masks *M = &P->M;
    int step = ++P->step;
    masks_project(M);
    masks_sample(&m->c, M, comm.rank, comm.world);
    memset(M->dlam, 0, sizeof M->dlam);
    st.ce = masked_ce_grad(P, tok, tgt);
    double warm = P->lag_warmup > 0 ? fmin(1.0, (double)step / P->lag_warmup) : 1.0;
    st.lag = lagrangian(M, warm, 1, st.s, st.t);
    st.params = params_from_keep(&m->c, M, M->kp);
    // one global norm over weights, log_alphas and λ, as torch's clip_grad_norm_ over all parameter groups
    int A = P->accum > 1 ? P->accum : 1;  // the weights' gradients are the micro-batches' sum: their mean is 1/A of it
    double n2 = step_grad_sumsq(P->S) / ((double)A * A) + grad_norm2(M->dla, M->n) + grad_norm2(M->dlam, 2 * NLAM);
    st.gnorm = sqrt(n2);
    float coef = clip_coef(st.gnorm, P->clip);
    if (coef < 1.0f) {
        for (size_t i = 0; i < M->n; i++) M->dla[i] *= coef;
        for (int i = 0; i < 2 * NLAM; i++) M->dlam[i] *= coef;
    }
    st.lr_factor = lr_schedule(step, P->steps, P->warmup, 1.0, P->lr_floor);
    step_update(P->S, (float)(P->lr * st.lr_factor), 0.0f, coef / A, step);  // the weights: mean gradient, clipped
    adamw_update(M->la, M->dla, P->la_m, P->la_v, M->n, (float)(P->mask_lr * st.lr_factor), ADAM_B1, ADAM_B2, ADAM_EPS,
                 0.0f, step);
    adamw_update(M->lam, M->dlam, P->lam_m, P->lam_v, 2 * NLAM, (float)(-P->lambda_lr * st.lr_factor), ADAM_B1, ADAM_B2,
                 ADAM_EPS, 0.0f, step);
    return st;
}

// ================================================================================================
// 6. Deterministic masks: soft = sigmoid(log_alpha/β·0.8); exactly the target count per row survives
//    (the smallest are zeroed), and survivors keep their soft value, which is folded into the weights.
//    Idle rows have no mask: soft = 1, every element kept.
// ================================================================================================

static void soft_values(const Masks *M, float *soft) {
    for (size_t i = 0; i < M->n; i++) {
        double la = M->la[i] < LA_MIN ? LA_MIN : M->la[i] > LA_MAX ? LA_MAX : M->la[i];
        soft[i] = (float)sigmoid(la / HC_BETA * HC_MAGIC);
    }
    masks_idle_fill((Masks *)M, soft, 1.0f);
}

typedef struct {
    float s;
    int i;
} Ranked;

static int ranked_desc(const void *a, const void *b) {  // highest score first; ties: the lower index first
    const Ranked *x = (const Ranked *)a, *y = (const Ranked *)b;
    if (x->s != y->s) return x->s > y->s ? -1 : 1;
    return x->i - y->i;
}

// z = value (1 when value is NULL) on the `keep` highest-scoring elements of a row, 0 elsewhere
static void row_keep_top(const float *score, const float *value, int len, int keep, float *z) {
    Ranked *r = (Ranked *)mallocCheck(sizeof(Ranked) * (size_t)len);
    for (int i = 0; i < len; i++) r[i].s = score[i], r[i].i = i;
    qsort(r, (size_t)len, sizeof(Ranked), ranked_desc);
    for (int i = 0; i < len; i++) z[r[i].i] = i < keep ? (value ? value[r[i].i] : 1.0f) : 0.0f;
    free(r);
}

// The final masks: every row keeps exactly its target count of highest scores, at `value` (NULL: 1). The layers
// obey the sliding/full rule: the best-scoring set with each attention type's target count when the layer mask
// has a row per type (sheared), with any split the rule allows when it has one row (the one-shot baselines), or
// exactly the sliding layers (drop_full).
static void deterministic_masks(const Config *c, Masks *M, const float *score, const float *value, int full_every,
                                int drop_full) {
    for (int m = 0; m < M_N; m++)
        for (int r = 0; m != M_LAYER && r < M->s[m].rows; r++)
            row_keep_top(MROW(M, score, m, r), value ? MROW(M, value, m, r) : NULL, M->s[m].len[r], M->s[m].keep[r],
                         MROW(M, M->z, m, r));
    const MaskShape *sl = &M->s[M_LAYER];
    int take[MAX_LAYERS], typed = sl->rows == 2, n = sl->keep[0] + (typed ? sl->keep[1] : 0);
    double sd[MAX_LAYERS] = {0};
    for (int l = 0; l < c->L; l++) sd[l] = MLAYER(M, score, l);
    if (drop_full)
        for (int l = 0; l < c->L; l++) take[l] = !c->full[l];
    else if (!layers_best(c, sd, n, full_every, typed ? sl->keep[1] : -1, take))
        fail("internal: no layer choice satisfies the sliding/full constraint (checked at start)");
    for (int l = 0; l < c->L; l++) MLAYER(M, M->z, l) = take[l] ? (value ? MLAYER(M, value, l) : 1.0f) : 0.0f;
    masks_compose(c, M);
}

// What the published code evaluates on during pruning (eval_target_model=false): round(Σ P(z>0))
// survivors per row (round half to even, like Python's round), at their soft values.
static void expected_masks(const Config *c, Masks *M) {
    float *soft = (float *)mallocCheck(sizeof(float) * M->n);
    soft_values(M, soft);
    for (size_t i = 0; i < M->n; i++) M->kp[i] = (float)keep_prob(M->la[i] < LA_MIN ? LA_MIN : M->la[i] > LA_MAX ? LA_MAX : M->la[i]);
    masks_idle_fill(M, M->kp, 1.0f);
    for (int m = 0; m < M_N; m++)
        for (int r = 0; r < M->s[m].rows; r++) {
            int len = M->s[m].len[r], keep = (int)nearbyint(row_sum(M, M->kp, m, r));
            if (m == M_HIDDEN && keep < 1) keep = 1;  // the residual stream needs a dimension
            row_keep_top(MROW(M, soft, m, r), MROW(M, soft, m, r), len, keep, MROW(M, M->z, m, r));
        }
    masks_compose(c, M);
    free(soft);
}

// ================================================================================================
// 7. Fold: each kept soft value multiplies the weights exactly once.
//    Gemma 3's (1+w) norms: (1 + w')  = (1 + w)·z, i.e. w' = (1 + w)·z − 1 (Gemma 4's w norms: w' = w·z).
//    hidden z: embedding columns (tied: this also covers the output head, so NOT the final norm), the
//              outputs of input_layernorm and pre_feedforward_layernorm, and of both post-norms;
//    layer z:  both post-norms (the gate sits after them);  head z = z_group·z_slot: o_proj columns;
//    FFN z:    down_proj columns;
//    embedding scale: loaders recompute sqrt(d) from the new hidden_size, so the embedding gets
//              a = scale(d_src)/scale(d_tgt) (each rounded as the loader rounds it for its dtype) and the
//              final norm 1/a — the final norm is the only reader the tied output matrix sees.
//    Gemma 4's layer_scalar s_l multiplies the whole stream after layer l: x' = (x + b_attn + b_ffn)·s_l.
//              A dropped layer (z = 0) still did x' = x·s_l in the masked model. With c = the product of
//              the scalars dropped since the previous kept layer, the sliced stream enters the next kept
//              layer as x/c; that layer's post-norms get 1/c (its branches then add b/c) and its scalar
//              gets c, so its output — and everything after it — is the masked model's exactly. Only its
//              input and pre-FFN norms see x/c: RMSNorm(x/c) = RMSNorm(x) up to eps (ε·c² against mean x²).
//              Scalars dropped after the last kept layer go into that layer's scalar.
// ================================================================================================

// What the fold does to each tensor, planned once: the embedding scale a, and per kept layer the 1/c its post-norms
// take and the c (c1) its layer_scalar takes, the last kept layer's also the trailing c (c2). scal: Gemma 4's
// layer_scalar values [L] (NULL for Gemma 3).
typedef struct {
    double a;
    float inv[MAX_LAYERS];
    double c1[MAX_LAYERS];
    double c2;
    int last_kept;
} Fold;

static Fold fold_plan(const Config *c, const Masks *M, double a, const float *scal) {
    Fold f;
    memset(&f, 0, sizeof f);
    f.a = a, f.last_kept = -1;
    double carry = 1;  // Gemma 4: product of the layer scalars dropped since the last kept layer
    for (int l = 0; l < c->L; l++) {
        if (M->zl[l] == 0) {
            if (c->arch == 4) carry *= scal[l];
            continue;
        }
        f.inv[l] = (float)(1.0 / carry), f.c1[l] = carry;
        carry = 1, f.last_kept = l;
    }
    f.c2 = carry;
    return f;
}

// tensor e's values x folded (the tensors the masks do not touch, and a dropped layer's, stay as they are)
static void fold_tensor(const Config *c, const Masks *M, const Fold *f, const PEntry *e, float *x) {
    float off = norm_offset(c);
    const float *zd = MROW(M, M->z, M_HIDDEN, 0);
    int d = c->d, H = c->H, l = e->layer;
    if (e->kind == T_EMBED) {
        for (size_t v = 0; v < (size_t)c->V; v++)
            for (int i = 0; i < d; i++)
                if (zd[i] != 0) x[v * d + i] *= (float)(zd[i] * f->a);
        return;
    }
    if (e->kind == T_FINAL_NORM) {
        for (int i = 0; i < d; i++) x[i] = (float)((off + x[i]) / f->a - off);
        return;
    }
    if (l < 0 || M->zl[l] == 0) return;
    float zl = M->zl[l], inv = f->inv[l];
    switch (e->kind) {
    case T_LAYER_SCALAR:
        if (c->arch != 4) break;
        x[0] = (float)(x[0] * f->c1[l]);
        if (l == f->last_kept) x[0] = (float)(x[0] * f->c2);
        break;
    case T_IN_NORM:
    case T_PRE_FFN_NORM:
        for (int i = 0; i < d; i++)
            if (zd[i] != 0) x[i] = (off + x[i]) * zd[i] - off;
        break;
    case T_POST_ATTN_NORM:
    case T_POST_FFN_NORM:
        for (int i = 0; i < d; i++)
            if (zd[i] != 0) x[i] = (off + x[i]) * (zd[i] * zl * inv) - off;
        break;
    case T_WO: {
        const float *zh = M->zh + (size_t)l * H;
        int D = layer_D(c, l);
        for (int i = 0; i < d; i++)
            for (int h = 0; h < H; h++)
                for (int k = 0; k < D; k++) x[(size_t)i * H * D + h * D + k] *= zh[h];
        break;
    }
    case T_WDOWN: {
        const float *zf = MROW(M, M->z, M_FFN, l);
        int F = layer_F(c, l);  // E2B: 2F on the KV-shared layers
        for (int i = 0; i < d; i++)
            for (int j = 0; j < F; j++) x[(size_t)i * F + j] *= zf[j];
        break;
    }
    }
}

// ================================================================================================
// 8. Slice: the surviving structure as index lists (from the nonzero deterministic z), then shape.h's slicer.
// ================================================================================================

static int nonzero_indices(const float *z, int n, int *idx) {
    int k = 0;
    for (int i = 0; i < n; i++)
        if (z[i] != 0) idx[k++] = i;
    return k;
}

static Survivors survivors_of(const Config *c, const Masks *M) {
    Survivors sv;
    survivors_alloc(c, &sv);
    sv.L = nonzero_indices(M->zl, c->L, sv.layer);
    sv.d = nonzero_indices(MROW(M, M->z, M_HIDDEN, 0), c->d, sv.hid);
    int seen[2] = {0, 0};  // a kept layer of each attention type (Gemma 4's full layers have their own K)
    for (int k = 0; k < sv.L; k++) {
        int l = sv.layer[k], K = layer_K(c, l), G = c->H / K, type = c->arch == 4 && c->full[l];
        int nk = nonzero_indices(MROW(M, M->z, M_GROUP, l), K, sv.group + (size_t)k * c->H);
        int ng = nonzero_indices(MROW(M, M->z, M_SLOT, l), G, sv.slot + (size_t)k * c->H);
        int wide = layer_F(c, l) / c->F;  // E2B's double-wide layers keep 2F_t of their 2F channels
        int nf = nonzero_indices(MROW(M, M->z, M_FFN, l), layer_F(c, l), sv.ffn + (size_t)k * max_F(c)) / wide;
        int *tk = type ? &sv.Kg : &sv.K, *tg = type ? &sv.Gg : &sv.G;
        if ((seen[type] && (nk != *tk || ng != *tg)) || (k > 0 && (nf != sv.F || nk * ng != sv.H)))
            fail("internal: kept layers differ in shape (%d/%d/%d vs %d/%d/%d)", nk, ng, nf, *tk, *tg, sv.F);
        *tk = nk, *tg = ng, sv.F = nf, seen[type] = 1;
        int nh = 0;  // query heads g·G + s, group-major, so the sliced GQA mapping h / G_t holds
        for (int a = 0; a < nk; a++)
            for (int b = 0; b < ng; b++) sv.head[(size_t)k * c->H + nh++] = sv.group[(size_t)k * c->H + a] * G + sv.slot[(size_t)k * c->H + b];
        sv.H = nh;
    }
    if (!seen[1]) sv.Kg = sv.K, sv.Gg = sv.G;  // no full layer of its own shape kept (Gemma 3: never)
    for (int l = 0; !seen[0] && l < c->L; l++)  // only full layers kept: the sliding shape is the target's
        if (!c->full[l]) sv.K = M->s[M_GROUP].keep[l], sv.G = M->s[M_SLOT].keep[l], seen[0] = 1;
    return sv;
}

// Deterministic z in M → the sliced model: each source tensor the pruned model keeps is folded in a buffer the
// size of the largest, then its survivors gathered: the source is never copied whole. Its values come from m's
// weights, or (ck: they are not on this host) straight from the checkpoint ck of directory dir: never held whole.
typedef struct {
    const Model *m;
    const Checkpoint *ck;
    const char *dir;
    const Masks *M;
    const Fold *f;
} FoldSource;
static void fold_source(void *ctx, const PEntry *se, float *buf) {  // slice_model_each's source tensor, folded
    FoldSource *s = (FoldSource *)ctx;
    if (s->ck) st_to_f32(checkpoint_tensor(s->ck, s->dir, se), buf);
    else memcpy(buf, s->m->w + se->offset, sizeof(float) * se->rows * se->cols);
    fold_tensor(&s->m->c, s->M, s->f, se, buf);
}
static void fold_and_slice(const Model *m, const Checkpoint *ck, const char *dir, const Masks *M, int out_dtype,
                           Model *out, Survivors *sv_out) {
    const Config *c = &m->c;
    Survivors sv = survivors_of(c, M);
    double a = (double)embed_scale_for(c->d, c->scale_dtype) / embed_scale_for(sv.d, out_dtype);
    float scal[MAX_LAYERS];
    for (int i = 0; i < m->tab.n; i++) {
        const PEntry *e = &m->tab.e[i];
        if (e->kind != T_LAYER_SCALAR) continue;
        if (ck) st_to_f32(checkpoint_tensor(ck, dir, e), &scal[e->layer]);
        else scal[e->layer] = m->w[e->offset];
    }
    Fold f = fold_plan(c, M, a, c->arch == 4 ? scal : NULL);
    FoldSource s = {m, ck, dir, M, &f};
    slice_model_each(c, &m->tab, &sv, out_dtype, out, fold_source, &s);
    *sv_out = sv;
}

// --- what survived: prune_report.json and the survivor map ------------------------------------------

// the report's fixed part (shared format: train.c's variant B and profile.c read it); `extra` is added as is
static cJSON *report_json(const char *method, const char *source, const Config *src, const Model *out,
                          const Survivors *sv, cJSON *extra) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "method", method);
    cJSON_AddStringToObject(j, "source", source);
    survivors_to_json(j, src, sv);
    cJSON *pj = cJSON_AddObjectToObject(j, "params");
    cJSON_AddNumberToObject(pj, "non_embedding", (double)count_params(&out->c, 0));
    cJSON_AddNumberToObject(pj, "embedding", (double)(count_params(&out->c, 1) - count_params(&out->c, 0)));  // both token tables
    cJSON_AddNumberToObject(pj, "total", (double)count_params(&out->c, 1));
    cJSON_AddNumberToObject(pj, "source_non_embedding", (double)count_params(src, 0));
    cJSON_AddNumberToObject(pj, "source_total", (double)count_params(src, 1));
    if (extra)
        for (cJSON *e = extra->child; e;) {
            cJSON *next = e->next;
            cJSON_AddItemToObject(j, e->string, cJSON_DetachItemViaPointer(extra, e));
            e = next;
        }
    return j;
}

// Survivor map: one row per source layer (then one for the hidden dims); columns: kv groups | query
// slots | FFN channels (binned: the fraction kept). Value = the deterministic mask (0 = removed).
static void survivor_map(const char *path, const Config *c, const Masks *M, const char *method) {
    int K = c->K > c->Kg ? c->K : c->Kg, G = c->H / (c->K < c->Kg ? c->K : c->Kg);  // columns for the widest layer
    int fb = c->F < 96 ? c->F : 96, cols = K + G + fb + 2;
    int rows = c->L + 1;
    float *v = (float *)callocCheck(sizeof(float) * (size_t)rows * cols);  // (calloc: gcc cannot see the loop fill
    char **labels = (char **)callocCheck(sizeof(char *) * (size_t)rows);    // every entry, and warns)
    int *full = (int *)callocCheck(sizeof(int) * (size_t)rows);
    const float *zl = M->zl;
    for (int l = 0; l < rows; l++) {
        float *row = v + (size_t)l * cols;
        for (int x = 0; x < cols; x++) row[x] = NAN;
        labels[l] = (char *)mallocCheck(16);
        if (l == c->L) {  // hidden dims, binned over the whole width
            snprintf(labels[l], 16, "hidden");
            const float *zd = MROW(M, M->z, M_HIDDEN, 0);
            int nb = c->d < cols ? c->d : cols;
            for (int b = 0; b < nb; b++) {
                int i0 = (int)((long)b * c->d / nb), i1 = (int)((long)(b + 1) * c->d / nb), kept = 0;
                for (int i = i0; i < i1; i++) kept += zd[i] != 0;
                row[b] = (float)kept / (i1 - i0);
            }
            continue;
        }
        snprintf(labels[l], 16, "L%d", l);
        full[l] = c->full[l];
        float on = zl[l] != 0 ? 1.0f : 0.0f;
        const float *zg = MROW(M, M->z, M_GROUP, l), *zs = MROW(M, M->z, M_SLOT, l), *zf = MROW(M, M->z, M_FFN, l);
        int Kl = layer_K(c, l), Gl = c->H / Kl;
        for (int g = 0; g < Kl; g++) row[g] = on * (zg[g] != 0);
        for (int s = 0; s < Gl; s++) row[K + 1 + s] = on * (zs[s] != 0);
        for (int b = 0; b < fb; b++) {
            int j0 = (int)((long)b * c->F / fb), j1 = (int)((long)(b + 1) * c->F / fb), kept = 0;
            for (int j = j0; j < j1; j++) kept += zf[j] != 0;
            row[K + G + 2 + b] = on * kept / (j1 - j0);
        }
    }
    char title[128];
    snprintf(title, sizeof title, "survivors (%s)", method);
    HeatmapOpts o = {0};
    o.cbar_label = "kept";
    o.note = "columns: kv groups | query slots | FFN channels (binned); last row: hidden dims";
    plot_heatmap_ex(path, title, "structure", "source layer", v, rows, cols, 0.0f, 1.0f, (const char *const *)labels,
                    full, &o);
    for (int l = 0; l < rows; l++) free(labels[l]);
    free(labels), free(full), free(v);
}

// masks.safetensors: log_alpha per mask and λ1/λ2 per mask type (a baseline: its scores instead), and
// (final) the deterministic z
static void masks_write(const Masks *M, const float *score, const char *path, int with_z, long step) {
    STWriter w = {0};
    char names[2 * M_N][64];
    for (int m = 0; m < M_N; m++) {
        const MaskShape *s = &M->s[m];
        int uniform = 1;
        for (int r = 1; r < s->rows; r++) uniform &= s->len[r] == s->len[0];
        int64_t sh2[2] = {s->rows, s->len[0]}, sh1[1] = {(int64_t)s->n};
        int two = uniform && s->rows > 1 && m != M_LAYER;
        snprintf(names[m], 64, "%s.%s", score ? "score" : "log_alpha", mask_name[m]);
        stw_add_f32(&w, names[m], ST_F32, two ? 2 : 1, two ? sh2 : sh1, (score ? score : M->la) + s->base);
        if (with_z) {
            snprintf(names[M_N + m], 64, "z.%s", mask_name[m]);
            stw_add_f32(&w, names[M_N + m], ST_F32, two ? 2 : 1, two ? sh2 : sh1, M->z + s->base);
        }
    }
    int64_t nl[1] = {NLAM};
    if (!score) {
        stw_add_f32(&w, "lambda_1", ST_F32, 1, nl, M->lam);
        stw_add_f32(&w, "lambda_2", ST_F32, 1, nl, M->lam + NLAM);
    }
    w.meta = cJSON_CreateObject();
    char buf[32], order[4 * MAX_LAYERS + 8] = "", idle[256] = "";
    snprintf(buf, sizeof buf, "%ld", step);
    cJSON_AddStringToObject(w.meta, "step", buf);
    cJSON_AddStringToObject(w.meta, "masks", "layer[L] kv_group[L,K] query_slot[L,H/K] ffn[L,F] hidden[d]");
    for (int k = 0; k < M->L; k++)  // the layer mask's elements: its sliding layers, then its full ones
        for (int l = 0; l < M->L; l++)
            if (M->lpos[l] == k) snprintf(order + strlen(order), sizeof order - strlen(order), "%s%d", k ? "," : "", l);
    cJSON_AddStringToObject(w.meta, "layer_order", order);
    for (int q = 0; q < NLAM; q++)
        snprintf(idle + strlen(idle), sizeof idle - strlen(idle), "%s%s", q ? "," : "", lam_name[q]);
    cJSON_AddStringToObject(w.meta, "lambdas", idle);
    idle[0] = 0;
    for (int m = 0; m < M_N; m++)
        for (int r = 0; r < M->s[m].rows; r++)
            if (M->s[m].idle[r]) snprintf(idle + strlen(idle), sizeof idle - strlen(idle), "%s%s[%d]", *idle ? "," : "", mask_name[m], r);
    cJSON_AddStringToObject(w.meta, "idle_rows", idle);  // rows without a mask: z = 1
    stw_write(&w, path);
}

// per-domain validation loss of the model S holds, under the masks m's hooks point at (or none)
static void eval_all(Step *S, const Model *m, Mixture *mx, int batches, double *loss) {
    step_masks(S, m->zl, m->zh, m->zf, m->zd);
    mixture_eval_all(mx, step_eval_fn, S, S->B, S->T, batches, &comm, loss);  // batches of B x ranks windows
}

static void print_losses(const char *what, const Mixture *mx, const double *loss) {
    printf("%s", what);
    for (int i = 0; i < mx->k; i++) printf(" %s %.4f", mx->ds.name[i], loss[i]);
    printf("\n");
}

static cJSON *losses_json(const Mixture *mx, const double *loss) {
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; i < mx->k; i++) json_add_float(o, mx->ds.name[i], loss[i]);
    return o;
}

// The end of every method: fold, slice, (evaluate on mx when given), write OUT/{config.json,
// model.safetensors, masks.safetensors, prune_report.json, survivors.png}. `out` receives the sliced model.
// ckpt (ZeRO >= 1: no host holds m's weights whole): rank 0 slices the weights of the checkpoint in directory ckpt
// tensor by tensor, and the pruned model reaches the other ranks by broadcast.
static void finalize(Model *m, const Masks *M, const float *score, const char *out_dir, const char *method,
                     const char *source, int out_dtype, long step, Mixture *mx, int eval_batches, int B, int T,
                     cJSON *extra, const char *ckpt, Model *out) {
    Survivors sv;
    if (ckpt && m->w_map) madvise(m->w, m->w_map, MADV_DONTNEED);  // this rank's pieces of the source are spent
    if (ckpt && comm.rank == 0) {
        Checkpoint ck = checkpoint_open(ckpt);
        fold_and_slice(m, &ck, ckpt, M, out_dtype, out, &sv);
        checkpoint_close(&ck);
    } else if (ckpt) sv = survivors_of(&m->c, M), slice_model(&m->c, &m->tab, NULL, &sv, out_dtype, out);  // the layout
    else fold_and_slice(m, NULL, NULL, M, out_dtype, out, &sv);
    if (ckpt) comm_bcast(&comm, out->w, sizeof(float) * out->tab.total, 0);
    if (mx && eval_batches > 0) {
        double *loss = (double *)mallocCheck(sizeof(double) * mx->k);
        StepOpts so = {device, B, T, 0, 0, 0, 0, NULL, 0};
        const char *why = step_refuses(&so, &out->c, -1);
        if (why) printf("| the pruned model is evaluated on the CPU: %s\n", why), so.device = DEVICE_CPU;
        Step *S = step_open(out, NULL, &so);
        eval_all(S, out, mx, eval_batches, loss);
        step_close(S);
        print_losses("| pruned model val loss:", mx, loss);
        cJSON_AddItemToObject(extra, "val_loss_pruned", losses_json(mx, loss));
        free(loss);
    }
    if (comm.rank > 0) {  // rank 0 writes; every rank holds the same masks and weights
        survivors_free(&sv);
        return;
    }
    make_dirs(out_dir);
    model_save(out, out_dir, out_dtype);
    char *mp = path_join(out_dir, "masks.safetensors"), *rp = path_join(out_dir, "prune_report.json");
    char *pp = path_join(out_dir, "survivors.png");
    masks_write(M, score, mp, 1, step);
    cJSON *rep = report_json(method, source, &m->c, out, &sv, extra);
    write_json_atomic(rp, rep);
    survivor_map(pp, &m->c, M, method);
    printf("| pruned: L=%d d=%d H=%d K=%d F=%d -> %s (config.json, model.safetensors, prune_report.json, masks.safetensors, "
           "survivors.png)\n", out->c.L, out->c.d, out->c.H, out->c.K, out->c.F, out_dir);
    cJSON_Delete(rep);
    survivors_free(&sv);
    free(mp), free(rp), free(pp);
}

// ================================================================================================
// 9. One-shot baselines: a score per structure element, then the same deterministic masks (value 1),
//    fold and slice. Calibration statistics come from forward passes over training batches.
//    Structure scores (the same weights a mask removes):
//      query head h: q rows of h + o_proj columns of h;   kv group g: k and v rows + its query heads;
//      query slot s: Σ over groups of head g·G + s (slots are shared by the groups of a layer);
//      FFN channel j: gate and up rows + down column;    layer: all its groups and channels;
//      hidden dim i: its embedding column, q/k/v/gate/up columns and o/down rows in every layer.
//    magnitude: Σ |W| over those weights.  wanda: Σ |W_ij|·‖X_j‖₂ (X_j the input the weight reads;
//    the embedding's input is the one-hot token, ‖X‖ = sqrt(its count)). Norm weights are not scored.
//    activation (Minitron): per channel sqrt(Σ_batches (mean_seq |X|)²) of the o_proj input (heads:
//    the L2 norm over the head's D channels), the down_proj input (FFN) and the outputs of
//    input_layernorm and pre_feedforward_layernorm (hidden, summed); layers by Block Influence.
//    bi (ShortGPT): layers by Block Influence mean(1 − cos(x_in, x_out)); width, if asked, by magnitude.
//    drop-full: every full-attention layer goes; width, if asked, by magnitude.
// ================================================================================================

enum { METH_SHEARED, METH_MAGNITUDE, METH_ACTIVATION, METH_WANDA, METH_BI, METH_DROP_FULL, METH_N };
static const char *method_name[METH_N] = {"sheared", "magnitude", "activation", "wanda", "bi", "drop-full"};

typedef struct {  // calibration statistics, per layer and channel
    double *a2, *m2, *att2, *h2;  // Σ X² (wanda's ‖X‖²): input_layernorm out [L][d], pre_ffn out [L][d], o_proj in [L][H·D], down_proj in [L][F]
    double *a1, *m1, *att1, *h1;  // Σ_sequences (mean_t |X|)² (Minitron)
    double *tok;                  // [V] token counts
    double bi[MAX_LAYERS];        // Σ_tokens 1 − cos(x_in, x_out)
    double ntok;
    size_t hd;                    // H·D (Gemma 3: the same in every layer)
} Calib;

static void calib_add(double *sq, double *seqmean, const float *X, int B, int T, int C) {
    double *mean = (double *)callocCheck(sizeof(double) * (size_t)C);
    for (int b = 0; b < B; b++) {
        memset(mean, 0, sizeof(double) * (size_t)C);
        for (int t = 0; t < T; t++) {
            const float *x = X + ((size_t)b * T + t) * C;
            for (int i = 0; i < C; i++) sq[i] += (double)x[i] * x[i], mean[i] += fabs(x[i]);
        }
        for (int i = 0; i < C; i++) seqmean[i] += (mean[i] / T) * (mean[i] / T);
    }
    free(mean);
}

static Calib calibrate(Model *m, Mixture *mx, int batches, int B, int T) {
    const Config *c = &m->c;
    Calib cb;
    memset(&cb, 0, sizeof cb);
    size_t L = (size_t)c->L, d = (size_t)c->d, F = (size_t)c->F;
    cb.hd = (size_t)c->H * c->D;
    double **bufs[] = {&cb.a2, &cb.m2, &cb.att2, &cb.h2, &cb.a1, &cb.m1, &cb.att1, &cb.h1};
    size_t sizes[] = {L * d, L * d, L * cb.hd, L * F, L * d, L * d, L * cb.hd, L * F};
    for (int i = 0; i < 8; i++) *bufs[i] = (double *)callocCheck(sizeof(double) * sizes[i]);
    cb.tok = (double *)callocCheck(sizeof(double) * (size_t)c->V);
    int *tok = (int *)mallocCheck(sizeof(int) * (size_t)B * T), *tgt = (int *)mallocCheck(sizeof(int) * (size_t)B * T);
    double t0 = now_sec();
    for (int it = 0; it < batches; it++) {
        mixture_batch(mx, B, T, tok, tgt, NULL);
        model_forward(m, tok, NULL, B, T, 0, NULL);
        size_t N = (size_t)B * T;
        for (size_t n = 0; n < N; n++) cb.tok[tok[n]] += 1;
        cb.ntok += (double)N;
        for (int l = 0; l < c->L; l++) {
            const LayerActs *a = &m->act[l];
            calib_add(cb.a2 + l * d, cb.a1 + l * d, a->a, B, T, c->d);
            calib_add(cb.m2 + l * d, cb.m1 + l * d, a->m, B, T, c->d);
            calib_add(cb.att2 + l * cb.hd, cb.att1 + l * cb.hd, a->att, B, T, (int)cb.hd);
            calib_add(cb.h2 + l * F, cb.h1 + l * F, a->h, B, T, c->F);
            double rs[4] = {0, 0, 0, 0};  // Block Influence: 1 − cos(x_in, x_out) (shape.h)
            resid_stats(a->x, l + 1 < c->L ? m->act[l + 1].x : m->xL, 1.0f, (int)N, c->d, rs);
            cb.bi[l] += rs[2];
        }
        char eta[32];
        printf("\r| calibration batch %d/%d (eta %s)   ", it + 1, batches,
               fmt_duration((now_sec() - t0) / (it + 1) * (batches - it - 1), eta));
        fflush(stdout);
    }
    printf("\n");
    free(tok), free(tgt);
    return cb;
}

static void calib_free(Calib *cb) {
    double *bufs[] = {cb->a2, cb->m2, cb->att2, cb->h2, cb->a1, cb->m1, cb->att1, cb->h1, cb->tok};
    for (int i = 0; i < 9; i++) free(bufs[i]);
}

// Σ_r |W[r, i]| per column i of a [rows, cols] matrix (added to acc), or per row (by_row)
static void abs_sums(const float *W, size_t rows, size_t cols, int by_row, double *acc) {
    for (size_t r = 0; r < rows; r++)
        for (size_t i = 0; i < cols; i++) acc[by_row ? r : i] += fabs(W[r * cols + i]);
}

// |W|·‖X‖ summed over the rows of W [rows, cols] that the callers group; x: ‖X_i‖ per input column (NULL: 1)
static double row_score(const float *W, size_t cols, const double *x) {
    double s = 0;
    for (size_t i = 0; i < cols; i++) s += fabs(W[i]) * (x ? x[i] : 1.0);
    return s;
}

// magnitude (cb NULL) and wanda (cb given) scores of every structure, in the mask layout
static void weight_scores(const Model *m, const Calib *cb, const Masks *M, float *score) {
    const Config *c = &m->c;
    size_t d = (size_t)c->d, F = (size_t)c->F, HD = (size_t)c->H * c->D;
    double *xa = (double *)mallocCheck(sizeof(double) * d), *xm = (double *)mallocCheck(sizeof(double) * d);
    double *xatt = (double *)mallocCheck(sizeof(double) * HD), *xh = (double *)mallocCheck(sizeof(double) * F);
    double *hid = (double *)callocCheck(sizeof(double) * d), *colsum = (double *)mallocCheck(sizeof(double) * (HD > F ? HD : F));
    double *head = (double *)mallocCheck(sizeof(double) * (size_t)c->H);
    for (size_t v = 0; v < (size_t)c->V; v++) {  // embedding columns; the input is the one-hot token
        double x = cb ? sqrt(cb->tok[v]) : 1.0;
        for (size_t i = 0; i < d; i++) hid[i] += fabs(m->p.embed[v * d + i]) * x;
    }
    for (int l = 0; l < c->L; l++) {
        const LayerParams *lp = &m->p.layer[l];
        int D = c->D, K = layer_K(c, l), G = c->H / K;
        for (size_t i = 0; i < d; i++) xa[i] = cb ? sqrt(cb->a2[l * d + i]) : 1, xm[i] = cb ? sqrt(cb->m2[l * d + i]) : 1;
        for (size_t i = 0; i < HD; i++) xatt[i] = cb ? sqrt(cb->att2[l * HD + i]) : 1;
        for (size_t j = 0; j < F; j++) xh[j] = cb ? sqrt(cb->h2[l * F + j]) : 1;
        // o_proj and down_proj columns: Σ_rows |W| times their input's norm; their rows touch hidden dims
        memset(colsum, 0, sizeof(double) * HD);
        abs_sums(lp->wo, d, HD, 0, colsum);
        for (size_t i = 0; i < d; i++) hid[i] += row_score(lp->wo + i * HD, HD, xatt);
        for (int h = 0; h < c->H; h++) {
            head[h] = 0;
            for (int e = 0; e < D; e++) head[h] += colsum[h * D + e] * xatt[h * D + e] + row_score(lp->wq + ((size_t)h * D + e) * d, d, xa);
        }
        float *sg = MROW(M, score, M_GROUP, l), *ss = MROW(M, score, M_SLOT, l), *sf = MROW(M, score, M_FFN, l);
        double layer = 0;
        for (int g = 0; g < K; g++) {
            double s = 0;
            for (int e = 0; e < D; e++)
                s += row_score(lp->wk + ((size_t)g * D + e) * d, d, xa) + row_score(lp->wv + ((size_t)g * D + e) * d, d, xa);
            for (int h = g * G; h < (g + 1) * G; h++) s += head[h];
            sg[g] = (float)s, layer += s;
        }
        for (int s = 0; s < G; s++) {
            double v = 0;
            for (int g = 0; g < K; g++) v += head[g * G + s];
            ss[s] = (float)v;
        }
        memset(colsum, 0, sizeof(double) * F);
        abs_sums(lp->wdown, d, F, 0, colsum);
        for (size_t i = 0; i < d; i++) hid[i] += row_score(lp->wdown + i * F, F, xh);
        for (size_t j = 0; j < F; j++) {
            double s = row_score(lp->wgate + j * d, d, xm) + row_score(lp->wup + j * d, d, xm) + colsum[j] * xh[j];
            sf[j] = (float)s, layer += s;
        }
        MLAYER(M, score, l) = (float)layer;
        // q/k/v/gate/up columns per hidden dim
        const float *in_a[] = {lp->wq, lp->wk, lp->wv}, *in_m[] = {lp->wgate, lp->wup};
        size_t rows_a[] = {(size_t)c->H * D, (size_t)K * D, (size_t)K * D};
        memset(colsum, 0, sizeof(double) * d);
        for (int q = 0; q < 3; q++) abs_sums(in_a[q], rows_a[q], d, 0, colsum);
        for (size_t i = 0; i < d; i++) hid[i] += colsum[i] * xa[i];
        memset(colsum, 0, sizeof(double) * d);
        for (int q = 0; q < 2; q++) abs_sums(in_m[q], F, d, 0, colsum);
        for (size_t i = 0; i < d; i++) hid[i] += colsum[i] * xm[i];
    }
    for (size_t i = 0; i < d; i++) MROW(M, score, M_HIDDEN, 0)[i] = (float)hid[i];
    free(xa), free(xm), free(xatt), free(xh), free(hid), free(colsum), free(head);
}

// Minitron's activation scores (heads ranked within their kv group: slot = Σ over groups, group = L2 of its heads)
static void activation_scores(const Config *c, const Calib *cb, const Masks *M, float *score) {
    size_t d = (size_t)c->d, F = (size_t)c->F, HD = cb->hd;
    float *hid = MROW(M, score, M_HIDDEN, 0);
    for (size_t i = 0; i < d; i++) hid[i] = 0;
    for (int l = 0; l < c->L; l++) {
        int D = c->D, K = layer_K(c, l), G = c->H / K;
        double *head = (double *)mallocCheck(sizeof(double) * (size_t)c->H);
        for (int h = 0; h < c->H; h++) {
            double s = 0;
            for (int e = 0; e < D; e++) s += cb->att1[l * HD + (size_t)h * D + e];  // ‖(sqrt(A_c))_c‖₂² = Σ A_c
            head[h] = sqrt(s);
        }
        float *sg = MROW(M, score, M_GROUP, l), *ss = MROW(M, score, M_SLOT, l), *sf = MROW(M, score, M_FFN, l);
        for (int g = 0; g < K; g++) {
            double s = 0;
            for (int h = g * G; h < (g + 1) * G; h++) s += head[h] * head[h];
            sg[g] = (float)sqrt(s);
        }
        for (int s = 0; s < G; s++) {
            double v = 0;
            for (int g = 0; g < K; g++) v += head[g * G + s];
            ss[s] = (float)v;
        }
        for (size_t j = 0; j < F; j++) sf[j] = (float)sqrt(cb->h1[l * F + j]);
        for (size_t i = 0; i < d; i++) hid[i] += (float)(sqrt(cb->a1[l * d + i]) + sqrt(cb->m1[l * d + i]));
        free(head);
    }
}

static void bi_scores(const Config *c, const Calib *cb, const Masks *M, float *score) {
    for (int l = 0; l < c->L; l++) MLAYER(M, score, l) = (float)(cb->bi[l] / cb->ntok);
}

// ================================================================================================
// 10. Checkpoints: model.h's run checkpoint (section 8): OUT/checkpoint/ holds the masked model's trained
//     weights, the weights' optimizer state (AdamW or 8-bit AdamW, as train's), masks.safetensors (the
//     log_alphas, λ and their AdamW moments) and prune_state.json: the step, both RNG states, the data
//     cursor and domain weights, the reference losses, the settings and the target they resolved to.
//     Test hook: PRUNE_TEST_CRASH=files[@STEP] | rename[@STEP] (util.h).
// ================================================================================================

enum { MASK_STATE_N = M_N + 6 };

// the masks' part of a checkpoint: what is written and what a resume must find; names holds M_N names
static void mask_state_tensors(const Pruner *P, StateTensor *t, char names[][64]) {
    int n = 0;
    for (int m = 0; m < M_N; m++) {
        snprintf(names[m], 64, "log_alpha.%s", mask_name[m]);
        t[n++] = state_tensor(names[m], ST_F32, P->M.la + P->M.s[m].base, P->M.s[m].n);
    }
    t[n++] = state_tensor("lambda_1", ST_F32, P->M.lam, NLAM);
    t[n++] = state_tensor("lambda_2", ST_F32, P->M.lam + NLAM, NLAM);
    t[n++] = state_tensor("log_alpha.exp_avg", ST_F32, P->la_m, P->M.n);
    t[n++] = state_tensor("log_alpha.exp_avg_sq", ST_F32, P->la_v, P->M.n);
    t[n++] = state_tensor("lambda.exp_avg", ST_F32, P->lam_m, 2 * NLAM);
    t[n++] = state_tensor("lambda.exp_avg_sq", ST_F32, P->lam_v, 2 * NLAM);
}

static void prune_checkpoint_save(const Pruner *P, const Mixture *mx, const double *ref, const cJSON *run, const char *out) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "step", P->step);
    rng_to_json(j, "mask_rng", &P->M.rng);
    mixture_state_to_json(mx, j);
    cJSON_AddItemToObject(j, "ref_loss", cJSON_CreateDoubleArray(ref, mx->k));
    for (const cJSON *e = run->child; e; e = e->next) cJSON_AddItemToObject(j, e->string, cJSON_Duplicate(e, 1));
    StateTensor t[MASK_STATE_N];
    char names[M_N][64];
    mask_state_tensors(P, t, names);
    checkpoint_save(&comm, out, "prune", P->step, &P->m, ST_F32, &P->opt, j, "masks.safetensors", t, MASK_STATE_N);
    cJSON_Delete(j);
}

// m's weights from the checkpoint dir's model.safetensors (fp32, the run's own): whole, or (z) this rank's pieces
static void prune_weights_read(Model *m, const char *dir, const ZeroPlan *z) {
    char *wp = path_join(dir, "model.safetensors");
    const char *hint = "the checkpoint's model is not this source model";
    if (z) {
        char (*names)[160] = (char (*)[160])mallocCheck(160 * (size_t)m->tab.n);
        ZeroTensor *t = zero_table_tensors(&m->tab, m->w, 0, "", names);
        zero_read_tensors(z, wp, t, m->tab.n, hint);
        free(t), free(names);
    } else {
        StateTensor *t = (StateTensor *)mallocCheck(sizeof(StateTensor) * (size_t)m->tab.n);
        for (int i = 0; i < m->tab.n; i++) {
            const PEntry *e = &m->tab.e[i];
            t[i] = state_tensor(e->name, ST_F32, m->w + e->offset, e->rows * e->cols);
        }
        state_tensors_read(wp, t, m->tab.n, hint);
        free(t);
    }
    free(wp);
}

// Restore everything the save wrote, each piece checked before it is used; `run` holds the settings (already
// restored from this state by parse_args) and the source model and target they resolve to, which must be the
// stored ones.
static void prune_checkpoint_load(Pruner *P, Mixture *mx, double *ref, const cJSON *run, const char *out) {
    char *dir, *state;
    cJSON *j = ckpt_state_open(out, "prune", &dir, &state);
    const char *keys[] = {"source", "target"};
    for (int k = 0; k < 2; k++) {
        const cJSON *stored = json_get(j, keys[k]), *now = json_get(run, keys[k]);
        char *t = cJSON_PrintUnformatted(now), *a;  // as the file holds it (config.json prints raw numbers)
        cJSON *reread = cJSON_Parse(t);
        a = cJSON_PrintUnformatted(reread);
        free(t);
        char *b = stored ? cJSON_PrintUnformatted(stored) : str_dup("(missing)");
        cJSON_Delete(reread);
        if (strcmp(a, b) != 0 && k == 0)
            fail("--resume: %s was made for the source model %s as it was then; its config.json has changed since: "
                 "restore it, or start again with another --out", state, json_str(json_get(run, "settings"), "model", "", state));
        if (strcmp(a, b) != 0)
            fail("--resume: %s was made for the target %s, this run's is %s (was the target file changed?); use another --out",
                 state, b, a);
        free(a), free(b);
    }
    P->step = (int)state_int(j, "step", 0, P->steps, state);  // == steps: killed before the final model was written
    P->M.rng = rng_from_json(j, "mask_rng", state);
    mixture_state_from_json(mx, j, state, json_str(json_get(run, "settings"), "data", "", state));
    state_nums(j, "ref_loss", mx->k, 0, 1e30, ref, state);
    prune_weights_read(&P->m, dir, P->m.w_owned ? P->opt.z : NULL);
    StateTensor x[MASK_STATE_N];
    char names[M_N][64];
    mask_state_tensors(P, x, names);
    checkpoint_load_state(dir, &P->m, ST_F32, &P->opt, "masks.safetensors", x, MASK_STATE_N);
    P->opt.t = P->step;
    printf("| resumed from %s at step %d\n", dir, P->step);
    cJSON_Delete(j);
    free(state), free(dir);
}

// ================================================================================================
// 11. Targets and main
// ================================================================================================

typedef struct {
    const char *model, *data, *out, *method_s, *target_file, *mix, *dtype, *optimizer;
    StepFlags step;  // --device, the GPU's options, --zero
    double keep;
    int steps, batch, seq, grad_accum, seed, eval_every, eval_batches, dbl_clip, full_every, save_every, resume, stop_at;
    int calib_batches, log_every, warmup, lag_warmup;
    double lr, mask_lr, lambda_lr, min_lr_frac, grad_clip, dbl_c;
    int method, out_dtype, gpu, dbl, opt;  // resolved from method_s, dtype, device, mix, optimizer
} Settings;

static void print_params(const char *what, const Config *c) {
    char a[32], b[32], t[32];
    printf("| %s: %s non-embedding + %s embedding (V=%d x d=%d) = %s total\n", what, fmt_count((double)count_params(c, 0), a),
           fmt_count((double)c->V * c->d, b), c->V, c->d, fmt_count((double)count_params(c, 1), t));
}

// --- settings: one table gives --help, the parse, the printout and what a checkpoint saves --------------------
// SAVE_FIXED: what makes the run (a resume must not change it); SAVE_RUN: saved, a resume may change it
#define OPT(f) offsetof(Settings, f)
static const Flag flags[] = {
    {"model", F_STR, OPT(model), "", NULL, SAVE_FIXED, "source Hugging Face model directory (required unless --resume)"},
    {"out", F_STR, OPT(out), NULL, NULL, SAVE_NO, "output directory (must not hold a model, unless --resume)"},
    {"method", F_STR, OPT(method_s), "sheared", "sheared|magnitude|activation|wanda|bi|drop-full", SAVE_FIXED,
     "sheared | magnitude | activation | wanda | bi | drop-full"},
    {"target", F_STR, OPT(target_file), "", NULL, SAVE_FIXED, "target shape: config.json keys hidden_size, intermediate_size, "
     "num_hidden_layers, num_attention_heads, num_key_value_heads (a missing key keeps the source's value)"},
    {"keep", F_FLOAT, OPT(keep), "-1", NULL, SAVE_FIXED, "or: keep this fraction (0, 1] of the non-embedding parameters; -1: none"},
    {"data", F_STR, OPT(data), "data/shards", NULL, SAVE_RUN, "token shards <DIR>/<domain>/{train,val}.bin"},
    {"steps", F_INT, OPT(steps), "3200", ">= 1", SAVE_FIXED, "pruning steps (sheared)"},
    {"batch", F_INT, OPT(batch), "8", ">= 1", SAVE_FIXED, "sequences per step (and per calibration / eval batch)"},
    {"seq", F_INT, OPT(seq), "-1", ">= -1", SAVE_FIXED, "tokens per sequence; -1: twice the model's sliding window, at "
                                     "least 256 (so the masks see full layers attend beyond it)"},
    {"grad-accum", F_INT, OPT(grad_accum), "1", ">= 1", SAVE_FIXED, "micro-batches per step (sheared), each under its own "
                                             "draw of the masks (the published run: 8 ranks, one draw each); a step is "
                                             "batch x accum x ranks sequences"},
    STEP_ZERO_FLAG(Settings, step),
    {"seed", F_INT, OPT(seed), "1", NULL, SAVE_FIXED, "seed of the mask noise, the u draws and the data order"},
    {"lr", F_FLOAT, OPT(lr), "1e-4", "> 0", SAVE_FIXED, "weight learning rate (peak)"},
    {"mask-lr", F_FLOAT, OPT(mask_lr), "1.0", ">= 0", SAVE_FIXED, "log_alpha learning rate (peak)"},
    {"lambda-lr", F_FLOAT, OPT(lambda_lr), "1.0", ">= 0", SAVE_FIXED, "Lagrange multiplier rate (applied as -X: gradient ascent)"},
    {"warmup", F_INT, OPT(warmup), "-1", ">= -1", SAVE_FIXED, "linear lr warmup steps; -1: 10% of --steps"},
    {"min-lr-frac", F_FLOAT, OPT(min_lr_frac), "0.1", "[0, 1]", SAVE_FIXED, "the cosine schedule ends at this fraction of the peak"},
    {"lagrangian-warmup", F_INT, OPT(lag_warmup), "-1", ">= -1", SAVE_FIXED, "steps over which the targets ramp from 0; -1: 20% of --steps"},
    {"optimizer", F_STR, OPT(optimizer), "adamw", "adamw|adamw8", SAVE_FIXED, "the weights' optimizer (sheared): adamw (fp32 "
     "moments, 8 bytes a parameter) | adamw8 (train's 8-bit block-wise states, ~2); the masks' and λ's stay AdamW"},
    {"grad-clip", F_FLOAT, OPT(grad_clip), "1.0", ">= 0", SAVE_FIXED, "global gradient-norm clip over weights, masks and lambdas; 0: off"},
    {"eval-every", F_INT, OPT(eval_every), "50", ">= 1", SAVE_FIXED, "per-domain validation (and the dynamic weight update) every N steps"},
    {"eval-batches", F_INT, OPT(eval_batches), "4", ">= 0", SAVE_FIXED, "validation batches per domain (0: no evaluation, no dynamic loading)"},
    {"mix", F_STR, OPT(mix), "dynamic", "static|dynamic", SAVE_FIXED, "domain weights: dynamic batch loading | static (uniform)"},
    {"dbl-clip", F_BOOL, OPT(dbl_clip), "0", NULL, SAVE_FIXED, "the paper's max(loss - ref, 0) instead of the code's loss - ref"},
    {"dbl-c", F_FLOAT, OPT(dbl_c), "1e-4", "[0, 1)", SAVE_FIXED, "smoothing c of the domain-weight update"},
    {"full-every", F_INT, OPT(full_every), "-1", ">= -1", SAVE_FIXED, "keep >= 1 full-attention layer in every N consecutive "
     "layers (0: only require one full layer); -1: the source's longest sliding run + 1"},
    {"calib-batches", F_INT, OPT(calib_batches), "8", ">= 1", SAVE_NO, "calibration batches (activation, wanda, bi)"},
    {"save-every", F_INT, OPT(save_every), "100", ">= 0", SAVE_RUN, "checkpoint every N steps and at the end; 0: only at the end"},
    {"stop-at", F_INT, OPT(stop_at), "0", ">= 0", SAVE_NO, "checkpoint at this step and exit (continue with --resume, on either device); 0: off"},
    {"resume", F_BOOL, OPT(resume), "0", NULL, SAVE_NO, "continue --out's run from its checkpoint, exactly (same masks and model bit for bit)"},
    {"dtype", F_STR, OPT(dtype), "f32", "f32|bf16", SAVE_RUN, "dtype of the written model: f32 | bf16"},
    {"log-every", F_INT, OPT(log_every), "1", ">= 1", SAVE_NO, "print a step line every N steps"},
    STEP_DEVICE_FLAG(Settings, step, "cpu | gpu: sheared steps and every evaluation on the GPU (bf16 compute; the "
                     "build of `make gpu`: hip/build/prune); one-shot scoring stays on the CPU"),
    STEP_GPU_FLAGS(Settings, step),
};
static const Cli cli = {
    "./prune",
    "usage: ./prune --model DIR --data DIR --out DIR --method METHOD (--target FILE.json | --keep FRACTION) [--steps N] [flags]\n"
    "Sheared-LLaMA learned structured pruning of a Gemma 3 or Gemma 4 model, or a one-shot baseline (Gemma 3) on the\n"
    "same slicing path. Gemma 4 E2B/E4B: query heads and FFN channels only (layers, hidden size, kv heads and the\n"
    "per-layer inputs stay whole).\n"
    "Writes OUT/config.json + model.safetensors (the pruned model), prune_report.json, masks.safetensors, survivors.png.\n",
    flags, COUNT_OF(flags), renamed_flags, COUNT_OF(renamed_flags),
    "Targets count non-embedding parameters like the published code; with a large vocabulary the embedding\n"
    "dominates small Gemmas, so the total is printed too.\n",
    NULL};

static Settings parse_args(int argc, char **argv) {
    Settings s;
    int given[COUNT_OF(flags)] = {0};
    flags_defaults(&cli, &s);
    flags_parse(&cli, &s, argc, argv, 1, given);
    check_dir_or_new(s.out);  // the run directory: refused now, not after the pruning
    if (*s.model) {  // the same directory however it is spelled: what a resume compares
        static char rp[PATH_MAX];  // lives as long as the run's settings
        if (realpath(s.model, rp)) s.model = rp;
    }
    char *legacy = path_join(s.out, "prune_state.json");  // OUT/state/step_NNNNNN of an older ./prune
    if (file_exists(legacy))
        fail("--out %s holds a run of an older ./prune (prune_state.json, state/) that cannot be resumed or reused; "
             "choose another --out", s.out);
    free(legacy);
    if (s.resume) {  // the saved settings, then what the command line changes (a run-defining flag must not)
        char *ck, *state;
        cJSON *j = ckpt_state_open(s.out, "prune", &ck, &state);
        Settings cmd = s;
        flags_resume(&cli, &s, &cmd, given, json_get(j, "settings"), state);  // the strings it keeps are copies
        cJSON_Delete(j);
        free(ck), free(state);
    }
    s.method = -1;
    for (int m = 0; m < METH_N; m++)
        if (!strcmp(s.method_s, method_name[m])) s.method = m;
    s.out_dtype = !strcmp(s.dtype, "bf16") ? ST_BF16 : ST_F32;
    s.gpu = !strcmp(s.step.device, "gpu");
    s.dbl = !strcmp(s.mix, "dynamic");
    s.opt = !strcmp(s.optimizer, "adamw8") ? OPT_ADAMW8 : OPT_ADAMW;
    if (s.warmup < 0) s.warmup = s.steps / 10;
    if (s.lag_warmup < 0) s.lag_warmup = s.steps / 5;
    if (!*s.model) usage_fail(&cli, "--model DIR is required (a Hugging Face model directory)");
    if (*s.target_file && s.keep != -1) usage_fail(&cli, "give either --target FILE.json or --keep FRACTION, not both");
    if (!*s.target_file && s.keep == -1 && s.method != METH_DROP_FULL)
        usage_fail(&cli, "a target is required: --target FILE.json (config.json-style shape) or --keep FRACTION");
    if (s.keep != -1 && !(s.keep > 0 && s.keep <= 1)) usage_fail(&cli, "--keep %g: expected a fraction in (0, 1]", s.keep);
    if (s.warmup > s.steps || s.lag_warmup > s.steps)
        usage_fail(&cli, "--warmup %d and --lagrangian-warmup %d must be at most --steps %d", s.warmup, s.lag_warmup, s.steps);
    if (s.stop_at > s.steps) usage_fail(&cli, "--stop-at %d: expected a step in [1, --steps %d] (0: off)", s.stop_at, s.steps);
    if (comm_dp(&comm, s.step.zero) && s.method != METH_SHEARED)
        usage_fail(&cli, "--method %s runs in one process with --zero 0; data parallel (mpirun, --zero) is --method "
                   "sheared's", s.method_s);
    StepOpts so = step_opts(&s.step, s.batch, s.seq, 1);
    const char *why = step_refuses(&so, NULL, s.opt);
    if (why) fail("%s", why);
    return s;
}

// what a checkpoint keeps of the run: the settings and the target shape they resolved to
static cJSON *run_json(const Settings *s, const Shape *t, const Config *src) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddItemToObject(j, "settings", flags_to_json(&cli, s));
    cJSON_AddItemToObject(j, "target", shape_json(t, src->arch));
    cJSON_AddItemToObject(j, "source", config_to_json(src, "float32"));  // a resume must find the same model
    return j;
}

// Sheared-LLaMA: prune with learned masks for st->steps steps, then finalize at the exact target.
static void run_sheared(const Settings *s, Model *src, const Shape *tgt, int full_every, cJSON *extra, Model *out) {
    Pruner P;
    memset(&P, 0, sizeof P);
    P.m = *src;
    masks_init(&P.M, &P.m.c, tgt, full_layers_kept(&P.m.c, tgt->L, full_every), (uint64_t)s->seed * 0x9e3779b97f4a7c15ull + 1);
    masks_print(&P.M);
    char run_tok[32];
    int draws = s->grad_accum * comm.world;  // one z per micro-batch and rank
    printf("| tokens per step %d (batch %d x seq %d x accum %d x ranks %d: %d draws of the masks), %s in %d steps; "
           "published: 131k per step (32 x 4096, 8 draws), 0.42B in 3200 steps\n", s->batch * s->seq * draws, s->batch,
           s->seq, s->grad_accum, comm.world, draws, fmt_count((double)s->batch * s->seq * draws * s->steps, run_tok),
           s->steps);
    if (comm_dp(&comm, s->step.zero)) printf("| data parallel: %d ranks, ZeRO %d\n", comm.world, s->step.zero);
    StepOpts so = step_opts(&s->step, s->batch, s->seq, 1);
    so.comm = &comm;  // the data-parallel ranks
    P.opt_kind = s->opt;
    pruner_alloc(&P, &so);
    optimizer_print(&P.opt, "weights' optimizer");
    P.steps = s->steps, P.warmup = s->warmup, P.lag_warmup = s->lag_warmup, P.accum = s->grad_accum;
    P.lr = s->lr, P.mask_lr = s->mask_lr, P.lambda_lr = s->lambda_lr, P.lr_floor = s->min_lr_frac, P.clip = s->grad_clip;
    Mixture mx = mixture_open(s->data, P.m.c.V, (uint64_t)s->seed * 2 + 1);
    double *ref = (double *)callocCheck(sizeof(double) * mx.k), *loss = (double *)callocCheck(sizeof(double) * mx.k);
    cJSON *run = run_json(s, tgt, &P.m.c);
    int B = s->batch, T = s->seq, do_eval = s->eval_batches > 0;
    if (s->resume) {
        prune_checkpoint_load(&P, &mx, ref, run, s->out);
        step_put(P.S, STEP_WEIGHTS | STEP_OPTIMIZER, -1);  // the checkpoint's weights and moments to the device
    }
    if (!s->resume && do_eval) {  // reference losses for dynamic batch loading: the source model's own
        masks_detach(&P.m);
        printf("| measuring the reference losses: the source model on %d validation batches per domain...\n", s->eval_batches);
        fflush(stdout);
        eval_all(P.S, &P.m, &mx, s->eval_batches, ref);
        print_losses("| reference (source) val loss:", &mx, ref);
        masks_attach(&P.m, &P.M);
    }
    double target_params = shape_params(&P.m.c, tgt);
    int A = P.accum;
    size_t BT = (size_t)B * T, step_tokens = BT * A * comm.world;  // the global batch's
    int *tok = (int *)mallocCheck(sizeof(int) * BT * A), *tgt_tok = (int *)mallocCheck(sizeof(int) * BT * A);
    double t_start = now_sec(), tok_done = 0;
    while (P.step < P.steps) {
        double t0 = now_sec();
        for (int a = 0; a < A; a++)  // this rank's B rows of each micro-batch of B x ranks sequences
            mixture_batch_part(&mx, B * comm.world, B * comm.rank, B, T, tok + a * BT, tgt_tok + a * BT, NULL);
        StepStats st = prune_step(&P, tok, tgt_tok);
        double dt = now_sec() - t0;
        tok_done += (double)step_tokens;
        if (P.step % s->log_every == 0 || P.step == P.steps) {
            char eta[32], pe[32], pt[32], te[32], tt[32];
            double emb = (double)P.m.c.V * row_sum(&P.M, P.M.kp, M_HIDDEN, 0);  // expected embedding size
            printf("step %d/%d | loss %.4f | lag %+.4f | sparsity", P.step, P.steps, st.ce, st.lag);
            for (int q = 0; q < NLAM; q++)  // idle pairs have no term
                if (P.M.terms[q]) printf(" %s %.3f/%.3f", lam_name[q], st.s[q], st.t[q]);
            printf(" | params %s/%s (total %s/%s) | lr %.2e | gnorm %.3f | %.0f tok/s | eta %s", fmt_count(st.params, pe),
                   fmt_count(target_params, pt), fmt_count(st.params + emb, te),
                   fmt_count(target_params + (double)P.m.c.V * tgt->d, tt), P.lr * st.lr_factor, st.gnorm, step_tokens / dt,
                   fmt_duration((now_sec() - t_start) / tok_done * (double)step_tokens * (P.steps - P.step), eta));
            step_log_memory(P.S);
            printf("\n");
            fflush(stdout);
        }
        if (do_eval && P.step % s->eval_every == 0) {  // on the current model (expected-count masks), then DBL
            expected_masks(&P.m.c, &P.M);
            model_masks_changed(&P.m);
            eval_all(P.S, &P.m, &mx, s->eval_batches, loss);
            printf("eval step %d |", P.step);
            print_losses(" val loss", &mx, loss);
            if (s->dbl) {
                dbl_update(mx.w, loss, ref, mx.k, s->dbl_c, s->dbl_clip);
                printf("eval step %d | domain weights", P.step);
                for (int i = 0; i < mx.k; i++) printf(" %s %.4f", mx.ds.name[i], mx.w[i]);
                printf("\n");
            }
        }
        if ((s->save_every && P.step % s->save_every == 0) || P.step == P.steps || P.step == s->stop_at) {
            step_get(P.S, STEP_WEIGHTS | STEP_OPTIMIZER | STEP_OWNED, -1);  // the host copies of what this rank writes
            prune_checkpoint_save(&P, &mx, ref, run, s->out);  // every rank: at ZeRO >= 1 each writes its shard
        }
        if (P.step == s->stop_at && P.step < P.steps) {
            printf("stopped at step %d (--stop-at); continue with --resume\n", P.step);
            fflush(stdout);
            comm_finish(&comm);
            exit(0);
        }
    }
    // the source's trained weights to slice: ZeRO >= 1: rank 0 reads them tensor by tensor from the checkpoint the
    // last step wrote (no rank ever holds the whole source; the pruned model reaches the others by broadcast)
    char *ckpt = P.opt.z ? ckpt_find(s->out) : NULL;
    if (!ckpt) step_get(P.S, STEP_WEIGHTS, -1);
    step_close(P.S), P.S = NULL;  // the device is free for the pruned model
    // final masks: exactly the target shape at the soft values, layers under the constraint; the layers the
    // learned masks themselves keep (round(Σ P(z > 0)) per type, as evaluated during pruning) for comparison
    float *soft = (float *)mallocCheck(sizeof(float) * P.M.n);
    masks_project(&P.M);
    expected_masks(&P.m.c, &P.M);
    int learned[MAX_LAYERS], agree = 1;
    for (int l = 0; l < P.m.c.L; l++) learned[l] = P.M.zl[l] != 0;
    soft_values(&P.M, soft);
    deterministic_masks(&P.m.c, &P.M, soft, soft, full_every, 0);
    for (int l = 0; l < P.m.c.L; l++) agree &= learned[l] == (P.M.zl[l] != 0);
    printf("| final layers %s the masks' own choice (round(sum P(z > 0)) per type)%s\n", agree ? "==" : "!=",
           agree ? "" : ": the sliding/full window rule or a target not yet reached moved it");
    cJSON *lj = cJSON_AddArrayToObject(extra, "layers_learned");
    for (int l = 0; l < P.m.c.L; l++)
        if (learned[l]) cJSON_AddItemToArray(lj, cJSON_CreateNumber(l));
    cJSON_AddBoolToObject(extra, "layers_agree", agree);
    cJSON_AddNumberToObject(extra, "steps", P.steps);
    cJSON *lam = cJSON_AddObjectToObject(extra, "lambdas");  // the pairs with a term (idle structures have none)
    for (int q = 0; q < NLAM; q++) {
        if (!P.M.terms[q]) continue;
        cJSON *pair = cJSON_AddArrayToObject(lam, lam_name[q]);
        cJSON_AddItemToArray(pair, json_float(P.M.lam[q]));
        cJSON_AddItemToArray(pair, json_float(P.M.lam[NLAM + q]));
    }
    cJSON *dw = cJSON_AddObjectToObject(extra, "domain_weights");
    for (int i = 0; i < mx.k; i++) json_add_float(dw, mx.ds.name[i], mx.w[i]);
    if (do_eval) cJSON_AddItemToObject(extra, "val_loss_source", losses_json(&mx, ref));
    cJSON_AddStringToObject(extra, "masked_weights", "checkpoint");  // the trained weights the masks apply to
    if (tok_done > 0)  // this session's steps (a resumed run: since the resume)
        json_add_float(extra, "seconds", now_sec() - t_start), json_add_float(extra, "tokens_per_second", tok_done / (now_sec() - t_start));
    optimizer_free(&P.opt);  // the weights' moments are in the checkpoint: free before the pruned model is made
    finalize(&P.m, &P.M, NULL, s->out, s->method_s, s->model, s->out_dtype, P.step, do_eval ? &mx : NULL, s->eval_batches, B,
             T, extra, ckpt, out);
    free(ckpt);
    free(soft), free(tok), free(tgt_tok), free(ref), free(loss);
    cJSON_Delete(run);
    masks_free(&P.M);
    free(P.la_m), free(P.la_v);
    mixture_close(&mx);
    masks_detach(&P.m);
    *src = P.m;
}

// The one-shot baselines: scores, deterministic masks (value 1), fold, slice.
static void run_baseline(const Settings *s, Model *m, const Shape *tgt, int full_every, cJSON *extra, Model *out) {
    Masks M;
    masks_init(&M, &m->c, tgt, -1, 1);  // one layer row: the scores rank both types together
    float *score = (float *)callocCheck(sizeof(float) * M.n);
    int calib = s->method == METH_ACTIVATION || s->method == METH_WANDA || s->method == METH_BI;
    int have_data = dir_exists(s->data);
    Mixture mx;
    memset(&mx, 0, sizeof mx);
    if (have_data) mx = mixture_open(s->data, m->c.V, (uint64_t)s->seed * 2 + 1);
    else printf("| no data at %s: the pruned model is not evaluated\n", s->data);
    Calib cb;
    memset(&cb, 0, sizeof cb);
    if (calib) {
        printf("| calibration: %d batches of %d x %d tokens from %s\n", s->calib_batches, s->batch, s->seq, s->data);
        cb = calibrate(m, &mx, s->calib_batches, s->batch, s->seq);
    }
    if (s->method == METH_ACTIVATION) {
        activation_scores(&m->c, &cb, &M, score);
        bi_scores(&m->c, &cb, &M, score);
    } else weight_scores(m, s->method == METH_WANDA ? &cb : NULL, &M, score);
    if (s->method == METH_BI) bi_scores(&m->c, &cb, &M, score);
    deterministic_masks(&m->c, &M, score, NULL, full_every, s->method == METH_DROP_FULL);
    cJSON *sc = cJSON_AddArrayToObject(extra, "layer_scores");
    for (int l = 0; l < m->c.L; l++) cJSON_AddItemToArray(sc, json_float(MLAYER(&M, score, l)));
    double *ref = NULL;
    if (have_data && s->eval_batches > 0) {
        ref = (double *)mallocCheck(sizeof(double) * mx.k);
        StepOpts cpu = {DEVICE_CPU, s->batch, s->seq, 0, 0, 0, 0, NULL, 0};  // one-shot methods evaluate the source on the CPU
        Step *S = step_open(m, NULL, &cpu);
        eval_all(S, m, &mx, s->eval_batches, ref);
        step_close(S);
        print_losses("| source model val loss:", &mx, ref);
        cJSON_AddItemToObject(extra, "val_loss_source", losses_json(&mx, ref));
    }
    finalize(m, &M, score, s->out, s->method_s, s->model, s->out_dtype, 0, have_data ? &mx : NULL, s->eval_batches, s->batch,
             s->seq, extra, NULL, out);
    if (have_data) mixture_close(&mx);
    free(ref);
    if (calib) calib_free(&cb);
    free(score);
    masks_free(&M);
}

#ifndef PRUNE_NO_MAIN
static int prune_main(int argc, char **argv) {
    Settings s = parse_args(argc, argv);
    device = s.gpu ? DEVICE_GPU : DEVICE_CPU;
    double t0 = now_sec();
    if (!strcmp(s.model, s.out)) fail("--out %s is the source model directory; write the pruned model elsewhere", s.out);
    char *cfg_out = path_join(s.out, "config.json"), *ck = ckpt_find(s.out);
    if (!s.resume && (file_exists(cfg_out) || ck))
        fail("--out %s already holds a model or a pruning run; choose another directory (or --resume a sheared run)", s.out);
    if (s.resume && s.method != METH_SHEARED) fail("--resume continues a sheared run; the one-shot methods have nothing to resume");
    int needs_data = s.method == METH_SHEARED || s.method == METH_ACTIVATION || s.method == METH_WANDA || s.method == METH_BI;
    if (needs_data && !dir_exists(s.data))
        fail("--data %s does not exist; --method %s needs token shards: run `make data` or pass --data DIR", s.data, s.method_s);
    free(cfg_out), free(ck);
    Model m;
    if (s.step.zero > 0) model_load_shard(&m, s.model, s.step.zero, &comm);  // each rank its pieces
    else model_load(&m, s.model);
    const Config *c = &m.c;
    if (s.seq == -1) s.seq = 2 * c->W > 256 ? 2 * c->W : 256;  // both attention types look different to the masks
    if (s.seq < 2) fail("--seq %d: expected at least 2 tokens per sequence (-1: twice the sliding window)", s.seq);
    if (c->arch == 4 && s.method != METH_SHEARED)
        fail("%s: the one-shot baselines score Gemma 3 models (one head size; drop-full would also end Gemma 4 on a "
             "sliding layer); prune Gemma 4 with --method sheared", s.model);
    int full_every = s.full_every >= 0 ? s.full_every : default_full_every(c);
    Shape tgt = shape_of(c);
    char why[256] = "";
    if (*s.target_file) tgt = target_from_json(c, s.target_file);
    else if (s.keep > 0) {
        tgt = plan_keep(c, s.keep);
        if (has_e2b_extras(c))
            snprintf(why, sizeof why, "--keep %g: Gemma 4 E2B/E4B: layers, hidden size and kv heads kept whole, query heads "
                     "and FFN fitted to the budget", s.keep);
        else
            snprintf(why, sizeof why, "--keep %g: every layer, head_dim and %d query heads per kv head kept, width scaled "
                     "(width pruning lost less than depth pruning in Minitron)", s.keep, c->H / c->K);
    }
    if (s.method == METH_DROP_FULL) {
        int nf = count_full(c);
        if (nf == 0) fail("%s: the model has no full-attention layer to drop", s.model);
        if (nf == c->L) fail("%s: every layer is full attention; drop-full would remove the whole model", s.model);
        if (tgt.L == c->L) tgt.L = c->L - nf;  // drop-full decides the layers
        full_every = 0;
    }
    check_target(c, &tgt, full_every, s.method == METH_DROP_FULL, *s.target_file ? s.target_file : "--keep");
    printf("| prune: method %s, model %s -> %s (BLIS kernels %s, %d threads)%s\n", s.method_s, s.model, s.out,
           blas_kernels(), omp_get_max_threads(), s.resume ? ", resuming" : "");
    flags_print(&cli, &s, stdout);
    config_print(c, stdout);
    printf("| target: L=%d d=%d H=%d K=%d D=%d F=%d", tgt.L, tgt.d, tgt.H, tgt.K, tgt.D, tgt.F);
    if (c->arch == 4) printf(" (full layers: K=%d D=%d)", tgt.Kg, c->Dg);
    printf("%s%s\n", why[0] ? "  " : "", why);
    Config tc = target_config(c, &tgt, NULL);
    print_params("source", c);
    print_params("target", &tc);
    printf("| target keeps %.3f of the non-embedding and %.3f of all parameters\n",
           (double)count_params(&tc, 0) / count_params(c, 0), (double)count_params(&tc, 1) / count_params(c, 1));
    if (full_every > 0) printf("| constraint: >= 1 full-attention layer in every %d consecutive layers\n", full_every);
    else if (s.method != METH_DROP_FULL) printf("| constraint: at least one full-attention layer\n");
    cJSON *extra = cJSON_CreateObject();
    cJSON_AddNumberToObject(extra, "full_every", full_every);
    cJSON_AddNumberToObject(extra, "seed", (double)s.seed);
    if (comm.rank == 0) ckpt_cleanup(s.out);  // from here on OUT is written (by rank 0): first what a killed run left
    Model out;
    if (s.method == METH_SHEARED) run_sheared(&s, &m, &tgt, full_every, extra, &out);
    else run_baseline(&s, &m, &tgt, full_every, extra, &out);
    char dur[32];
    printf("| done in %s\n", fmt_duration(now_sec() - t0, dur));
    cJSON_Delete(extra);
    model_free(&out);
    model_free(&m);
    return 0;
}

// Under mpirun every rank runs prune_main; rank 0 prints and writes, the others say nothing unless they fail
int main(int argc, char **argv) { return comm_main(&comm, prune_main, argc, argv); }
#endif
