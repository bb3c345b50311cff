// rlhf/rng.hpp — reproducible random numbers: Philox4x32-10 and the library's own transforms.
//
// The std::*_distribution algorithms are implementation-defined, so the same seed gives other
// numbers under libstdc++, libc++ or MSVC. Every random number the library draws (sampling,
// initialisation, data order) comes from this generator and these transforms instead, so a
// seed means the same stream everywhere, on the CPU and — counter-based — on the GPU.
//
//   rlhf::rng gen{.seed = 1234};            // stream 0
//   float u = gen.uniform<float>();         // [0, 1)
//   double z = gen.normal<double>();        // N(0, 1)
//   auto k = gen.categorical(probs);        // index drawn with probability probs[k] / sum
//   rlhf::rng_state s = gen.state();        // save ...
//   gen.restore(s);                         // ... and continue exactly where it was
#pragma once

#include <rlhf/config.hpp>
#include <rlhf/error.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace rlhf {

/// One Philox4x32-10 block (Salmon et al. 2011, "Parallel random numbers: as easy as 1, 2, 3"):
/// 4 × 32 random bits from a 128-bit counter and a 64-bit key. Pure, usable in device code.
struct philox_block {
  std::uint32_t v[4];
};

RLHF_HOST_DEVICE constexpr philox_block philox4x32_10(philox_block counter, std::uint32_t key0,
                                                       std::uint32_t key1) noexcept {
  constexpr std::uint32_t multiplier0 = 0xD2511F53u, multiplier1 = 0xCD9E8D57u;
  constexpr std::uint32_t weyl0 = 0x9E3779B9u, weyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const std::uint64_t p0 = static_cast<std::uint64_t>(multiplier0) * counter.v[0];
    const std::uint64_t p1 = static_cast<std::uint64_t>(multiplier1) * counter.v[2];
    const std::uint32_t hi0 = static_cast<std::uint32_t>(p0 >> 32), lo0 = static_cast<std::uint32_t>(p0);
    const std::uint32_t hi1 = static_cast<std::uint32_t>(p1 >> 32), lo1 = static_cast<std::uint32_t>(p1);
    counter = philox_block{{hi1 ^ counter.v[1] ^ key0, lo1, hi0 ^ counter.v[3] ^ key1, lo0}};
    key0 += weyl0;
    key1 += weyl1;
  }
  return counter;
}

/// Everything needed to continue a stream exactly: save it in checkpoints.
struct rng_state {
  std::uint64_t seed = 0;
  std::uint64_t stream = 0;
  std::uint64_t counter = 0;  // index of the next Philox block
  std::uint32_t used = 4;     // words of the current block already consumed (4 = none left)
  bool operator==(const rng_state&) const = default;
};

/// A Philox stream: (seed, stream) selects the sequence, the counter walks it.
class rng {
 public:
  struct options {
    std::uint64_t seed = 0;
    std::uint64_t stream = 0;  // independent sequences for the same seed (per sequence, per rank)
  };

  rng() = default;
  rng(options o) : state_{o.seed, o.stream, 0, 4} {}  // NOLINT: designated-initialiser friendly

  /// 32 random bits.
  std::uint32_t next_u32() noexcept {
    if (state_.used == 4) refill();
    return block_.v[state_.used++];
  }
  /// 64 random bits (two words, high first).
  std::uint64_t next_u64() noexcept {
    const std::uint64_t hi = next_u32();
    return (hi << 32) | next_u32();
  }

  /// Uniform in [0, 1): 24 random bits for float, 53 for double; never returns 1.
  template <class T = double>
  T uniform() noexcept {
    if constexpr (sizeof(T) <= 4) {
      return static_cast<T>(next_u32() >> 8) * T(0x1.0p-24);
    } else {
      return static_cast<T>(next_u64() >> 11) * T(0x1.0p-53);
    }
  }

  /// Standard normal by Box–Muller (one value per call; the pair's second value is dropped so
  /// that the state stays a plain counter).
  template <class T = double>
  T normal() noexcept {
    const double u1 = 1.0 - uniform<double>();  // (0, 1]: log is finite
    const double u2 = uniform<double>();
    return static_cast<T>(std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
  }

  /// Uniform integer in [0, n) without modulo bias (Lemire's multiply-and-reject).
  std::uint64_t uniform_index(std::uint64_t n) {
    if (n == 0) RLHF_THROW(invalid_argument("rlhf::rng::uniform_index(): n must be positive, got 0"));
    if (n <= 0xFFFFFFFFull) {
      const auto n32 = static_cast<std::uint32_t>(n);
      std::uint64_t m = static_cast<std::uint64_t>(next_u32()) * n32;
      auto low = static_cast<std::uint32_t>(m);
      if (low < n32) {
        const std::uint32_t threshold = static_cast<std::uint32_t>(-n32) % n32;
        while (low < threshold) {
          m = static_cast<std::uint64_t>(next_u32()) * n32;
          low = static_cast<std::uint32_t>(m);
        }
      }
      return m >> 32;
    }
    const std::uint64_t limit = ~std::uint64_t{0} - (~std::uint64_t{0} % n);
    std::uint64_t x = next_u64();
    while (x >= limit) x = next_u64();
    return x % n;
  }

  /// Index k drawn with probability weights[k] / Σ weights (weights ≥ 0, not all 0).
  template <class T>
  std::size_t categorical(std::span<const T> weights) {
    double total = 0;
    for (std::size_t i = 0; i < weights.size(); ++i) {
      const double w = static_cast<double>(weights[i]);
      if (!(w >= 0) || std::isinf(w))
        RLHF_THROW(invalid_argument("rlhf::rng::categorical(): weights[" + std::to_string(i) +
                                    "] must be finite and non-negative"));
      total += w;
    }
    if (!(total > 0))
      RLHF_THROW(invalid_argument("rlhf::rng::categorical(): the weights sum to 0 (" +
                                  std::to_string(weights.size()) + " weights)"));
    const double target = uniform<double>() * total;
    double running = 0;
    std::size_t last_positive = 0;
    for (std::size_t i = 0; i < weights.size(); ++i) {
      if (weights[i] > 0) last_positive = i;
      running += static_cast<double>(weights[i]);
      if (target < running && weights[i] > 0) return i;
    }
    return last_positive;  // rounding put target at the very end
  }
  template <class T>
  std::size_t categorical(const std::vector<T>& weights) {
    return categorical(std::span<const T>(weights));
  }

  [[nodiscard]] rng_state state() const noexcept { return state_; }
  void restore(const rng_state& s) noexcept {
    state_ = s;
    if (state_.used < 4) {
      // Rebuild the block that the saved counter had drawn from.
      --state_.counter;
      const std::uint32_t used = state_.used;
      refill();
      state_.used = used;
    }
  }

 private:
  void refill() noexcept {
    const philox_block counter{{static_cast<std::uint32_t>(state_.counter),
                                static_cast<std::uint32_t>(state_.counter >> 32),
                                static_cast<std::uint32_t>(state_.stream),
                                static_cast<std::uint32_t>(state_.stream >> 32)}};
    block_ = philox4x32_10(counter, static_cast<std::uint32_t>(state_.seed),
                           static_cast<std::uint32_t>(state_.seed >> 32));
    ++state_.counter;
    state_.used = 0;
  }

  rng_state state_{};
  philox_block block_{};
};

}  // namespace rlhf
