// Tests of rlhf/train/reward_model.hpp on a linear bag-of-tokens reward model.
#include <rlhf/train/reward_model.hpp>

#include <doctest/doctest.h>

#include "support/finite_difference.hpp"
#include "support/toy_models.hpp"

#include <cmath>
#include <string>
#include <vector>

using rlhf::token_id;
using rlhf::train::ranking_example;
using rlhf::train::ranking_loss;

namespace {

constexpr std::ptrdiff_t vocab = 8;

// Tokens 1, 2 are good, 5, 6 bad, the rest neutral; a completion's quality is #good − #bad and
// the labeler ranks by it (equal quality = a tie). Separable by a linear bag-of-tokens model.
int quality(const std::vector<token_id>& c) {
  int q = 0;
  for (const token_id t : c) q += (t == 1 || t == 2) - (t == 5 || t == 6);
  return q;
}

std::vector<ranking_example> rankings(std::size_t n, std::uint64_t seed, int k_min, int k_max) {
  rlhf::rng gen{{.seed = seed}};
  std::vector<ranking_example> out;
  for (std::size_t i = 0; i < n; ++i) {
    ranking_example e;
    e.prompt = {static_cast<token_id>(gen.uniform_index(vocab))};
    const int k = k_min + static_cast<int>(gen.uniform_index(static_cast<std::uint64_t>(k_max - k_min + 1)));
    std::vector<int> q;
    for (int j = 0; j < k; ++j) {
      std::vector<token_id> c(3 + gen.uniform_index(3));
      for (auto& t : c) t = static_cast<token_id>(gen.uniform_index(vocab));
      q.push_back(quality(c));
      e.completions.push_back(c);
    }
    for (int j = 0; j < k; ++j) {
      int rank = 0;  // the number of strictly better completions
      for (int l = 0; l < k; ++l) rank += q[static_cast<std::size_t>(l)] > q[static_cast<std::size_t>(j)];
      e.ranks.push_back(rank);
    }
    out.push_back(e);
  }
  return out;
}

template <class M>
std::vector<double> flat_parameters(M& model) {
  std::vector<double> x;
  for (auto& p : model.parameters())
    for (std::ptrdiff_t i = 0; i < p.value.extent(0); ++i) x.push_back(static_cast<double>(p.value(i)));
  return x;
}

template <class M>
void set_parameters(M& model, const std::vector<double>& x) {
  std::size_t k = 0;
  for (auto& p : model.parameters())
    for (std::ptrdiff_t i = 0; i < p.value.extent(0); ++i)
      p.value(i) = static_cast<std::remove_cvref_t<decltype(p.value(i))>>(x[k++]);
}

template <class M>
void randomize(M& model, std::uint64_t seed) {
  rlhf::rng gen{{.seed = seed}};
  auto x = flat_parameters(model);
  for (auto& v : x) v = 0.3 * gen.normal();
  set_parameters(model, x);
}

}  // namespace

TEST_CASE("make_ranking_batch: rows, end indices, offsets and ranks") {
  const std::vector<ranking_example> data{{{7}, {{1, 2}, {3}, {4, 5, 6}}, {2, 0, 1}, 0.0},
                                          {{7, 7}, {{1}, {2}}, {}, 0.5}};
  const auto b = rlhf::train::make_ranking_batch(data, 0);
  REQUIRE(b.sequences.rows() == 5);
  CHECK(b.sequences.length() == 4);
  CHECK(b.prompts() == 2);
  const std::ptrdiff_t end[5] = {2, 1, 3, 2, 2};
  const std::int32_t ranks[5] = {2, 0, 1, 0, 1};
  for (int i = 0; i < 5; ++i) {
    CHECK(b.end_index(i) == end[i]);
    CHECK(b.ranks(i) == ranks[i]);
  }
  CHECK(b.offsets(0) == 0);
  CHECK(b.offsets(1) == 3);
  CHECK(b.offsets(2) == 5);
  CHECK(b.margins == std::vector<double>{0.0, 0.5});
  const std::vector<ranking_example> single{{{1}, {{1}}, {}, 0.0}};
  CHECK_THROWS_WITH_AS(rlhf::train::make_ranking_batch(single, 0),
                       "rlhf::train::make_ranking_batch(): ranking 0 has 1 completion(s) but needs at least 2",
                       rlhf::invalid_argument);
  const std::vector<ranking_example> bad_ranks{{{1}, {{1}, {2}}, {0}, 0.0}};
  CHECK_THROWS_AS(rlhf::train::make_ranking_batch(bad_ranks, 0), rlhf::invalid_argument);
}

TEST_CASE_TEMPLATE("reward_model_trainer: the gradient is d(loss)/d(parameters), K-wise and pairwise", T, float, double) {
  struct setup {
    ranking_loss loss;
    double center;
    int k_min, k_max;
  };
  for (const auto s : {setup{ranking_loss::kwise, 0.0, 3, 6}, setup{ranking_loss::pairwise, 0.01, 2, 2}}) {
    CAPTURE(static_cast<int>(s.loss));
    auto data = rankings(6, 17, s.k_min, s.k_max);
    for (std::size_t i = 0; i < data.size(); ++i) {
      data[i].margin = 0.25 * static_cast<double>(i);
      if (s.loss == ranking_loss::pairwise && data[i].ranks[0] == data[i].ranks[1]) data[i].ranks = {};
    }
    const rlhf::train::reward_model_options options{.loss = s.loss, .center_coef = s.center, .batch_size = 6};
    rlhf::test::toy_bow_reward<T> model(vocab);
    randomize(model, 2);
    rlhf::test::grad_recorder recorder;
    rlhf::train::reward_model_trainer trainer(model, recorder, options);
    const auto r = trainer.step(rlhf::train::make_ranking_batch(data, 0));
    REQUIRE_FALSE(r.event);

    rlhf::test::toy_bow_reward<double> reference(vocab);
    randomize(reference, 2);
    rlhf::train::reward_model_trainer eval(reference, recorder, options);
    auto x = flat_parameters(reference);
    const auto numeric = rlhf::test::numeric_gradient(
        [&] {
          set_parameters(reference, x);
          return eval.evaluate(data).at("eval/loss");
        },
        x);
    CHECK(r.stats.at("loss") == doctest::Approx(eval.evaluate(data).at("eval/loss")).epsilon(1e-6));
    const auto& analytic = recorder.recorded[0];
    REQUIRE(analytic.size() == numeric.size());
    for (std::size_t i = 0; i < numeric.size(); ++i) {
      CAPTURE(i);
      CHECK(analytic[i] == doctest::Approx(numeric[i]).epsilon(1e-4).scale(sizeof(T) == 4 ? 0.1 : 1e-3));
    }
  }
}

TEST_CASE("reward_model_trainer: pairwise data is K = 2 — both losses agree without margins") {
  auto data = rankings(8, 5, 2, 2);
  for (auto& e : data)
    if (e.ranks[0] == e.ranks[1]) e.ranks = {};
  rlhf::test::toy_bow_reward<double> model(vocab);
  randomize(model, 9);
  rlhf::test::grad_recorder rec_k, rec_p;
  rlhf::train::reward_model_trainer kwise(model, rec_k, {.loss = ranking_loss::kwise});
  rlhf::train::reward_model_trainer pairwise(model, rec_p, {.loss = ranking_loss::pairwise});
  const auto batch = rlhf::train::make_ranking_batch(data, 0);
  const auto a = kwise.step(batch), b = pairwise.step(batch);
  CHECK(a.stats.at("loss") == doctest::Approx(b.stats.at("loss")).epsilon(1e-12));
  CHECK(a.stats.at("accuracy") == b.stats.at("accuracy"));
  for (std::size_t i = 0; i < rec_k.recorded[0].size(); ++i)
    CHECK(rec_k.recorded[0][i] == doctest::Approx(rec_p.recorded[0][i]).epsilon(1e-12));

  // pairwise refuses K = 3
  const auto k3 = rankings(2, 5, 3, 3);
  CHECK_THROWS_WITH_AS(pairwise.step(rlhf::train::make_ranking_batch(k3, 0)),
                       "rlhf::train::reward_model_trainer: ranking_loss::pairwise needs K = 2 but prompt 0 has 3 completions",
                       rlhf::invalid_argument);
}

TEST_CASE("reward_model_trainer: reaches high held-out accuracy on a separable ranking set; demonstrations then score mean 0") {
  const auto train = rankings(240, 1, 4, 9);  // the paper's K = 4..9
  const auto held_out = rankings(80, 2, 4, 9);
  rlhf::test::toy_bow_reward<double> model(vocab);
  rlhf::test::toy_sgd sgd(0.3, 0.5);
  rlhf::train::reward_model_trainer trainer(model, sgd, {.batch_size = 16, .seed = 3});
  const auto before = trainer.evaluate(held_out);
  std::uint64_t steps = 0;
  trainer.fit(train, {.epochs = 2, .on_step = [&](std::uint64_t step, const rlhf::train::metrics& m) {
                        steps = step;
                        CHECK(m.contains("margin"));
                        CHECK(m.contains("num_pairs"));
                      }});
  CHECK(steps == 2 * 15);
  const auto after = trainer.evaluate(held_out);
  CHECK(before.at("eval/accuracy") < 0.75);
  CHECK(after.at("eval/accuracy") > 0.95);
  CHECK(after.at("eval/loss") < before.at("eval/loss"));
  CHECK(after.at("eval/margin") > 0.5);
  // The learned weights order good > neutral > bad.
  CHECK(model.weight(1) > model.weight(0) + 0.5);
  CHECK(model.weight(0) > model.weight(5) + 0.5);

  std::vector<rlhf::train::sft_example> demos{{{3}, {1, 1, 0}}, {{4}, {2, 7}}, {{0}, {5, 1, 1, 2}}};
  const auto norm = rlhf::train::fit_reward_normalizer(model, demos);
  CHECK(norm.gain == 1.0);
  double mean = 0;
  for (const auto& d : demos) {
    std::vector<token_id> all = d.prompt;
    all.insert(all.end(), d.response.begin(), d.response.end());
    double s = model.bias();
    for (const token_id t : all) s += model.weight(t);
    mean += norm.gain * s + norm.bias;
  }
  CHECK(std::abs(mean / 3) < 1e-12);
  CHECK(norm.bias != 0.0);
}

TEST_CASE("reward_model_trainer: resume at step k is bitwise; NaN rewards stop fit() with a diagnostic") {
  const auto data = rankings(20, 8, 2, 5);
  rlhf::test::toy_bow_reward<float> full(vocab), half(vocab);
  rlhf::test::toy_sgd sgd_full(0.2, 0.9), sgd_half(0.2, 0.9);
  rlhf::train::reward_model_trainer a(full, sgd_full, {.batch_size = 3, .seed = 5});
  a.fit(data, {.epochs = 10, .max_steps = 13});
  rlhf::train::reward_model_trainer b(half, sgd_half, {.batch_size = 3, .seed = 5});
  b.fit(data, {.epochs = 10, .max_steps = 6});
  auto resumed = half;
  auto resumed_sgd = sgd_half;
  rlhf::train::reward_model_trainer c(resumed, resumed_sgd, {.batch_size = 3, .seed = 5});
  c.restore(b.state());
  c.fit(data, {.epochs = 10, .max_steps = 13});
  CHECK(c.state() == a.state());
  CHECK(resumed == full);
  CHECK(resumed_sgd == sgd_full);

  rlhf::test::toy_bow_reward<double> bad(vocab);
  bad.weight(3) = std::numeric_limits<double>::quiet_NaN();
  rlhf::test::toy_sgd sgd(0.1);
  rlhf::train::reward_model_trainer t(bad, sgd, {.batch_size = 4, .shuffle = false});
  std::vector<ranking_example> clean{{{0}, {{1}, {5}}, {}, 0.0}}, with_nan{{{0}, {{1, 3}, {5}}, {}, 0.0}};
  std::vector<ranking_example> both = clean;
  both.push_back(with_nan[0]);
  both.push_back(clean[0]);
  t.fit(clean, {.epochs = 2});
  CHECK(t.state().step == 2);
  rlhf::train::reward_model_trainer t2(bad, sgd, {.batch_size = 1, .shuffle = false});
  CHECK_THROWS_WITH_AS(t2.fit(both), "rlhf::train::reward_model_trainer: step 2: non-finite loss (nan)",
                       rlhf::numerical_error);
  CHECK(t2.state().step == 1);
}
