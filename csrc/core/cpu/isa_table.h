// cpu/isa_table.h — the body of a cpu/kernels_<isa>.cc: the kernels compiled inside the namespace
// FOCAL_CPU_ISA names, and isa_kernel_table<FOCAL_CPU_ISA_ENUM, T> for every logits type.
#pragma once

#include "cpu/kernel_table.h"
#include "cpu/sigmoid.h"
#include "cpu/softmax.h"

#ifndef FOCAL_CPU_ISA_ENUM
#error "define FOCAL_CPU_ISA_ENUM (an Isa) before including cpu/isa_table.h"
#endif

namespace focal {

#define FOCAL_ISA_TABLE(T)                                                                      \
  template <>                                                                                  \
  CpuKernelTable<T> isa_kernel_table<FOCAL_CPU_ISA_ENUM, T>() {                                \
    return {&FOCAL_CPU_ISA::softmax_forward<T>, &FOCAL_CPU_ISA::softmax_backward<T>, &FOCAL_CPU_ISA::sigmoid<T>}; \
  }
FOCAL_FOR_EACH_FLOAT_TYPE(FOCAL_ISA_TABLE)
#undef FOCAL_ISA_TABLE

}  // namespace focal
