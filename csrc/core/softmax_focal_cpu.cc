// softmax_focal_cpu.cc — row loops of the softmax focal losses on the CPU.
// The math is focal_math.h; this file only walks rows and classes.
#include "softmax_focal_cpu.h"

#include <limits>

namespace focal {
namespace {

// Row sums accumulate in double: a float32 row of 32000 classes keeps ~1e-7 relative accuracy.
using RowSum = double;

// Max, then Σ exp(z - max) over the non-maximal classes, with ties to the max counted exactly.
// The row is read from cache the second time (a row of 32000 floats is 128 KiB).
template <typename T>
RowNormalizer<acc_t<T>> row_normalizer_cpu(const T* z, int64_t classes) {
  using Acc = acc_t<T>;
  Acc max_logit = -std::numeric_limits<Acc>::infinity();
  for (int64_t c = 0; c < classes; ++c) {
    const Acc v = load_acc(z[c]);
    max_logit = v > max_logit ? v : max_logit;
  }
  RowSum sum = 0;
  int64_t ties = 0;
  for (int64_t c = 0; c < classes; ++c) {
    const Acc v = load_acc(z[c]);
    if (v == max_logit) {
      ++ties;
    } else {
      sum += math_exp(v - max_logit);  // a NaN logit lands here and makes the row NaN
    }
  }
  return row_normalizer(max_logit, static_cast<Acc>(sum + static_cast<RowSum>(ties - 1)));
}

template <typename Acc>
Acc quiet_nan() {
  return std::numeric_limits<Acc>::quiet_NaN();
}

}  // namespace

template <typename T, typename Label>
int64_t sparse_softmax_focal_forward_cpu(const T* logits, const Label* labels, int64_t classes, RowRange rows,
                                         const SoftmaxFocalParams& params, T* loss, acc_t<T>* row_stats) {
  using Acc = acc_t<T>;
  const Acc gamma = static_cast<Acc>(params.gamma);
  const Acc epsilon = static_cast<Acc>(params.epsilon);
  int64_t first_bad_row = -1;
  for (int64_t r = rows.begin; r < rows.end; ++r) {
    Acc* stats_out = row_stats + r * kSoftmaxRowStats;
    const RowKind kind = sparse_row_kind(labels[r], classes, params);
    if (kind != RowKind::kValid) {
      const Acc fill = kind == RowKind::kIgnored ? Acc(0) : quiet_nan<Acc>();
      if (kind == RowKind::kOutOfRange && first_bad_row < 0) first_bad_row = r;
      store_from_acc(fill, loss + r);
      for (int k = 0; k < kSoftmaxRowStats; ++k) stats_out[k] = fill;
      continue;
    }
    const T* z = logits + r * classes;
    const RowNormalizer<Acc> row = row_normalizer_cpu(z, classes);
    RowSum row_loss = 0, grad_weight_rest = 0, grad_weight_argmax = 0;
    const SparseLabelWeights<Acc> weights = sparse_label_weights<Acc>(labels[r], classes, params.label_smoothing);
    if (weights.only_target()) {
      const int64_t t = weights.target;
      accumulate_class(load_acc(z[t]), row, weights.on, static_cast<Acc>(class_alpha(params, t)), gamma, epsilon,
                       row_loss, grad_weight_rest, grad_weight_argmax);
    } else {
      for (int64_t c = 0; c < classes; ++c) {
        accumulate_class(load_acc(z[c]), row, weights.weight(c), static_cast<Acc>(class_alpha(params, c)), gamma,
                         epsilon, row_loss, grad_weight_rest, grad_weight_argmax);
      }
    }
    store_from_acc(static_cast<Acc>(row_loss), loss + r);
    stats_out[0] = row.max_logit;
    stats_out[1] = row.sum_others;
    stats_out[2] = static_cast<Acc>(grad_weight_rest);
    stats_out[3] = static_cast<Acc>(grad_weight_argmax);
  }
  return first_bad_row;
}

template <typename T, typename Label>
int64_t sparse_softmax_focal_backward_cpu(const T* logits, const Label* labels, const acc_t<T>* row_stats,
                                          const T* loss_grad, int64_t classes, RowRange rows,
                                          const SoftmaxFocalParams& params, T* logits_grad) {
  using Acc = acc_t<T>;
  const Acc gamma = static_cast<Acc>(params.gamma);
  const Acc epsilon = static_cast<Acc>(params.epsilon);
  int64_t first_bad_row = -1;
  for (int64_t r = rows.begin; r < rows.end; ++r) {
    T* grad = logits_grad + r * classes;
    const RowKind kind = sparse_row_kind(labels[r], classes, params);
    if (kind != RowKind::kValid) {
      const Acc fill = kind == RowKind::kIgnored ? Acc(0) : quiet_nan<Acc>();
      if (kind == RowKind::kOutOfRange && first_bad_row < 0) first_bad_row = r;
      for (int64_t c = 0; c < classes; ++c) store_from_acc(fill, grad + c);
      continue;
    }
    const Acc* s = row_stats + r * kSoftmaxRowStats;
    const SoftmaxRowStats<Acc> stats{s[0], s[1], s[2], s[3]};
    const RowNormalizer<Acc> row = row_normalizer(stats.max_logit, stats.sum_others);
    const Acc upstream = load_acc(loss_grad[r]);
    const SparseLabelWeights<Acc> weights = sparse_label_weights<Acc>(labels[r], classes, params.label_smoothing);
    const T* z = logits + r * classes;
    for (int64_t c = 0; c < classes; ++c) {
      const Acc zc = load_acc(z[c]);
      const ClassProbability<Acc> prob = class_probability(zc, row);
      const Acc g =
          class_grad_weight(prob, weights.weight(c), static_cast<Acc>(class_alpha(params, c)), gamma, epsilon);
      store_from_acc(upstream * softmax_logit_gradient(zc, prob, g, stats), grad + c);
    }
  }
  return first_bad_row;
}

#define FOCAL_INSTANTIATE_SPARSE_SOFTMAX(T, Label)                                                           \
  template int64_t sparse_softmax_focal_forward_cpu<T, Label>(const T*, const Label*, int64_t, RowRange,     \
                                                              const SoftmaxFocalParams&, T*, acc_t<T>*);    \
  template int64_t sparse_softmax_focal_backward_cpu<T, Label>(const T*, const Label*, const acc_t<T>*,      \
                                                               const T*, int64_t, RowRange,                  \
                                                               const SoftmaxFocalParams&, T*);

#define FOCAL_INSTANTIATE_FOR_LABELS(T)          \
  FOCAL_INSTANTIATE_SPARSE_SOFTMAX(T, int32_t) \
  FOCAL_INSTANTIATE_SPARSE_SOFTMAX(T, int64_t)

FOCAL_INSTANTIATE_FOR_LABELS(float16_bits)
FOCAL_INSTANTIATE_FOR_LABELS(bfloat16_bits)
FOCAL_INSTANTIATE_FOR_LABELS(float)
FOCAL_INSTANTIATE_FOR_LABELS(double)

}  // namespace focal
