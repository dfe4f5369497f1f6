#!/usr/bin/env bash
# Builds wasm/bn-simd128.wasm and wasm/bn-relaxed.wasm from kernels/*.c with clang-19 + wasm-ld-19.
# Reproducible: same toolchain and sources give the same bytes (CI rebuilds and compares).
set -euo pipefail
cd "$(dirname "$0")/.."
CC=${CC:-clang-19}
LD=${LD:-wasm-ld-19}
out=${1:-wasm}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
common=(--target=wasm32 -O3 -nostdlib -ffreestanding -fno-builtin-memcpy -ffp-contract=off -fno-exceptions
  -matomics -mbulk-memory -msimd128 -Wall -Wextra -Werror -Wno-unused-parameter -ffile-prefix-map="$PWD"=.
  ${EXTRA_CFLAGS:-})
build() {
  local name=$1; shift
  local objs=()
  for src in kernels/*.c; do
    local obj="$tmp/$name-$(basename "${src%.c}").o"
    "$CC" "${common[@]}" "$@" -c "$src" -o "$obj"
    objs+=("$obj")
  done
  "$LD" --no-entry --import-memory --shared-memory --max-memory=4294967296 -z stack-size=65536 \
    --export=__stack_pointer --export=__heap_base --strip-debug -o "$out/bn-$name.wasm" "${objs[@]}"
}
build simd128
build relaxed -mrelaxed-simd
ls -l "$out"/bn-*.wasm
