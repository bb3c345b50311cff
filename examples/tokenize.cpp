// Tokenize text with GPT-2's encoding (r50k_base): encode, count, decode (exact, lossy,
// streaming) and special tokens.
//
//   ./tokenize [path/to/r50k_base.tiktoken]
//
// Without an argument the rank file is taken from the repository's test data, found relative
// to this source file.
#include <rlhf/tokenizer.hpp>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

namespace {

void print_ids(const char* label, const std::vector<rlhf::token_id>& ids) {
  std::printf("%-22s", label);
  for (const rlhf::token_id id : ids) std::printf(" %d", id);
  std::printf("  (%zu tokens)\n", ids.size());
}

}  // namespace

int main(int argc, char** argv) {
  const std::filesystem::path vocab =
      argc > 1 ? std::filesystem::path(argv[1])
               : std::filesystem::path(__FILE__).parent_path() / ".." / "tests" / "data" / "vocab" / "r50k_base.tiktoken";
  const auto gpt2 = rlhf::bpe_tokenizer::openai("r50k_base", vocab);
  std::printf("r50k_base: vocab_size %zu, eos %d\n", gpt2.vocab_size(), gpt2.eos_id());

  const std::string text = "Hello world! InstructGPT's reward model ranks 4-9 completions.";
  const std::vector<rlhf::token_id> ids = gpt2.encode(text);
  print_ids("encode:", ids);
  std::printf("%-22s", "pieces:");
  for (const rlhf::token_id id : ids) std::printf(" [%s]", std::string(gpt2.bytes_of(id)).c_str());
  std::printf("\n");
  std::printf("count: %zu, round trip: %s\n", gpt2.count(text), gpt2.decode(ids) == text ? "exact" : "DIFFERENT");

  // Special-token text is ordinary text unless the caller allows it.
  const std::string doc = "first document<|endoftext|>second";
  print_ids("as plain text:", gpt2.encode(doc));
  print_ids("allowed special:", gpt2.encode(doc, {.allow_all_special = true}));

  // A character split over tokens: exact bytes, lossy text, and a streaming decoder that only
  // returns complete characters.
  const std::vector<rlhf::token_id> emoji = gpt2.encode("ok \xF0\x9F\x91\x8D");
  print_ids("encode(\"ok \xF0\x9F\x91\x8D\"):", emoji);
  std::vector<rlhf::token_id> prefix(emoji.begin(), emoji.end() - 1);
  std::printf("decode of all but the last: %zu bytes, valid UTF-8: %s; lossy: \"%s\"\n", gpt2.decode(prefix).size(),
              rlhf::utf8_valid(gpt2.decode(prefix)) ? "yes" : "no", gpt2.decode_lossy(prefix).c_str());
  rlhf::streaming_decoder stream(gpt2);
  for (const rlhf::token_id id : emoji) std::printf("push(%d) -> \"%s\"\n", id, stream.push(id).c_str());
  std::printf("finish() -> \"%s\"\n", stream.finish().c_str());
  return 0;
}
