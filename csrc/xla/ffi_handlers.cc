// ffi_handlers.cc — the XLA FFI handlers declared in ffi_handlers.h: decode XLA's buffers and
// attributes into the core's argument structs, check them with validate.h (the checks and texts
// of every adapter) and call the launchers the TensorFlow ops call — on the CPU split over the
// runtime's intra-op thread pool, on the GPU on the call's stream. Includes only the XLA FFI API
// and csrc/core, so TensorFlow's op library and the JAX extension compile the same file against
// their own copy of the API.
//
// Operands of every target: logits, labels, alpha (float64, [] or [last axis]; the sigmoid's [0]
// is "no alpha"; float64 operands may come as uint32 [..., 2] halves), scalars (float64: [0], or the hyper-parameters that are tensors at run time —
// softmax {gamma, epsilon, label_smoothing}, sigmoid {gamma, label_smoothing}); the backward
// targets add row_stats and loss_grad (softmax) or loss_grad (sigmoid). Attributes: the
// hyper-parameters' compile-time values (used when scalars is empty), ignore_class and
// has_ignore_class (softmax), sum_over_classes (sigmoid forward).
#include "ffi_handlers.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "focal_cpu.h"
#include "validate.h"
#if defined(FOCAL_OP_WITH_CUDA)
#include "focal_cuda.h"
#endif

namespace focal_xla {
namespace {

namespace ffi = ::xla::ffi;

// ---- buffers ----------------------------------------------------------------------------------

template <typename T>
struct FfiType;
template <>
struct FfiType<focal::float16_bits> {
  static constexpr ffi::DataType value = ffi::DataType::F16;
};
template <>
struct FfiType<focal::bfloat16_bits> {
  static constexpr ffi::DataType value = ffi::DataType::BF16;
};
template <>
struct FfiType<float> {
  static constexpr ffi::DataType value = ffi::DataType::F32;
};
template <>
struct FfiType<double> {
  static constexpr ffi::DataType value = ffi::DataType::F64;
};

std::vector<int64_t> Dims(const ffi::AnyBuffer& buffer) {
  const auto dims = buffer.dimensions();
  return std::vector<int64_t>(dims.begin(), dims.end());
}

std::string DimsText(const std::vector<int64_t>& dims) {
  std::string text = "[";
  for (size_t i = 0; i < dims.size(); ++i) text += (i ? "," : "") + std::to_string(dims[i]);
  return text + "]";
}

int64_t Product(const std::vector<int64_t>& dims, size_t end) {
  int64_t product = 1;
  for (size_t i = 0; i < end; ++i) product *= dims[i];
  return product;
}

ffi::Error Invalid(const std::string& message) { return ffi::Error::InvalidArgument(message); }

// A buffer the call hands over must be of the element type and element count the kernels will
// read or write (a framework passing other shapes gets an error, not a stray write).
ffi::Error CheckBuffer(const ffi::AnyBuffer& buffer, ffi::DataType type, int64_t count, const char* name) {
  if (buffer.element_type() != type || static_cast<int64_t>(buffer.element_count()) != count) {
    return Invalid(std::string(name) + ": expected " + std::to_string(count) + " elements of XLA type " +
                   std::to_string(static_cast<int>(type)) + ", got " + std::to_string(buffer.element_count()) +
                   " of type " + std::to_string(static_cast<int>(buffer.element_type())));
  }
  return ffi::Error::Success();
}

// Calls body(T{}) for the logits' element type T (the core's storage types).
template <typename Body>
ffi::Error WithLogitsType(ffi::DataType type, Body&& body) {
  switch (type) {
    case ffi::DataType::F16:
      return body(focal::float16_bits{});
    case ffi::DataType::BF16:
      return body(focal::bfloat16_bits{});
    case ffi::DataType::F32:
      return body(float{});
    case ffi::DataType::F64:
      return body(double{});
    default:
      return Invalid("logits must be float16, bfloat16, float32 or float64");
  }
}

// ---- where the kernels run --------------------------------------------------------------------

// Runs launch(range) over [0, items) in pieces on the runtime's intra-op pool: the calling thread
// and threads - 1 pool tasks take pieces (as many workers as the pool has threads; the caller does
// them all if the pool is busy), so nothing waits on a queued task.
// Pieces are contiguous rows: the results do not depend on the split (focal_cpu.h).
template <typename Launch>
focal::Status RunSplit(ffi::ThreadPool& pool, int64_t items, int64_t cost_per_item, const Launch& launch) {
  constexpr int64_t kCyclesPerPiece = 200000;  // below this, scheduling costs more than it saves
  const int64_t threads = pool.num_threads();
  const int64_t by_cost = std::max<int64_t>(1, items / std::max<int64_t>(1, kCyclesPerPiece / cost_per_item));
  const int64_t pieces = std::min<int64_t>({items, by_cost, 4 * (threads + 1)});
  if (threads <= 0 || pieces <= 1) return launch(focal::RowRange{0, items});

  struct Shared {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
    focal::FirstBadRow first_bad;
    std::mutex mutex;
    std::condition_variable all_done;
  };
  auto shared = std::make_shared<Shared>();
  // a task that starts after every piece was taken returns at once (it never touches launch's
  // captures, which live on this frame only until the last piece is done)
  auto take_pieces = [shared, items, pieces, launch] {
    for (int64_t i = shared->next.fetch_add(1); i < pieces; i = shared->next.fetch_add(1)) {
      shared->first_bad.add(launch(focal::RowRange{items * i / pieces, items * (i + 1) / pieces}));
      if (shared->done.fetch_add(1) + 1 == pieces) {
        std::lock_guard<std::mutex> lock(shared->mutex);
        shared->all_done.notify_all();
      }
    }
  };
  for (int64_t t = 0; t < std::min(threads - 1, pieces - 1); ++t) {
    auto task = take_pieces;
    pool.Schedule(std::move(task));
  }
  take_pieces();
  std::unique_lock<std::mutex> lock(shared->mutex);
  shared->all_done.wait(lock, [&] { return shared->done.load() == pieces; });
  return shared->first_bad.status();
}

struct CpuLaunch {
  static constexpr bool kOnHost = true;
  ffi::ThreadPool& pool;

  template <typename T>
  focal::Status SoftmaxForward(const focal::SoftmaxArgs<T>& args) const {
    return RunSplit(pool, args.rows, focal::work_item_cost(args),
                    [&](focal::RowRange range) { return focal::softmax_forward_cpu(args, range); });
  }
  template <typename T>
  focal::Status SoftmaxBackward(const focal::SoftmaxArgs<T>& args) const {
    return RunSplit(pool, args.rows, focal::work_item_cost(args),
                    [&](focal::RowRange range) { return focal::softmax_backward_cpu(args, range); });
  }
  template <typename T>
  focal::Status Sigmoid(const focal::SigmoidArgs<T>& args) const {
    return RunSplit(pool, focal::sigmoid_work_items(args), focal::work_item_cost(args),
                    [&](focal::RowRange range) { return focal::sigmoid_cpu(args, range); });
  }
};

#if defined(FOCAL_OP_WITH_CUDA)
// Labels outside [0, C) and out-of-range run-time scalars give NaN rows on the GPU (nothing is
// copied back to the host to raise an error), as outside XLA.
struct CudaLaunch {
  static constexpr bool kOnHost = false;
  void* stream;

  template <typename T>
  focal::Status SoftmaxForward(const focal::SoftmaxArgs<T>& args) const {
    return focal::softmax_forward_cuda(args, stream);
  }
  template <typename T>
  focal::Status SoftmaxBackward(const focal::SoftmaxArgs<T>& args) const {
    return focal::softmax_backward_cuda(args, stream);
  }
  template <typename T>
  focal::Status Sigmoid(const focal::SigmoidArgs<T>& args) const {
    return focal::sigmoid_cuda(args, stream);
  }
};
#endif

// The handler's error for a launcher's status; a bad label is read back on the host only.
ffi::Error FromCore(const focal::Status& status, const ffi::AnyBuffer& labels, int64_t classes) {
  switch (status.code) {
    case focal::StatusCode::kOk:
      return ffi::Error::Success();
    case focal::StatusCode::kInvalidArgument: {
      const int64_t label = labels.element_type() == ffi::DataType::S32
                                ? static_cast<const int32_t*>(labels.untyped_data())[status.bad_row]
                                : static_cast<const int64_t*>(labels.untyped_data())[status.bad_row];
      return Invalid(focal::label_out_of_range_error(label, status.bad_row, classes));
    }
    default:
      return ffi::Error::Internal(status.message);
  }
}

// ---- decoding ---------------------------------------------------------------------------------

// A float64 operand (alpha, the run-time scalars): F64, or U32 with a trailing axis of 2 holding
// each float64's two 32-bit halves (a framework without 64-bit floats enabled — JAX's default —
// passes them so; the bytes are the same). Its logical shape and data.
struct F64Operand {
  const double* data = nullptr;
  std::vector<int64_t> dims;
  int64_t count = 0;
};

ffi::Error ReadF64(const ffi::AnyBuffer& buffer, const char* name, F64Operand* out) {
  out->dims = Dims(buffer);
  if (buffer.element_type() == ffi::DataType::U32 && !out->dims.empty() && out->dims.back() == 2) {
    out->dims.pop_back();
  } else if (buffer.element_type() != ffi::DataType::F64) {
    return Invalid(std::string(name) + " must be float64 (or its 32-bit halves, uint32 [..., 2])");
  }
  out->data = static_cast<const double*>(buffer.untyped_data());
  out->count = Product(out->dims, out->dims.size());
  return ffi::Error::Success();
}

// The run-time scalars operand: empty (the attributes hold the values) or `count` float64s, read
// on the host here and by the kernels on the GPU; *values is nullptr for the former.
ffi::Error RuntimeScalars(const ffi::AnyBuffer& scalars, int64_t count, const double** values) {
  F64Operand operand;
  if (ffi::Error error = ReadF64(scalars, "scalars", &operand); error.failure()) return error;
  *values = nullptr;
  if (operand.count == 0) return ffi::Error::Success();
  if (operand.count != count) {
    return Invalid("scalars: expected " + std::to_string(count) + " run-time hyper-parameters, got " +
                   std::to_string(operand.count));
  }
  *values = operand.data;
  return ffi::Error::Success();
}

// alpha: float64, a scalar or a vector (rank <= 1).
ffi::Error ReadAlpha(const ffi::AnyBuffer& buffer, F64Operand* alpha) {
  if (ffi::Error error = ReadF64(buffer, "alpha", alpha); error.failure()) return error;
  if (alpha->dims.size() > 1) {
    return Invalid("alpha must be a scalar or a vector; got rank " + std::to_string(alpha->dims.size()));
  }
  return ffi::Error::Success();
}

struct SoftmaxAttrs {
  double gamma, epsilon, label_smoothing;
  int64_t ignore_class;
  bool has_ignore_class;
};

template <typename Launch, typename T>
ffi::Error DecodeSoftmax(const ffi::AnyBuffer& logits, const ffi::AnyBuffer& labels, const ffi::AnyBuffer& alpha,
                         const ffi::AnyBuffer& scalars, const SoftmaxAttrs& attrs, focal::SoftmaxArgs<T>* args) {
  const std::vector<int64_t> dims = Dims(logits);
  if (dims.empty()) return Invalid("logits must have rank >= 1 ([..., C]); got a scalar");
  args->rows = Product(dims, dims.size() - 1);
  args->classes = dims.back();
  const ffi::DataType label_type = labels.element_type();
  if (label_type == ffi::DataType::S32 || label_type == ffi::DataType::S64) {
    args->label_kind = label_type == ffi::DataType::S32 ? focal::LabelKind::kSparseInt32 : focal::LabelKind::kSparseInt64;
    const std::vector<int64_t> batch(dims.begin(), dims.end() - 1);
    if (Dims(labels) != batch) {
      return Invalid("labels must have the shape of logits without its last axis; got labels " +
                     DimsText(Dims(labels)) + " and logits " + DimsText(dims));
    }
  } else if (label_type == FfiType<T>::value) {
    args->label_kind = focal::LabelKind::kDense;
    if (Dims(labels) != dims) {
      return Invalid("labels must have the shape of logits; got labels " + DimsText(Dims(labels)) + " and logits " +
                     DimsText(dims));
    }
  } else {
    return Invalid("labels must be int32 or int64 (class indices) or of the logits' type (dense labels)");
  }
  F64Operand alpha_values;
  if (ffi::Error error = ReadAlpha(alpha, &alpha_values); error.failure()) return error;
  const double* runtime = nullptr;
  if (ffi::Error error = RuntimeScalars(scalars, 3, &runtime); error.failure()) return error;

  focal::SoftmaxFocalParams& params = args->params;
  params.gamma = attrs.gamma;
  params.epsilon = attrs.epsilon;
  params.label_smoothing = attrs.label_smoothing;
  if (runtime != nullptr && Launch::kOnHost) {
    params.gamma = runtime[0];
    params.epsilon = runtime[1];
    params.label_smoothing = runtime[2];
  } else if (runtime != nullptr) {
    params.device_scalars = runtime;
  }
  params.alpha = alpha_values.data;
  params.alpha_size = alpha_values.count;
  params.ignore_class = attrs.ignore_class;
  params.has_ignore_class = attrs.has_ignore_class;
  args->logits = static_cast<const T*>(logits.untyped_data());
  args->labels = labels.untyped_data();
  const std::string error = focal::softmax_params_error(params, args->classes, Launch::kOnHost,
                                                        std::numeric_limits<focal::acc_t<T>>::max());
  return error.empty() ? ffi::Error::Success() : Invalid(error);
}

template <typename Launch, typename T>
ffi::Error DecodeSigmoid(const ffi::AnyBuffer& logits, const ffi::AnyBuffer& labels, const ffi::AnyBuffer& alpha,
                         const ffi::AnyBuffer& scalars, double gamma, double label_smoothing,
                         focal::SigmoidArgs<T>* args) {
  const std::vector<int64_t> dims = Dims(logits);
  if (labels.element_type() != FfiType<T>::value || Dims(labels) != dims) {
    return Invalid("labels must have the type and shape of logits; got labels " + DimsText(Dims(labels)) +
                   " and logits " + DimsText(dims));
  }
  args->rows = dims.empty() ? 1 : Product(dims, dims.size() - 1);  // a scalar is one row of one column
  args->columns = dims.empty() ? 1 : dims.back();
  F64Operand alpha_values;
  if (ffi::Error error = ReadAlpha(alpha, &alpha_values); error.failure()) return error;
  const bool no_alpha = alpha_values.dims.size() == 1 && alpha_values.count == 0;
  if (!no_alpha && alpha_values.dims.size() == 1 && dims.empty()) {
    return Invalid(focal::alpha_length_error(alpha_values.count, 1, /*sigmoid=*/true));
  }
  const double* runtime = nullptr;
  if (ffi::Error error = RuntimeScalars(scalars, 2, &runtime); error.failure()) return error;

  focal::SigmoidFocalParams& params = args->params;
  params.gamma = gamma;
  params.label_smoothing = label_smoothing;
  if (runtime != nullptr && Launch::kOnHost) {
    params.gamma = runtime[0];
    params.label_smoothing = runtime[1];
  } else if (runtime != nullptr) {
    params.device_scalars = runtime;
  }
  params.alpha = no_alpha ? nullptr : alpha_values.data;
  params.alpha_size = no_alpha ? 0 : alpha_values.count;
  args->logits = static_cast<const T*>(logits.untyped_data());
  args->labels = static_cast<const T*>(labels.untyped_data());
  const std::string error = focal::sigmoid_params_error(params, args->columns, Launch::kOnHost,
                                                        std::numeric_limits<focal::acc_t<T>>::max());
  return error.empty() ? ffi::Error::Success() : Invalid(error);
}

// ---- the handlers, one template per target over the platform ----------------------------------

struct CpuPlatform {
  using Context = ffi::ThreadPool;  // what the binding asks for
  using Decoded = ffi::ThreadPool;  // what the handler receives
  static CpuLaunch Launch(ffi::ThreadPool& pool) { return CpuLaunch{pool}; }
};
#if defined(FOCAL_OP_WITH_CUDA)
struct CudaPlatform {
  using Context = ffi::PlatformStream<void*>;
  using Decoded = void*;
  static CudaLaunch Launch(void* stream) { return CudaLaunch{stream}; }
};
#endif

template <typename Platform>
ffi::Error SoftmaxForward(typename Platform::Decoded context, ffi::AnyBuffer logits, ffi::AnyBuffer labels,
                          ffi::AnyBuffer alpha, ffi::AnyBuffer scalars, ffi::Result<ffi::AnyBuffer> loss,
                          ffi::Result<ffi::AnyBuffer> row_stats, double gamma, double epsilon, double label_smoothing,
                          int64_t ignore_class, bool has_ignore_class) {
  const auto launch = Platform::Launch(context);
  using Launch = decltype(launch);
  return WithLogitsType(logits.element_type(), [&](auto type) -> ffi::Error {
    using T = decltype(type);
    using Acc = focal::acc_t<T>;
    focal::SoftmaxArgs<T> args;
    const SoftmaxAttrs attrs{gamma, epsilon, label_smoothing, ignore_class, has_ignore_class};
    if (ffi::Error e = DecodeSoftmax<Launch>(logits, labels, alpha, scalars, attrs, &args); e.failure()) return e;
    if (ffi::Error e = CheckBuffer(*loss, FfiType<T>::value, args.rows, "loss"); e.failure()) return e;
    if (ffi::Error e = CheckBuffer(*row_stats, FfiType<Acc>::value, args.rows * focal::kSoftmaxRowStats, "row_stats");
        e.failure()) {
      return e;
    }
    args.loss = static_cast<T*>(loss->untyped_data());
    args.row_stats = static_cast<Acc*>(row_stats->untyped_data());
    if (args.rows == 0) return ffi::Error::Success();
    return FromCore(launch.SoftmaxForward(args), labels, args.classes);
  });
}

template <typename Platform>
ffi::Error SoftmaxBackward(typename Platform::Decoded context, ffi::AnyBuffer logits, ffi::AnyBuffer labels,
                           ffi::AnyBuffer alpha, ffi::AnyBuffer scalars, ffi::AnyBuffer row_stats,
                           ffi::AnyBuffer loss_grad, ffi::Result<ffi::AnyBuffer> logits_grad, double gamma,
                           double epsilon, double label_smoothing, int64_t ignore_class, bool has_ignore_class) {
  const auto launch = Platform::Launch(context);
  using Launch = decltype(launch);
  return WithLogitsType(logits.element_type(), [&](auto type) -> ffi::Error {
    using T = decltype(type);
    using Acc = focal::acc_t<T>;
    focal::SoftmaxArgs<T> args;
    const SoftmaxAttrs attrs{gamma, epsilon, label_smoothing, ignore_class, has_ignore_class};
    if (ffi::Error e = DecodeSoftmax<Launch>(logits, labels, alpha, scalars, attrs, &args); e.failure()) return e;
    if (ffi::Error e = CheckBuffer(row_stats, FfiType<Acc>::value, args.rows * focal::kSoftmaxRowStats, "row_stats");
        e.failure()) {
      return e;
    }
    if (ffi::Error e = CheckBuffer(loss_grad, FfiType<T>::value, args.rows, "loss_grad"); e.failure()) return e;
    if (ffi::Error e = CheckBuffer(*logits_grad, FfiType<T>::value, args.rows * args.classes, "logits_grad");
        e.failure()) {
      return e;
    }
    args.row_stats = static_cast<Acc*>(row_stats.untyped_data());  // read only
    args.loss_grad = static_cast<const T*>(loss_grad.untyped_data());
    args.logits_grad = static_cast<T*>(logits_grad->untyped_data());
    if (args.rows == 0 || args.classes == 0) return ffi::Error::Success();
    return FromCore(launch.SoftmaxBackward(args), labels, args.classes);
  });
}

template <typename Platform>
ffi::Error SigmoidForward(typename Platform::Decoded context, ffi::AnyBuffer logits, ffi::AnyBuffer labels,
                          ffi::AnyBuffer alpha, ffi::AnyBuffer scalars, ffi::Result<ffi::AnyBuffer> out, double gamma,
                          double label_smoothing, bool sum_over_classes) {
  const auto launch = Platform::Launch(context);
  using Launch = decltype(launch);
  return WithLogitsType(logits.element_type(), [&](auto type) -> ffi::Error {
    using T = decltype(type);
    focal::SigmoidArgs<T> args;
    if (ffi::Error e = DecodeSigmoid<Launch>(logits, labels, alpha, scalars, gamma, label_smoothing, &args);
        e.failure()) {
      return e;
    }
    if (sum_over_classes && logits.dimensions().size() == 0) return Invalid(focal::kSumOverClassesOfScalarError);
    args.sum_over_classes = sum_over_classes;
    if (ffi::Error e = CheckBuffer(*out, FfiType<T>::value, focal::sigmoid_work_items(args), "loss"); e.failure()) {
      return e;
    }
    args.out = static_cast<T*>(out->untyped_data());
    if (focal::sigmoid_work_items(args) == 0) return ffi::Error::Success();
    return FromCore(launch.Sigmoid(args), logits, 0);
  });
}

template <typename Platform>
ffi::Error SigmoidBackward(typename Platform::Decoded context, ffi::AnyBuffer logits, ffi::AnyBuffer labels,
                           ffi::AnyBuffer alpha, ffi::AnyBuffer scalars, ffi::AnyBuffer loss_grad,
                           ffi::Result<ffi::AnyBuffer> logits_grad, double gamma, double label_smoothing) {
  const auto launch = Platform::Launch(context);
  using Launch = decltype(launch);
  return WithLogitsType(logits.element_type(), [&](auto type) -> ffi::Error {
    using T = decltype(type);
    focal::SigmoidArgs<T> args;
    if (ffi::Error e = DecodeSigmoid<Launch>(logits, labels, alpha, scalars, gamma, label_smoothing, &args);
        e.failure()) {
      return e;
    }
    const std::string layout = focal::sigmoid_upstream_layout(Dims(loss_grad), Dims(logits), &args.upstream);
    if (!layout.empty()) return Invalid(layout);
    if (loss_grad.element_type() != FfiType<T>::value) return Invalid("loss_grad must have the logits' type");
    const int64_t elements = args.rows * args.columns;
    if (ffi::Error e = CheckBuffer(*logits_grad, FfiType<T>::value, elements, "logits_grad"); e.failure()) return e;
    args.loss_grad = static_cast<const T*>(loss_grad.untyped_data());
    args.out = static_cast<T*>(logits_grad->untyped_data());
    if (elements == 0) return ffi::Error::Success();
    return FromCore(launch.Sigmoid(args), logits, 0);
  });
}

// ---- bindings ---------------------------------------------------------------------------------

// What every target takes first: the platform's context and the operands logits, labels, alpha
// and scalars.
template <typename Platform>
auto CommonOperands() {
  return ffi::Ffi::Bind()
      .Ctx<typename Platform::Context>()
      .template Arg<ffi::AnyBuffer>()   // logits
      .template Arg<ffi::AnyBuffer>()   // labels
      .template Arg<ffi::AnyBuffer>()   // alpha
      .template Arg<ffi::AnyBuffer>();  // scalars
}

// The softmax targets' attributes, after their results.
template <typename Binding>
auto SoftmaxAttributes(Binding binding) {
  return std::move(binding)  // a Binding is extended as an rvalue
      .template Attr<double>("gamma")
      .template Attr<double>("epsilon")
      .template Attr<double>("label_smoothing")
      .template Attr<int64_t>("ignore_class")
      .template Attr<bool>("has_ignore_class");
}

template <typename Platform>
auto SoftmaxForwardBinding() {
  return SoftmaxAttributes(CommonOperands<Platform>()
                               .template Ret<ffi::AnyBuffer>()    // loss
                               .template Ret<ffi::AnyBuffer>());  // row_stats
}

template <typename Platform>
auto SoftmaxBackwardBinding() {
  return SoftmaxAttributes(CommonOperands<Platform>()
                               .template Arg<ffi::AnyBuffer>()    // row_stats
                               .template Arg<ffi::AnyBuffer>()    // loss_grad
                               .template Ret<ffi::AnyBuffer>());  // logits_grad
}

template <typename Platform>
auto SigmoidForwardBinding() {
  return CommonOperands<Platform>()
      .template Ret<ffi::AnyBuffer>()  // loss
      .template Attr<double>("gamma")
      .template Attr<double>("label_smoothing")
      .template Attr<bool>("sum_over_classes");
}

template <typename Platform>
auto SigmoidBackwardBinding() {
  return CommonOperands<Platform>()
      .template Arg<ffi::AnyBuffer>()  // loss_grad
      .template Ret<ffi::AnyBuffer>()  // logits_grad
      .template Attr<double>("gamma")
      .template Attr<double>("label_smoothing");
}

}  // namespace
}  // namespace focal_xla

namespace fx = focal_xla;

XLA_FFI_DEFINE_HANDLER_SYMBOL(FocalOpSoftmaxForwardCpu, fx::SoftmaxForward<fx::CpuPlatform>,
                              fx::SoftmaxForwardBinding<fx::CpuPlatform>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(FocalOpSoftmaxBackwardCpu, fx::SoftmaxBackward<fx::CpuPlatform>,
                              fx::SoftmaxBackwardBinding<fx::CpuPlatform>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(FocalOpSigmoidForwardCpu, fx::SigmoidForward<fx::CpuPlatform>,
                              fx::SigmoidForwardBinding<fx::CpuPlatform>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(FocalOpSigmoidBackwardCpu, fx::SigmoidBackward<fx::CpuPlatform>,
                              fx::SigmoidBackwardBinding<fx::CpuPlatform>());

#if defined(FOCAL_OP_WITH_CUDA)
XLA_FFI_DEFINE_HANDLER_SYMBOL(FocalOpSoftmaxForwardCuda, fx::SoftmaxForward<fx::CudaPlatform>,
                              fx::SoftmaxForwardBinding<fx::CudaPlatform>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(FocalOpSoftmaxBackwardCuda, fx::SoftmaxBackward<fx::CudaPlatform>,
                              fx::SoftmaxBackwardBinding<fx::CudaPlatform>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(FocalOpSigmoidForwardCuda, fx::SigmoidForward<fx::CudaPlatform>,
                              fx::SigmoidForwardBinding<fx::CudaPlatform>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(FocalOpSigmoidBackwardCuda, fx::SigmoidBackward<fx::CudaPlatform>,
                              fx::SigmoidBackwardBinding<fx::CudaPlatform>());
#endif
