#!/usr/bin/env bash
# Builds the CPU kernel core and tests/sanitize/harness.cc with AddressSanitizer and
# UndefinedBehaviorSanitizer and runs the harness once per instruction set this CPU has
# (FOCAL_OP_CPU_ISA). Any report stops the run with a non-zero exit. About 3.5 minutes on 2 cores.
#   bash scripts/sanitize.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-build-sanitize}"
mkdir -p "$out"
CXX="${CXX:-g++}"
flags=(-std=c++17 -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
       -fopenmp-simd -fno-trapping-math -fno-math-errno -Icsrc/core)
objects=()
compile() {  # source, extra flags...
  local source="$1"; shift
  local object="$out/$(basename "$source" .cc).o"
  "$CXX" "${flags[@]}" "$@" -c "$source" -o "$object" &
  objects+=("$object")
}
isas=(generic)
if [[ "$(uname -m)" == x86_64 ]]; then
  compile csrc/core/cpu/dispatch.cc -DFOCAL_OP_X86_DISPATCH
  compile csrc/core/cpu/kernels_avx2.cc -march=x86-64-v3
  compile csrc/core/cpu/kernels_avx512.cc -march=x86-64-v4 -mprefer-vector-width=512
  grep -q avx2 /proc/cpuinfo && isas+=(avx2)
  grep -q avx512f /proc/cpuinfo && isas+=(best)
else
  compile csrc/core/cpu/dispatch.cc
fi
compile csrc/core/cpu/kernels_generic.cc
compile tests/sanitize/harness.cc
wait
"$CXX" "${flags[@]}" "${objects[@]}" -o "$out/harness"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
for isa in "${isas[@]}"; do
  if [[ "$isa" == best ]]; then unset FOCAL_OP_CPU_ISA; else export FOCAL_OP_CPU_ISA="$isa"; fi
  "$out/harness"
done
