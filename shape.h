// shape.h — the one home of structure: what a target shape is, which rows and columns of every tensor
// each prunable structure owns, and from that one table the slicer, the kept-parameter counter, the
// sliding/full layer rule, the target reader, the planner and the public presets. prune.c, train.c
// (lottery ticket B) and profile.c (plan, memory) include it after model.h. Read top to bottom:
//   1. Shape and structures  a target's sizes; the five prunable structures and their rows
//   2. Axis table             per tensor kind: which structure indexes its rows and which its columns
//   3. Counter                kept parameters: exact for 0/1 keeps, expected for keep probabilities
//   4. Layer rule             a full-attention layer in every N consecutive kept layers; the best choice;
//                             Block Influence, the layer score of ShortGPT
//   5. Survivors and slicer   index lists of what survives; the sliced model; the report's lists
//   6. Targets                the target JSON (strict keys), the rules a target obeys, its config
//   7. Presets                the public Gemma configurations
//   8. Planner                a shape for a parameter budget: prune --keep and profile plan
// Gemma 4 full-attention layers have their own head size Dg and kv heads Kg (K=V layers: no v_proj); E2B/E4B
// add per-layer inputs, KV-shared layers (no k/v of their own) and double-wide FFNs (2F) on those: every
// count and index below goes through model.h's tensor_dims / layer_D / layer_K / layer_F.
#pragma once
#include "model.h"

// ================================================================================================
// 1. Shape and structures
// ================================================================================================

// The sizes a target sets, the same in every layer of a type. Kg: kv heads of Gemma 4's full-attention
// layers (0 in a literal: derived by shape_fix; Gemma 3: = K). head_dim (and Gemma 4's global one) is not pruned.
typedef struct {
    int d, F, L, H, K, D, Kg;
} Shape;

static Shape shape_of(const Config *c) { return (Shape){c->d, c->F, c->L, c->H, c->K, c->D, c->Kg}; }

// Gemma 3: Kg = K. Gemma 4 without a given Kg: the source's Kg/K ratio, rounded down to a divisor of H
// (= K when the source's full layers share K, as transformers has it without attention_k_eq_v).
static void shape_fix(const Config *c, Shape *t) {
    if (c->arch == 3 || c->Kg == c->K) { t->Kg = t->K; return; }
    if (t->Kg > 0) return;
    int kg = (int)((long)c->Kg * t->K / c->K);
    if (kg < 1) kg = 1;
    while (kg > 1 && t->H % kg) kg--;
    t->Kg = kg;
}
static inline int target_K(const Config *c, const Shape *t, int l) { return c->arch == 4 && c->full[l] ? t->Kg : t->K; }

static int count_full(const Config *c) {
    int n = 0;
    for (int l = 0; l < c->L; l++) n += c->full[l];
    return n;
}

// The prunable structures (one hard-concrete mask each in prune.c), as rows of elements:
//   layer [1 x L] | kv group [L x K_l] | query slot [L x H/K_l]: slot s of every group of the layer, so groups
//   stay equal | FFN channel [L x F_l] (E2B: 2F on the double-wide layers) | hidden dim [1 x d].
// Query head h of a layer is slot h % G_l of kv group h / G_l (G_l = H / K_l).
enum { M_LAYER, M_GROUP, M_SLOT, M_FFN, M_HIDDEN, M_N };
__attribute__((unused)) static const char *mask_name[M_N] = {"layer", "kv_group", "query_slot", "ffn", "hidden"};

static int struct_rows(const Config *c, int m) { return m == M_LAYER || m == M_HIDDEN ? 1 : c->L; }
static int struct_len(const Config *c, int m, int r) {
    switch (m) {
    case M_LAYER: return c->L;
    case M_GROUP: return layer_K(c, r);
    case M_SLOT: return c->H / layer_K(c, r);
    case M_FFN: return layer_F(c, r);
    default: return c->d;
    }
}
// elements a target keeps in row r (E2B's double-wide layers keep 2F_target of their 2F)
static int struct_target(const Config *c, const Shape *t, int m, int r) {
    switch (m) {
    case M_LAYER: return t->L;
    case M_GROUP: return target_K(c, t, r);
    case M_SLOT: return t->H / target_K(c, t, r);
    case M_FFN: return t->F * (layer_F(c, r) / c->F);
    default: return t->d;
    }
}
// E2B/E4B prune query heads and FFN channels only: the per-layer input table has one slice per layer, the
// KV-shared layers read their source's kv heads, and every d-sized per-layer tensor would follow the hidden mask
static int struct_prunable(const Config *c, int m) { return !has_e2b_extras(c) || m == M_SLOT || m == M_FFN; }

// ================================================================================================
// 2. Axis table: for every tensor kind, which structure indexes its rows and which its columns (as the
//    Hugging Face file stores it, [rows, cols]). Slicing gathers these index lists; counting multiplies the
//    kept sizes of the two axes. A tensor of layer l goes with its layer.
// ================================================================================================

enum {
    AX_ALL,     // not pruned: kept whole
    AX_HIDDEN,  // hidden dims: d entries
    AX_HEAD,    // query heads, D_l rows each (head h: kv group h / G_l, query slot h % G_l)
    AX_KV,      // kv groups (kv heads), D_l rows each
    AX_FFN,     // FFN channels: F_l entries
    AX_LAYER,   // layers, P entries each (E2B/E4B's per-layer input tables)
};

typedef struct {
    int kind;
    int rows, cols;
} KindAxes;

// indexed by kind: the per-layer kinds in their order, then the model-level ones from T_EMBED on
static const KindAxes kind_axes_table[T_NKINDS + 5] = {
    {T_IN_NORM, AX_HIDDEN, AX_ALL},        {T_WQ, AX_HEAD, AX_HIDDEN},          {T_WK, AX_KV, AX_HIDDEN},
    {T_WV, AX_KV, AX_HIDDEN},              {T_Q_NORM, AX_ALL, AX_ALL},          {T_K_NORM, AX_ALL, AX_ALL},
    {T_WO, AX_HIDDEN, AX_HEAD},            {T_POST_ATTN_NORM, AX_HIDDEN, AX_ALL}, {T_PRE_FFN_NORM, AX_HIDDEN, AX_ALL},
    {T_WGATE, AX_FFN, AX_HIDDEN},          {T_WUP, AX_FFN, AX_HIDDEN},          {T_WDOWN, AX_HIDDEN, AX_FFN},
    {T_POST_FFN_NORM, AX_HIDDEN, AX_ALL},  {T_PLE_GATE, AX_ALL, AX_HIDDEN},     {T_PLE_PROJ, AX_HIDDEN, AX_ALL},
    {T_PLE_NORM, AX_HIDDEN, AX_ALL},       {T_LAYER_SCALAR, AX_ALL, AX_ALL},
    // model-level: the tied embedding's columns, the final norm, and E2B's per-layer input tables, whose
    // L*P axis is layer-major (the projection's output is reshaped to [L, P])
    {T_EMBED, AX_ALL, AX_HIDDEN},          {T_FINAL_NORM, AX_HIDDEN, AX_ALL},   {T_PLE_EMBED, AX_ALL, AX_LAYER},
    {T_PLE_MODEL_PROJ, AX_LAYER, AX_HIDDEN}, {T_PLE_PROJ_NORM, AX_ALL, AX_ALL},
};

static KindAxes kind_axes(int kind) {
    int i = kind < T_NKINDS ? kind : T_NKINDS + kind - T_EMBED;
    if (kind < 0 || i >= T_NKINDS + 5 || kind_axes_table[i].kind != kind)
        fail("internal: tensor kind %d has no entry in shape.h's axis table", kind);
    return kind_axes_table[i];
}

// ================================================================================================
// 3. Counter: the parameters a model keeps, from the axis table and model.h's tensor shapes. Exact for
//    0/1 keeps (the count of the sliced model: model.h's count_params of its config); with keep
//    probabilities the expected count (the Lagrangian's expected size), multiplying independent keep
//    probabilities: a tensor of layer l keeps E[layer] · E[rows] · E[cols], a query head E[group]·E[slot].
// ================================================================================================

typedef struct {
    double layer[MAX_LAYERS];  // per source layer: 1 kept, 0 removed, or its keep probability
    double group[MAX_LAYERS];  // per source layer: kv groups kept
    double slot[MAX_LAYERS];   // per source layer: query slots kept (in every group)
    double ffn[MAX_LAYERS];    // per source layer: FFN channels kept (of its F_l)
    double hidden;             // hidden dims kept
} Kept;

// the kept size of one axis of a tensor of layer l (-1: model-level) whose whole extent is `extent`
static double axis_kept(const Config *c, const Kept *k, int axis, int l, size_t extent) {
    double s = 0;
    if (axis == AX_HIDDEN) return k->hidden;
    if (axis == AX_LAYER) {
        for (int j = 0; j < c->L; j++) s += k->layer[j];
        return s * c->P;
    }
    if (l < 0) return (double)extent;  // a model-level tensor has no per-layer axis
    switch (axis) {
    case AX_HEAD: return layer_D(c, l) * k->group[l] * k->slot[l];
    case AX_KV: return layer_D(c, l) * k->group[l];
    case AX_FFN: return k->ffn[l];
    default: return (double)extent;
    }
}

static double tensor_kept(const Config *c, const Kept *k, int kind, int l) {
    size_t r, cols;
    if (!tensor_dims(c, kind, l, &r, &cols)) return 0;
    KindAxes a = kind_axes(kind);
    return axis_kept(c, k, a.rows, l, r) * axis_kept(c, k, a.cols, l, cols);
}

// non-embedding parameters (what Sheared-LLaMA targets count), or all of them with the token tables. Layers of
// the same kind with the same keeps count the same: the sum of the previous layer is reused (a planner counts
// many shapes of 60-layer models).
static double params_kept(const Config *c, const Kept *k, int with_embedding) {
    static const int model_kinds[5] = {T_EMBED, T_PLE_EMBED, T_PLE_MODEL_PROJ, T_PLE_PROJ_NORM, T_FINAL_NORM};
    double n = 0, per = 0;
    for (int i = 0; i < 5; i++)
        if (with_embedding || !kind_is_token_table(model_kinds[i])) n += tensor_kept(c, k, model_kinds[i], -1);
    for (int l = 0; l < c->L; l++) {
        int same = l > 0 && c->full[l] == c->full[l - 1] && layer_shared(c, l) == layer_shared(c, l - 1) &&
                   k->group[l] == k->group[l - 1] && k->slot[l] == k->slot[l - 1] && k->ffn[l] == k->ffn[l - 1];
        if (!same) {
            per = 0;
            for (int kind = 0; kind < T_NKINDS; kind++) per += tensor_kept(c, k, kind, l);
        }
        n += k->layer[l] * per;
    }
    return n;
}

// what a target shape keeps of source c, with the kept source layers take[] (NULL: all)
static Kept kept_of_shape(const Config *c, const Shape *t, const int *take) {
    Kept k;  // only the source's L layers are read
    k.hidden = t->d;
    for (int l = 0; l < c->L; l++) {
        k.layer[l] = take ? take[l] : 1;
        k.group[l] = struct_target(c, t, M_GROUP, l), k.slot[l] = struct_target(c, t, M_SLOT, l);
        k.ffn[l] = struct_target(c, t, M_FFN, l);
    }
    return k;
}

// ================================================================================================
// 4. Layer rule (Gemma's sliding/full pattern): the kept layers hold a full-attention layer in every run of
//    N consecutive layers (N <= 0: no window), at least one when the source has any, and on Gemma 4 a
//    full-attention layer last (transformers forces it).
// ================================================================================================

// default N: the longest run of sliding layers in the source + 1 (Gemma 3's 5:1 pattern -> 6), so the source
// itself satisfies it; 0 (no rule) when the source has no full-attention layer
static int default_full_every(const Config *c) {
    int run = 0, longest = 0;
    for (int l = 0; l < c->L; l++) run = c->full[l] ? 0 : run + 1, longest = run > longest ? run : longest;
    return count_full(c) ? longest + 1 : 0;
}

// the rule as a predicate on the kept source layers keep[]
static int layers_ok(const Config *c, const int *keep, int N) {
    int run = 0, any = 0, last = -1;
    for (int l = 0; l < c->L; l++) {
        if (!keep[l]) continue;
        last = l;
        if (c->full[l]) run = 0, any = 1;
        else if (N > 0 && ++run >= N) return 0;
    }
    if (count_full(c) && !any) return 0;
    return !(c->arch == 4 && last >= 0 && !c->full[last]);
}

// The n of the L layers with the largest summed score that obey the rule, holding exactly nf full-attention
// layers (nf < 0: any number, at least one when the source has one): dynamic programming over (layers seen, taken,
// sliding layers since the last full one, full layers taken). Returns 0 when no choice obeys it.
static int layers_best(const Config *c, const double *score, int n, int N, int nf, int *take) {
    int L = c->L, need_full = count_full(c) > 0, last_full = c->arch == 4;
    if (last_full && N <= 0) N = n + 1;  // track the trailing sliding run without limiting it
    int J = N > 0 ? (N < n + 1 ? N : n + 1) : 1;  // j = trailing sliding run, kept <= N-1 (and <= n)
    int NF = nf >= 0 ? nf + 1 : 2;                // f = full layers taken (nf < 0: saturating at "any")
    size_t S = (size_t)(n + 1) * J * NF;
#define ST(k, j, f) (((size_t)(k) * J + (j)) * NF + (f))
    double *val = (double *)mallocCheck(sizeof(double) * S * (L + 1));
    int *par = (int *)mallocCheck(sizeof(int) * S * (L + 1));  // previous state * 2 + took
    for (size_t s = 0; s < S * (L + 1); s++) val[s] = -INFINITY;
    val[ST(0, 0, 0)] = 0;
    for (int i = 0; i < L; i++) {
        double *v0 = val + S * i, *v1 = val + S * (i + 1);
        int *p1 = par + S * (i + 1);
        for (int k = 0; k <= n; k++)
            for (int j = 0; j < J; j++)
                for (int f = 0; f < NF; f++) {
                    size_t s = ST(k, j, f);
                    if (v0[s] == -INFINITY) continue;
                    if (v0[s] > v1[s]) v1[s] = v0[s], p1[s] = (int)(s * 2);  // skip layer i
                    if (k == n) continue;
                    int nj = c->full[i] ? 0 : (N > 0 ? j + 1 : 0), nff = c->full[i] ? (nf >= 0 ? f + 1 : 1) : f;
                    if (nj >= J || nff >= NF) continue;  // N sliding layers in a row, or more than nf full ones
                    size_t t = ST(k + 1, nj, nff);
                    double v = v0[s] + score[i];
                    if (v > v1[t]) v1[t] = v, p1[t] = (int)(s * 2 + 1);
                }
    }
    size_t best = (size_t)-1;
    int f0 = nf >= 0 ? nf : need_full || last_full ? 1 : 0;
    for (int j = 0; j < (last_full ? 1 : J); j++)  // last_full: no sliding layer after the last full one
        for (int f = f0; f < NF; f++) {
            size_t s = ST(n, j, f);
            if (val[S * L + s] > -INFINITY && (best == (size_t)-1 || val[S * L + s] > val[S * L + best])) best = s;
        }
    int ok = best != (size_t)-1;
    for (int i = L; ok && i > 0; i--) {
        int p = par[S * i + best];
        take[i - 1] = p & 1;
        best = (size_t)(p >> 1);
    }
#undef ST
    free(val);
    free(par);
    return ok;
}

// Which n layers to keep. With a score per layer (learned masks, Block Influence, ablation Δloss; higher =
// keep): the best choice under the rule. Without one: each layer type evenly spaced, with as many full layers as
// the source's ratio asks (more if the rule needs them), the last full and the first sliding layer among them;
// where spacing cannot obey the rule, any choice that does. Returns 0 when no choice obeys the rule.
static int choose_layers(const Config *c, const double *score, int n, int N, int *take) {
    if (n < 1 || n > c->L) return 0;
    if (score) return layers_best(c, score, n, N, -1, take);
    int L = c->L, nfull = 0, ns = 0, fl[MAX_LAYERS], sl[MAX_LAYERS];
    for (int l = 0; l < L; l++) {
        if (c->full[l]) fl[nfull++] = l;
        else sl[ns++] = l;
    }
    int kf0 = (int)lround((double)n * nfull / L);
    if (nfull && kf0 < 1) kf0 = 1;
    for (int kf = kf0; kf <= nfull && kf <= n; kf++) {
        int ks = n - kf;
        if (ks > ns) continue;
        memset(take, 0, sizeof(int) * (size_t)L);
        for (int i = 0; i < kf; i++) take[fl[(int)(((long)(i + 1) * nfull) / kf) - 1]] = 1;  // includes the last full
        for (int i = 0; i < ks; i++) take[sl[(int)(((long)i * ns) / ks)]] = 1;                 // includes the first
        if (layers_ok(c, take, N)) return 1;
    }
    double ones[MAX_LAYERS];
    for (int l = 0; l < L; l++) ones[l] = 1;
    return layers_best(c, ones, n, N, -1, take);
}

// How many full-attention layers n kept layers hold: as many as the rule's unscored choice above (what
// target_config and the planner count), so that pruning's layer masks can aim at each type's count (prune.c
// gives the sliding and the full layers a mask row, a target and a multiplier each). -1: no choice obeys the rule.
static int full_layers_kept(const Config *c, int n, int N) {
    int take[MAX_LAYERS], k = 0;
    if (!choose_layers(c, NULL, n, N, take)) return -1;
    for (int l = 0; l < c->L; l++) k += take[l] && c->full[l];
    return k;
}

// Block Influence (ShortGPT; Minitron's depth score) and the residual stream around a layer, over N tokens of
// width d: adds to s[0..3] the sums over tokens of ||x_in||, ||x_out||, 1 − cos(x_in, x_out) (0.5 where a vector
// is zero: ShortGPT's NaN rule) and ||x_out − x_in|| / ||x_in|| (0 where x_in is zero); x_out is read times
// out_scale. A layer's output is the stream the next layer reads: on Gemma 4 after layer_scalar, which multiplies
// the whole stream (transformers' hidden_states hold it so); a positive scale leaves the cosine unchanged.
static void resid_stats(const float *xin, const float *xout, float out_scale, int N, int d, double *s) {
    double *v = (double *)mallocCheck(sizeof(double) * (size_t)N * 4);
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *a = xin + (size_t)n * d, *b = xout + (size_t)n * d;
        double aa = 0, bb = 0, ab = 0, dd = 0;
        for (int i = 0; i < d; i++) {
            double x = a[i], y = (double)b[i] * out_scale;
            aa += x * x, bb += y * y, ab += x * y, dd += (y - x) * (y - x);
        }
        double na = sqrt(aa), nb = sqrt(bb);
        v[n * 4] = na, v[n * 4 + 1] = nb;
        v[n * 4 + 2] = na > 0 && nb > 0 ? 1 - ab / (na * nb) : 0.5;
        v[n * 4 + 3] = na > 0 ? sqrt(dd) / na : 0;
    }
    for (int n = 0; n < N; n++)  // in order: the same sums for any thread count
        for (int k = 0; k < 4; k++) s[k] += v[n * 4 + k];
    free(v);
}

// ================================================================================================
// 5. Survivors and slicer: what survives as index lists into the source, then one gather per tensor
//    through the axis table. prune.c's finalize slices the folded source; train.c's lottery ticket B the
//    source's own weights at the survivors a prune report lists.
// ================================================================================================

typedef struct {
    int L, layer[MAX_LAYERS];  // kept layers, source indices in order
    int K, G, H, F, d;         // per kept layer (the same in every one; K, G: of the sliding layers)
    int Kg, Gg;                // Gemma 4's full layers (Gemma 3: = K, G)
    int *group, *slot, *head;  // [L][source H]: source kv groups, query slots, query heads (group-major)
    int *ffn;                  // [L][max_F(source)]: F·(F_l/F) source channels of each kept layer
    int *hid;                  // [d] source hidden dims
} Survivors;

static void survivors_alloc(const Config *c, Survivors *sv) {
    memset(sv, 0, sizeof *sv);
    size_t L = (size_t)c->L;
    sv->group = (int *)mallocCheck(sizeof(int) * L * c->H), sv->slot = (int *)mallocCheck(sizeof(int) * L * c->H);
    sv->head = (int *)mallocCheck(sizeof(int) * L * c->H), sv->ffn = (int *)mallocCheck(sizeof(int) * L * max_F(c));
    sv->hid = (int *)mallocCheck(sizeof(int) * (size_t)c->d);
}
static void survivors_free(Survivors *sv) { free(sv->group), free(sv->slot), free(sv->head), free(sv->ffn), free(sv->hid); }

static inline int survivors_K(const Config *c, const Survivors *sv, int k) {  // kv groups of kept layer k
    return c->arch == 4 && c->full[sv->layer[k]] ? sv->Kg : sv->K;
}
static inline int survivors_nffn(const Config *c, const Survivors *sv, int k) {  // FFN channels of kept layer k
    return sv->F * (layer_F(c, sv->layer[k]) / c->F);
}

// the config of the model the survivors make
static Config survivors_config(const Config *c, const Survivors *sv) {
    Config t = *c;
    t.d = sv->d, t.F = sv->F, t.L = sv->L, t.H = sv->H, t.K = sv->K, t.Kg = sv->Kg;
    for (int k = 0; k < sv->L; k++) t.full[k] = c->full[sv->layer[k]];
    if (c->n_shared && sv->L != c->L) fail("internal: an E2B/E4B slice must keep every layer");
    return t;
}

// dst[nr, nc] = src[ri, ci] (a NULL list: the identity)
static void gather(float *dst, const float *src, size_t src_cols, const int *ri, size_t nr, const int *ci, size_t nc) {
    for (size_t r = 0; r < nr; r++) {
        const float *s = src + (ri ? (size_t)ri[r] : r) * src_cols;
        if (!ci) memcpy(dst + r * nc, s, sizeof(float) * nc);
        else for (size_t k = 0; k < nc; k++) dst[r * nc + k] = s[ci[k]];
    }
}

// The source indices along one axis of a tensor of kept layer k (k = -1: model-level) and their number in *n;
// NULL: every index in order (*n unchanged for AX_ALL: the caller's whole extent).
static int *axis_index(const Config *c, const Survivors *sv, int axis, int k, size_t *n) {
    int l = k >= 0 ? sv->layer[k] : -1, D = l >= 0 ? layer_D(c, l) : 0, blocks = 0, width = 1;
    const int *idx = NULL;
    switch (axis) {
    case AX_HIDDEN: idx = sv->hid, blocks = sv->d; break;
    case AX_FFN: idx = sv->ffn + (size_t)k * max_F(c), blocks = survivors_nffn(c, sv, k); break;
    case AX_HEAD: idx = sv->head + (size_t)k * c->H, blocks = sv->H, width = D; break;
    case AX_KV: idx = sv->group + (size_t)k * c->H, blocks = survivors_K(c, sv, k), width = D; break;
    case AX_LAYER: idx = sv->layer, blocks = sv->L, width = c->P; break;
    default: return NULL;  // AX_ALL
    }
    *n = (size_t)blocks * width;
    int *rows = (int *)mallocCheck(sizeof(int) * (*n ? *n : 1)), identity = 1;
    for (int a = 0; a < blocks; a++)
        for (int e = 0; e < width; e++) rows[a * width + e] = idx[a] * width + e, identity &= rows[a * width + e] == a * width + e;
    if (identity) free(rows), rows = NULL;  // a plain copy (E2B's whole per-layer token table: no index list)
    return rows;
}

static const PEntry *param_find(const ParamTable *t, int kind, int layer) {
    for (int i = 0; i < t->n; i++)
        if (t->e[i].kind == kind && t->e[i].layer == layer) return &t->e[i];
    return NULL;
}

// The tensor of the source table that sliced tensor te (of a model laid out by slice_model) is cut from
static const PEntry *slice_source(const ParamTable *tab, const Survivors *sv, const PEntry *te) {
    int k = te->layer, l = k >= 0 ? sv->layer[k] : -1;
    const PEntry *se = param_find(tab, te->kind, l);
    if (!se) fail("internal: %s has no source tensor in layer %d", te->name, l);
    return se;
}

// sliced tensor te into dst, from its source tensor se's values src: the survivors of its two axes
static void slice_tensor(const Config *c, const Survivors *sv, const PEntry *te, const PEntry *se, const float *src,
                         float *dst) {
    KindAxes a = kind_axes(te->kind);
    size_t nr = se->rows, nc = se->cols;
    int *ri = axis_index(c, sv, a.rows, te->layer, &nr), *ci = axis_index(c, sv, a.cols, te->layer, &nc);
    if (nr != te->rows || nc != te->cols)
        fail("internal: slicing %s gives [%zu, %zu] but the sliced config has [%zu, %zu]", se->name, nr, nc, te->rows,
             te->cols);
    gather(dst, src, se->cols, ri, nr, ci, nc);
    free(ri), free(ci);
}

// The sliced model from source weights w (laid out by tab): every tensor of the sliced config gathers the
// survivors of its two axes from the same tensor of its source layer (w NULL: the sliced layout, its weights zero).
// scale_dtype: how the loader of the written model rounds sqrt(d).
static void slice_model(const Config *c, const ParamTable *tab, const float *w, const Survivors *sv, int scale_dtype,
                        Model *out) {
    memset(out, 0, sizeof *out);
    out->c = survivors_config(c, sv);
    out->c.scale_dtype = scale_dtype;
    model_init_layout(out);
    model_masks_changed(out);
    for (int i = 0; w && i < out->tab.n; i++) {
        const PEntry *te = &out->tab.e[i], *se = slice_source(tab, sv, te);
        slice_tensor(c, sv, te, se, w + se->offset, out->w + te->offset);
    }
}

// The same with the source's tensors one at a time (no whole source in memory): get(ctx, se, buf) puts source tensor
// se's fp32 values in buf (param_largest(tab) floats), from a file or folded (prune.c), and its survivors are
// gathered from there
typedef void (*SliceGet)(void *ctx, const PEntry *se, float *buf);
static void slice_model_each(const Config *c, const ParamTable *tab, const Survivors *sv, int scale_dtype, Model *out,
                             SliceGet get, void *ctx) {
    slice_model(c, tab, NULL, sv, scale_dtype, out);  // the layout
    float *buf = (float *)mallocCheck(sizeof(float) * param_largest(tab));
    for (int i = 0; i < out->tab.n; i++) {
        const PEntry *te = &out->tab.e[i], *se = slice_source(tab, sv, te);
        get(ctx, se, buf);
        slice_tensor(c, sv, te, se, buf, out->w + te->offset);
    }
    free(buf);
}

// --- the report's lists (prune_report.json: prune.c writes them, train.c's lottery ticket B reads them) ---

static cJSON *shape_json(const Shape *s, int arch) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "hidden_size", s->d);
    cJSON_AddNumberToObject(j, "intermediate_size", s->F);
    cJSON_AddNumberToObject(j, "num_hidden_layers", s->L);
    cJSON_AddNumberToObject(j, "num_attention_heads", s->H);
    cJSON_AddNumberToObject(j, "num_key_value_heads", s->K);
    cJSON_AddNumberToObject(j, "head_dim", s->D);
    if (arch == 4) cJSON_AddNumberToObject(j, "num_global_key_value_heads", s->Kg);
    return j;
}

static cJSON *json_int_list(const int *v, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
    return a;
}

// source_shape, target_shape, layers, kv_heads, query_slots, query_heads, ffn (per kept layer, ascending),
// hidden, layer_types
static void survivors_to_json(cJSON *j, const Config *src, const Survivors *sv) {
    Config out = survivors_config(src, sv);
    Shape ss = shape_of(src), ts = shape_of(&out);
    cJSON_AddItemToObject(j, "source_shape", shape_json(&ss, src->arch));
    cJSON_AddItemToObject(j, "target_shape", shape_json(&ts, src->arch));
    cJSON_AddItemToObject(j, "layers", json_int_list(sv->layer, sv->L));
    const char *lists[] = {"kv_heads", "query_slots", "query_heads", "ffn"};
    for (int q = 0; q < 4; q++) {
        cJSON *a = cJSON_AddArrayToObject(j, lists[q]);
        for (int k = 0; k < sv->L; k++) {
            const int *v[] = {sv->group + (size_t)k * src->H, sv->slot + (size_t)k * src->H, sv->head + (size_t)k * src->H,
                              sv->ffn + (size_t)k * max_F(src)};
            int full = src->arch == 4 && src->full[sv->layer[k]];
            int n[] = {survivors_K(src, sv, k), full ? sv->Gg : sv->G, sv->H, survivors_nffn(src, sv, k)};
            int *sorted = (int *)mallocCheck(sizeof(int) * (size_t)(n[q] ? n[q] : 1));
            memcpy(sorted, v[q], sizeof(int) * (size_t)n[q]);
            for (int x = 1; x < n[q]; x++)  // query heads come group-major, which is already ascending
                for (int y = x; y > 0 && sorted[y - 1] > sorted[y]; y--) { int tmp = sorted[y]; sorted[y] = sorted[y - 1]; sorted[y - 1] = tmp; }
            cJSON_AddItemToArray(a, json_int_list(sorted, n[q]));
            free(sorted);
        }
    }
    cJSON_AddItemToObject(j, "hidden", json_int_list(sv->hid, sv->d));
    cJSON *lt = cJSON_AddArrayToObject(j, "layer_types");
    for (int k = 0; k < sv->L; k++) cJSON_AddItemToArray(lt, cJSON_CreateString(out.full[k] ? "full_attention" : "sliding_attention"));
}

// a sorted list of n distinct indices in [0, limit) into v
static void index_list(const cJSON *a, int n, int limit, int *v, const char *what, const char *src) {
    if (!a || !cJSON_IsArray(a)) fail("%s: \"%s\" must be an array of indices", src, what);
    if (cJSON_GetArraySize(a) != n)
        fail("%s: \"%s\" lists %d indices but target_shape implies %d", src, what, cJSON_GetArraySize(a), n);
    int i = 0;
    for (const cJSON *e = a->child; e; e = e->next, i++) {
        double x = cJSON_IsNumber(e) ? e->valuedouble : -1;
        if (x != floor(x) || x < 0 || x >= limit) fail("%s: \"%s\"[%d] is not an index in [0, %d)", src, what, i, limit);
        v[i] = (int)x;
        if (i && v[i] <= v[i - 1]) fail("%s: \"%s\" must be sorted ascending without repeats", src, what);
    }
}

static const cJSON *report_layer_list(const cJSON *r, const char *key, int i, int L, const char *src) {
    const cJSON *a = json_get(r, key);
    if (!a || !cJSON_IsArray(a) || cJSON_GetArraySize(a) != L)
        fail("%s: \"%s\" must hold one list per kept layer (%d)", src, key, L);
    return cJSON_GetArrayItem(a, i);
}

// The survivors a prune report lists (target_shape, layers, kv_heads, query_heads, ffn, hidden; source_shape and
// layer_types checked when present) against source config s. Every list is checked: sorted, inside the source,
// the target's length, and query heads inside their kept kv groups (groups stay whole).
static void survivors_from_report(const Config *s, const char *report, Survivors *sv) {
    cJSON *r = json_read(report);
    const cJSON *ts = json_get(r, "target_shape"), *ss = json_get(r, "source_shape");
    if (!ts) fail("%s: no \"target_shape\"; is it a prune_report.json from ./prune?", report);
    static const char *keys[] = {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                                 "num_key_value_heads", "head_dim"};
    int sz[6] = {s->d, s->F, s->L, s->H, s->K, s->D}, tv[6];
    for (int i = 0; i < 6; i++) {
        tv[i] = (int)json_int(ts, keys[i], -1, report);
        if (tv[i] < 1 || tv[i] > sz[i])
            fail("%s: target_shape.%s = %d must be in [1, %d] (the source's)", report, keys[i], tv[i], sz[i]);
        if (ss && json_int(ss, keys[i], sz[i], report) != sz[i])
            fail("%s: source_shape.%s = %d but the source has %d; the report belongs to another model", report, keys[i],
                 json_int(ss, keys[i], 0, report), sz[i]);
    }
    if (tv[5] != s->D) fail("%s: target head_dim %d differs from the source's %d; pruning keeps head_dim", report, tv[5], s->D);
    survivors_alloc(s, sv);
    sv->d = tv[0], sv->F = tv[1], sv->L = tv[2], sv->H = tv[3], sv->K = tv[4], sv->Kg = sv->K;
    if (sv->H % sv->K) fail("%s: target heads %d are not a multiple of kv heads %d", report, sv->H, sv->K);
    index_list(json_get(r, "layers"), sv->L, s->L, sv->layer, "layers", report);
    if (s->n_shared && sv->L != s->L) fail("%s: an E2B/E4B report must keep every layer", report);
    const cJSON *lt = json_get(r, "layer_types");
    for (int k = 0; k < sv->L; k++) {
        int full = s->full[sv->layer[k]];
        const cJSON *e = lt ? cJSON_GetArrayItem(lt, k) : NULL;
        if (e && (!cJSON_IsString(e) || strcmp(e->valuestring, full ? "full_attention" : "sliding_attention")))
            fail("%s: layer_types[%d] disagrees with source layer %d (%s)", report, k, sv->layer[k],
                 full ? "full_attention" : "sliding_attention");
        if (s->arch == 4 && full) sv->Kg = cJSON_GetArraySize(report_layer_list(r, "kv_heads", k, sv->L, report));
    }
    if (sv->Kg < 1 || sv->H % sv->Kg) fail("%s: full layers keep %d kv heads, which do not divide %d heads", report, sv->Kg, sv->H);
    sv->G = sv->H / sv->K, sv->Gg = sv->H / sv->Kg;
    index_list(json_get(r, "hidden"), sv->d, s->d, sv->hid, "hidden", report);
    char what[64];
    for (int k = 0; k < sv->L; k++) {
        int l = sv->layer[k], Ks = layer_K(s, l), Gs = s->H / Ks, Kt = survivors_K(s, sv, k), Gt = sv->H / Kt;
        int *g = sv->group + (size_t)k * s->H, *h = sv->head + (size_t)k * s->H;
        if (Kt > Ks || Gt > Gs) fail("%s: layer %d keeps %d kv heads of %d query heads each; the source has %d of %d", report, k, Kt, Gt, Ks, Gs);
        snprintf(what, sizeof what, "kv_heads[%d]", k);
        index_list(report_layer_list(r, "kv_heads", k, sv->L, report), Kt, Ks, g, what, report);
        snprintf(what, sizeof what, "query_heads[%d]", k);
        index_list(report_layer_list(r, "query_heads", k, sv->L, report), sv->H, s->H, h, what, report);
        snprintf(what, sizeof what, "ffn[%d]", k);
        index_list(report_layer_list(r, "ffn", k, sv->L, report), survivors_nffn(s, sv, k), layer_F(s, l),
                   sv->ffn + (size_t)k * max_F(s), what, report);
        for (int j = 0; j < sv->H; j++)  // kept query head j must sit in kept kv group j / Gt
            if (h[j] / Gs != g[j / Gt])
                fail("%s: layer %d keeps query head %d, whose kv head %d is not kept kv head #%d (%d); groups must stay "
                     "whole", report, k, h[j], h[j] / Gs, j / Gt, g[j / Gt]);
        for (int j = 0; j < Gt; j++) sv->slot[(size_t)k * s->H + j] = h[j] % Gs;
    }
    cJSON_Delete(r);
}

// ================================================================================================
// 6. Targets: the target JSON (prune --target), the rules every target obeys, the config of a target
// ================================================================================================

// The config of a target shape with the kept source layers take[] (NULL: the rule's unscored choice under
// the default N: Gemma 4's full layers differ in size, so a count depends on which types survive).
static Config target_config(const Config *c, const Shape *t, const int *take) {
    Config x = *c;
    x.d = t->d, x.F = t->F, x.L = t->L, x.H = t->H, x.K = t->K, x.Kg = t->Kg;
    int chosen[MAX_LAYERS];
    if (!take && t->L != c->L && choose_layers(c, NULL, t->L, default_full_every(c), chosen)) take = chosen;
    if (take)
        for (int l = 0, k = 0; l < c->L; l++)
            if (take[l]) x.full[k++] = c->full[l];
    return x;
}

// non-embedding parameters of a target shape (its layers as target_config chooses them)
static double shape_params(const Config *c, const Shape *t) {
    int take[MAX_LAYERS], *tp = NULL;
    if (t->L != c->L && choose_layers(c, NULL, t->L, default_full_every(c), take)) tp = take;
    Kept k = kept_of_shape(c, t, tp);
    return params_kept(c, &k, 0);
}

// A target JSON is either a shape — only the keys below, each missing one keeping the source's value — or a
// whole config.json (it has a model_type: profile plan's targets, a pruned model's own config), whose five size
// keys must be there and whose other keys describe what pruning does not change and are not read. An unknown
// key in a shape is a typo, refused with the accepted ones.
static const char *target_keys[] = {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                                    "num_key_value_heads", "num_global_key_value_heads", "head_dim"};
#define TARGET_KEYS_HELP "hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, " \
                         "num_key_value_heads, num_global_key_value_heads, head_dim"

static Shape target_from_json(const Config *c, const char *path) {
    cJSON *root = json_read(path);
    if (!cJSON_IsObject(root)) fail("%s: expected a JSON object like a config.json", path);
    const cJSON *j = json_get(root, "text_config") ? json_get(root, "text_config") : root;
    if (!cJSON_IsObject(j)) fail("%s: text_config must be a JSON object like a config.json", path);
    int whole = json_get(root, "model_type") != NULL;
    for (const cJSON *e = root->child; e && !whole; e = e->next) {
        int known = 0;
        for (size_t k = 0; k < sizeof target_keys / sizeof *target_keys; k++) known |= !strcmp(e->string, target_keys[k]);
        if (!known)
            fail("%s: unknown key \"%s\"; a target shape sets " TARGET_KEYS_HELP " (or give a whole config.json, "
                 "with its model_type)", path, e->string);
    }
    for (int k = 0; whole && k < 5; k++)
        if (!json_get(j, target_keys[k]))
            fail("%s: this config.json has no \"%s\"; a config.json target gives every size (or write a target shape "
                 "with only the sizes that change)", path, target_keys[k]);
    Shape t;
    t.d = (int)json_int(j, "hidden_size", c->d, path);
    t.F = (int)json_int(j, "intermediate_size", c->F, path);
    t.L = (int)json_int(j, "num_hidden_layers", c->L, path);
    t.H = (int)json_int(j, "num_attention_heads", c->H, path);
    t.K = (int)json_int(j, "num_key_value_heads", c->K, path);
    t.D = (int)json_int(j, "head_dim", c->D, path);
    t.Kg = (int)json_int(j, "num_global_key_value_heads", 0, path);
    cJSON_Delete(root);
    shape_fix(c, &t);
    return t;
}

// the rules every target obeys; fails with one line naming the field. drop_full: every full-attention layer
// goes (the one-shot "drop-full" method), so the layer rule does not apply.
static void check_target(const Config *c, const Shape *t, int full_every, int drop_full, const char *src) {
    const char *keys[] = {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads"};
    int tv[] = {t->d, t->F, t->L, t->H, t->K}, sv[] = {c->d, c->F, c->L, c->H, c->K};
    for (int i = 0; i < 5; i++) {
        if (tv[i] < 1) fail("%s: %s = %d must be at least 1", src, keys[i], tv[i]);
        if (tv[i] > sv[i]) fail("%s: %s = %d is more than the source's %d; pruning only removes", src, keys[i], tv[i], sv[i]);
    }
    if (t->D != c->D) fail("%s: head_dim = %d but the source has %d; head_dim is not pruned (drop the key)", src, t->D, c->D);
    for (int m = 0; m < M_N; m++)
        for (int r = 0; !struct_prunable(c, m) && r < struct_rows(c, m); r++)
            if (struct_target(c, t, m, r) != struct_len(c, m, r))
                fail("%s: Gemma 4 E2B/E4B prunes query heads and FFN channels only (per-layer inputs and KV-shared layers "
                     "stay whole): keep num_hidden_layers %d, hidden_size %d and the kv heads (%d, full layers %d)", src,
                     c->L, c->d, c->K, c->Kg);
    if (c->arch == 4 && c->Kg != c->K) {  // Gemma 4's full layers: their own kv heads
        if (t->Kg < 1 || t->Kg > c->Kg)
            fail("%s: num_global_key_value_heads = %d must be in [1, %d] (the source's)", src, t->Kg, c->Kg);
        if (t->H % t->Kg || t->H / t->Kg > c->H / c->Kg)
            fail("%s: num_attention_heads %d must be a multiple of num_global_key_value_heads %d with at most %d query "
                 "heads per kv head on full layers", src, t->H, t->Kg, c->H / c->Kg);
    } else if (t->Kg != t->K)
        fail("%s: num_global_key_value_heads %d differs from num_key_value_heads %d, but the source's full layers share "
             "the sliding layers' kv heads", src, t->Kg, t->K);
    if (t->H % t->K)
        fail("%s: num_attention_heads %d is not a multiple of num_key_value_heads %d; heads must divide into kv groups", src,
             t->H, t->K);
    if (t->H / t->K > c->H / c->K)
        fail("%s: %d query heads per kv head, but the source has only %d; choose num_attention_heads <= %d x "
             "num_key_value_heads", src, t->H / t->K, c->H / c->K, c->H / c->K);
    if (t->d % t->H) {
        int lo = t->d / t->H * t->H, hi = lo + t->H;
        fail("%s: hidden_size %d is not divisible by num_attention_heads %d, which transformers' Gemma3TextConfig "
             "refuses; use %d or %d", src, t->d, t->H, lo > 0 ? lo : hi, hi <= c->d ? hi : lo);
    }
    int nfull = count_full(c), take[MAX_LAYERS];
    if (drop_full) {
        if (t->L != c->L - nfull)
            fail("%s: drop-full keeps the %d sliding layers, but num_hidden_layers is %d; leave the key out", src,
                 c->L - nfull, t->L);
        return;
    }
    if (!choose_layers(c, NULL, t->L, full_every, take))
        fail("%s: %d layers cannot keep a full-attention layer in every %d consecutive layers%s (the source has %d full "
             "layers); use more layers or --full-every 0", src, t->L, full_every,
             c->arch == 4 ? " and end with one, as Gemma 4 must," : "", nfull);
}

// ================================================================================================
// 7. Presets: the public Gemma configurations (plan and memory answer questions about models nobody here
//    has the weights of). Gemma 3: transformers' convert_gemma3_weights.py _VARIANTS (270M to 27B), for 1B
//    and 27B also the published gemma-3-1b-it / gemma-3-27b-it config.json; omitted fields take
//    Gemma3TextConfig's defaults (configuration_gemma3.py: sliding_window_pattern 6, RoPE 1e4 local / 1e6
//    global, eps 1e-6). 4B and up: V = 262208 (the embedding padded for image tokens) and linear RoPE x8 on
//    global layers; 27B: query_pre_attn_scalar 168 = 5376/32. Gemma 4: convert_gemma4_weights.py _VARIANTS
//    (E2B, 31B) and convert_gemma4_unified_weights.py (12B, agreeing with google/gemma-4-12B's config.json);
//    Gemma4TextConfig's defaults (configuration_gemma4.py): head_dim 256, global_head_dim 512, proportional
//    RoPE 0.25 on full layers, final softcap 30. E2B: (4 sliding + 1 full) x 7, K = 1 everywhere, no K=V, the
//    last 20 layers KV-shared with a double-wide MLP, per-layer inputs of 256.
// ================================================================================================

typedef struct {
    const char *name;
    int arch, V, d, F, L, H, K, D, W, period, Dg, Kg, k_eq_v, max_pos;  // period: every period-th layer is full
    double qscalar, rope_scale, softcap;
    int P, n_shared, double_wide;
} Preset;

static const Preset presets[] = {
    {"gemma3-270m", 3, 262144, 640, 2048, 18, 4, 1, 256, 512, 6, 0, 0, 0, 32768, 256, 1, 0, 0, 0, 0},
    {"gemma3-1b", 3, 262144, 1152, 6912, 26, 4, 1, 256, 512, 6, 0, 0, 0, 32768, 256, 1, 0, 0, 0, 0},
    {"gemma3-4b", 3, 262208, 2560, 10240, 34, 8, 4, 256, 1024, 6, 0, 0, 0, 131072, 256, 8, 0, 0, 0, 0},
    {"gemma3-12b", 3, 262208, 3840, 15360, 48, 16, 8, 256, 1024, 6, 0, 0, 0, 131072, 256, 8, 0, 0, 0, 0},
    {"gemma3-27b", 3, 262208, 5376, 21504, 62, 32, 16, 128, 1024, 6, 0, 0, 0, 131072, 168, 8, 0, 0, 0, 0},
    {"gemma4-e2b", 4, 262144, 1536, 6144, 35, 8, 1, 256, 512, 5, 512, 1, 0, 131072, 0, 1, 30, 256, 20, 1},
    {"gemma4-12b", 4, 262144, 3840, 15360, 48, 16, 8, 256, 1024, 6, 512, 1, 1, 262144, 0, 1, 30, 0, 0, 0},
    {"gemma4-31b", 4, 262144, 5376, 21504, 60, 32, 16, 256, 1024, 6, 512, 4, 1, 262144, 0, 1, 30, 0, 0, 0},
};
#define NPRESETS ((int)(sizeof(presets) / sizeof(presets[0])))

static Config preset_config(const Preset *p) {
    Config c;
    memset(&c, 0, sizeof c);
    c.arch = p->arch, c.V = p->V, c.d = p->d, c.F = p->F, c.L = p->L, c.H = p->H, c.K = p->K, c.D = p->D;
    c.W = p->W, c.max_pos = p->max_pos;
    for (int l = 0; l < c.L; l++) c.full[l] = (l + 1) % p->period == 0;
    c.rope_local = 1e4, c.rope_global = 1e6, c.rope_scale = p->rope_scale, c.eps = 1e-6;
    c.qscalar = p->qscalar, c.final_softcap = p->softcap;
    c.bos = 2, c.eos = 1, c.pad = 0;
    c.scale_dtype = ST_BF16;
    if (p->arch == 3) c.Dg = c.D, c.Kg = c.K, c.partial_rotary = 1.0;
    else c.Dg = p->Dg, c.Kg = p->Kg, c.k_eq_v = p->k_eq_v, c.partial_rotary = 0.25;
    c.P = p->P, c.Vp = p->P ? p->V : 0, c.n_shared = p->n_shared, c.double_wide = p->double_wide;
    return c;
}

// a preset by its name or by an unambiguous tail of it ("31b", "e2b", "270m")
static const Preset *find_preset(const char *name) {
    const Preset *hit = NULL;
    int nhit = 0;
    for (int i = 0; i < NPRESETS; i++) {
        const char *n = presets[i].name, *dash = strchr(n, '-');
        if (!strcmp(n, name)) return &presets[i];
        if (dash && !strcasecmp(dash + 1, name)) hit = &presets[i], nhit++;
    }
    if (nhit == 1) return hit;
    char list[512] = "";
    for (int i = 0; i < NPRESETS; i++) strcat(strcat(list, i ? ", " : ""), presets[i].name);
    fail("--preset %s: %s; the presets are %s", name, nhit ? "ambiguous" : "unknown", list);
}

// ================================================================================================
// 8. Planner: a target shape for a parameter budget, counted by section 3, its layers by section 4, checked by
//    section 6's rules. Two styles:
//    width (prune --keep): every layer and head_dim kept and the query heads per kv head; the width (hidden
//      size, kv groups, FFN) scaled by one factor, the one whose rounded shape comes nearest the budget, then the
//      FFN refitted to the budget (width pruning lost less than depth pruning in Minitron);
//    family (profile plan): every cut of the source (L' <= L, d' on the rounding multiple and divisible by H',
//      H' keeping the GQA ratio on sliding and full layers, F' solved from the budget) within the tolerance of the
//      budget, nearest the proportions of the public Gemma family at that size (Sheared-LLaMA took its target
//      shapes from existing models of the target size: Pythia-1.4B for 1.3B, INCITE-3B for 2.7B).
//    E2B/E4B: only query heads and FFN channels move (section 1).
// ================================================================================================

enum { COUNT_TOTAL, COUNT_EFFECTIVE, COUNT_NONEMB };  // what a budget counts
static const char *count_names[] = {"total", "effective", "non_embedding"};

typedef struct {
    double nonemb;     // everything but the token tables (what Sheared-LLaMA targets count)
    double embed;      // V * d (tied: also the output matrix)
    double ple_table;  // Vp * L * P (E2B/E4B's per-layer token table)
    double total;
} Count;

static double count_of(const Count *n, int mode) {
    return mode == COUNT_TOTAL ? n->total : mode == COUNT_EFFECTIVE ? n->total - n->ple_table : n->nonemb;
}

// the counts of target t cut from c, keeping source layers take[] (NULL: all)
static Count target_count(const Config *c, const Shape *t, const int *take) {
    Kept k = kept_of_shape(c, t, take);
    Count n;
    n.nonemb = params_kept(c, &k, 0), n.total = params_kept(c, &k, 1);
    n.embed = (double)c->V * t->d, n.ple_table = n.total - n.nonemb - n.embed;
    return n;
}
static Count config_count(const Config *c) {
    Shape t = shape_of(c);
    return target_count(c, &t, NULL);
}

// The FFN size that brings t's count to the budget (the count is linear in F), rounded to the nearest multiple of
// `unit`, within [lo, the source's F].
static int solve_F(const Config *c, Shape t, const int *take, double budget, int mode, int unit, int lo) {
    t.F = 0;
    Count n0 = target_count(c, &t, take);
    t.F = unit;
    Count n1 = target_count(c, &t, take);
    double v0 = count_of(&n0, mode), slope = (count_of(&n1, mode) - v0) / unit;
    long F = unit * lround((budget - v0) / slope / unit);
    return (int)(F < lo ? lo : F > c->F ? c->F : F);
}

typedef struct {
    Shape t;
    int take[MAX_LAYERS];  // kept source layers
    Count n;
    double err, score;     // (count − budget) / budget; the style's distance (lower is better)
} Candidate;

static int gcd_i(int a, int b) { return b ? gcd_i(b, a % b) : a; }

// width: the shape of one scale factor w (every layer kept; GQA ratio kept; hidden size a multiple of the heads,
// and of 64 when there is room)
static Shape width_shape(const Config *c, double w) {
    Shape t = shape_of(c);
    t.K = (int)lround(c->K * w) > 0 ? (int)lround(c->K * w) : 1, t.H = t.K * (c->H / c->K);
    int unit = c->d >= 8 * (t.H / gcd_i(t.H, 64) * 64) ? t.H / gcd_i(t.H, 64) * 64 : t.H;
    t.d = (int)lround(c->d * w / unit) * unit;
    if (t.d < unit) t.d = unit;
    if (t.d > c->d) t.d = c->d / t.H * t.H;
    t.F = (int)lround(c->F * w) > 0 ? (int)lround(c->F * w) : 1;
    t.Kg = 0;
    shape_fix(c, &t);
    return t;
}

// prune --keep FRACTION: the width style on the non-embedding count; E2B/E4B: query heads (a multiple of both kv
// head counts) and the FFN, nearest the budget
static Shape plan_keep(const Config *c, double frac) {
    double want = frac * count_params(c, 0), best_err = INFINITY;
    Shape best = shape_of(c);
    int Funit = c->F % 2 == 0 ? 2 : 1;  // an even FFN, like the source's (the GPU kernels pair channels)
    if (!struct_prunable(c, M_HIDDEN)) {  // E2B/E4B
        int unit = c->K / gcd_i(c->K, c->Kg) * c->Kg;  // lcm(K, Kg)
        for (int h = unit; h <= c->H; h += unit) {
            Shape t = best;
            t.H = h, t.F = solve_F(c, t, NULL, want, COUNT_NONEMB, Funit, Funit);
            Count n = target_count(c, &t, NULL);
            if (fabs(n.nonemb - want) < best_err) best_err = fabs(n.nonemb - want), best = t;
        }
        return best;
    }
    for (int i = 1000; i >= 1; i--) {
        Shape t = width_shape(c, i / 1000.0);
        double err = fabs(shape_params(c, &t) - want);
        if (err < best_err) best_err = err, best = t;
    }
    best.F = solve_F(c, best, NULL, want, COUNT_NONEMB, Funit, 1);
    return best;
}

// family: L ~ exp(aL) P^bL, d ~ exp(ad) P^bd over the dense presets (P = non-embedding parameters)
typedef struct {
    double aL, bL, ad, bd;
} FamilyFit;

static FamilyFit family_fit(void) {
    double sx = 0, sxx = 0, syL = 0, sxyL = 0, syd = 0, sxyd = 0;
    int n = 0;
    for (int i = 0; i < NPRESETS; i++) {
        Config c = preset_config(&presets[i]);
        if (has_e2b_extras(&c)) continue;  // dense decoders only
        double x = log((double)count_params(&c, 0)), yL = log(c.L), yd = log(c.d);
        sx += x, sxx += x * x, syL += yL, sxyL += x * yL, syd += yd, sxyd += x * yd, n++;
    }
    FamilyFit f;
    double den = n * sxx - sx * sx;
    f.bL = (n * sxyL - sx * syL) / den, f.aL = (syL - f.bL * sx) / n;
    f.bd = (n * sxyd - sx * syd) / den, f.ad = (syd - f.bd * sx) / n;
    return f;
}

// the default rounding multiple of the hidden and FFN sizes, by width
static int plan_multiple_default(int d) { return d >= 2048 ? 128 : d >= 512 ? 64 : d >= 128 ? 16 : 8; }

typedef struct {
    int mode;              // what the budget counts (COUNT_*)
    int mult;              // hidden and FFN sizes are multiples of this
    double tol;            // largest |count − budget| / budget
    int N;                 // the layer rule's N (full_every)
    const double *imp;     // per source layer importance (NULL: each type evenly spaced)
    const FamilyFit *fit;  // the family's proportions
} PlanOpts;

// Search every cut and keep the best `nbest` by score, ascending. Returns how many were found.
static int plan_search(const Config *c, double budget, const PlanOpts *o, Candidate *best, int nbest) {
    int G = c->H / c->K, Gg = c->H / c->Kg, found = 0;
    int all_layers = !struct_prunable(c, M_LAYER), all_d = !struct_prunable(c, M_HIDDEN), all_kv = !struct_prunable(c, M_GROUP);
    // H' steps: keep the GQA ratio on both layer types (kv heads that stay: H' a multiple of both counts)
    int hstep = all_kv ? c->K / gcd_i(c->K, c->Kg) * c->Kg : G / gcd_i(G, Gg) * Gg;
    int (*takes)[MAX_LAYERS] = (int (*)[MAX_LAYERS])mallocCheck(sizeof(int) * MAX_LAYERS * (size_t)(c->L + 1));
    for (int Lt = all_layers ? c->L : 1; Lt <= c->L; Lt++) {
        if (!choose_layers(c, o->imp, Lt, o->N, takes[Lt])) continue;
        for (int H = hstep; H <= c->H; H += hstep)
            for (int d = all_d ? c->d : o->mult; d <= c->d; d += o->mult) {
                if (d % H) continue;
                Candidate cand;
                Shape *t = &cand.t;
                *t = shape_of(c);
                t->L = Lt, t->d = d, t->H = H;
                t->K = all_kv ? c->K : H / G, t->Kg = all_kv ? c->Kg : c->arch == 4 ? H / Gg : H / G;
                t->F = solve_F(c, *t, takes[Lt], budget, o->mode, o->mult, o->mult);
                cand.n = target_count(c, t, takes[Lt]);
                cand.err = (count_of(&cand.n, o->mode) - budget) / budget;
                if (fabs(cand.err) > o->tol) continue;
                // distance from the family's proportions at this size; F/d and attention width H/d near the source's
                const FamilyFit *f = o->fit;
                double P = cand.n.nonemb, Lf = exp(f->aL) * pow(P, f->bL), df = exp(f->ad) * pow(P, f->bd);
                double rF = log(((double)t->F / d) / ((double)c->F / c->d)), rA = log(((double)H / d) / ((double)c->H / c->d));
                cand.score = pow(log(Lt / Lf), 2) + pow(log(d / df), 2) + 0.5 * rF * rF + 0.5 * rA * rA +
                             pow(cand.err / o->tol, 2) * 0.01;
                memcpy(cand.take, takes[Lt], sizeof(int) * (size_t)c->L);
                int pos = found < nbest ? found : nbest;  // insertion into the sorted best list
                if (pos == nbest && cand.score >= best[nbest - 1].score) continue;
                if (pos == nbest) pos = nbest - 1;
                while (pos > 0 && best[pos - 1].score > cand.score) best[pos] = best[pos - 1], pos--;
                best[pos] = cand;
                if (found < nbest) found++;
            }
    }
    free(takes);
    return found;
}

// the config of a candidate, as a target file: its config.json, the source layers it keeps, the planned counts
static cJSON *plan_json(const Config *src, const char *src_name, const Candidate *cd, double budget, int mode) {
    Config t = target_config(src, &cd->t, cd->take);
    cJSON *j = config_to_json(&t, "bfloat16");
    cJSON *sl = cJSON_AddArrayToObject(j, "source_layers");
    for (int l = 0; l < src->L; l++)
        if (cd->take[l]) cJSON_AddItemToArray(sl, cJSON_CreateNumber(l));
    cJSON *p = cJSON_AddObjectToObject(j, "shear_plan");
    cJSON_AddStringToObject(p, "source", src_name);
    cJSON_AddNumberToObject(p, "budget", budget);
    cJSON_AddStringToObject(p, "budget_counts", count_names[mode]);
    cJSON_AddNumberToObject(p, "non_embedding", cd->n.nonemb);
    cJSON_AddNumberToObject(p, "embedding", cd->n.embed);
    if (src->P) cJSON_AddNumberToObject(p, "ple_table", cd->n.ple_table);
    cJSON_AddNumberToObject(p, "total", cd->n.total);
    return j;
}
