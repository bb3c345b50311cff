// rlhf/reward_head.hpp — the linear D → 1 heads that turn a trunk's hidden states into a reward
// (one score per sequence) or values (one per position), their initialisation, and the reward
// normaliser applied before RL.
//
// Shapes: hidden (B, T, D) — the trunk's final hidden states; weight (D); bias (1) or empty
// (no bias: OpenRLHF, DeepSpeed-Chat); end_index (B); scores (B); values (B, T).
//
//   reward head  scores[b]    = ⟨hidden[b, end_index[b], :], weight⟩ + bias
//   value head   values[b, t] = ⟨hidden[b, t, :], weight⟩ + bias
//
// The scored position is an explicit index — the last token of the response, EOS included —
// never found by searching for padding (ANCHORS §3.1, §10.2). An index outside [0, T) is an
// error naming the row and the value.
//
// Backward, given dscores (B) or dvalues (B, T):
//   dhidden  = dscore ⊗ weight at the scored rows (reward head: every other row is 0), or
//              dvalues[b, t]·weight at every row (value head). Overwritten by default, so the
//              zeros are written too; accumulate_hidden_grad adds instead (a trunk shared by two
//              heads).
//   dweight  = Σ dscore·hidden[row, :],  dbias = Σ dscore — ACCUMULATED by default, like every
//              parameter gradient (PyTorch .grad); accumulate_parameter_grads = false overwrites.
// Any gradient view may be empty: that gradient is not computed. Rows whose incoming gradient
// is exactly 0 do not touch dweight (garbage in padded hidden rows cannot leak into it).
//
//   rlhf::init_head(gen, weight, bias);                                   // N(0, 1/√(D+1)), bias 0
//   rlhf::reward_head_forward(rlhf::cpu, hidden, weight, bias, end_index, scores);
//   rlhf::reward_head_backward(rlhf::cpu, hidden, weight, end_index, dscores, dhidden, dweight, dbias);
//
// Dot products and gradient sums accumulate in double; results do not depend on the thread
// count. Outputs must not alias inputs. Cost: forward O(B·D) (reward) or O(B·T·D) (value);
// backward the same plus O(B·T·D) to write (zero) dhidden.
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/config.hpp>
#include <rlhf/detail/checks.hpp>
#include <rlhf/rng.hpp>
#include <rlhf/tensor_view.hpp>

#if !defined(__CUDACC__)
#include <rlhf/cpu/reward_head.hpp>
#endif

#include <cmath>
#include <concepts>
#include <cstddef>
#include <string>
#include <type_traits>

namespace rlhf {

/// Gradient write mode of the head backward passes.
struct head_backward_options {
  /// dweight and dbias += (default: parameter gradients accumulate across micro-batches and
  /// across the losses that share the head); false overwrites them.
  bool accumulate_parameter_grads = true;
  /// dhidden += instead of = (default false: dhidden is written in full, zeros included).
  bool accumulate_hidden_grad = false;
};

/// The standard deviation of a head's initial weights, N(0, σ²); the bias starts at 0.
enum class head_init_scale {
  inv_sqrt_width_plus_one,  ///< σ = 1/√(D+1): lm-human-preferences reward head (default)
  inv_width_plus_one,       ///< σ = 1/(D+1): OpenRLHF reward model `score` head
  zeros,                    ///< all zeros: lm-human-preferences value head
  fixed,                    ///< σ = options.std: TRL `v_head_init_strategy="normal"` (0.2)
};

struct head_init_options {
  head_init_scale scale = head_init_scale::inv_sqrt_width_plus_one;
  double std = 0.2;  ///< used only with head_init_scale::fixed; finite, >= 0
};

/// r' = gain·r + bias. The InstructGPT / lm-human-preferences / OpenRLHF reward normalisations
/// are all of this form; fit one with fit_bias_to_demonstrations() or fit_gain_bias().
struct reward_normalizer {
  double gain = 1.0;
  double bias = 0.0;

  [[nodiscard]] constexpr double apply(double r) const noexcept { return gain * r + bias; }
  /// In place over a vector of scores (any stride); computed in double.
  void apply(vector_view<float> scores) const noexcept { apply_to(scores); }
  void apply(vector_view<double> scores) const noexcept { apply_to(scores); }

 private:
  template <class T>
  void apply_to(vector_view<T> scores) const noexcept {
    for (std::ptrdiff_t i = 0; i < scores.extent(0); ++i)
      scores(i) = static_cast<T>(apply(static_cast<double>(scores(i))));
  }
};

/// Which standard deviation fit_gain_bias() measures.
enum class reward_std {
  population,  ///< sqrt(E[r²] − E[r]²): lm-human-preferences (default)
  unbiased,    ///< n/(n−1) variance: OpenRLHF (torch.std), needs n ≥ 2
};

struct gain_bias_options {
  double target_mean = 0.0;  ///< the normalised rewards' mean (lm-human-preferences: 0)
  double target_std = 1.0;   ///< their standard deviation (> 0; lm-human-preferences: 1)
  reward_std estimator = reward_std::population;
  /// std is clamped to at least this (OpenRLHF: 1e-8). With the default 0 a zero std is an
  /// error, as lm-human-preferences asserts a finite gain.
  double min_std = 0.0;
};

namespace detail {

template <class T>
void check_head_parameters(const char* function, const cube_view<const T>& hidden,
                           const vector_view<const T>& weight) {
  require_not_empty(function, "hidden", hidden);
  require_extent(function, "weight", weight, 0, hidden.extent(2), "the hidden width D");
}

template <class V>
void check_bias(const char* function, const char* name, const V& bias) {
  require(bias.extent(0) <= 1, function,
          std::string(name) + " is " + shape_string(bias) + " but must be 1 (or empty for no bias)");
}

template <class T>
void check_end_index(const char* function, const cube_view<const T>& hidden,
                     const vector_view<const std::ptrdiff_t>& end_index) {
  require_extent(function, "end_index", end_index, 0, hidden.extent(0), "the batch size B");
  for (std::ptrdiff_t b = 0; b < end_index.extent(0); ++b)
    require(end_index(b) >= 0 && end_index(b) < hidden.extent(1), function,
            "end_index[" + std::to_string(b) + "] = " + std::to_string(end_index(b)) +
                " is outside [0, " + std::to_string(hidden.extent(1)) + ")");
}

template <class T>
void check_head_gradients(const char* function, const cube_view<const T>& hidden,
                          const cube_view<T>& dhidden, const vector_view<T>& dweight,
                          const vector_view<T>& dbias) {
  if (!dhidden.empty()) require_same_shape(function, "hidden", hidden, "dhidden", dhidden);
  if (!dweight.empty())
    require_extent(function, "dweight", dweight, 0, hidden.extent(2), "the hidden width D");
  check_bias(function, "dbias", dbias);
}

template <class T, class U>
void require_bt(const char* function, const char* name, const matrix_view<U>& m,
                const cube_view<const T>& hidden) {
  if (m.extent(0) != hidden.extent(0) || m.extent(1) != hidden.extent(1))
    fail(function, std::string(name) + " is " + shape_string(m) + " but hidden is " +
                       shape_string(hidden) + " (" + name + " must be " +
                       std::to_string(hidden.extent(0)) + "x" + std::to_string(hidden.extent(1)) + ")");
}

#if !defined(__CUDACC__)
template <class T>
void reward_head_forward_checked(const cpu_backend& backend, cube_view<const T> hidden,
                                 vector_view<const T> weight, vector_view<const T> bias,
                                 vector_view<const std::ptrdiff_t> end_index, vector_view<T> scores) {
  constexpr const char* function = "rlhf::reward_head_forward()";
  check_head_parameters(function, hidden, weight);
  check_bias(function, "bias", bias);
  check_end_index(function, hidden, end_index);
  require_extent(function, "scores", scores, 0, hidden.extent(0), "the batch size B");
  cpu_impl::reward_head_forward(backend, hidden, weight, bias, end_index, scores);
}

template <class T>
void reward_head_backward_checked(const cpu_backend& backend, cube_view<const T> hidden,
                                  vector_view<const T> weight,
                                  vector_view<const std::ptrdiff_t> end_index,
                                  vector_view<const T> dscores, cube_view<T> dhidden,
                                  vector_view<T> dweight, vector_view<T> dbias,
                                  const head_backward_options& options) {
  constexpr const char* function = "rlhf::reward_head_backward()";
  check_head_parameters(function, hidden, weight);
  check_end_index(function, hidden, end_index);
  require_extent(function, "dscores", dscores, 0, hidden.extent(0), "the batch size B");
  check_head_gradients(function, hidden, dhidden, dweight, dbias);
  cpu_impl::reward_head_backward(backend, hidden, weight, end_index, dscores, dhidden, dweight,
                                 dbias, options.accumulate_parameter_grads,
                                 options.accumulate_hidden_grad);
}

template <class T>
void value_head_forward_checked(const cpu_backend& backend, cube_view<const T> hidden,
                                vector_view<const T> weight, vector_view<const T> bias,
                                matrix_view<T> values) {
  constexpr const char* function = "rlhf::value_head_forward()";
  check_head_parameters(function, hidden, weight);
  check_bias(function, "bias", bias);
  require_bt(function, "values", values, hidden);
  cpu_impl::value_head_forward(backend, hidden, weight, bias, values);
}

template <class T>
void value_head_backward_checked(const cpu_backend& backend, cube_view<const T> hidden,
                                 vector_view<const T> weight, matrix_view<const T> dvalues,
                                 cube_view<T> dhidden, vector_view<T> dweight, vector_view<T> dbias,
                                 const head_backward_options& options) {
  constexpr const char* function = "rlhf::value_head_backward()";
  check_head_parameters(function, hidden, weight);
  require_bt(function, "dvalues", dvalues, hidden);
  check_head_gradients(function, hidden, dhidden, dweight, dbias);
  cpu_impl::value_head_backward(backend, hidden, weight, dvalues, dhidden, dweight, dbias,
                                options.accumulate_parameter_grads, options.accumulate_hidden_grad);
}
#endif  // !__CUDACC__

template <class T>
void init_head_checked(rng& gen, vector_view<T> weight, vector_view<T> bias,
                       const head_init_options& options) {
  constexpr const char* function = "rlhf::init_head()";
  require_not_empty(function, "weight", weight);
  check_bias(function, "bias", bias);
  const double width = static_cast<double>(weight.extent(0));
  double sigma = 0;
  switch (options.scale) {
    case head_init_scale::inv_sqrt_width_plus_one: sigma = 1.0 / std::sqrt(width + 1.0); break;
    case head_init_scale::inv_width_plus_one: sigma = 1.0 / (width + 1.0); break;
    case head_init_scale::zeros: sigma = 0.0; break;
    case head_init_scale::fixed:
      require(std::isfinite(options.std) && options.std >= 0.0, function,
              "std must be finite and >= 0, got " + number_string(options.std));
      sigma = options.std;
      break;
    default:
      fail(function, "scale must be a head_init_scale, got " +
                         std::to_string(static_cast<int>(options.scale)));
  }
  for (std::ptrdiff_t i = 0; i < weight.extent(0); ++i)
    weight(i) = sigma == 0.0 ? T(0) : static_cast<T>(sigma * gen.normal<double>());
  if (!bias.empty()) bias(0) = T(0);
}

template <class T>
double checked_mean(const char* function, const char* name, const vector_view<const T>& x) {
  require_not_empty(function, name, x);
  double sum = 0;
  for (std::ptrdiff_t i = 0; i < x.extent(0); ++i) {
    const double v = static_cast<double>(x(i));
    require(std::isfinite(v), function,
            std::string(name) + "[" + std::to_string(i) + "] is not finite (" + number_string(v) + ")");
    sum += v;
  }
  return sum / static_cast<double>(x.extent(0));
}

template <class T>
reward_normalizer fit_bias_to_demonstrations_checked(vector_view<const T> scores) {
  return {1.0, -checked_mean("rlhf::fit_bias_to_demonstrations()", "scores", scores)};
}

template <class T>
reward_normalizer fit_gain_bias_checked(vector_view<const T> samples, const gain_bias_options& options) {
  constexpr const char* function = "rlhf::fit_gain_bias()";
  require(std::isfinite(options.target_mean), function,
          "target_mean must be finite, got " + number_string(options.target_mean));
  require(std::isfinite(options.target_std) && options.target_std > 0.0, function,
          "target_std must be finite and > 0, got " + number_string(options.target_std));
  require(std::isfinite(options.min_std) && options.min_std >= 0.0, function,
          "min_std must be finite and >= 0, got " + number_string(options.min_std));
  require(options.estimator == reward_std::population || options.estimator == reward_std::unbiased, function,
          "estimator must be reward_std::population or reward_std::unbiased, got " +
              std::to_string(static_cast<int>(options.estimator)));
  const double mean = checked_mean(function, "samples", samples);
  const std::ptrdiff_t n = samples.extent(0);
  require(options.estimator == reward_std::population || n >= 2, function,
          "the unbiased std needs at least 2 samples, got " + std::to_string(n));
  double squares = 0;  // two passes: no cancellation in E[r²] − E[r]²
  for (std::ptrdiff_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(samples(i)) - mean;
    squares += d * d;
  }
  const double divisor = static_cast<double>(options.estimator == reward_std::unbiased ? n - 1 : n);
  double deviation = std::sqrt(squares / divisor);
  if (deviation < options.min_std) deviation = options.min_std;
  require(deviation > 0.0, function,
          "the " + std::to_string(n) + " samples have standard deviation 0 (all " +
              number_string(mean) + "): the gain target_std/std is undefined; set min_std > 0 to clamp");
  const double gain = options.target_std / deviation;
  return {gain, options.target_mean - gain * mean};
}

}  // namespace detail

#if !defined(__CUDACC__)
/// Reward head: scores[b] = ⟨hidden[b, end_index[b], :], weight⟩ + bias. bias (1) or empty.
inline void reward_head_forward(const cpu_backend& backend, cube_view<const float> hidden,
                                vector_view<const float> weight, vector_view<const float> bias,
                                vector_view<const std::ptrdiff_t> end_index,
                                vector_view<float> scores) {
  detail::reward_head_forward_checked<float>(backend, hidden, weight, bias, end_index, scores);
}
inline void reward_head_forward(const cpu_backend& backend, cube_view<const double> hidden,
                                vector_view<const double> weight, vector_view<const double> bias,
                                vector_view<const std::ptrdiff_t> end_index,
                                vector_view<double> scores) {
  detail::reward_head_forward_checked<double>(backend, hidden, weight, bias, end_index, scores);
}

/// Reward head backward from dscores (B): dhidden (B, T, D) nonzero only at the end_index rows
/// (overwritten unless accumulate_hidden_grad), dweight (D) and dbias (1) accumulated unless
/// accumulate_parameter_grads = false. Empty gradient views are skipped.
inline void reward_head_backward(const cpu_backend& backend, cube_view<const float> hidden,
                                 vector_view<const float> weight,
                                 vector_view<const std::ptrdiff_t> end_index,
                                 vector_view<const float> dscores, cube_view<float> dhidden,
                                 vector_view<float> dweight, vector_view<float> dbias,
                                 const head_backward_options& options = {}) {
  detail::reward_head_backward_checked<float>(backend, hidden, weight, end_index, dscores, dhidden,
                                              dweight, dbias, options);
}
inline void reward_head_backward(const cpu_backend& backend, cube_view<const double> hidden,
                                 vector_view<const double> weight,
                                 vector_view<const std::ptrdiff_t> end_index,
                                 vector_view<const double> dscores, cube_view<double> dhidden,
                                 vector_view<double> dweight, vector_view<double> dbias,
                                 const head_backward_options& options = {}) {
  detail::reward_head_backward_checked<double>(backend, hidden, weight, end_index, dscores, dhidden,
                                               dweight, dbias, options);
}

/// Value head: values[b, t] = ⟨hidden[b, t, :], weight⟩ + bias at every position (padding
/// included; the value loss masks it).
inline void value_head_forward(const cpu_backend& backend, cube_view<const float> hidden,
                               vector_view<const float> weight, vector_view<const float> bias,
                               matrix_view<float> values) {
  detail::value_head_forward_checked<float>(backend, hidden, weight, bias, values);
}
inline void value_head_forward(const cpu_backend& backend, cube_view<const double> hidden,
                               vector_view<const double> weight, vector_view<const double> bias,
                               matrix_view<double> values) {
  detail::value_head_forward_checked<double>(backend, hidden, weight, bias, values);
}

/// Value head backward from dvalues (B, T): dhidden (B, T, D) overwritten unless
/// accumulate_hidden_grad; dweight (D), dbias (1) accumulated unless
/// accumulate_parameter_grads = false. Empty gradient views are skipped.
inline void value_head_backward(const cpu_backend& backend, cube_view<const float> hidden,
                                vector_view<const float> weight, matrix_view<const float> dvalues,
                                cube_view<float> dhidden, vector_view<float> dweight,
                                vector_view<float> dbias, const head_backward_options& options = {}) {
  detail::value_head_backward_checked<float>(backend, hidden, weight, dvalues, dhidden, dweight,
                                             dbias, options);
}
inline void value_head_backward(const cpu_backend& backend, cube_view<const double> hidden,
                                vector_view<const double> weight, matrix_view<const double> dvalues,
                                cube_view<double> dhidden, vector_view<double> dweight,
                                vector_view<double> dbias, const head_backward_options& options = {}) {
  detail::value_head_backward_checked<double>(backend, hidden, weight, dvalues, dhidden, dweight,
                                              dbias, options);
}
#endif  // !__CUDACC__

/// Initialises a head: weight (D) ~ N(0, σ²) from `gen` (σ per options.scale), bias (1, or
/// empty) = 0. Draws D normals in index order (none for zeros), in double then rounded, so
/// float and double heads from the same seed agree.
inline void init_head(rng& gen, vector_view<float> weight, vector_view<float> bias,
                      const head_init_options& options = {}) {
  detail::init_head_checked<float>(gen, weight, bias, options);
}
inline void init_head(rng& gen, vector_view<double> weight, vector_view<double> bias,
                      const head_init_options& options = {}) {
  detail::init_head_checked<double>(gen, weight, bias, options);
}

/// InstructGPT: a bias so that the labeller demonstrations score mean 0: gain 1,
/// bias = −mean(scores). Scores must be finite and non-empty.
inline reward_normalizer fit_bias_to_demonstrations(vector_view<const float> scores) {
  return detail::fit_bias_to_demonstrations_checked<float>(scores);
}
inline reward_normalizer fit_bias_to_demonstrations(vector_view<const double> scores) {
  return detail::fit_bias_to_demonstrations_checked<double>(scores);
}

/// lm-human-preferences `set_reward_norm`: gain and bias that map the samples' mean ± std to
/// target_mean ± target_std: gain = target_std / std, bias = target_mean − gain·mean.
/// OpenRLHF's (r − mean) / std is {.estimator = reward_std::unbiased, .min_std = 1e-8}.
inline reward_normalizer fit_gain_bias(vector_view<const float> samples,
                                       const gain_bias_options& options = {}) {
  return detail::fit_gain_bias_checked<float>(samples, options);
}
inline reward_normalizer fit_gain_bias(vector_view<const double> samples,
                                       const gain_bias_options& options = {}) {
  return detail::fit_gain_bias_checked<double>(samples, options);
}

#if !defined(__CUDACC__)
/// Reached only from a host compiler: CUDA overloads are compiled by nvcc.
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void reward_head_forward(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::reward_head_forward(cuda_backend, ...) needs nvcc: call it from a .cu file "
                "that includes <rlhf/reward_head.hpp>");
}
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void reward_head_backward(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::reward_head_backward(cuda_backend, ...) needs nvcc: call it from a .cu file "
                "that includes <rlhf/reward_head.hpp>");
}
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void value_head_forward(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::value_head_forward(cuda_backend, ...) needs nvcc: call it from a .cu file "
                "that includes <rlhf/reward_head.hpp>");
}
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void value_head_backward(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::value_head_backward(cuda_backend, ...) needs nvcc: call it from a .cu file "
                "that includes <rlhf/reward_head.hpp>");
}
#else
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void reward_head_forward(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::reward_head_forward(cuda_backend, ...) is not implemented for the CUDA "
                "backend yet");
}
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void reward_head_backward(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::reward_head_backward(cuda_backend, ...) is not implemented for the CUDA "
                "backend yet");
}
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void value_head_forward(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::value_head_forward(cuda_backend, ...) is not implemented for the CUDA "
                "backend yet");
}
template <class B, class... Args>
  requires std::same_as<std::remove_cvref_t<B>, cuda_backend>
void value_head_backward(B&&, Args&&...) {
  static_assert(detail::dependent_false<B>,
                "rlhf::value_head_backward(cuda_backend, ...) is not implemented for the CUDA "
                "backend yet");
}
#endif

}  // namespace rlhf
