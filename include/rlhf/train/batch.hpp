// rlhf/train/batch.hpp — the in-memory examples the trainers read, and the padded batches
// they are collated into.
//
// Examples hold token ids (a tokenizer or a data reader produces them):
//   sft_example      prompt + response (a demonstration); also the demonstrations the reward
//                    normaliser scores
//   ranking_example  prompt + K ≥ 2 completions + their ranks (0 = best; equal = tie; empty =
//                    given best first) + an optional margin (pairwise data: K = 2)
//   token_sequence   one tokenised text (pretraining / ptx data; PPO prompts)
//
// Batches own their tensors and hand models an rlhf::token_batch view:
//   sequence_batch   (B, T) tokens, positions, mask, and target_mask — 1 where tokens(b, t) is a
//                    loss target (predicted by the logits at t − 1); right-padded
//   prompt batch     a sequence_batch, LEFT-padded (positions = cumsum(mask) − 1), so every
//                    prompt ends in the last column and generation continues right after it
//   ranking_batch    the N = Σ K_p sequences prompt ‖ completion (right-padded), end_index (N)
//                    of each completion's last token, offsets (P + 1), ranks (N), margins (P)
#pragma once

#include <rlhf/concepts.hpp>
#include <rlhf/config.hpp>
#include <rlhf/detail/checks.hpp>
#include <rlhf/tensor.hpp>
#include <rlhf/tensor_view.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace rlhf::train {

using token_sequence = std::vector<token_id>;

/// A demonstration: the loss is on the response (or on every token, see sft_loss_tokens).
struct sft_example {
  token_sequence prompt;
  token_sequence response;
};

/// K ≥ 2 completions of one prompt, ranked by a labeler.
struct ranking_example {
  token_sequence prompt;
  std::vector<token_sequence> completions;
  std::vector<std::int32_t> ranks;  ///< (K): 0 = best, equal = tie; empty = completions are best first
  double margin = 0;                ///< pairwise data (K = 2): Llama 2's m(r); used by ranking_loss::pairwise
};

/// Which tokens of a demonstration the SFT loss counts.
enum class sft_loss_tokens {
  response,  ///< the response tokens only (TRL `completion_only_loss`, InstructGPT) — default
  all,       ///< every token after the first (plain language modelling on prompt ‖ response)
};

/// Padded token sequences and which positions are loss targets. All tensors (B, T).
struct sequence_batch {
  tensor<token_id, 2> tokens;
  tensor<token_id, 2> positions;
  tensor<std::uint8_t, 2> mask;         ///< 1 = a real token, 0 = padding
  tensor<std::uint8_t, 2> target_mask;  ///< 1 = tokens(b, t) is a loss target (t ≥ 1)

  /// What models read.
  [[nodiscard]] token_batch view() const { return {tokens.view(), positions.view(), mask.view()}; }
  [[nodiscard]] std::ptrdiff_t rows() const noexcept { return tokens.extent(0); }
  [[nodiscard]] std::ptrdiff_t length() const noexcept { return tokens.extent(1); }
  /// Number of loss targets.
  [[nodiscard]] std::int64_t targets() const noexcept {
    std::int64_t n = 0;
    for (std::ptrdiff_t i = 0; i < target_mask.size(); ++i) n += target_mask.data()[i] != 0;
    return n;
  }
};

/// A K-wise ranking batch, in the layout of rlhf::kwise_ranking_loss.
struct ranking_batch {
  sequence_batch sequences;             ///< (N, T) prompt ‖ completion, right-padded
  tensor<std::ptrdiff_t, 1> end_index;  ///< (N) the last token of each completion
  tensor<std::ptrdiff_t, 1> offsets;    ///< (P + 1) prompt p owns rows [offsets[p], offsets[p+1])
  tensor<std::int32_t, 1> ranks;        ///< (N) 0 = best within its prompt
  std::vector<double> margins;          ///< (P) each example's margin
  [[nodiscard]] std::ptrdiff_t prompts() const noexcept { return offsets.extent(0) - 1; }
};

namespace detail {

inline sequence_batch allocate_sequences(std::ptrdiff_t rows, std::ptrdiff_t length, token_id pad) {
  sequence_batch b{tensor<token_id, 2>(rows, length), tensor<token_id, 2>(rows, length),
                   tensor<std::uint8_t, 2>(rows, length), tensor<std::uint8_t, 2>(rows, length)};
  b.tokens.fill(pad);
  return b;
}

/// Row r = a ‖ b, right-padded: positions 0..n−1; targets from `first_target` on.
inline void put_row(sequence_batch& out, std::ptrdiff_t r, std::span<const token_id> a, std::span<const token_id> b,
                    std::ptrdiff_t first_target) {
  std::ptrdiff_t t = 0;
  for (const auto* part : {&a, &b})
    for (const token_id id : *part) {
      out.tokens(r, t) = id;
      out.positions(r, t) = static_cast<token_id>(t);
      out.mask(r, t) = 1;
      out.target_mask(r, t) = static_cast<std::uint8_t>(t >= first_target && t >= 1);
      ++t;
    }
}

}  // namespace detail

/// Right-padded prompt ‖ response rows; target_mask per `loss_on`. Throws rlhf::invalid_argument
/// for an empty batch, an empty response, or (loss_on = all) a demonstration of one token.
inline sequence_batch make_sft_batch(std::span<const sft_example* const> examples, token_id pad,
                                     sft_loss_tokens loss_on = sft_loss_tokens::response) {
  constexpr const char* function = "rlhf::train::make_sft_batch()";
  ::rlhf::detail::require(!examples.empty(), function, "the batch has no examples");
  std::ptrdiff_t length = 0;
  for (std::size_t i = 0; i < examples.size(); ++i) {
    const auto& e = *examples[i];
    ::rlhf::detail::require(!e.response.empty(), function,
                            "example " + std::to_string(i) + " has an empty response");
    const auto n = static_cast<std::ptrdiff_t>(e.prompt.size() + e.response.size());
    ::rlhf::detail::require(n >= 2, function,
                            "example " + std::to_string(i) + " has " + std::to_string(n) +
                                " token(s); a loss target needs at least 2");
    length = std::max(length, n);
  }
  auto out = detail::allocate_sequences(static_cast<std::ptrdiff_t>(examples.size()), length, pad);
  for (std::size_t i = 0; i < examples.size(); ++i) {
    const auto& e = *examples[i];
    const std::ptrdiff_t first = loss_on == sft_loss_tokens::response ? static_cast<std::ptrdiff_t>(e.prompt.size()) : 1;
    detail::put_row(out, static_cast<std::ptrdiff_t>(i), e.prompt, e.response, first);
  }
  return out;
}

inline sequence_batch make_sft_batch(std::span<const sft_example> examples, token_id pad,
                                     sft_loss_tokens loss_on = sft_loss_tokens::response) {
  std::vector<const sft_example*> p;
  for (const auto& e : examples) p.push_back(&e);
  return make_sft_batch(std::span<const sft_example* const>(p), pad, loss_on);
}

/// Right-padded texts for language modelling (ptx): every token after the first is a target.
inline sequence_batch make_lm_batch(std::span<const token_sequence* const> texts, token_id pad) {
  constexpr const char* function = "rlhf::train::make_lm_batch()";
  ::rlhf::detail::require(!texts.empty(), function, "the batch has no texts");
  std::ptrdiff_t length = 0;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    ::rlhf::detail::require(texts[i]->size() >= 2, function,
                            "text " + std::to_string(i) + " has " + std::to_string(texts[i]->size()) +
                                " token(s); a loss target needs at least 2");
    length = std::max(length, static_cast<std::ptrdiff_t>(texts[i]->size()));
  }
  auto out = detail::allocate_sequences(static_cast<std::ptrdiff_t>(texts.size()), length, pad);
  for (std::size_t i = 0; i < texts.size(); ++i)
    detail::put_row(out, static_cast<std::ptrdiff_t>(i), *texts[i], {}, 1);
  return out;
}

inline sequence_batch make_lm_batch(std::span<const token_sequence> texts, token_id pad) {
  std::vector<const token_sequence*> p;
  for (const auto& t : texts) p.push_back(&t);
  return make_lm_batch(std::span<const token_sequence* const>(p), pad);
}

/// LEFT-padded prompts (what Policy::generate continues): positions cumsum(mask) − 1 on real
/// tokens, 0 on padding; no targets. Throws rlhf::invalid_argument for an empty prompt.
inline sequence_batch make_prompt_batch(std::span<const token_sequence* const> prompts, token_id pad) {
  constexpr const char* function = "rlhf::train::make_prompt_batch()";
  ::rlhf::detail::require(!prompts.empty(), function, "the batch has no prompts");
  std::ptrdiff_t length = 0;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    ::rlhf::detail::require(!prompts[i]->empty(), function, "prompt " + std::to_string(i) + " is empty");
    length = std::max(length, static_cast<std::ptrdiff_t>(prompts[i]->size()));
  }
  auto out = detail::allocate_sequences(static_cast<std::ptrdiff_t>(prompts.size()), length, pad);
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    const auto& p = *prompts[i];
    const std::ptrdiff_t start = length - static_cast<std::ptrdiff_t>(p.size());
    for (std::size_t j = 0; j < p.size(); ++j) {
      const auto t = start + static_cast<std::ptrdiff_t>(j);
      out.tokens(static_cast<std::ptrdiff_t>(i), t) = p[j];
      out.positions(static_cast<std::ptrdiff_t>(i), t) = static_cast<token_id>(j);
      out.mask(static_cast<std::ptrdiff_t>(i), t) = 1;
    }
  }
  return out;
}

inline sequence_batch make_prompt_batch(std::span<const token_sequence> prompts, token_id pad) {
  std::vector<const token_sequence*> p;
  for (const auto& t : prompts) p.push_back(&t);
  return make_prompt_batch(std::span<const token_sequence* const>(p), pad);
}

/// All completions of the given rankings as one batch. Throws rlhf::invalid_argument for K < 2,
/// an empty completion, or ranks of the wrong size or negative.
inline ranking_batch make_ranking_batch(std::span<const ranking_example* const> examples, token_id pad) {
  constexpr const char* function = "rlhf::train::make_ranking_batch()";
  ::rlhf::detail::require(!examples.empty(), function, "the batch has no rankings");
  std::ptrdiff_t rows = 0, length = 0;
  for (std::size_t i = 0; i < examples.size(); ++i) {
    const auto& e = *examples[i];
    const auto k = e.completions.size();
    ::rlhf::detail::require(k >= 2, function,
                            "ranking " + std::to_string(i) + " has " + std::to_string(k) +
                                " completion(s) but needs at least 2");
    ::rlhf::detail::require(e.ranks.empty() || e.ranks.size() == k, function,
                            "ranking " + std::to_string(i) + " has " + std::to_string(e.ranks.size()) +
                                " ranks for " + std::to_string(k) + " completions");
    for (std::size_t j = 0; j < k; ++j) {
      ::rlhf::detail::require(!e.completions[j].empty(), function,
                              "ranking " + std::to_string(i) + ": completion " + std::to_string(j) + " is empty");
      if (!e.ranks.empty())
        ::rlhf::detail::require(e.ranks[j] >= 0, function,
                                "ranking " + std::to_string(i) + ": ranks[" + std::to_string(j) +
                                    "] = " + std::to_string(e.ranks[j]) + " is negative");
      length = std::max(length, static_cast<std::ptrdiff_t>(e.prompt.size() + e.completions[j].size()));
    }
    rows += static_cast<std::ptrdiff_t>(k);
  }
  ranking_batch out{detail::allocate_sequences(rows, length, pad), tensor<std::ptrdiff_t, 1>(rows),
                    tensor<std::ptrdiff_t, 1>(static_cast<std::ptrdiff_t>(examples.size()) + 1),
                    tensor<std::int32_t, 1>(rows), {}};
  std::ptrdiff_t r = 0;
  for (std::size_t i = 0; i < examples.size(); ++i) {
    const auto& e = *examples[i];
    out.offsets(static_cast<std::ptrdiff_t>(i)) = r;
    out.margins.push_back(e.margin);
    for (std::size_t j = 0; j < e.completions.size(); ++j, ++r) {
      detail::put_row(out.sequences, r, e.prompt, e.completions[j], static_cast<std::ptrdiff_t>(e.prompt.size()));
      out.end_index(r) = static_cast<std::ptrdiff_t>(e.prompt.size() + e.completions[j].size()) - 1;
      out.ranks(r) = e.ranks.empty() ? static_cast<std::int32_t>(j) : e.ranks[j];
    }
  }
  out.offsets(static_cast<std::ptrdiff_t>(examples.size())) = r;
  return out;
}

inline ranking_batch make_ranking_batch(std::span<const ranking_example> examples, token_id pad) {
  std::vector<const ranking_example*> p;
  for (const auto& e : examples) p.push_back(&e);
  return make_ranking_batch(std::span<const ranking_example* const>(p), pad);
}

}  // namespace rlhf::train
