// tests/logprobs_test.cpp — rlhf::token_logprobs / token_logprobs_backward / full_kl_from_logits
// (+ backward): the golden vectors of TRL (v0.11.4 and HEAD), OpenRLHF and DeepSpeed-Chat, a
// naive double-precision reference, finite differences, odd sizes, strided views, in-place
// gradients, thread counts and argument errors.
#include <rlhf/logprobs.hpp>

#include "support/finite_difference.hpp"
#include "support/golden.hpp"
#include "support/random.hpp"
#include "support/tolerances.hpp"
#include "support/views.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <string>
#include <vector>

namespace {

using rlhf::token_id;
using namespace rlhf::test;

constexpr const char* golden = "logprobs_entropy.json";
const double ninf = -std::numeric_limits<double>::infinity();

/// Naive reference for one row in long double: lse, entropy, probabilities.
struct naive_row {
  double lse = 0, entropy = 0;
  std::vector<double> p;
};
naive_row naive(const double* x, std::ptrdiff_t n, double tau) {
  long double m = -INFINITY;
  for (std::ptrdiff_t j = 0; j < n; ++j) m = std::max<long double>(m, x[j] / tau);
  long double s = 0;
  for (std::ptrdiff_t j = 0; j < n; ++j) s += std::exp(static_cast<long double>(x[j]) / tau - m);
  naive_row r;
  const long double lse = m + std::log(s);
  r.lse = static_cast<double>(lse);
  long double h = 0;
  for (std::ptrdiff_t j = 0; j < n; ++j) {
    const long double lp = static_cast<long double>(x[j]) / tau - lse;
    const long double p = std::exp(lp);
    r.p.push_back(static_cast<double>(p));
    if (p > 0) h -= p * lp;
  }
  r.entropy = static_cast<double>(h);
  return r;
}

template <class T>
std::vector<T> cast(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}
std::vector<token_id> to_labels(const array& a) {
  std::vector<token_id> l;
  for (double v : a.values) l.push_back(static_cast<token_id>(v));
  return l;
}
template <class T>
std::vector<double> widen(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

struct forward_result {
  std::vector<double> logp, entropy, lse;
};

template <class T>
forward_result forward(const std::vector<T>& logits, const std::vector<token_id>& labels, std::ptrdiff_t B,
                       std::ptrdiff_t Tn, std::ptrdiff_t V, double tau = 1.0, int threads = 1) {
  std::vector<T> logp(static_cast<std::size_t>(B * Tn)), h(logp.size()), lse(logp.size());
  rlhf::token_logprobs(rlhf::cpu_backend{.threads = threads}, ccube(logits, B, Tn, V), cview(labels, B, Tn),
                       {.logp = view(logp, B, Tn), .entropy = view(h, B, Tn), .logsumexp = view(lse, B, Tn)},
                       {.temperature = tau});
  return {widen(logp), widen(h), widen(lse)};
}

template <class T>
std::vector<double> backward(const std::vector<T>& logits, const std::vector<token_id>& labels, std::ptrdiff_t B,
                             std::ptrdiff_t Tn, std::ptrdiff_t V, const std::vector<T>& g_logp,
                             const std::vector<T>& g_h, double tau = 1.0, int threads = 1) {
  std::vector<T> logp(static_cast<std::size_t>(B * Tn)), lse(logp.size());
  rlhf::token_logprobs(rlhf::cpu, ccube(logits, B, Tn, V), cview(labels, B, Tn),
                       {.logp = view(logp, B, Tn), .logsumexp = view(lse, B, Tn)}, {.temperature = tau});
  std::vector<T> d(logits.size());
  rlhf::token_logprobs_backward(rlhf::cpu_backend{.threads = threads}, ccube(logits, B, Tn, V), cview(labels, B, Tn),
                                cview(lse, B, Tn), g_logp.empty() ? rlhf::matrix_view<const T>{} : cview(g_logp, B, Tn),
                                g_h.empty() ? rlhf::matrix_view<const T>{} : cview(g_h, B, Tn), cube(d, B, Tn, V),
                                {.temperature = tau});
  return widen(d);
}

}  // namespace

TEST_CASE("token_logprobs: every golden case of TRL, OpenRLHF and DeepSpeed-Chat") {
  const std::set<std::string> covered = {"random_logits_float64", "random_logits_float32",
                                         "extreme_logits_pm1e4_float64", "extreme_logits_pm1e4_float32",
                                         "neg_inf_logits_float64", "batch1", "openrlhf_temperature_0.7"};
  for (const auto& name : golden_case_names(golden)) CHECK_MESSAGE(covered.count(name) == 1, "uncovered: " << name);

  const std::vector<std::string> logprob_keys = {"trl_v0114_logprobs_from_logits", "trl_head_selective_log_softmax",
                                                 "openrlhf_log_probs_from_logits", "dschat_gather_log_probs"};
  const std::vector<std::string> entropy_keys = {"trl_v0114_entropy_from_logits", "trl_head_entropy_from_logits",
                                                 "openrlhf_compute_entropy"};

  for (const std::string name : {"random_logits_float64", "extreme_logits_pm1e4_float64", "neg_inf_logits_float64",
                                 "batch1"}) {
    CAPTURE(name);
    const auto& c = golden_case(golden, name);
    const array x = to_array(c["inputs"]["logits"]);
    const auto labels = to_labels(to_array(c["inputs"]["labels"]));
    const std::vector<double> w = to_array(c["inputs"]["upstream_weights_w"]).values;
    const std::ptrdiff_t B = x.shape[0], Tn = x.shape[1], V = x.shape[2];
    const auto r = forward(x.values, labels, B, Tn, V);
    const auto grad = backward(x.values, labels, B, Tn, V, w, {});
    const auto tol = golden_tolerance<double>();
    for (const auto& key : logprob_keys) {
      CAPTURE(key);
      RLHF_CHECK_CLOSE(r.logp, to_array(c["outputs"][key]).values, tol);
      // The gradient of Σ w·logp: a tiny absolute floor for entries that are 0 by cancellation.
      RLHF_CHECK_CLOSE(grad, to_array(c["outputs"][key + "__grad_logits_of_sum_w_times_logprobs"]).values,
                       (tolerance{.rtol = 1e-12, .atol = 1e-15}));
    }
    for (const auto& key : entropy_keys) {
      CAPTURE(key);
      const auto expected = to_array(c["outputs"][key]).values;
      for (std::size_t i = 0; i < expected.size(); ++i) {
        if (std::isnan(expected[i])) {
          // The anchors' 0·(−∞) = NaN; ours counts p = 0 terms as 0: the naive reference.
          const auto ref = naive(x.values.data() + static_cast<std::ptrdiff_t>(i) * V, V, 1.0);
          CHECK(std::isfinite(r.entropy[i]));
          RLHF_CHECK_SCALAR(r.entropy[i], ref.entropy, (tolerance{.rtol = 1e-12, .atol = 1e-15}));
        } else {
          // HEAD sums −p log p in another order: an absolute floor of a few ulp for H ≈ 0.
          RLHF_CHECK_SCALAR(r.entropy[i], expected[i], (tolerance{.rtol = 1e-12, .atol = 1e-15}));
        }
      }
    }
  }

  SUBCASE("float32 cases: within 1e-6 of the exact value, and of each anchor within its own float error") {
    for (const std::string name : {"random_logits_float32", "extreme_logits_pm1e4_float32"}) {
      CAPTURE(name);
      const auto& c = golden_case(golden, name);
      const array x = to_array(c["inputs"]["logits"]);
      const auto labels = to_labels(to_array(c["inputs"]["labels"]));
      const auto w = to_array(c["inputs"]["upstream_weights_w"]).values;
      const std::ptrdiff_t B = x.shape[0], Tn = x.shape[1], V = x.shape[2];
      // The float inputs are the float64 case's inputs rounded; "exact" = the double kernel on
      // them (itself checked at 1e-12 above).
      const auto exact = forward(x.values, labels, B, Tn, V);
      const auto exact_grad = backward(x.values, labels, B, Tn, V, w, {});
      const auto r = forward(cast<float>(x.values), labels, B, Tn, V);
      const auto grad = backward(cast<float>(x.values), labels, B, Tn, V, cast<float>(w), std::vector<float>{});
      const tolerance f{.rtol = 1e-6, .atol = 1e-12};
      RLHF_CHECK_CLOSE(r.logp, exact.logp, f);
      RLHF_CHECK_CLOSE(r.entropy, exact.entropy, (tolerance{.rtol = 1e-6, .atol = 1e-7}));
      RLHF_CHECK_CLOSE(grad, exact_grad, (tolerance{.rtol = 1e-6, .atol = 1e-7}));
      // The anchors themselves are float computations: each carries its own rounding of lse
      // (≈ 2.5e-7 absolute at lse ≈ 6), so they are matched to 1e-6 relative plus that floor.
      const tolerance anchor{.rtol = 1e-6, .atol = 3e-7};
      for (const std::string key : {"trl_v0114_logprobs_from_logits", "dschat_gather_log_probs"}) {
        CAPTURE(key);
        RLHF_CHECK_CLOSE(r.logp, to_array(c["outputs"][key]).values, anchor);
        RLHF_CHECK_CLOSE(grad, to_array(c["outputs"][key + "__grad_logits_of_sum_w_times_logprobs"]).values,
                         (tolerance{.rtol = 1e-6, .atol = 1e-7}));
      }
      // logit − logsumexp in float (TRL HEAD, OpenRLHF): at ±1e4 their lse is rounded to
      // ulp(1e4)/2 and their p is off by up to 2.5e-4 relative; ours is not (checked above).
      const bool extreme = name.find("extreme") != std::string::npos;
      for (const std::string key : {"trl_head_selective_log_softmax", "openrlhf_log_probs_from_logits"}) {
        CAPTURE(key);
        RLHF_CHECK_CLOSE(r.logp, to_array(c["outputs"][key]).values, anchor);
        RLHF_CHECK_CLOSE(grad, to_array(c["outputs"][key + "__grad_logits_of_sum_w_times_logprobs"]).values,
                         (tolerance{.rtol = extreme ? 3e-4 : 1e-6, .atol = 1e-7}));
      }
      // Entropy as logsumexp − Σ p·z in float (TRL 0.11, OpenRLHF) cancels: 1.2e-6 absolute
      // on random logits, 3e-4 relative at ±1e4. Ours keeps z relative to the row maximum.
      for (const std::string key : {"trl_v0114_entropy_from_logits", "trl_head_entropy_from_logits",
                                    "openrlhf_compute_entropy"}) {
        CAPTURE(key);
        RLHF_CHECK_CLOSE(r.entropy, to_array(c["outputs"][key]).values,
                         (tolerance{.rtol = extreme ? 4e-4 : 1e-6, .atol = 1.5e-6}));
      }
    }
  }

  SUBCASE("OpenRLHF temperature 0.7: logits divided by τ, and ours leaves the logits untouched") {
    const auto& c = golden_case(golden, "openrlhf_temperature_0.7");
    const double tau = c["params"]["temperature"].get<double>();
    const array x = to_array(c["inputs"]["logits"]);
    const auto labels = to_labels(to_array(c["inputs"]["labels"]));
    const std::ptrdiff_t B = x.shape[0], Tn = x.shape[1], V = x.shape[2];
    const std::vector<double> before = x.values;
    const auto r = forward(x.values, labels, B, Tn, V, tau);
    RLHF_CHECK_CLOSE(r.logp, to_array(c["outputs"]["openrlhf_log_probs_from_logits"]).values,
                     golden_tolerance<double>());
    CHECK(std::memcmp(before.data(), x.values.data(), before.size() * sizeof(double)) == 0);
    // OpenRLHF's caller sees logits / τ afterwards; that is the z our kernel uses.
    const auto modified = to_array(c["outputs"]["logits_after_call_were_modified_in_place"]).values;
    std::vector<double> z;
    for (double v : x.values) z.push_back(v / tau);
    RLHF_CHECK_CLOSE(z, modified, golden_tolerance<double>());
    // Float: against the double kernel on the same (rounded) inputs. A float exp is good to
    // 2 ulp, so lse carries ~2e-7 absolute error: 1e-6 relative plus that floor.
    const auto xf = cast<float>(x.values);
    const auto rf = forward(xf, labels, B, Tn, V, tau);
    RLHF_CHECK_CLOSE(rf.logp, forward(widen(xf), labels, B, Tn, V, tau).logp, (tolerance{.rtol = 1e-6, .atol = 5e-7}));
  }
}

TEST_CASE("token_logprobs: ±1e4 and −∞ logits, exact in double and 1e-6 in float; entropy never NaN") {
  const std::ptrdiff_t V = 37;
  std::vector<double> x(static_cast<std::size_t>(3 * V));
  for (std::ptrdiff_t j = 0; j < V; ++j) {
    x[static_cast<std::size_t>(j)] = (j % 3 == 0) ? 1e4 : -1e4;            // row 0: ±1e4
    x[static_cast<std::size_t>(V + j)] = j < 30 ? ninf : 0.25 * double(j);  // row 1: mostly −∞
    x[static_cast<std::size_t>(2 * V + j)] = j == 5 ? 3.0 : ninf;           // row 2: one finite logit
  }
  const std::vector<token_id> labels = {3, 31, 5};
  for (double tau : {1.0, 0.5}) {
    CAPTURE(tau);
    const auto r = forward(x, labels, 1, 3, V, tau);
    const auto rf = forward(cast<float>(x), labels, 1, 3, V, tau);
    for (std::ptrdiff_t row = 0; row < 3; ++row) {
      const auto ref = naive(x.data() + row * V, V, tau);
      const auto i = static_cast<std::size_t>(row);
      CHECK(std::isfinite(r.entropy[i]));
      CHECK(std::isfinite(rf.entropy[i]));
      RLHF_CHECK_SCALAR(r.lse[i], ref.lse, (tolerance{.rtol = 1e-15}));
      RLHF_CHECK_SCALAR(r.logp[i], x[i * V + static_cast<std::size_t>(labels[i])] / tau - ref.lse,
                        (tolerance{.rtol = 1e-15, .atol = 1e-15}));
      RLHF_CHECK_SCALAR(r.entropy[i], ref.entropy, (tolerance{.rtol = 1e-13, .atol = 1e-15}));
      RLHF_CHECK_SCALAR(rf.lse[i], ref.lse, (tolerance{.rtol = 1e-6}));
      RLHF_CHECK_SCALAR(rf.logp[i], r.logp[i], (tolerance{.rtol = 1e-6, .atol = 1e-7}));
      RLHF_CHECK_SCALAR(rf.entropy[i], ref.entropy, (tolerance{.rtol = 1e-6, .atol = 1e-7}));
    }
    // Row 2 has one finite logit: p = 1 there, logp = 0, H = 0.
    CHECK(r.logp[2] == 0.0);
    CHECK(r.entropy[2] == 0.0);
    // Gradients are finite and exactly 0 on −∞ logits, with the entropy term too.
    const std::vector<double> g = {0.5, -1.5, 2.0}, gh = {0.25, 0.75, -1.0};
    for (const auto& d : {backward(x, labels, 1, 3, V, g, gh, tau),
                          backward(cast<float>(x), labels, 1, 3, V, cast<float>(g), cast<float>(gh), tau)}) {
      for (std::size_t i = 0; i < d.size(); ++i) {
        CHECK(std::isfinite(d[i]));
        if (x[i] == ninf) CHECK(d[i] == 0.0);
      }
    }
  }
}

TEST_CASE("token_logprobs_backward: finite differences in double (logp, entropy, temperature)") {
  struct shape {
    std::ptrdiff_t B, Tn, V;
  };
  for (const shape s : {shape{1, 1, 1}, shape{1, 1, 2}, shape{2, 3, 7}, shape{1, 2, 13}, shape{3, 1, 9}}) {
    for (double tau : {1.0, 0.7, 2.5}) {
      CAPTURE(s.V);
      CAPTURE(tau);
      const std::ptrdiff_t n = s.B * s.Tn;
      std::vector<double> x = normal_vector<double>(static_cast<std::size_t>(n * s.V), 11, 2.0);
      std::vector<token_id> labels;
      for (std::ptrdiff_t i = 0; i < n; ++i) labels.push_back(static_cast<token_id>((i * 5 + 3) % s.V));
      const auto g = normal_vector<double>(static_cast<std::size_t>(n), 12);
      const auto gh = normal_vector<double>(static_cast<std::size_t>(n), 13);
      const auto f = [&] {
        const auto r = forward(x, labels, s.B, s.Tn, s.V, tau);
        double sum = 0;
        for (std::ptrdiff_t i = 0; i < n; ++i)
          sum += g[static_cast<std::size_t>(i)] * r.logp[static_cast<std::size_t>(i)] +
                 gh[static_cast<std::size_t>(i)] * r.entropy[static_cast<std::size_t>(i)];
        return sum;
      };
      const auto numeric = numeric_gradient(f, x);
      const auto analytic = backward(x, labels, s.B, s.Tn, s.V, g, gh, tau);
      RLHF_CHECK_CLOSE(analytic, numeric, (tolerance{.rtol = 1e-5, .atol = 1e-7}));
    }
  }
}

TEST_CASE("token_logprobs: odd sizes agree with the naive reference (float and double)") {
  for (std::ptrdiff_t V : {1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 2039, 2048, 2053, 4099}) {
    CAPTURE(V);
    const std::ptrdiff_t B = 2, Tn = 2;
    const auto x = normal_vector<double>(static_cast<std::size_t>(B * Tn * V), static_cast<std::uint64_t>(V), 3.0);
    std::vector<token_id> labels;
    for (std::ptrdiff_t i = 0; i < B * Tn; ++i) labels.push_back(static_cast<token_id>((i * 7 + 1) % V));
    const auto r = forward(x, labels, B, Tn, V);
    const auto xf = cast<float>(x);
    const auto rf = forward(xf, labels, B, Tn, V);
    const std::vector<double> xfd(xf.begin(), xf.end());
    for (std::ptrdiff_t i = 0; i < B * Tn; ++i) {
      const auto k = static_cast<std::size_t>(i);
      const auto ref = naive(x.data() + i * V, V, 1.0);
      RLHF_CHECK_SCALAR(r.lse[k], ref.lse, (tolerance{.rtol = 1e-14, .atol = 1e-14}));
      RLHF_CHECK_SCALAR(r.entropy[k], ref.entropy, (tolerance{.rtol = 1e-13, .atol = 1e-14}));
      const auto reff = naive(xfd.data() + i * V, V, 1.0);
      RLHF_CHECK_SCALAR(rf.lse[k], reff.lse, (tolerance{.rtol = 1e-6, .atol = 1e-7}));
      RLHF_CHECK_SCALAR(rf.logp[k], xfd[k * static_cast<std::size_t>(V) + static_cast<std::size_t>(labels[k])] - reff.lse,
                        (tolerance{.rtol = 1e-6, .atol = 1e-6}));
      RLHF_CHECK_SCALAR(rf.entropy[k], reff.entropy, (tolerance{.rtol = 1e-6, .atol = 1e-6}));
    }
    // Backward, float against double on the same inputs.
    const std::vector<double> g = {1.0, -0.5, 0.25, 2.0}, gh = {0.5, 0.5, -1.0, 0.0};
    const auto d = backward(xfd, labels, B, Tn, V, g, gh);
    const auto df = backward(xf, labels, B, Tn, V, cast<float>(g), cast<float>(gh));
    RLHF_CHECK_CLOSE(df, d, (tolerance{.rtol = 1e-5, .atol = 1e-7}));
  }
}

template <class T>
void check_strided_threads_inplace() {
  const std::ptrdiff_t B = 3, Tn = 5, V = 1031;  // V prime, not a multiple of 8
  const auto xd = normal_vector<double>(static_cast<std::size_t>(B * Tn * V), 77, 2.0);
  const std::vector<T> x(xd.begin(), xd.end());
  std::vector<token_id> labels;
  for (std::ptrdiff_t i = 0; i < B * Tn; ++i) labels.push_back(static_cast<token_id>((i * 97) % V));
  const auto g = cast<T>(normal_vector<double>(static_cast<std::size_t>(B * Tn), 5));
  const auto gh = cast<T>(normal_vector<double>(static_cast<std::size_t>(B * Tn), 6));

  const auto base = forward(x, labels, B, Tn, V);
  const auto base_grad = backward(x, labels, B, Tn, V, g, gh);

  SUBCASE("1, 2 and 3 threads: bitwise identical") {
    for (int threads : {2, 3}) {
      const auto r = forward(x, labels, B, Tn, V, 1.0, threads);
      CHECK(r.logp == base.logp);
      CHECK(r.entropy == base.entropy);
      CHECK(r.lse == base.lse);
      CHECK(backward(x, labels, B, Tn, V, g, gh, 1.0, threads) == base_grad);
    }
  }
  SUBCASE("strided views (inner stride 2, padded rows, transposed B/T) give the same bits") {
    // logits stored as [T][B][2V]: element (b, t, v) at (t·B + b)·2V + 2v.
    std::vector<T> wide(static_cast<std::size_t>(Tn * B * 2 * V), T(-99));
    for (std::ptrdiff_t b = 0; b < B; ++b)
      for (std::ptrdiff_t t = 0; t < Tn; ++t)
        for (std::ptrdiff_t v = 0; v < V; ++v)
          wide[static_cast<std::size_t>((t * B + b) * 2 * V + 2 * v)] = x[static_cast<std::size_t>((b * Tn + t) * V + v)];
    const rlhf::cube_view<const T> sv(wide.data(), {B, Tn, V}, {2 * V, B * 2 * V, 2});
    // Outputs with a column stride of 2 as well.
    std::vector<T> logp(static_cast<std::size_t>(2 * B * Tn)), h(logp.size()), lse(logp.size());
    const auto out = [&](std::vector<T>& v) { return rlhf::matrix_view<T>(v.data(), {B, Tn}, {2 * Tn, 2}); };
    rlhf::token_logprobs(rlhf::cpu, sv, cview(labels, B, Tn), {.logp = out(logp), .entropy = out(h), .logsumexp = out(lse)});
    for (std::ptrdiff_t i = 0; i < B * Tn; ++i) {
      CHECK(static_cast<double>(logp[static_cast<std::size_t>(2 * i)]) == base.logp[static_cast<std::size_t>(i)]);
      CHECK(static_cast<double>(h[static_cast<std::size_t>(2 * i)]) == base.entropy[static_cast<std::size_t>(i)]);
    }
    // Backward in place over the strided logits.
    std::vector<T> lse_c(static_cast<std::size_t>(B * Tn));
    for (std::ptrdiff_t i = 0; i < B * Tn; ++i) lse_c[static_cast<std::size_t>(i)] = lse[static_cast<std::size_t>(2 * i)];
    const rlhf::cube_view<T> sd(wide.data(), {B, Tn, V}, {2 * V, B * 2 * V, 2});
    rlhf::token_logprobs_backward(rlhf::cpu_backend{.threads = 2}, sv, cview(labels, B, Tn), cview(lse_c, B, Tn),
                                  cview(g, B, Tn), cview(gh, B, Tn), sd);
    bool same = true;
    for (std::ptrdiff_t b = 0; b < B; ++b)
      for (std::ptrdiff_t t = 0; t < Tn; ++t)
        for (std::ptrdiff_t v = 0; v < V; ++v)
          same = same && static_cast<double>(sd(b, t, v)) == base_grad[static_cast<std::size_t>((b * Tn + t) * V + v)];
    CHECK(same);
    for (std::size_t i = 1; i < wide.size(); i += 2) REQUIRE(wide[i] == T(-99));  // gaps untouched
  }
  SUBCASE("in place: dlogits = the logits view") {
    std::vector<T> buf = x;
    std::vector<T> lse(static_cast<std::size_t>(B * Tn));
    rlhf::token_logprobs(rlhf::cpu, ccube(buf, B, Tn, V), cview(labels, B, Tn), {.logp = {}, .logsumexp = view(lse, B, Tn)});
    rlhf::token_logprobs_backward(rlhf::cpu, ccube(buf, B, Tn, V), cview(labels, B, Tn), cview(lse, B, Tn),
                                  cview(g, B, Tn), cview(gh, B, Tn), cube(buf, B, Tn, V));
    CHECK(widen(buf) == base_grad);
  }
}

TEST_CASE("token_logprobs: threads, strided views and in-place gradients (float)") { check_strided_threads_inplace<float>(); }
TEST_CASE("token_logprobs: threads, strided views and in-place gradients (double)") { check_strided_threads_inplace<double>(); }

TEST_CASE("full_kl_from_logits: against the definition, its gradient by finite differences, edge cases") {
  const std::ptrdiff_t B = 2, Tn = 2;
  for (std::ptrdiff_t V : {1, 3, 7, 13, 2053}) {
    for (double tau : {1.0, 0.6}) {
      CAPTURE(V);
      CAPTURE(tau);
      const std::size_t n = static_cast<std::size_t>(B * Tn * V);
      std::vector<double> x = normal_vector<double>(n, 3, 2.0);
      const std::vector<double> y = normal_vector<double>(n, 4, 2.0);
      std::vector<double> kl(static_cast<std::size_t>(B * Tn));
      rlhf::full_kl_from_logits(rlhf::cpu, ccube(x, B, Tn, V), ccube(y, B, Tn, V), view(kl, B, Tn), {.temperature = tau});
      for (std::ptrdiff_t i = 0; i < B * Tn; ++i) {
        const auto p = naive(x.data() + i * V, V, tau), q = naive(y.data() + i * V, V, tau);
        double ref = 0;
        for (std::ptrdiff_t j = 0; j < V; ++j)
          ref += p.p[static_cast<std::size_t>(j)] *
                 ((x[static_cast<std::size_t>(i * V + j)] / tau - p.lse) - (y[static_cast<std::size_t>(i * V + j)] / tau - q.lse));
        RLHF_CHECK_SCALAR(kl[static_cast<std::size_t>(i)], ref, (tolerance{.rtol = 1e-12, .atol = 1e-14}));
        CHECK(kl[static_cast<std::size_t>(i)] >= -1e-15);
      }
      // Float against double on the same rounded inputs (KL is a difference of O(1) terms:
      // an absolute floor).
      const std::vector<float> xf = cast<float>(x), yf = cast<float>(y);
      std::vector<float> klf(kl.size());
      std::vector<double> kl_rounded(kl.size());
      rlhf::full_kl_from_logits(rlhf::cpu, ccube(xf, B, Tn, V), ccube(yf, B, Tn, V), view(klf, B, Tn), {.temperature = tau});
      rlhf::full_kl_from_logits(rlhf::cpu, ccube(widen(xf), B, Tn, V), ccube(widen(yf), B, Tn, V), view(kl_rounded, B, Tn),
                                {.temperature = tau});
      RLHF_CHECK_CLOSE(klf, kl_rounded, (tolerance{.rtol = 1e-6, .atol = 1e-6}));

      if (V > 100) continue;
      const auto gk = normal_vector<double>(static_cast<std::size_t>(B * Tn), 9);
      const auto f = [&] {
        std::vector<double> k(static_cast<std::size_t>(B * Tn));
        rlhf::full_kl_from_logits(rlhf::cpu, ccube(x, B, Tn, V), ccube(y, B, Tn, V), view(k, B, Tn), {.temperature = tau});
        double s = 0;
        for (std::size_t i = 0; i < k.size(); ++i) s += gk[i] * k[i];
        return s;
      };
      const auto numeric = numeric_gradient(f, x);
      std::vector<double> d(n);
      rlhf::full_kl_from_logits_backward(rlhf::cpu, ccube(x, B, Tn, V), ccube(y, B, Tn, V), cview(gk, B, Tn),
                                         cube(d, B, Tn, V), {.temperature = tau});
      RLHF_CHECK_CLOSE(d, numeric, (tolerance{.rtol = 1e-5, .atol = 1e-7}));
      // Float gradient, in place, against the double one on the same rounded inputs.
      std::vector<float> buf = xf;
      const auto gkf = cast<float>(gk);
      rlhf::full_kl_from_logits_backward(rlhf::cpu, ccube(buf, B, Tn, V), ccube(yf, B, Tn, V), cview(gkf, B, Tn),
                                         cube(buf, B, Tn, V), {.temperature = tau});
      std::vector<double> d_rounded(n);
      rlhf::full_kl_from_logits_backward(rlhf::cpu, ccube(widen(xf), B, Tn, V), ccube(widen(yf), B, Tn, V),
                                         cview(widen(gkf), B, Tn), cube(d_rounded, B, Tn, V), {.temperature = tau});
      RLHF_CHECK_CLOSE(buf, d_rounded, (tolerance{.rtol = 1e-5, .atol = 1e-6}));
    }
  }

  SUBCASE("same logits: KL = 0; −∞ in the policy: 0 terms; −∞ in the reference where p > 0: +∞") {
    const std::ptrdiff_t V = 19;
    std::vector<double> x = normal_vector<double>(static_cast<std::size_t>(3 * V), 21);
    std::vector<double> y = x;
    x[static_cast<std::size_t>(V + 2)] = ninf;             // row 1: policy gives 0 to token 2 ...
    y[static_cast<std::size_t>(V + 2)] = ninf;             // ... and so does the reference
    y[static_cast<std::size_t>(2 * V + 4)] = ninf;         // row 2: reference 0 where p > 0
    for (const bool as_float : {false, true}) {
      CAPTURE(as_float);
      std::vector<double> kl(3);
      if (as_float) {
        std::vector<float> k(3);
        rlhf::full_kl_from_logits(rlhf::cpu, ccube(cast<float>(x), 1, 3, V), ccube(cast<float>(y), 1, 3, V), view(k, 1, 3));
        kl = widen(k);
      } else {
        rlhf::full_kl_from_logits(rlhf::cpu, ccube(x, 1, 3, V), ccube(y, 1, 3, V), view(kl, 1, 3));
      }
      CHECK(std::fabs(kl[0]) < 1e-6);
      CHECK(std::fabs(kl[1]) < 1e-6);
      CHECK(kl[2] == std::numeric_limits<double>::infinity());
    }
  }

  SUBCASE("with labels: logp, entropy and lse from the same pass equal token_logprobs") {
    const std::ptrdiff_t V = 1031;
    for (const bool as_float : {false, true}) {
      const auto xd = normal_vector<double>(static_cast<std::size_t>(B * Tn * V), 31, 2.0);
      const auto yd = normal_vector<double>(xd.size(), 32, 2.0);
      const std::vector<token_id> labels = {0, 5, 1030, 77};
      const auto run = [&](auto zero) {
        using T = decltype(zero);
        const std::vector<T> x(xd.begin(), xd.end()), y(yd.begin(), yd.end());
        std::vector<T> kl(4), logp(4), h(4), lse(4);
        rlhf::full_kl_from_logits(rlhf::cpu, ccube(x, B, Tn, V), ccube(y, B, Tn, V), cview(labels, B, Tn), view(kl, B, Tn),
                                  {.logp = view(logp, B, Tn), .entropy = view(h, B, Tn), .logsumexp = view(lse, B, Tn)},
                                  {.temperature = 0.9});
        const auto r = forward(x, labels, B, Tn, V, 0.9);
        RLHF_CHECK_CLOSE(widen(logp), r.logp, (tolerance{.rtol = 1e-6, .atol = 1e-7}));
        RLHF_CHECK_CLOSE(widen(h), r.entropy, (tolerance{.rtol = 1e-6, .atol = 1e-7}));
        RLHF_CHECK_CLOSE(widen(lse), r.lse, (tolerance{.rtol = 1e-6, .atol = 1e-7}));
      };
      if (as_float)
        run(0.0f);
      else
        run(0.0);
    }
  }
}

TEST_CASE("token_logprobs: argument errors name the function and the values") {
  const std::ptrdiff_t V = 5;
  std::vector<float> x(static_cast<std::size_t>(2 * 3 * V), 0.0f);
  std::vector<token_id> labels = {0, 1, 2, 3, 4, 0};
  std::vector<float> logp(6), lse(6), small(4);
  const auto call = [&](const std::vector<token_id>& l, double tau = 1.0) {
    rlhf::token_logprobs(rlhf::cpu, ccube(x, 2, 3, V), cview(l, 2, 3), {.logp = view(logp, 2, 3)}, {.temperature = tau});
  };
  CHECK_NOTHROW(call(labels));
  auto bad = labels;
  bad[4] = 5;
  CHECK_THROWS_WITH_AS(call(bad), "rlhf::token_logprobs(): labels(1, 1) = 5 is outside [0, 5)", rlhf::invalid_argument);
  bad[4] = -100;
  CHECK_THROWS_WITH_AS(call(bad), "rlhf::token_logprobs(): labels(1, 1) = -100 is outside [0, 5)", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(call(labels, 0.0), "rlhf::token_logprobs(): temperature must be finite and > 0, got 0",
                       rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(call(labels, -1.0), "rlhf::token_logprobs(): temperature must be finite and > 0, got -1",
                       rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::token_logprobs(rlhf::cpu, ccube(x, 2, 3, V), cview(labels, 2, 3), {.logp = view(small, 2, 2)}),
                       "rlhf::token_logprobs(): logp is 2x2 but logits is 2x3x5", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::token_logprobs(rlhf::cpu, ccube(x, 2, 3, V), cview(labels, 3, 2), {.logp = view(logp, 2, 3)}),
                       "rlhf::token_logprobs(): labels is 3x2 but logits is 2x3x5", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::token_logprobs(rlhf::cpu, ccube(x, 2, 3, 0), cview(labels, 2, 3), {.logp = view(logp, 2, 3)}),
                       "rlhf::token_logprobs(): logits is empty (2x3x0)", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::token_logprobs(rlhf::cpu, ccube(x, 2, 3, V), cview(labels, 2, 3), {.logp = {}}),
                       "rlhf::token_logprobs(): no output requested (logp, entropy and logsumexp are all empty)",
                       rlhf::invalid_argument);
  std::vector<float> d(x.size());
  bad[4] = 9;
  CHECK_THROWS_WITH_AS(rlhf::token_logprobs_backward(rlhf::cpu, ccube(x, 2, 3, V), cview(bad, 2, 3), cview(lse, 2, 3),
                                                     cview(logp, 2, 3), {}, cube(d, 2, 3, V)),
                       "rlhf::token_logprobs_backward(): labels(1, 1) = 9 is outside [0, 5)", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::token_logprobs_backward(rlhf::cpu, ccube(x, 2, 3, V), cview(labels, 2, 3), cview(lse, 2, 3),
                                                     cview(logp, 2, 3), {}, cube(d, 2, 3, 4)),
                       "rlhf::token_logprobs_backward(): logits is 2x3x5 but dlogits is 2x3x4", rlhf::invalid_argument);
  const rlhf::cube_view<float> other_strides(x.data(), {2, 3, V}, {3 * V, V, 1});
  const rlhf::cube_view<float> transposed(x.data(), {2, 3, V}, {V, 2 * V, 1});
  CHECK_NOTHROW(rlhf::token_logprobs_backward(rlhf::cpu, ccube(x, 2, 3, V), cview(labels, 2, 3), cview(lse, 2, 3),
                                              cview(logp, 2, 3), {}, other_strides));
  CHECK_THROWS_AS(rlhf::token_logprobs_backward(rlhf::cpu, ccube(x, 2, 3, V), cview(labels, 2, 3), cview(lse, 2, 3),
                                                cview(logp, 2, 3), {}, transposed),
                  rlhf::invalid_argument);
  std::vector<float> kl(6);
  CHECK_THROWS_WITH_AS(rlhf::full_kl_from_logits(rlhf::cpu, ccube(x, 2, 3, V), ccube(x, 3, 2, V), view(kl, 2, 3)),
                       "rlhf::full_kl_from_logits(): logits is 2x3x5 but ref_logits is 3x2x5", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::full_kl_from_logits_backward(rlhf::cpu, ccube(x, 2, 3, V), ccube(x, 2, 3, V),
                                                          cview(kl, 2, 3), cube(x, 2, 3, V)),
                       "rlhf::full_kl_from_logits_backward(): dlogits must not be ref_logits", rlhf::invalid_argument);
}
