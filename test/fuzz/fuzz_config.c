// libFuzzer target: config_from_json (model.h) on any bytes, as a config.json. An accepted config must also
// give every per-layer shape without dividing by zero, and survive config_to_json and back unchanged (a program
// must never write a config its own loader refuses).
#include "test/fuzz/fuzz.h"

static cJSON *volatile back_json;
static volatile int roundtrip;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (FUZZ_REFUSED()) {
        if (roundtrip) fuzz_bug("config_to_json wrote a config that config_from_json refuses: %s", fuzz_msg);
        cJSON_Delete(back_json);
        return 0;
    }
    back_json = NULL, roundtrip = 0;
    Config c, back;
    config_from_json(&c, fuzz_json(data, size), "fuzz.json");
    ParamTable t = {0};
    param_table(&c, &t);
    size_t n = count_params(&c, 1);
    if (n < count_params(&c, 0)) fuzz_bug("fewer parameters with the embedding than without");
    double *inv = (double *)mallocCheck(sizeof(double) * (size_t)(c.D > c.Dg ? c.D : c.Dg));
    for (int l = 0; l < c.L; l++) {
        rope_inv_freq(&c, l, inv);
        if (layer_nqkv(&c, l) <= 0 || layer_F(&c, l) <= 0 || kv_source(&c, l) < 0) fuzz_bug("layer %d has no shape", l);
    }
    free(inv);
    free(t.e);
    roundtrip = 1;  // as a program writes it and reads it back: printed, then parsed
    cJSON *out = config_to_json(&c, "float32");
    char *text = cJSON_PrintUnformatted(out);
    cJSON_Delete(out);
    back_json = json_parse(text, strlen(text), "roundtrip");
    free(text);
    config_from_json(&back, back_json, "roundtrip");
    if (memcmp(&c, &back, sizeof c) != 0) fuzz_bug("config_to_json and back changed the config");
    roundtrip = 0;
    fuzz_json_free(), cJSON_Delete(back_json);
    return 0;
}
