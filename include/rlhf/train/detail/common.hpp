// rlhf/train/detail/common.hpp — pieces every trainer shares: the per-epoch data order, the
// gradient-norm check, shifted views of logits, timing. Private (no stability promise).
#pragma once

#include <rlhf/concepts.hpp>
#include <rlhf/config.hpp>
#include <rlhf/rng.hpp>
#include <rlhf/tensor.hpp>
#include <rlhf/tensor_view.hpp>
#include <rlhf/train/metrics.hpp>
#include <rlhf/train/state.hpp>

#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace rlhf::train {

/// How long fit() runs and where its per-step metrics go.
struct fit_options {
  std::uint64_t epochs = 1;     ///< passes over the data (SFT, RM; PPO: over the prompts)
  std::uint64_t max_steps = 0;  ///< 0 = no limit; otherwise stop once state().step reaches it
  /// Called after every step with the step number (1-based, = state().step) and its metrics.
  std::function<void(std::uint64_t, const metrics&)> on_step{};
};

/// What one step did: its statistics, and the NaN/Inf it met, if any (then no optimizer step
/// was taken and the trainer's state did not advance).
struct step_result {
  metrics stats;
  std::optional<numerical_event> event;
};

}  // namespace rlhf::train

namespace rlhf::train::detail {

/// The order of epoch `epoch` of n examples: identity without shuffle, else a Fisher–Yates
/// shuffle drawn from rlhf::rng{{.seed = seed, .stream = epoch}} (recomputed on resume).
inline std::vector<std::size_t> epoch_order(std::size_t n, bool shuffle, std::uint64_t seed, std::uint64_t epoch) {
  std::vector<std::size_t> order(n);
  for (std::size_t i = 0; i < n; ++i) order[i] = i;
  if (!shuffle) return order;
  rng gen{{.seed = seed, .stream = epoch}};
  for (std::size_t i = n; i > 1; --i) {
    const auto j = static_cast<std::size_t>(gen.uniform_index(i));
    std::swap(order[i - 1], order[j]);
  }
  return order;
}

/// The next `count` example indices from `pos`, advancing it (a short last batch ends the epoch).
inline std::vector<std::size_t> next_indices(data_position& pos, std::size_t n, std::size_t count, bool shuffle,
                                             std::uint64_t seed) {
  const auto order = epoch_order(n, shuffle, seed, pos.epoch);
  std::vector<std::size_t> out;
  while (out.size() < count && pos.offset < n) out.push_back(order[pos.offset++]);
  if (pos.offset >= n) {
    ++pos.epoch;
    pos.offset = 0;
  }
  return out;
}

/// Like next_indices but wrapping into the next epoch so that exactly `count` come back
/// (PPO prompts and ptx texts, which are drawn as a stream).
inline std::vector<std::size_t> next_indices_wrapping(data_position& pos, std::size_t n, std::size_t count,
                                                      bool shuffle, std::uint64_t seed) {
  std::vector<std::size_t> out;
  while (out.size() < count) {
    auto more = next_indices(pos, n, count - out.size(), shuffle, seed);
    out.insert(out.end(), more.begin(), more.end());
  }
  return out;
}

/// Global L2 norm of the model's gradients, in double. When it is not finite, `event` names
/// the first parameter holding a NaN or Inf.
template <class M>
double gradient_norm(M& model, std::uint64_t step, std::optional<numerical_event>& event,
                     const std::string& prefix = "") {
  double sum = 0;
  for (const auto& p : model.parameters()) {
    const auto g = p.grad;
    for (std::ptrdiff_t i = 0; i < g.extent(0); ++i) {
      const double x = static_cast<double>(g(i));
      sum += x * x;
    }
  }
  const double norm = std::sqrt(sum);
  if (!std::isfinite(norm) && !event) {
    for (const auto& p : model.parameters())
      for (std::ptrdiff_t i = 0; i < p.grad.extent(0); ++i)
        if (!std::isfinite(static_cast<double>(p.grad(i)))) {
          event = numerical_event{step,
                                  prefix + "gradient of parameter '" + std::string(p.name) + "' [" +
                                      std::to_string(i) + "]",
                                  static_cast<double>(p.grad(i))};
          return norm;
        }
    event = numerical_event{step, prefix + "gradient norm", norm};
  }
  return norm;
}

/// Records a non-finite scalar once.
inline void check_finite(std::optional<numerical_event>& event, std::uint64_t step, const char* tensor, double value) {
  if (!event && !std::isfinite(value)) event = numerical_event{step, tensor, value};
}

/// Rows [first, first + count) along dimension 1 of a (B, T, ·) or (B, T) view.
template <class T, std::size_t Rank>
tensor_view<T, Rank> columns(const tensor_view<T, Rank>& v, std::ptrdiff_t first, std::ptrdiff_t count) {
  std::ptrdiff_t extents[Rank];
  std::ptrdiff_t strides[Rank];
  for (std::size_t r = 0; r < Rank; ++r) {
    extents[r] = v.extent(r);
    strides[r] = v.stride(r);
  }
  extents[1] = count;
  return tensor_view<T, Rank>(v.data_handle() + first * v.stride(1), extents, strides);
}

/// Reuses `t` when it already has these extents (the buffer is zeroed), else reallocates.
template <class T, std::size_t Rank, class... E>
void ensure_shape(tensor<T, Rank>& t, E... extents) {
  const std::ptrdiff_t want[Rank] = {static_cast<std::ptrdiff_t>(extents)...};
  bool same = true;
  for (std::size_t r = 0; r < Rank; ++r) same = same && t.extent(r) == want[r];
  if (same)
    t.fill(T{});
  else
    t = tensor<T, Rank>(extents...);
}

class stopwatch {
 public:
  stopwatch() : start_(std::chrono::steady_clock::now()) {}
  [[nodiscard]] double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::chrono::steady_clock::time_point start_;
};

inline double per_second(double count, double seconds) { return seconds > 0 ? count / seconds : 0.0; }

}  // namespace rlhf::train::detail
