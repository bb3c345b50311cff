// Tests for <rlhf/tensor_view.hpp>: layout, strides, const conversion, rows, shape helpers.
#include <rlhf/tensor_view.hpp>

#include <doctest/doctest.h>

#include <type_traits>
#include <vector>

// Compile-time properties: views are trivially copyable (they travel into kernels by value)
// and constexpr-usable.
static_assert(std::is_trivially_copyable_v<rlhf::matrix_view<float>>);
static_assert(std::is_convertible_v<rlhf::matrix_view<float>, rlhf::matrix_view<const float>>);
static_assert(!std::is_convertible_v<rlhf::matrix_view<const float>, rlhf::matrix_view<float>>);
static_assert(!std::is_convertible_v<rlhf::device_view<float, 2>, rlhf::matrix_view<float>>);
static_assert(!std::is_convertible_v<rlhf::matrix_view<float>, rlhf::device_view<float, 2>>);
static_assert(rlhf::matrix_view<float>::rank() == 2);
static_assert([] {
  double data[6] = {0, 1, 2, 3, 4, 5};
  rlhf::matrix_view<double> v(data, 2, 3);
  return v(1, 2) == 5 && v.size() == 6 && v.stride(0) == 3 && v.is_contiguous();
}());

TEST_CASE("tensor_view: row-major extents, strides and element access") {
  std::vector<int> data(24);
  for (int i = 0; i < 24; ++i) data[i] = i;
  rlhf::cube_view<int> v(data.data(), 2, 3, 4);
  CHECK(v.extent(0) == 2);
  CHECK(v.extent(2) == 4);
  CHECK(v.stride(0) == 12);
  CHECK(v.stride(1) == 4);
  CHECK(v.stride(2) == 1);
  CHECK(v.size() == 24);
  CHECK(v(1, 2, 3) == 23);
  CHECK(v.is_contiguous());
  CHECK(rlhf::shape_string(v) == "2x3x4");
}

TEST_CASE("tensor_view: deduction guide and row views") {
  std::vector<float> data{1, 2, 3, 4, 5, 6};
  rlhf::tensor_view v(data.data(), 2, 3);
  static_assert(std::is_same_v<decltype(v), rlhf::tensor_view<float, 2>>);
  auto row = v.row(1);
  CHECK(row.rank() == 1);
  CHECK(row.extent(0) == 3);
  CHECK(row(0) == 4);
  row(2) = 60;
  CHECK(data[5] == 60);
}

TEST_CASE("tensor_view: strided views (a column slice) and contiguity") {
  std::vector<double> data(12);
  for (int i = 0; i < 12; ++i) data[i] = i;
  const std::ptrdiff_t extents[2] = {3, 2}, strides[2] = {4, 2};
  rlhf::matrix_view<const double> v(data.data(), extents, strides);
  CHECK(v(2, 1) == 10);
  CHECK_FALSE(v.is_contiguous());
  // An extent-1 dimension's stride does not matter for contiguity.
  const std::ptrdiff_t e1[2] = {1, 4}, s1[2] = {999, 1};
  CHECK(rlhf::matrix_view<const double>(data.data(), e1, s1).is_contiguous());
}

TEST_CASE("tensor_view: const conversion keeps the memory and the shape") {
  std::vector<float> data(6, 1.0f);
  rlhf::matrix_view<float> mutable_view(data.data(), 2, 3);
  rlhf::matrix_view<const float> const_view = mutable_view;
  CHECK(const_view.data_handle() == data.data());
  CHECK(rlhf::same_shape(const_view, mutable_view));
  CHECK(mutable_view.as_const()(1, 1) == 1.0f);
}

TEST_CASE("tensor_view: default views are empty; same_shape compares rank and extents") {
  rlhf::matrix_view<float> empty;
  CHECK(empty.empty());
  CHECK(empty.data_handle() == nullptr);
  std::vector<float> data(6);
  CHECK_FALSE(rlhf::same_shape(rlhf::matrix_view<float>(data.data(), 2, 3), rlhf::matrix_view<float>(data.data(), 3, 2)));
  CHECK_FALSE(rlhf::same_shape(rlhf::matrix_view<float>(data.data(), 2, 3), rlhf::vector_view<float>(data.data(), 6)));
}
