// libFuzzer target: data/tokenizer.h's tokenizer.json loader (tok_from_json) on any bytes; an accepted
// tokenizer then encodes and decodes a fixed text that has spaces, bytes outside the vocabulary and added-token
// markup, and every id it produces must be in the vocabulary.
#include "test/fuzz/fuzz.h"
#include "data/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (FUZZ_REFUSED()) return 0;
    Tokenizer *t = tok_from_json(fuzz_json(data, size), "fuzz.json");
    static const char text[] = "Hello  world<bos>\n\t\xff\xe2\x96\x81<unused0>x";
    uint32_t *ids;
    size_t n = tok_encode(t, text, sizeof text - 1, &ids);
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= t->n) fuzz_bug("id %u of the encoding is outside the vocabulary of %u", ids[i], t->n);
    size_t len;
    char *s = tok_decode(t, ids, n, &len);
    free(s);
    free(ids);
    tok_free(t);
    fuzz_json_free();
    return 0;
}
