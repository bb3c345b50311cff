// Tests for <rlhf/reward_shaping.hpp>: the shaping formula, score placement, clip and
// missing-EOS penalty, the TRL v0.11.4 compute_rewards and OpenRLHF compute_reward golden
// cases, end-index helpers, masking, extreme inputs, threads and argument errors.
#include <rlhf/kl.hpp>
#include <rlhf/reward_shaping.hpp>
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

using rlhf::test::vec;
using rlhf::test::view;

const std::vector<std::string> trl_compute_rewards_cases{
    "compute_rewards_kl_penalty_kl", "compute_rewards_kl_penalty_abs", "compute_rewards_kl_penalty_mse",
    "compute_rewards_kl_penalty_full", "compute_rewards_all_masked_row"};

const std::vector<std::string> openrlhf_reward_cases{
    "reward_clip_-10_10", "reward_no_clip", "reward_negative_kl_coef_treated_as_0",
    "reward_all_masked_row_puts_score_at_last_index", "reward_v0.5.9_masked", "reward_v0.5.9_packed_list"};

}  // namespace

TEST_CASE_TEMPLATE("shape_rewards: -beta kl on valid positions plus the score at end_index", T, float, double) {
  // Row 0: 4 valid tokens, EOS at 3. Row 1: 2 valid tokens, EOS at 1.
  std::vector<T> logp{T(-1), T(-2), T(-0.5), T(-1), T(-3), T(-1), T(-9), T(-9)};
  std::vector<T> ref{T(-1.5), T(-1), T(-0.5), T(-2), T(-1), T(-2), T(-1), T(-1)};
  std::vector<T> scores{T(2), T(-1)};
  std::vector<std::ptrdiff_t> end{3, 1};
  const std::vector<std::uint8_t> m{1, 1, 1, 1, 1, 1, 0, 0};
  std::vector<T> rewards(8, T(7)), kl(8, T(7)), nsr(8, T(7));
  const auto stats = rlhf::shape_rewards(rlhf::cpu,
                                         {.logp = view(logp, 2, 4), .ref_logp = view(ref, 2, 4), .scores = vec(scores),
                                          .end_index = vec(end), .mask = view(m, 2, 4)},
                                         {.rewards = view(rewards, 2, 4), .kl = view(kl, 2, 4),
                                          .non_score_reward = view(nsr, 2, 4)},
                                         {.beta = 0.5});
  const std::vector<double> expected_kl{0.5, -1, 0, 1, -2, 1, 0, 0};
  const std::vector<double> expected_nsr{-0.25, 0.5, 0, -0.5, 1, -0.5, 0, 0};
  const std::vector<double> expected_rewards{-0.25, 0.5, 0, 1.5, 1, -1.5, 0, 0};
  RLHF_CHECK_CLOSE(kl, expected_kl, rlhf::test::golden_tolerance<T>());
  RLHF_CHECK_CLOSE(nsr, expected_nsr, rlhf::test::golden_tolerance<T>());
  RLHF_CHECK_CLOSE(rewards, expected_rewards, rlhf::test::golden_tolerance<T>());
  CHECK(stats.mean_kl_sum == doctest::Approx((0.5 + -1 + 0 + 1 + -2 + 1) / 2));
  CHECK(stats.mean_kl_mean == doctest::Approx((0.5 / 4 + -1.0 / 2) / 2));
  CHECK(stats.mean_non_score_reward == doctest::Approx(-0.5 * (0.5 + -1.0) / 2));
  CHECK(stats.mean_score == doctest::Approx(0.5));
  CHECK(stats.mean_total_reward == doctest::Approx(0.5 + 0.125));
  CHECK(stats.clipped_scores == 0);
  CHECK(stats.missing_eos == 0);

  // penalize_masked: the padding gets −β·kl too (TRL 0.11 / OpenRLHF); stats still count
  // valid positions only.
  const auto stats2 = rlhf::shape_rewards(rlhf::cpu,
                                          {.logp = view(logp, 2, 4), .ref_logp = view(ref, 2, 4),
                                           .scores = vec(scores), .end_index = vec(end), .mask = view(m, 2, 4)},
                                          {.rewards = view(rewards, 2, 4)}, {.beta = 0.5, .penalize_masked = true});
  CHECK(rewards[6] == T(4));
  CHECK(rewards[7] == T(4));
  CHECK(stats2.mean_kl_sum == stats.mean_kl_sum);
}

TEST_CASE_TEMPLATE("shape_rewards: score offset +1 is clamped to T - 1; clip and missing-EOS penalty", T, float,
                   double) {
  std::vector<T> zeros(8, T(0));
  std::vector<T> scores{T(3), T(-8)};
  std::vector<std::ptrdiff_t> end{1, 3};  // row 1 ends at the last position
  const std::vector<std::uint8_t> has_eos{1, 0};
  std::vector<T> rewards(8);
  // DeepSpeed-Chat: score clipped to ±5, placed one after the last answer token.
  auto stats = rlhf::shape_rewards(rlhf::cpu,
                                   {.logp = view(zeros, 2, 4), .ref_logp = view(zeros, 2, 4), .scores = vec(scores),
                                    .end_index = vec(end)},
                                   {.rewards = view(rewards, 2, 4)}, {.beta = 0.1, .score_clip = 5.0, .score_offset = 1});
  CHECK(rewards == std::vector<T>{0, 0, 3, 0, 0, 0, 0, -5});
  CHECK(stats.clipped_scores == 1);
  // TRL head: the missing-EOS penalty is subtracted before any clip.
  stats = rlhf::shape_rewards(rlhf::cpu,
                              {.logp = view(zeros, 2, 4), .ref_logp = view(zeros, 2, 4), .scores = vec(scores),
                               .end_index = vec(end), .has_eos = rlhf::vector_view<const std::uint8_t>(has_eos.data(), 2)},
                              {.rewards = view(rewards, 2, 4)},
                              {.beta = 0.05, .score_offset = 1, .missing_eos_penalty = 1.0});
  CHECK(rewards == std::vector<T>{0, 0, 3, 0, 0, 0, 0, -9});
  CHECK(stats.missing_eos == 1);
  stats = rlhf::shape_rewards(rlhf::cpu,
                              {.logp = view(zeros, 2, 4), .ref_logp = view(zeros, 2, 4), .scores = vec(scores),
                               .end_index = vec(end), .has_eos = rlhf::vector_view<const std::uint8_t>(has_eos.data(), 2)},
                              {.rewards = view(rewards, 2, 4)}, {.score_clip = 8.5, .missing_eos_penalty = 1.0});
  CHECK(rewards == std::vector<T>{0, 3, 0, 0, 0, 0, 0, T(-8.5)});
  CHECK(stats.clipped_scores == 1);
}

TEST_CASE("shape_rewards: reproduces TRL v0.11.4 compute_rewards (golden)") {
  // TRL: kl (= _kl_penalty) and −β·kl on every position, score added at mask.nonzero()[-1].
  for (const auto& [name, estimator] :
       {std::pair{"compute_rewards_kl_penalty_kl", rlhf::kl_estimator::k1},
        {"compute_rewards_kl_penalty_abs", rlhf::kl_estimator::abs},
        {"compute_rewards_kl_penalty_mse", rlhf::kl_estimator::k2},
        {"compute_rewards_kl_penalty_full", rlhf::kl_estimator::k1}}) {
    CAPTURE(name);
    const auto& c = golden_case("trl_ppo_v1.json", name);
    auto scores = to_array(c["inputs"]["scores"]).values;
    const auto mask = to_array(c["inputs"]["masks"]).as_mask();
    const std::ptrdiff_t rows = 3, cols = 8;
    std::vector<std::ptrdiff_t> end(3);
    rlhf::last_valid_index(rlhf::cpu, view(mask, rows, cols), vec(end));
    std::vector<double> rewards(24), kl(24), nsr(24);
    const rlhf::reward_shaping_options o{.beta = c["params"]["kl_coef"].get<double>(),
                                         .kl = {.estimator = estimator},
                                         .penalize_masked = true};
    if (std::string(name) == "compute_rewards_kl_penalty_full") {
      // kl_penalty="full": the full-distribution KL, passed in as a precomputed kl.
      auto logp = to_array(c["inputs"]["logprobs_full_vocab"]);
      auto ref = to_array(c["inputs"]["ref_logprobs_full_vocab"]);
      const auto v = logp.shape[2];
      std::vector<double> full(24);
      rlhf::full_kl(rlhf::cpu, rlhf::cube_view<const double>(logp.values.data(), rows, cols, v),
                    rlhf::cube_view<const double>(ref.values.data(), rows, cols, v), rlhf::mask_view{},
                    view(full, rows, cols));
      rlhf::shape_rewards(rlhf::cpu,
                          {.scores = vec(scores), .end_index = vec(end), .mask = view(mask, rows, cols),
                           .kl = view(full, rows, cols)},
                          {.rewards = view(rewards, rows, cols), .kl = view(kl, rows, cols),
                           .non_score_reward = view(nsr, rows, cols)},
                          o);
    } else {
      auto logp = to_array(c["inputs"]["logprobs"]).values;
      auto ref = to_array(c["inputs"]["ref_logprobs"]).values;
      rlhf::shape_rewards(rlhf::cpu,
                          {.logp = view(logp, rows, cols), .ref_logp = view(ref, rows, cols), .scores = vec(scores),
                           .end_index = vec(end), .mask = view(mask, rows, cols)},
                          {.rewards = view(rewards, rows, cols), .kl = view(kl, rows, cols),
                           .non_score_reward = view(nsr, rows, cols)},
                          o);
    }
    const auto tol = rlhf::test::golden_tolerance<double>();
    RLHF_CHECK_CLOSE(rewards, to_array(c["outputs"]["rewards"]).values, tol);
    RLHF_CHECK_CLOSE(nsr, to_array(c["outputs"]["non_score_reward"]).values, tol);
    RLHF_CHECK_CLOSE(kl, to_array(c["outputs"]["kls"]).values, tol);
  }
}

TEST_CASE("shape_rewards: TRL's all-masked row (IndexError) is an error naming the row") {
  // TRL raises "IndexError: index -1 is out of bounds for dimension 0 with size 0" from
  // mask.nonzero()[-1]. Ours: last_valid_index() names the row; the OpenRLHF policy puts the
  // score at T − 1 instead; shape_rewards itself takes any explicit end_index in [0, T).
  const auto& c = golden_case("trl_ppo_v1.json", "compute_rewards_all_masked_row");
  CHECK(c["outputs"].contains("error"));
  const auto mask = to_array(c["inputs"]["masks"]).as_mask();
  std::vector<std::ptrdiff_t> end(3);
  CHECK_THROWS_WITH_AS(rlhf::last_valid_index(rlhf::cpu, view(mask, 3, 8), vec(end)),
                       "rlhf::last_valid_index(): row 2 has no valid position", rlhf::invalid_argument);
  rlhf::last_valid_index(rlhf::cpu, view(mask, 3, 8), vec(end), {.empty_row = rlhf::empty_row_policy::last_position});
  CHECK(end == std::vector<std::ptrdiff_t>{5, 7, 7});
  // With that end_index the all-masked row gets only its score, no NaN anywhere.
  auto logp = to_array(c["inputs"]["logprobs"]).values;
  auto ref = to_array(c["inputs"]["ref_logprobs"]).values;
  auto scores = to_array(c["inputs"]["scores"]).values;
  std::vector<double> rewards(24);
  const auto stats = rlhf::shape_rewards(rlhf::cpu,
                                         {.logp = view(logp, 3, 8), .ref_logp = view(ref, 3, 8), .scores = vec(scores),
                                          .end_index = vec(end), .mask = view(mask, 3, 8)},
                                         {.rewards = view(rewards, 3, 8)}, {.beta = 0.2});
  for (int t = 0; t < 8; ++t) CHECK(rewards[static_cast<std::size_t>(16 + t)] == (t == 7 ? 0.3 : 0.0));
  CHECK(std::isfinite(stats.mean_kl_mean));
}

TEST_CASE("shape_rewards: reproduces OpenRLHF compute_reward, HEAD and v0.5.9 (golden)") {
  // compute_approx_kl returns float32, so compute_reward runs in float32 (r is cast to the kl's
  // dtype): the float overload reproduces it. −β·kl is added on every position
  // (penalize_masked) and r lands on the last index with action_mask = 1, T − 1 for an
  // all-zero row.
  int reproduced = 0;
  for (const auto& name : openrlhf_reward_cases) {
    CAPTURE(name);
    const auto& c = golden_case("openrlhf_kl_reward.json", name);
    ++reproduced;
    const auto& p = c["params"];
    rlhf::reward_shaping_options o{.beta = p["kl_coef"].get<double>(), .penalize_masked = true};
    if (!p["reward_clip_range"].is_null()) {
      CHECK(p["reward_clip_range"][0].get<double>() == -p["reward_clip_range"][1].get<double>());
      o.score_clip = p["reward_clip_range"][1].get<double>();
    }
    auto scores = to_array(c["inputs"]["r"]).as<float>();
    if (name == "reward_v0.5.9_packed_list") {
      // The packed path (a list of per-sample KL tensors, reward at num_actions − 1) is the
      // same computation with each sample laid out as a row: T = max length, end_index =
      // num_actions − 1, padding masked and ignored.
      const auto& kls = c["inputs"]["kl_list"];
      const auto lengths = p["num_actions"].get<std::vector<std::ptrdiff_t>>();
      const std::ptrdiff_t rows = 2, cols = *std::max_element(lengths.begin(), lengths.end());
      std::vector<float> kl(static_cast<std::size_t>(rows * cols), 0.0f), rewards(kl.size());
      std::vector<std::uint8_t> mask(kl.size(), 0);
      std::vector<std::ptrdiff_t> end;
      for (std::ptrdiff_t b = 0; b < rows; ++b) {
        const auto seg = to_array(kls[static_cast<std::size_t>(b)]).values;
        for (std::size_t t = 0; t < seg.size(); ++t) {
          kl[static_cast<std::size_t>(b * cols) + t] = static_cast<float>(seg[t]);
          mask[static_cast<std::size_t>(b * cols) + t] = 1;
        }
        end.push_back(lengths[static_cast<std::size_t>(b)] - 1);
      }
      rlhf::shape_rewards(rlhf::cpu,
                          {.scores = vec(scores), .end_index = vec(end), .mask = view(mask, rows, cols),
                           .kl = view(kl, rows, cols)},
                          {.rewards = view(rewards, rows, cols)}, o);
      for (std::ptrdiff_t b = 0; b < rows; ++b) {
        const auto expected = to_array(c["outputs"]["reward_list"][static_cast<std::size_t>(b)]).values;
        const std::vector<float> got(rewards.begin() + b * cols,
                                     rewards.begin() + b * cols + static_cast<std::ptrdiff_t>(expected.size()));
        RLHF_CHECK_CLOSE(got, expected, rlhf::test::golden_tolerance<float>());
      }
      continue;
    }
    auto kl = to_array(c["inputs"]["kl"]);
    const auto rows = kl.rows(), cols = kl.cols();
    auto klf = kl.as<float>();
    const auto mask = to_array(c["inputs"]["action_mask"]).as_mask();
    std::vector<std::ptrdiff_t> end(static_cast<std::size_t>(rows));
    rlhf::last_valid_index(rlhf::cpu, view(mask, rows, cols), vec(end),
                           {.empty_row = rlhf::empty_row_policy::last_position});
    std::vector<float> rewards(klf.size());
    const auto expected = to_array(c["outputs"]["reward"]).values;
    if (name == "reward_negative_kl_coef_treated_as_0") {
      // Documented difference: OpenRLHF replaces kl_coef ≤ 0 by 0; we reject β < 0 (a negative
      // coefficient rewards divergence and is always a bug). β = 0 gives OpenRLHF's output.
      CHECK_THROWS_WITH_AS(rlhf::shape_rewards(rlhf::cpu,
                                               {.scores = vec(scores), .end_index = vec(end),
                                                .mask = view(mask, rows, cols), .kl = view(klf, rows, cols)},
                                               {.rewards = view(rewards, rows, cols)}, o),
                           "rlhf::shape_rewards(): beta must be finite and >= 0, got -0.1", rlhf::invalid_argument);
      o.beta = 0.0;
    }
    rlhf::shape_rewards(rlhf::cpu,
                        {.scores = vec(scores), .end_index = vec(end), .mask = view(mask, rows, cols),
                         .kl = view(klf, rows, cols)},
                        {.rewards = view(rewards, rows, cols)}, o);
    RLHF_CHECK_CLOSE(rewards, expected, rlhf::test::golden_tolerance<float>());
  }
  CHECK(reproduced == 6);
}

TEST_CASE("shape_rewards: OpenRLHF end to end from log-probs (compute_approx_kl + compute_reward)") {
  // The HEAD k1 golden KL fed through shape_rewards' own estimator (float32, clamp 10) gives the
  // same rewards as the reward_clip_-10_10 case, whose kl input is that KL.
  const auto& k = golden_case("openrlhf_kl_reward.json", "approx_kl_k1_float64");
  const auto& r = golden_case("openrlhf_kl_reward.json", "reward_clip_-10_10");
  auto logp = to_array(k["inputs"]["log_probs"]).values;
  auto ref = to_array(k["inputs"]["log_probs_base"]).values;
  auto scores = to_array(r["inputs"]["r"]).values;
  const auto mask = to_array(r["inputs"]["action_mask"]).as_mask();
  std::vector<std::ptrdiff_t> end(2);
  rlhf::last_valid_index(rlhf::cpu, view(mask, 2, 5), vec(end));
  std::vector<double> rewards(10);
  const auto stats = rlhf::shape_rewards(
      rlhf::cpu,
      {.logp = view(logp, 2, 5), .ref_logp = view(ref, 2, 5), .scores = vec(scores), .end_index = vec(end),
       .mask = view(mask, 2, 5)},
      {.rewards = view(rewards, 2, 5)},
      {.beta = 0.01,
       .kl = {.estimator = rlhf::kl_estimator::k1, .clamp = 10.0, .precision = rlhf::kl_precision::float32},
       .score_clip = 10.0,
       .penalize_masked = true});
  // Our arithmetic after the KL is in double, OpenRLHF's in float32: float tolerance.
  RLHF_CHECK_CLOSE(rewards, to_array(r["outputs"]["reward"]).values, rlhf::test::golden_tolerance<float>());
  CHECK(stats.clipped_scores == 1);
}

TEST_CASE("shape_rewards: every golden case assigned to reward shaping is covered") {
  for (const auto& name : rlhf::test::golden_case_names("trl_ppo_v1.json"))
    if (name.rfind("compute_rewards", 0) == 0) {
      CAPTURE(name);
      CHECK(std::find(trl_compute_rewards_cases.begin(), trl_compute_rewards_cases.end(), name) !=
            trl_compute_rewards_cases.end());
    }
  for (const auto& name : rlhf::test::golden_case_names("openrlhf_kl_reward.json"))
    if (name.rfind("reward", 0) == 0) {
      CAPTURE(name);
      CHECK(std::find(openrlhf_reward_cases.begin(), openrlhf_reward_cases.end(), name) !=
            openrlhf_reward_cases.end());
    }
}

TEST_CASE("last_valid_index and first_true_index: right and left padding, empty rows") {
  const std::vector<std::uint8_t> m{1, 1, 0, 0,  //
                                    0, 1, 1, 1,  //
                                    0, 0, 0, 0,  //
                                    0, 1, 0, 1};
  std::vector<std::ptrdiff_t> last(4), first(4);
  rlhf::last_valid_index(rlhf::cpu, view(m, 4, 4), vec(last), {.empty_row = rlhf::empty_row_policy::last_position});
  CHECK(last == std::vector<std::ptrdiff_t>{1, 3, 3, 3});
  rlhf::first_true_index(rlhf::cpu, view(m, 4, 4), vec(first));
  CHECK(first == std::vector<std::ptrdiff_t>{0, 1, 4, 1});  // no true → T
  std::vector<std::ptrdiff_t> wrong(3);
  CHECK_THROWS_WITH_AS(rlhf::first_true_index(rlhf::cpu, view(m, 4, 4), vec(wrong)),
                       "rlhf::first_true_index(): out is 3 but the row count of mask is 4", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::last_valid_index(rlhf::cpu, view(m, 4, 4), vec(wrong)),
                       "rlhf::last_valid_index(): end_index is 3 but the row count of mask is 4",
                       rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::last_valid_index(rlhf::cpu, view(m, 4, 4), vec(last),
                                              {.empty_row = static_cast<rlhf::empty_row_policy>(5)}),
                       "rlhf::last_valid_index(): empty_row is not an empty_row_policy value (5)",
                       rlhf::invalid_argument);
}

TEST_CASE_TEMPLATE("shape_rewards: log-probs of magnitude 1e4 and log-ratios of ±50 stay finite", T, float, double) {
  std::vector<T> logp{T(-1e4), T(-1e4), T(-50), T(0)};
  std::vector<T> ref{T(-1e4 + 50), T(-1e4 - 50), T(0), T(-50)};
  std::vector<T> scores{T(1), T(-1)};
  std::vector<std::ptrdiff_t> end{1, 1};
  std::vector<T> rewards(4);
  for (const auto e : {rlhf::kl_estimator::k1, rlhf::kl_estimator::k2, rlhf::kl_estimator::k3, rlhf::kl_estimator::abs}) {
    const auto stats = rlhf::shape_rewards(rlhf::cpu,
                                           {.logp = view(logp, 2, 2), .ref_logp = view(ref, 2, 2),
                                            .scores = vec(scores), .end_index = vec(end)},
                                           {.rewards = view(rewards, 2, 2)}, {.kl = {.estimator = e}});
    for (T r : rewards) CHECK(std::isfinite(r));
    CHECK(std::isfinite(stats.mean_kl_sum));
  }
}

TEST_CASE_TEMPLATE("shape_rewards: any thread count gives bitwise the same rewards and statistics", T, float,
                   double) {
  const int rows = 61, cols = 19;
  auto logp = rlhf::test::normal_vector<T>(rows * cols, 71);
  auto ref = rlhf::test::normal_vector<T>(rows * cols, 72);
  auto scores = rlhf::test::normal_vector<T>(rows, 73, 3.0);
  std::vector<int> lengths;
  for (int b = 0; b < rows; ++b) lengths.push_back(1 + (b * 7) % cols);
  const auto m = rlhf::test::right_padded_mask(lengths, cols);
  std::vector<std::ptrdiff_t> end(rows);
  rlhf::last_valid_index(rlhf::cpu_backend{.threads = 2}, view(m, rows, cols), vec(end));
  for (int b = 0; b < rows; ++b) CHECK(end[static_cast<std::size_t>(b)] == lengths[static_cast<std::size_t>(b)] - 1);
  std::vector<T> a(logp.size()), b(logp.size());
  const rlhf::reward_shaping_options o{.beta = 0.05, .kl = {.estimator = rlhf::kl_estimator::k3}, .score_clip = 2.0};
  const auto sa = rlhf::shape_rewards(rlhf::cpu,
                                      {.logp = view(logp, rows, cols), .ref_logp = view(ref, rows, cols),
                                       .scores = vec(scores), .end_index = vec(end), .mask = view(m, rows, cols)},
                                      {.rewards = view(a, rows, cols)}, o);
  const auto sb = rlhf::shape_rewards(rlhf::cpu_backend{.threads = 4},
                                      {.logp = view(logp, rows, cols), .ref_logp = view(ref, rows, cols),
                                       .scores = vec(scores), .end_index = vec(end), .mask = view(m, rows, cols)},
                                      {.rewards = view(b, rows, cols)}, o);
  CHECK(a == b);
  CHECK(sa.mean_kl_sum == sb.mean_kl_sum);
  CHECK(sa.mean_kl_mean == sb.mean_kl_mean);
  CHECK(sa.mean_non_score_reward == sb.mean_non_score_reward);
  CHECK(sa.clipped_scores == sb.clipped_scores);
}

TEST_CASE("shape_rewards: works on rlhf::tensor") {
  rlhf::tensor<float, 2> logp(1, 3), ref(1, 3), rewards(1, 3);
  rlhf::tensor<float, 1> scores(1);
  rlhf::tensor<std::ptrdiff_t, 1> end(1);
  scores(0) = 2.0f;
  end(0) = 2;
  logp(0, 0) = -1.0f;
  rlhf::shape_rewards(rlhf::cpu, {.logp = logp, .ref_logp = ref, .scores = scores, .end_index = end},
                      {.rewards = rewards}, {.beta = 1.0});
  CHECK(rewards(0, 0) == 1.0f);
  CHECK(rewards(0, 2) == 2.0f);
}

TEST_CASE("shape_rewards: bad arguments throw rlhf::invalid_argument naming the function and values") {
  std::vector<double> a(8), rewards(8), scores(2), scores3(3);
  std::vector<std::ptrdiff_t> end{1, 4}, end_ok{1, 3};
  const std::vector<std::uint8_t> m(8, 1);
  const auto call = [&](const rlhf::shape_rewards_inputs<double>& in, const rlhf::reward_shaping_options& o = {}) {
    return rlhf::shape_rewards(rlhf::cpu, in, {.rewards = view(rewards, 2, 4)}, o);
  };
  CHECK_THROWS_WITH_AS(call({.logp = view(a, 2, 4), .ref_logp = view(a, 2, 4), .scores = vec(scores),
                             .end_index = vec(end)}),
                       "rlhf::shape_rewards(): end_index[1] is 4, outside [0, 4)", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(call({.logp = view(a, 2, 4), .ref_logp = view(a, 4, 2), .scores = vec(scores),
                             .end_index = vec(end_ok)}),
                       "rlhf::shape_rewards(): logp is 2x4 but ref_logp is 4x2", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(call({.logp = view(a, 2, 4), .ref_logp = view(a, 2, 4), .scores = vec(scores3),
                             .end_index = vec(end_ok)}),
                       "rlhf::shape_rewards(): scores is 3 but the row count of logp is 2", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(call({.logp = view(a, 2, 4), .ref_logp = view(a, 2, 4), .scores = vec(scores),
                             .end_index = vec(end_ok), .mask = view(m, 4, 2)}),
                       "rlhf::shape_rewards(): logp is 2x4 but mask is 4x2", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(call({.logp = view(a, 2, 4), .ref_logp = view(a, 2, 4), .scores = vec(scores),
                             .end_index = vec(end_ok)},
                            {.beta = -0.1}),
                       "rlhf::shape_rewards(): beta must be finite and >= 0, got -0.1", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(call({.logp = view(a, 2, 4), .ref_logp = view(a, 2, 4), .scores = vec(scores),
                             .end_index = vec(end_ok)},
                            {.missing_eos_penalty = 1.0}),
                       "rlhf::shape_rewards(): missing_eos_penalty is set but has_eos is empty",
                       rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(call({.logp = view(a, 2, 4), .ref_logp = view(a, 2, 4), .scores = vec(scores),
                             .end_index = vec(end_ok)},
                            {.score_offset = -1}),
                       "rlhf::shape_rewards(): score_offset must be >= 0, got -1", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(call({.logp = view(a, 2, 4), .ref_logp = view(a, 2, 4), .scores = vec(scores),
                             .end_index = vec(end_ok)},
                            {.score_clip = -5.0}),
                       "rlhf::shape_rewards(): score_clip must be > 0, got -5", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(call({.logp = view(a, 2, 4), .ref_logp = view(a, 2, 4), .scores = vec(scores),
                             .end_index = vec(end_ok), .kl = view(a, 2, 4)}),
                       "rlhf::shape_rewards(): pass either kl or logp and ref_logp, not both",
                       rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(call({.scores = vec(scores), .end_index = vec(end_ok)}),
                       "rlhf::shape_rewards(): logp and ref_logp (or kl) are required", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(call({.logp = view(a, 2, 4), .ref_logp = view(a, 2, 4), .scores = vec(scores),
                             .end_index = vec(end_ok)},
                            {.kl = {.estimator = static_cast<rlhf::kl_estimator>(9)}}),
                       "rlhf::shape_rewards(): estimator is not a kl_estimator value (9)", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::shape_rewards(rlhf::cpu,
                                           {.logp = view(a, 2, 4), .ref_logp = view(a, 2, 4), .scores = vec(scores),
                                            .end_index = vec(end_ok)},
                                           {.rewards = view(rewards, 1, 8)}),
                       "rlhf::shape_rewards(): logp is 2x4 but rewards is 1x8", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(call({.logp = view(a, 0, 4), .ref_logp = view(a, 0, 4), .scores = vec(scores),
                             .end_index = vec(end_ok)}),
                       "rlhf::shape_rewards(): logp is empty (0x4)", rlhf::invalid_argument);
}
