// B5 — the reference GPT (rlhf/models/gpt.hpp) on the CPU (docs/performance.md).
//
//   BM_gpt_train_cpu     one training step at B = 4, T = 64, as a user of the FusedLogProbs
//                        capability writes it: hidden() (B, T, D), the mean next-token
//                        cross-entropy through rlhf::fused_linear_logprobs and its backward
//                        (the (B·T, V) logits are never stored; dW goes straight into wte's
//                        gradient), backward_hidden(), then rlhf::adamw<float> (lr 1e-4, β 0.9 /
//                        0.95, ε 1e-8, weight decay 0.1 on matrices, nanoGPT's rule) and zero_grad.
//   BM_gpt_generate_cpu  generate(): B = 4 left-padded prompts of 64 tokens, 64 new tokens, KV
//                        cache, sampling at temperature 1 (no stop token: every row runs to 64).
// Sizes: small (L4, C256, H4, V50257) and 124M (GPT-2 small: L12, C768, H12, V50257).
//
//   items/s = tokens a call (training: B·T; generation: B·64 new tokens);
//   counter flops = 6·N·params-ish for training (forward 2·P·N + attention, backward twice
//   that), compared with the FMA / SGEMM probe of the same thread count (limit=fma).
//
// The label carries the key `benchmarks/run` matches with benchmarks/peers/gpt_peer.py.
#include <rlhf/fused_linear.hpp>
#include <rlhf/models/gpt.hpp>
#include <rlhf/optim/adamw.hpp>
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
  const rlhf::cpu_backend backend{.threads = threads};
  rlhf::gpt model = make_model(s, threads);
  const token_data data(tokens);
  const std::ptrdiff_t n = batch * tokens, d = s.width;
  rlhf::tensor<float, 3> hidden(batch, tokens, d), dhidden(batch, tokens, d);
  rlhf::tensor<float, 1> logp(n), lse(n), grad_logp(n);
  // Labels: the next token; the last position of a row has none (label 0, gradient 0).
  std::vector<rlhf::token_id> labels(static_cast<std::size_t>(n), 0);
  const float inv_count = 1.0f / float(batch * (tokens - 1));
  for (std::ptrdiff_t i = 0; i < n; ++i) {
    const bool last = i % tokens == tokens - 1;
    labels[static_cast<std::size_t>(i)] = last ? 0 : data.tokens[static_cast<std::size_t>(i + 1)];
    grad_logp(i) = last ? 0.0f : -inv_count;
  }
  const rlhf::vector_view<const rlhf::token_id> label_view(labels.data(), n);
  const rlhf::matrix_view<const float> h2(hidden.data(), n, d);
  rlhf::adamw<float> opt{{.lr = 1e-4, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1,
                          .decays = rlhf::decays_matrices(model)}};
  const auto params = model.parameters();
  for (auto _ : state) {
    model.hidden(data.view(tokens), hidden.view());
    rlhf::fused_linear_logprobs(backend, h2, model.unembedding(), label_view, {.logp = logp.view(), .logsumexp = lse.view()});
    double loss = 0;
    for (std::ptrdiff_t i = 0; i < n; ++i) loss += double(grad_logp(i)) * double(logp(i));
    benchmark::DoNotOptimize(loss);
    rlhf::fused_linear_logprobs_backward(backend, h2, model.unembedding(), label_view, lse.view(), {}, grad_logp.view(),
                                         {}, rlhf::matrix_view<float>(dhidden.data(), n, d), model.unembedding_grad());
    model.backward_hidden(dhidden.view(), model.unembedding_grad());
    opt.step(params);
    opt.zero_grad(params);
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
