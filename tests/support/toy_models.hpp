// tests/support/toy_models.hpp — tiny models that model the library's concepts, for the
// trainer tests. Every one is a handful of tables, exact to differentiate by hand:
//
//   toy_lm<T>       CausalLM + Policy: logits[b, t, :] = table[position(b, t), :] + bigram[token(b, t), :]
//                   (a per-position logits table — a bandit policy — plus a bigram term);
//                   generate() samples with rlhf::sample_tokens, one rng stream per row
//   toy_value<T>    ValueModel: values[b, t] = by_position[position] + by_token[token]
//   toy_bow_reward<T> RewardModel: score[b] = bias + Σ_{t ≤ end_index[b], mask} weight[token]
//                   (a linear model over bag-of-token features)
//   toy_sgd         Optimizer: SGD with momentum (state: the velocities and the step count);
//                   save_optimizer / load_optimizer store it in an rlhf::checkpoint
//   grad_recorder   Optimizer that records the gradients it is given and does not update
#pragma once

#include <rlhf/concepts.hpp>
#include <rlhf/io/checkpoint.hpp>
#include <rlhf/rng.hpp>
#include <rlhf/sampler.hpp>
#include <rlhf/tensor.hpp>
#include <rlhf/tensor_view.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace rlhf::test {

/// What toy_lm::generate returns (the layout of rlhf::Policy).
template <class T>
struct toy_generation {
  tensor<token_id, 2> tokens;             ///< (B, T_resp)
  tensor<T, 2> logp;                      ///< (B, T_resp) sampling log-probs
  tensor<std::uint8_t, 2> mask;           ///< (B, T_resp)
  tensor<std::ptrdiff_t, 1> end_index;    ///< (B)
};

template <class T>
class toy_lm {
 public:
  using scalar_type = T;

  toy_lm(std::ptrdiff_t vocab, std::ptrdiff_t max_positions)
      : vocab_(vocab), max_positions_(max_positions),
        table_(static_cast<std::size_t>(vocab * max_positions)), bigram_(static_cast<std::size_t>(vocab * vocab)),
        dtable_(table_.size()), dbigram_(bigram_.size()) {}

  /// Fills the tables with N(0, scale²) from `seed`.
  void randomize(std::uint64_t seed, double scale) {
    rng gen{{.seed = seed}};
    for (auto& x : table_) x = static_cast<T>(scale * gen.normal());
    for (auto& x : bigram_) x = static_cast<T>(scale * gen.normal());
  }

  [[nodiscard]] std::ptrdiff_t vocab_size() const { return vocab_; }
  T& table(std::ptrdiff_t position, std::ptrdiff_t v) { return table_[static_cast<std::size_t>(position * vocab_ + v)]; }
  T& bigram(token_id token, std::ptrdiff_t v) { return bigram_[static_cast<std::size_t>(token * vocab_ + v)]; }

  void forward(const token_batch& batch, cube_view<T> logits) {
    const std::ptrdiff_t B = batch.tokens.extent(0), L = batch.tokens.extent(1);
    tokens_.assign(static_cast<std::size_t>(B * L), 0);
    positions_.assign(tokens_.size(), 0);
    rows_ = B;
    cols_ = L;
    ++forwards_;
    for (std::ptrdiff_t b = 0; b < B; ++b)
      for (std::ptrdiff_t t = 0; t < L; ++t) {
        const token_id tok = batch.tokens(b, t);
        const std::ptrdiff_t pos = position_of(batch.positions(b, t));
        tokens_[static_cast<std::size_t>(b * L + t)] = tok;
        positions_[static_cast<std::size_t>(b * L + t)] = pos;
        for (std::ptrdiff_t v = 0; v < vocab_; ++v)
          logits(b, t, v) = table(pos, v) + bigram(std::clamp<token_id>(tok, 0, static_cast<token_id>(vocab_ - 1)), v);
      }
  }

  void backward(cube_view<const T> dlogits) {
    ++backwards_;
    for (std::ptrdiff_t b = 0; b < rows_; ++b)
      for (std::ptrdiff_t t = 0; t < cols_; ++t) {
        const auto i = static_cast<std::size_t>(b * cols_ + t);
        const token_id tok = std::clamp<token_id>(tokens_[i], 0, static_cast<token_id>(vocab_ - 1));
        for (std::ptrdiff_t v = 0; v < vocab_; ++v) {
          dtable_[static_cast<std::size_t>(positions_[i] * vocab_ + v)] += dlogits(b, t, v);
          dbigram_[static_cast<std::size_t>(tok * vocab_ + v)] += dlogits(b, t, v);
        }
      }
    if (poison_backward_ != 0 && backwards_ == poison_backward_)
      dbigram_[1] = std::numeric_limits<T>::infinity();
  }

  std::vector<parameter_ref<T>> parameters() {
    return {{"table", vector_view<T>(table_.data(), static_cast<std::ptrdiff_t>(table_.size())),
             vector_view<T>(dtable_.data(), static_cast<std::ptrdiff_t>(dtable_.size()))},
            {"bigram", vector_view<T>(bigram_.data(), static_cast<std::ptrdiff_t>(bigram_.size())),
             vector_view<T>(dbigram_.data(), static_cast<std::ptrdiff_t>(dbigram_.size()))}};
  }

  /// Samples up to max_new_tokens per left-padded prompt row, stopping a row at a stop token.
  toy_generation<T> generate(const token_batch& prompts, const generation_options& options) {
    const std::ptrdiff_t B = prompts.tokens.extent(0), P = prompts.tokens.extent(1);
    const std::ptrdiff_t N = options.max_new_tokens;
    toy_generation<T> out{tensor<token_id, 2>(B, N), tensor<T, 2>(B, N), tensor<std::uint8_t, 2>(B, N),
                          tensor<std::ptrdiff_t, 1>(B)};
    std::vector<rng> gens;
    for (std::ptrdiff_t b = 0; b < B; ++b) gens.push_back(rng{{.seed = options.seed, .stream = static_cast<std::uint64_t>(b)}});
    std::vector<token_id> last(static_cast<std::size_t>(B));
    std::vector<std::ptrdiff_t> next_pos(static_cast<std::size_t>(B));
    std::vector<bool> done(static_cast<std::size_t>(B), false);
    for (std::ptrdiff_t b = 0; b < B; ++b) {
      last[static_cast<std::size_t>(b)] = prompts.tokens(b, P - 1);
      next_pos[static_cast<std::size_t>(b)] = prompts.positions(b, P - 1);
    }
    tensor<T, 2> row_logits(1, vocab_);
    tensor<token_id, 1> tok(1);
    tensor<T, 1> lp(1);
    for (std::ptrdiff_t t = 0; t < N; ++t)
      for (std::ptrdiff_t b = 0; b < B; ++b) {
        const auto bi = static_cast<std::size_t>(b);
        if (done[bi]) continue;
        const std::ptrdiff_t pos = position_of(next_pos[bi]);
        for (std::ptrdiff_t v = 0; v < vocab_; ++v) row_logits(0, v) = table(pos, v) + bigram(last[bi], v);
        sample_tokens(cpu, row_logits.view(), std::span<rng>(&gens[bi], 1), tok.view(), lp.view(),
                      {.temperature = options.temperature, .top_k = options.top_k, .top_p = options.top_p,
                       .greedy = options.greedy});
        out.tokens(b, t) = tok(0);
        out.logp(b, t) = lp(0);
        out.mask(b, t) = 1;
        out.end_index(b) = t;
        last[bi] = tok(0);
        ++next_pos[bi];
        if (std::find(options.stop_tokens.begin(), options.stop_tokens.end(), tok(0)) != options.stop_tokens.end())
          done[bi] = true;
      }
    return out;
  }

  /// backward() number k (1-based) writes +Inf into bigram's gradient (0 = never).
  void poison_backward(int k) { poison_backward_ = k; }
  [[nodiscard]] int forwards() const { return forwards_; }

  bool operator==(const toy_lm& o) const { return table_ == o.table_ && bigram_ == o.bigram_; }

 private:
  [[nodiscard]] std::ptrdiff_t position_of(std::ptrdiff_t p) const { return std::clamp<std::ptrdiff_t>(p, 0, max_positions_ - 1); }

  std::ptrdiff_t vocab_, max_positions_;
  std::vector<T> table_, bigram_, dtable_, dbigram_;
  std::vector<token_id> tokens_;
  std::vector<std::ptrdiff_t> positions_;
  std::ptrdiff_t rows_ = 0, cols_ = 0;
  int forwards_ = 0, backwards_ = 0, poison_backward_ = 0;
};

template <class T>
class toy_value {
 public:
  using scalar_type = T;
  toy_value(std::ptrdiff_t vocab, std::ptrdiff_t max_positions)
      : vocab_(vocab), max_positions_(max_positions), by_position_(static_cast<std::size_t>(max_positions)),
        by_token_(static_cast<std::size_t>(vocab)), dpos_(by_position_.size()), dtok_(by_token_.size()) {}

  void values(const token_batch& batch, matrix_view<T> out) {
    const std::ptrdiff_t B = batch.tokens.extent(0), L = batch.tokens.extent(1);
    pos_.assign(static_cast<std::size_t>(B * L), 0);
    tok_.assign(pos_.size(), 0);
    rows_ = B;
    cols_ = L;
    for (std::ptrdiff_t b = 0; b < B; ++b)
      for (std::ptrdiff_t t = 0; t < L; ++t) {
        const auto i = static_cast<std::size_t>(b * L + t);
        pos_[i] = std::clamp<std::ptrdiff_t>(batch.positions(b, t), 0, max_positions_ - 1);
        tok_[i] = std::clamp<std::ptrdiff_t>(batch.tokens(b, t), 0, vocab_ - 1);
        out(b, t) = by_position_[static_cast<std::size_t>(pos_[i])] + by_token_[static_cast<std::size_t>(tok_[i])];
      }
  }
  void backward_values(matrix_view<const T> dvalues) {
    for (std::ptrdiff_t b = 0; b < rows_; ++b)
      for (std::ptrdiff_t t = 0; t < cols_; ++t) {
        const auto i = static_cast<std::size_t>(b * cols_ + t);
        dpos_[static_cast<std::size_t>(pos_[i])] += dvalues(b, t);
        dtok_[static_cast<std::size_t>(tok_[i])] += dvalues(b, t);
      }
  }
  std::vector<parameter_ref<T>> parameters() {
    return {{"by_position", vector_view<T>(by_position_.data(), max_positions_), vector_view<T>(dpos_.data(), max_positions_)},
            {"by_token", vector_view<T>(by_token_.data(), vocab_), vector_view<T>(dtok_.data(), vocab_)}};
  }
  bool operator==(const toy_value& o) const { return by_position_ == o.by_position_ && by_token_ == o.by_token_; }

 private:
  std::ptrdiff_t vocab_, max_positions_;
  std::vector<T> by_position_, by_token_, dpos_, dtok_;
  std::vector<std::ptrdiff_t> pos_, tok_;
  std::ptrdiff_t rows_ = 0, cols_ = 0;
};

template <class T>
class toy_bow_reward {
 public:
  using scalar_type = T;
  explicit toy_bow_reward(std::ptrdiff_t vocab)
      : vocab_(vocab), weight_(static_cast<std::size_t>(vocab)), bias_(1), dweight_(weight_.size()), dbias_(1) {}

  T& weight(std::ptrdiff_t v) { return weight_[static_cast<std::size_t>(v)]; }
  T& bias() { return bias_[0]; }

  void scores(const token_batch& batch, vector_view<const std::ptrdiff_t> end_index, vector_view<T> out) {
    const std::ptrdiff_t B = batch.tokens.extent(0);
    counts_.assign(static_cast<std::size_t>(B * vocab_), T(0));
    for (std::ptrdiff_t b = 0; b < B; ++b) {
      T s = bias_[0];
      for (std::ptrdiff_t t = 0; t <= end_index(b); ++t) {
        if (!batch.mask(b, t)) continue;
        const auto v = std::clamp<std::ptrdiff_t>(batch.tokens(b, t), 0, vocab_ - 1);
        s += weight_[static_cast<std::size_t>(v)];
        counts_[static_cast<std::size_t>(b * vocab_ + v)] += T(1);
      }
      out(b) = s;
    }
    rows_ = B;
  }
  void backward_scores(vector_view<const T> dscores) {
    for (std::ptrdiff_t b = 0; b < rows_; ++b) {
      dbias_[0] += dscores(b);
      for (std::ptrdiff_t v = 0; v < vocab_; ++v)
        dweight_[static_cast<std::size_t>(v)] += dscores(b) * counts_[static_cast<std::size_t>(b * vocab_ + v)];
    }
  }
  std::vector<parameter_ref<T>> parameters() {
    return {{"weight", vector_view<T>(weight_.data(), vocab_), vector_view<T>(dweight_.data(), vocab_)},
            {"bias", vector_view<T>(bias_.data(), 1), vector_view<T>(dbias_.data(), 1)}};
  }
  bool operator==(const toy_bow_reward& o) const { return weight_ == o.weight_ && bias_ == o.bias_; }

 private:
  std::ptrdiff_t vocab_;
  std::vector<T> weight_, bias_, dweight_, dbias_;
  std::vector<T> counts_;
  std::ptrdiff_t rows_ = 0;
};

/// SGD with momentum: v ← μ·v + g; θ ← θ − lr·v. The velocities are its state.
class toy_sgd {
 public:
  explicit toy_sgd(double lr, double momentum = 0.0) : lr_(lr), momentum_(momentum) {}
  template <class Params>
  void step(Params&& params) {
    std::size_t k = 0;
    for (auto& p : params) {
      if (velocity_.size() <= k) velocity_.emplace_back(static_cast<std::size_t>(p.value.extent(0)), 0.0);
      auto& vel = velocity_[k++];
      for (std::ptrdiff_t i = 0; i < p.value.extent(0); ++i) {
        auto& v = vel[static_cast<std::size_t>(i)];
        v = momentum_ * v + static_cast<double>(p.grad(i));
        p.value(i) = static_cast<std::remove_cvref_t<decltype(p.value(i))>>(static_cast<double>(p.value(i)) - lr_ * v);
      }
    }
    ++steps_;
  }
  template <class Params>
  void zero_grad(Params&& params) {
    for (auto& p : params)
      for (std::ptrdiff_t i = 0; i < p.grad.extent(0); ++i) p.grad(i) = 0;
  }
  [[nodiscard]] double learning_rate() const { return lr_; }
  [[nodiscard]] int steps() const { return steps_; }
  [[nodiscard]] const std::vector<std::vector<double>>& velocities() const { return velocity_; }
  void restore(int steps, std::vector<std::vector<double>> velocities) {
    steps_ = steps;
    velocity_ = std::move(velocities);
  }
  bool operator==(const toy_sgd&) const = default;

 private:
  double lr_, momentum_;
  std::vector<std::vector<double>> velocity_;
  int steps_ = 0;
};

/// toy_sgd's state in a checkpoint, found by argument-dependent lookup (rlhf::train::save_stage).
inline void save_optimizer(checkpoint& ck, const toy_sgd& o, std::string_view prefix) {
  const std::string p(prefix);
  ck.set_u64(p + "steps", static_cast<std::uint64_t>(o.steps()));
  ck.set_u64(p + "parameters", o.velocities().size());
  for (std::size_t k = 0; k < o.velocities().size(); ++k)
    ck.set_values(p + "velocity." + std::to_string(k), std::span<const double>(o.velocities()[k]));
  ck.add_group(prefix);
}
inline void load_optimizer(const checkpoint& ck, toy_sgd& o, std::string_view prefix) {
  const std::string p(prefix);
  std::vector<std::vector<double>> v(static_cast<std::size_t>(ck.get_u64(p + "parameters")));
  for (std::size_t k = 0; k < v.size(); ++k) v[k] = ck.values<double>(p + "velocity." + std::to_string(k));
  o.restore(static_cast<int>(ck.get_u64(p + "steps")), std::move(v));
}

/// Records the gradients of every step() call (as double) and leaves the weights alone.
class grad_recorder {
 public:
  template <class Params>
  void step(Params&& params) {
    std::vector<double> g;
    for (auto& p : params)
      for (std::ptrdiff_t i = 0; i < p.grad.extent(0); ++i) g.push_back(static_cast<double>(p.grad(i)));
    recorded.push_back(std::move(g));
  }
  template <class Params>
  void zero_grad(Params&& params) {
    for (auto& p : params)
      for (std::ptrdiff_t i = 0; i < p.grad.extent(0); ++i) p.grad(i) = 0;
  }
  [[nodiscard]] double learning_rate() const { return 0.0; }
  std::vector<std::vector<double>> recorded;
};

}  // namespace rlhf::test
