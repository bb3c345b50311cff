// rlhf/reward_shaping.hpp — per-token PPO rewards from a sequence score and a KL penalty, and
// the helpers that find where each response ends.
//
// Shapes: logp, ref_logp, kl, mask, rewards (B, T); scores, end_index, has_eos (B).
//
//   kl_t               = the per-token KL estimate (see <rlhf/kl.hpp>), or the kl input
//   non_score_reward_t = −β·kl_t                     on valid positions, 0 on masked ones
//   s_b                = clip(score_b − penalty·[no EOS in row b], −c, c)
//   rewards_t          = non_score_reward_t + [t = min(end_index_b + offset, T − 1)]·s_b
//
// end_index[b] is explicit — the index of the last response token, EOS included — and is
// never found by searching for PAD (last_valid_index() derives it from a mask when needed).
// Defaults: β = 0.02 (InstructGPT), k1, no score clip, offset 0, no missing-EOS penalty.
//
//   anchor                        options / inputs
//   InstructGPT paper              {.beta = 0.02}
//   lm-human-preferences           {.beta = β}, end_index = T − 1 (fixed-length responses)
//   TRL 0.11 compute_rewards       {.beta = β, .kl = {.estimator = ...}, .penalize_masked = true},
//                                  end_index = last_valid_index(mask) (an all-masked row raises);
//                                  kl_penalty="full": pass full_kl() output as inputs.kl
//   TRL head (PPOTrainer)          {.beta = kl_coef (0.05), .score_offset = 1, .missing_eos_penalty = p}
//   OpenRLHF compute_reward        {.beta = β, .kl = {k1, clamp 10, float32}, .score_clip = 10,
//                                  .penalize_masked = true}, end_index = last_valid_index(mask,
//                                  {.empty_row = last_position}); packed sequences: one row each
//   DeepSpeed-Chat                 {.beta = 0.1, .score_clip = 5, .score_offset = 1}
//
// Documented differences: β < 0 is an error (OpenRLHF silently uses 0: pass 0 to get its
// result); end_index outside [0, T) is an error (TRL raises IndexError on an all-masked row).
// The statistics are over valid positions only.
//
// Anchors: lm-human-preferences train_policy.py; TRL v0.11.4 PPOTrainer.compute_rewards; TRL
// head experimental/ppo/ppo_trainer.py; OpenRLHF models/utils.py compute_reward (HEAD and
// v0.5.9); DeepSpeed-Chat dschat/rlhf/ppo_trainer.py compute_rewards.
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/config.hpp>
#include <rlhf/cpu/reward_shaping.hpp>
#include <rlhf/detail/checks.hpp>
#include <rlhf/kl.hpp>
#include <rlhf/tensor_view.hpp>

#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace rlhf {

/// The inputs of shape_rewards(). Give either logp and ref_logp (the KL is estimated per
/// options.kl) or kl (a precomputed per-token KL, e.g. from full_kl()), not both.
template <class T>
struct shape_rewards_inputs {
  matrix_view<const T> logp{};      ///< (B, T) log π of the sampled tokens
  matrix_view<const T> ref_logp{};  ///< (B, T) log π_ref of the same tokens
  vector_view<const T> scores{};    ///< (B) reward-model scores
  vector_view<const std::ptrdiff_t> end_index{};  ///< (B) last response token, in [0, T)
  mask_view mask{};                 ///< (B, T) valid positions; empty = all valid
  vector_view<const std::uint8_t> has_eos{};  ///< (B) optional: 0 = the row has no EOS
  matrix_view<const T> kl{};        ///< (B, T) optional precomputed KL instead of logp/ref_logp
};

/// The outputs of shape_rewards(): rewards is required; kl and non_score_reward are written
/// when given (an empty view skips them).
template <class T>
struct shape_rewards_outputs {
  matrix_view<T> rewards{};           ///< (B, T)
  matrix_view<T> kl{};                ///< (B, T) optional: the per-token KL used
  matrix_view<T> non_score_reward{};  ///< (B, T) optional: −β·kl
};

struct reward_shaping_options {
  /// KL coefficient β ≥ 0 (InstructGPT: 0.02; TRL head 0.05; DeepSpeed-Chat 0.1). Use a KL
  /// controller to adapt it.
  double beta = 0.02;
  /// The KL estimator (k1 default: the unbiased choice for a reward); `accumulate` is unused.
  kl_options kl{};
  /// When set, scores are clipped to [−score_clip, score_clip] (OpenRLHF 10, DeepSpeed-Chat 5).
  std::optional<double> score_clip{};
  /// 0: the score lands on end_index (lm-human-preferences, TRL 0.11, OpenRLHF). 1: on the slot
  /// after it (TRL head, DeepSpeed-Chat), clamped to T − 1 as they do.
  std::ptrdiff_t score_offset = 0;
  /// When set, subtracted from the score of rows with has_eos = 0 (TRL head
  /// missing_eos_penalty), before the clip. Needs inputs.has_eos.
  std::optional<double> missing_eos_penalty{};
  /// true: −β·kl also on masked positions (TRL 0.11 and OpenRLHF compute it everywhere and
  /// rely on GAE's masking later). false (default): masked positions get 0.
  bool penalize_masked = false;
};

/// Statistics of one call, over valid positions, accumulated in double.
struct reward_shaping_stats {
  double mean_kl_sum = 0.0;   ///< batch mean of Σ_t kl_t (TRL objective/kl; lmhp/TRL controller input)
  double mean_kl_mean = 0.0;  ///< mean over rows of the per-row mean kl (OpenRLHF `kl`)
  double mean_non_score_reward = 0.0;  ///< batch mean of Σ_t −β·kl_t (TRL objective/non_score_reward)
  double mean_score = 0.0;             ///< mean of the scores as added (after penalty and clip)
  double mean_total_reward = 0.0;      ///< mean_score + mean_non_score_reward (TRL objective/rlhf_reward)
  std::int64_t clipped_scores = 0;     ///< rows whose score the clip changed
  std::int64_t missing_eos = 0;        ///< rows that received the missing-EOS penalty
};

/// What last_valid_index() does with a row that has no valid position.
enum class empty_row_policy : std::uint8_t {
  error,          ///< throw rlhf::invalid_argument naming the row (TRL: mask.nonzero()[-1] raises)
  last_position,  ///< T − 1 (OpenRLHF: argmax of an all-zero flipped row)
};

struct last_valid_index_options {
  empty_row_policy empty_row = empty_row_policy::error;
};

namespace detail {

/// A view the caller passed (even an empty-shaped one) rather than the default `{}`.
template <class V>
constexpr bool is_given(const V& v) noexcept {
  return v.data_handle() != nullptr || v.extent(0) != 0 || v.extent(1) != 0;
}

inline void check_index_output(const char* function, mask_view mask,
                               vector_view<std::ptrdiff_t> out) {
  require_not_empty(function, "mask", mask);
  require_extent(function, "end_index", out, 0, mask.extent(0), "the row count of mask");
}

template <class T>
reward_shaping_stats shape_rewards_checked(const cpu_backend& backend,
                                           const shape_rewards_inputs<T>& in,
                                           const shape_rewards_outputs<T>& out,
                                           const reward_shaping_options& o) {
  constexpr const char* function = "rlhf::shape_rewards()";
  const bool have_kl = is_given(in.kl);
  const bool have_logp = is_given(in.logp) || is_given(in.ref_logp);
  require(!(have_kl && have_logp), function, "pass either kl or logp and ref_logp, not both");
  require(have_kl || have_logp, function, "logp and ref_logp (or kl) are required");
  const char* source = have_kl ? "kl" : "logp";
  const matrix_view<const T> shape = have_kl ? in.kl : in.logp;
  require_not_empty(function, source, shape);
  if (!have_kl) require_same_shape(function, "logp", in.logp, "ref_logp", in.ref_logp);
  if (!in.mask.empty()) require_same_shape(function, source, shape, "mask", in.mask);
  require_same_shape(function, source, shape, "rewards", out.rewards);
  if (!out.kl.empty()) require_same_shape(function, source, shape, "kl output", out.kl);
  if (!out.non_score_reward.empty())
    require_same_shape(function, source, shape, "non_score_reward", out.non_score_reward);
  const std::ptrdiff_t rows = shape.extent(0), cols = shape.extent(1);
  const std::string row_count = std::string("the row count of ") + source;
  require_extent(function, "scores", in.scores, 0, rows, row_count);
  require_extent(function, "end_index", in.end_index, 0, rows, row_count);
  if (!in.has_eos.empty()) require_extent(function, "has_eos", in.has_eos, 0, rows, row_count);

  require(std::isfinite(o.beta) && o.beta >= 0.0, function,
          "beta must be finite and >= 0, got " + number_string(o.beta));
  if (o.score_clip)
    require(*o.score_clip > 0.0, function,
            "score_clip must be > 0, got " + number_string(*o.score_clip));
  require(o.score_offset >= 0, function,
          "score_offset must be >= 0, got " + std::to_string(o.score_offset));
  if (o.missing_eos_penalty) {
    require(std::isfinite(*o.missing_eos_penalty) && *o.missing_eos_penalty >= 0.0, function,
            "missing_eos_penalty must be finite and >= 0, got " +
                number_string(*o.missing_eos_penalty));
    require(!in.has_eos.empty(), function, "missing_eos_penalty is set but has_eos is empty");
  }
  cpu_impl::shaping_settings s;
  s.kl = check_kl_options(function, o.kl);
  for (std::ptrdiff_t b = 0; b < rows; ++b) {
    const std::ptrdiff_t e = in.end_index(b);
    require(e >= 0 && e < cols, function,
            "end_index[" + std::to_string(b) + "] is " + std::to_string(e) + ", outside [0, " +
                std::to_string(cols) + ")");
  }
  s.beta = o.beta;
  s.clip = o.score_clip.has_value();
  s.clip_value = o.score_clip.value_or(0.0);
  s.score_offset = o.score_offset;
  s.eos_penalty = o.missing_eos_penalty.has_value();
  s.eos_penalty_value = o.missing_eos_penalty.value_or(0.0);
  s.penalize_masked = o.penalize_masked;

  const cpu_impl::shaping_views<T> v{in.logp, in.ref_logp,  in.kl,  in.scores,
                                     in.end_index, in.mask, in.has_eos, out.rewards,
                                     out.kl,   out.non_score_reward};
  cpu_impl::shaping_rows r;
  cpu_impl::shape_rewards(backend, v, s, r);

  reward_shaping_stats stats;
  double kl_sum = 0.0, kl_mean = 0.0, non_score = 0.0, score = 0.0;
  for (std::size_t b = 0; b < r.kl_sum.size(); ++b) {
    kl_sum += r.kl_sum[b];
    if (r.tokens[b] > 0) kl_mean += r.kl_sum[b] / static_cast<double>(r.tokens[b]);
    non_score += r.non_score_sum[b];
    score += r.score[b];
    stats.clipped_scores += r.clipped[b];
    stats.missing_eos += r.penalised[b];
  }
  const double n = static_cast<double>(rows);
  stats.mean_kl_sum = kl_sum / n;
  stats.mean_kl_mean = kl_mean / n;
  stats.mean_non_score_reward = non_score / n;
  stats.mean_score = score / n;
  stats.mean_total_reward = stats.mean_score + stats.mean_non_score_reward;
  return stats;
}

}  // namespace detail

/// Per-token rewards (B, T) from scores (B) and the KL penalty; see the header comment.
/// Returns statistics over valid positions. Outputs must not alias inputs.
inline reward_shaping_stats shape_rewards(const cpu_backend& backend,
                                          const shape_rewards_inputs<float>& inputs,
                                          const shape_rewards_outputs<float>& outputs,
                                          const reward_shaping_options& options = {}) {
  return detail::shape_rewards_checked<float>(backend, inputs, outputs, options);
}
inline reward_shaping_stats shape_rewards(const cpu_backend& backend,
                                          const shape_rewards_inputs<double>& inputs,
                                          const shape_rewards_outputs<double>& outputs,
                                          const reward_shaping_options& options = {}) {
  return detail::shape_rewards_checked<double>(backend, inputs, outputs, options);
}

/// end_index(b) = the last t with mask(b, t) ≠ 0 (B) — TRL's mask.nonzero()[-1], OpenRLHF's
/// eos_indices. A row without a valid position throws by default (naming the row) or gives
/// T − 1 with empty_row_policy::last_position (OpenRLHF).
inline void last_valid_index(const cpu_backend& backend, mask_view mask,
                             vector_view<std::ptrdiff_t> end_index,
                             const last_valid_index_options& options = {}) {
  constexpr const char* function = "rlhf::last_valid_index()";
  detail::check_index_output(function, mask, end_index);
  detail::require(options.empty_row == empty_row_policy::error ||
                      options.empty_row == empty_row_policy::last_position,
                  function,
                  "empty_row is not an empty_row_policy value (" +
                      std::to_string(static_cast<int>(options.empty_row)) + ")");
  cpu_impl::last_valid_index(backend, mask, end_index);
  for (std::ptrdiff_t b = 0; b < mask.extent(0); ++b) {
    if (end_index(b) >= 0) continue;
    if (options.empty_row == empty_row_policy::last_position)
      end_index(b) = mask.extent(1) - 1;
    else
      detail::fail(function, "row " + std::to_string(b) + " has no valid position");
  }
}

/// out(b) = the first t with mask(b, t) ≠ 0, or T when there is none (B) — e.g. the first EOS
/// of each row given the mask tokens == eos_id (TRL first_true_indices).
inline void first_true_index(const cpu_backend& backend, mask_view mask,
                             vector_view<std::ptrdiff_t> out) {
  constexpr const char* function = "rlhf::first_true_index()";
  detail::require_not_empty(function, "mask", mask);
  detail::require_extent(function, "out", out, 0, mask.extent(0), "the row count of mask");
  cpu_impl::first_true_index(backend, mask, out);
}

// CUDA: no kernel yet. From a host compiler these overloads say "needs nvcc"; under nvcc they
// say "not implemented yet".
#if !defined(__CUDACC__)
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void shape_rewards(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::shape_rewards(cuda_backend, ...) needs nvcc: call it from a .cu file that "
                "includes <rlhf/reward_shaping.hpp>");
}
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void last_valid_index(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::last_valid_index(cuda_backend, ...) needs nvcc: call it from a .cu file "
                "that includes <rlhf/reward_shaping.hpp>");
}
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void first_true_index(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::first_true_index(cuda_backend, ...) needs nvcc: call it from a .cu file "
                "that includes <rlhf/reward_shaping.hpp>");
}
#else
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void shape_rewards(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::shape_rewards(cuda_backend, ...) is not implemented for the CUDA backend "
                "yet");
}
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void last_valid_index(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::last_valid_index(cuda_backend, ...) is not implemented for the CUDA "
                "backend yet");
}
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void first_true_index(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::first_true_index(cuda_backend, ...) is not implemented for the CUDA "
                "backend yet");
}
#endif

}  // namespace rlhf
