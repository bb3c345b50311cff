// rlhf/train/ppo.hpp — stage 3: PPO-ptx (InstructGPT eq. 2) over any Policy, ValueModel,
// RewardModel and frozen reference CausalLM.
//
// One iteration (step()) on a batch of B left-padded prompts:
//   rollout     responses = policy.generate(prompts, {temperature, max_new_tokens, stop tokens,
//               seed drawn from the trainer's rng})                        time/generate
//   old logp    a training forward of the policy over prompt ‖ response at the same temperature
//               re-scores the sampled tokens; it must equal the sampling log-probs up to float
//               rounding (reported as policy/sampling_logp_diff_max)
//   reference   ref_logp from a forward of the frozen reference model      time/reference
//   score       values from the value model; scores = gain·RM(prompt ‖ response at its last
//               token) + bias (the normaliser of stage 2)                  time/score
//   rewards     r_t = −β·kl_t, + score at end_index (<rlhf/reward_shaping.hpp>; β from the fixed
//               or adaptive controller, then updated with the batch's mean Σ_t kl_t and n = B)
//   GAE         advantages, returns (<rlhf/gae.hpp>), advantages whitened (<rlhf/whiten.hpp>)
//                                                                          time/gae
//   train       ppo_epochs passes; each splits the rollout (shuffled) into `minibatches` parts;
//               per minibatch: policy forward → logp, entropy; value forward → values;
//               <rlhf/ppo_ptx.hpp> gives d(loss)/d(logp) and d(loss)/d(values); dlogits =
//               token_logprobs_backward(...); policy.backward(dlogits), value.backward_values()
//               (a policy modelling rlhf::FusedLogProbs takes rlhf::fused_linear_logprobs and
//               backward_hidden() instead, here and for old/ref log-probs and ptx: no (B, T, V)
//               logits are materialised);
//               then, with pretraining data, a forward of a ptx batch and the gradient of
//               γ_ptx · (mean token NLL) accumulated by a second policy.backward() — one
//               optimizer step for both (the paper's "consecutive steps ... accumulate them both
//               into the gradient buffers").                               time/train
//
// The value model is the caller's: InstructGPT initialises it from the reward model (copy the
// RM's weights into it before constructing the trainer). The reference is the frozen SFT model
// (a copy of the policy before training); it is only ever forwarded.
//
// Alignment: prompts are left-padded (make_prompt_batch), so every prompt ends in column P − 1
// and response token t is predicted by the logits / valued at column P − 1 + t.
//
// EMA of the policy weights (paper: 0.992): ppo_options::ema_decay; the average is updated after
// every policy optimizer step, evaluated through use_ema_weights() and saved by save_stage
// (rlhf/train/checkpoint.hpp). Any other per-step hook: ppo_options::after_policy_step.
//
// Metrics per iteration (TRL PPOTrainer names where TRL has one): objective/kl,
// objective/entropy, objective/non_score_reward, objective/rlhf_reward, objective/scores,
// objective/ptx_loss, policy/approxkl_avg, policy/clipfrac_avg, policy/entropy_avg,
// loss/policy_avg, loss/value_avg, loss/total_avg, val/clipfrac_avg, val/ratio, val/ratio_var,
// val/explained_variance, val/num_eos_tokens, val/response_length, policy/sampling_logp_diff_max,
// kl_ctl/beta (used for this rollout), kl_ctl/beta_next, lr, lr/value, episode,
// grad_norm/policy, grad_norm/value, time/{generate,reference,score,gae,train} (s) and
// time/<phase>_tokens_per_s.
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/concepts.hpp>
#include <rlhf/config.hpp>
#include <rlhf/detail/checks.hpp>
#include <rlhf/gae.hpp>
#include <rlhf/kl.hpp>
#include <rlhf/kl_controller.hpp>
#include <rlhf/lm_loss.hpp>
#include <rlhf/logprobs.hpp>
#include <rlhf/optim/ema.hpp>
#include <rlhf/ppo.hpp>
#include <rlhf/ppo_ptx.hpp>
#include <rlhf/reward_head.hpp>
#include <rlhf/reward_shaping.hpp>
#include <rlhf/rng.hpp>
#include <rlhf/tensor.hpp>
#include <rlhf/train/batch.hpp>
#include <rlhf/train/detail/common.hpp>
#include <rlhf/train/detail/lm_head.hpp>
#include <rlhf/train/experience.hpp>
#include <rlhf/train/metrics.hpp>
#include <rlhf/train/sft.hpp>
#include <rlhf/train/state.hpp>
#include <rlhf/whiten.hpp>

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace rlhf::train {

struct ppo_options {
  /// Sampling (temperature 1 in the paper; max_new_tokens; stop tokens; top-k/p). `seed` is
  /// ignored: each iteration draws one from the trainer's rng (saved in its state).
  generation_options generation{};
  std::size_t batch_size = 512;  ///< prompts (episodes) per iteration (paper: 512)
  std::size_t minibatches = 8;   ///< minibatches per PPO epoch (paper: 8 of 64)
  std::size_t ppo_epochs = 1;    ///< passes over each rollout (paper: 1; TRL 4)
  any_kl kl = fixed_kl{0.02};    ///< the KL coefficient β: fixed (paper) or adaptive
  kl_options kl_estimator{};     ///< per-token KL in the reward (k1)
  std::optional<double> score_clip{};             ///< clip scores to ±c (off; OpenRLHF 10, DS-Chat 5)
  reward_normalizer score_normalizer{};           ///< applied to RM scores: gain·r + bias
  gae_options gae{};                              ///< γ = 1, λ = 0.95
  bool whiten_advantages = true;
  whiten_options whiten{};
  /// The objective: clip 0.2, value clip 0.2, vf_coef 0.1, ptx_coef γ = 27.8 (used only when
  /// pretraining data is given), optional KL-in-loss.
  ppo_ptx_options objective{};
  std::size_t ptx_batch_size = 0;  ///< pretraining texts per minibatch; 0 = the minibatch size
  bool shuffle = true;             ///< prompt and ptx order per epoch, from (seed, epoch)
  std::uint64_t seed = 0;          ///< the trainer's rng (generation seeds, minibatch order)
  token_id pad_id = 0;
  cpu_backend backend{};
  /// An exponential moving average of the policy weights, updated after every policy
  /// optimizer step with this decay (InstructGPT: 0.992); std::nullopt = none. Evaluate with
  /// the average through ppo_trainer::use_ema_weights(); checkpoints (save_stage) keep it.
  std::optional<double> ema_decay{};
  std::function<void()> after_policy_step{};  ///< any other per-step hook, run after the EMA update
};

namespace detail {

template <class X>
tensor<X, 2> gather_rows(const tensor<X, 2>& src, std::span<const std::size_t> rows) {
  tensor<X, 2> out(static_cast<std::ptrdiff_t>(rows.size()), src.extent(1));
  for (std::size_t i = 0; i < rows.size(); ++i)
    for (std::ptrdiff_t t = 0; t < src.extent(1); ++t)
      out(static_cast<std::ptrdiff_t>(i), t) = src(static_cast<std::ptrdiff_t>(rows[i]), t);
  return out;
}

/// Running means of per-minibatch statistics.
struct averages {
  metrics sums;
  double count = 0;
  void add(const char* name, double v) { sums.set(name, sums.get(name).value_or(0.0) + v); }
  void into(metrics& m) const {
    for (const auto& [n, v] : sums.items()) m.set(n, count > 0 ? v / count : 0.0);
  }
};

}  // namespace detail

/// While alive, the policy holds the EMA weights (swapped in at construction, the trained
/// weights swapped back at destruction). Returned by ppo_trainer::use_ema_weights().
template <class P, class T>
class ema_weights_scope {
 public:
  ema_weights_scope(P& policy, ::rlhf::ema<T>& average) : policy_(&policy), average_(&average) {
    average_->swap_in(policy_->parameters());
  }
  ema_weights_scope(ema_weights_scope&& other) noexcept
      : policy_(other.policy_), average_(std::exchange(other.average_, nullptr)) {}
  ema_weights_scope(const ema_weights_scope&) = delete;
  ema_weights_scope& operator=(const ema_weights_scope&) = delete;
  ema_weights_scope& operator=(ema_weights_scope&&) = delete;
  ~ema_weights_scope() {
    if (average_ != nullptr) average_->swap_out(policy_->parameters());
  }

 private:
  P* policy_;
  ::rlhf::ema<T>* average_;
};

/// PPO-ptx. Holds references to the four models and the two optimizers.
template <Policy P, ValueModel V, RewardModel R, CausalLM Ref, class PO, class VO>
  requires Optimizer<PO, P> && Optimizer<VO, V> && std::same_as<typename P::scalar_type, typename V::scalar_type> &&
           std::same_as<typename P::scalar_type, typename R::scalar_type> &&
           std::same_as<typename P::scalar_type, typename Ref::scalar_type>
class ppo_trainer {
 public:
  using scalar_type = typename P::scalar_type;
  using T = scalar_type;
  /// The stage name checkpoints record (rlhf/train/checkpoint.hpp).
  static constexpr std::string_view kind = "ppo";

  /// Throws rlhf::invalid_argument for a zero batch size, minibatch count or epoch count, more
  /// minibatches than prompts, an EMA decay outside [0, 1], or a bad KL controller option.
  ppo_trainer(P& policy, PO& policy_optimizer, V& value, VO& value_optimizer, R& reward, Ref& reference,
              ppo_options options = {})
      : policy_(policy), policy_opt_(policy_optimizer), value_(value), value_opt_(value_optimizer), reward_(reward),
        reference_(reference), options_(std::move(options)), kl_(options_.kl) {
    constexpr const char* function = "rlhf::train::ppo_trainer";
    ::rlhf::detail::require(options_.batch_size > 0, function, "batch_size must be positive");
    ::rlhf::detail::require(options_.minibatches > 0 && options_.minibatches <= options_.batch_size, function,
                            "minibatches must be in [1, batch_size = " + std::to_string(options_.batch_size) +
                                "], got " + std::to_string(options_.minibatches));
    ::rlhf::detail::require(options_.ppo_epochs > 0, function, "ppo_epochs must be positive");
    ::rlhf::detail::require(options_.generation.max_new_tokens > 0, function,
                            "generation.max_new_tokens must be positive, got " +
                                std::to_string(options_.generation.max_new_tokens));
    if (options_.ema_decay) {
      const double d = *options_.ema_decay;
      ::rlhf::detail::require(d >= 0 && d <= 1, function,
                              "ema_decay must be in [0, 1], got " + ::rlhf::detail::number_string(d));
      ema_.emplace(ema_options{.decay = d});
    }
    state_.rng = rng{{.seed = options_.seed}}.state();
    state_.kl = kl_.state();
  }
  ppo_trainer(const ppo_trainer&) = delete;
  ppo_trainer& operator=(const ppo_trainer&) = delete;

  /// The rollout phase on left-padded prompts: generation, old/ref log-probs, values, scores,
  /// shaped rewards, GAE and whitening. Draws the generation seed from the trainer's rng and
  /// updates the KL controller. Timings go into `timing` when given.
  experience<T> make_experience(const sequence_batch& prompts, metrics* timing = nullptr) {
    constexpr const char* function = "rlhf::train::ppo_trainer::make_experience()";
    const std::ptrdiff_t B = prompts.rows(), Pc = prompts.length();
    ::rlhf::detail::require(B > 0 && Pc > 0, function, "the prompt batch is empty");
    for (std::ptrdiff_t b = 0; b < B; ++b)
      ::rlhf::detail::require(prompts.mask(b, Pc - 1) != 0, function,
                              "prompt row " + std::to_string(b) +
                                  " ends in padding; prompts must be left-padded (make_prompt_batch)");
    rng gen{};
    gen.restore(state_.rng);
    generation_options g = options_.generation;
    g.seed = gen.next_u64();
    state_.rng = gen.state();

    detail::stopwatch clock;
    auto out = policy_.generate(prompts.view(), g);
    const auto& cout_ = out;
    const matrix_view<const token_id> rtok = cout_.tokens;
    const matrix_view<const T> rlogp = cout_.logp;
    const mask_view rmask = cout_.mask;
    const vector_view<const std::ptrdiff_t> rend = cout_.end_index;
    const double t_generate = clock.seconds();
    const std::ptrdiff_t Rc = rmask.extent(1), L = Pc + Rc;
    ::rlhf::detail::require(rmask.extent(0) == B && same_shape(rtok, rmask) && same_shape(rlogp, rmask) &&
                                rend.extent(0) == B && Rc > 0,
                            function,
                            "Policy::generate returned tokens " + shape_string(rtok) + ", logp " + shape_string(rlogp) +
                                ", mask " + shape_string(rmask) + ", end_index " + shape_string(rend) + " for " +
                                std::to_string(B) + " prompts");
    for (std::ptrdiff_t b = 0; b < B; ++b)
      ::rlhf::detail::require(rend(b) >= 0 && rend(b) < Rc && rmask(b, rend(b)) != 0, function,
                              "Policy::generate returned end_index[" + std::to_string(b) + "] = " +
                                  std::to_string(rend(b)) + ", not a valid response token");

    experience<T> e;
    e.prompt_columns = Pc;
    e.sequences = detail::allocate_sequences(B, L, options_.pad_id);
    e.labels = tensor<token_id, 2>(B, Rc);
    e.mask = tensor<std::uint8_t, 2>(B, Rc);
    e.end_index = tensor<std::ptrdiff_t, 1>(B);
    for (auto* t : {&e.sampling_logp, &e.logp, &e.ref_logp, &e.values, &e.kl, &e.rewards, &e.advantages, &e.returns})
      *t = tensor<T, 2>(B, Rc);
    e.scores = tensor<T, 1>(B);
    double eos = 0, length = 0;
    for (std::ptrdiff_t b = 0; b < B; ++b) {
      for (std::ptrdiff_t t = 0; t < Pc; ++t) {
        e.sequences.tokens(b, t) = prompts.tokens(b, t);
        e.sequences.positions(b, t) = prompts.positions(b, t);
        e.sequences.mask(b, t) = prompts.mask(b, t);
      }
      const token_id first = prompts.positions(b, Pc - 1) + 1;
      for (std::ptrdiff_t t = 0; t < Rc; ++t) {
        const bool valid = rmask(b, t) != 0;
        e.sequences.tokens(b, Pc + t) = valid ? rtok(b, t) : options_.pad_id;
        e.sequences.positions(b, Pc + t) = first + static_cast<token_id>(t);
        e.sequences.mask(b, Pc + t) = valid;
        e.sequences.target_mask(b, Pc + t) = valid;
        e.labels(b, t) = valid ? rtok(b, t) : 0;
        e.mask(b, t) = valid;
        e.sampling_logp(b, t) = valid ? rlogp(b, t) : T(0);
        length += valid;
      }
      e.end_index(b) = rend(b);
      const auto& stops = options_.generation.stop_tokens;
      eos += std::find(stops.begin(), stops.end(), rtok(b, rend(b))) != stops.end();
    }
    const auto resp_mask = e.mask.view().as_const();
    const double tokens = static_cast<double>(B * L);

    // Old log-probs (training forward of the policy) and reference log-probs.
    clock = {};
    const double temperature = options_.generation.temperature;
    head_.logprobs(options_.backend, policy_, e.sequences.view(), Pc - 1, e.labels.view().as_const(),
                   {.logp = e.logp.view()}, temperature);
    head_.logprobs(options_.backend, reference_, e.sequences.view(), Pc - 1, e.labels.view().as_const(),
                   {.logp = e.ref_logp.view()}, temperature);
    const double t_reference = clock.seconds();

    // Values and scores.
    clock = {};
    tensor<T, 2> full_values(B, L);
    value_.values(e.sequences.view(), full_values.view());
    tensor<std::ptrdiff_t, 1> full_end(B);
    for (std::ptrdiff_t b = 0; b < B; ++b) {
      full_end(b) = Pc + e.end_index(b);
      for (std::ptrdiff_t t = 0; t < Rc; ++t) e.values(b, t) = full_values(b, Pc - 1 + t);
    }
    tensor<T, 1> raw(B);
    reward_.scores(e.sequences.view(), full_end.view().as_const(), raw.view());
    double score_sum = 0, diff_max = 0, neg_logp = 0;
    for (std::ptrdiff_t b = 0; b < B; ++b) {
      e.scores(b) = static_cast<T>(options_.score_normalizer.gain * static_cast<double>(raw(b)) +
                                   options_.score_normalizer.bias);
      score_sum += static_cast<double>(e.scores(b));
      for (std::ptrdiff_t t = 0; t < Rc; ++t)
        if (e.mask(b, t)) {
          diff_max = std::max(diff_max, std::abs(static_cast<double>(e.logp(b, t)) - static_cast<double>(e.sampling_logp(b, t))));
          neg_logp -= static_cast<double>(e.logp(b, t));
        }
    }
    const double t_score = clock.seconds();

    // Rewards, GAE, whitening, the KL controller.
    clock = {};
    e.beta = kl_.value();
    const auto shaping = shape_rewards(
        options_.backend,
        {.logp = e.logp.view().as_const(), .ref_logp = e.ref_logp.view().as_const(), .scores = e.scores.view().as_const(),
         .end_index = e.end_index.view().as_const(), .mask = resp_mask},
        {.rewards = e.rewards.view(), .kl = e.kl.view()},
        {.beta = e.beta, .kl = options_.kl_estimator, .score_clip = options_.score_clip});
    gae(options_.backend, e.rewards.view().as_const(), e.values.view().as_const(), resp_mask, e.advantages.view(),
        e.returns.view(), options_.gae);
    if (options_.whiten_advantages)
      whiten(options_.backend, e.advantages.view().as_const(), resp_mask, e.advantages.view(), options_.whiten);
    const auto update = kl_.update(shaping.mean_kl_sum, static_cast<double>(B));
    state_.kl = kl_.state();
    const double t_gae = clock.seconds();

    if (timing) {
      auto& m = *timing;
      m.set("objective/kl", shaping.mean_kl_sum);
      m.set("objective/entropy", neg_logp / static_cast<double>(B));
      m.set("objective/non_score_reward", shaping.mean_non_score_reward);
      m.set("objective/rlhf_reward", shaping.mean_total_reward);
      m.set("objective/scores", score_sum / static_cast<double>(B));
      m.set("kl_ctl/beta", e.beta);
      m.set("kl_ctl/beta_next", update.value);
      m.set("val/num_eos_tokens", eos);
      m.set("val/response_length", length / static_cast<double>(B));
      m.set("policy/sampling_logp_diff_max", diff_max);
      m.set("time/generate", t_generate);
      m.set("time/generate_tokens_per_s", detail::per_second(length, t_generate));
      m.set("time/reference", t_reference);
      m.set("time/reference_tokens_per_s", detail::per_second(2 * tokens, t_reference));
      m.set("time/score", t_score);
      m.set("time/score_tokens_per_s", detail::per_second(2 * tokens, t_score));
      m.set("time/gae", t_gae);
      m.set("time/gae_tokens_per_s", detail::per_second(static_cast<double>(B * Rc), t_gae));
    }
    return e;
  }

  /// The training phase on a rollout: ppo_epochs × minibatches optimizer steps of both models.
  /// `ptx` holds one pretraining batch per minibatch step (ppo_epochs · minibatches of them), or
  /// is empty (plain PPO: γ = 0). Statistics are means over the minibatches.
  step_result train_on(const experience<T>& e, std::span<const sequence_batch> ptx = {}) {
    constexpr const char* function = "rlhf::train::ppo_trainer::train_on()";
    const std::size_t steps = options_.ppo_epochs * options_.minibatches;
    ::rlhf::detail::require(ptx.empty() || ptx.size() == steps, function,
                            "ptx has " + std::to_string(ptx.size()) + " batches but ppo_epochs · minibatches = " +
                                std::to_string(steps));
    const auto B = static_cast<std::size_t>(e.rows());
    ::rlhf::detail::require(B >= options_.minibatches, function,
                            "the rollout has " + std::to_string(B) + " rows, fewer than minibatches = " +
                                std::to_string(options_.minibatches));
    detail::stopwatch clock;
    step_result result;
    const std::uint64_t k = state_.step + 1;
    const std::ptrdiff_t Pc = e.prompt_columns, Rc = e.response_columns(), L = Pc + Rc;
    ppo_ptx_options objective = options_.objective;
    objective.ptx_coef = 0;  // the ptx term is added below, through its own forward
    const bool with_kl_loss = objective.kl_loss_coef > 0;
    rng gen{};
    gen.restore(state_.rng);
    detail::averages avg;
    std::size_t ptx_index = 0;
    double policy_norm = 0, value_norm = 0;
    for (std::size_t epoch = 0; epoch < options_.ppo_epochs && !result.event; ++epoch) {
      std::vector<std::size_t> order(B);
      for (std::size_t i = 0; i < B; ++i) order[i] = i;
      if (options_.shuffle)
        for (std::size_t i = B; i > 1; --i) std::swap(order[i - 1], order[static_cast<std::size_t>(gen.uniform_index(i))]);
      for (std::size_t mb = 0; mb < options_.minibatches && !result.event; ++mb) {
        const std::size_t lo = mb * B / options_.minibatches, hi = (mb + 1) * B / options_.minibatches;
        const std::span<const std::size_t> rows(order.data() + lo, hi - lo);
        const auto m = static_cast<std::ptrdiff_t>(rows.size());
        sequence_batch seqs{detail::gather_rows(e.sequences.tokens, rows), detail::gather_rows(e.sequences.positions, rows),
                            detail::gather_rows(e.sequences.mask, rows), detail::gather_rows(e.sequences.target_mask, rows)};
        const auto labels = detail::gather_rows(e.labels, rows);
        const auto mask = detail::gather_rows(e.mask, rows);
        const auto old_logp = detail::gather_rows(e.logp, rows);
        const auto adv = detail::gather_rows(e.advantages, rows);
        const auto ret = detail::gather_rows(e.returns, rows);
        const auto old_values = detail::gather_rows(e.values, rows);
        const auto ref_logp = with_kl_loss ? detail::gather_rows(e.ref_logp, rows) : tensor<T, 2>();

        policy_opt_.zero_grad(policy_.parameters());
        value_opt_.zero_grad(value_.parameters());
        // Policy forward → logp, entropy.
        tensor<T, 2> logp(m, Rc), entropy(m, Rc), dlogp(m, Rc), values(m, Rc), dvalues(m, Rc);
        head_.logprobs(options_.backend, policy_, seqs.view(), Pc - 1, labels.view().as_const(),
                       {.logp = logp.view(), .entropy = entropy.view()}, options_.generation.temperature);
        // Value forward.
        tensor<T, 2> full_values(m, L);
        value_.values(seqs.view(), full_values.view());
        for (std::ptrdiff_t b = 0; b < m; ++b)
          for (std::ptrdiff_t t = 0; t < Rc; ++t) values(b, t) = full_values(b, Pc - 1 + t);
        // The objective and its gradients w.r.t. logp and values.
        const auto s = ppo_ptx_loss(
            options_.backend,
            {.policy = {.logp = logp.view(), .old_logp = old_logp.view(), .advantages = adv.view(), .mask = mask.view()},
             .value = {.values = values.view(), .old_values = old_values.view(), .returns = ret.view(), .mask = mask.view()},
             .ref_logp = ref_logp.view()},
            {.dlogp = dlogp.view(), .dvalues = dvalues.view()}, objective);
        detail::check_finite(result.event, k, "loss/policy", static_cast<double>(s.policy.loss));
        detail::check_finite(result.event, k, "loss/value", static_cast<double>(s.value.loss));
        // d(loss)/d(logp) → the policy's gradients (dlogits or dhidden; other columns 0).
        head_.logprobs_backward(options_.backend, policy_, dlogp.view().as_const());
        for (std::ptrdiff_t b = 0; b < m; ++b)
          for (std::ptrdiff_t t = 0; t < L; ++t) full_values(b, t) = (t >= Pc - 1 && t < L - 1) ? dvalues(b, t - Pc + 1) : T(0);
        value_.backward_values(full_values.view());
        // ptx: γ · mean token NLL of a pretraining batch, accumulated into the same gradients.
        double ptx_loss = 0;
        if (!ptx.empty()) {
          const auto& pb = ptx[ptx_index++];
          ptx_loss = head_.lm_loss(options_.backend, policy_, pb, options_.objective.ptx_coef, /*with_gradient=*/true,
                                   /*with_accuracy=*/false)
                         .loss;
          detail::check_finite(result.event, k, "objective/ptx_loss", ptx_loss);
        }
        policy_norm = detail::gradient_norm(policy_, k, result.event, "policy ");
        value_norm = detail::gradient_norm(value_, k, result.event, "value ");
        if (result.event) break;
        policy_opt_.step(policy_.parameters());
        if (ema_) ema_->update(policy_.parameters());
        if (options_.after_policy_step) options_.after_policy_step();
        value_opt_.step(value_.parameters());

        double ent = 0;
        std::int64_t n = 0;
        for (std::ptrdiff_t b = 0; b < m; ++b)
          for (std::ptrdiff_t t = 0; t < Rc; ++t)
            if (mask(b, t)) {
              ent += static_cast<double>(entropy(b, t));
              ++n;
            }
        avg.count += 1;
        avg.add("policy/approxkl_avg", static_cast<double>(s.policy.approx_kl));
        avg.add("policy/clipfrac_avg", static_cast<double>(s.policy.clipfrac));
        avg.add("policy/entropy_avg", n > 0 ? ent / static_cast<double>(n) : 0.0);
        avg.add("loss/policy_avg", static_cast<double>(s.policy.loss));
        avg.add("loss/value_avg", static_cast<double>(s.value.loss));
        avg.add("loss/total_avg", static_cast<double>(s.loss) + (ptx.empty() ? 0.0 : options_.objective.ptx_coef * ptx_loss));
        avg.add("val/clipfrac_avg", static_cast<double>(s.value.clipfrac));
        avg.add("val/ratio", static_cast<double>(s.policy.ratio_mean));
        avg.add("val/ratio_var", static_cast<double>(s.policy.ratio_var));
        avg.add("val/explained_variance", static_cast<double>(s.value.explained_variance));
        if (!ptx.empty()) avg.add("objective/ptx_loss", ptx_loss);
        if (with_kl_loss) avg.add("loss/kl_avg", static_cast<double>(s.kl_loss));
      }
    }
    if (!result.event) {
      state_.rng = gen.state();
      state_.step = k;
      state_.episode += B;
    }
    avg.into(result.stats);
    result.stats.set("grad_norm/policy", policy_norm);
    result.stats.set("grad_norm/value", value_norm);
    result.stats.set("lr", policy_opt_.learning_rate());
    result.stats.set("lr/value", value_opt_.learning_rate());
    result.stats.set("episode", static_cast<double>(state_.episode));
    const double seconds = clock.seconds();
    result.stats.set("time/train", seconds);
    result.stats.set("time/train_tokens_per_s",
                     detail::per_second(static_cast<double>(options_.ppo_epochs * B) * static_cast<double>(L), seconds));
    return result;
  }

  /// One iteration: make_experience() then train_on(). On a NaN/Inf the trainer's step, episode
  /// and rng do not advance (the weights hold the minibatch updates before the failing one).
  step_result step(const sequence_batch& prompts, std::span<const sequence_batch> ptx = {}) {
    metrics rollout;
    const auto saved = state_;
    const auto e = make_experience(prompts, &rollout);
    step_result r;
    r.event = check_experience(e, state_.step + 1);
    if (!r.event) r = train_on(e, ptx);
    if (r.event) {
      state_ = saved;
      kl_.restore(saved.kl);
    }
    for (const auto& [n, v] : rollout.items()) r.stats.set(n, v);
    return r;
  }

  /// Iterations over `prompts` (batch_size per iteration, wrapping into the next epoch) until
  /// `epochs` passes or `max_steps` iterations; with `ptx_texts`, each minibatch step also
  /// trains on ptx_batch_size of them (drawn as a stream over shuffled epochs). Throws
  /// rlhf::numerical_error at the first NaN/Inf.
  void fit(std::span<const token_sequence> prompts, std::span<const token_sequence> ptx_texts = {},
           const fit_options& fit = {}) {
    ::rlhf::detail::require(!prompts.empty(), "rlhf::train::ppo_trainer::fit()", "no prompts");
    const std::size_t per_minibatch = options_.ptx_batch_size > 0
                                          ? options_.ptx_batch_size
                                          : std::max<std::size_t>(1, options_.batch_size / options_.minibatches);
    while (state_.data.epoch < fit.epochs && (fit.max_steps == 0 || state_.step < fit.max_steps)) {
      data_position next = state_.data, next_ptx = state_.ptx_data;
      const auto idx = detail::next_indices_wrapping(next, prompts.size(), options_.batch_size, options_.shuffle,
                                                     options_.seed);
      std::vector<const token_sequence*> chosen;
      for (const auto i : idx) chosen.push_back(&prompts[i]);
      std::vector<sequence_batch> ptx;
      if (!ptx_texts.empty())
        for (std::size_t s = 0; s < options_.ppo_epochs * options_.minibatches; ++s) {
          const auto pidx = detail::next_indices_wrapping(next_ptx, ptx_texts.size(), per_minibatch, options_.shuffle,
                                                          options_.seed ^ 0x9E3779B97F4A7C15ull);
          std::vector<const token_sequence*> texts;
          for (const auto i : pidx) texts.push_back(&ptx_texts[i]);
          ptx.push_back(make_lm_batch(std::span<const token_sequence* const>(texts), options_.pad_id));
        }
      auto r = step(make_prompt_batch(std::span<const token_sequence* const>(chosen), options_.pad_id), ptx);
      if (r.event) RLHF_THROW(to_error("rlhf::train::ppo_trainer", *r.event));
      state_.data = next;
      state_.ptx_data = next_ptx;
      if (fit.on_step) fit.on_step(state_.step, r.stats);
    }
  }

  [[nodiscard]] const trainer_state& state() const noexcept { return state_; }
  /// Continues from a saved state (the KL controller included).
  void restore(const trainer_state& s) {
    kl_.restore(s.kl);
    state_ = s;
  }
  [[nodiscard]] double kl_coefficient() const noexcept { return kl_.value(); }

  /// The EMA of the policy weights (ppo_options::ema_decay), or nullptr when there is none.
  [[nodiscard]] const ::rlhf::ema<T>* ema() const noexcept { return ema_ ? &*ema_ : nullptr; }
  [[nodiscard]] ::rlhf::ema<T>* ema() noexcept { return ema_ ? &*ema_ : nullptr; }

  /// Evaluate (or sample) with the EMA weights: the policy holds them until the returned scope
  /// ends, then its trained weights come back bit for bit.
  ///   { auto scope = trainer.use_ema_weights(); evaluate(policy); }
  /// Throws rlhf::invalid_argument when there is no EMA (ema_decay unset) or no update yet.
  /// Do not step the trainer while a scope is alive.
  [[nodiscard]] ema_weights_scope<P, T> use_ema_weights() {
    constexpr const char* function = "rlhf::train::ppo_trainer::use_ema_weights()";
    ::rlhf::detail::require(ema_.has_value(), function, "the trainer keeps no EMA: set ppo_options::ema_decay");
    ::rlhf::detail::require(ema_->updates() > 0, function, "the EMA has no update yet: train at least one step");
    return ema_weights_scope<P, T>(policy_, *ema_);
  }
  [[nodiscard]] const ppo_options& options() const noexcept { return options_; }

 private:
  /// The first NaN/Inf among the rollout's valid-token tensors and scores.
  static std::optional<numerical_event> check_experience(const experience<T>& e, std::uint64_t step) {
    for (std::ptrdiff_t b = 0; b < e.rows(); ++b)
      if (!std::isfinite(static_cast<double>(e.scores(b))))
        return numerical_event{step, "scores [" + std::to_string(b) + "]", static_cast<double>(e.scores(b))};
    const std::pair<const char*, const tensor<T, 2>*> named[] = {
        {"logp", &e.logp}, {"ref_logp", &e.ref_logp}, {"values", &e.values}, {"advantages", &e.advantages}};
    for (const auto& [name, x] : named)
      for (std::ptrdiff_t b = 0; b < e.rows(); ++b)
        for (std::ptrdiff_t t = 0; t < e.response_columns(); ++t)
          if (e.mask(b, t) && !std::isfinite(static_cast<double>((*x)(b, t))))
            return numerical_event{step, std::string(name) + " [" + std::to_string(b) + ", " + std::to_string(t) + "]",
                                   static_cast<double>((*x)(b, t))};
    return std::nullopt;
  }

  P& policy_;
  PO& policy_opt_;
  V& value_;
  VO& value_opt_;
  R& reward_;
  Ref& reference_;
  ppo_options options_;
  kl_controller<any_kl> kl_;
  std::optional<::rlhf::ema<T>> ema_;
  trainer_state state_{};
  detail::lm_head<T> head_;
};

}  // namespace rlhf::train
