// Tests for <rlhf/cpu/whiten.hpp>'s AVX2 float row kernels: moments and whitened values against
// the same computation in double on the float data, for row lengths around the vector width
// and the 128-element mask blocks, every mask pattern and masked-position mode, NaN at masked
// positions, in-place use, strided views and thread counts (same bits).
//
// The suite's flags do not enable AVX2, so on x86-64 GCC this file turns AVX2 + FMA code
// generation on for itself (as tests/cpu/gae_test.cpp does) and skips on a CPU without them.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__AVX2__)
#pragma GCC target("avx2,fma")
#define __AVX2__ 1
#define __FMA__ 1
#define RLHF_TEST_WHITEN_PRAGMA_AVX2 1
#endif

#include <rlhf/whiten.hpp>

#include <doctest/doctest.h>

#include <support/random.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__)

namespace {

bool cpu_can_run_this_file() {
#if defined(RLHF_TEST_WHITEN_PRAGMA_AVX2)
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return true;
#endif
}

enum class mask_kind { none, right_padded, holes, empty };

struct data {
  std::ptrdiff_t rows, cols;
  std::vector<float> x;
  std::vector<std::uint8_t> mask;
  data(std::ptrdiff_t r, std::ptrdiff_t c, mask_kind kind, std::uint64_t seed, double offset)
      : rows(r), cols(c), x(rlhf::test::normal_vector<float>(static_cast<std::size_t>(r * c), seed, 2.0)) {
    for (auto& v : x) v += static_cast<float>(offset);
    if (kind == mask_kind::none) return;
    mask.assign(x.size(), 0);
    rlhf::rng gen{{.seed = seed + 1}};
    for (std::ptrdiff_t b = 0; b < rows; ++b) {
      const auto len = static_cast<std::ptrdiff_t>(gen.uniform<double>() * static_cast<double>(cols + 1));
      for (std::ptrdiff_t t = 0; t < cols; ++t) {
        auto& m = mask[static_cast<std::size_t>(b * cols + t)];
        if (kind == mask_kind::right_padded) m = t < len ? 1 : 0;
        if (kind == mask_kind::holes) m = static_cast<std::uint8_t>(gen.uniform<double>() < 0.25 ? 0 : 1 + t % 250);
      }
    }
  }
  rlhf::mask_view mview() const { return mask.empty() ? rlhf::mask_view{} : rlhf::mask_view(mask.data(), rows, cols); }
  bool valid(std::size_t i) const { return mask.empty() || mask[i] != 0; }
};

/// Two-pass moments straight from the definition, in long double.
rlhf::masked_moments reference_moments(const data& d) {
  long double n = 0, s = 0, all = 0;
  for (std::size_t i = 0; i < d.x.size(); ++i) {
    all += d.x[i];
    if (d.valid(i)) {
      n += 1;
      s += d.x[i];
    }
  }
  rlhf::masked_moments m;
  m.count = static_cast<std::int64_t>(n);
  m.unmasked_sum = static_cast<double>(all);
  if (n == 0) return m;
  const long double mean = s / n;
  long double q = 0;
  for (std::size_t i = 0; i < d.x.size(); ++i)
    if (d.valid(i)) q += (d.x[i] - mean) * (d.x[i] - mean);
  m.mean = static_cast<double>(mean);
  m.variance = static_cast<double>(q / n);
  return m;
}

bool near(double a, double b, double rtol, double atol) { return std::fabs(a - b) <= atol + rtol * std::fabs(b); }

void check_case(std::ptrdiff_t rows, std::ptrdiff_t cols, mask_kind kind, double offset, std::uint64_t seed) {
  CAPTURE(rows);
  CAPTURE(cols);
  CAPTURE(static_cast<int>(kind));
  CAPTURE(offset);
  data d(rows, cols, kind, seed, offset);
  const auto expected = reference_moments(d);
  // Garbage at masked positions reaches only the unmasked sum (by definition).
  if (!d.mask.empty())
    for (std::size_t i = 0; i < d.x.size(); ++i)
      if (!d.valid(i) && i % 3 == 0) d.x[i] = std::numeric_limits<float>::quiet_NaN();
  const bool garbage = !d.mask.empty() &&
                       std::any_of(d.x.begin(), d.x.end(), [](float v) { return std::isnan(v); });
  const rlhf::matrix_view<const float> x(d.x.data(), rows, cols);
  const auto m = rlhf::moments(rlhf::cpu, x, d.mview());
  CHECK(m.count == expected.count);
  CHECK(near(m.mean, expected.mean, 1e-13, 1e-13));
  CHECK(near(m.variance, expected.variance, 1e-12, 1e-13));
  if (!garbage) CHECK(near(m.unmasked_sum, expected.unmasked_sum, 1e-13, 1e-9));
  for (auto mode : {rlhf::whiten_masked::zero, rlhf::whiten_masked::shift_like_valid, rlhf::whiten_masked::keep_input})
    for (auto variance : {rlhf::variance_kind::population, rlhf::variance_kind::unbiased}) {
      const rlhf::whiten_options o{.variance = variance, .masked_positions = mode};
      std::vector<float> out(d.x.size(), -5.0f), in_place = d.x;
      rlhf::whiten(rlhf::cpu, x, d.mview(), rlhf::matrix_view<float>(out.data(), rows, cols), o);
      rlhf::whiten(rlhf::cpu, rlhf::matrix_view<const float>(in_place.data(), rows, cols), d.mview(),
                   rlhf::matrix_view<float>(in_place.data(), rows, cols), o);
      CHECK(std::memcmp(out.data(), in_place.data(), out.size() * sizeof(float)) == 0);
      const auto c = rlhf::math::whitening_coefficients(m, o.variance, o.epsilon, o.epsilon_mode, o.mean,
                                                        o.shift_mean, o.scale);
      std::size_t bad = 0;
      for (std::size_t i = 0; i < out.size(); ++i) {
        const double v = static_cast<double>(d.x[i]);
        float want;
        if (m.count == 0)
          want = mode == rlhf::whiten_masked::keep_input ? d.x[i] : 0.0f;
        else if (!d.valid(i) && mode == rlhf::whiten_masked::zero)
          want = 0.0f;
        else if (!d.valid(i) && mode == rlhf::whiten_masked::keep_input)
          want = d.x[i];
        else
          want = static_cast<float>(std::fma(v - c.center, c.rstd, c.add_back));
        const bool same = (std::isnan(want) && std::isnan(out[i])) || out[i] == want;
        bad += same ? 0 : 1;
      }
      CHECK(bad == 0);
    }
}

}  // namespace

TEST_CASE("cpu whiten: vector kernels match the definition (lengths, masks, modes, offsets)") {
  if (!cpu_can_run_this_file()) return;
  std::uint64_t seed = 1;
  for (std::ptrdiff_t cols : {1, 7, 8, 9, 127, 128, 129, 256, 300, 1024})
    for (mask_kind kind : {mask_kind::none, mask_kind::right_padded, mask_kind::holes, mask_kind::empty})
      for (double offset : {0.0, 1e4}) check_case(5, cols, kind, offset, seed++);
}

TEST_CASE("cpu whiten: strided views and any thread count give the same bits") {
  if (!cpu_can_run_this_file()) return;
  const std::ptrdiff_t rows = 67, cols = 509;  // ≥ 16K elements a thread: rows are split
  data d(rows, cols, mask_kind::right_padded, 77, 3.0);
  std::vector<float> x2(d.x.size() * 2), out2(d.x.size() * 2, 9.0f);
  std::vector<std::uint8_t> m2(d.x.size() * 2);
  for (std::size_t i = 0; i < d.x.size(); ++i) {
    x2[2 * i] = d.x[i];
    m2[2 * i] = d.mask[i];
  }
  const std::ptrdiff_t e[2] = {rows, cols}, s[2] = {2 * cols, 2};
  const rlhf::whiten_options o{.variance = rlhf::variance_kind::unbiased,
                               .masked_positions = rlhf::whiten_masked::shift_like_valid};
  std::vector<float> a(d.x.size()), b(d.x.size());
  const auto ma = rlhf::whiten(rlhf::cpu, rlhf::matrix_view<const float>(d.x.data(), rows, cols), d.mview(),
                               rlhf::matrix_view<float>(a.data(), rows, cols), o);
  const auto mb = rlhf::whiten(rlhf::cpu_backend{.threads = 3}, rlhf::matrix_view<const float>(d.x.data(), rows, cols),
                               d.mview(), rlhf::matrix_view<float>(b.data(), rows, cols), o);
  const auto mc = rlhf::whiten(rlhf::cpu, rlhf::matrix_view<const float>(x2.data(), e, s), rlhf::mask_view(m2.data(), e, s),
                               rlhf::matrix_view<float>(out2.data(), e, s), o);
  CHECK(ma.mean == mb.mean);
  CHECK(ma.variance == mb.variance);
  CHECK(ma.mean == mc.mean);
  CHECK(ma.variance == mc.variance);
  CHECK(ma.unmasked_sum == mc.unmasked_sum);
  CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
  std::size_t differ = 0;
  for (std::size_t i = 0; i < a.size(); ++i) differ += out2[2 * i] != a[i] ? 1 : 0;
  CHECK(differ == 0);
  CHECK(out2[1] == 9.0f);
}

#endif
