// rlhf/cpu/reward_shaping.hpp — reference CPU implementation of per-token reward shaping and
// the end-index helpers. Included by <rlhf/reward_shaping.hpp>; arguments are already checked
// there.
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/cpu/kl.hpp>
#include <rlhf/detail/parallel.hpp>
#include <rlhf/math/stable.hpp>
#include <rlhf/tensor_view.hpp>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace rlhf::cpu_impl {

/// The shaping settings after checking, in the form the loop uses.
struct shaping_settings {
  kl_settings kl;
  double beta = 0.0;
  bool clip = false;
  double clip_value = 0.0;
  std::ptrdiff_t score_offset = 0;
  bool eos_penalty = false;
  double eos_penalty_value = 0.0;
  bool penalize_masked = false;
};

/// Per-row results the public function turns into statistics.
struct shaping_rows {
  std::vector<double> kl_sum;
  std::vector<double> non_score_sum;
  std::vector<std::int64_t> tokens;
  std::vector<double> score;  ///< the score as added (after the EOS penalty and the clip)
  std::vector<std::uint8_t> clipped;
  std::vector<std::uint8_t> penalised;
};

/// The views of one call. kl_in is empty when the KL is computed from logp / ref_logp.
template <class T>
struct shaping_views {
  matrix_view<const T> logp, ref_logp, kl_in;
  vector_view<const T> scores;
  vector_view<const std::ptrdiff_t> end_index;
  mask_view mask;
  vector_view<const std::uint8_t> has_eos;
  matrix_view<T> rewards, kl_out, non_score_out;
};

template <class C, class T>
T shaping_kl(const shaping_settings& s, const shaping_views<T>& v, std::ptrdiff_t b,
             std::ptrdiff_t t, bool valid) noexcept {
  if (!v.kl_in.empty()) return v.kl_in(b, t);
  const C log_ratio = static_cast<C>(v.logp(b, t)) - static_cast<C>(v.ref_logp(b, t));
  return static_cast<T>(kl_value<C>(s.kl, log_ratio, valid));
}

template <class T>
void shape_rewards(const cpu_backend& backend, const shaping_views<T>& v,
                   const shaping_settings& s, shaping_rows& r) {
  const std::ptrdiff_t rows = v.rewards.extent(0), cols = v.rewards.extent(1);
  const auto n = static_cast<std::size_t>(rows);
  r.kl_sum.assign(n, 0.0);
  r.non_score_sum.assign(n, 0.0);
  r.tokens.assign(n, 0);
  r.score.assign(n, 0.0);
  r.clipped.assign(n, 0);
  r.penalised.assign(n, 0);
  const bool masked = !v.mask.empty();
  const T minus_beta = static_cast<T>(-s.beta);
  detail::parallel_for(
      backend, rows,
      [&](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t b = begin; b < end; ++b) {
          const auto i = static_cast<std::size_t>(b);
          T score = v.scores(b);
          if (s.eos_penalty && v.has_eos(b) == 0) {
            score = score - static_cast<T>(s.eos_penalty_value);
            r.penalised[i] = 1;
          }
          if (s.clip) {
            const T clipped =
                math::clamp(score, static_cast<T>(-s.clip_value), static_cast<T>(s.clip_value));
            r.clipped[i] = clipped != score ? 1 : 0;
            score = clipped;
          }
          r.score[i] = static_cast<double>(score);
          const std::ptrdiff_t target = v.end_index(b) + s.score_offset;
          const std::ptrdiff_t at = target < cols ? target : cols - 1;
          double kl_sum = 0.0, non_score_sum = 0.0;
          std::int64_t tokens = 0;
          for (std::ptrdiff_t t = 0; t < cols; ++t) {
            const bool valid = !masked || v.mask(b, t) != 0;
            T k = T(0), non_score = T(0);
            if (valid || s.penalize_masked) {
              k = s.kl.float32 ? shaping_kl<float>(s, v, b, t, true)
                               : shaping_kl<T>(s, v, b, t, true);
              non_score = minus_beta * k;
            } else if (s.kl.mask_before_transform && v.kl_in.empty()) {
              k = s.kl.float32 ? shaping_kl<float>(s, v, b, t, false)
                               : shaping_kl<T>(s, v, b, t, false);
            }
            if (valid) {
              kl_sum += static_cast<double>(k);
              non_score_sum += static_cast<double>(non_score);
              ++tokens;
            }
            if (!v.kl_out.empty()) v.kl_out(b, t) = k;
            if (!v.non_score_out.empty()) v.non_score_out(b, t) = non_score;
            v.rewards(b, t) = t == at ? non_score + score : non_score;
          }
          r.kl_sum[i] = kl_sum;
          r.non_score_sum[i] = non_score_sum;
          r.tokens[i] = tokens;
        }
      },
      /*min_per_thread=*/8);
}

/// Per row: the last index with mask ≠ 0, or −1 when there is none.
inline void last_valid_index(const cpu_backend& backend, mask_view mask,
                             vector_view<std::ptrdiff_t> out) {
  const std::ptrdiff_t cols = mask.extent(1);
  detail::parallel_for(
      backend, mask.extent(0),
      [&](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t b = begin; b < end; ++b) {
          std::ptrdiff_t last = -1;
          for (std::ptrdiff_t t = cols - 1; t >= 0; --t)
            if (mask(b, t) != 0) {
              last = t;
              break;
            }
          out(b) = last;
        }
      },
      /*min_per_thread=*/64);
}

/// Per row: the first index with mask ≠ 0, or T when there is none.
inline void first_true_index(const cpu_backend& backend, mask_view mask,
                             vector_view<std::ptrdiff_t> out) {
  const std::ptrdiff_t cols = mask.extent(1);
  detail::parallel_for(
      backend, mask.extent(0),
      [&](std::ptrdiff_t begin, std::ptrdiff_t end) {
        for (std::ptrdiff_t b = begin; b < end; ++b) {
          std::ptrdiff_t first = cols;
          for (std::ptrdiff_t t = 0; t < cols; ++t)
            if (mask(b, t) != 0) {
              first = t;
              break;
            }
          out(b) = first;
        }
      },
      /*min_per_thread=*/64);
}

}  // namespace rlhf::cpu_impl
