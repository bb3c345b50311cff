// rlhf/kl.hpp — per-token KL estimates between the policy and the reference model, their
// derivative, the full-distribution KL, and the per-sequence summaries a KL controller reads.
//
// Shapes: logp, ref_logp, mask, out, grad_kl, grad_logp (B, T); logp_full, ref_logp_full
// (B, T, V); row_sums (B). An empty mask view means "every position is valid".
//
//   ℓ_t = logp_t − ref_logp_t          (log π(y_t) − log π_ref(y_t); TRL-head stores −ℓ)
//   k1 = ℓ    k2 = ℓ²/2    k3 = e^{−ℓ} − 1 + ℓ    abs = |ℓ|
//   kl_t = clamp(k(ℓ_t), −c, c)        on valid positions (no clamp by default)
//   kl_t = 0                           on masked positions
//   full_kl_t = Σ_v e^{logp_v}·(logp_v − ref_logp_v)   (TRL 0.11 kl_penalty="full")
//
// Defaults: k1 (the paper and every PPO anchor put k1 in the reward; k3 is non-negative and
// unbiased as a value but gives biased gradients when used inside a loss, trl#4967), no clamp,
// native precision. Options reproduce the anchors:
//
//   anchor                                  options
//   TRL 0.11 _kl_penalty kl / abs / mse     {.estimator = k1 / abs / k2}; full → full_kl()
//   OpenRLHF HEAD compute_approx_kl         {.estimator = k1|k2|k3, .clamp = 10, .precision = float32}
//   OpenRLHF v0.5.9 compute_approx_kl       {.estimator = k1|k3, .precision = float32, .mask_before_transform = true}
//   TRL-head kl_estimator k1 / k3           {.estimator = k1 / k3}
//   DeepSpeed-Chat, lm-human-preferences    {} (k1)
//
// TRL 0.11 and OpenRLHF HEAD compute the estimate on every position (no mask): pass an empty
// mask to get the same values there. Unknown estimator names (OpenRLHF raises ValueError for
// "low_var_kl") cannot be spelled with the enum; a value outside it is rejected.
//
// Numerics: k3 overflows to +inf for ℓ < −88 (float) or ℓ < −709 (double) — that is the true
// value e^{−ℓ}; use the clamp if the reward must stay finite. Everything is finite for |ℓ| ≤ 50
// and for log-probs of magnitude 1e4 with such ratios. full_kl treats terms with p = 0 as 0.
//
// Anchors: TRL v0.11.4 PPOTrainer._kl_penalty; OpenRLHF models/utils.py compute_approx_kl
// (HEAD and v0.5.9); TRL-head experimental/ppo/ppo_trainer.py; lm-human-preferences
// train_policy.py; "Approximating KL divergence", J. Schulman (2020).
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/config.hpp>
#include <rlhf/cpu/kl.hpp>
#include <rlhf/detail/checks.hpp>
#include <rlhf/math/kl.hpp>
#include <rlhf/tensor_view.hpp>

#include <cmath>
#include <concepts>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace rlhf {

// kl_estimator and kl_precision are defined in <rlhf/math/kl.hpp> (kernels use them too).

struct kl_options {
  /// k1 (default: the paper, every anchor's reward), k2, k3 or abs.
  kl_estimator estimator = kl_estimator::k1;
  /// When set, the estimate is clamped to [−clamp, clamp] (OpenRLHF HEAD: 10). Must be > 0.
  std::optional<double> clamp{};
  /// float32 casts both log-probs to float before anything else, as OpenRLHF does even for
  /// float64 inputs; native computes in the input type.
  kl_precision precision = kl_precision::native;
  /// OpenRLHF v0.5.9 multiplied ℓ by the mask before the transform. Masked positions are 0
  /// either way; with this set they are the transform of ℓ·0, which keeps the sign of a k1
  /// zero (−0.0 where ℓ < 0), bit for bit as v0.5.9.
  bool mask_before_transform = false;
  /// Backward only: add into grad_logp instead of overwriting it.
  bool accumulate = false;
};

/// Per-sequence summaries of a per-token KL (B, T) — what the KL controllers and the logs read.
struct kl_summary {
  /// Batch mean of Σ_t kl_t over valid tokens: the adaptive controller's input in
  /// lm-human-preferences and TRL 0.11 (and TRL's logged objective/kl).
  double mean_sequence_sum = 0.0;
  /// Mean over sequences of the per-sequence masked mean: OpenRLHF's logged `kl`, its
  /// controller input. A sequence without valid tokens counts with mean 0 (OpenRLHF: NaN).
  double mean_sequence_mean = 0.0;
  /// Σ kl over all valid tokens / their number (0 when there is none).
  double mean_token = 0.0;
  /// Number of valid tokens.
  std::int64_t tokens = 0;
};

namespace detail {

inline cpu_impl::kl_settings check_kl_options(const char* function, const kl_options& o) {
  const auto e = o.estimator;
  require(e == kl_estimator::k1 || e == kl_estimator::k2 || e == kl_estimator::k3 ||
              e == kl_estimator::abs,
          function,
          "estimator is not a kl_estimator value (" + std::to_string(static_cast<int>(e)) + ")");
  require(o.precision == kl_precision::native || o.precision == kl_precision::float32, function,
          "precision is not a kl_precision value (" +
              std::to_string(static_cast<int>(o.precision)) + ")");
  if (o.clamp)
    require(*o.clamp > 0.0, function, "clamp must be > 0, got " + number_string(*o.clamp));
  cpu_impl::kl_settings s;
  s.estimator = e;
  s.clamp = o.clamp.has_value();
  s.clamp_value = o.clamp.value_or(0.0);
  s.float32 = o.precision == kl_precision::float32;
  s.mask_before_transform = o.mask_before_transform;
  return s;
}

template <class T>
void check_kl_inputs(const char* function, matrix_view<const T> logp, matrix_view<const T> ref,
                     mask_view mask) {
  require_not_empty(function, "logp", logp);
  require_same_shape(function, "logp", logp, "ref_logp", ref);
  if (!mask.empty()) require_same_shape(function, "logp", logp, "mask", mask);
}

template <class T>
void kl_estimate_checked(const cpu_backend& backend, matrix_view<const T> logp,
                         matrix_view<const T> ref, mask_view mask, matrix_view<T> out,
                         const kl_options& o) {
  constexpr const char* function = "rlhf::kl_estimate()";
  check_kl_inputs(function, logp, ref, mask);
  require_same_shape(function, "logp", logp, "out", out);
  const auto s = check_kl_options(function, o);
  cpu_impl::kl_estimate(backend, logp, ref, mask, out, s);
}

template <class T>
void kl_estimate_backward_checked(const cpu_backend& backend, matrix_view<const T> logp,
                                  matrix_view<const T> ref, mask_view mask,
                                  matrix_view<const T> grad_kl, matrix_view<T> grad_logp,
                                  const kl_options& o) {
  constexpr const char* function = "rlhf::kl_estimate_backward()";
  check_kl_inputs(function, logp, ref, mask);
  require_same_shape(function, "logp", logp, "grad_kl", grad_kl);
  require_same_shape(function, "logp", logp, "grad_logp", grad_logp);
  const auto s = check_kl_options(function, o);
  cpu_impl::kl_estimate_backward(backend, logp, ref, mask, grad_kl, grad_logp, s, o.accumulate);
}

template <class T>
void full_kl_checked(const cpu_backend& backend, cube_view<const T> logp, cube_view<const T> ref,
                     mask_view mask, matrix_view<T> out) {
  constexpr const char* function = "rlhf::full_kl()";
  require_not_empty(function, "logp_full", logp);
  require_same_shape(function, "logp_full", logp, "ref_logp_full", ref);
  const auto require_rows_tokens = [&](const char* name, std::ptrdiff_t b, std::ptrdiff_t t,
                                       const std::string& shape) {
    if (b != logp.extent(0) || t != logp.extent(1))
      fail(function, "logp_full is " + shape_string(logp) + " but " + name + " is " + shape);
  };
  if (!mask.empty()) require_rows_tokens("mask", mask.extent(0), mask.extent(1), shape_string(mask));
  require_rows_tokens("out", out.extent(0), out.extent(1), shape_string(out));
  cpu_impl::full_kl(backend, logp, ref, mask, out);
}

template <class T>
kl_summary summarize_kl_checked(const cpu_backend& backend, matrix_view<const T> kl,
                                mask_view mask, vector_view<T> row_sums) {
  constexpr const char* function = "rlhf::summarize_kl()";
  require_not_empty(function, "kl", kl);
  if (!mask.empty()) require_same_shape(function, "kl", kl, "mask", mask);
  if (!row_sums.empty())
    require_extent(function, "row_sums", row_sums, 0, kl.extent(0), "the row count of kl");
  std::vector<double> sums;
  std::vector<std::int64_t> counts;
  cpu_impl::kl_row_sums(backend, kl, mask, sums, counts);
  kl_summary s;
  double total = 0.0, sum_of_sums = 0.0, sum_of_means = 0.0;
  for (std::size_t b = 0; b < sums.size(); ++b) {
    sum_of_sums += sums[b];
    total += sums[b];
    s.tokens += counts[b];
    if (counts[b] > 0) sum_of_means += sums[b] / static_cast<double>(counts[b]);
    if (!row_sums.empty()) row_sums(static_cast<std::ptrdiff_t>(b)) = static_cast<T>(sums[b]);
  }
  const double rows = static_cast<double>(sums.size());
  s.mean_sequence_sum = sum_of_sums / rows;
  s.mean_sequence_mean = sum_of_means / rows;
  s.mean_token = s.tokens > 0 ? total / static_cast<double>(s.tokens) : 0.0;
  return s;
}

}  // namespace detail

/// Per-token KL estimate kl (B, T) from logp and ref_logp (B, T); masked positions are 0.
/// `out` may alias logp or ref_logp (elementwise).
inline void kl_estimate(const cpu_backend& backend, matrix_view<const float> logp,
                        matrix_view<const float> ref_logp, mask_view mask, matrix_view<float> out,
                        const kl_options& options = {}) {
  detail::kl_estimate_checked<float>(backend, logp, ref_logp, mask, out, options);
}
inline void kl_estimate(const cpu_backend& backend, matrix_view<const double> logp,
                        matrix_view<const double> ref_logp, mask_view mask,
                        matrix_view<double> out, const kl_options& options = {}) {
  detail::kl_estimate_checked<double>(backend, logp, ref_logp, mask, out, options);
}

/// grad_logp = grad_kl · d kl / d logp (B, T), for an estimator used inside a loss (GRPO
/// style): k1 → 1, k2 → ℓ, k3 → 1 − e^{−ℓ}, abs → sign ℓ; 0 on masked positions and where the
/// clamp is active. d kl / d ref_logp is the negative. Overwrites grad_logp unless
/// options.accumulate. grad_logp may alias grad_kl.
inline void kl_estimate_backward(const cpu_backend& backend, matrix_view<const float> logp,
                                 matrix_view<const float> ref_logp, mask_view mask,
                                 matrix_view<const float> grad_kl, matrix_view<float> grad_logp,
                                 const kl_options& options = {}) {
  detail::kl_estimate_backward_checked<float>(backend, logp, ref_logp, mask, grad_kl, grad_logp,
                                              options);
}
inline void kl_estimate_backward(const cpu_backend& backend, matrix_view<const double> logp,
                                 matrix_view<const double> ref_logp, mask_view mask,
                                 matrix_view<const double> grad_kl,
                                 matrix_view<double> grad_logp, const kl_options& options = {}) {
  detail::kl_estimate_backward_checked<double>(backend, logp, ref_logp, mask, grad_kl, grad_logp,
                                               options);
}

/// Full-distribution KL per position, out (B, T) = Σ_v e^{logp}(logp − ref_logp) over the
/// vocabulary of logp_full, ref_logp_full (B, T, V) (TRL 0.11 kl_penalty="full"), summed in
/// double; 0 on masked positions.
inline void full_kl(const cpu_backend& backend, cube_view<const float> logp_full,
                    cube_view<const float> ref_logp_full, mask_view mask, matrix_view<float> out) {
  detail::full_kl_checked<float>(backend, logp_full, ref_logp_full, mask, out);
}
inline void full_kl(const cpu_backend& backend, cube_view<const double> logp_full,
                    cube_view<const double> ref_logp_full, mask_view mask,
                    matrix_view<double> out) {
  detail::full_kl_checked<double>(backend, logp_full, ref_logp_full, mask, out);
}

/// Per-sequence summaries of a per-token KL (B, T) over valid positions, accumulated in double
/// and independent of the thread count; optionally the per-row sums into row_sums (B) (an
/// empty view skips them).
[[nodiscard]] inline kl_summary summarize_kl(const cpu_backend& backend,
                                             matrix_view<const float> kl, mask_view mask,
                                             vector_view<float> row_sums = {}) {
  return detail::summarize_kl_checked<float>(backend, kl, mask, row_sums);
}
[[nodiscard]] inline kl_summary summarize_kl(const cpu_backend& backend,
                                             matrix_view<const double> kl, mask_view mask,
                                             vector_view<double> row_sums = {}) {
  return detail::summarize_kl_checked<double>(backend, kl, mask, row_sums);
}

}  // namespace rlhf

#if defined(__CUDACC__)
#include <rlhf/cuda/kl.cuh>
#else
namespace rlhf {
/// Reached only from a host compiler: the CUDA overloads are compiled by nvcc.
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void kl_estimate(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::kl_estimate(cuda_backend, ...) needs nvcc: call it from a .cu file that "
                "includes <rlhf/kl.hpp>");
}
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void kl_estimate_backward(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::kl_estimate_backward(cuda_backend, ...) needs nvcc: call it from a .cu "
                "file that includes <rlhf/kl.hpp>");
}
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void full_kl(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::full_kl(cuda_backend, ...) needs nvcc: call it from a .cu file that "
                "includes <rlhf/kl.hpp>");
}
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void summarize_kl(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::summarize_kl(cuda_backend, ...) needs nvcc: call it from a .cu file that "
                "includes <rlhf/kl.hpp>");
}
}  // namespace rlhf
#endif
