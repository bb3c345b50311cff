// tests/optim/schedule_test.cpp — warm-up, constant, cosine and linear factors at and around
// their boundaries, and the option checks.
#include <rlhf/optim/schedule.hpp>

#include <doctest/doctest.h>

#include <cmath>

using rlhf::lr_schedule;
using rlhf::schedule_kind;

TEST_CASE("lr_schedule: constant without warm-up is 1 everywhere") {
  const lr_schedule s;
  CHECK(s.factor(0) == 1.0);
  CHECK(s.factor(123456) == 1.0);
  CHECK(s.rate(3e-4, 7) == 3e-4);
}

TEST_CASE("lr_schedule: InstructGPT PPO warm-up from 1/10 of the peak over 10 steps") {
  const lr_schedule s{{.warmup_steps = 10, .warmup_start = 0.1}};
  CHECK(s.factor(0) == 0.1);
  CHECK(s.factor(1) == doctest::Approx(0.19).epsilon(1e-15));
  CHECK(s.factor(5) == doctest::Approx(0.55).epsilon(1e-15));
  CHECK(s.factor(9) == doctest::Approx(0.91).epsilon(1e-15));
  CHECK(s.factor(10) == 1.0);
  CHECK(s.factor(1000) == 1.0);
}

TEST_CASE("lr_schedule: Hugging Face linear warm-up starts at 0") {
  const lr_schedule s{{.warmup_steps = 4}};
  CHECK(s.factor(0) == 0.0);
  CHECK(s.factor(1) == 0.25);
  CHECK(s.factor(3) == 0.75);
  CHECK(s.factor(4) == 1.0);
}

TEST_CASE("lr_schedule: cosine to a floor") {
  const lr_schedule s{{.kind = schedule_kind::cosine, .warmup_steps = 2, .total_steps = 12, .min_ratio = 0.1}};
  CHECK(s.factor(0) == 0.0);
  CHECK(s.factor(1) == 0.5);
  CHECK(s.factor(2) == 1.0);                                     // end of warm-up: the peak
  CHECK(s.factor(7) == doctest::Approx(0.55).epsilon(1e-15));    // halfway: (1 + m) / 2
  CHECK(s.factor(3) == doctest::Approx(0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI / 10))).epsilon(1e-15));
  CHECK(s.factor(12) == doctest::Approx(0.1).epsilon(1e-15));    // the floor at total_steps
  CHECK(s.factor(13) == doctest::Approx(0.1).epsilon(1e-15));    // and after it
  CHECK(s.factor(1'000'000) == doctest::Approx(0.1).epsilon(1e-15));
  // Monotone after the warm-up.
  for (std::uint64_t k = 2; k < 12; ++k) CHECK(s.factor(k + 1) <= s.factor(k));
}

TEST_CASE("lr_schedule: Hugging Face cosine (no floor) and linear") {
  const lr_schedule cosine{{.kind = schedule_kind::cosine, .warmup_steps = 0, .total_steps = 4}};
  CHECK(cosine.factor(0) == 1.0);
  CHECK(cosine.factor(2) == doctest::Approx(0.5).epsilon(1e-15));
  CHECK(cosine.factor(4) == 0.0);
  const lr_schedule linear{{.kind = schedule_kind::linear, .warmup_steps = 1, .total_steps = 5, .min_ratio = 0.2}};
  CHECK(linear.factor(0) == 0.0);
  CHECK(linear.factor(1) == 1.0);
  CHECK(linear.factor(3) == doctest::Approx(0.6).epsilon(1e-15));
  CHECK(linear.factor(5) == doctest::Approx(0.2).epsilon(1e-15));
  CHECK(linear.factor(9) == doctest::Approx(0.2).epsilon(1e-15));
  // total_steps == warmup_steps: the decay is immediate (one-step span, no division by 0).
  const lr_schedule abrupt{{.kind = schedule_kind::cosine, .warmup_steps = 3, .total_steps = 3}};
  CHECK(abrupt.factor(2) == doctest::Approx(2.0 / 3.0));
  CHECK(abrupt.factor(3) == 1.0);
  CHECK(abrupt.factor(4) == 0.0);
}

TEST_CASE("lr_schedule: bad options throw rlhf::invalid_argument") {
  CHECK_THROWS_WITH_AS(lr_schedule({.warmup_start = 1.5}), "rlhf::lr_schedule: warmup_start must be in [0, 1], got 1.5",
                       rlhf::invalid_argument);
  CHECK_THROWS_AS(lr_schedule({.min_ratio = -0.1}), rlhf::invalid_argument);
  CHECK_THROWS_AS(lr_schedule({.min_ratio = std::nan("")}), rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(lr_schedule({.kind = schedule_kind::cosine, .warmup_steps = 10, .total_steps = 5}),
                       "rlhf::lr_schedule: total_steps (5) must be at least warmup_steps (10) for a decaying schedule",
                       rlhf::invalid_argument);
}
