// focal_cuda.h — CUDA launchers of the focal losses (sparse and dense softmax, sigmoid).
//
// Plain C++ declarations (no CUDA or framework header), so the TensorFlow and pybind11 adapters
// compile with the host compiler. Every pointer, alpha included, is device memory; the
// hyper-parameters come by value in the params struct. `stream` is a cudaStream_t (nullptr:
// the legacy default stream). The launchers enqueue their kernels and return without waiting;
// they return "" or the CUDA error text of the launch.
//
// Labels outside [0, C) (other than ignore_class) give a NaN loss and NaN gradient row on the
// GPU: checking them on the host would need a device-to-host copy and a synchronisation.
#pragma once

#include <cstdint>
#include <string>

#include "focal_math.h"

namespace focal {

// logits [rows, classes], labels and loss [rows], row_stats [rows, kSoftmaxRowStats].
template <typename T, typename Label>
std::string sparse_softmax_focal_forward_cuda(const T* logits, const Label* labels, int64_t rows, int64_t classes,
                                              const SoftmaxFocalParams& params, T* loss, acc_t<T>* row_stats,
                                              void* stream);

template <typename T, typename Label>
std::string sparse_softmax_focal_backward_cuda(const T* logits, const Label* labels, const acc_t<T>* row_stats,
                                               const T* loss_grad, int64_t rows, int64_t classes,
                                               const SoftmaxFocalParams& params, T* logits_grad, void* stream);

// Dense labels [rows, classes] of the logits' type.
template <typename T>
std::string dense_softmax_focal_forward_cuda(const T* logits, const T* labels, int64_t rows, int64_t classes,
                                             const SoftmaxFocalParams& params, T* loss, acc_t<T>* row_stats,
                                             void* stream);

template <typename T>
std::string dense_softmax_focal_backward_cuda(const T* logits, const T* labels, const acc_t<T>* row_stats,
                                              const T* loss_grad, int64_t rows, int64_t classes,
                                              const SoftmaxFocalParams& params, T* logits_grad, void* stream);

// Sigmoid focal loss over `elements` values of [..., columns] arrays (alpha per column).
// loss_grad == nullptr: forward (out = loss); otherwise out = loss_grad · d loss / d logits, with
// loss_grad laid out as `upstream` says (one value per element, per row, or one for all).
template <typename T>
std::string sigmoid_focal_cuda(const T* logits, const T* labels, const T* loss_grad, int64_t elements, int64_t columns,
                               const SigmoidFocalParams& params, T* out, void* stream,
                               SigmoidUpstream upstream = SigmoidUpstream::kPerElement);

// The sigmoid loss summed over the last axis: out [rows] from logits and labels [rows, columns].
template <typename T>
std::string sigmoid_focal_row_sums_cuda(const T* logits, const T* labels, int64_t rows, int64_t columns,
                                        const SigmoidFocalParams& params, T* out, void* stream);

// Number of CUDA devices the runtime sees (0 where there is no GPU or no driver), and the
// runtime's text for why, "" when there is at least one device.
int cuda_device_count();
std::string cuda_unavailable_reason();

// How a softmax row of `classes` is split across threads: threads per row (1 to 32 share a
// warp; kBlockPerRow: a whole block per row). Exposed for the tests' shape choices.
constexpr int kBlockPerRow = 256;
int softmax_threads_per_row(int64_t classes);

}  // namespace focal
