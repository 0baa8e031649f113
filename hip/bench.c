// hip/bench.c — benchmark of the GPU path: training steps (forward + backward + gradient norm + AdamW)
// and pruning steps (the same with the four mask hooks on: hard-concrete sample on the device, mask
// gradients back to the host) of a Gemma 3 shape with random weights, B·T tokens per step.
// Prints one line per step and a summary line per kind of step (tok/s, device memory, and what hip/plan.h
// predicted for it).
//   hip/build/bench --model 270m|1b|4b|12b|tiny | --config FILE [--batch 8] [--seq 2048] [--steps 10] [--untimed 2]
//                   [--prune 1] [--attention band|mma|simple] [--gpu-recompute N] [--gpu-checkpoint N]
//                   [--blas default|lt|tuned]
//                   [--optimizer adamw|adamw8] [--grads f32|bf16] [--master f32|none]
#include "model.h"
#include "hip/gpu.h"
#include "hip/blas.h"
#include "hip/plan.h"

static const char *shapes[][2] = {
    {"270m", "{\"model_type\":\"gemma3_text\",\"vocab_size\":262144,\"hidden_size\":640,\"intermediate_size\":2048,"
             "\"num_hidden_layers\":18,\"num_attention_heads\":4,\"num_key_value_heads\":1,\"head_dim\":256,"
             "\"sliding_window\":512,\"sliding_window_pattern\":6,\"query_pre_attn_scalar\":256,"
             "\"max_position_embeddings\":32768}"},
    {"1b", "{\"model_type\":\"gemma3_text\",\"vocab_size\":262144,\"hidden_size\":1152,\"intermediate_size\":6912,"
           "\"num_hidden_layers\":26,\"num_attention_heads\":4,\"num_key_value_heads\":1,\"head_dim\":256,"
           "\"sliding_window\":512,\"sliding_window_pattern\":6,\"query_pre_attn_scalar\":256,"
           "\"max_position_embeddings\":32768}"},
    {"4b", "{\"model_type\":\"gemma3_text\",\"vocab_size\":262208,\"hidden_size\":2560,\"intermediate_size\":10240,"
           "\"num_hidden_layers\":34,\"num_attention_heads\":8,\"num_key_value_heads\":4,\"head_dim\":256,"
           "\"sliding_window\":1024,\"sliding_window_pattern\":6,\"query_pre_attn_scalar\":256,"
           "\"rope_scaling\":{\"rope_type\":\"linear\",\"factor\":8.0},\"max_position_embeddings\":131072}"},
    {"12b", "{\"model_type\":\"gemma3_text\",\"vocab_size\":262208,\"hidden_size\":3840,\"intermediate_size\":15360,"
            "\"num_hidden_layers\":48,\"num_attention_heads\":16,\"num_key_value_heads\":8,\"head_dim\":256,"
            "\"sliding_window\":1024,\"sliding_window_pattern\":6,\"query_pre_attn_scalar\":256,"
            "\"rope_scaling\":{\"rope_type\":\"linear\",\"factor\":8.0},\"max_position_embeddings\":131072}"},
    {"tiny", "{\"model_type\":\"gemma3_text\",\"vocab_size\":261,\"hidden_size\":64,\"intermediate_size\":128,"
             "\"num_hidden_layers\":4,\"num_attention_heads\":4,\"num_key_value_heads\":1,\"head_dim\":64,"
             "\"sliding_window\":64,\"sliding_window_pattern\":2,\"query_pre_attn_scalar\":64,"
             "\"max_position_embeddings\":4096}"},
};

typedef struct {
    const char *model, *attention, *blas, *config, *optimizer;
    int batch, seq, steps, untimed, prune;
    StepFlags step;  // the GPU's options as train and prune take them (no --device: this is the GPU)
} Args;
#define ARG(f) offsetof(Args, f)
static const Flag flags[] = {
    {"model", F_STR, ARG(model), "270m", "270m|1b|4b|12b|tiny", SAVE_NO, "270m | 1b | 4b | 12b | tiny (Gemma 3 shapes, random "
     "weights)"},
    {"config", F_STR, ARG(config), "", NULL, SAVE_NO, "a config.json instead of --model (hip/dev/gemma3-7b.json: a 7.0B "
     "scale-up)"},
    {"batch", F_INT, ARG(batch), "8", ">= 1", SAVE_NO, "sequences per step"},
    {"seq", F_INT, ARG(seq), "2048", ">= 2", SAVE_NO, "tokens per sequence"},
    {"steps", F_INT, ARG(steps), "10", ">= 1", SAVE_NO, "timed steps of each kind"},
    {"untimed", F_INT, ARG(untimed), "2", ">= 0", SAVE_NO, "untimed steps first"},
    {"prune", F_INT, ARG(prune), "1", "[0, 1]", SAVE_NO, "also time pruning steps (masks on)"},
    {"attention", F_STR, ARG(attention), "band", "band|mma|simple", SAVE_NO, "band (backward as batched BLAS where K = 1, mma "
     "elsewhere) | mma (tensor cores) | simple (portable kernels)"},
    {"blas", F_STR, ARG(blas), "tuned", "default|lt|tuned", SAVE_NO, "products: default (the library's) | lt (cuBLASLt "
     "heuristic) | tuned (cuBLASLt, fastest candidate timed per shape)"},
    {"optimizer", F_STR, ARG(optimizer), "adamw", "adamw|adamw8", SAVE_NO, "adamw (fp32 moments) | adamw8 (8-bit blocks)"},
    STEP_GPU_FLAGS(Args, step),
};
// --warmup is train's and prune's learning-rate warmup; --recompute their --gpu-recompute
static const Renamed renamed[] = {{"warmup", "--untimed N (steps before the timed ones)"}, {"recompute", "--gpu-recompute N"}};
static const Cli cli = {"hip/build/bench", "usage: hip/build/bench [flags]\n", flags, COUNT_OF(flags), renamed,
                        COUNT_OF(renamed), NULL, NULL};

static double median(double *v, int n) {
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j] < v[j - 1]; j--) {
            double t = v[j];
            v[j] = v[j - 1], v[j - 1] = t;
        }
    return n ? v[n / 2] : 0;
}

int main(int argc, char **argv) {
    Args a;
    flags_defaults(&cli, &a);
    flags_parse(&cli, &a, argc, argv, 1, NULL);
    flags_print(&cli, &a, stdout);
    const char *model = a.model, *attn = a.attention, *blas = a.blas;
    int B = a.batch, T = a.seq, steps = a.steps, warmup = a.untimed, prune = a.prune, rec = a.step.recompute;
    int si = -1, nshapes = (int)(sizeof shapes / sizeof shapes[0]);
    for (int i = 0; i < nshapes; i++)
        if (!strcmp(model, shapes[i][0])) si = i;
    int mode = !strcmp(a.attention, "band") ? 2 : !strcmp(a.attention, "mma") ? 1 : 0;
    int bmode = !strcmp(a.blas, "default") ? GS_BLAS_DEFAULT : !strcmp(a.blas, "lt") ? GS_BLAS_LT : GS_BLAS_TUNED;
    Config c;
    if (*a.config) {
        config_load(&c, a.config);
        model = a.config;
    } else {
        cJSON *j = cJSON_Parse(shapes[si][1]);
        config_from_json(&c, j, model);
        cJSON_Delete(j);
    }
    const char *why = gpu_unsupported(&c);
    if (why) fail("%s: %s", model, why);
    if (T > c.max_pos) fail("--seq %d is longer than max_position_embeddings %d", T, c.max_pos);
    ParamTable tab;
    param_table(&c, &tab);
    printf("bench | GPU %s | model %s (%.1fM parameters, %.1fM without the embedding) | B=%d T=%d (%d tokens/step) | "
           "attention %s | products %s | gate|up recomputed in %d layers | checkpointed %d | %s, %s gradients, master %s | "
           "steps %d (+%d warm-up)\n",
           gpu_device_name(), model, tab.total / 1e6, (tab.total - (size_t)c.V * c.d) / 1e6, B, T, B * T, attn, blas, rec,
           a.step.checkpoint, a.optimizer, a.step.grads, a.step.master, steps, warmup);
    config_print(&c, stdout);
    size_t used0, total;
    gpu_memory(&used0, &total);
    GpuSpec *s = gpu_spec_from_config(&c, &tab, embed_scale_for(c.d, ST_BF16));
    if (rec > c.L) fail("--gpu-recompute %d: expected 0 to %d (the layers)", rec, c.L);
    if (a.step.checkpoint > c.L) fail("--gpu-checkpoint %d: expected 0 to %d (the layers)", a.step.checkpoint, c.L);
    s->checkpoint = a.step.checkpoint;
    s->recompute = rec, s->optimizer = strcmp(a.optimizer, "adamw8") ? GPU_ADAMW : GPU_ADAMW8;
    s->grad_bf16 = !strcmp(a.step.grads, "bf16"), s->bf16_only = !strcmp(a.step.master, "none");
    GpuPlan *plan = (GpuPlan *)mallocCheck(sizeof(GpuPlan));
    gpu_plan(s, B, T, plan);
    double G = 1073741824.0, pred = (plan->create + plan->states) / G;
    printf("plan (hip/plan.h): parameters %.2f + gradients %.2f + optimizer %.2f + activations %.2f + stream %.2f + "
           "tables %.2f + scratch %.2f = %.2f GiB (+ %.2f GiB of masks when pruning)\n", plan->params / G, plan->grads / G,
           plan->states / G, plan->acts / G, plan->stream / G, plan->tables / G, plan->ws / G, pred, plan->masks / G);
    GpuModel *g = gpu_create(s, B, T);
    gs_blas_mode(bmode);
    gpu_set_attention(g, mode);
    gpu_init_random(g, 1, 0.02f);
    int N = B * T;
    int *tok = (int *)mallocCheck(sizeof(int) * N), *tgt = (int *)mallocCheck(sizeof(int) * N);
    Rng r = rng_seed(42);
    // masks for the pruning steps: log_alpha and uniforms per element, sampled on the device each step
    size_t nl = c.L, nh = (size_t)c.L * c.H, nf = (size_t)c.L * c.F, nd = c.d, nm = nl + nh + nf + nd;
    float *la = (float *)mallocCheck(sizeof(float) * nm), *u = (float *)mallocCheck(sizeof(float) * nm);
    float *z = (float *)mallocCheck(sizeof(float) * nm), *dzdla = (float *)mallocCheck(sizeof(float) * nm);
    float *dz = (float *)mallocCheck(sizeof(float) * nm);
    for (size_t i = 0; i < nm; i++) la[i] = (float)(2.0 + rng_normal(&r));
    for (int kind = 0; kind <= prune; kind++) {
        double *times = (double *)mallocCheck(sizeof(double) * steps);
        size_t peak = 0;
        for (int step = 0; step < warmup + steps; step++) {
            for (int i = 0; i < N; i++) tok[i] = (int)(rng_uniform(&r) * c.V);
            for (int i = 0; i < N; i++) tgt[i] = (i + 1) % T ? tok[i + 1] : -1;
            gpu_sync();
            double t0 = now_sec();
            if (kind == 1) {
                for (size_t i = 0; i < nm; i++) u[i] = (float)(1e-6 + (1 - 2e-6) * rng_uniform(&r));
                gpu_hard_concrete(g, la, u, z, dzdla, nm);
                gpu_set_masks(g, z, z + nl, z + nl + nh, z + nl + nh + nf);
            }
            gpu_zero_grad(g);
            float loss = gpu_forward(g, tok, tgt, 1);
            gpu_backward(g);
            if (kind == 1) gpu_get_mask_grads(g, dz, dz + nl, dz + nl + nh, dz + nl + nh + nf);
            double gn = sqrt(gpu_grad_sumsq(g));
            gpu_adamw(g, 1e-4f, 0.9f, 0.95f, 1e-8f, kind ? 0.0f : 0.1f, step + 1, clip_coef(gn, 1.0));
            gpu_sync();
            double dt = now_sec() - t0;
            size_t used;
            gpu_memory(&used, &total);
            peak = used > peak ? used : peak;
            if (step >= warmup) times[step - warmup] = dt;
            printf("%s step %d/%d | loss %.4f | grad norm %.3f | %.1f ms | %.0f tok/s | device memory %.2f GiB%s\n",
                   kind ? "prune" : "train", step + 1, warmup + steps, loss, gn, dt * 1e3, N / dt, used / 1073741824.0,
                   step < warmup ? " (warm-up)" : "");
            if (step == warmup - 1 || step == warmup) gpu_profile_print(g);  // GS_PROFILE=1: the second is one timed step
        }
        double med = median(times, steps);
        printf("summary %s | model %s | B=%d T=%d | median step %.1f ms | %.0f tok/s | allocated by us %.2f GiB | "
               "device memory grown since start (ours + BLAS workspace) %.2f GiB of %.1f | planned %.2f GiB\n",
               kind ? "prune" : "train", model, B, T, med * 1e3, N / med, gpu_bytes(g) / 1073741824.0,
               (peak - used0) / 1073741824.0, total / 1073741824.0, pred + (kind ? plan->masks / G : 0));
        free(times);
        gpu_set_masks(g, NULL, NULL, NULL, NULL);
    }
    gpu_free(g);
    gpu_spec_free(s);
    gpu_plan_free(plan), free(plan);
    free(tab.e), free(tok), free(tgt), free(la), free(u), free(z), free(dzdla), free(dz);
    return 0;
}
