// Tests for <rlhf/preference_loss.hpp>: known answers, every golden case of
// rm_pairwise_loss.json (TRL, OpenRLHF, InstructGPT K-wise, lm-human-preferences best-of-N),
// finite-difference gradients, extreme reward gaps, ties, and argument errors.
#include <rlhf/preference_loss.hpp>
#include <rlhf/tensor.hpp>

#include <doctest/doctest.h>

#include <support/finite_difference.hpp>
#include <support/golden.hpp>
#include <support/views.hpp>
#include <support/random.hpp>
#include <support/tolerances.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace {

using rlhf::test::golden_case;
using rlhf::test::to_array;

constexpr const char* golden_file = "rm_pairwise_loss.json";

using rlhf::test::cvec;
using rlhf::test::vec;

const rlhf::test::tolerance gradcheck{.rtol = 1e-3, .atol = 1e-5};

std::vector<double> flat(const rlhf::test::json& j) { return to_array(j).values; }

}  // namespace

// ---------------------------------------------------------------------------------------------
// Pairwise

TEST_CASE_TEMPLATE("pairwise_preference_loss: equal rewards give log 2 and gradients -/+ 1/(2B)", T,
                   float, double) {
  std::vector<T> chosen{0.5, -1, 3}, rejected{0.5, -1, 3}, dc(3), dr(3);
  const auto s = rlhf::pairwise_preference_loss(rlhf::cpu, cvec(chosen), cvec(rejected), {}, vec(dc),
                                                vec(dr));
  RLHF_CHECK_SCALAR(s.loss, std::log(2.0), rlhf::test::golden_tolerance<double>());
  RLHF_CHECK_CLOSE(dc, std::vector<double>(3, -0.5 / 3), rlhf::test::golden_tolerance<T>());
  RLHF_CHECK_CLOSE(dr, std::vector<double>(3, 0.5 / 3), rlhf::test::golden_tolerance<T>());
  CHECK(s.accuracy == 0.0);  // ties are not correct (TRL: chosen > rejected, strictly)
  CHECK(s.mean_margin == 0.0);
  RLHF_CHECK_SCALAR(s.chosen_mean, 2.5 / 3, rlhf::test::golden_tolerance<T>());
  RLHF_CHECK_SCALAR(s.rejected_mean, 2.5 / 3, rlhf::test::golden_tolerance<T>());
}

TEST_CASE("pairwise_preference_loss: reproduces TRL RewardTrainer (HEAD) with its metrics (golden)") {
  for (const char* name : {"trl_head_pairwise", "trl_head_pairwise_margin", "trl_head_center_rewards_0.01",
                           "trl_head_batch1"}) {
    CAPTURE(name);
    const auto& c = golden_case(golden_file, name);
    const auto chosen = flat(c["inputs"]["rewards_chosen"]);
    const auto rejected = flat(c["inputs"]["rewards_rejected"]);
    const auto margin = c["inputs"]["margin"].is_null() ? std::vector<double>{} : flat(c["inputs"]["margin"]);
    const auto& coef = c["params"]["center_rewards_coefficient"];
    std::vector<double> dc(chosen.size()), dr(chosen.size());
    const auto s = rlhf::pairwise_preference_loss(rlhf::cpu, cvec(chosen), cvec(rejected), cvec(margin), vec(dc),
                                                  vec(dr), {.center_coef = coef.is_null() ? 0.0 : coef.get<double>()});
    const auto tol = rlhf::test::golden_tolerance<double>();
    RLHF_CHECK_SCALAR(s.loss, c["outputs"]["loss"].get<double>(), tol);
    RLHF_CHECK_CLOSE(dc, flat(c["outputs"]["grad_rewards_chosen"]), tol);
    RLHF_CHECK_CLOSE(dr, flat(c["outputs"]["grad_rewards_rejected"]), tol);
    RLHF_CHECK_SCALAR(s.accuracy, c["outputs"]["accuracy"].get<double>(), tol);
    RLHF_CHECK_SCALAR(s.mean_margin, c["outputs"]["mean_margin"].get<double>(), tol);
  }
}

TEST_CASE("pairwise_preference_loss: reproduces TRL v0.11.4 on (B,1) rewards (golden)") {
  const auto& c = golden_case(golden_file, "trl_v0.11.4_pairwise");
  const auto chosen = flat(c["inputs"]["rewards_chosen_Bx1"]);  // (B,1) flattened to (B)
  const auto rejected = flat(c["inputs"]["rewards_rejected_Bx1"]);
  const auto s = rlhf::pairwise_preference_loss(rlhf::cpu, cvec(chosen), cvec(rejected), {}, {}, {});
  RLHF_CHECK_SCALAR(s.loss, c["outputs"]["loss"].get<double>(), rlhf::test::golden_tolerance<double>());
}

TEST_CASE("pairwise_preference_loss: TRL v0.11.4's (B,1) - (B) margin broadcasting bug is not reproduced") {
  // TRL v0.11.4 keeps rewards (B,1), so a (B) margin broadcasts to (B,B) and the loss averages
  // every chosen_i - rejected_i - margin_j: the reference returns 0.4291746514415794 here. We
  // compute the per-pair margin loss, which is TRL HEAD's and OpenRLHF's value for these inputs.
  const auto& c = golden_case(golden_file, "trl_v0.11.4_margin_broadcasts_BxB");
  const auto chosen = flat(c["inputs"]["rewards_chosen_Bx1"]);
  const auto rejected = flat(c["inputs"]["rewards_rejected_Bx1"]);
  const auto margin = flat(c["inputs"]["margin"]);
  const auto s = rlhf::pairwise_preference_loss(rlhf::cpu, cvec(chosen), cvec(rejected), cvec(margin), {}, {});
  const double correct = golden_case(golden_file, "trl_head_pairwise_margin")["outputs"]["loss"].get<double>();
  RLHF_CHECK_SCALAR(s.loss, correct, rlhf::test::golden_tolerance<double>());
  CHECK_FALSE(rlhf::test::close(s.loss, c["outputs"]["loss"].get<double>(), {.rtol = 1e-3}));
  // The reference's value, recomputed: mean over (i, j) of -log σ(c_i - r_i - m_j).
  double buggy = 0;
  for (std::size_t i = 0; i < chosen.size(); ++i)
    for (double m : margin) buggy -= rlhf::math::log_sigmoid(chosen[i] - rejected[i] - m);
  buggy /= static_cast<double>(chosen.size() * margin.size());
  RLHF_CHECK_SCALAR(buggy, c["outputs"]["loss"].get<double>(), rlhf::test::golden_tolerance<double>());
}

TEST_CASE("pairwise_preference_loss: reproduces OpenRLHF PairWiseLoss and LogExpLoss (golden)") {
  struct item {
    const char* name;
    rlhf::pairwise_form form;
  };
  for (auto [name, form] : {item{"openrlhf_pairwise", rlhf::pairwise_form::log_sigmoid},
                            item{"openrlhf_pairwise_margin", rlhf::pairwise_form::log_sigmoid},
                            item{"openrlhf_logexp", rlhf::pairwise_form::log_exp}}) {
    CAPTURE(name);
    const auto& c = golden_case(golden_file, name);
    const auto chosen = flat(c["inputs"]["chosen_reward"]);
    const auto rejected = flat(c["inputs"]["reject_reward"]);
    const auto margin = c["inputs"]["margin"].is_null() ? std::vector<double>{} : flat(c["inputs"]["margin"]);
    std::vector<double> dc(chosen.size()), dr(chosen.size());
    const auto s = rlhf::pairwise_preference_loss(rlhf::cpu, cvec(chosen), cvec(rejected), cvec(margin), vec(dc),
                                                  vec(dr), {.form = form});
    const auto tol = rlhf::test::golden_tolerance<double>();
    RLHF_CHECK_SCALAR(s.loss, c["outputs"]["loss"].get<double>(), tol);
    RLHF_CHECK_CLOSE(dc, flat(c["outputs"]["grad_chosen"]), tol);
    RLHF_CHECK_CLOSE(dr, flat(c["outputs"]["grad_reject"]), tol);
  }
}

TEST_CASE_TEMPLATE("pairwise_preference_loss: float agrees with double on the golden inputs", T, float) {
  const auto& c = golden_case(golden_file, "trl_head_center_rewards_0.01");
  const auto chosen = to_array(c["inputs"]["rewards_chosen"]).as<T>();
  const auto rejected = to_array(c["inputs"]["rewards_rejected"]).as<T>();
  const std::vector<T> margin{0, 1, 3, 0.5};
  std::vector<T> dc(4), dr(4);
  const auto s = rlhf::pairwise_preference_loss(rlhf::cpu, cvec(chosen), cvec(rejected), cvec(margin), vec(dc),
                                                vec(dr), {.center_coef = 0.01});
  // The reference in double, from the same (float-rounded) inputs.
  const std::vector<double> cd(chosen.begin(), chosen.end()), rd(rejected.begin(), rejected.end()),
      md(margin.begin(), margin.end());
  std::vector<double> dcd(4), drd(4);
  const auto sd = rlhf::pairwise_preference_loss(rlhf::cpu, cvec(cd), cvec(rd), cvec(md), vec(dcd), vec(drd),
                                                 {.center_coef = 0.01});
  RLHF_CHECK_SCALAR(s.loss, sd.loss, rlhf::test::golden_tolerance<double>());  // evaluated in double
  RLHF_CHECK_CLOSE(dc, dcd, rlhf::test::golden_tolerance<T>());
  RLHF_CHECK_CLOSE(dr, drd, rlhf::test::golden_tolerance<T>());
}

TEST_CASE("pairwise_preference_loss: gradients match central finite differences") {
  auto chosen = rlhf::test::normal_vector<double>(7, 11, 2.0);
  auto rejected = rlhf::test::normal_vector<double>(7, 12, 2.0);
  const auto margin = rlhf::test::normal_vector<double>(7, 13, 0.5);
  for (auto form : {rlhf::pairwise_form::log_sigmoid, rlhf::pairwise_form::log_exp})
    for (double coef : {0.0, 0.01, 0.3})
      for (bool with_margin : {false, true}) {
        CAPTURE(coef);
        CAPTURE(with_margin);
        const rlhf::pairwise_loss_options options{.center_coef = coef, .form = form};
        const auto m = with_margin ? cvec(margin) : rlhf::vector_view<const double>{};
        const auto f = [&] {
          return rlhf::pairwise_preference_loss(rlhf::cpu, cvec(chosen), cvec(rejected), m, {}, {}, options).loss;
        };
        std::vector<double> dc(7), dr(7);
        rlhf::pairwise_preference_loss(rlhf::cpu, cvec(chosen), cvec(rejected), m, vec(dc), vec(dr), options);
        RLHF_CHECK_CLOSE(dc, rlhf::test::numeric_gradient(f, chosen), gradcheck);
        RLHF_CHECK_CLOSE(dr, rlhf::test::numeric_gradient(f, rejected), gradcheck);
      }
}

TEST_CASE_TEMPLATE("pairwise_preference_loss: reward gaps of +-1e4 stay finite in both forms", T, float, double) {
  // The references differ here: OpenRLHF LogExpLoss evaluates log(1 + exp(r_r - r_c)) literally,
  // which is inf for r_r - r_c = 2e4 (with a NaN gradient). Ours is the stable softplus in both
  // forms: finite, and equal to the log-sigmoid form.
  std::vector<T> chosen{1e4, -1e4, 0}, rejected{-1e4, 1e4, 0}, dc(3), dr(3);
  for (auto form : {rlhf::pairwise_form::log_sigmoid, rlhf::pairwise_form::log_exp}) {
    const auto s = rlhf::pairwise_preference_loss(rlhf::cpu, cvec(chosen), cvec(rejected), {}, vec(dc), vec(dr),
                                                  {.form = form});
    // −log σ(2e4) = 0 (rounds), −log σ(−2e4) = 2e4, −log σ(0) = log 2; mean over 3.
    RLHF_CHECK_SCALAR(s.loss, (2e4 + std::log(2.0)) / 3, rlhf::test::golden_tolerance<double>());
    RLHF_CHECK_CLOSE(dc, (std::vector<double>{0, -1.0 / 3, -0.5 / 3}), rlhf::test::golden_tolerance<T>());
    RLHF_CHECK_CLOSE(dr, (std::vector<double>{0, 1.0 / 3, 0.5 / 3}), rlhf::test::golden_tolerance<T>());
    for (T g : dc) CHECK(std::isfinite(static_cast<double>(g)));
    CHECK(s.accuracy == doctest::Approx(1.0 / 3));
  }
}

TEST_CASE_TEMPLATE("pairwise_preference_loss: batch of one and rlhf::tensor arguments", T, float, double) {
  rlhf::tensor<T, 1> chosen(1), rejected(1), dc(1), dr(1);
  chosen(0) = 2;
  rejected(0) = 1;
  const auto s = rlhf::pairwise_preference_loss(rlhf::cpu, chosen, rejected, {}, dc, dr);
  RLHF_CHECK_SCALAR(s.loss, -std::log(1.0 / (1.0 + std::exp(-1.0))), rlhf::test::golden_tolerance<T>());
  RLHF_CHECK_SCALAR(dc(0), -1.0 / (1.0 + std::exp(1.0)), rlhf::test::golden_tolerance<T>());
  CHECK(s.accuracy == 1.0);
  CHECK(s.mean_margin == 1.0);
}

TEST_CASE("pairwise_preference_loss: strided views") {
  // chosen and rejected interleaved in one buffer: stride 2.
  std::vector<double> both{3, 1, 0, 2, 5, 5};
  const std::ptrdiff_t extents[1] = {3}, strides[1] = {2};
  rlhf::vector_view<const double> chosen(both.data(), extents, strides), rejected(both.data() + 1, extents, strides);
  std::vector<double> grads(6, 99.0);
  rlhf::vector_view<double> dc(grads.data(), extents, strides), dr(grads.data() + 1, extents, strides);
  const auto s = rlhf::pairwise_preference_loss(rlhf::cpu, chosen, rejected, {}, dc, dr);
  std::vector<double> c2{3, 0, 5}, r2{1, 2, 5}, dc2(3), dr2(3);
  const auto s2 = rlhf::pairwise_preference_loss(rlhf::cpu, cvec(c2), cvec(r2), {}, vec(dc2), vec(dr2));
  CHECK(s.loss == s2.loss);
  for (int i = 0; i < 3; ++i) {
    CHECK(grads[2 * i] == dc2[i]);
    CHECK(grads[2 * i + 1] == dr2[i]);
  }
}

TEST_CASE("pairwise_preference_loss: bad arguments throw rlhf::invalid_argument naming the values") {
  std::vector<double> a(4, 1.0), b(3, 1.0), g(4), g3(3);
  CHECK_THROWS_WITH_AS(rlhf::pairwise_preference_loss(rlhf::cpu, cvec(a), cvec(b), {}, vec(g), vec(g)),
                       "rlhf::pairwise_preference_loss(): chosen is 4 but rejected is 3", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::pairwise_preference_loss(rlhf::cpu, cvec(a), cvec(a), cvec(b), vec(g), vec(g)),
                       "rlhf::pairwise_preference_loss(): chosen is 4 but margin is 3", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::pairwise_preference_loss(rlhf::cpu, cvec(a), cvec(a), {}, vec(g3), vec(g)),
                       "rlhf::pairwise_preference_loss(): chosen is 4 but dchosen is 3", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::pairwise_preference_loss(rlhf::cpu, rlhf::vector_view<const double>{},
                                                      rlhf::vector_view<const double>{}, {}, {}, {}),
                       "rlhf::pairwise_preference_loss(): chosen is empty (0)", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::pairwise_preference_loss(rlhf::cpu, cvec(a), cvec(a), {}, vec(g), vec(g),
                                                      {.center_coef = -0.5}),
                       "rlhf::pairwise_preference_loss(): center_coef must be finite and >= 0, got -0.5",
                       rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::pairwise_preference_loss(rlhf::cpu, cvec(a), cvec(a), {}, vec(g), vec(g),
                                                      {.form = static_cast<rlhf::pairwise_form>(7)}),
                       "rlhf::pairwise_preference_loss(): form must be pairwise_form::log_sigmoid or "
                       "pairwise_form::log_exp, got 7",
                       rlhf::invalid_argument);
}

// ---------------------------------------------------------------------------------------------
// K-wise

TEST_CASE("kwise_ranking_loss: reproduces InstructGPT eq. 1 composed from OpenRLHF PairWiseLoss (golden)") {
  const auto& c = golden_case(golden_file, "instructgpt_kwise_K4_two_prompts");
  const auto rewards = flat(c["inputs"]["rewards_in_rank_order_best_first"]);  // (2, 4) -> N = 8
  const std::vector<std::ptrdiff_t> offsets{0, 4, 8};
  const auto expected_grads = flat(c["outputs"]["grad_per_prompt_rewards"]);  // ∂L_p/∂r, per prompt
  const auto tol = rlhf::test::golden_tolerance<double>();
  // Best first: no ranks needed. And the same with explicit ranks, shuffled.
  std::vector<double> grads(8), prompt_losses(2);
  auto s = rlhf::kwise_ranking_loss(rlhf::cpu, cvec(rewards), cvec(offsets), {}, vec(grads), vec(prompt_losses));
  RLHF_CHECK_SCALAR(s.loss, c["outputs"]["loss_batch_mean"].get<double>(), tol);
  RLHF_CHECK_CLOSE(prompt_losses, flat(c["outputs"]["loss_per_prompt"]), tol);
  CHECK(s.pairs == 12);
  CHECK(s.prompts == 2);
  // The golden gradients are those of each prompt's own loss; the batch mean divides by P = 2.
  std::vector<double> halved(expected_grads);
  for (auto& g : halved) g /= 2;
  RLHF_CHECK_CLOSE(grads, halved, tol);
  // sum_over_prompts reproduces the per-prompt gradients exactly.
  s = rlhf::kwise_ranking_loss(rlhf::cpu, cvec(rewards), cvec(offsets), {}, vec(grads), {},
                               {.reduction = rlhf::kwise_reduction::sum_over_prompts});
  RLHF_CHECK_CLOSE(grads, expected_grads, tol);
  RLHF_CHECK_SCALAR(s.loss, 2 * c["outputs"]["loss_batch_mean"].get<double>(), tol);
  // Prompt 1 is [0.3, 0.9, -0.2, -1.5] best first: its best-ranked completion scores below the
  // second, so 5 of 6 pairs are ordered correctly there, all 6 in prompt 0.
  CHECK(s.accuracy == doctest::Approx(11.0 / 12));

  // Explicit ranks on a permuted layout give the same per-completion gradients.
  const std::vector<int> perm{2, 0, 3, 1};
  std::vector<double> shuffled(8), expected_shuffled(8);
  std::vector<std::int32_t> ranks(8);
  for (int p = 0; p < 2; ++p)
    for (int i = 0; i < 4; ++i) {
      shuffled[4 * p + i] = rewards[4 * p + perm[i]];
      ranks[4 * p + i] = perm[i];
      expected_shuffled[4 * p + i] = halved[4 * p + perm[i]];
    }
  s = rlhf::kwise_ranking_loss(rlhf::cpu, cvec(shuffled), cvec(offsets), cvec(ranks), vec(grads), {});
  RLHF_CHECK_SCALAR(s.loss, c["outputs"]["loss_batch_mean"].get<double>(), tol);
  RLHF_CHECK_CLOSE(grads, expected_shuffled, tol);
}

TEST_CASE_TEMPLATE("kwise_ranking_loss: K = 2 equals the pairwise loss", T, float, double) {
  std::vector<T> rewards{1.5, -0.5, 0.25, 2.0, -3, 4};  // pairs (1.5, -0.5), (0.25, 2), (-3, 4), best first
  const std::vector<std::ptrdiff_t> offsets{0, 2, 4, 6};
  std::vector<T> grads(6);
  const auto s = rlhf::kwise_ranking_loss(rlhf::cpu, cvec(rewards), cvec(offsets), {}, vec(grads), {});
  std::vector<T> chosen{1.5, 0.25, -3}, rejected{-0.5, 2.0, 4}, dc(3), dr(3);
  const auto p = rlhf::pairwise_preference_loss(rlhf::cpu, cvec(chosen), cvec(rejected), {}, vec(dc), vec(dr));
  RLHF_CHECK_SCALAR(s.loss, p.loss, rlhf::test::golden_tolerance<double>());
  CHECK(s.accuracy == p.accuracy);
  for (int i = 0; i < 3; ++i) {
    CHECK(grads[2 * i] == dc[i]);
    CHECK(grads[2 * i + 1] == dr[i]);
  }
}

TEST_CASE("kwise_ranking_loss: ties are not comparisons; an all-tie prompt is left out of the mean") {
  // Prompt 0: K = 3, ranks {0, 1, 1}: pairs (0,1), (0,2) only.
  // Prompt 1: K = 2, ranks {0, 0}: no pair -> L_1 = 0, zero gradient, not counted.
  // Prompt 2: K = 4, ranks {3, 0, 2, 0}: pairs where ranks differ (5 of 6).
  const std::vector<double> rewards{0.2, -0.1, 0.4, 7.0, -7.0, 0.0, 1.0, -0.5, 2.0};
  const std::vector<std::ptrdiff_t> offsets{0, 3, 5, 9};
  const std::vector<std::int32_t> ranks{0, 1, 1, 0, 0, 3, 0, 2, 0};
  std::vector<double> grads(9), prompt_losses(3);
  const auto s = rlhf::kwise_ranking_loss(rlhf::cpu, cvec(rewards), cvec(offsets), cvec(ranks), vec(grads),
                                          vec(prompt_losses));
  CHECK(s.pairs == 2 + 5);
  CHECK(s.prompts == 2);
  CHECK(prompt_losses[1] == 0.0);
  CHECK(grads[3] == 0.0);
  CHECK(grads[4] == 0.0);
  const auto bt = [](double x) { return -rlhf::math::log_sigmoid(x); };
  const double l0 = (bt(0.2 + 0.1) + bt(0.2 - 0.4)) / 2;
  // prompt 2 (indices 5..8 = r 0, 1, -0.5, 2; ranks 3, 0, 2, 0): better -> worse pairs
  // (1 > 5), (1 > 7), (7 > 5), (8 > 5), (8 > 7); (1, 8) tie.
  const double l2 = (bt(1.0 - 0.0) + bt(1.0 + 0.5) + bt(-0.5 - 0.0) + bt(2.0 - 0.0) + bt(2.0 + 0.5)) / 5;
  RLHF_CHECK_CLOSE(prompt_losses, (std::vector<double>{l0, 0.0, l2}), rlhf::test::golden_tolerance<double>());
  RLHF_CHECK_SCALAR(s.loss, (l0 + l2) / 2, rlhf::test::golden_tolerance<double>());
  // Accuracy over the 7 comparable pairs: wrong are (0 > 2: 0.2 < 0.4) and (7 > 5: -0.5 < 0).
  CHECK(s.accuracy == doctest::Approx(5.0 / 7));
}

TEST_CASE("kwise_ranking_loss: a batch without any comparable pair has loss 0 and zero gradient") {
  // Composed from OpenRLHF PairWiseLoss, an empty set of pairs would give mean([]) = NaN. We
  // define the loss of a batch without comparisons as 0 (no gradient, nothing to learn).
  const std::vector<double> rewards{1, 2, 3, 4};
  const std::vector<std::ptrdiff_t> offsets{0, 2, 4};
  const std::vector<std::int32_t> ranks{1, 1, 0, 0};
  std::vector<double> grads(4, 9.0);
  const auto s = rlhf::kwise_ranking_loss(rlhf::cpu, cvec(rewards), cvec(offsets), cvec(ranks), vec(grads), {});
  CHECK(s.loss == 0.0);
  CHECK(s.pairs == 0);
  CHECK(s.prompts == 0);
  CHECK(s.accuracy == 0.0);
  CHECK(grads == std::vector<double>(4, 0.0));
}

TEST_CASE("kwise_ranking_loss: gradients match central finite differences (ragged K, ties, both reductions)") {
  auto rewards = rlhf::test::normal_vector<double>(12, 21, 1.5);
  const std::vector<std::ptrdiff_t> offsets{0, 2, 6, 12};
  const std::vector<std::int32_t> ranks{1, 0, 2, 0, 1, 2, 0, 4, 1, 1, 3, 2};
  for (auto reduction : {rlhf::kwise_reduction::mean_over_prompts, rlhf::kwise_reduction::sum_over_prompts}) {
    const auto f = [&] {
      return rlhf::kwise_ranking_loss(rlhf::cpu, cvec(rewards), cvec(offsets), cvec(ranks), {}, {},
                                      {.reduction = reduction})
          .loss;
    };
    std::vector<double> grads(12);
    rlhf::kwise_ranking_loss(rlhf::cpu, cvec(rewards), cvec(offsets), cvec(ranks), vec(grads), {},
                             {.reduction = reduction});
    RLHF_CHECK_CLOSE(grads, rlhf::test::numeric_gradient(f, rewards), gradcheck);
  }
}

TEST_CASE_TEMPLATE("kwise_ranking_loss: reward gaps of +-1e4 stay finite", T, float, double) {
  std::vector<T> rewards{-1e4, 0, 1e4, 1e4, -1e4};
  const std::vector<std::ptrdiff_t> offsets{0, 3, 5};
  std::vector<T> grads(5);
  const auto s = rlhf::kwise_ranking_loss(rlhf::cpu, cvec(rewards), cvec(offsets), {}, vec(grads), {});
  CHECK(std::isfinite(s.loss));
  // Prompt 0 best first is fully inverted: pairs gaps -1e4, -2e4, -1e4 -> (4e4 / 3); prompt 1: 0.
  RLHF_CHECK_SCALAR(s.loss, (4e4 / 3) / 2, rlhf::test::golden_tolerance<double>());
  for (T g : grads) CHECK(std::isfinite(static_cast<double>(g)));
  RLHF_CHECK_CLOSE(grads, (std::vector<double>{-2.0 / 6, 0, 2.0 / 6, 0, 0}), rlhf::test::golden_tolerance<T>());
}

TEST_CASE("kwise_pairs: expands a K-wise layout into comparable pairs") {
  const std::vector<std::ptrdiff_t> offsets{0, 3, 5};
  const std::vector<std::int32_t> ranks{2, 0, 1, 0, 0};
  const auto pairs = rlhf::kwise_pairs(cvec(offsets), cvec(ranks));
  const std::vector<rlhf::ranked_pair> expected{{1, 0, 0}, {2, 0, 0}, {1, 2, 0}};
  CHECK(pairs == expected);
  const auto all = rlhf::kwise_pairs(cvec(offsets));
  CHECK(all.size() == 3 + 1);
  CHECK(all.back() == rlhf::ranked_pair{3, 4, 1});

  // With equal K and no ties, the pairwise loss over the pairs equals the K-wise loss.
  const auto rewards = rlhf::test::normal_vector<double>(8, 31);
  const std::vector<std::ptrdiff_t> even{0, 4, 8};
  std::vector<double> chosen, rejected;
  for (const auto& p : rlhf::kwise_pairs(cvec(even))) {
    chosen.push_back(rewards[static_cast<std::size_t>(p.better)]);
    rejected.push_back(rewards[static_cast<std::size_t>(p.worse)]);
  }
  const auto k = rlhf::kwise_ranking_loss(rlhf::cpu, cvec(rewards), cvec(even), {}, {}, {});
  const auto pw = rlhf::pairwise_preference_loss(rlhf::cpu, cvec(chosen), cvec(rejected), {}, {}, {});
  RLHF_CHECK_SCALAR(k.loss, pw.loss, (rlhf::test::tolerance{.rtol = 1e-14}));
}

TEST_CASE("kwise_ranking_loss: bad arguments throw rlhf::invalid_argument naming the values") {
  const std::vector<double> r(5, 0.0);
  std::vector<double> g(5), g4(4), pl(3);
  const std::vector<std::ptrdiff_t> ok{0, 2, 5}, one{0}, start1{1, 3, 5}, short_prompt{0, 1, 5}, wrong_end{0, 2, 6};
  const std::vector<std::int32_t> ranks4(4, 0), negative{0, 1, -1, 0, 0};
  const char* f = "rlhf::kwise_ranking_loss(): ";
  const auto call = [&](const std::vector<std::ptrdiff_t>& offsets, rlhf::vector_view<const std::int32_t> ranks,
                        rlhf::vector_view<double> grads, rlhf::vector_view<double> losses = {}) {
    return rlhf::kwise_ranking_loss(rlhf::cpu, cvec(r), cvec(offsets), ranks, grads, losses);
  };
  CHECK_THROWS_WITH_AS(call(one, {}, vec(g)),
                       (std::string(f) + "offsets has 1 entries but needs P + 1 >= 2 (at least one prompt)").c_str(),
                       rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(call(start1, {}, vec(g)), (std::string(f) + "offsets[0] must be 0, got 1").c_str(),
                       rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(call(short_prompt, {}, vec(g)),
                       (std::string(f) +
                        "prompt 0 has 1 completions (offsets[0] = 0, offsets[1] = 1) but needs at least 2")
                           .c_str(),
                       rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(call(wrong_end, {}, vec(g)), (std::string(f) + "offsets[2] is 6 but rewards has 5 entries").c_str(),
                       rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(call(ok, cvec(ranks4), vec(g)), (std::string(f) + "ranks is 4 but rewards is 5").c_str(),
                       rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(call(ok, cvec(negative), vec(g)),
                       (std::string(f) + "ranks[2] must be >= 0 (0 = best), got -1").c_str(), rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(call(ok, {}, vec(g4)), (std::string(f) + "rewards is 5 but drewards is 4").c_str(),
                       rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(call(ok, {}, vec(g), vec(pl)),
                       (std::string(f) + "prompt_losses is 3 but the number of prompts is 2").c_str(),
                       rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::kwise_ranking_loss(rlhf::cpu, rlhf::vector_view<const double>{}, cvec(ok), {}, {}, {}),
                       (std::string(f) + "rewards is empty (0)").c_str(), rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::kwise_ranking_loss(rlhf::cpu, cvec(r), cvec(ok), {}, {}, {},
                                                {.reduction = static_cast<rlhf::kwise_reduction>(5)}),
                       (std::string(f) + "reduction must be kwise_reduction::mean_over_prompts or "
                                         "sum_over_prompts, got 5")
                           .c_str(),
                       rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::kwise_pairs(cvec(short_prompt)),
                       "rlhf::kwise_pairs(): prompt 0 has 1 completions (offsets[0] = 0, offsets[1] = 1) but "
                       "needs at least 2",
                       rlhf::invalid_argument);
}

// ---------------------------------------------------------------------------------------------
// Best-of-N

TEST_CASE("best_of_n_loss: reproduces lm-human-preferences PickBest (golden)") {
  const auto& c = golden_case(golden_file, "lmhp_best_of_4_softmax");
  const auto rewards = to_array(c["inputs"]["rewards_per_sample"]);
  std::vector<std::ptrdiff_t> picks;
  for (double p : flat(c["inputs"]["best_index"])) picks.push_back(static_cast<std::ptrdiff_t>(p));
  const auto rows = rewards.rows(), n = rewards.cols();
  CHECK(n == c["params"]["num_responses"].get<int>());
  std::vector<double> grads(rewards.values.size());
  const auto s = rlhf::best_of_n_loss(rlhf::cpu, rlhf::matrix_view<const double>(rewards.values.data(), rows, n),
                                      cvec(picks), rlhf::matrix_view<double>(grads.data(), rows, n));
  RLHF_CHECK_SCALAR(s.loss, c["outputs"]["loss"].get<double>(), rlhf::test::golden_tolerance<double>());
  // Picks: row 0 picks its max (1.3), row 1 picks 0.5 (not the max 2.0), row 2 is an all-tie.
  CHECK(s.accuracy == doctest::Approx(1.0 / 3));
  // The gradient is softmax − one-hot over B; the all-zero row gives (1/4 − [j = 3]) / 3.
  CHECK(grads[8] == doctest::Approx(0.25 / 3));
  CHECK(grads[11] == doctest::Approx(-0.75 / 3));
}

TEST_CASE_TEMPLATE("best_of_n_loss: gradients match finite differences; extreme rewards stay finite", T, float,
                   double) {
  auto rewards = rlhf::test::normal_vector<double>(15, 41, 2.0);
  const std::vector<std::ptrdiff_t> picks{0, 4, 2};
  const auto f = [&] {
    return rlhf::best_of_n_loss(rlhf::cpu, rlhf::matrix_view<const double>(rewards.data(), 3, 5), cvec(picks), {})
        .loss;
  };
  std::vector<double> grads(15);
  rlhf::best_of_n_loss(rlhf::cpu, rlhf::matrix_view<const double>(rewards.data(), 3, 5), cvec(picks),
                       rlhf::matrix_view<double>(grads.data(), 3, 5));
  RLHF_CHECK_CLOSE(grads, rlhf::test::numeric_gradient(f, rewards), gradcheck);

  std::vector<T> extreme{1e4, -1e4, 0, -1e4};
  std::vector<T> g(4);
  const std::vector<std::ptrdiff_t> pick1{1, 0};
  const auto s = rlhf::best_of_n_loss(rlhf::cpu, rlhf::matrix_view<const T>(extreme.data(), 2, 2), cvec(pick1),
                                      rlhf::matrix_view<T>(g.data(), 2, 2));
  RLHF_CHECK_SCALAR(s.loss, 2e4 / 2, rlhf::test::golden_tolerance<double>());
  RLHF_CHECK_CLOSE(g, (std::vector<double>{0.5, -0.5, 0, 0}), rlhf::test::golden_tolerance<T>());
}

TEST_CASE("best_of_n_loss: bad arguments throw rlhf::invalid_argument naming the values") {
  std::vector<double> r(6, 0.0), g(6);
  const std::vector<std::ptrdiff_t> picks{0, 3}, picks3{0, 1, 2};
  CHECK_THROWS_WITH_AS(rlhf::best_of_n_loss(rlhf::cpu, rlhf::matrix_view<const double>(r.data(), 2, 3), cvec(picks),
                                            rlhf::matrix_view<double>(g.data(), 2, 3)),
                       "rlhf::best_of_n_loss(): picks[1] = 3 is outside [0, 3)", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::best_of_n_loss(rlhf::cpu, rlhf::matrix_view<const double>(r.data(), 2, 3), cvec(picks3),
                                            rlhf::matrix_view<double>(g.data(), 2, 3)),
                       "rlhf::best_of_n_loss(): picks is 3 but the number of reward rows is 2", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::best_of_n_loss(rlhf::cpu, rlhf::matrix_view<const double>(r.data(), 2, 3), cvec(picks),
                                            rlhf::matrix_view<double>(g.data(), 3, 2)),
                       "rlhf::best_of_n_loss(): rewards is 2x3 but drewards is 3x2", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::best_of_n_loss(rlhf::cpu, rlhf::matrix_view<const double>(r.data(), 0, 3),
                                            rlhf::vector_view<const std::ptrdiff_t>{}, {}),
                       "rlhf::best_of_n_loss(): rewards is empty (0x3)", rlhf::invalid_argument);
}

// ---------------------------------------------------------------------------------------------

TEST_CASE("preference_loss: every golden case of rm_pairwise_loss.json is covered above") {
  const std::vector<std::string> covered{
      "trl_head_pairwise",      "trl_head_pairwise_margin",          "trl_head_center_rewards_0.01",
      "trl_head_batch1",        "trl_v0.11.4_pairwise",              "trl_v0.11.4_margin_broadcasts_BxB",
      "openrlhf_pairwise",      "openrlhf_pairwise_margin",          "openrlhf_logexp",
      "instructgpt_kwise_K4_two_prompts", "lmhp_best_of_4_softmax"};
  const auto names = rlhf::test::golden_case_names(golden_file);
  CHECK(names.size() == covered.size());
  for (const auto& name : names) {
    CAPTURE(name);
    CHECK(std::find(covered.begin(), covered.end(), name) != covered.end());
  }
}
