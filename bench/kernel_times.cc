// bench/kernel_times.cc — one thread of the sparse softmax launchers, no framework: the best
// forward and backward times over repeated calls on fixed random inputs (gamma 2, alpha 0.25).
// Build against a build folder's kernel core and run, per instruction set:
//   g++ -O2 -std=c++17 -Icsrc/core bench/kernel_times.cc build-dev/libfocal_core.a -o /tmp/kernel_times
//   FOCAL_OP_CPU_ISA=avx2 /tmp/kernel_times 65536 10 1000
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "focal_cpu.h"

int main(int argc, char** argv) {
  const int64_t rows = argc > 1 ? std::atol(argv[1]) : 65536;
  const int64_t classes = argc > 2 ? std::atol(argv[2]) : 10;
  const int calls = argc > 3 ? std::atoi(argv[3]) : 300;
  std::mt19937 generator(1);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> logits(rows * classes), loss(rows), stats(rows * focal::kSoftmaxRowStats), upstream(rows, 1.0f),
      grad(rows * classes);
  std::vector<int64_t> labels(rows);
  for (float& z : logits) z = normal(generator);
  for (int64_t& y : labels) y = static_cast<int64_t>(generator() % classes);
  const double alpha = 0.25;
  focal::SoftmaxArgs<float> args;
  args.logits = logits.data();
  args.labels = labels.data();
  args.label_kind = focal::LabelKind::kSparseInt64;
  args.rows = rows;
  args.classes = classes;
  args.params.gamma = 2.0;
  args.params.alpha = &alpha;
  args.params.alpha_size = 1;
  args.row_stats = stats.data();
  args.loss = loss.data();
  args.loss_grad = upstream.data();
  args.logits_grad = grad.data();
  using Clock = std::chrono::steady_clock;
  double forward_ms = 1e30, backward_ms = 1e30;
  for (int i = 0; i < calls; ++i) {
    const auto t0 = Clock::now();
    const focal::Status forward = focal::softmax_forward_cpu(args, {0, rows});
    const auto t1 = Clock::now();
    const focal::Status backward = focal::softmax_backward_cpu(args, {0, rows});
    const auto t2 = Clock::now();
    if (!forward.ok() || !backward.ok()) return 1;
    forward_ms = std::min(forward_ms, std::chrono::duration<double, std::milli>(t1 - t0).count());
    backward_ms = std::min(backward_ms, std::chrono::duration<double, std::milli>(t2 - t1).count());
  }
  std::printf("sparse %lldx%lld, best of %d: forward %.3f ms, backward %.3f ms\n", static_cast<long long>(rows),
              static_cast<long long>(classes), calls, forward_ms, backward_ms);
  return 0;
}
