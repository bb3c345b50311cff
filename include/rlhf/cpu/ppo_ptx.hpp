// rlhf/cpu/ppo_ptx.hpp — reference CPU implementation of the pretraining (ptx) term of PPO-ptx.
// Included by <rlhf/ppo_ptx.hpp>; arguments are already checked there. The PPO terms are in
// <rlhf/cpu/ppo.hpp> (whose row counts, weights and row copies this file reuses).
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/config.hpp>
#include <rlhf/cpu/ppo.hpp>
#include <rlhf/detail/parallel.hpp>
#include <rlhf/detail/rows.hpp>
#include <rlhf/tensor_view.hpp>

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

namespace rlhf::cpu_impl {

struct ppo_ptx_row {
  std::int64_t count = 0;
  double nll = 0;  ///< Σ −logp over valid tokens
};

struct ppo_ptx_totals {
  double loss = 0;
  std::int64_t tokens = 0;
  std::int64_t sequences = 0;
};

/// Pretraining NLL: reduce(−logp) over valid tokens; d(coef·loss)/d(logp) into `dlogp` (may be
/// empty). With the token-mean rule this is the mean token cross-entropy of the batch. One pass
/// after counting the mask: every row's gradient is the constant −coef·weight (0 at padding).
template <class T>
ppo_ptx_totals ppo_ptx_nll(const cpu_backend& backend, matrix_view<const T> logp, mask_view mask,
                           matrix_view<T> dlogp, const ppo_reduction_rule& rule, double coef) {
  const std::ptrdiff_t n_rows = logp.extent(0), n_tokens = logp.extent(1);
  const std::vector<std::int64_t> counts = ppo_row_counts(mask, n_rows, n_tokens);
  const ppo_row_weights weights = ppo_make_weights(rule, counts);
  std::vector<ppo_ptx_row> rows(static_cast<std::size_t>(n_rows));
  detail::parallel_for(
      backend, n_rows,
      [&](std::ptrdiff_t begin, std::ptrdiff_t end) {
        std::vector<T> s_lp, s_grad;
        std::vector<std::uint8_t> s_mask;
        for (std::ptrdiff_t b = begin; b < end; ++b) {
          const std::int64_t count = counts[static_cast<std::size_t>(b)];
          const T* lp = detail::row_in(logp, b, s_lp);
          const std::uint8_t* m = detail::row_in(mask, b, s_mask);
          T* g = detail::row_out(dlogp, b, s_grad);
          // d(−logp)/d(logp) = −1, times the row's weight and coef (as a second pass would).
          const T valid_grad = coef == 0.0 ? T(0) : static_cast<T>(-1.0 * (weights.weight(count) * coef));
          double nll = 0;
#if defined(__AVX2__) && defined(__FMA__) && !defined(__CUDACC__)
          if constexpr (std::is_same_v<T, float>) {
            nll = -detail::simd::masked_sum_widened(lp, m, n_tokens);
          } else
#endif
          {
            // Four partial sums (tokens t ≡ j mod 4), added in a fixed order.
            double part[4] = {0, 0, 0, 0};
            std::ptrdiff_t t = 0;
            for (; t + 4 <= n_tokens; t += 4)
              for (int j = 0; j < 4; ++j)
                part[j] -= m == nullptr || m[t + j] != 0 ? static_cast<double>(lp[t + j]) : 0.0;
            for (; t < n_tokens; ++t) part[0] -= m == nullptr || m[t] != 0 ? static_cast<double>(lp[t]) : 0.0;
            nll = (part[0] + part[1]) + (part[2] + part[3]);
          }
          if (g != nullptr) {
            if (m == nullptr)
              for (std::ptrdiff_t t = 0; t < n_tokens; ++t) g[t] = valid_grad;
            else
              for (std::ptrdiff_t t = 0; t < n_tokens; ++t) g[t] = m[t] != 0 ? valid_grad : T(0);
          }
          detail::row_out_done(dlogp, b, g);
          rows[static_cast<std::size_t>(b)] = {count, nll};
        }
      },
      detail::min_rows_per_thread(n_tokens));
  ppo_ptx_totals out{};
  out.tokens = weights.tokens;
  out.sequences = weights.sequences;
  out.loss = weights.reduce(rows, [](const ppo_ptx_row& r) { return r.nll; });
  return out;
}

}  // namespace rlhf::cpu_impl
