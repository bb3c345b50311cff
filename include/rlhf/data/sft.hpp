// rlhf/data/sft.hpp — supervised fine-tuning and pretraining text datasets.
//
// SFT records are segments of text marked "trained on" or not; the SFT trainer computes the loss
// on the tokens of trained segments only (loss on the response only, TRL's
// `completion_only_loss=True` default for prompt–completion data).
//   prompt/completion  {"prompt": s, "completion": s}           TRL "prompt-completion"
//   messages           {"messages": [{"role", "content"}, ...]}  TRL "conversational", ChatML;
//                      the assistant turns are trained on (TRL `assistant_only_loss=True`)
//   text               {"text": s}                               TRL "language modeling": all trained
// `sft_format::detect` picks the format per line by its keys.
//
// Pretraining text (the ptx batches) comes from a plain text file or from {"text": s} lines.
#pragma once

#include <rlhf/data/chat.hpp>
#include <rlhf/data/jsonl.hpp>

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace rlhf::data {

enum class sft_format { detect, prompt_completion, messages, text };

struct sft_record {
  std::vector<text_segment> segments;

  std::string text() const {
    std::string t;
    for (const auto& s : segments) t += s.text;
    return t;
  }
};

struct sft_read_options {
  sft_format format = sft_format::detect;
  bool strict = false;  ///< see read_options
};

namespace detail {
inline parsed<sft_record> parse_sft(const json& j, sft_format format) {
  using result = parsed<sft_record>;
  if (format == sft_format::detect) {
    format = j.contains("messages") ? sft_format::messages
             : j.contains("completion") ? sft_format::prompt_completion
             : j.contains("text")       ? sft_format::text
                                        : sft_format::prompt_completion;
  }
  sft_record r;
  switch (format) {
    case sft_format::prompt_completion: {
      const std::string* prompt = string_field(j, "prompt");
      const std::string* completion = string_field(j, "completion");
      if (!prompt) return result::bad(field_problem(j, "prompt", "a string"));
      if (!completion) return result::bad(field_problem(j, "completion", "a string"));
      r.segments = {{*prompt, false}, {*completion, true}};
      break;
    }
    case sft_format::messages: {
      const auto it = j.find("messages");
      if (it == j.end()) return result::bad(field_problem(j, "messages", "an array of messages"));
      if (auto why = check_messages(*it, "messages"); !why.empty()) return result::bad(why);
      r.segments = chatml_segments(*it);
      bool any = false;
      for (const auto& s : r.segments) any = any || s.train;
      if (!any) return result::bad("messages has no assistant turn to train on");
      break;
    }
    case sft_format::text: {
      const std::string* text = string_field(j, "text");
      if (!text) return result::bad(field_problem(j, "text", "a string"));
      r.segments = {{*text, true}};
      break;
    }
    case sft_format::detect: break;
  }
  return result::ok(std::move(r));
}
}  // namespace detail

inline read_result<sft_record> read_sft_text(std::string_view text, std::string_view source,
                                             const sft_read_options& options = {}) {
  return read_jsonl_text<sft_record>(
      text, source, [&](const json& j) { return detail::parse_sft(j, options.format); },
      {.strict = options.strict});
}

inline read_result<sft_record> read_sft(const std::filesystem::path& path, const sft_read_options& options = {}) {
  const std::string text = detail::read_file(path, "rlhf::data::read_sft()");
  return read_sft_text(text, path.string(), options);
}

/// Pretraining documents: a .jsonl file gives one document per {"text": s} line (bad lines as in
/// read_options); any other file is one document, its whole content.
inline read_result<std::string> read_pretraining(const std::filesystem::path& path, const read_options& options = {}) {
  std::string content = detail::read_file(path, "rlhf::data::read_pretraining()");
  if (path.extension() == ".jsonl") {
    return read_jsonl_text<std::string>(
        content, path.string(),
        [](const json& j) {
          const std::string* text = string_field(j, "text");
          return text ? parsed<std::string>::ok(*text) : parsed<std::string>::bad(field_problem(j, "text", "a string"));
        },
        options);
  }
  read_result<std::string> result;
  result.lines = 1;
  result.records.push_back(std::move(content));
  return result;
}

}  // namespace rlhf::data
