// rlhf/cuda/gae.cuh — CUDA backend of <rlhf/gae.hpp>: one thread per row runs the same backward
// recursion as the CPU reference, calling math::gae_step, so both backends share one formula.
#pragma once
#if !defined(__CUDACC__)
#error "<rlhf/cuda/gae.cuh> needs nvcc: include <rlhf/gae.hpp> from a .cu file"
#endif

#include <rlhf/gae.hpp>  // the public contract (gae_options, checks); it includes this file back
#include <rlhf/backend.hpp>
#include <rlhf/cuda/error.cuh>
#include <rlhf/math/gae.hpp>
#include <rlhf/tensor_view.hpp>

#include <cuda_runtime.h>

namespace rlhf {
namespace cuda_impl {

template <class T>
__global__ void gae_kernel(device_view<const T, 2> rewards, device_view<const T, 2> values,
                           device_view<const std::uint8_t, 2> mask, device_view<T, 2> advantages,
                           device_view<T, 2> returns, T gamma, T gamma_lambda) {
  const std::ptrdiff_t b = static_cast<std::ptrdiff_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= rewards.extent(0)) return;
  const bool masked = !mask.empty();
  T next_value = T(0), next_advantage = T(0);
  for (std::ptrdiff_t t = rewards.extent(1) - 1; t >= 0; --t) {
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

template <class T>
void gae(const cuda_backend& backend, device_view<const T, 2> rewards,
         device_view<const T, 2> values, device_view<const std::uint8_t, 2> mask,
         device_view<T, 2> advantages, device_view<T, 2> returns, T gamma, T gamma_lambda) {
  constexpr int threads = 128;
  const auto rows = rewards.extent(0);
  const unsigned blocks = static_cast<unsigned>((rows + threads - 1) / threads);
  gae_kernel<T><<<blocks, threads, 0, backend.stream>>>(rewards, values, mask, advantages, returns,
                                                       gamma, gamma_lambda);
  check_launch("rlhf::gae(cuda_backend)");
}

}  // namespace cuda_impl

/// GAE on the GPU: the same contract as the CPU overload, with device views, enqueued on
/// backend.stream (asynchronous: synchronise the stream before reading the outputs).
/// Included at the end of <rlhf/gae.hpp>, so gae_options and the checks are complete here.
inline void gae(const cuda_backend& backend, device_view<const float, 2> rewards,
                device_view<const float, 2> values, device_view<const std::uint8_t, 2> mask,
                device_view<float, 2> advantages, device_view<float, 2> returns,
                const gae_options& options = {}) {
  constexpr const char* function = "rlhf::gae()";
  detail::check_gae_shapes(function, rewards, values, mask);
  detail::require_same_shape(function, "rewards", rewards, "advantages", advantages);
  detail::require_same_shape(function, "rewards", rewards, "returns", returns);
  detail::check_discount(function, "gamma", options.gamma);
  detail::check_discount(function, "lambda", options.lambda);
  cuda_impl::gae<float>(backend, rewards, values, mask, advantages, returns,
                        static_cast<float>(options.gamma),
                        static_cast<float>(options.gamma * options.lambda));
}

}  // namespace rlhf
