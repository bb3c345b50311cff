// rlhf/ppo.hpp — the PPO clipped policy loss and clipped value loss, with their gradients.
//
// Shapes: every tensor is (B, T) — B sequences of T response positions; mask nonzero = valid.
//
// Policy (Schulman et al. 2017, as lm-human-preferences, TRL, OpenRLHF and DeepSpeed-Chat run it):
//   ℓ_t   = logp_t − old_logp_t            (optionally clamped to [−c, c] first: OpenRLHF c = 20)
//   r_t   = exp(ℓ_t)
//   L_t   = −min(r_t·A_t, clip(r_t, 1 − ε_low, 1 + ε_high)·A_t)
//   dual clip c > 1 (A_t < 0 only): L_t = −max(min(r_t·A_t, clip(r_t)·A_t), c·A_t)
//   loss  = reduce(L) — see loss_reduction; default: Σ_t L_t·m_t / Σ_t m_t over the minibatch
//   dL/dlogp_t = −A_t·r_t·w_t where the unclipped branch is active, else 0 (w_t: the reduction
//   weight of token t). Exact ties and clamp bounds follow PyTorch autograd (see math/ppo.hpp).
//
// Value (all anchors carry the ½):
//   V_clip = clamp(V, V_old − c, V_old + c)
//   loss   = ½·reduce(max((V − R)², (V_clip − R)²))        (½·reduce((V − R)²) with clip = none)
//
// Defaults: ε_low = ε_high = 0.2 (the paper and every anchor), value clip 0.2 (lm-human-
// preferences, TRL, DeepSpeed-Chat, OpenRLHF 0.5.9; OpenRLHF's current CLI uses 0.5), token
// mean over the minibatch (TRL, OpenRLHF's default, DeepSpeed-Chat).
//
//   auto stats = rlhf::ppo_policy_loss(rlhf::cpu,
//       {.logp = logp, .old_logp = old_logp, .advantages = adv, .mask = mask}, dlogp, {.clip_low = 0.2});
//
// Masked positions are never read (they may hold anything, NaN included) and get a zero
// gradient. An empty mask view means every position is valid (lm-human-preferences' unmasked
// mean). A row with no valid token contributes nothing, in every reduction. Gradients are
// overwritten, never accumulated; an empty gradient view computes the statistics only.
// Outputs must not alias inputs. Results do not depend on the backend's thread count.
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/config.hpp>
#include <rlhf/cpu/ppo.hpp>
#include <rlhf/detail/checks.hpp>
#include <rlhf/math/ppo.hpp>
#include <rlhf/tensor_view.hpp>

#include <cmath>
#include <concepts>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>

namespace rlhf {

/// How per-token losses become one number (ANCHORS §10 item 4).
enum class loss_reduction {
  /// Σ loss·mask / Σ mask over the minibatch (TRL, OpenRLHF default, DeepSpeed-Chat). Default.
  token_mean,
  /// Mean over non-empty rows of each row's masked mean (OpenRLHF `token_level_loss=False`,
  /// OpenRLHF 0.5.9). Rows without a valid token are left out of the mean (0.5.9 gives NaN).
  sequence_mean,
  /// Σ loss·mask / global_normaliser (OpenRLHF token level with a global token count:
  /// global_normaliser = batch_num_tokens / dp_size).
  global_token_mean,
  /// Σ over non-empty rows of each row's masked mean / global_normaliser (OpenRLHF sequence
  /// level with a global count: global_normaliser = global_batch_size / dp_size).
  global_sequence_mean,
};

/// Inputs of the policy loss, all (B, T). Memory = device_memory for the CUDA backend.
template <class T, class Memory = host_memory>
struct ppo_policy_inputs {
  tensor_view<const T, 2, Memory> logp{};        ///< log π_θ(a_t) of the policy being trained
  tensor_view<const T, 2, Memory> old_logp{};    ///< log π_old(a_t) of the policy that sampled the rollout
  tensor_view<const T, 2, Memory> advantages{};  ///< A_t (usually whitened GAE advantages)
  tensor_view<const std::uint8_t, 2, Memory> mask{};  ///< nonzero = valid token; empty = all valid
};

struct ppo_policy_options {
  double clip_low = 0.2;   ///< ε_low: ratios below 1 − ε_low are clipped, in [0, 1)
  double clip_high = 0.2;  ///< ε_high: ratios above 1 + ε_high are clipped (DAPO "clip higher": 0.28)
  /// Dual clip c > 1: for A < 0 the loss is at most −c·A (OpenRLHF `dual_clip`; off by default).
  std::optional<double> dual_clip{};
  /// Clamp the log ratio to [−c, c] before exp (OpenRLHF: 20; off by default). The gradient is
  /// 0 where the clamp is active.
  std::optional<double> log_ratio_clamp{};
  loss_reduction reduction = loss_reduction::token_mean;
  double global_normaliser = 0;  ///< divisor of the global_* reductions (must then be > 0)
  /// TRL 0.11 `ratio_threshold` (10 there): when the masked mean ratio exceeds it, the batch is
  /// skipped — loss and gradient are 0 and stats.skipped is true. Off by default.
  std::optional<double> ratio_threshold{};
};

/// What the policy loss reports. Token statistics are masked means over all valid tokens,
/// whatever the reduction.
template <class T>
struct ppo_policy_stats {
  T loss{};        ///< the reduced loss (0 when skipped or when no token is valid)
  T clipfrac{};    ///< fraction of tokens where the clipped branch is strictly active
                   ///< (TRL `policy/clipfrac`, OpenRLHF `clip_ratio`)
  T approx_kl{};   ///< ½·mean (logp − old_logp)² (TRL `policy/approxkl`, lm-human-preferences `approxkl`)
  T ratio_mean{};  ///< mean r (TRL's `avg_ratio`, compared with ratio_threshold)
  T ratio_var{};   ///< population variance of r
  T ratio_max{};   ///< max r
  bool skipped = false;  ///< true when ratio_threshold skipped the batch
  T policy_kl{};   ///< mean (old_logp − logp) (TRL `policy/policykl`, OpenRLHF `ppo_kl`)
  T dual_clipfrac{};     ///< fraction of tokens where the dual clip is active
  T advantages_mean{};   ///< mean A (TRL `policy/advantages_mean`)
  std::int64_t tokens = 0;     ///< valid tokens
  std::int64_t sequences = 0;  ///< rows with at least one valid token
};

/// Inputs of the value loss, all (B, T). Memory = device_memory for the CUDA backend.
template <class T, class Memory = host_memory>
struct ppo_value_inputs {
  tensor_view<const T, 2, Memory> values{};      ///< V_θ(s_t) of the value model being trained
  tensor_view<const T, 2, Memory> old_values{};  ///< V at rollout time (the clip centre)
  tensor_view<const T, 2, Memory> returns{};     ///< R_t, the value target (GAE advantages + old values)
  tensor_view<const std::uint8_t, 2, Memory> mask{};  ///< nonzero = valid token; empty = all valid
};

struct ppo_value_options {
  /// Clip c of V around V_old; std::nullopt = plain ½(V − R)². 0.2: lm-human-preferences, TRL,
  /// DeepSpeed-Chat, OpenRLHF 0.5.9; OpenRLHF's current `critic.value_clip` is 0.5.
  std::optional<double> clip = 0.2;
  loss_reduction reduction = loss_reduction::token_mean;
  double global_normaliser = 0;  ///< divisor of the global_* reductions (must then be > 0)
};

/// What the value loss reports (masked means over valid tokens).
template <class T>
struct ppo_value_stats {
  T loss{};                ///< ½·reduce(max(...)) — the ½ included
  T clipfrac{};            ///< fraction of tokens where the clipped error is strictly larger (TRL `val/clipfrac`)
  T explained_variance{};  ///< 1 − Var[R − V]/Var[R]; 0 when Var[R] = 0
  T value_mean{};          ///< mean V (TRL `val/vpred`)
  T value_error{};         ///< mean (V − R)² (TRL `val/error`)
  T returns_mean{};        ///< mean R (TRL `returns/mean`)
  T returns_var{};         ///< unbiased variance of R (TRL `returns/var`); 0 with < 2 tokens
  T old_value_mean{};      ///< mean V_old (TRL `val/mean`)
  T old_value_var{};       ///< unbiased variance of V_old (TRL `val/var`); 0 with < 2 tokens
  std::int64_t tokens = 0;
};

namespace detail {

inline const char* loss_reduction_name(loss_reduction r) noexcept {
  switch (r) {
    case loss_reduction::token_mean:
      return "token_mean";
    case loss_reduction::sequence_mean:
      return "sequence_mean";
    case loss_reduction::global_token_mean:
      return "global_token_mean";
    case loss_reduction::global_sequence_mean:
      return "global_sequence_mean";
  }
  return "?";
}

/// Validates a reduction and its normaliser; `prefix` names the options ("" or "policy.").
inline cpu_impl::ppo_reduction_rule ppo_reduction(const char* function, const std::string& prefix,
                                                  loss_reduction reduction, double normaliser) {
  const bool global = reduction == loss_reduction::global_token_mean ||
                      reduction == loss_reduction::global_sequence_mean;
  const bool per_sequence = reduction == loss_reduction::sequence_mean ||
                            reduction == loss_reduction::global_sequence_mean;
  // Messages are built only on failure (these checks run on every call).
  require_lazy(reduction == loss_reduction::token_mean || reduction == loss_reduction::sequence_mean ||
                   global,
               function, [&] { return prefix + "reduction is not a loss_reduction value"; });
  if (global)
    require_lazy(std::isfinite(normaliser) && normaliser > 0, function, [&] {
      return prefix + "global_normaliser must be finite and > 0 with reduction " +
             loss_reduction_name(reduction) + ", got " + number_string(normaliser);
    });
  return {per_sequence, global ? normaliser : 0.0};
}

template <class T, class Memory>
void check_ppo_policy_inputs(const char* function, const std::string& prefix,
                             const ppo_policy_inputs<T, Memory>& in) {
  // The names are concatenated only when a check fails.
  if (in.logp.empty()) require_not_empty(function, prefix + "logp", in.logp);
  if (!same_shape(in.logp, in.old_logp))
    require_same_shape(function, prefix + "logp", in.logp, prefix + "old_logp", in.old_logp);
  if (!same_shape(in.logp, in.advantages))
    require_same_shape(function, prefix + "logp", in.logp, prefix + "advantages", in.advantages);
  if (!in.mask.empty() && !same_shape(in.logp, in.mask))
    require_same_shape(function, prefix + "logp", in.logp, prefix + "mask", in.mask);
}

template <class T>
cpu_impl::ppo_policy_config<T> make_ppo_policy_config(const char* function, const std::string& prefix,
                                                 const ppo_policy_options& o) {
  require_lazy(o.clip_low >= 0 && o.clip_low < 1, function, [&] {
    return prefix + "clip_low must be in [0, 1), got " + number_string(o.clip_low);
  });
  require_lazy(std::isfinite(o.clip_high) && o.clip_high >= 0, function, [&] {
    return prefix + "clip_high must be finite and >= 0, got " + number_string(o.clip_high);
  });
  if (o.dual_clip)
    require_lazy(std::isfinite(*o.dual_clip) && *o.dual_clip > 1, function, [&] {
      return prefix + "dual_clip must be finite and > 1, got " + number_string(*o.dual_clip);
    });
  if (o.log_ratio_clamp)
    require_lazy(*o.log_ratio_clamp > 0, function, [&] {
      return prefix + "log_ratio_clamp must be > 0, got " + number_string(*o.log_ratio_clamp);
    });
  if (o.ratio_threshold)
    require_lazy(*o.ratio_threshold > 0, function, [&] {
      return prefix + "ratio_threshold must be > 0, got " + number_string(*o.ratio_threshold);
    });
  cpu_impl::ppo_policy_config<T> cfg{};
  cfg.reduction = ppo_reduction(function, prefix, o.reduction, o.global_normaliser);
  // Bounds computed in double and rounded once to T, as PyTorch does with a Python scalar.
  cfg.ratio_low = static_cast<T>(1.0 - o.clip_low);
  cfg.ratio_high = static_cast<T>(1.0 + o.clip_high);
  cfg.use_dual_clip = o.dual_clip.has_value();
  cfg.dual_clip = static_cast<T>(o.dual_clip.value_or(0.0));
  cfg.use_log_ratio_clamp = o.log_ratio_clamp.has_value();
  cfg.log_ratio_clamp = static_cast<T>(o.log_ratio_clamp.value_or(0.0));
  cfg.use_ratio_threshold = o.ratio_threshold.has_value();
  cfg.ratio_threshold = o.ratio_threshold.value_or(0.0);
  return cfg;
}

template <class T>
ppo_policy_stats<T> to_policy_stats(const cpu_impl::ppo_policy_totals& s) {
  ppo_policy_stats<T> out{};
  out.loss = static_cast<T>(s.loss);
  out.clipfrac = static_cast<T>(s.clipfrac);
  out.approx_kl = static_cast<T>(s.approx_kl);
  out.ratio_mean = static_cast<T>(s.ratio_mean);
  out.ratio_var = static_cast<T>(s.ratio_var);
  out.ratio_max = static_cast<T>(s.ratio_max);
  out.skipped = s.skipped;
  out.policy_kl = static_cast<T>(s.policy_kl);
  out.dual_clipfrac = static_cast<T>(s.dual_clipfrac);
  out.advantages_mean = static_cast<T>(s.advantages_mean);
  out.tokens = s.tokens;
  out.sequences = s.sequences;
  return out;
}

template <class T>
ppo_policy_stats<T> ppo_policy_loss_checked(const cpu_backend& backend,
                                            const ppo_policy_inputs<T>& in, matrix_view<T> dlogp,
                                            const ppo_policy_options& options) {
  constexpr const char* function = "rlhf::ppo_policy_loss()";
  check_ppo_policy_inputs(function, "", in);
  if (!dlogp.empty()) require_same_shape(function, "logp", in.logp, "dlogp", dlogp);
  const auto cfg = make_ppo_policy_config<T>(function, "", options);
  return to_policy_stats<T>(cpu_impl::ppo_policy(backend, in.logp, in.old_logp, in.advantages,
                                                 in.mask, matrix_view<const T>{}, dlogp, cfg));
}

template <class T, class Memory>
void check_ppo_value_inputs(const char* function, const std::string& prefix,
                            const ppo_value_inputs<T, Memory>& in) {
  if (in.values.empty()) require_not_empty(function, prefix + "values", in.values);
  if (!same_shape(in.values, in.old_values))
    require_same_shape(function, prefix + "values", in.values, prefix + "old_values", in.old_values);
  if (!same_shape(in.values, in.returns))
    require_same_shape(function, prefix + "values", in.values, prefix + "returns", in.returns);
  if (!in.mask.empty() && !same_shape(in.values, in.mask))
    require_same_shape(function, prefix + "values", in.values, prefix + "mask", in.mask);
}

template <class T>
cpu_impl::ppo_value_config<T> make_ppo_value_config(const char* function, const std::string& prefix,
                                               const ppo_value_options& o) {
  if (o.clip)
    require_lazy(std::isfinite(*o.clip) && *o.clip >= 0, function, [&] {
      return prefix + "clip must be finite and >= 0, got " + number_string(*o.clip);
    });
  cpu_impl::ppo_value_config<T> cfg{};
  cfg.use_clip = o.clip.has_value();
  cfg.clip = static_cast<T>(o.clip.value_or(0.0));
  cfg.reduction = ppo_reduction(function, prefix, o.reduction, o.global_normaliser);
  return cfg;
}

template <class T>
ppo_value_stats<T> to_value_stats(const cpu_impl::ppo_value_totals& s) {
  ppo_value_stats<T> out{};
  out.loss = static_cast<T>(s.loss);
  out.clipfrac = static_cast<T>(s.clipfrac);
  out.explained_variance = static_cast<T>(s.explained_variance);
  out.value_mean = static_cast<T>(s.value_mean);
  out.value_error = static_cast<T>(s.value_error);
  out.returns_mean = static_cast<T>(s.returns_mean);
  out.returns_var = static_cast<T>(s.returns_var);
  out.old_value_mean = static_cast<T>(s.old_value_mean);
  out.old_value_var = static_cast<T>(s.old_value_var);
  out.tokens = s.tokens;
  return out;
}

template <class T>
ppo_value_stats<T> ppo_value_loss_checked(const cpu_backend& backend, const ppo_value_inputs<T>& in,
                                          matrix_view<T> dvalues, const ppo_value_options& options) {
  constexpr const char* function = "rlhf::ppo_value_loss()";
  check_ppo_value_inputs(function, "", in);
  if (!dvalues.empty()) require_same_shape(function, "values", in.values, "dvalues", dvalues);
  const auto cfg = make_ppo_value_config<T>(function, "", options);
  return to_value_stats<T>(
      cpu_impl::ppo_value(backend, in.values, in.old_values, in.returns, in.mask, dvalues, cfg));
}

template <class T>
T explained_variance_checked(const cpu_backend& backend, matrix_view<const T> values,
                             matrix_view<const T> returns, mask_view mask) {
  constexpr const char* function = "rlhf::explained_variance()";
  require_not_empty(function, "values", values);
  require_same_shape(function, "values", values, "returns", returns);
  if (!mask.empty()) require_same_shape(function, "values", values, "mask", mask);
  return static_cast<T>(cpu_impl::explained_variance(backend, values, returns, mask));
}

}  // namespace detail

/// The clipped-surrogate policy loss, its gradient d(loss)/d(logp) into `dlogp` (B, T;
/// overwritten; may be empty for statistics only) and its statistics. Overloaded for float and
/// double; per-token terms are computed in the element type, reductions in double.
inline ppo_policy_stats<float> ppo_policy_loss(const cpu_backend& backend,
                                               const ppo_policy_inputs<float>& inputs,
                                               matrix_view<float> dlogp,
                                               const ppo_policy_options& options = {}) {
  return detail::ppo_policy_loss_checked<float>(backend, inputs, dlogp, options);
}
inline ppo_policy_stats<double> ppo_policy_loss(const cpu_backend& backend,
                                                const ppo_policy_inputs<double>& inputs,
                                                matrix_view<double> dlogp,
                                                const ppo_policy_options& options = {}) {
  return detail::ppo_policy_loss_checked<double>(backend, inputs, dlogp, options);
}

/// The clipped value loss (½ included), its gradient d(loss)/d(values) into `dvalues` (B, T;
/// overwritten; may be empty) and its statistics. Overloaded for float and double.
inline ppo_value_stats<float> ppo_value_loss(const cpu_backend& backend,
                                             const ppo_value_inputs<float>& inputs,
                                             matrix_view<float> dvalues,
                                             const ppo_value_options& options = {}) {
  return detail::ppo_value_loss_checked<float>(backend, inputs, dvalues, options);
}
inline ppo_value_stats<double> ppo_value_loss(const cpu_backend& backend,
                                              const ppo_value_inputs<double>& inputs,
                                              matrix_view<double> dvalues,
                                              const ppo_value_options& options = {}) {
  return detail::ppo_value_loss_checked<double>(backend, inputs, dvalues, options);
}

/// Masked explained variance of the value predictions, 1 − Var[R − V]/Var[R] over valid
/// tokens (population variances; the ratio does not depend on the choice). Defined as 0 when
/// Var[R] = 0, including a single valid token or none (Stable-Baselines3 and OpenAI baselines
/// return NaN there). values, returns, mask: (B, T); an empty mask means all valid.
inline float explained_variance(const cpu_backend& backend, matrix_view<const float> values,
                                matrix_view<const float> returns, mask_view mask = {}) {
  return detail::explained_variance_checked<float>(backend, values, returns, mask);
}
inline double explained_variance(const cpu_backend& backend, matrix_view<const double> values,
                                 matrix_view<const double> returns, mask_view mask = {}) {
  return detail::explained_variance_checked<double>(backend, values, returns, mask);
}

}  // namespace rlhf

#if defined(__CUDACC__)
#include <rlhf/cuda/ppo.cuh>
namespace rlhf {
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void explained_variance(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::explained_variance(cuda_backend, ...) is not implemented for the CUDA "
                "backend yet");
}
}  // namespace rlhf
#else
namespace rlhf {
/// Reached only from a host compiler: CUDA overloads must be compiled by nvcc.
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void ppo_policy_loss(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::ppo_policy_loss(cuda_backend, ...) needs nvcc: call it from a .cu file that "
                "includes <rlhf/ppo.hpp>");
}
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void ppo_value_loss(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::ppo_value_loss(cuda_backend, ...) needs nvcc: call it from a .cu file that "
                "includes <rlhf/ppo.hpp>");
}
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void explained_variance(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::explained_variance(cuda_backend, ...) needs nvcc: call it from a .cu file "
                "that includes <rlhf/ppo.hpp>");
}
}  // namespace rlhf
#endif
