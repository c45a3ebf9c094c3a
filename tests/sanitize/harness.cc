// harness.cc — drives every CPU launcher over edge shapes and values, for a build with
// -fsanitize=address,undefined (scripts/sanitize.sh): C in {0, 1, 17, 33, 4097}, N in
// {0, 1, 2100}, NaN and ±inf logits, out-of-range and ignored labels, buffers one element off a
// 64-byte boundary, in-place gradients, and row ranges split as threads split them. Each array
// is allocated to its exact size, so any read or write past it is reported. Exits non-zero on a
// non-finite value where the inputs promise a finite one.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <vector>

#include "focal_cpu.h"

namespace {

// count elements of T whose first one sits `offset` elements after a 64-byte boundary and whose
// last one ends the allocation.
template <typename T>
struct ExactBuffer {
  std::unique_ptr<unsigned char[]> storage;
  T* data = nullptr;
  ExactBuffer(int64_t count, int offset) {
    const std::size_t before = 64 - offset * sizeof(T) % 64;  // room to reach the wanted alignment
    const std::size_t bytes = before + static_cast<std::size_t>(count) * sizeof(T);
    storage.reset(new unsigned char[bytes]);
    unsigned char* start = storage.get() + bytes - static_cast<std::size_t>(count) * sizeof(T);
    data = reinterpret_cast<T*>(start);
  }
};

int failures = 0;

void expect(bool ok, const char* what, int64_t rows, int64_t classes) {
  if (!ok) {
    std::fprintf(stderr, "FAIL: %s (N = %lld, C = %lld)\n", what, static_cast<long long>(rows),
                 static_cast<long long>(classes));
    ++failures;
  }
}

template <typename T>
T from_double(double v) {
  T out;
  focal::store_from_acc(static_cast<focal::acc_t<T>>(v), &out);
  return out;
}

template <typename T>
bool all_finite(const T* values, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    if (!std::isfinite(static_cast<double>(focal::load_acc(values[i])))) return false;
  }
  return true;
}

template <typename T, typename Label>
focal::SoftmaxArgs<T> softmax_args(const T* logits, const Label* labels, int64_t rows, int64_t classes,
                                   const focal::SoftmaxFocalParams& params, focal::acc_t<T>* stats) {
  focal::SoftmaxArgs<T> args;
  args.logits = logits;
  args.labels = labels;
  args.label_kind = sizeof(Label) == 4 ? focal::LabelKind::kSparseInt32 : focal::LabelKind::kSparseInt64;
  args.rows = rows;
  args.classes = classes;
  args.params = params;
  args.row_stats = stats;
  return args;
}

// The launchers over [0, rows) in two ranges, as two threads would call them.
template <typename Body>
void in_two_ranges(int64_t rows, Body body) {
  const int64_t middle = rows / 3;
  body(focal::RowRange{0, middle});
  body(focal::RowRange{middle, rows});
}

template <typename T, typename Label>
void softmax_case(int64_t rows, int64_t classes, int offset, bool specials, std::mt19937& rng) {
  using Acc = focal::acc_t<T>;
  const int64_t size = rows * classes;
  ExactBuffer<T> logits(size, offset), grad(size, offset), loss(rows, offset), upstream(rows, offset);
  ExactBuffer<T> dense(size, offset);
  ExactBuffer<Label> labels(rows, offset);
  ExactBuffer<Acc> stats(rows * focal::kSoftmaxRowStats, offset);
  std::normal_distribution<double> normal(0.0, 3.0);
  for (int64_t i = 0; i < size; ++i) {
    logits.data[i] = from_double<T>(normal(rng));
    dense.data[i] = from_double<T>(i % 3 == 0 ? 0.5 : 0.0);
  }
  for (int64_t r = 0; r < rows; ++r) {
    labels.data[r] = static_cast<Label>(classes > 0 ? r % classes : 0);
    upstream.data[r] = from_double<T>(1.0);
  }
  if (specials && size > 0) {
    logits.data[0] = from_double<T>(NAN);
    logits.data[size / 2] = from_double<T>(-INFINITY);
    logits.data[size - 1] = from_double<T>(INFINITY);
    labels.data[rows - 1] = static_cast<Label>(classes + 5);  // out of range
    if (rows > 1) labels.data[rows / 2] = static_cast<Label>(-1);  // ignored
  }
  const double alpha_values[] = {0.25};
  for (double gamma : {0.0, 0.5, 2.0}) {
    for (double smoothing : {0.0, 0.1}) {
      focal::SoftmaxFocalParams params;
      params.gamma = gamma;
      params.label_smoothing = smoothing;
      params.alpha = alpha_values;
      params.alpha_size = 1;
      params.has_ignore_class = true;
      params.ignore_class = -1;
      focal::SoftmaxArgs<T> args = softmax_args(logits.data, labels.data, rows, classes, params, stats.data);
      args.loss = loss.data;
      args.loss_grad = upstream.data;
      args.logits_grad = grad.data;
      bool bad = false;
      in_two_ranges(rows, [&](focal::RowRange range) { bad |= !focal::softmax_forward_cpu(args, range).ok(); });
      expect(specials || classes == 0 || !bad, "sparse forward reported a bad label", rows, classes);
      expect(specials || classes == 0 || all_finite(loss.data, rows), "sparse loss not finite", rows, classes);
      in_two_ranges(rows, [&](focal::RowRange range) { focal::softmax_backward_cpu(args, range); });
      expect(specials || classes == 0 || all_finite(grad.data, size), "sparse gradient not finite", rows, classes);
      args.label_kind = focal::LabelKind::kDense;
      args.labels = dense.data;
      in_two_ranges(rows, [&](focal::RowRange range) { focal::softmax_forward_cpu(args, range); });
      expect(specials || all_finite(loss.data, rows), "dense loss not finite", rows, classes);
      in_two_ranges(rows, [&](focal::RowRange range) { focal::softmax_backward_cpu(args, range); });
    }
  }
  // in place: the gradient written over the logits
  if (!specials) {
    focal::SoftmaxArgs<T> args = softmax_args(logits.data, labels.data, rows, classes, focal::SoftmaxFocalParams{},
                                              stats.data);
    args.loss = loss.data;
    args.loss_grad = upstream.data;
    args.logits_grad = logits.data;
    focal::softmax_forward_cpu(args, focal::RowRange{0, rows});
    focal::softmax_backward_cpu(args, focal::RowRange{0, rows});
    expect(classes == 0 || all_finite(logits.data, size), "in-place gradient not finite", rows, classes);
  }
}

template <typename T>
void sigmoid_case(int64_t rows, int64_t columns, int offset, bool specials, std::mt19937& rng) {
  const int64_t size = rows * columns;
  ExactBuffer<T> logits(size, offset), labels(size, offset), out(size, offset), per_element(size, offset);
  ExactBuffer<T> per_row(rows, offset), sums(rows, offset), scalar(1, offset);
  std::normal_distribution<double> normal(0.0, 3.0);
  for (int64_t i = 0; i < size; ++i) {
    logits.data[i] = from_double<T>(normal(rng));
    labels.data[i] = from_double<T>(i % 4 == 0 ? 1.0 : 0.0);
    per_element.data[i] = from_double<T>(1.0);
  }
  for (int64_t r = 0; r < rows; ++r) per_row.data[r] = from_double<T>(0.5);
  scalar.data[0] = from_double<T>(2.0);
  if (specials && size > 0) {
    logits.data[0] = from_double<T>(NAN);
    logits.data[size / 2] = from_double<T>(INFINITY);
    logits.data[size - 1] = from_double<T>(-INFINITY);
  }
  std::vector<double> column_alpha(static_cast<std::size_t>(columns), 0.75);
  const double shared_alpha[] = {0.25};
  for (int alpha_kind = 0; alpha_kind < 3; ++alpha_kind) {
    focal::SigmoidFocalParams params;
    params.gamma = alpha_kind == 1 ? 0.5 : 2.0;
    params.alpha = alpha_kind == 0 ? nullptr : alpha_kind == 1 ? shared_alpha : column_alpha.data();
    params.alpha_size = alpha_kind == 0 ? 0 : alpha_kind == 1 ? 1 : columns;
    if (alpha_kind == 2 && columns == 0) continue;
    focal::SigmoidArgs<T> args;
    args.logits = logits.data;
    args.labels = labels.data;
    args.rows = rows;
    args.columns = columns;
    args.params = params;
    args.out = out.data;
    const auto elementwise = [&](const T* upstream, focal::SigmoidUpstream layout) {
      args.loss_grad = upstream;
      args.upstream = layout;
      in_two_ranges(size, [&](focal::RowRange range) { focal::sigmoid_cpu(args, range); });
      expect(specials || all_finite(out.data, size), "sigmoid output not finite", rows, columns);
    };
    elementwise(nullptr, focal::SigmoidUpstream::kPerElement);
    elementwise(per_element.data, focal::SigmoidUpstream::kPerElement);
    elementwise(per_row.data, focal::SigmoidUpstream::kPerRow);
    elementwise(scalar.data, focal::SigmoidUpstream::kScalar);
    args.loss_grad = nullptr;
    args.sum_over_classes = true;
    args.out = sums.data;
    in_two_ranges(rows, [&](focal::RowRange range) { focal::sigmoid_cpu(args, range); });
    expect(specials || all_finite(sums.data, rows), "sigmoid row sums not finite", rows, columns);
  }
}

}  // namespace

int main() {
  std::mt19937 rng(1234);
  std::printf("focal_op sanitizer harness, CPU kernels: %s\n", focal::cpu_isa());
  for (int64_t classes : {0, 1, 17, 33, 4097}) {
    for (int64_t rows : {0, 1, 2100}) {
      if (rows * classes > 2100 * 33 && rows > 1) continue;  // 2100 x 4097 adds time, not coverage
      for (int offset : {0, 1}) {
        for (bool specials : {false, true}) {
          if (specials && rows * classes == 0) continue;
          softmax_case<float, int32_t>(rows, classes, offset, specials, rng);
          softmax_case<double, int64_t>(rows, classes, offset, specials, rng);
          softmax_case<focal::float16_bits, int64_t>(rows, classes, offset, specials, rng);
          softmax_case<focal::bfloat16_bits, int32_t>(rows, classes, offset, specials, rng);
          sigmoid_case<float>(rows, classes, offset, specials, rng);
          sigmoid_case<double>(rows, classes, offset, specials, rng);
          sigmoid_case<focal::float16_bits>(rows, classes, offset, specials, rng);
        }
      }
    }
  }
  if (failures > 0) {
    std::fprintf(stderr, "%d failures\n", failures);
    return 1;
  }
  std::printf("clean\n");
  return 0;
}
