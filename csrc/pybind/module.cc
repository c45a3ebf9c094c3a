// module.cc — focal_op's kernel core on NumPy arrays (CPU) and on __cuda_array_interface__
// arrays (GPU, builds with CUDA), without TensorFlow.
//
// The same launchers the TensorFlow ops call, exposed as focal_op._focal_core so the kernels
// can be tested and benchmarked where TensorFlow is absent. Logits may be float16, bfloat16
// (ml_dtypes), float32 or float64; labels int32 or int64. Row stats are float32 (float64 for
// float64 logits), as in the TensorFlow op.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "focal_cpu.h"
#if defined(FOCAL_OP_WITH_CUDA)
#include "focal_cuda.h"
#endif
#include "validate.h"

namespace py = pybind11;

namespace {

// NumPy arrays as the kernels read them: C-contiguous and aligned to their element type. Any
// other array (a strided view, or a misaligned one such as a view at an odd byte offset) is
// copied first, so the kernels never load an element from a misaligned address.
constexpr int kKernelLayout = py::array::c_style | py::detail::npy_api::NPY_ARRAY_ALIGNED_;

py::array kernel_array(const py::handle& value) { return py::array::ensure(value, kKernelLayout); }

// Alpha as the core wants it: empty for None, one value for a float, C values for a vector.
std::vector<double> alpha_values(const py::object& alpha) {
  if (alpha.is_none()) return {};
  if (py::isinstance<py::bool_>(alpha) || py::isinstance<py::str>(alpha)) {
    throw py::type_error("alpha must be None, a float or a 1-D sequence of floats");
  }
  const auto array = py::array_t<double, kKernelLayout | py::array::forcecast>::ensure(alpha);
  if (!array) throw py::type_error("alpha must be None, a float or a 1-D sequence of floats");
  if (array.ndim() > 1) throw py::value_error("alpha must be a scalar or a vector of length C");
  if (array.size() == 0) throw py::value_error("alpha must not be empty (None means no alpha)");
  return std::vector<double>(array.data(), array.data() + array.size());
}

// The largest finite value of the type the kernels compute logits of this dtype in.
double compute_max(const std::string& logit_type) {
  return logit_type == "float64" ? std::numeric_limits<double>::max() : std::numeric_limits<float>::max();
}
double compute_max(const py::array& logits) { return compute_max(std::string(py::str(logits.dtype().attr("name")))); }

struct SoftmaxCall {
  py::array labels;
  py::array logits;
  int64_t rows = 0;
  int64_t classes = 0;
  std::vector<double> alpha;
  focal::SoftmaxFocalParams params;
  std::vector<py::ssize_t> batch_shape;
};

// The softmax parameters of a call, checked (named ValueError); alpha must outlive them.
focal::SoftmaxFocalParams checked_softmax_params(const std::vector<double>& alpha, double gamma, double epsilon,
                                                 double label_smoothing, int64_t classes,
                                                 const std::optional<int64_t>& ignore_class, double max_value) {
  focal::SoftmaxFocalParams params;
  params.gamma = gamma;
  params.epsilon = epsilon;
  params.label_smoothing = label_smoothing;
  params.alpha = alpha.empty() ? nullptr : alpha.data();
  params.alpha_size = static_cast<int64_t>(alpha.size());
  params.has_ignore_class = ignore_class.has_value();
  params.ignore_class = ignore_class.value_or(0);
  const std::string error = focal::softmax_params_error(params, classes, /*alpha_on_host=*/true, max_value);
  if (!error.empty()) throw py::value_error(error);
  return params;
}

// The forward's row stats handed to a backward: [rows, 4] of the accumulation type.
template <typename Acc>
py::array_t<Acc, kKernelLayout> checked_row_stats(const py::array& row_stats, int64_t rows) {
  auto stats = py::array_t<Acc, kKernelLayout>::ensure(row_stats);
  if (!stats || stats.size() != rows * focal::kSoftmaxRowStats) {
    throw py::value_error("row_stats must be the forward's row stats (shape batch + (4,), matching dtype)");
  }
  return stats;
}

// The upstream gradient of a loss of `size` elements, in the logits' dtype.
py::array checked_loss_grad(const py::array& loss_grad_in, const py::array& logits, int64_t size) {
  py::array loss_grad = kernel_array(loss_grad_in);
  if (!loss_grad || !loss_grad.dtype().is(logits.dtype()) || loss_grad.size() != size) {
    throw py::value_error("loss_grad must have the loss's shape and the logits' dtype");
  }
  return loss_grad;
}

SoftmaxCall prepare_sparse_softmax(const py::array& labels_in, const py::array& logits_in, const py::object& alpha,
                                   double gamma, double epsilon, double label_smoothing,
                                   const std::optional<int64_t>& ignore_class) {
  SoftmaxCall call;
  call.logits = kernel_array(logits_in);
  call.labels = kernel_array(labels_in);
  if (!call.logits || !call.labels) throw py::type_error("labels and logits must be array-like");
  if (call.logits.ndim() < 1) throw py::value_error("logits must have rank >= 1 ([..., C])");
  const py::ssize_t rank = call.logits.ndim();
  call.batch_shape.assign(call.logits.shape(), call.logits.shape() + rank - 1);
  const std::vector<py::ssize_t> label_shape(call.labels.shape(), call.labels.shape() + call.labels.ndim());
  if (label_shape != call.batch_shape) {
    throw py::value_error("labels must have the shape of logits without its last axis");
  }
  call.classes = call.logits.shape(rank - 1);
  call.rows = call.labels.size();
  call.alpha = alpha_values(alpha);
  call.params = checked_softmax_params(call.alpha, gamma, epsilon, label_smoothing, call.classes, ignore_class,
                                       compute_max(call.logits));
  return call;
}

// ValueError naming the label of the first out-of-range row a launcher reported.
template <typename Label>
void throw_if_label_out_of_range(const SoftmaxCall& call, int64_t bad_row) {
  if (bad_row < 0) return;
  const int64_t value = static_cast<const Label*>(call.labels.data())[bad_row];
  throw py::value_error(focal::label_out_of_range_error(value, bad_row, call.classes));
}

std::string dtype_name(const py::array& a) { return py::str(a.dtype().attr("name")); }

std::vector<py::ssize_t> with_stats_axis(std::vector<py::ssize_t> shape) {
  shape.push_back(focal::kSoftmaxRowStats);
  return shape;
}

// Calls body(T{}, Label{}) for element types named as NumPy names them.
template <typename Body>
auto dispatch_type_names(const std::string& label_type, const std::string& logit_type, Body&& body) {
  auto with_label = [&](auto logit_tag) {
    if (label_type == "int32") return body(logit_tag, int32_t{});
    if (label_type == "int64") return body(logit_tag, int64_t{});
    throw py::type_error("labels must be int32 or int64; got " + label_type);
  };
  if (logit_type == "float32") return with_label(float{});
  if (logit_type == "float64") return with_label(double{});
  if (logit_type == "float16") return with_label(focal::float16_bits{});
  if (logit_type == "bfloat16") return with_label(focal::bfloat16_bits{});
  throw py::type_error("logits must be float16, bfloat16, float32 or float64; got " + logit_type);
}

// Calls body(T{}) for a logits element type named as NumPy names it.
template <typename Body>
auto dispatch_float_type_name(const std::string& logit_type, Body&& body) {
  return dispatch_type_names("int32", logit_type, [&](auto logit_tag, auto) { return body(logit_tag); });
}

template <typename Body>
auto dispatch_types(const py::array& labels, const py::array& logits, Body&& body) {
  return dispatch_type_names(dtype_name(labels), dtype_name(logits), body);
}

template <typename Body>
auto dispatch_float_type(const py::array& logits, Body&& body) {
  return dispatch_float_type_name(dtype_name(logits), body);
}

// Labels and logits of the same shape; labels converted to the logits' dtype.
std::pair<py::array, py::array> same_shape_arrays(const py::array& labels_in, const py::array& logits_in) {
  py::array logits = kernel_array(logits_in);
  if (!logits) throw py::type_error("logits must be array-like");
  // numpy.require keeps 0-d arrays 0-d (ascontiguousarray would make them 1-d)
  py::array labels = py::module_::import("numpy").attr("require")(labels_in, logits.dtype(), "CA");
  const std::vector<py::ssize_t> a(labels.shape(), labels.shape() + labels.ndim());
  const std::vector<py::ssize_t> b(logits.shape(), logits.shape() + logits.ndim());
  if (a != b) throw py::value_error("labels must have the shape of logits");
  return {labels, logits};
}

std::vector<py::ssize_t> shape_of(const py::array& a) { return {a.shape(), a.shape() + a.ndim()}; }

py::tuple sparse_softmax_forward(const py::array& labels, const py::array& logits, const py::object& alpha,
                                 double gamma, double epsilon, double label_smoothing,
                                 std::optional<int64_t> ignore_class) {
  SoftmaxCall call = prepare_sparse_softmax(labels, logits, alpha, gamma, epsilon, label_smoothing, ignore_class);
  return dispatch_types(call.labels, call.logits, [&](auto logit_tag, auto label_tag) {
    using T = decltype(logit_tag);
    using Label = decltype(label_tag);
    using Acc = focal::acc_t<T>;
    py::array loss(call.logits.dtype(), call.batch_shape);
    py::array_t<Acc> stats(with_stats_axis(call.batch_shape));
    int64_t bad_row = -1;
    {
      py::gil_scoped_release release;
      bad_row = focal::sparse_softmax_focal_forward_cpu(
          static_cast<const T*>(call.logits.data()), static_cast<const Label*>(call.labels.data()), call.classes,
          focal::RowRange{0, call.rows}, call.params, static_cast<T*>(loss.mutable_data()), stats.mutable_data());
    }
    throw_if_label_out_of_range<Label>(call, bad_row);
    return py::tuple(py::make_tuple(loss, stats));
  });
}

py::array sparse_softmax_backward(const py::array& labels, const py::array& logits, const py::array& row_stats_in,
                                  const py::array& loss_grad_in, const py::object& alpha, double gamma, double epsilon,
                                  double label_smoothing, std::optional<int64_t> ignore_class) {
  SoftmaxCall call = prepare_sparse_softmax(labels, logits, alpha, gamma, epsilon, label_smoothing, ignore_class);
  return dispatch_types(call.labels, call.logits, [&](auto logit_tag, auto label_tag) {
    using T = decltype(logit_tag);
    using Label = decltype(label_tag);
    using Acc = focal::acc_t<T>;
    const auto stats = checked_row_stats<Acc>(row_stats_in, call.rows);
    const py::array loss_grad = checked_loss_grad(loss_grad_in, call.logits, call.rows);
    py::array grad(call.logits.dtype(),
                   std::vector<py::ssize_t>(call.logits.shape(), call.logits.shape() + call.logits.ndim()));
    int64_t bad_row = -1;
    {
      py::gil_scoped_release release;
      bad_row = focal::sparse_softmax_focal_backward_cpu(
          static_cast<const T*>(call.logits.data()), static_cast<const Label*>(call.labels.data()), stats.data(),
          static_cast<const T*>(loss_grad.data()), call.classes, focal::RowRange{0, call.rows}, call.params,
          static_cast<T*>(grad.mutable_data()));
    }
    throw_if_label_out_of_range<Label>(call, bad_row);
    return py::array(grad);
  });
}

// A dense softmax call's class count, row count (the batch's size, also when C = 0) and checked
// parameters; alpha must outlive them.
struct DenseSoftmaxCall {
  int64_t classes;
  int64_t rows;
  focal::SoftmaxFocalParams params;
};

DenseSoftmaxCall prepare_dense_softmax(const py::array& logits, const std::vector<double>& alpha, double gamma,
                                       double epsilon, double label_smoothing) {
  if (logits.ndim() < 1) throw py::value_error("logits must have rank >= 1 ([..., C])");
  const int64_t classes = logits.shape(logits.ndim() - 1);
  int64_t rows = 1;
  for (py::ssize_t d = 0; d + 1 < logits.ndim(); ++d) rows *= logits.shape(d);
  return {classes, rows,
          checked_softmax_params(alpha, gamma, epsilon, label_smoothing, classes, std::nullopt, compute_max(logits))};
}

py::tuple dense_softmax_forward(const py::array& labels_in, const py::array& logits_in, const py::object& alpha_in,
                                double gamma, double epsilon, double label_smoothing) {
  auto [labels, logits] = same_shape_arrays(labels_in, logits_in);
  const std::vector<double> alpha = alpha_values(alpha_in);
  const DenseSoftmaxCall call = prepare_dense_softmax(logits, alpha, gamma, epsilon, label_smoothing);
  const int64_t classes = call.classes;
  const int64_t rows = call.rows;
  const focal::SoftmaxFocalParams& params = call.params;
  std::vector<py::ssize_t> batch = shape_of(logits);
  batch.pop_back();
  return dispatch_float_type(logits, [&](auto logit_tag) {
    using T = decltype(logit_tag);
    using Acc = focal::acc_t<T>;
    py::array loss(logits.dtype(), batch);
    py::array_t<Acc> stats(with_stats_axis(batch));
    {
      py::gil_scoped_release release;
      focal::dense_softmax_focal_forward_cpu(static_cast<const T*>(logits.data()), static_cast<const T*>(labels.data()),
                                             classes, focal::RowRange{0, rows}, params,
                                             static_cast<T*>(loss.mutable_data()), stats.mutable_data());
    }
    return py::tuple(py::make_tuple(loss, stats));
  });
}

py::array dense_softmax_backward(const py::array& labels_in, const py::array& logits_in, const py::array& row_stats_in,
                                 const py::array& loss_grad_in, const py::object& alpha_in, double gamma,
                                 double epsilon, double label_smoothing) {
  auto [labels, logits] = same_shape_arrays(labels_in, logits_in);
  const std::vector<double> alpha = alpha_values(alpha_in);
  const DenseSoftmaxCall call = prepare_dense_softmax(logits, alpha, gamma, epsilon, label_smoothing);
  const int64_t classes = call.classes;
  const int64_t rows = call.rows;
  const focal::SoftmaxFocalParams& params = call.params;
  return dispatch_float_type(logits, [&](auto logit_tag) {
    using T = decltype(logit_tag);
    using Acc = focal::acc_t<T>;
    const auto stats = checked_row_stats<Acc>(row_stats_in, rows);
    const py::array loss_grad = checked_loss_grad(loss_grad_in, logits, rows);
    py::array grad(logits.dtype(), shape_of(logits));
    {
      py::gil_scoped_release release;
      focal::dense_softmax_focal_backward_cpu(static_cast<const T*>(logits.data()),
                                              static_cast<const T*>(labels.data()), stats.data(),
                                              static_cast<const T*>(loss_grad.data()), classes,
                                              focal::RowRange{0, rows}, params, static_cast<T*>(grad.mutable_data()));
    }
    return grad;
  });
}

// Sigmoid forward (loss_grad None) or backward, elementwise; the forward summed over the last
// axis with sum_over_classes.
py::array sigmoid_elementwise(const py::array& labels_in, const py::array& logits_in, const py::object& loss_grad_in,
                              const py::object& alpha_in, double gamma, double label_smoothing,
                              bool sum_over_classes = false) {
  auto [labels, logits] = same_shape_arrays(labels_in, logits_in);
  const std::vector<double> alpha = alpha_values(alpha_in);
  focal::SigmoidFocalParams params;
  params.gamma = gamma;
  params.label_smoothing = label_smoothing;
  params.alpha = alpha.empty() ? nullptr : alpha.data();
  params.alpha_size = static_cast<int64_t>(alpha.size());
  const int64_t columns = logits.ndim() > 0 ? logits.shape(logits.ndim() - 1) : 1;
  const std::string error = focal::sigmoid_params_error(params, columns, /*alpha_on_host=*/true, compute_max(logits));
  if (!error.empty()) throw py::value_error(error);
  py::array loss_grad;
  focal::SigmoidUpstream upstream = focal::SigmoidUpstream::kPerElement;
  if (!loss_grad_in.is_none()) {
    loss_grad = kernel_array(loss_grad_in);
    if (!loss_grad || !loss_grad.dtype().is(logits.dtype())) {
      throw py::value_error("loss_grad must be an array of the logits' dtype");
    }
    const std::string layout_error = focal::sigmoid_upstream_layout(shape_of(loss_grad), shape_of(logits), &upstream);
    if (!layout_error.empty()) throw py::value_error(layout_error);
  }
  if (sum_over_classes) {
    if (logits.ndim() == 0) throw py::value_error(focal::kSumOverClassesOfScalarError);
    std::vector<py::ssize_t> rows_shape = shape_of(logits);
    rows_shape.pop_back();
    return dispatch_float_type(logits, [&](auto logit_tag) {
      using T = decltype(logit_tag);
      py::array out(logits.dtype(), rows_shape);
      {
        py::gil_scoped_release release;
        focal::sigmoid_focal_row_sums_cpu(static_cast<const T*>(logits.data()), static_cast<const T*>(labels.data()),
                                          columns, focal::RowRange{0, static_cast<int64_t>(out.size())}, params,
                                          static_cast<T*>(out.mutable_data()));
      }
      return out;
    });
  }
  return dispatch_float_type(logits, [&](auto logit_tag) {
    using T = decltype(logit_tag);
    py::array out(logits.dtype(), shape_of(logits));
    const T* loss_grad_ptr = loss_grad_in.is_none() ? nullptr : static_cast<const T*>(loss_grad.data());
    {
      py::gil_scoped_release release;
      focal::sigmoid_focal_cpu(static_cast<const T*>(logits.data()), static_cast<const T*>(labels.data()),
                               loss_grad_ptr, columns, focal::RowRange{0, static_cast<int64_t>(logits.size())}, params,
                               static_cast<T*>(out.mutable_data()), upstream);
    }
    return out;
  });
}

#if defined(FOCAL_OP_WITH_CUDA)
// ---- GPU entry points: the CUDA launchers on __cuda_array_interface__ arrays ------------------
// The caller allocates the outputs (CuPy, PyTorch, ...); nothing here synchronises.

struct DeviceArray {
  void* data = nullptr;
  std::vector<int64_t> shape;
  std::string type;  // NumPy's name: float32, int64, ...; "raw16" for other 2-byte types
  int64_t size = 1;
};

std::string element_type_name(const std::string& typestr) {
  const std::string kind_and_size = typestr.substr(1);
  if (kind_and_size == "f2") return "float16";
  if (kind_and_size == "f4") return "float32";
  if (kind_and_size == "f8") return "float64";
  if (kind_and_size == "i4") return "int32";
  if (kind_and_size == "i8") return "int64";
  if (kind_and_size == "u2" || kind_and_size == "i2" || kind_and_size == "V2") return "raw16";
  return typestr;
}

int64_t item_size(const std::string& type) {
  if (type == "float16" || type == "raw16" || type == "bfloat16") return 2;
  if (type == "float32" || type == "int32") return 4;
  return 8;
}

// A C-contiguous, unmasked device array; read-only arrays are refused for outputs.
DeviceArray device_array(const py::object& array, const char* name, bool output) {
  if (!py::hasattr(array, "__cuda_array_interface__")) {
    throw py::type_error(std::string(name) +
                         " must be a GPU array exposing __cuda_array_interface__ (CuPy, PyTorch, Numba, ...)");
  }
  const py::dict interface = array.attr("__cuda_array_interface__");
  DeviceArray result;
  result.shape = interface["shape"].cast<std::vector<int64_t>>();
  result.type = element_type_name(interface["typestr"].cast<std::string>());
  for (int64_t d : result.shape) result.size *= d;
  const py::tuple data = interface["data"];
  result.data = reinterpret_cast<void*>(data[0].cast<uintptr_t>());
  if (output && data[1].cast<bool>()) throw py::value_error(std::string(name) + " is read-only");
  if (interface.contains("mask") && !interface["mask"].is_none()) {
    throw py::value_error(std::string(name) + " must not be a masked array");
  }
  if (interface.contains("strides") && !interface["strides"].is_none()) {
    const auto strides = interface["strides"].cast<std::vector<int64_t>>();
    int64_t expected = item_size(result.type);
    for (int64_t d = static_cast<int64_t>(result.shape.size()) - 1; d >= 0; --d) {
      if (result.shape[d] > 1 && strides[d] != expected) {
        throw py::value_error(std::string(name) + " must be C-contiguous");
      }
      expected *= result.shape[d];
    }
  }
  return result;
}

// The logits' element type: their own, or `dtype` ("bfloat16") for raw 16-bit data, which is how
// bfloat16 arrives from libraries whose __cuda_array_interface__ has no bfloat16.
std::string logits_type(const DeviceArray& logits, const std::optional<std::string>& dtype) {
  if (dtype.has_value()) {
    if (item_size(*dtype) != item_size(logits.type)) {
      throw py::value_error("dtype " + *dtype + " does not match the logits' element size");
    }
    return *dtype;
  }
  if (logits.type == "raw16") throw py::type_error("16-bit integer logits: pass dtype='bfloat16' for bfloat16 data");
  return logits.type;
}

void check_dtype(const DeviceArray& a, const char* name, const std::string& type) {
  if (a.type != type && !(a.type == "raw16" && item_size(type) == 2)) {
    throw py::type_error(std::string(name) + " must have the dtype " + type + "; got " + a.type);
  }
}

void check_same(const DeviceArray& a, const char* name, const std::vector<int64_t>& shape, const std::string& type) {
  if (a.shape != shape) throw py::value_error(std::string(name) + " has the wrong shape");
  check_dtype(a, name, type);
}

void* cuda_stream(const py::object& stream) {
  if (stream.is_none()) return nullptr;
  if (py::hasattr(stream, "ptr")) return reinterpret_cast<void*>(stream.attr("ptr").cast<uintptr_t>());  // CuPy
  if (py::hasattr(stream, "cuda_stream")) {                                                              // PyTorch
    return reinterpret_cast<void*>(stream.attr("cuda_stream").cast<uintptr_t>());
  }
  return reinterpret_cast<void*>(stream.cast<uintptr_t>());
}

// Alpha on the device: None, or float64 of length 1 or C (values are not read on the host).
std::pair<const double*, int64_t> device_alpha(const py::object& alpha) {
  if (alpha.is_none()) return {nullptr, 0};
  const DeviceArray a = device_array(alpha, "alpha", false);
  if (a.type != "float64" || a.shape.size() > 1) {
    throw py::type_error("alpha must be None or a float64 GPU array of length 1 or C");
  }
  if (a.size == 0) throw py::value_error("alpha must not be empty (None means no alpha)");
  return {static_cast<const double*>(a.data), a.size};
}

void require_device() {
  if (focal::cuda_device_count() == 0) {
    throw std::runtime_error("focal_op: no CUDA device available (" + focal::cuda_unavailable_reason() + ")");
  }
}

void throw_if_failed(const std::string& error) {
  if (!error.empty()) throw std::runtime_error("focal_op: " + error);
}

// The softmax GPU call's arrays and parameters, checked.
struct DeviceSoftmaxCall {
  DeviceArray labels, logits;
  std::string type;  // the logits' element type
  std::vector<int64_t> batch;
  int64_t rows = 0, classes = 0;
  focal::SoftmaxFocalParams params;
};

DeviceSoftmaxCall prepare_device_softmax(const py::object& labels, const py::object& logits, bool dense,
                                         const py::object& alpha, double gamma, double epsilon, double label_smoothing,
                                         const std::optional<int64_t>& ignore_class,
                                         const std::optional<std::string>& dtype) {
  require_device();
  DeviceSoftmaxCall call;
  call.logits = device_array(logits, "logits", false);
  call.labels = device_array(labels, "labels", false);
  call.type = logits_type(call.logits, dtype);
  if (call.logits.shape.empty()) throw py::value_error("logits must have rank >= 1 ([..., C])");
  call.batch.assign(call.logits.shape.begin(), call.logits.shape.end() - 1);
  call.classes = call.logits.shape.back();
  call.rows = 1;
  for (int64_t d : call.batch) call.rows *= d;
  if (dense) {
    check_same(call.labels, "labels", call.logits.shape, call.type);
  } else if (call.labels.shape != call.batch) {
    throw py::value_error("labels must have the shape of logits without its last axis");
  }
  const auto [alpha_ptr, alpha_size] = device_alpha(alpha);
  call.params.gamma = gamma;
  call.params.epsilon = epsilon;
  call.params.label_smoothing = label_smoothing;
  call.params.alpha = alpha_ptr;
  call.params.alpha_size = alpha_size;
  call.params.has_ignore_class = ignore_class.has_value();
  call.params.ignore_class = ignore_class.value_or(0);
  const std::string error =
      focal::softmax_params_error(call.params, call.classes, /*alpha_on_host=*/false, compute_max(call.type));
  if (!error.empty()) throw py::value_error(error);
  return call;
}

std::string stats_type_name(const std::string& logit_type) { return logit_type == "float64" ? "float64" : "float32"; }

void softmax_forward_cuda(const py::object& labels, const py::object& logits, const py::object& loss_out,
                          const py::object& row_stats_out, bool dense, const py::object& alpha, double gamma,
                          double epsilon, double label_smoothing, std::optional<int64_t> ignore_class,
                          const py::object& stream, std::optional<std::string> dtype) {
  const DeviceSoftmaxCall call =
      prepare_device_softmax(labels, logits, dense, alpha, gamma, epsilon, label_smoothing, ignore_class, dtype);
  const DeviceArray loss = device_array(loss_out, "loss", true);
  const DeviceArray stats = device_array(row_stats_out, "row_stats", true);
  check_same(loss, "loss", call.batch, call.type);
  std::vector<int64_t> stats_shape = call.batch;
  stats_shape.push_back(focal::kSoftmaxRowStats);
  check_same(stats, "row_stats", stats_shape, stats_type_name(call.type));
  const std::string label_type = dense ? "int32" : call.labels.type;
  throw_if_failed(dispatch_type_names(label_type, call.type, [&](auto logit_tag, auto label_tag) {
    using T = decltype(logit_tag);
    using Label = decltype(label_tag);
    if (dense) {
      return focal::dense_softmax_focal_forward_cuda(
          static_cast<const T*>(call.logits.data), static_cast<const T*>(call.labels.data), call.rows, call.classes,
          call.params, static_cast<T*>(loss.data), static_cast<focal::acc_t<T>*>(stats.data), cuda_stream(stream));
    }
    return focal::sparse_softmax_focal_forward_cuda(
        static_cast<const T*>(call.logits.data), static_cast<const Label*>(call.labels.data), call.rows, call.classes,
        call.params, static_cast<T*>(loss.data), static_cast<focal::acc_t<T>*>(stats.data), cuda_stream(stream));
  }));
}

void softmax_backward_cuda(const py::object& labels, const py::object& logits, const py::object& row_stats_in,
                           const py::object& loss_grad_in, const py::object& logits_grad_out, bool dense,
                           const py::object& alpha, double gamma, double epsilon, double label_smoothing,
                           std::optional<int64_t> ignore_class, const py::object& stream,
                           std::optional<std::string> dtype) {
  const DeviceSoftmaxCall call =
      prepare_device_softmax(labels, logits, dense, alpha, gamma, epsilon, label_smoothing, ignore_class, dtype);
  const DeviceArray stats = device_array(row_stats_in, "row_stats", false);
  const DeviceArray loss_grad = device_array(loss_grad_in, "loss_grad", false);
  const DeviceArray grad = device_array(logits_grad_out, "logits_grad", true);
  std::vector<int64_t> stats_shape = call.batch;
  stats_shape.push_back(focal::kSoftmaxRowStats);
  check_same(stats, "row_stats", stats_shape, stats_type_name(call.type));
  check_same(loss_grad, "loss_grad", call.batch, call.type);
  check_same(grad, "logits_grad", call.logits.shape, call.type);
  const std::string label_type = dense ? "int32" : call.labels.type;
  throw_if_failed(dispatch_type_names(label_type, call.type, [&](auto logit_tag, auto label_tag) {
    using T = decltype(logit_tag);
    using Label = decltype(label_tag);
    const auto* stats_ptr = static_cast<const focal::acc_t<T>*>(stats.data);
    if (dense) {
      return focal::dense_softmax_focal_backward_cuda(static_cast<const T*>(call.logits.data),
                                                      static_cast<const T*>(call.labels.data), stats_ptr,
                                                      static_cast<const T*>(loss_grad.data), call.rows, call.classes,
                                                      call.params, static_cast<T*>(grad.data), cuda_stream(stream));
    }
    return focal::sparse_softmax_focal_backward_cuda(static_cast<const T*>(call.logits.data),
                                                     static_cast<const Label*>(call.labels.data), stats_ptr,
                                                     static_cast<const T*>(loss_grad.data), call.rows, call.classes,
                                                     call.params, static_cast<T*>(grad.data), cuda_stream(stream));
  }));
}

// Sigmoid forward (loss_grad None: out = loss) or backward (out = logits_grad).
void sigmoid_cuda(const py::object& labels_in, const py::object& logits_in, const py::object& loss_grad_in,
                  const py::object& out_array, const py::object& alpha, double gamma, double label_smoothing,
                  const py::object& stream, std::optional<std::string> dtype, bool sum_over_classes = false) {
  require_device();
  const DeviceArray logits = device_array(logits_in, "logits", false);
  const DeviceArray labels = device_array(labels_in, "labels", false);
  const DeviceArray out = device_array(out_array, loss_grad_in.is_none() ? "loss" : "logits_grad", true);
  const std::string type = logits_type(logits, dtype);
  check_same(labels, "labels", logits.shape, type);
  if (sum_over_classes && logits.shape.empty()) {
    throw py::value_error(focal::kSumOverClassesOfScalarError);
  }
  const std::vector<int64_t> out_shape =
      sum_over_classes ? std::vector<int64_t>(logits.shape.begin(), logits.shape.end() - 1) : logits.shape;
  check_same(out, "output", out_shape, type);
  const void* loss_grad_ptr = nullptr;
  focal::SigmoidUpstream upstream = focal::SigmoidUpstream::kPerElement;
  if (!loss_grad_in.is_none()) {
    const DeviceArray loss_grad = device_array(loss_grad_in, "loss_grad", false);
    const std::string layout_error = focal::sigmoid_upstream_layout(loss_grad.shape, logits.shape, &upstream);
    if (!layout_error.empty()) throw py::value_error(layout_error);
    check_dtype(loss_grad, "loss_grad", type);
    loss_grad_ptr = loss_grad.data;
  }
  focal::SigmoidFocalParams params;
  params.gamma = gamma;
  params.label_smoothing = label_smoothing;
  std::tie(params.alpha, params.alpha_size) = device_alpha(alpha);
  const int64_t columns = logits.shape.empty() ? 1 : logits.shape.back();
  const std::string error = focal::sigmoid_params_error(params, columns, /*alpha_on_host=*/false, compute_max(type));
  if (!error.empty()) throw py::value_error(error);
  throw_if_failed(dispatch_float_type_name(type, [&](auto logit_tag) {
    using T = decltype(logit_tag);
    if (sum_over_classes) {
      return focal::sigmoid_focal_row_sums_cuda(static_cast<const T*>(logits.data), static_cast<const T*>(labels.data),
                                                out.size, columns, params, static_cast<T*>(out.data),
                                                cuda_stream(stream));
    }
    return focal::sigmoid_focal_cuda(static_cast<const T*>(logits.data), static_cast<const T*>(labels.data),
                                     static_cast<const T*>(loss_grad_ptr), logits.size, columns, params,
                                     static_cast<T*>(out.data), cuda_stream(stream), upstream);
  }));
}

void define_cuda_entry_points(py::module_& m) {
  m.def(
      "sparse_softmax_forward_cuda",
      [](const py::object& labels, const py::object& logits, const py::object& loss, const py::object& row_stats,
         const py::object& alpha, double gamma, double epsilon, double label_smoothing,
         std::optional<int64_t> ignore_class, const py::object& stream, std::optional<std::string> dtype) {
        softmax_forward_cuda(labels, logits, loss, row_stats, false, alpha, gamma, epsilon, label_smoothing,
                             ignore_class, stream, dtype);
      },
      py::arg("labels"), py::arg("logits"), py::arg("loss"), py::arg("row_stats"), py::kw_only(),
      py::arg("alpha") = py::none(), py::arg("gamma") = 2.0, py::arg("epsilon") = 0.0, py::arg("label_smoothing") = 0.0,
      py::arg("ignore_class") = py::none(), py::arg("stream") = py::none(), py::arg("dtype") = py::none(),
      "Sparse softmax focal loss forward on GPU arrays: writes loss [...] and row_stats [..., 4].");
  m.def(
      "sparse_softmax_backward_cuda",
      [](const py::object& labels, const py::object& logits, const py::object& row_stats, const py::object& loss_grad,
         const py::object& logits_grad, const py::object& alpha, double gamma, double epsilon, double label_smoothing,
         std::optional<int64_t> ignore_class, const py::object& stream, std::optional<std::string> dtype) {
        softmax_backward_cuda(labels, logits, row_stats, loss_grad, logits_grad, false, alpha, gamma, epsilon,
                              label_smoothing, ignore_class, stream, dtype);
      },
      py::arg("labels"), py::arg("logits"), py::arg("row_stats"), py::arg("loss_grad"), py::arg("logits_grad"),
      py::kw_only(), py::arg("alpha") = py::none(), py::arg("gamma") = 2.0, py::arg("epsilon") = 0.0,
      py::arg("label_smoothing") = 0.0, py::arg("ignore_class") = py::none(), py::arg("stream") = py::none(),
      py::arg("dtype") = py::none(), "Sparse softmax focal loss gradient on GPU arrays: writes logits_grad.");
  m.def(
      "dense_softmax_forward_cuda",
      [](const py::object& labels, const py::object& logits, const py::object& loss, const py::object& row_stats,
         const py::object& alpha, double gamma, double epsilon, double label_smoothing, const py::object& stream,
         std::optional<std::string> dtype) {
        softmax_forward_cuda(labels, logits, loss, row_stats, true, alpha, gamma, epsilon, label_smoothing,
                             std::nullopt, stream, dtype);
      },
      py::arg("labels"), py::arg("logits"), py::arg("loss"), py::arg("row_stats"), py::kw_only(),
      py::arg("alpha") = py::none(), py::arg("gamma") = 2.0, py::arg("epsilon") = 0.0, py::arg("label_smoothing") = 0.0,
      py::arg("stream") = py::none(), py::arg("dtype") = py::none(),
      "Dense-label softmax focal loss forward on GPU arrays.");
  m.def(
      "dense_softmax_backward_cuda",
      [](const py::object& labels, const py::object& logits, const py::object& row_stats, const py::object& loss_grad,
         const py::object& logits_grad, const py::object& alpha, double gamma, double epsilon, double label_smoothing,
         const py::object& stream, std::optional<std::string> dtype) {
        softmax_backward_cuda(labels, logits, row_stats, loss_grad, logits_grad, true, alpha, gamma, epsilon,
                              label_smoothing, std::nullopt, stream, dtype);
      },
      py::arg("labels"), py::arg("logits"), py::arg("row_stats"), py::arg("loss_grad"), py::arg("logits_grad"),
      py::kw_only(), py::arg("alpha") = py::none(), py::arg("gamma") = 2.0, py::arg("epsilon") = 0.0,
      py::arg("label_smoothing") = 0.0, py::arg("stream") = py::none(), py::arg("dtype") = py::none(),
      "Dense-label softmax focal loss gradient on GPU arrays.");
  m.def(
      "sigmoid_forward_cuda",
      [](const py::object& labels, const py::object& logits, const py::object& loss, const py::object& alpha,
         double gamma, double label_smoothing, const py::object& stream, std::optional<std::string> dtype,
         bool sum_over_classes) {
        sigmoid_cuda(labels, logits, py::none(), loss, alpha, gamma, label_smoothing, stream, dtype, sum_over_classes);
      },
      py::arg("labels"), py::arg("logits"), py::arg("loss"), py::kw_only(), py::arg("alpha") = py::none(),
      py::arg("gamma") = 2.0, py::arg("label_smoothing") = 0.0, py::arg("stream") = py::none(),
      py::arg("dtype") = py::none(), py::arg("sum_over_classes") = false,
      "Elementwise sigmoid focal loss on GPU arrays (loss of shape logits.shape[:-1], summed over the last axis, "
      "with sum_over_classes).");
  m.def(
      "sigmoid_backward_cuda",
      [](const py::object& labels, const py::object& logits, const py::object& loss_grad, const py::object& logits_grad,
         const py::object& alpha, double gamma, double label_smoothing, const py::object& stream,
         std::optional<std::string> dtype) {
        sigmoid_cuda(labels, logits, loss_grad, logits_grad, alpha, gamma, label_smoothing, stream, dtype);
      },
      py::arg("labels"), py::arg("logits"), py::arg("loss_grad"), py::arg("logits_grad"), py::kw_only(),
      py::arg("alpha") = py::none(), py::arg("gamma") = 2.0, py::arg("label_smoothing") = 0.0,
      py::arg("stream") = py::none(), py::arg("dtype") = py::none(), "Sigmoid focal loss gradient on GPU arrays; loss_grad: the logits' shape, [..., 1] or a scalar.");
  m.def("cuda_device_count", &focal::cuda_device_count, "CUDA devices the runtime sees (0 without GPU or driver).");
  m.def("softmax_threads_per_row", &focal::softmax_threads_per_row,
        "Threads per softmax row the CUDA kernels use for C classes (256: a block per row).");
}
#endif  // FOCAL_OP_WITH_CUDA

}  // namespace

PYBIND11_MODULE(_focal_core, m) {
  m.doc() = "focal_op's framework-free kernel core on NumPy arrays (CPU).";
  m.def("sparse_softmax_forward", &sparse_softmax_forward, py::arg("labels"), py::arg("logits"), py::kw_only(),
        py::arg("alpha") = py::none(), py::arg("gamma") = 2.0, py::arg("epsilon") = 0.0,
        py::arg("label_smoothing") = 0.0, py::arg("ignore_class") = py::none(),
        "Sparse softmax focal loss forward: returns (loss, row_stats).");
  m.def("sparse_softmax_backward", &sparse_softmax_backward, py::arg("labels"), py::arg("logits"), py::arg("row_stats"),
        py::arg("loss_grad"), py::kw_only(), py::arg("alpha") = py::none(), py::arg("gamma") = 2.0,
        py::arg("epsilon") = 0.0, py::arg("label_smoothing") = 0.0, py::arg("ignore_class") = py::none(),
        "Sparse softmax focal loss gradient w.r.t. logits.");
  m.def("dense_softmax_forward", &dense_softmax_forward, py::arg("labels"), py::arg("logits"), py::kw_only(),
        py::arg("alpha") = py::none(), py::arg("gamma") = 2.0, py::arg("epsilon") = 0.0,
        py::arg("label_smoothing") = 0.0, "Dense-label softmax focal loss forward: returns (loss, row_stats).");
  m.def("dense_softmax_backward", &dense_softmax_backward, py::arg("labels"), py::arg("logits"), py::arg("row_stats"),
        py::arg("loss_grad"), py::kw_only(), py::arg("alpha") = py::none(), py::arg("gamma") = 2.0,
        py::arg("epsilon") = 0.0, py::arg("label_smoothing") = 0.0,
        "Dense-label softmax focal loss gradient w.r.t. logits.");
  m.def(
      "sigmoid_forward",
      [](const py::array& labels, const py::array& logits, const py::object& alpha, double gamma,
         double label_smoothing, bool sum_over_classes) {
        return sigmoid_elementwise(labels, logits, py::none(), alpha, gamma, label_smoothing, sum_over_classes);
      },
      py::arg("labels"), py::arg("logits"), py::kw_only(), py::arg("alpha") = py::none(), py::arg("gamma") = 2.0,
      py::arg("label_smoothing") = 0.0, py::arg("sum_over_classes") = false,
      "Elementwise sigmoid focal loss (summed over the last axis with sum_over_classes).");
  m.def(
      "sigmoid_backward",
      [](const py::array& labels, const py::array& logits, const py::array& loss_grad, const py::object& alpha,
         double gamma, double label_smoothing) {
        return sigmoid_elementwise(labels, logits, loss_grad, alpha, gamma, label_smoothing);
      },
      py::arg("labels"), py::arg("logits"), py::arg("loss_grad"), py::kw_only(), py::arg("alpha") = py::none(),
      py::arg("gamma") = 2.0, py::arg("label_smoothing") = 0.0, "Sigmoid focal loss gradient w.r.t. logits; loss_grad: the logits' shape, [..., 1] or a scalar.");
  m.def("cpu_isa", &focal::cpu_isa, "The instruction set the CPU kernels run with.");
  m.attr("ROW_STATS") = focal::kSoftmaxRowStats;
#if defined(FOCAL_OP_WITH_CUDA)
  m.attr("WITH_CUDA") = true;
  define_cuda_entry_points(m);
#else
  m.attr("WITH_CUDA") = false;
#endif
}
