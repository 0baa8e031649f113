#!/bin/sh
# Bad input to the model loader (through ./profile logits) and on every program's command line: each case
# must exit non-zero with ONE line on stderr that names the input and the problem, and never crash (no
# signal, no sanitizer report).
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

# --- command lines (util.h's one flag table): every value parsed whole and range-checked, old spellings refused
# with the new name, and nothing written
x="$T/never"
expect_error "--steps past 32 bits (used to wrap to 2)" "--steps 4294967298: expected a whole number >= 1" ./train --config "$good/config.json" --out "$x" --steps 4294967298
expect_error "--steps -1" "--steps -1: expected a whole number >= 1" ./prune --model "$good" --out "$x" --keep 0.5 --steps -1
expect_error "--keep nan (used to run a no-op prune)" "--keep nan: expected a finite number" ./prune --model "$good" --out "$x" --keep nan
expect_error "--lr inf" "--lr inf: expected a finite number > 0" ./prune --model "$good" --out "$x" --keep 0.5 --lr inf
expect_error "--lr 1e400 (overflows a double)" "--lr 1e400: expected a finite number" ./train --config "$good/config.json" --out "$x" --lr 1e400
expect_error "a boolean where a number goes" "--batch true: expected a whole number" ./train --config "$good/config.json" --out "$x" --batch true
expect_error "a fraction where a whole number goes" "--seq 2.5: expected a whole number" ./prune --model "$good" --out "$x" --keep 0.5 --seq 2.5
expect_error "trailing characters" "--min-lr-frac 0.1x: expected a finite number in \\[0, 1\\]" ./train --config "$good/config.json" --out "$x" --min-lr-frac 0.1x
expect_error "a value out of its range" "--beta2 1: expected a finite number in \\[0, 1)" ./train --config "$good/config.json" --out "$x" --beta2 1
expect_error "a value that is not one of the choices" "--mix sometimes is not one of: static, dynamic" ./prune --model "$good" --out "$x" --keep 0.5 --mix sometimes
expect_error "a missing value" "--out needs a value" ./export --model "$good" --out
expect_error "a flag where a value goes" "--tokens needs a value" ./profile logits --model "$good" --tokens --out "$x"
expect_error "an unknown flag" "unknown flag --bogus" ./profile memory --preset 1b --bogus 1
expect_error "a stray argument" "unexpected argument" data/tokenize bytes
for old in "clip 1:--grad-clip" "lr-floor 0.1:--min-lr-frac" "ckpt-every 10:--save-every" "warmup-frac 0.1:--warmup N" \
           "dbl 0:--mix dynamic|static" "dbl-clip0 1:--dbl-clip"; do
  expect_error "prune's old --${old%%:*}" "--${old%% *} is no longer accepted: use ${old#*:}" ./prune --model "$good" --out "$x" --keep 0.5 --${old%%:*}
done
expect_error "train refuses prune's old spelling too" "--clip is no longer accepted: use --grad-clip" ./train --config "$good/config.json" --out "$x" --clip 1
expect_error "profile stats' old --batches" "use --calib-batches" ./profile stats --model "$good" --out "$x" --batches 2
expect_error "profile eval's old --batches" "use --eval-batches" ./profile eval --model "$good" --out "$x" --batches 2
expect_error "profile memory's old --weights" "use --dtype" ./profile memory --preset 1b --weights fp32
check "a refused command line writes nothing" test ! -e "$x"
# every program's --help: each flag with its type and [default]
helps=0
for p in ./prune ./train ./export "./profile logits" "./profile plan" "./profile memory" "./profile stats" "./profile ablate" \
         "./profile diff" "./profile eval" data/tokenize data/mkshards; do
  $p --help > "$T/help" 2>&1 || bad "$p --help exits non-zero"
  n=$(grep -c '^  --' "$T/help"); typed=$(grep -cE '^  --[a-z0-9-]+ +(string|int|float|flag|list)  .*  \[[^]]+\]$' "$T/help")
  [ "$n" -gt 0 ] && [ "$n" -eq "$typed" ] && helps=$((helps + 1)) || bad "$p --help: $typed of $n flag lines show type and default"
done
check "--help of all 12 command lines lists every flag with its type and default" [ $helps -eq 12 ]
echo "test_badinput.sh: $pass passed, $fail failed"
[ $fail -eq 0 ]
