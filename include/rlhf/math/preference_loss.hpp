// rlhf/math/preference_loss.hpp — per-example preference-loss terms and their slopes, shared by
// both backends: Bradley–Terry (pairwise, K-wise), and the DPO family (sigmoid / cDPO, robust,
// IPO, hinge).
//
// Every function returns the loss of one example and its derivative ("slope") with respect to
// the one scalar the loss depends on, so the backends only apply the chain rule and the
// reduction. Log-sigmoids go through math::log_sigmoid, so every term is finite for every
// finite argument (reward gaps of ±1e4, DPO logits of ±3000).
#pragma once

#include <rlhf/config.hpp>
#include <rlhf/math/stable.hpp>

#include <cmath>

namespace rlhf::math {

/// One example's loss and its derivative with respect to the example's scalar argument.
template <class T>
struct loss_and_slope {
  T loss;
  T slope;
};

/// Bradley–Terry term −log σ(x), x = r_better − r_worse − margin, and d/dx = −σ(−x).
/// Finite for every finite x: x = −1e4 gives (1e4, −1).
template <class T>
RLHF_HOST_DEVICE inline loss_and_slope<T> bradley_terry(T x) noexcept {
  return {-log_sigmoid(x), -sigmoid(-x)};
}

/// The same term written as OpenRLHF's LogExpLoss, log(1 + e^y) with y = r_worse − r_better
/// (+ margin), evaluated as the stable softplus; returns d/dy = σ(y). Equal to
/// bradley_terry(−y) up to rounding.
template <class T>
RLHF_HOST_DEVICE inline loss_and_slope<T> log_one_plus_exp(T y) noexcept {
  return {softplus(y), sigmoid(y)};
}

/// DPO sigmoid loss with label smoothing ε (cDPO; ε = 0 is plain DPO), as a function of the
/// logit z = (π_c − π_r) − (ref_c − ref_r):
///   L = −(1 − ε)·log σ(βz) − ε·log σ(−βz),   dL/dz = −β(1 − ε)·σ(−βz) + βε·σ(βz).
template <class T>
RLHF_HOST_DEVICE inline loss_and_slope<T> dpo_sigmoid(T z, T beta, T epsilon) noexcept {
  const T x = beta * z;
  return {-log_sigmoid(x) * (T(1) - epsilon) - log_sigmoid(-x) * epsilon,
          -beta * (T(1) - epsilon) * sigmoid(-x) + beta * epsilon * sigmoid(x)};
}

/// Robust DPO (Chowdhury et al. 2024, TRL v0.11.4 "robust"), ε < 1/2:
///   L = (−(1 − ε)·log σ(βz) + ε·log σ(−βz)) / (1 − 2ε),
///   dL/dz = (−β(1 − ε)·σ(−βz) − βε·σ(βz)) / (1 − 2ε).
/// Unbounded below as βz → −∞ when ε > 0 (the reference's behaviour, kept).
template <class T>
RLHF_HOST_DEVICE inline loss_and_slope<T> dpo_robust(T z, T beta, T epsilon) noexcept {
  const T x = beta * z;
  const T denominator = T(1) - T(2) * epsilon;
  return {(-log_sigmoid(x) * (T(1) - epsilon) + log_sigmoid(-x) * epsilon) / denominator,
          (-beta * (T(1) - epsilon) * sigmoid(-x) - beta * epsilon * sigmoid(x)) / denominator};
}

/// IPO (Azar et al. 2023): L = (z − 1/(2β))², dL/dz = 2(z − 1/(2β)).
template <class T>
RLHF_HOST_DEVICE constexpr loss_and_slope<T> dpo_ipo(T z, T beta) noexcept {
  const T d = z - T(1) / (T(2) * beta);
  return {d * d, T(2) * d};
}

/// Hinge (SLiC): L = max(0, 1 − βz), dL/dz = −β where 1 − βz > 0, else 0 (0 at the kink, as
/// PyTorch's relu).
template <class T>
RLHF_HOST_DEVICE constexpr loss_and_slope<T> dpo_hinge(T z, T beta) noexcept {
  const T h = T(1) - beta * z;
  return h > T(0) ? loss_and_slope<T>{h, -beta} : loss_and_slope<T>{T(0), T(0)};
}

static_assert(dpo_ipo(5.0, 0.1).loss == 0.0);
static_assert(dpo_ipo(7.0, 0.1).slope == 4.0);
static_assert(dpo_hinge(0.0, 0.5).loss == 1.0 && dpo_hinge(0.0, 0.5).slope == -0.5);
static_assert(dpo_hinge(2.0, 0.5).loss == 0.0 && dpo_hinge(2.0, 0.5).slope == 0.0);  // the kink
static_assert(dpo_hinge(4.0, 0.5).loss == 0.0 && dpo_hinge(4.0, 0.5).slope == 0.0);

/// One pair of the pairwise reward-model loss: the loss and d(loss)/d(chosen) (the rejected
/// slope is its negative). `log_exp_form` evaluates log(1 + e^{(r − c) + m}) (the form some
/// anchors write) instead of −log σ((c − r) − m); both are the same function.
template <class T>
RLHF_HOST_DEVICE inline loss_and_slope<T> pairwise_term(T chosen, T rejected, T margin, bool log_exp_form) noexcept {
  if (log_exp_form) {
    const auto term = log_one_plus_exp((rejected - chosen) + margin);
    return {term.loss, -term.slope};
  }
  return bradley_terry((chosen - rejected) - margin);
}

}  // namespace rlhf::math
