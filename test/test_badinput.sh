#!/bin/sh
# Bad input to the model loader (through ./profile logits): each case must exit non-zero with ONE
# line on stderr that names the file and the problem, and never crash (no signal, no sanitizer report).
cd "$(dirname "$0")/.."
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. test/lib.sh
good=test/fixtures/g3_mqa
echo '[[2, 5, 7, 9]]' > "$T/tok.json"
mk() { rm -rf "$T/m"; cp -r "$good" "$T/m"; }
st="$T/m/model.safetensors"

mk; head -c 1000 "$good/model.safetensors" > "$st"
expect_error "truncated safetensors" "model.safetensors" ./profile logits --model "$T/m" --tokens "$T/tok.json" --out "$T/o"
mk; printf '\377\377\377\377\000\000\000\000' | dd of="$st" conv=notrunc 2>/dev/null
expect_error "header length past the end" "past the end" ./profile logits --model "$T/m" --tokens "$T/tok.json" --out "$T/o"
mk; size=$(stat -c %s "$st"); head -c $((size - 64)) "$good/model.safetensors" > "$st"
expect_error "data offsets past the end" "past the end" ./profile logits --model "$T/m" --tokens "$T/tok.json" --out "$T/o"
mk; sed -i 's/"hidden_size": *48/"hidden_size": 40/' "$T/m/config.json"
expect_error "shape disagrees with config.json" "shape" ./profile logits --model "$T/m" --tokens "$T/tok.json" --out "$T/o"
mk; sed -i 's/"model_type": *"gemma3_text"/"model_type": "llama"/' "$T/m/config.json"
expect_error "unknown model_type" "model_type" ./profile logits --model "$T/m" --tokens "$T/tok.json" --out "$T/o"
mk; printf '{"model_type": "gemma3_text", "hidden_size": ' > "$T/m/config.json"
expect_error "malformed config JSON" "malformed JSON" ./profile logits --model "$T/m" --tokens "$T/tok.json" --out "$T/o"
mk; sed -i 's/"hidden_activation": *"gelu_pytorch_tanh"/"hidden_activation": "silu"/' "$T/m/config.json"
expect_error "unsupported field" "hidden_activation" ./profile logits --model "$T/m" --tokens "$T/tok.json" --out "$T/o"
mk; /usr/bin/env python3 - "$st" <<'PY'
import json, struct, sys
p = sys.argv[1]; b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8+n])
k = "model.layers.0.mlp.up_proj.weight"; h[k]["dtype"] = "I32"
hb = json.dumps(h).encode(); hb += b" " * ((8 - len(hb) % 8) % 8)
open(p, "wb").write(struct.pack("<Q", len(hb)) + hb + b[8+n:])
PY
expect_error "dtype disagrees" "dtype" ./profile logits --model "$T/m" --tokens "$T/tok.json" --out "$T/o"
mk; /usr/bin/env python3 - "$st" <<'PY'
import json, struct, sys
p = sys.argv[1]; b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8+n])
del h["model.layers.1.self_attn.k_norm.weight"]
hb = json.dumps(h).encode(); hb += b" " * ((8 - len(hb) % 8) % 8)
open(p, "wb").write(struct.pack("<Q", len(hb)) + hb + b[8+n:])
PY
expect_error "missing tensor" "is missing" ./profile logits --model "$T/m" --tokens "$T/tok.json" --out "$T/o"
echo '[[2, 5, 70000]]' > "$T/big.json"
expect_error "token id >= vocab" "outside the model's vocabulary" ./profile logits --model "$good" --tokens "$T/big.json" --out "$T/o"
echo '[[2, 5], [3]]' > "$T/ragged.json"
expect_error "ragged token rows" "all must be equal" ./profile logits --model "$good" --tokens "$T/ragged.json" --out "$T/o"
expect_error "missing model directory" "config.json" ./profile logits --model "$T/nope" --tokens "$T/tok.json" --out "$T/o"
# an existing output is never half-overwritten: a failing run leaves it as it was
echo keep > "$T/o"
./profile logits --model "$good" --tokens "$T/big.json" --out "$T/o" 2>/dev/null
check "a failed run leaves the existing output untouched" [ "$(cat "$T/o")" = keep ]
echo "test_badinput.sh: $pass passed, $fail failed"
[ $fail -eq 0 ]
