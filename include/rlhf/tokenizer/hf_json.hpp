// rlhf/tokenizer/hf_json.hpp — Hugging Face `tokenizer.json` files of the byte-level BPE kind:
// load them (rlhf::hf_tokenizer) and write them (rlhf::save_hf_json).
//
// Supported, byte-exact with Hugging Face `tokenizers` (GPT-2, RoBERTa, Llama 3, Qwen2, GPT-4o
// style conversions):
//   model          {"type": "BPE"}: vocab, merges in both forms (legacy "A B" strings and
//                  ["A", "B"] pairs), ignore_merges, dropout null, unk_token null,
//                  continuing_subword_prefix / end_of_word_suffix null or "", byte_fallback false
//   added_tokens   matched before pre-tokenisation (see <rlhf/tokenizer/added_tokens.hpp>);
//                  ids as Hugging Face assigns them: the model's id when the content is in
//                  model.vocab, else the next free id after the model's vocabulary
//   normalizer     null
//   pre_tokenizer  ByteLevel{add_prefix_space, trim_offsets, use_regex} (use_regex = the GPT-2
//                  pattern), or Sequence[Split{pattern: {"Regex": ...}, behavior: "Isolated",
//                  invert: false}, ByteLevel{use_regex: false}]
//   decoder        ByteLevel
//   post_processor null or ByteLevel (it only moves offsets; ids are unchanged)
//   truncation, padding   null
// Anything else is rejected with rlhf::format_error naming the file, the JSON path and what is
// supported, e.g.
//   tokenizer.json: $.pre_tokenizer.pretokenizers[1].type: "Metaspace" is not supported (supported: ByteLevel, Split)
// A malformed file never crashes the loader; it throws format_error.
//
//   auto tok = rlhf::hf_tokenizer::from_file("tokenizer.json");
//   std::vector<rlhf::token_id> ids = tok.encode("Hello world<|endoftext|>");
//   std::string text = tok.decode(ids);
//
// Differences from Hugging Face, all deliberate: decode() returns every id's bytes (special
// tokens included, i.e. Hugging Face's skip_special_tokens=False) and skips unknown ids;
// decode_lossy() replaces invalid UTF-8 the way Hugging Face's ByteLevel decoder does. Offsets,
// truncation, padding and post-processing templates are not modelled.
//
// This header needs nlohmann-json (3.10 or newer), which the `rlhf` CMake target links when
// it is installed.
#pragma once

#include <rlhf/concepts.hpp>
#include <rlhf/config.hpp>
#include <rlhf/error.hpp>
#include <rlhf/tokenizer/added_tokens.hpp>
#include <rlhf/tokenizer/bpe.hpp>
#include <rlhf/tokenizer/pretokenizer.hpp>
#include <rlhf/tokenizer/unicode.hpp>
#include <rlhf/tokenizer/utf8.hpp>
#include <rlhf/tokenizer/vocabulary.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

namespace rlhf {

namespace detail::hf {

/// GPT-2's bytes_to_unicode: the printable code point that stands for each byte in byte-level
/// vocabularies (`!`..`~`, U+00A1..U+00AC and U+00AE..U+00FF stand for themselves; the other
/// 68 bytes map to U+0100.. in increasing byte order, e.g. space → `Ġ` U+0120).
struct byte_alphabet {
  std::array<char32_t, 256> to_char{};
  std::array<std::int16_t, 324> to_byte{};  // code point (< 324) → byte, -1 when not in the alphabet
  constexpr byte_alphabet() {
    for (auto& b : to_byte) b = -1;
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      to_char[static_cast<std::size_t>(b)] = printable ? static_cast<char32_t>(b) : next++;
      to_byte[to_char[static_cast<std::size_t>(b)]] = static_cast<std::int16_t>(b);
    }
  }
};
inline constexpr byte_alphabet alphabet{};

/// The bytes a byte-level token string stands for; nullopt when a character is outside the
/// alphabet (or the string is not valid UTF-8).
inline std::optional<std::string> alphabet_to_bytes(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  const char* p = s.data();
  const char* end = p + s.size();
  while (p < end) {
    const auto d = unicode::decode_utf8(p, end);
    if (d.code_point >= alphabet.to_byte.size() || alphabet.to_byte[d.code_point] < 0) return std::nullopt;
    out.push_back(static_cast<char>(alphabet.to_byte[d.code_point]));
    p += d.length;
  }
  return out;
}

/// Bytes → byte-level token string (always valid UTF-8).
inline std::string bytes_to_alphabet(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  char buf[4];
  for (const char c : bytes) {
    const std::uint32_t n = unicode::encode_utf8(alphabet.to_char[static_cast<unsigned char>(c)], buf);
    out.append(buf, n);
  }
  return out;
}

using json = nlohmann::json;

/// A JSON value shown in a message: dumped, cut to 60 characters.
inline std::string shown(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}
inline std::string json_quoted(std::string_view s) { return shown(json(std::string(s))); }

inline const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::object: return "an object";
    case json::value_t::array: return "an array";
    case json::value_t::string: return "a string";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float: return "a number";
    default: return "an invalid value";
  }
}

/// Reads the JSON tree with paths in every error.
class reader {
 public:
  explicit reader(std::string_view source) : source_(source) {}

  [[noreturn]] void fail(const std::string& path, const std::string& what) const {
    RLHF_THROW(format_error(source_ + ": " + path + ": " + what));
  }

  void expect(const json& v, json::value_t t, const std::string& path, const char* what) const {
    const bool ok = t == json::value_t::number_integer ? (v.is_number_integer()) : v.type() == t;
    if (!ok) fail(path, std::string("expected ") + what + ", got " + type_name(v) + " " + shown(v));
  }
  void expect_object(const json& v, const std::string& path) const {
    expect(v, json::value_t::object, path, "an object");
  }

  /// Every key of `obj` must be one of `known`.
  void known_keys(const json& obj, const std::string& path, std::initializer_list<std::string_view> known) const {
    for (auto it = obj.begin(); it != obj.end(); ++it) {
      if (std::find(known.begin(), known.end(), it.key()) != known.end()) continue;
      std::string list;
      for (const auto k : known) {
        if (!list.empty()) list += ", ";
        list += k;
      }
      fail(path, "unknown key " + json_quoted(it.key()) + " (supported: " + list + ")");
    }
  }

  /// obj[key] when present (else nullptr).
  static const json* find(const json& obj, std::string_view key) {
    const auto it = obj.find(key);
    return it == obj.end() ? nullptr : &*it;
  }
  const json& require(const json& obj, const std::string& path, std::string_view key) const {
    const json* v = find(obj, key);
    if (v == nullptr) fail(path, "missing key " + json_quoted(key));
    return *v;
  }
  bool boolean(const json& obj, const std::string& path, std::string_view key, bool fallback) const {
    const json* v = find(obj, key);
    if (v == nullptr) return fallback;
    expect(*v, json::value_t::boolean, path + "." + std::string(key), "a boolean");
    return v->get<bool>();
  }
  /// The "type" member, which must be one of `supported`.
  std::string type_of(const json& obj, const std::string& path, std::initializer_list<std::string_view> supported) const {
    expect_object(obj, path);
    const json& t = require(obj, path, "type");
    expect(t, json::value_t::string, path + ".type", "a string");
    const auto& s = t.get_ref<const std::string&>();
    if (std::find(supported.begin(), supported.end(), s) == supported.end()) {
      std::string list;
      for (const auto k : supported) {
        if (!list.empty()) list += ", ";
        list += k;
      }
      fail(path + ".type", json_quoted(s) + " is not supported (supported: " + list + ")");
    }
    return s;
  }
  /// Must be null (or absent); `supported` says what is.
  void must_be_null(const json& obj, const std::string& path, std::string_view key, std::string_view supported) const {
    const json* v = find(obj, key);
    if (v != nullptr && !v->is_null())
      fail(path + "." + std::string(key), shown(*v) + " is not supported (supported: " + std::string(supported) + ")");
  }

  const std::string& source() const noexcept { return source_; }

 private:
  std::string source_;
};

/// nlohmann's SAX DOM builder, keeping the parse error instead of throwing it.
class dom_builder : public nlohmann::detail::json_sax_dom_parser<json> {
 public:
  explicit dom_builder(json& result) : json_sax_dom_parser(result, false) {}
  template <class Exception>
  bool parse_error(std::size_t, const std::string&, const Exception& ex) {
    if (error.empty()) {
      error = ex.what();  // "[json.exception.parse_error.101] parse error at line 1, column 5: ..."
      const auto bracket = error.find("] ");
      if (error.rfind("[json.exception", 0) == 0 && bracket != std::string::npos) error.erase(0, bracket + 2);
    }
    return false;
  }
  std::string error;
};

inline json parse(std::string_view contents, const reader& r) {
  json root;
  dom_builder sax(root);
  const bool ok = json::sax_parse(contents.begin(), contents.end(), &sax, nlohmann::detail::input_format_t::json, true);
  if (!ok || !sax.error.empty()) {
    const std::string why = sax.error.empty() ? std::string("not valid JSON") : sax.error;
    RLHF_THROW(format_error(r.source() + ": " + why));
  }
  return root;
}

}  // namespace detail::hf

/// How text is split before BPE, as read from the file.
struct hf_pre_tokenizer {
  /// The regex of the Split step, or pretokenizer_patterns::gpt2_original for ByteLevel(use_regex: true); empty when
  /// the file has ByteLevel(use_regex: false) alone (each text part is one piece).
  std::string pattern;
  bool add_prefix_space = false;  ///< ByteLevel: prepend a space to a part not starting with one
};

/// A byte-level BPE tokenizer read from a Hugging Face tokenizer.json. Immutable and safe to
/// share between threads once constructed. Models rlhf::Tokenizer.
class hf_tokenizer {
 public:
  /// Parses `contents` (the text of a tokenizer.json). `source_name` starts every error message.
  /// Throws rlhf::format_error on anything malformed or unsupported.
  [[nodiscard]] static hf_tokenizer from_json(std::string_view contents,
                                              std::string_view source_name = "tokenizer.json") {
    hf_tokenizer t;
    t.load(contents, source_name);
    return t;
  }

  /// Reads and parses a file; errors name the path.
  [[nodiscard]] static hf_tokenizer from_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) RLHF_THROW(format_error(path + ": cannot open the file"));
    std::ostringstream s;
    s << in.rdbuf();
    return from_json(s.str(), path);
  }

  /// Token ids of `text` as Hugging Face's `Tokenizer.encode(text, add_special_tokens=False)`:
  /// added tokens are always recognised. Invalid UTF-8 is encoded byte by byte (Hugging Face
  /// cannot receive it).
  [[nodiscard]] std::vector<token_id> encode(std::string_view text) const { return encode_impl(text, false); }

  /// Token ids of `text` with the special added tokens treated as ordinary text (Hugging Face's
  /// `encode_special_tokens = True`); non-special added tokens are still recognised.
  [[nodiscard]] std::vector<token_id> encode_ordinary(std::string_view text) const { return encode_impl(text, true); }

  /// The number of tokens encode(text) returns.
  [[nodiscard]] std::size_t count(std::string_view text) const { return encode(text).size(); }

  /// The exact bytes of the ids, concatenated (added tokens included; ids that are not tokens
  /// are skipped). Never throws. Not necessarily valid UTF-8: see decode_lossy().
  [[nodiscard]] std::string decode(std::span<const token_id> ids) const {
    std::string out;
    for (const token_id id : ids) out.append(bytes_of(id));
    return out;
  }
  /// decode() with invalid UTF-8 replaced by U+FFFD (maximal subparts), as Hugging Face's
  /// ByteLevel decoder (String::from_utf8_lossy) returns it.
  [[nodiscard]] std::string decode_lossy(std::span<const token_id> ids) const { return utf8_lossy(decode(ids)); }

  /// One more than the largest id (model vocabulary and added tokens).
  [[nodiscard]] std::size_t vocab_size() const noexcept { return vocab_size_; }
  /// The end-of-text id: the first special added token among <|endoftext|>, </s>,
  /// <|end_of_text|>, <|im_end|>, <|eot_id|>, else the first special added token; -1 if none.
  [[nodiscard]] token_id eos_id() const noexcept { return eos_id_; }
  /// The padding id: a special added token <pad>, <|pad|>, [PAD] or <|padding|> if present,
  /// else eos_id() (the GPT-2 convention).
  [[nodiscard]] token_id pad_id() const noexcept { return pad_id_; }

  /// The bytes of one id ("" for an id that is not a token).
  [[nodiscard]] std::string_view bytes_of(token_id id) const noexcept {
    if (id >= 0 && static_cast<std::size_t>(id) < extra_bytes_.size() && !extra_bytes_[static_cast<std::size_t>(id)].empty())
      return extra_bytes_[static_cast<std::size_t>(id)];
    return model_.tokens().bytes_of(id);
  }
  /// The id of an added token's content or of a model token's bytes; -1 when neither.
  [[nodiscard]] token_id token_of(std::string_view text) const noexcept {
    for (const auto& a : matcher_.tokens())
      if (a.content == text) return a.id;
    return model_.tokens().find(text);
  }

  [[nodiscard]] const std::vector<hf_added_token>& added_tokens() const noexcept { return matcher_.tokens(); }
  /// The special added tokens (content and id), in file order.
  [[nodiscard]] std::vector<special_token> special_tokens() const {
    std::vector<special_token> out;
    for (const auto& a : matcher_.tokens())
      if (a.special) out.push_back({a.content, a.id});
    return out;
  }
  [[nodiscard]] const bpe_model& model() const noexcept { return model_; }
  [[nodiscard]] const hf_pre_tokenizer& pre_tokenizer() const noexcept { return pre_; }
  [[nodiscard]] const std::vector<bpe_merge>& merges() const noexcept { return merges_; }
  [[nodiscard]] bool ignore_merges() const noexcept { return model_.whole_piece_first(); }

 private:
  std::vector<token_id> encode_impl(std::string_view text, bool skip_special) const {
    std::vector<token_id> out;
    out.reserve(text.size() / 3 + 1);
    if (matcher_.empty()) {
      encode_plain(text, out);
      return out;
    }
    matcher_.split(
        text,
        [&](const added_token_part& p) {
          if (p.id >= 0) {
            out.push_back(p.id);
          } else {
            encode_plain(text.substr(p.begin, p.end - p.begin), out);
          }
        },
        skip_special);
    return out;
  }

  void encode_plain(std::string_view text, std::vector<token_id>& out) const {
    if (text.empty()) return;
    std::string prefixed;
    if (pre_.add_prefix_space && pre_.pattern.empty() && text.front() != ' ') {
      prefixed.reserve(text.size() + 1);
      prefixed.push_back(' ');
      prefixed.append(text);
      text = prefixed;
    }
    if (!splitter_) {
      model_.encode_piece(text, out);
      return;
    }
    const bool prefix_pieces = pre_.add_prefix_space && !byte_level_regex_;
    const bool prefix_text = pre_.add_prefix_space && byte_level_regex_ && text.front() != ' ';
    if (prefix_text) {
      prefixed.reserve(text.size() + 1);
      prefixed.push_back(' ');
      prefixed.append(text);
      text = prefixed;
    }
    // The pretokenizer already emits text between matches as pieces (Split's Isolated).
    std::string piece_buf;
    splitter_->split(text, [&](std::string_view piece) {
      if (prefix_pieces && piece.front() != ' ') {
        piece_buf.assign(1, ' ');
        piece_buf.append(piece);
        model_.encode_piece(piece_buf, out);
      } else {
        model_.encode_piece(piece, out);
      }
    });
  }

  void load(std::string_view contents, std::string_view source_name) {
    using detail::hf::json;
    const detail::hf::reader r(source_name);
    const json root = detail::hf::parse(contents, r);
    r.expect_object(root, "$");
    r.known_keys(root, "$", {"version", "truncation", "padding", "added_tokens", "normalizer",
                             "pre_tokenizer", "post_processor", "decoder", "model"});
    if (const auto* v = detail::hf::reader::find(root, "version"); v != nullptr) {
      if (!v->is_string() || v->get_ref<const std::string&>() != "1.0")
        r.fail("$.version", detail::hf::shown(*v) + " is not supported (supported: \"1.0\")");
    }
    r.must_be_null(root, "$", "truncation", "null");
    r.must_be_null(root, "$", "padding", "null");
    r.must_be_null(root, "$", "normalizer", "null");
    read_pre_tokenizer(r, r.require(root, "$", "pre_tokenizer"));
    read_decoder(r, r.require(root, "$", "decoder"));
    if (const json* pp = detail::hf::reader::find(root, "post_processor"); pp != nullptr && !pp->is_null()) {
      r.type_of(*pp, "$.post_processor", {"ByteLevel"});
      r.known_keys(*pp, "$.post_processor", {"type", "add_prefix_space", "trim_offsets", "use_regex"});
      for (const char* k : {"add_prefix_space", "trim_offsets", "use_regex"}) (void)r.boolean(*pp, "$.post_processor", k, false);
    }
    std::unordered_map<std::string, token_id> vocab_ids;  // token string → id
    read_model(r, r.require(root, "$", "model"), vocab_ids);
    read_added_tokens(r, root, vocab_ids);
  }

  void read_pre_tokenizer(const detail::hf::reader& r, const detail::hf::json& pt) {
    const std::string path = "$.pre_tokenizer";
    if (pt.is_null()) r.fail(path, "null is not supported (supported: ByteLevel, Sequence[Split, ByteLevel])");
    const std::string type = r.type_of(pt, path, {"ByteLevel", "Sequence"});
    if (type == "ByteLevel") {
      read_byte_level(r, pt, path, /*in_sequence=*/false);
      return;
    }
    r.known_keys(pt, path, {"type", "pretokenizers"});
    const auto& list = r.require(pt, path, "pretokenizers");
    r.expect(list, detail::hf::json::value_t::array, path + ".pretokenizers", "an array");
    const std::string lp = path + ".pretokenizers";
    if (list.size() == 1) {  // Sequence[ByteLevel]
      const std::string p0 = lp + "[0]";
      r.type_of(list[0], p0, {"ByteLevel"});
      read_byte_level(r, list[0], p0, false);
      return;
    }
    if (list.size() != 2)
      r.fail(lp, "has " + std::to_string(list.size()) + " entries (supported: [Split, ByteLevel] or [ByteLevel])");
    const std::string p0 = lp + "[0]", p1 = lp + "[1]";
    r.type_of(list[0], p0, {"Split"});
    r.type_of(list[1], p1, {"ByteLevel"});
    r.known_keys(list[0], p0, {"type", "pattern", "behavior", "invert"});
    const auto& pattern = r.require(list[0], p0, "pattern");
    r.expect_object(pattern, p0 + ".pattern");
    if (pattern.size() != 1 || !pattern.contains("Regex")) {
      if (pattern.contains("String"))
        r.fail(p0 + ".pattern", "{\"String\": ...} is not supported (supported: {\"Regex\": ...})");
      r.fail(p0 + ".pattern", "expected {\"Regex\": \"...\"}, got " + detail::hf::shown(pattern));
    }
    const auto& re = pattern["Regex"];
    r.expect(re, detail::hf::json::value_t::string, p0 + ".pattern.Regex", "a string");
    const auto& behavior = r.require(list[0], p0, "behavior");
    r.expect(behavior, detail::hf::json::value_t::string, p0 + ".behavior", "a string");
    if (behavior.get_ref<const std::string&>() != "Isolated")
      r.fail(p0 + ".behavior", detail::hf::shown(behavior) + " is not supported (supported: Isolated)");
    if (r.boolean(list[0], p0, "invert", false)) r.fail(p0 + ".invert", "true is not supported (supported: false)");
    read_byte_level(r, list[1], p1, /*in_sequence=*/true);
    pre_.pattern = re.get<std::string>();
    byte_level_regex_ = false;
    splitter_.emplace(make_splitter(r, pre_.pattern, p0 + ".pattern.Regex"));
  }

  void read_byte_level(const detail::hf::reader& r, const detail::hf::json& bl, const std::string& path, bool in_sequence) {
    r.known_keys(bl, path, {"type", "add_prefix_space", "trim_offsets", "use_regex"});
    pre_.add_prefix_space = r.boolean(bl, path, "add_prefix_space", true);
    (void)r.boolean(bl, path, "trim_offsets", true);
    const bool use_regex = r.boolean(bl, path, "use_regex", true);
    if (in_sequence) {
      if (use_regex) r.fail(path + ".use_regex", "true after a Split is not supported (supported: false)");
      return;
    }
    byte_level_regex_ = use_regex;
    if (use_regex) {
      pre_.pattern = std::string(pretokenizer_patterns::gpt2_original);
      splitter_.emplace(pretokenizer::gpt2());
    }
  }

  // A pattern other than the built-in ones needs PCRE2; an invalid one makes from_regex throw
  // rlhf::invalid_argument (from PCRE2's compiler).
  static pretokenizer make_splitter(const detail::hf::reader& r, const std::string& pattern, const std::string& path) {
#if !defined(RLHF_HAS_PCRE2)
    using P = pretokenizer_patterns;
    const bool builtin = pattern == P::gpt2 || pattern == P::gpt2_original || pattern == P::gpt2_tiktoken_old ||
                         pattern == P::cl100k || pattern == P::cl100k_legacy || pattern == P::cl100k_tiktoken_old ||
                         pattern == P::o200k;
    if (!builtin)
      r.fail(path, "this pattern needs PCRE2, and the library was built without it (only the gpt2, cl100k and o200k patterns are built in)");
#else
    (void)r;
    (void)path;
#endif
    return pretokenizer::from_regex(pattern);
  }

  static void read_decoder(const detail::hf::reader& r, const detail::hf::json& d) {
    if (d.is_null()) r.fail("$.decoder", "null is not supported (supported: ByteLevel)");
    r.type_of(d, "$.decoder", {"ByteLevel"});
    r.known_keys(d, "$.decoder", {"type", "add_prefix_space", "trim_offsets", "use_regex"});
    for (const char* k : {"add_prefix_space", "trim_offsets", "use_regex"}) (void)r.boolean(d, "$.decoder", k, false);
  }

  void read_model(const detail::hf::reader& r, const detail::hf::json& m,
                  std::unordered_map<std::string, token_id>& vocab_ids) {
    using detail::hf::json;
    const std::string path = "$.model";
    r.expect_object(m, path);
    if (m.contains("type")) r.type_of(m, path, {"BPE"});
    r.known_keys(m, path, {"type", "dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix",
                           "fuse_unk", "byte_fallback", "ignore_merges", "vocab", "merges"});
    if (const json* d = detail::hf::reader::find(m, "dropout"); d != nullptr && !d->is_null()) {
      if (!d->is_number() || d->get<double>() != 0.0) r.fail(path + ".dropout", detail::hf::shown(*d) + " is not supported (supported: null)");
    }
    r.must_be_null(m, path, "unk_token", "null");
    for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      const json* v = detail::hf::reader::find(m, k);
      if (v != nullptr && !v->is_null() && !(v->is_string() && v->get_ref<const std::string&>().empty()))
        r.fail(path + "." + k, detail::hf::shown(*v) + " is not supported (supported: null, \"\")");
    }
    (void)r.boolean(m, path, "fuse_unk", false);
    if (r.boolean(m, path, "byte_fallback", false)) r.fail(path + ".byte_fallback", "true is not supported (supported: false)");
    const bool ignore_merges = r.boolean(m, path, "ignore_merges", false);

    const json& vocab = r.require(m, path, "vocab");
    r.expect_object(vocab, path + ".vocab");
    token_table table(vocab.size());
    vocab_ids.reserve(vocab.size());
    std::vector<std::pair<std::string, token_id>> outside;  // strings outside the alphabet
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      const std::string vpath = path + ".vocab[" + detail::hf::json_quoted(it.key()) + "]";
      const json& v = it.value();
      if (!v.is_number_integer()) r.fail(vpath, "expected an integer id, got " + std::string(detail::hf::type_name(v)) + " " + detail::hf::shown(v));
      const auto id64 = v.get<std::int64_t>();
      if (id64 < 0 || id64 > token_table::max_id)
        r.fail(vpath, "id " + std::to_string(id64) + " is outside [0, " + std::to_string(token_table::max_id) + "]");
      const auto id = static_cast<token_id>(id64);
      vocab_ids.emplace(it.key(), id);
      auto bytes = detail::hf::alphabet_to_bytes(it.key());
      if (!bytes) {
        outside.emplace_back(it.key(), id);  // only an added token may be such a string
        continue;
      }
      switch (table.insert(*bytes, id)) {
        case token_table::insert_result::inserted: break;
        case token_table::insert_result::duplicate_id: r.fail(vpath, "id " + std::to_string(id) + " is used twice");
        case token_table::insert_result::duplicate_bytes: r.fail(vpath, "the same bytes as another token");
        case token_table::insert_result::bad_id: r.fail(vpath, "bad id " + std::to_string(id));
      }
    }
    outside_vocab_ = std::move(outside);
    vocab_entries_ = vocab.size();
    for (int b = 0; b < 256; ++b)
      if (table.find(std::string(1, static_cast<char>(b))) < 0)
        r.fail(path + ".vocab", "the byte 0x" + hex(b) + " (" + detail::hf::json_quoted(detail::hf::bytes_to_alphabet(std::string(1, static_cast<char>(b)))) +
                                    ") is not a token (a byte-level vocabulary has all 256)");

    const json& merges = r.require(m, path, "merges");
    r.expect(merges, json::value_t::array, path + ".merges", "an array");
    merges_.clear();
    merges_.reserve(merges.size());
    std::string left, right, joined;
    for (std::size_t i = 0; i < merges.size(); ++i) {
      const std::string mpath = path + ".merges[" + std::to_string(i) + "]";
      const json& e = merges[i];
      if (e.is_string()) {
        const auto& s = e.get_ref<const std::string&>();
        const auto space = s.find(' ');
        if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos)
          r.fail(mpath, detail::hf::shown(e) + " is not \"A B\" (two tokens separated by one space)");
        left = s.substr(0, space);
        right = s.substr(space + 1);
      } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
        left = e[0].get<std::string>();
        right = e[1].get<std::string>();
      } else {
        r.fail(mpath, "expected \"A B\" or [\"A\", \"B\"], got " + detail::hf::shown(e));
      }
      const auto l = vocab_ids.find(left);
      const auto rr = vocab_ids.find(right);
      if (l == vocab_ids.end()) r.fail(mpath, detail::hf::json_quoted(left) + " is not in $.model.vocab");
      if (rr == vocab_ids.end()) r.fail(mpath, detail::hf::json_quoted(right) + " is not in $.model.vocab");
      joined = left + right;
      const auto j = vocab_ids.find(joined);
      if (j == vocab_ids.end()) r.fail(mpath, "the merged token " + detail::hf::json_quoted(joined) + " is not in $.model.vocab");
      if (!table.contains_id(l->second) || !table.contains_id(rr->second) || !table.contains_id(j->second))
        r.fail(mpath, "merges a token outside the byte-level alphabet");
      merges_.push_back({l->second, rr->second});
    }
    model_ = bpe_model::from_merges(std::move(table), merges_, ignore_merges);
  }

  void read_added_tokens(const detail::hf::reader& r, const detail::hf::json& root,
                         const std::unordered_map<std::string, token_id>& vocab_ids) {
    using detail::hf::json;
    std::vector<hf_added_token> added;
    std::size_t bound = model_.tokens().id_bound();
    for (const auto& [s, id] : outside_vocab_) bound = std::max(bound, static_cast<std::size_t>(id) + 1);
    if (const json* list = detail::hf::reader::find(root, "added_tokens"); list != nullptr && !list->is_null()) {
      r.expect(*list, json::value_t::array, "$.added_tokens", "an array");
      // Hugging Face: a content already in the model keeps the model's id; otherwise the next id
      // is the model's entry count, or one past the largest added id when that is larger.
      const auto model_size = static_cast<std::int64_t>(vocab_entries_);
      std::int64_t max_added = -1;
      std::unordered_map<std::string, std::size_t> seen;
      for (std::size_t i = 0; i < list->size(); ++i) {
        const std::string path = "$.added_tokens[" + std::to_string(i) + "]";
        const json& e = (*list)[i];
        r.expect_object(e, path);
        r.known_keys(e, path, {"id", "content", "single_word", "lstrip", "rstrip", "normalized", "special"});
        const json& content = r.require(e, path, "content");
        r.expect(content, json::value_t::string, path + ".content", "a string");
        const json& idv = r.require(e, path, "id");
        if (!idv.is_number_integer()) r.fail(path + ".id", "expected an integer, got " + detail::hf::shown(idv));
        hf_added_token a;
        a.content = content.get<std::string>();
        a.single_word = r.boolean(e, path, "single_word", false);
        a.lstrip = r.boolean(e, path, "lstrip", false);
        a.rstrip = r.boolean(e, path, "rstrip", false);
        a.normalized = r.boolean(e, path, "normalized", true);
        a.special = r.boolean(e, path, "special", false);
        if (a.content.empty()) continue;  // Hugging Face ignores empty contents
        if (const auto it = seen.find(a.content); it != seen.end()) {
          a.id = added[it->second].id;  // the same content again: same id, the later flags
          added[it->second] = std::move(a);
          continue;
        }
        std::int64_t id;
        if (const auto v = vocab_ids.find(a.content); v != vocab_ids.end()) {
          id = v->second;
        } else {
          id = max_added < 0 ? model_size : (max_added >= model_size || model_size == 0 ? max_added + 1 : model_size);
          if (id > token_table::max_id) r.fail(path, "too many tokens");
          if (model_.tokens().contains_id(static_cast<token_id>(id)))
            r.fail(path, "gets id " + std::to_string(id) + " (the next free id after the model's " + std::to_string(model_size) +
                             " entries), which a model token already has");
        }
        max_added = std::max(max_added, id);
        a.id = static_cast<token_id>(id);
        seen.emplace(a.content, added.size());
        added.push_back(std::move(a));
      }
    }
    for (const auto& a : added) bound = std::max(bound, static_cast<std::size_t>(a.id) + 1);
    // Strings outside the byte-level alphabet must be added tokens.
    for (const auto& entry : outside_vocab_) {
      const std::string& s = entry.first;
      const bool is_added = std::any_of(added.begin(), added.end(), [&](const hf_added_token& a) { return a.content == s; });
      if (!is_added)
        r.fail("$.model.vocab[" + detail::hf::json_quoted(s) + "]",
               "has a character outside the byte-level alphabet and is not an added token");
    }
    // Bytes of added tokens the model table does not hold: what Hugging Face's ByteLevel decoder
    // gives (the alphabet mapped back when every character is in it, else the raw UTF-8).
    extra_bytes_.assign(bound, std::string());
    for (const auto& a : added) {
      if (model_.tokens().contains_id(a.id)) continue;
      auto b = detail::hf::alphabet_to_bytes(a.content);
      extra_bytes_[static_cast<std::size_t>(a.id)] = b ? *b : a.content;
    }
    vocab_size_ = bound;
    pick_special_ids(added);
    matcher_ = added_token_matcher(std::move(added));
  }

  void pick_special_ids(const std::vector<hf_added_token>& added) {
    eos_id_ = pad_id_ = -1;
    const auto find_special = [&](std::initializer_list<std::string_view> names) -> token_id {
      for (const auto name : names)
        for (const auto& a : added)
          if (a.special && a.content == name) return a.id;
      return -1;
    };
    eos_id_ = find_special({"<|endoftext|>", "</s>", "<|end_of_text|>", "<|im_end|>", "<|eot_id|>"});
    if (eos_id_ < 0)
      for (const auto& a : added)
        if (a.special) {
          eos_id_ = a.id;
          break;
        }
    pad_id_ = find_special({"<pad>", "<|pad|>", "[PAD]", "<|padding|>"});
    if (pad_id_ < 0) pad_id_ = eos_id_;
  }

  static std::string hex(int b) {
    const char* digits = "0123456789ABCDEF";
    return {digits[(b >> 4) & 15], digits[b & 15]};
  }

  bpe_model model_;
  std::vector<bpe_merge> merges_;
  added_token_matcher matcher_;
  hf_pre_tokenizer pre_;
  bool byte_level_regex_ = false;
  std::optional<pretokenizer> splitter_;
  std::vector<std::pair<std::string, token_id>> outside_vocab_;
  std::size_t vocab_entries_ = 0;
  std::vector<std::string> extra_bytes_;
  std::size_t vocab_size_ = 0;
  token_id eos_id_ = -1;
  token_id pad_id_ = -1;
};

/// What save_hf_json writes besides the tokens.
struct hf_save_options {
  /// The pre-tokenisation regex. Empty or pretokenizer_patterns::gpt2_original: pre_tokenizer ByteLevel(use_regex: true);
  /// any other: Sequence[Split(Regex, Isolated), ByteLevel(use_regex: false)].
  std::string pattern = "";
  bool add_prefix_space = false;
  bool ignore_merges = true;  ///< Llama-3 style: a piece that is a whole token is that token
};

/// The Hugging Face merges equivalent to tiktoken's rank rule over `tokens` (ids = ranks): every
/// split of every token into two tokens, ordered by (rank of the token, rank of the left part,
/// rank of the right part) — the recipe of transformers' TikTokenConverter.
inline std::vector<bpe_merge> merges_from_ranks(const token_table& tokens) {
  std::vector<token_id> ids = tokens.ids();
  std::sort(ids.begin(), ids.end());
  std::vector<std::tuple<token_id, token_id, token_id>> all;
  for (const token_id id : ids) {
    const std::string_view b = tokens.bytes_of(id);
    for (std::size_t k = 1; k < b.size(); ++k) {
      const token_id l = tokens.find(b.substr(0, k));
      if (l < 0) continue;
      const token_id r = tokens.find(b.substr(k));
      if (r < 0) continue;
      all.emplace_back(id, l, r);
    }
  }
  std::sort(all.begin(), all.end());
  std::vector<bpe_merge> out;
  out.reserve(all.size());
  for (const auto& [id, l, r] : all) out.push_back({l, r});
  return out;
}

/// The text of a tokenizer.json for a byte-level BPE: model.vocab from `tokens` (bytes written
/// in the byte-level alphabet), model.merges in the legacy "A B" form (byte-level tokens never
/// contain a space), `added` as added_tokens (also put in model.vocab, so their ids stay), the
/// pre-tokenizer of `options`, ByteLevel decoder. Loads back with hf_tokenizer and with Hugging
/// Face `tokenizers`. Throws rlhf::invalid_argument for a merge of unknown ids or an added token
/// whose content is not valid UTF-8 or whose id is a model token's.
inline std::string save_hf_json(const token_table& tokens, std::span<const bpe_merge> merges,
                                std::span<const hf_added_token> added, const hf_save_options& options = {}) {
  using detail::hf::json;
  constexpr const char* function = "rlhf::save_hf_json()";
  const auto str = [](std::string_view s) { return json(std::string(s)).dump(); };
  std::string out;
  out.reserve(tokens.size() * 24 + merges.size() * 16 + 1024);
  out += "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [";
  for (std::size_t i = 0; i < added.size(); ++i) {
    const auto& a = added[i];
    if (!utf8_valid(a.content) || a.content.empty())
      RLHF_THROW(invalid_argument(std::string(function) + ": added token " + std::to_string(a.id) + " is empty or not valid UTF-8"));
    if (tokens.contains_id(a.id))
      RLHF_THROW(invalid_argument(std::string(function) + ": added token " + std::to_string(a.id) + " has the id of a model token"));
    out += i ? ",\n    " : "\n    ";
    out += "{\"id\": " + std::to_string(a.id) + ", \"content\": " + str(a.content) +
           ", \"single_word\": " + (a.single_word ? "true" : "false") + ", \"lstrip\": " + (a.lstrip ? "true" : "false") +
           ", \"rstrip\": " + (a.rstrip ? "true" : "false") + ", \"normalized\": " + (a.normalized ? "true" : "false") +
           ", \"special\": " + (a.special ? "true" : "false") + "}";
  }
  out += added.empty() ? "],\n" : "\n  ],\n";
  out += "  \"normalizer\": null,\n  \"pre_tokenizer\": ";
  const std::string aps = options.add_prefix_space ? "true" : "false";
  if (options.pattern.empty() || options.pattern == pretokenizer_patterns::gpt2_original) {
    out += "{\"type\": \"ByteLevel\", \"add_prefix_space\": " + aps + ", \"trim_offsets\": true, \"use_regex\": true},\n";
  } else {
    out += "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": " + str(options.pattern) +
           "}, \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": " + aps +
           ", \"trim_offsets\": true, \"use_regex\": false}]},\n";
  }
  out += "  \"post_processor\": null,\n";
  out += "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true},\n";
  out += "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n"
         "    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n    \"fuse_unk\": false,\n"
         "    \"byte_fallback\": false,\n    \"ignore_merges\": ";
  out += options.ignore_merges ? "true" : "false";
  out += ",\n    \"vocab\": {";
  std::vector<token_id> ids = tokens.ids();
  std::sort(ids.begin(), ids.end());
  bool first = true;
  for (const token_id id : ids) {
    out += first ? "\n      " : ",\n      ";
    first = false;
    out += str(detail::hf::bytes_to_alphabet(tokens.bytes_of(id))) + ": " + std::to_string(id);
  }
  for (const auto& a : added) {
    out += first ? "\n      " : ",\n      ";
    first = false;
    out += str(a.content) + ": " + std::to_string(a.id);
  }
  out += "\n    },\n    \"merges\": [";
  for (std::size_t i = 0; i < merges.size(); ++i) {
    const auto& mg = merges[i];
    if (!tokens.contains_id(mg.left) || !tokens.contains_id(mg.right))
      RLHF_THROW(invalid_argument(std::string(function) + ": merge " + std::to_string(i) + " names an id that is not a token"));
    out += i ? ",\n      " : "\n      ";
    out += str(detail::hf::bytes_to_alphabet(tokens.bytes_of(mg.left)) + " " +
               detail::hf::bytes_to_alphabet(tokens.bytes_of(mg.right)));
  }
  out += merges.empty() ? "]\n  }\n}\n" : "\n    ]\n  }\n}\n";
  return out;
}

}  // namespace rlhf
