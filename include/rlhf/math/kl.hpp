// rlhf/math/kl.hpp — per-token KL estimators and their derivatives, shared by both backends.
// The enums are part of the public API of <rlhf/kl.hpp>; they live here so kernels can use them.
#pragma once

#include <rlhf/config.hpp>

#include <cmath>
#include <cstdint>

namespace rlhf {

/// Per-token estimate of KL(π‖π_ref) from the log ratio ℓ = log π(y) − log π_ref(y) of the
/// sampled token (Schulman, "Approximating KL divergence", 2020).
enum class kl_estimator : std::uint8_t {
  k1,   ///< ℓ — unbiased, may be negative (every anchor's default; the paper)
  k2,   ///< ℓ²/2 (OpenRLHF k2; TRL 0.11 kl_penalty="mse")
  k3,   ///< e^{−ℓ} − 1 + ℓ ≥ 0, unbiased (OpenRLHF k3, TRL-head kl_estimator="k3")
  abs,  ///< |ℓ| (TRL 0.11 kl_penalty="abs")
};

/// The arithmetic the estimator runs in.
enum class kl_precision : std::uint8_t {
  native,   ///< the element type of the inputs
  float32,  ///< cast both log-probs to float first, compute in float (OpenRLHF: logp.float() − ref.float())
};

namespace math {

template <class T>
RLHF_HOST_DEVICE constexpr T kl_k1(T log_ratio) noexcept {
  return log_ratio;
}
template <class T>
RLHF_HOST_DEVICE constexpr T kl_k2(T log_ratio) noexcept {
  return log_ratio * log_ratio / T(2);
}
/// e^{−ℓ} − 1 + ℓ, evaluated as (e^{−ℓ} − 1) − (−ℓ) like OpenRLHF and TRL, so the float32
/// results match theirs bit for bit. (expm1 would be more accurate for |ℓ| ≪ 1 — the absolute
/// error here is a few ulp of 1 — but would not reproduce the anchors.)
template <class T>
RLHF_HOST_DEVICE inline T kl_k3(T log_ratio) noexcept {
  using std::exp;
  const T r = -log_ratio;
  return exp(r) - T(1) - r;
}
template <class T>
RLHF_HOST_DEVICE constexpr T kl_abs(T log_ratio) noexcept {
  return log_ratio < T(0) ? -log_ratio : log_ratio;
}

template <class T>
RLHF_HOST_DEVICE inline T kl_estimate(kl_estimator estimator, T log_ratio) noexcept {
  switch (estimator) {
    case kl_estimator::k2: return kl_k2(log_ratio);
    case kl_estimator::k3: return kl_k3(log_ratio);
    case kl_estimator::abs: return kl_abs(log_ratio);
    case kl_estimator::k1: break;
  }
  return kl_k1(log_ratio);
}

/// d estimate / dℓ: k1 → 1, k2 → ℓ, k3 → 1 − e^{−ℓ}, abs → sign(ℓ) (0 at ℓ = 0, as torch).
/// d/dlog π = d/dℓ and d/dlog π_ref = −d/dℓ.
template <class T>
RLHF_HOST_DEVICE inline T kl_estimate_derivative(kl_estimator estimator, T log_ratio) noexcept {
  using std::exp;
  switch (estimator) {
    case kl_estimator::k2: return log_ratio;
    case kl_estimator::k3: return T(1) - exp(-log_ratio);
    case kl_estimator::abs:
      return log_ratio > T(0) ? T(1) : (log_ratio < T(0) ? T(-1) : T(0));
    case kl_estimator::k1: break;
  }
  return T(1);
}

/// The estimate of one token as kl_estimate() writes it, in C: for a masked token (valid =
/// false, reached only with mask_before_transform) ℓ is first replaced by a zero of ℓ's sign
/// (ℓ·0 in OpenRLHF v0.5.9, but never NaN, even for a non-finite ℓ); with `clamp` set the
/// estimate is clamped to [−clamp_value, clamp_value].
template <class C>
RLHF_HOST_DEVICE inline C kl_token(kl_estimator estimator, bool clamp, C clamp_value, C log_ratio,
                                   bool valid) noexcept {
  using std::signbit;
  if (!valid) log_ratio = signbit(log_ratio) ? C(-0.0) : C(0);
  C k = kl_estimate(estimator, log_ratio);
  if (clamp) k = k < -clamp_value ? -clamp_value : (k > clamp_value ? clamp_value : k);
  return k;
}

/// d kl_token / d logp: 0 where the clamp is active (torch's clamp passes the gradient for
/// lo ≤ k ≤ hi).
template <class C>
RLHF_HOST_DEVICE inline C kl_token_derivative(kl_estimator estimator, bool clamp, C clamp_value,
                                              C log_ratio) noexcept {
  if (clamp) {
    const C k = kl_estimate(estimator, log_ratio);
    if (!(k >= -clamp_value && k <= clamp_value)) return C(0);
  }
  return kl_estimate_derivative(estimator, log_ratio);
}

/// One term of the full-distribution KL Σ_v p(v)(log p(v) − log p_ref(v)) with p = e^{log p}.
/// A token with p = 0 (log p = −∞) contributes 0, not NaN.
template <class T>
RLHF_HOST_DEVICE inline T full_kl_term(T logp, T ref_logp) noexcept {
  using std::exp;
  const T p = exp(logp);
  return p == T(0) ? T(0) : p * (logp - ref_logp);
}

static_assert(kl_k1(0.5) == 0.5);
static_assert(kl_k2(-3.0) == 4.5);
static_assert(kl_abs(-3.0) == 3.0 && kl_abs(2.0) == 2.0);

}  // namespace math
}  // namespace rlhf
