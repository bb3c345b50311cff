// Tests for <rlhf/tokenizer/hf_json.hpp> and <rlhf/tokenizer/added_tokens.hpp>: ids byte-exact
// with Hugging Face `tokenizers` on the fixtures tests/data/tokenizer/hf_{gpt2,cl100k}.json (made
// by tools/tokenizers/make_hf_fixtures.py) for the two real tokenizer.json files, with
// add_prefix_space and extra added tokens (lstrip, rstrip, single_word, normalized); every
// unsupported construct rejected with a format_error naming the JSON path; save → load round
// trips; the added-token matcher's rules on small cases.
//
// The two real files are megabytes of JSON: unoptimised (the Debug preset) nlohmann's parser and
// the loader would take most of a minute here, so this file asks GCC to optimise what it compiles.
#if defined(__GNUC__) && !defined(__clang__) && !defined(__OPTIMIZE__)
#pragma GCC optimize("O2")
#endif
#include <rlhf/tokenizer/hf_json.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <rlhf/concepts.hpp>
#include <rlhf/tokenizer.hpp>

#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace {

using rlhf::hf_tokenizer;
using rlhf::token_id;
using json = nlohmann::json;

static_assert(rlhf::Tokenizer<hf_tokenizer>);

const std::string data_dir = RLHF_TEST_DATA_DIR;

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "cannot open " << path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string from_base64(const std::string& b64) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  unsigned acc = 0;
  int bits = 0;
  for (const char c : b64) {
    const int v = value(c);
    if (v < 0) continue;
    acc = (acc << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return out;
}

/// Applies a fixture variant's patch to the file's text (string edits: re-serialising megabytes
/// of JSON in a Debug build would dominate the test's time).
std::string patched(std::string text, const json& patch) {
  if (patch.contains("add_prefix_space")) {
    // The ByteLevel entry of the pre_tokenizer: the first add_prefix_space after "pre_tokenizer".
    const auto pt = text.find("\"pre_tokenizer\"");
    const std::string from = "\"add_prefix_space\":false";
    const auto at = text.find(from, pt);
    REQUIRE(at != std::string::npos);
    REQUIRE(at < text.find("\"post_processor\""));
    text.replace(at, from.size(), "\"add_prefix_space\":true");
  }
  if (patch.contains("extra_added_tokens")) {
    const auto list = text.find("\"added_tokens\":[");
    REQUIRE(list != std::string::npos);
    const auto end = text.find("}]", list);
    std::string extra;
    for (const auto& t : patch["extra_added_tokens"]) extra += "," + t.dump();
    text.insert(end + 1, extra);
  }
  return text;
}

void check_fixture(const std::string& fixture, const std::string& vocab_file, bool all_variants) {
  const json f = json::parse(read(data_dir + "/tokenizer/" + fixture));
  const std::string original = read(data_dir + "/vocab/hf/" + vocab_file);
  for (const auto& variant : f["variants"]) {
    const std::string name = variant["name"];
    if (!all_variants && name != "plain") continue;
    CAPTURE(name);
    const auto tok = hf_tokenizer::from_json(patched(original, variant["patch"]), vocab_file);
    int n = 0;
    for (const auto& c : variant["cases"]) {
      const std::string text = from_base64(c["text"]);
      CAPTURE(text);
      CHECK(tok.encode(text) == c["ids"].get<std::vector<token_id>>());
      CHECK(tok.encode_ordinary(text) == c["ordinary_ids"].get<std::vector<token_id>>());
      if (name == "plain") CHECK(tok.decode(tok.encode(text)) == text);
      ++n;
    }
    CHECK(n > 20);
  }
}

/// A small valid tokenizer.json (256 bytes + "ab", "abc", " a") to mutate in the error tests.
json small_doc() {
  rlhf::token_table t;
  for (int b = 0; b < 256; ++b) (void)t.insert(std::string(1, static_cast<char>(b)), b);
  (void)t.insert("ab", 256);
  (void)t.insert("abc", 257);
  (void)t.insert(" a", 258);
  const std::vector<rlhf::bpe_merge> merges = {{'a', 'b'}, {256, 'c'}, {' ', 'a'}};
  const std::vector<rlhf::hf_added_token> added = {{.id = 259, .content = "<|eot|>", .normalized = false, .special = true}};
  return json::parse(rlhf::save_hf_json(t, merges, added, {.ignore_merges = false}));
}

std::string error_of(const json& doc) {
  try {
    (void)hf_tokenizer::from_json(doc.dump(), "tokenizer.json");
  } catch (const rlhf::format_error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("hf_json: GPT-2 tokenizer.json matches Hugging Face tokenizers (plain, add_prefix_space, added tokens)") {
  check_fixture("hf_gpt2.json", "gpt2.tokenizer.json", /*all_variants=*/true);
}

TEST_CASE("hf_json: cl100k_base tokenizer.json (pair merges, ignore_merges, Split regex) matches Hugging Face tokenizers") {
  check_fixture("hf_cl100k.json", "cl100k_base.tokenizer.json", /*all_variants=*/false);
}

TEST_CASE("hf_json: GPT-2 tokenizer.json gives the same ids as bpe_tokenizer r50k_base") {
  static const auto hf = hf_tokenizer::from_file(data_dir + "/vocab/hf/gpt2.tokenizer.json");
  const auto r50k = rlhf::bpe_tokenizer::openai("r50k_base", data_dir + "/vocab/r50k_base.tiktoken");
  CHECK(hf.vocab_size() == 50257);
  CHECK(hf.eos_id() == 50256);
  CHECK(hf.pad_id() == 50256);
  CHECK(hf.token_of("<|endoftext|>") == 50256);
  CHECK(hf.token_of(" the") == 262);
  CHECK(hf.bytes_of(262) == " the");
  CHECK(hf.bytes_of(50256) == "<|endoftext|>");
  CHECK(hf.bytes_of(-1).empty());
  CHECK(hf.bytes_of(1 << 20).empty());
  REQUIRE(hf.special_tokens().size() == 1);
  CHECK(hf.special_tokens()[0].text == "<|endoftext|>");
  CHECK(!hf.ignore_merges());
  CHECK(hf.merges().size() == 50000);
  const std::string text =
      "The tokenizer's job: split  text\n\ninto pieces, 12345 of them; naïve café, 日本語, 👍🏽.\t \n";
  CHECK(hf.encode(text) == r50k.encode(text));
  CHECK(hf.count(text) == r50k.encode(text).size());
  // Unknown ids are skipped when decoding; invalid UTF-8 is replaced only by decode_lossy.
  const std::vector<token_id> ids = {15496, -5, 99999999, 995};
  CHECK(hf.decode(ids) == "Hello world");
  const auto split = hf.encode("\xF0\x9F\x91\x8D");  // 👍 is several byte tokens
  REQUIRE(split.size() > 1);
  const std::vector<token_id> head(split.begin(), split.end() - 1);
  CHECK(hf.decode_lossy(head) == "\xEF\xBF\xBD");
  // Invalid UTF-8 input is encoded byte by byte and decodes back exactly.
  const std::string bad = "ab\xFF\xC3 x\x80";
  CHECK(hf.decode(hf.encode(bad)) == bad);
}

TEST_CASE("hf_json: save_hf_json round trip keeps ids (legacy merge strings, added tokens in model.vocab)") {
  const auto r50k = rlhf::bpe_tokenizer::openai("r50k_base", data_dir + "/vocab/r50k_base.tiktoken");
  const auto& table = r50k.model().tokens();
  // A small slice of GPT-2: the 256 bytes + every token up to id 1200, merges = every split.
  rlhf::token_table small;
  for (const token_id id : table.ids())
    if (id < 1200) (void)small.insert(table.bytes_of(id), id);
  const auto merges = rlhf::merges_from_ranks(small);
  const std::vector<rlhf::hf_added_token> added = {{.id = 1200, .content = "<|endoftext|>", .normalized = false, .special = true}};
  for (const std::string& pattern : {std::string(), std::string(rlhf::pretokenizer_patterns::cl100k)}) {
    CAPTURE(pattern);
    const std::string text = rlhf::save_hf_json(small, merges, added, {.pattern = pattern});
    const auto tok = hf_tokenizer::from_json(text);
    const auto ranks = rlhf::bpe_tokenizer::from_ranks(
        small, pattern.empty() ? rlhf::pretokenizer::gpt2() : rlhf::pretokenizer::cl100k(), {{"<|endoftext|>", 1200}});
    const std::string sample = "Hello there, the end of the story is near.\n\n  And then<|endoftext|> 2024 x";
    const std::string allowed[] = {"<|endoftext|>"};
    CHECK(tok.encode(sample) == ranks.encode(sample, {.allowed_special = allowed}));
    CHECK(tok.ignore_merges());
    CHECK(tok.eos_id() == 1200);
    CHECK(tok.vocab_size() == 1201);
    CHECK(tok.pre_tokenizer().pattern == (pattern.empty() ? std::string(rlhf::pretokenizer_patterns::gpt2_original) : pattern));
  }
  // Saving checks its inputs.
  const std::vector<rlhf::bpe_merge> bad_merge = {{5000, 3}};
  CHECK_THROWS_AS((void)rlhf::save_hf_json(small, bad_merge, {}), rlhf::invalid_argument);
  const std::vector<rlhf::hf_added_token> clash = {{.id = 3, .content = "<x>"}};
  CHECK_THROWS_AS((void)rlhf::save_hf_json(small, merges, clash), rlhf::invalid_argument);
  const std::vector<rlhf::hf_added_token> bad_utf8 = {{.id = 5000, .content = "\xFF"}};
  CHECK_THROWS_AS((void)rlhf::save_hf_json(small, merges, bad_utf8), rlhf::invalid_argument);
}

TEST_CASE("hf_json: the small document loads and merges by the listed pairs only") {
  const auto tok = hf_tokenizer::from_json(small_doc().dump());
  CHECK(tok.encode("abc") == std::vector<token_id>{257});
  CHECK(tok.encode("abd") == std::vector<token_id>{256, 'd'});
  CHECK(tok.encode(" abc") == std::vector<token_id>{' ', 257});  // ("a", "b") ranks before (" ", "a")
  CHECK(tok.encode("x<|eot|>y") == std::vector<token_id>{'x', 259, 'y'});
  CHECK(tok.encode_ordinary("<|eot|>").size() == 7);
  CHECK(tok.eos_id() == 259);
}

TEST_CASE("hf_json: both merge forms, and a merge listed twice keeps its last position") {
  json doc = small_doc();
  doc["model"]["merges"] = json::array({json::array({"a", "b"}), "ab c", json::array({"Ġ", "a"})});
  const auto tok = hf_tokenizer::from_json(doc.dump());
  CHECK(tok.encode("abc") == std::vector<token_id>{257});
  // (" ", "a") listed before ("a", "b"): " ab" merges " a" first, then nothing merges "b".
  doc["model"]["merges"] = json::array({"Ġ a", "a b", "ab c"});
  CHECK(hf_tokenizer::from_json(doc.dump()).encode(" abc") == std::vector<token_id>{258, 'b', 'c'});
  doc["model"]["merges"] = json::array({"a b", "Ġ a", "ab c"});
  CHECK(hf_tokenizer::from_json(doc.dump()).encode(" abc") == std::vector<token_id>{' ', 257});
  doc["model"]["merges"] = json::array({"a b", "Ġ a", "ab c", "a b"});  // "a b" now ranks last
  CHECK(hf_tokenizer::from_json(doc.dump()).encode(" abc") == std::vector<token_id>{258, 'b', 'c'});
}

TEST_CASE("hf_json: ignore_merges emits a whole-token piece without merging") {
  json doc = small_doc();
  doc["model"]["vocab"]["bc"] = 260;  // a token no merge produces
  doc["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}};
  CHECK(hf_tokenizer::from_json(doc.dump()).encode("bc") == std::vector<token_id>{'b', 'c'});
  doc["model"]["ignore_merges"] = true;
  CHECK(hf_tokenizer::from_json(doc.dump()).encode("bc") == std::vector<token_id>{260});
}

TEST_CASE("hf_json: added token ids follow Hugging Face (model id when in vocab, else the next free id)") {
  json doc = small_doc();
  doc["model"]["vocab"].erase("<|eot|>");  // 259 entries left in the model
  doc["added_tokens"] = json::array({
      {{"id", 7}, {"content", "<|a|>"}, {"special", true}},       // file id ignored → 259
      {{"id", 8}, {"content", "abc"}, {"special", false}},        // in the vocab → 257
      {{"id", 9}, {"content", "<|b|>"}, {"special", true}},       // → 260
      {{"id", 10}, {"content", ""}, {"special", true}},           // empty: ignored
      {{"id", 11}, {"content", "<|a|>"}, {"special", false}},     // same content: same id, new flags
  });
  const auto tok = hf_tokenizer::from_json(doc.dump());
  CHECK(tok.token_of("<|a|>") == 259);
  CHECK(tok.token_of("<|b|>") == 260);
  CHECK(tok.vocab_size() == 261);
  CHECK(tok.encode("x<|a|>abcd<|b|>") == std::vector<token_id>{'x', 259, 257, 'd', 260});
  CHECK(tok.added_tokens().size() == 3);
  CHECK(tok.special_tokens().size() == 1);  // <|a|> lost its special flag
  CHECK(tok.eos_id() == 260);
}

TEST_CASE("added_token_matcher: leftmost-longest, single_word, lstrip, rstrip, two passes") {
  using rlhf::added_token_part;
  const auto parts = [](const rlhf::added_token_matcher& m, std::string_view text) {
    std::vector<std::string> out;
    m.split(text, [&](const added_token_part& p) {
      out.push_back((p.id >= 0 ? "#" + std::to_string(p.id) + ":" : std::string()) + std::string(text.substr(p.begin, p.end - p.begin)));
    });
    return out;
  };
  using V = std::vector<std::string>;
  const rlhf::added_token_matcher longest({{.id = 1, .content = "<a", .normalized = false},
                                           {.id = 2, .content = "<ab>", .normalized = false},
                                           {.id = 3, .content = "b>c", .normalized = false}});
  CHECK(parts(longest, "x<ab>c<a") == V{"x", "#2:<ab>", "c", "#1:<a"});
  CHECK(parts(longest, "<ab") == V{"#1:<a", "b"});
  CHECK(parts(longest, "").empty());
  const rlhf::added_token_matcher word({{.id = 1, .content = "hi", .single_word = true}});
  CHECK(parts(word, "hi, hi!") == V{"#1:hi", ", ", "#1:hi", "!"});
  CHECK(parts(word, "ahi hia _hi hi_ 1hi é hié") == V{"ahi hia _hi hi_ 1hi é hié"});
  CHECK(parts(word, "—hi—") == V{"—", "#1:hi", "—"});
  const rlhf::added_token_matcher strip({{.id = 1, .content = "<m>", .lstrip = true},
                                         {.id = 2, .content = "[S]", .rstrip = true}});
  CHECK(parts(strip, "a  \t<m> b") == V{"a", "#1:  \t<m>", " b"});
  CHECK(parts(strip, "a[S] \u3000 b") == V{"a", "#2:[S] \u3000 ", "b"});
  CHECK(parts(strip, "[S]  <m>x") == V{"#2:[S]  ", "#1:<m>", "x"});  // lstrip cannot take rstrip's spaces
  CHECK(parts(strip, "\xFF <m>") == V{"\xFF", "#1: <m>"});
  // normalized: false tokens are found first, over the whole text.
  const rlhf::added_token_matcher passes({{.id = 1, .content = "abcd", .normalized = true},
                                          {.id = 2, .content = "cd", .normalized = false}});
  CHECK(parts(passes, "abcd") == V{"ab", "#2:cd"});
}

TEST_CASE("hf_json: unsupported or malformed files throw format_error naming the JSON path") {
  const auto expect = [](const json& doc, const std::string& message) {
    const std::string got = error_of(doc);
    CHECK_MESSAGE(got.find(message) != std::string::npos, "got: " << got << "\nexpected to contain: " << message);
  };
  json d = small_doc();
  d["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers", json::array({{{"type", "Split"}, {"pattern", {{"Regex", "\\s+"}}}, {"behavior", "Isolated"}, {"invert", false}},
                                                       {{"type", "Metaspace"}, {"replacement", "_"}}})}};
  expect(d, "tokenizer.json: $.pre_tokenizer.pretokenizers[1].type: \"Metaspace\" is not supported (supported: ByteLevel)");
  d["pre_tokenizer"]["pretokenizers"][0]["type"] = "Whitespace";
  expect(d, "$.pre_tokenizer.pretokenizers[0].type: \"Whitespace\" is not supported (supported: Split)");
  d = small_doc();
  d["pre_tokenizer"] = {{"type", "Metaspace"}};
  expect(d, "$.pre_tokenizer.type: \"Metaspace\" is not supported (supported: ByteLevel, Sequence)");
  d["pre_tokenizer"] = nullptr;
  expect(d, "$.pre_tokenizer: null is not supported");
  d = small_doc();
  d["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers", json::array({{{"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "Isolated"}, {"invert", false}},
                                                       {{"type", "ByteLevel"}, {"use_regex", false}}})}};
  expect(d, "$.pre_tokenizer.pretokenizers[0].pattern: {\"String\": ...} is not supported");
  d["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {{"Regex", "\\s+"}};
  d["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed";
  expect(d, "$.pre_tokenizer.pretokenizers[0].behavior: \"Removed\" is not supported (supported: Isolated)");
  d["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Isolated";
  d["pre_tokenizer"]["pretokenizers"][0]["invert"] = true;
  expect(d, "$.pre_tokenizer.pretokenizers[0].invert: true is not supported");
  d["pre_tokenizer"]["pretokenizers"][0]["invert"] = false;
  d["pre_tokenizer"]["pretokenizers"][1]["use_regex"] = true;
  expect(d, "$.pre_tokenizer.pretokenizers[1].use_regex: true after a Split is not supported");
  d = small_doc();
  d["normalizer"] = {{"type", "NFC"}};
  expect(d, "$.normalizer: {\"type\":\"NFC\"} is not supported (supported: null)");
  d = small_doc();
  d["truncation"] = {{"max_length", 5}};
  expect(d, "$.truncation:");
  d = small_doc();
  d["version"] = "2.0";
  expect(d, "$.version: \"2.0\" is not supported");
  d = small_doc();
  d["decoder"] = {{"type", "Metaspace"}};
  expect(d, "$.decoder.type: \"Metaspace\" is not supported (supported: ByteLevel)");
  d["decoder"] = nullptr;
  expect(d, "$.decoder: null is not supported (supported: ByteLevel)");
  d = small_doc();
  d["post_processor"] = {{"type", "TemplateProcessing"}};
  expect(d, "$.post_processor.type: \"TemplateProcessing\" is not supported (supported: ByteLevel)");
  d = small_doc();
  d["model"]["type"] = "WordPiece";
  expect(d, "$.model.type: \"WordPiece\" is not supported (supported: BPE)");
  d = small_doc();
  d["model"]["byte_fallback"] = true;
  expect(d, "$.model.byte_fallback: true is not supported");
  d = small_doc();
  d["model"]["dropout"] = 0.1;
  expect(d, "$.model.dropout: 0.1 is not supported (supported: null)");
  d = small_doc();
  d["model"]["unk_token"] = "<unk>";
  expect(d, "$.model.unk_token: \"<unk>\" is not supported (supported: null)");
  d = small_doc();
  d["model"]["continuing_subword_prefix"] = "##";
  expect(d, "$.model.continuing_subword_prefix: \"##\" is not supported");
  d = small_doc();
  d["model"]["surprise"] = 1;
  expect(d, "$.model: unknown key \"surprise\"");
  d = small_doc();
  d["model"]["merges"].push_back("a x y");
  expect(d, "$.model.merges[3]: \"a x y\" is not \"A B\"");
  d = small_doc();
  d["model"]["merges"].push_back(json::array({"a"}));
  expect(d, "$.model.merges[3]: expected \"A B\" or [\"A\", \"B\"]");
  d = small_doc();
  d["model"]["merges"].push_back("zz q");
  expect(d, "$.model.merges[3]: \"zz\" is not in $.model.vocab");
  d = small_doc();
  d["model"]["merges"].push_back("c a");
  expect(d, "$.model.merges[3]: the merged token \"ca\" is not in $.model.vocab");
  d = small_doc();
  d["model"]["vocab"]["ŁŁ"] = 5;  // sorts after the byte token with id 5 ("ą")
  expect(d, "$.model.vocab[\"ŁŁ\"]: id 5 is used twice");
  d = small_doc();
  d["model"]["vocab"]["zz"] = -1;
  expect(d, "$.model.vocab[\"zz\"]: id -1 is outside");
  d["model"]["vocab"]["zz"] = "7";
  expect(d, "$.model.vocab[\"zz\"]: expected an integer id, got a string");
  d = small_doc();
  d["model"]["vocab"].erase("Ġ");
  expect(d, "$.model.vocab: the byte 0x20 (\"Ġ\") is not a token");
  d = small_doc();
  d["model"]["vocab"]["a b"] = 300;  // a space is outside the byte-level alphabet
  expect(d, "$.model.vocab[\"a b\"]: has a character outside the byte-level alphabet");
  d = small_doc();
  d["added_tokens"][0].erase("content");
  expect(d, "$.added_tokens[0]: missing key \"content\"");
  d = small_doc();
  d["added_tokens"][0]["lstrip"] = "yes";
  expect(d, "$.added_tokens[0].lstrip: expected a boolean, got a string");
  d = small_doc();
  d["model"].erase("vocab");
  expect(d, "$.model: missing key \"vocab\"");
  expect(json::array(), "tokenizer.json: $: expected an object, got an array");
  // Not JSON at all.
  for (const std::string& text : std::vector<std::string>{"", "{", "{\"version\": \"1.0\",", "\xFF", "[1, 2", "{\"a\": tru}"}) {
    CAPTURE(text);
    CHECK_THROWS_AS((void)hf_tokenizer::from_json(text, "x.json"), rlhf::format_error);
  }
  CHECK_THROWS_WITH_AS((void)hf_tokenizer::from_json("{\"version\": 1.0,", "x.json"), doctest::Contains("x.json: parse error"),
                       rlhf::format_error);
  CHECK_THROWS_WITH_AS((void)hf_tokenizer::from_file(data_dir + "/no/such/tokenizer.json"),
                       doctest::Contains("cannot open"), rlhf::format_error);
}
