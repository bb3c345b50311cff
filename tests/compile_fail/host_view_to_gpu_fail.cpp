// A device view does not convert to a host view (or back): memory space is part of the type.
#include <rlhf/tensor_view.hpp>

rlhf::matrix_view<const float> as_host(rlhf::device_view<const float, 2> on_gpu) {
  // expected-error "could not convert|no viable conversion|cannot convert"
  return on_gpu;
}
