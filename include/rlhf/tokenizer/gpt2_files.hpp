// rlhf/tokenizer/gpt2_files.hpp — GPT-2's `encoder.json` + `vocab.bpe` ("data gym" format).
//
// `vocab.bpe` is a `#version: 0.2` line and then one merge `A B` per line in priority order;
// `encoder.json` maps each token to its id. Both spell token bytes with GPT-2's printable byte
// alphabet: bytes `!`..`~`, 0xA1..0xAC and 0xAE..0xFF are the code points of the same value,
// the other 68 bytes are U+0100.. in increasing byte order (space → `Ġ` U+0120, LF → `Ċ`).
//
// The conversion is tiktoken's `data_gym_to_mergeable_bpe_ranks`: the 256 single bytes get
// ranks 0..255 in the order "printable bytes first, then the others", merge i gets rank 256 + i
// with the concatenated bytes, and encoder.json must give every token exactly that id (plus,
// optionally, `<|endoftext|>` / `<|startoftext|>`, which become special tokens). For the GPT-2
// release files the result equals `r50k_base.tiktoken` token for token.
//
//   rlhf::gpt2_vocabulary v = rlhf::parse_gpt2(encoder_json_text, vocab_bpe_text);
//   v.tokens;    // token_table, ranks = ids
//   v.specials;  // {"<|endoftext|>", 50256}
//
// Errors throw rlhf::format_error naming the file, the line (and column for JSON) and what is
// wrong: bad JSON, a token with a character outside the byte alphabet, a merge line that is not
// two non-empty parts separated by one space, a merge whose parts are not tokens (yet), a merge
// producing a token that already exists, and any disagreement between the two files.
#pragma once

#include <rlhf/config.hpp>
#include <rlhf/error.hpp>
#include <rlhf/tokenizer/tiktoken_file.hpp>
#include <rlhf/tokenizer/vocabulary.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rlhf {

/// A GPT-2 vocabulary: mergeable tokens (ids = ranks) and the special tokens encoder.json lists.
struct gpt2_vocabulary {
  token_table tokens;
  std::vector<special_token> specials;
};

namespace detail {

/// GPT-2's byte ↔ printable code point alphabet.
struct gpt2_alphabet {
  std::array<char32_t, 256> to_code_point{};
  std::array<int, 0x144> to_byte{};  // code point → byte, −1 when not in the alphabet
  std::array<unsigned char, 256> rank_order{};  // byte with rank r (printable bytes first)
  gpt2_alphabet() {
    to_byte.fill(-1);
    int n = 0, r = 0;
    const auto printable = [](int b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE; };
    for (int b = 0; b < 256; ++b)
      if (printable(b)) {
        to_code_point[static_cast<std::size_t>(b)] = static_cast<char32_t>(b);
        rank_order[static_cast<std::size_t>(r++)] = static_cast<unsigned char>(b);
      }
    for (int b = 0; b < 256; ++b)
      if (!printable(b)) {
        to_code_point[static_cast<std::size_t>(b)] = static_cast<char32_t>(256 + n++);
        rank_order[static_cast<std::size_t>(r++)] = static_cast<unsigned char>(b);
      }
    for (int b = 0; b < 256; ++b) to_byte[to_code_point[static_cast<std::size_t>(b)]] = b;
  }
  static const gpt2_alphabet& get() {
    static const gpt2_alphabet a;
    return a;
  }
};

/// Decodes UTF-8 text written in the GPT-2 alphabet into bytes; false when a character is not
/// in the alphabet (or the text is not UTF-8).
inline bool gpt2_text_to_bytes(std::string_view text, std::string& out) {
  const gpt2_alphabet& a = gpt2_alphabet::get();
  out.clear();
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  for (std::size_t i = 0; i < text.size();) {
    char32_t cp;
    if (s[i] < 0x80) {
      cp = s[i];
      i += 1;
    } else if ((s[i] & 0xE0) == 0xC0 && i + 1 < text.size() && (s[i + 1] & 0xC0) == 0x80) {
      cp = (static_cast<char32_t>(s[i] & 0x1F) << 6) | (s[i + 1] & 0x3F);
      if (cp < 0x80) return false;
      i += 2;
    } else {
      return false;  // the alphabet ends at U+0143: two bytes at most
    }
    if (cp >= a.to_byte.size() || a.to_byte[cp] < 0) return false;
    out += static_cast<char>(a.to_byte[cp]);
  }
  return true;
}

/// A strict reader of a JSON object whose values are integers ({"token": id, ...}).
class json_token_object_reader {
 public:
  json_token_object_reader(std::string_view text, std::string_view source) : s_(text), source_(source) {}

  /// Calls on_entry(key_utf8, value, line) for each member, in order.
  template <class F>
  void read(F&& on_entry) {
    skip_ws();
    expect('{');
    skip_ws();
    if (peek() == '}') {
      ++i_;
    } else {
      for (;;) {
        skip_ws();
        const std::size_t line = line_;
        std::string key = read_string();
        skip_ws();
        expect(':');
        skip_ws();
        const std::int64_t value = read_integer();
        on_entry(key, value, line);
        skip_ws();
        if (peek() == ',') {
          ++i_;
          continue;
        }
        expect('}');
        break;
      }
    }
    skip_ws();
    if (i_ != s_.size()) fail("unexpected text after the object");
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    std::size_t column = 1;
    for (std::size_t k = i_; k > 0 && s_[k - 1] != '\n'; --k) ++column;
    RLHF_THROW(format_error("rlhf::parse_gpt2(): " + std::string(source_) + ":" + std::to_string(line_) + ":" +
                            std::to_string(column) + ": " + what));
  }
  [[nodiscard]] int peek() const noexcept { return i_ < s_.size() ? static_cast<unsigned char>(s_[i_]) : -1; }
  void skip_ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) {
      if (s_[i_] == '\n') ++line_;
      ++i_;
    }
  }
  void expect(char c) {
    if (peek() != static_cast<unsigned char>(c))
      fail(std::string("expected '") + c + "'" + (peek() < 0 ? " before the end of the file" : ""));
    ++i_;
  }
  unsigned hex4() {
    unsigned v = 0;
    for (int k = 0; k < 4; ++k) {
      const int c = peek();
      int d = -1;
      if (c >= '0' && c <= '9') d = c - '0';
      if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
      if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
      if (d < 0) fail("bad \\u escape");
      v = v * 16 + static_cast<unsigned>(d);
      ++i_;
    }
    return v;
  }
  static void append_utf8(std::string& out, char32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  std::string read_string() {
    expect('"');
    std::string out;
    for (;;) {
      const int c = peek();
      if (c < 0) fail("unterminated string");
      ++i_;
      if (c == '"') return out;
      if (c < 0x20) fail("control character in a string");
      if (c != '\\') {
        out += static_cast<char>(c);
        continue;
      }
      const int e = peek();
      ++i_;
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          char32_t cp = hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (peek() != '\\') fail("lone surrogate in a \\u escape");
            ++i_;
            if (peek() != 'u') fail("lone surrogate in a \\u escape");
            ++i_;
            const char32_t lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail("lone surrogate in a \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            fail("lone surrogate in a \\u escape");
          }
          append_utf8(out, cp);
          break;
        }
        default:
          --i_;
          fail("bad escape in a string");
      }
    }
  }
  std::int64_t read_integer() {
    const std::size_t begin = i_;
    if (peek() == '-') fail("negative id");
    std::int64_t v = 0;
    while (peek() >= '0' && peek() <= '9') {
      v = v * 10 + (peek() - '0');
      if (v > token_table::max_id) fail("id out of range [0, 16777215]");
      ++i_;
    }
    if (i_ == begin) fail("expected an integer id");
    if (peek() == '.' || peek() == 'e' || peek() == 'E') fail("expected an integer id");
    return v;
  }

  std::string_view s_;
  std::string_view source_;
  std::size_t i_ = 0;
  std::size_t line_ = 1;
};

}  // namespace detail

/// Parses GPT-2's two files from memory; the names are used in error messages.
inline gpt2_vocabulary parse_gpt2(std::string_view encoder_json, std::string_view vocab_bpe,
                                  std::string_view encoder_name = "encoder.json",
                                  std::string_view vocab_name = "vocab.bpe") {
  constexpr const char* function = "rlhf::parse_gpt2()";
  const detail::gpt2_alphabet& alphabet = detail::gpt2_alphabet::get();
  const auto fail = [&](std::string_view source, std::size_t line, const std::string& what) {
    RLHF_THROW(format_error(std::string(function) + ": " + std::string(source) +
                            (line > 0 ? ":" + std::to_string(line) : std::string()) + ": " + what));
  };

  gpt2_vocabulary result{token_table(50304), {}};
  token_table& tokens = result.tokens;
  for (std::size_t r = 0; r < 256; ++r) {
    const char b = static_cast<char>(alphabet.rank_order[r]);
    tokens.insert(std::string_view(&b, 1), static_cast<token_id>(r));
  }

  // vocab.bpe: merges in priority order.
  std::string left, right, joined;
  std::size_t line_no = 0, pos = 0;
  token_id next_rank = 256;
  while (pos < vocab_bpe.size()) {
    std::size_t end = vocab_bpe.find('\n', pos);
    if (end == std::string_view::npos) end = vocab_bpe.size();
    std::string_view line = vocab_bpe.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || (line_no == 1 && line.starts_with("#version"))) continue;
    const std::size_t space = line.find(' ');
    if (space == std::string_view::npos || space == 0 || space + 1 == line.size() ||
        line.find(' ', space + 1) != std::string_view::npos)
      fail(vocab_name, line_no, "expected a merge 'A B', got " + detail::quote_excerpt(line));
    const std::string_view a = line.substr(0, space), b = line.substr(space + 1);
    if (!detail::gpt2_text_to_bytes(a, left) || !detail::gpt2_text_to_bytes(b, right))
      fail(vocab_name, line_no, "merge " + detail::quote_excerpt(line) + " has a character outside GPT-2's byte alphabet");
    if (tokens.find(left) < 0)
      fail(vocab_name, line_no, "merge " + detail::quote_excerpt(line) + ": " + detail::quote_excerpt(a) +
                                    " is not a token (a single byte or an earlier merge)");
    if (tokens.find(right) < 0)
      fail(vocab_name, line_no, "merge " + detail::quote_excerpt(line) + ": " + detail::quote_excerpt(b) +
                                    " is not a token (a single byte or an earlier merge)");
    joined = left + right;
    if (next_rank > token_table::max_id) fail(vocab_name, line_no, "too many merges");
    if (tokens.insert(joined, next_rank) != token_table::insert_result::inserted)
      fail(vocab_name, line_no, "merge " + detail::quote_excerpt(line) + " produces the token of rank " +
                                    std::to_string(tokens.find(joined)) + " again");
    ++next_rank;
  }

  // encoder.json must agree with the ranks.
  std::vector<std::uint8_t> seen(tokens.id_bound(), 0);
  std::size_t matched = 0;
  std::string bytes;
  detail::json_token_object_reader reader(encoder_json, encoder_name);
  reader.read([&](const std::string& key, std::int64_t value, std::size_t line) {
    const auto id = static_cast<token_id>(value);
    if (key == "<|endoftext|>" || key == "<|startoftext|>") {
      for (const special_token& s : result.specials)
        if (s.text == key) fail(encoder_name, line, "duplicate key " + detail::quote_excerpt(key));
      if (tokens.contains_id(id))
        fail(encoder_name, line, detail::quote_excerpt(key) + " has id " + std::to_string(id) +
                                     ", which is the id of a merge token");
      result.specials.push_back({key, id});
      return;
    }
    if (!detail::gpt2_text_to_bytes(key, bytes))
      fail(encoder_name, line, "token " + detail::quote_excerpt(key) + " has a character outside GPT-2's byte alphabet");
    const token_id rank = tokens.find(bytes);
    if (rank < 0)
      fail(encoder_name, line, "token " + detail::quote_excerpt(key) + " is neither a single byte nor produced by a merge of " +
                                   std::string(vocab_name));
    if (rank != id)
      fail(encoder_name, line, "token " + detail::quote_excerpt(key) + " has id " + std::to_string(id) + " but rank " +
                                   std::to_string(rank) + " in " + std::string(vocab_name));
    if (seen[static_cast<std::size_t>(rank)] != 0) fail(encoder_name, line, "duplicate key " + detail::quote_excerpt(key));
    seen[static_cast<std::size_t>(rank)] = 1;
    ++matched;
  });
  if (matched != tokens.size())
    fail(encoder_name, 0, "lists " + std::to_string(matched) + " of the " + std::to_string(tokens.size()) +
                              " tokens of " + std::string(vocab_name) + " (256 bytes + merges)");
  for (const special_token& s : result.specials)
    for (const special_token& t : result.specials)
      if (&s != &t && s.id == t.id) fail(encoder_name, 0, "two special tokens share id " + std::to_string(s.id));
  return result;
}

/// Reads and parses GPT-2's two files (errors name the files).
inline gpt2_vocabulary load_gpt2(const std::filesystem::path& encoder_json, const std::filesystem::path& vocab_bpe) {
  const std::string e = detail::read_file_bytes(encoder_json, "rlhf::load_gpt2()");
  const std::string v = detail::read_file_bytes(vocab_bpe, "rlhf::load_gpt2()");
  return parse_gpt2(e, v, encoder_json.string(), vocab_bpe.string());
}

}  // namespace rlhf
