// Tests for <rlhf/models/gpt.hpp>: finite-difference gradients of the whole model (double, LM,
// value and reward heads, left padding), left padding exact against the unpadded row, no NaN on
// fully masked queries, overfitting a fixed batch, generation with the KV cache against full
// recomputation, reproducibility and batch independence of sampling, sampling log-probs equal to
// a training forward's, stop tokens, heads and copies, parameter names and shapes, threads, and
// argument errors.
#include <rlhf/models/gpt.hpp>

#include <doctest/doctest.h>

#include <support/finite_difference.hpp>
#include <support/random.hpp>
#include <support/token_batches.hpp>
#include <support/tolerances.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace {

using ix = std::ptrdiff_t;
using rlhf::token_id;
using rlhf::test::batch_data;
using rlhf::test::log_softmax_at;

const rlhf::test::tolerance gradcheck{.rtol = 1e-3, .atol = 1e-6};

rlhf::gpt_config tiny(rlhf::gpt_head head = rlhf::gpt_head::lm, std::uint64_t seed = 7) {
  return {.vocab_size = 11, .context = 12, .layers = 2, .heads = 2, .width = 8, .head = head, .seed = seed};
}

/// The tensors of a model whose gradients are checked: a few indices of every parameter.
template <class Model, class Loss, class Backward>
void check_gradients(Model& model, Loss&& loss, Backward&& backward) {
  model.zero_grad();
  loss();
  backward();
  auto params = model.parameters();
  rlhf::rng pick{{.seed = 99}};
  for (auto& p : params) {
    const ix n = p.value.extent(0);
    std::vector<ix> where{0, n - 1};
    for (int i = 0; i < 2; ++i) where.push_back(static_cast<ix>(pick.uniform_index(static_cast<std::uint64_t>(n))));
    std::vector<double> analytic, numeric;
    for (ix i : where) {
      std::vector<double> x{p.value(i)};
      const auto f = [&] {
        p.value(i) = x[0];
        return loss();
      };
      numeric.push_back(rlhf::test::numeric_gradient(f, x)[0]);
      p.value(i) = x[0];
      analytic.push_back(p.grad(i));
    }
    INFO("parameter " << p.name);
    RLHF_CHECK_CLOSE(analytic, numeric, gradcheck);
  }
}

const std::vector<std::vector<token_id>> left_padded_rows{{3, 1, 4, 1, 5}, {9, 2, 6}};

}  // namespace

TEST_CASE("gpt: LM gradients match central finite differences (double, left padding)") {
  rlhf::basic_gpt<double> model(tiny());
  const auto data = batch_data::left_padded(left_padded_rows);
  const ix b = data.rows, t = data.cols, v = model.vocab_size();
  const auto weights = rlhf::test::normal_vector<double>(static_cast<std::size_t>(b * t * v), 5);
  std::vector<double> logits(weights.size()), dlogits(weights.size());
  for (ix i = 0; i < b * t; ++i)
    for (ix j = 0; j < v; ++j)
      dlogits[static_cast<std::size_t>(i * v + j)] = data.mask[static_cast<std::size_t>(i)] ? weights[static_cast<std::size_t>(i * v + j)] : 0.0;
  const auto loss = [&] {
    model.forward(data.view(), rlhf::cube_view<double>(logits.data(), b, t, v));
    double s = 0;
    for (std::size_t i = 0; i < logits.size(); ++i) s += dlogits[i] * logits[i];
    return s;
  };
  check_gradients(model, loss, [&] { model.backward(rlhf::cube_view<const double>(dlogits.data(), b, t, v)); });
}

TEST_CASE("gpt: value head gradients match central finite differences (double, left padding)") {
  rlhf::basic_gpt<double> model(tiny(rlhf::gpt_head::value));
  const auto data = batch_data::left_padded(left_padded_rows);
  const ix b = data.rows, t = data.cols;
  auto dvalues = rlhf::test::normal_vector<double>(static_cast<std::size_t>(b * t), 6);
  for (std::size_t i = 0; i < dvalues.size(); ++i)
    if (!data.mask[i]) dvalues[i] = 0;
  std::vector<double> values(dvalues.size());
  const auto loss = [&] {
    model.values(data.view(), rlhf::matrix_view<double>(values.data(), b, t));
    double s = 0;
    for (std::size_t i = 0; i < values.size(); ++i) s += dvalues[i] * values[i];
    return s;
  };
  check_gradients(model, loss, [&] { model.backward_values(rlhf::matrix_view<const double>(dvalues.data(), b, t)); });
}

TEST_CASE("gpt: reward head gradients match central finite differences (double, left padding)") {
  rlhf::basic_gpt<double> model(tiny(rlhf::gpt_head::reward));
  const auto data = batch_data::left_padded(left_padded_rows, 6);
  const ix t = data.cols;
  const std::vector<std::ptrdiff_t> end{t - 1, t - 2};
  const std::vector<double> dscores{0.7, -1.3};
  std::vector<double> scores(2);
  const rlhf::vector_view<const std::ptrdiff_t> end_view(end.data(), 2);
  const auto loss = [&] {
    model.scores(data.view(), end_view, rlhf::vector_view<double>(scores.data(), 2));
    return dscores[0] * scores[0] + dscores[1] * scores[1];
  };
  check_gradients(model, loss, [&] { model.backward_scores(rlhf::vector_view<const double>(dscores.data(), 2)); });
}

TEST_CASE("gpt: FusedLogProbs hidden/backward_hidden equal forward/backward through the unembedding") {
  rlhf::basic_gpt<double> a(tiny()), b(tiny());
  const auto data = batch_data::left_padded(left_padded_rows);
  const ix bt = data.rows * data.cols, v = a.vocab_size(), d = a.width();
  const auto dlogits = rlhf::test::normal_vector<double>(static_cast<std::size_t>(bt * v), 8);
  std::vector<double> logits(dlogits.size());
  a.forward(data.view(), rlhf::cube_view<double>(logits.data(), data.rows, data.cols, v));
  a.backward(rlhf::cube_view<const double>(dlogits.data(), data.rows, data.cols, v));

  std::vector<double> hidden(static_cast<std::size_t>(bt * d)), dhidden(hidden.size()), dw(static_cast<std::size_t>(v * d));
  b.hidden(data.view(), rlhf::cube_view<double>(hidden.data(), data.rows, data.cols, d));
  const auto w = b.unembedding();
  std::vector<double> logits_b(logits.size());
  for (ix i = 0; i < bt; ++i)
    for (ix j = 0; j < v; ++j) {
      double s = 0, g = dlogits[static_cast<std::size_t>(i * v + j)];
      for (ix c = 0; c < d; ++c) {
        s += hidden[static_cast<std::size_t>(i * d + c)] * w(j, c);
        dhidden[static_cast<std::size_t>(i * d + c)] += g * w(j, c);
        dw[static_cast<std::size_t>(j * d + c)] += g * hidden[static_cast<std::size_t>(i * d + c)];
      }
      logits_b[static_cast<std::size_t>(i * v + j)] = s;
    }
  RLHF_CHECK_CLOSE(logits_b, logits, (rlhf::test::tolerance{.rtol = 1e-12, .atol = 1e-14}));
  b.backward_hidden(rlhf::cube_view<const double>(dhidden.data(), data.rows, data.cols, d),
                    rlhf::matrix_view<const double>(dw.data(), v, d));
  const auto ga = a.flat_grads(), gb = b.flat_grads();
  std::vector<double> va(ga.data_handle(), ga.data_handle() + ga.extent(0)), vb(gb.data_handle(), gb.data_handle() + gb.extent(0));
  RLHF_CHECK_CLOSE(vb, va, (rlhf::test::tolerance{.rtol = 1e-10, .atol = 1e-13}));
}

TEST_CASE("gpt: left padding is exact and fully masked queries give no NaN") {
  rlhf::basic_gpt<double> model(tiny());
  const ix v = model.vocab_size();
  auto padded = batch_data::left_padded({{3, 1, 4, 1, 5}, {9, 2, 6}});
  padded.tokens[0 + 5] = 10;  // a padding entry: any id
  padded.tokens[1 + 5] = -4;  // even an invalid one (mask 0)
  padded.positions[1 + 5] = 99;
  std::vector<double> logits(static_cast<std::size_t>(2 * 5 * v));
  model.forward(padded.view(), rlhf::cube_view<double>(logits.data(), 2, 5, v));
  for (double x : logits) REQUIRE(std::isfinite(x));

  const auto alone = batch_data::left_padded({{9, 2, 6}});
  std::vector<double> logits_alone(static_cast<std::size_t>(3 * v));
  model.forward(alone.view(), rlhf::cube_view<double>(logits_alone.data(), 1, 3, v));
  const std::vector<double> row(logits.begin() + (5 + 2) * v, logits.begin() + 10 * v);
  RLHF_CHECK_CLOSE(row, logits_alone, (rlhf::test::tolerance{.rtol = 1e-12, .atol = 1e-13}));
}

TEST_CASE("gpt: heads — with_head copies the trunk (and the score head reward → value)") {
  rlhf::gpt policy(tiny());
  auto rm = policy.with_head(rlhf::gpt_head::reward, 3);
  auto vf = rm.with_head(rlhf::gpt_head::value);
  CHECK(rm.parameter_count() == policy.parameter_count() + policy.width() + 1);
  const auto data = batch_data::left_padded(left_padded_rows);
  const std::vector<std::ptrdiff_t> end{4, 4};
  std::vector<float> scores(2), values(10);
  rm.scores(data.view(), rlhf::vector_view<const std::ptrdiff_t>(end.data(), 2), rlhf::vector_view<float>(scores.data(), 2));
  vf.values(data.view(), rlhf::matrix_view<float>(values.data(), 2, 5));
  CHECK(values[4] == scores[0]);
  CHECK(values[9] == scores[1]);
  // The trunk is the policy's: hidden states agree.
  std::vector<float> h1(80), h2(80);
  policy.hidden(data.view(), rlhf::cube_view<float>(h1.data(), 2, 5, 8));
  rm.hidden(data.view(), rlhf::cube_view<float>(h2.data(), 2, 5, 8));
  CHECK(h1 == h2);
  // A copy is deep.
  rlhf::gpt copy = policy;
  copy.flat_values()(0) += 1.0f;
  CHECK(copy.flat_values()(0) != policy.flat_values()(0));
}

TEST_CASE("gpt: parameter names, shapes and initialisation follow GPT-2") {
  rlhf::gpt model({.vocab_size = 50, .context = 32, .layers = 2, .heads = 4, .width = 64, .seed = 1});
  const auto params = model.parameters();
  std::vector<std::string> names;
  for (const auto& p : params) names.emplace_back(p.name);
  const std::vector<std::string> block{"ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
                                       "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
                                       "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"};
  std::vector<std::string> expected{"wte.weight", "wpe.weight"};
  for (int l = 0; l < 2; ++l)
    for (const auto& b : block) expected.push_back("h." + std::to_string(l) + "." + b);
  expected.emplace_back("ln_f.weight");
  expected.emplace_back("ln_f.bias");
  CHECK(names == expected);
  CHECK(model.shape("wte.weight") == std::vector<std::int64_t>{50, 64});
  CHECK(model.shape("wpe.weight") == std::vector<std::int64_t>{32, 64});
  CHECK(model.shape("h.1.attn.c_attn.weight") == std::vector<std::int64_t>{64, 192});
  CHECK(model.shape("h.0.mlp.c_proj.weight") == std::vector<std::int64_t>{256, 64});
  CHECK(model.shape("h.0.mlp.c_fc.bias") == std::vector<std::int64_t>{256});
  CHECK_THROWS_WITH_AS((void)model.shape("lm_head.weight"), doctest::Contains("no parameter named 'lm_head.weight'"),
                       rlhf::invalid_argument);
  ix total = 0;
  for (const auto& p : params) {
    ix n = 1;
    for (auto s : model.shape(p.name)) n *= static_cast<ix>(s);
    CHECK(n == p.value.extent(0));
    total += n;
  }
  CHECK(total == model.parameter_count());
  const auto stats = [&](std::string_view name) {
    for (const auto& p : params)
      if (p.name == name) {
        double s = 0, s2 = 0;
        for (ix i = 0; i < p.value.extent(0); ++i) {
          s += p.value(i);
          s2 += double(p.value(i)) * p.value(i);
        }
        const double n = double(p.value.extent(0));
        return std::pair{s / n, std::sqrt(s2 / n - (s / n) * (s / n))};
      }
    return std::pair{0.0, 0.0};
  };
  CHECK(stats("wte.weight").second == doctest::Approx(0.02).epsilon(0.1));
  CHECK(stats("h.0.mlp.c_fc.weight").second == doctest::Approx(0.02).epsilon(0.1));
  CHECK(stats("h.0.mlp.c_proj.weight").second == doctest::Approx(0.01).epsilon(0.1));  // 0.02 / √(2·2)
  CHECK(stats("h.1.ln_2.weight") == std::pair{1.0, 0.0});
  CHECK(stats("h.1.attn.c_attn.bias") == std::pair{0.0, 0.0});
  auto rm = model.with_head(rlhf::gpt_head::reward);
  CHECK(rm.shape("score.weight") == std::vector<std::int64_t>{1, 64});
  CHECK(rm.shape("score.bias") == std::vector<std::int64_t>{1});
  // The same seed gives the same weights.
  rlhf::gpt again({.vocab_size = 50, .context = 32, .layers = 2, .heads = 4, .width = 64, .seed = 1});
  CHECK(again.flat_values()(123) == model.flat_values()(123));
}

TEST_CASE("gpt: bad arguments throw invalid_argument naming the function and the values") {
  CHECK_THROWS_WITH_AS(rlhf::gpt({.vocab_size = 10, .heads = 3, .width = 8}),
                       doctest::Contains("width 8 is not a multiple of heads 3"), rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::gpt({.vocab_size = 0}), doctest::Contains("vocab_size must be positive, got 0"),
                       rlhf::invalid_argument);
  rlhf::gpt model(tiny());
  auto data = batch_data::left_padded(left_padded_rows);
  std::vector<float> logits(2 * 5 * 11);
  const rlhf::cube_view<float> out(logits.data(), 2, 5, 11);
  CHECK_THROWS_WITH_AS(model.backward(out), doctest::Contains("rlhf::gpt::backward(): needs a preceding forward()"),
                       rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(model.forward(data.view(), rlhf::cube_view<float>(logits.data(), 2, 5, 10)),
                       doctest::Contains("rlhf::gpt::forward(): logits is 2x5x10 but must be 2x5x11"),
                       rlhf::invalid_argument);
  auto bad = data;
  bad.tokens[3] = 11;
  CHECK_THROWS_WITH_AS(model.forward(bad.view(), out), doctest::Contains("tokens[0][3] = 11 is outside [0, 11)"),
                       rlhf::invalid_argument);
  bad = data;
  bad.positions[9] = 12;
  CHECK_THROWS_WITH_AS(model.forward(bad.view(), out), doctest::Contains("positions[1][4] = 12 is outside [0, 12)"),
                       rlhf::invalid_argument);
  std::vector<float> values(10);
  CHECK_THROWS_WITH_AS(model.values(data.view(), rlhf::matrix_view<float>(values.data(), 2, 5)),
                       doctest::Contains("rlhf::gpt::values(): needs a value or reward head"), rlhf::invalid_argument);
  rlhf::gpt rm(tiny(rlhf::gpt_head::reward));
  CHECK_THROWS_WITH_AS(rm.forward(data.view(), out), doctest::Contains("needs the lm head but this model has the reward head"),
                       rlhf::invalid_argument);
  const std::vector<std::ptrdiff_t> end{5, 0};
  std::vector<float> scores(2);
  CHECK_THROWS_AS(rm.scores(data.view(), rlhf::vector_view<const std::ptrdiff_t>(end.data(), 2),
                            rlhf::vector_view<float>(scores.data(), 2)),
                  rlhf::invalid_argument);
  // Generation: right padding, context overflow, options.
  auto right = batch_data::left_padded({{1, 2}, {3}});
  std::swap(right.tokens[2], right.tokens[3]);
  std::swap(right.mask[2], right.mask[3]);
  right.positions = {0, 1, 0, 0};
  CHECK_THROWS_WITH_AS((void)model.generate(right.view(), {.max_new_tokens = 2}),
                       doctest::Contains("prompt row 1 ends with padding: prompts must be left-padded"),
                       rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS((void)model.generate(data.view(), {.max_new_tokens = 10}),
                       doctest::Contains("would reach position 13 >= the context 12"), rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS((void)model.generate(data.view(), {.max_new_tokens = 0}),
                       doctest::Contains("max_new_tokens must be >= 1, got 0"), rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS((void)model.generate(data.view(), {.temperature = 0}),
                       doctest::Contains("temperature must be finite and > 0"), rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS((void)model.generate(data.view(), {.top_p = 0}), doctest::Contains("top_p must be in (0, 1]"),
                       rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS((void)model.generate(data.view(), {.max_new_tokens = 2, .stop_tokens = {11}}),
                       doctest::Contains("stop token 11 is outside [0, 11)"), rlhf::invalid_argument);
}
