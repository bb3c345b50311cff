// Tests for <rlhf/tokenizer/gpt2_files.hpp>: GPT-2's encoder.json + vocab.bpe convert to exactly
// r50k_base.tiktoken, the byte alphabet, and every kind of malformed content throws
// rlhf::format_error naming the file, line and problem.
#include <rlhf/tokenizer/gpt2_files.hpp>
#include <rlhf/tokenizer/tiktoken_file.hpp>

#include <doctest/doctest.h>

#include <string>

namespace {

const std::string vocab_dir = std::string(RLHF_TEST_DATA_DIR) + "/vocab/";

/// encoder.json text for the 256 single bytes (ids = ranks) plus `more` members.
std::string bytes_encoder(const std::string& more = "") {
  const auto& a = rlhf::detail::gpt2_alphabet::get();
  std::string j = "{";
  for (int r = 0; r < 256; ++r) {
    const char32_t cp = a.to_code_point[a.rank_order[static_cast<std::size_t>(r)]];
    std::string key;
    if (cp == '"' || cp == '\\') key = std::string("\\") + static_cast<char>(cp);
    else if (cp < 0x80) key = std::string(1, static_cast<char>(cp));
    else {
      key += static_cast<char>(0xC0 | (cp >> 6));
      key += static_cast<char>(0x80 | (cp & 0x3F));
    }
    j += (r ? ", \"" : "\"") + key + "\": " + std::to_string(r);
  }
  return j + more + "}";
}

void check_error(const std::string& encoder, const std::string& merges, const std::string& message) {
  CAPTURE(message);
  CHECK_THROWS_WITH_AS(rlhf::parse_gpt2(encoder, merges), doctest::Contains(message.c_str()), rlhf::format_error);
}

}  // namespace

TEST_CASE("GPT-2's release files equal r50k_base.tiktoken") {
  const rlhf::gpt2_vocabulary v = rlhf::load_gpt2(vocab_dir + "gpt2/encoder.json", vocab_dir + "gpt2/vocab.bpe");
  const rlhf::token_table r50k = rlhf::load_tiktoken(vocab_dir + "r50k_base.tiktoken");
  REQUIRE(v.tokens.size() == r50k.size());
  for (rlhf::token_id id = 0; id < 50256; ++id) REQUIRE(v.tokens.bytes_of(id) == r50k.bytes_of(id));
  REQUIRE(v.specials.size() == 1);
  CHECK(v.specials[0].text == "<|endoftext|>");
  CHECK(v.specials[0].id == 50256);
}

TEST_CASE("the byte alphabet") {
  const auto& a = rlhf::detail::gpt2_alphabet::get();
  CHECK(a.to_code_point[' '] == U'\u0120');
  CHECK(a.to_code_point['\n'] == U'\u010A');
  CHECK(a.to_code_point['A'] == U'A');
  CHECK(a.to_code_point[0xAD] == U'\u0143');
  CHECK(a.rank_order[0] == '!');
  std::string bytes;
  CHECK(rlhf::detail::gpt2_text_to_bytes("\xC4\xA0the", bytes));
  CHECK(bytes == " the");
  CHECK_FALSE(rlhf::detail::gpt2_text_to_bytes("\xC5\x84", bytes));  // U+0144: outside
  CHECK_FALSE(rlhf::detail::gpt2_text_to_bytes("\xE2\x82\xAC", bytes));
  CHECK_FALSE(rlhf::detail::gpt2_text_to_bytes(" ", bytes));  // a raw space is not in the alphabet
}

TEST_CASE("small valid files, escapes, specials") {
  const rlhf::gpt2_vocabulary v =
      rlhf::parse_gpt2(bytes_encoder(", \"ab\": 256, \"\\u0120a\": 257, \"<|endoftext|>\": 258"),
                       "#version: 0.2\na b\n\xC4\xA0 a\n");
  CHECK(v.tokens.find("ab") == 256);
  CHECK(v.tokens.find(" a") == 257);
  REQUIRE(v.specials.size() == 1);
  CHECK(v.specials[0].id == 258);
  // No version line, CRLF, no final newline.
  CHECK(rlhf::parse_gpt2(bytes_encoder(", \"ab\": 256"), "a b\r\n").tokens.size() == 257);
  CHECK(rlhf::parse_gpt2(bytes_encoder(), "").tokens.size() == 256);
}

TEST_CASE("malformed files throw format_error naming the file, line and problem") {
  const std::string enc = bytes_encoder(", \"ab\": 256");
  check_error(enc, "#version: 0.2\nab\n", "vocab.bpe:2: expected a merge 'A B', got 'ab'");
  check_error(enc, "a  b\n", "vocab.bpe:1: expected a merge 'A B'");
  check_error(enc, "a b c\n", "expected a merge 'A B'");
  check_error(enc, "a \xE2\x82\xAC\n", "has a character outside GPT-2's byte alphabet");
  check_error(enc, "a b\nab xy\n", "vocab.bpe:2: merge 'ab xy': 'xy' is not a token");
  check_error(enc, "xy a\n", "'xy' is not a token");
  check_error(enc, "a b\na b\n", "vocab.bpe:2: merge 'a b' produces the token of rank 256 again");
  check_error(bytes_encoder(), "a b\n", "encoder.json: lists 256 of the 257 tokens");
  check_error(bytes_encoder(", \"ab\": 300"), "a b\n", "token 'ab' has id 300 but rank 256");
  check_error(bytes_encoder(", \"ab\": 256, \"cd\": 257"), "a b\n", "token 'cd' is neither a single byte nor produced");
  check_error(bytes_encoder(", \"ab\": 256, \"ab\": 256"), "a b\n", "duplicate key 'ab'");
  check_error(bytes_encoder(", \"<|endoftext|>\": 256"), "a b\n", "which is the id of a merge token");
  check_error(bytes_encoder(", \"\xE2\x82\xAC\": 256"), "", "has a character outside");
  // JSON syntax: line and column.
  check_error("{\"a\": 64,\n \"b\" 2}", "", "encoder.json:2:6: expected ':'");
  check_error("[", "", "encoder.json:1:1: expected '{'");
  check_error("{\"a\": 64", "", "expected '}' before the end of the file");
  check_error("{\"a\": -1}", "", "negative id");
  check_error("{\"a\": 1.5}", "", "expected an integer id");
  check_error("{\"a\": 99999999999}", "", "id out of range");
  check_error("{\"a\": \"x\"}", "", "expected an integer id");
  check_error("{\"a\\q\": 1}", "", "bad escape");
  check_error("{\"\\ud800\": 1}", "", "lone surrogate");
  check_error("{\"\\u12\": 1}", "", "bad \\u escape");
  check_error("{\"a\": 64} x", "", "unexpected text after the object");
  check_error("{\"a", "", "unterminated string");
  check_error("{\"a\x01\": 1}", "", "control character");
  CHECK_THROWS_WITH_AS(rlhf::load_gpt2(vocab_dir + "gpt2/none.json", vocab_dir + "gpt2/vocab.bpe"),
                       doctest::Contains("cannot open"), rlhf::format_error);
}
