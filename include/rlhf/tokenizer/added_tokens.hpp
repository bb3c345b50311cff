// rlhf/tokenizer/added_tokens.hpp — Hugging Face "added tokens": strings split out of the text
// before pre-tokenisation, each encoded as one id.
//
// Matching reproduces Hugging Face tokenizers' AddedVocabulary:
//   - two passes: first the tokens with `normalized: false` over the whole text, then the tokens
//     with `normalized: true` over each part left between matches (no normalizer is supported,
//     so both passes see the raw text; only the order differs);
//   - in each pass, non-overlapping leftmost-longest matches, scanned left to right; a match that
//     a flag rejects still consumes its text (the scan resumes after it, as Aho-Corasick does);
//   - single_word: the match counts only when the character before it is not a word character
//     (or it starts the text) and the character after it is not one either (or it ends the text);
//     word character = `\w`: letters, marks, decimal digits, letter numbers, connector
//     punctuation, U+200C/U+200D (the Unicode `\w` of Rust's regex crate except Other_Alphabetic
//     symbols such as the circled letters U+24B6..U+24E9);
//   - lstrip: the token also takes the White_Space run just before it (not text an earlier match
//     already took); rstrip: the run just after it. A match that would start inside text an
//     earlier rstrip took is dropped.
// Empty contents are ignored, as in Hugging Face.
#pragma once

#include <rlhf/concepts.hpp>
#include <rlhf/config.hpp>
#include <rlhf/tokenizer/unicode.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rlhf {

/// One entry of `added_tokens` in a tokenizer.json, with its effective id.
struct hf_added_token {
  token_id id = 0;
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;  ///< matched in the second pass (see the file comment)
  bool special = false;    ///< a special token (eos, pad, ...): listed by special_tokens()
};

/// One part of a text after added-token matching: [begin, end) of the text, and the id of the
/// added token it is, or -1 for ordinary text.
struct added_token_part {
  std::size_t begin;
  std::size_t end;
  token_id id;
};

namespace detail {

/// The code point that ends just before `end` (start of text: none). Invalid bytes decode as
/// escaped bytes (never word characters nor White_Space).
inline char32_t code_point_before(std::string_view text, std::size_t end) noexcept {
  std::size_t b = end;
  int back = 0;
  while (b > 0 && back < 4) {
    --b;
    ++back;
    if ((static_cast<unsigned char>(text[b]) & 0xC0) != 0x80) break;
  }
  const auto d = unicode::decode_utf8(text.data() + b, text.data() + end);
  if (b + d.length != end) return unicode::escaped_byte_base + static_cast<unsigned char>(text[end - 1]);
  return d.code_point;
}

/// `\w` of the Unicode regex engines (see the file comment for the one approximation).
inline bool is_word_char(char32_t cp) noexcept {
  if (cp < 0x80) {
    return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || (cp >= '0' && cp <= '9') || cp == '_';
  }
  if (cp == 0x200C || cp == 0x200D) return true;
  using gc = unicode::general_category;
  const gc c = unicode::category(cp);
  return unicode::is_letter(c) || unicode::is_mark(c) || c == gc::Nd || c == gc::Nl || c == gc::Pc;
}

}  // namespace detail

/// Finds added tokens in a text (see the file comment). Immutable after construction.
class added_token_matcher {
 public:
  added_token_matcher() = default;
  explicit added_token_matcher(std::vector<hf_added_token> tokens) : tokens_(std::move(tokens)) {
    for (std::size_t i = 0; i < tokens_.size(); ++i) {
      if (tokens_[i].content.empty()) continue;
      auto& bucket = first_byte_[tokens_[i].normalized ? 1 : 0]
                                [static_cast<unsigned char>(tokens_[i].content[0])];
      bucket.push_back(static_cast<std::uint32_t>(i));
    }
    // Longest first, so the first candidate that matches at a position is the longest.
    for (auto& pass : first_byte_)
      for (auto& bucket : pass)
        std::stable_sort(bucket.begin(), bucket.end(), [&](std::uint32_t a, std::uint32_t b) {
          return tokens_[a].content.size() > tokens_[b].content.size();
        });
  }

  [[nodiscard]] const std::vector<hf_added_token>& tokens() const noexcept { return tokens_; }
  [[nodiscard]] bool empty() const noexcept { return tokens_.empty(); }

  /// Calls on_part(added_token_part) for consecutive parts covering `text` (none when the text
  /// is empty). With `skip_special`, special tokens are found but left as text (Hugging Face's
  /// `encode_special_tokens`: the match still consumes its text, so it can hide an overlapping
  /// non-special token, exactly as there).
  template <class F>
  void split(std::string_view text, F&& on_part, bool skip_special = false) const {
    if (text.empty()) return;
    pass(text, 0, text.size(), 0, skip_special, [&](const added_token_part& p) {
      if (p.id >= 0) {
        on_part(p);
      } else {
        pass(text, p.begin, p.end, 1, skip_special, on_part);
      }
    });
  }

 private:
  // One pass over text[begin, end): matches of the pass's tokens and the gaps between them.
  template <class F>
  void pass(std::string_view whole, std::size_t begin, std::size_t end, int which, bool skip_special, F&& on_part) const {
    const std::string_view text = whole.substr(begin, end - begin);
    const auto& buckets = first_byte_[which];
    bool any = false;
    for (const auto& b : buckets)
      if (!b.empty()) {
        any = true;
        break;
      }
    if (!any) {
      on_part({begin, end, -1});
      return;
    }
    std::size_t start_offset = 0;  // end of the last emitted part, relative to text
    std::size_t i = 0;
    while (i < text.size()) {
      const auto& bucket = buckets[static_cast<unsigned char>(text[i])];
      const hf_added_token* hit = nullptr;
      for (const std::uint32_t k : bucket) {
        const std::string& c = tokens_[k].content;
        if (c.size() <= text.size() - i && text.compare(i, c.size(), c) == 0) {
          hit = &tokens_[k];
          break;
        }
      }
      if (hit == nullptr) {
        ++i;
        continue;
      }
      std::size_t start = i;
      std::size_t stop = i + hit->content.size();
      i = stop;  // the scan resumes after the match, whatever the flags decide
      if (start < start_offset) continue;  // inside text an earlier rstrip took
      if (skip_special && hit->special) continue;
      if (hit->single_word) {
        const bool space_before = start == 0 || !detail::is_word_char(detail::code_point_before(text, start));
        bool space_after = stop == text.size();
        if (!space_after) {
          const auto d = unicode::decode_utf8(text.data() + stop, text.data() + text.size());
          space_after = !detail::is_word_char(d.code_point);
        }
        if (!space_before || !space_after) continue;
      }
      if (hit->lstrip) {
        std::size_t s = start;
        while (s > start_offset) {
          const char32_t cp = detail::code_point_before(text, s);
          if (!unicode::is_white_space(cp)) break;
          std::uint32_t len = 1;
          if (cp >= 0x80 && !unicode::is_escaped_byte(cp)) len = cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
          if (s - start_offset < len) break;
          s -= len;
        }
        start = s;
      }
      if (hit->rstrip) {
        while (stop < text.size()) {
          const auto d = unicode::decode_utf8(text.data() + stop, text.data() + text.size());
          if (!unicode::is_white_space(d.code_point)) break;
          stop += d.length;
        }
      }
      if (start_offset < start) on_part({begin + start_offset, begin + start, -1});
      on_part({begin + start, begin + stop, hit->id});
      start_offset = stop;
    }
    if (start_offset < text.size()) on_part({begin + start_offset, end, -1});
  }

  std::vector<hf_added_token> tokens_;
  std::array<std::array<std::vector<std::uint32_t>, 256>, 2> first_byte_{};
};

}  // namespace rlhf
