// B5 — the reference GPT (rlhf/models/gpt.hpp) on the CPU (docs/performance.md).
//
//   BM_gpt_train_cpu     one training step at B = 4, T = 64: forward to logits (B, T, V),
//                        mean token cross-entropy and its dlogits (a plain loop here), backward,
//                        then an AdamW update over every parameter (a plain loop here: lr 1e-4,
//                        β 0.9 / 0.95, ε 1e-8, weight decay 0.1), grads zeroed.
//   BM_gpt_generate_cpu  generate(): B = 4 left-padded prompts of 64 tokens, 64 new tokens, KV
//                        cache, sampling at temperature 1 (no stop token: every row runs to 64).
// Sizes: small (L4, C256, H4, V50257) and 124M (GPT-2 small: L12, C768, H12, V50257).
//
//   items/s = tokens a call (training: B·T; generation: B·64 new tokens);
//   counter flops = 6·N·params-ish for training (forward 2·P·N + attention, backward twice
//   that), compared with the FMA / SGEMM probe of the same thread count (limit=fma).
//
// The label carries the key `benchmarks/run` matches with benchmarks/peers/gpt_peer.py.
#include <rlhf/models/gpt.hpp>
#include <rlhf/tensor.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace {

struct size_config {
  const char* name;
  std::ptrdiff_t layers, heads, width;
};
constexpr size_config sizes[] = {{"small", 4, 4, 256}, {"124M", 12, 12, 768}};
constexpr std::ptrdiff_t vocab = 50257, batch = 4, tokens = 64, context = 1024;

rlhf::gpt make_model(const size_config& s, int threads) {
  return rlhf::gpt({.vocab_size = vocab, .context = context, .layers = s.layers, .heads = s.heads, .width = s.width,
                    .seed = 1},
                   {.threads = threads});
}

/// Matrix-multiply FLOPs of one forward over n tokens of length t (2 per multiply-add).
double forward_flops(const size_config& s, double n, double t) {
  const double d = double(s.width), l = double(s.layers);
  const double linear = l * 12.0 * d * d + double(vocab) * d;  // c_attn 3, c_proj 1, mlp 8 · D²; unembedding
  const double attention = l * 2.0 * t * d;                       // QKᵀ and PV per token (full T×T)
  return 2.0 * n * (linear + attention);
}

struct token_data {
  std::vector<rlhf::token_id> tokens, positions;
  std::vector<std::uint8_t> mask;
  explicit token_data(std::ptrdiff_t t) {
    rlhf::rng gen{{.seed = 7}};
    for (std::ptrdiff_t b = 0; b < batch; ++b)
      for (std::ptrdiff_t i = 0; i < t; ++i) {
        tokens.push_back(static_cast<rlhf::token_id>(gen.uniform_index(vocab)));
        positions.push_back(static_cast<rlhf::token_id>(i));
        mask.push_back(1);
      }
  }
  [[nodiscard]] rlhf::token_batch view(std::ptrdiff_t t) const {
    return {rlhf::matrix_view<const rlhf::token_id>(tokens.data(), batch, t),
            rlhf::matrix_view<const rlhf::token_id>(positions.data(), batch, t), rlhf::mask_view(mask.data(), batch, t)};
  }
};

void label(benchmark::State& state, const std::string& variant, int threads, double items, double flops) {
  state.SetItemsProcessed(static_cast<std::int64_t>(double(state.iterations()) * items));
  state.counters["tokens"] = items;
  state.counters["flops"] = flops;
  state.counters["bytes"] = 0;
  state.counters["ws_bytes"] = 0;
  state.SetLabel("variant=" + variant + " shape=" + std::to_string(batch) + "x" + std::to_string(tokens) +
                 " threads=" + std::to_string(threads) + " limit=fma");
}

void BM_gpt_train_cpu(benchmark::State& state) {
  const size_config& s = sizes[state.range(0)];
  const int threads = static_cast<int>(state.range(1));
  rlhf::gpt model = make_model(s, threads);
  const token_data data(tokens);
  const std::ptrdiff_t n = batch * tokens;
  rlhf::tensor<float, 3> logits(batch, tokens, vocab);
  const auto values = model.flat_values();
  const auto grads = model.flat_grads();
  const std::ptrdiff_t p = values.extent(0);
  std::vector<float> m(static_cast<std::size_t>(p)), v(static_cast<std::size_t>(p));
  int step = 0;
  for (auto _ : state) {
    ++step;
    model.forward(data.view(tokens), logits.view());
    // Mean cross-entropy of the next token; dlogits written over the logits.
    float* lg = logits.data();
    double loss = 0;
    const float inv_n = 1.0f / float(batch * (tokens - 1));
    for (std::ptrdiff_t i = 0; i < n; ++i) {
      float* row = lg + i * vocab;
      if (i % tokens == tokens - 1) {
        std::fill(row, row + vocab, 0.0f);
        continue;
      }
      const rlhf::token_id target = data.tokens[static_cast<std::size_t>(i + 1)];
      const float mx = *std::max_element(row, row + vocab);
      float sum = 0;
      for (std::ptrdiff_t j = 0; j < vocab; ++j) sum += (row[j] = std::exp(row[j] - mx));
      loss -= std::log(row[target] / sum);
      const float scale = inv_n / sum;
      for (std::ptrdiff_t j = 0; j < vocab; ++j) row[j] *= scale;
      row[target] -= inv_n;
    }
    benchmark::DoNotOptimize(loss);
    model.backward(logits.view());
    // AdamW.
    const float lr = 1e-4f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f;
    const float c1 = 1.0f / (1.0f - std::pow(b1, float(step))), c2 = 1.0f / (1.0f - std::pow(b2, float(step)));
    float* w = values.data_handle();
    float* g = grads.data_handle();
    rlhf::cpu_impl::gpt_kernels::split(
        {.threads = threads}, p, threads, [&](std::ptrdiff_t, std::ptrdiff_t i0, std::ptrdiff_t i1) {
          for (std::ptrdiff_t i = i0; i < i1; ++i) {
            const auto u = static_cast<std::size_t>(i);
            m[u] = b1 * m[u] + (1 - b1) * g[i];
            v[u] = b2 * v[u] + (1 - b2) * g[i] * g[i];
            w[i] -= lr * (m[u] * c1 / (std::sqrt(v[u] * c2) + eps) + wd * w[i]);
            g[i] = 0;
          }
        });
    benchmark::ClobberMemory();
  }
  label(state, std::string("train_") + s.name, threads, double(n), 3.0 * forward_flops(s, double(n), double(tokens)));
}
BENCHMARK(BM_gpt_train_cpu)
    ->ArgNames({"size", "threads"})
    ->ArgsProduct({{0, 1}, {1, 2}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_gpt_generate_cpu(benchmark::State& state) {
  const size_config& s = sizes[state.range(0)];
  const int threads = static_cast<int>(state.range(1));
  rlhf::gpt model = make_model(s, threads);
  const token_data data(tokens);
  const rlhf::generation_options options{.max_new_tokens = 64, .seed = 3};
  for (auto _ : state) {
    auto out = model.generate(data.view(tokens), options);
    benchmark::DoNotOptimize(out.tokens.data());
  }
  // Prefill of 64 tokens plus 64 single-token steps (attention against the cache ignored).
  const double flops = forward_flops(s, double(batch * tokens), double(tokens)) +
                       forward_flops(s, double(batch * 64), 0.0);
  label(state, std::string("generate_") + s.name, threads, double(batch * 64), flops);
}
BENCHMARK(BM_gpt_generate_cpu)
    ->ArgNames({"size", "threads"})
    ->ArgsProduct({{0, 1}, {1, 2}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
