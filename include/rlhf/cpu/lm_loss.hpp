// rlhf/cpu/lm_loss.hpp — CPU kernel of the token NLL (SFT / ptx loss) over logits (B, T, V).
// Included by <rlhf/lm_loss.hpp>; arguments are already checked there.
//
// The per-row reductions and gradients are the log-prob kernels of <rlhf/cpu/logprobs.hpp>:
// one online-softmax read of each valid row, then (when a gradient is wanted) the row is
// rewritten from cache. Per-token losses are kept in a (B·T) buffer of doubles and summed in
// row order after the parallel part, so the loss does not depend on the thread count.
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/concepts.hpp>
#include <rlhf/cpu/logprobs.hpp>
#include <rlhf/math/logprobs.hpp>
#include <rlhf/tensor_view.hpp>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace rlhf::cpu_impl {

/// Loss weights per token: weight[b·T + t] is 0 for ignored tokens. Filled by the caller.
template <class T>
double lm_loss(const cpu_backend& backend, cube_view<const T> logits, matrix_view<const token_id> labels,
               const std::vector<double>& weight, cube_view<T> dlogits, double temperature, double grad_scale) {
  namespace d = logprobs_detail;
  const auto tau = d::make_temperature<T>(temperature);
  const std::ptrdiff_t B = logits.extent(0), n_tokens = logits.extent(1), V = logits.extent(2);
  std::vector<double> nll(static_cast<std::size_t>(B * n_tokens), 0.0);
  const bool backward = !dlogits.empty();
  d::for_each_row(backend, B, n_tokens, V, [&](std::ptrdiff_t b, std::ptrdiff_t t) {
    const std::size_t i = static_cast<std::size_t>(b * n_tokens + t);
    const double w = weight[i];
    if (w == 0.0) {
      if (backward)
        for (std::ptrdiff_t j = 0; j < V; ++j) dlogits(b, t, j) = T(0);
      return;
    }
    thread_local std::vector<T> in_scratch, out_scratch;
    const T* x = d::vocab_row_in(logits, b, t, in_scratch);
    const token_id label = labels(b, t);
    const double lse = math::softmax_logsumexp(d::softmax_row(x, V, tau));
    nll[i] = lse - tau.scale(x[label]);
    if (backward) {
      T* dx = d::vocab_row_out(dlogits, b, t, out_scratch);
      d::logprob_grad_row(x, dx, V, label, tau, lse, -w * grad_scale, 0.0, 0.0);
      d::vocab_row_done(dlogits, b, t, dx);
    }
  });
  double loss = 0.0;
  for (std::size_t i = 0; i < nll.size(); ++i)
    if (weight[i] != 0.0) loss += weight[i] * nll[i];
  return loss;
}

}  // namespace rlhf::cpu_impl
