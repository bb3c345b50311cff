// rlhf/tokenizer/trainer.hpp — learns a byte-level BPE vocabulary from text.
//
//   rlhf::bpe_trainer trainer(rlhf::pretokenizer::gpt2(), {"<|endoftext|>"});
//   trainer.add_text(corpus);                        // any number of calls
//   rlhf::bpe_vocabulary v = trainer.train({.vocab_size = 4096, .min_frequency = 2});
//   rlhf::bpe_tokenizer tok = v.tokenizer();         // tiktoken's rule over the learned ranks
//   std::string tiktoken = v.to_tiktoken();          // `.tiktoken` rank file
//   std::string json = v.to_hf_json();               // Hugging Face tokenizer.json
//
// Training (the algorithm of Hugging Face's BpeTrainer over a byte alphabet):
//   1. the text is cut at the special tokens (they are never part of a word), the rest is split
//      by the pre-tokenizer; equal pieces ("words") are counted once with their multiplicity;
//   2. every word starts as its bytes; ids 0..255 are the single bytes, in byte order;
//   3. repeatedly the adjacent pair with the highest count (summed over words, weighted by the
//      word's count) becomes a new token with the next id. Ties: the pair with the smaller
//      (left id, right id) — Hugging Face's rule, which compares the pair of ids; with bytes as
//      ids 0..255 and merged tokens numbered in creation order this is deterministic and
//      independent of the order in which text was added;
//   4. it stops when the vocabulary (256 bytes + merges + special tokens) reaches `vocab_size`,
//      or when the best pair occurs fewer than `min_frequency` times.
// Counts are updated incrementally: each pair knows the words it occurs in, and a max-heap with
// lazy invalidation yields the best pair (about 1 s for an 8k vocabulary on 1 MB of English on
// one core).
//
// Differences from Hugging Face's BpeTrainer: special tokens get the ids after the merged tokens
// (Hugging Face puts them first), so that ids 0..N-1 are ranks as in a `.tiktoken` file; the
// alphabet is always the 256 bytes; merges never cross pieces, as in Hugging Face.
//
// The saved files encode identically: `.tiktoken` uses tiktoken's rank rule; tokenizer.json
// lists every split of every token as a merge, ordered by (rank of the token, rank of the left,
// rank of the right), with ignore_merges, which reproduces the rank rule under Hugging Face's
// pair rule (the recipe of transformers' TikTokenConverter).
#pragma once

#include <rlhf/concepts.hpp>
#include <rlhf/config.hpp>
#include <rlhf/detail/checks.hpp>
#include <rlhf/error.hpp>
#include <rlhf/tokenizer.hpp>
#include <rlhf/tokenizer/bpe_merge_learner.hpp>
#include <rlhf/tokenizer/pretokenizer.hpp>
#include <rlhf/tokenizer/tiktoken_file.hpp>
#include <rlhf/tokenizer/vocabulary.hpp>

#if __has_include(<nlohmann/json.hpp>)
#include <rlhf/tokenizer/hf_json.hpp>
#define RLHF_TOKENIZER_HAS_HF_JSON 1
#endif

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace rlhf {

namespace detail {
/// Standard base64 with padding, appended to `out`.
inline void append_base64(std::string_view bytes, std::string& out) {
  static constexpr char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::size_t i = 0;
  const auto at = [&](std::size_t k) { return static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[k])); };
  for (; i + 3 <= bytes.size(); i += 3) {
    const std::uint32_t v = (at(i) << 16) | (at(i + 1) << 8) | at(i + 2);
    out += digits[v >> 18];
    out += digits[(v >> 12) & 63];
    out += digits[(v >> 6) & 63];
    out += digits[v & 63];
  }
  if (const std::size_t rest = bytes.size() - i; rest > 0) {
    const std::uint32_t v = (at(i) << 16) | (rest == 2 ? at(i + 1) << 8 : 0u);
    out += digits[v >> 18];
    out += digits[(v >> 12) & 63];
    out += rest == 2 ? digits[(v >> 6) & 63] : '=';
    out += '=';
  }
}
}  // namespace detail

struct bpe_trainer_options {
  /// Target vocabulary size: 256 single bytes + merges + special tokens (at least 256 + the
  /// number of special tokens).
  std::size_t vocab_size = 4096;
  /// A pair seen fewer times than this (weighted by word counts) is never merged (Hugging Face's
  /// default is 0, i.e. merge while any pair is left; 2 avoids tokens seen once).
  std::uint64_t min_frequency = 2;
};

/// A trained vocabulary: ids 0..255 are the single bytes, then the merged tokens in creation
/// order, then the special tokens.
struct bpe_vocabulary {
  /// Token bytes by id: the 256 bytes and the merged tokens (not the special tokens).
  std::vector<std::string> tokens;
  /// The merges in the order they were learned: (left id, right id). Usually merges[i] made
  /// token 256 + i; when two pairs spell the same bytes the later merge reuses the token (as in
  /// Hugging Face's trainer), so there may be more merges than tokens above 255.
  std::vector<bpe_merge> merges;
  /// Special tokens with ids tokens.size() + k.
  std::vector<special_token> specials;
  /// The pre-tokenisation pattern the vocabulary was trained with.
  std::string pattern;

  /// The token table (ranks = ids) of the mergeable tokens.
  [[nodiscard]] token_table table() const {
    token_table t(tokens.size());
    for (std::size_t i = 0; i < tokens.size(); ++i) (void)t.insert(tokens[i], static_cast<token_id>(i));
    return t;
  }
  /// A tokenizer with tiktoken's rank rule (what a `.tiktoken` file of these tokens gives).
  [[nodiscard]] bpe_tokenizer tokenizer() const {
    return bpe_tokenizer::from_ranks(table(), pretokenizer::from_regex(pattern), specials);
  }
  /// The `.tiktoken` file: `base64(bytes) rank` per line, rank order. Special tokens are not in
  /// it (as in OpenAI's files): pass `specials` to bpe_tokenizer::from_tiktoken.
  [[nodiscard]] std::string to_tiktoken() const {
    std::string out;
    out.reserve(tokens.size() * 12);
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      detail::append_base64(tokens[i], out);
      out += ' ';
      out += std::to_string(i);
      out += '\n';
    }
    return out;
  }
#if defined(RLHF_TOKENIZER_HAS_HF_JSON)
  /// A Hugging Face tokenizer.json (see the file comment): loads in rlhf::hf_tokenizer and in
  /// Hugging Face `tokenizers`, with the same ids as tokenizer() for text without special tokens
  /// (special tokens are added tokens there: always matched). Needs nlohmann-json.
  [[nodiscard]] std::string to_hf_json() const {
    const token_table t = table();
    std::vector<hf_added_token> added;
    for (const auto& s : specials) added.push_back({.id = s.id, .content = s.text, .normalized = false, .special = true});
    return save_hf_json(t, merges_from_ranks(t), added, {.pattern = pattern, .ignore_merges = true});
  }
#endif
};

/// Collects word counts from text, then learns merges. See the file comment.
class bpe_trainer {
 public:
  explicit bpe_trainer(pretokenizer pre, std::vector<std::string> special_tokens = {})
      : pre_(std::move(pre)), specials_(std::move(special_tokens)) {
    for (std::size_t i = 0; i < specials_.size(); ++i) {
      if (specials_[i].empty()) detail::fail("rlhf::bpe_trainer::bpe_trainer()", "special token " + std::to_string(i) + " is empty");
      for (std::size_t j = 0; j < i; ++j)
        if (specials_[j] == specials_[i])
          detail::fail("rlhf::bpe_trainer::bpe_trainer()", "special token \"" + specials_[i] + "\" is listed twice");
    }
  }

  /// Counts the words of `text` (special tokens are cut out first).
  void add_text(std::string_view text) {
    std::size_t start = 0;
    while (start < text.size()) {
      std::size_t best = text.size(), best_len = 0;
      for (const auto& s : specials_) {
        const std::size_t p = text.find(s, start);
        if (p < best || (p == best && p != std::string_view::npos && s.size() > best_len)) {
          best = p;
          best_len = s.size();
        }
      }
      add_ordinary(text.substr(start, best - start));
      if (best >= text.size()) break;
      start = best + best_len;
    }
  }

  /// Counts one already pre-tokenised piece `count` times.
  void add_word(std::string_view word, std::uint64_t count = 1) {
    if (word.empty() || count == 0) return;
    words_[std::string(word)] += count;
  }

  /// Distinct words seen so far.
  [[nodiscard]] std::size_t distinct_words() const noexcept { return words_.size(); }

  /// Learns the vocabulary. Deterministic: the result depends only on the word counts.
  [[nodiscard]] bpe_vocabulary train(const bpe_trainer_options& options = {}) const {
    constexpr const char* function = "rlhf::bpe_trainer::train()";
    const std::size_t floor = 256 + specials_.size();
    if (options.vocab_size < floor)
      detail::fail(function, "vocab_size is " + std::to_string(options.vocab_size) + " but must be at least 256 + " +
                                 std::to_string(specials_.size()) + " special tokens = " + std::to_string(floor));
    if (options.vocab_size > static_cast<std::size_t>(token_table::max_id))
      detail::fail(function, "vocab_size is " + std::to_string(options.vocab_size) + ", above the largest id " +
                                 std::to_string(token_table::max_id));
    std::vector<std::pair<std::string, std::uint64_t>> words(words_.begin(), words_.end());
    detail::bpe_merge_learner learner(words);
    const auto learned = learner.learn(options.vocab_size - specials_.size(), options.min_frequency);

    bpe_vocabulary v;
    v.pattern = pre_.pattern();
    v.tokens = learner.tokens();
    v.merges.reserve(learned.size());
    for (const auto& m : learned) v.merges.push_back({m.left, m.right});
    for (std::size_t k = 0; k < specials_.size(); ++k)
      v.specials.push_back({specials_[k], static_cast<token_id>(v.tokens.size() + k)});
    return v;
  }

 private:
  void add_ordinary(std::string_view text) {
    if (text.empty()) return;
    pre_.split(text, [&](std::string_view piece) { words_[std::string(piece)] += 1; });
  }

  pretokenizer pre_;
  std::vector<std::string> specials_;
  std::unordered_map<std::string, std::uint64_t> words_;
};

}  // namespace rlhf
