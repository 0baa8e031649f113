// profile.c — look inside a model before cutting it. Commands:
//   logits   dump all-position logits for reference checks (DESIGN.md §5)
// (importance statistics, heatmaps, the target-shape planner, memory budget, ablations and
//  checkpoint diff come with their own issue)
#include "model.h"

// ------------------------------------------------------------------------------------------------
// logits: ./profile logits --model DIR --tokens FILE.json --out FILE.f32
// FILE.json is a JSON array of equal-length token-id arrays. Writes float32 [B, T, V] row-major
// (after softcapping) and prints the mean next-token cross-entropy as "loss X".

static int *read_token_json(const char *path, int V, int *B, int *T) {
    cJSON *j = json_read(path);
    if (!cJSON_IsArray(j) || cJSON_GetArraySize(j) == 0)
        fail("%s: expected a JSON array of token-id arrays, e.g. [[2, 651, 6037]]", path);
    *B = cJSON_GetArraySize(j);
    *T = -1;
    int *tok = NULL, b = 0;
    for (const cJSON *row = j->child; row; row = row->next, b++) {
        if (!cJSON_IsArray(row)) fail("%s: sequence %d is not an array of token ids", path, b);
        int n = cJSON_GetArraySize(row);
        if (*T < 0) {
            if (n == 0) fail("%s: sequence 0 is empty", path);
            *T = n;
            tok = (int *)mallocCheck(sizeof(int) * (size_t)*B * n);
        } else if (n != *T) fail("%s: sequence %d has %d tokens but sequence 0 has %d; all must be equal", path, b, n, *T);
        int t = 0;
        for (const cJSON *e = row->child; e; e = e->next, t++) {
            if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble))
                fail("%s: sequence %d position %d is not an integer token id", path, b, t);
            double v = e->valuedouble;
            if (v < 0 || v >= V)
                fail("%s: token id %.0f (sequence %d position %d) is outside the model's vocabulary [0, %d)", path, v, b,
                     t, V);
            tok[(size_t)b * *T + t] = (int)v;
        }
    }
    cJSON_Delete(j);
    return tok;
}

static int cmd_logits(int argc, char **argv) {
    const char *model_dir = NULL, *tokens = NULL, *out = NULL;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--model")) model_dir = arg_str(argc, argv, &i);
        else if (!strcmp(argv[i], "--tokens")) tokens = arg_str(argc, argv, &i);
        else if (!strcmp(argv[i], "--out")) out = arg_str(argc, argv, &i);
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: profile logits --model DIR --tokens FILE.json --out FILE.f32\n"
                   "  --model DIR     Hugging Face model directory (config.json + safetensors)   required\n"
                   "  --tokens FILE   JSON array of equal-length token-id arrays                  required\n"
                   "  --out FILE      float32 logits [B, T, V], row-major, after softcapping      required\n"
                   "prints \"loss X\": mean next-token cross-entropy over the B*(T-1) predictions\n");
            return 0;
        } else fail("profile logits: unknown flag %s; see profile logits --help", argv[i]);
    }
    if (!model_dir || !tokens || !out) fail("profile logits needs --model, --tokens and --out; see --help");
    Model m;
    model_load(&m, model_dir);
    int B, T;
    int *tok = read_token_json(tokens, m.c.V, &B, &T);
    int *tgt = (int *)mallocCheck(sizeof(int) * (size_t)B * T);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) tgt[b * T + t] = t + 1 < T ? tok[b * T + t + 1] : -1;
    size_t n = (size_t)B * T * m.c.V;
    float *logits = (float *)mallocCheck(sizeof(float) * n);
    float loss = model_forward(&m, tok, tgt, B, T, 0, logits);
    AtomicFile f = atomic_open(out);
    atomic_write(&f, logits, sizeof(float) * n);
    atomic_commit(&f);
    printf("logits [%d, %d, %d] -> %s\n", B, T, m.c.V, out);
    printf("loss %.6f\n", loss);
    free(logits);
    free(tok);
    free(tgt);
    model_free(&m);
    return 0;
}

static void usage(void) {
    printf("usage: profile COMMAND [flags]   (profile COMMAND --help for its flags)\n"
           "  logits    all-position logits and loss of a model on given tokens\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage();
        return argc < 2;
    }
    if (!strcmp(argv[1], "logits")) return cmd_logits(argc, argv);
    usage();
    fail("profile: unknown command \"%s\"", argv[1]);
}
