// Tests for <rlhf/cpu/logprobs.hpp>'s vector kernels: the AVX2 float row kernels (softmax
// state, log-prob/entropy gradient, KL state, KL gradient) against the scalar reference kernels
// (exps in double, sums in double) for vocabulary sizes around the block and SIMD widths, with
// −∞ and ±1e4 logits and temperatures; then the public entry points with 1 and 2 threads.
//
// The suite's flags do not enable AVX2, so on x86-64 GCC this file turns AVX2 + FMA code
// generation on for itself (as tests/cpu/ppo_test.cpp does) and skips on a CPU without them.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__AVX2__)
#pragma GCC target("avx2,fma")
#define __AVX2__ 1
#define __FMA__ 1
#define RLHF_TEST_LOGPROBS_PRAGMA_AVX2 1
#endif

#include <rlhf/logprobs.hpp>

#include <doctest/doctest.h>

#include <support/random.hpp>
#include <support/tolerances.hpp>
#include <support/views.hpp>

#include <cmath>
#include <limits>
#include <vector>

namespace {

bool cpu_has_avx2() {
#if defined(RLHF_TEST_LOGPROBS_PRAGMA_AVX2)
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return rlhf::cpu_impl::logprobs_detail::has_avx2_kernels;
#endif
}

namespace d = rlhf::cpu_impl::logprobs_detail;
using rlhf::test::tolerance;

/// A row of n float logits: N(0, scale²), with every `ninf_every`-th −∞ (0: none), and entries
/// ±1e4 every `big_every`-th (0: none).
std::vector<float> make_row(std::ptrdiff_t n, std::uint64_t seed, double scale, int ninf_every, int big_every) {
  auto v = rlhf::test::normal_vector<float>(static_cast<std::size_t>(n), seed, scale);
  for (std::ptrdiff_t j = 0; j < n; ++j) {
    if (ninf_every > 0 && j % ninf_every == 1) v[static_cast<std::size_t>(j)] = -std::numeric_limits<float>::infinity();
    if (big_every > 0 && j % big_every == 0) v[static_cast<std::size_t>(j)] = (j / big_every) % 2 ? -1e4f : 1e4f;
  }
  return v;
}

}  // namespace

#if defined(__AVX2__) && defined(__FMA__)
TEST_CASE("AVX2 float row kernels agree with the scalar kernels") {
  if (!cpu_has_avx2()) return;
  struct pattern {
    double scale;
    int ninf_every, big_every;
  };
  for (std::ptrdiff_t n : {1, 2, 7, 8, 9, 15, 16, 17, 31, 1000, 2047, 2048, 2049, 4099, 32000, 50257}) {
    for (const pattern pt : {pattern{1.0, 0, 0}, pattern{8.0, 0, 0}, pattern{3.0, 5, 0}, pattern{2.0, 0, 997},
                             pattern{2.0, 3, 1001}}) {
      for (double tau : {1.0, 0.7}) {
        CAPTURE(n);
        CAPTURE(pt.scale);
        CAPTURE(pt.ninf_every);
        CAPTURE(pt.big_every);
        CAPTURE(tau);
        const auto x = make_row(n, static_cast<std::uint64_t>(n) * 7 + 1, pt.scale, pt.ninf_every, pt.big_every);
        const auto y = make_row(n, static_cast<std::uint64_t>(n) * 7 + 2, pt.scale, 0, pt.big_every);
        const auto tf = d::make_temperature<float>(tau);
        const auto s_ref = d::softmax_row_scalar(x.data(), n, tf);
        const auto s = d::avx2::softmax_row(x.data(), n, tf.inv_tau_t);
        const double lse_ref = rlhf::math::softmax_logsumexp(s_ref), lse = rlhf::math::softmax_logsumexp(s);
        const double h_ref = rlhf::math::softmax_entropy(s_ref), h = rlhf::math::softmax_entropy(s);
        if (lse_ref == -std::numeric_limits<double>::infinity()) {
          CHECK(lse == lse_ref);
          continue;
        }
        RLHF_CHECK_SCALAR(lse, lse_ref, (tolerance{.rtol = 1e-7, .atol = 2e-7}));
        RLHF_CHECK_SCALAR(h, h_ref, (tolerance{.rtol = 1e-6, .atol = 5e-7}));
        CHECK(std::isfinite(h));

        // Gradient row, with the entropy term, against the scalar one.
        const std::ptrdiff_t label = (n * 5 + 3) % n;
        std::vector<float> g_ref(static_cast<std::size_t>(n)), g(static_cast<std::size_t>(n));
        d::logprob_grad_row_scalar(x.data(), g_ref.data(), n, label, tf, lse_ref, 0.75, -1.25, h_ref);
        d::avx2::logprob_grad_row(x.data(), g.data(), n, label, tf.inv_tau_t, lse_ref, 0.75, -1.25, h_ref);
        // Gradients are O(1): 1e-6 absolute is the float floor (1 − p in float near p = 1).
        RLHF_CHECK_CLOSE(g, g_ref, (tolerance{.rtol = 2e-6, .atol = 1e-6}));
        for (std::size_t j = 0; j < g.size(); ++j)
          if (std::isinf(x[j]) && static_cast<std::ptrdiff_t>(j) != label) REQUIRE(g[j] == 0.0f);

        // KL state and gradient.
        const auto k_ref = d::kl_row_scalar(x.data(), y.data(), n, tf);
        const auto k = d::avx2::kl_row(x.data(), y.data(), n, tf);
        const double kl_ref = rlhf::math::kl_value(k_ref), kl = rlhf::math::kl_value(k);
        RLHF_CHECK_SCALAR(kl, kl_ref, (tolerance{.rtol = 1e-6, .atol = 1e-6}));
        RLHF_CHECK_SCALAR(rlhf::math::softmax_logsumexp(k.ref), rlhf::math::softmax_logsumexp(k_ref.ref),
                          (tolerance{.rtol = 1e-7, .atol = 2e-7}));
        d::kl_grad_row_scalar(x.data(), y.data(), g_ref.data(), n, tf, lse_ref,
                              rlhf::math::softmax_logsumexp(k_ref.ref), kl_ref, 1.5);
        d::avx2::kl_grad_row(x.data(), y.data(), g.data(), n, tf.inv_tau_t, lse_ref,
                             rlhf::math::softmax_logsumexp(k_ref.ref), kl_ref, 1.5);
        // log p − log q − KL is formed in float from terms of size |z| (up to ~50 here): an
        // absolute error of a few ulp(50) ≈ 1e-5 on an O(1) gradient.
        RLHF_CHECK_CLOSE(g, g_ref, (tolerance{.rtol = 1e-5, .atol = 1e-5}));
      }
    }
  }
}
#endif

TEST_CASE("public entry points at vocabulary 32000: 1 and 2 threads bitwise, no NaN") {
  const std::ptrdiff_t B = 2, Tn = 3, V = 32000;
  auto x = make_row(B * Tn * V, 5, 3.0, 101, 0);
  const auto y = make_row(B * Tn * V, 6, 3.0, 0, 0);
  const std::vector<rlhf::token_id> labels = {0, 31999, 17, 4242, 1, 30000};
  const auto run = [&](int threads) {
    std::vector<float> out(static_cast<std::size_t>(4 * B * Tn));
    const auto m = [&](int k) { return rlhf::matrix_view<float>(out.data() + k * B * Tn, B, Tn); };
    rlhf::full_kl_from_logits(rlhf::cpu_backend{.threads = threads}, rlhf::test::ccube(x, B, Tn, V),
                              rlhf::test::ccube(y, B, Tn, V), rlhf::test::cview(labels, B, Tn), m(0),
                              {.logp = m(1), .entropy = m(2), .logsumexp = m(3)});
    std::vector<float> grad(x.size());
    const std::vector<float> ones(static_cast<std::size_t>(B * Tn), 1.0f);
    rlhf::token_logprobs_backward(rlhf::cpu_backend{.threads = threads}, rlhf::test::ccube(x, B, Tn, V),
                                  rlhf::test::cview(labels, B, Tn), m(3), rlhf::test::cview(ones, B, Tn),
                                  rlhf::test::cview(ones, B, Tn), rlhf::test::cube(grad, B, Tn, V));
    out.insert(out.end(), grad.begin(), grad.end());
    return out;
  };
  const auto one = run(1), two = run(2);
  CHECK(one == two);
  for (float v : one) REQUIRE(std::isfinite(v));
}
