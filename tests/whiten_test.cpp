// Tests for <rlhf/whiten.hpp>: masked sums / means / variances, moments and their merge,
// whitening with every option, the TRL and OpenRLHF golden cases, TRL's compute_advantages
// composed from rlhf::gae + rlhf::whiten, edge cases, threads and argument errors.
#include <rlhf/gae.hpp>
#include <rlhf/tensor.hpp>
#include <rlhf/whiten.hpp>

#include <doctest/doctest.h>

#include <support/golden.hpp>
#include <support/views.hpp>
#include <support/random.hpp>
#include <support/tolerances.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace {

using rlhf::test::golden_case;
using rlhf::test::to_array;

using rlhf::test::vec;
using rlhf::test::view;

const rlhf::whiten_options trl_masked_whiten{.variance = rlhf::variance_kind::unbiased,
                                             .masked_positions = rlhf::whiten_masked::shift_like_valid};

// Every case of trl_whiten.json, each reproduced below (clip_by_value_tensor_bounds in
// tests/elementwise_test.cpp).
const std::vector<std::string> trl_whiten_cases{
    "whiten_shift_mean", "whiten_no_shift_mean", "whiten_float32",
    "whiten_single_element_unbiased_var_is_nan", "whiten_constant_values", "whiten_large_offset",
    "masked_mean_all_right_pad", "masked_mean_axis1_right_pad", "masked_var_unbiased_right_pad",
    "masked_var_biased_right_pad", "masked_whiten_right_pad", "masked_whiten_no_shift_right_pad",
    "masked_mean_all_left_pad", "masked_mean_axis1_left_pad", "masked_var_unbiased_left_pad",
    "masked_var_biased_left_pad", "masked_whiten_left_pad", "masked_whiten_no_shift_left_pad",
    "masked_mean_axis1_all_masked_row", "masked_whiten_with_all_masked_row",
    "masked_var_single_unmasked_element", "masked_whiten_single_unmasked_element",
    "masked_var_all_masked_raises", "masked_mean_all_masked_is_nan", "masked_whiten_batch1",
    "masked_whiten_bool_mask", "clip_by_value_tensor_bounds"};

const std::vector<std::string> openrlhf_gae_cases{"advantage_normalisation_no_std_norm_False",
                                                  "advantage_normalisation_no_std_norm_True",
                                                  "advantage_normalisation_v0.5.9_replay_buffer"};

const std::vector<std::string> trl_ppo_cases{
    "compute_advantages_gamma1_lam0.95", "compute_advantages_whiten_rewards",
    "compute_advantages_gamma0.9_lam0.8", "compute_advantages_lam1", "compute_advantages_lam0",
    "compute_advantages_batch1"};

bool contains(const std::vector<std::string>& list, const std::string& name) {
  return std::find(list.begin(), list.end(), name) != list.end();
}

/// Population and unbiased variance straight from the definition, in long double.
std::pair<long double, long double> reference_variance(const std::vector<double>& x,
                                                       const std::vector<std::uint8_t>& m) {
  long double n = 0, s = 0;
  for (std::size_t i = 0; i < x.size(); ++i)
    if (m.empty() || m[i]) {
      n += 1;
      s += x[i];
    }
  const long double mean = s / n;
  long double q = 0;
  for (std::size_t i = 0; i < x.size(); ++i)
    if (m.empty() || m[i]) q += (x[i] - mean) * (x[i] - mean);
  return {q / n, q / (n - 1)};
}

}  // namespace

TEST_CASE_TEMPLATE("whiten: masked sum, mean and variance of a hand-made example", T, float, double) {
  // Valid: 1, 2, 3 | 4 — mean 2.5, Σ(x − μ)² = 5, population var 1.25, unbiased 5/3.
  std::vector<T> x{1, 2, 3, 100, 4, -7, 50, 60};
  const std::vector<std::uint8_t> m{1, 1, 1, 0, 1, 0, 0, 0};
  const auto tol = rlhf::test::golden_tolerance<T>();
  RLHF_CHECK_SCALAR(rlhf::masked_sum(rlhf::cpu, view(x, 2, 4), view(m, 2, 4)), 10.0, tol);
  RLHF_CHECK_SCALAR(rlhf::masked_mean(rlhf::cpu, view(x, 2, 4), view(m, 2, 4)), 2.5, tol);
  RLHF_CHECK_SCALAR(rlhf::masked_var(rlhf::cpu, view(x, 2, 4), view(m, 2, 4)), 1.25, tol);
  RLHF_CHECK_SCALAR(rlhf::masked_var(rlhf::cpu, view(x, 2, 4), view(m, 2, 4), rlhf::variance_kind::unbiased),
                    5.0 / 3.0, tol);
  std::vector<T> rows(2);
  rlhf::masked_sum(rlhf::cpu, view(x, 2, 4), view(m, 2, 4), vec(rows));
  CHECK(rows == std::vector<T>{6, 4});
  rlhf::masked_mean(rlhf::cpu, view(x, 2, 4), view(m, 2, 4), vec(rows));
  CHECK(rows == std::vector<T>{2, 4});
  // An empty mask view: every element is valid.
  RLHF_CHECK_SCALAR(rlhf::masked_sum(rlhf::cpu, view(x, 2, 4), rlhf::mask_view{}), 213.0, tol);

  const auto mo = rlhf::moments(rlhf::cpu, view(x, 2, 4), view(m, 2, 4));
  CHECK(mo.count == 4);
  RLHF_CHECK_SCALAR(mo.mean, 2.5, tol);
  RLHF_CHECK_SCALAR(mo.variance, 1.25, tol);
  RLHF_CHECK_SCALAR(mo.unmasked_sum, 213.0, tol);
}

TEST_CASE_TEMPLATE("whiten: default whitening has zero mean, unit variance and zero padding", T, float, double) {
  const int rows = 4, cols = 9;
  auto x = rlhf::test::normal_vector<T>(rows * cols, 11, 3.0);
  for (auto& v : x) v = static_cast<T>(v + T(5));
  const auto m = rlhf::test::right_padded_mask({9, 4, 1, 7}, cols);
  std::vector<T> out(x.size());
  const auto mo = rlhf::whiten(rlhf::cpu, view(x, rows, cols), view(m, rows, cols), view(out, rows, cols));
  CHECK(mo.count == 21);
  std::vector<double> valid;
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (m[i]) {
      valid.push_back(static_cast<double>(out[i]));
      RLHF_CHECK_SCALAR(out[i], (static_cast<double>(x[i]) - mo.mean) / std::sqrt(mo.variance + 1e-8),
                        rlhf::test::golden_tolerance<T>());
    } else {
      CHECK(out[i] == T(0));
    }
  }
  const auto [population, unbiased] = reference_variance(valid, {});
  long double mean = 0;
  for (double v : valid) mean += v;
  mean /= static_cast<long double>(valid.size());
  CHECK(std::fabs(static_cast<double>(mean)) < 1e-6);
  CHECK(static_cast<double>(population) == doctest::Approx(1.0).epsilon(1e-6));
  (void)unbiased;
}

TEST_CASE("whiten: the variance is the two-pass definition, also for a large offset") {
  auto x = rlhf::test::normal_vector<double>(60, 12, 1e6);
  for (auto& v : x) v += 1e7;
  const auto m = rlhf::test::right_padded_mask({20, 13, 20}, 20);
  const auto [population, unbiased] = reference_variance(x, m);
  RLHF_CHECK_SCALAR(rlhf::masked_var(rlhf::cpu, view(x, 3, 20), view(m, 3, 20)), static_cast<double>(population),
                    (rlhf::test::tolerance{.rtol = 1e-13}));
  RLHF_CHECK_SCALAR(rlhf::masked_var(rlhf::cpu, view(x, 3, 20), view(m, 3, 20), rlhf::variance_kind::unbiased),
                    static_cast<double>(unbiased), (rlhf::test::tolerance{.rtol = 1e-13}));
}

TEST_CASE("whiten: every option changes what the definition says it does") {
  std::vector<double> x{1, 2, 3, 10, 4, 10, 20, 30};
  const std::vector<std::uint8_t> m{1, 1, 1, 0, 1, 0, 0, 0};
  // Valid 1, 2, 3, 4: μ = 2.5, population var 1.25, unbiased 5/3; unmasked sum 80 → v0.5.9 centre 20.
  const double mu = 2.5, pop = 1.25, unb = 5.0 / 3.0, eps = 1e-8;
  std::vector<double> out(8);
  const auto run = [&](const rlhf::whiten_options& o) {
    rlhf::whiten(rlhf::cpu, view(x, 2, 4), view(m, 2, 4), view(out, 2, 4), o);
    return out;
  };
  const auto tol = rlhf::test::tolerance{.rtol = 1e-14, .atol = 1e-15};

  auto y = run({});
  RLHF_CHECK_SCALAR(y[0], (1 - mu) / std::sqrt(pop + eps), tol);
  CHECK(y[3] == 0.0);
  CHECK(y[7] == 0.0);

  y = run({.variance = rlhf::variance_kind::unbiased});
  RLHF_CHECK_SCALAR(y[2], (3 - mu) / std::sqrt(unb + eps), tol);

  y = run({.shift_mean = false});
  RLHF_CHECK_SCALAR(y[4], (4 - mu) / std::sqrt(pop + eps) + mu, tol);
  CHECK(y[3] == 0.0);

  y = run({.scale = false});
  RLHF_CHECK_SCALAR(y[0], 1 - mu, tol);

  y = run({.masked_positions = rlhf::whiten_masked::shift_like_valid});
  RLHF_CHECK_SCALAR(y[3], (10 - mu) / std::sqrt(pop + eps), tol);
  RLHF_CHECK_SCALAR(y[7], (30 - mu) / std::sqrt(pop + eps), tol);

  y = run({.masked_positions = rlhf::whiten_masked::keep_input});
  CHECK(y[3] == 10.0);
  CHECK(y[7] == 30.0);

  // ε inside vs clamp: visible when the variance is below ε.
  std::vector<double> tiny{1.0, 1.0 + 1e-5, 1.0, 1.0 + 1e-5};
  std::vector<double> tiny_out(4);
  rlhf::whiten(rlhf::cpu, view(tiny, 1, 4), rlhf::mask_view{}, view(tiny_out, 1, 4),
               {.epsilon = 1e-8, .epsilon_mode = rlhf::whiten_epsilon::clamp_variance});
  RLHF_CHECK_SCALAR(tiny_out[1], 0.5e-5 / std::sqrt(1e-8), (rlhf::test::tolerance{.rtol = 1e-9}));
  rlhf::whiten(rlhf::cpu, view(tiny, 1, 4), rlhf::mask_view{}, view(tiny_out, 1, 4), {.epsilon = 1e-8});
  RLHF_CHECK_SCALAR(tiny_out[1], 0.5e-5 / std::sqrt(0.25e-10 + 1e-8), (rlhf::test::tolerance{.rtol = 1e-9}));

  // OpenRLHF v0.5.9: centre = unmasked sum / masked count = 80 / 4 = 20; the variance is taken
  // about that centre: Σ_valid (x − 20)² / 4 = (361 + 324 + 289 + 256) / 4.
  y = run({.epsilon_mode = rlhf::whiten_epsilon::clamp_variance,
           .masked_positions = rlhf::whiten_masked::shift_like_valid,
           .mean = rlhf::whiten_mean::unmasked_sum_over_masked_count});
  const double v059 = (361.0 + 324 + 289 + 256) / 4;
  RLHF_CHECK_SCALAR(y[0], (1 - 20) / std::sqrt(v059), tol);
  RLHF_CHECK_SCALAR(y[7], (30 - 20) / std::sqrt(v059), tol);
}

TEST_CASE("whiten: reproduces every TRL v0.11.4 whiten / masked_mean / masked_var / masked_whiten case (golden)") {
  const auto& cases = rlhf::test::golden_file("trl_whiten.json").at("cases");
  int reproduced = 0;
  for (const auto& c : cases) {
    const std::string name = c.at("name");
    const std::string function = c.at("function");
    CAPTURE(name);
    if (function == "clip_by_value") continue;  // tests/elementwise_test.cpp
    auto x = to_array(c["inputs"]["values"]);
    const auto rows = x.rows(), cols = x.cols();
    std::vector<std::uint8_t> mask;
    if (c["inputs"].contains("mask")) mask = to_array(c["inputs"]["mask"]).as_mask();
    const rlhf::mask_view mv = mask.empty() ? rlhf::mask_view{} : view(mask, rows, cols);
    const auto tol = rlhf::test::golden_tolerance<double>();
    ++reproduced;

    if (function == "whiten") {
      // torch.var is unbiased; whiten has no mask.
      const rlhf::whiten_options o{.variance = rlhf::variance_kind::unbiased,
                                   .shift_mean = c["params"]["shift_mean"].get<bool>()};
      const auto expected = to_array(c["outputs"]["out"]).values;
      if (c["dtype"] == "float32") {
        auto xf = x.as<float>();
        std::vector<float> out(xf.size());
        rlhf::whiten(rlhf::cpu, view(xf, rows, cols), mv, view(out, rows, cols), o);
        RLHF_CHECK_CLOSE(out, expected, rlhf::test::golden_tolerance<float>());
      } else if (name == "whiten_single_element_unbiased_var_is_nan") {
        // Documented difference: TRL's unbiased variance of one element is NaN (n/(n − 1) = 1/0),
        // so its output is NaN. Ours defines that variance as 0: the output is (x − x)·1e4 = 0.
        CHECK(std::isnan(expected[0]));
        std::vector<double> out(1);
        rlhf::whiten(rlhf::cpu, view(x.values, 1, 1), mv, view(out, 1, 1), o);
        CHECK(out[0] == 0.0);
      } else {
        std::vector<double> out(x.values.size());
        rlhf::whiten(rlhf::cpu, view(x.values, rows, cols), mv, view(out, rows, cols), o);
        RLHF_CHECK_CLOSE(out, expected, tol);
      }
    } else if (function == "masked_mean" && c["params"]["axis"].is_null()) {
      const double got = rlhf::masked_mean(rlhf::cpu, view(x.values, rows, cols), mv);
      if (name == "masked_mean_all_masked_is_nan") {
        // Documented difference: TRL divides 0 by 0 (NaN); ours returns 0 with count 0.
        CHECK(std::isnan(rlhf::test::number(c["outputs"]["out"])));
        CHECK(got == 0.0);
        CHECK(rlhf::moments(rlhf::cpu, view(x.values, rows, cols), mv).count == 0);
      } else {
        RLHF_CHECK_SCALAR(got, rlhf::test::number(c["outputs"]["out"]), tol);
      }
    } else if (function == "masked_mean") {
      std::vector<double> out(static_cast<std::size_t>(rows));
      rlhf::masked_mean(rlhf::cpu, view(x.values, rows, cols), mv, vec(out));
      auto expected = to_array(c["outputs"]["out"]).values;
      if (name == "masked_mean_axis1_all_masked_row") {
        // Documented difference: the all-masked row is NaN in TRL and 0 here.
        CHECK(std::isnan(expected[2]));
        expected[2] = 0.0;
      }
      RLHF_CHECK_CLOSE(out, expected, tol);
    } else if (function == "masked_var") {
      const auto kind = c["params"]["unbiased"].get<bool>() ? rlhf::variance_kind::unbiased
                                                            : rlhf::variance_kind::population;
      const double got = rlhf::masked_var(rlhf::cpu, view(x.values, rows, cols), mv, kind);
      if (name == "masked_var_single_unmasked_element") {
        // Documented difference: TRL NaN (Bessel 1/0); ours 0.
        CHECK(std::isnan(rlhf::test::number(c["outputs"]["out"])));
        CHECK(got == 0.0);
      } else if (name == "masked_var_all_masked_raises") {
        // Documented difference: TRL raises ValueError ("The sum of the mask is zero"); ours
        // returns 0 for an empty selection, like masked_mean, so a rank or micro-batch without
        // valid tokens contributes nothing when moments are merged.
        CHECK(c["outputs"].contains("error"));
        CHECK(got == 0.0);
      } else {
        RLHF_CHECK_SCALAR(got, rlhf::test::number(c["outputs"]["out"]), tol);
      }
    } else if (function == "masked_whiten") {
      auto o = trl_masked_whiten;
      o.shift_mean = c["params"]["shift_mean"].get<bool>();
      std::vector<double> out(x.values.size());
      rlhf::whiten(rlhf::cpu, view(x.values, rows, cols), mv, view(out, rows, cols), o);
      const auto expected = to_array(c["outputs"]["out"]).values;
      if (name == "masked_whiten_single_unmasked_element") {
        // Documented difference: TRL gives NaN everywhere (unbiased variance of one element).
        // Ours: variance 0, rstd = 1/√1e-8 = 1e4; the valid element becomes 0 and masked
        // positions (shifted like valid ones, as TRL does) (x − x₀)·1e4 — finite.
        CHECK(std::all_of(expected.begin(), expected.end(), [](double v) { return std::isnan(v); }));
        const double x0 = x.values[7];
        CHECK(out[7] == 0.0);
        for (std::size_t i = 0; i < out.size(); ++i)
          RLHF_CHECK_SCALAR(out[i], (x.values[i] - x0) * 1e4, (rlhf::test::tolerance{.rtol = 1e-12}));
      } else {
        RLHF_CHECK_CLOSE(out, expected, tol);
      }
    } else {
      FAIL("unexpected function " << function);
    }
  }
  CHECK(reproduced == 26);
}

TEST_CASE("whiten: reproduces OpenRLHF advantage normalisation over a whole rollout (golden)") {
  // OpenRLHF computes the statistics on `advantages.float()` (float32, summed in torch's AVX2
  // lane order) and applies them to the float64 advantages. We compute the statistics in
  // double, so the outputs differ by the float32 rounding of the statistics: up to one float32
  // ulp of the mean (6e-8 here) times rstd. The comparison is therefore at the float32 golden
  // tolerance taken relative to the unit scale of whitened data (atol = rtol = 1e-6).
  const rlhf::test::tolerance float32_statistics{.rtol = 1e-6, .atol = 1e-6};
  for (const bool no_std_norm : {false, true}) {
    const auto& c = golden_case("openrlhf_gae.json", no_std_norm ? "advantage_normalisation_no_std_norm_True"
                                                                  : "advantage_normalisation_no_std_norm_False");
    CHECK(c["params"]["no_std_norm"].get<bool>() == no_std_norm);
    const rlhf::whiten_options o{.epsilon_mode = rlhf::whiten_epsilon::clamp_variance,
                                 .scale = !no_std_norm,
                                 .masked_positions = rlhf::whiten_masked::shift_like_valid};
    // Moments per experience, merged (Chan), then applied to each experience.
    const auto& chunks = c["inputs"]["advantages_chunks"];
    const auto& masks = c["inputs"]["action_mask_chunks"];
    std::vector<rlhf::test::array> xs;
    std::vector<std::vector<std::uint8_t>> ms;
    std::vector<rlhf::masked_moments> parts;
    for (std::size_t k = 0; k < chunks.size(); ++k) {
      xs.push_back(to_array(chunks[k]));
      ms.push_back(to_array(masks[k]).as_mask());
      parts.push_back(rlhf::moments(rlhf::cpu, view(xs[k].values, xs[k].rows(), xs[k].cols()),
                                    view(ms[k], xs[k].rows(), xs[k].cols())));
    }
    const auto total = rlhf::merge_moments(parts);
    CHECK(total.count == 12);
    for (std::size_t k = 0; k < chunks.size(); ++k) {
      std::vector<double> out(xs[k].values.size());
      rlhf::apply_whitening(rlhf::cpu, view(xs[k].values, xs[k].rows(), xs[k].cols()),
                            view(ms[k], xs[k].rows(), xs[k].cols()), total,
                            view(out, xs[k].rows(), xs[k].cols()), o);
      RLHF_CHECK_CLOSE(out, to_array(c["outputs"]["advantages_chunks"][k]).values, float32_statistics);
    }
  }
  {
    const auto& c = golden_case("openrlhf_gae.json", "advantage_normalisation_v0.5.9_replay_buffer");
    auto x = to_array(c["inputs"]["advantages_rows"]);
    const auto m = to_array(c["inputs"]["action_mask_rows"]).as_mask();
    std::vector<double> out(x.values.size());
    rlhf::whiten(rlhf::cpu, view(x.values, x.rows(), x.cols()), view(m, x.rows(), x.cols()),
                 view(out, x.rows(), x.cols()),
                 {.epsilon_mode = rlhf::whiten_epsilon::clamp_variance,
                  .masked_positions = rlhf::whiten_masked::shift_like_valid,
                  .mean = rlhf::whiten_mean::unmasked_sum_over_masked_count});
    RLHF_CHECK_CLOSE(out, to_array(c["outputs"]["advantages_rows"]).values, float32_statistics);
  }
}

TEST_CASE("whiten: OpenRLHF v0.5.9 centre differs from the masked mean when padding is non-zero") {
  // GAE leaves padding at exactly 0, which is why the v0.5.9 replay buffer's unmasked sum is
  // harmless there; with non-zero padding the two centres differ.
  std::vector<double> x{1, 2, 3, 6};
  const std::vector<std::uint8_t> m{1, 1, 1, 0};
  std::vector<double> a(4), b(4);
  rlhf::whiten(rlhf::cpu, view(x, 1, 4), view(m, 1, 4), view(a, 1, 4), {.scale = false});
  rlhf::whiten(rlhf::cpu, view(x, 1, 4), view(m, 1, 4), view(b, 1, 4),
               {.scale = false, .mean = rlhf::whiten_mean::unmasked_sum_over_masked_count});
  CHECK(a[0] == -1.0);
  CHECK(b[0] == -3.0);  // centre 12 / 3 = 4
}

TEST_CASE("whiten: composes with rlhf::gae into TRL v0.11.4 compute_advantages (golden)") {
  // TRL: values *= mask; rewards *= mask; optionally rewards = masked_whiten(rewards, mask,
  // shift_mean=False) (masked positions are shifted too, so they are no longer 0); GAE over
  // every position with no further masking; returns = A + V; advantages = masked_whiten(A, mask).
  for (const auto& name : trl_ppo_cases) {
    CAPTURE(name);
    const auto& c = golden_case("trl_ppo_v1.json", name);
    auto values = to_array(c["inputs"]["values"]);
    auto rewards = to_array(c["inputs"]["rewards"]);
    const auto mask = to_array(c["inputs"]["mask"]).as_mask();
    const auto rows = values.rows(), cols = values.cols();
    for (std::size_t i = 0; i < mask.size(); ++i) {
      values.values[i] *= mask[i];
      rewards.values[i] *= mask[i];
    }
    if (c["params"]["whiten_rewards"].get<bool>()) {
      auto o = trl_masked_whiten;
      o.shift_mean = false;
      rlhf::whiten(rlhf::cpu, view(rewards.values, rows, cols), view(mask, rows, cols),
                   view(rewards.values, rows, cols), o);  // in place
    }
    std::vector<double> adv(values.values.size()), ret(values.values.size());
    rlhf::gae(rlhf::cpu, view(rewards.values, rows, cols), view(values.values, rows, cols), rlhf::mask_view{},
              view(adv, rows, cols), view(ret, rows, cols),
              {.gamma = c["params"]["gamma"].get<double>(), .lambda = c["params"]["lam"].get<double>()});
    rlhf::whiten(rlhf::cpu, view(adv, rows, cols), view(mask, rows, cols), view(adv, rows, cols),
                 trl_masked_whiten);
    const auto tol = rlhf::test::golden_tolerance<double>();
    RLHF_CHECK_CLOSE(values.values, to_array(c["outputs"]["values_masked"]).values, tol);
    RLHF_CHECK_CLOSE(ret, to_array(c["outputs"]["returns"]).values, tol);
    RLHF_CHECK_CLOSE(adv, to_array(c["outputs"]["advantages_whitened"]).values, tol);
  }
}

TEST_CASE("whiten: every golden case assigned to this component is covered") {
  for (const auto& name : rlhf::test::golden_case_names("trl_whiten.json")) {
    CAPTURE(name);
    CHECK(contains(trl_whiten_cases, name));
  }
  for (const auto& name : rlhf::test::golden_case_names("openrlhf_gae.json"))
    if (name.rfind("advantage_normalisation", 0) == 0) {
      CAPTURE(name);
      CHECK(contains(openrlhf_gae_cases, name));
    }
  for (const auto& name : rlhf::test::golden_case_names("trl_ppo_v1.json"))
    if (name.rfind("compute_advantages", 0) == 0) {
      CAPTURE(name);
      CHECK(contains(trl_ppo_cases, name));
    }
}

TEST_CASE("whiten: merged moments of chunks equal the moments of the whole") {
  const int cols = 13;
  auto x = rlhf::test::normal_vector<double>(9 * cols, 21, 2.0);
  for (auto& v : x) v += 3.0;
  const auto m = rlhf::test::right_padded_mask({13, 1, 0, 7, 13, 5, 2, 0, 11}, cols);
  const auto whole = rlhf::moments(rlhf::cpu, view(x, 9, cols), view(m, 9, cols));
  // Chunks of 4, 2 (one all-masked row) and 3 rows.
  std::vector<rlhf::masked_moments> parts;
  for (auto [begin, n] : {std::pair{0, 4}, {4, 2}, {6, 3}}) {
    std::vector<double> xc(x.begin() + begin * cols, x.begin() + (begin + n) * cols);
    std::vector<std::uint8_t> mc(m.begin() + begin * cols, m.begin() + (begin + n) * cols);
    parts.push_back(rlhf::moments(rlhf::cpu, view(xc, n, cols), view(mc, n, cols)));
  }
  const auto tol = rlhf::test::tolerance{.rtol = 1e-13, .atol = 1e-15};
  for (const auto& merged : {rlhf::merge_moments(parts),
                             rlhf::merge_moments(parts[2], rlhf::merge_moments(parts[1], parts[0]))}) {
    CHECK(merged.count == whole.count);
    RLHF_CHECK_SCALAR(merged.mean, whole.mean, tol);
    RLHF_CHECK_SCALAR(merged.variance, whole.variance, tol);
    RLHF_CHECK_SCALAR(merged.unmasked_sum, whole.unmasked_sum, tol);
  }
  // Merging with an empty part changes nothing.
  const auto same = rlhf::merge_moments(whole, rlhf::masked_moments{});
  CHECK(same.count == whole.count);
  CHECK(same.mean == whole.mean);
  CHECK(same.variance == whole.variance);
  // moments + apply_whitening is exactly whiten.
  std::vector<double> a(x.size()), b(x.size());
  rlhf::whiten(rlhf::cpu, view(x, 9, cols), view(m, 9, cols), view(a, 9, cols));
  rlhf::apply_whitening(rlhf::cpu, view(x, 9, cols), view(m, 9, cols), whole, view(b, 9, cols));
  CHECK(a == b);
}

TEST_CASE_TEMPLATE("whiten: in place equals out of place", T, float, double) {
  auto x = rlhf::test::normal_vector<T>(5 * 8, 31);
  const auto m = rlhf::test::right_padded_mask({8, 3, 0, 6, 1}, 8);
  for (const auto masked : {rlhf::whiten_masked::zero, rlhf::whiten_masked::shift_like_valid,
                            rlhf::whiten_masked::keep_input}) {
    std::vector<T> out(x.size()), in_place = x;
    const rlhf::whiten_options o{.shift_mean = false, .masked_positions = masked};
    rlhf::whiten(rlhf::cpu, view(x, 5, 8), view(m, 5, 8), view(out, 5, 8), o);
    rlhf::whiten(rlhf::cpu, view(in_place, 5, 8), view(m, 5, 8), view(in_place, 5, 8), o);
    CHECK(out == in_place);
  }
}

TEST_CASE_TEMPLATE("whiten: no valid element and one valid element give defined values, never NaN", T, float,
                   double) {
  std::vector<T> x{1, 2, 3, 4, 5, 6};
  std::vector<T> out(6, T(7));
  const std::vector<std::uint8_t> none(6, 0), one{0, 0, 0, 0, 1, 0};
  // No valid element: count 0, mean 0, variance 0; whiten writes 0 (keep_input: x).
  const auto mo = rlhf::moments(rlhf::cpu, view(x, 2, 3), view(none, 2, 3));
  CHECK(mo.count == 0);
  CHECK(mo.mean == 0.0);
  CHECK(mo.variance == 0.0);
  CHECK(rlhf::masked_mean(rlhf::cpu, view(x, 2, 3), view(none, 2, 3)) == 0.0);
  CHECK(rlhf::masked_var(rlhf::cpu, view(x, 2, 3), view(none, 2, 3), rlhf::variance_kind::unbiased) == 0.0);
  for (const auto masked : {rlhf::whiten_masked::zero, rlhf::whiten_masked::shift_like_valid}) {
    rlhf::whiten(rlhf::cpu, view(x, 2, 3), view(none, 2, 3), view(out, 2, 3), {.masked_positions = masked});
    CHECK(out == std::vector<T>(6, T(0)));
  }
  rlhf::whiten(rlhf::cpu, view(x, 2, 3), view(none, 2, 3), view(out, 2, 3),
               {.masked_positions = rlhf::whiten_masked::keep_input});
  CHECK(out == x);
  std::vector<T> row_means(2, T(7));
  rlhf::masked_mean(rlhf::cpu, view(x, 2, 3), view(none, 2, 3), vec(row_means));
  CHECK(row_means == std::vector<T>{0, 0});

  // One valid element: population and unbiased variance 0, whitened value 0.
  for (const auto kind : {rlhf::variance_kind::population, rlhf::variance_kind::unbiased}) {
    CHECK(rlhf::masked_var(rlhf::cpu, view(x, 2, 3), view(one, 2, 3), kind) == 0.0);
    rlhf::whiten(rlhf::cpu, view(x, 2, 3), view(one, 2, 3), view(out, 2, 3), {.variance = kind});
    CHECK(out == std::vector<T>(6, T(0)));
  }
}

TEST_CASE_TEMPLATE("whiten: large magnitudes stay finite", T, float, double) {
  std::vector<T> x{T(1e4), T(-1e4), T(3e4), T(-5e4), T(1e4), T(2)};
  std::vector<T> out(6);
  for (const auto kind : {rlhf::variance_kind::population, rlhf::variance_kind::unbiased}) {
    rlhf::whiten(rlhf::cpu, view(x, 2, 3), rlhf::mask_view{}, view(out, 2, 3), {.variance = kind});
    for (T v : out) CHECK(std::isfinite(v));
  }
}

TEST_CASE_TEMPLATE("whiten: any thread count gives bitwise the same statistics and output", T, float, double) {
  const int rows = 71, cols = 23;
  auto x = rlhf::test::normal_vector<T>(rows * cols, 41);
  std::vector<int> lengths;
  for (int b = 0; b < rows; ++b) lengths.push_back((b * 7) % (cols + 1));
  const auto m = rlhf::test::right_padded_mask(lengths, cols);
  std::vector<T> a(x.size()), b(x.size()), ra(rows), rb(rows);
  const auto ma = rlhf::whiten(rlhf::cpu, view(x, rows, cols), view(m, rows, cols), view(a, rows, cols));
  const auto mb = rlhf::whiten(rlhf::cpu_backend{.threads = 4}, view(x, rows, cols), view(m, rows, cols),
                               view(b, rows, cols));
  CHECK(a == b);
  CHECK(ma.mean == mb.mean);
  CHECK(ma.variance == mb.variance);
  CHECK(rlhf::masked_sum(rlhf::cpu, view(x, rows, cols), view(m, rows, cols)) ==
        rlhf::masked_sum(rlhf::cpu_backend{.threads = 3}, view(x, rows, cols), view(m, rows, cols)));
  rlhf::masked_mean(rlhf::cpu, view(x, rows, cols), view(m, rows, cols), vec(ra));
  rlhf::masked_mean(rlhf::cpu_backend{.threads = 5}, view(x, rows, cols), view(m, rows, cols), vec(rb));
  CHECK(ra == rb);
}

TEST_CASE("whiten: works on strided views and rlhf::tensor") {
  // Every other column of a 2x8 buffer is a 2x4 view.
  std::vector<double> buffer{1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8, 0};
  const std::ptrdiff_t extents[2] = {2, 4}, strides[2] = {8, 2};
  rlhf::matrix_view<const double> x(buffer.data(), extents, strides);
  rlhf::tensor<double, 2> out(2, 4);
  rlhf::whiten(rlhf::cpu, x, rlhf::mask_view{}, out, {.scale = false});
  CHECK(out(0, 0) == -3.5);
  CHECK(out(1, 3) == 3.5);
  CHECK(rlhf::masked_mean(rlhf::cpu, x, rlhf::mask_view{}) == 4.5);
}

TEST_CASE("whiten: bad arguments throw rlhf::invalid_argument naming the function and values") {
  std::vector<double> x(8), out(8), rows(3);
  const std::vector<std::uint8_t> m(8, 1);
  CHECK_THROWS_WITH_AS(rlhf::whiten(rlhf::cpu, view(x, 2, 4), view(m, 4, 2), view(out, 2, 4)),
                       "rlhf::whiten(): x is 2x4 but mask is 4x2", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::whiten(rlhf::cpu, view(x, 2, 4), view(m, 2, 4), view(out, 1, 8)),
                       "rlhf::whiten(): x is 2x4 but out is 1x8", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::whiten(rlhf::cpu, view(x, 0, 4), rlhf::mask_view{}, view(out, 0, 4)),
                       "rlhf::whiten(): x is empty (0x4)", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::whiten(rlhf::cpu, view(x, 2, 4), view(m, 2, 4), view(out, 2, 4), {.epsilon = 0.0}),
                       "rlhf::whiten(): epsilon must be finite and > 0, got 0", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::whiten(rlhf::cpu, view(x, 2, 4), view(m, 2, 4), view(out, 2, 4),
                                    {.variance = static_cast<rlhf::variance_kind>(7)}),
                       "rlhf::whiten(): variance is not a variance_kind value (7)", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::whiten(rlhf::cpu, view(x, 2, 4), view(m, 2, 4), view(out, 2, 4),
                                    {.masked_positions = static_cast<rlhf::whiten_masked>(9)}),
                       "rlhf::whiten(): masked_positions is not a whiten_masked value (9)",
                       rlhf::invalid_argument);
  // ε is unused without scaling, so 0 is accepted there.
  CHECK_NOTHROW(rlhf::whiten(rlhf::cpu, view(x, 2, 4), view(m, 2, 4), view(out, 2, 4),
                             {.epsilon = 0.0, .scale = false}));
  CHECK_THROWS_WITH_AS(rlhf::masked_mean(rlhf::cpu, view(x, 2, 4), view(m, 2, 4), vec(rows)),
                       "rlhf::masked_mean(): out is 3 but the row count of x is 2", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS((void)rlhf::masked_sum(rlhf::cpu, view(x, 2, 4), view(m, 1, 8)),
                       "rlhf::masked_sum(): x is 2x4 but mask is 1x8", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS((void)rlhf::masked_var(rlhf::cpu, view(x, 2, 4), view(m, 2, 4),
                                              static_cast<rlhf::variance_kind>(2)),
                       "rlhf::masked_var(): variance is not a variance_kind value (2)", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::apply_whitening(rlhf::cpu, view(x, 2, 4), view(m, 2, 4),
                                             rlhf::masked_moments{.count = 3, .mean = 0.0, .variance = -1.0},
                                             view(out, 2, 4)),
                       "rlhf::apply_whitening(): moments.variance must be finite and >= 0, got -1",
                       rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::apply_whitening(rlhf::cpu, view(x, 2, 4), view(m, 2, 4),
                                             rlhf::masked_moments{.count = 3, .mean = std::nan("")},
                                             view(out, 2, 4)),
                       "rlhf::apply_whitening(): moments.mean must be finite, got nan", rlhf::invalid_argument);
}
