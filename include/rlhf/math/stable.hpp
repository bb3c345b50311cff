// rlhf/math/stable.hpp — numerically stable scalar building blocks, host and device.
//
// Each form is the one that stays finite for every finite input (and for ±inf where the limit
// exists): log σ(x) = min(x, 0) − log1p(exp(−|x|)), the same decomposition PyTorch uses.
#pragma once

#include <rlhf/config.hpp>

#include <cmath>

namespace rlhf::math {

/// σ(x) = 1 / (1 + e^{−x}) without overflow for large |x|.
template <class T>
RLHF_HOST_DEVICE inline T sigmoid(T x) noexcept {
  using std::exp;
  if (x >= T(0)) return T(1) / (T(1) + exp(-x));
  const T e = exp(x);
  return e / (T(1) + e);
}

/// log σ(x) = min(x, 0) − log1p(e^{−|x|}): log_sigmoid(−1000) = −1000, log_sigmoid(1000) = 0.
template <class T>
RLHF_HOST_DEVICE inline T log_sigmoid(T x) noexcept {
  using std::exp;
  using std::fabs;
  using std::log1p;
  return (x < T(0) ? x : T(0)) - log1p(exp(-fabs(x)));
}

/// softplus(x) = log(1 + e^x) = −log σ(−x).
template <class T>
RLHF_HOST_DEVICE inline T softplus(T x) noexcept {
  return -log_sigmoid(-x);
}

/// clamp(x, lo, hi) without std:: (device code must not call std::min/std::max constexpr members).
template <class T>
RLHF_HOST_DEVICE constexpr T clamp(T x, T lo, T hi) noexcept {
  return x < lo ? lo : (x > hi ? hi : x);
}

template <class T>
RLHF_HOST_DEVICE constexpr T min(T a, T b) noexcept {
  return b < a ? b : a;
}
template <class T>
RLHF_HOST_DEVICE constexpr T max(T a, T b) noexcept {
  return a < b ? b : a;
}

static_assert(clamp(3.0, -1.0, 1.0) == 1.0);
static_assert(clamp(-3.0, -1.0, 1.0) == -1.0);

}  // namespace rlhf::math
