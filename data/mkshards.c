// data/mkshards — per-domain text to token shards, the second half of `make data` (data/prepare.sh makes the text).
//   data/mkshards --tokenizer bytes --text data/text --out data/shards
//   data/mkshards --info data/shards/press/val.bin          (print a shard's header)
// Input: TEXT/<domain>.txt, a sequence of documents, each started by a line holding the byte 0x1E and the
// document's name. Output: OUT/<domain>/train.bin and val.bin (data/shard.h: every document is BOS + its
// tokens), OUT/<domain>/info.json, and OUT/domains.json with the table of all domains.
// The split is by document: document i (in file order) goes to validation when i % val_every == val_every - 1,
// and with --test-split to test (OUT/<domain>/test.bin, held-out evaluation only) when i % val_every == val_every - 2.
// A domain whose shards were made from the same text with the same tokenizer and split is skipped.
#include "util.h"
#include "data/shard.h"
#include "data/tokenizer.h"

typedef struct {
    const char *name, *text;  // into the file buffer; name ends at '\n'
    size_t name_len, len;
} Doc;

typedef struct {
    const char *tokenizer, *text, *out;
    int val_every, test_split, force;
    StrList info;
} Args;
#define ARG(f) offsetof(Args, f)
static const Flag flags[] = {
    {"tokenizer", F_STR, ARG(tokenizer), "bytes", NULL, SAVE_NO, "\"bytes\" or the path of a Hugging Face tokenizer.json"},
    {"text", F_STR, ARG(text), "data/text", NULL, SAVE_NO, "per-domain text, DIR/<domain>.txt"},
    {"out", F_STR, ARG(out), "data/shards", NULL, SAVE_NO, "shards go to DIR/<domain>/{train,val}.bin"},
    {"val-every", F_INT, ARG(val_every), "10", ">= 2", SAVE_NO, "document i goes to validation when i % N == N-1"},
    {"test-split", F_BOOL, ARG(test_split), "0", NULL, SAVE_NO, "also test.bin: document i goes to test when i % N == N-2"},
    {"force", F_BOOL, ARG(force), "0", NULL, SAVE_NO, "re-tokenize domains that are up to date"},
    {"info", F_LIST, ARG(info), "", NULL, SAVE_NO, "FILE.bin...: print the header of token shards and exit"},
};
static const Cli cli = {"data/mkshards", "usage: data/mkshards [flags]   |   data/mkshards --info FILE.bin...\n",
                        flags, COUNT_OF(flags), NULL, 0, NULL, NULL};

// Splits a domain file into documents. Every document starts with "\x1e<name>\n"; its text runs to the
// newline before the next such line (that newline included).
static size_t split_docs(const char *buf, size_t len, Doc **out, const char *path) {
    if (len == 0 || buf[0] != '\x1e')
        fail("%s: documents must each start with a line holding the byte 0x1E and a name (see data/README.md); "
             "rebuild it with data/prepare.sh", path);
    size_t n = 0, cap = 256;
    Doc *d = (Doc *)mallocCheck(cap * sizeof(Doc));
    for (size_t p = 0; p < len;) {
        const char *nl = (const char *)memchr(buf + p, '\n', len - p);
        size_t body = nl ? (size_t)(nl - buf) + 1 : len;
        const char *next = body < len ? (const char *)memmem(buf + body, len - body, "\n\x1e", 2) : NULL;
        size_t end = next ? (size_t)(next - buf) + 1 : len;
        if (n == cap) {
            cap *= 2;
            d = (Doc *)realloc(d, cap * sizeof(Doc));
            if (!d) fail("out of memory (%zu documents)", cap);
        }
        d[n++] = (Doc){buf + p + 1, buf + body, (nl ? body - 1 : len) - p - 1, end - body};
        p = end;
    }
    *out = d;
    return n;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// the domains: TEXT/*.txt, sorted
static int list_domains(const char *dir, char ***names) {
    DIR *dp = opendir(dir);
    if (!dp) fail("no text directory %s (%s); run `make data` (data/prepare.sh) first", dir, strerror(errno));
    int n = 0, cap = 16;
    char **v = (char **)mallocCheck(sizeof(char *) * (size_t)cap);
    for (struct dirent *e; (e = readdir(dp));) {
        size_t l = strlen(e->d_name);
        if (e->d_name[0] == '.' || l <= 4 || strcmp(e->d_name + l - 4, ".txt") != 0) continue;
        if (n == cap) {
            cap *= 2;
            v = (char **)realloc(v, sizeof(char *) * (size_t)cap);
            if (!v) fail("out of memory");
        }
        v[n] = str_dup(e->d_name);
        v[n++][l - 4] = 0;
    }
    closedir(dp);
    if (n == 0) fail("no domain text (*.txt) in %s; run `make data` (data/prepare.sh) first", dir);
    qsort(v, (size_t)n, sizeof(char *), cmp_str);
    *names = v;
    return n;
}

// info.json says these shards came from this very text, tokenizer and split
static int up_to_date(const char *info, const char *train, const char *val, const char *test, const char *spec,
                      const struct stat *st, int every) {
    if (!file_exists(info) || !file_exists(train) || !file_exists(val) || (test && !file_exists(test))) return 0;
    char *text = read_file(info, NULL);
    cJSON *j = cJSON_Parse(text);
    free(text);
    if (!j) return 0;
    int same = strcmp(json_str(j, "tokenizer", "", info), spec) == 0 &&
               json_num(j, "text_bytes", -1, info) == (double)st->st_size &&
               json_num(j, "text_mtime", -1, info) == (double)st->st_mtime && json_int(j, "val_every", 0, info) == every &&
               json_int(j, "test_split", 0, info) == (test != NULL);
    cJSON_Delete(j);
    return same;
}

static cJSON *make_domain(const char *name, const char *textdir, const char *outdir, const char *spec,
                          Tokenizer **tok, int every, int test, int force) {
    char fname[512];
    snprintf(fname, sizeof(fname), "%s.txt", name);
    char *tpath = path_join(textdir, fname), *dom = path_join(outdir, name);
    char *info = path_join(dom, "info.json"), *train = path_join(dom, "train.bin"), *val = path_join(dom, "val.bin");
    char *tst = path_join(dom, "test.bin");
    struct stat st;
    if (stat(tpath, &st) != 0) fail("cannot stat %s: %s", tpath, strerror(errno));
    cJSON *j = NULL;
    if (!force && up_to_date(info, train, val, test ? tst : NULL, spec, &st, every)) {
        printf("[mkshards] %-8s up to date (%s), skipped\n", name, info);
        j = json_read(info);
    } else {
        if (!*tok) {  // loaded only when some domain needs it: a re-run with everything done costs nothing
            double t0 = now_sec();
            *tok = tok_load(spec);
            printf("[mkshards] tokenizer %s: %u ids, loaded in %.2fs\n", spec, (*tok)->n, now_sec() - t0);
        }
        const Tokenizer *t = *tok;
        size_t len;
        char *buf = read_file(tpath, &len);
        Doc *docs;
        size_t nd = split_docs(buf, len, &docs, tpath);
        if (nd < 2 + (size_t)test)
            fail("%s: %zu document(s); a domain needs at least %d (one for validation%s)", tpath, nd, 2 + test,
                 test ? ", one for test" : "");
        uint32_t **ids = (uint32_t **)callocCheck(nd * sizeof(uint32_t *));
        size_t *nids = (size_t *)callocCheck(nd * sizeof(size_t));
        double t0 = now_sec();
#pragma omp parallel for schedule(dynamic, 1)
        for (size_t i = 0; i < nd; i++) nids[i] = tok_encode(t, docs[i].text, docs[i].len, &ids[i]);
        double dt = now_sec() - t0;
        // assemble: BOS + tokens per document, document i to val when i % every == every - 1, to test when
        // i % every == every - 2 (a domain of fewer than `every` documents: its last one, and the one before)
        TokVec tr = {0}, va = {0}, te = {0};
        size_t ndv = 0, ndt = 0, bytes = 0, small = nd < (size_t)every;
        for (size_t i = 0; i < nd; i++) {
            int to_val = small ? i == nd - 1 : i % (size_t)every == (size_t)every - 1;
            int to_test = test && (small ? i == nd - 2 : i % (size_t)every == (size_t)every - 2);
            TokVec *v = to_val ? &va : to_test ? &te : &tr;
            ndv += to_val, ndt += to_test;
            bytes += docs[i].len;
            tokvec_push(v, t->bos);
            for (size_t k = 0; k < nids[i]; k++) tokvec_push(v, ids[i][k]);
            free(ids[i]);
        }
        make_dirs(dom);
        shard_write(train, t->n, tr.v, tr.n, nd - ndv - ndt);
        shard_write(val, t->n, va.v, va.n, ndv);
        if (test) shard_write(tst, t->n, te.v, te.n, ndt);
        j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "name", name);
        cJSON_AddStringToObject(j, "tokenizer", spec);
        cJSON_AddNumberToObject(j, "vocab", t->n);
        cJSON_AddStringToObject(j, "text", tpath);
        cJSON_AddNumberToObject(j, "text_bytes", (double)st.st_size);
        cJSON_AddNumberToObject(j, "text_mtime", (double)st.st_mtime);
        cJSON_AddNumberToObject(j, "val_every", every);
        cJSON_AddNumberToObject(j, "test_split", test);
        cJSON_AddNumberToObject(j, "documents", (double)nd);
        cJSON_AddNumberToObject(j, "bytes", (double)bytes);
        cJSON_AddNumberToObject(j, "train_documents", (double)(nd - ndv - ndt));
        cJSON_AddNumberToObject(j, "val_documents", (double)ndv);
        cJSON_AddNumberToObject(j, "train_tokens", (double)tr.n);
        cJSON_AddNumberToObject(j, "val_tokens", (double)va.n);
        if (test) {
            cJSON_AddNumberToObject(j, "test_documents", (double)ndt);
            cJSON_AddNumberToObject(j, "test_tokens", (double)te.n);
        }
        write_json_atomic(info, j);
        printf("[mkshards] %-8s %6zu docs %8.2f MB -> train %9zu / val %8zu", name, nd, bytes / 1e6, tr.n, va.n);
        if (test) printf(" / test %8zu", te.n);
        printf(" tokens | %.2fs, %.1f MB/s\n", dt, dt > 0 ? bytes / dt / 1e6 : 0.0);
        if (va.n < 65536)
            printf("[mkshards] warning: %s has only %zu validation tokens (< 64k); its validation loss will be noisy\n",
                   name, va.n);
        free(tr.v);
        free(va.v);
        free(te.v);
        free(ids);
        free(nids);
        free(docs);
        free(buf);
    }
    free(tpath);
    free(dom);
    free(info);
    free(train);
    free(val);
    free(tst);
    return j;
}

// data_open reads every subdirectory of the shard directory: say so when one has no text behind it
static void warn_stale(const char *outdir, char **names, int n) {
    DIR *dp = opendir(outdir);
    if (!dp) return;
    for (struct dirent *e; (e = readdir(dp));) {
        char *sub = path_join(outdir, e->d_name);
        int known = e->d_name[0] == '.' || !dir_exists(sub);
        for (int i = 0; i < n && !known; i++) known = strcmp(names[i], e->d_name) == 0;
        if (!known)
            printf("[mkshards] warning: %s has no text in this run but training reads every domain in %s; delete "
                   "it if it is stale\n", sub, outdir);
        free(sub);
    }
    closedir(dp);
}

static void print_info(const char *path) {
    Shard s = shard_open(path);
    printf("%s: vocab %u, %d-byte tokens, %llu tokens, %llu documents, first ids:", path, s.vocab, s.bytes,
           (unsigned long long)s.n, (unsigned long long)s.ndocs);
    for (uint64_t i = 0; i < s.n && i < 12; i++) printf(" %u", shard_tok(&s, i));
    printf("\n");
    shard_close(&s);
}

int main(int argc, char **argv) {
    Args a;
    flags_defaults(&cli, &a);
    flags_parse(&cli, &a, argc, argv, 1, NULL);
    if (a.info.n) {
        for (int i = 0; i < a.info.n; i++) print_info(a.info.v[i]);
        return 0;
    }
    const char *spec = a.tokenizer, *textdir = a.text, *outdir = a.out;
    int every = a.val_every, test = a.test_split, force = a.force;
    if (test && every < 3) fail("--val-every must be at least 3 with --test-split, got %d", every);
    flags_print(&cli, &a, stdout);
    printf("[mkshards] tokenizer %s | text %s | out %s | val: every %dth document%s\n", spec, textdir, outdir, every,
           test ? ", test: the one before it" : "");
    char **names;
    int nd = list_domains(textdir, &names);
    Tokenizer *tok = NULL;
    cJSON *all = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    cJSON_AddStringToObject(all, "tokenizer", spec);
    cJSON_AddNumberToObject(all, "val_every", every);
    cJSON_AddNumberToObject(all, "test_split", test);
    for (int i = 0; i < nd; i++)
        cJSON_AddItemToArray(arr, make_domain(names[i], textdir, outdir, spec, &tok, every, test, force));
    cJSON_AddItemToObject(all, "domains", arr);
    warn_stale(outdir, names, nd);
    char *dj = path_join(outdir, "domains.json");
    write_json_atomic(dj, all);

    // the domain table (the test columns when this run made a test split)
    printf("\n%-10s %9s %18s %12s %13s %11s", "domain", "documents", test ? "train/val/test" : "train/val", "bytes",
           "train tokens", "val tokens");
    if (test) printf(" %11s", "test tokens");
    printf(" %9s\n", "bytes/tok");
    double tb = 0, tt = 0, tv = 0, te = 0, tdoc = 0;
    for (const cJSON *d = arr->child; d; d = d->next) {
        double b = json_num(d, "bytes", 0, dj), t = json_num(d, "train_tokens", 0, dj), v = json_num(d, "val_tokens", 0, dj);
        double e = json_num(d, "test_tokens", 0, dj), docs = json_num(d, "documents", 0, dj);
        double ntr = json_num(d, "train_documents", 0, dj), nva = json_num(d, "val_documents", 0, dj);
        char split[48];
        if (test) snprintf(split, sizeof(split), "%.0f/%.0f/%.0f", ntr, nva, json_num(d, "test_documents", 0, dj));
        else snprintf(split, sizeof(split), "%.0f/%.0f", ntr, nva);
        printf("%-10s %9.0f %18s %12.0f %13.0f %11.0f", json_str(d, "name", "?", dj), docs, split, b, t, v);
        if (test) printf(" %11.0f", e);
        printf(" %9.2f\n", b / (t + v + e - docs));  // BOS tokens are not text
        tb += b, tt += t, tv += v, te += e, tdoc += docs;
    }
    printf("%-10s %9.0f %18s %12.0f %13.0f %11.0f", "total", tdoc, "", tb, tt, tv);
    if (test) printf(" %11.0f", te);
    printf(" %9.2f\n", tb / (tt + tv + te - tdoc));
    printf("[mkshards] wrote %s\n", dj);
    cJSON_Delete(all);
    free(dj);
    for (int i = 0; i < nd; i++) free(names[i]);
    free(names);
    tok_free(tok);
    return 0;
}
