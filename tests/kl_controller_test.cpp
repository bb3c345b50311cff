// Tests for <rlhf/kl_controller.hpp>: every case of the controllers' golden file, state
// save/restore, and argument errors.
#include <rlhf/kl_controller.hpp>

#include <doctest/doctest.h>

#include <support/golden.hpp>
#include <support/tolerances.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace {
using rlhf::test::golden_case;
using rlhf::test::number;

const char* const anchors[] = {"lm-human-preferences", "trl-v0.11.4", "openrlhf-head"};

void check_adaptive_sequence(const std::string& name) {
  CAPTURE(name);
  const auto& c = golden_case("kl_controllers.json", name);
  const auto& p = c["params"];
  rlhf::adaptive_kl_controller kl{{.init = number(p["init_kl_coef"]),
                                   .target = number(p["target"]),
                                   .horizon = number(p["horizon"])}};
  std::vector<double> values;
  for (const auto& observed : c["inputs"]["observed_kl_sequence"])
    values.push_back(kl.update(number(observed), number(p["n_steps"])).value);
  // All three anchors run the same code; each must be matched.
  for (const char* anchor : anchors) {
    CAPTURE(anchor);
    RLHF_CHECK_CLOSE(values, rlhf::test::to_array(c["outputs"]["value_after_each_update"][anchor]).values,
                     rlhf::test::golden_tolerance<double>());
  }
}
}  // namespace

TEST_CASE("kl_controller: adaptive controller reproduces lm-human-preferences, TRL 0.11, OpenRLHF (golden)") {
  for (const char* name : {"lmhp_sentiment_defaults", "trl_v0114_defaults", "openrlhf_style",
                           "extreme_error_clipped_at_plus_minus_0.2", "n_steps_larger_than_horizon_can_flip_sign"})
    check_adaptive_sequence(name);
}

TEST_CASE("kl_controller: fixed controller ignores updates (golden)") {
  const auto& c = golden_case("kl_controllers.json", "fixed_controller_ignores_updates");
  rlhf::fixed_kl_controller kl{{.value = number(c["params"]["kl_coef"])}};
  for (const auto& observed : c["inputs"]["observed_kl_sequence"]) {
    const auto u = kl.update(number(observed), number(c["params"]["n_steps"]));
    CHECK(u.value == 0.05);
  }
  for (const char* anchor : anchors) CHECK(kl.value() == number(c["outputs"]["value"][anchor]));
}

TEST_CASE("kl_controller: target 0 is refused up front (the anchors divide by zero)") {
  // Golden case target_zero: with a Python float KL every anchor raises ZeroDivisionError;
  // with a numpy float KL they silently take KL/0 = inf, clip to +0.2 and return 0.10002.
  // Ours: a target ≤ 0 is an invalid argument at construction, before any update.
  const auto& c = golden_case("kl_controllers.json", "target_zero");
  CHECK(c["outputs"]["trl-v0.11.4__python_float_kl"]["error"].get<std::string>().find("ZeroDivisionError") == 0);
  CHECK_THROWS_WITH_AS((rlhf::adaptive_kl_controller{{.init = 0.1, .target = 0.0}}),
                       "rlhf::kl_controller: adaptive_kl.target must be finite and positive, got 0",
                       rlhf::invalid_argument);
}

TEST_CASE("kl_controller: every golden case is covered") {
  const std::vector<std::string> covered{"lmhp_sentiment_defaults", "trl_v0114_defaults", "openrlhf_style",
                                         "extreme_error_clipped_at_plus_minus_0.2",
                                         "n_steps_larger_than_horizon_can_flip_sign", "target_zero",
                                         "fixed_controller_ignores_updates"};
  for (const auto& name : rlhf::test::golden_case_names("kl_controllers.json")) {
    CAPTURE(name);
    CHECK(std::find(covered.begin(), covered.end(), name) != covered.end());
  }
}

TEST_CASE("kl_controller: the update reports error and multiplier, and min_value floors beta") {
  rlhf::adaptive_kl_controller kl{{.init = 0.5, .target = 2.0, .horizon = 100}};
  auto u = kl.update(0.0, 1000);  // e = −0.2, multiplier 1 − 2 = −1: the anchors' sign flip
  CHECK(u.error == -0.2);
  CHECK(u.multiplier == doctest::Approx(-1.0));
  CHECK(kl.value() == -0.5);

  rlhf::adaptive_kl_controller floored{{.init = 0.5, .target = 2.0, .horizon = 100, .min_value = 1e-3}};
  CHECK(floored.update(0.0, 1000).value == 1e-3);
}

TEST_CASE("kl_controller: a NaN KL is a reported numerical event, not a change of beta") {
  rlhf::adaptive_kl_controller kl{};
  const auto u = kl.update(std::nan(""), 128);
  CHECK(u.skipped);
  CHECK(kl.value() == 0.2);
  // +inf is clipped like any large error (as numpy does in the anchors).
  CHECK(kl.update(INFINITY, 10000).value == doctest::Approx(0.2 * 1.2));
}

TEST_CASE("kl_controller: state save and restore continues bitwise") {
  rlhf::adaptive_kl_controller a{{.init = 0.15, .target = 6.0, .horizon = 10000}};
  for (double k : {1.0, 8.0, 3.0}) a.update(k, 512);
  const rlhf::kl_controller_state saved = a.state();
  CHECK(saved.updates == 3);
  CHECK(saved.last_observed_kl == 3.0);

  rlhf::adaptive_kl_controller b{{.init = 0.15, .target = 6.0, .horizon = 10000}};
  b.restore(saved);
  CHECK(b.state() == saved);
  for (double k : {12.0, 0.5, 6.1}) CHECK(a.update(k, 512).value == b.update(k, 512).value);
}

TEST_CASE("kl_controller: any_kl chooses the policy at run time") {
  rlhf::kl_controller<rlhf::any_kl> fixed{rlhf::fixed_kl{.value = 0.02}};
  rlhf::kl_controller<rlhf::any_kl> adaptive{rlhf::adaptive_kl{.init = 1.0, .target = 1.0, .horizon = 100}};
  fixed.update(100.0, 100);
  adaptive.update(1000.0, 100);
  CHECK(fixed.value() == 0.02);
  CHECK(adaptive.value() == 1.2);
}

TEST_CASE("kl_controller: bad options and n_steps throw naming the value") {
  CHECK_THROWS_WITH_AS((rlhf::fixed_kl_controller{{.value = -1.0}}),
                       "rlhf::kl_controller: fixed_kl.value must be finite and non-negative, got -1",
                       rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS((rlhf::adaptive_kl_controller{{.horizon = 0}}),
                       "rlhf::kl_controller: adaptive_kl.horizon must be finite and positive, got 0",
                       rlhf::invalid_argument);
  rlhf::adaptive_kl_controller kl{};
  CHECK_THROWS_WITH_AS(kl.update(1.0, -5), "rlhf::kl_controller::update(): n_steps must be finite and non-negative, got -5",
                       rlhf::invalid_argument);
}
