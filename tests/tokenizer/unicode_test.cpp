// Tests for <rlhf/tokenizer/unicode.hpp> and the generated unicode_tables.hpp: known code points
// against UnicodeData.txt 15.0.0, category counts over the whole code space, the White_Space list,
// UTF-8 decoding of every scalar value and of invalid sequences (the escaped-byte policy).
#include <rlhf/tokenizer/unicode.hpp>

#include <doctest/doctest.h>

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace u = rlhf::unicode;
using gc = u::general_category;

TEST_CASE("unicode tables: the version is pinned to 15.0.0") {
  CHECK(u::unicode_version_major == 15);
  CHECK(u::unicode_version_minor == 0);
  CHECK(u::unicode_version_update == 0);
  CHECK(std::string(u::unicode_version) == "15.0.0");
}

TEST_CASE("unicode tables: General_Category of known code points (UnicodeData.txt 15.0.0)") {
  const std::vector<std::pair<char32_t, gc>> known = {
      {U'A', gc::Lu},      {U'z', gc::Ll},     {0x01C5, gc::Lt},   {0x02B0, gc::Lm},   {0x4E00, gc::Lo},
      {0x0301, gc::Mn},    {0x0903, gc::Mc},   {0x20DD, gc::Me},   {U'7', gc::Nd},     {0x0663, gc::Nd},
      {0x2160, gc::Nl},    {0x00BD, gc::No},   {0x00B2, gc::No},   {0x2460, gc::No},   {U'_', gc::Pc},
      {U'-', gc::Pd},      {U'(', gc::Ps},     {U')', gc::Pe},     {0x00AB, gc::Pi},   {0x00BB, gc::Pf},
      {U'!', gc::Po},      {U'\'', gc::Po},    {U'/', gc::Po},     {U'+', gc::Sm},     {U'$', gc::Sc},
      {U'^', gc::Sk},      {0x00A9, gc::So},   {U' ', gc::Zs},     {0x00A0, gc::Zs},   {0x3000, gc::Zs},
      {0x2028, gc::Zl},    {0x2029, gc::Zp},   {U'\n', gc::Cc},    {0x0085, gc::Cc},   {0xFEFF, gc::Cf},
      {0x200B, gc::Cf},    {0x200D, gc::Cf},   {0x180E, gc::Cf},   {0xD800, gc::Cs},   {0xDFFF, gc::Cs},
      {0xE000, gc::Co},    {0x0378, gc::Cn},   {0xFFFF, gc::Cn},   {0x1F600, gc::So},  {0x1F3FB, gc::Sk},
      {0x20000, gc::Lo},   {0x2A6DF, gc::Lo},  {0x1D400, gc::Lu},  {0x1D41A, gc::Ll},  {0xE0001, gc::Cf},
      {0xE0100, gc::Mn},   {0xF0000, gc::Co},  {0x10FFFD, gc::Co}, {0x10FFFF, gc::Cn}, {0x017F, gc::Ll},
      {0x0130, gc::Lu},    {0x05D0, gc::Lo},   {0x0627, gc::Lo},   {0x064B, gc::Mn},   {0x0E01, gc::Lo},
      {0xAC00, gc::Lo},    {0xD7A3, gc::Lo},   {0x3041, gc::Lo},   {0x30FC, gc::Lm},   {0xFF21, gc::Lu},
      // New in Unicode 15.0 (absent from PCRE2 10.42's Unicode 14 tables).
      {0x31350, gc::Lo},   {0x323AF, gc::Lo},  {0x11F04, gc::Lo},  {0x1E4D0, gc::Lo},  {0x1F7D9, gc::So},
      {0x1E030, gc::Lm},   {0x11F00, gc::Mn},
  };
  for (const auto& [cp, want] : known) {
    CAPTURE(static_cast<std::uint32_t>(cp));
    CHECK(u::category(cp) == want);
  }
  CHECK(u::category(0x110000) == gc::Cn);
  CHECK(u::category(0xFFFFFFFF) == gc::Cn);
}

TEST_CASE("unicode tables: code points per General_Category over U+0000..U+10FFFF") {
  // Counted from UnicodeData.txt 15.0.0 (ranges expanded, unlisted code points Cn).
  const std::array<std::uint32_t, 30> expected = {
      1831, 2233, 31,   397, 131612, 1985, 452, 13, 680, 236,   915,  10,     26,   79,    77,
      12,   10,   628,  948, 63,     125,  6634, 17, 1,   1,     65,   170,    2048, 137468, 825345};
  std::array<std::uint32_t, 30> counts{};
  for (char32_t cp = 0; cp <= u::max_code_point; ++cp) ++counts[static_cast<std::size_t>(u::category(cp))];
  for (std::size_t c = 0; c < counts.size(); ++c) {
    CAPTURE(c);
    CHECK(counts[c] == expected[c]);
  }
}

TEST_CASE("unicode tables: White_Space is exactly the 25 code points of PropList.txt") {
  const std::vector<char32_t> white = {0x09,   0x0A,   0x0B,   0x0C,   0x0D,   0x20,   0x85,   0xA0,   0x1680,
                                       0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008,
                                       0x2009, 0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000};
  std::size_t next = 0, found = 0;
  for (char32_t cp = 0; cp <= u::max_code_point; ++cp) {
    const bool want = next < white.size() && white[next] == cp;
    if (want) ++next;
    if (u::is_white_space(cp) != want) {
      CAPTURE(static_cast<std::uint32_t>(cp));
      CHECK(u::is_white_space(cp) == want);
    }
    if (u::is_white_space(cp)) ++found;
  }
  CHECK(found == white.size());
  // Not White_Space although some engines or languages treat them as spaces.
  CHECK_FALSE(u::is_white_space(0xFEFF));
  CHECK_FALSE(u::is_white_space(0x200B));
  CHECK_FALSE(u::is_white_space(0x180E));
  CHECK_FALSE(u::is_white_space(0x1C));
}

TEST_CASE("unicode: char_class flags follow the categories the patterns name") {
  using cc = u::char_class;
  CHECK(u::classes(U'a') == (cc::letter | cc::lower));
  CHECK(u::classes(U'A') == (cc::letter | cc::upper));
  CHECK(u::classes(0x01C5) == (cc::letter | cc::upper));              // Lt
  CHECK(u::classes(0x02B0) == (cc::letter | cc::upper | cc::lower));  // Lm: both o200k classes
  CHECK(u::classes(0x4E00) == (cc::letter | cc::upper | cc::lower));  // Lo
  CHECK(u::classes(0x0301) == (cc::mark | cc::upper | cc::lower));    // Mn: not \p{L}
  CHECK(u::classes(U'5') == cc::number);
  CHECK(u::classes(0x2160) == cc::number);  // Nl
  CHECK(u::classes(U' ') == cc::white_space);
  CHECK(u::classes(U'\n') == (cc::white_space | cc::cr_lf));
  CHECK(u::classes(U'\r') == (cc::white_space | cc::cr_lf));
  CHECK(u::classes(0x0085) == cc::white_space);
  CHECK(u::classes(0x2028) == cc::white_space);
  CHECK(u::classes(U'!') == 0);
  CHECK(u::classes(0xFEFF) == 0);
  CHECK(u::classes(u::escaped_byte_base + 0xFF) == 0);
  CHECK(u::classes(0x110000) == 0);
}

TEST_CASE("unicode: encode_utf8 and decode_utf8 round-trip every scalar value") {
  char buf[4];
  std::uint32_t by_length[5] = {};
  for (char32_t cp = 0; cp <= u::max_code_point; ++cp) {
    const std::uint32_t n = u::encode_utf8(cp, buf);
    if (cp >= 0xD800 && cp <= 0xDFFF) {
      CHECK(n == 0);
      continue;
    }
    ++by_length[n];
    const u::decoded d = u::decode_utf8(buf, buf + n);
    if (d.code_point != cp || d.length != n) {
      CAPTURE(static_cast<std::uint32_t>(cp));
      CHECK(d.code_point == cp);
      CHECK(d.length == n);
    }
  }
  CHECK(by_length[1] == 0x80);
  CHECK(by_length[2] == 0x780);
  CHECK(by_length[3] == 0x10000 - 0x800 - 0x800);
  CHECK(by_length[4] == 0x100000);
  CHECK(u::encode_utf8(0x110000, buf) == 0);
}

TEST_CASE("unicode: invalid UTF-8 decodes one byte at a time as an escaped byte") {
  struct bad {
    std::string bytes;
    const char* why;
  };
  const std::vector<bad> cases = {
      {"\x80", "lone continuation byte"},
      {"\xBF", "lone continuation byte"},
      {"\xC0\x80", "overlong NUL"},
      {"\xC1\xBF", "overlong 2-byte"},
      {"\xE0\x80\x80", "overlong 3-byte"},
      {"\xE0\x9F\xBF", "overlong 3-byte (U+07FF)"},
      {"\xED\xA0\x80", "UTF-8 encoded surrogate U+D800"},
      {"\xED\xBF\xBF", "UTF-8 encoded surrogate U+DFFF"},
      {"\xF0\x80\x80\x80", "overlong 4-byte"},
      {"\xF0\x8F\xBF\xBF", "overlong 4-byte (U+FFFF)"},
      {"\xF4\x90\x80\x80", "above U+10FFFF"},
      {"\xF5\x80\x80\x80", "lead byte F5"},
      {"\xFF", "byte FF"},
      {"\xFE", "byte FE"},
      {"\xC3", "truncated 2-byte at the end"},
      {"\xE2\x82", "truncated 3-byte at the end"},
      {"\xF0\x9F\x98", "truncated 4-byte at the end"},
      {"\xE2\x82x", "truncated 3-byte before ASCII"},
      {"\xC3\xC3\xA9", "lead byte followed by a lead byte"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.why);
    const char* p = c.bytes.data();
    const u::decoded d = u::decode_utf8(p, p + c.bytes.size());
    CHECK(d.length == 1);
    CHECK(d.code_point == u::escaped_byte_base + static_cast<unsigned char>(p[0]));
    CHECK(u::is_escaped_byte(d.code_point));
    CHECK(u::category(d.code_point) == gc::Cs);
  }
  // After an invalid lead byte, decoding resumes at the next byte: "\xC3\xC3\xA9" is
  // escaped 0xC3, then U+00E9.
  const std::string s = "\xC3\xC3\xA9";
  const u::decoded second = u::decode_utf8(s.data() + 1, s.data() + s.size());
  CHECK(second.code_point == 0xE9);
  CHECK(second.length == 2);
  // Valid boundaries.
  const std::string edges = "\xF4\x8F\xBF\xBF";
  CHECK(u::decode_utf8(edges.data(), edges.data() + 4).code_point == 0x10FFFF);
  const std::string bom = "\xEF\xBB\xBF";
  CHECK(u::decode_utf8(bom.data(), bom.data() + 3).code_point == 0xFEFF);
  // A truncated sequence never reads past `end`, even when more bytes follow in memory.
  const std::string full = "\xE2\x82\xAC";
  CHECK(u::decode_utf8(full.data(), full.data() + 2).length == 1);
  CHECK_FALSE(u::is_escaped_byte(0xDC7F));
  CHECK_FALSE(u::is_escaped_byte(0xDD00));
}
