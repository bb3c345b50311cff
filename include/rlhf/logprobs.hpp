// rlhf/logprobs.hpp — per-token log-probs, entropy and full-distribution KL from logits, and
// their gradients, in one read of the logits.
//
// Shapes: logits, ref_logits, dlogits (B, T, V); labels, logp, entropy, logsumexp, kl and the
// upstream gradients (B, T). labels[b, t] is the token whose log-prob is read from
// logits[b, t, :] (shift the views yourself: logits of positions 0..T−2 with labels 1..T−1 is a
// view of T − 1 rows with the original strides).
//
//   z     = logits / temperature                       (TRL, OpenRLHF: logits.div(temperature))
//   lse   = log Σ_v e^{z_v}
//   logp  = z[label] − lse                             (log_softmax + gather)
//   H     = −Σ_v p_v log p_v,  p = softmax(z)          (0·log 0 = 0)
//   KL    = Σ_v p_v (log p_v − log q_v),  q = softmax(ref_logits / temperature)
//                                                      (TRL 0.11 kl_penalty = "full"; named
//                                                      full_kl_from_logits: rlhf::full_kl of
//                                                      <rlhf/kl.hpp> takes log-prob tensors)
//
// Gradients w.r.t. the logits (written over the logits if dlogits is the logits view):
//
//   token_logprobs_backward:       dlogits = (g_logp·(onehot(label) − p) − g_H·p·(log p + H)) / τ
//   full_kl_from_logits_backward:  dlogits = g_kl·p·(log p − log q − KL) / τ
//
// Nothing of size B·T·V is allocated: each (b, t) row is reduced with an online softmax
// (math/logprobs.hpp) and the backward pass rewrites the row while it is in cache. Accumulation
// is in double across blocks of 2048 logits (float within a block for float inputs).
//
// Differences from the anchors: a logit of −∞ gives probability 0 and contributes 0 to the
// entropy and the KL (TRL and OpenRLHF return NaN there); for float inputs the fast path
// flushes probabilities below 1.2e-38 of the row's largest to 0. Labels must lie in [0, V):
// anything else (PyTorch's ignore index −100 included; see <rlhf/lm_loss.hpp> for that) is an
// invalid_argument naming the position and the value. Logits must be finite or −∞.
//
//   rlhf::token_logprobs(rlhf::cpu, logits, labels, {.logp = logp, .entropy = entropy});
//   rlhf::token_logprobs_backward(rlhf::cpu, logits, labels, lse, grad_logp, {}, logits_as_grad);
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/concepts.hpp>
#include <rlhf/config.hpp>
#include <rlhf/cpu/logprobs.hpp>
#include <rlhf/detail/checks.hpp>
#include <rlhf/tensor_view.hpp>

#include <cmath>
#include <concepts>
#include <cstddef>
#include <string>
#include <string_view>
#include <type_traits>

namespace rlhf {

struct logprob_options {
  /// τ > 0: the logits are divided by it before the softmax (TRL and OpenRLHF divide by the
  /// sampling temperature; 1 leaves them as they are).
  double temperature = 1.0;
};

/// Outputs of token_logprobs, each (B, T). An empty view is not computed.
template <class T>
struct token_logprob_outputs {
  matrix_view<T> logp;            ///< log p(label)
  matrix_view<T> entropy = {};    ///< H of the row's distribution
  matrix_view<T> logsumexp = {};  ///< lse of logits / τ (the backward pass takes it)
};

namespace detail {

/// "logits is 2x3x7 but labels is 2x4"
template <class L, class M>
void require_rows_of(std::string_view function, std::string_view logits_name, const L& logits, std::string_view name,
                     const M& m) {
  if (m.extent(0) != logits.extent(0) || m.extent(1) != logits.extent(1))
    fail(function, std::string(name) + " is " + shape_string(m) + " but " + std::string(logits_name) + " is " +
                       shape_string(logits));
}

inline void check_temperature(std::string_view function, double temperature) {
  require_lazy(std::isfinite(temperature) && temperature > 0.0, function,
               [&] { return "temperature must be finite and > 0, got " + number_string(temperature); });
}

/// "rlhf::token_logprobs(): labels(1, 3) = 50257 is outside [0, 50257)". Positions where
/// skip(b, t) holds are not checked.
template <class Skip>
void check_labels(std::string_view function, matrix_view<const token_id> labels, std::ptrdiff_t vocab, Skip&& skip) {
  for (std::ptrdiff_t b = 0; b < labels.extent(0); ++b)
    for (std::ptrdiff_t t = 0; t < labels.extent(1); ++t) {
      const token_id label = labels(b, t);
      if ((label < 0 || label >= vocab) && !skip(b, t))
        fail(function, "labels(" + std::to_string(b) + ", " + std::to_string(t) + ") = " + std::to_string(label) +
                           " is outside [0, " + std::to_string(vocab) + ")");
    }
}

template <class T>
void check_logits(std::string_view function, cube_view<const T> logits) {
  if (logits.extent(0) <= 0 || logits.extent(1) <= 0 || logits.extent(2) <= 0)
    fail(function, "logits is empty (" + shape_string(logits) + ")");
}

/// dlogits has the logits' shape, and if it shares their memory it is the same view.
template <class T>
void check_dlogits(std::string_view function, cube_view<const T> logits, cube_view<T> dlogits) {
  require_same_shape(function, "logits", logits, "dlogits", dlogits);
  const T* a = logits.data_handle();
  const T* b = dlogits.data_handle();
  if (a == b) {
    for (std::size_t r = 0; r < 3; ++r)
      if (logits.stride(r) != dlogits.stride(r) && logits.extent(r) > 1)
        fail(function, "dlogits starts where logits starts but has other strides; pass the same view to "
                       "write the gradient in place");
  }
}

template <class T>
void token_logprobs_checked(const cpu_backend& backend, cube_view<const T> logits, matrix_view<const token_id> labels,
                            token_logprob_outputs<T> out, const logprob_options& options) {
  constexpr std::string_view function = "rlhf::token_logprobs()";
  check_logits(function, logits);
  require_rows_of(function, "logits", logits, "labels", labels);
  if (out.logp.empty() && out.entropy.empty() && out.logsumexp.empty())
    fail(function, "no output requested (logp, entropy and logsumexp are all empty)");
  if (!out.logp.empty()) require_rows_of(function, "logits", logits, "logp", out.logp);
  if (!out.entropy.empty()) require_rows_of(function, "logits", logits, "entropy", out.entropy);
  if (!out.logsumexp.empty()) require_rows_of(function, "logits", logits, "logsumexp", out.logsumexp);
  check_temperature(function, options.temperature);
  if (!out.logp.empty()) check_labels(function, labels, logits.extent(2), [](auto, auto) { return false; });
  cpu_impl::token_logprobs<T>(backend, logits, labels, out.logp, out.entropy, out.logsumexp, options.temperature);
}

template <class T>
void token_logprobs_backward_checked(const cpu_backend& backend, cube_view<const T> logits,
                                     matrix_view<const token_id> labels, matrix_view<const T> logsumexp,
                                     matrix_view<const T> grad_logp, matrix_view<const T> grad_entropy,
                                     cube_view<T> dlogits, const logprob_options& options) {
  constexpr std::string_view function = "rlhf::token_logprobs_backward()";
  check_logits(function, logits);
  require_rows_of(function, "logits", logits, "labels", labels);
  require_rows_of(function, "logits", logits, "logsumexp", logsumexp);
  if (!grad_logp.empty()) require_rows_of(function, "logits", logits, "grad_logp", grad_logp);
  if (!grad_entropy.empty()) require_rows_of(function, "logits", logits, "grad_entropy", grad_entropy);
  check_dlogits(function, logits, dlogits);
  check_temperature(function, options.temperature);
  check_labels(function, labels, logits.extent(2), [](auto, auto) { return false; });
  cpu_impl::token_logprobs_backward<T>(backend, logits, labels, logsumexp, grad_logp, grad_entropy, dlogits,
                                       options.temperature);
}

template <class T>
void full_kl_from_logits_checked(const cpu_backend& backend, cube_view<const T> logits, cube_view<const T> ref_logits,
                     matrix_view<const token_id> labels, matrix_view<T> kl, token_logprob_outputs<T> out,
                     const logprob_options& options) {
  constexpr std::string_view function = "rlhf::full_kl_from_logits()";
  check_logits(function, logits);
  require_same_shape(function, "logits", logits, "ref_logits", ref_logits);
  require_rows_of(function, "logits", logits, "kl", kl);
  if (!out.logp.empty()) {
    require_rows_of(function, "logits", logits, "labels", labels);
    require_rows_of(function, "logits", logits, "logp", out.logp);
  }
  if (!out.entropy.empty()) require_rows_of(function, "logits", logits, "entropy", out.entropy);
  if (!out.logsumexp.empty()) require_rows_of(function, "logits", logits, "logsumexp", out.logsumexp);
  check_temperature(function, options.temperature);
  if (!out.logp.empty()) check_labels(function, labels, logits.extent(2), [](auto, auto) { return false; });
  cpu_impl::full_kl_from_logits<T>(backend, logits, ref_logits, labels, kl, out.logp, out.entropy, out.logsumexp,
                       options.temperature);
}

template <class T>
void full_kl_from_logits_backward_checked(const cpu_backend& backend, cube_view<const T> logits, cube_view<const T> ref_logits,
                              matrix_view<const T> grad_kl, cube_view<T> dlogits, const logprob_options& options) {
  constexpr std::string_view function = "rlhf::full_kl_from_logits_backward()";
  check_logits(function, logits);
  require_same_shape(function, "logits", logits, "ref_logits", ref_logits);
  require_rows_of(function, "logits", logits, "grad_kl", grad_kl);
  check_dlogits(function, logits, dlogits);
  if (static_cast<const void*>(dlogits.data_handle()) == static_cast<const void*>(ref_logits.data_handle()))
    fail(function, "dlogits must not be ref_logits");
  check_temperature(function, options.temperature);
  cpu_impl::full_kl_from_logits_backward<T>(backend, logits, ref_logits, grad_kl, dlogits, options.temperature);
}

}  // namespace detail

/// logp[b, t] = log softmax(logits[b, t, :] / τ)[labels[b, t]], and optionally the entropy and
/// logsumexp of the same rows, in one pass. out.logp may be empty when only the statistics are
/// wanted (labels are then not read).
inline void token_logprobs(const cpu_backend& backend, cube_view<const float> logits, matrix_view<const token_id> labels,
                           token_logprob_outputs<float> out, const logprob_options& options = {}) {
  detail::token_logprobs_checked<float>(backend, logits, labels, out, options);
}
inline void token_logprobs(const cpu_backend& backend, cube_view<const double> logits,
                           matrix_view<const token_id> labels, token_logprob_outputs<double> out,
                           const logprob_options& options = {}) {
  detail::token_logprobs_checked<double>(backend, logits, labels, out, options);
}

/// dlogits = (g_logp·(onehot − p) − g_H·p·(log p + H)) / τ, from the forward's logsumexp. An
/// empty grad view counts as zeros. dlogits may be the logits buffer itself (the same view):
/// the gradient then overwrites the logits row by row. The result is written, not accumulated.
inline void token_logprobs_backward(const cpu_backend& backend, cube_view<const float> logits,
                                    matrix_view<const token_id> labels, matrix_view<const float> logsumexp,
                                    matrix_view<const float> grad_logp, matrix_view<const float> grad_entropy,
                                    cube_view<float> dlogits, const logprob_options& options = {}) {
  detail::token_logprobs_backward_checked<float>(backend, logits, labels, logsumexp, grad_logp, grad_entropy, dlogits,
                                                 options);
}
inline void token_logprobs_backward(const cpu_backend& backend, cube_view<const double> logits,
                                    matrix_view<const token_id> labels, matrix_view<const double> logsumexp,
                                    matrix_view<const double> grad_logp, matrix_view<const double> grad_entropy,
                                    cube_view<double> dlogits, const logprob_options& options = {}) {
  detail::token_logprobs_backward_checked<double>(backend, logits, labels, logsumexp, grad_logp, grad_entropy, dlogits,
                                                  options);
}

/// kl[b, t] = KL(softmax(logits/τ) ‖ softmax(ref_logits/τ)) over the vocabulary.
inline void full_kl_from_logits(const cpu_backend& backend, cube_view<const float> logits, cube_view<const float> ref_logits,
                    matrix_view<float> kl, const logprob_options& options = {}) {
  detail::full_kl_from_logits_checked<float>(backend, logits, ref_logits, {}, kl, {}, options);
}
inline void full_kl_from_logits(const cpu_backend& backend, cube_view<const double> logits, cube_view<const double> ref_logits,
                    matrix_view<double> kl, const logprob_options& options = {}) {
  detail::full_kl_from_logits_checked<double>(backend, logits, ref_logits, {}, kl, {}, options);
}

/// The full KL and, from the same read of both logits, the policy's token_logprobs outputs.
inline void full_kl_from_logits(const cpu_backend& backend, cube_view<const float> logits, cube_view<const float> ref_logits,
                    matrix_view<const token_id> labels, matrix_view<float> kl, token_logprob_outputs<float> out,
                    const logprob_options& options = {}) {
  detail::full_kl_from_logits_checked<float>(backend, logits, ref_logits, labels, kl, out, options);
}
inline void full_kl_from_logits(const cpu_backend& backend, cube_view<const double> logits, cube_view<const double> ref_logits,
                    matrix_view<const token_id> labels, matrix_view<double> kl, token_logprob_outputs<double> out,
                    const logprob_options& options = {}) {
  detail::full_kl_from_logits_checked<double>(backend, logits, ref_logits, labels, kl, out, options);
}

/// dlogits = g_kl·p·(log p − log q − KL) / τ (the gradient w.r.t. the policy logits; the
/// reference gets none). dlogits may be the logits view itself, never ref_logits.
inline void full_kl_from_logits_backward(const cpu_backend& backend, cube_view<const float> logits,
                             cube_view<const float> ref_logits, matrix_view<const float> grad_kl,
                             cube_view<float> dlogits, const logprob_options& options = {}) {
  detail::full_kl_from_logits_backward_checked<float>(backend, logits, ref_logits, grad_kl, dlogits, options);
}
inline void full_kl_from_logits_backward(const cpu_backend& backend, cube_view<const double> logits,
                             cube_view<const double> ref_logits, matrix_view<const double> grad_kl,
                             cube_view<double> dlogits, const logprob_options& options = {}) {
  detail::full_kl_from_logits_backward_checked<double>(backend, logits, ref_logits, grad_kl, dlogits, options);
}

}  // namespace rlhf

namespace rlhf {
/// The CUDA backend has no log-prob kernels yet: a call with cuda_backend stops at compile time.
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void token_logprobs(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::token_logprobs(cuda_backend, ...) is not implemented for the CUDA backend yet");
}
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void token_logprobs_backward(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::token_logprobs_backward(cuda_backend, ...) is not implemented for the CUDA backend yet");
}
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void full_kl_from_logits(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::full_kl_from_logits(cuda_backend, ...) is not implemented for the CUDA backend yet");
}
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void full_kl_from_logits_backward(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::full_kl_from_logits_backward(cuda_backend, ...) is not implemented for the CUDA backend yet");
}
}  // namespace rlhf
