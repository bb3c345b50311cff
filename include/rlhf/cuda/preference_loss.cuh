// rlhf/cuda/preference_loss.cuh — CUDA backend of <rlhf/preference_loss.hpp>: the pairwise
// Bradley–Terry loss, forward and backward in one kernel. Each pair is evaluated in double
// with math::bradley_terry / math::log_one_plus_exp (the CPU's formulas, shared) and the
// statistics are reduced by one block in a fixed order (the loss is O(B): one block is
// plenty). The call returns host statistics and waits for backend.stream once.
// K-wise ranking and best-of-N are not on the GPU yet.
#pragma once
#if !defined(__CUDACC__)
#error "<rlhf/cuda/preference_loss.cuh> needs nvcc: include <rlhf/preference_loss.hpp> from a .cu file"
#endif

#include <rlhf/preference_loss.hpp>  // the public contract; it includes this file back
#include <rlhf/backend.hpp>
#include <rlhf/cuda/common.cuh>
#include <rlhf/cuda/error.cuh>
#include <rlhf/math/preference_loss.hpp>
#include <rlhf/tensor_view.hpp>

#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <string>

namespace rlhf {
namespace cuda_impl {

/// cpu_impl::pairwise_preference_loss, pair for pair; the sums are combined in a fixed tree.
template <class T>
__global__ void pairwise_loss_kernel(device_view<const T, 1> chosen, device_view<const T, 1> rejected,
                                     device_view<const T, 1> margin, device_view<T, 1> dchosen,
                                     device_view<T, 1> drejected, double center_coef,
                                     bool log_exp_form, pairwise_loss_stats* out) {
  const std::ptrdiff_t n = chosen.extent(0);
  const double inv_n = 1.0 / static_cast<double>(n);
  const bool has_margin = !margin.empty();
  double loss_sum = 0, center_sum = 0, margin_sum = 0, chosen_sum = 0, rejected_sum = 0;
  long long correct = 0;
  for (std::ptrdiff_t i = threadIdx.x; i < n; i += blockDim.x) {
    const double c = static_cast<double>(chosen(i));
    const double r = static_cast<double>(rejected(i));
    const double m = has_margin ? static_cast<double>(margin(i)) : 0.0;
    const auto term = math::pairwise_term(c, r, m, log_exp_form);
    const double loss = term.loss, dloss_dc = term.slope;
    const double sum = c + r;
    loss_sum += loss;
    center_sum += sum * sum;
    margin_sum += c - r;
    chosen_sum += c;
    rejected_sum += r;
    correct += c > r ? 1 : 0;
    const double dcenter = center_coef * 2.0 * sum * inv_n;
    if (!dchosen.empty()) dchosen(i) = static_cast<T>(dloss_dc * inv_n + dcenter);
    if (!drejected.empty()) drejected(i) = static_cast<T>(-dloss_dc * inv_n + dcenter);
  }
  loss_sum = block_sum(loss_sum);
  center_sum = block_sum(center_sum);
  margin_sum = block_sum(margin_sum);
  chosen_sum = block_sum(chosen_sum);
  rejected_sum = block_sum(rejected_sum);
  correct = block_sum(correct);
  if (threadIdx.x != 0) return;
  const double count = static_cast<double>(n);
  pairwise_loss_stats s;
  s.loss = loss_sum / count;
  if (center_coef != 0.0) s.loss += center_coef * (center_sum / count);
  s.accuracy = static_cast<double>(correct) / count;
  s.mean_margin = margin_sum / count;
  s.chosen_mean = chosen_sum / count;
  s.rejected_mean = rejected_sum / count;
  *out = s;
}

template <class T>
pairwise_loss_stats pairwise_preference_loss(const cuda_backend& backend,
                                             device_view<const T, 1> chosen,
                                             device_view<const T, 1> rejected,
                                             device_view<const T, 1> margin,
                                             device_view<T, 1> dchosen, device_view<T, 1> drejected,
                                             const pairwise_loss_options& options,
                                             cuda_workspace workspace) {
  constexpr const char* function = "rlhf::pairwise_preference_loss()";
  detail::require_not_empty(function, "chosen", chosen);
  detail::require_same_shape(function, "chosen", chosen, "rejected", rejected);
  if (!margin.empty()) detail::require_same_shape(function, "chosen", chosen, "margin", margin);
  if (!dchosen.empty()) detail::require_same_shape(function, "chosen", chosen, "dchosen", dchosen);
  if (!drejected.empty())
    detail::require_same_shape(function, "chosen", chosen, "drejected", drejected);
  detail::require(std::isfinite(options.center_coef) && options.center_coef >= 0.0, function,
                  "center_coef must be finite and >= 0, got " +
                      detail::number_string(options.center_coef));
  detail::require(options.form == pairwise_form::log_sigmoid || options.form == pairwise_form::log_exp,
                  function,
                  "form must be pairwise_form::log_sigmoid or pairwise_form::log_exp, got " +
                      std::to_string(static_cast<int>(options.form)));
  workspace_lease ws(function, backend.stream, workspace, aligned_bytes<pairwise_loss_stats>(1));
  auto* d_stats = ws.carve<pairwise_loss_stats>(1);
  pairwise_loss_kernel<T><<<1, combine_threads, 0, backend.stream>>>(
      chosen, rejected, margin, dchosen, drejected, options.center_coef,
      options.form == pairwise_form::log_exp, d_stats);
  check_launch(function);
  pairwise_loss_stats s;
  read_back(function, backend.stream, d_stats, &s);
  return s;
}

}  // namespace cuda_impl

/// Workspace bytes of pairwise_preference_loss(cuda_backend, ...) (independent of B).
[[nodiscard]] inline std::size_t pairwise_preference_workspace_bytes() noexcept {
  return cuda_impl::aligned_bytes<pairwise_loss_stats>(1);
}

/// Pairwise Bradley–Terry loss on the GPU (device views; empty margin / gradient = none / skip);
/// returns the statistics (waits for the stream once).
inline pairwise_loss_stats pairwise_preference_loss(
    const cuda_backend& backend, device_view<const float, 1> chosen,
    device_view<const float, 1> rejected, device_view<const float, 1> margin,
    device_view<float, 1> dchosen, device_view<float, 1> drejected,
    const pairwise_loss_options& options = {}, cuda_workspace workspace = {}) {
  return cuda_impl::pairwise_preference_loss<float>(backend, chosen, rejected, margin, dchosen,
                                                    drejected, options, workspace);
}
inline pairwise_loss_stats pairwise_preference_loss(
    const cuda_backend& backend, device_view<const double, 1> chosen,
    device_view<const double, 1> rejected, device_view<const double, 1> margin,
    device_view<double, 1> dchosen, device_view<double, 1> drejected,
    const pairwise_loss_options& options = {}, cuda_workspace workspace = {}) {
  return cuda_impl::pairwise_preference_loss<double>(backend, chosen, rejected, margin, dchosen,
                                                     drejected, options, workspace);
}

}  // namespace rlhf
