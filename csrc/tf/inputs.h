// inputs.h — the positions of the TensorFlow ops' inputs, named once for the op registrations'
// shape functions (ops.cc) and the kernels (kernels.cc).
#pragma once

namespace focal_tf {

// FocalOp>SparseSoftmaxFocalLoss, >SoftmaxFocalLoss and their Grad ops (row_stats and loss_grad:
// the gradient ops only).
enum SoftmaxInput {
  kSoftmaxLabels = 0,
  kSoftmaxLogits,
  kSoftmaxAlpha,
  kSoftmaxGamma,
  kSoftmaxEpsilon,
  kSoftmaxLabelSmoothing,
  kSoftmaxRowStats,
  kSoftmaxLossGrad,
};

// FocalOp>SigmoidFocalLoss and FocalOp>SigmoidFocalLossGrad (loss_grad: the gradient op only).
enum SigmoidInput {
  kSigmoidLabels = 0,
  kSigmoidLogits,
  kSigmoidAlpha,
  kSigmoidGamma,
  kSigmoidLabelSmoothing,
  kSigmoidLossGrad,
};

}  // namespace focal_tf
