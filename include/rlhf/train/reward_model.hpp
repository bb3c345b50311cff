// rlhf/train/reward_model.hpp — stage 2: the reward model on K-wise rankings, and the bias that
// gives demonstrations mean score 0.
//
// One batch element is one prompt with its K ≥ 2 ranked completions (InstructGPT §3.5): every
// completion prompt ‖ y_i is scored once, r_i = model.scores(batch, end_index)[i] at the
// completion's last token, and
//   ranking_loss::kwise     L = mean_p  1/C(K_p,2) Σ_{i better than j} −log σ(r_i − r_j)
//                           (<rlhf/preference_loss.hpp> kwise_ranking_loss; ties are not pairs)
//   ranking_loss::pairwise  L = mean_p −log σ(r_c − r_r − m_p) + c·mean (r_c + r_r)²
//                           (K = 2 only; m_p = ranking_example::margin, Llama 2; c = center_coef)
// Pairwise data is simply K = 2; with all prompts at K = 2, no margins and no centering both
// losses are the same number. One optimizer step per batch of `batch_size` prompts.
//
// The paper trains one epoch (more overfits) at lr 9e-6 with a cosine schedule, 64 prompts per
// batch. After training, fit_reward_normalizer() scores the demonstrations and returns the
// bias that makes their mean score 0 (gain 1); hand it to the PPO trainer
// (ppo_options::reward_normalizer) or fold it into your head's bias.
//
// Metrics per step (TRL RewardTrainer names): loss, accuracy (pairs ordered correctly), margin
// (mean r_better − r_worse), mean_reward, min_reward, max_reward, num_pairs, grad_norm, lr,
// epoch, time/train, time/tokens_per_s. evaluate(): eval/loss, eval/accuracy, eval/margin,
// eval/num_pairs over held-out rankings.
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/concepts.hpp>
#include <rlhf/config.hpp>
#include <rlhf/detail/checks.hpp>
#include <rlhf/preference_loss.hpp>
#include <rlhf/reward_head.hpp>
#include <rlhf/tensor.hpp>
#include <rlhf/train/batch.hpp>
#include <rlhf/train/detail/common.hpp>
#include <rlhf/train/metrics.hpp>
#include <rlhf/train/state.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace rlhf::train {

/// The stage-2 loss.
enum class ranking_loss {
  kwise,     ///< InstructGPT eq. 1 over all C(K, 2) pairs of a prompt (default)
  pairwise,  ///< Bradley–Terry with margins and centering; every prompt must have K = 2
};

struct reward_model_options {
  ranking_loss loss = ranking_loss::kwise;
  double center_coef = 0.0;     ///< ranking_loss::pairwise: TRL center_rewards_coefficient
  std::size_t batch_size = 64;  ///< prompts per optimizer step (InstructGPT: 64)
  bool shuffle = true;
  std::uint64_t seed = 0;
  token_id pad_id = 0;
  cpu_backend backend{};
};

/// Trains a RewardModel on rankings. Holds references to the model and the optimizer.
template <RewardModel M, class O>
  requires Optimizer<O, M>
class reward_model_trainer {
 public:
  using scalar_type = typename M::scalar_type;
  /// The stage name checkpoints record (rlhf/train/checkpoint.hpp).
  static constexpr std::string_view kind = "reward_model";

  reward_model_trainer(M& model, O& optimizer, reward_model_options options = {})
      : model_(model), optimizer_(optimizer), options_(options) {
    constexpr const char* function = "rlhf::train::reward_model_trainer";
    ::rlhf::detail::require(options_.batch_size > 0, function, "batch_size must be positive");
    ::rlhf::detail::require(options_.loss == ranking_loss::kwise || options_.loss == ranking_loss::pairwise, function,
                            "loss must be ranking_loss::kwise or ranking_loss::pairwise");
    ::rlhf::detail::require(std::isfinite(options_.center_coef) && options_.center_coef >= 0, function,
                            "center_coef must be finite and >= 0, got " +
                                ::rlhf::detail::number_string(options_.center_coef));
  }
  reward_model_trainer(const reward_model_trainer&) = delete;
  reward_model_trainer& operator=(const reward_model_trainer&) = delete;

  /// One optimizer step on a ranking batch. On a NaN/Inf no step is taken (see step_result).
  step_result step(const ranking_batch& batch) {
    detail::stopwatch clock;
    step_result result;
    const std::uint64_t k = state_.step + 1;
    optimizer_.zero_grad(model_.parameters());
    const auto stats = evaluate_batch(batch, /*with_gradient=*/true);
    detail::check_finite(result.event, k, "loss", stats.at("loss"));
    for (std::ptrdiff_t i = 0; i < rewards_.size() && !result.event; ++i)
      detail::check_finite(result.event, k, ("reward of completion " + std::to_string(i)).c_str(),
                           static_cast<double>(rewards_(i)));
    model_.backward_scores(drewards_.view());
    const double norm = detail::gradient_norm(model_, k, result.event);
    const double lr = optimizer_.learning_rate();
    if (!result.event) {
      optimizer_.step(model_.parameters());
      state_.step = k;
    }
    result.stats = stats;
    result.stats.set("grad_norm", norm);
    result.stats.set("lr", lr);
    const double seconds = clock.seconds();
    result.stats.set("time/train", seconds);
    result.stats.set("time/tokens_per_s",
                     detail::per_second(static_cast<double>(batch.sequences.rows() * batch.sequences.length()), seconds));
    return result;
  }

  /// Loss, pair accuracy and margin over held-out rankings (forward only), pairs weighted
  /// equally for accuracy and margin, prompts for the loss.
  metrics evaluate(std::span<const ranking_example> data) {
    double loss = 0, correct = 0, margin = 0, pairs = 0, prompts = 0;
    for (std::size_t i = 0; i < data.size(); i += options_.batch_size) {
      const auto part = data.subspan(i, std::min(options_.batch_size, data.size() - i));
      const auto batch = make_ranking_batch(part, options_.pad_id);
      const auto m = evaluate_batch(batch, false);
      const double n = m.at("num_pairs"), p = static_cast<double>(part.size());
      loss += m.at("loss") * p;
      prompts += p;
      correct += m.at("accuracy") * n;
      margin += m.at("margin") * n;
      pairs += n;
    }
    metrics m;
    m.set("eval/loss", prompts > 0 ? loss / prompts : 0.0);
    m.set("eval/accuracy", pairs > 0 ? correct / pairs : 0.0);
    m.set("eval/margin", pairs > 0 ? margin / pairs : 0.0);
    m.set("eval/num_pairs", pairs);
    return m;
  }

  /// Steps over `data` in batches of batch_size prompts until `epochs` passes (paper: 1) or
  /// `max_steps`. Throws rlhf::numerical_error at the first NaN/Inf.
  void fit(std::span<const ranking_example> data, const fit_options& fit = {}) {
    ::rlhf::detail::require(!data.empty(), "rlhf::train::reward_model_trainer::fit()", "the data set is empty");
    while (state_.data.epoch < fit.epochs && (fit.max_steps == 0 || state_.step < fit.max_steps)) {
      const double epoch = static_cast<double>(state_.data.epoch) +
                           static_cast<double>(state_.data.offset) / static_cast<double>(data.size());
      data_position next = state_.data;
      const auto idx = detail::next_indices(next, data.size(), options_.batch_size, options_.shuffle, options_.seed);
      std::vector<const ranking_example*> chosen;
      for (const auto i : idx) chosen.push_back(&data[i]);
      auto r = step(make_ranking_batch(std::span<const ranking_example* const>(chosen), options_.pad_id));
      if (r.event) RLHF_THROW(to_error("rlhf::train::reward_model_trainer", *r.event));
      state_.data = next;
      r.stats.set("epoch", epoch);
      if (fit.on_step) fit.on_step(state_.step, r.stats);
    }
  }

  [[nodiscard]] const trainer_state& state() const noexcept { return state_; }
  void restore(const trainer_state& s) { state_ = s; }
  [[nodiscard]] const reward_model_options& options() const noexcept { return options_; }

 private:
  metrics evaluate_batch(const ranking_batch& batch, bool with_gradient) {
    const std::ptrdiff_t n = batch.sequences.rows(), prompts = batch.prompts();
    detail::ensure_shape(rewards_, n);
    detail::ensure_shape(drewards_, n);
    model_.scores(batch.sequences.view(), batch.end_index.view(), rewards_.view());
    metrics m;
    double loss = 0, accuracy = 0;
    std::int64_t pairs = 0;
    if (options_.loss == ranking_loss::kwise) {
      const auto s = ::rlhf::kwise_ranking_loss(options_.backend, rewards_.view().as_const(), batch.offsets.view(),
                                                batch.ranks.view(),
                                                with_gradient ? drewards_.view() : vector_view<scalar_type>{}, {});
      loss = s.loss;
      accuracy = s.accuracy;
      pairs = s.pairs;
    } else {
      tensor<scalar_type, 1> chosen(prompts), rejected(prompts), margin(prompts), dc(prompts), dr(prompts);
      std::vector<std::ptrdiff_t> ci(static_cast<std::size_t>(prompts)), ri(ci.size());
      for (std::ptrdiff_t p = 0; p < prompts; ++p) {
        const std::ptrdiff_t a = batch.offsets(p), k = batch.offsets(p + 1) - a;
        ::rlhf::detail::require(k == 2, "rlhf::train::reward_model_trainer",
                                "ranking_loss::pairwise needs K = 2 but prompt " + std::to_string(p) + " has " +
                                    std::to_string(k) + " completions");
        ::rlhf::detail::require(batch.ranks(a) != batch.ranks(a + 1), "rlhf::train::reward_model_trainer",
                                "ranking_loss::pairwise: the two completions of prompt " + std::to_string(p) +
                                    " are tied");
        const bool first_better = batch.ranks(a) < batch.ranks(a + 1);
        ci[static_cast<std::size_t>(p)] = first_better ? a : a + 1;
        ri[static_cast<std::size_t>(p)] = first_better ? a + 1 : a;
        chosen(p) = rewards_(ci[static_cast<std::size_t>(p)]);
        rejected(p) = rewards_(ri[static_cast<std::size_t>(p)]);
        margin(p) = static_cast<scalar_type>(batch.margins[static_cast<std::size_t>(p)]);
      }
      const auto s = ::rlhf::pairwise_preference_loss(
          options_.backend, chosen.view().as_const(), rejected.view().as_const(), margin.view().as_const(),
          with_gradient ? dc.view() : vector_view<scalar_type>{}, with_gradient ? dr.view() : vector_view<scalar_type>{},
          {.center_coef = options_.center_coef});
      if (with_gradient)
        for (std::ptrdiff_t p = 0; p < prompts; ++p) {
          drewards_(ci[static_cast<std::size_t>(p)]) = dc(p);
          drewards_(ri[static_cast<std::size_t>(p)]) = dr(p);
        }
      loss = s.loss;
      accuracy = s.accuracy;
      pairs = prompts;
    }
    // Margin over the comparable pairs: mean r_better − r_worse.
    double margin_sum = 0;
    std::int64_t margin_pairs = 0;
    for (const auto& pr : ::rlhf::kwise_pairs(batch.offsets.view(), batch.ranks.view())) {
      margin_sum += static_cast<double>(rewards_(pr.better)) - static_cast<double>(rewards_(pr.worse));
      ++margin_pairs;
    }
    double lo = std::numeric_limits<double>::infinity(), hi = -lo, sum = 0;
    for (std::ptrdiff_t i = 0; i < n; ++i) {
      const double r = static_cast<double>(rewards_(i));
      lo = std::min(lo, r);
      hi = std::max(hi, r);
      sum += r;
    }
    m.set("loss", loss);
    m.set("accuracy", accuracy);
    m.set("margin", margin_pairs > 0 ? margin_sum / static_cast<double>(margin_pairs) : 0.0);
    m.set("mean_reward", sum / static_cast<double>(n));
    m.set("min_reward", lo);
    m.set("max_reward", hi);
    m.set("num_pairs", static_cast<double>(pairs));
    return m;
  }

  M& model_;
  O& optimizer_;
  reward_model_options options_;
  trainer_state state_{};
  tensor<scalar_type, 1> rewards_, drewards_;
};

/// Scores every demonstration (prompt ‖ response, at its last token) and returns the
/// InstructGPT normaliser: gain 1, bias = −mean(score), so that demonstrations score mean 0.
/// Apply it as r' = gain·r + bias (ppo_options::reward_normalizer does).
template <RewardModel M>
reward_normalizer fit_reward_normalizer(M& model, std::span<const sft_example> demonstrations, token_id pad_id = 0,
                                        std::size_t batch_size = 64) {
  constexpr const char* function = "rlhf::train::fit_reward_normalizer()";
  ::rlhf::detail::require(!demonstrations.empty(), function, "no demonstrations");
  ::rlhf::detail::require(batch_size > 0, function, "batch_size must be positive");
  using T = typename M::scalar_type;
  tensor<T, 1> all(static_cast<std::ptrdiff_t>(demonstrations.size()));
  for (std::size_t i = 0; i < demonstrations.size(); i += batch_size) {
    const auto part = demonstrations.subspan(i, std::min(batch_size, demonstrations.size() - i));
    const auto batch = make_sft_batch(part, pad_id);
    tensor<std::ptrdiff_t, 1> end(batch.rows());
    for (std::ptrdiff_t b = 0; b < batch.rows(); ++b)
      end(b) = static_cast<std::ptrdiff_t>(part[static_cast<std::size_t>(b)].prompt.size() +
                                           part[static_cast<std::size_t>(b)].response.size()) - 1;
    tensor<T, 1> scores(batch.rows());
    model.scores(batch.view(), end.view(), scores.view());
    for (std::ptrdiff_t b = 0; b < batch.rows(); ++b) all(static_cast<std::ptrdiff_t>(i) + b) = scores(b);
  }
  return fit_bias_to_demonstrations(all.view().as_const());
}

}  // namespace rlhf::train
