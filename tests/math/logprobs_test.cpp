// tests/math/logprobs_test.cpp — the online-softmax and KL states of <rlhf/math/logprobs.hpp>:
// element-by-element pushes, merges in any split and order, −∞ elements, and the per-element
// gradient formulas against finite differences of the finalised values.
#include <rlhf/math/logprobs.hpp>

#include "support/finite_difference.hpp"
#include "support/random.hpp"
#include "support/tolerances.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

namespace {
using namespace rlhf::math;
using rlhf::test::tolerance;
const double ninf = -std::numeric_limits<double>::infinity();

softmax_state<double> push_all(const std::vector<double>& z, std::size_t begin, std::size_t end) {
  softmax_state<double> s;
  for (std::size_t j = begin; j < end; ++j) s = softmax_push(s, z[j]);
  return s;
}
double lse_of(const std::vector<double>& z) {
  double m = ninf;
  for (double v : z) m = std::fmax(m, v);
  double s = 0;
  for (double v : z) s += std::exp(v - m);
  return m + std::log(s);
}
double entropy_of(const std::vector<double>& z) {
  const double lse = lse_of(z);
  double h = 0;
  for (double v : z)
    if (v != ninf) h -= std::exp(v - lse) * (v - lse);
  return h;
}
}  // namespace

TEST_CASE("softmax_push / combine: lse and entropy of the definition, for any split") {
  auto z = rlhf::test::normal_vector<double>(40, 3, 4.0);
  z[7] = ninf;
  z[20] = 1e4;  // a new maximum in the middle rescales what came before
  z[21] = -1e4;
  const auto whole = push_all(z, 0, z.size());
  RLHF_CHECK_SCALAR(softmax_logsumexp(whole), lse_of(z), (tolerance{.rtol = 1e-15}));
  RLHF_CHECK_SCALAR(softmax_entropy(whole), entropy_of(z), (tolerance{.rtol = 1e-12, .atol = 1e-15}));
  for (std::size_t cut : {0u, 1u, 7u, 8u, 20u, 21u, 39u, 40u}) {
    CAPTURE(cut);
    const auto a = push_all(z, 0, cut), b = push_all(z, cut, z.size());
    for (const auto& m : {softmax_combine(a, b), softmax_combine(b, a)}) {
      RLHF_CHECK_SCALAR(softmax_logsumexp(m), softmax_logsumexp(whole), (tolerance{.rtol = 1e-15}));
      RLHF_CHECK_SCALAR(softmax_entropy(m), softmax_entropy(whole), (tolerance{.rtol = 1e-12, .atol = 1e-15}));
    }
  }
}

TEST_CASE("softmax state: empty, all −∞, one element") {
  const softmax_state<double> empty;
  CHECK(softmax_logsumexp(empty) == ninf);
  CHECK(softmax_entropy(empty) == 0.0);
  const auto all_ninf = softmax_push(softmax_push(empty, ninf), ninf);
  CHECK(softmax_logsumexp(all_ninf) == ninf);
  CHECK(softmax_entropy(all_ninf) == 0.0);
  const auto one = softmax_push(all_ninf, 2.5);
  CHECK(softmax_logsumexp(one) == 2.5);
  CHECK(softmax_entropy(one) == 0.0);
  CHECK(softmax_logsumexp(softmax_combine(empty, one)) == 2.5);
  const auto p = softmax_probability(ninf, 0.0);
  CHECK(p.p == 0.0);
  CHECK(p.p_log_p == 0.0);
}

TEST_CASE("kl_push / kl_combine: KL(p‖q) of the definition, for any split") {
  auto z = rlhf::test::normal_vector<double>(33, 5, 2.0);
  auto w = rlhf::test::normal_vector<double>(33, 6, 2.0);
  z[4] = ninf;  // p = 0: no term
  w[9] = 30.0;  // a large reference logit
  const double lz = lse_of(z), lw = lse_of(w);
  double ref = 0;
  for (std::size_t j = 0; j < z.size(); ++j)
    if (z[j] != ninf) ref += std::exp(z[j] - lz) * ((z[j] - lz) - (w[j] - lw));
  kl_state<double> whole;
  for (std::size_t j = 0; j < z.size(); ++j) whole = kl_push(whole, z[j], w[j]);
  RLHF_CHECK_SCALAR(kl_value(whole), ref, (tolerance{.rtol = 1e-12}));
  for (std::size_t cut : {0u, 3u, 5u, 16u, 33u}) {
    kl_state<double> a, b;
    for (std::size_t j = 0; j < cut; ++j) a = kl_push(a, z[j], w[j]);
    for (std::size_t j = cut; j < z.size(); ++j) b = kl_push(b, z[j], w[j]);
    RLHF_CHECK_SCALAR(kl_value(kl_combine(b, a)), ref, (tolerance{.rtol = 1e-12}));
  }
  // q = 0 where p > 0: +∞.
  kl_state<double> inf_state;
  inf_state = kl_push(inf_state, 0.0, 0.0);
  inf_state = kl_push(inf_state, 1.0, ninf);
  CHECK(kl_value(inf_state) == std::numeric_limits<double>::infinity());
}

TEST_CASE("logprob_entropy_grad and kl_grad: finite differences of the finalised values") {
  std::vector<double> z = rlhf::test::normal_vector<double>(9, 8, 1.5);
  const std::vector<double> w = rlhf::test::normal_vector<double>(9, 9, 1.5);
  const std::size_t label = 4;
  const double g = 0.8, gh = -1.3, gk = 0.6;
  const auto f = [&] {
    const auto s = push_all(z, 0, z.size());
    kl_state<double> k;
    for (std::size_t j = 0; j < z.size(); ++j) k = kl_push(k, z[j], w[j]);
    return g * (z[label] - softmax_logsumexp(s)) + gh * softmax_entropy(s) + gk * kl_value(k);
  };
  const auto numeric = rlhf::test::numeric_gradient(f, z);
  const auto s = push_all(z, 0, z.size());
  kl_state<double> k;
  for (std::size_t j = 0; j < z.size(); ++j) k = kl_push(k, z[j], w[j]);
  std::vector<double> analytic;
  for (std::size_t j = 0; j < z.size(); ++j)
    analytic.push_back(logprob_entropy_grad(z[j], softmax_logsumexp(s), j == label, g, gh, softmax_entropy(s)) +
                       kl_grad(z[j], softmax_logsumexp(k.policy), w[j], softmax_logsumexp(k.ref), kl_value(k), gk));
  RLHF_CHECK_CLOSE(analytic, numeric, (tolerance{.rtol = 1e-6, .atol = 1e-8}));
}
