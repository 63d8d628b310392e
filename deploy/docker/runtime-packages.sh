#!/bin/sh
# Prints the Debian/Ubuntu packages that own the shared libraries the given
# executables load (per ldd), one per line: what a runtime image must install
# to run binaries built in a builder image of the same distribution release.
# Libraries that no package owns (LibTorch's bundled ones) are left out.
# Usage: runtime-packages.sh BINARY...
set -eu
for bin in "$@"; do
  ldd "$bin" | awk '/=> \// { print $3 }'
done | sort -u | while read -r lib; do
  real=$(realpath "$lib")
  # dpkg records a file under the path its package ships it at; with merged
  # /usr that may be /lib/... while ldd or realpath says /usr/lib/... .
  for path in "$lib" "$real" "${lib#/usr}" "${real#/usr}"; do
    if owner=$(dpkg -S "$path" 2>/dev/null); then
      echo "${owner%%:*}"
      break
    fi
  done
done | sort -u
