// focal_cpu.cc — picks the CPU kernels' instruction set once, at first use, and
// forwards each launcher to it.
#include "focal_cpu.h"

#include <cstdlib>
#include <cstring>

namespace focal {

#define FOCAL_DECLARE_ISA_KERNELS(isa)                                                                               \
  namespace isa {                                                                                                    \
  template <typename T, typename Label>                                                                              \
  int64_t sparse_softmax_focal_forward(const T*, const Label*, int64_t, RowRange, const SoftmaxFocalParams&, T*,     \
                                       acc_t<T>*);                                                                   \
  template <typename T, typename Label>                                                                              \
  int64_t sparse_softmax_focal_backward(const T*, const Label*, const acc_t<T>*, const T*, int64_t, RowRange,        \
                                        const SoftmaxFocalParams&, T*);                                              \
  template <typename T>                                                                                              \
  void dense_softmax_focal_forward(const T*, const T*, int64_t, RowRange, const SoftmaxFocalParams&, T*, acc_t<T>*); \
  template <typename T>                                                                                              \
  void dense_softmax_focal_backward(const T*, const T*, const acc_t<T>*, const T*, int64_t, RowRange,                \
                                    const SoftmaxFocalParams&, T*);                                                  \
  template <typename T>                                                                                              \
  void sigmoid_focal_elements(const T*, const T*, const T*, int64_t, RowRange, const SigmoidFocalParams&, T*,       \
                              SigmoidUpstream);                                                                     \
  template <typename T>                                                                                              \
  void sigmoid_focal_row_sums(const T*, const T*, int64_t, RowRange, const SigmoidFocalParams&, T*);                 \
  }
FOCAL_DECLARE_ISA_KERNELS(isa_generic)
#if defined(FOCAL_OP_X86_DISPATCH)
FOCAL_DECLARE_ISA_KERNELS(isa_avx2)
FOCAL_DECLARE_ISA_KERNELS(isa_avx512)
#endif
#undef FOCAL_DECLARE_ISA_KERNELS

#define COMMA ,

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

// Where AVX-512 pays (measured on the development machine): softmax rows of 128 classes or more
// and short rows of up to 32 (16 rows per vector; 1.3-1.7x faster than 8 with AVX2), but not the
// rows in between (1.3-1.5x faster with AVX2); the elementwise sigmoid (2x faster).
constexpr int64_t kAvx512MinClasses = 128;

bool softmax_uses_avx512(int64_t classes) { return classes <= kShortRowMaxClasses || classes >= kAvx512MinClasses; }

// FOCAL_DISPATCH(function<targs>, use_avx512, args...): calls the kernel built for the active
// instruction set; on an AVX-512 machine the AVX2 build unless use_avx512.
#if defined(FOCAL_OP_X86_DISPATCH)
#define FOCAL_DISPATCH(kernel, use_avx512, ...) \
  switch (active_isa()) {                       \
    case Isa::kAvx512:                          \
      if (!(use_avx512)) {                      \
        return isa_avx2::kernel(__VA_ARGS__);   \
      }                                         \
      return isa_avx512::kernel(__VA_ARGS__);   \
    case Isa::kAvx2:                            \
      return isa_avx2::kernel(__VA_ARGS__);     \
    default:                                    \
      return isa_generic::kernel(__VA_ARGS__);  \
  }
#else
#define FOCAL_DISPATCH(kernel, use_avx512, ...) return isa_generic::kernel(__VA_ARGS__);
#endif

template <typename T, typename Label>
int64_t sparse_softmax_focal_forward_cpu(const T* logits, const Label* labels, int64_t classes, RowRange rows,
                                         const SoftmaxFocalParams& params, T* loss, acc_t<T>* row_stats) {
  FOCAL_DISPATCH(sparse_softmax_focal_forward<T COMMA Label>, softmax_uses_avx512(classes), logits, labels, classes,
                 rows, params, loss, row_stats)
}

template <typename T, typename Label>
int64_t sparse_softmax_focal_backward_cpu(const T* logits, const Label* labels, const acc_t<T>* row_stats,
                                          const T* loss_grad, int64_t classes, RowRange rows,
                                          const SoftmaxFocalParams& params, T* logits_grad){
    FOCAL_DISPATCH(sparse_softmax_focal_backward<T COMMA Label>, softmax_uses_avx512(classes), logits, labels,
                   row_stats, loss_grad, classes, rows, params, logits_grad)}
#define FOCAL_INSTANTIATE_SPARSE_SOFTMAX(T, Label)                                                                \
  template int64_t sparse_softmax_focal_forward_cpu<T, Label>(const T*, const Label*, int64_t, RowRange,          \
                                                              const SoftmaxFocalParams&, T*, acc_t<T>*);          \
  template int64_t sparse_softmax_focal_backward_cpu<T, Label>(const T*, const Label*, const acc_t<T>*, const T*, \
                                                               int64_t, RowRange, const SoftmaxFocalParams&, T*);
FOCAL_FOR_EACH_TYPE(FOCAL_INSTANTIATE_SPARSE_SOFTMAX)

    template <typename T>
    void dense_softmax_focal_forward_cpu(const T* logits, const T* labels, int64_t classes, RowRange rows,
                                         const SoftmaxFocalParams& params, T* loss, acc_t<T>* row_stats) {
  FOCAL_DISPATCH(dense_softmax_focal_forward<T>, softmax_uses_avx512(classes), logits, labels, classes, rows, params,
                 loss, row_stats)
}

template <typename T>
void dense_softmax_focal_backward_cpu(const T* logits, const T* labels, const acc_t<T>* row_stats, const T* loss_grad,
                                      int64_t classes, RowRange rows, const SoftmaxFocalParams& params,
                                      T* logits_grad) {
  FOCAL_DISPATCH(dense_softmax_focal_backward<T>, softmax_uses_avx512(classes), logits, labels, row_stats, loss_grad,
                 classes, rows, params, logits_grad)
}

template <typename T>
void sigmoid_focal_cpu(const T* logits, const T* labels, const T* loss_grad, int64_t columns, RowRange elements,
                       const SigmoidFocalParams& params, T* out, SigmoidUpstream upstream) {
  FOCAL_DISPATCH(sigmoid_focal_elements<T>, true, logits, labels, loss_grad, columns, elements, params, out, upstream)
}

template <typename T>
void sigmoid_focal_row_sums_cpu(const T* logits, const T* labels, int64_t columns, RowRange rows,
                                const SigmoidFocalParams& params, T* out) {
  FOCAL_DISPATCH(sigmoid_focal_row_sums<T>, true, logits, labels, columns, rows, params, out)
}

#define FOCAL_INSTANTIATE_ELEMENTWISE(T)                                                                              \
  template void dense_softmax_focal_forward_cpu<T>(const T*, const T*, int64_t, RowRange, const SoftmaxFocalParams&,  \
                                                   T*, acc_t<T>*);                                                    \
  template void dense_softmax_focal_backward_cpu<T>(const T*, const T*, const acc_t<T>*, const T*, int64_t, RowRange, \
                                                    const SoftmaxFocalParams&, T*);                                   \
  template void sigmoid_focal_cpu<T>(const T*, const T*, const T*, int64_t, RowRange, const SigmoidFocalParams&, T*, \
                                     SigmoidUpstream);                                                                  \
  template void sigmoid_focal_row_sums_cpu<T>(const T*, const T*, int64_t, RowRange, const SigmoidFocalParams&, T*);
FOCAL_FOR_EACH_FLOAT_TYPE(FOCAL_INSTANTIATE_ELEMENTWISE)

}  // namespace focal
