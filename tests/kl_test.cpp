// Tests for <rlhf/kl.hpp>: estimator values, the OpenRLHF compute_approx_kl and TRL
// _kl_penalty golden cases, the backward against finite differences, full-distribution KL,
// sequence summaries, masking, extreme inputs, threads and argument errors.
#include <rlhf/kl.hpp>
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

using rlhf::kl_estimator;
using rlhf::test::golden_case;
using rlhf::test::to_array;

using rlhf::test::cube;
using rlhf::test::view;

const std::vector<std::string> approx_kl_cases{
    "approx_kl_k1_float64", "approx_kl_k2_float64", "approx_kl_k3_float64",
    "approx_kl_unknown_estimator_float64", "approx_kl_k1_float32", "approx_kl_k2_float32",
    "approx_kl_k3_float32", "approx_kl_unknown_estimator_float32", "approx_kl_v0.5.9_k3_False",
    "approx_kl_v0.5.9_k3_True"};

kl_estimator estimator_named(const std::string& name) {
  if (name == "k1") return kl_estimator::k1;
  if (name == "k2") return kl_estimator::k2;
  if (name == "k3") return kl_estimator::k3;
  throw std::runtime_error("no such estimator in the enum: " + name);
}

constexpr kl_estimator all_estimators[] = {kl_estimator::k1, kl_estimator::k2, kl_estimator::k3,
                                           kl_estimator::abs};

}  // namespace

TEST_CASE_TEMPLATE("kl_estimate: each estimator's value from its definition", T, float, double) {
  std::vector<T> logp{T(-1.0), T(-2.5), T(-0.25), T(-3.0)};
  std::vector<T> ref{T(-1.5), T(-2.0), T(-0.25), T(-1.0)};  // ℓ = 0.5, −0.5, 0, −2
  std::vector<T> out(4);
  const double l[4] = {0.5, -0.5, 0.0, -2.0};
  for (const auto e : all_estimators) {
    CAPTURE(static_cast<int>(e));
    rlhf::kl_estimate(rlhf::cpu, view(logp, 2, 2), view(ref, 2, 2), rlhf::mask_view{}, view(out, 2, 2),
                      {.estimator = e});
    for (int i = 0; i < 4; ++i) {
      double expected = l[i];
      if (e == kl_estimator::k2) expected = l[i] * l[i] / 2;
      if (e == kl_estimator::k3) expected = std::exp(-l[i]) - 1 + l[i];
      if (e == kl_estimator::abs) expected = std::fabs(l[i]);
      RLHF_CHECK_SCALAR(out[i], expected, (rlhf::test::tolerance{.rtol = 1e-6, .atol = 1e-7}));
    }
  }
  // k3 ≥ 0 always and equals 0 only at ℓ = 0; k1 takes either sign.
  rlhf::kl_estimate(rlhf::cpu, view(logp, 2, 2), view(ref, 2, 2), rlhf::mask_view{}, view(out, 2, 2),
                    {.estimator = kl_estimator::k3});
  CHECK(out[2] == T(0));
  CHECK(std::all_of(out.begin(), out.end(), [](T v) { return v >= T(0); }));
}

TEST_CASE_TEMPLATE("kl_estimate: masked positions are 0 and the clamp bounds every estimator", T, float, double) {
  std::vector<T> logp{T(-1), T(-30), T(-2), T(-1), T(-5), T(-40)};
  std::vector<T> ref{T(-2), T(-1), T(-1), T(-1), T(-1), T(-1)};
  const std::vector<std::uint8_t> m{1, 1, 1, 0, 0, 0};
  std::vector<T> out(6, T(7));
  for (const auto e : all_estimators) {
    rlhf::kl_estimate(rlhf::cpu, view(logp, 2, 3), view(ref, 2, 3), view(m, 2, 3), view(out, 2, 3),
                      {.estimator = e, .clamp = 10.0});
    for (int i = 3; i < 6; ++i) CHECK(out[i] == T(0));
    for (int i = 0; i < 3; ++i) CHECK(std::fabs(out[i]) <= T(10));
  }
  rlhf::kl_estimate(rlhf::cpu, view(logp, 2, 3), view(ref, 2, 3), view(m, 2, 3), view(out, 2, 3),
                    {.clamp = 10.0});
  CHECK(out[1] == T(-10));  // ℓ = −29 clamped
  rlhf::kl_estimate(rlhf::cpu, view(logp, 2, 3), view(ref, 2, 3), view(m, 2, 3), view(out, 2, 3));
  CHECK(out[1] == T(-29));  // no clamp by default
}

TEST_CASE("kl_estimate: reproduces OpenRLHF compute_approx_kl, HEAD and v0.5.9 (golden)") {
  int reproduced = 0;
  for (const auto& name : approx_kl_cases) {
    CAPTURE(name);
    const auto& c = golden_case("openrlhf_kl_reward.json", name);
    auto logp = to_array(c["inputs"]["log_probs"]);
    auto ref = to_array(c["inputs"]["log_probs_base"]);
    const auto rows = logp.rows(), cols = logp.cols();
    ++reproduced;
    if (c["outputs"].contains("error")) {
      // OpenRLHF: "ValueError: Unknown kl_estimator: low_var_kl". The enum has no such name;
      // a value outside the enum is rejected with the same intent.
      CHECK(c["params"]["kl_estimator"] == "low_var_kl");
      std::vector<double> out(logp.values.size());
      CHECK_THROWS_WITH_AS(rlhf::kl_estimate(rlhf::cpu, view(logp.values, rows, cols), view(ref.values, rows, cols),
                                             rlhf::mask_view{}, view(out, rows, cols),
                                             {.estimator = static_cast<kl_estimator>(4)}),
                           "rlhf::kl_estimate(): estimator is not a kl_estimator value (4)",
                           rlhf::invalid_argument);
      continue;
    }
    const auto expected = to_array(c["outputs"]["kl"]).values;
    if (name.find("v0.5.9") != std::string::npos) {
      // v0.5.9: float32 (logp.float() − base.float()), ℓ·mask before the transform, no clamp.
      const auto mask = to_array(c["inputs"]["action_mask"]).as_mask();
      const rlhf::kl_options o{.estimator = c["params"]["use_kl_estimator_k3"].get<bool>() ? kl_estimator::k3
                                                                                          : kl_estimator::k1,
                               .precision = rlhf::kl_precision::float32,
                               .mask_before_transform = true};
      std::vector<double> out(logp.values.size());
      rlhf::kl_estimate(rlhf::cpu, view(logp.values, rows, cols), view(ref.values, rows, cols),
                        view(mask, rows, cols), view(out, rows, cols), o);
      RLHF_CHECK_CLOSE(out, expected, rlhf::test::golden_tolerance<float>());
      for (std::size_t i = 0; i < out.size(); ++i) CHECK(std::signbit(out[i]) == std::signbit(expected[i]));
    } else {
      // HEAD: float32 arithmetic whatever the input type, clamp to [−10, 10] for every
      // estimator. The float64 cases carry float32 rounding, hence the float tolerance.
      const rlhf::kl_options o{.estimator = estimator_named(c["params"]["kl_estimator"]),
                               .clamp = 10.0,
                               .precision = rlhf::kl_precision::float32};
      if (c["dtype"] == "float32") {
        auto lf = logp.as<float>(), rf = ref.as<float>();
        std::vector<float> out(lf.size());
        rlhf::kl_estimate(rlhf::cpu, view(lf, rows, cols), view(rf, rows, cols), rlhf::mask_view{},
                          view(out, rows, cols), o);
        RLHF_CHECK_CLOSE(out, expected, rlhf::test::golden_tolerance<float>());
      } else {
        std::vector<double> out(logp.values.size());
        rlhf::kl_estimate(rlhf::cpu, view(logp.values, rows, cols), view(ref.values, rows, cols),
                          rlhf::mask_view{}, view(out, rows, cols), o);
        RLHF_CHECK_CLOSE(out, expected, rlhf::test::golden_tolerance<float>());
        // Native double precision differs from OpenRLHF's float32 by float32 rounding only.
        std::vector<double> native(out.size());
        auto o_native = o;
        o_native.precision = rlhf::kl_precision::native;
        rlhf::kl_estimate(rlhf::cpu, view(logp.values, rows, cols), view(ref.values, rows, cols),
                          rlhf::mask_view{}, view(native, rows, cols), o_native);
        RLHF_CHECK_CLOSE(native, expected, (rlhf::test::tolerance{.rtol = 1e-3, .atol = 1e-7}));
      }
    }
  }
  CHECK(reproduced == 10);
}

TEST_CASE("kl_estimate: every compute_approx_kl golden case is covered") {
  for (const auto& name : rlhf::test::golden_case_names("openrlhf_kl_reward.json"))
    if (name.rfind("approx_kl", 0) == 0) {
      CAPTURE(name);
      CHECK(std::find(approx_kl_cases.begin(), approx_kl_cases.end(), name) != approx_kl_cases.end());
    }
}

TEST_CASE("kl_estimate and full_kl: reproduce the kls of TRL v0.11.4 compute_rewards (golden)") {
  // TRL's _kl_penalty has no mask: every position gets a value, so the mask view is empty.
  for (const auto& [name, estimator] : {std::pair{"compute_rewards_kl_penalty_kl", kl_estimator::k1},
                                        {"compute_rewards_kl_penalty_abs", kl_estimator::abs},
                                        {"compute_rewards_kl_penalty_mse", kl_estimator::k2}}) {
    CAPTURE(name);
    const auto& c = golden_case("trl_ppo_v1.json", name);
    auto logp = to_array(c["inputs"]["logprobs"]);
    auto ref = to_array(c["inputs"]["ref_logprobs"]);
    const auto rows = logp.rows(), cols = logp.cols();
    std::vector<double> out(logp.values.size());
    rlhf::kl_estimate(rlhf::cpu, view(logp.values, rows, cols), view(ref.values, rows, cols), rlhf::mask_view{},
                      view(out, rows, cols), {.estimator = estimator});
    RLHF_CHECK_CLOSE(out, to_array(c["outputs"]["kls"]).values, rlhf::test::golden_tolerance<double>());
  }
  const auto& c = golden_case("trl_ppo_v1.json", "compute_rewards_kl_penalty_full");
  auto logp = to_array(c["inputs"]["logprobs_full_vocab"]);
  auto ref = to_array(c["inputs"]["ref_logprobs_full_vocab"]);
  const auto b = logp.shape[0], t = logp.shape[1], v = logp.shape[2];
  std::vector<double> out(static_cast<std::size_t>(b * t));
  rlhf::full_kl(rlhf::cpu, cube(logp.values, b, t, v), cube(ref.values, b, t, v), rlhf::mask_view{},
                view(out, b, t));
  RLHF_CHECK_CLOSE(out, to_array(c["outputs"]["kls"]).values, rlhf::test::golden_tolerance<double>());
}

TEST_CASE("full_kl: a distribution against itself is 0, p = 0 terms are 0, masked positions are 0") {
  // Row 0: p = (0.5, 0.5, 0) vs ref (0.25, 0.75, 0): KL = 0.5 ln 2 + 0.5 ln(2/3).
  const double ninf = -std::numeric_limits<double>::infinity();
  std::vector<double> logp{std::log(0.5), std::log(0.5), ninf, std::log(0.2), std::log(0.3), std::log(0.5)};
  std::vector<double> ref{std::log(0.25), std::log(0.75), ninf, std::log(0.2), std::log(0.3), std::log(0.5)};
  std::vector<double> out(2, 7.0);
  rlhf::full_kl(rlhf::cpu, cube(logp, 1, 2, 3), cube(ref, 1, 2, 3), rlhf::mask_view{}, view(out, 1, 2));
  RLHF_CHECK_SCALAR(out[0], 0.5 * std::log(2.0) + 0.5 * std::log(2.0 / 3.0), (rlhf::test::tolerance{.rtol = 1e-14}));
  CHECK(out[1] == 0.0);
  const std::vector<std::uint8_t> m{0, 1};
  rlhf::full_kl(rlhf::cpu, cube(logp, 1, 2, 3), cube(ref, 1, 2, 3), view(m, 1, 2), view(out, 1, 2));
  CHECK(out[0] == 0.0);
  // float overload.
  std::vector<float> lf(logp.begin(), logp.end()), rf(ref.begin(), ref.end()), of(2);
  rlhf::full_kl(rlhf::cpu, cube(lf, 1, 2, 3), cube(rf, 1, 2, 3), rlhf::mask_view{}, view(of, 1, 2));
  RLHF_CHECK_SCALAR(of[0], 0.5 * std::log(2.0) + 0.5 * std::log(2.0 / 3.0), (rlhf::test::tolerance{.rtol = 1e-6}));
}

TEST_CASE("kl_estimate_backward: matches central finite differences for every estimator") {
  const int rows = 3, cols = 5;
  auto logp = rlhf::test::normal_vector<double>(rows * cols, 51, 1.5);
  auto ref = rlhf::test::normal_vector<double>(rows * cols, 52, 1.5);
  const auto upstream = rlhf::test::normal_vector<double>(rows * cols, 53);
  const auto m = rlhf::test::right_padded_mask({5, 3, 0}, cols);
  for (const auto e : all_estimators) {
    for (const bool clamp : {false, true}) {
      CAPTURE(static_cast<int>(e));
      CAPTURE(clamp);
      // A clamp at 1.5 is active for some entries; keep every entry away from the kinks.
      const rlhf::kl_options o{.estimator = e, .clamp = clamp ? std::optional<double>(1.5) : std::nullopt};
      std::vector<double> k(logp.size());
      rlhf::kl_estimate(rlhf::cpu, view(logp, rows, cols), view(ref, rows, cols), view(m, rows, cols),
                        view(k, rows, cols), {.estimator = e});
      bool near_kink = false;
      for (std::size_t i = 0; i < k.size(); ++i) {
        if (clamp && std::fabs(std::fabs(k[i]) - 1.5) < 1e-3) near_kink = true;
        if (e == kl_estimator::abs && std::fabs(logp[i] - ref[i]) < 1e-3) near_kink = true;
      }
      REQUIRE_FALSE(near_kink);
      const auto loss = [&]() {
        std::vector<double> out(logp.size());
        rlhf::kl_estimate(rlhf::cpu, view(logp, rows, cols), view(ref, rows, cols), view(m, rows, cols),
                          view(out, rows, cols), o);
        double s = 0;
        for (std::size_t i = 0; i < out.size(); ++i) s += upstream[i] * out[i];
        return s;
      };
      const auto numeric = rlhf::test::numeric_gradient(loss, logp);
      std::vector<double> grad(logp.size(), 99.0), g_up = upstream;
      rlhf::kl_estimate_backward(rlhf::cpu, view(logp, rows, cols), view(ref, rows, cols), view(m, rows, cols),
                                 view(g_up, rows, cols), view(grad, rows, cols), o);
      RLHF_CHECK_CLOSE(grad, numeric, (rlhf::test::tolerance{.rtol = 1e-3, .atol = 1e-5}));
      for (int i = 8; i < 15; ++i) CHECK(grad[static_cast<std::size_t>(i)] == 0.0);  // masked
      // d/d ref_logp is the negative of d/d logp.
      const auto numeric_ref = rlhf::test::numeric_gradient(loss, ref);
      std::vector<double> neg(numeric_ref.size());
      for (std::size_t i = 0; i < neg.size(); ++i) neg[i] = -numeric_ref[i];
      RLHF_CHECK_CLOSE(grad, neg, (rlhf::test::tolerance{.rtol = 1e-3, .atol = 1e-5}));
    }
  }
}

TEST_CASE_TEMPLATE("kl_estimate_backward: accumulate adds, the default overwrites, grad may alias grad_kl", T, float,
                   double) {
  std::vector<T> logp{T(-1), T(-2)}, ref{T(-1.5), T(-1)}, up{T(2), T(3)};
  std::vector<T> grad{T(10), T(10)};
  rlhf::kl_estimate_backward(rlhf::cpu, view(logp, 1, 2), view(ref, 1, 2), rlhf::mask_view{}, view(up, 1, 2),
                             view(grad, 1, 2));
  CHECK(grad == std::vector<T>{T(2), T(3)});  // k1: d/dlogp = 1
  rlhf::kl_estimate_backward(rlhf::cpu, view(logp, 1, 2), view(ref, 1, 2), rlhf::mask_view{}, view(up, 1, 2),
                             view(grad, 1, 2), {.estimator = kl_estimator::k2, .accumulate = true});
  CHECK(grad == std::vector<T>{T(2) + T(2) * T(0.5), T(3) + T(3) * T(-1)});
  rlhf::kl_estimate_backward(rlhf::cpu, view(logp, 1, 2), view(ref, 1, 2), rlhf::mask_view{}, view(up, 1, 2),
                             view(up, 1, 2), {.estimator = kl_estimator::abs});
  CHECK(up == std::vector<T>{T(2), T(-3)});
}

TEST_CASE_TEMPLATE("kl_estimate: log-probs of magnitude 1e4 and log-ratios of ±50 give finite values and "
                   "gradients", T, float, double) {
  std::vector<T> logp{T(-1e4), T(-1e4), T(-50), T(0), T(-1e4 + 25), T(-3)};
  std::vector<T> ref{T(-1e4 + 50), T(-1e4 - 50), T(0), T(-50), T(-1e4), T(-3)};
  std::vector<T> out(6), grad(6), up(6, T(1));
  for (const auto e : all_estimators)
    for (const auto p : {rlhf::kl_precision::native, rlhf::kl_precision::float32}) {
      const rlhf::kl_options o{.estimator = e, .precision = p};
      rlhf::kl_estimate(rlhf::cpu, view(logp, 2, 3), view(ref, 2, 3), rlhf::mask_view{}, view(out, 2, 3), o);
      rlhf::kl_estimate_backward(rlhf::cpu, view(logp, 2, 3), view(ref, 2, 3), rlhf::mask_view{}, view(up, 2, 3),
                                 view(grad, 2, 3), o);
      for (int i = 0; i < 6; ++i) {
        CHECK(std::isfinite(out[i]));
        CHECK(std::isfinite(grad[i]));
      }
    }
}

TEST_CASE_TEMPLATE("summarize_kl: sequence sums, per-sequence means and token mean", T, float, double) {
  std::vector<T> kl{1, 2, 3, 100, 4, 100, 100, 100, 100, 100, 100, 100};
  const std::vector<std::uint8_t> m{1, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0};  // row 2: no valid token
  std::vector<T> row_sums(3, T(7));
  const auto s = rlhf::summarize_kl(rlhf::cpu, view(kl, 3, 4), view(m, 3, 4), rlhf::vector_view<T>(row_sums.data(), 3));
  CHECK(row_sums == std::vector<T>{6, 4, 0});
  CHECK(s.mean_sequence_sum == doctest::Approx(10.0 / 3));
  CHECK(s.mean_sequence_mean == doctest::Approx((2.0 + 4.0 + 0.0) / 3));
  CHECK(s.mean_token == doctest::Approx(2.5));
  CHECK(s.tokens == 4);
  // Without a mask every token counts; without row_sums nothing else is written.
  const auto all = rlhf::summarize_kl(rlhf::cpu, view(kl, 3, 4), rlhf::mask_view{});
  CHECK(all.tokens == 12);
  CHECK(all.mean_sequence_sum == doctest::Approx(810.0 / 3));
  // No valid token at all: zeros, never NaN.
  const std::vector<std::uint8_t> none(12, 0);
  const auto empty = rlhf::summarize_kl(rlhf::cpu, view(kl, 3, 4), view(none, 3, 4));
  CHECK(empty.mean_sequence_sum == 0.0);
  CHECK(empty.mean_sequence_mean == 0.0);
  CHECK(empty.mean_token == 0.0);
}

TEST_CASE("summarize_kl: the lm-human-preferences / TRL and OpenRLHF controller inputs from the TRL golden kls") {
  // TRL 0.11 logs objective/kl = mean over the batch of Σ_t (logp − ref)·mask.
  const auto& c = golden_case("trl_ppo_v1.json", "compute_rewards_kl_penalty_kl");
  const auto kls = to_array(c["outputs"]["kls"]);
  auto values = kls.values;
  const auto m = to_array(c["inputs"]["masks"]).as_mask();
  double expected_sum = 0, expected_mean = 0;
  for (int b = 0; b < 3; ++b) {
    double s = 0;
    int n = 0;
    for (int t = 0; t < 8; ++t)
      if (m[static_cast<std::size_t>(b * 8 + t)]) {
        s += values[static_cast<std::size_t>(b * 8 + t)];
        ++n;
      }
    expected_sum += s / 3;
    expected_mean += s / n / 3;
  }
  const auto s = rlhf::summarize_kl(rlhf::cpu, view(values, 3, 8), view(m, 3, 8));
  RLHF_CHECK_SCALAR(s.mean_sequence_sum, expected_sum, (rlhf::test::tolerance{.rtol = 1e-14}));
  RLHF_CHECK_SCALAR(s.mean_sequence_mean, expected_mean, (rlhf::test::tolerance{.rtol = 1e-14}));
}

TEST_CASE_TEMPLATE("kl_estimate: any thread count gives bitwise the same result", T, float, double) {
  const int rows = 53, cols = 31;
  auto logp = rlhf::test::normal_vector<T>(rows * cols, 61);
  auto ref = rlhf::test::normal_vector<T>(rows * cols, 62);
  std::vector<int> lengths;
  for (int b = 0; b < rows; ++b) lengths.push_back((b * 5) % (cols + 1));
  const auto m = rlhf::test::right_padded_mask(lengths, cols);
  std::vector<T> a(logp.size()), b(logp.size()), ga(logp.size()), gb(logp.size());
  const rlhf::kl_options o{.estimator = kl_estimator::k3, .clamp = 2.0};
  rlhf::kl_estimate(rlhf::cpu, view(logp, rows, cols), view(ref, rows, cols), view(m, rows, cols),
                    view(a, rows, cols), o);
  rlhf::kl_estimate(rlhf::cpu_backend{.threads = 4}, view(logp, rows, cols), view(ref, rows, cols),
                    view(m, rows, cols), view(b, rows, cols), o);
  CHECK(a == b);
  rlhf::kl_estimate_backward(rlhf::cpu, view(logp, rows, cols), view(ref, rows, cols), view(m, rows, cols),
                             view(a, rows, cols), view(ga, rows, cols), o);
  rlhf::kl_estimate_backward(rlhf::cpu_backend{.threads = 3}, view(logp, rows, cols), view(ref, rows, cols),
                             view(m, rows, cols), view(a, rows, cols), view(gb, rows, cols), o);
  CHECK(ga == gb);
  std::vector<T> sa(rows), sb(rows);
  const auto x = rlhf::summarize_kl(rlhf::cpu, view(a, rows, cols), view(m, rows, cols),
                                    rlhf::vector_view<T>(sa.data(), rows));
  const auto y = rlhf::summarize_kl(rlhf::cpu_backend{.threads = 4}, view(a, rows, cols), view(m, rows, cols),
                                    rlhf::vector_view<T>(sb.data(), rows));
  CHECK(sa == sb);
  CHECK(x.mean_sequence_sum == y.mean_sequence_sum);
  CHECK(x.mean_sequence_mean == y.mean_sequence_mean);
}

TEST_CASE("kl_estimate: works on rlhf::tensor and strided views") {
  rlhf::tensor<double, 2> logp(2, 3), ref(2, 3), out(2, 3);
  logp(1, 2) = -1.0;
  rlhf::kl_estimate(rlhf::cpu, logp, ref, rlhf::mask_view{}, out, {.estimator = kl_estimator::k2});
  CHECK(out(1, 2) == 0.5);
  std::vector<double> buffer{-1, 0, -2, 0, -3, 0, -4, 0};  // every other element: a 2x2 view
  const std::ptrdiff_t extents[2] = {2, 2}, strides[2] = {4, 2};
  rlhf::matrix_view<const double> strided(buffer.data(), extents, strides);
  rlhf::tensor<double, 2> zero(2, 2), o2(2, 2);
  rlhf::kl_estimate(rlhf::cpu, strided, zero, rlhf::mask_view{}, o2);
  CHECK(o2(1, 1) == -4.0);
}

TEST_CASE("kl_estimate: bad arguments throw rlhf::invalid_argument naming the function and values") {
  std::vector<double> a(8), b(8), out(8), rows(3);
  const std::vector<std::uint8_t> m(8, 1);
  CHECK_THROWS_WITH_AS(rlhf::kl_estimate(rlhf::cpu, view(a, 2, 4), view(b, 4, 2), rlhf::mask_view{}, view(out, 2, 4)),
                       "rlhf::kl_estimate(): logp is 2x4 but ref_logp is 4x2", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::kl_estimate(rlhf::cpu, view(a, 2, 4), view(b, 2, 4), view(m, 1, 8), view(out, 2, 4)),
                       "rlhf::kl_estimate(): logp is 2x4 but mask is 1x8", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::kl_estimate(rlhf::cpu, view(a, 0, 4), view(b, 0, 4), rlhf::mask_view{}, view(out, 0, 4)),
                       "rlhf::kl_estimate(): logp is empty (0x4)", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::kl_estimate(rlhf::cpu, view(a, 2, 4), view(b, 2, 4), rlhf::mask_view{}, view(out, 2, 4),
                                         {.clamp = 0.0}),
                       "rlhf::kl_estimate(): clamp must be > 0, got 0", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::kl_estimate(rlhf::cpu, view(a, 2, 4), view(b, 2, 4), rlhf::mask_view{}, view(out, 2, 4),
                                         {.precision = static_cast<rlhf::kl_precision>(3)}),
                       "rlhf::kl_estimate(): precision is not a kl_precision value (3)", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::kl_estimate_backward(rlhf::cpu, view(a, 2, 4), view(b, 2, 4), rlhf::mask_view{},
                                                  view(a, 2, 4), view(out, 4, 2)),
                       "rlhf::kl_estimate_backward(): logp is 2x4 but grad_logp is 4x2", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS((void)rlhf::summarize_kl(rlhf::cpu, view(a, 2, 4), rlhf::mask_view{},
                                                rlhf::vector_view<double>(rows.data(), 3)),
                       "rlhf::summarize_kl(): row_sums is 3 but the row count of kl is 2", rlhf::invalid_argument);
  std::vector<double> full(24);
  CHECK_THROWS_WITH_AS(rlhf::full_kl(rlhf::cpu, cube(full, 2, 4, 3), cube(full, 2, 4, 3), view(m, 1, 8),
                                     view(out, 2, 4)),
                       "rlhf::full_kl(): logp_full is 2x4x3 but mask is 1x8", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::full_kl(rlhf::cpu, cube(full, 2, 4, 3), cube(full, 2, 3, 4), rlhf::mask_view{},
                                     view(out, 2, 4)),
                       "rlhf::full_kl(): logp_full is 2x4x3 but ref_logp_full is 2x3x4", rlhf::invalid_argument);
}
