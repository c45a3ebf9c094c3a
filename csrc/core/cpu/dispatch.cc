// cpu/dispatch.cc — the CPU launchers: the instruction set is picked once, at first use, and each
// launcher calls through that instruction set's kernel table.
#include <cstdlib>
#include <cstring>

#include "cpu/kernel_table.h"

namespace focal {
namespace {

Isa detect_isa() {
#if defined(FOCAL_OP_X86_DISPATCH)
  __builtin_cpu_init();
  Isa best = __builtin_cpu_supports("x86-64-v4")   ? Isa::kAvx512
             : __builtin_cpu_supports("x86-64-v3") ? Isa::kAvx2
                                                   : Isa::kGeneric;
  const char* requested = std::getenv("FOCAL_OP_CPU_ISA");
  if (requested != nullptr) {
    if (std::strcmp(requested, "generic") == 0) best = Isa::kGeneric;
    if (std::strcmp(requested, "avx2") == 0 && best == Isa::kAvx512) best = Isa::kAvx2;
  }
  return best;
#else
  return Isa::kGeneric;
#endif
}

Isa active_isa() {
  static const Isa isa = detect_isa();
  return isa;
}

template <typename T>
CpuKernelTable<T> table_of(Isa isa) {
#if defined(FOCAL_OP_X86_DISPATCH)
  if (isa == Isa::kAvx512) return isa_kernel_table<Isa::kAvx512, T>();
  if (isa == Isa::kAvx2) return isa_kernel_table<Isa::kAvx2, T>();
#endif
  (void)isa;
  return isa_kernel_table<Isa::kGeneric, T>();
}

// With AVX-512 the softmax rows in between the short ones (one row per lane) and those of
// kAvx512MinClasses or more run faster with the AVX2 kernels (docs/performance.md); everything
// else takes the best instruction set.
constexpr int64_t kAvx512MinClasses = 128;

template <typename T>
struct CpuKernels {
  CpuKernelTable<T> best;
  CpuKernelTable<T> middle_rows;
};

template <typename T>
const CpuKernels<T>& cpu_kernels() {
  static const CpuKernels<T> kernels{table_of<T>(active_isa()),
                                     table_of<T>(active_isa() == Isa::kAvx512 ? Isa::kAvx2 : active_isa())};
  return kernels;
}

template <typename T>
const CpuKernelTable<T>& softmax_kernels(int64_t classes) {
  const bool middle = classes > kShortRowMaxClasses && classes < kAvx512MinClasses;
  return middle ? cpu_kernels<T>().middle_rows : cpu_kernels<T>().best;
}

}  // namespace

const char* cpu_isa() {
  switch (active_isa()) {
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAvx2:
      return "avx2";
    default:
      return "generic";
  }
}

template <typename T>
Status softmax_forward_cpu(const SoftmaxArgs<T>& args, RowRange rows) {
  return softmax_kernels<T>(args.classes).softmax_forward(args, rows);
}

template <typename T>
Status softmax_backward_cpu(const SoftmaxArgs<T>& args, RowRange rows) {
  return softmax_kernels<T>(args.classes).softmax_backward(args, rows);
}

template <typename T>
Status sigmoid_cpu(const SigmoidArgs<T>& args, RowRange range) {
  return cpu_kernels<T>().best.sigmoid(args, range);
}

#define FOCAL_INSTANTIATE_CPU_LAUNCHERS(T)                                     \
  template Status softmax_forward_cpu(const SoftmaxArgs<T>&, RowRange);      \
  template Status softmax_backward_cpu(const SoftmaxArgs<T>&, RowRange);     \
  template Status sigmoid_cpu(const SigmoidArgs<T>&, RowRange);
FOCAL_FOR_EACH_FLOAT_TYPE(FOCAL_INSTANTIATE_CPU_LAUNCHERS)
#undef FOCAL_INSTANTIATE_CPU_LAUNCHERS

}  // namespace focal
