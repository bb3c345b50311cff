// GPU parity for the RL core: whitening and masked statistics, KL estimators, PPO policy and
// value losses, the pairwise preference loss — each CUDA overload against the CPU reference on the same inputs, at awkward
// shapes (B = 1, T = 1, T not a multiple of 32, fully masked rows), plus run-to-run bitwise
// determinism of the reductions and the workspace protocol.
#include <rlhf/kl.hpp>
#include <rlhf/ppo.hpp>
#include <rlhf/preference_loss.hpp>
#include <rlhf/whiten.hpp>

#include <doctest/doctest.h>

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

/// A device copy of a host vector, freed on scope exit.
template <class T>
struct device_buffer {
  T* data = nullptr;
  std::size_t size = 0;
  explicit device_buffer(const std::vector<T>& host) : size(host.size()) {
    REQUIRE(cudaMalloc(&data, (size > 0 ? size : 1) * sizeof(T)) == cudaSuccess);
    if (size > 0)
      REQUIRE(cudaMemcpy(data, host.data(), size * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess);
  }
  explicit device_buffer(std::size_t n) : device_buffer(std::vector<T>(n, T(-7))) {}
  device_buffer(const device_buffer&) = delete;
  ~device_buffer() { cudaFree(data); }
  std::vector<T> host() const {
    REQUIRE(cudaDeviceSynchronize() == cudaSuccess);
    std::vector<T> out(size);
    if (size > 0)
      REQUIRE(cudaMemcpy(out.data(), data, size * sizeof(T), cudaMemcpyDeviceToHost) == cudaSuccess);
    return out;
  }
  rlhf::device_view<T, 2> view(std::ptrdiff_t rows, std::ptrdiff_t cols) const {
    return rlhf::device_view<T, 2>(data, rows, cols);
  }
  rlhf::device_view<const T, 2> cview(std::ptrdiff_t rows, std::ptrdiff_t cols) const {
    return rlhf::device_view<const T, 2>(data, rows, cols);
  }
};

struct shape {
  std::ptrdiff_t rows, cols;
};
// B = 1, T = 1, T not a multiple of 32, many short rows, one long row.
const shape shapes[] = {{1, 1}, {1, 37}, {3, 129}, {300, 31}, {2, 4099}};

/// Inputs with a right-padded mask; row 1 (when present) fully masked; masked slots hold NaN
/// so that a kernel reading them would show it.
struct batch {
  std::ptrdiff_t rows, cols;
  std::vector<float> a, b, c;
  std::vector<std::uint8_t> mask;
  batch(shape s, unsigned seed) : rows(s.rows), cols(s.cols) {
    const std::size_t n = static_cast<std::size_t>(rows * cols);
    a.resize(n), b.resize(n), c.resize(n), mask.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      const auto r = static_cast<std::ptrdiff_t>(i) / cols, t = static_cast<std::ptrdiff_t>(i) % cols;
      const float x = static_cast<float>(i) + 0.1f * static_cast<float>(seed);
      a[i] = -2.0f + 0.3f * std::sin(0.37f * x);
      b[i] = -2.0f + 0.3f * std::cos(0.23f * x + 1.0f);
      c[i] = 1.5f * std::sin(0.11f * x + 2.0f);
      const std::ptrdiff_t valid = cols - (r * 7) % (cols > 3 ? cols / 3 : 1);
      mask[i] = (t < valid && !(rows > 2 && r == 1)) ? 1 : 0;
    }
  }
  rlhf::mask_view host_mask() const { return rlhf::mask_view(mask.data(), rows, cols); }
  rlhf::matrix_view<const float> host(const std::vector<float>& v) const {
    return rlhf::matrix_view<const float>(v.data(), rows, cols);
  }
};

bool close(double got, double want, double rel, double abs = 0.0) {
  if (std::isnan(want)) return std::isnan(got);
  return std::fabs(got - want) <= abs + rel * std::fabs(want);
}

void check_close(const std::vector<float>& got, const std::vector<float>& want, double rel,
                 double abs) {
  REQUIRE(got.size() == want.size());
  std::size_t bad = 0, first = 0;
  for (std::size_t i = 0; i < got.size(); ++i)
    if (!close(got[i], want[i], rel, abs)) {
      if (bad++ == 0) first = i;
    }
  INFO("first mismatch at " << first << ": got " << got[first] << ", want " << want[first]);
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE("whiten (cuda): moments, masked statistics and whitening equal the CPU reference") {
  const rlhf::cuda_backend gpu{};
  for (const shape s : shapes) {
    CAPTURE(s.rows);
    CAPTURE(s.cols);
    const batch in(s, 1);
    device_buffer<float> x(in.a);
    device_buffer<std::uint8_t> m(in.mask);
    const auto dm = m.cview(s.rows, s.cols);
    const auto cpu_m = rlhf::moments(rlhf::cpu, in.host(in.a), in.host_mask());
    const auto gpu_m = rlhf::moments(gpu, x.cview(s.rows, s.cols), dm);
    CHECK(gpu_m.count == cpu_m.count);
    CHECK(close(gpu_m.mean, cpu_m.mean, 1e-12, 1e-15));
    CHECK(close(gpu_m.variance, cpu_m.variance, 1e-11, 1e-15));
    CHECK(close(gpu_m.unmasked_sum, cpu_m.unmasked_sum, 1e-12, 1e-12));
    CHECK(close(rlhf::masked_sum(gpu, x.cview(s.rows, s.cols), dm),
                rlhf::masked_sum(rlhf::cpu, in.host(in.a), in.host_mask()), 1e-12, 1e-12));
    CHECK(close(rlhf::masked_var(gpu, x.cview(s.rows, s.cols), dm, rlhf::variance_kind::unbiased),
                rlhf::masked_var(rlhf::cpu, in.host(in.a), in.host_mask(), rlhf::variance_kind::unbiased),
                1e-11, 1e-15));
    // Without a mask.
    CHECK(close(rlhf::masked_mean(gpu, x.cview(s.rows, s.cols), {}),
                rlhf::masked_mean(rlhf::cpu, in.host(in.a), {}), 1e-12, 1e-15));

    // Per-row sums and means.
    std::vector<float> cpu_rows(static_cast<std::size_t>(s.rows));
    device_buffer<float> rows(cpu_rows.size());
    rlhf::masked_mean(rlhf::cpu, in.host(in.a), in.host_mask(),
                      rlhf::vector_view<float>(cpu_rows.data(), s.rows));
    rlhf::masked_mean(gpu, x.cview(s.rows, s.cols), dm, rlhf::device_view<float, 1>(rows.data, s.rows));
    check_close(rows.host(), cpu_rows, 1e-6, 1e-10);
    rlhf::masked_sum(rlhf::cpu, in.host(in.a), in.host_mask(),
                     rlhf::vector_view<float>(cpu_rows.data(), s.rows));
    rlhf::masked_sum(gpu, x.cview(s.rows, s.cols), dm, rlhf::device_view<float, 1>(rows.data, s.rows));
    check_close(rows.host(), cpu_rows, 1e-6, 1e-10);

    // Every option combination that changes the map.
    const rlhf::whiten_options options[] = {
        {},
        {.variance = rlhf::variance_kind::unbiased, .masked_positions = rlhf::whiten_masked::shift_like_valid},
        {.epsilon_mode = rlhf::whiten_epsilon::clamp_variance, .shift_mean = false,
         .masked_positions = rlhf::whiten_masked::keep_input},
        {.scale = false, .mean = rlhf::whiten_mean::unmasked_sum_over_masked_count},
    };
    for (const auto& o : options) {
      std::vector<float> want(in.a.size());
      const auto cpu_stats = rlhf::whiten(rlhf::cpu, in.host(in.a), in.host_mask(),
                                          rlhf::matrix_view<float>(want.data(), s.rows, s.cols), o);
      device_buffer<float> out(in.a.size());
      const auto gpu_stats = rlhf::whiten(gpu, x.cview(s.rows, s.cols), dm, out.view(s.rows, s.cols), o);
      CHECK(gpu_stats.count == cpu_stats.count);
      // The map runs in double and is rounded once: at most one float ulp apart.
      check_close(out.host(), want, 2e-7, 1e-6);
      // apply_whitening with the host moments, and in place.
      device_buffer<float> inplace(in.a);
      rlhf::apply_whitening(gpu, inplace.cview(s.rows, s.cols), dm, cpu_stats, inplace.view(s.rows, s.cols), o);
      check_close(inplace.host(), want, 2e-7, 1e-6);
    }
  }
}

TEST_CASE("whiten (cuda): a fully masked batch gives count 0 and zeros, no NaN") {
  const rlhf::cuda_backend gpu{};
  const std::vector<float> x = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f};
  const std::vector<std::uint8_t> mask(6, 0);
  device_buffer<float> dx(x), out(6);
  device_buffer<std::uint8_t> dm(mask);
  const auto m = rlhf::whiten(gpu, dx.cview(2, 3), dm.cview(2, 3), out.view(2, 3));
  CHECK(m.count == 0);
  CHECK(m.unmasked_sum == 21.0);
  for (float v : out.host()) CHECK(v == 0.0f);
}

TEST_CASE("whiten (cuda): reductions are bitwise reproducible and honour a caller workspace") {
  const rlhf::cuda_backend gpu{};
  const batch in({513, 1000}, 3);
  device_buffer<float> x(in.a);
  device_buffer<std::uint8_t> m(in.mask);
  const std::size_t bytes = rlhf::whiten_workspace_bytes(in.rows);
  void* scratch = nullptr;
  REQUIRE(cudaMalloc(&scratch, bytes) == cudaSuccess);
  const auto first = rlhf::moments(gpu, x.cview(in.rows, in.cols), m.cview(in.rows, in.cols), {scratch, bytes});
  for (int i = 0; i < 5; ++i) {
    const auto again = rlhf::moments(gpu, x.cview(in.rows, in.cols), m.cview(in.rows, in.cols));
    CHECK(std::memcmp(&again.mean, &first.mean, sizeof(double)) == 0);
    CHECK(std::memcmp(&again.variance, &first.variance, sizeof(double)) == 0);
  }
  CHECK_THROWS_AS((void)rlhf::moments(gpu, x.cview(in.rows, in.cols), m.cview(in.rows, in.cols),
                                      {scratch, bytes - 1}),
                  rlhf::invalid_argument);
  cudaFree(scratch);
}

TEST_CASE("kl (cuda): estimates, derivatives and summaries equal the CPU reference") {
  const rlhf::cuda_backend gpu{};
  const rlhf::kl_options options[] = {
      {},
      {.estimator = rlhf::kl_estimator::k2},
      {.estimator = rlhf::kl_estimator::k3, .clamp = 0.05, .precision = rlhf::kl_precision::float32},
      {.estimator = rlhf::kl_estimator::abs, .mask_before_transform = true},
  };
  for (const shape s : shapes) {
    CAPTURE(s.rows);
    CAPTURE(s.cols);
    const batch in(s, 2);
    device_buffer<float> logp(in.a), ref(in.b), grad_kl(in.c);
    device_buffer<std::uint8_t> m(in.mask);
    const auto dm = m.cview(s.rows, s.cols);
    for (const auto& o : options) {
      std::vector<float> want(in.a.size());
      rlhf::kl_estimate(rlhf::cpu, in.host(in.a), in.host(in.b), in.host_mask(),
                        rlhf::matrix_view<float>(want.data(), s.rows, s.cols), o);
      device_buffer<float> out(in.a.size());
      rlhf::kl_estimate(gpu, logp.cview(s.rows, s.cols), ref.cview(s.rows, s.cols), dm,
                        out.view(s.rows, s.cols), o);
      // k3 = (e^{−ℓ} − 1) − (−ℓ) carries an absolute error of a few ulp of 1 (see math/kl.hpp),
      // and the GPU's exp may differ from the host's by an ulp: compare with that absolute slack.
      check_close(out.host(), want, 2e-6, 1e-6);

      std::vector<float> want_grad(in.a.size());
      rlhf::kl_estimate_backward(rlhf::cpu, in.host(in.a), in.host(in.b), in.host_mask(),
                                 in.host(in.c), rlhf::matrix_view<float>(want_grad.data(), s.rows, s.cols), o);
      device_buffer<float> grad(in.a.size());
      rlhf::kl_estimate_backward(gpu, logp.cview(s.rows, s.cols), ref.cview(s.rows, s.cols), dm,
                                 grad_kl.cview(s.rows, s.cols), grad.view(s.rows, s.cols), o);
      check_close(grad.host(), want_grad, 2e-6, 2e-6);

      // Summaries of the CPU estimate (same input on both sides).
      std::vector<float> cpu_row_sums(static_cast<std::size_t>(s.rows));
      const auto cpu_summary = rlhf::summarize_kl(rlhf::cpu, in.host(want), in.host_mask(),
                                                  rlhf::vector_view<float>(cpu_row_sums.data(), s.rows));
      device_buffer<float> kl_in(want), row_sums(cpu_row_sums.size());
      const auto gpu_summary =
          rlhf::summarize_kl(gpu, kl_in.cview(s.rows, s.cols), dm,
                             rlhf::device_view<float, 1>(row_sums.data, s.rows));
      CHECK(gpu_summary.tokens == cpu_summary.tokens);
      // Double sums in another order: relative 1e-12, or 1e-10 absolute where terms cancel.
      CHECK(close(gpu_summary.mean_sequence_sum, cpu_summary.mean_sequence_sum, 1e-12, 1e-10));
      CHECK(close(gpu_summary.mean_sequence_mean, cpu_summary.mean_sequence_mean, 1e-12, 1e-10));
      CHECK(close(gpu_summary.mean_token, cpu_summary.mean_token, 1e-12, 1e-10));
      check_close(row_sums.host(), cpu_row_sums, 1e-6, 1e-7);
    }
  }
}

TEST_CASE("kl (cuda): full_kl over an odd vocabulary equals the CPU reference") {
  const rlhf::cuda_backend gpu{};
  const std::ptrdiff_t rows = 2, cols = 5, vocab = 1001;
  std::vector<double> logp(static_cast<std::size_t>(rows * cols * vocab)), ref(logp.size());
  for (std::ptrdiff_t p = 0; p < rows * cols; ++p) {
    double z1 = 0, z2 = 0;
    for (std::ptrdiff_t v = 0; v < vocab; ++v) {
      z1 += std::exp(std::sin(0.1 * static_cast<double>(v + p)));
      z2 += std::exp(std::cos(0.07 * static_cast<double>(v * 3 + p)));
    }
    for (std::ptrdiff_t v = 0; v < vocab; ++v) {
      logp[static_cast<std::size_t>(p * vocab + v)] = std::sin(0.1 * static_cast<double>(v + p)) - std::log(z1);
      ref[static_cast<std::size_t>(p * vocab + v)] = std::cos(0.07 * static_cast<double>(v * 3 + p)) - std::log(z2);
    }
  }
  logp[3] = -INFINITY;  // p = 0 contributes 0, not NaN
  std::vector<std::uint8_t> mask(static_cast<std::size_t>(rows * cols), 1);
  mask[7] = 0;
  std::vector<double> want(static_cast<std::size_t>(rows * cols));
  rlhf::full_kl(rlhf::cpu, rlhf::cube_view<const double>(logp.data(), rows, cols, vocab),
                rlhf::cube_view<const double>(ref.data(), rows, cols, vocab),
                rlhf::mask_view(mask.data(), rows, cols), rlhf::matrix_view<double>(want.data(), rows, cols));
  device_buffer<double> dl(logp), dr(ref), out(want.size());
  device_buffer<std::uint8_t> dm(mask);
  rlhf::full_kl(gpu, rlhf::device_view<const double, 3>(dl.data, rows, cols, vocab),
                rlhf::device_view<const double, 3>(dr.data, rows, cols, vocab), dm.cview(rows, cols),
                out.view(rows, cols));
  const auto got = out.host();
  for (std::size_t i = 0; i < want.size(); ++i) CHECK(close(got[i], want[i], 1e-12, 1e-15));
  CHECK(got[7] == 0.0);
}

TEST_CASE("ppo (cuda): policy loss, gradient and statistics equal the CPU reference") {
  const rlhf::cuda_backend gpu{};
  const rlhf::ppo_policy_options options[] = {
      {},
      {.clip_low = 0.1, .clip_high = 0.28, .dual_clip = 3.0, .log_ratio_clamp = 0.2,
       .reduction = rlhf::loss_reduction::sequence_mean},
      {.reduction = rlhf::loss_reduction::global_token_mean, .global_normaliser = 50.0},
      {.reduction = rlhf::loss_reduction::global_sequence_mean, .global_normaliser = 3.0},
      {.ratio_threshold = 1.0001},  // skips most batches: zero gradient
  };
  for (const shape s : shapes) {
    CAPTURE(s.rows);
    CAPTURE(s.cols);
    const batch in(s, 4);
    device_buffer<float> logp(in.a), old(in.b), adv(in.c);
    device_buffer<std::uint8_t> m(in.mask);
    for (const auto& o : options) {
      std::vector<float> want(in.a.size());
      const auto cpu = rlhf::ppo_policy_loss(
          rlhf::cpu, {.logp = in.host(in.a), .old_logp = in.host(in.b), .advantages = in.host(in.c), .mask = in.host_mask()},
          rlhf::matrix_view<float>(want.data(), s.rows, s.cols), o);
      device_buffer<float> grad(in.a.size());
      const auto got = rlhf::ppo_policy_loss(
          gpu, {.logp = logp.cview(s.rows, s.cols), .old_logp = old.cview(s.rows, s.cols),
                .advantages = adv.cview(s.rows, s.cols), .mask = m.cview(s.rows, s.cols)},
          grad.view(s.rows, s.cols), o);
      CHECK(got.tokens == cpu.tokens);
      CHECK(got.sequences == cpu.sequences);
      CHECK(got.skipped == cpu.skipped);
      CHECK(close(got.loss, cpu.loss, 1e-5, 1e-7));
      CHECK(close(got.clipfrac, cpu.clipfrac, 1e-6, 1e-7));
      CHECK(close(got.dual_clipfrac, cpu.dual_clipfrac, 1e-6, 1e-7));
      CHECK(close(got.approx_kl, cpu.approx_kl, 1e-5, 1e-9));
      CHECK(close(got.policy_kl, cpu.policy_kl, 1e-5, 1e-9));
      CHECK(close(got.ratio_mean, cpu.ratio_mean, 1e-6, 1e-7));
      CHECK(close(got.ratio_var, cpu.ratio_var, 1e-3, 1e-9));
      CHECK(close(got.ratio_max, cpu.ratio_max, 1e-6, 0.0));
      CHECK(close(got.advantages_mean, cpu.advantages_mean, 1e-5, 1e-7));
      check_close(grad.host(), want, 1e-5, 1e-9);
    }
  }
}

TEST_CASE("ppo (cuda): value loss, gradient and statistics equal the CPU reference") {
  const rlhf::cuda_backend gpu{};
  const rlhf::ppo_value_options options[] = {
      {},
      {.clip = std::nullopt},
      {.clip = 0.05, .reduction = rlhf::loss_reduction::sequence_mean},
      {.clip = 0.5, .reduction = rlhf::loss_reduction::global_token_mean, .global_normaliser = 10.0},
  };
  for (const shape s : shapes) {
    CAPTURE(s.rows);
    CAPTURE(s.cols);
    const batch in(s, 5);
    device_buffer<float> values(in.c), old(in.a), ret(in.b);
    device_buffer<std::uint8_t> m(in.mask);
    for (const auto& o : options) {
      std::vector<float> want(in.a.size());
      const auto cpu = rlhf::ppo_value_loss(
          rlhf::cpu, {.values = in.host(in.c), .old_values = in.host(in.a), .returns = in.host(in.b), .mask = in.host_mask()},
          rlhf::matrix_view<float>(want.data(), s.rows, s.cols), o);
      device_buffer<float> grad(in.a.size());
      const auto got = rlhf::ppo_value_loss(
          gpu, {.values = values.cview(s.rows, s.cols), .old_values = old.cview(s.rows, s.cols),
                .returns = ret.cview(s.rows, s.cols), .mask = m.cview(s.rows, s.cols)},
          grad.view(s.rows, s.cols), o);
      CHECK(got.tokens == cpu.tokens);
      CHECK(close(got.loss, cpu.loss, 1e-5, 1e-7));
      CHECK(close(got.clipfrac, cpu.clipfrac, 1e-6, 1e-7));
      CHECK(close(got.value_mean, cpu.value_mean, 1e-5, 1e-7));
      CHECK(close(got.value_error, cpu.value_error, 1e-5, 1e-7));
      CHECK(close(got.returns_mean, cpu.returns_mean, 1e-5, 1e-7));
      CHECK(close(got.returns_var, cpu.returns_var, 1e-4, 1e-7));
      CHECK(close(got.old_value_mean, cpu.old_value_mean, 1e-5, 1e-7));
      CHECK(close(got.old_value_var, cpu.old_value_var, 1e-4, 1e-7));
      CHECK(close(got.explained_variance, cpu.explained_variance, 1e-4, 1e-5));
      check_close(grad.host(), want, 1e-6, 1e-9);
    }
  }
}

TEST_CASE("preference_loss (cuda): pairwise loss, gradients and statistics equal the CPU reference") {
  const rlhf::cuda_backend gpu{};
  for (const std::ptrdiff_t n : {std::ptrdiff_t{1}, std::ptrdiff_t{7}, std::ptrdiff_t{1001}}) {
    CAPTURE(n);
    std::vector<float> chosen(static_cast<std::size_t>(n)), rejected(chosen.size()), margin(chosen.size());
    for (std::size_t i = 0; i < chosen.size(); ++i) {
      chosen[i] = 3.0f * std::sin(0.7f * static_cast<float>(i));
      rejected[i] = 3.0f * std::cos(0.3f * static_cast<float>(i));
      margin[i] = 0.1f * static_cast<float>(i % 3);
    }
    if (n > 1) rejected[1] = -1e4f;  // a huge gap stays finite
    device_buffer<float> dc(chosen), dr(rejected), dmargin(margin), gc(chosen.size()), gr(chosen.size());
    const rlhf::pairwise_loss_options options[] = {
        {}, {.center_coef = 0.01}, {.center_coef = 0.0, .form = rlhf::pairwise_form::log_exp}};
    for (const auto& o : options) {
      for (const bool with_margin : {false, true}) {
        std::vector<float> want_c(chosen.size()), want_r(chosen.size());
        const auto cpu = rlhf::pairwise_preference_loss(
            rlhf::cpu, rlhf::vector_view<const float>(chosen.data(), n),
            rlhf::vector_view<const float>(rejected.data(), n),
            with_margin ? rlhf::vector_view<const float>(margin.data(), n) : rlhf::vector_view<const float>{},
            rlhf::vector_view<float>(want_c.data(), n), rlhf::vector_view<float>(want_r.data(), n), o);
        const auto got = rlhf::pairwise_preference_loss(
            gpu, rlhf::device_view<const float, 1>(dc.data, n), rlhf::device_view<const float, 1>(dr.data, n),
            with_margin ? rlhf::device_view<const float, 1>(dmargin.data, n) : rlhf::device_view<const float, 1>{},
            rlhf::device_view<float, 1>(gc.data, n), rlhf::device_view<float, 1>(gr.data, n), o);
        CHECK(close(got.loss, cpu.loss, 1e-12, 1e-15));
        CHECK(got.accuracy == cpu.accuracy);
        CHECK(close(got.mean_margin, cpu.mean_margin, 1e-12, 1e-15));
        CHECK(close(got.chosen_mean, cpu.chosen_mean, 1e-12, 1e-15));
        CHECK(close(got.rejected_mean, cpu.rejected_mean, 1e-12, 1e-15));
        // Each element is evaluated in double on both sides and rounded once.
        check_close(gc.host(), want_c, 1e-6, 1e-12);
        check_close(gr.host(), want_r, 1e-6, 1e-12);
      }
    }
  }
}
