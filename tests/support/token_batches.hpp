// tests/support/token_batches.hpp — (B, T) token batches owning their data, left-padded with
// explicit positions, and a plain log-softmax, for the model tests.
#pragma once

#include <rlhf/concepts.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace rlhf::test {

/// A (B, T) batch owning its data; rows are left-padded to the longest.
struct batch_data {
  std::ptrdiff_t rows = 0, cols = 0;
  std::vector<rlhf::token_id> tokens, positions;
  std::vector<std::uint8_t> mask;

  static batch_data left_padded(const std::vector<std::vector<rlhf::token_id>>& seqs, std::ptrdiff_t cols = 0, rlhf::token_id pad = 0) {
    batch_data d;
    d.rows = static_cast<std::ptrdiff_t>(seqs.size());
    for (const auto& s : seqs) d.cols = std::max(d.cols, static_cast<std::ptrdiff_t>(s.size()));
    d.cols = std::max(d.cols, cols);
    for (const auto& s : seqs) {
      const std::ptrdiff_t padding = d.cols - static_cast<std::ptrdiff_t>(s.size());
      for (std::ptrdiff_t t = 0; t < d.cols; ++t) {
        const bool real = t >= padding;
        d.tokens.push_back(real ? s[static_cast<std::size_t>(t - padding)] : pad);
        d.positions.push_back(real ? static_cast<rlhf::token_id>(t - padding) : 0);
        d.mask.push_back(real ? 1 : 0);
      }
    }
    return d;
  }
  [[nodiscard]] rlhf::token_batch view() const {
    return {rlhf::matrix_view<const rlhf::token_id>(tokens.data(), rows, cols),
            rlhf::matrix_view<const rlhf::token_id>(positions.data(), rows, cols), rlhf::mask_view(mask.data(), rows, cols)};
  }
};

/// Log-softmax of row (V) at token, after dividing by temperature, in double.
template <class T>
double log_softmax_at(const T* row, std::ptrdiff_t vocab, rlhf::token_id token, double temperature = 1.0) {
  double max = -std::numeric_limits<double>::infinity();
  for (std::ptrdiff_t j = 0; j < vocab; ++j) max = std::max(max, static_cast<double>(row[j]) / temperature);
  double sum = 0;
  for (std::ptrdiff_t j = 0; j < vocab; ++j) sum += std::exp(static_cast<double>(row[j]) / temperature - max);
  return static_cast<double>(row[token]) / temperature - max - std::log(sum);
}

}  // namespace rlhf::test
