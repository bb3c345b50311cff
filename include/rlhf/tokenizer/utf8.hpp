// rlhf/tokenizer/utf8.hpp — UTF-8 validation, lossy decoding and a streaming lossy decoder.
//
// Token bytes are not always valid UTF-8 (a character can be split over two tokens), so the
// tokenizer decodes to exact bytes, and this header turns bytes into valid UTF-8 text:
//
//   rlhf::utf8_valid(bytes)              true when bytes is well-formed UTF-8
//   rlhf::utf8_lossy(bytes)              every ill-formed part replaced by U+FFFD
//   rlhf::utf8_lossy_stream s;           s.push(bytes) → the complete characters so far,
//                                        s.finish()   → what is left, lossily
//
// Replacement follows the Unicode "maximal subpart" practice (Unicode 15, §3.9, U+FFFD
// substitution) that the WHATWG Encoding Standard prescribes and that Python's
// `bytes.decode("utf-8", errors="replace")`, Rust's `String::from_utf8_lossy` and JavaScript's
// `TextDecoder` all follow: one U+FFFD for each maximal prefix of a well-formed sequence that
// cannot be completed, and one for each byte that cannot start a sequence. For example
// "\xF0\x9F\x98" + "A" gives "\uFFFD" "A" (one replacement), "\xC0\xAF" gives two.
//
// The stream holds back only a trailing prefix of a well-formed sequence (at most 3 bytes), so
// the concatenation of everything push() and finish() return equals utf8_lossy() of all the
// bytes, however they were split.
#pragma once

#include <rlhf/config.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace rlhf {

namespace detail {

/// For a lead byte: the sequence length (0 = cannot start a sequence) and the allowed range of
/// the second byte (Unicode Table 3-7).
struct utf8_lead {
  unsigned char length, lo, hi;
};
inline constexpr utf8_lead utf8_lead_of(unsigned char b) noexcept {
  if (b < 0x80) return {1, 0, 0};
  if (b < 0xC2) return {0, 0, 0};
  if (b < 0xE0) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};
  if (b < 0xF0) return {3, 0x80, 0xBF};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b < 0xF4) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

/// At s[i] (i < n): the length of a well-formed sequence starting there (> 0), or minus the
/// length of the maximal subpart to replace (< 0; −1 for a byte that cannot start a sequence).
inline std::ptrdiff_t utf8_step(const unsigned char* s, std::size_t i, std::size_t n) noexcept {
  const utf8_lead lead = utf8_lead_of(s[i]);
  if (lead.length == 1) return 1;
  if (lead.length == 0) return -1;
  std::size_t k = 1;
  if (i + 1 >= n || s[i + 1] < lead.lo || s[i + 1] > lead.hi) return -1;
  for (k = 2; k < lead.length; ++k)
    if (i + k >= n || (s[i + k] & 0xC0) != 0x80) return -static_cast<std::ptrdiff_t>(k);
  return static_cast<std::ptrdiff_t>(lead.length);
}

inline constexpr char utf8_replacement[] = "\xEF\xBF\xBD";

}  // namespace detail

/// The length of the longest well-formed UTF-8 prefix of `bytes`.
inline std::size_t utf8_valid_prefix(std::string_view bytes) noexcept {
  const auto* s = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::size_t n = bytes.size();
  std::size_t i = 0;
  while (i < n) {
    // ASCII fast path: 8 bytes at a time.
    while (i + 8 <= n) {
      std::uint64_t w;
      std::memcpy(&w, s + i, 8);
      if (w & 0x8080808080808080ull) break;
      i += 8;
    }
    if (i >= n) break;
    if (s[i] < 0x80) {
      ++i;
      continue;
    }
    const std::ptrdiff_t step = detail::utf8_step(s, i, n);
    if (step < 0) return i;
    i += static_cast<std::size_t>(step);
  }
  return n;
}

/// True when `bytes` is well-formed UTF-8 (no surrogates, no overlong forms, ≤ U+10FFFF).
inline bool utf8_valid(std::string_view bytes) noexcept { return utf8_valid_prefix(bytes) == bytes.size(); }

/// Appends `bytes` to `out` with every ill-formed part replaced by U+FFFD (maximal subparts).
inline void append_utf8_lossy(std::string_view bytes, std::string& out) {
  const auto* s = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::size_t n = bytes.size();
  std::size_t i = 0;
  while (i < n) {
    const std::size_t good = i + utf8_valid_prefix(bytes.substr(i));
    out.append(bytes.data() + i, good - i);
    i = good;
    if (i >= n) break;
    const std::ptrdiff_t step = detail::utf8_step(s, i, n);  // < 0 here
    out.append(detail::utf8_replacement, 3);
    i += static_cast<std::size_t>(-step);
  }
}

/// `bytes` as valid UTF-8, every ill-formed part replaced by U+FFFD (maximal subparts).
inline std::string utf8_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  append_utf8_lossy(bytes, out);
  return out;
}

/// How many trailing bytes of `bytes` form an incomplete but so far well-formed sequence
/// (0 to 3): the bytes a streaming decoder must hold back until more arrive.
inline std::size_t utf8_incomplete_suffix(std::string_view bytes) noexcept {
  const auto* s = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::size_t n = bytes.size();
  // Walk back over at most 3 continuation bytes to the last byte that could lead.
  for (std::size_t back = 1; back <= 4 && back <= n; ++back) {
    const unsigned char b = s[n - back];
    if ((b & 0xC0) == 0x80) continue;  // continuation byte: keep walking
    const detail::utf8_lead lead = detail::utf8_lead_of(b);
    if (lead.length <= back) return 0;  // ASCII, invalid lead, or a complete sequence
    // A lead byte never continues an earlier sequence, so the decoder starts here.
    const std::ptrdiff_t step = detail::utf8_step(s, n - back, n);
    return -step == static_cast<std::ptrdiff_t>(back) ? back : 0;
  }
  return 0;
}

/// Lossy UTF-8 over a byte stream split anywhere. See the file comment.
class utf8_lossy_stream {
 public:
  /// The text of every character completed so far (ill-formed parts as U+FFFD); an incomplete
  /// trailing sequence is kept for the next call.
  std::string push(std::string_view bytes) {
    std::string out;
    push(bytes, out);
    return out;
  }
  /// The same, appending to `out`.
  void push(std::string_view bytes, std::string& out) {
    if (pending_.empty()) {
      const std::size_t hold = utf8_incomplete_suffix(bytes);
      append_utf8_lossy(bytes.substr(0, bytes.size() - hold), out);
      pending_.assign(bytes.substr(bytes.size() - hold));
      return;
    }
    pending_.append(bytes);
    const std::size_t hold = utf8_incomplete_suffix(pending_);
    append_utf8_lossy(std::string_view(pending_).substr(0, pending_.size() - hold), out);
    pending_.erase(0, pending_.size() - hold);
  }
  /// Whatever is held back, lossily (one U+FFFD for an incomplete sequence); the stream is then
  /// empty and can be reused.
  std::string finish() {
    std::string out = utf8_lossy(pending_);
    pending_.clear();
    return out;
  }
  /// Bytes held back (0 to 3).
  [[nodiscard]] std::size_t pending() const noexcept { return pending_.size(); }

 private:
  std::string pending_;
};

}  // namespace rlhf
