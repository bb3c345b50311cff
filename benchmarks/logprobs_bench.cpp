// B2 — per-token log-probs from logits (docs/performance.md). One call on [B, T, V] float
// logits, buffers allocated and filled once outside the timed loop.
//
//   BM_logprobs_cpu     variant=logprob             rlhf::token_logprobs, logp only
//                       variant=logprob+entropy     logp, entropy and logsumexp in one pass
//   BM_logprobs_kl_cpu  variant=logprob+entropy+kl  rlhf::full_kl_from_logits with labels: the
//                                                   full KL against reference logits, plus logp,
//                                                   entropy and logsumexp, one pass over both
//
//   items/s = B·T tokens/s; bytes = the logits read once (4·V B a token; twice that with the
//   reference logits) — the outputs are a few bytes a token. ws_bytes = bytes (hundreds of MB:
//   the read-bandwidth probe of DRAM size is the limit, label limit=read_bw).
//
// Shapes (B, T, V): 8×128×32000 (131 MB), 8×512×50257 (823 MB), 16×1024×32000 (2.1 GB; 4.2 GB
// with the reference logits). The label's shape key is "BxTxV", matched by
// benchmarks/peers/logprobs_peer.py.
#include <rlhf/logprobs.hpp>
#include <rlhf/rng.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace {

/// Logits N(0, 2²) from the library's generator: one 1 Mi-value pattern, repeated with a
/// shifted start per copy (filling 500 M values one by one would take longer than the runs).
std::vector<float> make_logits(std::int64_t n, std::uint64_t seed) {
  constexpr std::int64_t pattern_size = 1 << 20;
  std::vector<float> pattern(static_cast<std::size_t>(pattern_size));
  rlhf::rng gen{{.seed = seed}};
  for (auto& v : pattern) v = 2.0f * gen.normal<float>();
  std::vector<float> out(static_cast<std::size_t>(n));
  for (std::int64_t i = 0, copy = 0; i < n; ++copy) {
    const std::int64_t start = (copy * 7919) % pattern_size;
    const std::int64_t len = std::min(n - i, pattern_size - start);
    std::memcpy(out.data() + i, pattern.data() + start, static_cast<std::size_t>(len) * sizeof(float));
    i += len;
  }
  return out;
}

std::vector<rlhf::token_id> make_labels(std::int64_t n, std::int64_t vocab) {
  rlhf::rng gen{{.seed = 7}};
  std::vector<rlhf::token_id> labels(static_cast<std::size_t>(n));
  for (auto& l : labels) l = static_cast<rlhf::token_id>(gen.uniform_index(static_cast<std::uint64_t>(vocab)));
  return labels;
}

void set_counters(benchmark::State& state, const std::string& variant, std::int64_t b, std::int64_t t, std::int64_t v,
                  int threads, double bytes_per_token) {
  const double tokens = static_cast<double>(b * t);
  state.SetItemsProcessed(state.iterations() * b * t);
  state.SetBytesProcessed(static_cast<std::int64_t>(static_cast<double>(state.iterations()) * tokens * bytes_per_token));
  state.counters["tokens"] = tokens;
  state.counters["bytes"] = tokens * bytes_per_token;
  state.counters["ws_bytes"] = tokens * bytes_per_token;
  state.SetLabel("variant=" + variant + " shape=" + std::to_string(b) + "x" + std::to_string(t) + "x" +
                 std::to_string(v) + " threads=" + std::to_string(threads) + " limit=read_bw");
}

void BM_logprobs_cpu(benchmark::State& state) {
  const std::int64_t b = state.range(0), t = state.range(1), v = state.range(2);
  const int threads = static_cast<int>(state.range(3));
  const bool with_entropy = state.range(4) != 0;
  const auto logits = make_logits(b * t * v, 42);
  const auto labels = make_labels(b * t, v);
  std::vector<float> logp(static_cast<std::size_t>(b * t)), entropy(logp.size()), lse(logp.size());
  const rlhf::cube_view<const float> x(logits.data(), b, t, v);
  const rlhf::matrix_view<const rlhf::token_id> l(labels.data(), b, t);
  const rlhf::cpu_backend backend{.threads = threads};
  rlhf::token_logprob_outputs<float> out{.logp = rlhf::matrix_view<float>(logp.data(), b, t)};
  if (with_entropy) {
    out.entropy = rlhf::matrix_view<float>(entropy.data(), b, t);
    out.logsumexp = rlhf::matrix_view<float>(lse.data(), b, t);
  }
  for (auto _ : state) {
    rlhf::token_logprobs(backend, x, l, out);
    benchmark::DoNotOptimize(logp.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, with_entropy ? "logprob+entropy" : "logprob", b, t, v, threads, 4.0 * static_cast<double>(v));
}

void BM_logprobs_kl_cpu(benchmark::State& state) {
  const std::int64_t b = state.range(0), t = state.range(1), v = state.range(2);
  const int threads = static_cast<int>(state.range(3));
  const auto logits = make_logits(b * t * v, 42);
  const auto ref_logits = make_logits(b * t * v, 43);
  const auto labels = make_labels(b * t, v);
  std::vector<float> kl(static_cast<std::size_t>(b * t)), logp(kl.size()), entropy(kl.size()), lse(kl.size());
  const rlhf::cpu_backend backend{.threads = threads};
  for (auto _ : state) {
    rlhf::full_kl_from_logits(backend, rlhf::cube_view<const float>(logits.data(), b, t, v),
                              rlhf::cube_view<const float>(ref_logits.data(), b, t, v),
                              rlhf::matrix_view<const rlhf::token_id>(labels.data(), b, t),
                              rlhf::matrix_view<float>(kl.data(), b, t),
                              {.logp = rlhf::matrix_view<float>(logp.data(), b, t),
                               .entropy = rlhf::matrix_view<float>(entropy.data(), b, t),
                               .logsumexp = rlhf::matrix_view<float>(lse.data(), b, t)});
    benchmark::DoNotOptimize(kl.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, "logprob+entropy+kl", b, t, v, threads, 8.0 * static_cast<double>(v));
}

void shapes(benchmark::internal::Benchmark* bench, bool with_variant) {
  for (const auto& s : {std::vector<std::int64_t>{8, 128, 32000}, std::vector<std::int64_t>{8, 512, 50257},
                        std::vector<std::int64_t>{16, 1024, 32000}})
    for (std::int64_t threads : {1, 2}) {
      if (with_variant) {
        for (std::int64_t entropy : {0, 1}) bench->Args({s[0], s[1], s[2], threads, entropy});
      } else {
        bench->Args({s[0], s[1], s[2], threads});
      }
    }
}

BENCHMARK(BM_logprobs_cpu)
    ->ArgNames({"B", "T", "V", "threads", "entropy"})
    ->Apply([](benchmark::internal::Benchmark* b) { shapes(b, true); })
    ->UseRealTime();
BENCHMARK(BM_logprobs_kl_cpu)
    ->ArgNames({"B", "T", "V", "threads"})
    ->Apply([](benchmark::internal::Benchmark* b) { shapes(b, false); })
    ->UseRealTime();

}  // namespace
