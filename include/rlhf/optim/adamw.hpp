// rlhf/optim/adamw.hpp — AdamW (Loshchilov & Hutter 2019) with the exact update of PyTorch's
// torch.optim.AdamW (single-tensor path, amsgrad=False, maximize=False), so that our steps equal
// PyTorch's to float rounding. Per parameter, with t the step number (1 for the first update)
// and lr the scheduled rate of this update:
//
//   θ ← θ · (1 − lr·λ)                      decoupled weight decay (only where the mask decays)
//   m ← lerp(m, g, 1 − β1)                   = m + (1 − β1)(g − m)
//   v ← v·β2 + (1 − β2)·g·g
//   θ ← θ − (lr / (1 − β1^t)) · m / (sqrt(v) / sqrt(1 − β2^t) + ε)
//
// The scalars (1 − lr·λ, lr / (1 − β1^t), (1 − β2^t)^0.5) are formed in double, as Python forms
// them, and rounded to the parameter type; the element-wise operations run in the parameter
// type in PyTorch's order, with fused multiply-adds where PyTorch's CPU kernels have them (the
// lerp and the addcmul). Against torch 2.15 on x86-64 (tests/data/golden/adamw.json) float64
// steps are bitwise equal and float32 moments too, while a few float32 parameters differ by a
// few ulp (under 4e-9 absolute; PyTorch's scalar tail and vector body round differently). m and v start at zero on the
// first step (PyTorch's lazy state).
//
// Defaults: β1 = 0.9, β2 = 0.95 (InstructGPT Appendix C), ε = 1e-8 (PyTorch), weight decay 0
// (TRL, OpenRLHF and DeepSpeed-Chat default to 0; PyTorch's AdamW to 0.01, nanoGPT to 0.1).
// The weight-decay mask by default exempts biases and normalisation weights by name
// (rlhf::decays_by_name, the Hugging Face / DeepSpeed-Chat "no_decay" rule); pass
// rlhf::decays_matrices(model) for nanoGPT's rule (decay only parameters of rank ≥ 2).
//
//   rlhf::adamw<float> opt{{.lr = 1e-5, .weight_decay = 0.1,
//                           .schedule = {{.warmup_steps = 10, .warmup_start = 0.1}}}};
//   model.backward(...);
//   auto clip = rlhf::clip_grad_norm(model.parameters(), 1.0);
//   if (clip.finite()) opt.step(model.parameters());
//   opt.zero_grad(model.parameters());
//
// State is kept per parameter in the order of the range passed to step(); every later call
// must pass the same parameters (same names and sizes) in the same order. Host-only.
#pragma once

#include <rlhf/concepts.hpp>
#include <rlhf/config.hpp>
#include <rlhf/detail/checks.hpp>
#include <rlhf/optim/clip.hpp>
#include <rlhf/optim/schedule.hpp>

#include <cctype>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rlhf {

/// The default weight-decay rule: decay every parameter except biases (last name component
/// "bias") and normalisation weights (a name component starting with "ln" — GPT-2's ln_1,
/// ln_2, ln_f — or containing "norm" in any case: LayerNorm, layer_norm, rmsnorm).
[[nodiscard]] inline bool decays_by_name(std::string_view name) {
  std::size_t start = 0;
  bool last_is_bias = false;
  while (start <= name.size()) {
    std::size_t end = name.find('.', start);
    if (end == std::string_view::npos) end = name.size();
    const std::string_view part = name.substr(start, end - start);
    std::string lower(part);
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lower.rfind("ln", 0) == 0 || lower.find("norm") != std::string::npos) return false;
    last_is_bias = (lower == "bias");
    start = end + 1;
  }
  return !last_is_bias;
}

/// nanoGPT's rule: decay exactly the parameters of rank ≥ 2 (matrices, embeddings). The model
/// must report shapes: `std::vector<std::int64_t> shape(std::string_view name) const`. The
/// returned predicate refers to `model`, which must outlive it.
template <class M>
  requires requires(const M& m, std::string_view n) { m.shape(n).size(); }
[[nodiscard]] std::function<bool(std::string_view)> decays_matrices(const M& model) {
  return [&model](std::string_view name) { return model.shape(name).size() >= 2; };
}

struct adamw_options {
  double lr = 1e-5;            ///< peak learning rate (the schedule multiplies it)
  double beta1 = 0.9;          ///< InstructGPT; PyTorch 0.9
  double beta2 = 0.95;         ///< InstructGPT; PyTorch 0.999
  double eps = 1e-8;           ///< PyTorch
  double weight_decay = 0.0;   ///< λ, decoupled (TRL/OpenRLHF/DeepSpeed-Chat default 0)
  lr_schedule schedule{};      ///< factor of lr per step (default: constant 1)
  /// Which parameters decay (by name); empty = rlhf::decays_by_name.
  std::function<bool(std::string_view)> decays{};
};

/// AdamW over parameters of type T (float or double). Models rlhf::Optimizer.
template <class T>
class adamw {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "rlhf::adamw<T>: T must be float or double");

 public:
  using scalar_type = T;

  /// The moments of one parameter (flat, the parameter's size).
  struct param_state {
    std::string name;
    std::vector<T> m;
    std::vector<T> v;
    bool operator==(const param_state&) const = default;
  };

  /// Throws rlhf::invalid_argument for lr < 0, β outside [0, 1), ε < 0 or λ < 0 (PyTorch's
  /// checks), or any non-finite value.
  explicit adamw(adamw_options options = {}) : options_(std::move(options)) {
    constexpr const char* function = "rlhf::adamw";
    const auto& o = options_;
    detail::require(std::isfinite(o.lr) && o.lr >= 0, function,
                    "lr must be finite and non-negative, got " + detail::number_string(o.lr));
    detail::require(o.beta1 >= 0 && o.beta1 < 1, function,
                    "beta1 must be in [0, 1), got " + detail::number_string(o.beta1));
    detail::require(o.beta2 >= 0 && o.beta2 < 1, function,
                    "beta2 must be in [0, 1), got " + detail::number_string(o.beta2));
    detail::require(std::isfinite(o.eps) && o.eps >= 0, function,
                    "eps must be finite and non-negative, got " + detail::number_string(o.eps));
    detail::require(std::isfinite(o.weight_decay) && o.weight_decay >= 0, function,
                    "weight_decay must be finite and non-negative, got " +
                        detail::number_string(o.weight_decay));
  }

  /// The rate the next step uses: lr · schedule.factor(steps()).
  [[nodiscard]] double learning_rate() const noexcept {
    return options_.schedule.rate(options_.lr, steps_);
  }
  /// Updates taken so far (PyTorch's state["step"]; also the schedule's position).
  [[nodiscard]] std::uint64_t steps() const noexcept { return steps_; }
  [[nodiscard]] const adamw_options& options() const noexcept { return options_; }
  /// Per-parameter moments, in the order of the parameters (empty before the first step).
  [[nodiscard]] const std::vector<param_state>& state() const noexcept { return state_; }

  /// Continue from saved state (checkpoints). `state` is empty, or one entry per parameter;
  /// it is checked against the parameters at the next step().
  void restore(std::uint64_t steps, std::vector<param_state> state) {
    for (std::size_t i = 0; i < state.size(); ++i)
      detail::require(state[i].m.size() == state[i].v.size(), "rlhf::adamw::restore()",
                      "state[" + std::to_string(i) + "] ('" + state[i].name + "') has " +
                          std::to_string(state[i].m.size()) + " first moments but " +
                          std::to_string(state[i].v.size()) + " second moments");
    steps_ = steps;
    state_ = std::move(state);
  }

  /// One AdamW update of every parameter from its accumulated gradient.
  /// Throws rlhf::invalid_argument (before changing anything) when a gradient's size differs
  /// from its value's, or the parameters are not those of the previous steps.
  template <class R>
    requires detail::parameter_range<R, T>
  void step(R&& params) {
    check_and_init(params);
    const auto& o = options_;
    const double lr = learning_rate();
    ++steps_;
    const auto t = static_cast<double>(steps_);
    const double bias_correction1 = 1.0 - std::pow(o.beta1, t);
    const double bias_correction2 = 1.0 - std::pow(o.beta2, t);
    const T step_size = static_cast<T>(-(lr / bias_correction1));
    const T bias_correction2_sqrt = static_cast<T>(std::pow(bias_correction2, 0.5));
    const T decay = static_cast<T>(1.0 - lr * o.weight_decay);
    const T w1 = static_cast<T>(1.0 - o.beta1);
    const T beta2 = static_cast<T>(o.beta2);
    const T one_minus_beta2 = static_cast<T>(1.0 - o.beta2);
    const T eps = static_cast<T>(o.eps);
    const bool small_weight = std::fabs(1.0 - o.beta1) < 0.5;

    std::size_t index = 0;
    for (auto&& ref : params) {
      const parameter_ref<T> p = ref;
      param_state& s = state_[index++];
      const bool decays = o.weight_decay != 0 && (o.decays ? o.decays(p.name) : decays_by_name(p.name));
      const std::ptrdiff_t n = p.value.extent(0);
      T* m = s.m.data();
      T* v = s.v.data();
      for (std::ptrdiff_t i = 0; i < n; ++i) {
        T& theta = p.value(i);
        const T g = p.grad(i);
        if (decays) theta = theta * decay;
        // torch.lerp's vectorised CPU kernel: fma(w, end − start, start) for |w| < 0.5, else
        // fma(w − 1, end − start, end).
        m[i] = small_weight ? std::fma(w1, g - m[i], m[i]) : std::fma(w1 - T(1), g - m[i], g);
        // torch: exp_avg_sq.mul_(β2).addcmul_(g, g, 1 − β2); its kernel's a + (α·b)·c is
        // contracted to one fused multiply-add in the builds measured.
        v[i] = v[i] * beta2;
        v[i] = std::fma(one_minus_beta2 * g, g, v[i]);
        const T denom = std::sqrt(v[i]) / bias_correction2_sqrt + eps;
        theta = theta + step_size * m[i] / denom;
      }
    }
  }

  /// Set every gradient to zero.
  template <class R>
    requires detail::parameter_range<R, T>
  void zero_grad(R&& params) {
    for (auto&& ref : params) {
      const parameter_ref<T> p = ref;
      detail::for_each_element(p.grad, [](T& g) { g = T(0); });
    }
  }

 private:
  template <class R>
  void check_and_init(R& params) {
    constexpr const char* function = "rlhf::adamw::step()";
    std::size_t count = 0;
    for (auto&& ref : params) {
      const parameter_ref<T> p = ref;
      const std::ptrdiff_t n = p.value.extent(0);
      detail::require_lazy(p.grad.extent(0) == n, function, [&] {
        return "parameter '" + std::string(p.name) + "' has " + std::to_string(n) + " values but " +
               std::to_string(p.grad.extent(0)) + " gradients";
      });
      if (!state_.empty()) {
        detail::require_lazy(count < state_.size(), function, [&] {
          return "got more parameters than the " + std::to_string(state_.size()) +
                 " of the optimizer state (extra: '" + std::string(p.name) + "')";
        });
        const param_state& s = state_[count];
        detail::require_lazy(s.name == p.name && static_cast<std::ptrdiff_t>(s.m.size()) == n, function, [&] {
          return "parameter " + std::to_string(count) + " is '" + std::string(p.name) + "' of " +
                 std::to_string(n) + " values but the optimizer state holds '" + s.name + "' of " +
                 std::to_string(s.m.size());
        });
      }
      ++count;
    }
    if (state_.empty()) {
      state_.reserve(count);
      for (auto&& ref : params) {
        const parameter_ref<T> p = ref;
        const auto n = static_cast<std::size_t>(p.value.extent(0));
        state_.push_back({std::string(p.name), std::vector<T>(n, T(0)), std::vector<T>(n, T(0))});
      }
    } else {
      detail::require_lazy(count == state_.size(), function, [&] {
        return "got " + std::to_string(count) + " parameters but the optimizer state holds " +
               std::to_string(state_.size());
      });
    }
  }

  adamw_options options_;
  std::uint64_t steps_ = 0;
  std::vector<param_state> state_;
};

}  // namespace rlhf
