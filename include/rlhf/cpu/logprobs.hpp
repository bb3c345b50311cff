// rlhf/cpu/logprobs.hpp — CPU kernels for per-token log-probs, entropy, full KL and their
// gradients from logits (B, T, V). Included by <rlhf/logprobs.hpp> and <rlhf/lm_loss.hpp>;
// arguments are already checked there.
//
// Every (b, t) is one row of V logits, reduced with the online softmax of math/logprobs.hpp in
// blocks of `block` elements: the block's maximum first (the block is then in L1), then one
// pass of exps summing s and u relative to it; block states are folded with softmax_combine in
// double. So the logits are read from memory once per row (a backward pass reads the row a
// second time from L2, where the forward pass left it).
//
// Two row kernels per formula:
//   - scalar (any T): the exps in T (std::exp for double, math::fast_exp for float), sums in
//     double; the reference and the path for builds without AVX2;
//   - AVX2+FMA (float, unit inner stride): 8 lanes, the polynomial exp of detail/simd.hpp, block
//     sums in float lanes (≤ 2048 / 16 terms each) widened to double at the end of the block.
//     In that path an exp argument below −87.3 (a probability < 1.2e-38 of the row's maximum) is
//     flushed to probability 0.
// Rows whose inner stride is not 1 are copied into a scratch row first (and gradients are written
// through one), so a strided view gives the same bits as a contiguous one. Rows are split over
// the backend's threads; every row is computed the same way whatever the split, so results do
// not depend on the thread count.
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/config.hpp>
#include <rlhf/concepts.hpp>
#include <rlhf/detail/parallel.hpp>
#include <rlhf/detail/rows.hpp>
#include <rlhf/detail/simd.hpp>
#include <rlhf/math/fast_exp.hpp>
#include <rlhf/math/logprobs.hpp>
#include <rlhf/tensor_view.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

namespace rlhf::cpu_impl {

namespace logprobs_detail {

/// Elements per block of the online softmax (8 KiB of floats: the block stays in L1).
inline constexpr std::ptrdiff_t block = 2048;

/// The float backward recomputes a row's lse (rather than trusting the float one it is given)
/// from this magnitude on.
inline constexpr double recompute_lse_from = 16.0;

/// Where the fast float paths flush: e^{−87.3} ≈ 1.2e-38, the smallest normal float.
inline constexpr float flush_below = -87.3f;

/// The temperature in the two forms the kernels use: double divides by τ (exactly what the
/// anchors do), float multiplies by 1/τ rounded to float.
template <class T>
struct temperature {
  double tau = 1.0;
  double inv_tau = 1.0;
  T inv_tau_t = T(1);
  /// z = x / τ in double (x·(1/τ) for float inputs, the kernels' own rounding).
  [[nodiscard]] double scale(T x) const noexcept {
    if constexpr (std::is_same_v<T, double>)
      return x / tau;
    else
      return static_cast<double>(x) * static_cast<double>(inv_tau_t);
  }
};
template <class T>
temperature<T> make_temperature(double tau) noexcept {
  return {tau, 1.0 / tau, static_cast<T>(1.0 / tau)};
}

template <class T>
T exp_of(T x) noexcept {
  if constexpr (std::is_same_v<T, float>)
    return math::fast_exp(x);
  else
    return std::exp(x);
}

/// (z − c) for element x of a block whose maximum is `bm`: (x − bm)/τ in double, x·(1/τ) − c
/// in float (c = bm·(1/τ) rounded to float, which is then the block's reference point).
template <class T>
T block_offset(T x, T bm, T c, const temperature<T>& tau) noexcept {
  if constexpr (std::is_same_v<T, double>) {
    (void)c;
    return (x - bm) / tau.tau;
  } else {
    (void)bm;
    return x * tau.inv_tau_t - c;
  }
}
template <class T>
T block_reference(T bm, const temperature<T>& tau) noexcept {
  if constexpr (std::is_same_v<T, double>)
    return bm / tau.tau;
  else
    return bm * tau.inv_tau_t;
}

template <class T>
T block_max(const T* x, std::ptrdiff_t n) noexcept {
  T m = -std::numeric_limits<T>::infinity();
  for (std::ptrdiff_t j = 0; j < n; ++j) m = x[j] > m ? x[j] : m;
  return m;
}

// ---- scalar rows -------------------------------------------------------------------------------

/// The softmax state of one contiguous row of n logits (scalar path).
template <class T>
math::softmax_state<double> softmax_row_scalar(const T* x, std::ptrdiff_t n, const temperature<T>& tau) noexcept {
  math::softmax_state<double> row;
  for (std::ptrdiff_t b0 = 0; b0 < n; b0 += block) {
    const std::ptrdiff_t len = std::min(block, n - b0);
    const T bm = block_max(x + b0, len);
    if (bm == -std::numeric_limits<T>::infinity()) continue;
    const T c = block_reference(bm, tau);
    double s = 0.0, u = 0.0;
    for (std::ptrdiff_t j = b0; j < b0 + len; ++j) {
      const T d = block_offset(x[j], bm, c, tau);
      const T e = exp_of(d);
      if (e == T(0)) continue;  // p = 0 (−∞ logit or underflow): contributes nothing
      s += static_cast<double>(e);
      u += static_cast<double>(e) * static_cast<double>(d);
    }
    row = math::softmax_combine(row, math::softmax_state<double>{static_cast<double>(c), s, u});
  }
  return row;
}

/// dx_j = (g_logp·(δ_{j,label} − p_j) − g_H·p_j·(log p_j + H)) / τ for one contiguous row
/// (scalar path). dx may be x itself.
template <class T>
void logprob_grad_row_scalar(const T* x, T* dx, std::ptrdiff_t n, std::ptrdiff_t label, const temperature<T>& tau,
                             double lse, double grad_logp, double grad_entropy, double entropy) noexcept {
  for (std::ptrdiff_t j = 0; j < n; ++j) {
    const double g = math::logprob_entropy_grad(tau.scale(x[j]), lse, false, grad_logp, grad_entropy, entropy);
    dx[j] = static_cast<T>(g * tau.inv_tau);
  }
  if (label >= 0) dx[label] = static_cast<T>(static_cast<double>(dx[label]) + grad_logp * tau.inv_tau);
}

/// The KL state of one pair of contiguous rows (policy x, reference y; scalar path).
template <class T>
math::kl_state<double> kl_row_scalar(const T* x, const T* y, std::ptrdiff_t n, const temperature<T>& tau) noexcept {
  constexpr T ninf = -std::numeric_limits<T>::infinity();
  math::kl_state<double> row;
  for (std::ptrdiff_t b0 = 0; b0 < n; b0 += block) {
    const std::ptrdiff_t len = std::min(block, n - b0);
    const T bx = block_max(x + b0, len), by = block_max(y + b0, len);
    const T cx = bx == ninf ? T(0) : block_reference(bx, tau);
    const T cy = by == ninf ? T(0) : block_reference(by, tau);
    double s = 0.0, u = 0.0, sr = 0.0, diff = 0.0;
    for (std::ptrdiff_t j = b0; j < b0 + len; ++j) {
      const T dw = by == ninf ? ninf : block_offset(y[j], by, cy, tau);
      if (by != ninf) {
        const T f = exp_of(dw);
        if (f != T(0)) sr += static_cast<double>(f);
      }
      if (bx == ninf) continue;
      const T dz = block_offset(x[j], bx, cx, tau);
      const T e = exp_of(dz);
      if (e == T(0)) continue;
      s += static_cast<double>(e);
      u += static_cast<double>(e) * static_cast<double>(dz);
      diff += static_cast<double>(e) * (static_cast<double>(dz) - static_cast<double>(dw));
    }
    math::kl_state<double> part;
    if (bx != ninf) part.policy = {static_cast<double>(cx), s, u};
    if (by != ninf) part.ref = {static_cast<double>(cy), sr, 0.0};
    // Σ e^{z − cx}(z − w) = Σ e·(dz − dw) + s·(cx − cy)
    if (bx != ninf)
      part.sum_exp_diff = diff + (by == ninf ? (s > 0.0 ? std::numeric_limits<double>::infinity() : 0.0)
                                             : s * (static_cast<double>(cx) - static_cast<double>(cy)));
    row = math::kl_combine(row, part);
  }
  return row;
}

/// dx_j = g·p_j·(log p_j − log q_j − KL) / τ for one pair of contiguous rows (scalar path).
template <class T>
void kl_grad_row_scalar(const T* x, const T* y, T* dx, std::ptrdiff_t n, const temperature<T>& tau, double lse,
                        double ref_lse, double kl, double grad_kl) noexcept {
  for (std::ptrdiff_t j = 0; j < n; ++j) {
    const double g = math::kl_grad(tau.scale(x[j]), lse, tau.scale(y[j]), ref_lse, kl, grad_kl);
    dx[j] = static_cast<T>(g * tau.inv_tau);
  }
}

// ---- AVX2 float rows ---------------------------------------------------------------------------
#if defined(__AVX2__) && defined(__FMA__) && !defined(__CUDACC__)
namespace avx2 {

/// Lanes i < rem set (rem ∈ [0, 8]).
RLHF_ALWAYS_INLINE __m256i tail_mask(std::ptrdiff_t rem) noexcept {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(rem)), idx);
}

RLHF_ALWAYS_INLINE float hmax(__m256 v) noexcept {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}

/// Σ of the 8 lanes, widened to double, in a fixed order.
RLHF_ALWAYS_INLINE double hsum(__m256 v) noexcept {
  __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
  detail::simd::add_widened(lo, hi, v);
  return detail::simd::sum4(_mm256_add_pd(lo, hi));
}

inline float block_max(const float* x, std::ptrdiff_t n) noexcept {
  const __m256 ninf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  __m256 m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
  std::ptrdiff_t j = 0;
  for (; j + 32 <= n; j += 32) {
    m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + j));
    m1 = _mm256_max_ps(m1, _mm256_loadu_ps(x + j + 8));
    m2 = _mm256_max_ps(m2, _mm256_loadu_ps(x + j + 16));
    m3 = _mm256_max_ps(m3, _mm256_loadu_ps(x + j + 24));
  }
  for (; j + 8 <= n; j += 8) m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + j));
  float m = hmax(_mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3)));
  for (; j < n; ++j) m = x[j] > m ? x[j] : m;
  return m;
}

/// e^d with d clamped at flush_below, and the clamped d (so e·d stays finite for d = −∞).
RLHF_ALWAYS_INLINE __m256 clamped_exp(__m256& d) noexcept {
  d = _mm256_max_ps(d, _mm256_set1_ps(flush_below));
  return detail::simd::exp8_narrow(d);
}

/// The softmax state of one contiguous float row (AVX2 path).
inline math::softmax_state<double> softmax_row(const float* x, std::ptrdiff_t n, float inv_tau) noexcept {
  math::softmax_state<double> row;
  const __m256 scale = _mm256_set1_ps(inv_tau);
  for (std::ptrdiff_t b0 = 0; b0 < n; b0 += block) {
    const std::ptrdiff_t len = std::min(block, n - b0);
    const float* xb = x + b0;
    const float bm = block_max(xb, len);
    if (bm == -std::numeric_limits<float>::infinity()) continue;
    const float c = bm * inv_tau;
    const __m256 neg_c = _mm256_set1_ps(-c);
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), u0 = _mm256_setzero_ps(), u1 = _mm256_setzero_ps();
    std::ptrdiff_t j = 0;
    for (; j + 16 <= len; j += 16) {
      __m256 d0 = _mm256_fmadd_ps(_mm256_loadu_ps(xb + j), scale, neg_c);
      __m256 d1 = _mm256_fmadd_ps(_mm256_loadu_ps(xb + j + 8), scale, neg_c);
      const __m256 e0 = clamped_exp(d0), e1 = clamped_exp(d1);
      s0 = _mm256_add_ps(s0, e0);
      s1 = _mm256_add_ps(s1, e1);
      u0 = _mm256_fmadd_ps(e0, d0, u0);
      u1 = _mm256_fmadd_ps(e1, d1, u1);
    }
    for (; j < len; j += 8) {
      const __m256i lanes = tail_mask(len - j);
      __m256 d = _mm256_fmadd_ps(_mm256_maskload_ps(xb + j, lanes), scale, neg_c);
      const __m256 e = detail::simd::keep(_mm256_castsi256_ps(lanes), clamped_exp(d));
      s0 = _mm256_add_ps(s0, e);
      u0 = _mm256_fmadd_ps(e, d, u0);
    }
    row = math::softmax_combine(row, math::softmax_state<double>{static_cast<double>(c),
                                                                 hsum(_mm256_add_ps(s0, s1)),
                                                                 hsum(_mm256_add_ps(u0, u1))});
  }
  return row;
}

/// lse as a float pair (hi + lo ≈ lse to ~48 bits), so that x/τ − lse keeps its accuracy for
/// |lse| up to 1e4 and more.
struct split {
  float hi, lo;
};
inline split split_double(double v) noexcept {
  const float hi = static_cast<float>(v);
  return {hi, static_cast<float>(v - static_cast<double>(hi))};
}

/// log p_j = x_j·(1/τ) − lse for 8 lanes.
RLHF_ALWAYS_INLINE __m256 log_prob8(__m256 x, __m256 scale, split lse) noexcept {
  return _mm256_sub_ps(_mm256_fmsub_ps(x, scale, _mm256_set1_ps(lse.hi)), _mm256_set1_ps(lse.lo));
}

/// p = e^{lp}, 0 where lp < flush_below (and where lp is −∞).
RLHF_ALWAYS_INLINE __m256 prob8(__m256 lp, __m256& live) noexcept {
  live = _mm256_cmp_ps(lp, _mm256_set1_ps(flush_below), _CMP_GT_OQ);
  return detail::simd::keep(live, detail::simd::exp8_narrow(_mm256_max_ps(lp, _mm256_set1_ps(flush_below))));
}

/// dx = (−g_logp·p − g_H·p·(log p + H)) / τ, then + g_logp/τ at the label (AVX2 path). dx may be x.
inline void logprob_grad_row(const float* x, float* dx, std::ptrdiff_t n, std::ptrdiff_t label, float inv_tau,
                             double lse, double grad_logp, double grad_entropy, double entropy) noexcept {
  const __m256 scale = _mm256_set1_ps(inv_tau);
  const split l = split_double(lse);
  const __m256 a = _mm256_set1_ps(static_cast<float>(-grad_logp * inv_tau));
  const __m256 b = _mm256_set1_ps(static_cast<float>(-grad_entropy * inv_tau));
  const __m256 h = _mm256_set1_ps(static_cast<float>(entropy));
  const auto grad8 = [&](__m256 xv) {
    __m256 live;
    const __m256 lp = log_prob8(xv, scale, l);
    const __m256 p = prob8(lp, live);
    return detail::simd::keep(live, _mm256_mul_ps(p, _mm256_fmadd_ps(b, _mm256_add_ps(lp, h), a)));
  };
  std::ptrdiff_t j = 0;
  for (; j + 8 <= n; j += 8) _mm256_storeu_ps(dx + j, grad8(_mm256_loadu_ps(x + j)));
  if (j < n) {
    const __m256i lanes = tail_mask(n - j);
    _mm256_maskstore_ps(dx + j, lanes, grad8(_mm256_maskload_ps(x + j, lanes)));
  }
  if (label >= 0) dx[label] = static_cast<float>(static_cast<double>(dx[label]) + grad_logp * inv_tau);
}

/// The KL state of one pair of contiguous float rows (AVX2 path).
inline math::kl_state<double> kl_row(const float* x, const float* y, std::ptrdiff_t n,
                                     const temperature<float>& tau) noexcept {
  constexpr float ninf = -std::numeric_limits<float>::infinity();
  math::kl_state<double> row;
  const float inv_tau = tau.inv_tau_t;
  const __m256 scale = _mm256_set1_ps(inv_tau);
  for (std::ptrdiff_t b0 = 0; b0 < n; b0 += block) {
    const std::ptrdiff_t len = std::min(block, n - b0);
    const float* xb = x + b0;
    const float* yb = y + b0;
    const float bx = block_max(xb, len), by = block_max(yb, len);
    if (bx == ninf || by == ninf) {  // rare: a block without any finite logit on one side
      row = math::kl_combine(row, kl_row_scalar<float>(xb, yb, len, tau));
      continue;
    }
    const float cx = bx * inv_tau, cy = by * inv_tau;
    const __m256 neg_cx = _mm256_set1_ps(-cx), neg_cy = _mm256_set1_ps(-cy);
    __m256 s = _mm256_setzero_ps(), u = _mm256_setzero_ps(), sr = _mm256_setzero_ps(), diff = _mm256_setzero_ps();
    const auto step = [&](__m256 xv, __m256 yv, __m256 lanes) {
      __m256 dz = _mm256_fmadd_ps(xv, scale, neg_cx);
      const __m256 dw = _mm256_fmadd_ps(yv, scale, neg_cy);
      const __m256 live = _mm256_and_ps(lanes, _mm256_cmp_ps(dz, _mm256_set1_ps(flush_below), _CMP_GT_OQ));
      const __m256 raw_dz = dz;
      const __m256 e = detail::simd::keep(live, clamped_exp(dz));
      __m256 dwc = dw;
      const __m256 f = detail::simd::keep(lanes, clamped_exp(dwc));
      s = _mm256_add_ps(s, e);
      u = _mm256_fmadd_ps(e, dz, u);
      sr = _mm256_add_ps(sr, f);
      // e·(z − w) with the unclamped offsets (+∞ where q = 0 < p), 0 where p = 0.
      diff = _mm256_add_ps(diff, detail::simd::keep(live, _mm256_mul_ps(e, _mm256_sub_ps(raw_dz, dw))));
    };
    const __m256 all = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    std::ptrdiff_t j = 0;
    for (; j + 8 <= len; j += 8) step(_mm256_loadu_ps(xb + j), _mm256_loadu_ps(yb + j), all);
    if (j < len) {
      const __m256i lanes = tail_mask(len - j);
      step(_mm256_maskload_ps(xb + j, lanes), _mm256_maskload_ps(yb + j, lanes), _mm256_castsi256_ps(lanes));
    }
    math::kl_state<double> part;
    const double s_d = hsum(s);
    part.policy = {static_cast<double>(cx), s_d, hsum(u)};
    part.ref = {static_cast<double>(cy), hsum(sr), 0.0};
    part.sum_exp_diff = hsum(diff) + s_d * (static_cast<double>(cx) - static_cast<double>(cy));
    row = math::kl_combine(row, part);
  }
  return row;
}

/// dx_j = g·p_j·(log p_j − log q_j − KL) / τ (AVX2 path). dx may be x.
inline void kl_grad_row(const float* x, const float* y, float* dx, std::ptrdiff_t n, float inv_tau, double lse,
                        double ref_lse, double kl, double grad_kl) noexcept {
  const __m256 scale = _mm256_set1_ps(inv_tau);
  const split l = split_double(lse), r = split_double(ref_lse);
  const __m256 g = _mm256_set1_ps(static_cast<float>(grad_kl * inv_tau));
  const __m256 k = _mm256_set1_ps(static_cast<float>(kl));
  const auto grad8 = [&](__m256 xv, __m256 yv) {
    __m256 live;
    const __m256 lp = log_prob8(xv, scale, l);
    const __m256 lq = log_prob8(yv, scale, r);
    const __m256 p = prob8(lp, live);
    return detail::simd::keep(live, _mm256_mul_ps(_mm256_mul_ps(g, p), _mm256_sub_ps(_mm256_sub_ps(lp, lq), k)));
  };
  std::ptrdiff_t j = 0;
  for (; j + 8 <= n; j += 8) _mm256_storeu_ps(dx + j, grad8(_mm256_loadu_ps(x + j), _mm256_loadu_ps(y + j)));
  if (j < n) {
    const __m256i lanes = tail_mask(n - j);
    _mm256_maskstore_ps(dx + j, lanes, grad8(_mm256_maskload_ps(x + j, lanes), _mm256_maskload_ps(y + j, lanes)));
  }
}

}  // namespace avx2
#endif

/// Whether the AVX2 float kernels are compiled in (tests compare them with the scalar ones).
inline constexpr bool has_avx2_kernels =
#if defined(__AVX2__) && defined(__FMA__) && !defined(__CUDACC__)
    true;
#else
    false;
#endif

// ---- dispatch per row --------------------------------------------------------------------------

template <class T>
math::softmax_state<double> softmax_row(const T* x, std::ptrdiff_t n, const temperature<T>& tau) noexcept {
#if defined(__AVX2__) && defined(__FMA__) && !defined(__CUDACC__)
  if constexpr (std::is_same_v<T, float>) return avx2::softmax_row(x, n, tau.inv_tau_t);
#endif
  return softmax_row_scalar(x, n, tau);
}

template <class T>
void logprob_grad_row(const T* x, T* dx, std::ptrdiff_t n, std::ptrdiff_t label, const temperature<T>& tau,
                      double lse, double grad_logp, double grad_entropy, double entropy) noexcept {
#if defined(__AVX2__) && defined(__FMA__) && !defined(__CUDACC__)
  if constexpr (std::is_same_v<T, float>) {
    avx2::logprob_grad_row(x, dx, n, label, tau.inv_tau_t, lse, grad_logp, grad_entropy, entropy);
    return;
  }
#endif
  logprob_grad_row_scalar(x, dx, n, label, tau, lse, grad_logp, grad_entropy, entropy);
}

template <class T>
math::kl_state<double> kl_row(const T* x, const T* y, std::ptrdiff_t n, const temperature<T>& tau) noexcept {
#if defined(__AVX2__) && defined(__FMA__) && !defined(__CUDACC__)
  if constexpr (std::is_same_v<T, float>) return avx2::kl_row(x, y, n, tau);
#endif
  return kl_row_scalar(x, y, n, tau);
}

template <class T>
void kl_grad_row(const T* x, const T* y, T* dx, std::ptrdiff_t n, const temperature<T>& tau, double lse,
                 double ref_lse, double kl, double grad_kl) noexcept {
#if defined(__AVX2__) && defined(__FMA__) && !defined(__CUDACC__)
  if constexpr (std::is_same_v<T, float>) {
    avx2::kl_grad_row(x, y, dx, n, tau.inv_tau_t, lse, ref_lse, kl, grad_kl);
    return;
  }
#endif
  kl_grad_row_scalar(x, y, dx, n, tau, lse, ref_lse, kl, grad_kl);
}

/// Row (b, t) of a (B, T, V) view as a contiguous pointer (a copy in `scratch` when strided).
template <class T>
const T* vocab_row_in(cube_view<const T> v, std::ptrdiff_t b, std::ptrdiff_t t, std::vector<T>& scratch) {
  const std::ptrdiff_t n = v.extent(2);
  if (v.stride(2) == 1 || n == 1) return &v(b, t, 0);
  scratch.resize(static_cast<std::size_t>(n));
  for (std::ptrdiff_t j = 0; j < n; ++j) scratch[static_cast<std::size_t>(j)] = v(b, t, j);
  return scratch.data();
}
/// Where a gradient row goes: the view's memory, or `scratch` (then vocab_row_done copies it).
template <class T>
T* vocab_row_out(cube_view<T> v, std::ptrdiff_t b, std::ptrdiff_t t, std::vector<T>& scratch) {
  if (v.stride(2) == 1 || v.extent(2) == 1) return &v(b, t, 0);
  scratch.resize(static_cast<std::size_t>(v.extent(2)));
  return scratch.data();
}
template <class T>
void vocab_row_done(cube_view<T> v, std::ptrdiff_t b, std::ptrdiff_t t, const T* row) {
  if (row == &v(b, t, 0)) return;
  for (std::ptrdiff_t j = 0; j < v.extent(2); ++j) v(b, t, j) = row[j];
}

/// Calls body(b, t) for every row, split over the backend's threads.
template <class Body>
void for_each_row(const cpu_backend& backend, std::ptrdiff_t batch, std::ptrdiff_t tokens, std::ptrdiff_t vocab,
                  Body&& body) {
  detail::parallel_for(
      backend, batch * tokens,
      [&](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t r = begin; r < end; ++r) body(r / tokens, r % tokens);
      },
      detail::min_rows_per_thread(vocab));
}

}  // namespace logprobs_detail

// ---- entry points (checked by the public headers) ----------------------------------------------

/// Forward: logp (may be empty when only the statistics are wanted), entropy, logsumexp.
template <class T>
void token_logprobs(const cpu_backend& backend, cube_view<const T> logits, matrix_view<const token_id> labels,
                    matrix_view<T> logp, matrix_view<T> entropy, matrix_view<T> logsumexp, double temperature) {
  namespace d = logprobs_detail;
  const auto tau = d::make_temperature<T>(temperature);
  const std::ptrdiff_t V = logits.extent(2);
  d::for_each_row(backend, logits.extent(0), logits.extent(1), V, [&](std::ptrdiff_t b, std::ptrdiff_t t) {
    thread_local std::vector<T> scratch;
    const T* x = d::vocab_row_in(logits, b, t, scratch);
    const math::softmax_state<double> s = d::softmax_row(x, V, tau);
    const double lse = math::softmax_logsumexp(s);
    if (!logp.empty()) logp(b, t) = static_cast<T>(tau.scale(x[labels(b, t)]) - lse);
    if (!entropy.empty()) entropy(b, t) = static_cast<T>(math::softmax_entropy(s));
    if (!logsumexp.empty()) logsumexp(b, t) = static_cast<T>(lse);
  });
}

/// Backward: dlogits = (g_logp·(onehot − p) − g_H·p·(log p + H)) / τ; dlogits may be logits.
/// Empty grad views count as 0. The entropy, when g_H is given, is recomputed from the row.
template <class T>
void token_logprobs_backward(const cpu_backend& backend, cube_view<const T> logits, matrix_view<const token_id> labels,
                             matrix_view<const T> logsumexp, matrix_view<const T> grad_logp,
                             matrix_view<const T> grad_entropy, cube_view<T> dlogits, double temperature) {
  namespace d = logprobs_detail;
  const auto tau = d::make_temperature<T>(temperature);
  const std::ptrdiff_t V = logits.extent(2);
  d::for_each_row(backend, logits.extent(0), logits.extent(1), V, [&](std::ptrdiff_t b, std::ptrdiff_t t) {
    thread_local std::vector<T> in_scratch, out_scratch;
    const T* x = d::vocab_row_in(logits, b, t, in_scratch);
    const double g_logp = grad_logp.empty() ? 0.0 : static_cast<double>(grad_logp(b, t));
    const double g_h = grad_entropy.empty() ? 0.0 : static_cast<double>(grad_entropy(b, t));
    double lse = static_cast<double>(logsumexp(b, t));
    double entropy = 0.0;
    // A float lse is rounded to ulp(lse)/2 ≈ |lse|·6e-8, an error that every p_j inherits: from
    // |lse| ≥ 16 on (≥ 1e-6 relative) the row's statistics are recomputed in double instead.
    if (g_h != 0.0 || (std::is_same_v<T, float> && !(std::fabs(lse) < d::recompute_lse_from))) {
      const math::softmax_state<double> s = d::softmax_row(x, V, tau);
      entropy = math::softmax_entropy(s);
      if constexpr (std::is_same_v<T, float>) lse = math::softmax_logsumexp(s);
    }
    T* dx = d::vocab_row_out(dlogits, b, t, out_scratch);
    d::logprob_grad_row(x, dx, V, labels(b, t), tau, lse, g_logp, g_h, entropy);
    d::vocab_row_done(dlogits, b, t, dx);
  });
}

/// Full KL per row, plus (optionally) the policy's logp at `labels`, entropy and logsumexp from
/// the same pass.
template <class T>
void full_kl_from_logits(const cpu_backend& backend, cube_view<const T> logits, cube_view<const T> ref_logits,
             matrix_view<const token_id> labels, matrix_view<T> kl, matrix_view<T> logp, matrix_view<T> entropy,
             matrix_view<T> logsumexp, double temperature) {
  namespace d = logprobs_detail;
  const auto tau = d::make_temperature<T>(temperature);
  const std::ptrdiff_t V = logits.extent(2);
  d::for_each_row(backend, logits.extent(0), logits.extent(1), V, [&](std::ptrdiff_t b, std::ptrdiff_t t) {
    thread_local std::vector<T> sx, sy;
    const T* x = d::vocab_row_in(logits, b, t, sx);
    const T* y = d::vocab_row_in(ref_logits, b, t, sy);
    const math::kl_state<double> s = d::kl_row(x, y, V, tau);
    const double lse = math::softmax_logsumexp(s.policy);
    if (!kl.empty()) kl(b, t) = static_cast<T>(math::kl_value(s));
    if (!logp.empty()) logp(b, t) = static_cast<T>(tau.scale(x[labels(b, t)]) - lse);
    if (!entropy.empty()) entropy(b, t) = static_cast<T>(math::softmax_entropy(s.policy));
    if (!logsumexp.empty()) logsumexp(b, t) = static_cast<T>(lse);
  });
}

/// dlogits = g_kl·p·(log p − log q − KL) / τ; the row statistics are recomputed (one more read
/// of both rows). dlogits may be logits.
template <class T>
void full_kl_from_logits_backward(const cpu_backend& backend, cube_view<const T> logits, cube_view<const T> ref_logits,
                      matrix_view<const T> grad_kl, cube_view<T> dlogits, double temperature) {
  namespace d = logprobs_detail;
  const auto tau = d::make_temperature<T>(temperature);
  const std::ptrdiff_t V = logits.extent(2);
  d::for_each_row(backend, logits.extent(0), logits.extent(1), V, [&](std::ptrdiff_t b, std::ptrdiff_t t) {
    thread_local std::vector<T> sx, sy, so;
    const T* x = d::vocab_row_in(logits, b, t, sx);
    const T* y = d::vocab_row_in(ref_logits, b, t, sy);
    const math::kl_state<double> s = d::kl_row(x, y, V, tau);
    T* dx = d::vocab_row_out(dlogits, b, t, so);
    d::kl_grad_row(x, y, dx, V, tau, math::softmax_logsumexp(s.policy), math::softmax_logsumexp(s.ref),
                   math::kl_value(s), static_cast<double>(grad_kl(b, t)));
    d::vocab_row_done(dlogits, b, t, dx);
  });
}

}  // namespace rlhf::cpu_impl
