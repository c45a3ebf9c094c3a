// focal_cpu.h — the CPU launchers of the focal losses, framework-free.
//
// Each processes a contiguous RowRange of its arguments' rows (or sigmoid elements), so a
// caller can split the work over its own thread pool (TensorFlow's CPU workers, XLA's, or one
// thread from pybind11). Every row gives the same bits however the range is split. The kernels
// are compiled for several x86 instruction sets and picked once, at first use (cpu/dispatch.cc).
#pragma once

#include <cstdint>

#include "focal_args.h"

namespace focal {

// Softmax rows of at most this many classes are computed one row per vector lane.
constexpr int64_t kShortRowMaxClasses = 32;

// Forward: loss and row_stats of rows [rows.begin, rows.end). Ignored rows and rows of no
// classes get loss 0; a row whose sparse label is outside [0, classes) gets NaN and is reported.
template <typename T>
Status softmax_forward_cpu(const SoftmaxArgs<T>& args, RowRange rows);

// Backward: logits_grad of those rows from the forward's row_stats (same label handling).
template <typename T>
Status softmax_backward_cpu(const SoftmaxArgs<T>& args, RowRange rows);

// Sigmoid: elements [range.begin, range.end), or rows with sum_over_classes.
template <typename T>
Status sigmoid_cpu(const SigmoidArgs<T>& args, RowRange range);

// The instruction set the CPU kernels run with: "avx512" (x86-64-v4), "avx2" (x86-64-v3) or
// "generic". The best the CPU supports, unless FOCAL_OP_CPU_ISA names a lower one.
const char* cpu_isa();

}  // namespace focal
