// libFuzzer target: util.h's safetensors reader (st_parse) on any bytes, then every tensor it accepts read as
// fp32 the way model_load reads weights. An accepted file's tensors must tile its data section exactly.
#include "test/fuzz/fuzz.h"

static SFile *volatile sf;
static float *volatile buf;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (FUZZ_REFUSED()) {
        free(buf);
        return 0;
    }
    sf = NULL, buf = NULL;
    sf = st_parse(data, size, "fuzz.safetensors");
    size_t covered = 0;
    for (int i = 0; i < sf->n; i++) {
        const STensor *t = &sf->t[i];
        covered += t->nbytes;
        if ((const uint8_t *)t->data < data || (const uint8_t *)t->data + t->nbytes > data + size)
            fuzz_bug("tensor %s lies outside the file", t->name);
        if (st_find(sf, t->name) != t) fuzz_bug("tensor %s is not found by its name", t->name);
        if (t->dtype == ST_F32 || t->dtype == ST_BF16 || t->dtype == ST_F16) {
            buf = (float *)mallocCheck(sizeof(float) * t->numel);
            st_to_f32(t, buf);
            free(buf);
            buf = NULL;
        }
    }
    const uint8_t *data0 = sf->n ? (const uint8_t *)sf->t[0].data - sf->t[0].begin : NULL;  // sorted by offset
    if (sf->n && data0 + covered != data + size) fuzz_bug("the tensors do not cover the data section");
    st_free(sf);
    return 0;
}
