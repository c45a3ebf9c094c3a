// module.cc — focal_op._focal_core: the framework-free kernel core on NumPy arrays (CPU,
// numpy_arrays.cc) and, in builds with CUDA, on __cuda_array_interface__ arrays (cuda_arrays.cc):
// the kernels tested and benchmarked where TensorFlow is absent.
#include "common.h"
#include "focal_cpu.h"

PYBIND11_MODULE(_focal_core, m) {
  m.doc() = "focal_op's framework-free kernel core on NumPy arrays (CPU) and GPU arrays (CUDA builds).";
  focal_py::define_numpy_entry_points(m);
  m.def("cpu_isa", &focal::cpu_isa, "The instruction set the CPU kernels run with.");
  m.attr("ROW_STATS") = focal::kSoftmaxRowStats;
#if defined(FOCAL_OP_WITH_CUDA)
  m.attr("WITH_CUDA") = true;
  focal_py::define_cuda_entry_points(m);
#else
  m.attr("WITH_CUDA") = false;
#endif
}
