// rlhf/elementwise.hpp — small elementwise operations on (B, T) tensors.
//
//   clip_by_value(x, lo, hi) = max(min(x, hi), lo)
//
// Shapes: x, out (B, T); bounds are scalars or (B, T) tensors. When hi < lo the result is lo
// (TRL v0.11.4 trl/core.py clip_by_value evaluates torch.max(torch.min(x, hi), lo) in this
// order; the golden case clip_by_value_tensor_bounds has such an element). NaN in x stays NaN.
// `out` may be `x` itself.
//
//   rlhf::clip_by_value(rlhf::cpu, values, -0.2, 0.2, clipped);
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/config.hpp>
#include <rlhf/detail/checks.hpp>
#include <rlhf/detail/parallel.hpp>
#include <rlhf/tensor_view.hpp>

#include <cmath>
#include <concepts>
#include <string>
#include <type_traits>

namespace rlhf {

namespace cpu_impl {

/// max(min(x, hi), lo), NaN-propagating in x.
template <class T>
constexpr T clip_by_value_scalar(T x, T lo, T hi) noexcept {
  const T upper = x > hi ? hi : x;
  return upper < lo ? lo : upper;
}
static_assert(clip_by_value_scalar(0.0, -0.5, -1.0) == -0.5);  // hi < lo: lo
static_assert(clip_by_value_scalar(2.0, -1.0, 1.0) == 1.0);
static_assert(clip_by_value_scalar(-2.0, -1.0, 1.0) == -1.0);

template <class T, class Lo, class Hi>
void clip_by_value(const cpu_backend& backend, matrix_view<const T> x, const Lo& lo, const Hi& hi,
                   matrix_view<T> out) {
  const std::ptrdiff_t cols = x.extent(1);
  detail::parallel_for(
      backend, x.extent(0),
      [&](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t b = begin; b < end; ++b)
          for (std::ptrdiff_t t = 0; t < cols; ++t)
            out(b, t) = clip_by_value_scalar(x(b, t), lo(b, t), hi(b, t));
      },
      /*min_per_thread=*/8);
}

}  // namespace cpu_impl

namespace detail {

template <class T>
struct constant_bound {
  T value;
  constexpr T operator()(std::ptrdiff_t, std::ptrdiff_t) const noexcept { return value; }
};

template <class T>
void clip_by_value_checked(const cpu_backend& backend, matrix_view<const T> x, double lo,
                           double hi, matrix_view<T> out) {
  constexpr const char* function = "rlhf::clip_by_value()";
  require_not_empty(function, "x", x);
  require_same_shape(function, "x", x, "out", out);
  require(!std::isnan(lo), function, "lo must not be NaN");
  require(!std::isnan(hi), function, "hi must not be NaN");
  cpu_impl::clip_by_value(backend, x, constant_bound<T>{static_cast<T>(lo)},
                          constant_bound<T>{static_cast<T>(hi)}, out);
}

template <class T>
void clip_by_value_checked(const cpu_backend& backend, matrix_view<const T> x,
                           matrix_view<const T> lo, matrix_view<const T> hi, matrix_view<T> out) {
  constexpr const char* function = "rlhf::clip_by_value()";
  require_not_empty(function, "x", x);
  require_same_shape(function, "x", x, "lo", lo);
  require_same_shape(function, "x", x, "hi", hi);
  require_same_shape(function, "x", x, "out", out);
  cpu_impl::clip_by_value(backend, x, lo, hi, out);
}

}  // namespace detail

/// out = max(min(x, hi), lo) with scalar bounds (NaN bounds are an error). `out` may be `x`.
inline void clip_by_value(const cpu_backend& backend, matrix_view<const float> x, double lo,
                          double hi, matrix_view<float> out) {
  detail::clip_by_value_checked<float>(backend, x, lo, hi, out);
}
inline void clip_by_value(const cpu_backend& backend, matrix_view<const double> x, double lo,
                          double hi, matrix_view<double> out) {
  detail::clip_by_value_checked<double>(backend, x, lo, hi, out);
}

/// out = max(min(x, hi), lo) elementwise with (B, T) bounds (TRL clip_by_value, used for the
/// clipped value prediction clip(V, V_old − c, V_old + c)). `out` may be `x`.
inline void clip_by_value(const cpu_backend& backend, matrix_view<const float> x,
                          matrix_view<const float> lo, matrix_view<const float> hi,
                          matrix_view<float> out) {
  detail::clip_by_value_checked<float>(backend, x, lo, hi, out);
}
inline void clip_by_value(const cpu_backend& backend, matrix_view<const double> x,
                          matrix_view<const double> lo, matrix_view<const double> hi,
                          matrix_view<double> out) {
  detail::clip_by_value_checked<double>(backend, x, lo, hi, out);
}

#if !defined(__CUDACC__)
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void clip_by_value(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::clip_by_value(cuda_backend, ...) needs nvcc: call it from a .cu file that "
                "includes <rlhf/elementwise.hpp>");
}
#else
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void clip_by_value(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::clip_by_value(cuda_backend, ...) is not implemented for the CUDA backend yet");
}
#endif

}  // namespace rlhf
