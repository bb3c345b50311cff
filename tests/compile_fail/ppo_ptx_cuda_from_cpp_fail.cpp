// The PPO-ptx objective has no CUDA kernel yet; from a host compiler the cuda_backend overload
// says it needs nvcc (under nvcc: "is not implemented for the CUDA backend yet").
#include <rlhf/ppo_ptx.hpp>

void call_cuda_from_host_compiler(const rlhf::ppo_ptx_inputs<float>& inputs,
                                  const rlhf::ppo_ptx_gradients<float>& gradients) {
  // expected-error "rlhf::ppo_ptx_loss\(cuda_backend, \.\.\.\) needs nvcc"
  rlhf::ppo_ptx_loss(rlhf::cuda_backend{}, inputs, gradients);
}
