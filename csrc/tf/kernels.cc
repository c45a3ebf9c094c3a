// kernels.cc — focal_op's OpKernels: validate inputs, allocate outputs, fill the core's argument
// struct and call its launcher — on the CPU with rows split over TensorFlow's worker threads, on
// the GPU (builds with CUDA) on the stream TensorFlow gives the op. One kernel class per op
// serves both devices through a launch policy (CpuLaunch, GpuLaunch).
#include <algorithm>
#include <limits>
#include <string>
#include <vector>

#include "focal_cpu.h"
#include "inputs.h"
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

// The core's storage type -> TensorFlow's element type of the same bits.
template <typename Core>
struct TfType {
  using type = Core;
};
template <>
struct TfType<focal::float16_bits> {
  using type = Eigen::half;
};
template <>
struct TfType<focal::bfloat16_bits> {
  using type = Eigen::bfloat16;
};

template <typename Core>
const Core* CorePtr(const Tensor& t) {
  return reinterpret_cast<const Core*>(t.flat<typename TfType<Core>::type>().data());
}
template <typename Core>
Core* CorePtr(Tensor* t) {
  return reinterpret_cast<Core*>(t->flat<typename TfType<Core>::type>().data());
}

absl::Status ReadScalar(const Tensor& t, const char* name, double* value) {
  if (!::tensorflow::TensorShapeUtils::IsScalar(t.shape())) {
    return absl::InvalidArgumentError(absl::StrCat(name, " must be a scalar; got shape ", t.shape().DebugString()));
  }
  *value = t.scalar<double>()();
  return absl::OkStatus();
}

std::vector<int64_t> Dims(const TensorShape& shape) {
  std::vector<int64_t> dims;
  for (int i = 0; i < shape.dims(); ++i) dims.push_back(shape.dim_size(i));
  return dims;
}

absl::Status FromCheck(const std::string& error) {
  return error.empty() ? absl::OkStatus() : absl::InvalidArgumentError(error);
}

// The softmax ops' shapes and hyper-parameters into args (pointers are set by the op). Sparse
// labels have the logits' shape without the class axis, dense labels the logits' shape; the
// batch shape (the loss's) is returned. alpha_on_host: false for GPU kernels (alpha in device
// memory: its values are not read here).
template <typename Core>
absl::Status ReadSoftmaxInputs(OpKernelContext* ctx, focal::LabelKind label_kind, int64_t ignore_class,
                               bool has_ignore_class, bool alpha_on_host, TensorShape* batch,
                               focal::SoftmaxArgs<Core>* args) {
  const Tensor& labels = ctx->input(kSoftmaxLabels);
  const Tensor& logits = ctx->input(kSoftmaxLogits);
  const Tensor& alpha = ctx->input(kSoftmaxAlpha);
  const bool dense = label_kind == focal::LabelKind::kDense;
  if (logits.dims() < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("logits must have rank >= 1 ([..., C]); got shape ", logits.shape().DebugString()));
  }
  *batch = logits.shape();
  batch->RemoveLastDims(1);
  if (labels.shape() != (dense ? logits.shape() : *batch)) {
    return absl::InvalidArgumentError(
        absl::StrCat(dense ? "labels must have the shape of logits"
                           : "labels must have the shape of logits without its last axis",
                     "; got labels ", labels.shape().DebugString(), " and logits ", logits.shape().DebugString()));
  }
  args->label_kind = label_kind;
  args->classes = logits.dim_size(logits.dims() - 1);
  args->rows = batch->num_elements();
  if (alpha.dims() > 1) {
    return absl::InvalidArgumentError(absl::StrCat("alpha must be a scalar or a vector of length C = ", args->classes,
                                                   "; got shape ", alpha.shape().DebugString()));
  }
  focal::SoftmaxFocalParams& params = args->params;
  TF_RETURN_IF_ERROR(ReadScalar(ctx->input(kSoftmaxGamma), "gamma", &params.gamma));
  TF_RETURN_IF_ERROR(ReadScalar(ctx->input(kSoftmaxEpsilon), "epsilon", &params.epsilon));
  TF_RETURN_IF_ERROR(ReadScalar(ctx->input(kSoftmaxLabelSmoothing), "label_smoothing", &params.label_smoothing));
  params.alpha = alpha.flat<double>().data();
  params.alpha_size = alpha.NumElements();
  params.ignore_class = ignore_class;
  params.has_ignore_class = has_ignore_class;
  args->logits = CorePtr<Core>(logits);
  args->labels = labels.data();
  return FromCheck(focal::softmax_params_error(params, args->classes, alpha_on_host,
                                               std::numeric_limits<focal::acc_t<Core>>::max()));
}

// The sigmoid ops' shapes and hyper-parameters into args: labels like logits; alpha empty
// (none), a scalar or one per column.
template <typename Core>
absl::Status ReadSigmoidInputs(OpKernelContext* ctx, bool alpha_on_host, focal::SigmoidArgs<Core>* args) {
  const Tensor& labels = ctx->input(kSigmoidLabels);
  const Tensor& logits = ctx->input(kSigmoidLogits);
  const Tensor& alpha = ctx->input(kSigmoidAlpha);
  if (labels.shape() != logits.shape()) {
    return absl::InvalidArgumentError(absl::StrCat("labels must have the shape of logits; got labels ",
                                                   labels.shape().DebugString(), " and logits ",
                                                   logits.shape().DebugString()));
  }
  TensorShape rows = logits.shape();  // a scalar is one row of one column
  if (logits.dims() > 0) rows.RemoveLastDims(1);
  args->rows = rows.num_elements();
  args->columns = logits.dims() > 0 ? logits.dim_size(logits.dims() - 1) : 1;
  const bool no_alpha = alpha.dims() == 1 && alpha.dim_size(0) == 0;
  if (alpha.dims() > 1 || (alpha.dims() == 1 && !no_alpha && logits.dims() == 0)) {
    return absl::InvalidArgumentError(absl::StrCat("alpha must be a scalar or a vector over the last axis (length ",
                                                   args->columns, "); got shape ", alpha.shape().DebugString()));
  }
  focal::SigmoidFocalParams& params = args->params;
  TF_RETURN_IF_ERROR(ReadScalar(ctx->input(kSigmoidGamma), "gamma", &params.gamma));
  TF_RETURN_IF_ERROR(ReadScalar(ctx->input(kSigmoidLabelSmoothing), "label_smoothing", &params.label_smoothing));
  params.alpha = no_alpha ? nullptr : alpha.flat<double>().data();
  params.alpha_size = no_alpha ? 0 : alpha.NumElements();
  args->logits = CorePtr<Core>(logits);
  args->labels = CorePtr<Core>(labels);
  return FromCheck(focal::sigmoid_params_error(params, args->columns, alpha_on_host,
                                               std::numeric_limits<focal::acc_t<Core>>::max()));
}

template <typename Acc>
absl::Status CheckStatsDtype(tensorflow::DataType stats_dtype) {
  if (stats_dtype != DataTypeToEnum<Acc>::value) {
    return absl::InvalidArgumentError(absl::StrCat("Tstats must be ", DataTypeString(DataTypeToEnum<Acc>::value),
                                                   " for these logits; got ", DataTypeString(stats_dtype)));
  }
  return absl::OkStatus();
}

// row_stats and loss_grad of a softmax gradient op: [batch..., 4] and [batch...].
template <typename Acc>
absl::Status CheckSoftmaxGradInputs(OpKernelContext* ctx, const TensorShape& batch) {
  const Tensor& stats = ctx->input(kSoftmaxRowStats);
  const Tensor& loss_grad = ctx->input(kSoftmaxLossGrad);
  TF_RETURN_IF_ERROR(CheckStatsDtype<Acc>(stats.dtype()));
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

// The op's status from the core's: the label of an out-of-range row named in TF's words.
absl::Status FromCore(const focal::Status& status, const Tensor& labels, int64_t classes) {
  switch (status.code) {
    case focal::StatusCode::kOk:
      return absl::OkStatus();
    case focal::StatusCode::kInvalidArgument: {
      const int64_t label = labels.dtype() == tensorflow::DT_INT32 ? labels.flat<int32_t>()(status.bad_row)
                                                                    : labels.flat<int64_t>()(status.bad_row);
      return absl::InvalidArgumentError(focal::label_out_of_range_error(label, status.bad_row, classes));
    }
    default:
      return absl::InternalError(status.message);
  }
}

// Runs launch(range) over [0, items) on TensorFlow's CPU workers; the status of the smallest
// out-of-range row any shard reported, else OK.
template <typename Args, typename Launch>
focal::Status ShardItems(OpKernelContext* ctx, const Args& args, int64_t items, Launch launch) {
  focal::FirstBadRow first_bad;
  const auto& workers = *ctx->device()->tensorflow_cpu_worker_threads();
  ::tensorflow::Shard(workers.num_threads, workers.workers, items, focal::work_item_cost(args),
                      [&](int64_t begin, int64_t end) { first_bad.add(launch(focal::RowRange{begin, end})); });
  return first_bad.status();
}

// ---- launch policies: where and how the core runs ----------------------------------------------

struct CpuLaunch {
  static constexpr bool kAlphaOnHost = true;

  template <typename Core>
  static focal::Status SoftmaxForward(OpKernelContext* ctx, const focal::SoftmaxArgs<Core>& args) {
    return ShardItems(ctx, args, args.rows,
                      [&](focal::RowRange range) { return focal::softmax_forward_cpu(args, range); });
  }

  template <typename Core>
  static focal::Status SoftmaxBackward(OpKernelContext* ctx, const focal::SoftmaxArgs<Core>& args) {
    return ShardItems(ctx, args, args.rows,
                      [&](focal::RowRange range) { return focal::softmax_backward_cpu(args, range); });
  }

  template <typename Core>
  static focal::Status Sigmoid(OpKernelContext* ctx, const focal::SigmoidArgs<Core>& args) {
    return ShardItems(ctx, args, focal::sigmoid_work_items(args),
                      [&](focal::RowRange range) { return focal::sigmoid_cpu(args, range); });
  }
};

#if defined(FOCAL_OP_WITH_CUDA)
// The raw cudaStream_t of the op's GPU stream.
void* GpuStream(OpKernelContext* ctx) { return ctx->op_device_context()->stream()->platform_specific_handle().stream; }

// GPU kernels: labels outside [0, C) give NaN rows (no device-to-host copy to find them).
struct GpuLaunch {
  static constexpr bool kAlphaOnHost = false;

  template <typename Core>
  static focal::Status SoftmaxForward(OpKernelContext* ctx, const focal::SoftmaxArgs<Core>& args) {
    return focal::softmax_forward_cuda(args, GpuStream(ctx));
  }

  template <typename Core>
  static focal::Status SoftmaxBackward(OpKernelContext* ctx, const focal::SoftmaxArgs<Core>& args) {
    return focal::softmax_backward_cuda(args, GpuStream(ctx));
  }

  template <typename Core>
  static focal::Status Sigmoid(OpKernelContext* ctx, const focal::SigmoidArgs<Core>& args) {
    return focal::sigmoid_cuda(args, GpuStream(ctx));
  }
};
#endif

// ---- the op kernels ---------------------------------------------------------------------------

// A gradient op's output: the logits' buffer itself when no other op needs the logits any more
// (TensorFlow decides; the kernels read each logit before writing its gradient), else new.
absl::Status AllocateLogitsGrad(OpKernelContext* ctx, int logits_input, Tensor** logits_grad) {
  return ctx->forward_input_or_allocate_output({logits_input}, 0, ctx->input(logits_input).shape(), logits_grad);
}

// The label kind of the sparse ops' Tlabels, and of dense labels (void).
template <typename Label>
constexpr focal::LabelKind kLabelKind =
    sizeof(Label) == 4 ? focal::LabelKind::kSparseInt32 : focal::LabelKind::kSparseInt64;
template <>
constexpr focal::LabelKind kLabelKind<void> = focal::LabelKind::kDense;

// The softmax forward (kBackward false) and gradient ops of logits of the core's type Core;
// Label: the sparse labels' type, void for dense labels.
template <typename Launch, typename Core, typename Label, bool kBackward>
class SoftmaxFocalLossOp : public OpKernel {
 public:
  using Acc = focal::acc_t<Core>;

  explicit SoftmaxFocalLossOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    if constexpr (!std::is_void_v<Label>) {
      OP_REQUIRES_OK(ctx, ctx->GetAttr("ignore_class", &ignore_class_));
      OP_REQUIRES_OK(ctx, ctx->GetAttr("has_ignore_class", &has_ignore_class_));
    }
  }

  void Compute(OpKernelContext* ctx) override {
    TensorShape batch;
    focal::SoftmaxArgs<Core> args;
    OP_REQUIRES_OK(ctx, ReadSoftmaxInputs(ctx, kLabelKind<Label>, ignore_class_, has_ignore_class_, Launch::kAlphaOnHost, &batch,
                                          &args));
    if (kBackward) {
      OP_REQUIRES_OK(ctx, CheckSoftmaxGradInputs<Acc>(ctx, batch));
      Tensor* logits_grad = nullptr;
      OP_REQUIRES_OK(ctx, AllocateLogitsGrad(ctx, kSoftmaxLogits, &logits_grad));
      args.row_stats = const_cast<Acc*>(ctx->input(kSoftmaxRowStats).flat<Acc>().data());  // read only
      args.loss_grad = CorePtr<Core>(ctx->input(kSoftmaxLossGrad));
      args.logits_grad = CorePtr<Core>(logits_grad);
      if (args.rows == 0 || args.classes == 0) return;
      OP_REQUIRES_OK(ctx, FromCore(Launch::SoftmaxBackward(ctx, args), ctx->input(kSoftmaxLabels), args.classes));
      return;
    }
    OP_REQUIRES_OK(ctx, CheckStatsDtype<Acc>(ctx->expected_output_dtype(1)));
    Tensor* loss = nullptr;
    Tensor* stats = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, batch, &loss));
    TensorShape stats_shape = batch;
    stats_shape.AddDim(focal::kSoftmaxRowStats);
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, stats_shape, &stats));
    args.loss = CorePtr<Core>(loss);
    args.row_stats = stats->flat<Acc>().data();
    if (args.rows == 0) return;
    OP_REQUIRES_OK(ctx, FromCore(Launch::SoftmaxForward(ctx, args), ctx->input(kSoftmaxLabels), args.classes));
  }

 private:
  int64_t ignore_class_ = 0;
  bool has_ignore_class_ = false;
};

// Sigmoid forward (kBackward false) and gradient: elementwise over the logits, or the forward
// summed over the last axis (sum_over_classes).
template <typename Launch, typename Core, bool kBackward>
class SigmoidFocalLossOp : public OpKernel {
 public:
  explicit SigmoidFocalLossOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    if (!kBackward) OP_REQUIRES_OK(ctx, ctx->GetAttr("sum_over_classes", &sum_over_classes_));
  }

  void Compute(OpKernelContext* ctx) override {
    focal::SigmoidArgs<Core> args;
    OP_REQUIRES_OK(ctx, ReadSigmoidInputs(ctx, Launch::kAlphaOnHost, &args));
    const Tensor& logits = ctx->input(kSigmoidLogits);
    if (kBackward) {
      const Tensor& loss_grad = ctx->input(kSigmoidLossGrad);
      OP_REQUIRES_OK(ctx, FromCheck(focal::sigmoid_upstream_layout(Dims(loss_grad.shape()), Dims(logits.shape()),
                                                                   &args.upstream)));
      args.loss_grad = CorePtr<Core>(loss_grad);
    }
    Tensor* out = nullptr;
    if (sum_over_classes_) {
      OP_REQUIRES(ctx, logits.dims() > 0, absl::InvalidArgumentError(focal::kSumOverClassesOfScalarError));
      TensorShape rows_shape = logits.shape();
      rows_shape.RemoveLastDims(1);
      OP_REQUIRES_OK(ctx, ctx->allocate_output(0, rows_shape, &out));
      args.sum_over_classes = true;
    } else {
      OP_REQUIRES_OK(ctx, kBackward ? AllocateLogitsGrad(ctx, kSigmoidLogits, &out)
                                    : ctx->allocate_output(0, logits.shape(), &out));
    }
    args.out = CorePtr<Core>(out);
    if (focal::sigmoid_work_items(args) == 0) return;
    OP_REQUIRES_OK(ctx, FromCore(Launch::Sigmoid(ctx, args), logits, 0));
  }

 private:
  bool sum_over_classes_ = false;
};

// ---- registration -----------------------------------------------------------------------------
// On the GPU the float64 hyper-parameter scalars stay in host memory (read by the kernel
// class); labels, logits, alpha and the outputs live on the device. Every logits type of the
// core (FOCAL_FOR_EACH_FLOAT_TYPE), as TensorFlow names it.
#define FOCAL_REGISTER_SPARSE_SOFTMAX(DEVICE, Launch, Core, Label, HOST_SCALARS)      \
  REGISTER_KERNEL_BUILDER(Name("FocalOp>SparseSoftmaxFocalLoss")                   \
                              .Device(DEVICE)                                      \
                              .TypeConstraint<TfType<Core>::type>("T")                              \
                              .TypeConstraint<Label>("Tlabels") HOST_SCALARS,      \
                          SoftmaxFocalLossOp<Launch, Core, Label, false>);            \
  REGISTER_KERNEL_BUILDER(Name("FocalOp>SparseSoftmaxFocalLossGrad")               \
                              .Device(DEVICE)                                      \
                              .TypeConstraint<TfType<Core>::type>("T")                              \
                              .TypeConstraint<Label>("Tlabels") HOST_SCALARS,      \
                          SoftmaxFocalLossOp<Launch, Core, Label, true>);

#define FOCAL_REGISTER_FOR_TYPE(DEVICE, Launch, Core, SOFTMAX_HOST_SCALARS, SIGMOID_HOST_SCALARS)                         \
  REGISTER_KERNEL_BUILDER(Name("FocalOp>SoftmaxFocalLoss").Device(DEVICE).TypeConstraint<TfType<Core>::type>("T") SOFTMAX_HOST_SCALARS, \
                          SoftmaxFocalLossOp<Launch, Core, void, false>);                                                 \
  REGISTER_KERNEL_BUILDER(                                                                                             \
      Name("FocalOp>SoftmaxFocalLossGrad").Device(DEVICE).TypeConstraint<TfType<Core>::type>("T") SOFTMAX_HOST_SCALARS,                 \
      SoftmaxFocalLossOp<Launch, Core, void, true>);                                                                      \
  REGISTER_KERNEL_BUILDER(Name("FocalOp>SigmoidFocalLoss").Device(DEVICE).TypeConstraint<TfType<Core>::type>("T") SIGMOID_HOST_SCALARS, \
                          SigmoidFocalLossOp<Launch, Core, false>);                                                       \
  REGISTER_KERNEL_BUILDER(                                                                                             \
      Name("FocalOp>SigmoidFocalLossGrad").Device(DEVICE).TypeConstraint<TfType<Core>::type>("T") SIGMOID_HOST_SCALARS,                 \
      SigmoidFocalLossOp<Launch, Core, true>);                                                                            \
  FOCAL_REGISTER_SPARSE_SOFTMAX(DEVICE, Launch, Core, int32_t, SOFTMAX_HOST_SCALARS)                                      \
  FOCAL_REGISTER_SPARSE_SOFTMAX(DEVICE, Launch, Core, int64_t, SOFTMAX_HOST_SCALARS)

#define FOCAL_NO_HOST_MEMORY
#define FOCAL_REGISTER_CPU(Core) \
  FOCAL_REGISTER_FOR_TYPE(::tensorflow::DEVICE_CPU, CpuLaunch, Core, FOCAL_NO_HOST_MEMORY, FOCAL_NO_HOST_MEMORY)
FOCAL_FOR_EACH_FLOAT_TYPE(FOCAL_REGISTER_CPU)

#if defined(FOCAL_OP_WITH_CUDA)
#define FOCAL_SOFTMAX_HOST_SCALARS .HostMemory("gamma").HostMemory("epsilon").HostMemory("label_smoothing")
#define FOCAL_SIGMOID_HOST_SCALARS .HostMemory("gamma").HostMemory("label_smoothing")
#define FOCAL_REGISTER_GPU(Core)                                                                         \
  FOCAL_REGISTER_FOR_TYPE(::tensorflow::DEVICE_GPU, GpuLaunch, Core, FOCAL_SOFTMAX_HOST_SCALARS, \
                          FOCAL_SIGMOID_HOST_SCALARS)
FOCAL_FOR_EACH_FLOAT_TYPE(FOCAL_REGISTER_GPU)
#endif

}  // namespace
}  // namespace focal_tf
