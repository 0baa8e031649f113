#!/usr/bin/env python3
# test/badinput.py — makes the hostile files test/test_badinput.sh feeds the programs. Standard library only.
#   badinput.py st SRC DST OP [ARG...]     a safetensors file with one thing wrong (OP below)
#   badinput.py json SRC DST KEY=RAW ...   a JSON file with keys set to raw JSON text (KEY=- deletes it;
#                                          a.b sets a key inside an object)
#   badinput.py shards DIR V               two small domains of token shards (data/shard.h's layout), ids < V
import json, math, random, struct, sys


def st_read(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8:8 + n]), b[8 + n:]


def st_bytes(h, data, text=None, pad_to=8, extra=0):
    """Header + data. `text` replaces the JSON text; the header is padded with spaces to a multiple of pad_to,
    plus `extra` spaces (extra=1 with pad_to=8 puts every tensor at an odd address)."""
    hb = text if text is not None else json.dumps(h).encode()
    hb += b" " * ((pad_to - len(hb) % pad_to) % pad_to + extra)
    return struct.pack("<Q", len(hb)) + hb + data


def rebuild(h, data, keep):
    """A valid file of the tensors in `keep` (names), data re-laid contiguously in the original order."""
    items = sorted(((k, v) for k, v in h.items() if k != "__metadata__"), key=lambda kv: kv[1]["data_offsets"][0])
    out, nh, off = b"", {"__metadata__": h.get("__metadata__", {"format": "pt"})}, 0
    for k, v in items:
        if k not in keep:
            continue
        a, e = v["data_offsets"]
        out += data[a:e]
        nh[k] = dict(v, data_offsets=[off, off + e - a])
        off += e - a
    return nh, out


def st_op(src, dst, op, args):
    h, data = st_read(src)
    names = [k for k in h if k != "__metadata__"]
    by_off = sorted(names, key=lambda k: h[k]["data_offsets"][0])
    text, pad_to, extra = None, 8, 0
    if op == "drop":  # a valid file without one tensor
        h, data = rebuild(h, data, set(names) - {args[0]})
    elif op == "overlap":  # tensor B reads tensor A's bytes (same size): the ranges overlap and B's bytes are orphaned
        a, b = args
        assert h[a]["data_offsets"][1] - h[a]["data_offsets"][0] == h[b]["data_offsets"][1] - h[b]["data_offsets"][0]
        h[b]["data_offsets"] = list(h[a]["data_offsets"])
    elif op == "hole":  # 4 unused bytes before the last tensor
        last = by_off[-1]
        a, e = h[last]["data_offsets"]
        data = data[:a] + b"\0" * 4 + data[a:]
        h[last]["data_offsets"] = [a + 4, e + 4]
    elif op == "tail":  # bytes after the last tensor
        data += b"\0" * 8
    elif op == "junk":  # bytes after the header JSON, inside the header length
        text = json.dumps(h).encode() + b" x"
    elif op == "frac":  # an offset written as 0.0: the same number, but not an integer to a strict reader
        text = json.dumps(h).replace('"data_offsets": [0, ', '"data_offsets": [0.0, ', 1).encode()
        assert b"0.0" in text
    elif op == "objoff":  # an offset that is an object
        h[by_off[0]]["data_offsets"][0] = {}
    elif op == "dup":  # the first tensor's entry twice (same range)
        first = by_off[0]
        entry = json.dumps({first: h[first]})[1:-1]
        text = ("{" + entry + ", " + json.dumps(h)[1:]).encode()
    elif op == "dtype":  # NAME DTYPE
        h[args[0]]["dtype"] = args[1]
    elif op == "shape":  # NAME RAWJSON: the shape entry as raw text
        h[args[0]]["shape"] = json.loads(args[1])
    elif op == "nonfinite":  # NAME VALUE: element 3 of the tensor becomes nan / inf / -inf, in its own dtype
        t = h[args[0]]
        a = t["data_offsets"][0]
        x = float(args[1])
        if t["dtype"] == "F32":
            v = struct.pack("<f", x)
        else:  # BF16: the top half of the f32
            v = struct.pack("<f", x)[2:]
        data = data[:a + 3 * len(v)] + v + data[a + 4 * len(v):]
    elif op == "misalign":  # a VALID file whose tensors start at odd addresses (the header length is odd)
        pad_to, extra = 8, 1
    elif op == "badutf8":  # a tensor name that is not UTF-8
        text = json.dumps(h).replace('"' + by_off[0] + '"', '"' + by_off[0] + '\udcff"', 1).encode("utf-8", "surrogateescape")
    elif op == "bighead":  # a header length over the 100 MB limit, in a (sparse) file long enough to hold it
        f = open(dst, "wb")
        f.write(struct.pack("<Q", 100_000_001) + b"{")
        f.truncate(8 + 100_000_001)
        return
    else:
        sys.exit("badinput.py: unknown st op " + op)
    open(dst, "wb").write(st_bytes(h, data, text, pad_to, extra))


def json_op(src, dst, sets):
    text = open(src).read()
    j = json.loads(text)
    raw = {}
    for i, kv in enumerate(sets):
        key, val = kv.split("=", 1)
        *path, last = key.split(".")
        o = j
        for p in path:
            o = o[p]
        if val == "-":
            o.pop(last, None)
            continue
        try:
            v = json.loads(val)
            if isinstance(v, float) and not math.isfinite(v):  # Python would write Infinity or NaN
                raise ValueError
            o[last] = v
        except ValueError:  # not JSON Python can hold (1e999, a bare word): inserted as raw text
            o[last] = "@RAW%d@" % i
            raw['"@RAW%d@"' % i] = val
    out = json.dumps(j, indent=1)
    for k, v in raw.items():
        out = out.replace(k, v)
    open(dst, "w").write(out)


def shards(d, V):
    import os
    rng = random.Random(1)
    for dom in ("alpha", "beta"):
        os.makedirs(os.path.join(d, dom), exist_ok=True)
        for split, n in (("train", 4096), ("val", 1024)):
            tok = [2 if i % 256 == 0 else rng.randrange(4, V) for i in range(n)]
            h = b"GSHD" + struct.pack("<IIIQQ", 1, V, 2, n, n // 256)
            open(os.path.join(d, dom, split + ".bin"), "wb").write(h + b"\0" * (64 - len(h)) + struct.pack("<%dH" % n, *tok))


if __name__ == "__main__":
    if sys.argv[1] == "shards":
        shards(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "st":
        st_op(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:])
    elif sys.argv[1] == "json":
        json_op(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        sys.exit("usage: badinput.py st|json ...")
