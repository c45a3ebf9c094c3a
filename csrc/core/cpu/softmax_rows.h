// cpu/softmax_rows.h — one softmax row at a time (long rows, float64, label smoothing): the
// row normaliser (max, then Σ exp in vector lanes), the scaled probabilities of the backward,
// the forward and backward of a row for any label weights, and the fills of rows that are not
// computed.
#pragma once

#include "cpu/simd.h"

namespace focal {
namespace FOCAL_CPU_ISA {

// Max, then Σ exp(z - max) over the non-maximal classes, with ties to the max counted exactly.
// The row is read from cache the second time (a row of 32000 floats is 128 KiB).
template <typename T>
RowNormalizer<acc_t<T>> row_normalizer_cpu(const T* z, int64_t classes) {
  using Acc = acc_t<T>;
  constexpr Acc kMinusInf = -std::numeric_limits<Acc>::infinity();
  const int64_t bulk = bulk_classes(classes);
  const int tail = static_cast<int>(classes - bulk);

  Acc max_logit = bulk_max(z, bulk);
  Acc tail_v[kLanes];
  if (tail > 0) {
    load_tail(z, bulk, tail, kMinusInf, tail_v);
    const Acc tail_max = reduce_lanes(tail_v, [](Acc a, Acc b) { return b > a ? b : a; });
    max_logit = tail_max > max_logit ? tail_max : max_logit;
  }

  RowSum sum = 0;
  int64_t ties = 0;
  for (int64_t begin = 0; begin < bulk; begin += kSumBlock) {
    const int64_t end = std::min(begin + kSumBlock, bulk);
    prefetch_next_row(z, classes, begin, end);
    Acc block_sum = 0;
    int block_ties = 0;
#pragma omp simd reduction(+ : block_sum, block_ties)
    for (int64_t c = begin; c < end; ++c) {
      const Acc v = load_acc(z[c]);
      const bool tie = v == max_logit;
      const Acc e = exp_of_difference<VectorMath>(v, max_logit);  // a NaN logit makes the row NaN
      block_sum += tie ? Acc(0) : e;
      block_ties += tie ? 1 : 0;
    }
    sum += block_sum;
    ties += block_ties;
  }
  if (tail > 0) {
    Acc lane_sum[kLanes];
    int lane_ties[kLanes];
    for (int l = 0; l < kLanes; ++l) {  // padding is -inf: exp gives 0, only ties need the mask
      const bool tie = (tail_v[l] == max_logit) & (l < tail);
      const Acc e = exp_of_difference<VectorMath>(tail_v[l], max_logit);
      lane_sum[l] = tie ? Acc(0) : e;
      lane_ties[l] = tie ? 1 : 0;
    }
    sum += reduce_lanes(lane_sum, [](Acc a, Acc b) { return a + b; });
    ties += reduce_lanes(lane_ties, [](int a, int b) { return a + b; });
  }
  return row_normalizer<ScalarMath>(max_logit, static_cast<Acc>(sum_others_of(sum, static_cast<RowSum>(ties))));
}

// scale · p_c of one class (p from the row's normalizer); plain exp(z - max): only the
// gradient's relative accuracy (~|z - max| ulps) depends on it.
// V: a float, a double, or a vector of floats (RowVec, short rows).
template <typename V>
inline V scaled_probability(V v, V max_logit, V inv_denom, V scale) {
  const V e = exp_nonpositive(v - max_logit);  // 1 at the max; computed everywhere: no branch
  return scale * ((v == max_logit ? V{} + 1 : e) * inv_denom);
}

template <typename Acc>
inline Acc scaled_probability(Acc v, const RowNormalizer<Acc>& row, Acc scale) {
  return scaled_probability(v, row.max_logit, row.inv_denom, scale);
}

// scaled_probabilities with non-temporal stores: a scalar head up to 64-byte alignment, whole
// aligned vectors, a scalar tail.
inline void scaled_probabilities_streamed(const float* z, int64_t classes, const RowNormalizer<float>& row, float scale,
                                          float* grad) {
  const int64_t misaligned = static_cast<int64_t>(reinterpret_cast<std::uintptr_t>(grad) % 64) / 4;
  const int64_t head = std::min<int64_t>(misaligned == 0 ? 0 : kLanes - misaligned, classes);
  for (int64_t c = 0; c < head; ++c) grad[c] = scaled_probability(z[c], row, scale);
  int64_t c = head;
  for (; c + kLanes <= classes; c += kLanes) {
    __builtin_prefetch(z + classes + c, 0, 2);  // this line of the next row (see prefetch_next_row)
    float out[kLanes];
#pragma omp simd
    for (int l = 0; l < kLanes; ++l) out[l] = scaled_probability(z[c + l], row, scale);
    stream_lanes(grad + c, out);
  }
  for (; c < classes; ++c) grad[c] = scaled_probability(z[c], row, scale);
  stream_fence();
}

// grad[c] = scale · p_c for every class of the row (p from the row's normalizer).
template <typename T>
void scaled_probabilities(const T* z, int64_t classes, const RowNormalizer<acc_t<T>>& row, acc_t<T> scale, T* grad,
                          bool stream = false) {
  if constexpr (std::is_same_v<T, float>) {
    if (stream) return scaled_probabilities_streamed(z, classes, row, scale, grad);
  }
  using Acc = acc_t<T>;
  const int64_t bulk = bulk_classes(classes);
  const int tail = static_cast<int>(classes - bulk);
  for (int64_t begin = 0; begin < bulk; begin += kSumBlock) {
    const int64_t end = std::min(begin + kSumBlock, bulk);
    prefetch_next_row(z, classes, begin, end);
#pragma omp simd
    for (int64_t c = begin; c < end; ++c) store_from_acc(scaled_probability(load_acc(z[c]), row, scale), grad + c);
  }
  if (tail > 0) {
    Acc v[kLanes];
    Acc out[kLanes];
    load_tail(z, bulk, tail, row.max_logit, v);
    for (int l = 0; l < kLanes; ++l) out[l] = scaled_probability(v[l], row, scale);
    for (int l = 0; l < tail; ++l) store_from_acc(out[l], grad + bulk + l);
  }
}

// One softmax row: loss and the four row stats, for any label weights (sparse or dense).
template <typename VecMath, typename T, typename Weights>
void softmax_row_forward(const T* z, int64_t classes, const Weights& weights, const SoftmaxFocalParams& params,
                         const acc_t<T>* alpha, T* loss_out, acc_t<T>* stats_out) {
  using Acc = acc_t<T>;
  const Acc gamma = static_cast<Acc>(params.gamma);
  const Acc epsilon = static_cast<Acc>(params.epsilon);
  const RowNormalizer<Acc> row = row_normalizer_cpu(z, classes);
  RowSum row_loss = 0, grad_weight_rest = 0, grad_weight_argmax = 0;
  bool single_target = false;
  if constexpr (Weights::kMayHaveSingleTarget) {
    single_target = weights.only_target();
    if (single_target) {
      const int64_t t = weights.target;
      accumulate_class<ScalarMath>(load_acc(z[t]), row, weights.on, alpha[t], gamma, epsilon, row_loss,
                                   grad_weight_rest, grad_weight_argmax);
    }
  }
  if (!single_target) {
    // a local copy: through the reference GCC re-reads the label pointer and runs the loop
    // unvectorised (4x slower for dense labels)
    const Weights local_weights = weights;
    // per block in Acc lanes (vectorised), across blocks in double
    for (int64_t begin = 0; begin < classes; begin += kSumBlock) {
      const int64_t end = std::min(begin + kSumBlock, classes);
      Acc block_loss = 0, block_rest = 0, block_argmax = 0;
#pragma omp simd reduction(+ : block_loss, block_rest, block_argmax)
      for (int64_t c = begin; c < end; ++c) {
        accumulate_class<VecMath>(load_acc(z[c]), row, local_weights.weight(c), alpha[c], gamma, epsilon, block_loss,
                                  block_rest, block_argmax);
      }
      row_loss += block_loss;
      grad_weight_rest += block_rest;
      grad_weight_argmax += block_argmax;
    }
  }
  store_from_acc(row_loss_or_nan(static_cast<Acc>(row_loss), row.sum_others), loss_out);
  stats_out[0] = row.max_logit;
  stats_out[1] = row.sum_others;
  stats_out[2] = static_cast<Acc>(grad_weight_rest);
  stats_out[3] = static_cast<Acc>(grad_weight_argmax);
}

// One softmax row of the gradient: grad = upstream · d loss / d z.
template <typename VecMath, typename T, typename Weights>
void softmax_row_backward(const T* z, int64_t classes, const Weights& weights, const SoftmaxFocalParams& params,
                          const acc_t<T>* alpha, const acc_t<T>* stats_in, acc_t<T> upstream, T* grad,
                          bool stream = false) {
  using Acc = acc_t<T>;
  const Acc gamma = static_cast<Acc>(params.gamma);
  const Acc epsilon = static_cast<Acc>(params.epsilon);
  const SoftmaxRowStats<Acc> stats{stats_in[0], stats_in[1], stats_in[2], stats_in[3]};
  const RowNormalizer<Acc> row = row_normalizer<ScalarMath>(stats.max_logit, stats.sum_others);
  if constexpr (Weights::kMayHaveSingleTarget) {
    if (weights.only_target()) {
      // every class but the target has g = 0: d loss / d z_c = -p_c · Σ g (also at an argmax).
      // The target's logit is read first: grad may be the logits' own buffer (in place).
      const int64_t t = weights.target;
      const Acc gradient =
          softmax_class_gradient<ScalarMath>(load_acc(z[t]), row, weights.on, alpha[t], gamma, epsilon, stats);
      scaled_probabilities(z, classes, row, -upstream * (stats.grad_weight_rest + stats.grad_weight_argmax), grad,
                           stream);
      store_from_acc(upstream * gradient, grad + t);
      return;
    }
  }
  const Weights local_weights = weights;  // as in softmax_row_forward
#pragma omp simd
  for (int64_t c = 0; c < classes; ++c) {
    const Acc gradient =
        softmax_class_gradient<VecMath>(load_acc(z[c]), row, local_weights.weight(c), alpha[c], gamma, epsilon, stats);
    store_from_acc(upstream * gradient, grad + c);
  }
}

template <typename T>
void fill_softmax_row_forward(RowKind kind, T* loss, acc_t<T>* stats) {
  const acc_t<T> fill = row_fill<acc_t<T>>(kind);
  store_from_acc(fill, loss);
  for (int k = 0; k < kSoftmaxRowStats; ++k) stats[k] = fill;
}

template <typename T>
void fill_gradient_row(RowKind kind, int64_t classes, T* grad) {
  const acc_t<T> fill = row_fill<acc_t<T>>(kind);
  for (int64_t c = 0; c < classes; ++c) store_from_acc(fill, grad + c);
}

// The first row of a range with a label out of range, -1 while there is none.
struct FirstBadRow {
  int64_t row = -1;
  void note(int64_t r, RowKind kind) {
    if (kind == RowKind::kOutOfRange && row < 0) row = r;
  }
};

// A dense label row with at most one non-zero value as the equivalent sparse weights (weight 0
// at class 0 for a row of zeros), so one-hot rows take the single-target loops; false when two
// or more classes carry weight.
template <typename T>
bool dense_row_single_target(const T* y, int64_t classes, SparseLabelWeights<acc_t<T>>& weights) {
  int64_t nonzero = 0, last = -1;
  for (int64_t begin = 0; begin < classes; begin += kSumBlock) {  // 32-bit lanes within a block
    const int block = static_cast<int>(std::min(kSumBlock, classes - begin));
    int block_nonzero = 0, block_last = -1;
#pragma omp simd reduction(+ : block_nonzero) reduction(max : block_last)
    for (int c = 0; c < block; ++c) {
      const bool labelled = load_acc(y[begin + c]) != acc_t<T>(0);
      block_nonzero += labelled ? 1 : 0;
      block_last = std::max(block_last, labelled ? c : -1);
    }
    nonzero += block_nonzero;
    last = block_last >= 0 ? begin + block_last : last;
  }
  if (nonzero > 1) return false;
  weights.target = last < 0 ? 0 : last;
  weights.on = last < 0 ? acc_t<T>(0) : load_acc(y[last]);
  weights.off = acc_t<T>(0);
  return true;
}

}  // namespace FOCAL_CPU_ISA
}  // namespace focal
