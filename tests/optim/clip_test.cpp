// tests/optim/clip_test.cpp — global-norm clipping: exact small cases, torch.nn.utils.
// clip_grad_norm_ (tests/data/golden/adamw.json), non-finite norms and errors.
#include <rlhf/optim/clip.hpp>

#include <doctest/doctest.h>

#include "support/golden.hpp"
#include "support/tolerances.hpp"

#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace {
template <class T>
struct grads {
  std::vector<std::string> names;
  std::vector<std::vector<T>> values, g;
  std::vector<rlhf::parameter_ref<T>> parameters() {
    std::vector<rlhf::parameter_ref<T>> r;
    for (std::size_t i = 0; i < g.size(); ++i)
      r.push_back({names[i], rlhf::vector_view<T>(values[i].data(), values[i].size()),
                   rlhf::vector_view<T>(g[i].data(), g[i].size())});
    return r;
  }
  void add(std::string name, std::vector<T> gr) {
    names.push_back(std::move(name));
    values.emplace_back(gr.size(), T(0));
    g.push_back(std::move(gr));
  }
};
}  // namespace

TEST_CASE_TEMPLATE("clip_grad_norm: one norm over all parameters, exact 3-4-5 case", T, float, double) {
  grads<T> p;
  p.add("a", {T(3)});
  p.add("b", {T(0), T(4)});
  const auto r = rlhf::clip_grad_norm(p.parameters(), 1.0);
  CHECK(r.norm == 5.0);
  CHECK(r.clipped);
  CHECK(r.finite());
  const T scale = T(1) / (T(5) + T(1e-6));
  CHECK(r.scale == static_cast<double>(scale));
  CHECK(p.g[0][0] == T(3) * scale);
  CHECK(p.g[1][1] == T(4) * scale);
  CHECK(p.g[1][0] == T(0));
}

TEST_CASE_TEMPLATE("clip_grad_norm: below the limit nothing changes", T, float, double) {
  grads<T> p;
  p.add("a", {T(0.3), T(-0.4)});
  const auto before = p.g;
  const auto r = rlhf::clip_grad_norm(p.parameters(), 0.5);  // norm 0.5 exactly: scale < 1 by 1e-6
  CHECK(r.clipped);
  grads<T> q;
  q.add("a", {T(0.3), T(-0.4)});
  const auto r2 = rlhf::clip_grad_norm(q.parameters(), 1.0);
  CHECK_FALSE(r2.clipped);
  CHECK(r2.scale == 1.0);
  CHECK(q.g == before);
  CHECK(r2.norm == doctest::Approx(0.5).epsilon(1e-7));
  // Empty parameter lists have norm 0.
  grads<T> none;
  CHECK(rlhf::clip_grad_norm(none.parameters(), 1.0).norm == 0.0);
}

TEST_CASE_TEMPLATE("clip_grad_norm: NaN or Inf norms are reported and the gradients left alone", T, float, double) {
  grads<T> p;
  p.add("a", {T(1), std::numeric_limits<T>::quiet_NaN()});
  p.add("b", {T(100)});
  auto r = rlhf::clip_grad_norm(p.parameters(), 1.0);
  CHECK(std::isnan(r.norm));
  CHECK_FALSE(r.finite());
  CHECK_FALSE(r.clipped);
  CHECK(p.g[1][0] == T(100));
  grads<T> q;
  q.add("a", {std::numeric_limits<T>::infinity(), T(1)});
  r = rlhf::clip_grad_norm(q.parameters(), 1.0);
  CHECK(std::isinf(r.norm));
  CHECK(q.g[0][1] == T(1));
}

TEST_CASE("clip_grad_norm: float grads whose squares overflow float are summed in double") {
  grads<float> p;
  p.add("a", {3e20f, 4e20f});
  const auto r = rlhf::clip_grad_norm(p.parameters(), 1.0);
  CHECK(r.finite());
  CHECK(r.norm == doctest::Approx(5e20));
  CHECK(p.g[0][0] == doctest::Approx(0.6f));
}

TEST_CASE_TEMPLATE("clip_grad_norm: equals torch.nn.utils.clip_grad_norm_", T, float, double) {
  for (const char* name : {"clip_f32_clipped", "clip_f64_clipped", "clip_f32_not_clipped"}) {
    const auto& c = rlhf::test::golden_case("adamw.json", name);
    const bool is_f32 = c.at("inputs").at("dtype") == "float32";
    if (is_f32 != std::is_same_v<T, float>) continue;
    CAPTURE(name);
    grads<T> p;
    for (const auto& [k, v] : c.at("inputs").at("grads").items()) {
      std::vector<T> g;
      for (const auto& x : v) g.push_back(static_cast<T>(rlhf::test::number(x)));
      p.add(k, g);
    }
    const auto r = rlhf::clip_grad_norm(p.parameters(), rlhf::test::number(c.at("params").at("max_norm")));
    const auto tol = rlhf::test::golden_tolerance<T>();
    RLHF_CHECK_SCALAR(r.norm, rlhf::test::number(c.at("outputs").at("norm")), tol);
    std::size_t i = 0;
    for (const auto& [k, v] : c.at("outputs").at("grads").items()) {
      CAPTURE(k);
      std::vector<double> expected;
      for (const auto& x : v) expected.push_back(rlhf::test::number(x));
      RLHF_CHECK_CLOSE(p.g[i++], expected, tol);
    }
  }
}

TEST_CASE("clip_grad_norm: max_norm must be finite and positive") {
  grads<float> p;
  p.add("a", {1.0f});
  CHECK_THROWS_WITH_AS(rlhf::clip_grad_norm(p.parameters(), 0.0),
                       "rlhf::clip_grad_norm(): max_norm must be finite and positive, got 0", rlhf::invalid_argument);
  CHECK_THROWS_AS(rlhf::clip_grad_norm(p.parameters(), std::nan("")), rlhf::invalid_argument);
  CHECK_THROWS_AS(rlhf::clip_grad_norm(p.parameters(), -1.0), rlhf::invalid_argument);
}
