// focal_math.h — the focal-loss math, written once for every backend.
//
// Everything here is inline and framework-free, so the CPU launchers, the CUDA kernels and
// the pybind11 module all evaluate the very same expressions. No TensorFlow, no Eigen.
//
// Softmax notation for one row of C logits z:
//   m            the row maximum (an exact logit value)
//   sum_others   Σ_{c : z_c != m} exp(z_c - m) + (number of ties with m) - 1, i.e. the
//                share of every class but one argmax; log-sum-exp = m + log1p(sum_others).
//   p_c, q_c     probability of class c and 1 - p_c. For an argmax q_c = sum_others / (1 +
//                sum_others) (no cancellation); for every other class p_c <= 1/2, so 1 - p_c is
//                exact enough.
//   term_c       q_c^γ · (-log p_c), the focal term of class c
//   h_c          p_c · d term_c / d p_c = q_c^γ · (γ · p_c log p_c / q_c - 1). The ratio
//                p log p / q lies in [-1, 0] and tends to -1 as p -> 1, so h never divides by
//                zero and stays finite for every γ >= 0 (no (1-p)^(γ-1)).
//   g_c          y_c · α_c · h_c (y the label weight of class c)
//   d loss / d z_j = g_j - p_j · Σ_c g_c.
// The forward keeps Σ g_c split into the part over argmax classes and the rest so the backward
// can form g_j - p_j Σ g at an argmax as g_j q_j - p_j (rest) without cancellation.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

// Always inlined on the host: the CPU kernels are compiled once per instruction set, and an
// out-of-line copy shared between those translation units could run AVX-512 code on a CPU
// without it.
#if defined(__CUDACC__)
#define FOCAL_HD __host__ __device__ __forceinline__
#elif defined(__GNUC__)
#define FOCAL_HD inline __attribute__((always_inline))
#else
#define FOCAL_HD inline
#endif

namespace focal {

// Elementary functions by precision, callable from host and device code.
FOCAL_HD float math_exp(float x) { return ::expf(x); }
FOCAL_HD double math_exp(double x) { return ::exp(x); }
FOCAL_HD float math_log(float x) { return ::logf(x); }
FOCAL_HD double math_log(double x) { return ::log(x); }
FOCAL_HD float math_log1p(float x) { return ::log1pf(x); }
FOCAL_HD double math_log1p(double x) { return ::log1p(x); }
FOCAL_HD float math_pow(float x, float y) { return ::powf(x, y); }
FOCAL_HD double math_pow(double x, double y) { return ::pow(x, y); }

// The elementary functions the loss math calls, as a policy: LibmMath (the C library, and
// CUDA's device functions) by default; the CPU kernels pass a vectorisable one. kSelects: write
// data-dependent choices as selects (every candidate computed) for vectorised loops, rather
// than as branches that skip work.
struct LibmMath {
  static constexpr bool kSelects = false;
  // Compile-time knowledge a kernel may pass in its policy: kFixedGamma 0, 1 or 2 (that integer
  // γ), -1 (a non-integer γ: always pow), -2 (unknown: decided per call); kMayClip false when
  // epsilon is known to be 0.
  static constexpr int kFixedGamma = -2;
  static constexpr bool kMayClip = true;
  template <typename Acc>
  FOCAL_HD static Acc exp_nonpositive(Acc x) {  // exp(x) for x <= 0 or NaN (the sigmoid's exp(-|x|))
    return math_exp(x);
  }
  template <typename Acc>
  FOCAL_HD static Acc log(Acc x) {
    return math_log(x);
  }
  template <typename Acc>
  FOCAL_HD static Acc pow(Acc x, Acc y) {
    return math_pow(x, y);
  }
  // exp(hi + lo) for a difference split exactly into hi <= 0 and its rounding error lo:
  // exp(hi)·(1 + lo). lo is NaN where hi is infinite or NaN; it is dropped there.
  template <typename Acc>
  FOCAL_HD static Acc exp_split(Acc hi, Acc lo) {
    return math_exp(hi) * ((lo == lo ? lo : Acc(0)) + Acc(1));
  }
  // {1 / (1 + e), log1p(e)} for e = exp(-|x|) in [0, 1] (see sigmoid_focal)
  template <typename Acc>
  FOCAL_HD static void reciprocal_and_log1p(Acc e, Acc& reciprocal, Acc& log1p_e);
};

// ---------------------------------------------------------------------------------------------
// 16-bit storage types. Logits of these types are computed in float32.
struct float16_bits {
  uint16_t bits;
};
struct bfloat16_bits {
  uint16_t bits;
};

FOCAL_HD uint32_t float_as_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
#endif
}
FOCAL_HD float bits_as_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
#endif
}

FOCAL_HD float to_float(float16_bits h) {
  const uint32_t sign = static_cast<uint32_t>(h.bits & 0x8000u) << 16;
  const uint32_t exponent = (h.bits >> 10) & 0x1fu;
  const uint32_t mantissa = h.bits & 0x3ffu;
  if (exponent == 0x1fu) return bits_as_float(sign | 0x7f800000u | (mantissa << 13));
  if (exponent == 0) {
    // zero or subnormal: mantissa · 2^-24 is exact and a normal float32
    const float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8f;
    return bits_as_float(sign | float_as_bits(magnitude));
  }
  return bits_as_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

FOCAL_HD float16_bits to_float16(float f) {
  uint32_t u = float_as_bits(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  u &= 0x7fffffffu;
  uint16_t out;
  if (u >= 0x47800000u) {  // |f| >= 65536, inf or NaN
    out = u > 0x7f800000u ? 0x7e00u : 0x7c00u;
  } else if (u < 0x38800000u) {  // below the smallest normal half: round in float arithmetic
    // adding 0.5 aligns the half-subnormal grid with float's mantissa LSBs (round to nearest even)
    const float shifted = bits_as_float(u) + 0.5f;
    out = static_cast<uint16_t>(float_as_bits(shifted) - 0x3f000000u);
  } else {
    const uint32_t odd = (u >> 13) & 1u;
    u += 0xc8000fffu + odd;  // rebias exponent 127 -> 15, round to nearest even
    out = static_cast<uint16_t>(u >> 13);
  }
  return float16_bits{static_cast<uint16_t>(out | sign)};
}

FOCAL_HD float to_float(bfloat16_bits b) { return bits_as_float(static_cast<uint32_t>(b.bits) << 16); }

FOCAL_HD bfloat16_bits to_bfloat16(float f) {
  const uint32_t u = float_as_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bfloat16_bits{static_cast<uint16_t>((u >> 16) | 0x40u)};
  const uint32_t rounded = u + 0x7fffu + ((u >> 16) & 1u);
  return bfloat16_bits{static_cast<uint16_t>(rounded >> 16)};
}

// X(T) for every logits type the kernels (CPU and CUDA) are built for: the one list of them.
// Sparse labels are int32 or int64 (LabelKind, focal_args.h).
#define FOCAL_FOR_EACH_FLOAT_TYPE(X) \
  X(::focal::float16_bits)           \
  X(::focal::bfloat16_bits)          \
  X(float)                           \
  X(double)

// The logits type's name as NumPy (and ml_dtypes) name it.
template <typename T>
constexpr const char* kTypeName = "";
template <>
constexpr const char* kTypeName<float16_bits> = "float16";
template <>
constexpr const char* kTypeName<bfloat16_bits> = "bfloat16";
template <>
constexpr const char* kTypeName<float> = "float32";
template <>
constexpr const char* kTypeName<double> = "float64";

// Storage type -> accumulation type (float for 16- and 32-bit logits, double for double).
template <typename T>
struct AccumulateOf {
  using type = float;
};
template <>
struct AccumulateOf<double> {
  using type = double;
};
template <typename T>
using acc_t = typename AccumulateOf<T>::type;

FOCAL_HD float load_acc(float v) { return v; }
FOCAL_HD double load_acc(double v) { return v; }
FOCAL_HD float load_acc(float16_bits v) { return to_float(v); }
FOCAL_HD float load_acc(bfloat16_bits v) { return to_float(v); }

FOCAL_HD void store_from_acc(float v, float* out) { *out = v; }
FOCAL_HD void store_from_acc(double v, double* out) { *out = v; }
FOCAL_HD void store_from_acc(float v, float16_bits* out) { *out = to_float16(v); }
FOCAL_HD void store_from_acc(float v, bfloat16_bits* out) { *out = to_bfloat16(v); }

// ---------------------------------------------------------------------------------------------
// Parameters of the softmax losses, validated by the adapters before any kernel runs.
struct SoftmaxFocalParams {
  double gamma = 2.0;
  double epsilon = 0.0;           // 0: exact log-softmax; in (0, 0.5): clip p to [ε, 1-ε]
  double label_smoothing = 0.0;   // sparse labels only: y = (1-s)·onehot + s/C
  const double* alpha = nullptr;  // nullptr: 1 for every class
  int64_t alpha_size = 0;         // 1: one weight for every class; C: per class
  int64_t ignore_class = 0;
  bool has_ignore_class = false;
  // CUDA launchers only: nullptr, or {gamma, epsilon, label_smoothing} in device memory, read by
  // the kernels instead of the three fields above (XLA's run-time scalars, never copied to the
  // host); values out of range make every loss and gradient NaN.
  const double* device_scalars = nullptr;
};

// The ranges of the hyper-parameters (validate.h words the errors; the CUDA kernels use them on
// scalars that stay on the device). compute_max: the largest value of the compute type.
FOCAL_HD bool gamma_in_range(double gamma, double compute_max) { return gamma >= 0.0 && gamma <= compute_max; }
FOCAL_HD bool epsilon_in_range(double epsilon) { return epsilon >= 0.0 && epsilon < 0.5; }
FOCAL_HD bool label_smoothing_in_range(double smoothing) { return smoothing >= 0.0 && smoothing <= 1.0; }

// Per-row state the softmax forward hands to its backward: four values per row.
constexpr int kSoftmaxRowStats = 4;
template <typename Acc>
struct SoftmaxRowStats {
  Acc max_logit;
  Acc sum_others;
  Acc grad_weight_rest;    // Σ g_c over classes with z_c != max
  Acc grad_weight_argmax;  // Σ g_c over classes with z_c == max
};

// ---------------------------------------------------------------------------------------------
// Probability of one class given its row's (max, sum_others).
template <typename Acc>
struct ClassProbability {
  Acc p;
  Acc q;  // 1 - p, never formed by cancellation near p = 1
  Acc log_p;
};

// The constant v as an Acc: a float, a double, or a CPU vector of floats (v in every lane; such
// a vector cannot be constructed from a number, and its comparisons give masks, not bools, which
// is why the math below writes `auto` for conditions and splat<Acc>(v) for constants).
template <typename Acc>
FOCAL_HD constexpr Acc splat(float v) {
  return Acc{} + v;
}

// exp(z - m) with the rounding of the difference compensated: z - m = hi + lo exactly
// (TwoDiff), and the math policy's exp_split takes both parts. The plain float32 difference can
// be off by half an ulp of |z - m|, i.e. exp by |z - m|·6e-8 relative (1e-6 at z - m = -16).
template <typename Math = LibmMath, typename Acc>
FOCAL_HD Acc exp_of_difference(Acc z, Acc m) {
  // Knuth's TwoSum of z and -m: hi + lo is exactly z - m (Acc may also be a CPU vector of floats)
  const Acc hi = z - m;
  const Acc bb = hi - z;
  const Acc lo = (z - (hi - bb)) + (-m - bb);
  return Math::exp_split(hi, lo);
}

// The per-row constants every class of a row shares.
template <typename Acc>
struct RowNormalizer {
  Acc max_logit;
  Acc sum_others;
  Acc inv_denom;  // 1 / (1 + sum_others) = p of an argmax
  Acc log_denom;  // log1p(sum_others) = log-sum-exp - max
};

// log1p(x) for x >= 0 from one log: log(u) · x / (u - 1) with u = 1 + x is accurate to a few
// ulp (the rounding of u cancels in the ratio) and much cheaper than libm's log1p on the CPU.
template <typename Math = LibmMath, typename Acc>
FOCAL_HD Acc log1p_nonnegative(Acc x) {
  const Acc one = splat<Acc>(1);
  const Acc u = one + x;
  const Acc ratio = u == one ? one : x / (u - one);  // selects, no branches: vectorisable
  const Acc result = Math::log(u) * ratio;
  return u == one ? x : (u == splat<Acc>(INFINITY) ? u : result);
}

template <typename Acc>
FOCAL_HD void LibmMath::reciprocal_and_log1p(Acc e, Acc& reciprocal, Acc& log1p_e) {
  reciprocal = Acc(1) / (Acc(1) + e);
  log1p_e = log1p_nonnegative<LibmMath>(e);
}

// sum_others of a row from Σ exp(z - max) over its classes below the max and the number of its
// classes equal to the max (ties): the share of every class but one argmax.
template <typename Acc>
FOCAL_HD Acc sum_others_of(Acc sum_below, Acc ties) {
  return sum_below + (ties - splat<Acc>(1));
}

// A row whose logits are all -inf (every class masked) has no distribution: its sum_others is
// made NaN, so its loss and gradient are NaN whatever the path and C (TF's softmax gives NaN too).
template <typename Math = LibmMath, typename Acc>
FOCAL_HD RowNormalizer<Acc> row_normalizer(Acc max_logit, Acc sum_others) {
  const Acc one = splat<Acc>(1);
  sum_others = max_logit == splat<Acc>(-INFINITY) ? splat<Acc>(NAN) : sum_others;
  return {max_logit, sum_others, one / (one + sum_others), log1p_nonnegative<Math>(sum_others)};
}

// A row's loss, NaN where its normalizer is (a NaN logit, or every logit -inf), also when no class
// of the row carries label weight.
template <typename Acc>
FOCAL_HD Acc row_loss_or_nan(Acc loss, Acc sum_others) {
  return sum_others != sum_others ? sum_others : loss;
}

template <typename Math = LibmMath, typename Acc>
FOCAL_HD ClassProbability<Acc> class_probability(Acc z, const RowNormalizer<Acc>& row) {
  const auto argmax = z == row.max_logit;
  const Acc p_other = exp_of_difference<Math>(z, row.max_logit) * row.inv_denom;
  ClassProbability<Acc> r;
  r.p = argmax ? row.inv_denom : p_other;
  r.q = argmax ? row.sum_others * row.inv_denom : splat<Acc>(1) - p_other;
  r.log_p = argmax ? -row.log_denom : (z - row.max_logit) - row.log_denom;
  return r;
}

// q^γ, with the common integer γ exact by multiplication. pow(0, 0) == 1: γ = 0 is
// cross-entropy.
template <typename Math = LibmMath, typename Acc>
FOCAL_HD Acc focal_pow(Acc q, Acc gamma) {
  const Acc q2 = q * q;
  if constexpr (Math::kFixedGamma == 0) {
    return splat<Acc>(1);
  } else if constexpr (Math::kFixedGamma == 1) {
    return q;
  } else if constexpr (Math::kFixedGamma == 2) {
    return q2;
  } else if constexpr (Math::kFixedGamma == -1) {
    return Math::pow(q, gamma);
  } else if constexpr (Math::kSelects) {
    const Acc general = Math::pow(q, gamma);
    return gamma == splat<Acc>(0)   ? splat<Acc>(1)
           : gamma == splat<Acc>(1) ? q
           : gamma == splat<Acc>(2) ? q2
           : gamma == splat<Acc>(3) ? q2 * q
           : gamma == splat<Acc>(4) ? q2 * q2
           : gamma == splat<Acc>(5) ? q2 * q2 * q
                             : general;
  } else {
    if (gamma == Acc(0)) return Acc(1);
    if (gamma == Acc(1)) return q;
    if (gamma == Acc(2)) return q2;
    if (gamma == Acc(3)) return q2 * q;
    if (gamma == Acc(4)) return q2 * q2;
    if (gamma == Acc(5)) return q2 * q2 * q;
    return Math::pow(q, gamma);
  }
}

// Focal term of one class and p · its derivative w.r.t. p. Clip mode (epsilon > 0) follows
// tf.clip_by_value: p strictly outside [ε, 1-ε] is clipped and passes no gradient; the classic
// formula's 1 - p by subtraction is kept there. Branch-free (selects) for vectorisation.
template <typename Acc>
struct FocalTerm {
  Acc loss;  // q^γ · (-log p)
  Acc h;     // p · d loss / d p
};

// log p for the product p · log p: -inf (p = 0, a masked class) becomes the lowest finite
// value, so the product is 0, its limit, instead of 0 · -inf = NaN. NaN stays NaN.
constexpr float kLargestFloat = 3.4028234663852886e38f;

template <typename Acc>
FOCAL_HD Acc finite_log_p(Acc log_p) {
  const Acc lowest = splat<Acc>(-kLargestFloat);
  return log_p < lowest ? lowest : log_p;
}

template <typename Math = LibmMath, typename Acc>
FOCAL_HD FocalTerm<Acc> focal_term(ClassProbability<Acc> prob, Acc gamma, Acc epsilon) {
  if constexpr (!Math::kMayClip) {
    const Acc q_pow = focal_pow<Math>(prob.q, gamma);
    const Acc p_log_p_over_q =
        prob.q > splat<Acc>(0) ? prob.p * finite_log_p(prob.log_p) / prob.q : splat<Acc>(-1);
    return {q_pow * -prob.log_p, q_pow * (gamma * p_log_p_over_q - splat<Acc>(1))};
  }
  // one comparison per select: combined masks defeat GCC's vectoriser. With epsilon = 0 the
  // clip to [0, 1] changes nothing.
  const auto clip_mode = epsilon > splat<Acc>(0);
  const Acc upper = splat<Acc>(1) - epsilon;
  Acc p = prob.p < epsilon ? epsilon : prob.p;
  p = p > upper ? upper : p;
  const auto clipped = p != prob.p;
  Acc log_p = prob.log_p;
  if constexpr (Math::kSelects) {
    const Acc clipped_log_p = Math::log(p);
    log_p = clipped ? clipped_log_p : log_p;
  } else if (clipped) {
    log_p = Math::log(p);
  }
  const Acc q = clip_mode ? splat<Acc>(1) - p : prob.q;
  const Acc q_pow = focal_pow<Math>(q, gamma);
  const Acc p_log_p_over_q = q > splat<Acc>(0) ? p * finite_log_p(log_p) / q : splat<Acc>(-1);
  const Acc h = q_pow * (gamma * p_log_p_over_q - splat<Acc>(1));
  return {q_pow * -log_p, clipped ? splat<Acc>(0) : h};
}

// Gradient of a softmax focal row w.r.t. logit j, given g_j and the row's split Σ g.
template <typename Acc>
FOCAL_HD Acc softmax_logit_gradient(Acc z, ClassProbability<Acc> prob, Acc g, const SoftmaxRowStats<Acc>& stats) {
  const Acc at_argmax = g * prob.q - prob.p * (stats.grad_weight_rest + (stats.grad_weight_argmax - g));
  const Acc elsewhere = g - prob.p * (stats.grad_weight_rest + stats.grad_weight_argmax);
  return z == stats.max_logit ? at_argmax : elsewhere;
}

// ---------------------------------------------------------------------------------------------
// Sparse labels: y_c = on·[c == target] + off, with off = s/C and on = 1 - s.
template <typename Acc>
struct SparseLabelWeights {
  static constexpr bool kMayHaveSingleTarget = true;  // without smoothing only the target counts
  int64_t target;
  Acc on;
  Acc off;
  FOCAL_HD Acc weight(int64_t c) const { return (c == target ? on : Acc(0)) + off; }
  FOCAL_HD bool only_target() const { return off == Acc(0); }
};

template <typename Acc>
FOCAL_HD SparseLabelWeights<Acc> sparse_label_weights(int64_t target, int64_t classes, double smoothing) {
  const Acc s = static_cast<Acc>(smoothing);
  return {target, Acc(1) - s, classes > 0 ? s / static_cast<Acc>(classes) : Acc(0)};
}

// Dense (one-hot or soft) labels y of one row, smoothed to y·(1-s) + s/C.
template <typename Acc, typename T>
struct DenseLabelWeights {
  static constexpr bool kMayHaveSingleTarget = false;
  const T* y;
  Acc keep;
  Acc add;
  FOCAL_HD Acc weight(int64_t c) const { return load_acc(y[c]) * keep + add; }
};

template <typename Acc, typename T>
FOCAL_HD DenseLabelWeights<Acc, T> dense_label_weights(const T* y, int64_t classes, double smoothing) {
  const Acc s = static_cast<Acc>(smoothing);
  return {y, Acc(1) - s, classes > 0 ? s / static_cast<Acc>(classes) : Acc(0)};
}

// What a softmax row is: computed (kValid), or filled without reading its logits: an ignored
// label and a row of no classes (C = 0) get loss, row stats and gradient 0 (TF's cross-entropy
// gives 0 for C = 0), a label outside [0, C) NaN.
enum class RowKind { kValid, kIgnored, kOutOfRange, kEmpty };

template <typename Acc>
FOCAL_HD Acc row_fill(RowKind kind) {
  return kind == RowKind::kOutOfRange ? Acc(NAN) : Acc(0);
}

FOCAL_HD RowKind dense_row_kind(int64_t classes) { return classes > 0 ? RowKind::kValid : RowKind::kEmpty; }

// The ignored class as one label value: -1 when there is none (out of range anyway), so the
// check below needs no flag.
FOCAL_HD int64_t ignored_label(const SoftmaxFocalParams& params) {
  return params.has_ignore_class ? params.ignore_class : -1;
}

// A sparse label that is computed: in [0, C) and not the ignored label (one expression, no
// branch, so a block's labels can be checked in a vectorised pass).
FOCAL_HD bool sparse_label_valid(int64_t t, int64_t classes, int64_t ignored) {
  return (static_cast<uint64_t>(t) < static_cast<uint64_t>(classes)) & (t != ignored);
}

template <typename Label>
FOCAL_HD RowKind sparse_row_kind(Label label, int64_t classes, const SoftmaxFocalParams& params) {
  const int64_t t = static_cast<int64_t>(label);
  if (sparse_label_valid(t, classes, ignored_label(params))) return RowKind::kValid;
  return params.has_ignore_class && t == params.ignore_class ? RowKind::kIgnored : RowKind::kOutOfRange;
}

// Adds class c's contribution to a row's loss and to its split Σ g. Sum is the accumulator
// type of the row's sums (double on the CPU, so long rows keep float32 accuracy).
template <typename Math = LibmMath, typename Acc, typename Sum>
FOCAL_HD void accumulate_class(Acc z, const RowNormalizer<Acc>& row, Acc label_weight, Acc alpha, Acc gamma,
                               Acc epsilon, Sum& loss, Sum& grad_weight_rest, Sum& grad_weight_argmax) {
  const FocalTerm<Acc> term = focal_term<Math>(class_probability<Math>(z, row), gamma, epsilon);
  const Acc weight = label_weight * alpha;
  // a class without weight adds nothing, also where its term is infinite (a masked class)
  loss += static_cast<Sum>(weight == splat<Acc>(0) ? splat<Acc>(0) : weight * term.loss);
  const Sum g = static_cast<Sum>(weight * term.h);
  const auto argmax = z == row.max_logit;
  grad_weight_argmax += argmax ? g : splat<Sum>(0);
  grad_weight_rest += argmax ? splat<Sum>(0) : g;
}

// g_j for the backward: zero where the label weight is zero (no pow/log spent there).
template <typename Math = LibmMath, typename Acc>
FOCAL_HD Acc class_grad_weight(ClassProbability<Acc> prob, Acc label_weight, Acc alpha, Acc gamma, Acc epsilon) {
  return label_weight * alpha * focal_term<Math>(prob, gamma, epsilon).h;
}

// d loss / d z_c of one class of a softmax row (before the upstream gradient). A function of
// scalars, so loops over classes keep no per-lane structs.
template <typename Math = LibmMath, typename Acc>
FOCAL_HD Acc softmax_class_gradient(Acc z, const RowNormalizer<Acc>& row, Acc label_weight, Acc alpha, Acc gamma,
                                    Acc epsilon, const SoftmaxRowStats<Acc>& stats) {
  const ClassProbability<Acc> prob = class_probability<Math>(z, row);
  const Acc g = class_grad_weight<Math>(prob, label_weight, alpha, gamma, epsilon);
  return softmax_logit_gradient(z, prob, g, stats);
}

// ---------------------------------------------------------------------------------------------
// Sigmoid focal loss, elementwise. Target y in [0, 1] (after smoothing y(1-s) + s/2), x a logit:
//   p = sigmoid(x), q = 1 - p_t = y·sigmoid(-x) + (1-y)·sigmoid(x)   (a sum: no cancellation)
//   α_t = y·α + (1-y)·(1-α)   (1 without alpha)
//   BCE = max(x, 0) - x·y + log1p(exp(-|x|)), with max(x,0) - xy formed as x(1-y) or -xy
//   loss = α_t · q^γ · BCE
//   d loss / dx = α_t · q^γ · (γ · (1-2y) · r · BCE + p - y),  r = p(1-p)/q in [0, 2]
// r replaces q^(γ-1)·p(1-p), so nothing diverges for γ < 1; p - y = (1-y)p - y(1-p) is exact
// for hard labels.
struct SigmoidFocalParams {
  double gamma = 2.0;
  double label_smoothing = 0.0;
  const double* alpha = nullptr;  // nullptr: α_t = 1
  int64_t alpha_size = 0;         // 1: one α for every column; C: per column of the last axis
  // CUDA launchers only: nullptr, or {gamma, label_smoothing} in device memory (see
  // SoftmaxFocalParams::device_scalars)
  const double* device_scalars = nullptr;
};

FOCAL_HD bool sigmoid_has_alpha(const SigmoidFocalParams& params) { return params.alpha != nullptr; }

// How the sigmoid backward's upstream gradient (d total / d loss) is laid out: one value per
// element (the loss's shape), one per row of the last axis (shape [..., 1]) or one for every
// element (shape []: the gradient of a sum of the whole loss, passed on without materialising
// its broadcast to N x C).
enum class SigmoidUpstream { kPerElement = 0, kPerRow = 1, kScalar = 2 };

FOCAL_HD int64_t sigmoid_upstream_index(int64_t element, int64_t columns, SigmoidUpstream upstream) {
  return upstream == SigmoidUpstream::kPerElement ? element
         : upstream == SigmoidUpstream::kPerRow   ? element / (columns > 0 ? columns : 1)
                                                  : 0;
}

template <typename Acc>
struct SigmoidFocalTerm {
  Acc loss;
  Acc dloss_dx;
};

template <typename Math = LibmMath, typename Acc>
FOCAL_HD SigmoidFocalTerm<Acc> sigmoid_focal(Acc x, Acc y, bool has_alpha, Acc alpha, Acc gamma) {
  // one comparison serves every select (x = 0 gives the same values on either side; NaN takes
  // the x < 0 side and stays NaN)
  const auto nonnegative = x >= splat<Acc>(0);
  const Acc e = Math::exp_nonpositive(nonnegative ? -x : x);  // exp(-|x|) in [0, 1]
  Acc inv, log1p_e;
  Math::reciprocal_and_log1p(e, inv, log1p_e);  // 1 / (1 + e), log1p(e)
  const Acc e_inv = e * inv;
  const Acc p = nonnegative ? inv : e_inv;      // sigmoid(x)
  const Acc p_neg = nonnegative ? e_inv : inv;  // sigmoid(-x) = 1 - p
  // the linear part x(1-y) or -xy is 0 where its factor is 0, also at x = ±inf (the limit)
  const Acc linear_factor = nonnegative ? splat<Acc>(1) - y : -y;
  const Acc linear = linear_factor == splat<Acc>(0) ? splat<Acc>(0) : x * linear_factor;
  const Acc bce = linear + log1p_e;
  const Acc q = y * p_neg + (splat<Acc>(1) - y) * p;
  const Acc r = q > splat<Acc>(0) ? p * p_neg / q : splat<Acc>(1);
  const Acc alpha_t = has_alpha ? y * alpha + (splat<Acc>(1) - y) * (splat<Acc>(1) - alpha) : splat<Acc>(1);
  const Acc weight = alpha_t * focal_pow<Math>(q, gamma);
  const Acc p_minus_y = (splat<Acc>(1) - y) * p - y * p_neg;
  // r · BCE -> 0 as |x| -> inf, where r = 0 and BCE may be inf: BCE is capped at the largest
  // finite value in the product
  const Acc bce_capped = bce > splat<Acc>(kLargestFloat) ? splat<Acc>(kLargestFloat) : bce;
  return {weight * bce, weight * (gamma * (splat<Acc>(1) - splat<Acc>(2) * y) * r * bce_capped + p_minus_y)};
}

// F: a float or a vector of floats (the CPU's whole-vector sigmoid loop)
template <typename F>
FOCAL_HD F smooth_binary_label(F y, float s) {
  return y * (1.0f - s) + 0.5f * s;
}
FOCAL_HD double smooth_binary_label(double y, double s) { return y * (1.0 - s) + 0.5 * s; }

}  // namespace focal
