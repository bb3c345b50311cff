// tests/support/tolerances.hpp — elementwise closeness with a useful failure message.
//
// |got − expected| ≤ atol + rtol·|expected|; NaN equals NaN, ±inf equals itself. On failure the
// message names the worst index, both values and the fraction of the allowed error used.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <cstddef>
#include <sstream>
#include <string>
#include <vector>

namespace rlhf::test {

struct tolerance {
  double rtol = 1e-12;
  double atol = 0.0;
};

/// Golden tolerances: 1e-12 relative for double, 1e-6 for float (with a tiny absolute floor so
/// that exact zeros computed through cancellation compare equal).
template <class T>
constexpr tolerance golden_tolerance() {
  if constexpr (sizeof(T) == 4) {
    return {.rtol = 1e-6, .atol = 1e-12};
  } else {
    return {.rtol = 1e-12, .atol = 1e-300};
  }
}

inline bool close(double got, double expected, tolerance tol) {
  if (std::isnan(expected)) return std::isnan(got);
  if (std::isinf(expected)) return got == expected;
  return std::fabs(got - expected) <= tol.atol + tol.rtol * std::fabs(expected);
}

/// Empty string when all close; otherwise a description of the worst element.
template <class A, class B>
std::string mismatch(const A& got, const B& expected, tolerance tol) {
  std::ostringstream out;
  out.precision(17);
  if (static_cast<std::size_t>(std::size(got)) != static_cast<std::size_t>(std::size(expected))) {
    out << "size " << std::size(got) << " vs expected " << std::size(expected);
    return out.str();
  }
  double worst = -1;
  std::size_t worst_i = 0;
  std::size_t bad = 0;
  for (std::size_t i = 0; i < static_cast<std::size_t>(std::size(got)); ++i) {
    const double g = static_cast<double>(got[i]), e = static_cast<double>(expected[i]);
    if (close(g, e, tol)) continue;
    ++bad;
    const double allowed = tol.atol + tol.rtol * std::fabs(e);
    const double ratio = std::isfinite(g - e) ? std::fabs(g - e) / (allowed > 0 ? allowed : 1e-300)
                                              : INFINITY;
    if (ratio > worst) {
      worst = ratio;
      worst_i = i;
    }
  }
  if (bad == 0) return {};
  out << bad << " of " << std::size(got) << " elements differ; worst at [" << worst_i
      << "]: got " << static_cast<double>(got[worst_i]) << ", expected "
      << static_cast<double>(expected[worst_i]) << " (" << worst * 100 << "% of the tolerance)";
  return out.str();
}

}  // namespace rlhf::test

/// CHECK that two sequences are elementwise close; prints the worst element otherwise.
#define RLHF_CHECK_CLOSE(got, expected, tol)                         \
  do {                                                               \
    const std::string rlhf_mismatch_ = ::rlhf::test::mismatch((got), (expected), (tol)); \
    CHECK_MESSAGE(rlhf_mismatch_.empty(), rlhf_mismatch_);           \
  } while (false)

/// CHECK that two scalars are close.
#define RLHF_CHECK_SCALAR(got, expected, tol)                                                    \
  do {                                                                                           \
    const double rlhf_got_ = static_cast<double>(got), rlhf_exp_ = static_cast<double>(expected); \
    CHECK_MESSAGE(::rlhf::test::close(rlhf_got_, rlhf_exp_, (tol)),                              \
                  "got " << rlhf_got_ << ", expected " << rlhf_exp_);                             \
  } while (false)
