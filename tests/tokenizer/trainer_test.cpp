// Tests for <rlhf/tokenizer/trainer.hpp>: the learned merges against a brute-force recount of
// the definition (most frequent pair, ties by the smaller (left, right) ids), special tokens
// kept out of words, min_frequency and vocab_size limits, determinism, duplicate spellings, and
// the saved .tiktoken and tokenizer.json loading back with identical ids.
//
// RLHF_TRAINER_EXPORT_DIR=DIR writes trained.tokenizer.json / trained.tiktoken / trained.pattern
// there, for tools/tokenizers/make_hf_fixtures.py --check-trained DIR (Hugging Face tokenizers).
#include <rlhf/tokenizer/trainer.hpp>

#include <doctest/doctest.h>

#include <rlhf/rng.hpp>
#include <rlhf/tokenizer/hf_json.hpp>

#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace {

using rlhf::token_id;

const std::string data_dir = RLHF_TEST_DATA_DIR;

/// ~200 KB of English: the GPT-2 vocabulary file's text would be odd; use the .tiktoken-free
/// corpus made from the fixture texts plus generated sentences (deterministic).
std::string corpus() {
  static const std::string text = [] {
    const char* words[] = {"the", "of", "and", "to", "in", "is", "that", "it", "was", "for", "on", "are", "as", "with",
                           "his", "they", "I", "at", "be", "this", "have", "from", "or", "one", "had", "by", "word",
                           "but", "not", "what", "all", "were", "we", "when", "your", "can", "said", "there", "use",
                           "an", "each", "which", "she", "do", "how", "their", "if", "will", "up", "other", "about",
                           "out", "many", "then", "them", "these", "so", "some", "her", "would", "make", "like",
                           "him", "into", "time", "has", "look", "two", "more", "write", "go", "see", "number", "no",
                           "way", "could", "people", "my", "than", "first", "water", "been", "call", "who", "oil",
                           "it's", "don't", "naïve", "café", "日本", "語", "12", "345", "x=1;", "f(x)", "\n", "  "};
    constexpr std::size_t n = sizeof(words) / sizeof(words[0]);
    rlhf::rng r{{.seed = 7, .stream = 0}};
    std::string s;
    while (s.size() < 200'000) {
      const auto k = r.uniform_index(n);
      if (!s.empty() && s.back() != '\n' && r.uniform() < 0.9) s += ' ';
      s += words[k];
      if (r.uniform() < 0.05) s += ". ";
    }
    return s;
  }();
  return text;
}

/// Brute force: re-encode every word with the merges so far and recount all pairs.
std::vector<rlhf::bpe_merge> brute_force(const std::map<std::string, std::uint64_t>& words, std::size_t max_tokens,
                                         std::uint64_t min_frequency) {
  std::vector<std::string> tokens;
  std::map<std::string, token_id> ids;
  for (int b = 0; b < 256; ++b) {
    tokens.emplace_back(1, static_cast<char>(b));
    ids[tokens.back()] = b;
  }
  std::vector<std::pair<std::vector<token_id>, std::uint64_t>> w;
  for (const auto& [text, count] : words) {
    std::vector<token_id> s;
    for (const char c : text) s.push_back(static_cast<unsigned char>(c));
    w.emplace_back(s, count);
  }
  std::vector<rlhf::bpe_merge> merges;
  while (tokens.size() < max_tokens) {
    std::map<std::pair<token_id, token_id>, std::uint64_t> counts;
    for (const auto& [s, count] : w)
      for (std::size_t i = 0; i + 1 < s.size(); ++i) counts[{s[i], s[i + 1]}] += count;
    std::pair<token_id, token_id> best{-1, -1};
    std::uint64_t best_count = 0;
    for (const auto& [pair, count] : counts)  // map order: ties keep the smallest pair
      if (count > best_count) {
        best = pair;
        best_count = count;
      }
    if (best_count == 0 || best_count < std::max<std::uint64_t>(min_frequency, 1)) break;
    const std::string bytes = tokens[static_cast<std::size_t>(best.first)] + tokens[static_cast<std::size_t>(best.second)];
    token_id id;
    if (const auto it = ids.find(bytes); it != ids.end()) {
      id = it->second;
    } else {
      id = static_cast<token_id>(tokens.size());
      tokens.push_back(bytes);
      ids[bytes] = id;
    }
    merges.push_back({best.first, best.second});
    for (auto& [s, count] : w) {
      std::vector<token_id> out;
      for (std::size_t i = 0; i < s.size();) {
        if (i + 1 < s.size() && s[i] == best.first && s[i + 1] == best.second) {
          out.push_back(id);
          i += 2;
        } else {
          out.push_back(s[i++]);
        }
      }
      s = std::move(out);
    }
  }
  return merges;
}

bool same_merges(const std::vector<rlhf::bpe_merge>& a, const std::vector<rlhf::bpe_merge>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i].left != b[i].left || a[i].right != b[i].right) return false;
  return true;
}

}  // namespace

TEST_CASE("bpe_trainer: merges equal a brute-force recount of the definition") {
  // Words with many equal counts, so the tie rule decides often.
  std::map<std::string, std::uint64_t> words = {{"aaaa", 3}, {"abab", 3}, {"baba", 3}, {"abc", 5}, {"bca", 5},
                                                {"cab", 5},  {"aaa", 2},  {"xyz", 1},  {"zyx", 1}, {"bcbcbc", 2},
                                                {"ab", 4},   {"b", 9},    {"ca", 1}};
  rlhf::bpe_trainer trainer(rlhf::pretokenizer::gpt2());
  for (const auto& [w, c] : words) trainer.add_word(w, c);
  CHECK(trainer.distinct_words() == words.size());
  for (const std::uint64_t min_frequency : {0, 1, 2, 4}) {
    CAPTURE(min_frequency);
    const auto v = trainer.train({.vocab_size = 300, .min_frequency = min_frequency});
    CHECK(same_merges(v.merges, brute_force(words, 300, min_frequency)));
  }
  // A longer run on pre-tokenised random text.
  rlhf::bpe_trainer big(rlhf::pretokenizer::gpt2());
  std::map<std::string, std::uint64_t> big_words;
  const std::string text = corpus().substr(0, 20'000);
  rlhf::pretokenizer::gpt2().split(text, [&](std::string_view p) { big_words[std::string(p)] += 1; });
  big.add_text(text);
  const auto v = big.train({.vocab_size = 400, .min_frequency = 2});
  CHECK(v.tokens.size() == 400);
  CHECK(same_merges(v.merges, brute_force(big_words, 400, 2)));
}

TEST_CASE("bpe_trainer: two pairs spelling the same bytes share one token") {
  // "abc" is learned as (ab, c) from one word and as (a, bc) from another.
  rlhf::bpe_trainer trainer(rlhf::pretokenizer::gpt2());
  trainer.add_word("ab", 10);
  trainer.add_word("bc", 9);
  trainer.add_word("abX", 1);
  trainer.add_word("abc", 8);
  trainer.add_word("Ybc", 1);
  trainer.add_word("Zabc", 1);
  const auto v = trainer.train({.vocab_size = 1000, .min_frequency = 1});
  std::map<std::string, int> spelled;
  for (const auto& t : v.tokens) ++spelled[t];
  for (const auto& [t, n] : spelled) CHECK_MESSAGE(n == 1, t);
  CHECK(same_merges(v.merges, brute_force({{"ab", 10}, {"bc", 9}, {"abX", 1}, {"abc", 8}, {"Ybc", 1}, {"Zabc", 1}}, 1000, 1)));
}

TEST_CASE("bpe_trainer: special tokens stay out of words and get the ids after the merged tokens") {
  rlhf::bpe_trainer trainer(rlhf::pretokenizer::gpt2(), {"<|endoftext|>", "<|pad|>"});
  std::string text;
  for (int i = 0; i < 50; ++i) text += "hello world<|endoftext|><|pad|>";
  trainer.add_text(text);
  const auto v = trainer.train({.vocab_size = 270, .min_frequency = 2});
  for (std::size_t i = 256; i < v.tokens.size(); ++i) CHECK(v.tokens[i].find('|') == std::string::npos);
  REQUIRE(v.specials.size() == 2);
  CHECK(v.specials[0].text == "<|endoftext|>");
  CHECK(v.specials[0].id == static_cast<token_id>(v.tokens.size()));
  CHECK(v.specials[1].id == static_cast<token_id>(v.tokens.size() + 1));
  // The words of the text are exactly "hello" and " world": 4 + 5 merges make them whole.
  CHECK(trainer.distinct_words() == 2);
  CHECK(v.tokens.size() == 256 + 9);
  const auto tok = v.tokenizer();
  CHECK(tok.encode(" world").size() == 1);
  const std::string allowed[] = {"<|endoftext|>"};
  CHECK(tok.encode("hello<|endoftext|>", {.allowed_special = allowed}).back() == v.specials[0].id);
  CHECK(tok.eos_id() == v.specials[0].id);
}

TEST_CASE("bpe_trainer: vocab_size, min_frequency, determinism and argument errors") {
  rlhf::bpe_trainer a(rlhf::pretokenizer::gpt2());
  a.add_text(corpus());
  const auto v1 = a.train({.vocab_size = 1000});
  CHECK(v1.tokens.size() == 1000);
  // The order in which text arrives does not matter.
  rlhf::bpe_trainer b(rlhf::pretokenizer::gpt2());
  const std::string& c = corpus();
  const std::size_t half = c.find(' ', c.size() / 2);
  b.add_text(c.substr(half));
  b.add_text(c.substr(0, half));
  const auto v2 = b.train({.vocab_size = 1000});
  CHECK(same_merges(v1.merges, v2.merges));
  CHECK(v1.tokens == v2.tokens);
  // A high min_frequency stops early.
  const auto few = a.train({.vocab_size = 100'000, .min_frequency = 2000});
  CHECK(few.tokens.size() > 256);
  CHECK(few.tokens.size() < 400);
  // Exactly 256 + specials: no merge.
  CHECK(a.train({.vocab_size = 256}).merges.empty());
  CHECK_THROWS_WITH_AS((void)a.train({.vocab_size = 255}),
                       "rlhf::bpe_trainer::train(): vocab_size is 255 but must be at least 256 + 0 special tokens = 256",
                       rlhf::invalid_argument);
  CHECK_THROWS_AS((void)a.train({.vocab_size = std::size_t{1} << 30}), rlhf::invalid_argument);
  CHECK_THROWS_AS(rlhf::bpe_trainer(rlhf::pretokenizer::gpt2(), {"<x>", "<x>"}), rlhf::invalid_argument);
  CHECK_THROWS_AS(rlhf::bpe_trainer(rlhf::pretokenizer::gpt2(), {""}), rlhf::invalid_argument);
  // Nothing to learn from.
  rlhf::bpe_trainer empty(rlhf::pretokenizer::gpt2());
  empty.add_text("");
  CHECK(empty.train({.vocab_size = 500}).tokens.size() == 256);
}

TEST_CASE("bpe_trainer: saved .tiktoken and tokenizer.json load back and give identical ids") {
  for (const auto& pre : {rlhf::pretokenizer::gpt2(), rlhf::pretokenizer::cl100k()}) {
    CAPTURE(pre.pattern());
    rlhf::bpe_trainer trainer(pre, {"<|endoftext|>"});
    const std::string& text = corpus();
    trainer.add_text(text.substr(0, 150'000));
    const auto v = trainer.train({.vocab_size = 2000, .min_frequency = 2});
    const std::string tiktoken = v.to_tiktoken();
    const std::string hf_json = v.to_hf_json();
    const auto from_tiktoken = rlhf::bpe_tokenizer::from_tiktoken(tiktoken, pre, v.specials, "trained.tiktoken");
    const auto from_json = rlhf::hf_tokenizer::from_json(hf_json, "trained.tokenizer.json");
    const auto direct = v.tokenizer();
    CHECK(v.tokens.size() > 600);
    CHECK(from_json.vocab_size() == v.tokens.size() + 1);
    CHECK(from_json.eos_id() == static_cast<token_id>(v.tokens.size()));
    const std::string held_out = text.substr(150'000) + " Unseen: zebra quixotic 9876543 \xE2\x80\x94 \xF0\x9F\x91\x8D<|endoftext|>";
    const std::string allowed[] = {"<|endoftext|>"};
    // Chunks may cut a character: keep its bytes (hf_tokenizer always does).
    const rlhf::encode_options options{.allowed_special = allowed, .on_invalid_utf8 = rlhf::invalid_utf8::keep_bytes};
    for (std::size_t p = 0; p < held_out.size(); p += 2000) {
      const std::string chunk = held_out.substr(p, 2000);
      const auto ids = direct.encode(chunk, options);
      CHECK(from_tiktoken.encode(chunk, options) == ids);
      CHECK(from_json.encode(chunk) == ids);
      CHECK(from_json.decode(ids) == chunk);
    }
    if (const char* dir = std::getenv("RLHF_TRAINER_EXPORT_DIR"); dir != nullptr && pre.pattern() == rlhf::pretokenizer::gpt2().pattern()) {
      std::ofstream(std::string(dir) + "/trained.tokenizer.json") << hf_json;
      std::ofstream(std::string(dir) + "/trained.tiktoken") << tiktoken;
      std::ofstream(std::string(dir) + "/trained.pattern") << v.pattern;
      std::ofstream(std::string(dir) + "/trained.sample.txt") << held_out.substr(0, 20'000);
    }
  }
}
