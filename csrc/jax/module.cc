// module.cc — focal_op._focal_jax: the XLA FFI handlers of csrc/xla, compiled against jaxlib's
// copy of the FFI API and handed to JAX as capsules (focal_op/jax/_ffi.py registers them with
// jax.ffi.register_ffi_target). No TensorFlow: JAX keeps its own handler registry.
#include <pybind11/pybind11.h>

#include "ffi_handlers.h"

namespace py = pybind11;

PYBIND11_MODULE(_focal_jax, m) {
  m.doc() = "focal_op's XLA FFI handlers for JAX: targets() -> {target name: {platform: capsule}}";
  m.def("targets", [] {
    py::dict targets;
    const auto add = [&](const char* name, const char* platform, XLA_FFI_Handler* handler) {
      if (!targets.contains(name)) targets[name] = py::dict();
      targets[name].cast<py::dict>()[platform] = py::capsule(reinterpret_cast<void*>(handler));
    };
    add(focal_xla::kSoftmaxForwardTarget, "cpu", FocalOpSoftmaxForwardCpu);
    add(focal_xla::kSoftmaxBackwardTarget, "cpu", FocalOpSoftmaxBackwardCpu);
    add(focal_xla::kSigmoidForwardTarget, "cpu", FocalOpSigmoidForwardCpu);
    add(focal_xla::kSigmoidBackwardTarget, "cpu", FocalOpSigmoidBackwardCpu);
#if defined(FOCAL_OP_WITH_CUDA)
    add(focal_xla::kSoftmaxForwardTarget, "CUDA", FocalOpSoftmaxForwardCuda);
    add(focal_xla::kSoftmaxBackwardTarget, "CUDA", FocalOpSoftmaxBackwardCuda);
    add(focal_xla::kSigmoidForwardTarget, "CUDA", FocalOpSigmoidForwardCuda);
    add(focal_xla::kSigmoidBackwardTarget, "CUDA", FocalOpSigmoidBackwardCuda);
#endif
    return targets;
  });
}
