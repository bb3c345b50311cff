// Tests for the generation of <rlhf/models/gpt.hpp>: the KV cache against full recomputation
// (greedy, sampled, top-k / top-p, stop tokens; the reference draws with rlhf::sample_tokens one
// row at a time), sampling log-probs equal to a training forward's over left-padded prompt +
// response, reproducibility from the seed, independence from batch mates, stop tokens and
// response trimming, the sampling options reaching the shared sampler, and the workspace reused
// across calls of other shapes.
#include <rlhf/models/gpt.hpp>
#include <rlhf/sampler.hpp>

#include <doctest/doctest.h>

#include <support/random.hpp>
#include <support/token_batches.hpp>
#include <support/tolerances.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace {

using ix = std::ptrdiff_t;
using rlhf::token_id;
using rlhf::test::batch_data;
using rlhf::test::log_softmax_at;

}  // namespace

namespace {

/// Generation by full recomputation: a forward over prompt + generated tokens for every token.
rlhf::gpt_generation<float> generate_by_recomputation(rlhf::gpt& model, const batch_data& prompts,
                                                      const rlhf::generation_options& options) {
  const ix b = prompts.rows, tp = prompts.cols, v = model.vocab_size();
  std::vector<std::vector<token_id>> out(static_cast<std::size_t>(b));
  std::vector<std::vector<float>> logp(static_cast<std::size_t>(b));
  std::vector<bool> done(static_cast<std::size_t>(b), false);
  std::vector<rlhf::rng> gens;
  for (ix r = 0; r < b; ++r) gens.push_back(rlhf::rng{{.seed = options.seed, .stream = static_cast<std::uint64_t>(r)}});
  const rlhf::sampling_options sampling{.temperature = options.temperature, .top_k = options.top_k,
                                       .top_p = options.top_p, .greedy = options.greedy};
  for (int step = 0; step < options.max_new_tokens; ++step) {
    batch_data full;
    full.rows = b;
    full.cols = tp + step;
    for (ix r = 0; r < b; ++r) {
      for (ix t = 0; t < tp; ++t) {
        const auto i = static_cast<std::size_t>(r * tp + t);
        full.tokens.push_back(prompts.tokens[i]);
        full.positions.push_back(prompts.positions[i]);
        full.mask.push_back(prompts.mask[i]);
      }
      const token_id last = prompts.positions[static_cast<std::size_t>(r * tp + tp - 1)];
      for (int s = 0; s < step; ++s) {
        const auto& o = out[static_cast<std::size_t>(r)];
        full.tokens.push_back(s < static_cast<int>(o.size()) ? o[static_cast<std::size_t>(s)] : 0);
        full.positions.push_back(last + 1 + s);
        full.mask.push_back(1);
      }
    }
    std::vector<float> logits(static_cast<std::size_t>(b * full.cols * v));
    model.forward(full.view(), rlhf::cube_view<float>(logits.data(), b, full.cols, v));
    bool any = false;
    for (ix r = 0; r < b; ++r) {
      const auto u = static_cast<std::size_t>(r);
      if (done[u]) continue;
      token_id tok = 0;
      float lp = 0;
      rlhf::sample_tokens(rlhf::cpu,
                          rlhf::matrix_view<const float>(logits.data() + (r * full.cols + full.cols - 1) * v, 1, v),
                          std::span<rlhf::rng>(&gens[u], 1), rlhf::vector_view<token_id>(&tok, 1),
                          rlhf::vector_view<float>(&lp, 1), sampling);
      out[u].push_back(tok);
      logp[u].push_back(static_cast<float>(lp));
      if (std::find(options.stop_tokens.begin(), options.stop_tokens.end(), tok) != options.stop_tokens.end())
        done[u] = true;
      else
        any = true;
    }
    if (!any) break;
  }
  ix longest = 0;
  for (const auto& o : out) longest = std::max(longest, static_cast<ix>(o.size()));
  rlhf::gpt_generation<float> g{rlhf::tensor<token_id, 2>(b, longest), rlhf::tensor<float, 2>(b, longest),
                                rlhf::tensor<std::uint8_t, 2>(b, longest), rlhf::tensor<std::ptrdiff_t, 1>(b)};
  for (ix r = 0; r < b; ++r) {
    const auto& o = out[static_cast<std::size_t>(r)];
    for (ix s = 0; s < static_cast<ix>(o.size()); ++s) {
      g.tokens(r, s) = o[static_cast<std::size_t>(s)];
      g.logp(r, s) = logp[static_cast<std::size_t>(r)][static_cast<std::size_t>(s)];
      g.mask(r, s) = 1;
    }
    g.end_index(r) = static_cast<ix>(o.size()) - 1;
  }
  return g;
}

void check_same_generation(const rlhf::gpt_generation<float>& got, const rlhf::gpt_generation<float>& expected) {
  REQUIRE(got.tokens.extent(0) == expected.tokens.extent(0));
  REQUIRE(got.tokens.extent(1) == expected.tokens.extent(1));
  for (ix r = 0; r < got.tokens.extent(0); ++r) {
    CHECK(got.end_index(r) == expected.end_index(r));
    for (ix s = 0; s < got.tokens.extent(1); ++s) {
      CHECK(got.tokens(r, s) == expected.tokens(r, s));
      CHECK(got.mask(r, s) == expected.mask(r, s));
      CHECK(std::fabs(got.logp(r, s) - expected.logp(r, s)) <= 2e-5f);
    }
  }
}

const std::vector<std::vector<token_id>> prompt_rows{{3, 1, 4, 1}, {9, 2}, {5}};

}  // namespace

TEST_CASE("gpt: generation with the KV cache equals full recomputation (greedy and sampled)") {
  rlhf::gpt model({.vocab_size = 17, .context = 24, .layers = 2, .heads = 2, .width = 16, .seed = 3});
  const auto prompts = batch_data::left_padded(prompt_rows);
  for (const bool greedy : {true, false}) {
    CAPTURE(greedy);
    const rlhf::generation_options options{.max_new_tokens = 8, .temperature = 0.9, .greedy = greedy, .seed = 42};
    check_same_generation(model.generate(prompts.view(), options), generate_by_recomputation(model, prompts, options));
  }
  const rlhf::generation_options filtered{.max_new_tokens = 6, .temperature = 1.3, .top_k = 5, .top_p = 0.8,
                                          .stop_tokens = {2, 7}, .seed = 5};
  check_same_generation(model.generate(prompts.view(), filtered), generate_by_recomputation(model, prompts, filtered));
}

TEST_CASE("gpt: sampling log-probs equal a training forward's over left-padded prompt + response") {
  rlhf::gpt model({.vocab_size = 17, .context = 24, .layers = 2, .heads = 2, .width = 16, .seed = 4});
  const auto prompts = batch_data::left_padded(prompt_rows);
  const double temperature = 0.7;
  const auto g = model.generate(prompts.view(), {.max_new_tokens = 7, .temperature = temperature, .seed = 9});
  const ix b = prompts.rows, tp = prompts.cols, tr = g.tokens.extent(1), v = model.vocab_size();
  batch_data full;
  full.rows = b;
  full.cols = tp + tr;
  for (ix r = 0; r < b; ++r) {
    for (ix t = 0; t < tp; ++t) {
      const auto i = static_cast<std::size_t>(r * tp + t);
      full.tokens.push_back(prompts.tokens[i]);
      full.positions.push_back(prompts.positions[i]);
      full.mask.push_back(prompts.mask[i]);
    }
    for (ix s = 0; s < tr; ++s) {
      full.tokens.push_back(g.tokens(r, s));
      full.positions.push_back(prompts.positions[static_cast<std::size_t>(r * tp + tp - 1)] + 1 + static_cast<token_id>(s));
      full.mask.push_back(g.mask(r, s));
    }
  }
  std::vector<float> logits(static_cast<std::size_t>(b * full.cols * v));
  model.forward(full.view(), rlhf::cube_view<float>(logits.data(), b, full.cols, v));
  int compared = 0;
  for (ix r = 0; r < b; ++r)
    for (ix s = 0; s < tr; ++s) {
      if (!g.mask(r, s)) continue;
      const float* row = logits.data() + (r * full.cols + tp - 1 + s) * v;
      CHECK(std::fabs(log_softmax_at(row, v, g.tokens(r, s), temperature) - g.logp(r, s)) <= 2e-5);
      ++compared;
    }
  CHECK(compared == b * tr);
}

TEST_CASE("gpt: sampling is reproducible from the seed and a row does not depend on its batch mates") {
  rlhf::gpt model({.vocab_size = 17, .context = 24, .layers = 2, .heads = 2, .width = 16, .seed = 5});
  const rlhf::generation_options options{.max_new_tokens = 8, .seed = 11};
  const auto prompts = batch_data::left_padded(prompt_rows);
  const auto a = model.generate(prompts.view(), options);
  check_same_generation(model.generate(prompts.view(), options), a);

  auto other_seed = options;
  other_seed.seed = 12;
  const auto c = model.generate(prompts.view(), other_seed);
  bool differs = false;
  for (ix s = 0; s < a.tokens.extent(1); ++s) differs = differs || a.tokens(0, s) != c.tokens(0, s);
  CHECK(differs);

  // Other mates (and another padding width) for rows 1 and 2; row 0 alone, unpadded.
  const auto mates = batch_data::left_padded({{8, 8, 8, 8, 8, 1}, {9, 2}, {5}});
  const auto m = model.generate(mates.view(), options);
  const auto alone = model.generate(batch_data::left_padded({prompt_rows[0]}).view(), options);
  for (ix s = 0; s < a.tokens.extent(1); ++s) {
    CHECK(m.tokens(1, s) == a.tokens(1, s));
    CHECK(m.tokens(2, s) == a.tokens(2, s));
    CHECK(std::fabs(m.logp(1, s) - a.logp(1, s)) <= 2e-5f);
    CHECK(alone.tokens(0, s) == a.tokens(0, s));
    CHECK(std::fabs(alone.logp(0, s) - a.logp(0, s)) <= 2e-5f);
  }
}

TEST_CASE("gpt: stop tokens end a row; later positions are padding; T_resp is the longest row") {
  rlhf::gpt model({.vocab_size = 17, .context = 24, .layers = 2, .heads = 2, .width = 16, .seed = 6});
  const auto prompts = batch_data::left_padded(prompt_rows);
  const auto free_run = model.generate(prompts.view(), {.max_new_tokens = 6, .greedy = true});
  REQUIRE(free_run.tokens.extent(1) == 6);
  // Stop on row 0's third greedy token: row 0 ends there (unless an earlier token equals it).
  const token_id stop = free_run.tokens(0, 2);
  const auto g = model.generate(prompts.view(), {.max_new_tokens = 6, .greedy = true, .stop_tokens = {stop}});
  for (ix r = 0; r < 3; ++r) {
    ix expected_end = 5;
    for (ix s = 0; s < 6; ++s)
      if (free_run.tokens(r, s) == stop) {
        expected_end = s;
        break;
      }
    CHECK(g.end_index(r) == expected_end);
    for (ix s = 0; s < g.tokens.extent(1); ++s) {
      CHECK(g.mask(r, s) == (s <= expected_end ? 1 : 0));
      if (s <= expected_end) CHECK(g.tokens(r, s) == free_run.tokens(r, s));
      if (s > expected_end) {
        CHECK(g.tokens(r, s) == 0);
        CHECK(g.logp(r, s) == 0.0f);
      }
    }
  }
  // Every row stopping at once trims the response.
  const auto one = model.generate(prompts.view(), {.max_new_tokens = 6, .greedy = true,
                                                   .stop_tokens = {free_run.tokens(0, 0), free_run.tokens(1, 0),
                                                                   free_run.tokens(2, 0)}});
  CHECK(one.tokens.extent(1) == 1);
}

TEST_CASE("gpt: the sampling options reach the shared sampler (top-k 1 and a tiny top-p are greedy)") {
  rlhf::gpt model({.vocab_size = 17, .context = 24, .layers = 2, .heads = 2, .width = 16, .seed = 7});
  const auto prompts = batch_data::left_padded(prompt_rows);
  const auto greedy = model.generate(prompts.view(), {.max_new_tokens = 6, .temperature = 0.8, .greedy = true});
  const auto top1 = model.generate(prompts.view(), {.max_new_tokens = 6, .temperature = 0.8, .top_k = 1, .seed = 1});
  const auto nucleus = model.generate(prompts.view(), {.max_new_tokens = 6, .temperature = 0.8, .top_p = 1e-6, .seed = 2});
  check_same_generation(top1, greedy);
  check_same_generation(nucleus, greedy);
  // The log-probs are those of the full distribution at the temperature, not of the filtered one.
  for (ix s = 0; s < greedy.tokens.extent(1); ++s) CHECK(greedy.logp(0, s) < 0.0f);
  // Sampling at temperature 1 draws tokens that greedy decoding does not (17 tokens, 3 × 6 draws).
  const auto sampled = model.generate(prompts.view(), {.max_new_tokens = 6, .seed = 3});
  bool differs = false;
  for (ix r = 0; r < 3; ++r)
    for (ix s = 0; s < 6; ++s) differs = differs || sampled.tokens(r, s) != greedy.tokens(r, s);
  CHECK(differs);
}

TEST_CASE("gpt: the generation workspace is reused across calls of other shapes without leaking state") {
  rlhf::gpt model({.vocab_size = 17, .context = 24, .layers = 2, .heads = 2, .width = 16, .seed = 8});
  const rlhf::generation_options options{.max_new_tokens = 5, .temperature = 1.1, .stop_tokens = {4}, .seed = 21};
  const auto small = batch_data::left_padded({{2, 3}});
  const auto large = batch_data::left_padded({{1, 2, 3, 4, 5, 6, 7}, {9}, {10, 11}, {12, 13, 14}});
  rlhf::gpt fresh = model;
  const auto expected_small = fresh.generate(small.view(), options);
  rlhf::gpt fresh2 = model;
  const auto expected_large = fresh2.generate(large.view(), {.max_new_tokens = 9, .seed = 4});
  // One model: large, small, large again (the cache and buffers keep their larger size).
  check_same_generation(model.generate(large.view(), {.max_new_tokens = 9, .seed = 4}), expected_large);
  check_same_generation(model.generate(small.view(), options), expected_small);
  check_same_generation(model.generate(large.view(), {.max_new_tokens = 9, .seed = 4}), expected_large);
  // generate() leaves no pass behind: backward needs a new forward.
  std::vector<float> dlogits(static_cast<std::size_t>(1 * 2 * 17));
  CHECK_THROWS_AS(model.backward(rlhf::cube_view<const float>(dlogits.data(), 1, 2, 17)), rlhf::invalid_argument);
}
