// rlhf/cpu/ppo.hpp — reference CPU implementation of the PPO policy and value losses.
// Included by <rlhf/ppo.hpp>; arguments are already checked there.
//
// Both losses run in two passes over rows (split over the backend's threads):
//   1. per valid token, the term and its local derivative (math/ppo.hpp); the derivative is
//      stored in the gradient output, and per-row sums (in double) in a row table;
//   2. after the row sums are combined in row order (so the result does not depend on the
//      thread count), each row's derivatives are multiplied by its weight in the reduction.
// Masked positions are never read and get a zero gradient.
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/config.hpp>
#include <rlhf/detail/parallel.hpp>
#include <rlhf/math/kl.hpp>
#include <rlhf/math/ppo.hpp>
#include <rlhf/tensor_view.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace rlhf::cpu_impl {

/// How per-token terms become one number: per_sequence = false sums all valid tokens,
/// per_sequence = true sums the per-row means of non-empty rows. The sum is then divided by
/// `divisor` when it is > 0, else by the number of valid tokens / non-empty rows.
struct ppo_reduction_rule {
  bool per_sequence = false;
  double divisor = 0;
};

/// Count, mean and sum of squared deviations, merged with Chan et al.'s formula.
struct ppo_moments {
  std::int64_t n = 0;
  double mean = 0;
  double m2 = 0;

  void add(double x) noexcept {
    ++n;
    const double delta = x - mean;
    mean += delta / static_cast<double>(n);
    m2 += delta * (x - mean);
  }
  void merge(const ppo_moments& o) noexcept {
    if (o.n == 0) return;
    if (n == 0) {
      *this = o;
      return;
    }
    const double total = static_cast<double>(n + o.n);
    const double delta = o.mean - mean;
    mean += delta * static_cast<double>(o.n) / total;
    m2 += o.m2 + delta * delta * static_cast<double>(n) * static_cast<double>(o.n) / total;
    n += o.n;
  }
  /// Population variance (0 without data).
  [[nodiscard]] double population_variance() const noexcept {
    return n > 0 ? m2 / static_cast<double>(n) : 0.0;
  }
  /// Unbiased variance (0 with fewer than two values).
  [[nodiscard]] double unbiased_variance() const noexcept {
    return n > 1 ? m2 / static_cast<double>(n - 1) : 0.0;
  }
};

/// Combines per-row sums (`loss`, `count`) into the reduced loss and gives each row's weight.
struct ppo_row_weights {
  ppo_reduction_rule rule{};
  std::int64_t tokens = 0;    ///< valid tokens over all rows
  std::int64_t sequences = 0; ///< rows with at least one valid token

  /// d(reduced)/d(term) for a token of a row with `count` valid tokens.
  [[nodiscard]] double weight(std::int64_t count) const noexcept {
    if (count == 0) return 0.0;
    if (!rule.per_sequence) {
      if (rule.divisor > 0) return 1.0 / rule.divisor;
      return 1.0 / static_cast<double>(tokens);
    }
    const double denominator = rule.divisor > 0 ? rule.divisor : static_cast<double>(sequences);
    return 1.0 / (static_cast<double>(count) * denominator);
  }

  /// Σ/N (token) or (Σ_rows Σ_b/n_b)/N_rows (sequence), in the anchors' order of operations.
  template <class Rows, class Sum>
  [[nodiscard]] double reduce(const Rows& rows, Sum&& sum) const {
    double total = 0;
    for (const auto& r : rows) {
      if (r.count == 0) continue;
      total += rule.per_sequence ? sum(r) / static_cast<double>(r.count) : sum(r);
    }
    if (rule.divisor > 0) return total / rule.divisor;
    const std::int64_t n = rule.per_sequence ? sequences : tokens;
    return n > 0 ? total / static_cast<double>(n) : 0.0;
  }
};

template <class Rows>
ppo_row_weights ppo_make_weights(const ppo_reduction_rule& rule, const Rows& rows) noexcept {
  ppo_row_weights w{rule, 0, 0};
  for (const auto& r : rows) {
    w.tokens += r.count;
    if (r.count > 0) ++w.sequences;
  }
  return w;
}

/// Pass 2: multiply row b's stored local derivatives by its weight · scale (or zero them).
template <class T, class Rows>
void ppo_scale_gradient(const cpu_backend& backend, matrix_view<T> grad, const Rows& rows,
                        const ppo_row_weights& weights, double scale, bool zero) {
  if (grad.empty()) return;
  const std::ptrdiff_t n_tokens = grad.extent(1);
  detail::parallel_for(
      backend, grad.extent(0),
      [&](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t b = begin; b < end; ++b) {
          const double w = zero ? 0.0 : weights.weight(rows[static_cast<std::size_t>(b)].count) * scale;
          if (w == 0.0) {
            for (std::ptrdiff_t t = 0; t < n_tokens; ++t) grad(b, t) = T(0);
            continue;
          }
          for (std::ptrdiff_t t = 0; t < n_tokens; ++t)
            grad(b, t) = static_cast<T>(static_cast<double>(grad(b, t)) * w);
        }
      },
      /*min_per_thread=*/8);
}

// ---------------------------------------------------------------------------------------------
// Policy loss (+ an optional KL-in-loss term: same mask and batch skip, always a token mean).

template <class T>
struct ppo_policy_config {
  T ratio_low = T(0.8);
  T ratio_high = T(1.2);
  bool use_dual_clip = false;
  T dual_clip = T(0);
  bool use_log_ratio_clamp = false;
  T log_ratio_clamp = T(0);
  ppo_reduction_rule reduction{};
  bool use_ratio_threshold = false;
  double ratio_threshold = 0;
  // KL-in-loss (used when ref_logp is not empty)
  kl_estimator kl_kind = kl_estimator::k3;
  bool use_kl_clamp = false;
  T kl_clamp = T(0);
  double kl_coef = 0;  ///< the KL term (a token mean) enters the gradient times this
};

/// Per-row sums of the policy pass.
struct ppo_policy_row {
  std::int64_t count = 0;
  std::int64_t clipped = 0;
  std::int64_t dual_clipped = 0;
  double loss = 0;
  double kl = 0;
  double neg_log_ratio = 0;  ///< Σ (old − logp)
  double sq_log_ratio = 0;   ///< Σ (logp − old)²
  double advantage = 0;
  double ratio_max = -std::numeric_limits<double>::infinity();
  ppo_moments ratio{};
};

/// What the policy pass computed, in double.
struct ppo_policy_totals {
  double loss = 0;
  double kl_loss = 0;
  double clipfrac = 0;
  double dual_clipfrac = 0;
  double approx_kl = 0;
  double policy_kl = 0;
  double ratio_mean = 0;
  double ratio_var = 0;
  double ratio_max = 0;
  double advantages_mean = 0;
  std::int64_t tokens = 0;
  std::int64_t sequences = 0;
  bool skipped = false;
};

/// The KL-in-loss estimate of one token and its derivative, clamped as configured (the
/// derivative is 0 where the clamp is active, as torch.clamp's).
template <class T>
struct ppo_kl_value {
  T value;
  T grad;  ///< d(value)/d(logp)
};

template <class T>
ppo_kl_value<T> ppo_kl_term(const ppo_policy_config<T>& cfg, T logp, T ref_logp) noexcept {
  const T log_ratio = logp - ref_logp;
  ppo_kl_value<T> kl{math::kl_estimate(cfg.kl_kind, log_ratio),
                     math::kl_estimate_derivative(cfg.kl_kind, log_ratio)};
  if (cfg.use_kl_clamp) {
    if (kl.value < -cfg.kl_clamp || kl.value > cfg.kl_clamp) kl.grad = T(0);
    kl.value = kl.value < -cfg.kl_clamp ? -cfg.kl_clamp
                                        : (kl.value > cfg.kl_clamp ? cfg.kl_clamp : kl.value);
  }
  return kl;
}

template <class T>
void ppo_policy_rows(matrix_view<const T> logp, matrix_view<const T> old_logp,
                     matrix_view<const T> advantages, mask_view mask, matrix_view<const T> ref_logp,
                     matrix_view<T> dlogp, const ppo_policy_config<T>& cfg,
                     std::vector<ppo_policy_row>& rows, std::ptrdiff_t begin, std::ptrdiff_t end) {
  const std::ptrdiff_t n_tokens = logp.extent(1);
  const bool masked = !mask.empty();
  const bool with_grad = !dlogp.empty();
  const bool with_kl = !ref_logp.empty();
  for (std::ptrdiff_t b = begin; b < end; ++b) {
    ppo_policy_row row{};
    for (std::ptrdiff_t t = 0; t < n_tokens; ++t) {
      if (masked && mask(b, t) == 0) {
        if (with_grad) dlogp(b, t) = T(0);
        continue;
      }
      const T lp = logp(b, t);
      const T log_ratio = lp - old_logp(b, t);
      T clamped = log_ratio;
      bool passes = true;
      if (cfg.use_log_ratio_clamp) {
        passes = !(log_ratio < -cfg.log_ratio_clamp) && !(log_ratio > cfg.log_ratio_clamp);
        clamped = log_ratio < -cfg.log_ratio_clamp
                      ? -cfg.log_ratio_clamp
                      : (log_ratio > cfg.log_ratio_clamp ? cfg.log_ratio_clamp : log_ratio);
      }
      using std::exp;
      const T ratio = exp(clamped);
      const T advantage = advantages(b, t);
      const auto term = math::ppo_clipped_surrogate(ratio, passes ? ratio : T(0), advantage,
                                                    cfg.ratio_low, cfg.ratio_high,
                                                    cfg.use_dual_clip, cfg.dual_clip);
      if (with_kl) row.kl += static_cast<double>(ppo_kl_term(cfg, lp, ref_logp(b, t)).value);
      if (with_grad) dlogp(b, t) = term.grad;
      ++row.count;
      row.loss += static_cast<double>(term.loss);
      row.clipped += term.clipped ? 1 : 0;
      row.dual_clipped += term.dual_clipped ? 1 : 0;
      row.neg_log_ratio += static_cast<double>(old_logp(b, t) - lp);
      row.sq_log_ratio += static_cast<double>(log_ratio) * static_cast<double>(log_ratio);
      row.advantage += static_cast<double>(advantage);
      const double r = static_cast<double>(ratio);
      if (r > row.ratio_max || std::isnan(r)) row.ratio_max = r;
      row.ratio.add(r);
    }
    rows[static_cast<std::size_t>(b)] = row;
  }
}

/// The clipped-surrogate policy loss over (B, T) views; dlogp may be empty (statistics only).
template <class T>
ppo_policy_totals ppo_policy(const cpu_backend& backend, matrix_view<const T> logp,
                             matrix_view<const T> old_logp, matrix_view<const T> advantages,
                             mask_view mask, matrix_view<const T> ref_logp, matrix_view<T> dlogp,
                             const ppo_policy_config<T>& cfg) {
  std::vector<ppo_policy_row> rows(static_cast<std::size_t>(logp.extent(0)));
  detail::parallel_for(
      backend, logp.extent(0),
      [&](std::ptrdiff_t begin, std::ptrdiff_t end) {
        ppo_policy_rows(logp, old_logp, advantages, mask, ref_logp, dlogp, cfg, rows, begin, end);
      },
      /*min_per_thread=*/8);

  const ppo_row_weights weights = ppo_make_weights(cfg.reduction, rows);
  ppo_policy_totals out{};
  out.tokens = weights.tokens;
  out.sequences = weights.sequences;
  if (weights.tokens > 0) {
    std::int64_t clipped = 0, dual_clipped = 0;
    double neg_log_ratio = 0, sq_log_ratio = 0, advantage = 0;
    double ratio_max = -std::numeric_limits<double>::infinity();
    ppo_moments ratio{};
    for (const auto& r : rows) {
      clipped += r.clipped;
      dual_clipped += r.dual_clipped;
      neg_log_ratio += r.neg_log_ratio;
      sq_log_ratio += r.sq_log_ratio;
      advantage += r.advantage;
      if (r.ratio_max > ratio_max || std::isnan(r.ratio_max)) ratio_max = r.ratio_max;
      ratio.merge(r.ratio);
    }
    const double n = static_cast<double>(weights.tokens);
    out.clipfrac = static_cast<double>(clipped) / n;
    out.dual_clipfrac = static_cast<double>(dual_clipped) / n;
    out.policy_kl = neg_log_ratio / n;
    out.approx_kl = 0.5 * (sq_log_ratio / n);
    out.advantages_mean = advantage / n;
    out.ratio_mean = ratio.mean;
    out.ratio_var = ratio.population_variance();
    out.ratio_max = ratio_max;
    out.skipped = cfg.use_ratio_threshold && ratio.mean > cfg.ratio_threshold;
    if (!out.skipped) {
      out.loss = weights.reduce(rows, [](const ppo_policy_row& r) { return r.loss; });
      if (!ref_logp.empty()) {
        double kl = 0;
        for (const auto& r : rows) kl += r.kl;
        out.kl_loss = kl / n;  // always the token mean (OpenRLHF use_kl_loss, verl)
      }
    }
  }
  if (ref_logp.empty() || cfg.kl_coef == 0.0 || out.skipped || dlogp.empty()) {
    ppo_scale_gradient(backend, dlogp, rows, weights, 1.0, out.skipped);
    return out;
  }
  // Pass 2 with the KL term: its token-mean weight differs from the policy reduction's, so its
  // derivative is recomputed here rather than stored.
  const double kl_weight = cfg.kl_coef / static_cast<double>(weights.tokens);
  const std::ptrdiff_t n_tokens = logp.extent(1);
  const bool masked = !mask.empty();
  detail::parallel_for(
      backend, logp.extent(0),
      [&](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t b = begin; b < end; ++b) {
          const double w = weights.weight(rows[static_cast<std::size_t>(b)].count);
          for (std::ptrdiff_t t = 0; t < n_tokens; ++t) {
            if (masked && mask(b, t) == 0) continue;  // already 0
            const double kl_grad = static_cast<double>(ppo_kl_term(cfg, logp(b, t), ref_logp(b, t)).grad);
            dlogp(b, t) = static_cast<T>(static_cast<double>(dlogp(b, t)) * w + kl_weight * kl_grad);
          }
        }
      },
      /*min_per_thread=*/8);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Value loss.

template <class T>
struct ppo_value_config {
  bool use_clip = true;
  T clip = T(0.2);
  ppo_reduction_rule reduction{};
};

struct ppo_value_row {
  std::int64_t count = 0;
  std::int64_t clipped = 0;
  double loss = 0;
  double value = 0;        ///< Σ V
  double squared_error = 0;///< Σ (V − R)²
  ppo_moments returns{};
  ppo_moments old_values{};
  ppo_moments residual{};  ///< R − V
};

struct ppo_value_totals {
  double loss = 0;
  double clipfrac = 0;
  double explained_variance = 0;
  double value_mean = 0;
  double value_error = 0;
  double returns_mean = 0;
  double returns_var = 0;
  double old_value_mean = 0;
  double old_value_var = 0;
  std::int64_t tokens = 0;
};

/// 1 − Var[R − V] / Var[R], defined as 0 when Var[R] = 0 (or there is no data).
inline double ppo_explained_variance(const ppo_moments& returns, const ppo_moments& residual) {
  if (!(returns.m2 > 0)) return 0.0;
  return 1.0 - residual.m2 / returns.m2;
}

template <class T>
ppo_value_totals ppo_value(const cpu_backend& backend, matrix_view<const T> values,
                           matrix_view<const T> old_values, matrix_view<const T> returns,
                           mask_view mask, matrix_view<T> dvalues, const ppo_value_config<T>& cfg,
                           double grad_scale = 1.0, bool zero = false) {
  std::vector<ppo_value_row> rows(static_cast<std::size_t>(values.extent(0)));
  const std::ptrdiff_t n_tokens = values.extent(1);
  const bool masked = !mask.empty();
  const bool with_grad = !dvalues.empty();
  detail::parallel_for(
      backend, values.extent(0),
      [&](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t b = begin; b < end; ++b) {
          ppo_value_row row{};
          for (std::ptrdiff_t t = 0; t < n_tokens; ++t) {
            if (masked && mask(b, t) == 0) {
              if (with_grad) dvalues(b, t) = T(0);
              continue;
            }
            const T v = values(b, t), v_old = old_values(b, t), ret = returns(b, t);
            const auto term = math::ppo_clipped_value(v, v_old, ret, cfg.use_clip, cfg.clip);
            if (with_grad) dvalues(b, t) = term.grad;
            ++row.count;
            row.clipped += term.clipped ? 1 : 0;
            row.loss += static_cast<double>(term.loss);
            row.value += static_cast<double>(v);
            const double error = static_cast<double>(v) - static_cast<double>(ret);
            row.squared_error += error * error;
            row.returns.add(static_cast<double>(ret));
            row.old_values.add(static_cast<double>(v_old));
            row.residual.add(-error);
          }
          rows[static_cast<std::size_t>(b)] = row;
        }
      },
      /*min_per_thread=*/8);

  const ppo_row_weights weights = ppo_make_weights(cfg.reduction, rows);
  ppo_value_totals out{};
  out.tokens = weights.tokens;
  if (weights.tokens > 0) {
    std::int64_t clipped = 0;
    double value = 0, squared_error = 0;
    ppo_moments ret{}, old{}, residual{};
    for (const auto& r : rows) {
      clipped += r.clipped;
      value += r.value;
      squared_error += r.squared_error;
      ret.merge(r.returns);
      old.merge(r.old_values);
      residual.merge(r.residual);
    }
    const double n = static_cast<double>(weights.tokens);
    out.clipfrac = static_cast<double>(clipped) / n;
    out.value_mean = value / n;
    out.value_error = squared_error / n;
    out.returns_mean = ret.mean;
    out.returns_var = ret.unbiased_variance();
    out.old_value_mean = old.mean;
    out.old_value_var = old.unbiased_variance();
    out.explained_variance = ppo_explained_variance(ret, residual);
    if (!zero) out.loss = weights.reduce(rows, [](const ppo_value_row& r) { return r.loss; });
  }
  ppo_scale_gradient(backend, dvalues, rows, weights, grad_scale, zero);
  return out;
}

/// Masked 1 − Var[R − V] / Var[R] (see ppo_explained_variance).
template <class T>
double explained_variance(const cpu_backend& backend, matrix_view<const T> values,
                          matrix_view<const T> returns, mask_view mask) {
  struct row_moments {
    ppo_moments returns{}, residual{};
  };
  std::vector<row_moments> rows(static_cast<std::size_t>(values.extent(0)));
  const std::ptrdiff_t n_tokens = values.extent(1);
  const bool masked = !mask.empty();
  detail::parallel_for(
      backend, values.extent(0),
      [&](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t b = begin; b < end; ++b) {
          row_moments row{};
          for (std::ptrdiff_t t = 0; t < n_tokens; ++t) {
            if (masked && mask(b, t) == 0) continue;
            const double ret = static_cast<double>(returns(b, t));
            row.returns.add(ret);
            row.residual.add(ret - static_cast<double>(values(b, t)));
          }
          rows[static_cast<std::size_t>(b)] = row;
        }
      },
      /*min_per_thread=*/8);
  ppo_moments ret{}, residual{};
  for (const auto& r : rows) {
    ret.merge(r.returns);
    residual.merge(r.residual);
  }
  return ppo_explained_variance(ret, residual);
}

}  // namespace rlhf::cpu_impl
