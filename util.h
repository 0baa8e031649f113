// util.h — the plumbing every stage shares: checked calls, JSON, safetensors, atomic writes,
// a reproducible RNG, timing, and picking BLIS's fast kernels. Nothing here knows about Gemma;
// model.h builds on it. Style after llm.c: a failing call prints what failed, where, and a hint.
#pragma once
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#include <cjson/cJSON.h>

// ----------------------------------------------------------------------------------------------
// failing loudly: one line, the input that is wrong, and what to do about it; exit code 1

__attribute__((noreturn, format(printf, 1, 2))) static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fflush(stdout);
    fprintf(stderr, "error: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static FILE *fopen_check(const char *path, const char *mode, const char *file, int line) {
    FILE *f = fopen(path, mode);
    if (!f) fail("cannot open %s (mode %s): %s [%s:%d]; check the path and permissions", path, mode,
                 strerror(errno), file, line);
    return f;
}
#define fopenCheck(path, mode) fopen_check(path, mode, __FILE__, __LINE__)

static void fread_check(void *p, size_t size, size_t n, FILE *f, const char *what, const char *file, int line) {
    size_t got = fread(p, size, n, f);
    if (got != n) fail("%s: short read (%zu of %zu items) [%s:%d]; the file is truncated or corrupt", what, got, n,
                       file, line);
}
#define freadCheck(p, size, n, f, what) fread_check(p, size, n, f, what, __FILE__, __LINE__)

static void fwrite_check(const void *p, size_t size, size_t n, FILE *f, const char *what, const char *file, int line) {
    if (n && fwrite(p, size, n, f) != n)
        fail("%s: write failed: %s [%s:%d]; is the disk full?", what, strerror(errno), file, line);
}
#define fwriteCheck(p, size, n, f, what) fwrite_check(p, size, n, f, what, __FILE__, __LINE__)

static void *malloc_check(size_t n, const char *file, int line) {
    void *p = malloc(n ? n : 1);
    if (!p) fail("out of memory allocating %.1f MiB [%s:%d]; use a smaller model, batch or sequence", n / 1048576.0,
                 file, line);
    return p;
}
#define mallocCheck(n) malloc_check(n, __FILE__, __LINE__)

static void *calloc_check(size_t n, const char *file, int line) {
    void *p = calloc(n ? n : 1, 1);
    if (!p) fail("out of memory allocating %.1f MiB [%s:%d]; use a smaller model, batch or sequence", n / 1048576.0,
                 file, line);
    return p;
}
#define callocCheck(n) calloc_check(n, __FILE__, __LINE__)

static char *str_dup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = (char *)mallocCheck(n);
    memcpy(p, s, n);
    return p;
}

static char *path_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = (char *)mallocCheck(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static int dir_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

// mkdir -p
static void make_dirs(const char *path) {
    char *p = str_dup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) fail("cannot create directory %s: %s", p, strerror(errno));
        *s = '/';
    }
    if (mkdir(p, 0755) != 0 && errno != EEXIST) fail("cannot create directory %s: %s", p, strerror(errno));
    free(p);
}

// whole file into memory, NUL-terminated
static char *read_file(const char *path, size_t *len) {
    FILE *f = fopenCheck(path, "rb");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n < 0) fail("cannot size %s", path);
    char *buf = (char *)mallocCheck((size_t)n + 1);
    freadCheck(buf, 1, (size_t)n, f, path);
    buf[n] = 0;
    fclose(f);
    if (len) *len = (size_t)n;
    return buf;
}

// ----------------------------------------------------------------------------------------------
// atomic writes: everything goes to "<path>.tmp.<pid>" and is renamed into place only when
// complete, so a crash or a full disk never leaves a half-written file under the final name.

typedef struct {
    FILE *f;
    char *path, *tmp;
} AtomicFile;

static AtomicFile atomic_open(const char *path) {
    AtomicFile a;
    a.path = str_dup(path);
    size_t n = strlen(path) + 32;
    a.tmp = (char *)mallocCheck(n);
    snprintf(a.tmp, n, "%s.tmp.%d", path, (int)getpid());
    a.f = fopen(a.tmp, "wb");
    if (!a.f) fail("cannot write %s: %s; check the directory exists and is writable", a.tmp, strerror(errno));
    return a;
}

static void atomic_write(AtomicFile *a, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, a->f) != n) {
        int e = errno;
        fclose(a->f);
        unlink(a->tmp);
        fail("writing %s failed: %s; nothing was written under that name (is the disk full?)", a->path, strerror(e));
    }
}

static void atomic_commit(AtomicFile *a) {
    int bad = fflush(a->f) != 0 || fsync(fileno(a->f)) != 0;
    int e = errno;
    bad |= fclose(a->f) != 0;
    if (bad) {
        unlink(a->tmp);
        fail("writing %s failed: %s; nothing was written under that name (is the disk full?)", a->path, strerror(e));
    }
    if (rename(a->tmp, a->path) != 0) {
        e = errno;
        unlink(a->tmp);
        fail("cannot rename %s to %s: %s", a->tmp, a->path, strerror(e));
    }
    free(a->path);
    free(a->tmp);
}

static void write_text_atomic(const char *path, const char *text) {
    AtomicFile a = atomic_open(path);
    atomic_write(&a, text, strlen(text));
    atomic_commit(&a);
}

// a JSON float that stays a float: cJSON prints 10.0 as 10, which strict readers (transformers'
// typed configs) reject for float fields
static cJSON *json_float(double v) {
    char buf[64];
    for (int prec = 9; prec <= 17; prec++) {  // the shortest form that reads back as the same double
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    if (!strpbrk(buf, ".eEn")) strcat(buf, ".0");
    return cJSON_CreateRaw(buf);
}
static void json_add_float(cJSON *o, const char *key, double v) { cJSON_AddItemToObject(o, key, json_float(v)); }

static void write_json_atomic(const char *path, const cJSON *j) {
    char *s = cJSON_Print(j);
    size_t n = strlen(s);
    AtomicFile a = atomic_open(path);
    atomic_write(&a, s, n);
    atomic_write(&a, "\n", 1);
    atomic_commit(&a);
    free(s);
}

// ----------------------------------------------------------------------------------------------
// JSON (cJSON): read a file, and typed getters that name the file and field when something is wrong

static cJSON *json_read(const char *path) {
    char *text = read_file(path, NULL);
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithOpts(text, &end, 0);
    if (!j) {
        size_t at = end ? (size_t)(end - text) : 0;
        fail("%s: malformed JSON near byte %zu; fix or regenerate the file", path, at);
    }
    free(text);
    return j;
}

// present and not null
static const cJSON *json_get(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return (v && !cJSON_IsNull(v)) ? v : NULL;
}

static double json_num(const cJSON *o, const char *key, double def, const char *src) {
    const cJSON *v = json_get(o, key);
    if (!v) return def;
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    if (!cJSON_IsNumber(v)) fail("%s: field \"%s\" must be a number", src, key);
    return v->valuedouble;
}

static long json_int(const cJSON *o, const char *key, long def, const char *src) {
    double x = json_num(o, key, (double)def, src);
    if (x != floor(x)) fail("%s: field \"%s\" must be an integer, got %g", src, key, x);
    return (long)x;
}

static const char *json_str(const cJSON *o, const char *key, const char *def, const char *src) {
    const cJSON *v = json_get(o, key);
    if (!v) return def;
    if (!cJSON_IsString(v)) fail("%s: field \"%s\" must be a string", src, key);
    return v->valuestring;
}

static int json_bool(const cJSON *o, const char *key, int def, const char *src) {
    const cJSON *v = json_get(o, key);
    if (!v) return def;
    if (!cJSON_IsBool(v)) fail("%s: field \"%s\" must be true or false", src, key);
    return cJSON_IsTrue(v);
}

// ----------------------------------------------------------------------------------------------
// number formats

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t f32_to_bf16(float f) {  // round to nearest even, NaN stays NaN
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

static inline float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0) {
        if (man == 0) u = sign;
        else {  // subnormal: normalise
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) { man <<= 1; exp--; }
            man &= 0x3ff;
            u = sign | (exp << 23) | (man << 13);
        }
    } else if (exp == 31) u = sign | 0x7f800000 | (man << 13);
    else u = sign | ((exp - 15 + 127) << 23) | (man << 13);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t f32_to_f16(float f) {  // round to nearest even
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000;
    int32_t exp = (int32_t)((u >> 23) & 0xff) - 127 + 15;
    uint32_t man = u & 0x7fffff;
    if (((u >> 23) & 0xff) == 0xff) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
    if (exp >= 31) return (uint16_t)(sign | 0x7c00);
    if (exp <= 0) {
        if (exp < -10) return (uint16_t)sign;
        man |= 0x800000;
        uint32_t shift = (uint32_t)(14 - exp);
        uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t h = sign | ((uint32_t)exp << 10) | (man >> 13);
    uint32_t rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return (uint16_t)h;
}

// ----------------------------------------------------------------------------------------------
// safetensors: 8-byte little-endian header length, a JSON header, then the raw tensor bytes.
// Files are memory-mapped; every offset is checked against the file size before use.

enum { ST_F32, ST_BF16, ST_F16, ST_I32, ST_I64, ST_I8, ST_U8, ST_OTHER };  // I8/U8: train.c's 8-bit Adam states
static const char *st_dtype_name[] = {"F32", "BF16", "F16", "I32", "I64", "I8", "U8", "?"};
static const int st_dtype_size[] = {4, 2, 2, 4, 8, 1, 1, 0};

typedef struct {
    char *name;
    int dtype;
    int ndim;
    int64_t shape[8];
    size_t numel, nbytes;
    const void *data;  // into the mapping
    const char *file;  // which file it came from (for messages)
} STensor;

typedef struct {
    char *path;
    void *map;
    size_t size;
    int n;
    STensor *t;
} SFile;

static SFile *st_open(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) fail("cannot open %s: %s", path, strerror(errno));
    struct stat st;
    fstat(fd, &st);
    size_t size = (size_t)st.st_size;
    if (size < 8) fail("%s: truncated safetensors file (%zu bytes); re-copy or re-save the checkpoint", path, size);
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) fail("cannot map %s: %s", path, strerror(errno));
    uint64_t hlen;
    memcpy(&hlen, map, 8);
    if (hlen > size - 8) fail("%s: header length %llu runs past the end of the file (%zu bytes); the file is truncated",
                              path, (unsigned long long)hlen, size);
    char *htext = (char *)mallocCheck(hlen + 1);
    memcpy(htext, (char *)map + 8, hlen);
    htext[hlen] = 0;
    cJSON *h = cJSON_Parse(htext);
    free(htext);
    if (!h || !cJSON_IsObject(h)) fail("%s: safetensors header is not valid JSON; the file is corrupt", path);
    SFile *f = (SFile *)callocCheck(sizeof(SFile));
    f->path = str_dup(path);
    f->map = map;
    f->size = size;
    f->t = (STensor *)callocCheck(sizeof(STensor) * (size_t)(cJSON_GetArraySize(h) + 1));
    size_t data0 = 8 + hlen, avail = size - data0;
    for (cJSON *e = h->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) continue;
        STensor *t = &f->t[f->n++];
        t->name = str_dup(e->string);
        t->file = f->path;
        const char *dt = json_str(e, "dtype", "", path);
        t->dtype = ST_OTHER;
        for (int k = 0; k < ST_OTHER; k++)
            if (strcmp(dt, st_dtype_name[k]) == 0) t->dtype = k;
        const cJSON *shape = json_get(e, "shape"), *off = json_get(e, "data_offsets");
        if (!shape || !cJSON_IsArray(shape) || !off || cJSON_GetArraySize(off) != 2)
            fail("%s: tensor %s has no shape or data_offsets; the file is corrupt", path, t->name);
        t->ndim = cJSON_GetArraySize(shape);
        if (t->ndim > 8) fail("%s: tensor %s has %d dims", path, t->name, t->ndim);
        t->numel = 1;
        for (int k = 0; k < t->ndim; k++) {
            t->shape[k] = (int64_t)cJSON_GetArrayItem(shape, k)->valuedouble;
            t->numel *= (size_t)t->shape[k];
        }
        double b = cJSON_GetArrayItem(off, 0)->valuedouble, en = cJSON_GetArrayItem(off, 1)->valuedouble;
        if (b < 0 || en < b || en > (double)avail)
            fail("%s: tensor %s has data offsets [%.0f, %.0f] past the end of the data (%zu bytes); the file is "
                 "truncated or corrupt",
                 path, t->name, b, en, avail);
        t->nbytes = (size_t)(en - b);
        if (t->dtype != ST_OTHER && t->nbytes != t->numel * (size_t)st_dtype_size[t->dtype])
            fail("%s: tensor %s: %zu bytes for %zu elements of %s; the file is corrupt", path, t->name, t->nbytes,
                 t->numel, dt);
        t->data = (char *)map + data0 + (size_t)b;
    }
    cJSON_Delete(h);
    return f;
}

static void st_close(SFile *f) {
    if (!f) return;
    munmap(f->map, f->size);
    for (int i = 0; i < f->n; i++) free(f->t[i].name);
    free(f->t);
    free(f->path);
    free(f);
}

static const STensor *st_find(const SFile *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->t[i].name, name) == 0) return &f->t[i];
    return NULL;
}

// convert any float dtype to fp32
static void st_to_f32(const STensor *t, float *out) {
    if (t->dtype == ST_F32) memcpy(out, t->data, t->numel * 4);
    else if (t->dtype == ST_BF16)
        for (size_t i = 0; i < t->numel; i++) out[i] = bf16_to_f32(((const uint16_t *)t->data)[i]);
    else if (t->dtype == ST_F16)
        for (size_t i = 0; i < t->numel; i++) out[i] = f16_to_f32(((const uint16_t *)t->data)[i]);
    else fail("%s: tensor %s has dtype %s; only F32, BF16 and F16 weights can be read", t->file, t->name,
              st_dtype_name[t->dtype]);
}

// A writer: collect (name, dtype, shape, data) entries, then write header + data atomically.
typedef struct {
    char *name;
    int dtype, ndim;
    int64_t shape[4];
    const void *data;  // caller keeps it alive until st_write
    size_t nbytes;
    int convert_bf16;  // data is f32, store as bf16
} STEntry;

typedef struct {
    STEntry *e;
    int n, cap;
    cJSON *meta;  // string -> string
} STWriter;

static void stw_add(STWriter *w, const char *name, int dtype, int ndim, const int64_t *shape, const void *data) {
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 64;
        w->e = (STEntry *)realloc(w->e, sizeof(STEntry) * (size_t)w->cap);
        if (!w->e) fail("out of memory");
    }
    STEntry *e = &w->e[w->n++];
    memset(e, 0, sizeof(*e));
    e->name = str_dup(name);
    e->ndim = ndim;
    size_t numel = 1;
    for (int k = 0; k < ndim; k++) e->shape[k] = shape[k], numel *= (size_t)shape[k];
    e->data = data;
    if (dtype == ST_BF16) e->convert_bf16 = 1;  // data given as f32
    e->dtype = dtype;
    e->nbytes = numel * (size_t)st_dtype_size[dtype];
}

// add an f32 tensor, stored as `dtype` (F32 or BF16)
static void stw_add_f32(STWriter *w, const char *name, int dtype, int ndim, const int64_t *shape, const float *data) {
    stw_add(w, name, dtype, ndim, shape, data);
}

// Opens path atomically and writes the header of w's tensors (consumes w->meta); the data follows at 8 + *hl.
// stw_write streams the data after it; hip/comm.h's sharded writer has every rank write its part in place.
static AtomicFile stw_open(STWriter *w, const char *path, uint64_t *hl) {
    cJSON *h = cJSON_CreateObject();
    cJSON *meta = w->meta ? w->meta : cJSON_CreateObject();
    if (!json_get(meta, "format")) cJSON_AddStringToObject(meta, "format", "pt");
    cJSON_AddItemToObject(h, "__metadata__", meta);
    w->meta = NULL;
    size_t off = 0;
    for (int i = 0; i < w->n; i++) {
        STEntry *e = &w->e[i];
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "dtype", st_dtype_name[e->dtype]);
        cJSON *s = cJSON_AddArrayToObject(t, "shape");
        for (int k = 0; k < e->ndim; k++) cJSON_AddItemToArray(s, cJSON_CreateNumber((double)e->shape[k]));
        cJSON *o = cJSON_AddArrayToObject(t, "data_offsets");
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(o, cJSON_CreateNumber((double)(off + e->nbytes)));
        off += e->nbytes;
        cJSON_AddItemToObject(h, e->name, t);
    }
    char *text = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    size_t hlen = strlen(text);
    *hl = (hlen + 7) / 8 * 8;
    AtomicFile a = atomic_open(path);
    atomic_write(&a, hl, 8);
    atomic_write(&a, text, hlen);
    for (size_t k = hlen; k < *hl; k++) atomic_write(&a, " ", 1);
    free(text);
    return a;
}

static void stw_write(STWriter *w, const char *path) {
    uint64_t hl;
    AtomicFile a = stw_open(w, path, &hl);
    uint16_t buf[4096];
    for (int i = 0; i < w->n; i++) {
        STEntry *e = &w->e[i];
        if (!e->convert_bf16) atomic_write(&a, e->data, e->nbytes);
        else {
            const float *x = (const float *)e->data;
            size_t numel = e->nbytes / 2;
            for (size_t j = 0; j < numel; j += 4096) {
                size_t m = numel - j < 4096 ? numel - j : 4096;
                for (size_t k = 0; k < m; k++) buf[k] = f32_to_bf16(x[j + k]);
                atomic_write(&a, buf, m * 2);
            }
        }
        free(e->name);
    }
    atomic_commit(&a);
    free(w->e);
    memset(w, 0, sizeof(*w));
}

// ----------------------------------------------------------------------------------------------
// RNG: xoshiro256** seeded by splitmix64. The whole state is 4 words, saved in checkpoints.

typedef struct {
    uint64_t s[4];
} Rng;

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static Rng rng_seed(uint64_t seed) {
    Rng r;
    for (int i = 0; i < 4; i++) r.s[i] = splitmix64(&seed);
    return r;
}

static inline uint64_t rng_next(Rng *r) {
    uint64_t *s = r->s;
    uint64_t x = s[1] * 5, res = ((x << 7) | (x >> 57)) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return res;
}

// uniform in [0, 1) with 53 bits
static inline double rng_uniform(Rng *r) { return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }

static inline double rng_normal(Rng *r) {  // Box-Muller
    double u1 = rng_uniform(r), u2 = rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

// ----------------------------------------------------------------------------------------------
// timing

static double now_sec(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static const char *fmt_duration(double s, char *buf) {  // buf: 32 bytes
    if (s < 0 || s != s) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, 32, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else if (t >= 60) snprintf(buf, 32, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, 32, "%.1fs", s);
    return buf;
}

// ----------------------------------------------------------------------------------------------
// command-line flags, after llama2.c's run.c (one flat parse, one error_usage), shared by every program:
// a program describes its settings struct in one Flag table, and the table gives --help (each flag, its
// type, default and accepted values), the parse, the printout of the resolved settings at start and, for
// train and prune, the settings a checkpoint saves and --resume restores. Values are parsed whole and
// range-checked: an integer never wraps or truncates, a float is finite, a boolean is not a number; an
// unknown flag or an old spelling is refused. Every refusal is one line naming the flag, the value and
// what is accepted.

enum { F_STR, F_INT, F_FLOAT, F_BOOL, F_LIST };
static const char *flag_type_name[] = {"string", "int", "float", "flag", "list"};
// what a checkpoint does with a flag: not saved | saved, --resume may change it | saved, --resume must keep it
enum { SAVE_NO, SAVE_RUN, SAVE_FIXED };

typedef struct {  // F_LIST: the values of a repeatable flag (--model a --model b, or --info a b c)
    int n;
    const char **v;
} StrList;

typedef struct {
    const char *name;    // without the leading "--"
    int type;            // F_*
    size_t off;          // offsetof the field: const char * | int | double | int (0/1) | StrList
    const char *def;     // the default as it would be typed; NULL: the flag is required
    const char *accept;  // numbers: ">= 1", "> 0", "[0, 1]", "(0, 1]", "[0, 1)"; strings: "a|b|c"; NULL: any
    int save;            // SAVE_*
    const char *help;
} Flag;

typedef struct {  // an old spelling: refused, with what to write instead
    const char *old, *use;
} Renamed;

typedef struct {
    const char *prog;     // as the user types it: "./prune", "./profile logits"
    const char *usage;    // the lines before the flag list (each ending in \n)
    const Flag *f;
    int n;
    const Renamed *renamed;
    int nrenamed;
    const char *notes;    // printed after the flag list, or NULL
    const char *letters;  // one-letter aliases, "q=quiet" (-q is --quiet), or NULL
} Cli;

#define COUNT_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

// the spellings ./prune took before every program used the same name for the same knob
static const Renamed renamed_flags[] = {
    {"clip", "--grad-clip X"},
    {"lr-floor", "--min-lr-frac X"},
    {"ckpt-every", "--save-every N"},
    {"warmup-frac", "--warmup N (in steps; -1: 10% of --steps)"},
    {"dbl", "--mix dynamic|static"},
    {"dbl-clip0", "--dbl-clip (a flag, no value)"},
};

// the one way a command line is refused: one line, and where to read more
__attribute__((noreturn, format(printf, 2, 3))) static void usage_fail(const Cli *cli, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fail("%s; see %s --help", msg, cli->prog);
}

static void *flag_ptr(const Flag *f, const void *s) { return (char *)s + f->off; }

static const Flag *flag_find(const Cli *cli, const char *name) {
    for (int i = 0; i < cli->n; i++)
        if (!strcmp(cli->f[i].name, name)) return &cli->f[i];
    return NULL;
}

static int flag_index(const Cli *cli, const char *name) {
    const Flag *f = flag_find(cli, name);
    if (!f) fail("internal: %s has no flag --%s", cli->prog, name);
    return (int)(f - cli->f);
}

// is x inside an accept range (">= a", "> a", "[a, b]", "(a, b]", "[a, b)", "(a, b)")?
static int range_holds(const char *acc, double x) {
    double a, b;
    char open, close;
    if (!acc) return 1;
    if (sscanf(acc, ">= %lf", &a) == 1) return x >= a;
    if (sscanf(acc, "> %lf", &a) == 1) return x > a;
    if (sscanf(acc, "%c%lf, %lf%c", &open, &a, &b, &close) == 4 && (open == '[' || open == '(') &&
        (close == ']' || close == ')'))
        return (open == '[' ? x >= a : x > a) && (close == ']' ? x <= b : x < b);
    fail("internal: accept range \"%s\" is not one of >= a, > a, [a, b], (a, b]", acc);
}

static int choice_holds(const char *acc, const char *v) {
    if (!acc) return 1;
    size_t n = strlen(v);
    for (const char *p = acc; *p;) {
        const char *e = strchr(p, '|');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && !strncmp(p, v, n)) return 1;
        p += len + (e != NULL);
    }
    return 0;
}

// strict number parsing: the whole string, no leading blanks, no wrap, finite
static int parse_int_whole(const char *v, int *out) {
    if (!((*v >= '0' && *v <= '9') || ((*v == '-' || *v == '+') && v[1] >= '0' && v[1] <= '9'))) return 0;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (*end || errno == ERANGE || x < INT_MIN || x > INT_MAX) return 0;
    *out = (int)x;
    return 1;
}

static int parse_float_whole(const char *v, double *out) {
    if (!((*v >= '0' && *v <= '9') || *v == '.' || *v == '-' || *v == '+')) return 0;  // no "nan", "inf", blanks
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end || !isfinite(x) || errno == ERANGE) return 0;
    *out = x;
    return 1;
}

// set one flag from its textual value (the command line, or a default); `from` names where it came from
static void flag_set(const Cli *cli, const Flag *f, void *s, const char *v, const char *from) {
    void *p = flag_ptr(f, s);
    const char *acc = f->accept ? f->accept : "";
    const char *sep = *acc ? " " : "";
    if (f->type == F_STR) {
        if (!choice_holds(f->accept, v)) {
            char all[256] = "";
            for (const char *c = f->accept; *c && strlen(all) < sizeof all - 3; c++) {
                if (*c != '|') strncat(all, c, 1);
                else if (c > f->accept && c[1]) strcat(all, ", ");
            }
            usage_fail(cli, "--%s %s%s is not one of: %s", f->name, v, from, all);
        }
        *(const char **)p = v;
    } else if (f->type == F_INT) {
        int x;
        if (!parse_int_whole(v, &x) || !range_holds(f->accept, x)) {
            if (!f->accept) usage_fail(cli, "--%s %s%s: expected a whole number from %d to %d", f->name, v, from, INT_MIN, INT_MAX);
            usage_fail(cli, "--%s %s%s: expected a whole number %s%s%s", f->name, v, from, *acc == '>' ? "" : "in ", acc,
                       *acc == '>' ? ", at most 2147483647" : "");
        }
        *(int *)p = x;
    } else if (f->type == F_FLOAT) {
        double x;
        if (!parse_float_whole(v, &x) || !range_holds(f->accept, x))
            usage_fail(cli, "--%s %s%s: expected a finite number%s%s%s", f->name, v, from, sep,
                       *acc == '(' || *acc == '[' ? "in " : "", acc);
        *(double *)p = x;
    } else if (f->type == F_BOOL) {
        if (strcmp(v, "0") && strcmp(v, "1")) fail("internal: --%s default \"%s\" is not 0 or 1", f->name, v);
        *(int *)p = *v == '1';
    } else {
        StrList *l = (StrList *)p;
        l->v = (const char **)realloc((void *)l->v, sizeof(char *) * (size_t)(l->n + 1));
        if (!l->v) fail("out of memory");
        l->v[l->n++] = v;
    }
}

// the value as text (for --help, the settings printout and resume messages); buf: 64 bytes
static const char *flag_text(const Flag *f, const void *s, char *buf) {
    const void *p = flag_ptr(f, s);
    if (f->type == F_STR) return *(const char *const *)p ? *(const char *const *)p : "";
    if (f->type == F_FLOAT) snprintf(buf, 64, "%g", *(const double *)p);
    else if (f->type == F_LIST) {
        const StrList *l = (const StrList *)p;
        buf[0] = 0;
        for (int i = 0; i < l->n && strlen(buf) < 48; i++) snprintf(buf + strlen(buf), 64 - strlen(buf), "%s%s", i ? "," : "", l->v[i]);
    } else snprintf(buf, 64, "%d", *(const int *)p);
    return buf;
}

static int flag_same(const Flag *f, const void *a, const void *b) {
    const void *x = flag_ptr(f, a), *y = flag_ptr(f, b);
    if (f->type == F_STR) {
        const char *u = *(const char *const *)x, *v = *(const char *const *)y;
        return !strcmp(u ? u : "", v ? v : "");
    }
    if (f->type == F_FLOAT) return *(const double *)x == *(const double *)y;
    if (f->type == F_LIST) return 1;  // lists are never saved
    return *(const int *)x == *(const int *)y;
}

static void flag_copy(const Flag *f, void *dst, const void *src) {
    size_t n = f->type == F_STR ? sizeof(char *) : f->type == F_FLOAT ? sizeof(double)
               : f->type == F_LIST ? sizeof(StrList) : sizeof(int);
    memcpy(flag_ptr(f, dst), flag_ptr(f, src), n);
}

static void flags_defaults(const Cli *cli, void *s) {
    for (int i = 0; i < cli->n; i++) {
        const Flag *f = &cli->f[i];
        if (f->type == F_LIST) memset(flag_ptr(f, s), 0, sizeof(StrList));
        else if (f->def) flag_set(cli, f, s, f->def, " (default)");
        else if (f->type == F_STR) *(const char **)flag_ptr(f, s) = NULL;
        else memset(flag_ptr(f, s), 0, f->type == F_FLOAT ? sizeof(double) : sizeof(int));
    }
}

static void flags_usage(const Cli *cli) {
    printf("%s", cli->usage);
    int w = 14;
    for (int i = 0; i < cli->n; i++) w = (int)strlen(cli->f[i].name) + 1 > w ? (int)strlen(cli->f[i].name) + 1 : w;
    for (int i = 0; i < cli->n; i++) {
        const Flag *f = &cli->f[i];
        const char *v = f->def ? f->def : "required";
        if (f->def && f->type == F_BOOL) v = *f->def == '1' ? "on" : "off";
        else if (f->def && !*f->def) v = "none";
        int numeric = (f->type == F_INT || f->type == F_FLOAT) && f->accept;
        printf("  --%-*s %-6s  %s%s%s%s", w, f->name, flag_type_name[f->type], f->help, numeric ? " (" : "",
               numeric ? f->accept : "", numeric ? ")" : "");
        printf("  [%s]\n", v);
    }
    if (cli->letters) printf("  (short forms: %s)\n", cli->letters);
    if (cli->notes) printf("%s", cli->notes);
}

// argv[first..] over *s (already holding the defaults); given[i] (may be NULL) says flag i was on the command line
static void flags_parse(const Cli *cli, void *s, int argc, char **argv, int first, int *given) {
    for (int a = first; a < argc; a++)
        if (!strcmp(argv[a], "--help") || !strcmp(argv[a], "-h")) {
            flags_usage(cli);
            exit(0);
        }
    for (int a = first; a < argc; a++) {
        const char *arg = argv[a];
        const Flag *f = NULL;
        if (!strncmp(arg, "--", 2)) f = flag_find(cli, arg + 2);
        else if (arg[0] == '-' && arg[1] && !arg[2] && cli->letters)
            for (const char *l = cli->letters; l && !f; l = strchr(l, ','), l = l ? l + 1 : NULL)
                if (l[0] == arg[1] && l[1] == '=') {
                    char name[64];
                    snprintf(name, sizeof name, "%.*s", (int)strcspn(l + 2, ","), l + 2);
                    f = flag_find(cli, name);
                }
        if (!f) {
            for (int i = 0; !strncmp(arg, "--", 2) && i < cli->nrenamed; i++)
                if (!strcmp(arg + 2, cli->renamed[i].old))
                    usage_fail(cli, "%s is no longer accepted: use %s", arg, cli->renamed[i].use);
            usage_fail(cli, !strncmp(arg, "--", 2) ? "unknown flag %s" : "unexpected argument \"%s\" (flags start with --)", arg);
        }
        if (f->type == F_BOOL) *(int *)flag_ptr(f, s) = 1;
        else {
            int got = 0;
            do {
                if (a + 1 >= argc || !strncmp(argv[a + 1], "--", 2)) {
                    if (got) break;
                    usage_fail(cli, "--%s needs a value: %s", f->name, f->help);
                }
                flag_set(cli, f, s, argv[++a], "");
                got++;
            } while (f->type == F_LIST);  // a list takes every value up to the next flag
        }
        if (given) given[f - cli->f] = 1;
    }
    for (int i = 0; i < cli->n; i++)
        if (!cli->f[i].def && !(given && given[i]) &&
            !(cli->f[i].type == F_STR ? *(const char **)flag_ptr(&cli->f[i], s) != NULL
                                      : cli->f[i].type == F_LIST && ((StrList *)flag_ptr(&cli->f[i], s))->n > 0))
            usage_fail(cli, "--%s is required: %s", cli->f[i].name, cli->f[i].help);
}

// the resolved settings, "| name=value ..." in lines of at most ~110 characters, so every log explains itself
static void flags_print(const Cli *cli, const void *s, FILE *out) {
    char line[256] = "|", buf[64];
    for (int i = 0; i < cli->n; i++) {
        char item[200];
        snprintf(item, sizeof item, " %s=%s", cli->f[i].name, flag_text(&cli->f[i], s, buf));
        if (strlen(line) + strlen(item) > 110 && strlen(line) > 1) {
            fprintf(out, "%s\n", line);
            strcpy(line, "|");
        }
        strncat(line, item, sizeof line - strlen(line) - 1);
    }
    fprintf(out, "%s\n", line);
}

// the settings a checkpoint keeps: every saved flag by its name
static cJSON *flags_to_json(const Cli *cli, const void *s) {
    cJSON *j = cJSON_CreateObject();
    for (int i = 0; i < cli->n; i++) {
        const Flag *f = &cli->f[i];
        const void *p = flag_ptr(f, s);
        if (f->save == SAVE_NO) continue;
        if (f->type == F_STR) cJSON_AddStringToObject(j, f->name, *(const char *const *)p ? *(const char *const *)p : "");
        else if (f->type == F_FLOAT) cJSON_AddNumberToObject(j, f->name, *(const double *)p);  // round-trips exactly
        else if (f->type == F_BOOL) cJSON_AddBoolToObject(j, f->name, *(const int *)p);
        else if (f->type == F_INT) cJSON_AddNumberToObject(j, f->name, *(const int *)p);
    }
    return j;
}

// Read them back as strictly as the command line: the right JSON type (a boolean is not a number), whole
// integers in range, finite floats, accepted values; a key that is no saved flag means the file was edited or
// belongs to another program.
static void flags_from_json(const Cli *cli, void *s, const cJSON *j, const char *src) {
    if (!cJSON_IsObject(j)) fail("%s: \"settings\" must be an object; the file is damaged", src);
    for (const cJSON *e = j->child; e; e = e->next) {
        const Flag *f = flag_find(cli, e->string);
        if (!f || f->save == SAVE_NO)
            fail("%s: settings name \"%s\", which is no saved flag of %s; the file is damaged or from another program",
                 src, e->string, cli->prog);
        void *p = flag_ptr(f, s);
        double x = e->valuedouble;
        int ok;
        if (f->type == F_STR) {
            ok = cJSON_IsString(e) && choice_holds(f->accept, e->valuestring);
            if (ok) *(const char **)p = str_dup(e->valuestring);
        } else if (f->type == F_BOOL) {
            ok = cJSON_IsBool(e);
            if (ok) *(int *)p = cJSON_IsTrue(e);
        } else if (f->type == F_INT) {
            ok = cJSON_IsNumber(e) && x == floor(x) && x >= INT_MIN && x <= INT_MAX && range_holds(f->accept, x);
            if (ok) *(int *)p = (int)x;
        } else {
            ok = cJSON_IsNumber(e) && isfinite(x) && range_holds(f->accept, x);
            if (ok) *(double *)p = x;
        }
        if (!ok) {
            char *t = cJSON_PrintUnformatted(e);
            fail("%s: setting \"%s\" is %s, not a valid %s%s%s; the file is damaged", src, e->string, t,
                 flag_type_name[f->type], f->accept ? " " : "", f->accept ? f->accept : "");
        }
    }
}

// --resume: *s becomes the saved settings, then what the command line (*cmd, flags marked in given) changes.
// A SAVE_FIXED flag given with another value is refused; a SAVE_RUN one is taken and printed.
static void flags_resume(const Cli *cli, void *s, const void *cmd, const int *given, const cJSON *saved, const char *src) {
    flags_defaults(cli, s);
    flags_from_json(cli, s, saved, src);
    for (int i = 0; i < cli->n; i++) {
        const Flag *f = &cli->f[i];
        if (f->save != SAVE_NO && !given[i]) continue;
        char b1[64], b2[64];
        if (f->save != SAVE_NO && !flag_same(f, s, cmd)) {
            if (f->save == SAVE_FIXED)
                fail("--resume: %s was made with --%s %s, this run has --%s %s; resume with the same value or use another "
                     "--out", src, f->name, flag_text(f, s, b1), f->name, flag_text(f, cmd, b2));
            printf("| resume: --%s %s (was %s)\n", f->name, flag_text(f, cmd, b2), flag_text(f, s, b1));
        }
        flag_copy(f, s, cmd);
    }
}

// for the small command lines of test tools: --flag value pairs, parsed as strictly as the table's
static const char *arg_str(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) fail("flag %s needs a value", argv[*i]);
    return argv[++*i];
}

static long arg_int(int argc, char **argv, int *i) {
    const char *flag = argv[*i], *s = arg_str(argc, argv, i);
    int v;
    if (!parse_int_whole(s, &v)) fail("flag %s expects a whole number from %d to %d, got \"%s\"", flag, INT_MIN, INT_MAX, s);
    return v;
}

static double arg_float(int argc, char **argv, int *i) {
    const char *flag = argv[*i], *s = arg_str(argc, argv, i);
    double v;
    if (!parse_float_whole(s, &v)) fail("flag %s expects a finite number, got \"%s\"", flag, s);
    return v;
}
