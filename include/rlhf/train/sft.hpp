// rlhf/train/sft.hpp — stage 1: supervised fine-tuning on demonstrations (token cross-entropy).
//
// For a batch of prompt ‖ response rows (B, T), right-padded (make_sft_batch):
//   logits = model.forward(batch)                       (B, T, V); position t predicts t + 1
//   loss   = Σ_{b,t ≥ 1} m_bt · −log softmax(logits[b, t−1])[tokens[b, t]] / Σ m_bt
// with m = target_mask: the response tokens (default; TRL `completion_only_loss`) or every token
// after the first (sft_loss_tokens::all). One optimizer step per batch, token mean over the
// batch (TRL SFTTrainer, OpenRLHF GPTLMLoss).
//
//   rlhf::train::sft_trainer trainer{model, optimizer, {.batch_size = 16, .pad_id = tok.pad_id()}};
//   trainer.fit(demonstrations, {.epochs = 16, .on_step = log});   // InstructGPT: 16 epochs
//
// Model: any rlhf::CausalLM; optimizer: any rlhf::Optimizer of it (learning-rate schedule
// included). A model that also models rlhf::FusedLogProbs (hidden() + unembedding()) is run
// through the fused linear kernel on the target rows only: the (B, T, V) logits are never
// materialised, and loss, accuracy and gradients are those of the logits path up to rounding. The trainer owns no weights: checkpoint the model and the optimizer with their
// own savers and the trainer with state() / restore().
//
// Metrics per step (TRL SFTTrainer names): loss, mean_token_accuracy, num_tokens (targets in
// the batch), grad_norm (before any clipping the optimizer does), lr, epoch (fractional),
// time/train (s), time/tokens_per_s.
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/concepts.hpp>
#include <rlhf/config.hpp>
#include <rlhf/detail/checks.hpp>
#include <rlhf/lm_loss.hpp>
#include <rlhf/tensor.hpp>
#include <rlhf/train/batch.hpp>
#include <rlhf/train/detail/common.hpp>
#include <rlhf/train/detail/lm_head.hpp>
#include <rlhf/train/metrics.hpp>
#include <rlhf/train/state.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace rlhf::train {

struct sft_options {
  sft_loss_tokens loss_on = sft_loss_tokens::response;
  std::size_t batch_size = 8;  ///< demonstrations per optimizer step
  bool shuffle = true;         ///< a new order every epoch, from (seed, epoch)
  std::uint64_t seed = 0;
  token_id pad_id = 0;         ///< the id written into padding (never a loss target)
  cpu_backend backend{};       ///< threads for the loss kernels
};

/// Supervised fine-tuning of a CausalLM. Not copyable; holds references to model and optimizer.
template <CausalLM M, class O>
  requires Optimizer<O, M>
class sft_trainer {
 public:
  using scalar_type = typename M::scalar_type;
  /// The stage name checkpoints record (rlhf/train/checkpoint.hpp).
  static constexpr std::string_view kind = "sft";

  /// Throws rlhf::invalid_argument for batch_size 0.
  sft_trainer(M& model, O& optimizer, sft_options options = {})
      : model_(model), optimizer_(optimizer), options_(options) {
    ::rlhf::detail::require(options_.batch_size > 0, "rlhf::train::sft_trainer", "batch_size must be positive");
    state_.rng = rng{{.seed = options_.seed}}.state();
  }
  sft_trainer(const sft_trainer&) = delete;
  sft_trainer& operator=(const sft_trainer&) = delete;

  /// One optimizer step on `batch`. On a NaN/Inf loss or gradient no step is taken and the
  /// result's `event` says where.
  step_result step(const sequence_batch& batch) {
    detail::stopwatch clock;
    step_result result;
    const std::uint64_t k = state_.step + 1;
    optimizer_.zero_grad(model_.parameters());
    const auto lm = head_.lm_loss(options_.backend, model_, batch, 1.0, /*with_gradient=*/true, /*with_accuracy=*/true);
    detail::check_finite(result.event, k, "loss", lm.loss);
    const double norm = detail::gradient_norm(model_, k, result.event);
    const double lr = optimizer_.learning_rate();
    if (!result.event) {
      optimizer_.step(model_.parameters());
      state_.step = k;
    }
    auto& m = result.stats;
    m.set("loss", lm.loss);
    m.set("mean_token_accuracy", lm.accuracy);
    m.set("num_tokens", static_cast<double>(lm.tokens));
    m.set("grad_norm", norm);
    m.set("lr", lr);
    const double seconds = clock.seconds();
    m.set("time/train", seconds);
    m.set("time/tokens_per_s", detail::per_second(static_cast<double>(batch.rows() * batch.length()), seconds));
    return result;
  }

  /// Loss and accuracy on a batch without touching the gradients' owner state (forward only).
  metrics evaluate(const sequence_batch& batch) {
    const auto lm = head_.lm_loss(options_.backend, model_, batch, 1.0, /*with_gradient=*/false, /*with_accuracy=*/true);
    metrics m;
    m.set("eval/loss", lm.loss);
    m.set("eval/mean_token_accuracy", lm.accuracy);
    m.set("eval/num_tokens", static_cast<double>(lm.tokens));
    return m;
  }

  /// Token-weighted loss and accuracy over a whole data set, in batches of batch_size.
  metrics evaluate(std::span<const sft_example> data) {
    double loss = 0, correct = 0, tokens = 0;
    for (std::size_t i = 0; i < data.size(); i += options_.batch_size) {
      const auto part = data.subspan(i, std::min(options_.batch_size, data.size() - i));
      const auto m = evaluate(make_sft_batch(part, options_.pad_id, options_.loss_on));
      const double n = m.at("eval/num_tokens");
      loss += m.at("eval/loss") * n;
      correct += m.at("eval/mean_token_accuracy") * n;
      tokens += n;
    }
    metrics m;
    m.set("eval/loss", tokens > 0 ? loss / tokens : 0.0);
    m.set("eval/mean_token_accuracy", tokens > 0 ? correct / tokens : 0.0);
    m.set("eval/num_tokens", tokens);
    return m;
  }

  /// Steps over `data` in batches of batch_size (a short last batch ends each epoch) until
  /// `epochs` passes or `max_steps` total steps. Continues from state() (after restore()).
  /// Throws rlhf::numerical_error at the first NaN/Inf, naming the step and the tensor.
  void fit(std::span<const sft_example> data, const fit_options& fit = {}) {
    ::rlhf::detail::require(!data.empty(), "rlhf::train::sft_trainer::fit()", "the data set is empty");
    while (state_.data.epoch < fit.epochs && (fit.max_steps == 0 || state_.step < fit.max_steps)) {
      const double epoch = static_cast<double>(state_.data.epoch) +
                           static_cast<double>(state_.data.offset) / static_cast<double>(data.size());
      data_position next = state_.data;
      const auto idx = detail::next_indices(next, data.size(), options_.batch_size, options_.shuffle, options_.seed);
      std::vector<const sft_example*> chosen;
      for (const auto i : idx) chosen.push_back(&data[i]);
      auto r = step(make_sft_batch(std::span<const sft_example* const>(chosen), options_.pad_id, options_.loss_on));
      if (r.event) RLHF_THROW(to_error("rlhf::train::sft_trainer", *r.event));
      state_.data = next;
      r.stats.set("epoch", epoch);
      if (fit.on_step) fit.on_step(state_.step, r.stats);
    }
  }

  [[nodiscard]] const trainer_state& state() const noexcept { return state_; }
  void restore(const trainer_state& s) { state_ = s; }
  [[nodiscard]] const sft_options& options() const noexcept { return options_; }

 private:
  M& model_;
  O& optimizer_;
  sft_options options_;
  trainer_state state_{};
  detail::lm_head<scalar_type> head_;
};

}  // namespace rlhf::train
