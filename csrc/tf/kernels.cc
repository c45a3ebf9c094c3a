// kernels.cc — focal_op's OpKernels: validate inputs, allocate outputs and call the
// framework-free core — on the CPU with rows split over TensorFlow's worker threads, on the GPU
// (builds with CUDA) on the stream TensorFlow gives the op. One kernel class per op serves both
// devices through a small launch policy (CpuLaunch, GpuLaunch).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>

#include "focal_cpu.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/register_types.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/framework/tensor_shape.h"
#include "tensorflow/core/util/work_sharder.h"
#include "validate.h"

#if defined(FOCAL_OP_WITH_CUDA)
#include "focal_cuda.h"
#include "tensorflow/core/framework/device_base.h"
#include "xla/stream_executor/stream.h"
#endif

namespace focal_tf {
namespace {

using ::tensorflow::DataTypeString;
using ::tensorflow::DataTypeToEnum;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;

// TensorFlow element type -> the core's storage type (same bits).
template <typename T>
struct CoreType {
  using type = T;
};
template <>
struct CoreType<Eigen::half> {
  using type = focal::float16_bits;
};
template <>
struct CoreType<Eigen::bfloat16> {
  using type = focal::bfloat16_bits;
};

template <typename T>
const typename CoreType<T>::type* CorePtr(const Tensor& t) {
  return reinterpret_cast<const typename CoreType<T>::type*>(t.flat<T>().data());
}
template <typename T>
typename CoreType<T>::type* CorePtr(Tensor* t) {
  return reinterpret_cast<typename CoreType<T>::type*>(t->flat<T>().data());
}

absl::Status ReadScalar(const Tensor& t, const char* name, double* value) {
  if (!::tensorflow::TensorShapeUtils::IsScalar(t.shape())) {
    return absl::InvalidArgumentError(absl::StrCat(name, " must be a scalar; got shape ", t.shape().DebugString()));
  }
  *value = t.scalar<double>()();
  return absl::OkStatus();
}

// Checks shapes and hyper-parameters shared by the softmax forward and gradient ops. Sparse
// labels have the logits' shape without the class axis; dense labels the logits' shape. batch:
// the logits' shape without the class axis (the loss's shape).
// alpha_on_host: false for GPU kernels (alpha in device memory: its values are not read here).
// compute_max: the largest finite value of the type the kernels compute in.
absl::Status ReadSoftmaxInputs(OpKernelContext* ctx, bool dense_labels, int64_t ignore_class, bool has_ignore_class,
                               bool alpha_on_host, double compute_max, TensorShape* batch, int64_t* classes,
                               focal::SoftmaxFocalParams* params) {
  const Tensor& labels = ctx->input(0);
  const Tensor& logits = ctx->input(1);
  const Tensor& alpha = ctx->input(2);
  if (logits.dims() < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("logits must have rank >= 1 ([..., C]); got shape ", logits.shape().DebugString()));
  }
  *batch = logits.shape();
  batch->RemoveLastDims(1);
  if (labels.shape() != (dense_labels ? logits.shape() : *batch)) {
    return absl::InvalidArgumentError(
        absl::StrCat(dense_labels ? "labels must have the shape of logits"
                                  : "labels must have the shape of logits without its last axis",
                     "; got labels ", labels.shape().DebugString(), " and logits ", logits.shape().DebugString()));
  }
  *classes = logits.dim_size(logits.dims() - 1);
  if (alpha.dims() > 1 || (alpha.dims() == 1 && alpha.dim_size(0) != *classes)) {
    return absl::InvalidArgumentError(absl::StrCat("alpha must be a scalar or a vector of length C = ", *classes,
                                                   "; got shape ", alpha.shape().DebugString()));
  }
  TF_RETURN_IF_ERROR(ReadScalar(ctx->input(3), "gamma", &params->gamma));
  TF_RETURN_IF_ERROR(ReadScalar(ctx->input(4), "epsilon", &params->epsilon));
  TF_RETURN_IF_ERROR(ReadScalar(ctx->input(5), "label_smoothing", &params->label_smoothing));
  params->alpha = alpha.flat<double>().data();
  params->alpha_size = alpha.NumElements();
  const std::string error = focal::softmax_params_error(*params, *classes, alpha_on_host, compute_max);
  if (!error.empty()) return absl::InvalidArgumentError(error);
  params->ignore_class = ignore_class;
  params->has_ignore_class = has_ignore_class;
  return absl::OkStatus();
}

// The sigmoid ops' inputs: labels like logits; alpha empty (none), a scalar or one per column.
absl::Status ReadSigmoidInputs(OpKernelContext* ctx, bool alpha_on_host, double compute_max, int64_t* columns,
                               focal::SigmoidFocalParams* params) {
  const Tensor& labels = ctx->input(0);
  const Tensor& logits = ctx->input(1);
  const Tensor& alpha = ctx->input(2);
  if (labels.shape() != logits.shape()) {
    return absl::InvalidArgumentError(absl::StrCat("labels must have the shape of logits; got labels ",
                                                   labels.shape().DebugString(), " and logits ",
                                                   logits.shape().DebugString()));
  }
  *columns = logits.dims() > 0 ? logits.dim_size(logits.dims() - 1) : 1;
  const bool no_alpha = alpha.dims() == 1 && alpha.dim_size(0) == 0;
  if (alpha.dims() > 1 || (alpha.dims() == 1 && !no_alpha && (logits.dims() == 0 || alpha.dim_size(0) != *columns))) {
    return absl::InvalidArgumentError(absl::StrCat("alpha must be a scalar or a vector over the last axis (length ",
                                                   *columns, "); got shape ", alpha.shape().DebugString()));
  }
  TF_RETURN_IF_ERROR(ReadScalar(ctx->input(3), "gamma", &params->gamma));
  TF_RETURN_IF_ERROR(ReadScalar(ctx->input(4), "label_smoothing", &params->label_smoothing));
  params->alpha = no_alpha ? nullptr : alpha.flat<double>().data();
  params->alpha_size = no_alpha ? 0 : alpha.NumElements();
  const std::string error = focal::sigmoid_params_error(*params, *columns, alpha_on_host, compute_max);
  if (!error.empty()) return absl::InvalidArgumentError(error);
  return absl::OkStatus();
}

template <typename Acc>
absl::Status CheckStatsDtype(OpKernelContext* ctx, tensorflow::DataType stats_dtype) {
  if (stats_dtype != DataTypeToEnum<Acc>::value) {
    return absl::InvalidArgumentError(absl::StrCat("Tstats must be ", DataTypeString(DataTypeToEnum<Acc>::value),
                                                   " for these logits; got ", DataTypeString(stats_dtype)));
  }
  return absl::OkStatus();
}

// row_stats and loss_grad of a softmax gradient op: [batch..., 4] and [batch...].
template <typename Acc>
absl::Status CheckSoftmaxGradInputs(OpKernelContext* ctx, const TensorShape& batch) {
  const Tensor& stats = ctx->input(6);
  const Tensor& loss_grad = ctx->input(7);
  TF_RETURN_IF_ERROR(CheckStatsDtype<Acc>(ctx, stats.dtype()));
  TensorShape stats_shape = batch;
  stats_shape.AddDim(focal::kSoftmaxRowStats);
  if (stats.shape() != stats_shape) {
    return absl::InvalidArgumentError(
        absl::StrCat("row_stats must have shape ", stats_shape.DebugString(), "; got ", stats.shape().DebugString()));
  }
  if (loss_grad.shape() != batch) {
    return absl::InvalidArgumentError(absl::StrCat("loss_grad must have the shape of the loss ", batch.DebugString(),
                                                   "; got ", loss_grad.shape().DebugString()));
  }
  return absl::OkStatus();
}

template <typename Label>
absl::Status LabelOutOfRange(const Tensor& labels, int64_t row, int64_t classes) {
  return absl::InvalidArgumentError(
      focal::label_out_of_range_error(static_cast<int64_t>(labels.flat<Label>()(row)), row, classes));
}

// Runs body(begin, end) over [0, rows) on TensorFlow's CPU workers; returns the smallest
// row index any shard reported (body's return value), or -1.
template <typename Body>
int64_t ShardRows(OpKernelContext* ctx, int64_t rows, int64_t cost_per_row, Body body) {
  std::atomic<int64_t> first_bad{std::numeric_limits<int64_t>::max()};
  const auto& workers = *ctx->device()->tensorflow_cpu_worker_threads();
  ::tensorflow::Shard(workers.num_threads, workers.workers, rows, cost_per_row, [&](int64_t begin, int64_t end) {
    const int64_t bad = body(focal::RowRange{begin, end});
    if (bad < 0) return;
    int64_t seen = first_bad.load();
    while (bad < seen && !first_bad.compare_exchange_weak(seen, bad)) {
    }
  });
  const int64_t bad = first_bad.load();
  return bad == std::numeric_limits<int64_t>::max() ? -1 : bad;
}

// Rough cost of one row in cycles, for the shard size: an exp per class, more with smoothing.
int64_t RowCost(int64_t classes, bool every_class) {
  return std::max<int64_t>(1, classes) * (every_class ? 60 : 20) + 100;
}

// ---- launch policies: where and how the core runs ----------------------------------------------
// Each returns the op's status: an out-of-range label (CPU), a failed launch (GPU).

struct CpuLaunch {
  static constexpr bool kAlphaOnHost = true;

  template <typename T, typename Label>
  static absl::Status SparseForward(OpKernelContext* ctx, const Tensor& labels_tensor, const T* logits,
                                    const Label* labels, int64_t rows, int64_t classes,
                                    const focal::SoftmaxFocalParams& params, T* loss, focal::acc_t<T>* stats) {
    const int64_t bad_row =
        ShardRows(ctx, rows, RowCost(classes, params.label_smoothing > 0), [&](focal::RowRange range) {
          return focal::sparse_softmax_focal_forward_cpu(logits, labels, classes, range, params, loss, stats);
        });
    return bad_row < 0 ? absl::OkStatus() : LabelOutOfRange<Label>(labels_tensor, bad_row, classes);
  }

  template <typename T, typename Label>
  static absl::Status SparseBackward(OpKernelContext* ctx, const Tensor& labels_tensor, const T* logits,
                                     const Label* labels, const focal::acc_t<T>* stats, const T* loss_grad,
                                     int64_t rows, int64_t classes, const focal::SoftmaxFocalParams& params, T* grad) {
    const int64_t bad_row =
        ShardRows(ctx, rows, RowCost(classes, params.label_smoothing > 0), [&](focal::RowRange range) {
          return focal::sparse_softmax_focal_backward_cpu(logits, labels, stats, loss_grad, classes, range, params,
                                                          grad);
        });
    return bad_row < 0 ? absl::OkStatus() : LabelOutOfRange<Label>(labels_tensor, bad_row, classes);
  }

  template <typename T>
  static absl::Status DenseForward(OpKernelContext* ctx, const T* logits, const T* labels, int64_t rows,
                                   int64_t classes, const focal::SoftmaxFocalParams& params, T* loss,
                                   focal::acc_t<T>* stats) {
    ShardRows(ctx, rows, RowCost(classes, /*every_class=*/true), [&](focal::RowRange range) {
      focal::dense_softmax_focal_forward_cpu(logits, labels, classes, range, params, loss, stats);
      return int64_t{-1};
    });
    return absl::OkStatus();
  }

  template <typename T>
  static absl::Status DenseBackward(OpKernelContext* ctx, const T* logits, const T* labels,
                                    const focal::acc_t<T>* stats, const T* loss_grad, int64_t rows, int64_t classes,
                                    const focal::SoftmaxFocalParams& params, T* grad) {
    ShardRows(ctx, rows, RowCost(classes, /*every_class=*/true), [&](focal::RowRange range) {
      focal::dense_softmax_focal_backward_cpu(logits, labels, stats, loss_grad, classes, range, params, grad);
      return int64_t{-1};
    });
    return absl::OkStatus();
  }

  template <typename T>
  static absl::Status Sigmoid(OpKernelContext* ctx, const T* logits, const T* labels, const T* loss_grad,
                              focal::SigmoidUpstream upstream, int64_t elements, int64_t columns,
                              const focal::SigmoidFocalParams& params, T* out) {
    ShardRows(ctx, elements, /*cost_per_row=*/60, [&](focal::RowRange range) {
      focal::sigmoid_focal_cpu(logits, labels, loss_grad, columns, range, params, out, upstream);
      return int64_t{-1};
    });
    return absl::OkStatus();
  }

  template <typename T>
  static absl::Status SigmoidRowSums(OpKernelContext* ctx, const T* logits, const T* labels, int64_t rows,
                                     int64_t columns, const focal::SigmoidFocalParams& params, T* out) {
    ShardRows(ctx, rows, /*cost_per_row=*/60 * columns + 100, [&](focal::RowRange range) {
      focal::sigmoid_focal_row_sums_cpu(logits, labels, columns, range, params, out);
      return int64_t{-1};
    });
    return absl::OkStatus();
  }
};

#if defined(FOCAL_OP_WITH_CUDA)
// The raw cudaStream_t of the op's GPU stream.
void* GpuStream(OpKernelContext* ctx) { return ctx->op_device_context()->stream()->platform_specific_handle().stream; }

absl::Status FromLaunch(const std::string& error) {
  return error.empty() ? absl::OkStatus() : absl::InternalError(error);
}

// GPU kernels: labels outside [0, C) give NaN rows (no device-to-host copy to find them).
struct GpuLaunch {
  static constexpr bool kAlphaOnHost = false;

  template <typename T, typename Label>
  static absl::Status SparseForward(OpKernelContext* ctx, const Tensor&, const T* logits, const Label* labels,
                                    int64_t rows, int64_t classes, const focal::SoftmaxFocalParams& params, T* loss,
                                    focal::acc_t<T>* stats) {
    return FromLaunch(
        focal::sparse_softmax_focal_forward_cuda(logits, labels, rows, classes, params, loss, stats, GpuStream(ctx)));
  }

  template <typename T, typename Label>
  static absl::Status SparseBackward(OpKernelContext* ctx, const Tensor&, const T* logits, const Label* labels,
                                     const focal::acc_t<T>* stats, const T* loss_grad, int64_t rows, int64_t classes,
                                     const focal::SoftmaxFocalParams& params, T* grad) {
    return FromLaunch(focal::sparse_softmax_focal_backward_cuda(logits, labels, stats, loss_grad, rows, classes, params,
                                                                grad, GpuStream(ctx)));
  }

  template <typename T>
  static absl::Status DenseForward(OpKernelContext* ctx, const T* logits, const T* labels, int64_t rows,
                                   int64_t classes, const focal::SoftmaxFocalParams& params, T* loss,
                                   focal::acc_t<T>* stats) {
    return FromLaunch(
        focal::dense_softmax_focal_forward_cuda(logits, labels, rows, classes, params, loss, stats, GpuStream(ctx)));
  }

  template <typename T>
  static absl::Status DenseBackward(OpKernelContext* ctx, const T* logits, const T* labels,
                                    const focal::acc_t<T>* stats, const T* loss_grad, int64_t rows, int64_t classes,
                                    const focal::SoftmaxFocalParams& params, T* grad) {
    return FromLaunch(focal::dense_softmax_focal_backward_cuda(logits, labels, stats, loss_grad, rows, classes, params,
                                                               grad, GpuStream(ctx)));
  }

  template <typename T>
  static absl::Status Sigmoid(OpKernelContext* ctx, const T* logits, const T* labels, const T* loss_grad,
                              focal::SigmoidUpstream upstream, int64_t elements, int64_t columns,
                              const focal::SigmoidFocalParams& params, T* out) {
    return FromLaunch(focal::sigmoid_focal_cuda(logits, labels, loss_grad, elements, columns, params, out,
                                                GpuStream(ctx), upstream));
  }

  template <typename T>
  static absl::Status SigmoidRowSums(OpKernelContext* ctx, const T* logits, const T* labels, int64_t rows,
                                     int64_t columns, const focal::SigmoidFocalParams& params, T* out) {
    return FromLaunch(
        focal::sigmoid_focal_row_sums_cuda(logits, labels, rows, columns, params, out, GpuStream(ctx)));
  }
};
#endif

// ---- the op kernels ---------------------------------------------------------------------------

// The sparse ops' ignore_class attributes.
class SparseSoftmaxKernel : public OpKernel {
 public:
  explicit SparseSoftmaxKernel(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("ignore_class", &ignore_class_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("has_ignore_class", &has_ignore_class_));
  }

 protected:
  int64_t ignore_class_ = 0;
  bool has_ignore_class_ = false;
};

// A gradient op's output: the logits' buffer itself when no other op needs the logits any more
// (TensorFlow decides; the kernels read each logit before writing its gradient), else new.
absl::Status AllocateLogitsGrad(OpKernelContext* ctx, Tensor** logits_grad) {
  return ctx->forward_input_or_allocate_output({1}, 0, ctx->input(1).shape(), logits_grad);
}

// The softmax forward ops' outputs: loss [batch] and row stats [batch, 4].
absl::Status AllocateSoftmaxOutputs(OpKernelContext* ctx, const TensorShape& batch, Tensor** loss, Tensor** stats) {
  TF_RETURN_IF_ERROR(ctx->allocate_output(0, batch, loss));
  TensorShape stats_shape = batch;
  stats_shape.AddDim(focal::kSoftmaxRowStats);
  return ctx->allocate_output(1, stats_shape, stats);
}

template <typename Launch, typename T, typename Label>
class SparseSoftmaxFocalLossOp : public SparseSoftmaxKernel {
 public:
  using SparseSoftmaxKernel::SparseSoftmaxKernel;

  void Compute(OpKernelContext* ctx) override {
    using Core = typename CoreType<T>::type;
    using Acc = focal::acc_t<Core>;
    TensorShape batch;
    int64_t classes = 0;
    focal::SoftmaxFocalParams params;
    OP_REQUIRES_OK(ctx, ReadSoftmaxInputs(ctx, /*dense_labels=*/false, ignore_class_, has_ignore_class_,
                                          Launch::kAlphaOnHost, std::numeric_limits<Acc>::max(), &batch, &classes, &params));
    OP_REQUIRES_OK(ctx, CheckStatsDtype<Acc>(ctx, ctx->expected_output_dtype(1)));
    const Tensor& labels = ctx->input(0);
    Tensor* loss = nullptr;
    Tensor* stats = nullptr;
    OP_REQUIRES_OK(ctx, AllocateSoftmaxOutputs(ctx, batch, &loss, &stats));
    const int64_t rows = batch.num_elements();
    if (rows == 0) return;
    OP_REQUIRES_OK(ctx, Launch::SparseForward(ctx, labels, CorePtr<T>(ctx->input(1)), labels.flat<Label>().data(), rows,
                                              classes, params, CorePtr<T>(loss), stats->flat<Acc>().data()));
  }
};

template <typename Launch, typename T, typename Label>
class SparseSoftmaxFocalLossGradOp : public SparseSoftmaxKernel {
 public:
  using SparseSoftmaxKernel::SparseSoftmaxKernel;

  void Compute(OpKernelContext* ctx) override {
    using Core = typename CoreType<T>::type;
    using Acc = focal::acc_t<Core>;
    TensorShape batch;
    int64_t classes = 0;
    focal::SoftmaxFocalParams params;
    OP_REQUIRES_OK(ctx, ReadSoftmaxInputs(ctx, /*dense_labels=*/false, ignore_class_, has_ignore_class_,
                                          Launch::kAlphaOnHost, std::numeric_limits<Acc>::max(), &batch, &classes, &params));
    const Tensor& labels = ctx->input(0);
    OP_REQUIRES_OK(ctx, CheckSoftmaxGradInputs<Acc>(ctx, batch));
    Tensor* logits_grad = nullptr;
    OP_REQUIRES_OK(ctx, AllocateLogitsGrad(ctx, &logits_grad));
    const int64_t rows = batch.num_elements();
    if (rows == 0 || classes == 0) return;
    OP_REQUIRES_OK(ctx, Launch::SparseBackward(ctx, labels, CorePtr<T>(ctx->input(1)), labels.flat<Label>().data(),
                                               ctx->input(6).flat<Acc>().data(), CorePtr<T>(ctx->input(7)), rows,
                                               classes, params, CorePtr<T>(logits_grad)));
  }
};

template <typename Launch, typename T>
class SoftmaxFocalLossOp : public OpKernel {
 public:
  explicit SoftmaxFocalLossOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    using Core = typename CoreType<T>::type;
    using Acc = focal::acc_t<Core>;
    TensorShape batch;
    int64_t classes = 0;
    focal::SoftmaxFocalParams params;
    OP_REQUIRES_OK(
        ctx, ReadSoftmaxInputs(ctx, /*dense_labels=*/true, 0, false, Launch::kAlphaOnHost, std::numeric_limits<Acc>::max(), &batch, &classes, &params));
    OP_REQUIRES_OK(ctx, CheckStatsDtype<Acc>(ctx, ctx->expected_output_dtype(1)));
    Tensor* loss = nullptr;
    Tensor* stats = nullptr;
    OP_REQUIRES_OK(ctx, AllocateSoftmaxOutputs(ctx, batch, &loss, &stats));
    const int64_t rows = batch.num_elements();
    if (rows == 0) return;
    OP_REQUIRES_OK(ctx, Launch::DenseForward(ctx, CorePtr<T>(ctx->input(1)), CorePtr<T>(ctx->input(0)), rows, classes,
                                             params, CorePtr<T>(loss), stats->flat<Acc>().data()));
  }
};

template <typename Launch, typename T>
class SoftmaxFocalLossGradOp : public OpKernel {
 public:
  explicit SoftmaxFocalLossGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    using Core = typename CoreType<T>::type;
    using Acc = focal::acc_t<Core>;
    TensorShape batch;
    int64_t classes = 0;
    focal::SoftmaxFocalParams params;
    OP_REQUIRES_OK(
        ctx, ReadSoftmaxInputs(ctx, /*dense_labels=*/true, 0, false, Launch::kAlphaOnHost, std::numeric_limits<Acc>::max(), &batch, &classes, &params));
    OP_REQUIRES_OK(ctx, CheckSoftmaxGradInputs<Acc>(ctx, batch));
    Tensor* logits_grad = nullptr;
    OP_REQUIRES_OK(ctx, AllocateLogitsGrad(ctx, &logits_grad));
    const int64_t rows = batch.num_elements();
    if (rows == 0 || classes == 0) return;
    OP_REQUIRES_OK(ctx, Launch::DenseBackward(ctx, CorePtr<T>(ctx->input(1)), CorePtr<T>(ctx->input(0)),
                                              ctx->input(6).flat<Acc>().data(), CorePtr<T>(ctx->input(7)), rows,
                                              classes, params, CorePtr<T>(logits_grad)));
  }
};

std::vector<int64_t> Dims(const TensorShape& shape) {
  std::vector<int64_t> dims;
  for (int i = 0; i < shape.dims(); ++i) dims.push_back(shape.dim_size(i));
  return dims;
}

// Sigmoid forward (kBackward = false) and gradient (true): elementwise over the logits, or the
// forward summed over the last axis (sum_over_classes).
template <typename Launch, typename T, bool kBackward>
class SigmoidFocalLossOp : public OpKernel {
 public:
  explicit SigmoidFocalLossOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    if (!kBackward) OP_REQUIRES_OK(ctx, ctx->GetAttr("sum_over_classes", &sum_over_classes_));
  }

  void Compute(OpKernelContext* ctx) override {
    using Core = typename CoreType<T>::type;
    int64_t columns = 1;
    focal::SigmoidFocalParams params;
    OP_REQUIRES_OK(ctx, ReadSigmoidInputs(ctx, Launch::kAlphaOnHost, std::numeric_limits<focal::acc_t<Core>>::max(),
                                          &columns, &params));
    const Tensor& logits = ctx->input(1);
    const Core* loss_grad_ptr = nullptr;
    focal::SigmoidUpstream upstream = focal::SigmoidUpstream::kPerElement;
    if (kBackward) {
      const Tensor& loss_grad = ctx->input(5);
      const std::string error = focal::sigmoid_upstream_layout(Dims(loss_grad.shape()), Dims(logits.shape()), &upstream);
      OP_REQUIRES(ctx, error.empty(), absl::InvalidArgumentError(error));
      loss_grad_ptr = CorePtr<T>(loss_grad);
    }
    Tensor* out = nullptr;
    if (sum_over_classes_) {
      OP_REQUIRES(ctx, logits.dims() > 0,
                  absl::InvalidArgumentError(focal::kSumOverClassesOfScalarError));
      TensorShape rows_shape = logits.shape();
      rows_shape.RemoveLastDims(1);
      OP_REQUIRES_OK(ctx, ctx->allocate_output(0, rows_shape, &out));
      if (rows_shape.num_elements() == 0) return;
      OP_REQUIRES_OK(ctx, Launch::SigmoidRowSums(ctx, CorePtr<T>(logits), CorePtr<T>(ctx->input(0)),
                                                 rows_shape.num_elements(), columns, params, CorePtr<T>(out)));
      return;
    }
    OP_REQUIRES_OK(ctx, kBackward ? AllocateLogitsGrad(ctx, &out) : ctx->allocate_output(0, logits.shape(), &out));
    const int64_t elements = logits.NumElements();
    if (elements == 0) return;
    OP_REQUIRES_OK(ctx, Launch::Sigmoid(ctx, CorePtr<T>(logits), CorePtr<T>(ctx->input(0)), loss_grad_ptr, upstream,
                                        elements, columns, params, CorePtr<T>(out)));
  }

 private:
  bool sum_over_classes_ = false;
};

// ---- registration -----------------------------------------------------------------------------
// On the GPU the float64 hyper-parameter scalars stay in host memory (read by the kernel
// class); labels, logits, alpha and the outputs live on the device.
#define FOCAL_REGISTER_SPARSE_SOFTMAX(DEVICE, Launch, T, Label, HOST_SCALARS) \
  REGISTER_KERNEL_BUILDER(Name("FocalOp>SparseSoftmaxFocalLoss")              \
                              .Device(DEVICE)                                 \
                              .TypeConstraint<T>("T")                         \
                              .TypeConstraint<Label>("Tlabels") HOST_SCALARS, \
                          SparseSoftmaxFocalLossOp<Launch, T, Label>);        \
  REGISTER_KERNEL_BUILDER(Name("FocalOp>SparseSoftmaxFocalLossGrad")          \
                              .Device(DEVICE)                                 \
                              .TypeConstraint<T>("T")                         \
                              .TypeConstraint<Label>("Tlabels") HOST_SCALARS, \
                          SparseSoftmaxFocalLossGradOp<Launch, T, Label>);

#define FOCAL_REGISTER_ELEMENTWISE(DEVICE, Launch, T, SOFTMAX_HOST_SCALARS, SIGMOID_HOST_SCALARS)                      \
  REGISTER_KERNEL_BUILDER(Name("FocalOp>SoftmaxFocalLoss").Device(DEVICE).TypeConstraint<T>("T") SOFTMAX_HOST_SCALARS, \
                          SoftmaxFocalLossOp<Launch, T>);                                                              \
  REGISTER_KERNEL_BUILDER(                                                                                             \
      Name("FocalOp>SoftmaxFocalLossGrad").Device(DEVICE).TypeConstraint<T>("T") SOFTMAX_HOST_SCALARS,                 \
      SoftmaxFocalLossGradOp<Launch, T>);                                                                              \
  REGISTER_KERNEL_BUILDER(Name("FocalOp>SigmoidFocalLoss").Device(DEVICE).TypeConstraint<T>("T") SIGMOID_HOST_SCALARS, \
                          SigmoidFocalLossOp<Launch, T, false>);                                                       \
  REGISTER_KERNEL_BUILDER(                                                                                             \
      Name("FocalOp>SigmoidFocalLossGrad").Device(DEVICE).TypeConstraint<T>("T") SIGMOID_HOST_SCALARS,                 \
      SigmoidFocalLossOp<Launch, T, true>);

#define FOCAL_NO_HOST_MEMORY
#define FOCAL_REGISTER_CPU(T)                                                                                    \
  FOCAL_REGISTER_ELEMENTWISE(::tensorflow::DEVICE_CPU, CpuLaunch, T, FOCAL_NO_HOST_MEMORY, FOCAL_NO_HOST_MEMORY) \
  FOCAL_REGISTER_SPARSE_SOFTMAX(::tensorflow::DEVICE_CPU, CpuLaunch, T, int32_t, FOCAL_NO_HOST_MEMORY)           \
  FOCAL_REGISTER_SPARSE_SOFTMAX(::tensorflow::DEVICE_CPU, CpuLaunch, T, int64_t, FOCAL_NO_HOST_MEMORY)

FOCAL_REGISTER_CPU(Eigen::half)
FOCAL_REGISTER_CPU(Eigen::bfloat16)
FOCAL_REGISTER_CPU(float)
FOCAL_REGISTER_CPU(double)

#if defined(FOCAL_OP_WITH_CUDA)
#define FOCAL_SOFTMAX_HOST_SCALARS .HostMemory("gamma").HostMemory("epsilon").HostMemory("label_smoothing")
#define FOCAL_SIGMOID_HOST_SCALARS .HostMemory("gamma").HostMemory("label_smoothing")
#define FOCAL_REGISTER_GPU(T)                                                                                \
  FOCAL_REGISTER_ELEMENTWISE(::tensorflow::DEVICE_GPU, GpuLaunch, T, FOCAL_SOFTMAX_HOST_SCALARS,             \
                             FOCAL_SIGMOID_HOST_SCALARS)                                                     \
  FOCAL_REGISTER_SPARSE_SOFTMAX(::tensorflow::DEVICE_GPU, GpuLaunch, T, int32_t, FOCAL_SOFTMAX_HOST_SCALARS) \
  FOCAL_REGISTER_SPARSE_SOFTMAX(::tensorflow::DEVICE_GPU, GpuLaunch, T, int64_t, FOCAL_SOFTMAX_HOST_SCALARS)

FOCAL_REGISTER_GPU(Eigen::half)
FOCAL_REGISTER_GPU(Eigen::bfloat16)
FOCAL_REGISTER_GPU(float)
FOCAL_REGISTER_GPU(double)
#endif

}  // namespace
}  // namespace focal_tf
