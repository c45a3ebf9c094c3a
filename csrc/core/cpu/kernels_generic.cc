// cpu/kernels_generic.cc — the CPU kernels compiled for the portable build (x86-64 baseline, or the target's default elsewhere).
#define FOCAL_CPU_ISA isa_generic
#define FOCAL_CPU_ISA_ENUM Isa::kGeneric
#include "cpu/isa_table.h"
