// module.cc — focal_op._focal_core: the framework-free kernel core on NumPy arrays (CPU,
// numpy_arrays.cc) and, in builds with CUDA, on __cuda_array_interface__ arrays (cuda_arrays.cc):
// the kernels tested and benchmarked where TensorFlow is absent.
#include <pybind11/stl.h>

#include <vector>

#include "common.h"
#include "focal_cpu.h"

namespace py = pybind11;

PYBIND11_MODULE(_focal_core, m) {
  m.doc() = "focal_op's framework-free kernel core on NumPy arrays (CPU) and GPU arrays (CUDA builds).";
  focal_py::define_numpy_entry_points(m);
  m.def("cpu_isa", &focal::cpu_isa, "The instruction set the CPU kernels run with.");
  // validate.h's checks for focal_op's Python functions: one set of checks and error texts
  m.def(
      "check_softmax_params",
      [](double gamma, double epsilon, double label_smoothing, const std::vector<double>& alpha, int64_t classes,
         double compute_max) {
        focal_py::softmax_params(alpha.empty() ? nullptr : alpha.data(), static_cast<int64_t>(alpha.size()), gamma,
                                 epsilon, label_smoothing, std::nullopt, classes, true, compute_max);
      },
      py::arg("gamma"), py::arg("epsilon"), py::arg("label_smoothing"), py::arg("alpha"), py::arg("classes"),
      py::arg("compute_max"),
      "ValueError unless the softmax hyper-parameters are valid (alpha: [] for none; classes < 0: not known).");
  m.def(
      "check_sigmoid_params",
      [](double gamma, double label_smoothing, const std::vector<double>& alpha, int64_t columns, double compute_max) {
        focal_py::sigmoid_params(alpha.empty() ? nullptr : alpha.data(), static_cast<int64_t>(alpha.size()), gamma,
                                 label_smoothing, columns, true, compute_max);
      },
      py::arg("gamma"), py::arg("label_smoothing"), py::arg("alpha"), py::arg("columns"), py::arg("compute_max"),
      "ValueError unless the sigmoid hyper-parameters are valid (alpha: [] for none; columns < 0: not known).");
  m.def("alpha_length_error", &focal::alpha_length_error, py::arg("length"), py::arg("last_axis"), py::arg("sigmoid"),
        "The error text for a vector alpha whose length is not the last axis'.");
  m.attr("ROW_STATS") = focal::kSoftmaxRowStats;
#if defined(FOCAL_OP_WITH_CUDA)
  m.attr("WITH_CUDA") = true;
  focal_py::define_cuda_entry_points(m);
#else
  m.attr("WITH_CUDA") = false;
#endif
}
