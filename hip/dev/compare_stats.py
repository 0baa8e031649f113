#!/usr/bin/env python3
# hip/dev/compare_stats.py — ./profile stats --device gpu against --device cpu on the same model and windows
# (run_device.sh `profile`): every per-layer and per-head number of the "all" domain, and the loss. Prints one line per
# quantity (worst layer) and exits 1 if any is outside its tolerance.
# Tolerances: the GPU computes in bf16 (weights, activations at every product's input and output: 8 significant
# bits, 2^-9 = 2e-3 relative per rounding) against the CPU's fp32, with fp32 residual stream and statistics on both.
#   loss                  5e-3 relative (check_step's)
#   resid_in, resid_out   1e-2 relative: a norm over d averages the elements' independent roundings
#   block_influence, *_update   3e-2 relative + 2e-3 absolute: 1 − cos and ||Δx|| / ||x|| are differences of
#                         near-equal quantities where a layer changes the stream little; the absolute part covers those
#   entropy               3e-2 relative; entropy_norm, head_entropy_norm 1e-2 absolute: scores from bf16 q and k
#                         (their products carry ~1e-2 absolute error at these scales), through exp and log
#   ffn_near_zero         0.02 absolute: a (token, channel) whose |h| sits within a rounding of the threshold flips
#   ffn_never_active      equal, or within 1% of the layer's channels (same flips)
#   usage: python3 hip/dev/compare_stats.py CPU/stats.json GPU/stats.json [NAME]
import json
import sys

TOL = {  # key: (relative, absolute)
    "resid_in": (1e-2, 0), "resid_out": (1e-2, 0), "block_influence": (3e-2, 2e-3), "rel_update": (3e-2, 2e-3),
    "attn_update": (3e-2, 2e-3), "mlp_update": (3e-2, 2e-3), "entropy": (3e-2, 0), "entropy_norm": (0, 1e-2),
    "ffn_near_zero": (0, 2e-2),
}


def main():
    cpu, gpu = (json.load(open(p)) for p in sys.argv[1:3])
    name = sys.argv[3] if len(sys.argv) > 3 else sys.argv[2]
    a, b = cpu["domains"]["all"], gpu["domains"]["all"]
    bad = 0

    def check(what, x, y, rel, ab):
        nonlocal bad
        err = abs(x - y)
        ok = err <= ab + rel * abs(x)
        bad += not ok
        return ok, err

    lc, lg = a["loss"], b["loss"]
    ok, err = check("loss", lc, lg, 5e-3, 0)
    print(f"{name}: {'ok  ' if ok else 'FAIL'} loss cpu {lc:.5f} gpu {lg:.5f} (rel {err / abs(lc):.1e}, tol 5e-3)")
    for key, (rel, ab) in TOL.items():
        worst, wl, allok = -1, 0, True
        for l, (x, y) in enumerate(zip(a["layers"], b["layers"])):
            ok, err = check(key, x[key], y[key], rel, ab)
            allok &= ok
            r = err / (ab + rel * abs(x[key])) if ab + rel * abs(x[key]) > 0 else 0
            if r > worst:
                worst, wl = r, l
        x, y = a["layers"][wl][key], b["layers"][wl][key]
        print(f"{name}: {'ok  ' if allok else 'FAIL'} {key:16s} worst layer {wl}: cpu {x:.5g} gpu {y:.5g} "
              f"({worst:.2f} of tol: rel {rel:g} abs {ab:g})")
    for l, (x, y) in enumerate(zip(a["layers"], b["layers"])):
        nx, ny = x["ffn_never_active"], y["ffn_never_active"]
        if nx != ny and abs(nx - ny) > 0.01 * max(nx, ny, 100):
            bad += 1
            print(f"{name}: FAIL ffn_never_active layer {l}: cpu {nx} gpu {ny}")
    for key, (rel, ab) in (("head_entropy", (3e-2, 0)), ("head_entropy_norm", (0, 1e-2))):
        worst, where, allok = -1, (0, 0), True
        for l, (rx, ry) in enumerate(zip(a[key], b[key])):
            for h, (x, y) in enumerate(zip(rx, ry)):
                ok, err = check(key, x, y, rel, ab)
                allok &= ok
                r = err / (ab + rel * abs(x)) if ab + rel * abs(x) > 0 else 0
                if r > worst:
                    worst, where = r, (l, h)
        x, y = a[key][where[0]][where[1]], b[key][where[0]][where[1]]
        print(f"{name}: {'ok  ' if allok else 'FAIL'} {key:17s} worst layer {where[0]} head {where[1]}: cpu {x:.5g} "
              f"gpu {y:.5g} ({worst:.2f} of tol)")
    print(f"{name}: {'PASSED' if not bad else f'FAILED ({bad} outside tolerance)'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
