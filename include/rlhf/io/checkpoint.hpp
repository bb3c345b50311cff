// rlhf/io/checkpoint.hpp — training checkpoints in one safetensors file: model weights,
// AdamW moments and step count (which is also the schedule's position), the EMA of the
// weights, RNG and KL-controller states, the data position and any extra named values.
//
// Layout (tensor names; every float tensor in the parameter type, F32 or F64):
//   <name>                     model weights under their own names (GPT-2: wte.weight, ...),
//                              so a checkpoint is also a weights file; a second model can be
//                              saved under a prefix ("value." + name)
//   optimizer.m.<name>         AdamW first moments, flat
//   optimizer.v.<name>         AdamW second moments, flat
//   ema.<name>                 the weight average, flat
// and "__metadata__" (strings; numbers written so that they read back exactly):
//   checkpoint.groups          the prefixes saved ("", "optimizer.", "ema.", ...), one a line
//   optimizer.steps            AdamW updates taken (the schedule's step)
//   optimizer.names / ema.names  the parameter order, a JSON array of names
//   ema.updates
//   <key>                      anything set with set / set_u64 / set_double / set_rng /
//                              set_kl_controller: e.g. "rng.sampler" = "seed stream counter used",
//                              "kl" = "value updates last_observed_kl last_error", "data.position"
//
// A tensor belongs to the saved group with the longest matching prefix, so load_model(ck,
// policy) sees only the policy's weights, not the optimizer's or a value model's tensors.
// Writes are atomic (rlhf/io/atomic_file.hpp). Restoring every piece into fresh objects
// continues a run bitwise: k steps, save, load, n more steps equals k + n uninterrupted steps
// (same binary, same thread count).
//
//   rlhf::checkpoint ck;
//   rlhf::save_model(ck, policy);
//   rlhf::save_optimizer(ck, opt);
//   ck.set_rng("rng.sampler", gen.state());
//   ck.set_kl_controller("kl", kl.state());
//   ck.set_u64("data.position", position);
//   ck.save("ckpt-000300.safetensors");
//
//   auto ck = rlhf::checkpoint::load("ckpt-000300.safetensors");
//   rlhf::load_model(ck, policy);
//   rlhf::load_optimizer(ck, opt);
//   gen.restore(ck.get_rng("rng.sampler"));
#pragma once

#include <rlhf/concepts.hpp>
#include <rlhf/config.hpp>
#include <rlhf/detail/checks.hpp>
#include <rlhf/error.hpp>
#include <rlhf/io/safetensors.hpp>
#include <rlhf/kl_controller.hpp>
#include <rlhf/optim/adamw.hpp>
#include <rlhf/optim/ema.hpp>
#include <rlhf/rng.hpp>

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rlhf {

namespace detail {
template <class T>
constexpr safetensors_dtype checkpoint_dtype() noexcept {
  if constexpr (std::is_same_v<T, float>) return safetensors_dtype::f32;
  else if constexpr (std::is_same_v<T, double>) return safetensors_dtype::f64;
  else if constexpr (std::is_same_v<T, std::int64_t>) return safetensors_dtype::i64;
  else if constexpr (std::is_same_v<T, std::uint64_t>) return safetensors_dtype::u64;
  else if constexpr (std::is_same_v<T, std::int32_t>) return safetensors_dtype::i32;
  else if constexpr (std::is_same_v<T, std::uint8_t>) return safetensors_dtype::u8;
  else static_assert(dependent_false<T>, "rlhf::checkpoint: values must be float, double, int64, uint64, int32 or uint8");
}
}  // namespace detail

/// The tensors and small values of one checkpoint, in memory.
class checkpoint {
 public:
  checkpoint() = default;

  // -- tensors ---------------------------------------------------------------------------
  /// Store a tensor (replaces one of the same name). Throws rlhf::invalid_argument when the
  /// bytes do not match the dtype and shape.
  void set_tensor(std::string name, safetensors_dtype dtype, std::vector<std::uint64_t> shape,
                  std::vector<std::byte> bytes) {
    std::uint64_t elements = 1, bits = 0;
    bool ok = true;
    for (auto d : shape) ok = ok && detail::checked_mul(elements, d, elements);
    ok = ok && detail::checked_mul(elements, bit_size(dtype), bits);
    detail::require(ok && bits % 8 == 0 && bits / 8 == bytes.size(),
                    "rlhf::checkpoint::set_tensor()",
                    "tensor '" + name + "' (" + std::string(to_string(dtype)) + ", " + std::to_string(elements) +
                        " elements) has " + std::to_string(bytes.size()) + " bytes");
    tensors_[std::move(name)] = stored{dtype, std::move(shape), std::move(bytes)};
  }
  /// Store values as a 1-D tensor (float, double, int64, uint64, int32 or uint8).
  template <class T>
  void set_values(std::string name, std::span<const T> values) {
    std::vector<std::byte> bytes(values.size() * sizeof(T));
    if (!values.empty()) std::memcpy(bytes.data(), values.data(), bytes.size());
    set_tensor(std::move(name), detail::checkpoint_dtype<T>(), {values.size()}, std::move(bytes));
  }
  /// The values of tensor `name`, whose dtype must be T's. Throws rlhf::format_error naming
  /// the checkpoint when it is absent or of another dtype.
  template <class T>
  [[nodiscard]] std::vector<T> values(std::string_view name) const {
    const auto it = tensors_.find(name);
    if (it == tensors_.end()) fail("missing tensor '" + std::string(name) + "'");
    if (it->second.dtype != detail::checkpoint_dtype<T>())
      fail("tensor '" + std::string(name) + "' is " + std::string(to_string(it->second.dtype)) + ", expected " +
           std::string(to_string(detail::checkpoint_dtype<T>())));
    std::vector<T> out(it->second.bytes.size() / sizeof(T));
    if (!out.empty()) std::memcpy(out.data(), it->second.bytes.data(), it->second.bytes.size());
    return out;
  }
  [[nodiscard]] bool contains_tensor(std::string_view name) const { return tensors_.find(name) != tensors_.end(); }

  // -- small values ----------------------------------------------------------------------
  void set(std::string key, std::string value) { metadata_[std::move(key)] = std::move(value); }
  void set_u64(std::string key, std::uint64_t value) { set(std::move(key), std::to_string(value)); }
  /// Written as the shortest text that reads back to the same double.
  void set_double(std::string key, double value) { set(std::move(key), detail::number_string(value)); }
  void set_rng(std::string key, const rng_state& s) {
    set(std::move(key), std::to_string(s.seed) + " " + std::to_string(s.stream) + " " + std::to_string(s.counter) +
                            " " + std::to_string(s.used));
  }
  void set_kl_controller(std::string key, const kl_controller_state& s) {
    set(std::move(key), detail::number_string(s.value) + " " + std::to_string(s.updates) + " " +
                            detail::number_string(s.last_observed_kl) + " " + detail::number_string(s.last_error));
  }

  [[nodiscard]] bool contains(std::string_view key) const { return metadata_.find(key) != metadata_.end(); }
  /// The value of `key`; rlhf::format_error when absent (the get_* too, and when it does not parse).
  [[nodiscard]] const std::string& get(std::string_view key) const {
    const auto it = metadata_.find(key);
    if (it == metadata_.end()) fail("missing value '" + std::string(key) + "'");
    return it->second;
  }
  [[nodiscard]] std::uint64_t get_u64(std::string_view key) const {
    const auto words = split(key, 1);
    return parse_u64(key, words[0]);
  }
  [[nodiscard]] double get_double(std::string_view key) const {
    const auto words = split(key, 1);
    return parse_double(key, words[0]);
  }
  [[nodiscard]] rng_state get_rng(std::string_view key) const {
    const auto w = split(key, 4);
    rng_state s;
    s.seed = parse_u64(key, w[0]);
    s.stream = parse_u64(key, w[1]);
    s.counter = parse_u64(key, w[2]);
    const std::uint64_t used = parse_u64(key, w[3]);
    if (used > 4) fail("value '" + std::string(key) + "' has used = " + std::to_string(used) + " (at most 4)");
    s.used = static_cast<std::uint32_t>(used);
    return s;
  }
  [[nodiscard]] kl_controller_state get_kl_controller(std::string_view key) const {
    const auto w = split(key, 4);
    return {parse_double(key, w[0]), parse_u64(key, w[1]), parse_double(key, w[2]), parse_double(key, w[3])};
  }
  /// Every small value (the file's __metadata__).
  [[nodiscard]] const safetensors_metadata& metadata() const noexcept { return metadata_; }

  // -- files -----------------------------------------------------------------------------
  /// Write the checkpoint atomically.
  void save(const std::string& path) const {
    std::vector<safetensors_entry> entries;
    entries.reserve(tensors_.size());
    for (const auto& [name, t] : tensors_) entries.push_back({name, t.dtype, t.shape, t.bytes});
    write_safetensors(path, entries, metadata_);
  }
  /// Read a checkpoint (any valid safetensors file). Throws rlhf::format_error when invalid.
  [[nodiscard]] static checkpoint load(const std::string& path, const safetensors_read_options& options = {}) {
    const auto file = safetensors_file::read(path, options);
    checkpoint ck;
    ck.source_ = path;
    for (const auto& t : file.tensors())
      ck.tensors_[t.name] = stored{t.dtype, t.shape, std::vector<std::byte>(t.bytes.begin(), t.bytes.end())};
    ck.metadata_ = file.metadata();
    return ck;
  }
  /// The file it was loaded from ("<memory>" otherwise), for messages.
  [[nodiscard]] const std::string& source() const noexcept { return source_; }

  /// Record that a group of tensors was saved under `prefix` (the save_* functions do it).
  void add_group(std::string_view prefix) {
    for (const auto& g : groups())
      if (g == prefix) return;
    std::string& list = metadata_["checkpoint.groups"];
    list += prefix;
    list += '\n';
  }
  /// The prefixes of the groups saved.
  [[nodiscard]] std::vector<std::string> groups() const {
    std::vector<std::string> out;
    const auto it = metadata_.find("checkpoint.groups");
    if (it == metadata_.end()) return out;
    std::size_t start = 0;
    while (start < it->second.size()) {
      const auto end = it->second.find('\n', start);
      if (end == std::string::npos) break;
      out.push_back(it->second.substr(start, end - start));
      start = end + 1;
    }
    return out;
  }
  /// Views of the tensors of the group saved under `prefix` (longest matching group wins).
  [[nodiscard]] std::vector<safetensors_tensor> group_tensors(std::string_view prefix) const {
    const auto all = groups();
    std::vector<safetensors_tensor> out;
    for (const auto& [name, t] : tensors_) {
      std::string_view best;
      bool found = false;
      for (const auto& g : all)
        if (std::string_view(name).starts_with(g) && (!found || g.size() > best.size())) {
          best = g;
          found = true;
        }
      if (found ? best != prefix : !std::string_view(name).starts_with(prefix)) continue;
      safetensors_tensor v;
      v.name = name;
      v.dtype = t.dtype;
      v.shape = t.shape;
      v.end = t.bytes.size();
      v.bytes = std::span<const std::byte>(t.bytes);
      out.push_back(std::move(v));
    }
    return out;
  }

 private:
  struct stored {
    safetensors_dtype dtype = safetensors_dtype::f32;
    std::vector<std::uint64_t> shape;
    std::vector<std::byte> bytes;
  };

  [[noreturn]] void fail(const std::string& what) const {
    RLHF_THROW(format_error("rlhf::checkpoint: " + source_ + ": " + what));
  }
  std::vector<std::string> split(std::string_view key, std::size_t count) const {
    const std::string& text = get(key);
    std::vector<std::string> words;
    std::size_t start = 0;
    while (start <= text.size()) {
      auto end = text.find(' ', start);
      if (end == std::string::npos) end = text.size();
      words.push_back(text.substr(start, end - start));
      start = end + 1;
    }
    if (words.size() != count)
      fail("value '" + std::string(key) + "' is \"" + text + "\", expected " + std::to_string(count) + " number(s)");
    return words;
  }
  std::uint64_t parse_u64(std::string_view key, const std::string& word) const {
    std::uint64_t v = 0;
    const auto [end, ec] = std::from_chars(word.data(), word.data() + word.size(), v);
    if (ec != std::errc() || end != word.data() + word.size() || word.empty())
      fail("value '" + std::string(key) + "': \"" + word + "\" is not an unsigned integer");
    return v;
  }
  double parse_double(std::string_view key, const std::string& word) const {
    char* end = nullptr;
    const double v = std::strtod(word.c_str(), &end);
    if (word.empty() || end != word.c_str() + word.size())
      fail("value '" + std::string(key) + "': \"" + word + "\" is not a number");
    return v;
  }

  std::map<std::string, stored, std::less<>> tensors_;
  safetensors_metadata metadata_;
  std::string source_ = "<memory>";
};

/// Store the model's weights under `prefix` + name (flat values with the model's shapes).
template <class M>
  requires Trainable<M>
void save_model(checkpoint& ck, M& model, std::string_view prefix = "") {
  for (auto& [e, bytes] : detail::parameter_entries(model, prefix, "rlhf::save_model()"))
    ck.set_tensor(e.name, e.dtype, e.shape, std::move(bytes));
  ck.add_group(prefix);
}

/// Load the model's weights from the group saved under options.prefix (strict by default; see
/// safetensors_load_options). Throws rlhf::format_error naming the checkpoint and the tensor.
template <class M>
  requires Trainable<M>
safetensors_load_report load_model(const checkpoint& ck, M& model, const safetensors_load_options& options = {}) {
  const auto tensors = ck.group_tensors(options.prefix);
  return detail::load_parameters(std::span<const safetensors_tensor>(tensors), ck.metadata(), ck.source(), model,
                                 options);
}

namespace detail {
inline std::string names_json(const std::vector<std::string>& names) {
  std::string out = "[";
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i) out += ',';
    append_json_string(out, names[i]);
  }
  return out + "]";
}
inline std::vector<std::string> parse_names_json(const checkpoint& ck, const std::string& key) {
  const auto j = nlohmann::json::parse(ck.get(key), nullptr, /*allow_exceptions=*/false);
  std::vector<std::string> names;
  if (!j.is_array())
    RLHF_THROW(format_error("rlhf::checkpoint: " + ck.source() + ": value '" + key + "' is not a JSON array of names"));
  for (const auto& n : j) {
    if (!n.is_string())
      RLHF_THROW(format_error("rlhf::checkpoint: " + ck.source() + ": value '" + key + "' is not a JSON array of names"));
    names.push_back(n.get<std::string>());
  }
  return names;
}
}  // namespace detail

/// Store AdamW's step count and moments under `prefix` ("optimizer." by default).
template <class T>
void save_optimizer(checkpoint& ck, const adamw<T>& opt, std::string_view prefix = "optimizer.") {
  const std::string p(prefix);
  std::vector<std::string> names;
  for (const auto& s : opt.state()) {
    names.push_back(s.name);
    ck.set_values(p + "m." + s.name, std::span<const T>(s.m));
    ck.set_values(p + "v." + s.name, std::span<const T>(s.v));
  }
  ck.set_u64(p + "steps", opt.steps());
  ck.set(p + "names", detail::names_json(names));
  ck.add_group(prefix);
}

/// Restore AdamW's step count and moments saved by save_optimizer. The options (rates,
/// schedule, decay mask) are the optimizer's own, not the checkpoint's.
template <class T>
void load_optimizer(const checkpoint& ck, adamw<T>& opt, std::string_view prefix = "optimizer.") {
  const std::string p(prefix);
  std::vector<typename adamw<T>::param_state> state;
  for (const auto& name : detail::parse_names_json(ck, p + "names"))
    state.push_back({name, ck.values<T>(p + "m." + name), ck.values<T>(p + "v." + name)});
  for (const auto& s : state)
    if (s.m.size() != s.v.size())
      RLHF_THROW(format_error("rlhf::checkpoint: " + ck.source() + ": tensors '" + p + "m." + s.name + "' and '" + p +
                              "v." + s.name + "' differ in size"));
  opt.restore(ck.get_u64(p + "steps"), std::move(state));
}

/// Store the weight average under `prefix` ("ema." by default).
template <class T>
void save_ema(checkpoint& ck, const ema<T>& avg, std::string_view prefix = "ema.") {
  const std::string p(prefix);
  std::vector<std::string> names;
  for (const auto& a : avg.averages()) {
    names.push_back(a.name);
    ck.set_values(p + a.name, std::span<const T>(a.value));
  }
  ck.set_u64(p + "updates", avg.updates());
  ck.set(p + "names", detail::names_json(names));
  ck.add_group(prefix);
}

/// Restore the weight average saved by save_ema.
template <class T>
void load_ema(const checkpoint& ck, ema<T>& avg, std::string_view prefix = "ema.") {
  const std::string p(prefix);
  std::vector<typename ema<T>::param_average> averages;
  for (const auto& name : detail::parse_names_json(ck, p + "names"))
    averages.push_back({name, ck.values<T>(p + name)});
  avg.restore(ck.get_u64(p + "updates"), std::move(averages));
}

}  // namespace rlhf
