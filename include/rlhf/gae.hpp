// rlhf/gae.hpp — generalised advantage estimation and discounted (REINFORCE) returns.
//
// Shapes: rewards, values, mask, advantages, returns are all (B, T).
//
//   δ_t = r_t + γ·V_{t+1} − V_t        with V_T = 0
//   A_t = δ_t + γλ·A_{t+1}              with A_T = 0
//   R_t = A_t + V_t                     (the value target)
//
// Rewards and values at masked positions (mask = 0) are taken as 0 before the recursion, which
// runs over the whole padded length — exactly what OpenRLHF (`get_advantages_and_returns`) and
// TRL 0.11 (`compute_advantages`) do. With right padding, padded positions get A = R = 0 and
// do not leak into valid ones. An empty mask view means "every position is valid".
//
// Defaults are the paper's: γ = 1 ("no discount is applied"), λ = 0.95 (lm-human-preferences,
// TRL, DeepSpeed-Chat; OpenRLHF's CLI default is λ = 1).
//
//   rlhf::gae(rlhf::cpu, rewards, values, mask, advantages, returns, {.gamma = 1.0, .lambda = 0.95});
//
// Outputs must not alias inputs. Advantages are not whitened here: see <rlhf/whiten.hpp>.
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/config.hpp>
#include <rlhf/cpu/gae.hpp>
#include <rlhf/detail/checks.hpp>
#include <rlhf/tensor_view.hpp>

#include <cmath>
#include <concepts>
#include <string>
#include <type_traits>

namespace rlhf {

struct gae_options {
  double gamma = 1.0;    ///< discount γ ∈ [0, 1]
  double lambda = 0.95;  ///< GAE λ ∈ [0, 1]
};

struct discounted_returns_options {
  double gamma = 1.0;  ///< discount γ ∈ [0, 1]
};

namespace detail {
template <class View, class Mask>
void check_gae_shapes(const char* function, const View& rewards, const View& values,
                      const Mask& mask) {
  require_not_empty(function, "rewards", rewards);
  require_same_shape(function, "rewards", rewards, "values", values);
  if (!mask.empty()) require_same_shape(function, "rewards", rewards, "mask", mask);
}
inline void check_discount(const char* function, const char* name, double x) {
  require_lazy(x >= 0.0 && x <= 1.0, function,
               [&] { return std::string(name) + " must be in [0, 1], got " + number_string(x); });
}
}  // namespace detail

namespace detail {
template <class T>
void gae_checked(const cpu_backend& backend, matrix_view<const T> rewards,
                 matrix_view<const T> values, mask_view mask, matrix_view<T> advantages,
                 matrix_view<T> returns, const gae_options& options) {
  constexpr const char* function = "rlhf::gae()";
  check_gae_shapes(function, rewards, values, mask);
  require_same_shape(function, "rewards", rewards, "advantages", advantages);
  require_same_shape(function, "rewards", rewards, "returns", returns);
  check_discount(function, "gamma", options.gamma);
  check_discount(function, "lambda", options.lambda);
  cpu_impl::gae(backend, rewards, values, mask, advantages, returns, static_cast<T>(options.gamma),
                static_cast<T>(options.gamma * options.lambda));
}

template <class T>
void discounted_returns_checked(const cpu_backend& backend, matrix_view<const T> rewards,
                                mask_view mask, matrix_view<T> returns,
                                const discounted_returns_options& options) {
  constexpr const char* function = "rlhf::discounted_returns()";
  require_not_empty(function, "rewards", rewards);
  if (!mask.empty()) require_same_shape(function, "rewards", rewards, "mask", mask);
  require_same_shape(function, "rewards", rewards, "returns", returns);
  check_discount(function, "gamma", options.gamma);
  cpu_impl::discounted_returns(backend, rewards, mask, returns, static_cast<T>(options.gamma));
}
}  // namespace detail

/// GAE advantages and returns, (B, T) each. See the header comment for the recursion and
/// masking rules. Overloaded for float and double; views and rlhf::tensor convert implicitly.
inline void gae(const cpu_backend& backend, matrix_view<const float> rewards,
                matrix_view<const float> values, mask_view mask, matrix_view<float> advantages,
                matrix_view<float> returns, const gae_options& options = {}) {
  detail::gae_checked<float>(backend, rewards, values, mask, advantages, returns, options);
}
inline void gae(const cpu_backend& backend, matrix_view<const double> rewards,
                matrix_view<const double> values, mask_view mask, matrix_view<double> advantages,
                matrix_view<double> returns, const gae_options& options = {}) {
  detail::gae_checked<double>(backend, rewards, values, mask, advantages, returns, options);
}

/// Discounted returns G_t = r_t + γ·G_{t+1}, (B, T) (OpenRLHF `get_cumulative_returns`, used
/// by REINFORCE-style estimators). Masked rewards count as 0.
inline void discounted_returns(const cpu_backend& backend, matrix_view<const float> rewards,
                               mask_view mask, matrix_view<float> returns,
                               const discounted_returns_options& options = {}) {
  detail::discounted_returns_checked<float>(backend, rewards, mask, returns, options);
}
inline void discounted_returns(const cpu_backend& backend, matrix_view<const double> rewards,
                               mask_view mask, matrix_view<double> returns,
                               const discounted_returns_options& options = {}) {
  detail::discounted_returns_checked<double>(backend, rewards, mask, returns, options);
}

}  // namespace rlhf

#if defined(__CUDACC__)
#include <rlhf/cuda/gae.cuh>
#else
namespace rlhf {
/// Reached only from a host compiler: the CUDA overloads are compiled by nvcc.
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void gae(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::gae(cuda_backend, ...) needs nvcc: call it from a .cu file that includes "
                "<rlhf/gae.hpp>");
}
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void discounted_returns(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::discounted_returns(cuda_backend, ...) needs nvcc: call it from a .cu file "
                "that includes <rlhf/gae.hpp>");
}
}  // namespace rlhf
#endif
