// rlhf/lm_loss.hpp — the language-model loss (token NLL) of SFT and of PPO-ptx's pretraining
// term, forward and gradient w.r.t. the logits, on the log-prob kernels.
//
// Shapes: logits, dlogits (B, T, V); labels, mask (B, T). labels[b, t] is the target of
// logits[b, t, :] (already shifted: for next-token prediction pass the logits of positions
// 0..T−2 and the tokens 1..T−1, e.g. as views with T − 1 rows and the original strides).
//
// A token is valid when mask[b, t] ≠ 0 (an empty mask: every token) and labels[b, t] differs
// from ignore_index (−100, PyTorch's CrossEntropyLoss default). With ℓ_bt = −log softmax(
// logits[b, t] / τ)[labels[b, t]] on valid tokens:
//
//   token_mean     loss = Σ ℓ / N                   N = number of valid tokens (default; TRL's
//                                                   SFTTrainer, OpenRLHF GPTLMLoss, DS-Chat ptx,
//                                                   PyTorch cross_entropy reduction="mean")
//   sum            loss = Σ ℓ
//   sequence_mean  loss = mean over rows with ≥ 1 valid token of (Σ_t ℓ_bt / n_b)
//
// With no valid token the loss is 0 and so is the gradient (PyTorch returns NaN for a mean over
// nothing). dlogits = grad_scale · ∂loss/∂logits = grad_scale·w_bt·(p − onehot)/τ on valid rows
// and 0 on the others; grad_scale lets a caller fold in a coefficient (γ_ptx = 27.8 for
// PPO-ptx) without another pass. dlogits may be the logits view itself (in place); an empty
// dlogits computes the loss only. Labels of valid tokens must lie in [0, V).
//
//   auto [loss, tokens] = rlhf::lm_loss(rlhf::cpu, logits, labels, mask, logits_as_grad);
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/concepts.hpp>
#include <rlhf/config.hpp>
#include <rlhf/cpu/lm_loss.hpp>
#include <rlhf/detail/checks.hpp>
#include <rlhf/logprobs.hpp>
#include <rlhf/tensor_view.hpp>

#include <cmath>
#include <concepts>
#include <cstddef>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace rlhf {

enum class lm_loss_reduction {
  token_mean,     ///< Σ ℓ / (number of valid tokens)
  sum,            ///< Σ ℓ
  sequence_mean,  ///< mean over non-empty rows of the row's token mean
};

struct lm_loss_options {
  lm_loss_reduction reduction = lm_loss_reduction::token_mean;
  /// Labels equal to this are not counted (PyTorch's default ignore_index).
  token_id ignore_index = -100;
  /// τ > 0: logits are divided by it before the softmax.
  double temperature = 1.0;
  /// dlogits = grad_scale · ∂loss/∂logits (the loss itself is not scaled).
  double grad_scale = 1.0;
};

struct lm_loss_result {
  double loss = 0.0;          ///< the reduced loss (0 when no token is valid)
  std::ptrdiff_t tokens = 0;  ///< number of valid tokens
};

namespace detail {

template <class T>
lm_loss_result lm_loss_checked(const cpu_backend& backend, cube_view<const T> logits, matrix_view<const token_id> labels,
                               mask_view mask, cube_view<T> dlogits, const lm_loss_options& options) {
  constexpr std::string_view function = "rlhf::lm_loss()";
  check_logits(function, logits);
  require_rows_of(function, "logits", logits, "labels", labels);
  if (!mask.empty()) require_rows_of(function, "logits", logits, "mask", mask);
  if (!dlogits.empty()) check_dlogits(function, logits, dlogits);
  check_temperature(function, options.temperature);
  require_lazy(options.reduction == lm_loss_reduction::token_mean || options.reduction == lm_loss_reduction::sum ||
                   options.reduction == lm_loss_reduction::sequence_mean,
               function, [&] { return "unknown reduction " + std::to_string(static_cast<int>(options.reduction)); });
  require_lazy(std::isfinite(options.grad_scale), function,
               [&] { return "grad_scale must be finite, got " + number_string(options.grad_scale); });

  const std::ptrdiff_t B = logits.extent(0), n_tokens = logits.extent(1);
  const auto valid = [&](std::ptrdiff_t b, std::ptrdiff_t t) {
    return (mask.empty() || mask(b, t) != 0) && labels(b, t) != options.ignore_index;
  };
  check_labels(function, labels, logits.extent(2), [&](std::ptrdiff_t b, std::ptrdiff_t t) { return !valid(b, t); });

  std::vector<double> weight(static_cast<std::size_t>(B * n_tokens), 0.0);
  std::vector<std::ptrdiff_t> row_count(static_cast<std::size_t>(B), 0);
  std::ptrdiff_t total = 0, rows = 0;
  for (std::ptrdiff_t b = 0; b < B; ++b) {
    for (std::ptrdiff_t t = 0; t < n_tokens; ++t) row_count[static_cast<std::size_t>(b)] += valid(b, t) ? 1 : 0;
    total += row_count[static_cast<std::size_t>(b)];
    rows += row_count[static_cast<std::size_t>(b)] > 0 ? 1 : 0;
  }
  for (std::ptrdiff_t b = 0; b < B; ++b) {
    const auto n_b = static_cast<double>(row_count[static_cast<std::size_t>(b)]);
    for (std::ptrdiff_t t = 0; t < n_tokens; ++t) {
      if (!valid(b, t)) continue;
      double w = 1.0;
      if (options.reduction == lm_loss_reduction::token_mean) w = 1.0 / static_cast<double>(total);
      if (options.reduction == lm_loss_reduction::sequence_mean) w = 1.0 / (n_b * static_cast<double>(rows));
      weight[static_cast<std::size_t>(b * n_tokens + t)] = w;
    }
  }
  const double loss =
      cpu_impl::lm_loss<T>(backend, logits, labels, weight, dlogits, options.temperature, options.grad_scale);
  return {loss, total};
}

}  // namespace detail

/// The reduced token NLL, and its gradient w.r.t. the logits into dlogits (when not empty;
/// may be the logits view itself). See the header comment for validity and reductions.
inline lm_loss_result lm_loss(const cpu_backend& backend, cube_view<const float> logits,
                              matrix_view<const token_id> labels, mask_view mask = {}, cube_view<float> dlogits = {},
                              const lm_loss_options& options = {}) {
  return detail::lm_loss_checked<float>(backend, logits, labels, mask, dlogits, options);
}
inline lm_loss_result lm_loss(const cpu_backend& backend, cube_view<const double> logits,
                              matrix_view<const token_id> labels, mask_view mask = {}, cube_view<double> dlogits = {},
                              const lm_loss_options& options = {}) {
  return detail::lm_loss_checked<double>(backend, logits, labels, mask, dlogits, options);
}

}  // namespace rlhf

namespace rlhf {
/// The CUDA backend has no LM-loss kernel yet: a call with cuda_backend stops at compile time.
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void lm_loss(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::lm_loss(cuda_backend, ...) is not implemented for the CUDA backend yet");
}
}  // namespace rlhf
