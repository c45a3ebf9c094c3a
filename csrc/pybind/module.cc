// module.cc — focal_op's kernel core on NumPy arrays, without TensorFlow.
//
// The same CPU launchers the TensorFlow ops call, exposed as focal_op._focal_core so the kernels
// can be tested and benchmarked where TensorFlow is absent. Logits may be float16, bfloat16
// (ml_dtypes), float32 or float64; labels int32 or int64. Row stats are float32 (float64 for
// float64 logits), as in the TensorFlow op.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "focal_cpu.h"
#include "validate.h"

namespace py = pybind11;

namespace {

// Alpha as the core wants it: empty for None, one value for a float, C values for a vector.
std::vector<double> alpha_values(const py::object& alpha) {
  if (alpha.is_none()) return {};
  const auto array = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(alpha);
  if (!array) throw py::type_error("alpha must be None, a float or a 1-D sequence of floats");
  if (array.ndim() > 1) throw py::value_error("alpha must be a scalar or a vector of length C");
  return std::vector<double>(array.data(), array.data() + array.size());
}

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
                                                 const std::optional<int64_t>& ignore_class) {
  focal::SoftmaxFocalParams params;
  params.gamma = gamma;
  params.epsilon = epsilon;
  params.label_smoothing = label_smoothing;
  params.alpha = alpha.empty() ? nullptr : alpha.data();
  params.alpha_size = static_cast<int64_t>(alpha.size());
  params.has_ignore_class = ignore_class.has_value();
  params.ignore_class = ignore_class.value_or(0);
  const std::string error = focal::softmax_params_error(params, classes);
  if (!error.empty()) throw py::value_error(error);
  return params;
}

// The forward's row stats handed to a backward: [rows, 4] of the accumulation type.
template <typename Acc>
py::array_t<Acc, py::array::c_style> checked_row_stats(const py::array& row_stats, int64_t rows) {
  auto stats = py::array_t<Acc, py::array::c_style>::ensure(row_stats);
  if (!stats || stats.size() != rows * focal::kSoftmaxRowStats) {
    throw py::value_error("row_stats must be the forward's row stats (shape batch + (4,), matching dtype)");
  }
  return stats;
}

// The upstream gradient of a loss of `size` elements, in the logits' dtype.
py::array checked_loss_grad(const py::array& loss_grad_in, const py::array& logits, int64_t size) {
  py::array loss_grad = py::array::ensure(loss_grad_in, py::array::c_style);
  if (!loss_grad || !loss_grad.dtype().is(logits.dtype()) || loss_grad.size() != size) {
    throw py::value_error("loss_grad must have the loss's shape and the logits' dtype");
  }
  return loss_grad;
}

SoftmaxCall prepare_sparse_softmax(const py::array& labels_in, const py::array& logits_in, const py::object& alpha,
                                   double gamma, double epsilon, double label_smoothing,
                                   const std::optional<int64_t>& ignore_class) {
  SoftmaxCall call;
  call.logits = py::array::ensure(logits_in, py::array::c_style);
  call.labels = py::array::ensure(labels_in, py::array::c_style);
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
  call.params = checked_softmax_params(call.alpha, gamma, epsilon, label_smoothing, call.classes, ignore_class);
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

// Calls body(T{}, Label{}) for the arrays' element types.
template <typename Body>
auto dispatch_types(const py::array& labels, const py::array& logits, Body&& body) {
  const std::string label_type = dtype_name(labels);
  const std::string logit_type = dtype_name(logits);
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

// Calls body(T{}) for the logits' element type.
template <typename Body>
auto dispatch_float_type(const py::array& logits, Body&& body) {
  const std::string logit_type = dtype_name(logits);
  if (logit_type == "float32") return body(float{});
  if (logit_type == "float64") return body(double{});
  if (logit_type == "float16") return body(focal::float16_bits{});
  if (logit_type == "bfloat16") return body(focal::bfloat16_bits{});
  throw py::type_error("logits must be float16, bfloat16, float32 or float64; got " + logit_type);
}

// Labels and logits of the same shape; labels converted to the logits' dtype.
std::pair<py::array, py::array> same_shape_arrays(const py::array& labels_in, const py::array& logits_in) {
  py::array logits = py::array::ensure(logits_in, py::array::c_style);
  if (!logits) throw py::type_error("logits must be array-like");
  py::array labels = py::module_::import("numpy").attr("ascontiguousarray")(labels_in, logits.dtype());
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
  return {classes, rows, checked_softmax_params(alpha, gamma, epsilon, label_smoothing, classes, std::nullopt)};
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

// Sigmoid forward (loss_grad None) or backward, elementwise.
py::array sigmoid_elementwise(const py::array& labels_in, const py::array& logits_in, const py::object& loss_grad_in,
                              const py::object& alpha_in, double gamma, double label_smoothing) {
  auto [labels, logits] = same_shape_arrays(labels_in, logits_in);
  const std::vector<double> alpha = alpha_values(alpha_in);
  focal::SigmoidFocalParams params;
  params.gamma = gamma;
  params.label_smoothing = label_smoothing;
  params.alpha = alpha.empty() ? nullptr : alpha.data();
  params.alpha_size = static_cast<int64_t>(alpha.size());
  const int64_t columns = logits.ndim() > 0 ? logits.shape(logits.ndim() - 1) : 1;
  const std::string error = focal::sigmoid_params_error(params, columns);
  if (!error.empty()) throw py::value_error(error);
  py::array loss_grad;
  if (!loss_grad_in.is_none()) {
    loss_grad = checked_loss_grad(loss_grad_in, logits, logits.size());
    if (shape_of(loss_grad) != shape_of(logits)) throw py::value_error("loss_grad must have the logits' shape");
  }
  return dispatch_float_type(logits, [&](auto logit_tag) {
    using T = decltype(logit_tag);
    py::array out(logits.dtype(), shape_of(logits));
    const T* loss_grad_ptr = loss_grad_in.is_none() ? nullptr : static_cast<const T*>(loss_grad.data());
    {
      py::gil_scoped_release release;
      focal::sigmoid_focal_cpu(static_cast<const T*>(logits.data()), static_cast<const T*>(labels.data()),
                               loss_grad_ptr, columns, focal::RowRange{0, static_cast<int64_t>(logits.size())}, params,
                               static_cast<T*>(out.mutable_data()));
    }
    return out;
  });
}

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
         double label_smoothing) {
        return sigmoid_elementwise(labels, logits, py::none(), alpha, gamma, label_smoothing);
      },
      py::arg("labels"), py::arg("logits"), py::kw_only(), py::arg("alpha") = py::none(), py::arg("gamma") = 2.0,
      py::arg("label_smoothing") = 0.0, "Elementwise sigmoid focal loss.");
  m.def(
      "sigmoid_backward",
      [](const py::array& labels, const py::array& logits, const py::array& loss_grad, const py::object& alpha,
         double gamma, double label_smoothing) {
        return sigmoid_elementwise(labels, logits, loss_grad, alpha, gamma, label_smoothing);
      },
      py::arg("labels"), py::arg("logits"), py::arg("loss_grad"), py::kw_only(), py::arg("alpha") = py::none(),
      py::arg("gamma") = 2.0, py::arg("label_smoothing") = 0.0, "Sigmoid focal loss gradient w.r.t. logits.");
  m.def("cpu_isa", &focal::cpu_isa, "The instruction set the CPU kernels run with.");
  m.attr("ROW_STATS") = focal::kSoftmaxRowStats;
}
