// hip/dev/check_step.c — a whole training step and a whole pruning step on the GPU (hip/gpu.h) against
// model.h on the CPU, on small models: the loss, the gradient of every parameter by name, the mask
// gradients (pruning), the gradient norm, and the weights after one AdamW update; then the same step through
// model.h's step interface (what train and prune --device gpu run), with its evaluation and checkpoint copies.
// Models: random Gemma 3 shapes that take the tensor-core attention (D = 64 and D = 256, windows and
// lengths that are not multiples of the 64-row tiles, GQA, a final softcap), and the transformers
// fixtures in test/fixtures (Gemma 3 GQA with linear RoPE scaling; Gemma 4 with proportional RoPE,
// per-layer head sizes, v norm, K=V, layer_scalar) which take the portable attention.
// Both sides use the same bf16-exact weights (rounded once on the host), so what differs is the GPU's
// bf16 activations and products.
//
// Tolerances (relative L2 error per tensor, ‖gpu − cpu‖ / ‖cpu‖):
//   loss 5e-3 relative: bf16 keeps 8 significant bits (2^-9 = 2e-3 per rounding); the loss is a mean
//     over rows, so independent rounding errors shrink, but the logits pass through ~5 roundings.
//   gradients 3e-2: each path from the loss to a weight crosses ~10 bf16 roundings (activations,
//     gradients, P and dS in attention); measured values are printed and kept in NOTES.md.
//   mask gradients 3e-2 (same paths); gradient norm 3e-2.
//   AdamW: the GPU update against model.h's adamw_update applied to the GPU's own gradients, 1e-6 (same
//     fp32 formula; Adam's first step is lr·sign(g), so comparing against the CPU's gradients would only
//     count the sign flips of near-zero gradients).
// The parameter block's storage options (GpuSpec.optimizer, grad_bf16, bf16_only; hip/plan.h), on a random
// Gemma 3 model and the Gemma 4 K=V fixture: the weights through upload and download unchanged (exact); the
// gradients against the CPU's (3e-2: one more bf16 rounding than above where they are bf16, ≤ 2e-3 each); the
// norm against the GPU's own gradients (1e-6); one update against model.h's adamw_update / adamw8_update on the
// GPU's own gradients: weights with an fp32 master 1e-6, bf16-only weights 4e-3 (one stochastic bf16 rounding of
// the same fp32 update, hip/dev/adamw.hip checks it element by element), 8-bit codes differing in at most 1 of
// 1000 elements (hip/dev/adamw.hip says why any may); and the device memory against hip/plan.h's plan (exact).
// ZeRO 1, 2 and 3 at one rank (NCCL) against the plain GPU step on the same gradients: bit for bit (check_zero); the
// backward of ZeRO 2 and 3 against the plain one within the plain step's own spread (check_zero_backward).
//   hip/build/check_step --zero: those checks alone
//   usage: hip/build/check_step [FIXTURE_DIR]   (default test/fixtures); exit status 1 on any failure
#include "model.h"
#include "hip/gpu.h"
#include "hip/plan.h"

static int failures = 0;

static double rel_l2(const float *a, const float *b, size_t n, size_t *worst) {
    double num = 0, den = 0, w = -1;
    for (size_t i = 0; i < n; i++) {
        double e = (double)a[i] - b[i];
        if (a[i] != a[i]) return INFINITY;
        num += e * e, den += (double)b[i] * b[i];
        if (fabs(e) > w) w = fabs(e), *worst = i;
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static double worst_rel = 0;  // the largest gradient error of this run, for the summary
static void cmp(const char *what, const float *gpu, const float *cpu, size_t n, double tol, int quiet) {
    size_t wi = 0;
    double r = rel_l2(gpu, cpu, n, &wi);
    int bad = !(r <= tol);
    if (bad) failures++;
    if (r > worst_rel && tol >= 1e-2) worst_rel = r;
    if (bad || !quiet)
        printf("    %s %-46s rel.L2 %.2e (tol %.0e)  worst [%zu] %.5g vs %.5g\n", bad ? "FAIL" : "ok  ", what, r, tol, wi,
               gpu[wi], cpu[wi]);
}

static void random_model(Model *m, const char *json, uint64_t seed) {
    memset(m, 0, sizeof *m);
    cJSON *j = cJSON_Parse(json);
    if (!j) fail("check_step: bad built-in config");
    config_from_json(&m->c, j, "check_step");
    cJSON_Delete(j);
    m->c.scale_dtype = ST_BF16;
    model_init_layout(m);
    model_init_random(m, seed, 0.02);
    Rng r = rng_seed(seed + 1);  // norms away from identity so (1+w) matters
    for (int i = 0; i < m->tab.n; i++) {
        const PEntry *e = &m->tab.e[i];
        if (is_rms_weight(e))
            for (size_t k = 0; k < e->rows * e->cols; k++) m->w[e->offset + k] += (float)(0.2 * rng_normal(&r));
    }
}

// the prune-time masks: a layer gate per layer, head products with a zero, FFN channels and hidden dims
// with ~15% exact zeros (the masked norms must average over kept dims only)
typedef struct {
    float *zl, *zh, *zf, *zd, *dzl, *dzh, *dzf, *dzd;
} MaskSet;

static MaskSet masks_make(const Config *c, uint64_t seed) {
    MaskSet s;
    Rng r = rng_seed(seed);
    size_t L = c->L, H = c->H, F = c->F, d = c->d;
    s.zl = (float *)mallocCheck(sizeof(float) * L), s.zh = (float *)mallocCheck(sizeof(float) * L * H);
    s.zf = (float *)mallocCheck(sizeof(float) * L * F), s.zd = (float *)mallocCheck(sizeof(float) * d);
    s.dzl = (float *)callocCheck(sizeof(float) * L), s.dzh = (float *)callocCheck(sizeof(float) * L * H);
    s.dzf = (float *)callocCheck(sizeof(float) * L * F), s.dzd = (float *)callocCheck(sizeof(float) * d);
    for (size_t i = 0; i < L; i++) s.zl[i] = (float)(0.3 + 0.7 * rng_uniform(&r));
    for (size_t i = 0; i < L * H; i++) s.zh[i] = i % 5 == 2 ? 0.0f : (float)rng_uniform(&r);
    for (size_t i = 0; i < L * F; i++) s.zf[i] = rng_uniform(&r) < 0.15 ? 0.0f : (float)rng_uniform(&r);
    for (size_t i = 0; i < d; i++) s.zd[i] = rng_uniform(&r) < 0.15 ? 0.0f : (float)(0.5 + 0.5 * rng_uniform(&r));
    return s;
}
static void masks_drop(MaskSet *s) {
    float *p[] = {s->zl, s->zh, s->zf, s->zd, s->dzl, s->dzh, s->dzf, s->dzd};
    for (int i = 0; i < 8; i++) free(p[i]);
}

// rec: layers that recompute gate|up in the backward (GpuSpec.recompute)
static void check_case(const char *name, Model *m, const int *tok, const int *tgt, int B, int T, int prune, int use_mma,
                       int rec) {
    const Config *c = &m->c;
    printf("  %s: %s step, %s attention, B=%d T=%d, gate|up recomputed in %d layers\n", name, prune ? "pruning" : "training",
           use_mma == 2 ? "banded sliding backward + tensor-core" : use_mma ? "tensor-core (where D allows)" : "portable",
           B, T, rec);
    for (size_t i = 0; i < m->tab.total; i++) m->w[i] = bf16_to_f32(f32_to_bf16(m->w[i]));
    MaskSet ms;
    memset(&ms, 0, sizeof ms);
    if (prune) {
        ms = masks_make(c, 77);
        m->zl = ms.zl, m->zh = ms.zh, m->zf = ms.zf, m->zd = ms.zd;
        m->dzl = ms.dzl, m->dzh = ms.dzh, m->dzf = ms.dzf, m->dzd = ms.dzd;
    }
    model_masks_changed(m);
    model_alloc_grads(m);
    model_zero_grad(m);
    double t0 = now_sec();
    float loss_c = model_forward(m, tok, tgt, B, T, 1, NULL);
    model_backward(m);
    double t_cpu = now_sec() - t0;
    // GPU
    GpuSpec *s = gpu_spec_from_model(m);
    s->recompute = rec;
    GpuModel *g = gpu_create(s, B, T);
    gpu_set_attention(g, use_mma);
    gpu_upload(g, m->w);
    if (prune) gpu_set_masks(g, ms.zl, ms.zh, ms.zf, ms.zd);
    gpu_zero_grad(g);
    float loss_g = gpu_forward(g, tok, tgt, 1);
    gpu_backward(g);
    float *gw = (float *)mallocCheck(sizeof(float) * m->tab.total);
    gpu_download_grads(g, gw);
    printf("    loss cpu %.6f gpu %.6f (cpu step %.2f s)\n", loss_c, loss_g, t_cpu);
    cmp("loss", &loss_g, &loss_c, 1, 5e-3, 1);
    double worst_t = 0;
    const char *worst_n = "";
    for (int i = 0; i < m->tab.n; i++) {
        const PEntry *e = &m->tab.e[i];
        if (e->frozen) continue;  // Gemma 4's layer_scalar: not trained, no gradient on the GPU
        size_t wi, n = e->rows * e->cols;
        double r = rel_l2(gw + e->offset, m->gw + e->offset, n, &wi);
        if (r > worst_t) worst_t = r, worst_n = e->name;
        cmp(e->name, gw + e->offset, m->gw + e->offset, n, 3e-2, 1);
    }
    printf("    %d gradient tensors compared; worst %s rel.L2 %.2e\n", m->tab.n, worst_n, worst_t);
    if (prune) {
        size_t L = c->L, H = c->H, F = c->F, d = c->d;
        float *a = (float *)mallocCheck(sizeof(float) * L), *h = (float *)mallocCheck(sizeof(float) * L * H);
        float *f = (float *)mallocCheck(sizeof(float) * L * F), *z = (float *)mallocCheck(sizeof(float) * d);
        gpu_get_mask_grads(g, a, h, f, z);
        cmp("layer-mask gradient dzl", a, ms.dzl, L, 3e-2, 0);
        cmp("head-mask gradient dzh", h, ms.dzh, L * H, 3e-2, 0);
        cmp("FFN-mask gradient dzf", f, ms.dzf, L * F, 3e-2, 0);
        cmp("hidden-mask gradient dzd", z, ms.dzd, d, 3e-2, 0);
        free(a), free(h), free(f), free(z);
    }
    // Gradients accumulate over backwards (train's --grad-accum): a second forward + backward of the same batch
    // without zeroing doubles them (the first backward after gpu_zero_grad overwrites the products' gradients,
    // later ones add); gpu_zero_grad then starts over. Tolerance 1e-2: GPU runs are not bit-reproducible
    // (attention's dQ atomics reorder sums and bf16 roundings downstream can flip), while a backward that
    // overwrote instead of adding, or added to stale values, is off by a third or more.
    float *gw2 = (float *)mallocCheck(sizeof(float) * m->tab.total);
    gpu_forward(g, tok, tgt, 1);
    gpu_backward(g);
    gpu_download_grads(g, gw2);
    for (size_t k = 0; k < m->tab.total; k++) gw2[k] *= 0.5f;
    cmp("gradients of two backwards, halved", gw2, gw, m->tab.total, 1e-2, 0);
    gpu_zero_grad(g);
    gpu_forward(g, tok, tgt, 1);
    gpu_backward(g);
    gpu_download_grads(g, gw2);
    cmp("gradients after gpu_zero_grad again", gw2, gw, m->tab.total, 1e-2, 0);
    memcpy(gw, gw2, sizeof(float) * m->tab.total);  // the norm and AdamW checks below: this backward's
    free(gw2);
    // gradient norm: against the CPU's gradients (3e-2) and, exactly, against the GPU's own gradients
    for (int i = 0; i < m->tab.n; i++)  // train.c zeroes frozen gradients before the norm
        if (m->tab.e[i].frozen) memset(m->gw + m->tab.e[i].offset, 0, sizeof(float) * m->tab.e[i].rows * m->tab.e[i].cols);
    double n2g = gpu_grad_sumsq(g), n2c = grad_norm2(m->gw, m->tab.total), n2o = grad_norm2(gw, m->tab.total);
    float ng = (float)sqrt(n2g), nc = (float)sqrt(n2c), no = (float)sqrt(n2o);
    cmp("gradient norm vs the CPU's gradients", &ng, &nc, 1, 3e-2, 0);
    cmp("gradient norm vs its own gradients", &ng, &no, 1, 1e-6, 0);
    // one AdamW update (decay 0.1 on matrices, clip 1.0) against model.h's adamw_update on the GPU's gradients
    float coef = clip_coef(no, 1.0);
    gpu_adamw(g, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1, clip_coef(ng, 1.0));
    float *wref = (float *)mallocCheck(sizeof(float) * m->tab.total);
    memcpy(wref, m->w, sizeof(float) * m->tab.total);
    for (int i = 0; i < m->tab.n; i++) {
        const PEntry *e = &m->tab.e[i];
        if (e->frozen) continue;
        size_t n = e->rows * e->cols;
        for (size_t k = 0; k < n; k++) gw[e->offset + k] *= coef;
        int decay = param_decays(e);  // (frozen tensors were skipped above)
        float *mo = (float *)callocCheck(sizeof(float) * n), *va = (float *)callocCheck(sizeof(float) * n);
        adamw_update(wref + e->offset, gw + e->offset, mo, va, n, 1e-3f, 0.9f, 0.95f, 1e-8f, decay ? 0.1f : 0.0f, 1);
        free(mo), free(va);
    }
    gpu_download(g, gw);
    cmp("weights after one AdamW step", gw, wref, m->tab.total, 1e-6, 0);
    free(gw), free(wref);
    gpu_free(g);
    gpu_spec_free(s);
    if (prune) {
        m->zl = m->zh = m->zf = m->zd = m->dzl = m->dzh = m->dzf = m->dzd = NULL;
        model_masks_changed(m);
        masks_drop(&ms);
    }
}

// model.h section 7's step on the GPU, as train and prune --device gpu drive it, beside the CPU's step on the same
// weights and batch: the loss, the gradient norm, an evaluation batch of fewer than B rows (the GPU pads it), and
// after one AdamW update its first moment ((1 − β1)·the clipped gradient: the gradients' tolerance, 3e-2). Then the
// checkpoint path: weights and moments fetched tensor by tensor (step_get) equal one whole fetch bit for bit, and
// sent back tensor by tensor (step_put) they come back unchanged.
static void check_interface(Model *m, const int *tok, const int *tgt, int B, int T) {
    printf("  the step interface (model.h section 7): CPU and GPU steps, B=%d T=%d\n", B, T);
    size_t n = m->tab.total;
    float *w0 = (float *)mallocCheck(sizeof(float) * n);
    memcpy(w0, m->w, sizeof(float) * n);
    Optimizer oc, og;
    optimizer_init(&oc, &m->tab, OPT_ADAMW, 0.9f, 0.95f, 1e-8f, 0.0f);
    optimizer_init(&og, &m->tab, OPT_ADAMW, 0.9f, 0.95f, 1e-8f, 0.0f);
    StepOpts so = {DEVICE_GPU, B, T, 0, 0, 0, 0, NULL, 0};
    Step *G = step_open(m, &og, &so);
    so.device = DEVICE_CPU;
    Step *C = step_open(m, &oc, &so);
    float ec = step_eval_fn(C, tok, tgt, B - 1, T), eg = step_eval_fn(G, tok, tgt, B - 1, T);
    cmp("evaluation of B - 1 rows (padded on the GPU)", &eg, &ec, 1, 5e-3, 0);
    float lc = 0, lg = 0, nc, ng;
    Step *S[2] = {C, G};
    float *loss[2] = {&lc, &lg}, *norm[2] = {&nc, &ng};
    for (int k = 0; k < 2; k++) {
        step_zero_grad(S[k]);
        float l = step_forward(S[k], tok, tgt, 1);
        step_backward(S[k]);
        *loss[k] = (float)step_reduce(S[k], l);
        *norm[k] = (float)sqrt(step_grad_sumsq(S[k]));
    }
    cmp("loss through the step", &lg, &lc, 1, 5e-3, 0);
    cmp("gradient norm through the step", &ng, &nc, 1, 3e-2, 0);
    step_update(C, 1e-3f, 0.1f, clip_coef(nc, 1.0), 1);
    step_update(G, 1e-3f, 0.1f, clip_coef(ng, 1.0), 1);
    step_get(G, STEP_WEIGHTS | STEP_OPTIMIZER, -1);
    cmp("AdamW first moment after one update", og.m, oc.m, n, 3e-2, 0);
    float *all = (float *)mallocCheck(sizeof(float) * 3 * n);
    memcpy(all, m->w, sizeof(float) * n), memcpy(all + n, og.m, sizeof(float) * n), memcpy(all + 2 * n, og.v, sizeof(float) * n);
    memset(m->w, 0, sizeof(float) * n), memset(og.m, 0, sizeof(float) * n), memset(og.v, 0, sizeof(float) * n);
    for (int i = 0; i < m->tab.n; i++) step_get(G, STEP_WEIGHTS | STEP_OPTIMIZER, i);
    int same = !memcmp(m->w, all, sizeof(float) * n) && !memcmp(og.m, all + n, sizeof(float) * n) &&
               !memcmp(og.v, all + 2 * n, sizeof(float) * n);
    for (int i = 0; i < m->tab.n; i++) step_put(G, STEP_WEIGHTS | STEP_OPTIMIZER, i);
    memset(m->w, 0, sizeof(float) * n), memset(og.m, 0, sizeof(float) * n), memset(og.v, 0, sizeof(float) * n);
    step_get(G, STEP_WEIGHTS | STEP_OPTIMIZER, -1);
    int back = !memcmp(m->w, all, sizeof(float) * n) && !memcmp(og.m, all + n, sizeof(float) * n) &&
               !memcmp(og.v, all + 2 * n, sizeof(float) * n);
    printf("    %s weights and moments tensor by tensor == whole (step_get), and back unchanged (step_put)\n",
           same && back ? "ok  " : "FAIL");
    if (!(same && back)) failures++;
    step_close(C), step_close(G);
    memcpy(m->w, w0, sizeof(float) * n);
    optimizer_free(&oc), optimizer_free(&og);
    free(w0), free(all);
}

// ZeRO 1-3 at one rank (train and prune --device gpu --zero 1, 2 or 3): the same model in two steps, one plain, one
// with the master and moments sharded (NCCL world 1: reduce-scatter of each unit, the shard update k_adamw_shard, the
// norm weights summed over the ranks, the bf16 copy all-gathered; stage 2 the gradient of the shard too; stage 3 the
// bf16 weights too, each layer's gathered before its forward). The backward
// is not bit-reproducible (atomics), so the sharded step gets the plain step's gradients (downloaded, uploaded: at
// stage 2 into the shard's gradient) and everything after the backward must agree bit for bit: the gradient norm, and
// over three updates (weight decay, clipping) the weights and both moments as a checkpoint fetches them (step_get),
// and the loss of a forward after them (the bf16 copies). check_zero_backward covers the backward of stages 2 and 3.
// the two optimizers' states (model.h's layout) the same, bit for bit: AdamW's m or 8-bit AdamW's codes of m and their
// scales (which 0), v or its codes and scales (1); at one rank a shard's layout is the table's
static int same_state(const Optimizer *a, const Optimizer *b, int which) {
    size_t n = a->total;
    if (a->kind == OPT_ADAMW8)
        return which ? !memcmp(a->qv, b->qv, n) && !memcmp(a->sv, b->sv, sizeof(float) * a->nblocks)
                     : !memcmp(a->qm, b->qm, n) && !memcmp(a->sm, b->sm, sizeof(float) * a->nblocks);
    return !memcmp(which ? a->v : a->m, which ? b->v : b->m, sizeof(float) * n);
}

static void check_zero(const char *json, uint64_t seed, const int *tok, const int *tgt, int B, int T, int stage,
                       int opt) {
    printf("  ZeRO %d at one rank against the plain GPU step, %s, B=%d T=%d\n", stage, opt_names[opt], B, T);
    Model ma, mz;
    random_model(&ma, json, seed), random_model(&mz, json, seed);
    size_t n = ma.tab.total;
    Optimizer oa, oz;
    optimizer_init(&oa, &ma.tab, opt, 0.9f, 0.95f, 1e-8f, 0.0f);
    optimizer_init(&oz, &mz.tab, opt, 0.9f, 0.95f, 1e-8f, 0.0f);
    Comm c = comm_init();
    StepOpts so = {DEVICE_GPU, B, T, 0, 0, 0, 0, NULL, 0};
    Step *A = step_open(&ma, &oa, &so);
    so.comm = &c, so.zero = stage;
    Step *Z = step_open(&mz, &oz, &so);
    float *g = (float *)mallocCheck(sizeof(float) * n);
    int same = 1;
    for (int t = 1; t <= 3; t++) {
        step_zero_grad(A);
        float l = step_forward(A, tok, tgt, 1);
        step_backward(A);
        double la = step_reduce(A, l);
        gpu_download_grads(gpu_of(A), g);
        double na = step_grad_sumsq(A);
        step_zero_grad(Z);
        gpu_copy(gpu_of(Z), GPU_GRADS, 0, n, g, 1);
        double lz = step_reduce(Z, la), nz = step_grad_sumsq(Z);
        step_update(A, 1e-3f, 0.1f, clip_coef(sqrt(na), 1.0), t);
        step_update(Z, 1e-3f, 0.1f, clip_coef(sqrt(nz), 1.0), t);
        step_get(A, STEP_WEIGHTS | STEP_OPTIMIZER, -1), step_get(Z, STEP_WEIGHTS | STEP_OPTIMIZER, -1);
        int w = !memcmp(ma.w, mz.w, sizeof(float) * n), m1 = same_state(&oa, &oz, 0), m2 = same_state(&oa, &oz, 1);
        float ea = step_eval_fn(A, tok, tgt, B, T), ez = step_eval_fn(Z, tok, tgt, B, T);
        int ok = la == lz && na == nz && w && m1 && m2 && ea == ez;
        same &= ok;
        printf("    %s update %d: loss %s, norm %.9g %s %.9g, weights %s, m %s, v %s, forward after it %.7f %s %.7f\n",
               ok ? "ok  " : "FAIL", t, la == lz ? "same" : "differs", sqrt(na), na == nz ? "==" : "!=", sqrt(nz),
               w ? "same" : "differ", m1 ? "same" : "differs", m2 ? "same" : "differs", ea, ea == ez ? "==" : "!=", ez);
    }
    if (!same) failures++;
    step_close(A), step_close(Z);
    free(g);
    optimizer_free(&oa), optimizer_free(&oz);
    model_free(&ma), model_free(&mz);
}

// ZeRO 1-3 at two ranks in one process on one GPU (NCCL takes one rank per device, so this is how one GPU sees a world
// of 2): each rank's model made as gpu_step_open makes it (hip/comm.h zero_plan for rank r of 2), the collectives
// done here: after an upload or an update the norm weights' fp32 summed and each unit's bf16 all-gathered (ZeRO 3: the
// embedding's and final norm's units gathered again, a layer's from both shards as it is used). Each rank's host
// holds NaN outside its pieces when the model goes up (model.h model_load_shard's host: nothing else may be read),
// and a forward must then give the plain GPU step's loss bit for bit. Fed the plain step's averaged gradient (each
// rank its part), three updates (weight decay, clipping by the plain norm) give each rank's pieces of the weights and
// both moments of the plain step bit for bit, the two ranks' squared norms sum to the plain one (other order: 1e-12),
// and a forward after each update on either rank the plain loss, bit for bit.
typedef struct {
    GpuModel *g[2];
    GpuSpec *s[2];
    ZeroPlan z[2];
} TwoRanks;

static void two_gather(void *ctx, int i, const void *shard, void *unit_bf16, void *stream) {
    TwoRanks *t = (TwoRanks *)ctx;
    size_t q = t->z[0].u[i].q;
    for (int r = 0; r < 2; r++)
        gpu_memcpy((uint16_t *)unit_bf16 + (size_t)r * q, (uint16_t *)gpu_shard_bf16(t->g[r]) + t->z[r].u[i].at,
                   sizeof(uint16_t) * q, stream);
}
static void two_reduce(void *ctx, int i, float *grad, void *stream) { fail("check_step: no backward runs at two ranks"); }

static void two_share(TwoRanks *t, int stage) {
    float *w32[2];
    void *wb[2];
    size_t n32;
    for (int r = 0; r < 2; r++) gpu_shard_buffers(t->g[r], &w32[r], &n32, &wb[r]);
    float *a = (float *)mallocCheck(sizeof(float) * (n32 + 1)), *b = (float *)mallocCheck(sizeof(float) * (n32 + 1));
    gpu_memcpy(a, w32[0], sizeof(float) * n32, NULL), gpu_memcpy(b, w32[1], sizeof(float) * n32, NULL);
    for (size_t k = 0; k < n32; k++) a[k] += b[k];
    for (int r = 0; r < 2; r++) gpu_memcpy(w32[r], a, sizeof(float) * n32, NULL);
    free(a), free(b);
    for (int i = 0; i < t->z[0].nunit && stage < 3; i++) {
        const ZeroUnit *u = &t->z[0].u[i];
        for (int r = 0; r < 2; r++) {
            size_t at = u->off + (size_t)r * u->q;
            gpu_memcpy((uint16_t *)wb[1 - r] + at, (uint16_t *)wb[r] + at, sizeof(uint16_t) * u->q, NULL);
        }
    }
    for (int r = 0; r < 2 && stage == 3; r++) gpu_shard_regather(t->g[r]);
}

static void check_zero_two(const char *json, uint64_t seed, const int *tok, const int *tgt, int B, int T, int stage,
                           int opt) {
    printf("  ZeRO %d at two ranks in one process against the plain GPU step, %s, B=%d T=%d\n", stage, opt_names[opt],
           B, T);
    Model ma;
    random_model(&ma, json, seed);
    size_t n = ma.tab.total;
    Optimizer oa;
    optimizer_init(&oa, &ma.tab, opt, 0.9f, 0.95f, 1e-8f, 0.0f);
    StepOpts so = {DEVICE_GPU, B, T, 0, 0, 0, 0, NULL, 0};
    Step *A = step_open(&ma, &oa, &so);
    TwoRanks t;
    float *host = (float *)mallocCheck(sizeof(float) * n), *hm = (float *)mallocCheck(sizeof(float) * n);
    float *hv = (float *)mallocCheck(sizeof(float) * n), *g = (float *)mallocCheck(sizeof(float) * n);
    for (int r = 0; r < 2; r++) {
        t.s[r] = gpu_spec_from_model(&ma);
        t.s[r]->optimizer = opt == OPT_ADAMW8 ? GPU_ADAMW8 : GPU_ADAMW, t.s[r]->seed = 0x5eed;
        t.z[r] = zero_plan(&ma.tab, ma.c.L, stage, r, 2);
        gpu_spec_zero(t.s[r], &t.z[r]);
        t.g[r] = gpu_create(t.s[r], B, T);
        if (t.s[r]->shard_grads) gpu_set_collectives(t.g[r], two_reduce, two_gather, &t);
        gpu_set_pieces(t.g[r], &t.z[r]);
    }
    for (int r = 0; r < 2; r++) {  // up from a host that holds this rank's pieces only
        for (size_t k = 0; k < n; k++) host[k] = NAN;
        for (int k = 0; k < t.z[r].npiece; k++) {
            const ZeroPiece *p = &t.z[r].p[k];
            memcpy(host + p->w, ma.w + p->w, sizeof(float) * p->n);
        }
        gpu_copy(t.g[r], GPU_WEIGHTS, 0, n, host, 1);
    }
    two_share(&t, stage);
    float e0 = gpu_forward(gpu_of(A), tok, tgt, 0), e[2] = {gpu_forward(t.g[0], tok, tgt, 0), gpu_forward(t.g[1], tok, tgt, 0)};
    int ok = e[0] == e0 && e[1] == e0, same = ok;
    printf("    %s up from each rank's pieces (NaN elsewhere): forward %.7f, ranks %.7f and %.7f\n", ok ? "ok  " : "FAIL",
           e0, e[0], e[1]);
    for (int step = 1; step <= 3; step++) {
        step_zero_grad(A);
        float l = step_forward(A, tok, tgt, 1);
        step_backward(A);
        step_reduce(A, l);
        gpu_download_grads(gpu_of(A), g);
        double na = step_grad_sumsq(A), nz = 0;
        for (int r = 0; r < 2; r++) {
            gpu_zero_grad(t.g[r]);
            gpu_copy(t.g[r], GPU_GRADS, 0, n, g, 1);
            nz += gpu_grad_sumsq(t.g[r]);
        }
        float coef = clip_coef(sqrt(na), 1.0);
        step_update(A, 1e-3f, 0.1f, coef, step);
        for (int r = 0; r < 2; r++) gpu_adamw(t.g[r], 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, step, coef);
        two_share(&t, stage);
        step_get(A, STEP_WEIGHTS | STEP_OPTIMIZER, -1);
        int w = 1, m1 = 1, m2 = 1;
        for (int r = 0; r < 2; r++) {
            gpu_copy(t.g[r], GPU_WEIGHTS, 0, n, host, 0);
            int q8 = opt == OPT_ADAMW8;  // codes in hm, hv as bytes, the scales after them (zero_block_plan's blocks)
            ZeroPlan bz = zero_block_plan(&t.z[r]);
            float *sm = (float *)(hm + (n + 3) / 4), *sv = (float *)(hv + (n + 3) / 4);
            if (q8) gpu_copy_adamw8(t.g[r], (int8_t *)hm, (uint8_t *)hv, sm, sv, 0);
            else gpu_copy(t.g[r], GPU_ADAM_M, 0, n, hm, 0), gpu_copy(t.g[r], GPU_ADAM_V, 0, n, hv, 0);
            for (int k = 0; k < t.z[r].npiece; k++) {
                const ZeroPiece *p = &t.z[r].p[k];
                w &= !memcmp(host + p->w, ma.w + p->w, sizeof(float) * p->n);
                m1 &= q8 ? !memcmp((int8_t *)hm + p->s, oa.qm + p->w, p->n)
                         : !memcmp(hm + p->s, oa.m + p->w, sizeof(float) * p->n);
                m2 &= q8 ? !memcmp((uint8_t *)hv + p->s, oa.qv + p->w, p->n)
                         : !memcmp(hv + p->s, oa.v + p->w, sizeof(float) * p->n);
            }
            for (int k = 0; k < bz.npiece && q8; k++) {
                const ZeroPiece *p = &bz.p[k];
                m1 &= !memcmp(sm + p->s, oa.sm + p->w, sizeof(float) * p->n);
                m2 &= !memcmp(sv + p->s, oa.sv + p->w, sizeof(float) * p->n);
            }
            zero_plan_free(&bz);
        }
        e0 = gpu_forward(gpu_of(A), tok, tgt, 0), e[0] = gpu_forward(t.g[0], tok, tgt, 0), e[1] = gpu_forward(t.g[1], tok, tgt, 0);
        int nok = fabs(nz - na) <= 1e-12 * na;
        ok = nok && w && m1 && m2 && e[0] == e0 && e[1] == e0;
        same &= ok;
        printf("    %s update %d: norm %.9g, ranks' sum %.9g, pieces of the weights %s, m %s, v %s, forward after it %.7f, "
               "ranks %.7f and %.7f\n", ok ? "ok  " : "FAIL", step, sqrt(na), sqrt(nz), w ? "same" : "differ",
               m1 ? "same" : "differs", m2 ? "same" : "differs", e0, e[0], e[1]);
    }
    if (!same) failures++;
    for (int r = 0; r < 2; r++) gpu_free(t.g[r]), gpu_spec_free(t.s[r]), zero_plan_free(&t.z[r]);
    step_close(A);
    free(host), free(hm), free(hv), free(g);
    optimizer_free(&oa);
    model_free(&ma);
}

// worst relative L2 distance over the table's tensors (what hip/dev/compare_runs.py measures between runs)
static double worst_tensor(const ParamTable *tab, const float *a, const float *b) {
    double w = 0;
    for (int i = 0; i < tab->n; i++) {
        const PEntry *e = &tab->e[i];
        double dd = 0, bb = 0;
        for (size_t k = e->offset; k < e->offset + e->rows * e->cols; k++)
            dd += ((double)a[k] - b[k]) * ((double)a[k] - b[k]), bb += (double)b[k] * b[k];
        double r = sqrt(dd) / (bb > 0 ? sqrt(bb) : 1e-30);
        w = r > w ? r : w;
    }
    return w;
}

// The backward of ZeRO 2 and 3 at one rank: every unit's gradient leaves its bucket as the backward leaves the unit
// (NCCL on the second stream, world 1) and is added into the shard's gradient, over two micro-batches (the second adds
// to the first); at stage 3 every layer's weights are gathered into their bucket before its forward and backward. Against the plain step on the same two micro-batches, and a second plain step for the spread: the plain
// backward is not bit-reproducible (fp32 atomics in the embedding's and the attention's backward), so ZeRO 2's
// gradient may differ from the plain one by at most 3x what a second plain run does, or by 1e-6 (relative L2 of the
// worst tensor: where the plain runs happen to agree bit for bit, one fp32 rounding more or less of the micro-batches'
// sum, which the product's beta = 1 rounds once inside the product and ZeRO 2 once in its own addition). The losses
// are the forward's, the same whatever stores the gradients.
static void check_zero_backward(const char *json, uint64_t seed, const int *tok, const int *tgt, const int *tok2,
                                const int *tgt2, int B, int T, int stage, int ckpt) {
    printf("  ZeRO %d's backward at one rank (2 micro-batches%s) against the plain GPU step, B=%d T=%d\n", stage,
           ckpt ? ", every layer checkpointed, the first recomputing gate|up" : "", B, T);
    Model m[3];
    Optimizer o[3];
    Step *S[3];
    Comm c = comm_init();
    float *g[3];
    double loss[3];
    for (int k = 0; k < 3; k++) {  // 0, 1: plain; 2: ZeRO `stage`
        random_model(&m[k], json, seed);
        optimizer_init(&o[k], &m[k].tab, OPT_ADAMW, 0.9f, 0.95f, 1e-8f, 0.0f);
        StepOpts so = {DEVICE_GPU, B, T, ckpt ? 1 : 0, 0, 0, ckpt ? m[k].c.L : 0, k == 2 ? &c : NULL, k == 2 ? stage : 0};
        S[k] = step_open(&m[k], &o[k], &so);
        g[k] = (float *)mallocCheck(sizeof(float) * m[k].tab.total);
    }
    for (int k = 0; k < 3; k++) {
        step_zero_grad(S[k]);
        double l = step_forward(S[k], tok, tgt, 1);
        step_backward(S[k]);
        l += step_forward(S[k], tok2, tgt2, 1);
        step_backward(S[k]);
        loss[k] = step_reduce(S[k], l);
        gpu_download_grads(gpu_of(S[k]), g[k]);
    }
    const ParamTable *tab = &m[0].tab;
    double spread = worst_tensor(tab, g[1], g[0]), err = worst_tensor(tab, g[2], g[0]);
    double bound = 3 * spread > 1e-6 ? 3 * spread : 1e-6;
    int ok = err <= bound && loss[2] == loss[0];
    printf("    %s gradients: worst tensor %.3e from the plain step (a second plain step: %.3e, bound %.3e), loss %.7f %s %.7f\n",
           ok ? "ok  " : "FAIL", err, spread, bound, loss[2], loss[2] == loss[0] ? "==" : "!=", loss[0]);
    if (!ok) failures++;
    for (int k = 0; k < 3; k++) step_close(S[k]), free(g[k]), optimizer_free(&o[k]), model_free(&m[k]);
}

// 8-bit AdamW through the step interface (train --device gpu --optimizer adamw8), with the storage options: one
// update on the GPU, its state fetched to the host (step_get: what a checkpoint writes), then the second update
// once on the GPU and once by model.h's optimizer_update from that host state on the GPU's own second gradients.
// One state format on both devices means the two agree as check_storage's single update does: weights 1e-6 (4e-3
// for bf16-only weights: a stochastic bf16 rounding), codes at most 1 in 1000 one level off, scales 1e-6. Then
// the state sent back (step_put) comes back unchanged (step_get).
static int codes_differ(const Optimizer *a, const Optimizer *b, size_t n) {
    size_t dc = 0, big = 0;
    for (size_t q = 0; q < n; q++) {
        dc += a->qm[q] != b->qm[q] || a->qv[q] != b->qv[q];
        big += abs(a->qm[q] - b->qm[q]) > 1 || abs((int)a->qv[q] - (int)b->qv[q]) > 1;
    }
    int bad = big > 0 || dc * 1000 > n;
    printf("    %s 8-bit codes: %zu of %zu elements differ (tol 1 in 1000), %zu by more than a level\n", bad ? "FAIL" : "ok  ",
           dc, n, big);
    return bad;
}
static void check_interface8(Model *m, const int *tok, const int *tgt, int B, int T, int grad_bf16, int bf16_only) {
    printf("  the step interface, 8-bit AdamW, %s gradients, %s weights: a second update on each device from the "
           "state on the host\n", grad_bf16 ? "bf16" : "fp32", bf16_only ? "bf16-only" : "fp32 master");
    size_t n = m->tab.total, nb;
    const float lr = 1e-3f, wd = 0.1f;
    float *w0 = (float *)mallocCheck(sizeof(float) * n), *wc = (float *)mallocCheck(sizeof(float) * n);
    float *wg = (float *)mallocCheck(sizeof(float) * n), *gw = (float *)mallocCheck(sizeof(float) * n);
    memcpy(w0, m->w, sizeof(float) * n);
    model_alloc_grads(m);
    Optimizer og, oc;
    optimizer_init(&og, &m->tab, OPT_ADAMW8, 0.9f, 0.95f, 1e-8f, 0.0f);
    optimizer_init(&oc, &m->tab, OPT_ADAMW8, 0.9f, 0.95f, 1e-8f, 0.0f);
    nb = og.nblocks;
    StepOpts so = {DEVICE_GPU, B, T, 0, grad_bf16, bf16_only, 0, NULL, 0};
    Step *G = step_open(m, &og, &so);
    float coef = 1.0f;
    for (int t = 1; t <= 2; t++) {
        step_zero_grad(G);
        step_forward(G, tok, tgt, 1);
        step_backward(G);
        coef = clip_coef(sqrt(step_grad_sumsq(G)), 1.0);
        if (t == 2) gpu_download_grads(gpu_of(G), gw);  // what the GPU's second update reads
        step_update(G, lr, wd, coef, t);
        if (t > 1) break;
        step_get(G, STEP_WEIGHTS | STEP_OPTIMIZER, -1);  // the host state after the first update
        memcpy(wc, m->w, sizeof(float) * n);
        memcpy(oc.qm, og.qm, n), memcpy(oc.qv, og.qv, n);
        memcpy(oc.sm, og.sm, sizeof(float) * nb), memcpy(oc.sv, og.sv, sizeof(float) * nb);
    }
    step_get(G, STEP_WEIGHTS | STEP_OPTIMIZER, -1);
    memcpy(wg, m->w, sizeof(float) * n);
    memcpy(m->w, wc, sizeof(float) * n);
    for (size_t i = 0; i < n; i++) m->gw[i] = gw[i] * coef;
    optimizer_update(&oc, m, lr, wd, 2);
    cmp(bf16_only ? "weights after update 2 (bf16-only: one rounding)" : "weights after update 2, GPU vs CPU", wg, m->w, n,
        bf16_only ? 4e-3 : 1e-6, 0);
    failures += codes_differ(&og, &oc, n);
    cmp("8-bit blocks' max |m|", og.sm, oc.sm, nb, 1e-6, 0);
    cmp("8-bit blocks' max v", og.sv, oc.sv, nb, 1e-6, 0);
    // the CPU's state up (og is the step's host state) and back unchanged
    memcpy(og.qm, oc.qm, n), memcpy(og.qv, oc.qv, n);
    memcpy(og.sm, oc.sm, sizeof(float) * nb), memcpy(og.sv, oc.sv, sizeof(float) * nb);
    step_put(G, STEP_OPTIMIZER, -1);
    memset(og.qm, 0, n), memset(og.qv, 0, n), memset(og.sm, 0, sizeof(float) * nb), memset(og.sv, 0, sizeof(float) * nb);
    step_get(G, STEP_OPTIMIZER, -1);
    int back = !memcmp(og.qm, oc.qm, n) && !memcmp(og.qv, oc.qv, n) && !memcmp(og.sm, oc.sm, sizeof(float) * nb) &&
               !memcmp(og.sv, oc.sv, sizeof(float) * nb);
    printf("    %s 8-bit state sent up (step_put) and back (step_get) unchanged\n", back ? "ok  " : "FAIL");
    if (!back) failures++;
    step_close(G);
    memcpy(m->w, w0, sizeof(float) * n);
    optimizer_free(&og), optimizer_free(&oc);
    free(w0), free(wc), free(wg), free(gw);
}

// GpuSpec's storage options against the CPU (the header above says what and why)
static void check_storage(const char *name, Model *m, const int *tok, const int *tgt, int B, int T) {
    size_t n = m->tab.total;
    for (size_t i = 0; i < n; i++) m->w[i] = bf16_to_f32(f32_to_bf16(m->w[i]));
    model_masks_changed(m);
    model_alloc_grads(m);
    model_zero_grad(m);
    model_forward(m, tok, tgt, B, T, 1, NULL);
    model_backward(m);
    float *gw = (float *)mallocCheck(sizeof(float) * n), *w = (float *)mallocCheck(sizeof(float) * n);
    float *wref = (float *)mallocCheck(sizeof(float) * n);
    static const int opts[][3] = {{GPU_ADAMW, 1, 0}, {GPU_ADAMW, 0, 1}, {GPU_ADAMW8, 0, 0}, {GPU_ADAMW8, 1, 1}};
    for (int k = 0; k < 4; k++) {
        GpuSpec *s = gpu_spec_from_model(m);
        s->optimizer = opts[k][0], s->grad_bf16 = opts[k][1], s->bf16_only = opts[k][2], s->seed = 7;
        printf("  %s: %s, %s gradients, %s weights\n", name, s->optimizer == GPU_ADAMW8 ? "8-bit AdamW" : "AdamW",
               s->grad_bf16 ? "bf16" : "fp32", s->bf16_only ? "bf16-only" : "fp32 master");
        GpuPlan plan;
        gpu_plan(s, B, T, &plan);
        GpuModel *g = gpu_create(s, B, T);
        float planned = (float)plan.create, got = (float)gpu_bytes(g);
        cmp("device memory right after gpu_create vs the plan", &got, &planned, 1, 0.0, 0);
        gpu_upload(g, m->w);
        gpu_download(g, w);
        cmp("weights uploaded and downloaded", w, m->w, n, 0.0, 0);
        gpu_zero_grad(g);
        gpu_forward(g, tok, tgt, 1);
        gpu_backward(g);
        gpu_download_grads(g, gw);
        double worst = 0;
        for (int i = 0; i < m->tab.n; i++) {
            const PEntry *e = &m->tab.e[i];
            if (e->frozen) continue;
            size_t wi, ne = e->rows * e->cols;
            double r = rel_l2(gw + e->offset, m->gw + e->offset, ne, &wi);
            worst = r > worst ? r : worst;
            cmp(e->name, gw + e->offset, m->gw + e->offset, ne, 3e-2, 1);
        }
        printf("    gradients: worst tensor rel.L2 %.2e (tol 3e-2)\n", worst);
        for (int i = 0; i < m->tab.n; i++)
            if (m->tab.e[i].frozen) memset(gw + m->tab.e[i].offset, 0, sizeof(float) * m->tab.e[i].rows * m->tab.e[i].cols);
        float ng = (float)sqrt(gpu_grad_sumsq(g)), no = (float)sqrt(grad_norm2(gw, n));
        cmp("gradient norm vs its own gradients", &ng, &no, 1, 1e-6, 0);
        // one update on the GPU's own gradients, clipped (the same coefficient on both sides)
        float coef = clip_coef(no, 1.0);
        gpu_adamw(g, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1, coef);
        memcpy(wref, m->w, sizeof(float) * n);
        Optimizer o8;  // the CPU's 8-bit state (model.h adamw8_shard over the world of one: the table)
        int8_t *qm = NULL;
        uint8_t *qv = NULL;
        float *sm = NULL, *sv = NULL;
        for (size_t q = 0; q < n; q++) gw[q] *= coef;
        if (s->optimizer == GPU_ADAMW8) {
            optimizer_init(&o8, &m->tab, OPT_ADAMW8, 0.9f, 0.95f, 1e-8f, 0.0f);
            qm = o8.qm, qv = o8.qv, sm = o8.sm, sv = o8.sv;
            adamw8_shard(&o8.whole, &o8.blocks, &m->tab, wref, gw, qm, qv, sm, sv, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1);
        } else
            for (int i = 0; i < m->tab.n; i++) {
                const PEntry *e = &m->tab.e[i];
                if (e->frozen) continue;
                size_t ne = e->rows * e->cols, o = e->offset;
                float *mo = (float *)callocCheck(sizeof(float) * ne), *va = (float *)callocCheck(sizeof(float) * ne);
                adamw_update(wref + o, gw + o, mo, va, ne, 1e-3f, 0.9f, 0.95f, 1e-8f, param_decays(e) ? 0.1f : 0.0f, 1);
                free(mo), free(va);
            }
        gpu_download(g, w);
        double tol = s->bf16_only ? 4e-3 : 1e-6;
        cmp(s->bf16_only ? "weights after one update (bf16-only: one rounding)" : "weights after one update", w, wref, n, tol, 0);
        if (qm) {
            int8_t *gqm = (int8_t *)mallocCheck(n);
            uint8_t *gqv = (uint8_t *)mallocCheck(n);
            float *gsm = (float *)mallocCheck(sizeof(float) * plan.nblocks), *gsv = (float *)mallocCheck(sizeof(float) * plan.nblocks);
            gpu_copy_adamw8(g, gqm, gqv, gsm, gsv, 0);
            size_t dc = 0, big = 0;
            for (size_t q = 0; q < n; q++) {
                dc += gqm[q] != qm[q] || gqv[q] != qv[q];
                big += abs(gqm[q] - qm[q]) > 1 || abs((int)gqv[q] - (int)qv[q]) > 1;
            }
            int bad = big > 0 || dc * 1000 > n;
            failures += bad;
            printf("    %s 8-bit codes: %zu of %zu elements differ (tol 1 in 1000), %zu by more than a level\n",
                   bad ? "FAIL" : "ok  ", dc, n, big);
            cmp("8-bit blocks' max |m|", gsm, sm, plan.nblocks, 1e-6, 0);
            cmp("8-bit blocks' max v", gsv, sv, plan.nblocks, 1e-6, 0);
            free(gqm), free(gqv), free(gsm), free(gsv), optimizer_free(&o8);
        }
        planned = (float)(plan.create + plan.states), got = (float)gpu_bytes(g);
        cmp("device memory after the first update vs the plan", &got, &planned, 1, 0.0, 0);
        gpu_free(g);
        gpu_plan_free(&plan);
        gpu_spec_free(s);
    }
    free(gw), free(w), free(wref);
}

// Whole-layer checkpointing (GpuSpec.checkpoint: the first ck layers keep only their input and run their forward
// again in the backward) against the same GPU step without it: the loss, every gradient, the mask gradients.
// Tolerance 1e-2, as for two backwards above: the recomputed forward makes the same products on the same bf16
// inputs (the tuned products keep one algorithm per shape for the process), but attention's dQ atomics reorder
// sums, a checkpointed layer's input norm comes from its own kernel instead of the previous layer's fused add, and
// the layer below it starts the way back from its kept input instead of the undone add (an ulp apart); bf16
// roundings downstream can flip. A buffer read before it was made (or overwritten by the shared set) is off by
// far more.
static void check_checkpoint(Model *m, const int *tok, const int *tgt, int B, int T, int prune, int ck, int rec) {
    const Config *c = &m->c;
    printf("  checkpointing: %s step, %d of %d layers checkpointed, gate|up recomputed in %d, B=%d T=%d\n",
           prune ? "pruning" : "training", ck, c->L, rec, B, T);
    for (size_t i = 0; i < m->tab.total; i++) m->w[i] = bf16_to_f32(f32_to_bf16(m->w[i]));
    size_t n = m->tab.total, nm = c->L + (size_t)c->L * c->H + (size_t)c->L * c->F + c->d;
    float loss[2], *gw[2], *dz[2];
    MaskSet ms = masks_make(c, 78);
    for (int k = 0; k < 2; k++) {
        GpuSpec *s = gpu_spec_from_model(m);
        s->checkpoint = k ? ck : 0, s->recompute = k ? rec : 0;
        GpuModel *g = gpu_create(s, B, T);
        gpu_upload(g, m->w);
        if (prune) gpu_set_masks(g, ms.zl, ms.zh, ms.zf, ms.zd);
        gpu_zero_grad(g);
        loss[k] = gpu_forward(g, tok, tgt, 1);
        gpu_backward(g);
        gw[k] = (float *)mallocCheck(sizeof(float) * n), dz[k] = (float *)callocCheck(sizeof(float) * nm);
        gpu_download_grads(g, gw[k]);
        if (prune) gpu_get_mask_grads(g, dz[k], dz[k] + c->L, dz[k] + c->L + c->L * c->H, dz[k] + nm - c->d);
        printf("    device memory allocated: %.2f MiB\n", gpu_bytes(g) / 1048576.0);
        gpu_free(g), gpu_spec_free(s);
    }
    cmp("loss, checkpointed vs not", &loss[1], &loss[0], 1, 1e-2, 0);
    double worst = 0;
    const char *wn = "";
    for (int i = 0; i < m->tab.n; i++) {
        const PEntry *e = &m->tab.e[i];
        if (e->frozen) continue;
        size_t wi;
        double r = rel_l2(gw[1] + e->offset, gw[0] + e->offset, e->rows * e->cols, &wi);
        if (r > worst) worst = r, wn = e->name;
        cmp(e->name, gw[1] + e->offset, gw[0] + e->offset, e->rows * e->cols, 1e-2, 1);
    }
    printf("    %d gradient tensors compared with the step without checkpointing; worst %s rel.L2 %.2e\n", m->tab.n, wn,
           worst);
    if (prune) cmp("mask gradients, checkpointed vs not", dz[1], dz[0], nm, 1e-2, 0);
    for (int k = 0; k < 2; k++) free(gw[k]), free(dz[k]);
    masks_drop(&ms);
}

// A forward-only model (GpuSpec.forward_only: what evaluations and ./profile stats --device gpu open: bf16 weights
// sent tensor by tensor, no gradients, one layer's buffers shared) against the training model's forward on the same
// weights: the same kernels on the same bf16 values, so the loss agrees to 1e-6 (the products' tuned algorithm is
// kept per shape; the attention forward has no atomics), and it allocates less
static void check_forward_only(Model *m, const int *tok, const int *tgt, int B, int T) {
    printf("  forward only (evaluation, profile stats): B=%d T=%d\n", B, T);
    for (size_t i = 0; i < m->tab.total; i++) m->w[i] = bf16_to_f32(f32_to_bf16(m->w[i]));
    float loss[2];
    size_t bytes[2];
    for (int k = 0; k < 2; k++) {
        GpuSpec *s = gpu_spec_from_model(m);
        s->forward_only = k;
        GpuModel *g = gpu_create(s, B, T);
        for (int i = 0; i < m->tab.n; i++)  // tensor by tensor, as the streaming loader sends them
            gpu_copy(g, GPU_WEIGHTS, m->tab.e[i].offset, m->tab.e[i].rows * m->tab.e[i].cols, m->w + m->tab.e[i].offset, 1);
        loss[k] = gpu_forward(g, tok, tgt, 0);
        bytes[k] = gpu_bytes(g);
        gpu_free(g), gpu_spec_free(s);
    }
    cmp("loss, forward-only model vs the training model", &loss[1], &loss[0], 1, 1e-6, 0);
    int less = bytes[1] < bytes[0];
    printf("    %s device memory %.2f MiB forward-only vs %.2f MiB\n", less ? "ok  " : "FAIL", bytes[1] / 1048576.0,
           bytes[0] / 1048576.0);
    failures += !less;
}

static void tokens_for(int V, int B, int T, uint64_t seed, int *tok, int *tgt) {
    Rng r = rng_seed(seed);
    for (int i = 0; i < B * T; i++) tok[i] = (int)(rng_uniform(&r) * V);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) tgt[b * T + t] = t + 1 < T ? (t % 11 == 5 ? -1 : tok[b * T + t + 1]) : -1;
}

static const char *cfg[] = {
    // D=64 tensor-core attention, GQA 2:1, window 48 (< T, not a multiple of 64), final softcap
    "{\"model_type\":\"gemma3_text\",\"vocab_size\":261,\"hidden_size\":64,\"intermediate_size\":128,"
    "\"num_hidden_layers\":4,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":64,"
    "\"sliding_window\":48,\"query_pre_attn_scalar\":64,\"final_logit_softcapping\":30.0,"
    "\"layer_types\":[\"sliding_attention\",\"full_attention\",\"sliding_attention\",\"sliding_attention\"],"
    "\"max_position_embeddings\":4096}",
    // Gemma 3's real head shape: D=256, H=4, K=1 (MQA), window 128, T=320 (5 tiles), no softcap: the
    // sliding layers take the banded backward (mode 2), or the mma kernels (mode 1)
    "{\"model_type\":\"gemma3_text\",\"vocab_size\":512,\"hidden_size\":128,\"intermediate_size\":256,"
    "\"num_hidden_layers\":3,\"num_attention_heads\":4,\"num_key_value_heads\":1,\"head_dim\":256,"
    "\"sliding_window\":128,\"query_pre_attn_scalar\":256,"
    "\"layer_types\":[\"sliding_attention\",\"sliding_attention\",\"full_attention\"],"
    "\"max_position_embeddings\":4096}",
};
static const int BT[][2] = {{2, 150}, {2, 320}};

// every check on the random models; zero_only: ZeRO's alone (check_step --zero)
static void random_cases(int zero_only) {
    for (int k = 0; k < 2; k++) {
        Model m;
        random_model(&m, cfg[k], 100 + k);
        int B = BT[k][0], T = BT[k][1];
        int *tok = (int *)mallocCheck(sizeof(int) * B * T), *tgt = (int *)mallocCheck(sizeof(int) * B * T);
        tokens_for(m.c.V, B, T, 5 + k, tok, tgt);
        printf("random Gemma 3 model %d (D=%d)\n", k, m.c.D);
        if (!zero_only) {
            check_case("random", &m, tok, tgt, B, T, 0, 2, 0);
            if (k == 1) check_case("random", &m, tok, tgt, B, T, 0, 1, 0);
            check_case("random", &m, tok, tgt, B, T, 0, 0, 0);
            check_case("random", &m, tok, tgt, B, T, 1, 2, 2);
            if (k == 0) check_interface(&m, tok, tgt, B, T);
        }
        int *tok2 = (int *)mallocCheck(sizeof(int) * B * T), *tgt2 = (int *)mallocCheck(sizeof(int) * B * T);
        tokens_for(m.c.V, B, T, 50 + k, tok2, tgt2);
        for (int z = 1; z <= 3; z++) {
            for (int opt = OPT_ADAMW; opt <= OPT_ADAMW8; opt++) {
                check_zero(cfg[k], 100 + k, tok, tgt, B, T, z, opt);
                check_zero_two(cfg[k], 100 + k, tok, tgt, B, T, z, opt);
            }
            if (z >= 2) check_zero_backward(cfg[k], 100 + k, tok, tgt, tok2, tgt2, B, T, z, 0);
            if (z == 3) check_zero_backward(cfg[k], 100 + k, tok, tgt, tok2, tgt2, B, T, z, 1);  // the re-forward's gathers
        }
        free(tok2), free(tgt2);
        if (!zero_only) {
            if (k == 0) check_interface8(&m, tok, tgt, B, T, 0, 0);
            if (k == 1) check_interface8(&m, tok, tgt, B, T, 1, 1);
            if (k == 1) check_storage("random", &m, tok, tgt, B, T);
            check_checkpoint(&m, tok, tgt, B, T, 0, m.c.L, 0);      // every layer
            check_forward_only(&m, tok, tgt, B, T);
            check_checkpoint(&m, tok, tgt, B, T, 1, m.c.L - 1, m.c.L);  // some, beside gate|up recompute
        }
        free(tok), free(tgt);
        model_free(&m);
    }
}

static void fixture_case(const char *root, const char *name) {
    char *dir = path_join(root, name);
    if (!dir_exists(dir)) {
        printf("fixture %s: missing (skipped)\n", dir);
        free(dir);
        return;
    }
    Model m;
    model_load(&m, dir);
    char *rp = path_join(dir, "ref.safetensors");
    SFile *ref = st_open(rp);
    const STensor *tt = st_find(ref, "tokens");
    if (!tt || tt->ndim != 2 || tt->dtype != ST_I32) fail("%s: no I32 tokens [B,T]", rp);
    int B = (int)tt->shape[0], T = (int)tt->shape[1];
    int *tok = (int *)mallocCheck(sizeof(int) * B * T), *tgt = (int *)mallocCheck(sizeof(int) * B * T);
    memcpy(tok, tt->data, sizeof(int) * B * T);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) tgt[b * T + t] = t + 1 < T ? tok[b * T + t + 1] : -1;
    printf("fixture %s (Gemma %d)\n", name, m.c.arch);
    check_case(name, &m, tok, tgt, B, T, 0, 1, m.c.arch == 4 ? 1 : 0);
    if (m.c.arch == 3) check_case(name, &m, tok, tgt, B, T, 1, 1, 0);
    if (!strcmp(name, "g4_keqv")) check_storage(name, &m, tok, tgt, B, T);
    check_checkpoint(&m, tok, tgt, B, T, m.c.arch == 3, (m.c.L + 1) / 2, 0);  // Gemma 4: per-layer head sizes share one set
    check_forward_only(&m, tok, tgt, B, T);
    st_close(ref);
    free(rp), free(dir), free(tok), free(tgt);
    model_free(&m);
}

int main(int argc, char **argv) {
    const char *fx = argc > 1 ? argv[1] : "test/fixtures";
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: %s [FIXTURE_DIR]  (default test/fixtures)\n"
               "  a training step and a pruning step on the GPU against model.h on the CPU; exit 1 on any failure\n",
               argv[0]);
        return 0;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);  // progress shows in a log even if the run is stopped
    printf("check_step: GPU %s against model.h (CPU)\n", gpu_device_name());
    if (argc > 1 && !strcmp(argv[1], "--zero")) {  // ZeRO's checks alone (run_device.sh dp)
        random_cases(1);
        printf("check_step --zero: %s\n", failures ? "FAILED" : "all passed");
        return failures ? 1 : 0;
    }
    random_cases(0);
    const char *fixtures[] = {"g3_gqa", "g3_mqa", "g4_kv", "g4_keqv"};
    for (int i = 0; i < 4; i++) fixture_case(fx, fixtures[i]);
    printf("check_step: %s (largest gradient error %.2e)\n", failures ? "FAILED" : "all passed", worst_rel);
    return failures ? 1 : 0;
}
