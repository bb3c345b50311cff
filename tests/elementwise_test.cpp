// Tests for <rlhf/elementwise.hpp>: clip_by_value with scalar and tensor bounds, the TRL
// golden case, NaN propagation, in-place use, threads and argument errors.
#include <rlhf/elementwise.hpp>
#include <rlhf/tensor.hpp>

#include <doctest/doctest.h>

#include <support/golden.hpp>
#include <support/views.hpp>
#include <support/random.hpp>
#include <support/tolerances.hpp>

#include <cmath>
#include <limits>
#include <vector>

namespace {

using rlhf::test::view;

}  // namespace

TEST_CASE_TEMPLATE("clip_by_value: scalar bounds clip into [lo, hi]", T, float, double) {
  std::vector<T> x{-3, -0.5, 0, 0.25, 2, 7};
  std::vector<T> out(6);
  rlhf::clip_by_value(rlhf::cpu, view(x, 2, 3), -1.0, 1.0, view(out, 2, 3));
  CHECK(out == std::vector<T>{-1, -0.5, 0, 0.25, 1, 1});
  // hi < lo: every element becomes lo, as max(min(x, hi), lo) says.
  rlhf::clip_by_value(rlhf::cpu, view(x, 2, 3), 1.0, -1.0, view(out, 2, 3));
  CHECK(out == std::vector<T>(6, T(1)));
  // In place.
  rlhf::clip_by_value(rlhf::cpu, view(x, 2, 3), -0.5, 0.5, view(x, 2, 3));
  CHECK(x == std::vector<T>{-0.5, -0.5, 0, 0.25, 0.5, 0.5});
}

TEST_CASE_TEMPLATE("clip_by_value: NaN in x stays NaN, infinities are clipped", T, float, double) {
  std::vector<T> x{std::numeric_limits<T>::quiet_NaN(), std::numeric_limits<T>::infinity(),
                   -std::numeric_limits<T>::infinity()};
  std::vector<T> out(3);
  rlhf::clip_by_value(rlhf::cpu, view(x, 1, 3), -2.0, 2.0, view(out, 1, 3));
  CHECK(std::isnan(out[0]));
  CHECK(out[1] == T(2));
  CHECK(out[2] == T(-2));
}

TEST_CASE("clip_by_value: reproduces TRL v0.11.4 clip_by_value with tensor bounds (golden)") {
  const auto& c = rlhf::test::golden_case("trl_whiten.json", "clip_by_value_tensor_bounds");
  auto x = rlhf::test::to_array(c["inputs"]["values"]);
  auto lo = rlhf::test::to_array(c["inputs"]["tensor_min"]);
  auto hi = rlhf::test::to_array(c["inputs"]["tensor_max"]);
  const auto rows = x.rows(), cols = x.cols();
  std::vector<double> out(x.values.size());
  rlhf::clip_by_value(rlhf::cpu, view(x.values, rows, cols), view(lo.values, rows, cols),
                      view(hi.values, rows, cols), view(out, rows, cols));
  // Element (0, 0) has hi = −1 < lo = −0.5 and gets lo, as in TRL.
  CHECK(out[0] == -0.5);
  RLHF_CHECK_CLOSE(out, rlhf::test::to_array(c["outputs"]["out"]).values, rlhf::test::golden_tolerance<double>());

  auto xf = x.as<float>(), lof = lo.as<float>(), hif = hi.as<float>();
  std::vector<float> outf(xf.size());
  rlhf::clip_by_value(rlhf::cpu, view(xf, rows, cols), view(lof, rows, cols), view(hif, rows, cols),
                      view(outf, rows, cols));
  RLHF_CHECK_CLOSE(outf, rlhf::test::to_array(c["outputs"]["out"]).values, rlhf::test::golden_tolerance<float>());
}

TEST_CASE("clip_by_value: any thread count gives the same result; tensors convert") {
  auto x = rlhf::test::normal_vector<double>(40 * 17, 3, 2.0);
  std::vector<double> a(x.size()), b(x.size());
  rlhf::clip_by_value(rlhf::cpu, view(x, 40, 17), -1.0, 1.5, view(a, 40, 17));
  rlhf::clip_by_value(rlhf::cpu_backend{.threads = 3}, view(x, 40, 17), -1.0, 1.5, view(b, 40, 17));
  CHECK(a == b);
  rlhf::tensor<float, 2> t(2, 2), u(2, 2);
  t(0, 1) = 5.0f;
  rlhf::clip_by_value(rlhf::cpu, t, 0.0, 1.0, u);
  CHECK(u(0, 1) == 1.0f);
}

TEST_CASE("clip_by_value: bad arguments throw rlhf::invalid_argument naming the function and values") {
  std::vector<double> x(8), out(8), lo(8), hi(6);
  CHECK_THROWS_WITH_AS(rlhf::clip_by_value(rlhf::cpu, view(x, 2, 4), -1.0, 1.0, view(out, 4, 2)),
                       "rlhf::clip_by_value(): x is 2x4 but out is 4x2", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::clip_by_value(rlhf::cpu, view(x, 2, 4), view(lo, 2, 4), view(hi, 2, 3), view(out, 2, 4)),
                       "rlhf::clip_by_value(): x is 2x4 but hi is 2x3", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::clip_by_value(rlhf::cpu, view(x, 2, 4), std::nan(""), 1.0, view(out, 2, 4)),
                       "rlhf::clip_by_value(): lo must not be NaN", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::clip_by_value(rlhf::cpu, view(x, 0, 4), -1.0, 1.0, view(out, 0, 4)),
                       "rlhf::clip_by_value(): x is empty (0x4)", rlhf::invalid_argument);
}
