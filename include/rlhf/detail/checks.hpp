// rlhf/detail/checks.hpp — argument checks shared by the entry points (private).
//
// Each check throws rlhf::invalid_argument with a message that starts with the qualified
// function and names the arguments and their values, before any output is written.
#pragma once

#include <rlhf/config.hpp>
#include <rlhf/error.hpp>
#include <rlhf/tensor_view.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <type_traits>

namespace rlhf::detail {

template <class>
inline constexpr bool dependent_false = false;

[[noreturn]] inline void fail(std::string_view function, const std::string& what) {
  std::string message(function);
  message += ": ";
  message += what;
  RLHF_THROW(invalid_argument(message));
}

/// Shortest text that reads back to the same double ("0.2", "1e-08", "nan").
inline std::string number_string(double x) {
  char buffer[32];
  for (int precision = 6; precision <= 17; ++precision) {
    std::snprintf(buffer, sizeof buffer, "%.*g", precision, x);
    if (std::isnan(x) || std::strtod(buffer, nullptr) == x) break;
  }
  return buffer;
}

/// "rlhf::gae(): rewards is 4x8 but values is 4x7"
template <class A, class B>
void require_same_shape(std::string_view function, std::string_view name_a, const A& a,
                        std::string_view name_b, const B& b) {
  if (!same_shape(a, b))
    fail(function, std::string(name_a) + " is " + shape_string(a) + " but " + std::string(name_b) +
                       " is " + shape_string(b));
}

/// "rlhf::whiten(): values is empty (0x8)"
template <class A>
void require_not_empty(std::string_view function, std::string_view name, const A& a) {
  if (a.empty()) fail(function, std::string(name) + " is empty (" + shape_string(a) + ")");
}

/// "rlhf::shape_rewards(): end_index has 3 entries but logp has 4 rows"
template <class A>
void require_extent(std::string_view function, std::string_view name, const A& a, std::size_t dim,
                    std::ptrdiff_t expected, std::string_view expected_what) {
  if (a.extent(dim) != expected)
    fail(function, std::string(name) + " is " + shape_string(a) + " but " +
                       std::string(expected_what) + " is " + std::to_string(expected));
}

/// Option values: "rlhf::ppo_policy_loss(): clip_low must be in [0, 1), got 1.5"
inline void require(bool condition, std::string_view function, const std::string& what) {
  if (!condition) fail(function, what);
}

/// The same, with the message built only when the check fails (for checks on hot paths):
/// require_lazy(x >= 0, function, [&] { return "x must be ... got " + number_string(x); })
template <class MessageBuilder>
  requires std::is_invocable_r_v<std::string, MessageBuilder>
void require_lazy(bool condition, std::string_view function, MessageBuilder&& build_message) {
  if (!condition) fail(function, build_message());
}

}  // namespace rlhf::detail
