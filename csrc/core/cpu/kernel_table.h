// cpu/kernel_table.h — the CPU kernels of one instruction set as a table of function pointers:
// each cpu/kernels_<isa>.cc defines its table, cpu/dispatch.cc picks one table once.
#pragma once

#include "focal_cpu.h"

namespace focal {

template <typename T>
struct CpuKernelTable {
  Status (*softmax_forward)(const SoftmaxArgs<T>&, RowRange);
  Status (*softmax_backward)(const SoftmaxArgs<T>&, RowRange);
  Status (*sigmoid)(const SigmoidArgs<T>&, RowRange);
};

enum class Isa { kGeneric, kAvx2, kAvx512 };

// The kernels compiled for kIsa (defined by cpu/kernels_<isa>.cc through cpu/isa_table.h).
template <Isa kIsa, typename T>
CpuKernelTable<T> isa_kernel_table();

}  // namespace focal
