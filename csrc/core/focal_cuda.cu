// focal_cuda.cu — CUDA kernels of the focal losses: thread layouts and loops around the math of
// focal_math.h (the same functions the CPU kernels call). No framework header.
//
// Softmax rows: a group of kGroup threads walks one row (kGroup = 1, 4, 16 or 32 lanes of a
// warp for short and medium rows, a whole block for long ones), so a block covers many short
// rows and memory accesses stay coalesced from C = 2 to C = 32000. The forward reads each logit
// once for an online (max, Σ exp below the max, ties) per lane, merges the lanes, then walks the
// row again only where every class carries label weight (dense labels, label smoothing) — those
// reads hit the cache the first pass filled. The backward reads the logits once and writes the
// gradient once from the forward's row stats. Warp- and block-wide groups move 16-byte vectors
// where rows are aligned. All math in the accumulation type (float32 for
// 16-bit logits), all indices 64-bit.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "focal_cuda.h"

namespace focal {
namespace {

constexpr int kThreadsPerBlock = 256;
static_assert(kBlockPerRow == kThreadsPerBlock, "a block-per-row group is one block");
constexpr int64_t kMaxBlocks = int64_t{1} << 20;  // grid-stride loops cover the rest

Status launch_status() {
  const cudaError_t status = cudaGetLastError();
  return status == cudaSuccess ? Status{} : Status{StatusCode::kInternal, cudaGetErrorString(status)};
}

int64_t blocks_for(int64_t work, int64_t per_block) {
  const int64_t blocks = (work + per_block - 1) / per_block;
  return blocks < kMaxBlocks ? blocks : kMaxBlocks;
}

// ---- reductions within a row's thread group ---------------------------------------------------
// The running state of a row part: its max, Σ exp(z - max) over logits below the max, and the
// number of logits equal to it (sum_others_of gives the row's sum_others).
template <typename Acc>
struct RowMaxSum {
  Acc max_logit;
  Acc sum_below;
  Acc ties;
};

template <typename Acc>
__device__ __forceinline__ RowMaxSum<Acc> add_logit(RowMaxSum<Acc> s, Acc z) {
  if (z > s.max_logit) {
    const Acc old_share = s.sum_below + s.ties;  // relative to the old max
    s.sum_below = old_share != Acc(0) ? old_share * exp_of_difference(s.max_logit, z) : Acc(0);
    s.max_logit = z;
    s.ties = Acc(1);
  } else if (z == s.max_logit) {
    s.ties += Acc(1);
  } else {
    s.sum_below += exp_of_difference(z, s.max_logit);  // NaN logits land here and stay NaN
  }
  return s;
}

// Symmetric in its arguments (both orders give the same bits), so every lane of a butterfly
// reduction ends with the same value.
template <typename Acc>
__device__ __forceinline__ RowMaxSum<Acc> merge(RowMaxSum<Acc> a, RowMaxSum<Acc> b) {
  if (b.max_logit > a.max_logit) {
    const RowMaxSum<Acc> t = a;
    a = b;
    b = t;
  }
  if (b.max_logit == a.max_logit) {
    a.sum_below += b.sum_below;
    a.ties += b.ties;
  } else {
    const Acc share = b.sum_below + b.ties;
    if (share != Acc(0)) a.sum_below += share * exp_of_difference(b.max_logit, a.max_logit);
  }
  return a;
}

// A row's loss and its split Σ g.
template <typename Acc>
struct RowSums {
  Acc loss;
  Acc grad_weight_rest;
  Acc grad_weight_argmax;
};

template <typename Acc>
__device__ __forceinline__ RowSums<Acc> merge(RowSums<Acc> a, RowSums<Acc> b) {
  return {a.loss + b.loss, a.grad_weight_rest + b.grad_weight_rest, a.grad_weight_argmax + b.grad_weight_argmax};
}

template <typename Acc>
__device__ __forceinline__ RowMaxSum<Acc> shuffle_xor(unsigned mask, RowMaxSum<Acc> v, int offset) {
  return {__shfl_xor_sync(mask, v.max_logit, offset), __shfl_xor_sync(mask, v.sum_below, offset),
          __shfl_xor_sync(mask, v.ties, offset)};
}

template <typename Acc>
__device__ __forceinline__ RowSums<Acc> shuffle_xor(unsigned mask, RowSums<Acc> v, int offset) {
  return {__shfl_xor_sync(mask, v.loss, offset), __shfl_xor_sync(mask, v.grad_weight_rest, offset),
          __shfl_xor_sync(mask, v.grad_weight_argmax, offset)};
}

// The lanes of the calling thread's group within its warp.
template <int kGroup>
__device__ __forceinline__ unsigned group_mask() {
  if constexpr (kGroup >= 32) {
    return 0xffffffffu;
  } else {
    return ((1u << kGroup) - 1u) << ((threadIdx.x % 32) / kGroup * kGroup);
  }
}

// Every thread of the group gets the merge of all the group's values. A block-wide group
// passes through shared memory; all its threads must call.
template <int kGroup, typename V>
__device__ __forceinline__ V group_all_reduce(V v) {
  constexpr int kWarpWidth = kGroup < 32 ? kGroup : 32;
  const unsigned mask = group_mask<kGroup>();
  for (int offset = kWarpWidth / 2; offset > 0; offset /= 2) v = merge(v, shuffle_xor(mask, v, offset));
  if constexpr (kGroup > 32) {
    constexpr int kWarps = kGroup / 32;
    __shared__ V warp_values[kWarps];
    if (threadIdx.x % 32 == 0) warp_values[threadIdx.x / 32] = v;
    __syncthreads();
    v = warp_values[0];
    for (int w = 1; w < kWarps; ++w) v = merge(v, warp_values[w]);
    __syncthreads();  // the buffer is reused by the next call
  }
  return v;
}

// ---- label access --------------------------------------------------------------------------
template <typename Acc>
__device__ __forceinline__ Acc class_alpha(const double* alpha, int64_t alpha_size, int64_t c) {
  return alpha == nullptr ? Acc(1) : static_cast<Acc>(alpha[alpha_size == 1 ? 0 : c]);
}

template <typename Acc>
struct SparseRows {
  SparseLabels labels;
  __device__ RowKind kind(int64_t row, int64_t classes, const SoftmaxFocalParams& params) const {
    return sparse_row_kind(labels[row], classes, params);
  }
  __device__ SparseLabelWeights<Acc> weights(int64_t row, int64_t classes, const SoftmaxFocalParams& params) const {
    return sparse_label_weights<Acc>(labels[row], classes, params.label_smoothing);
  }
};

template <typename Acc, typename T>
struct DenseRows {
  const T* labels;
  __device__ RowKind kind(int64_t, int64_t, const SoftmaxFocalParams&) const { return RowKind::kValid; }
  __device__ DenseLabelWeights<Acc, T> weights(int64_t row, int64_t classes, const SoftmaxFocalParams& params) const {
    return dense_label_weights<Acc>(labels + row * classes, classes, params.label_smoothing);
  }
};

template <typename Weights>
__device__ __forceinline__ bool single_target(const Weights& weights) {
  if constexpr (Weights::kMayHaveSingleTarget) {
    return weights.only_target();
  } else {
    return false;
  }
}

// The rows of the calling thread's group: row = first + slot, stepping over the whole grid.
template <int kGroup>
struct GroupLayout {
  static constexpr int kRowsPerBlock = kGroup <= 32 ? kThreadsPerBlock / kGroup : 1;
  __device__ static int lane() { return kGroup <= 32 ? static_cast<int>(threadIdx.x) % kGroup : threadIdx.x; }
  __device__ static int slot() { return kGroup <= 32 ? static_cast<int>(threadIdx.x) / kGroup : 0; }
  __device__ static int64_t first_row() { return static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + slot(); }
  __device__ static int64_t row_stride() { return static_cast<int64_t>(gridDim.x) * kRowsPerBlock; }
};

// ---- row walks: a lane's classes c = lane, lane + kGroup, ... ---------------------------------
// Warp- and block-wide groups read 16-byte vectors (4 floats, 8 halves, 2 doubles per load)
// when the row starts 16-byte aligned, then the remainder one by one.
template <typename T>
constexpr int kVectorWidth = 16 / static_cast<int>(sizeof(T));

template <typename T>
__device__ __forceinline__ bool vector_aligned(const T* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

// body(c, z_c) for the lane's classes of the row z.
template <int kGroup, typename T, typename Body>
__device__ __forceinline__ void for_each_logit(const T* z, int64_t classes, int lane, Body&& body) {
  int64_t scalar_begin = 0;
  if constexpr (kGroup >= 32) {
    constexpr int kWidth = kVectorWidth<T>;
    if (vector_aligned(z)) {
      const int64_t vectors = classes / kWidth;
      for (int64_t v = lane; v < vectors; v += kGroup) {
        const uint4 raw = reinterpret_cast<const uint4*>(z)[v];
        T values[kWidth];
        memcpy(values, &raw, sizeof(raw));
#pragma unroll
        for (int k = 0; k < kWidth; ++k) body(v * kWidth + k, load_acc(values[k]));
      }
      scalar_begin = vectors * kWidth;
    }
  }
  for (int64_t c = scalar_begin + lane; c < classes; c += kGroup) body(c, load_acc(z[c]));
}

// out[c] = value(c, z_c) for the lane's classes; vector stores where both rows are aligned.
template <int kGroup, typename T, typename Value>
__device__ __forceinline__ void map_logits(const T* z, T* out, int64_t classes, int lane, Value&& value) {
  int64_t scalar_begin = 0;
  if constexpr (kGroup >= 32) {
    constexpr int kWidth = kVectorWidth<T>;
    if (vector_aligned(z) && vector_aligned(out)) {
      const int64_t vectors = classes / kWidth;
      for (int64_t v = lane; v < vectors; v += kGroup) {
        const uint4 raw = reinterpret_cast<const uint4*>(z)[v];
        T values[kWidth];
        memcpy(values, &raw, sizeof(raw));
#pragma unroll
        for (int k = 0; k < kWidth; ++k) store_from_acc(value(v * kWidth + k, load_acc(values[k])), values + k);
        uint4 packed;
        memcpy(&packed, values, sizeof(packed));
        reinterpret_cast<uint4*>(out)[v] = packed;
      }
      scalar_begin = vectors * kWidth;
    }
  }
  for (int64_t c = scalar_begin + lane; c < classes; c += kGroup) store_from_acc(value(c, load_acc(z[c])), out + c);
}

// ---- XLA's run-time hyper-parameters ----------------------------------------------------------
// With device_scalars set, the scalars come from device memory (read by every thread: one cached
// load) instead of the launch's values; out of range, gamma becomes NaN, so every row with label
// weight gets a NaN loss and gradient (nothing is copied back to the host to raise an error).
template <typename Acc>
constexpr double kComputeMax = sizeof(Acc) == 4 ? 3.4028234663852886e38 : 1.7976931348623157e308;

template <typename Acc>
__device__ __forceinline__ SoftmaxFocalParams with_device_scalars(SoftmaxFocalParams params) {
  if (params.device_scalars != nullptr) {
    params.gamma = params.device_scalars[0];
    params.epsilon = params.device_scalars[1];
    params.label_smoothing = params.device_scalars[2];
    if (!(gamma_in_range(params.gamma, kComputeMax<Acc>) && epsilon_in_range(params.epsilon) &&
          label_smoothing_in_range(params.label_smoothing))) {
      params.gamma = NAN;
    }
  }
  return params;
}

template <typename Acc>
__device__ __forceinline__ SigmoidFocalParams with_device_scalars(SigmoidFocalParams params) {
  if (params.device_scalars != nullptr) {
    params.gamma = params.device_scalars[0];
    params.label_smoothing = params.device_scalars[1];
    if (!(gamma_in_range(params.gamma, kComputeMax<Acc>) && label_smoothing_in_range(params.label_smoothing))) {
      params.gamma = NAN;
    }
  }
  return params;
}

// ---- softmax kernels ------------------------------------------------------------------------
template <int kGroup, typename T, typename Rows>
__global__ void __launch_bounds__(kThreadsPerBlock)
    softmax_forward_kernel(const T* logits, Rows row_labels, int64_t rows, int64_t classes, SoftmaxFocalParams params,
                           T* loss, acc_t<T>* row_stats) {
  using Acc = acc_t<T>;
  params = with_device_scalars<Acc>(params);
  using Layout = GroupLayout<kGroup>;
  const int lane = Layout::lane();
  const Acc gamma = static_cast<Acc>(params.gamma);
  const Acc epsilon = static_cast<Acc>(params.epsilon);
  // a block-wide group's rows are uniform across the block, so its threads reach every
  // __syncthreads together; smaller groups leave the loop independently
  for (int64_t row = Layout::first_row(); row < rows; row += Layout::row_stride()) {
    const T* z = logits + row * classes;
    RowMaxSum<Acc> part{-INFINITY, Acc(0), Acc(0)};
    for_each_logit<kGroup>(z, classes, lane, [&](int64_t, Acc v) { part = add_logit(part, v); });
    const RowMaxSum<Acc> total = group_all_reduce<kGroup>(part);
    const RowNormalizer<Acc> norm = row_normalizer(total.max_logit, sum_others_of(total.sum_below, total.ties));
    Acc* stats = row_stats + row * kSoftmaxRowStats;

    RowKind kind = row_labels.kind(row, classes, params);
    if (kind == RowKind::kValid && classes == 0) kind = RowKind::kEmpty;  // dense rows of no classes: loss 0
    if (kind != RowKind::kValid) {
      if (lane == 0) {
        const Acc fill = row_fill<Acc>(kind);
        store_from_acc(fill, loss + row);
        for (int k = 0; k < kSoftmaxRowStats; ++k) stats[k] = fill;
      }
      continue;
    }
    const auto weights = row_labels.weights(row, classes, params);
    RowSums<Acc> sums{Acc(0), Acc(0), Acc(0)};
    if (single_target(weights)) {
      if constexpr (std::decay_t<decltype(weights)>::kMayHaveSingleTarget) {
        if (lane == 0) {
          const int64_t t = weights.target;
          accumulate_class(load_acc(z[t]), norm, weights.on, class_alpha<Acc>(params.alpha, params.alpha_size, t),
                           gamma, epsilon, sums.loss, sums.grad_weight_rest, sums.grad_weight_argmax);
        }
      }
    } else {
      for_each_logit<kGroup>(z, classes, lane, [&](int64_t c, Acc v) {
        accumulate_class(v, norm, weights.weight(c), class_alpha<Acc>(params.alpha, params.alpha_size, c), gamma,
                         epsilon, sums.loss, sums.grad_weight_rest, sums.grad_weight_argmax);
      });
      sums = group_all_reduce<kGroup>(sums);
    }
    if (lane == 0) {
      store_from_acc(row_loss_or_nan(sums.loss, norm.sum_others), loss + row);
      stats[0] = norm.max_logit;
      stats[1] = norm.sum_others;
      stats[2] = sums.grad_weight_rest;
      stats[3] = sums.grad_weight_argmax;
    }
  }
}

template <int kGroup, typename T, typename Rows>
__global__ void __launch_bounds__(kThreadsPerBlock)
    softmax_backward_kernel(const T* logits, Rows row_labels, const acc_t<T>* row_stats, const T* loss_grad,
                            int64_t rows, int64_t classes, SoftmaxFocalParams params, T* logits_grad) {
  using Acc = acc_t<T>;
  params = with_device_scalars<Acc>(params);
  using Layout = GroupLayout<kGroup>;
  const int lane = Layout::lane();
  const Acc gamma = static_cast<Acc>(params.gamma);
  const Acc epsilon = static_cast<Acc>(params.epsilon);
  for (int64_t row = Layout::first_row(); row < rows; row += Layout::row_stride()) {
    const T* z = logits + row * classes;
    T* grad = logits_grad + row * classes;
    const RowKind kind = row_labels.kind(row, classes, params);
    if (kind != RowKind::kValid) {
      const Acc fill = row_fill<Acc>(kind);
      for (int64_t c = lane; c < classes; c += kGroup) store_from_acc(fill, grad + c);
      continue;
    }
    const Acc* s = row_stats + row * kSoftmaxRowStats;
    const SoftmaxRowStats<Acc> stats{s[0], s[1], s[2], s[3]};
    const RowNormalizer<Acc> norm = row_normalizer(stats.max_logit, stats.sum_others);
    const Acc upstream = load_acc(loss_grad[row]);
    const auto weights = row_labels.weights(row, classes, params);
    map_logits<kGroup>(z, grad, classes, lane, [&](int64_t c, Acc v) {
      const ClassProbability<Acc> prob = class_probability(v, norm);
      const Acc label_weight = weights.weight(c);
      // no pow/log for classes without label weight (all but the target for hard labels)
      const Acc g = label_weight != Acc(0)
                        ? class_grad_weight(prob, label_weight, class_alpha<Acc>(params.alpha, params.alpha_size, c),
                                            gamma, epsilon)
                        : Acc(0);
      return upstream * softmax_logit_gradient(v, prob, g, stats);
    });
  }
}

// Calls body(std::integral_constant<int, kGroup>) with the group size for rows of `classes`.
template <typename Body>
void with_threads_per_row(int64_t classes, Body&& body) {
  switch (softmax_threads_per_row(classes)) {
    case 1:
      return body(std::integral_constant<int, 1>{});
    case 4:
      return body(std::integral_constant<int, 4>{});
    case 16:
      return body(std::integral_constant<int, 16>{});
    case 32:
      return body(std::integral_constant<int, 32>{});
    default:
      return body(std::integral_constant<int, kBlockPerRow>{});
  }
}

template <typename T, typename Rows>
Status launch_softmax_forward(const T* logits, Rows row_labels, int64_t rows, int64_t classes,
                              const SoftmaxFocalParams& params, T* loss, acc_t<T>* row_stats, void* stream) {
  if (rows <= 0) return {};
  with_threads_per_row(classes, [&](auto group) {
    constexpr int kGroup = decltype(group)::value;
    const int64_t blocks = blocks_for(rows, GroupLayout<kGroup>::kRowsPerBlock);
    softmax_forward_kernel<kGroup>
        <<<static_cast<unsigned>(blocks), kThreadsPerBlock, 0, static_cast<cudaStream_t>(stream)>>>(
            logits, row_labels, rows, classes, params, loss, row_stats);
  });
  return launch_status();
}

template <typename T, typename Rows>
Status launch_softmax_backward(const T* logits, Rows row_labels, const acc_t<T>* row_stats, const T* loss_grad,
                               int64_t rows, int64_t classes, const SoftmaxFocalParams& params, T* logits_grad,
                               void* stream) {
  if (rows <= 0 || classes <= 0) return {};
  with_threads_per_row(classes, [&](auto group) {
    constexpr int kGroup = decltype(group)::value;
    const int64_t blocks = blocks_for(rows, GroupLayout<kGroup>::kRowsPerBlock);
    softmax_backward_kernel<kGroup>
        <<<static_cast<unsigned>(blocks), kThreadsPerBlock, 0, static_cast<cudaStream_t>(stream)>>>(
            logits, row_labels, row_stats, loss_grad, rows, classes, params, logits_grad);
  });
  return launch_status();
}

// ---- sigmoid kernel -------------------------------------------------------------------------
// Elementwise, grid-stride; 16-byte vectors of logits, labels (and loss_grad) where all arrays
// are aligned, the remainder one by one.
template <typename T>
__device__ __forceinline__ void load_vector(const T* p, int64_t v, T (&values)[kVectorWidth<T>]) {
  const uint4 raw = reinterpret_cast<const uint4*>(p)[v];
  memcpy(values, &raw, sizeof(raw));
}

template <typename T, bool kBackward>
__global__ void __launch_bounds__(kThreadsPerBlock)
    sigmoid_kernel(const T* logits, const T* labels, const T* loss_grad, SigmoidUpstream upstream_layout,
                   int64_t elements, int64_t columns, SigmoidFocalParams params, T* out) {
  using Acc = acc_t<T>;
  params = with_device_scalars<Acc>(params);
  const Acc gamma = static_cast<Acc>(params.gamma);
  const Acc smoothing = static_cast<Acc>(params.label_smoothing);
  const bool has_alpha = sigmoid_has_alpha(params);
  const Acc shared_alpha = has_alpha ? static_cast<Acc>(params.alpha[0]) : Acc(1);
  const bool per_column = has_alpha && params.alpha_size > 1;
  const bool upstream_per_element = upstream_layout == SigmoidUpstream::kPerElement;
  // the upstream gradient of element i when it is not one per element (read from cache)
  auto broadcast_upstream = [&](int64_t i) { return loss_grad[sigmoid_upstream_index(i, columns, upstream_layout)]; };
  auto element = [&](int64_t i, T x, T label, T upstream) {
    const Acc alpha = per_column ? static_cast<Acc>(params.alpha[i % columns]) : shared_alpha;
    const Acc y = smooth_binary_label(load_acc(label), smoothing);
    const SigmoidFocalTerm<Acc> term = sigmoid_focal(load_acc(x), y, has_alpha, alpha, gamma);
    T result;
    store_from_acc(kBackward ? load_acc(upstream) * term.dloss_dx : term.loss, &result);
    return result;
  };
  const int64_t first = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t scalar_begin = 0;
  if (vector_aligned(logits) && vector_aligned(labels) && vector_aligned(out) &&
      (!kBackward || !upstream_per_element || vector_aligned(loss_grad))) {
    constexpr int kWidth = kVectorWidth<T>;
    const int64_t vectors = elements / kWidth;
    for (int64_t v = first; v < vectors; v += stride) {
      T x[kWidth], y[kWidth], upstream[kWidth], result[kWidth];
      load_vector(logits, v, x);
      load_vector(labels, v, y);
      if constexpr (kBackward) {
        if (upstream_per_element) {
          load_vector(loss_grad, v, upstream);
        } else {
#pragma unroll
          for (int k = 0; k < kWidth; ++k) upstream[k] = broadcast_upstream(v * kWidth + k);
        }
      }
#pragma unroll
      for (int k = 0; k < kWidth; ++k) result[k] = element(v * kWidth + k, x[k], y[k], kBackward ? upstream[k] : x[k]);
      uint4 packed;
      memcpy(&packed, result, sizeof(packed));
      reinterpret_cast<uint4*>(out)[v] = packed;
    }
    scalar_begin = vectors * kWidth;
  }
  for (int64_t i = scalar_begin + first; i < elements; i += stride) {
    const T upstream = !kBackward ? logits[i] : upstream_per_element ? loss_grad[i] : broadcast_upstream(i);
    out[i] = element(i, logits[i], labels[i], upstream);
  }
}

// ---- sigmoid row sums -------------------------------------------------------------------------
// Σ over each row of the elementwise loss, a group of threads per row as for softmax rows.
template <typename Acc>
struct LossSum {
  Acc loss;
};

template <typename Acc>
__device__ __forceinline__ LossSum<Acc> merge(LossSum<Acc> a, LossSum<Acc> b) {
  return {a.loss + b.loss};
}

template <typename Acc>
__device__ __forceinline__ LossSum<Acc> shuffle_xor(unsigned mask, LossSum<Acc> v, int offset) {
  return {__shfl_xor_sync(mask, v.loss, offset)};
}

template <int kGroup, typename T>
__global__ void __launch_bounds__(kThreadsPerBlock)
    sigmoid_row_sums_kernel(const T* logits, const T* labels, int64_t rows, int64_t columns,
                            SigmoidFocalParams params, T* out) {
  using Acc = acc_t<T>;
  params = with_device_scalars<Acc>(params);
  using Layout = GroupLayout<kGroup>;
  const int lane = Layout::lane();
  const Acc gamma = static_cast<Acc>(params.gamma);
  const Acc smoothing = static_cast<Acc>(params.label_smoothing);
  const bool has_alpha = sigmoid_has_alpha(params);
  const Acc shared_alpha = has_alpha ? static_cast<Acc>(params.alpha[0]) : Acc(1);
  const bool per_column = has_alpha && params.alpha_size > 1;
  // a block-wide group's rows are uniform across the block (see softmax_forward_kernel)
  for (int64_t row = Layout::first_row(); row < rows; row += Layout::row_stride()) {
    const T* y = labels + row * columns;
    LossSum<Acc> part{Acc(0)};
    for_each_logit<kGroup>(logits + row * columns, columns, lane, [&](int64_t c, Acc x) {
      const Acc alpha = per_column ? static_cast<Acc>(params.alpha[c]) : shared_alpha;
      part.loss += sigmoid_focal(x, smooth_binary_label(load_acc(y[c]), smoothing), has_alpha, alpha, gamma).loss;
    });
    const LossSum<Acc> total = group_all_reduce<kGroup>(part);
    if (lane == 0) store_from_acc(total.loss, out + row);
  }
}

}  // namespace

int softmax_threads_per_row(int64_t classes) {
  if (classes <= 4) return 1;
  if (classes <= 32) return 4;
  if (classes <= 128) return 16;
  if (classes <= 4096) return 32;
  return kBlockPerRow;
}

template <typename T>
Status softmax_forward_cuda(const SoftmaxArgs<T>& a, void* stream) {
  using Acc = acc_t<T>;
  if (a.label_kind == LabelKind::kDense) {
    return launch_softmax_forward(a.logits, DenseRows<Acc, T>{static_cast<const T*>(a.labels)}, a.rows, a.classes,
                                  a.params, a.loss, a.row_stats, stream);
  }
  return launch_softmax_forward(a.logits, SparseRows<Acc>{sparse_labels(a)}, a.rows, a.classes, a.params, a.loss,
                                a.row_stats, stream);
}

template <typename T>
Status softmax_backward_cuda(const SoftmaxArgs<T>& a, void* stream) {
  using Acc = acc_t<T>;
  if (a.label_kind == LabelKind::kDense) {
    return launch_softmax_backward(a.logits, DenseRows<Acc, T>{static_cast<const T*>(a.labels)}, a.row_stats,
                                   a.loss_grad, a.rows, a.classes, a.params, a.logits_grad, stream);
  }
  return launch_softmax_backward(a.logits, SparseRows<Acc>{sparse_labels(a)}, a.row_stats, a.loss_grad, a.rows,
                                 a.classes, a.params, a.logits_grad, stream);
}

template <typename T>
Status sigmoid_cuda(const SigmoidArgs<T>& a, void* stream) {
  const cudaStream_t cuda_stream = static_cast<cudaStream_t>(stream);
  if (a.sum_over_classes) {
    if (a.rows <= 0) return {};
    with_threads_per_row(a.columns, [&](auto group) {
      constexpr int kGroup = decltype(group)::value;
      const int64_t blocks = blocks_for(a.rows, GroupLayout<kGroup>::kRowsPerBlock);
      sigmoid_row_sums_kernel<kGroup><<<static_cast<unsigned>(blocks), kThreadsPerBlock, 0, cuda_stream>>>(
          a.logits, a.labels, a.rows, a.columns, a.params, a.out);
    });
    return launch_status();
  }
  const int64_t elements = a.rows * a.columns;
  if (elements <= 0) return {};
  const unsigned blocks = static_cast<unsigned>(blocks_for(elements / kVectorWidth<T> + 1, kThreadsPerBlock));
  if (a.loss_grad == nullptr) {
    sigmoid_kernel<T, false><<<blocks, kThreadsPerBlock, 0, cuda_stream>>>(a.logits, a.labels, nullptr, a.upstream,
                                                                          elements, a.columns, a.params, a.out);
  } else {
    sigmoid_kernel<T, true><<<blocks, kThreadsPerBlock, 0, cuda_stream>>>(a.logits, a.labels, a.loss_grad, a.upstream,
                                                                         elements, a.columns, a.params, a.out);
  }
  return launch_status();
}

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return 0;
  }
  return count;
}

const char* cuda_unavailable_reason() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();
    return cudaGetErrorString(status);
  }
  return count > 0 ? "" : "no CUDA device is visible";
}

#define FOCAL_INSTANTIATE_CUDA_LAUNCHERS(T)                          \
  template Status softmax_forward_cuda(const SoftmaxArgs<T>&, void*);  \
  template Status softmax_backward_cuda(const SoftmaxArgs<T>&, void*); \
  template Status sigmoid_cuda(const SigmoidArgs<T>&, void*);
FOCAL_FOR_EACH_FLOAT_TYPE(FOCAL_INSTANTIATE_CUDA_LAUNCHERS)
#undef FOCAL_INSTANTIATE_CUDA_LAUNCHERS

}  // namespace focal
