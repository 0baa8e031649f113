#!/bin/sh
# Hostile input: every case must end in exactly ONE line on stderr that names the input and says what to do,
# with an exit status of 1..127 (no signal), or, where the input is valid but unusual, in the right result.
# `make debug` runs this under AddressSanitizer and UBSan: a sanitizer report is a second stderr line, so it
# fails the case. Each case is counted in its input class; the summary is the table in NOTES.md.
# BIN=DIR runs the programs of another build (e.g. an older one, to count what it got wrong).
cd "$(dirname "$0")/.."
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. test/lib.sh
BIN=$(cd "${BIN:-.}" && pwd)
py() { /usr/bin/env python3 test/badinput.py "$@"; }
good=test/fixtures/g3_mqa g4=test/fixtures/g4_keqv
echo '[[2, 5, 7, 9]]' > "$T/tok.json"
py shards "$T/sh2" 256  # token shards the tiny fixtures can read (vocab 256)
trn() { rm -rf "$T/r"; $BIN/train --data "$T/sh2" --out "$T/r" --steps 1 --batch 1 --seq 8 "$@"; }

# per input class: cases, clean (the expected one-line error or result), crash (signal or sanitizer report),
# silent (exit 0 on bad input: garbage accepted), wrong (an error, but not the expected one: a wrong cause)
class="" summary=""
section() { [ -n "$class" ] && summary="$summary$class $n_case $n_clean $n_crash $n_silent $n_wrong
"; class=$1 n_case=0 n_clean=0 n_crash=0 n_silent=0 n_wrong=0; echo "--- $1"; }
err() {  # err NAME WANT CMD...: bad input, refused in one line containing WANT
  name=$1 want=$2; shift 2
  n_case=$((n_case + 1))
  "$@" > "$T/out" 2> "$T/err"; rc=$?
  if [ $rc -ge 124 ] || grep -q -e "Sanitizer" -e "runtime error" "$T/err"; then
    n_crash=$((n_crash + 1)); bad "$name: CRASH (exit $rc): $(head -c 600 "$T/err")"
  elif [ $rc -eq 0 ]; then n_silent=$((n_silent + 1)); bad "$name: accepted (exit 0)"
  elif [ "$(wc -l < "$T/err")" -eq 1 ] && grep -q -- "$want" "$T/err"; then n_clean=$((n_clean + 1)); ok "$name -> $(cat "$T/err")"
  else n_wrong=$((n_wrong + 1)); bad "$name: wanted \"$want\", stderr was: $(head -c 600 "$T/err")"; fi
}
good_run() {  # good_run NAME CMD...: valid (if unusual) input, must succeed without a sanitizer report
  name=$1; shift
  n_case=$((n_case + 1))
  "$@" > "$T/out" 2> "$T/err"; rc=$?
  ran_clean=0
  if [ $rc -ge 124 ] || grep -q -e "Sanitizer" -e "runtime error" "$T/err"; then
    n_crash=$((n_crash + 1)); bad "$name: CRASH (exit $rc): $(head -c 600 "$T/err")"
  elif [ $rc -ne 0 ]; then n_wrong=$((n_wrong + 1)); bad "$name: refused a valid input: $(head -c 600 "$T/err")"
  else n_clean=$((n_clean + 1)) ran_clean=1; ok "$name"; fi
}
result() {  # result NAME TEST...: the outcome of the last good_run is right (else it was silently wrong; a run
  name=$1; shift  # that already failed stays counted as it was)
  if "$@"; then ok "$name"
  else bad "$name: wrong result"; [ $ran_clean -eq 1 ] && n_clean=$((n_clean - 1)) n_silent=$((n_silent + 1)); fi
}
logits() { timeout 120 $BIN/profile logits --model "$1" --tokens "$T/tok.json" --out "$T/o"; }
mk() { rm -rf "$T/m"; cp -r "${1:-$good}" "$T/m"; }
st="$T/m/model.safetensors"
stedit() { mk "$good"; py st "$good/model.safetensors" "$st" "$@"; }
reap() {  # wait up to 10 s for a background reader, then end it (it may still block on a FIFO nobody opened)
  i=0; while kill -0 "$1" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
  kill "$1" 2>/dev/null; wait "$1" 2>/dev/null
}

section safetensors
mk; head -c 1000 "$good/model.safetensors" > "$st"
err "truncated file" "model.safetensors" logits "$T/m"
mk; printf '\377\377\377\377\000\000\000\000' | dd of="$st" conv=notrunc 2>/dev/null
err "header length past the end" "past the end" logits "$T/m"
mk; size=$(stat -c %s "$st"); head -c $((size - 64)) "$good/model.safetensors" > "$st"
err "data offsets past the end" "past the end" logits "$T/m"
stedit overlap model.layers.0.self_attn.k_norm.weight model.layers.0.self_attn.q_norm.weight
err "overlapping tensor ranges" "overlap" logits "$T/m"
stedit hole;  err "a hole in the data section" "a hole" logits "$T/m"
stedit tail;  err "bytes after the last tensor" "trailing bytes" logits "$T/m"
stedit junk;  err "bytes after the header JSON" "bytes after it" logits "$T/m"
stedit frac;  err "offset written 0.0" "data_offsets must be integers" logits "$T/m"
stedit objoff; err "offset that is an object" "data_offsets must be integers" logits "$T/m"
stedit dup;   err "a tensor name twice" "appears twice" logits "$T/m"
stedit dtype model.norm.weight F99; err "unknown dtype" "unknown" logits "$T/m"
stedit dtype model.layers.0.mlp.up_proj.weight I32; err "dtype we cannot read" "dtype I32" logits "$T/m"
stedit shape model.norm.weight '[-48]'; err "negative shape" "non-negative integers" logits "$T/m"
stedit shape model.norm.weight '[1099511627776, 1099511627776]'; err "element count overflow" "overflows" logits "$T/m"
stedit badutf8; err "header not UTF-8" "not valid JSON" logits "$T/m"
stedit bighead; err "header over 100 MB" "100 MB" logits "$T/m"
stedit drop model.layers.1.self_attn.k_norm.weight; err "missing tensor" "is missing" logits "$T/m"
mk; sed -i 's/"hidden_size": *48/"hidden_size": 40/' "$T/m/config.json"
err "shape disagrees with config.json" "shape" logits "$T/m"
mk; rm "$st"; mkdir "$st"; err "model.safetensors is a directory" "not a regular file" logits "$T/m"
mk; rm "$st"; mkfifo "$st"; err "model.safetensors is a FIFO (no hang)" "not a regular file" logits "$T/m"
# valid, unusual: a header of odd length puts every tensor at an odd address (bf16 and f32 read unaligned)
mk test/fixtures/g3_bf16; py st test/fixtures/g3_bf16/model.safetensors "$st" misalign
good_run "tensors at odd addresses (valid)" logits "$T/m"; cp "$T/o" "$T/o_odd"
logits test/fixtures/g3_bf16 > /dev/null 2>&1
result "  same logits as the aligned file" cmp -s "$T/o" "$T/o_odd"

section weights
stedit nonfinite model.layers.0.mlp.up_proj.weight nan; err "NaN in an f32 weight" "up_proj.weight holds nan" logits "$T/m"
stedit nonfinite model.norm.weight inf; err "+inf in a norm" "model.norm.weight holds inf" logits "$T/m"
mk test/fixtures/g3_bf16; py st test/fixtures/g3_bf16/model.safetensors "$st" nonfinite model.layers.0.self_attn.o_proj.weight -inf
err "-inf in a bf16 weight" "o_proj.weight holds -inf" logits "$T/m"
stedit nonfinite model.embed_tokens.weight nan
err "export of NaN weights" "embed_tokens.weight holds nan" $BIN/export --model "$T/m" --out "$T/x.gguf"
check "  no GGUF written" [ ! -e "$T/x.gguf" ]
# at --zero >= 1 each rank reads only its pieces (model.h model_load_shard): the same checks on what it reads
stedit nonfinite model.layers.0.mlp.up_proj.weight nan
err "NaN read as a ZeRO shard (train --zero 1)" "up_proj.weight holds nan" $BIN/train --model "$T/m" --data data/shards --out "$T/zt" --steps 1 --zero 1
stedit drop model.layers.1.self_attn.k_norm.weight
err "missing tensor, ZeRO shard (train --zero 1)" "is missing" $BIN/train --model "$T/m" --data data/shards --out "$T/zt" --steps 1 --zero 1
check "  nothing written" [ ! -e "$T/zt" ]

section config
conf() { name=$1 want=$2 src=$3; shift 3; py json "$src" "$T/c.json" "$@"; err "$name" "$want" $BIN/profile memory --config "$T/c.json"; }
g4flat="$T/g4flat.json"; py json "$g4/config.json" "$g4flat" per_layer_config=- global_head_dim=32 num_global_key_value_heads=1
py json "$g4flat" "$T/c.json" global_head_dim=-2
err "global_head_dim -2 (train --config)" "global_head_dim" trn --config "$T/c.json"
conf "per_layer_config head_dim -2" "head_dim" "$g4/config.json" 'per_layer_config={"1": {"head_dim": -2}, "3": {"head_dim": -2}}'
conf "num_global_key_value_heads 0 (k_eq_v)" "num_global_key_value_heads" "$g4flat" num_global_key_value_heads=0
conf "per_layer_config num_key_value_heads 0" "num_key_value_heads" "$g4/config.json" 'per_layer_config={"1": {"num_key_value_heads": 0}, "3": {"num_key_value_heads": 0}}'
conf "per_layer_config of layer 9 (of 4)" "per_layer_config" "$g4/config.json" 'per_layer_config={"9": {"head_dim": 32}}'
conf "eos_token_id []" "eos_token_id" "$good/config.json" 'eos_token_id=[]'
conf "eos_token_id [1, \"x\"]" "eos_token_id" "$good/config.json" 'eos_token_id=[1, "x"]'
conf "bos_token_id past the vocab" "bos_token_id" "$good/config.json" bos_token_id=300
conf "max_position_embeddings 0" "max_position_embeddings" "$good/config.json" max_position_embeddings=0
py json "$good/config.json" "$T/c.json" max_position_embeddings=-4
err "max_position_embeddings -4 (train --config)" "max_position_embeddings" trn --config "$T/c.json"
conf "vocab_size 2^32 + 261" "does not fit" "$good/config.json" vocab_size=4294967557
conf "hidden_size given as true" "must be a number" "$good/config.json" hidden_size=true
conf "rms_norm_eps 1e999" "finite" "$good/config.json" rms_norm_eps=1e999
conf "rms_norm_eps 0" "rms_norm_eps" "$good/config.json" rms_norm_eps=0
conf "rope_theta -1" "rope theta" "$good/config.json" rope_theta=-1
conf "final_logit_softcapping -5" "final_logit_softcapping" "$good/config.json" final_logit_softcapping=-5
conf "partial_rotary_factor 2" "partial_rotary_factor" "$g4/config.json" rope_parameters.full_attention.partial_rotary_factor=2
conf "sliding_window 0" "sliding_window" "$good/config.json" sliding_window=0
conf "num_hidden_layers 600" "num_hidden_layers" "$good/config.json" num_hidden_layers=600
conf "head_dim 1 (odd)" "head_dim" "$good/config.json" head_dim=1
conf "text_config a string" "text_config" "$good/config.json" model_type='"gemma3"' text_config='"x"'
conf "rope_scaling a number" "rope_scaling" "$good/config.json" rope_scaling=7
echo '[{"model_type": "gemma3_text"}]' > "$T/c.json"
err "config that is an array" "not a JSON object" $BIN/profile memory --config "$T/c.json"
py json "$good/config.json" "$T/c.json"; echo ' x' >> "$T/c.json"
err "bytes after the JSON" "unexpected bytes" $BIN/profile memory --config "$T/c.json"
mk; printf '{"model_type": "gemma3_text", "hidden_size": ' > "$T/m/config.json"
err "malformed config JSON" "malformed JSON" logits "$T/m"
mk; sed -i 's/"model_type": *"gemma3_text"/"model_type": "llama"/' "$T/m/config.json"
err "unknown model_type" "model_type" logits "$T/m"
mk; sed -i 's/"hidden_activation": *"gelu_pytorch_tanh"/"hidden_activation": "silu"/' "$T/m/config.json"
err "unsupported field" "hidden_activation" logits "$T/m"
py json "$good/config.json" "$T/c.json" 'eos_token_id=[1, 106]' bos_token_id=2
good_run "eos_token_id [1, 106] (valid: instruction models list several)" $BIN/profile memory --config "$T/c.json"

section paths
mk; rm "$T/m/config.json"; mkdir "$T/m/config.json"
err "config.json is a directory" "is a directory" logits "$T/m"
err "--tokens is a directory" "is a directory" $BIN/profile logits --model "$good" --tokens "$T" --out "$T/o"
err "--config is a directory" "is a directory" $BIN/profile memory --config "$T"
: > "$T/empty.json"; err "--tokens empty" "malformed JSON near byte 0" $BIN/profile logits --model "$good" --tokens "$T/empty.json" --out "$T/o"
mkdir -p "$T/tk/tokenizer.json"; rm -f "$T/x.gguf"
err "tokenizer.json is a directory" "is a directory" $BIN/export --model "$good" --out "$T/x.gguf" --tokenizer "$T/tk"
py shards "$T/sh" 256; rm "$T/sh/beta/val.bin"; mkdir "$T/sh/beta/val.bin"
rm -rf "$T/r"; err "a shard that is a directory" "not a regular file" $BIN/train --model "$good" --data "$T/sh" --out "$T/r" --steps 1 --batch 1 --seq 8
rm -r "$T/sh/beta/val.bin"; mkfifo "$T/sh/beta/val.bin"
rm -rf "$T/r"; err "a shard that is a FIFO (no hang)" "not a regular file" timeout 60 $BIN/train --model "$good" --data "$T/sh" --out "$T/r" --steps 1 --batch 1 --seq 8
echo '[[2, 5, 70000]]' > "$T/big.json"
err "token id >= vocab" "outside the model's vocabulary" $BIN/profile logits --model "$good" --tokens "$T/big.json" --out "$T/o"
echo '[[2, 5], [3]]' > "$T/ragged.json"
err "ragged token rows" "all must be equal" $BIN/profile logits --model "$good" --tokens "$T/ragged.json" --out "$T/o"
err "missing model directory" "config.json" $BIN/profile logits --model "$T/nope" --tokens "$T/tok.json" --out "$T/o"

section outputs
# never clobber: only a regular file is ever renamed over. The device case uses a node made in $T (never
# the machine's /dev/null), and only when we may make one.
echo keep > "$T/o"
$BIN/profile logits --model "$good" --tokens "$T/big.json" --out "$T/o" > /dev/null 2>&1
n_case=$((n_case + 1)); if [ "$(cat "$T/o")" = keep ]; then n_clean=$((n_clean + 1)); ok "a failed run leaves the existing output"; else n_silent=$((n_silent + 1)); bad "a failed run damaged the existing output"; fi
mkfifo "$T/fifo"; cat "$T/fifo" > "$T/fifo_got" & reader=$!
good_run "--out a FIFO" $BIN/profile logits --model "$good" --tokens "$T/tok.json" --out "$T/fifo"
reap $reader
result "  still a FIFO, and the reader got the logits" sh -c "[ -p '$T/fifo' ] && [ \$(stat -c %s '$T/fifo_got') -eq 4096 ]"
err "--out a directory" "is a directory" $BIN/profile logits --model "$good" --tokens "$T/tok.json" --out "$T"
good_run "--out - (stdout)" sh -c "cd '$T' && '$BIN/profile' logits --model '$PWD/$good' --tokens tok.json --out -"
result "  stdout holds exactly the logits, the log went to stderr" sh -c "[ \$(stat -c %s '$T/out') -eq 4096 ] && grep -q 'loss' '$T/err'"
echo old > "$T/target"; ln -s "$T/target" "$T/link"
good_run "--out a symlink" $BIN/profile logits --model "$good" --tokens "$T/tok.json" --out "$T/link"
result "  the link stays, the file it points at is replaced" sh -c "[ -L '$T/link' ] && [ \$(stat -c %s '$T/target') -eq 4096 ]"
mkfifo "$T/gguf_fifo"; cat "$T/gguf_fifo" > "$T/gguf_got" & reader=$!
good_run "export --out a FIFO" $BIN/export --model "$good" --out "$T/gguf_fifo" --quiet
reap $reader
result "  still a FIFO, and the reader got a GGUF" sh -c "[ -p '$T/gguf_fifo' ] && [ \"\$(head -c 4 '$T/gguf_got')\" = GGUF ]"
: > "$T/-"  # a file named "-" where it runs: still stdout
good_run "export --out - (stdout)" sh -c "cd '$T' && '$BIN/export' --model '$PWD/$good' --out - --quiet"
result "  stdout is the GGUF alone (it starts with the magic)" sh -c "[ \"\$(head -c 4 '$T/out')\" = GGUF ] && grep -q 'model=' '$T/err' && [ ! -s '$T/-' ]"
echo keep > "$T/f"
err "train --out a file (a run is a directory)" "exists and is not a directory" $BIN/train --config "$good/config.json" --data "$T/sh2" --out "$T/f" --steps 1 --batch 1 --seq 8
check "  the file is as it was" [ "$(cat "$T/f")" = keep ]
err "prune --out a FIFO, refused before pruning" "exists and is not a directory" timeout 60 $BIN/prune --model "$good" --data "$T/sh2" --out "$T/fifo" --keep 0.5 --steps 1 --batch 1 --seq 8
if mknod "$T/null" c 1 3 2>/dev/null; then
  good_run "--out a character device (a null node made in the test dir)" $BIN/profile logits --model "$good" --tokens "$T/tok.json" --out "$T/null"
  result "  still a character device" test -c "$T/null"
else echo "skip --out a character device: mknod needs root here"; fi

section flags
# command lines (util.h's one flag table): every value parsed whole and range-checked, old spellings refused
# with the new name, and nothing written
x="$T/never"
err "--steps past 32 bits (used to wrap to 2)" "--steps 4294967298: expected a whole number >= 1" $BIN/train --config "$good/config.json" --out "$x" --steps 4294967298
err "--steps -1" "--steps -1: expected a whole number >= 1" $BIN/prune --model "$good" --out "$x" --keep 0.5 --steps -1
err "--keep nan (used to run a no-op prune)" "--keep nan: expected a finite number" $BIN/prune --model "$good" --out "$x" --keep nan
err "--lr inf" "--lr inf: expected a finite number > 0" $BIN/prune --model "$good" --out "$x" --keep 0.5 --lr inf
err "--lr 1e400 (overflows a double)" "--lr 1e400: expected a finite number" $BIN/train --config "$good/config.json" --out "$x" --lr 1e400
err "a boolean where a number goes" "--batch true: expected a whole number" $BIN/train --config "$good/config.json" --out "$x" --batch true
err "a fraction where a whole number goes" "--seq 2.5: expected a whole number" $BIN/prune --model "$good" --out "$x" --keep 0.5 --seq 2.5
err "trailing characters" "--min-lr-frac 0.1x: expected a finite number in \\[0, 1\\]" $BIN/train --config "$good/config.json" --out "$x" --min-lr-frac 0.1x
err "a value out of its range" "--beta2 1: expected a finite number in \\[0, 1)" $BIN/train --config "$good/config.json" --out "$x" --beta2 1
err "a value that is not one of the choices" "--mix sometimes is not one of: static, dynamic" $BIN/prune --model "$good" --out "$x" --keep 0.5 --mix sometimes
err "a missing value" "--out needs a value" $BIN/export --model "$good" --out
err "a flag where a value goes" "--tokens needs a value" $BIN/profile logits --model "$good" --tokens --out "$x"
err "an unknown flag" "unknown flag --bogus" $BIN/profile memory --preset 1b --bogus 1
err "a stray argument" "unexpected argument" $BIN/data/tokenize bytes
for old in "clip 1:--grad-clip" "lr-floor 0.1:--min-lr-frac" "ckpt-every 10:--save-every" "warmup-frac 0.1:--warmup N" \
           "dbl 0:--mix dynamic|static" "dbl-clip0 1:--dbl-clip"; do
  err "prune's old --${old%%:*}" "--${old%% *} is no longer accepted: use ${old#*:}" $BIN/prune --model "$good" --out "$x" --keep 0.5 --${old%%:*}
done
err "train refuses prune's old spelling too" "--clip is no longer accepted: use --grad-clip" $BIN/train --config "$good/config.json" --out "$x" --clip 1
err "profile stats' old --batches" "use --calib-batches" $BIN/profile stats --model "$good" --out "$x" --batches 2
err "profile eval's old --batches" "use --eval-batches" $BIN/profile eval --model "$good" --out "$x" --batches 2
err "profile memory's old --weights" "use --dtype" $BIN/profile memory --preset 1b --weights fp32
check "a refused command line writes nothing" test ! -e "$x"
# every program's --help: each flag with its type and [default]
helps=0
for p in $BIN/prune $BIN/train $BIN/export "$BIN/profile logits" "$BIN/profile plan" "$BIN/profile memory" "$BIN/profile stats" "$BIN/profile ablate" \
         "$BIN/profile diff" "$BIN/profile eval" $BIN/data/tokenize $BIN/data/mkshards; do
  $p --help > "$T/help" 2>&1 || bad "$p --help exits non-zero"
  n=$(grep -c '^  --' "$T/help"); typed=$(grep -cE '^  --[a-z0-9-]+ +(string|int|float|flag|list)  .*  \[[^]]+\]$' "$T/help")
  [ "$n" -gt 0 ] && [ "$n" -eq "$typed" ] && helps=$((helps + 1)) || bad "$p --help: $typed of $n flag lines show type and default"
done
check "--help of all 12 command lines lists every flag with its type and default" [ $helps -eq 12 ]

section generate
gen=test/fixtures/c_written/f32  # vocab 300: the byte tokenizer's 261 ids all have rows
err "--generate --seq 0" "--seq 0" $BIN/train --model "$gen" --generate "ab" --seq 0 --tokens 2
if [ -w /dev/full ]; then
  n_case=$((n_case + 1))
  $BIN/train --model "$gen" --generate "ab" --tokens 3 > /dev/full 2> "$T/err"; rc=$?
  if [ $rc -ge 1 ] && [ $rc -lt 128 ] && grep -q "stdout failed" "$T/err"; then n_clean=$((n_clean + 1)); ok "--generate onto a full disk -> $(tail -1 "$T/err")"
  else n_silent=$((n_silent + 1)); bad "--generate onto a full disk: exit $rc: $(cat "$T/err")"; fi
else echo "skip --generate onto a full disk: no /dev/full"; fi

section train-inputs
echo '{"alpha": 1e308, "beta": 1e308}' > "$T/w.json"
err "domain weights that overflow" "sum past" trn --config "$g4/config.json" --weights "$T/w.json"
echo '{"alpha": true}' > "$T/w.json"
err "a domain weight given as true" "must be a number" trn --config "$g4/config.json" --weights "$T/w.json"
section valid-runs  # whole runs on valid input: under `make debug` a leak left at exit fails them
# hidden_size 50 over 4 heads is valid (head_dim is its own field; transformers accepts it): what train --config
# writes, every loader must read back
py json "$good/config.json" "$T/c.json" hidden_size=50
good_run "train --config, hidden_size % heads != 0 (valid)" trn --config "$T/c.json"
good_run "  its checkpoint loads" $BIN/profile logits --model "$T/r/checkpoint" --tokens "$T/tok.json" --out "$T/o"
good_run "train from a config (1 step)" trn --config "$g4/config.json" --eval-every 1
good_run "train --resume (to step 2)" $BIN/train --data "$T/sh2" --out "$T/r" --steps 2 --batch 1 --seq 8 --resume
rm -rf "$T/p"
good_run "prune, sheared (2 steps)" $BIN/prune --model "$good" --data "$T/sh2" --out "$T/p" --keep 0.5 --steps 2 --batch 1 --seq 8 --eval-batches 1
good_run "profile eval" $BIN/profile eval --model "$T/p" --data "$T/sh2" --out "$T/ev.json" --batch 1 --seq 8 --eval-batches 1
section end

echo "class cases clean crash silent wrong-cause"
printf "%s" "$summary"
echo "test_badinput.sh: $pass passed, $fail failed"
[ $fail -eq 0 ]
