// Tests for <rlhf/tokenizer/tiktoken_file.hpp>: the real rank files load with the right
// counts and holes, and every kind of malformed content throws rlhf::format_error naming the
// source, the line and the problem (never a crash).
#include <rlhf/tokenizer/tiktoken_file.hpp>

#include <doctest/doctest.h>

#include <rlhf/rng.hpp>

#include <string>

namespace {

const std::string vocab_dir = std::string(RLHF_TEST_DATA_DIR) + "/vocab/";

std::string b64_of_byte(int b) {
  static constexpr char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const auto byte = static_cast<unsigned>(b);
  return std::string{t[byte >> 2], t[(byte & 3) << 4], '=', '='};
}

/// The 256 single bytes with ranks 0..255, one per line.
std::string bytes_file() {
  std::string f;
  for (int b = 0; b < 256; ++b) f += b64_of_byte(b) + " " + std::to_string(b) + "\n";
  return f;
}

void check_error(const std::string& contents, const std::string& message) {
  CAPTURE(message);
  CHECK_THROWS_WITH_AS(rlhf::parse_tiktoken(contents, "test.tiktoken"), doctest::Contains(message.c_str()),
                       rlhf::format_error);
}

}  // namespace

TEST_CASE("the real rank files") {
  const rlhf::token_table p50k = rlhf::load_tiktoken(vocab_dir + "p50k_base.tiktoken");
  CHECK(p50k.size() == 50280);
  CHECK(p50k.id_bound() == 50281);
  CHECK_FALSE(p50k.contains_id(50256));  // the hole where <|endoftext|> lives
  CHECK(p50k.bytes_of(0) == "!");
  CHECK(p50k.find(" the") == 262);
  const rlhf::token_table r50k = rlhf::load_tiktoken(vocab_dir + "r50k_base.tiktoken");
  CHECK(r50k.size() == 50256);
  for (rlhf::token_id id = 0; id < 50256; ++id) {
    if (id == 50256) continue;
    REQUIRE(r50k.bytes_of(id) == p50k.bytes_of(id));  // p50k extends r50k
  }
}

TEST_CASE("accepted variations") {
  const std::string f = bytes_file();
  CHECK(rlhf::parse_tiktoken(f).size() == 256);
  CHECK(rlhf::parse_tiktoken(f + "\n\n").size() == 256);              // empty lines
  CHECK(rlhf::parse_tiktoken(f + "YWI= 1000").size() == 257);         // no final newline, holes
  std::string crlf;
  for (int b = 0; b < 256; ++b) crlf += b64_of_byte(b) + " " + std::to_string(b) + "\r\n";
  CHECK(rlhf::parse_tiktoken(crlf).size() == 256);
  const rlhf::token_table t = rlhf::parse_tiktoken(f + "YWJj 300\n");  // "abc", no padding
  CHECK(t.find("abc") == 300);
}

TEST_CASE("malformed content throws format_error naming source, line and problem") {
  const std::string f = bytes_file();
  check_error(f + "YWI=300\n", "test.tiktoken:257: expected 'base64 rank', got 'YWI=300'");
  check_error(f + "YWI= 300 1\n", "test.tiktoken:257: expected 'base64 rank'");
  check_error(f + "YW$= 300\n", "test.tiktoken:257: bad base64 'YW$=' (a character outside the base64 alphabet)");
  check_error(f + "YWI 300\n", "bad base64 'YWI' (base64 length is not a multiple of 4)");
  check_error(f + "Y=I= 300\n", "misplaced '='");
  check_error(f + "YWJ= 300\n", "non-zero padding bits");
  check_error(f + " 300\n", "test.tiktoken:257: bad base64 '' (empty base64)");
  check_error(f + "YWI= \n", "test.tiktoken:257: rank '' is not a number");
  check_error(f + "YWI= -3\n", "rank '-3' is not a number");
  check_error(f + "YWI= 3x\n", "rank '3x' is not a number");
  check_error(f + "YWI= 99999999\n", "rank 99999999 is not a number in [0, 16777215]");
  check_error(f + "YWI= 1234567890123\n", "is not a number in [0, 16777215]");
  check_error(f + "YWI= 255\n", "test.tiktoken:257: rank 255 is not greater than the previous rank 255");
  check_error(f + "YWI= 100\n", "rank 100 is not greater than the previous rank 255");
  check_error(f + "YWI= 300\nYWI= 301\n", "test.tiktoken:258: token 'ab' (rank 301) duplicates the bytes of rank 300");
  std::string missing;
  for (int b = 0; b < 256; ++b)
    if (b != 0x41) missing += b64_of_byte(b) + " " + std::to_string(b) + "\n";
  check_error(missing, "test.tiktoken: byte 0x41 is not a token");
  check_error("", "byte 0x00 is not a token");
  CHECK_THROWS_WITH_AS(rlhf::load_tiktoken(vocab_dir + "missing.tiktoken"), doctest::Contains("cannot open"),
                       rlhf::format_error);
  CHECK_THROWS_WITH_AS(rlhf::load_tiktoken(vocab_dir + "gpt2/vocab.bpe"), doctest::Contains("vocab.bpe:1:"),
                       rlhf::format_error);
}

TEST_CASE("random corruptions of a valid file never crash") {
  const std::string f = bytes_file() + "YWI= 300\nYWJj 301\n";
  rlhf::rng gen{{.seed = 17}};
  int rejected = 0;
  for (int trial = 0; trial < 300; ++trial) {
    std::string g = f;
    const auto edits = 1 + gen.uniform_index(4);
    for (std::uint64_t e = 0; e < edits; ++e) g[gen.uniform_index(g.size())] = static_cast<char>(gen.uniform_index(256));
    try {
      const rlhf::token_table t = rlhf::parse_tiktoken(g, "fuzz");
      CHECK(t.size() >= 256);
    } catch (const rlhf::format_error&) {
      ++rejected;
    }
  }
  CHECK(rejected > 200);
}
