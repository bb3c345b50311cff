// tests/optim/ema_test.cpp — the weight average: the recurrence, swap_in/swap_out, copy_to,
// restore and errors.
#include <rlhf/optim/ema.hpp>

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace {
template <class T>
struct toy {
  using scalar_type = T;
  std::vector<std::string> names{"w", "b"};
  std::vector<std::vector<T>> value{{T(1), T(2), T(3)}, {T(-1)}};
  std::vector<std::vector<T>> grad{{T(0), T(0), T(0)}, {T(0)}};
  std::vector<rlhf::parameter_ref<T>> parameters() {
    std::vector<rlhf::parameter_ref<T>> r;
    for (std::size_t i = 0; i < value.size(); ++i)
      r.push_back({names[i], rlhf::vector_view<T>(value[i].data(), value[i].size()),
                   rlhf::vector_view<T>(grad[i].data(), grad[i].size())});
    return r;
  }
};
}  // namespace

TEST_CASE_TEMPLATE("ema: e = d*e + (1-d)*theta, starting from the first weights", T, float, double) {
  toy<T> m;
  rlhf::ema<T> avg{{.decay = 0.5}};
  CHECK(avg.options().decay == 0.5);
  avg.update(m.parameters());
  CHECK(avg.updates() == 1);
  CHECK(avg.averages()[0].value == std::vector<T>{T(1), T(2), T(3)});
  m.value[0] = {T(3), T(4), T(5)};
  m.value[1] = {T(1)};
  avg.update(m.parameters());
  CHECK(avg.averages()[0].value == std::vector<T>{T(2), T(3), T(4)});
  CHECK(avg.averages()[1].value == std::vector<T>{T(0)});
  // the paper's decay on a constant weight stays put; on a step it approaches geometrically
  rlhf::ema<T> paper;
  toy<T> k;
  paper.update(k.parameters());
  k.value[1][0] = T(0);
  for (int i = 0; i < 10; ++i) paper.update(k.parameters());
  CHECK(paper.averages()[0].value[0] == T(1));
  CHECK(static_cast<double>(paper.averages()[1].value[0]) == doctest::Approx(-std::pow(0.992, 10)).epsilon(1e-6));
}

TEST_CASE("ema: swap_in / swap_out exchange, copy_to overwrites") {
  toy<float> m;
  rlhf::ema<float> avg{{.decay = 0.0}};  // the average is the last update
  avg.update(m.parameters());
  m.value[0] = {7, 8, 9};
  avg.swap_in(m.parameters());
  CHECK(m.value[0] == std::vector<float>{1, 2, 3});
  avg.swap_out(m.parameters());
  CHECK(m.value[0] == std::vector<float>{7, 8, 9});
  avg.copy_to(m.parameters());
  CHECK(m.value[0] == std::vector<float>{1, 2, 3});
  // restore continues exactly
  rlhf::ema<float> again{{.decay = 0.0}};
  again.restore(avg.updates(), avg.averages());
  CHECK(again.averages() == avg.averages());
  CHECK(again.updates() == 1);
}

TEST_CASE("ema: errors") {
  CHECK_THROWS_WITH_AS(rlhf::ema<float>({.decay = 1.5}), "rlhf::ema: decay must be in [0, 1], got 1.5",
                       rlhf::invalid_argument);
  toy<float> m;
  rlhf::ema<float> avg;
  CHECK_THROWS_WITH_AS(avg.swap_in(m.parameters()), "rlhf::ema::swap_in(): no average yet: call update() first",
                       rlhf::invalid_argument);
  avg.update(m.parameters());
  m.names[1] = "c";
  CHECK_THROWS_WITH_AS(avg.update(m.parameters()),
                       "rlhf::ema::update(): parameter 1 is 'c' of 1 values but the average holds 'b' of 1",
                       rlhf::invalid_argument);
  m.names[1] = "b";
  m.names.push_back("x");
  m.value.push_back({1});
  m.grad.push_back({0});
  CHECK_THROWS_AS(avg.copy_to(m.parameters()), rlhf::invalid_argument);
}
