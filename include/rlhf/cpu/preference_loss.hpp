// rlhf/cpu/preference_loss.hpp — reference CPU implementation of the reward-model preference
// losses (pairwise Bradley–Terry, InstructGPT K-wise ranking, best-of-N softmax).
// Included by <rlhf/preference_loss.hpp>; arguments are already checked there.
//
// Every element is evaluated in double whatever T is, and every reduction is a double sum in
// index order, so float inputs lose nothing beyond the final rounding of the outputs. These
// losses are O(B) or O(Σ K_p²) — far below threading cost — and run on the calling thread.
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/math/preference_loss.hpp>
#include <rlhf/math/stable.hpp>
#include <rlhf/tensor_view.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace rlhf::cpu_impl {

struct pairwise_result {
  double loss = 0;
  double accuracy = 0;
  double mean_margin = 0;
  double chosen_mean = 0;
  double rejected_mean = 0;
};

/// L = mean_i ℓ_i + c·mean_i (r_c,i + r_r,i)², ℓ_i = −log σ((r_c,i − r_r,i) − m_i) or, when
/// `log_exp_form`, softplus((r_r,i − r_c,i) + m_i) (the same value). Empty margin = 0; empty
/// gradient views are skipped.
template <class T>
pairwise_result pairwise_preference_loss(vector_view<const T> chosen, vector_view<const T> rejected,
                                         vector_view<const T> margin, vector_view<T> dchosen,
                                         vector_view<T> drejected, double center_coef,
                                         bool log_exp_form) {
  const std::ptrdiff_t n = chosen.extent(0);
  const double inv_n = 1.0 / static_cast<double>(n);
  const bool has_margin = !margin.empty();
  double loss_sum = 0, center_sum = 0, margin_sum = 0, chosen_sum = 0, rejected_sum = 0;
  std::ptrdiff_t correct = 0;
  for (std::ptrdiff_t i = 0; i < n; ++i) {
    const double c = static_cast<double>(chosen(i));
    const double r = static_cast<double>(rejected(i));
    const double m = has_margin ? static_cast<double>(margin(i)) : 0.0;
    const auto term = math::pairwise_term(c, r, m, log_exp_form);
    const double loss = term.loss, dloss_dc = term.slope;
    const double sum = c + r;
    loss_sum += loss;
    center_sum += sum * sum;
    margin_sum += c - r;
    chosen_sum += c;
    rejected_sum += r;
    if (c > r) ++correct;
    const double dcenter = center_coef * 2.0 * sum * inv_n;
    if (!dchosen.empty()) dchosen(i) = static_cast<T>(dloss_dc * inv_n + dcenter);
    if (!drejected.empty()) drejected(i) = static_cast<T>(-dloss_dc * inv_n + dcenter);
  }
  pairwise_result result;
  result.loss = loss_sum / static_cast<double>(n);
  if (center_coef != 0.0) result.loss += center_coef * (center_sum / static_cast<double>(n));
  result.accuracy = static_cast<double>(correct) / static_cast<double>(n);
  result.mean_margin = margin_sum / static_cast<double>(n);
  result.chosen_mean = chosen_sum / static_cast<double>(n);
  result.rejected_mean = rejected_sum / static_cast<double>(n);
  return result;
}

/// Calls fn(better, worse) for every comparable pair of prompt p's completions, in the order
/// (i, j), i < j of their positions. Without ranks the completions are best first (rank = i).
template <class Fn>
void for_each_kwise_pair(vector_view<const std::ptrdiff_t> offsets,
                         vector_view<const std::int32_t> ranks, std::ptrdiff_t p, Fn&& fn) {
  const std::ptrdiff_t begin = offsets(p), end = offsets(p + 1);
  const bool ranked = !ranks.empty();
  for (std::ptrdiff_t i = begin; i < end; ++i)
    for (std::ptrdiff_t j = i + 1; j < end; ++j) {
      if (!ranked) {
        fn(i, j);
        continue;
      }
      const std::int32_t ri = ranks(i), rj = ranks(j);
      if (ri < rj) fn(i, j);
      else if (rj < ri) fn(j, i);
      // equal ranks: a tie, not a comparison
    }
}

struct kwise_result {
  double loss = 0;
  double accuracy = 0;
  std::ptrdiff_t pairs = 0;
  std::ptrdiff_t prompts = 0;
};

/// Per prompt: mean over its comparable pairs of −log σ(r_better − r_worse); batch: mean (or
/// sum) over the prompts that have at least one comparable pair.
template <class T>
kwise_result kwise_ranking_loss(vector_view<const T> rewards,
                                vector_view<const std::ptrdiff_t> offsets,
                                vector_view<const std::int32_t> ranks, vector_view<T> drewards,
                                vector_view<T> prompt_losses, bool sum_over_prompts) {
  const std::ptrdiff_t n_prompts = offsets.extent(0) - 1;
  std::vector<std::ptrdiff_t> pair_count(static_cast<std::size_t>(n_prompts), 0);
  kwise_result result;
  for (std::ptrdiff_t p = 0; p < n_prompts; ++p) {
    for_each_kwise_pair(offsets, ranks, p, [&](std::ptrdiff_t, std::ptrdiff_t) {
      ++pair_count[static_cast<std::size_t>(p)];
    });
    if (pair_count[static_cast<std::size_t>(p)] > 0) ++result.prompts;
    result.pairs += pair_count[static_cast<std::size_t>(p)];
  }
  const double prompt_weight =
      sum_over_prompts || result.prompts == 0 ? 1.0 : 1.0 / static_cast<double>(result.prompts);
  const bool want_grad = !drewards.empty();
  std::vector<double> grad(want_grad ? static_cast<std::size_t>(rewards.extent(0)) : 0, 0.0);
  double loss_sum = 0;
  std::ptrdiff_t correct = 0;
  for (std::ptrdiff_t p = 0; p < n_prompts; ++p) {
    const std::ptrdiff_t count = pair_count[static_cast<std::size_t>(p)];
    double prompt_sum = 0;
    if (count > 0) {
      const double pair_weight = prompt_weight / static_cast<double>(count);
      for_each_kwise_pair(offsets, ranks, p, [&](std::ptrdiff_t better, std::ptrdiff_t worse) {
        const double rb = static_cast<double>(rewards(better));
        const double rw = static_cast<double>(rewards(worse));
        const auto term = math::bradley_terry(rb - rw);
        prompt_sum += term.loss;
        if (rb > rw) ++correct;
        if (want_grad) {
          grad[static_cast<std::size_t>(better)] += pair_weight * term.slope;
          grad[static_cast<std::size_t>(worse)] -= pair_weight * term.slope;
        }
      });
    }
    const double prompt_loss = count > 0 ? prompt_sum / static_cast<double>(count) : 0.0;
    if (!prompt_losses.empty()) prompt_losses(p) = static_cast<T>(prompt_loss);
    loss_sum += prompt_loss;
  }
  if (want_grad)
    for (std::ptrdiff_t i = 0; i < rewards.extent(0); ++i)
      drewards(i) = static_cast<T>(grad[static_cast<std::size_t>(i)]);
  result.loss = sum_over_prompts || result.prompts == 0
                    ? loss_sum
                    : loss_sum / static_cast<double>(result.prompts);
  result.accuracy =
      result.pairs > 0 ? static_cast<double>(correct) / static_cast<double>(result.pairs) : 0.0;
  return result;
}

struct best_of_n_result {
  double loss = 0;
  double accuracy = 0;
};

/// L = mean_b (logsumexp_j r_bj − r_b,pick_b); dL/dr_bj = (softmax_j − [j = pick_b]) / B.
template <class T>
best_of_n_result best_of_n_loss(matrix_view<const T> rewards, vector_view<const std::ptrdiff_t> picks,
                                matrix_view<T> drewards) {
  const std::ptrdiff_t rows = rewards.extent(0), n = rewards.extent(1);
  const double inv_rows = 1.0 / static_cast<double>(rows);
  double loss_sum = 0;
  std::ptrdiff_t correct = 0;
  for (std::ptrdiff_t b = 0; b < rows; ++b) {
    const std::ptrdiff_t pick = picks(b);
    double max = static_cast<double>(rewards(b, 0));
    for (std::ptrdiff_t j = 1; j < n; ++j) max = math::max(max, static_cast<double>(rewards(b, j)));
    double sum_exp = 0;
    for (std::ptrdiff_t j = 0; j < n; ++j) sum_exp += std::exp(static_cast<double>(rewards(b, j)) - max);
    const double picked = static_cast<double>(rewards(b, pick));
    loss_sum += std::log(sum_exp) - (picked - max);  // −log_softmax, as TF evaluates it
    bool strictly_best = true;
    for (std::ptrdiff_t j = 0; j < n; ++j)
      if (j != pick && !(picked > static_cast<double>(rewards(b, j)))) strictly_best = false;
    if (strictly_best) ++correct;
    if (!drewards.empty())
      for (std::ptrdiff_t j = 0; j < n; ++j) {
        const double p = std::exp(static_cast<double>(rewards(b, j)) - max) / sum_exp;
        drewards(b, j) = static_cast<T>((p - (j == pick ? 1.0 : 0.0)) * inv_rows);
      }
  }
  return {loss_sum / static_cast<double>(rows),
          static_cast<double>(correct) / static_cast<double>(rows)};
}

}  // namespace rlhf::cpu_impl
