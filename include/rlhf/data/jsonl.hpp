// rlhf/data/jsonl.hpp — JSON Lines input shared by the dataset readers.
//
// Every reader of rlhf/data/ turns a JSONL file (or text already in memory) into records, one per
// line, and never drops a line silently: a line that is not valid JSON, or lacks a field, is
// either an error (strict mode: rlhf::format_error naming the file, the line number and what is
// wrong) or skipped and recorded in the result's `skipped` list (the default), so the caller can
// print how many lines were lost and why. Blank lines are ignored; a UTF-8 byte-order mark at the
// start of the file is allowed.
#pragma once

#include <rlhf/config.hpp>
#include <rlhf/error.hpp>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rlhf::data {

using json = nlohmann::json;

struct read_options {
  bool strict = false;  ///< true: the first bad line throws format_error; false: skip and count it
};

/// A line that was not turned into a record, and why.
struct skipped_line {
  std::size_t line = 0;  ///< 1-based
  std::string reason;
};

template <class Record>
struct read_result {
  std::vector<Record> records;
  std::vector<skipped_line> skipped;
  std::size_t lines = 0;  ///< non-blank lines seen
};

/// What a record parser returns: the record, or the reason the line is bad.
template <class Record>
struct parsed {
  std::optional<Record> record;
  std::string error;

  static parsed ok(Record r) { return {std::move(r), {}}; }
  static parsed bad(std::string why) { return {std::nullopt, std::move(why)}; }
};

namespace detail {
inline std::string read_file(const std::filesystem::path& path, const char* function) {
  std::ifstream in(path, std::ios::binary);
  if (!in) RLHF_THROW(format_error(std::string(function) + ": cannot open " + path.string()));
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}
}  // namespace detail

/// Calls parse(const json&) -> parsed<Record> on every non-blank line of `text`.
/// `source` names the input in messages ("train.jsonl").
template <class Record, class Parse>
read_result<Record> read_jsonl_text(std::string_view text, std::string_view source, Parse parse,
                                    const read_options& options = {}) {
  read_result<Record> result;
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
  std::size_t line_number = 0;
  while (!text.empty()) {
    const std::size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view{} : text.substr(end + 1);
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
    ++result.lines;
    std::string why;
    const json value = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (value.is_discarded()) {
      why = "not valid JSON";
    } else if (!value.is_object()) {
      why = std::string("expected a JSON object, got ") + value.type_name();
    } else {
      parsed<Record> p = parse(value);
      if (p.record) {
        result.records.push_back(std::move(*p.record));
        continue;
      }
      why = std::move(p.error);
    }
    if (options.strict)
      RLHF_THROW(format_error(std::string(source) + ":" + std::to_string(line_number) + ": " + why));
    result.skipped.push_back({line_number, std::move(why)});
  }
  return result;
}

template <class Record, class Parse>
read_result<Record> read_jsonl_file(const std::filesystem::path& path, Parse parse,
                                    const read_options& options = {}) {
  const std::string text = detail::read_file(path, "rlhf::data::read_jsonl_file()");
  return read_jsonl_text<Record>(text, path.string(), std::move(parse), options);
}

/// The string field `key` of `object`, or nullptr when missing or not a string.
inline const std::string* string_field(const json& object, const char* key) {
  const auto it = object.find(key);
  if (it == object.end() || !it->is_string()) return nullptr;
  return it->template get_ptr<const std::string*>();
}

/// "missing string field \"prompt\"" or "field \"prompt\" is a number, expected a string".
inline std::string field_problem(const json& object, const char* key, const char* expected) {
  const auto it = object.find(key);
  if (it == object.end()) return std::string("missing field \"") + key + "\"";
  return std::string("field \"") + key + "\" is " + it->type_name() + ", expected " + expected;
}

}  // namespace rlhf::data
