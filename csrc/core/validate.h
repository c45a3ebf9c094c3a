// validate.h — checks and error texts shared by every adapter (TensorFlow ops, pybind11).
// Host-only, header-only: an empty string means the input is fine.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
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

// gamma >= 0, epsilon in [0, 0.5), label_smoothing in [0, 1], finite alpha of size 1 or classes.
// alpha_on_host = false (alpha in GPU memory): its length is checked, not its values.
inline std::string softmax_params_error(const SoftmaxFocalParams& params, int64_t classes, bool alpha_on_host = true) {
  if (!(params.gamma >= 0.0) || !std::isfinite(params.gamma)) {
    return "gamma must be a finite number >= 0; got " + format_number(params.gamma);
  }
  if (!(params.epsilon >= 0.0 && params.epsilon < 0.5)) {
    return "epsilon must be in [0, 0.5) (0 or None: exact log-softmax); got " + format_number(params.epsilon);
  }
  if (!(params.label_smoothing >= 0.0 && params.label_smoothing <= 1.0)) {
    return "label_smoothing must be in [0, 1]; got " + format_number(params.label_smoothing);
  }
  if (params.alpha != nullptr) {
    if (params.alpha_size != 1 && params.alpha_size != classes) {
      return "alpha must be a scalar or a vector of length C = " + std::to_string(classes) + "; got length " +
             std::to_string(params.alpha_size);
    }
    for (int64_t c = 0; alpha_on_host && c < params.alpha_size; ++c) {
      if (!std::isfinite(params.alpha[c])) {
        return "alpha must be finite; alpha[" + std::to_string(c) + "] = " + format_number(params.alpha[c]);
      }
    }
  }
  return "";
}

// gamma >= 0, label_smoothing in [0, 1], finite alpha of size 1 or columns.
inline std::string sigmoid_params_error(const SigmoidFocalParams& params, int64_t columns, bool alpha_on_host = true) {
  if (!(params.gamma >= 0.0) || !std::isfinite(params.gamma)) {
    return "gamma must be a finite number >= 0; got " + format_number(params.gamma);
  }
  if (!(params.label_smoothing >= 0.0 && params.label_smoothing <= 1.0)) {
    return "label_smoothing must be in [0, 1]; got " + format_number(params.label_smoothing);
  }
  if (params.alpha != nullptr) {
    if (params.alpha_size != 1 && params.alpha_size != columns) {
      return "alpha must be a scalar or a vector over the last axis (length " + std::to_string(columns) +
             "); got length " + std::to_string(params.alpha_size);
    }
    for (int64_t c = 0; alpha_on_host && c < params.alpha_size; ++c) {
      if (!std::isfinite(params.alpha[c])) {
        return "alpha must be finite; alpha[" + std::to_string(c) + "] = " + format_number(params.alpha[c]);
      }
    }
  }
  return "";
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
