// rlhf/cuda/ppo.cuh — CUDA backend of <rlhf/ppo.hpp>: the clipped policy loss and the clipped
// value loss, forward and backward fused, with every statistic of the CPU overloads.
//
// The CPU reference's plan, on the device (nothing waits for the stream until the statistics
// are read back at the end):
//   0. one block per row counts the valid tokens (and, for the value loss, sums R, V_old and
//      R − V); one block combines the rows into the token and sequence counts (and means), from
//      which every row's reduction weight follows (cpu_impl::ppo_row_weights' rule);
//   1. one block per row evaluates math::ppo_clipped_surrogate / math::ppo_clipped_value per
//      token (the CPU's formulas), writes the gradient already multiplied by the row's weight
//      (computed in double, rounded to T once, as the CPU does) and sums the row's statistics in
//      double;
//   2. one block combines the rows in a fixed order into the totals (loss per the reduction,
//      clipfrac, KL estimates, ratio moments, ...); with ratio_threshold a batch over the
//      threshold has its gradient zeroed on the device.
// Differences from the CPU, all within rounding: e^ℓ is CUDA's expf/exp (the CPU's float
// kernels use math::fast_exp, ≤ 2 ulp apart); sums are added in a different (fixed) order;
// variances are about the global mean (two-pass) or 1 for the ratio, instead of per-row
// shifts merged with Chan's formula.
#pragma once
#if !defined(__CUDACC__)
#error "<rlhf/cuda/ppo.cuh> needs nvcc: include <rlhf/ppo.hpp> from a .cu file"
#endif

#include <rlhf/ppo.hpp>  // the public contract (options, checks); it includes this file back
#include <rlhf/backend.hpp>
#include <rlhf/cuda/common.cuh>
#include <rlhf/cuda/error.cuh>
#include <rlhf/math/ppo.hpp>
#include <rlhf/tensor_view.hpp>

#include <cuda_runtime.h>
#include <math_constants.h>

#include <cstddef>
#include <cstdint>

namespace rlhf {
namespace cuda_impl {

/// Counts (and means) of step 0, and the reduction rule, as the row kernels read them.
struct ppo_batch {
  long long tokens = 0;
  long long sequences = 0;
  double mean_returns = 0;     ///< value loss only
  double mean_old_values = 0;  ///< value loss only
  double mean_residual = 0;    ///< value loss only: mean of R − V
};

/// cpu_impl::ppo_row_weights::weight on the device.
__device__ inline double ppo_weight(const cpu_impl::ppo_reduction_rule& rule, const ppo_batch& batch,
                                    long long count) {
  if (count == 0) return 0.0;
  if (!rule.per_sequence) return rule.divisor > 0 ? 1.0 / rule.divisor : 1.0 / static_cast<double>(batch.tokens);
  const double denominator = rule.divisor > 0 ? rule.divisor : static_cast<double>(batch.sequences);
  return 1.0 / (static_cast<double>(count) * denominator);
}

/// One row's term of the reduced loss: Σ (token) or Σ / n_b (sequence); 0 for an empty row.
__device__ inline double ppo_row_term(const cpu_impl::ppo_reduction_rule& rule, double sum,
                                      long long count) {
  if (count == 0) return 0.0;
  return rule.per_sequence ? sum / static_cast<double>(count) : sum;
}

/// The reduced loss from the sum of the row terms (cpu_impl::ppo_row_weights::reduce).
__device__ inline double ppo_reduce_total(const cpu_impl::ppo_reduction_rule& rule,
                                          const ppo_batch& batch, double total) {
  if (rule.divisor > 0) return total / rule.divisor;
  const long long n = rule.per_sequence ? batch.sequences : batch.tokens;
  return n > 0 ? total / static_cast<double>(n) : 0.0;
}

// --- step 0 ---------------------------------------------------------------------------------

/// Per row: the valid count and (when `sums`) Σ R, Σ V_old, Σ (R − V) of the value loss.
template <class T>
__global__ void ppo_count_kernel(device_mask_view mask, std::ptrdiff_t cols,
                                 device_view<const T, 2> values, device_view<const T, 2> old_values,
                                 device_view<const T, 2> returns, long long* counts, double* sums) {
  const std::ptrdiff_t b = blockIdx.x;
  const bool masked = !mask.empty();
  const bool value_sums = sums != nullptr;
  long long count = 0;
  double ret = 0, old = 0, res = 0;
  for (std::ptrdiff_t t = threadIdx.x; t < cols; t += blockDim.x) {
    if (masked && mask(b, t) == 0) continue;
    ++count;
    if (value_sums) {
      const double r = static_cast<double>(returns(b, t));
      ret += r;
      old += static_cast<double>(old_values(b, t));
      res += r - static_cast<double>(values(b, t));
    }
  }
  count = block_sum(count);
  if (value_sums) {
    ret = block_sum(ret);
    old = block_sum(old);
    res = block_sum(res);
  }
  if (threadIdx.x == 0) {
    counts[b] = count;
    if (value_sums) {
      sums[3 * b] = ret;
      sums[3 * b + 1] = old;
      sums[3 * b + 2] = res;
    }
  }
}

__global__ void ppo_batch_kernel(const long long* counts, const double* sums, std::ptrdiff_t n_rows,
                                 ppo_batch* out) {
  long long tokens = 0, sequences = 0;
  double ret = 0, old = 0, res = 0;
  for (std::ptrdiff_t b = threadIdx.x; b < n_rows; b += blockDim.x) {
    tokens += counts[b];
    sequences += counts[b] > 0 ? 1 : 0;
    if (sums != nullptr) {
      ret += sums[3 * b];
      old += sums[3 * b + 1];
      res += sums[3 * b + 2];
    }
  }
  tokens = block_sum(tokens);
  sequences = block_sum(sequences);
  ret = block_sum(ret);
  old = block_sum(old);
  res = block_sum(res);
  if (threadIdx.x == 0) {
    ppo_batch batch;
    batch.tokens = tokens;
    batch.sequences = sequences;
    const double n = tokens > 0 ? static_cast<double>(tokens) : 1.0;
    batch.mean_returns = ret / n;
    batch.mean_old_values = old / n;
    batch.mean_residual = res / n;
    *out = batch;
  }
}

// --- policy ----------------------------------------------------------------------------------

/// Per-row sums of the policy pass (cpu_impl::ppo_policy_row, ratio moments as shifted sums).
struct ppo_policy_row_sums {
  long long clipped;
  long long dual_clipped;
  double loss;
  double neg_log_ratio;
  double sq_log_ratio;
  double advantage;
  double ratio_max;
  double ratio_s1;  ///< Σ (r − 1)
  double ratio_s2;  ///< Σ (r − 1)²
};

template <class T>
__device__ inline T ppo_device_exp(T x) {
  using std::exp;
  return exp(x);
}

template <class T>
__global__ void ppo_policy_row_kernel(device_view<const T, 2> logp, device_view<const T, 2> old_logp,
                                      device_view<const T, 2> advantages, device_mask_view mask,
                                      device_view<T, 2> dlogp, cpu_impl::ppo_policy_config<T> cfg,
                                      const long long* counts, const ppo_batch* batch_in,
                                      ppo_policy_row_sums* rows) {
  const std::ptrdiff_t b = blockIdx.x;
  const bool masked = !mask.empty();
  const bool write_grad = !dlogp.empty();
  const ppo_batch batch = *batch_in;
  const double weight = ppo_weight(cfg.reduction, batch, counts[b]);
  long long clipped = 0, dual_clipped = 0;
  double loss = 0, neg_log_ratio = 0, sq_log_ratio = 0, advantage_sum = 0, s1 = 0, s2 = 0;
  double ratio_max = -CUDART_INF;
  for (std::ptrdiff_t t = threadIdx.x; t < logp.extent(1); t += blockDim.x) {
    if (masked && mask(b, t) == 0) {
      if (write_grad) dlogp(b, t) = T(0);
      continue;
    }
    // cpu_impl::ppo_policy_row_scalar, token for token.
    const T lp = logp(b, t);
    const T old = old_logp(b, t);
    const T log_ratio = lp - old;
    T clamped = log_ratio;
    bool passes = true;
    if (cfg.use_log_ratio_clamp) {
      passes = !(log_ratio < -cfg.log_ratio_clamp) && !(log_ratio > cfg.log_ratio_clamp);
      clamped = log_ratio < -cfg.log_ratio_clamp
                    ? -cfg.log_ratio_clamp
                    : (log_ratio > cfg.log_ratio_clamp ? cfg.log_ratio_clamp : log_ratio);
    }
    const T ratio = ppo_device_exp(clamped);
    const T advantage = advantages(b, t);
    const auto term = math::ppo_clipped_surrogate(ratio, passes ? ratio : T(0), advantage,
                                                  cfg.ratio_low, cfg.ratio_high,
                                                  cfg.use_dual_clip, cfg.dual_clip);
    if (write_grad) dlogp(b, t) = static_cast<T>(static_cast<double>(term.grad) * weight);
    loss += static_cast<double>(term.loss);
    clipped += term.clipped ? 1 : 0;
    dual_clipped += term.dual_clipped ? 1 : 0;
    neg_log_ratio += static_cast<double>(old - lp);
    sq_log_ratio += static_cast<double>(log_ratio) * static_cast<double>(log_ratio);
    advantage_sum += static_cast<double>(advantage);
    const double r = static_cast<double>(ratio);
    ratio_max = nan_max_op{}(ratio_max, r);
    const double d = r - 1.0;
    s1 += d;
    s2 += d * d;
  }
  clipped = block_sum(clipped);
  dual_clipped = block_sum(dual_clipped);
  loss = block_sum(loss);
  neg_log_ratio = block_sum(neg_log_ratio);
  sq_log_ratio = block_sum(sq_log_ratio);
  advantage_sum = block_sum(advantage_sum);
  s1 = block_sum(s1);
  s2 = block_sum(s2);
  ratio_max = block_reduce(ratio_max, nan_max_op{});
  if (threadIdx.x == 0)
    rows[b] = {clipped, dual_clipped, loss, neg_log_ratio, sq_log_ratio, advantage_sum, ratio_max,
               s1, s2};
}

/// One block: the totals of the policy pass (cpu_impl::ppo_policy's combination).
__global__ void ppo_policy_totals_kernel(const ppo_policy_row_sums* rows, const long long* counts,
                                         std::ptrdiff_t n_rows, const ppo_batch* batch_in,
                                         cpu_impl::ppo_reduction_rule rule, bool use_threshold,
                                         double threshold, cpu_impl::ppo_policy_totals* out) {
  const ppo_batch batch = *batch_in;
  long long clipped = 0, dual_clipped = 0;
  double loss = 0, neg_log_ratio = 0, sq_log_ratio = 0, advantage = 0, s1 = 0, s2 = 0;
  double ratio_max = -CUDART_INF;
  for (std::ptrdiff_t b = threadIdx.x; b < n_rows; b += blockDim.x) {
    const ppo_policy_row_sums& r = rows[b];
    clipped += r.clipped;
    dual_clipped += r.dual_clipped;
    loss += ppo_row_term(rule, r.loss, counts[b]);
    neg_log_ratio += r.neg_log_ratio;
    sq_log_ratio += r.sq_log_ratio;
    advantage += r.advantage;
    s1 += r.ratio_s1;
    s2 += r.ratio_s2;
    if (counts[b] > 0) ratio_max = nan_max_op{}(ratio_max, r.ratio_max);
  }
  clipped = block_sum(clipped);
  dual_clipped = block_sum(dual_clipped);
  loss = block_sum(loss);
  neg_log_ratio = block_sum(neg_log_ratio);
  sq_log_ratio = block_sum(sq_log_ratio);
  advantage = block_sum(advantage);
  s1 = block_sum(s1);
  s2 = block_sum(s2);
  ratio_max = block_reduce(ratio_max, nan_max_op{});
  if (threadIdx.x != 0) return;
  cpu_impl::ppo_policy_totals o{};
  o.tokens = batch.tokens;
  o.sequences = batch.sequences;
  if (batch.tokens > 0) {
    const double n = static_cast<double>(batch.tokens);
    o.clipfrac = static_cast<double>(clipped) / n;
    o.dual_clipfrac = static_cast<double>(dual_clipped) / n;
    o.policy_kl = neg_log_ratio / n;
    o.approx_kl = 0.5 * (sq_log_ratio / n);
    o.advantages_mean = advantage / n;
    // ppo_moments::from_shifted_sums with shift 1 (a rounding-negative M2 becomes 0, NaN stays).
    const double m2 = s2 - s1 * (s1 / n);
    o.ratio_mean = 1.0 + s1 / n;
    o.ratio_var = (m2 > 0 ? m2 : (m2 == m2 ? 0.0 : m2)) / n;
    o.ratio_max = ratio_max;
    o.skipped = use_threshold && o.ratio_mean > threshold;
    if (!o.skipped) o.loss = ppo_reduce_total(rule, batch, loss);
  }
  *out = o;
}

/// TRL's ratio_threshold: a skipped batch's gradient is all zero.
template <class T>
__global__ void ppo_zero_if_skipped_kernel(device_view<T, 2> grad,
                                           const cpu_impl::ppo_policy_totals* totals) {
  if (!totals->skipped) return;
  const std::ptrdiff_t cols = grad.extent(1), n = grad.extent(0) * cols;
  for (std::ptrdiff_t i = static_cast<std::ptrdiff_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<std::ptrdiff_t>(gridDim.x) * blockDim.x) {
    const std::ptrdiff_t b = i / cols;
    grad(b, i - b * cols) = T(0);
  }
}

constexpr std::size_t ppo_policy_workspace_size(std::ptrdiff_t rows) noexcept {
  const auto n = static_cast<std::size_t>(rows > 0 ? rows : 0);
  return aligned_bytes<long long>(n) + aligned_bytes<ppo_batch>(1) +
         aligned_bytes<ppo_policy_row_sums>(n) + aligned_bytes<cpu_impl::ppo_policy_totals>(1);
}

template <class T>
ppo_policy_stats<T> ppo_policy_loss(const cuda_backend& backend,
                                    const ppo_policy_inputs<T, device_memory>& in,
                                    device_view<T, 2> dlogp, const ppo_policy_options& options,
                                    cuda_workspace workspace) {
  constexpr const char* function = "rlhf::ppo_policy_loss()";
  detail::check_ppo_policy_inputs(function, "", in);
  if (!dlogp.empty()) detail::require_same_shape(function, "logp", in.logp, "dlogp", dlogp);
  const auto cfg = detail::make_ppo_policy_config<T>(function, "", options);
  const std::ptrdiff_t n_rows = in.logp.extent(0), cols = in.logp.extent(1);
  const auto n = static_cast<std::size_t>(n_rows);
  workspace_lease ws(function, backend.stream, workspace, ppo_policy_workspace_size(n_rows));
  auto* counts = ws.carve<long long>(n);
  auto* batch = ws.carve<ppo_batch>(1);
  auto* rows = ws.carve<ppo_policy_row_sums>(n);
  auto* totals = ws.carve<cpu_impl::ppo_policy_totals>(1);
  const unsigned grid = row_blocks(function, n_rows);
  ppo_count_kernel<T><<<grid, row_threads, 0, backend.stream>>>(in.mask, cols, {}, {}, {}, counts,
                                                                nullptr);
  check_launch(function);
  ppo_batch_kernel<<<1, combine_threads, 0, backend.stream>>>(counts, nullptr, n_rows, batch);
  check_launch(function);
  ppo_policy_row_kernel<T><<<grid, row_threads, 0, backend.stream>>>(
      in.logp, in.old_logp, in.advantages, in.mask, dlogp, cfg, counts, batch, rows);
  check_launch(function);
  ppo_policy_totals_kernel<<<1, combine_threads, 0, backend.stream>>>(
      rows, counts, n_rows, batch, cfg.reduction, cfg.use_ratio_threshold, cfg.ratio_threshold,
      totals);
  check_launch(function);
  if (cfg.use_ratio_threshold && !dlogp.empty()) {
    const std::ptrdiff_t elements = n_rows * cols;
    const unsigned blocks = blocks_for(elements, row_threads) < 4096u ? blocks_for(elements, row_threads) : 4096u;
    ppo_zero_if_skipped_kernel<T><<<blocks, row_threads, 0, backend.stream>>>(dlogp, totals);
    check_launch(function);
  }
  cpu_impl::ppo_policy_totals host{};
  read_back(function, backend.stream, totals, &host);
  return detail::to_policy_stats<T>(host);
}

// --- value -----------------------------------------------------------------------------------

struct ppo_value_row_sums {
  long long clipped;
  double loss;
  double value;
  double squared_error;
  double returns_m2;   ///< Σ (R − mean R)²
  double old_m2;       ///< Σ (V_old − mean V_old)²
  double residual_m2;  ///< Σ ((R − V) − mean (R − V))²
};

template <class T>
__global__ void ppo_value_row_kernel(device_view<const T, 2> values,
                                     device_view<const T, 2> old_values,
                                     device_view<const T, 2> returns, device_mask_view mask,
                                     device_view<T, 2> dvalues, cpu_impl::ppo_value_config<T> cfg,
                                     const long long* counts, const ppo_batch* batch_in,
                                     ppo_value_row_sums* rows) {
  const std::ptrdiff_t b = blockIdx.x;
  const bool masked = !mask.empty();
  const bool write_grad = !dvalues.empty();
  const ppo_batch batch = *batch_in;
  const double weight = ppo_weight(cfg.reduction, batch, counts[b]);
  long long clipped = 0;
  double loss = 0, value_sum = 0, squared_error = 0, ret_m2 = 0, old_m2 = 0, res_m2 = 0;
  for (std::ptrdiff_t t = threadIdx.x; t < values.extent(1); t += blockDim.x) {
    if (masked && mask(b, t) == 0) {
      if (write_grad) dvalues(b, t) = T(0);
      continue;
    }
    // cpu_impl::ppo_value_row_scalar, token for token.
    const T v = values(b, t), v_old = old_values(b, t), ret = returns(b, t);
    const auto term = math::ppo_clipped_value(v, v_old, ret, cfg.use_clip, cfg.clip);
    if (write_grad) dvalues(b, t) = static_cast<T>(static_cast<double>(term.grad) * weight);
    clipped += term.clipped ? 1 : 0;
    loss += static_cast<double>(term.loss);
    value_sum += static_cast<double>(v);
    const double error = static_cast<double>(v) - static_cast<double>(ret);
    squared_error += error * error;
    const double d_ret = static_cast<double>(ret) - batch.mean_returns;
    const double d_old = static_cast<double>(v_old) - batch.mean_old_values;
    const double d_res = -error - batch.mean_residual;
    ret_m2 += d_ret * d_ret;
    old_m2 += d_old * d_old;
    res_m2 += d_res * d_res;
  }
  clipped = block_sum(clipped);
  loss = block_sum(loss);
  value_sum = block_sum(value_sum);
  squared_error = block_sum(squared_error);
  ret_m2 = block_sum(ret_m2);
  old_m2 = block_sum(old_m2);
  res_m2 = block_sum(res_m2);
  if (threadIdx.x == 0)
    rows[b] = {clipped, loss, value_sum, squared_error, ret_m2, old_m2, res_m2};
}

__global__ void ppo_value_totals_kernel(const ppo_value_row_sums* rows, const long long* counts,
                                        std::ptrdiff_t n_rows, const ppo_batch* batch_in,
                                        cpu_impl::ppo_reduction_rule rule,
                                        cpu_impl::ppo_value_totals* out) {
  const ppo_batch batch = *batch_in;
  long long clipped = 0;
  double loss = 0, value = 0, squared_error = 0, ret_m2 = 0, old_m2 = 0, res_m2 = 0;
  for (std::ptrdiff_t b = threadIdx.x; b < n_rows; b += blockDim.x) {
    const ppo_value_row_sums& r = rows[b];
    clipped += r.clipped;
    loss += ppo_row_term(rule, r.loss, counts[b]);
    value += r.value;
    squared_error += r.squared_error;
    ret_m2 += r.returns_m2;
    old_m2 += r.old_m2;
    res_m2 += r.residual_m2;
  }
  clipped = block_sum(clipped);
  loss = block_sum(loss);
  value = block_sum(value);
  squared_error = block_sum(squared_error);
  ret_m2 = block_sum(ret_m2);
  old_m2 = block_sum(old_m2);
  res_m2 = block_sum(res_m2);
  if (threadIdx.x != 0) return;
  cpu_impl::ppo_value_totals o{};
  o.tokens = batch.tokens;
  if (batch.tokens > 0) {
    const double n = static_cast<double>(batch.tokens);
    o.clipfrac = static_cast<double>(clipped) / n;
    o.value_mean = value / n;
    o.value_error = squared_error / n;
    o.returns_mean = batch.mean_returns;
    o.returns_var = batch.tokens > 1 ? ret_m2 / (n - 1.0) : 0.0;
    o.old_value_mean = batch.mean_old_values;
    o.old_value_var = batch.tokens > 1 ? old_m2 / (n - 1.0) : 0.0;
    o.explained_variance = ret_m2 > 0 ? 1.0 - res_m2 / ret_m2 : 0.0;  // ppo_explained_variance
    o.loss = ppo_reduce_total(rule, batch, loss);
  }
  *out = o;
}

constexpr std::size_t ppo_value_workspace_size(std::ptrdiff_t rows) noexcept {
  const auto n = static_cast<std::size_t>(rows > 0 ? rows : 0);
  return aligned_bytes<long long>(n) + aligned_bytes<double>(3 * n) + aligned_bytes<ppo_batch>(1) +
         aligned_bytes<ppo_value_row_sums>(n) + aligned_bytes<cpu_impl::ppo_value_totals>(1);
}

template <class T>
ppo_value_stats<T> ppo_value_loss(const cuda_backend& backend,
                                  const ppo_value_inputs<T, device_memory>& in,
                                  device_view<T, 2> dvalues, const ppo_value_options& options,
                                  cuda_workspace workspace) {
  constexpr const char* function = "rlhf::ppo_value_loss()";
  detail::check_ppo_value_inputs(function, "", in);
  if (!dvalues.empty()) detail::require_same_shape(function, "values", in.values, "dvalues", dvalues);
  const auto cfg = detail::make_ppo_value_config<T>(function, "", options);
  const std::ptrdiff_t n_rows = in.values.extent(0), cols = in.values.extent(1);
  const auto n = static_cast<std::size_t>(n_rows);
  workspace_lease ws(function, backend.stream, workspace, ppo_value_workspace_size(n_rows));
  auto* counts = ws.carve<long long>(n);
  auto* sums = ws.carve<double>(3 * n);
  auto* batch = ws.carve<ppo_batch>(1);
  auto* rows = ws.carve<ppo_value_row_sums>(n);
  auto* totals = ws.carve<cpu_impl::ppo_value_totals>(1);
  const unsigned grid = row_blocks(function, n_rows);
  ppo_count_kernel<T><<<grid, row_threads, 0, backend.stream>>>(
      in.mask, cols, in.values, in.old_values, in.returns, counts, sums);
  check_launch(function);
  ppo_batch_kernel<<<1, combine_threads, 0, backend.stream>>>(counts, sums, n_rows, batch);
  check_launch(function);
  ppo_value_row_kernel<T><<<grid, row_threads, 0, backend.stream>>>(
      in.values, in.old_values, in.returns, in.mask, dvalues, cfg, counts, batch, rows);
  check_launch(function);
  ppo_value_totals_kernel<<<1, combine_threads, 0, backend.stream>>>(rows, counts, n_rows, batch,
                                                                     cfg.reduction, totals);
  check_launch(function);
  cpu_impl::ppo_value_totals host{};
  read_back(function, backend.stream, totals, &host);
  return detail::to_value_stats<T>(host);
}

}  // namespace cuda_impl

/// Workspace bytes of ppo_policy_loss(cuda_backend, ...) / ppo_value_loss for `rows` rows.
[[nodiscard]] inline std::size_t ppo_policy_workspace_bytes(std::ptrdiff_t rows) noexcept {
  return cuda_impl::ppo_policy_workspace_size(rows);
}
[[nodiscard]] inline std::size_t ppo_value_workspace_bytes(std::ptrdiff_t rows) noexcept {
  return cuda_impl::ppo_value_workspace_size(rows);
}

/// The clipped-surrogate policy loss on the GPU: gradient into `dlogp` (device, may be empty),
/// statistics returned (the call waits for backend.stream once, at the end).
inline ppo_policy_stats<float> ppo_policy_loss(const cuda_backend& backend,
                                               const ppo_policy_inputs<float, device_memory>& inputs,
                                               device_view<float, 2> dlogp,
                                               const ppo_policy_options& options = {},
                                               cuda_workspace workspace = {}) {
  return cuda_impl::ppo_policy_loss<float>(backend, inputs, dlogp, options, workspace);
}
inline ppo_policy_stats<double> ppo_policy_loss(
    const cuda_backend& backend, const ppo_policy_inputs<double, device_memory>& inputs,
    device_view<double, 2> dlogp, const ppo_policy_options& options = {},
    cuda_workspace workspace = {}) {
  return cuda_impl::ppo_policy_loss<double>(backend, inputs, dlogp, options, workspace);
}

/// The clipped value loss on the GPU: gradient into `dvalues` (device, may be empty),
/// statistics returned (waits for the stream once).
inline ppo_value_stats<float> ppo_value_loss(const cuda_backend& backend,
                                             const ppo_value_inputs<float, device_memory>& inputs,
                                             device_view<float, 2> dvalues,
                                             const ppo_value_options& options = {},
                                             cuda_workspace workspace = {}) {
  return cuda_impl::ppo_value_loss<float>(backend, inputs, dvalues, options, workspace);
}
inline ppo_value_stats<double> ppo_value_loss(const cuda_backend& backend,
                                              const ppo_value_inputs<double, device_memory>& inputs,
                                              device_view<double, 2> dvalues,
                                              const ppo_value_options& options = {},
                                              cuda_workspace workspace = {}) {
  return cuda_impl::ppo_value_loss<double>(backend, inputs, dvalues, options, workspace);
}

}  // namespace rlhf
