#!/bin/sh
# Bad input to the model loader (through ./profile logits): each case must exit non-zero with ONE
# line on stderr that names the file and the problem, and never crash (no signal, no sanitizer report).
cd "$(dirname "$0")/.."
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fails=0
good=test/fixtures/g3_mqa
echo '[[2, 5, 7, 9]]' > "$T/tok.json"
# expect NAME PATTERN -- CMD...: non-zero exit, no crash, exactly one stderr line matching PATTERN
expect() {
  name=$1; pat=$2; shift 3
  "$@" > "$T/out" 2> "$T/err"; rc=$?
  lines=$(wc -l < "$T/err")
  if [ $rc -eq 0 ] || [ $rc -ge 128 ] || [ "$lines" -ne 1 ] || ! grep -q -- "$pat" "$T/err"; then
    echo "  FAIL $name: exit $rc, stderr:"; sed 's/^/    /' "$T/err"; fails=$((fails+1))
  else echo "  ok   $name: $(cat "$T/err")"; fi
}
mk() { rm -rf "$T/m"; cp -r "$good" "$T/m"; }
st="$T/m/model.safetensors"

mk; head -c 1000 "$good/model.safetensors" > "$st"
expect "truncated safetensors" "model.safetensors" -- ./profile logits --model "$T/m" --tokens "$T/tok.json" --out "$T/o"
mk; printf '\377\377\377\377\000\000\000\000' | dd of="$st" conv=notrunc 2>/dev/null
expect "header length past the end" "past the end" -- ./profile logits --model "$T/m" --tokens "$T/tok.json" --out "$T/o"
mk; size=$(stat -c %s "$st"); head -c $((size - 64)) "$good/model.safetensors" > "$st"
expect "data offsets past the end" "past the end" -- ./profile logits --model "$T/m" --tokens "$T/tok.json" --out "$T/o"
mk; sed -i 's/"hidden_size": *48/"hidden_size": 40/' "$T/m/config.json"
expect "shape disagrees with config.json" "shape" -- ./profile logits --model "$T/m" --tokens "$T/tok.json" --out "$T/o"
mk; sed -i 's/"model_type": *"gemma3_text"/"model_type": "llama"/' "$T/m/config.json"
expect "unknown model_type" "model_type" -- ./profile logits --model "$T/m" --tokens "$T/tok.json" --out "$T/o"
mk; printf '{"model_type": "gemma3_text", "hidden_size": ' > "$T/m/config.json"
expect "malformed config JSON" "malformed JSON" -- ./profile logits --model "$T/m" --tokens "$T/tok.json" --out "$T/o"
mk; sed -i 's/"hidden_activation": *"gelu_pytorch_tanh"/"hidden_activation": "silu"/' "$T/m/config.json"
expect "unsupported field" "hidden_activation" -- ./profile logits --model "$T/m" --tokens "$T/tok.json" --out "$T/o"
mk; /usr/bin/env python3 - "$st" <<'PY'
import json, struct, sys
p = sys.argv[1]; b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8+n])
k = "model.layers.0.mlp.up_proj.weight"; h[k]["dtype"] = "I32"
hb = json.dumps(h).encode(); hb += b" " * ((8 - len(hb) % 8) % 8)
open(p, "wb").write(struct.pack("<Q", len(hb)) + hb + b[8+n:])
PY
expect "dtype disagrees" "dtype" -- ./profile logits --model "$T/m" --tokens "$T/tok.json" --out "$T/o"
mk; /usr/bin/env python3 - "$st" <<'PY'
import json, struct, sys
p = sys.argv[1]; b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8+n])
del h["model.layers.1.self_attn.k_norm.weight"]
hb = json.dumps(h).encode(); hb += b" " * ((8 - len(hb) % 8) % 8)
open(p, "wb").write(struct.pack("<Q", len(hb)) + hb + b[8+n:])
PY
expect "missing tensor" "is missing" -- ./profile logits --model "$T/m" --tokens "$T/tok.json" --out "$T/o"
echo '[[2, 5, 70000]]' > "$T/big.json"
expect "token id >= vocab" "outside the model's vocabulary" -- ./profile logits --model "$good" --tokens "$T/big.json" --out "$T/o"
echo '[[2, 5], [3]]' > "$T/ragged.json"
expect "ragged token rows" "all must be equal" -- ./profile logits --model "$good" --tokens "$T/ragged.json" --out "$T/o"
expect "missing model directory" "config.json" -- ./profile logits --model "$T/nope" --tokens "$T/tok.json" --out "$T/o"
# an existing output is never half-overwritten: a failing run leaves it as it was
echo keep > "$T/o"
./profile logits --model "$good" --tokens "$T/big.json" --out "$T/o" 2>/dev/null
if [ "$(cat "$T/o")" = keep ]; then echo "  ok   failed run left the existing output untouched"; else echo "  FAIL output damaged"; fails=$((fails+1)); fi
[ $fails -eq 0 ]
