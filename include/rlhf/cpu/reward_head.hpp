// rlhf/cpu/reward_head.hpp — reference CPU implementation of the linear reward and value heads.
// Included by <rlhf/reward_head.hpp> (host compilers only: it uses Eigen); arguments are
// already checked there.
//
// Rows of hidden with a unit inner stride go through Eigen maps (dot products and axpys over
// D); other strides take plain loops. Dot products and gradient sums accumulate in double
// whatever T is. Threads split rows (forward, dhidden) or slices of D (dweight), so every
// output element is summed in the same order for any thread count: results are bitwise
// independent of cpu_backend::threads.
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/detail/parallel.hpp>
#include <rlhf/tensor_view.hpp>

#include <Eigen/Core>

#include <cstddef>

namespace rlhf::cpu_impl {

namespace head_detail {

/// Rows of fewer than this many hidden elements per thread are not worth a thread.
inline constexpr std::ptrdiff_t min_elements_per_thread = 1 << 15;

inline std::ptrdiff_t min_items(std::ptrdiff_t width) {
  return width > 0 ? (min_elements_per_thread + width - 1) / width : 1;
}

template <class T>
using column = Eigen::Matrix<T, Eigen::Dynamic, 1>;

/// The weight as doubles (D), read through its stride once.
template <class T>
Eigen::VectorXd weight_as_double(vector_view<const T> weight) {
  Eigen::VectorXd w(weight.extent(0));
  for (std::ptrdiff_t i = 0; i < weight.extent(0); ++i) w(i) = static_cast<double>(weight(i));
  return w;
}

/// Σ_i p[i·stride]·w[begin + i], i < length, in double.
template <class T>
double dot(const T* p, std::ptrdiff_t stride, const Eigen::VectorXd& w, std::ptrdiff_t begin,
           std::ptrdiff_t length) {
  if (stride == 1) {
    const Eigen::Map<const column<T>> row(p, length);
    return row.template cast<double>().dot(w.segment(begin, length));
  }
  double sum = 0;
  for (std::ptrdiff_t i = 0; i < length; ++i)
    sum += static_cast<double>(p[i * stride]) * w(begin + i);
  return sum;
}

/// p[i·stride] (=, or += when accumulate) scale·w[i], i < length.
template <class T>
void write_scaled(T* p, std::ptrdiff_t stride, double scale, const Eigen::VectorXd& w,
                  std::ptrdiff_t length, bool accumulate) {
  if (stride == 1) {
    Eigen::Map<column<T>> row(p, length);
    if (accumulate) {
      row = (row.template cast<double>() + scale * w).template cast<T>();
    } else {
      row = (scale * w).template cast<T>();
    }
    return;
  }
  for (std::ptrdiff_t i = 0; i < length; ++i) {
    const double v = scale * w(i);
    p[i * stride] = accumulate ? static_cast<T>(static_cast<double>(p[i * stride]) + v) : static_cast<T>(v);
  }
}

/// p[i·stride] = 0, i < length.
template <class T>
void write_zeros(T* p, std::ptrdiff_t stride, std::ptrdiff_t length) {
  if (stride == 1) {
    Eigen::Map<column<T>>(p, length).setZero();
    return;
  }
  for (std::ptrdiff_t i = 0; i < length; ++i) p[i * stride] = T(0);
}

/// acc[begin + i] += scale·p[i·stride], i < length (double).
template <class T>
void axpy(const T* p, std::ptrdiff_t stride, double scale, Eigen::VectorXd& acc,
          std::ptrdiff_t begin, std::ptrdiff_t length) {
  if (stride == 1) {
    const Eigen::Map<const column<T>> row(p, length);
    acc.segment(begin, length) += scale * row.template cast<double>();
    return;
  }
  for (std::ptrdiff_t i = 0; i < length; ++i)
    acc(begin + i) += scale * static_cast<double>(p[i * stride]);
}

template <class T>
const T* row_pointer(const cube_view<const T>& hidden, std::ptrdiff_t b, std::ptrdiff_t t) {
  return hidden.data_handle() + b * hidden.stride(0) + t * hidden.stride(1);
}
template <class T>
T* row_pointer(const cube_view<T>& hidden, std::ptrdiff_t b, std::ptrdiff_t t) {
  return hidden.data_handle() + b * hidden.stride(0) + t * hidden.stride(1);
}

/// dweight (= or +=) Σ_rows g(row)·hidden(row), summed row by row in order, over D slices in
/// parallel. `rows` enumerates (b, t, g) through visit(fn).
template <class T, class VisitRows>
void weight_gradient(const cpu_backend& backend, const cube_view<const T>& hidden,
                     const VisitRows& visit, vector_view<T> dweight, bool accumulate,
                     std::ptrdiff_t rows) {
  const std::ptrdiff_t width = hidden.extent(2);
  Eigen::VectorXd sum = Eigen::VectorXd::Zero(width);
  detail::parallel_for(
      backend, width,
      [&](std::ptrdiff_t begin, std::ptrdiff_t end) {
        visit([&](std::ptrdiff_t b, std::ptrdiff_t t, double g) {
          if (g != 0.0)
            axpy(row_pointer(hidden, b, t) + begin * hidden.stride(2), hidden.stride(2), g, sum,
                 begin, end - begin);
        });
      },
      /*min_per_thread=*/rows > 0 ? min_items(rows) : 1);
  for (std::ptrdiff_t i = 0; i < width; ++i)
    dweight(i) = accumulate ? static_cast<T>(static_cast<double>(dweight(i)) + sum(i))
                            : static_cast<T>(sum(i));
}

template <class T>
void write_bias_gradient(vector_view<T> dbias, double sum, bool accumulate) {
  dbias(0) = accumulate ? static_cast<T>(static_cast<double>(dbias(0)) + sum) : static_cast<T>(sum);
}

}  // namespace head_detail

/// scores[b] = ⟨hidden[b, end_index[b], :], weight⟩ + bias (bias empty = 0).
template <class T>
void reward_head_forward(const cpu_backend& backend, cube_view<const T> hidden,
                         vector_view<const T> weight, vector_view<const T> bias,
                         vector_view<const std::ptrdiff_t> end_index, vector_view<T> scores) {
  const std::ptrdiff_t width = hidden.extent(2);
  const Eigen::VectorXd w = head_detail::weight_as_double(weight);
  const double b0 = bias.empty() ? 0.0 : static_cast<double>(bias(0));
  detail::parallel_for(
      backend, hidden.extent(0),
      [&](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t b = begin; b < end; ++b)
          scores(b) = static_cast<T>(
              head_detail::dot(head_detail::row_pointer(hidden, b, end_index(b)), hidden.stride(2), w,
                               0, width) +
              b0);
      },
      head_detail::min_items(width));
}

/// dhidden[b, end_index[b], :] = dscores[b]·weight, other rows 0 (or += when accumulating);
/// dweight = Σ_b dscores[b]·hidden[b, end_index[b], :]; dbias = Σ_b dscores[b].
template <class T>
void reward_head_backward(const cpu_backend& backend, cube_view<const T> hidden,
                          vector_view<const T> weight, vector_view<const std::ptrdiff_t> end_index,
                          vector_view<const T> dscores, cube_view<T> dhidden,
                          vector_view<T> dweight, vector_view<T> dbias,
                          bool accumulate_parameters, bool accumulate_hidden) {
  const std::ptrdiff_t batch = hidden.extent(0), tokens = hidden.extent(1), width = hidden.extent(2);
  if (!dhidden.empty()) {
    const Eigen::VectorXd w = head_detail::weight_as_double(weight);
    detail::parallel_for(
        backend, batch,
        [&](std::ptrdiff_t begin, std::ptrdiff_t end) {
          for (std::ptrdiff_t b = begin; b < end; ++b) {
            const double g = static_cast<double>(dscores(b));
            for (std::ptrdiff_t t = 0; t < tokens; ++t) {
              T* row = head_detail::row_pointer(dhidden, b, t);
              if (t == end_index(b)) {
                head_detail::write_scaled(row, dhidden.stride(2), g, w, width, accumulate_hidden);
              } else if (!accumulate_hidden) {
                head_detail::write_zeros(row, dhidden.stride(2), width);
              }
            }
          }
        },
        head_detail::min_items(tokens * width));
  }
  if (!dweight.empty()) {
    const auto visit = [&](const auto& fn) {
      for (std::ptrdiff_t b = 0; b < batch; ++b) fn(b, end_index(b), static_cast<double>(dscores(b)));
    };
    head_detail::weight_gradient(backend, hidden, visit, dweight, accumulate_parameters, batch);
  }
  if (!dbias.empty()) {
    double sum = 0;
    for (std::ptrdiff_t b = 0; b < batch; ++b) sum += static_cast<double>(dscores(b));
    head_detail::write_bias_gradient(dbias, sum, accumulate_parameters);
  }
}

/// values[b, t] = ⟨hidden[b, t, :], weight⟩ + bias.
template <class T>
void value_head_forward(const cpu_backend& backend, cube_view<const T> hidden,
                        vector_view<const T> weight, vector_view<const T> bias,
                        matrix_view<T> values) {
  const std::ptrdiff_t tokens = hidden.extent(1), width = hidden.extent(2);
  const Eigen::VectorXd w = head_detail::weight_as_double(weight);
  const double b0 = bias.empty() ? 0.0 : static_cast<double>(bias(0));
  detail::parallel_for(
      backend, hidden.extent(0) * tokens,
      [&](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t r = begin; r < end; ++r) {
          const std::ptrdiff_t b = r / tokens, t = r % tokens;
          values(b, t) = static_cast<T>(
              head_detail::dot(head_detail::row_pointer(hidden, b, t), hidden.stride(2), w, 0, width) + b0);
        }
      },
      head_detail::min_items(width));
}

/// dhidden[b, t, :] = dvalues[b, t]·weight (or +=); dweight = Σ_{b,t} dvalues[b, t]·hidden[b, t, :];
/// dbias = Σ_{b,t} dvalues[b, t].
template <class T>
void value_head_backward(const cpu_backend& backend, cube_view<const T> hidden,
                         vector_view<const T> weight, matrix_view<const T> dvalues,
                         cube_view<T> dhidden, vector_view<T> dweight, vector_view<T> dbias,
                         bool accumulate_parameters, bool accumulate_hidden) {
  const std::ptrdiff_t batch = hidden.extent(0), tokens = hidden.extent(1), width = hidden.extent(2);
  if (!dhidden.empty()) {
    const Eigen::VectorXd w = head_detail::weight_as_double(weight);
    detail::parallel_for(
        backend, batch * tokens,
        [&](std::ptrdiff_t begin, std::ptrdiff_t end) {
          for (std::ptrdiff_t r = begin; r < end; ++r) {
            const std::ptrdiff_t b = r / tokens, t = r % tokens;
            head_detail::write_scaled(head_detail::row_pointer(dhidden, b, t), dhidden.stride(2),
                                      static_cast<double>(dvalues(b, t)), w, width, accumulate_hidden);
          }
        },
        head_detail::min_items(width));
  }
  if (!dweight.empty()) {
    const auto visit = [&](const auto& fn) {
      for (std::ptrdiff_t b = 0; b < batch; ++b)
        for (std::ptrdiff_t t = 0; t < tokens; ++t) fn(b, t, static_cast<double>(dvalues(b, t)));
    };
    head_detail::weight_gradient(backend, hidden, visit, dweight, accumulate_parameters, batch * tokens);
  }
  if (!dbias.empty()) {
    double sum = 0;
    for (std::ptrdiff_t b = 0; b < batch; ++b)
      for (std::ptrdiff_t t = 0; t < tokens; ++t) sum += static_cast<double>(dvalues(b, t));
    head_detail::write_bias_gradient(dbias, sum, accumulate_parameters);
  }
}

}  // namespace rlhf::cpu_impl
