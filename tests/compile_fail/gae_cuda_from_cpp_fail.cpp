// Calling a CUDA overload from a file that nvcc does not compile must say what to do.
#include <rlhf/gae.hpp>

void call_cuda_from_host_compiler(rlhf::device_view<const float, 2> rewards,
                                  rlhf::device_view<float, 2> out) {
  // expected-error "rlhf::gae\(cuda_backend, \.\.\.\) needs nvcc: call it from a \.cu file"
  rlhf::gae(rlhf::cuda_backend{}, rewards, rewards, rlhf::mask_view{}, out, out);
}
