// Tests of rlhf/train/sft.hpp (and the collation of rlhf/train/batch.hpp it reads).
#include <rlhf/train/sft.hpp>

#include <doctest/doctest.h>

#include "support/finite_difference.hpp"
#include "support/toy_models.hpp"

#include <cmath>
#include <string>
#include <vector>

using rlhf::token_id;
using rlhf::train::sft_example;
using rlhf::train::sft_loss_tokens;

namespace {

constexpr std::ptrdiff_t vocab = 5;
constexpr std::ptrdiff_t max_positions = 6;

// prompt [k], response [k+1, k+2] (mod V): learnable from the bigram term.
std::vector<sft_example> counting_data() {
  std::vector<sft_example> data;
  for (token_id k = 0; k < vocab; ++k)
    data.push_back({{k}, {static_cast<token_id>((k + 1) % vocab), static_cast<token_id>((k + 2) % vocab)}});
  return data;
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

}  // namespace

TEST_CASE("make_sft_batch: right padding, positions and the response-only target mask") {
  const std::vector<sft_example> data{{{1, 2}, {3, 4}}, {{1}, {2}}};
  const auto b = rlhf::train::make_sft_batch(data, /*pad=*/9);
  REQUIRE(b.rows() == 2);
  REQUIRE(b.length() == 4);
  const token_id tokens1[4] = {1, 2, 9, 9};
  const std::uint8_t mask1[4] = {1, 1, 0, 0}, targets0[4] = {0, 0, 1, 1}, targets1[4] = {0, 1, 0, 0};
  for (int t = 0; t < 4; ++t) {
    CHECK(b.tokens(1, t) == tokens1[t]);
    CHECK(b.mask(1, t) == mask1[t]);
    CHECK(b.target_mask(0, t) == targets0[t]);
    CHECK(b.target_mask(1, t) == targets1[t]);
    CHECK(b.positions(0, t) == t);
  }
  CHECK(b.targets() == 3);
  const auto all = rlhf::train::make_sft_batch(data, 9, sft_loss_tokens::all);
  const std::uint8_t all0[4] = {0, 1, 1, 1};
  for (int t = 0; t < 4; ++t) CHECK(all.target_mask(0, t) == all0[t]);
  CHECK(all.targets() == 4);
}

TEST_CASE("make_sft_batch: bad examples throw invalid_argument naming the example") {
  const std::vector<sft_example> empty_response{{{1, 2}, {}}};
  CHECK_THROWS_WITH_AS(rlhf::train::make_sft_batch(empty_response, 0),
                       "rlhf::train::make_sft_batch(): example 0 has an empty response", rlhf::invalid_argument);
  const std::vector<sft_example> none;
  CHECK_THROWS_AS(rlhf::train::make_sft_batch(none, 0), rlhf::invalid_argument);
  const std::vector<sft_example> one_token{{{}, {3}}};
  CHECK_THROWS_WITH_AS(rlhf::train::make_sft_batch(one_token, 0, sft_loss_tokens::all),
                       "rlhf::train::make_sft_batch(): example 0 has 1 token(s); a loss target needs at least 2",
                       rlhf::invalid_argument);
}

TEST_CASE_TEMPLATE("sft_trainer: the gradient handed to the optimizer is d(loss)/d(parameters)", T, float, double) {
  // Checked by central differences in double on the double model; the float model's gradient
  // must agree with it to float rounding.
  for (const auto loss_on : {sft_loss_tokens::response, sft_loss_tokens::all}) {
    CAPTURE(static_cast<int>(loss_on));
    rlhf::test::toy_lm<T> model(vocab, max_positions);
    model.randomize(7, 0.5);
    rlhf::test::grad_recorder recorder;
    rlhf::train::sft_trainer trainer(model, recorder, {.loss_on = loss_on, .pad_id = 0});
    const auto data = counting_data();
    const auto batch = rlhf::train::make_sft_batch(std::span<const sft_example>(data).first(3), 0, loss_on);
    const auto r = trainer.step(batch);
    REQUIRE_FALSE(r.event);
    REQUIRE(recorder.recorded.size() == 1);
    CHECK(r.stats.at("num_tokens") == static_cast<double>(batch.targets()));

    rlhf::test::toy_lm<double> reference(vocab, max_positions);
    reference.randomize(7, 0.5);
    rlhf::test::grad_recorder unused;
    rlhf::train::sft_trainer eval(reference, unused, {.loss_on = loss_on});
    auto x = flat_parameters(reference);
    const auto numeric = rlhf::test::numeric_gradient(
        [&] {
          set_parameters(reference, x);
          return eval.evaluate(batch).at("eval/loss");
        },
        x);
    const auto& analytic = recorder.recorded[0];
    REQUIRE(analytic.size() == numeric.size());
    const double atol = sizeof(T) == 4 ? 1e-5 : 1e-7;
    for (std::size_t i = 0; i < numeric.size(); ++i) {
      CAPTURE(i);
      CHECK(analytic[i] == doctest::Approx(numeric[i]).epsilon(1e-4).scale(atol / 1e-4));
    }
  }
}

TEST_CASE("sft_trainer: fitting the demonstrations drives the loss down and the accuracy to 1") {
  rlhf::test::toy_lm<double> model(vocab, max_positions);
  model.randomize(3, 0.1);
  rlhf::test::toy_sgd sgd(0.5, 0.9);
  rlhf::train::sft_trainer trainer(model, sgd, {.batch_size = 2, .seed = 11});
  const auto data = counting_data();
  const double before = trainer.evaluate(data).at("eval/loss");
  std::vector<double> losses;
  trainer.fit(data, {.epochs = 60, .on_step = [&](std::uint64_t, const rlhf::train::metrics& m) {
                       losses.push_back(m.at("loss"));
                       CHECK(m.contains("grad_norm"));
                       CHECK(m.contains("lr"));
                       CHECK(m.contains("epoch"));
                     }});
  CHECK(losses.size() == 60 * 3);  // 5 examples in batches of 2: 3 steps per epoch
  CHECK(trainer.state().step == 180);
  CHECK(trainer.state().data.epoch == 60);
  const auto after = trainer.evaluate(data);
  CHECK(before > 1.0);
  CHECK(after.at("eval/loss") < 0.05);
  CHECK(after.at("eval/mean_token_accuracy") == 1.0);
}

TEST_CASE("sft_trainer: resuming from a saved state at step k is bitwise the uninterrupted run") {
  const auto data = counting_data();
  rlhf::test::toy_lm<float> full(vocab, max_positions);
  full.randomize(5, 0.3);
  rlhf::test::toy_lm<float> first_half = full;
  rlhf::test::toy_sgd sgd_full(0.3, 0.9), sgd_half(0.3, 0.9);

  rlhf::train::sft_trainer a(full, sgd_full, {.batch_size = 2, .seed = 4});
  a.fit(data, {.epochs = 100, .max_steps = 11});

  rlhf::train::sft_trainer b(first_half, sgd_half, {.batch_size = 2, .seed = 4});
  b.fit(data, {.epochs = 100, .max_steps = 4});
  const auto saved_state = b.state();
  rlhf::test::toy_lm<float> resumed = first_half;  // "load the weights"
  rlhf::test::toy_sgd resumed_sgd = sgd_half;      // "load the optimizer"
  rlhf::train::sft_trainer c(resumed, resumed_sgd, {.batch_size = 2, .seed = 4});
  c.restore(saved_state);
  c.fit(data, {.epochs = 100, .max_steps = 11});

  CHECK(c.state() == a.state());
  CHECK(resumed == full);
  CHECK(resumed_sgd == sgd_full);
  CHECK_FALSE(first_half == full);  // the test can fail: the halves differ
}

TEST_CASE("sft_trainer: a non-finite gradient is reported by step() and stops fit() with a diagnostic") {
  const auto data = counting_data();
  rlhf::test::toy_lm<double> model(vocab, max_positions);
  model.randomize(1, 0.3);
  model.poison_backward(3);
  rlhf::test::toy_sgd sgd(0.1);
  rlhf::train::sft_trainer trainer(model, sgd, {.batch_size = 2});
  try {
    trainer.fit(data, {.epochs = 5});
    FAIL("fit() did not stop");
  } catch (const rlhf::numerical_error& e) {
    CHECK(e.step() == 3);
    CHECK(e.tensor() == "gradient of parameter 'bigram' [1]");
    CHECK(std::isinf(e.value()));
    CHECK(std::string(e.what()) == "rlhf::train::sft_trainer: step 3: non-finite gradient of parameter 'bigram' [1] (inf)");
  }
  CHECK(trainer.state().step == 2);  // the bad step was not taken
  CHECK(sgd.steps() == 2);

  // step() reports the event instead of throwing; a NaN loss is named "loss".
  rlhf::test::toy_lm<double> nan_model(vocab, max_positions);
  nan_model.table(0, 1) = std::nan("");
  rlhf::train::sft_trainer t2(nan_model, sgd, {});
  const auto r = t2.step(rlhf::train::make_sft_batch(data, 0));
  REQUIRE(r.event);
  CHECK(r.event->tensor == "loss");
  CHECK(r.event->step == 1);
  CHECK(t2.state().step == 0);
}
