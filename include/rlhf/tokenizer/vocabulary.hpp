// rlhf/tokenizer/vocabulary.hpp — the token table of a byte-level BPE: token bytes ↔ id.
//
// A token is an arbitrary byte string (not necessarily valid UTF-8) with an id. The table keeps
// every token's bytes in one arena, an id → bytes index, and a flat open-addressing hash from
// bytes to id (linear probing, a 32-bit tag per slot so that most misses never touch the
// arena). This is the lookup on the hot path of every encoder: one hash of a short byte string
// and, for tokens of at most 8 bytes (most of them), one cache line: each 16-byte slot holds the
// id, 24 hash bits, the length and the first 8 bytes of the token. No std::unordered_map<std::string, ...> is involved.
//
//   rlhf::token_table t;
//   t.insert("hello", 31373);        // false when the bytes or the id are already present
//   t.find("hello");                 // 31373; -1 when absent
//   t.bytes_of(31373);               // "hello"
//
// Ids must be in [0, token_table::max_id]. Holes are allowed (p50k_base has no id 50256).
// Special tokens (`<|endoftext|>`) are not mergeable tokens and live outside the table.
#pragma once

#include <rlhf/concepts.hpp>
#include <rlhf/config.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace rlhf {

/// A special token: text matched as a whole (only when the caller allows it) and its id.
struct special_token {
  std::string text;
  token_id id;
};

namespace detail {

inline std::uint64_t load_u64(const unsigned char* p) noexcept {
  std::uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
inline std::uint64_t load_u32(const unsigned char* p) noexcept {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
/// 64×64 → 128-bit multiply folded to 64 bits (the mixing step of wyhash-style hashes).
__extension__ typedef unsigned __int128 uint128_for_hash;
inline std::uint64_t fold_mul(std::uint64_t a, std::uint64_t b) noexcept {
  const uint128_for_hash r = static_cast<uint128_for_hash>(a) * b;
  return static_cast<std::uint64_t>(r) ^ static_cast<std::uint64_t>(r >> 64);
}

/// A fast 64-bit hash of a byte string. Reads only inside [p, p + n): short strings (the common
/// case: BPE pieces are mostly < 16 bytes) take two overlapping loads and one multiply.
inline std::uint64_t hash_bytes(const unsigned char* p, std::size_t n) noexcept {
  constexpr std::uint64_t k0 = 0xa0761d6478bd642full, k1 = 0xe7037ed1a0b428dbull,
                          k2 = 0x8ebc6af09c88c6e3ull;
  std::uint64_t a = 0, b = 0, seed = k2 ^ n;
  if (n <= 16) {
    if (n >= 8) {
      a = load_u64(p);
      b = load_u64(p + n - 8);
    } else if (n >= 4) {
      a = load_u32(p);
      b = load_u32(p + n - 4);
    } else if (n > 0) {
      a = (std::uint64_t{p[0]} << 16) | (std::uint64_t{p[n >> 1]} << 8) | p[n - 1];
    }
  } else {
    std::size_t i = n;
    const unsigned char* q = p;
    while (i > 16) {
      seed = fold_mul(load_u64(q) ^ k1, load_u64(q + 8) ^ seed);
      q += 16;
      i -= 16;
    }
    a = load_u64(p + n - 16);
    b = load_u64(p + n - 8);
  }
  return fold_mul(k1 ^ n, fold_mul(a ^ k1, b ^ seed ^ k0));
}
/// The first min(n, 8) bytes of p as an integer (zero-padded): compared in the hash slot, so
/// that finding a token of at most 8 bytes touches one cache line.
inline std::uint64_t head_bytes(const unsigned char* p, std::size_t n) noexcept {
  std::uint64_t v = 0;
  if (n >= 8) {
    std::memcpy(&v, p, 8);
  } else if (n >= 4) {
    const std::uint64_t lo = load_u32(p), hi = load_u32(p + n - 4);
    v = lo | (hi << (8 * (n - 4)));  // the overlap repeats the same bytes: OR is harmless
  } else {
    for (std::size_t i = 0; i < n; ++i) v |= std::uint64_t{p[i]} << (8 * i);
  }
  return v;
}

inline std::uint64_t hash_bytes(std::string_view s) noexcept {
  return hash_bytes(reinterpret_cast<const unsigned char*>(s.data()), s.size());
}

}  // namespace detail

/// Token bytes ↔ id. See the file comment.
class token_table {
 public:
  /// The largest id a table accepts (2^24 − 1: far above any real vocabulary, and small enough
  /// that a hostile file cannot make the id index allocate gigabytes).
  static constexpr token_id max_id = (1 << 24) - 1;

  token_table() { rehash(64); }
  /// A table with room for `expected_tokens` without rehashing.
  explicit token_table(std::size_t expected_tokens) {
    std::size_t cap = 64;
    while (cap < 2 * expected_tokens) cap *= 2;
    rehash(cap);
    entries_.reserve(expected_tokens);
  }

  enum class insert_result { inserted, duplicate_bytes, duplicate_id, bad_id };

  /// Adds a token. Nothing changes unless the result is `inserted`.
  insert_result insert(std::string_view bytes, token_id id) {
    if (id < 0 || id > max_id) return insert_result::bad_id;
    if (contains_id(id)) return insert_result::duplicate_id;
    if (find(bytes) >= 0) return insert_result::duplicate_bytes;
    const key k = key_of(bytes);
    std::size_t i = k.index & mask_;
    while (slots_[i].id >= 0) i = (i + 1) & mask_;
    if (static_cast<std::size_t>(id) >= by_id_.size()) by_id_.resize(static_cast<std::size_t>(id) + 1);
    by_id_[static_cast<std::size_t>(id)] = {static_cast<std::uint32_t>(arena_.size()),
                                            static_cast<std::uint32_t>(bytes.size())};
    arena_.append(bytes);
    slots_[i] = {k.head, k.tag, id};
    entries_.push_back(id);
    if (2 * entries_.size() > slots_.size()) rehash(2 * slots_.size());
    return insert_result::inserted;
  }

  /// The id of a token, or -1 when `bytes` is not a token.
  [[nodiscard]] token_id find(std::string_view bytes) const noexcept {
    const key k = key_of(bytes);
    for (std::size_t i = k.index & mask_;; i = (i + 1) & mask_) {
      const slot& s = slots_[i];
      if (s.id < 0) return -1;
      if (s.tag == k.tag && s.head == k.head) {
        if (bytes.size() <= 8) return s.id;  // length is in the tag, bytes in the head
        const span_ref r = by_id_[static_cast<std::size_t>(s.id)];
        if (r.length == bytes.size() &&
            std::memcmp(arena_.data() + r.offset + 8, bytes.data() + 8, bytes.size() - 8) == 0)
          return s.id;
      }
    }
  }

  [[nodiscard]] bool contains_id(token_id id) const noexcept {
    return id >= 0 && static_cast<std::size_t>(id) < by_id_.size() &&
           by_id_[static_cast<std::size_t>(id)].length != absent;
  }

  /// The bytes of token `id`; empty when `id` is not in the table.
  [[nodiscard]] std::string_view bytes_of(token_id id) const noexcept {
    if (!contains_id(id)) return {};
    const span_ref r = by_id_[static_cast<std::size_t>(id)];
    return {arena_.data() + r.offset, r.length};
  }

  /// Number of tokens.
  [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }
  /// One past the largest id (0 when empty).
  [[nodiscard]] std::size_t id_bound() const noexcept { return by_id_.size(); }
  /// Ids in insertion order.
  [[nodiscard]] const std::vector<token_id>& ids() const noexcept { return entries_; }

 private:
  static constexpr std::uint32_t absent = 0xFFFFFFFFu;
  struct slot {
    std::uint64_t head = 0;  // first 8 bytes of the token, zero-padded
    std::uint32_t tag = 0;   // 24 hash bits and the length (capped at 255)
    token_id id = -1;
  };
  struct key {
    std::uint64_t head;
    std::uint32_t tag;
    std::size_t index;
  };
  static key key_of(std::string_view bytes) noexcept {
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
    const std::uint64_t h = detail::hash_bytes(p, bytes.size());
    const auto len = static_cast<std::uint32_t>(bytes.size() < 255 ? bytes.size() : 255);
    return {detail::head_bytes(p, bytes.size()), (static_cast<std::uint32_t>(h >> 32) & 0xFFFFFF00u) | len,
            static_cast<std::size_t>(h)};
  }
  struct span_ref {
    std::uint32_t offset = 0;
    std::uint32_t length = absent;
  };

  void rehash(std::size_t capacity) {
    std::vector<slot> fresh(capacity);
    const std::size_t m = capacity - 1;
    for (const token_id id : entries_) {
      const key k = key_of(bytes_of(id));
      std::size_t i = k.index & m;
      while (fresh[i].id >= 0) i = (i + 1) & m;
      fresh[i] = {k.head, k.tag, id};
    }
    slots_ = std::move(fresh);
    mask_ = m;
  }

  std::string arena_;
  std::vector<span_ref> by_id_;
  std::vector<slot> slots_;
  std::vector<token_id> entries_;
  std::size_t mask_ = 0;
};

}  // namespace rlhf
