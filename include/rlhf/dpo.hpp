// rlhf/dpo.hpp — Direct Preference Optimization and its variants (the offline alternative to
// reward model + PPO): sigmoid DPO / cDPO, IPO, hinge (SLiC), robust DPO.
//
// Shapes: every input and output is (B): summed sequence log-probabilities of the chosen and
// rejected completions under the policy (π) and the frozen reference (ref).
//
//   z_i = (π_c,i − π_r,i) − (ref_c,i − ref_r,i)          (the reference term is 0 when reference_free)
//   sigmoid  ℓ = −(1 − ε)·log σ(βz) − ε·log σ(−βz)        (DPO; cDPO when ε = label_smoothing > 0)
//   robust   ℓ = (−(1 − ε)·log σ(βz) + ε·log σ(−βz)) / (1 − 2ε)
//   ipo      ℓ = (z − 1/(2β))²
//   hinge    ℓ = max(0, 1 − βz)
//   L = mean_i ℓ_i;  ∂L/∂π_c,i = ℓ'(z_i)/B,  ∂L/∂π_r,i = −ℓ'(z_i)/B
//   implicit rewards (detached): r_c,i = β(π_c,i − ref_c,i), r_r,i = β(π_r,i − ref_r,i)
//
// Defaults are TRL's: β = 0.1, ε = 0, sigmoid. The formulas are TRL v0.11.4 `dpo_loss` and
// OpenRLHF `DPOLoss` (which return per-example losses and their mean respectively; both are
// given here). The reference log-probs enter no gradient.
//
//   auto s = rlhf::dpo_loss(rlhf::cpu, {.policy_chosen = pc, .policy_rejected = pr,
//                                       .reference_chosen = rc, .reference_rejected = rr},
//                           {.dpolicy_chosen = dpc, .dpolicy_rejected = dpr}, {.beta = 0.1});
//
// Every log-sigmoid is stable: losses and gradients are finite for βz = ±3000 and beyond.
// Float inputs are evaluated in double. Outputs must not alias inputs; empty output views are
// skipped.
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/config.hpp>
#include <rlhf/cpu/dpo.hpp>
#include <rlhf/detail/checks.hpp>
#include <rlhf/math/preference_loss.hpp>
#include <rlhf/tensor_view.hpp>

#include <cmath>
#include <concepts>
#include <string>
#include <type_traits>

namespace rlhf {

/// The per-example loss ℓ(z); see the header comment.
enum class dpo_variant {
  sigmoid,  ///< DPO (Rafailov et al. 2023); cDPO with label_smoothing > 0 (default)
  ipo,      ///< IPO (Azar et al. 2023)
  hinge,    ///< SLiC hinge (Zhao et al. 2023)
  robust,   ///< robust DPO (Chowdhury et al. 2024), TRL v0.11.4 "robust"
};

struct dpo_options {
  double beta = 0.1;             ///< β > 0: the KL strength (TRL default 0.1)
  double label_smoothing = 0.0;  ///< ε: sigmoid ε ∈ [0, 0.5], robust ε ∈ [0, 0.5); must be 0 for ipo, hinge
  dpo_variant variant = dpo_variant::sigmoid;
  /// Drop the reference log-ratio from z (TRL `reference_free`). The reference views may then be
  /// empty (implicit rewards become βπ); when given they are still used for the rewards.
  bool reference_free = false;
};

/// Inputs, (B) each: summed log-probs of each completion under the policy and the reference.
template <class T>
struct dpo_inputs {
  vector_view<const T> policy_chosen{};
  vector_view<const T> policy_rejected{};
  vector_view<const T> reference_chosen{};
  vector_view<const T> reference_rejected{};
};

/// Outputs, (B) each; any may be empty (not written).
template <class T>
struct dpo_outputs {
  vector_view<T> dpolicy_chosen{};    ///< ∂L/∂π_c of the batch-mean loss (overwritten)
  vector_view<T> dpolicy_rejected{};  ///< ∂L/∂π_r of the batch-mean loss (overwritten)
  vector_view<T> losses{};            ///< per-example ℓ_i (TRL's return value)
  vector_view<T> chosen_rewards{};    ///< β(π_c − ref_c)
  vector_view<T> rejected_rewards{};  ///< β(π_r − ref_r)
};

/// Batch statistics (TRL's logged metrics: rewards/chosen, rewards/rejected, rewards/accuracies,
/// rewards/margins).
struct dpo_stats {
  double loss = 0;                  ///< mean_i ℓ_i (OpenRLHF's return value)
  double chosen_reward_mean = 0;    ///< mean β(π_c − ref_c)
  double rejected_reward_mean = 0;  ///< mean β(π_r − ref_r)
  double reward_accuracy = 0;       ///< fraction with r_c > r_r strictly
  double reward_margin = 0;         ///< mean (r_c − r_r)
};

namespace detail {

inline const char* dpo_variant_name(dpo_variant v) {
  switch (v) {
    case dpo_variant::sigmoid: return "sigmoid";
    case dpo_variant::ipo: return "ipo";
    case dpo_variant::hinge: return "hinge";
    case dpo_variant::robust: return "robust";
  }
  return "unknown";
}

inline void check_dpo_options(const char* function, const dpo_options& options) {
  const bool known = options.variant == dpo_variant::sigmoid || options.variant == dpo_variant::ipo ||
                     options.variant == dpo_variant::hinge || options.variant == dpo_variant::robust;
  require(known, function,
          "variant must be one of dpo_variant::sigmoid, ipo, hinge, robust, got " +
              std::to_string(static_cast<int>(options.variant)));
  require(std::isfinite(options.beta) && options.beta > 0.0, function,
          "beta must be finite and > 0, got " + number_string(options.beta));
  const double eps = options.label_smoothing;
  const std::string variant = dpo_variant_name(options.variant);
  switch (options.variant) {
    case dpo_variant::sigmoid:
      require(eps >= 0.0 && eps <= 0.5, function,
              "label_smoothing must be in [0, 0.5] for variant sigmoid, got " + number_string(eps));
      break;
    case dpo_variant::robust:
      require(eps >= 0.0 && eps < 0.5, function,
              "label_smoothing must be in [0, 0.5) for variant robust, got " + number_string(eps));
      break;
    case dpo_variant::ipo:
    case dpo_variant::hinge:
      require(eps == 0.0, function,
              "label_smoothing applies to the sigmoid and robust variants only, got " +
                  number_string(eps) + " with variant " + variant);
      break;
  }
}

template <class T>
dpo_stats dpo_loss_checked(const dpo_inputs<T>& in, const dpo_outputs<T>& out,
                           const dpo_options& options) {
  constexpr const char* function = "rlhf::dpo_loss()";
  require_not_empty(function, "policy_chosen", in.policy_chosen);
  require_same_shape(function, "policy_chosen", in.policy_chosen, "policy_rejected", in.policy_rejected);
  require_same_shape(function, "reference_chosen", in.reference_chosen, "reference_rejected",
                     in.reference_rejected);
  if (in.reference_chosen.empty()) {
    require(options.reference_free, function,
            "reference_chosen is empty (" + shape_string(in.reference_chosen) +
                "): pass the reference log-probs or set reference_free");
  } else {
    require_same_shape(function, "policy_chosen", in.policy_chosen, "reference_chosen",
                       in.reference_chosen);
  }
  const auto check_output = [&](const char* name, const vector_view<T>& v) {
    if (!v.empty()) require_same_shape(function, "policy_chosen", in.policy_chosen, name, v);
  };
  check_output("dpolicy_chosen", out.dpolicy_chosen);
  check_output("dpolicy_rejected", out.dpolicy_rejected);
  check_output("losses", out.losses);
  check_output("chosen_rewards", out.chosen_rewards);
  check_output("rejected_rewards", out.rejected_rewards);
  check_dpo_options(function, options);

  const double beta = options.beta, eps = options.label_smoothing;
  const auto run = [&](const auto& term) {
    const auto r = cpu_impl::dpo_loss(in.policy_chosen, in.policy_rejected, in.reference_chosen,
                                      in.reference_rejected, out.dpolicy_chosen,
                                      out.dpolicy_rejected, out.losses, out.chosen_rewards,
                                      out.rejected_rewards, beta, options.reference_free, term);
    return dpo_stats{r.loss, r.chosen_reward_mean, r.rejected_reward_mean, r.reward_accuracy,
                     r.reward_margin};
  };
  switch (options.variant) {
    case dpo_variant::ipo: return run([&](double z) { return math::dpo_ipo(z, beta); });
    case dpo_variant::hinge: return run([&](double z) { return math::dpo_hinge(z, beta); });
    case dpo_variant::robust: return run([&](double z) { return math::dpo_robust(z, beta, eps); });
    case dpo_variant::sigmoid: break;
  }
  return run([&](double z) { return math::dpo_sigmoid(z, beta, eps); });
}

}  // namespace detail

/// DPO-family loss over a batch of preference pairs; see the header comment. Returns the mean
/// loss and the implicit-reward statistics; writes the requested outputs.
inline dpo_stats dpo_loss(const cpu_backend&, const dpo_inputs<float>& inputs,
                          const dpo_outputs<float>& outputs, const dpo_options& options = {}) {
  return detail::dpo_loss_checked<float>(inputs, outputs, options);
}
inline dpo_stats dpo_loss(const cpu_backend&, const dpo_inputs<double>& inputs,
                          const dpo_outputs<double>& outputs, const dpo_options& options = {}) {
  return detail::dpo_loss_checked<double>(inputs, outputs, options);
}

#if !defined(__CUDACC__)
/// Reached only from a host compiler: CUDA overloads are compiled by nvcc.
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void dpo_loss(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::dpo_loss(cuda_backend, ...) needs nvcc: call it from a .cu file that "
                "includes <rlhf/dpo.hpp>");
}
#else
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void dpo_loss(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::dpo_loss(cuda_backend, ...) is not implemented for the CUDA backend yet");
}
#endif

}  // namespace rlhf
