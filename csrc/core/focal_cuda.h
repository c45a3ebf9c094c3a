// focal_cuda.h — the CUDA launchers of the focal losses, over the argument structs of
// focal_args.h.
//
// Plain C++ declarations (no CUDA or framework header), so every adapter compiles with the host
// compiler. Every pointer in the arguments, alpha included, is device memory; the
// hyper-parameters come by value. `stream` is a cudaStream_t (nullptr: the legacy default
// stream). The launchers enqueue their kernels and return without waiting: a kInternal status
// carries the CUDA runtime's text of a failed launch.
//
// Labels outside [0, C) (other than ignore_class) give a NaN loss and NaN gradient row on the
// GPU: checking them on the host would need a device-to-host copy and a synchronisation.
#pragma once

#include <cstdint>

#include "focal_args.h"

namespace focal {

template <typename T>
Status softmax_forward_cuda(const SoftmaxArgs<T>& args, void* stream);

template <typename T>
Status softmax_backward_cuda(const SoftmaxArgs<T>& args, void* stream);

template <typename T>
Status sigmoid_cuda(const SigmoidArgs<T>& args, void* stream);

// Number of CUDA devices the runtime sees (0 where there is no GPU or no driver), and the
// runtime's text for why ("" when there is at least one device).
int cuda_device_count();
const char* cuda_unavailable_reason();

// How a softmax row of `classes` is split across threads: threads per row (1 to 32 share a
// warp; kBlockPerRow: a whole block per row). Exposed for the tests' shape choices.
constexpr int kBlockPerRow = 256;
int softmax_threads_per_row(int64_t classes);

}  // namespace focal
