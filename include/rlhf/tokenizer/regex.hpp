// rlhf/tokenizer/regex.hpp — a small RAII wrapper over PCRE2 (8-bit) for pre-tokenisation patterns.
//
// Patterns are compiled with PCRE2_UTF | PCRE2_UCP (so \s, \w, \d and \p{..} are Unicode) and
// PCRE2_MATCH_INVALID_UTF (invalid UTF-8 in a subject never matches and is never an error), then
// JIT-compiled when PCRE2 has a JIT. Every match runs under a match limit and a depth limit: a
// subject that hits one throws rlhf::error naming the input offset, never a silently wrong split.
//
// PCRE2 is optional. Without it (RLHF_HAS_PCRE2 undefined) the class still exists and
// constructing one throws rlhf::error saying the library was built without PCRE2.
#pragma once

#include <rlhf/config.hpp>
#include <rlhf/error.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#if defined(RLHF_HAS_PCRE2)
#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>
#endif

namespace rlhf {

/// Limits and switches of a compiled regex.
struct regex_options {
  /// pcre2_set_match_limit: the most internal match() calls (backtracking steps) per search.
  std::uint32_t match_limit = 10'000'000;
  /// pcre2_set_depth_limit: the deepest backtracking nesting of the interpreter (the JIT is
  /// bounded by its stack instead; on JIT stack exhaustion the search reruns interpreted).
  std::uint32_t depth_limit = 100'000;
  /// Use the JIT when PCRE2 has one.
  bool jit = true;
};

/// One match: the half-open byte range [begin, end) of the subject.
struct regex_match {
  std::size_t begin;
  std::size_t end;
};

/// A compiled PCRE2 pattern. Thread-safe for concurrent searches; move-only.
class regex {
 public:
  /// Compiles `pattern`. Throws rlhf::invalid_argument naming the pattern, the PCRE2 message and
  /// the offset in the pattern when it does not compile; rlhf::error without PCRE2.
  explicit regex(std::string_view pattern, const regex_options& options = {}) : pattern_(pattern) {
#if defined(RLHF_HAS_PCRE2)
    int code = 0;
    PCRE2_SIZE offset = 0;
    code_ = pcre2_compile_8(reinterpret_cast<PCRE2_SPTR8>(pattern_.data()), pattern_.size(),
                            PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &code, &offset, nullptr);
    if (code_ == nullptr) {
      RLHF_THROW(invalid_argument("rlhf::regex: cannot compile the pattern '" + pattern_ + "': " +
                                  message(code) + " at offset " + std::to_string(offset)));
    }
    if (options.jit) jit_ = pcre2_jit_compile_8(code_, PCRE2_JIT_COMPLETE) == 0;
    context_ = pcre2_match_context_create_8(nullptr);
    if (context_ == nullptr) {
      release();
      RLHF_THROW(error("rlhf::regex: out of memory creating a match context"));
    }
    pcre2_set_match_limit_8(context_, options.match_limit);
    pcre2_set_depth_limit_8(context_, options.depth_limit);
#else
    (void)options;
    RLHF_THROW(error("rlhf::regex: the library was built without PCRE2, so the pattern '" +
                     pattern_ + "' cannot be compiled (install libpcre2-dev and reconfigure)"));
#endif
  }

  regex(const regex&) = delete;
  regex& operator=(const regex&) = delete;
  regex(regex&& other) noexcept { swap(other); }
  regex& operator=(regex&& other) noexcept {
    if (this != &other) {
      release();
      swap(other);
    }
    return *this;
  }
  ~regex() { release(); }

  /// The pattern as given.
  [[nodiscard]] const std::string& pattern() const noexcept { return pattern_; }
  /// Whether searches run JIT-compiled code.
  [[nodiscard]] bool jit() const noexcept { return jit_; }

  /// Calls on_match(regex_match) for each successive non-empty match of the subject, left to
  /// right, each search starting where the previous match ended (empty matches are skipped and
  /// the search moves on by one code point). Throws rlhf::error when a limit is hit.
  template <class F>
  void for_each_match(std::string_view subject, F&& on_match) const {
#if defined(RLHF_HAS_PCRE2)
    match_data data(code_);
    std::size_t start = 0;
    regex_match m{};
    while (start <= subject.size() && search(subject, start, data, m)) {
      if (m.end == m.begin) {
        start = m.begin + next_length(subject, m.begin);
        continue;
      }
      on_match(m);
      start = m.end;
    }
#else
    (void)subject;
    (void)on_match;
#endif
  }

  /// The first match that starts at or after `start` (empty matches included), or nullopt.
  [[nodiscard]] std::optional<regex_match> find(std::string_view subject, std::size_t start = 0) const {
#if defined(RLHF_HAS_PCRE2)
    match_data data(code_);
    regex_match m{};
    if (start <= subject.size() && search(subject, start, data, m)) return m;
#else
    (void)subject;
    (void)start;
#endif
    return std::nullopt;
  }

  /// The Unicode version of PCRE2's own tables (e.g. "14.0.0" for PCRE2 10.42), or "" without PCRE2.
  [[nodiscard]] static std::string pcre2_unicode_version() {
#if defined(RLHF_HAS_PCRE2)
    char buffer[32] = {};
    if (pcre2_config_8(PCRE2_CONFIG_UNICODE_VERSION, buffer) < 0) return {};
    return buffer;
#else
    return {};
#endif
  }

  /// The PCRE2 library version (e.g. "10.42 2022-12-11"), or "" without PCRE2.
  [[nodiscard]] static std::string pcre2_version() {
#if defined(RLHF_HAS_PCRE2)
    char buffer[64] = {};
    if (pcre2_config_8(PCRE2_CONFIG_VERSION, buffer) < 0) return {};
    return buffer;
#else
    return {};
#endif
  }

 private:
#if defined(RLHF_HAS_PCRE2)
  struct match_data {
    explicit match_data(const pcre2_code_8* code) : data(pcre2_match_data_create_from_pattern_8(code, nullptr)) {
      if (data == nullptr) RLHF_THROW(error("rlhf::regex: out of memory creating match data"));
    }
    match_data(const match_data&) = delete;
    match_data& operator=(const match_data&) = delete;
    ~match_data() { pcre2_match_data_free_8(data); }
    pcre2_match_data_8* data;
  };

  static std::string message(int code) {
    PCRE2_UCHAR8 buffer[256] = {};
    if (pcre2_get_error_message_8(code, buffer, sizeof buffer) < 0) return "error " + std::to_string(code);
    return reinterpret_cast<const char*>(buffer);
  }

  // Bytes of the code point at i (1 for an invalid byte), so an empty match never loops.
  static std::size_t next_length(std::string_view s, std::size_t i) noexcept {
    if (i >= s.size()) return 1;
    const auto b = static_cast<unsigned char>(s[i]);
    std::size_t n = b < 0xC2 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : b < 0xF5 ? 4 : 1;
    if (i + n > s.size()) return 1;
    for (std::size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return 1;
    return n;
  }

  bool search(std::string_view subject, std::size_t start, match_data& data, regex_match& out) const {
    const auto* s = reinterpret_cast<PCRE2_SPTR8>(subject.data());
    int rc = pcre2_match_8(code_, s, subject.size(), start, 0, data.data, context_);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)  // the interpreter keeps its backtracking on the heap
      rc = pcre2_match_8(code_, s, subject.size(), start, PCRE2_NO_JIT, data.data, context_);
    if (rc == PCRE2_ERROR_NOMATCH) return false;
    if (rc < 0) {
      RLHF_THROW(error("rlhf::regex: matching the pattern '" + pattern_ + "' from input offset " +
                       std::to_string(start) + " of " + std::to_string(subject.size()) +
                       " bytes failed: " + message(rc)));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer_8(data.data);
    out = {ov[0], ov[1]};
    return true;
  }

  void release() noexcept {
    if (context_ != nullptr) pcre2_match_context_free_8(context_);
    if (code_ != nullptr) pcre2_code_free_8(code_);
    context_ = nullptr;
    code_ = nullptr;
  }
  void swap(regex& other) noexcept {
    std::swap(pattern_, other.pattern_);
    std::swap(code_, other.code_);
    std::swap(context_, other.context_);
    std::swap(jit_, other.jit_);
  }

  pcre2_code_8* code_ = nullptr;
  pcre2_match_context_8* context_ = nullptr;
#else
  void release() noexcept {}
  void swap(regex& other) noexcept {
    std::swap(pattern_, other.pattern_);
    std::swap(jit_, other.jit_);
  }
#endif
  std::string pattern_;
  bool jit_ = false;
};

}  // namespace rlhf
