// The trainers' two ways of getting log-probs out of a policy — materialised (B, T, V) logits,
// or hidden states through the fused linear kernel (rlhf::FusedLogProbs) — give the same
// losses, metrics and gradients. The library's GPT models both; a thin wrapper that hides
// hidden() / unembedding() forces the logits path on an identical copy.
#include <rlhf/models/gpt.hpp>
#include <rlhf/train/ppo.hpp>
#include <rlhf/train/sft.hpp>

#include <doctest/doctest.h>

#include "support/toy_models.hpp"

#include <cmath>
#include <string>
#include <vector>

using rlhf::token_id;
using rlhf::train::token_sequence;

namespace {

/// Forwards a model's CausalLM / Policy members; with Fused, also hidden(), unembedding() and
/// backward_hidden() — but not unembedding_grad(), so the trainer accumulates dW in its own
/// buffer. Counts the calls of each path.
template <class M, bool Fused>
class wrapped {
 public:
  using scalar_type = typename M::scalar_type;
  using T = scalar_type;
  explicit wrapped(M& model) : model_(&model) {}

  [[nodiscard]] std::ptrdiff_t vocab_size() const { return model_->vocab_size(); }
  auto parameters() { return model_->parameters(); }
  void forward(const rlhf::token_batch& batch, rlhf::cube_view<T> logits) {
    ++forwards;
    model_->forward(batch, logits);
  }
  void backward(rlhf::cube_view<const T> dlogits) { model_->backward(dlogits); }
  auto generate(const rlhf::token_batch& prompts, const rlhf::generation_options& options) {
    return model_->generate(prompts, options);
  }
  void hidden(const rlhf::token_batch& batch, rlhf::cube_view<T> out)
    requires Fused
  {
    ++hiddens;
    model_->hidden(batch, out);
  }
  [[nodiscard]] rlhf::matrix_view<const T> unembedding() const
    requires Fused
  {
    return model_->unembedding();
  }
  void backward_hidden(rlhf::cube_view<const T> dhidden, rlhf::matrix_view<const T> dunembedding)
    requires Fused
  {
    model_->backward_hidden(dhidden, dunembedding);
  }

  int forwards = 0, hiddens = 0;

 private:
  M* model_;
};

using gpt64 = rlhf::basic_gpt<double>;
static_assert(rlhf::FusedLogProbs<gpt64>);
static_assert(rlhf::FusedLogProbs<wrapped<gpt64, true>>);
static_assert(rlhf::Policy<wrapped<gpt64, false>> && !rlhf::FusedLogProbs<wrapped<gpt64, false>>);

constexpr token_id eos = 0;

rlhf::gpt_config tiny(rlhf::gpt_head head = rlhf::gpt_head::lm) {
  return {.vocab_size = 13, .context = 16, .layers = 1, .heads = 2, .width = 8, .head = head, .seed = 3,
          .init_std = 0.3};
}

std::vector<rlhf::train::sft_example> demonstrations() {
  rlhf::rng gen{{.seed = 17}};
  std::vector<rlhf::train::sft_example> out;
  for (int i = 0; i < 6; ++i) {
    rlhf::train::sft_example e;
    for (std::uint64_t k = 0; k < 1 + gen.uniform_index(3); ++k) e.prompt.push_back(static_cast<token_id>(1 + gen.uniform_index(12)));
    for (std::uint64_t k = 0; k < 2 + gen.uniform_index(3); ++k) e.response.push_back(static_cast<token_id>(1 + gen.uniform_index(12)));
    out.push_back(e);
  }
  return out;
}

void check_close(const std::vector<double>& got, const std::vector<double>& want, double rtol, double atol) {
  REQUIRE(got.size() == want.size());
  double worst = 0, norm = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    worst = std::max(worst, std::abs(got[i] - want[i]) / (atol + rtol * std::abs(want[i])));
    norm += want[i] * want[i];
  }
  CAPTURE(worst);
  CHECK(worst <= 1.0);
  CHECK(norm > 1e-8);  // not vacuous
}

/// Every metric but the timings, equal to rounding.
void check_same_metrics(const rlhf::train::metrics& got, const rlhf::train::metrics& want, double rtol) {
  REQUIRE(got.size() == want.size());
  for (const auto& [name, value] : want.items()) {
    if (name.rfind("time/", 0) == 0) continue;
    CAPTURE(name);
    REQUIRE(got.contains(name));
    CHECK(std::abs(got.at(name) - value) <= rtol * (1e-6 + std::abs(value)));
  }
}

}  // namespace

TEST_CASE("sft_trainer: the fused path gives the logits path's loss, accuracy and gradients") {
  const auto data = demonstrations();
  for (const auto loss_on : {rlhf::train::sft_loss_tokens::response, rlhf::train::sft_loss_tokens::all}) {
    CAPTURE(static_cast<int>(loss_on));
    const auto batch = rlhf::train::make_sft_batch(data, eos, loss_on);
    gpt64 direct(tiny()), buffered_model(tiny()), logits_model(tiny());
    wrapped<gpt64, true> buffered(buffered_model);
    wrapped<gpt64, false> logits(logits_model);
    rlhf::test::grad_recorder g1, g2, g3;
    rlhf::train::sft_trainer t1(direct, g1, {.loss_on = loss_on});
    rlhf::train::sft_trainer t2(buffered, g2, {.loss_on = loss_on});
    rlhf::train::sft_trainer t3(logits, g3, {.loss_on = loss_on});
    const auto r1 = t1.step(batch), r2 = t2.step(batch), r3 = t3.step(batch);
    REQUIRE_FALSE(r1.event);
    check_same_metrics(r1.stats, r3.stats, 1e-12);
    check_same_metrics(r2.stats, r3.stats, 1e-12);
    check_close(g1.recorded[0], g3.recorded[0], 1e-10, 1e-13);
    check_close(g2.recorded[0], g3.recorded[0], 1e-10, 1e-13);
    check_same_metrics(t1.evaluate(batch), t3.evaluate(batch), 1e-12);
    CHECK(buffered.forwards == 0);  // the fused model's logits were never materialised
    CHECK(buffered.hiddens == 1);
    CHECK(logits.forwards == 2);
  }
}

TEST_CASE("sft_trainer: fused and logits paths train along the same trajectory (accuracy included)") {
  const auto data = demonstrations();
  gpt64 fused_model(tiny()), logits_model(tiny());
  wrapped<gpt64, false> logits(logits_model);
  rlhf::test::toy_sgd s1(0.5, 0.5), s2(0.5, 0.5);
  rlhf::train::sft_trainer t1(fused_model, s1, {.batch_size = 3, .seed = 2});
  rlhf::train::sft_trainer t2(logits, s2, {.batch_size = 3, .seed = 2});
  std::vector<rlhf::train::metrics> m1, m2;
  t1.fit(data, {.epochs = 15, .on_step = [&](std::uint64_t, const rlhf::train::metrics& m) { m1.push_back(m); }});
  t2.fit(data, {.epochs = 15, .on_step = [&](std::uint64_t, const rlhf::train::metrics& m) { m2.push_back(m); }});
  REQUIRE(m1.size() == m2.size());
  for (std::size_t i = 0; i < m1.size(); ++i) check_same_metrics(m1[i], m2[i], 1e-8);
  const auto e1 = t1.evaluate(data), e2 = t2.evaluate(data);
  check_same_metrics(e1, e2, 1e-8);
  CHECK(e1.at("eval/mean_token_accuracy") > 0.3);  // the accuracy comparison is not of zeros
  CHECK(e1.at("eval/loss") < m1.front().at("loss"));
}

TEST_CASE("sft_trainer: the fused path in float agrees with the logits path to float rounding") {
  const auto data = demonstrations();
  const auto batch = rlhf::train::make_sft_batch(data, eos);
  rlhf::gpt fused_model(tiny()), logits_model(tiny());
  wrapped<rlhf::gpt, false> logits(logits_model);
  rlhf::test::grad_recorder g1, g2;
  rlhf::train::sft_trainer t1(fused_model, g1);
  rlhf::train::sft_trainer t2(logits, g2);
  const auto r1 = t1.step(batch), r2 = t2.step(batch);
  check_same_metrics(r1.stats, r2.stats, 1e-5);
  check_close(g1.recorded[0], g2.recorded[0], 1e-3, 1e-5);
}

namespace {

rlhf::train::ppo_options ppo_small() {
  rlhf::train::ppo_options o;
  o.generation = {.max_new_tokens = 4, .stop_tokens = {eos}};
  o.batch_size = 6;
  o.minibatches = 2;
  o.ppo_epochs = 2;
  o.seed = 8;
  o.pad_id = eos;
  o.objective.ptx_coef = 2.0;
  o.ptx_batch_size = 2;
  o.kl = rlhf::adaptive_kl{.init = 0.1, .target = 0.5, .horizon = 20};
  return o;
}

std::vector<token_sequence> ppo_prompts() { return {{1, 2}, {3}, {4, 5, 6}, {7}, {8, 9}, {10, 11, 12}, {2, 4}, {6}}; }
std::vector<token_sequence> ptx_texts() { return {{1, 2, 3, 4}, {5, 6, 7}, {8, 9, 10, 11, 12}, {3, 1}, {2, 2, 4}}; }

}  // namespace

TEST_CASE("ppo_trainer: the fused path gives the logits path's rollout, metrics and gradients (PPO-ptx)") {
  // Direct GPT (fused, dW into the model's gradient), a wrapper exposing the fused members
  // (dW through the trainer's buffer) and a logits-only wrapper: policy and reference alike.
  gpt64 p1(tiny()), p2(tiny()), p3(tiny());
  gpt64 ref1(tiny()), ref2(tiny()), ref3(tiny());
  wrapped<gpt64, true> p2w(p2), ref2w(ref2);
  wrapped<gpt64, false> p3w(p3), ref3w(ref3);
  const auto rm = gpt64(tiny()).with_head(rlhf::gpt_head::reward, 9);
  gpt64 rm1 = rm, rm2 = rm, rm3 = rm;
  gpt64 v1 = rm.with_head(rlhf::gpt_head::value), v2 = v1, v3 = v1;
  rlhf::test::grad_recorder pg1, pg2, pg3, vg1, vg2, vg3;
  const auto o = ppo_small();
  rlhf::train::ppo_trainer t1(p1, pg1, v1, vg1, rm1, ref1, o);
  rlhf::train::ppo_trainer t2(p2w, pg2, v2, vg2, rm2, ref2w, o);
  rlhf::train::ppo_trainer t3(p3w, pg3, v3, vg3, rm3, ref3w, o);
  // Move the policies off the reference so the KL and the ratios are not trivial.
  for (auto* p : {&p1, &p2, &p3}) {
    auto w = p->flat_values();
    for (std::ptrdiff_t i = 0; i < w.extent(0); ++i) w(i) += 0.05 * std::sin(static_cast<double>(i));
  }
  const auto prompts = ppo_prompts();
  const auto texts = ptx_texts();
  std::vector<rlhf::train::sequence_batch> ptx;
  for (std::size_t i = 0; i < 4; ++i)
    ptx.push_back(rlhf::train::make_lm_batch(std::span<const token_sequence>(texts).subspan(i, 2), eos));
  const auto batch = rlhf::train::make_prompt_batch(std::span<const token_sequence>(prompts).first(6), eos);
  const auto r1 = t1.step(batch, ptx), r2 = t2.step(batch, ptx), r3 = t3.step(batch, ptx);
  REQUIRE_FALSE(r1.event);
  REQUIRE_FALSE(r3.event);
  check_same_metrics(r1.stats, r3.stats, 1e-10);
  check_same_metrics(r2.stats, r3.stats, 1e-10);
  CHECK(r1.stats.at("policy/sampling_logp_diff_max") < 1e-12);
  CHECK(r1.stats.at("objective/kl") > 1e-4);
  CHECK(r1.stats.at("objective/ptx_loss") > 0.0);
  REQUIRE(pg1.recorded.size() == 4);
  for (std::size_t k = 0; k < 4; ++k) {
    CAPTURE(k);
    check_close(pg1.recorded[k], pg3.recorded[k], 1e-9, 1e-12);
    check_close(pg2.recorded[k], pg3.recorded[k], 1e-9, 1e-12);
    check_close(vg1.recorded[k], vg3.recorded[k], 1e-9, 1e-12);
  }
  CHECK(p2w.forwards == 0);
  CHECK(ref2w.forwards == 0);
  CHECK(p3w.hiddens == 0);
  CHECK(p2w.hiddens == 1 + 4 + 4);  // old logp; 4 minibatches; 4 ptx batches
}

TEST_CASE("ppo_trainer: fused and logits paths follow the same PPO-ptx trajectory over several iterations") {
  gpt64 p1(tiny()), p3(tiny()), ref1(tiny()), ref3(tiny());
  wrapped<gpt64, false> p3w(p3), ref3w(ref3);
  const auto rm = gpt64(tiny()).with_head(rlhf::gpt_head::reward, 9);
  gpt64 rm1 = rm, rm3 = rm, v1 = rm.with_head(rlhf::gpt_head::value), v3 = v1;
  rlhf::test::toy_sgd ps1(0.3, 0.5), ps3(0.3, 0.5), vs1(0.1), vs3(0.1);
  const auto o = ppo_small();
  rlhf::train::ppo_trainer t1(p1, ps1, v1, vs1, rm1, ref1, o);
  rlhf::train::ppo_trainer t3(p3w, ps3, v3, vs3, rm3, ref3w, o);
  std::vector<rlhf::train::metrics> m1, m3;
  t1.fit(ppo_prompts(), ptx_texts(), {.epochs = 100, .max_steps = 3,
                                      .on_step = [&](std::uint64_t, const rlhf::train::metrics& m) { m1.push_back(m); }});
  t3.fit(ppo_prompts(), ptx_texts(), {.epochs = 100, .max_steps = 3,
                                      .on_step = [&](std::uint64_t, const rlhf::train::metrics& m) { m3.push_back(m); }});
  REQUIRE(m1.size() == 3);
  REQUIRE(m3.size() == 3);
  for (std::size_t i = 0; i < 3; ++i) check_same_metrics(m1[i], m3[i], 1e-8);
  CHECK(m1.back().at("objective/kl") > 1e-4);  // the policy moved
}
