// B7 — one full PPO-ptx iteration of the tiny pipeline (docs/performance.md), through
// rlhf::train::ppo_trainer::step().
//
//   policy, reference, reward model, value model: the small GPT of B5 (L4, C256, H4, V50257;
//   rlhf::gpt with LM / reward / value heads, the value model initialised from the reward
//   model); 16 prompts × 64 prompt tokens; 64 new tokens a prompt sampled at temperature 1 with
//   the KV cache (no stop token: every row runs to 64); one PPO epoch of 4 minibatches of 4
//   rollouts; one ptx batch of 4 × 64 pretraining tokens per minibatch (γ = 27.8); AdamW
//   (lr 1e-5, β 0.9 / 0.95) for policy and value. The policy and the reference take the fused
//   linear path (rlhf::FusedLogProbs): the (B, T, V) logits are never materialised.
//
//   items/s = generated tokens per second of iteration (16 · 64 a call)
//   counters  t_generate, t_logprobs (old + reference log-probs), t_score (values + RM scores),
//             t_gae (rewards, GAE, whitening, KL controller), t_train (the PPO epoch with ptx):
//             seconds per iteration, from the trainer's time/<phase> metrics; frac_non_gemm =
//             t_gae / iteration (the phase made of no GEMM at all)
//   flops     matrix-multiply FLOPs of the iteration (approximate, as in B5), limit=fma
//
// The label carries the key `benchmarks/run` matches with benchmarks/peers/ppo_iteration_peer.py.
#include <rlhf/models/gpt.hpp>
#include <rlhf/optim/adamw.hpp>
#include <rlhf/train/ppo.hpp>

#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <vector>

namespace {

constexpr std::ptrdiff_t vocab = 50257, context = 1024, layers = 4, heads = 4, width = 256;
constexpr std::ptrdiff_t prompts = 16, prompt_tokens = 64, new_tokens = 64, minibatches = 4;
constexpr std::ptrdiff_t ptx_rows = 4, ptx_tokens = 64;

/// Matrix-multiply FLOPs of a forward over n tokens of sequences of length t, with or without
/// the unembedding (2 per multiply-add), as in B5.
double forward_flops(double n, double t, bool unembedding) {
  const double d = double(width), l = double(layers);
  return 2.0 * n * (l * 12.0 * d * d + (unembedding ? double(vocab) * d : 0.0) + l * 2.0 * t * d);
}

double iteration_flops() {
  const double L = double(prompt_tokens + new_tokens), rows = double(prompts);
  const double generate = forward_flops(rows * double(prompt_tokens), double(prompt_tokens), true) +
                          forward_flops(rows * double(new_tokens), 0.0, true);
  // old and reference log-probs: trunk over L, unembedding on the response rows only
  const double logprobs = 2.0 * (forward_flops(rows * L, L, false) + 2.0 * rows * double(new_tokens) * double(vocab * width));
  const double score = 2.0 * forward_flops(rows * L, L, false);
  const double train = 3.0 * (logprobs / 2.0) + 3.0 * forward_flops(rows * L, L, false) +
                       3.0 * forward_flops(double(minibatches * ptx_rows * ptx_tokens), double(ptx_tokens), true);
  return generate + logprobs + score + train;
}

void BM_ppo_iteration_cpu(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  const rlhf::cpu_backend backend{.threads = threads};
  const rlhf::gpt_config config{.vocab_size = vocab, .context = context, .layers = layers, .heads = heads,
                                .width = width, .seed = 1};
  rlhf::gpt policy(config, backend);
  rlhf::gpt reference = policy;
  rlhf::gpt reward = policy.with_head(rlhf::gpt_head::reward, 2);
  rlhf::gpt value = reward.with_head(rlhf::gpt_head::value);
  rlhf::adamw<float> policy_opt{{.lr = 1e-5, .beta1 = 0.9, .beta2 = 0.95}};
  rlhf::adamw<float> value_opt{{.lr = 1e-5, .beta1 = 0.9, .beta2 = 0.95}};

  rlhf::rng gen{{.seed = 7}};
  const auto random_text = [&](std::ptrdiff_t n) {
    rlhf::train::token_sequence s(static_cast<std::size_t>(n));
    for (auto& t : s) t = static_cast<rlhf::token_id>(gen.uniform_index(vocab));
    return s;
  };
  std::vector<rlhf::train::token_sequence> prompt_texts, ptx_texts;
  for (std::ptrdiff_t i = 0; i < prompts; ++i) prompt_texts.push_back(random_text(prompt_tokens));
  for (std::ptrdiff_t i = 0; i < minibatches * ptx_rows; ++i) ptx_texts.push_back(random_text(ptx_tokens));
  const auto prompt_batch = rlhf::train::make_prompt_batch(prompt_texts, 0);
  std::vector<rlhf::train::sequence_batch> ptx;
  for (std::ptrdiff_t m = 0; m < minibatches; ++m)
    ptx.push_back(rlhf::train::make_lm_batch(
        std::span<const rlhf::train::token_sequence>(ptx_texts).subspan(static_cast<std::size_t>(m * ptx_rows),
                                                                        static_cast<std::size_t>(ptx_rows)),
        0));

  rlhf::train::ppo_options options;
  options.generation = {.max_new_tokens = static_cast<int>(new_tokens), .temperature = 1.0};
  options.batch_size = static_cast<std::size_t>(prompts);
  options.minibatches = static_cast<std::size_t>(minibatches);
  options.ppo_epochs = 1;
  options.objective.ptx_coef = 27.8;
  options.seed = 3;
  options.backend = backend;
  rlhf::train::ppo_trainer trainer(policy, policy_opt, value, value_opt, reward, reference, options);

  const char* phases[] = {"time/generate", "time/reference", "time/score", "time/gae", "time/train"};
  const char* counters[] = {"t_generate", "t_logprobs", "t_score", "t_gae", "t_train"};
  double sums[5] = {0, 0, 0, 0, 0};
  double total = 0;
  std::int64_t calls = 0;
  for (auto _ : state) {
    rlhf::train::detail::stopwatch clock;
    const auto r = trainer.step(prompt_batch, ptx);
    total += clock.seconds();
    if (r.event) {
      state.SkipWithError(("non-finite " + r.event->tensor).c_str());
      break;
    }
    for (int i = 0; i < 5; ++i) sums[i] += r.stats.at(phases[i]);
    ++calls;
  }
  if (calls == 0) return;
  const double n = double(calls);
  for (int i = 0; i < 5; ++i) state.counters[counters[i]] = sums[i] / n;
  state.counters["frac_non_gemm"] = sums[3] / total;
  const double items = double(prompts * new_tokens);
  state.SetItemsProcessed(static_cast<std::int64_t>(double(state.iterations()) * items));
  state.counters["tokens"] = items;
  state.counters["flops"] = iteration_flops();
  state.counters["bytes"] = 0;
  state.counters["ws_bytes"] = 0;
  state.SetLabel("variant=ppo_iteration_small shape=" + std::to_string(prompts) + "x" + std::to_string(prompt_tokens) +
                 " threads=" + std::to_string(threads) + " limit=fma");
}
BENCHMARK(BM_ppo_iteration_cpu)->ArgNames({"threads"})->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
