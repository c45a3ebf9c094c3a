// cuda_arrays.cc — the CUDA launchers on GPU arrays that expose __cuda_array_interface__ (CuPy,
// PyTorch, Numba): the *_cuda functions of focal_op._focal_core. The caller allocates the outputs;
// nothing here synchronises. Labels outside [0, C) give NaN rows, as in the TensorFlow GPU ops.
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "common.h"
#include "focal_cuda.h"

namespace focal_py {
namespace {


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
    throw std::runtime_error(std::string("focal_op: no CUDA device available (") + focal::cuda_unavailable_reason() +
                             ")");
  }
}

// The softmax GPU call's arrays and parameters, checked.
struct DeviceSoftmaxCall {
  DeviceArray labels, logits;
  std::string type;  // the logits' element type
  std::vector<int64_t> batch;
  focal::LabelKind label_kind = focal::LabelKind::kDense;
  int64_t rows = 1, classes = 0;
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
  for (int64_t d : call.batch) call.rows *= d;
  if (dense) {
    check_same(call.labels, "labels", call.logits.shape, call.type);
  } else {
    if (call.labels.shape != call.batch) {
      throw py::value_error("labels must have the shape of logits without its last axis");
    }
    call.label_kind = sparse_label_kind(call.labels.type);
  }
  const auto [alpha_ptr, alpha_size] = device_alpha(alpha);
  call.params = softmax_params(alpha_ptr, alpha_size, gamma, epsilon, label_smoothing, ignore_class, call.classes,
                               /*alpha_on_host=*/false, compute_max(call.type));
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
  throw_if_failed(dispatch_logits_type(call.type, [&](auto logit_tag) {
    using T = decltype(logit_tag);
    focal::SoftmaxArgs<T> args = softmax_args<T>(call, call.logits.data, call.labels.data);
    args.loss = static_cast<T*>(loss.data);
    args.row_stats = static_cast<focal::acc_t<T>*>(stats.data);
    return focal::softmax_forward_cuda(args, cuda_stream(stream));
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
  throw_if_failed(dispatch_logits_type(call.type, [&](auto logit_tag) {
    using T = decltype(logit_tag);
    focal::SoftmaxArgs<T> args = softmax_args<T>(call, call.logits.data, call.labels.data);
    args.row_stats = static_cast<focal::acc_t<T>*>(stats.data);  // read only
    args.loss_grad = static_cast<const T*>(loss_grad.data);
    args.logits_grad = static_cast<T*>(grad.data);
    return focal::softmax_backward_cuda(args, cuda_stream(stream));
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
  const auto [alpha_ptr, alpha_size] = device_alpha(alpha);
  const int64_t columns = logits.shape.empty() ? 1 : logits.shape.back();
  const focal::SigmoidFocalParams params =
      sigmoid_params(alpha_ptr, alpha_size, gamma, label_smoothing, columns, /*alpha_on_host=*/false, compute_max(type));
  throw_if_failed(dispatch_logits_type(type, [&](auto logit_tag) {
    using T = decltype(logit_tag);
    focal::SigmoidArgs<T> args;
    args.logits = static_cast<const T*>(logits.data);
    args.labels = static_cast<const T*>(labels.data);
    args.columns = columns;
    args.rows = 1;  // a scalar is one row of one column
    for (size_t d = 0; d + 1 < logits.shape.size(); ++d) args.rows *= logits.shape[d];
    args.params = params;
    args.sum_over_classes = sum_over_classes;
    args.loss_grad = static_cast<const T*>(loss_grad_ptr);
    args.upstream = upstream;
    args.out = static_cast<T*>(out.data);
    return focal::sigmoid_cuda(args, cuda_stream(stream));
  }));
}

}  // namespace

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

}  // namespace focal_py
