// rlhf/math/gae.hpp — one step of generalised advantage estimation, shared by both backends.
#pragma once

#include <rlhf/config.hpp>

namespace rlhf::math {

/// A_t = δ_t + γλ·A_{t+1}, with δ_t = r_t + γ·V_{t+1} − V_t (Schulman et al. 2016, eq. 16).
/// `gamma_lambda` is γ·λ computed once in double and rounded to T, the order the Python
/// anchors evaluate `gamma * lam * lastgaelam` in.
template <class T>
RLHF_HOST_DEVICE constexpr T gae_step(T reward, T value, T next_value, T next_advantage, T gamma,
                                      T gamma_lambda) noexcept {
  const T delta = reward + gamma * next_value - value;
  return delta + gamma_lambda * next_advantage;
}

/// G_t = r_t + γ·G_{t+1} (REINFORCE returns).
template <class T>
RLHF_HOST_DEVICE constexpr T discounted_return_step(T reward, T next_return, T gamma) noexcept {
  return reward + gamma * next_return;
}

// γ = λ = 1 reduces GAE to reward-to-go minus value: two steps from the end of a row.
static_assert(gae_step(1.0, 0.5, 0.0, 0.0, 1.0, 1.0) == 0.5);
static_assert(gae_step(2.0, 1.0, 0.5, 0.5, 1.0, 1.0) == 2.0);
static_assert(discounted_return_step(1.0, 2.0, 0.5) == 2.0);

}  // namespace rlhf::math
