// rlhf/tensor.hpp — owning, 64-byte aligned, row-major host buffer with a shape.
//
//   rlhf::tensor<float, 2> advantages(B, T);        // zero-initialised
//   rlhf::gae(rlhf::cpu, ..., advantages.view(), ...);
//
// Copies are deep, moves are cheap. Device storage lives in the CUDA backend
// (rlhf/cuda/device_buffer.cuh); there is no managed memory.
#pragma once

#include <rlhf/config.hpp>
#include <rlhf/error.hpp>
#include <rlhf/tensor_view.hpp>

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstring>
#include <limits>
#include <new>
#include <string>
#include <type_traits>
#include <utility>

namespace rlhf {

template <class T, std::size_t Rank>
class tensor {
  static_assert(std::is_trivially_copyable_v<T> && !std::is_const_v<T>,
                "rlhf::tensor holds trivially copyable, non-const elements");

 public:
  using value_type = T;
  using index_type = std::ptrdiff_t;
  static constexpr std::size_t alignment = 64;

  tensor() noexcept {
    for (auto& e : extents_) e = 0;
  }

  /// A zero-filled tensor of the given extents.
  template <std::integral... Extents>
    requires(sizeof...(Extents) == Rank)
  explicit tensor(Extents... extents) : extents_{static_cast<index_type>(extents)...} {
    allocate();
  }

  tensor(const tensor& other) : extents_{} {
    std::copy(std::begin(other.extents_), std::end(other.extents_), std::begin(extents_));
    allocate();
    if (size() > 0) std::memcpy(data_, other.data_, bytes());
  }
  tensor(tensor&& other) noexcept : data_(std::exchange(other.data_, nullptr)) {
    std::copy(std::begin(other.extents_), std::end(other.extents_), std::begin(extents_));
    for (auto& e : other.extents_) e = 0;
  }
  tensor& operator=(tensor other) noexcept {
    swap(other);
    return *this;
  }
  ~tensor() { release(); }

  void swap(tensor& other) noexcept {
    std::swap(data_, other.data_);
    for (std::size_t r = 0; r < Rank; ++r) std::swap(extents_[r], other.extents_[r]);
  }

  [[nodiscard]] T* data() noexcept { return data_; }
  [[nodiscard]] const T* data() const noexcept { return data_; }
  [[nodiscard]] index_type extent(std::size_t r) const noexcept { return extents_[r]; }
  [[nodiscard]] index_type size() const noexcept {
    index_type n = 1;
    for (auto e : extents_) n *= e;
    return n;
  }
  [[nodiscard]] bool empty() const noexcept { return size() == 0; }

  template <std::integral... Indices>
    requires(sizeof...(Indices) == Rank)
  [[nodiscard]] T& operator()(Indices... indices) noexcept {
    return view()(indices...);
  }
  template <std::integral... Indices>
    requires(sizeof...(Indices) == Rank)
  [[nodiscard]] const T& operator()(Indices... indices) const noexcept {
    return view()(indices...);
  }

  [[nodiscard]] tensor_view<T, Rank> view() noexcept { return make_view<T>(data_); }
  [[nodiscard]] tensor_view<const T, Rank> view() const noexcept {
    return make_view<const T>(data_);
  }
  operator tensor_view<T, Rank>() noexcept { return view(); }
  operator tensor_view<const T, Rank>() const noexcept { return view(); }

  void fill(const T& value) noexcept { std::fill(data_, data_ + size(), value); }

 private:
  template <class U>
  tensor_view<U, Rank> make_view(U* p) const noexcept {
    index_type strides[Rank];
    index_type s = 1;
    for (std::size_t r = Rank; r-- > 0;) {
      strides[r] = s;
      s *= extents_[r];
    }
    return tensor_view<U, Rank>(p, extents_, strides);
  }

  [[nodiscard]] std::size_t bytes() const noexcept {
    return static_cast<std::size_t>(size()) * sizeof(T);
  }

  void allocate() {
    index_type n = 1;
    for (auto e : extents_) {
      if (e < 0)
        RLHF_THROW(invalid_argument("rlhf::tensor: negative extent " + std::to_string(e)));
      if (e != 0 && n > std::numeric_limits<index_type>::max() / static_cast<index_type>(sizeof(T)) / e)
        RLHF_THROW(invalid_argument("rlhf::tensor: size overflows"));
      n *= e;
    }
    if (n == 0) return;
    data_ = static_cast<T*>(::operator new(bytes(), std::align_val_t{alignment}));
    std::memset(static_cast<void*>(data_), 0, bytes());
  }
  void release() noexcept {
    if (data_) ::operator delete(data_, std::align_val_t{alignment});
    data_ = nullptr;
  }

  T* data_ = nullptr;
  index_type extents_[Rank];
};

}  // namespace rlhf
