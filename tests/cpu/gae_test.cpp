// Tests for <rlhf/cpu/gae.hpp>: the SIMD path (W rows at a time, transposed tiles) must give
// bitwise the same advantages and returns as the scalar reference loop cpu_impl::gae_rows, for
// odd row counts, every token-count remainder, masks with holes and arbitrary nonzero bytes,
// padded row strides and any thread count.
//
// The suite's flags do not enable AVX2, so on x86-64 GCC this file turns AVX2 + FMA code
// generation on for itself to exercise the SIMD path, floating-point contraction included, and
// skips those cases on a CPU without AVX2. GCC's C++ front end does not define the ISA macros
// for `#pragma GCC target`, so the file defines the two the header tests, matching the pragma.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(__AVX2__)
#pragma GCC target("avx2,fma")
#define __AVX2__ 1
#define __FMA__ 1
#define RLHF_TEST_GAE_PRAGMA_AVX2 1
#endif

#include <rlhf/gae.hpp>

#include <doctest/doctest.h>

#include <support/random.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

bool cpu_can_run_this_file() {
#if defined(RLHF_TEST_GAE_PRAGMA_AVX2)
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return true;
#endif
}

template <class T>
bool bitwise_equal(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

enum class mask_kind { none, right_padded, holes };

/// rows×cols data stored with row stride `ld` ≥ cols (the gap holds junk that must not be read
/// into results or overwritten).
template <class T>
struct case_data {
  std::ptrdiff_t rows, cols, ld;
  std::vector<T> rewards, values;
  std::vector<std::uint8_t> mask;

  case_data(std::ptrdiff_t r, std::ptrdiff_t c, std::ptrdiff_t l, mask_kind kind, std::uint64_t seed)
      : rows(r), cols(c), ld(l) {
    const auto n = static_cast<std::size_t>(rows * ld);
    rewards = rlhf::test::normal_vector<T>(n, seed);
    values = rlhf::test::normal_vector<T>(n, seed + 1);
    if (kind == mask_kind::none) return;
    mask.assign(n, 0);
    rlhf::rng gen{{.seed = seed + 2}};
    for (std::ptrdiff_t b = 0; b < rows; ++b) {
      const auto len = static_cast<std::ptrdiff_t>(gen.uniform<double>() * static_cast<double>(cols + 1));
      for (std::ptrdiff_t t = 0; t < cols; ++t) {
        std::uint8_t m = t < len ? 1 : 0;
        if (kind == mask_kind::holes) m = static_cast<std::uint8_t>(gen.uniform<double>() < 0.3 ? 0 : 1 + (t % 200));
        mask[static_cast<std::size_t>(b * ld + t)] = m;
      }
    }
  }
  rlhf::matrix_view<const T> view(const std::vector<T>& v) const {
    const std::ptrdiff_t e[2] = {rows, cols}, s[2] = {ld, 1};
    return rlhf::matrix_view<const T>(v.data(), e, s);
  }
  rlhf::matrix_view<T> view(std::vector<T>& v) const {
    const std::ptrdiff_t e[2] = {rows, cols}, s[2] = {ld, 1};
    return rlhf::matrix_view<T>(v.data(), e, s);
  }
  rlhf::mask_view mask_view() const {
    if (mask.empty()) return {};
    const std::ptrdiff_t e[2] = {rows, cols}, s[2] = {ld, 1};
    return rlhf::mask_view(mask.data(), e, s);
  }
};

/// Scalar reference vs the public entry point (which takes the SIMD path for these views).
template <class T>
void check_case(std::ptrdiff_t rows, std::ptrdiff_t cols, std::ptrdiff_t ld, mask_kind kind, int threads,
                double gamma, double lambda) {
  CAPTURE(rows);
  CAPTURE(cols);
  CAPTURE(ld);
  CAPTURE(static_cast<int>(kind));
  CAPTURE(threads);
  CAPTURE(gamma);
  CAPTURE(lambda);
  const case_data<T> d(rows, cols, ld, kind, static_cast<std::uint64_t>(rows * 1000 + cols));
  const auto n = static_cast<std::size_t>(rows * ld);
  const T junk = T(-12345);
  std::vector<T> adv_ref(n, junk), ret_ref(n, junk), adv(n, junk), ret(n, junk);
  rlhf::cpu_impl::gae_rows<T>(d.view(d.rewards), d.view(d.values), d.mask_view(), d.view(adv_ref),
                              d.view(ret_ref), static_cast<T>(gamma), static_cast<T>(gamma * lambda), 0, rows);
  rlhf::gae(rlhf::cpu_backend{.threads = threads}, d.view(d.rewards), d.view(d.values), d.mask_view(),
            d.view(adv), d.view(ret), {.gamma = gamma, .lambda = lambda});
  CHECK(bitwise_equal(adv, adv_ref));
  CHECK(bitwise_equal(ret, ret_ref));
}

}  // namespace

TEST_CASE_TEMPLATE("cpu gae: SIMD path is bitwise the scalar loop (rows, tokens, masks)", T, float, double) {
  if (!cpu_can_run_this_file()) return;
  for (std::ptrdiff_t rows : {1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 23, 67})
    for (std::ptrdiff_t cols : {1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100})
      for (mask_kind kind : {mask_kind::none, mask_kind::right_padded, mask_kind::holes})
        check_case<T>(rows, cols, cols, kind, 1, 1.0, 0.95);
}

TEST_CASE_TEMPLATE("cpu gae: SIMD path is bitwise the scalar loop (gamma, lambda)", T, float, double) {
  if (!cpu_can_run_this_file()) return;
  for (auto [gamma, lambda] : {std::pair{1.0, 0.95}, {0.99, 0.95}, {0.9, 0.0}, {0.5, 1.0}, {0.0, 0.0}, {1.0, 1.0}})
    for (mask_kind kind : {mask_kind::none, mask_kind::holes}) check_case<T>(19, 45, 45, kind, 1, gamma, lambda);
}

TEST_CASE_TEMPLATE("cpu gae: SIMD path with row strides larger than T and any thread count", T, float, double) {
  if (!cpu_can_run_this_file()) return;
  for (int threads : {1, 2, 3, 5})
    for (std::ptrdiff_t rows : {9, 40, 67}) {
      check_case<T>(rows, 37, 41, mask_kind::right_padded, threads, 1.0, 0.95);
      check_case<T>(rows, 1024, 1024, mask_kind::right_padded, threads, 1.0, 0.95);
      check_case<T>(rows, 129, 129, mask_kind::holes, threads, 0.99, 0.95);
    }
  // Large enough (≥ 128K tokens a thread) for the SIMD path to split rows over the threads.
  for (int threads : {2, 3, 5}) {
    check_case<T>(521, 1024, 1024, mask_kind::right_padded, threads, 1.0, 0.95);
    check_case<T>(1203, 301, 307, mask_kind::holes, threads, 0.99, 0.95);
  }
}

TEST_CASE_TEMPLATE("cpu gae: strided views (scalar path) equal contiguous views (SIMD path)", T, float, double) {
  if (!cpu_can_run_this_file()) return;
  const std::ptrdiff_t rows = 13, cols = 21;
  const case_data<T> d(rows, cols, cols, mask_kind::right_padded, 7);
  // The same numbers at inner stride 2.
  std::vector<T> r2(static_cast<std::size_t>(rows * cols * 2)), v2(r2.size());
  for (std::size_t i = 0; i < d.rewards.size(); ++i) {
    r2[2 * i] = d.rewards[i];
    v2[2 * i] = d.values[i];
  }
  const std::ptrdiff_t e[2] = {rows, cols}, s[2] = {2 * cols, 2};
  std::vector<T> adv(d.rewards.size()), ret(adv.size()), adv2(adv.size() * 2), ret2(adv.size() * 2);
  rlhf::gae(rlhf::cpu, d.view(d.rewards), d.view(d.values), d.mask_view(), d.view(adv), d.view(ret));
  rlhf::gae(rlhf::cpu, rlhf::matrix_view<const T>(r2.data(), e, s), rlhf::matrix_view<const T>(v2.data(), e, s),
            d.mask_view(), rlhf::matrix_view<T>(adv2.data(), e, s), rlhf::matrix_view<T>(ret2.data(), e, s));
  for (std::size_t i = 0; i < adv.size(); ++i) {
    CHECK(std::memcmp(&adv[i], &adv2[2 * i], sizeof(T)) == 0);
    CHECK(std::memcmp(&ret[i], &ret2[2 * i], sizeof(T)) == 0);
  }
}

TEST_CASE("cpu gae: padded positions are +0 and signed zeros / NaN survive like the scalar loop") {
  if (!cpu_can_run_this_file()) return;
  const std::ptrdiff_t rows = 8, cols = 24;
  std::vector<float> rewards(rows * cols, -0.0f), values(rows * cols, -0.0f);
  rewards[5] = std::nanf("");
  values[cols + 20] = -std::numeric_limits<float>::infinity();  // masked below: must not leak
  std::vector<std::uint8_t> mask(rows * cols, 1);
  for (std::ptrdiff_t t = 18; t < cols; ++t) mask[static_cast<std::size_t>(cols + t)] = 0;
  std::vector<float> adv(rows * cols), ret(adv.size()), adv_ref(adv.size()), ret_ref(adv.size());
  const rlhf::matrix_view<const float> r(rewards.data(), rows, cols), v(values.data(), rows, cols);
  const rlhf::mask_view m(mask.data(), rows, cols);
  rlhf::cpu_impl::gae_rows<float>(r, v, m, rlhf::matrix_view<float>(adv_ref.data(), rows, cols),
                                  rlhf::matrix_view<float>(ret_ref.data(), rows, cols), 1.0f, 0.95f, 0, rows);
  rlhf::gae(rlhf::cpu, r, v, m, rlhf::matrix_view<float>(adv.data(), rows, cols),
            rlhf::matrix_view<float>(ret.data(), rows, cols));
  CHECK(bitwise_equal(adv, adv_ref));
  CHECK(bitwise_equal(ret, ret_ref));
  CHECK(std::isnan(adv[0]));
  for (std::ptrdiff_t t = 18; t < cols; ++t) CHECK(std::signbit(adv[static_cast<std::size_t>(cols + t)]) == false);
  CHECK(std::isfinite(adv[static_cast<std::size_t>(cols)]));
}
