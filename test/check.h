// test/check.h — what the C tests share:
//   check(ok, fmt, ...)                   one "ok" / "FAIL" line, counted
//   compare(what, ours, ref, n, rtol, atol_rel)
//                                         |ours − ref| <= atol + rtol·|ref| for every element (atol = atol_rel ·
//                                         max|ref|; NaN fails), one line with the worst element; returns its error
//                                         in units of the tolerance
//   checks, failures                      the counts; a test exits with failures != 0
//   check_tag, check_quiet                a prefix after ok/FAIL, and 1 to print failures only (test_comm: the
//                                         MPI rank; ranks other than 0 print only what fails)
#pragma once
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include "util.h"

static int checks = 0, failures = 0;
static const char *check_tag = "";
static int check_quiet = 0;

__attribute__((format(printf, 2, 3))) static void check(int ok, const char *fmt, ...) {
    if (!ok || !check_quiet) {
        va_list ap;
        va_start(ap, fmt);
        printf("  %s %s", ok ? "ok  " : "FAIL", check_tag);
        vprintf(fmt, ap);
        printf("\n");
        va_end(ap);
    }
    checks++;
    failures += !ok;
}

static double compare(const char *what, const float *ours, const float *ref, size_t n, double rtol, double atol_rel) {
    double maxref = 0, worst = -1, maxerr = 0;
    for (size_t i = 0; i < n; i++) maxref = fmax(maxref, fabs(ref[i]));
    double atol = atol_rel * maxref;
    size_t wi = 0;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)ours[i] - ref[i]), bound = atol + rtol * fabs(ref[i]);
        double ratio = bound > 0 ? err / bound : (err > 0 ? INFINITY : 0);
        if (!(ratio <= 1.0)) bad = 1;  // NaN fails too
        if (!(ratio <= worst)) worst = ratio, wi = i;
        maxerr = fmax(maxerr, err);
    }
    check(!bad, "%-58s max|err| %.2e  max|ref| %.2e  worst [%zu] %.8g vs %.8g (%.2f of tol)", what, maxerr, maxref, wi,
          n ? ours[wi] : 0.0f, n ? ref[wi] : 0.0f, worst);
    return worst;
}

// whether two files hold the same bytes (util.h read_file)
static int same_file(const char *a, const char *b) {
    size_t na, nb;
    char *x = read_file(a, &na), *y = read_file(b, &nb);
    int same = na == nb && !memcmp(x, y, na);
    free(x), free(y);
    return same;
}
