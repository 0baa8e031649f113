// test/fuzz/fuzz.h — what the libFuzzer targets share (test/fuzz/fuzz_<input>.c; `make fuzz` runs them).
// Built with FUZZ_CATCH_FAIL, util.h's fail() keeps its message and longjmps back here instead of exiting:
// refusing an input is a normal outcome. What is not: a crash or sanitizer report (libFuzzer stops on it), or a
// refusal whose message is empty or more than one line (every error must be one line that names the input).
// Memory allocated before a refusal is not freed (a real run exits there), so the targets run without leak
// detection; `make fuzz` restarts them in short rounds so it never piles up.
#pragma once
#define FUZZ_CATCH_FAIL
#include "model.h"

// a target's input parsed as JSON (fuzz_json), freed here when a refusal jumps back
static cJSON *volatile fuzz_root;

// call first in LLVMFuzzerTestOneInput: `if (FUZZ_REFUSED()) return 0;`
#define FUZZ_REFUSED() (setjmp(fuzz_jump) ? (fuzz_check_message(), fuzz_json_free(), 1) : 0)

static void fuzz_json_free(void) {
    cJSON_Delete(fuzz_root);
    fuzz_root = NULL;
}

static cJSON *fuzz_json(const uint8_t *data, size_t n) {
    fuzz_root = NULL;
    return fuzz_root = json_parse((const char *)data, n, "fuzz.json");
}

static void fuzz_check_message(void) {
    if (!fuzz_msg[0] || strchr(fuzz_msg, '\n')) {
        fprintf(stderr, "fuzz: an error message is empty or not one line: \"%s\"\n", fuzz_msg);
        abort();
    }
}

// a failure of the property under test (not of the input)
__attribute__((noreturn, format(printf, 1, 2))) static void fuzz_bug(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fuzz: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}
