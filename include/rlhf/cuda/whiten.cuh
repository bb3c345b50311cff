// rlhf/cuda/whiten.cuh — CUDA backend of <rlhf/whiten.hpp>: masked sums, means, variances,
// moments and whitening on device views.
//
// The same two-pass algorithm as the CPU reference: (1) one block per row sums the valid
// elements, the whole row and the valid count in double; one block combines the rows into
// count, mean and unmasked sum; (2) one block per row sums (x − mean)² in double, one block
// combines them into the population variance; (3) an elementwise kernel applies
// math::whitening_coefficients / math::whiten_affine (the CPU's formulas, shared) in double and
// rounds to T once. Everything stays on the device: whiten() with a device moments output, and
// apply_whitening() with device moments, never wait for the stream; the overloads that return
// host values (masked_sum, masked_mean, masked_var, moments, whiten) synchronise it once.
// Reductions are fixed trees (cuda/common.cuh): the same bits run to run. Sums may differ from
// the CPU's in the last bits of the double accumulators (a different order of addition).
#pragma once
#if !defined(__CUDACC__)
#error "<rlhf/cuda/whiten.cuh> needs nvcc: include <rlhf/whiten.hpp> from a .cu file"
#endif

#include <rlhf/whiten.hpp>  // the public contract (options, checks); it includes this file back
#include <rlhf/backend.hpp>
#include <rlhf/cuda/common.cuh>
#include <rlhf/cuda/error.cuh>
#include <rlhf/math/whiten.hpp>
#include <rlhf/tensor_view.hpp>

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace rlhf {
namespace cuda_impl {

/// Four per-row arrays, the moments and the masked total.
constexpr std::size_t whiten_workspace_size(std::ptrdiff_t rows) noexcept {
  const auto n = static_cast<std::size_t>(rows > 0 ? rows : 0);
  return aligned_bytes<std::int64_t>(n) + 3 * aligned_bytes<double>(n) +
         aligned_bytes<masked_moments>(1) + aligned_bytes<double>(1);
}

/// Per-row sums of the first pass.
struct whiten_rows {
  std::int64_t* count;
  double* sum;
  double* all;
  double* squares;
};

template <class T>
__global__ void whiten_row_sums_kernel(device_view<const T, 2> x, device_mask_view mask,
                                       whiten_rows rows) {
  const std::ptrdiff_t b = blockIdx.x;
  const bool masked = !mask.empty();
  double sum = 0.0, all = 0.0;
  long long count = 0;
  for (std::ptrdiff_t t = threadIdx.x; t < x.extent(1); t += blockDim.x) {
    const double v = static_cast<double>(x(b, t));
    const bool valid = !masked || mask(b, t) != 0;
    all += v;
    sum += valid ? v : 0.0;  // a masked NaN never reaches the masked sum
    count += valid ? 1 : 0;
  }
  sum = block_sum(sum);
  all = block_sum(all);
  count = block_sum(count);
  if (threadIdx.x == 0) {
    rows.count[b] = count;
    rows.sum[b] = sum;
    rows.all[b] = all;
  }
}

/// One block: the rows' counts and sums → count, mean, unmasked sum (variance still 0).
__global__ void whiten_combine_means_kernel(whiten_rows rows, std::ptrdiff_t n_rows,
                                            masked_moments* out, double* masked_total) {
  double sum = 0.0, all = 0.0;
  long long count = 0;
  for (std::ptrdiff_t b = threadIdx.x; b < n_rows; b += blockDim.x) {
    count += rows.count[b];
    sum += rows.sum[b];
    all += rows.all[b];
  }
  sum = block_sum(sum);
  all = block_sum(all);
  count = block_sum(count);
  if (threadIdx.x == 0) {
    masked_moments m;
    m.count = count;
    m.unmasked_sum = all;
    m.mean = count > 0 ? sum / static_cast<double>(count) : 0.0;
    m.variance = 0.0;
    *out = m;
    if (masked_total != nullptr) *masked_total = sum;
  }
}

template <class T>
__global__ void whiten_row_squares_kernel(device_view<const T, 2> x, device_mask_view mask,
                                          const masked_moments* moments, double* squares) {
  const std::ptrdiff_t b = blockIdx.x;
  const bool masked = !mask.empty();
  const double center = moments->mean;
  double total = 0.0;
  for (std::ptrdiff_t t = threadIdx.x; t < x.extent(1); t += blockDim.x) {
    const double d = static_cast<double>(x(b, t)) - center;
    total += !masked || mask(b, t) != 0 ? d * d : 0.0;
  }
  total = block_sum(total);
  if (threadIdx.x == 0) squares[b] = total;
}

__global__ void whiten_combine_variance_kernel(const double* squares, std::ptrdiff_t n_rows,
                                               masked_moments* out) {
  double total = 0.0;
  for (std::ptrdiff_t b = threadIdx.x; b < n_rows; b += blockDim.x) total += squares[b];
  total = block_sum(total);
  if (threadIdx.x == 0 && out->count > 0) out->variance = total / static_cast<double>(out->count);
}

/// out(b) = Σ_valid x(b, ·) or their mean (0 for a row without a valid element), rounded to T.
template <class T>
__global__ void masked_row_reduce_kernel(device_view<const T, 2> x, device_mask_view mask,
                                         device_view<T, 1> out, bool mean) {
  const std::ptrdiff_t b = blockIdx.x;
  const bool masked = !mask.empty();
  double sum = 0.0;
  long long count = 0;
  for (std::ptrdiff_t t = threadIdx.x; t < x.extent(1); t += blockDim.x) {
    const bool valid = !masked || mask(b, t) != 0;
    sum += valid ? static_cast<double>(x(b, t)) : 0.0;
    count += valid ? 1 : 0;
  }
  sum = block_sum(sum);
  count = block_sum(count);
  if (threadIdx.x == 0)
    out(b) = static_cast<T>(mean ? (count > 0 ? sum / static_cast<double>(count) : 0.0) : sum);
}

/// The whitening map (see cpu/whiten.hpp row_apply: the same case analysis per element).
template <class T>
__global__ void apply_whitening_kernel(device_view<const T, 2> x, device_mask_view mask,
                                       const masked_moments* moments,
                                       masked_moments host_moments, whiten_options o,
                                       device_view<T, 2> out) {
  __shared__ math::whiten_coefficients c;
  __shared__ bool no_valid;
  if (threadIdx.x == 0) {
    const masked_moments m = moments != nullptr ? *moments : host_moments;
    c = math::whitening_coefficients(m, o.variance, o.epsilon, o.epsilon_mode, o.mean,
                                     o.shift_mean, o.scale);
    no_valid = m.count == 0;
  }
  __syncthreads();
  const std::ptrdiff_t cols = x.extent(1), n = x.extent(0) * cols;
  const bool masked = !mask.empty();
  for (std::ptrdiff_t i = static_cast<std::ptrdiff_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::ptrdiff_t>(gridDim.x) * blockDim.x) {
    const std::ptrdiff_t b = i / cols, t = i - b * cols;
    const T v = x(b, t);
    const bool valid = !masked || mask(b, t) != 0;
    T y;
    if (o.masked_positions == whiten_masked::keep_input && !valid) {
      y = v;
    } else if (no_valid || (!valid && o.masked_positions == whiten_masked::zero)) {
      y = o.masked_positions == whiten_masked::keep_input ? v : T(0);
    } else {
      y = static_cast<T>(math::whiten_affine(static_cast<double>(v), c.center, c.rstd, c.add_back));
    }
    out(b, t) = y;
  }
}

/// Elementwise launches: enough blocks to fill the GPU, grid-stride beyond that.
inline unsigned elementwise_blocks(std::ptrdiff_t n) noexcept {
  const unsigned wanted = blocks_for(n, row_threads);
  return wanted < 4096u ? wanted : 4096u;
}

/// Both passes; `moments` (device) receives the result, `masked_total` (device, may be null)
/// the plain masked sum.
template <class T>
void moments_async(const char* function, const cuda_backend& backend, device_view<const T, 2> x,
                   device_mask_view mask, masked_moments* moments, double* masked_total,
                   workspace_lease& ws, bool variance) {
  const std::ptrdiff_t n_rows = x.extent(0);
  const auto n = static_cast<std::size_t>(n_rows);
  whiten_rows rows{ws.carve<std::int64_t>(n), ws.carve<double>(n), ws.carve<double>(n),
                   ws.carve<double>(n)};
  const unsigned grid = row_blocks(function, n_rows);
  whiten_row_sums_kernel<T><<<grid, row_threads, 0, backend.stream>>>(x, mask, rows);
  check_launch(function);
  whiten_combine_means_kernel<<<1, combine_threads, 0, backend.stream>>>(rows, n_rows, moments,
                                                                          masked_total);
  check_launch(function);
  if (!variance) return;
  whiten_row_squares_kernel<T><<<grid, row_threads, 0, backend.stream>>>(x, mask, moments,
                                                                          rows.squares);
  check_launch(function);
  whiten_combine_variance_kernel<<<1, combine_threads, 0, backend.stream>>>(rows.squares, n_rows,
                                                                             moments);
  check_launch(function);
}

template <class T>
void check_device_masked_input(const char* function, device_view<const T, 2> x,
                               device_mask_view mask) {
  detail::require_not_empty(function, "x", x);
  if (!mask.empty()) detail::require_same_shape(function, "x", x, "mask", mask);
}

template <class T>
masked_moments moments_sync(const char* function, const cuda_backend& backend,
                            device_view<const T, 2> x, device_mask_view mask,
                            cuda_workspace workspace, bool variance, double* masked_total = nullptr) {
  check_device_masked_input(function, x, mask);
  workspace_lease ws(function, backend.stream, workspace, whiten_workspace_size(x.extent(0)));
  auto* d_moments = ws.carve<masked_moments>(1);
  auto* d_total = ws.carve<double>(1);
  moments_async<T>(function, backend, x, mask, d_moments, d_total, ws, variance);
  masked_moments m;
  read_back(function, backend.stream, d_moments, &m);
  if (masked_total != nullptr) read_back(function, backend.stream, d_total, masked_total);
  return m;
}

template <class T>
void apply_whitening_async(const char* function, const cuda_backend& backend,
                           device_view<const T, 2> x, device_mask_view mask,
                           const masked_moments* moments, device_view<T, 2> out,
                           const whiten_options& o, const masked_moments& host_moments = {}) {
  const std::ptrdiff_t n = x.extent(0) * x.extent(1);
  apply_whitening_kernel<T><<<elementwise_blocks(n), row_threads, 0, backend.stream>>>(
      x, mask, moments, host_moments, o, out);
  check_launch(function);
}

template <class T>
void whiten_device(const cuda_backend& backend, device_view<const T, 2> x, device_mask_view mask,
                   device_view<T, 2> out, device_view<masked_moments, 1> moments_out,
                   const whiten_options& o, cuda_workspace workspace, masked_moments* host_moments) {
  constexpr const char* function = "rlhf::whiten()";
  check_device_masked_input(function, x, mask);
  detail::require_same_shape(function, "x", x, "out", out);
  detail::check_whiten_options(function, o);
  if (!moments_out.empty())
    detail::require_extent(function, "moments", moments_out, 0, 1, "one masked_moments");
  workspace_lease ws(function, backend.stream, workspace, whiten_workspace_size(x.extent(0)));
  masked_moments* d_moments =
      moments_out.empty() ? ws.carve<masked_moments>(1) : moments_out.data_handle();
  if (moments_out.empty()) (void)ws.carve<double>(1);
  moments_async<T>(function, backend, x, mask, d_moments, nullptr, ws, true);
  apply_whitening_async<T>(function, backend, x, mask, d_moments, out, o);
  if (host_moments != nullptr) read_back(function, backend.stream, d_moments, host_moments);
}

template <class T>
void masked_row_reduce(const char* function, const cuda_backend& backend,
                       device_view<const T, 2> x, device_mask_view mask, device_view<T, 1> out,
                       bool mean) {
  check_device_masked_input(function, x, mask);
  detail::require_extent(function, "out", out, 0, x.extent(0), "the row count of x");
  masked_row_reduce_kernel<T><<<row_blocks(function, x.extent(0)), row_threads, 0,
                                backend.stream>>>(x, mask, out, mean);
  check_launch(function);
}

template <class T>
void check_apply_whitening(const char* function, device_view<const T, 2> x, device_mask_view mask,
                           device_view<T, 2> out, const whiten_options& o) {
  check_device_masked_input(function, x, mask);
  detail::require_same_shape(function, "x", x, "out", out);
  detail::check_whiten_options(function, o);
}

template <class T>
void apply_whitening_host_moments(const cuda_backend& backend, device_view<const T, 2> x,
                                  device_mask_view mask, const masked_moments& m,
                                  device_view<T, 2> out, const whiten_options& o) {
  constexpr const char* function = "rlhf::apply_whitening()";
  check_apply_whitening(function, x, mask, out, o);
  detail::check_moments(function, m);
  // The moments travel by value in the launch parameters: nothing to copy, nothing to wait for.
  apply_whitening_async<T>(function, backend, x, mask, nullptr, out, o, m);
}

template <class T>
void apply_whitening_device_moments(const cuda_backend& backend, device_view<const T, 2> x,
                                    device_mask_view mask,
                                    device_view<const masked_moments, 1> moments,
                                    device_view<T, 2> out, const whiten_options& o) {
  constexpr const char* function = "rlhf::apply_whitening()";
  check_apply_whitening(function, x, mask, out, o);
  detail::require_extent(function, "moments", moments, 0, 1, "one masked_moments");
  apply_whitening_async<T>(function, backend, x, mask, moments.data_handle(), out, o);
}

}  // namespace cuda_impl

/// Workspace bytes of the CUDA whitening and masked-statistics calls for x with `rows` rows.
[[nodiscard]] inline std::size_t whiten_workspace_bytes(std::ptrdiff_t rows) noexcept {
  return cuda_impl::whiten_workspace_size(rows);
}

// --- Σ, mean, variance, moments: host results (the call waits for backend.stream) ----------

/// Σ of the valid elements of x (B, T) in double; waits for the stream.
[[nodiscard]] inline double masked_sum(const cuda_backend& backend, device_view<const float, 2> x,
                                       device_mask_view mask, cuda_workspace workspace = {}) {
  double total = 0.0;
  (void)cuda_impl::moments_sync<float>("rlhf::masked_sum()", backend, x, mask, workspace, false,
                                       &total);
  return total;
}
[[nodiscard]] inline double masked_sum(const cuda_backend& backend, device_view<const double, 2> x,
                                       device_mask_view mask, cuda_workspace workspace = {}) {
  double total = 0.0;
  (void)cuda_impl::moments_sync<double>("rlhf::masked_sum()", backend, x, mask, workspace, false,
                                        &total);
  return total;
}

/// Mean of the valid elements (0 when none is valid); waits for the stream.
[[nodiscard]] inline double masked_mean(const cuda_backend& backend, device_view<const float, 2> x,
                                        device_mask_view mask, cuda_workspace workspace = {}) {
  return cuda_impl::moments_sync<float>("rlhf::masked_mean()", backend, x, mask, workspace, false)
      .mean;
}
[[nodiscard]] inline double masked_mean(const cuda_backend& backend,
                                        device_view<const double, 2> x, device_mask_view mask,
                                        cuda_workspace workspace = {}) {
  return cuda_impl::moments_sync<double>("rlhf::masked_mean()", backend, x, mask, workspace, false)
      .mean;
}

/// Variance of the valid elements (two-pass; see the CPU overload); waits for the stream.
[[nodiscard]] inline double masked_var(const cuda_backend& backend, device_view<const float, 2> x,
                                       device_mask_view mask,
                                       variance_kind kind = variance_kind::population,
                                       cuda_workspace workspace = {}) {
  detail::check_variance_kind("rlhf::masked_var()", kind);
  return cuda_impl::moments_sync<float>("rlhf::masked_var()", backend, x, mask, workspace, true)
      .variance_as(kind);
}
[[nodiscard]] inline double masked_var(const cuda_backend& backend, device_view<const double, 2> x,
                                       device_mask_view mask,
                                       variance_kind kind = variance_kind::population,
                                       cuda_workspace workspace = {}) {
  detail::check_variance_kind("rlhf::masked_var()", kind);
  return cuda_impl::moments_sync<double>("rlhf::masked_var()", backend, x, mask, workspace, true)
      .variance_as(kind);
}

/// Count, mean, population variance and unmasked sum of x (B, T); waits for the stream.
[[nodiscard]] inline masked_moments moments(const cuda_backend& backend,
                                            device_view<const float, 2> x, device_mask_view mask,
                                            cuda_workspace workspace = {}) {
  return cuda_impl::moments_sync<float>("rlhf::moments()", backend, x, mask, workspace, true);
}
[[nodiscard]] inline masked_moments moments(const cuda_backend& backend,
                                            device_view<const double, 2> x, device_mask_view mask,
                                            cuda_workspace workspace = {}) {
  return cuda_impl::moments_sync<double>("rlhf::moments()", backend, x, mask, workspace, true);
}

// --- per-row Σ and mean: device outputs, asynchronous ---------------------------------------

/// Per-row Σ of the valid elements, out (B); asynchronous.
inline void masked_sum(const cuda_backend& backend, device_view<const float, 2> x,
                       device_mask_view mask, device_view<float, 1> out) {
  cuda_impl::masked_row_reduce<float>("rlhf::masked_sum()", backend, x, mask, out, false);
}
inline void masked_sum(const cuda_backend& backend, device_view<const double, 2> x,
                       device_mask_view mask, device_view<double, 1> out) {
  cuda_impl::masked_row_reduce<double>("rlhf::masked_sum()", backend, x, mask, out, false);
}
/// Per-row mean of the valid elements (0 for a row without one), out (B); asynchronous.
inline void masked_mean(const cuda_backend& backend, device_view<const float, 2> x,
                        device_mask_view mask, device_view<float, 1> out) {
  cuda_impl::masked_row_reduce<float>("rlhf::masked_mean()", backend, x, mask, out, true);
}
inline void masked_mean(const cuda_backend& backend, device_view<const double, 2> x,
                        device_mask_view mask, device_view<double, 1> out) {
  cuda_impl::masked_row_reduce<double>("rlhf::masked_mean()", backend, x, mask, out, true);
}

// --- whitening -----------------------------------------------------------------------------

/// out = the whitening map of host `moments` (e.g. merged over ranks) applied to x;
/// asynchronous (the moments travel in the launch parameters).
inline void apply_whitening(const cuda_backend& backend, device_view<const float, 2> x,
                            device_mask_view mask, const masked_moments& moments,
                            device_view<float, 2> out, const whiten_options& options = {}) {
  cuda_impl::apply_whitening_host_moments<float>(backend, x, mask, moments, out, options);
}
inline void apply_whitening(const cuda_backend& backend, device_view<const double, 2> x,
                            device_mask_view mask, const masked_moments& moments,
                            device_view<double, 2> out, const whiten_options& options = {}) {
  cuda_impl::apply_whitening_host_moments<double>(backend, x, mask, moments, out, options);
}
/// The same with moments in device memory (one masked_moments, e.g. from the async whiten());
/// asynchronous, needs no workspace.
inline void apply_whitening(const cuda_backend& backend, device_view<const float, 2> x,
                            device_mask_view mask, device_view<const masked_moments, 1> moments,
                            device_view<float, 2> out, const whiten_options& options = {}) {
  cuda_impl::apply_whitening_device_moments<float>(backend, x, mask, moments, out, options);
}
inline void apply_whitening(const cuda_backend& backend, device_view<const double, 2> x,
                            device_mask_view mask, device_view<const masked_moments, 1> moments,
                            device_view<double, 2> out, const whiten_options& options = {}) {
  cuda_impl::apply_whitening_device_moments<double>(backend, x, mask, moments, out, options);
}

/// Whitens x into out with its own moments, which it returns (waits for the stream once).
/// `out` may be `x`.
inline masked_moments whiten(const cuda_backend& backend, device_view<const float, 2> x,
                             device_mask_view mask, device_view<float, 2> out,
                             const whiten_options& options = {}, cuda_workspace workspace = {}) {
  masked_moments m;
  cuda_impl::whiten_device<float>(backend, x, mask, out, {}, options, workspace, &m);
  return m;
}
inline masked_moments whiten(const cuda_backend& backend, device_view<const double, 2> x,
                             device_mask_view mask, device_view<double, 2> out,
                             const whiten_options& options = {}, cuda_workspace workspace = {}) {
  masked_moments m;
  cuda_impl::whiten_device<double>(backend, x, mask, out, {}, options, workspace, &m);
  return m;
}
/// Asynchronous whitening: the moments go to device memory (`moments`, one element) and the
/// call never waits for the stream.
inline void whiten(const cuda_backend& backend, device_view<const float, 2> x,
                   device_mask_view mask, device_view<float, 2> out,
                   device_view<masked_moments, 1> moments, const whiten_options& options = {},
                   cuda_workspace workspace = {}) {
  detail::require_not_empty("rlhf::whiten()", "moments", moments);
  cuda_impl::whiten_device<float>(backend, x, mask, out, moments, options, workspace, nullptr);
}
inline void whiten(const cuda_backend& backend, device_view<const double, 2> x,
                   device_mask_view mask, device_view<double, 2> out,
                   device_view<masked_moments, 1> moments, const whiten_options& options = {},
                   cuda_workspace workspace = {}) {
  detail::require_not_empty("rlhf::whiten()", "moments", moments);
  cuda_impl::whiten_device<double>(backend, x, mask, out, moments, options, workspace, nullptr);
}

}  // namespace rlhf
