# hip/dev/compare_runs.py — run_device.sh `dp`: how far one GPU run is from another, against how far the plain
# GPU run is from itself. The GPU step is not bit-reproducible (fp32 atomics in the attention and embedding
# backwards, products whose algorithm the tuner picks by timing), so "identical" cannot be asked of a run made
# through NCCL; what is asked is that it differs from the plain run no more than a second plain run does.
#   python3 hip/dev/compare_runs.py REF AGAIN RUN FILE[:SPREAD]...   (run directories; FILE relative to each)
# Per file, the worst relative L2 error ||a - b|| / ||b|| over its tensors (fp32, bf16, 8-bit codes), and the step log's
# largest |loss difference| (REF.log etc.: lines "step N/M | loss X | ... | grad G"). Passes when every measure of
# RUN is at most 3 x AGAIN's or at most twice the largest spread seen between two plain runs of this check: two
# plain runs can also agree to 1e-8 by chance, so AGAIN alone is no bound. SPREAD is that largest spread for the
# file (default 2.8e-2: H100, 2026-12-06, 20 steps of the teacher config, 7 pairs over two calls, a norm weight near
# 0 where AdamW's nearly-sign step turns one rounding into a step of lr); the losses' is 3e-4. Exit 1 otherwise.
import json, re, struct, sys
import numpy as np

def tensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in head.items():
        if name == "__metadata__": continue
        a, b = t["data_offsets"]
        dt = {"BF16": np.uint16, "I8": np.int8, "U8": np.uint8}.get(t["dtype"], np.float32)
        raw = np.frombuffer(data[a:b], dtype=dt)
        # bf16 as its fp32 value; 8-bit AdamW's codes as their integers
        out[name] = (raw.astype(np.uint32) << 16).view(np.float32) if t["dtype"] == "BF16" else raw.astype(np.float32)
    return out

def worst(a, b):
    x, y = tensors(a), tensors(b)
    w = 0.0
    for k, v in y.items():
        d = np.linalg.norm(x[k].astype(np.float64) - v) / max(np.linalg.norm(v.astype(np.float64)), 1e-30)
        w = max(w, d)
    return w

def losses(log):
    return [float(m.group(1)) for m in re.finditer(r"^step \d+/\d+ \| loss ([-0-9.naif]+)", open(log).read(), re.M)]

ref, again, run, files = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
ok = True
for arg in files:
    f, _, spread = arg.partition(":")
    wa, wr = worst(f"{again}/{f}", f"{ref}/{f}"), worst(f"{run}/{f}", f"{ref}/{f}")
    good = wr <= max(3 * wa, 2 * float(spread or 2.8e-2))
    ok &= good
    print(f"{'ok  ' if good else 'FAIL'} {run}/{f}: worst relative L2 from {ref} {wr:.2e} (a second plain run: {wa:.2e})")
la, lr, l0 = losses(again + ".log"), losses(run + ".log"), losses(ref + ".log")
if not l0 or len(lr) != len(l0) or len(la) != len(l0):
    print(f"FAIL {run}.log: {len(lr)} step losses against {len(l0)}"); sys.exit(1)
da, dr = max(abs(p - q) for p, q in zip(la, l0)), max(abs(p - q) for p, q in zip(lr, l0))
good = dr <= max(3 * da, 2 * 3e-4)
ok &= good
print(f"{'ok  ' if good else 'FAIL'} {run}.log: {len(lr)} steps, largest |loss difference| from {ref} {dr:.4f} "
      f"(a second plain run: {da:.4f})")
sys.exit(0 if ok else 1)
