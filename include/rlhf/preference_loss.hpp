// rlhf/preference_loss.hpp — reward-model training losses on preference data.
//
// Pairwise (Bradley–Terry; InstructGPT §3.5, Llama 2 §3.2.2 margin; TRL RewardTrainer,
// OpenRLHF PairWiseLoss / LogExpLoss). Shapes: chosen, rejected, margin, dchosen, drejected (B).
//
//   L = mean_i −log σ(r_c,i − r_r,i − m_i)  +  c · mean_i (r_c,i + r_r,i)²
//   ∂L/∂r_c,i = −σ(−(Δ_i − m_i))/B + 2c(r_c,i + r_r,i)/B,   ∂L/∂r_r,i = +σ(−(Δ_i − m_i))/B + 2c(r_c,i + r_r,i)/B
//
// K-wise ranking (InstructGPT eq. 1). A ragged batch of P prompts; prompt p has K_p ≥ 2
// completions, their rewards concatenated into one vector of N = Σ K_p entries, with
// offsets (P + 1): prompt p owns [offsets[p], offsets[p+1]). ranks (N): 0 = best; equal ranks
// are a tie and that pair is not a comparison; an empty ranks view means "each prompt's
// completions are given best first, no ties".
//
//   L_p = mean over comparable pairs (i better than j) of −log σ(r_i − r_j)   (= 1/C(K,2) Σ without ties)
//   L   = mean over the prompts that have at least one comparable pair of L_p
//
// Each completion is scored once, its gradient collects every pair it takes part in.
//
// Best-of-N (lm-human-preferences PickBest): rewards (B, N), picks (B):
//   L = mean_b −log softmax(r_b)[pick_b],   ∂L/∂r_bj = (softmax(r_b)_j − [j = pick_b]) / B
//
//   auto s = rlhf::pairwise_preference_loss(rlhf::cpu, chosen, rejected, {}, dchosen, drejected);
//   auto k = rlhf::kwise_ranking_loss(rlhf::cpu, rewards, offsets, ranks, drewards, {});
//
// Gradients are written (overwritten) where the caller says; an empty gradient view skips that
// gradient (evaluation). Outputs must not alias inputs. Every term goes through a stable
// log-sigmoid: losses and gradients are finite for reward gaps of ±1e4. Float inputs are
// evaluated and reduced in double. Not threaded (O(B) and O(Σ K_p²) work).
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/config.hpp>
#include <rlhf/cpu/preference_loss.hpp>
#include <rlhf/detail/checks.hpp>
#include <rlhf/tensor_view.hpp>

#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

namespace rlhf {

/// How the pairwise term is written. Both give the same value; see docs/components/preference_loss.md.
enum class pairwise_form {
  log_sigmoid,  ///< −log σ(r_c − r_r − m): TRL RewardTrainer, OpenRLHF PairWiseLoss (default)
  log_exp,      ///< log(1 + exp(r_r − r_c + m)): OpenRLHF LogExpLoss, evaluated as a stable softplus
};

struct pairwise_loss_options {
  /// TRL `center_rewards_coefficient` (Eisenstein et al. 2023): adds c·mean((r_c + r_r)²),
  /// pulling rewards towards mean 0. 0 = off (TRL's default None); TRL suggests 0.01.
  double center_coef = 0.0;
  pairwise_form form = pairwise_form::log_sigmoid;
};

/// Statistics of one pairwise batch (the metrics TRL RewardTrainer logs).
struct pairwise_loss_stats {
  double loss = 0;           ///< the value whose gradient was written
  double accuracy = 0;       ///< fraction with r_c > r_r strictly (a tie counts as wrong, as in TRL)
  double mean_margin = 0;    ///< mean(r_c − r_r), the margin input not subtracted (TRL "margin")
  double chosen_mean = 0;    ///< mean(r_c)
  double rejected_mean = 0;  ///< mean(r_r)
};

/// How the K-wise loss combines prompts.
enum class kwise_reduction {
  mean_over_prompts,  ///< InstructGPT: each prompt is one batch element (default)
  sum_over_prompts,   ///< Σ_p L_p: for gradient accumulation with a global normaliser applied later
};

struct kwise_loss_options {
  kwise_reduction reduction = kwise_reduction::mean_over_prompts;
};

struct kwise_loss_stats {
  double loss = 0;             ///< the reduced loss (0 when no prompt has a comparable pair)
  double accuracy = 0;         ///< fraction of comparable pairs with r_better > r_worse (0 if none)
  std::ptrdiff_t pairs = 0;    ///< comparable pairs in the batch
  std::ptrdiff_t prompts = 0;  ///< prompts with at least one comparable pair (the mean's divisor)
};

/// One comparison expanded from a K-wise batch: indices into the concatenated rewards.
struct ranked_pair {
  std::ptrdiff_t better = 0;
  std::ptrdiff_t worse = 0;
  std::ptrdiff_t prompt = 0;
  bool operator==(const ranked_pair&) const = default;
};

struct best_of_n_stats {
  double loss = 0;      ///< mean softmax cross-entropy
  double accuracy = 0;  ///< fraction of rows whose pick has the strictly highest reward
};

namespace detail {

template <class T>
void check_gradient_output(const char* function, const char* input_name,
                           const vector_view<const T>& input, const char* grad_name,
                           const vector_view<T>& grad) {
  if (!grad.empty()) require_same_shape(function, input_name, input, grad_name, grad);
}

template <class T>
pairwise_loss_stats pairwise_preference_loss_checked(vector_view<const T> chosen,
                                                     vector_view<const T> rejected,
                                                     vector_view<const T> margin,
                                                     vector_view<T> dchosen,
                                                     vector_view<T> drejected,
                                                     const pairwise_loss_options& options) {
  constexpr const char* function = "rlhf::pairwise_preference_loss()";
  require_not_empty(function, "chosen", chosen);
  require_same_shape(function, "chosen", chosen, "rejected", rejected);
  if (!margin.empty()) require_same_shape(function, "chosen", chosen, "margin", margin);
  check_gradient_output(function, "chosen", chosen, "dchosen", dchosen);
  check_gradient_output(function, "chosen", chosen, "drejected", drejected);
  require(std::isfinite(options.center_coef) && options.center_coef >= 0.0, function,
          "center_coef must be finite and >= 0, got " + number_string(options.center_coef));
  require(options.form == pairwise_form::log_sigmoid || options.form == pairwise_form::log_exp,
          function, "form must be pairwise_form::log_sigmoid or pairwise_form::log_exp, got " +
                        std::to_string(static_cast<int>(options.form)));
  const auto r = cpu_impl::pairwise_preference_loss(chosen, rejected, margin, dchosen, drejected,
                                                    options.center_coef,
                                                    options.form == pairwise_form::log_exp);
  return {r.loss, r.accuracy, r.mean_margin, r.chosen_mean, r.rejected_mean};
}

/// Offsets (P + 1) start at 0, end at n, and give every prompt ≥ 2 completions; ranks are empty
/// or n non-negative entries.
inline void check_kwise_layout(const char* function, std::ptrdiff_t n,
                               vector_view<const std::ptrdiff_t> offsets,
                               vector_view<const std::int32_t> ranks) {
  require(offsets.extent(0) >= 2, function,
          "offsets has " + std::to_string(offsets.extent(0)) +
              " entries but needs P + 1 >= 2 (at least one prompt)");
  const std::ptrdiff_t n_prompts = offsets.extent(0) - 1;
  require(offsets(0) == 0, function, "offsets[0] must be 0, got " + std::to_string(offsets(0)));
  for (std::ptrdiff_t p = 0; p < n_prompts; ++p) {
    const std::ptrdiff_t k = offsets(p + 1) - offsets(p);
    require(k >= 2, function,
            "prompt " + std::to_string(p) + " has " + std::to_string(k) + " completions (offsets[" +
                std::to_string(p) + "] = " + std::to_string(offsets(p)) + ", offsets[" +
                std::to_string(p + 1) + "] = " + std::to_string(offsets(p + 1)) +
                ") but needs at least 2");
  }
  require(offsets(n_prompts) == n, function,
          "offsets[" + std::to_string(n_prompts) + "] is " + std::to_string(offsets(n_prompts)) +
              " but rewards has " + std::to_string(n) + " entries");
  if (ranks.empty()) return;
  require(ranks.extent(0) == n, function,
          "ranks is " + shape_string(ranks) + " but rewards is " + std::to_string(n));
  for (std::ptrdiff_t i = 0; i < n; ++i)
    require(ranks(i) >= 0, function,
            "ranks[" + std::to_string(i) + "] must be >= 0 (0 = best), got " +
                std::to_string(ranks(i)));
}

template <class T>
kwise_loss_stats kwise_ranking_loss_checked(vector_view<const T> rewards,
                                            vector_view<const std::ptrdiff_t> offsets,
                                            vector_view<const std::int32_t> ranks,
                                            vector_view<T> drewards, vector_view<T> prompt_losses,
                                            const kwise_loss_options& options) {
  constexpr const char* function = "rlhf::kwise_ranking_loss()";
  require_not_empty(function, "rewards", rewards);
  check_kwise_layout(function, rewards.extent(0), offsets, ranks);
  check_gradient_output(function, "rewards", rewards, "drewards", drewards);
  if (!prompt_losses.empty())
    require_extent(function, "prompt_losses", prompt_losses, 0, offsets.extent(0) - 1,
                   "the number of prompts");
  require(options.reduction == kwise_reduction::mean_over_prompts ||
              options.reduction == kwise_reduction::sum_over_prompts,
          function, "reduction must be kwise_reduction::mean_over_prompts or sum_over_prompts, got " +
                        std::to_string(static_cast<int>(options.reduction)));
  const auto r = cpu_impl::kwise_ranking_loss(rewards, offsets, ranks, drewards, prompt_losses,
                                              options.reduction == kwise_reduction::sum_over_prompts);
  return {r.loss, r.accuracy, r.pairs, r.prompts};
}

template <class T>
best_of_n_stats best_of_n_loss_checked(matrix_view<const T> rewards,
                                       vector_view<const std::ptrdiff_t> picks,
                                       matrix_view<T> drewards) {
  constexpr const char* function = "rlhf::best_of_n_loss()";
  require_not_empty(function, "rewards", rewards);
  require_extent(function, "picks", picks, 0, rewards.extent(0), "the number of reward rows");
  if (!drewards.empty()) require_same_shape(function, "rewards", rewards, "drewards", drewards);
  for (std::ptrdiff_t b = 0; b < picks.extent(0); ++b)
    require(picks(b) >= 0 && picks(b) < rewards.extent(1), function,
            "picks[" + std::to_string(b) + "] = " + std::to_string(picks(b)) + " is outside [0, " +
                std::to_string(rewards.extent(1)) + ")");
  const auto r = cpu_impl::best_of_n_loss(rewards, picks, drewards);
  return {r.loss, r.accuracy};
}

}  // namespace detail

/// Pairwise Bradley–Terry loss with optional per-pair margin (empty view = none) and reward
/// centering. Writes ∂L/∂chosen and ∂L/∂rejected (B) (empty view = skip). See the header
/// comment for the formula; `margin` is Llama 2's m(r).
inline pairwise_loss_stats pairwise_preference_loss(const cpu_backend&,
                                                    vector_view<const float> chosen,
                                                    vector_view<const float> rejected,
                                                    vector_view<const float> margin,
                                                    vector_view<float> dchosen,
                                                    vector_view<float> drejected,
                                                    const pairwise_loss_options& options = {}) {
  return detail::pairwise_preference_loss_checked<float>(chosen, rejected, margin, dchosen,
                                                         drejected, options);
}
inline pairwise_loss_stats pairwise_preference_loss(const cpu_backend&,
                                                    vector_view<const double> chosen,
                                                    vector_view<const double> rejected,
                                                    vector_view<const double> margin,
                                                    vector_view<double> dchosen,
                                                    vector_view<double> drejected,
                                                    const pairwise_loss_options& options = {}) {
  return detail::pairwise_preference_loss_checked<double>(chosen, rejected, margin, dchosen,
                                                          drejected, options);
}

/// InstructGPT K-wise ranking loss over a ragged batch (see the header comment). Writes
/// ∂L/∂rewards (N) and each prompt's L_p into prompt_losses (P); either may be empty (skip).
/// A prompt whose completions all tie has L_p = 0, gets zero gradient and is left out of the
/// mean; a batch with no comparable pair at all has loss 0.
inline kwise_loss_stats kwise_ranking_loss(const cpu_backend&, vector_view<const float> rewards,
                                           vector_view<const std::ptrdiff_t> offsets,
                                           vector_view<const std::int32_t> ranks,
                                           vector_view<float> drewards,
                                           vector_view<float> prompt_losses,
                                           const kwise_loss_options& options = {}) {
  return detail::kwise_ranking_loss_checked<float>(rewards, offsets, ranks, drewards,
                                                   prompt_losses, options);
}
inline kwise_loss_stats kwise_ranking_loss(const cpu_backend&, vector_view<const double> rewards,
                                           vector_view<const std::ptrdiff_t> offsets,
                                           vector_view<const std::int32_t> ranks,
                                           vector_view<double> drewards,
                                           vector_view<double> prompt_losses,
                                           const kwise_loss_options& options = {}) {
  return detail::kwise_ranking_loss_checked<double>(rewards, offsets, ranks, drewards,
                                                    prompt_losses, options);
}

/// Every comparable pair of a K-wise layout (offsets (P + 1), ranks (N) or empty = best first),
/// in prompt order then (i, j), i < j: for users who train on pairwise batches. Note that the
/// pairwise loss over these pairs weights every pair equally, whereas kwise_ranking_loss weights
/// every prompt equally; they agree when all prompts have the same number of pairs.
inline std::vector<ranked_pair> kwise_pairs(vector_view<const std::ptrdiff_t> offsets,
                                            vector_view<const std::int32_t> ranks = {}) {
  constexpr const char* function = "rlhf::kwise_pairs()";
  detail::require(offsets.extent(0) >= 1, function, "offsets is empty (0)");
  const std::ptrdiff_t n = offsets(offsets.extent(0) - 1);
  detail::check_kwise_layout(function, n, offsets, ranks);
  std::vector<ranked_pair> pairs;
  for (std::ptrdiff_t p = 0; p + 1 < offsets.extent(0); ++p)
    cpu_impl::for_each_kwise_pair(offsets, ranks, p, [&](std::ptrdiff_t better, std::ptrdiff_t worse) {
      pairs.push_back({better, worse, p});
    });
  return pairs;
}

/// lm-human-preferences best-of-N loss: softmax cross-entropy of each row's N rewards against
/// the labeller's pick. Writes ∂L/∂rewards (B, N) (empty = skip).
inline best_of_n_stats best_of_n_loss(const cpu_backend&, matrix_view<const float> rewards,
                                      vector_view<const std::ptrdiff_t> picks,
                                      matrix_view<float> drewards) {
  return detail::best_of_n_loss_checked<float>(rewards, picks, drewards);
}
inline best_of_n_stats best_of_n_loss(const cpu_backend&, matrix_view<const double> rewards,
                                      vector_view<const std::ptrdiff_t> picks,
                                      matrix_view<double> drewards) {
  return detail::best_of_n_loss_checked<double>(rewards, picks, drewards);
}

}  // namespace rlhf

#if defined(__CUDACC__)
#include <rlhf/cuda/preference_loss.cuh>
namespace rlhf {
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void kwise_ranking_loss(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::kwise_ranking_loss(cuda_backend, ...) is not implemented for the CUDA "
                "backend yet");
}
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void best_of_n_loss(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::best_of_n_loss(cuda_backend, ...) is not implemented for the CUDA backend "
                "yet");
}
}  // namespace rlhf
#else
namespace rlhf {
/// Reached only from a host compiler: CUDA overloads are compiled by nvcc.
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void pairwise_preference_loss(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::pairwise_preference_loss(cuda_backend, ...) needs nvcc: call it from a .cu "
                "file that includes <rlhf/preference_loss.hpp>");
}
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void kwise_ranking_loss(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::kwise_ranking_loss(cuda_backend, ...) needs nvcc: call it from a .cu file "
                "that includes <rlhf/preference_loss.hpp>");
}
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void best_of_n_loss(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::best_of_n_loss(cuda_backend, ...) needs nvcc: call it from a .cu file that "
                "includes <rlhf/preference_loss.hpp>");
}
}  // namespace rlhf
#endif
