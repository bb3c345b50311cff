// rlhf/concepts.hpp — every user-facing concept of the library, in one place.
//
// Concepts are structural: a type models one by having the members below, nothing to inherit.
// Write `static_assert(rlhf::Policy<MyPolicy>);` next to your type to be told early, with the
// failing requirement named, when it does not. docs/concepts.md has a section per concept.
//
// Shapes: B batch, T tokens, V vocabulary, D hidden width. Token ids are rlhf::token_id.
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/config.hpp>
#include <rlhf/tensor_view.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <ranges>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace rlhf {

using token_id = std::int32_t;

/// A batch of token sequences as models read it. All three are (B, T).
///   tokens    — the ids (padding positions may hold any id, usually pad);
///   positions — explicit position ids, so left padding is exact (OpenRLHF #217, trlx #509):
///               for a left-padded row, cumsum(mask) − 1 on valid tokens;
///   mask      — 1 = attend to this token, 0 = padding.
struct token_batch {
  matrix_view<const token_id> tokens;
  matrix_view<const token_id> positions;
  mask_view mask;
};

/// One trainable tensor of a model, flattened: its values and its gradient buffer (same size).
template <class T>
struct parameter_ref {
  std::string_view name;
  vector_view<T> value;
  vector_view<T> grad;
};

/// Text ↔ token ids. `decode` never throws on ids it produced; special ids are explicit.
template <class K>
concept Tokenizer = requires(const K& k, std::string_view text, std::span<const token_id> ids) {
  { k.encode(text) } -> std::same_as<std::vector<token_id>>;
  { k.decode(ids) } -> std::convertible_to<std::string>;
  { k.vocab_size() } -> std::convertible_to<std::size_t>;
  { k.eos_id() } -> std::convertible_to<token_id>;
  { k.pad_id() } -> std::convertible_to<token_id>;
};

/// A model whose trainable tensors an optimizer can walk: a range of parameter_ref.
template <class M>
concept Trainable = requires(M& m) {
  typename M::scalar_type;
  { m.parameters() } -> std::ranges::forward_range;
  requires std::convertible_to<std::ranges::range_value_t<decltype(m.parameters())>,
                               parameter_ref<typename M::scalar_type>>;
};

/// A causal language model: logits for every position, and their backward.
///   forward(batch, logits)  — logits (B, T, V): position t predicts token t + 1;
///   backward(dlogits)       — accumulates parameter gradients from dlogits (B, T, V) of the
///                             last forward.
template <class M>
concept CausalLM =
    Trainable<M> && requires(M& m, const token_batch& batch, cube_view<typename M::scalar_type> logits,
                             cube_view<const typename M::scalar_type> dlogits) {
      { m.vocab_size() } -> std::convertible_to<std::ptrdiff_t>;
      { m.forward(batch, logits) } -> std::same_as<void>;
      { m.backward(dlogits) } -> std::same_as<void>;
    };

/// Optional CausalLM capability: the final hidden states and the unembedding, so the library
/// computes log-probs with the fused linear kernel and never materialises (B, T, V) logits.
///   hidden(batch, out)  — out (B, T, D);
///   unembedding()       — W (V, D), logits = hidden · Wᵀ;
///   backward_hidden(dhidden, dunembedding) — dhidden (B, T, D); dW (V, D) accumulated.
template <class M>
concept FusedLogProbs =
    CausalLM<M> && requires(M& m, const token_batch& batch, cube_view<typename M::scalar_type> hidden,
                            cube_view<const typename M::scalar_type> dhidden,
                            matrix_view<const typename M::scalar_type> dunembedding) {
      { m.hidden(batch, hidden) } -> std::same_as<void>;
      { m.unembedding() } -> std::convertible_to<matrix_view<const typename M::scalar_type>>;
      { m.backward_hidden(dhidden, dunembedding) } -> std::same_as<void>;
    };

/// Sampling settings shared by every Policy (the library's samplers implement them).
struct generation_options {
  int max_new_tokens = 64;
  double temperature = 1.0;  ///< logits are divided by it before sampling and scoring
  int top_k = 0;             ///< 0 = off
  double top_p = 1.0;        ///< 1 = off (nucleus sampling)
  bool greedy = false;
  std::vector<token_id> stop_tokens{};
  std::uint64_t seed = 0;  ///< sequence b draws from stream b of this seed
};

/// A CausalLM that generates: prefill + incremental decode with a KV cache.
/// `generate(prompts, options)` returns a result with, in the layout the RL components take:
///   tokens (B, T_resp), logp (B, T_resp) — the sampling log-probs, mask (B, T_resp),
///   end_index (B) — the last response token (the stop token when one was produced).
template <class P>
concept Policy = CausalLM<P> && requires(P& p, const token_batch& prompts, const generation_options& options) {
  p.generate(prompts, options).tokens;
  p.generate(prompts, options).logp;
  p.generate(prompts, options).mask;
  p.generate(prompts, options).end_index;
};

/// A value function: one value per position, and its backward.
///   values(batch, out)       — out (B, T);
///   backward_values(dvalues) — accumulates parameter gradients from dvalues (B, T).
template <class M>
concept ValueModel =
    Trainable<M> && requires(M& m, const token_batch& batch, matrix_view<typename M::scalar_type> out,
                             matrix_view<const typename M::scalar_type> dvalues) {
      { m.values(batch, out) } -> std::same_as<void>;
      { m.backward_values(dvalues) } -> std::same_as<void>;
    };

/// A reward model: one scalar per sequence, read at an explicit end index (never by searching
/// for padding), and its backward for stage-2 training.
///   scores(batch, end_index, out)  — end_index (B), out (B);
///   backward_scores(dscores)       — accumulates parameter gradients from dscores (B).
template <class M>
concept RewardModel =
    Trainable<M> && requires(M& m, const token_batch& batch, vector_view<const std::ptrdiff_t> end_index,
                             vector_view<typename M::scalar_type> out,
                             vector_view<const typename M::scalar_type> dscores) {
      { m.scores(batch, end_index, out) } -> std::same_as<void>;
      { m.backward_scores(dscores) } -> std::same_as<void>;
    };

/// An optimizer over a Trainable model's parameters.
///   step(params)    — one update from the accumulated gradients;
///   zero_grad(params) — clears them;
///   learning_rate() — the rate the next step uses (after the schedule).
template <class O, class M>
concept Optimizer = Trainable<M> && requires(O& o, M& m) {
  { o.step(m.parameters()) } -> std::same_as<void>;
  { o.zero_grad(m.parameters()) } -> std::same_as<void>;
  { o.learning_rate() } -> std::convertible_to<double>;
};

}  // namespace rlhf
