// rlhf/math/fast_exp.hpp — e^x for float without libm: Cody–Waite range reduction and a
// degree-6 polynomial, the scalar twin of detail/simd.hpp's vector exp. Used by the CPU
// backend's float loss kernels, where libm's expf cannot be vectorised.
//
//   x = n·ln 2 + r, |r| ≤ ½ ln 2 (n = round(x·log2 e); ln 2 split in two so n·ln2_hi is exact)
//   e^r ≈ 1 + r + r²·P(r)          P: degree 4, fitted to the relative error of e^r on
//                                  [−½ ln 2, ½ ln 2] (0.05 ulp in exact arithmetic), evaluated
//                                  as (c0 + c1·r) + r²·((c2 + c3·r) + r²·c4) for a short
//                                  dependency chain
//   e^x = e^r · 2^⌊n/2⌋ · 2^(n − ⌊n/2⌋)   (two exact power-of-two factors, so results in the
//                                         subnormal range are rounded once, and n = 128 works)
//
// Accuracy (tests/math/fast_exp_test.cpp, a dense sweep against double-precision exp): within
// 2 ulp over the whole range, subnormal results included (in units of the subnormal spacing).
// x ≥ 88.73 gives +inf, x ≤ −104 gives +0, NaN gives NaN, ±inf give +inf / +0, as std::exp.
#pragma once

#include <rlhf/config.hpp>

#include <bit>
#include <cstdint>

namespace rlhf::math {

namespace fast_exp_constants {
inline constexpr float log2e = 1.44269504088896341f;
inline constexpr float ln2_hi = 0.693359375f;      // 355/512: n·ln2_hi is exact for |n| ≤ 2^15
inline constexpr float ln2_lo = -2.12194440e-4f;   // ln 2 − ln2_hi
inline constexpr float c0 = 4.9999993451e-1f;
inline constexpr float c1 = 1.6666520668e-1f;
inline constexpr float c2 = 4.1668387456e-2f;
inline constexpr float c3 = 8.3687125464e-3f;
inline constexpr float c4 = 1.3814620902e-3f;
inline constexpr float lowest = -104.0f;  // e^-104 < ½·(smallest subnormal): rounds to +0
inline constexpr float highest = 89.0f;   // e^89 > FLT_MAX: +inf
// 1.5·2^23 + 127: t + magic rounds t to an integer n (|t| < 2^22), and the float's low 9
// mantissa bits are then n + 127, the biased exponent of 2^n.
inline constexpr float round_magic = 12583039.0f;
inline constexpr std::int32_t round_magic_bits = 0x4B40007F;  // the bits of round_magic
}  // namespace fast_exp_constants

/// e^x in float (≤ 2 ulp; see the header comment). constexpr, branch-free apart from NaN.
[[nodiscard]] constexpr float fast_exp(float x) noexcept {
  namespace c = fast_exp_constants;
  if (x != x) return x + x;  // NaN in, NaN out
  const float xc = x < c::lowest ? c::lowest : (x > c::highest ? c::highest : x);
  // n = round-to-nearest(xc·log2 e), read from the low mantissa bits of t + magic.
  const float shifted = xc * c::log2e + c::round_magic;
  const std::int32_t n = std::bit_cast<std::int32_t>(shifted) - c::round_magic_bits;
  const float fn = shifted - c::round_magic;
  float r = xc - fn * c::ln2_hi;
  r = r - fn * c::ln2_lo;
  const float z = r * r;
  const float p = (c::c0 + c::c1 * r) + z * ((c::c2 + c::c3 * r) + z * c::c4);
  const float y = p * z + r + 1.0f;
  const std::int32_t n1 = n / 2;  // |n| ≤ 150: both halves are normal exponents
  const std::int32_t n2 = n - n1;
  const float s1 = std::bit_cast<float>(static_cast<std::uint32_t>(n1 + 127) << 23);
  const float s2 = std::bit_cast<float>(static_cast<std::uint32_t>(n2 + 127) << 23);
  return y * s1 * s2;
}

static_assert(fast_exp(0.0f) == 1.0f);
#if !defined(__CUDACC__)  // nvcc's front end refuses a constant expression that underflows
static_assert(fast_exp(-200.0f) == 0.0f);
#endif

}  // namespace rlhf::math
