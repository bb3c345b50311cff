// Tests for <rlhf/tensor.hpp>: ownership, alignment, zero fill, deep copies, conversion to views.
#include <rlhf/tensor.hpp>

#include <doctest/doctest.h>

#include <cstdint>
#include <utility>

TEST_CASE("tensor: zero-filled, 64-byte aligned, row-major") {
  rlhf::tensor<float, 3> t(2, 3, 5);
  CHECK(t.size() == 30);
  CHECK(reinterpret_cast<std::uintptr_t>(t.data()) % 64 == 0);
  for (std::ptrdiff_t i = 0; i < t.size(); ++i) CHECK(t.data()[i] == 0.0f);
  t(1, 2, 4) = 7.0f;
  CHECK(t.data()[29] == 7.0f);
  CHECK(t.view().stride(0) == 15);
}

TEST_CASE("tensor: copies are deep, moves are cheap and leave an empty tensor") {
  rlhf::tensor<double, 2> a(2, 2);
  a.fill(3.0);
  rlhf::tensor<double, 2> b = a;
  b(0, 0) = 1.0;
  CHECK(a(0, 0) == 3.0);
  const double* storage = b.data();
  rlhf::tensor<double, 2> c = std::move(b);
  CHECK(c.data() == storage);
  CHECK(b.empty());  // NOLINT(bugprone-use-after-move): moved-from state is specified
  a = c;
  CHECK(a(0, 0) == 1.0);
}

TEST_CASE("tensor: converts to mutable and const views") {
  rlhf::tensor<float, 2> t(3, 4);
  rlhf::matrix_view<float> v = t;
  v(2, 3) = 5.0f;
  const auto& ct = t;
  rlhf::matrix_view<const float> cv = ct;
  CHECK(cv(2, 3) == 5.0f);
}

TEST_CASE("tensor: empty shapes allocate nothing; negative extents throw") {
  rlhf::tensor<float, 2> t(0, 5);
  CHECK(t.empty());
  CHECK(t.data() == nullptr);
  CHECK_THROWS_AS((rlhf::tensor<float, 2>(-1, 3)), rlhf::invalid_argument);
  CHECK_THROWS_WITH((rlhf::tensor<float, 2>(-1, 3)), "rlhf::tensor: negative extent -1");
}
