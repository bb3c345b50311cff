// GPU parity for <rlhf/gae.hpp>: the CUDA overload against the CPU reference on the same inputs.
#include <rlhf/gae.hpp>

#include <doctest/doctest.h>

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <vector>

namespace {
template <class T>
T* to_device(const std::vector<T>& host) {
  T* p = nullptr;
  REQUIRE(cudaMalloc(&p, host.size() * sizeof(T)) == cudaSuccess);
  REQUIRE(cudaMemcpy(p, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess);
  return p;
}
}  // namespace

TEST_CASE("gae (cuda): equals the CPU reference on a right-padded batch") {
  const int rows = 300, n_tokens = 129;
  std::vector<float> rewards(rows * n_tokens), values(rows * n_tokens);
  std::vector<std::uint8_t> mask(rows * n_tokens);
  for (int i = 0; i < rows * n_tokens; ++i) {
    rewards[i] = std::sin(0.37f * i);
    values[i] = std::cos(0.11f * i);
    mask[i] = (i % n_tokens) < n_tokens - (i / n_tokens) % 17 ? 1 : 0;
  }
  std::vector<float> adv(rows * n_tokens), ret(rows * n_tokens);
  rlhf::gae(rlhf::cpu, rlhf::matrix_view<const float>(rewards.data(), rows, n_tokens),
            rlhf::matrix_view<const float>(values.data(), rows, n_tokens),
            rlhf::mask_view(mask.data(), rows, n_tokens), rlhf::matrix_view<float>(adv.data(), rows, n_tokens),
            rlhf::matrix_view<float>(ret.data(), rows, n_tokens));

  float* d_rewards = to_device(rewards);
  float* d_values = to_device(values);
  std::uint8_t* d_mask = to_device(mask);
  float* d_adv = to_device(adv);
  float* d_ret = to_device(ret);
  rlhf::gae(rlhf::cuda_backend{}, rlhf::device_view<const float, 2>(d_rewards, rows, n_tokens),
            rlhf::device_view<const float, 2>(d_values, rows, n_tokens),
            rlhf::device_view<const std::uint8_t, 2>(d_mask, rows, n_tokens),
            rlhf::device_view<float, 2>(d_adv, rows, n_tokens), rlhf::device_view<float, 2>(d_ret, rows, n_tokens));
  REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
  std::vector<float> gpu_adv(adv.size()), gpu_ret(ret.size());
  REQUIRE(cudaMemcpy(gpu_adv.data(), d_adv, adv.size() * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess);
  REQUIRE(cudaMemcpy(gpu_ret.data(), d_ret, ret.size() * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess);
  // Same formula, same order of operations: equal up to FMA contraction (a few ulp).
  for (std::size_t i = 0; i < adv.size(); ++i) {
    CHECK(std::fabs(gpu_adv[i] - adv[i]) <= 1e-5f + 1e-5f * std::fabs(adv[i]));
    CHECK(std::fabs(gpu_ret[i] - ret[i]) <= 1e-5f + 1e-5f * std::fabs(ret[i]));
  }
  for (void* p : {(void*)d_rewards, (void*)d_values, (void*)d_mask, (void*)d_adv, (void*)d_ret}) cudaFree(p);
}
