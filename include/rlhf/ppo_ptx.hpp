// rlhf/ppo_ptx.hpp — the InstructGPT PPO-ptx objective (Ouyang et al. 2022, eq. 2) as one loss
// to minimise, with the gradient of that one total with respect to every input.
//
//   total = policy_loss + vf_coef·value_loss + ptx_coef·ptx_loss (+ kl_loss_coef·kl_loss)
//
//   policy_loss  the clipped surrogate of <rlhf/ppo.hpp> on the rollout (B, T)
//   value_loss   the clipped value loss of <rlhf/ppo.hpp> (½ included) on the rollout (B, T)
//   ptx_loss     mean token NLL of a pretraining batch (B', T'): −Σ ptx_logp·ptx_mask / Σ ptx_mask,
//                so dptx_logp = −ptx_coef·ptx_mask / Σ ptx_mask (the paper's γ·E[log π(x)] term)
//   kl_loss      optional KL-in-loss term (OpenRLHF `use_kl_loss`, GRPO): token mean of a KL
//                estimator of (logp − ref_logp), k3 by default. The paper puts the KL in the
//                reward instead (see <rlhf/kl.hpp>); k3 in the loss gives biased gradients.
//
// Gradients (all overwritten; any may be an empty view to skip it):
//   dlogp     = d total / d policy.logp      (B, T)
//   dvalues   = d total / d value.values     (B, T)   — already multiplied by vf_coef
//   dptx_logp = d total / d ptx_logp         (B', T') — already multiplied by ptx_coef
// The caller back-propagates dlogp through the rollout forward pass and dptx_logp through the
// pretraining forward pass and takes ONE optimizer step (paper Appendix C.4: "compute the PPO
// gradients and pretraining gradients in consecutive steps and accumulate them both into the
// gradient buffers"; OpenRLHF 0.5.9 does the same). ptx_step_mode::separate describes
// DeepSpeed-Chat instead (an optimizer step after the PPO gradients, then another after the
// ptx gradients): the gradients are the same, only `loss` leaves the ptx term out.
//
// Defaults are the paper's: vf_coef 0.1 (joint policy/value loss as lm-human-preferences and
// TRL), ptx_coef γ = 27.8, no KL-in-loss. Without pretraining data (the paper's "PPO" models,
// γ = 0) set ptx_coef = 0 and leave ptx_logp empty; with a separately trained critic set
// vf_coef = 0 and leave the value inputs empty (or vf_coef = 1 to get its plain gradient).
//
//   auto stats = rlhf::ppo_ptx_loss(rlhf::cpu,
//       {.policy = {.logp = logp, .old_logp = old_logp, .advantages = adv, .mask = mask},
//        .value = {.values = v, .old_values = v_old, .returns = ret, .mask = mask},
//        .ptx_logp = ptx_logp, .ptx_mask = ptx_mask},
//       {.dlogp = dlogp, .dvalues = dvalues, .dptx_logp = dptx_logp},
//       {.vf_coef = 0.1, .ptx_coef = 27.8});
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/config.hpp>
#include <rlhf/cpu/ppo.hpp>
#include <rlhf/cpu/ppo_ptx.hpp>
#include <rlhf/detail/checks.hpp>
#include <rlhf/math/kl.hpp>
#include <rlhf/math/ppo.hpp>
#include <rlhf/ppo.hpp>
#include <rlhf/tensor_view.hpp>

#include <cmath>
#include <concepts>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>

namespace rlhf {

/// Whether the ptx gradients share the PPO optimizer step.
enum class ptx_step_mode {
  /// One step for PPO and ptx gradients together: the paper, OpenRLHF 0.5.9. Default.
  accumulate,
  /// DeepSpeed-Chat: an optimizer step on the PPO gradients, then one on the ptx gradients
  /// (computed after the first step). Same gradients; `loss` excludes the ptx term.
  separate,
};

/// Everything the objective reads. ptx_logp is (B', T') with its own mask; the others (B, T).
template <class T>
struct ppo_ptx_inputs {
  ppo_policy_inputs<T> policy{};
  ppo_value_inputs<T> value{};     ///< may be empty when vf_coef = 0
  matrix_view<const T> ptx_logp{}; ///< log π_θ of pretraining tokens; may be empty when ptx_coef = 0
  mask_view ptx_mask{};            ///< nonzero = valid pretraining token; empty = all valid
  matrix_view<const T> ref_logp{}; ///< log π_ref of the rollout tokens (B, T); empty = no KL-in-loss
};

/// Where the gradients of the total go (overwritten; an empty view skips that gradient).
template <class T>
struct ppo_ptx_gradients {
  matrix_view<T> dlogp{};      ///< (B, T)
  matrix_view<T> dvalues{};    ///< (B, T)
  matrix_view<T> dptx_logp{};  ///< (B', T')
};

struct ppo_ptx_options {
  ppo_policy_options policy{};
  ppo_value_options value{};
  double vf_coef = 0.1;    ///< weight of the value loss (lm-human-preferences, TRL 0.11: 0.1)
  double ptx_coef = 27.8;  ///< γ of the paper (OpenRLHF 0.5.9 default 0.05; DeepSpeed-Chat 27.8)
  double kl_loss_coef = 0; ///< weight of the KL-in-loss term (0 = off; requires ref_logp otherwise)
  /// Estimator of the KL-in-loss term (<rlhf/kl.hpp>'s enum): k3 = e^{−ℓ} − 1 + ℓ with
  /// ℓ = logp − ref_logp, as OpenRLHF `use_kl_loss` and GRPO; k1, k2, abs also available.
  rlhf::kl_estimator kl_estimator = rlhf::kl_estimator::k3;
  std::optional<double> kl_clamp{};  ///< clamp the per-token estimate to [−c, c] (OpenRLHF: 10)
  loss_reduction ptx_reduction = loss_reduction::token_mean;  ///< of the ptx NLL
  double ptx_global_normaliser = 0;  ///< divisor for the global_* ptx reductions
  ptx_step_mode ptx_step = ptx_step_mode::accumulate;
};

template <class T>
struct ppo_ptx_stats {
  T loss{};  ///< the total (without the ptx term in ptx_step_mode::separate)
  ppo_policy_stats<T> policy{};
  ppo_value_stats<T> value{};
  T ptx_loss{};  ///< the ptx NLL before ptx_coef
  T kl_loss{};   ///< the KL-in-loss term before kl_loss_coef (computed whenever ref_logp is given)
  std::int64_t ptx_tokens = 0;
};

namespace detail {

inline void check_coefficient(const char* function, const char* name, double x) {
  require_lazy(std::isfinite(x) && x >= 0, function, [&] {
    return std::string(name) + " must be finite and >= 0, got " + number_string(x);
  });
}

template <class T>
ppo_ptx_stats<T> ppo_ptx_loss_checked(const cpu_backend& backend, const ppo_ptx_inputs<T>& in,
                                      const ppo_ptx_gradients<T>& grads, const ppo_ptx_options& o) {
  constexpr const char* function = "rlhf::ppo_ptx_loss()";
  // Shapes.
  check_ppo_policy_inputs(function, "policy.", in.policy);
  if (!grads.dlogp.empty()) require_same_shape(function, "policy.logp", in.policy.logp, "dlogp", grads.dlogp);
  const bool with_value = !in.value.values.empty();
  if (with_value) {
    check_ppo_value_inputs(function, "value.", in.value);
    if (!grads.dvalues.empty())
      require_same_shape(function, "value.values", in.value.values, "dvalues", grads.dvalues);
  } else {
    // Messages are built only on failure (these checks run on every call).
    require_lazy(o.vf_coef == 0.0, function, [&] {
      return "value.values is empty but vf_coef is " + number_string(o.vf_coef) +
             " (set vf_coef = 0 when the value loss is computed elsewhere)";
    });
    require_lazy(grads.dvalues.empty(), function, [&] {
      return "value.values is empty but dvalues is " + shape_string(grads.dvalues);
    });
  }
  const bool with_ptx = !in.ptx_logp.empty();
  if (with_ptx) {
    if (!in.ptx_mask.empty()) require_same_shape(function, "ptx_logp", in.ptx_logp, "ptx_mask", in.ptx_mask);
    if (!grads.dptx_logp.empty())
      require_same_shape(function, "ptx_logp", in.ptx_logp, "dptx_logp", grads.dptx_logp);
  } else {
    require_lazy(o.ptx_coef == 0.0, function, [&] {
      return "ptx_logp is empty but ptx_coef is " + number_string(o.ptx_coef) +
             " (set ptx_coef = 0 for PPO without pretraining data)";
    });
    require_lazy(grads.dptx_logp.empty(), function, [&] {
      return "ptx_logp is empty but dptx_logp is " + shape_string(grads.dptx_logp);
    });
  }
  const bool with_kl = !in.ref_logp.empty();
  if (with_kl)
    require_same_shape(function, "policy.logp", in.policy.logp, "ref_logp", in.ref_logp);
  else
    require_lazy(o.kl_loss_coef == 0.0, function, [&] {
      return "ref_logp is empty but kl_loss_coef is " + number_string(o.kl_loss_coef);
    });
  // Options.
  check_coefficient(function, "vf_coef", o.vf_coef);
  check_coefficient(function, "ptx_coef", o.ptx_coef);
  check_coefficient(function, "kl_loss_coef", o.kl_loss_coef);
  if (o.kl_clamp)
    require_lazy(*o.kl_clamp > 0, function,
                 [&] { return "kl_clamp must be > 0, got " + number_string(*o.kl_clamp); });
  require_lazy(o.kl_estimator == kl_estimator::k1 || o.kl_estimator == kl_estimator::k2 ||
                   o.kl_estimator == kl_estimator::k3 || o.kl_estimator == kl_estimator::abs,
               function, [] { return std::string("kl_estimator is not an rlhf::kl_estimator value"); });
  require_lazy(o.ptx_step == ptx_step_mode::accumulate || o.ptx_step == ptx_step_mode::separate, function,
               [] { return std::string("ptx_step is not a ptx_step_mode value"); });
  auto policy_cfg = make_ppo_policy_config<T>(function, "policy.", o.policy);
  policy_cfg.kl_kind = o.kl_estimator;
  policy_cfg.use_kl_clamp = o.kl_clamp.has_value();
  policy_cfg.kl_clamp = static_cast<T>(o.kl_clamp.value_or(0.0));
  policy_cfg.kl_coef = o.kl_loss_coef;
  const auto value_cfg = make_ppo_value_config<T>(function, "value.", o.value);
  const auto ptx_rule = ppo_reduction(function, "ptx_", o.ptx_reduction, o.ptx_global_normaliser);

  // Compute: all checks are done, outputs are written from here on.
  const auto policy = cpu_impl::ppo_policy(backend, in.policy.logp, in.policy.old_logp,
                                           in.policy.advantages, in.policy.mask, in.ref_logp,
                                           grads.dlogp, policy_cfg);
  cpu_impl::ppo_value_totals value{};
  if (with_value)
    value = cpu_impl::ppo_value(backend, in.value.values, in.value.old_values, in.value.returns,
                                in.value.mask, grads.dvalues, value_cfg, o.vf_coef,
                                /*zero=*/policy.skipped);  // TRL zeroes both losses on a skip
  cpu_impl::ppo_ptx_totals ptx{};
  if (with_ptx)
    ptx = cpu_impl::ppo_ptx_nll(backend, in.ptx_logp, in.ptx_mask, grads.dptx_logp, ptx_rule, o.ptx_coef);

  ppo_ptx_stats<T> out{};
  double total = policy.loss + o.vf_coef * value.loss + o.kl_loss_coef * policy.kl_loss;
  if (o.ptx_step == ptx_step_mode::accumulate) total += o.ptx_coef * ptx.loss;
  out.loss = static_cast<T>(total);
  out.policy = to_policy_stats<T>(policy);
  out.value = to_value_stats<T>(value);
  out.ptx_loss = static_cast<T>(ptx.loss);
  out.kl_loss = static_cast<T>(policy.kl_loss);
  out.ptx_tokens = ptx.tokens;
  return out;
}

}  // namespace detail

/// The PPO-ptx total loss, its gradients into `gradients` and every part's statistics.
/// Overloaded for float and double; views and rlhf::tensor convert implicitly. All checks run
/// before any output is written. A batch skipped by policy.ratio_threshold zeroes the policy,
/// value and KL terms and their gradients (as TRL 0.11), not the ptx term.
inline ppo_ptx_stats<float> ppo_ptx_loss(const cpu_backend& backend,
                                         const ppo_ptx_inputs<float>& inputs,
                                         const ppo_ptx_gradients<float>& gradients,
                                         const ppo_ptx_options& options = {}) {
  return detail::ppo_ptx_loss_checked<float>(backend, inputs, gradients, options);
}
inline ppo_ptx_stats<double> ppo_ptx_loss(const cpu_backend& backend,
                                          const ppo_ptx_inputs<double>& inputs,
                                          const ppo_ptx_gradients<double>& gradients,
                                          const ppo_ptx_options& options = {}) {
  return detail::ppo_ptx_loss_checked<double>(backend, inputs, gradients, options);
}

}  // namespace rlhf

namespace rlhf {
#if !defined(__CUDACC__)
/// Reached only from a host compiler: CUDA overloads must be compiled by nvcc.
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void ppo_ptx_loss(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::ppo_ptx_loss(cuda_backend, ...) needs nvcc: call it from a .cu file that "
                "includes <rlhf/ppo_ptx.hpp>");
}
#else
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void ppo_ptx_loss(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::ppo_ptx_loss(cuda_backend, ...) is not implemented for the CUDA backend yet");
}
#endif
}  // namespace rlhf
