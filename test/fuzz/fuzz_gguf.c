// libFuzzer target: the GGUF writer's input side (export.c). The input is a config.json, a NUL byte, then bytes
// that fill the model's weights (as f32, cycled; values that are not finite become 0, as model_load refuses
// them). An accepted config of at most 2^18 parameters is converted to one GGUF type (the byte after the NUL
// picks it and the checkpoint dtype), row by row, as gguf_write would write it: the keys, the tensor directory
// and the quantizers must hold for any shape and any finite weights.
#define main export_main
#include "test/fuzz/fuzz.h"
#include "export.c"
#undef main

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (FUZZ_REFUSED()) return 0;
    const uint8_t *nul = memchr(data, 0, size);
    size_t jn = nul ? (size_t)(nul - data) : size, wn = nul ? size - jn - 1 : 0;
    Model m;
    memset(&m, 0, sizeof m);
    config_from_json(&m.c, fuzz_json(data, jn), "fuzz.json");
    fuzz_json_free();
    if (count_params(&m.c, 1) > (1 << 18)) return 0;  // keep each run small
    export_refuse(&m.c, "fuzz.json");
    m.c.scale_dtype = wn ? (int)(nul[1] % 3) : ST_F32;  // F32, BF16 or F16: the embedding scale's rounding
    model_init_layout(&m);
    for (size_t i = 0; wn >= 4 && i < m.tab.total; i++) {
        float x;
        memcpy(&x, nul + 1 + (4 * i) % (wn - wn % 4), 4);
        m.w[i] = isfinite(x) ? x : 0.0f;
    }
    static const int types[] = {GT_F32, GT_F16, GT_BF16, GT_Q8_0, GT_Q4_0};
    {  // one type per input (the byte after the NUL picks it), to keep each run short
        int type = types[wn ? (nul[1] / 3) % 5 : 0];
        TypePlan tp = {type, plan_ffn(&m.c, type, 0), 0, ""};
        Gguf g = {0};
        VocabPlan vp = {"placeholder", NULL, m.c.V};
        add_hparams(&g, &m.c, tp.F, "fuzz", 0, (uint32_t)m.c.max_pos);
        add_vocab(&g, &vp, &m.c);
        float *rope_freqs = NULL;
        add_tensors(&g, &m, &tp, &rope_freqs);
        for (int i = 0; i < g.nt; i++) {
            const GTensor *t = &g.t[i];
            if (t->ne[0] % gtype_block(t->type)) fuzz_bug("tensor %s: rows of %lld are not whole blocks", t->name,
                                                          (long long)t->ne[0]);
            unsigned char *out = (unsigned char *)mallocCheck(t->nbytes);
            gguf_rows(t, 0, t->ne[1], out);
            free(out);
        }
        free(g.kv.p), free(g.t), free(rope_freqs);
    }
    model_free(&m);
    return 0;
}
