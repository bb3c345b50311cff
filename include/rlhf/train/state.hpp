// rlhf/train/state.hpp — the whole resumable state of a trainer, as one plain struct.
//
// A run is resumed bitwise by restoring three things at step k: the model weights and the
// optimizer (scheduler included) — saved by their owners — and this struct, which holds
// everything the trainer itself owns: the step counter, where it is in the data, its random
// stream and (PPO) the KL controller. Saving it is a memberwise copy; every field is an integer
// or a double, so a checkpoint writer can store it as named scalars.
//
//   auto saved = trainer.state();              // at step k
//   ...                                        // later, in a fresh process
//   trainer.restore(saved);                    // after loading weights and optimizer state
//   trainer.fit(data, {.max_steps = n});       // continues exactly where the first run was
#pragma once

#include <rlhf/config.hpp>
#include <rlhf/kl_controller.hpp>
#include <rlhf/rng.hpp>

#include <cstdint>

namespace rlhf::train {

/// Where a trainer is in its data: the epoch, and the next example of that epoch's order.
/// The order of epoch e is a shuffle drawn from rlhf::rng{{.seed = seed, .stream = e}}, so it is
/// recomputed on resume and never stored.
struct data_position {
  std::uint64_t epoch = 0;
  std::uint64_t offset = 0;  ///< examples of this epoch already consumed
  bool operator==(const data_position&) const = default;
};

/// Everything a trainer owns that changes while it runs. SFT and reward-model trainers leave
/// `episode`, `ptx_data` and `kl` at their initial values.
struct trainer_state {
  std::uint64_t step = 0;     ///< optimizer steps taken (SFT, RM) or PPO iterations (PPO)
  std::uint64_t episode = 0;  ///< PPO: responses generated so far (TRL `episode`)
  data_position data{};       ///< the main data (SFT examples, rankings, PPO prompts)
  data_position ptx_data{};   ///< PPO-ptx: the pretraining data
  rng_state rng{};            ///< the trainer's own stream (PPO: generation seeds, minibatch order)
  kl_controller_state kl{};   ///< PPO: the KL coefficient and its update count
  bool operator==(const trainer_state&) const = default;
};

}  // namespace rlhf::train
