// rlhf/fused_linear.hpp — per-token log-probs, entropy and their gradients straight from the
// final hidden states and the unembedding, without ever holding the (N, V) logits.
//
// Shapes: hidden (N, D), unembedding W (V, D), labels (N), logp / entropy / logsumexp (N),
// dhidden (N, D), dunembedding (V, D). N = B·T rows (flatten (B, T, D) hidden states).
//
//   x_j = hidden_n · W_j          (logits = hidden · Wᵀ, never stored: see below)
//   z_j = x_j / τ                 (temperature τ > 0, as rlhf::token_logprobs)
//   logp_n = z_label − logsumexp(z),   H_n = −Σ_j p_j log p_j,   p = softmax(z)
//
// Backward, for upstream gradients g (of logp) and g_H (of the entropy; empty = 0):
//   ∂L/∂x_j = [g·(δ_{j,label} − p_j) − g_H·p_j·(log p_j + H)] / τ       (math/logprobs.hpp)
//   dhidden = ∂L/∂x · W        (written)
//   dW     += ∂L/∂xᵀ · hidden  (ACCUMULATED, so the gradients of several batches add up)
//
// The vocabulary is processed in blocks of `vocab_block` rows of W (0 = automatic: V/16 rounded
// down to a multiple of 64, within [64, 1024]); each block's logits are one GEMM, reduced at
// once into an online-softmax state per row (forward) or turned into dlogits in place and
// multiplied back (backward). Extra memory: forward 256 × vocab_block logits per thread,
// backward N × vocab_block — at most N·V·4 bytes / 16 for V ≥ 1024 with the automatic block
// (fused_linear_workspace_bytes gives the exact figure). Results are bitwise the same for every
// thread count. The backward recomputes the logits (the forward keeps only logsumexp).
//
//   rlhf::fused_linear_logprobs(rlhf::cpu, hidden, W, labels, {.logp = logp, .logsumexp = lse});
//   ... loss → grad_logp ...
//   rlhf::fused_linear_logprobs_backward(rlhf::cpu, hidden, W, labels, lse, {}, grad_logp, {},
//                                        dhidden, dW);
//
// A model exposes hidden() / unembedding() (rlhf::FusedLogProbs in <rlhf/concepts.hpp>) to get
// this path instead of materialised logits.
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/concepts.hpp>
#include <rlhf/config.hpp>
#include <rlhf/detail/checks.hpp>
#include <rlhf/tensor_view.hpp>

#if !defined(__CUDACC__)
#include <rlhf/cpu/fused_linear.hpp>
#endif

#include <cmath>
#include <concepts>
#include <cstddef>
#include <string>
#include <type_traits>

namespace rlhf {

struct fused_linear_options {
  double temperature = 1.0;       ///< τ > 0: logits are divided by it (TRL / OpenRLHF rollouts)
  std::ptrdiff_t vocab_block = 0;  ///< rows of W per block; 0 = automatic (see the header comment)
};

/// Forward outputs, each (N); logp is required, entropy and logsumexp are optional (empty =
/// not computed). Keep logsumexp (and the entropy when the loss uses it) for the backward.
template <class T>
struct fused_linear_outputs {
  vector_view<T> logp;
  vector_view<T> entropy = {};
  vector_view<T> logsumexp = {};
};

namespace detail {
template <class T>
void check_fused_linear_inputs(const char* function, matrix_view<const T> hidden, matrix_view<const T> unembedding,
                               vector_view<const token_id> labels, const fused_linear_options& options) {
  require_not_empty(function, "hidden", hidden);
  require_not_empty(function, "unembedding", unembedding);
  const std::ptrdiff_t n_rows = hidden.extent(0), n_vocab = unembedding.extent(0);
  require_lazy(unembedding.extent(1) == hidden.extent(1), function, [&] {
    return "hidden is " + shape_string(hidden) + " but unembedding is " + shape_string(unembedding) +
           " (both need the same hidden width D)";
  });
  require_extent(function, "labels", labels, 0, n_rows, "the number of hidden rows");
  require_lazy(options.temperature > 0.0 && std::isfinite(options.temperature), function, [&] {
    return "temperature must be positive and finite, got " + number_string(options.temperature);
  });
  require_lazy(options.vocab_block >= 0, function, [&] {
    return "vocab_block must be >= 0 (0 = automatic), got " + std::to_string(options.vocab_block);
  });
  for (std::ptrdiff_t n = 0; n < n_rows; ++n)
    if (labels(n) < 0 || labels(n) >= n_vocab)
      fail(function, "labels(" + std::to_string(n) + ") = " + std::to_string(labels(n)) + " is outside [0, " +
                         std::to_string(n_vocab) + ")");
}

template <class V>
void require_rows_if_given(const char* function, const char* name, const V& v, std::ptrdiff_t n_rows) {
  if (!v.empty()) require_extent(function, name, v, 0, n_rows, "the number of hidden rows");
}

#if !defined(__CUDACC__)
template <class T>
void fused_linear_logprobs_checked(const cpu_backend& backend, matrix_view<const T> hidden,
                            matrix_view<const T> unembedding, vector_view<const token_id> labels,
                            const fused_linear_outputs<T>& out, const fused_linear_options& options) {
  constexpr const char* function = "rlhf::fused_linear_logprobs()";
  check_fused_linear_inputs(function, hidden, unembedding, labels, options);
  const std::ptrdiff_t n_rows = hidden.extent(0);
  require_extent(function, "logp", out.logp, 0, n_rows, "the number of hidden rows");
  require_rows_if_given(function, "entropy", out.entropy, n_rows);
  require_rows_if_given(function, "logsumexp", out.logsumexp, n_rows);
  cpu_impl::fused_linear_logprobs<T>(backend, {hidden, unembedding, labels, out.logp, out.entropy, out.logsumexp,
                                               options.temperature, options.vocab_block});
}

template <class T>
void fused_linear_logprobs_backward_checked(const cpu_backend& backend, matrix_view<const T> hidden,
                                     matrix_view<const T> unembedding, vector_view<const token_id> labels,
                                     vector_view<const T> logsumexp, vector_view<const T> entropy,
                                     vector_view<const T> grad_logp, vector_view<const T> grad_entropy,
                                     matrix_view<T> dhidden, matrix_view<T> dunembedding,
                                     const fused_linear_options& options) {
  constexpr const char* function = "rlhf::fused_linear_logprobs_backward()";
  check_fused_linear_inputs(function, hidden, unembedding, labels, options);
  const std::ptrdiff_t n_rows = hidden.extent(0);
  require_extent(function, "logsumexp", logsumexp, 0, n_rows, "the number of hidden rows");
  require_extent(function, "grad_logp", grad_logp, 0, n_rows, "the number of hidden rows");
  require_rows_if_given(function, "grad_entropy", grad_entropy, n_rows);
  if (!grad_entropy.empty())
    require_lazy(!entropy.empty(), function, [] {
      return std::string("grad_entropy is given but entropy is empty: pass the forward's entropy");
    });
  require_rows_if_given(function, "entropy", entropy, n_rows);
  require_same_shape(function, "hidden", hidden, "dhidden", dhidden);
  require_same_shape(function, "unembedding", unembedding, "dunembedding", dunembedding);
  cpu_impl::fused_linear_logprobs_backward<T>(
      backend, {hidden, unembedding, labels, logsumexp, entropy, grad_logp, grad_entropy, dhidden, dunembedding,
                options.temperature, options.vocab_block});
}
#endif  // !__CUDACC__
}  // namespace detail

#if !defined(__CUDACC__)
// The entry points below are templates on the backend type only (the views stay concrete, so
// non-const views still convert): a translation unit that includes this header without calling
// them then compiles none of the float and double GEMM kernels behind them.
namespace detail {
template <class Backend>
concept cpu_backend_type = std::same_as<Backend, cpu_backend>;
}  // namespace detail

/// logp (and optionally entropy, logsumexp) of labels under softmax(hidden · Wᵀ / τ), (N) each.
/// labels must lie in [0, V). Overloaded for float and double.
template <detail::cpu_backend_type Backend>
void fused_linear_logprobs(const Backend& backend, matrix_view<const float> hidden,
                           matrix_view<const float> unembedding, vector_view<const token_id> labels,
                           fused_linear_outputs<float> out, const fused_linear_options& options = {}) {
  detail::fused_linear_logprobs_checked<float>(backend, hidden, unembedding, labels, out, options);
}
template <detail::cpu_backend_type Backend>
void fused_linear_logprobs(const Backend& backend, matrix_view<const double> hidden,
                           matrix_view<const double> unembedding, vector_view<const token_id> labels,
                           fused_linear_outputs<double> out, const fused_linear_options& options = {}) {
  detail::fused_linear_logprobs_checked<double>(backend, hidden, unembedding, labels, out, options);
}

/// Gradients of Σ_n grad_logp_n·logp_n + grad_entropy_n·H_n: dhidden (N, D) is written,
/// dunembedding (V, D) is accumulated (+=). logsumexp is the forward's; entropy (the forward's)
/// is needed only with grad_entropy (both may be empty). Same options as the forward.
template <detail::cpu_backend_type Backend>
void fused_linear_logprobs_backward(const Backend& backend, matrix_view<const float> hidden,
                                    matrix_view<const float> unembedding, vector_view<const token_id> labels,
                                    vector_view<const float> logsumexp, vector_view<const float> entropy,
                                    vector_view<const float> grad_logp, vector_view<const float> grad_entropy,
                                    matrix_view<float> dhidden, matrix_view<float> dunembedding,
                                    const fused_linear_options& options = {}) {
  detail::fused_linear_logprobs_backward_checked<float>(backend, hidden, unembedding, labels, logsumexp, entropy,
                                                        grad_logp, grad_entropy, dhidden, dunembedding, options);
}
template <detail::cpu_backend_type Backend>
void fused_linear_logprobs_backward(const Backend& backend, matrix_view<const double> hidden,
                                    matrix_view<const double> unembedding, vector_view<const token_id> labels,
                                    vector_view<const double> logsumexp, vector_view<const double> entropy,
                                    vector_view<const double> grad_logp, vector_view<const double> grad_entropy,
                                    matrix_view<double> dhidden, matrix_view<double> dunembedding,
                                    const fused_linear_options& options = {}) {
  detail::fused_linear_logprobs_backward_checked<double>(backend, hidden, unembedding, labels, logsumexp, entropy,
                                                         grad_logp, grad_entropy, dhidden, dunembedding, options);
}

/// Bytes of workspace one call allocates (Eigen's GEMM packing buffers not included): forward
/// min(256, N)·vocab_block elements of logits plus per-row states per busy thread; backward
/// N·vocab_block elements. `element_bytes` = sizeof(float) or sizeof(double).
template <detail::cpu_backend_type Backend>
std::size_t fused_linear_workspace_bytes(const Backend& backend, std::ptrdiff_t n_rows, std::ptrdiff_t n_vocab,
                                         std::size_t element_bytes, bool backward,
                                         const fused_linear_options& options = {}) {
  return element_bytes == sizeof(double)
             ? cpu_impl::fused_linear_workspace_bytes<double>(n_rows, n_vocab, options.vocab_block, backend.threads, backward)
             : cpu_impl::fused_linear_workspace_bytes<float>(n_rows, n_vocab, options.vocab_block, backend.threads, backward);
}
#endif  // !__CUDACC__

/// The CUDA backend has no fused linear kernel yet: a call is a compile error that says so.
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void fused_linear_logprobs(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::fused_linear_logprobs(cuda_backend, ...) has no CUDA implementation yet: use "
                "rlhf::cpu with host views");
}
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void fused_linear_logprobs_backward(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::fused_linear_logprobs_backward(cuda_backend, ...) has no CUDA implementation yet: use "
                "rlhf::cpu with host views");
}

}  // namespace rlhf
