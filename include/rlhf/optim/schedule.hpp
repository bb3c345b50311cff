// rlhf/optim/schedule.hpp — learning-rate schedules: linear warm-up, then constant, cosine or
// linear decay to a floor. Host-only scalar functions (no backend).
//
// s is the number of optimizer steps already taken (0 for the first update), W = warmup_steps,
// S = total_steps, f0 = warmup_start, m = min_ratio. The schedule returns a factor; the rate of
// step s is peak_lr · factor(s):
//
//   s < W             factor = f0 + (1 − f0) · s / W                     (linear warm-up)
//   s ≥ W, constant   factor = 1
//   s ≥ W, cosine     p = min(1, (s − W) / max(1, S − W)),  factor = m + (1 − m) · ½(1 + cos πp)
//   s ≥ W, linear     p as above,                          factor = m + (1 − m) · (1 − p)
//
// With f0 = 0 and m = 0 these are Hugging Face's get_constant_schedule_with_warmup,
// get_cosine_schedule_with_warmup and get_linear_schedule_with_warmup for s ≤ S (the first
// update then has rate 0, as there). Past S the cosine and linear factors stay at m, where
// Hugging Face's cosine climbs again. InstructGPT: PPO uses a constant rate after a 10-step
// warm-up from 1/10 of the peak ({.kind = constant, .warmup_steps = 10, .warmup_start = 0.1});
// the reward model decays with a cosine to 10 % ({.kind = cosine, .min_ratio = 0.1}).
#pragma once

#include <rlhf/config.hpp>
#include <rlhf/detail/checks.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

namespace rlhf {

/// What happens after the warm-up.
enum class schedule_kind {
  constant,  ///< stay at the peak (InstructGPT PPO). Default.
  cosine,    ///< half a cosine from the peak down to min_ratio · peak at total_steps
  linear,    ///< a straight line from the peak down to min_ratio · peak at total_steps
};

struct lr_schedule_options {
  schedule_kind kind = schedule_kind::constant;
  std::uint64_t warmup_steps = 0;  ///< W: steps of linear warm-up (0 = none)
  double warmup_start = 0.0;       ///< f0: the factor at step 0, in [0, 1] (paper PPO: 0.1)
  std::uint64_t total_steps = 0;   ///< S: the step at which cosine/linear reach the floor
  double min_ratio = 0.0;          ///< m: the floor as a fraction of the peak, in [0, 1]
};

/// A learning-rate schedule as a multiplier of the peak rate.
class lr_schedule {
 public:
  /// Throws rlhf::invalid_argument when warmup_start or min_ratio is outside [0, 1], or when a
  /// decaying kind has total_steps < warmup_steps.
  lr_schedule(lr_schedule_options options = {}) : options_(options) {  // NOLINT: implicit by design
    constexpr const char* function = "rlhf::lr_schedule";
    detail::require(options_.warmup_start >= 0 && options_.warmup_start <= 1, function,
                    "warmup_start must be in [0, 1], got " + detail::number_string(options_.warmup_start));
    detail::require(options_.min_ratio >= 0 && options_.min_ratio <= 1, function,
                    "min_ratio must be in [0, 1], got " + detail::number_string(options_.min_ratio));
    detail::require(options_.kind == schedule_kind::constant || options_.total_steps >= options_.warmup_steps,
                    function,
                    "total_steps (" + std::to_string(options_.total_steps) +
                        ") must be at least warmup_steps (" + std::to_string(options_.warmup_steps) +
                        ") for a decaying schedule");
  }

  /// The multiplier of the peak rate for the update that follows `steps_taken` updates.
  [[nodiscard]] double factor(std::uint64_t steps_taken) const noexcept {
    const auto s = static_cast<double>(steps_taken);
    const auto w = static_cast<double>(options_.warmup_steps);
    if (steps_taken < options_.warmup_steps) {
      return options_.warmup_start + (1.0 - options_.warmup_start) * s / w;
    }
    if (options_.kind == schedule_kind::constant) return 1.0;
    const double span = std::max(1.0, static_cast<double>(options_.total_steps) - w);
    const double progress = std::min(1.0, (s - w) / span);
    const double m = options_.min_ratio;
    if (options_.kind == schedule_kind::cosine)
      return m + (1.0 - m) * 0.5 * (1.0 + std::cos(3.141592653589793 * progress));
    return m + (1.0 - m) * (1.0 - progress);
  }

  /// peak · factor(steps_taken).
  [[nodiscard]] double rate(double peak, std::uint64_t steps_taken) const noexcept {
    return peak * factor(steps_taken);
  }

  [[nodiscard]] const lr_schedule_options& options() const noexcept { return options_; }

 private:
  lr_schedule_options options_;
};

}  // namespace rlhf
