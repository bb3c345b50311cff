// B3 — the PPO-ptx objective, forward + gradients (docs/performance.md): one call of
// rlhf::ppo_ptx_loss on a rollout [B, T] ∈ {8×128, 64×1024} plus a pretraining batch of 8×128
// tokens, float, every row right-padded by round(0.1·T) tokens (as B1), with the defaults
// (ε = 0.2, value clip 0.2, vf_coef 0.1, ptx_coef 27.8, token-mean reductions) and a k3 KL term
// in the loss (kl_loss_coef = 0.01, OpenRLHF `use_kl_loss`). Gradients dlogp, dvalues and
// dptx_logp are written every call; buffers are allocated once outside the timed loop.
//
//   items/s = B·T rollout tokens/s. bytes = the compulsory traffic: per rollout token logp,
//   old_logp, advantages, ref_logp, values, old_values, returns (read, 4 B each), the mask
//   (1 B, read by the policy and by the value part: 2 B), dlogp, dvalues (written, 4 B each)
//   = 38 B; per ptx token ptx_logp, mask, dptx_logp = 9 B. ws_bytes = the distinct data
//   (37 B a rollout token + 9 B a ptx token).
#include <rlhf/ppo_ptx.hpp>
#include <rlhf/rng.hpp>
#include <rlhf/tensor.hpp>

#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace {

constexpr std::int64_t ptx_rows = 8, ptx_cols = 128;

std::vector<std::uint8_t> right_padded(std::int64_t b, std::int64_t t) {
  std::vector<std::uint8_t> m(static_cast<std::size_t>(b * t));
  const std::int64_t valid = t - static_cast<std::int64_t>(std::lround(0.1 * static_cast<double>(t)));
  for (std::int64_t r = 0; r < b; ++r)
    for (std::int64_t c = 0; c < t; ++c) m[static_cast<std::size_t>(r * t + c)] = c < valid ? 1 : 0;
  return m;
}

struct ppo_ptx_data {
  std::int64_t rows, cols;
  rlhf::tensor<float, 2> logp, old_logp, advantages, ref_logp, values, old_values, returns, dlogp, dvalues;
  rlhf::tensor<float, 2> ptx_logp, dptx_logp;
  std::vector<std::uint8_t> mask, ptx_mask;

  ppo_ptx_data(std::int64_t b, std::int64_t t)
      : rows(b), cols(t), logp(b, t), old_logp(b, t), advantages(b, t), ref_logp(b, t), values(b, t),
        old_values(b, t), returns(b, t), dlogp(b, t), dvalues(b, t), ptx_logp(ptx_rows, ptx_cols),
        dptx_logp(ptx_rows, ptx_cols), mask(right_padded(b, t)), ptx_mask(right_padded(ptx_rows, ptx_cols)) {
    rlhf::rng gen{{.seed = 7}};
    for (std::int64_t i = 0; i < b * t; ++i) {
      const float old = -std::abs(gen.normal<float>()) - 0.1f;  // log-probabilities of sampled tokens
      old_logp.data()[i] = old;
      logp.data()[i] = old + 0.1f * gen.normal<float>();  // ratios around 1, some clipped
      ref_logp.data()[i] = old + 0.05f * gen.normal<float>();
      advantages.data()[i] = gen.normal<float>();
      old_values.data()[i] = gen.normal<float>();
      values.data()[i] = old_values.data()[i] + 0.2f * gen.normal<float>();
      returns.data()[i] = gen.normal<float>();
    }
    for (std::int64_t i = 0; i < ptx_rows * ptx_cols; ++i) ptx_logp.data()[i] = -2.0f * std::abs(gen.normal<float>());
  }
};

void BM_ppo_ptx_cpu(benchmark::State& state) {
  const std::int64_t b = state.range(0), t = state.range(1);
  const int threads = static_cast<int>(state.range(2));
  ppo_ptx_data x(b, t);
  const rlhf::mask_view mask(x.mask.data(), b, t), ptx_mask(x.ptx_mask.data(), ptx_rows, ptx_cols);
  const rlhf::ppo_ptx_inputs<float> in{
      .policy = {.logp = x.logp, .old_logp = x.old_logp, .advantages = x.advantages, .mask = mask},
      .value = {.values = x.values, .old_values = x.old_values, .returns = x.returns, .mask = mask},
      .ptx_logp = x.ptx_logp,
      .ptx_mask = ptx_mask,
      .ref_logp = x.ref_logp};
  const rlhf::ppo_ptx_gradients<float> grads{.dlogp = x.dlogp, .dvalues = x.dvalues, .dptx_logp = x.dptx_logp};
  const rlhf::ppo_ptx_options options{.vf_coef = 0.1, .ptx_coef = 27.8, .kl_loss_coef = 0.01};
  const rlhf::cpu_backend backend{.threads = threads};
  for (auto _ : state) {
    auto stats = rlhf::ppo_ptx_loss(backend, in, grads, options);
    benchmark::DoNotOptimize(stats);
    benchmark::DoNotOptimize(x.dlogp.data());
    benchmark::ClobberMemory();
  }
  const double tokens = static_cast<double>(b * t), ptx_tokens = static_cast<double>(ptx_rows * ptx_cols);
  const double bytes = tokens * 38 + ptx_tokens * 9;
  state.SetItemsProcessed(state.iterations() * b * t);
  state.SetBytesProcessed(static_cast<std::int64_t>(static_cast<double>(state.iterations()) * bytes));
  state.counters["tokens"] = tokens;
  state.counters["bytes"] = bytes;
  state.counters["ws_bytes"] = tokens * 37 + ptx_tokens * 9;
  state.SetLabel("variant=ppo_ptx shape=" + std::to_string(b) + "x" + std::to_string(t) +
                 " threads=" + std::to_string(threads) + " limit=triad_bw");
}
BENCHMARK(BM_ppo_ptx_cpu)->ArgNames({"B", "T", "threads"})->Args({8, 128, 1})->Args({64, 1024, 1})->Args({8, 128, 2})->Args({64, 1024, 2})->UseRealTime();

}  // namespace
