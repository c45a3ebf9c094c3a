// ffi_handlers.h — focal_op's XLA FFI handlers: the custom-call targets through which XLA runs
// the kernel core (ffi_handlers.cc). Framework-free: any XLA-based framework registers them
// under these names, for its CPU platform ("Host" in TensorFlow, "cpu" in JAX) and, in builds
// with CUDA, for "CUDA". The operands, results and attributes of each target are documented in
// docs/design.md ("XLA custom calls").
#pragma once

#include "xla/ffi/api/ffi.h"

namespace focal_xla {

// Custom-call target names: the softmax handlers serve sparse (int32/int64 labels) and dense
// labels alike, the label buffer's type says which.
inline constexpr const char kSoftmaxForwardTarget[] = "focal_op_softmax_forward";
inline constexpr const char kSoftmaxBackwardTarget[] = "focal_op_softmax_backward";
inline constexpr const char kSigmoidForwardTarget[] = "focal_op_sigmoid_forward";
inline constexpr const char kSigmoidBackwardTarget[] = "focal_op_sigmoid_backward";

}  // namespace focal_xla

// The CPU handlers (rows split over the runtime's intra-op thread pool).
XLA_FFI_DECLARE_HANDLER_SYMBOL(FocalOpSoftmaxForwardCpu);
XLA_FFI_DECLARE_HANDLER_SYMBOL(FocalOpSoftmaxBackwardCpu);
XLA_FFI_DECLARE_HANDLER_SYMBOL(FocalOpSigmoidForwardCpu);
XLA_FFI_DECLARE_HANDLER_SYMBOL(FocalOpSigmoidBackwardCpu);

#if defined(FOCAL_OP_WITH_CUDA)
// The CUDA handlers (the kernels on the call's stream; no host synchronisation).
XLA_FFI_DECLARE_HANDLER_SYMBOL(FocalOpSoftmaxForwardCuda);
XLA_FFI_DECLARE_HANDLER_SYMBOL(FocalOpSoftmaxBackwardCuda);
XLA_FFI_DECLARE_HANDLER_SYMBOL(FocalOpSigmoidForwardCuda);
XLA_FFI_DECLARE_HANDLER_SYMBOL(FocalOpSigmoidBackwardCuda);
#endif
