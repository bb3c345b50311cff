// Tests for <rlhf/tokenizer/pretokenizer.hpp>: known splits of the three built-in patterns, the
// pattern aliases of from_regex(), and the scanners against PCRE2 (the same pattern strings
// compiled by pretokenizer::regex_only) on every code point in context, tricky strings, random
// strings, corpus excerpts and invalid UTF-8; linear time on adversarial inputs.
#include <rlhf/rng.hpp>
#include <rlhf/tokenizer/pretokenizer.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <time.h>

namespace {

namespace u = rlhf::unicode;
using P = rlhf::pretokenizer_patterns;
using strings = std::vector<std::string>;

strings pieces(const rlhf::pretokenizer& pre, std::string_view text) {
  strings out;
  pre.split(text, [&](std::string_view piece) { out.emplace_back(piece); });
  return out;
}

std::string utf8(char32_t cp) {
  char buf[4];
  const std::uint32_t n = u::encode_utf8(cp, buf);
  return std::string(buf, n);
}

std::string printable(std::string_view s) {
  std::string out;
  for (const unsigned char c : s) {
    if (c >= 0x20 && c < 0x7F && c != '\\') {
      out += static_cast<char>(c);
    } else {
      const char* hex = "0123456789ABCDEF";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

// Every pattern string the scanners claim to reproduce.
const std::vector<std::string_view>& all_patterns() {
  static const std::vector<std::string_view> p = {P::gpt2,          P::gpt2_original,       P::gpt2_tiktoken_old,
                                                  P::cl100k,        P::cl100k_legacy,       P::cl100k_tiktoken_old,
                                                  P::o200k};
  return p;
}

// Checks the invariants every split must keep: non-empty pieces that concatenate to the text.
void check_cover(const strings& ps, std::string_view text) {
  std::string joined;
  for (const auto& p : ps) {
    CHECK_FALSE(p.empty());
    joined += p;
  }
  CHECK(joined == text);
}

}  // namespace

TEST_CASE("pretokenizer: built-in kinds and patterns") {
  CHECK(rlhf::pretokenizer::gpt2().kind() == rlhf::pretokenizer_kind::gpt2);
  CHECK(rlhf::pretokenizer::cl100k().kind() == rlhf::pretokenizer_kind::cl100k);
  CHECK(rlhf::pretokenizer::o200k().kind() == rlhf::pretokenizer_kind::o200k);
  CHECK(rlhf::pretokenizer::gpt2().pattern() == P::gpt2);
  CHECK(rlhf::pretokenizer::cl100k().pattern() == P::cl100k);
  CHECK(rlhf::pretokenizer::o200k().pattern() == P::o200k);
}

TEST_CASE("pretokenizer: from_regex runs the scanner for the listed spellings only") {
  using K = rlhf::pretokenizer_kind;
  CHECK(rlhf::pretokenizer::from_regex(P::gpt2).kind() == K::gpt2);
  CHECK(rlhf::pretokenizer::from_regex(P::gpt2_original).kind() == K::gpt2);
  CHECK(rlhf::pretokenizer::from_regex(P::gpt2_tiktoken_old).kind() == K::gpt2);
  CHECK(rlhf::pretokenizer::from_regex(P::cl100k).kind() == K::cl100k);
  CHECK(rlhf::pretokenizer::from_regex(P::cl100k_legacy).kind() == K::cl100k);
  CHECK(rlhf::pretokenizer::from_regex(P::cl100k_tiktoken_old).kind() == K::cl100k);
  CHECK(rlhf::pretokenizer::from_regex(P::o200k).kind() == K::o200k);
  CHECK(rlhf::pretokenizer::from_regex(P::cl100k_legacy).pattern() == P::cl100k_legacy);
#if defined(RLHF_HAS_PCRE2)
  const auto other = rlhf::pretokenizer::from_regex(std::string(P::gpt2) + " ");
  CHECK(other.kind() == K::regex);
  CHECK_THROWS_AS(rlhf::pretokenizer::from_regex("(unclosed"), rlhf::invalid_argument);
#else
  CHECK_THROWS_AS(rlhf::pretokenizer::from_regex(R"(\p{L}+)"), rlhf::error);
#endif
}

TEST_CASE("pretokenizer: every listed spelling yields non-empty pieces covering the text") {
  const std::string text = "It's 2024:\r\n  caf" + utf8(0xE9) + utf8(0x0301) + " " + utf8(0x4E00) + utf8(0x3000) +
                           "x  \n\n" + utf8(0x1F600) + "!!/ \xFF" + "  ";
  for (const auto pattern : all_patterns()) {
    CAPTURE(pattern);
    const auto pre = rlhf::pretokenizer::from_regex(pattern);
    CHECK(pre.kind() != rlhf::pretokenizer_kind::regex);
    check_cover(pieces(pre, text), text);
    CHECK(pre.split(text).size() == pieces(pre, text).size());
  }
}

TEST_CASE("pretokenizer: known splits of the three patterns") {
  const auto gpt2 = rlhf::pretokenizer::gpt2();
  const auto cl100k = rlhf::pretokenizer::cl100k();
  const auto o200k = rlhf::pretokenizer::o200k();
  const auto legacy = rlhf::pretokenizer::from_regex(P::cl100k_legacy);

  const std::string a = "Hello world's  end\n\n  x";
  CHECK(pieces(gpt2, a) == strings{"Hello", " world", "'s", " ", " end", "\n\n ", " x"});
  CHECK(pieces(cl100k, a) == strings{"Hello", " world", "'s", " ", " end", "\n\n", " ", " x"});
  CHECK(pieces(o200k, a) == strings{"Hello", " world's", " ", " end", "\n\n", " ", " x"});

  const std::string b = "I'M don'T 1234567 x\n  ";
  CHECK(pieces(gpt2, b) == strings{"I", "'", "M", " don", "'", "T", " 1234567", " x", "\n  "});
  CHECK(pieces(cl100k, b) == strings{"I", "'M", " don", "'T", " ", "123", "456", "7", " x", "\n  "});
  CHECK(pieces(legacy, b) == strings{"I", "'M", " don", "'T", " ", "123", "456", "7", " x", "\n", "  "});
  CHECK(pieces(o200k, b) == strings{"I'M", " don'T", " ", "123", "456", "7", " x", "\n", "  "});

  CHECK(pieces(o200k, "HTMLParser camelCase") == strings{"HTMLParser", " camel", "Case"});
  CHECK(pieces(cl100k, "HTMLParser camelCase") == strings{"HTMLParser", " camelCase"});
  // A combining mark is not \p{L}: gpt2/cl100k split it off, o200k keeps it in the word.
  CHECK(pieces(gpt2, "e\xCC\x81t\xC3\xA9") == strings{"e", "\xCC\x81", "t\xC3\xA9"});
  CHECK(pieces(cl100k, "e\xCC\x81t\xC3\xA9") == strings{"e", "\xCC\x81t\xC3\xA9"});
  CHECK(pieces(o200k, "e\xCC\x81t\xC3\xA9") == strings{"e\xCC\x81t\xC3\xA9"});
  // U+3000 is White_Space; U+FEFF is not.
  CHECK(pieces(cl100k, "\xE3\x80\x80\xE3\x80\x80" "a") == strings{"\xE3\x80\x80", "\xE3\x80\x80" "a"});
  CHECK(pieces(gpt2, " \xEF\xBB\xBF ") == strings{" \xEF\xBB\xBF", " "});
  // cl100k: one non-letter, non-CR/LF character may lead a word.
  CHECK(pieces(cl100k, "(foo)\tbar\nbaz") == strings{"(foo", ")", "\tbar", "\n", "baz"});
  // o200k: slashes and newlines can trail a punctuation run.
  CHECK(pieces(o200k, "a!!\n/b") == strings{"a", "!!\n/", "b"});
  CHECK(pieces(gpt2, "") == strings{});
  CHECK(gpt2.split("x y").size() == 2);
}

TEST_CASE("pretokenizer: invalid UTF-8 never fails; each invalid byte acts as one 'other' character") {
  const auto gpt2 = rlhf::pretokenizer::gpt2();
  CHECK(pieces(gpt2, "a\xFF!b") == strings{"a", "\xFF!", "b"});
  CHECK(pieces(gpt2, "ab\xE2\x82") == strings{"ab", "\xE2\x82"});
  CHECK(pieces(rlhf::pretokenizer::o200k(), "x \xC0\x80y") == strings{"x", " \xC0\x80", "y"});
  // Random byte strings: no crash, exact cover, and the same boundaries as the text with every
  // invalid byte replaced by a valid 'other' character (U+00A9).
  rlhf::rng gen{{.seed = 7}};
  const char alphabet[] = {'a', 'Z', '1', ' ', '\n', '\'', 's', '!', '/', '\r', '\t'};
  for (const auto& pre : {rlhf::pretokenizer::gpt2(), rlhf::pretokenizer::cl100k(), rlhf::pretokenizer::o200k()}) {
    for (int i = 0; i < 1000; ++i) {
      std::string s;
      const auto n = gen.uniform_index(24);
      for (std::uint64_t k = 0; k < n; ++k) {
        if (gen.uniform_index(3) == 0)
          s += static_cast<char>(0x80 + gen.uniform_index(0x80));
        else
          s += alphabet[gen.uniform_index(sizeof alphabet)];
      }
      const strings ps = pieces(pre, s);
      check_cover(ps, s);
      // Replace each escaped byte by U+00A9 and map boundaries back.
      std::string r;
      std::vector<std::size_t> original_offset;  // r offset -> s offset, at code point starts
      for (std::size_t at = 0; at < s.size();) {
        const u::decoded d = u::decode_utf8(s.data() + at, s.data() + s.size());
        original_offset.push_back(at);
        if (u::is_escaped_byte(d.code_point)) {
          r += "\xC2\xA9";
          original_offset.push_back(at);  // second byte of U+00A9, never a boundary
        } else {
          r.append(s, at, d.length);
          for (std::uint32_t k = 1; k < d.length; ++k) original_offset.push_back(at + k);
        }
        at += d.length;
      }
      original_offset.push_back(s.size());
      std::vector<std::size_t> want, got;
      std::size_t pos = 0;
      for (const auto& p : pieces(pre, r)) want.push_back(original_offset[pos += p.size()]);
      pos = 0;
      for (const auto& p : ps) got.push_back(pos += p.size());
      CAPTURE(printable(s));
      CHECK(got == want);
    }
  }
}

TEST_CASE("pretokenizer: time is linear in the input on adversarial inputs") {
  // Each input at n and 4n bytes, timed in thread CPU time (best of three, so a loaded machine
  // does not fail the test): linear time gives a ratio near 4, quadratic near 16.
  rlhf::rng gen{{.seed = 11}};
  const std::string b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const std::string mix = "aZ1!'/\xC3\xA9\xE4\xB8\x80\xCC\x81";
  auto make = [&](int which, std::size_t n) {
    std::string s;
    s.reserve(n + 8);
    while (s.size() < n) {
      switch (which) {
        case 0: s += 'a'; break;
        case 1: s += b64[gen.uniform_index(b64.size())]; break;
        case 2: s += mix[gen.uniform_index(mix.size())]; break;  // no whitespace (bytes, may be invalid)
        case 3: s += ' '; break;
        case 4: s += "\n "; break;
        case 5: s += '7'; break;
        case 6: s += "A\xC2\xAA"; break;  // Lu Lo: o200k backtracks into the upper run
        case 7: s += "\xCC\x81"; break;   // combining marks
        default: s += "'"; break;
      }
    }
    return s;
  };
  auto cpu_seconds = [] {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
  };
  const std::size_t n = 16 * 1024;
  for (const auto& pre : {rlhf::pretokenizer::gpt2(), rlhf::pretokenizer::cl100k(), rlhf::pretokenizer::o200k()}) {
    for (int which = 0; which < 9; ++which) {
      const std::string small = make(which, n), large = make(which, 4 * n);
      auto time = [&](const std::string& s) {
        double best = 1e30;
        for (int r = 0; r < 3; ++r) {
          std::size_t count = 0;
          const double t0 = cpu_seconds();
          pre.split(s, [&count](std::string_view) { ++count; });
          best = std::min(best, cpu_seconds() - t0);
          CHECK(count > 0);
        }
        return best;
      };
      const double ratio = time(large) / time(small);
      CAPTURE(static_cast<int>(pre.kind()));
      CAPTURE(which);
      CHECK(ratio < 8.0);
    }
  }
}

#if defined(RLHF_HAS_PCRE2)

namespace {

// Scanner against PCRE2 on one text, for every pattern string; reports the first difference.
struct engines {
  std::string_view pattern;
  rlhf::pretokenizer fast, ref;
};
const std::vector<engines>& all_engines() {
  static const std::vector<engines> e = [] {
    std::vector<engines> v;
    for (const auto pattern : all_patterns())
      v.push_back({pattern, rlhf::pretokenizer::from_regex(pattern), rlhf::pretokenizer::regex_only(pattern)});
    return v;
  }();
  return e;
}

void check_against_pcre2(std::string_view text, const char* what) {
  for (const auto& [pattern, fast_pre, ref_pre] : all_engines()) {
    std::vector<std::size_t> fast_ends, ref_ends;
    std::size_t at = 0;
    fast_pre.split(text, [&](std::string_view p) { fast_ends.push_back(at += p.size()); });
    at = 0;
    ref_pre.split(text, [&](std::string_view p) { ref_ends.push_back(at += p.size()); });
    if (fast_ends == ref_ends) continue;
    const strings fast = pieces(fast_pre, text);
    const strings ref = pieces(ref_pre, text);
    std::size_t i = 0;
    while (i < fast.size() && i < ref.size() && fast[i] == ref[i]) ++i;
    CAPTURE(what);
    CAPTURE(pattern);
    CAPTURE(printable(text.substr(0, 200)));
    CAPTURE(i);
    CHECK(printable(i < fast.size() ? fast[i] : "<end>") == printable(i < ref.size() ? ref[i] : "<end>"));
  }
}

// Code points whose classes differ between the generated tables and PCRE2's own Unicode tables.
const std::vector<char32_t>& pcre2_disagreements() {
  static const std::vector<char32_t> result = [] {
    std::string all;
    std::vector<char32_t> cp_at;  // byte offset -> code point
    for (char32_t cp = 0; cp <= u::max_code_point; ++cp) {
      if (cp >= 0xD800 && cp <= 0xDFFF) continue;
      const std::string s = utf8(cp);
      all += s;
      cp_at.insert(cp_at.end(), s.size(), cp);
    }
    std::vector<std::uint8_t> pcre(u::max_code_point + 1, 0);
    const std::pair<const char*, std::uint8_t> classes[] = {
        {R"(\p{L}+)", u::char_class::letter},
        {R"(\p{N}+)", u::char_class::number},
        {R"(\s+)", u::char_class::white_space},
        {R"(\p{M}+)", u::char_class::mark},
        {R"([\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+)", u::char_class::upper},
        {R"([\p{Ll}\p{Lm}\p{Lo}\p{M}]+)", u::char_class::lower},
        {R"([\r\n]+)", u::char_class::cr_lf},
    };
    for (const auto& [pattern, bit] : classes) {
      rlhf::regex re(pattern);
      re.for_each_match(all, [&](rlhf::regex_match m) {
        for (std::size_t i = m.begin; i < m.end; ++i) pcre[cp_at[i]] |= bit;
      });
    }
    std::vector<char32_t> diff;
    for (char32_t cp = 0; cp <= u::max_code_point; ++cp) {
      if (cp >= 0xD800 && cp <= 0xDFFF) continue;
      if (pcre[cp] != u::classes(cp)) diff.push_back(cp);
    }
    return diff;
  }();
  return result;
}

bool pcre2_agrees(char32_t cp) {
  const auto& d = pcre2_disagreements();
  return !std::binary_search(d.begin(), d.end(), cp);
}

}  // namespace

TEST_CASE("pretokenizer vs PCRE2: classes agree on every code point except those new in Unicode 15.0") {
  const auto& diff = pcre2_disagreements();
  CAPTURE(rlhf::regex::pcre2_unicode_version());
  // PCRE2 10.42 has Unicode 14.0: the differences must be code points PCRE2 leaves unassigned.
  const rlhf::regex unassigned(R"(^\p{Cn}$)");
  std::size_t checked = 0;
  for (const char32_t cp : diff) {
    CAPTURE(static_cast<std::uint32_t>(cp));
    if (cp == 0x180E) {
      // PCRE2's \s is "Z or h/v space" and its horizontal-space list keeps U+180E (a space
      // before Unicode 6.3); White_Space, Rust's and Oniguruma's \s do not include it.
      CHECK_FALSE(u::is_white_space(cp));
      CHECK(rlhf::regex(R"(^\s$)").find(utf8(cp)).has_value());
    } else {
      CHECK(u::category(cp) != u::general_category::Cn);
      CHECK(unassigned.find(utf8(cp)).has_value());
    }
    ++checked;
  }
  CHECK(checked == diff.size());
  if (rlhf::regex::pcre2_unicode_version() == u::unicode_version) CHECK(diff.size() <= 1);
  // Unicode 15.0 letters PCRE2 10.42 does not know.
  if (rlhf::regex::pcre2_unicode_version().rfind("14.", 0) == 0) {
    CHECK_FALSE(pcre2_agrees(0x31350));
    CHECK_FALSE(pcre2_agrees(0x11F04));
  }
}

TEST_CASE("pretokenizer vs PCRE2: every code point between context characters") {
  const std::vector<std::string> contexts = {" ",      "'",    "1",    "a",  "A",     "\n",     "'s ", "  ",
                                             "\r\n",   "!",    "/",    "",   "\xCC\x81", "\xC2\xA0", "x'LL", "\xC5\xBF",
                                             " '",     "\t",   "7 ",   "\n\n ", "\xE3\x80\x80"};
  std::string text;
  std::size_t k = 0, count = 0;
  for (char32_t cp = 0; cp <= u::max_code_point; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    // Planes 0, 1 and 14 in full; the CJK planes and the unassigned/private planes sampled.
    const char32_t plane = cp >> 16;
    if (plane == 1 && cp % 2 != 0 && u::category(cp) == u::general_category::Cn) continue;
    if ((plane == 2 || plane == 3) && cp % 31 != 0) continue;
    if (plane == 14 && cp % 5 != 0) continue;
    if (plane >= 4 && plane != 14 && cp % 251 != 0) continue;
    if (!pcre2_agrees(cp)) continue;
    text += utf8(cp);
    text += contexts[k++ % contexts.size()];
    ++count;
    if (text.size() > (1u << 16)) {
      check_against_pcre2(text, "code point sweep");
      text.clear();
    }
  }
  check_against_pcre2(text, "code point sweep");
  CHECK(count > 100'000);
}

TEST_CASE("pretokenizer vs PCRE2: every table class next to every context") {
  // One representative per (General_Category, White_Space) value that PCRE2 classifies the same.
  std::vector<char32_t> reps;
  std::vector<bool> seen(64, false);
  for (char32_t cp = 0; cp <= u::max_code_point; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    const auto key = static_cast<std::size_t>(u::detail::table_byte(cp));
    if (!seen[key] && pcre2_agrees(cp)) {
      seen[key] = true;
      reps.push_back(cp);
    }
  }
  for (const char32_t extra : std::initializer_list<char32_t>{U'\'', U's', U'S', U'l', U'\r', U'\n', U'/', U' ', U'0', 0x017F, 0x0085, 0xFEFF,
                               0x3000, 0x00A0, 0x200D, 0x1F600, 0x02B0, 0x01C5, 0x0301})
    reps.push_back(extra);
  CHECK(reps.size() > 40);
  for (const char32_t x : reps) {
    for (const char32_t y : reps) {
      const std::string X = utf8(x), Y = utf8(y);
      const std::string text = Y + X + " " + X + X + Y + "\n" + Y + Y + X + "'" + X + "ll" + Y;
      check_against_pcre2(text, "class pairs");
    }
  }
}

TEST_CASE("pretokenizer vs PCRE2: tricky strings") {
  std::vector<std::string> tricky = {
      "", " ", "  ", "   ", "\n", "\n\n", "\r\n", " \n", "\n ", "\n  ", "a ", "a  ", "a   ", " a", "  a", "   a",
      "\n\n  x", "x\n  ", "x \n \n ", "x\t\t", "\t\tx", " \t\n\r\x0B\x0C", "a\r\n\r\nb", "a\r\rb", " \r\n x",
      "'s 'S 't 'T 're 'RE 'Re 've 'VE 'm 'M 'll 'LL 'Ll 'lL 'd 'D", "don't DON'T I'm you're we'LL",
      "''s '''", "'", "'x", "x'", "x's's", "'\xC5\xBF", "x'\xC5\xBF", "'  s", "' s", "''ll",
      "1", "12", "123", "1234", "12345", "123456", "1234567", "12345678", "123456789", "1234567890",
      " 1", " 12345", "a1234b", "\xD9\xA1\xD9\xA2\xD9\xA3\xD9\xA4", "\xC2\xBD\xC2\xB2\xE2\x91\xA0\xE2\x85\xAB",
      "x1,234.56", "v2.0.1-rc3",
      "!\xC2\x85!", "a\xC2\x85" "b", "\xC2\x85\xC2\x85x", " \xEF\xBB\xBF x", "\xEF\xBB\xBF\xEF\xBB\xBF",
      "!\xE3\x80\x80!", "a\xE3\x80\x80\xE3\x80\x80" "a", "\xC2\xA0!", "!\xC2\xA0", "a\xC2\xA0\xC2\xA0" "b",
      "\xE2\x80\xA8x", "x\xE2\x80\xA9", "\xE1\x9A\x80" "a",
      "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7",      // family ZWJ
      "\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD ok", " \xF0\x9F\x98\x80\xF0\x9F\x98\x80x",   // skin tone, emoji run
      "\xE4\xBD\xA0\xE5\xA5\xBD\xEF\xBC\x8C\xE4\xB8\x96\xE7\x95\x8C\xE3\x80\x82",      // CJK + fullwidth punct
      "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE3\x83\x86\xE3\x82\xAD\xE3\x82\xB9\xE3\x83\x88",
      "\xD9\x85\xD8\xB1\xD8\xAD\xD8\xA8\xD8\xA7 \xD8\xA8\xD9\x90\xD8\xA7\xD9\x84\xD8\xB9\xD9\x8E\xD8\xA7\xD9\x84\xD9\x8E\xD9\x85",
      "\xD7\xA9\xD7\x9C\xD7\x95\xD7\x9D, \xD7\xA2\xD7\x95\xD7\x9C\xD7\x9D!",
      "\xE0\xA4\xA8\xE0\xA4\xAE\xE0\xA4\xB8\xE0\xA5\x8D\xE0\xA4\xA4\xE0\xA5\x87",       // Devanagari with marks
      "\xE0\xB8\xAA\xE0\xB8\xA7\xE0\xB8\xB1\xE0\xB8\xAA\xE0\xB8\x94\xE0\xB8\xB5",       // Thai
      "a\xCC\x81\xCC\x82" "b", " \xCC\x81", "\xCC\x81" "a", "'\xCC\x81s", "A\xCC\x81" "BC\xCC\x81" "de",
      "HTMLParser getHTTPResponseCode iPhone McDONALD'S \xC7\x85" "abc \xC7\x85\xC7\x85", "ABC'S abc'S Abc'd",
      "\xCA\xB0\xCA\xB0" "A" "\xCA\xB0" "a", "A\xC2\xAA" "A", "\xC2\xAA\xC2\xAA", "x/y//z", "a!/\n/b", "?!\r\n\r\n",
      "int main() {\n    return 0;\n}\n", "def f(x):\n\tif x:\n\t\treturn x  # c\n", "<|endoftext|>",
      "\x01\x02\x1F\x7F", std::string("a\0b", 3), "!!!   ???", "...\n\n\n", " .\n",
  };
  for (const auto& t : tricky) check_against_pcre2(t, "tricky");
}

TEST_CASE("pretokenizer vs PCRE2: random strings over a mixed alphabet") {
  const std::vector<std::string> alphabet = {
      "a", "b", "Z", "Q", "s", "S", "t", "l", "L", "e", "v", "r", "R", "d", "m", "'", "'", " ", " ", " ", "\n",
      "\r", "\t", "0", "5", "9", "!", ".", "/", "-", "_", "\xC3\xA9", "\xC3\x89", "\xC5\xBF", "\xC7\x85", "\xCA\xB0",
      "\xC2\xAA", "\xCC\x81", "\xE0\xA5\x8D", "\xC2\xA0", "\xC2\x85", "\xE3\x80\x80", "\xE2\x80\xA8", "\xEF\xBB\xBF",
      "\xE2\x80\x8D", "\xE2\x80\x8B", "\xE4\xB8\x80", "\xD8\xA7", "\xD9\xA3", "\xC2\xBD", "\xE2\x85\xAB",
      "\xF0\x9F\x98\x80", "\xF0\x9F\x8F\xBD", "\xF0\x9D\x90\x80", "\xF0\x9D\x90\x9A", "\xF0\xA0\x80\x80"};
  rlhf::rng gen{{.seed = 2024}};
  for (int i = 0; i < 3000; ++i) {
    std::string s;
    const auto n = gen.uniform_index(20);
    for (std::uint64_t k = 0; k < n; ++k) s += alphabet[gen.uniform_index(alphabet.size())];
    check_against_pcre2(s, "random");
  }
}

TEST_CASE("pretokenizer vs PCRE2: corpus excerpts (English, multilingual, code)") {
  std::ifstream in(std::string(RLHF_TEST_DATA_DIR) + "/pretokenizer/corpus_excerpts.txt", std::ios::binary);
  REQUIRE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  REQUIRE(text.size() > 20000);
  check_against_pcre2(text, "corpus excerpts");
  for (const auto pattern : all_patterns()) check_cover(pieces(rlhf::pretokenizer::from_regex(pattern), text), text);
}

TEST_CASE("pretokenizer: PCRE2 patterns emit gaps as their own pieces and report limits") {
  const auto words = rlhf::pretokenizer::from_regex(R"(\p{L}+)");
  CHECK(words.kind() == rlhf::pretokenizer_kind::regex);
  CHECK(pieces(words, "  ab, cd!") == strings{"  ", "ab", ", ", "cd", "!"});
  CHECK(pieces(words, "ab\xFF\xFE" "cd") == strings{"ab", "\xFF\xFE", "cd"});
  CHECK(pieces(words, "") == strings{});
  const auto slow = rlhf::pretokenizer::from_regex("(a+)+$", {.match_limit = 1000});
  CHECK_THROWS_AS(slow.split("x" + std::string(30, 'a') + "!"), rlhf::error);
  // Copies share the compiled pattern.
  const auto copy = words;
  CHECK(pieces(copy, "a b") == strings{"a", " ", "b"});
}

#endif
