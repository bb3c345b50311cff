// A type that is not a Policy is rejected with the failing requirement named.
#include <rlhf/concepts.hpp>

struct not_a_policy {
  using scalar_type = float;
};

template <rlhf::Policy P>
void train(P&) {}

void f(not_a_policy& p) {
  // expected-error "constraints not satisfied|the required expression"
  train(p);
}
