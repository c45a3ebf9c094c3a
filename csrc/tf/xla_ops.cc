// xla_ops.cc — the XLA lowering of focal_op's TensorFlow ops: one XlaOpKernel per op family that
// emits a typed-FFI custom call to the handlers of csrc/xla (the kernels the OpKernels run), and
// the handlers' registration with TensorFlow's XLA runtime ("Host"; "CUDA" in builds with CUDA).
// The only file with tf2xla headers (they take 1-2 minutes to compile): keep it alone.
//
// Hyper-parameters that are constants when the function is compiled go to the call as attributes
// (checked here, at compile time); those that are tensors at run time (a tf.Variable gamma) go as
// the float64 `scalars` operand, which the handlers read and check on every call.
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "ffi_handlers.h"
#include "inputs.h"
#include "tensorflow/compiler/tf2xla/xla_op_kernel.h"
#include "tensorflow/compiler/tf2xla/xla_op_registry.h"
#include "validate.h"
#include "xla/hlo/builder/xla_builder.h"
#include "xla/literal.h"
#include "xla/shape_util.h"

// TensorFlow's XLA FFI API (exported by libtensorflow_cc.so.2). Its header, xla/ffi/ffi_api.h,
// needs MLIR headers the TensorFlow wheel does not ship, so the one function is declared here.
namespace xla::ffi {
const XLA_FFI_Api* GetXlaFfiApi();
}  // namespace xla::ffi

namespace focal_tf {
namespace {

using ::tensorflow::TensorShape;
using ::tensorflow::XlaOpKernel;
using ::tensorflow::XlaOpKernelContext;

// ---- handler registration ----------------------------------------------------------------------

// Registers every handler once (at library load, and before any call is emitted); the text of the
// failures, empty when all succeeded. Registration errors are never dropped: a call to a target
// that failed to register would only fail when XLA runs it.
const std::string& RegistrationErrors() {
  static const std::string errors = [] {
    struct Target {
      const char* name;
      const char* platform;
      XLA_FFI_Handler* handler;
    };
    const Target targets[] = {
        {focal_xla::kSoftmaxForwardTarget, "Host", FocalOpSoftmaxForwardCpu},
        {focal_xla::kSoftmaxBackwardTarget, "Host", FocalOpSoftmaxBackwardCpu},
        {focal_xla::kSigmoidForwardTarget, "Host", FocalOpSigmoidForwardCpu},
        {focal_xla::kSigmoidBackwardTarget, "Host", FocalOpSigmoidBackwardCpu},
#if defined(FOCAL_OP_WITH_CUDA)
        {focal_xla::kSoftmaxForwardTarget, "CUDA", FocalOpSoftmaxForwardCuda},
        {focal_xla::kSoftmaxBackwardTarget, "CUDA", FocalOpSoftmaxBackwardCuda},
        {focal_xla::kSigmoidForwardTarget, "CUDA", FocalOpSigmoidForwardCuda},
        {focal_xla::kSigmoidBackwardTarget, "CUDA", FocalOpSigmoidBackwardCuda},
#endif
    };
    const XLA_FFI_Api* api = xla::ffi::GetXlaFfiApi();
    std::string text;
    for (const Target& target : targets) {
      XLA_FFI_Error* error = xla::ffi::Ffi::RegisterStaticHandler(api, target.name, target.platform, target.handler);
      if (error != nullptr) {
        text += std::string(text.empty() ? "" : "; ") + target.name + " (" + target.platform +
                "): " + xla::ffi::internal::GetErrorMessage(api, error);
        xla::ffi::internal::DestroyError(api, error);
      }
    }
    return text;
  }();
  return errors;
}

[[maybe_unused]] const bool kRegisteredAtLoad = (RegistrationErrors(), true);

absl::Status HandlersRegistered() {
  if (RegistrationErrors().empty()) return absl::OkStatus();
  return absl::InternalError("focal_op: its XLA custom-call handlers could not be registered: " + RegistrationErrors());
}

// ---- the custom call ----------------------------------------------------------------------------

// MLIR attribute text of the backend_config dictionary. Doubles travel as their bit pattern, so
// the handler sees exactly the value the graph holds.
std::string F64Attr(const char* name, double value) {
  uint64_t bits;
  static_assert(sizeof(bits) == sizeof(value));
  std::memcpy(&bits, &value, sizeof(bits));
  char text[96];
  std::snprintf(text, sizeof(text), "%s = 0x%016" PRIX64 " : f64", name, bits);
  return text;
}
std::string I64Attr(const char* name, int64_t value) { return std::string(name) + " = " + std::to_string(value) + " : i64"; }
std::string BoolAttr(const char* name, bool value) { return std::string(name) + " = " + (value ? "true" : "false"); }

std::string Dictionary(const std::vector<std::string>& attrs) {
  std::string text = "{";
  for (size_t i = 0; i < attrs.size(); ++i) text += (i ? ", " : "") + attrs[i];
  return text + "}";
}

// Row-major shape of operand or result `type`/`dims`: the layout the handlers index.
xla::Shape RowMajor(xla::PrimitiveType type, const TensorShape& dims) {
  return xla::ShapeUtil::MakeShapeWithDescendingLayout(type, dims.dim_sizes());
}

// The typed-FFI call of `target` on `operands` (row-major, as `operand_shapes` say) with the
// attributes `attrs`.
xla::XlaOp EmitCall(XlaOpKernelContext* ctx, const char* target, const std::vector<xla::XlaOp>& operands,
                    const std::vector<xla::Shape>& operand_shapes, const xla::Shape& result,
                    const std::vector<std::string>& attrs) {
  return xla::CustomCallWithLayout(ctx->builder(), target, operands, result, operand_shapes, Dictionary(attrs),
                                   /*has_side_effect=*/false, /*output_operand_aliasing=*/{}, /*literal=*/nullptr,
                                   xla::CustomCallSchedule::SCHEDULE_NONE,
                                   xla::CustomCallApiVersion::API_VERSION_TYPED_FFI);
}

// The hyper-parameter inputs `inputs`: their values where all are compile-time constants
// (`operand` is then an empty vector), else the float64 vector of all of them read at run time
// (the values are placeholders that pass the checks; the handler reads and checks the operand).
struct HyperParameters {
  std::vector<double> values;
  bool at_run_time = false;
  xla::XlaOp operand;
  xla::Shape operand_shape;
};

HyperParameters ReadHyperParameters(XlaOpKernelContext* ctx, const std::vector<int>& inputs) {
  HyperParameters hyper;
  std::vector<xla::XlaOp> parts;
  for (int input : inputs) {
    double value = 0.0;
    if (!ctx->ConstantInputAsFloatScalar(input, &value).ok()) {
      hyper.at_run_time = true;
      value = 0.0;
    }
    hyper.values.push_back(value);
    parts.push_back(xla::Reshape(ctx->Input(input), {1}));
  }
  const int64_t count = hyper.at_run_time ? static_cast<int64_t>(inputs.size()) : 0;
  hyper.operand = hyper.at_run_time ? xla::ConcatInDim(ctx->builder(), parts, 0)
                                    : xla::ConstantR1<double>(ctx->builder(), std::vector<double>{});
  hyper.operand_shape = xla::ShapeUtil::MakeShapeWithDescendingLayout(xla::F64, {count});
  return hyper;
}

// alpha's values when it is a compile-time constant (checked here too), else an empty optional.
std::optional<std::vector<double>> ConstantAlpha(XlaOpKernelContext* ctx, int input) {
  xla::Literal literal;
  if (!ctx->ConstantInput(input, &literal).ok()) return std::nullopt;
  const auto data = literal.data<double>();
  return std::vector<double>(data.begin(), data.end());
}

absl::Status FromCheck(const std::string& error) {
  return error.empty() ? absl::OkStatus() : absl::InvalidArgumentError(error);
}

// The type the kernels compute logits of `type` in.
xla::PrimitiveType ComputeType(xla::PrimitiveType type) { return type == xla::F64 ? xla::F64 : xla::F32; }
double ComputeMax(xla::PrimitiveType type) {
  return type == xla::F64 ? std::numeric_limits<double>::max() : std::numeric_limits<float>::max();
}

// ---- softmax ------------------------------------------------------------------------------------

// FocalOp>SparseSoftmaxFocalLoss, >SoftmaxFocalLoss and their Grad ops (kBackward).
template <bool kBackward>
class SoftmaxFocalLossXlaOp : public XlaOpKernel {
 public:
  explicit SoftmaxFocalLossXlaOp(tensorflow::OpKernelConstruction* ctx) : XlaOpKernel(ctx) {
    if (ctx->HasAttr("ignore_class")) {
      OP_REQUIRES_OK(ctx, ctx->GetAttr("ignore_class", &ignore_class_));
      OP_REQUIRES_OK(ctx, ctx->GetAttr("has_ignore_class", &has_ignore_class_));
    }
  }

  void Compile(XlaOpKernelContext* ctx) override {
    OP_REQUIRES_OK(ctx, HandlersRegistered());
    const TensorShape logits_shape = ctx->InputShape(kSoftmaxLogits);
    OP_REQUIRES(ctx, logits_shape.dims() >= 1,
                absl::InvalidArgumentError("logits must have rank >= 1 ([..., C]); got a scalar"));
    const xla::PrimitiveType type = ctx->input_xla_type(kSoftmaxLogits);
    TensorShape batch = logits_shape;
    batch.RemoveLastDims(1);
    const int64_t classes = logits_shape.dim_size(logits_shape.dims() - 1);

    const HyperParameters hyper = ReadHyperParameters(ctx, {kSoftmaxGamma, kSoftmaxEpsilon, kSoftmaxLabelSmoothing});
    const TensorShape alpha_shape = ctx->InputShape(kSoftmaxAlpha);
    const std::optional<std::vector<double>> alpha = ConstantAlpha(ctx, kSoftmaxAlpha);
    focal::SoftmaxFocalParams params;
    params.gamma = hyper.values[0];
    params.epsilon = hyper.values[1];
    params.label_smoothing = hyper.values[2];
    params.alpha = alpha ? alpha->data() : nullptr;
    params.alpha_size = alpha_shape.num_elements();
    std::vector<double> placeholder(1, 1.0);  // alpha's length is checked even when its values are not known yet
    if (!alpha) params.alpha = placeholder.data();
    OP_REQUIRES_OK(ctx, FromCheck(focal::softmax_params_error(params, classes, /*alpha_on_host=*/alpha.has_value(),
                                                              ComputeMax(type))));

    std::vector<xla::XlaOp> operands = {ctx->Input(kSoftmaxLogits), ctx->Input(kSoftmaxLabels),
                                        ctx->Input(kSoftmaxAlpha), hyper.operand};
    std::vector<xla::Shape> shapes = {RowMajor(type, logits_shape),
                                      RowMajor(ctx->input_xla_type(kSoftmaxLabels), ctx->InputShape(kSoftmaxLabels)),
                                      RowMajor(xla::F64, alpha_shape), hyper.operand_shape};
    TensorShape stats_shape = batch;
    stats_shape.AddDim(focal::kSoftmaxRowStats);
    const std::vector<std::string> attrs = {
        F64Attr("gamma", params.gamma), F64Attr("epsilon", params.epsilon),
        F64Attr("label_smoothing", params.label_smoothing), I64Attr("ignore_class", ignore_class_),
        BoolAttr("has_ignore_class", has_ignore_class_)};
    if (kBackward) {
      operands.push_back(ctx->Input(kSoftmaxRowStats));
      operands.push_back(ctx->Input(kSoftmaxLossGrad));
      OP_REQUIRES(ctx, ctx->input_xla_type(kSoftmaxRowStats) == ComputeType(type),
                  absl::InvalidArgumentError("row_stats must have the compute dtype of the logits"));
      OP_REQUIRES(ctx, ctx->InputShape(kSoftmaxRowStats) == stats_shape && ctx->InputShape(kSoftmaxLossGrad) == batch,
                  absl::InvalidArgumentError("row_stats and loss_grad must match the loss of these logits"));
      shapes.push_back(RowMajor(ComputeType(type), stats_shape));
      shapes.push_back(RowMajor(type, batch));
      ctx->SetOutput(0, EmitCall(ctx, focal_xla::kSoftmaxBackwardTarget, operands, shapes,
                                 RowMajor(type, logits_shape), attrs));
      return;
    }
    OP_REQUIRES(ctx, ctx->output_xla_type(1) == ComputeType(type),
                absl::InvalidArgumentError("Tstats must be float64 for float64 logits, else float32"));
    const xla::Shape result =
        xla::ShapeUtil::MakeTupleShape({RowMajor(type, batch), RowMajor(ComputeType(type), stats_shape)});
    const xla::XlaOp call = EmitCall(ctx, focal_xla::kSoftmaxForwardTarget, operands, shapes, result, attrs);
    ctx->SetOutput(0, xla::GetTupleElement(call, 0));
    ctx->SetOutput(1, xla::GetTupleElement(call, 1));
  }

 private:
  int64_t ignore_class_ = 0;
  bool has_ignore_class_ = false;
};

// ---- sigmoid ------------------------------------------------------------------------------------

// FocalOp>SigmoidFocalLoss and FocalOp>SigmoidFocalLossGrad (kBackward).
template <bool kBackward>
class SigmoidFocalLossXlaOp : public XlaOpKernel {
 public:
  explicit SigmoidFocalLossXlaOp(tensorflow::OpKernelConstruction* ctx) : XlaOpKernel(ctx) {
    if (!kBackward) OP_REQUIRES_OK(ctx, ctx->GetAttr("sum_over_classes", &sum_over_classes_));
  }

  void Compile(XlaOpKernelContext* ctx) override {
    OP_REQUIRES_OK(ctx, HandlersRegistered());
    const TensorShape logits_shape = ctx->InputShape(kSigmoidLogits);
    const xla::PrimitiveType type = ctx->input_xla_type(kSigmoidLogits);
    const int64_t columns = logits_shape.dims() > 0 ? logits_shape.dim_size(logits_shape.dims() - 1) : 1;

    const HyperParameters hyper = ReadHyperParameters(ctx, {kSigmoidGamma, kSigmoidLabelSmoothing});
    const TensorShape alpha_shape = ctx->InputShape(kSigmoidAlpha);
    const std::optional<std::vector<double>> alpha = ConstantAlpha(ctx, kSigmoidAlpha);
    const bool no_alpha = alpha_shape.dims() == 1 && alpha_shape.num_elements() == 0;
    focal::SigmoidFocalParams params;
    params.gamma = hyper.values[0];
    params.label_smoothing = hyper.values[1];
    std::vector<double> placeholder(1, 0.5);
    params.alpha = no_alpha ? nullptr : alpha ? alpha->data() : placeholder.data();
    params.alpha_size = no_alpha ? 0 : alpha_shape.num_elements();
    OP_REQUIRES_OK(ctx, FromCheck(focal::sigmoid_params_error(params, columns, /*alpha_on_host=*/alpha.has_value(),
                                                              ComputeMax(type))));
    OP_REQUIRES(ctx, !(sum_over_classes_ && logits_shape.dims() == 0),
                absl::InvalidArgumentError(focal::kSumOverClassesOfScalarError));

    std::vector<xla::XlaOp> operands = {ctx->Input(kSigmoidLogits), ctx->Input(kSigmoidLabels),
                                        ctx->Input(kSigmoidAlpha), hyper.operand};
    std::vector<xla::Shape> shapes = {RowMajor(type, logits_shape), RowMajor(type, ctx->InputShape(kSigmoidLabels)),
                                      RowMajor(xla::F64, alpha_shape), hyper.operand_shape};
    std::vector<std::string> attrs = {F64Attr("gamma", params.gamma),
                                      F64Attr("label_smoothing", params.label_smoothing)};
    if (kBackward) {
      operands.push_back(ctx->Input(kSigmoidLossGrad));
      shapes.push_back(RowMajor(type, ctx->InputShape(kSigmoidLossGrad)));
      ctx->SetOutput(0, EmitCall(ctx, focal_xla::kSigmoidBackwardTarget, operands, shapes,
                                 RowMajor(type, logits_shape), attrs));
      return;
    }
    attrs.push_back(BoolAttr("sum_over_classes", sum_over_classes_));
    TensorShape loss_shape = logits_shape;
    if (sum_over_classes_) loss_shape.RemoveLastDims(1);
    ctx->SetOutput(0, EmitCall(ctx, focal_xla::kSigmoidForwardTarget, operands, shapes, RowMajor(type, loss_shape),
                               attrs));
  }

 private:
  bool sum_over_classes_ = false;
};

REGISTER_XLA_OP(Name("FocalOp>SparseSoftmaxFocalLoss"), SoftmaxFocalLossXlaOp<false>);
REGISTER_XLA_OP(Name("FocalOp>SparseSoftmaxFocalLossGrad"), SoftmaxFocalLossXlaOp<true>);
REGISTER_XLA_OP(Name("FocalOp>SoftmaxFocalLoss"), SoftmaxFocalLossXlaOp<false>);
REGISTER_XLA_OP(Name("FocalOp>SoftmaxFocalLossGrad"), SoftmaxFocalLossXlaOp<true>);
REGISTER_XLA_OP(Name("FocalOp>SigmoidFocalLoss"), SigmoidFocalLossXlaOp<false>);
REGISTER_XLA_OP(Name("FocalOp>SigmoidFocalLossGrad"), SigmoidFocalLossXlaOp<true>);

}  // namespace
}  // namespace focal_tf
