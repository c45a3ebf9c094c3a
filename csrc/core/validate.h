// validate.h — the argument checks and their error texts, the one set for every adapter: the
// TensorFlow ops, the pybind11 module, and (through it, focal_op._focal_core.check_*_params)
// the Python functions' checks of Python numbers. Host-only, header-only: an empty string means
// the input is fine.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "focal_math.h"

namespace focal {

// The sigmoid's sum over the last axis (sum_over_classes) of scalar logits.
constexpr const char* kSumOverClassesOfScalarError = "sum_over_classes needs logits of rank >= 1; got a scalar";

inline std::string format_number(double v) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.17g", v);
  return buffer;
}

// gamma >= 0; alpha of size 1 or of the last axis, its values >= 0 (and <= alpha_max): all of
// them at most compute_max, the largest finite value of the type the kernels compute in (a
// larger one would become inf there). alpha_on_host = false (alpha in GPU memory): its length is
// checked, not its values.
inline std::string gamma_error(double gamma, double compute_max) {
  if (!gamma_in_range(gamma, compute_max)) {
    return "gamma must be a finite number >= 0 (and at most " + format_number(compute_max) +
           ", the largest value of the compute dtype); got " + format_number(gamma);
  }
  return "";
}

// A vector alpha of `length` against the last axis: the softmax's classes or the sigmoid's columns.
inline std::string alpha_length_error(int64_t length, int64_t last_axis, bool sigmoid) {
  return sigmoid ? "alpha must be a scalar or a vector over the last axis (length " + std::to_string(last_axis) +
                       "); got length " + std::to_string(length)
                 : "alpha must be a scalar or a vector of length C = " + std::to_string(last_axis) + "; got length " +
                       std::to_string(length);
}

inline std::string alpha_error(const double* alpha, int64_t alpha_size, int64_t last_axis, bool alpha_on_host,
                               double alpha_max, double compute_max, bool sigmoid) {
  if (alpha == nullptr) return "";
  if (alpha_size != 1 && last_axis >= 0 && alpha_size != last_axis) {  // last_axis < 0: not known yet
    return alpha_length_error(alpha_size, last_axis, sigmoid);
  }
  const double upper = alpha_max < compute_max ? alpha_max : compute_max;
  for (int64_t c = 0; alpha_on_host && c < alpha_size; ++c) {
    if (!(alpha[c] >= 0.0 && alpha[c] <= upper)) {
      return "alpha must be in [0, " + format_number(upper) + "]; alpha[" + std::to_string(c) +
             "] = " + format_number(alpha[c]);
    }
  }
  return "";
}

constexpr double kNoUpperBound = std::numeric_limits<double>::max();

// gamma >= 0, epsilon in [0, 0.5), label_smoothing in [0, 1], alpha >= 0 of size 1 or classes.
inline std::string softmax_params_error(const SoftmaxFocalParams& params, int64_t classes, bool alpha_on_host = true,
                                        double compute_max = kNoUpperBound) {
  const std::string gamma = gamma_error(params.gamma, compute_max);
  if (!gamma.empty()) return gamma;
  if (!epsilon_in_range(params.epsilon)) {
    return "epsilon must be None or a number in [0, 0.5) (0 or None: exact log-softmax); got " +
           format_number(params.epsilon);
  }
  if (!label_smoothing_in_range(params.label_smoothing)) {
    return "label_smoothing must be in [0, 1]; got " + format_number(params.label_smoothing);
  }
  return alpha_error(params.alpha, params.alpha_size, classes, alpha_on_host, kNoUpperBound, compute_max,
                     /*sigmoid=*/false);
}

// gamma >= 0, label_smoothing in [0, 1], alpha in [0, 1] of size 1 or columns.
inline std::string sigmoid_params_error(const SigmoidFocalParams& params, int64_t columns, bool alpha_on_host = true,
                                        double compute_max = kNoUpperBound) {
  const std::string gamma = gamma_error(params.gamma, compute_max);
  if (!gamma.empty()) return gamma;
  if (!label_smoothing_in_range(params.label_smoothing)) {
    return "label_smoothing must be in [0, 1]; got " + format_number(params.label_smoothing);
  }
  return alpha_error(params.alpha, params.alpha_size, columns, alpha_on_host, 1.0, compute_max, /*sigmoid=*/true);
}

// The layout of the sigmoid gradient's upstream gradient from its shape: the logits' shape,
// [..., 1] (one value per row) or [] (one for all); anything else is an error.
inline std::string sigmoid_upstream_layout(const std::vector<int64_t>& upstream, const std::vector<int64_t>& logits,
                                           SigmoidUpstream* layout) {
  std::vector<int64_t> per_row = logits;
  if (!per_row.empty()) per_row.back() = 1;
  if (upstream == logits) {
    *layout = SigmoidUpstream::kPerElement;
  } else if (upstream.empty()) {
    *layout = SigmoidUpstream::kScalar;
  } else if (!logits.empty() && upstream == per_row) {
    *layout = SigmoidUpstream::kPerRow;
  } else {
    const auto text = [](const std::vector<int64_t>& dims) {
      std::string out = "[";
      for (size_t i = 0; i < dims.size(); ++i) out += (i ? "," : "") + std::to_string(dims[i]);
      return out + "]";
    };
    return "loss_grad must have the shape of logits " + text(logits) + ", one value per row " + text(per_row) +
           " or be a scalar; got " + text(upstream);
  }
  return "";
}

inline std::string label_out_of_range_error(int64_t label, int64_t flat_index, int64_t classes) {
  return "Received a label value of " + std::to_string(label) + " at flat index " + std::to_string(flat_index) +
         " which is outside the valid range of [0, " + std::to_string(classes) + ").";
}

}  // namespace focal
