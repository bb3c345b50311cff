// rlhf/detail/rows.hpp — contiguous access to the rows of (B, T) views for the CPU row kernels
// (private). Contiguous rows are used in place; strided rows go through a caller's scratch.
#pragma once

#include <rlhf/tensor_view.hpp>

#include <algorithm>
#include <cstddef>
#include <type_traits>
#include <vector>

namespace rlhf::detail {

/// Row b of a (B, T) view as a contiguous pointer: the view's own memory when its inner stride
/// is 1, else a copy in `scratch`. nullptr for an empty view.
template <class T>
const T* row_in(matrix_view<const T> v, std::ptrdiff_t b, std::vector<std::remove_const_t<T>>& scratch) {
  if (v.empty()) return nullptr;
  const std::ptrdiff_t cols = v.extent(1);
  if (v.stride(1) == 1 || cols == 1) return &v(b, 0);
  scratch.resize(static_cast<std::size_t>(cols));
  for (std::ptrdiff_t t = 0; t < cols; ++t) scratch[static_cast<std::size_t>(t)] = v(b, t);
  return scratch.data();
}

/// Where row b of an output goes: the view's memory, or `scratch` (then row_out_done copies it
/// back). nullptr for an empty view.
template <class T>
T* row_out(matrix_view<T> v, std::ptrdiff_t b, std::vector<T>& scratch) {
  if (v.empty()) return nullptr;
  const std::ptrdiff_t cols = v.extent(1);
  if (v.stride(1) == 1 || cols == 1) return &v(b, 0);
  scratch.resize(static_cast<std::size_t>(cols));
  return scratch.data();
}
template <class T>
void row_out_done(matrix_view<T> v, std::ptrdiff_t b, const T* row) {
  if (v.empty() || row == &v(b, 0)) return;
  for (std::ptrdiff_t t = 0; t < v.extent(1); ++t) v(b, t) = row[t];
}

/// Rows per thread so that each thread gets ≥ 16K elements (a pool hand-off costs microseconds).
inline std::ptrdiff_t min_rows_per_thread(std::ptrdiff_t cols) noexcept {
  constexpr std::ptrdiff_t min_elements = 16384;
  return std::max<std::ptrdiff_t>(1, (min_elements + cols - 1) / std::max<std::ptrdiff_t>(1, cols));
}

}  // namespace rlhf::detail
