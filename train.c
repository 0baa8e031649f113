// train.c — training on CPU: from scratch (the embedded default's teacher), full fine-tuning of a
// source model, and the continued pretraining that recovers a pruned one (Sheared-LLaMA: dynamic
// batch loading, optional distillation). Read top to bottom:
//   1. Settings      every flag in one table (type, default, help); printed at start, saved in checkpoints
//   2. Data          the domain mixture: static weights, or dynamic batch loading against reference losses
//   3. Model         --model DIR, --config FILE --init random, lottery tickets A/B/C on a pruned shape
//   4. Optimizers    AdamW (fp32 states), 8-bit AdamW (block-wise quantized states), Muon: in model.h
//   5. Distillation  α·CE + (1−α)·τ²·KL(teacher ‖ student)
//   6. Step          gradient accumulation, clipping, schedule, update
//   7. Eval and logs per-domain validation loss and perplexity, JSON/CSV logs, PNG curves
//   8. Checkpoints   one directory, swapped in atomically; --resume continues bit for bit
//   9. Generation    a few lines of text from a model (plain forward passes, no KV cache)
//  10. main
//
//   ./train --config tiny.json --data data/shards --out runs/teacher --steps 2000
//   ./train --model runs/pruned/model --data data/shards --out runs/cpt --mix dynamic --ref-loss ref.json
//   ./train --out runs/cpt --resume
//   ./train --model runs/teacher/checkpoint --generate "The " --tokens 200
#include "model.h"
#include "shape.h"
#include "data/mixture.h"
#include "data/tokenizer.h"
#include "plot.h"
#include <limits.h>
#include <stddef.h>

// ================================================================================================
// 1. Settings: one table drives --help, parsing, the printout at start and what a checkpoint saves
// ================================================================================================

typedef struct {
    const char *model, *config, *init, *lottery, *report, *source, *data, *out;  // what to train, where
    int resume, force;
    int steps, batch, seq, grad_accum, warmup, seed;                              // batches and schedule
    const char *recipe;
    double lr, min_lr_frac, weight_decay, grad_clip;
    const char *optimizer;                                                        // optimizer
    double beta1, beta2, eps, muon_momentum;
    const char *mix, *weights, *ref_loss, *ref_model;                             // data mixture
    int dbl_clip;
    double dbl_c;
    int eval_every, eval_batches, save_every;                                     // eval, checkpoints
    const char *dtype;
    const char *teacher;                                                          // distillation
    double alpha, temperature;
    const char *generate, *tokenizer;                                             // generation
    int tokens, top_k;
    StepFlags step;                                                               // --device, the GPU's options, --zero
    int stop_at;
} Opts;

#define OPT(f) offsetof(Opts, f)
static const Flag flags[] = {
    {"model", F_STR, OPT(model), "", NULL, SAVE_RUN, "Hugging Face model directory to start from (fine-tune, continue; lottery A, C)"},
    {"config", F_STR, OPT(config), "", NULL, SAVE_RUN, "config.json-style shape to train from scratch (with --init random)"},
    {"init", F_STR, OPT(init), "random", "random", SAVE_RUN, "init with --config: random = Gemma-style, N(0, 0.02) matrices, norms at identity"},
    {"lottery", F_STR, OPT(lottery), "", "|A|B|C", SAVE_RUN, "lottery ticket on a pruned shape: A = --model's pruned weights; B = "
                                                          "--source's weights restricted to --report's survivors; C = random init of that shape"},
    {"report", F_STR, OPT(report), "", NULL, SAVE_RUN, "prune_report.json of the pruning run (lottery B; C without --model)"},
    {"source", F_STR, OPT(source), "", NULL, SAVE_RUN, "the model that was pruned (lottery B; C without --model)"},
    {"data", F_STR, OPT(data), "data/shards", NULL, SAVE_RUN, "token shards DIR/<domain>/{train,val}.bin (make data)"},
    {"out", F_STR, OPT(out), "", NULL, SAVE_NO, "run directory: checkpoint/ (an HF model dir + optimizer + state), log.json, *.csv"},
    {"resume", F_BOOL, OPT(resume), "0", NULL, SAVE_NO, "continue --out's run from its checkpoint, exactly (same losses bit for bit)"},
    {"force", F_BOOL, OPT(force), "0", NULL, SAVE_NO, "start a new run although --out has a checkpoint (replaced at the first save)"},
    {"steps", F_INT, OPT(steps), "1000", ">= 1", SAVE_RUN, "optimizer steps in all"},
    {"batch", F_INT, OPT(batch), "8", ">= 1", SAVE_RUN, "sequences per micro-batch (B)"},
    {"seq", F_INT, OPT(seq), "256", ">= 1", SAVE_RUN, "tokens per sequence (T)"},
    {"grad-accum", F_INT, OPT(grad_accum), "1", ">= 1", SAVE_RUN, "micro-batches per optimizer step"},
    STEP_ZERO_FLAG(Opts, step),
    {"recipe", F_STR, OPT(recipe), "", "|sheared", SAVE_RUN, "sheared: continued pretraining as published (lr 1e-4, 3% "
                                       "warmup, weight decay 0, cosine to 10%); flags given explicitly win"},
    {"lr", F_FLOAT, OPT(lr), "-1", NULL, SAVE_RUN, "peak learning rate; -1: 3e-4 from scratch or lottery C, 1e-4 from weights"},
    {"warmup", F_INT, OPT(warmup), "-1", ">= -1", SAVE_RUN, "linear warmup steps; -1: 10% of --steps"},
    {"min-lr-frac", F_FLOAT, OPT(min_lr_frac), "0.1", "[0, 1]", SAVE_RUN, "the cosine schedule ends at this fraction of the peak"},
    {"weight-decay", F_FLOAT, OPT(weight_decay), "0.1", ">= 0", SAVE_RUN, "decoupled weight decay (never on norms, embedding, frozen)"},
    {"grad-clip", F_FLOAT, OPT(grad_clip), "1.0", ">= 0", SAVE_RUN, "clip the global gradient norm to this; 0: off"},
    {"optimizer", F_STR, OPT(optimizer), "adamw", "adamw|adamw8|muon", SAVE_RUN, "adamw (fp32 states) | adamw8 (8-bit "
                                                  "block-wise states) | muon (matrices; AdamW for embedding and vectors)"},
    {"beta1", F_FLOAT, OPT(beta1), "0.9", "[0, 1)", SAVE_RUN, "Adam beta1"},
    {"beta2", F_FLOAT, OPT(beta2), "0.95", "[0, 1)", SAVE_RUN, "Adam beta2"},
    {"eps", F_FLOAT, OPT(eps), "1e-8", "> 0", SAVE_RUN, "Adam epsilon"},
    {"muon-momentum", F_FLOAT, OPT(muon_momentum), "0.95", "[0, 1)", SAVE_RUN, "Muon momentum (Nesterov)"},
    {"mix", F_STR, OPT(mix), "static", "static|dynamic", SAVE_RUN, "static (fixed domain weights) | dynamic (dynamic batch loading)"},
    {"weights", F_STR, OPT(weights), "", NULL, SAVE_RUN, "JSON {\"domain\": weight}: (initial) domain weights, or a "
                                          "prune_report.json: the pruning run's final ones (as published); default uniform"},
    {"ref-loss", F_STR, OPT(ref_loss), "", NULL, SAVE_RUN, "JSON {\"domain\": loss}: reference losses for --mix dynamic"},
    {"ref-model", F_STR, OPT(ref_model), "", NULL, SAVE_RUN, "or: a model whose per-domain validation losses are the references"},
    {"dbl-clip", F_BOOL, OPT(dbl_clip), "0", NULL, SAVE_RUN, "the paper's max(loss - ref, 0) instead of the code's loss - ref"},
    {"dbl-c", F_FLOAT, OPT(dbl_c), "1e-4", "[0, 1)", SAVE_RUN, "smoothing c of the domain-weight update"},
    {"eval-every", F_INT, OPT(eval_every), "100", ">= 0", SAVE_RUN, "validation (and the dynamic weight update) every N steps; 0: at the end"},
    {"eval-batches", F_INT, OPT(eval_batches), "4", ">= 1", SAVE_RUN, "validation batches of --batch windows per domain"},
    {"save-every", F_INT, OPT(save_every), "500", ">= 0", SAVE_RUN, "checkpoint every N steps and at the end; 0: only at the end"},
    {"dtype", F_STR, OPT(dtype), "auto", "f32|bf16|auto", SAVE_RUN, "saved weights: f32 | bf16 (fp32 master kept in "
                                         "optimizer.safetensors) | auto (what the model was loaded as; f32 for a random init)"},
    {"teacher", F_STR, OPT(teacher), "", NULL, SAVE_RUN, "distill from this HF model directory (same vocabulary)"},
    {"alpha", F_FLOAT, OPT(alpha), "0.5", "[0, 1]", SAVE_RUN, "distillation: weight of the cross-entropy; 1 - alpha goes to the KL term"},
    {"temperature", F_FLOAT, OPT(temperature), "1.0", ">= 0", SAVE_RUN, "distillation temperature tau; with --generate the "
                                                                       "sampling temperature (0: greedy)"},
    {"seed", F_INT, OPT(seed), "1", NULL, SAVE_RUN, "random seed: init (2*seed), data order (2*seed+1), sampling"},
    {"generate", F_STR, OPT(generate), "", NULL, SAVE_NO, "print a continuation of this prompt by --model (or --out's checkpoint), exit"},
    {"tokens", F_INT, OPT(tokens), "200", ">= 0", SAVE_NO, "tokens to generate"},
    {"top-k", F_INT, OPT(top_k), "0", ">= 0", SAVE_NO, "sample among the k most likely tokens; 0: all"},
    {"tokenizer", F_STR, OPT(tokenizer), "", NULL, SAVE_NO, "bytes | PATH/tokenizer.json; default: the model's tokenizer.json, else bytes"},
    {"stop-at", F_INT, OPT(stop_at), "0", ">= 0", SAVE_NO, "checkpoint at this step and exit (continue with --resume, on either device); 0: off"},
    STEP_DEVICE_FLAG(Opts, step, "cpu | gpu: steps, evaluation and AdamW (adamw, adamw8) on the GPU (bf16 compute; the "
                     "build of `make gpu`: hip/build/train); same files in and out"),
    STEP_GPU_FLAGS(Opts, step),
};
static const Cli cli = {
    "./train",
    "usage: ./train --model DIR | --config FILE.json,  --data DIR --out DIR [--steps N] [--resume] [flags]\n"
    "       ./train --model DIR --generate \"prompt\" [--tokens N --temperature T --top-k K --seed S]\n",
    flags, COUNT_OF(flags), renamed_flags, COUNT_OF(renamed_flags),
    "Writes OUT/checkpoint/ (load it with --model in every stage), OUT/log.json, OUT/log_steps.csv,\n"
    "OUT/log_eval.csv and, when plot.h can draw them, OUT/loss.png and OUT/weights.png.\n",
    NULL};
#define NFLAGS COUNT_OF(flags)

static int name_index(const char *v, const char *const *names, int n, const char *flag) {
    for (int i = 0; i < n; i++)
        if (!strcmp(v, names[i])) return i;
    char all[128] = "";
    for (int i = 0; i < n; i++) snprintf(all + strlen(all), sizeof all - strlen(all), "%s%s", i ? ", " : "", names[i]);
    fail("--%s %s is not one of: %s", flag, v, all);
}

// the data-parallel ranks (hip/comm.h): `mpirun -np N ./train ...` runs N of these processes, each with
// --batch sequences of every micro-batch; rank 0 prints and writes. One process is a world of 1.
static Comm comm = {0, 1, 0, 0, 0, NULL};

// what the table's ranges cannot say: values that depend on each other, checked once every default and
// override is in
static void opts_check(const Opts *o) {
    if (!(o->lr > 0)) fail("--lr must be > 0 (got %g)", o->lr);
    if (o->warmup < 0 || o->warmup > o->steps) fail("--warmup must be in [0, --steps] (got %d)", o->warmup);
    if (!strcmp(o->mix, "dynamic") && !*o->ref_loss && !*o->ref_model)
        fail("--mix dynamic needs reference losses: --ref-loss FILE.json or --ref-model DIR");
    if (*o->ref_loss && *o->ref_model) fail("give --ref-loss or --ref-model, not both");
    if (o->stop_at > o->steps) fail("--stop-at %d: expected a step in [1, --steps %d] (0: off)", o->stop_at, o->steps);
    if (*o->teacher && !(o->temperature > 0))
        fail("distillation needs --temperature > 0 (got %g)", o->temperature);
    if (comm_dp(&comm, o->step.zero) && *o->teacher)
        fail("--teacher (distillation) runs in one process with --zero 0, not under mpirun");
    StepOpts so = step_opts(&o->step, o->batch, o->seq, 1);
    const char *why = step_refuses(&so, NULL, name_index(o->optimizer, opt_names, 3, "optimizer"));
    if (why) fail("%s", why);
    if (so.device == DEVICE_GPU && *o->teacher)
        fail("--device gpu does not distill (--teacher); use --device cpu for distillation");
}

// ================================================================================================
// 2. Data: each training sequence draws its domain from the weights w (data/mixture.h). Static: w
//    fixed. Dynamic (Sheared-LLaMA §3): at every evaluation, per domain i,
//    Δ_i = loss_i − ref_i and w ← normalize((1 − c) softmax(ln w + Δ) + c/k) (mixture.h dbl_update).
// ================================================================================================

// {"domain": number, ...} into v[k] (NAN for a domain the file does not name); a domain that is not
// in the data is an error naming the file, the domain and the ones there are. With `inner`, a file that
// holds an object under that key (a prune_report.json's "domain_weights") is read from there.
static void read_domain_values(const char *path, const Mixture *mx, double *v, const char *what, const char *inner) {
    cJSON *j = json_read(path);
    if (!cJSON_IsObject(j)) fail("%s: expected a JSON object {\"domain\": %s, ...}", path, what);
    const cJSON *o = inner ? json_get(j, inner) : NULL;
    if (o && !cJSON_IsObject(o)) fail("%s: \"%s\" must be an object {\"domain\": %s, ...}", path, inner, what);
    if (!o && inner && json_get(j, "method"))
        fail("%s: a prune report without \"%s\" (only --method sheared with data writes them)", path, inner);
    if (!o) o = j;
    for (int i = 0; i < mx->k; i++) v[i] = NAN;
    for (const cJSON *e = o->child; e; e = e->next) {
        int d = mixture_domain(mx, e->string);
        if (d < 0) {
            char all[512] = "";
            for (int i = 0; i < mx->k; i++)
                snprintf(all + strlen(all), sizeof all - strlen(all), "%s%s", i ? ", " : "", mx->ds.name[i]);
            fail("%s names domain \"%s\", which the data has not (domains: %s); fix the file or --data", path,
                 e->string, all);
        }
        if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble))
            fail("%s: the %s of domain \"%s\" must be a number", path, what, e->string);
        v[d] = e->valuedouble;
    }
    cJSON_Delete(j);
}

static void weights_from_file(Mixture *mx, const char *path) {
    double *v = (double *)mallocCheck(sizeof(double) * (size_t)mx->k), sum = 0;
    read_domain_values(path, mx, v, "weight", "domain_weights");  // a prune report: where its DBL ended
    for (int i = 0; i < mx->k; i++) {
        if (isnan(v[i])) v[i] = 0;  // a domain left out is not sampled
        if (v[i] < 0) fail("%s: weight of domain \"%s\" is negative (%g)", path, mx->ds.name[i], v[i]);
        sum += v[i];
    }
    if (!(sum > 0)) fail("%s: the domain weights sum to 0; give at least one domain a positive weight", path);
    if (!isfinite(sum))  // 1e308 + 1e308: every weight would divide to 0
        fail("%s: the domain weights sum past the largest double; give them on a sensible scale (e.g. summing to 1)",
             path);
    for (int i = 0; i < mx->k; i++) mx->w[i] = v[i] / sum;
    free(v);
}

// per-domain validation loss of the model S holds: mean next-token CE over `batches` batches of B x ranks
// windows (split over the ranks; every rank gets every domain's loss)
static void eval_domains(const Mixture *mx, Step *S, int batches, double *loss) {
    mixture_eval_all(mx, step_eval_fn, S, S->B, S->T, batches, &comm, loss);
}

// reference losses for dynamic batch loading: a file, or a model evaluated on every domain (then
// written to OUT/ref_loss.json, to be passed as --ref-loss next time)
static double *reference_losses(const Opts *o, const Mixture *mx, int V) {
    double *ref = (double *)mallocCheck(sizeof(double) * (size_t)mx->k);
    if (*o->ref_loss) {
        read_domain_values(o->ref_loss, mx, ref, "reference loss", NULL);
        for (int i = 0; i < mx->k; i++)
            if (isnan(ref[i])) fail("%s has no reference loss for domain \"%s\"; give every domain one", o->ref_loss,
                                    mx->ds.name[i]);
        return ref;
    }
    Model rm;
    model_load(&rm, o->ref_model);
    if (rm.c.V != V) fail("--ref-model %s has vocab %d but the model trained has %d; the references must come from a "
                          "model with the same tokenizer", o->ref_model, rm.c.V, V);
    printf("| reference losses: evaluating %s on every domain ...\n", o->ref_model);
    fflush(stdout);
    StepOpts so = step_opts(&o->step, o->batch, o->seq, 0);
    so.comm = &comm;  // on a GPU, the first step opened picks this rank's device (hip/gpu.h gpu_step_open)
    Step *S = step_open(&rm, NULL, &so);
    eval_domains(mx, S, o->eval_batches, ref);
    step_close(S);
    model_free(&rm);
    return ref;
}

// ================================================================================================
// 3. Model: continue from weights, a random init of a config, or a lottery ticket of a pruned shape
//    (A: the pruned weights; B: the source's original weights restricted to the survivors listed in
//    prune_report.json, no soft-mask folding; C: a random init of the pruned shape).
// ================================================================================================

// at ZeRO `zero` >= 1 each rank draws its pieces only (model_init_random_shard: the same values)
static void model_random(Model *m, const Config *c, int seed, int zero) {
    memset(m, 0, sizeof *m);
    m->c = *c;
    m->c.scale_dtype = ST_F32;  // a fresh model is saved (and so re-loaded) in f32 unless --dtype says otherwise
    model_init_layout(m);
    if (zero > 0) model_init_random_shard(m, 2 * (uint64_t)seed, 0.02, zero, &comm);
    else model_init_random(m, 2 * (uint64_t)seed, 0.02);
    model_masks_changed(m);
}

// The shape of the pruned model (the report's survivors over the source's config) and, with m != NULL,
// lottery ticket B: the source's own weights at the survivors (shape.h's slicer, as prune.c slices), read from the
// source's files one tensor at a time (every rank holds the sliced model and one source tensor, not the source)
typedef struct {
    const Checkpoint *ck;
    const char *dir;
} FileSource;
static void file_source(void *ctx, const PEntry *se, float *buf) {
    const FileSource *s = (const FileSource *)ctx;
    st_to_f32(checkpoint_tensor(s->ck, s->dir, se), buf);
}
static void lottery_from_report(Model *m, Config *out_c, const char *report, const char *source) {
    Model src;
    Checkpoint ck = model_open(&src, source);
    Survivors sv;
    survivors_from_report(&src.c, report, &sv);
    *out_c = survivors_config(&src.c, &sv);
    FileSource fs = {&ck, source};
    if (m) slice_model_each(&src.c, &src.tab, &sv, src.c.scale_dtype, m, file_source, &fs);
    checkpoint_close(&ck);
    survivors_free(&sv);
    model_free(&src);
}

// dir's weights: at ZeRO >= 1 each rank reads its pieces only (model_load_shard)
static void load_model(Model *m, const char *dir, const Opts *o) {
    if (o->step.zero > 0) model_load_shard(m, dir, o->step.zero, &comm);
    else model_load(m, dir);
}

// Returns 1 when the model starts from trained weights (sets the default learning rate).
static int init_model(Model *m, const Opts *o) {
    if (*o->lottery) {
        static const char *kinds[] = {"A", "B", "C"};
        int k = name_index(o->lottery, kinds, 3, "lottery");
        if (k == 0) {
            if (!*o->model) fail("--lottery A trains the pruned weights: give them as --model DIR");
            load_model(m, o->model, o);
            return 1;
        }
        if (k == 1 || !*o->model) {
            if (!*o->report || !*o->source)
                fail("--lottery %s needs --report PRUNE_REPORT.json and --source DIR (the model that was pruned)%s",
                     kinds[k], k == 2 ? ", or --model DIR of the pruned model" : "");
            Config c;
            lottery_from_report(k == 1 ? m : NULL, &c, o->report, o->source);
            if (k == 2) model_random(m, &c, o->seed, o->step.zero);
            return k == 1;
        }
        Config c;  // C with --model: that model's shape, fresh weights
        char *cp = path_join(o->model, "config.json");
        if (!file_exists(cp)) fail("%s: no config.json; --lottery C takes the shape of --model DIR", o->model);
        config_load(&c, cp);
        free(cp);
        model_random(m, &c, o->seed, o->step.zero);
        return 0;
    }
    if (*o->model && *o->config) fail("give --model DIR (start from weights) or --config FILE.json (from scratch), not both");
    if (*o->model) {
        load_model(m, o->model, o);
        return 1;
    }
    if (*o->config) {
        if (strcmp(o->init, "random")) fail("--init %s is not supported (random is)", o->init);
        Config c;
        config_load(&c, o->config);
        model_random(m, &c, o->seed, o->step.zero);
        return 0;
    }
    fail("nothing to train: give --model DIR or --config FILE.json (or --out DIR --resume); see ./train --help");
}

// ================================================================================================
// 4. Optimizers: AdamW, 8-bit AdamW and Muon are model.h's (section 6), where the step of either
//    device finds them and one state format serves both; --optimizer picks one.
// ================================================================================================

// ================================================================================================
// 5. Distillation (optional): loss = α·CE(s, y) + (1 − α)·τ²·KL(softmax(t/τ) ‖ softmax(s/τ)), the mean
//    over positions, s and t the student's and teacher's logits (after the final softcap). The τ²
//    keeps the soft term's gradient scale independent of τ (Hinton et al. 2015). Gradient per logit:
//      d/ds_i = [α (p_i − 1[i = y]) + (1 − α) τ (q_i − r_i)] / N,  p = softmax(s), q = softmax(s/τ), r = softmax(t/τ)
//    times the softcap's derivative 1 − (s_i/cap)². Both models keep all N·V logits (model_forward's
//    logits_out): memory 2·N·V floats, fine for the byte vocabulary; with Gemma's 262k vocabulary use a
//    small --batch with --grad-accum. The student's forward runs without the fused head's gradient
//    (want_grad 0: its activations are kept all the same) and this head supplies m->dxf and the tied
//    embedding's gradient; then model_backward runs as usual.
// ================================================================================================

// slog [N, V] is replaced by d loss / d logit. Returns the loss; *ce, *kl get its two parts (unweighted).
static double distill_loss(float *slog, const float *tlog, const int *tgt, int N, int V, float alpha, float tau,
                           float cap, double *ce, double *kl) {
    double *row_ce = (double *)mallocCheck(sizeof(double) * (size_t)N), *row_kl = (double *)mallocCheck(sizeof(double) * (size_t)N);
    int n_valid = 0;
    for (int n = 0; n < N; n++) n_valid += tgt[n] >= 0;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *s = slog + (size_t)n * V;
        const float *t = tlog + (size_t)n * V;
        double ms = -INFINITY, mq = -INFINITY, mr = -INFINITY, zs = 0, zq = 0, zr = 0;
        for (int i = 0; i < V; i++) {
            ms = fmax(ms, s[i]);
            mq = fmax(mq, s[i] / tau);
            mr = fmax(mr, t[i] / tau);
        }
        for (int i = 0; i < V; i++) {
            zs += exp(s[i] - ms);
            zq += exp(s[i] / tau - mq);
            zr += exp(t[i] / tau - mr);
        }
        double lse = ms + log(zs), lq = mq + log(zq), lr = mr + log(zr), k = 0;
        int y = tgt[n];
        row_ce[n] = y >= 0 ? lse - s[y] : 0;
        for (int i = 0; i < V; i++) {
            double logr = t[i] / tau - lr, logq = s[i] / tau - lq, r = exp(logr);
            k += r * (logr - logq);
            double g = (1.0 - alpha) * tau * (exp(logq) - r) / N;
            if (y >= 0) g += alpha * (exp(s[i] - lse) - (i == y)) / n_valid;
            if (cap > 0) g *= 1.0 - ((double)s[i] / cap) * ((double)s[i] / cap);
            s[i] = (float)g;
        }
        row_kl[n] = k;
    }
    double sce = 0, skl = 0;
    for (int n = 0; n < N; n++) sce += row_ce[n], skl += row_kl[n];
    free(row_ce), free(row_kl);
    *ce = n_valid ? sce / n_valid : 0;
    *kl = skl / N;
    return alpha * *ce + (1.0 - alpha) * tau * tau * *kl;
}

// forward and backward of one micro-batch against the teacher; gradients accumulate into m->gw
static double distill_microbatch(Model *m, Model *teacher, const int *tok, const int *tgt, int B, int T, float alpha,
                                 float tau, float *slog, float *tlog, double *ce, double *kl) {
    int N = B * T, V = m->c.V;
    model_forward(teacher, tok, NULL, B, T, 0, tlog);
    model_alloc_grads(m);
    model_forward(m, tok, NULL, B, T, 0, slog);
    double loss = distill_loss(slog, tlog, tgt, N, V, alpha, tau, (float)m->c.final_softcap, ce, kl);
    linear_backward(m->dxf, m->g.embed, slog, m->xf, m->p.embed, N, m->c.d, V, 0);  // logits = xf E^T
    model_backward(m);
    return loss;
}

// ================================================================================================
// 6-8. The run: model, data, optimizer, history; one step; evaluation and logs; checkpoints
// ================================================================================================

typedef struct {
    int n, cap;          // steps recorded (index = step - 1)
    float *loss, *lr, *gnorm, *toks;
    int ne, ecap, k;     // evaluations; k domains
    int *estep;          // [ne]
    double *eloss, *ew;  // [ne * k] validation loss, domain weights after the update
} History;

typedef struct {
    Opts o;
    Model m, teacher;
    int has_teacher;
    Mixture mx;
    int dynamic;
    double *ref;          // [k] reference losses (dynamic)
    Optimizer opt;
    int step;             // optimizer steps done
    int *tok, *tgt;       // [B*T]
    float *slog, *tlog;   // [B*T, V] distillation logits
    int save_dtype;       // ST_F32 or ST_BF16
    History h;
    double elapsed_before;  // seconds spent by earlier invocations of this run
    Step *S;                // the device: the working weights and optimizer state, forward, backward, update
} Run;

static void grow(void **p, int *cap, int need, size_t elem) {
    if (need <= *cap) return;
    int c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    *p = realloc(*p, elem * (size_t)c);
    if (!*p) fail("out of memory growing the loss history");
    *cap = c;
}

static void history_add_step(History *h, float loss, float lr, float gnorm, float toks) {
    int c = h->cap;
    grow((void **)&h->loss, &c, h->n + 1, sizeof(float));
    c = h->cap, grow((void **)&h->lr, &c, h->n + 1, sizeof(float));
    c = h->cap, grow((void **)&h->gnorm, &c, h->n + 1, sizeof(float));
    c = h->cap, grow((void **)&h->toks, &c, h->n + 1, sizeof(float));
    h->cap = c;
    h->loss[h->n] = loss, h->lr[h->n] = lr, h->gnorm[h->n] = gnorm, h->toks[h->n] = toks;
    h->n++;
}

static void history_free(History *h) {
    free(h->loss), free(h->lr), free(h->gnorm), free(h->toks), free(h->estep), free(h->eloss), free(h->ew);
    memset(h, 0, sizeof *h);
}

static void history_add_eval(History *h, int step, const double *loss, const double *w) {
    int c = h->ecap;
    grow((void **)&h->estep, &c, h->ne + 1, sizeof(int));
    c = h->ecap, grow((void **)&h->eloss, &c, h->ne + 1, sizeof(double) * (size_t)h->k);
    c = h->ecap, grow((void **)&h->ew, &c, h->ne + 1, sizeof(double) * (size_t)h->k);
    h->ecap = c;
    h->estep[h->ne] = step;
    memcpy(h->eloss + (size_t)h->ne * h->k, loss, sizeof(double) * (size_t)h->k);
    memcpy(h->ew + (size_t)h->ne * h->k, w, sizeof(double) * (size_t)h->k);
    h->ne++;
}

typedef struct {
    double loss, ce, kl, gnorm, lr;
} StepStats;

// One optimizer step: grad-accum micro-batches (gradients accumulate), average, clip, schedule, update.
static StepStats train_step(Run *r) {
    const Opts *o = &r->o;
    int B = o->batch, T = o->seq;
    StepStats st = {0};
    step_zero_grad(r->S);
    for (int a = 0; a < o->grad_accum; a++) {
        // this rank's B rows of the micro-batch of B x ranks sequences (the same whatever the ranks)
        mixture_batch_part(&r->mx, B * comm.world, B * comm.rank, B, T, r->tok, r->tgt, NULL);
        if (r->has_teacher) {  // the CPU's Model (opts_check refuses --teacher on the GPU)
            double ce, kl;
            st.loss += distill_microbatch(&r->m, &r->teacher, r->tok, r->tgt, B, T, (float)o->alpha,
                                          (float)o->temperature, r->slog, r->tlog, &ce, &kl);
            st.ce += ce, st.kl += kl;
        } else {
            st.loss += step_forward(r->S, r->tok, r->tgt, 1);
            step_backward(r->S);
        }
    }
    st.loss = step_reduce(r->S, st.loss) / o->grad_accum, st.ce /= o->grad_accum, st.kl /= o->grad_accum;
    st.gnorm = sqrt(step_grad_sumsq(r->S)) / o->grad_accum;  // norm of the averaged gradient
    st.lr = lr_schedule(r->step + 1, o->steps, o->warmup, o->lr, o->min_lr_frac);
    step_update(r->S, (float)st.lr, (float)o->weight_decay, clip_coef(st.gnorm, o->grad_clip) / (float)o->grad_accum,
                r->opt.t + 1);
    r->step++;
    return st;
}

// --- 7. eval and logs ---------------------------------------------------------------------------------

// per-domain validation loss and perplexity; with dynamic batch loading (and update) the weight update
static void evaluate(Run *r, int update) {
    int k = r->mx.k;
    double *loss = (double *)mallocCheck(sizeof(double) * (size_t)k), mean = 0;
    eval_domains(&r->mx, r->S, r->o.eval_batches, loss);
    printf("eval step %d |", r->step);
    for (int d = 0; d < k; d++) {
        printf(" %s %.4f (ppl %.2f) |", r->mx.ds.name[d], loss[d], exp(loss[d]));
        mean += loss[d] / k;
    }
    printf(" mean %.4f\n", mean);
    if (r->dynamic && update) {
        dbl_update(r->mx.w, loss, r->ref, k, r->o.dbl_c, r->o.dbl_clip);
        printf("weights step %d |", r->step);
        for (int d = 0; d < k; d++) printf(" %s %.4f (delta %+.4f) |", r->mx.ds.name[d], r->mx.w[d], loss[d] - r->ref[d]);
        printf("\n");
    }
    fflush(stdout);
    history_add_eval(&r->h, r->step, loss, r->mx.w);
    free(loss);
}

static cJSON *history_to_json(const History *h, char *const *names) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddItemToObject(j, "loss", cJSON_CreateFloatArray(h->loss, h->n));
    cJSON_AddItemToObject(j, "lr", cJSON_CreateFloatArray(h->lr, h->n));
    cJSON_AddItemToObject(j, "grad_norm", cJSON_CreateFloatArray(h->gnorm, h->n));
    cJSON_AddItemToObject(j, "tok_s", cJSON_CreateFloatArray(h->toks, h->n));
    cJSON *ev = cJSON_AddArrayToObject(j, "evals");
    for (int e = 0; e < h->ne; e++) {
        cJSON *x = cJSON_CreateObject(), *l = cJSON_AddObjectToObject(x, "loss"), *p = cJSON_AddObjectToObject(x, "ppl");
        cJSON *w = cJSON_AddObjectToObject(x, "weights");
        cJSON_AddNumberToObject(x, "step", h->estep[e]);
        for (int d = 0; d < h->k; d++) {
            cJSON_AddNumberToObject(l, names[d], h->eloss[(size_t)e * h->k + d]);
            cJSON_AddNumberToObject(p, names[d], exp(h->eloss[(size_t)e * h->k + d]));
            cJSON_AddNumberToObject(w, names[d], h->ew[(size_t)e * h->k + d]);
        }
        cJSON_AddItemToArray(ev, x);
    }
    return j;
}

static float *json_floats(const cJSON *a, int n, const char *what, const char *src) {
    if (!a || !cJSON_IsArray(a) || cJSON_GetArraySize(a) != n) fail("%s: \"%s\" must list %d numbers", src, what, n);
    float *v = (float *)mallocCheck(sizeof(float) * (size_t)(n ? n : 1));
    int i = 0;
    for (const cJSON *e = a->child; e; e = e->next) {
        if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble)) state_damaged(src, what, e, "finite numbers");
        v[i++] = (float)e->valuedouble;
    }
    return v;
}

static void history_from_json(History *h, const cJSON *j, char *const *names, const char *src) {
    const cJSON *l = json_get(j, "loss");
    int n = l && cJSON_IsArray(l) ? cJSON_GetArraySize(l) : -1;
    if (n < 0) fail("%s: history.loss is missing; the file is damaged", src);
    for (int i = 0; i < n; i++) history_add_step(h, 0, 0, 0, 0);
    float *a[4] = {json_floats(l, n, "loss", src), json_floats(json_get(j, "lr"), n, "lr", src),
                   json_floats(json_get(j, "grad_norm"), n, "grad_norm", src), json_floats(json_get(j, "tok_s"), n, "tok_s", src)};
    memcpy(h->loss, a[0], sizeof(float) * n), memcpy(h->lr, a[1], sizeof(float) * n);
    memcpy(h->gnorm, a[2], sizeof(float) * n), memcpy(h->toks, a[3], sizeof(float) * n);
    for (int i = 0; i < 4; i++) free(a[i]);
    const cJSON *ev = json_get(j, "evals");
    double *loss = (double *)mallocCheck(sizeof(double) * (size_t)h->k), *w = (double *)mallocCheck(sizeof(double) * (size_t)h->k);
    for (const cJSON *e = ev ? ev->child : NULL; e; e = e->next) {
        for (int d = 0; d < h->k; d++) {
            loss[d] = json_num(json_get(e, "loss"), names[d], NAN, src);
            w[d] = json_num(json_get(e, "weights"), names[d], NAN, src);
        }
        history_add_eval(h, (int)json_int(e, "step", 0, src), loss, w);
    }
    free(loss), free(w);
}

// OUT/loss.png: training loss per step and each domain's validation loss; OUT/weights.png (dynamic
// mixture): the domain weights after each update
static void write_plots(Run *r) {
    const History *h = &r->h;
    int k = h->k, ns = 0;
    double *x = (double *)mallocCheck(sizeof(double) * (size_t)(h->n + h->ne + 1));
    double *y = (double *)mallocCheck(sizeof(double) * (size_t)(h->n + 1));
    double *ex = x + h->n, *ey = (double *)mallocCheck(sizeof(double) * (size_t)(h->ne * k + 1));
    double *ew = (double *)mallocCheck(sizeof(double) * (size_t)(h->ne * k + 1));
    Series *s = (Series *)mallocCheck(sizeof(Series) * (size_t)(k + 1));
    char **labels = (char **)mallocCheck(sizeof(char *) * (size_t)k);
    for (int i = 0; i < h->n; i++) x[i] = i + 1, y[i] = h->loss[i];
    if (h->n) s[ns++] = (Series){"train", x, y, h->n};
    for (int e = 0; e < h->ne; e++) ex[e] = h->estep[e];
    for (int d = 0; d < k; d++) {
        labels[d] = (char *)mallocCheck(strlen(r->mx.ds.name[d]) + 8);
        sprintf(labels[d], "val %s", r->mx.ds.name[d]);
        for (int e = 0; e < h->ne; e++) {
            ey[d * h->ne + e] = h->eloss[(size_t)e * k + d];
            ew[d * h->ne + e] = h->ew[(size_t)e * k + d];
        }
        if (h->ne) s[ns++] = (Series){labels[d], ex, ey + d * h->ne, h->ne};
    }
    char *p = path_join(r->o.out, "loss.png");
    if (ns) plot_lines(p, "loss: training (per step) and validation (per domain)", "step", "cross-entropy (nats)", s, ns);
    free(p);
    if (r->dynamic && h->ne) {
        for (int d = 0; d < k; d++) s[d] = (Series){r->mx.ds.name[d], ex, ew + d * h->ne, h->ne};
        p = path_join(r->o.out, "weights.png");
        plot_lines(p, "domain weights (dynamic batch loading)", "step", "weight", s, k);
        free(p);
    }
    for (int d = 0; d < k; d++) free(labels[d]);
    free(labels), free(s), free(x), free(y), free(ey), free(ew);
}

// OUT/log.json (settings, per-step records, evaluations), OUT/log_steps.csv and OUT/log_eval.csv,
// each rewritten whole and atomically; with plots also the PNGs (after evaluations and at the end)
static void write_logs(Run *r, int plots) {
    const History *h = &r->h;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddItemToObject(j, "settings", flags_to_json(&cli, &r->o));
    cJSON_AddNumberToObject(j, "step", r->step);
    cJSON_AddItemToObject(j, "history", history_to_json(h, r->mx.ds.name));
    char *p = path_join(r->o.out, "log.json");
    write_json_atomic(p, j);
    free(p);
    cJSON_Delete(j);
    char *buf;
    size_t len;
    FILE *f = open_memstream(&buf, &len);
    fprintf(f, "step,loss,lr,grad_norm,tok_s\n");
    for (int i = 0; i < h->n; i++)
        fprintf(f, "%d,%.9g,%.9g,%.9g,%.1f\n", i + 1, h->loss[i], h->lr[i], h->gnorm[i], h->toks[i]);
    fclose(f);
    p = path_join(r->o.out, "log_steps.csv");
    write_text_atomic(p, buf);
    free(p), free(buf);
    f = open_memstream(&buf, &len);
    fprintf(f, "step,domain,loss,ppl,weight\n");
    for (int e = 0; e < h->ne; e++)
        for (int d = 0; d < h->k; d++) {
            double l = h->eloss[(size_t)e * h->k + d];
            fprintf(f, "%d,%s,%.9g,%.9g,%.9g\n", h->estep[e], r->mx.ds.name[d], l, exp(l), h->ew[(size_t)e * h->k + d]);
        }
    fclose(f);
    p = path_join(r->o.out, "log_eval.csv");
    write_text_atomic(p, buf);
    free(p), free(buf);
    if (plots) write_plots(r);
}

// --- 8. checkpoints -----------------------------------------------------------------------------------
// model.h's run checkpoint (section 8): OUT/checkpoint/ holds the model as --dtype, the optimizer state
// (with the fp32 master weights when the model is saved as bf16) and train_state.json: step, data cursor
// (mixture RNG state + sequences drawn), domain weights, reference losses, settings, loss history.
// Test hook: TRAIN_TEST_CRASH=files[@STEP] | rename[@STEP] (util.h).

static cJSON *state_to_json(Run *r) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "step", r->step);
    cJSON_AddNumberToObject(j, "steps", r->o.steps);
    cJSON_AddStringToObject(j, "optimizer", opt_names[r->opt.kind]);
    cJSON_AddNumberToObject(j, "optimizer_updates", r->opt.t);
    cJSON_AddNumberToObject(j, "next_lr", lr_schedule(r->step + 1, r->o.steps, r->o.warmup, r->o.lr, r->o.min_lr_frac));
    mixture_state_to_json(&r->mx, j);
    if (r->ref) cJSON_AddItemToObject(j, "ref_loss", cJSON_CreateDoubleArray(r->ref, r->mx.k));
    cJSON_AddNumberToObject(j, "elapsed_s", r->elapsed_before);
    cJSON_AddStringToObject(j, "embed_scale_dtype", st_dtype_name[r->m.c.scale_dtype]);
    cJSON_AddItemToObject(j, "settings", flags_to_json(&cli, &r->o));
    cJSON_AddItemToObject(j, "history", history_to_json(&r->h, r->mx.ds.name));
    return j;
}

static void train_checkpoint_save(Run *r, double elapsed) {
    double t0 = now_sec();
    step_get(r->S, STEP_WEIGHTS | STEP_OPTIMIZER | STEP_OWNED, -1);  // the host copies of what this rank writes
    double saved_elapsed = r->elapsed_before;
    r->elapsed_before += elapsed;
    cJSON *st = comm.rank == 0 ? state_to_json(r) : NULL;
    r->elapsed_before = saved_elapsed;
    // every rank: at ZeRO >= 1 each writes its shard, else rank 0 writes what every rank holds
    checkpoint_save(&comm, r->o.out, "train", r->step, &r->m, r->save_dtype, &r->opt, st, NULL, NULL, 0);
    cJSON_Delete(st);
    printf("checkpoint step %d -> %s/checkpoint (%.2fs)\n", r->step, r->o.out, now_sec() - t0);
    fflush(stdout);
}

// Restore the data cursor, weights, reference losses and history. The model (and with bf16 the
// master weights) and optimizer are read by the caller; everything is checked before anything is written.
static void state_load(Run *r, const cJSON *j, const char *src) {
    r->step = (int)state_int(j, "step", 0, INT_MAX, src);
    r->opt.t = (int)state_int(j, "optimizer_updates", 0, INT_MAX, src);
    mixture_state_from_json(&r->mx, j, src, r->o.data);
    if (r->dynamic && json_get(j, "ref_loss")) {
        r->ref = (double *)mallocCheck(sizeof(double) * (size_t)r->mx.k);
        state_nums(j, "ref_loss", r->mx.k, 0, 1e30, r->ref, src);
    }
    r->elapsed_before = state_num(j, "elapsed_s", 0, 1e30, src);
    const cJSON *h = json_get(j, "history");
    if (!h) state_damaged(src, "history", NULL, "the loss history");
    history_from_json(&r->h, h, r->mx.ds.name, src);
    if (r->h.n != r->step) fail("%s: history has %d steps but step is %d; the file is damaged", src, r->h.n, r->step);
}

// ================================================================================================
// 9. Generation: sample a continuation with plain forward passes over the whole context (at most
//    --seq tokens, the oldest dropped). No KV cache: each token costs a full forward of the context,
//    which is fine for the small models this is for.
// ================================================================================================

static int sample_token(const float *z, int V, double temp, int top_k, Rng *rng) {
    int best = 0;
    for (int i = 1; i < V; i++) best = z[i] > z[best] ? i : best;
    if (temp <= 0) return best;
    double *p = (double *)mallocCheck(sizeof(double) * (size_t)V), cut = -INFINITY, sum = 0;
    if (top_k > 0 && top_k < V) {  // the k-th largest logit is the cut
        for (int i = 0; i < V; i++) p[i] = z[i];
        for (int k = 0; k < top_k; k++) {
            int a = k;
            for (int i = k + 1; i < V; i++) a = p[i] > p[a] ? i : a;
            double t = p[k];
            p[k] = p[a], p[a] = t;
        }
        cut = p[top_k - 1];
    }
    for (int i = 0; i < V; i++) sum += (p[i] = z[i] >= cut ? exp((z[i] - z[best]) / temp) : 0);
    double u = rng_uniform(rng) * sum, acc = 0;
    int pick = best;
    for (int i = 0; i < V; i++)
        if (p[i] > 0 && u < (acc += p[i])) {
            pick = i;
            break;
        }
    free(p);
    return pick;
}

static int generate_text(Opts *o) {
    if (o->seq < 1) fail("--seq %d: generation needs a context of at least 1 token", o->seq);
    char *dir = *o->model ? str_dup(o->model) : *o->out ? ckpt_find(o->out) : NULL;
    if (!dir) fail("--generate needs --model DIR (or --out DIR of a run with a checkpoint)");
    Model m;
    model_load(&m, dir);
    char *tj = path_join(dir, "tokenizer.json");
    const char *spec = *o->tokenizer ? o->tokenizer : file_exists(tj) ? tj : "bytes";
    Tokenizer *tk = tok_load(spec);
    tok_fit(tk, m.c.V, spec);  // the prompt must not encode to an id the embedding has no row for
    int V = tok_vocab(tk);     // never sample an id the tokenizer cannot print
    uint32_t *pid;
    size_t np = tok_encode(tk, o->generate, strlen(o->generate), &pid);
    int cap = (int)np + 1 + (o->tokens > 0 ? o->tokens : 0), n = 0;
    int *ids = (int *)mallocCheck(sizeof(int) * (size_t)cap);
    ids[n++] = (int)tok_bos(tk);
    for (size_t i = 0; i < np; i++) ids[n++] = (int)pid[i];
    free(pid);
    fprintf(stderr, "| generate: model %s, tokenizer %s, prompt %zu tokens, %d new, temperature %g, top-k %d, seed %d, "
            "context %d\n", dir, spec, np, o->tokens, o->temperature, o->top_k, o->seed, o->seq);
    Rng rng = rng_seed((uint64_t)o->seed);
    float *logits = (float *)mallocCheck(sizeof(float) * (size_t)o->seq * m.c.V);
    fwrite(o->generate, 1, strlen(o->generate), stdout);
    double t0 = now_sec();
    int made = 0;
    for (; made < o->tokens; made++) {
        int len = n < o->seq ? n : o->seq;
        model_forward(&m, ids + n - len, NULL, 1, len, 0, logits);
        int next = sample_token(logits + (size_t)(len - 1) * m.c.V, V, o->temperature, o->top_k, &rng);
        if (next == (int)tok_eos(tk)) break;
        ids[n++] = next;
        uint32_t u = (uint32_t)next;
        size_t bl;
        char *s = tok_decode(tk, &u, 1, &bl);
        fwrite(s, 1, bl, stdout);
        if (fflush(stdout) != 0) fail("writing the generated text to stdout failed: %s", strerror(errno));
        free(s);
    }
    printf("\n");
    if (fflush(stdout) != 0 || ferror(stdout))  // a full disk or a closed pipe: say so, never exit 0
        fail("writing the generated text to stdout failed: %s", strerror(errno));
    double dt = now_sec() - t0;
    fprintf(stderr, "| generated %d tokens in %.2fs (%.1f tok/s)\n", made, dt, made / (dt > 0 ? dt : 1));
    free(logits), free(ids), free(tj), free(dir);
    tok_free(tk);
    model_free(&m);
    return 0;
}

// ================================================================================================
// 10. main
// ================================================================================================

#ifndef TRAIN_NO_MAIN
// --recipe sheared: Sheared-LLaMA's continued pretraining (Xia et al. 2023; continue_pretrain.sh in
// princeton-nlp/LLM-Shearing: lr 1e-4, 1440 of 48000 steps warmup, no weight decay, cosine to 10% of the peak).
// The published run also starts from the pruning run's final domain weights: --weights PRUNE_REPORT.
static void recipe_apply(Opts *o, const int *given) {
    if (strcmp(o->recipe, "sheared")) return;
    if (!given[flag_index(&cli, "lr")]) o->lr = 1e-4;
    if (!given[flag_index(&cli, "warmup")]) o->warmup = (int)(0.03 * o->steps + 0.5);
    if (!given[flag_index(&cli, "weight-decay")]) o->weight_decay = 0;
    if (!given[flag_index(&cli, "min-lr-frac")]) o->min_lr_frac = 0.1;
}

static int train_main(int argc, char **argv) {
    if (argc < 2) {
        flags_usage(&cli);
        return 1;
    }
    Run r;
    memset(&r, 0, sizeof r);
    int given[NFLAGS] = {0};
    flags_defaults(&cli, &r.o);
    flags_parse(&cli, &r.o, argc, argv, 1, given);
    if (given[flag_index(&cli, "generate")]) return generate_text(&r.o);
    if (!*r.o.out) usage_fail(&cli, "--out DIR is required (checkpoints and logs go there)");
    double t_start = now_sec();

    // resume: the saved settings first, then whatever the command line changes
    char *ck = NULL;
    cJSON *state = NULL;
    char *state_path = NULL;
    if (r.o.resume) {
        state = ckpt_state_open(r.o.out, "train", &ck, &state_path);
        const cJSON *saved = json_get(state, "settings");
        Opts cmd = r.o;
        flags_resume(&cli, &r.o, &cmd, given, saved, state_path);
        r.o.resume = 1;
    } else {
        recipe_apply(&r.o, given);  // a resumed run has the values it was started with
        char *have = ckpt_find(r.o.out);
        if (have && !r.o.force)
            fail("%s already holds a checkpoint; pass --resume to continue that run, --force to start over, or "
                 "another --out", r.o.out);
        free(have);
    }

    // model
    int from_weights;
    if (r.o.resume) {
        load_model(&r.m, ck, &r.o);
        // sqrt(d) as the run computed it (a random init saved as bf16 would otherwise reload it bf16-rounded)
        const cJSON *sd = json_get(state, "embed_scale_dtype");
        if (!cJSON_IsString(sd) || !choice_holds("F32|BF16|F16", sd->valuestring))
            state_damaged(state_path, "embed_scale_dtype", sd, "F32, BF16 or F16");
        r.m.c.scale_dtype = !strcmp(sd->valuestring, "BF16") ? ST_BF16 : !strcmp(sd->valuestring, "F16") ? ST_F16 : ST_F32;
        r.m.embed_scale = embed_scale_for(r.m.c.d, r.m.c.scale_dtype);
        from_weights = 1;
    } else from_weights = init_model(&r.m, &r.o);
    if (r.o.lr < 0) r.o.lr = from_weights ? 1e-4 : 3e-4;
    if (r.o.warmup < 0) r.o.warmup = r.o.steps / 10;
    opts_check(&r.o);
    if (!strcmp(r.o.dtype, "auto")) r.o.dtype = r.m.c.scale_dtype == ST_BF16 ? "bf16" : "f32";
    r.save_dtype = !strcmp(r.o.dtype, "bf16") ? ST_BF16 : ST_F32;
    if (r.save_dtype != r.m.c.scale_dtype && embed_scale_for(r.m.c.d, r.save_dtype) != r.m.embed_scale)
        printf("| note: the model came as %s and is saved as %s: loaders will compute sqrt(d) = %.6g, not %.6g\n",
               st_dtype_name[r.m.c.scale_dtype], st_dtype_name[r.save_dtype], embed_scale_for(r.m.c.d, r.save_dtype),
               r.m.embed_scale);

    // data
    r.mx = mixture_open(r.o.data, r.m.c.V, 2 * (uint64_t)r.o.seed + 1);
    r.h.k = r.mx.k;
    r.dynamic = !strcmp(r.o.mix, "dynamic");
    if (*r.o.weights && !r.o.resume) weights_from_file(&r.mx, r.o.weights);

    // distillation teacher
    if (*r.o.teacher) {
        model_load(&r.teacher, r.o.teacher);
        if (r.teacher.c.V != r.m.c.V)
            fail("--teacher %s has vocab %d but the student has %d; distillation needs the same vocabulary", r.o.teacher,
                 r.teacher.c.V, r.m.c.V);
        r.has_teacher = 1;
    }

    // optimizer, and everything a resume restores (all checked before anything is written)
    optimizer_init(&r.opt, &r.m.tab, name_index(r.o.optimizer, opt_names, 3, "optimizer"), (float)r.o.beta1,
                   (float)r.o.beta2, (float)r.o.eps, (float)r.o.muon_momentum);
    if (r.o.step.zero > 0 && r.opt.kind != OPT_MUON)  // this rank's shard of the states, before a resume fills it
        optimizer_shard(&r.opt, &r.m.tab, r.m.c.L, r.o.step.zero, &comm);
    if (r.o.resume) {
        if (strcmp(json_str(state, "optimizer", r.o.optimizer, state_path), r.o.optimizer))
            fail("%s: the run was trained with --optimizer %s, not %s; resume with the same optimizer", state_path,
                 json_str(state, "optimizer", "", state_path), r.o.optimizer);
        checkpoint_load_state(ck, &r.m, r.save_dtype, &r.opt, NULL, NULL, 0);
        state_load(&r, state, state_path);
        if (r.step >= r.o.steps)
            fail("%s is at step %d of --steps %d: nothing to do; pass a larger --steps to train on", ck, r.step, r.o.steps);
    }
    if (r.dynamic && !r.ref) r.ref = reference_losses(&r.o, &r.mx, r.m.c.V);

    // settings
    printf("train: %s\n", r.o.resume ? "resuming" : "starting");
    flags_print(&cli, &r.o, stdout);
    config_print(&r.m.c, stdout);
    size_t nemb = (size_t)r.m.c.V * r.m.c.d;
    printf("| parameters: %.3fM non-embedding, %.3fM total\n", (r.m.tab.total - nemb) / 1e6, r.m.tab.total / 1e6);
    optimizer_print(&r.opt, "optimizer");
    printf("| data %s: %d domains |", r.o.data, r.mx.k);
    for (int d = 0; d < r.mx.k; d++) printf(" %s w=%.4f%s", r.mx.ds.name[d], r.mx.w[d], d + 1 < r.mx.k ? "," : "");
    printf("\n");
    if (r.ref) {
        printf("| reference losses:");
        for (int d = 0; d < r.mx.k; d++) printf(" %s %.4f", r.mx.ds.name[d], r.ref[d]);
        printf("\n");
    }
    if (comm_dp(&comm, r.o.step.zero))
        printf("| data parallel: %d ranks (%s), ZeRO %d; the global batch is %d sequences, --batch %d per rank\n",
               comm.world, comm.mpi ? "mpirun" : comm.launched ? "RANK, WORLD_SIZE" : "one process", r.o.step.zero,
               r.o.batch * comm.world, r.o.batch);
    printf("| tokens per step %d (batch %d x seq %d x accum %d x ranks %d), schedule: warmup %d, cosine to %.3g x %.3g, "
           "BLAS %s, %d threads\n", r.o.batch * r.o.seq * r.o.grad_accum * comm.world, r.o.batch, r.o.seq,
           r.o.grad_accum, comm.world, r.o.warmup, r.o.min_lr_frac, r.o.lr, blas_kernels(), omp_get_max_threads());
    fflush(stdout);

    // from here on OUT is written (by rank 0); first the temporaries of a process killed while writing logs
    if (comm.rank == 0) make_dirs(r.o.out), ckpt_cleanup(r.o.out);
    if (comm.rank == 0 && r.dynamic && *r.o.ref_model && !r.o.resume) {
        cJSON *j = cJSON_CreateObject();
        for (int d = 0; d < r.mx.k; d++) cJSON_AddNumberToObject(j, r.mx.ds.name[d], r.ref[d]);
        char *p = path_join(r.o.out, "ref_loss.json");
        write_json_atomic(p, j);
        printf("| reference losses written to %s (pass it as --ref-loss next time)\n", p);
        free(p);
        cJSON_Delete(j);
    }
    size_t N = (size_t)r.o.batch * r.o.seq;
    r.tok = (int *)mallocCheck(sizeof(int) * N);
    r.tgt = (int *)mallocCheck(sizeof(int) * N);
    if (r.has_teacher) {
        r.slog = (float *)mallocCheck(sizeof(float) * N * r.m.c.V);
        r.tlog = (float *)mallocCheck(sizeof(float) * N * r.m.c.V);
    }
    StepOpts so = step_opts(&r.o.step, r.o.batch, r.o.seq, 1);
    so.comm = &comm;  // the data-parallel ranks
    r.S = step_open(&r.m, &r.opt, &so);
    if (!r.o.resume && r.o.eval_every > 0) evaluate(&r, 0);

    double t0 = now_sec();
    int first = r.step;
    while (r.step < r.o.steps) {
        double ts = now_sec();
        StepStats st = train_step(&r);
        double now = now_sec(), dt = now - ts, el = now - t0;
        float toks = (float)(N * r.o.grad_accum * comm.world / dt);  // the global batch's
        history_add_step(&r.h, (float)st.loss, (float)st.lr, (float)st.gnorm, toks);
        char e1[32], e2[32];
        printf("step %d/%d | loss %.4f | lr %.1e | grad %.3f | %.0f tok/s | elapsed %s | eta %s", r.step, r.o.steps,
               st.loss, st.lr, st.gnorm, toks, fmt_duration(r.elapsed_before + now - t_start, e1),
               fmt_duration(el / (r.step - first) * (r.o.steps - r.step), e2));
        if (r.has_teacher) printf(" | ce %.4f | kl %.4f", st.ce, st.kl);
        step_log_memory(r.S);
        printf("\n");
        fflush(stdout);
        if (!isfinite(st.loss)) fail("step %d: the loss is %g; lower --lr or raise --warmup (nothing saved)", r.step, st.loss);
        int last = r.step == r.o.steps, at_eval = r.o.eval_every > 0 && r.step % r.o.eval_every == 0;
        int stop = r.o.stop_at > 0 && r.step == r.o.stop_at && !last;
        int at_save = (r.o.save_every > 0 && r.step % r.o.save_every == 0) || last || stop;
        if (at_eval || last) evaluate(&r, at_eval);  // the weights move at eval intervals only
        if (at_save) train_checkpoint_save(&r, now_sec() - t_start);
        if ((at_eval || at_save) && comm.rank == 0) write_logs(&r, at_eval || last);
        if (stop) {
            printf("stopped at step %d (--stop-at); continue with --resume\n", r.step);
            break;
        }
    }
    char e1[32];
    printf("done: %d steps, final loss %.4f, %s this run; checkpoint %s/checkpoint\n", r.step, r.h.loss[r.h.n - 1],
           fmt_duration(now_sec() - t_start, e1), r.o.out);
    if (state) cJSON_Delete(state);
    free(ck), free(state_path);
    step_close(r.S);
    optimizer_free(&r.opt);
    mixture_close(&r.mx);
    model_free(&r.m);
    if (r.has_teacher) model_free(&r.teacher);
    history_free(&r.h);
    free(r.tok), free(r.tgt), free(r.slog), free(r.tlog), free(r.ref);
    return 0;
}

// Under mpirun every rank runs train_main; rank 0 prints and writes, the others say nothing unless they fail
int main(int argc, char **argv) { return comm_main(&comm, train_main, argc, argv); }
#endif
