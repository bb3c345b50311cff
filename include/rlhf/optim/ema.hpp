// rlhf/optim/ema.hpp — an exponential moving average of a model's weights (InstructGPT
// Appendix C.4: "EMA of weights with decay 0.992").
//
//   e ← d·e + (1 − d)·θ        after each optimizer step; e = θ at the first update
//
//   rlhf::ema<float> avg{{.decay = 0.992}};
//   opt.step(model.parameters());
//   avg.update(model.parameters());
//   avg.swap_in(model.parameters());   // evaluate / sample with the averaged weights ...
//   avg.swap_out(model.parameters());  // ... and go back to the trained ones
//   avg.copy_to(model.parameters());   // or keep the average (the final model)
//
// The average is kept in the parameter type, per parameter, in the order of the range; every
// call must pass the same parameters (names and sizes). Host-only.
#pragma once

#include <rlhf/concepts.hpp>
#include <rlhf/config.hpp>
#include <rlhf/detail/checks.hpp>
#include <rlhf/optim/clip.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace rlhf {

struct ema_options {
  double decay = 0.992;  ///< d, in [0, 1] (InstructGPT)
};

/// Exponential moving average of parameters of type T (float or double).
template <class T>
class ema {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "rlhf::ema<T>: T must be float or double");

 public:
  using scalar_type = T;
  struct param_average {
    std::string name;
    std::vector<T> value;
    bool operator==(const param_average&) const = default;
  };

  /// Throws rlhf::invalid_argument when decay is outside [0, 1].
  explicit ema(ema_options options = {}) : options_(options) {
    detail::require(options_.decay >= 0 && options_.decay <= 1, "rlhf::ema",
                    "decay must be in [0, 1], got " + detail::number_string(options_.decay));
  }

  /// Fold the current weights into the average (the first call copies them).
  template <class R>
    requires detail::parameter_range<R, T>
  void update(R&& params) {
    if (average_.empty()) {
      for (auto&& ref : params) {
        const parameter_ref<T> p = ref;
        param_average a{std::string(p.name), std::vector<T>(static_cast<std::size_t>(p.value.extent(0)))};
        for (std::ptrdiff_t i = 0; i < p.value.extent(0); ++i) a.value[static_cast<std::size_t>(i)] = p.value(i);
        average_.push_back(std::move(a));
      }
      ++updates_;
      return;
    }
    check(params, "rlhf::ema::update()");
    const T d = static_cast<T>(options_.decay);
    const T one_minus_d = static_cast<T>(1.0 - options_.decay);
    std::size_t k = 0;
    for (auto&& ref : params) {
      const parameter_ref<T> p = ref;
      T* e = average_[k++].value.data();
      for (std::ptrdiff_t i = 0; i < p.value.extent(0); ++i) e[i] = d * e[i] + one_minus_d * p.value(i);
    }
    ++updates_;
  }

  /// Exchange the parameters' values with the average (call swap_out to undo).
  template <class R>
    requires detail::parameter_range<R, T>
  void swap_in(R&& params) {
    exchange(params, "rlhf::ema::swap_in()");
  }
  /// Undo swap_in.
  template <class R>
    requires detail::parameter_range<R, T>
  void swap_out(R&& params) {
    exchange(params, "rlhf::ema::swap_out()");
  }
  /// Overwrite the parameters' values with the average.
  template <class R>
    requires detail::parameter_range<R, T>
  void copy_to(R&& params) const {
    check(params, "rlhf::ema::copy_to()");
    std::size_t k = 0;
    for (auto&& ref : params) {
      const parameter_ref<T> p = ref;
      const T* e = average_[k++].value.data();
      for (std::ptrdiff_t i = 0; i < p.value.extent(0); ++i) p.value(i) = e[i];
    }
  }

  [[nodiscard]] const ema_options& options() const noexcept { return options_; }
  /// Updates folded in so far.
  [[nodiscard]] std::uint64_t updates() const noexcept { return updates_; }
  /// The averages, in parameter order (empty before the first update).
  [[nodiscard]] const std::vector<param_average>& averages() const noexcept { return average_; }
  /// Continue from saved state (checkpoints).
  void restore(std::uint64_t updates, std::vector<param_average> averages) {
    updates_ = updates;
    average_ = std::move(averages);
  }

 private:
  template <class R>
  void check(R& params, const char* function) const {
    detail::require(!average_.empty(), function, "no average yet: call update() first");
    std::size_t k = 0;
    for (auto&& ref : params) {
      const parameter_ref<T> p = ref;
      detail::require_lazy(k < average_.size() && average_[k].name == p.name &&
                               static_cast<std::ptrdiff_t>(average_[k].value.size()) == p.value.extent(0),
                           function, [&] {
                             return "parameter " + std::to_string(k) + " is '" + std::string(p.name) + "' of " +
                                    std::to_string(p.value.extent(0)) + " values but the average holds " +
                                    (k < average_.size() ? "'" + average_[k].name + "' of " +
                                                               std::to_string(average_[k].value.size())
                                                         : std::string("only ") + std::to_string(average_.size()) +
                                                               " parameters");
                           });
      ++k;
    }
    detail::require_lazy(k == average_.size(), function, [&] {
      return "got " + std::to_string(k) + " parameters but the average holds " + std::to_string(average_.size());
    });
  }
  template <class R>
  void exchange(R& params, const char* function) {
    check(params, function);
    std::size_t k = 0;
    for (auto&& ref : params) {
      const parameter_ref<T> p = ref;
      T* e = average_[k++].value.data();
      for (std::ptrdiff_t i = 0; i < p.value.extent(0); ++i) std::swap(e[i], p.value(i));
    }
  }

  ema_options options_;
  std::uint64_t updates_ = 0;
  std::vector<param_average> average_;
};

}  // namespace rlhf
