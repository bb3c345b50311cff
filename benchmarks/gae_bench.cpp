// B1 — GAE advantages + returns, masked (docs/performance.md). One call of rlhf::gae on
// [B, T] float inputs, γ = 1, λ = 0.95, every row right-padded by round(0.1·T) tokens,
// buffers allocated once outside the timed loop.
//
//   BM_gae_cpu          rlhf::gae
//   BM_gae_whiten_cpu   rlhf::gae, then rlhf::whiten of the advantages in place with TRL 0.11's
//                       masked_whiten semantics (masked mean, unbiased variance, rsqrt(var + 1e-8),
//                       masked positions shifted like valid ones)
//
//   items/s = B·T tokens/s;  bytes/s counts 17 B a token for GAE: reward, value (read, 4 B each),
//   mask (1 B), advantage, return (written, 4 B each); whitening adds 14 B (moments: read
//   advantage + mask; apply: read advantage + mask, write advantage). Counter ws_bytes is the
//   working set (17 B a token for both), which picks the cache level of the bandwidth probe.
//
// The label carries the key `benchmarks/run` matches with the PyTorch peers
// (benchmarks/peers/gae_peer.py): variant, shape, threads, limit (the probe the bandwidth is
// compared with) and the working set in bytes.
#include <rlhf/gae.hpp>
#include <rlhf/rng.hpp>
#include <rlhf/tensor.hpp>
#include <rlhf/whiten.hpp>

#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace {

constexpr double bytes_per_token = 4 + 4 + 1 + 4 + 4;

struct gae_inputs {
  rlhf::tensor<float, 2> rewards, values, advantages, returns;
  std::vector<std::uint8_t> mask;
  std::int64_t rows, cols;

  gae_inputs(std::int64_t b, std::int64_t t)
      : rewards(b, t), values(b, t), advantages(b, t), returns(b, t), mask(static_cast<std::size_t>(b * t)), rows(b), cols(t) {
    rlhf::rng gen{{.seed = 42}};
    for (std::int64_t i = 0; i < b * t; ++i) {
      rewards.data()[i] = gen.normal<float>();
      values.data()[i] = gen.normal<float>();
    }
    const std::int64_t valid = t - static_cast<std::int64_t>(std::lround(0.1 * static_cast<double>(t)));
    for (std::int64_t r = 0; r < b; ++r)
      for (std::int64_t c = 0; c < t; ++c) mask[static_cast<std::size_t>(r * t + c)] = c < valid ? 1 : 0;
  }
  rlhf::mask_view mask_view() const { return rlhf::mask_view(mask.data(), rows, cols); }
};

void set_counters(benchmark::State& state, const char* variant, std::int64_t b, std::int64_t t, int threads,
                  double bytes_per_tok) {
  const double tokens = static_cast<double>(b * t);
  state.SetItemsProcessed(state.iterations() * b * t);
  state.SetBytesProcessed(static_cast<std::int64_t>(static_cast<double>(state.iterations()) * tokens * bytes_per_tok));
  state.counters["tokens"] = tokens;
  state.counters["bytes"] = tokens * bytes_per_tok;
  state.counters["ws_bytes"] = tokens * bytes_per_token;
  state.SetLabel(std::string("variant=") + variant + " shape=" + std::to_string(b) + "x" + std::to_string(t) +
                 " threads=" + std::to_string(threads) + " limit=triad_bw");
}

void BM_gae_cpu(benchmark::State& state) {
  const std::int64_t b = state.range(0), t = state.range(1);
  const int threads = static_cast<int>(state.range(2));
  gae_inputs x(b, t);
  const rlhf::cpu_backend backend{.threads = threads};
  for (auto _ : state) {
    rlhf::gae(backend, x.rewards, x.values, x.mask_view(), x.advantages, x.returns, {.gamma = 1.0, .lambda = 0.95});
    benchmark::DoNotOptimize(x.advantages.data());
    benchmark::DoNotOptimize(x.returns.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, "gae", b, t, threads, bytes_per_token);
}
BENCHMARK(BM_gae_cpu)
    ->ArgNames({"B", "T", "threads"})
    ->ArgsProduct({{8, 64}, {128, 1024}, {1, 2}})
    ->UseRealTime();

void BM_gae_whiten_cpu(benchmark::State& state) {
  const std::int64_t b = state.range(0), t = state.range(1);
  const int threads = static_cast<int>(state.range(2));
  gae_inputs x(b, t);
  const rlhf::cpu_backend backend{.threads = threads};
  const rlhf::whiten_options trl_masked_whiten{.variance = rlhf::variance_kind::unbiased,
                                               .masked_positions = rlhf::whiten_masked::shift_like_valid};
  for (auto _ : state) {
    rlhf::gae(backend, x.rewards, x.values, x.mask_view(), x.advantages, x.returns, {.gamma = 1.0, .lambda = 0.95});
    benchmark::DoNotOptimize(rlhf::whiten(backend, x.advantages, x.mask_view(), x.advantages, trl_masked_whiten));
    benchmark::DoNotOptimize(x.returns.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, "gae+whiten", b, t, threads, bytes_per_token + 14);
}
BENCHMARK(BM_gae_whiten_cpu)
    ->ArgNames({"B", "T", "threads"})
    ->ArgsProduct({{8, 64}, {128, 1024}, {1, 2}})
    ->UseRealTime();

/// The scalar row loop the SIMD path replaced (cpu_impl::gae_rows, one row at a time), for
/// reference: not part of the side-by-side table.
void BM_gae_cpu_scalar_loop(benchmark::State& state) {
  const std::int64_t b = state.range(0), t = state.range(1);
  gae_inputs x(b, t);
  for (auto _ : state) {
    rlhf::cpu_impl::gae_rows<float>(x.rewards, x.values, x.mask_view(), x.advantages, x.returns, 1.0f,
                                    static_cast<float>(1.0 * 0.95), 0, b);
    benchmark::DoNotOptimize(x.advantages.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, "gae-scalar-loop", b, t, 1, bytes_per_token);
}
BENCHMARK(BM_gae_cpu_scalar_loop)->ArgNames({"B", "T"})->ArgsProduct({{8, 64}, {128, 1024}})->UseRealTime();

}  // namespace
