// rlhf/data/chat.hpp — conversations as text, in the ChatML layout.
//
//   <|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n
//   <|im_start|>assistant\nHello!<|im_end|>\n
//
// A conversation ([{"role": ..., "content": ...}, ...], the "conversational" form of TRL's
// datasets) becomes segments of text, each marked as trained on or not: the assistant turns are
// (content and closing "<|im_end|>\n"), everything else — the role headers included — is not. The
// generation prompt that precedes a completion is "<|im_start|>assistant\n", as
// `apply_chat_template(..., add_generation_prompt=True)` writes it for ChatML models.
#pragma once

#include <rlhf/data/jsonl.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace rlhf::data {

/// A piece of a training text and whether the loss covers it.
struct text_segment {
  std::string text;
  bool train = false;
};

inline constexpr std::string_view chatml_start = "<|im_start|>";
inline constexpr std::string_view chatml_end = "<|im_end|>";

inline std::string chatml_header(std::string_view role) {
  return std::string(chatml_start) + std::string(role) + "\n";
}

/// Checks that `messages` is an array of {"role": string, "content": string}; returns the reason
/// when it is not (empty when it is).
inline std::string check_messages(const json& messages, const char* field) {
  if (!messages.is_array()) return std::string("field \"") + field + "\" is " + messages.type_name() + ", expected an array of messages";
  if (messages.empty()) return std::string("field \"") + field + "\" has no messages";
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const json& m = messages[i];
    const std::string where = std::string(field) + "[" + std::to_string(i) + "]";
    if (!m.is_object()) return where + " is " + m.type_name() + ", expected an object";
    if (!string_field(m, "role")) return where + ": " + field_problem(m, "role", "a string");
    if (!string_field(m, "content")) return where + ": " + field_problem(m, "content", "a string");
  }
  return {};
}

/// The ChatML segments of a (checked) conversation; assistant turns are trained on.
inline std::vector<text_segment> chatml_segments(const json& messages) {
  std::vector<text_segment> segments;
  for (const json& m : messages) {
    const std::string& role = *string_field(m, "role");
    const std::string& content = *string_field(m, "content");
    if (role == "assistant") {
      segments.push_back({chatml_header(role), false});
      segments.push_back({content + std::string(chatml_end) + "\n", true});
    } else {
      segments.push_back({chatml_header(role) + content + std::string(chatml_end) + "\n", false});
    }
  }
  return segments;
}

/// The whole conversation as one string.
inline std::string chatml_text(const json& messages) {
  std::string text;
  for (const auto& s : chatml_segments(messages)) text += s.text;
  return text;
}

}  // namespace rlhf::data
