// examples/instructgpt/task.hpp — the demo's built-in instruction task and its labeler.
//
// Prompts ask for something about a few words taken from the pretraining text:
//
//   Q: first word of "she was very much"
//   A: she
//
// Five instructions: first word, last word, count the words, repeat them, reverse them. The
// labeler ranks completions by criteria the policy never sees:
//   1. correctness — the answer, word for word (partial credit by position-wise word matches);
//   2. stopping right after the answer (the end-of-text token, nothing more);
//   3. a format convention the demonstrations rarely show: the answer ends with a full stop.
// Criteria 2 and 3 count only for an attempt at an answer (a word of the quotation, or a number
// word): "." alone earns nothing.
// Like real labelers it is noisy: each judgement adds Gaussian noise (σ = 0.5) to the scores
// before ranking, so two labelings of a pair that differs only in the full stop agree about three
// times in four (the paper reports 72.6 % inter-labeler agreement).
//
// Demonstrations are written by "contractors" who are mostly right, usually stop, and seldom use
// the full stop — so supervised fine-tuning alone under-represents criteria 2 and 3, and the
// reward model has to learn them from rankings.
#pragma once

#include <rlhf/rng.hpp>

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <numeric>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace instructgpt {

enum class instruction { first_word, last_word, count_words, repeat_words, reverse_words };
inline constexpr int instruction_count = 5;

inline const char* instruction_text(instruction kind) {
  switch (kind) {
    case instruction::first_word: return "first word of";
    case instruction::last_word: return "last word of";
    case instruction::count_words: return "count the words in";
    case instruction::repeat_words: return "repeat";
    case instruction::reverse_words: return "reverse";
  }
  return "?";
}

inline const char* number_word(std::size_t n) {
  static const char* const words[] = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight"};
  return n < std::size(words) ? words[n] : "many";
}

struct example {
  instruction kind{};
  std::vector<std::string> words;  // the quoted words
  std::string prompt;              // "Q: first word of \"she was very much\"\nA:"
  std::string answer;              // " she" (leading space: the completion follows "A:")
};

/// A generated response: its text (without the end-of-text token) and whether the policy stopped
/// by producing end-of-text (false when generation ran out of tokens).
struct completion {
  std::string text;
  bool stopped = false;
};

inline std::string join(std::span<const std::string> words) {
  std::string s;
  for (const auto& w : words) {
    if (!s.empty()) s += ' ';
    s += w;
  }
  return s;
}

inline std::string expected_answer(instruction kind, std::span<const std::string> words) {
  switch (kind) {
    case instruction::first_word: return " " + words.front();
    case instruction::last_word: return " " + words.back();
    case instruction::count_words: return std::string(" ") + number_word(words.size());
    case instruction::repeat_words: return " " + join(words);
    case instruction::reverse_words: {
      std::vector<std::string> r(words.rbegin(), words.rend());
      return " " + join(r);
    }
  }
  return {};
}

inline example make_example(instruction kind, std::vector<std::string> words) {
  example e;
  e.kind = kind;
  e.prompt = std::string("Q: ") + instruction_text(kind) + " \"" + join(words) + "\"\nA:";
  e.answer = expected_answer(kind, words);
  e.words = std::move(words);
  return e;
}

/// Lower-case alphabetic words of the text, in order, split into sentences at . ! ? ; :
inline std::vector<std::vector<std::string>> sentences_of(std::string_view text) {
  std::vector<std::vector<std::string>> sentences(1);
  std::string word;
  auto flush = [&] {
    if (!word.empty()) sentences.back().push_back(std::move(word));
    word.clear();
  };
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalpha(u)) {
      word += static_cast<char>(std::tolower(u));
    } else {
      flush();
      if (c == '.' || c == '!' || c == '?' || c == ';' || c == ':') {
        if (!sentences.back().empty()) sentences.emplace_back();
      }
    }
  }
  flush();
  if (sentences.back().empty()) sentences.pop_back();
  return sentences;
}

/// Prompts drawn from windows of 2..5 consecutive words of the sentences of a text.
class task {
 public:
  explicit task(std::string_view text) {
    for (auto& s : sentences_of(text))
      if (s.size() >= 5) sentences_.push_back(std::move(s));
  }

  std::size_t sentence_count() const noexcept { return sentences_.size(); }

  /// A prompt drawn from the sentences in [begin, end) (fractions of the sentence list), so
  /// training and held-out prompts come from different parts of the text.
  example sample(rlhf::rng& g, double begin = 0.0, double end = 1.0) const {
    const auto lo = static_cast<std::size_t>(begin * static_cast<double>(sentences_.size()));
    const auto hi = std::max(lo + 1, static_cast<std::size_t>(end * static_cast<double>(sentences_.size())));
    const auto& s = sentences_[lo + g.uniform_index(hi - lo)];
    const auto kind = static_cast<instruction>(g.uniform_index(instruction_count));
    const std::size_t n = 2 + g.uniform_index(4);  // 2..5 words
    const std::size_t start = g.uniform_index(s.size() - n + 1);
    return make_example(kind, std::vector<std::string>(s.begin() + static_cast<std::ptrdiff_t>(start),
                                                       s.begin() + static_cast<std::ptrdiff_t>(start + n)));
  }

 private:
  std::vector<std::vector<std::string>> sentences_;
};

/// What a contractor writes for a prompt: usually the right answer and a stop; sometimes a wrong
/// word or a rambling continuation; seldom the full stop the labeler likes.
struct demonstration_style {
  double wrong = 0.10;      ///< a plausible but wrong answer (a word of the prompt)
  double ramble = 0.15;     ///< the answer followed by more words
  double full_stop = 0.10;  ///< the answer ends with "."
};

inline completion demonstrate(const example& e, rlhf::rng& g, const demonstration_style& style = {}) {
  completion c;
  c.stopped = true;
  if (g.uniform() < style.wrong) {
    c.text = " " + e.words[g.uniform_index(e.words.size())];
  } else {
    c.text = e.answer;
  }
  if (g.uniform() < style.full_stop) c.text += ".";
  if (g.uniform() < style.ramble) {
    c.text += " and " + e.words[g.uniform_index(e.words.size())];
    if (g.uniform() < 0.5) c.stopped = false;  // cut off, no end-of-text
  }
  return c;
}

/// Words of a completion (alphabetic runs, lower case), and whether it ends with a full stop.
inline std::vector<std::string> words_of(std::string_view text) {
  std::vector<std::string> words;
  std::string w;
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u)) {
      w += static_cast<char>(std::tolower(u));
    } else if (!w.empty()) {
      words.push_back(std::move(w));
      w.clear();
    }
  }
  if (!w.empty()) words.push_back(std::move(w));
  return words;
}

struct labeler_options {
  double correct_weight = 2.0;  ///< exact answer
  double stop_weight = 1.0;     ///< nothing after the answer, and the end-of-text token
  double format_weight = 0.7;   ///< the answer ends with "."
  double noise = 0.5;           ///< standard deviation of the per-judgement noise
};

/// The hidden preference. `score` is the noise-free value; `rank` adds noise per judgement.
class labeler {
 public:
  explicit labeler(labeler_options o = {}) : options_(o) {}

  /// Correctness in [0, 1]: the fraction of answer words matched in position, minus a share for
  /// extra words, so "she" beats "she was" for "first word of".
  static double correctness(const example& e, std::string_view text) {
    const auto want = words_of(e.answer);
    const auto got = words_of(text);
    std::size_t matched = 0;
    for (std::size_t i = 0; i < std::min(want.size(), got.size()); ++i) matched += want[i] == got[i];
    const double extra = got.size() > want.size() ? static_cast<double>(got.size() - want.size()) : 0.0;
    const double c = (static_cast<double>(matched) - 0.5 * extra) / static_cast<double>(want.size());
    return std::clamp(c, 0.0, 1.0);
  }

  /// An attempt at an answer: at least one word of the completion is a word of the prompt's
  /// quotation or a number word. Stopping and the full stop earn nothing without one, so that
  /// "." alone is not a good answer.
  static bool attempts_answer(const example& e, const completion& c) {
    for (const auto& w : words_of(c.text)) {
      if (std::find(e.words.begin(), e.words.end(), w) != e.words.end()) return true;
      for (std::size_t n = 0; n <= 8; ++n)
        if (w == number_word(n)) return true;
    }
    return false;
  }

  /// True when the completion is an attempt, the answer's length at most, then end-of-text.
  static bool stops_after_answer(const example& e, const completion& c) {
    return c.stopped && attempts_answer(e, c) && words_of(c.text).size() <= words_of(e.answer).size();
  }

  /// True when an attempt ends with a full stop.
  static bool has_full_stop(const example& e, const completion& c) {
    std::string_view t = c.text;
    while (!t.empty() && t.back() == ' ') t.remove_suffix(1);
    return !t.empty() && t.back() == '.' && attempts_answer(e, c);
  }

  double score(const example& e, const completion& c) const {
    return options_.correct_weight * correctness(e, c.text) +
           options_.stop_weight * (stops_after_answer(e, c) ? 1.0 : 0.0) +
           options_.format_weight * (has_full_stop(e, c) ? 1.0 : 0.0);
  }

  /// A ranking of the completions, best first, from noisy scores (ties by index).
  std::vector<int> rank(const example& e, std::span<const completion> completions, rlhf::rng& g) const {
    std::vector<double> noisy(completions.size());
    for (std::size_t i = 0; i < completions.size(); ++i)
      noisy[i] = score(e, completions[i]) + options_.noise * g.normal();
    std::vector<int> order(completions.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
      return noisy[static_cast<std::size_t>(a)] > noisy[static_cast<std::size_t>(b)];
    });
    return order;
  }

  /// Win of a over b judged without noise: 1, 0.5 (equal scores) or 0. Evaluation uses it.
  double prefers(const example& e, const completion& a, const completion& b) const {
    const double sa = score(e, a);
    const double sb = score(e, b);
    return sa > sb ? 1.0 : (sa < sb ? 0.0 : 0.5);
  }

  const labeler_options& options() const noexcept { return options_; }

 private:
  labeler_options options_;
};

}  // namespace instructgpt
