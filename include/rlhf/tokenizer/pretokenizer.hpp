// rlhf/tokenizer/pretokenizer.hpp — splits text into the pieces byte-level BPE encodes one by one.
//
// The three patterns of the OpenAI encodings run on a hand-written scanner (no regex engine):
//   gpt2    r50k_base, p50k_base, GPT-2 and Hugging Face ByteLevel(use_regex=true)
//   cl100k  cl100k_base
//   o200k   o200k_base
// Any other pattern runs on PCRE2 (rlhf::regex); without PCRE2 it is an error.
//
// Semantics (those of tiktoken's fancy-regex and Hugging Face's Oniguruma on these patterns):
// leftmost-first alternation, each search starting where the previous match ended, `\s` =
// Unicode White_Space, `\p{L}`/`\p{N}`/`\p{Lu}`... = General_Category from the generated tables
// (unicode_tables.hpp), `$` = end of text, `(?i:'s...)` ASCII case-insensitive plus U+017F for
// `s`. Pieces always concatenate to the input: bytes no match covers (possible only with a custom
// pattern) are emitted as one piece per gap, as Hugging Face's Split(behavior=Isolated) does
// (tiktoken drops them). Invalid UTF-8: see unicode.hpp (each invalid byte is one code point of
// category Cs, so it joins a `[^\s\p{L}\p{N}]` run); the scanner never fails and never reads
// past the input. PCRE2 never matches invalid bytes, so with a custom pattern each maximal run of
// them is its own gap piece.
#pragma once

#include <rlhf/config.hpp>
#include <rlhf/error.hpp>
#include <rlhf/tokenizer/regex.hpp>
#include <rlhf/tokenizer/unicode.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rlhf {

/// Which splitter a pretokenizer runs: one of the built-in scanners, or PCRE2.
enum class pretokenizer_kind { gpt2, cl100k, o200k, regex };

/// The exact pattern strings the built-in scanners reproduce. from_regex() runs the scanner for
/// any of them, and PCRE2 for every other string (even one that differs only in spelling).
struct pretokenizer_patterns {
  /// tiktoken r50k_base / p50k_base (0.8 and later); pretokenizer::gpt2().pattern().
  static constexpr std::string_view gpt2 =
      R"('(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s)";
  /// GPT-2's encoder.py and Hugging Face's ByteLevel pre-tokenizer; same pieces as gpt2.
  static constexpr std::string_view gpt2_original =
      R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
  /// tiktoken r50k_base / p50k_base before 0.8; same pieces as gpt2.
  static constexpr std::string_view gpt2_tiktoken_old =
      R"('(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
  /// tiktoken cl100k_base (0.8 and later); pretokenizer::cl100k().pattern().
  static constexpr std::string_view cl100k =
      R"('(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s)";
  /// The form in Hugging Face tokenizer.json conversions and the npm ports. NOT the same pieces
  /// as cl100k: a whitespace run that ends the text and contains CR/LF is split after its last
  /// CR/LF ("x\n  " -> "x", "\n", "  ") where tiktoken keeps it whole ("x", "\n  ").
  static constexpr std::string_view cl100k_legacy =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  /// tiktoken cl100k_base 0.6-0.7; same pieces as cl100k_legacy.
  static constexpr std::string_view cl100k_tiktoken_old =
      R"('(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+)";
  /// tiktoken o200k_base (its alternatives joined with '|'), also in Hugging Face conversions.
  static constexpr std::string_view o200k =
      R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
};

namespace detail::pretok {

using cc = unicode::char_class;
inline constexpr std::uint8_t lns = cc::letter | cc::number | cc::white_space;

struct cp_info {
  std::uint8_t cls;
  std::uint8_t len;
};

// Class and length of the code point at p (p < e); ASCII through a 128-entry table.
RLHF_ALWAYS_INLINE cp_info peek(const char* p, const char* e) noexcept {
  const auto b = static_cast<unsigned char>(*p);
  if (b < 0x80) return {unicode::detail::class_tables.ascii[b], 1};
  const unicode::decoded d = unicode::decode_utf8(p, e);
  return {unicode::detail::class_tables.by_table_byte[unicode::detail::table_byte(d.code_point)],
          static_cast<std::uint8_t>(d.length)};
}

// End of the run of code points whose classes intersect `mask`.
RLHF_ALWAYS_INLINE const char* run_any(const char* p, const char* e, std::uint8_t mask) noexcept {
  while (p < e) {
    const cp_info c = peek(p, e);
    if ((c.cls & mask) == 0) break;
    p += c.len;
  }
  return p;
}

// End of the run of code points that are neither letters, numbers nor White_Space.
RLHF_ALWAYS_INLINE const char* run_other(const char* p, const char* e) noexcept {
  while (p < e) {
    const cp_info c = peek(p, e);
    if ((c.cls & lns) != 0) break;
    p += c.len;
  }
  return p;
}

// End of at most `limit` consecutive \p{N} code points (p is at one).
RLHF_ALWAYS_INLINE const char* run_numbers(const char* p, const char* e, int limit) noexcept {
  for (int i = 0; i < limit && p < e; ++i) {
    const cp_info c = peek(p, e);
    if ((c.cls & cc::number) == 0) break;
    p += c.len;
  }
  return p;
}

// p at '\'': the end of 's 't 're 've 'm 'll 'd, or nullptr. Case-insensitive: ASCII case and
// U+017F LATIN SMALL LETTER LONG S for s (Unicode simple case folding, as PCRE2 and Rust do).
inline const char* contraction(const char* p, const char* e, bool caseless) noexcept {
  if (e - p < 2) return nullptr;
  auto lower = [caseless](char ch) {
    return caseless && ch >= 'A' && ch <= 'Z' ? static_cast<char>(ch - 'A' + 'a') : ch;
  };
  const char c1 = lower(p[1]);
  if (c1 == 's' || c1 == 'd' || c1 == 'm' || c1 == 't') return p + 2;
  if (caseless && e - p >= 3 && p[1] == '\xC5' && p[2] == '\xBF') return p + 3;  // U+017F
  if (e - p < 3) return nullptr;
  const char c2 = lower(p[2]);
  if ((c1 == 'l' && c2 == 'l') || (c1 == 'v' && c2 == 'e') || (c1 == 'r' && c2 == 'e')) return p + 3;
  return nullptr;
}

// A run of White_Space starting at p: its end, the start of its last code point, and the
// position after its last CR/LF (nullptr when it has none).
struct ws_run {
  const char* end;
  const char* last;
  const char* after_cr_lf;
};
RLHF_ALWAYS_INLINE ws_run scan_white_space(const char* p, const char* e) noexcept {
  ws_run r{p, p, nullptr};
  while (r.end < e) {
    const cp_info c = peek(r.end, e);
    if ((c.cls & cc::white_space) == 0) break;
    r.last = r.end;
    r.end += c.len;
    if (c.cls & cc::cr_lf) r.after_cr_lf = r.end;
  }
  return r;
}

// `\s+(?!\S)|\s+` (and the equivalent `\s++$|\s+(?!\S)|\s`) at a White_Space code point.
RLHF_ALWAYS_INLINE const char* white_space_gpt2(const char* p, const char* e) noexcept {
  const ws_run w = scan_white_space(p, e);
  if (w.end == e) return e;          // the whole run at the end of the text
  if (w.last != p) return w.last;    // all but the last code point, which joins the next piece
  return w.end;                      // a single White_Space code point
}

// gpt2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
inline const char* match_gpt2(const char* p, const char* e) noexcept {
  if (*p == '\'') {
    if (const char* q = contraction(p, e, false)) return q;
  }
  const char* s = p;
  cp_info c = peek(p, e);
  if (*p == ' ' && p + 1 < e) {
    const cp_info n = peek(p + 1, e);
    if ((n.cls & cc::white_space) == 0) {
      s = p + 1;
      c = n;
    }
  }
  if (c.cls & cc::letter) return run_any(s + c.len, e, cc::letter);
  if (c.cls & cc::number) return run_any(s + c.len, e, cc::number);
  if ((c.cls & cc::white_space) == 0) return run_other(s + c.len, e);
  return white_space_gpt2(p, e);
}

// cl100k: '(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+
//         |\s++$|\s*[\r\n]|\s+(?!\S)|\s          (legacy: no \s++$)
inline const char* match_cl100k(const char* p, const char* e, bool legacy) noexcept {
  if (*p == '\'') {
    if (const char* q = contraction(p, e, true)) return q;
  }
  const cp_info c = peek(p, e);
  if (c.cls & cc::letter) return run_any(p + c.len, e, cc::letter);
  if ((c.cls & (cc::letter | cc::number | cc::cr_lf)) == 0 && p + c.len < e) {
    const cp_info n = peek(p + c.len, e);
    if (n.cls & cc::letter) return run_any(p + c.len + n.len, e, cc::letter);
  }
  if (c.cls & cc::number) return run_numbers(p + c.len, e, 2);
  {
    const char* s = p;
    cp_info f = c;
    if (*p == ' ' && p + 1 < e) {
      const cp_info n = peek(p + 1, e);
      if ((n.cls & lns) == 0) {
        s = p + 1;
        f = n;
      }
    }
    if ((f.cls & lns) == 0) {
      const char* q = run_other(s + f.len, e);
      while (q < e && (*q == '\r' || *q == '\n')) ++q;
      return q;
    }
  }
  const ws_run w = scan_white_space(p, e);
  if (!legacy && w.end == e) return e;  // \s++$
  if (w.after_cr_lf) return w.after_cr_lf;  // \s*[\r\n] (and \s*[\r\n]+): up to the last CR/LF
  if (w.end == e) return e;                 // \s+(?!\S) at the end
  if (w.last != p) return w.last;           // \s+(?!\S)
  return w.end;                             // \s
}

// The o200k letter alternatives at s:
//   A  [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+
//   B  [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*
// "upper" run first (greedy); A backtracks into it to the last code point that is also "lower".
struct upper_run {
  const char* start;
  const char* end;            // end of the maximal upper run
  const char* after_both;     // after the last code point of the run that is also lower, or nullptr
  const char* after_lower;    // end of the lower run that follows `end` (== end when none)
};
RLHF_ALWAYS_INLINE upper_run scan_upper(const char* s, const char* e) noexcept {
  upper_run u{s, s, nullptr, s};
  while (u.end < e) {
    const cp_info c = peek(u.end, e);
    if ((c.cls & cc::upper) == 0) break;
    u.end += c.len;
    if (c.cls & cc::lower) u.after_both = u.end;
  }
  u.after_lower = run_any(u.end, e, cc::lower);
  return u;
}
RLHF_ALWAYS_INLINE const char* o200k_a(const upper_run& u) noexcept {
  return u.after_lower != u.end ? u.after_lower : u.after_both;
}
RLHF_ALWAYS_INLINE const char* o200k_b(const upper_run& u) noexcept {
  return u.end != u.start ? u.after_lower : nullptr;
}
RLHF_ALWAYS_INLINE const char* o200k_contraction(const char* q, const char* e) noexcept {
  if (q < e && *q == '\'') {
    if (const char* r = contraction(q, e, true)) return r;
  }
  return q;
}

// o200k: A(?i:'s|...)?|B(?i:'s|...)?, each with an optional [^\r\n\p{L}\p{N}] prefix, then
//        \p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
inline const char* match_o200k(const char* p, const char* e) noexcept {
  const cp_info c = peek(p, e);
  const bool prefix = (c.cls & (cc::letter | cc::number | cc::cr_lf)) == 0 && p + c.len < e;
  const bool self = (c.cls & (cc::upper | cc::lower)) != 0;
  if (prefix || self) {
    upper_run with{}, without{};
    if (prefix) {
      with = scan_upper(p + c.len, e);
      if (const char* q = o200k_a(with)) return o200k_contraction(q, e);
    }
    if (self) {
      without = scan_upper(p, e);
      if (const char* q = o200k_a(without)) return o200k_contraction(q, e);
    }
    if (prefix) {
      if (const char* q = o200k_b(with)) return o200k_contraction(q, e);
    }
    if (self) {
      if (const char* q = o200k_b(without)) return o200k_contraction(q, e);
    }
  }
  if (c.cls & cc::number) return run_numbers(p + c.len, e, 2);
  {
    const char* s = p;
    cp_info f = c;
    if (*p == ' ' && p + 1 < e) {
      const cp_info n = peek(p + 1, e);
      if ((n.cls & lns) == 0) {
        s = p + 1;
        f = n;
      }
    }
    if ((f.cls & lns) == 0) {
      const char* q = run_other(s + f.len, e);
      while (q < e && (*q == '\r' || *q == '\n' || *q == '/')) ++q;
      return q;
    }
  }
  const ws_run w = scan_white_space(p, e);
  if (w.after_cr_lf) return w.after_cr_lf;  // \s*[\r\n]+
  if (w.end == e) return e;                 // \s+(?!\S) at the end
  if (w.last != p) return w.last;           // \s+(?!\S)
  return w.end;                             // \s+ (one code point)
}

enum class scanner : std::uint8_t { gpt2, cl100k, cl100k_legacy, o200k, regex };

}  // namespace detail::pretok

/// Splits text into pre-tokenisation pieces. Cheap to copy (a PCRE2 pattern is shared);
/// split() is const and safe to call from several threads at once.
class pretokenizer {
 public:
  /// r50k_base, p50k_base and GPT-2 (pattern: pretokenizer_patterns::gpt2).
  static pretokenizer gpt2() {
    return pretokenizer(pretokenizer_kind::gpt2, detail::pretok::scanner::gpt2, pretokenizer_patterns::gpt2);
  }
  /// cl100k_base (pattern: pretokenizer_patterns::cl100k).
  static pretokenizer cl100k() {
    return pretokenizer(pretokenizer_kind::cl100k, detail::pretok::scanner::cl100k, pretokenizer_patterns::cl100k);
  }
  /// o200k_base (pattern: pretokenizer_patterns::o200k).
  static pretokenizer o200k() {
    return pretokenizer(pretokenizer_kind::o200k, detail::pretok::scanner::o200k, pretokenizer_patterns::o200k);
  }

  /// Any pattern. The exact strings listed in pretokenizer_patterns run on the scanner (kind()
  /// gpt2, cl100k or o200k; the legacy cl100k forms keep their own trailing-whitespace rule);
  /// every other string is compiled by PCRE2 (kind() regex). Throws rlhf::invalid_argument when
  /// PCRE2 rejects the pattern, rlhf::error when the library was built without PCRE2.
  static pretokenizer from_regex(std::string_view pattern, const regex_options& options = {}) {
    using P = pretokenizer_patterns;
    using S = detail::pretok::scanner;
    if (pattern == P::gpt2 || pattern == P::gpt2_original || pattern == P::gpt2_tiktoken_old)
      return pretokenizer(pretokenizer_kind::gpt2, S::gpt2, pattern);
    if (pattern == P::cl100k) return pretokenizer(pretokenizer_kind::cl100k, S::cl100k, pattern);
    if (pattern == P::cl100k_legacy || pattern == P::cl100k_tiktoken_old)
      return pretokenizer(pretokenizer_kind::cl100k, S::cl100k_legacy, pattern);
    if (pattern == P::o200k) return pretokenizer(pretokenizer_kind::o200k, S::o200k, pattern);
    return regex_only(pattern, options);
  }

  /// Always PCRE2, even for the built-in patterns (the reference the scanner is tested against).
  static pretokenizer regex_only(std::string_view pattern, const regex_options& options = {}) {
    pretokenizer t(pretokenizer_kind::regex, detail::pretok::scanner::regex, pattern);
    t.regex_ = std::make_shared<const rlhf::regex>(pattern, options);
    return t;
  }

  [[nodiscard]] pretokenizer_kind kind() const noexcept { return kind_; }
  /// The pattern string this pretokenizer reproduces (as given to from_regex()).
  [[nodiscard]] const std::string& pattern() const noexcept { return pattern_; }

  /// Calls on_piece(std::string_view) for each piece, in order. The pieces are non-empty and
  /// concatenate to `text` exactly. Built-in kinds never throw; kind() regex throws rlhf::error
  /// when PCRE2 hits its match or depth limit (the message names the input offset).
  template <class F>
  void split(std::string_view text, F&& on_piece) const {
    namespace pt = detail::pretok;
    const char* p = text.data();
    const char* const e = p + text.size();
    switch (scanner_) {
      case pt::scanner::gpt2:
        while (p < e) {
          const char* q = pt::match_gpt2(p, e);
          on_piece(std::string_view(p, static_cast<std::size_t>(q - p)));
          p = q;
        }
        return;
      case pt::scanner::cl100k:
      case pt::scanner::cl100k_legacy: {
        const bool legacy = scanner_ == pt::scanner::cl100k_legacy;
        while (p < e) {
          const char* q = pt::match_cl100k(p, e, legacy);
          on_piece(std::string_view(p, static_cast<std::size_t>(q - p)));
          p = q;
        }
        return;
      }
      case pt::scanner::o200k:
        while (p < e) {
          const char* q = pt::match_o200k(p, e);
          on_piece(std::string_view(p, static_cast<std::size_t>(q - p)));
          p = q;
        }
        return;
      case pt::scanner::regex: {
        std::size_t done = 0;
        regex_->for_each_match(text, [&](regex_match m) {
          if (m.begin > done) on_piece(text.substr(done, m.begin - done));  // a gap
          on_piece(text.substr(m.begin, m.end - m.begin));
          done = m.end;
        });
        if (done < text.size()) on_piece(text.substr(done));
        return;
      }
    }
  }

  /// The pieces as views into `text`.
  [[nodiscard]] std::vector<std::string_view> split(std::string_view text) const {
    std::vector<std::string_view> pieces;
    pieces.reserve(text.size() / 4 + 1);
    split(text, [&pieces](std::string_view piece) { pieces.push_back(piece); });
    return pieces;
  }

 private:
  pretokenizer(pretokenizer_kind kind, detail::pretok::scanner scanner, std::string_view pattern)
      : kind_(kind), scanner_(scanner), pattern_(pattern) {}

  pretokenizer_kind kind_;
  detail::pretok::scanner scanner_;
  std::string pattern_;
  std::shared_ptr<const rlhf::regex> regex_;
};

}  // namespace rlhf
