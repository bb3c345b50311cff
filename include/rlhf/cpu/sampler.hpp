// rlhf/cpu/sampler.hpp — reference CPU implementation of the token samplers. Included by
// <rlhf/sampler.hpp>; arguments are already checked there.
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/concepts.hpp>
#include <rlhf/detail/parallel.hpp>
#include <rlhf/math/logprobs.hpp>
#include <rlhf/rng.hpp>
#include <rlhf/tensor_view.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <span>
#include <vector>

namespace rlhf::cpu_impl {

/// The options in the form the row loop uses (checked: temperature > 0, top_k ≥ 0,
/// top_p ∈ (0, 1]).
struct sampler_settings {
  double temperature = 1.0;
  std::ptrdiff_t top_k = 0;  ///< 0 or ≥ V: off
  double top_p = 1.0;        ///< 1: off
  bool greedy = false;
};

/// Per-thread buffers of the row loop.
struct sampler_scratch {
  std::vector<double> weights;       // p_j of the kept tokens, in candidate order
  std::vector<std::ptrdiff_t> order;  // candidate token ids
};

/// Token ids ordered by descending logit, ties by ascending id: a strict total order, so every
/// sort and selection below is deterministic.
template <class T>
struct by_logit_then_id {
  vector_view<const T> row;
  bool operator()(std::ptrdiff_t a, std::ptrdiff_t b) const noexcept {
    const T xa = row(a), xb = row(b);
    return xa > xb || (xa == xb && a < b);
  }
};

/// One row: the chosen token and log softmax(x / τ) at it over the full vocabulary.
template <class T>
void sample_row(vector_view<const T> row, rng& gen, const sampler_settings& s, sampler_scratch& scratch,
                token_id& token, double& logp) {
  const std::ptrdiff_t n_vocab = row.extent(0);
  const double inv_temperature = 1.0 / s.temperature;
  // Full-vocabulary softmax state of z = x / τ (math/logprobs.hpp), and the argmax (lowest id
  // on ties: the first maximum met in id order).
  math::softmax_state<double> state;
  std::ptrdiff_t argmax = 0;
  for (std::ptrdiff_t j = 0; j < n_vocab; ++j) {
    const double z = static_cast<double>(row(j)) * inv_temperature;
    state = math::softmax_push(state, z);
    if (row(j) > row(argmax)) argmax = j;
  }
  const double lse = math::softmax_logsumexp(state);

  std::ptrdiff_t chosen = argmax;
  if (!s.greedy) {
    auto& order = scratch.order;
    auto& weights = scratch.weights;
    order.clear();
    for (std::ptrdiff_t j = 0; j < n_vocab; ++j)
      if (row(j) != -std::numeric_limits<T>::infinity()) order.push_back(j);  // never sampled
    const by_logit_then_id<T> before{row};
    const bool use_top_k = s.top_k > 0 && s.top_k < static_cast<std::ptrdiff_t>(order.size());
    const bool use_top_p = s.top_p < 1.0;
    if (use_top_k) {
      // The k first tokens of the order: ties at the k-th logit keep the lowest ids.
      std::nth_element(order.begin(), order.begin() + (s.top_k - 1), order.end(), before);
      order.resize(static_cast<std::size_t>(s.top_k));
    }
    if (use_top_p) {
      // The smallest prefix (by descending probability, ties by id) whose mass, renormalised
      // over the tokens top-k kept, reaches top_p; at least one token.
      std::sort(order.begin(), order.end(), before);
      double kept_lse = lse;
      if (use_top_k) {
        math::softmax_state<double> kept;
        for (std::ptrdiff_t j : order) kept = math::softmax_push(kept, static_cast<double>(row(j)) * inv_temperature);
        kept_lse = math::softmax_logsumexp(kept);
      }
      double mass = 0;
      std::size_t keep = 0;
      while (keep < order.size()) {
        const double z = static_cast<double>(row(order[keep])) * inv_temperature;
        mass += math::softmax_probability(z, kept_lse).p;
        ++keep;
        if (mass >= s.top_p) break;
      }
      order.resize(keep);
    }
    weights.resize(order.size());
    for (std::size_t i = 0; i < order.size(); ++i)
      weights[i] = math::softmax_probability(static_cast<double>(row(order[i])) * inv_temperature, lse).p;
    // The kept set always holds the most probable token (p ≥ 1/V > 0), so the weights never
    // sum to 0. One uniform double is drawn (two 32-bit words of the row's stream).
    chosen = order[gen.categorical(std::span<const double>(weights))];
  }
  token = static_cast<token_id>(chosen);
  logp = static_cast<double>(row(chosen)) * inv_temperature - lse;
}

template <class T>
void sample_tokens(const cpu_backend& backend, matrix_view<const T> logits, std::span<rng> generators,
                   vector_view<token_id> tokens, vector_view<T> logp, const sampler_settings& s) {
  const std::ptrdiff_t n_rows = logits.extent(0), n_vocab = logits.extent(1);
  // Greedy rows cost one pass; sampled rows a selection or a sort: split from a few rows on.
  const std::ptrdiff_t min_rows = std::max<std::ptrdiff_t>(1, 16384 / std::max<std::ptrdiff_t>(1, n_vocab));
  detail::parallel_for(
      backend, n_rows,
      [&](std::ptrdiff_t begin, std::ptrdiff_t end) {
        sampler_scratch scratch;
        for (std::ptrdiff_t b = begin; b < end; ++b) {
          double lp = 0;
          sample_row(logits.row(b), generators[static_cast<std::size_t>(b)], s, scratch, tokens(b), lp);
          if (!logp.empty()) logp(b) = static_cast<T>(lp);
        }
      },
      min_rows);
}

}  // namespace rlhf::cpu_impl
