#!/usr/bin/env bash
# Downloads, on a Debian 12 machine with apt, the .deb files that the
# air-gapped GPU host needs to build foak: gRPC 1.51 with its closure (Abseil,
# re2, c-ares), nlohmann json, GoogleTest, and the coordinator's SQLite,
# civetweb and yaml-cpp. scripts/gpu_host.sh unpacks them
# into a private prefix there (see docs/gpu_host.md and shared/GPU_HOST.md).
#
# Why these and not more: the GPU host (Ubuntu 24.04) already has protobuf
# 3.21.12 with protoc, zlib and libssl runtimes, so the bundle carries no
# protobuf; Debian 12's gRPC links against exactly that protobuf soname
# (libprotobuf.so.32). libssl-dev and pkgconf are carried as FALLBACKS only:
# gpu_host.sh unpacks them just when the host lacks OpenSSL headers or
# pkg-config (gRPC's CMake config needs OpenSSL::SSL and finds re2 through
# pkg-config), and points the libssl .so links at the host's own runtime.
#
# Usage: scripts/make_grpc_bundle.sh [DIR]   (default third_party/grpc-bundle,
# which .gitignore keeps out of the repo). Re-running replaces DIR's .debs.
set -euo pipefail

DIR="${1:-third_party/grpc-bundle}"

# The closure from shared/GPU_HOST.md (verified) ...
GRPC_PKGS=(
  libgrpc++1.51 libgrpc29 libgrpc-dev libgrpc++-dev protobuf-compiler-grpc
  libabsl20220623 libabsl-dev libre2-9 libre2-dev libc-ares2 libc-ares-dev
)
# ... what our top CMakeLists.txt also finds (nlohmann_json 3, GTest) ...
TEST_PKGS=(nlohmann-json3-dev libgtest-dev libgmock-dev googletest)
# ... PCRE2 (regex pre-tokenizers) and utf8proc (NFC) for worker/tokenizer ...
TOKENIZER_PKGS=(libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3
  libutf8proc-dev libutf8proc2)
# ... the coordinator's and foakctl's (SQLite, civetweb for /metrics,
# yaml-cpp), so foakd and its end-to-end tests build and run on the host too ...
COORDINATOR_PKGS=(libsqlite3-dev libsqlite3-0 libcivetweb-dev libcivetweb1 libyaml-cpp-dev
  libyaml-cpp0.7)
# ... and fallbacks that gpu_host.sh unpacks only when the host lacks them.
FALLBACK_PKGS=(libssl-dev pkgconf pkgconf-bin libpkgconf3)

if ! command -v apt-get >/dev/null; then
  echo "make_grpc_bundle: apt-get not found; run this on a Debian 12 machine" >&2
  exit 1
fi
if [ -r /etc/os-release ]; then
  # shellcheck disable=SC1091
  . /etc/os-release
  if [ "${ID:-}" != "debian" ] || [ "${VERSION_ID:-}" != "12" ]; then
    echo "make_grpc_bundle: warning: this is ${PRETTY_NAME:-unknown}, not Debian 12;" \
         "the GPU host recipe was verified with Debian 12 packages" >&2
  fi
fi

mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
rm -f "$DIR"/*.deb
# apt-get download writes into the current directory; _apt may need to read it.
(
  cd "$DIR"
  apt-get download -o APT::Sandbox::User=root "${GRPC_PKGS[@]}" "${TEST_PKGS[@]}" "${TOKENIZER_PKGS[@]}" "${COORDINATOR_PKGS[@]}" "${FALLBACK_PKGS[@]}"
)

# Fail loudly if any package did not arrive (apt-get download exits non-zero
# for unknown names, but check the files too).
missing=()
for p in "${GRPC_PKGS[@]}" "${TEST_PKGS[@]}" "${TOKENIZER_PKGS[@]}" "${COORDINATOR_PKGS[@]}" "${FALLBACK_PKGS[@]}"; do
  if ! compgen -G "$DIR/${p}_*.deb" >/dev/null; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -ne 0 ]; then
  echo "make_grpc_bundle: missing after download: ${missing[*]}" >&2
  exit 1
fi

{
  echo "# foak GPU-host bundle, made $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(. /etc/os-release; echo "$PRETTY_NAME")"
  echo "# fallback (unpacked only when the host lacks them): ${FALLBACK_PKGS[*]}"
  for f in "$DIR"/*.deb; do
    printf '%s %s %s\n' "$(dpkg-deb -f "$f" Package)" "$(dpkg-deb -f "$f" Version)" \
      "$(sha256sum "$f" | cut -c1-16)"
  done
} > "$DIR/MANIFEST.txt"

echo "make_grpc_bundle: $(ls "$DIR"/*.deb | wc -l) packages in $DIR ($(du -sh "$DIR" | cut -f1)):"
ls -l "$DIR"/*.deb | awk '{printf "  %9d  %s\n", $5, $NF}' | sed "s#$DIR/##"
