// rlhf/cpu/kl.hpp — reference CPU implementation of the KL estimators, their derivative, the
// full-distribution KL and the sequence summaries. Included by <rlhf/kl.hpp>; arguments are
// already checked there.
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/detail/parallel.hpp>
#include <rlhf/math/kl.hpp>
#include <rlhf/math/stable.hpp>
#include <rlhf/tensor_view.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace rlhf::cpu_impl {

/// The estimator's settings after checking, in the form the loops use.
struct kl_settings {
  kl_estimator estimator = kl_estimator::k1;
  bool clamp = false;
  double clamp_value = 0.0;  ///< bounds ±clamp_value when clamp is set
  bool float32 = false;      ///< kl_precision::float32
  bool mask_before_transform = false;
};

/// The estimate for one token, computed in C (T or float): math::kl_token, shared with the
/// CUDA backend.
template <class C>
C kl_value(const kl_settings& s, C log_ratio, bool valid) noexcept {
  return math::kl_token<C>(s.estimator, s.clamp, static_cast<C>(s.clamp_value), log_ratio, valid);
}

/// d estimate / d logp for one token (math::kl_token_derivative); 0 where the clamp is active.
template <class C>
C kl_derivative(const kl_settings& s, C log_ratio) noexcept {
  return math::kl_token_derivative<C>(s.estimator, s.clamp, static_cast<C>(s.clamp_value), log_ratio);
}

template <class C, class T>
void kl_estimate_rows(const kl_settings& s, matrix_view<const T> logp, matrix_view<const T> ref,
                      mask_view mask, matrix_view<T> out, std::ptrdiff_t begin,
                      std::ptrdiff_t end) noexcept {
  const std::ptrdiff_t cols = logp.extent(1);
  const bool masked = !mask.empty();
  for (std::ptrdiff_t b = begin; b < end; ++b)
    for (std::ptrdiff_t t = 0; t < cols; ++t) {
      const bool valid = !masked || mask(b, t) != 0;
      if (!valid && !s.mask_before_transform) {
        out(b, t) = T(0);
        continue;
      }
      const C log_ratio = static_cast<C>(logp(b, t)) - static_cast<C>(ref(b, t));
      out(b, t) = static_cast<T>(kl_value<C>(s, log_ratio, valid));
    }
}

template <class T>
void kl_estimate(const cpu_backend& backend, matrix_view<const T> logp, matrix_view<const T> ref,
                 mask_view mask, matrix_view<T> out, const kl_settings& s) {
  detail::parallel_for(
      backend, logp.extent(0),
      [&](std::ptrdiff_t begin, std::ptrdiff_t end) {
        if (s.float32)
          kl_estimate_rows<float>(s, logp, ref, mask, out, begin, end);
        else
          kl_estimate_rows<T>(s, logp, ref, mask, out, begin, end);
      },
      /*min_per_thread=*/8);
}

template <class C, class T>
void kl_backward_rows(const kl_settings& s, matrix_view<const T> logp, matrix_view<const T> ref,
                      mask_view mask, matrix_view<const T> grad_kl, matrix_view<T> grad_logp,
                      bool accumulate, std::ptrdiff_t begin, std::ptrdiff_t end) noexcept {
  const std::ptrdiff_t cols = logp.extent(1);
  const bool masked = !mask.empty();
  for (std::ptrdiff_t b = begin; b < end; ++b)
    for (std::ptrdiff_t t = 0; t < cols; ++t) {
      T g = T(0);
      if (!masked || mask(b, t) != 0) {
        const C log_ratio = static_cast<C>(logp(b, t)) - static_cast<C>(ref(b, t));
        g = static_cast<T>(static_cast<C>(grad_kl(b, t)) * kl_derivative<C>(s, log_ratio));
      }
      grad_logp(b, t) = accumulate ? grad_logp(b, t) + g : g;
    }
}

template <class T>
void kl_estimate_backward(const cpu_backend& backend, matrix_view<const T> logp,
                          matrix_view<const T> ref, mask_view mask, matrix_view<const T> grad_kl,
                          matrix_view<T> grad_logp, const kl_settings& s, bool accumulate) {
  detail::parallel_for(
      backend, logp.extent(0),
      [&](std::ptrdiff_t begin, std::ptrdiff_t end) {
        if (s.float32)
          kl_backward_rows<float>(s, logp, ref, mask, grad_kl, grad_logp, accumulate, begin, end);
        else
          kl_backward_rows<T>(s, logp, ref, mask, grad_kl, grad_logp, accumulate, begin, end);
      },
      /*min_per_thread=*/8);
}

/// out(b, t) = Σ_v e^{logp}(logp − ref) accumulated in double; 0 on masked positions.
template <class T>
void full_kl(const cpu_backend& backend, cube_view<const T> logp, cube_view<const T> ref,
             mask_view mask, matrix_view<T> out) {
  const std::ptrdiff_t cols = logp.extent(1), vocab = logp.extent(2);
  const bool masked = !mask.empty();
  detail::parallel_for(
      backend, logp.extent(0),
      [&](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t b = begin; b < end; ++b)
          for (std::ptrdiff_t t = 0; t < cols; ++t) {
            if (masked && mask(b, t) == 0) {
              out(b, t) = T(0);
              continue;
            }
            double sum = 0.0;
            for (std::ptrdiff_t v = 0; v < vocab; ++v)
              sum += math::full_kl_term(static_cast<double>(logp(b, t, v)),
                                        static_cast<double>(ref(b, t, v)));
            out(b, t) = static_cast<T>(sum);
          }
      },
      /*min_per_thread=*/2);
}

/// Per row: Σ_valid kl and the number of valid tokens, in double.
template <class T>
void kl_row_sums(const cpu_backend& backend, matrix_view<const T> kl, mask_view mask,
                 std::vector<double>& sums, std::vector<std::int64_t>& counts) {
  const std::ptrdiff_t rows = kl.extent(0), cols = kl.extent(1);
  const bool masked = !mask.empty();
  sums.assign(static_cast<std::size_t>(rows), 0.0);
  counts.assign(static_cast<std::size_t>(rows), 0);
  detail::parallel_for(
      backend, rows,
      [&](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t b = begin; b < end; ++b) {
          double sum = 0.0;
          std::int64_t count = 0;
          for (std::ptrdiff_t t = 0; t < cols; ++t) {
            if (masked && mask(b, t) == 0) continue;
            sum += static_cast<double>(kl(b, t));
            ++count;
          }
          sums[static_cast<std::size_t>(b)] = sum;
          counts[static_cast<std::size_t>(b)] = count;
        }
      },
      /*min_per_thread=*/8);
}

}  // namespace rlhf::cpu_impl
