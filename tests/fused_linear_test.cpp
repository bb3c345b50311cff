// Tests for <rlhf/fused_linear.hpp>: forward against the materialised-logits definition (odd
// sizes, temperatures, vocabulary blocks, strided views), gradients against central finite
// differences, float against double, accumulation into dW, thread counts bitwise, the workspace
// bound, and argument errors.
#include <rlhf/fused_linear.hpp>
#include <rlhf/logprobs.hpp>

#include <doctest/doctest.h>

#include <support/finite_difference.hpp>
#include <support/random.hpp>
#include <support/tolerances.hpp>
#include <support/views.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace {

using rlhf::test::cvec;
using rlhf::test::vec;
using rlhf::test::view;

struct problem {
  std::ptrdiff_t n, d, v;
  std::vector<double> hidden, w;  // (N, D), (V, D)
  std::vector<rlhf::token_id> labels;
};

problem make_problem(std::ptrdiff_t n, std::ptrdiff_t d, std::ptrdiff_t v, std::uint64_t seed, double scale = 1.0) {
  problem p{n, d, v, rlhf::test::normal_vector<double>(static_cast<std::size_t>(n * d), seed, scale),
            rlhf::test::normal_vector<double>(static_cast<std::size_t>(v * d), seed + 1, 1.0), {}};
  rlhf::rng gen{{.seed = seed + 2}};
  for (std::ptrdiff_t i = 0; i < n; ++i) p.labels.push_back(static_cast<rlhf::token_id>(gen.uniform_index(static_cast<std::uint64_t>(v))));
  return p;
}

template <class T>
std::vector<T> as(const std::vector<double>& x) {
  return std::vector<T>(x.begin(), x.end());
}

/// The definition on materialised logits, in double from the (possibly float-rounded) inputs.
struct reference {
  std::vector<double> logp, entropy, lse;
  std::vector<double> dhidden, dw;  // gradients of Σ g·logp + g_H·H
};

template <class T>
reference materialised(const problem& p, double temperature, const std::vector<double>& g = {},
                       const std::vector<double>& g_h = {}) {
  const auto h = as<T>(p.hidden);
  const auto w = as<T>(p.w);
  reference r;
  r.dhidden.assign(static_cast<std::size_t>(p.n * p.d), 0.0);
  r.dw.assign(static_cast<std::size_t>(p.v * p.d), 0.0);
  std::vector<double> z(static_cast<std::size_t>(p.v)), prob(z.size());
  for (std::ptrdiff_t i = 0; i < p.n; ++i) {
    double m = -std::numeric_limits<double>::infinity();
    for (std::ptrdiff_t j = 0; j < p.v; ++j) {
      double x = 0;
      for (std::ptrdiff_t k = 0; k < p.d; ++k)
        x += static_cast<double>(h[static_cast<std::size_t>(i * p.d + k)]) * static_cast<double>(w[static_cast<std::size_t>(j * p.d + k)]);
      z[static_cast<std::size_t>(j)] = x / temperature;
      m = std::max(m, z[static_cast<std::size_t>(j)]);
    }
    double s = 0;
    for (double zj : z) s += std::exp(zj - m);
    const double lse = m + std::log(s);
    double ent = 0;
    for (std::size_t j = 0; j < z.size(); ++j) {
      prob[j] = std::exp(z[j] - lse);
      ent -= prob[j] * (z[j] - lse);
    }
    const auto label = static_cast<std::size_t>(p.labels[static_cast<std::size_t>(i)]);
    r.logp.push_back(z[label] - lse);
    r.entropy.push_back(ent);
    r.lse.push_back(lse);
    if (g.empty()) continue;
    const double gi = g[static_cast<std::size_t>(i)], ghi = g_h.empty() ? 0.0 : g_h[static_cast<std::size_t>(i)];
    for (std::size_t j = 0; j < z.size(); ++j) {
      const double dz = gi * ((j == label ? 1.0 : 0.0) - prob[j]) - ghi * prob[j] * ((z[j] - lse) + ent);
      const double dx = dz / temperature;
      for (std::ptrdiff_t k = 0; k < p.d; ++k) {
        r.dhidden[static_cast<std::size_t>(i * p.d + k)] += dx * static_cast<double>(w[j * static_cast<std::size_t>(p.d) + static_cast<std::size_t>(k)]);
        r.dw[j * static_cast<std::size_t>(p.d) + static_cast<std::size_t>(k)] += dx * static_cast<double>(h[static_cast<std::size_t>(i * p.d + k)]);
      }
    }
  }
  return r;
}

template <class T>
struct forward_result {
  std::vector<T> logp, entropy, lse;
};

template <class T>
forward_result<T> run_forward(const problem& p, const rlhf::fused_linear_options& o, int threads = 1) {
  const auto h = as<T>(p.hidden);
  const auto w = as<T>(p.w);
  forward_result<T> r{std::vector<T>(static_cast<std::size_t>(p.n)), std::vector<T>(static_cast<std::size_t>(p.n)),
                      std::vector<T>(static_cast<std::size_t>(p.n))};
  rlhf::fused_linear_logprobs(rlhf::cpu_backend{.threads = threads}, view(h, p.n, p.d), view(w, p.v, p.d), cvec(p.labels),
                              {.logp = vec(r.logp), .entropy = vec(r.entropy), .logsumexp = vec(r.lse)}, o);
  return r;
}

template <class T>
struct backward_result {
  std::vector<T> dhidden, dw;
};

template <class T>
backward_result<T> run_backward(const problem& p, const forward_result<T>& f, const std::vector<double>& g,
                                const std::vector<double>& g_h, const rlhf::fused_linear_options& o, int threads = 1,
                                const std::vector<double>& dw_init = {}) {
  const auto h = as<T>(p.hidden);
  const auto w = as<T>(p.w);
  const auto gt = as<T>(g), ght = as<T>(g_h);
  backward_result<T> r{std::vector<T>(static_cast<std::size_t>(p.n * p.d), T(123)),
                       dw_init.empty() ? std::vector<T>(static_cast<std::size_t>(p.v * p.d)) : as<T>(dw_init)};
  rlhf::fused_linear_logprobs_backward(rlhf::cpu_backend{.threads = threads}, view(h, p.n, p.d), view(w, p.v, p.d),
                                       cvec(p.labels), cvec(f.lse), g_h.empty() ? rlhf::vector_view<const T>{} : cvec(f.entropy),
                                       cvec(gt), g_h.empty() ? rlhf::vector_view<const T>{} : cvec(ght),
                                       view(r.dhidden, p.n, p.d), view(r.dw, p.v, p.d), o);
  return r;
}

template <class T>
rlhf::test::tolerance value_tolerance() {
  if constexpr (sizeof(T) == 4) {
    return {.rtol = 1e-6, .atol = 1e-6};  // logp / entropy / lse of magnitude ~1–10
  } else {
    return {.rtol = 1e-12, .atol = 1e-12};
  }
}

}  // namespace

TEST_CASE_TEMPLATE("fused_linear: forward equals the materialised-logits definition", T, float, double) {
  struct shape {
    std::ptrdiff_t n, d, v, block;
    double temperature;
  };
  for (const shape s : {shape{1, 5, 7, 0, 1.0}, shape{1, 5, 7, 3, 0.7}, shape{3, 9, 13, 1, 1.0}, shape{300, 13, 257, 0, 1.0},
                        shape{300, 13, 257, 64, 0.6}, shape{257, 17, 131, 131, 2.0}, shape{5, 1, 2, 0, 1.0}}) {
    CAPTURE(s.n);
    CAPTURE(s.d);
    CAPTURE(s.v);
    CAPTURE(s.block);
    const auto p = make_problem(s.n, s.d, s.v, static_cast<std::uint64_t>(s.n * 1000 + s.v));
    const auto r = materialised<T>(p, s.temperature);
    const auto f = run_forward<T>(p, {.temperature = s.temperature, .vocab_block = s.block});
    RLHF_CHECK_CLOSE(f.logp, r.logp, value_tolerance<T>());
    RLHF_CHECK_CLOSE(f.entropy, r.entropy, value_tolerance<T>());
    RLHF_CHECK_CLOSE(f.lse, r.lse, value_tolerance<T>());
  }
}

TEST_CASE_TEMPLATE("fused_linear: equals rlhf::token_logprobs on the materialised logits, forward and backward", T, float,
                   double) {
  const std::ptrdiff_t n = 37, d = 11, v = 101;
  const double temperature = 0.8;
  const auto p = make_problem(n, d, v, 80);
  const auto h = as<T>(p.hidden);
  const auto w = as<T>(p.w);
  // logits = hidden · Wᵀ, each a double dot product rounded once to T.
  std::vector<T> logits(static_cast<std::size_t>(n * v));
  for (std::ptrdiff_t i = 0; i < n; ++i)
    for (std::ptrdiff_t j = 0; j < v; ++j) {
      double x = 0;
      for (std::ptrdiff_t k = 0; k < d; ++k)
        x += static_cast<double>(h[static_cast<std::size_t>(i * d + k)]) * static_cast<double>(w[static_cast<std::size_t>(j * d + k)]);
      logits[static_cast<std::size_t>(i * v + j)] = static_cast<T>(x);
    }
  std::vector<T> logp(static_cast<std::size_t>(n)), ent(logp.size()), lse(logp.size());
  rlhf::token_logprobs(rlhf::cpu, rlhf::cube_view<const T>(logits.data(), 1, n, v),
                       rlhf::matrix_view<const rlhf::token_id>(p.labels.data(), 1, n),
                       {.logp = view(logp, 1, n), .entropy = view(ent, 1, n), .logsumexp = view(lse, 1, n)},
                       {.temperature = temperature});
  const rlhf::fused_linear_options o{.temperature = temperature, .vocab_block = 16};
  const auto f = run_forward<T>(p, o);
  RLHF_CHECK_CLOSE(f.logp, logp, value_tolerance<T>());
  RLHF_CHECK_CLOSE(f.entropy, ent, value_tolerance<T>());
  RLHF_CHECK_CLOSE(f.lse, lse, value_tolerance<T>());

  // Backward: token_logprobs_backward's dlogits, multiplied out in double.
  const auto g = rlhf::test::normal_vector<double>(static_cast<std::size_t>(n), 81);
  const auto gt = as<T>(g);
  std::vector<T> dlogits(logits.size());
  rlhf::token_logprobs_backward(rlhf::cpu, rlhf::cube_view<const T>(logits.data(), 1, n, v),
                                rlhf::matrix_view<const rlhf::token_id>(p.labels.data(), 1, n), view(std::as_const(lse), 1, n),
                                view(gt, 1, n), {}, rlhf::cube_view<T>(dlogits.data(), 1, n, v), {.temperature = temperature});
  std::vector<double> dh(static_cast<std::size_t>(n * d)), dw(static_cast<std::size_t>(v * d));
  for (std::ptrdiff_t i = 0; i < n; ++i)
    for (std::ptrdiff_t j = 0; j < v; ++j)
      for (std::ptrdiff_t k = 0; k < d; ++k) {
        const double dx = static_cast<double>(dlogits[static_cast<std::size_t>(i * v + j)]);
        dh[static_cast<std::size_t>(i * d + k)] += dx * static_cast<double>(w[static_cast<std::size_t>(j * d + k)]);
        dw[static_cast<std::size_t>(j * d + k)] += dx * static_cast<double>(h[static_cast<std::size_t>(i * d + k)]);
      }
  const auto b = run_backward<T>(p, f, g, {}, o);
  const rlhf::test::tolerance tol = sizeof(T) == 4 ? rlhf::test::tolerance{.rtol = 1e-4, .atol = 1e-5}
                                                   : rlhf::test::tolerance{.rtol = 1e-10, .atol = 1e-13};
  RLHF_CHECK_CLOSE(b.dhidden, dh, tol);
  RLHF_CHECK_CLOSE(b.dw, dw, tol);
}

TEST_CASE_TEMPLATE("fused_linear: large logits neither overflow nor lose the label", T, float, double) {
  // |logits| up to a few hundred: e^x overflows without the running maximum.
  const auto p = make_problem(20, 8, 37, 5, 40.0);
  const auto r = materialised<T>(p, 1.0);
  const auto f = run_forward<T>(p, {.vocab_block = 8});
  for (std::size_t i = 0; i < f.logp.size(); ++i) {
    CHECK(std::isfinite(static_cast<double>(f.logp[i])));
    CHECK(f.entropy[i] >= T(0));
  }
  // Relative to the logits' scale (a few hundred).
  RLHF_CHECK_CLOSE(f.logp, r.logp, (rlhf::test::tolerance{.rtol = sizeof(T) == 4 ? 1e-5 : 1e-12, .atol = sizeof(T) == 4 ? 1e-3 : 1e-10}));
}

TEST_CASE("fused_linear: gradients match central finite differences (double)") {
  for (double temperature : {1.0, 0.7}) {
    for (bool with_entropy : {false, true}) {
      CAPTURE(temperature);
      CAPTURE(with_entropy);
      auto p = make_problem(3, 5, 7, 17);
      const auto g = rlhf::test::normal_vector<double>(3, 18);
      const auto g_h = with_entropy ? rlhf::test::normal_vector<double>(3, 19) : std::vector<double>{};
      const rlhf::fused_linear_options o{.temperature = temperature, .vocab_block = 3};
      const auto f = run_forward<double>(p, o);
      const auto dw_init = rlhf::test::normal_vector<double>(static_cast<std::size_t>(p.v * p.d), 20);
      const auto b = run_backward<double>(p, f, g, g_h, o, 1, dw_init);

      const auto objective = [&] {
        const auto ff = run_forward<double>(p, o);
        double l = 0;
        for (std::size_t i = 0; i < g.size(); ++i) l += g[i] * ff.logp[i] + (g_h.empty() ? 0.0 : g_h[i] * ff.entropy[i]);
        return l;
      };
      const auto num_h = rlhf::test::numeric_gradient(objective, p.hidden);
      const auto num_w = rlhf::test::numeric_gradient(objective, p.w);
      std::vector<double> dw_increment(b.dw.size());
      for (std::size_t i = 0; i < b.dw.size(); ++i) dw_increment[i] = b.dw[i] - dw_init[i];
      const rlhf::test::tolerance fd{.rtol = 1e-3, .atol = 1e-5};
      RLHF_CHECK_CLOSE(b.dhidden, num_h, fd);
      RLHF_CHECK_CLOSE(dw_increment, num_w, fd);
    }
  }
}

TEST_CASE_TEMPLATE("fused_linear: backward equals the materialised-logits gradients", T, float, double) {
  struct shape {
    std::ptrdiff_t n, d, v, block;
    double temperature;
  };
  for (const shape s : {shape{1, 5, 7, 0, 1.0}, shape{1, 9, 11, 4, 0.8}, shape{300, 13, 257, 64, 0.9}, shape{260, 7, 150, 150, 1.0}}) {
    CAPTURE(s.n);
    CAPTURE(s.v);
    CAPTURE(s.block);
    const auto p = make_problem(s.n, s.d, s.v, static_cast<std::uint64_t>(s.n + s.v));
    const auto g = rlhf::test::normal_vector<double>(static_cast<std::size_t>(s.n), 3);
    const auto g_h = rlhf::test::normal_vector<double>(static_cast<std::size_t>(s.n), 4);
    const rlhf::fused_linear_options o{.temperature = s.temperature, .vocab_block = s.block};
    const auto r = materialised<T>(p, s.temperature, g, g_h);
    const auto f = run_forward<T>(p, o);
    const auto b = run_backward<T>(p, f, g, g_h, o);
    // Sums over V (dhidden) or N (dW) of terms of size ~|g|·p·|W|: absolute floor at the scale.
    const rlhf::test::tolerance tol = sizeof(T) == 4 ? rlhf::test::tolerance{.rtol = 1e-4, .atol = 1e-5}
                                                     : rlhf::test::tolerance{.rtol = 1e-10, .atol = 1e-13};
    RLHF_CHECK_CLOSE(b.dhidden, r.dhidden, tol);
    RLHF_CHECK_CLOSE(b.dw, r.dw, tol);
    // Without the entropy term.
    const auto r0 = materialised<T>(p, s.temperature, g);
    const auto b0 = run_backward<T>(p, f, g, {}, o);
    RLHF_CHECK_CLOSE(b0.dhidden, r0.dhidden, tol);
    RLHF_CHECK_CLOSE(b0.dw, r0.dw, tol);
  }
}

TEST_CASE("fused_linear: dW accumulates over calls, dhidden is overwritten") {
  const auto p = make_problem(4, 6, 9, 40);
  const auto g = rlhf::test::normal_vector<double>(4, 41);
  const auto f = run_forward<double>(p, {});
  const auto once = run_backward<double>(p, f, g, {}, {});
  const auto twice = run_backward<double>(p, f, g, {}, {}, 1, once.dw);
  std::vector<double> doubled;
  for (double x : once.dw) doubled.push_back(2 * x);
  RLHF_CHECK_CLOSE(twice.dw, doubled, (rlhf::test::tolerance{.rtol = 1e-15, .atol = 0}));
  RLHF_CHECK_CLOSE(twice.dhidden, once.dhidden, (rlhf::test::tolerance{.rtol = 0, .atol = 0}));
}

TEST_CASE_TEMPLATE("fused_linear: one and two threads give the same bits", T, float, double) {
  // 520 rows: three row blocks of 256; 263 = two dW slices of 128 and one of 7 in one block.
  const auto p = make_problem(520, 8, 263, 50);
  const auto g = rlhf::test::normal_vector<double>(520, 51);
  const auto g_h = rlhf::test::normal_vector<double>(520, 52);
  for (std::ptrdiff_t block : {std::ptrdiff_t{0}, std::ptrdiff_t{263}}) {
    const rlhf::fused_linear_options o{.temperature = 0.9, .vocab_block = block};
    const auto f1 = run_forward<T>(p, o, 1), f2 = run_forward<T>(p, o, 2), f3 = run_forward<T>(p, o, 3);
    CHECK(f1.logp == f2.logp);
    CHECK(f1.entropy == f2.entropy);
    CHECK(f1.lse == f2.lse);
    CHECK(f1.logp == f3.logp);
    const auto b1 = run_backward<T>(p, f1, g, g_h, o, 1), b2 = run_backward<T>(p, f1, g, g_h, o, 2);
    CHECK(b1.dhidden == b2.dhidden);
    CHECK(b1.dw == b2.dw);
  }
}

TEST_CASE("fused_linear: strided views give the definition's results") {
  const auto p = make_problem(7, 6, 11, 60);
  const auto r = materialised<double>(p, 1.0, rlhf::test::normal_vector<double>(7, 61));
  // hidden inside a wider buffer (row stride 9), W stored transposed (D, V): inner stride V.
  std::vector<double> wide(7 * 9, 99.0), wt(static_cast<std::size_t>(6 * 11));
  for (int i = 0; i < 7; ++i)
    for (int k = 0; k < 6; ++k) wide[static_cast<std::size_t>(i * 9 + k)] = p.hidden[static_cast<std::size_t>(i * 6 + k)];
  for (int j = 0; j < 11; ++j)
    for (int k = 0; k < 6; ++k) wt[static_cast<std::size_t>(k * 11 + j)] = p.w[static_cast<std::size_t>(j * 6 + k)];
  const rlhf::matrix_view<const double> h(wide.data(), {7, 6}, {9, 1});
  const rlhf::matrix_view<const double> w(wt.data(), {11, 6}, {1, 11});
  std::vector<double> logp(7), lse(7), dh_wide(7 * 9, -5.0), dw_t(6 * 11, 0.0);
  rlhf::fused_linear_logprobs(rlhf::cpu, h, w, cvec(p.labels), {.logp = vec(logp), .logsumexp = vec(lse)}, {.vocab_block = 4});
  RLHF_CHECK_CLOSE(logp, r.logp, value_tolerance<double>());
  const auto g = rlhf::test::normal_vector<double>(7, 61);
  rlhf::fused_linear_logprobs_backward(rlhf::cpu, h, w, cvec(p.labels), cvec(lse), {}, cvec(g), {},
                                       rlhf::matrix_view<double>(dh_wide.data(), {7, 6}, {9, 1}),
                                       rlhf::matrix_view<double>(dw_t.data(), {11, 6}, {1, 11}), {.vocab_block = 4});
  std::vector<double> dh, dw;
  for (int i = 0; i < 7; ++i)
    for (int k = 0; k < 6; ++k) dh.push_back(dh_wide[static_cast<std::size_t>(i * 9 + k)]);
  for (int j = 0; j < 11; ++j)
    for (int k = 0; k < 6; ++k) dw.push_back(dw_t[static_cast<std::size_t>(k * 11 + j)]);
  RLHF_CHECK_CLOSE(dh, r.dhidden, (rlhf::test::tolerance{.rtol = 1e-10, .atol = 1e-13}));
  RLHF_CHECK_CLOSE(dw, r.dw, (rlhf::test::tolerance{.rtol = 1e-10, .atol = 1e-13}));
  CHECK(dh_wide[6] == -5.0);  // the padding columns are untouched
}

TEST_CASE("fused_linear: the workspace stays within N·V·4 bytes / 16 at the benchmark shapes") {
  for (std::ptrdiff_t n : {1024, 4096})
    for (int threads : {1, 2})
      for (bool backward : {false, true}) {
        const std::size_t bound = static_cast<std::size_t>(n) * 50257u * 4u / 16u;
        const std::size_t bytes = rlhf::fused_linear_workspace_bytes(rlhf::cpu_backend{.threads = threads}, n, 50257,
                                                                     sizeof(float), backward);
        CAPTURE(n);
        CAPTURE(threads);
        CAPTURE(backward);
        CHECK(bytes <= bound);
        CHECK(bytes > 0);
      }
  // The backward's buffer is N × vocab_block elements.
  CHECK(rlhf::fused_linear_workspace_bytes(rlhf::cpu, 100, 5000, sizeof(double), true, {.vocab_block = 10}) == 100u * 10u * 8u);
}

TEST_CASE("fused_linear: bad arguments throw invalid_argument naming the function and values") {
  const auto p = make_problem(3, 4, 5, 70);
  auto labels = p.labels;
  std::vector<double> logp(3), lse(3), ent(3), g(3, 1.0), dh(12), dw(20);
  const auto h = view(p.hidden, 3, 4);
  const auto w = view(p.w, 5, 4);
  auto forward = [&](const rlhf::fused_linear_options& o = {}) {
    rlhf::fused_linear_logprobs(rlhf::cpu, h, w, cvec(labels), {.logp = vec(logp)}, o);
  };
  labels[1] = 5;
  CHECK_THROWS_WITH_AS(forward(), "rlhf::fused_linear_logprobs(): labels(1) = 5 is outside [0, 5)", rlhf::invalid_argument);
  labels[1] = -1;
  CHECK_THROWS_WITH_AS(forward(), "rlhf::fused_linear_logprobs(): labels(1) = -1 is outside [0, 5)", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::fused_linear_logprobs_backward(rlhf::cpu, h, w, cvec(labels), cvec(lse), {}, cvec(g), {},
                                                            view(dh, 3, 4), view(dw, 5, 4)),
                       "rlhf::fused_linear_logprobs_backward(): labels(1) = -1 is outside [0, 5)", rlhf::invalid_argument);
  labels[1] = 0;
  CHECK_NOTHROW(forward());
  CHECK_THROWS_WITH_AS(forward({.temperature = 0.0}),
                       "rlhf::fused_linear_logprobs(): temperature must be positive and finite, got 0", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(forward({.vocab_block = -2}),
                       "rlhf::fused_linear_logprobs(): vocab_block must be >= 0 (0 = automatic), got -2", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::fused_linear_logprobs(rlhf::cpu, h, view(p.w, 4, 5), cvec(labels), {.logp = vec(logp)}),
                       "rlhf::fused_linear_logprobs(): hidden is 3x4 but unembedding is 4x5 (both need the same hidden width D)",
                       rlhf::invalid_argument);
  std::vector<rlhf::token_id> two_labels{0, 1};
  CHECK_THROWS_WITH_AS(rlhf::fused_linear_logprobs(rlhf::cpu, h, w, cvec(two_labels), {.logp = vec(logp)}),
                       "rlhf::fused_linear_logprobs(): labels is 2 but the number of hidden rows is 3", rlhf::invalid_argument);
  std::vector<double> four(4);
  CHECK_THROWS_AS(rlhf::fused_linear_logprobs(rlhf::cpu, h, w, cvec(labels), {.logp = vec(four)}), rlhf::invalid_argument);
  CHECK_THROWS_AS(rlhf::fused_linear_logprobs(rlhf::cpu, h, w, cvec(labels), {.logp = vec(logp), .entropy = vec(four)}),
                  rlhf::invalid_argument);
  CHECK_THROWS_AS(rlhf::fused_linear_logprobs(rlhf::cpu, h, w, cvec(labels), {.logp = {}}), rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::fused_linear_logprobs(rlhf::cpu, rlhf::matrix_view<const double>{}, w, cvec(labels), {.logp = vec(logp)}),
                       "rlhf::fused_linear_logprobs(): hidden is empty (0x0)", rlhf::invalid_argument);

  CHECK_THROWS_WITH_AS(rlhf::fused_linear_logprobs_backward(rlhf::cpu, h, w, cvec(labels), cvec(lse), {}, cvec(g), cvec(g),
                                                            view(dh, 3, 4), view(dw, 5, 4)),
                       "rlhf::fused_linear_logprobs_backward(): grad_entropy is given but entropy is empty: pass the forward's entropy",
                       rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::fused_linear_logprobs_backward(rlhf::cpu, h, w, cvec(labels), cvec(lse), {}, cvec(g), {},
                                                            view(dh, 4, 3), view(dw, 5, 4)),
                       "rlhf::fused_linear_logprobs_backward(): hidden is 3x4 but dhidden is 4x3", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::fused_linear_logprobs_backward(rlhf::cpu, h, w, cvec(labels), cvec(lse), {}, cvec(g), {},
                                                            view(dh, 3, 4), view(dw, 4, 5)),
                       "rlhf::fused_linear_logprobs_backward(): unembedding is 5x4 but dunembedding is 4x5", rlhf::invalid_argument);
  CHECK_THROWS_AS(rlhf::fused_linear_logprobs_backward(rlhf::cpu, h, w, cvec(labels), {}, {}, cvec(g), {}, view(dh, 3, 4),
                                                       view(dw, 5, 4)),
                  rlhf::invalid_argument);
  CHECK_THROWS_AS(rlhf::fused_linear_logprobs_backward(rlhf::cpu, h, w, cvec(labels), cvec(lse), {}, {}, {}, view(dh, 3, 4),
                                                       view(dw, 5, 4)),
                  rlhf::invalid_argument);
  CHECK_NOTHROW(rlhf::fused_linear_logprobs_backward(rlhf::cpu, h, w, cvec(labels), cvec(lse), cvec(ent), cvec(g), cvec(g),
                                                     view(dh, 3, 4), view(dw, 5, 4)));
}
