// rlhf/tokenizer/bpe.hpp — the byte-level BPE merge: one pre-tokenised piece → token ids.
//
// A piece starts as one part per byte (each byte's own token). Then, repeatedly, the adjacent
// pair of parts with the lowest merge priority is merged (leftmost among equal priorities)
// until no adjacent pair can merge. Two priority rules exist:
//
//   bpe_rule::ranks   — tiktoken: a pair can merge when the concatenation of its bytes is a
//                       token; its priority is that token's id (rank). Before merging, a piece
//                       that is a whole token is emitted as that one token.
//   bpe_rule::merges  — Hugging Face: a pair (left id, right id) can merge when it is in the
//                       merges list; its priority is its index there; the result is the token
//                       whose bytes are the concatenation. With `ignore_merges` (Llama-3 style),
//                       a piece that is a whole token is emitted as that token first.
//
// Cost: pieces up to 128 bytes use an in-place linear merge over small arrays (what tiktoken
// does below 100 bytes); longer pieces use a priority queue of (priority, position) with lazy
// invalidation over a linked list of parts (a bucket per priority, see detail::bucket_queue):
// near-linear, so a megabyte of one repeated character or of base64 takes tens of milliseconds,
// not the minutes a quadratic merge needs.
// The first round of pair priorities (two single bytes) comes from a 256×256 table, and the
// tokens of pieces of up to 24 bytes that needed merging are kept in a per-thread cache.
// Scratch arrays are per thread and reused: after warm-up, encoding allocates nothing.
//
// bpe_model is immutable after construction and safe to share between threads.
#pragma once

#include <rlhf/concepts.hpp>
#include <rlhf/config.hpp>
#include <rlhf/error.hpp>
#include <rlhf/tokenizer/vocabulary.hpp>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <functional>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rlhf {

/// One Hugging Face merge: the pair (left, right) of token ids; its priority is its index.
struct bpe_merge {
  token_id left;
  token_id right;
};

/// Which merge-priority rule a bpe_model follows (see the file comment).
enum class bpe_rule { ranks, merges };

namespace detail {

inline constexpr std::int32_t no_merge = 0x7FFFFFFF;

/// The priority queue of the long-piece merge: entries (priority, position) come out by lowest
/// priority, then lowest position, exactly like a heap ordered by (priority, position), but
/// with one bucket of positions per distinct priority and a small heap over the priorities that
/// have a bucket. A long piece has few distinct pair priorities and many positions (a megabyte
/// of "a" has ~10 priorities and a million positions), so this is linear in practice where a
/// heap of a million entries is memory-bound. A bucket is sorted when it is next taken from and
/// something was added out of order; merging at priority p never creates a pair of priority p
/// (the merged token is longer than either part), so the bucket being drained is stable.
class bucket_queue {
 public:
  /// Prepares for priorities in [0, bound).
  void reset(std::size_t bound) {
    if (bucket_of_.size() < bound) bucket_of_.resize(bound, -1);
  }
  void push(std::int32_t prio, std::uint32_t pos) {
    std::int32_t& b = bucket_of_[static_cast<std::size_t>(prio)];
    if (b < 0) {
      b = static_cast<std::int32_t>(used_);
      if (used_ == buckets_.size()) buckets_.emplace_back();
      buckets_[used_].prio = prio;
      ++used_;
    }
    bucket& k = buckets_[static_cast<std::size_t>(b)];
    if (k.pos.size() > k.cursor && pos < k.pos.back()) k.sorted = false;
    k.pos.push_back(pos);
    if (!k.queued) {
      k.queued = true;
      prios_.push_back(prio);
      std::push_heap(prios_.begin(), prios_.end(), std::greater<>());
    }
  }
  /// The next (priority, position); false when empty.
  bool pop(std::int32_t& prio, std::uint32_t& pos) {
    while (!prios_.empty()) {
      const std::int32_t p = prios_.front();
      bucket& k = buckets_[static_cast<std::size_t>(bucket_of_[static_cast<std::size_t>(p)])];
      if (k.cursor == k.pos.size()) {
        std::pop_heap(prios_.begin(), prios_.end(), std::greater<>());
        prios_.pop_back();
        k.queued = false;
        k.pos.clear();
        k.cursor = 0;
        continue;
      }
      if (!k.sorted) {
        std::sort(k.pos.begin() + static_cast<std::ptrdiff_t>(k.cursor), k.pos.end());
        k.sorted = true;
      }
      prio = p;
      pos = k.pos[k.cursor++];
      return true;
    }
    return false;
  }
  /// Empties the queue (buckets keep their memory for the next piece).
  void clear() {
    for (std::size_t i = 0; i < used_; ++i) {
      bucket& k = buckets_[i];
      bucket_of_[static_cast<std::size_t>(k.prio)] = -1;
      k.pos.clear();
      k.cursor = 0;
      k.sorted = true;
      k.queued = false;
    }
    used_ = 0;
    prios_.clear();
  }

 private:
  struct bucket {
    std::vector<std::uint32_t> pos;
    std::size_t cursor = 0;
    std::int32_t prio = 0;
    bool sorted = true;
    bool queued = false;
  };
  std::vector<std::int32_t> bucket_of_;  // priority → bucket, −1 = none
  std::vector<bucket> buckets_;
  std::size_t used_ = 0;
  std::vector<std::int32_t> prios_;  // min-heap of the priorities with a queued bucket
};

/// Per-thread scratch arrays of the merge, grown once and reused.
struct bpe_scratch {
  std::vector<std::uint32_t> start;  // byte offset where part i starts (+ one past the end)
  std::vector<token_id> id;          // token of part i
  std::vector<std::int32_t> prio;    // priority of merging part i with part i+1 (max = none)
  std::vector<token_id> result;      // token that merge would produce
  std::vector<std::uint32_t> next, prev;
  bucket_queue queue;
};
inline bpe_scratch& bpe_thread_scratch() {
  thread_local bpe_scratch s;
  return s;
}

/// A per-thread, direct-mapped cache of the tokens of short pieces that needed merging (a
/// frequent identifier in code, a word split in two): a hit costs one hash and one compare
/// instead of the merge. Entries are tagged with the model's unique owner number (never reused,
/// so a destroyed model's entries can never be mistaken for another's); models never share
/// entries, and no thread sees another thread's cache.
struct piece_cache {
  static constexpr std::size_t max_bytes = 24, max_tokens = 8, slots = 4096;
  struct entry {
    std::uint64_t owner = 0;
    std::uint8_t length = 0, count = 0;
    char bytes[max_bytes];
    token_id ids[max_tokens];
  };
  static std::uint64_t new_owner() noexcept {
    static std::atomic<std::uint64_t> next{1};
    return next.fetch_add(1, std::memory_order_relaxed);
  }
  static entry& slot(std::uint64_t owner, std::string_view piece) {
    thread_local std::unique_ptr<entry[]> table;
    if (!table) table = std::make_unique<entry[]>(slots);
    const std::uint64_t h = hash_bytes(piece) ^ (owner * 0x9E3779B97F4A7C15ull);
    return table[static_cast<std::size_t>(h >> 52) & (slots - 1)];
  }
};

/// A flat open-addressing hash from a (left, right) id pair to (priority, result).
class pair_table {
 public:
  struct value {
    std::int32_t prio = no_merge;
    token_id result = -1;
  };
  void reserve(std::size_t n) {
    std::size_t cap = 16;
    while (cap < 2 * n + 2) cap *= 2;
    slots_.assign(cap, {});
    mask_ = cap - 1;
    size_ = 0;
  }
  /// Sets (or overwrites) the value of a pair.
  void set(token_id l, token_id r, value v) {
    if (2 * (size_ + 1) > slots_.size()) grow();
    const std::uint64_t key = pack(l, r);
    std::size_t i = index(key);
    while (slots_[i].key != empty && slots_[i].key != key) i = (i + 1) & mask_;
    if (slots_[i].key == empty) ++size_;
    slots_[i] = {key, v};
  }
  [[nodiscard]] value get(token_id l, token_id r) const noexcept {
    if (slots_.empty()) return {};
    const std::uint64_t key = pack(l, r);
    for (std::size_t i = index(key);; i = (i + 1) & mask_) {
      if (slots_[i].key == key) return slots_[i].v;
      if (slots_[i].key == empty) return {};
    }
  }

 private:
  static constexpr std::uint64_t empty = ~std::uint64_t{0};
  struct slot {
    std::uint64_t key = empty;
    value v{};
  };
  static std::uint64_t pack(token_id l, token_id r) noexcept {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(l)) << 32) | static_cast<std::uint32_t>(r);
  }
  [[nodiscard]] std::size_t index(std::uint64_t key) const noexcept {
    return static_cast<std::size_t>((key * 0x9E3779B97F4A7C15ull) >> 20) & mask_;
  }
  void grow() {
    std::vector<slot> old = std::move(slots_);
    reserve(old.empty() ? 8 : old.size());
    for (const slot& s : old)
      if (s.key != empty) set(static_cast<token_id>(s.key >> 32), static_cast<token_id>(s.key & 0xFFFFFFFFu), s.v);
  }
  std::vector<slot> slots_;
  std::size_t mask_ = 0;
  std::size_t size_ = 0;
};

}  // namespace detail

/// The merge core of a byte-level BPE. See the file comment.
class bpe_model {
 public:
  bpe_model() = default;

  /// tiktoken's rule over `tokens` (ranks = ids). Every single byte must be a token.
  static bpe_model from_ranks(token_table tokens) {
    bpe_model m;
    m.uid_ = detail::piece_cache::new_owner();
    m.tokens_ = std::move(tokens);
    m.rule_ = bpe_rule::ranks;
    m.whole_piece_first_ = true;
    m.check_single_bytes("rlhf::bpe_model::from_ranks()");
    m.prio_bound_ = m.tokens_.id_bound();
    m.build_byte_pairs();
    return m;
  }

  /// Hugging Face's rule: merges[i] has priority i; each merge's concatenation must be a token.
  /// A pair listed twice keeps its last position (as Hugging Face's merge map does).
  /// Every single byte must be a token.
  static bpe_model from_merges(token_table tokens, std::span<const bpe_merge> merges, bool ignore_merges) {
    constexpr const char* function = "rlhf::bpe_model::from_merges()";
    bpe_model m;
    m.uid_ = detail::piece_cache::new_owner();
    m.tokens_ = std::move(tokens);
    m.rule_ = bpe_rule::merges;
    m.whole_piece_first_ = ignore_merges;
    m.check_single_bytes(function);
    m.pairs_.reserve(merges.size());
    m.prio_bound_ = merges.size();
    std::string joined;
    for (std::size_t i = 0; i < merges.size(); ++i) {
      const bpe_merge mg = merges[i];
      if (!m.tokens_.contains_id(mg.left) || !m.tokens_.contains_id(mg.right))
        RLHF_THROW(invalid_argument(std::string(function) + ": merge " + std::to_string(i) + " (" +
                                    std::to_string(mg.left) + ", " + std::to_string(mg.right) +
                                    ") names an id that is not a token"));
      joined.assign(m.tokens_.bytes_of(mg.left));
      joined.append(m.tokens_.bytes_of(mg.right));
      const token_id result = m.tokens_.find(joined);
      if (result < 0)
        RLHF_THROW(invalid_argument(std::string(function) + ": merge " + std::to_string(i) + " (" +
                                    std::to_string(mg.left) + ", " + std::to_string(mg.right) +
                                    "): the concatenation of the two tokens is not a token"));
      if (i >= static_cast<std::size_t>(detail::no_merge))
        RLHF_THROW(invalid_argument(std::string(function) + ": too many merges"));
      m.pairs_.set(mg.left, mg.right, {static_cast<std::int32_t>(i), result});
    }
    m.build_byte_pairs();
    return m;
  }

  [[nodiscard]] const token_table& tokens() const noexcept { return tokens_; }
  [[nodiscard]] bpe_rule rule() const noexcept { return rule_; }
  /// True when a piece that is a whole token is emitted as that token before any merge.
  [[nodiscard]] bool whole_piece_first() const noexcept { return whole_piece_first_; }

  /// Calls emit(id) for each token of `piece`, in order. An empty piece emits nothing.
  template <class Emit>
  void encode_piece(std::string_view piece, Emit&& emit) const {
    const std::size_t n = piece.size();
    if (n == 0) return;
    const auto* s = reinterpret_cast<const unsigned char*>(piece.data());
    if (n == 1) {
      emit(byte_token_[s[0]]);
      return;
    }
    if (whole_piece_first_) {
      const token_id whole = tokens_.find(piece);
      if (whole >= 0) {
        emit(whole);
        return;
      }
    }
    if (n == 2) {
      const pair_value v = byte_pairs_[(std::size_t{s[0]} << 8) | s[1]];
      if (v.prio != detail::no_merge) {
        emit(v.result);
      } else {
        emit(byte_token_[s[0]]);
        emit(byte_token_[s[1]]);
      }
      return;
    }
    if (n <= detail::piece_cache::max_bytes) {
      // Frequent multi-token pieces come from the per-thread cache.
      detail::piece_cache::entry& e = detail::piece_cache::slot(uid_, piece);
      if (e.owner == uid_ && e.length == n && std::memcmp(e.bytes, piece.data(), n) == 0) {
        for (std::size_t k = 0; k < e.count; ++k) emit(e.ids[k]);
        return;
      }
      token_id ids[detail::piece_cache::max_bytes];
      std::size_t count = 0;
      const auto collect = [&](token_id id) { ids[count++] = id; };
      merge_small(piece, collect);
      for (std::size_t k = 0; k < count; ++k) emit(ids[k]);
      if (count <= detail::piece_cache::max_tokens) {
        e.owner = uid_;
        e.length = static_cast<std::uint8_t>(n);
        e.count = static_cast<std::uint8_t>(count);
        std::memcpy(e.bytes, piece.data(), n);
        std::memcpy(e.ids, ids, count * sizeof(token_id));
      }
    } else if (n <= small_piece) {
      merge_small(piece, emit);
    } else {
      merge_large(piece, emit);
    }
  }

  /// The tokens of one piece appended to `out`.
  void encode_piece(std::string_view piece, std::vector<token_id>& out) const {
    encode_piece(piece, [&](token_id id) { out.push_back(id); });
  }

  /// Pieces up to this many bytes take the linear merge; longer ones the priority queue.
  static constexpr std::size_t small_piece = 128;

  /// The same result with the priority-queue merge whatever the length (for tests of the two paths).
  template <class Emit>
  void encode_piece_with_heap(std::string_view piece, Emit&& emit) const {
    if (piece.empty()) return;
    merge_large(piece, emit);
  }
  /// The same result with the linear merge whatever the length (for tests; quadratic).
  template <class Emit>
  void encode_piece_linear(std::string_view piece, Emit&& emit) const {
    if (piece.empty()) return;
    merge_small(piece, emit);
  }

 private:
  using pair_value = detail::pair_table::value;

  void check_single_bytes(const char* function) {
    for (int b = 0; b < 256; ++b) {
      const char c = static_cast<char>(b);
      const token_id id = tokens_.find(std::string_view(&c, 1));
      if (id < 0) {
        static constexpr char hex[] = "0123456789ABCDEF";
        RLHF_THROW(invalid_argument(std::string(function) + ": byte 0x" + hex[b >> 4] + hex[b & 15] +
                                    " is not a token (every single byte must be one)"));
      }
      byte_token_[static_cast<std::size_t>(b)] = id;
    }
  }

  void build_byte_pairs() {
    byte_pairs_.assign(65536, {});
    for (std::size_t a = 0; a < 256; ++a)
      for (std::size_t b = 0; b < 256; ++b) byte_pairs_[(a << 8) | b] = pair_of(byte_token_[a], byte_token_[b], {});
  }

  /// The merge of two adjacent parts: their ids and (for the ranks rule) their joined bytes.
  [[nodiscard]] pair_value pair_of(token_id left, token_id right, std::string_view joined) const noexcept {
    if (rule_ == bpe_rule::merges) return pairs_.get(left, right);
    if (joined.empty()) {  // the byte table: joined bytes of two single-byte tokens
      char both[2] = {tokens_.bytes_of(left)[0], tokens_.bytes_of(right)[0]};
      const token_id t = tokens_.find(std::string_view(both, 2));
      return t < 0 ? pair_value{} : pair_value{t, t};
    }
    const token_id t = tokens_.find(joined);
    return t < 0 ? pair_value{} : pair_value{t, t};
  }

  template <class Emit>
  void merge_small(std::string_view piece, Emit& emit) const {
    const auto* s = reinterpret_cast<const unsigned char*>(piece.data());
    const std::size_t n = piece.size();
    detail::bpe_scratch& w = detail::bpe_thread_scratch();
    if (w.start.size() < n + 1) {
      w.start.resize(n + 1);
      w.id.resize(n + 1);
      w.prio.resize(n + 1);
      w.result.resize(n + 1);
    }
    std::uint32_t* start = w.start.data();
    token_id* id = w.id.data();
    std::int32_t* prio = w.prio.data();
    token_id* result = w.result.data();
    for (std::size_t i = 0; i < n; ++i) {
      start[i] = static_cast<std::uint32_t>(i);
      id[i] = byte_token_[s[i]];
    }
    start[n] = static_cast<std::uint32_t>(n);
    for (std::size_t i = 0; i + 1 < n; ++i) {
      const pair_value v = byte_pairs_[(std::size_t{s[i]} << 8) | s[i + 1]];
      prio[i] = v.prio;
      result[i] = v.result;
    }
    prio[n - 1] = detail::no_merge;
    std::size_t m = n;  // parts
    while (m > 1) {
      std::int32_t best = detail::no_merge;
      std::size_t at = 0;
      for (std::size_t i = 0; i + 1 < m; ++i)
        if (prio[i] < best) {
          best = prio[i];
          at = i;
        }
      if (best == detail::no_merge) break;
      id[at] = result[at];
      // Remove part at+1.
      for (std::size_t i = at + 1; i < m; ++i) {
        start[i] = start[i + 1];
        id[i] = id[i + 1];
        prio[i] = prio[i + 1];
        result[i] = result[i + 1];
      }
      --m;
      start[m] = static_cast<std::uint32_t>(n);
      if (at + 1 < m) {
        const pair_value v = pair_of(id[at], id[at + 1], piece.substr(start[at], start[at + 2] - start[at]));
        prio[at] = v.prio;
        result[at] = v.result;
      } else {
        prio[at] = detail::no_merge;
      }
      if (at > 0) {
        const pair_value v = pair_of(id[at - 1], id[at], piece.substr(start[at - 1], start[at + 1] - start[at - 1]));
        prio[at - 1] = v.prio;
        result[at - 1] = v.result;
      }
    }
    for (std::size_t i = 0; i < m; ++i) emit(id[i]);
  }

  template <class Emit>
  void merge_large(std::string_view piece, Emit& emit) const {
    const auto* s = reinterpret_cast<const unsigned char*>(piece.data());
    const std::size_t n = piece.size();
    constexpr std::uint32_t none = 0xFFFFFFFFu;
    detail::bpe_scratch& w = detail::bpe_thread_scratch();
    if (w.id.size() < n + 1) {
      w.id.resize(n + 1);
      w.prio.resize(n + 1);
      w.result.resize(n + 1);
    }
    if (w.next.size() < n + 1) {
      w.next.resize(n + 1);
      w.prev.resize(n + 1);
    }
    // Parts are named by the byte offset where they start; next[i] is where the next one starts
    // (n at the end), prev[i] where the previous one starts (none at the beginning).
    token_id* id = w.id.data();
    std::int32_t* prio = w.prio.data();
    token_id* result = w.result.data();
    std::uint32_t* next = w.next.data();
    std::uint32_t* prev = w.prev.data();
    detail::bucket_queue& queue = w.queue;
    queue.clear();
    queue.reset(prio_bound_);
    for (std::size_t i = 0; i < n; ++i) {
      id[i] = byte_token_[s[i]];
      next[i] = static_cast<std::uint32_t>(i + 1);
      prev[i] = i == 0 ? none : static_cast<std::uint32_t>(i - 1);
    }
    for (std::size_t i = 0; i + 1 < n; ++i) {
      const pair_value v = byte_pairs_[(std::size_t{s[i]} << 8) | s[i + 1]];
      prio[i] = v.prio;
      result[i] = v.result;
      if (v.prio != detail::no_merge) queue.push(v.prio, static_cast<std::uint32_t>(i));
    }
    prio[n - 1] = detail::no_merge;
    const auto update = [&](std::uint32_t a) {  // recompute the pair starting at part a
      const std::uint32_t b = next[a];
      if (b >= n) {
        prio[a] = detail::no_merge;
        return;
      }
      const pair_value v = pair_of(id[a], id[b], piece.substr(a, next[b] - a));
      prio[a] = v.prio;
      result[a] = v.result;
      if (v.prio != detail::no_merge) queue.push(v.prio, a);
    };
    std::int32_t p = 0;
    std::uint32_t i = 0;
    while (queue.pop(p, i)) {
      if (prio[i] != p) continue;  // stale: part i was merged away or its pair changed
      // Merge part i with the next one.
      const std::uint32_t j = next[i];
      id[i] = result[i];
      next[i] = next[j];
      if (next[j] < n) prev[next[j]] = i;
      prio[j] = detail::no_merge;  // part j no longer exists
      update(i);
      if (prev[i] != none) update(prev[i]);
    }
    for (std::uint32_t k = 0; k < n; k = next[k]) emit(id[k]);
  }

  token_table tokens_;
  std::uint64_t uid_ = 0;  // names this model's entries in the per-thread piece cache
  bpe_rule rule_ = bpe_rule::ranks;
  bool whole_piece_first_ = true;
  token_id byte_token_[256] = {};
  std::vector<pair_value> byte_pairs_;  // 256×256: first-round merges of two single bytes
  std::size_t prio_bound_ = 0;          // priorities are in [0, prio_bound_)
  detail::pair_table pairs_;            // merges rule only
};

}  // namespace rlhf
