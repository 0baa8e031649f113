// test_train.c — train.c's numerical parts against float64 transcriptions written here from the published
// algorithms (not from train.c's code), plus the slicing of lottery ticket B against model.h's masks.
// Includes train.c (llm.c's test_gpt2.c does the same) so its static functions can be called.
//
//   1. 8-bit AdamW: 20 steps; at each step the C update and a float64 transcription start from the same
//      quantized state. Parameters: |err| <= 1e-6·|p| + 1e-5·lr (float32 vs float64 arithmetic of one step,
//      update size ~lr). Scales: rtol 1e-6. Codes: each must be the level nearest to the reference's fp64
//      moment (found by searching all levels), or tie with it to 1e-6 relative (float32 rounding). Prints
//      the codes' round-trip errors per decade below the block maximum, next to plain linear int8.
//      Then over a Gemma 4 fixture's whole table, blocks laid over the ZeRO partition's units (so some hold the
//      ends of several tensors, frozen layer scalars among them): the same tolerances against the transcription
//      run unit by unit with each value's weight decay; 3 ranks' ZeRO 1 shards equal one process bit for bit.
//   2. Muon: 3 steps on a wide [24, 40] and a tall [40, 24] matrix (the transposed path) against a float64
//      transcription of Keller Jordan's Muon with Moonshot's scaling. Tolerance: |err| <= 1e-5·lr·scale
//      (the update is lr·scale·O with |O| <= ~1; Newton–Schulz in float32 vs float64 differs by ~1e-6).
//   3. Distillation head: loss and d loss / d logit against float64 (with and without softcap), the float64
//      gradient itself checked by central differences; rtol 1e-5 (float32 logits, float64 sums). Then on a
//      model: alpha = 1 gives the same loss and parameter gradients as the plain CE path (rtol 1e-5,
//      atol 1e-6·max: two roundings of the same softmax); teacher = student with alpha = 0 gives zero.
//   4. Lottery B: the source model with 0/1 masks for the removed layers, heads, FFN channels and hidden dims
//      (model.h's mask hooks) against the sliced model; logits rtol 1e-5, atol 1e-5·max (same fp32 math,
//      other summation lengths). Gemma 3 and Gemma 4.
//   test/test_train --make-shards DIR [--vocab V]   writes small synthetic shards for test/test_train.sh
#define TRAIN_NO_MAIN
#include "train.c"
#include "check.h"

static double heavy(Rng *r) { return rng_normal(r) * exp(2.0 * rng_normal(r)); }  // spans decades

// ---------------------------------------------------------------------------------------------------
// 1. 8-bit AdamW. Reference: AdamW (Loshchilov & Hutter; torch.optim.AdamW) on moments that are stored
//    block-wise with square-root companded 8-bit codes (train.c §4 documents the codes).

// n values in blocks of QBLOCK from the first; wdv: each value's weight decay and live: 0 where its tensor is frozen
// (not updated, its moments 0), or NULL: wd for all, all live
static void ref_adamw8(double *p, const double *g, const int8_t *qm, const uint8_t *qv, const float *sm,
                       const float *sv, size_t n, double lr, double b1, double b2, double eps, double wd, int t,
                       double *m, double *v, double *mmax, double *vmax, const double *wdv, const unsigned char *live) {
    double bc1 = 1 - pow(b1, t), bc2 = 1 - pow(b2, t);
    for (size_t b = 0; b * QBLOCK < n; b++) {
        mmax[b] = vmax[b] = 0;
        for (size_t i = b * QBLOCK; i < n && i < (b + 1) * QBLOCK; i++) {
            if (live && !live[i]) {
                m[i] = v[i] = 0;
                continue;
            }
            if (wdv) wd = wdv[i];
            double xm = qm[i] / 127.0, xv = qv[i] / 255.0;
            double m0 = (xm < 0 ? -1 : 1) * xm * xm * sm[b], v0 = pow(xv, 4) * sv[b];
            m[i] = b1 * m0 + (1 - b1) * g[i];
            v[i] = b2 * v0 + (1 - b2) * g[i] * g[i];
            p[i] = p[i] * (1 - lr * wd) - lr * (m[i] / bc1) / (sqrt(v[i] / bc2) + eps);
            mmax[b] = fmax(mmax[b], fabs(m[i]));
            vmax[b] = fmax(vmax[b], v[i]);
        }
    }
}

// codes of n values in blocks from the first against the reference's m, v and block maxima: each code must be (one
// of) the nearest level(s) to the reference value; returns the codes that are not (counts what it saw)
static long codes_off(const int8_t *qm, const uint8_t *qv, const double *md, const double *vd, const double *mmax,
                      const double *vmax, size_t n, long *codes, long *excused, long *zeroed) {
    long bad = 0;
    for (size_t i = 0; i < n; i++) {
        size_t b = i / QBLOCK;
        double uq = vmax[b] > 0 ? sqrt(vd[i] / vmax[b]) : 0, am = mmax[b] > 0 ? fabs(md[i]) / mmax[b] : 0;
        int bv = 0, bm = 0;
        for (int q = 0; q <= 255; q++) bv = fabs(uq - pow(q / 255.0, 2)) < fabs(uq - pow(bv / 255.0, 2)) ? q : bv;
        for (int q = 0; q <= 127; q++) bm = fabs(am - pow(q / 127.0, 2)) < fabs(am - pow(bm / 127.0, 2)) ? q : bm;
        int ok_v = fabs(uq - pow(qv[i] / 255.0, 2)) <= fabs(uq - pow(bv / 255.0, 2)) + 1e-6 * uq + 1e-12;
        int cm = abs(qm[i]), sign_ok = cm == 0 || (qm[i] < 0) == (md[i] < 0);
        int ok_m = qv[i] == 0 ? cm == 0 : sign_ok && fabs(am - pow(cm / 127.0, 2)) <= fabs(am - pow(bm / 127.0, 2)) + 1e-6 * am + 1e-12;
        if (qv[i] != 0 && bv == 0) ok_m = ok_m || cm == 0;  // the reference would zero m here
        *zeroed += qv[i] == 0 && bm != 0;
        *codes += 2;
        *excused += (qv[i] != bv) + (qv[i] && cm != bm);  // ties within rounding
        bad += !ok_v + !ok_m;
    }
    return bad;
}

static void test_adamw8(void) {
    printf("8-bit AdamW vs a float64 transcription (20 steps, each from the same quantized state)\n");
    const size_t n = 1000;  // 4 blocks, the last one partial
    size_t nb = (n + QBLOCK - 1) / QBLOCK;
    float lr = 1e-2f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f;
    Rng r = rng_seed(7);
    float *p = (float *)mallocCheck(4 * n), *g = (float *)mallocCheck(4 * n), *sm = (float *)callocCheck(4 * nb);
    float *sv = (float *)callocCheck(4 * nb);
    int8_t *qm = (int8_t *)callocCheck(n);
    uint8_t *qv = (uint8_t *)callocCheck(n);
    double *pd = (double *)mallocCheck(8 * n), *gd = (double *)mallocCheck(8 * n), *md = (double *)mallocCheck(8 * n);
    double *vd = (double *)mallocCheck(8 * n), *mmax = (double *)mallocCheck(8 * nb), *vmax = (double *)mallocCheck(8 * nb);
    for (size_t i = 0; i < n; i++) p[i] = (float)rng_normal(&r);
    double worst_p = 0, worst_s = 0;
    long codes = 0, excused = 0, bad = 0, zeroed = 0;
    for (int t = 1; t <= 20; t++) {
        for (size_t i = 0; i < n; i++) {
            g[i] = (float)(1e-3 * heavy(&r));
            if (i % 97 == 0 || (t > 10 && i < 256)) g[i] = 0;  // idle elements and a whole idle block
            // block 2 from step 15: idle elements whose v code is 0 but whose m code is not (set by hand:
            // nearest rounding makes small codes sticky, so this rarely arises by itself) must get m zeroed
            if (t >= 15 && i >= 512 && i < 768) {
                g[i] = i == 512 ? 1.0f : 0.0f;
                if (t == 15 && i > 512) qm[i] = (int8_t)(i % 2 ? 100 : -90), qv[i] = 0;
            }
            pd[i] = p[i], gd[i] = g[i];
        }
        ref_adamw8(pd, gd, qm, qv, sm, sv, n, lr, b1, b2, eps, wd, t, md, vd, mmax, vmax, NULL, NULL);
        adamw8_update(p, g, qm, qv, sm, sv, n, lr, b1, b2, eps, wd, t);
        for (size_t i = 0; i < n; i++) {
            double tol = 1e-6 * fabs(pd[i]) + 1e-5 * lr;
            worst_p = fmax(worst_p, fabs(p[i] - pd[i]) / tol);
        }
        for (size_t b = 0; b < nb; b++) {
            worst_s = fmax(worst_s, fabs(sm[b] - mmax[b]) / (1e-6 * mmax[b] + 1e-30));
            worst_s = fmax(worst_s, fabs(sv[b] - vmax[b]) / (1e-6 * vmax[b] + 1e-30));
        }
        bad += codes_off(qm, qv, md, vd, mmax, vmax, n, &codes, &excused, &zeroed);
    }
    check(worst_p <= 1, "parameters after each step: worst error %.3f of tolerance", worst_p);
    check(worst_s <= 1, "block scales: worst error %.3f of tolerance", worst_s);
    check(bad == 0, "codes: %ld of %ld are not the nearest level (%ld ties within float32 rounding)", bad, codes, excused);
    check(zeroed > 0, "m codes zeroed where the v code is 0: %ld cases exercised", zeroed);
    // round-trip error of the codes per decade of |x| / block max (heavy-tailed values), for NOTES.md
    printf("  round-trip relative error of the 8-bit codes, by |x| / block max (max over 100k values):\n");
    double em[6] = {0}, ev[6] = {0}, el[6] = {0};
    for (int k = 0; k < 100000; k++) {
        double x = heavy(&r), rel = fabs(x) / 50.0;  // block max ~50 for these values
        if (rel >= 1 || rel < 1e-6) continue;
        int dec = (int)floor(-log10(rel));
        float s = 50.0f, m = q8m_decode(q8m_encode((float)x, s), s), v = q8v_decode(q8v_encode((float)(x * x), s * s), s * s);
        float lin = (float)(s * floor(127 * x / s + 0.5) / 127);  // plain linear absmax int8, for comparison
        em[dec] = fmax(em[dec], fabs(m - x) / fabs(x));
        ev[dec] = fmax(ev[dec], fabs(sqrt(v) - fabs(x)) / fabs(x));
        el[dec] = fmax(el[dec], fabs(lin - x) / fabs(x));
    }
    for (int d = 0; d < 6; d++)
        printf("    [1e-%d, 1e-%d): m (sqrt code) %.3g   sqrt(v) (4th-root code) %.3g   linear int8 %.3g\n", d + 1, d, em[d],
               ev[d], el[d]);
    free(p), free(g), free(sm), free(sv), free(qm), free(qv), free(pd), free(gd), free(md), free(vd), free(mmax), free(vmax);
}

// 8-bit AdamW over a Gemma 4 fixture's table as the optimizer lays it (model.h adamw8_shard: blocks from each unit's
// start of hip/comm.h's partition, so blocks hold the ends of several tensors, and the frozen layer scalars inside
// one): against the float64 transcription run unit by unit with each value's own weight decay and the frozen values
// left out; then the same 6 steps as 3 ranks' ZeRO 1 shards (each its own codes, scales and gradient in the shard
// layout, the tails updated by all) give the one process's weights, codes and scales bit for bit.
static void test_adamw8_units(const char *fixtures) {
    printf("8-bit AdamW over the ZeRO partition's units (Gemma 4 fixture, a frozen scalar per layer)\n");
    char path[512];
    snprintf(path, sizeof path, "%s/g4_keqv/config.json", fixtures);
    Config c;
    ParamTable tab;
    config_load(&c, path);
    param_table(&c, &tab);
    size_t n = tab.total;
    Optimizer o;
    optimizer_init(&o, &tab, OPT_ADAMW8, 0.9f, 0.95f, 1e-8f, 0.0f);
    const ZeroPlan *z = &o.whole, *bz = &o.blocks;
    float lr = 1e-2f, wd = 0.1f, *p = (float *)mallocCheck(4 * n), *g = (float *)mallocCheck(4 * n);
    double *pd = (double *)mallocCheck(8 * n), *gd = (double *)mallocCheck(8 * n), *md = (double *)mallocCheck(8 * n);
    double *vd = (double *)mallocCheck(8 * n), *wdv = (double *)mallocCheck(8 * n);
    double *mmax = (double *)mallocCheck(8 * o.nblocks), *vmax = (double *)mallocCheck(8 * o.nblocks);
    unsigned char *live = (unsigned char *)mallocCheck(n);
    int frozen = 0, mixed = 0;
    for (int i = 0; i < tab.n; i++) {
        const PEntry *e = &tab.e[i];
        frozen += e->frozen;
        for (size_t k = e->offset; k < e->offset + e->rows * e->cols; k++) live[k] = !e->frozen, wdv[k] = param_decays(e) ? wd : 0;
    }
    for (int u = 0; u < z->nunit; u++)  // blocks that hold more than one tensor
        for (size_t b = 0; b * QBLOCK < z->u[u].n; b++) {
            size_t a = z->u[u].off + b * QBLOCK, e = a + QBLOCK < z->u[u].off + z->u[u].n ? a + QBLOCK : z->u[u].off + z->u[u].n;
            int ta = 0, te = 0;
            for (int i = 0; i < tab.n; i++) {
                if (tab.e[i].offset <= a) ta = i;
                if (tab.e[i].offset < e) te = i;
            }
            mixed += ta != te;
        }
    // 3 ranks at ZeRO 1: their plans, shards of codes and scales, gradients in the shard layout, own weights
    enum { W = 3 };
    ZeroPlan zr[W], br[W];
    int8_t *qm[W];
    uint8_t *qv[W];
    float *sm[W], *sv[W], *wr[W], *gr[W];
    for (int r = 0; r < W; r++) {
        zr[r] = zero_plan(&tab, c.L, 1, r, W), br[r] = zero_block_plan(&zr[r]);
        qm[r] = (int8_t *)callocCheck(zr[r].shard), qv[r] = (uint8_t *)callocCheck(zr[r].shard);
        sm[r] = (float *)callocCheck(4 * br[r].shard), sv[r] = (float *)callocCheck(4 * br[r].shard);
        wr[r] = (float *)mallocCheck(4 * n), gr[r] = (float *)mallocCheck(4 * zr[r].shard);
    }
    Rng rng = rng_seed(11);
    for (size_t i = 0; i < n; i++) p[i] = (float)(0.05 * rng_normal(&rng));
    for (int r = 0; r < W; r++) memcpy(wr[r], p, 4 * n);
    double worst_p = 0, worst_s = 0;
    long codes = 0, excused = 0, zeroed = 0, bad = 0, differ = 0;
    for (int t = 1; t <= 6; t++) {
        for (size_t i = 0; i < n; i++) g[i] = live[i] ? (float)(1e-3 * heavy(&rng)) : 0.0f, pd[i] = p[i], gd[i] = g[i];
        for (int u = 0; u < z->nunit; u++) {  // the transcription, unit by unit
            size_t a = z->u[u].off, b0 = bz->u[u].off;
            ref_adamw8(pd + a, gd + a, o.qm + a, o.qv + a, o.sm + b0, o.sv + b0, z->u[u].n, lr, 0.9, 0.95, 1e-8, wd, t,
                       md + a, vd + a, mmax + b0, vmax + b0, wdv + a, live + a);
        }
        adamw8_shard(z, bz, &tab, p, g, o.qm, o.qv, o.sm, o.sv, lr, 0.9f, 0.95f, 1e-8f, wd, t);
        for (size_t i = 0; i < n; i++) worst_p = fmax(worst_p, fabs(p[i] - pd[i]) / (1e-6 * fabs(pd[i]) + 1e-5 * lr));
        for (size_t b = 0; b < o.nblocks; b++) {
            worst_s = fmax(worst_s, fabs(o.sm[b] - mmax[b]) / (1e-6 * mmax[b] + 1e-30));
            worst_s = fmax(worst_s, fabs(o.sv[b] - vmax[b]) / (1e-6 * vmax[b] + 1e-30));
        }
        for (int u = 0; u < z->nunit; u++) {
            size_t a = z->u[u].off, b0 = bz->u[u].off;
            bad += codes_off(o.qm + a, o.qv + a, md + a, vd + a, mmax + b0, vmax + b0, z->u[u].n, &codes, &excused, &zeroed);
        }
        for (int r = 0; r < W; r++) {
            for (int k = 0; k < zr[r].npiece; k++) memcpy(gr[r] + zr[r].p[k].s, g + zr[r].p[k].w, 4 * zr[r].p[k].n);
            adamw8_shard(&zr[r], &br[r], &tab, wr[r], gr[r], qm[r], qv[r], sm[r], sv[r], lr, 0.9f, 0.95f, 1e-8f, wd, t);
            for (int k = 0; k < zr[r].npiece; k++) {
                const ZeroPiece *q = &zr[r].p[k];
                differ += memcmp(wr[r] + q->w, p + q->w, 4 * q->n) != 0;
                differ += memcmp(qm[r] + q->s, o.qm + q->w, q->n) != 0 || memcmp(qv[r] + q->s, o.qv + q->w, q->n) != 0;
            }
            for (int k = 0; k < br[r].npiece; k++) {
                const ZeroPiece *q = &br[r].p[k];
                differ += memcmp(sm[r] + q->s, o.sm + q->w, 4 * q->n) != 0 || memcmp(sv[r] + q->s, o.sv + q->w, 4 * q->n) != 0;
            }
        }
    }
    check(frozen > 0 && mixed > 0, "the table: %d frozen tensors, %d of %zu blocks hold more than one tensor", frozen, mixed,
          o.nblocks);
    check(worst_p <= 1, "parameters after each of 6 steps: worst error %.3f of tolerance (frozen ones untouched)", worst_p);
    check(worst_s <= 1, "block scales: worst error %.3f of tolerance", worst_s);
    check(bad == 0, "codes: %ld of %ld are not the nearest level (%ld ties within float32 rounding)", bad, codes, excused);
    check(differ == 0, "3 ranks' ZeRO 1 shards: weights, codes and scales as one process's bit for bit (%ld pieces differ)",
          differ);
    for (int r = 0; r < W; r++) {
        zero_plan_free(&zr[r]), zero_plan_free(&br[r]);
        free(qm[r]), free(qv[r]), free(sm[r]), free(sv[r]), free(wr[r]), free(gr[r]);
    }
    optimizer_free(&o);
    free(p), free(g), free(pd), free(gd), free(md), free(vd), free(wdv), free(mmax), free(vmax), free(live), free(tab.e);
}

// ---------------------------------------------------------------------------------------------------
// 2. Muon. Reference: Keller Jordan's Muon (github.com/KellerJordan/Muon, muon_update and
//    zeropower_via_newtonschulz5) in float64, update scaled by 0.2·sqrt(max(rows, cols)) (Moonshot).

static void ref_matmul(const double *A, const double *B, double *C, int M, int N, int K, int transB) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++) s += A[i * K + k] * (transB ? B[j * K + k] : B[k * N + j]);
            C[i * N + j] = s;
        }
}

static void ref_muon(double *p, const double *g, double *buf, int rows, int cols, double lr, double mu, double wd) {
    int n = rows * cols, tr = rows > cols, R = tr ? cols : rows, C = tr ? rows : cols;
    double *u = (double *)mallocCheck(8 * n), *X = (double *)mallocCheck(8 * n), *Y = (double *)mallocCheck(8 * n);
    double *A = (double *)mallocCheck(8 * R * R), *A2 = (double *)mallocCheck(8 * R * R), *Bm = (double *)mallocCheck(8 * R * R);
    double nrm = 0;
    for (int i = 0; i < n; i++) {
        buf[i] = buf[i] + (1 - mu) * (g[i] - buf[i]);  // lerp(buf, g, 1 - mu)
        u[i] = g[i] + mu * (buf[i] - g[i]);            // lerp(g, buf, mu)
        nrm += u[i] * u[i];
    }
    nrm = sqrt(nrm) + 1e-7;
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) X[tr ? j * C + i : i * C + j] = u[i * cols + j] / nrm;
    for (int it = 0; it < 5; it++) {
        ref_matmul(X, X, A, R, R, C, 1);
        ref_matmul(A, A, A2, R, R, R, 0);
        for (int i = 0; i < R * R; i++) Bm[i] = -4.7750 * A[i] + 2.0315 * A2[i];
        ref_matmul(Bm, X, Y, R, C, R, 0);
        for (int i = 0; i < n; i++) X[i] = 3.4445 * X[i] + Y[i];
    }
    double scale = 0.2 * sqrt(rows > cols ? rows : cols);
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) {
            double o = X[tr ? j * C + i : i * C + j];
            p[i * cols + j] = p[i * cols + j] * (1 - lr * wd) - lr * scale * o;
        }
    free(u), free(X), free(Y), free(A), free(A2), free(Bm);
}

static void test_muon(int rows, int cols) {
    int n = rows * cols;
    float lr = 2e-2f, mu = 0.95f, wd = 0.1f;
    Rng r = rng_seed(11);
    float *p = (float *)mallocCheck(4 * n), *g = (float *)mallocCheck(4 * n), *buf = (float *)callocCheck(4 * n);
    float *work = (float *)mallocCheck(4 * muon_scratch_floats(rows, cols));
    double *pd = (double *)mallocCheck(8 * n), *gd = (double *)mallocCheck(8 * n), *bd = (double *)callocCheck(8 * n);
    for (int i = 0; i < n; i++) pd[i] = p[i] = (float)(0.1 * rng_normal(&r));
    double scale = 0.2 * sqrt(rows > cols ? rows : cols), worst = 0, moved = 0;
    for (int t = 0; t < 3; t++) {
        for (int i = 0; i < n; i++) gd[i] = g[i] = (float)rng_normal(&r);
        muon_update(p, g, buf, rows, cols, lr, mu, wd, work);
        ref_muon(pd, gd, bd, rows, cols, lr, mu, wd);
    }
    for (int i = 0; i < n; i++) {
        worst = fmax(worst, fabs(p[i] - pd[i]) / (1e-5 * lr * scale));
        moved = fmax(moved, fabs(pd[i]));
    }
    check(worst <= 1 && moved > 0, "Muon [%d, %d], 3 steps: worst parameter error %.3f of tolerance", rows, cols, worst);
    free(p), free(g), free(buf), free(work), free(pd), free(gd), free(bd);
}

// ---------------------------------------------------------------------------------------------------
// 3. Distillation: α·CE + (1−α)·τ²·KL(softmax(t/τ) ‖ softmax(s/τ)), s = cap·tanh(z/cap) (or z)

static double logsumexp(const double *x, int n, double scale) {
    double m = -INFINITY, s = 0;
    for (int i = 0; i < n; i++) m = fmax(m, x[i] * scale);
    for (int i = 0; i < n; i++) s += exp(x[i] * scale - m);
    return m + log(s);
}

// loss of pre-softcap student logits z [N, V]; grad (optional) = d loss / d z, by the chain rule written out
static double ref_distill(const double *z, const double *t, const int *y, int N, int V, double a, double tau,
                          double cap, double *grad) {
    double *s = (double *)mallocCheck(8 * V), ce = 0, kl = 0;
    int nv = 0;
    for (int n = 0; n < N; n++) nv += y[n] >= 0;
    for (int n = 0; n < N; n++) {
        for (int i = 0; i < V; i++) s[i] = cap > 0 ? cap * tanh(z[n * V + i] / cap) : z[n * V + i];
        double ls = logsumexp(s, V, 1), lq = logsumexp(s, V, 1 / tau), lr = logsumexp(t + n * V, V, 1 / tau);
        if (y[n] >= 0) ce += (ls - s[y[n]]) / nv;
        for (int i = 0; i < V; i++) {
            double logr = t[n * V + i] / tau - lr, logq = s[i] / tau - lq;
            kl += exp(logr) * (logr - logq) / N;
            if (grad) {
                double d = (1 - a) * tau * (exp(logq) - exp(logr)) / N;  // d (τ² KL) / d s_i = τ (q_i − r_i)
                if (y[n] >= 0) d += a * (exp(s[i] - ls) - (i == y[n])) / nv;
                grad[n * V + i] = d * (cap > 0 ? 1 - (s[i] / cap) * (s[i] / cap) : 1);
            }
        }
    }
    free(s);
    return a * ce + (1 - a) * tau * tau * kl;
}

static void test_distill_head(double cap) {
    const int N = 6, V = 37;
    double a = 0.3, tau = 2.0;
    Rng r = rng_seed(5);
    double *z = (double *)mallocCheck(8 * N * V), *t = (double *)mallocCheck(8 * N * V), *gref = (double *)mallocCheck(8 * N * V);
    float *sf = (float *)mallocCheck(4 * N * V), *tf = (float *)mallocCheck(4 * N * V);
    int y[6] = {3, 0, 36, -1, 17, 8};
    for (int i = 0; i < N * V; i++) {
        z[i] = (float)(3 * rng_normal(&r));  // float-representable, so both sides see the same logits
        t[i] = (float)(3 * rng_normal(&r));
    }
    double lref = ref_distill(z, t, y, N, V, a, tau, cap, gref), fd_worst = 0;
    for (int i = 0; i < N * V; i += 7) {  // central differences confirm the written-out gradient
        double h = 1e-5, zi = z[i];
        z[i] = zi + h;
        double lp = ref_distill(z, t, y, N, V, a, tau, cap, NULL);
        z[i] = zi - h;
        double lm = ref_distill(z, t, y, N, V, a, tau, cap, NULL);
        z[i] = zi;
        fd_worst = fmax(fd_worst, fabs((lp - lm) / (2 * h) - gref[i]) / (1e-6 * fabs(gref[i]) + 1e-9));
    }
    for (int i = 0; i < N * V; i++) {
        sf[i] = (float)(cap > 0 ? cap * tanh(z[i] / cap) : z[i]);
        tf[i] = (float)t[i];
    }
    double ce, kl, l = distill_loss(sf, tf, y, N, V, (float)a, (float)tau, (float)cap, &ce, &kl), gmax = 0, gw = 0;
    for (int i = 0; i < N * V; i++) gmax = fmax(gmax, fabs(gref[i]));
    for (int i = 0; i < N * V; i++) gw = fmax(gw, fabs(sf[i] - gref[i]) / (1e-5 * fabs(gref[i]) + 1e-6 * gmax));
    check(fd_worst <= 1, "distill (softcap %g): float64 gradient vs central differences, worst %.3f of tolerance", cap,
          fd_worst);
    check(fabs(l - lref) <= 1e-5 * fabs(lref), "distill (softcap %g): loss %.8f vs float64 %.8f", cap, l, lref);
    check(gw <= 1, "distill (softcap %g): d loss / d logit worst %.3f of tolerance", cap, gw);
    free(z), free(t), free(gref), free(sf), free(tf);
}

static void tiny_config(Config *c, int arch) {
    const char *g3 = "{\"model_type\":\"gemma3_text\",\"vocab_size\":61,\"hidden_size\":32,\"intermediate_size\":40,"
                     "\"num_hidden_layers\":3,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":8,"
                     "\"sliding_window\":4,\"final_logit_softcapping\":20.0,"
                     "\"layer_types\":[\"sliding_attention\",\"sliding_attention\",\"full_attention\"]}";
    const char *g4 = "{\"model_type\":\"gemma4_text\",\"vocab_size\":61,\"hidden_size\":32,\"intermediate_size\":40,"
                     "\"num_hidden_layers\":3,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":8,"
                     "\"global_head_dim\":16,\"num_global_key_value_heads\":1,\"attention_k_eq_v\":true,"
                     "\"sliding_window\":4,\"final_logit_softcapping\":30.0,\"hidden_size_per_layer_input\":0,"
                     "\"layer_types\":[\"sliding_attention\",\"sliding_attention\",\"full_attention\"]}";
    cJSON *j = cJSON_Parse(arch == 3 ? g3 : g4);
    config_from_json(c, j, "tiny config");
    cJSON_Delete(j);
}

// a random model whose norms are random too (so that picking the wrong norm entries would show)
static void tiny_model(Model *m, int arch, int seed) {
    Config c;
    tiny_config(&c, arch);
    model_random(m, &c, seed, 0);
    Rng r = rng_seed(100 + seed);
    for (int i = 0; i < m->tab.n; i++) {
        const PEntry *e = &m->tab.e[i];
        if (e->kind == T_LAYER_SCALAR) continue;
        for (size_t k = 0; k < e->rows * e->cols; k++) m->w[e->offset + k] += (float)(e->is_norm ? 0.3 : 0.2) * rng_normal(&r);
    }
}

static void tiny_tokens(int *tok, int *tgt, int B, int T, int V, int seed) {
    Rng r = rng_seed(seed);
    for (int i = 0; i < B * T; i++) tok[i] = (int)(rng_next(&r) % (uint64_t)V);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) tgt[b * T + t] = t + 1 < T ? tok[b * T + t + 1] : -1;
}

static void test_distill_model(void) {
    const int B = 2, T = 9;
    Model m, teacher;
    tiny_model(&m, 3, 1);
    tiny_model(&teacher, 3, 2);
    int tok[18], tgt[18];
    tiny_tokens(tok, tgt, B, T, m.c.V, 3);
    size_t nl = (size_t)B * T * m.c.V;
    float *slog = (float *)mallocCheck(4 * nl), *tlog = (float *)mallocCheck(4 * nl);
    model_alloc_grads(&m);
    model_zero_grad(&m);
    float l1 = model_forward(&m, tok, tgt, B, T, 1, NULL);
    model_backward(&m);
    float *g1 = (float *)mallocCheck(4 * m.tab.total);
    memcpy(g1, m.gw, 4 * m.tab.total);
    model_zero_grad(&m);
    double ce, kl, l2 = distill_microbatch(&m, &teacher, tok, tgt, B, T, 1.0f, 2.0f, slog, tlog, &ce, &kl);
    double gmax = 0, worst = 0;
    for (size_t i = 0; i < m.tab.total; i++) gmax = fmax(gmax, fabs(g1[i]));
    for (size_t i = 0; i < m.tab.total; i++) worst = fmax(worst, fabs(m.gw[i] - g1[i]) / (1e-5 * fabs(g1[i]) + 1e-6 * gmax));
    check(fabs(l2 - l1) <= 1e-5 * l1 && worst <= 1,
          "distill alpha=1 = plain CE: loss %.7f vs %.7f, every gradient within %.3f of tolerance", l2, l1, worst);
    model_zero_grad(&m);
    double l3 = distill_microbatch(&m, &m, tok, tgt, B, T, 0.0f, 2.0f, slog, tlog, &ce, &kl), g3 = 0;
    for (size_t i = 0; i < m.tab.total; i++) g3 = fmax(g3, fabs(m.gw[i]));
    check(fabs(l3) < 1e-12 && g3 < 1e-12, "distill from itself, alpha=0: loss %.3g, max |gradient| %.3g", l3, g3);
    free(slog), free(tlog), free(g1);
    model_free(&m), model_free(&teacher);
}

// ---------------------------------------------------------------------------------------------------
// 4. Lottery ticket B: slicing by a prune report = masking the source with 0/1 masks

static cJSON *int_array(const int *v, int n) { return cJSON_CreateIntArray(v, n); }

// the worst logit difference of the masked source and the sliced model on random tokens, in units of the
// tolerance 1e-5·|ref| + 1e-5·max|ref| (both fp32, the same products: ~1e-6 relative)
static double masked_vs_cut(Model *src, Model *cut, uint64_t seed) {
    const int B = 2, T = 7, V = src->c.V;
    int tok[14], tgt[14];
    tiny_tokens(tok, tgt, B, T, V, seed);
    float *la = (float *)mallocCheck(4 * B * T * V), *lb = (float *)mallocCheck(4 * B * T * V);
    model_forward(src, tok, tgt, B, T, 0, la);
    model_forward(cut, tok, tgt, B, T, 0, lb);
    double mx = 0, worst = 0;
    for (int i = 0; i < B * T * V; i++) mx = fmax(mx, fabs(la[i]));
    for (int i = 0; i < B * T * V; i++) worst = fmax(worst, fabs(la[i] - lb[i]) / (1e-5 * fabs(la[i]) + 1e-5 * mx));
    free(la), free(lb);
    return worst;
}

static void test_lottery_b(int arch, const char *tmp) {
    Model src;
    tiny_model(&src, arch, 4);
    char dir[512], rep[512];
    snprintf(dir, sizeof dir, "%s/src%d", tmp, arch);
    snprintf(rep, sizeof rep, "%s/report%d.json", tmp, arch);
    model_save(&src, dir, ST_F32);
    model_free(&src);
    model_load(&src, dir);
    // keep layers 0 and 2; layer 0 (sliding, K=2, G=2): kv head 1 = query heads 2,3; layer 2: Gemma 3 the same
    // shape, kv head 0 = heads 0,1; Gemma 4 (full: Kg=1, G=4): kv head 0 and query heads 1,3
    int layers[2] = {0, 2}, kv0[1] = {1}, kv2[1] = {0}, q0[2] = {2, 3}, q2[2] = {0, 1}, q2g4[2] = {1, 3};
    int ffn0[24], ffn2[24], hidden[24];
    for (int i = 0; i < 24; i++) ffn0[i] = i + i / 8, ffn2[i] = 16 + i;
    for (int i = 0, n = 0; i < 32; i++)  // drop 8 of the 32 hidden dims
        if (i != 1 && i != 5 && i != 6 && i != 11 && i != 17 && i != 20 && i != 26 && i != 30) hidden[n++] = i;
    cJSON *r = cJSON_CreateObject(), *ts = cJSON_AddObjectToObject(r, "target_shape");
    cJSON_AddStringToObject(r, "method", "sheared");
    cJSON_AddNumberToObject(ts, "hidden_size", 24), cJSON_AddNumberToObject(ts, "intermediate_size", 24);
    cJSON_AddNumberToObject(ts, "num_hidden_layers", 2), cJSON_AddNumberToObject(ts, "num_attention_heads", 2);
    cJSON_AddNumberToObject(ts, "num_key_value_heads", 1), cJSON_AddNumberToObject(ts, "head_dim", 8);
    cJSON_AddItemToObject(r, "layers", int_array(layers, 2));
    cJSON *kv = cJSON_AddArrayToObject(r, "kv_heads"), *qh = cJSON_AddArrayToObject(r, "query_heads");
    cJSON *ff = cJSON_AddArrayToObject(r, "ffn");
    cJSON_AddItemToArray(kv, int_array(kv0, 1)), cJSON_AddItemToArray(kv, int_array(kv2, 1));
    cJSON_AddItemToArray(qh, int_array(q0, 2)), cJSON_AddItemToArray(qh, int_array(arch == 4 ? q2g4 : q2, 2));
    cJSON_AddItemToArray(ff, int_array(ffn0, 24)), cJSON_AddItemToArray(ff, int_array(ffn2, 24));
    cJSON_AddItemToObject(r, "hidden", int_array(hidden, 24));
    write_json_atomic(rep, r);
    cJSON_Delete(r);

    Model cut;
    Config c;
    lottery_from_report(&cut, &c, rep, dir);
    // the same structure as masks on the source
    float zl[3] = {1, 0, 1}, zh[12] = {0}, zf[120] = {0}, zd[32] = {0};
    for (int j = 0; j < 2; j++) zh[q0[j]] = 1, zh[8 + (arch == 4 ? q2g4 : q2)[j]] = 1;
    for (int i = 0; i < 24; i++) zf[ffn0[i]] = 1, zf[80 + ffn2[i]] = 1, zd[hidden[i]] = 1;
    src.zl = zl, src.zh = zh, src.zf = zf, src.zd = zd;
    model_masks_changed(&src);
    cut.embed_scale = src.embed_scale;  // the sliced model's loader would use sqrt(24); the masked one sqrt(32)
    double worst = masked_vs_cut(&src, &cut, 9);
    check(worst <= 1 && cut.c.d == 24 && cut.c.L == 2 && cut.c.H == 2,
          "lottery B, Gemma %d: sliced [d %d, L %d, H %d, K %d, F %d] = masked source, logits within %.3f of tolerance",
          arch, cut.c.d, cut.c.L, cut.c.H, cut.c.K, cut.c.F, worst);
    src.zl = src.zh = src.zf = src.zd = NULL;
    model_free(&src), model_free(&cut);
}

// Gemma 4 E2B (fixture g4_e2b: per-layer inputs, KV-shared layers with 2F FFNs): every layer and hidden dim
// kept, one query head per kv group and 20 of 48 FFN channels (40 of 96 on the double-wide layers)
static void test_lottery_b_e2b(const char *fixtures, const char *tmp) {
    char *dir = path_join(fixtures, "g4_e2b"), rep[512];
    if (!dir_exists(dir)) {
        check(0, "fixture %s is missing (make it with test/ref/make_fixtures.py)", dir);
        free(dir);
        return;
    }
    Model src;
    model_load(&src, dir);
    const Config *c = &src.c;
    snprintf(rep, sizeof rep, "%s/report_e2b.json", tmp);
    int layers[6], kv[2] = {0, 1}, heads[2] = {1, 3}, hidden[64], ffn[96];
    cJSON *r = cJSON_CreateObject(), *ts = cJSON_AddObjectToObject(r, "target_shape");
    cJSON_AddNumberToObject(ts, "hidden_size", 64), cJSON_AddNumberToObject(ts, "intermediate_size", 20);
    cJSON_AddNumberToObject(ts, "num_hidden_layers", 6), cJSON_AddNumberToObject(ts, "num_attention_heads", 2);
    cJSON_AddNumberToObject(ts, "num_key_value_heads", 2), cJSON_AddNumberToObject(ts, "head_dim", 16);
    for (int i = 0; i < 64; i++) hidden[i] = i;
    for (int l = 0; l < 6; l++) layers[l] = l;
    cJSON_AddItemToObject(r, "layers", int_array(layers, 6));
    cJSON_AddItemToObject(r, "hidden", int_array(hidden, 64));
    cJSON *kva = cJSON_AddArrayToObject(r, "kv_heads"), *qh = cJSON_AddArrayToObject(r, "query_heads");
    cJSON *ff = cJSON_AddArrayToObject(r, "ffn");
    float zh[24] = {0}, *zf = (float *)callocCheck(sizeof(float) * ffn_off(c, c->L));
    for (int l = 0; l < 6; l++) {
        int F = layer_F(c, l), n = F * 20 / 48;
        for (int i = 0; i < n; i++) ffn[i] = i * F / n, zf[ffn_off(c, l) + ffn[i]] = 1;  // spread over the layer
        cJSON_AddItemToArray(kva, int_array(kv, 2)), cJSON_AddItemToArray(qh, int_array(heads, 2));
        cJSON_AddItemToArray(ff, int_array(ffn, n));
        zh[l * 4 + 1] = zh[l * 4 + 3] = 1;
    }
    write_json_atomic(rep, r);
    cJSON_Delete(r);
    Model cut;
    Config cc;
    lottery_from_report(&cut, &cc, rep, dir);
    src.zh = zh, src.zf = zf;
    double worst = masked_vs_cut(&src, &cut, 11);
    check(worst <= 1 && cut.c.H == 2 && cut.c.F == 20 && layer_F(&cut.c, 5) == 40 && cut.c.P == c->P,
          "lottery B, Gemma 4 E2B: sliced [H %d, F %d, 2F layers %d, P %d] = masked source, logits within %.3f of "
          "tolerance", cut.c.H, cut.c.F, layer_F(&cut.c, 5), cut.c.P, worst);
    free(zf), free(dir);
    src.zh = src.zf = NULL;
    model_free(&src), model_free(&cut);
}

// ---------------------------------------------------------------------------------------------------
// synthetic shards for test_train.sh: "pattern" (a repeated sentence: learnable), "count" (numbers
// counting up), "noise" (uniform random bytes: loss stays near ln 256); byte-tokenizer ids

static void make_shards(const char *dir, uint32_t vocab) {
    const char *names[3] = {"count", "noise", "pattern"};
    Rng r = rng_seed(1);
    for (int d = 0; d < 3; d++)
        for (int split = 0; split < 2; split++) {
            uint64_t n = split ? 4096 : 32768, i = 0, k = 0;
            uint32_t *tok = (uint32_t *)mallocCheck(4 * n);
            char text[64];
            tok[i++] = 2;  // BOS
            while (i < n) {
                if (d == 1) {
                    tok[i++] = 4 + (uint32_t)(rng_next(&r) % 256);
                    continue;
                }
                if (d == 0) snprintf(text, sizeof text, "%llu ", (unsigned long long)(k++ % 5000));
                else snprintf(text, sizeof text, "the quick brown fox jumps over the lazy dog. ");
                for (const char *c = text; *c && i < n; c++) tok[i++] = *c == ' ' ? 260 : 4 + (unsigned char)*c;
            }
            for (uint64_t j = 0; j < n; j++) tok[j] %= vocab;
            char sub[600], path[700];
            snprintf(sub, sizeof sub, "%s/%s", dir, names[d]);
            make_dirs(sub);
            snprintf(path, sizeof path, "%s/%s.bin", sub, split ? "val" : "train");
            shard_write(path, vocab, tok, n, 1);
            free(tok);
        }
}

int main(int argc, char **argv) {
    if (argc >= 3 && !strcmp(argv[1], "--make-shards")) {
        make_shards(argv[2], argc >= 5 && !strcmp(argv[3], "--vocab") ? (uint32_t)atoi(argv[4]) : 261);
        return 0;
    }
    char tmp[] = "/tmp/test_train.XXXXXX";
    if (!mkdtemp(tmp)) fail("mkdtemp failed");
    test_adamw8();
    test_adamw8_units("test/fixtures");
    printf("Muon vs a float64 transcription\n");
    test_muon(24, 40);
    test_muon(40, 24);
    printf("distillation head\n");
    test_distill_head(0);
    test_distill_head(5);
    test_distill_model();
    printf("lottery ticket B\n");
    test_lottery_b(3, tmp);
    test_lottery_b(4, tmp);
    test_lottery_b_e2b("test/fixtures", tmp);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) printf("  (could not remove %s)\n", tmp);
    printf("test_train: %s\n", failures ? "FAILED" : "all passed");
    return failures != 0;
}
