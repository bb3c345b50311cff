// tests/support/views.hpp — views over std::vector test data, shared by every test file.
//
//   view(v, rows, cols)   matrix_view<T> (mutable vector) / matrix_view<const T> (const vector);
//                         a const std::vector<std::uint8_t> gives a mask_view
//   cview, mview          the const matrix view and the mask view, explicitly
//   vec(v), cvec(v)       vector_view<T> / vector_view<const T>
//   mat, cmat             synonyms of view / cview
//   cube(v, b, t, k), ccube(...)   rank-3 views
#pragma once

#include <rlhf/tensor_view.hpp>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace rlhf::test {

template <class T>
matrix_view<T> view(std::vector<T>& v, std::ptrdiff_t rows, std::ptrdiff_t cols) {
  return matrix_view<T>(v.data(), rows, cols);
}
template <class T>
matrix_view<const T> view(const std::vector<T>& v, std::ptrdiff_t rows, std::ptrdiff_t cols) {
  return matrix_view<const T>(v.data(), rows, cols);
}
inline mask_view view(const std::vector<std::uint8_t>& m, std::ptrdiff_t rows, std::ptrdiff_t cols) {
  return mask_view(m.data(), rows, cols);
}
template <class T>
matrix_view<const T> cview(const std::vector<T>& v, std::ptrdiff_t rows, std::ptrdiff_t cols) {
  return matrix_view<const T>(v.data(), rows, cols);
}
inline mask_view mview(const std::vector<std::uint8_t>& m, std::ptrdiff_t rows, std::ptrdiff_t cols) {
  return mask_view(m.data(), rows, cols);
}
template <class T>
matrix_view<T> mat(std::vector<T>& v, std::ptrdiff_t rows, std::ptrdiff_t cols) {
  return view(v, rows, cols);
}
template <class T>
matrix_view<const T> cmat(const std::vector<T>& v, std::ptrdiff_t rows, std::ptrdiff_t cols) {
  return cview(v, rows, cols);
}
template <class T>
vector_view<T> vec(std::vector<T>& v) {
  return vector_view<T>(v.data(), static_cast<std::ptrdiff_t>(v.size()));
}
template <class T>
vector_view<const T> vec(const std::vector<T>& v) {
  return vector_view<const T>(v.data(), static_cast<std::ptrdiff_t>(v.size()));
}
template <class T>
vector_view<const T> cvec(const std::vector<T>& v) {
  return vector_view<const T>(v.data(), static_cast<std::ptrdiff_t>(v.size()));
}
template <class T>
cube_view<T> cube(std::vector<T>& v, std::ptrdiff_t b, std::ptrdiff_t t, std::ptrdiff_t k) {
  return cube_view<T>(v.data(), b, t, k);
}
template <class T>
cube_view<const T> ccube(const std::vector<T>& v, std::ptrdiff_t b, std::ptrdiff_t t, std::ptrdiff_t k) {
  return cube_view<const T>(v.data(), b, t, k);
}

}  // namespace rlhf::test
