// common.h — what the NumPy (numpy_arrays.cc) and GPU-array (cuda_arrays.cc) entry points of
// focal_op._focal_core share: the dtype dispatch, the parameter filler with its checks, and the
// mapping of the core's status to Python exceptions.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>

#include "focal_args.h"
#include "validate.h"

namespace focal_py {

namespace py = pybind11;

// Calls body(T{}) for the logits type named `name` (NumPy's names: float16, bfloat16, float32,
// float64), over the core's one list of types.
template <typename Body>
auto dispatch_logits_type(const std::string& name, Body&& body) {
#define FOCAL_DISPATCH_TYPE(T) \
  if (name == focal::kTypeName<T>) return body(T{});
  FOCAL_FOR_EACH_FLOAT_TYPE(FOCAL_DISPATCH_TYPE)
#undef FOCAL_DISPATCH_TYPE
  throw py::type_error("logits must be float16, bfloat16, float32 or float64; got " + name);
}

inline focal::LabelKind sparse_label_kind(const std::string& name) {
  if (name == "int32") return focal::LabelKind::kSparseInt32;
  if (name == "int64") return focal::LabelKind::kSparseInt64;
  throw py::type_error("labels must be int32 or int64; got " + name);
}

// The largest finite value of the type the kernels compute logits of this dtype in.
inline double compute_max(const std::string& logits_type) {
  return logits_type == "float64" ? std::numeric_limits<double>::max() : std::numeric_limits<float>::max();
}

// The hyper-parameters of a softmax call, checked (ValueError); alpha (host or device memory, as
// alpha_on_host says) must outlive them. max_value: the compute type's largest value.
inline focal::SoftmaxFocalParams softmax_params(const double* alpha, int64_t alpha_size, double gamma, double epsilon,
                                                double label_smoothing, const std::optional<int64_t>& ignore_class,
                                                int64_t classes, bool alpha_on_host, double max_value) {
  focal::SoftmaxFocalParams params;
  params.gamma = gamma;
  params.epsilon = epsilon;
  params.label_smoothing = label_smoothing;
  params.alpha = alpha;
  params.alpha_size = alpha_size;
  params.has_ignore_class = ignore_class.has_value();
  params.ignore_class = ignore_class.value_or(0);
  const std::string error = focal::softmax_params_error(params, classes, alpha_on_host, max_value);
  if (!error.empty()) throw py::value_error(error);
  return params;
}

inline focal::SigmoidFocalParams sigmoid_params(const double* alpha, int64_t alpha_size, double gamma,
                                                double label_smoothing, int64_t columns, bool alpha_on_host,
                                                double max_value) {
  focal::SigmoidFocalParams params;
  params.gamma = gamma;
  params.label_smoothing = label_smoothing;
  params.alpha = alpha;
  params.alpha_size = alpha_size;
  const std::string error = focal::sigmoid_params_error(params, columns, alpha_on_host, max_value);
  if (!error.empty()) throw py::value_error(error);
  return params;
}

// The argument struct of a checked softmax call (NumPy or GPU arrays: the call's label kind,
// sizes and parameters; the arrays' data pointers); the caller sets the outputs.
template <typename T, typename Call>
focal::SoftmaxArgs<T> softmax_args(const Call& call, const void* logits, const void* labels) {
  focal::SoftmaxArgs<T> args;
  args.logits = static_cast<const T*>(logits);
  args.labels = labels;
  args.label_kind = call.label_kind;
  args.rows = call.rows;
  args.classes = call.classes;
  args.params = call.params;
  return args;
}

// ValueError for a label out of range (label_of(row) reads the label), RuntimeError for a failed
// launch.
template <typename LabelOf>
void throw_if_failed(const focal::Status& status, int64_t classes, LabelOf label_of) {
  if (status.code == focal::StatusCode::kInvalidArgument) {
    throw py::value_error(focal::label_out_of_range_error(label_of(status.bad_row), status.bad_row, classes));
  }
  if (status.code != focal::StatusCode::kOk) throw std::runtime_error(std::string("focal_op: ") + status.message);
}

inline void throw_if_failed(const focal::Status& status) {
  throw_if_failed(status, 0, [](int64_t) { return int64_t{0}; });
}

void define_numpy_entry_points(py::module_& m);
#if defined(FOCAL_OP_WITH_CUDA)
void define_cuda_entry_points(py::module_& m);
#endif

}  // namespace focal_py
