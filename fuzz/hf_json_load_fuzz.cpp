// Fuzzes the Hugging Face tokenizer.json loader: any bytes either load (then the input itself,
// encoded, decodes back to its bytes) or throw rlhf::error (format_error for the file,
// invalid_argument for a Split regex PCRE2 rejects); nothing else may happen.
#include <rlhf/tokenizer/hf_json.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view contents(reinterpret_cast<const char*>(data), size);
  try {
    const auto tok = rlhf::hf_tokenizer::from_json(contents, "fuzz.json");
    const std::string_view text = contents.substr(0, 512);
    const auto ids = tok.encode(text);
    // Added tokens with lstrip/rstrip keep their spaces in their own id, so only the plain
    // encoding is required to give the text back; both must not crash.
    (void)tok.decode(ids);
    (void)tok.decode_lossy(ids);
    const auto plain = tok.encode_ordinary(text);
    bool has_added = false;
    for (const auto& a : tok.added_tokens()) has_added |= !a.special || a.lstrip || a.rstrip;
    if (!has_added && tok.pre_tokenizer().add_prefix_space == false && tok.decode(plain) != text) std::abort();
  } catch (const rlhf::error&) {
  }
  return 0;
}
