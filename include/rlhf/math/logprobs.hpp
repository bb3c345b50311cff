// rlhf/math/logprobs.hpp — the row formulas behind per-token log-probs, entropy, full KL and the
// LM loss, written once for every kernel that reduces a row of logits: the CPU and CUDA
// log-prob kernels, the vocabulary-blocked fused linear kernel and the samplers.
//
// A row is z_j = x_j / τ (logits divided by the temperature), j ∈ [0, V). Everything is kept
// relative to the running maximum m, so no term overflows and ±1e4 logits lose nothing:
//
//   s   = Σ_j e^{z_j − m}                       (softmax_state::sum_exp)
//   u   = Σ_j e^{z_j − m}·(z_j − m)             (softmax_state::sum_exp_z, for the entropy)
//   lse = m + log s                              log p_j = z_j − lse
//   H   = −Σ_j p_j log p_j = log s − u / s       (a term with p_j = 0 counts 0: no NaN on −inf)
//
// A state covers any subset of the row (one element, a SIMD lane, a vocabulary block, a
// thread's slice); softmax_combine merges two states exactly (up to rounding), in any order, so
// a blocked kernel computes one state per block and folds them. Gradients, with g_logp and g_H
// the upstream gradients of logp = log p_label and H:
//
//   ∂logp/∂z_j = δ_{j,label} − p_j
//   ∂H/∂z_j    = −p_j·(log p_j + H)
//   ∂KL/∂z_j   = p_j·(log p_j − log q_j − KL)     KL = Σ p (log p − log q), q = softmax(w)
//
// and ∂/∂x_j = ∂/∂z_j / τ. An element with p_j = 0 (z_j = −∞, or an exp that underflows)
// contributes 0 to every sum and gets gradient 0 (plus g_logp·δ for the label).
//
// Logits must be finite or −∞; a row whose logits are all −∞ has lse = −∞ and H = 0.
#pragma once

#include <rlhf/config.hpp>

#include <cmath>
#include <limits>

namespace rlhf::math {

/// Online-softmax accumulator over part of a row of z = x / τ, in accumulation type A (float
/// or double). The empty state is {−∞, 0, 0}.
template <class A>
struct softmax_state {
  A max = -std::numeric_limits<A>::infinity();  ///< m: the largest z seen
  A sum_exp = A(0);                             ///< s = Σ e^{z − m}
  A sum_exp_z = A(0);                           ///< u = Σ e^{z − m}·(z − m)
};

/// The state after adding one element z (a −∞ element changes nothing).
template <class A>
RLHF_HOST_DEVICE inline softmax_state<A> softmax_push(softmax_state<A> state, A z) noexcept {
  using std::exp;
  if (z == -std::numeric_limits<A>::infinity()) return state;
  if (z > state.max) {
    // Rescale to the new maximum: e^{z_i − m'} = α e^{z_i − m}, z_i − m' = (z_i − m) + (m − m').
    const A shift = state.max - z;  // −∞ for the empty state: α = 0, and s = u = 0 already
    const A alpha = state.sum_exp == A(0) ? A(0) : exp(shift);
    const A u = state.sum_exp == A(0) ? A(0) : alpha * (state.sum_exp_z + shift * state.sum_exp);
    return {z, alpha * state.sum_exp + A(1), u};
  }
  const A d = z - state.max;
  const A e = exp(d);
  if (e == A(0)) return state;  // underflow: p = 0, and e·d would be 0 too
  return {state.max, state.sum_exp + e, state.sum_exp_z + e * d};
}

/// State `state` moved to a maximum `new_max` ≥ state.max (the rescaling step of a merge).
template <class A>
RLHF_HOST_DEVICE inline softmax_state<A> softmax_rescale(softmax_state<A> state, A new_max) noexcept {
  using std::exp;
  if (state.sum_exp == A(0) || state.max == new_max) return {new_max, state.sum_exp, state.sum_exp_z};
  const A shift = state.max - new_max;  // ≤ 0, finite
  const A alpha = exp(shift);
  return {new_max, alpha * state.sum_exp, alpha * (state.sum_exp_z + shift * state.sum_exp)};
}

/// The state of the union of two disjoint parts of a row.
template <class A>
RLHF_HOST_DEVICE inline softmax_state<A> softmax_combine(softmax_state<A> a, softmax_state<A> b) noexcept {
  if (b.sum_exp == A(0)) return a;
  if (a.sum_exp == A(0)) return b;
  const A m = a.max < b.max ? b.max : a.max;
  const softmax_state<A> ra = softmax_rescale(a, m), rb = softmax_rescale(b, m);
  return {m, ra.sum_exp + rb.sum_exp, ra.sum_exp_z + rb.sum_exp_z};
}

/// lse = m + log s (−∞ for an empty state or an all −∞ row).
template <class A>
RLHF_HOST_DEVICE inline A softmax_logsumexp(const softmax_state<A>& state) noexcept {
  using std::log;
  if (state.sum_exp == A(0)) return -std::numeric_limits<A>::infinity();
  return state.max + log(state.sum_exp);
}

/// H = log s − u / s (0 for an empty state).
template <class A>
RLHF_HOST_DEVICE inline A softmax_entropy(const softmax_state<A>& state) noexcept {
  using std::log;
  if (state.sum_exp == A(0)) return A(0);
  return log(state.sum_exp) - state.sum_exp_z / state.sum_exp;
}

/// p_j = e^{z_j − lse} and the term p_j·log p_j with 0·log 0 = 0.
template <class A>
struct softmax_prob {
  A p;
  A p_log_p;
};
template <class A>
RLHF_HOST_DEVICE inline softmax_prob<A> softmax_probability(A z, A lse) noexcept {
  using std::exp;
  const A log_p = z - lse;
  const A p = exp(log_p);
  if (p == A(0)) return {A(0), A(0)};
  return {p, p * log_p};
}

/// ∂(g_logp·logp + g_H·H)/∂z_j for element j of a row (is_label: j is the row's label):
/// g_logp·(δ − p_j) − g_H·p_j·(log p_j + H). Multiply by 1/τ for the gradient w.r.t. the logit.
template <class A>
RLHF_HOST_DEVICE inline A logprob_entropy_grad(A z, A lse, bool is_label, A grad_logp,
                                               A grad_entropy, A entropy) noexcept {
  const softmax_prob<A> q = softmax_probability(z, lse);
  A g = -grad_logp * q.p - grad_entropy * (q.p_log_p + q.p * entropy);
  if (is_label) g += grad_logp;
  return g;
}

/// Online accumulator for the full KL(π ‖ π_ref) of one row: policy z = x / τ, reference
/// w = y / τ. KL = Σ p (z − w) − lse_z + lse_w, with
///   policy  = softmax_state of z (its sum_exp_z gives the policy entropy as a by-product)
///   ref     = softmax_state of w (sum_exp_z unused)
///   sum_exp_diff = Σ e^{z − policy.max}·(z − w)   (terms with p = 0 count 0)
template <class A>
struct kl_state {
  softmax_state<A> policy;
  softmax_state<A> ref;
  A sum_exp_diff = A(0);
};

/// The state after adding one element (z, w).
template <class A>
RLHF_HOST_DEVICE inline kl_state<A> kl_push(kl_state<A> state, A z, A w) noexcept {
  using std::exp;
  kl_state<A> out;
  out.ref = softmax_push(state.ref, w);
  out.policy = softmax_push(state.policy, z);
  out.sum_exp_diff = state.sum_exp_diff;
  if (z == -std::numeric_limits<A>::infinity()) return out;  // p = 0: no term
  if (z > state.policy.max) {
    // New policy maximum: the old sum moves to it, this element has e^{z − z} = 1.
    const A carried = state.policy.sum_exp == A(0) ? A(0) : state.sum_exp_diff * exp(state.policy.max - z);
    out.sum_exp_diff = carried + (z - w);
    return out;
  }
  const A e = exp(z - state.policy.max);
  if (e != A(0)) out.sum_exp_diff += e * (z - w);
  return out;
}

/// The state of the union of two disjoint parts of a row.
template <class A>
RLHF_HOST_DEVICE inline kl_state<A> kl_combine(kl_state<A> a, kl_state<A> b) noexcept {
  using std::exp;
  kl_state<A> out;
  out.policy = softmax_combine(a.policy, b.policy);
  out.ref = softmax_combine(a.ref, b.ref);
  const A da = a.policy.sum_exp == A(0) ? A(0) : a.sum_exp_diff * exp(a.policy.max - out.policy.max);
  const A db = b.policy.sum_exp == A(0) ? A(0) : b.sum_exp_diff * exp(b.policy.max - out.policy.max);
  out.sum_exp_diff = da + db;
  return out;
}

/// KL(π ‖ π_ref) = Σ p (z − w) − lse_z + lse_w (+∞ where π_ref gives 0 to a token π does not).
template <class A>
RLHF_HOST_DEVICE inline A kl_value(const kl_state<A>& state) noexcept {
  if (state.policy.sum_exp == A(0)) return A(0);
  return state.sum_exp_diff / state.policy.sum_exp - softmax_logsumexp(state.policy) +
         softmax_logsumexp(state.ref);
}

/// ∂(g·KL)/∂z_j = g·p_j·(log p_j − log q_j − KL), 0 where p_j = 0. Multiply by 1/τ for the
/// gradient w.r.t. the policy logit.
template <class A>
RLHF_HOST_DEVICE inline A kl_grad(A z, A lse, A w, A ref_lse, A kl, A grad_kl) noexcept {
  using std::exp;
  const A log_p = z - lse;
  const A p = exp(log_p);
  if (p == A(0)) return A(0);
  return grad_kl * p * (log_p - (w - ref_lse) - kl);
}

}  // namespace rlhf::math
