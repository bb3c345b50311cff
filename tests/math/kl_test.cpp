// Tests for <rlhf/math/kl.hpp> and <rlhf/math/whiten.hpp>: compile-time identities and known
// values of the scalar formulas both backends share.
#include <rlhf/math/kl.hpp>
#include <rlhf/math/whiten.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <limits>

namespace m = rlhf::math;

// Pure-arithmetic estimators are constexpr: k1 = ℓ, k2 = ℓ²/2, abs = |ℓ|.
static_assert(m::kl_k1(-0.25) == -0.25);
static_assert(m::kl_k2(0.5) == 0.125 && m::kl_k2(-0.5) == 0.125);
static_assert(m::kl_abs(-0.0) == 0.0 && m::kl_abs(-7.5) == 7.5);
static_assert(m::whiten_affine(0.0, 0.0, 1.0, 0.0) == 0.0);

TEST_CASE_TEMPLATE("math::kl: known values and derivatives", T, float, double) {
  using rlhf::kl_estimator;
  CHECK(m::kl_estimate(kl_estimator::k3, T(0)) == T(0));
  CHECK(m::kl_estimate(kl_estimator::k3, T(1)) == doctest::Approx(std::exp(-1.0)).epsilon(1e-6));
  CHECK(m::kl_estimate(kl_estimator::k3, T(-1)) == doctest::Approx(std::exp(1.0) - 2).epsilon(1e-6));
  CHECK(m::kl_estimate_derivative(kl_estimator::k1, T(3)) == T(1));
  CHECK(m::kl_estimate_derivative(kl_estimator::k2, T(3)) == T(3));
  CHECK(m::kl_estimate_derivative(kl_estimator::k3, T(0)) == T(0));
  CHECK(m::kl_estimate_derivative(kl_estimator::abs, T(0)) == T(0));
  CHECK(m::kl_estimate_derivative(kl_estimator::abs, T(-2)) == T(-1));
  // p = 0 contributes nothing to the full KL, even against a reference with p_ref = 0.
  const T ninf = -std::numeric_limits<T>::infinity();
  CHECK(m::full_kl_term(ninf, ninf) == T(0));
  CHECK(m::full_kl_term(T(0), T(0)) == T(0));
}

TEST_CASE("math::whiten: coefficients of each epsilon mode and centre") {
  const rlhf::masked_moments mo{.count = 4, .mean = 2.0, .variance = 1e-10, .unmasked_sum = 12.0};
  auto c = m::whitening_coefficients(mo, rlhf::variance_kind::population, 1e-8,
                                     rlhf::whiten_epsilon::add_inside_rsqrt, rlhf::whiten_mean::masked, true, true);
  CHECK(c.center == 2.0);
  CHECK(c.rstd == doctest::Approx(1.0 / std::sqrt(1.01e-8)));
  CHECK(c.add_back == 0.0);
  c = m::whitening_coefficients(mo, rlhf::variance_kind::population, 1e-8, rlhf::whiten_epsilon::clamp_variance,
                                rlhf::whiten_mean::unmasked_sum_over_masked_count, false, true);
  CHECK(c.center == 3.0);
  CHECK(c.add_back == 3.0);
  CHECK(c.rstd == doctest::Approx(1.0 / std::sqrt(1.0 + 1e-10)));  // variance about 3: 1e-10 + 1
  c = m::whitening_coefficients(mo, rlhf::variance_kind::unbiased, 1e-8, rlhf::whiten_epsilon::clamp_variance,
                                rlhf::whiten_mean::masked, true, false);
  CHECK(c.rstd == 1.0);
}
