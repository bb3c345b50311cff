// rlhf/train/metrics.hpp — what the trainers report each step, the JSONL metrics log, and the
// error they stop with on a NaN or Inf.
//
// Every trainer step returns its statistics as a `metrics` value: an ordered list of
// (name, number) pairs with the names TRL logs (docs/pipeline.md lists them all), e.g.
//   {"objective/kl", 4.2}, {"objective/rlhf_reward", 0.31}, {"kl_ctl/beta", 0.02}, ...
// A `metrics_log` writes one JSON object per step to a file and prints a progress line: on a
// terminal (isatty) one line rewritten in place, otherwise one line every `print_every` steps.
// The trainers never print on their own; pass a metrics_log (or any callable) as `on_step`.
//
// Numerical events: a step whose loss or gradient norm is NaN or Inf is reported in its result
// (`numerical_event`), its optimizer step is not taken, and `fit()` stops by throwing
// rlhf::numerical_error, whose message names the trainer, the step, the tensor and the value:
//   "rlhf::train::ppo_trainer: step 3: non-finite gradient of parameter 'table' (grad_norm nan)"
#pragma once

#include <rlhf/config.hpp>
#include <rlhf/error.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#define RLHF_TRAIN_HAS_ISATTY 1
#else
#define RLHF_TRAIN_HAS_ISATTY 0
#endif

namespace rlhf {

/// A trainer met a NaN or Inf in a loss or a gradient. Carries the step, the tensor's name and
/// the offending value; the message says all three.
class numerical_error : public error {
 public:
  numerical_error(const std::string& message, std::uint64_t step, std::string tensor, double value)
      : error(message), step_(step), tensor_(std::move(tensor)), value_(value) {}
  [[nodiscard]] std::uint64_t step() const noexcept { return step_; }
  [[nodiscard]] const std::string& tensor() const noexcept { return tensor_; }
  [[nodiscard]] double value() const noexcept { return value_; }

 private:
  std::uint64_t step_;
  std::string tensor_;
  double value_;
};

}  // namespace rlhf

namespace rlhf::train {

/// One step's statistics in the order they were added. Names are unique within a step.
class metrics {
 public:
  /// Adds or replaces `name`.
  void set(std::string_view name, double value) {
    for (auto& [n, v] : items_)
      if (n == name) {
        v = value;
        return;
      }
    items_.emplace_back(std::string(name), value);
  }
  /// The value of `name`, or std::nullopt.
  [[nodiscard]] std::optional<double> get(std::string_view name) const {
    for (const auto& [n, v] : items_)
      if (n == name) return v;
    return std::nullopt;
  }
  /// The value of `name`; throws rlhf::invalid_argument when it is absent.
  [[nodiscard]] double at(std::string_view name) const {
    const auto v = get(name);
    if (!v) RLHF_THROW(invalid_argument("rlhf::train::metrics::at(): no metric named '" + std::string(name) + "'"));
    return *v;
  }
  [[nodiscard]] bool contains(std::string_view name) const { return get(name).has_value(); }
  [[nodiscard]] const std::vector<std::pair<std::string, double>>& items() const noexcept { return items_; }
  [[nodiscard]] std::size_t size() const noexcept { return items_.size(); }

 private:
  std::vector<std::pair<std::string, double>> items_;
};

/// A NaN or Inf met during a step: which tensor, and its value. Reported in step results.
struct numerical_event {
  std::uint64_t step = 0;
  std::string tensor;  ///< e.g. "loss/policy", "gradient of parameter 'wte'"
  double value = 0;
  bool operator==(const numerical_event&) const = default;
};

/// The diagnostic a trainer stops with: "<trainer>: step <k>: non-finite <tensor> (<value>)"
/// (value: nan, inf, -inf).
[[nodiscard]] inline numerical_error to_error(std::string_view trainer, const numerical_event& e) {
  char value[32];
  // NaN prints as "nan" whatever its sign bit (printf would write "-nan" for some NaNs).
  if (std::isnan(e.value))
    std::snprintf(value, sizeof value, "nan");
  else
    std::snprintf(value, sizeof value, "%g", e.value);
  return numerical_error(std::string(trainer) + ": step " + std::to_string(e.step) + ": non-finite " + e.tensor +
                             " (" + value + ")",
                         e.step, e.tensor, e.value);
}

namespace detail {

inline void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (const char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

/// Shortest round-trip decimal of x; NaN and ±Inf (not JSON numbers) become the strings
/// "NaN", "Infinity", "-Infinity" as Python's json module writes them.
inline void append_json_number(std::string& out, double x) {
  if (std::isnan(x)) {
    out += "\"NaN\"";
    return;
  }
  if (std::isinf(x)) {
    out += x > 0 ? "\"Infinity\"" : "\"-Infinity\"";
    return;
  }
  char buf[32];
  for (int precision = 15; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, x);
    if (std::strtod(buf, nullptr) == x) break;
  }
  out += buf;
}

}  // namespace detail

/// One JSON object on one line (no newline): {"step": 3, "<name>": <value>, ...}.
[[nodiscard]] inline std::string to_json_line(std::uint64_t step, const metrics& m) {
  std::string out = "{\"step\": " + std::to_string(step);
  for (const auto& [name, value] : m.items()) {
    out += ", ";
    detail::append_json_string(out, name);
    out += ": ";
    detail::append_json_number(out, value);
  }
  out += '}';
  return out;
}

struct metrics_log_options {
  /// Progress lines when the stream is not a terminal: one every `print_every` steps
  /// (0 = never). On a terminal the line is rewritten every step.
  std::uint64_t print_every = 10;
  /// Metrics shown in the progress line (those present in a step), in this order.
  std::vector<std::string> progress_keys{"loss",         "accuracy",           "objective/rlhf_reward",
                                         "objective/kl", "objective/ptx_loss", "kl_ctl/beta"};
  /// Where progress goes (nullptr = nowhere).
  std::FILE* progress = stderr;
};

/// The per-step sink: one JSONL line per step to `path` (flushed each step, so a killed run
/// keeps what it logged), and a progress line. Usable directly as a trainer's on_step callback.
class metrics_log {
 public:
  /// Opens (truncates) `path`; an empty path writes no file. Throws rlhf::error when the file
  /// cannot be opened.
  explicit metrics_log(const std::string& path, metrics_log_options options = {})
      : options_(std::move(options)) {
    if (!path.empty()) {
      file_ = std::fopen(path.c_str(), "w");
      if (!file_) RLHF_THROW(error("rlhf::train::metrics_log: cannot open '" + path + "' for writing"));
    }
#if RLHF_TRAIN_HAS_ISATTY
    terminal_ = options_.progress != nullptr && ::isatty(::fileno(options_.progress)) == 1;
#endif
  }
  metrics_log(const metrics_log&) = delete;
  metrics_log& operator=(const metrics_log&) = delete;
  ~metrics_log() {
    if (terminal_ && printed_) std::fputc('\n', options_.progress);
    if (file_) std::fclose(file_);
  }

  /// Logs one step.
  void operator()(std::uint64_t step, const metrics& m) {
    if (file_) {
      const std::string line = to_json_line(step, m) + "\n";
      std::fwrite(line.data(), 1, line.size(), file_);
      std::fflush(file_);
    }
    if (!options_.progress) return;
    if (terminal_) {
      std::fprintf(options_.progress, "\r%s\033[K", progress_line(step, m).c_str());
      std::fflush(options_.progress);
      printed_ = true;
    } else if (options_.print_every > 0 && step % options_.print_every == 0) {
      std::fprintf(options_.progress, "%s\n", progress_line(step, m).c_str());
    }
  }

  /// "step 12 | loss 0.6931 | accuracy 0.5".
  [[nodiscard]] std::string progress_line(std::uint64_t step, const metrics& m) const {
    std::string line = "step " + std::to_string(step);
    for (const auto& key : options_.progress_keys)
      if (const auto v = m.get(key)) {
        char buf[48];
        std::snprintf(buf, sizeof buf, " | %s %.4g", key.c_str(), *v);
        line += buf;
      }
    return line;
  }

 private:
  metrics_log_options options_;
  std::FILE* file_ = nullptr;
  bool terminal_ = false;
  bool printed_ = false;
};

}  // namespace rlhf::train
