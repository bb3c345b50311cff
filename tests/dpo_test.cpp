// Tests for <rlhf/dpo.hpp>: known answers, every golden case of dpo_loss.json (TRL v0.11.4
// sigmoid / cDPO / reference-free / IPO / hinge / robust, OpenRLHF DPOLoss), finite-difference
// gradients for every variant, logits of ±3000, and argument errors.
#include <rlhf/dpo.hpp>
#include <rlhf/tensor.hpp>

#include <doctest/doctest.h>

#include <support/finite_difference.hpp>
#include <support/golden.hpp>
#include <support/views.hpp>
#include <support/random.hpp>
#include <support/tolerances.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace {

using rlhf::test::golden_case;
using rlhf::test::to_array;

constexpr const char* golden_file = "dpo_loss.json";

using rlhf::test::cvec;
using rlhf::test::vec;
std::vector<double> flat(const rlhf::test::json& j) { return to_array(j).values; }

const rlhf::test::tolerance gradcheck{.rtol = 1e-3, .atol = 1e-5};

rlhf::dpo_variant variant_named(const std::string& name) {
  if (name == "sigmoid") return rlhf::dpo_variant::sigmoid;
  if (name == "ipo") return rlhf::dpo_variant::ipo;
  if (name == "hinge") return rlhf::dpo_variant::hinge;
  if (name == "robust") return rlhf::dpo_variant::robust;
  FAIL("unknown loss_type " << name);
  return rlhf::dpo_variant::sigmoid;
}

struct golden_inputs {
  std::vector<double> pc, pr, rc, rr;
  explicit golden_inputs(const rlhf::test::json& c)
      : pc(flat(c["inputs"]["policy_chosen_logps"])),
        pr(flat(c["inputs"]["policy_rejected_logps"])),
        rc(flat(c["inputs"]["reference_chosen_logps"])),
        rr(flat(c["inputs"]["reference_rejected_logps"])) {}
  rlhf::dpo_inputs<double> view() const { return {cvec(pc), cvec(pr), cvec(rc), cvec(rr)}; }
};

}  // namespace

TEST_CASE_TEMPLATE("dpo_loss: policy equal to the reference gives log 2 and slope -beta/2", T, float, double) {
  std::vector<T> pc{-10, -20, -5}, pr{-12, -18, -7}, dpc(3), dpr(3), losses(3), cr(3), rr(3);
  const auto s = rlhf::dpo_loss(rlhf::cpu, {cvec(pc), cvec(pr), cvec(pc), cvec(pr)},
                                {vec(dpc), vec(dpr), vec(losses), vec(cr), vec(rr)}, {.beta = 0.1});
  RLHF_CHECK_SCALAR(s.loss, std::log(2.0), rlhf::test::golden_tolerance<double>());
  RLHF_CHECK_CLOSE(losses, std::vector<double>(3, std::log(2.0)), rlhf::test::golden_tolerance<T>());
  RLHF_CHECK_CLOSE(dpc, std::vector<double>(3, -0.05 / 3), rlhf::test::golden_tolerance<T>());
  RLHF_CHECK_CLOSE(dpr, std::vector<double>(3, 0.05 / 3), rlhf::test::golden_tolerance<T>());
  CHECK(cr == std::vector<T>(3, T(0)));
  CHECK(s.reward_accuracy == 0.0);  // equal implicit rewards are not "correct"
  CHECK(s.reward_margin == 0.0);
}

TEST_CASE("dpo_loss: reproduces TRL v0.11.4 DPOTrainer.dpo_loss for every loss_type (golden)") {
  for (const char* name : {"trl_dpo_sigmoid_beta0.1_ls0.0", "trl_dpo_sigmoid_beta0.1_ls0.1",
                           "trl_dpo_sigmoid_beta0.5_ls0.0_reference_free", "trl_dpo_ipo_beta0.1_ls0.0",
                           "trl_dpo_hinge_beta0.1_ls0.0", "trl_dpo_robust_beta0.1_ls0.1"}) {
    CAPTURE(name);
    const auto& c = golden_case(golden_file, name);
    const golden_inputs in(c);
    const rlhf::dpo_options options{.beta = c["params"]["beta"].get<double>(),
                                    .label_smoothing = c["params"]["label_smoothing"].get<double>(),
                                    .variant = variant_named(c["params"]["loss_type"].get<std::string>()),
                                    .reference_free = c["params"]["reference_free"].get<bool>()};
    const std::size_t n = in.pc.size();
    std::vector<double> dpc(n), dpr(n), losses(n), cr(n), rr(n);
    const auto s = rlhf::dpo_loss(rlhf::cpu, in.view(), {vec(dpc), vec(dpr), vec(losses), vec(cr), vec(rr)}, options);
    const auto tol = rlhf::test::golden_tolerance<double>();
    const auto expected_losses = flat(c["outputs"]["losses"]);
    RLHF_CHECK_CLOSE(losses, expected_losses, tol);
    RLHF_CHECK_CLOSE(cr, flat(c["outputs"]["chosen_rewards"]), tol);
    RLHF_CHECK_CLOSE(rr, flat(c["outputs"]["rejected_rewards"]), tol);
    RLHF_CHECK_CLOSE(dpc, flat(c["outputs"]["grad_policy_chosen_of_mean"]), tol);
    RLHF_CHECK_CLOSE(dpr, flat(c["outputs"]["grad_policy_rejected_of_mean"]), tol);
    // The trainer takes the mean of the per-example losses; the stats are the trainer's metrics.
    double mean = 0, chosen = 0, rejected = 0, accuracy = 0;
    for (std::size_t i = 0; i < n; ++i) {
      mean += expected_losses[i];
      chosen += flat(c["outputs"]["chosen_rewards"])[i];
      rejected += flat(c["outputs"]["rejected_rewards"])[i];
      accuracy += flat(c["outputs"]["chosen_rewards"])[i] > flat(c["outputs"]["rejected_rewards"])[i] ? 1 : 0;
    }
    const double count = static_cast<double>(n);
    RLHF_CHECK_SCALAR(s.loss, mean / count, tol);
    RLHF_CHECK_SCALAR(s.chosen_reward_mean, chosen / count, tol);
    RLHF_CHECK_SCALAR(s.rejected_reward_mean, rejected / count, tol);
    RLHF_CHECK_SCALAR(s.reward_margin, (chosen - rejected) / count, tol);
    CHECK(s.reward_accuracy == accuracy / count);
  }
}

TEST_CASE("dpo_loss: reproduces OpenRLHF DPOLoss, sigmoid, cDPO and IPO (golden)") {
  for (const char* name : {"openrlhf_dpo_beta0.1_ls0.0_ipoFalse", "openrlhf_dpo_beta0.1_ls0.1_ipoFalse",
                           "openrlhf_dpo_beta0.1_ls0.0_ipoTrue"}) {
    CAPTURE(name);
    const auto& c = golden_case(golden_file, name);
    const golden_inputs in(c);
    const rlhf::dpo_options options{
        .beta = c["params"]["beta"].get<double>(),
        .label_smoothing = c["params"]["label_smoothing"].get<double>(),
        .variant = c["params"]["ipo"].get<bool>() ? rlhf::dpo_variant::ipo : rlhf::dpo_variant::sigmoid};
    const std::size_t n = in.pc.size();
    std::vector<double> dpc(n), dpr(n), cr(n), rr(n);
    const auto s = rlhf::dpo_loss(rlhf::cpu, in.view(),
                                  {.dpolicy_chosen = vec(dpc), .dpolicy_rejected = vec(dpr),
                                   .chosen_rewards = vec(cr), .rejected_rewards = vec(rr)},
                                  options);
    const auto tol = rlhf::test::golden_tolerance<double>();
    RLHF_CHECK_SCALAR(s.loss, c["outputs"]["loss"].get<double>(), tol);
    RLHF_CHECK_CLOSE(cr, flat(c["outputs"]["chosen_rewards"]), tol);
    RLHF_CHECK_CLOSE(rr, flat(c["outputs"]["rejected_rewards"]), tol);
    RLHF_CHECK_CLOSE(dpc, flat(c["outputs"]["grad_policy_chosen"]), tol);
    RLHF_CHECK_CLOSE(dpr, flat(c["outputs"]["grad_policy_rejected"]), tol);
  }
}

TEST_CASE("dpo_loss: reference_free accepts empty reference views (rewards become beta * pi)") {
  const auto& c = golden_case(golden_file, "trl_dpo_sigmoid_beta0.5_ls0.0_reference_free");
  const golden_inputs in(c);
  std::vector<double> losses(5), cr(5);
  rlhf::dpo_loss(rlhf::cpu, {.policy_chosen = cvec(in.pc), .policy_rejected = cvec(in.pr)},
                 {.losses = vec(losses), .chosen_rewards = vec(cr)}, {.beta = 0.5, .reference_free = true});
  RLHF_CHECK_CLOSE(losses, flat(c["outputs"]["losses"]), rlhf::test::golden_tolerance<double>());
  for (std::size_t i = 0; i < 5; ++i) CHECK(cr[i] == 0.5 * in.pc[i]);
}

TEST_CASE("dpo_loss: gradients match central finite differences for every variant") {
  auto pc = rlhf::test::normal_vector<double>(6, 51, 5.0);
  auto pr = rlhf::test::normal_vector<double>(6, 52, 5.0);
  const auto rc = rlhf::test::normal_vector<double>(6, 53, 5.0);
  const auto rr = rlhf::test::normal_vector<double>(6, 54, 5.0);
  struct setting {
    rlhf::dpo_variant variant;
    double beta, eps;
    bool reference_free;
  };
  for (const auto& st : {setting{rlhf::dpo_variant::sigmoid, 0.1, 0.0, false},
                         setting{rlhf::dpo_variant::sigmoid, 0.3, 0.2, false},
                         setting{rlhf::dpo_variant::sigmoid, 0.1, 0.0, true},
                         setting{rlhf::dpo_variant::robust, 0.2, 0.1, false},
                         setting{rlhf::dpo_variant::ipo, 0.1, 0.0, false},
                         setting{rlhf::dpo_variant::ipo, 0.5, 0.0, true},
                         setting{rlhf::dpo_variant::hinge, 0.1, 0.0, false}}) {
    CAPTURE(static_cast<int>(st.variant));
    CAPTURE(st.beta);
    const rlhf::dpo_options options{.beta = st.beta, .label_smoothing = st.eps, .variant = st.variant,
                                    .reference_free = st.reference_free};
    const auto f = [&] {
      return rlhf::dpo_loss(rlhf::cpu, {cvec(pc), cvec(pr), cvec(rc), cvec(rr)}, {}, options).loss;
    };
    std::vector<double> dpc(6), dpr(6);
    rlhf::dpo_loss(rlhf::cpu, {cvec(pc), cvec(pr), cvec(rc), cvec(rr)}, {vec(dpc), vec(dpr)}, options);
    // The hinge is not differentiable at βz = 1; the random inputs stay away from it.
    RLHF_CHECK_CLOSE(dpc, rlhf::test::numeric_gradient(f, pc), gradcheck);
    RLHF_CHECK_CLOSE(dpr, rlhf::test::numeric_gradient(f, pr), gradcheck);
  }
}

TEST_CASE_TEMPLATE("dpo_loss: beta*z of +-3000 gives finite losses and gradients", T, float, double) {
  // z = ±30000 with β = 0.1: βz = ±3000 (log σ(−3000) would be −inf if evaluated as log(σ)).
  std::vector<T> pc{0, 0}, pr{-30000, 30000}, zero{0, 0}, dpc(2), dpr(2), losses(2);
  for (auto variant : {rlhf::dpo_variant::sigmoid, rlhf::dpo_variant::robust}) {
    const double eps = 0.1;
    const auto s = rlhf::dpo_loss(rlhf::cpu, {cvec(pc), cvec(pr), cvec(zero), cvec(zero)},
                                  {vec(dpc), vec(dpr), vec(losses)},
                                  {.beta = 0.1, .label_smoothing = eps, .variant = variant});
    CHECK(std::isfinite(s.loss));
    for (std::size_t i = 0; i < 2; ++i) {
      CHECK(std::isfinite(static_cast<double>(losses[i])));
      CHECK(std::isfinite(static_cast<double>(dpc[i])));
    }
    if (variant == rlhf::dpo_variant::sigmoid) {
      // βz = 3000: −0.9·log σ(3000) − 0.1·log σ(−3000) = 0.1·3000; βz = −3000: 0.9·3000.
      RLHF_CHECK_CLOSE(losses, (std::vector<double>{300, 2700}), rlhf::test::golden_tolerance<T>());
      RLHF_CHECK_CLOSE(dpc, (std::vector<double>{0.1 * 0.1 / 2, -0.1 * 0.9 / 2}), rlhf::test::golden_tolerance<T>());
    } else {
      // robust: (−0.9·log σ(βz) + 0.1·log σ(−βz)) / 0.8: βz = 3000 -> −300/0.8; −3000 -> 2700/0.8.
      RLHF_CHECK_CLOSE(losses, (std::vector<double>{-300 / 0.8, 2700 / 0.8}), rlhf::test::golden_tolerance<T>());
    }
  }
}

TEST_CASE_TEMPLATE("dpo_loss: batch of one, float and rlhf::tensor arguments", T, float, double) {
  rlhf::tensor<T, 1> pc(1), pr(1), rc(1), rr(1), dpc(1), dpr(1);
  pc(0) = -3;
  pr(0) = -5;
  rc(0) = -4;
  rr(0) = -4;
  const auto s = rlhf::dpo_loss(rlhf::cpu, {pc, pr, rc, rr}, {dpc, dpr}, {.beta = 0.5});
  // z = 2, βz = 1: −log σ(1); slope −β σ(−1).
  RLHF_CHECK_SCALAR(s.loss, -rlhf::math::log_sigmoid(1.0), rlhf::test::golden_tolerance<double>());
  RLHF_CHECK_SCALAR(dpc(0), -0.5 * rlhf::math::sigmoid(-1.0), rlhf::test::golden_tolerance<T>());
  RLHF_CHECK_SCALAR(dpr(0), 0.5 * rlhf::math::sigmoid(-1.0), rlhf::test::golden_tolerance<T>());
  CHECK(s.reward_accuracy == 1.0);
  RLHF_CHECK_SCALAR(s.chosen_reward_mean, 0.5, rlhf::test::golden_tolerance<T>());
  RLHF_CHECK_SCALAR(s.rejected_reward_mean, -0.5, rlhf::test::golden_tolerance<T>());
  RLHF_CHECK_SCALAR(s.reward_margin, 1.0, rlhf::test::golden_tolerance<T>());
}

TEST_CASE("dpo_loss: bad arguments throw rlhf::invalid_argument naming the values") {
  std::vector<double> a(4, -1.0), b(3, -1.0), g(4), g3(3);
  const auto in = rlhf::dpo_inputs<double>{cvec(a), cvec(a), cvec(a), cvec(a)};
  CHECK_THROWS_WITH_AS(rlhf::dpo_loss(rlhf::cpu, {cvec(a), cvec(b), cvec(a), cvec(a)}, {vec(g), vec(g)}),
                       "rlhf::dpo_loss(): policy_chosen is 4 but policy_rejected is 3", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::dpo_loss(rlhf::cpu, {cvec(a), cvec(a), cvec(b), cvec(b)}, {vec(g), vec(g)}),
                       "rlhf::dpo_loss(): policy_chosen is 4 but reference_chosen is 3", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::dpo_loss(rlhf::cpu, {cvec(a), cvec(a), cvec(a), cvec(b)}, {vec(g), vec(g)}),
                       "rlhf::dpo_loss(): reference_chosen is 4 but reference_rejected is 3", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::dpo_loss(rlhf::cpu, {cvec(a), cvec(a), {}, {}}, {vec(g), vec(g)}),
                       "rlhf::dpo_loss(): reference_chosen is empty (0): pass the reference log-probs or set "
                       "reference_free",
                       rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::dpo_loss(rlhf::cpu, in, {vec(g), vec(g3)}),
                       "rlhf::dpo_loss(): policy_chosen is 4 but dpolicy_rejected is 3", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::dpo_loss(rlhf::cpu, in, {.losses = vec(g3)}),
                       "rlhf::dpo_loss(): policy_chosen is 4 but losses is 3", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::dpo_loss(rlhf::cpu, rlhf::dpo_inputs<double>{}, {}),
                       "rlhf::dpo_loss(): policy_chosen is empty (0)", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::dpo_loss(rlhf::cpu, in, {}, {.beta = 0.0}),
                       "rlhf::dpo_loss(): beta must be finite and > 0, got 0", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::dpo_loss(rlhf::cpu, in, {}, {.label_smoothing = 0.6}),
                       "rlhf::dpo_loss(): label_smoothing must be in [0, 0.5] for variant sigmoid, got 0.6",
                       rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::dpo_loss(rlhf::cpu, in, {}, {.label_smoothing = 0.5, .variant = rlhf::dpo_variant::robust}),
                       "rlhf::dpo_loss(): label_smoothing must be in [0, 0.5) for variant robust, got 0.5",
                       rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::dpo_loss(rlhf::cpu, in, {}, {.label_smoothing = 0.1, .variant = rlhf::dpo_variant::ipo}),
                       "rlhf::dpo_loss(): label_smoothing applies to the sigmoid and robust variants only, got 0.1 "
                       "with variant ipo",
                       rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::dpo_loss(rlhf::cpu, in, {}, {.variant = static_cast<rlhf::dpo_variant>(9)}),
                       "rlhf::dpo_loss(): variant must be one of dpo_variant::sigmoid, ipo, hinge, robust, got 9",
                       rlhf::invalid_argument);
}

TEST_CASE("dpo_loss: every golden case of dpo_loss.json is covered above") {
  const std::vector<std::string> covered{"trl_dpo_sigmoid_beta0.1_ls0.0",
                                         "trl_dpo_sigmoid_beta0.1_ls0.1",
                                         "trl_dpo_sigmoid_beta0.5_ls0.0_reference_free",
                                         "trl_dpo_ipo_beta0.1_ls0.0",
                                         "trl_dpo_hinge_beta0.1_ls0.0",
                                         "trl_dpo_robust_beta0.1_ls0.1",
                                         "openrlhf_dpo_beta0.1_ls0.0_ipoFalse",
                                         "openrlhf_dpo_beta0.1_ls0.1_ipoFalse",
                                         "openrlhf_dpo_beta0.1_ls0.0_ipoTrue"};
  const auto names = rlhf::test::golden_case_names(golden_file);
  CHECK(names.size() == covered.size());
  for (const auto& name : names) {
    CAPTURE(name);
    CHECK(std::find(covered.begin(), covered.end(), name) != covered.end());
  }
}
