// Tests for <rlhf/tokenizer/bpe.hpp> and <rlhf/tokenizer/vocabulary.hpp>: the merge on small
// hand-made vocabularies (both priority rules, ties, ignore_merges), the linear and
// priority-queue paths against a brute-force definition and each other on random pieces, the
// equivalence of tiktoken's rule with Hugging Face's rule over "every split" merges, the token
// table, and errors.
#include <rlhf/tokenizer/bpe.hpp>
#include <rlhf/tokenizer/tiktoken_file.hpp>

#include <doctest/doctest.h>

#include <rlhf/rng.hpp>

#include <algorithm>
#include <ctime>
#include <tuple>
#include <string>
#include <vector>

namespace {

using rlhf::bpe_merge;
using rlhf::bpe_model;
using rlhf::token_id;
using rlhf::token_table;

/// 256 single bytes (id = byte) plus `extra` tokens with ids 256, 257, ...
token_table table_with(const std::vector<std::string>& extra) {
  token_table t;
  for (int b = 0; b < 256; ++b) {
    const char c = static_cast<char>(b);
    REQUIRE(t.insert(std::string_view(&c, 1), b) == token_table::insert_result::inserted);
  }
  token_id id = 256;
  for (const std::string& s : extra) REQUIRE(t.insert(s, id++) == token_table::insert_result::inserted);
  return t;
}

std::vector<token_id> encode(const bpe_model& m, std::string_view piece) {
  std::vector<token_id> out;
  m.encode_piece(piece, out);
  return out;
}

/// The definition, written as plainly as possible: parts as strings; repeatedly merge the
/// leftmost adjacent pair with the lowest rank of the joined bytes (tiktoken's rule).
std::vector<token_id> reference_ranks(const token_table& t, std::string_view piece) {
  if (piece.empty()) return {};
  if (t.find(piece) >= 0) return {t.find(piece)};
  std::vector<std::string> parts;
  for (char c : piece) parts.emplace_back(1, c);
  for (;;) {
    token_id best = -1;
    std::size_t at = 0;
    for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
      const token_id r = t.find(parts[i] + parts[i + 1]);
      if (r >= 0 && (best < 0 || r < best)) {
        best = r;
        at = i;
      }
    }
    if (best < 0) break;
    parts[at] += parts[at + 1];
    parts.erase(parts.begin() + static_cast<std::ptrdiff_t>(at) + 1);
  }
  std::vector<token_id> ids;
  for (const auto& p : parts) ids.push_back(t.find(p));
  return ids;
}

}  // namespace

TEST_CASE("token_table: insert, find, bytes_of, holes, duplicates") {
  token_table t;
  CHECK(t.insert("hello", 5) == token_table::insert_result::inserted);
  CHECK(t.insert("", 7) == token_table::insert_result::inserted);
  CHECK(t.insert(std::string("a\0b", 3), 9) == token_table::insert_result::inserted);
  CHECK(t.insert("hello", 6) == token_table::insert_result::duplicate_bytes);
  CHECK(t.insert("other", 5) == token_table::insert_result::duplicate_id);
  CHECK(t.insert("x", -1) == token_table::insert_result::bad_id);
  CHECK(t.insert("x", token_table::max_id + 1) == token_table::insert_result::bad_id);
  CHECK(t.find("hello") == 5);
  CHECK(t.find("") == 7);
  CHECK(t.find(std::string("a\0b", 3)) == 9);
  CHECK(t.find("a") == -1);
  CHECK(t.find("hell") == -1);
  CHECK(t.bytes_of(5) == "hello");
  CHECK(t.bytes_of(6).empty());
  CHECK_FALSE(t.contains_id(6));
  CHECK_FALSE(t.contains_id(-3));
  CHECK(t.contains_id(7));
  CHECK(t.size() == 3);
  CHECK(t.id_bound() == 10);

  // Many keys of every length (rehashing, long keys, shared prefixes and suffixes).
  token_table big;
  rlhf::rng gen{{.seed = 1}};
  std::vector<std::string> keys;
  for (int i = 0; i < 5000; ++i) {
    std::string k(1 + gen.uniform_index(70), 'a');
    for (char& c : k) c = static_cast<char>('a' + gen.uniform_index(3));
    if (big.insert(k, static_cast<token_id>(keys.size())) == token_table::insert_result::inserted) keys.push_back(k);
  }
  CHECK(keys.size() > 4000);
  for (std::size_t i = 0; i < keys.size(); ++i) REQUIRE(big.find(keys[i]) == static_cast<token_id>(i));
  CHECK(big.find(std::string(71, 'a')) == -1);
}

TEST_CASE("ranks rule: lowest rank of the joined bytes first, leftmost on ties") {
  // ids: "ab" 256, "bc" 257, "abc" 258, "cd" 259, "bcd" 260
  const bpe_model m = bpe_model::from_ranks(table_with({"ab", "bc", "abc", "cd", "bcd"}));
  CHECK(encode(m, "") == std::vector<token_id>{});
  CHECK(encode(m, "a") == std::vector<token_id>{'a'});
  CHECK(encode(m, "ab") == std::vector<token_id>{256});
  CHECK(encode(m, "abc") == std::vector<token_id>{258});       // whole piece first
  CHECK(encode(m, "abcd") == std::vector<token_id>{258, 'd'});  // ab (256), then ab+c (258) before c+d (259)
  CHECK(encode(m, "bcdx") == std::vector<token_id>{260, 'x'});  // bc (257), then bc+d (260)
  CHECK(encode(m, "bcd") == std::vector<token_id>{260});
  CHECK(encode(m, "xbcd") == std::vector<token_id>{'x', 260});  // bc, then bc+d = bcd
  CHECK(encode(m, "zz") == std::vector<token_id>{'z', 'z'});
  // Ties: "aaa" with "aa": the leftmost pair merges.
  const bpe_model a = bpe_model::from_ranks(table_with({"aa"}));
  CHECK(encode(a, "aaa") == std::vector<token_id>{256, 'a'});
  CHECK(encode(a, "aaaaa") == std::vector<token_id>{256, 256, 'a'});
  // A merge whose joined bytes were trained from another split still applies (tiktoken's rule).
  const bpe_model odd = bpe_model::from_ranks(table_with({"bc", "abc"}));
  CHECK(encode(odd, "abcx") == std::vector<token_id>{257, 'x'});
}

TEST_CASE("merges rule: pair priority from the list, listed pairs only, ignore_merges") {
  // ids: "ab" 256, "bc" 257, "abc" 258
  const token_table t = table_with({"ab", "bc", "abc"});
  const std::vector<bpe_merge> merges = {{'b', 'c'}, {'a', 'b'}, {'a', 257}};
  const bpe_model m = bpe_model::from_merges(t, merges, false);
  CHECK(encode(m, "abc") == std::vector<token_id>{258});        // bc first (priority 0), then a+bc
  CHECK(encode(m, "abx") == std::vector<token_id>{256, 'x'});
  // (ab, c) is not listed, so it never merges, even though "abc" is a token.
  const std::vector<bpe_merge> only_ab = {{'a', 'b'}};
  const bpe_model n = bpe_model::from_merges(t, only_ab, false);
  CHECK(encode(n, "abc") == std::vector<token_id>{256, 'c'});
  CHECK(encode(n, "bc") == std::vector<token_id>{'b', 'c'});
  // ignore_merges: a piece that is a token is that token.
  const bpe_model ig = bpe_model::from_merges(t, only_ab, true);
  CHECK(encode(ig, "abc") == std::vector<token_id>{258});
  CHECK(encode(ig, "bc") == std::vector<token_id>{257});
  CHECK(encode(ig, "abcabc") == std::vector<token_id>{256, 'c', 256, 'c'});
  // A pair listed twice keeps its last position.
  const std::vector<bpe_merge> twice = {{'a', 'b'}, {'b', 'c'}, {'a', 'b'}};
  CHECK(encode(bpe_model::from_merges(t, twice, false), "abc") == std::vector<token_id>{'a', 257});
  CHECK(encode(bpe_model::from_merges(t, twice, false), "abc").size() == 2);

  CHECK_THROWS_WITH_AS(bpe_model::from_merges(t, std::vector<bpe_merge>{{'a', 'x'}}, false),
                       doctest::Contains("merge 0 (97, 120): the concatenation of the two tokens is not a token"),
                       rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(bpe_model::from_merges(t, std::vector<bpe_merge>{{'a', 'b'}, {'a', 999}}, false),
                       doctest::Contains("merge 1 (97, 999) names an id that is not a token"), rlhf::invalid_argument);
  token_table missing;
  missing.insert("a", 0);
  CHECK_THROWS_WITH_AS(bpe_model::from_ranks(missing), doctest::Contains("byte 0x00 is not a token"),
                       rlhf::invalid_argument);
}

TEST_CASE("linear and priority-queue paths agree with the definition on random pieces") {
  // A small vocabulary over a 3-letter alphabet makes long merge chains and many ties.
  rlhf::rng gen{{.seed = 77}};
  std::vector<std::string> extra;
  for (int i = 0; i < 60; ++i) {
    std::string k(2 + gen.uniform_index(5), 'a');
    for (char& c : k) c = static_cast<char>('a' + gen.uniform_index(3));
    if (std::find(extra.begin(), extra.end(), k) == extra.end()) extra.push_back(k);
  }
  const token_table t = table_with(extra);
  const bpe_model m = bpe_model::from_ranks(t);
  for (int trial = 0; trial < 300; ++trial) {
    std::string piece(1 + gen.uniform_index(trial < 250 ? 40 : 300), 'a');
    for (char& c : piece) c = static_cast<char>('a' + gen.uniform_index(3));
    CAPTURE(piece);
    const std::vector<token_id> expected = reference_ranks(t, piece);
    REQUIRE(encode(m, piece) == expected);
    std::vector<token_id> lin, pq;
    m.encode_piece_linear(piece, [&](token_id id) { lin.push_back(id); });
    m.encode_piece_with_heap(piece, [&](token_id id) { pq.push_back(id); });
    if (t.find(piece) < 0) {  // the two paths skip the whole-piece lookup
      CHECK(lin == expected);
      CHECK(pq == expected);
    }
  }
}

TEST_CASE("tiktoken's rule equals Hugging Face's rule over every split (cl100k-style conversion)") {
  // Merges = every split (l, r) of every token into two tokens, ordered by (rank of the token,
  // rank of l, rank of r): the recipe that converts tiktoken files to tokenizer.json.
  rlhf::rng gen{{.seed = 99}};
  std::vector<std::string> extra;
  for (int i = 0; i < 80; ++i) {
    std::string k(2 + gen.uniform_index(4), 'a');
    for (char& c : k) c = static_cast<char>('a' + gen.uniform_index(3));
    if (std::find(extra.begin(), extra.end(), k) == extra.end()) extra.push_back(k);
  }
  const token_table t = table_with(extra);
  struct split {
    token_id token, l, r;
  };
  std::vector<split> splits;
  for (std::size_t i = 0; i < extra.size(); ++i)
    for (std::size_t cut = 1; cut < extra[i].size(); ++cut) {
      const token_id l = t.find(std::string_view(extra[i]).substr(0, cut)), r = t.find(std::string_view(extra[i]).substr(cut));
      if (l >= 0 && r >= 0) splits.push_back({static_cast<token_id>(256 + i), l, r});
    }
  std::sort(splits.begin(), splits.end(), [](const split& a, const split& b) {
    return std::tie(a.token, a.l, a.r) < std::tie(b.token, b.l, b.r);
  });
  std::vector<bpe_merge> merges;
  for (const split& s : splits) merges.push_back({s.l, s.r});
  const bpe_model ranks = bpe_model::from_ranks(t);
  const bpe_model hf = bpe_model::from_merges(t, merges, true);
  for (int trial = 0; trial < 300; ++trial) {
    std::string piece(1 + gen.uniform_index(trial < 250 ? 30 : 400), 'a');
    for (char& c : piece) c = static_cast<char>('a' + gen.uniform_index(3));
    CAPTURE(piece);
    CHECK(encode(hf, piece) == encode(ranks, piece));
  }
}

TEST_CASE("real vocabulary: the two paths agree on long pieces; a huge piece stays fast") {
  const bpe_model m = bpe_model::from_ranks(rlhf::load_tiktoken(std::string(RLHF_TEST_DATA_DIR) + "/vocab/r50k_base.tiktoken"));
  rlhf::rng gen{{.seed = 4}};
  static constexpr char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (int trial = 0; trial < 20; ++trial) {
    std::string piece(100 + gen.uniform_index(400), 'x');
    for (char& c : piece) c = trial % 2 == 0 ? b64[gen.uniform_index(64)] : static_cast<char>('a' + gen.uniform_index(26));
    std::vector<token_id> lin, pq;
    m.encode_piece_linear(piece, [&](token_id id) { lin.push_back(id); });
    m.encode_piece_with_heap(piece, [&](token_id id) { pq.push_back(id); });
    CHECK(lin == pq);
    std::string back;
    for (token_id id : pq) back += m.tokens().bytes_of(id);
    CHECK(back == piece);
  }
}

TEST_CASE("one huge piece is merged in near-linear time") {
  // The time ratio between a piece of 4n and one of n bytes: 16 for a quadratic merge (tiktoken
  // before 0.13, most ports), ~4 for ours; the bound 8 leaves room for a loaded machine. Sizes:
  // 256 KB and 1 MB in optimised builds, a quarter of that in debug builds (same ratio).
#if defined(NDEBUG)
  constexpr std::size_t small = 256 * 1024;
#else
  constexpr std::size_t small = 64 * 1024;
#endif
  const bpe_model m = bpe_model::from_ranks(rlhf::load_tiktoken(std::string(RLHF_TEST_DATA_DIR) + "/vocab/cl100k_base.tiktoken"));
  static constexpr char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const auto make = [](int kind, std::size_t n) {
    rlhf::rng gen{{.seed = 3}};
    std::string s(n, 'a');  // kind 0: one repeated character
    if (kind == 1)
      for (char& c : s) c = b64[gen.uniform_index(64)];  // base64
    if (kind == 2)
      for (char& c : s) c = static_cast<char>('!' + gen.uniform_index(94));  // no whitespace
    return s;
  };
  for (int kind : {0, 1, 2}) {
    const std::string a = make(kind, small), b = make(kind, 4 * small);
    const auto time = [&](const std::string& s) {
      // Processor time, not wall time: a shared machine can stall a process for seconds.
      std::size_t n = 0;
      const std::clock_t t0 = std::clock();
      m.encode_piece(s, [&](token_id) { ++n; });
      const std::clock_t t1 = std::clock();
      CHECK(n > s.size() / 16);
      return static_cast<double>(t1 - t0) / CLOCKS_PER_SEC;
    };
    const double t_small = std::min(time(a), time(a)), t_large = time(b);
    CAPTURE(kind);
    CAPTURE(t_small);
    CAPTURE(t_large);
    CHECK(t_large / t_small < 8.0);
  }
}

TEST_CASE("the per-thread piece cache never mixes models and returns what the merge returns") {
  // Same pieces, two vocabularies with different merges, interleaved: every answer from the
  // cache must equal a fresh merge of the right model.
  const bpe_model a = bpe_model::from_ranks(table_with({"ab", "abc"}));
  const bpe_model b = bpe_model::from_ranks(table_with({"bc", "abc"}));
  const bpe_model c = a;  // a copy shares a's answers, which are the same
  rlhf::rng gen{{.seed = 12}};
  for (int trial = 0; trial < 2000; ++trial) {
    std::string piece(2 + gen.uniform_index(23), 'a');
    for (char& ch : piece) ch = static_cast<char>('a' + gen.uniform_index(4));
    for (const bpe_model* m : {&a, &b, &c, &a}) {
      std::vector<token_id> fresh;
      m->encode_piece_linear(piece, [&](token_id id) { fresh.push_back(id); });
      if (m->tokens().find(piece) >= 0) fresh = {m->tokens().find(piece)};
      REQUIRE(encode(*m, piece) == fresh);
    }
  }
}
