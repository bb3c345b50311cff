// tests/support/random.hpp — seeded test inputs from the library's own generator.
#pragma once

#include <rlhf/rng.hpp>

#include <cstdint>
#include <vector>

namespace rlhf::test {

template <class T>
std::vector<T> normal_vector(std::size_t n, std::uint64_t seed, double scale = 1.0) {
  rng gen{{.seed = seed}};
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(scale * gen.normal<double>());
  return v;
}

/// A right-padded mask: row b keeps lengths[b] leading ones.
inline std::vector<std::uint8_t> right_padded_mask(const std::vector<int>& lengths, int n_tokens) {
  std::vector<std::uint8_t> m;
  for (int len : lengths)
    for (int t = 0; t < n_tokens; ++t) m.push_back(t < len ? 1 : 0);
  return m;
}

}  // namespace rlhf::test
