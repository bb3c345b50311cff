// Tests for <rlhf/tokenizer/utf8.hpp>: validation against the Unicode well-formedness table,
// lossy decoding with one U+FFFD per maximal subpart (the Unicode/WHATWG examples, and a
// brute-force reference), and the streaming decoder against the one-shot one on every split.
#include <rlhf/tokenizer/utf8.hpp>

#include <doctest/doctest.h>

#include <rlhf/rng.hpp>

#include <string>

namespace {

const std::string fffd = "\xEF\xBF\xBD";

/// Brute force: is s[i..i+k) a well-formed sequence, or a prefix of one?
bool well_formed_prefix(const std::string& s) {
  // Encode every scalar value's first bytes and compare: slow but obviously right.
  const auto b = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  if (s.empty()) return true;
  const unsigned char c = b(0);
  std::size_t len = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
  if (len == 0 || s.size() > len) return false;
  for (std::size_t i = 1; i < s.size(); ++i) {
    unsigned char lo = 0x80, hi = 0xBF;
    if (i == 1 && c == 0xE0) lo = 0xA0;
    if (i == 1 && c == 0xED) hi = 0x9F;
    if (i == 1 && c == 0xF0) lo = 0x90;
    if (i == 1 && c == 0xF4) hi = 0x8F;
    if (b(i) < lo || b(i) > hi) return false;
  }
  return true;
}

/// Reference lossy decoder: at each position take the longest well-formed prefix; if it is a
/// complete sequence copy it, else replace it (at least one byte) by one U+FFFD.
std::string reference_lossy(const std::string& s) {
  std::string out;
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t k = 1;
    while (i + k < s.size() && k < 4 && well_formed_prefix(s.substr(i, k + 1))) ++k;
    const std::string part = s.substr(i, k);
    const unsigned char c = static_cast<unsigned char>(part[0]);
    const std::size_t need = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (well_formed_prefix(part) && part.size() == need) {
      out += part;
    } else {
      out += fffd;
      if (!well_formed_prefix(part)) k = 1;
    }
    i += k;
  }
  return out;
}

}  // namespace

TEST_CASE("validation") {
  CHECK(rlhf::utf8_valid(""));
  CHECK(rlhf::utf8_valid("plain ascii text that is longer than eight bytes"));
  CHECK(rlhf::utf8_valid("\xC3\xA9\xE4\xB8\xAD\xF0\x9F\x98\x80\xF4\x8F\xBF\xBF\xEF\xBB\xBF"));
  CHECK_FALSE(rlhf::utf8_valid("\x80"));
  CHECK_FALSE(rlhf::utf8_valid("\xC0\x80"));          // overlong
  CHECK_FALSE(rlhf::utf8_valid("\xED\xA0\x80"));      // surrogate
  CHECK_FALSE(rlhf::utf8_valid("\xF4\x90\x80\x80"));  // above U+10FFFF
  CHECK_FALSE(rlhf::utf8_valid("abcdefgh\xE2\x82"));  // truncated after the ASCII fast path
  CHECK(rlhf::utf8_valid_prefix("abc\xFF") == 3);
  CHECK(rlhf::utf8_valid_prefix("abcdefghijk\xC3\xA9\xFFz") == 13);
}

TEST_CASE("lossy decoding: one U+FFFD per maximal subpart") {
  // The example of Unicode §3.9 (Table 3-8) / WHATWG: 61 F1 80 80 E1 80 C2 62 80 63 80 BF 64.
  CHECK(rlhf::utf8_lossy("\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64") ==
        "a" + fffd + fffd + fffd + "b" + fffd + "c" + fffd + fffd + "d");
  CHECK(rlhf::utf8_lossy("\xF0\x9F\x98" "A") == fffd + "A");
  CHECK(rlhf::utf8_lossy("\xC0\xAF") == fffd + fffd);
  CHECK(rlhf::utf8_lossy("\xED\xA0\x80") == fffd + fffd + fffd);
  CHECK(rlhf::utf8_lossy("\xE2\x82") == fffd);
  CHECK(rlhf::utf8_lossy("ok") == "ok");
  // Against the brute-force reference on random bytes biased towards UTF-8 structure.
  rlhf::rng gen{{.seed = 8}};
  static constexpr unsigned char pool[] = {0x41, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC2, 0xDF,
                                           0xE0, 0xE1, 0xED, 0xEF, 0xF0, 0xF1, 0xF4, 0xF5, 0xFF, 0x20};
  for (int trial = 0; trial < 3000; ++trial) {
    std::string s(gen.uniform_index(12), '\0');
    for (char& c : s) c = static_cast<char>(pool[gen.uniform_index(sizeof pool)]);
    CAPTURE(s);
    const std::string lossy = rlhf::utf8_lossy(s);
    REQUIRE(lossy == reference_lossy(s));
    CHECK(rlhf::utf8_valid(lossy));
    CHECK(rlhf::utf8_valid(s) == (lossy == s));
  }
}

TEST_CASE("streaming: complete characters only, same text as one-shot on every split") {
  rlhf::utf8_lossy_stream st;
  CHECK(st.push("a\xE4").empty() == false);
  CHECK(st.pending() == 1);
  CHECK(st.push("\xB8").empty());
  CHECK(st.push("\xAD" "b") == "\xE4\xB8\xAD" "b");
  CHECK(st.pending() == 0);
  CHECK(st.push("\xF0\x9F").empty());
  CHECK(st.push("x") == fffd + "x");  // the incomplete sequence can no longer complete
  CHECK(st.push("\xE2\x82").empty());
  CHECK(st.finish() == fffd);
  CHECK(st.pending() == 0);
  CHECK(rlhf::utf8_incomplete_suffix("abc\xF0\x9F\x98") == 3);
  CHECK(rlhf::utf8_incomplete_suffix("abc\xF0\x9F\x98\x80") == 0);
  CHECK(rlhf::utf8_incomplete_suffix("\xC0") == 0);    // cannot start a sequence
  CHECK(rlhf::utf8_incomplete_suffix("\xE0\x80") == 0);  // already ill-formed
  CHECK(rlhf::utf8_incomplete_suffix("\x80\x80\x80") == 0);

  rlhf::rng gen{{.seed = 9}};
  static constexpr unsigned char pool[] = {0x41, 0x80, 0x9F, 0xA0, 0xBF, 0xC3, 0xE0, 0xE4, 0xED, 0xF0, 0xF4, 0xFF};
  for (int trial = 0; trial < 2000; ++trial) {
    std::string s(gen.uniform_index(16), '\0');
    for (char& c : s) c = static_cast<char>(pool[gen.uniform_index(sizeof pool)]);
    rlhf::utf8_lossy_stream stream;
    std::string out;
    std::size_t i = 0;
    while (i < s.size()) {
      const std::size_t k = 1 + gen.uniform_index(4);
      const std::string part = stream.push(std::string_view(s).substr(i, k));
      CHECK(rlhf::utf8_valid(part));
      out += part;
      i += k;
    }
    out += stream.finish();
    CAPTURE(s);
    REQUIRE(out == rlhf::utf8_lossy(s));
  }
}
