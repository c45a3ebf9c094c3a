// ops.cc — registration of focal_op's TensorFlow ops and their shape functions.
//
// Op names live in the FocalOp> namespace. Hyper-parameters that change the math (gamma,
// epsilon, label_smoothing, alpha) are float64 inputs, so float64 models see them unrounded;
// the kernels validate them before any work is done.
#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace focal_tf {
namespace {

using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

constexpr int kRowStats = 4;  // focal::kSoftmaxRowStats

// logits [..., C] and labels [...]: returns the merged batch shape and the class dimension.
absl::Status MergeSparseSoftmaxShapes(InferenceContext* c, ShapeHandle* batch, DimensionHandle* classes) {
  ShapeHandle logits;
  TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(1), 1, &logits));
  TF_RETURN_IF_ERROR(c->Subshape(logits, 0, -1, batch));
  *classes = c->Dim(logits, -1);
  if (!c->Merge(c->input(0), *batch, batch).ok()) {
    return absl::InvalidArgumentError(absl::StrCat("labels must have the shape of logits without its last axis; got labels ",
                                                   c->DebugString(c->input(0)), " and logits ",
                                                   c->DebugString(c->input(1))));
  }
  // alpha: a scalar (every class) or one weight per class
  ShapeHandle alpha;
  if (!c->WithRankAtMost(c->input(2), 1, &alpha).ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("alpha must be a scalar or a vector of length C; got shape ", c->DebugString(c->input(2))));
  }
  if (c->RankKnown(alpha) && c->Rank(alpha) == 1) {
    DimensionHandle merged;
    if (!c->Merge(c->Dim(alpha, 0), *classes, &merged).ok()) {
      return absl::InvalidArgumentError(absl::StrCat("alpha must have one weight per class (", c->DebugString(*classes),
                                                     "); got shape ", c->DebugString(alpha)));
    }
    *classes = merged;
  }
  for (int i = 3; i <= 5; ++i) {
    ShapeHandle scalar;
    TF_RETURN_IF_ERROR(c->WithRank(c->input(i), 0, &scalar));
  }
  return absl::OkStatus();
}

absl::Status SparseSoftmaxFocalLossShape(InferenceContext* c) {
  ShapeHandle batch;
  DimensionHandle classes;
  TF_RETURN_IF_ERROR(MergeSparseSoftmaxShapes(c, &batch, &classes));
  ShapeHandle stats;
  TF_RETURN_IF_ERROR(c->Concatenate(batch, c->Vector(kRowStats), &stats));
  c->set_output(0, batch);
  c->set_output(1, stats);
  return absl::OkStatus();
}

absl::Status SparseSoftmaxFocalLossGradShape(InferenceContext* c) {
  ShapeHandle batch;
  DimensionHandle classes;
  TF_RETURN_IF_ERROR(MergeSparseSoftmaxShapes(c, &batch, &classes));
  ShapeHandle stats;
  TF_RETURN_IF_ERROR(c->Concatenate(batch, c->Vector(kRowStats), &stats));
  TF_RETURN_IF_ERROR(c->Merge(c->input(6), stats, &stats));
  TF_RETURN_IF_ERROR(c->Merge(c->input(7), batch, &batch));
  ShapeHandle logits_grad;
  TF_RETURN_IF_ERROR(c->Concatenate(batch, c->Vector(classes), &logits_grad));
  c->set_output(0, logits_grad);
  return absl::OkStatus();
}

}  // namespace

REGISTER_OP("FocalOp>SparseSoftmaxFocalLoss")
    .Input("labels: Tlabels")
    .Input("logits: T")
    .Input("alpha: double")
    .Input("gamma: double")
    .Input("epsilon: double")
    .Input("label_smoothing: double")
    .Output("loss: T")
    .Output("row_stats: Tstats")
    .Attr("T: {half, bfloat16, float, double}")
    .Attr("Tlabels: {int32, int64} = DT_INT64")
    .Attr("Tstats: {float, double} = DT_FLOAT")
    .Attr("ignore_class: int = 0")
    .Attr("has_ignore_class: bool = false")
    .SetShapeFn(SparseSoftmaxFocalLossShape)
    .Doc(R"doc(
Per-row softmax focal loss with sparse labels: -Σ_c y_c α_c (1-p_c)^γ log p_c with
y = (1-s)·onehot(label) + s/C. Tstats must be double for double logits, float otherwise;
row_stats is the per-row state the gradient op reads.
)doc");

REGISTER_OP("FocalOp>SparseSoftmaxFocalLossGrad")
    .Input("labels: Tlabels")
    .Input("logits: T")
    .Input("alpha: double")
    .Input("gamma: double")
    .Input("epsilon: double")
    .Input("label_smoothing: double")
    .Input("row_stats: Tstats")
    .Input("loss_grad: T")
    .Output("logits_grad: T")
    .Attr("T: {half, bfloat16, float, double}")
    .Attr("Tlabels: {int32, int64} = DT_INT64")
    .Attr("Tstats: {float, double} = DT_FLOAT")
    .Attr("ignore_class: int = 0")
    .Attr("has_ignore_class: bool = false")
    .SetShapeFn(SparseSoftmaxFocalLossGradShape)
    .Doc(R"doc(
Gradient of FocalOp>SparseSoftmaxFocalLoss w.r.t. logits, scaled row by row by loss_grad.
)doc");

}  // namespace focal_tf
