#!/usr/bin/env bash
# Cross-build the library for AArch64 and run tests/cross/fiber-check.c under
# qemu-user: the AArch64 fiber switch cannot run natively on this x86-64
# machine. Installs its Debian packages when run as root; skips (exit 0, with
# a line saying so) when they cannot be had.
set -euo pipefail
cd "$(dirname "$0")/../.."
pkgs="gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user"
if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
  if [ "$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs >/dev/null 2>&1; then
    :
  else
    echo "aarch64 check: skipped (needs: apt-get install $pkgs)"
    exit 0
  fi
fi
out=build-aarch64
mkdir -p "$out"
# The library's sources, as CMakeLists.txt lists them (so this list cannot
# drift), with the AArch64 switch.
srcs=$(sed -n '/^set(RAVEL_SOURCES/,/^)/p' CMakeLists.txt | grep -E '^\s+[a-z].*\.c$' | tr -d ' ')
srcs="$srcs executor/switch_aarch64.S"
# -O2: the migration hazards (cached thread-local addresses) appear only with
# optimisation. Static, so qemu-user needs no AArch64 sysroot at run time.
aarch64-linux-gnu-gcc -std=gnu11 -O2 -g -static -Wall -Wextra -Wno-unused-parameter \
  -Iinclude -I. -DRAVEL_BUILDING -DRV_LOCAL_QUEUE_SIZE=256 \
  $srcs tests/cross/fiber-check.c -lpthread -o "$out/fiber-check"
timeout 300 qemu-aarch64 "$out/fiber-check"
