// Tests for <rlhf/tokenizer/regex.hpp>: compile errors, matching, empty matches, invalid UTF-8
// subjects, the match and depth limits (errors naming the input offset), and the build without
// PCRE2.
#include <rlhf/tokenizer/regex.hpp>

#include <doctest/doctest.h>

#include <string>
#include <utility>
#include <vector>

namespace {
std::vector<std::string> matches(const rlhf::regex& re, std::string_view s) {
  std::vector<std::string> out;
  re.for_each_match(s, [&](rlhf::regex_match m) { out.emplace_back(s.substr(m.begin, m.end - m.begin)); });
  return out;
}
}  // namespace

#if defined(RLHF_HAS_PCRE2)

TEST_CASE("regex: a pattern PCRE2 rejects throws invalid_argument naming it, the message and the offset") {
  try {
    rlhf::regex bad("ab(c");
    FAIL("no exception");
  } catch (const rlhf::invalid_argument& e) {
    const std::string what = e.what();
    CHECK(what.find("rlhf::regex") != std::string::npos);
    CHECK(what.find("'ab(c'") != std::string::npos);
    CHECK(what.find("missing closing parenthesis") != std::string::npos);
    CHECK(what.find("offset 4") != std::string::npos);
  }
  CHECK_THROWS_AS(rlhf::regex(R"(\p{Nope})"), rlhf::invalid_argument);
  CHECK_THROWS_AS(rlhf::regex("a{2,1}"), rlhf::invalid_argument);
}

TEST_CASE("regex: UTF + UCP classes, successive matches, find") {
  const rlhf::regex re(R"(\p{L}+|\p{N}+|\s+)");
  CHECK(re.pattern() == R"(\p{L}+|\p{N}+|\s+)");
  // U+00E9 letter, U+0663 Arabic-Indic digit, U+3000 ideographic space, U+00A0.
  CHECK(matches(re, "caf\xC3\xA9 12\xD9\xA3\xE3\x80\x80x\xC2\xA0y") ==
        std::vector<std::string>{"caf\xC3\xA9", " ", "12\xD9\xA3", "\xE3\x80\x80", "x", "\xC2\xA0", "y"});
  const auto m = re.find("!!ab", 0);
  REQUIRE(m.has_value());
  CHECK(m->begin == 2);
  CHECK(m->end == 4);
  CHECK_FALSE(re.find("!!", 0).has_value());
  CHECK_FALSE(re.find("ab", 3).has_value());  // start past the end
  // U+FEFF is not \s under UCP; U+0085 is.
  const rlhf::regex ws(R"(\s)");
  CHECK_FALSE(ws.find("\xEF\xBB\xBF").has_value());
  CHECK(ws.find("\xC2\x85").has_value());
  // Possessive quantifiers and the lookahead the tokenizer patterns use.
  CHECK(matches(rlhf::regex(R"(\s+(?!\S)|\s+|\S+)"), "a   b") == std::vector<std::string>{"a", "  ", " ", "b"});
  CHECK(matches(rlhf::regex(R"(\p{N}{1,3}+)"), "1234567") == std::vector<std::string>{"123", "456", "7"});
}

TEST_CASE("regex: empty matches are skipped one code point at a time") {
  const rlhf::regex re("x*");
  CHECK(matches(re, "ab\xC3\xA9xxc") == std::vector<std::string>{"xx"});
  const auto m = re.find("abc");
  REQUIRE(m.has_value());
  CHECK(m->begin == 0);
  CHECK(m->end == 0);
}

TEST_CASE("regex: invalid UTF-8 in the subject is never matched and never an error") {
  const rlhf::regex re(R"([^\s]+)");
  CHECK(matches(re, "ab\xFF" "cd \xC3(") == std::vector<std::string>{"ab", "cd", "("});
  const rlhf::regex any(".");
  CHECK(matches(any, "\x80\xBF\xF5") == std::vector<std::string>{});
}

TEST_CASE("regex: hitting the match limit throws rlhf::error naming the input offset") {
  const std::string subject = "xx" + std::string(30, 'a') + "!";
  for (const bool jit : {true, false}) {
    CAPTURE(jit);
    const rlhf::regex re("(a+)+$", {.match_limit = 1000, .jit = jit});
    try {
      re.for_each_match(subject, [](rlhf::regex_match) {});
      FAIL("no exception");
    } catch (const rlhf::invalid_argument&) {
      FAIL("a limit is not an argument error");
    } catch (const rlhf::error& e) {
      const std::string what = e.what();
      CHECK(what.find("from input offset 0 of 33 bytes") != std::string::npos);
      CHECK(what.find("limit") != std::string::npos);
    }
  }
  // Default limits: the same subject completes (no match).
  const rlhf::regex relaxed("(a+)+$");
  CHECK_FALSE(relaxed.find("xx" + std::string(12, 'a') + "!").has_value());
}

TEST_CASE("regex: hitting the depth limit throws rlhf::error (JIT stack overflow reruns interpreted)") {
  const std::string subject(5000, 'a');
  for (const bool jit : {true, false}) {
    CAPTURE(jit);
    const rlhf::regex re("^(a(?1)?)$", {.depth_limit = 50, .jit = jit});
    try {
      re.for_each_match(subject, [](rlhf::regex_match) {});
      FAIL("no exception");
    } catch (const rlhf::error& e) {
      CHECK(std::string(e.what()).find("depth limit") != std::string::npos);
    }
  }
  const rlhf::regex fine("^(a(?1)?)$", {.jit = false});
  CHECK(fine.find(std::string(100, 'a')).has_value());
}

TEST_CASE("regex: move keeps the compiled pattern; versions are reported") {
  rlhf::regex a(R"(\d+)");
  rlhf::regex b = std::move(a);
  CHECK(b.pattern() == R"(\d+)");
  CHECK(matches(b, "a12b3") == std::vector<std::string>{"12", "3"});
  rlhf::regex c("x");
  c = std::move(b);
  CHECK(matches(c, "7") == std::vector<std::string>{"7"});
  CHECK_FALSE(rlhf::regex::pcre2_unicode_version().empty());
  CHECK_FALSE(rlhf::regex::pcre2_version().empty());
}

#else

TEST_CASE("regex: without PCRE2 constructing a regex throws rlhf::error saying so") {
  try {
    rlhf::regex re("a+");
    FAIL("no exception");
  } catch (const rlhf::error& e) {
    CHECK(std::string(e.what()).find("without PCRE2") != std::string::npos);
  }
  CHECK(rlhf::regex::pcre2_unicode_version().empty());
  (void)&matches;
}

#endif
