// rlhf/cpu/ppo.hpp — reference CPU implementation of the PPO policy and value losses.
// Included by <rlhf/ppo.hpp>; arguments are already checked there.
//
// Each loss is one pass over the tokens, rows split over the backend's threads:
//   0. the valid tokens of every row are counted first (the mask only), which gives every
//      row's weight in the reduction (1/N for the token mean, 1/(n_b·N_rows) for the sequence
//      mean, …) before any term is computed;
//   1. per token, the term and its derivative (math/ppo.hpp) — the derivative is written
//      already multiplied by its row's weight (plus the KL-in-loss derivative) — and per-row
//      sums in double in a row table;
//   2. the row sums are combined in row order on the calling thread, so results do not depend
//      on the thread count.
// Only TRL's ratio_threshold can discard a batch after the fact: its gradient is then zeroed.
// Masked positions get a zero gradient and never influence a result (the vector kernel loads
// them and discards the lanes bitwise, so NaN or inf there stays harmless).
//
// Kernels work on contiguous rows: views whose inner stride is not 1 are copied row by row
// into scratch and run through the same kernel, so strided and dense inputs give the same
// bits. For float with AVX2 + FMA at compile time the row kernel is vectorised (8 tokens a
// step; math/fast_exp.hpp's exp; per-row sums accumulated in float over blocks of 64 tokens,
// then in double). Otherwise, and for double, a scalar loop does the same work per token
// (std::exp for double, fast_exp for float). Per-row variances use shifted sums,
// Σ(x − K) and Σ(x − K)² with K = 1 for the ratio and K = the row's first valid element
// otherwise, merged across rows with Chan et al.'s formula.
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/config.hpp>
#include <rlhf/detail/parallel.hpp>
#include <rlhf/detail/rows.hpp>
#include <rlhf/detail/simd.hpp>
#include <rlhf/math/fast_exp.hpp>
#include <rlhf/math/kl.hpp>
#include <rlhf/math/ppo.hpp>
#include <rlhf/tensor_view.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
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
  /// The moments of n values from their shifted sums s1 = Σ(x − shift), s2 = Σ(x − shift)².
  static ppo_moments from_shifted_sums(std::int64_t count, double shift, double s1,
                                       double s2) noexcept {
    if (count == 0) return {};
    const double n = static_cast<double>(count);
    const double m2 = s2 - s1 * (s1 / n);
    return {count, shift + s1 / n, m2 > 0 ? m2 : (m2 == m2 ? 0.0 : m2)};
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

/// Row weights of a reduction, from the rows' valid-token counts.
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

inline ppo_row_weights ppo_make_weights(const ppo_reduction_rule& rule,
                                        const std::vector<std::int64_t>& counts) noexcept {
  ppo_row_weights w{rule, 0, 0};
  for (const std::int64_t c : counts) {
    w.tokens += c;
    if (c > 0) ++w.sequences;
  }
  return w;
}

/// Valid tokens of every row (all T when the mask is empty).
inline std::vector<std::int64_t> ppo_row_counts(mask_view mask, std::ptrdiff_t rows,
                                                std::ptrdiff_t cols) {
  std::vector<std::int64_t> counts(static_cast<std::size_t>(rows), cols);
  if (mask.empty()) return counts;
  const bool unit = mask.stride(1) == 1 || cols == 1;
  for (std::ptrdiff_t b = 0; b < rows; ++b) {
    std::int64_t c = 0;
    if (unit) {
      const std::uint8_t* m = &mask(b, 0);
#if defined(__AVX2__) && defined(__FMA__) && !defined(__CUDACC__)
      c = detail::simd::count_valid(m, cols);
#else
      std::ptrdiff_t t = 0;
      for (; t + 8 <= cols; t += 8) {  // 8 bytes at a time: the top bit of each nonzero byte
        std::uint64_t x;
        std::memcpy(&x, m + t, sizeof x);
        const std::uint64_t nonzero = (((x & 0x7F7F7F7F7F7F7F7Full) + 0x7F7F7F7F7F7F7F7Full) | x) & 0x8080808080808080ull;
        c += static_cast<std::int64_t>(((nonzero >> 7) * 0x0101010101010101ull) >> 56);
      }
      for (; t < cols; ++t) c += m[t] != 0 ? 1 : 0;
#endif
    } else {
      for (std::ptrdiff_t t = 0; t < cols; ++t) c += mask(b, t) != 0 ? 1 : 0;
    }
    counts[static_cast<std::size_t>(b)] = c;
  }
  return counts;
}

/// Writes T(0) over every element of a (B, T) view.
template <class T>
void ppo_zero(matrix_view<T> v) {
  for (std::ptrdiff_t b = 0; b < v.extent(0); ++b)
    for (std::ptrdiff_t t = 0; t < v.extent(1); ++t) v(b, t) = T(0);
}

/// e^x in the element type: std::exp for double, math::fast_exp for float.
template <class T>
RLHF_ALWAYS_INLINE T ppo_exp(T x) noexcept {
  if constexpr (std::is_same_v<T, float>) {
    return math::fast_exp(x);
  } else {
    using std::exp;
    return exp(x);
  }
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
  ppo_kl_value<T> kl{};
  if (cfg.kl_kind == kl_estimator::k3) {
    // math::kl_k3 and its derivative with one exp (the element type's: see ppo_exp).
    const T r = -log_ratio;
    const T e = ppo_exp(r);
    kl = {e - T(1) - r, T(1) - e};
  } else {
    kl = {math::kl_estimate(cfg.kl_kind, log_ratio), math::kl_estimate_derivative(cfg.kl_kind, log_ratio)};
  }
  if (cfg.use_kl_clamp) {
    if (kl.value < -cfg.kl_clamp || kl.value > cfg.kl_clamp) kl.grad = T(0);
    kl.value = kl.value < -cfg.kl_clamp ? -cfg.kl_clamp
                                        : (kl.value > cfg.kl_clamp ? cfg.kl_clamp : kl.value);
  }
  return kl;
}

/// One contiguous row of the policy pass. mask, ref_logp and grad may be nullptr (all valid;
/// no KL term; no gradient). grad(t) = d(loss)/d(logp)·weight [+ kl_weight·d(kl)/d(logp)].
template <class T>
struct ppo_policy_row_io {
  const T* logp;
  const T* old_logp;
  const T* advantages;
  const std::uint8_t* mask;
  const T* ref_logp;
  T* grad;
  std::ptrdiff_t n;
  double weight;     ///< the row's weight in the policy reduction
  double kl_weight;  ///< kl_coef / N; 0 = the KL term is not in the gradient
};

/// The scalar row kernel (double; float without AVX2). The reference of the vector kernel.
template <class T>
void ppo_policy_row_scalar(const ppo_policy_row_io<T>& io, const ppo_policy_config<T>& cfg,
                           ppo_policy_row& row) noexcept {
  double ratio_s1 = 0, ratio_s2 = 0;
  const bool kl_in_grad = io.kl_weight != 0.0;
  for (std::ptrdiff_t t = 0; t < io.n; ++t) {
    if (io.mask != nullptr && io.mask[t] == 0) {
      if (io.grad != nullptr) io.grad[t] = T(0);
      continue;
    }
    const T lp = io.logp[t];
    const T old = io.old_logp[t];
    const T log_ratio = lp - old;
    T clamped = log_ratio;
    bool passes = true;
    if (cfg.use_log_ratio_clamp) {
      passes = !(log_ratio < -cfg.log_ratio_clamp) && !(log_ratio > cfg.log_ratio_clamp);
      clamped = log_ratio < -cfg.log_ratio_clamp
                    ? -cfg.log_ratio_clamp
                    : (log_ratio > cfg.log_ratio_clamp ? cfg.log_ratio_clamp : log_ratio);
    }
    const T ratio = ppo_exp(clamped);
    const T advantage = io.advantages[t];
    const auto term = math::ppo_clipped_surrogate(ratio, passes ? ratio : T(0), advantage,
                                                  cfg.ratio_low, cfg.ratio_high,
                                                  cfg.use_dual_clip, cfg.dual_clip);
    double grad = static_cast<double>(term.grad) * io.weight;
    if (io.ref_logp != nullptr) {
      const auto kl = ppo_kl_term(cfg, lp, io.ref_logp[t]);
      row.kl += static_cast<double>(kl.value);
      if (kl_in_grad) grad += io.kl_weight * static_cast<double>(kl.grad);
    }
    if (io.grad != nullptr) io.grad[t] = static_cast<T>(grad);
    row.loss += static_cast<double>(term.loss);
    row.clipped += term.clipped ? 1 : 0;
    row.dual_clipped += term.dual_clipped ? 1 : 0;
    row.neg_log_ratio += static_cast<double>(old - lp);
    row.sq_log_ratio += static_cast<double>(log_ratio) * static_cast<double>(log_ratio);
    row.advantage += static_cast<double>(advantage);
    const double r = static_cast<double>(ratio);
    if (r > row.ratio_max || std::isnan(r)) row.ratio_max = r;
    const double d = r - 1.0;
    ratio_s1 += d;
    ratio_s2 += d * d;
  }
  row.ratio = ppo_moments::from_shifted_sums(row.count, 1.0, ratio_s1, ratio_s2);
}

#if defined(__AVX2__) && defined(__FMA__) && !defined(__CUDACC__)
/// Vectors of 8 tokens a block of the vector kernels: 16 float terms a lane are summed in float
/// before the double sums take them.
inline constexpr int ppo_block_vectors = 16;

/// KL-in-loss variants of the vector policy kernel.
enum class ppo_kl_variant { none, k3_in_grad, k3_stats_only, other };

/// The float row kernel: the scalar kernel's operations 8 lanes at a time, the branches of
/// math::ppo_clipped_surrogate as selects, specialised on the options (log-ratio clamp, dual
/// clip, KL variant) so the loops carry no option tests. Tokens go in blocks of 128 (16
/// vectors), each in three short loops over L1-resident data — the exps, the statistics, the
/// surrogate and gradient — so that no loop carries more sums than there are registers. A
/// block whose mask bytes are all valid skips the lane masking. Sums run in float within a
/// block (16 terms a lane) and are then added in double.
template <bool Clamp, bool Dual, ppo_kl_variant Kl>
void ppo_policy_row_avx2(const ppo_policy_row_io<float>& io, const ppo_policy_config<float>& cfg,
                         ppo_policy_row& row) noexcept {
  namespace s = detail::simd;
  constexpr bool with_kl = Kl != ppo_kl_variant::none;
  constexpr bool kl_exp = Kl == ppo_kl_variant::k3_in_grad || Kl == ppo_kl_variant::k3_stats_only;
  constexpr int block_vectors = ppo_block_vectors;
  // Block sums: 0 −loss, 1 kl, 2 logp − old, 3 (logp − old)², 4 A, 5 r − 1, 6 (r − 1)².
  constexpr int n_sums = 7;
  __m256d sum_lo[n_sums], sum_hi[n_sums];
  for (int k = 0; k < n_sums; ++k) sum_lo[k] = sum_hi[k] = _mm256_setzero_pd();
  __m256i clipped_count = _mm256_setzero_si256(), dual_count = _mm256_setzero_si256();
  __m256 ratio_max = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  __m256 ratio_nan = _mm256_setzero_ps();

  // Everything the loops read, as locals (the gradient stores cannot alias them).
  const float* const logp = io.logp;
  const float* const old_logp = io.old_logp;
  const float* const advantages = io.advantages;
  const std::uint8_t* const mask = io.mask;
  const float* const ref_logp = io.ref_logp;
  float* const grad = io.grad;
  const float lr_clamp = cfg.log_ratio_clamp, dual_clip = cfg.dual_clip;
  const float ratio_low_s = cfg.ratio_low, ratio_high_s = cfg.ratio_high;
  const float neg_weight_s = static_cast<float>(-io.weight), kl_weight_s = static_cast<float>(io.kl_weight);
  const kl_estimator kl_kind = cfg.kl_kind;
  const bool use_kl_clamp = cfg.use_kl_clamp, kl_in_grad_other = io.kl_weight != 0.0;
  const float kl_clamp = cfg.kl_clamp;

  // One block of n_vec ≤ block_vectors vectors at the given pointers; Masked: some mask byte
  // of the block is 0 (the lanes are then masked everywhere), else every token is valid.
  const auto block = [&]<bool Masked>(const float* lp_p, const float* old_p, const float* adv_p,
                                      const std::uint8_t* m_p, const float* ref_p, float* g_p,
                                      int n_vec) __attribute__((always_inline)) {
    alignas(32) float ratio_buf[8 * ppo_block_vectors], dratio_buf[8 * ppo_block_vectors], exp_buf[8 * ppo_block_vectors];

    // Loop 1: the exps only (nothing carried from one vector to the next), into the buffers.
    bool any_wide = false;
    for (int v = 0; v < n_vec; ++v) {
      const __m256 lp = _mm256_loadu_ps(lp_p + 8 * v);
      const __m256 log_ratio = _mm256_sub_ps(lp, _mm256_loadu_ps(old_p + 8 * v));
      __m256 clamped = log_ratio, clamped_lanes = _mm256_setzero_ps();
      if constexpr (Clamp) {
        const __m256 c = _mm256_set1_ps(lr_clamp), neg_c = _mm256_set1_ps(-lr_clamp);
        const __m256 below = _mm256_cmp_ps(log_ratio, neg_c, _CMP_LT_OQ);
        const __m256 above = _mm256_cmp_ps(log_ratio, c, _CMP_GT_OQ);
        clamped = s::select(below, neg_c, s::select(above, c, log_ratio));
        clamped_lanes = _mm256_or_ps(below, above);
      }
      // k3: e^{−(logp − ref)}; ref − logp is exactly −(logp − ref).
      const __m256 kl_arg = kl_exp ? _mm256_sub_ps(_mm256_loadu_ps(ref_p + 8 * v), lp) : _mm256_setzero_ps();
      __m256 ratio;
      // Both exps take the narrow path unless a lane (valid or not) is NaN or beyond ±87.3.
      const __m256 wide = kl_exp ? _mm256_or_ps(s::exp8_outside_narrow(clamped), s::exp8_outside_narrow(kl_arg))
                                 : s::exp8_outside_narrow(clamped);
      if (__builtin_expect(_mm256_movemask_ps(wide) == 0, 1)) {
        ratio = s::exp8_narrow(clamped);
        if constexpr (kl_exp) _mm256_store_ps(exp_buf + 8 * v, s::exp8_narrow(kl_arg));
      } else {
        any_wide = true;
        ratio = s::exp8_wide(clamped);
        if constexpr (kl_exp) _mm256_store_ps(exp_buf + 8 * v, s::exp8_wide(kl_arg));
      }
      _mm256_store_ps(ratio_buf + 8 * v, ratio);
      if constexpr (Clamp) _mm256_store_ps(dratio_buf + 8 * v, _mm256_andnot_ps(clamped_lanes, ratio));
    }

    // The KL-in-loss estimate of vector v and its derivative (ppo_kl_term, clamp included).
    struct kl_pair {
      __m256 value, grad;
    };
    const auto kl_term = [&](int v) __attribute__((always_inline)) {
      const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
      const __m256 lp = _mm256_loadu_ps(lp_p + 8 * v), ref = _mm256_loadu_ps(ref_p + 8 * v);
      kl_pair kl;
      if constexpr (kl_exp) {  // math::kl_k3: (e^r − 1) − r with r = −(logp − ref); derivative 1 − e^r
        const __m256 e = _mm256_load_ps(exp_buf + 8 * v);
        kl.value = _mm256_sub_ps(_mm256_sub_ps(e, one), _mm256_sub_ps(ref, lp));
        kl.grad = _mm256_sub_ps(one, e);
      } else {
        const __m256 kl_ratio = _mm256_sub_ps(lp, ref);
        if (kl_kind == kl_estimator::k2) {
          kl.value = _mm256_mul_ps(_mm256_mul_ps(kl_ratio, kl_ratio), _mm256_set1_ps(0.5f));
          kl.grad = kl_ratio;
        } else if (kl_kind == kl_estimator::abs) {
          const __m256 negative = _mm256_cmp_ps(kl_ratio, zero, _CMP_LT_OQ);
          const __m256 positive = _mm256_cmp_ps(kl_ratio, zero, _CMP_GT_OQ);
          kl.value = s::select(negative, _mm256_xor_ps(kl_ratio, _mm256_set1_ps(-0.0f)), kl_ratio);
          kl.grad = _mm256_or_ps(_mm256_and_ps(positive, one), _mm256_and_ps(negative, _mm256_set1_ps(-1.0f)));
        } else {  // k1
          kl.value = kl_ratio;
          kl.grad = one;
        }
      }
      if (use_kl_clamp) {
        const __m256 c = _mm256_set1_ps(kl_clamp), neg_c = _mm256_set1_ps(-kl_clamp);
        const __m256 low = _mm256_cmp_ps(kl.value, neg_c, _CMP_LT_OQ);
        const __m256 high = _mm256_cmp_ps(kl.value, c, _CMP_GT_OQ);
        kl.grad = _mm256_andnot_ps(_mm256_or_ps(low, high), kl.grad);
        kl.value = s::select(low, neg_c, s::select(high, c, kl.value));
      }
      return kl;
    };

    // Loop 2: the statistics of r, logp − old, A and the KL term (reads only).
    __m256 a_lr = _mm256_setzero_ps(), a_lr2 = _mm256_setzero_ps(), a_adv = _mm256_setzero_ps();
    __m256 a_d = _mm256_setzero_ps(), a_d2 = _mm256_setzero_ps(), a_kl = _mm256_setzero_ps();
    for (int v = 0; v < n_vec; ++v) {
      const __m256 valid = Masked ? s::valid8(m_p + 8 * v) : _mm256_setzero_ps();
      const auto keep = [&](__m256 x) __attribute__((always_inline)) { return Masked ? s::keep(valid, x) : x; };
      const __m256 ratio = _mm256_load_ps(ratio_buf + 8 * v);
      const __m256 lr = keep(_mm256_sub_ps(_mm256_loadu_ps(lp_p + 8 * v), _mm256_loadu_ps(old_p + 8 * v)));
      a_lr = _mm256_add_ps(a_lr, lr);
      a_lr2 = _mm256_fmadd_ps(lr, lr, a_lr2);
      a_adv = _mm256_add_ps(a_adv, keep(_mm256_loadu_ps(adv_p + 8 * v)));
      const __m256 d = keep(_mm256_sub_ps(ratio, _mm256_set1_ps(1.0f)));
      a_d = _mm256_add_ps(a_d, d);
      a_d2 = _mm256_fmadd_ps(d, d, a_d2);
      // max r (a NaN ratio, possible only after a wide exp, is remembered apart: the scalar
      // loop's max is then NaN).
      ratio_max = _mm256_max_ps(ratio_max, Masked ? s::select(valid, ratio, ratio_max) : ratio);
      if (any_wide) ratio_nan = _mm256_or_ps(ratio_nan, keep(_mm256_cmp_ps(ratio, ratio, _CMP_UNORD_Q)));
      if constexpr (with_kl) a_kl = _mm256_add_ps(a_kl, keep(kl_term(v).value));
    }

    // Loop 3: the surrogate (math::ppo_clipped_surrogate, branch-free) and the gradient.
    __m256 a_loss = _mm256_setzero_ps();
    for (int v = 0; v < n_vec; ++v) {
      const __m256 valid = Masked ? s::valid8(m_p + 8 * v) : _mm256_setzero_ps();
      const __m256 zero = _mm256_setzero_ps(), half = _mm256_set1_ps(0.5f);
      const __m256 ratio = _mm256_load_ps(ratio_buf + 8 * v);
      const __m256 dratio = Clamp ? _mm256_load_ps(dratio_buf + 8 * v) : ratio;
      const __m256 adv = _mm256_loadu_ps(adv_p + 8 * v);
      const __m256 active = _mm256_cmp_ps(adv, zero, _CMP_NEQ_UQ);  // A == 0: an exact zero term
      // clip(r) = r < lo ? lo : (r > hi ? hi : r): max/min return their second operand when
      // one is NaN, so a NaN ratio stays NaN as in the scalar code, and clip(r) ≠ r (ordered)
      // exactly where r lies outside [lo, hi].
      const __m256 clipped_ratio =
          _mm256_min_ps(_mm256_set1_ps(ratio_high_s), _mm256_max_ps(_mm256_set1_ps(ratio_low_s), ratio));
      const __m256 out_of_range = _mm256_cmp_ps(clipped_ratio, ratio, _CMP_NEQ_OQ);
      const __m256 surr1 = _mm256_mul_ps(ratio, adv), surr2 = _mm256_mul_ps(clipped_ratio, adv);
      const __m256 lt = _mm256_cmp_ps(surr1, surr2, _CMP_LT_OQ);
      const __m256 gt = _mm256_cmp_ps(surr2, surr1, _CMP_LT_OQ);
      // min(surr1, surr2) as the scalar code: surr2 where surr2 < surr1, else surr1 (NaN too).
      __m256 objective = _mm256_min_ps(surr2, surr1);
      const __m256 full_grad = _mm256_mul_ps(adv, dratio);
      // lt or in range: the full gradient; else gt: 0; else (a tie outside the range): half.
      const __m256 out_of_range_not_lt = _mm256_andnot_ps(lt, out_of_range);
      __m256 g = s::select(out_of_range_not_lt, _mm256_andnot_ps(gt, _mm256_mul_ps(full_grad, half)), full_grad);
      __m256 dual = zero;
      if constexpr (Dual) {
        const __m256 negative = _mm256_cmp_ps(adv, zero, _CMP_LT_OQ);
        const __m256 floor_value = _mm256_mul_ps(_mm256_set1_ps(dual_clip), adv);
        dual = _mm256_and_ps(negative, _mm256_cmp_ps(objective, floor_value, _CMP_LT_OQ));
        const __m256 tie = _mm256_and_ps(negative, _mm256_cmp_ps(objective, floor_value, _CMP_EQ_OQ));
        objective = s::select(dual, floor_value, objective);
        g = _mm256_andnot_ps(dual, s::select(tie, _mm256_mul_ps(g, half), g));
      }
      const __m256 counted = Masked ? _mm256_and_ps(active, valid) : active;
      a_loss = _mm256_add_ps(a_loss, s::keep(counted, objective));  // the loss is −objective
      clipped_count = _mm256_sub_epi32(clipped_count, _mm256_castps_si256(_mm256_and_ps(gt, counted)));
      if constexpr (Dual)
        dual_count = _mm256_sub_epi32(dual_count, _mm256_castps_si256(_mm256_and_ps(dual, counted)));
      // −g·w where A ≠ 0 (A = 0 gives an exact 0, also where r overflowed).
      __m256 out = _mm256_mul_ps(s::keep(active, g), _mm256_set1_ps(neg_weight_s));
      if constexpr (Kl == ppo_kl_variant::k3_in_grad)
        out = _mm256_fmadd_ps(_mm256_set1_ps(kl_weight_s), kl_term(v).grad, out);
      if constexpr (Kl == ppo_kl_variant::other)
        if (kl_in_grad_other) out = _mm256_fmadd_ps(_mm256_set1_ps(kl_weight_s), kl_term(v).grad, out);
      if (g_p != nullptr) _mm256_storeu_ps(g_p + 8 * v, Masked ? s::keep(valid, out) : out);
    }
    s::add_widened(sum_lo[0], sum_hi[0], a_loss);
    s::add_widened(sum_lo[1], sum_hi[1], a_kl);
    s::add_widened(sum_lo[2], sum_hi[2], a_lr);
    s::add_widened(sum_lo[3], sum_hi[3], a_lr2);
    s::add_widened(sum_lo[4], sum_hi[4], a_adv);
    s::add_widened(sum_lo[5], sum_hi[5], a_d);
    s::add_widened(sum_lo[6], sum_hi[6], a_d2);
  };

  const std::ptrdiff_t n = io.n, n_full = n / 8 * 8;
  const auto at = [](auto* p, std::ptrdiff_t t) { return p != nullptr ? p + t : nullptr; };
  for (std::ptrdiff_t t = 0; t < n_full; t += 8 * block_vectors) {
    const std::ptrdiff_t len = std::min<std::ptrdiff_t>(8 * block_vectors, n_full - t);
    const int n_vec = static_cast<int>(len / 8);
    if (mask == nullptr || s::count_valid(mask + t, len) == len)
      block.template operator()<false>(logp + t, old_logp + t, advantages + t, nullptr, at(ref_logp, t),
                                       at(grad, t), n_vec);
    else
      block.template operator()<true>(logp + t, old_logp + t, advantages + t, mask + t, at(ref_logp, t),
                                      at(grad, t), n_vec);
  }
  if (n_full < n) {  // the last < 8 tokens, through zero-padded copies (padding lanes invalid)
    const std::size_t rest = static_cast<std::size_t>(n - n_full);
    alignas(32) float lp[8] = {}, old[8] = {}, adv[8] = {}, ref[8] = {}, g[8];
    alignas(8) std::uint8_t m[8] = {};
    std::memcpy(lp, logp + n_full, rest * sizeof(float));
    std::memcpy(old, old_logp + n_full, rest * sizeof(float));
    std::memcpy(adv, advantages + n_full, rest * sizeof(float));
    if (with_kl) std::memcpy(ref, ref_logp + n_full, rest * sizeof(float));
    if (mask != nullptr)
      std::memcpy(m, mask + n_full, rest);
    else
      std::memset(m, 1, rest);
    block.template operator()<true>(lp, old, adv, m, ref, g, 1);
    if (grad != nullptr) std::memcpy(grad + n_full, g, rest * sizeof(float));
  }

  double sums[n_sums];
  for (int k = 0; k < n_sums; ++k) sums[k] = s::sum4(sum_lo[k]) + s::sum4(sum_hi[k]);
  row.loss = -sums[0];  // Σ −objective: each term, so the sum, is exactly −(Σ objective)
  row.kl = sums[1];
  row.neg_log_ratio = -sums[2];  // Σ(old − logp): each term, so the sum, is exactly −(logp − old)
  row.sq_log_ratio = sums[3];
  row.advantage = sums[4];
  row.clipped = s::sum8(clipped_count);
  row.dual_clipped = s::sum8(dual_count);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, ratio_max);
  for (const float x : lanes) row.ratio_max = std::max(row.ratio_max, static_cast<double>(x));
  if (_mm256_movemask_ps(ratio_nan) != 0) row.ratio_max = std::numeric_limits<double>::quiet_NaN();
  row.ratio = ppo_moments::from_shifted_sums(row.count, 1.0, sums[5], sums[6]);
}

/// Picks the instantiation of the vector kernel for the options.
inline void ppo_policy_row_avx2_dispatch(const ppo_policy_row_io<float>& io, const ppo_policy_config<float>& cfg,
                                         ppo_policy_row& row) noexcept {
  using kv = ppo_kl_variant;
  const kv kl = io.ref_logp == nullptr ? kv::none
                : cfg.kl_kind != kl_estimator::k3 ? kv::other
                : io.kl_weight != 0.0 ? kv::k3_in_grad
                                      : kv::k3_stats_only;
  const auto run = [&]<bool Clamp, bool Dual>() {
    switch (kl) {
      case kv::none: return ppo_policy_row_avx2<Clamp, Dual, kv::none>(io, cfg, row);
      case kv::k3_in_grad: return ppo_policy_row_avx2<Clamp, Dual, kv::k3_in_grad>(io, cfg, row);
      case kv::k3_stats_only: return ppo_policy_row_avx2<Clamp, Dual, kv::k3_stats_only>(io, cfg, row);
      case kv::other: return ppo_policy_row_avx2<Clamp, Dual, kv::other>(io, cfg, row);
    }
  };
  if (cfg.use_log_ratio_clamp) {
    if (cfg.use_dual_clip)
      run.template operator()<true, true>();
    else
      run.template operator()<true, false>();
  } else {
    if (cfg.use_dual_clip)
      run.template operator()<false, true>();
    else
      run.template operator()<false, false>();
  }
}
#endif

template <class T>
void ppo_policy_row_kernel(const ppo_policy_row_io<T>& io, const ppo_policy_config<T>& cfg,
                           ppo_policy_row& row) noexcept {
#if defined(__AVX2__) && defined(__FMA__) && !defined(__CUDACC__)
  if constexpr (std::is_same_v<T, float>) {
    ppo_policy_row_avx2_dispatch(io, cfg, row);
    return;
  }
#endif
  ppo_policy_row_scalar(io, cfg, row);
}

/// The clipped-surrogate policy loss over (B, T) views; dlogp may be empty (statistics only).
template <class T>
ppo_policy_totals ppo_policy(const cpu_backend& backend, matrix_view<const T> logp,
                             matrix_view<const T> old_logp, matrix_view<const T> advantages,
                             mask_view mask, matrix_view<const T> ref_logp, matrix_view<T> dlogp,
                             const ppo_policy_config<T>& cfg) {
  const std::ptrdiff_t n_rows = logp.extent(0), n_tokens = logp.extent(1);
  const std::vector<std::int64_t> counts = ppo_row_counts(mask, n_rows, n_tokens);
  const ppo_row_weights weights = ppo_make_weights(cfg.reduction, counts);
  // The KL term's weight is a token mean whatever the policy reduction.
  const bool kl_in_grad = !ref_logp.empty() && cfg.kl_coef != 0.0 && weights.tokens > 0;
  const double kl_weight = kl_in_grad ? cfg.kl_coef / static_cast<double>(weights.tokens) : 0.0;
  std::vector<ppo_policy_row> rows(static_cast<std::size_t>(n_rows));
  detail::parallel_for(
      backend, n_rows,
      [&](std::ptrdiff_t begin, std::ptrdiff_t end) {
        std::vector<T> s_lp, s_old, s_adv, s_ref, s_grad;
        std::vector<std::uint8_t> s_mask;
        for (std::ptrdiff_t b = begin; b < end; ++b) {
          const std::int64_t count = counts[static_cast<std::size_t>(b)];
          ppo_policy_row_io<T> io{detail::row_in(logp, b, s_lp), detail::row_in(old_logp, b, s_old),
                                  detail::row_in(advantages, b, s_adv), detail::row_in(mask, b, s_mask),
                                  detail::row_in(ref_logp, b, s_ref), detail::row_out(dlogp, b, s_grad),
                                  n_tokens, weights.weight(count), kl_weight};
          ppo_policy_row& row = rows[static_cast<std::size_t>(b)];
          row.count = count;
          ppo_policy_row_kernel(io, cfg, row);
          detail::row_out_done(dlogp, b, io.grad);
        }
      },
      detail::min_rows_per_thread(n_tokens));

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
  if (out.skipped) ppo_zero(dlogp);  // TRL 0.11: the whole batch is dropped
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

/// One contiguous row of the value pass; mask and grad may be nullptr. The variance shifts
/// are the row's first valid R, V_old and R − V.
template <class T>
struct ppo_value_row_io {
  const T* values;
  const T* old_values;
  const T* returns;
  const std::uint8_t* mask;
  T* grad;
  std::ptrdiff_t n;
  double weight;  ///< the row's weight in the reduction times the gradient scale
};

/// Index of the first valid token of a row (0 when none is, or without a mask).
inline std::ptrdiff_t ppo_first_valid(const std::uint8_t* mask, std::ptrdiff_t n) noexcept {
  if (mask == nullptr) return 0;
  for (std::ptrdiff_t t = 0; t < n; ++t)
    if (mask[t] != 0) return t;
  return 0;
}

template <class T>
void ppo_value_row_scalar(const ppo_value_row_io<T>& io, const ppo_value_config<T>& cfg,
                          ppo_value_row& row) noexcept {
  const std::ptrdiff_t first = ppo_first_valid(io.mask, io.n);
  const double k_ret = static_cast<double>(io.returns[first]);
  const double k_old = static_cast<double>(io.old_values[first]);
  const double k_res = k_ret - static_cast<double>(io.values[first]);
  double ret_s1 = 0, ret_s2 = 0, old_s1 = 0, old_s2 = 0, res_s1 = 0, res_s2 = 0;
  for (std::ptrdiff_t t = 0; t < io.n; ++t) {
    if (io.mask != nullptr && io.mask[t] == 0) {
      if (io.grad != nullptr) io.grad[t] = T(0);
      continue;
    }
    const T v = io.values[t], v_old = io.old_values[t], ret = io.returns[t];
    const auto term = math::ppo_clipped_value(v, v_old, ret, cfg.use_clip, cfg.clip);
    if (io.grad != nullptr) io.grad[t] = static_cast<T>(static_cast<double>(term.grad) * io.weight);
    row.clipped += term.clipped ? 1 : 0;
    row.loss += static_cast<double>(term.loss);
    row.value += static_cast<double>(v);
    const double error = static_cast<double>(v) - static_cast<double>(ret);
    row.squared_error += error * error;
    const double d_ret = static_cast<double>(ret) - k_ret;
    const double d_old = static_cast<double>(v_old) - k_old;
    const double d_res = -error - k_res;
    ret_s1 += d_ret;
    ret_s2 += d_ret * d_ret;
    old_s1 += d_old;
    old_s2 += d_old * d_old;
    res_s1 += d_res;
    res_s2 += d_res * d_res;
  }
  row.returns = ppo_moments::from_shifted_sums(row.count, k_ret, ret_s1, ret_s2);
  row.old_values = ppo_moments::from_shifted_sums(row.count, k_old, old_s1, old_s2);
  row.residual = ppo_moments::from_shifted_sums(row.count, k_res, res_s1, res_s2);
}

#if defined(__AVX2__) && defined(__FMA__) && !defined(__CUDACC__)
/// The float value kernel, 8 tokens a step, specialised on the clip (see ppo_policy_row_avx2).
/// math::ppo_clipped_value branch-free: where V lies inside [V_old − c, V_old + c] (or a
/// comparison involves NaN) V_clip = V exactly, so the squares tie and the gradient is
/// (e + e_clip)/2; outside, the larger square wins (gradient e, or 0 for the clipped one) and
/// a tie gives e/2. The loss is summed without the ½ (an exact factor) and halved per row.
template <bool Clip>
void ppo_value_row_avx2(const ppo_value_row_io<float>& io, const ppo_value_config<float>& cfg,
                        ppo_value_row& row) noexcept {
  namespace s = detail::simd;
  // 0 the loss without ½, 1 V, 2 (V − R)², 3 R − K_R, 4 (R − K_R)², 5 V_old − K_old,
  // 6 (V_old − K_old)², 7 (V − R) − K_err, 8 its square
  constexpr int n_sums = 9;
  __m256d sum_lo[n_sums], sum_hi[n_sums];
  for (int k = 0; k < n_sums; ++k) sum_lo[k] = sum_hi[k] = _mm256_setzero_pd();
  __m256i clipped_count = _mm256_setzero_si256();
  const float* const values = io.values;
  const float* const old_values = io.old_values;
  const float* const returns = io.returns;
  const std::uint8_t* const mask = io.mask;
  float* const grad = io.grad;
  const std::ptrdiff_t first = ppo_first_valid(mask, io.n);
  const float k_ret = returns[first], k_old = old_values[first];
  const float k_err = values[first] - returns[first];
  const float clip_s = cfg.clip, weight_s = static_cast<float>(io.weight);

  // One block of n_vec ≤ ppo_block_vectors vectors in two loops: the loss, clip and gradient,
  // then the statistics (splitting keeps each loop's sums in registers). Masked: some mask
  // byte of the block is 0 (lanes are then masked everywhere), else every token is valid.
  const auto block = [&]<bool Masked>(const float* v_p, const float* old_p, const float* ret_p,
                                      const std::uint8_t* m_p, float* g_p, int n_vec) __attribute__((always_inline)) {
    __m256 a_loss = _mm256_setzero_ps();
    for (int i = 0; i < n_vec; ++i) {
      const __m256 valid = Masked ? s::valid8(m_p + 8 * i) : _mm256_setzero_ps();
      const auto keep = [&](__m256 x) __attribute__((always_inline)) { return Masked ? s::keep(valid, x) : x; };
      const __m256 v = _mm256_loadu_ps(v_p + 8 * i), ret = _mm256_loadu_ps(ret_p + 8 * i);
      const __m256 error = _mm256_sub_ps(v, ret);
      const __m256 unclipped = _mm256_mul_ps(error, error);
      __m256 loss = unclipped, g = error;
      if constexpr (Clip) {
        const __m256 v_old = _mm256_loadu_ps(old_p + 8 * i), clip = _mm256_set1_ps(clip_s);
        const __m256 low = _mm256_sub_ps(v_old, clip), high = _mm256_add_ps(v_old, clip);
        // V_clip = V < lo ? lo : (V > hi ? hi : V) (max/min pass a NaN V through, and ignore a
        // NaN bound as the comparisons do); V_clip ≠ V (ordered) exactly outside the range.
        const __m256 clipped_value = _mm256_min_ps(high, _mm256_max_ps(low, v));
        const __m256 outside = _mm256_cmp_ps(clipped_value, v, _CMP_NEQ_OQ);
        const __m256 clipped_error = _mm256_sub_ps(clipped_value, ret);
        const __m256 clipped_sq = _mm256_mul_ps(clipped_error, clipped_error);
        const __m256 gt = _mm256_cmp_ps(unclipped, clipped_sq, _CMP_GT_OQ);
        const __m256 lt = _mm256_cmp_ps(clipped_sq, unclipped, _CMP_GT_OQ);  // the clipped branch
        loss = _mm256_max_ps(clipped_sq, unclipped);  // clipped_sq if lt, else unclipped (NaN too)
        const __m256 half = _mm256_set1_ps(0.5f);
        // Outside the range: e when gt, 0 when lt, e/2 on a tie; inside: the tie (e + e_clip)/2.
        const __m256 outside_grad = s::select(gt, error, _mm256_andnot_ps(lt, _mm256_mul_ps(error, half)));
        g = s::select(outside, outside_grad, _mm256_mul_ps(_mm256_add_ps(error, clipped_error), half));
        clipped_count = _mm256_sub_epi32(clipped_count, _mm256_castps_si256(keep(lt)));
      }
      if (g_p != nullptr) _mm256_storeu_ps(g_p + 8 * i, keep(_mm256_mul_ps(g, _mm256_set1_ps(weight_s))));
      a_loss = _mm256_add_ps(a_loss, keep(loss));
    }
    __m256 acc[n_sums - 1];
    for (int k = 0; k < n_sums - 1; ++k) acc[k] = _mm256_setzero_ps();
    for (int i = 0; i < n_vec; ++i) {
      const __m256 valid = Masked ? s::valid8(m_p + 8 * i) : _mm256_setzero_ps();
      const auto keep = [&](__m256 x) __attribute__((always_inline)) { return Masked ? s::keep(valid, x) : x; };
      const __m256 v = _mm256_loadu_ps(v_p + 8 * i), v_old = _mm256_loadu_ps(old_p + 8 * i);
      const __m256 ret = _mm256_loadu_ps(ret_p + 8 * i);
      const __m256 error = _mm256_sub_ps(v, ret);
      acc[0] = _mm256_add_ps(acc[0], keep(v));
      const __m256 kept_error = keep(error);
      acc[1] = _mm256_fmadd_ps(kept_error, kept_error, acc[1]);
      const __m256 d_ret = keep(_mm256_sub_ps(ret, _mm256_set1_ps(k_ret)));
      acc[2] = _mm256_add_ps(acc[2], d_ret);
      acc[3] = _mm256_fmadd_ps(d_ret, d_ret, acc[3]);
      const __m256 d_old = keep(_mm256_sub_ps(v_old, _mm256_set1_ps(k_old)));
      acc[4] = _mm256_add_ps(acc[4], d_old);
      acc[5] = _mm256_fmadd_ps(d_old, d_old, acc[5]);
      const __m256 d_err = keep(_mm256_sub_ps(error, _mm256_set1_ps(k_err)));
      acc[6] = _mm256_add_ps(acc[6], d_err);
      acc[7] = _mm256_fmadd_ps(d_err, d_err, acc[7]);
    }
    s::add_widened(sum_lo[0], sum_hi[0], a_loss);
    for (int k = 1; k < n_sums; ++k) s::add_widened(sum_lo[k], sum_hi[k], acc[k - 1]);
  };

  const std::ptrdiff_t n = io.n, n_full = n / 8 * 8;
  const auto at = [](auto* p, std::ptrdiff_t t) { return p != nullptr ? p + t : nullptr; };
  for (std::ptrdiff_t t = 0; t < n_full; t += 8 * ppo_block_vectors) {
    const std::ptrdiff_t len = std::min<std::ptrdiff_t>(8 * ppo_block_vectors, n_full - t);
    const int n_vec = static_cast<int>(len / 8);
    if (mask == nullptr || s::count_valid(mask + t, len) == len)
      block.template operator()<false>(values + t, old_values + t, returns + t, nullptr, at(grad, t), n_vec);
    else
      block.template operator()<true>(values + t, old_values + t, returns + t, mask + t, at(grad, t), n_vec);
  }
  if (n_full < n) {  // the last < 8 tokens, through zero-padded copies (padding lanes invalid)
    const std::size_t rest = static_cast<std::size_t>(n - n_full);
    alignas(32) float v[8] = {}, old[8] = {}, ret[8] = {}, g[8];
    alignas(8) std::uint8_t m[8] = {};
    std::memcpy(v, values + n_full, rest * sizeof(float));
    std::memcpy(old, old_values + n_full, rest * sizeof(float));
    std::memcpy(ret, returns + n_full, rest * sizeof(float));
    if (mask != nullptr)
      std::memcpy(m, mask + n_full, rest);
    else
      std::memset(m, 1, rest);
    block.template operator()<true>(v, old, ret, m, g, 1);
    if (grad != nullptr) std::memcpy(grad + n_full, g, rest * sizeof(float));
  }
  double sums[n_sums];
  for (int k = 0; k < n_sums; ++k) sums[k] = s::sum4(sum_lo[k]) + s::sum4(sum_hi[k]);
  row.loss = 0.5 * sums[0];
  row.value = sums[1];
  row.squared_error = sums[2];
  row.clipped = s::sum8(clipped_count);
  row.returns = ppo_moments::from_shifted_sums(row.count, static_cast<double>(k_ret), sums[3], sums[4]);
  row.old_values = ppo_moments::from_shifted_sums(row.count, static_cast<double>(k_old), sums[5], sums[6]);
  // R − V = −(V − R): the same deviations with the sign flipped.
  row.residual = ppo_moments::from_shifted_sums(row.count, -static_cast<double>(k_err), -sums[7], sums[8]);
}
#endif

template <class T>
void ppo_value_row_kernel(const ppo_value_row_io<T>& io, const ppo_value_config<T>& cfg,
                          ppo_value_row& row) noexcept {
#if defined(__AVX2__) && defined(__FMA__) && !defined(__CUDACC__)
  if constexpr (std::is_same_v<T, float>) {
    if (cfg.use_clip)
      ppo_value_row_avx2<true>(io, cfg, row);
    else
      ppo_value_row_avx2<false>(io, cfg, row);
    return;
  }
#endif
  ppo_value_row_scalar(io, cfg, row);
}

template <class T>
ppo_value_totals ppo_value(const cpu_backend& backend, matrix_view<const T> values,
                           matrix_view<const T> old_values, matrix_view<const T> returns,
                           mask_view mask, matrix_view<T> dvalues, const ppo_value_config<T>& cfg,
                           double grad_scale = 1.0, bool zero = false) {
  const std::ptrdiff_t n_rows = values.extent(0), n_tokens = values.extent(1);
  const std::vector<std::int64_t> counts = ppo_row_counts(mask, n_rows, n_tokens);
  const ppo_row_weights weights = ppo_make_weights(cfg.reduction, counts);
  std::vector<ppo_value_row> rows(static_cast<std::size_t>(n_rows));
  // zero (a skipped batch): statistics only, and an all-zero gradient.
  const matrix_view<T> grad = zero ? matrix_view<T>{} : dvalues;
  detail::parallel_for(
      backend, n_rows,
      [&](std::ptrdiff_t begin, std::ptrdiff_t end) {
        std::vector<T> s_v, s_old, s_ret, s_grad;
        std::vector<std::uint8_t> s_mask;
        for (std::ptrdiff_t b = begin; b < end; ++b) {
          const std::int64_t count = counts[static_cast<std::size_t>(b)];
          ppo_value_row_io<T> io{detail::row_in(values, b, s_v), detail::row_in(old_values, b, s_old),
                                 detail::row_in(returns, b, s_ret), detail::row_in(mask, b, s_mask),
                                 detail::row_out(grad, b, s_grad), n_tokens,
                                 weights.weight(count) * grad_scale};
          ppo_value_row& row = rows[static_cast<std::size_t>(b)];
          row.count = count;
          ppo_value_row_kernel(io, cfg, row);
          detail::row_out_done(grad, b, io.grad);
        }
      },
      detail::min_rows_per_thread(n_tokens));
  if (zero) ppo_zero(dvalues);

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
