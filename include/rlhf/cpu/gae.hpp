// rlhf/cpu/gae.hpp — reference CPU implementation of GAE and discounted returns.
// Included by <rlhf/gae.hpp>; arguments are already checked there.
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/detail/parallel.hpp>
#include <rlhf/math/gae.hpp>
#include <rlhf/tensor_view.hpp>

#include <cstddef>

namespace rlhf::cpu_impl {

/// Rows [begin, end): the backward recursion over all T positions, with rewards and values
/// multiplied by the mask first (V_T = 0), as every anchor does.
template <class T>
void gae_rows(matrix_view<const T> rewards, matrix_view<const T> values, mask_view mask,
              matrix_view<T> advantages, matrix_view<T> returns, T gamma, T gamma_lambda,
              std::ptrdiff_t begin, std::ptrdiff_t end) noexcept {
  const std::ptrdiff_t n_tokens = rewards.extent(1);
  const bool masked = !mask.empty();
  for (std::ptrdiff_t b = begin; b < end; ++b) {
    T next_value = T(0);
    T next_advantage = T(0);
    for (std::ptrdiff_t t = n_tokens - 1; t >= 0; --t) {
      const bool valid = !masked || mask(b, t) != 0;
      const T value = valid ? values(b, t) : T(0);
      const T reward = valid ? rewards(b, t) : T(0);
      const T advantage = math::gae_step(reward, value, next_value, next_advantage, gamma, gamma_lambda);
      advantages(b, t) = advantage;
      returns(b, t) = advantage + value;
      next_value = value;
      next_advantage = advantage;
    }
  }
}

template <class T>
void gae(const cpu_backend& backend, matrix_view<const T> rewards, matrix_view<const T> values,
         mask_view mask, matrix_view<T> advantages, matrix_view<T> returns, T gamma,
         T gamma_lambda) {
  detail::parallel_for(
      backend, rewards.extent(0),
      [&](std::ptrdiff_t begin, std::ptrdiff_t end) {
        gae_rows(rewards, values, mask, advantages, returns, gamma, gamma_lambda, begin, end);
      },
      /*min_per_thread=*/8);
}

template <class T>
void discounted_returns(const cpu_backend& backend, matrix_view<const T> rewards, mask_view mask,
                        matrix_view<T> returns, T gamma) {
  const std::ptrdiff_t n_tokens = rewards.extent(1);
  const bool masked = !mask.empty();
  detail::parallel_for(
      backend, rewards.extent(0),
      [&](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t b = begin; b < end; ++b) {
          T next_return = T(0);
          for (std::ptrdiff_t t = n_tokens - 1; t >= 0; --t) {
            const T reward = (!masked || mask(b, t) != 0) ? rewards(b, t) : T(0);
            next_return = math::discounted_return_step(reward, next_return, gamma);
            returns(b, t) = next_return;
          }
        }
      },
      /*min_per_thread=*/8);
}

}  // namespace rlhf::cpu_impl
