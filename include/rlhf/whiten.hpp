// rlhf/whiten.hpp — masked sums, means and variances, and whitening (advantage / reward
// normalisation).
//
// Shapes: x, mask, out are (B, T); per-row outputs are (B). An empty mask view means "every
// position is valid"; otherwise mask(b, t) ≠ 0 marks a valid position.
//
//   n = Σ mask,   μ = Σ mask·x / n,   σ² = Σ mask·(x − μ)² / n       (population, the default)
//                                      σ² = Σ mask·(x − μ)² / (n − 1) (unbiased, TRL)
//   whiten(x) = (x − μ)·rsqrt(σ² + ε)            on valid positions  (ε = 1e-8)
//             = 0                                on masked positions (the default)
//
// Defaults (DESIGN §4): masked statistics, population variance, ε added inside the rsqrt,
// masked positions set to 0 afterwards. Options reproduce every anchor:
//
//   anchor                                   options
//   lm-human-preferences whiten              {}  (shift_mean = false for rewards)
//   TRL 0.11 whiten / masked_whiten          {.variance = unbiased, .masked_positions = shift_like_valid}
//   TRL head (advantages)                    {.variance = unbiased}             (padding zeroed)
//   OpenRLHF (advantages, whole rollout)     {.epsilon_mode = clamp_variance, .masked_positions = shift_like_valid}
//   OpenRLHF --no_advantage_std_norm         ... plus .scale = false
//   OpenRLHF v0.5.9 replay buffer            ... plus .mean = unmasked_sum_over_masked_count
//
// Whitening over several tensors (OpenRLHF normalises over every experience of a rollout and
// over all data-parallel ranks) is moments() per tensor, merge_moments() (Chan et al.; gather
// the moments of every rank and merge them), then apply_whitening() per tensor. whiten() is
// exactly moments() + apply_whitening() on one tensor.
//
// Edge cases, all without NaN: no valid element → count 0, mean 0, variance 0, whiten writes 0
// everywhere (keep_input: the input); one valid element → unbiased variance defined as 0 (TRL
// gives NaN), so its whitened value is 0. An empty x is an error.
//
// Statistics accumulate in double (also for float inputs) and do not depend on the thread
// count. `out` may be `x` itself (in-place); other overlaps are not allowed.
//
// Anchors: lm-human-preferences utils/core.py whiten; TRL v0.11.4 trl/core.py whiten,
// masked_mean, masked_var, masked_whiten; OpenRLHF experience_maker.py (advantage
// normalisation) and v0.5.9 replay_buffer.py normalize.
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/config.hpp>
#include <rlhf/cpu/whiten.hpp>
#include <rlhf/detail/checks.hpp>
#include <rlhf/math/whiten.hpp>
#include <rlhf/tensor_view.hpp>

#include <cmath>
#include <concepts>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>

namespace rlhf {

// variance_kind, whiten_epsilon, whiten_masked, whiten_mean, masked_moments and
// merge_moments() are defined in <rlhf/math/whiten.hpp> (kernels use them too).

struct whiten_options {
  /// Population (lm-human-preferences, OpenRLHF) or unbiased (TRL) variance.
  variance_kind variance = variance_kind::population;
  /// ε > 0 guarding the rsqrt.
  double epsilon = 1e-8;
  /// rsqrt(var + ε) (lm-human-preferences, TRL) or rsqrt(max(var, ε)) (OpenRLHF).
  whiten_epsilon epsilon_mode = whiten_epsilon::add_inside_rsqrt;
  /// false adds the mean back after scaling (reward whitening in lm-human-preferences / TRL).
  bool shift_mean = true;
  /// false only subtracts the mean (OpenRLHF --no_advantage_std_norm); ε is then unused.
  bool scale = true;
  /// What masked positions receive: 0, the same affine map (TRL 0.11, OpenRLHF), or x.
  whiten_masked masked_positions = whiten_masked::zero;
  /// The centre: the masked mean, or Σ_all x / n_valid (OpenRLHF v0.5.9 replay buffer).
  whiten_mean mean = whiten_mean::masked;
};

/// Merge any number of moments, left to right.
[[nodiscard]] inline masked_moments merge_moments(std::span<const masked_moments> parts) noexcept {
  masked_moments m;
  for (const auto& p : parts) m = merge_moments(m, p);
  return m;
}

namespace detail {

template <class T>
void check_masked_input(const char* function, matrix_view<const T> x, mask_view mask) {
  require_not_empty(function, "x", x);
  if (!mask.empty()) require_same_shape(function, "x", x, "mask", mask);
}

template <class T>
void check_row_output(const char* function, matrix_view<const T> x, vector_view<T> out) {
  require_extent(function, "out", out, 0, x.extent(0), "the row count of x");
}

// The checks below run on every call: their messages are built only on failure.
inline void check_variance_kind(const char* function, variance_kind v) {
  require_lazy(v == variance_kind::population || v == variance_kind::unbiased, function, [&] {
    return "variance is not a variance_kind value (" + std::to_string(static_cast<int>(v)) + ")";
  });
}

inline void check_whiten_options(const char* function, const whiten_options& o) {
  check_variance_kind(function, o.variance);
  require_lazy(o.epsilon_mode == whiten_epsilon::add_inside_rsqrt ||
                   o.epsilon_mode == whiten_epsilon::clamp_variance,
               function, [&] {
                 return "epsilon_mode is not a whiten_epsilon value (" +
                        std::to_string(static_cast<int>(o.epsilon_mode)) + ")";
               });
  require_lazy(o.masked_positions == whiten_masked::zero ||
                   o.masked_positions == whiten_masked::shift_like_valid ||
                   o.masked_positions == whiten_masked::keep_input,
               function, [&] {
                 return "masked_positions is not a whiten_masked value (" +
                        std::to_string(static_cast<int>(o.masked_positions)) + ")";
               });
  require_lazy(o.mean == whiten_mean::masked || o.mean == whiten_mean::unmasked_sum_over_masked_count,
               function, [&] {
                 return "mean is not a whiten_mean value (" + std::to_string(static_cast<int>(o.mean)) + ")";
               });
  if (o.scale)
    require_lazy(std::isfinite(o.epsilon) && o.epsilon > 0.0, function,
                 [&] { return "epsilon must be finite and > 0, got " + number_string(o.epsilon); });
}

inline void check_moments(const char* function, const masked_moments& m) {
  require_lazy(m.count >= 0, function,
               [&] { return "moments.count must be >= 0, got " + std::to_string(m.count); });
  require_lazy(std::isfinite(m.mean), function,
               [&] { return "moments.mean must be finite, got " + number_string(m.mean); });
  require_lazy(std::isfinite(m.variance) && m.variance >= 0.0, function,
               [&] { return "moments.variance must be finite and >= 0, got " + number_string(m.variance); });
  require_lazy(std::isfinite(m.unmasked_sum), function,
               [&] { return "moments.unmasked_sum must be finite, got " + number_string(m.unmasked_sum); });
}

template <class T>
double masked_sum_checked(const cpu_backend& backend, matrix_view<const T> x, mask_view mask) {
  check_masked_input("rlhf::masked_sum()", x, mask);
  const auto r = cpu_impl::masked_row_sums(backend, x, mask);
  double sum = 0.0;
  for (double s : r.sum) sum += s;
  return sum;
}

template <class T>
void masked_row_reduce_checked(const char* function, const cpu_backend& backend,
                               matrix_view<const T> x, mask_view mask, vector_view<T> out,
                               bool mean) {
  check_masked_input(function, x, mask);
  check_row_output(function, x, out);
  cpu_impl::masked_row_reduce(backend, x, mask, out, mean);
}

template <class T>
masked_moments moments_checked(const char* function, const cpu_backend& backend,
                               matrix_view<const T> x, mask_view mask) {
  check_masked_input(function, x, mask);
  return cpu_impl::moments(backend, x, mask);
}

template <class T>
void apply_whitening_unchecked(const cpu_backend& backend, matrix_view<const T> x, mask_view mask,
                               const masked_moments& m, matrix_view<T> out,
                               const whiten_options& o) {
  const math::whiten_coefficients c = math::whitening_coefficients(
      m, o.variance, o.epsilon, o.epsilon_mode, o.mean, o.shift_mean, o.scale);
  cpu_impl::apply_whitening(backend, x, mask, c, o.masked_positions, m.count == 0, out);
}

template <class T>
void apply_whitening_checked(const cpu_backend& backend, matrix_view<const T> x, mask_view mask,
                             const masked_moments& m, matrix_view<T> out,
                             const whiten_options& o) {
  constexpr const char* function = "rlhf::apply_whitening()";
  check_masked_input(function, x, mask);
  require_same_shape(function, "x", x, "out", out);
  check_whiten_options(function, o);
  check_moments(function, m);
  apply_whitening_unchecked(backend, x, mask, m, out, o);
}

template <class T>
masked_moments whiten_checked(const cpu_backend& backend, matrix_view<const T> x, mask_view mask,
                              matrix_view<T> out, const whiten_options& o) {
  constexpr const char* function = "rlhf::whiten()";
  check_masked_input(function, x, mask);
  require_same_shape(function, "x", x, "out", out);
  check_whiten_options(function, o);
  const masked_moments m = cpu_impl::moments(backend, x, mask);
  apply_whitening_unchecked(backend, x, mask, m, out, o);
  return m;
}

}  // namespace detail

/// Σ of the valid elements of x (B, T), accumulated in double. 0 when none is valid.
[[nodiscard]] inline double masked_sum(const cpu_backend& backend, matrix_view<const float> x,
                                       mask_view mask) {
  return detail::masked_sum_checked<float>(backend, x, mask);
}
[[nodiscard]] inline double masked_sum(const cpu_backend& backend, matrix_view<const double> x,
                                       mask_view mask) {
  return detail::masked_sum_checked<double>(backend, x, mask);
}

/// Per-row Σ of the valid elements: out(b), (B).
inline void masked_sum(const cpu_backend& backend, matrix_view<const float> x, mask_view mask,
                       vector_view<float> out) {
  detail::masked_row_reduce_checked<float>("rlhf::masked_sum()", backend, x, mask, out, false);
}
inline void masked_sum(const cpu_backend& backend, matrix_view<const double> x, mask_view mask,
                       vector_view<double> out) {
  detail::masked_row_reduce_checked<double>("rlhf::masked_sum()", backend, x, mask, out, false);
}

/// Mean of the valid elements of x (B, T). 0 when none is valid (TRL gives NaN).
[[nodiscard]] inline double masked_mean(const cpu_backend& backend, matrix_view<const float> x,
                                        mask_view mask) {
  return detail::moments_checked<float>("rlhf::masked_mean()", backend, x, mask).mean;
}
[[nodiscard]] inline double masked_mean(const cpu_backend& backend, matrix_view<const double> x,
                                        mask_view mask) {
  return detail::moments_checked<double>("rlhf::masked_mean()", backend, x, mask).mean;
}

/// Per-row mean of the valid elements: out(b), (B); 0 for a row with no valid element (TRL's
/// masked_mean(axis=1) gives NaN there).
inline void masked_mean(const cpu_backend& backend, matrix_view<const float> x, mask_view mask,
                        vector_view<float> out) {
  detail::masked_row_reduce_checked<float>("rlhf::masked_mean()", backend, x, mask, out, true);
}
inline void masked_mean(const cpu_backend& backend, matrix_view<const double> x, mask_view mask,
                        vector_view<double> out) {
  detail::masked_row_reduce_checked<double>("rlhf::masked_mean()", backend, x, mask, out, true);
}

/// Variance of the valid elements (two-pass). Unbiased with n ≤ 1 valid elements and any kind
/// with n = 0 give 0 (TRL: NaN for n = 1, ValueError for n = 0).
[[nodiscard]] inline double masked_var(const cpu_backend& backend, matrix_view<const float> x,
                                       mask_view mask,
                                       variance_kind kind = variance_kind::population) {
  detail::check_variance_kind("rlhf::masked_var()", kind);
  return detail::moments_checked<float>("rlhf::masked_var()", backend, x, mask).variance_as(kind);
}
[[nodiscard]] inline double masked_var(const cpu_backend& backend, matrix_view<const double> x,
                                       mask_view mask,
                                       variance_kind kind = variance_kind::population) {
  detail::check_variance_kind("rlhf::masked_var()", kind);
  return detail::moments_checked<double>("rlhf::masked_var()", backend, x, mask).variance_as(kind);
}

/// Count, mean, population variance and unmasked sum of x (B, T): the input of
/// merge_moments() and apply_whitening().
[[nodiscard]] inline masked_moments moments(const cpu_backend& backend,
                                            matrix_view<const float> x, mask_view mask) {
  return detail::moments_checked<float>("rlhf::moments()", backend, x, mask);
}
[[nodiscard]] inline masked_moments moments(const cpu_backend& backend,
                                            matrix_view<const double> x, mask_view mask) {
  return detail::moments_checked<double>("rlhf::moments()", backend, x, mask);
}

/// out = the whitening map of the given moments applied to x (B, T). Use it with moments
/// merged over several tensors or ranks. `out` may be `x`.
inline void apply_whitening(const cpu_backend& backend, matrix_view<const float> x,
                            mask_view mask, const masked_moments& moments, matrix_view<float> out,
                            const whiten_options& options = {}) {
  detail::apply_whitening_checked<float>(backend, x, mask, moments, out, options);
}
inline void apply_whitening(const cpu_backend& backend, matrix_view<const double> x,
                            mask_view mask, const masked_moments& moments,
                            matrix_view<double> out, const whiten_options& options = {}) {
  detail::apply_whitening_checked<double>(backend, x, mask, moments, out, options);
}

/// Whitens x (B, T) into out (B, T) with its own masked moments, which it returns.
/// `out` may be `x` (in-place).
inline masked_moments whiten(const cpu_backend& backend, matrix_view<const float> x,
                             mask_view mask, matrix_view<float> out,
                             const whiten_options& options = {}) {
  return detail::whiten_checked<float>(backend, x, mask, out, options);
}
inline masked_moments whiten(const cpu_backend& backend, matrix_view<const double> x,
                             mask_view mask, matrix_view<double> out,
                             const whiten_options& options = {}) {
  return detail::whiten_checked<double>(backend, x, mask, out, options);
}

}  // namespace rlhf

#if defined(__CUDACC__)
#include <rlhf/cuda/whiten.cuh>
#else
namespace rlhf {
/// Reached only from a host compiler: the CUDA overloads are compiled by nvcc.
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void masked_sum(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::masked_sum(cuda_backend, ...) needs nvcc: call it from a .cu file "
                "that includes <rlhf/whiten.hpp>");
}
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void masked_mean(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::masked_mean(cuda_backend, ...) needs nvcc: call it from a .cu file "
                "that includes <rlhf/whiten.hpp>");
}
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void masked_var(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::masked_var(cuda_backend, ...) needs nvcc: call it from a .cu file "
                "that includes <rlhf/whiten.hpp>");
}
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void moments(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::moments(cuda_backend, ...) needs nvcc: call it from a .cu file "
                "that includes <rlhf/whiten.hpp>");
}
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void apply_whitening(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::apply_whitening(cuda_backend, ...) needs nvcc: call it from a .cu file "
                "that includes <rlhf/whiten.hpp>");
}
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void whiten(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::whiten(cuda_backend, ...) needs nvcc: call it from a .cu file "
                "that includes <rlhf/whiten.hpp>");
}
}  // namespace rlhf
#endif
