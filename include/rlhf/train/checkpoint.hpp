// rlhf/train/checkpoint.hpp — save a training stage to a directory and resume it from there.
//
// A stage is resumed bitwise by restoring, at step k, every piece that changes while it runs:
// the trained models' weights, their optimizers' state (AdamW moments and step count, hence
// the learning-rate schedule's position), the trainer's own state (step, episode, data and ptx
// positions, its rng, the KL controller: rlhf::train::trainer_state) and, for PPO with
// ppo_options::ema_decay, the EMA of the policy weights. All of it goes into one safetensors
// file, <dir>/checkpoint.safetensors, written atomically (rlhf/io/checkpoint.hpp):
//
//   <name>, optimizer.m.<name>, ...      the (policy) model and its optimizer
//   value.<name>, value_optimizer.m...   PPO: the value model and its optimizer
//   ema.<name>                           PPO with an EMA: the average
//   trainer.kind                         "sft", "reward_model" or "ppo" (checked on load)
//   trainer.step, trainer.episode, trainer.data, trainer.ptx_data ("epoch offset"),
//   trainer.rng, trainer.kl              the trainer_state
//
//   rlhf::train::save_stage("run/sft", model, opt, trainer);            // SFT or RM
//   ...                                                                 // a new process:
//   rlhf::train::load_stage("run/sft", model, opt, trainer);            // same options
//   trainer.fit(data, {.epochs = 16});                                  // continues at step k
//
//   rlhf::train::save_stage("run/ppo", policy, policy_opt, value, value_opt, ppo);
//   rlhf::train::load_stage("run/ppo", policy, policy_opt, value, value_opt, ppo);
//
// The frozen models of PPO (reference, reward model) are not saved: they are the outputs of
// the earlier stages. Options (learning rates, schedules, seeds, batch sizes) are not saved
// either: construct the trainer and the optimizers with the same options as the first run.
//
// Optimizers: rlhf::adamw is saved by rlhf::save_optimizer / load_optimizer; any other
// optimizer type needs the same two functions, found by argument-dependent lookup:
//   void save_optimizer(rlhf::checkpoint&, const O&, std::string_view prefix);
//   void load_optimizer(const rlhf::checkpoint&, O&, std::string_view prefix);
// Models: any rlhf::Trainable (weights by parameter name; rlhf/io/checkpoint.hpp).
#pragma once

#include <rlhf/concepts.hpp>
#include <rlhf/config.hpp>
#include <rlhf/detail/checks.hpp>
#include <rlhf/error.hpp>
#include <rlhf/io/checkpoint.hpp>
#include <rlhf/train/state.hpp>

#include <charconv>
#include <concepts>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>

namespace rlhf::train {

/// The checkpoint file of a stage directory.
[[nodiscard]] inline std::string stage_file(const std::string& dir) {
  return (std::filesystem::path(dir) / "checkpoint.safetensors").string();
}

/// Store a trainer_state as named values under `prefix`.
inline void save_trainer_state(checkpoint& ck, const trainer_state& s, std::string_view prefix = "trainer.") {
  const std::string p(prefix);
  ck.set_u64(p + "step", s.step);
  ck.set_u64(p + "episode", s.episode);
  ck.set(p + "data", std::to_string(s.data.epoch) + " " + std::to_string(s.data.offset));
  ck.set(p + "ptx_data", std::to_string(s.ptx_data.epoch) + " " + std::to_string(s.ptx_data.offset));
  ck.set_rng(p + "rng", s.rng);
  ck.set_kl_controller(p + "kl", s.kl);
}

/// The trainer_state saved by save_trainer_state. Throws rlhf::format_error naming the
/// checkpoint and the key when one is missing or does not parse.
[[nodiscard]] inline trainer_state load_trainer_state(const checkpoint& ck, std::string_view prefix = "trainer.") {
  const std::string p(prefix);
  const auto position = [&](const std::string& key) {
    const std::string& text = ck.get(key);
    const auto space = text.find(' ');
    data_position pos;
    bool ok = space != std::string::npos && space > 0 && space + 1 < text.size();
    if (ok) {
      const auto parse = [&](std::string_view w, std::uint64_t& out) {
        const auto [end, ec] = std::from_chars(w.data(), w.data() + w.size(), out);
        return ec == std::errc() && end == w.data() + w.size();
      };
      const std::string_view all(text);
      ok = parse(all.substr(0, space), pos.epoch) && parse(all.substr(space + 1), pos.offset);
    }
    if (!ok)
      RLHF_THROW(format_error("rlhf::train::load_trainer_state(): " + ck.source() + ": value '" + key + "' is \"" +
                              text + "\", expected \"<epoch> <offset>\""));
    return pos;
  };
  trainer_state s;
  s.step = ck.get_u64(p + "step");
  s.episode = ck.get_u64(p + "episode");
  s.data = position(p + "data");
  s.ptx_data = position(p + "ptx_data");
  s.rng = ck.get_rng(p + "rng");
  s.kl = ck.get_kl_controller(p + "kl");
  return s;
}

namespace detail {

template <class O>
void save_optimizer_of(checkpoint& ck, const O& optimizer, std::string_view prefix) {
  if constexpr (requires { save_optimizer(ck, optimizer, prefix); })
    save_optimizer(ck, optimizer, prefix);
  else
    static_assert(::rlhf::detail::dependent_false<O>,
                  "rlhf::train::save_stage(): the optimizer type has no save_optimizer(rlhf::checkpoint&, const O&, "
                  "std::string_view) found by argument-dependent lookup; write one (and load_optimizer) next to it, "
                  "as rlhf::adamw has");
}

template <class O>
void load_optimizer_of(const checkpoint& ck, O& optimizer, std::string_view prefix) {
  if constexpr (requires { load_optimizer(ck, optimizer, prefix); })
    load_optimizer(ck, optimizer, prefix);
  else
    static_assert(::rlhf::detail::dependent_false<O>,
                  "rlhf::train::load_stage(): the optimizer type has no load_optimizer(const rlhf::checkpoint&, O&, "
                  "std::string_view) found by argument-dependent lookup; write one (and save_optimizer) next to it, "
                  "as rlhf::adamw has");
}

inline void create_stage_dir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) RLHF_THROW(error("rlhf::train::save_stage(): cannot create directory '" + dir + "': " + ec.message()));
}

inline void check_kind(const checkpoint& ck, std::string_view want) {
  const std::string& kind = ck.get("trainer.kind");
  if (kind != want)
    RLHF_THROW(format_error("rlhf::train::load_stage(): " + ck.source() + " holds a '" + kind + "' stage, not '" +
                            std::string(want) + "'"));
}

template <class Trainer>
void save_ema_of(checkpoint& ck, const Trainer& trainer) {
  if constexpr (requires { trainer.ema(); })
    if (const auto* avg = trainer.ema(); avg != nullptr && avg->updates() > 0) save_ema(ck, *avg);
}

template <class Trainer>
void load_ema_of(const checkpoint& ck, Trainer& trainer) {
  if constexpr (requires { trainer.ema(); }) {
    auto* avg = trainer.ema();
    const bool saved = ck.contains("ema.names");
    if (avg != nullptr && saved) {
      load_ema(ck, *avg);
    } else if (avg != nullptr) {
      avg->restore(0, {});  // saved before the first update
    } else if (saved) {
      RLHF_THROW(invalid_argument("rlhf::train::load_stage(): " + ck.source() +
                                  " holds an EMA of the policy but the trainer has none (set ppo_options::ema_decay)"));
    }
  }
}

}  // namespace detail

/// SFT or reward-model stage: the model's weights, its optimizer and the trainer's state, to
/// <dir>/checkpoint.safetensors (the directory is created). Throws rlhf::error on I/O failure.
template <Trainable M, class O, class Trainer>
  requires requires(const Trainer& t) {
    { t.state() } -> std::convertible_to<trainer_state>;
    Trainer::kind;
  }
void save_stage(const std::string& dir, M& model, const O& optimizer, const Trainer& trainer) {
  checkpoint ck;
  save_model(ck, model);
  detail::save_optimizer_of(ck, optimizer, "optimizer.");
  ck.set("trainer.kind", std::string(Trainer::kind));
  save_trainer_state(ck, trainer.state());
  detail::create_stage_dir(dir);
  ck.save(stage_file(dir));
}

/// Resume what save_stage(dir, model, optimizer, trainer) wrote: into objects constructed with
/// the same options. Throws rlhf::format_error (naming the file and the tensor or key) when the
/// file is invalid, is of another stage, or does not match the model.
template <Trainable M, class O, class Trainer>
  requires requires(Trainer& t, const trainer_state& s) {
    t.restore(s);
    Trainer::kind;
  }
void load_stage(const std::string& dir, M& model, O& optimizer, Trainer& trainer) {
  const auto ck = checkpoint::load(stage_file(dir));
  detail::check_kind(ck, Trainer::kind);
  load_model(ck, model);
  detail::load_optimizer_of(ck, optimizer, "optimizer.");
  trainer.restore(load_trainer_state(ck));
}

/// PPO stage: policy and value weights with their optimizers, the trainer's state (KL
/// controller included) and, when the trainer keeps one, the EMA of the policy weights.
template <Trainable P, class PO, Trainable V, class VO, class Trainer>
  requires requires(const Trainer& t) {
    { t.state() } -> std::convertible_to<trainer_state>;
    Trainer::kind;
  }
void save_stage(const std::string& dir, P& policy, const PO& policy_optimizer, V& value, const VO& value_optimizer,
                const Trainer& trainer) {
  checkpoint ck;
  save_model(ck, policy);
  detail::save_optimizer_of(ck, policy_optimizer, "optimizer.");
  save_model(ck, value, "value.");
  detail::save_optimizer_of(ck, value_optimizer, "value_optimizer.");
  detail::save_ema_of(ck, trainer);
  ck.set("trainer.kind", std::string(Trainer::kind));
  save_trainer_state(ck, trainer.state());
  detail::create_stage_dir(dir);
  ck.save(stage_file(dir));
}

/// Resume what the PPO save_stage wrote (same options as the first run).
template <Trainable P, class PO, Trainable V, class VO, class Trainer>
  requires requires(Trainer& t, const trainer_state& s) {
    t.restore(s);
    Trainer::kind;
  }
void load_stage(const std::string& dir, P& policy, PO& policy_optimizer, V& value, VO& value_optimizer,
                Trainer& trainer) {
  const auto ck = checkpoint::load(stage_file(dir));
  detail::check_kind(ck, Trainer::kind);
  load_model(ck, policy);
  detail::load_optimizer_of(ck, policy_optimizer, "optimizer.");
  load_model(ck, value, {.prefix = "value."});
  detail::load_optimizer_of(ck, value_optimizer, "value_optimizer.");
  detail::load_ema_of(ck, trainer);
  trainer.restore(load_trainer_state(ck));
}

}  // namespace rlhf::train
