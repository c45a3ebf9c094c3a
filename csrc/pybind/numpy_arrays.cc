// numpy_arrays.cc — the CPU launchers on NumPy arrays: sparse_softmax_*, dense_softmax_*,
// sigmoid_* of focal_op._focal_core. Logits may be float16, bfloat16 (ml_dtypes), float32 or
// float64, sparse labels int32 or int64; row stats are float32 (float64 for float64 logits), as
// in the TensorFlow op. One thread; the GIL is released while the kernels run.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <vector>

#include "common.h"
#include "focal_cpu.h"

namespace focal_py {
namespace {

// NumPy arrays as the kernels read them: C-contiguous and aligned to their element type. Any
// other array (a strided view, or a misaligned one such as a view at an odd byte offset) is
// copied first, so the kernels never load an element from a misaligned address.
constexpr int kKernelLayout = py::array::c_style | py::detail::npy_api::NPY_ARRAY_ALIGNED_;

py::array kernel_array(const py::handle& value, const char* name) {
  py::array array = py::array::ensure(value, kKernelLayout);
  if (!array) throw py::type_error(std::string(name) + " must be array-like");
  return array;
}

std::string dtype_name(const py::array& a) { return py::str(a.dtype().attr("name")); }

std::vector<py::ssize_t> shape_of(const py::array& a) { return {a.shape(), a.shape() + a.ndim()}; }

// Alpha as the core wants it: empty for None, one value for a number, C values for a vector.
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

// A softmax call's arrays, shapes and checked parameters (alpha owned here).
struct SoftmaxCall {
  py::array labels, logits;
  std::vector<py::ssize_t> batch;
  std::vector<double> alpha;
  std::string type;
  focal::LabelKind label_kind = focal::LabelKind::kDense;
  int64_t rows = 1, classes = 0;
  focal::SoftmaxFocalParams params;
};

SoftmaxCall prepare_softmax(const py::array& labels_in, const py::array& logits_in, bool dense,
                            const py::object& alpha, double gamma, double epsilon, double label_smoothing,
                            const std::optional<int64_t>& ignore_class) {
  SoftmaxCall call;
  call.logits = kernel_array(logits_in, "logits");
  if (call.logits.ndim() < 1) throw py::value_error("logits must have rank >= 1 ([..., C])");
  call.type = dtype_name(call.logits);
  call.batch = shape_of(call.logits);
  call.batch.pop_back();
  call.classes = call.logits.shape(call.logits.ndim() - 1);
  for (py::ssize_t d : call.batch) call.rows *= d;
  if (dense) {
    // numpy.require converts the labels to the logits' dtype (and keeps 0-d arrays 0-d)
    call.labels = py::module_::import("numpy").attr("require")(labels_in, call.logits.dtype(), "CA");
    if (shape_of(call.labels) != shape_of(call.logits)) throw py::value_error("labels must have the shape of logits");
  } else {
    call.labels = kernel_array(labels_in, "labels");
    if (shape_of(call.labels) != call.batch) {
      throw py::value_error("labels must have the shape of logits without its last axis");
    }
    call.label_kind = sparse_label_kind(dtype_name(call.labels));
  }
  call.alpha = alpha_values(alpha);
  call.params = softmax_params(call.alpha.empty() ? nullptr : call.alpha.data(), static_cast<int64_t>(call.alpha.size()),
                               gamma, epsilon, label_smoothing, ignore_class, call.classes, true,
                               compute_max(call.type));
  return call;
}

void throw_if_softmax_failed(const focal::Status& status, const SoftmaxCall& call) {
  throw_if_failed(status, call.classes, [&](int64_t row) {
    return call.label_kind == focal::LabelKind::kSparseInt32 ? int64_t{static_cast<const int32_t*>(call.labels.data())[row]}
                                                            : static_cast<const int64_t*>(call.labels.data())[row];
  });
}

py::tuple softmax_forward(const py::array& labels, const py::array& logits, bool dense, const py::object& alpha,
                          double gamma, double epsilon, double label_smoothing, std::optional<int64_t> ignore_class) {
  const SoftmaxCall call = prepare_softmax(labels, logits, dense, alpha, gamma, epsilon, label_smoothing, ignore_class);
  return dispatch_logits_type(call.type, [&](auto logit_tag) {
    using T = decltype(logit_tag);
    using Acc = focal::acc_t<T>;
    py::array loss(call.logits.dtype(), call.batch);
    std::vector<py::ssize_t> stats_shape = call.batch;
    stats_shape.push_back(focal::kSoftmaxRowStats);
    py::array_t<Acc> stats(stats_shape);
    focal::SoftmaxArgs<T> args = softmax_args<T>(call, call.logits.data(), call.labels.data());
    args.loss = static_cast<T*>(loss.mutable_data());
    args.row_stats = stats.mutable_data();
    focal::Status status;
    {
      py::gil_scoped_release release;
      status = focal::softmax_forward_cpu(args, focal::RowRange{0, call.rows});
    }
    throw_if_softmax_failed(status, call);
    return py::tuple(py::make_tuple(loss, stats));
  });
}

py::array softmax_backward(const py::array& labels, const py::array& logits, const py::array& row_stats,
                           const py::array& loss_grad_in, bool dense, const py::object& alpha, double gamma,
                           double epsilon, double label_smoothing, std::optional<int64_t> ignore_class) {
  const SoftmaxCall call = prepare_softmax(labels, logits, dense, alpha, gamma, epsilon, label_smoothing, ignore_class);
  return dispatch_logits_type(call.type, [&](auto logit_tag) {
    using T = decltype(logit_tag);
    using Acc = focal::acc_t<T>;
    const auto stats = py::array_t<Acc, kKernelLayout>::ensure(row_stats);
    if (!stats || stats.size() != call.rows * focal::kSoftmaxRowStats) {
      throw py::value_error("row_stats must be the forward's row stats (shape batch + (4,), matching dtype)");
    }
    const py::array loss_grad = kernel_array(loss_grad_in, "loss_grad");
    if (!loss_grad.dtype().is(call.logits.dtype()) || loss_grad.size() != call.rows) {
      throw py::value_error("loss_grad must have the loss's shape and the logits' dtype");
    }
    py::array grad(call.logits.dtype(), shape_of(call.logits));
    focal::SoftmaxArgs<T> args = softmax_args<T>(call, call.logits.data(), call.labels.data());
    args.row_stats = const_cast<Acc*>(stats.data());  // read only
    args.loss_grad = static_cast<const T*>(loss_grad.data());
    args.logits_grad = static_cast<T*>(grad.mutable_data());
    focal::Status status;
    {
      py::gil_scoped_release release;
      status = focal::softmax_backward_cpu(args, focal::RowRange{0, call.rows});
    }
    throw_if_softmax_failed(status, call);
    return grad;
  });
}

// Sigmoid forward (loss_grad None) or backward, elementwise; the forward summed over the last
// axis with sum_over_classes.
py::array sigmoid(const py::array& labels_in, const py::array& logits_in, const py::object& loss_grad_in,
                  const py::object& alpha_in, double gamma, double label_smoothing, bool sum_over_classes) {
  const py::array logits = kernel_array(logits_in, "logits");
  const py::array labels = py::module_::import("numpy").attr("require")(labels_in, logits.dtype(), "CA");
  if (shape_of(labels) != shape_of(logits)) throw py::value_error("labels must have the shape of logits");
  const std::string type = dtype_name(logits);
  const std::vector<double> alpha = alpha_values(alpha_in);
  const int64_t columns = logits.ndim() > 0 ? logits.shape(logits.ndim() - 1) : 1;
  const focal::SigmoidFocalParams params = sigmoid_params(alpha.empty() ? nullptr : alpha.data(),
                                                          static_cast<int64_t>(alpha.size()), gamma, label_smoothing,
                                                          columns, true, compute_max(type));
  py::array loss_grad;
  focal::SigmoidUpstream upstream = focal::SigmoidUpstream::kPerElement;
  if (!loss_grad_in.is_none()) {
    loss_grad = kernel_array(loss_grad_in, "loss_grad");
    if (!loss_grad.dtype().is(logits.dtype())) throw py::value_error("loss_grad must be an array of the logits' dtype");
    const std::string error = focal::sigmoid_upstream_layout(shape_of(loss_grad), shape_of(logits), &upstream);
    if (!error.empty()) throw py::value_error(error);
  }
  std::vector<py::ssize_t> out_shape = shape_of(logits);
  if (sum_over_classes) {
    if (logits.ndim() == 0) throw py::value_error(focal::kSumOverClassesOfScalarError);
    out_shape.pop_back();
  }
  return dispatch_logits_type(type, [&](auto logit_tag) {
    using T = decltype(logit_tag);
    py::array out(logits.dtype(), out_shape);
    focal::SigmoidArgs<T> args;
    args.logits = static_cast<const T*>(logits.data());
    args.labels = static_cast<const T*>(labels.data());
    args.columns = columns;
    args.rows = 1;  // a scalar is one row of one column
    for (py::ssize_t d = 0; d + 1 < logits.ndim(); ++d) args.rows *= logits.shape(d);
    args.params = params;
    args.sum_over_classes = sum_over_classes;
    args.loss_grad = loss_grad_in.is_none() ? nullptr : static_cast<const T*>(loss_grad.data());
    args.upstream = upstream;
    args.out = static_cast<T*>(out.mutable_data());
    focal::Status status;
    {
      py::gil_scoped_release release;
      status = focal::sigmoid_cpu(args, focal::RowRange{0, focal::sigmoid_work_items(args)});
    }
    throw_if_failed(status);
    return out;
  });
}

}  // namespace

void define_numpy_entry_points(py::module_& m) {
  m.def(
      "sparse_softmax_forward",
      [](const py::array& labels, const py::array& logits, const py::object& alpha, double gamma, double epsilon,
         double label_smoothing, std::optional<int64_t> ignore_class) {
        return softmax_forward(labels, logits, false, alpha, gamma, epsilon, label_smoothing, ignore_class);
      },
      py::arg("labels"), py::arg("logits"), py::kw_only(), py::arg("alpha") = py::none(), py::arg("gamma") = 2.0,
      py::arg("epsilon") = 0.0, py::arg("label_smoothing") = 0.0, py::arg("ignore_class") = py::none(),
      "Sparse softmax focal loss forward: returns (loss, row_stats).");
  m.def(
      "sparse_softmax_backward",
      [](const py::array& labels, const py::array& logits, const py::array& row_stats, const py::array& loss_grad,
         const py::object& alpha, double gamma, double epsilon, double label_smoothing,
         std::optional<int64_t> ignore_class) {
        return softmax_backward(labels, logits, row_stats, loss_grad, false, alpha, gamma, epsilon, label_smoothing,
                                ignore_class);
      },
      py::arg("labels"), py::arg("logits"), py::arg("row_stats"), py::arg("loss_grad"), py::kw_only(),
      py::arg("alpha") = py::none(), py::arg("gamma") = 2.0, py::arg("epsilon") = 0.0,
      py::arg("label_smoothing") = 0.0, py::arg("ignore_class") = py::none(),
      "Sparse softmax focal loss gradient w.r.t. logits.");
  m.def(
      "dense_softmax_forward",
      [](const py::array& labels, const py::array& logits, const py::object& alpha, double gamma, double epsilon,
         double label_smoothing) {
        return softmax_forward(labels, logits, true, alpha, gamma, epsilon, label_smoothing, std::nullopt);
      },
      py::arg("labels"), py::arg("logits"), py::kw_only(), py::arg("alpha") = py::none(), py::arg("gamma") = 2.0,
      py::arg("epsilon") = 0.0, py::arg("label_smoothing") = 0.0,
      "Dense-label softmax focal loss forward: returns (loss, row_stats).");
  m.def(
      "dense_softmax_backward",
      [](const py::array& labels, const py::array& logits, const py::array& row_stats, const py::array& loss_grad,
         const py::object& alpha, double gamma, double epsilon, double label_smoothing) {
        return softmax_backward(labels, logits, row_stats, loss_grad, true, alpha, gamma, epsilon, label_smoothing,
                                std::nullopt);
      },
      py::arg("labels"), py::arg("logits"), py::arg("row_stats"), py::arg("loss_grad"), py::kw_only(),
      py::arg("alpha") = py::none(), py::arg("gamma") = 2.0, py::arg("epsilon") = 0.0,
      py::arg("label_smoothing") = 0.0, "Dense-label softmax focal loss gradient w.r.t. logits.");
  m.def(
      "sigmoid_forward",
      [](const py::array& labels, const py::array& logits, const py::object& alpha, double gamma,
         double label_smoothing, bool sum_over_classes) {
        return sigmoid(labels, logits, py::none(), alpha, gamma, label_smoothing, sum_over_classes);
      },
      py::arg("labels"), py::arg("logits"), py::kw_only(), py::arg("alpha") = py::none(), py::arg("gamma") = 2.0,
      py::arg("label_smoothing") = 0.0, py::arg("sum_over_classes") = false,
      "Elementwise sigmoid focal loss (summed over the last axis with sum_over_classes).");
  m.def(
      "sigmoid_backward",
      [](const py::array& labels, const py::array& logits, const py::array& loss_grad, const py::object& alpha,
         double gamma, double label_smoothing) {
        return sigmoid(labels, logits, loss_grad, alpha, gamma, label_smoothing, false);
      },
      py::arg("labels"), py::arg("logits"), py::arg("loss_grad"), py::kw_only(), py::arg("alpha") = py::none(),
      py::arg("gamma") = 2.0, py::arg("label_smoothing") = 0.0,
      "Sigmoid focal loss gradient w.r.t. logits; loss_grad: the logits' shape, [..., 1] or a scalar.");
}

}  // namespace focal_py
