// focal_cpu.h — CPU launchers of the focal losses (sparse and dense softmax, sigmoid), framework-free.
//
// Each launcher processes a contiguous range of rows, so a caller can split the batch over
// its own thread pool (TensorFlow's CPU workers, or one thread from pybind11). The kernels are
// compiled for several x86 instruction sets and picked at run time (see cpu_isa()).
#pragma once

#include <cstdint>

#include "focal_math.h"

namespace focal {

struct RowRange {
  int64_t begin;
  int64_t end;
};

// Softmax rows of at most this many classes are computed one row per vector lane (the CPU
// kernels' short-row path; the dispatch in focal_cpu.cc uses AVX-512 for them).
constexpr int64_t kShortRowMaxClasses = 32;

// Forward of the sparse-label softmax focal loss over rows [rows.begin, rows.end).
// logits: [rows, classes]; labels, loss: [rows]; row_stats: [rows, kSoftmaxRowStats].
// Ignored rows get loss 0. A row whose label is outside [0, classes) (and not ignore_class) gets
// a NaN loss; the first such row of the range is returned, -1 when there is none.
template <typename T, typename Label>
int64_t sparse_softmax_focal_forward_cpu(const T* logits, const Label* labels, int64_t classes, RowRange rows,
                                         const SoftmaxFocalParams& params, T* loss, acc_t<T>* row_stats);

// Backward: logits_grad = loss_grad · d loss / d logits, from the forward's row_stats.
// Same label handling: ignored rows get zeros, out-of-range rows NaN (returned as above).
// Every backward (here and in focal_cuda.h) may write into the logits' own buffer: each logit
// is read before its gradient is written.
template <typename T, typename Label>
int64_t sparse_softmax_focal_backward_cpu(const T* logits, const Label* labels, const acc_t<T>* row_stats,
                                          const T* loss_grad, int64_t classes, RowRange rows,
                                          const SoftmaxFocalParams& params, T* logits_grad);

// Dense (one-hot or soft) labels [rows, classes] of the logits' type: the same loss and row
// stats as the sparse launchers, y smoothed to y(1-s) + s/C. No label is out of range.
template <typename T>
void dense_softmax_focal_forward_cpu(const T* logits, const T* labels, int64_t classes, RowRange rows,
                                     const SoftmaxFocalParams& params, T* loss, acc_t<T>* row_stats);

template <typename T>
void dense_softmax_focal_backward_cpu(const T* logits, const T* labels, const acc_t<T>* row_stats, const T* loss_grad,
                                      int64_t classes, RowRange rows, const SoftmaxFocalParams& params, T* logits_grad);

// Sigmoid focal loss over elements [elements.begin, elements.end) of [rows, columns] logits and
// labels (alpha per column). Forward: loss_grad = nullptr, out = loss. Backward: out = loss_grad
// · d loss / d logits, loss_grad laid out as `upstream` says (one value per element, per row, or
// one for all).
template <typename T>
void sigmoid_focal_cpu(const T* logits, const T* labels, const T* loss_grad, int64_t columns, RowRange elements,
                       const SigmoidFocalParams& params, T* out,
                       SigmoidUpstream upstream = SigmoidUpstream::kPerElement);

// The sigmoid focal loss summed over the last axis, for rows [rows.begin, rows.end) of [rows,
// columns] logits and labels: out[r] = Σ_c loss[r, c], without storing the elementwise loss. Its
// gradient is sigmoid_focal_cpu's backward with one upstream value per row.
template <typename T>
void sigmoid_focal_row_sums_cpu(const T* logits, const T* labels, int64_t columns, RowRange rows,
                                const SigmoidFocalParams& params, T* out);

// The instruction set the CPU kernels run with: "avx512" (x86-64-v4), "avx2" (x86-64-v3) or
// "generic". The best the CPU supports, unless FOCAL_OP_CPU_ISA names a lower one.
const char* cpu_isa();

}  // namespace focal
