// rlhf/tokenizer/bpe_merge_learner.hpp — the merge-learning core of the byte-level BPE trainer
// (private; use <rlhf/tokenizer/trainer.hpp>).
//
// Input: distinct words (byte strings) with their counts. Output: the merges, in order.
// Algorithm (the one of Hugging Face's BpeTrainer, with byte ids 0..255 as the alphabet):
//   - every word is a sequence of symbol ids, initially its bytes;
//   - pair counts are summed over words weighted by the word's count;
//   - repeatedly take the pair with the highest count — ties: the smaller (left id, right id)
//     pair — create the token left+right with the next id, replace every non-overlapping
//     occurrence left to right in each word, and update the counts incrementally;
//   - two different pairs can spell the same bytes ((a, bc) and (ab, c)): the second merge reuses
//     the token's id, as Hugging Face's trainer does, so there can be more merges than new tokens;
//   - stop when there are `max_tokens` tokens or when the best count is below `min_frequency`.
// A max-heap with lazy invalidation holds the candidates: an entry whose count is stale is
// pushed again with the current count when it reaches the top (counts only fall, except for the
// pairs created by the merge, which are pushed after it). Each pair keeps the list of words it
// occurs in (stale entries are skipped), so a merge touches only those words.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace rlhf::detail {

struct bpe_learned_merge {
  std::int32_t left;
  std::int32_t right;
  std::int32_t result;  ///< id of the merged token (an existing id when its bytes already were a token)
  std::uint64_t count;  ///< weighted occurrences when it was merged
};

class bpe_merge_learner {
 public:
  /// `words`: distinct byte strings and their counts (order irrelevant to the result).
  explicit bpe_merge_learner(const std::vector<std::pair<std::string, std::uint64_t>>& words) {
    for (int b = 0; b < 256; ++b) {
      tokens_.emplace_back(1, static_cast<char>(b));
      ids_.emplace(tokens_.back(), b);
    }
    words_.reserve(words.size());
    counts_.reserve(words.size());
    for (const auto& [text, count] : words) {
      if (text.size() < 2 || count == 0) continue;  // single bytes hold no pair
      std::vector<std::int32_t> symbols(text.size());
      for (std::size_t i = 0; i < text.size(); ++i)
        symbols[i] = static_cast<std::int32_t>(static_cast<unsigned char>(text[i]));
      words_.push_back(std::move(symbols));
      counts_.push_back(count);
    }
    visited_.assign(words_.size(), 0);
    for (std::uint32_t w = 0; w < words_.size(); ++w) {
      const auto& s = words_[w];
      for (std::size_t i = 0; i + 1 < s.size(); ++i) add(key(s[i], s[i + 1]), counts_[w], w);
    }
    for (const auto& [k, info] : pairs_)
      if (info.count > 0) heap_.push({info.count, k});
  }

  [[nodiscard]] const std::vector<std::string>& tokens() const noexcept { return tokens_; }

  /// Learns merges until there are `max_tokens` tokens (the 256 bytes included); new tokens get
  /// ids 256, 257, ... in creation order.
  std::vector<bpe_learned_merge> learn(std::size_t max_tokens, std::uint64_t min_frequency) {
    std::vector<bpe_learned_merge> merges;
    if (min_frequency == 0) min_frequency = 1;
    std::vector<std::uint64_t> created;
    while (tokens_.size() < max_tokens && !heap_.empty()) {
      const entry top = heap_.top();
      heap_.pop();
      const auto it = pairs_.find(top.pair);
      const std::uint64_t current = it == pairs_.end() ? 0 : it->second.count;
      if (current != top.count) {  // stale: requeue with the current count
        if (current > 0) heap_.push({current, top.pair});
        continue;
      }
      if (current < min_frequency) break;
      const auto left = static_cast<std::int32_t>(top.pair >> 32);
      const auto right = static_cast<std::int32_t>(top.pair & 0xffffffffu);
      std::string bytes = tokens_[static_cast<std::size_t>(left)] + tokens_[static_cast<std::size_t>(right)];
      std::int32_t id;
      if (const auto known = ids_.find(bytes); known != ids_.end()) {
        id = known->second;
      } else {
        id = static_cast<std::int32_t>(tokens_.size());
        ids_.emplace(bytes, id);
        tokens_.push_back(std::move(bytes));
      }
      merges.push_back({left, right, id, current});
      created.clear();
      ++stamp_;
      std::vector<std::uint32_t> where = std::move(it->second.words);
      it->second.words.clear();
      for (const std::uint32_t w : where) {
        if (visited_[w] == stamp_) continue;
        visited_[w] = stamp_;
        merge_in_word(w, left, right, id, created);
      }
      pairs_.erase(top.pair);
      std::sort(created.begin(), created.end());
      created.erase(std::unique(created.begin(), created.end()), created.end());
      for (const std::uint64_t k : created) {
        const auto c = pairs_.find(k);
        if (c != pairs_.end() && c->second.count > 0) heap_.push({c->second.count, k});
      }
    }
    return merges;
  }

 private:
  struct pair_info {
    std::uint64_t count = 0;
    std::vector<std::uint32_t> words;  // may hold stale or repeated entries
  };
  struct entry {
    std::uint64_t count;
    std::uint64_t pair;
    // Max-heap order: higher count first; on equal counts the smaller (left, right) pair first.
    friend bool operator<(const entry& a, const entry& b) noexcept {
      if (a.count != b.count) return a.count < b.count;
      return a.pair > b.pair;
    }
  };

  static std::uint64_t key(std::int32_t l, std::int32_t r) noexcept {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(l)) << 32) |
           static_cast<std::uint32_t>(r);
  }
  void add(std::uint64_t k, std::uint64_t n, std::uint32_t w) {
    auto& info = pairs_[k];
    info.count += n;
    if (info.words.empty() || info.words.back() != w) info.words.push_back(w);
  }
  void sub(std::uint64_t k, std::uint64_t n) {
    const auto it = pairs_.find(k);
    if (it != pairs_.end()) it->second.count -= std::min(n, it->second.count);
  }

  void merge_in_word(std::uint32_t w, std::int32_t a, std::int32_t b, std::int32_t id,
                     std::vector<std::uint64_t>& created) {
    auto& s = words_[w];
    const std::uint64_t n = counts_[w];
    std::size_t out = 0;
    std::size_t i = 0;
    bool changed = false;
    while (i < s.size()) {
      if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
        changed = true;
        if (out > 0) {
          sub(key(s[out - 1], a), n);
          add(key(s[out - 1], id), n, w);
          created.push_back(key(s[out - 1], id));
        }
        if (i + 2 < s.size()) {
          sub(key(b, s[i + 2]), n);
          add(key(id, s[i + 2]), n, w);
          created.push_back(key(id, s[i + 2]));
        }
        s[out++] = id;
        i += 2;
      } else {
        s[out++] = s[i++];
      }
    }
    if (changed) s.resize(out);
  }

  std::vector<std::string> tokens_;  // bytes by id
  std::unordered_map<std::string, std::int32_t> ids_;
  std::vector<std::vector<std::int32_t>> words_;
  std::vector<std::uint64_t> counts_;
  std::vector<std::uint32_t> visited_;
  std::uint32_t stamp_ = 0;
  std::unordered_map<std::uint64_t, pair_info> pairs_;
  std::priority_queue<entry> heap_;
};

}  // namespace rlhf::detail
