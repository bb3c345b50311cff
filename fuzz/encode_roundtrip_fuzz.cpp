// Fuzzes encoding with a real vocabulary (r50k_base): for any bytes, decode(encode(x)) == x with
// invalid UTF-8 kept, == utf8_lossy(x) with it replaced; count() agrees with encode(); the heap
// and linear merges agree on every piece; and the GPT-2 tokenizer.json (Hugging Face's rule over
// the merges list) gives the same ids as the rank rule.
#include <rlhf/tokenizer.hpp>
#include <rlhf/tokenizer/hf_json.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {
const rlhf::bpe_tokenizer& r50k() {
  static const auto tok = rlhf::bpe_tokenizer::openai("r50k_base", RLHF_FUZZ_DATA_DIR "/vocab/r50k_base.tiktoken");
  return tok;
}
const rlhf::hf_tokenizer& gpt2_json() {
  static const auto tok = rlhf::hf_tokenizer::from_file(RLHF_FUZZ_DATA_DIR "/vocab/hf/gpt2.tokenizer.json");
  return tok;
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)r50k();
  (void)gpt2_json();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto& tok = r50k();
  const rlhf::encode_options keep{.on_invalid_utf8 = rlhf::invalid_utf8::keep_bytes};
  const auto ids = tok.encode(text, keep);
  if (tok.decode(ids) != text) std::abort();
  if (tok.count(text, keep) != ids.size()) std::abort();
  const auto replaced = tok.encode(text);
  if (tok.decode(replaced) != rlhf::utf8_lossy(text)) std::abort();
  if (tok.decode_lossy(ids) != rlhf::utf8_lossy(text)) std::abort();
  // Heap and linear merges on every piece.
  std::vector<rlhf::token_id> a, b;
  tok.pre_tokenizer().split(text, [&](std::string_view piece) {
    a.clear();
    b.clear();
    tok.model().encode_piece_with_heap(piece, [&](rlhf::token_id id) { a.push_back(id); });
    if (piece.size() <= 512) {  // the linear merge is quadratic: keep the fuzzer fast
      tok.model().encode_piece_linear(piece, [&](rlhf::token_id id) { b.push_back(id); });
      if (a != b) std::abort();
    }
  });
  // Hugging Face's pair rule over GPT-2's merges = tiktoken's rank rule (special-token text aside).
  if (text.find("<|endoftext|>") == std::string_view::npos && gpt2_json().encode(text) != ids) std::abort();
  return 0;
}
