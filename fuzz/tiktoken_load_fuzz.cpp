// Fuzzes the `.tiktoken` loader: any bytes either load (then encoding and decoding work and round
// trip) or throw rlhf::error (format_error for the file); nothing else may happen.
#include <rlhf/tokenizer.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view contents(reinterpret_cast<const char*>(data), size);
  try {
    const auto tok = rlhf::bpe_tokenizer::from_tiktoken(contents, rlhf::pretokenizer::gpt2(),
                                                        {{"<|endoftext|>", 1 << 20}}, "fuzz.tiktoken");
    const std::string text = "Hello, world! It's 2024 \xF0\x9F\x91\x8D<|endoftext|>";
    const auto ids = tok.encode(text, {.allow_all_special = true});
    if (tok.decode(ids) != text) std::abort();
    if (tok.count(text, {.allow_all_special = true}) != ids.size()) std::abort();
  } catch (const rlhf::error&) {
  }
  return 0;
}
