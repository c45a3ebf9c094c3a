// cpu_vector_math.h — branch-free float32 exp and log for the CPU loops, and VectorMath, the
// math policy (see focal_math.h) the CPU kernels use.
//
// Written so the compiler vectorises the loops that call it (no branches, no library calls):
// exp(x) = 2^n · e^r with n = round(x / ln 2), r = x - n ln 2 (two-part ln 2), and e^r by a
// degree-6 minimax polynomial on |r| <= 0.35 (3.3e-9 relative in exact arithmetic, one term fewer
// than the Taylor polynomial of the same accuracy: the error is the float rounding, about 1 ulp;
// q^γ multiplies it by γ, so it must stay small). scripts/fit_polynomials.py derives the
// coefficients.
// x below -87.33 gives 0 (exp would be subnormal); x is clamped to <= 88; NaN stays NaN.
#pragma once

#include <cstdint>
#include <type_traits>

#include "focal_math.h"

namespace focal {

// FloatLanes<F>: the float (F = float) or GCC/Clang vector of floats (F = float
// __attribute__((vector_size(...)))) the templates below work on, with its bit pattern type.
template <typename F>
struct FloatLanes {
  using Bits = uint32_t;
  using Ints = int32_t;
  static FOCAL_HD float to_float(int32_t i) { return static_cast<float>(i); }
};
#if defined(__GNUC__) && !defined(__CUDACC__)
template <int kCount>
struct FloatVector {
  typedef float type __attribute__((vector_size(4 * kCount)));
  typedef uint32_t bits __attribute__((vector_size(4 * kCount)));
  typedef int32_t ints __attribute__((vector_size(4 * kCount)));
};
// The lanes of a vector of kCount floats. to_float is a template so that it is not compiled where
// that vector width is not in use.
template <int kCount>
struct VectorLanes {
  using Bits = typename FloatVector<kCount>::bits;
  using Ints = typename FloatVector<kCount>::ints;
  template <typename I>
  static FOCAL_HD typename FloatVector<kCount>::type to_float(I i) {
    return __builtin_convertvector(i, typename FloatVector<kCount>::type);
  }
};
template <>
struct FloatLanes<FloatVector<4>::type> : VectorLanes<4> {};
template <>
struct FloatLanes<FloatVector<8>::type> : VectorLanes<8> {};
template <>
struct FloatLanes<FloatVector<16>::type> : VectorLanes<16> {};
#endif

// exp(x + lo) on a float or, lane by lane, on a vector of floats (the same instructions either
// way). kCorrected: lo, at most about an ulp of x (the rounding error of a difference), is added
// to the reduced argument r, so exp(x + lo) costs one add more than exp(x). kMayOverflow false:
// the caller guarantees x <= 0 or NaN, and the upper clamp is left out.
template <bool kMayOverflow, bool kCorrected, typename F>
FOCAL_HD F exp_lanes(F x, F lo) {
  using Bits = typename FloatLanes<F>::Bits;
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f;  // 8 significant bits: n · kLn2Hi is exact
  constexpr float kLn2Lo = -2.12194440e-4f;
  // 1.5 · 2^23 + 127: adding it rounds to an integer and leaves n + 127, the biased exponent of
  // 2^n, in the low mantissa bits (one integer add fewer than the unbiased constant)
  constexpr float kRoundMagic = 12583039.0f;
  constexpr float kLowest = -87.33654475f;    // below: 2^n would be subnormal
  constexpr float kHighest = 88.0f;
  const F zero{};
  const auto underflows = x < kLowest;
  F clamped = kLowest > x ? zero + kLowest : x;  // one max instruction; NaN stays NaN
  if constexpr (kMayOverflow) clamped = clamped > kHighest ? zero + kHighest : clamped;
  const F shifted = clamped * kLog2e + kRoundMagic;
  const F n = shifted - kRoundMagic;
  F r = (clamped - n * kLn2Hi) - n * kLn2Lo;
  if constexpr (kCorrected) r = r + lo;
  F poly = zero + 1.3813161e-3f;
  poly = poly * r + 8.3694104e-3f;
  poly = poly * r + 4.1668456e-2f;
  poly = poly * r + 1.6666515e-1f;
  poly = poly * r + 4.9999994e-1f;
  poly = poly * r + 1.0f;
  poly = poly * r + 1.0f;
  // n + 127 sits in the low mantissa bits of `shifted` (in [1, 254] after the clamps); the shift
  // moves it into a float exponent and the rest of `shifted` out
  const Bits scale_bits = __builtin_bit_cast(Bits, shifted) << 23;
  const F value = poly * __builtin_bit_cast(F, scale_bits);
  return underflows ? zero : value;
}

FOCAL_HD float exp_vectorizable(float x) { return exp_lanes<true, false>(x, 0.0f); }

FOCAL_HD double exp_vectorizable(double x) { return math_exp(x); }
template <typename F>
FOCAL_HD F exp_vectorizable(F x) {  // a vector of floats
  return exp_lanes<true, false>(x, F{});
}

// exp(x) for x <= 0 (or NaN): z - max of a softmax row.
FOCAL_HD float exp_nonpositive(float x) { return exp_lanes<false, false>(x, 0.0f); }
FOCAL_HD double exp_nonpositive(double x) { return math_exp(x); }
template <typename F>
FOCAL_HD F exp_nonpositive(F x) {
  return exp_lanes<false, false>(x, F{});
}

// log(x) = e·ln 2 + log(m), x = m·2^e with m in [sqrt(1/2), sqrt(2)); log(m) = 2 atanh(s),
// s = (m-1)/(m+1), |s| <= 0.172, by its odd series to s^9 (truncation < 3e-9 relative).
// Subnormals are scaled first; 0 gives -inf, negatives and NaN give NaN, inf gives inf.
// On a float or, lane by lane, on a vector of floats (the same instructions either way).
template <typename F>
FOCAL_HD F log_lanes(F x) {
  using Lanes = FloatLanes<F>;
  using Bits = typename Lanes::Bits;
  using Ints = typename Lanes::Ints;
  constexpr float kLn2Hi = 0.693359375f;
  constexpr float kLn2Lo = -2.12194440e-4f;
  const F zero{};
  const Ints no{};
  const auto subnormal = x < 1.17549435e-38f;
  const F scaled = subnormal ? x * 8388608.0f : x;  // · 2^23
  const Bits bits = __builtin_bit_cast(Bits, scaled);
  const Ints biased = __builtin_bit_cast(Ints, (bits >> 23) & 0xffu);
  Ints exponent = biased - (subnormal ? no + (127 + 23) : no + 127);
  F m = __builtin_bit_cast(F, (bits & 0x007fffffu) | 0x3f800000u);  // [1, 2)
  const auto high = m > 1.41421356f;
  m = high ? 0.5f * m : m;
  exponent += high ? no + 1 : no;
  const F f = m - 1.0f;
  const F s = f / (2.0f + f);
  const F s2 = s * s;
  F series = zero + 1.0f / 9.0f;
  series = series * s2 + 1.0f / 7.0f;
  series = series * s2 + 1.0f / 5.0f;
  series = series * s2 + 1.0f / 3.0f;
  const F log_m = 2.0f * s + 2.0f * s * s2 * series;
  const F e = Lanes::to_float(exponent);
  const F result = e * kLn2Hi + (log_m + e * kLn2Lo);
  // special cases one comparison per select (combined masks defeat GCC's vectoriser)
  F value = x == INFINITY ? zero + INFINITY : result;
  value = x == 0.0f ? zero - INFINITY : value;
  value = x < 0.0f ? zero + NAN : value;
  return x != x ? x : value;
}

FOCAL_HD float log_vectorizable(float x) { return log_lanes(x); }
template <typename F>
FOCAL_HD F log_vectorizable(F x) {  // a vector of floats
  return log_lanes(x);
}
FOCAL_HD double log_vectorizable(double x) { return math_log(x); }

// The CPU kernels' math policy: vectorisable float32 exp/log, libm for float64. pow(q, γ) for
// q >= 0 as exp(γ log q) (γ = 0.5 by sqrt); focal_pow has already taken integer γ.
struct VectorMath {
  static constexpr bool kSelects = true;
  static constexpr int kFixedGamma = -2;
  static constexpr bool kMayClip = true;
  // exp(x) for x <= 0 or NaN (the sigmoid's exp(-|x|)): no upper clamp, so the sigmoid loops
  // save its instructions (same values).
  template <typename Acc>
  FOCAL_HD static Acc exp_nonpositive(Acc x) {
    return focal::exp_nonpositive(x);
  }
  template <typename Acc>
  FOCAL_HD static Acc log(Acc x) {
    return log_vectorizable(x);
  }
  // exp(hi + lo) for hi <= 0 (see LibmMath::exp_split): lo enters the reduced argument.
  template <typename F>
  FOCAL_HD static F exp_split(F hi, F lo) {
    return exp_lanes<false, true>(hi, lo);
  }
  FOCAL_HD static double exp_split(double hi, double lo) { return LibmMath::exp_split(hi, lo); }
  FOCAL_HD static float pow(float q, float gamma) {
    const float general = exp_vectorizable(gamma * log_vectorizable(q));
    const float value = gamma == 0.5f ? __builtin_sqrtf(q) : general;
    return q > 0.0f ? value : (gamma == 0.0f ? 1.0f : 0.0f);
  }
  FOCAL_HD static double pow(double q, double gamma) { return math_pow(q, gamma); }
  template <typename F>
  FOCAL_HD static F pow(F q, F gamma) {  // a vector of floats: as above, lane by lane
    const F zero{};
    F root;
    for (int l = 0; l < static_cast<int>(sizeof(F) / sizeof(float)); ++l) root[l] = __builtin_sqrtf(q[l]);
    const F general = exp_vectorizable(gamma * log_vectorizable(q));
    const F value = gamma == 0.5f ? root : general;
    return q > 0.0f ? value : (gamma == 0.0f ? zero + 1.0f : zero);
  }
  // {1 / (1 + e), log1p(e)} for e in [0, 1] (or NaN) with one division: with a = 1 + e,
  // b = 2 + e and R = 1 / (a b), 1 / (1 + e) = b R and log1p(e) = 2 atanh(s) with
  // s = e / (2 + e) = e a R in [0, 1/3], by a minimax odd polynomial to s^9 (4.5e-9 relative in
  // exact arithmetic; the Taylor series needed terms to s^13 for 2e-8; coefficients from
  // scripts/fit_polynomials.py). Within 3 ulp (reciprocal) and 5 ulp (log1p) over e = exp(x),
  // x in [-87, 0] (the libm route took three divisions and a log). On a float or a vector.
  template <typename F>
  FOCAL_HD static void reciprocal_and_log1p(F e, F& reciprocal, F& log1p_e) {
    const F a = 1.0f + e;
    const F b = 2.0f + e;
    const F r = 1.0f / (a * b);
    reciprocal = b * r;
    const F s = (e * a) * r;
    const F s2 = s * s;
    F series = F{} + 1.4005996e-1f;
    series = series * s2 + 1.4000902e-1f;
    series = series * s2 + 2.0010763e-1f;
    series = series * s2 + 3.3333209e-1f;
    log1p_e = 2.0f * s + (2.0f * s) * (s2 * series);
  }
  FOCAL_HD static void reciprocal_and_log1p(double e, double& reciprocal, double& log1p_e) {
    LibmMath::reciprocal_and_log1p(e, reciprocal, log1p_e);
  }
};

// VectorMath with γ and the clip mode fixed at compile time, so a loop computes only what
// they need (see LibmMath::kFixedGamma, kMayClip).
template <int kGamma, bool kClip>
struct FixedVectorMath : VectorMath {
  static constexpr int kFixedGamma = kGamma;
  static constexpr bool kMayClip = kClip;
};

// Calls body(FixedVectorMath<...>{}) for gamma and epsilon.
template <typename Body>
void with_fixed_vector_math(double gamma, double epsilon, Body&& body) {
  auto for_clip = [&](auto clip) {
    constexpr bool kClip = decltype(clip)::value;
    if (gamma == 0.0) return body(FixedVectorMath<0, kClip>{});
    if (gamma == 1.0) return body(FixedVectorMath<1, kClip>{});
    if (gamma == 2.0) return body(FixedVectorMath<2, kClip>{});
    return body(FixedVectorMath<-2, kClip>{});
  };
  if (epsilon > 0.0) return for_clip(std::true_type{});
  return for_clip(std::false_type{});
}

// The same functions for one value at a time (a row's target class): branches skip work, and
// pow is the C library's (exp(γ log q) loses |γ log q| ulps, 1e-6 relative at q^γ ~ 1e-7).
struct ScalarMath : VectorMath {
  static constexpr bool kSelects = false;
  template <typename Acc>
  FOCAL_HD static Acc pow(Acc q, Acc gamma) {
    return math_pow(q, gamma);
  }
};

}  // namespace focal
