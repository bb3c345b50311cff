// tests/optim/adamw_test.cpp — AdamW against torch.optim.AdamW (tests/data/golden/adamw.json),
// the Optimizer concept, the weight-decay masks, the schedule inside the optimizer and errors.
#include <rlhf/concepts.hpp>
#include <rlhf/optim/adamw.hpp>

#include <doctest/doctest.h>

#include "support/named_tensors.hpp"

#include "support/golden.hpp"
#include "support/random.hpp"
#include "support/tolerances.hpp"

#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace {

/// A toy Trainable model: named flat tensors with shapes.
template <class T>
using toy_model = rlhf::test::named_tensors<T>;

static_assert(rlhf::Trainable<toy_model<float>>);
static_assert(rlhf::Optimizer<rlhf::adamw<float>, toy_model<float>>);
static_assert(rlhf::Optimizer<rlhf::adamw<double>, toy_model<double>>);
// A near miss: an optimizer of doubles does not step a model of floats.
static_assert(!rlhf::Optimizer<rlhf::adamw<double>, toy_model<float>>);

using rlhf::test::golden_case;
using rlhf::test::json;

template <class T>
std::vector<T> numbers(const json& j) {
  std::vector<T> v;
  for (const auto& x : j) v.push_back(static_cast<T>(rlhf::test::number(x)));
  return v;
}

/// Run a golden AdamW case, CHECKing parameters and both moments after every step. float32:
/// within 2 ulp relative or 4e-9 absolute (a few elements differ by a few ulp, see adamw.hpp);
/// float64: equal to 1e-15 (bitwise in practice).
template <class T>
void run_golden(const std::string& name, double rtol, double atol) {
  const json& c = golden_case("adamw.json", name);
  const json& in = c.at("inputs");
  const json& par = c.at("params");
  toy_model<T> model;
  for (const auto& n : in.at("names")) {
    const std::string s = n.get<std::string>();
    model.tensors.push_back({s, in.at("shapes").at(s).get<std::vector<std::int64_t>>(),
                             numbers<T>(in.at("params").at(s)), {}});
    model.tensors.back().grad.assign(model.tensors.back().value.size(), T(0));
  }
  std::vector<std::string> no_decay = par.at("no_decay").get<std::vector<std::string>>();
  rlhf::adamw<T> opt{{.lr = par.at("lr").get<double>(),
                      .beta1 = par.at("beta1").get<double>(),
                      .beta2 = par.at("beta2").get<double>(),
                      .eps = par.at("eps").get<double>(),
                      .weight_decay = par.at("weight_decay").get<double>(),
                      .decays = [no_decay](std::string_view n) {
                        for (const auto& x : no_decay)
                          if (x == n) return false;
                        return true;
                      }}};
  const auto steps = par.at("steps").get<std::size_t>();
  const rlhf::test::tolerance tol{.rtol = rtol, .atol = atol};
  for (std::size_t s = 0; s < steps; ++s) {
    for (auto& t : model.tensors) t.grad = numbers<T>(in.at("grads").at(s).at(t.name));
    opt.step(model.parameters());
    CHECK(opt.steps() == s + 1);
    const json& expected = c.at("outputs").at("steps").at(s);
    for (std::size_t i = 0; i < model.tensors.size(); ++i) {
      const auto& t = model.tensors[i];
      CAPTURE(name);
      CAPTURE(s);
      CAPTURE(t.name);
      RLHF_CHECK_CLOSE(t.value, numbers<double>(expected.at("params").at(t.name)), tol);
      RLHF_CHECK_CLOSE(opt.state()[i].m, numbers<double>(expected.at("exp_avg").at(t.name)), tol);
      RLHF_CHECK_CLOSE(opt.state()[i].v, numbers<double>(expected.at("exp_avg_sq").at(t.name)), tol);
    }
  }
}

}  // namespace

TEST_CASE("adamw: equals torch.optim.AdamW step by step (float32, paper betas, masked decay)") {
  run_golden<float>("adamw_f32_paper_betas_wd", 2.4e-7, 4e-9);
}

TEST_CASE("adamw: equals torch.optim.AdamW step by step (float64)") {
  run_golden<double>("adamw_f64_paper_betas_wd", 1e-15, 0);
}

TEST_CASE("adamw: equals torch.optim.AdamW without weight decay") {
  run_golden<float>("adamw_f32_no_wd", 2.4e-7, 4e-9);
}

TEST_CASE("adamw: equals torch.optim.AdamW when 1 - beta1 >= 0.5 (lerp's other branch)") {
  run_golden<float>("adamw_f32_large_lerp_weight", 2.4e-7, 4e-9);
}

TEST_CASE("adamw: the first step moves every element by lr (bias-corrected sign step)") {
  // With m = v = 0, step 1 gives m/(sqrt(v)) = g/|g| after bias correction: θ ← θ − lr·sign(g)
  // up to ε. Checked in double for a few magnitudes.
  toy_model<double> model;
  model.tensors.push_back({"w", {4}, {1.0, -2.0, 0.5, 3.0}, {0.3, -7.0, 1e-3, 2.0}});
  rlhf::adamw<double> opt{{.lr = 0.01, .eps = 0}};
  opt.step(model.parameters());
  const std::vector<double> expected{0.99, -1.99, 0.49, 2.99};
  RLHF_CHECK_CLOSE(model.tensors[0].value, expected, (rlhf::test::tolerance{.rtol = 1e-14, .atol = 0}));
}

TEST_CASE("adamw: weight decay masks") {
  CHECK(rlhf::decays_by_name("h.0.attn.c_attn.weight"));
  CHECK(rlhf::decays_by_name("wte.weight"));
  CHECK(rlhf::decays_by_name("h.11.mlp.c_proj.weight"));
  CHECK_FALSE(rlhf::decays_by_name("h.0.attn.c_attn.bias"));
  CHECK_FALSE(rlhf::decays_by_name("h.0.ln_1.weight"));
  CHECK_FALSE(rlhf::decays_by_name("ln_f.weight"));
  CHECK_FALSE(rlhf::decays_by_name("ln_f.bias"));
  CHECK_FALSE(rlhf::decays_by_name("encoder.LayerNorm.weight"));
  CHECK_FALSE(rlhf::decays_by_name("model.layers.0.input_layernorm.weight"));
  CHECK_FALSE(rlhf::decays_by_name("bias"));
  CHECK(rlhf::decays_by_name("biases_table"));  // only a whole component named "bias"

  toy_model<float> model;
  model.tensors.push_back({"h.0.mlp.c_fc.weight", {2, 3}, std::vector<float>(6, 1.0f), std::vector<float>(6, 0.0f)});
  model.tensors.push_back({"h.0.mlp.c_fc.bias", {3}, std::vector<float>(3, 1.0f), std::vector<float>(3, 0.0f)});
  model.tensors.push_back({"pos_scale", {1}, std::vector<float>(1, 1.0f), std::vector<float>(1, 0.0f)});
  auto matrices = rlhf::decays_matrices(model);
  CHECK(matrices("h.0.mlp.c_fc.weight"));
  CHECK_FALSE(matrices("h.0.mlp.c_fc.bias"));

  SUBCASE("by name (default): zero gradients, only decay moves the weights") {
    rlhf::adamw<float> opt{{.lr = 0.1, .weight_decay = 0.5}};
    opt.step(model.parameters());
    CHECK(model.tensors[0].value[0] == static_cast<float>(1.0 - 0.1 * 0.5));
    CHECK(model.tensors[1].value[0] == 1.0f);
    CHECK(model.tensors[2].value[0] == static_cast<float>(1.0 - 0.1 * 0.5));
  }
  SUBCASE("nanoGPT: only rank >= 2") {
    rlhf::adamw<float> opt{{.lr = 0.1, .weight_decay = 0.5, .decays = matrices}};
    opt.step(model.parameters());
    CHECK(model.tensors[0].value[0] == static_cast<float>(1.0 - 0.1 * 0.5));
    CHECK(model.tensors[1].value[0] == 1.0f);
    CHECK(model.tensors[2].value[0] == 1.0f);
  }
}

TEST_CASE("adamw: learning_rate follows the schedule and steps() counts updates") {
  toy_model<float> model;
  model.tensors.push_back({"w", {2}, {1.0f, 2.0f}, {0.5f, 0.5f}});
  rlhf::adamw<float> opt{{.lr = 1.0, .schedule = {{.warmup_steps = 10, .warmup_start = 0.1}}}};
  CHECK(opt.learning_rate() == doctest::Approx(0.1));
  for (int s = 0; s < 10; ++s) opt.step(model.parameters());
  CHECK(opt.steps() == 10);
  CHECK(opt.learning_rate() == 1.0);
  // zero_grad clears the gradients.
  opt.zero_grad(model.parameters());
  CHECK(model.tensors[0].grad == std::vector<float>{0.0f, 0.0f});
}

TEST_CASE("adamw: a zero learning rate leaves parameters unchanged but updates the moments") {
  toy_model<float> model;
  model.tensors.push_back({"w", {2}, {1.0f, 2.0f}, {0.5f, -0.5f}});
  rlhf::adamw<float> opt{{.lr = 0.0, .weight_decay = 0.1}};
  opt.step(model.parameters());
  CHECK(model.tensors[0].value == std::vector<float>{1.0f, 2.0f});
  CHECK(opt.state()[0].m[0] == doctest::Approx(0.05));
}

TEST_CASE("adamw: strided parameter views") {
  // Two parameters interleaved in one buffer (stride 2) step like contiguous copies.
  std::vector<double> values{1.0, 10.0, 2.0, 20.0, 3.0, 30.0};
  std::vector<double> grads{0.1, -1.0, 0.2, -2.0, 0.3, -3.0};
  toy_model<double> dense;
  dense.tensors.push_back({"a", {3}, {1.0, 2.0, 3.0}, {0.1, 0.2, 0.3}});
  dense.tensors.push_back({"b", {3}, {10.0, 20.0, 30.0}, {-1.0, -2.0, -3.0}});
  const std::ptrdiff_t extent[1] = {3}, stride[1] = {2};
  std::vector<rlhf::parameter_ref<double>> strided{
      {"a", rlhf::vector_view<double>(values.data(), extent, stride), rlhf::vector_view<double>(grads.data(), extent, stride)},
      {"b", rlhf::vector_view<double>(values.data() + 1, extent, stride),
       rlhf::vector_view<double>(grads.data() + 1, extent, stride)}};
  rlhf::adamw<double> a{{.lr = 0.01, .weight_decay = 0.1}}, b{{.lr = 0.01, .weight_decay = 0.1}};
  for (int s = 0; s < 3; ++s) {
    a.step(dense.parameters());
    b.step(strided);
  }
  for (std::size_t i = 0; i < 3; ++i) {
    CHECK(values[2 * i] == dense.tensors[0].value[i]);
    CHECK(values[2 * i + 1] == dense.tensors[1].value[i]);
  }
}

TEST_CASE("adamw: bad options and mismatched parameters throw rlhf::invalid_argument") {
  CHECK_THROWS_WITH_AS(rlhf::adamw<float>({.lr = -1.0}), "rlhf::adamw: lr must be finite and non-negative, got -1",
                       rlhf::invalid_argument);
  CHECK_THROWS_WITH_AS(rlhf::adamw<float>({.beta1 = 1.0}), "rlhf::adamw: beta1 must be in [0, 1), got 1",
                       rlhf::invalid_argument);
  CHECK_THROWS_AS(rlhf::adamw<float>({.beta2 = -0.1}), rlhf::invalid_argument);
  CHECK_THROWS_AS(rlhf::adamw<float>({.eps = std::nan("")}), rlhf::invalid_argument);
  CHECK_THROWS_AS(rlhf::adamw<float>({.weight_decay = -0.1}), rlhf::invalid_argument);

  toy_model<float> model;
  model.tensors.push_back({"w", {2}, {1.0f, 2.0f}, {0.5f, 0.5f}});
  rlhf::adamw<float> opt;
  opt.step(model.parameters());
  const auto before = model.tensors[0].value;

  toy_model<float> other;
  other.tensors.push_back({"v", {2}, {1.0f, 2.0f}, {0.5f, 0.5f}});
  CHECK_THROWS_WITH_AS(opt.step(other.parameters()),
                       "rlhf::adamw::step(): parameter 0 is 'v' of 2 values but the optimizer state holds 'w' of 2",
                       rlhf::invalid_argument);
  model.tensors.push_back({"x", {1}, {1.0f}, {1.0f}});
  CHECK_THROWS_WITH_AS(opt.step(model.parameters()),
                       "rlhf::adamw::step(): got more parameters than the 1 of the optimizer state (extra: 'x')",
                       rlhf::invalid_argument);
  model.tensors.pop_back();
  model.tensors[0].grad.pop_back();
  CHECK_THROWS_WITH_AS(opt.step(model.parameters()),
                       "rlhf::adamw::step(): parameter 'w' has 2 values but 1 gradients", rlhf::invalid_argument);
  CHECK(model.tensors[0].value == before);  // nothing changed
  CHECK(opt.steps() == 1);
  CHECK_THROWS_AS(opt.restore(1, {{"w", {0.0f}, {}}}), rlhf::invalid_argument);
}
