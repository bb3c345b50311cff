// rlhf/cpu/whiten.hpp — reference CPU implementation of masked statistics and whitening.
// Included by <rlhf/whiten.hpp>; arguments are already checked there.
//
// Reductions accumulate in double, one partial per row (rows run in parallel), and the row
// partials are then added in row order on the calling thread: results do not depend on the
// thread count. Variance is two-pass (mean first, then Σ(x − mean)²), as every anchor does.
//
// Row kernels work on contiguous rows (a row of a view with inner stride ≠ 1 is copied into
// scratch first, so strided and dense views give the same bits). Within a row, sums are kept
// in several partial sums (8 for float with AVX2, in double lanes; 4 otherwise) added in a
// fixed order. The float AVX2 kernels check the mask a block of 128 elements at a time and
// skip the lane masking for blocks without padding. Masked elements never reach a masked
// statistic (the lanes are discarded bitwise, NaN included).
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/detail/parallel.hpp>
#include <rlhf/detail/rows.hpp>
#include <rlhf/detail/simd.hpp>
#include <rlhf/math/whiten.hpp>
#include <rlhf/tensor_view.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

namespace rlhf::cpu_impl {

/// Per row b: the number of valid elements, their sum and the sum of every element.
struct row_sums_result {
  std::vector<std::int64_t> count;
  std::vector<double> sum;
  std::vector<double> unmasked_sum;
};

namespace whiten_rows {

struct sums {
  std::int64_t count = 0;
  double sum = 0;  ///< over valid elements
  double all = 0;  ///< over every element
};

/// Count, masked sum and unmasked sum of one contiguous row (mask nullptr: all valid).
template <class T>
sums row_sums(const T* x, const std::uint8_t* m, std::ptrdiff_t n) noexcept {
  sums r;
#if defined(__AVX2__) && defined(__FMA__) && !defined(__CUDACC__)
  if constexpr (std::is_same_v<T, float>) {
    namespace s = detail::simd;
    __m256d sum_lo = _mm256_setzero_pd(), sum_hi = sum_lo, all_lo = sum_lo, all_hi = sum_lo;
    std::ptrdiff_t t = 0;
    constexpr std::ptrdiff_t block = 128;
    for (; t + 8 <= n;) {
      const std::ptrdiff_t end = std::min(n / 8 * 8, t + block);
      if (m == nullptr || s::count_valid(m + t, end - t) == end - t) {
        // No padding in the block: its sum is both the masked and the unmasked one.
        __m256d lo = _mm256_setzero_pd(), hi = lo;
        for (; t < end; t += 8) s::add_widened(lo, hi, _mm256_loadu_ps(x + t));
        sum_lo = _mm256_add_pd(sum_lo, lo);
        sum_hi = _mm256_add_pd(sum_hi, hi);
        all_lo = _mm256_add_pd(all_lo, lo);
        all_hi = _mm256_add_pd(all_hi, hi);
      } else {
        for (; t < end; t += 8) {
          const __m256 v = _mm256_loadu_ps(x + t);
          s::add_widened(all_lo, all_hi, v);
          s::add_widened(sum_lo, sum_hi, s::keep(s::valid8(m + t), v));
        }
      }
    }
    r.sum = s::sum4(sum_lo) + s::sum4(sum_hi);
    r.all = s::sum4(all_lo) + s::sum4(all_hi);
    for (; t < n; ++t) {
      const double v = static_cast<double>(x[t]);
      r.all += v;
      if (m == nullptr || m[t] != 0) r.sum += v;
    }
    r.count = m != nullptr ? s::count_valid(m, n) : n;
    return r;
  }
#endif
  double sum[4] = {0, 0, 0, 0}, all[4] = {0, 0, 0, 0};
  std::int64_t count = 0;
  std::ptrdiff_t t = 0;
  for (; t + 4 <= n; t += 4)
    for (int j = 0; j < 4; ++j) {
      const double v = static_cast<double>(x[t + j]);
      const bool valid = m == nullptr || m[t + j] != 0;
      all[j] += v;
      sum[j] += valid ? v : 0.0;
      count += valid ? 1 : 0;
    }
  r.sum = (sum[0] + sum[1]) + (sum[2] + sum[3]);
  r.all = (all[0] + all[1]) + (all[2] + all[3]);
  for (; t < n; ++t) {
    const double v = static_cast<double>(x[t]);
    const bool valid = m == nullptr || m[t] != 0;
    r.all += v;
    r.sum += valid ? v : 0.0;
    count += valid ? 1 : 0;
  }
  r.count = count;
  return r;
}

/// Σ over the valid elements of one contiguous row of (x − center)², in double.
template <class T>
double row_centered_squares(const T* x, const std::uint8_t* m, std::ptrdiff_t n, double center) noexcept {
#if defined(__AVX2__) && defined(__FMA__) && !defined(__CUDACC__)
  if constexpr (std::is_same_v<T, float>) {
    namespace s = detail::simd;
    const __m256d c = _mm256_set1_pd(center);
    __m256d acc_lo = _mm256_setzero_pd(), acc_hi = acc_lo;
    std::ptrdiff_t t = 0;
    const auto step = [&]<bool Masked>(std::ptrdiff_t i) __attribute__((always_inline)) {
      const __m256 v = _mm256_loadu_ps(x + i);
      __m256d d_lo = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), c);
      __m256d d_hi = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), c);
      if constexpr (Masked) {  // 4 mask bytes → 4 all-ones / zero 64-bit lanes, twice
        std::uint32_t lo_bytes, hi_bytes;
        std::memcpy(&lo_bytes, m + i, 4);
        std::memcpy(&hi_bytes, m + i + 4, 4);
        const __m256i zero = _mm256_setzero_si256();
        const __m256i pad_lo = _mm256_cmpeq_epi64(_mm256_cvtepu8_epi64(_mm_cvtsi32_si128(static_cast<int>(lo_bytes))), zero);
        const __m256i pad_hi = _mm256_cmpeq_epi64(_mm256_cvtepu8_epi64(_mm_cvtsi32_si128(static_cast<int>(hi_bytes))), zero);
        d_lo = _mm256_andnot_pd(_mm256_castsi256_pd(pad_lo), d_lo);
        d_hi = _mm256_andnot_pd(_mm256_castsi256_pd(pad_hi), d_hi);
      }
      acc_lo = _mm256_fmadd_pd(d_lo, d_lo, acc_lo);
      acc_hi = _mm256_fmadd_pd(d_hi, d_hi, acc_hi);
    };
    constexpr std::ptrdiff_t block = 128;
    for (; t + 8 <= n;) {
      const std::ptrdiff_t end = std::min(n / 8 * 8, t + block);
      if (m == nullptr || s::count_valid(m + t, end - t) == end - t)
        for (; t < end; t += 8) step.template operator()<false>(t);
      else
        for (; t < end; t += 8) step.template operator()<true>(t);
    }
    double total = s::sum4(acc_lo) + s::sum4(acc_hi);
    for (; t < n; ++t)
      if (m == nullptr || m[t] != 0) {
        const double d = static_cast<double>(x[t]) - center;
        total += d * d;
      }
    return total;
  }
#endif
  double part[4] = {0, 0, 0, 0};
  std::ptrdiff_t t = 0;
  for (; t + 4 <= n; t += 4)
    for (int j = 0; j < 4; ++j) {
      const double d = static_cast<double>(x[t + j]) - center;
      part[j] += m == nullptr || m[t + j] != 0 ? d * d : 0.0;
    }
  double total = (part[0] + part[1]) + (part[2] + part[3]);
  for (; t < n; ++t) {
    const double d = static_cast<double>(x[t]) - center;
    total += m == nullptr || m[t] != 0 ? d * d : 0.0;
  }
  return total;
}

/// One contiguous row of apply_whitening (see there); `out` may be `x`.
template <class T>
void row_apply(const T* x, const std::uint8_t* m, std::ptrdiff_t n, const math::whiten_coefficients& c,
               whiten_masked masked_mode, bool no_valid, T* out) noexcept {
  std::ptrdiff_t t = 0;
#if defined(__AVX2__) && defined(__FMA__) && !defined(__CUDACC__)
  if constexpr (std::is_same_v<T, float>) {
    namespace s = detail::simd;
    if (!no_valid) {
      const __m256d center = _mm256_set1_pd(c.center), rstd = _mm256_set1_pd(c.rstd), add = _mm256_set1_pd(c.add_back);
      // math::whiten_affine, (x − center)·rstd + add_back, in double (one FMA, as the scalar
      // expression is contracted with FMA enabled), rounded to float once.
      const auto affine = [&](__m256 v) __attribute__((always_inline)) {
        const __m256d lo = _mm256_fmadd_pd(_mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), center), rstd, add);
        const __m256d hi = _mm256_fmadd_pd(_mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), center), rstd, add);
        return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm256_cvtpd_ps(lo)), _mm256_cvtpd_ps(hi), 1);
      };
      for (; t + 8 <= n; t += 8) {
        const __m256 v = _mm256_loadu_ps(x + t);
        __m256 y = affine(v);
        if (m != nullptr && masked_mode != whiten_masked::shift_like_valid) {
          const __m256 valid = s::valid8(m + t);
          y = masked_mode == whiten_masked::zero ? s::keep(valid, y) : s::select(valid, y, v);
        }
        _mm256_storeu_ps(out + t, y);
      }
    }
  }
#endif
  const bool masked = m != nullptr;
  for (; t < n; ++t) {
    const T v = x[t];
    const bool valid = !masked || m[t] != 0;
    T y;
    if (masked_mode == whiten_masked::keep_input && !valid) {
      y = v;
    } else if (no_valid || (!valid && masked_mode == whiten_masked::zero)) {
      y = masked_mode == whiten_masked::keep_input ? v : T(0);
    } else {
      y = static_cast<T>(math::whiten_affine(static_cast<double>(v), c.center, c.rstd, c.add_back));
    }
    out[t] = y;
  }
}

}  // namespace whiten_rows

template <class T>
row_sums_result masked_row_sums(const cpu_backend& backend, matrix_view<const T> x,
                                mask_view mask) {
  const std::ptrdiff_t rows = x.extent(0), cols = x.extent(1);
  row_sums_result r;
  r.count.assign(static_cast<std::size_t>(rows), 0);
  r.sum.assign(static_cast<std::size_t>(rows), 0.0);
  r.unmasked_sum.assign(static_cast<std::size_t>(rows), 0.0);
  detail::parallel_for(
      backend, rows,
      [&](std::ptrdiff_t begin, std::ptrdiff_t end) {
        std::vector<T> s_x;
        std::vector<std::uint8_t> s_m;
        for (std::ptrdiff_t b = begin; b < end; ++b) {
          const auto row = whiten_rows::row_sums(detail::row_in(x, b, s_x), detail::row_in(mask, b, s_m), cols);
          r.count[static_cast<std::size_t>(b)] = row.count;
          r.sum[static_cast<std::size_t>(b)] = row.sum;
          r.unmasked_sum[static_cast<std::size_t>(b)] = row.all;
        }
      },
      detail::min_rows_per_thread(cols));
  return r;
}

/// Σ over valid elements of (x − center)², per row, then added in row order.
template <class T>
double masked_centered_square_sum(const cpu_backend& backend, matrix_view<const T> x,
                                  mask_view mask, double center) {
  const std::ptrdiff_t rows = x.extent(0), cols = x.extent(1);
  std::vector<double> partial(static_cast<std::size_t>(rows), 0.0);
  detail::parallel_for(
      backend, rows,
      [&](std::ptrdiff_t begin, std::ptrdiff_t end) {
        std::vector<T> s_x;
        std::vector<std::uint8_t> s_m;
        for (std::ptrdiff_t b = begin; b < end; ++b)
          partial[static_cast<std::size_t>(b)] = whiten_rows::row_centered_squares(
              detail::row_in(x, b, s_x), detail::row_in(mask, b, s_m), cols, center);
      },
      detail::min_rows_per_thread(cols));
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
  const bool out_unit = out.stride(1) == 1 || cols == 1;
  detail::parallel_for(
      backend, rows,
      [&](std::ptrdiff_t begin, std::ptrdiff_t end) {
        std::vector<T> s_x, s_out;
        std::vector<std::uint8_t> s_m;
        for (std::ptrdiff_t b = begin; b < end; ++b) {
          const T* xr = detail::row_in(x, b, s_x);
          T* o = out_unit ? &out(b, 0) : (s_out.resize(static_cast<std::size_t>(cols)), s_out.data());
          whiten_rows::row_apply(xr, detail::row_in(mask, b, s_m), cols, c, masked_mode, no_valid, o);
          if (!out_unit)
            for (std::ptrdiff_t t = 0; t < cols; ++t) out(b, t) = o[t];
        }
      },
      detail::min_rows_per_thread(cols));
}

}  // namespace rlhf::cpu_impl
