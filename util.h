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
#include <dirent.h>
#include <signal.h>
#include <sys/syscall.h>

// ----------------------------------------------------------------------------------------------
// failing loudly: one line, the input that is wrong, and what to do about it; exit code 1

// The fuzz targets (test/fuzz/) build with FUZZ_CATCH_FAIL: a refused input is a normal outcome there, so
// fail() keeps the message in fuzz_msg and jumps back to the target instead of exiting.
#ifdef FUZZ_CATCH_FAIL
#include <setjmp.h>
static jmp_buf fuzz_jump;
static char fuzz_msg[1024];
#endif

__attribute__((noreturn, format(printf, 1, 2))) static void fail(const char *fmt, ...) {
    char msg[4096], line[4096 * 4 + 1], *o = line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    // one line whatever the message quotes: a name or value from a file may hold a newline or escape codes
    for (const unsigned char *p = (const unsigned char *)msg; *p; p++)
        if (*p < 0x20 || *p == 0x7f) o += sprintf(o, "\\x%02x", *p);
        else *o++ = (char)*p;
    *o = 0;
#ifdef FUZZ_CATCH_FAIL
    snprintf(fuzz_msg, sizeof fuzz_msg, "%s", line);
    longjmp(fuzz_jump, 1);
#endif
    fflush(stdout);
    fprintf(stderr, "error: %s\n", line);
    exit(1);
}

// `make debug` builds with AddressSanitizer, whose leak check at exit fails an otherwise successful run. Every
// program frees what it allocates, except these known one-time allocations that live until exit:
//   flags_from_json: the settings strings of a resumed run (the command line's replace some of them)
//   flags_parse: the arrays of list flags given on the command line
// (the settings mix argv, defaults and these, so nothing can free them one by one)
#if defined(__SANITIZE_ADDRESS__)
#define LSAN_SUPPRESSIONS
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LSAN_SUPPRESSIONS
#endif
#endif
#ifdef LSAN_SUPPRESSIONS
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:flags_from_json\nleak:flags_parse\n"; }
const char *__lsan_default_options(void);
const char *__lsan_default_options(void) { return "print_suppressions=0"; }  // a clean run prints nothing
#endif

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

// a run's --out is a directory: anything else already at that name (a file, a FIFO, /dev/null) is refused at
// once, before the work, not when the first checkpoint is written
static void check_dir_or_new(const char *path) {
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISDIR(st.st_mode))
        fail("%s exists and is not a directory; give a directory there (or a name that does not exist yet)", path);
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
    check_dir_or_new(p);
    free(p);
}

// whole file into memory, NUL-terminated. Read to the end rather than trusting a size: a directory "opens"
// and reports a huge size, a FIFO or /dev/stdin none at all.
static char *read_file(const char *path, size_t *len) {
    FILE *f = fopenCheck(path, "rb");
    struct stat st = {0};
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode))
        fail("%s is a directory, not a file; give the path of the file itself", path);
    size_t n = 0, cap = S_ISREG(st.st_mode) && st.st_size > 0 ? (size_t)st.st_size + 1 : 65536;
    char *buf = (char *)mallocCheck(cap);
    for (size_t got; (got = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) {
            buf = (char *)realloc(buf, cap *= 2);
            if (!buf) fail("out of memory reading %s (%zu bytes so far)", path, n);
        }
    }
    if (ferror(f)) fail("cannot read %s: %s; check the file", path, strerror(errno));
    fclose(f);
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

// ----------------------------------------------------------------------------------------------
// atomic writes: everything goes to "<path>.tmp.<pid>" and is renamed into place only when
// complete, so a crash or a full disk never leaves a half-written file under the final name.
// Only a regular file (or a new name) is ever renamed over: "-" is stdout, and a device node, FIFO or
// socket (/dev/null, a pipe to another program) is written directly, since renaming over it would replace
// the node itself with a regular file. A directory is refused; a symlink is followed, so the file it
// points at is replaced and the link stays.

typedef struct {
    FILE *f;
    char *path, *tmp;  // tmp == NULL: written directly (stdout, a device, a FIFO)
    int is_stdout;
} AtomicFile;

// "-" as an output file: the data goes to the real stdout, and from then on the program's own printing
// goes to stderr so it cannot mix into the data (a program that prints before it writes claims it early)
static FILE *stdout_claim(void) {
    static FILE *data;
    if (!data) {
        fflush(stdout);
        int fd = dup(1);
        if (fd < 0 || !(data = fdopen(fd, "wb")) || dup2(2, 1) < 0) fail("cannot write to stdout: %s", strerror(errno));
    }
    return data;
}

static AtomicFile atomic_open(const char *path) {
    AtomicFile a = {NULL, NULL, NULL, 0};
    if (strcmp(path, "-") == 0) {
        a.f = stdout_claim();
        a.path = str_dup("<stdout>");
        a.is_stdout = 1;
        return a;
    }
    struct stat st;
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode)) fail("%s is a directory; give the name of a file to write", path);
        if (!S_ISREG(st.st_mode)) {
            a.f = fopen(path, "wb");
            if (!a.f) fail("cannot write %s: %s", path, strerror(errno));
            a.path = str_dup(path);
            return a;
        }
    }
    struct stat lst;
    int link = lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode);
    char *real = link ? realpath(path, NULL) : NULL;
    if (link && !real) fail("%s is a symlink to nowhere (%s); remove it or point it at a file", path, strerror(errno));
    a.path = real ? real : str_dup(path);
    size_t n = strlen(a.path) + 32;
    a.tmp = (char *)mallocCheck(n);
    snprintf(a.tmp, n, "%s.tmp.%d", a.path, (int)getpid());
    // a new file of our own: never follow a link or reuse whatever already has the temporary name
    int fd = open(a.tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0666);
    if (fd < 0 && errno == EEXIST && unlink(a.tmp) == 0) fd = open(a.tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0666);
    if (fd < 0 || !(a.f = fdopen(fd, "wb")))
        fail("cannot write %s: %s; check the directory exists and is writable", a.tmp, strerror(errno));
    return a;
}

static void atomic_write(AtomicFile *a, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, a->f) != n) {
        int e = errno;
        if (!a->is_stdout) fclose(a->f);
        if (a->tmp) unlink(a->tmp);
        fail("writing %s failed: %s%s", a->path, strerror(e),
             a->tmp ? "; nothing was written under that name (is the disk full?)" : "");
    }
}

static void atomic_commit(AtomicFile *a) {
    int bad = fflush(a->f) != 0 || (a->tmp && fsync(fileno(a->f)) != 0);  // fsync: regular files only
    int e = errno;
    if (!a->is_stdout) bad |= fclose(a->f) != 0;
    if (bad) {
        if (a->tmp) unlink(a->tmp);
        fail("writing %s failed: %s%s", a->path, strerror(e),
             a->tmp ? "; nothing was written under that name (is the disk full?)" : "");
    }
    if (a->tmp && rename(a->tmp, a->path) != 0) {
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
// a number, or null where it is not finite (an unknown spread): what cJSON prints for NaN anyway, so a reader
// sees the same in memory as in the file, and json_num gives its default there
static void json_add_num(cJSON *o, const char *key, double v) {
    if (isfinite(v)) cJSON_AddNumberToObject(o, key, v);
    else cJSON_AddNullToObject(o, key);
}

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

// JSON text of `n` bytes: one value and nothing after it but whitespace (cJSON alone stops at the end of the
// first value and would take `{...} garbage`, or text cut at a NUL byte)
static cJSON *json_parse(const char *text, size_t n, const char *src) {
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text, n, &end, 0);
    if (!j) fail("%s: malformed JSON near byte %zu; fix or regenerate the file", src, end ? (size_t)(end - text) : 0);
    while (end < text + n && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')) end++;
    if (end < text + n) {
        cJSON_Delete(j);
        fail("%s: unexpected bytes after the JSON value at byte %zu; fix or regenerate the file", src,
             (size_t)(end - text));
    }
    return j;
}

static cJSON *json_read(const char *path) {
    size_t n;
    char *text = read_file(path, &n);
    cJSON *j = json_parse(text, n, path);
    free(text);
    return j;
}

// present and not null
static const cJSON *json_get(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return (v && !cJSON_IsNull(v)) ? v : NULL;
}

// a finite number (true/false are not numbers; 1e999 parses as infinity and is refused)
static double json_num(const cJSON *o, const char *key, double def, const char *src) {
    const cJSON *v = json_get(o, key);
    if (!v) return def;
    if (!cJSON_IsNumber(v)) fail("%s: field \"%s\" must be a number; fix the file", src, key);
    if (!isfinite(v->valuedouble)) fail("%s: field \"%s\" is not a finite number; fix the file", src, key);
    return v->valuedouble;
}

// an integer that fits an int: 4294967557 is refused, never wrapped to 261
static int json_int(const cJSON *o, const char *key, int def, const char *src) {
    double x = json_num(o, key, (double)def, src);
    if (x != floor(x)) fail("%s: field \"%s\" must be an integer, got %.17g; fix the file", src, key, x);
    if (x < INT32_MIN || x > INT32_MAX)
        fail("%s: field \"%s\" = %.0f does not fit a 32-bit integer; fix the file", src, key, x);
    return (int)x;
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
// Files are memory-mapped. The reader is exactly as strict as the reference one (huggingface/safetensors,
// safetensors/src/tensor.rs: read_metadata and Metadata::validate): a header of at most 100 MB of UTF-8
// JSON and nothing after it but whitespace; known dtypes; shapes and offsets non-negative integers;
// unique names; the ranges, sorted, tile the data section from 0 to its end, each exactly numel x dtype
// bytes. Anything else could make two tensors share bytes or leave bytes nobody reads.

enum { ST_F32, ST_BF16, ST_F16, ST_I32, ST_I64, ST_I8, ST_U8, ST_OTHER };  // I8/U8: train.c's 8-bit Adam states
static const char *st_dtype_name[] = {"F32", "BF16", "F16", "I32", "I64", "I8", "U8", "?"};
static const int st_dtype_size[] = {4, 2, 2, 4, 8, 1, 1, 0};
// every dtype the reference reader knows, with its size in bits: the ones we cannot convert are still a valid
// file (their bytes must be accounted for), refused only when a stage asks for them
static const struct { const char *name; int bits; } st_all_dtypes[] = {
    {"BOOL", 8}, {"F4", 4}, {"F6_E2M3", 6}, {"F6_E3M2", 6}, {"U8", 8}, {"I8", 8}, {"F8_E5M2", 8}, {"F8_E4M3", 8},
    {"F8_E8M0", 8}, {"F8_E4M3FNUZ", 8}, {"F8_E5M2FNUZ", 8}, {"I16", 16}, {"U16", 16}, {"F16", 16}, {"BF16", 16},
    {"I32", 32}, {"U32", 32}, {"F32", 32}, {"C64", 64}, {"F64", 64}, {"I64", 64}, {"U64", 64}};
#define ST_MAX_HEADER 100000000  // the reference's MAX_HEADER_SIZE

typedef struct {
    char *name;
    int dtype;
    int ndim;
    int64_t shape[8];  // the first 8 dims (every tensor we use has 1 or 2)
    size_t numel, nbytes;
    size_t begin;      // offset in the data section (the ranges are checked, then sorted by it)
    const void *data;  // into the mapping; any alignment
    const char *file;  // which file it came from (for messages)
} STensor;

typedef struct {
    char *path;
    void *map;  // NULL when the caller owns the bytes (st_parse)
    size_t size;
    int n;
    STensor *t;
} SFile;

// Strict JSON text, beyond what cJSON checks: UTF-8; no control bytes in strings; only the four JSON
// whitespace bytes between tokens; numbers in JSON's grammar (cJSON takes 01, 1. and .5). Every number's
// lexeme is recorded in order: plain[i] = 1 when the i-th is a non-negative integer written without
// fraction, exponent or sign, as serde requires of a usize. Returns the number count, -1 when malformed.
static long json_text_check(const unsigned char *s, size_t n, unsigned char *plain, long cap) {
    long k = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        if (c == '"') {
            for (i++;; i++) {
                if (i >= n || s[i] < 0x20) return -1;
                if (s[i] == '\\') i++;
                else if (s[i] == '"') break;
            }
            i++;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            size_t j = i + (c == '-');
            if (j >= n || !(s[j] >= '0' && s[j] <= '9')) return -1;
            if (s[j] == '0') j++;
            else while (j < n && s[j] >= '0' && s[j] <= '9') j++;
            int integer = c != '-' && !(j < n && (s[j] == '.' || s[j] == 'e' || s[j] == 'E'));
            if (j < n && s[j] == '.') {
                if (++j >= n || !(s[j] >= '0' && s[j] <= '9')) return -1;
                while (j < n && s[j] >= '0' && s[j] <= '9') j++;
            }
            if (j < n && (s[j] == 'e' || s[j] == 'E')) {
                if (++j < n && (s[j] == '+' || s[j] == '-')) j++;
                if (j >= n || !(s[j] >= '0' && s[j] <= '9')) return -1;
                while (j < n && s[j] >= '0' && s[j] <= '9') j++;
            }
            if (k < cap) plain[k] = (unsigned char)integer;
            k++;
            i = j;
        } else if (c < 0x20 && c != ' ' && c != '\t' && c != '\n' && c != '\r') return -1;
        else if (c >= 0x80) {  // UTF-8 outside strings is a syntax error anyway; inside, checked below
            return -1;
        } else i++;
    }
    return k;
}

static int utf8_valid(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t len = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (!len || i + len > n) return 0;
        for (size_t k = 1; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80) return 0;
        if ((c == 0xE0 && s[i + 1] < 0xA0) || (c == 0xED && s[i + 1] > 0x9F) || (c == 0xF0 && s[i + 1] < 0x90) ||
            (c == 0xF4 && s[i + 1] > 0x8F))
            return 0;  // overlong, surrogate, past U+10FFFF
        i += len;
    }
    return 1;
}

// number nodes in depth-first order are the lexemes in text order: a number not written as a plain integer
// becomes NaN, which every integer check below refuses
static void json_mark_plain(cJSON *node, const unsigned char *plain, long n, long *k) {
    for (; node; node = node->next) {
        if (cJSON_IsNumber(node) && (*k >= n || !plain[*k])) node->valuedouble = NAN;
        *k += cJSON_IsNumber(node);
        if (node->child) json_mark_plain(node->child, plain, n, k);
    }
}

// a JSON number that is a non-negative integer below 2^53 (beyond, doubles skip integers)
static int json_is_index(const cJSON *v, double *out) {
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble < 9007199254740992.0) ||
        v->valuedouble != floor(v->valuedouble))
        return 0;
    *out = v->valuedouble;
    return 1;
}

static int str_cmp_ptr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int st_cmp_begin(const void *a, const void *b) {
    const STensor *x = (const STensor *)a, *y = (const STensor *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

static void st_free(SFile *f) {
    if (!f) return;
    for (int i = 0; i < f->n; i++) free(f->t[i].name);
    free(f->t);
    free(f->path);
    free(f);
}

// Parse `size` bytes of a safetensors file (the caller keeps them alive while the SFile is used).
static SFile *st_parse(const void *buf, size_t size, const char *path) {
    const unsigned char *b = (const unsigned char *)buf;
    if (size < 8) fail("%s: truncated safetensors file (%zu bytes); re-copy or re-save the checkpoint", path, size);
    uint64_t hlen;
    memcpy(&hlen, b, 8);
    if (hlen > size - 8) fail("%s: header length %llu runs past the end of the file (%zu bytes); the file is truncated",
                              path, (unsigned long long)hlen, size);
    if (hlen > ST_MAX_HEADER)
        fail("%s: header of %llu bytes, over the 100 MB safetensors allows; the file is corrupt", path,
             (unsigned long long)hlen);
    const unsigned char *htext = b + 8;
    long nnum = json_text_check(htext, hlen, NULL, 0);
    if (nnum < 0 || !utf8_valid(htext, hlen)) fail("%s: safetensors header is not valid JSON; the file is corrupt", path);
    unsigned char *plain = (unsigned char *)mallocCheck((size_t)nnum + 1);
    json_text_check(htext, hlen, plain, nnum);
    const char *end = NULL;
    cJSON *h = cJSON_ParseWithLengthOpts((const char *)htext, hlen, &end, 0);
    while (h && end < (const char *)htext + hlen && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r')) end++;
    if (!h || !cJSON_IsObject(h) || end != (const char *)htext + hlen)
        fail("%s: safetensors header is not one JSON object (or has bytes after it); the file is corrupt", path);
    long k = 0;
    json_mark_plain(h->child, plain, nnum, &k);
    free(plain);
    if (k != nnum) fail("%s: safetensors header is not valid JSON; the file is corrupt", path);

    SFile *f = (SFile *)callocCheck(sizeof(SFile));
    f->path = str_dup(path);
    f->size = size;
    f->t = (STensor *)callocCheck(sizeof(STensor) * (size_t)(cJSON_GetArraySize(h) + 1));
    size_t data0 = 8 + (size_t)hlen, avail = size - data0;
    {  // unique names (sorted, so a header of a million names is not a million squared comparisons)
        int nk = cJSON_GetArraySize(h), i = 0;
        const char **names = (const char **)mallocCheck(sizeof(char *) * (size_t)(nk + 1));
        for (cJSON *e = h->child; e; e = e->next) names[i++] = e->string;
        qsort(names, (size_t)nk, sizeof(char *), str_cmp_ptr);
        for (i = 1; i < nk; i++)
            if (strcmp(names[i - 1], names[i]) == 0)
                fail("%s: the name \"%s\" appears twice in the header; the file is corrupt", path, names[i]);
        free(names);
    }
    for (cJSON *e = h->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {  // null or {"string": "string", ...}
            if (!cJSON_IsNull(e) && !cJSON_IsObject(e)) fail("%s: __metadata__ is not an object; the file is corrupt", path);
            for (cJSON *m = cJSON_IsObject(e) ? e->child : NULL; m; m = m->next)
                if (!cJSON_IsString(m)) fail("%s: __metadata__[\"%s\"] is not a string; the file is corrupt", path, m->string);
            continue;
        }
        if (!cJSON_IsObject(e)) fail("%s: tensor %s is not an object in the header; the file is corrupt", path, e->string);
        const char *want[3] = {"dtype", "shape", "data_offsets"};
        const cJSON *got[3] = {NULL, NULL, NULL};
        for (cJSON *x = e->child; x; x = x->next)  // unknown fields are ignored, as serde does
            for (int q = 0; q < 3; q++)
                if (strcmp(x->string, want[q]) == 0) {
                    if (got[q]) fail("%s: tensor %s has two \"%s\" fields; the file is corrupt", path, e->string, want[q]);
                    got[q] = x;
                }
        STensor *t = &f->t[f->n++];
        t->name = str_dup(e->string);
        t->file = f->path;
        int bits = 0;
        for (size_t q = 0; cJSON_IsString(got[0]) && q < sizeof st_all_dtypes / sizeof st_all_dtypes[0]; q++)
            if (strcmp(got[0]->valuestring, st_all_dtypes[q].name) == 0) bits = st_all_dtypes[q].bits;
        if (!bits) fail("%s: tensor %s has no dtype or an unknown one; the file is corrupt", path, t->name);
        t->dtype = ST_OTHER;
        for (int q = 0; q < ST_OTHER; q++)
            if (strcmp(got[0]->valuestring, st_dtype_name[q]) == 0) t->dtype = q;
        const cJSON *shape = got[1], *off = got[2];
        if (!cJSON_IsArray(shape) || !cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
            fail("%s: tensor %s has no shape or data_offsets [begin, end]; the file is corrupt", path, t->name);
        size_t numel = 1;
        for (const cJSON *x = shape->child; x; x = x->next) {
            double v;
            if (!json_is_index(x, &v))
                fail("%s: tensor %s: shape entries must be non-negative integers; the file is corrupt", path, t->name);
            if (t->ndim < 8) t->shape[t->ndim] = (int64_t)v;
            t->ndim++;
            if (__builtin_mul_overflow(numel, (size_t)v, &numel))
                fail("%s: tensor %s: the shape's element count overflows; the file is corrupt", path, t->name);
        }
        double ob, oe;
        if (!json_is_index(off->child, &ob) || !json_is_index(off->child->next, &oe) || oe < ob)
            fail("%s: tensor %s: data_offsets must be integers begin <= end; the file is corrupt", path, t->name);
        if (oe > (double)avail)
            fail("%s: tensor %s has data offsets [%.0f, %.0f] past the end of the data (%zu bytes); the file is "
                 "truncated or corrupt", path, t->name, ob, oe, avail);
        size_t nbits;
        if (__builtin_mul_overflow(numel, (size_t)bits, &nbits) || nbits % 8)
            fail("%s: tensor %s: %zu elements of %s are not a whole number of bytes; the file is corrupt", path,
                 t->name, numel, got[0]->valuestring);
        t->numel = numel;
        t->begin = (size_t)ob;
        t->nbytes = (size_t)(oe - ob);
        if (t->nbytes != nbits / 8)
            fail("%s: tensor %s: %zu bytes for %zu elements of %s; the file is corrupt", path, t->name, t->nbytes,
                 t->numel, got[0]->valuestring);
        t->data = b + data0 + t->begin;
    }
    cJSON_Delete(h);
    // the ranges, sorted, must tile the data section: no overlap (two tensors sharing bytes), no hole, no tail
    qsort(f->t, (size_t)f->n, sizeof(STensor), st_cmp_begin);
    size_t at = 0;
    for (int i = 0; i < f->n; i++) {
        if (f->t[i].begin != at)
            fail("%s: tensor %s starts at byte %zu of the data, but the tensors before it end at %zu (%s); the file is "
                 "corrupt", path, f->t[i].name, f->t[i].begin, at, f->t[i].begin < at ? "overlap" : "a hole");
        at += f->t[i].nbytes;
    }
    if (at != avail)
        fail("%s: the tensors cover %zu of the %zu data bytes (trailing bytes after the last one); the file is corrupt",
             path, at, avail);
    return f;
}

static SFile *st_open(const char *path) {
    int fd = open(path, O_RDONLY | O_NONBLOCK);  // O_NONBLOCK: a FIFO must not hang us; it is refused below
    if (fd < 0) fail("cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) fail("cannot stat %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        fail("%s is not a regular file; a safetensors file is needed there", path);
    size_t size = (size_t)st.st_size;
    if (size < 8) fail("%s: truncated safetensors file (%zu bytes); re-copy or re-save the checkpoint", path, size);
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) fail("cannot map %s: %s", path, strerror(errno));
    SFile *f = st_parse(map, size, path);
    f->map = map;
    return f;
}

static void st_close(SFile *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->size);
    st_free(f);
}

static const STensor *st_find(const SFile *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->t[i].name, name) == 0) return &f->t[i];
    return NULL;
}

// bytes of [p, p + n) in memory now (mincore: pages touched and not dropped); -1 when it cannot tell
static double resident_bytes(const void *p, size_t n) {
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)p / pg * pg, e = ((uintptr_t)p + n + pg - 1) / pg * pg;
    size_t np = (e - a) / pg;
    unsigned char *v = (unsigned char *)malloc(np ? np : 1);
    if (!v || mincore((void *)a, e - a, v) != 0) return free(v), -1;
    size_t r = 0;
    for (size_t i = 0; i < np; i++) r += v[i] & 1;
    free(v);
    return (double)r * pg;
}

// convert elements [lo, lo + n) of any float dtype to fp32, refusing NaN and infinity (they would flow silently
// into losses, scores and exported files). The data need not be aligned: offsets in a file are any byte, so
// elements are memcpy'd.
static void st_range_f32(const STensor *t, size_t lo, size_t n, float *out) {
    if (lo + n > t->numel) fail("internal: elements [%zu, %zu) of tensor %s of %zu", lo, lo + n, t->name, t->numel);
    const unsigned char *src = (const unsigned char *)t->data + lo * (size_t)st_dtype_size[t->dtype];
    if (t->dtype == ST_F32) memcpy(out, src, n * 4);
    else if (t->dtype == ST_BF16 || t->dtype == ST_F16)
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            out[i] = t->dtype == ST_BF16 ? bf16_to_f32(h) : f16_to_f32(h);
        }
    else fail("%s: tensor %s has dtype %s; only F32, BF16 and F16 weights can be read", t->file, t->name,
              st_dtype_name[t->dtype]);
    int bad = 0;
    for (size_t i = 0; i < n; i++) bad |= !isfinite(out[i]);  // one branch-free pass: vectorizes
    for (size_t i = 0; bad && i < n; i++)
        if (!isfinite(out[i]))
            fail("%s: tensor %s holds %g at element %zu; the file is damaged or the run that wrote it diverged", t->file,
                 t->name, out[i], lo + i);
}
static void st_to_f32(const STensor *t, float *out) { st_range_f32(t, 0, t->numel, out); }

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

// Entries added with data NULL are fetched when written: get(ctx, i, buf) puts entry i's values (fp32) into buf,
// which holds the largest such entry (a device's tensors written one at a time; stw_write has no source for them).
typedef void (*TensorGet)(void *ctx, int i, float *buf);
static void stw_write_each(STWriter *w, const char *path, TensorGet get, void *ctx) {
    uint64_t hl;
    size_t big = 0;
    for (int i = 0; i < w->n; i++) {
        size_t n = w->e[i].nbytes / st_dtype_size[w->e[i].dtype];
        if (!w->e[i].data && n > big) big = n;
    }
    float *fetched = big ? (float *)mallocCheck(sizeof(float) * big) : NULL;
    AtomicFile a = stw_open(w, path, &hl);
    uint16_t buf[4096];
    for (int i = 0; i < w->n; i++) {
        STEntry *e = &w->e[i];
        if (!e->data) {
            if (!get || (e->dtype != ST_F32 && e->dtype != ST_BF16)) fail("internal: tensor %s has no data", e->name);
            get(ctx, i, fetched);
            e->data = fetched;
        }
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
    free(w->e), free(fetched);
    memset(w, 0, sizeof(*w));
}
static void stw_write(STWriter *w, const char *path) { stw_write_each(w, path, NULL, NULL); }

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
// checkpoints: the one layout and resume codec of train and prune. OUT/checkpoint/ is a Hugging Face model
// directory (every stage loads it with --model DIR) plus what the run needs to continue bit for bit:
// optimizer.safetensors, the program's <prog>_state.json (step, RNG states, data cursor, settings) and, for
// prune, masks.safetensors. It is written into OUT/checkpoint.tmp, made durable (fsync), then swapped in
// with one renameat2(RENAME_EXCHANGE): OUT/checkpoint is at every instant the old complete checkpoint or the
// new complete one, and the old one is deleted after. Where the file system cannot exchange, the old one is
// renamed to OUT/checkpoint.old first, and a resume falls back on it if the process died in between. What a
// killed process leaves (checkpoint.tmp, a superseded checkpoint.old, "*.tmp.<pid>" files of atomic writes)
// is removed at the next start: at most the last good checkpoint stays.
// Test hook: <PROG>_TEST_CRASH=files[@STEP] kills the process when the new checkpoint is written but not
// swapped in; <PROG>_TEST_CRASH=rename[@STEP] forces the fallback and kills it between the two renames.

static void fsync_path(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

static void remove_dir(const char *dir) {  // a checkpoint directory holds files only
    DIR *dp = opendir(dir);
    if (!dp) return;
    for (struct dirent *e; (e = readdir(dp));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *p = path_join(dir, e->d_name);
        if (unlink(p) != 0) fail("cannot remove %s: %s", p, strerror(errno));
        free(p);
    }
    closedir(dp);
    if (rmdir(dir) != 0) fail("cannot remove %s: %s", dir, strerror(errno));
}

// "<name>.tmp.<pid>": what util.h's atomic writes leave when the process dies mid-write; its pid, else 0
static long atomic_temporary_pid(const char *name) {
    const char *t = strstr(name, ".tmp.");
    if (!t || t == name || !t[5]) return 0;
    for (const char *d = t + 5; *d; d++)
        if (*d < '0' || *d > '9') return 0;
    return atol(t + 5);
}

// at the start of a run that writes OUT: remove what a killed run left there
static void ckpt_cleanup(const char *out) {
    char *ck = path_join(out, "checkpoint"), *tmp = path_join(out, "checkpoint.tmp"), *old = path_join(out, "checkpoint.old");
    if (dir_exists(tmp)) remove_dir(tmp);                   // a save that never got swapped in
    if (dir_exists(ck) && dir_exists(old)) remove_dir(old);  // the fallback died after its second rename
    const char *dirs[] = {out, ck, old};
    for (int i = 0; i < 3; i++) {
        DIR *dp = opendir(dirs[i]);
        for (struct dirent *e; dp && (e = readdir(dp));) {
            long pid = atomic_temporary_pid(e->d_name);
            if (!pid || (pid != (long)getpid() && kill((pid_t)pid, 0) == 0)) continue;  // a live process writes it
            char *p = path_join(dirs[i], e->d_name);
            struct stat st;
            if (lstat(p, &st) == 0 && S_ISREG(st.st_mode)) unlink(p);
            free(p);
        }
        if (dp) closedir(dp);
    }
    free(ck), free(tmp), free(old);
}

// the checkpoint a resume reads: OUT/checkpoint, or OUT/checkpoint.old when a save died between renames
static char *ckpt_find(const char *out) {
    char *ck = path_join(out, "checkpoint"), *old = path_join(out, "checkpoint.old");
    char *hit = dir_exists(ck) ? ck : dir_exists(old) ? old : NULL;
    if (hit != ck) free(ck);
    if (hit != old) free(old);
    return hit;
}

// the test hook's setting for prog: $<PROG>_TEST_CRASH (var receives the name), or NULL
static const char *ckpt_crash_hook(const char *prog, char var[64]) {
    snprintf(var, 64, "%s_TEST_CRASH", prog);
    for (char *v = var; *v; v++) *v = (char)(*v >= 'a' && *v <= 'z' ? *v - 32 : *v);
    return getenv(var);
}

static void ckpt_test_crash(const char *prog, const char *point, int step) {  // <PROG>_TEST_CRASH=point[@step]
    char var[64];
    const char *c = ckpt_crash_hook(prog, var), *at = c ? strchr(c, '@') : NULL;
    size_t n = at ? (size_t)(at - c) : (c ? strlen(c) : 0);
    if (c && n == strlen(point) && !strncmp(c, point, n) && (!at || atoi(at + 1) == step)) {
        fprintf(stderr, "%s=%s: dying in the middle of the checkpoint of step %d\n", var, c, step);
        _exit(86);
    }
}

// renameat2(RENAME_EXCHANGE) through syscall(): glibc declares renameat2 only when _GNU_SOURCE came before the
// first system header, and a file that includes util.h after <stdio.h> has not done that
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)  // the kernel's value (include/uapi/linux/fs.h)
#endif
static int rename_exchange(const char *a, const char *b) {
#ifdef SYS_renameat2
    return (int)syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE);
#else
    errno = ENOSYS;  // the caller falls back on two renames
    return -1;
#endif
}

// a fresh, empty OUT/checkpoint.tmp to write the new checkpoint into
static char *ckpt_begin(const char *out) {
    char *tmp = path_join(out, "checkpoint.tmp");
    if (dir_exists(tmp)) remove_dir(tmp);  // left by a crash
    make_dirs(tmp);
    return tmp;
}

// swap the complete OUT/checkpoint.tmp in as OUT/checkpoint; prog names the test hook
static void ckpt_commit(const char *out, const char *prog, int step) {
    char *ck = path_join(out, "checkpoint"), *tmp = path_join(out, "checkpoint.tmp"), *old = path_join(out, "checkpoint.old");
    fsync_path(tmp);
    ckpt_test_crash(prog, "files", step);
    char var[64];
    const char *crash = ckpt_crash_hook(prog, var);
    int exchange = dir_exists(ck) && !(crash && !strncmp(crash, "rename", 6));
    if (exchange && rename_exchange(tmp, ck) == 0) remove_dir(tmp);  // tmp: the old one
    else {
        if (dir_exists(ck)) {
            if (dir_exists(old)) remove_dir(old);
            if (rename(ck, old) != 0) fail("cannot rename %s to %s: %s", ck, old, strerror(errno));
            ckpt_test_crash(prog, "rename", step);
        }
        if (rename(tmp, ck) != 0) fail("cannot rename %s to %s: %s", tmp, ck, strerror(errno));
        if (dir_exists(old)) remove_dir(old);
    }
    fsync_path(out);
    free(ck), free(tmp), free(old);
}

// Resume state is read strictly: every field present, of its JSON type, whole where it counts, finite, in
// range; otherwise one line naming the file and the field (an edited or truncated file is never half-used).
__attribute__((noreturn)) static void state_damaged(const char *src, const char *key, const cJSON *v, const char *want) {
    char *t = v ? cJSON_PrintUnformatted(v) : NULL;
    fail("%s: \"%s\" is %.60s, expected %s; the file is damaged (start again without --resume, or restore it)", src,
         key, t ? t : "missing", want);
}

static double state_num(const cJSON *o, const char *key, double lo, double hi, const char *src) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || !cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < lo || v->valuedouble > hi) {
        char want[96];
        snprintf(want, sizeof want, "a number in [%g, %g]", lo, hi);
        state_damaged(src, key, v, want);
    }
    return v->valuedouble;
}

static long long state_int(const cJSON *o, const char *key, long long lo, long long hi, const char *src) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    double x = v && cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!(x == floor(x) && x >= (double)lo && x <= (double)hi)) {
        char want[96];
        snprintf(want, sizeof want, "a whole number in [%lld, %lld]", lo, hi);
        state_damaged(src, key, v, want);
    }
    return (long long)x;
}

static void state_nums(const cJSON *o, const char *key, int n, double lo, double hi, double *out, const char *src) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, key);
    int ok = a && cJSON_IsArray(a) && cJSON_GetArraySize(a) == n;
    for (const cJSON *e = ok ? a->child : NULL; e; e = e->next)
        ok &= cJSON_IsNumber(e) && isfinite(e->valuedouble) && e->valuedouble >= lo && e->valuedouble <= hi;
    if (!ok) {
        char want[96];
        snprintf(want, sizeof want, "%d numbers in [%g, %g]", n, lo, hi);
        state_damaged(src, key, a, want);
    }
    int i = 0;
    for (const cJSON *e = a->child; e; e = e->next) out[i++] = e->valuedouble;
}

// the 4 state words as 16-digit hex strings (JSON numbers would lose bits)
static void rng_to_json(cJSON *j, const char *key, const Rng *r) {
    cJSON *a = cJSON_AddArrayToObject(j, key);
    for (int i = 0; i < 4; i++) {
        char hex[20];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)r->s[i]);
        cJSON_AddItemToArray(a, cJSON_CreateString(hex));
    }
}

static Rng rng_from_json(const cJSON *j, const char *key, const char *src) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, key);
    Rng r;
    int ok = a && cJSON_IsArray(a) && cJSON_GetArraySize(a) == 4;
    uint64_t any = 0;
    for (int i = 0; ok && i < 4; i++) {
        const cJSON *e = cJSON_GetArrayItem(a, i);
        ok = cJSON_IsString(e) && strlen(e->valuestring) == 16 && strspn(e->valuestring, "0123456789abcdef") == 16;
        if (ok) any |= r.s[i] = strtoull(e->valuestring, NULL, 16);
    }
    if (!ok || !any) state_damaged(src, key, a, "4 words of 16 lower-case hex digits, not all zero");
    return r;
}

// The state of OUT's checkpoint for `prog --resume`: <prog>_state.json parsed, its path and the checkpoint
// directory; refused in one line when OUT has no checkpoint or one of the other program.
static cJSON *ckpt_state_open(const char *out, const char *prog, char **dir, char **path) {
    char *ck = ckpt_find(out), name[64];
    if (!ck) fail("--resume: %s has no checkpoint/ to resume; start without --resume", out);
    snprintf(name, sizeof name, "%s_state.json", prog);
    char *p = path_join(ck, name);
    if (!file_exists(p)) {
        const char *other = strcmp(prog, "train") ? "train" : "prune";
        char oname[64];
        snprintf(oname, sizeof oname, "%s_state.json", other);
        char *q = path_join(ck, oname);
        if (file_exists(q))
            fail("--resume: %s is a checkpoint of ./%s, not of ./%s; resume it with ./%s, or give ./%s another --out", ck,
                 other, prog, other, prog);
        fail("--resume: %s has no %s: not a checkpoint of ./%s; start without --resume", ck, name, prog);
    }
    cJSON *j = json_read(p);
    const cJSON *set = cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, "settings") : NULL;
    if (!cJSON_IsObject(set)) state_damaged(p, "settings", set, "the run's settings");
    *dir = ck, *path = p;
    return j;
}

// tensors of a run's state (optimizer moments, master weights, masks): one list says what is saved and what
// a resume must find, each with exactly this dtype and element count
typedef struct {
    const char *name;
    int dtype;  // ST_F32, ST_I8, ST_U8
    void *p;
    size_t n;
} StateTensor;

static void state_tensors_write(const char *path, const StateTensor *t, int n, cJSON *meta) {
    STWriter w = {0};
    for (int i = 0; i < n; i++) {
        int64_t len = (int64_t)t[i].n;
        stw_add(&w, t[i].name, t[i].dtype, 1, &len, t[i].p);
    }
    w.meta = meta;
    stw_write(&w, path);
}

// A run's state file, opened to read: one line when it is missing
static SFile *state_file_open(const char *path) {
    if (!file_exists(path)) fail("%s is missing; the checkpoint is incomplete (start again without --resume)", path);
    return st_open(path);
}

// Tensor name of f (path) with exactly this dtype and element count, else one line; hint: what a missing tensor
// means (e.g. "the optimizer state of another --optimizer")
static const STensor *state_tensor_find(SFile *f, const char *path, const char *name, int dtype, size_t n,
                                        const char *hint) {
    const STensor *s = st_find(f, name);
    if (!s) fail("%s: no tensor \"%s\": %s", path, name, hint);
    if (s->dtype != dtype || s->numel != n)
        fail("%s: tensor \"%s\" is %s[%zu] but this run needs %s[%zu]; the state belongs to another model or run", path,
             name, st_dtype_name[s->dtype], s->numel, st_dtype_name[dtype], n);
    return s;
}

// one line unless the n floats x, elements first.. of tensor name in path, are all finite
static void state_floats_finite(const char *path, const char *name, const float *x, size_t n, size_t first) {
    for (size_t k = 0; k < n; k++)
        if (!isfinite(x[k])) fail("%s: tensor \"%s\" holds %g at element %zu; the file is damaged", path, name, x[k], first + k);
}

// every tensor of t from path, each checked (state_tensor_find, fp32 ones finite) before the run uses it
static void state_tensors_read(const char *path, const StateTensor *t, int n, const char *hint) {
    SFile *f = state_file_open(path);
    for (int i = 0; i < n; i++) {
        const STensor *s = state_tensor_find(f, path, t[i].name, t[i].dtype, t[i].n, hint);
        memcpy(t[i].p, s->data, s->nbytes);
        if (s->dtype == ST_F32) state_floats_finite(path, t[i].name, (const float *)t[i].p, s->numel, 0);
    }
    st_close(f);
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

// "30.70B", "697.8M", "58.3K": 4 significant digits with a unit (buf: 32 bytes)
static const char *fmt_count(double n, char *buf) {
    const char *unit[] = {"", "K", "M", "B", "T"};
    int u = 0;
    while (fabs(n) >= 1000 && u < 4) n /= 1000, u++;
    if (u == 0) snprintf(buf, 32, "%.0f", n);  // under a thousand: a count, no decimals
    else snprintf(buf, 32, fabs(n) >= 100 ? "%.1f%s" : fabs(n) >= 10 ? "%.2f%s" : "%.3f%s", n, unit[u]);
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
// (--out - sends data to stdout: the log moves to stderr before its first line)
static void flags_print(const Cli *cli, const void *s, FILE *out) {
    const Flag *o = flag_find(cli, "out");
    if (out == stdout && o && o->type == F_STR && *(const char **)flag_ptr(o, s) &&
        !strcmp(*(const char **)flag_ptr(o, s), "-"))
        stdout_claim();
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
