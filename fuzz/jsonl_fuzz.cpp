// Fuzzes the JSONL dataset readers (rlhf/data/preferences.hpp, rlhf/data/sft.hpp): any bytes must
// give records and skipped lines that account for every non-blank line, never a crash; strict
// mode either succeeds or throws rlhf::format_error.
#include <rlhf/data/preferences.hpp>
#include <rlhf/data/sft.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto preferences = rlhf::data::read_preferences_text(text, "fuzz.jsonl");
  if (preferences.records.size() + preferences.skipped.size() != preferences.lines) std::abort();
  for (const auto& r : preferences.records) {
    if (r.completions.size() < 2 || r.ranking.size() != r.completions.size()) std::abort();
    for (int i : r.ranking)
      if (i < 0 || static_cast<std::size_t>(i) >= r.completions.size()) std::abort();
  }
  const auto sft = rlhf::data::read_sft_text(text, "fuzz.jsonl");
  if (sft.records.size() + sft.skipped.size() != sft.lines) std::abort();
  try {
    (void)rlhf::data::read_preferences_text(text, "fuzz.jsonl", {.strict = true});
  } catch (const rlhf::format_error&) {
  }
  return 0;
}
