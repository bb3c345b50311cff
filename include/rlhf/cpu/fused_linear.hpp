// rlhf/cpu/fused_linear.hpp — reference CPU implementation of the fused linear log-probs
// (logits = hidden · Wᵀ never materialised). Included by <rlhf/fused_linear.hpp> (host compilers
// only: it uses Eigen); arguments are already checked there.
//
// Blocking (fixed for given N, V and vocab block, never by the thread count, so every output is
// bitwise the same for any number of threads):
//
//   forward   tasks = row blocks of R = 256 rows, split over the threads. A task walks the
//             vocabulary blocks v = [v0, v0 + Vb) in order: tile (R × Vb) = hidden[rows] ·
//             W[v]ᵀ (one Eigen GEMM), one pass over the tile gives each row's block state
//             {max, Σe, Σe·(z − max)} (math/logprobs.hpp), folded into the row's running state
//             with math::softmax_combine; the label's logit is picked up in its block.
//   backward  vocabulary blocks in order; for each block:
//               1. row blocks over the threads: tile = hidden[rows] · W[v]ᵀ into the block's
//                  dlogits buffer (N × Vb), overwritten in place by dlogits = ∂L/∂x (the
//                  per-element gradient of math::logprob_entropy_grad, / τ), then
//                  dhidden[rows] (+)= dlogits[rows] · W[v]   (= for the first block);
//               2. slices of 128 vocabulary rows over the threads:
//                  dW[slice] += dlogits[:, slice]ᵀ · hidden.
//             Each output element is summed in one fixed order: dhidden over vocabulary blocks
//             in order, dW over the rows inside one GEMM of fixed shape.
//
// Workspace (fused_linear_workspace_bytes): forward R·Vb logits + R row states per thread,
// backward N·Vb dlogits — independent of V beyond the block, so never the N × V logits.
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/concepts.hpp>
#include <rlhf/detail/parallel.hpp>
#include <rlhf/detail/simd.hpp>
#include <rlhf/math/fast_exp.hpp>
#include <rlhf/math/logprobs.hpp>
#include <rlhf/tensor_view.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

namespace rlhf::cpu_impl {

namespace fused_linear_detail {

/// Rows of hidden per forward task / per backward tile.
inline constexpr std::ptrdiff_t row_block = 256;
/// Vocabulary rows of dW per backward GEMM (step 2).
inline constexpr std::ptrdiff_t dw_block = 128;

template <class T>
using row_matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
/// Unit inner stride known at compile time (Eigen's GEMM then reads the memory in place);
/// otherwise any strides (Eigen copies such an operand before multiplying).
template <bool Unit>
using stride = std::conditional_t<Unit, Eigen::OuterStride<>, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>>;
template <class T, bool Unit>
using const_map = Eigen::Map<const row_matrix<T>, Eigen::Unaligned, stride<Unit>>;
template <class T, bool Unit>
using mutable_map = Eigen::Map<row_matrix<T>, Eigen::Unaligned, stride<Unit>>;

template <bool Unit>
stride<Unit> make_stride(std::ptrdiff_t outer, std::ptrdiff_t inner) {
  if constexpr (Unit) {
    return stride<Unit>(outer);
  } else {
    return stride<Unit>(outer, inner);
  }
}

/// Rows [r0, r0 + rows) of a (·, D) view as an Eigen matrix.
template <bool Unit, class T>
const_map<T, Unit> rows_of(matrix_view<const T> v, std::ptrdiff_t r0, std::ptrdiff_t rows) {
  return const_map<T, Unit>(v.data_handle() + r0 * v.stride(0), rows, v.extent(1),
                            make_stride<Unit>(v.stride(0), v.stride(1)));
}
template <bool Unit, class T>
mutable_map<T, Unit> rows_of(matrix_view<T> v, std::ptrdiff_t r0, std::ptrdiff_t rows) {
  return mutable_map<T, Unit>(v.data_handle() + r0 * v.stride(0), rows, v.extent(1),
                              make_stride<Unit>(v.stride(0), v.stride(1)));
}
/// A (rows × cols) block of a dense row-major buffer with leading dimension ld.
template <class T>
mutable_map<T, true> buffer(T* p, std::ptrdiff_t rows, std::ptrdiff_t cols, std::ptrdiff_t ld) {
  return mutable_map<T, true>(p, rows, cols, Eigen::OuterStride<>(ld));
}
template <class T>
const_map<T, true> const_buffer(const T* p, std::ptrdiff_t rows, std::ptrdiff_t cols, std::ptrdiff_t ld) {
  return const_map<T, true>(p, rows, cols, Eigen::OuterStride<>(ld));
}

/// True when a (·, D) view's rows are contiguous (inner stride 1, or a single column).
template <class T>
bool unit_inner(matrix_view<T> v) noexcept {
  return v.stride(1) == 1 || v.extent(1) == 1;
}

/// The softmax state of z = x·inv_t over x[0, n): {max z, Σ e^{z − max}, Σ e^{z − max}·(z − max)}
/// accumulated in double (math::softmax_state's definition, one block at a time).
template <class T>
math::softmax_state<double> block_state(const T* x, std::ptrdiff_t n, T inv_t) noexcept {
  T mx = x[0];
  for (std::ptrdiff_t j = 1; j < n; ++j) mx = x[j] > mx ? x[j] : mx;
  double s = 0, u = 0;
  std::ptrdiff_t j = 0;
  if constexpr (sizeof(T) == 4) {
#if defined(__AVX2__) && defined(__FMA__) && !defined(__CUDACC__)
    const __m256 vmx = _mm256_set1_ps(mx), vt = _mm256_set1_ps(inv_t);
    __m256d s_lo = _mm256_setzero_pd(), s_hi = _mm256_setzero_pd(), u_lo = _mm256_setzero_pd(),
            u_hi = _mm256_setzero_pd();
    for (; j + 8 <= n; j += 8) {
      const __m256 d = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + j), vmx), vt);  // z − max ≤ 0
      const __m256 e = detail::simd::exp8(d);
      detail::simd::add_widened(s_lo, s_hi, e);
      detail::simd::add_widened(u_lo, u_hi, _mm256_mul_ps(e, d));
    }
    s = detail::simd::sum4(s_lo) + detail::simd::sum4(s_hi);
    u = detail::simd::sum4(u_lo) + detail::simd::sum4(u_hi);
#endif
    for (; j < n; ++j) {
      const float d = (x[j] - mx) * inv_t;
      const float e = math::fast_exp(d);
      s += static_cast<double>(e);
      u += static_cast<double>(e * d);
    }
  } else {
    for (; j < n; ++j) {
      const double d = (static_cast<double>(x[j]) - static_cast<double>(mx)) * static_cast<double>(inv_t);
      const double e = std::exp(d);
      s += e;
      u += e * d;
    }
  }
  return {static_cast<double>(mx) * static_cast<double>(inv_t), s, u};
}

/// Row of dlogits in place over its logits x[0, n) (vocabulary ids v0 + j):
/// x_j ← math::logprob_entropy_grad(z_j, lse, j == label, g_logp, g_H, H) / τ.
template <class T>
void grad_row(T* x, std::ptrdiff_t n, std::ptrdiff_t v0, token_id label, double inv_t, double lse,
              double g_logp, double g_entropy, double entropy) noexcept {
  std::ptrdiff_t j = 0;
  if constexpr (sizeof(T) == 4) {
#if defined(__AVX2__) && defined(__FMA__) && !defined(__CUDACC__)
    // The same formula in float, 8 lanes: with d = z − lse = log p, p = e^d,
    //   g = −g_logp·p − g_H·p·(d + H)  (the label's +g_logp added below).
    const __m256 vt = _mm256_set1_ps(static_cast<float>(inv_t)), vl = _mm256_set1_ps(static_cast<float>(lse));
    const __m256 vg = _mm256_set1_ps(static_cast<float>(g_logp)), vge = _mm256_set1_ps(static_cast<float>(g_entropy));
    const __m256 vh = _mm256_set1_ps(static_cast<float>(entropy));
    for (; j + 8 <= n; j += 8) {
      const __m256 d = _mm256_fmsub_ps(_mm256_loadu_ps(x + j), vt, vl);
      const __m256 p = detail::simd::exp8(d);
      const __m256 inner = _mm256_fmadd_ps(vge, _mm256_add_ps(d, vh), vg);  // g_logp + g_H·(d + H)
      _mm256_storeu_ps(x + j, _mm256_mul_ps(_mm256_mul_ps(p, inner), _mm256_sub_ps(_mm256_setzero_ps(), vt)));
    }
    const std::ptrdiff_t label_j = static_cast<std::ptrdiff_t>(label) - v0;
    if (label_j >= 0 && label_j < j) x[label_j] += static_cast<float>(g_logp * inv_t);
#endif
  }
  for (; j < n; ++j) {
    const double z = static_cast<double>(x[j]) * inv_t;
    const bool is_label = v0 + j == static_cast<std::ptrdiff_t>(label);
    x[j] = static_cast<T>(math::logprob_entropy_grad(z, lse, is_label, g_logp, g_entropy, entropy) * inv_t);
  }
}

inline std::ptrdiff_t vocab_block(std::ptrdiff_t n_vocab, std::ptrdiff_t requested) noexcept {
  if (requested > 0) return std::min(requested, n_vocab);
  // V/16 rounded down to 64 (so the backward's N × Vb buffer is ≤ 1/16 of the logits), within
  // [64, 1024] (1024: GEMM tiles that stay in L2 with row blocks of 256).
  const std::ptrdiff_t b = std::clamp<std::ptrdiff_t>(n_vocab / 16 / 64 * 64, 64, 1024);
  return std::min(b, n_vocab);
}

}  // namespace fused_linear_detail

/// Bytes of workspace the forward (backward = false) or backward allocates for (N, V) with this
/// vocabulary block (0 = auto) on `threads` threads, Eigen's GEMM packing buffers not included.
template <class T>
std::size_t fused_linear_workspace_bytes(std::ptrdiff_t n_rows, std::ptrdiff_t n_vocab, std::ptrdiff_t requested_block,
                                         int threads, bool backward) noexcept {
  namespace d = fused_linear_detail;
  const std::ptrdiff_t vb = d::vocab_block(n_vocab, requested_block);
  if (backward) return static_cast<std::size_t>(n_rows * vb) * sizeof(T);
  const std::ptrdiff_t r = std::min(d::row_block, n_rows);
  const std::ptrdiff_t tasks = (n_rows + d::row_block - 1) / d::row_block;
  const std::ptrdiff_t busy = std::max<std::ptrdiff_t>(1, std::min<std::ptrdiff_t>(threads, tasks));
  return static_cast<std::size_t>(busy) *
         (static_cast<std::size_t>(r * vb) * sizeof(T) + static_cast<std::size_t>(r) * (sizeof(math::softmax_state<double>) + sizeof(double)));
}

template <class T>
struct fused_linear_forward_args {
  matrix_view<const T> hidden, unembedding;
  vector_view<const token_id> labels;
  vector_view<T> logp, entropy, logsumexp;
  double temperature;
  std::ptrdiff_t vocab_block;
};

template <bool Unit, class T>
void fused_linear_logprobs_impl(const cpu_backend& backend, const fused_linear_forward_args<T>& a) {
  namespace d = fused_linear_detail;
  const std::ptrdiff_t n_rows = a.hidden.extent(0), n_vocab = a.unembedding.extent(0);
  const std::ptrdiff_t vb = d::vocab_block(n_vocab, a.vocab_block);
  const std::ptrdiff_t n_tasks = (n_rows + d::row_block - 1) / d::row_block;
  const double inv_t = 1.0 / a.temperature;
  detail::parallel_for(backend, n_tasks, [&](std::ptrdiff_t first, std::ptrdiff_t last) {
    const std::ptrdiff_t r_max = std::min(d::row_block, n_rows);
    std::vector<T> tile(static_cast<std::size_t>(r_max * vb));
    std::vector<math::softmax_state<double>> states(static_cast<std::size_t>(r_max));
    std::vector<double> label_z(static_cast<std::size_t>(r_max));
    for (std::ptrdiff_t task = first; task < last; ++task) {
      const std::ptrdiff_t r0 = task * d::row_block, rows = std::min(d::row_block, n_rows - r0);
      std::fill(states.begin(), states.end(), math::softmax_state<double>{});
      const d::const_map<T, Unit> h = d::rows_of<Unit>(a.hidden, r0, rows);
      for (std::ptrdiff_t v0 = 0; v0 < n_vocab; v0 += vb) {
        const std::ptrdiff_t cols = std::min(vb, n_vocab - v0);
        d::mutable_map<T, true> logits = d::buffer(tile.data(), rows, cols, vb);
        logits.noalias() = h * d::rows_of<Unit>(a.unembedding, v0, cols).transpose();
        for (std::ptrdiff_t i = 0; i < rows; ++i) {
          const T* x = tile.data() + i * vb;
          auto& st = states[static_cast<std::size_t>(i)];
          st = math::softmax_combine(st, d::block_state(x, cols, static_cast<T>(inv_t)));
          const std::ptrdiff_t lj = static_cast<std::ptrdiff_t>(a.labels(r0 + i)) - v0;
          if (lj >= 0 && lj < cols) label_z[static_cast<std::size_t>(i)] = static_cast<double>(x[lj]) * inv_t;
        }
      }
      for (std::ptrdiff_t i = 0; i < rows; ++i) {
        const auto& st = states[static_cast<std::size_t>(i)];
        const double lse = math::softmax_logsumexp(st);
        a.logp(r0 + i) = static_cast<T>(label_z[static_cast<std::size_t>(i)] - lse);
        if (!a.entropy.empty()) a.entropy(r0 + i) = static_cast<T>(math::softmax_entropy(st));
        if (!a.logsumexp.empty()) a.logsumexp(r0 + i) = static_cast<T>(lse);
      }
    }
  });
}

template <class T>
struct fused_linear_backward_args {
  matrix_view<const T> hidden, unembedding;
  vector_view<const token_id> labels;
  vector_view<const T> logsumexp, entropy, grad_logp, grad_entropy;
  matrix_view<T> dhidden, dunembedding;
  double temperature;
  std::ptrdiff_t vocab_block;
};

template <bool Unit, class T>
void fused_linear_logprobs_backward_impl(const cpu_backend& backend, const fused_linear_backward_args<T>& a) {
  namespace d = fused_linear_detail;
  const std::ptrdiff_t n_rows = a.hidden.extent(0), n_vocab = a.unembedding.extent(0);
  const std::ptrdiff_t vb = d::vocab_block(n_vocab, a.vocab_block);
  const std::ptrdiff_t n_row_tasks = (n_rows + d::row_block - 1) / d::row_block;
  const double inv_t = 1.0 / a.temperature;
  const bool with_entropy = !a.grad_entropy.empty();
  std::vector<T> dlogits(static_cast<std::size_t>(n_rows * vb));
  const d::const_map<T, Unit> h_all = d::rows_of<Unit>(a.hidden, 0, n_rows);
  for (std::ptrdiff_t v0 = 0; v0 < n_vocab; v0 += vb) {
    const std::ptrdiff_t cols = std::min(vb, n_vocab - v0);
    const d::const_map<T, Unit> w = d::rows_of<Unit>(a.unembedding, v0, cols);
    detail::parallel_for(backend, n_row_tasks, [&](std::ptrdiff_t first, std::ptrdiff_t last) {
      for (std::ptrdiff_t task = first; task < last; ++task) {
        const std::ptrdiff_t r0 = task * d::row_block, rows = std::min(d::row_block, n_rows - r0);
        T* tile = dlogits.data() + r0 * vb;
        d::mutable_map<T, true> g = d::buffer(tile, rows, cols, vb);
        g.noalias() = d::rows_of<Unit>(a.hidden, r0, rows) * w.transpose();
        for (std::ptrdiff_t i = 0; i < rows; ++i) {
          const std::ptrdiff_t r = r0 + i;
          d::grad_row(tile + i * vb, cols, v0, a.labels(r), inv_t, static_cast<double>(a.logsumexp(r)),
                      static_cast<double>(a.grad_logp(r)), with_entropy ? static_cast<double>(a.grad_entropy(r)) : 0.0,
                      with_entropy ? static_cast<double>(a.entropy(r)) : 0.0);
        }
        d::mutable_map<T, Unit> dh = d::rows_of<Unit>(a.dhidden, r0, rows);
        if (v0 == 0)
          dh.noalias() = g * w;
        else
          dh.noalias() += g * w;
      }
    });
    const std::ptrdiff_t n_slices = (cols + d::dw_block - 1) / d::dw_block;
    detail::parallel_for(backend, n_slices, [&](std::ptrdiff_t first, std::ptrdiff_t last) {
      for (std::ptrdiff_t s = first; s < last; ++s) {
        const std::ptrdiff_t c0 = s * d::dw_block, n_c = std::min(d::dw_block, cols - c0);
        const d::const_map<T, true> g = d::const_buffer(dlogits.data() + c0, n_rows, n_c, vb);
        d::mutable_map<T, Unit> dw = d::rows_of<Unit>(a.dunembedding, v0 + c0, n_c);
        dw.noalias() += g.transpose() * h_all;
      }
    });
  }
}

template <class T>
void fused_linear_logprobs(const cpu_backend& backend, const fused_linear_forward_args<T>& a) {
  namespace d = fused_linear_detail;
  if (d::unit_inner(a.hidden) && d::unit_inner(a.unembedding))
    fused_linear_logprobs_impl<true>(backend, a);
  else
    fused_linear_logprobs_impl<false>(backend, a);
}

template <class T>
void fused_linear_logprobs_backward(const cpu_backend& backend, const fused_linear_backward_args<T>& a) {
  namespace d = fused_linear_detail;
  if (d::unit_inner(a.hidden) && d::unit_inner(a.unembedding) && d::unit_inner(a.dhidden) && d::unit_inner(a.dunembedding))
    fused_linear_logprobs_backward_impl<true>(backend, a);
  else
    fused_linear_logprobs_backward_impl<false>(backend, a);
}

}  // namespace rlhf::cpu_impl
