// Advantages and returns for a right-padded batch of two responses, the way a PPO loop calls it.
#include <rlhf/gae.hpp>
#include <rlhf/tensor.hpp>

#include <cstdio>

int main() {
  const int B = 2, T = 4;
  rlhf::tensor<float, 2> rewards(B, T), values(B, T), advantages(B, T), returns(B, T);
  rlhf::tensor<std::uint8_t, 2> mask(B, T);
  const int lengths[B] = {4, 2};  // row 1 is padded after two tokens
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < lengths[b]; ++t) {
      mask(b, t) = 1;
      values(b, t) = 0.5f;
      rewards(b, t) = (t == lengths[b] - 1) ? 1.0f : -0.01f;  // score at the last token, −β·KL before
    }
  rlhf::gae(rlhf::cpu, rewards, values, mask, advantages, returns, {.gamma = 1.0, .lambda = 0.95});
  for (int b = 0; b < B; ++b) {
    std::printf("row %d  A:", b);
    for (int t = 0; t < T; ++t) std::printf(" %+.4f", advantages(b, t));
    std::printf("   R:");
    for (int t = 0; t < T; ++t) std::printf(" %.4f", returns(b, t));
    std::printf("\n");
  }
}
