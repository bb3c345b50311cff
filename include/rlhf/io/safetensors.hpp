// rlhf/io/safetensors.hpp — the safetensors format: a validating reader, a writer, and model
// load/save by parameter name.
//
// Layout: 8 bytes N (little-endian u64), N bytes of JSON header, then the byte buffer.
// The header maps tensor names to {"dtype", "shape", "data_offsets": [begin, end)} (offsets
// into the byte buffer) plus an optional "__metadata__" map of string to string.
//
// The reader validates exactly what the reference implementation (huggingface/safetensors,
// SafeTensors::read_metadata and Metadata::validate) validates, in its order, and names each
// rule as the reference names its error; every failure is an rlhf::format_error
//   "rlhf::safetensors: <file>: <Rule>: <what>"
// with Rule one of
//   HeaderTooSmall               fewer than 8 bytes
//   HeaderTooLarge               N > max_header_bytes (100 000 000, the reference's cap)
//   InvalidHeaderLength          8 + N exceeds the file
//   InvalidHeader                the header is not valid UTF-8
//   InvalidHeaderDeserialization not JSON, or not the schema: the top level is an object;
//                                "__metadata__" is an object of strings (or null); each
//                                tensor is an object with dtype (a known name), shape (array
//                                of unsigned integers) and data_offsets (two unsigned
//                                integers); unknown tensor fields are ignored; a duplicate key
//                                anywhere is rejected (the format forbids them; a JSON parser
//                                would keep the last); nesting deeper than 127 (serde_json's
//                                recursion limit) is rejected
//   InvalidOffset                sorted by data_offsets, the first tensor does not start at 0,
//                                or a tensor does not start where the previous one ended, or
//                                ends before it begins (no gaps, no overlaps)
//   ValidationOverflow           the element count or its bit count overflows 64 bits
//   MisalignedSlice              the bit count is not a whole number of bytes (F4, F6)
//   TensorInvalidInfo            end − begin differs from the size the dtype and shape give
//   MetadataIncompleteBuffer     the tensors do not cover the byte buffer exactly
// JSON whitespace may pad the header on both sides (the reference writes trailing spaces; it
// accepts leading whitespace since 2026-04). Tensor values are not checked (NaN is allowed);
// load options can require finite values.
//
// The writer follows the reference writer byte for byte: tensors sorted by the reference's
// Dtype order descending (U64, I64, F64, C64, F32, ... — larger elements first), then name;
// contiguous offsets from 0; the header padded with spaces so that the buffer starts at a
// multiple of 8. Files are written atomically (rlhf/io/atomic_file.hpp).
//
//   rlhf::save_safetensors("model.safetensors", model, {{"format", "pt"}});
//   auto report = rlhf::load_safetensors("model.safetensors", model);           // strict
//   rlhf::load_safetensors("sft.safetensors", rm, {.may_be_missing = [](std::string_view n) {
//                            return n.starts_with("score."); }});                 // a new head
//
// Model functions take any Trainable model (parameters(): parameter_ref{name, value, grad});
// when the model also has `std::vector<std::int64_t> shape(std::string_view name) const`,
// shapes are saved and checked, otherwise each parameter is a vector. Needs nlohmann-json.
#pragma once

#include <rlhf/concepts.hpp>
#include <rlhf/config.hpp>
#include <rlhf/detail/checks.hpp>
#include <rlhf/error.hpp>
#include <rlhf/io/atomic_file.hpp>

#if !__has_include(<nlohmann/json.hpp>)
#error "<rlhf/io/safetensors.hpp> needs nlohmann-json (Debian: nlohmann-json3-dev)"
#endif
#include <nlohmann/json.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rlhf {

static_assert(std::endian::native == std::endian::little,
              "rlhf/io/safetensors.hpp: safetensors data is little-endian; big-endian hosts are not supported");

/// Every dtype the reference accepts, in the order of its Dtype enum (the writer sorts by it);
/// files spell them in upper case ("F32", "BF16", ...).
enum class safetensors_dtype : std::uint8_t {
  boolean, f4, f6_e2m3, f6_e3m2, u8, i8, f8_e5m2, f8_e4m3, f8_e8m0, f8_e4m3fnuz, f8_e5m2fnuz,
  i16, u16, f16, bf16, i32, u32, f32, c64, f64, i64, u64,
};

namespace detail {
struct safetensors_dtype_info {
  safetensors_dtype dtype;
  std::string_view name;
  std::uint32_t bits;
};
inline constexpr safetensors_dtype_info safetensors_dtypes[] = {
    {safetensors_dtype::boolean, "BOOL", 8},
    {safetensors_dtype::f4, "F4", 4},
    {safetensors_dtype::f6_e2m3, "F6_E2M3", 6},
    {safetensors_dtype::f6_e3m2, "F6_E3M2", 6},
    {safetensors_dtype::u8, "U8", 8},
    {safetensors_dtype::i8, "I8", 8},
    {safetensors_dtype::f8_e5m2, "F8_E5M2", 8},
    {safetensors_dtype::f8_e4m3, "F8_E4M3", 8},
    {safetensors_dtype::f8_e8m0, "F8_E8M0", 8},
    {safetensors_dtype::f8_e4m3fnuz, "F8_E4M3FNUZ", 8},
    {safetensors_dtype::f8_e5m2fnuz, "F8_E5M2FNUZ", 8},
    {safetensors_dtype::i16, "I16", 16},
    {safetensors_dtype::u16, "U16", 16},
    {safetensors_dtype::f16, "F16", 16},
    {safetensors_dtype::bf16, "BF16", 16},
    {safetensors_dtype::i32, "I32", 32},
    {safetensors_dtype::u32, "U32", 32},
    {safetensors_dtype::f32, "F32", 32},
    {safetensors_dtype::c64, "C64", 64},
    {safetensors_dtype::f64, "F64", 64},
    {safetensors_dtype::i64, "I64", 64},
    {safetensors_dtype::u64, "U64", 64},
};
}  // namespace detail

/// "F32", "BF16", ... as written in files.
[[nodiscard]] constexpr std::string_view to_string(safetensors_dtype d) noexcept {
  return detail::safetensors_dtypes[static_cast<std::size_t>(d)].name;
}
/// Bits per element (4 for F4, 6 for F6_*, 8 for BOOL).
[[nodiscard]] constexpr std::uint32_t bit_size(safetensors_dtype d) noexcept {
  return detail::safetensors_dtypes[static_cast<std::size_t>(d)].bits;
}
/// The dtype spelled `name` (case-sensitive, as the reference), or nullopt.
[[nodiscard]] constexpr std::optional<safetensors_dtype> parse_safetensors_dtype(std::string_view name) noexcept {
  for (const auto& info : detail::safetensors_dtypes)
    if (info.name == name) return info.dtype;
  return std::nullopt;
}

/// One tensor of a parsed file: a view of its bytes inside the file's buffer.
struct safetensors_tensor {
  std::string name;
  safetensors_dtype dtype = safetensors_dtype::f32;
  std::vector<std::uint64_t> shape;  ///< empty for a rank-0 scalar
  std::uint64_t begin = 0;           ///< data_offsets, relative to the byte buffer
  std::uint64_t end = 0;
  std::span<const std::byte> bytes;  ///< end − begin bytes, little-endian, row-major; any alignment
  /// Product of the shape (1 for a scalar).
  [[nodiscard]] std::uint64_t elements() const noexcept {
    std::uint64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
};

struct safetensors_read_options {
  std::uint64_t max_header_bytes = 100'000'000;  ///< the reference's MAX_HEADER_SIZE
};

using safetensors_metadata = std::map<std::string, std::string, std::less<>>;

namespace detail {

[[noreturn]] inline void safetensors_fail(std::string_view source, std::string_view rule, const std::string& what) {
  std::string message = "rlhf::safetensors: ";
  message += source;
  message += ": ";
  message += rule;
  message += ": ";
  message += what;
  RLHF_THROW(format_error(message));
}

/// True when `s` is well-formed UTF-8 (no overlongs, no surrogates, ≤ U+10FFFF).
inline bool valid_utf8(std::string_view s) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    std::uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0Fu;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07u;
    } else {
      return false;
    }
    if (n - i < len) return false;
    for (std::size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0u) != 0x80u) return false;
      cp = (cp << 6) | (p[i + k] & 0x3Fu);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
      return false;
    i += len;
  }
  return true;
}

/// nlohmann SAX handler building the header, with the schema and duplicate-key checks.
class safetensors_header_sax {
 public:
  using json = nlohmann::json;
  using number_integer_t = json::number_integer_t;
  using number_unsigned_t = json::number_unsigned_t;
  using number_float_t = json::number_float_t;
  using string_t = json::string_t;
  using binary_t = json::binary_t;

  struct tensor_entry {
    std::string name;
    std::optional<safetensors_dtype> dtype;
    std::optional<std::vector<std::uint64_t>> shape;
    std::optional<std::vector<std::uint64_t>> offsets;
  };

  std::vector<tensor_entry> tensors;
  safetensors_metadata metadata;
  std::string error;  ///< the first schema error ("" when none)

  bool null() { return scalar(kind::null, {}); }
  bool boolean(bool) { return scalar(kind::other, {}); }
  bool number_integer(number_integer_t) { return scalar(kind::negative, {}); }
  bool number_unsigned(number_unsigned_t v) { return scalar(kind::unsigned_number, {}, v); }
  bool number_float(number_float_t, const string_t&) { return scalar(kind::float_number, {}); }
  bool string(string_t& s) { return scalar(kind::string, s); }
  bool binary(binary_t&) { return fail("binary values are not JSON"); }

  bool start_object(std::size_t) {
    if (stack_.size() >= max_depth) return fail("nesting deeper than 127");
    if (stack_.empty()) {
      if (seen_top_) return fail("more than one top-level value");
      seen_top_ = true;
      stack_.push_back(frame::top);
      return true;
    }
    switch (stack_.back()) {
      case frame::top:
        if (next_ == slot::metadata) {
          stack_.push_back(frame::metadata);
        } else {
          stack_.push_back(frame::tensor);
        }
        return true;
      case frame::tensor:
        if (next_ != slot::unknown) return fail("tensor '" + tensors.back().name + "': " + field_name() + " is an object");
        stack_.push_back(frame::skip_object);
        return true;
      case frame::skip_object:
      case frame::skip_array:
        stack_.push_back(frame::skip_object);
        return true;
      case frame::metadata:
        return fail("__metadata__ value of '" + metadata_key_ + "' is not a string");
      case frame::shape:
      case frame::offsets:
        return fail("tensor '" + tensors.back().name + "': " + array_name() + " holds an object");
    }
    return fail("unexpected object");
  }
  bool key(string_t& k) {
    switch (stack_.back()) {
      case frame::top:
        if (!top_keys_.insert(k).second) return fail("duplicate key '" + k + "'");
        if (k == "__metadata__") {
          next_ = slot::metadata;
        } else {
          next_ = slot::entry;
          tensors.push_back({k, {}, {}, {}});
        }
        return true;
      case frame::metadata:
        if (metadata.count(k) != 0) return fail("duplicate __metadata__ key '" + k + "'");
        metadata_key_ = k;
        return true;
      case frame::tensor: {
        auto& t = tensors.back();
        if (k == "dtype") {
          if (t.dtype || seen_dtype_) return fail("tensor '" + t.name + "': duplicate field 'dtype'");
          seen_dtype_ = true;
          next_ = slot::dtype;
        } else if (k == "shape") {
          if (t.shape) return fail("tensor '" + t.name + "': duplicate field 'shape'");
          next_ = slot::shape;
        } else if (k == "data_offsets") {
          if (t.offsets) return fail("tensor '" + t.name + "': duplicate field 'data_offsets'");
          next_ = slot::offsets;
        } else {
          next_ = slot::unknown;
        }
        return true;
      }
      default:
        return true;  // keys inside ignored values
    }
  }
  bool end_object() {
    const frame f = stack_.back();
    stack_.pop_back();
    if (f == frame::tensor) {
      const auto& t = tensors.back();
      if (!t.dtype) return fail("tensor '" + t.name + "' has no dtype");
      if (!t.shape) return fail("tensor '" + t.name + "' has no shape");
      if (!t.offsets) return fail("tensor '" + t.name + "' has no data_offsets");
      seen_dtype_ = false;
    }
    return true;
  }
  bool start_array(std::size_t) {
    if (stack_.size() >= max_depth) return fail("nesting deeper than 127");
    if (stack_.empty()) return fail("the header is not a JSON object");
    switch (stack_.back()) {
      case frame::top:
        return fail(next_ == slot::metadata ? std::string("__metadata__ is not an object")
                                            : "tensor '" + tensors.back().name + "' is not an object");
      case frame::metadata:
        return fail("__metadata__ value of '" + metadata_key_ + "' is not a string");
      case frame::tensor:
        if (next_ == slot::shape) {
          tensors.back().shape.emplace();
          stack_.push_back(frame::shape);
        } else if (next_ == slot::offsets) {
          tensors.back().offsets.emplace();
          stack_.push_back(frame::offsets);
        } else if (next_ == slot::unknown) {
          stack_.push_back(frame::skip_array);
        } else {
          return fail("tensor '" + tensors.back().name + "': dtype is not a string");
        }
        return true;
      case frame::skip_object:
      case frame::skip_array:
        stack_.push_back(frame::skip_array);
        return true;
      case frame::shape:
      case frame::offsets:
        return fail("tensor '" + tensors.back().name + "': " + array_name() + " holds an array");
    }
    return fail("unexpected array");
  }
  bool end_array() {
    const frame f = stack_.back();
    stack_.pop_back();
    if (f == frame::offsets && tensors.back().offsets->size() != 2)
      return fail("tensor '" + tensors.back().name + "': data_offsets has " +
                  std::to_string(tensors.back().offsets->size()) + " values, not 2");
    return true;
  }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& ex) {
    if (error.empty()) error = "not JSON at byte " + std::to_string(position) + " (" + ex.what() + ")";
    return false;
  }

 private:
  static constexpr std::size_t max_depth = 127;
  enum class frame : std::uint8_t { top, metadata, tensor, shape, offsets, skip_object, skip_array };
  enum class slot : std::uint8_t { entry, metadata, dtype, shape, offsets, unknown };
  enum class kind : std::uint8_t { null, string, unsigned_number, negative, float_number, other };

  bool fail(std::string what) {
    if (error.empty()) error = std::move(what);
    return false;
  }
  [[nodiscard]] std::string field_name() const {
    switch (next_) {
      case slot::dtype: return "dtype";
      case slot::shape: return "shape";
      case slot::offsets: return "data_offsets";
      default: return "a field";
    }
  }
  [[nodiscard]] std::string array_name() const {
    return stack_.back() == frame::shape ? "shape" : "data_offsets";
  }
  static std::string kind_name(kind k) {
    switch (k) {
      case kind::null: return "null";
      case kind::string: return "a string";
      case kind::negative: return "a negative number";
      case kind::float_number: return "not an unsigned integer";
      case kind::unsigned_number: return "a number";
      default: return "a boolean";
    }
  }
  bool scalar(kind k, std::string_view text, std::uint64_t number = 0) {
    if (stack_.empty()) return fail("the header is not a JSON object");
    switch (stack_.back()) {
      case frame::top:
        if (next_ == slot::metadata && k == kind::null) return true;  // "__metadata__": null is none
        return fail(next_ == slot::metadata ? "__metadata__ is " + kind_name(k)
                                            : "tensor '" + tensors.back().name + "' is " + kind_name(k));
      case frame::metadata:
        if (k != kind::string) return fail("__metadata__ value of '" + metadata_key_ + "' is " + kind_name(k));
        metadata.emplace(metadata_key_, std::string(text));
        return true;
      case frame::tensor: {
        auto& t = tensors.back();
        if (next_ == slot::unknown) return true;
        if (next_ == slot::dtype) {
          if (k != kind::string) return fail("tensor '" + t.name + "': dtype is " + kind_name(k));
          t.dtype = parse_safetensors_dtype(text);
          if (!t.dtype) return fail("tensor '" + t.name + "': unknown dtype '" + std::string(text) + "'");
          return true;
        }
        return fail("tensor '" + t.name + "': " + field_name() + " is " + kind_name(k) + ", not an array");
      }
      case frame::shape:
      case frame::offsets: {
        auto& t = tensors.back();
        if (k != kind::unsigned_number)
          return fail("tensor '" + t.name + "': " + array_name() + " holds " + kind_name(k));
        (stack_.back() == frame::shape ? *t.shape : *t.offsets).push_back(number);
        return true;
      }
      default:
        return true;  // inside an ignored value
    }
  }

  std::vector<frame> stack_;
  slot next_ = slot::entry;
  bool seen_top_ = false;
  bool seen_dtype_ = false;
  std::set<std::string, std::less<>> top_keys_;
  std::string metadata_key_;
};

inline bool checked_mul(std::uint64_t a, std::uint64_t b, std::uint64_t& out) noexcept {
  return !__builtin_mul_overflow(a, b, &out);
}

}  // namespace detail

/// A parsed, validated safetensors file. Move-only: the tensors view its buffer.
class safetensors_file {
 public:
  safetensors_file(safetensors_file&&) noexcept = default;
  safetensors_file& operator=(safetensors_file&&) noexcept = default;
  safetensors_file(const safetensors_file&) = delete;
  safetensors_file& operator=(const safetensors_file&) = delete;

  /// Validate and parse a whole file held in memory. The tensors' bytes view `bytes`, which
  /// must outlive the result. `source` names the input in error messages.
  /// Throws rlhf::format_error "rlhf::safetensors: <source>: <Rule>: ..." (see the top).
  [[nodiscard]] static safetensors_file parse(std::span<const std::byte> bytes, std::string_view source = "<memory>",
                                              const safetensors_read_options& options = {}) {
    safetensors_file f;
    f.source_ = std::string(source);
    f.parse_into(bytes, options);
    return f;
  }

  /// Read and parse the file at `path` (the result owns the bytes). Throws rlhf::error when
  /// the file cannot be read, rlhf::format_error when it is not valid.
  [[nodiscard]] static safetensors_file read(const std::string& path, const safetensors_read_options& options = {}) {
    safetensors_file f;
    f.source_ = path;
    f.owned_ = read_file(path);
    f.parse_into(std::span<const std::byte>(f.owned_), options);
    return f;
  }

  /// The tensors in data order (sorted by data_offsets).
  [[nodiscard]] const std::vector<safetensors_tensor>& tensors() const noexcept { return tensors_; }
  /// The tensor called `name`, or nullptr.
  [[nodiscard]] const safetensors_tensor* find(std::string_view name) const {
    const auto it = index_.find(name);
    return it == index_.end() ? nullptr : &tensors_[it->second];
  }
  /// The "__metadata__" map (empty when absent).
  [[nodiscard]] const safetensors_metadata& metadata() const noexcept { return metadata_; }
  /// The file name (or the source given to parse()).
  [[nodiscard]] const std::string& source() const noexcept { return source_; }
  /// N, the header's length in bytes.
  [[nodiscard]] std::uint64_t header_bytes() const noexcept { return header_bytes_; }

 private:
  safetensors_file() = default;

  void parse_into(std::span<const std::byte> bytes, const safetensors_read_options& options) {
    const std::string_view src = source_;
    // 1. at least 8 bytes
    if (bytes.size() < 8)
      detail::safetensors_fail(src, "HeaderTooSmall", "the file has " + std::to_string(bytes.size()) +
                                                          " bytes, fewer than the 8 of the header length");
    // 2. N ≤ the cap
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<std::uint64_t>(bytes[static_cast<std::size_t>(i)]);
    if (n > options.max_header_bytes)
      detail::safetensors_fail(src, "HeaderTooLarge", "the header length " + std::to_string(n) +
                                                          " exceeds the limit of " +
                                                          std::to_string(options.max_header_bytes) + " bytes");
    // 3. 8 + N inside the file
    const std::uint64_t available = bytes.size() - 8;
    if (n > available)
      detail::safetensors_fail(src, "InvalidHeaderLength", "the header length " + std::to_string(n) + " exceeds the " +
                                                               std::to_string(available) +
                                                               " bytes after the length field");
    header_bytes_ = n;
    const std::string_view header(reinterpret_cast<const char*>(bytes.data() + 8), static_cast<std::size_t>(n));
    // 4. UTF-8
    if (!detail::valid_utf8(header)) detail::safetensors_fail(src, "InvalidHeader", "the header is not valid UTF-8");
    // 5. JSON and the schema
    if (header.size() >= 3 && header.substr(0, 3) == "\xEF\xBB\xBF")
      detail::safetensors_fail(src, "InvalidHeaderDeserialization", "the header starts with a byte-order mark");
    detail::safetensors_header_sax sax;
    const bool ok = nlohmann::json::sax_parse(header.begin(), header.end(), &sax, nlohmann::json::input_format_t::json,
                                              /*strict=*/true, /*ignore_comments=*/false);
    if (!ok || !sax.error.empty())
      detail::safetensors_fail(src, "InvalidHeaderDeserialization",
                               sax.error.empty() ? std::string("the header is not valid JSON") : sax.error);
    metadata_ = std::move(sax.metadata);
    // 6–9. offsets, sizes
    // Sort an index by (begin, end) rather than the entries themselves: the keys are read once,
    // plain integers, and equal keys keep their header order.
    auto& entries = sax.tensors;
    struct data_span {
      std::uint64_t begin, end;
      std::size_t entry;
    };
    std::vector<data_span> order;
    order.reserve(entries.size());
    for (std::size_t i = 0; i < entries.size(); ++i) {
      const std::vector<std::uint64_t>& offsets = *entries[i].offsets;
      order.push_back({offsets[0], offsets[1], i});
    }
    std::stable_sort(order.begin(), order.end(), [](const data_span& a, const data_span& b) {
      return std::pair(a.begin, a.end) < std::pair(b.begin, b.end);
    });
    const std::uint64_t data_bytes = available - n;
    const std::byte* data = bytes.data() + 8 + n;
    std::uint64_t start = 0;
    tensors_.reserve(entries.size());
    for (const data_span& span : order) {
      auto& e = entries[span.entry];
      const std::uint64_t b = span.begin, end = span.end;
      if (b != start || end < b)
        detail::safetensors_fail(src, "InvalidOffset", "tensor '" + e.name + "' has data_offsets [" + std::to_string(b) +
                                                           ", " + std::to_string(end) + "] but must start at " +
                                                           std::to_string(start) + " and not end before it begins");
      start = end;
      std::uint64_t elements = 1;
      for (const auto d : *e.shape)
        if (!detail::checked_mul(elements, d, elements))
          detail::safetensors_fail(src, "ValidationOverflow", "tensor '" + e.name + "': the element count overflows");
      std::uint64_t bits = 0;
      if (!detail::checked_mul(elements, bit_size(*e.dtype), bits))
        detail::safetensors_fail(src, "ValidationOverflow", "tensor '" + e.name + "': the bit count overflows");
      if (bits % 8 != 0)
        detail::safetensors_fail(src, "MisalignedSlice", "tensor '" + e.name + "' of " + std::to_string(elements) + " " +
                                                             std::string(to_string(*e.dtype)) +
                                                             " elements is not a whole number of bytes");
      if (end - b != bits / 8)
        detail::safetensors_fail(src, "TensorInvalidInfo", "tensor '" + e.name + "' (" +
                                                               std::string(to_string(*e.dtype)) + ", " +
                                                               std::to_string(elements) + " elements) needs " +
                                                               std::to_string(bits / 8) + " bytes but data_offsets span " +
                                                               std::to_string(end - b));
      safetensors_tensor t;
      t.name = std::move(e.name);
      t.dtype = *e.dtype;
      t.shape = std::move(*e.shape);
      t.begin = b;
      t.end = end;
      tensors_.push_back(std::move(t));
    }
    // 10. full coverage
    if (start != data_bytes)
      detail::safetensors_fail(src, "MetadataIncompleteBuffer", "the tensors cover " + std::to_string(start) +
                                                                    " bytes but the byte buffer has " +
                                                                    std::to_string(data_bytes));
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
      auto& t = tensors_[i];
      t.bytes = std::span<const std::byte>(data + t.begin, static_cast<std::size_t>(t.end - t.begin));
      index_.emplace(t.name, i);
    }
  }

  std::string source_;
  std::vector<std::byte> owned_;
  std::vector<safetensors_tensor> tensors_;
  std::map<std::string, std::size_t, std::less<>> index_;
  safetensors_metadata metadata_;
  std::uint64_t header_bytes_ = 0;
};

/// One tensor to write: its bytes (little-endian, row-major) are read, not copied, by the writer.
struct safetensors_entry {
  std::string name;
  safetensors_dtype dtype = safetensors_dtype::f32;
  std::vector<std::uint64_t> shape;
  std::span<const std::byte> bytes;
};

namespace detail {
inline void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"') {
      out += "\\\"";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (c < 0x20) {
      static constexpr char hex[] = "0123456789abcdef";
      out += "\\u00";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += ch;
    }
  }
  out += '"';
}
}  // namespace detail

/// The bytes of a safetensors file holding `tensors` and `metadata`, byte for byte what the
/// reference writer (safetensors 0.8 `serialize`) produces. Throws rlhf::invalid_argument for a duplicate or reserved name, text
/// that is not UTF-8, or bytes that do not match the dtype and shape.
[[nodiscard]] inline std::vector<std::byte> serialize_safetensors(std::span<const safetensors_entry> tensors,
                                                                  const safetensors_metadata& metadata = {}) {
  constexpr const char* function = "rlhf::serialize_safetensors()";
  std::vector<const safetensors_entry*> order;
  std::set<std::string_view> names;
  for (const auto& t : tensors) {
    detail::require(t.name != "__metadata__", function, "the tensor name '__metadata__' is reserved");
    detail::require(detail::valid_utf8(t.name), function, "a tensor name is not valid UTF-8");
    detail::require(names.insert(t.name).second, function, "duplicate tensor name '" + t.name + "'");
    std::uint64_t elements = 1, bits = 0;
    bool ok = true;
    for (auto d : t.shape) ok = ok && detail::checked_mul(elements, d, elements);
    ok = ok && detail::checked_mul(elements, bit_size(t.dtype), bits) && bits % 8 == 0;
    detail::require(ok && bits / 8 == t.bytes.size(), function,
                    "tensor '" + t.name + "' (" + std::string(to_string(t.dtype)) + ", " + std::to_string(elements) +
                        " elements) has " + std::to_string(t.bytes.size()) + " bytes");
    order.push_back(&t);
  }
  for (const auto& [k, v] : metadata)
    detail::require(detail::valid_utf8(k) && detail::valid_utf8(v), function,
                    "a __metadata__ key or value is not valid UTF-8");
  std::stable_sort(order.begin(), order.end(), [](const safetensors_entry* a, const safetensors_entry* b) {
    if (a->dtype != b->dtype) return a->dtype > b->dtype;  // the reference: Dtype order, descending
    return a->name < b->name;
  });
  std::string header = "{";
  bool first = true;
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    for (const auto& [k, v] : metadata) {
      if (!first) header += ',';
      first = false;
      detail::append_json_string(header, k);
      header += ':';
      detail::append_json_string(header, v);
    }
    header += '}';
    first = false;
  }
  std::uint64_t offset = 0;
  for (const auto* t : order) {
    if (!first) header += ',';
    first = false;
    detail::append_json_string(header, t->name);
    header += ":{\"dtype\":\"";
    header += to_string(t->dtype);
    header += "\",\"shape\":[";
    for (std::size_t i = 0; i < t->shape.size(); ++i) {
      if (i) header += ',';
      header += std::to_string(t->shape[i]);
    }
    header += "],\"data_offsets\":[";
    header += std::to_string(offset);
    header += ',';
    offset += t->bytes.size();
    header += std::to_string(offset);
    header += "]}";
  }
  header += '}';
  header.append((8 - header.size() % 8) % 8, ' ');
  std::vector<std::byte> out(8 + header.size() + offset);
  std::uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<std::byte>((n >> (8 * i)) & 0xFFu);
  std::memcpy(out.data() + 8, header.data(), header.size());
  std::size_t at = 8 + header.size();
  for (const auto* t : order) {
    if (!t->bytes.empty()) std::memcpy(out.data() + at, t->bytes.data(), t->bytes.size());
    at += t->bytes.size();
  }
  return out;
}

/// Write a safetensors file atomically (see serialize_safetensors and write_file_atomic).
inline void write_safetensors(const std::string& path, std::span<const safetensors_entry> tensors,
                              const safetensors_metadata& metadata = {}) {
  const auto bytes = serialize_safetensors(tensors, metadata);
  write_file_atomic(path, bytes);
}

// ---------------------------------------------------------------------------------------------
// Models.

/// How load_safetensors matches a file to a model.
struct safetensors_load_options {
  /// Parameters the file lacks keep their values instead of being an error.
  bool allow_missing = false;
  /// Or only these may be missing (e.g. a new reward head: n.starts_with("score.")).
  std::function<bool(std::string_view)> may_be_missing{};
  /// Tensors of the file that are no parameter are ignored instead of being an error.
  bool allow_unexpected = false;
  /// Or only these are ignored.
  std::function<bool(std::string_view)> may_be_unexpected{};
  /// Accept exact widening conversions: F16 and BF16 into float or double, F32 into double.
  /// Off: the dtype must be the parameter type's (F32 for float, F64 for double).
  bool widen = false;
  /// Reject NaN and ±Inf values.
  bool require_finite = false;
  /// Tensor names in the file are `prefix + parameter name`; other names are not considered.
  std::string prefix{};
  safetensors_read_options read{};
};

/// What load_safetensors did.
struct safetensors_load_report {
  std::vector<std::string> loaded;      ///< parameter names, in the model's order
  std::vector<std::string> missing;     ///< parameters the file lacks (allowed by the options)
  std::vector<std::string> unexpected;  ///< file tensors that are no parameter (allowed)
  safetensors_metadata metadata;        ///< the file's __metadata__
};

namespace detail {

/// IEEE binary16 → float, exact.
inline float half_to_float(std::uint16_t h) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1Fu;
  std::uint32_t mantissa = h & 0x3FFu;
  std::uint32_t bits;
  if (exponent == 0x1F) {
    bits = sign | 0x7F800000u | (mantissa << 13);
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {  // subnormal: normalise
    std::uint32_t e = 113;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --e;
    }
    bits = sign | (e << 23) | ((mantissa & 0x3FFu) << 13);
  }
  return std::bit_cast<float>(bits);
}
/// bfloat16 → float, exact.
inline float bfloat16_to_float(std::uint16_t b) noexcept {
  return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
}

/// Element i of a tensor of dtype d as T (d is F16, BF16, F32 or F64).
template <class T>
T read_element(const std::byte* p, safetensors_dtype d, std::size_t i) noexcept {
  switch (d) {
    case safetensors_dtype::f16: {
      std::uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      return static_cast<T>(half_to_float(h));
    }
    case safetensors_dtype::bf16: {
      std::uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      return static_cast<T>(bfloat16_to_float(h));
    }
    case safetensors_dtype::f32: {
      float f;
      std::memcpy(&f, p + 4 * i, 4);
      return static_cast<T>(f);
    }
    default: {
      double f;
      std::memcpy(&f, p + 8 * i, 8);
      return static_cast<T>(f);
    }
  }
}

template <class T>
constexpr safetensors_dtype dtype_of() noexcept {
  if constexpr (std::is_same_v<T, float>) {
    return safetensors_dtype::f32;
  } else {
    return safetensors_dtype::f64;
  }
}

/// The parameter's shape: model.shape(name) when the model has it, else {size}.
template <class M>
std::vector<std::uint64_t> parameter_shape(const M& model, std::string_view name, std::ptrdiff_t size) {
  std::vector<std::uint64_t> shape;
  if constexpr (requires { model.shape(name); }) {
    for (const auto d : model.shape(name)) shape.push_back(static_cast<std::uint64_t>(d));
  } else {
    shape.push_back(static_cast<std::uint64_t>(size));
  }
  return shape;
}

inline std::string shape_text(const std::vector<std::uint64_t>& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  return out + "]";
}

/// Copy `tensors` (looked up by name) into the model's parameters; all checks first.
template <class M>
safetensors_load_report load_parameters(std::span<const safetensors_tensor> tensors, const safetensors_metadata& meta,
                                        std::string_view source, M& model, const safetensors_load_options& options) {
  using T = typename M::scalar_type;
  constexpr const char* function = "rlhf::load_safetensors()";
  auto fail = [&](const std::string& what) {
    RLHF_THROW(format_error(std::string(function) + ": " + std::string(source) + ": " + what));
  };
  std::map<std::string_view, const safetensors_tensor*, std::less<>> by_name;
  for (const auto& t : tensors)
    if (std::string_view(t.name).starts_with(options.prefix))
      by_name.emplace(std::string_view(t.name).substr(options.prefix.size()), &t);
  safetensors_load_report report;
  report.metadata = meta;
  std::vector<std::pair<parameter_ref<T>, const safetensors_tensor*>> plan;
  std::set<std::string_view, std::less<>> used;
  for (auto&& ref : model.parameters()) {
    const parameter_ref<T> p = ref;
    const auto it = by_name.find(p.name);
    if (it == by_name.end()) {
      if (!(options.allow_missing || (options.may_be_missing && options.may_be_missing(p.name))))
        fail("missing tensor '" + options.prefix + std::string(p.name) + "'");
      report.missing.emplace_back(p.name);
      continue;
    }
    const safetensors_tensor& t = *it->second;
    used.insert(it->first);
    const auto expected = parameter_shape(model, p.name, p.value.extent(0));
    if (t.shape != expected || t.elements() != static_cast<std::uint64_t>(p.value.extent(0)))
      fail("tensor '" + t.name + "' has shape " + shape_text(t.shape) + " but the parameter has " +
           shape_text(expected) + " (" + std::to_string(p.value.extent(0)) + " values)");
    const safetensors_dtype want = dtype_of<T>();
    const bool widening = options.widen && (t.dtype == safetensors_dtype::f16 || t.dtype == safetensors_dtype::bf16 ||
                                            (t.dtype == safetensors_dtype::f32 && want == safetensors_dtype::f64));
    if (t.dtype != want && !widening)
      fail("tensor '" + t.name + "' is " + std::string(to_string(t.dtype)) + " but the parameter is " +
           std::string(to_string(want)) +
           (t.dtype == safetensors_dtype::f16 || t.dtype == safetensors_dtype::bf16 ? " (set widen to convert)" : ""));
    if (options.require_finite)
      for (std::size_t i = 0; i < static_cast<std::size_t>(p.value.extent(0)); ++i)
        if (!std::isfinite(read_element<double>(t.bytes.data(), t.dtype, i)))
          fail("tensor '" + t.name + "' holds a non-finite value at element " + std::to_string(i));
    plan.emplace_back(p, &t);
    report.loaded.emplace_back(p.name);
  }
  for (const auto& t : tensors) {
    std::string_view n = t.name;
    if (n.starts_with(options.prefix) && used.count(n.substr(options.prefix.size())) != 0) continue;
    if (!n.starts_with(options.prefix)) continue;
    if (!(options.allow_unexpected || (options.may_be_unexpected && options.may_be_unexpected(n))))
      fail("unexpected tensor '" + t.name + "' (the model has no such parameter)");
    report.unexpected.push_back(t.name);
  }
  for (auto& [p, t] : plan) {
    const std::ptrdiff_t n = p.value.extent(0);
    if (t->dtype == dtype_of<T>() && p.value.stride(0) == 1) {
      if (n > 0) std::memcpy(p.value.data_handle(), t->bytes.data(), static_cast<std::size_t>(n) * sizeof(T));
    } else {
      for (std::ptrdiff_t i = 0; i < n; ++i) p.value(i) = read_element<T>(t->bytes.data(), t->dtype, static_cast<std::size_t>(i));
    }
  }
  return report;
}

/// Each parameter's values as little-endian bytes, with its name and shape.
template <class M>
std::vector<std::pair<safetensors_entry, std::vector<std::byte>>> parameter_entries(M& model, std::string_view prefix,
                                                                                    const char* function) {
  using T = typename M::scalar_type;
  std::vector<std::pair<safetensors_entry, std::vector<std::byte>>> out;
  for (auto&& ref : model.parameters()) {
    const parameter_ref<T> p = ref;
    const std::ptrdiff_t n = p.value.extent(0);
    auto shape = parameter_shape(model, p.name, n);
    std::uint64_t elements = 1;
    for (auto d : shape) elements *= d;
    detail::require(elements == static_cast<std::uint64_t>(n), function,
                    "parameter '" + std::string(p.name) + "' has " + std::to_string(n) + " values but shape " +
                        shape_text(shape));
    std::vector<std::byte> bytes(static_cast<std::size_t>(n) * sizeof(T));
    for (std::ptrdiff_t i = 0; i < n; ++i) {
      const T v = p.value(i);
      std::memcpy(bytes.data() + static_cast<std::size_t>(i) * sizeof(T), &v, sizeof(T));
    }
    out.push_back({safetensors_entry{std::string(prefix) + std::string(p.name), dtype_of<T>(), std::move(shape), {}},
                   std::move(bytes)});
  }
  for (auto& [e, b] : out) e.bytes = b;
  return out;
}

}  // namespace detail

/// Load a model's parameters by name from a parsed file (see safetensors_load_options). All
/// checks run before any parameter changes. Throws rlhf::format_error naming the file and the
/// tensor for a missing or unexpected tensor, a shape or a dtype that does not match.
template <class M>
  requires Trainable<M>
safetensors_load_report load_safetensors(const safetensors_file& file, M& model, const safetensors_load_options& options = {}) {
  return detail::load_parameters(std::span<const safetensors_tensor>(file.tensors()), file.metadata(), file.source(),
                                 model, options);
}

/// Read the file at `path` and load it into the model.
template <class M>
  requires Trainable<M>
safetensors_load_report load_safetensors(const std::string& path, M& model, const safetensors_load_options& options = {}) {
  const auto file = safetensors_file::read(path, options.read);
  return load_safetensors(file, model, options);
}

/// Save every parameter under its name (F32 for float models, F64 for double), with its
/// shape when the model reports shapes, atomically.
template <class M>
  requires Trainable<M>
void save_safetensors(const std::string& path, M& model, const safetensors_metadata& metadata = {}) {
  auto owned = detail::parameter_entries(model, "", "rlhf::save_safetensors()");
  std::vector<safetensors_entry> entries;
  for (auto& [e, b] : owned) entries.push_back(e);
  write_safetensors(path, entries, metadata);
}

}  // namespace rlhf
