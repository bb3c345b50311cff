// rlhf/detail/simd.hpp — small AVX2 helpers of the CPU kernels (private).
//
// Compiled only with AVX2 and FMA enabled at compile time (-mavx2 -mfma, or -march=native on a
// machine that has them) and never by nvcc; everything else uses the scalar kernels. The
// vector exp is math/fast_exp.hpp's algorithm, 8 lanes at a time (the same constants and
// order of operations, with explicit FMAs).
#pragma once

#include <rlhf/config.hpp>
#include <rlhf/math/fast_exp.hpp>

#if defined(__AVX2__) && defined(__FMA__) && !defined(__CUDACC__)
#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace rlhf::detail::simd {

/// The polynomial part of the exp: r = x − n·ln 2 (two steps) and e^r, given x and n as a
/// float (math/fast_exp.hpp).
RLHF_ALWAYS_INLINE __m256 exp8_reduced(__m256 x, __m256 fn) noexcept {
  namespace c = math::fast_exp_constants;
  __m256 r = _mm256_fnmadd_ps(fn, _mm256_set1_ps(c::ln2_hi), x);
  r = _mm256_fnmadd_ps(fn, _mm256_set1_ps(c::ln2_lo), r);
  const __m256 z = _mm256_mul_ps(r, r);
  const __m256 q0 = _mm256_fmadd_ps(_mm256_set1_ps(c::c1), r, _mm256_set1_ps(c::c0));
  const __m256 q1 = _mm256_fmadd_ps(_mm256_set1_ps(c::c3), r, _mm256_set1_ps(c::c2));
  const __m256 p = _mm256_fmadd_ps(z, _mm256_fmadd_ps(z, _mm256_set1_ps(c::c4), q1), q0);
  return _mm256_add_ps(_mm256_fmadd_ps(p, z, r), _mm256_set1_ps(1.0f));
}

/// e^x for 8 floats over the whole range: ≤ 2 ulp, +inf above 88.73, +0 below −104, NaN
/// propagated (two power-of-two factors; see math/fast_exp.hpp).
RLHF_ALWAYS_INLINE __m256 exp8_wide(__m256 x) noexcept {
  namespace c = math::fast_exp_constants;
  // max/min return their second operand when either is NaN: the NaN goes through.
  const __m256 xc = _mm256_min_ps(_mm256_set1_ps(c::highest), _mm256_max_ps(_mm256_set1_ps(c::lowest), x));
  const __m256 magic = _mm256_set1_ps(c::round_magic);
  const __m256 shifted = _mm256_fmadd_ps(xc, _mm256_set1_ps(c::log2e), magic);
  const __m256i n = _mm256_sub_epi32(_mm256_castps_si256(shifted), _mm256_set1_epi32(c::round_magic_bits));
  const __m256 y = exp8_reduced(xc, _mm256_sub_ps(shifted, magic));
  // n / 2 rounded towards zero, as the scalar version: (n + (n < 0)) >> 1.
  const __m256i n1 = _mm256_srai_epi32(_mm256_sub_epi32(n, _mm256_srai_epi32(n, 31)), 1);
  const __m256i n2 = _mm256_sub_epi32(n, n1);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
  return _mm256_mul_ps(_mm256_mul_ps(y, s1), s2);
}

/// All-ones lanes where x is NaN or |x| > 87.3, i.e. where exp8_narrow may not be used.
RLHF_ALWAYS_INLINE __m256 exp8_outside_narrow(__m256 x) noexcept {
  const __m256 magnitude = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
  return _mm256_cmp_ps(magnitude, _mm256_set1_ps(87.3f), _CMP_NLE_UQ);
}

/// e^x for lanes with |x| ≤ 87.3 (2^n is then a normal float, built straight from the
/// rounding's bits); the same bits as exp8_wide there.
RLHF_ALWAYS_INLINE __m256 exp8_narrow(__m256 x) noexcept {
  namespace c = math::fast_exp_constants;
  const __m256 magic = _mm256_set1_ps(c::round_magic);
  const __m256 shifted = _mm256_fmadd_ps(x, _mm256_set1_ps(c::log2e), magic);
  const __m256 y = exp8_reduced(x, _mm256_sub_ps(shifted, magic));
  // The low 9 bits of `shifted` are n + 127 ∈ [1, 254]: moved into the exponent field, 2^n.
  const __m256 scale = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(shifted), 23));
  return _mm256_mul_ps(y, scale);
}

/// e^x for 8 floats, any input (see exp8_wide): exp8_narrow when every lane allows it.
RLHF_ALWAYS_INLINE __m256 exp8(__m256 x) noexcept {
  if (__builtin_expect(_mm256_movemask_ps(exp8_outside_narrow(x)) != 0, 0)) return exp8_wide(x);
  return exp8_narrow(x);
}

/// All-ones lanes where the mask byte is nonzero (valid), from 8 consecutive bytes.
RLHF_ALWAYS_INLINE __m256 valid8(const std::uint8_t* m) noexcept {
  const __m256i bytes = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(m)));
  const __m256i padding = _mm256_cmpeq_epi32(bytes, _mm256_setzero_si256());
  return _mm256_castsi256_ps(_mm256_xor_si256(padding, _mm256_set1_epi32(-1)));
}

/// True when all 8 mask bytes at m are nonzero (valid).
RLHF_ALWAYS_INLINE bool all_valid8(const std::uint8_t* m) noexcept {
  std::uint64_t x;
  std::memcpy(&x, m, sizeof x);
  // A byte of x is zero exactly when the classic (x − 0x01…) & ~x & 0x80… has its top bit set.
  return ((x - 0x0101010101010101ull) & ~x & 0x8080808080808080ull) == 0;
}

/// Number of nonzero bytes among m[0, n).
inline std::int64_t count_valid(const std::uint8_t* m, std::ptrdiff_t n) noexcept {
  std::int64_t count = 0;
  std::ptrdiff_t t = 0;
  for (; t + 32 <= n; t += 32) {
    const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(m + t));
    const auto zero_bytes = static_cast<unsigned>(_mm256_movemask_epi8(_mm256_cmpeq_epi8(bytes, _mm256_setzero_si256())));
    count += 32 - __builtin_popcount(zero_bytes);
  }
  for (; t < n; ++t) count += m[t] != 0 ? 1 : 0;
  return count;
}

/// Lanes of a where the lane mask is set, +0 elsewhere (NaN and inf included).
RLHF_ALWAYS_INLINE __m256 keep(__m256 mask, __m256 a) noexcept { return _mm256_and_ps(mask, a); }

/// mask ? a : b, lane by lane (mask lanes all-ones or all-zeros).
RLHF_ALWAYS_INLINE __m256 select(__m256 mask, __m256 a, __m256 b) noexcept {
  return _mm256_blendv_ps(b, a, mask);
}

/// Adds the 8 float lanes of x, widened to double, into acc (two 4-double halves).
RLHF_ALWAYS_INLINE void add_widened(__m256d& lo, __m256d& hi, __m256 x) noexcept {
  lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(x)));
  hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)));
}

/// Σ of 4 doubles in a fixed order: (a0 + a1) + (a2 + a3).
RLHF_ALWAYS_INLINE double sum4(__m256d a) noexcept {
  alignas(32) double v[4];
  _mm256_store_pd(v, a);
  return (v[0] + v[1]) + (v[2] + v[3]);
}

/// Σ of 8 int32 lanes.
RLHF_ALWAYS_INLINE std::int64_t sum8(__m256i a) noexcept {
  alignas(32) std::int32_t v[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(v), a);
  std::int64_t s = 0;
  for (std::int32_t x : v) s += x;
  return s;
}

/// Σ of x[i] over i < n with m[i] ≠ 0 (all i when m is nullptr), in double: 8 lane sums
/// (tokens i ≡ j mod 8), added in a fixed order, then the last n mod 8 tokens in order.
inline double masked_sum_widened(const float* x, const std::uint8_t* m, std::ptrdiff_t n) noexcept {
  __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
  std::ptrdiff_t t = 0;
  for (; t + 8 <= n; t += 8) {
    __m256 v = _mm256_loadu_ps(x + t);
    if (m != nullptr) v = keep(valid8(m + t), v);
    add_widened(lo, hi, v);
  }
  double sum = sum4(lo) + sum4(hi);
  for (; t < n; ++t)
    if (m == nullptr || m[t] != 0) sum += static_cast<double>(x[t]);
  return sum;
}

}  // namespace rlhf::detail::simd

#endif
