// Tests of rlhf/train/ppo.hpp on a toy bandit policy (per-position logits table + bigram), a
// toy value model and a bag-of-tokens reward model.
#include <rlhf/train/ppo.hpp>

#include <doctest/doctest.h>

#include "support/finite_difference.hpp"
#include "support/toy_models.hpp"

#include <cmath>
#include <string>
#include <vector>

using rlhf::token_id;
using rlhf::train::token_sequence;

namespace {

constexpr std::ptrdiff_t vocab = 4;
constexpr std::ptrdiff_t max_positions = 8;
constexpr token_id eos = 0;

template <class T>
struct toy_setup {
  rlhf::test::toy_lm<T> policy{vocab, max_positions};
  rlhf::test::toy_lm<T> reference{vocab, max_positions};
  rlhf::test::toy_value<T> value{vocab, max_positions};
  rlhf::test::toy_bow_reward<T> reward{vocab};
  toy_setup() {
    policy.randomize(21, 0.3);
    reference = policy;  // the frozen SFT model
    reward.weight(3) = T(1);  // one point per token 3
  }
};

// Prompts of one and two tokens (the batch is left-padded).
std::vector<token_sequence> prompts() { return {{1}, {2, 3}, {3}, {1, 2}, {2}, {3, 1}, {1, 1}, {2, 2}}; }
std::vector<token_sequence> pretraining() { return {{1, 2, 3, 1}, {3, 3, 2}, {2, 1}, {1, 3, 2, 2, 1}, {3, 2, 1}}; }

rlhf::train::ppo_options small_options() {
  rlhf::train::ppo_options o;
  o.generation = {.max_new_tokens = 3, .stop_tokens = {eos}};
  o.batch_size = 8;
  o.minibatches = 2;
  o.ppo_epochs = 2;
  o.seed = 5;
  o.pad_id = eos;
  return o;
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

TEST_CASE_TEMPLATE("ppo_trainer: the rollout is aligned — old log-probs equal the sampling log-probs", T, float, double) {
  toy_setup<T> s;
  rlhf::test::toy_sgd popt(0.1), vopt(0.1);
  rlhf::train::ppo_trainer trainer(s.policy, popt, s.value, vopt, s.reward, s.reference, small_options());
  const auto p = prompts();
  rlhf::train::metrics m;
  const auto e = trainer.make_experience(rlhf::train::make_prompt_batch(p, eos), &m);
  REQUIRE(e.rows() == 8);
  CHECK(e.prompt_columns == 2);
  CHECK(e.response_columns() == 3);
  CHECK(m.at("policy/sampling_logp_diff_max") < (sizeof(T) == 4 ? 1e-5 : 1e-12));
  CHECK(m.at("policy/sampling_logp_diff_max") >= 0.0);
  // The policy is its own reference at the start: KL 0, rewards = the score at end_index.
  CHECK(m.at("objective/kl") == doctest::Approx(0.0).scale(1e-6));
  for (std::ptrdiff_t b = 0; b < e.rows(); ++b) {
    double score = 0;
    for (std::ptrdiff_t t = 0; t <= e.end_index(b); ++t) {
      CHECK(e.mask(b, t) == 1);
      score += e.labels(b, t) == 3;
      CHECK(e.sequences.tokens(b, 2 + t) == e.labels(b, t));
    }
    for (std::ptrdiff_t t = 0; t < 2; ++t) score += e.sequences.tokens(b, t) == 3 && e.sequences.mask(b, t);
    CHECK(static_cast<double>(e.scores(b)) == doctest::Approx(score));
    CHECK(static_cast<double>(e.rewards(b, e.end_index(b))) == doctest::Approx(score).scale(1e-5));
    // Positions continue the prompt's: the first response token sits at prompt length.
    const auto prompt_length = static_cast<token_id>(p[static_cast<std::size_t>(b)].size());
    CHECK(e.sequences.positions(b, 2) == prompt_length);
    // A row stops at EOS.
    const bool stopped = e.labels(b, e.end_index(b)) == eos;
    CHECK((stopped || e.end_index(b) == 2));
  }
  CHECK(m.contains("val/num_eos_tokens"));
  CHECK(m.at("kl_ctl/beta") == 0.02);
}

TEST_CASE("ppo_trainer: the policy and value gradients are those of the PPO objective (central differences)") {
  toy_setup<double> s;
  rlhf::test::grad_recorder popt, vopt;
  auto o = small_options();
  o.minibatches = 1;
  o.ppo_epochs = 1;
  o.objective.vf_coef = 0.5;
  // Put some value in the value model so the value loss is not trivial.
  s.value.parameters()[0].value(2) = 0.4;
  s.value.parameters()[1].value(3) = -0.3;
  rlhf::train::ppo_trainer trainer(s.policy, popt, s.value, vopt, s.reward, s.reference, o);
  const auto e = trainer.make_experience(rlhf::train::make_prompt_batch(prompts(), eos));
  // Move the policy away from the rollout policy so ratios differ from 1 (the clip is exercised).
  auto x = flat_parameters(s.policy);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] += 0.05 * std::sin(static_cast<double>(i));
  set_parameters(s.policy, x);
  const auto r = trainer.train_on(e);
  REQUIRE_FALSE(r.event);
  REQUIRE(popt.recorded.size() == 1);

  const auto P = e.prompt_columns, R = e.response_columns(), B = e.rows();
  rlhf::tensor<double, 3> logits(B, P + R, vocab);
  rlhf::tensor<double, 2> logp(B, R), values(B, P + R), v(B, R);
  const auto policy_loss = [&] {
    set_parameters(s.policy, x);
    s.policy.forward(e.sequences.view(), logits.view());
    rlhf::token_logprobs(rlhf::cpu, rlhf::cube_view<const double>(rlhf::train::detail::columns(logits.view(), P - 1, R)),
                         e.labels.view(), {.logp = logp.view()});
    return rlhf::ppo_policy_loss(rlhf::cpu, {.logp = logp.view(), .old_logp = e.logp.view(),
                                             .advantages = e.advantages.view(), .mask = e.mask.view()}, {})
        .loss;
  };
  const auto numeric = rlhf::test::numeric_gradient(policy_loss, x);
  for (std::size_t i = 0; i < numeric.size(); ++i) {
    CAPTURE(i);
    CHECK(popt.recorded[0][i] == doctest::Approx(numeric[i]).epsilon(1e-5).scale(1e-3));
  }
  auto y = flat_parameters(s.value);
  const auto value_loss = [&] {
    set_parameters(s.value, y);
    s.value.values(e.sequences.view(), values.view());
    for (std::ptrdiff_t b = 0; b < B; ++b)
      for (std::ptrdiff_t t = 0; t < R; ++t) v(b, t) = values(b, P - 1 + t);
    return 0.5 * rlhf::ppo_value_loss(rlhf::cpu, {.values = v.view(), .old_values = e.values.view(),
                                                  .returns = e.returns.view(), .mask = e.mask.view()}, {})
                     .loss;
  };
  const auto numeric_v = rlhf::test::numeric_gradient(value_loss, y);
  double norm = 0;
  for (std::size_t i = 0; i < numeric_v.size(); ++i) {
    CAPTURE(i);
    norm += numeric_v[i] * numeric_v[i];
    CHECK(vopt.recorded[0][i] == doctest::Approx(numeric_v[i]).epsilon(1e-5).scale(1e-3));
  }
  CHECK(norm > 1e-6);  // the check is not vacuous
  CHECK(r.stats.at("policy/clipfrac_avg") >= 0.0);
  CHECK(r.stats.at("val/ratio") != 1.0);
}

TEST_CASE("ppo_trainer: ptx changes the policy gradient by exactly gamma times the gradient of the pretraining NLL") {
  const double gamma = 27.8;
  toy_setup<double> with_ptx, without_ptx;
  rlhf::test::grad_recorder p1, v1, p2, v2;
  auto o = small_options();
  o.objective.ptx_coef = gamma;
  rlhf::train::ppo_trainer a(with_ptx.policy, p1, with_ptx.value, v1, with_ptx.reward, with_ptx.reference, o);
  rlhf::train::ppo_trainer b(without_ptx.policy, p2, without_ptx.value, v2, without_ptx.reward, without_ptx.reference, o);
  const auto texts = pretraining();
  std::vector<rlhf::train::sequence_batch> ptx;
  for (std::size_t i = 0; i < 4; ++i)  // ppo_epochs · minibatches
    ptx.push_back(rlhf::train::make_lm_batch(std::span<const token_sequence>(texts).subspan(i % 3, 2), eos));
  const auto prompt_batch = rlhf::train::make_prompt_batch(prompts(), eos);
  const auto ra = a.step(prompt_batch, ptx);
  const auto rb = b.step(prompt_batch);
  REQUIRE(p1.recorded.size() == 4);
  REQUIRE(p2.recorded.size() == 4);
  CHECK(ra.stats.contains("objective/ptx_loss"));
  CHECK_FALSE(rb.stats.contains("objective/ptx_loss"));

  // ∇NLL of each ptx batch: the LM-loss gradient of the same model (one SFT step on the batch,
  // recorded), itself checked by central differences.
  auto probe = with_ptx.policy;
  rlhf::test::grad_recorder lm_grads;
  rlhf::train::sft_trainer nll(probe, lm_grads, {});
  for (std::size_t k = 0; k < 4; ++k) {
    CAPTURE(k);
    REQUIRE_FALSE(nll.step(ptx[k]).event);
    const auto& analytic = lm_grads.recorded.back();
    for (std::size_t i = 0; i < analytic.size(); ++i) {
      CAPTURE(i);
      CHECK(p1.recorded[k][i] - p2.recorded[k][i] == doctest::Approx(gamma * analytic[i]).epsilon(1e-12).scale(1e-12));
    }
    auto x = flat_parameters(probe);
    const auto numeric = rlhf::test::numeric_gradient(
        [&] {
          set_parameters(probe, x);
          return nll.evaluate(ptx[k]).at("eval/loss");
        },
        x);
    set_parameters(probe, x);  // numeric_gradient leaves the last parameter perturbed in the model
    double norm = 0;
    for (std::size_t i = 0; i < numeric.size(); ++i) {
      CAPTURE(i);
      norm += numeric[i] * numeric[i];
      CHECK(analytic[i] == doctest::Approx(numeric[i]).epsilon(1e-4).scale(1e-3));
    }
    CHECK(norm > 1e-4);
    // The value model's gradient does not see the ptx term.
    CHECK(v1.recorded[k] == v2.recorded[k]);
  }
  // Everything but ptx is the same.
  CHECK(ra.stats.at("loss/policy_avg") == rb.stats.at("loss/policy_avg"));
}

TEST_CASE("ppo_trainer: PPO raises the reward of the bandit policy while the adaptive controller holds KL near target") {
  toy_setup<double> s;
  rlhf::test::toy_sgd popt(0.5, 0.5), vopt(0.1, 0.5);
  auto o = small_options();
  o.batch_size = 16;
  o.minibatches = 2;
  o.ppo_epochs = 2;
  const double target = 1.0;
  o.kl = rlhf::adaptive_kl{.init = 0.1, .target = target, .horizon = 32};
  rlhf::train::ppo_trainer trainer(s.policy, popt, s.value, vopt, s.reward, s.reference, o);
  std::vector<double> scores, kls, betas;
  trainer.fit(prompts(), {}, {.epochs = 1000, .max_steps = 80, .on_step = [&](std::uint64_t, const rlhf::train::metrics& m) {
                                scores.push_back(m.at("objective/scores"));
                                kls.push_back(m.at("objective/kl"));
                                betas.push_back(m.at("kl_ctl/beta"));
                              }});
  REQUIRE(scores.size() == 80);
  const auto mean = [](const std::vector<double>& v, std::size_t from, std::size_t to) {
    double sum = 0;
    for (std::size_t i = from; i < to; ++i) sum += v[i];
    return sum / static_cast<double>(to - from);
  };
  MESSAGE("score ", mean(scores, 0, 5), " -> ", mean(scores, 60, 80), ", KL ", mean(kls, 60, 80), ", beta ",
          betas.front(), " -> ", betas.back());
  CHECK(mean(scores, 60, 80) > mean(scores, 0, 5) + 0.5);
  CHECK(mean(kls, 60, 80) > 0.5 * target);
  CHECK(mean(kls, 60, 80) < 2.0 * target);
  CHECK(betas.back() > betas.front());  // KL went above target, so β rose
  CHECK(trainer.state().episode == 80 * 16);
}

TEST_CASE("ppo_trainer: resuming PPO-ptx with an adaptive controller at iteration k is bitwise") {
  auto o = small_options();
  o.kl = rlhf::adaptive_kl{.init = 0.1, .target = 0.5, .horizon = 100};
  o.objective.ptx_coef = 2.0;
  o.ptx_batch_size = 2;
  const auto p = prompts();
  const auto texts = pretraining();
  toy_setup<float> full, half;
  rlhf::test::toy_sgd fp(0.2, 0.9), fv(0.1, 0.9), hp(0.2, 0.9), hv(0.1, 0.9);
  rlhf::train::ppo_trainer a(full.policy, fp, full.value, fv, full.reward, full.reference, o);
  a.fit(p, texts, {.epochs = 100, .max_steps = 6});
  rlhf::train::ppo_trainer b(half.policy, hp, half.value, hv, half.reward, half.reference, o);
  b.fit(p, texts, {.epochs = 100, .max_steps = 3});
  auto policy = half.policy;
  auto value = half.value;
  auto popt = hp, vopt = hv;
  rlhf::train::ppo_trainer c(policy, popt, value, vopt, half.reward, half.reference, o);
  c.restore(b.state());
  CHECK(c.kl_coefficient() == b.kl_coefficient());
  c.fit(p, texts, {.epochs = 100, .max_steps = 6});
  CHECK(c.state() == a.state());
  CHECK(policy == full.policy);
  CHECK(value == full.value);
  CHECK(popt == fp);
  CHECK(vopt == fv);
  CHECK_FALSE(half.policy == full.policy);
  CHECK(a.state().kl.updates == 6);
  CHECK(a.state().ptx_data.offset + a.state().ptx_data.epoch * texts.size() == 6 * 4 * 2);
}

TEST_CASE("ppo_trainer: a NaN stops fit() naming the tensor and the step; bad prompts throw invalid_argument") {
  {
    toy_setup<double> s;
    rlhf::test::toy_sgd popt(0.1), vopt(0.1);
    s.policy.poison_backward(9);  // iteration 3, first minibatch (4 policy backwards per iteration)
    rlhf::train::ppo_trainer trainer(s.policy, popt, s.value, vopt, s.reward, s.reference, small_options());
    CHECK_THROWS_WITH_AS(trainer.fit(prompts(), {}, {.epochs = 100, .max_steps = 5}),
                         "rlhf::train::ppo_trainer: step 3: non-finite policy gradient of parameter 'bigram' [1] (inf)",
                         rlhf::numerical_error);
    CHECK(trainer.state().step == 2);
    CHECK(trainer.state().kl.updates == 2);  // the failed iteration's controller update is undone
  }
  {
    toy_setup<double> s;
    rlhf::test::toy_sgd popt(0.1), vopt(0.1);
    s.value.parameters()[0].value(3) = std::nan("");
    rlhf::train::ppo_trainer trainer(s.policy, popt, s.value, vopt, s.reward, s.reference, small_options());
    const auto r = trainer.step(rlhf::train::make_prompt_batch(prompts(), eos));
    REQUIRE(r.event);
    CHECK(r.event->step == 1);
    CHECK(r.event->tensor.rfind("values [", 0) == 0);
    CHECK(std::isnan(r.event->value));
    CHECK(trainer.state().step == 0);
    CHECK(popt.steps() == 0);
  }
  {
    toy_setup<double> s;
    rlhf::test::toy_sgd popt(0.1), vopt(0.1);
    rlhf::train::ppo_trainer trainer(s.policy, popt, s.value, vopt, s.reward, s.reference, small_options());
    auto right_padded = rlhf::train::make_lm_batch(std::vector<token_sequence>{{1, 2, 3}, {1, 2}}, eos);
    CHECK_THROWS_WITH_AS(trainer.step(right_padded),
                         "rlhf::train::ppo_trainer::make_experience(): prompt row 1 ends in padding; prompts must be "
                         "left-padded (make_prompt_batch)",
                         rlhf::invalid_argument);
    auto o = small_options();
    o.minibatches = 9;
    CHECK_THROWS_AS(rlhf::train::ppo_trainer(s.policy, popt, s.value, vopt, s.reward, s.reference, o),
                    rlhf::invalid_argument);
  }
}

TEST_CASE("ppo_trainer: ema_decay keeps the paper's EMA of the policy weights; use_ema_weights swaps it in and back") {
  auto o = small_options();
  o.ema_decay = 0.992;
  toy_setup<float> s;
  rlhf::test::toy_sgd popt(0.3, 0.5), vopt(0.1);
  // Recompute the average by hand from the weights after every policy step: e = θ_1, then
  // e ← d·e + (1 − d)·θ in the parameter type.
  std::vector<float> expected;
  const float d = 0.992f, one_minus_d = static_cast<float>(1.0 - 0.992);
  int updates = 0;
  o.after_policy_step = [&] {
    const auto theta = flat_parameters(s.policy);
    if (expected.empty()) {
      for (const double x : theta) expected.push_back(static_cast<float>(x));
    } else {
      for (std::size_t i = 0; i < theta.size(); ++i)
        expected[i] = d * expected[i] + one_minus_d * static_cast<float>(theta[i]);
    }
    ++updates;
  };
  rlhf::train::ppo_trainer trainer(s.policy, popt, s.value, vopt, s.reward, s.reference, o);
  REQUIRE(trainer.ema() != nullptr);
  CHECK_THROWS_WITH_AS((void)trainer.use_ema_weights(),
                       "rlhf::train::ppo_trainer::use_ema_weights(): the EMA has no update yet: train at least one step",
                       rlhf::invalid_argument);
  trainer.fit(prompts(), {}, {.epochs = 100, .max_steps = 4});
  REQUIRE(updates == 4 * 4);  // iterations × ppo_epochs × minibatches
  CHECK(trainer.ema()->updates() == 16);
  const auto trained = flat_parameters(s.policy);
  {
    const auto scope = trainer.use_ema_weights();
    const auto inside = flat_parameters(s.policy);
    REQUIRE(inside.size() == expected.size());
    for (std::size_t i = 0; i < inside.size(); ++i) CHECK(static_cast<float>(inside[i]) == expected[i]);
    CHECK(inside != trained);  // the average lags the trained weights
    // Evaluation runs on the average: generation and re-scoring both see it.
    rlhf::train::metrics m;
    (void)trainer.make_experience(rlhf::train::make_prompt_batch(prompts(), eos), &m);
    CHECK(m.at("policy/sampling_logp_diff_max") < 1e-5);
  }
  CHECK(flat_parameters(s.policy) == trained);  // the trained weights are back, bit for bit

  toy_setup<float> plain;
  rlhf::train::ppo_trainer without(plain.policy, popt, plain.value, vopt, plain.reward, plain.reference, small_options());
  CHECK(without.ema() == nullptr);
  CHECK_THROWS_WITH_AS((void)without.use_ema_weights(),
                       "rlhf::train::ppo_trainer::use_ema_weights(): the trainer keeps no EMA: set ppo_options::ema_decay",
                       rlhf::invalid_argument);
  auto bad = small_options();
  bad.ema_decay = 1.5;
  CHECK_THROWS_WITH_AS(rlhf::train::ppo_trainer(plain.policy, popt, plain.value, vopt, plain.reward, plain.reference, bad),
                       "rlhf::train::ppo_trainer: ema_decay must be in [0, 1], got 1.5", rlhf::invalid_argument);
}
