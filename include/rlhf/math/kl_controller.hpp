// rlhf/math/kl_controller.hpp — the adaptive KL coefficient update (Ziegler et al. 2019, §2.2).
#pragma once

#include <rlhf/config.hpp>
#include <rlhf/math/stable.hpp>

namespace rlhf::math {

/// e = clip(KL / target − 1, −max_error, max_error): the proportional error of the controller.
RLHF_HOST_DEVICE constexpr double kl_proportional_error(double observed_kl, double target,
                                                        double max_error) noexcept {
  return clamp(observed_kl / target - 1.0, -max_error, max_error);
}

/// β · (1 + e · n_steps / horizon), evaluated in the anchors' order ((e · n) / h).
RLHF_HOST_DEVICE constexpr double kl_adaptive_step(double beta, double error, double n_steps,
                                                   double horizon) noexcept {
  return beta * (1.0 + error * n_steps / horizon);
}

static_assert(kl_proportional_error(12.0, 6.0, 0.2) == 0.2);     // clipped above
static_assert(kl_proportional_error(0.0, 6.0, 0.2) == -0.2);     // clipped below
static_assert(kl_proportional_error(6.0, 6.0, 0.2) == 0.0);      // on target: no change
static_assert(kl_adaptive_step(1.0, 0.2, 100.0, 100.0) == 1.2);  // the golden's first step

}  // namespace rlhf::math
