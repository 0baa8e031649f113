// data/mixture.h — the data mixture train.c and prune.c draw from. Each training sequence picks its
// domain from the weights w, then a uniformly random window of T+1 tokens of that domain's train
// shard; held-out loss is measured per domain on fixed windows of the validation shard; and
// Sheared-LLaMA's dynamic batch loading moves w toward the domains whose loss is furthest above
// its reference (Sheared LLaMA, Xia et al., ICLR 2024, Algorithm 1).
#pragma once
#include "data/shard.h"
#include "hip/comm.h"

typedef struct {
    DataSet ds;
    int k;           // number of domains
    double *w;       // [k] sampling weights, sum 1
    Rng rng;         // sampling state: with `drawn` it is the data cursor a checkpoint saves
    uint64_t drawn;  // sequences drawn so far
    int V;           // model vocabulary (every token read is checked against it)
    int heldout;     // evaluation reads the held-out windows (profile eval), not dynamic batch loading's
    int eval_test;   // held-out evaluation reads the test split (windows spread over it), not validation
} Mixture;

static Mixture mixture_open(const char *dir, int V, uint64_t seed) {
    Mixture mx;
    memset(&mx, 0, sizeof mx);
    mx.ds = data_open(dir, (uint32_t)V);
    mx.k = mx.ds.n;
    mx.V = V;
    mx.w = (double *)mallocCheck(sizeof(double) * (size_t)mx.k);
    for (int i = 0; i < mx.k; i++) mx.w[i] = 1.0 / mx.k;
    mx.rng = rng_seed(seed);
    return mx;
}

static void mixture_close(Mixture *mx) {
    data_close(&mx->ds);
    free(mx->w);
}

static int mixture_domain(const Mixture *mx, const char *name) {
    for (int i = 0; i < mx->k; i++)
        if (!strcmp(mx->ds.name[i], name)) return i;
    return -1;
}

// copy T+1 tokens starting at off into tok[0..T-1] (inputs) and tgt[0..T-1] (next tokens)
static void window_fill(const Mixture *mx, const Shard *s, uint64_t off, int T, int *tok, int *tgt) {
    for (int t = 0; t <= T; t++) {
        uint32_t id = shard_tok(s, off + (uint64_t)t);
        if (id >= (uint32_t)mx->V)
            fail("%s: token id %u at position %llu is outside the model's vocabulary [0, %d); the shard was made "
                 "with another tokenizer", s->path, id, (unsigned long long)(off + t), mx->V);
        if (t < T) tok[t] = (int)id;
        if (t > 0) tgt[t - 1] = (int)id;
    }
}

// One step's global batch of Bg training sequences (domain ~ w, start ~ uniform), drawn as one seeded sequence
// so that it is the same sequences whatever the number of ranks; this rank fills rows [lo, lo + B) of it into
// tok, tgt (B x T) and dom (may be NULL). Data parallel: Bg = B x ranks, lo = rank x B.
static void mixture_batch_part(Mixture *mx, int Bg, int lo, int B, int T, int *tok, int *tgt, int *dom) {
    if (lo < 0 || lo + B > Bg) fail("mixture_batch_part: rows [%d, %d) outside a global batch of %d", lo, lo + B, Bg);
    for (int b = 0; b < Bg; b++) {
        double u = rng_uniform(&mx->rng), acc = 0;
        int d = mx->k - 1;
        for (int i = 0; i < mx->k; i++)
            if (u < (acc += mx->w[i])) { d = i; break; }
        const Shard *s = &mx->ds.train[d];
        if (s->n < (uint64_t)T + 1) fail("%s: %llu tokens, fewer than one sequence of %d", s->path,
                                         (unsigned long long)s->n, T + 1);
        uint64_t off = rng_next(&mx->rng) % (s->n - (uint64_t)T);
        mx->drawn++;
        if (b < lo || b >= lo + B) continue;
        window_fill(mx, s, off, T, tok + (size_t)(b - lo) * T, tgt + (size_t)(b - lo) * T);
        if (dom) dom[b - lo] = d;
    }
}

// B training sequences: the whole global batch of one process
static void mixture_batch(Mixture *mx, int B, int T, int *tok, int *tgt, int *dom) {
    mixture_batch_part(mx, B, 0, B, T, tok, tgt, dom);
}

// A forward pass that returns the mean next-token loss over the targets >= 0 of rows x T windows. The
// data knows tokens, not models: ctx is whatever fwd needs (model.h's step_eval_fn takes a Step on
// either device, model_eval_fn a Model on the CPU).
typedef float (*EvalFn)(void *ctx, const int *tok, const int *tgt, int rows, int T);

// The windows evaluation reads from domain d: the shard's windows of T+1 tokens start at multiples of T (slots).
// Validation: dynamic batch loading (and pruning's evaluation) reads the even slots, held-out evaluation
// (mx->heldout) the odd ones, so the two never share a window. Test split (mx->heldout and mx->eval_test): every
// slot of test.bin. Each takes `want` of its slots spread evenly over the whole shard, so every part of the split
// (every document, for all but the shortest) is sampled, not only its first documents; all of them when fewer.
typedef struct {
    const Shard *s;
    uint64_t n, mine, first, every;  // windows taken of the `mine` slots first, first + every, ...
} EvalWindows;

static EvalWindows mixture_eval_windows(const Mixture *mx, int d, int T, uint64_t want) {
    int test = mx->heldout && mx->eval_test;
    EvalWindows w = {test ? &mx->ds.test[d] : &mx->ds.val[d], 0, 0, mx->heldout && !test, test ? 1 : 2};
    if (test && !w.s->path)
        fail("domain %s has no test split (test.bin); make the shards with data/mkshards --test-split "
             "(data/prepare_large.sh does)", mx->ds.name[d]);
    uint64_t nslot = w.s->n > (uint64_t)T ? (w.s->n - 1) / (uint64_t)T : 0;
    w.mine = nslot > w.first ? (nslot - w.first + w.every - 1) / w.every : 0;
    if (w.mine == 0) fail("%s: too short for %s evaluation window of %d tokens", w.s->path, w.first ? "a second" : "one", T + 1);
    w.n = want > 0 && want < w.mine ? want : w.mine;
    return w;
}

// the first token of window i (< w->n)
static uint64_t eval_window_start(const EvalWindows *w, uint64_t i, int T) {
    return (w->first + w->every * (i * w->mine / w->n)) * (uint64_t)T;
}

// Held-out loss of domain d over up to `batches` batches of B x world windows of T+1 tokens
// (mixture_eval_windows: the same windows every time), with any forward pass. Split over ranks like a
// training batch: this rank runs rows [rank B, (rank + 1) B) of each batch, so the windows seen depend on B x
// world only; it adds its token-weighted loss and token count to *sum, *count.
static void mixture_eval_part(const Mixture *mx, EvalFn fwd, void *ctx, int d, int B, int T, int batches, int rank,
                              int world, double *sum, double *count) {
    EvalWindows ew = mixture_eval_windows(mx, d, T, (uint64_t)batches * B * world);
    uint64_t nwin = ew.n;
    int *tok = (int *)mallocCheck(sizeof(int) * (size_t)B * T), *tgt = (int *)mallocCheck(sizeof(int) * (size_t)B * T);
    for (int i = 0; i < batches && (uint64_t)i * B * world < nwin; i++) {
        uint64_t w = ((uint64_t)i * world + rank) * B;
        int rows = 0;
        for (; rows < B && w < nwin; rows++, w++)
            window_fill(mx, ew.s, eval_window_start(&ew, w, T), T, tok + (size_t)rows * T, tgt + (size_t)rows * T);
        if (rows == 0) continue;
        long valid = 0;
        for (size_t n = 0; n < (size_t)rows * T; n++) valid += tgt[n] >= 0;
        float loss = fwd(ctx, tok, tgt, rows, T);
        *sum += (double)loss * valid;
        *count += (double)valid;
    }
    free(tok);
    free(tgt);
}

// mean next-token loss of domain d's evaluation windows (one process)
static double mixture_eval(const Mixture *mx, EvalFn fwd, void *ctx, int d, int B, int T, int batches) {
    double sum = 0, count = 0;
    mixture_eval_part(mx, fwd, ctx, d, B, T, batches, 0, 1, &sum, &count);
    return sum / count;
}

// every domain's held-out loss, the batches split over the ranks and the sums all-reduced: every rank ends with
// the same loss[k] (dynamic batch loading then moves the same weights everywhere)
static void mixture_eval_all(const Mixture *mx, EvalFn fwd, void *ctx, int B, int T, int batches, const Comm *c,
                             double *loss) {
    double *acc = (double *)callocCheck(sizeof(double) * 2 * (size_t)mx->k);  // [sum, count] per domain
    for (int d = 0; d < mx->k; d++) mixture_eval_part(mx, fwd, ctx, d, B, T, batches, c->rank, c->world, &acc[2 * d],
                                                      &acc[2 * d + 1]);
    comm_allreduce(c, acc, 2 * (size_t)mx->k, COMM_F64);
    for (int d = 0; d < mx->k; d++) loss[d] = acc[2 * d] / acc[2 * d + 1];
    free(acc);
}

// Dynamic batch loading (Sheared-LLaMA): delta_i = loss_i - ref_i (clip0: max(delta, 0), the paper's
// form); w <- normalize((1 - c) * softmax(ln w + delta) + c / k), c = 1e-4 in the published code.
static void dbl_update(double *w, const double *loss, const double *ref, int k, double c, int clip0) {
    double mx = -INFINITY, *a = (double *)mallocCheck(sizeof(double) * (size_t)k);
    for (int i = 0; i < k; i++) {
        double delta = loss[i] - ref[i];
        if (clip0 && delta < 0) delta = 0;
        a[i] = log(w[i]) + delta;
        if (a[i] > mx) mx = a[i];
    }
    double z = 0, s = 0;
    for (int i = 0; i < k; i++) z += (a[i] = exp(a[i] - mx));
    for (int i = 0; i < k; i++) s += (w[i] = (1 - c) * a[i] / z + c / k);
    for (int i = 0; i < k; i++) w[i] /= s;
    free(a);
}

// The mixture's part of a checkpoint (train's and prune's): the data cursor (sampling RNG state and sequences
// drawn), the domains in order and their weights. A resume checks the domains against --data (data_dir) and
// reads the rest strictly (util.h's state_*), so the next batch is the one the uninterrupted run draws.
static void mixture_state_to_json(const Mixture *mx, cJSON *j) {
    rng_to_json(j, "data_rng", &mx->rng);
    cJSON_AddNumberToObject(j, "data_drawn", (double)mx->drawn);
    cJSON *dom = cJSON_AddArrayToObject(j, "domains");
    for (int d = 0; d < mx->k; d++) cJSON_AddItemToArray(dom, cJSON_CreateString(mx->ds.name[d]));
    cJSON_AddItemToObject(j, "weights", cJSON_CreateDoubleArray(mx->w, mx->k));  // cJSON prints doubles round-trip
}

static void mixture_state_from_json(Mixture *mx, const cJSON *j, const char *src, const char *data_dir) {
    const cJSON *dom = cJSON_GetObjectItemCaseSensitive(j, "domains");
    if (!cJSON_IsArray(dom)) state_damaged(src, "domains", dom, "the list of domain names");
    int same = cJSON_GetArraySize(dom) == mx->k;
    for (int d = 0; same && d < mx->k; d++) {
        const cJSON *e = cJSON_GetArrayItem(dom, d);
        same = cJSON_IsString(e) && !strcmp(e->valuestring, mx->ds.name[d]);
    }
    if (!same) fail("%s: the run was trained on other domains than --data %s has; resume with the run's --data", src, data_dir);
    mx->rng = rng_from_json(j, "data_rng", src);
    mx->drawn = (uint64_t)state_int(j, "data_drawn", 0, 1LL << 53, src);
    state_nums(j, "weights", mx->k, 0, 1, mx->w, src);
    double sum = 0;
    for (int d = 0; d < mx->k; d++) sum += mx->w[d];
    if (fabs(sum - 1) > 1e-6) state_damaged(src, "weights", cJSON_GetObjectItemCaseSensitive(j, "weights"), "weights summing to 1");
}
