// rlhf/sampler.hpp — next-token samplers: temperature, top-k, top-p (nucleus) and greedy.
//
// Shapes: logits (B, V), generators B (one rlhf::rng per row), tokens (B), logp (B).
//
//   z = x / τ                                    (temperature τ > 0)
//   greedy: token = argmax x (lowest id on ties); no random number is drawn
//   else:   candidates = ids with x > −∞, ordered by descending logit, ties by ascending id
//           top-k (k > 0): keep the first k of that order (ties at the k-th value: lowest ids)
//           top-p (p < 1): keep the smallest prefix whose probability, renormalised over the
//                          tokens top-k kept, reaches p (≥ p); at least one token
//           token ~ softmax(z) restricted to the kept tokens (one uniform double from the
//           row's generator: rng::categorical over the kept tokens in that order)
//   logp = z_token − logsumexp(z) over the FULL vocabulary (not the truncated distribution):
//          what a training forward at the same temperature recomputes (TRL, OpenRLHF)
//
// The filters run in Hugging Face `generate`'s order: temperature, then top-k, then top-p.
// Row b reads and advances only generators[b], so its token does not depend on the batch size
// or the thread count, and the same generator states give the same tokens.
//
//   std::vector<rlhf::rng> gens;  for (b...) gens.push_back(rlhf::rng{{.seed = s, .stream = b}});
//   rlhf::sample_tokens(rlhf::cpu, logits, gens, tokens, logp, {.temperature = 0.7, .top_p = 0.9});
//
// Logits must be finite or −∞, with at least one finite value per row (else invalid_argument).
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/concepts.hpp>
#include <rlhf/config.hpp>
#include <rlhf/cpu/sampler.hpp>
#include <rlhf/detail/checks.hpp>
#include <rlhf/rng.hpp>
#include <rlhf/tensor_view.hpp>

#include <cmath>
#include <concepts>
#include <cstddef>
#include <span>
#include <string>
#include <type_traits>

namespace rlhf {

struct sampling_options {
  double temperature = 1.0;  ///< τ > 0: logits are divided by it for sampling and for logp
  int top_k = 0;             ///< keep the k most probable tokens; 0 = off (as k ≥ V)
  double top_p = 1.0;        ///< nucleus mass in (0, 1]; 1 = off
  bool greedy = false;       ///< argmax, lowest id on ties; top_k / top_p ignored, nothing drawn
};

namespace detail {
template <class T>
void sample_tokens_checked(const cpu_backend& backend, matrix_view<const T> logits,
                           std::span<rng> generators, vector_view<token_id> tokens, vector_view<T> logp,
                           const sampling_options& options) {
  constexpr const char* function = "rlhf::sample_tokens()";
  require_not_empty(function, "logits", logits);
  const std::ptrdiff_t n_rows = logits.extent(0), n_vocab = logits.extent(1);
  require_lazy(static_cast<std::ptrdiff_t>(generators.size()) == n_rows, function, [&] {
    return "generators has " + std::to_string(generators.size()) + " entries but logits has " +
           std::to_string(n_rows) + " rows";
  });
  require_extent(function, "tokens", tokens, 0, n_rows, "the number of logits rows");
  if (!logp.empty()) require_extent(function, "logp", logp, 0, n_rows, "the number of logits rows");
  require_lazy(options.temperature > 0.0 && std::isfinite(options.temperature), function, [&] {
    return "temperature must be positive and finite, got " + number_string(options.temperature);
  });
  require_lazy(options.top_k >= 0, function,
               [&] { return "top_k must be >= 0 (0 = off), got " + std::to_string(options.top_k); });
  require_lazy(options.top_p > 0.0 && options.top_p <= 1.0, function,
               [&] { return "top_p must be in (0, 1] (1 = off), got " + number_string(options.top_p); });
  require_lazy(static_cast<double>(n_vocab) <= 2147483648.0, function,
               [&] { return "the vocabulary (" + std::to_string(n_vocab) + ") does not fit token_id"; });
  for (std::ptrdiff_t b = 0; b < n_rows; ++b) {
    bool any_finite = false;
    for (std::ptrdiff_t j = 0; j < n_vocab; ++j) {
      const T x = logits(b, j);
      if (std::isfinite(x)) {
        any_finite = true;
      } else if (!(x < T(0))) {  // NaN or +inf
        fail(function, "logits(" + std::to_string(b) + ", " + std::to_string(j) + ") is " +
                           number_string(static_cast<double>(x)) + "; logits must be finite or -inf");
      }
    }
    if (!any_finite)
      fail(function, "row " + std::to_string(b) + " of logits is all -inf: no token can be sampled");
  }
  cpu_impl::sample_tokens(backend, logits, generators, tokens, logp,
                          {.temperature = options.temperature,
                           .top_k = static_cast<std::ptrdiff_t>(options.top_k),
                           .top_p = options.top_p,
                           .greedy = options.greedy});
}
}  // namespace detail

/// One token per row of logits (B, V), drawn with row b's generator; logp (B, may be empty)
/// receives log softmax(logits / τ) at the chosen token over the full vocabulary. See the
/// header comment for the filters, their order and the tie rules.
inline void sample_tokens(const cpu_backend& backend, matrix_view<const float> logits,
                          std::span<rng> generators, vector_view<token_id> tokens, vector_view<float> logp,
                          const sampling_options& options = {}) {
  detail::sample_tokens_checked<float>(backend, logits, generators, tokens, logp, options);
}
inline void sample_tokens(const cpu_backend& backend, matrix_view<const double> logits,
                          std::span<rng> generators, vector_view<token_id> tokens, vector_view<double> logp,
                          const sampling_options& options = {}) {
  detail::sample_tokens_checked<double>(backend, logits, generators, tokens, logp, options);
}

}  // namespace rlhf

namespace rlhf {
/// The CUDA backend has no sampler yet: a call is a compile error that says what to do.
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void sample_tokens(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::sample_tokens(cuda_backend, ...) has no CUDA implementation yet: sample on the "
                "host with rlhf::cpu (copy the logits rows back first)");
}
}  // namespace rlhf
