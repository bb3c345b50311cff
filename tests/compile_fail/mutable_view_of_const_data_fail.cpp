// A mutable view never binds to const data: constness lives in the element type.
#include <rlhf/tensor_view.hpp>

rlhf::matrix_view<float> make_mutable(rlhf::matrix_view<const float> readonly) {
  // expected-error "could not convert|no viable conversion|cannot convert"
  return readonly;
}
