// tests/support/named_tensors.hpp — a toy Trainable model for optimizer and checkpoint tests:
// named flat tensors with shapes (what rlhf::save_safetensors / load_safetensors need).
#pragma once

#include <rlhf/concepts.hpp>
#include <rlhf/rng.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rlhf::test {

template <class T>
struct named_tensors {
  using scalar_type = T;
  struct tensor {
    std::string name;
    std::vector<std::int64_t> shape;
    std::vector<T> value;
    std::vector<T> grad;
  };
  std::vector<tensor> tensors;

  /// A tensor of N(0, 1) values from `seed`, gradient 0.
  void add(std::string name, std::vector<std::int64_t> shape, std::uint64_t seed) {
    std::size_t n = 1;
    for (auto d : shape) n *= static_cast<std::size_t>(d);
    rlhf::rng gen{{.seed = seed}};
    std::vector<T> v(n);
    for (auto& x : v) x = gen.normal<T>();
    tensors.push_back({std::move(name), std::move(shape), std::move(v), std::vector<T>(n, T(0))});
  }
  std::vector<rlhf::parameter_ref<T>> parameters() {
    std::vector<rlhf::parameter_ref<T>> refs;
    for (auto& t : tensors)
      refs.push_back({t.name, rlhf::vector_view<T>(t.value.data(), t.value.size()),
                      rlhf::vector_view<T>(t.grad.data(), t.grad.size())});
    return refs;
  }
  std::vector<std::int64_t> shape(std::string_view name) const {
    for (const auto& t : tensors)
      if (t.name == name) return t.shape;
    return {};
  }
};

}  // namespace rlhf::test
