// rlhf/models/gpt/sampling.hpp — one row of the GPT's token sampler (private; see
// docs/models/gpt.md "Generation").
//
//   z = logits / temperature;  logp = z[token] − logsumexp(z)
//
// greedy takes the first arg-max; otherwise top-k keeps the k largest z (ties: lower id first),
// top-p then keeps the smallest prefix of those, by decreasing z, whose renormalised probability
// reaches top_p (at least one token), and the token is drawn from the kept ones with
// probabilities ∝ exp(z). The returned log-prob is always the one of the temperature-scaled,
// unfiltered distribution: the value a training forward recomputes (TRL, OpenRLHF).
#pragma once

#include <rlhf/concepts.hpp>
#include <rlhf/rng.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <numeric>
#include <span>
#include <vector>

namespace rlhf::detail {

/// Scratch a row sampler reuses between calls (no allocation per token once sized).
struct sampler_scratch {
  std::vector<double> z;
  std::vector<double> weights;
  std::vector<std::int32_t> order;
};

template <class T>
token_id sample_row(const T* logits, std::ptrdiff_t vocab, rng& gen, const generation_options& options,
                    sampler_scratch& scratch, double& logp) {
  auto& z = scratch.z;
  z.resize(static_cast<std::size_t>(vocab));
  const double inv_t = 1.0 / options.temperature;
  double max = -std::numeric_limits<double>::infinity();
  std::size_t argmax = 0;
  for (std::size_t j = 0; j < z.size(); ++j) {
    z[j] = static_cast<double>(logits[j]) * inv_t;
    if (z[j] > max) {
      max = z[j];
      argmax = j;
    }
  }
  double sum = 0;
  for (double v : z) sum += std::exp(v - max);
  const double lse = max + std::log(sum);
  std::size_t token = argmax;
  if (!options.greedy) {
    auto& order = scratch.order;
    order.resize(z.size());
    std::iota(order.begin(), order.end(), 0);
    const auto before = [&](std::int32_t a, std::int32_t b) {
      const double za = z[static_cast<std::size_t>(a)], zb = z[static_cast<std::size_t>(b)];
      return za > zb || (za == zb && a < b);
    };
    std::size_t kept = z.size();
    const bool top_k = options.top_k > 0 && static_cast<std::size_t>(options.top_k) < z.size();
    if (top_k) {
      kept = static_cast<std::size_t>(options.top_k);
      std::nth_element(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(kept), order.end(), before);
    }
    if (options.top_p < 1.0) {
      std::sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(kept), before);
      double total = 0;
      for (std::size_t i = 0; i < kept; ++i) total += std::exp(z[static_cast<std::size_t>(order[i])] - max);
      double cumulative = 0;
      std::size_t n = 0;
      while (n < kept) {
        cumulative += std::exp(z[static_cast<std::size_t>(order[n])] - max);
        ++n;
        if (cumulative >= options.top_p * total) break;
      }
      kept = n;
    } else if (top_k) {
      std::sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(kept));  // by id
    }
    auto& w = scratch.weights;
    w.resize(kept);
    for (std::size_t i = 0; i < kept; ++i) w[i] = std::exp(z[static_cast<std::size_t>(order[i])] - max);
    token = static_cast<std::size_t>(order[gen.categorical(std::span<const double>(w.data(), kept))]);
  }
  logp = z[token] - lse;
  return static_cast<token_id>(token);
}

}  // namespace rlhf::detail
