// Tests for <rlhf/cpu/fused_linear.hpp>'s AVX2 float row kernels: the block softmax state and
// the in-place dlogits row against the scalar double formulas of math/logprobs.hpp, for every
// row length up to 40 (the 8-lane loop and its tail) and labels inside the vector part, in the
// tail and outside the block; then the whole float forward and backward through the public
// entry points against the double definition.
//
// The suite's flags do not enable AVX2, so on x86-64 GCC this file turns AVX2 + FMA code
// generation on for itself (as tests/cpu/gae_test.cpp does) and skips on a CPU without them.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__AVX2__)
#pragma GCC target("avx2,fma")
#define __AVX2__ 1
#define __FMA__ 1
#define RLHF_TEST_FUSED_LINEAR_PRAGMA_AVX2 1
#endif

#include <rlhf/fused_linear.hpp>

#include <doctest/doctest.h>

#include <support/random.hpp>
#include <support/tolerances.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__)

namespace {

namespace d = rlhf::cpu_impl::fused_linear_detail;

bool cpu_can_run_this_file() {
#if defined(RLHF_TEST_FUSED_LINEAR_PRAGMA_AVX2)
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return true;
#endif
}

}  // namespace

TEST_CASE("cpu/fused_linear: AVX2 block state equals the double definition") {
  if (!cpu_can_run_this_file()) return;
  for (int n = 1; n <= 40; ++n)
    for (double temperature : {1.0, 0.7, 3.0}) {
      CAPTURE(n);
      CAPTURE(temperature);
      const auto x = rlhf::test::normal_vector<float>(static_cast<std::size_t>(n), static_cast<std::uint64_t>(n), 4.0);
      const float inv_t = static_cast<float>(1.0 / temperature);
      const auto st = d::block_state(x.data(), n, inv_t);
      float mx = x[0];
      for (float v : x) mx = v > mx ? v : mx;
      double s = 0, u = 0;
      for (float v : x) {
        const double dz = (static_cast<double>(v) - mx) * static_cast<double>(inv_t);
        s += std::exp(dz);
        u += std::exp(dz) * dz;
      }
      RLHF_CHECK_SCALAR(st.max, static_cast<double>(mx) * static_cast<double>(inv_t), (rlhf::test::tolerance{.rtol = 0, .atol = 0}));
      RLHF_CHECK_SCALAR(st.sum_exp, s, (rlhf::test::tolerance{.rtol = 1e-6, .atol = 0}));
      RLHF_CHECK_SCALAR(st.sum_exp_z, u, (rlhf::test::tolerance{.rtol = 1e-6, .atol = 1e-6 * s}));
    }
}

TEST_CASE("cpu/fused_linear: AVX2 dlogits row equals math::logprob_entropy_grad") {
  if (!cpu_can_run_this_file()) return;
  for (int n = 1; n <= 40; ++n)
    for (int label : {0, 3, n - 1, n + 5, -1}) {
      CAPTURE(n);
      CAPTURE(label);
      const auto x = rlhf::test::normal_vector<float>(static_cast<std::size_t>(n), static_cast<std::uint64_t>(100 + n), 3.0);
      const double inv_t = 1.0 / 0.8, v0 = 1000;  // the row holds vocabulary ids 1000…
      // A row state whose lse/H the block is part of (other blocks add mass).
      const double lse = 4.0, entropy = 2.5, g = -0.7, g_h = 0.3;
      std::vector<float> got = x;
      const rlhf::token_id id = label < 0 ? 0 : static_cast<rlhf::token_id>(v0 + label);
      d::grad_row(got.data(), n, static_cast<std::ptrdiff_t>(v0), id, inv_t, lse, g, g_h, entropy);
      std::vector<double> expected;
      for (int j = 0; j < n; ++j)
        expected.push_back(rlhf::math::logprob_entropy_grad(static_cast<double>(x[static_cast<std::size_t>(j)]) * inv_t, lse,
                                                            j == label, g, g_h, entropy) *
                           inv_t);
      RLHF_CHECK_CLOSE(got, expected, (rlhf::test::tolerance{.rtol = 2e-6, .atol = 1e-7}));
    }
}

TEST_CASE("cpu/fused_linear: the AVX2 float forward and backward equal the double computation") {
  if (!cpu_can_run_this_file()) return;
  const std::ptrdiff_t n = 70, dim = 9, v = 203;
  const auto h = rlhf::test::normal_vector<double>(static_cast<std::size_t>(n * dim), 1);
  const auto w = rlhf::test::normal_vector<double>(static_cast<std::size_t>(v * dim), 2);
  std::vector<rlhf::token_id> labels;
  rlhf::rng gen{{.seed = 3}};
  for (std::ptrdiff_t i = 0; i < n; ++i) labels.push_back(static_cast<rlhf::token_id>(gen.uniform_index(v)));
  const auto g = rlhf::test::normal_vector<double>(static_cast<std::size_t>(n), 4);
  const auto g_h = rlhf::test::normal_vector<double>(static_cast<std::size_t>(n), 5);
  // The double path on the float-rounded inputs is the reference.
  const std::vector<float> hf(h.begin(), h.end()), wf(w.begin(), w.end()), gf(g.begin(), g.end()), ghf(g_h.begin(), g_h.end());
  const std::vector<double> hd(hf.begin(), hf.end()), wd(wf.begin(), wf.end()), gd(gf.begin(), gf.end()), ghd(ghf.begin(), ghf.end());
  const rlhf::fused_linear_options o{.temperature = 0.9, .vocab_block = 40};
  auto run = [&](const auto& hh, const auto& ww, const auto& gg, const auto& ggh) {
    using T = typename std::decay_t<decltype(hh)>::value_type;
    std::vector<T> logp(static_cast<std::size_t>(n)), ent(logp.size()), lse(logp.size());
    std::vector<T> dh(hh.size()), dw(ww.size());
    const rlhf::matrix_view<const T> hv(hh.data(), n, dim), wv(ww.data(), v, dim);
    const rlhf::vector_view<const rlhf::token_id> lv(labels.data(), n);
    rlhf::fused_linear_logprobs(rlhf::cpu, hv, wv, lv,
                                {.logp = rlhf::vector_view<T>(logp.data(), n), .entropy = rlhf::vector_view<T>(ent.data(), n),
                                 .logsumexp = rlhf::vector_view<T>(lse.data(), n)},
                                o);
    rlhf::fused_linear_logprobs_backward(rlhf::cpu, hv, wv, lv, rlhf::vector_view<const T>(lse.data(), n),
                                         rlhf::vector_view<const T>(ent.data(), n), rlhf::vector_view<const T>(gg.data(), n),
                                         rlhf::vector_view<const T>(ggh.data(), n), rlhf::matrix_view<T>(dh.data(), n, dim),
                                         rlhf::matrix_view<T>(dw.data(), v, dim), o);
    return std::tuple{logp, ent, lse, dh, dw};
  };
  const auto [logp_f, ent_f, lse_f, dh_f, dw_f] = run(hf, wf, gf, ghf);
  const auto [logp_d, ent_d, lse_d, dh_d, dw_d] = run(hd, wd, gd, ghd);
  const rlhf::test::tolerance values{.rtol = 1e-6, .atol = 1e-6};
  RLHF_CHECK_CLOSE(logp_f, logp_d, values);
  RLHF_CHECK_CLOSE(ent_f, ent_d, values);
  RLHF_CHECK_CLOSE(lse_f, lse_d, values);
  const rlhf::test::tolerance grads{.rtol = 1e-4, .atol = 1e-5};
  RLHF_CHECK_CLOSE(dh_f, dh_d, grads);
  RLHF_CHECK_CLOSE(dw_f, dw_d, grads);
}

#endif  // __AVX2__ && __FMA__
