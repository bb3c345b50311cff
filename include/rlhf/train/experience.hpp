// rlhf/train/experience.hpp — one PPO rollout in memory: what the policy generated and every
// per-token quantity computed from it, in the layout the RL components take.
//
// Shapes: B responses, P prompt columns (left-padded), R response columns (right-padded),
// L = P + R. Response token t of row b sits at column P + t of `sequences`; the logits and the
// value that belong to it are those of column P − 1 + t (position t predicts token t + 1).
//
//   sequences       (B, L)  prompt ‖ response with positions and mask; target_mask = response
//   mask            (B, R)  valid response tokens
//   end_index       (B)     the last response token (the stop token when one was generated)
//   sampling_logp   (B, R)  log-probs returned by Policy::generate
//   logp            (B, R)  the same tokens re-scored by a training forward (PPO's old log-probs)
//   ref_logp        (B, R)  under the frozen reference (SFT) model
//   values          (B, R)  of the value model at rollout time (the value clip's centre)
//   scores          (B)     reward-model scores, normalised (gain·r + bias)
//   kl, rewards     (B, R)  the per-token KL estimate and shaped rewards (−β·kl + score at end)
//   advantages      (B, R)  GAE advantages, whitened when the options say so
//   returns         (B, R)  GAE advantages (before whitening) + values: the value target
#pragma once

#include <rlhf/concepts.hpp>
#include <rlhf/config.hpp>
#include <rlhf/tensor.hpp>
#include <rlhf/train/batch.hpp>

#include <cstddef>
#include <cstdint>

namespace rlhf::train {

template <class T>
struct experience {
  sequence_batch sequences;
  std::ptrdiff_t prompt_columns = 0;  ///< P
  tensor<token_id, 2> labels;         ///< (B, R) response tokens; 0 on padding (valid for any V)
  tensor<std::uint8_t, 2> mask;
  tensor<std::ptrdiff_t, 1> end_index;
  tensor<T, 2> sampling_logp, logp, ref_logp, values, kl, rewards, advantages, returns;
  tensor<T, 1> scores;
  double beta = 0;  ///< the KL coefficient the rewards were shaped with

  [[nodiscard]] std::ptrdiff_t rows() const noexcept { return mask.extent(0); }
  [[nodiscard]] std::ptrdiff_t response_columns() const noexcept { return mask.extent(1); }
};

}  // namespace rlhf::train
