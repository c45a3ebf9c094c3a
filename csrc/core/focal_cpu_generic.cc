// focal_cpu_generic.cc — the CPU kernels compiled for the "generic" instruction set
// (compile flags set by CMakeLists.txt).
#define FOCAL_CPU_ISA isa_generic
#include "focal_cpu_kernels.inc"
