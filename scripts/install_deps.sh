#!/usr/bin/env bash
# Installs the Debian 12 packages that the CPU build and tests need.
# Idempotent: packages already present are skipped by apt. Run as root (or via sudo).
set -euo pipefail

PKGS=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libtorch-dev                      # LibTorch 1.13 (CPU)
  libgloo-dev                       # c10d Gloo process group headers
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev googletest
  libsqlite3-dev libcivetweb-dev
  prometheus                        # promtool and prometheus for the /metrics tests (tests/unit/metrics_*)
  python3 ccache
  libpcre2-dev                      # tokenizer.json regex pre-tokenizers (worker/tokenizer)
  libutf8proc-dev                   # tokenizer.json NFC normalizer (Qwen2)
  libsentencepiece-dev sentencepiece  # tokenizer.model; spm_train made the SentencePiece fixture
  libssl-dev                        # SHA-256 (OpenSSL EVP): foakd file store, foakctl upload
  libyaml-cpp-dev                   # foakctl submit -f JOB.yaml
  libcurl4-openssl-dev              # foakd Kubernetes launcher: HTTPS to the API server
)

SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# Node.js and npm for the deploy/ checks (tests/deploy), from Debian unless a
# node is already installed (NodeSource's nodejs bundles npm and conflicts with
# Debian's npm package).
if ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install_deps: all ${#PKGS[@]} packages present"
else
  echo "install_deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The npm packages of deploy/tools (Kubernetes schema validation, Dockerfile
# lint), exactly as its package-lock.json pins them; skipped when node_modules
# already matches the lock file.
TOOLS="$(cd "$(dirname "$0")/.." && pwd)/deploy/tools"
if ! cmp -s "$TOOLS/package-lock.json" "$TOOLS/node_modules/.foak-package-lock.json"; then
  echo "install_deps: npm ci in deploy/tools"
  npm ci --prefix "$TOOLS" --no-audit --no-fund --loglevel=error
  cp "$TOOLS/package-lock.json" "$TOOLS/node_modules/.foak-package-lock.json"
fi
