// focal_cpu_avx512.cc — the CPU kernels compiled for the "avx512" instruction set
// (compile flags set by CMakeLists.txt).
#define FOCAL_CPU_ISA isa_avx512
#include "focal_cpu_kernels.inc"
