// Tests for <rlhf/ppo.hpp>: hand-derived answers, every OpenRLHF PolicyLoss/ValueLoss golden
// case, the TRL 0.11 PPOTrainer.loss golden cases, finite-difference gradients, masking,
// extreme log ratios, threads, overload resolution and argument errors.
#include <rlhf/ppo.hpp>
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
#include <limits>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace {

using rlhf::test::golden_case;
using rlhf::test::json;
using rlhf::test::to_array;

using rlhf::test::cview;
using rlhf::test::mview;
using rlhf::test::view;

template <class T>
std::vector<T> cast(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

bool all_finite(const auto& v) {
  return std::all_of(std::begin(v), std::end(v), [](auto x) { return std::isfinite(static_cast<double>(x)); });
}

// --- OpenRLHF golden file ---------------------------------------------------------------------

constexpr const char* openrlhf_file = "openrlhf_policy_value_loss.json";

bool is_head(const json& c) { return c.at("source") == "openrlhf-head"; }

/// The options that make our loss compute what the case's OpenRLHF version computed.
rlhf::ppo_policy_options openrlhf_policy_options(const json& c) {
  const json& p = c.at("params");
  rlhf::ppo_policy_options o{};
  if (is_head(c)) o.log_ratio_clamp = 20.0;  // HEAD clamps the log ratio to [-20, 20] before exp
  if (p.contains("clip_eps")) o.clip_low = o.clip_high = p["clip_eps"].get<double>();
  if (p.contains("clip_eps_low")) o.clip_low = p["clip_eps_low"].get<double>();
  if (p.contains("clip_eps_high")) o.clip_high = p["clip_eps_high"].get<double>();
  if (p.contains("dual_clip")) o.dual_clip = p["dual_clip"].get<double>();
  // v0.5.9 always takes the per-sequence mean; HEAD only with token_level_loss=False.
  const bool token_level = is_head(c) && p.value("token_level_loss", true);
  if (p.contains("batch_num_tokens")) {
    // HEAD: sum / batch_num_tokens * dp_size
    o.reduction = rlhf::loss_reduction::global_token_mean;
    o.global_normaliser = p["batch_num_tokens"].get<double>() / p["dp_size"].get<double>();
  } else if (p.contains("global_batch_size")) {
    // HEAD: sum of per-sequence means / global_batch_size * dp_size
    o.reduction = rlhf::loss_reduction::global_sequence_mean;
    o.global_normaliser = p["global_batch_size"].get<double>() / p["dp_size"].get<double>();
  } else {
    o.reduction = token_level ? rlhf::loss_reduction::token_mean : rlhf::loss_reduction::sequence_mean;
  }
  return o;
}

rlhf::ppo_value_options openrlhf_value_options(const json& c) {
  const json& p = c.at("params");
  rlhf::ppo_value_options o{};
  if (p.at("clip_eps").is_null())
    o.clip = std::nullopt;
  else
    o.clip = p["clip_eps"].get<double>();
  const bool token_level = is_head(c) && p.value("token_level_loss", true);
  o.reduction = token_level ? rlhf::loss_reduction::token_mean : rlhf::loss_reduction::sequence_mean;
  return o;
}

struct policy_case {
  std::vector<double> logp, old_logp, advantages;
  std::vector<std::uint8_t> mask;
  std::ptrdiff_t rows = 0, cols = 0;
};

policy_case load_openrlhf_policy(const json& c) {
  const json& in = c.at("inputs");
  const auto logp = to_array(in.at("log_probs"));
  return {logp.values, to_array(in.at("old_log_probs")).values, to_array(in.at("advantages")).values,
          to_array(in.at("action_mask")).as_mask(), logp.rows(), logp.cols()};
}

template <class T>
rlhf::ppo_policy_stats<T> run_policy(const policy_case& pc, std::vector<T>& grad,
                                     const rlhf::ppo_policy_options& options) {
  const auto logp = cast<T>(pc.logp), old = cast<T>(pc.old_logp), adv = cast<T>(pc.advantages);
  grad.assign(pc.logp.size(), T(-7));  // garbage: every element must be overwritten
  return rlhf::ppo_policy_loss(rlhf::cpu,
                               {.logp = cview(logp, pc.rows, pc.cols),
                                .old_logp = cview(old, pc.rows, pc.cols),
                                .advantages = cview(adv, pc.rows, pc.cols),
                                .mask = mview(pc.mask, pc.rows, pc.cols)},
                               view(grad, pc.rows, pc.cols), options);
}

struct value_case {
  std::vector<double> values, old_values, returns;
  std::vector<std::uint8_t> mask;
  std::ptrdiff_t rows = 0, cols = 0;
};

template <class T>
rlhf::ppo_value_stats<T> run_value(const value_case& vc, std::vector<T>& grad,
                                   const rlhf::ppo_value_options& options) {
  const auto v = cast<T>(vc.values), old = cast<T>(vc.old_values), ret = cast<T>(vc.returns);
  grad.assign(vc.values.size(), T(-7));
  return rlhf::ppo_value_loss(rlhf::cpu,
                              {.values = cview(v, vc.rows, vc.cols),
                               .old_values = cview(old, vc.rows, vc.cols),
                               .returns = cview(ret, vc.rows, vc.cols),
                               .mask = mview(vc.mask, vc.rows, vc.cols)},
                              view(grad, vc.rows, vc.cols), options);
}

const std::vector<std::string> openrlhf_policy_cases{
    "policy_ppo_token_level_default",
    "policy_ppo_sequence_level",
    "policy_clip_higher_0.2_0.28",
    "policy_dual_clip_3",
    "policy_no_dual_clip_same_inputs",
    "policy_log_ratio_clamped_to_pm20",
    "policy_global_token_normaliser",
    "policy_global_sample_normaliser",
    "policy_sequence_level_all_masked_row_excluded",
    "policy_token_level_all_masked_row",
    "policy_batch1",
    "policy_v0.5.9_sample_mean",
};
const std::vector<std::string> openrlhf_value_cases{
    "value_clip_0.5_head_default", "value_clip_0.2", "value_no_clip", "value_clip_0.2_sequence_level",
    "value_v0.5.9_clip_0.2"};
// Covered by its own test below (the reference's NaN is documented, not reproduced).
constexpr const char* openrlhf_nan_case = "policy_v0.5.9_all_masked_row_gives_nan";

// --- TRL 0.11 golden file ---------------------------------------------------------------------

constexpr const char* trl_file = "trl_ppo_v1.json";
const std::vector<std::string> trl_cases{"loss_default", "loss_ratio_threshold_skips_batch"};

struct trl_case {
  policy_case policy;
  value_case value;
};

trl_case load_trl(const json& c) {
  const json& in = c.at("inputs");
  const auto logp = to_array(in.at("logprobs"));
  const auto mask = to_array(in.at("mask")).as_mask();
  const auto rows = logp.rows(), cols = logp.cols();
  return {{logp.values, to_array(in.at("old_logprobs")).values, to_array(in.at("advantages")).values, mask,
           rows, cols},
          {to_array(in.at("vpreds")).values, to_array(in.at("values")).values, to_array(in.at("returns")).values,
           mask, rows, cols}};
}

/// TRL's PPOConfig fields as our options.
rlhf::ppo_policy_options trl_policy_options(const json& c) {
  const json& p = c.at("params");
  return {.clip_low = p.at("cliprange").get<double>(),
          .clip_high = p.at("cliprange").get<double>(),
          .ratio_threshold = p.at("ratio_threshold").get<double>()};
}
rlhf::ppo_value_options trl_value_options(const json& c) {
  return {.clip = c.at("params").at("cliprange_value").get<double>()};
}

// --- inputs away from the kinks, for finite differences ----------------------------------------

/// Log ratios whose ratio keeps ≥ 1e-3 away from every kink of `o` (clip bounds, dual clip,
/// log-ratio clamp), so that central differences with eps = 1e-6 never straddle one.
std::vector<double> log_ratios_away_from_kinks(std::size_t n, std::uint64_t seed, const rlhf::ppo_policy_options& o,
                                               double scale) {
  auto z = rlhf::test::normal_vector<double>(n, seed, scale);
  for (auto& x : z) {
    for (int tries = 0; tries < 100; ++tries) {
      const double r = std::exp(o.log_ratio_clamp ? std::clamp(x, -*o.log_ratio_clamp, *o.log_ratio_clamp) : x);
      bool near = std::fabs(r - (1 - o.clip_low)) < 1e-3 || std::fabs(r - (1 + o.clip_high)) < 1e-3;
      if (o.dual_clip) near = near || std::fabs(r - *o.dual_clip) < 1e-3;
      if (o.log_ratio_clamp) near = near || std::fabs(std::fabs(x) - *o.log_ratio_clamp) < 1e-3;
      if (!near) break;
      x += 0.0137;
    }
  }
  return z;
}

}  // namespace

// ============================================================================================
// Known answers

TEST_CASE_TEMPLATE("ppo_policy_loss: at ratio 1 the loss is -mean(A) and the gradient -A/N", T, float, double) {
  std::vector<T> logp{-1, -2, -0.5, -3, -1.5, -0.25}, adv{1, -2, 0.5, 3, -1, 0};
  std::vector<T> grad(6);
  const auto s = rlhf::ppo_policy_loss(rlhf::cpu, {.logp = view(logp, 2, 3), .old_logp = view(logp, 2, 3),
                                                   .advantages = view(adv, 2, 3), .mask = {}},
                                       view(grad, 2, 3));
  const auto tol = rlhf::test::golden_tolerance<T>();
  RLHF_CHECK_SCALAR(s.loss, -1.5 / 6, tol);
  const std::vector<double> expected{-1 / 6.0, 2 / 6.0, -0.5 / 6.0, -3 / 6.0, 1 / 6.0, 0.0};
  RLHF_CHECK_CLOSE(grad, expected, tol);
  CHECK(s.clipfrac == T(0));
  CHECK(s.approx_kl == T(0));
  CHECK(s.policy_kl == T(0));
  CHECK(s.ratio_mean == T(1));
  CHECK(s.ratio_var == T(0));
  CHECK(s.ratio_max == T(1));
  CHECK(s.tokens == 6);
  CHECK(s.sequences == 2);
  CHECK_FALSE(s.skipped);
}

TEST_CASE_TEMPLATE("ppo_policy_loss: clipping by hand, both signs of the advantage", T, float, double) {
  // Token 0: r = 1.5, A = +1 -> clipped at 1.2: L = -1.2, no gradient.
  // Token 1: r = 1.5, A = -1 -> unclipped (pessimistic): L = 1.5, dL/dlogp = 1.5.
  // Token 2: r = 0.5, A = -1 -> clipped at 0.8: L = 0.8, no gradient.
  // Token 3: r = 0.5, A = +1 -> unclipped: L = -0.5, dL/dlogp = -0.5.
  const T l15 = static_cast<T>(std::log(1.5)), l05 = static_cast<T>(std::log(0.5));
  std::vector<T> logp{l15, l15, l05, l05}, old(4, T(0)), adv{1, -1, -1, 1}, grad(4);
  const auto s = rlhf::ppo_policy_loss(rlhf::cpu, {.logp = view(logp, 1, 4), .old_logp = view(old, 1, 4),
                                                   .advantages = view(adv, 1, 4), .mask = {}},
                                       view(grad, 1, 4));
  const rlhf::test::tolerance tol{.rtol = sizeof(T) == 4 ? 1e-6 : 1e-14, .atol = 0};
  RLHF_CHECK_SCALAR(s.loss, (-1.2 + 1.5 + 0.8 - 0.5) / 4, tol);
  RLHF_CHECK_CLOSE(grad, (std::vector<double>{0, 1.5 / 4, 0, -0.5 / 4}), tol);
  CHECK(s.clipfrac == T(0.5));
  RLHF_CHECK_SCALAR(s.ratio_mean, 1.0, tol);
  RLHF_CHECK_SCALAR(s.ratio_var, 0.25, tol);
  RLHF_CHECK_SCALAR(s.ratio_max, 1.5, tol);
  RLHF_CHECK_SCALAR(s.approx_kl, 0.25 * (std::log(1.5) * std::log(1.5) + std::log(0.5) * std::log(0.5)), tol);

  // Asymmetric clip (clip_high 0.6): token 0 is no longer clipped.
  const auto s2 = rlhf::ppo_policy_loss(rlhf::cpu, {.logp = view(logp, 1, 4), .old_logp = view(old, 1, 4),
                                                    .advantages = view(adv, 1, 4), .mask = {}},
                                        view(grad, 1, 4), {.clip_low = 0.2, .clip_high = 0.6});
  RLHF_CHECK_SCALAR(s2.loss, (-1.5 + 1.5 + 0.8 - 0.5) / 4, tol);
  CHECK(s2.clipfrac == T(0.25));

  // Dual clip c = 1.4: token 1 (A < 0, r = 1.5 > c) is bounded by -c·A = 1.4, no gradient.
  const auto s3 = rlhf::ppo_policy_loss(rlhf::cpu, {.logp = view(logp, 1, 4), .old_logp = view(old, 1, 4),
                                                    .advantages = view(adv, 1, 4), .mask = {}},
                                        view(grad, 1, 4), {.dual_clip = 1.4});
  RLHF_CHECK_SCALAR(s3.loss, (-1.2 + 1.4 + 0.8 - 0.5) / 4, tol);
  RLHF_CHECK_CLOSE(grad, (std::vector<double>{0, 0, 0, -0.5 / 4}), tol);
  CHECK(s3.dual_clipfrac == T(0.25));
}

TEST_CASE("ppo_policy_loss: at an exact clip bound the gradient is the unclipped one (torch.clamp passes it)") {
  // r exactly 1.25 = 1 + clip_high (representable): torch's min(surr1, surr2) ties and clamp
  // passes the gradient at its bound, so dL/dlogp = -A·r.
  std::vector<double> logp{std::log(1.25)}, old{0.0}, adv{2.0}, grad(1);
  const double r = std::exp(logp[0]);
  const auto s = rlhf::ppo_policy_loss(rlhf::cpu, {.logp = view(logp, 1, 1), .old_logp = view(old, 1, 1),
                                                   .advantages = view(adv, 1, 1), .mask = {}},
                                       view(grad, 1, 1), {.clip_low = 0.25, .clip_high = r - 1.0});
  CHECK(grad[0] == -2.0 * r);
  CHECK(s.clipfrac == 0.0);
}

TEST_CASE_TEMPLATE("ppo_value_loss: clipped and unclipped by hand", T, float, double) {
  // Token 0: V = 1, V_old = 0, R = 2, c = 0.5: V_clip = 0.5, (V_clip - R)^2 = 2.25 > 1 -> 1.125, grad 0.
  // Token 1: V = 1, V_old = 0, R = -1: V_clip = 0.5, 2.25 < 4 -> 2, grad V - R = 2.
  // Token 2: V = 0.25, V_old = 0, R = 1: inside the clip -> 0.28125, grad -0.75.
  std::vector<T> v{1, 1, 0.25}, old{0, 0, 0}, ret{2, -1, 1}, grad(3);
  const auto s = rlhf::ppo_value_loss(rlhf::cpu, {.values = view(v, 1, 3), .old_values = view(old, 1, 3),
                                                  .returns = view(ret, 1, 3), .mask = {}},
                                      view(grad, 1, 3), {.clip = 0.5});
  const auto tol = rlhf::test::golden_tolerance<T>();
  RLHF_CHECK_SCALAR(s.loss, (1.125 + 2 + 0.28125) / 3, tol);
  RLHF_CHECK_CLOSE(grad, (std::vector<double>{0, 2 / 3.0, -0.75 / 3}), tol);
  RLHF_CHECK_SCALAR(s.clipfrac, 1 / 3.0, tol);
  // No clip: ½ mean (V - R)^2.
  const auto u = rlhf::ppo_value_loss(rlhf::cpu, {.values = view(v, 1, 3), .old_values = view(old, 1, 3),
                                                  .returns = view(ret, 1, 3), .mask = {}},
                                      view(grad, 1, 3), {.clip = std::nullopt});
  RLHF_CHECK_SCALAR(u.loss, (0.5 + 2 + 0.28125) / 3, tol);
  RLHF_CHECK_CLOSE(grad, (std::vector<double>{-1 / 3.0, 2 / 3.0, -0.75 / 3}), tol);
  CHECK(u.clipfrac == T(0));
}

// ============================================================================================
// Golden: OpenRLHF

TEST_CASE("ppo_policy_loss: reproduces OpenRLHF PolicyLoss, HEAD and v0.5.9 (golden)") {
  for (const auto& name : openrlhf_policy_cases) {
    CAPTURE(name);
    const auto& c = golden_case(openrlhf_file, name);
    const auto pc = load_openrlhf_policy(c);
    const auto options = openrlhf_policy_options(c);
    std::vector<double> grad;
    const auto s = run_policy<double>(pc, grad, options);
    const auto& out = c.at("outputs");
    const auto tol = rlhf::test::golden_tolerance<double>();
    RLHF_CHECK_SCALAR(s.loss, rlhf::test::number(out.at("loss")), tol);
    RLHF_CHECK_CLOSE(grad, to_array(out.at("grad_log_probs")).values, tol);
    if (out.contains("ppo_kl")) RLHF_CHECK_SCALAR(s.policy_kl, rlhf::test::number(out.at("ppo_kl")), tol);
    if (out.contains("clip_ratio")) {
      // OpenRLHF computes clip_ratio on `.float()` indicators, so it is a float32 number even for
      // float64 inputs: our float overload (same count, rounded to float) reproduces it exactly.
      std::vector<float> grad32;
      const auto s32 = run_policy<float>(pc, grad32, options);
      RLHF_CHECK_SCALAR(s32.clipfrac, rlhf::test::number(out.at("clip_ratio")), tol);
      // The double overload gives the same count unrounded.
      CHECK(static_cast<float>(s.clipfrac) == s32.clipfrac);
    }
  }
}

TEST_CASE("ppo_policy_loss: an all-masked row in the sequence mean is excluded, where OpenRLHF 0.5.9 gives NaN (golden)") {
  const auto& c = golden_case(openrlhf_file, openrlhf_nan_case);
  // The reference: masked_mean(loss, mask, dim=-1) divides 0 by 0 for the empty row, and the
  // batch mean is NaN (no gradient was recorded).
  CHECK(std::isnan(rlhf::test::number(c.at("outputs").at("loss"))));
  CHECK(c.at("outputs").at("grad_log_probs").is_null());
  // Ours: the empty row is left out of the mean, which is what OpenRLHF HEAD computes on the
  // same inputs (its case policy_sequence_level_all_masked_row_excluded; same inputs except the
  // 20-clamp, which does not bind here).
  const auto pc = load_openrlhf_policy(c);
  std::vector<double> grad;
  const auto s = run_policy<double>(pc, grad, openrlhf_policy_options(c));
  const auto& head = golden_case(openrlhf_file, "policy_sequence_level_all_masked_row_excluded");
  CHECK(std::isfinite(s.loss));
  RLHF_CHECK_SCALAR(s.loss, rlhf::test::number(head.at("outputs").at("loss")), rlhf::test::golden_tolerance<double>());
  RLHF_CHECK_CLOSE(grad, to_array(head.at("outputs").at("grad_log_probs")).values,
                   rlhf::test::golden_tolerance<double>());
  CHECK(s.sequences == 2);
}

TEST_CASE("ppo_value_loss: reproduces OpenRLHF ValueLoss, HEAD and v0.5.9 (golden)") {
  for (const auto& name : openrlhf_value_cases) {
    CAPTURE(name);
    const auto& c = golden_case(openrlhf_file, name);
    const json& in = c.at("inputs");
    const auto values = to_array(in.at("values"));
    const value_case vc{values.values, to_array(in.at("old_values")).values, to_array(in.at("returns")).values,
                        to_array(in.at("action_mask")).as_mask(), values.rows(), values.cols()};
    std::vector<double> grad;
    const auto s = run_value<double>(vc, grad, openrlhf_value_options(c));
    const auto tol = rlhf::test::golden_tolerance<double>();
    RLHF_CHECK_SCALAR(s.loss, rlhf::test::number(c.at("outputs").at("loss")), tol);
    RLHF_CHECK_CLOSE(grad, to_array(c.at("outputs").at("grad_values")).values, tol);
  }
}

TEST_CASE("ppo: the float overloads agree with the float64 OpenRLHF goldens to float precision") {
  const rlhf::test::tolerance tol{.rtol = 1e-5, .atol = 1e-6};
  for (const auto& name : openrlhf_policy_cases) {
    CAPTURE(name);
    const auto& c = golden_case(openrlhf_file, name);
    std::vector<float> grad;
    const auto s = run_policy<float>(load_openrlhf_policy(c), grad, openrlhf_policy_options(c));
    RLHF_CHECK_SCALAR(s.loss, rlhf::test::number(c.at("outputs").at("loss")), tol);
    RLHF_CHECK_CLOSE(grad, to_array(c.at("outputs").at("grad_log_probs")).values, tol);
  }
}

// ============================================================================================
// Golden: TRL 0.11 PPOTrainer.loss

TEST_CASE("ppo: reproduces TRL 0.11 PPOTrainer.loss losses, gradients and statistics (golden)") {
  for (const auto& name : trl_cases) {
    CAPTURE(name);
    const auto& c = golden_case(trl_file, name);
    const auto tc = load_trl(c);
    const double vf_coef = c.at("params").at("vf_coef").get<double>();
    std::vector<double> dlogp, dvalues;
    const auto p = run_policy<double>(tc.policy, dlogp, trl_policy_options(c));
    auto v = run_value<double>(tc.value, dvalues, trl_value_options(c));
    // TRL multiplies both losses by 0 when the policy batch is skipped (ppo_ptx_loss does that
    // itself; here the two standalone calls are combined by hand).
    const bool skipped = p.skipped;
    CHECK(skipped == (name == "loss_ratio_threshold_skips_batch"));
    const double value_loss = skipped ? 0.0 : v.loss;
    for (auto& g : dvalues) g = skipped ? 0.0 : vf_coef * g;  // TRL's grads are of pg + vf_coef·vf

    const auto& out = c.at("outputs");
    const auto& st = out.at("scalar_stats");
    const auto tol = rlhf::test::golden_tolerance<double>();
    const auto num = [&](const char* key) { return rlhf::test::number(st.at(key)); };
    RLHF_CHECK_SCALAR(p.loss, rlhf::test::number(out.at("pg_loss")), tol);
    RLHF_CHECK_SCALAR(vf_coef * value_loss, rlhf::test::number(out.at("vf_loss_times_vf_coef")), tol);
    RLHF_CHECK_CLOSE(dlogp, to_array(out.at("grad_logprobs")).values, tol);
    RLHF_CHECK_CLOSE(dvalues, to_array(out.at("grad_vpreds")).values, tol);

    RLHF_CHECK_SCALAR(p.loss, num("loss/policy"), tol);
    RLHF_CHECK_SCALAR(value_loss, num("loss/value"), tol);
    RLHF_CHECK_SCALAR(p.loss + vf_coef * value_loss, num("loss/total"), tol);
    RLHF_CHECK_SCALAR(p.approx_kl, num("policy/approxkl"), tol);
    RLHF_CHECK_SCALAR(p.policy_kl, num("policy/policykl"), tol);
    RLHF_CHECK_SCALAR(p.clipfrac, num("policy/clipfrac"), tol);
    // policy/advantages_mean is a cancellation residue (6e-17 from whitened terms of size 1):
    // any summation order gives a different residue, so it is checked at the sum's rounding
    // level (n·eps·max|A|) instead of relatively.
    CHECK(std::fabs(p.advantages_mean - num("policy/advantages_mean")) < 1e-15);
    RLHF_CHECK_SCALAR(v.returns_mean, num("returns/mean"), tol);
    RLHF_CHECK_SCALAR(v.returns_var, num("returns/var"), tol);
    RLHF_CHECK_SCALAR(v.value_mean, num("val/vpred"), tol);
    RLHF_CHECK_SCALAR(v.value_error, num("val/error"), tol);
    RLHF_CHECK_SCALAR(v.clipfrac, num("val/clipfrac"), tol);
    RLHF_CHECK_SCALAR(v.old_value_mean, num("val/mean"), tol);
    RLHF_CHECK_SCALAR(v.old_value_var, num("val/var"), tol);
    // policy/entropy comes from the minibatch logits: it belongs to the log-probs/entropy
    // component, not to these losses, and is not checked here.
  }
}

TEST_CASE("ppo: every golden case of the loss files assigned to this component is covered") {
  std::vector<std::string> covered = openrlhf_policy_cases;
  covered.insert(covered.end(), openrlhf_value_cases.begin(), openrlhf_value_cases.end());
  covered.emplace_back(openrlhf_nan_case);
  for (const auto& name : rlhf::test::golden_case_names(openrlhf_file)) {
    CAPTURE(name);
    CHECK(std::find(covered.begin(), covered.end(), name) != covered.end());
  }
  // trl_ppo_v1.json is shared: compute_rewards / compute_advantages belong to other components;
  // every PPOTrainer.loss case is ours.
  for (const auto& c : rlhf::test::golden_file(trl_file).at("cases")) {
    if (c.at("function") != "PPOTrainer.loss") continue;
    const std::string name = c.at("name");
    CAPTURE(name);
    CHECK(std::find(trl_cases.begin(), trl_cases.end(), name) != trl_cases.end());
  }
}

// ============================================================================================
// Gradients by finite differences

TEST_CASE("ppo_policy_loss: dlogp matches central finite differences for every reduction and clip option") {
  const std::ptrdiff_t rows = 4, cols = 7;
  const std::size_t n = rows * cols;
  const auto mask = rlhf::test::right_padded_mask({7, 4, 0, 1}, static_cast<int>(cols));
  const std::vector<rlhf::ppo_policy_options> all_options{
      {},
      {.clip_low = 0.2, .clip_high = 0.28},
      {.dual_clip = 1.5},
      {.log_ratio_clamp = 1.0},
      {.reduction = rlhf::loss_reduction::sequence_mean},
      {.reduction = rlhf::loss_reduction::global_token_mean, .global_normaliser = 13},
      {.reduction = rlhf::loss_reduction::global_sequence_mean, .global_normaliser = 5},
  };
  std::uint64_t seed = 10;
  for (const auto& o : all_options) {
    CAPTURE(seed);
    auto old = rlhf::test::normal_vector<double>(n, seed++, 1.0);
    auto adv = rlhf::test::normal_vector<double>(n, seed++, 1.0);
    const auto z = log_ratios_away_from_kinks(n, seed++, o, 0.5);
    std::vector<double> logp(n), grad(n);
    for (std::size_t i = 0; i < n; ++i) logp[i] = old[i] + z[i];
    const auto loss = [&] {
      return rlhf::ppo_policy_loss(rlhf::cpu,
                                   {.logp = cview(logp, rows, cols), .old_logp = cview(old, rows, cols),
                                    .advantages = cview(adv, rows, cols), .mask = mview(mask, rows, cols)},
                                   rlhf::matrix_view<double>{}, o)
          .loss;
    };
    const auto s = rlhf::ppo_policy_loss(rlhf::cpu,
                                         {.logp = cview(logp, rows, cols), .old_logp = cview(old, rows, cols),
                                          .advantages = cview(adv, rows, cols), .mask = mview(mask, rows, cols)},
                                         view(grad, rows, cols), o);
    CHECK(s.clipfrac > 0.0);  // the clip is exercised
    RLHF_CHECK_CLOSE(grad, rlhf::test::numeric_gradient(loss, logp), (rlhf::test::tolerance{.rtol = 1e-3, .atol = 1e-5}));
  }
}

TEST_CASE("ppo_value_loss: dvalues matches central finite differences (clip, no clip, reductions)") {
  const std::ptrdiff_t rows = 3, cols = 6;
  const std::size_t n = rows * cols;
  const auto mask = rlhf::test::right_padded_mask({6, 2, 5}, static_cast<int>(cols));
  const std::vector<rlhf::ppo_value_options> all_options{
      {},
      {.clip = std::nullopt},
      {.clip = 0.5, .reduction = rlhf::loss_reduction::sequence_mean},
      {.clip = 0.2, .reduction = rlhf::loss_reduction::global_token_mean, .global_normaliser = 9},
      {.clip = 0.2, .reduction = rlhf::loss_reduction::global_sequence_mean, .global_normaliser = 2},
  };
  std::uint64_t seed = 40;
  for (const auto& o : all_options) {
    CAPTURE(seed);
    auto old = rlhf::test::normal_vector<double>(n, seed++);
    auto ret = rlhf::test::normal_vector<double>(n, seed++);
    auto v = rlhf::test::normal_vector<double>(n, seed++, 0.5);
    for (std::size_t i = 0; i < n; ++i) {
      v[i] += old[i];
      // Keep ≥ 1e-3 away from the clip bounds and from ties of the two squared errors.
      for (int tries = 0; o.clip && tries < 100; ++tries) {
        const double c = *o.clip, lo = old[i] - c, hi = old[i] + c;
        const double vc = std::clamp(v[i], lo, hi);
        const double u = (v[i] - ret[i]) * (v[i] - ret[i]), uc = (vc - ret[i]) * (vc - ret[i]);
        const bool near = std::fabs(v[i] - lo) < 1e-3 || std::fabs(v[i] - hi) < 1e-3 ||
                          (vc != v[i] && std::fabs(u - uc) < 1e-3);
        if (!near) break;
        v[i] += 0.0137;
      }
    }
    std::vector<double> grad(n);
    const rlhf::ppo_value_inputs<double> in{.values = cview(v, rows, cols), .old_values = cview(old, rows, cols),
                                            .returns = cview(ret, rows, cols), .mask = mview(mask, rows, cols)};
    const auto loss = [&] { return rlhf::ppo_value_loss(rlhf::cpu, in, rlhf::matrix_view<double>{}, o).loss; };
    const auto s = rlhf::ppo_value_loss(rlhf::cpu, in, view(grad, rows, cols), o);
    if (o.clip) CHECK(s.clipfrac > 0.0);
    RLHF_CHECK_CLOSE(grad, rlhf::test::numeric_gradient(loss, v), (rlhf::test::tolerance{.rtol = 1e-3, .atol = 1e-5}));
  }
}

// ============================================================================================
// Masking, extremes, edge shapes

TEST_CASE_TEMPLATE("ppo_policy_loss: all-masked rows contribute nothing and never read their inputs", T, float, double) {
  const std::ptrdiff_t cols = 5;
  auto logp = rlhf::test::normal_vector<T>(3 * cols, 1, 0.3);
  auto old = rlhf::test::normal_vector<T>(3 * cols, 2, 0.3);
  auto adv = rlhf::test::normal_vector<T>(3 * cols, 3);
  // Row 1 is all padding and holds NaN / inf everywhere; row 2 has padding at its end.
  for (std::ptrdiff_t t = 0; t < cols; ++t) {
    logp[cols + t] = std::numeric_limits<T>::quiet_NaN();
    old[cols + t] = -std::numeric_limits<T>::infinity();
    adv[cols + t] = std::numeric_limits<T>::quiet_NaN();
  }
  logp[2 * cols + 4] = std::numeric_limits<T>::infinity();
  const auto mask = rlhf::test::right_padded_mask({5, 0, 4}, static_cast<int>(cols));
  // The same batch without the empty row.
  std::vector<T> logp2(logp), old2(old), adv2(adv);
  for (auto* v : {&logp2, &old2, &adv2}) v->erase(v->begin() + cols, v->begin() + 2 * cols);
  const auto mask2 = rlhf::test::right_padded_mask({5, 4}, static_cast<int>(cols));

  for (auto reduction : {rlhf::loss_reduction::token_mean, rlhf::loss_reduction::sequence_mean}) {
    CAPTURE(static_cast<int>(reduction));
    std::vector<T> grad(3 * cols, T(5)), grad2(2 * cols);
    const auto s = rlhf::ppo_policy_loss(rlhf::cpu, {.logp = view(logp, 3, cols), .old_logp = view(old, 3, cols),
                                                     .advantages = view(adv, 3, cols), .mask = mview(mask, 3, cols)},
                                         view(grad, 3, cols), {.reduction = reduction});
    const auto s2 = rlhf::ppo_policy_loss(rlhf::cpu, {.logp = view(logp2, 2, cols), .old_logp = view(old2, 2, cols),
                                                      .advantages = view(adv2, 2, cols), .mask = mview(mask2, 2, cols)},
                                          view(grad2, 2, cols), {.reduction = reduction});
    CHECK(all_finite(grad));
    CHECK(std::isfinite(s.loss));
    CHECK(s.loss == s2.loss);
    CHECK(s.clipfrac == s2.clipfrac);
    CHECK(s.ratio_var == s2.ratio_var);
    CHECK(s.sequences == 2);
    for (std::ptrdiff_t t = 0; t < cols; ++t) {
      CHECK(grad[cols + t] == T(0));
      CHECK(grad[t] == grad2[t]);
      CHECK(grad[2 * cols + t] == grad2[cols + t]);
    }
  }
}

TEST_CASE_TEMPLATE("ppo: a batch with no valid token gives zero loss, zero stats and zero gradients", T, float, double) {
  std::vector<T> x(6, T(0.5)), grad(6, T(3));
  const std::vector<std::uint8_t> none(6, 0);
  for (auto reduction : {rlhf::loss_reduction::token_mean, rlhf::loss_reduction::sequence_mean}) {
    const auto s = rlhf::ppo_policy_loss(rlhf::cpu, {.logp = view(x, 2, 3), .old_logp = view(x, 2, 3),
                                                     .advantages = view(x, 2, 3), .mask = mview(none, 2, 3)},
                                         view(grad, 2, 3), {.reduction = reduction, .ratio_threshold = 0.5});
    CHECK(s.loss == T(0));
    CHECK(s.clipfrac == T(0));
    CHECK(s.ratio_mean == T(0));
    CHECK(s.tokens == 0);
    CHECK_FALSE(s.skipped);
    CHECK(std::all_of(grad.begin(), grad.end(), [](T g) { return g == T(0); }));
    std::fill(grad.begin(), grad.end(), T(3));
    const auto v = rlhf::ppo_value_loss(rlhf::cpu, {.values = view(x, 2, 3), .old_values = view(x, 2, 3),
                                                    .returns = view(x, 2, 3), .mask = mview(none, 2, 3)},
                                        view(grad, 2, 3), {.reduction = reduction});
    CHECK(v.loss == T(0));
    CHECK(v.explained_variance == T(0));
    CHECK(std::all_of(grad.begin(), grad.end(), [](T g) { return g == T(0); }));
  }
}

TEST_CASE_TEMPLATE("ppo_policy_loss: log ratios of ±50 and log-probs of ±1e4 stay finite", T, float, double) {
  // ±50: e^50 ≈ 5e21 fits in float; both signs of A, with and without the dual clip.
  std::vector<T> logp{50, -50, 50, -50}, old{0, 0, 0, 0}, adv{1, 1, -1, -1}, grad(4);
  for (const auto& o : {rlhf::ppo_policy_options{}, rlhf::ppo_policy_options{.dual_clip = 3.0}}) {
    const auto s = rlhf::ppo_policy_loss(rlhf::cpu, {.logp = view(logp, 1, 4), .old_logp = view(old, 1, 4),
                                                     .advantages = view(adv, 1, 4), .mask = {}},
                                         view(grad, 1, 4), o);
    CHECK(std::isfinite(s.loss));
    CHECK(std::isfinite(s.approx_kl));
    CHECK(std::isfinite(s.ratio_mean));
    // The ratio variance itself (≈ 6e42) exceeds float's range; in double it is finite.
    if constexpr (sizeof(T) == 8) CHECK(std::isfinite(s.ratio_var));
    CHECK(all_finite(grad));
  }
  // Log-probs of ±1e4 (log ratio 2e4) with OpenRLHF's ±20 clamp: finite, no gradient through the clamp.
  std::vector<T> big{T(1e4), T(-1e4), T(1e4), T(-1e4)}, small{T(-1e4), T(1e4), T(-1e4), T(1e4)};
  const auto s = rlhf::ppo_policy_loss(rlhf::cpu, {.logp = view(big, 1, 4), .old_logp = view(small, 1, 4),
                                                   .advantages = view(adv, 1, 4), .mask = {}},
                                       view(grad, 1, 4), {.log_ratio_clamp = 20.0});
  CHECK(std::isfinite(s.loss));
  CHECK(std::isfinite(s.approx_kl));
  CHECK(std::all_of(grad.begin(), grad.end(), [](T g) { return g == T(0); }));
  // Without a clamp, e^{2e4} overflows. With A > 0 the clipped branch is the minimum: the loss
  // is finite and the gradient 0 (no 0·inf NaN).
  std::vector<T> pos{1, 1, 1, 1};
  const auto p = rlhf::ppo_policy_loss(rlhf::cpu, {.logp = view(big, 1, 4), .old_logp = view(small, 1, 4),
                                                   .advantages = view(pos, 1, 4), .mask = {}},
                                       view(grad, 1, 4));
  CHECK(std::isfinite(p.loss));
  CHECK(all_finite(grad));
  // Documented: with A < 0, no clamp and no dual clip, an overflowing ratio makes the loss +inf —
  // the objective's true value (the pessimistic bound is unbounded); set log_ratio_clamp or dual_clip.
  std::vector<T> neg{-1, -1, -1, -1};
  const auto q = rlhf::ppo_policy_loss(rlhf::cpu, {.logp = view(big, 1, 4), .old_logp = view(small, 1, 4),
                                                   .advantages = view(neg, 1, 4), .mask = {}},
                                       rlhf::matrix_view<T>{});
  CHECK(std::isinf(q.loss));
  CHECK(q.loss > T(0));
  // A = 0 with an infinite ratio is an exact 0 term (torch would give 0·inf = NaN).
  std::vector<T> zero(4, T(0));
  const auto z = rlhf::ppo_policy_loss(rlhf::cpu, {.logp = view(big, 1, 4), .old_logp = view(small, 1, 4),
                                                   .advantages = view(zero, 1, 4), .mask = {}},
                                       view(grad, 1, 4));
  CHECK(z.loss == T(0));
  CHECK(all_finite(grad));
}

TEST_CASE("ppo_policy_loss: an empty mask view means every position is valid (lm-human-preferences' mean)") {
  auto logp = rlhf::test::normal_vector<double>(12, 7, 0.3);
  auto old = rlhf::test::normal_vector<double>(12, 8, 0.3);
  auto adv = rlhf::test::normal_vector<double>(12, 9);
  const std::vector<std::uint8_t> ones(12, 1);
  std::vector<double> g1(12), g2(12);
  const auto a = rlhf::ppo_policy_loss(rlhf::cpu, {.logp = view(logp, 3, 4), .old_logp = view(old, 3, 4),
                                                   .advantages = view(adv, 3, 4), .mask = {}},
                                       view(g1, 3, 4));
  const auto b = rlhf::ppo_policy_loss(rlhf::cpu, {.logp = view(logp, 3, 4), .old_logp = view(old, 3, 4),
                                                   .advantages = view(adv, 3, 4), .mask = mview(ones, 3, 4)},
                                       view(g2, 3, 4));
  CHECK(a.loss == b.loss);
  CHECK(g1 == g2);
}

TEST_CASE_TEMPLATE("ppo_policy_loss: ratio_threshold skips the batch (TRL 0.11)", T, float, double) {
  std::vector<T> logp{0.5, 0.5, 0.5}, old{0, 0, 0}, adv{1, -1, 2}, grad(3);
  const rlhf::ppo_policy_inputs<T> in{.logp = view(logp, 1, 3), .old_logp = view(old, 1, 3),
                                      .advantages = view(adv, 1, 3), .mask = {}};
  const auto kept = rlhf::ppo_policy_loss(rlhf::cpu, in, view(grad, 1, 3), {.ratio_threshold = 2.0});
  CHECK_FALSE(kept.skipped);
  CHECK(kept.loss != T(0));
  const auto s = rlhf::ppo_policy_loss(rlhf::cpu, in, view(grad, 1, 3), {.ratio_threshold = 1.5});
  CHECK(s.skipped);  // e^0.5 ≈ 1.65 > 1.5
  CHECK(s.loss == T(0));
  CHECK(std::all_of(grad.begin(), grad.end(), [](T g) { return g == T(0); }));
  CHECK(s.clipfrac == kept.clipfrac);  // statistics are still reported
}

TEST_CASE_TEMPLATE("ppo: any thread count gives bitwise the same results", T, float, double) {
  const std::ptrdiff_t rows = 67, cols = 29;
  const std::size_t n = rows * cols;
  auto logp = rlhf::test::normal_vector<T>(n, 21, 0.3);
  auto old = rlhf::test::normal_vector<T>(n, 22, 0.3);
  auto adv = rlhf::test::normal_vector<T>(n, 23);
  std::vector<int> lengths;
  for (int b = 0; b < rows; ++b) lengths.push_back(static_cast<int>((b * 7) % (cols + 1)));
  const auto mask = rlhf::test::right_padded_mask(lengths, static_cast<int>(cols));
  for (auto reduction : {rlhf::loss_reduction::token_mean, rlhf::loss_reduction::sequence_mean}) {
    std::vector<T> g1(n), g3(n);
    const rlhf::ppo_policy_inputs<T> in{.logp = view(logp, rows, cols), .old_logp = view(old, rows, cols),
                                        .advantages = view(adv, rows, cols), .mask = mview(mask, rows, cols)};
    const auto a = rlhf::ppo_policy_loss(rlhf::cpu, in, view(g1, rows, cols), {.reduction = reduction});
    const auto b = rlhf::ppo_policy_loss(rlhf::cpu_backend{.threads = 3}, in, view(g3, rows, cols),
                                         {.reduction = reduction});
    CHECK(a.loss == b.loss);
    CHECK(a.ratio_var == b.ratio_var);
    CHECK(a.approx_kl == b.approx_kl);
    CHECK(g1 == g3);
    const rlhf::ppo_value_inputs<T> vin{.values = view(logp, rows, cols), .old_values = view(old, rows, cols),
                                        .returns = view(adv, rows, cols), .mask = mview(mask, rows, cols)};
    const auto va = rlhf::ppo_value_loss(rlhf::cpu, vin, view(g1, rows, cols), {.reduction = reduction});
    const auto vb = rlhf::ppo_value_loss(rlhf::cpu_backend{.threads = 3}, vin, view(g3, rows, cols),
                                         {.reduction = reduction});
    CHECK(va.loss == vb.loss);
    CHECK(va.explained_variance == vb.explained_variance);
    CHECK(va.returns_var == vb.returns_var);
    CHECK(g1 == g3);
    CHECK(rlhf::explained_variance(rlhf::cpu, vin.values, vin.returns, vin.mask) ==
          rlhf::explained_variance(rlhf::cpu_backend{.threads = 4}, vin.values, vin.returns, vin.mask));
  }
}

TEST_CASE_TEMPLATE("ppo: designated initialisers with non-const views pick the right overload", T, float, double) {
  std::vector<T> a{-1, -2}, b{T(-1.1), T(-1.9)}, c{1, -1}, d(2);
  const std::vector<std::uint8_t> m{1, 1};
  const rlhf::matrix_view<T> va(a.data(), 1, 2), vb(b.data(), 1, 2), vc(c.data(), 1, 2), dlogp(d.data(), 1, 2);
  const rlhf::mask_view mask(m.data(), 1, 2);
  const auto s = rlhf::ppo_policy_loss(rlhf::cpu, {.logp = va, .old_logp = vb, .advantages = vc, .mask = mask},
                                       dlogp, {.clip_low = 0.2});
  static_assert(std::is_same_v<decltype(s), const rlhf::ppo_policy_stats<T>>);
  const auto v = rlhf::ppo_value_loss(rlhf::cpu, {.values = va, .old_values = vb, .returns = vc, .mask = mask},
                                      dlogp, {.clip = 0.2});
  static_assert(std::is_same_v<decltype(v), const rlhf::ppo_value_stats<T>>);
  // The mask may be left out (all valid), and so may the options.
  const auto n = rlhf::ppo_policy_loss(rlhf::cpu, {.logp = va, .old_logp = vb, .advantages = vc}, dlogp);
  CHECK(n.loss == s.loss);
  // rlhf::tensor converts too.
  rlhf::tensor<T, 2> ta(1, 2), tg(1, 2);
  const auto t = rlhf::ppo_policy_loss(rlhf::cpu, {.logp = ta, .old_logp = ta, .advantages = ta, .mask = {}}, tg);
  CHECK(t.loss == T(0));
  CHECK(std::isfinite(s.loss));
  CHECK(std::isfinite(v.loss));
}

TEST_CASE("ppo_policy_loss: works on strided views") {
  // Every other column of a 2x8 buffer is a 2x4 view; the gradient goes to a strided view too.
  std::vector<double> buffer(16), grad_buffer(16, 9.0);
  for (std::size_t i = 0; i < 16; ++i) buffer[i] = 0.1 * static_cast<double>(i % 5);
  const std::ptrdiff_t extents[2] = {2, 4}, strides[2] = {8, 2};
  const rlhf::matrix_view<const double> logp(buffer.data(), extents, strides);
  const rlhf::matrix_view<const double> old(buffer.data() + 1, extents, strides);
  const rlhf::matrix_view<double> grad(grad_buffer.data(), extents, strides);
  std::vector<double> dense_logp, dense_old;
  for (int b = 0; b < 2; ++b)
    for (int t = 0; t < 4; ++t) {
      dense_logp.push_back(logp(b, t));
      dense_old.push_back(old(b, t));
    }
  std::vector<double> dense_grad(8);
  const auto s = rlhf::ppo_policy_loss(rlhf::cpu, {.logp = logp, .old_logp = old, .advantages = logp, .mask = {}}, grad);
  const auto d = rlhf::ppo_policy_loss(rlhf::cpu, {.logp = view(dense_logp, 2, 4), .old_logp = view(dense_old, 2, 4),
                                                   .advantages = view(dense_logp, 2, 4), .mask = {}},
                                       view(dense_grad, 2, 4));
  CHECK(s.loss == d.loss);
  for (int b = 0; b < 2; ++b)
    for (int t = 0; t < 4; ++t) CHECK(grad(b, t) == dense_grad[static_cast<std::size_t>(b * 4 + t)]);
  CHECK(grad_buffer[1] == 9.0);  // untouched between the strided elements
}

TEST_CASE_TEMPLATE("explained_variance: known values, mask, and the Var[R] = 0 case", T, float, double) {
  std::vector<T> ret{1, 2, 3, 4}, perfect{1, 2, 3, 4}, shifted{2, 3, 4, 5}, zero(4, T(0)), half{0.5, 1, 1.5, 2};
  const auto tol = rlhf::test::golden_tolerance<T>();
  CHECK(rlhf::explained_variance(rlhf::cpu, view(perfect, 1, 4), view(ret, 1, 4)) == T(1));
  CHECK(rlhf::explained_variance(rlhf::cpu, view(shifted, 1, 4), view(ret, 1, 4)) == T(1));  // a constant offset is explained
  CHECK(rlhf::explained_variance(rlhf::cpu, view(zero, 1, 4), view(ret, 1, 4)) == T(0));
  // R − V = R/2: Var = Var[R]/4 -> 0.75.
  RLHF_CHECK_SCALAR(rlhf::explained_variance(rlhf::cpu, view(half, 1, 4), view(ret, 1, 4)), 0.75, tol);
  // Masked: only the first two tokens count; V = 0 there -> 0.
  const std::vector<std::uint8_t> m{1, 1, 0, 0};
  std::vector<T> v{0, 0, 100, -100};
  CHECK(rlhf::explained_variance(rlhf::cpu, view(v, 1, 4), view(ret, 1, 4), mview(m, 1, 4)) == T(0));
  // Var[R] = 0 (constant returns, or a single valid token): defined as 0, where SB3 and
  // OpenAI baselines return NaN.
  std::vector<T> constant(4, T(2));
  CHECK(rlhf::explained_variance(rlhf::cpu, view(half, 1, 4), view(constant, 1, 4)) == T(0));
  const std::vector<std::uint8_t> single{0, 1, 0, 0};
  CHECK(rlhf::explained_variance(rlhf::cpu, view(half, 1, 4), view(ret, 1, 4), mview(single, 1, 4)) == T(0));
  // The value loss reports the same number.
  std::vector<T> grad(4);
  const auto s = rlhf::ppo_value_loss(rlhf::cpu, {.values = view(half, 1, 4), .old_values = view(half, 1, 4),
                                                  .returns = view(ret, 1, 4), .mask = {}},
                                      view(grad, 1, 4));
  RLHF_CHECK_SCALAR(s.explained_variance, 0.75, tol);
}

TEST_CASE("ppo_value_loss: returns_var and old_value_var are 0 with a single valid token (TRL gives NaN)") {
  // TRL's masked_var(unbiased=True) multiplies by n/(n-1) = 1/0 with one token.
  std::vector<double> v{1, 2}, old{0.5, 0.5}, ret{3, 4}, grad(2);
  const std::vector<std::uint8_t> m{1, 0};
  const auto s = rlhf::ppo_value_loss(rlhf::cpu, {.values = view(v, 1, 2), .old_values = view(old, 1, 2),
                                                  .returns = view(ret, 1, 2), .mask = mview(m, 1, 2)},
                                      view(grad, 1, 2));
  CHECK(s.returns_var == 0.0);
  CHECK(s.old_value_var == 0.0);
  CHECK(s.returns_mean == 3.0);
  CHECK(s.tokens == 1);
}

// ============================================================================================
// Argument errors

TEST_CASE("ppo_policy_loss: bad arguments throw rlhf::invalid_argument naming the function and values") {
  std::vector<double> a(8), b(7), g(8);
  const std::vector<std::uint8_t> m(8, 1);
  const auto call = [&](rlhf::matrix_view<const double> logp, rlhf::matrix_view<const double> old,
                        rlhf::matrix_view<const double> adv, rlhf::mask_view mask, rlhf::matrix_view<double> grad,
                        const rlhf::ppo_policy_options& o = {}) {
    return rlhf::ppo_policy_loss(rlhf::cpu, {.logp = logp, .old_logp = old, .advantages = adv, .mask = mask}, grad, o);
  };
  CHECK_THROWS_WITH_AS(call(view(a, 2, 4), view(b, 1, 7), view(a, 2, 4), mview(m, 2, 4), view(g, 2, 4)),
                       "rlhf::ppo_policy_loss(): logp is 2x4 but old_logp is 1x7", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(call(view(a, 2, 4), view(a, 2, 4), view(a, 4, 2), mview(m, 2, 4), view(g, 2, 4)),
                       "rlhf::ppo_policy_loss(): logp is 2x4 but advantages is 4x2", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(call(view(a, 2, 4), view(a, 2, 4), view(a, 2, 4), mview(m, 1, 8), view(g, 2, 4)),
                       "rlhf::ppo_policy_loss(): logp is 2x4 but mask is 1x8", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(call(view(a, 2, 4), view(a, 2, 4), view(a, 2, 4), mview(m, 2, 4), view(g, 2, 3)),
                       "rlhf::ppo_policy_loss(): logp is 2x4 but dlogp is 2x3", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(call(view(a, 0, 4), view(a, 0, 4), view(a, 0, 4), rlhf::mask_view{}, view(g, 0, 4)),
                       "rlhf::ppo_policy_loss(): logp is empty (0x4)", rlhf::invalid_argument);
  const auto ok = [&](const rlhf::ppo_policy_options& o) {
    return call(view(a, 2, 4), view(a, 2, 4), view(a, 2, 4), mview(m, 2, 4), view(g, 2, 4), o);
  };
  CHECK_THROWS_WITH_AS(ok({.clip_low = 1.5}), "rlhf::ppo_policy_loss(): clip_low must be in [0, 1), got 1.5",
                       rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(ok({.clip_high = -0.1}),
                       "rlhf::ppo_policy_loss(): clip_high must be finite and >= 0, got -0.1", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(ok({.dual_clip = 0.5}), "rlhf::ppo_policy_loss(): dual_clip must be finite and > 1, got 0.5",
                       rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(ok({.log_ratio_clamp = 0.0}), "rlhf::ppo_policy_loss(): log_ratio_clamp must be > 0, got 0",
                       rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(ok({.reduction = rlhf::loss_reduction::global_token_mean}),
                       "rlhf::ppo_policy_loss(): global_normaliser must be finite and > 0 with reduction "
                       "global_token_mean, got 0",
                       rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(ok({.ratio_threshold = std::nan("")}),
                       "rlhf::ppo_policy_loss(): ratio_threshold must be > 0, got nan", rlhf::invalid_argument);
  CHECK(g == std::vector<double>(8, 0.0));  // nothing was written by the failing calls
}

TEST_CASE("ppo_value_loss / explained_variance: bad arguments throw rlhf::invalid_argument") {
  std::vector<double> a(8), g(8);
  const auto call = [&](rlhf::matrix_view<const double> v, rlhf::matrix_view<const double> ret,
                        rlhf::matrix_view<double> grad, const rlhf::ppo_value_options& o = {}) {
    return rlhf::ppo_value_loss(rlhf::cpu, {.values = v, .old_values = v, .returns = ret, .mask = {}}, grad, o);
  };
  CHECK_THROWS_WITH_AS(call(view(a, 2, 4), view(a, 2, 3), view(g, 2, 4)),
                       "rlhf::ppo_value_loss(): values is 2x4 but returns is 2x3", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(call(view(a, 2, 4), view(a, 2, 4), view(g, 4, 2)),
                       "rlhf::ppo_value_loss(): values is 2x4 but dvalues is 4x2", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(call(view(a, 2, 0), view(a, 2, 0), view(g, 2, 0)),
                       "rlhf::ppo_value_loss(): values is empty (2x0)", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(call(view(a, 2, 4), view(a, 2, 4), view(g, 2, 4), {.clip = -1.0}),
                       "rlhf::ppo_value_loss(): clip must be finite and >= 0, got -1", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(call(view(a, 2, 4), view(a, 2, 4), view(g, 2, 4),
                            {.reduction = rlhf::loss_reduction::global_sequence_mean, .global_normaliser = -2}),
                       "rlhf::ppo_value_loss(): global_normaliser must be finite and > 0 with reduction "
                       "global_sequence_mean, got -2",
                       rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::explained_variance(rlhf::cpu, view(a, 2, 4), view(a, 1, 8)),
                       "rlhf::explained_variance(): values is 2x4 but returns is 1x8", rlhf::invalid_argument);
}
