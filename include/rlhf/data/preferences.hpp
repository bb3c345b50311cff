// rlhf/data/preferences.hpp — preference and ranking datasets (JSONL) for reward-model training.
//
// Every format becomes the same record: a prompt, K ≥ 2 completions and a ranking of them, best
// first (pairwise data is K = 2 with ranking {0, 1}: chosen first), plus ties and an optional
// margin. The reward-model trainer turns a record into its C(K, 2) pairs (rlhf/preference_loss.hpp).
//
// Formats (one JSON object per line; `preference_format::detect` picks one per line by its keys):
//   ranking      {"prompt": s, "completions": [s, ...], "ranking": [best..worst], "ties": [[i, j], ...]}
//                — the InstructGPT K-wise form; ties optional.
//   trl          {"prompt": s, "chosen": s, "rejected": s}  (TRL "standard" preference type);
//                without "prompt" the prompt is the longest common prefix of chosen and rejected,
//                a trailing space left to the completions (TRL's `extract_prompt`).
//   trl_chat     {"prompt": [messages], "chosen": [messages], "rejected": [messages]}  (TRL
//                "conversational"), rendered with ChatML (rlhf/data/chat.hpp); without "prompt",
//                the common leading messages are the prompt.
//   hh_rlhf      {"chosen": s, "rejected": s} with "\n\nHuman: … \n\nAssistant: …" turns
//                (Anthropic HH-RLHF): the prompt runs to the end of the last "\n\nAssistant:" of
//                chosen, as TRL's and DeepSpeed-Chat's HH loaders cut it.
//   summarize    {"info": {"subreddit", "title", "post"}, "summaries": [{"text"}, ...], "choice": i}
//                (OpenAI summarize_from_feedback comparisons): prompt
//                "SUBREDDIT: r/{subreddit}\n\nTITLE: {title}\n\nPOST: {post}\n\nTL;DR:", completions
//                " " + text stripped of surrounding white space (TRL's tldr_preference layout); rows
//                with an "article" instead of a post get "{article}\n\nTL;DR:".
// An optional number "margin" on any line is kept (TRL RewardTrainer's margin column).
#pragma once

#include <rlhf/data/chat.hpp>
#include <rlhf/data/jsonl.hpp>

#include <algorithm>
#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rlhf::data {

enum class preference_format { detect, ranking, trl, trl_chat, hh_rlhf, summarize };

struct ranking_record {
  std::string prompt;
  std::vector<std::string> completions;  ///< K ≥ 2
  std::vector<int> ranking;              ///< a permutation of 0..K-1, best first
  std::vector<std::pair<int, int>> ties;  ///< unordered pairs of completions judged equal
  double margin = 0.0;                   ///< required score gap for the pairs (0 = none)
};

struct preference_read_options {
  preference_format format = preference_format::detect;
  bool strict = false;  ///< see read_options
};

namespace detail {

using preference_parsed = parsed<ranking_record>;

inline std::string strip(std::string_view s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  const auto e = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(b, e - b + 1));
}

inline preference_parsed pairwise(std::string prompt, std::string chosen, std::string rejected) {
  ranking_record r;
  r.prompt = std::move(prompt);
  r.completions = {std::move(chosen), std::move(rejected)};
  r.ranking = {0, 1};
  return preference_parsed::ok(std::move(r));
}

inline preference_parsed parse_ranking(const json& j) {
  ranking_record r;
  const std::string* prompt = string_field(j, "prompt");
  if (!prompt) return preference_parsed::bad(field_problem(j, "prompt", "a string"));
  r.prompt = *prompt;
  const auto completions = j.find("completions");
  if (completions == j.end() || !completions->is_array())
    return preference_parsed::bad(field_problem(j, "completions", "an array of strings"));
  for (std::size_t i = 0; i < completions->size(); ++i) {
    if (!(*completions)[i].is_string())
      return preference_parsed::bad("completions[" + std::to_string(i) + "] is " + (*completions)[i].type_name() +
                                    ", expected a string");
    r.completions.push_back((*completions)[i].get<std::string>());
  }
  const std::size_t k = r.completions.size();
  if (k < 2) return preference_parsed::bad("completions has " + std::to_string(k) + " entries, need at least 2");
  const auto ranking = j.find("ranking");
  if (ranking == j.end() || !ranking->is_array())
    return preference_parsed::bad(field_problem(j, "ranking", "an array of completion indices"));
  if (ranking->size() != k)
    return preference_parsed::bad("ranking has " + std::to_string(ranking->size()) + " entries but completions has " +
                                  std::to_string(k));
  std::vector<bool> seen(k, false);
  for (const json& v : *ranking) {
    if (!v.is_number_integer() || v.get<long long>() < 0 || v.get<long long>() >= static_cast<long long>(k))
      return preference_parsed::bad("ranking entry " + v.dump() + " is not an index in [0, " + std::to_string(k) + ")");
    const auto index = static_cast<std::size_t>(v.get<long long>());
    if (seen[index]) return preference_parsed::bad("ranking lists completion " + std::to_string(index) + " twice");
    seen[index] = true;
    r.ranking.push_back(static_cast<int>(index));
  }
  if (const auto ties = j.find("ties"); ties != j.end()) {
    if (!ties->is_array()) return preference_parsed::bad(field_problem(j, "ties", "an array of [i, j] pairs"));
    for (const json& t : *ties) {
      const bool ok = t.is_array() && t.size() == 2 && t[0].is_number_integer() && t[1].is_number_integer() &&
                      t[0].get<long long>() >= 0 && t[1].get<long long>() >= 0 &&
                      t[0].get<long long>() < static_cast<long long>(k) &&
                      t[1].get<long long>() < static_cast<long long>(k) && t[0] != t[1];
      if (!ok) return preference_parsed::bad("ties entry " + t.dump() + " is not a pair of two different completion indices");
      r.ties.emplace_back(t[0].get<int>(), t[1].get<int>());
    }
  }
  return preference_parsed::ok(std::move(r));
}

/// TRL's extract_prompt for strings: the common prefix, a space before the split point going to
/// the completions.
inline std::size_t common_prompt_length(std::string_view a, std::string_view b) {
  std::size_t n = 0;
  const std::size_t limit = std::min(a.size(), b.size());
  while (n < limit && a[n] == b[n]) ++n;
  if (n < limit && n > 0 && a[n - 1] == ' ') --n;
  return n;
}

inline preference_parsed parse_trl(const json& j) {
  const std::string* chosen = string_field(j, "chosen");
  const std::string* rejected = string_field(j, "rejected");
  if (!chosen) return preference_parsed::bad(field_problem(j, "chosen", "a string"));
  if (!rejected) return preference_parsed::bad(field_problem(j, "rejected", "a string"));
  if (j.contains("prompt")) {
    const std::string* prompt = string_field(j, "prompt");
    if (!prompt) return preference_parsed::bad(field_problem(j, "prompt", "a string"));
    return pairwise(*prompt, *chosen, *rejected);
  }
  const std::size_t n = common_prompt_length(*chosen, *rejected);
  return pairwise(chosen->substr(0, n), chosen->substr(n), rejected->substr(n));
}

inline std::string chat_completion(const json& messages) {
  // The generation prompt "<|im_start|>assistant\n" is part of the prompt; the completion starts
  // with the first assistant message's content.
  std::string text;
  bool first = true;
  for (const auto& s : chatml_segments(messages)) {
    if (first && s.text == chatml_header("assistant")) {
      first = false;
      continue;
    }
    first = false;
    text += s.text;
  }
  return text;
}

inline preference_parsed parse_trl_chat(const json& j) {
  for (const char* key : {"chosen", "rejected"}) {
    const auto it = j.find(key);
    if (it == j.end()) return preference_parsed::bad(field_problem(j, key, "an array of messages"));
    if (auto why = check_messages(*it, key); !why.empty()) return preference_parsed::bad(why);
  }
  json prompt, chosen = j["chosen"], rejected = j["rejected"];
  if (j.contains("prompt")) {
    prompt = j["prompt"];
    if (auto why = check_messages(prompt, "prompt"); !why.empty()) return preference_parsed::bad(why);
  } else {
    std::size_t n = 0;
    while (n + 1 < chosen.size() && n + 1 < rejected.size() && chosen[n] == rejected[n]) ++n;
    if (n == 0) return preference_parsed::bad("chosen and rejected share no leading messages to use as the prompt");
    prompt = json(chosen.begin(), chosen.begin() + static_cast<std::ptrdiff_t>(n));
    chosen = json(chosen.begin() + static_cast<std::ptrdiff_t>(n), chosen.end());
    rejected = json(rejected.begin() + static_cast<std::ptrdiff_t>(n), rejected.end());
  }
  return pairwise(chatml_text(prompt) + chatml_header("assistant"), chat_completion(chosen), chat_completion(rejected));
}

inline preference_parsed parse_hh(const json& j) {
  const std::string* chosen = string_field(j, "chosen");
  const std::string* rejected = string_field(j, "rejected");
  if (!chosen) return preference_parsed::bad(field_problem(j, "chosen", "a string"));
  if (!rejected) return preference_parsed::bad(field_problem(j, "rejected", "a string"));
  constexpr std::string_view marker = "\n\nAssistant:";
  const auto at = chosen->rfind(marker);
  if (at == std::string::npos) return preference_parsed::bad("chosen has no \"\\n\\nAssistant:\" turn");
  const std::size_t n = at + marker.size();
  if (rejected->compare(0, n, *chosen, 0, n) != 0)
    return preference_parsed::bad("rejected does not start with chosen's prompt (up to its last \"\\n\\nAssistant:\")");
  return pairwise(chosen->substr(0, n), chosen->substr(n), rejected->substr(n));
}

inline preference_parsed parse_summarize(const json& j) {
  const auto info = j.find("info");
  if (info == j.end() || !info->is_object()) return preference_parsed::bad(field_problem(j, "info", "an object"));
  std::string prompt;
  if (const std::string* post = string_field(*info, "post")) {
    const std::string* subreddit = string_field(*info, "subreddit");
    const std::string* title = string_field(*info, "title");
    if (!subreddit) return preference_parsed::bad("info: " + field_problem(*info, "subreddit", "a string"));
    if (!title) return preference_parsed::bad("info: " + field_problem(*info, "title", "a string"));
    prompt = "SUBREDDIT: r/" + *subreddit + "\n\nTITLE: " + *title + "\n\nPOST: " + *post + "\n\nTL;DR:";
  } else if (const std::string* article = string_field(*info, "article")) {
    prompt = *article + "\n\nTL;DR:";
  } else {
    return preference_parsed::bad("info has neither a \"post\" nor an \"article\" string");
  }
  const auto summaries = j.find("summaries");
  if (summaries == j.end() || !summaries->is_array() || summaries->size() < 2)
    return preference_parsed::bad(field_problem(j, "summaries", "an array of at least 2 {\"text\": ...} objects"));
  ranking_record r;
  r.prompt = std::move(prompt);
  for (std::size_t i = 0; i < summaries->size(); ++i) {
    const json& s = (*summaries)[i];
    const std::string* text = s.is_object() ? string_field(s, "text") : nullptr;
    if (!text) return preference_parsed::bad("summaries[" + std::to_string(i) + "] has no \"text\" string");
    r.completions.push_back(" " + strip(*text));
  }
  const auto choice = j.find("choice");
  if (choice == j.end() || !choice->is_number_integer() || choice->get<long long>() < 0 ||
      choice->get<long long>() >= static_cast<long long>(r.completions.size()))
    return preference_parsed::bad(field_problem(j, "choice", "the index of the preferred summary"));
  const int best = choice->get<int>();
  r.ranking.push_back(best);
  for (int i = 0; i < static_cast<int>(r.completions.size()); ++i)
    if (i != best) r.ranking.push_back(i);
  // With more than two summaries only the best is known: the others are tied with each other.
  for (int a = 0; a < static_cast<int>(r.completions.size()); ++a)
    for (int b = a + 1; b < static_cast<int>(r.completions.size()); ++b)
      if (a != best && b != best) r.ties.emplace_back(a, b);
  return preference_parsed::ok(std::move(r));
}

inline preference_format detect_preference_format(const json& j) {
  if (j.contains("completions") || j.contains("ranking")) return preference_format::ranking;
  if (j.contains("summaries") || j.contains("info")) return preference_format::summarize;
  const auto chosen = j.find("chosen");
  if (chosen != j.end() && chosen->is_array()) return preference_format::trl_chat;
  if (!j.contains("prompt") && chosen != j.end() && chosen->is_string() &&
      chosen->get_ref<const std::string&>().find("\n\nAssistant:") != std::string::npos)
    return preference_format::hh_rlhf;
  return preference_format::trl;
}

inline preference_parsed parse_preference(const json& j, preference_format format) {
  if (format == preference_format::detect) format = detect_preference_format(j);
  preference_parsed p;
  switch (format) {
    case preference_format::ranking: p = parse_ranking(j); break;
    case preference_format::trl: p = parse_trl(j); break;
    case preference_format::trl_chat: p = parse_trl_chat(j); break;
    case preference_format::hh_rlhf: p = parse_hh(j); break;
    case preference_format::summarize: p = parse_summarize(j); break;
    case preference_format::detect: break;
  }
  if (p.record && j.contains("margin")) {
    const json& m = j["margin"];
    if (!m.is_number()) return preference_parsed::bad(field_problem(j, "margin", "a number"));
    p.record->margin = m.get<double>();
  }
  return p;
}

}  // namespace detail

/// Preference records from JSONL text; `source` names it in messages.
inline read_result<ranking_record> read_preferences_text(std::string_view text, std::string_view source,
                                                         const preference_read_options& options = {}) {
  return read_jsonl_text<ranking_record>(
      text, source, [&](const json& j) { return detail::parse_preference(j, options.format); },
      {.strict = options.strict});
}

inline read_result<ranking_record> read_preferences(const std::filesystem::path& path,
                                                    const preference_read_options& options = {}) {
  const std::string text = detail::read_file(path, "rlhf::data::read_preferences()");
  return read_preferences_text(text, path.string(), options);
}

}  // namespace rlhf::data
