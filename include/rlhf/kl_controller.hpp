// rlhf/kl_controller.hpp — the KL coefficient β of the per-token penalty r_t = −β·KL_t.
//
// Two policies, chosen as a template parameter (or at run time with any_kl):
//   fixed_kl     β stays at `value` (paper: 0.02; DeepSpeed-Chat 0.1; TRL-current kl_coef 0.05).
//   adaptive_kl  the log-space proportional controller of Ziegler et al. 2019, as
//                lm-human-preferences, TRL 0.11 and OpenRLHF all implement it:
//                  e = clip(KL_observed / target − 1, −0.2, 0.2)
//                  β ← β · (1 + e · n_steps / horizon)
//
//   rlhf::kl_controller<rlhf::adaptive_kl> kl{{.init = 0.2, .target = 6.0, .horizon = 10'000}};
//   double beta = kl.value();
//   kl.update(observed_kl, /*n_steps=*/batch_size);   // once per rollout batch
//
// What to feed update(): the anchors disagree on the KL measure, so the target's meaning
// depends on it — lm-human-preferences and TRL 0.11 use the batch mean of Σ_t (logp − ref)
// over response tokens (target 6 nats); OpenRLHF the mean over samples of each sample's masked
// mean (targets like 0.1). n_steps is the number of episodes in the batch (lmhp: 512 per
// update, horizon 10 000 episodes).
//
// There is no floor in the anchors: when n_steps / horizon · 0.2 ≥ 1 the multiplier reaches 0 or
// goes negative. That is reproduced by default; set adaptive_kl::min_value to stop it.
// A NaN observed KL (a numerical event, not an error) leaves β unchanged and is reported in
// the returned kl_update (skipped = true).
#pragma once

#include <rlhf/config.hpp>
#include <rlhf/detail/checks.hpp>
#include <rlhf/math/kl_controller.hpp>

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>

namespace rlhf {

/// A constant coefficient.
struct fixed_kl {
  double value = 0.02;  ///< the paper's β (InstructGPT Appendix C.4)
};

/// Ziegler et al.'s adaptive controller. Defaults are TRL 0.11's (init 0.2, target 6, horizon
/// 10 000); lm-human-preferences uses init 0.15, OpenRLHF init 0.01 with its own KL measure.
struct adaptive_kl {
  double init = 0.2;       ///< β before the first update
  double target = 6.0;     ///< the KL the controller steers to (> 0)
  double horizon = 10000;  ///< episodes over which a full error changes β by a factor e^{±0.2}
  double max_error = 0.2;  ///< clip of the proportional error (all anchors: 0.2)
  std::optional<double> min_value{};  ///< optional floor for β (the anchors have none)
};

/// What one update did.
struct kl_update {
  double value = 0;        ///< β after the update
  double observed_kl = 0;  ///< the KL passed in
  double error = 0;        ///< the clipped proportional error (0 for fixed_kl)
  double multiplier = 1;   ///< β_new / β_old before any floor
  bool skipped = false;    ///< true when observed_kl was NaN and β was left unchanged
};

/// Everything needed to resume a controller exactly (save it in checkpoints).
struct kl_controller_state {
  double value = 0;
  std::uint64_t updates = 0;
  double last_observed_kl = 0;
  double last_error = 0;
  bool operator==(const kl_controller_state&) const = default;
};

namespace detail {
inline void validate(const fixed_kl& p) {
  require(std::isfinite(p.value) && p.value >= 0, "rlhf::kl_controller",
          "fixed_kl.value must be finite and non-negative, got " + number_string(p.value));
}
inline void validate(const adaptive_kl& p) {
  constexpr const char* function = "rlhf::kl_controller";
  require(std::isfinite(p.init) && p.init >= 0, function,
          "adaptive_kl.init must be finite and non-negative, got " + number_string(p.init));
  require(std::isfinite(p.target) && p.target > 0, function,
          "adaptive_kl.target must be finite and positive, got " + number_string(p.target));
  require(std::isfinite(p.horizon) && p.horizon > 0, function,
          "adaptive_kl.horizon must be finite and positive, got " + number_string(p.horizon));
  require(std::isfinite(p.max_error) && p.max_error >= 0, function,
          "adaptive_kl.max_error must be finite and non-negative, got " + number_string(p.max_error));
}
inline double initial_value(const fixed_kl& p) { return p.value; }
inline double initial_value(const adaptive_kl& p) { return p.init; }

inline kl_update next(const fixed_kl&, double value, double observed_kl, double) {
  return {.value = value, .observed_kl = observed_kl, .error = 0, .multiplier = 1, .skipped = false};
}
inline kl_update next(const adaptive_kl& p, double value, double observed_kl, double n_steps) {
  if (std::isnan(observed_kl))
    return {.value = value, .observed_kl = observed_kl, .error = 0, .multiplier = 1, .skipped = true};
  const double error = math::kl_proportional_error(observed_kl, p.target, p.max_error);
  double updated = math::kl_adaptive_step(value, error, n_steps, p.horizon);
  const double multiplier = 1.0 + error * n_steps / p.horizon;
  if (p.min_value && updated < *p.min_value) updated = *p.min_value;
  return {.value = updated, .observed_kl = observed_kl, .error = error, .multiplier = multiplier,
          .skipped = false};
}
}  // namespace detail

/// Either policy, chosen at run time (trainer options take this).
struct any_kl {
  std::variant<fixed_kl, adaptive_kl> policy = fixed_kl{};
  any_kl() = default;
  any_kl(fixed_kl p) : policy(p) {}     // NOLINT: implicit by design, `.kl = rlhf::fixed_kl{...}`
  any_kl(adaptive_kl p) : policy(p) {}  // NOLINT
};

namespace detail {
inline void validate(const any_kl& p) {
  std::visit([](const auto& q) { validate(q); }, p.policy);
}
inline double initial_value(const any_kl& p) {
  return std::visit([](const auto& q) { return initial_value(q); }, p.policy);
}
inline kl_update next(const any_kl& p, double value, double observed_kl, double n_steps) {
  return std::visit([&](const auto& q) { return next(q, value, observed_kl, n_steps); }, p.policy);
}
}  // namespace detail

/// The β of the KL penalty, updated once per rollout batch. Policy: fixed_kl, adaptive_kl or
/// any_kl. Host-only scalar state machine (no backend).
template <class Policy>
class kl_controller {
 public:
  /// Throws rlhf::invalid_argument for a negative/non-finite β, a target or horizon ≤ 0.
  explicit kl_controller(Policy policy = {}) : policy_(policy) {
    detail::validate(policy_);
    state_.value = detail::initial_value(policy_);
  }

  /// The coefficient to use now.
  [[nodiscard]] double value() const noexcept { return state_.value; }

  /// Feed the KL observed on the last batch of n_steps episodes; returns what changed.
  /// n_steps must be finite and ≥ 0.
  kl_update update(double observed_kl, double n_steps) {
    detail::require(std::isfinite(n_steps) && n_steps >= 0, "rlhf::kl_controller::update()",
                    "n_steps must be finite and non-negative, got " + detail::number_string(n_steps));
    const kl_update u = detail::next(policy_, state_.value, observed_kl, n_steps);
    state_.value = u.value;
    ++state_.updates;
    state_.last_observed_kl = observed_kl;
    state_.last_error = u.error;
    return u;
  }

  [[nodiscard]] const Policy& policy() const noexcept { return policy_; }
  [[nodiscard]] kl_controller_state state() const noexcept { return state_; }
  /// Continue from a saved state (the policy's options are not part of the state).
  void restore(const kl_controller_state& s) {
    detail::require(std::isfinite(s.value), "rlhf::kl_controller::restore()",
                    "state.value must be finite, got " + detail::number_string(s.value));
    state_ = s;
  }

 private:
  Policy policy_;
  kl_controller_state state_{};
};

using fixed_kl_controller = kl_controller<fixed_kl>;
using adaptive_kl_controller = kl_controller<adaptive_kl>;

}  // namespace rlhf
