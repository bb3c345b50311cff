// The InstructGPT recipe's pieces on one small batch, in the order a training run uses them:
// the reward model's K-wise ranking loss, its head and normalisation, then one PPO-ptx step's
// worth of per-token work (KL penalty, rewards, GAE, whitening, the PPO-ptx objective and its
// gradients, the adaptive KL controller), and DPO as the offline alternative. The model outputs
// (hidden states, log-probs, values) are synthetic, drawn from a seeded generator, so every
// number printed is reproducible.
#include <rlhf/dpo.hpp>
#include <rlhf/gae.hpp>
#include <rlhf/kl.hpp>
#include <rlhf/kl_controller.hpp>
#include <rlhf/ppo_ptx.hpp>
#include <rlhf/preference_loss.hpp>
#include <rlhf/reward_head.hpp>
#include <rlhf/reward_shaping.hpp>
#include <rlhf/rng.hpp>
#include <rlhf/tensor.hpp>
#include <rlhf/whiten.hpp>

#include <cstdint>
#include <cstdio>

namespace {

constexpr int B = 4;  // responses in the rollout batch
constexpr int T = 8;  // response tokens (right-padded)
constexpr int D = 16;  // hidden width of the toy reward model

template <class Tensor>
void print_row(const char* name, const Tensor& x, int b) {
  std::printf("  %-10s", name);
  for (int t = 0; t < T; ++t) std::printf(" %+8.4f", static_cast<double>(x(b, t)));
  std::printf("\n");
}

}  // namespace

int main() {
  rlhf::rng gen{{.seed = 2022}};

  // --- Stage 2: the reward model -------------------------------------------------------------
  // Two prompts, ranked completions (K = 4 and K = 3), rewards listed best first. The paper
  // trains on all C(K, 2) pairs of a prompt as one batch element.
  std::printf("reward model: K-wise ranking loss (InstructGPT eq. 1)\n");
  float rewards_data[7] = {1.2f, 0.4f, 0.5f, -0.9f, 0.3f, 0.1f, -0.2f};
  std::ptrdiff_t offsets_data[3] = {0, 4, 7};
  float drewards_data[7] = {};
  float prompt_loss_data[2] = {};
  const auto ranking = rlhf::kwise_ranking_loss(
      rlhf::cpu, rlhf::vector_view<const float>(rewards_data, 7),
      rlhf::vector_view<const std::ptrdiff_t>(offsets_data, 3), {}, rlhf::vector_view<float>(drewards_data, 7),
      rlhf::vector_view<float>(prompt_loss_data, 2));
  std::printf("  loss %.6f  pair accuracy %.4f  pairs %lld  per-prompt %.6f %.6f\n", ranking.loss,
              ranking.accuracy, static_cast<long long>(ranking.pairs), prompt_loss_data[0], prompt_loss_data[1]);
  std::printf("  d loss / d r:");
  for (float g : drewards_data) std::printf(" %+.4f", static_cast<double>(g));
  std::printf("\n");

  // The scalar head reads the final hidden state at each response's explicit end index.
  rlhf::tensor<float, 3> hidden(B, T, D);
  for (std::ptrdiff_t i = 0; i < hidden.size(); ++i) hidden.data()[i] = gen.normal<float>();
  rlhf::tensor<float, 1> head_weight(D), head_bias(1), scores(B);
  rlhf::init_head(gen, head_weight, head_bias);  // N(0, 1/sqrt(D + 1)), bias 0
  rlhf::tensor<std::uint8_t, 2> mask(B, T);
  const int lengths[B] = {8, 5, 3, 6};
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < lengths[b]; ++t) mask(b, t) = 1;
  rlhf::tensor<std::ptrdiff_t, 1> end_index(B);
  rlhf::last_valid_index(rlhf::cpu, mask, end_index);
  rlhf::reward_head_forward(rlhf::cpu, hidden, head_weight, head_bias, end_index, scores);
  // Normalise so that (here: these) demonstrations score mean 0, as the paper does before RL.
  const rlhf::reward_normalizer norm = rlhf::fit_bias_to_demonstrations(scores.view());
  std::printf("reward head: scores at end_index");
  for (int b = 0; b < B; ++b) {
    scores(b) = static_cast<float>(norm.gain * scores(b) + norm.bias);
    std::printf("  [%td] %+.4f", end_index(b), static_cast<double>(scores(b)));
  }
  std::printf("   (bias %+.4f)\n", norm.bias);

  // --- Stage 3: one PPO-ptx step ---------------------------------------------------------------
  rlhf::tensor<float, 2> logp(B, T), ref_logp(B, T), values(B, T);
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t) {
      logp(b, t) = -1.0f - 0.5f * gen.uniform<float>();
      ref_logp(b, t) = logp(b, t) - 0.05f + 0.1f * gen.uniform<float>();
      values(b, t) = 0.1f * gen.normal<float>();
    }

  rlhf::kl_controller<rlhf::adaptive_kl> kl_ctl{{.init = 0.2, .target = 6.0, .horizon = 10'000}};
  rlhf::tensor<float, 2> rewards(B, T), kl(B, T), advantages(B, T), returns(B, T);
  const auto shaping = rlhf::shape_rewards(
      rlhf::cpu, {.logp = logp, .ref_logp = ref_logp, .scores = scores, .end_index = end_index, .mask = mask},
      {.rewards = rewards, .kl = kl}, {.beta = kl_ctl.value()});
  rlhf::gae(rlhf::cpu, rewards, values, mask, advantages, returns, {.gamma = 1.0, .lambda = 0.95});
  rlhf::whiten(rlhf::cpu, advantages, mask, advantages);  // masked, population variance, padding → 0

  std::printf("ppo: per-token rewards (−β·KL, score at the end), whitened advantages, returns\n");
  for (int b = 0; b < B; ++b) {
    std::printf(" response %d (%d tokens)\n", b, lengths[b]);
    print_row("reward", rewards, b);
    print_row("advantage", advantages, b);
    print_row("return", returns, b);
  }
  std::printf("  mean KL (sum over tokens) %.6f  mean score %.6f  mean total reward %.6f\n",
              shaping.mean_kl_sum, shaping.mean_score, shaping.mean_total_reward);

  // The policy after an update: log-probs moved a little; the value head moved too.
  rlhf::tensor<float, 2> new_logp(B, T), new_values(B, T), ptx_logp(2, T);
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t) {
      new_logp(b, t) = logp(b, t) + 0.3f * (gen.uniform<float>() - 0.5f);
      new_values(b, t) = values(b, t) + 0.2f * (gen.uniform<float>() - 0.5f);
    }
  rlhf::tensor<std::uint8_t, 2> ptx_mask(2, T);
  for (int b = 0; b < 2; ++b)
    for (int t = 0; t < T; ++t) {
      ptx_logp(b, t) = -2.0f - gen.uniform<float>();  // pretraining tokens under the policy
      ptx_mask(b, t) = 1;
    }
  rlhf::tensor<float, 2> dlogp(B, T), dvalues(B, T), dptx_logp(2, T);
  const auto step = rlhf::ppo_ptx_loss(
      rlhf::cpu,
      {.policy = {.logp = new_logp, .old_logp = logp, .advantages = advantages, .mask = mask},
       .value = {.values = new_values, .old_values = values, .returns = returns, .mask = mask},
       .ptx_logp = ptx_logp,
       .ptx_mask = ptx_mask},
      {.dlogp = dlogp, .dvalues = dvalues, .dptx_logp = dptx_logp},
      {.vf_coef = 0.1, .ptx_coef = 27.8});
  std::printf("ppo-ptx objective: total %.6f = policy %.6f + 0.1 x value %.6f + 27.8 x ptx %.6f\n",
              static_cast<double>(step.loss), static_cast<double>(step.policy.loss),
              static_cast<double>(step.value.loss), static_cast<double>(step.ptx_loss));
  std::printf("  clipfrac %.4f  approx_kl %.6f  ratio mean %.6f  value clipfrac %.4f  explained variance %.4f\n",
              static_cast<double>(step.policy.clipfrac), static_cast<double>(step.policy.approx_kl),
              static_cast<double>(step.policy.ratio_mean), static_cast<double>(step.value.clipfrac),
              static_cast<double>(step.value.explained_variance));
  print_row("d/d logp", dlogp, 0);
  print_row("d/d value", dvalues, 0);
  std::printf("  d/d ptx logp %+.6f per pretraining token\n", static_cast<double>(dptx_logp(0, 0)));

  const rlhf::kl_update update = kl_ctl.update(shaping.mean_kl_sum, /*n_steps=*/B);
  std::printf("kl controller: observed %.6f, error %+.4f, beta %.8f -> %.8f\n", update.observed_kl,
              update.error, 0.2, update.value);

  // --- The offline alternative: DPO on pairs of summed sequence log-probs --------------------
  float pc[B] = {-12.0f, -20.5f, -7.25f, -15.0f}, pr[B] = {-14.0f, -19.0f, -9.0f, -15.5f};
  float rc[B] = {-12.5f, -20.0f, -8.0f, -15.25f}, rr[B] = {-13.5f, -19.5f, -8.5f, -15.25f};
  float dpc[B] = {}, dpr[B] = {};
  const auto dpo = rlhf::dpo_loss(
      rlhf::cpu,
      {.policy_chosen = rlhf::vector_view<const float>(pc, B), .policy_rejected = rlhf::vector_view<const float>(pr, B),
       .reference_chosen = rlhf::vector_view<const float>(rc, B),
       .reference_rejected = rlhf::vector_view<const float>(rr, B)},
      {.dpolicy_chosen = rlhf::vector_view<float>(dpc, B), .dpolicy_rejected = rlhf::vector_view<float>(dpr, B)},
      {.beta = 0.1});
  std::printf("dpo (sigmoid, beta 0.1): loss %.6f  reward accuracy %.2f  margin %+.6f\n", dpo.loss,
              dpo.reward_accuracy, dpo.reward_margin);
  return 0;
}
