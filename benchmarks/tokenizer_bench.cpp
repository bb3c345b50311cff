// B6 — tokenizer encode throughput (docs/performance.md). One call encodes a corpus slice, cut
// into ~64 KiB chunks at line ends, with rlhf::bpe_tokenizer (tiktoken's rules) for r50k_base,
// cl100k_base and o200k_base:
//
//   BM_tokenizer_encode/<corpus>/<encoding>/threads:1   encode() of every chunk, one thread
//   BM_tokenizer_encode/<corpus>/<encoding>/threads:2   encode_batch() of the chunks, 2 threads
//
// Corpora: en.txt, multi.txt, code.txt in $RLHF_CORPUS_DIR (built by
// tools/tokenizers/build_corpus.sh; benchmarks/run does it), the first $RLHF_CORPUS_BYTES bytes
// of each (default 4 MiB; whole chunks). Without RLHF_CORPUS_DIR a small built-in text stands in
// (smoke runs only; the label then says corpus=builtin). Vocabularies: tests/data/vocab, or
// $RLHF_VOCAB_DIR.
//
// Correctness: the peer (benchmarks/peers/tokenizer_peer.py) writes tiktoken's hash of the ids of
// every chunk to $RLHF_CORPUS_DIR/.b6/tiktoken_<corpus>_<encoding>.hashes before the benchmark
// starts; this binary compares its own chunk hashes with them and exits with status 1, naming
// the first differing chunk, on any mismatch. Hash of a chunk's ids:
// Σ_i (id_i + 1)·((i + 1)·0x9E3779B97F4A7C15) mod 2^64, then "<hash> <count>".
//
// Label: variant=encode shape=<corpus>/<encoding> corpus= encoding= threads= limit=none;
// counters tokens (ids a call) and bytes (input bytes a call): MB/s = bytes / time.
#include <rlhf/backend.hpp>
#include <rlhf/tokenizer.hpp>

#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace fs = std::filesystem;

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

fs::path vocab_dir() {
  const std::string v = env("RLHF_VOCAB_DIR");
  if (!v.empty()) return v;
  return fs::path(__FILE__).parent_path().parent_path() / "tests" / "data" / "vocab";
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "tokenizer_bench: cannot read %s\n", p.string().c_str());
    std::exit(1);
  }
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

/// Chunks of ~64 KiB ending after a '\n' (or, without one, at a UTF-8 character boundary); the
/// peer cuts identically.
std::vector<std::string> chunks_of(const std::string& text, std::size_t limit) {
  constexpr std::size_t target = 65536;
  std::vector<std::string> out;
  std::size_t start = 0, total = 0;
  while (start < text.size() && total < limit) {
    std::size_t end = std::min(start + target, text.size());
    if (end < text.size()) {
      const std::size_t nl = text.rfind('\n', end - 1);
      if (nl != std::string::npos && nl >= start) {
        end = nl + 1;
      } else {
        while (end > start + 1 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
      }
    }
    out.push_back(text.substr(start, end - start));
    total += end - start;
    start = end;
  }
  return out;
}

struct corpus {
  std::string name;
  std::vector<std::string> chunks;
  std::vector<std::string_view> views;
  std::size_t bytes = 0;
};

const corpus& get_corpus(const std::string& name) {
  static std::map<std::string, std::unique_ptr<corpus>> cache;
  auto& slot = cache[name];
  if (!slot) {
    slot = std::make_unique<corpus>();
    const std::string dir = env("RLHF_CORPUS_DIR");
    std::size_t limit = 4u << 20;
    if (const std::string b = env("RLHF_CORPUS_BYTES"); !b.empty()) limit = std::stoull(b);
    std::string text;
    if (!dir.empty()) {
      text = read_file(fs::path(dir) / (name + ".txt"));
      slot->name = name;
    } else {
      // Smoke runs without a corpus: a little of everything, repeated.
      const std::string sample =
          "The quick brown fox jumps over the lazy dog; it's 12345 o'clock.\n"
          "Grüße aus Köln — 日本語のテキスト、中文文本。Привет, мир! 👍🏽\n"
          "int main() { return std::accumulate(v.begin(), v.end(), 0); }\n";
      while (text.size() < 256 * 1024) text += sample;
      slot->name = "builtin";
      limit = text.size();
    }
    slot->chunks = chunks_of(text, limit);
    for (const auto& c : slot->chunks) {
      slot->views.push_back(c);
      slot->bytes += c.size();
    }
  }
  return *slot;
}

const rlhf::bpe_tokenizer& get_tokenizer(const std::string& encoding) {
  static std::map<std::string, std::unique_ptr<rlhf::bpe_tokenizer>> cache;
  auto& slot = cache[encoding];
  if (!slot)
    slot = std::make_unique<rlhf::bpe_tokenizer>(
        rlhf::bpe_tokenizer::openai(encoding + "_base", vocab_dir() / (encoding + "_base.tiktoken")));
  return *slot;
}

std::uint64_t ids_hash(const std::vector<rlhf::token_id>& ids) {
  std::uint64_t h = 0;
  for (std::size_t i = 0; i < ids.size(); ++i)
    h += (static_cast<std::uint64_t>(ids[i]) + 1) * ((static_cast<std::uint64_t>(i) + 1) * 0x9E3779B97F4A7C15ull);
  return h;
}

/// Compares our ids with tiktoken's (when the peer has written them); exits on a mismatch.
void check_against_tiktoken(const corpus& c, const std::string& encoding, const rlhf::bpe_tokenizer& tok) {
  const std::string dir = env("RLHF_CORPUS_DIR");
  if (dir.empty()) return;
  const fs::path file = fs::path(dir) / ".b6" / ("tiktoken_" + c.name + "_" + encoding + ".hashes");
  std::ifstream in(file);
  if (!in) return;  // no peer run: nothing to compare with
  std::vector<std::string> theirs;
  for (std::string line; std::getline(in, line);) theirs.push_back(line);
  if (theirs.size() != c.chunks.size()) {
    std::fprintf(stderr, "tokenizer_bench: %s has %zu chunks, we cut %zu: corpus or RLHF_CORPUS_BYTES differ\n",
                 file.string().c_str(), theirs.size(), c.chunks.size());
    std::exit(1);
  }
  for (std::size_t i = 0; i < c.chunks.size(); ++i) {
    const auto ids = tok.encode(c.chunks[i]);
    const std::string ours = std::to_string(ids_hash(ids)) + " " + std::to_string(ids.size());
    if (ours != theirs[i]) {
      std::fprintf(stderr, "tokenizer_bench: IDS DIFFER FROM TIKTOKEN: corpus %s, encoding %s, chunk %zu (bytes %zu): "
                   "ours %s, tiktoken %s\n", c.name.c_str(), encoding.c_str(), i, c.chunks[i].size(), ours.c_str(),
                   theirs[i].c_str());
      std::exit(1);
    }
  }
}

void BM_tokenizer_encode(benchmark::State& state, std::string corpus_name, std::string encoding, int threads) {
  const corpus& c = get_corpus(corpus_name);
  const auto& tok = get_tokenizer(encoding);
  static std::map<std::string, bool> checked;
  if (!checked[c.name + "/" + encoding]) {
    check_against_tiktoken(c, encoding, tok);
    checked[c.name + "/" + encoding] = true;
  }
  std::size_t tokens = 0;
  for (const auto& chunk : c.chunks) tokens += tok.count(chunk);
  const rlhf::cpu_backend backend{.threads = threads};
  for (auto _ : state) {
    if (threads == 1) {
      for (const auto& chunk : c.views) {
        auto ids = tok.encode(chunk);
        benchmark::DoNotOptimize(ids.data());
      }
    } else {
      auto ids = tok.encode_batch(backend, c.views);
      benchmark::DoNotOptimize(ids.data());
    }
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(c.bytes));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(tokens));
  state.counters["tokens"] = static_cast<double>(tokens);
  state.counters["bytes"] = static_cast<double>(c.bytes);
  state.counters["MBps"] = benchmark::Counter(static_cast<double>(c.bytes) * 1e-6, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel("variant=encode shape=" + c.name + "/" + encoding + " corpus=" + c.name + " encoding=" + encoding +
                 " threads=" + std::to_string(threads) + " limit=none");
}

int register_all() {
  for (const char* corpus_name : {"en", "multi", "code"})
    for (const char* encoding : {"r50k", "cl100k", "o200k"})
      for (const int threads : {1, 2})
        benchmark::RegisterBenchmark(
            ("BM_tokenizer_encode/" + std::string(corpus_name) + "/" + encoding + "/threads:" + std::to_string(threads)).c_str(),
            BM_tokenizer_encode, std::string(corpus_name), std::string(encoding), threads)
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
  return 0;
}
[[maybe_unused]] const int registered = register_all();

}  // namespace
