// cpu/softmax.h — the softmax focal losses on the CPU (sparse and dense labels, forward and
// backward) over a range of rows: short rows block by block (cpu/softmax_short_rows.h), the others
// row by row (cpu/softmax_rows.h); and the entry points softmax_forward / softmax_backward over a
// SoftmaxArgs.
#pragma once

#include "cpu/softmax_rows.h"
#include "cpu/softmax_short_rows.h"

namespace focal {
namespace FOCAL_CPU_ISA {

template <typename T>
int64_t sparse_softmax_focal_forward(const T* logits, SparseLabels labels, int64_t classes, RowRange rows,
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

template <typename T>
int64_t sparse_softmax_focal_backward(const T* logits, SparseLabels labels, const acc_t<T>* row_stats,
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
  if (a.label_kind == LabelKind::kDense) {
    dense_softmax_focal_forward(a.logits, static_cast<const T*>(a.labels), a.classes, rows, a.params, a.loss,
                                a.row_stats);
    return {};
  }
  return label_out_of_range_at(
      sparse_softmax_focal_forward(a.logits, sparse_labels(a), a.classes, rows, a.params, a.loss, a.row_stats));
}

template <typename T>
Status softmax_backward(const SoftmaxArgs<T>& a, RowRange rows) {
  if (a.label_kind == LabelKind::kDense) {
    dense_softmax_focal_backward(a.logits, static_cast<const T*>(a.labels), a.row_stats, a.loss_grad, a.classes,
                                 rows, a.params, a.logits_grad);
    return {};
  }
  return label_out_of_range_at(sparse_softmax_focal_backward(a.logits, sparse_labels(a), a.row_stats, a.loss_grad,
                                                             a.classes, rows, a.params, a.logits_grad));
}

}  // namespace FOCAL_CPU_ISA
}  // namespace focal
