// Tests for <rlhf/reward_head.hpp>: reward and value heads against plain loops, finite-difference
// gradients for hidden, weight and bias, overwrite / accumulate semantics, strided views,
// thread-count independence, initialisation, the reward normaliser, and argument errors.
#include <rlhf/reward_head.hpp>
#include <rlhf/tensor.hpp>

#include <doctest/doctest.h>

#include <support/views.hpp>

#include <support/finite_difference.hpp>
#include <support/random.hpp>
#include <support/tolerances.hpp>

#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

namespace {

using rlhf::test::ccube;
using rlhf::test::cmat;
using rlhf::test::cube;
using rlhf::test::cvec;
using rlhf::test::mat;
using rlhf::test::vec;

const rlhf::test::tolerance gradcheck{.rtol = 1e-3, .atol = 1e-5};

/// Loop reference in long double: ⟨hidden[b, t, :], w⟩ + bias.
template <class T>
double reference_dot(const std::vector<T>& hidden, std::ptrdiff_t tokens, std::ptrdiff_t width, std::ptrdiff_t b,
                     std::ptrdiff_t t, const std::vector<T>& w, double bias) {
  long double s = 0;
  for (std::ptrdiff_t d = 0; d < width; ++d)
    s += static_cast<long double>(hidden[static_cast<std::size_t>((b * tokens + t) * width + d)]) *
         static_cast<long double>(w[static_cast<std::size_t>(d)]);
  return static_cast<double>(s + bias);
}

}  // namespace

TEST_CASE_TEMPLATE("reward_head_forward: scores at end_index equal a plain loop, with and without bias", T, float,
                   double) {
  const std::ptrdiff_t B = 3, Tn = 5, D = 7;
  const auto hidden = rlhf::test::normal_vector<T>(B * Tn * D, 1);
  const auto weight = rlhf::test::normal_vector<T>(D, 2);
  const std::vector<T> bias{T(0.25)};
  const std::vector<std::ptrdiff_t> end{4, 0, 2};
  std::vector<T> scores(B);
  for (bool with_bias : {true, false}) {
    CAPTURE(with_bias);
    rlhf::reward_head_forward(rlhf::cpu, ccube(hidden, B, Tn, D), cvec(weight),
                              with_bias ? cvec(bias) : rlhf::vector_view<const T>{}, cvec(end), vec(scores));
    std::vector<double> expected;
    for (std::ptrdiff_t b = 0; b < B; ++b)
      expected.push_back(reference_dot(hidden, Tn, D, b, end[static_cast<std::size_t>(b)], weight,
                                       with_bias ? 0.25 : 0.0));
    RLHF_CHECK_CLOSE(scores, expected, rlhf::test::golden_tolerance<T>());
  }
}

TEST_CASE_TEMPLATE("value_head_forward: values at every position equal a plain loop", T, float, double) {
  const std::ptrdiff_t B = 2, Tn = 4, D = 9;
  const auto hidden = rlhf::test::normal_vector<T>(B * Tn * D, 3);
  const auto weight = rlhf::test::normal_vector<T>(D, 4);
  const std::vector<T> bias{T(-1.5)};
  std::vector<T> values(B * Tn);
  rlhf::value_head_forward(rlhf::cpu, ccube(hidden, B, Tn, D), cvec(weight), cvec(bias), mat(values, B, Tn));
  std::vector<double> expected;
  for (std::ptrdiff_t b = 0; b < B; ++b)
    for (std::ptrdiff_t t = 0; t < Tn; ++t) expected.push_back(reference_dot(hidden, Tn, D, b, t, weight, -1.5));
  RLHF_CHECK_CLOSE(values, expected, rlhf::test::golden_tolerance<T>());
}

TEST_CASE("reward_head_backward: gradients for hidden, weight and bias match finite differences") {
  const std::ptrdiff_t B = 3, Tn = 4, D = 5;
  auto hidden = rlhf::test::normal_vector<double>(B * Tn * D, 5);
  auto weight = rlhf::test::normal_vector<double>(D, 6);
  std::vector<double> bias{0.3};
  const std::vector<std::ptrdiff_t> end{3, 1, 1};
  const auto coef = rlhf::test::normal_vector<double>(B, 7);  // f = Σ_b coef_b · score_b
  const auto f = [&] {
    std::vector<double> scores(B);
    rlhf::reward_head_forward(rlhf::cpu, ccube(hidden, B, Tn, D), cvec(weight), cvec(bias), cvec(end), vec(scores));
    double s = 0;
    for (std::ptrdiff_t b = 0; b < B; ++b) s += coef[static_cast<std::size_t>(b)] * scores[static_cast<std::size_t>(b)];
    return s;
  };
  std::vector<double> dhidden(hidden.size(), 42.0), dweight(D, 0.0), dbias(1, 0.0);
  rlhf::reward_head_backward(rlhf::cpu, ccube(hidden, B, Tn, D), cvec(weight), cvec(end), cvec(coef),
                             cube(dhidden, B, Tn, D), vec(dweight), vec(dbias));
  RLHF_CHECK_CLOSE(dhidden, rlhf::test::numeric_gradient(f, hidden), gradcheck);
  RLHF_CHECK_CLOSE(dweight, rlhf::test::numeric_gradient(f, weight), gradcheck);
  RLHF_CHECK_CLOSE(dbias, rlhf::test::numeric_gradient(f, bias), gradcheck);
  // dhidden was overwritten: exactly zero away from the scored rows.
  for (std::ptrdiff_t b = 0; b < B; ++b)
    for (std::ptrdiff_t t = 0; t < Tn; ++t)
      if (t != end[static_cast<std::size_t>(b)])
        for (std::ptrdiff_t d = 0; d < D; ++d) CHECK(dhidden[static_cast<std::size_t>((b * Tn + t) * D + d)] == 0.0);
}

TEST_CASE("value_head_backward: gradients for hidden, weight and bias match finite differences") {
  const std::ptrdiff_t B = 2, Tn = 3, D = 4;
  auto hidden = rlhf::test::normal_vector<double>(B * Tn * D, 8);
  auto weight = rlhf::test::normal_vector<double>(D, 9);
  std::vector<double> bias{-0.7};
  const auto coef = rlhf::test::normal_vector<double>(B * Tn, 10);
  const auto f = [&] {
    std::vector<double> values(B * Tn);
    rlhf::value_head_forward(rlhf::cpu, ccube(hidden, B, Tn, D), cvec(weight), cvec(bias), mat(values, B, Tn));
    double s = 0;
    for (std::size_t i = 0; i < values.size(); ++i) s += coef[i] * values[i];
    return s;
  };
  std::vector<double> dhidden(hidden.size(), -3.0), dweight(D, 0.0), dbias(1, 0.0);
  rlhf::value_head_backward(rlhf::cpu, ccube(hidden, B, Tn, D), cvec(weight), cmat(coef, B, Tn),
                            cube(dhidden, B, Tn, D), vec(dweight), vec(dbias));
  RLHF_CHECK_CLOSE(dhidden, rlhf::test::numeric_gradient(f, hidden), gradcheck);
  RLHF_CHECK_CLOSE(dweight, rlhf::test::numeric_gradient(f, weight), gradcheck);
  RLHF_CHECK_CLOSE(dbias, rlhf::test::numeric_gradient(f, bias), gradcheck);
}

TEST_CASE_TEMPLATE("reward_head_backward: parameter grads accumulate by default, dhidden is overwritten", T, float,
                   double) {
  const std::ptrdiff_t B = 2, Tn = 3, D = 2;
  const std::vector<T> hidden{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  const std::vector<T> weight{T(0.5), T(-1)};
  const std::vector<std::ptrdiff_t> end{2, 0};
  const std::vector<T> dscores{2, -1};
  std::vector<T> dhidden(12, T(9)), dweight{T(1), T(1)}, dbias{T(1)};
  rlhf::reward_head_backward(rlhf::cpu, ccube(hidden, B, Tn, D), cvec(weight), cvec(end), cvec(dscores),
                             cube(dhidden, B, Tn, D), vec(dweight), vec(dbias));
  // dweight = 1 + 2·h[0,2,:] − 1·h[1,0,:] = 1 + 2·(5, 6) − (7, 8); dbias = 1 + 2 − 1.
  CHECK(dweight == std::vector<T>{T(4), T(5)});
  CHECK(dbias == std::vector<T>{T(2)});
  CHECK(dhidden == std::vector<T>{0, 0, 0, 0, T(1), T(-2), T(-0.5), T(1), 0, 0, 0, 0});

  // Overwrite parameters, accumulate into dhidden.
  rlhf::reward_head_backward(rlhf::cpu, ccube(hidden, B, Tn, D), cvec(weight), cvec(end), cvec(dscores),
                             cube(dhidden, B, Tn, D), vec(dweight), vec(dbias),
                             {.accumulate_parameter_grads = false, .accumulate_hidden_grad = true});
  CHECK(dweight == std::vector<T>{T(3), T(4)});
  CHECK(dbias == std::vector<T>{T(1)});
  CHECK(dhidden == std::vector<T>{0, 0, 0, 0, T(2), T(-4), T(-1), T(2), 0, 0, 0, 0});

  // Empty views skip those gradients.
  rlhf::reward_head_backward(rlhf::cpu, ccube(hidden, B, Tn, D), cvec(weight), cvec(end), cvec(dscores), {},
                             vec(dweight), {});
  CHECK(dweight == std::vector<T>{T(6), T(8)});
}

TEST_CASE_TEMPLATE("value_head_backward: accumulate options and rows with zero gradient", T, float, double) {
  const std::ptrdiff_t B = 1, Tn = 2, D = 2;
  // The padded row holds NaN: a zero incoming gradient must keep it out of dweight.
  const std::vector<T> hidden{1, 2, std::nan(""), std::nan("")};
  const std::vector<T> weight{T(2), T(3)};
  const std::vector<T> dvalues{T(0.5), T(0)};
  std::vector<T> dhidden(4, T(7)), dweight{T(1), T(1)}, dbias{T(0)};
  rlhf::value_head_backward(rlhf::cpu, ccube(hidden, B, Tn, D), cvec(weight), cmat(dvalues, B, Tn),
                            cube(dhidden, B, Tn, D), vec(dweight), vec(dbias));
  CHECK(dweight == std::vector<T>{T(1.5), T(2)});
  CHECK(dbias == std::vector<T>{T(0.5)});
  CHECK(dhidden == std::vector<T>{T(1), T(1.5), 0, 0});
  rlhf::value_head_backward(rlhf::cpu, ccube(hidden, B, Tn, D), cvec(weight), cmat(dvalues, B, Tn),
                            cube(dhidden, B, Tn, D), vec(dweight), vec(dbias),
                            {.accumulate_parameter_grads = false, .accumulate_hidden_grad = true});
  CHECK(dweight == std::vector<T>{T(0.5), T(1)});
  CHECK(dhidden == std::vector<T>{T(2), T(3), 0, 0});
}

TEST_CASE_TEMPLATE("reward and value heads: strided hidden and weight views give the contiguous results", T, float,
                   double) {
  const std::ptrdiff_t B = 2, Tn = 3, D = 4;
  const auto dense = rlhf::test::normal_vector<T>(B * Tn * D, 11);
  const auto weight = rlhf::test::normal_vector<T>(D, 12);
  const std::vector<T> bias{T(0.1)};
  const std::vector<std::ptrdiff_t> end{1, 2};
  const auto dscores = rlhf::test::normal_vector<T>(B, 13);
  const auto dvalues = rlhf::test::normal_vector<T>(B * Tn, 14);

  // Contiguous results.
  std::vector<T> scores(B), values(B * Tn), dh(dense.size()), dw(D), db(1), vdh(dense.size()), vdw(D), vdb(1);
  rlhf::reward_head_forward(rlhf::cpu, ccube(dense, B, Tn, D), cvec(weight), cvec(bias), cvec(end), vec(scores));
  rlhf::reward_head_backward(rlhf::cpu, ccube(dense, B, Tn, D), cvec(weight), cvec(end), cvec(dscores),
                             cube(dh, B, Tn, D), vec(dw), vec(db));
  rlhf::value_head_forward(rlhf::cpu, ccube(dense, B, Tn, D), cvec(weight), cvec(bias), mat(values, B, Tn));
  rlhf::value_head_backward(rlhf::cpu, ccube(dense, B, Tn, D), cvec(weight), cmat(dvalues, B, Tn),
                            cube(vdh, B, Tn, D), vec(vdw), vec(vdb));

  // The same data in two layouts: (a) every row padded to 6 elements (unit inner stride, Eigen
  // path); (b) interleaved with another tensor (inner stride 2, loop path). Weight stride 3.
  for (const std::ptrdiff_t inner : {std::ptrdiff_t{1}, std::ptrdiff_t{2}}) {
    CAPTURE(inner);
    const std::ptrdiff_t row = inner == 1 ? 6 : D * 2;
    std::vector<T> buffer(static_cast<std::size_t>(B * Tn * row), T(-99)), grad_buffer(buffer.size(), T(55));
    for (std::ptrdiff_t r = 0; r < B * Tn; ++r)
      for (std::ptrdiff_t d = 0; d < D; ++d)
        buffer[static_cast<std::size_t>(r * row + d * inner)] = dense[static_cast<std::size_t>(r * D + d)];
    const std::ptrdiff_t extents[3] = {B, Tn, D}, strides[3] = {Tn * row, row, inner};
    const rlhf::cube_view<const T> hidden(buffer.data(), extents, strides);
    const rlhf::cube_view<T> dhidden(grad_buffer.data(), extents, strides);
    std::vector<T> wbuffer(static_cast<std::size_t>(3 * D));
    for (std::ptrdiff_t d = 0; d < D; ++d) wbuffer[static_cast<std::size_t>(3 * d)] = weight[static_cast<std::size_t>(d)];
    const std::ptrdiff_t wext[1] = {D}, wstr[1] = {3};
    const rlhf::vector_view<const T> w(wbuffer.data(), wext, wstr);

    std::vector<T> s2(B), v2(B * Tn), dw2(D), db2(1);
    // Dot products may sum in another order on the loop path than in Eigen's: close, not equal.
    // Everything else is elementwise, hence bitwise equal.
    rlhf::reward_head_forward(rlhf::cpu, hidden, w, cvec(bias), cvec(end), vec(s2));
    RLHF_CHECK_CLOSE(s2, scores, rlhf::test::golden_tolerance<T>());
    rlhf::value_head_forward(rlhf::cpu, hidden, w, cvec(bias), mat(v2, B, Tn));
    RLHF_CHECK_CLOSE(v2, values, rlhf::test::golden_tolerance<T>());
    const auto gather = [&] {
      std::vector<T> g;
      for (std::ptrdiff_t b = 0; b < B; ++b)
        for (std::ptrdiff_t t = 0; t < Tn; ++t)
          for (std::ptrdiff_t d = 0; d < D; ++d) g.push_back(dhidden(b, t, d));
      return g;
    };
    rlhf::reward_head_backward(rlhf::cpu, hidden, w, cvec(end), cvec(dscores), dhidden, vec(dw2), vec(db2));
    CHECK(gather() == dh);
    RLHF_CHECK_CLOSE(dw2, dw, rlhf::test::golden_tolerance<T>());
    CHECK(db2 == db);
    std::fill(dw2.begin(), dw2.end(), T(0));
    std::fill(db2.begin(), db2.end(), T(0));
    rlhf::value_head_backward(rlhf::cpu, hidden, w, cmat(dvalues, B, Tn), dhidden, vec(dw2), vec(db2));
    CHECK(gather() == vdh);
    RLHF_CHECK_CLOSE(dw2, vdw, rlhf::test::golden_tolerance<T>());
    CHECK(db2 == vdb);
    // Elements between the strided ones are untouched.
    for (std::ptrdiff_t r = 0; r < B * Tn; ++r)
      for (std::ptrdiff_t i = 0; i < row; ++i)
        if (i % inner != 0 || i / inner >= D) CHECK(grad_buffer[static_cast<std::size_t>(r * row + i)] == T(55));
  }
}

TEST_CASE_TEMPLATE("reward and value heads: any thread count gives bitwise the same results", T, float, double) {
  const std::ptrdiff_t B = 4, Tn = 64, D = 256;  // large enough for the backend to split work
  const auto hidden = rlhf::test::normal_vector<T>(B * Tn * D, 15);
  const auto weight = rlhf::test::normal_vector<T>(D, 16);
  const auto dvalues = rlhf::test::normal_vector<T>(B * Tn, 17);
  const std::vector<T> bias{T(0.5)};
  const auto run = [&](int threads) {
    const rlhf::cpu_backend backend{.threads = threads};
    std::vector<T> values(B * Tn), dh(hidden.size()), dw(D), db(1);
    rlhf::value_head_forward(backend, ccube(hidden, B, Tn, D), cvec(weight), cvec(bias), mat(values, B, Tn));
    rlhf::value_head_backward(backend, ccube(hidden, B, Tn, D), cvec(weight), cmat(dvalues, B, Tn),
                              cube(dh, B, Tn, D), vec(dw), vec(db));
    values.insert(values.end(), dh.begin(), dh.end());
    values.insert(values.end(), dw.begin(), dw.end());
    values.insert(values.end(), db.begin(), db.end());
    return values;
  };
  const auto one = run(1);
  CHECK(run(2) == one);
  CHECK(run(3) == one);
  CHECK(run(8) == one);
}

TEST_CASE("reward_head_forward: works on rlhf::tensor, batch of one") {
  rlhf::tensor<double, 3> hidden(1, 2, 3);
  rlhf::tensor<double, 1> weight(3), bias(1), scores(1);
  rlhf::tensor<std::ptrdiff_t, 1> end(1);
  for (int d = 0; d < 3; ++d) {
    hidden(0, 1, d) = d + 1.0;
    weight(d) = 1.0;
  }
  bias(0) = 0.5;
  end(0) = 1;
  rlhf::reward_head_forward(rlhf::cpu, hidden, weight, bias, end, scores);
  CHECK(scores(0) == 6.5);
}

TEST_CASE("reward and value heads: bad arguments throw rlhf::invalid_argument naming the values") {
  std::vector<double> hidden(2 * 5 * 4, 0.0), w(4), w3(3), b2(2), s(2), s3(3), v(10), v8(8), dh(40), dh2(39);
  const std::vector<std::ptrdiff_t> end{1, 4}, end_bad{1, 5}, end_neg{-1, 0}, end3{0, 0, 0};
  const auto h = ccube(hidden, 2, 5, 4);
  const char* f = "rlhf::reward_head_forward(): ";
  CHECK_THROWS_WITH_AS(rlhf::reward_head_forward(rlhf::cpu, h, cvec(w), {}, cvec(end_bad), vec(s)),
                       (std::string(f) + "end_index[1] = 5 is outside [0, 5)").c_str(), rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::reward_head_forward(rlhf::cpu, h, cvec(w), {}, cvec(end_neg), vec(s)),
                       (std::string(f) + "end_index[0] = -1 is outside [0, 5)").c_str(), rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::reward_head_forward(rlhf::cpu, h, cvec(w), {}, cvec(end3), vec(s)),
                       (std::string(f) + "end_index is 3 but the batch size B is 2").c_str(), rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::reward_head_forward(rlhf::cpu, h, cvec(w3), {}, cvec(end), vec(s)),
                       (std::string(f) + "weight is 3 but the hidden width D is 4").c_str(), rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::reward_head_forward(rlhf::cpu, h, cvec(w), cvec(b2), cvec(end), vec(s)),
                       (std::string(f) + "bias is 2 but must be 1 (or empty for no bias)").c_str(),
                       rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::reward_head_forward(rlhf::cpu, h, cvec(w), {}, cvec(end), vec(s3)),
                       (std::string(f) + "scores is 3 but the batch size B is 2").c_str(), rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::reward_head_forward(rlhf::cpu, ccube(hidden, 0, 5, 4), cvec(w), {},
                                                 rlhf::vector_view<const std::ptrdiff_t>{}, {}),
                       (std::string(f) + "hidden is empty (0x5x4)").c_str(), rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::reward_head_backward(rlhf::cpu, h, cvec(w), cvec(end), cvec(s), cube(dh2, 2, 5, 3),
                                                  vec(w), {}),
                       "rlhf::reward_head_backward(): hidden is 2x5x4 but dhidden is 2x5x3", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::reward_head_backward(rlhf::cpu, h, cvec(w), cvec(end_bad), cvec(s), cube(dh, 2, 5, 4),
                                                  vec(w), {}),
                       "rlhf::reward_head_backward(): end_index[1] = 5 is outside [0, 5)", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::reward_head_backward(rlhf::cpu, h, cvec(w), cvec(end), cvec(s3), cube(dh, 2, 5, 4),
                                                  vec(w), {}),
                       "rlhf::reward_head_backward(): dscores is 3 but the batch size B is 2", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::reward_head_backward(rlhf::cpu, h, cvec(w), cvec(end), cvec(s), cube(dh, 2, 5, 4),
                                                  vec(w3), {}),
                       "rlhf::reward_head_backward(): dweight is 3 but the hidden width D is 4", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::reward_head_backward(rlhf::cpu, h, cvec(w), cvec(end), cvec(s), cube(dh, 2, 5, 4),
                                                  vec(w), vec(b2)),
                       "rlhf::reward_head_backward(): dbias is 2 but must be 1 (or empty for no bias)",
                       rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::value_head_forward(rlhf::cpu, h, cvec(w), {}, mat(v8, 2, 4)),
                       "rlhf::value_head_forward(): values is 2x4 but hidden is 2x5x4 (values must be 2x5)",
                       rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::value_head_backward(rlhf::cpu, h, cvec(w), cmat(v8, 4, 2), cube(dh, 2, 5, 4), vec(w), {}),
                       "rlhf::value_head_backward(): dvalues is 4x2 but hidden is 2x5x4 (dvalues must be 2x5)",
                       rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::value_head_forward(rlhf::cpu, h, cvec(w3), {}, mat(v, 2, 5)),
                       "rlhf::value_head_forward(): weight is 3 but the hidden width D is 4", rlhf::invalid_argument);
}

// ---------------------------------------------------------------------------------------------
// Initialisation

TEST_CASE("init_head: N(0, 1/sqrt(D+1)) by default, OpenRLHF 1/(D+1), zeros, fixed; bias 0; reproducible") {
  const std::ptrdiff_t D = 4095;  // 1/sqrt(D+1) = 1/64
  const auto sample_std = [](const std::vector<double>& w) {
    double mean = 0, sq = 0;
    for (double x : w) mean += x;
    mean /= static_cast<double>(w.size());
    for (double x : w) sq += (x - mean) * (x - mean);
    return std::sqrt(sq / static_cast<double>(w.size()));
  };
  std::vector<double> w(D), bias{7.0};
  rlhf::rng gen{{.seed = 123}};
  rlhf::init_head(gen, vec(w), vec(bias));
  CHECK(bias[0] == 0.0);
  CHECK(sample_std(w) == doctest::Approx(1.0 / 64).epsilon(0.05));

  rlhf::init_head(gen, vec(w), {}, {.scale = rlhf::head_init_scale::inv_width_plus_one});
  CHECK(sample_std(w) == doctest::Approx(1.0 / 4096).epsilon(0.05));
  rlhf::init_head(gen, vec(w), {}, {.scale = rlhf::head_init_scale::fixed, .std = 0.2});
  CHECK(sample_std(w) == doctest::Approx(0.2).epsilon(0.05));
  bias[0] = 3.0;
  rlhf::init_head(gen, vec(w), vec(bias), {.scale = rlhf::head_init_scale::zeros});
  CHECK(w == std::vector<double>(D, 0.0));
  CHECK(bias[0] == 0.0);

  // Same seed: same weights, and float heads are the double ones rounded.
  std::vector<double> a(16), b(16);
  std::vector<float> c(16);
  rlhf::rng g1{{.seed = 9}}, g2{{.seed = 9}}, g3{{.seed = 9}};
  rlhf::init_head(g1, vec(a), {});
  rlhf::init_head(g2, vec(b), {});
  rlhf::init_head(g3, vec(c), {});
  CHECK(a == b);
  for (std::size_t i = 0; i < 16; ++i) CHECK(c[i] == static_cast<float>(a[i]));

  CHECK_THROWS_WITH_AS(rlhf::init_head(gen, vec(w), {}, {.scale = rlhf::head_init_scale::fixed, .std = -1.0}),
                       "rlhf::init_head(): std must be finite and >= 0, got -1", rlhf::invalid_argument);
  std::vector<double> empty;
  CHECK_THROWS_WITH_AS(rlhf::init_head(gen, vec(empty), {}), "rlhf::init_head(): weight is empty (0)",
                       rlhf::invalid_argument);
}

// ---------------------------------------------------------------------------------------------
// Reward normaliser

TEST_CASE_TEMPLATE("fit_bias_to_demonstrations: demonstrations score mean 0 afterwards (InstructGPT)", T, float,
                   double) {
  std::vector<T> demos{T(1.5), T(2.5), T(-0.5), T(4.5)};
  const auto norm = rlhf::fit_bias_to_demonstrations(cvec(demos));
  CHECK(norm.gain == 1.0);
  CHECK(norm.bias == -2.0);
  norm.apply(vec(demos));
  CHECK(demos == std::vector<T>{T(-0.5), T(0.5), T(-2.5), T(2.5)});
  CHECK(norm.apply(3.0) == 1.0);
}

TEST_CASE_TEMPLATE("fit_gain_bias: lm-human-preferences population std, and OpenRLHF unbiased std", T, float,
                   double) {
  const auto samples = rlhf::test::normal_vector<T>(256, 77, 3.0);
  const auto moments = [](const std::vector<double>& x, bool unbiased) {
    double mean = 0, sq = 0;
    for (double v : x) mean += v;
    mean /= static_cast<double>(x.size());
    for (double v : x) sq += (v - mean) * (v - mean);
    return std::pair{mean, std::sqrt(sq / static_cast<double>(x.size() - (unbiased ? 1 : 0)))};
  };
  const std::vector<double> as_double(samples.begin(), samples.end());
  {
    // lm-human-preferences: gain = new_std / old_std, bias = new_mean − gain·old_mean.
    const auto norm = rlhf::fit_gain_bias(cvec(samples), {.target_mean = 0.5, .target_std = 2.0});
    const auto [mean, sd] = moments(as_double, false);
    RLHF_CHECK_SCALAR(norm.gain, 2.0 / sd, (rlhf::test::tolerance{.rtol = 1e-12}));
    RLHF_CHECK_SCALAR(norm.bias, 0.5 - norm.gain * mean, (rlhf::test::tolerance{.rtol = 1e-12}));
    std::vector<double> applied;
    for (double v : as_double) applied.push_back(norm.apply(v));
    const auto [m2, s2] = moments(applied, false);
    CHECK(m2 == doctest::Approx(0.5));
    CHECK(s2 == doctest::Approx(2.0));
  }
  {
    // OpenRLHF normalize_reward: (r − mean) / std with the unbiased std clamped at 1e-8.
    const auto norm = rlhf::fit_gain_bias(cvec(samples), {.estimator = rlhf::reward_std::unbiased, .min_std = 1e-8});
    const auto [mean, sd] = moments(as_double, true);
    for (double r : {-3.0, 0.0, 1.25}) RLHF_CHECK_SCALAR(norm.apply(r), (r - mean) / sd, (rlhf::test::tolerance{.rtol = 1e-12, .atol = 1e-15}));
  }
}

TEST_CASE("fit_gain_bias: zero spread is an error unless min_std clamps it; bad input throws") {
  // lm-human-preferences asserts a finite gain (zero std fails there); OpenRLHF clamps std at
  // 1e-8, and torch.std of a single value is NaN. We throw, clamp when min_std > 0, and throw.
  const std::vector<double> same{0.5, 0.5, 0.5}, one{1.0}, empty, bad{1.0, std::nan("")};
  CHECK_THROWS_WITH_AS(rlhf::fit_gain_bias(cvec(same)),
                       "rlhf::fit_gain_bias(): the 3 samples have standard deviation 0 (all 0.5): the gain "
                       "target_std/std is undefined; set min_std > 0 to clamp",
                       rlhf::invalid_argument);
  const auto clamped = rlhf::fit_gain_bias(cvec(same), {.estimator = rlhf::reward_std::unbiased, .min_std = 1e-8});
  CHECK(clamped.gain == 1e8);
  CHECK(clamped.apply(0.5) == 0.0);
  CHECK_THROWS_WITH_AS(rlhf::fit_gain_bias(cvec(one), {.estimator = rlhf::reward_std::unbiased, .min_std = 1e-8}),
                       "rlhf::fit_gain_bias(): the unbiased std needs at least 2 samples, got 1", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::fit_gain_bias(cvec(empty)), "rlhf::fit_gain_bias(): samples is empty (0)",
                       rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::fit_gain_bias(cvec(bad)), "rlhf::fit_gain_bias(): samples[1] is not finite (nan)",
                       rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::fit_gain_bias(cvec(same), {.target_std = 0.0}),
                       "rlhf::fit_gain_bias(): target_std must be finite and > 0, got 0", rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::fit_bias_to_demonstrations(cvec(empty)),
                       "rlhf::fit_bias_to_demonstrations(): scores is empty (0)", rlhf::invalid_argument);
}
