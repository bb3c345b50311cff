// fuzz/safetensors_fuzz.cpp — libFuzzer target for the safetensors reader.
//
// Any input must either parse or throw rlhf::format_error; nothing else (no crash, no other
// exception, no sanitizer report). A parsed file must survive its own round trip: every
// tensor's bytes are read, the file is written again with serialize_safetensors, and that
// parses to the same tensors and metadata. Seeds: fuzz/corpus/safetensors/.
#include <rlhf/io/safetensors.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(data), size);
  try {
    const auto file = rlhf::safetensors_file::parse(bytes, "fuzz", {.max_header_bytes = 1 << 20});
    unsigned checksum = 0;
    std::vector<rlhf::safetensors_entry> entries;
    for (const auto& t : file.tensors()) {
      for (const std::byte b : t.bytes) checksum += static_cast<unsigned>(b);
      if (file.find(t.name) != &t) std::abort();
      entries.push_back({t.name, t.dtype, t.shape, t.bytes});
    }
    const auto again = rlhf::serialize_safetensors(entries, file.metadata());
    const auto reparsed = rlhf::safetensors_file::parse(again, "fuzz-roundtrip");
    if (reparsed.tensors().size() != file.tensors().size() || reparsed.metadata() != file.metadata()) std::abort();
    for (const auto& t : file.tensors()) {
      const auto* r = reparsed.find(t.name);
      if (r == nullptr || r->dtype != t.dtype || r->shape != t.shape ||
          !std::equal(r->bytes.begin(), r->bytes.end(), t.bytes.begin(), t.bytes.end()))
        std::abort();
    }
    if (checksum == 0xFFFFFFFFu) return 0;  // keeps the reads observable
  } catch (const rlhf::format_error&) {
  }
  return 0;
}
