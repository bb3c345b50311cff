// tests/support/golden.hpp — read the golden files in tests/data/golden/ (see its README).
//
// Each file has `header` (sources, generator, notes) and `cases[]` with `name`, `inputs`,
// `params`, `outputs`. Floats are JSON numbers (float64 repr) or the strings "nan", "inf",
// "-inf"; masks are 0/1; a case whose reference raised has outputs.error.
#pragma once

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#ifndef RLHF_TEST_DATA_DIR
#error "RLHF_TEST_DATA_DIR must name tests/data (set by tests/CMakeLists.txt)"
#endif

namespace rlhf::test {

using json = nlohmann::json;

/// The whole golden file `name` (e.g. "trl_whiten.json").
inline const json& golden_file(const std::string& name) {
  static std::vector<std::pair<std::string, json>> cache;
  for (const auto& [n, j] : cache)
    if (n == name) return j;
  const std::string path = std::string(RLHF_TEST_DATA_DIR) + "/golden/" + name;
  std::ifstream in(path);
  if (!in) throw std::runtime_error("golden file not found: " + path);
  cache.emplace_back(name, json::parse(in));
  return cache.back().second;
}

/// The case called `case_name` in golden file `file`.
inline const json& golden_case(const std::string& file, const std::string& case_name) {
  for (const auto& c : golden_file(file).at("cases"))
    if (c.at("name") == case_name) return c;
  throw std::runtime_error("golden case not found: " + file + " / " + case_name);
}

/// Every case name in a file (tests assert each one is covered).
inline std::vector<std::string> golden_case_names(const std::string& file) {
  std::vector<std::string> names;
  for (const auto& c : golden_file(file).at("cases")) names.push_back(c.at("name"));
  return names;
}

/// One number: a JSON number or "nan" / "inf" / "-inf".
inline double number(const json& j) {
  if (j.is_number()) return j.get<double>();
  if (j.is_boolean()) return j.get<bool>() ? 1.0 : 0.0;
  const auto s = j.get<std::string>();
  if (s == "nan") return std::numeric_limits<double>::quiet_NaN();
  if (s == "inf") return std::numeric_limits<double>::infinity();
  if (s == "-inf") return -std::numeric_limits<double>::infinity();
  throw std::runtime_error("not a number in golden file: " + s);
}

/// A nested array flattened row-major, with its shape.
struct array {
  std::vector<double> values;
  std::vector<std::ptrdiff_t> shape;

  [[nodiscard]] std::ptrdiff_t rows() const { return shape.size() >= 2 ? shape[0] : 1; }
  [[nodiscard]] std::ptrdiff_t cols() const { return shape.empty() ? 1 : shape.back(); }
  [[nodiscard]] std::ptrdiff_t size() const { return static_cast<std::ptrdiff_t>(values.size()); }

  template <class T>
  [[nodiscard]] std::vector<T> as() const {
    return std::vector<T>(values.begin(), values.end());
  }
  [[nodiscard]] std::vector<std::uint8_t> as_mask() const {
    std::vector<std::uint8_t> m;
    for (double v : values) m.push_back(v != 0.0 ? 1 : 0);
    return m;
  }
};

namespace detail {
inline void flatten(const json& j, array& out, std::size_t depth) {
  if (!j.is_array()) {
    out.values.push_back(number(j));
    return;
  }
  if (out.shape.size() <= depth) out.shape.push_back(static_cast<std::ptrdiff_t>(j.size()));
  for (const auto& e : j) flatten(e, out, depth + 1);
}
}  // namespace detail

inline array to_array(const json& j) {
  array a;
  detail::flatten(j, a, 0);
  return a;
}

}  // namespace rlhf::test
