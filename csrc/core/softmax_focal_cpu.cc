// softmax_focal_cpu.cc — picks the CPU kernels' instruction set once, at first use, and
// forwards each launcher to it.
#include <cstdlib>
#include <cstring>

#include "softmax_focal_cpu.h"

namespace focal {

#define FOCAL_DECLARE_ISA_KERNELS(isa)                                                                        \
  namespace isa {                                                                                             \
  template <typename T, typename Label>                                                                       \
  int64_t sparse_softmax_focal_forward(const T*, const Label*, int64_t, RowRange, const SoftmaxFocalParams&, \
                                       T*, acc_t<T>*);                                                        \
  template <typename T, typename Label>                                                                       \
  int64_t sparse_softmax_focal_backward(const T*, const Label*, const acc_t<T>*, const T*, int64_t, RowRange, \
                                        const SoftmaxFocalParams&, T*);                                       \
  }
FOCAL_DECLARE_ISA_KERNELS(isa_generic)
#if defined(FOCAL_OP_X86_DISPATCH)
FOCAL_DECLARE_ISA_KERNELS(isa_avx2)
FOCAL_DECLARE_ISA_KERNELS(isa_avx512)
#endif
#undef FOCAL_DECLARE_ISA_KERNELS

namespace {

enum class Isa { kGeneric, kAvx2, kAvx512 };

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

// Rows shorter than this run faster with 8-lane AVX2 than with 16-lane AVX-512 (measured on
// the development machine: C = 10 and 21 are 1.3-1.5x faster).
constexpr int64_t kAvx512MinClasses = 128;

#if defined(FOCAL_OP_X86_DISPATCH)
#define FOCAL_DISPATCH(function, ...)                                    \
  switch (active_isa()) {                                                \
    case Isa::kAvx512:                                                   \
      if (classes < kAvx512MinClasses) {                                 \
        return isa_avx2::function<T, Label>(__VA_ARGS__);               \
      }                                                                  \
      return isa_avx512::function<T, Label>(__VA_ARGS__);               \
    case Isa::kAvx2:                                                     \
      return isa_avx2::function<T, Label>(__VA_ARGS__);                 \
    default:                                                             \
      return isa_generic::function<T, Label>(__VA_ARGS__);              \
  }
#else
#define FOCAL_DISPATCH(function, ...) return isa_generic::function<T, Label>(__VA_ARGS__);
#endif

template <typename T, typename Label>
int64_t sparse_softmax_focal_forward_cpu(const T* logits, const Label* labels, int64_t classes, RowRange rows,
                                         const SoftmaxFocalParams& params, T* loss, acc_t<T>* row_stats) {
  FOCAL_DISPATCH(sparse_softmax_focal_forward, logits, labels, classes, rows, params, loss, row_stats)
}

template <typename T, typename Label>
int64_t sparse_softmax_focal_backward_cpu(const T* logits, const Label* labels, const acc_t<T>* row_stats,
                                          const T* loss_grad, int64_t classes, RowRange rows,
                                          const SoftmaxFocalParams& params, T* logits_grad) {
  FOCAL_DISPATCH(sparse_softmax_focal_backward, logits, labels, row_stats, loss_grad, classes, rows, params,
                 logits_grad)
}

#define FOCAL_INSTANTIATE_SPARSE_SOFTMAX(T, Label)                                                           \
  template int64_t sparse_softmax_focal_forward_cpu<T, Label>(const T*, const Label*, int64_t, RowRange,     \
                                                              const SoftmaxFocalParams&, T*, acc_t<T>*);    \
  template int64_t sparse_softmax_focal_backward_cpu<T, Label>(const T*, const Label*, const acc_t<T>*,      \
                                                               const T*, int64_t, RowRange,                  \
                                                               const SoftmaxFocalParams&, T*);
FOCAL_FOR_EACH_CPU_TYPE(FOCAL_INSTANTIATE_SPARSE_SOFTMAX)

}  // namespace focal
