// cpu/softmax_short_rows.h — short softmax rows (C <= kShortRow, float accumulation), kRowLanes
// rows at a time, one row per lane of a vector: the block's column loads, row stats and targets,
// and the forward and backward of sparse, one-hot and dense blocks.
#pragma once

#include "cpu/softmax_rows.h"

namespace focal {
namespace FOCAL_CPU_ISA {

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
  // one alpha for every class (the common case): a broadcast, no gather
  const RowVec target_alpha = params.alpha_size <= 1 ? splat<RowVec>(alpha[0]) : gather_lanes(alpha, targets.target);
  accumulate_class<VecMath>(target_logit, row, targets.weight, target_alpha, constants.gamma,
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

// A whole block whose labels are all in [0, C) and none ignored (the common case), checked without
// a branch per row: true and the targets set, else false (sparse_short_block's per-row kinds decide).
template <typename Label>
bool all_targets_valid(const Label* labels, int64_t classes, const SoftmaxFocalParams& params, RowInts& target) {
  const int64_t ignored = ignored_label(params);
  bool valid = true;
  for (int l = 0; l < kRowLanes; ++l) {
    const int64_t t = static_cast<int64_t>(labels[l]);
    valid &= sparse_label_valid(t, classes, ignored);
    target[l] = static_cast<int32_t>(t);
  }
  return valid;
}

inline SparseShortBlock sparse_short_block(SparseLabels labels, int64_t first, int64_t count, int64_t classes,
                                    const SoftmaxFocalParams& params) {
  SparseShortBlock block;
  block.targets.weight = splat<RowVec>(1);
  if (count == kRowLanes &&
      (labels.wide ? all_targets_valid(static_cast<const int64_t*>(labels.data) + first, classes, params,
                                       block.targets.target)
                   : all_targets_valid(static_cast<const int32_t*>(labels.data) + first, classes, params,
                                       block.targets.target))) {
    for (int l = 0; l < kRowLanes; ++l) block.kind[l] = RowKind::kValid;
    block.all_valid = block.any_valid = true;
    return block;
  }
  block.all_valid = count == kRowLanes;
  block.any_valid = false;
  for (int l = 0; l < kRowLanes; ++l) {
    block.kind[l] = l < count ? sparse_row_kind(labels[first + l], classes, params) : RowKind::kEmpty;
    const bool valid = block.kind[l] == RowKind::kValid;
    block.all_valid &= valid;
    block.any_valid |= valid;
    block.targets.target[l] = valid ? static_cast<int32_t>(labels[first + l]) : 0;
  }
  return block;
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

}  // namespace FOCAL_CPU_ISA
}  // namespace focal
