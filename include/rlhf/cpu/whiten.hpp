// rlhf/cpu/whiten.hpp — reference CPU implementation of masked statistics and whitening.
// Included by <rlhf/whiten.hpp>; arguments are already checked there.
//
// Reductions accumulate in double, one partial per row (rows run in parallel), and the row
// partials are then added in row order on the calling thread: results do not depend on the
// thread count. Variance is two-pass (mean first, then Σ(x − mean)²), as every anchor does.
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/detail/parallel.hpp>
#include <rlhf/math/whiten.hpp>
#include <rlhf/tensor_view.hpp>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace rlhf::cpu_impl {

/// Per row b: the number of valid elements, their sum and the sum of every element.
struct row_sums_result {
  std::vector<std::int64_t> count;
  std::vector<double> sum;
  std::vector<double> unmasked_sum;
};

template <class T>
row_sums_result masked_row_sums(const cpu_backend& backend, matrix_view<const T> x,
                                mask_view mask) {
  const std::ptrdiff_t rows = x.extent(0), cols = x.extent(1);
  const bool masked = !mask.empty();
  row_sums_result r;
  r.count.assign(static_cast<std::size_t>(rows), 0);
  r.sum.assign(static_cast<std::size_t>(rows), 0.0);
  r.unmasked_sum.assign(static_cast<std::size_t>(rows), 0.0);
  detail::parallel_for(
      backend, rows,
      [&](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t b = begin; b < end; ++b) {
          std::int64_t count = 0;
          double sum = 0.0, all = 0.0;
          for (std::ptrdiff_t t = 0; t < cols; ++t) {
            const double v = static_cast<double>(x(b, t));
            all += v;
            if (!masked || mask(b, t) != 0) {
              sum += v;
              ++count;
            }
          }
          r.count[static_cast<std::size_t>(b)] = count;
          r.sum[static_cast<std::size_t>(b)] = sum;
          r.unmasked_sum[static_cast<std::size_t>(b)] = all;
        }
      },
      /*min_per_thread=*/8);
  return r;
}

/// Σ over valid elements of (x − center)², per row, then added in row order.
template <class T>
double masked_centered_square_sum(const cpu_backend& backend, matrix_view<const T> x,
                                  mask_view mask, double center) {
  const std::ptrdiff_t rows = x.extent(0), cols = x.extent(1);
  const bool masked = !mask.empty();
  std::vector<double> partial(static_cast<std::size_t>(rows), 0.0);
  detail::parallel_for(
      backend, rows,
      [&](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t b = begin; b < end; ++b) {
          double sum = 0.0;
          for (std::ptrdiff_t t = 0; t < cols; ++t) {
            if (masked && mask(b, t) == 0) continue;
            const double d = static_cast<double>(x(b, t)) - center;
            sum += d * d;
          }
          partial[static_cast<std::size_t>(b)] = sum;
        }
      },
      /*min_per_thread=*/8);
  double total = 0.0;
  for (double p : partial) total += p;
  return total;
}

/// Two-pass moments of the valid elements of x.
template <class T>
masked_moments moments(const cpu_backend& backend, matrix_view<const T> x, mask_view mask) {
  const row_sums_result r = masked_row_sums(backend, x, mask);
  masked_moments m;
  double sum = 0.0;
  for (std::size_t b = 0; b < r.count.size(); ++b) {
    m.count += r.count[b];
    sum += r.sum[b];
    m.unmasked_sum += r.unmasked_sum[b];
  }
  if (m.count == 0) return m;
  m.mean = sum / static_cast<double>(m.count);
  m.variance = masked_centered_square_sum(backend, x, mask, m.mean) / static_cast<double>(m.count);
  return m;
}

/// out(b) = Σ_valid x(b, ·), or the masked mean when `mean` is set (0 for a row with no valid
/// element).
template <class T>
void masked_row_reduce(const cpu_backend& backend, matrix_view<const T> x, mask_view mask,
                       vector_view<T> out, bool mean) {
  const row_sums_result r = masked_row_sums(backend, x, mask);
  for (std::size_t b = 0; b < r.count.size(); ++b) {
    const double v = mean ? (r.count[b] > 0 ? r.sum[b] / static_cast<double>(r.count[b]) : 0.0)
                          : r.sum[b];
    out(static_cast<std::ptrdiff_t>(b)) = static_cast<T>(v);
  }
}

/// out = (x − center)·rstd + add_back on valid positions; masked positions per `masked`.
/// With `no_valid` set (the statistics saw no valid element) every position becomes 0, or x
/// with whiten_masked::keep_input. The map is evaluated in double and rounded to T once.
/// `out` may be `x` itself: each element is read before it is written.
template <class T>
void apply_whitening(const cpu_backend& backend, matrix_view<const T> x, mask_view mask,
                     const math::whiten_coefficients& c, whiten_masked masked_mode, bool no_valid,
                     matrix_view<T> out) {
  const std::ptrdiff_t rows = x.extent(0), cols = x.extent(1);
  const bool masked = !mask.empty();
  detail::parallel_for(
      backend, rows,
      [&](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t b = begin; b < end; ++b)
          for (std::ptrdiff_t t = 0; t < cols; ++t) {
            const T v = x(b, t);
            const bool valid = !masked || mask(b, t) != 0;
            T y;
            if (masked_mode == whiten_masked::keep_input && !valid) {
              y = v;
            } else if (no_valid || (!valid && masked_mode == whiten_masked::zero)) {
              y = masked_mode == whiten_masked::keep_input ? v : T(0);
            } else {
              y = static_cast<T>(
                  math::whiten_affine(static_cast<double>(v), c.center, c.rstd, c.add_back));
            }
            out(b, t) = y;
          }
      },
      /*min_per_thread=*/8);
}

}  // namespace rlhf::cpu_impl
