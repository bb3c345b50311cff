// rlhf/tokenizer/unicode.hpp — UTF-8 decoding and the Unicode properties pre-tokenisation needs.
//
// Tables: unicode_tables.hpp, generated from the Unicode Character Database (version in
// rlhf::unicode::unicode_version) by tools/tokenizers/gen_unicode_tables.py.
//
// Invalid UTF-8: decode_utf8() never fails. A byte that does not start a complete, shortest-form
// UTF-8 sequence of a scalar value (U+0000..U+10FFFF without surrogates) decodes as ONE code point
// of length 1, the "escaped byte" U+DC00 + byte (the lone low surrogates U+DC80..U+DCFF, like
// Python's surrogateescape). Its General_Category is Cs: not a letter, number, mark or
// White_Space, so the pre-tokenisation patterns put it in their `[^\s\p{L}\p{N}]` runs.
#pragma once

#include <rlhf/config.hpp>
#include <rlhf/tokenizer/unicode_tables.hpp>

#include <cstddef>
#include <cstdint>

namespace rlhf::unicode {

/// The largest Unicode scalar value.
inline constexpr char32_t max_code_point = 0x10FFFF;

/// An invalid byte b (>= 0x80) decodes as escaped_byte_base + b (U+DC80..U+DCFF).
inline constexpr char32_t escaped_byte_base = 0xDC00;

/// True for the code points decode_utf8() returns for invalid bytes.
[[nodiscard]] constexpr bool is_escaped_byte(char32_t cp) noexcept {
  return cp >= escaped_byte_base + 0x80 && cp <= escaped_byte_base + 0xFF;
}

/// One decoded code point and the number of bytes it took (1..4).
struct decoded {
  char32_t code_point;
  std::uint32_t length;
};

/// Decodes the code point starting at p (p < end). Never reads at or past end; never fails: see
/// the invalid-byte policy at the top of this file.
[[nodiscard]] constexpr decoded decode_utf8(const char* p, const char* end) noexcept {
  const auto b0 = static_cast<unsigned char>(p[0]);
  if (b0 < 0x80) return {b0, 1};
  const decoded invalid{escaped_byte_base + b0, 1};
  const std::ptrdiff_t avail = end - p;
  auto cont = [&](std::ptrdiff_t i) -> std::uint32_t {
    return (static_cast<unsigned char>(p[i]) & 0xC0) == 0x80 ? static_cast<unsigned char>(p[i]) & 0x3Fu
                                                             : 0xFFFFFFFFu;
  };
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    if (avail < 2) return invalid;
    const std::uint32_t c1 = cont(1);
    if (c1 > 0x3F) return invalid;
    return {static_cast<char32_t>(((b0 & 0x1Fu) << 6) | c1), 2};
  }
  if (b0 >= 0xE0 && b0 <= 0xEF) {
    if (avail < 3) return invalid;
    const std::uint32_t c1 = cont(1), c2 = cont(2);
    if (c1 > 0x3F || c2 > 0x3F) return invalid;
    const std::uint32_t cp = ((b0 & 0x0Fu) << 12) | (c1 << 6) | c2;
    if (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF)) return invalid;  // overlong or surrogate
    return {static_cast<char32_t>(cp), 3};
  }
  if (b0 >= 0xF0 && b0 <= 0xF4) {
    if (avail < 4) return invalid;
    const std::uint32_t c1 = cont(1), c2 = cont(2), c3 = cont(3);
    if (c1 > 0x3F || c2 > 0x3F || c3 > 0x3F) return invalid;
    const std::uint32_t cp = ((b0 & 0x07u) << 18) | (c1 << 12) | (c2 << 6) | c3;
    if (cp < 0x10000 || cp > max_code_point) return invalid;  // overlong or too large
    return {static_cast<char32_t>(cp), 4};
  }
  return invalid;  // 0x80..0xC1 (continuation or overlong lead) and 0xF5..0xFF
}

/// Writes the UTF-8 encoding of a scalar value (not a surrogate, <= U+10FFFF) to out; returns
/// the number of bytes (1..4), or 0 for a value that has no UTF-8 encoding.
constexpr std::uint32_t encode_utf8(char32_t cp, char* out) noexcept {
  if (cp < 0x80) {
    out[0] = static_cast<char>(cp);
    return 1;
  }
  if (cp < 0x800) {
    out[0] = static_cast<char>(0xC0 | (cp >> 6));
    out[1] = static_cast<char>(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
  if (cp < 0x10000) {
    out[0] = static_cast<char>(0xE0 | (cp >> 12));
    out[1] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out[2] = static_cast<char>(0x80 | (cp & 0x3F));
    return 3;
  }
  if (cp > max_code_point) return 0;
  out[0] = static_cast<char>(0xF0 | (cp >> 18));
  out[1] = static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
  out[2] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
  out[3] = static_cast<char>(0x80 | (cp & 0x3F));
  return 4;
}

namespace detail {
/// The table byte of a code point: bits 0-4 General_Category, bit 5 White_Space.
[[nodiscard]] constexpr std::uint8_t table_byte(char32_t cp) noexcept {
  if (cp > max_code_point) return static_cast<std::uint8_t>(general_category::Cn);
  const std::uint32_t block = tables::stage1[cp >> tables::block_shift];
  return tables::stage2[(block << tables::block_shift) | (cp & ((1u << tables::block_shift) - 1))];
}
}  // namespace detail

/// General_Category of a code point (Cn above U+10FFFF; Cs for escaped bytes).
[[nodiscard]] constexpr general_category category(char32_t cp) noexcept {
  return static_cast<general_category>(detail::table_byte(cp) & tables::category_mask);
}

/// The Unicode White_Space property (what `\s` means in the pre-tokenisation patterns).
[[nodiscard]] constexpr bool is_white_space(char32_t cp) noexcept {
  return (detail::table_byte(cp) & tables::white_space_bit) != 0;
}

/// \p{L}: Lu, Ll, Lt, Lm, Lo.
[[nodiscard]] constexpr bool is_letter(general_category c) noexcept {
  return c <= general_category::Lo;
}
/// \p{M}: Mn, Mc, Me.
[[nodiscard]] constexpr bool is_mark(general_category c) noexcept {
  return c >= general_category::Mn && c <= general_category::Me;
}
/// \p{N}: Nd, Nl, No.
[[nodiscard]] constexpr bool is_number(general_category c) noexcept {
  return c >= general_category::Nd && c <= general_category::No;
}
[[nodiscard]] constexpr bool is_letter(char32_t cp) noexcept { return is_letter(category(cp)); }
[[nodiscard]] constexpr bool is_mark(char32_t cp) noexcept { return is_mark(category(cp)); }
[[nodiscard]] constexpr bool is_number(char32_t cp) noexcept { return is_number(category(cp)); }

/// The character classes the built-in pre-tokenisation patterns test, as bit flags.
struct char_class {
  static constexpr std::uint8_t letter = 1;       ///< \p{L}
  static constexpr std::uint8_t number = 2;       ///< \p{N}
  static constexpr std::uint8_t white_space = 4;  ///< \s (White_Space)
  static constexpr std::uint8_t upper = 8;        ///< [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}] (o200k)
  static constexpr std::uint8_t lower = 16;       ///< [\p{Ll}\p{Lm}\p{Lo}\p{M}] (o200k)
  static constexpr std::uint8_t mark = 32;        ///< \p{M}
  static constexpr std::uint8_t cr_lf = 64;       ///< [\r\n]
};

namespace detail {
[[nodiscard]] constexpr std::uint8_t classes_of_table_byte(std::uint8_t byte) noexcept {
  const auto c = static_cast<general_category>(byte & tables::category_mask);
  std::uint8_t r = 0;
  if (is_letter(c)) r |= char_class::letter;
  if (is_number(c)) r |= char_class::number;
  if (is_mark(c)) r |= char_class::mark;
  if (byte & tables::white_space_bit) r |= char_class::white_space;
  if (c == general_category::Lu || c == general_category::Lt || c == general_category::Lm ||
      c == general_category::Lo || is_mark(c))
    r |= char_class::upper;
  if (c == general_category::Ll || c == general_category::Lm || c == general_category::Lo ||
      is_mark(c))
    r |= char_class::lower;
  return r;
}
struct class_table {
  std::uint8_t by_table_byte[64];
  std::uint8_t ascii[128];
};
[[nodiscard]] constexpr class_table make_class_table() noexcept {
  class_table t{};
  for (unsigned b = 0; b < 64; ++b) t.by_table_byte[b] = classes_of_table_byte(static_cast<std::uint8_t>(b));
  for (unsigned c = 0; c < 128; ++c) t.ascii[c] = t.by_table_byte[table_byte(c)];
  t.ascii[static_cast<unsigned char>('\r')] |= char_class::cr_lf;
  t.ascii[static_cast<unsigned char>('\n')] |= char_class::cr_lf;
  return t;
}
inline constexpr class_table class_tables = make_class_table();
}  // namespace detail

/// The char_class flags of a code point.
[[nodiscard]] constexpr std::uint8_t classes(char32_t cp) noexcept {
  if (cp < 0x80) return detail::class_tables.ascii[cp];
  return detail::class_tables.by_table_byte[detail::table_byte(cp)];
}

}  // namespace rlhf::unicode
