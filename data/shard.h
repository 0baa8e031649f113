// data/shard.h — token shards: one file of token ids per domain and split, memory-mapped by every stage.
//
// Layout (little-endian, 64-byte header, then the tokens):
//   0  char[4]  magic "GSHD"
//   4  uint32   version (1)
//   8  uint32   vocab size of the tokenizer that made it (every id is < vocab)
//  12  uint32   bytes per token: 2 (uint16, vocab <= 65536) or 4 (uint32)
//  16  uint64   n_tokens
//  24  uint64   n_documents
//  32  reserved, zero
//  64  tokens[n_tokens]
// Every document is stored as BOS followed by its tokens; there is no EOS. A data directory holds
// <dir>/<domain>/train.bin and val.bin for each domain (data/prepare.sh writes data/shards/), and test.bin where
// the corpus has a test split (data/prepare_large.sh): documents only held-out evaluation reads.
#pragma once
#include <dirent.h>
#include "util.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "token shards are little-endian and are read in place; this host is big-endian"
#endif

#define SHARD_MAGIC "GSHD"
#define SHARD_VERSION 1
#define SHARD_HEADER 64
// A shard may come from a tokenizer slightly smaller or larger than the model's embedding: Gemma
// checkpoints pad it (262144 ids -> 262208 rows) or leave out the image token (262145 ids in
// tokenizer.json, 262144 rows). Any larger gap means another tokenizer (bytes vs Gemma).
#define SHARD_VOCAB_SLACK 256

typedef struct {
    char *path;
    uint32_t vocab;   // tokenizer vocab size recorded in the header
    int bytes;        // 2 or 4
    uint64_t n;       // tokens
    uint64_t ndocs;   // documents (each starts with BOS)
    const void *tok;  // n tokens of `bytes` each, inside the mapping
    void *map;
    size_t mapsize;
} Shard;

static inline uint32_t shard_tok(const Shard *s, uint64_t i) {
    return s->bytes == 2 ? ((const uint16_t *)s->tok)[i] : ((const uint32_t *)s->tok)[i];
}

// Check `size` bytes of a shard (the header, and that the body is exactly n tokens); s->map is left to the caller.
static Shard shard_parse(const void *map, size_t size, const char *path) {
    Shard s;
    memset(&s, 0, sizeof(s));
    if (size < SHARD_HEADER)
        fail("%s: truncated header (%zu of %d bytes); not a token shard, re-run `make data`", path, size,
             SHARD_HEADER);
    const unsigned char *h = (const unsigned char *)map;
    uint32_t version, vocab, bytes;
    uint64_t n, ndocs;
    memcpy(&version, h + 4, 4);
    memcpy(&vocab, h + 8, 4);
    memcpy(&bytes, h + 12, 4);
    memcpy(&n, h + 16, 8);
    memcpy(&ndocs, h + 24, 8);
    if (memcmp(h, SHARD_MAGIC, 4) != 0)
        fail("%s: bad magic (expected \"GSHD\"); not a token shard, re-run `make data`", path);
    if (version != SHARD_VERSION)
        fail("%s: shard version %u, this build reads version %d; re-run `make data`", path, version, SHARD_VERSION);
    if (bytes != 2 && bytes != 4) fail("%s: %u bytes per token (must be 2 or 4); the header is corrupt", path, bytes);
    if (vocab == 0 || (bytes == 2 && vocab > 65536))
        fail("%s: vocab %u does not fit %u-byte tokens; the header is corrupt", path, vocab, bytes);
    if (n > (size - SHARD_HEADER) / bytes)
        fail("%s: truncated body (%llu tokens need %llu bytes, the file has %zu); re-run `make data`", path,
             (unsigned long long)n, (unsigned long long)(SHARD_HEADER + n * bytes), size);
    if (size != SHARD_HEADER + n * bytes)
        fail("%s: %zu trailing bytes after %llu tokens; the file is corrupt, re-run `make data`", path,
             size - SHARD_HEADER - (size_t)(n * bytes), (unsigned long long)n);
    if (ndocs > n) fail("%s: %llu documents in %llu tokens; the header is corrupt", path, (unsigned long long)ndocs,
                        (unsigned long long)n);
    s.path = str_dup(path);
    s.vocab = vocab;
    s.bytes = (int)bytes;
    s.n = n;
    s.ndocs = ndocs;
    s.tok = h + SHARD_HEADER;
    return s;
}

static Shard shard_open(const char *path) {
    int fd = open(path, O_RDONLY | O_NONBLOCK);  // O_NONBLOCK: a FIFO must not hang us; it is refused below
    if (fd < 0) fail("cannot open token shard %s: %s; run `make data`", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) fail("cannot stat token shard %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) fail("token shard %s is not a regular file; re-run `make data`", path);
    size_t size = (size_t)st.st_size;
    if (size < SHARD_HEADER)
        fail("%s: truncated header (%zu of %d bytes); not a token shard, re-run `make data`", path, size,
             SHARD_HEADER);
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) fail("cannot map token shard %s: %s", path, strerror(errno));
    Shard s = shard_parse(map, size, path);
    s.map = map;
    s.mapsize = size;
    return s;
}

static void shard_close(Shard *s) {
    if (s->map) munmap(s->map, s->mapsize);
    free(s->path);
    memset(s, 0, sizeof(*s));
}

// Writes atomically (temporary name, then rename). Every id must be < vocab: a bigger one is a bug upstream.
static void shard_write(const char *path, uint32_t vocab, const uint32_t *tok, uint64_t n, uint64_t ndocs) {
    uint32_t bytes = vocab <= 65536 ? 2 : 4;
    unsigned char h[SHARD_HEADER] = {0};
    uint32_t version = SHARD_VERSION;
    memcpy(h, SHARD_MAGIC, 4);
    memcpy(h + 4, &version, 4);
    memcpy(h + 8, &vocab, 4);
    memcpy(h + 12, &bytes, 4);
    memcpy(h + 16, &n, 8);
    memcpy(h + 24, &ndocs, 8);
    for (uint64_t i = 0; i < n; i++)
        if (tok[i] >= vocab) fail("shard_write %s: token %u at %llu is >= vocab %u", path, tok[i], (unsigned long long)i, vocab);
    AtomicFile a = atomic_open(path);
    atomic_write(&a, h, SHARD_HEADER);
    if (bytes == 4) atomic_write(&a, tok, n * 4);
    else {
        uint16_t buf[8192];
        for (uint64_t i = 0; i < n; i += 8192) {
            uint64_t m = n - i < 8192 ? n - i : 8192;
            for (uint64_t k = 0; k < m; k++) buf[k] = (uint16_t)tok[i + k];
            atomic_write(&a, buf, m * 2);
        }
    }
    atomic_commit(&a);
}

// ----------------------------------------------------------------------------------------------
// A data directory: every subdirectory is a domain with train.bin and val.bin (and maybe test.bin).

typedef struct {
    int n;        // domains, sorted by name
    char **name;  // [n]
    Shard *train, *val;
    Shard *test;  // [n]; all-zero (n == 0, no map) where the domain has no test.bin
} DataSet;

static int data_cmp_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void data_same_vocab(const Shard *a, const Shard *b) {
    if (a->vocab != b->vocab)
        fail("%s: vocab %u but %s has vocab %u; the shards come from different tokenizers, re-run `make data` "
             "into an empty directory", a->path, a->vocab, b->path, b->vocab);
}

static void data_check_vocab(const Shard *s, uint32_t model_vocab) {
    if (model_vocab == 0) return;
    uint32_t gap = s->vocab > model_vocab ? s->vocab - model_vocab : model_vocab - s->vocab;
    if (gap > SHARD_VOCAB_SLACK)
        fail("%s: made with a tokenizer of %u ids but the model has vocab %u; tokenize the data with the model's "
             "tokenizer (data/prepare.sh with TOKENIZER=... SHARDS=...) or pass the matching --data",
             s->path, s->vocab, model_vocab);
}

// model_vocab == 0 skips the vocab check. Token ids >= the model's vocab are for callers to catch as they read.
static DataSet data_open(const char *dir, uint32_t model_vocab) {
    DataSet d;
    memset(&d, 0, sizeof(d));
    DIR *dp = opendir(dir);
    if (!dp) fail("no token shards in %s (%s); run `make data`", dir, strerror(errno));
    int cap = 0;
    for (struct dirent *e; (e = readdir(dp));) {
        if (e->d_name[0] == '.') continue;
        char *sub = path_join(dir, e->d_name);
        int isdir = dir_exists(sub);
        free(sub);
        if (!isdir) continue;
        if (d.n == cap) {
            cap = cap ? 2 * cap : 16;
            d.name = (char **)realloc(d.name, sizeof(char *) * (size_t)cap);
            if (!d.name) fail("out of memory");
        }
        d.name[d.n++] = str_dup(e->d_name);
    }
    closedir(dp);
    if (d.n == 0) fail("no domains found in %s (expected %s/<domain>/train.bin); run `make data`", dir, dir);
    qsort(d.name, (size_t)d.n, sizeof(char *), data_cmp_name);
    d.train = (Shard *)callocCheck(sizeof(Shard) * (size_t)d.n);
    d.val = (Shard *)callocCheck(sizeof(Shard) * (size_t)d.n);
    d.test = (Shard *)callocCheck(sizeof(Shard) * (size_t)d.n);
    for (int i = 0; i < d.n; i++) {
        char *sub = path_join(dir, d.name[i]);
        char *tp = path_join(sub, "train.bin"), *vp = path_join(sub, "val.bin"), *sp = path_join(sub, "test.bin");
        if (!file_exists(tp)) fail("domain %s: %s is missing; re-run `make data`", d.name[i], tp);
        if (!file_exists(vp)) fail("domain %s: %s is missing; re-run `make data`", d.name[i], vp);
        d.train[i] = shard_open(tp);
        d.val[i] = shard_open(vp);
        if (d.train[i].n == 0 || d.val[i].n == 0)
            fail("domain %s: empty %s shard; re-run `make data`", d.name[i], d.train[i].n == 0 ? "train" : "val");
        data_same_vocab(&d.val[i], &d.train[i]);
        data_same_vocab(&d.train[i], &d.train[0]);
        data_check_vocab(&d.train[i], model_vocab);
        if (file_exists(sp)) {
            d.test[i] = shard_open(sp);
            data_same_vocab(&d.test[i], &d.train[i]);
        }
        free(sub);
        free(tp);
        free(vp);
        free(sp);
    }
    return d;
}

static void data_close(DataSet *d) {
    for (int i = 0; i < d->n; i++) {
        shard_close(&d->train[i]);
        shard_close(&d->val[i]);
        shard_close(&d->test[i]);  // a no-op where there is none
        free(d->name[i]);
    }
    free(d->train);
    free(d->val);
    free(d->test);
    free(d->name);
    memset(d, 0, sizeof(*d));
}
