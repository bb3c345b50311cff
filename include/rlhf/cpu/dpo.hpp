// rlhf/cpu/dpo.hpp — reference CPU implementation of the DPO family of losses.
// Included by <rlhf/dpo.hpp>; arguments are already checked there.
//
// Each example is evaluated in double whatever T is; the batch mean and the statistics are
// double sums in index order. O(B), on the calling thread.
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/math/preference_loss.hpp>
#include <rlhf/tensor_view.hpp>

#include <cstddef>

namespace rlhf::cpu_impl {

struct dpo_result {
  double loss = 0;
  double chosen_reward_mean = 0;
  double rejected_reward_mean = 0;
  double reward_accuracy = 0;
  double reward_margin = 0;
};

/// z_i = (π_c − π_r) − (ref_c − ref_r) (reference term dropped when `reference_free`);
/// (loss_i, dloss_i/dz_i) = term(z_i); L = mean_i loss_i; ∂L/∂π_c = slope/B, ∂L/∂π_r = −slope/B.
/// Implicit rewards β(π − ref), or βπ when the reference views are empty. Empty output views
/// are skipped.
template <class T, class Term>
dpo_result dpo_loss(vector_view<const T> policy_chosen, vector_view<const T> policy_rejected,
                    vector_view<const T> reference_chosen, vector_view<const T> reference_rejected,
                    vector_view<T> dpolicy_chosen, vector_view<T> dpolicy_rejected,
                    vector_view<T> losses, vector_view<T> chosen_rewards,
                    vector_view<T> rejected_rewards, double beta, bool reference_free,
                    const Term& term) {
  const std::ptrdiff_t n = policy_chosen.extent(0);
  const double count = static_cast<double>(n);
  const bool has_reference = !reference_chosen.empty();
  double loss_sum = 0, chosen_sum = 0, rejected_sum = 0, margin_sum = 0;
  std::ptrdiff_t correct = 0;
  for (std::ptrdiff_t i = 0; i < n; ++i) {
    const double pc = static_cast<double>(policy_chosen(i));
    const double pr = static_cast<double>(policy_rejected(i));
    const double rc = has_reference ? static_cast<double>(reference_chosen(i)) : 0.0;
    const double rr = has_reference ? static_cast<double>(reference_rejected(i)) : 0.0;
    const double policy_logratio = pc - pr;
    const double reference_logratio = reference_free ? 0.0 : rc - rr;
    const double z = policy_logratio - reference_logratio;
    const math::loss_and_slope<double> t = term(z);
    loss_sum += t.loss;
    if (!losses.empty()) losses(i) = static_cast<T>(t.loss);
    if (!dpolicy_chosen.empty()) dpolicy_chosen(i) = static_cast<T>(t.slope / count);
    if (!dpolicy_rejected.empty()) dpolicy_rejected(i) = static_cast<T>(-t.slope / count);
    const double chosen_reward = beta * (pc - rc);
    const double rejected_reward = beta * (pr - rr);
    if (!chosen_rewards.empty()) chosen_rewards(i) = static_cast<T>(chosen_reward);
    if (!rejected_rewards.empty()) rejected_rewards(i) = static_cast<T>(rejected_reward);
    chosen_sum += chosen_reward;
    rejected_sum += rejected_reward;
    margin_sum += chosen_reward - rejected_reward;
    if (chosen_reward > rejected_reward) ++correct;
  }
  dpo_result result;
  result.loss = loss_sum / count;
  result.chosen_reward_mean = chosen_sum / count;
  result.rejected_reward_mean = rejected_sum / count;
  result.reward_margin = margin_sum / count;
  result.reward_accuracy = static_cast<double>(correct) / count;
  return result;
}

}  // namespace rlhf::cpu_impl
