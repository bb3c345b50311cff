// Tests for <rlhf/sampler.hpp>: greedy and its ties, the sampled distributions against their
// definitions (chi-square on fixed seeds), top-k / top-p boundaries and ties, −inf logits, the
// returned log-prob, per-row streams, threads, reproducibility and argument errors.
#include <rlhf/sampler.hpp>

#include <doctest/doctest.h>

#include <support/tolerances.hpp>
#include <support/views.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace {

using rlhf::test::cvec;
using rlhf::test::view;

constexpr double neg_inf = -std::numeric_limits<double>::infinity();

std::vector<rlhf::rng> generators(std::size_t n, std::uint64_t seed) {
  std::vector<rlhf::rng> g;
  for (std::size_t b = 0; b < n; ++b) g.push_back(rlhf::rng{{.seed = seed, .stream = b}});
  return g;
}

/// P(df/2, x/2): the chi-square distribution function, by the series of the regularised lower
/// incomplete gamma function P(a, y) = y^a e^{−y} / Γ(a + 1) · Σ_n y^n / ((a + 1)…(a + n)).
double chi_square_cdf(int df, double x) {
  const double a = 0.5 * df, y = 0.5 * x;
  double term = 1.0, sum = 1.0;
  for (int n = 1; n < 10000 && term > 1e-17 * sum; ++n) {
    term *= y / (a + n);
    sum += term;
  }
  return std::exp(a * std::log(y) - y - std::lgamma(a + 1.0)) * sum;
}

/// The 1 − α quantile of the chi-square distribution with df degrees of freedom (bisection).
double chi_square_quantile(int df, double alpha) {
  double lo = 0.0, hi = 10.0 * df + 100.0;
  for (int i = 0; i < 200; ++i) {
    const double mid = 0.5 * (lo + hi);
    (chi_square_cdf(df, mid) < 1.0 - alpha ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}
constexpr double alpha = 1e-4;  // a correct sampler fails a given seed once in 10,000

/// n draws of one row of logits (n identical rows, n generator streams), as token counts.
template <class T>
std::vector<std::int64_t> draw_counts(const std::vector<double>& logits, std::size_t n, std::uint64_t seed,
                                      const rlhf::sampling_options& options, int threads = 1) {
  const auto n_vocab = static_cast<std::ptrdiff_t>(logits.size());
  std::vector<T> x;
  for (std::size_t i = 0; i < n; ++i)
    for (double v : logits) x.push_back(static_cast<T>(v));
  auto gens = generators(n, seed);
  std::vector<rlhf::token_id> tokens(n);
  std::vector<T> logp(n);
  rlhf::sample_tokens(rlhf::cpu_backend{.threads = threads}, view(std::as_const(x), static_cast<std::ptrdiff_t>(n), n_vocab),
                      gens, rlhf::test::vec(tokens), rlhf::test::vec(logp), options);
  std::vector<std::int64_t> counts(logits.size());
  for (auto t : tokens) {
    REQUIRE(t >= 0);
    REQUIRE(t < n_vocab);
    ++counts[static_cast<std::size_t>(t)];
  }
  return counts;
}

/// Probabilities softmax(x / τ) restricted to `kept` (renormalised), 0 elsewhere.
std::vector<double> restricted_softmax(const std::vector<double>& x, double temperature, const std::vector<int>& kept) {
  std::vector<double> p(x.size(), 0.0);
  double m = neg_inf;
  for (int j : kept) m = std::max(m, x[static_cast<std::size_t>(j)] / temperature);
  double s = 0;
  for (int j : kept) s += std::exp(x[static_cast<std::size_t>(j)] / temperature - m);
  for (int j : kept) p[static_cast<std::size_t>(j)] = std::exp(x[static_cast<std::size_t>(j)] / temperature - m) / s;
  return p;
}

/// Pearson's statistic over the categories with p > 0; categories with p = 0 must have no draws.
void check_distribution(const std::vector<std::int64_t>& counts, const std::vector<double>& p) {
  std::int64_t n = 0;
  for (auto c : counts) n += c;
  double stat = 0;
  int categories = 0;
  for (std::size_t j = 0; j < p.size(); ++j) {
    if (p[j] == 0.0) {
      CHECK_MESSAGE(counts[j] == 0, "token " << j << " has probability 0 but was drawn " << counts[j] << " times");
      continue;
    }
    const double expected = p[j] * static_cast<double>(n);
    const double d = static_cast<double>(counts[j]) - expected;
    stat += d * d / expected;
    ++categories;
  }
  if (categories < 2) return;
  const double limit = chi_square_quantile(categories - 1, alpha);
  CHECK_MESSAGE(stat < limit, "chi-square " << stat << " over " << categories << " categories, limit " << limit);
}

std::vector<double> logs(const std::vector<double>& p) {
  std::vector<double> x;
  for (double v : p) x.push_back(v > 0 ? std::log(v) : neg_inf);
  return x;
}

}  // namespace

TEST_CASE("sampler: the chi-square threshold is the tabulated quantile") {
  // Tables: chi2.ppf(0.9999, 3) = 21.108, chi2.ppf(0.9999, 9) = 33.720.
  CHECK(chi_square_quantile(3, alpha) == doctest::Approx(21.108).epsilon(1e-4));
  CHECK(chi_square_quantile(9, alpha) == doctest::Approx(33.720).epsilon(1e-4));
  CHECK(chi_square_quantile(1, 0.05) == doctest::Approx(3.841).epsilon(1e-3));
}

TEST_CASE_TEMPLATE("sampler: greedy is the argmax with the lowest id on ties, and draws nothing", T, float, double) {
  const std::vector<T> x{0.5, 2.0, -1.0, 2.0, 1.0, -std::numeric_limits<T>::infinity(), 3.0, 3.0};
  auto gens = generators(2, 7);
  const auto before = gens[0].state();
  std::vector<rlhf::token_id> tokens(2);
  std::vector<T> logp(2);
  rlhf::sample_tokens(rlhf::cpu, view(x, 2, 4), gens, rlhf::test::vec(tokens), rlhf::test::vec(logp),
                      {.temperature = 0.5, .greedy = true});
  CHECK(tokens[0] == 1);
  CHECK(tokens[1] == 2);
  CHECK(gens[0].state() == before);
  // logp at the temperature: z = x / 0.5 over the full row.
  const double lse0 = std::log(std::exp(1.0) + std::exp(4.0) + std::exp(-2.0) + std::exp(4.0));
  RLHF_CHECK_SCALAR(logp[0], 4.0 - lse0, rlhf::test::golden_tolerance<T>());
  const double lse1 = std::log(std::exp(2.0) + std::exp(6.0) + std::exp(6.0));
  RLHF_CHECK_SCALAR(logp[1], 6.0 - lse1, rlhf::test::golden_tolerance<T>());
}

TEST_CASE_TEMPLATE("sampler: plain sampling follows softmax(x / temperature)", T, float, double) {
  const std::vector<double> x{0.3, -1.2, 2.0, 0.0, 1.1, -0.4};
  for (double temperature : {1.0, 0.6, 2.5}) {
    CAPTURE(temperature);
    const auto counts = draw_counts<T>(x, 20000, 11, {.temperature = temperature});
    check_distribution(counts, restricted_softmax(x, temperature, {0, 1, 2, 3, 4, 5}));
  }
}

TEST_CASE("sampler: a sampler that ignores the temperature fails the chi-square test") {
  // The test's power: draws at τ = 1 judged against τ = 0.6 are rejected.
  const std::vector<double> x{0.3, -1.2, 2.0, 0.0, 1.1, -0.4};
  const auto counts = draw_counts<double>(x, 20000, 11, {.temperature = 1.0});
  const auto p = restricted_softmax(x, 0.6, {0, 1, 2, 3, 4, 5});
  double stat = 0;
  for (std::size_t j = 0; j < p.size(); ++j) {
    const double e = p[j] * 20000.0, d = static_cast<double>(counts[j]) - e;
    stat += d * d / e;
  }
  CHECK(stat > chi_square_quantile(5, alpha));
}

TEST_CASE("sampler: -inf logits are never sampled") {
  const std::vector<double> x{neg_inf, 0.0, neg_inf, -30.0, 1.0, neg_inf};
  for (rlhf::sampling_options o : {rlhf::sampling_options{}, {.temperature = 5.0}, {.top_k = 5}, {.top_p = 0.999999}}) {
    const auto counts = draw_counts<double>(x, 4000, 3, o);
    CHECK(counts[0] == 0);
    CHECK(counts[2] == 0);
    CHECK(counts[5] == 0);
  }
  // Every finite logit but one is far below: still only finite ids, even at a high temperature.
  const std::vector<double> y{neg_inf, neg_inf, 0.0};
  CHECK(draw_counts<float>(y, 1000, 4, {.temperature = 100.0})[2] == 1000);
}

TEST_CASE("sampler: top-k keeps the k most probable tokens, renormalised") {
  const std::vector<double> x{0.3, -1.2, 2.0, 0.0, 1.1, -0.4, 0.9};
  const auto counts = draw_counts<double>(x, 20000, 21, {.temperature = 0.8, .top_k = 3});
  check_distribution(counts, restricted_softmax(x, 0.8, {2, 4, 6}));
  // k ≥ V and k = 0 are both "off".
  check_distribution(draw_counts<double>(x, 20000, 22, {.top_k = 7}), restricted_softmax(x, 1.0, {0, 1, 2, 3, 4, 5, 6}));
  check_distribution(draw_counts<double>(x, 20000, 22, {.top_k = 100}), restricted_softmax(x, 1.0, {0, 1, 2, 3, 4, 5, 6}));
}

TEST_CASE("sampler: top-k ties at the k-th value keep the lowest ids") {
  // Four tokens share the 2nd-largest logit; k = 3 keeps id 5 and the two lowest of {1, 2, 4, 6}.
  const std::vector<double> x{0.0, 1.0, 1.0, -2.0, 1.0, 3.0, 1.0};
  const auto counts = draw_counts<double>(x, 20000, 31, {.top_k = 3});
  check_distribution(counts, restricted_softmax(x, 1.0, {5, 1, 2}));
  // k = 1 is greedy-like: the single most probable token (lowest id among equals).
  const std::vector<double> y{1.0, 3.0, 3.0};
  CHECK(draw_counts<double>(y, 500, 32, {.top_k = 1})[1] == 500);
}

TEST_CASE("sampler: top-p keeps the smallest prefix whose mass reaches p") {
  const std::vector<double> p{0.05, 0.5, 0.3, 0.15};
  const auto x = logs(p);
  // Sorted: 0.5 (id 1), 0.3 (id 2), 0.15 (id 3), 0.05 (id 0).
  check_distribution(draw_counts<double>(x, 20000, 41, {.top_p = 0.45}), restricted_softmax(x, 1.0, {1}));
  check_distribution(draw_counts<double>(x, 20000, 42, {.top_p = 0.79}), restricted_softmax(x, 1.0, {1, 2}));
  check_distribution(draw_counts<double>(x, 20000, 43, {.top_p = 0.81}), restricted_softmax(x, 1.0, {1, 2, 3}));
  check_distribution(draw_counts<double>(x, 20000, 44, {.top_p = 0.96}), restricted_softmax(x, 1.0, {0, 1, 2, 3}));
  // At least one token however small p is.
  CHECK(draw_counts<double>(x, 500, 45, {.top_p = 1e-9})[1] == 500);
}

TEST_CASE("sampler: top-p ties at the boundary are resolved by token id") {
  // 0.4 then three tokens of 0.2: p = 0.5 needs one of them, the lowest id (1) is kept.
  const std::vector<double> p{0.4, 0.2, 0.2, 0.2};
  check_distribution(draw_counts<double>(logs(p), 20000, 51, {.top_p = 0.5}), restricted_softmax(logs(p), 1.0, {0, 1}));
  const std::vector<double> q{0.2, 0.2, 0.4, 0.2};
  check_distribution(draw_counts<double>(logs(q), 20000, 52, {.top_p = 0.7}), restricted_softmax(logs(q), 1.0, {2, 0, 1}));
}

TEST_CASE("sampler: top-p sees the distribution renormalised by top-k, after the temperature") {
  // Top-2 renormalised: 0.4 / 0.7 = 0.571 ≥ 0.5 keeps only id 0 (without the renormalisation
  // 0.4 < 0.5 would keep two).
  const auto x = logs({0.4, 0.3, 0.2, 0.1});
  CHECK(draw_counts<double>(x, 1000, 61, {.top_k = 2, .top_p = 0.5})[0] == 1000);
  // Temperature first: at τ = 0.25 the top token has mass 0.4⁴ / Σ p⁴ = 0.72 ≥ 0.7.
  CHECK(draw_counts<double>(x, 1000, 62, {.temperature = 0.25, .top_p = 0.7})[0] == 1000);
  check_distribution(draw_counts<double>(x, 20000, 63, {.temperature = 1.0, .top_p = 0.69}),
                     restricted_softmax(x, 1.0, {0, 1}));
}

TEST_CASE_TEMPLATE("sampler: logp is log softmax(x / temperature) over the full vocabulary", T, float, double) {
  const std::size_t rows = 64;
  const std::vector<double> x{0.3, -1.2, 2.0, 0.0, 1.1, neg_inf, 0.9};
  std::vector<T> logits;
  for (std::size_t i = 0; i < rows; ++i)
    for (double v : x) logits.push_back(static_cast<T>(v));
  for (rlhf::sampling_options o : {rlhf::sampling_options{.temperature = 0.7}, {.temperature = 1.3, .top_k = 2},
                                   {.temperature = 0.9, .top_p = 0.6}, {.temperature = 2.0, .greedy = true}}) {
    auto gens = generators(rows, 5);
    std::vector<rlhf::token_id> tokens(rows);
    std::vector<T> logp(rows);
    rlhf::sample_tokens(rlhf::cpu, view(std::as_const(logits), static_cast<std::ptrdiff_t>(rows), 7), gens,
                        rlhf::test::vec(tokens), rlhf::test::vec(logp), o);
    const auto full = restricted_softmax(x, o.temperature, {0, 1, 2, 3, 4, 6});
    std::vector<double> expected;
    for (auto t : tokens) expected.push_back(std::log(full[static_cast<std::size_t>(t)]));
    RLHF_CHECK_CLOSE(logp, expected, (rlhf::test::tolerance{.rtol = sizeof(T) == 4 ? 1e-6 : 1e-12, .atol = 1e-12}));
  }
}

TEST_CASE("sampler: row b depends only on its generator: batch size, threads, reruns") {
  const std::ptrdiff_t rows = 40, n_vocab = 50;
  std::vector<float> logits;
  rlhf::rng init{{.seed = 99}};
  for (std::ptrdiff_t i = 0; i < rows * n_vocab; ++i) logits.push_back(init.normal<float>());
  const rlhf::sampling_options o{.temperature = 0.9, .top_k = 20, .top_p = 0.9};
  auto run = [&](std::ptrdiff_t n, int threads) {
    auto gens = generators(static_cast<std::size_t>(n), 1234);
    std::vector<rlhf::token_id> tokens(static_cast<std::size_t>(n));
    std::vector<float> logp(static_cast<std::size_t>(n));
    rlhf::sample_tokens(rlhf::cpu_backend{.threads = threads}, rlhf::matrix_view<const float>(logits.data(), n, n_vocab),
                        gens, rlhf::test::vec(tokens), rlhf::test::vec(logp), o);
    return std::pair{tokens, gens};
  };
  const auto [all, gens_all] = run(rows, 1);
  const auto [some, gens_some] = run(7, 1);
  const auto [threaded, gens_threaded] = run(rows, 2);
  const auto [again, gens_again] = run(rows, 1);
  for (std::size_t b = 0; b < 7; ++b) CHECK(some[b] == all[b]);
  CHECK(threaded == all);
  CHECK(again == all);
  for (std::size_t b = 0; b < static_cast<std::size_t>(rows); ++b) {
    CHECK(gens_threaded[b].state() == gens_all[b].state());
    CHECK(gens_all[b].state().counter == 1);  // one uniform double a sampled row
  }
  // Not all rows equal (the streams differ).
  CHECK(std::count(all.begin(), all.end(), all[0]) < rows);
  // The next call continues each stream: a different draw, and reproducible from the state.
  auto gens_next = gens_all;
  std::vector<rlhf::token_id> t1(rows), t2(rows);
  rlhf::sample_tokens(rlhf::cpu, rlhf::matrix_view<const float>(logits.data(), rows, n_vocab), gens_next,
                      rlhf::test::vec(t1), rlhf::vector_view<float>{}, o);
  auto gens_replay = gens_all;
  rlhf::sample_tokens(rlhf::cpu, rlhf::matrix_view<const float>(logits.data(), rows, n_vocab), gens_replay,
                      rlhf::test::vec(t2), rlhf::vector_view<float>{}, o);
  CHECK(t1 == t2);
  CHECK(t1 != all);
}

TEST_CASE("sampler: bad arguments throw invalid_argument naming the function and values") {
  std::vector<double> x{0.0, 1.0, 2.0, 3.0, 4.0, 5.0};
  auto gens = generators(2, 1);
  std::vector<rlhf::token_id> tokens(2);
  std::vector<double> logp(2);
  auto call = [&](const rlhf::sampling_options& o) {
    rlhf::sample_tokens(rlhf::cpu, view(std::as_const(x), 2, 3), gens, rlhf::test::vec(tokens), rlhf::test::vec(logp), o);
  };
  auto message = [&](const rlhf::sampling_options& o) -> std::string {
    try {
      call(o);
    } catch (const rlhf::invalid_argument& e) {
      return e.what();
    }
    return "no exception";
  };
  CHECK(message({.temperature = 0.0}) == "rlhf::sample_tokens(): temperature must be positive and finite, got 0");
  CHECK(message({.temperature = -1.0}).find("got -1") != std::string::npos);
  CHECK(message({.temperature = std::nan("")}).find("temperature") != std::string::npos);
  CHECK(message({.top_k = -1}) == "rlhf::sample_tokens(): top_k must be >= 0 (0 = off), got -1");
  CHECK(message({.top_p = 0.0}) == "rlhf::sample_tokens(): top_p must be in (0, 1] (1 = off), got 0");
  CHECK(message({.top_p = 1.5}).find("got 1.5") != std::string::npos);
  CHECK(message({}) == "no exception");

  auto one_gen = generators(1, 1);
  CHECK_THROWS_WITH_AS(rlhf::sample_tokens(rlhf::cpu, view(std::as_const(x), 2, 3), one_gen, rlhf::test::vec(tokens),
                                           rlhf::test::vec(logp)),
                       "rlhf::sample_tokens(): generators has 1 entries but logits has 2 rows", rlhf::invalid_argument);
  std::vector<rlhf::token_id> three(3);
  CHECK_THROWS_WITH_AS(rlhf::sample_tokens(rlhf::cpu, view(std::as_const(x), 2, 3), gens, rlhf::test::vec(three),
                                           rlhf::test::vec(logp)),
                       "rlhf::sample_tokens(): tokens is 3 but the number of logits rows is 2", rlhf::invalid_argument);
  std::vector<double> one(1);
  CHECK_THROWS_AS(rlhf::sample_tokens(rlhf::cpu, view(std::as_const(x), 2, 3), gens, rlhf::test::vec(tokens), rlhf::test::vec(one)),
                  rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::sample_tokens(rlhf::cpu, rlhf::matrix_view<const double>{}, std::span<rlhf::rng>{},
                                           rlhf::vector_view<rlhf::token_id>{}, rlhf::vector_view<double>{}),
                       "rlhf::sample_tokens(): logits is empty (0x0)", rlhf::invalid_argument);

  tokens = {-7, -7};
  x[4] = std::nan("");
  CHECK_THROWS_WITH_AS(call({}), "rlhf::sample_tokens(): logits(1, 1) is nan; logits must be finite or -inf",
                       rlhf::invalid_argument);
  x[4] = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH_AS(call({}), "rlhf::sample_tokens(): logits(1, 1) is inf; logits must be finite or -inf",
                       rlhf::invalid_argument);
  x[3] = x[4] = x[5] = neg_inf;
  CHECK_THROWS_WITH_AS(call({.greedy = true}), "rlhf::sample_tokens(): row 1 of logits is all -inf: no token can be sampled",
                       rlhf::invalid_argument);
  CHECK(tokens == std::vector<rlhf::token_id>{-7, -7});  // nothing written
}
