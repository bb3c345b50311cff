// rlhf/tokenizer.hpp — byte-level BPE tokenizers: tiktoken's encodings, GPT-2, and any
// vocabulary (+ merges) with a pre-tokenizer. The one header users include.
//
//   auto tok = rlhf::bpe_tokenizer::openai("cl100k_base", "cl100k_base.tiktoken");
//   std::vector<rlhf::token_id> ids = tok.encode("hello world");        // [15339, 1917]
//   std::string text = tok.decode(ids);                                  // "hello world"
//   tok.count("hello world");                                            // 2, no allocation
//   tok.encode("<|endoftext|>");                                         // plain text: 7 tokens
//   std::string eot[] = {"<|endoftext|>"};
//   tok.encode("a<|endoftext|>", {.allowed_special = eot});              // [64, 100257]
//
// Encoding = tiktoken's: (1) special tokens are found only when the caller allows them
// (`allowed_special`, or `allow_all_special`), leftmost first, the longest at one position;
// everything else, special-token text included, is ordinary text. With `strict`, a special
// token in the text that is not allowed throws rlhf::invalid_argument (tiktoken's default
// `disallowed_special="all"`). (2) The ordinary text is split into pieces by the pre-tokenizer
// (the encoding's regex). (3) Each piece is one token when it is one, else BPE-merged
// (<rlhf/tokenizer/bpe.hpp>). Ids are byte-exact with tiktoken for r50k_base (= gpt2),
// p50k_base, cl100k_base and o200k_base.
//
// Invalid UTF-8 in the text (`on_invalid_utf8`): `replace` (default) first replaces every
// ill-formed part by U+FFFD, exactly what a Python user gets from
// `data.decode("utf-8", errors="replace")` before calling tiktoken; `keep_bytes` encodes the
// bytes themselves (the pre-tokenizer takes each ill-formed byte as a character outside
// \s, \p{L} and \p{N}, so it joins a punctuation run), so `decode(encode(x)) == x` for any bytes;
// `reject` throws rlhf::invalid_argument naming the offset.
//
// Decoding: `decode` returns the exact bytes (a character can be split between tokens, so the
// result of a prefix of ids may be invalid UTF-8); `decode_lossy` the same as valid UTF-8 with
// U+FFFD per maximal ill-formed subpart; `streaming_decoder` returns complete characters only
// and holds back an incomplete trailing sequence. Special ids decode to their text.
//
// A bpe_tokenizer is immutable after construction; every const member function may be called
// from many threads at once.
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/concepts.hpp>
#include <rlhf/config.hpp>
#include <rlhf/detail/parallel.hpp>
#include <rlhf/error.hpp>
#include <rlhf/tokenizer/bpe.hpp>
#include <rlhf/tokenizer/gpt2_files.hpp>
#include <rlhf/tokenizer/pretokenizer.hpp>
#include <rlhf/tokenizer/tiktoken_file.hpp>
#include <rlhf/tokenizer/utf8.hpp>
#include <rlhf/tokenizer/vocabulary.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rlhf {

/// What encode does with text that is not valid UTF-8 (see the file comment).
enum class invalid_utf8 {
  replace,     ///< U+FFFD per maximal ill-formed subpart, then encode (Python errors="replace")
  keep_bytes,  ///< encode the bytes themselves; decode gives them back exactly
  reject,      ///< throw rlhf::invalid_argument
};

/// Per-call options of bpe_tokenizer::encode / count / encode_batch.
struct encode_options {
  /// Special tokens matched as specials (by text). Every entry must be a special token of the
  /// tokenizer. The span must outlive the call.
  std::span<const std::string> allowed_special = {};
  /// Match every special token (tiktoken's allowed_special="all").
  bool allow_all_special = false;
  /// Throw rlhf::invalid_argument when the text contains a special token that is not allowed
  /// (tiktoken's disallowed_special="all"); otherwise such text is encoded as ordinary text.
  bool strict = false;
  invalid_utf8 on_invalid_utf8 = invalid_utf8::replace;
};

/// Options of bpe_tokenizer::from_merges.
struct bpe_merges_options {
  /// Hugging Face `ignore_merges`: a piece that is a whole token is that token, merges unused.
  bool ignore_merges = false;
};

/// A byte-level BPE tokenizer. See the file comment.
class bpe_tokenizer {
 public:
  /// One of OpenAI's encodings from its `.tiktoken` rank file: "r50k_base" (or "gpt2"),
  /// "p50k_base", "cl100k_base", "o200k_base". The file must have that encoding's number of
  /// tokens; its pattern and special tokens are built in.
  static bpe_tokenizer openai(std::string_view encoding, const std::filesystem::path& tiktoken_file) {
    const encoding_info info = find_encoding(encoding, "rlhf::bpe_tokenizer::openai()");
    const std::string contents = detail::read_file_bytes(tiktoken_file, "rlhf::bpe_tokenizer::openai()");
    return openai_from_memory(encoding, contents, tiktoken_file.string(), info);
  }
  /// The same from the file's contents (for embedding or fuzzing).
  static bpe_tokenizer openai_from_memory(std::string_view encoding, std::string_view tiktoken_contents,
                                          std::string_view source_name = "<memory>") {
    return openai_from_memory(encoding, tiktoken_contents, source_name,
                              find_encoding(encoding, "rlhf::bpe_tokenizer::openai_from_memory()"));
  }

  /// Any `.tiktoken` content with a pre-tokenizer and special tokens (tiktoken's rule).
  static bpe_tokenizer from_tiktoken(std::string_view file_contents, pretokenizer pre, std::vector<special_token> specials,
                                     std::string_view source_name = "<memory>") {
    return from_ranks(parse_tiktoken(file_contents, source_name), std::move(pre), std::move(specials));
  }

  /// GPT-2's `encoder.json` + `vocab.bpe`: the r50k_base encoding (ids equal).
  static bpe_tokenizer from_gpt2_files(const std::filesystem::path& encoder_json, const std::filesystem::path& vocab_bpe) {
    gpt2_vocabulary v = load_gpt2(encoder_json, vocab_bpe);
    return from_ranks(std::move(v.tokens), pretokenizer::gpt2(), std::move(v.specials));
  }
  /// The same from the two files' contents.
  static bpe_tokenizer from_gpt2(std::string_view encoder_json, std::string_view vocab_bpe) {
    gpt2_vocabulary v = parse_gpt2(encoder_json, vocab_bpe);
    return from_ranks(std::move(v.tokens), pretokenizer::gpt2(), std::move(v.specials));
  }

  /// tiktoken's rule over a token table: the priority of merging two parts is the id (rank) of
  /// their concatenated bytes, which must be a token; a piece that is a token is that token.
  static bpe_tokenizer from_ranks(token_table tokens, pretokenizer pre, std::vector<special_token> specials) {
    return bpe_tokenizer(bpe_model::from_ranks(std::move(tokens)), std::move(pre), std::move(specials));
  }

  /// Hugging Face's rule: merges[i] = (left id, right id) has priority i and produces the token
  /// of the concatenated bytes; pairs not listed never merge.
  static bpe_tokenizer from_merges(token_table tokens, std::span<const bpe_merge> merges, pretokenizer pre,
                                   std::vector<special_token> specials, const bpe_merges_options& options = {}) {
    return bpe_tokenizer(bpe_model::from_merges(std::move(tokens), merges, options.ignore_merges), std::move(pre),
                         std::move(specials));
  }

  // --- encoding -------------------------------------------------------------------------------

  /// Ordinary encoding: special-token text is ordinary text; invalid UTF-8 is replaced.
  [[nodiscard]] std::vector<token_id> encode(std::string_view text) const { return encode(text, encode_options{}); }

  [[nodiscard]] std::vector<token_id> encode(std::string_view text, const encode_options& options) const {
    std::vector<token_id> out;
    out.reserve(text.size() / 4 + 4);
    run(text, options, "rlhf::bpe_tokenizer::encode()", [&](token_id id) { out.push_back(id); });
    return out;
  }

  /// The number of tokens encode(text) returns; allocates nothing for valid UTF-8 once the
  /// calling thread has warmed up.
  [[nodiscard]] std::size_t count(std::string_view text) const { return count(text, encode_options{}); }
  [[nodiscard]] std::size_t count(std::string_view text, const encode_options& options) const {
    std::size_t n = 0;
    run(text, options, "rlhf::bpe_tokenizer::count()", [&](token_id) { ++n; });
    return n;
  }

  /// encode() of every text, split over backend.threads threads; the result does not depend on
  /// the thread count.
  [[nodiscard]] std::vector<std::vector<token_id>> encode_batch(const cpu_backend& backend,
                                                                std::span<const std::string_view> texts,
                                                                const encode_options& options = {}) const {
    std::vector<std::vector<token_id>> out(texts.size());
    detail::parallel_for(backend, static_cast<std::ptrdiff_t>(texts.size()), [&](std::ptrdiff_t b, std::ptrdiff_t e) {
      for (std::ptrdiff_t i = b; i < e; ++i) out[static_cast<std::size_t>(i)] = encode(texts[static_cast<std::size_t>(i)], options);
    });
    return out;
  }

  // --- decoding -------------------------------------------------------------------------------

  /// The exact bytes of the tokens (special ids as their text); may be invalid UTF-8 when a
  /// character is split between tokens. Throws rlhf::invalid_argument for an id that is neither
  /// a token nor a special token.
  [[nodiscard]] std::string decode(std::span<const token_id> ids) const {
    std::string out;
    std::size_t n = 0;
    for (std::size_t i = 0; i < ids.size(); ++i) n += checked_bytes(ids[i], i).size();
    out.reserve(n);
    for (const token_id id : ids) out.append(bytes_unchecked(id));
    return out;
  }

  /// decode() as valid UTF-8: one U+FFFD per maximal ill-formed subpart.
  [[nodiscard]] std::string decode_lossy(std::span<const token_id> ids) const { return utf8_lossy(decode(ids)); }

  // --- vocabulary -----------------------------------------------------------------------------

  /// One past the largest id, special tokens included (the model's embedding rows).
  [[nodiscard]] std::size_t vocab_size() const noexcept { return vocab_size_; }
  /// The end-of-text id: `<|endoftext|>` when the tokenizer has it, else −1 until set_eos_id.
  [[nodiscard]] token_id eos_id() const noexcept { return eos_; }
  /// The padding id: the eos id unless set (OpenAI's encodings have no padding token).
  [[nodiscard]] token_id pad_id() const noexcept { return pad_; }
  void set_eos_id(token_id id) { eos_ = require_known(id, "rlhf::bpe_tokenizer::set_eos_id()"); }
  void set_pad_id(token_id id) { pad_ = require_known(id, "rlhf::bpe_tokenizer::set_pad_id()"); }

  /// The id of a mergeable token with exactly these bytes, else of a special token with this
  /// text, else nothing.
  [[nodiscard]] std::optional<token_id> token_of(std::string_view bytes) const noexcept {
    const token_id id = model_.tokens().find(bytes);
    if (id >= 0) return id;
    for (const special_token& s : specials_)
      if (s.text == bytes) return s.id;
    return std::nullopt;
  }
  /// The bytes of a token (the text of a special token). Throws for an unknown id.
  [[nodiscard]] std::string_view bytes_of(token_id id) const { return checked_bytes(id, npos); }
  /// True when `id` is a token or a special token.
  [[nodiscard]] bool contains(token_id id) const noexcept { return model_.tokens().contains_id(id) || special_index(id) >= 0; }

  [[nodiscard]] const std::vector<special_token>& special_tokens() const noexcept { return specials_; }
  [[nodiscard]] const bpe_model& model() const noexcept { return model_; }
  [[nodiscard]] const pretokenizer& pre_tokenizer() const noexcept { return pre_; }

 private:
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

  struct encoding_info {
    std::string_view name;
    std::size_t tokens;
    int pattern;  // 0 gpt2, 1 cl100k, 2 o200k
    std::span<const std::pair<std::string_view, token_id>> specials;
  };
  static encoding_info find_encoding(std::string_view encoding, const char* function) {
    static constexpr std::pair<std::string_view, token_id> r50k[] = {{"<|endoftext|>", 50256}};
    static constexpr std::pair<std::string_view, token_id> cl100k[] = {
        {"<|endoftext|>", 100257}, {"<|fim_prefix|>", 100258}, {"<|fim_middle|>", 100259},
        {"<|fim_suffix|>", 100260}, {"<|endofprompt|>", 100276}};
    static constexpr std::pair<std::string_view, token_id> o200k[] = {{"<|endoftext|>", 199999},
                                                                      {"<|endofprompt|>", 200018}};
    if (encoding == "r50k_base" || encoding == "gpt2") return {"r50k_base", 50256, 0, r50k};
    if (encoding == "p50k_base") return {"p50k_base", 50280, 0, r50k};
    if (encoding == "cl100k_base") return {"cl100k_base", 100256, 1, cl100k};
    if (encoding == "o200k_base") return {"o200k_base", 199998, 2, o200k};
    RLHF_THROW(invalid_argument(std::string(function) + ": unknown encoding '" + std::string(encoding) +
                                "' (known: r50k_base, gpt2, p50k_base, cl100k_base, o200k_base)"));
  }
  static bpe_tokenizer openai_from_memory(std::string_view encoding, std::string_view contents, std::string_view source,
                                          const encoding_info& info) {
    token_table tokens = parse_tiktoken(contents, source);
    if (tokens.size() != info.tokens)
      RLHF_THROW(format_error("rlhf::bpe_tokenizer::openai(): " + std::string(source) + " has " +
                              std::to_string(tokens.size()) + " tokens but " + std::string(info.name) + " has " +
                              std::to_string(info.tokens) + " (is it the rank file of another encoding?)"));
    std::vector<special_token> specials;
    for (const auto& [text, id] : info.specials) specials.push_back({std::string(text), id});
    pretokenizer pre = info.pattern == 0 ? pretokenizer::gpt2() : info.pattern == 1 ? pretokenizer::cl100k() : pretokenizer::o200k();
    (void)encoding;
    return from_ranks(std::move(tokens), std::move(pre), std::move(specials));
  }

  bpe_tokenizer(bpe_model model, pretokenizer pre, std::vector<special_token> specials)
      : model_(std::move(model)), pre_(std::move(pre)), specials_(std::move(specials)) {
    constexpr const char* function = "rlhf::bpe_tokenizer";
    vocab_size_ = model_.tokens().id_bound();
    for (std::size_t i = 0; i < specials_.size(); ++i) {
      const special_token& s = specials_[i];
      if (s.text.empty()) RLHF_THROW(invalid_argument(std::string(function) + ": special token " + std::to_string(i) + " has empty text"));
      if (s.id < 0 || s.id > token_table::max_id)
        RLHF_THROW(invalid_argument(std::string(function) + ": special token '" + s.text + "' has id " +
                                    std::to_string(s.id) + ", outside [0, 16777215]"));
      // A special may also be a mergeable token (Hugging Face files list specials in the vocab)
      // only with the same id and bytes.
      if (model_.tokens().contains_id(s.id) && model_.tokens().bytes_of(s.id) != s.text)
        RLHF_THROW(invalid_argument(std::string(function) + ": special token '" + s.text + "' has id " +
                                    std::to_string(s.id) + ", which is the id of the token " +
                                    detail::quote_excerpt(model_.tokens().bytes_of(s.id))));
      for (std::size_t j = 0; j < i; ++j)
        if (specials_[j].id == s.id || specials_[j].text == s.text)
          RLHF_THROW(invalid_argument(std::string(function) + ": special tokens '" + specials_[j].text + "' and '" +
                                      s.text + "' share " + (specials_[j].id == s.id ? "an id" : "their text")));
      vocab_size_ = std::max(vocab_size_, static_cast<std::size_t>(s.id) + 1);
      first_bytes_[static_cast<unsigned char>(s.text[0])] = true;
      if (s.text == "<|endoftext|>") eos_ = s.id;
    }
    pad_ = eos_;
  }

  [[nodiscard]] std::ptrdiff_t special_index(token_id id) const noexcept {
    for (std::size_t i = 0; i < specials_.size(); ++i)
      if (specials_[i].id == id) return static_cast<std::ptrdiff_t>(i);
    return -1;
  }
  [[nodiscard]] std::string_view bytes_unchecked(token_id id) const noexcept {
    if (model_.tokens().contains_id(id)) return model_.tokens().bytes_of(id);
    return specials_[static_cast<std::size_t>(special_index(id))].text;
  }
  [[nodiscard]] std::string_view checked_bytes(token_id id, std::size_t position) const {
    if (model_.tokens().contains_id(id)) return model_.tokens().bytes_of(id);
    const std::ptrdiff_t k = special_index(id);
    if (k < 0)
      RLHF_THROW(invalid_argument(std::string(position == npos ? "rlhf::bpe_tokenizer::bytes_of(): id "
                                                               : "rlhf::bpe_tokenizer::decode(): ids[" +
                                                                     std::to_string(position) + "] = ") +
                                  std::to_string(id) + " is not a token of this tokenizer (vocab_size " +
                                  std::to_string(vocab_size_) + ")"));
    return specials_[static_cast<std::size_t>(k)].text;
  }
  token_id require_known(token_id id, const char* function) const {
    if (!contains(id))
      RLHF_THROW(invalid_argument(std::string(function) + ": id " + std::to_string(id) + " is not a token of this tokenizer"));
    return id;
  }

  /// Which specials are matched in this call (indices into specials_), longest text first.
  void allowed_set(const encode_options& o, std::vector<std::size_t>& allowed, const char* function) const {
    allowed.clear();
    if (o.allow_all_special) {
      for (std::size_t i = 0; i < specials_.size(); ++i) allowed.push_back(i);
    } else {
      for (const std::string& text : o.allowed_special) {
        std::size_t i = 0;
        while (i < specials_.size() && specials_[i].text != text) ++i;
        if (i == specials_.size())
          RLHF_THROW(invalid_argument(std::string(function) + ": allowed_special names " + detail::quote_excerpt(text) +
                                      ", which is not a special token of this tokenizer"));
        if (std::find(allowed.begin(), allowed.end(), i) == allowed.end()) allowed.push_back(i);
      }
    }
    std::sort(allowed.begin(), allowed.end(), [&](std::size_t a, std::size_t b) {
      return specials_[a].text.size() > specials_[b].text.size() || (specials_[a].text.size() == specials_[b].text.size() && a < b);
    });
  }

  /// The first special token (of `set`, longest first at a position) at or after `from`.
  [[nodiscard]] std::pair<std::size_t, std::ptrdiff_t> find_special(std::string_view text, std::size_t from,
                                                                    const std::vector<std::size_t>& set) const noexcept {
    for (std::size_t p = from; p < text.size(); ++p) {
      if (!first_bytes_[static_cast<unsigned char>(text[p])]) continue;
      const std::string_view rest = text.substr(p);
      for (const std::size_t k : set)
        if (rest.starts_with(specials_[k].text)) return {p, static_cast<std::ptrdiff_t>(k)};
    }
    return {text.size(), -1};
  }

  template <class Emit>
  void ordinary(std::string_view text, Emit& emit) const {
    pre_.split(text, [&](std::string_view piece) { model_.encode_piece(piece, emit); });
  }

  /// Encodes valid UTF-8 with special-token handling.
  template <class Emit>
  void encode_valid(std::string_view text, const encode_options& o, const char* function, Emit& emit) const {
    thread_local std::vector<std::size_t> allowed, all;
    if (specials_.empty() || (!o.strict && !o.allow_all_special && o.allowed_special.empty())) {
      ordinary(text, emit);
      return;
    }
    allowed_set(o, allowed, function);
    if (o.strict && allowed.size() < specials_.size()) {
      all.clear();
      for (std::size_t i = 0; i < specials_.size(); ++i)
        if (std::find(allowed.begin(), allowed.end(), i) == allowed.end()) all.push_back(i);
      const auto [p, k] = find_special(text, 0, all);
      if (k >= 0)
        RLHF_THROW(invalid_argument(std::string(function) + ": the text contains the special token '" +
                                    specials_[static_cast<std::size_t>(k)].text + "' at byte " + std::to_string(p) +
                                    ", which is not allowed (add it to allowed_special to encode it as a special "
                                    "token, or set strict = false to encode it as plain text)"));
    }
    if (allowed.empty()) {
      ordinary(text, emit);
      return;
    }
    std::size_t pos = 0;
    while (pos < text.size()) {
      const auto [p, k] = find_special(text, pos, allowed);
      ordinary(text.substr(pos, p - pos), emit);
      if (k < 0) break;
      const special_token& s = specials_[static_cast<std::size_t>(k)];
      emit(s.id);
      pos = p + s.text.size();
    }
  }

  template <class Emit>
  void run(std::string_view text, const encode_options& o, const char* function, Emit&& emit) const {
    if (text.size() >= 0xFFFFFFFFu)
      RLHF_THROW(invalid_argument(std::string(function) + ": the text has " + std::to_string(text.size()) +
                                  " bytes; split texts of 4 GiB or more"));
    const std::size_t valid = utf8_valid_prefix(text);
    if (valid == text.size()) {
      encode_valid(text, o, function, emit);
      return;
    }
    switch (o.on_invalid_utf8) {
      case invalid_utf8::replace: {
        const std::string fixed = utf8_lossy(text);
        encode_valid(fixed, o, function, emit);
        return;
      }
      case invalid_utf8::reject: {
        static constexpr char hex[] = "0123456789ABCDEF";
        const auto b = static_cast<unsigned char>(text[valid]);
        RLHF_THROW(invalid_argument(std::string(function) + ": the text is not valid UTF-8 (byte 0x" + hex[b >> 4] +
                                    hex[b & 15] + " at offset " + std::to_string(valid) +
                                    "); pass on_invalid_utf8 = replace or keep_bytes to encode it"));
      }
      case invalid_utf8::keep_bytes:
        // The pre-tokenizer takes each ill-formed byte as a code point of its own outside
        // \s, \p{L} and \p{N} (see <rlhf/tokenizer/unicode.hpp>); pieces still cover every byte.
        encode_valid(text, o, function, emit);
        return;
    }
  }

  bpe_model model_;
  pretokenizer pre_;
  std::vector<special_token> specials_;
  bool first_bytes_[256] = {};
  std::size_t vocab_size_ = 0;
  token_id eos_ = -1;
  token_id pad_ = -1;
};

/// Decodes a stream of ids into complete UTF-8 characters: push() returns only text that can
/// no longer change, holding back an incomplete trailing character (at most 3 bytes); finish()
/// returns what is left (U+FFFD for an incomplete character). The concatenation of everything
/// returned equals tokenizer.decode_lossy(all ids). The tokenizer must outlive the decoder.
class streaming_decoder {
 public:
  explicit streaming_decoder(const bpe_tokenizer& tokenizer) : tokenizer_(&tokenizer) {}

  std::string push(token_id id) { return stream_.push(tokenizer_->bytes_of(id)); }
  std::string push(std::span<const token_id> ids) {
    std::string out;
    for (const token_id id : ids) stream_.push(tokenizer_->bytes_of(id), out);
    return out;
  }
  std::string finish() { return stream_.finish(); }
  /// Bytes held back (0 to 3).
  [[nodiscard]] std::size_t pending() const noexcept { return stream_.pending(); }

 private:
  const bpe_tokenizer* tokenizer_;
  utf8_lossy_stream stream_;
};

static_assert(Tokenizer<bpe_tokenizer>);

}  // namespace rlhf
