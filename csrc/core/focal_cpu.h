// focal_cpu.h — the CPU launchers of the focal losses, framework-free.
//
// Each processes a contiguous RowRange of its arguments' rows (or sigmoid elements), so a
// caller can split the work over its own thread pool (TensorFlow's CPU workers, XLA's, or one
// thread from pybind11). Every row gives the same bits however the range is split. The kernels
// are compiled for several x86 instruction sets and picked once, at first use (cpu/dispatch.cc).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>

#include "focal_args.h"

namespace focal {

// Softmax rows of at most this many classes are computed one row per vector lane.
constexpr int64_t kShortRowMaxClasses = 32;

// Forward: loss and row_stats of rows [rows.begin, rows.end). Ignored rows and rows of no
// classes get loss 0; a row whose sparse label is outside [0, classes) gets NaN and is reported.
template <typename T>
Status softmax_forward_cpu(const SoftmaxArgs<T>& args, RowRange rows);

// Backward: logits_grad of those rows from the forward's row_stats (same label handling).
template <typename T>
Status softmax_backward_cpu(const SoftmaxArgs<T>& args, RowRange rows);

// Sigmoid: elements [range.begin, range.end), or rows with sum_over_classes.
template <typename T>
Status sigmoid_cpu(const SigmoidArgs<T>& args, RowRange range);

// The instruction set the CPU kernels run with: "avx512" (x86-64-v4), "avx2" (x86-64-v3) or
// "generic". The best the CPU supports, unless FOCAL_OP_CPU_ISA names a lower one.
const char* cpu_isa();

// ---- for adapters that split a launch over their threads ----------------------------------------

// Rough cost of one work item in cycles (a softmax row, a sigmoid row sum or element), to size
// the pieces a launch is split into: an exp per class, more where every class carries label weight.
template <typename T>
int64_t work_item_cost(const SoftmaxArgs<T>& args) {
  const bool every_class = args.label_kind == LabelKind::kDense || args.params.label_smoothing > 0;
  return std::max<int64_t>(1, args.classes) * (every_class ? 60 : 20) + 100;
}
template <typename T>
int64_t work_item_cost(const SigmoidArgs<T>& args) {
  return args.sum_over_classes ? 60 * args.columns + 100 : 60;
}

// The status of a launch split into pieces that run on several threads: the smallest
// out-of-range row any piece reported, else OK (the same error however the rows were split).
class FirstBadRow {
 public:
  void add(const Status& status) {
    if (status.ok()) return;
    int64_t seen = first_.load();
    while (status.bad_row < seen && !first_.compare_exchange_weak(seen, status.bad_row)) {
    }
  }
  Status status() const {
    const int64_t bad = first_.load();
    return label_out_of_range_at(bad == kNone ? -1 : bad);
  }

 private:
  static constexpr int64_t kNone = std::numeric_limits<int64_t>::max();
  std::atomic<int64_t> first_{kNone};
};

}  // namespace focal
