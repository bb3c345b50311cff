// rlhf/cpu/ppo_ptx.hpp — reference CPU implementation of the pretraining (ptx) term of PPO-ptx.
// Included by <rlhf/ppo_ptx.hpp>; arguments are already checked there. The PPO terms are in
// <rlhf/cpu/ppo.hpp>.
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/config.hpp>
#include <rlhf/cpu/ppo.hpp>
#include <rlhf/detail/parallel.hpp>
#include <rlhf/tensor_view.hpp>

#include <cstddef>
#include <cstdint>
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
/// empty). With the token-mean rule this is the mean token cross-entropy of the batch.
template <class T>
ppo_ptx_totals ppo_ptx_nll(const cpu_backend& backend, matrix_view<const T> logp, mask_view mask,
                           matrix_view<T> dlogp, const ppo_reduction_rule& rule, double coef) {
  std::vector<ppo_ptx_row> rows(static_cast<std::size_t>(logp.extent(0)));
  const std::ptrdiff_t n_tokens = logp.extent(1);
  const bool masked = !mask.empty();
  const bool with_grad = !dlogp.empty();
  detail::parallel_for(
      backend, logp.extent(0),
      [&](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t b = begin; b < end; ++b) {
          ppo_ptx_row row{};
          for (std::ptrdiff_t t = 0; t < n_tokens; ++t) {
            const bool valid = !masked || mask(b, t) != 0;
            if (with_grad) dlogp(b, t) = valid ? T(-1) : T(0);  // d(−logp)/d(logp), weighted below
            if (!valid) continue;
            ++row.count;
            row.nll -= static_cast<double>(logp(b, t));
          }
          rows[static_cast<std::size_t>(b)] = row;
        }
      },
      /*min_per_thread=*/8);
  const ppo_row_weights weights = ppo_make_weights(rule, rows);
  ppo_ptx_totals out{};
  out.tokens = weights.tokens;
  out.sequences = weights.sequences;
  out.loss = weights.reduce(rows, [](const ppo_ptx_row& r) { return r.nll; });
  ppo_scale_gradient(backend, dlogp, rows, weights, coef, coef == 0.0);
  return out;
}

}  // namespace rlhf::cpu_impl
