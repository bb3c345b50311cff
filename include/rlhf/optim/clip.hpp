// rlhf/optim/clip.hpp — gradient clipping by the global norm, torch.nn.utils.clip_grad_norm_
// semantics.
//
//   norm  = sqrt(Σ over every parameter and element of grad²)   (one norm over all parameters)
//   scale = max_norm / (norm + 1e-6)
//   grad ← grad · scale                                          only when scale < 1
//
//   auto clip = rlhf::clip_grad_norm(model.parameters(), 1.0);
//   if (!clip.finite()) { /* NaN/Inf gradients: skip this step, log clip.norm */ }
//
// Squares are summed in double whatever the parameter type; the scale is formed in the
// parameter type from the rounded norm, as PyTorch forms it in the gradients' dtype. PyTorch
// multiplies by min(scale, 1) always (a no-op when it is 1); here gradients are not touched
// then. A NaN or ±Inf norm is returned as is and the gradients are left unchanged: PyTorch
// would multiply them by NaN (or raise with error_if_nonfinite=True); the caller decides
// (the trainers skip the step and report it). Host-only (CPU memory).
#pragma once

#include <rlhf/concepts.hpp>
#include <rlhf/config.hpp>
#include <rlhf/detail/checks.hpp>

#include <cmath>
#include <concepts>
#include <cstddef>
#include <ranges>
#include <type_traits>

namespace rlhf {

namespace detail {
/// A range of parameter_ref<T> (what Trainable::parameters() returns).
template <class R, class T>
concept parameter_range = std::ranges::forward_range<R> &&
                          std::convertible_to<std::ranges::range_value_t<R>, parameter_ref<T>>;

/// The element type of a range of parameter_ref (float or double).
template <class R>
struct parameter_scalar {
  using type = void;
};
template <class R>
  requires requires(std::ranges::range_value_t<R> p) { p.value.data_handle(); }
struct parameter_scalar<R> {
  using type = std::remove_const_t<
      std::remove_pointer_t<decltype(std::declval<std::ranges::range_value_t<R>>().value.data_handle())>>;
};
template <class R>
using parameter_scalar_t = typename parameter_scalar<R>::type;

/// Apply f(T& x) to every element of a (possibly strided) vector view.
template <class T, class F>
void for_each_element(vector_view<T> v, F&& f) {
  const std::ptrdiff_t n = v.extent(0);
  if (v.stride(0) == 1) {
    T* p = v.data_handle();
    for (std::ptrdiff_t i = 0; i < n; ++i) f(p[i]);
  } else {
    for (std::ptrdiff_t i = 0; i < n; ++i) f(v(i));
  }
}
}  // namespace detail

/// What clip_grad_norm measured and did.
struct grad_norm {
  double norm = 0;       ///< the global L2 norm of the gradients before clipping (may be NaN/Inf)
  double scale = 1;      ///< the factor the gradients were multiplied by (1 when not clipped)
  bool clipped = false;  ///< true when the gradients were scaled down
  /// False when the norm is NaN or infinite: the gradients were left unchanged.
  [[nodiscard]] bool finite() const noexcept { return std::isfinite(norm); }
};

/// The global L2 norm of the gradients of `params`, summed in double.
template <class R>
  requires detail::parameter_range<R, detail::parameter_scalar_t<R>>
[[nodiscard]] double global_grad_norm(R&& params) {
  using T = detail::parameter_scalar_t<R>;
  double sum = 0;
  for (auto&& ref : params) {
    const parameter_ref<T> p = ref;
    detail::for_each_element(p.grad, [&](T& g) { sum += static_cast<double>(g) * static_cast<double>(g); });
  }
  return std::sqrt(sum);
}

/// Scale the gradients of `params` so that their global norm is at most max_norm (see the top
/// of this file). max_norm must be finite and positive (rlhf::invalid_argument otherwise).
template <class R>
  requires detail::parameter_range<R, detail::parameter_scalar_t<R>>
grad_norm clip_grad_norm(R&& params, double max_norm) {
  using T = detail::parameter_scalar_t<R>;
  detail::require(std::isfinite(max_norm) && max_norm > 0, "rlhf::clip_grad_norm()",
                  "max_norm must be finite and positive, got " + detail::number_string(max_norm));
  grad_norm result;
  result.norm = global_grad_norm(params);
  if (!std::isfinite(result.norm)) return result;
  const T scale = static_cast<T>(max_norm) / (static_cast<T>(result.norm) + static_cast<T>(1e-6));
  if (!(scale < T(1))) return result;
  result.scale = static_cast<double>(scale);
  result.clipped = true;
  for (auto&& ref : params) {
    const parameter_ref<T> p = ref;
    detail::for_each_element(p.grad, [&](T& g) { g *= scale; });
  }
  return result;
}

}  // namespace rlhf
