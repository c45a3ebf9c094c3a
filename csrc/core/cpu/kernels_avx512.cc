// cpu/kernels_avx512.cc — the CPU kernels compiled for x86-64-v4 (AVX-512; CMake compiles this file with -march=x86-64-v4).
#define FOCAL_CPU_ISA isa_avx512
#define FOCAL_CPU_ISA_ENUM Isa::kAvx512
#include "cpu/isa_table.h"
