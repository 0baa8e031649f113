// hip/gpu.hip — one Gemma training / pruning step on one GPU: the C interface of hip/gpu.h over the
// kernels of hip/<op>.h (one header per op, each paired with its workbench hip/dev/<op>.hip) and the
// matrix products of hip/blas.hip.
// Reads top to bottom like model.h's section 4: state, forward, backward, optimizer, masks.
//
// Precision: fp32 master weights, gradients and AdamW moments; bf16 copies of the weights for every
// product; bf16 activations at the products' inputs and outputs; fp32 residual stream, norm
// statistics, softmax statistics and accumulators. What is kept for the backward (per layer): the
// residual stream entering the layer (fp32), the raw q,k,v projections, the attention output and its
// log-sum-exp, the o_proj, gate|up and down_proj outputs, and the norms' 1/rms. Cheap things are
// recomputed in the backward: both norm outputs that feed products, q and k after norm and RoPE, the
// residual after the attention branch, gelu(gate)·up. With GpuSpec.recompute = n the first n layers
// keep no gate|up and recompute it in the backward (one more product, 2F·d·N multiply-adds, each).
// Memory: everything the forward and the backward use only for the moment (the scratch) shares one
// region with the head's chunk of bf16 logits, which is never alive at the same time.
#include <string.h>
#include <time.h>

#include "adamw.h"
#include "attention.h"
#include "blas.h"
#include "colsum.h"
#include "elementwise.h"
#include "embed.h"
#include "gelu.h"
#include "gpu.h"
#include "masks.h"
#include "rmsnorm.h"
#include "rope.h"
#include "xent.h"

static double wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

// =================================================================================================
// State
// =================================================================================================

typedef struct {
    float *r_in;         // [N]     1/rms of input_layernorm
    bf16 *qkv;           // [N, nqkv] raw q | k | v projections
    float *rq, *rk, *rv; // [N·H], [N·K], [N·K] 1/rms of the q, k (and Gemma 4 v) norms
    bf16 *att;           // [N, H·D] attention output before the head mask
    float *lse;          // [B, H, T]
    bf16 *o;             // [N, d]  o_proj output
    float *r_pa, *r_pf;  // [N]
    bf16 *gu;            // [N, 2F] gate | up (NULL where rec: recomputed in the backward)
    int rec;
    bf16 *f;             // [N, d]  down_proj output
    float *r_pff;        // [N]
} LayerBuf;

enum { P_GEMM, P_ATTN, P_NORM, P_ELEM, P_HEAD, P_OPT, P_N };
static const char *prof_name[P_N] = {"matrix products", "attention", "norms+rope", "elementwise", "head (xent)", "optimizer"};

struct GpuModel {
    GpuSpec s;
    int B, T, N, use_mma;            // use_mma: gpu_set_attention's mode
    size_t bytes;                    // device memory allocated here
    float *w, *gw, *m, *v;           // master weights, gradients, AdamW moments [total]
    // gpu_zero_grad zeroes only the gradients that kernels add into (norm weights, ...): the weight products'
    // gradients and the head's are written with beta = 0 by the first backward / head after it, as if zero
    size_t *zero_rng, *prod_rng;     // device [2n]: (offset, length) ranges of gw, the rest / the layers' products
    int nzero, nprod;
    int fresh_layers, fresh_head;    // 1: those gradients are logically zero, their memory not yet written
    bf16 *wb;                        // bf16 copy of w
    size_t *seg_off;                 // [ntensor + 1] on the device
    unsigned char *seg_flag;
    float2 **rope;                   // [L] cos/sin table of each layer ([T][D/2]); layers with equal RoPE share one
    LayerBuf *lb;
    // the residual stream: the forward runs it through this one buffer and leaves the stream after the last
    // layer; the backward takes it back layer by layer (residual_undo), so no layer keeps its input
    float *xL, *r_f;                 // [N, d] residual stream; final norm's 1/rms
    bf16 *xf;                        // final norm output
    int *tok, *tgt;
    float *row_loss, *row_loss_h;
    int n_valid, have_targets;       // have_targets: a forward with targets ran and no backward has taken it back yet
    // scratch shared by the forward and the backward, all inside ws (below)
    float *X2, *DX;                  // [N, d] fp32
    bf16 *S1, *S2, *S3;              // [N, d]
    bf16 *SF1, *SF2;                 // [N, max(F, H·D, nqkv)]
    bf16 *SG;                        // [N, 2F] gate | up of the layers that recompute it
    bf16 *QS, *KS, *VS;              // [N, H·D], [N, K·D], [N, K·D] q, k (Gemma 4: v) after norm and RoPE
    float *DQ;                       // [N, H·D] fp32 (attention dQ accumulates here)
    bf16 *DK, *DV;                   // [N, K·D]
    float *DXF;                      // [N, d] fp32 d loss / d final norm output (the head writes it: not in ws)
    float *Di;                       // [B, H, T]
    AttnBand band;                   // the banded backwards' S, dP, P, dS (NULL: no layer can use them)
    int pad;                         // rows of padding around KS / VS / QS / SF2 and before each qkv (banded path)
    float *part;                     // column-sum partials
    double *sumsq;                   // grad-norm partials
    char *ws;                        // the scratch region; the head's [chunk, V] bf16 logits when those are alive
    bf16 *logits;
    int chunk;
    // masks (NULL: off), their gradients, and the host copy of the layer gates the kernels take by value
    float *zl, *zh, *zf, *zd, *dzl, *dzh, *dzf, *dzd, *zl_host;
    int zd_kept;
    float *hc;                       // hard-concrete scratch
    size_t hc_n;
    // profile
    int prof;
    double prof_t[P_N], prof_last;
};

// columns of a layer's raw q | k | v projection (Gemma 4's K=V layers have no v), and the first column of
// the v its attention reads (K=V layers: k's)
static int qkv_cols(const GpuSpec *s, const GpuLayerSpec *ls) { return (s->H + (ls->hasv ? 2 : 1) * ls->K) * ls->D; }
static int v_col(const GpuSpec *s, const GpuLayerSpec *ls) { return (ls->hasv ? s->H + ls->K : s->H) * ls->D; }

static void *gmalloc(GpuModel *g, size_t bytes) {
    void *p = NULL;
    if (bytes == 0) return NULL;
    hipError_t e = hipMalloc(&p, bytes);
    if (e != hipSuccess) {
        size_t fr = 0, tot = 0;
        (void)hipMemGetInfo(&fr, &tot);
        fprintf(stderr, "error: GPU allocation of %.2f GiB failed (%.2f GiB allocated so far, %.2f GiB free of %.2f)\n"
                        "  hint: a smaller --batch or --seq, or a smaller model\n",
                bytes / 1073741824.0, g->bytes / 1073741824.0, fr / 1073741824.0, tot / 1073741824.0);
        exit(1);
    }
    g->bytes += bytes;
    return p;
}
#define GALLOC(g, type, count) ((type *)gmalloc(g, sizeof(type) * (size_t)(count)))

// with GS_PROFILE=1, wait for the device and charge the time since the last mark to `cat`
static void prof(GpuModel *g, int cat) {
    if (!g->prof) return;
    hipCheck(hipDeviceSynchronize());
    double t = wall();
    g->prof_t[cat] += t - g->prof_last;
    g->prof_last = t;
}

static unsigned grid_for(size_t n) { return gs_grid(n, 256); }  // the grid-stride kernels here: 256 threads, one item each

static void fail_msg(const char *msg) {
    fprintf(stderr, "error: %s\n", msg);
    exit(1);
}

// the (offset, length) ranges of gw that the layers' weight-gradient products write whole (q|k|v, o, gate|up,
// down: beta = 0 on a fresh backward), and the rest of gw but the head's tied embedding, which gpu_zero_grad zeroes
static int cmp_range(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}
static void grad_ranges(GpuModel *g) {
    const GpuSpec *s = &g->s;
    size_t L = s->L, d = s->d, H = s->H, F = s->F, np = 4 * L, nz = 0;
    size_t *pr = (size_t *)malloc(sizeof(size_t) * 2 * (np + 1)), *zr = (size_t *)malloc(sizeof(size_t) * 2 * (np + 2));
    for (size_t l = 0; l < L; l++) {
        const GpuLayerSpec *ls = &s->layer[l];
        size_t D = ls->D, nqkv = qkv_cols(s, ls);
        size_t r[8] = {ls->wq, nqkv * d, ls->wo, d * H * D, ls->wgate, 2 * F * d, ls->wdown, d * F};
        memcpy(pr + 8 * l, r, sizeof r);
    }
    g->nprod = (int)np;
    g->prod_rng = GALLOC(g, size_t, 2 * np);
    hipCheck(hipMemcpy(g->prod_rng, pr, sizeof(size_t) * 2 * np, hipMemcpyHostToDevice));
    // the gaps between the products and the head, in offset order
    pr[2 * np] = s->embed, pr[2 * np + 1] = (size_t)s->V * d;
    qsort(pr, np + 1, 2 * sizeof(size_t), cmp_range);
    size_t at = 0;
    for (size_t i = 0; i <= np; i++) {
        if (pr[2 * i] < at) fail_msg("overlapping weight tensors in the parameter table");
        if (pr[2 * i] > at) zr[2 * nz] = at, zr[2 * nz + 1] = pr[2 * i] - at, nz++;
        at = pr[2 * i] + pr[2 * i + 1];
    }
    if (at < s->total) zr[2 * nz] = at, zr[2 * nz + 1] = s->total - at, nz++;
    g->nzero = (int)nz;
    g->zero_rng = GALLOC(g, size_t, 2 * (nz ? nz : 1));
    if (nz) hipCheck(hipMemcpy(g->zero_rng, zr, sizeof(size_t) * 2 * nz, hipMemcpyHostToDevice));
    free(pr), free(zr);
}

// the fresh gradients' memory made zero, before anything reads gw as a whole
static void grads_materialize(GpuModel *g) {
    if (g->fresh_head) hipCheck(hipMemsetAsync(g->gw + g->s.embed, 0, sizeof(float) * g->s.V * g->s.d));
    if (g->fresh_layers && g->nprod) {
        k_zero_ranges<<<dim3(128, g->nprod), 256>>>(g->gw, g->prod_rng);
        hipCheckLaunch();
    }
    g->fresh_head = g->fresh_layers = 0;
}

const char *gpu_device_name(void) {
    static hipDeviceProp_t p;
    static int got = 0;
    if (!got) hipCheck(hipGetDeviceProperties(&p, 0)), got = 1;
    return p.name;
}

GpuModel *gpu_create(const GpuSpec *spec, int B, int T) {
    GpuModel *g = (GpuModel *)calloc(1, sizeof(GpuModel));
    g->s = *spec;
    const GpuSpec *s = &g->s;
    g->B = B, g->T = T, g->N = B * T, g->use_mma = 2;
    g->prof = getenv("GS_PROFILE") && atoi(getenv("GS_PROFILE")) > 0;
    size_t N = (size_t)g->N, d = s->d, H = s->H, F = s->F, L = s->L;
    if (F % 2) fail_msg("the GPU path needs an even intermediate_size");
    if (B < 1 || T < 1) fail_msg("the GPU path needs B >= 1 and T >= 1");
    // tables: segment offsets, copies of the host arrays this struct points to
    g->s.tensor_off = (size_t *)malloc(sizeof(size_t) * (s->ntensor + 1));
    g->s.tensor_flag = (unsigned char *)malloc(s->ntensor);
    memcpy(g->s.tensor_off, spec->tensor_off, sizeof(size_t) * (s->ntensor + 1));
    memcpy(g->s.tensor_flag, spec->tensor_flag, s->ntensor);
    g->s.inv_freq = NULL;  // used below, not kept
    g->seg_off = GALLOC(g, size_t, s->ntensor + 1);
    g->seg_flag = GALLOC(g, unsigned char, s->ntensor);
    hipCheck(hipMemcpy(g->seg_off, s->tensor_off, sizeof(size_t) * (s->ntensor + 1), hipMemcpyHostToDevice));
    hipCheck(hipMemcpy(g->seg_flag, s->tensor_flag, s->ntensor, hipMemcpyHostToDevice));
    // weights and gradients (AdamW moments at the first update)
    g->w = GALLOC(g, float, s->total);
    g->wb = GALLOC(g, bf16, s->total);
    g->gw = GALLOC(g, float, s->total);
    hipCheck(hipMemset(g->gw, 0, sizeof(float) * s->total));
    grad_ranges(g);
    // RoPE tables, angles in fp32 exactly as model.h's rope_apply: (float)inv_freq * (float)pos
    g->rope = (float2 **)calloc(L, sizeof(float2 *));
    for (int l = 0; l < (int)L; l++) {
        int D = s->layer[l].D;
        const float *inv = spec->inv_freq + (size_t)l * spec->inv_stride;
        for (int p = 0; p < l && !g->rope[l]; p++)
            if (s->layer[p].D == D && !memcmp(inv, spec->inv_freq + (size_t)p * spec->inv_stride, sizeof(float) * (D / 2)))
                g->rope[l] = g->rope[p];
        if (g->rope[l]) continue;
        float2 *h = (float2 *)malloc(sizeof(float2) * (size_t)T * (D / 2));
        rope_table_host(h, inv, T, D);
        g->rope[l] = GALLOC(g, float2, (size_t)T * (D / 2));
        hipCheck(hipMemcpy(g->rope[l], h, sizeof(float2) * (size_t)T * (D / 2), hipMemcpyHostToDevice));
        free(h);
    }
    // the banded attention backward (attention.h) where a layer can take it: its buffers (bf, bh bytes), and `pad` rows
    // around k, v, q and dO that the sliding band reads past the sequences
    int band = 0;
    size_t bf = 0, bh = 0;
    for (int l = 0; l < (int)L; l++) {
        const GpuLayerSpec *ls = &s->layer[l];
        AttnBwd ab = {};
        ab.f.K = ls->K, ab.f.window = ls->full ? 0 : s->W, ab.f.T = T, ab.f.D = ls->D, ab.f.H = s->H;
        ab.f.ldq = ab.lddo = ab.lddq = s->H * ls->D, ab.f.ldk = ls->K * ls->D;
        size_t f32 = 0, b16 = 0;
        if (attn_band_ok(ab)) band = 1, f32 = attn_band_f32((int)N, (int)H, s->W), b16 = attn_band_bf16((int)N, (int)H, s->W);
        else if (attn_full_ok(ab)) f32 = attn_full_f32((int)N, (int)H, T), b16 = attn_full_bf16((int)N, (int)H, T);
        bf = f32 * 4 > bf ? f32 * 4 : bf, bh = b16 * 2 > bh ? b16 * 2 : bh;
    }
    g->pad = band ? attn_band_pad(s->W) : 0;
    size_t pad = g->pad;
    // activations kept for the backward
    size_t maxw = F, maxqkv = 0, maxhd = 0, maxkd = 0;
    int maxD = 0;
    g->lb = (LayerBuf *)calloc(L, sizeof(LayerBuf));
    for (int l = 0; l < (int)L; l++) {
        const GpuLayerSpec *ls = &s->layer[l];
        size_t D = ls->D, K = ls->K, nqkv = qkv_cols(s, ls);
        if (H % K) fail_msg("query heads must be a multiple of kv heads");
        maxqkv = nqkv > maxqkv ? nqkv : maxqkv, maxhd = H * D > maxhd ? H * D : maxhd, maxkd = K * D > maxkd ? K * D : maxkd;
        maxD = (int)D > maxD ? (int)D : maxD;
        LayerBuf *a = &g->lb[l];
        a->r_in = GALLOC(g, float, N);
        a->qkv = GALLOC(g, bf16, (pad + N) * nqkv) + pad * nqkv;  // v's pad rows: read, never used
        hipCheck(hipMemset(a->qkv - pad * nqkv, 0, sizeof(bf16) * pad * nqkv));
        if (s->arch == 4) a->rv = GALLOC(g, float, N * K);
        a->rq = GALLOC(g, float, N * H);
        a->rk = GALLOC(g, float, N * K);
        a->att = GALLOC(g, bf16, N * H * D);
        a->lse = GALLOC(g, float, N * H);
        a->o = GALLOC(g, bf16, N * d);
        a->r_pa = GALLOC(g, float, N);
        a->r_pf = GALLOC(g, float, N);
        a->rec = l < s->recompute;
        a->gu = a->rec ? NULL : GALLOC(g, bf16, N * 2 * F);
        a->f = GALLOC(g, bf16, N * d);
        a->r_pff = GALLOC(g, float, N);
    }
    if (maxD > GS_WARP * ATT_MAXE || maxD / 2 > GS_WARP * HN_MAXP) fail_msg("head_dim is larger than the GPU kernels support (512)");
    maxw = maxw > maxhd ? maxw : maxhd;
    maxw = maxw > maxqkv ? maxw : maxqkv;
    g->xL = GALLOC(g, float, N * d);
    g->r_f = GALLOC(g, float, N);
    g->xf = GALLOC(g, bf16, N * d);
    g->tok = GALLOC(g, int, N);
    g->tgt = GALLOC(g, int, N);
    g->row_loss = GALLOC(g, float, N);
    g->row_loss_h = (float *)malloc(sizeof(float) * N);
    g->DXF = GALLOC(g, float, N * d);
    g->Di = GALLOC(g, float, N * H);
    size_t nrb = gs_cdiv(N, COLSUM_ROWS), cmax = F > d ? F : d;
    cmax = cmax > maxhd ? cmax : maxhd;
    size_t part = nrb * cmax, hn = (size_t)gs_cdiv(N * H, HN_ROWS) * maxD, pn = norm_bwd_parts((int)d, (int)N);
    part = part > hn ? part : hn;
    g->part = GALLOC(g, float, part > pn ? part : pn);
    g->sumsq = GALLOC(g, double, 1024);
    // the scratch region: the scratch buffers one after another (256-byte aligned), or the head's bf16 logits of
    // `chunk` rows at a time, 2 GiB at most (each chunk re-reads and re-writes the fp32 embedding gradient
    // once, so fewer, larger chunks move fewer bytes), whichever is larger
    // (KS and VS start `pad` rows into theirs)
    size_t sizes[] = {N * d * 4, N * d * 4, N * d * 2, N * d * 2, N * d * 2, N * maxw * 2, (N * maxw + pad * maxhd) * 2,
                      s->recompute > 0 ? N * 2 * F * 2 : 0, (N + pad) * maxhd * 2, (pad + N) * maxkd * 2,
                      s->arch == 4 ? (pad + N) * maxkd * 2 : 0, N * maxhd * 4, N * maxkd * 2, N * maxkd * 2, bf, bf, bh, bh};
    void **bufs[] = {(void **)&g->X2, (void **)&g->DX, (void **)&g->S1, (void **)&g->S2, (void **)&g->S3, (void **)&g->SF1,
                     (void **)&g->SF2, (void **)&g->SG, (void **)&g->QS, (void **)&g->KS, (void **)&g->VS,
                     (void **)&g->DQ, (void **)&g->DK, (void **)&g->DV, (void **)&g->band.S, (void **)&g->band.dP,
                     (void **)&g->band.P, (void **)&g->band.dS};
    size_t nbuf = sizeof sizes / sizeof sizes[0], offs[sizeof sizes / sizeof sizes[0]], scratch = 0;
    for (size_t i = 0; i < nbuf; i++) offs[i] = scratch, scratch += (sizes[i] + 255) / 256 * 256;
    size_t chunk = ((size_t)2 << 30) / ((size_t)s->V * 2);
    g->chunk = (int)(chunk < 1 ? 1 : chunk > N ? N : chunk);
    size_t lbytes = (size_t)g->chunk * s->V * 2;
    g->ws = GALLOC(g, char, scratch > lbytes ? scratch : lbytes);
    g->logits = (bf16 *)g->ws;
    for (size_t i = 0; i < nbuf; i++) *bufs[i] = sizes[i] ? (void *)(g->ws + offs[i]) : NULL;
    g->KS += pad * maxkd;
    if (g->VS) g->VS += pad * maxkd;
    g->zd_kept = s->d;
    gs_blas_init();
    hipCheck(hipDeviceSynchronize());
    return g;
}

void gpu_free(GpuModel *g) {
    if (!g) return;
    void *dev[] = {g->w, g->gw, g->m, g->v, g->zero_rng, g->prod_rng, g->wb, g->seg_off, g->seg_flag, g->xL, g->r_f,
                   g->xf, g->tok, g->tgt, g->row_loss, g->DXF, g->Di, g->part, g->sumsq, g->ws, g->zl, g->zh, g->zf,
                   g->zd, g->dzl, g->dzh, g->dzf, g->dzd, g->hc};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
        if (dev[i]) hipCheck(hipFree(dev[i]));
    for (int l = 0; l < g->s.L; l++) {
        LayerBuf *a = &g->lb[l];
        void *p[] = {a->r_in, a->qkv - (size_t)g->pad * qkv_cols(&g->s, &g->s.layer[l]), a->rq, a->rk, a->rv, a->att, a->lse, a->o, a->r_pa, a->r_pf, a->gu, a->f,
                     a->r_pff};
        for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
            if (p[i]) hipCheck(hipFree(p[i]));
        int shared = 0;
        for (int q = 0; q < l; q++) shared |= g->rope[q] == g->rope[l];
        if (!shared) hipCheck(hipFree(g->rope[l]));
    }
    free(g->lb), free(g->rope), free(g->row_loss_h), free(g->zl_host), free(g->s.tensor_off), free(g->s.tensor_flag);
    free(g);
}

// the AdamW moments, zero, at the first update (or the first upload of a resumed state)
static void adam_alloc(GpuModel *g) {
    size_t n = g->s.total;
    g->m = GALLOC(g, float, n);
    g->v = GALLOC(g, float, n);
    hipCheck(hipMemset(g->m, 0, sizeof(float) * n));
    hipCheck(hipMemset(g->v, 0, sizeof(float) * n));
}

void gpu_copy(GpuModel *g, int what, size_t off, size_t n, float *host, int to_device) {
    if (off + n > g->s.total) fail_msg("gpu_copy: a range outside the parameter table");
    if (what == GPU_GRADS) grads_materialize(g);
    if ((what == GPU_ADAM_M || what == GPU_ADAM_V) && !g->m) {
        if (!to_device) {
            memset(host, 0, sizeof(float) * n);
            return;
        }
        adam_alloc(g);
    }
    float *dev = (what == GPU_WEIGHTS ? g->w : what == GPU_GRADS ? g->gw : what == GPU_ADAM_M ? g->m : g->v) + off;
    if (!to_device) {
        hipCheck(hipMemcpy(host, dev, sizeof(float) * n, hipMemcpyDeviceToHost));
        return;
    }
    hipCheck(hipMemcpy(dev, host, sizeof(float) * n, hipMemcpyHostToDevice));
    if (what == GPU_WEIGHTS) {
        k_f32_to_bf16<<<grid_for(n), 256>>>(g->wb + off, g->w + off, n);
        hipCheckLaunch();
    }
}
void gpu_upload(GpuModel *g, const float *w) { gpu_copy(g, GPU_WEIGHTS, 0, g->s.total, (float *)w, 1); }
void gpu_download(GpuModel *g, float *w) { gpu_copy(g, GPU_WEIGHTS, 0, g->s.total, w, 0); }
void gpu_download_grads(GpuModel *g, float *gw) { gpu_copy(g, GPU_GRADS, 0, g->s.total, gw, 0); }

// model.h model_init_random: matrices N(0, std), norms at identity (1 - off), layer_scalar 1
void gpu_init_random(GpuModel *g, uint64_t seed, float std) {
    const GpuSpec *s = &g->s;
    for (int i = 0; i < s->ntensor; i++) {
        size_t off = s->tensor_off[i], n = s->tensor_off[i + 1] - off;
        int norm = s->tensor_flag[i] & 4, frozen = s->tensor_flag[i] & 2;
        float value = frozen ? 1.0f : 1.0f - s->norm_off;
        k_init<<<grid_for(n), 256>>>(g->w + off, n, seed + (uint64_t)i, norm ? 0.0f : std, value);
        hipCheckLaunch();
    }
    k_f32_to_bf16<<<grid_for(s->total), 256>>>(g->wb, g->w, s->total);
    hipCheckLaunch();
}

void gpu_zero_grad(GpuModel *g) {
    const GpuSpec *s = &g->s;
    if (g->nzero) {
        k_zero_ranges<<<dim3(128, g->nzero), 256>>>(g->gw, g->zero_rng);
        hipCheckLaunch();
    }
    g->fresh_layers = g->fresh_head = 1;
    if (g->dzl) hipCheck(hipMemset(g->dzl, 0, sizeof(float) * s->L));
    if (g->dzh) hipCheck(hipMemset(g->dzh, 0, sizeof(float) * s->L * s->H));
    if (g->dzf) hipCheck(hipMemset(g->dzf, 0, sizeof(float) * (size_t)s->L * s->F));
    if (g->dzd) hipCheck(hipMemset(g->dzd, 0, sizeof(float) * s->d));
}

void gpu_set_attention(GpuModel *g, int mode) { g->use_mma = mode; }
size_t gpu_bytes(const GpuModel *g) { return g->bytes; }
void gpu_memory(size_t *used, size_t *total) {
    size_t fr = 0, tot = 0;
    hipCheck(hipMemGetInfo(&fr, &tot));
    *used = tot - fr, *total = tot;
}
void gpu_sync(void) { hipCheck(hipDeviceSynchronize()); }

// =================================================================================================
// Helpers shared by forward and backward
// =================================================================================================

static void norm_fwd_f32(GpuModel *g, bf16 *y, float *rstd, const float *x, size_t wofs) {
    const GpuSpec *s = &g->s;
    norm_fwd<float>(y, rstd, x, g->w + wofs, s->norm_off, g->zd, 1.0f / g->zd_kept, s->eps, s->d, g->N);
    hipCheckLaunch();
}
// out = (res + RMSNorm(x; wofs)·zd·gate)·ls; y2 != NULL: also y2 = RMSNorm(out; wofs2)·zd (rstd2)
static void norm_add(GpuModel *g, float *out, float *rstd, const float *res, const bf16 *x, size_t wofs, float gate,
                     const float *ls, bf16 *y2, float *rstd2, size_t wofs2) {
    const GpuSpec *s = &g->s;
    norm_add_fwd(out, rstd, res, x, g->w + wofs, s->norm_off, g->zd, 1.0f / g->zd_kept, gate, ls, s->eps, s->d, g->N, y2,
                 rstd2, g->w + wofs2);
    hipCheckLaunch();
}

// Backward of an RMSNorm (model.h rmsnorm_backward): dx (ACC: +=) from dy, then the norm's weight /
// hidden-mask / layer-gate gradients from t_c = Σ_n dy x r
template <typename TY, typename TX, typename TO, bool ACC>
static void norm_back(GpuModel *g, TO *dx, const TY *dy, const TX *x, const float *r, size_t wofs, float *dgate, float gate) {
    const GpuSpec *s = &g->s;
    int nrb = norm_bwd<TY, TX, TO, ACC>(dx, g->part, dy, x, r, g->w + wofs, s->norm_off, g->zd, 1.0f / g->zd_kept, gate,
                                        s->d, g->N);
    hipCheckLaunch();
    norm_grads_finish(g->part, nrb, s->d, g->gw + wofs, g->dzd, dgate, g->w + wofs, s->norm_off, g->zd, gate);
    hipCheckLaunch();
}

// q, k (Gemma 4: v) after their per-head norms and RoPE, from the raw projections, into QS, KS (VS)
static void qkv_norm_rope(GpuModel *g, int l) {
    const GpuSpec *s = &g->s;
    const GpuLayerSpec *ls = &s->layer[l];
    LayerBuf *a = &g->lb[l];
    int N = g->N, T = g->T, H = s->H, D = ls->D, K = ls->K, nqkv = qkv_cols(s, ls), vcol = v_col(s, ls);
    float off = s->norm_off;
    headnorm_rope_fwd(g->QS, a->rq, a->qkv, nqkv, 0, H, D, g->w + ls->q_norm, off, g->rope[l], T, s->eps, N);
    headnorm_rope_fwd(g->KS, a->rk, a->qkv, nqkv, H * D, K, D, g->w + ls->k_norm, off, g->rope[l], T, s->eps, N);
    if (s->arch == 4) headnorm_rope_fwd(g->VS, a->rv, a->qkv, nqkv, vcol, K, D, NULL, 0.0f, NULL, T, s->eps, N);
    hipCheckLaunch();
}

// gate|up = m Wgu^T (m in S1) into the layer's buffer, or into SG where the layer recomputes it
static bf16 *gate_up(GpuModel *g, int l) {
    const GpuSpec *s = &g->s;
    bf16 *gu = g->lb[l].rec ? g->SG : g->lb[l].gu;
    gs_gemm(0, 1, g->N, 2 * s->F, s->d, 1.0f, g->S1, GS_BF16, s->d, g->wb + s->layer[l].wgate, GS_BF16, s->d, 0.0f, gu,
            GS_BF16, 2 * s->F);
    return gu;
}

static AttnFwd attn_args(GpuModel *g, int l) {
    const GpuSpec *s = &g->s;
    const GpuLayerSpec *ls = &s->layer[l];
    LayerBuf *a = &g->lb[l];
    int H = s->H, D = ls->D, K = ls->K, nqkv = qkv_cols(s, ls), vcol = v_col(s, ls);
    AttnFwd af;
    af.q = g->QS, af.ldq = H * D, af.k = g->KS, af.ldk = K * D;
    if (s->arch == 4) af.v = g->VS, af.ldv = K * D;
    else af.v = a->qkv + vcol, af.ldv = nqkv;  // Gemma 3: v is the raw projection
    af.o = a->att, af.ldo = H * D, af.lse = a->lse;
    af.B = g->B, af.T = g->T, af.H = H, af.K = K, af.D = D, af.window = ls->full ? 0 : s->W;
    af.scale = s->attn_scale, af.softcap = s->attn_softcap;
    return af;
}

// =================================================================================================
// Forward (model.h model_forward)
// =================================================================================================

float gpu_forward(GpuModel *g, const int *tok, const int *tgt, int want_grad) {
    const GpuSpec *s = &g->s;
    int N = g->N, d = s->d, H = s->H, F = s->F;
    for (int n = 0; n < N; n++)
        if (tok[n] < 0 || tok[n] >= s->V) {
            fprintf(stderr, "error: token id %d at position %d is outside the vocabulary [0, %d)\n", tok[n], n, s->V);
            exit(1);
        }
    g->prof_last = wall();
    hipCheck(hipMemcpy(g->tok, tok, sizeof(int) * N, hipMemcpyHostToDevice));
    g->have_targets = tgt != NULL && want_grad, g->n_valid = 0;
    if (tgt) {
        for (int n = 0; n < N; n++) g->n_valid += tgt[n] >= 0;
        hipCheck(hipMemcpy(g->tgt, tgt, sizeof(int) * N, hipMemcpyHostToDevice));
    }
    k_embed_fwd<<<grid_for((size_t)N * d), 256>>>(g->xL, g->wb + s->embed, g->tok, g->zd, s->embed_scale, N, d);
    hipCheckLaunch();
    prof(g, P_ELEM);
    for (int l = 0; l < s->L; l++) {
        const GpuLayerSpec *ls = &s->layer[l];
        LayerBuf *a = &g->lb[l];
        int D = ls->D, nqkv = qkv_cols(s, ls);
        float gate = g->zl ? g->zl_host[l] : 1.0f;
        // a = RMSNorm(x; in) · zd (after layer 0 the previous layer's last kernel made it); q,k,v = a Wqkv^T (one
        // product: the three weights are adjacent)
        if (l == 0) norm_fwd_f32(g, g->S1, a->r_in, g->xL, ls->in_norm);
        prof(g, P_NORM);
        gs_gemm(0, 1, N, nqkv, d, 1.0f, g->S1, GS_BF16, d, g->wb + ls->wq, GS_BF16, d, 0.0f, a->qkv, GS_BF16, nqkv);
        prof(g, P_GEMM);
        // per-head q/k norms, then RoPE; Gemma 4: weightless v norm
        qkv_norm_rope(g, l);
        prof(g, P_NORM);
        AttnFwd af = attn_args(g, l);
        attn_forward(af, g->use_mma);
        prof(g, P_ATTN);
        // o = (att · head mask) Wo^T
        const bf16 *attm = a->att;
        if (g->zh) {
            k_head_gate<<<grid_for((size_t)N * H * D), 256>>>(g->SF1, a->att, g->zh + (size_t)l * H, N, H, D);
            hipCheckLaunch();
            attm = g->SF1;
        }
        gs_gemm(0, 1, N, d, H * D, 1.0f, attm, GS_BF16, H * D, g->wb + ls->wo, GS_BF16, H * D, 0.0f, a->o, GS_BF16, d);
        prof(g, P_GEMM);
        // x2 = x + RMSNorm(o; post_attn)·zd·gate;  m = RMSNorm(x2; pre_ffn)·zd
        norm_add(g, g->X2, a->r_pa, g->xL, a->o, ls->post_attn, gate, NULL, g->S1, a->r_pf, ls->pre_ffn);
        prof(g, P_NORM);
        // gate|up = m Wgu^T; h = gelu(gate)·up·zf; f = h Wd^T
        const bf16 *gu = gate_up(g, l);
        prof(g, P_GEMM);
        gelu_fwd(g->SF1, gu, g->zf ? g->zf + (size_t)l * F : NULL, N, F);
        hipCheckLaunch();
        prof(g, P_ELEM);
        gs_gemm(0, 1, N, d, F, 1.0f, g->SF1, GS_BF16, F, g->wb + ls->wdown, GS_BF16, F, 0.0f, a->f, GS_BF16, d);
        prof(g, P_GEMM);
        // x_next = (x2 + RMSNorm(f; post_ffn)·zd·gate) [· layer_scalar], and the next norm of it: the next layer's
        // input norm, or the final norm into xf
        int last = l + 1 == s->L;
        norm_add(g, g->xL, a->r_pff, g->X2, a->f, ls->post_ffn, gate,
                 s->arch == 4 ? g->w + ls->layer_scalar : NULL, last ? g->xf : g->S1, last ? g->r_f : g->lb[l + 1].r_in,
                 last ? s->final_norm : s->layer[l + 1].in_norm);
        prof(g, P_NORM);
    }
    if (!tgt) return 0.0f;
    // the tied head, chunk by chunk: bf16 logits -> loss and (in place) d loss / d logits -> dxf, d embedding
    float inv_n = g->n_valid ? 1.0f / g->n_valid : 0.0f;
    for (int n0 = 0; n0 < N; n0 += g->chunk) {
        int rows = N - n0 < g->chunk ? N - n0 : g->chunk;
        const bf16 *xf = g->xf + (size_t)n0 * d;
        gs_gemm(0, 1, rows, s->V, d, 1.0f, xf, GS_BF16, d, g->wb + s->embed, GS_BF16, d, 0.0f, g->logits, GS_BF16, s->V);
        prof(g, P_GEMM);
        k_xent<<<rows, 1024>>>(g->logits, s->V, g->tgt + n0, s->final_softcap, inv_n, g->row_loss + n0, want_grad);
        hipCheckLaunch();
        prof(g, P_HEAD);
        if (want_grad) {
            gs_gemm(0, 0, rows, d, s->V, 1.0f, g->logits, GS_BF16, s->V, g->wb + s->embed, GS_BF16, d, 0.0f,
                    g->DXF + (size_t)n0 * d, GS_F32, d);
            gs_gemm(1, 0, s->V, d, rows, 1.0f, g->logits, GS_BF16, s->V, xf, GS_BF16, d, g->fresh_head ? 0.0f : 1.0f,
                    g->gw + s->embed, GS_F32, d);
            g->fresh_head = 0;
            prof(g, P_GEMM);
        }
    }
    hipCheck(hipMemcpy(g->row_loss_h, g->row_loss, sizeof(float) * N, hipMemcpyDeviceToHost));
    double loss = 0;
    for (int n = 0; n < N; n++) loss += g->row_loss_h[n];
    return g->n_valid ? (float)(loss / g->n_valid) : 0.0f;
}

// =================================================================================================
// Backward (model.h model_backward). DX holds d loss / d (residual stream) going down the layers.
// =================================================================================================

void gpu_backward(GpuModel *g) {
    const GpuSpec *s = &g->s;
    if (!g->have_targets) fail_msg("gpu_backward needs a gpu_forward with targets and want_grad before each call");
    g->have_targets = 0;  // the residual stream is taken back in place below
    int N = g->N, B = g->B, T = g->T, d = s->d, H = s->H, F = s->F;
    if (g->fresh_head) grads_materialize(g);  // the embedding's gradient is added to below
    const float gb = g->fresh_layers ? 0.0f : 1.0f;  // the weight products: overwrite fresh gradients, else add
    float off = s->norm_off;
    size_t Nd = (size_t)N * d;
    g->prof_last = wall();
    // final norm: DX = its input gradient
    norm_back<float, float, float, false>(g, g->DX, g->DXF, g->xL, g->r_f, s->final_norm, NULL, 1.0f);
    prof(g, P_NORM);
    for (int l = s->L - 1; l >= 0; l--) {
        const GpuLayerSpec *ls = &s->layer[l];
        LayerBuf *a = &g->lb[l];
        int D = ls->D, K = ls->K, nqkv = qkv_cols(s, ls), vcol = v_col(s, ls);
        int HD = H * D;
        float gate = g->zl ? g->zl_host[l] : 1.0f;
        float *dgate = g->dzl ? g->dzl + l : NULL;
        const float *zf = g->zf ? g->zf + (size_t)l * F : NULL;
        // Gemma 4: x_next = s·x3; s (layer_scalar) is frozen, so only dx3 = s·dx
        if (s->arch == 4) {
            k_scale_f32<<<grid_for(Nd), 256>>>(g->DX, g->w + ls->layer_scalar, Nd);
            hipCheckLaunch();
        }
        // the layer's residual stream back from the one after it: xL becomes x (its input), X2 = x2, and the norms
        // m = RMSNorm(x2; pre_ffn) into S1, a = RMSNorm(x; in) into S3 (for dWgu, dWqkv below)
        residual_undo(g->xL, g->X2, g->S1, g->S3, a->f, a->o, a->r_pff, a->r_pa, a->r_pf, a->r_in, g->w + ls->post_ffn,
                      g->w + ls->post_attn, g->w + ls->pre_ffn, g->w + ls->in_norm, off, g->zd, gate,
                      s->arch == 4 ? g->w + ls->layer_scalar : NULL, d, N);
        hipCheckLaunch();
        // --- MLP branch: x_next = x2 + PN(f)·zd·gate
        norm_back<float, bf16, bf16, false>(g, g->S2, g->DX, a->f, a->r_pff, ls->post_ffn, dgate, gate);
        prof(g, P_NORM);
        bf16 *gu = a->rec ? gate_up(g, l) : a->gu;  // its gradient replaces it below (d gate | d up)
        gs_gemm(0, 0, N, F, d, 1.0f, g->S2, GS_BF16, d, g->wb + ls->wdown, GS_BF16, F, 0.0f, g->SF2, GS_BF16, F);
        prof(g, P_GEMM);
        if (zf) {  // d/dz_ffn = Σ_n dhm · h
            int nrb = (int)gs_cdiv(N, COLSUM_ROWS);
            TermGelu tg = {g->SF2, gu, F};
            k_colsum<<<dim3(gs_cdiv(F, 32), nrb), dim3(32, 8)>>>(g->part, tg, N, F);
            colsum_finish(g->part, nrb, F, 1, 1.0f, g->dzf + (size_t)l * F);
            hipCheckLaunch();
        }
        gelu_bwd(gu, g->SF1, g->SF2, gu, zf, N, F);  // in place; hm rewritten into SF1
        hipCheckLaunch();
        prof(g, P_ELEM);
        gs_gemm(1, 0, d, F, N, 1.0f, g->S2, GS_BF16, d, g->SF1, GS_BF16, F, gb, g->gw + ls->wdown, GS_F32, F);
        gs_gemm(1, 0, 2 * F, d, N, 1.0f, gu, GS_BF16, 2 * F, g->S1, GS_BF16, d, gb, g->gw + ls->wgate, GS_F32, d);
        gs_gemm(0, 0, N, d, 2 * F, 1.0f, gu, GS_BF16, 2 * F, g->wb + ls->wgate, GS_BF16, d, 0.0f, g->S2, GS_BF16, d);
        prof(g, P_GEMM);
        // m = PN(x2): DX becomes d/dx2 (residual + this)
        norm_back<bf16, float, float, true>(g, g->DX, g->S2, g->X2, a->r_pf, ls->pre_ffn, NULL, 1.0f);
        // --- attention branch: x2 = x + PN(o)·zd·gate
        norm_back<float, bf16, bf16, false>(g, g->S2, g->DX, a->o, a->r_pa, ls->post_attn, dgate, gate);
        const bf16 *attm = a->att;
        if (g->zh) {
            k_head_gate<<<grid_for((size_t)N * HD), 256>>>(g->SF1, a->att, g->zh + (size_t)l * H, N, H, D);
            hipCheckLaunch();
            attm = g->SF1;
        }
        prof(g, P_NORM);
        gs_gemm(1, 0, d, HD, N, 1.0f, g->S2, GS_BF16, d, attm, GS_BF16, HD, gb, g->gw + ls->wo, GS_F32, HD);
        gs_gemm(0, 0, N, HD, d, 1.0f, g->S2, GS_BF16, d, g->wb + ls->wo, GS_BF16, HD, 0.0f, g->SF2, GS_BF16, HD);
        prof(g, P_GEMM);
        if (g->zh) {  // d/dzh = Σ_n Σ_i datt · att per head, then datt ·= zh
            int nrb = (int)gs_cdiv(N, COLSUM_ROWS);
            TermDyXR<bf16, bf16> th = {g->SF2, HD, a->att, HD, NULL};
            k_colsum<<<dim3(gs_cdiv(HD, 32), nrb), dim3(32, 8)>>>(g->part, th, N, HD);
            colsum_finish(g->part, nrb, HD, D, 1.0f, g->dzh + (size_t)l * H);
            k_head_gate<<<grid_for((size_t)N * HD), 256>>>(g->SF2, g->SF2, g->zh + (size_t)l * H, N, H, D);
            hipCheckLaunch();
        }
        // attention backward -> dq (fp32 DQ), dk (DK), dv (Gemma 3: straight into dqkv's v columns), from q, k
        // (and Gemma 4's v) recomputed
        qkv_norm_rope(g, l);
        bf16 *dqkv = g->SF1;
        AttnBwd ab;
        ab.f = attn_args(g, l);
        ab.dout = g->SF2, ab.lddo = HD, ab.Di = g->Di, ab.dq = g->DQ, ab.lddq = HD, ab.dk = g->DK, ab.lddk = K * D;
        if (s->arch == 4) ab.dv = g->DV, ab.lddv = K * D;
        else ab.dv = dqkv + vcol, ab.lddv = nqkv;
        k_attn_dot<<<gs_cdiv((size_t)N * H, 4), 4 * GS_WARP>>>(g->Di, g->SF2, HD, a->att, HD, B, T, H, D);
        hipCheckLaunch();
        attn_backward(ab, g->use_mma, &g->band);
        prof(g, P_ATTN);
        // RoPE and the per-head norms backward into dqkv; q_norm / k_norm weight gradients
        int nbq = headnorm_rope_bwd<float, false>(dqkv, g->part, g->DQ, a->qkv, nqkv, 0, H, D, a->rq, g->w + ls->q_norm,
                                                  off, g->rope[l], T, N);
        hipCheckLaunch();
        colsum_finish(g->part, nbq, D, 1, 1.0f, g->gw + ls->q_norm);
        int nbk = headnorm_rope_bwd<bf16, false>(dqkv, g->part, g->DK, a->qkv, nqkv, H * D, K, D, a->rk, g->w + ls->k_norm,
                                                 off, g->rope[l], T, N);
        hipCheckLaunch();
        colsum_finish(g->part, nbk, D, 1, 1.0f, g->gw + ls->k_norm);
        if (s->arch == 4) {  // weightless v norm, no RoPE; K=V layers add into k's columns
            if (ls->hasv)
                headnorm_rope_bwd<bf16, false>(dqkv, NULL, g->DV, a->qkv, nqkv, vcol, K, D, a->rv, NULL, 0.0f, NULL, T, N);
            else headnorm_rope_bwd<bf16, true>(dqkv, NULL, g->DV, a->qkv, nqkv, vcol, K, D, a->rv, NULL, 0.0f, NULL, T, N);
        }
        hipCheckLaunch();
        // dWqkv += dqkv^T a (a recomputed above); da = dqkv Wqkv
        gs_gemm(1, 0, nqkv, d, N, 1.0f, dqkv, GS_BF16, nqkv, g->S3, GS_BF16, d, gb, g->gw + ls->wq, GS_F32, d);
        gs_gemm(0, 0, N, d, nqkv, 1.0f, dqkv, GS_BF16, nqkv, g->wb + ls->wq, GS_BF16, d, 0.0f, g->S2, GS_BF16, d);
        prof(g, P_GEMM);
        norm_back<bf16, float, float, true>(g, g->DX, g->S2, g->xL, a->r_in, ls->in_norm, NULL, 1.0f);
        prof(g, P_NORM);
    }
    // embedding: x0 = E[tok]·scale·zd
    k_embed_bwd<<<grid_for(Nd), 256>>>(g->gw + s->embed, g->DX, g->tok, g->zd, s->embed_scale, N, d);
    hipCheckLaunch();
    if (g->dzd) {
        int nrb = (int)gs_cdiv(N, COLSUM_ROWS);
        TermEmbed te = {g->DX, g->wb + s->embed, g->tok, d};
        k_colsum<<<dim3(gs_cdiv(d, 32), nrb), dim3(32, 8)>>>(g->part, te, N, d);
        colsum_finish(g->part, nrb, d, 1, s->embed_scale, g->dzd);
        hipCheckLaunch();
    }
    g->fresh_layers = 0;
    prof(g, P_ELEM);
}

// =================================================================================================
// Optimizer
// =================================================================================================

double gpu_grad_sumsq(GpuModel *g) {
    unsigned nb = 1024;
    grads_materialize(g);
    k_sumsq<<<nb, 256>>>(g->sumsq, g->gw, g->s.total);
    hipCheckLaunch();
    double h[1024], s = 0;
    hipCheck(hipMemcpy(h, g->sumsq, sizeof(double) * nb, hipMemcpyDeviceToHost));
    for (unsigned i = 0; i < nb; i++) s += h[i];
    return s;
}

void gpu_adamw(GpuModel *g, float lr, float b1, float b2, float eps, float wd, int step, float gscale) {
    size_t n = g->s.total;
    grads_materialize(g);
    g->prof_last = wall();
    if (!g->m) adam_alloc(g);
    float bc1 = 1.0f - powf(b1, (float)step), bc2s = sqrtf(1.0f - powf(b2, (float)step));
    k_adamw<<<grid_for(n), 256>>>(g->w, g->wb, g->gw, g->m, g->v, n, g->seg_off, g->seg_flag, g->s.ntensor, lr, b1, b2,
                                  eps, wd, bc1, bc2s, gscale);
    hipCheckLaunch();
    prof(g, P_OPT);
}

// =================================================================================================
// Masks (pruning)
// =================================================================================================

static void set_mask(GpuModel *g, float **dev, float **grad, const float *host, size_t n) {
    if (!host) {
        if (*dev) hipCheck(hipFree(*dev)), hipCheck(hipFree(*grad)), g->bytes -= 2 * sizeof(float) * n;
        *dev = *grad = NULL;
        return;
    }
    if (!*dev) {
        *dev = GALLOC(g, float, n);
        *grad = GALLOC(g, float, n);
        hipCheck(hipMemset(*grad, 0, sizeof(float) * n));
    }
    hipCheck(hipMemcpy(*dev, host, sizeof(float) * n, hipMemcpyHostToDevice));
}

void gpu_set_masks(GpuModel *g, const float *zl, const float *zh, const float *zf, const float *zd) {
    const GpuSpec *s = &g->s;
    set_mask(g, &g->zl, &g->dzl, zl, s->L);
    set_mask(g, &g->zh, &g->dzh, zh, (size_t)s->L * s->H);
    set_mask(g, &g->zf, &g->dzf, zf, (size_t)s->L * s->F);
    set_mask(g, &g->zd, &g->dzd, zd, s->d);
    free(g->zl_host);
    g->zl_host = NULL;
    if (zl) {
        g->zl_host = (float *)malloc(sizeof(float) * s->L);
        memcpy(g->zl_host, zl, sizeof(float) * s->L);
    }
    g->zd_kept = s->d;
    if (zd) {
        g->zd_kept = 0;
        for (int i = 0; i < s->d; i++) g->zd_kept += zd[i] != 0.0f;
        if (g->zd_kept == 0) fail_msg("the hidden mask removed every dimension");
    }
}

void gpu_get_mask_grads(GpuModel *g, float *dzl, float *dzh, float *dzf, float *dzd) {
    const GpuSpec *s = &g->s;
    if (dzl && g->dzl) hipCheck(hipMemcpy(dzl, g->dzl, sizeof(float) * s->L, hipMemcpyDeviceToHost));
    if (dzh && g->dzh) hipCheck(hipMemcpy(dzh, g->dzh, sizeof(float) * s->L * s->H, hipMemcpyDeviceToHost));
    if (dzf && g->dzf) hipCheck(hipMemcpy(dzf, g->dzf, sizeof(float) * (size_t)s->L * s->F, hipMemcpyDeviceToHost));
    if (dzd && g->dzd) hipCheck(hipMemcpy(dzd, g->dzd, sizeof(float) * s->d, hipMemcpyDeviceToHost));
}

void gpu_hard_concrete(GpuModel *g, const float *la, const float *u, float *z, float *dzdla, size_t n) {
    if (g->hc_n < n) {
        if (g->hc) hipCheck(hipFree(g->hc)), g->bytes -= sizeof(float) * 4 * g->hc_n;
        g->hc = GALLOC(g, float, 4 * n);
        g->hc_n = n;
    }
    float *dla = g->hc, *du = dla + n, *dz = du + n, *dd = dz + n;
    hipCheck(hipMemcpy(dla, la, sizeof(float) * n, hipMemcpyHostToDevice));
    hipCheck(hipMemcpy(du, u, sizeof(float) * n, hipMemcpyHostToDevice));
    k_hard_concrete<<<grid_for(n), 256>>>(dz, dd, dla, du, n);
    hipCheckLaunch();
    hipCheck(hipMemcpy(z, dz, sizeof(float) * n, hipMemcpyDeviceToHost));
    hipCheck(hipMemcpy(dzdla, dd, sizeof(float) * n, hipMemcpyDeviceToHost));
}

void gpu_profile_print(GpuModel *g) {
    if (!g->prof) return;
    double tot = 0;
    for (int i = 0; i < P_N; i++) tot += g->prof_t[i];
    printf("profile (GS_PROFILE=1, synchronised after each part; total %.1f ms):\n", tot * 1e3);
    for (int i = 0; i < P_N; i++)
        printf("  %-16s %9.1f ms  %5.1f%%\n", prof_name[i], g->prof_t[i] * 1e3, tot > 0 ? 100 * g->prof_t[i] / tot : 0);
    memset(g->prof_t, 0, sizeof g->prof_t);
}
