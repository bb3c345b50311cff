// B2b — fused linear log-probs, forward + backward (docs/performance.md): hidden (N, D) and the
// unembedding W (V, D) → logp and logsumexp (forward), then dhidden and dW from a per-token
// upstream gradient (backward), without the (N, V) logits. N ∈ {1024, 4096}, D ∈ {256, 768},
// V = 50,257 (GPT-2), float, buffers allocated once outside the timed loop (dW accumulates
// across iterations, which changes nothing of the work).
//
//   BM_fused_linear_cpu/n:N/d:D/threads:t   rlhf::fused_linear_logprobs + _backward
//
// Counters: tokens = N; flops = 6·N·D·V, the FLOPs of forward + backward with the logits kept
// (2·N·D·V each for the logits, dhidden and dW; the backward's recomputation of the logits,
// another 2·N·D·V, is not counted, so the FLOP rate is comparable with the peer's); ws_bytes =
// the larger of the forward's and the backward's workspace (fused_linear_workspace_bytes),
// bound_bytes = N·V·4 / 16, the memory goal. The label sets limit=sgemm: `benchmarks/run`
// divides the FLOP rate by the fastest same-run SGEMM probe (benchmarks/sgemm_bench.cpp).
#include <rlhf/fused_linear.hpp>
#include <rlhf/rng.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace {

constexpr std::int64_t vocab = 50257;

void BM_fused_linear_cpu(benchmark::State& state) {
  const std::int64_t n = state.range(0), d = state.range(1);
  const int threads = static_cast<int>(state.range(2));
  const rlhf::cpu_backend backend{.threads = threads};
  rlhf::rng gen{{.seed = 7}};
  std::vector<float> hidden(static_cast<std::size_t>(n * d)), w(static_cast<std::size_t>(vocab * d));
  for (auto& x : hidden) x = gen.normal<float>();
  for (auto& x : w) x = 0.05f * gen.normal<float>();
  std::vector<rlhf::token_id> labels(static_cast<std::size_t>(n));
  for (auto& l : labels) l = static_cast<rlhf::token_id>(gen.uniform_index(vocab));
  std::vector<float> logp(static_cast<std::size_t>(n)), lse(logp.size()), grad(logp.size());
  for (auto& g : grad) g = -1.0f / static_cast<float>(n);
  std::vector<float> dhidden(hidden.size()), dw(w.size());
  const rlhf::matrix_view<const float> h(hidden.data(), n, d), wv(w.data(), vocab, d);
  const rlhf::vector_view<const rlhf::token_id> lv(labels.data(), n);
  for (auto _ : state) {
    rlhf::fused_linear_logprobs(backend, h, wv, lv, {.logp = rlhf::vector_view<float>(logp.data(), n),
                                                     .logsumexp = rlhf::vector_view<float>(lse.data(), n)});
    rlhf::fused_linear_logprobs_backward(backend, h, wv, lv, rlhf::vector_view<const float>(lse.data(), n), {},
                                         rlhf::vector_view<const float>(grad.data(), n), {},
                                         rlhf::matrix_view<float>(dhidden.data(), n, d),
                                         rlhf::matrix_view<float>(dw.data(), vocab, d));
    benchmark::DoNotOptimize(dhidden.data());
    benchmark::ClobberMemory();
  }
  const double flops = 6.0 * static_cast<double>(n) * static_cast<double>(d) * static_cast<double>(vocab);
  const std::size_t ws = std::max(rlhf::fused_linear_workspace_bytes(backend, n, vocab, sizeof(float), false),
                                  rlhf::fused_linear_workspace_bytes(backend, n, vocab, sizeof(float), true));
  state.SetItemsProcessed(state.iterations() * n);
  state.counters["tokens"] = static_cast<double>(n);
  state.counters["flops"] = flops;
  state.counters["GFLOPs"] = benchmark::Counter(flops / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["ws_bytes"] = static_cast<double>(ws);
  state.counters["bound_bytes"] = static_cast<double>(n) * vocab * 4.0 / 16.0;
  state.SetLabel("variant=fwd_bwd shape=" + std::to_string(n) + "x" + std::to_string(d) +
                 " threads=" + std::to_string(threads) + " limit=sgemm");
}

void shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"n", "d", "threads"});
  for (std::int64_t n : {1024, 4096})
    for (std::int64_t d : {256, 768})
      for (std::int64_t t : {1, 2}) b->Args({n, d, t});
}

BENCHMARK(BM_fused_linear_cpu)->Apply(shapes)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
