// Tests for <rlhf/ppo_ptx.hpp>: the total equals the sum of its parts (values and gradients),
// finite differences of the one total, the TRL 0.11 loss golden cases through the combined
// entry point, the KL-in-loss term, the separate-step mode, batch skipping, argument errors.
#include <rlhf/ppo_ptx.hpp>
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
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace {

using rlhf::test::golden_case;
using rlhf::test::to_array;

using rlhf::test::cview;
using rlhf::test::mview;
using rlhf::test::view;

/// A rollout (B, T) and a pretraining batch (B', T') of seeded random data.
template <class T>
struct batch {
  std::ptrdiff_t rows = 5, cols = 7, ptx_rows = 3, ptx_cols = 9;
  std::vector<T> logp, old_logp, advantages, ref_logp, values, old_values, returns, ptx_logp;
  std::vector<std::uint8_t> mask, ptx_mask;

  explicit batch(std::uint64_t seed) {
    const auto n = static_cast<std::size_t>(rows * cols);
    old_logp = rlhf::test::normal_vector<T>(n, seed, 1.0);
    const auto z = rlhf::test::normal_vector<T>(n, seed + 1, 0.4);
    logp.resize(n);
    for (std::size_t i = 0; i < n; ++i) logp[i] = old_logp[i] + z[i];
    const auto dz = rlhf::test::normal_vector<T>(n, seed + 7, 0.5);
    ref_logp.resize(n);
    for (std::size_t i = 0; i < n; ++i) ref_logp[i] = logp[i] - dz[i];
    advantages = rlhf::test::normal_vector<T>(n, seed + 2);
    old_values = rlhf::test::normal_vector<T>(n, seed + 3);
    returns = rlhf::test::normal_vector<T>(n, seed + 4);
    const auto dv = rlhf::test::normal_vector<T>(n, seed + 5, 0.4);
    values.resize(n);
    for (std::size_t i = 0; i < n; ++i) values[i] = old_values[i] + dv[i];
    ptx_logp = rlhf::test::normal_vector<T>(static_cast<std::size_t>(ptx_rows * ptx_cols), seed + 6, 2.0);
    mask = rlhf::test::right_padded_mask({7, 3, 0, 5, 1}, static_cast<int>(cols));
    ptx_mask = rlhf::test::right_padded_mask({9, 4, 6}, static_cast<int>(ptx_cols));
  }

  rlhf::ppo_policy_inputs<T> policy() const {
    return {.logp = cview(logp, rows, cols), .old_logp = cview(old_logp, rows, cols),
            .advantages = cview(advantages, rows, cols), .mask = mview(mask, rows, cols)};
  }
  rlhf::ppo_value_inputs<T> value() const {
    return {.values = cview(values, rows, cols), .old_values = cview(old_values, rows, cols),
            .returns = cview(returns, rows, cols), .mask = mview(mask, rows, cols)};
  }
  rlhf::ppo_ptx_inputs<T> inputs(bool with_ref = false) const {
    return {.policy = policy(),
            .value = value(),
            .ptx_logp = cview(ptx_logp, ptx_rows, ptx_cols),
            .ptx_mask = mview(ptx_mask, ptx_rows, ptx_cols),
            .ref_logp = with_ref ? cview(ref_logp, rows, cols) : rlhf::matrix_view<const T>{}};
  }
};

template <class T>
struct gradients {
  std::vector<T> dlogp, dvalues, dptx;
  explicit gradients(const batch<T>& b)
      : dlogp(b.logp.size(), T(-3)), dvalues(b.values.size(), T(-3)), dptx(b.ptx_logp.size(), T(-3)) {}
  rlhf::ppo_ptx_gradients<T> views(const batch<T>& b) {
    return {.dlogp = view(dlogp, b.rows, b.cols), .dvalues = view(dvalues, b.rows, b.cols),
            .dptx_logp = view(dptx, b.ptx_rows, b.ptx_cols)};
  }
};

const rlhf::test::tolerance fd_tolerance{.rtol = 1e-3, .atol = 1e-5};

}  // namespace

TEST_CASE("ppo_ptx_loss: the defaults are the paper's (vf_coef 0.1, γ = 27.8, clip 0.2, no KL-in-loss)") {
  const rlhf::ppo_ptx_options o{};
  CHECK(o.vf_coef == 0.1);
  CHECK(o.ptx_coef == 27.8);
  CHECK(o.kl_loss_coef == 0.0);
  CHECK(o.kl_estimator == rlhf::kl_estimator::k3);
  CHECK(o.policy.clip_low == 0.2);
  CHECK(o.policy.clip_high == 0.2);
  CHECK(o.value.clip == 0.2);
  CHECK(o.policy.reduction == rlhf::loss_reduction::token_mean);
  CHECK(o.ptx_step == rlhf::ptx_step_mode::accumulate);
}

TEST_CASE_TEMPLATE("ppo_ptx_loss: the total and its gradients are the sum of the separately computed parts", T, float,
                   double) {
  const batch<T> b(100);
  gradients<T> g(b);
  const rlhf::ppo_ptx_options options{};  // paper: vf_coef 0.1, ptx_coef 27.8
  const auto s = rlhf::ppo_ptx_loss(rlhf::cpu, b.inputs(), g.views(b), options);

  std::vector<T> dlogp(b.logp.size()), dvalues(b.values.size());
  const auto p = rlhf::ppo_policy_loss(rlhf::cpu, b.policy(), view(dlogp, b.rows, b.cols));
  const auto v = rlhf::ppo_value_loss(rlhf::cpu, b.value(), view(dvalues, b.rows, b.cols));
  // ptx by hand: mean token NLL; d(γ·NLL)/dlogp = −γ·mask/Σmask.
  double nll = 0, count = 0;
  for (std::size_t i = 0; i < b.ptx_logp.size(); ++i)
    if (b.ptx_mask[i]) {
      nll -= static_cast<double>(b.ptx_logp[i]);
      ++count;
    }
  nll /= count;
  std::vector<double> dptx(b.ptx_logp.size()), scaled_dvalues(dvalues.size());
  for (std::size_t i = 0; i < dptx.size(); ++i) dptx[i] = b.ptx_mask[i] ? -27.8 / count : 0.0;
  for (std::size_t i = 0; i < dvalues.size(); ++i) scaled_dvalues[i] = 0.1 * static_cast<double>(dvalues[i]);

  const auto tol = rlhf::test::golden_tolerance<T>();
  RLHF_CHECK_SCALAR(s.ptx_loss, nll, tol);
  RLHF_CHECK_SCALAR(s.loss, static_cast<double>(p.loss) + 0.1 * static_cast<double>(v.loss) + 27.8 * nll, tol);
  CHECK(s.policy.loss == p.loss);
  CHECK(s.value.loss == v.loss);
  CHECK(s.policy.clipfrac == p.clipfrac);
  CHECK(s.value.explained_variance == v.explained_variance);
  CHECK(s.ptx_tokens == 19);
  CHECK(g.dlogp == dlogp);  // same computation, bitwise
  RLHF_CHECK_CLOSE(g.dvalues, scaled_dvalues, tol);
  RLHF_CHECK_CLOSE(g.dptx, dptx, tol);
  CHECK(s.kl_loss == T(0));
}

TEST_CASE("ppo_ptx_loss: every gradient of the one total matches central finite differences") {
  batch<double> b(200);
  // Keep the policy ratios and the value clip away from their kinks (≥ 1e-3).
  for (std::size_t i = 0; i < b.logp.size(); ++i) {
    for (int tries = 0; tries < 100; ++tries) {
      const double r = std::exp(b.logp[i] - b.old_logp[i]);
      if (std::fabs(r - 0.8) > 1e-3 && std::fabs(r - 1.2) > 1e-3 && std::fabs(r - 2.0) > 1e-3 &&
          std::fabs(b.logp[i] - b.ref_logp[i]) > 1e-3)
        break;
      b.logp[i] += 0.0137;
    }
    for (int tries = 0; tries < 100; ++tries) {
      const double v = b.values[i], lo = b.old_values[i] - 0.2, hi = b.old_values[i] + 0.2, ret = b.returns[i];
      const double vc = std::clamp(v, lo, hi);
      const double u = (v - ret) * (v - ret), uc = (vc - ret) * (vc - ret);
      if (std::fabs(v - lo) > 1e-3 && std::fabs(v - hi) > 1e-3 && (vc == v || std::fabs(u - uc) > 1e-3)) break;
      b.values[i] += 0.0137;
    }
  }
  const std::vector<rlhf::ppo_ptx_options> all_options{
      {},
      {.policy = {.reduction = rlhf::loss_reduction::sequence_mean},
       .value = {.clip = 0.2, .reduction = rlhf::loss_reduction::sequence_mean},
       .kl_loss_coef = 0.05},
      {.kl_loss_coef = 0.3, .kl_estimator = rlhf::kl_estimator::k1},
      {.kl_loss_coef = 0.3, .kl_estimator = rlhf::kl_estimator::k2, .ptx_reduction = rlhf::loss_reduction::sequence_mean},
      {.vf_coef = 0.5, .ptx_coef = 0.05, .kl_loss_coef = 0.3, .kl_estimator = rlhf::kl_estimator::abs,
       .ptx_reduction = rlhf::loss_reduction::global_token_mean, .ptx_global_normaliser = 40},
      {.policy = {.dual_clip = 2.0, .log_ratio_clamp = 5.0}, .ptx_step = rlhf::ptx_step_mode::separate},
  };
  int index = 0;
  for (const auto& o : all_options) {
    CAPTURE(index++);
    const bool with_ref = o.kl_loss_coef != 0;
    gradients<double> g(b);
    const auto s = rlhf::ppo_ptx_loss(rlhf::cpu, b.inputs(with_ref), g.views(b), o);
    auto no_grads = rlhf::ppo_ptx_gradients<double>{};
    // In separate mode `loss` leaves the ptx term out; its gradient is still returned, so the
    // finite difference is of the full sum.
    const double ptx_extra = o.ptx_step == rlhf::ptx_step_mode::separate ? o.ptx_coef : 0.0;
    const auto total = [&] {
      const auto r = rlhf::ppo_ptx_loss(rlhf::cpu, b.inputs(with_ref), no_grads, o);
      return r.loss + ptx_extra * r.ptx_loss;
    };
    CHECK(s.policy.clipfrac > 0.0);
    if (with_ref) CHECK(s.kl_loss != 0.0);
    RLHF_CHECK_CLOSE(g.dlogp, rlhf::test::numeric_gradient(total, b.logp), fd_tolerance);
    RLHF_CHECK_CLOSE(g.dvalues, rlhf::test::numeric_gradient(total, b.values), fd_tolerance);
    RLHF_CHECK_CLOSE(g.dptx, rlhf::test::numeric_gradient(total, b.ptx_logp), fd_tolerance);
  }
}

TEST_CASE_TEMPLATE("ppo_ptx_loss: the KL-in-loss term by hand (k3, a token mean whatever the policy reduction)", T,
                   float, double) {
  // Advantages 0 and logp = old_logp: the policy term is 0, so the total is kl_loss_coef·mean k3.
  std::vector<T> logp{-1, -2, -0.5, -3}, ref{-1.5, -1, -0.5, -2}, zero(4, T(0)), grad(4);
  const std::vector<std::uint8_t> mask{1, 1, 1, 0};
  const rlhf::ppo_ptx_inputs<T> in{
      .policy = {.logp = view(logp, 2, 2), .old_logp = view(logp, 2, 2), .advantages = view(zero, 2, 2),
                 .mask = mview(mask, 2, 2)},
      .value = {},
      .ptx_logp = {},
      .ptx_mask = {},
      .ref_logp = view(ref, 2, 2)};
  const auto s = rlhf::ppo_ptx_loss(rlhf::cpu, in, {.dlogp = view(grad, 2, 2), .dvalues = {}, .dptx_logp = {}},
                                    {.policy = {.reduction = rlhf::loss_reduction::sequence_mean},
                                     .vf_coef = 0, .ptx_coef = 0, .kl_loss_coef = 0.5});
  double mean_k3 = 0;
  std::vector<double> expected(4, 0.0);
  for (int i = 0; i < 3; ++i) {
    const double l = static_cast<double>(logp[i]) - static_cast<double>(ref[i]);
    mean_k3 += (std::exp(-l) - 1 + l) / 3;
    expected[static_cast<std::size_t>(i)] = 0.5 * (1 - std::exp(-l)) / 3;
  }
  const auto tol = rlhf::test::golden_tolerance<T>();
  RLHF_CHECK_SCALAR(s.kl_loss, mean_k3, tol);
  RLHF_CHECK_SCALAR(s.loss, 0.5 * mean_k3, tol);
  RLHF_CHECK_CLOSE(grad, expected, tol);
  // kl_clamp 0.1 caps the first token's k3 (e^{0.5} − 1.5 ≈ 0.149) and removes its gradient.
  const auto c = rlhf::ppo_ptx_loss(rlhf::cpu, in, {.dlogp = view(grad, 2, 2), .dvalues = {}, .dptx_logp = {}},
                                    {.vf_coef = 0, .ptx_coef = 0, .kl_loss_coef = 0.5, .kl_clamp = 0.1});
  CHECK(grad[0] == T(0));
  CHECK(c.kl_loss < s.kl_loss);
  // Without a coefficient the term is reported but not added.
  const auto r = rlhf::ppo_ptx_loss(rlhf::cpu, in, {}, {.vf_coef = 0, .ptx_coef = 0});
  RLHF_CHECK_SCALAR(r.kl_loss, mean_k3, tol);
  CHECK(r.loss == T(0));
}

TEST_CASE("ppo_ptx_loss: reproduces TRL 0.11 PPOTrainer.loss through the combined objective (golden)") {
  for (const char* name : {"loss_default", "loss_ratio_threshold_skips_batch"}) {
    CAPTURE(name);
    const auto& c = golden_case("trl_ppo_v1.json", name);
    const auto& in = c.at("inputs");
    const auto& p = c.at("params");
    const auto logp = to_array(in.at("logprobs"));
    const auto rows = logp.rows(), cols = logp.cols();
    const auto old = to_array(in.at("old_logprobs")), adv = to_array(in.at("advantages"));
    const auto vpreds = to_array(in.at("vpreds")), values = to_array(in.at("values")), ret = to_array(in.at("returns"));
    const auto mask = to_array(in.at("mask")).as_mask();
    std::vector<double> dlogp(logp.values.size()), dvalues(logp.values.size());
    // TRL has no pretraining term: ptx_coef = 0 with no ptx batch.
    const auto s = rlhf::ppo_ptx_loss(
        rlhf::cpu,
        {.policy = {.logp = cview(logp.values, rows, cols), .old_logp = cview(old.values, rows, cols),
                    .advantages = cview(adv.values, rows, cols), .mask = mview(mask, rows, cols)},
         .value = {.values = cview(vpreds.values, rows, cols), .old_values = cview(values.values, rows, cols),
                   .returns = cview(ret.values, rows, cols), .mask = mview(mask, rows, cols)},
         .ptx_logp = {}, .ptx_mask = {}, .ref_logp = {}},
        {.dlogp = view(dlogp, rows, cols), .dvalues = view(dvalues, rows, cols), .dptx_logp = {}},
        {.policy = {.clip_low = p.at("cliprange").get<double>(), .clip_high = p.at("cliprange").get<double>(),
                    .ratio_threshold = p.at("ratio_threshold").get<double>()},
         .value = {.clip = p.at("cliprange_value").get<double>()},
         .vf_coef = p.at("vf_coef").get<double>(),
         .ptx_coef = 0});
    const auto& out = c.at("outputs");
    const auto& st = out.at("scalar_stats");
    const auto tol = rlhf::test::golden_tolerance<double>();
    RLHF_CHECK_SCALAR(s.loss, rlhf::test::number(st.at("loss/total")), tol);
    RLHF_CHECK_SCALAR(s.policy.loss, rlhf::test::number(out.at("pg_loss")), tol);
    RLHF_CHECK_SCALAR(s.value.loss, rlhf::test::number(st.at("loss/value")), tol);
    RLHF_CHECK_SCALAR(0.1 * s.value.loss, rlhf::test::number(out.at("vf_loss_times_vf_coef")), tol);
    RLHF_CHECK_CLOSE(dlogp, to_array(out.at("grad_logprobs")).values, tol);
    RLHF_CHECK_CLOSE(dvalues, to_array(out.at("grad_vpreds")).values, tol);
    RLHF_CHECK_SCALAR(s.value.clipfrac, rlhf::test::number(st.at("val/clipfrac")), tol);
    CHECK(s.policy.skipped == (std::string(name) == "loss_ratio_threshold_skips_batch"));
  }
}

TEST_CASE_TEMPLATE("ppo_ptx_loss: separate-step mode (DeepSpeed-Chat) changes the loss, not the gradients", T, float,
                   double) {
  const batch<T> b(300);
  gradients<T> a(b), s(b);
  const auto acc = rlhf::ppo_ptx_loss(rlhf::cpu, b.inputs(), a.views(b));
  const auto sep = rlhf::ppo_ptx_loss(rlhf::cpu, b.inputs(), s.views(b), {.ptx_step = rlhf::ptx_step_mode::separate});
  CHECK(a.dlogp == s.dlogp);
  CHECK(a.dvalues == s.dvalues);
  CHECK(a.dptx == s.dptx);
  CHECK(acc.ptx_loss == sep.ptx_loss);
  RLHF_CHECK_SCALAR(sep.loss, static_cast<double>(acc.loss) - 27.8 * static_cast<double>(acc.ptx_loss),
                    (rlhf::test::tolerance{.rtol = sizeof(T) == 4 ? 1e-5 : 1e-12, .atol = sizeof(T) == 4 ? 1e-5 : 1e-12}));
}

TEST_CASE_TEMPLATE("ppo_ptx_loss: a skipped batch zeroes policy, value and KL terms but keeps the ptx term", T, float,
                   double) {
  const batch<T> b(400);
  gradients<T> g(b);
  const auto s = rlhf::ppo_ptx_loss(rlhf::cpu, b.inputs(true), g.views(b),
                                    {.policy = {.ratio_threshold = 0.5}, .kl_loss_coef = 0.1});
  CHECK(s.policy.skipped);
  CHECK(s.policy.loss == T(0));
  CHECK(s.value.loss == T(0));
  CHECK(s.kl_loss == T(0));
  CHECK(s.value.tokens > 0);  // statistics still reported
  RLHF_CHECK_SCALAR(s.loss, 27.8 * static_cast<double>(s.ptx_loss), rlhf::test::golden_tolerance<T>());
  CHECK(std::all_of(g.dlogp.begin(), g.dlogp.end(), [](T x) { return x == T(0); }));
  CHECK(std::all_of(g.dvalues.begin(), g.dvalues.end(), [](T x) { return x == T(0); }));
  CHECK(std::any_of(g.dptx.begin(), g.dptx.end(), [](T x) { return x != T(0); }));
}

TEST_CASE_TEMPLATE("ppo_ptx_loss: an all-masked pretraining batch contributes 0; batch 1 works", T, float, double) {
  batch<T> b(500);
  std::fill(b.ptx_mask.begin(), b.ptx_mask.end(), std::uint8_t{0});
  gradients<T> g(b);
  const auto s = rlhf::ppo_ptx_loss(rlhf::cpu, b.inputs(), g.views(b));
  CHECK(s.ptx_loss == T(0));
  CHECK(s.ptx_tokens == 0);
  CHECK(std::all_of(g.dptx.begin(), g.dptx.end(), [](T x) { return x == T(0); }));
  CHECK(std::isfinite(s.loss));

  // Batch 1 everywhere.
  std::vector<T> lp{-1, -0.5}, old{T(-1.2), T(-0.4)}, adv{1, -1}, v{T(0.1), T(0.2)}, ptx{-2, -3}, dl(2), dv(2), dp(2);
  const auto one = rlhf::ppo_ptx_loss(
      rlhf::cpu,
      {.policy = {.logp = view(lp, 1, 2), .old_logp = view(old, 1, 2), .advantages = view(adv, 1, 2), .mask = {}},
       .value = {.values = view(v, 1, 2), .old_values = view(v, 1, 2), .returns = view(adv, 1, 2), .mask = {}},
       .ptx_logp = view(ptx, 1, 2), .ptx_mask = {}, .ref_logp = {}},
      {.dlogp = view(dl, 1, 2), .dvalues = view(dv, 1, 2), .dptx_logp = view(dp, 1, 2)});
  RLHF_CHECK_SCALAR(one.ptx_loss, 2.5, rlhf::test::golden_tolerance<T>());
  RLHF_CHECK_CLOSE(dp, (std::vector<double>{-27.8 / 2, -27.8 / 2}), rlhf::test::golden_tolerance<T>());
}

TEST_CASE_TEMPLATE("ppo_ptx_loss: any thread count gives bitwise the same results", T, float, double) {
  batch<T> b(600);
  gradients<T> g1(b), g4(b);
  const auto a = rlhf::ppo_ptx_loss(rlhf::cpu, b.inputs(true), g1.views(b), {.kl_loss_coef = 0.1});
  const auto c = rlhf::ppo_ptx_loss(rlhf::cpu_backend{.threads = 4}, b.inputs(true), g4.views(b), {.kl_loss_coef = 0.1});
  CHECK(a.loss == c.loss);
  CHECK(g1.dlogp == g4.dlogp);
  CHECK(g1.dvalues == g4.dvalues);
  CHECK(g1.dptx == g4.dptx);
}

TEST_CASE_TEMPLATE("ppo_ptx_loss: designated initialisers with non-const views pick the right overload", T, float,
                   double) {
  std::vector<T> a{-1, -2}, b{T(-1.1), T(-1.9)}, c{1, -1}, d1(2), d2(2), d3(2);
  const rlhf::matrix_view<T> va(a.data(), 1, 2), vb(b.data(), 1, 2), vc(c.data(), 1, 2);
  const rlhf::matrix_view<T> g1(d1.data(), 1, 2), g2(d2.data(), 1, 2), g3(d3.data(), 1, 2);
  const auto s = rlhf::ppo_ptx_loss(
      rlhf::cpu,
      {.policy = {.logp = va, .old_logp = vb, .advantages = vc, .mask = {}},
       .value = {.values = va, .old_values = vb, .returns = vc, .mask = {}},
       .ptx_logp = va},
      {.dlogp = g1, .dvalues = g2, .dptx_logp = g3}, {.vf_coef = 0.1, .ptx_coef = 27.8});
  static_assert(std::is_same_v<decltype(s), const rlhf::ppo_ptx_stats<T>>);
  CHECK(std::isfinite(s.loss));
  // rlhf::tensor converts too.
  rlhf::tensor<T, 2> t(1, 2), dt(1, 2);
  const auto u = rlhf::ppo_ptx_loss(rlhf::cpu, {.policy = {.logp = t, .old_logp = t, .advantages = t, .mask = {}}},
                                    {.dlogp = dt}, {.vf_coef = 0, .ptx_coef = 0});
  CHECK(u.loss == T(0));
}

TEST_CASE("ppo_ptx_loss: bad arguments throw rlhf::invalid_argument naming the function and values") {
  batch<double> b(700);
  gradients<double> g(b);
  auto in = b.inputs();
  const auto call = [&](const rlhf::ppo_ptx_inputs<double>& i, const rlhf::ppo_ptx_gradients<double>& gr,
                        const rlhf::ppo_ptx_options& o = {}) { return rlhf::ppo_ptx_loss(rlhf::cpu, i, gr, o); };
  {
    auto bad = in;
    bad.policy.old_logp = cview(b.old_logp, 7, 5);
    CHECK_THROWS_WITH_AS(call(bad, g.views(b)), "rlhf::ppo_ptx_loss(): policy.logp is 5x7 but policy.old_logp is 7x5",
                         rlhf::invalid_argument);
  }
  {
    auto bad = in;
    bad.value.returns = cview(b.returns, 5, 6);
    CHECK_THROWS_WITH_AS(call(bad, g.views(b)), "rlhf::ppo_ptx_loss(): value.values is 5x7 but value.returns is 5x6",
                         rlhf::invalid_argument);
  }
  {
    auto gr = g.views(b);
    gr.dptx_logp = view(g.dptx, 9, 3);
    CHECK_THROWS_WITH_AS(call(in, gr), "rlhf::ppo_ptx_loss(): ptx_logp is 3x9 but dptx_logp is 9x3",
                         rlhf::invalid_argument);
  }
  {
    auto bad = in;
    bad.ref_logp = cview(b.ref_logp, 5, 6);
    CHECK_THROWS_WITH_AS(call(bad, g.views(b)), "rlhf::ppo_ptx_loss(): policy.logp is 5x7 but ref_logp is 5x6",
                         rlhf::invalid_argument);
  }
  {
    auto bad = in;
    bad.ptx_logp = {};
    auto gr = g.views(b);
    gr.dptx_logp = {};
    CHECK_THROWS_WITH_AS(call(bad, gr),
                         "rlhf::ppo_ptx_loss(): ptx_logp is empty but ptx_coef is 27.8 (set ptx_coef = 0 for PPO "
                         "without pretraining data)",
                         rlhf::invalid_argument);
  }
  {
    auto bad = in;
    bad.value = {};
    auto gr = g.views(b);
    gr.dvalues = {};
    CHECK_THROWS_WITH_AS(call(bad, gr),
                         "rlhf::ppo_ptx_loss(): value.values is empty but vf_coef is 0.1 (set vf_coef = 0 when the "
                         "value loss is computed elsewhere)",
                         rlhf::invalid_argument);
  }
  CHECK_THROWS_WITH_AS(call(in, g.views(b), {.kl_loss_coef = 0.05}),
                       "rlhf::ppo_ptx_loss(): ref_logp is empty but kl_loss_coef is 0.05", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(call(in, g.views(b), {.policy = {.clip_low = 1.5}}),
                       "rlhf::ppo_ptx_loss(): policy.clip_low must be in [0, 1), got 1.5", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(call(in, g.views(b), {.value = {.clip = -0.5}}),
                       "rlhf::ppo_ptx_loss(): value.clip must be finite and >= 0, got -0.5", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(call(in, g.views(b), {.vf_coef = -1}),
                       "rlhf::ppo_ptx_loss(): vf_coef must be finite and >= 0, got -1", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(call(in, g.views(b), {.ptx_coef = std::nan("")}),
                       "rlhf::ppo_ptx_loss(): ptx_coef must be finite and >= 0, got nan", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(call(in, g.views(b), {.ptx_reduction = rlhf::loss_reduction::global_token_mean}),
                       "rlhf::ppo_ptx_loss(): ptx_global_normaliser must be finite and > 0 with reduction "
                       "global_token_mean, got 0",
                       rlhf::invalid_argument);
  CHECK(std::all_of(g.dlogp.begin(), g.dlogp.end(), [](double x) { return x == -3.0; }));  // nothing written
  CHECK(std::all_of(g.dptx.begin(), g.dptx.end(), [](double x) { return x == -3.0; }));
}
