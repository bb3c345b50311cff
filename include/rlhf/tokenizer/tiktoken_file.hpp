// rlhf/tokenizer/tiktoken_file.hpp — the `.tiktoken` rank-file format.
//
// One mergeable token per line: `base64(token bytes) SP rank LF`, ranks strictly increasing
// (holes allowed: p50k_base has no rank 50256). Rank = token id = merge priority. Special
// tokens are not in the file. Empty lines are skipped and a CR before the LF is accepted (as
// tiktoken's `splitlines()` does).
//
//   rlhf::token_table t = rlhf::parse_tiktoken(contents, "cl100k_base.tiktoken");
//   rlhf::token_table t = rlhf::load_tiktoken("data/cl100k_base.tiktoken");
//
// Everything is validated; a problem throws rlhf::format_error naming the source, the line and
// what is wrong: a line without exactly one space, bad base64 (characters outside the standard
// alphabet, wrong padding, a length not a multiple of 4), an empty token, a rank that is not a
// decimal number in [0, 2^24), a rank not greater than the previous one, duplicate token bytes,
// and, for the whole file, a single byte that is not a token (BPE starts from single bytes).
// The parser never reads outside `contents`, so a fuzzer can drive it with any bytes.
#pragma once

#include <rlhf/config.hpp>
#include <rlhf/error.hpp>
#include <rlhf/tokenizer/vocabulary.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>

namespace rlhf {

namespace detail {

/// The whole file as bytes; format_error naming `function` and the path when it cannot be read.
inline std::string read_file_bytes(const std::filesystem::path& path, const char* function) {
  std::ifstream in(path, std::ios::binary);
  if (!in) RLHF_THROW(format_error(std::string(function) + ": cannot open '" + path.string() + "'"));
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) RLHF_THROW(format_error(std::string(function) + ": cannot read '" + path.string() + "'"));
  return data;
}

/// A short, printable excerpt of a line for error messages (non-printable bytes as \xNN).
inline std::string quote_excerpt(std::string_view s, std::size_t limit = 40) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out = "'";
  for (std::size_t i = 0; i < s.size() && i < limit; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7F && c != '\'' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  if (s.size() > limit) out += "...";
  return out + "'";
}

/// Value of a base64 character, or −1.
inline int base64_value(unsigned char c) noexcept {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

/// Strict standard base64 with padding into `out`; on failure returns a description.
inline const char* base64_decode(std::string_view in, std::string& out) {
  out.clear();
  if (in.empty()) return "empty base64";
  if (in.size() % 4 != 0) return "base64 length is not a multiple of 4";
  for (std::size_t i = 0; i < in.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      const auto c = static_cast<unsigned char>(in[i + static_cast<std::size_t>(k)]);
      if (c == '=') {
        if (i + 4 != in.size() || k < 2) return "misplaced '=' in base64";
        v[k] = 0;
        ++pad;
      } else {
        if (pad > 0) return "misplaced '=' in base64";
        v[k] = base64_value(c);
        if (v[k] < 0) return "a character outside the base64 alphabet";
      }
    }
    const std::uint32_t w = (static_cast<std::uint32_t>(v[0]) << 18) | (static_cast<std::uint32_t>(v[1]) << 12) |
                            (static_cast<std::uint32_t>(v[2]) << 6) | static_cast<std::uint32_t>(v[3]);
    out += static_cast<char>((w >> 16) & 0xFF);
    if (pad < 2) out += static_cast<char>((w >> 8) & 0xFF);
    if (pad < 1) out += static_cast<char>(w & 0xFF);
    // Non-canonical padding bits (e.g. "QR==") would decode two texts to one token.
    if ((pad == 2 && (v[1] & 0xF) != 0) || (pad == 1 && (v[2] & 0x3) != 0)) return "non-zero padding bits in base64";
  }
  return nullptr;
}

}  // namespace detail

/// Parses `.tiktoken` content; `source_name` names it in error messages. See the file comment.
inline token_table parse_tiktoken(std::string_view contents, std::string_view source_name = "<memory>") {
  constexpr const char* function = "rlhf::parse_tiktoken()";
  const auto fail = [&](std::size_t line, const std::string& what) {
    RLHF_THROW(format_error(std::string(function) + ": " + std::string(source_name) + ":" + std::to_string(line) +
                            ": " + what));
  };
  std::size_t lines = 0;
  for (const char c : contents) lines += c == '\n';
  token_table table(lines + 1);
  std::string bytes;
  std::int64_t previous = -1;
  std::size_t line_no = 0;
  std::size_t pos = 0;
  while (pos < contents.size()) {
    std::size_t end = contents.find('\n', pos);
    if (end == std::string_view::npos) end = contents.size();
    std::string_view line = contents.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    const std::size_t space = line.find(' ');
    if (space == std::string_view::npos || line.find(' ', space + 1) != std::string_view::npos)
      fail(line_no, "expected 'base64 rank', got " + detail::quote_excerpt(line));
    const std::string_view b64 = line.substr(0, space), rank_text = line.substr(space + 1);
    if (const char* problem = detail::base64_decode(b64, bytes))
      fail(line_no, std::string("bad base64 ") + detail::quote_excerpt(b64) + " (" + problem + ")");
    if (rank_text.empty() || rank_text.size() > 9)
      fail(line_no, "rank " + detail::quote_excerpt(rank_text) + " is not a number in [0, 16777215]");
    std::int64_t rank = 0;
    for (const char c : rank_text) {
      if (c < '0' || c > '9')
        fail(line_no, "rank " + detail::quote_excerpt(rank_text) + " is not a number in [0, 16777215]");
      rank = rank * 10 + (c - '0');
    }
    if (rank > token_table::max_id)
      fail(line_no, "rank " + std::string(rank_text) + " is not a number in [0, 16777215]");
    if (rank <= previous)
      fail(line_no, "rank " + std::to_string(rank) + " is not greater than the previous rank " +
                        std::to_string(previous) + " (ranks must increase)");
    previous = rank;
    if (table.insert(bytes, static_cast<token_id>(rank)) == token_table::insert_result::duplicate_bytes)
      fail(line_no, "token " + detail::quote_excerpt(bytes) + " (rank " + std::to_string(rank) +
                        ") duplicates the bytes of rank " + std::to_string(table.find(bytes)));
  }
  for (int b = 0; b < 256; ++b) {
    const char c = static_cast<char>(b);
    if (table.find(std::string_view(&c, 1)) < 0) {
      static constexpr char hex[] = "0123456789ABCDEF";
      RLHF_THROW(format_error(std::string(function) + ": " + std::string(source_name) + ": byte 0x" + hex[b >> 4] +
                              hex[b & 15] + " is not a token (every single byte must be one)"));
    }
  }
  return table;
}

/// Reads and parses a `.tiktoken` file (errors name the file).
inline token_table load_tiktoken(const std::filesystem::path& path) {
  const std::string contents = detail::read_file_bytes(path, "rlhf::load_tiktoken()");
  return parse_tiktoken(contents, path.string());
}

}  // namespace rlhf
