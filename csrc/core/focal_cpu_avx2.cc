// focal_cpu_avx2.cc — the CPU kernels compiled for the "avx2" instruction set
// (compile flags set by CMakeLists.txt).
#define FOCAL_CPU_ISA isa_avx2
#include "focal_cpu_kernels.inc"
