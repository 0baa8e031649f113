// libFuzzer target: data/shard.h's token shard header (shard_parse) on any bytes; every token of an accepted
// shard is read (the body must hold exactly n of them).
#include "test/fuzz/fuzz.h"
#include "data/shard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (FUZZ_REFUSED()) return 0;
    // a copy at a fresh allocation: shards are mapped page-aligned, and the tokens are read as uint16/uint32
    void *copy = mallocCheck(size);
    memcpy(copy, data, size);
    Shard s = shard_parse(copy, size, "fuzz.bin");
    uint64_t sum = 0;
    for (uint64_t i = 0; i < s.n; i++) sum += shard_tok(&s, i);
    if (s.n && sum == UINT64_MAX) fuzz_bug("unreachable");  // keeps the reads
    if (SHARD_HEADER + s.n * (uint64_t)s.bytes != size) fuzz_bug("the body is not n tokens");
    free(s.path);
    free(copy);
    return 0;
}
