// rlhf/cpu/gae.hpp — reference CPU implementation of GAE and discounted returns.
// Included by <rlhf/gae.hpp>; arguments are already checked there.
//
// The backward recursion A_t = δ_t + γλ·A_{t+1} is one dependent multiply-add per token, so a
// row-at-a-time loop runs at the latency of that operation (≈ 4 cycles a token). With AVX2 and
// unit inner stride, rows are processed 8 or 16 at a time (gae_simd::gae_group): δ is computed
// row by row, W×W tiles of δ (W = 8 floats / 4 doubles) are transposed so that the recursion runs
// with one SIMD lane per row, and the advantages are transposed back. Every element goes through
// the same operations in the same order as the scalar loop (written with the same operator
// expressions, so floating-point contraction treats both alike), which keeps results bitwise
// identical to the scalar path for every row count, mask and thread count;
// tests/cpu/gae_test.cpp checks it. Strided views and the last B mod W rows use the scalar loop.
// Without AVX2 at compile time (no -mavx2 / -march=native) everything takes the scalar loop.
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/detail/parallel.hpp>
#include <rlhf/math/gae.hpp>
#include <rlhf/tensor_view.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

// The SIMD path needs AVX2 at compile time (-mavx2 or -march=native); nvcc's host pass never
// takes it (its front end does not know the vector-extension operators used below).
#if defined(__AVX2__) && !defined(__CUDACC__)
#include <immintrin.h>
#endif

namespace rlhf::cpu_impl {

/// Rows [begin, end): the backward recursion over all T positions, with rewards and values
/// multiplied by the mask first (V_T = 0), as every anchor does. The reference the SIMD path
/// must match bit for bit.
template <class T>
void gae_rows(matrix_view<const T> rewards, matrix_view<const T> values, mask_view mask,
              matrix_view<T> advantages, matrix_view<T> returns, T gamma, T gamma_lambda,
              std::ptrdiff_t begin, std::ptrdiff_t end) noexcept {
  const std::ptrdiff_t n_tokens = rewards.extent(1);
  const bool masked = !mask.empty();
  for (std::ptrdiff_t b = begin; b < end; ++b) {
    T next_value = T(0);
    T next_advantage = T(0);
    for (std::ptrdiff_t t = n_tokens - 1; t >= 0; --t) {
      const bool valid = !masked || mask(b, t) != 0;
      const T value = valid ? values(b, t) : T(0);
      const T reward = valid ? rewards(b, t) : T(0);
      const T advantage = math::gae_step(reward, value, next_value, next_advantage, gamma, gamma_lambda);
      advantages(b, t) = advantage;
      returns(b, t) = advantage + value;
      next_value = value;
      next_advantage = advantage;
    }
  }
}

#if defined(__AVX2__) && !defined(__CUDACC__)
namespace gae_simd {

// One SIMD register per time step holding W rows. The arithmetic below uses the vector types'
// operators (GCC/Clang vector extensions), not FMA intrinsics, so that the compiler contracts
// (or does not contract) a·b + c exactly as it does in the scalar math::gae_step.
template <class T>
struct lanes;

template <>
struct lanes<float> {
  using vec = __m256;
  static constexpr std::ptrdiff_t width = 8;
  static vec load(const float* p) noexcept { return _mm256_loadu_ps(p); }
  static void store(float* p, vec x) noexcept { _mm256_storeu_ps(p, x); }
  static vec broadcast(float x) noexcept { return _mm256_set1_ps(x); }
  static vec zero() noexcept { return _mm256_setzero_ps(); }
  /// All-ones lanes where the mask byte is 0 (padding).
  static vec padding(const std::uint8_t* m) noexcept {
    const __m256i bytes = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(m)));
    return _mm256_castsi256_ps(_mm256_cmpeq_epi32(bytes, _mm256_setzero_si256()));
  }
  /// x where the lane is valid, +0 where `pad` is set: the scalar `valid ? x : T(0)`.
  static vec keep(vec pad, vec x) noexcept { return _mm256_andnot_ps(pad, x); }
  /// Lanes (x1, …, x7, x0).
  static vec rotate(vec x) noexcept { return _mm256_permutevar8x32_ps(x, _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 0)); }
  /// Lanes 0…6 of a, lane 7 of b.
  static vec last_from(vec a, vec b) noexcept { return _mm256_blend_ps(a, b, 0x80); }
  /// 4×4 transposes inside each 128-bit half of x[0..3] (6 shuffles + 4 blends).
  static void transpose_halves(vec& x0, vec& x1, vec& x2, vec& x3) noexcept {
    const __m256 t0 = _mm256_unpacklo_ps(x0, x1), t1 = _mm256_unpackhi_ps(x0, x1);
    const __m256 t2 = _mm256_unpacklo_ps(x2, x3), t3 = _mm256_unpackhi_ps(x2, x3);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x4E), u1 = _mm256_shuffle_ps(t1, t3, 0x4E);
    x0 = _mm256_blend_ps(t0, u0, 0xCC);
    x1 = _mm256_blend_ps(u0, t2, 0xCC);
    x2 = _mm256_blend_ps(t1, u1, 0xCC);
    x3 = _mm256_blend_ps(u1, t3, 0xCC);
  }
  /// r[j] = column j of the 8×8 block whose row i starts at p + i·ld.
  static void load_transposed(vec (&r)[8], const float* p, std::ptrdiff_t ld) noexcept {
    for (int i = 0; i < 4; ++i) {
      r[i] = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(p + i * ld)), _mm_loadu_ps(p + (i + 4) * ld), 1);
      r[i + 4] = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_loadu_ps(p + i * ld + 4)),
                                      _mm_loadu_ps(p + (i + 4) * ld + 4), 1);
    }
    transpose_halves(r[0], r[1], r[2], r[3]);
    transpose_halves(r[4], r[5], r[6], r[7]);
  }
  /// Row i of the 8×8 block at p + i·ld = lane i of r[0..7] (the inverse of load_transposed).
  static void store_transposed(float* p, std::ptrdiff_t ld, vec (&r)[8]) noexcept {
    transpose_halves(r[0], r[1], r[2], r[3]);
    transpose_halves(r[4], r[5], r[6], r[7]);
    for (int i = 0; i < 4; ++i) {
      _mm256_storeu_ps(p + i * ld, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
      _mm256_storeu_ps(p + (i + 4) * ld, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
    }
  }
};

template <>
struct lanes<double> {
  using vec = __m256d;
  static constexpr std::ptrdiff_t width = 4;
  static vec load(const double* p) noexcept { return _mm256_loadu_pd(p); }
  static void store(double* p, vec x) noexcept { _mm256_storeu_pd(p, x); }
  static vec broadcast(double x) noexcept { return _mm256_set1_pd(x); }
  static vec zero() noexcept { return _mm256_setzero_pd(); }
  static vec padding(const std::uint8_t* m) noexcept {
    std::int32_t four = 0;
    std::memcpy(&four, m, 4);
    const __m256i bytes = _mm256_cvtepu8_epi64(_mm_cvtsi32_si128(four));
    return _mm256_castsi256_pd(_mm256_cmpeq_epi64(bytes, _mm256_setzero_si256()));
  }
  static vec keep(vec pad, vec x) noexcept { return _mm256_andnot_pd(pad, x); }
  static vec rotate(vec x) noexcept { return _mm256_permute4x64_pd(x, 0x39); }
  static vec last_from(vec a, vec b) noexcept { return _mm256_blend_pd(a, b, 0x8); }
  static void transpose(vec (&r)[4]) noexcept {
    const __m256d t0 = _mm256_unpacklo_pd(r[0], r[1]), t1 = _mm256_unpackhi_pd(r[0], r[1]);
    const __m256d t2 = _mm256_unpacklo_pd(r[2], r[3]), t3 = _mm256_unpackhi_pd(r[2], r[3]);
    r[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
    r[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
    r[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
    r[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
  }
  static void load_transposed(vec (&r)[4], const double* p, std::ptrdiff_t ld) noexcept {
    for (int i = 0; i < 4; ++i) r[i] = _mm256_loadu_pd(p + i * ld);
    transpose(r);
  }
  static void store_transposed(double* p, std::ptrdiff_t ld, vec (&r)[4]) noexcept {
    transpose(r);
    for (int i = 0; i < 4; ++i) _mm256_storeu_pd(p + i * ld, r[i]);
  }
};

/// Where one group of rows reads and writes: row i of array X starts at X + i·ldX.
template <class T>
struct tile {
  const T* rewards;
  const T* values;
  const std::uint8_t* mask;  // null: no mask
  T* advantages;
  T* returns;
  std::ptrdiff_t ld_rewards, ld_values, ld_mask, ld_advantages, ld_returns;
};

/// Tokens per segment: a group's rows are processed in segments of this many tokens (1 KiB of
/// each row), so that the scratch below stays in L1.
template <class T>
inline constexpr std::ptrdiff_t segment = 1024 / static_cast<std::ptrdiff_t>(sizeof(T));

/// Row stride of the scratch, padded by one cache line so its rows fall into different L1 sets.
template <class T>
inline constexpr std::ptrdiff_t scratch_stride = segment<T> + 64 / static_cast<std::ptrdiff_t>(sizeof(T));

/// `rows` (= W or 2W) complete rows of T tokens, backwards in segments [s0, s1):
///   A. row by row: δ_t = r_t + γ·V_{t+1} − V_t into the scratch (unit stride, vectorised over t;
///      the ≤ W tokens of the block holding token T − 1 in scalar code, V_T = 0);
///   B. W×W tiles of the scratch, transposed: A_t = δ_t + γλ·A_{t+1} with one lane per row,
///      transposed back in place (zero δ past T − 1 reproduces the start state A_T = +0);
///   C. row by row: advantages = scratch, returns = advantages + V_t.
/// Only the scratch is touched W rows at a time; the inputs and outputs are streamed row by row,
/// which keeps power-of-two row strides (T = 1024) from thrashing L1 sets.
template <class T, bool Masked>
void gae_group(const tile<T>& x, std::ptrdiff_t rows, std::ptrdiff_t n_tokens, T gamma_s,
               T gamma_lambda_s) noexcept {
  using L = lanes<T>;
  using vec = typename L::vec;
  constexpr std::ptrdiff_t W = L::width, seg = segment<T>, ld = scratch_stride<T>;
  const vec gamma = L::broadcast(gamma_s), gamma_lambda = L::broadcast(gamma_lambda_s);
  alignas(64) T scratch[2 * W][ld];
  vec carry[2] = {L::zero(), L::zero()};  // A_{s1} of each W-row tile

  const std::ptrdiff_t last = ((n_tokens - 1) / W) * W;  // first token of the block holding T − 1
  for (std::ptrdiff_t s0 = ((n_tokens - 1) / seg) * seg, s1 = n_tokens; s0 >= 0; s1 = s0, s0 -= seg) {
    const std::ptrdiff_t len = s1 - s0;                            // tokens in this segment
    const std::ptrdiff_t len_padded = (len + W - 1) / W * W;       // whole tiles
    const std::ptrdiff_t len_simd = s1 == n_tokens ? last - s0 : len;  // tokens done W-wide in A, C

    for (std::ptrdiff_t i = 0; i < rows; ++i) {  // A
      const T* r = x.rewards + i * x.ld_rewards + s0;
      const T* v = x.values + i * x.ld_values + s0;
      const std::uint8_t* m = Masked ? x.mask + i * x.ld_mask + s0 : nullptr;
      T* d = scratch[i];
      // Backwards over the W-token blocks: V_{t+1} of the block's last token is lane 0 of the
      // block after it (held rotated into lane W − 1), or the scalar V at s0 + len_simd.
      const bool boundary_valid = !Masked || m[len_simd] != 0;  // token s0 + len_simd < T
      vec rotated_next = L::broadcast(boundary_valid ? v[len_simd] : T(0));
      for (std::ptrdiff_t j = len_simd - W; j >= 0; j -= W) {
        vec reward = L::load(r + j), value = L::load(v + j);
        if constexpr (Masked) {
          const vec pad = L::padding(m + j);
          reward = L::keep(pad, reward);
          value = L::keep(pad, value);
        }
        const vec rotated = L::rotate(value);
        const vec next_value = L::last_from(rotated, rotated_next);
        rotated_next = rotated;
        L::store(d + j, reward + gamma * next_value - value);  // δ exactly as math::gae_step forms it
      }
      for (std::ptrdiff_t j = len_simd; j < len; ++j) {
        const bool valid = !Masked || m[j] != 0;
        const bool next_valid = j + 1 < len && (!Masked || m[j + 1] != 0);
        const T reward = valid ? r[j] : T(0), value = valid ? v[j] : T(0);
        const T next_value = next_valid ? v[j + 1] : T(0);
        d[j] = reward + gamma_s * next_value - value;
      }
      for (std::ptrdiff_t j = len; j < len_padded; ++j) d[j] = T(0);
    }

    for (std::ptrdiff_t j0 = len_padded - W; j0 >= 0; j0 -= W) {  // B
      for (std::ptrdiff_t k = 0; k * W < rows; ++k) {  // independent chains: out-of-order overlap
        vec a[W];
        L::load_transposed(a, scratch[k * W] + j0, ld);
        vec next_advantage = carry[k];
        for (std::ptrdiff_t j = W - 1; j >= 0; --j) {
          next_advantage = a[j] + gamma_lambda * next_advantage;  // as math::gae_step
          a[j] = next_advantage;
        }
        carry[k] = next_advantage;
        L::store_transposed(scratch[k * W] + j0, ld, a);
      }
    }

    for (std::ptrdiff_t i = 0; i < rows; ++i) {  // C
      const T* v = x.values + i * x.ld_values + s0;
      const std::uint8_t* m = Masked ? x.mask + i * x.ld_mask + s0 : nullptr;
      T* adv = x.advantages + i * x.ld_advantages + s0;
      T* ret = x.returns + i * x.ld_returns + s0;
      const T* a = scratch[i];
      for (std::ptrdiff_t j = 0; j < len_simd; j += W) {
        vec value = L::load(v + j);
        if constexpr (Masked) value = L::keep(L::padding(m + j), value);
        const vec advantage = L::load(a + j);
        L::store(adv + j, advantage);
        L::store(ret + j, advantage + value);
      }
      for (std::ptrdiff_t j = len_simd; j < len; ++j) {
        const T value = (!Masked || m[j] != 0) ? v[j] : T(0);
        adv[j] = a[j];
        ret[j] = a[j] + value;
      }
    }
  }
}

}  // namespace gae_simd
#endif  // __AVX2__

/// Rows [begin, end) of views with unit inner stride: W rows at a time through the SIMD path,
/// the remaining end − begin mod W rows through gae_rows. Without AVX2, all through gae_rows.
template <class T>
void gae_rows_contiguous(matrix_view<const T> rewards, matrix_view<const T> values, mask_view mask,
                         matrix_view<T> advantages, matrix_view<T> returns, T gamma, T gamma_lambda,
                         std::ptrdiff_t begin, std::ptrdiff_t end) noexcept {
#if defined(__AVX2__) && !defined(__CUDACC__)
  constexpr std::ptrdiff_t W = gae_simd::lanes<T>::width;
  const std::ptrdiff_t n_tokens = rewards.extent(1);
  const bool masked = !mask.empty();
  std::ptrdiff_t b = begin;
  while (b + W <= end) {
    const std::ptrdiff_t rows = b + 2 * W <= end ? 2 * W : W;
    const gae_simd::tile<T> x{&rewards(b, 0),
                              &values(b, 0),
                              masked ? &mask(b, 0) : nullptr,
                              &advantages(b, 0),
                              &returns(b, 0),
                              rewards.stride(0),
                              values.stride(0),
                              masked ? mask.stride(0) : 0,
                              advantages.stride(0),
                              returns.stride(0)};
    if (masked)
      gae_simd::gae_group<T, true>(x, rows, n_tokens, gamma, gamma_lambda);
    else
      gae_simd::gae_group<T, false>(x, rows, n_tokens, gamma, gamma_lambda);
    b += rows;
  }
  begin = b;
#endif
  gae_rows(rewards, values, mask, advantages, returns, gamma, gamma_lambda, begin, end);
}

/// True when every view has unit inner stride and the outputs' rows do not overlap: the
/// SIMD path's precondition.
template <class T>
[[nodiscard]] bool gae_fast_path(matrix_view<const T> rewards, matrix_view<const T> values,
                                 mask_view mask, matrix_view<T> advantages, matrix_view<T> returns) noexcept {
  const std::ptrdiff_t n_tokens = rewards.extent(1);
  const auto unit = [](const auto& view) { return view.stride(1) == 1; };
  return n_tokens > 1 && unit(rewards) && unit(values) && unit(advantages) && unit(returns) &&
         (mask.empty() || unit(mask)) && advantages.stride(0) >= n_tokens && returns.stride(0) >= n_tokens;
}

template <class T>
void gae(const cpu_backend& backend, matrix_view<const T> rewards, matrix_view<const T> values,
         mask_view mask, matrix_view<T> advantages, matrix_view<T> returns, T gamma,
         T gamma_lambda) {
  const std::ptrdiff_t n_rows = rewards.extent(0), n_tokens = rewards.extent(1);
  if (!gae_fast_path(rewards, values, mask, advantages, returns)) {
    detail::parallel_for(
        backend, n_rows,
        [&](std::ptrdiff_t begin, std::ptrdiff_t end) {
          gae_rows(rewards, values, mask, advantages, returns, gamma, gamma_lambda, begin, end);
        },
        /*min_per_thread=*/8);
    return;
  }
  // Split whole 8-row groups over the threads, and only when each thread gets ≥ 128K tokens
  // (≈ 100 µs of work): detail::parallel_for starts its threads on every call, ≈ 30 µs on the
  // 2-core build machine, so smaller calls run faster on the calling thread alone.
  constexpr std::ptrdiff_t group = 8, min_tokens_per_thread = 131072;
  const std::ptrdiff_t n_groups = (n_rows + group - 1) / group;
  const std::ptrdiff_t min_groups = (min_tokens_per_thread + group * n_tokens - 1) / (group * n_tokens);
  detail::parallel_for(
      backend, n_groups,
      [&](std::ptrdiff_t first, std::ptrdiff_t last) {
        const std::ptrdiff_t begin = first * group, end = last * group < n_rows ? last * group : n_rows;
        gae_rows_contiguous(rewards, values, mask, advantages, returns, gamma, gamma_lambda, begin, end);
      },
      min_groups);
}

template <class T>
void discounted_returns(const cpu_backend& backend, matrix_view<const T> rewards, mask_view mask,
                        matrix_view<T> returns, T gamma) {
  const std::ptrdiff_t n_tokens = rewards.extent(1);
  const bool masked = !mask.empty();
  detail::parallel_for(
      backend, rewards.extent(0),
      [&](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t b = begin; b < end; ++b) {
          T next_return = T(0);
          for (std::ptrdiff_t t = n_tokens - 1; t >= 0; --t) {
            const T reward = (!masked || mask(b, t) != 0) ? rewards(b, t) : T(0);
            next_return = math::discounted_return_step(reward, next_return, gamma);
            returns(b, t) = next_return;
          }
        }
      },
      /*min_per_thread=*/8);
}

}  // namespace rlhf::cpu_impl
