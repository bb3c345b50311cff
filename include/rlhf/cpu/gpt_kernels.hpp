// rlhf/cpu/gpt_kernels.hpp — the layers of the reference GPT (rlhf/models/gpt.hpp) on the CPU:
// GEMMs, layer norm, GELU, causal attention (full and against a KV cache), the embedding and
// their backward passes, written out one by one (llm.c style) over raw row-major buffers.
// Included by <rlhf/models/gpt.hpp>; arguments are checked there.
//
// Every function takes the backend first and splits its work over backend.threads with
// detail::parallel_for. The cut depends only on the sizes and the thread count, and every
// output element is computed by one thread, so results do not depend on the scheduling.
// GEMMs are Eigen products over Eigen::Map of our buffers (no allocation beyond Eigen's own
// packing blocks); the split runs along the larger output dimension so that the operand packed
// again by every part is the smaller one.
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/detail/parallel.hpp>
#include <rlhf/detail/simd.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

namespace rlhf::cpu_impl::gpt_kernels {

using index = std::ptrdiff_t;

template <class T>
using row_matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using matrix_map = Eigen::Map<row_matrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using const_matrix_map = Eigen::Map<const row_matrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using row_map = Eigen::Map<Eigen::Array<T, 1, Eigen::Dynamic>>;
template <class T>
using const_row_map = Eigen::Map<const Eigen::Array<T, 1, Eigen::Dynamic>>;

template <class T>
matrix_map<T> mat(T* p, index rows, index cols, index ld) {
  return matrix_map<T>(p, rows, cols, Eigen::OuterStride<>(ld));
}
template <class T>
const_matrix_map<T> cmat(const T* p, index rows, index cols, index ld) {
  return const_matrix_map<T>(p, rows, cols, Eigen::OuterStride<>(ld));
}

/// Work (in multiply-adds) below which a part is not worth a thread.
inline constexpr double min_work_per_part = double(1 << 17);

/// Runs body(part, begin, end) for `parts` contiguous slices of [0, n), one slice per thread.
template <class Body>
void split(const cpu_backend& backend, index n, index parts, Body&& body) {
  parts = std::max<index>(1, std::min(parts, n));
  if (parts == 1) {
    if (n > 0) body(index{0}, index{0}, n);
    return;
  }
  detail::parallel_for(
      cpu_backend{.threads = static_cast<int>(std::min<index>(parts, backend.threads))}, parts,
      [&](index p0, index p1) {
        for (index p = p0; p < p1; ++p) body(p, n * p / parts, n * (p + 1) / parts);
      });
}

/// How many parts `work` multiply-adds are cut into on this backend.
inline index parts_for(const cpu_backend& backend, double work) {
  const auto by_work = static_cast<index>(work / min_work_per_part);
  return std::max<index>(1, std::min<index>(std::max(1, backend.threads), by_work));
}

/// C (m×n, ldc) = or += op(A)·op(B), op(A) m×k, op(B) k×n. A is (m×k, lda) or, transposed,
/// (k×m, lda); B is (k×n, ldb) or, transposed, (n×k, ldb).
template <bool TransA, bool TransB, class T>
void gemm(const cpu_backend& backend, index m, index n, index k, const T* a, index lda, const T* b,
          index ldb, T* c, index ldc, bool accumulate) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (!accumulate) mat(c, m, n, ldc).setZero();
    return;
  }
  const auto block = [&](index r0, index r1, index c0, index c1) {
    auto out = mat(c + r0 * ldc + c0, r1 - r0, c1 - c0, ldc);
    const auto run = [&](const auto& lhs, const auto& rhs) {
      if (accumulate)
        out.noalias() += lhs * rhs;
      else
        out.noalias() = lhs * rhs;
    };
    const auto rhs_of = [&](const auto& lhs) {
      if constexpr (TransB)
        run(lhs, cmat(b + c0 * ldb, c1 - c0, k, ldb).transpose());
      else
        run(lhs, cmat(b + c0, k, c1 - c0, ldb));
    };
    if constexpr (TransA)
      rhs_of(cmat(a + r0, k, r1 - r0, lda).transpose());
    else
      rhs_of(cmat(a + r0 * lda, r1 - r0, k, lda));
  };
  const index parts = parts_for(backend, double(m) * double(n) * double(k));
  if (m >= n)
    split(backend, m, parts, [&](index, index r0, index r1) { block(r0, r1, 0, n); });
  else
    split(backend, n, parts, [&](index, index c0, index c1) { block(0, m, c0, c1); });
}

/// Rows up to which the decode-sized kernels below replace Eigen's GEMM: with a few rows the
/// GEMM is a stream over the weights, and Eigen would pack (copy) the whole weight matrix on
/// every call; these read it once, in place.
inline constexpr index small_rows = 16;

/// A hint that *p will be read soon (nothing where the compiler has no prefetch builtin).
inline void prefetch(const void* p) noexcept {
#if defined(__GNUC__)
  __builtin_prefetch(p, 0, 3);
#else
  (void)p;
#endif
}

/// out (N, O) = in (N, I) · W (I, O) for N ≤ small_rows: for each column block, out rows stay in
/// L1 while W's rows stream through once (out[r] += in[r, i]·W[i] for i in order).
template <class T>
void small_rows_times(const cpu_backend& backend, T* out, const T* in, const T* w, index n, index in_dim,
                      index out_dim) {
  constexpr index block = 256;
  const index blocks = (out_dim + block - 1) / block;
  split(backend, blocks, parts_for(backend, double(n) * double(in_dim) * double(out_dim)),
        [&](index, index b0, index b1) {
          for (index blk = b0; blk < b1; ++blk) {
            const index c0 = blk * block, width = std::min(block, out_dim - c0);
            for (index r = 0; r < n; ++r) std::fill(out + r * out_dim + c0, out + r * out_dim + c0 + width, T(0));
            for (index i = 0; i < in_dim; ++i) {
              const T* wi = w + i * out_dim + c0;
              if (i + 4 < in_dim)  // W streams from memory once: ask for the row 4 ahead
                for (index c = 0; c < width; c += index(64 / sizeof(T))) prefetch(wi + 4 * out_dim + c);
              for (index r = 0; r < n; ++r) {
                const T a = in[r * in_dim + i];
                T* o = out + r * out_dim + c0;
                for (index c = 0; c < width; ++c) o[c] += a * wi[c];
              }
            }
          }
        });
}

namespace detail_small {
#if defined(__AVX2__) && defined(__FMA__) && !defined(__CUDACC__)
RLHF_ALWAYS_INLINE float hsum(__m256 v) noexcept {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

/// c[r, j] = ⟨a_r, b_j⟩ for R rows of a and columns j ∈ [j0, j1), two b rows at a time.
template <int R>
void dot_rows(const float* a, index lda, const float* b, index ldb, float* c, index ldc, index k, index j0,
              index j1) {
  const index k8 = k - k % 8;
  index j = j0;
  for (; j + 2 <= j1; j += 2) {
    const float* b0 = b + j * ldb;
    const float* b1 = b0 + ldb;
    __m256 acc0[R], acc1[R];
    for (int r = 0; r < R; ++r) acc0[r] = acc1[r] = _mm256_setzero_ps();
    for (index q = 0; q < k8; q += 8) {
      // The weights stream from memory once: ask for the rows 16 ahead while these are summed.
      _mm_prefetch(reinterpret_cast<const char*>(b0 + 16 * ldb + 2 * q), _MM_HINT_T0);
      const __m256 w0 = _mm256_loadu_ps(b0 + q), w1 = _mm256_loadu_ps(b1 + q);
      for (int r = 0; r < R; ++r) {
        const __m256 x = _mm256_loadu_ps(a + r * lda + q);
        acc0[r] = _mm256_fmadd_ps(x, w0, acc0[r]);
        acc1[r] = _mm256_fmadd_ps(x, w1, acc1[r]);
      }
    }
    for (int r = 0; r < R; ++r) {
      float s0 = hsum(acc0[r]), s1 = hsum(acc1[r]);
      for (index q = k8; q < k; ++q) {
        s0 += a[r * lda + q] * b0[q];
        s1 += a[r * lda + q] * b1[q];
      }
      c[r * ldc + j] = s0;
      c[r * ldc + j + 1] = s1;
    }
  }
  for (; j < j1; ++j) {
    const float* b0 = b + j * ldb;
    for (int r = 0; r < R; ++r) {
      __m256 acc = _mm256_setzero_ps();
      for (index q = 0; q < k8; q += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + r * lda + q), _mm256_loadu_ps(b0 + q), acc);
      float s = hsum(acc);
      for (index q = k8; q < k; ++q) s += a[r * lda + q] * b0[q];
      c[r * ldc + j] = s;
    }
  }
}
#endif
}  // namespace detail_small

/// C (M, N) = A (M, K) · B (N, K)ᵀ for M ≤ small_rows (the logits of a decode step): B's rows
/// are read once per block of 64 (kept in L2 for the next group of 4 rows of A), with no copy.
template <class T>
void small_rows_times_transposed(const cpu_backend& backend, index m, index n, index k, const T* a, index lda,
                                 const T* b, index ldb, T* c, index ldc) {
#if defined(__AVX2__) && defined(__FMA__) && !defined(__CUDACC__)
  if constexpr (std::is_same_v<T, float>) {
    constexpr index block = 64;
    const index blocks = (n + block - 1) / block;
    split(backend, blocks, parts_for(backend, double(m) * double(n) * double(k)), [&](index, index b0, index b1) {
      for (index blk = b0; blk < b1; ++blk) {
        const index j0 = blk * block, j1 = std::min(n, j0 + block);
        for (index r = 0; r < m; r += 4) {
          const float* ar = a + r * lda;
          float* cr = c + r * ldc;
          switch (std::min<index>(4, m - r)) {
            case 1: detail_small::dot_rows<1>(ar, lda, b, ldb, cr, ldc, k, j0, j1); break;
            case 2: detail_small::dot_rows<2>(ar, lda, b, ldb, cr, ldc, k, j0, j1); break;
            case 3: detail_small::dot_rows<3>(ar, lda, b, ldb, cr, ldc, k, j0, j1); break;
            default: detail_small::dot_rows<4>(ar, lda, b, ldb, cr, ldc, k, j0, j1); break;
          }
        }
      }
    });
    return;
  }
#endif
  gemm<false, true>(backend, m, n, k, a, lda, b, ldb, c, ldc, false);
}

/// out (N, O) = in (N, I) · W (I, O) + bias (O): a Hugging Face Conv1D (weights stored (in, out)).
template <class T>
void linear_forward(const cpu_backend& backend, T* out, const T* in, const T* w, const T* bias,
                    index n, index in_dim, index out_dim) {
  if (n <= small_rows)
    small_rows_times(backend, out, in, w, n, in_dim, out_dim);
  else
    gemm<false, false>(backend, n, out_dim, in_dim, in, in_dim, w, out_dim, out, out_dim, false);
  if (bias == nullptr) return;
  const const_row_map<T> b(bias, out_dim);
  split(backend, n, parts_for(backend, double(n) * double(out_dim) * 16.0), [&](index, index r0, index r1) {
    for (index r = r0; r < r1; ++r) row_map<T>(out + r * out_dim, out_dim) += b;
  });
}

/// Backward of linear_forward: din (N, I) = or += dout · Wᵀ (skipped when din is null);
/// dW (I, O) += inᵀ · dout; dbias (O) += Σ_rows dout.
template <class T>
void linear_backward(const cpu_backend& backend, T* din, T* dw, T* dbias, const T* dout, const T* in,
                     const T* w, index n, index in_dim, index out_dim, bool accumulate_din) {
  if (din != nullptr)
    gemm<false, true>(backend, n, in_dim, out_dim, dout, out_dim, w, out_dim, din, in_dim, accumulate_din);
  gemm<true, false>(backend, in_dim, out_dim, n, in, in_dim, dout, out_dim, dw, out_dim, true);
  if (dbias == nullptr) return;
  split(backend, out_dim, parts_for(backend, double(n) * double(out_dim) * 4.0), [&](index, index c0, index c1) {
    row_map<T> db(dbias + c0, c1 - c0);
    for (index r = 0; r < n; ++r) db += const_row_map<T>(dout + r * out_dim + c0, c1 - c0);
  });
}

/// Layer norm over rows of width D: out = (x − mean)·rstd·weight + bias; mean and rstd (N) saved.
template <class T>
void layernorm_forward(const cpu_backend& backend, T* out, T* mean, T* rstd, const T* x,
                       const T* weight, const T* bias, index n, index d, double eps) {
  const const_row_map<T> w(weight, d), b(bias, d);
  split(backend, n, parts_for(backend, double(n) * double(d) * 8.0), [&](index, index r0, index r1) {
    for (index r = r0; r < r1; ++r) {
      const const_row_map<T> xr(x + r * d, d);
      const T m = xr.sum() / static_cast<T>(d);
      const T var = (xr - m).square().sum() / static_cast<T>(d);
      const T s = T(1) / std::sqrt(var + static_cast<T>(eps));
      row_map<T>(out + r * d, d) = (xr - m) * s * w + b;
      if (mean != nullptr) mean[r] = m;
      if (rstd != nullptr) rstd[r] = s;
    }
  });
}

/// Backward of layer norm: dx (N, D) += ...; dweight, dbias (D) +=.
template <class T>
void layernorm_backward(const cpu_backend& backend, T* dx, T* dweight, T* dbias, const T* dout,
                        const T* x, const T* mean, const T* rstd, const T* weight, index n, index d) {
  const const_row_map<T> w(weight, d);
  const double work = double(n) * double(d) * 8.0;
  split(backend, n, parts_for(backend, work), [&](index, index r0, index r1) {
    for (index r = r0; r < r1; ++r) {
      const const_row_map<T> xr(x + r * d, d), g(dout + r * d, d);
      // dnorm = g·w, norm = (x − mean)·rstd: both re-formed on the fly (no temporaries).
      const T s = rstd[r], m = mean[r];
      const T a = (g * w).mean(), c = (g * w * (xr - m)).mean() * s;
      row_map<T>(dx + r * d, d) += s * (g * w - a - (xr - m) * (s * c));
    }
  });
  split(backend, d, parts_for(backend, work), [&](index, index c0, index c1) {
    row_map<T> dw(dweight + c0, c1 - c0), db(dbias + c0, c1 - c0);
    for (index r = 0; r < n; ++r) {
      const const_row_map<T> g(dout + r * d + c0, c1 - c0);
      dw += g * ((const_row_map<T>(x + r * d + c0, c1 - c0) - mean[r]) * rstd[r]);
      db += g;
    }
  });
}

/// GELU, tanh approximation (GPT-2): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
template <class T>
void gelu_forward(const cpu_backend& backend, T* out, const T* x, index count) {
  constexpr T c = T(0.7978845608028654);  // √(2/π)
  constexpr index block = 4096;
  const index blocks = (count + block - 1) / block;
  split(backend, blocks, parts_for(backend, double(count) * 32.0), [&](index, index b0, index b1) {
    const index i0 = b0 * block, i1 = std::min(count, b1 * block);
    const const_row_map<T> xs(x + i0, i1 - i0);
    row_map<T>(out + i0, i1 - i0) = T(0.5) * xs * (T(1) + (c * (xs + T(0.044715) * xs.cube())).tanh());
  });
}

/// dx = dout · gelu'(x), written over dout's buffer `dx` (may alias dout).
template <class T>
void gelu_backward(const cpu_backend& backend, T* dx, const T* dout, const T* x, index count) {
  constexpr T c = T(0.7978845608028654);
  constexpr index block = 4096;
  const index blocks = (count + block - 1) / block;
  split(backend, blocks, parts_for(backend, double(count) * 40.0), [&](index, index b0, index b1) {
    alignas(64) T tanh_buffer[block];  // tanh is needed twice: computed once, on the stack
    for (index blk = b0; blk < b1; ++blk) {
      const index i0 = blk * block, i1 = std::min(count, (blk + 1) * block);
      const const_row_map<T> xs(x + i0, i1 - i0);
      row_map<T> t(tanh_buffer, i1 - i0);
      t = (c * (xs + T(0.044715) * xs.cube())).tanh();
      row_map<T>(dx + i0, i1 - i0) =
          const_row_map<T>(dout + i0, i1 - i0) *
          (T(0.5) * (T(1) + t) + T(0.5) * xs * (T(1) - t.square()) * c * (T(1) + T(3 * 0.044715) * xs.square()));
    }
  });
}

/// Softmax of scores[0, length) in place over the keys whose valid[j] is set; the others get 0.
/// A row with no valid key becomes all zeros (a padding query: no NaN).
template <class T>
void masked_softmax(T* scores, const std::uint8_t* valid, index length) {
  T max = -std::numeric_limits<T>::infinity();
  for (index j = 0; j < length; ++j)
    if (valid[j] && scores[j] > max) max = scores[j];
  if (max == -std::numeric_limits<T>::infinity()) {
    std::fill(scores, scores + length, T(0));
    return;
  }
  row_map<T> s(scores, length);
  s = (s - max).exp();
  T sum = 0;
  for (index j = 0; j < length; ++j) {
    if (!valid[j]) scores[j] = T(0);
    sum += scores[j];
  }
  s *= T(1) / sum;
}

/// Causal multi-head attention over one (B, T) batch.
///   qkv (B, T, 3D) holds q | k | v, head h at columns [h·hd, (h+1)·hd) of each third;
///   valid (B, T) key mask; att (B, H, T, T) saved probabilities (0 outside causal ∧ valid);
///   out (B, T, D) the heads' outputs, concatenated.
template <class T>
void attention_forward(const cpu_backend& backend, T* out, T* att, const T* qkv, const std::uint8_t* valid,
                       index batch, index tokens, index width, index heads) {
  const index hd = width / heads, ld = 3 * width;
  const T scale = T(1) / std::sqrt(static_cast<T>(hd));
  const index items = batch * heads;
  const double work = double(tokens) * double(tokens) * double(hd) * 2.0;
  split(backend, items, parts_for(backend, work * double(items)), [&](index, index i0, index i1) {
    for (index item = i0; item < i1; ++item) {
      const index b = item / heads, h = item % heads;
      const T* base = qkv + b * tokens * ld + h * hd;
      const auto q = cmat(base, tokens, hd, ld);
      const auto k = cmat(base + width, tokens, hd, ld);
      const auto v = cmat(base + 2 * width, tokens, hd, ld);
      auto p = mat(att + item * tokens * tokens, tokens, tokens, tokens);
      p.noalias() = (q * k.transpose()) * scale;
      const std::uint8_t* key_valid = valid + b * tokens;
      for (index i = 0; i < tokens; ++i) {
        T* row = att + (item * tokens + i) * tokens;
        masked_softmax(row, key_valid, i + 1);
        std::fill(row + i + 1, row + tokens, T(0));
      }
      mat(out + b * tokens * width + h * hd, tokens, hd, width).noalias() = p * v;
    }
  });
}

/// Backward of attention_forward: dqkv (B, T, 3D) written in full from dout (B, T, D).
/// scratch: parts_for(...) blocks of T·T elements (attention_scratch_size).
template <class T>
void attention_backward(const cpu_backend& backend, T* dqkv, T* scratch, const T* dout, const T* qkv,
                        const T* att, index batch, index tokens, index width, index heads) {
  const index hd = width / heads, ld = 3 * width;
  const T scale = T(1) / std::sqrt(static_cast<T>(hd));
  const index items = batch * heads;
  const double work = double(tokens) * double(tokens) * double(hd) * 4.0;
  split(backend, items, parts_for(backend, work * double(items)), [&](index part, index i0, index i1) {
    auto dp = mat(scratch + part * tokens * tokens, tokens, tokens, tokens);
    for (index item = i0; item < i1; ++item) {
      const index b = item / heads, h = item % heads;
      const T* base = qkv + b * tokens * ld + h * hd;
      T* dbase = dqkv + b * tokens * ld + h * hd;
      const auto q = cmat(base, tokens, hd, ld);
      const auto k = cmat(base + width, tokens, hd, ld);
      const auto v = cmat(base + 2 * width, tokens, hd, ld);
      const auto p = cmat(att + item * tokens * tokens, tokens, tokens, tokens);
      const auto dy = cmat(dout + b * tokens * width + h * hd, tokens, hd, width);
      mat(dbase + 2 * width, tokens, hd, ld).noalias() = p.transpose() * dy;  // dV
      dp.noalias() = dy * v.transpose();
      for (index i = 0; i < tokens; ++i) {  // dS = P ∘ (dP − rowsum(P ∘ dP)), times the scale
        const index n = i + 1;
        T* dp_row = scratch + (part * tokens + i) * tokens;
        row_map<T> d(dp_row, n);
        const const_row_map<T> pr(att + (item * tokens + i) * tokens, n);
        const T dot = (pr * d).sum();
        d = pr * (d - dot) * scale;
        std::fill(dp_row + n, dp_row + tokens, T(0));
      }
      mat(dbase, tokens, hd, ld).noalias() = dp * k;                   // dQ
      mat(dbase + width, tokens, hd, ld).noalias() = dp.transpose() * q;  // dK
    }
  });
}

/// Scratch elements attention_backward needs.
inline index attention_scratch_size(const cpu_backend& backend, index tokens) {
  return std::max(1, backend.threads) * tokens * tokens;
}

/// One decode step of attention against a KV cache, for `batch` active rows.
///   qkv (batch, 3D) the new tokens' projections; active row i is cache row rows[i] (i itself
///   when rows is null); its k and v are first written at slot `pos` of k_cache / v_cache
///   (cache rows, H, capacity, hd); queries attend to slots [0, pos] whose valid (cache rows,
///   capacity) entry is set. out (batch, D). scratch: threads·capacity elements.
template <class T>
void attention_decode(const cpu_backend& backend, T* out, T* k_cache, T* v_cache, T* scratch,
                      const T* qkv, const std::uint8_t* valid, const index* rows, index batch, index width,
                      index heads, index capacity, index pos) {
  const index hd = width / heads;
  const T scale = T(1) / std::sqrt(static_cast<T>(hd));
  const index items = batch * heads;
  split(backend, items, parts_for(backend, double(items) * double(pos + 1) * double(hd) * 2.0),
        [&](index part, index i0, index i1) {
          T* s = scratch + part * capacity;
          for (index item = i0; item < i1; ++item) {
            const index b = item / heads, h = item % heads;
            const index cache_row = rows != nullptr ? rows[b] : b;
            const T* row = qkv + b * 3 * width + h * hd;
            T* kc = k_cache + (cache_row * heads + h) * capacity * hd;
            T* vc = v_cache + (cache_row * heads + h) * capacity * hd;
            std::copy(row + width, row + width + hd, kc + pos * hd);
            std::copy(row + 2 * width, row + 2 * width + hd, vc + pos * hd);
            const Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, 1>> q(row, hd);
            Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, 1>> scores(s, pos + 1);
            scores.noalias() = (cmat(kc, pos + 1, hd, hd) * q) * scale;
            masked_softmax(s, valid + cache_row * capacity, pos + 1);
            Eigen::Map<Eigen::Matrix<T, 1, Eigen::Dynamic>>(out + b * width + h * hd, hd).noalias() =
                scores.transpose() * cmat(vc, pos + 1, hd, hd);
          }
        });
}

/// x (N, D) = wte[token] + wpe[position].
template <class T>
void embedding_forward(const cpu_backend& backend, T* x, const std::int32_t* token, const std::int32_t* position,
                       const T* wte, const T* wpe, index n, index d) {
  split(backend, n, parts_for(backend, double(n) * double(d) * 4.0), [&](index, index r0, index r1) {
    for (index r = r0; r < r1; ++r)
      row_map<T>(x + r * d, d) = const_row_map<T>(wte + index{token[r]} * d, d) +
                                 const_row_map<T>(wpe + index{position[r]} * d, d);
  });
}

/// dwte[token] += dx, dwpe[position] += dx (rows in order: the same sums for any thread count).
template <class T>
void embedding_backward(T* dwte, T* dwpe, const T* dx, const std::int32_t* token, const std::int32_t* position,
                        index n, index d) {
  for (index r = 0; r < n; ++r) {
    const const_row_map<T> g(dx + r * d, d);
    row_map<T>(dwte + index{token[r]} * d, d) += g;
    row_map<T>(dwpe + index{position[r]} * d, d) += g;
  }
}

}  // namespace rlhf::cpu_impl::gpt_kernels
