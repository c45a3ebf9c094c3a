// ops.cc — registration of focal_op's TensorFlow ops and their shape functions.
//
// Op names live in the FocalOp> namespace. Hyper-parameters that change the math (gamma,
// epsilon, label_smoothing, alpha) are float64 inputs, so float64 models see them unrounded;
// the kernels validate them before any work is done.
#include "tensorflow/core/framework/common_shape_fns.h"
#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "inputs.h"
#include "validate.h"

namespace focal_tf {
namespace {

using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;


// alpha: a scalar (every class) or one weight per class; inputs first..last scalars.
absl::Status CheckAlphaAndScalars(InferenceContext* c, DimensionHandle classes, int first_scalar, int last_scalar) {
  ShapeHandle alpha;
  if (!c->WithRankAtMost(c->input(kSoftmaxAlpha), 1, &alpha).ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("alpha must be a scalar or a vector of length C; got shape ", c->DebugString(c->input(kSoftmaxAlpha))));
  }
  if (c->RankKnown(alpha) && c->Rank(alpha) == 1) {
    DimensionHandle merged;
    if (!c->Merge(c->Dim(alpha, 0), classes, &merged).ok()) {  // both known and different
      return absl::InvalidArgumentError(
          focal::alpha_length_error(c->Value(c->Dim(alpha, 0)), c->Value(classes), /*sigmoid=*/false));
    }
  }
  for (int i = first_scalar; i <= last_scalar; ++i) {
    ShapeHandle scalar;
    TF_RETURN_IF_ERROR(c->WithRank(c->input(i), 0, &scalar));
  }
  return absl::OkStatus();
}

// logits [..., C] and labels [...]: returns the merged batch shape and the class dimension.
absl::Status MergeSparseSoftmaxShapes(InferenceContext* c, ShapeHandle* batch, DimensionHandle* classes) {
  ShapeHandle logits;
  TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(kSoftmaxLogits), 1, &logits));
  TF_RETURN_IF_ERROR(c->Subshape(logits, 0, -1, batch));
  *classes = c->Dim(logits, -1);
  if (!c->Merge(c->input(kSoftmaxLabels), *batch, batch).ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("labels must have the shape of logits without its last axis; got labels ",
                     c->DebugString(c->input(kSoftmaxLabels)), " and logits ", c->DebugString(c->input(kSoftmaxLogits))));
  }
  return CheckAlphaAndScalars(c, *classes, kSoftmaxGamma, kSoftmaxLabelSmoothing);
}

absl::Status SparseSoftmaxFocalLossShape(InferenceContext* c) {
  ShapeHandle batch;
  DimensionHandle classes;
  TF_RETURN_IF_ERROR(MergeSparseSoftmaxShapes(c, &batch, &classes));
  ShapeHandle stats;
  TF_RETURN_IF_ERROR(c->Concatenate(batch, c->Vector(focal::kSoftmaxRowStats), &stats));
  c->set_output(0, batch);
  c->set_output(1, stats);
  return absl::OkStatus();
}

absl::Status SparseSoftmaxFocalLossGradShape(InferenceContext* c) {
  ShapeHandle batch;
  DimensionHandle classes;
  TF_RETURN_IF_ERROR(MergeSparseSoftmaxShapes(c, &batch, &classes));
  ShapeHandle stats;
  TF_RETURN_IF_ERROR(c->Concatenate(batch, c->Vector(focal::kSoftmaxRowStats), &stats));
  TF_RETURN_IF_ERROR(c->Merge(c->input(kSoftmaxRowStats), stats, &stats));
  TF_RETURN_IF_ERROR(c->Merge(c->input(kSoftmaxLossGrad), batch, &batch));
  ShapeHandle logits_grad;
  TF_RETURN_IF_ERROR(c->Concatenate(batch, c->Vector(classes), &logits_grad));
  c->set_output(0, logits_grad);
  return absl::OkStatus();
}

// Dense softmax: labels [..., C] like logits.
absl::Status MergeDenseSoftmaxShapes(InferenceContext* c, ShapeHandle* logits, ShapeHandle* batch) {
  TF_RETURN_IF_ERROR(c->WithRankAtLeast(c->input(kSoftmaxLogits), 1, logits));
  if (!c->Merge(c->input(kSoftmaxLabels), *logits, logits).ok()) {
    return absl::InvalidArgumentError(absl::StrCat("labels must have the shape of logits; got labels ",
                                                   c->DebugString(c->input(kSoftmaxLabels)), " and logits ",
                                                   c->DebugString(c->input(kSoftmaxLogits))));
  }
  TF_RETURN_IF_ERROR(CheckAlphaAndScalars(c, c->Dim(*logits, -1), kSoftmaxGamma, kSoftmaxLabelSmoothing));
  return c->Subshape(*logits, 0, -1, batch);
}

absl::Status SoftmaxFocalLossShape(InferenceContext* c) {
  ShapeHandle logits, batch, stats;
  TF_RETURN_IF_ERROR(MergeDenseSoftmaxShapes(c, &logits, &batch));
  TF_RETURN_IF_ERROR(c->Concatenate(batch, c->Vector(focal::kSoftmaxRowStats), &stats));
  c->set_output(0, batch);
  c->set_output(1, stats);
  return absl::OkStatus();
}

absl::Status SoftmaxFocalLossGradShape(InferenceContext* c) {
  ShapeHandle logits, batch, stats;
  TF_RETURN_IF_ERROR(MergeDenseSoftmaxShapes(c, &logits, &batch));
  TF_RETURN_IF_ERROR(c->Concatenate(batch, c->Vector(focal::kSoftmaxRowStats), &stats));
  TF_RETURN_IF_ERROR(c->Merge(c->input(kSoftmaxRowStats), stats, &stats));
  TF_RETURN_IF_ERROR(c->Merge(c->input(kSoftmaxLossGrad), batch, &batch));
  c->set_output(0, logits);
  return absl::OkStatus();
}

// Sigmoid: labels like logits (any rank); alpha a scalar, empty (none) or one per last-axis column.
absl::Status MergeSigmoidShapes(InferenceContext* c, ShapeHandle* logits) {
  if (!c->Merge(c->input(kSigmoidLabels), c->input(kSigmoidLogits), logits).ok()) {
    return absl::InvalidArgumentError(absl::StrCat("labels must have the shape of logits; got labels ",
                                                   c->DebugString(c->input(kSigmoidLabels)), " and logits ",
                                                   c->DebugString(c->input(kSigmoidLogits))));
  }
  ShapeHandle alpha;
  if (!c->WithRankAtMost(c->input(kSigmoidAlpha), 1, &alpha).ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("alpha must be a scalar or a vector over the last axis; got shape ", c->DebugString(c->input(kSigmoidAlpha))));
  }
  if (c->RankKnown(alpha) && c->Rank(alpha) == 1 && c->ValueKnown(c->Dim(alpha, 0)) &&
      c->Value(c->Dim(alpha, 0)) != 0 && c->RankKnown(*logits)) {
    DimensionHandle merged;
    if (c->Rank(*logits) == 0) {
      return absl::InvalidArgumentError("alpha must be a scalar for scalar logits; got shape " + c->DebugString(alpha));
    }
    if (!c->Merge(c->Dim(alpha, 0), c->Dim(*logits, -1), &merged).ok()) {  // both known and different
      return absl::InvalidArgumentError(
          focal::alpha_length_error(c->Value(c->Dim(alpha, 0)), c->Value(c->Dim(*logits, -1)), /*sigmoid=*/true));
    }
  }
  for (int i = kSigmoidGamma; i <= kSigmoidLabelSmoothing; ++i) {
    ShapeHandle scalar;
    TF_RETURN_IF_ERROR(c->WithRank(c->input(i), 0, &scalar));
  }
  return absl::OkStatus();
}

absl::Status SigmoidFocalLossShape(InferenceContext* c) {
  ShapeHandle logits;
  TF_RETURN_IF_ERROR(MergeSigmoidShapes(c, &logits));
  bool sum_over_classes = false;
  TF_RETURN_IF_ERROR(c->GetAttr("sum_over_classes", &sum_over_classes));
  if (!sum_over_classes) {
    c->set_output(0, logits);
    return absl::OkStatus();
  }
  if (c->RankKnown(logits) && c->Rank(logits) == 0) {
    return absl::InvalidArgumentError(focal::kSumOverClassesOfScalarError);
  }
  ShapeHandle rows = c->UnknownShape();
  if (c->RankKnown(logits)) TF_RETURN_IF_ERROR(c->Subshape(logits, 0, -1, &rows));
  c->set_output(0, rows);
  return absl::OkStatus();
}

// loss_grad: the loss's shape, one value per row ([..., 1]) or a scalar (see SigmoidUpstream).
absl::Status SigmoidFocalLossGradShape(InferenceContext* c) {
  ShapeHandle logits;
  TF_RETURN_IF_ERROR(MergeSigmoidShapes(c, &logits));
  const ShapeHandle upstream = c->input(kSigmoidLossGrad);
  const bool scalar = c->RankKnown(upstream) && c->Rank(upstream) == 0;
  // [..., 1] against logits whose last dim is unknown: per row either way (for C = 1 the two
  // layouts coincide), so the gradient keeps the logits' last dim
  const bool per_row = c->RankKnown(upstream) && c->Rank(upstream) > 0 && c->ValueKnown(c->Dim(upstream, -1)) &&
                       c->Value(c->Dim(upstream, -1)) == 1 && c->RankKnown(logits) &&
                       c->Rank(logits) == c->Rank(upstream) &&
                       !(c->ValueKnown(c->Dim(logits, -1)) && c->Value(c->Dim(logits, -1)) == 1);
  if (per_row) {
    ShapeHandle upstream_rows, logits_rows, merged;
    TF_RETURN_IF_ERROR(c->Subshape(upstream, 0, -1, &upstream_rows));
    TF_RETURN_IF_ERROR(c->Subshape(logits, 0, -1, &logits_rows));
    TF_RETURN_IF_ERROR(c->Merge(upstream_rows, logits_rows, &merged));
    TF_RETURN_IF_ERROR(c->Concatenate(merged, c->Vector(c->Dim(logits, -1)), &logits));
  } else if (!scalar) {
    TF_RETURN_IF_ERROR(c->Merge(upstream, logits, &logits));
  }
  c->set_output(0, logits);
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

REGISTER_OP("FocalOp>SoftmaxFocalLoss")
    .Input("labels: T")
    .Input("logits: T")
    .Input("alpha: double")
    .Input("gamma: double")
    .Input("epsilon: double")
    .Input("label_smoothing: double")
    .Output("loss: T")
    .Output("row_stats: Tstats")
    .Attr("T: {half, bfloat16, float, double}")
    .Attr("Tstats: {float, double} = DT_FLOAT")
    .SetShapeFn(SoftmaxFocalLossShape)
    .Doc(R"doc(
Per-row softmax focal loss with dense (one-hot or soft) labels [..., C]:
-Σ_c y_c α_c (1-p_c)^γ log p_c, y smoothed to y(1-s) + s/C.
)doc");

REGISTER_OP("FocalOp>SoftmaxFocalLossGrad")
    .Input("labels: T")
    .Input("logits: T")
    .Input("alpha: double")
    .Input("gamma: double")
    .Input("epsilon: double")
    .Input("label_smoothing: double")
    .Input("row_stats: Tstats")
    .Input("loss_grad: T")
    .Output("logits_grad: T")
    .Attr("T: {half, bfloat16, float, double}")
    .Attr("Tstats: {float, double} = DT_FLOAT")
    .SetShapeFn(SoftmaxFocalLossGradShape)
    .Doc("Gradient of FocalOp>SoftmaxFocalLoss w.r.t. logits.");

REGISTER_OP("FocalOp>SigmoidFocalLoss")
    .Input("labels: T")
    .Input("logits: T")
    .Input("alpha: double")
    .Input("gamma: double")
    .Input("label_smoothing: double")
    .Output("loss: T")
    .Attr("T: {half, bfloat16, float, double}")
    .Attr("sum_over_classes: bool = false")
    .SetShapeFn(SigmoidFocalLossShape)
    .Doc(R"doc(
Elementwise sigmoid focal loss α_t (1-p_t)^γ BCE(y, x) with y smoothed to y(1-s) + s/2.
alpha: empty (α_t = 1), a scalar, or one value per column of the last axis.
sum_over_classes: output the loss summed over the last axis (shape logits.shape[:-1]) without
storing the elementwise loss; its gradient op takes one upstream value per row ([..., 1]).
)doc");

REGISTER_OP("FocalOp>SigmoidFocalLossGrad")
    .Input("labels: T")
    .Input("logits: T")
    .Input("alpha: double")
    .Input("gamma: double")
    .Input("label_smoothing: double")
    .Input("loss_grad: T")
    .Output("logits_grad: T")
    .Attr("T: {half, bfloat16, float, double}")
    .SetShapeFn(SigmoidFocalLossGradShape)
    .Doc(R"doc(
Gradient of FocalOp>SigmoidFocalLoss w.r.t. logits. loss_grad has the loss's shape, or is one
value per row of the last axis (shape [..., 1]) or one for every element (a scalar): the
broadcast is read, never materialised.
)doc");

}  // namespace focal_tf
