// Tests for <rlhf/cpu/ppo.hpp>'s vector kernels: the AVX2 float row kernels of the policy and
// value losses against the scalar reference kernels (the same per-token formulas of
// math/ppo.hpp, sums in double), row by row, for every option variant, row length and mask
// pattern; exact semantics at the edges (A = 0 with an overflowing ratio, NaN and inf at masked
// positions, ties of the value clip, wide exps); strided and dense views and thread counts
// giving the same bits through the public entry points.
//
// The suite's flags do not enable AVX2, so on x86-64 GCC this file turns AVX2 + FMA code
// generation on for itself (as tests/cpu/gae_test.cpp does) and skips on a CPU without them.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__AVX2__)
#pragma GCC target("avx2,fma")
#define __AVX2__ 1
#define __FMA__ 1
#define RLHF_TEST_PPO_PRAGMA_AVX2 1
#endif

#include <rlhf/ppo_ptx.hpp>

#include <doctest/doctest.h>

#include <support/random.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__)

namespace {

namespace ci = rlhf::cpu_impl;

bool cpu_can_run_this_file() {
#if defined(RLHF_TEST_PPO_PRAGMA_AVX2)
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return true;
#endif
}

enum class mask_kind { none, right_padded, holes, empty_row };

std::vector<std::uint8_t> make_mask(std::ptrdiff_t n, mask_kind kind, std::uint64_t seed) {
  std::vector<std::uint8_t> m(static_cast<std::size_t>(n), 1);
  rlhf::rng gen{{.seed = seed}};
  const auto len = static_cast<std::ptrdiff_t>(gen.uniform<double>() * static_cast<double>(n + 1));
  for (std::ptrdiff_t t = 0; t < n; ++t) {
    std::uint8_t v = 1;
    if (kind == mask_kind::right_padded) v = t < len ? 1 : 0;
    if (kind == mask_kind::holes) v = static_cast<std::uint8_t>(gen.uniform<double>() < 0.3 ? 0 : 1 + t % 200);
    if (kind == mask_kind::empty_row) v = 0;
    m[static_cast<std::size_t>(t)] = v;
  }
  return m;
}

/// |a − b| ≤ atol + rtol·|b|, NaN equal to NaN.
bool near(double a, double b, double rtol, double atol) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  if (std::isinf(a) || std::isinf(b)) return a == b;
  return std::fabs(a - b) <= atol + rtol * std::fabs(b);
}

struct policy_row_data {
  std::vector<float> logp, old, adv, ref;
  std::vector<std::uint8_t> mask;
  policy_row_data(std::ptrdiff_t n, mask_kind kind, std::uint64_t seed, double spread) {
    old = rlhf::test::normal_vector<float>(static_cast<std::size_t>(n), seed, 1.0);
    const auto z = rlhf::test::normal_vector<float>(static_cast<std::size_t>(n), seed + 1, spread);
    const auto dz = rlhf::test::normal_vector<float>(static_cast<std::size_t>(n), seed + 2, 0.3);
    adv = rlhf::test::normal_vector<float>(static_cast<std::size_t>(n), seed + 3, 1.0);
    logp.resize(old.size());
    ref.resize(old.size());
    for (std::size_t i = 0; i < old.size(); ++i) {
      logp[i] = old[i] + z[i];
      ref[i] = logp[i] - dz[i];
    }
    mask = make_mask(n, kind, seed + 4);
    // Garbage at masked positions: it must not reach any result.
    for (std::size_t i = 0; i < mask.size(); ++i)
      if (mask[i] == 0) {
        logp[i] = i % 2 ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
        old[i] = -std::numeric_limits<float>::infinity();
        adv[i] = std::numeric_limits<float>::quiet_NaN();
        ref[i] = std::numeric_limits<float>::quiet_NaN();
      }
  }
};

std::int64_t valid_count(const std::vector<std::uint8_t>& m, bool masked) {
  if (!masked) return static_cast<std::int64_t>(m.size());
  return std::count_if(m.begin(), m.end(), [](std::uint8_t x) { return x != 0; });
}

/// One row through the scalar and the vector policy kernels; compares gradients and sums.
/// `sums`: also compare the row sums (not where ratios beyond 1e19 overflow float squares).
void check_policy_row(std::ptrdiff_t n, mask_kind kind, const ci::ppo_policy_config<float>& cfg, bool with_ref,
                      double kl_weight, std::uint64_t seed, double spread = 0.3, bool sums = true) {
  CAPTURE(n);
  CAPTURE(static_cast<int>(kind));
  CAPTURE(seed);
  const policy_row_data d(n, kind, seed, spread);
  const bool masked = kind != mask_kind::none;
  std::vector<float> g_ref(static_cast<std::size_t>(n), -7.0f), g(static_cast<std::size_t>(n), -7.0f);
  const double weight = 1.0 / 37.0;
  ci::ppo_policy_row_io<float> io{d.logp.data(), d.old.data(), d.adv.data(), masked ? d.mask.data() : nullptr,
                                  with_ref ? d.ref.data() : nullptr, g_ref.data(), n, weight, kl_weight};
  ci::ppo_policy_row a{}, b{};
  a.count = b.count = valid_count(d.mask, masked);
  ci::ppo_policy_row_scalar(io, cfg, a);
  io.grad = g.data();
  ci::ppo_policy_row_kernel(io, cfg, b);
  std::size_t bad = 0;
  for (std::size_t i = 0; i < g.size(); ++i) {
    // float products against double ones: a few ulp, plus cancellation in grad·w + kl·w'.
    if (!near(g[i], g_ref[i], 4e-6, 1e-9)) ++bad;
    if (masked && d.mask[i] == 0 && std::bit_cast<std::uint32_t>(g[i]) != 0u) ++bad;  // exactly +0
  }
  CHECK(bad == 0);
  CHECK(b.clipped == a.clipped);
  CHECK(b.dual_clipped == a.dual_clipped);
  CHECK(near(b.ratio_max, a.ratio_max, 1e-6, 0));
  if (!sums) return;
  const double scale = static_cast<double>(std::max<std::int64_t>(1, a.count));
  CHECK(near(b.loss, a.loss, 1e-5, 1e-6 * scale));
  CHECK(near(b.kl, a.kl, 1e-5, 1e-6 * scale));
  CHECK(near(b.neg_log_ratio, a.neg_log_ratio, 1e-5, 1e-6 * scale));
  CHECK(near(b.sq_log_ratio, a.sq_log_ratio, 1e-5, 1e-6 * scale));
  CHECK(near(b.advantage, a.advantage, 1e-5, 1e-6 * scale));
  CHECK(b.ratio.n == a.ratio.n);
  CHECK(near(b.ratio.mean, a.ratio.mean, 1e-6, 1e-7));
  CHECK(near(b.ratio.m2, a.ratio.m2, 1e-5, 1e-6 * scale));
}

}  // namespace

TEST_CASE("cpu ppo: the vector policy kernel matches the scalar kernel (lengths, masks, options)") {
  if (!cpu_can_run_this_file()) return;
  std::vector<ci::ppo_policy_config<float>> configs(6);
  configs[1].use_dual_clip = true;
  configs[1].dual_clip = 1.5f;
  configs[2].use_log_ratio_clamp = true;
  configs[2].log_ratio_clamp = 0.25f;
  configs[3].ratio_low = 0.8f;
  configs[3].ratio_high = 1.28f;
  configs[3].use_kl_clamp = true;
  configs[3].kl_clamp = 0.02f;
  configs[4].kl_kind = rlhf::kl_estimator::k2;
  configs[4].use_dual_clip = true;
  configs[4].dual_clip = 2.0f;
  configs[4].use_log_ratio_clamp = true;
  configs[4].log_ratio_clamp = 0.5f;
  configs[5].kl_kind = rlhf::kl_estimator::abs;
  std::uint64_t seed = 1;
  for (const auto& cfg : configs)
    for (std::ptrdiff_t n : {1, 5, 8, 9, 17, 64, 127, 128, 129, 300, 1024})
      for (mask_kind kind : {mask_kind::none, mask_kind::right_padded, mask_kind::holes, mask_kind::empty_row}) {
        check_policy_row(n, kind, cfg, true, 1e-3, seed++);
        check_policy_row(n, kind, cfg, true, 0.0, seed++);   // KL reported, not in the gradient
        check_policy_row(n, kind, cfg, false, 0.0, seed++);  // no KL term
      }
  ci::ppo_policy_config<float> k1{};
  k1.kl_kind = rlhf::kl_estimator::k1;
  for (std::ptrdiff_t n : {7, 200}) check_policy_row(n, mask_kind::holes, k1, true, 1e-2, seed++);
}

TEST_CASE("cpu ppo: wide exps (|log ratio| > 87, overflow, underflow) take the exact path") {
  if (!cpu_can_run_this_file()) return;
  // Log ratios spread over ±120: many vectors mix narrow and wide lanes; ratios overflow to inf
  // and underflow to 0 and subnormals, the k3 exps likewise.
  for (std::ptrdiff_t n : {16, 130, 1000})
    for (mask_kind kind : {mask_kind::none, mask_kind::holes}) {
      ci::ppo_policy_config<float> cfg{};
      check_policy_row(n, kind, cfg, false, 0.0, 900 + static_cast<std::uint64_t>(n), 60.0, false);
      cfg.use_dual_clip = true;
      cfg.dual_clip = 3.0f;
      check_policy_row(n, kind, cfg, false, 0.0, 950 + static_cast<std::uint64_t>(n), 60.0, false);
      cfg.use_log_ratio_clamp = true;
      cfg.log_ratio_clamp = 20.0f;
      check_policy_row(n, kind, cfg, true, 1e-3, 990 + static_cast<std::uint64_t>(n), 60.0, false);
    }
}

TEST_CASE("cpu ppo: A = 0 gives an exact 0 even where the ratio overflows; NaN ratios propagate") {
  if (!cpu_can_run_this_file()) return;
  const std::ptrdiff_t n = 24;
  std::vector<float> logp(n, 0.0f), old(n, 0.0f), adv(n, 1.0f), g(n, -1.0f);
  for (std::ptrdiff_t t = 0; t < n; ++t) logp[static_cast<std::size_t>(t)] = 0.01f * static_cast<float>(t);
  logp[3] = 1e4f;  // ratio +inf
  adv[3] = 0.0f;
  logp[11] = 100.0f;  // ratio +inf, A > 0: clipped, gradient 0
  ci::ppo_policy_config<float> cfg{};
  ci::ppo_policy_row_io<float> io{logp.data(), old.data(), adv.data(), nullptr, nullptr, g.data(), n, 0.5, 0.0};
  ci::ppo_policy_row row{};
  row.count = n;
  ci::ppo_policy_row_kernel(io, cfg, row);
  CHECK(g[3] == 0.0f);
  CHECK(std::isfinite(row.loss));
  CHECK(std::isinf(row.ratio_max));
  CHECK(g[11] == 0.0f);
  CHECK(std::all_of(g.begin(), g.end(), [](float x) { return std::isfinite(x); }));
  logp[5] = std::numeric_limits<float>::quiet_NaN();  // a valid NaN: NaN statistics, as the scalar loop
  ci::ppo_policy_row nan_row{};
  nan_row.count = n;
  ci::ppo_policy_row_kernel(io, cfg, nan_row);
  CHECK(std::isnan(nan_row.ratio_max));
  CHECK(std::isnan(nan_row.loss));
  CHECK(std::isnan(g[5]));
}

namespace {

void check_value_row(std::ptrdiff_t n, mask_kind kind, const ci::ppo_value_config<float>& cfg, std::uint64_t seed,
                     double offset) {
  CAPTURE(n);
  CAPTURE(static_cast<int>(kind));
  CAPTURE(seed);
  auto old = rlhf::test::normal_vector<float>(static_cast<std::size_t>(n), seed, 1.0);
  auto ret = rlhf::test::normal_vector<float>(static_cast<std::size_t>(n), seed + 1, 1.0);
  const auto dv = rlhf::test::normal_vector<float>(static_cast<std::size_t>(n), seed + 2, 0.4);
  std::vector<float> v(old.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    old[i] += static_cast<float>(offset);
    ret[i] += static_cast<float>(offset);
    v[i] = old[i] + dv[i];
  }
  const auto mask = make_mask(n, kind, seed + 3);
  const bool masked = kind != mask_kind::none;
  for (std::size_t i = 0; i < mask.size(); ++i)
    if (masked && mask[i] == 0) {
      v[i] = std::numeric_limits<float>::quiet_NaN();
      old[i] = std::numeric_limits<float>::infinity();
      ret[i] = -std::numeric_limits<float>::infinity();
    }
  std::vector<float> g_ref(v.size(), -7.0f), g(v.size(), -7.0f);
  ci::ppo_value_row_io<float> io{v.data(), old.data(), ret.data(), masked ? mask.data() : nullptr, g_ref.data(), n,
                                 0.1 / 29.0};
  ci::ppo_value_row a{}, b{};
  a.count = b.count = valid_count(mask, masked);
  ci::ppo_value_row_scalar(io, cfg, a);
  io.grad = g.data();
  ci::ppo_value_row_kernel(io, cfg, b);
  std::size_t bad = 0;
  for (std::size_t i = 0; i < g.size(); ++i) {
    if (!near(g[i], g_ref[i], 2e-7, 1e-12)) ++bad;
    if (masked && mask[i] == 0 && std::bit_cast<std::uint32_t>(g[i]) != 0u) ++bad;
  }
  CHECK(bad == 0);
  CHECK(b.clipped == a.clipped);
  const double scale = static_cast<double>(std::max<std::int64_t>(1, a.count));
  CHECK(near(b.loss, a.loss, 1e-5, 1e-6 * scale));
  CHECK(near(b.value, a.value, 1e-5, 1e-6 * scale * (1 + std::fabs(offset))));
  CHECK(near(b.squared_error, a.squared_error, 1e-5, 1e-6 * scale));
  for (auto [x, y] : {std::pair{b.returns, a.returns}, {b.old_values, a.old_values}, {b.residual, a.residual}}) {
    CHECK(x.n == y.n);
    CHECK(near(x.mean, y.mean, 1e-6, 1e-6));
    CHECK(near(x.m2, y.m2, 1e-5, 1e-6 * scale));
  }
}

}  // namespace

TEST_CASE("cpu ppo: the vector value kernel matches the scalar kernel (lengths, masks, clip, offsets)") {
  if (!cpu_can_run_this_file()) return;
  std::uint64_t seed = 5000;
  for (bool use_clip : {true, false})
    for (std::ptrdiff_t n : {1, 7, 8, 9, 64, 127, 128, 129, 513})
      for (mask_kind kind : {mask_kind::none, mask_kind::right_padded, mask_kind::holes, mask_kind::empty_row})
        for (double offset : {0.0, 50.0}) {
          ci::ppo_value_config<float> cfg{};
          cfg.use_clip = use_clip;
          cfg.clip = 0.2f;
          check_value_row(n, kind, cfg, seed++, offset);
        }
}

TEST_CASE("cpu ppo: value clip ties and bounds follow math::ppo_clipped_value exactly") {
  if (!cpu_can_run_this_file()) return;
  // V_old = 0, c = 0.5. Lanes: inside; on the upper bound; outside with a tie of the squares
  // (V = 1.5, R = 1: e = 0.5, e_clip = −0.5); clipped larger; unclipped larger; NaN V_old.
  std::vector<float> v{0.25f, 0.5f, 1.5f, 1.0f, 1.0f, 0.3f, -2.0f, 0.0f};
  std::vector<float> old{0.0f, 0.0f, 0.0f, 0.0f, 0.0f, std::numeric_limits<float>::quiet_NaN(), 0.0f, 0.0f};
  std::vector<float> ret{1.0f, 1.0f, 1.0f, 2.0f, -1.0f, 1.0f, 3.0f, 0.0f};
  std::vector<float> g(8), g_ref(8);
  ci::ppo_value_config<float> cfg{};
  cfg.clip = 0.5f;
  ci::ppo_value_row_io<float> io{v.data(), old.data(), ret.data(), nullptr, g_ref.data(), 8, 1.0};
  ci::ppo_value_row a{}, b{};
  a.count = b.count = 8;
  ci::ppo_value_row_scalar(io, cfg, a);
  io.grad = g.data();
  ci::ppo_value_row_kernel(io, cfg, b);
  for (std::size_t i = 0; i < 8; ++i) {
    CAPTURE(i);
    const auto term = rlhf::math::ppo_clipped_value(v[i], old[i], ret[i], true, 0.5f);
    CHECK(g[i] == term.grad);  // weight 1: the kernel's product is exact here
    CHECK(g_ref[i] == term.grad);
  }
  CHECK(g[2] == 0.25f);
  CHECK(b.clipped == a.clipped);
  CHECK(near(b.loss, a.loss, 1e-6, 0));
}

TEST_CASE("cpu ppo: strided and dense views, and any thread count, give the same bits (vector path)") {
  if (!cpu_can_run_this_file()) return;
  const std::ptrdiff_t rows = 181, cols = 203;  // ≥ 16K tokens a thread: the rows are split
  const std::size_t n = static_cast<std::size_t>(rows * cols);
  const auto old = rlhf::test::normal_vector<float>(n, 71, 1.0);
  auto logp = rlhf::test::normal_vector<float>(n, 72, 0.3);
  for (std::size_t i = 0; i < n; ++i) logp[i] += old[i];
  const auto adv = rlhf::test::normal_vector<float>(n, 73, 1.0);
  const auto ref = rlhf::test::normal_vector<float>(n, 74, 1.0);
  std::vector<std::uint8_t> mask(n);
  for (std::size_t i = 0; i < n; ++i) mask[i] = static_cast<std::uint8_t>((i * 7919) % 11 != 0);
  // The same numbers at inner stride 2.
  std::vector<float> logp2(2 * n), old2(2 * n), adv2(2 * n), ref2(2 * n), g2(2 * n, 5.0f);
  std::vector<std::uint8_t> mask2(2 * n);
  for (std::size_t i = 0; i < n; ++i) {
    logp2[2 * i] = logp[i];
    old2[2 * i] = old[i];
    adv2[2 * i] = adv[i];
    ref2[2 * i] = ref[i];
    mask2[2 * i] = mask[i];
  }
  const std::ptrdiff_t e[2] = {rows, cols}, s[2] = {2 * cols, 2};
  const auto dense = [&](const std::vector<float>& x) { return rlhf::matrix_view<const float>(x.data(), rows, cols); };
  const auto strided = [&](const std::vector<float>& x) { return rlhf::matrix_view<const float>(x.data(), e, s); };
  const rlhf::ppo_ptx_options o{.kl_loss_coef = 0.05};
  std::vector<float> g1(n), g3(n), gv1(n), gv3(n), gv2(2 * n);
  const auto run = [&](int threads, auto view, const rlhf::mask_view& m, float* dlogp, float* dvalues,
                       bool stride) {
    const rlhf::matrix_view<float> dl = stride ? rlhf::matrix_view<float>(dlogp, e, s) : rlhf::matrix_view<float>(dlogp, rows, cols);
    const rlhf::matrix_view<float> dv = stride ? rlhf::matrix_view<float>(dvalues, e, s) : rlhf::matrix_view<float>(dvalues, rows, cols);
    return rlhf::ppo_ptx_loss(
        rlhf::cpu_backend{.threads = threads},
        {.policy = {.logp = view(stride ? logp2 : logp), .old_logp = view(stride ? old2 : old),
                    .advantages = view(stride ? adv2 : adv), .mask = m},
         .value = {.values = view(stride ? logp2 : logp), .old_values = view(stride ? old2 : old),
                   .returns = view(stride ? adv2 : adv), .mask = m},
         .ptx_logp = {}, .ptx_mask = {}, .ref_logp = view(stride ? ref2 : ref)},
        {.dlogp = dl, .dvalues = dv, .dptx_logp = {}}, {.policy = {}, .value = {}, .vf_coef = 0.1, .ptx_coef = 0,
                                                         .kl_loss_coef = o.kl_loss_coef});
  };
  const rlhf::mask_view m1(mask.data(), rows, cols), m2(mask2.data(), e, s);
  const auto a = run(1, dense, m1, g1.data(), gv1.data(), false);
  const auto b = run(3, dense, m1, g3.data(), gv3.data(), false);
  const auto c = run(1, strided, m2, g2.data(), gv2.data(), true);
  CHECK(a.loss == b.loss);
  CHECK(a.loss == c.loss);
  CHECK(a.policy.ratio_var == c.policy.ratio_var);
  CHECK(a.value.explained_variance == c.value.explained_variance);
  CHECK(std::memcmp(g1.data(), g3.data(), n * sizeof(float)) == 0);
  CHECK(std::memcmp(gv1.data(), gv3.data(), n * sizeof(float)) == 0);
  std::size_t differ = 0;
  for (std::size_t i = 0; i < n; ++i) differ += g2[2 * i] != g1[i] || gv2[2 * i] != gv1[i] ? 1 : 0;
  CHECK(differ == 0);
  CHECK(g2[1] == 5.0f);  // untouched between the strided elements
}

#endif
