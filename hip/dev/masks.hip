// hip/dev/masks.hip — workbench for the pruning masks' kernels (hip/masks.h):
//   k_hard_concrete against prune.c's masks_from_u (its formula, repeated here: prune.c is a program,
//     not a header); the mask gradient chain dla = dz · dz/dla is k_mul;
//   k_head_gate against model.h's head_gate_forward (the attention output times zh before o_proj), out of
//     place and in place.
// Tolerances: hard-concrete 1e-6 (double inside, one fp32 rounding each); head gate 4e-3 (one bf16
//   rounding of the product), k_mul 1e-6 (one fp32 product).
//   build: make hip/build/dev_masks   run: hip/build/dev_masks
#include "hip/dev/bench.h"
#include "hip/masks.h"

int main(void) {
    printf("mask workbench on %s\n", GS_VENDOR);
    Rng r = rng_seed(21);
    // --- hard-concrete sample and its chain rule
    size_t nm = 5000;
    float *la = (float *)mallocCheck(sizeof(float) * nm), *u = (float *)mallocCheck(sizeof(float) * nm);
    float *z = (float *)mallocCheck(sizeof(float) * nm), *dz = (float *)mallocCheck(sizeof(float) * nm);
    float *dl = (float *)mallocCheck(sizeof(float) * nm), *gz = (float *)mallocCheck(sizeof(float) * nm);
    for (size_t i = 0; i < nm; i++) {
        la[i] = (float)(-4.6 + 9.2 * rng_uniform(&r));
        u[i] = (float)(1e-6 + (1 - 2e-6) * rng_uniform(&r));
        double uu = u[i], sg = 1.0 / (1.0 + exp(-((log(uu) - log1p(-uu) + la[i]) / (2.0 / 3.0)))), zr = sg * 1.2 - 0.1;
        z[i] = (float)(zr <= 0 ? 0 : zr >= 1 ? 1 : zr);
        dz[i] = (float)(zr > 0 && zr < 1 ? 1.2 * sg * (1 - sg) / (2.0 / 3.0) : 0);
        gz[i] = (float)rng_normal(&r);
        dl[i] = gz[i] * dz[i];
    }
    float *dla = to_dev_f32(la, nm), *du = to_dev_f32(u, nm), *dzz = dev_f32(nm, 1), *ddz = dev_f32(nm, 1);
    float *dgz = to_dev_f32(gz, nm), *ddl = dev_f32(nm, 1);
    k_hard_concrete<<<8, 256>>>(dzz, ddz, dla, du, nm);
    hipCheckLaunch();
    k_mul<<<8, 256>>>(ddl, dgz, ddz, nm);
    hipCheckLaunch();
    float *hz = from_dev_f32(dzz, nm), *hdz = from_dev_f32(ddz, nm), *hdl = from_dev_f32(ddl, nm);
    check("hard-concrete z", hz, z, nm, 1e-6);
    check("hard-concrete dz/dlog_alpha", hdz, dz, nm, 1e-6);
    check("mask chain dla = dz * dz/dla (k_mul)", hdl, dl, nm, 1e-6);
    // --- head gate: rows of H heads of D, one gate per head (some zero: pruned heads)
    int N = 37, H = 5, D = 24;
    size_t n = (size_t)N * H * D;
    float *x = (float *)mallocCheck(sizeof(float) * n), *y = (float *)mallocCheck(sizeof(float) * n), zh[5];
    fill_normal(x, n, &r, 1.0f);
    round_bf16(x, n);
    for (int h = 0; h < H; h++) zh[h] = h == 2 ? 0.0f : (float)rng_uniform(&r);
    head_gate_forward(y, x, zh, N, H, D);
    bf16 *dx = to_dev_bf16(x, n), *dy = dev_bf16(n, 1);
    float *dzh = to_dev_f32(zh, H);
    k_head_gate<<<4, 256>>>(dy, dx, dzh, N, H, D);
    hipCheckLaunch();
    float *hy = from_dev_bf16(dy, n);
    check("head gate", hy, y, n, 4e-3);
    k_head_gate<<<4, 256>>>(dx, dx, dzh, N, H, D);  // in place, as the backward uses it
    hipCheckLaunch();
    float *hx = from_dev_bf16(dx, n);
    check("head gate in place", hx, y, n, 4e-3);
    return bench_exit("masks");
}
