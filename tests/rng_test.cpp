// Tests for <rlhf/rng.hpp>: a known Philox answer, reproducibility, streams, save/restore, and
// the distributions' moments and chi-square fits on fixed seeds.
#include <rlhf/rng.hpp>

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

TEST_CASE("rng: Philox4x32-10 matches the published known-answer vector") {
  // Random123 kat_vectors: philox4x32 10 rounds, counter = key = all ones.
  const rlhf::philox_block ones{{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}};
  const auto out = rlhf::philox4x32_10(ones, 0xffffffffu, 0xffffffffu);
  CHECK(out.v[0] == 0x408f276du);
  CHECK(out.v[1] == 0x41c83b0eu);
  CHECK(out.v[2] == 0xa20bc7c6u);
  CHECK(out.v[3] == 0x6d5451fdu);
  // Counter and key all zero.
  const auto zero = rlhf::philox4x32_10(rlhf::philox_block{{0, 0, 0, 0}}, 0, 0);
  CHECK(zero.v[0] == 0x6627e8d5u);
  CHECK(zero.v[1] == 0xe169c58du);
  CHECK(zero.v[2] == 0xbc57ac4cu);
  CHECK(zero.v[3] == 0x9b00dbd8u);
}

TEST_CASE("rng: same seed and stream give the same numbers; other streams differ") {
  rlhf::rng a{{.seed = 42}}, b{{.seed = 42}}, c{{.seed = 42, .stream = 1}};
  int same_as_other_stream = 0;
  for (int i = 0; i < 100; ++i) {
    const auto x = a.next_u32();
    CHECK(x == b.next_u32());
    same_as_other_stream += x == c.next_u32();
  }
  CHECK(same_as_other_stream < 3);
}

TEST_CASE("rng: state save/restore continues exactly, mid-block too") {
  rlhf::rng a{{.seed = 7, .stream = 3}};
  for (int i = 0; i < 5; ++i) a.next_u32();  // 5 words: inside the second block
  const rlhf::rng_state saved = a.state();
  std::vector<std::uint32_t> expected;
  for (int i = 0; i < 9; ++i) expected.push_back(a.next_u32());
  rlhf::rng b{{.seed = 0}};
  b.restore(saved);
  for (auto e : expected) CHECK(b.next_u32() == e);
}

TEST_CASE("rng: uniform is in [0, 1) with mean 1/2 and variance 1/12") {
  rlhf::rng gen{{.seed = 1}};
  const int n = 200000;
  double sum = 0, sum_sq = 0;
  int out_of_range = 0;
  for (int i = 0; i < n; ++i) {
    const double u = gen.uniform<double>();
    out_of_range += !(u >= 0.0 && u < 1.0);
    sum += u;
    sum_sq += u * u;
  }
  CHECK(out_of_range == 0);
  const double mean = sum / n, var = sum_sq / n - mean * mean;
  CHECK(mean == doctest::Approx(0.5).epsilon(0.01));
  CHECK(var == doctest::Approx(1.0 / 12).epsilon(0.02));
  const float f = gen.uniform<float>();
  CHECK((f >= 0.0f && f < 1.0f));
}

TEST_CASE("rng: normal has mean 0, variance 1, and a normal tail") {
  rlhf::rng gen{{.seed = 2}};
  const int n = 200000;
  double sum = 0, sum_sq = 0;
  int beyond_two_sigma = 0;
  for (int i = 0; i < n; ++i) {
    const double z = gen.normal<double>();
    sum += z;
    sum_sq += z * z;
    beyond_two_sigma += std::fabs(z) > 2.0;
  }
  CHECK(std::fabs(sum / n) < 0.01);
  CHECK(sum_sq / n == doctest::Approx(1.0).epsilon(0.02));
  CHECK(static_cast<double>(beyond_two_sigma) / n == doctest::Approx(0.0455).epsilon(0.08));
}

TEST_CASE("rng: uniform_index is unbiased (chi-square, 7 bins, fixed seed)") {
  rlhf::rng gen{{.seed = 3}};
  const int bins = 7, n = 70000;
  std::vector<int> counts(bins);
  for (int i = 0; i < n; ++i) ++counts[gen.uniform_index(bins)];
  double chi2 = 0;
  for (int c : counts) chi2 += (c - n / bins) * (c - n / bins) / double(n / bins);
  CHECK(chi2 < 22.46);  // p = 0.001 critical value for 6 degrees of freedom
  CHECK_THROWS_AS(gen.uniform_index(0), rlhf::invalid_argument);
  CHECK(gen.uniform_index(1ull << 40) < (1ull << 40));
}

TEST_CASE("rng: categorical follows the weights (chi-square) and never picks a zero weight") {
  rlhf::rng gen{{.seed = 4}};
  const std::vector<double> weights{0.1, 0.0, 0.6, 0.3};
  const int n = 100000;
  std::vector<int> counts(weights.size());
  for (int i = 0; i < n; ++i) ++counts[gen.categorical(weights)];
  CHECK(counts[1] == 0);
  double chi2 = 0;
  for (std::size_t k : {0u, 2u, 3u}) {
    const double expected = weights[k] * n;
    chi2 += (counts[k] - expected) * (counts[k] - expected) / expected;
  }
  CHECK(chi2 < 13.82);  // p = 0.001, 2 degrees of freedom
  CHECK_THROWS_WITH_AS(gen.categorical(std::vector<double>{0.0, 0.0}),
                       "rlhf::rng::categorical(): the weights sum to 0 (2 weights)", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(gen.categorical(std::vector<double>{1.0, -1.0}),
                       "rlhf::rng::categorical(): weights[1] must be finite and non-negative",
                       rlhf::invalid_argument);
}
