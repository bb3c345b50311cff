// Uses the installed headers the way a user does; exits non-zero if the numbers are wrong.
#include <rlhf/gae.hpp>
#include <rlhf/tensor.hpp>

#include <cstdio>

int main() {
  rlhf::tensor<double, 2> rewards(1, 3), values(1, 3), advantages(1, 3), returns(1, 3);
  rewards(0, 2) = 1.0;
  rlhf::gae(rlhf::cpu, rewards, values, rlhf::mask_view{}, advantages, returns,
            {.gamma = 1.0, .lambda = 1.0});
  // γ = λ = 1 and V = 0: every advantage is the reward-to-go, 1.
  const bool ok = advantages(0, 0) == 1.0 && returns(0, 1) == 1.0;
  std::printf("consumer: %s\n", ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}
