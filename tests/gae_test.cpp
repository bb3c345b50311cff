// Tests for <rlhf/gae.hpp>: known answers, an O(T²) direct-sum reference, the OpenRLHF golden
// cases, masking, threads, and argument errors.
#include <rlhf/gae.hpp>
#include <rlhf/tensor.hpp>

#include <doctest/doctest.h>

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

using rlhf::test::view;

/// A_t = Σ_{k ≥ t} (γλ)^{k−t} δ_k, straight from the definition (no recursion).
std::vector<double> direct_sum_gae(const std::vector<double>& r, const std::vector<double>& v,
                                   int n_tokens, double gamma, double lambda) {
  const int rows = static_cast<int>(r.size()) / n_tokens;
  std::vector<double> a(r.size());
  for (int b = 0; b < rows; ++b)
    for (int t = 0; t < n_tokens; ++t) {
      double sum = 0, weight = 1;
      for (int k = t; k < n_tokens; ++k) {
        const double next_v = k + 1 < n_tokens ? v[b * n_tokens + k + 1] : 0.0;
        sum += weight * (r[b * n_tokens + k] + gamma * next_v - v[b * n_tokens + k]);
        weight *= gamma * lambda;
      }
      a[b * n_tokens + t] = sum;
    }
  return a;
}

}  // namespace

TEST_CASE_TEMPLATE("gae: gamma = lambda = 1 gives reward-to-go minus value", T, float, double) {
  std::vector<T> rewards{1, 2, 3, 0.5, 0.5, 0.5}, values{0.25, -1, 2, 0, 1, 0};
  std::vector<T> adv(6), ret(6);
  rlhf::gae(rlhf::cpu, view(rewards, 2, 3), view(values, 2, 3), rlhf::mask_view{}, view(adv, 2, 3),
            view(ret, 2, 3), {.gamma = 1.0, .lambda = 1.0});
  const std::vector<double> expected_adv{6 - 0.25, 5 + 1, 3 - 2, 1.5 - 0, 1 - 1, 0.5 - 0};
  const std::vector<double> expected_ret{6, 5, 3, 1.5, 1, 0.5};
  RLHF_CHECK_CLOSE(adv, expected_adv, rlhf::test::golden_tolerance<T>());
  RLHF_CHECK_CLOSE(ret, expected_ret, rlhf::test::golden_tolerance<T>());
}

TEST_CASE("gae: recursion equals the direct sum of discounted TD errors") {
  const int rows = 5, n_tokens = 37;
  auto rewards = rlhf::test::normal_vector<double>(rows * n_tokens, 1);
  auto values = rlhf::test::normal_vector<double>(rows * n_tokens, 2);
  for (auto [gamma, lambda] : {std::pair{1.0, 0.95}, {0.99, 0.95}, {0.9, 0.0}, {0.5, 1.0}}) {
    std::vector<double> adv(rewards.size()), ret(rewards.size());
    rlhf::gae(rlhf::cpu, view(rewards, rows, n_tokens), view(values, rows, n_tokens), rlhf::mask_view{},
              view(adv, rows, n_tokens), view(ret, rows, n_tokens), {.gamma = gamma, .lambda = lambda});
    RLHF_CHECK_CLOSE(adv, direct_sum_gae(rewards, values, n_tokens, gamma, lambda),
                     (rlhf::test::tolerance{.rtol = 1e-12, .atol = 1e-12}));
  }
}

TEST_CASE("gae: right padding contributes exactly zero and gets A = R = 0") {
  const int n_tokens = 6;
  auto rewards = rlhf::test::normal_vector<double>(2 * n_tokens, 3);
  auto values = rlhf::test::normal_vector<double>(2 * n_tokens, 4);
  const auto mask = rlhf::test::right_padded_mask({6, 3}, n_tokens);
  std::vector<double> adv(12), ret(12);
  rlhf::gae(rlhf::cpu, view(rewards, 2, n_tokens), view(values, 2, n_tokens), view(mask, 2, n_tokens),
            view(adv, 2, n_tokens), view(ret, 2, n_tokens));

  // Row 1 truncated to its 3 valid tokens, computed without any mask.
  std::vector<double> r3(rewards.begin() + 6, rewards.begin() + 9), v3(values.begin() + 6, values.begin() + 9);
  std::vector<double> adv3(3), ret3(3);
  rlhf::gae(rlhf::cpu, view(r3, 1, 3), view(v3, 1, 3), rlhf::mask_view{}, view(adv3, 1, 3), view(ret3, 1, 3));
  for (int t = 0; t < 3; ++t) {
    CHECK(adv[6 + t] == adv3[t]);
    CHECK(ret[6 + t] == ret3[t]);
  }
  for (int t = 3; t < 6; ++t) {
    CHECK(adv[6 + t] == 0.0);
    CHECK(ret[6 + t] == 0.0);
  }
}

TEST_CASE("gae: reproduces OpenRLHF get_advantages_and_returns (golden)") {
  for (const char* name : {"gae_gamma1.0_lambda1.0", "gae_gamma1.0_lambda0.95", "gae_gamma0.99_lambda0.95",
                           "gae_gamma1.0_lambda0.0", "gae_batch1", "gae_v0.5.9_same_formula"}) {
    CAPTURE(name);
    const auto& c = golden_case("openrlhf_gae.json", name);
    auto values = to_array(c["inputs"]["values"]);
    auto rewards = to_array(c["inputs"]["rewards"]);
    auto mask = to_array(c["inputs"]["action_mask"]).as_mask();
    const auto rows = values.rows(), cols = values.cols();
    std::vector<double> adv(values.values.size()), ret(values.values.size());
    rlhf::gae(rlhf::cpu, view(rewards.values, rows, cols), view(values.values, rows, cols),
              view(mask, rows, cols), view(adv, rows, cols), view(ret, rows, cols),
              {.gamma = c["params"]["gamma"].get<double>(), .lambda = c["params"]["lambd"].get<double>()});
    RLHF_CHECK_CLOSE(adv, to_array(c["outputs"]["advantages"]).values, rlhf::test::golden_tolerance<double>());
    RLHF_CHECK_CLOSE(ret, to_array(c["outputs"]["returns"]).values, rlhf::test::golden_tolerance<double>());
  }
}

TEST_CASE("discounted_returns: reproduces OpenRLHF get_cumulative_returns (golden)") {
  // OpenRLHF accumulates in float32 whatever the input dtype (its running return is a float32
  // tensor), so the float overload is the one that reproduces it.
  for (const char* name : {"reinforce_cumulative_returns_gamma1.0", "reinforce_cumulative_returns_gamma0.9"}) {
    CAPTURE(name);
    const auto& c = golden_case("openrlhf_gae.json", name);
    auto rewards = to_array(c["inputs"]["rewards"]).as<float>();
    auto mask = to_array(c["inputs"]["action_mask"]).as_mask();
    const auto expected = to_array(c["outputs"]["returns"]);
    const auto rows = expected.rows(), cols = expected.cols();
    std::vector<float> ret(rewards.size());
    rlhf::discounted_returns(rlhf::cpu, view(rewards, rows, cols), view(mask, rows, cols),
                             view(ret, rows, cols), {.gamma = c["params"]["gamma"].get<double>()});
    RLHF_CHECK_CLOSE(ret, expected.values, rlhf::test::golden_tolerance<float>());
  }
}

TEST_CASE_TEMPLATE("gae: any thread count gives bitwise the same result", T, float, double) {
  const int rows = 67, n_tokens = 29;
  auto rewards = rlhf::test::normal_vector<T>(rows * n_tokens, 5);
  auto values = rlhf::test::normal_vector<T>(rows * n_tokens, 6);
  std::vector<T> adv1(rewards.size()), ret1(rewards.size()), adv2(rewards.size()), ret2(rewards.size());
  rlhf::gae(rlhf::cpu, view(rewards, rows, n_tokens), view(values, rows, n_tokens), rlhf::mask_view{},
            view(adv1, rows, n_tokens), view(ret1, rows, n_tokens));
  rlhf::gae(rlhf::cpu_backend{.threads = 3}, view(rewards, rows, n_tokens), view(values, rows, n_tokens),
            rlhf::mask_view{}, view(adv2, rows, n_tokens), view(ret2, rows, n_tokens));
  CHECK(adv1 == adv2);
  CHECK(ret1 == ret2);
}

TEST_CASE("gae: works on strided views and rlhf::tensor") {
  // Every other column of a 2x8 buffer is a 2x4 view.
  std::vector<double> buffer(16, 1.0);
  const std::ptrdiff_t extents[2] = {2, 4}, strides[2] = {8, 2};
  rlhf::matrix_view<const double> rewards(buffer.data(), extents, strides);
  rlhf::tensor<double, 2> values(2, 4), adv(2, 4), ret(2, 4);
  rlhf::gae(rlhf::cpu, rewards, values, rlhf::mask_view{}, adv, ret, {.gamma = 1.0, .lambda = 1.0});
  CHECK(adv(0, 0) == 4.0);
  CHECK(adv(1, 3) == 1.0);
}

TEST_CASE("gae: bad arguments throw rlhf::invalid_argument naming the function and values") {
  std::vector<double> a(8), b(7), out(8), out2(8);
  std::vector<std::uint8_t> m(8, 1);
  CHECK_THROWS_WITH_AS(rlhf::gae(rlhf::cpu, view(a, 2, 4), view(b, 1, 7), view(m, 2, 4), view(out, 2, 4),
                                 view(out2, 2, 4)),
                       "rlhf::gae(): rewards is 2x4 but values is 1x7", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::gae(rlhf::cpu, view(a, 2, 4), view(a, 2, 4), view(m, 4, 2), view(out, 2, 4),
                                 view(out2, 2, 4)),
                       "rlhf::gae(): rewards is 2x4 but mask is 4x2", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::gae(rlhf::cpu, view(a, 0, 4), view(a, 0, 4), rlhf::mask_view{}, view(out, 0, 4),
                                 view(out2, 0, 4)),
                       "rlhf::gae(): rewards is empty (0x4)", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::gae(rlhf::cpu, view(a, 2, 4), view(a, 2, 4), rlhf::mask_view{}, view(out, 2, 4),
                                 view(out2, 2, 4), {.gamma = 1.5}),
                       "rlhf::gae(): gamma must be in [0, 1], got 1.5", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::gae(rlhf::cpu, view(a, 2, 4), view(a, 2, 4), rlhf::mask_view{}, view(out, 2, 4),
                                 view(out2, 2, 4), {.lambda = std::nan("")}),
                       "rlhf::gae(): lambda must be in [0, 1], got nan", rlhf::invalid_argument);
}

TEST_CASE("gae: every GAE and returns case of openrlhf_gae.json is covered") {
  // The advantage_normalisation_* cases of the same file are whitening: tests/whiten_test.cpp.
  const std::vector<std::string> covered{"gae_gamma1.0_lambda1.0", "gae_gamma1.0_lambda0.95",
                                         "gae_gamma0.99_lambda0.95", "gae_gamma1.0_lambda0.0",
                                         "gae_batch1", "gae_v0.5.9_same_formula",
                                         "reinforce_cumulative_returns_gamma1.0",
                                         "reinforce_cumulative_returns_gamma0.9"};
  for (const auto& name : rlhf::test::golden_case_names("openrlhf_gae.json")) {
    if (name.rfind("advantage_normalisation", 0) == 0) continue;
    CAPTURE(name);
    CHECK(std::find(covered.begin(), covered.end(), name) != covered.end());
  }
}
