// Tests for <rlhf/math/fast_exp.hpp> and the vector exp of <rlhf/detail/simd.hpp>: ulp error
// against double-precision exp over a dense sweep of float inputs (subnormal results, the
// overflow threshold and ±1e4 included), NaN and ±inf, and the narrow and wide vector paths
// giving the same bits.
//
// The suite's flags do not enable AVX2, so on x86-64 GCC this file turns AVX2 + FMA code
// generation on for itself (as tests/cpu/gae_test.cpp does) to exercise the vector exp, and
// skips those cases on a CPU without AVX2.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__AVX2__)
#pragma GCC target("avx2,fma")
#define __AVX2__ 1
#define __FMA__ 1
#define RLHF_TEST_FAST_EXP_PRAGMA_AVX2 1
#endif

#include <rlhf/detail/simd.hpp>
#include <rlhf/math/fast_exp.hpp>

#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace {

constexpr float flt_max = std::numeric_limits<float>::max();

/// |got − e^x| in units of the float spacing at e^x (the subnormal spacing below FLT_MIN).
/// Overflow: got = +inf counts as exact when e^x is within 2 ulp of rounding to +inf.
double ulp_error(float got, float x) {
  const double exact = std::exp(static_cast<double>(x));
  if (std::isnan(x)) return std::isnan(got) ? 0.0 : INFINITY;
  const double top_ulp = std::ldexp(1.0, 127 - 23);
  if (std::isinf(got)) return got > 0 && exact >= static_cast<double>(flt_max) - 1.5 * top_ulp ? 0.0 : INFINITY;
  if (exact >= static_cast<double>(flt_max) + 0.5 * top_ulp) return INFINITY;  // must have overflowed
  const double spacing = exact < static_cast<double>(std::numeric_limits<float>::min())
                             ? static_cast<double>(std::numeric_limits<float>::denorm_min())
                             : std::ldexp(1.0, std::ilogb(exact) - 23);
  return std::fabs(static_cast<double>(got) - exact) / spacing;
}

/// Every input the sweeps visit: floats from −110 to 95 by a stride of bit patterns, plus
/// every float near the overflow threshold and a denser walk through the subnormal results.
std::vector<float> sweep_inputs() {
  std::vector<float> xs;
  const auto walk = [&](float from, float to, std::uint32_t stride) {
    // from, to of the same sign; walk the bit patterns (monotone in magnitude)
    std::uint32_t a = std::bit_cast<std::uint32_t>(from), b = std::bit_cast<std::uint32_t>(to);
    if (a > b) std::swap(a, b);
    for (std::uint64_t u = a; u <= b; u += stride) xs.push_back(std::bit_cast<float>(static_cast<std::uint32_t>(u)));
  };
  walk(0.0f, 95.0f, 613);
  walk(-0.0f, -110.0f, 613);
  walk(88.6f, 88.8f, 1);           // around the overflow threshold 88.7228
  walk(87.2f, 87.4f, 1);           // the narrow path's bound
  walk(-87.2f, -87.4f, 1);
  walk(-87.3f, -104.5f, 7);        // subnormal results and the flush to zero at −103.97
  walk(1e-8f, 1e-3f, 4099);        // e^x ≈ 1 + x
  walk(-1e-8f, -1e-3f, 4099);
  for (float x : {0.0f, -0.0f, 1.0f, -1.0f, 0.5f, 88.0f, -88.0f, 88.72f, 88.7228f, 88.73f, -87.33f,
                  -103.97f, -104.0f, 1e4f, -1e4f, 3.4e38f, -3.4e38f, std::numeric_limits<float>::denorm_min()})
    xs.push_back(x);
  return xs;
}

bool cpu_has_avx2() {
#if defined(RLHF_TEST_FAST_EXP_PRAGMA_AVX2)
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return true;
#endif
}

}  // namespace

TEST_CASE("math::fast_exp: within 2 ulp of exp over a dense sweep, subnormal results included") {
  double worst = 0;
  float worst_x = 0;
  for (const float x : sweep_inputs()) {
    const double e = ulp_error(rlhf::math::fast_exp(x), x);
    if (e > worst) {
      worst = e;
      worst_x = x;
    }
  }
  CAPTURE(worst_x);
  CHECK(worst <= 2.0);
}

TEST_CASE("math::fast_exp: exact special values") {
  using rlhf::math::fast_exp;
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(fast_exp(0.0f) == 1.0f);
  CHECK(fast_exp(-0.0f) == 1.0f);
  CHECK(fast_exp(inf) == inf);
  CHECK(fast_exp(-inf) == 0.0f);
  CHECK(std::isnan(fast_exp(std::numeric_limits<float>::quiet_NaN())));
  CHECK(fast_exp(1e4f) == inf);
  CHECK(fast_exp(88.73f) == inf);
  CHECK(fast_exp(-1e4f) == 0.0f);
  CHECK(fast_exp(-104.0f) == 0.0f);
  CHECK(std::isfinite(fast_exp(88.72f)));
  CHECK(fast_exp(-100.0f) > 0.0f);  // subnormal, not flushed
  CHECK(fast_exp(-100.0f) < std::numeric_limits<float>::min());
  static_assert(rlhf::math::fast_exp(0.0f) == 1.0f);  // constexpr
}

#if defined(__AVX2__) && defined(__FMA__)
TEST_CASE("detail::simd::exp8: within 2 ulp of exp over the sweep; narrow and wide paths agree bitwise") {
  if (!cpu_has_avx2()) return;
  namespace s = rlhf::detail::simd;
  auto xs = sweep_inputs();
  // Mix special lanes into some vectors so both paths run on every kind of lane.
  xs.push_back(std::numeric_limits<float>::quiet_NaN());
  xs.push_back(std::numeric_limits<float>::infinity());
  xs.push_back(-std::numeric_limits<float>::infinity());
  while (xs.size() % 8 != 0) xs.push_back(0.25f);
  double worst = 0;
  float worst_x = 0;
  std::size_t narrow_vectors = 0, mismatches = 0;
  for (std::size_t i = 0; i < xs.size(); i += 8) {
    const __m256 x = _mm256_loadu_ps(&xs[i]);
    float got[8], wide[8], narrow[8];
    _mm256_storeu_ps(got, s::exp8(x));
    _mm256_storeu_ps(wide, s::exp8_wide(x));
    const bool all_narrow = _mm256_movemask_ps(s::exp8_outside_narrow(x)) == 0;
    if (all_narrow) {
      ++narrow_vectors;
      _mm256_storeu_ps(narrow, s::exp8_narrow(x));
      if (std::memcmp(narrow, wide, sizeof narrow) != 0) ++mismatches;
    }
    if (std::memcmp(got, wide, sizeof got) != 0) {
      // NaN payloads may differ; anything else must be the same bits.
      for (int l = 0; l < 8; ++l)
        if (!(std::isnan(got[l]) && std::isnan(wide[l])) && std::bit_cast<std::uint32_t>(got[l]) != std::bit_cast<std::uint32_t>(wide[l]))
          ++mismatches;
    }
    for (int l = 0; l < 8; ++l) {
      const double e = ulp_error(got[l], xs[i + static_cast<std::size_t>(l)]);
      if (e > worst) {
        worst = e;
        worst_x = xs[i + static_cast<std::size_t>(l)];
      }
    }
  }
  CAPTURE(worst_x);
  CHECK(worst <= 2.0);
  CHECK(mismatches == 0);
  CHECK(narrow_vectors > 1000);
}

TEST_CASE("detail::simd: mask helpers and the widened masked sum") {
  if (!cpu_has_avx2()) return;
  namespace s = rlhf::detail::simd;
  std::vector<std::uint8_t> m(77);
  std::vector<float> x(77);
  std::int64_t expected_count = 0;
  double expected_sum = 0;
  for (std::size_t i = 0; i < m.size(); ++i) {
    m[i] = static_cast<std::uint8_t>(i % 3 == 0 ? 0 : (i % 5 == 0 ? 200 : 1));
    x[i] = m[i] != 0 ? 0.5f * static_cast<float>(i) : std::numeric_limits<float>::quiet_NaN();
    if (m[i] != 0) {
      ++expected_count;
      expected_sum += static_cast<double>(x[i]);
    }
  }
  CHECK(s::count_valid(m.data(), 77) == expected_count);
  CHECK(s::masked_sum_widened(x.data(), m.data(), 77) == expected_sum);  // small integers/2: exact
  CHECK(s::all_valid8(m.data() + 1) == false);
  const std::uint8_t ones[8] = {1, 2, 3, 255, 128, 7, 1, 1};
  CHECK(s::all_valid8(ones));
  const std::uint8_t one_zero[8] = {1, 2, 3, 255, 0, 7, 1, 1};
  CHECK_FALSE(s::all_valid8(one_zero));
}
#endif
