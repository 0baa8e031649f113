// test/test_comm.c — hip/comm.h on the CPU: run as one process and as `mpirun -np 2` (test/test_comm.sh).
//   1. the ZeRO partition, for 1..8 ranks and every stage, simulated in one process: units tile the table,
//      the ranks' pieces cover every float exactly once (tails: once per rank), each piece inside one tensor;
//      every part of a unit is whole 8-bit blocks, numbered as one process numbers them (zero_block_plan)
//   2. the host collectives over MPI: all-reduce (fp32, fp64, int64), reduce-scatter, all-gather (in place
//      and not), broadcast; values are small multiples of powers of two, so every sum is exact in any order
//      and the expected values (computed here for every rank) must match bit for bit
//   3. ZeRO 0/1/2/3 steps over the real collectives (a momentum optimizer over a fixture's parameter table,
//      gradients averaged, clipped by the global norm): every stage gives the same weights bit for bit as the
//      reference computed in one process (exact again: dyadic gradients)
//   4. the global batch: rank r's slice of mixture_batch_part is rows [rB, (r+1)B) of one process's draw of
//      B x ranks sequences, for three steps in a row (so 2 ranks x B = 1 rank x 2B); the cursor moves alike
//   5. the held-out loss split over ranks (mixture_eval_all, B per rank) equals one process's (mixture_eval,
//      B x ranks) within 1e-6 relative: a forward pass returns its mean as a float, so B and 2B rows round
//      differently (fp32: 6e-8 per value); the sums over batches are double
//   6. checkpoints written from the shards (zero_write_st: weights in bf16 from the table, fp32 moments from the
//      shard, each rank reading only what it owns) are byte for byte the files one process writes whole
// Usage: test/test_comm [data dir, default data/shards]
#include "model.h"
#include "data/mixture.h"
#include "check.h"

static Comm C;

// a fixture's config and parameter table (no weights: the partition needs only the shapes)
static void fixture_table(const char *fixture, Config *c, ParamTable *tab) {
    char path[512];
    snprintf(path, sizeof path, "test/fixtures/%s/config.json", fixture);
    config_load(c, path);
    param_table(c, tab);
}

// ---------------------------------------------------------------------------------------------------- 1
static void test_plan(const char *fixture) {
    Config c;
    ParamTable tab;
    fixture_table(fixture, &c, &tab);
    int bad_units = 0, bad_cover = 0, bad_piece = 0, bad_shard = 0, bad_blocks = 0;
    unsigned char *seen = (unsigned char *)mallocCheck(tab.total);
    for (int world = 1; world <= 8; world++)
        for (int stage = 0; stage <= 3; stage++) {
            memset(seen, 0, tab.total);
            for (int r = 0; r < world; r++) {
                ZeroPlan z = zero_plan(&tab, c.L, stage, r, world);
                size_t at = 0, owned = 0;
                for (int i = 0; i < z.nunit; i++) {  // units tile the table in order; a layer is one unit
                    const ZeroUnit *u = &z.u[i];
                    size_t next = i + 1 < z.nunit ? z.u[i + 1].off : tab.total;
                    bad_units += u->off + u->n != next || u->at != at || u->q * z.world + u->tail != u->n ||
                                 u->q % QBLOCK || u->tail >= (size_t)z.world * QBLOCK;
                    at += u->q + u->tail;
                }
                // 8-bit blocks (zero_block_plan): each part of a unit is whole blocks, and a shard's block j is global
                // block unit-first + (table offset - unit start) / QBLOCK: the blocks any world cuts
                ZeroPlan b = zero_block_plan(&z);
                size_t nb = 0;
                for (int i = 0; i < z.nunit; i++) {
                    const ZeroUnit *u = &z.u[i], *bu = &b.u[i];
                    bad_blocks += bu->off != nb || bu->n != (u->n + QBLOCK - 1) / QBLOCK || bu->q * QBLOCK != u->q;
                    nb += bu->n;
                }
                for (int k = 0; k < z.npiece; k++) {
                    const ZeroPiece *p = &z.p[k];
                    int i = 0;
                    while (i + 1 < z.nunit && z.u[i + 1].at <= p->s && z.u[i + 1].n) i++;
                    for (size_t j = 0; j < p->n; j += 97) {
                        size_t sb = b.u[i].at + (p->s + j - z.u[i].at) / QBLOCK, g = SIZE_MAX;
                        for (int q = 0; q < b.npiece; q++)
                            if (b.p[q].s <= sb && sb < b.p[q].s + b.p[q].n) g = b.p[q].w + (sb - b.p[q].s);
                        bad_blocks += g != b.u[i].off + (p->w + j - z.u[i].off) / QBLOCK;
                    }
                }
                zero_plan_free(&b);
                for (int t = 0; t < tab.n; t++) {
                    const PEntry *e = &tab.e[t];
                    int want = e->layer >= 0 ? e->layer + 1 : e->kind == T_FINAL_NORM ? c.L + 1 : 0;
                    const ZeroUnit *u = &z.u[want];
                    bad_units += e->offset < u->off || e->offset + e->rows * e->cols > u->off + u->n;
                }
                for (int k = 0; k < z.npiece; k++) {  // pieces: inside one tensor, contiguous in the shard
                    const ZeroPiece *p = &z.p[k];
                    const PEntry *e = &tab.e[p->tensor];
                    bad_piece += p->w < e->offset || p->w + p->n > e->offset + e->rows * e->cols || p->s + p->n > z.shard;
                    for (size_t j = 0; j < p->n; j++) seen[p->w + j]++;
                    owned += p->n;
                }
                bad_shard += owned != z.shard || at != z.shard;
                zero_plan_free(&z);
            }
            // every float is held once, except each unit's tail, held by every rank (stage 0: one owner)
            int owners = stage == 0 ? 1 : world;
            ZeroPlan z = zero_plan(&tab, c.L, stage, 0, world);
            for (int i = 0; i < z.nunit; i++)
                for (size_t k = z.u[i].off; k < z.u[i].off + z.u[i].n; k++) {
                    int tail = k >= z.u[i].off + z.u[i].q * (size_t)z.world;
                    bad_cover += seen[k] != (tail ? owners : 1) && !(stage == 0 && seen[k] == world);
                }
            zero_plan_free(&z);
        }
    check(!bad_units && !bad_cover && !bad_piece && !bad_shard && !bad_blocks,
          "zero_plan %s (%d layers, %zu floats), 1..8 ranks x stages 0-3: units %d, cover %d, pieces %d, shards %d, "
          "8-bit blocks %d bad", fixture, c.L, tab.total, bad_units, bad_cover, bad_piece, bad_shard, bad_blocks);
    free(seen);
    free(tab.e);
}

// ---------------------------------------------------------------------------------------------------- 2
// rank r's k-th value: a multiple of 1/4 below 2^12, so sums over 8 ranks are exact in fp32 in any order
static float val(int r, size_t k) { return (float)((int)((k * 7 + (size_t)r * 13) % 4001) - 2000) * 0.25f; }

static void test_collectives(void) {
    int W = C.world, R = C.rank;
    size_t n = 1000003;  // odd: no size happens to be a multiple of anything
    float *x = (float *)mallocCheck(sizeof(float) * n);
    double *xd = (double *)mallocCheck(sizeof(double) * n);
    int64_t xi[3] = {R, 1, (int64_t)1 << 40};
    for (size_t k = 0; k < n; k++) x[k] = val(R, k), xd[k] = (double)val(R, k) * 1e-3;
    comm_allreduce(&C, x, n, COMM_F32);
    comm_allreduce(&C, xd, n, COMM_F64);
    comm_allreduce(&C, xi, 3, COMM_I64);
    size_t bad = 0, badd = 0;
    for (size_t k = 0; k < n; k++) {
        float s = 0;
        double sd = 0;
        for (int r = 0; r < W; r++) s += val(r, k), sd += (double)val(r, k) * 1e-3;
        bad += x[k] != s;
        badd += fabs(xd[k] - sd) > 1e-12 * fabs(sd) + 1e-15;
    }
    check(!bad, "all-reduce fp32, %zu values: %zu differ", n, bad);
    check(!badd, "all-reduce fp64, %zu values: %zu off by more than 1e-12 relative (sums in MPI's order)", n, badd);
    check(xi[0] == (int64_t)W * (W - 1) / 2 && xi[1] == W && xi[2] == (int64_t)W << 40, "all-reduce int64");

    size_t q = 4099;  // reduce-scatter: block R of the sum
    float *send = (float *)mallocCheck(sizeof(float) * q * W), *recv = (float *)mallocCheck(sizeof(float) * q);
    for (size_t k = 0; k < q * W; k++) send[k] = val(R, k);
    comm_reduce_scatter(&C, send, recv, q, COMM_F32);
    bad = 0;
    for (size_t j = 0; j < q; j++) {
        float s = 0;
        for (int r = 0; r < W; r++) s += val(r, (size_t)R * q + j);
        bad += recv[j] != s;
    }
    check(!bad, "reduce-scatter fp32, %zu per rank: %zu differ", q, bad);

    float *all = (float *)mallocCheck(sizeof(float) * q * W);  // all-gather, out of place then in place
    for (size_t j = 0; j < q; j++) recv[j] = val(R, j);
    comm_allgather(&C, recv, all, q, COMM_F32);
    bad = 0;
    for (int r = 0; r < W; r++)
        for (size_t j = 0; j < q; j++) bad += all[(size_t)r * q + j] != val(r, j);
    memset(all, 0, sizeof(float) * q * W);
    for (size_t j = 0; j < q; j++) all[(size_t)R * q + j] = val(R, j + 1);
    comm_allgather(&C, all + (size_t)R * q, all, q, COMM_F32);
    for (int r = 0; r < W; r++)
        for (size_t j = 0; j < q; j++) bad += all[(size_t)r * q + j] != val(r, j + 1);
    check(!bad, "all-gather fp32 out of place and in place, %zu per rank: %zu differ", q, bad);

    char msg[64] = {0};
    if (R == W - 1) snprintf(msg, sizeof msg, "from the last rank, %d", W - 1);
    comm_bcast(&C, msg, sizeof msg, W - 1);
    char want[64];
    snprintf(want, sizeof want, "from the last rank, %d", W - 1);
    check(!strcmp(msg, want), "broadcast from rank %d: \"%s\"", W - 1, msg);
    free(x), free(xd), free(send), free(recv), free(all);
}

// ---------------------------------------------------------------------------------------------------- 3
// The gradient rank r computes for step s: a multiple of 2^-10 below 1 (squares and sums exact in double)
static float grad(int r, int s, size_t k) {
    uint64_t h = (k + 1) * 0x9e3779b97f4a7c15ull ^ ((uint64_t)(r + 1) << 32) ^ (uint64_t)(s + 1) * 0xbf58476d1ce4e5b9ull;
    h ^= h >> 29;
    return (float)((int)(h % 2047) - 1023) * (1.0f / 1024);
}

// one optimizer step over this rank's shard: momentum with weight decay on the decaying tensors, scaled by the clip
static void opt_step(const ParamTable *tab, const ZeroPlan *z, float *w, float *mom, const float *gs, float clip) {
    for (int k = 0; k < z->npiece; k++) {
        const ZeroPiece *p = &z->p[k];
        int decay = param_decays(&tab->e[p->tensor]);
        for (size_t j = 0; j < p->n; j++) {
            float *m = &mom[p->s + j], *x = &w[p->w + j];
            *m = 0.875f * *m + clip * gs[p->s + j];
            *x -= 0.0625f * (*m + (decay ? 0.5f * *x : 0.0f));
        }
    }
}

// a table-shaped array as one safetensors file, the way model.h's model_save writes the weights
static void write_table_st(const ParamTable *tab, const char *path, int dtype, const float *x, const char *suffix) {
    STWriter w = {0};
    for (int i = 0; i < tab->n; i++) {
        const PEntry *e = &tab->e[i];
        int64_t shape[2] = {(int64_t)e->rows, (int64_t)e->cols};
        char name[160];
        snprintf(name, sizeof name, "%s%s", e->name, suffix);
        stw_add_f32(&w, name, dtype, e->cols == 1 && e->kind != T_EMBED ? 1 : 2, shape, x + e->offset);
    }
    stw_write(&w, path);
}

static void test_zero_steps(const char *fixture) {
    Config c;
    ParamTable tab;
    fixture_table(fixture, &c, &tab);
    size_t P = tab.total;
    int W = C.world, steps = 3;
    // the reference: one process, the average of every rank's gradient, the global norm, the full state
    float *ref = (float *)mallocCheck(sizeof(float) * P), *mom = (float *)callocCheck(sizeof(float) * P);
    float *g = (float *)mallocCheck(sizeof(float) * P);
    for (size_t k = 0; k < P; k++) ref[k] = val(0, k) / 1024;
    ZeroPlan one = zero_plan(&tab, c.L, 0, 0, 1);
    for (int s = 0; s < steps; s++) {
        double ss = 0;
        for (size_t k = 0; k < P; k++) {
            float sum = 0;
            for (int r = 0; r < W; r++) sum += grad(r, s, k);
            g[k] = sum * (1.0f / W);
            ss += (double)g[k] * g[k];
        }
        float clip = (float)fmin(1.0, 64.0 / sqrt(ss));
        opt_step(&tab, &one, ref, mom, g, clip);
    }
    zero_plan_free(&one);
    // 6: the reference checkpoint files, written whole by one process (model_save's layout)
    char dir[64] = "/tmp/test_comm.XXXXXX", ref_w[128], ref_m[128], got_w[128], got_m[128];
    if (C.rank == 0 && !mkdtemp(dir)) fail("mkdtemp: %s", strerror(errno));
    comm_bcast(&C, dir, sizeof dir, 0);
    snprintf(ref_w, sizeof ref_w, "%s/ref_w.safetensors", dir), snprintf(ref_m, sizeof ref_m, "%s/ref_m.safetensors", dir);
    snprintf(got_w, sizeof got_w, "%s/w.safetensors", dir), snprintf(got_m, sizeof got_m, "%s/m.safetensors", dir);
    if (C.rank == 0) {
        write_table_st(&tab, ref_w, ST_BF16, ref, "");
        write_table_st(&tab, ref_m, ST_F32, mom, ".m");
    }
    for (int stage = 0; stage <= 3; stage++) {
        ZeroPlan z = zero_plan(&tab, c.L, stage, C.rank, W);
        float *w = (float *)mallocCheck(sizeof(float) * P), *st = (float *)callocCheck(sizeof(float) * z.shard);
        float *gs = stage == 0 ? g : (float *)mallocCheck(sizeof(float) * z.shard);
        for (size_t k = 0; k < P; k++) w[k] = val(0, k) / 1024;
        for (int s = 0; s < steps; s++) {
            for (size_t k = 0; k < P; k++) g[k] = grad(C.rank, s, k);
            for (int i = z.nunit - 1; i >= 0; i--) zero_reduce_unit(&C, &z, i, g, gs, 1.0f / W);  // as the backward
            float clip = (float)fmin(1.0, 64.0 / sqrt(zero_sumsq(&C, &z, gs)));
            opt_step(&tab, &z, w, st, gs, clip);
            for (int i = 0; i < z.nunit; i++) zero_gather_unit(&C, &z, i, w);
        }
        size_t bad = 0;
        for (size_t k = 0; k < P; k++) bad += w[k] != ref[k];
        check(!bad, "ZeRO %d over %d rank(s), %s (%zu floats, shard %zu), %d steps: %zu weights differ from one process",
              stage, W, fixture, P, z.shard, steps, bad);
        // 6: the same files written from the shards: only what this rank owns is read (the rest is NaN here)
        float *own = (float *)mallocCheck(sizeof(float) * P);
        for (size_t k = 0; k < P; k++) own[k] = NAN;
        for (int k = 0; k < z.npiece; k++) memcpy(own + z.p[k].w, w + z.p[k].w, sizeof(float) * z.p[k].n);
        zero_write_st(&C, &z, &tab, got_w, ST_BF16, own, 0, "");
        zero_write_st(&C, &z, &tab, got_m, ST_F32, st, 1, ".m");
        int same_w = same_file(got_w, ref_w), same_m = same_file(got_m, ref_m);
        check(same_w && same_m, "ZeRO %d checkpoint written from %d shard(s): weights (bf16) %s, moments (fp32) %s "
              "model_save's bytes", stage, W, same_w ? "equal" : "DIFFER from", same_m ? "equal" : "DIFFER from");
        free(own);
        if (stage) free(gs);
        free(w), free(st);
        zero_plan_free(&z);
    }
    comm_barrier(&C);
    if (C.rank == 0) {
        const char *files[] = {ref_w, ref_m, got_w, got_m};
        for (int k = 0; k < 4; k++) unlink(files[k]);
        rmdir(dir);
    }
    free(ref), free(mom), free(g), free(tab.e);
}

// ---------------------------------------------------------------------------------------------------- 4, 5
// the mean over valid targets of a function of each token pair: what a model's loss is to the eval loop
static float fake_forward(void *ctx, const int *tok, const int *tgt, int rows, int T) {
    double s = 0;
    long n = 0;
    for (int k = 0; k < rows * T; k++)
        if (tgt[k] >= 0) s += sin(tgt[k] * 0.37 + tok[k] * 0.011), n++;
    return (float)(s / n);
}

static void test_batch(const char *data) {
    int B = 3, T = 32, W = C.world, Bg = B * W;
    DataSet probe = data_open(data, 0);  // the shards' own vocabulary stands in for a model's
    int V = (int)probe.train[0].vocab;
    data_close(&probe);
    Mixture mine = mixture_open(data, V, 1234), one = mixture_open(data, V, 1234);
    for (int i = 0; i < mine.k; i++) mine.w[i] = one.w[i] = (i + 1.0) / (mine.k * (mine.k + 1) / 2.0);
    int *tok = (int *)mallocCheck(sizeof(int) * B * T), *tgt = (int *)mallocCheck(sizeof(int) * B * T);
    int *dom = (int *)mallocCheck(sizeof(int) * B), *gtok = (int *)mallocCheck(sizeof(int) * Bg * T);
    int *gtgt = (int *)mallocCheck(sizeof(int) * Bg * T), *gdom = (int *)mallocCheck(sizeof(int) * Bg);
    int64_t *all = (int64_t *)mallocCheck(sizeof(int64_t) * Bg * T), bad = 0, badall = 0;
    for (int step = 0; step < 3; step++) {
        mixture_batch_part(&mine, Bg, C.rank * B, B, T, tok, tgt, dom);
        mixture_batch(&one, Bg, T, gtok, gtgt, gdom);
        for (int b = 0; b < B; b++) {
            bad += dom[b] != gdom[C.rank * B + b];
            for (int t = 0; t < T; t++)
                bad += tok[b * T + t] != gtok[(C.rank * B + b) * T + t] || tgt[b * T + t] != gtgt[(C.rank * B + b) * T + t];
        }
        for (int k = 0; k < B * T; k++) all[(size_t)C.rank * B * T + k] = tok[k];  // and what the ranks hold together
        comm_allgather(&C, all + (size_t)C.rank * B * T, all, (size_t)B * T, COMM_I64);
        for (int k = 0; k < Bg * T; k++) badall += all[k] != gtok[k];
    }
    check(!bad && !badall && mine.drawn == one.drawn && !memcmp(&mine.rng, &one.rng, sizeof mine.rng),
          "global batch %d x %d = %d tokens a step, %d per rank: 3 steps of slices equal one process's draw "
          "(%lld / %lld values differ), cursor %llu = %llu", Bg, T, Bg * T, B * T, (long long)bad, (long long)badall,
          (unsigned long long)mine.drawn, (unsigned long long)one.drawn);
    free(tok), free(tgt), free(dom), free(gtok), free(gtgt), free(gdom), free(all);
    mixture_close(&one);

    // 5: a made-up forward pass (a deterministic function of the windows) stands in for the model
    double *loss = (double *)mallocCheck(sizeof(double) * mine.k), worst = 0;
    mixture_eval_all(&mine, fake_forward, NULL, 3, T, 5, &C, loss);
    for (int d = 0; d < mine.k; d++) {
        double l1 = mixture_eval(&mine, fake_forward, NULL, d, 3 * W, T, 5);
        worst = fmax(worst, fabs(loss[d] - l1) / fabs(l1));
    }
    check(worst <= 1e-6, "held-out loss of %d domains, 5 batches of 3 x %d windows split over %d rank(s): worst "
          "relative difference %.2e from one process's batches of %d (limit 1e-6)", mine.k, W, W, worst, 3 * W);
    free(loss);
    mixture_close(&mine);
}

// test/test_comm --compare A.safetensors B.safetensors TOL: every fp32 tensor (or 8-bit code, as its integer) of A
// against B's of the same name (with a 5th argument: that tensor only), the relative L2 error ||a - b|| / ||b|| per
// tensor; prints the worst; exit 1 above TOL (test_comm.sh's check on
// the weights data parallel runs write: AdamW's step is nearly sign(g) where |g| ~ eps, so one element can move by
// lr on a rounding difference; the L2 error over a tensor is the measure that stays at fp32 rounding)
static double code_or_f32(const STensor *t, size_t k) {  // an fp32 value, or an 8-bit AdamW code as its integer
    return t->dtype == ST_F32 ? ((const float *)t->data)[k] : t->dtype == ST_I8 ? ((const int8_t *)t->data)[k]
                                                                                 : ((const uint8_t *)t->data)[k];
}
static int compare_files(const char *a, const char *b, double tol, const char *only) {
    SFile *fa = st_open(a), *fb = st_open(b);
    double worst = 0;
    const char *where = "";
    int n = 0;
    for (int i = 0; i < fa->n; i++) {
        const STensor *x = &fa->t[i], *y = st_find(fb, x->name);
        if (only && strcmp(x->name, only)) continue;
        n++;
        if (!y || y->numel != x->numel || x->dtype != y->dtype || (x->dtype != ST_F32 && x->dtype != ST_I8 && x->dtype != ST_U8))
            fail("%s: tensor %s missing in %s, or not fp32 (or 8-bit codes) of the same size and type", a, x->name, b);
        double d = 0, m = 0;
        for (size_t k = 0; k < x->numel; k++) {
            double p = code_or_f32(x, k), q = code_or_f32(y, k);
            d += (p - q) * (p - q), m += q * q;
        }
        double rel = m > 0 ? sqrt(d / m) : sqrt(d);
        if (!(rel <= worst)) worst = rel, where = x->name;
    }
    printf("%s %s vs %s: %d tensors, worst ||a-b||/||b|| %.2e (%s), limit %.0e\n", worst <= tol ? "ok  " : "FAIL", a, b,
           n, worst, where, tol);
    return !(worst <= tol) || n == 0;
}

int main(int argc, char **argv) {
    if ((argc == 5 || argc == 6) && !strcmp(argv[1], "--compare"))
        return compare_files(argv[2], argv[3], atof(argv[4]), argc == 6 ? argv[5] : NULL);
    C = comm_init();
    char tag[32];
    snprintf(tag, sizeof tag, "[rank %d/%d] ", C.rank, C.world);
    check_tag = tag, check_quiet = C.rank != 0;
    const char *data = argc > 1 ? argv[1] : "data/shards";
    if (C.rank == 0) printf("test_comm: %d rank(s)%s\n", C.world, C.mpi ? " over MPI" : "");
    if (C.world == 1) {  // the partition needs no communication: simulated for every world size once
        test_plan("g3_gqa");
        test_plan("g4_keqv");
        test_plan("g4_e2b");
    }
    test_collectives();
    test_zero_steps("g3_gqa");
    test_zero_steps("g4_keqv");
    test_batch(data);
    double f = comm_sum(&C, failures);
    if (C.rank == 0) printf("%d passed, %d failed\n", checks - failures, (int)f);
    comm_finish(&C);
    return f > 0;
}
