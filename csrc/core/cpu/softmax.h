// cpu/softmax.h — the softmax focal losses on the CPU (sparse and dense labels, forward and
// backward): row normalisers, long rows walked in vector lanes, short rows one per vector lane,
// and the entry points softmax_forward / softmax_backward over a SoftmaxArgs.
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

// The row stats of kRowLanes rows ([rows, kSoftmaxRowStats] floats), one row per lane, and back.
inline SoftmaxRowStats<RowVec> load_short_row_stats(const float* stats) {
  SoftmaxRowStats<RowVec> v;
  for (int l = 0; l < kRowLanes; ++l) {
    v.max_logit[l] = stats[l * kSoftmaxRowStats];
    v.sum_others[l] = stats[l * kSoftmaxRowStats + 1];
    v.grad_weight_rest[l] = stats[l * kSoftmaxRowStats + 2];
    v.grad_weight_argmax[l] = stats[l * kSoftmaxRowStats + 3];
  }
  return v;
}

inline void store_short_row_stats(const SoftmaxRowStats<RowVec>& v, float* stats) {
  for (int l = 0; l < kRowLanes; ++l) {
    stats[l * kSoftmaxRowStats] = v.max_logit[l];
    stats[l * kSoftmaxRowStats + 1] = v.sum_others[l];
    stats[l * kSoftmaxRowStats + 2] = v.grad_weight_rest[l];
    stats[l * kSoftmaxRowStats + 3] = v.grad_weight_argmax[l];
  }
}

// A block of kRowLanes short rows read column by column (z[c] lane l: row l, class c), with each
// row's max and others' share (ties to the max counted exactly, as row_normalizer_cpu does).
struct ShortRowBlock {
  RowVec z[kShortRow];
  RowVec max_logit;
  RowVec sum_others;
};

template <typename T>
void load_short_row_block(const T* rows, int64_t classes, ShortRowBlock& block) {
  RowVec(&z)[kShortRow] = block.z;
  load_columns(rows, classes, z);
  const RowVec zero{};
  RowVec max_v = zero - std::numeric_limits<float>::infinity();
  for (int64_t c = 0; c < classes; ++c) max_v = z[c] > max_v ? z[c] : max_v;
  RowVec sum = zero;
  RowInts ties{};
  for (int64_t c = 0; c < classes; ++c) {
    const RowInts tie = z[c] == max_v;  // -1 where tied, else 0
    const RowVec e = exp_of_difference<VectorMath>(z[c], max_v);
    sum += tie ? zero : e;
    ties -= tie;
  }
  block.max_logit = max_v;
  block.sum_others = sum_others_of(sum, __builtin_convertvector(ties, RowVec));
}

// For the flat walk over a block of kRowLanes short rows (kRowLanes · C contiguous values, i.e.
// C whole vectors): the row of each lane of vector k, to spread the rows' constants with a
// shuffle. Set once per launch.
struct ShortRowBlockLayout {
  RowInts row_of_lane[kShortRow];
  explicit ShortRowBlockLayout(int64_t classes) {
    for (int64_t k = 0; k < classes && k < kShortRow; ++k) {
      for (int l = 0; l < kRowLanes; ++l) row_of_lane[k][l] = static_cast<int32_t>((k * kRowLanes + l) / classes);
    }
  }
};

// grad = scale_r · p_c over a block of kRowLanes short rows, walked as C flat vectors (p as in
// scaled_probability; each value is read before its gradient is written).
template <typename T>
void short_rows_scaled_probabilities(const T* z, int64_t classes, const ShortRowBlockLayout& layout,
                                     const RowVec& max_logit, const RowVec& inv_denom, const RowVec& scale, T* grad) {
  for (int64_t k = 0; k < classes; ++k) {
    const RowInts row = layout.row_of_lane[k];
    const RowVec out = scaled_probability(load_lanes(z + k * kRowLanes), permute_lanes(max_logit, row),
                                          permute_lanes(inv_denom, row), permute_lanes(scale, row));
    store_lanes(out, grad + k * kRowLanes);
  }
}

// The one class per row that carries label weight, for kRowLanes short rows: sparse labels
// without smoothing (weight 1), or dense labels with at most one non-zero per row (one-hot).
struct ShortRowTargets {
  RowInts target;
  RowVec weight;
};

// Dense label rows [first_row, first_row + kRowLanes): false when a row has two or more non-zero
// labels (then every class needs its focal term); a row of zeros gets weight 0 at class 0.
template <typename T>
bool dense_short_row_targets(const T* labels, int64_t classes, int64_t first_row, ShortRowTargets& targets,
                             RowInts* labelled_classes = nullptr) {
  const T* y = labels + first_row * classes;
  prefetch_block_ahead(y, classes);
  RowVec columns[kShortRow];
  load_columns(y, classes, columns);  // class-major across the rows, as the logits
  RowInts nonzero{}, target{};
  RowVec weight{};
  for (int64_t c = 0; c < classes; ++c) {
    const RowInts is_label = columns[c] != 0.0f;  // -1 or 0
    nonzero -= is_label;
    target = is_label ? RowInts{} + static_cast<int32_t>(c) : target;
    weight = is_label ? columns[c] : weight;
  }
  targets.target = target;
  targets.weight = weight;
  if (labelled_classes != nullptr) *labelled_classes = nonzero;
  int most = 0;
  for (int l = 0; l < kRowLanes; ++l) most = std::max(most, static_cast<int>(nonzero[l]));
  return most <= 1;
}

// The math of the single-target rows below, vectorised across kRowLanes rows.
struct ShortRowConstants {
  RowVec gamma;
  RowVec epsilon;
  explicit ShortRowConstants(const SoftmaxFocalParams& params)
      : gamma(splat<RowVec>(static_cast<float>(params.gamma))),
        epsilon(splat<RowVec>(static_cast<float>(params.epsilon))) {}
};

template <typename VecMath, typename T>
void short_rows_forward(const T* logits, const ShortRowTargets& targets, int64_t classes, int64_t first_row,
                        const SoftmaxFocalParams& params, const float* alpha, T* loss, float* row_stats) {
  const ShortRowConstants constants(params);
  const T* z = logits + first_row * classes;
  prefetch_block_ahead(z, classes);
  ShortRowBlock block;
  load_short_row_block(z, classes, block);
  RowVec target_logit = block.z[0];
  for (int64_t c = 1; c < classes; ++c) {
    target_logit = targets.target == static_cast<int32_t>(c) ? block.z[c] : target_logit;
  }
  const RowNormalizer<RowVec> row = row_normalizer<VectorMath>(block.max_logit, block.sum_others);
  SoftmaxRowStats<RowVec> stats{block.max_logit, row.sum_others, RowVec{}, RowVec{}};
  RowVec row_loss{};
  accumulate_class<VecMath>(target_logit, row, targets.weight, gather_lanes(alpha, targets.target), constants.gamma,
                            constants.epsilon, row_loss, stats.grad_weight_rest, stats.grad_weight_argmax);
  store_lanes(row_loss_or_nan(row_loss, row.sum_others), loss + first_row);
  store_short_row_stats(stats, row_stats + first_row * kSoftmaxRowStats);
}

// The label kinds of a block of short rows [first, first + count) (count <= kRowLanes; lanes past
// count are padding, kEmpty) and the targets the block computes (class 0 where a row has none).
struct SparseShortBlock {
  RowKind kind[kRowLanes];
  ShortRowTargets targets;
  bool all_valid;  // a full block of valid rows: computed in place
  bool any_valid;
};

template <typename Label>
SparseShortBlock sparse_short_block(const Label* labels, int64_t first, int64_t count, int64_t classes,
                                    const SoftmaxFocalParams& params) {
  SparseShortBlock block;
  block.all_valid = count == kRowLanes;
  block.any_valid = false;
  for (int l = 0; l < kRowLanes; ++l) {
    block.kind[l] = l < count ? sparse_row_kind(labels[first + l], classes, params) : RowKind::kEmpty;
    const bool valid = block.kind[l] == RowKind::kValid;
    block.all_valid &= valid;
    block.any_valid |= valid;
    block.targets.target[l] = valid ? static_cast<int32_t>(labels[first + l]) : 0;
  }
  block.targets.weight = splat<RowVec>(1);
  return block;
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

template <typename T, typename Label>
int64_t sparse_softmax_focal_forward(const T* logits, const Label* labels, int64_t classes, RowRange rows,
                                     const SoftmaxFocalParams& params, T* loss, acc_t<T>* row_stats) {
  using Acc = acc_t<T>;
  const std::vector<Acc> alpha = expand_alpha<Acc>(params.alpha, params.alpha_size, classes);
  FirstBadRow bad;
  with_fixed_vector_math(params.gamma, params.epsilon, [&](auto math) {
    using VecMath = decltype(math);
    if constexpr (kHasShortRows<T>) {
      if (classes <= kShortRow && params.label_smoothing == 0.0) {
        for (int64_t r = rows.begin; r < rows.end; r += kRowLanes) {
          const int64_t count = std::min<int64_t>(kRowLanes, rows.end - r);
          const SparseShortBlock block = sparse_short_block(labels, r, count, classes, params);
          if (block.all_valid) {
            short_rows_forward<VecMath>(logits, block.targets, classes, r, params, alpha.data(), loss, row_stats);
            continue;
          }
          T block_loss[kRowLanes];
          Acc block_stats[kRowLanes * kSoftmaxRowStats];
          if (block.any_valid) {
            const PaddedRows<T> z(logits + r * classes, count, classes);
            short_rows_forward<VecMath>(z.values, block.targets, classes, 0, params, alpha.data(), block_loss,
                                        block_stats);
          }
          for (int l = 0; l < count; ++l) {
            Acc* stats_out = row_stats + (r + l) * kSoftmaxRowStats;
            if (block.kind[l] == RowKind::kValid) {
              loss[r + l] = block_loss[l];
              std::memcpy(stats_out, block_stats + l * kSoftmaxRowStats, sizeof(Acc) * kSoftmaxRowStats);
            } else {
              fill_softmax_row_forward(block.kind[l], loss + r + l, stats_out);
              bad.note(r + l, block.kind[l]);
            }
          }
        }
        return;
      }
    }
    for (int64_t r = rows.begin; r < rows.end; ++r) {
      Acc* stats_out = row_stats + r * kSoftmaxRowStats;
      const RowKind kind = sparse_row_kind(labels[r], classes, params);
      if (kind != RowKind::kValid) {
        fill_softmax_row_forward(kind, loss + r, stats_out);
        bad.note(r, kind);
        continue;
      }
      softmax_row_forward<VecMath>(logits + r * classes, classes,
                                   sparse_label_weights<Acc>(labels[r], classes, params.label_smoothing), params,
                                   alpha.data(), loss + r, stats_out);
    }
  });
  return bad.row;
}

// The backward of short_rows_forward's rows: the per-row constants and the target's gradient
// vectorised across kRowLanes rows, then every p_c of the block in C flat vectors. The target's
// focal weight g_t comes from the row stats (with hard labels it is the row's Σ g), so no focal
// term is recomputed.
template <typename VecMath, typename T>
void short_rows_backward(const T* logits, const ShortRowTargets& targets, const float* row_stats, const T* loss_grad,
                         int64_t classes, int64_t first_row, const ShortRowBlockLayout& layout, T* logits_grad) {
  const T* z = logits + first_row * classes;
  prefetch_block_ahead(z, classes);
  const RowVec target_logit = gather_lanes(z, lane_ids() * static_cast<int32_t>(classes) + targets.target);
  const SoftmaxRowStats<RowVec> stats = load_short_row_stats(row_stats + first_row * kSoftmaxRowStats);
  const RowNormalizer<RowVec> row = row_normalizer<VectorMath>(stats.max_logit, stats.sum_others);
  const RowVec upstream = load_lanes(loss_grad + first_row);
  // hard labels: the target is the only class with a focal weight, so its g_t is the row's Σ g,
  // which the forward stored (the same value the target's focal term would give again here)
  const RowVec target_g = stats.grad_weight_rest + stats.grad_weight_argmax;
  const RowVec scale = -upstream * target_g;
  const RowVec target_grad =
      upstream * softmax_logit_gradient(target_logit, class_probability<VecMath>(target_logit, row), target_g, stats);
  T* grad = logits_grad + first_row * classes;
  short_rows_scaled_probabilities(z, classes, layout, row.max_logit, row.inv_denom, scale, grad);
  for (int l = 0; l < kRowLanes; ++l) store_from_acc(target_grad[l], grad + l * classes + targets.target[l]);
}

template <typename T, typename Label>
int64_t sparse_softmax_focal_backward(const T* logits, const Label* labels, const acc_t<T>* row_stats,
                                      const T* loss_grad, int64_t classes, RowRange rows,
                                      const SoftmaxFocalParams& params, T* logits_grad) {
  using Acc = acc_t<T>;
  const std::vector<Acc> alpha = expand_alpha<Acc>(params.alpha, params.alpha_size, classes);
  FirstBadRow bad;
  const bool stream = stream_gradient(classes, rows.end - rows.begin, sizeof(T));
  with_fixed_vector_math(params.gamma, params.epsilon, [&](auto math) {
    using VecMath = decltype(math);
    if constexpr (kHasShortRows<T>) {
      if (classes <= kShortRow && params.label_smoothing == 0.0) {
        const ShortRowBlockLayout layout(classes);
        for (int64_t r = rows.begin; r < rows.end; r += kRowLanes) {
          const int64_t count = std::min<int64_t>(kRowLanes, rows.end - r);
          const SparseShortBlock block = sparse_short_block(labels, r, count, classes, params);
          if (block.all_valid) {
            short_rows_backward<VecMath>(logits, block.targets, row_stats, loss_grad, classes, r, layout,
                                         logits_grad);
            continue;
          }
          T* grad = logits_grad + r * classes;
          if (block.any_valid) {  // copies first: grad may be the logits' own buffer
            const PaddedRows<T> z(logits + r * classes, count, classes);
            const PaddedRows<Acc> stats(row_stats + r * kSoftmaxRowStats, count, kSoftmaxRowStats);
            const PaddedRows<T> upstream(loss_grad + r, count, 1);
            T block_grad[kRowLanes * kShortRow];
            short_rows_backward<VecMath>(z.values, block.targets, stats.values, upstream.values, classes, 0, layout,
                                         block_grad);
            for (int l = 0; l < count; ++l) {
              if (block.kind[l] != RowKind::kValid) continue;
              std::memcpy(grad + l * classes, block_grad + l * classes, static_cast<std::size_t>(classes) * sizeof(T));
            }
          }
          for (int l = 0; l < count; ++l) {
            if (block.kind[l] == RowKind::kValid) continue;
            fill_gradient_row(block.kind[l], classes, grad + l * classes);
            bad.note(r + l, block.kind[l]);
          }
        }
        return;
      }
    }
    for (int64_t r = rows.begin; r < rows.end; ++r) {
      T* grad = logits_grad + r * classes;
      const RowKind kind = sparse_row_kind(labels[r], classes, params);
      if (kind != RowKind::kValid) {
        fill_gradient_row(kind, classes, grad);
        bad.note(r, kind);
        continue;
      }
      softmax_row_backward<VecMath>(
          logits + r * classes, classes, sparse_label_weights<Acc>(labels[r], classes, params.label_smoothing), params,
          alpha.data(), row_stats + r * kSoftmaxRowStats, load_acc(loss_grad[r]), grad, stream);
    }
  });
  return bad.row;
}

// Dense short rows, kRowLanes at a time (one row per lane): forward.
template <typename VecMath, typename T>
void dense_short_rows_forward(const T* logits, const T* labels, int64_t classes, int64_t first_row,
                              const SoftmaxFocalParams& params, const float* alpha, T* loss, float* row_stats) {
  const ShortRowConstants constants(params);
  const T* z = logits + first_row * classes;
  ShortRowBlock block;
  load_short_row_block(z, classes, block);
  RowVec y[kShortRow];
  load_columns(labels + first_row * classes, classes, y);
  const RowNormalizer<RowVec> row = row_normalizer<VectorMath>(block.max_logit, block.sum_others);
  const DenseLabelWeights<float, T> smoothing = dense_label_weights<float>(labels, classes, params.label_smoothing);
  SoftmaxRowStats<RowVec> stats{block.max_logit, row.sum_others, RowVec{}, RowVec{}};
  RowVec row_loss{};
  for (int64_t c = 0; c < classes; ++c) {
    accumulate_class<VecMath>(block.z[c], row, y[c] * smoothing.keep + smoothing.add, splat<RowVec>(alpha[c]),
                              constants.gamma, constants.epsilon, row_loss, stats.grad_weight_rest,
                              stats.grad_weight_argmax);
  }
  store_lanes(row_loss_or_nan(row_loss, row.sum_others), loss + first_row);
  store_short_row_stats(stats, row_stats + first_row * kSoftmaxRowStats);
}

// Dense short rows, kRowLanes at a time: backward.
// targets, labelled: dense_short_row_targets of the block (labelled: labelled classes per row).
template <typename VecMath, typename T>
void dense_short_rows_backward(const T* logits, const T* labels, const float* row_stats, const T* loss_grad,
                               int64_t classes, int64_t first_row, const SoftmaxFocalParams& params,
                               const float* alpha, const ShortRowTargets& targets, const RowInts& labelled,
                               T* logits_grad) {
  const ShortRowConstants constants(params);
  RowVec z[kShortRow], y[kShortRow];
  load_columns(logits + first_row * classes, classes, z);
  load_columns(labels + first_row * classes, classes, y);
  const SoftmaxRowStats<RowVec> stats = load_short_row_stats(row_stats + first_row * kSoftmaxRowStats);
  const RowNormalizer<RowVec> row = row_normalizer<VectorMath>(stats.max_logit, stats.sum_others);
  const RowVec upstream = load_lanes(loss_grad + first_row);
  const DenseLabelWeights<float, T> smoothing = dense_label_weights<float>(labels, classes, params.label_smoothing);
  RowVec grad[kShortRow];
  for (int64_t c = 0; c < classes; ++c) {
    grad[c] = upstream * softmax_class_gradient<VecMath>(z[c], row, y[c] * smoothing.keep + smoothing.add,
                                                         splat<RowVec>(alpha[c]), constants.gamma, constants.epsilon,
                                                         stats);
  }
  // Rows with at most one labelled class take short_rows_backward's formula, so such a row's
  // gradient is the same bits whether or not its block holds rows of soft labels.
  const RowInts single = params.label_smoothing == 0.0 ? labelled <= 1 : RowInts{};
  bool any_single = false;
  for (int l = 0; l < kRowLanes; ++l) any_single |= single[l] != 0;
  if (any_single) {
    const RowVec target_g = stats.grad_weight_rest + stats.grad_weight_argmax;
    const RowVec scale = -upstream * target_g;
    for (int64_t c = 0; c < classes; ++c) {
      const RowVec other = scaled_probability(z[c], row.max_logit, row.inv_denom, scale);
      const RowVec at_target =
          upstream * softmax_logit_gradient(z[c], class_probability<VecMath>(z[c], row), target_g, stats);
      const RowVec single_grad = targets.target == static_cast<int32_t>(c) ? at_target : other;
      grad[c] = single ? single_grad : grad[c];
    }
  }
  store_columns(grad, classes, logits_grad + first_row * classes);
}

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

// One whole block of dense short rows (kRowLanes rows from z and y): one-hot rows (and rows of
// zeros) take the single-target code of the sparse labels, other blocks every class's term.
template <typename VecMath, typename T>
void dense_short_block_forward(const T* z, const T* y, int64_t classes, const SoftmaxFocalParams& params,
                               const float* alpha, T* loss, float* row_stats) {
  ShortRowTargets targets;
  if (params.label_smoothing == 0.0 && dense_short_row_targets(y, classes, 0, targets)) {
    short_rows_forward<VecMath>(z, targets, classes, 0, params, alpha, loss, row_stats);
  } else {
    dense_short_rows_forward<VecMath>(z, y, classes, 0, params, alpha, loss, row_stats);
  }
}

template <typename VecMath, typename T>
void dense_short_block_backward(const T* z, const T* y, const float* row_stats, const T* loss_grad, int64_t classes,
                                const SoftmaxFocalParams& params, const ShortRowBlockLayout& layout,
                                const float* alpha, T* grad) {
  ShortRowTargets targets;
  RowInts labelled{};
  // with smoothing every class carries weight: no single targets, labelled unused
  if (params.label_smoothing == 0.0 && dense_short_row_targets(y, classes, 0, targets, &labelled)) {
    short_rows_backward<VecMath>(z, targets, row_stats, loss_grad, classes, 0, layout, grad);
  } else {
    dense_short_rows_backward<VecMath>(z, y, row_stats, loss_grad, classes, 0, params, alpha, targets, labelled,
                                       grad);
  }
}

template <typename T>
void dense_softmax_focal_forward(const T* logits, const T* labels, int64_t classes, RowRange rows,
                                 const SoftmaxFocalParams& params, T* loss, acc_t<T>* row_stats) {
  using Acc = acc_t<T>;
  if (classes == 0) {
    for (int64_t r = rows.begin; r < rows.end; ++r) {
      fill_softmax_row_forward(RowKind::kEmpty, loss + r, row_stats + r * kSoftmaxRowStats);
    }
    return;
  }
  const std::vector<Acc> alpha = expand_alpha<Acc>(params.alpha, params.alpha_size, classes);
  with_fixed_vector_math(params.gamma, params.epsilon, [&](auto math) {
    using VecMath = decltype(math);
    if constexpr (kHasShortRows<T>) {
      if (classes <= kShortRow) {
        for (int64_t r = rows.begin; r < rows.end; r += kRowLanes) {
          const int64_t count = std::min<int64_t>(kRowLanes, rows.end - r);
          if (count == kRowLanes) {
            dense_short_block_forward<VecMath>(logits + r * classes, labels + r * classes, classes, params,
                                               alpha.data(), loss + r, row_stats + r * kSoftmaxRowStats);
            continue;
          }
          const PaddedRows<T> z(logits + r * classes, count, classes);
          const PaddedRows<T> y(labels + r * classes, count, classes);
          T block_loss[kRowLanes];
          Acc block_stats[kRowLanes * kSoftmaxRowStats];
          dense_short_block_forward<VecMath>(z.values, y.values, classes, params, alpha.data(), block_loss,
                                             block_stats);
          std::memcpy(loss + r, block_loss, static_cast<std::size_t>(count) * sizeof(T));
          std::memcpy(row_stats + r * kSoftmaxRowStats, block_stats,
                      static_cast<std::size_t>(count) * kSoftmaxRowStats * sizeof(Acc));
        }
        return;
      }
    }
    for (int64_t r = rows.begin; r < rows.end; ++r) {
      SparseLabelWeights<Acc> single;
      if (params.label_smoothing == 0.0 && dense_row_single_target(labels + r * classes, classes, single)) {
        softmax_row_forward<VecMath>(logits + r * classes, classes, single, params, alpha.data(), loss + r,
                                     row_stats + r * kSoftmaxRowStats);
        continue;
      }
      softmax_row_forward<VecMath>(logits + r * classes, classes,
                                   dense_label_weights<Acc>(labels + r * classes, classes, params.label_smoothing),
                                   params, alpha.data(), loss + r, row_stats + r * kSoftmaxRowStats);
    }
  });
}

template <typename T>
void dense_softmax_focal_backward(const T* logits, const T* labels, const acc_t<T>* row_stats, const T* loss_grad,
                                  int64_t classes, RowRange rows, const SoftmaxFocalParams& params, T* logits_grad) {
  using Acc = acc_t<T>;
  if (classes == 0) return;  // no gradient to write
  const std::vector<Acc> alpha = expand_alpha<Acc>(params.alpha, params.alpha_size, classes);
  const bool stream = stream_gradient(classes, rows.end - rows.begin, sizeof(T));
  with_fixed_vector_math(params.gamma, params.epsilon, [&](auto math) {
    using VecMath = decltype(math);
    if constexpr (kHasShortRows<T>) {
      if (classes <= kShortRow) {
        const ShortRowBlockLayout layout(classes);
        for (int64_t r = rows.begin; r < rows.end; r += kRowLanes) {
          const int64_t count = std::min<int64_t>(kRowLanes, rows.end - r);
          if (count == kRowLanes) {
            dense_short_block_backward<VecMath>(logits + r * classes, labels + r * classes,
                                                row_stats + r * kSoftmaxRowStats, loss_grad + r, classes, params,
                                                layout, alpha.data(), logits_grad + r * classes);
            continue;
          }
          const PaddedRows<T> z(logits + r * classes, count, classes);  // before grad may overwrite them
          const PaddedRows<T> y(labels + r * classes, count, classes);
          const PaddedRows<Acc> stats(row_stats + r * kSoftmaxRowStats, count, kSoftmaxRowStats);
          const PaddedRows<T> upstream(loss_grad + r, count, 1);
          T block_grad[kRowLanes * kShortRow];
          dense_short_block_backward<VecMath>(z.values, y.values, stats.values, upstream.values, classes, params,
                                              layout, alpha.data(), block_grad);
          std::memcpy(logits_grad + r * classes, block_grad, static_cast<std::size_t>(count * classes) * sizeof(T));
        }
        return;
      }
    }
    for (int64_t r = rows.begin; r < rows.end; ++r) {
      SparseLabelWeights<Acc> single;
      if (params.label_smoothing == 0.0 && dense_row_single_target(labels + r * classes, classes, single)) {
        softmax_row_backward<VecMath>(logits + r * classes, classes, single, params, alpha.data(),
                                      row_stats + r * kSoftmaxRowStats, load_acc(loss_grad[r]),
                                      logits_grad + r * classes, stream);
        continue;
      }
      softmax_row_backward<VecMath>(
          logits + r * classes, classes,
          dense_label_weights<Acc>(labels + r * classes, classes, params.label_smoothing), params, alpha.data(),
          row_stats + r * kSoftmaxRowStats, load_acc(loss_grad[r]), logits_grad + r * classes);
    }
  });
}

// The entry points of this instruction set's kernel table (cpu/kernel_table.h).
template <typename T>
Status softmax_forward(const SoftmaxArgs<T>& a, RowRange rows) {
  switch (a.label_kind) {
    case LabelKind::kSparseInt32:
      return label_out_of_range_at(sparse_softmax_focal_forward(a.logits, static_cast<const int32_t*>(a.labels),
                                                                a.classes, rows, a.params, a.loss, a.row_stats));
    case LabelKind::kSparseInt64:
      return label_out_of_range_at(sparse_softmax_focal_forward(a.logits, static_cast<const int64_t*>(a.labels),
                                                                a.classes, rows, a.params, a.loss, a.row_stats));
    case LabelKind::kDense:
      dense_softmax_focal_forward(a.logits, static_cast<const T*>(a.labels), a.classes, rows, a.params, a.loss,
                                  a.row_stats);
      break;
  }
  return {};
}

template <typename T>
Status softmax_backward(const SoftmaxArgs<T>& a, RowRange rows) {
  switch (a.label_kind) {
    case LabelKind::kSparseInt32:
      return label_out_of_range_at(sparse_softmax_focal_backward(a.logits, static_cast<const int32_t*>(a.labels),
                                                                 a.row_stats, a.loss_grad, a.classes, rows, a.params,
                                                                 a.logits_grad));
    case LabelKind::kSparseInt64:
      return label_out_of_range_at(sparse_softmax_focal_backward(a.logits, static_cast<const int64_t*>(a.labels),
                                                                 a.row_stats, a.loss_grad, a.classes, rows, a.params,
                                                                 a.logits_grad));
    case LabelKind::kDense:
      dense_softmax_focal_backward(a.logits, static_cast<const T*>(a.labels), a.row_stats, a.loss_grad, a.classes,
                                   rows, a.params, a.logits_grad);
      break;
  }
  return {};
}

}  // namespace FOCAL_CPU_ISA
}  // namespace focal
