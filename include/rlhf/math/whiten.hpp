// rlhf/math/whiten.hpp — masked moments, their merge, and the whitening map; shared by both
// backends. The enums and masked_moments are part of the public API of <rlhf/whiten.hpp>; they
// live here so that kernels can use them without the host-only headers.
#pragma once

#include <rlhf/config.hpp>

#include <cmath>
#include <cstdint>

namespace rlhf {

/// Which variance whitening divides by.
enum class variance_kind : std::uint8_t {
  population,  ///< Σ(x − μ)²/n: lm-human-preferences (tf.nn.moments), OpenRLHF
  unbiased,    ///< Σ(x − μ)²/(n − 1): TRL (torch.var, masked_var); defined as 0 when n ≤ 1
};

/// Where ε enters the reciprocal standard deviation.
enum class whiten_epsilon : std::uint8_t {
  add_inside_rsqrt,  ///< rsqrt(var + ε): lm-human-preferences, TRL
  clamp_variance,    ///< rsqrt(max(var, ε)): OpenRLHF
};

/// What whitening writes at masked positions (mask = 0).
enum class whiten_masked : std::uint8_t {
  zero,              ///< 0 (TRL-head sets padding advantages to 0 after whitening)
  shift_like_valid,  ///< the same affine map as valid positions (TRL 0.11, OpenRLHF)
  keep_input,        ///< the input value, untouched
};

/// Which centre whitening subtracts.
enum class whiten_mean : std::uint8_t {
  masked,                          ///< Σ_valid x / n_valid
  unmasked_sum_over_masked_count,  ///< Σ_all x / n_valid (OpenRLHF v0.5.9 replay buffer)
};

/// Statistics of the valid elements of one or more tensors. Mergeable across chunks, micro-
/// batches or ranks with merge_moments() (Chan et al.), so whitening over a whole rollout
/// does not need the rollout in one tensor.
struct masked_moments {
  std::int64_t count = 0;     ///< number of valid elements
  double mean = 0.0;          ///< mean of the valid elements; 0 when count = 0
  double variance = 0.0;      ///< population variance Σ(x − mean)²/count; 0 when count = 0
  double unmasked_sum = 0.0;  ///< Σ x over every element, valid or masked (whiten_mean option)

  /// The variance of the given kind: population, or unbiased = population·n/(n − 1), which
  /// is defined as 0 for n ≤ 1 (TRL gives NaN for n = 1 and raises for n = 0).
  [[nodiscard]] RLHF_HOST_DEVICE constexpr double variance_as(variance_kind kind) const noexcept {
    if (kind == variance_kind::population) return variance;
    return count > 1 ? variance * (static_cast<double>(count) / static_cast<double>(count - 1))
                     : 0.0;
  }
};

/// Moments of the union of two disjoint sets of elements (Chan, Golub & LeVeque 1979):
///   n = n_a + n_b,  δ = mean_b − mean_a,  mean = mean_a + δ·n_b/n,
///   M2 = M2_a + M2_b + δ²·n_a·n_b/n,  variance = M2/n   (M2 = variance·count).
/// Exact in real arithmetic; associative and commutative up to rounding.
[[nodiscard]] RLHF_HOST_DEVICE constexpr masked_moments merge_moments(
    const masked_moments& a, const masked_moments& b) noexcept {
  masked_moments m;
  m.unmasked_sum = a.unmasked_sum + b.unmasked_sum;
  if (a.count == 0 || b.count == 0) {
    const masked_moments& only = a.count == 0 ? b : a;
    m.count = only.count;
    m.mean = only.mean;
    m.variance = only.variance;
    return m;
  }
  const double n_a = static_cast<double>(a.count), n_b = static_cast<double>(b.count);
  const double n = n_a + n_b;
  const double delta = b.mean - a.mean;
  m.count = a.count + b.count;
  m.mean = a.mean + delta * (n_b / n);
  m.variance = (a.variance * n_a + b.variance * n_b + delta * delta * (n_a * n_b / n)) / n;
  return m;
}

namespace math {

/// y = (x − center)·rstd + add_back: the affine map of whitening. `add_back` is 0 when the
/// mean is removed (shift_mean = true) and the centre otherwise (lm-human-preferences and
/// TRL add the mean back after scaling: ((x − μ)·rstd) + μ, in that order).
template <class T>
RLHF_HOST_DEVICE constexpr T whiten_affine(T x, T center, T rstd, T add_back) noexcept {
  return (x - center) * rstd + add_back;
}

/// The coefficients of the whitening map for given moments.
struct whiten_coefficients {
  double center = 0.0;
  double rstd = 1.0;
  double add_back = 0.0;
};

/// centre: the masked mean, or Σ_all x / n (v0.5.9). Variance about that centre: population
/// var + (mean − centre)² (Σ(x − c)² = M2 + n(mean − c)²), times n/(n − 1) when unbiased.
/// rstd = 1/√(var + ε) or 1/√max(var, ε); 1 when `scale` is false (OpenRLHF no_std_norm).
RLHF_HOST_DEVICE inline whiten_coefficients whitening_coefficients(
    const masked_moments& m, variance_kind variance, double epsilon, whiten_epsilon epsilon_mode,
    whiten_mean mean_mode, bool shift_mean, bool scale) noexcept {
  whiten_coefficients c;
  c.center = m.mean;
  double population_variance = m.variance;
  if (mean_mode == whiten_mean::unmasked_sum_over_masked_count && m.count > 0) {
    c.center = m.unmasked_sum / static_cast<double>(m.count);
    const double d = m.mean - c.center;
    population_variance += d * d;
  }
  if (scale) {
    masked_moments about_center = m;
    about_center.variance = population_variance;
    const double var = about_center.variance_as(variance);
    const double guarded = epsilon_mode == whiten_epsilon::add_inside_rsqrt
                               ? var + epsilon
                               : (var < epsilon ? epsilon : var);
    c.rstd = 1.0 / std::sqrt(guarded);
  }
  c.add_back = shift_mean ? 0.0 : c.center;
  return c;
}

static_assert(whiten_affine(3.0, 1.0, 0.5, 0.0) == 1.0);
static_assert(whiten_affine(3.0, 1.0, 0.5, 1.0) == 2.0);
// {1, 3} (mean 2, var 1) merged with {5} (mean 5, var 0) is {1, 3, 5}: mean 3, var 8/3.
static_assert(merge_moments({2, 2.0, 1.0, 4.0}, {1, 5.0, 0.0, 5.0}).mean == 3.0);
static_assert(merge_moments({2, 2.0, 1.0, 4.0}, {1, 5.0, 0.0, 5.0}).variance == 8.0 / 3.0);
static_assert(merge_moments({2, 2.0, 1.0, 4.0}, {1, 5.0, 0.0, 5.0}).unmasked_sum == 9.0);
static_assert(merge_moments({}, {1, 5.0, 0.0, 7.0}).mean == 5.0);
static_assert(masked_moments{1, 5.0, 0.0, 5.0}.variance_as(variance_kind::unbiased) == 0.0);
static_assert(masked_moments{3, 5.0, 2.0, 15.0}.variance_as(variance_kind::unbiased) == 3.0);

}  // namespace math
}  // namespace rlhf
