// Tests for <rlhf/tokenizer.hpp>: ids byte-exact with tiktoken on the fixtures of
// tests/data/tokenizer (made by tools/tokenizers/make_fixtures.py) for the four OpenAI encodings
// and GPT-2's files, special tokens (plain text, allowed, strict), invalid UTF-8 policies,
// decoding (exact, lossy, streaming), batch encoding, counting, round trips of random text,
// long unsplittable inputs, and argument errors.
#include <rlhf/tokenizer.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <rlhf/rng.hpp>

#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace {

using rlhf::bpe_tokenizer;
using rlhf::token_id;

const std::string data_dir = RLHF_TEST_DATA_DIR;

/// Each encoding is loaded once per process.
const bpe_tokenizer& openai(const std::string& name) {
  static std::map<std::string, std::unique_ptr<bpe_tokenizer>> cache;
  auto& slot = cache[name];
  if (!slot) slot = std::make_unique<bpe_tokenizer>(bpe_tokenizer::openai(name, data_dir + "/vocab/" + name + ".tiktoken"));
  return *slot;
}

std::string b64(const std::string& s) {
  std::string out;
  const char* problem = rlhf::detail::base64_decode(s, out);
  if (s.empty()) return {};
  REQUIRE(problem == nullptr);
  return out;
}

nlohmann::json fixture(const std::string& name) {
  std::ifstream in(data_dir + "/tokenizer/" + name + ".json");
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
}

std::vector<token_id> ids_of(const nlohmann::json& j) { return j.get<std::vector<token_id>>(); }

void check_fixtures(const bpe_tokenizer& tok, const std::string& encoding) {
  const nlohmann::json doc = fixture(encoding);
  REQUIRE(doc["cases"].size() >= 60);
  std::size_t specials_checked = 0;
  for (const auto& c : doc["cases"]) {
    const std::string input = b64(c["input"].get<std::string>());
    const std::vector<token_id> expected = ids_of(c["ordinary"]);
    CAPTURE(encoding);
    CAPTURE(c["name"].get<std::string>());
    CHECK(tok.encode(input) == expected);
    CHECK(tok.count(input) == expected.size());
    if (rlhf::utf8_valid(input)) CHECK(tok.decode(expected) == input);
    else CHECK(tok.decode(expected) == rlhf::utf8_lossy(input));
    if (c.contains("all_special")) {
      CHECK(tok.encode(input, {.allow_all_special = true}) == ids_of(c["all_special"]));
      ++specials_checked;
    }
  }
  CHECK(specials_checked >= 2);
}

}  // namespace

TEST_CASE("ids equal tiktoken's on the fixtures: r50k_base") { check_fixtures(openai("r50k_base"), "r50k_base"); }
TEST_CASE("ids equal tiktoken's on the fixtures: p50k_base") { check_fixtures(openai("p50k_base"), "p50k_base"); }
TEST_CASE("ids equal tiktoken's on the fixtures: cl100k_base") { check_fixtures(openai("cl100k_base"), "cl100k_base"); }
TEST_CASE("ids equal tiktoken's on the fixtures: o200k_base") { check_fixtures(openai("o200k_base"), "o200k_base"); }

TEST_CASE("GPT-2's encoder.json + vocab.bpe give r50k_base") {
  const bpe_tokenizer gpt2 =
      bpe_tokenizer::from_gpt2_files(data_dir + "/vocab/gpt2/encoder.json", data_dir + "/vocab/gpt2/vocab.bpe");
  const bpe_tokenizer& r50k = openai("r50k_base");
  REQUIRE(gpt2.vocab_size() == 50257);
  CHECK(gpt2.eos_id() == 50256);
  for (token_id id = 0; id < 50256; ++id) REQUIRE(gpt2.bytes_of(id) == r50k.bytes_of(id));
  check_fixtures(gpt2, "r50k_base");
  CHECK(bpe_tokenizer::openai("gpt2", data_dir + "/vocab/r50k_base.tiktoken").encode("hello world") ==
        std::vector<token_id>{31373, 995});
}

TEST_CASE("known ids") {
  const bpe_tokenizer& cl = openai("cl100k_base");
  CHECK(cl.encode("hello world") == std::vector<token_id>{15339, 1917});
  // tiktoken's documented example: special-token text is ordinary text unless allowed.
  CHECK(cl.encode("<|endoftext|>") == std::vector<token_id>{27, 91, 8862, 728, 428, 91, 29});
  CHECK(cl.encode("<|endoftext|>", {.allow_all_special = true}) == std::vector<token_id>{100257});
  CHECK(cl.vocab_size() == 100277);
  CHECK(cl.eos_id() == 100257);
  CHECK(cl.pad_id() == 100257);
  CHECK(openai("r50k_base").vocab_size() == 50257);
  CHECK(openai("p50k_base").vocab_size() == 50281);
  CHECK(openai("o200k_base").vocab_size() == 200019);
  CHECK(openai("o200k_base").eos_id() == 199999);
}

TEST_CASE("special tokens: allowed set, strict mode, matching rules") {
  const bpe_tokenizer& cl = openai("cl100k_base");
  const std::string text = "a<|endoftext|>b<|fim_prefix|>c";
  const std::vector<std::string> eot{"<|endoftext|>"};
  const std::vector<token_id> plain = cl.encode(text);
  CHECK(plain.size() > 10);
  CHECK(cl.decode(plain) == text);

  // Only the allowed one becomes a special id; the other stays text.
  const std::vector<token_id> some = cl.encode(text, {.allowed_special = eot});
  std::vector<token_id> expected = cl.encode("a");
  expected.push_back(100257);
  for (token_id id : cl.encode("b<|fim_prefix|>c")) expected.push_back(id);
  CHECK(some == expected);
  CHECK(cl.decode(some) == text);

  const std::vector<token_id> all = cl.encode(text, {.allow_all_special = true});
  CHECK(all == std::vector<token_id>{64, 100257, 65, 100258, 66});
  CHECK(cl.count(text, {.allow_all_special = true}) == 5);

  // Strict: a special that is not allowed throws, naming it and where it is.
  CHECK_THROWS_WITH_AS(cl.encode(text, {.strict = true}),
                       doctest::Contains("special token '<|endoftext|>' at byte 1"), rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(cl.encode(text, {.allowed_special = eot, .strict = true}),
                       doctest::Contains("'<|fim_prefix|>' at byte 15"), rlhf::invalid_argument);
  CHECK(cl.encode(text, {.allow_all_special = true, .strict = true}) == all);
  CHECK(cl.encode("no specials here", {.strict = true}) == cl.encode("no specials here"));

  // An allowed name that is not a special token of this tokenizer is an error, not ignored.
  const std::vector<std::string> bogus{"<|fim_prefix|>"};
  CHECK_THROWS_WITH_AS(openai("r50k_base").encode("x", {.allowed_special = bogus}),
                       doctest::Contains("not a special token"), rlhf::invalid_argument);

  // Adjacent and partial specials.
  CHECK(cl.encode("<|endoftext|><|endoftext|>", {.allow_all_special = true}) == std::vector<token_id>{100257, 100257});
  CHECK(cl.encode("<|endoftext|", {.allow_all_special = true}) == cl.encode("<|endoftext|"));
  CHECK(cl.decode(std::vector<token_id>{100276}) == "<|endofprompt|>");
}

TEST_CASE("invalid UTF-8: replace (default), keep_bytes, reject") {
  const bpe_tokenizer& cl = openai("cl100k_base");
  const std::string bad = "ok \xF0\x9F\x98 \xFF\xFEtext\xC0";
  CHECK(cl.encode(bad) == cl.encode(rlhf::utf8_lossy(bad)));
  CHECK(cl.encode(bad, {.on_invalid_utf8 = rlhf::invalid_utf8::replace}) == cl.encode(bad));

  const std::vector<token_id> kept = cl.encode(bad, {.on_invalid_utf8 = rlhf::invalid_utf8::keep_bytes});
  CHECK(cl.decode(kept) == bad);
  CHECK(cl.count(bad, {.on_invalid_utf8 = rlhf::invalid_utf8::keep_bytes}) == kept.size());

  CHECK_THROWS_WITH_AS(cl.encode(bad, {.on_invalid_utf8 = rlhf::invalid_utf8::reject}),
                       doctest::Contains("byte 0xF0 at offset 3"), rlhf::invalid_argument);
  CHECK(cl.encode("valid", {.on_invalid_utf8 = rlhf::invalid_utf8::reject}) == cl.encode("valid"));

  // Every byte value alone, and random byte strings: never a crash, keep_bytes round-trips.
  rlhf::rng gen{{.seed = 11}};
  for (int b = 0; b < 256; ++b) {
    const std::string one(1, static_cast<char>(b));
    CHECK(cl.decode(cl.encode(one, {.on_invalid_utf8 = rlhf::invalid_utf8::keep_bytes})) == one);
  }
  for (int trial = 0; trial < 200; ++trial) {
    std::string s(gen.uniform_index(40), '\0');
    for (char& c : s) c = static_cast<char>(gen.uniform_index(256));
    CHECK(cl.decode(cl.encode(s, {.on_invalid_utf8 = rlhf::invalid_utf8::keep_bytes})) == s);
    CHECK(cl.decode(cl.encode(s)) == rlhf::utf8_lossy(s));
  }
}

TEST_CASE("decode: exact bytes, lossy, streaming, unknown ids") {
  const bpe_tokenizer& cl = openai("cl100k_base");
  const std::string text = "caf\xC3\xA9 \xF0\x9F\x98\x80 \xE4\xB8\xAD\xE6\x96\x87 done";
  const std::vector<token_id> ids = cl.encode(text);
  CHECK(cl.decode(ids) == text);
  CHECK(cl.decode_lossy(ids) == text);

  // Byte-level tokens split a character: exact decode of a prefix is invalid UTF-8; lossy is not.
  const std::vector<token_id> emoji = cl.encode("\xF0\x9F\x98\x80");
  REQUIRE(emoji.size() >= 2);
  const std::string head = cl.decode(std::span(emoji).first(1));
  CHECK_FALSE(rlhf::utf8_valid(head));
  CHECK(cl.decode_lossy(std::span(emoji).first(1)) == rlhf::utf8_lossy(head));
  CHECK(rlhf::utf8_valid(cl.decode_lossy(std::span(emoji).first(1))));

  // Streaming: complete characters only; everything concatenated equals decode_lossy.
  rlhf::streaming_decoder stream(cl);
  std::string got;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    const std::string part = stream.push(ids[i]);
    CHECK(rlhf::utf8_valid(part));
    got += part;
  }
  got += stream.finish();
  CHECK(got == text);
  CHECK(stream.push(emoji[0]).empty());
  CHECK(stream.pending() > 0);
  CHECK(stream.finish() == "\xEF\xBF\xBD");

  // Random id sequences: streaming == lossy whatever the split.
  rlhf::rng gen{{.seed = 5}};
  for (int trial = 0; trial < 100; ++trial) {
    std::vector<token_id> r(1 + gen.uniform_index(12));
    for (token_id& id : r) id = static_cast<token_id>(gen.uniform_index(100256));
    rlhf::streaming_decoder s(cl);
    std::string out = s.push(std::span<const token_id>(r).first(r.size() / 2));
    for (std::size_t i = r.size() / 2; i < r.size(); ++i) out += s.push(r[i]);
    out += s.finish();
    CHECK(out == cl.decode_lossy(r));
  }

  // Unknown ids: holes, beyond the vocabulary, negative.
  const bpe_tokenizer& p50k = openai("p50k_base");
  CHECK(p50k.decode(std::vector<token_id>{50256}) == "<|endoftext|>");  // the hole is the special
  CHECK_THROWS_WITH_AS(cl.decode(std::vector<token_id>{15339, 100256}),
                       doctest::Contains("ids[1] = 100256 is not a token"), rlhf::invalid_argument);
  CHECK_THROWS_AS(cl.decode(std::vector<token_id>{-1}), rlhf::invalid_argument);
  CHECK_THROWS_AS(cl.decode(std::vector<token_id>{100277}), rlhf::invalid_argument);
  CHECK_THROWS_AS((void)cl.bytes_of(100261), rlhf::invalid_argument);
  CHECK_THROWS_AS(stream.push(-5), rlhf::invalid_argument);
  CHECK(cl.token_of("hello") == 15339);
  CHECK(cl.token_of("<|endoftext|>") == 100257);
  CHECK_FALSE(cl.token_of("no such token bytes at all").has_value());
  CHECK(cl.bytes_of(15339) == "hello");
}

TEST_CASE("round trip of random valid UTF-8 over a mixed alphabet") {
  // ASCII letters, digits, punctuation and every kind of space, accented letters, marks,
  // CJK, Arabic, emoji (with ZWJ and skin tones), U+0085, U+FEFF, U+3000, specials' text.
  const std::vector<std::string> alphabet = {
      "a", "b", "Z", "e", "0", "7", " ", " ", "  ", "\t", "\n", "\r\n", "'", "'s", "'LL", ".", ",", "!", "<|endoftext|>",
      "\xC3\xA9", "\xC3\x9F", "e\xCC\x81", "\xE4\xB8\xAD", "\xE6\x96\x87", "\xD8\xB9", "\xD7\xA9", "\xF0\x9F\x91\x8D",
      "\xF0\x9F\x8F\xBD", "\xE2\x80\x8D", "\xC2\x85", "\xEF\xBB\xBF", "\xE3\x80\x80", "\xC2\xA0", "\xE2\x85\xAB",
      "\xF0\x9D\x90\x80", "http://", "x86_64", "1234567", "HTMLParser", "//", "\\", "{", "}"};
  rlhf::rng gen{{.seed = 2024}};
  for (const char* name : {"r50k_base", "cl100k_base", "o200k_base"}) {
    const bpe_tokenizer& tok = openai(name);
    for (int trial = 0; trial < 150; ++trial) {
      std::string s;
      const auto n = gen.uniform_index(30);
      for (std::uint64_t i = 0; i < n; ++i) s += alphabet[gen.uniform_index(alphabet.size())];
      CAPTURE(s);
      const std::vector<token_id> ids = tok.encode(s);
      REQUIRE(tok.decode(ids) == s);
      CHECK(tok.count(s) == ids.size());
      for (token_id id : ids) CHECK(id < static_cast<token_id>(tok.vocab_size()));
    }
  }
}

TEST_CASE("encode_batch equals encode, whatever the thread count") {
  const bpe_tokenizer& o = openai("o200k_base");
  std::vector<std::string> owned;
  for (int i = 0; i < 37; ++i) owned.push_back("text number " + std::to_string(i * 7919) + " with <|endoftext|> " + std::string(static_cast<std::size_t>(i), 'x'));
  std::vector<std::string_view> texts(owned.begin(), owned.end());
  for (int threads : {1, 2, 4}) {
    const auto batch = o.encode_batch(rlhf::cpu_backend{.threads = threads}, texts);
    REQUIRE(batch.size() == texts.size());
    for (std::size_t i = 0; i < texts.size(); ++i) CHECK(batch[i] == o.encode(texts[i]));
    const auto special = o.encode_batch(rlhf::cpu_backend{.threads = threads}, texts, {.allow_all_special = true});
    for (std::size_t i = 0; i < texts.size(); ++i) CHECK(special[i] == o.encode(texts[i], {.allow_all_special = true}));
  }
  CHECK(o.encode_batch(rlhf::cpu, {}).empty());
  // Errors inside a worker reach the caller.
  CHECK_THROWS_AS(o.encode_batch(rlhf::cpu_backend{.threads = 2}, texts, {.strict = true}), rlhf::invalid_argument);
}

TEST_CASE("long unsplittable inputs round-trip") {
  // Timing of huge pieces is tested in tokenizer/bpe_test.cpp; here the whole pipeline.
  const bpe_tokenizer& cl = openai("cl100k_base");
  const std::string as(200 * 1024, 'a');
  const std::vector<token_id> ids = cl.encode(as);
  CHECK(ids.size() == as.size() / 8);  // "aaaaaaaa" is one token
  CHECK(cl.decode(ids) == as);
  std::string no_space(100 * 1024, 'x');
  rlhf::rng gen{{.seed = 3}};
  for (char& c : no_space) c = static_cast<char>('!' + gen.uniform_index(94));
  CHECK(cl.decode(cl.encode(no_space)) == no_space);
  CHECK(openai("r50k_base").decode(openai("r50k_base").encode(no_space)) == no_space);
}

TEST_CASE("loader and factory errors") {
  CHECK_THROWS_WITH_AS(bpe_tokenizer::openai("cl200k", data_dir + "/vocab/cl100k_base.tiktoken"),
                       doctest::Contains("unknown encoding 'cl200k'"), rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(bpe_tokenizer::openai("cl100k_base", data_dir + "/vocab/no_such_file.tiktoken"),
                       doctest::Contains("cannot open"), rlhf::format_error);
  CHECK_THROWS_WITH_AS(bpe_tokenizer::openai("cl100k_base", data_dir + "/vocab/r50k_base.tiktoken"),
                       doctest::Contains("has 50256 tokens but cl100k_base has 100256"), rlhf::format_error);
  std::string file;
  for (int b = 0; b < 256; ++b) {
    const unsigned char byte = static_cast<unsigned char>(b);
    static constexpr char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    file += std::string{t[byte >> 2], t[(byte & 3) << 4], '=', '='} + " " + std::to_string(b) + "\n";
  }
  // A minimal tokenizer from memory with a custom pattern and a special token.
  const bpe_tokenizer bytes_only = bpe_tokenizer::from_tiktoken(file + "YWI= 300\n", rlhf::pretokenizer::gpt2(), {{"<s>", 301}});
  CHECK(bytes_only.encode("abc") == std::vector<token_id>{300, 'c'});
  CHECK(bytes_only.vocab_size() == 302);
  CHECK(bytes_only.eos_id() == -1);
  CHECK(bytes_only.encode("<s>", {.allow_all_special = true}) == std::vector<token_id>{301});
  CHECK_THROWS_WITH_AS(bpe_tokenizer::from_tiktoken(file + "YWI= 200\n", rlhf::pretokenizer::gpt2(), {}),
                       doctest::Contains("<memory>:257: rank 200 is not greater than the previous rank 255"),
                       rlhf::format_error);
  // Special tokens must not clash with tokens or each other.
  CHECK_THROWS_WITH_AS(bpe_tokenizer::from_tiktoken(file, rlhf::pretokenizer::gpt2(), {{"<s>", 65}}),
                       doctest::Contains("which is the id of the token"), rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(bpe_tokenizer::from_tiktoken(file, rlhf::pretokenizer::gpt2(), {{"<s>", 300}, {"</s>", 300}}),
                       doctest::Contains("share an id"), rlhf::invalid_argument);
  CHECK_THROWS_AS(bpe_tokenizer::from_tiktoken(file, rlhf::pretokenizer::gpt2(), {{"", 300}}), rlhf::invalid_argument);
  // eos / pad can be set to known ids only.
  bpe_tokenizer t = bytes_only;
  t.set_eos_id(301);
  t.set_pad_id(0);
  CHECK(t.eos_id() == 301);
  CHECK(t.pad_id() == 0);
  CHECK_THROWS_WITH_AS(t.set_pad_id(299), doctest::Contains("id 299 is not a token"), rlhf::invalid_argument);
}

static_assert(rlhf::Tokenizer<rlhf::bpe_tokenizer>);
