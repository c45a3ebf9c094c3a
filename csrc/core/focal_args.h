// focal_args.h — what every adapter hands the kernel core: one argument struct per loss
// (pointers, sizes, hyper-parameters, label kind) and the plain status each launcher returns.
// Declared once here for the CPU launchers (focal_cpu.h) and the CUDA ones (focal_cuda.h). No
// std::string or other library type crosses this boundary, so the core builds without any
// framework's C++ ABI flag.
#pragma once

#include <cstdint>

#include "focal_math.h"

namespace focal {

enum class StatusCode { kOk = 0, kInvalidArgument = 1, kInternal = 2 };

// kOk; kInvalidArgument: a sparse label outside [0, C), bad_row the first such row the launch saw
// (the adapter formats the label into its error text, label_out_of_range_error); kInternal: a
// failed CUDA launch, message static text from the CUDA runtime.
struct Status {
  StatusCode code = StatusCode::kOk;
  const char* message = "";
  int64_t bad_row = -1;
  bool ok() const { return code == StatusCode::kOk; }
};

inline Status label_out_of_range_at(int64_t row) {
  return row < 0 ? Status{} : Status{StatusCode::kInvalidArgument, "label out of range", row};
}

// A contiguous range [begin, end) of rows (softmax, sigmoid row sums) or elements (elementwise
// sigmoid): callers split the work over their own threads.
struct RowRange {
  int64_t begin;
  int64_t end;
};

enum class LabelKind { kSparseInt32, kSparseInt64, kDense };

// Sparse labels of either width, read as int64: the width is a run-time choice, so the kernels
// are compiled once for both (a predictable branch per label read).
struct SparseLabels {
  const void* data;
  bool wide;  // int64, else int32
  FOCAL_HD int64_t operator[](int64_t row) const {
    return wide ? static_cast<const int64_t*>(data)[row] : static_cast<const int32_t*>(data)[row];
  }
};

template <typename Args>
SparseLabels sparse_labels(const Args& args) {
  return {args.labels, args.label_kind == LabelKind::kSparseInt64};
}

// A softmax focal loss over [rows, classes] logits. Forward: writes loss and row_stats. Backward:
// reads row_stats and loss_grad, writes logits_grad, which may be logits itself (each logit is
// read before its gradient is written).
template <typename T>
struct SoftmaxArgs {
  const T* logits = nullptr;     // [rows, classes]
  const void* labels = nullptr;  // int32 or int64 [rows] (sparse), T [rows, classes] (dense)
  LabelKind label_kind = LabelKind::kSparseInt64;
  int64_t rows = 0;
  int64_t classes = 0;
  SoftmaxFocalParams params;
  acc_t<T>* row_stats = nullptr;  // [rows, kSoftmaxRowStats]
  T* loss = nullptr;              // [rows]
  const T* loss_grad = nullptr;   // [rows]
  T* logits_grad = nullptr;       // [rows, classes]
};

// The sigmoid focal loss over [rows, columns] logits and labels (alpha per column). loss_grad
// nullptr: forward, out = the loss ([rows, columns], or [rows] with sum_over_classes); else the
// backward, out = loss_grad · d loss / d logits, loss_grad laid out as `upstream` says.
template <typename T>
struct SigmoidArgs {
  const T* logits = nullptr;
  const T* labels = nullptr;
  int64_t rows = 0;
  int64_t columns = 0;
  SigmoidFocalParams params;
  bool sum_over_classes = false;
  const T* loss_grad = nullptr;
  SigmoidUpstream upstream = SigmoidUpstream::kPerElement;
  T* out = nullptr;
};

// The units a sigmoid launch's RowRange counts: rows with sum_over_classes, else elements.
template <typename T>
int64_t sigmoid_work_items(const SigmoidArgs<T>& args) {
  return args.sum_over_classes ? args.rows : args.rows * args.columns;
}

}  // namespace focal
