// rlhf/cuda/kl.cuh — CUDA backend of <rlhf/kl.hpp>: per-token KL estimates and their
// derivative (elementwise, math::kl_token / math::kl_token_derivative — the CPU's formulas),
// the full-distribution KL (one block per position, a double sum over the vocabulary), and the
// sequence summaries (one block per row, rows combined by one block in a fixed order).
// kl_estimate, kl_estimate_backward and full_kl are asynchronous; summarize_kl returns host
// values and waits for backend.stream once.
#pragma once
#if !defined(__CUDACC__)
#error "<rlhf/cuda/kl.cuh> needs nvcc: include <rlhf/kl.hpp> from a .cu file"
#endif

#include <rlhf/kl.hpp>  // the public contract (options, checks); it includes this file back
#include <rlhf/backend.hpp>
#include <rlhf/cuda/common.cuh>
#include <rlhf/cuda/error.cuh>
#include <rlhf/math/kl.hpp>
#include <rlhf/tensor_view.hpp>

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace rlhf {
namespace cuda_impl {

/// One token's estimate, computed in C (T, or float for kl_precision::float32), as
/// cpu_impl::kl_estimate_rows: masked tokens are 0 unless mask_before_transform.
template <class C, class T>
__device__ T kl_estimate_at(const cpu_impl::kl_settings& s, T logp, T ref, bool valid) {
  if (!valid && !s.mask_before_transform) return T(0);
  const C log_ratio = static_cast<C>(logp) - static_cast<C>(ref);
  return static_cast<T>(math::kl_token<C>(s.estimator, s.clamp, static_cast<C>(s.clamp_value),
                                          log_ratio, valid));
}

template <class T>
__global__ void kl_estimate_kernel(device_view<const T, 2> logp, device_view<const T, 2> ref,
                                   device_mask_view mask, device_view<T, 2> out,
                                   cpu_impl::kl_settings s) {
  const std::ptrdiff_t cols = logp.extent(1), n = logp.extent(0) * cols;
  const bool masked = !mask.empty();
  for (std::ptrdiff_t i = static_cast<std::ptrdiff_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::ptrdiff_t>(gridDim.x) * blockDim.x) {
    const std::ptrdiff_t b = i / cols, t = i - b * cols;
    const bool valid = !masked || mask(b, t) != 0;
    out(b, t) = s.float32 ? kl_estimate_at<float>(s, logp(b, t), ref(b, t), valid)
                          : kl_estimate_at<T>(s, logp(b, t), ref(b, t), valid);
  }
}

template <class C, class T>
__device__ T kl_backward_at(const cpu_impl::kl_settings& s, T logp, T ref, T grad_kl) {
  const C log_ratio = static_cast<C>(logp) - static_cast<C>(ref);
  return static_cast<T>(static_cast<C>(grad_kl) *
                        math::kl_token_derivative<C>(s.estimator, s.clamp,
                                                     static_cast<C>(s.clamp_value), log_ratio));
}

template <class T>
__global__ void kl_backward_kernel(device_view<const T, 2> logp, device_view<const T, 2> ref,
                                   device_mask_view mask, device_view<const T, 2> grad_kl,
                                   device_view<T, 2> grad_logp, cpu_impl::kl_settings s,
                                   bool accumulate) {
  const std::ptrdiff_t cols = logp.extent(1), n = logp.extent(0) * cols;
  const bool masked = !mask.empty();
  for (std::ptrdiff_t i = static_cast<std::ptrdiff_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::ptrdiff_t>(gridDim.x) * blockDim.x) {
    const std::ptrdiff_t b = i / cols, t = i - b * cols;
    T g = T(0);
    if (!masked || mask(b, t) != 0)
      g = s.float32 ? kl_backward_at<float>(s, logp(b, t), ref(b, t), grad_kl(b, t))
                    : kl_backward_at<T>(s, logp(b, t), ref(b, t), grad_kl(b, t));
    grad_logp(b, t) = accumulate ? grad_logp(b, t) + g : g;
  }
}

/// One block per (b, t): Σ_v math::full_kl_term in double.
template <class T>
__global__ void full_kl_kernel(device_view<const T, 3> logp, device_view<const T, 3> ref,
                               device_mask_view mask, device_view<T, 2> out) {
  const std::ptrdiff_t cols = logp.extent(1);
  const std::ptrdiff_t b = static_cast<std::ptrdiff_t>(blockIdx.x) / cols;
  const std::ptrdiff_t t = static_cast<std::ptrdiff_t>(blockIdx.x) - b * cols;
  if (!mask.empty() && mask(b, t) == 0) {  // uniform over the block
    if (threadIdx.x == 0) out(b, t) = T(0);
    return;
  }
  double sum = 0.0;
  for (std::ptrdiff_t v = threadIdx.x; v < logp.extent(2); v += blockDim.x)
    sum += math::full_kl_term(static_cast<double>(logp(b, t, v)), static_cast<double>(ref(b, t, v)));
  sum = block_sum(sum);
  if (threadIdx.x == 0) out(b, t) = static_cast<T>(sum);
}

struct kl_row_table {
  double* sum;
  std::int64_t* count;
};

template <class T>
__global__ void kl_row_sums_kernel(device_view<const T, 2> kl, device_mask_view mask,
                                   kl_row_table rows, device_view<T, 1> row_sums) {
  const std::ptrdiff_t b = blockIdx.x;
  const bool masked = !mask.empty();
  double sum = 0.0;
  long long count = 0;
  for (std::ptrdiff_t t = threadIdx.x; t < kl.extent(1); t += blockDim.x) {
    const bool valid = !masked || mask(b, t) != 0;
    sum += valid ? static_cast<double>(kl(b, t)) : 0.0;
    count += valid ? 1 : 0;
  }
  sum = block_sum(sum);
  count = block_sum(count);
  if (threadIdx.x == 0) {
    rows.sum[b] = sum;
    rows.count[b] = count;
    if (!row_sums.empty()) row_sums(b) = static_cast<T>(sum);
  }
}

/// One block: kl_summary from the row table, as detail::summarize_kl_checked combines it.
__global__ void kl_summary_kernel(kl_row_table rows, std::ptrdiff_t n_rows, kl_summary* out) {
  double sum = 0.0, sum_of_means = 0.0;
  long long tokens = 0;
  for (std::ptrdiff_t b = threadIdx.x; b < n_rows; b += blockDim.x) {
    sum += rows.sum[b];
    tokens += rows.count[b];
    if (rows.count[b] > 0) sum_of_means += rows.sum[b] / static_cast<double>(rows.count[b]);
  }
  sum = block_sum(sum);
  sum_of_means = block_sum(sum_of_means);
  tokens = block_sum(tokens);
  if (threadIdx.x == 0) {
    const double n = static_cast<double>(n_rows);
    kl_summary s;
    s.mean_sequence_sum = sum / n;
    s.mean_sequence_mean = sum_of_means / n;
    s.tokens = tokens;
    s.mean_token = tokens > 0 ? sum / static_cast<double>(tokens) : 0.0;
    *out = s;
  }
}

constexpr std::size_t kl_summary_workspace_size(std::ptrdiff_t rows) noexcept {
  const auto n = static_cast<std::size_t>(rows > 0 ? rows : 0);
  return aligned_bytes<double>(n) + aligned_bytes<std::int64_t>(n) + aligned_bytes<kl_summary>(1);
}

template <class T>
void check_device_kl_inputs(const char* function, device_view<const T, 2> logp,
                            device_view<const T, 2> ref, device_mask_view mask) {
  detail::require_not_empty(function, "logp", logp);
  detail::require_same_shape(function, "logp", logp, "ref_logp", ref);
  if (!mask.empty()) detail::require_same_shape(function, "logp", logp, "mask", mask);
}

template <class T>
void kl_estimate(const cuda_backend& backend, device_view<const T, 2> logp,
                 device_view<const T, 2> ref, device_mask_view mask, device_view<T, 2> out,
                 const kl_options& o) {
  constexpr const char* function = "rlhf::kl_estimate()";
  check_device_kl_inputs(function, logp, ref, mask);
  detail::require_same_shape(function, "logp", logp, "out", out);
  const auto s = detail::check_kl_options(function, o);
  const std::ptrdiff_t n = logp.extent(0) * logp.extent(1);
  const unsigned grid = blocks_for(n, row_threads) < 4096u ? blocks_for(n, row_threads) : 4096u;
  kl_estimate_kernel<T><<<grid, row_threads, 0, backend.stream>>>(logp, ref, mask, out, s);
  check_launch(function);
}

template <class T>
void kl_estimate_backward(const cuda_backend& backend, device_view<const T, 2> logp,
                          device_view<const T, 2> ref, device_mask_view mask,
                          device_view<const T, 2> grad_kl, device_view<T, 2> grad_logp,
                          const kl_options& o) {
  constexpr const char* function = "rlhf::kl_estimate_backward()";
  check_device_kl_inputs(function, logp, ref, mask);
  detail::require_same_shape(function, "logp", logp, "grad_kl", grad_kl);
  detail::require_same_shape(function, "logp", logp, "grad_logp", grad_logp);
  const auto s = detail::check_kl_options(function, o);
  const std::ptrdiff_t n = logp.extent(0) * logp.extent(1);
  const unsigned grid = blocks_for(n, row_threads) < 4096u ? blocks_for(n, row_threads) : 4096u;
  kl_backward_kernel<T><<<grid, row_threads, 0, backend.stream>>>(logp, ref, mask, grad_kl,
                                                                  grad_logp, s, o.accumulate);
  check_launch(function);
}

template <class T>
void full_kl(const cuda_backend& backend, device_view<const T, 3> logp,
             device_view<const T, 3> ref, device_mask_view mask, device_view<T, 2> out) {
  constexpr const char* function = "rlhf::full_kl()";
  detail::require_not_empty(function, "logp_full", logp);
  detail::require_same_shape(function, "logp_full", logp, "ref_logp_full", ref);
  const auto require_rows_tokens = [&](const char* name, std::ptrdiff_t b, std::ptrdiff_t t,
                                       const std::string& shape) {
    if (b != logp.extent(0) || t != logp.extent(1))
      detail::fail(function, "logp_full is " + shape_string(logp) + " but " + name + " is " + shape);
  };
  if (!mask.empty()) require_rows_tokens("mask", mask.extent(0), mask.extent(1), shape_string(mask));
  require_rows_tokens("out", out.extent(0), out.extent(1), shape_string(out));
  full_kl_kernel<T><<<row_blocks(function, logp.extent(0) * logp.extent(1)), row_threads, 0,
                      backend.stream>>>(logp, ref, mask, out);
  check_launch(function);
}

template <class T>
kl_summary summarize_kl(const cuda_backend& backend, device_view<const T, 2> kl,
                        device_mask_view mask, device_view<T, 1> row_sums,
                        cuda_workspace workspace) {
  constexpr const char* function = "rlhf::summarize_kl()";
  detail::require_not_empty(function, "kl", kl);
  if (!mask.empty()) detail::require_same_shape(function, "kl", kl, "mask", mask);
  if (!row_sums.empty())
    detail::require_extent(function, "row_sums", row_sums, 0, kl.extent(0), "the row count of kl");
  const std::ptrdiff_t n_rows = kl.extent(0);
  workspace_lease ws(function, backend.stream, workspace, kl_summary_workspace_size(n_rows));
  kl_row_table rows{ws.carve<double>(static_cast<std::size_t>(n_rows)),
                    ws.carve<std::int64_t>(static_cast<std::size_t>(n_rows))};
  auto* d_summary = ws.carve<kl_summary>(1);
  kl_row_sums_kernel<T><<<row_blocks(function, n_rows), row_threads, 0, backend.stream>>>(
      kl, mask, rows, row_sums);
  check_launch(function);
  kl_summary_kernel<<<1, combine_threads, 0, backend.stream>>>(rows, n_rows, d_summary);
  check_launch(function);
  kl_summary s;
  read_back(function, backend.stream, d_summary, &s);
  return s;
}

}  // namespace cuda_impl

/// Workspace bytes of summarize_kl(cuda_backend, ...) for `rows` rows.
[[nodiscard]] inline std::size_t summarize_kl_workspace_bytes(std::ptrdiff_t rows) noexcept {
  return cuda_impl::kl_summary_workspace_size(rows);
}

/// Per-token KL estimate (B, T) on the GPU; asynchronous. See the CPU overload.
inline void kl_estimate(const cuda_backend& backend, device_view<const float, 2> logp,
                        device_view<const float, 2> ref_logp, device_mask_view mask,
                        device_view<float, 2> out, const kl_options& options = {}) {
  cuda_impl::kl_estimate<float>(backend, logp, ref_logp, mask, out, options);
}
inline void kl_estimate(const cuda_backend& backend, device_view<const double, 2> logp,
                        device_view<const double, 2> ref_logp, device_mask_view mask,
                        device_view<double, 2> out, const kl_options& options = {}) {
  cuda_impl::kl_estimate<double>(backend, logp, ref_logp, mask, out, options);
}

/// grad_logp = grad_kl · d kl / d logp (B, T) on the GPU; asynchronous.
inline void kl_estimate_backward(const cuda_backend& backend, device_view<const float, 2> logp,
                                 device_view<const float, 2> ref_logp, device_mask_view mask,
                                 device_view<const float, 2> grad_kl,
                                 device_view<float, 2> grad_logp, const kl_options& options = {}) {
  cuda_impl::kl_estimate_backward<float>(backend, logp, ref_logp, mask, grad_kl, grad_logp, options);
}
inline void kl_estimate_backward(const cuda_backend& backend, device_view<const double, 2> logp,
                                 device_view<const double, 2> ref_logp, device_mask_view mask,
                                 device_view<const double, 2> grad_kl,
                                 device_view<double, 2> grad_logp, const kl_options& options = {}) {
  cuda_impl::kl_estimate_backward<double>(backend, logp, ref_logp, mask, grad_kl, grad_logp,
                                          options);
}

/// Full-distribution KL per position (B, T) from (B, T, V) log-probabilities; asynchronous.
inline void full_kl(const cuda_backend& backend, device_view<const float, 3> logp_full,
                    device_view<const float, 3> ref_logp_full, device_mask_view mask,
                    device_view<float, 2> out) {
  cuda_impl::full_kl<float>(backend, logp_full, ref_logp_full, mask, out);
}
inline void full_kl(const cuda_backend& backend, device_view<const double, 3> logp_full,
                    device_view<const double, 3> ref_logp_full, device_mask_view mask,
                    device_view<double, 2> out) {
  cuda_impl::full_kl<double>(backend, logp_full, ref_logp_full, mask, out);
}

/// Sequence summaries of a per-token KL (B, T); optional per-row sums into row_sums (B,
/// device). Waits for the stream.
[[nodiscard]] inline kl_summary summarize_kl(const cuda_backend& backend,
                                             device_view<const float, 2> kl, device_mask_view mask,
                                             device_view<float, 1> row_sums = {},
                                             cuda_workspace workspace = {}) {
  return cuda_impl::summarize_kl<float>(backend, kl, mask, row_sums, workspace);
}
[[nodiscard]] inline kl_summary summarize_kl(const cuda_backend& backend,
                                             device_view<const double, 2> kl,
                                             device_mask_view mask,
                                             device_view<double, 1> row_sums = {},
                                             cuda_workspace workspace = {}) {
  return cuda_impl::summarize_kl<double>(backend, kl, mask, row_sums, workspace);
}

}  // namespace rlhf
