// cpu/sigmoid.h — the sigmoid focal loss on the CPU: elementwise forward and backward (upstream
// per element, per row or one for all) and the sums over the last axis, and the entry point
// sigmoid over a SigmoidArgs.
#pragma once

#include "cpu/simd.h"

namespace focal {
namespace FOCAL_CPU_ISA {

// Sigmoid over elements [begin, end): alpha per element from alpha_row[i] (kPerColumn) or one
// shared value. kMode: kSigmoidForward writes the loss; kSigmoidBackward writes loss_grad[i] · d
// loss / dx, kSigmoidBackwardConstant upstream · d loss / dx; kSigmoidSum writes nothing and
// returns Σ loss (in Acc lanes: callers keep segments to kSumBlock elements). Out: T, or the
// accumulation type for the row sums' buffer. Compile-time flags keep every loop free of
// conditional loads, so it vectorises.
constexpr int kSigmoidForward = 0;
constexpr int kSigmoidBackward = 1;
constexpr int kSigmoidBackwardConstant = 2;
constexpr int kSigmoidSum = 3;

// sigmoid_segment's elementwise modes for float accumulation, in explicit vectors of kRowLanes
// elements, the last one padded: every element takes the same instructions wherever a range
// starts or ends. (A compiler-vectorised loop leaves a scalar head or tail, where FMA
// contraction can differ from the vector body by an ulp, so results would depend on how the
// elements are split over threads.)
template <typename VecMath, bool kPerColumn, bool kHasAlpha, int kMode, typename T, typename Out>
void sigmoid_segment_vectors(const T* logits, const T* labels, const T* loss_grad, float upstream, int64_t begin,
                             int64_t end, const float* alpha_row, float shared_alpha, float gamma, float smoothing,
                             Out* out) {
  const RowVec gamma_v = splat<RowVec>(gamma);
  const RowVec shared_alpha_v = splat<RowVec>(shared_alpha);
  const auto value_of = [&](const T* x, const T* y, const float* alpha, const T* element_upstream) {
    const SigmoidFocalTerm<RowVec> term =
        sigmoid_focal<VecMath>(load_lanes(x), smooth_binary_label(load_lanes(y), smoothing), kHasAlpha,
                               kPerColumn ? load_row_vec(alpha) : shared_alpha_v, gamma_v);
    return kMode == kSigmoidForward    ? term.loss
           : kMode == kSigmoidBackward ? load_lanes(element_upstream) * term.dloss_dx
                                       : upstream * term.dloss_dx;
  };
  int64_t i = begin;
  for (; i + kRowLanes <= end; i += kRowLanes) {
    store_lanes(value_of(logits + i, labels + i, kPerColumn ? alpha_row + i : nullptr,
                         kMode == kSigmoidBackward ? loss_grad + i : nullptr),
                out + i);
  }
  if (i == end) return;
  const int count = static_cast<int>(end - i);
  T x[kRowLanes] = {}, y[kRowLanes] = {}, element_upstream[kRowLanes] = {};
  float alpha[kRowLanes] = {};
  for (int l = 0; l < count; ++l) {
    x[l] = logits[i + l];
    y[l] = labels[i + l];
    if (kPerColumn) alpha[l] = alpha_row[i + l];
    if (kMode == kSigmoidBackward) element_upstream[l] = loss_grad[i + l];
  }
  Out values[kRowLanes];
  store_lanes(value_of(x, y, alpha, element_upstream), values);
  for (int l = 0; l < count; ++l) out[i + l] = values[l];
}

template <typename VecMath, bool kPerColumn, bool kHasAlpha, int kMode, typename T, typename Out = T>
acc_t<T> sigmoid_segment(const T* logits, const T* labels, const T* loss_grad, acc_t<T> upstream, int64_t begin,
                         int64_t end, const acc_t<T>* alpha_row, acc_t<T> shared_alpha, acc_t<T> gamma,
                         acc_t<T> smoothing, Out* out) {
  using Acc = acc_t<T>;
  const auto term_at = [&](int64_t i) {
    const Acc y = smooth_binary_label(load_acc(labels[i]), smoothing);
    const Acc a = kPerColumn ? alpha_row[i] : shared_alpha;
    return sigmoid_focal<VecMath>(load_acc(logits[i]), y, kHasAlpha, a, gamma);
  };
  if constexpr (kHasShortRows<T> && kMode != kSigmoidSum) {
    sigmoid_segment_vectors<VecMath, kPerColumn, kHasAlpha, kMode>(logits, labels, loss_grad, upstream, begin, end,
                                                                  alpha_row, shared_alpha, gamma, smoothing, out);
    return 0;
  }
  Acc loss_sum = 0;
  for (int64_t block = begin; block < end; block += kSumBlock) {
    const int64_t block_end = std::min(end, block + kSumBlock);
    if constexpr (kMode == kSigmoidSum) {
#pragma omp simd reduction(+ : loss_sum)
      for (int64_t i = block; i < block_end; ++i) loss_sum += term_at(i).loss;
    } else {
      // plain stores: non-temporal ones (as for long softmax gradients) made this loop 1.5-1.8x
      // slower at 8192 x 1000 (bench/RESULTS.md)
#pragma omp simd
      for (int64_t i = block; i < block_end; ++i) {
        const SigmoidFocalTerm<Acc> term = term_at(i);
        const Acc value = kMode == kSigmoidForward    ? term.loss
                          : kMode == kSigmoidBackward ? load_acc(loss_grad[i]) * term.dloss_dx
                                                      : upstream * term.dloss_dx;
        store_from_acc(value, out + i);
      }
    }
  }
  return loss_sum;
}

// Calls body(math, per_column, has_alpha) with the sigmoid's compile-time choices for params:
// γ fixed where it is 0, 1 or 2, alpha per column, one shared alpha, or none.
template <typename Body>
void with_sigmoid_choices(const SigmoidFocalParams& params, Body&& body) {
  const bool has_alpha = sigmoid_has_alpha(params);
  const bool per_column = has_alpha && params.alpha_size > 1;
  with_fixed_vector_math(params.gamma, 0.0, [&](auto math) {
    if (per_column) return body(math, std::true_type{}, std::true_type{});
    if (has_alpha) return body(math, std::false_type{}, std::true_type{});
    return body(math, std::false_type{}, std::false_type{});
  });
}

// Short sigmoid rows (width <= kShortRow) with alpha per column or the upstream gradient per row:
// chunks of kSigmoidChunk elements, alpha repeated over the chunk and the per-row upstream values
// spread to one per element, so each chunk is one vectorised loop (row by row, a row of 10 would
// leave only a scalar remainder). Values as with row segments, bit for bit.
constexpr int64_t kSigmoidChunk = 2048;

template <typename VecMath, bool kPerColumn, bool kHasAlpha, int kMode, typename T>
void sigmoid_short_rows(const T* logits, const T* labels, const T* loss_grad, SigmoidUpstream upstream, int64_t width,
                        RowRange elements, const std::vector<acc_t<T>>& alpha, acc_t<T> shared_upstream,
                        acc_t<T> gamma, acc_t<T> smoothing, T* out) {
  using Acc = acc_t<T>;
  const std::vector<Acc> tiled_alpha = repeat_alpha(alpha, width, kSigmoidChunk + width);
  T spread[kSigmoidChunk];
  const bool per_row = kMode == kSigmoidBackwardConstant && upstream == SigmoidUpstream::kPerRow;
  for (int64_t begin = elements.begin; begin < elements.end;) {
    const int64_t count = std::min(elements.end - begin, kSigmoidChunk);
    const Acc* alpha_row = tiled_alpha.data() + begin % width;
    if (per_row) {
      int64_t row = begin / width;
      for (int64_t j = 0, left = width - begin % width; j < count; j += left, left = width, ++row) {
        const int64_t n = std::min(left, count - j);
        for (int64_t k = 0; k < n; ++k) spread[j + k] = loss_grad[row];
      }
      sigmoid_segment<VecMath, kPerColumn, kHasAlpha, kSigmoidBackward, T>(logits + begin, labels + begin, spread,
                                                                           Acc(1), 0, count, alpha_row, alpha[0],
                                                                           gamma, smoothing, out + begin);
    } else {
      const T* element_upstream = kMode == kSigmoidBackward ? loss_grad + begin : nullptr;
      sigmoid_segment<VecMath, kPerColumn, kHasAlpha, kMode, T>(logits + begin, labels + begin, element_upstream,
                                                                shared_upstream, 0, count, alpha_row, alpha[0], gamma,
                                                                smoothing, out + begin);
    }
    begin += count;
  }
}

// Sigmoid: elements [elements.begin, elements.end) of a [rows, columns] array; alpha indexes
// the column. loss_grad == nullptr: forward (writes loss); otherwise backward (writes grad),
// with loss_grad laid out as `upstream` says.
template <typename T>
void sigmoid_focal_elements(const T* logits, const T* labels, const T* loss_grad, int64_t columns, RowRange elements,
                            const SigmoidFocalParams& params, T* out, SigmoidUpstream upstream) {
  using Acc = acc_t<T>;
  if (elements.begin >= elements.end) return;  // reads nothing, not even a shared upstream value
  const Acc gamma = static_cast<Acc>(params.gamma);
  const Acc smoothing = static_cast<Acc>(params.label_smoothing);
  const int64_t width = columns > 0 ? columns : 1;
  const std::vector<Acc> alpha = expand_alpha<Acc>(params.alpha, params.alpha_size, width);
  const bool backward = loss_grad != nullptr;
  const int mode = !backward                                       ? kSigmoidForward
                   : upstream == SigmoidUpstream::kPerElement ? kSigmoidBackward
                                                                    : kSigmoidBackwardConstant;
  with_sigmoid_choices(params, [&](auto math, auto per_column_flag, auto has_alpha_flag) {
    using M = decltype(math);
    constexpr bool kPerColumn = decltype(per_column_flag)::value;
    const auto run = [&](auto mode_flag) {
      constexpr int kMode = decltype(mode_flag)::value;
      const auto segment = sigmoid_segment<M, kPerColumn, decltype(has_alpha_flag)::value, kMode, T>;
      // the upstream gradient shared by a segment starting at `element` (one per row or one for all)
      const auto upstream_constant = [&](int64_t element) {
        return kMode == kSigmoidBackwardConstant ? load_acc(loss_grad[sigmoid_upstream_index(element, width, upstream)])
                                                 : Acc(1);
      };
      if (!kPerColumn && upstream != SigmoidUpstream::kPerRow) {  // one flat pass
        const Acc constant = upstream_constant(elements.begin);
        segment(logits, labels, loss_grad, constant, elements.begin, elements.end, nullptr, alpha[0], gamma,
                smoothing, out);
        return;
      }
      if (width <= kShortRow) {  // short rows: chunks of whole vectors, see sigmoid_short_rows
        sigmoid_short_rows<M, kPerColumn, decltype(has_alpha_flag)::value, kMode>(
            logits, labels, loss_grad, upstream, width, elements, alpha, upstream_constant(elements.begin), gamma,
            smoothing, out);
        return;
      }
      // row segments: alpha per column, or the upstream gradient per row, without a division per
      // element
      for (int64_t begin = elements.begin; begin < elements.end;) {
        const int64_t column0 = begin % width;
        const int64_t end = std::min(elements.end, begin + (width - column0));
        const Acc constant = upstream_constant(begin);
        segment(logits, labels, loss_grad, constant, begin, end, alpha.data() + column0 - begin, alpha[0], gamma,
                smoothing, out);
        begin = end;
      }
    };
    if (mode == kSigmoidForward) return run(std::integral_constant<int, kSigmoidForward>{});
    if (mode == kSigmoidBackward) return run(std::integral_constant<int, kSigmoidBackward>{});
    return run(std::integral_constant<int, kSigmoidBackwardConstant>{});
  });
}

// Σ values[0, n) of a short row, added in order from 0: the lane sums of the block loop below
// give the same bits.
template <typename Acc>
Acc sum_in_order(const Acc* values, int64_t n) {
  Acc total = 0;
  for (int64_t i = 0; i < n; ++i) total += values[i];
  return total;
}

// Sigmoid loss summed over each row [rows.begin, rows.end) of [rows, columns]: out[r], without
// storing the elementwise loss. Rows longer than kShortRow are summed in registers, kSumBlock
// elements at a time; short rows a chunk of whole rows at a time: the elementwise loop writes
// their losses into a small buffer, summed from the cache kRowLanes rows per vector.
template <typename T>
void sigmoid_focal_row_sums(const T* logits, const T* labels, int64_t columns, RowRange rows,
                            const SigmoidFocalParams& params, T* out) {
  using Acc = acc_t<T>;
  if (columns <= 0) {
    for (int64_t r = rows.begin; r < rows.end; ++r) store_from_acc(Acc(0), out + r);
    return;
  }
  const Acc gamma = static_cast<Acc>(params.gamma);
  const Acc smoothing = static_cast<Acc>(params.label_smoothing);
  const std::vector<Acc> row_alpha = expand_alpha<Acc>(params.alpha, params.alpha_size, columns);
  const bool short_rows = columns <= kShortRow;
  // whole short rows per chunk, and alpha repeated over them
  const int64_t chunk_rows = short_rows ? kSigmoidChunk / columns : 0;
  const std::vector<Acc> chunk_alpha = repeat_alpha(row_alpha, columns, chunk_rows * columns);
  with_sigmoid_choices(params, [&](auto math, auto per_column_flag, auto has_alpha_flag) {
    using M = decltype(math);
    constexpr bool kPerColumn = decltype(per_column_flag)::value;
    constexpr bool kHasAlpha = decltype(has_alpha_flag)::value;
    if (!short_rows) {
      const auto block_sum = sigmoid_segment<M, kPerColumn, kHasAlpha, kSigmoidSum, T>;
      for (int64_t r = rows.begin; r < rows.end; ++r) {
        const T* z = logits + r * columns;
        const T* y = labels + r * columns;
        RowSum sum = 0;
        for (int64_t c = 0; c < columns; c += kSumBlock) {
          sum += block_sum(z, y, nullptr, Acc(1), c, std::min(columns, c + kSumBlock), row_alpha.data(), row_alpha[0],
                           gamma, smoothing, static_cast<T*>(nullptr));
        }
        store_from_acc(static_cast<Acc>(sum), out + r);
      }
      return;
    }
    const auto segment = sigmoid_segment<M, kPerColumn, kHasAlpha, kSigmoidForward, T, Acc>;
    Acc buffer[kSigmoidChunk];
    for (int64_t r0 = rows.begin; r0 < rows.end; r0 += chunk_rows) {
      const int64_t r1 = std::min(rows.end, r0 + chunk_rows);
      const int64_t begin = r0 * columns;
      segment(logits + begin, labels + begin, nullptr, Acc(1), 0, (r1 - r0) * columns, chunk_alpha.data(),
              row_alpha[0], gamma, smoothing, buffer);
      int64_t r = r0;
      if constexpr (kHasShortRows<T>) {  // kRowLanes rows per vector: one column at a time
        for (; r + kRowLanes <= r1; r += kRowLanes) {
          RowVec block_columns[kShortRow];
          load_columns(buffer + (r - r0) * columns, columns, block_columns);
          RowVec sums{};
          for (int64_t c = 0; c < columns; ++c) sums += block_columns[c];
          store_lanes(sums, out + r);
        }
      }
      for (; r < r1; ++r) store_from_acc(sum_in_order(buffer + (r - r0) * columns, columns), out + r);
    }
  });
}

// The entry point of this instruction set's kernel table (cpu/kernel_table.h).
template <typename T>
Status sigmoid(const SigmoidArgs<T>& a, RowRange range) {
  if (a.sum_over_classes) {
    sigmoid_focal_row_sums(a.logits, a.labels, a.columns, range, a.params, a.out);
  } else {
    sigmoid_focal_elements(a.logits, a.labels, a.loss_grad, a.columns, range, a.params, a.out, a.upstream);
  }
  return {};
}

}  // namespace FOCAL_CPU_ISA
}  // namespace focal
