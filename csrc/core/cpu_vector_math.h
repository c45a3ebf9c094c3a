// cpu_vector_math.h — branch-free float32 exp for the CPU row loops.
//
// Written so the compiler vectorises the loops that call it (no branches, no library calls):
// exp(x) = 2^n · e^r with n = round(x / ln 2), r = x - n ln 2 (two-part ln 2), and e^r by its
// degree-6 Taylor polynomial on |r| <= ln2/2 (truncation < 1.2e-7 relative, ~1 ulp).
// x below -87.33 gives 0 (exp would be subnormal); x is clamped to <= 88; NaN stays NaN.
#pragma once

#include <cstdint>

#include "focal_math.h"

namespace focal {

FOCAL_HD float exp_vectorizable(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693359375f;  // 8 significant bits: n · kLn2Hi is exact
  constexpr float kLn2Lo = -2.12194440e-4f;
  constexpr float kRoundMagic = 12582912.0f;  // 1.5 · 2^23: adding it rounds to an integer
  constexpr float kLowest = -87.33654475f;    // below: 2^n would be subnormal
  constexpr float kHighest = 88.0f;           // callers pass x <= 0 (logit - row max)
  const bool underflows = x < kLowest;
  float clamped = x < kLowest ? kLowest : x;
  clamped = clamped > kHighest ? kHighest : clamped;
  const float shifted = clamped * kLog2e + kRoundMagic;
  const float n = shifted - kRoundMagic;
  const float r = (clamped - n * kLn2Hi) - n * kLn2Lo;
  float poly = 1.0f / 720.0f;
  poly = poly * r + 1.0f / 120.0f;
  poly = poly * r + 1.0f / 24.0f;
  poly = poly * r + 1.0f / 6.0f;
  poly = poly * r + 0.5f;
  poly = poly * r + 1.0f;
  poly = poly * r + 1.0f;
  // n sits in the low mantissa bits of `shifted`; move it into a float exponent
  const uint32_t scale_bits = (__builtin_bit_cast(uint32_t, shifted) - 0x4B400000u + 127u) << 23;
  const float value = poly * __builtin_bit_cast(float, scale_bits);
  return underflows ? 0.0f : value;
}

FOCAL_HD double exp_vectorizable(double x) { return math_exp(x); }

}  // namespace focal
