// tests/lm_loss_test.cpp — rlhf::lm_loss: the three reductions against a direct computation
// from token_logprobs, ignore index and mask, finite-difference gradients (temperature,
// grad_scale), in-place gradients, thread counts, the empty case and argument errors.
#include <rlhf/lm_loss.hpp>

#include "support/finite_difference.hpp"
#include "support/random.hpp"
#include "support/tolerances.hpp"
#include "support/views.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <vector>

namespace {
using rlhf::token_id;
using namespace rlhf::test;

constexpr std::ptrdiff_t B = 3, Tn = 4, V = 11;

/// The loss computed directly: per-token logp from token_logprobs, then the reduction.
double direct(const std::vector<double>& x, const std::vector<token_id>& labels, const std::vector<std::uint8_t>& mask,
              rlhf::lm_loss_reduction reduction, double tau) {
  std::vector<token_id> safe = labels;
  for (auto& l : safe) l = l < 0 ? 0 : l;
  std::vector<double> logp(static_cast<std::size_t>(B * Tn));
  rlhf::token_logprobs(rlhf::cpu, ccube(x, B, Tn, V), cview(safe, B, Tn), {.logp = view(logp, B, Tn)},
                       {.temperature = tau});
  double total = 0, seq_sum = 0;
  std::ptrdiff_t n = 0, rows = 0;
  for (std::ptrdiff_t b = 0; b < B; ++b) {
    double row = 0;
    std::ptrdiff_t nb = 0;
    for (std::ptrdiff_t t = 0; t < Tn; ++t) {
      const auto i = static_cast<std::size_t>(b * Tn + t);
      if ((mask.empty() || mask[i]) && labels[i] != -100) {
        row -= logp[i];
        ++nb;
      }
    }
    total += row;
    n += nb;
    if (nb > 0) {
      seq_sum += row / static_cast<double>(nb);
      ++rows;
    }
  }
  switch (reduction) {
    case rlhf::lm_loss_reduction::token_mean: return n ? total / static_cast<double>(n) : 0.0;
    case rlhf::lm_loss_reduction::sum: return total;
    case rlhf::lm_loss_reduction::sequence_mean: return rows ? seq_sum / static_cast<double>(rows) : 0.0;
  }
  return 0;
}
}  // namespace

TEST_CASE("lm_loss: reductions, ignore index and mask; gradients by finite differences") {
  std::vector<double> x = normal_vector<double>(static_cast<std::size_t>(B * Tn * V), 41, 2.0);
  std::vector<token_id> labels = {1, 2, 3, -100, 10, 0, 5, 5, -100, -100, -100, -100};  // row 2 all ignored
  const std::vector<std::uint8_t> mask = {1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1};
  for (const auto reduction : {rlhf::lm_loss_reduction::token_mean, rlhf::lm_loss_reduction::sum,
                               rlhf::lm_loss_reduction::sequence_mean}) {
    for (const bool use_mask : {false, true}) {
      for (const double tau : {1.0, 0.8}) {
        CAPTURE(static_cast<int>(reduction));
        CAPTURE(use_mask);
        CAPTURE(tau);
        const std::vector<std::uint8_t> m = use_mask ? mask : std::vector<std::uint8_t>{};
        const rlhf::mask_view mv = use_mask ? view(mask, B, Tn) : rlhf::mask_view{};
        const rlhf::lm_loss_options o{.reduction = reduction, .temperature = tau, .grad_scale = 2.5};
        std::vector<double> d(x.size(), 123.0);
        const auto r = rlhf::lm_loss(rlhf::cpu, ccube(x, B, Tn, V), cview(labels, B, Tn), mv, cube(d, B, Tn, V), o);
        CHECK(r.tokens == (use_mask ? 6 : 7));
        RLHF_CHECK_SCALAR(r.loss, direct(x, labels, m, reduction, tau), (tolerance{.rtol = 1e-13}));
        const auto f = [&] {
          return 2.5 * rlhf::lm_loss(rlhf::cpu, ccube(x, B, Tn, V), cview(labels, B, Tn), mv, {}, o).loss;
        };
        RLHF_CHECK_CLOSE(d, numeric_gradient(f, x), (tolerance{.rtol = 1e-5, .atol = 1e-8}));
        // Ignored rows are zeroed, not left as they were.
        for (std::ptrdiff_t v = 0; v < V; ++v) CHECK(d[static_cast<std::size_t>((2 * Tn + 1) * V + v)] == 0.0);

        // Float: close to double; in place; 2 threads bitwise equal to 1.
        std::vector<float> xf(x.begin(), x.end()), df(x.size());
        const auto rf = rlhf::lm_loss(rlhf::cpu, ccube(xf, B, Tn, V), cview(labels, B, Tn), mv, cube(df, B, Tn, V), o);
        RLHF_CHECK_SCALAR(rf.loss, r.loss, (tolerance{.rtol = 1e-6, .atol = 1e-6}));
        RLHF_CHECK_CLOSE(df, d, (tolerance{.rtol = 1e-5, .atol = 1e-6}));
        const auto r2 = rlhf::lm_loss(rlhf::cpu_backend{.threads = 2}, ccube(xf, B, Tn, V), cview(labels, B, Tn), mv,
                                      cube(xf, B, Tn, V), o);
        CHECK(r2.loss == rf.loss);
        CHECK(xf == df);
      }
    }
  }
}

TEST_CASE("lm_loss: no valid token gives 0 and a zero gradient; loss only without dlogits") {
  std::vector<float> x = normal_vector<float>(static_cast<std::size_t>(B * Tn * V), 1);
  const std::vector<token_id> labels(static_cast<std::size_t>(B * Tn), -100);
  std::vector<float> d(x.size(), 7.0f);
  const auto r = rlhf::lm_loss(rlhf::cpu, ccube(x, B, Tn, V), cview(labels, B, Tn), {}, cube(d, B, Tn, V));
  CHECK(r.loss == 0.0);
  CHECK(r.tokens == 0);
  for (float v : d) REQUIRE(v == 0.0f);
  std::vector<token_id> some(static_cast<std::size_t>(B * Tn), 3);
  const auto r2 = rlhf::lm_loss(rlhf::cpu, ccube(x, B, Tn, V), cview(some, B, Tn));
  CHECK(r2.tokens == B * Tn);
  CHECK(r2.loss > 0.0);
}

TEST_CASE("lm_loss: errors name the position of a bad label; labels of ignored tokens are not checked") {
  std::vector<float> x(static_cast<std::size_t>(B * Tn * V), 0.0f);
  std::vector<token_id> labels(static_cast<std::size_t>(B * Tn), 1);
  std::vector<std::uint8_t> mask(labels.size(), 1);
  labels[5] = 11;
  CHECK_THROWS_WITH_AS(rlhf::lm_loss(rlhf::cpu, ccube(x, B, Tn, V), cview(labels, B, Tn)),
                       "rlhf::lm_loss(): labels(1, 1) = 11 is outside [0, 11)", rlhf::invalid_argument);
  mask[5] = 0;  // masked: not read
  CHECK_NOTHROW(rlhf::lm_loss(rlhf::cpu, ccube(x, B, Tn, V), cview(labels, B, Tn), view(mask, B, Tn)));
  labels[5] = -7;
  CHECK_THROWS_WITH_AS(rlhf::lm_loss(rlhf::cpu, ccube(x, B, Tn, V), cview(labels, B, Tn), {}, {},
                                     {.ignore_index = -100}),
                       "rlhf::lm_loss(): labels(1, 1) = -7 is outside [0, 11)", rlhf::invalid_argument);
  CHECK_NOTHROW(rlhf::lm_loss(rlhf::cpu, ccube(x, B, Tn, V), cview(labels, B, Tn), {}, {}, {.ignore_index = -7}));
  CHECK_THROWS_WITH_AS(rlhf::lm_loss(rlhf::cpu, ccube(x, B, Tn, V), cview(labels, B, Tn), view(mask, 2, Tn)),
                       "rlhf::lm_loss(): mask is 2x4 but logits is 3x4x11", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::lm_loss(rlhf::cpu, ccube(x, B, Tn, V), cview(labels, B, Tn), {}, {}, {.temperature = 0.0}),
                       "rlhf::lm_loss(): temperature must be finite and > 0, got 0", rlhf::invalid_argument);
}
