// rlhf/math/ppo.hpp — per-token PPO terms (clipped surrogate, clipped value loss), shared by
// both backends. The KL-in-loss estimators of <rlhf/ppo_ptx.hpp> are those of math/kl.hpp. Each returns the term and its derivative with respect to the
// differentiable input, so a backend only has to reduce.
//
// Subgradients follow PyTorch autograd, which is what every anchor runs on:
//   - torch.clamp passes the gradient when the input lies inside the bounds, bounds included;
//   - torch.min / torch.max of two tensors give each branch half the gradient on an exact tie.
#pragma once

#include <rlhf/config.hpp>


namespace rlhf::math {

/// One token of the clipped surrogate: the loss term, d(loss)/d(logp), and whether the clip
/// (clipped) or the dual clip (dual_clipped) was the active branch.
template <class T>
struct ppo_surrogate_term {
  T loss;
  T grad;
  bool clipped;
  bool dual_clipped;
};

/// L = −min(r·A, clip(r, ratio_low, ratio_high)·A), and with a dual clip c (only where A < 0)
/// L = −max(min(r·A, clip(r)·A), c·A) (Ye et al. 2020; OpenRLHF `dual_clip`).
///
/// `ratio` is r = exp(log-ratio); `dratio` is dr/d(logp): r itself, or 0 where a log-ratio
/// clamp is active. `clipped` is OpenRLHF's `surr2 < surr1` = TRL's `pg_losses2 > pg_losses`.
/// A = 0 gives an exact zero term (also when r overflowed to +inf, where 0·inf would be NaN).
template <class T>
RLHF_HOST_DEVICE constexpr ppo_surrogate_term<T> ppo_clipped_surrogate(
    T ratio, T dratio, T advantage, T ratio_low, T ratio_high, bool use_dual_clip,
    T dual_clip) noexcept {
  if (advantage == T(0)) return {T(0), T(0), false, false};
  const bool in_range = !(ratio < ratio_low) && !(ratio > ratio_high);
  const T clipped_ratio = ratio < ratio_low ? ratio_low : (ratio > ratio_high ? ratio_high : ratio);
  const T surr1 = ratio * advantage;
  const T surr2 = clipped_ratio * advantage;
  T objective = surr1;
  T grad = T(0);
  if (surr1 < surr2) {
    grad = advantage * dratio;
  } else if (surr2 < surr1) {
    objective = surr2;
    grad = in_range ? advantage * dratio : T(0);
  } else {  // tie: the average of both branches' gradients
    grad = in_range ? advantage * dratio : advantage * dratio / T(2);
  }
  bool dual_clipped = false;
  if (use_dual_clip && advantage < T(0)) {
    const T floor_value = dual_clip * advantage;
    if (objective < floor_value) {
      objective = floor_value;
      grad = T(0);
      dual_clipped = true;
    } else if (objective == floor_value) {
      grad = grad / T(2);
    }
  }
  return {-objective, -grad, surr2 < surr1, dual_clipped};
}

/// One token of the value loss: the term (with the ½), d(term)/d(value), and whether the
/// clipped branch was strictly the larger one (TRL `vf_clipfrac`).
template <class T>
struct ppo_value_term {
  T loss;
  T grad;
  bool clipped;
};

/// ½·max((V − R)², (V_clip − R)²) with V_clip = clamp(V, V_old − c, V_old + c) (TRL,
/// DeepSpeed-Chat; equal to OpenRLHF's V_old + clamp(V − V_old, −c, c) where clipped, and
/// exactly V where not); ½·(V − R)² when `use_clip` is false.
template <class T>
RLHF_HOST_DEVICE constexpr ppo_value_term<T> ppo_clipped_value(T value, T old_value, T ret,
                                                               bool use_clip, T clip) noexcept {
  const T error = value - ret;
  const T unclipped = error * error;
  if (!use_clip) return {T(0.5) * unclipped, error, false};
  const T low = old_value - clip;
  const T high = old_value + clip;
  const bool in_range = !(value < low) && !(value > high);
  const T clipped_value = value < low ? low : (value > high ? high : value);
  const T clipped_error = clipped_value - ret;
  const T clipped = clipped_error * clipped_error;
  if (unclipped > clipped) return {T(0.5) * unclipped, error, false};
  if (clipped > unclipped) return {T(0.5) * clipped, in_range ? clipped_error : T(0), true};
  // tie: the average of both branches' gradients
  return {T(0.5) * unclipped, in_range ? (error + clipped_error) / T(2) : error / T(2), false};
}

// r = 1 with A = 2: L = −2, dL/dlogp = −2·r = −2, nothing clipped.
static_assert(ppo_clipped_surrogate(1.0, 1.0, 2.0, 0.75, 1.25, false, 0.0).loss == -2.0);
static_assert(ppo_clipped_surrogate(1.0, 1.0, 2.0, 0.75, 1.25, false, 0.0).grad == -2.0);
// r = 1.5 > 1 + ε with A > 0: the clipped branch 1.25·A is the minimum, no gradient.
static_assert(ppo_clipped_surrogate(1.5, 1.5, 2.0, 0.75, 1.25, false, 0.0).loss == -2.5);
static_assert(ppo_clipped_surrogate(1.5, 1.5, 2.0, 0.75, 1.25, false, 0.0).grad == 0.0);
static_assert(ppo_clipped_surrogate(1.5, 1.5, 2.0, 0.75, 1.25, false, 0.0).clipped);
// r = 1.5 with A < 0: the unclipped branch is the minimum (pessimistic bound), full gradient.
static_assert(ppo_clipped_surrogate(1.5, 1.5, -2.0, 0.75, 1.25, false, 0.0).loss == 3.0);
static_assert(ppo_clipped_surrogate(1.5, 1.5, -2.0, 0.75, 1.25, false, 0.0).grad == 3.0);
// Dual clip c = 3 bounds that loss by −c·A = 6 once r > 3.
static_assert(ppo_clipped_surrogate(4.0, 4.0, -2.0, 0.75, 1.25, true, 3.0).loss == 6.0);
static_assert(ppo_clipped_surrogate(4.0, 4.0, -2.0, 0.75, 1.25, true, 3.0).dual_clipped);
// Value: V moved 1.0 from V_old = 0 with c = 0.5 towards R = 2: clipped error 1.5 is larger.
static_assert(ppo_clipped_value(1.0, 0.0, 2.0, true, 0.5).loss == 1.125);
static_assert(ppo_clipped_value(1.0, 0.0, 2.0, true, 0.5).grad == 0.0);
static_assert(ppo_clipped_value(1.0, 0.0, 2.0, false, 0.5).loss == 0.5);
static_assert(ppo_clipped_value(1.0, 0.0, 2.0, false, 0.5).grad == -1.0);

}  // namespace rlhf::math
