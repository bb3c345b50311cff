// rlhf/tensor_view.hpp — the non-owning, strided, mdspan-shaped view every entry point takes.
//
// tensor_view<T, Rank, Memory> is a pointer, Rank extents and Rank strides (in elements).
// Member names follow std::mdspan (rank(), extent(r), stride(r), size(), data_handle(),
// operator()(i...)) so the type can become an alias of std::mdspan once the toolchain has it.
//
//   - Row-major ("layout right") unless strides are given; any non-negative strides allowed.
//   - Constness lives in T: tensor_view<const float, 2> is read-only; a mutable view converts
//     to a const one, never the reverse.
//   - Memory is host_memory (default) or device_memory. Backends check it at compile time: a
//     host view passed to the CUDA backend does not compile, and the reverse neither.
//   - Extents and strides are plain C arrays and every member is RLHF_HOST_DEVICE constexpr,
//     so views travel into CUDA kernels by value.
//
// Shapes are written (B, T), (B, T, V), (N, D): B batch, T tokens, V vocabulary, D hidden.
#pragma once

#include <rlhf/config.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>

namespace rlhf {

/// Memory-space tags carried in the view's type.
struct host_memory {};
struct device_memory {};

template <class T, std::size_t Rank, class Memory = host_memory>
class tensor_view {
  static_assert(Rank >= 1, "rlhf::tensor_view: Rank must be at least 1");
  static_assert(std::same_as<Memory, host_memory> || std::same_as<Memory, device_memory>,
                "rlhf::tensor_view: Memory must be rlhf::host_memory or rlhf::device_memory");

 public:
  using element_type = T;
  using value_type = std::remove_cv_t<T>;
  using index_type = std::ptrdiff_t;
  using size_type = std::size_t;
  using memory_space = Memory;

  [[nodiscard]] static constexpr std::size_t rank() noexcept { return Rank; }

  /// An empty view (all extents 0, null data).
  RLHF_HOST_DEVICE constexpr tensor_view() noexcept {
    for (std::size_t r = 0; r < Rank; ++r) {
      extents_[r] = 0;
      strides_[r] = 0;
    }
  }

  /// Row-major view of `data` with the given extents: tensor_view<float, 2>(p, B, T).
  template <std::integral... Extents>
    requires(sizeof...(Extents) == Rank)
  RLHF_HOST_DEVICE constexpr explicit tensor_view(T* data, Extents... extents) noexcept
      : data_(data), extents_{static_cast<index_type>(extents)...} {
    set_row_major_strides();
  }

  /// Strided view: extents and strides in elements.
  RLHF_HOST_DEVICE constexpr tensor_view(T* data, const index_type (&extents)[Rank],
                                         const index_type (&strides)[Rank]) noexcept
      : data_(data) {
    for (std::size_t r = 0; r < Rank; ++r) {
      extents_[r] = extents[r];
      strides_[r] = strides[r];
    }
  }

  /// A mutable view converts to a const view of the same memory space.
  template <class U>
    requires(!std::same_as<U, T> && std::same_as<std::remove_const_t<T>, U> && std::is_const_v<T>)
  RLHF_HOST_DEVICE constexpr tensor_view(const tensor_view<U, Rank, Memory>& other) noexcept
      : data_(other.data_handle()) {
    for (std::size_t r = 0; r < Rank; ++r) {
      extents_[r] = other.extent(r);
      strides_[r] = other.stride(r);
    }
  }

  [[nodiscard]] RLHF_HOST_DEVICE constexpr T* data_handle() const noexcept { return data_; }
  [[nodiscard]] RLHF_HOST_DEVICE constexpr index_type extent(std::size_t r) const noexcept {
    return extents_[r];
  }
  [[nodiscard]] RLHF_HOST_DEVICE constexpr index_type stride(std::size_t r) const noexcept {
    return strides_[r];
  }
  /// Number of elements (the product of the extents).
  [[nodiscard]] RLHF_HOST_DEVICE constexpr index_type size() const noexcept {
    index_type n = 1;
    for (std::size_t r = 0; r < Rank; ++r) n *= extents_[r];
    return n;
  }
  [[nodiscard]] RLHF_HOST_DEVICE constexpr bool empty() const noexcept { return size() == 0; }

  /// True when the elements are dense and row-major (the fast paths need it).
  [[nodiscard]] RLHF_HOST_DEVICE constexpr bool is_contiguous() const noexcept {
    index_type expected = 1;
    for (std::size_t r = Rank; r-- > 0;) {
      if (extents_[r] != 1 && strides_[r] != expected) return false;
      expected *= extents_[r];
    }
    return true;
  }

  template <std::integral... Indices>
    requires(sizeof...(Indices) == Rank)
  [[nodiscard]] RLHF_HOST_DEVICE constexpr T& operator()(Indices... indices) const noexcept {
    const index_type idx[Rank] = {static_cast<index_type>(indices)...};
    index_type offset = 0;
    for (std::size_t r = 0; r < Rank; ++r) offset += idx[r] * strides_[r];
    return data_[offset];
  }

  /// Row i of a rank ≥ 2 view: a view of rank Rank − 1 sharing the memory.
  [[nodiscard]] RLHF_HOST_DEVICE constexpr auto row(index_type i) const noexcept
    requires(Rank >= 2)
  {
    index_type extents[Rank - 1];
    index_type strides[Rank - 1];
    for (std::size_t r = 1; r < Rank; ++r) {
      extents[r - 1] = extents_[r];
      strides[r - 1] = strides_[r];
    }
    return tensor_view<T, Rank - 1, Memory>(data_ + i * strides_[0], extents, strides);
  }

  /// The same memory as a const view.
  [[nodiscard]] RLHF_HOST_DEVICE constexpr tensor_view<const T, Rank, Memory> as_const()
      const noexcept {
    return *this;
  }

 private:
  RLHF_HOST_DEVICE constexpr void set_row_major_strides() noexcept {
    index_type stride = 1;
    for (std::size_t r = Rank; r-- > 0;) {
      strides_[r] = stride;
      stride *= extents_[r];
    }
  }

  T* data_ = nullptr;
  index_type extents_[Rank];
  index_type strides_[Rank];
};

template <class T, std::integral... Extents>
tensor_view(T*, Extents...) -> tensor_view<T, sizeof...(Extents)>;

template <class T, class Memory = host_memory>
using vector_view = tensor_view<T, 1, Memory>;
template <class T, class Memory = host_memory>
using matrix_view = tensor_view<T, 2, Memory>;
template <class T, class Memory = host_memory>
using cube_view = tensor_view<T, 3, Memory>;

template <class T, std::size_t Rank>
using device_view = tensor_view<T, Rank, device_memory>;

/// Masks are bytes: nonzero = valid token, 0 = padding. (B, T) like the tensors they mask.
using mask_view = matrix_view<const std::uint8_t>;

/// "4x8": the extents joined by 'x', for error messages.
template <class T, std::size_t Rank, class Memory>
[[nodiscard]] std::string shape_string(const tensor_view<T, Rank, Memory>& v) {
  std::string s;
  for (std::size_t r = 0; r < Rank; ++r) {
    if (r) s += 'x';
    s += std::to_string(v.extent(r));
  }
  return s;
}

/// True when both views have the same rank and extents.
template <class T, class U, std::size_t Rank, std::size_t RankU, class M1, class M2>
[[nodiscard]] constexpr bool same_shape(const tensor_view<T, Rank, M1>& a,
                                        const tensor_view<U, RankU, M2>& b) noexcept {
  if constexpr (Rank != RankU) {
    return false;
  } else {
    for (std::size_t r = 0; r < Rank; ++r)
      if (a.extent(r) != b.extent(r)) return false;
    return true;
  }
}

}  // namespace rlhf
