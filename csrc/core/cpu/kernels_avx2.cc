// cpu/kernels_avx2.cc — the CPU kernels compiled for x86-64-v3 (AVX2, FMA; CMake compiles this file with -march=x86-64-v3).
#define FOCAL_CPU_ISA isa_avx2
#define FOCAL_CPU_ISA_ENUM Isa::kAvx2
#include "cpu/isa_table.h"
