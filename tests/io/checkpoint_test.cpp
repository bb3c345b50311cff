// tests/io/checkpoint_test.cpp — a run resumed from a checkpoint is bitwise the uninterrupted
// run (weights, AdamW moments and steps, schedule, EMA, RNG, KL controller, data position);
// groups keep the model's tensors apart from the optimizer's; values round-trip exactly.
#include <rlhf/io/checkpoint.hpp>
#include <rlhf/kl_controller.hpp>
#include <rlhf/optim/adamw.hpp>
#include <rlhf/optim/clip.hpp>
#include <rlhf/optim/ema.hpp>
#include <rlhf/rng.hpp>

#include <doctest/doctest.h>

#include "support/named_tensors.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace fs = std::filesystem;

namespace {

template <class T>
struct toy_model : rlhf::test::named_tensors<T> {
  explicit toy_model(std::uint64_t seed) {
    rlhf::rng gen{{.seed = seed}};
    auto add = [&](std::string name, std::vector<std::int64_t> shape) {
      std::size_t n = 1;
      for (auto d : shape) n *= static_cast<std::size_t>(d);
      std::vector<T> v(n);
      for (auto& x : v) x = gen.normal<T>();
      this->tensors.push_back({std::move(name), std::move(shape), std::move(v), std::vector<T>(n, T(0))});
    };
    add("wte.weight", {7, 3});
    add("h.0.attn.c_attn.weight", {3, 9});
    add("h.0.attn.c_attn.bias", {9});
    add("ln_f.weight", {3});
  }
};

/// Everything a toy training run carries from step to step.
template <class T>
struct run {
  toy_model<T> model{1};
  rlhf::adamw<T> opt{{.lr = 0.05,
                      .weight_decay = 0.1,
                      .schedule = {{.kind = rlhf::schedule_kind::cosine, .warmup_steps = 2, .total_steps = 6,
                                    .min_ratio = 0.1}}}};
  rlhf::ema<T> avg{{.decay = 0.9}};
  rlhf::rng data{{.seed = 42, .stream = 3}};
  rlhf::adaptive_kl_controller kl{{.init = 0.2, .target = 1.0, .horizon = 100}};
  std::uint64_t position = 0;

  /// One step: gradients of ½·Σ (x·θ − y)² with x, y drawn from the data stream, clipped.
  void step() {
    for (auto& t : model.tensors)
      for (std::size_t i = 0; i < t.value.size(); ++i) {
        const T x = data.normal<T>();
        const T y = data.uniform<T>();
        t.grad[i] = (x * t.value[i] - y) * x;
      }
    (void)rlhf::clip_grad_norm(model.parameters(), 2.0);
    opt.step(model.parameters());
    opt.zero_grad(model.parameters());
    avg.update(model.parameters());
    kl.update(data.uniform<double>() * 2.0, 8);
    position += 8;
  }

  void save(const std::string& path) {
    rlhf::checkpoint ck;
    rlhf::save_model(ck, model);
    rlhf::save_optimizer(ck, opt);
    rlhf::save_ema(ck, avg);
    ck.set_rng("rng.data", data.state());
    ck.set_kl_controller("kl", kl.state());
    ck.set_u64("data.position", position);
    ck.save(path);
  }
  void load(const std::string& path) {
    const auto ck = rlhf::checkpoint::load(path);
    rlhf::load_model(ck, model);
    rlhf::load_optimizer(ck, opt);
    rlhf::load_ema(ck, avg);
    data.restore(ck.get_rng("rng.data"));
    kl.restore(ck.get_kl_controller("kl"));
    position = ck.get_u64("data.position");
  }
};

template <class T>
bool bitwise_equal(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

std::string temp_dir() {
  const fs::path dir = fs::temp_directory_path() / ("rlhf_checkpoint_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir.string();
}

}  // namespace

TEST_CASE_TEMPLATE("checkpoint: 3 steps, save, load into fresh objects, 3 steps == 6 steps, bitwise", T, float, double) {
  const std::string dir = temp_dir();
  const std::string path = dir + "/ckpt.safetensors";

  run<T> straight;
  for (int s = 0; s < 6; ++s) straight.step();

  run<T> first;
  for (int s = 0; s < 3; ++s) first.step();
  first.save(path);

  run<T> resumed;  // fresh objects: other weights until loaded
  resumed.model = toy_model<T>(77);
  resumed.load(path);
  CHECK(resumed.opt.steps() == 3);
  CHECK(resumed.opt.learning_rate() == first.opt.learning_rate());
  for (int s = 0; s < 3; ++s) resumed.step();

  for (std::size_t i = 0; i < straight.model.tensors.size(); ++i) {
    CAPTURE(straight.model.tensors[i].name);
    CHECK(bitwise_equal(straight.model.tensors[i].value, resumed.model.tensors[i].value));
    CHECK(bitwise_equal(straight.opt.state()[i].m, resumed.opt.state()[i].m));
    CHECK(bitwise_equal(straight.opt.state()[i].v, resumed.opt.state()[i].v));
    CHECK(bitwise_equal(straight.avg.averages()[i].value, resumed.avg.averages()[i].value));
  }
  CHECK(straight.opt.steps() == resumed.opt.steps());
  CHECK(straight.avg.updates() == resumed.avg.updates());
  CHECK(straight.data.state() == resumed.data.state());
  CHECK(straight.kl.state() == resumed.kl.state());
  CHECK(straight.position == resumed.position);
  // And the run did move: the weights differ from the initial ones.
  CHECK_FALSE(bitwise_equal(straight.model.tensors[0].value, toy_model<T>(1).tensors[0].value));
  fs::remove_all(dir);
}

TEST_CASE("checkpoint: a checkpoint is a weights file; groups keep tensors apart") {
  const std::string dir = temp_dir();
  const std::string path = dir + "/ckpt.safetensors";
  run<float> r;
  r.step();
  toy_model<float> value_model(5);
  {
    rlhf::checkpoint ck;
    rlhf::save_model(ck, r.model);
    rlhf::save_model(ck, value_model, "value.");
    rlhf::save_optimizer(ck, r.opt);
    ck.save(path);
  }
  const auto file = rlhf::safetensors_file::read(path);
  CHECK(file.find("wte.weight") != nullptr);
  CHECK(file.find("value.wte.weight") != nullptr);
  CHECK(file.find("optimizer.m.h.0.attn.c_attn.bias") != nullptr);
  CHECK(file.metadata().at("optimizer.steps") == "1");

  const auto ck = rlhf::checkpoint::load(path);
  toy_model<float> policy(9), value(9);
  const auto report = rlhf::load_model(ck, policy);  // strict: sees neither value.* nor optimizer.*
  CHECK(report.loaded.size() == 4);
  CHECK(report.unexpected.empty());
  rlhf::load_model(ck, value, {.prefix = "value."});
  CHECK(policy.tensors[1].value == r.model.tensors[1].value);
  CHECK(value.tensors[1].value == value_model.tensors[1].value);
  // A plain weights file loads as a checkpoint too (no groups: every tensor is the model's).
  rlhf::save_safetensors(dir + "/weights.safetensors", r.model);
  toy_model<float> plain(11);
  rlhf::load_model(rlhf::checkpoint::load(dir + "/weights.safetensors"), plain);
  CHECK(plain.tensors[0].value == r.model.tensors[0].value);
  fs::remove_all(dir);
}

TEST_CASE("checkpoint: small values round-trip exactly") {
  rlhf::checkpoint ck;
  const double values[] = {0.1, -0.0, 1e-308, 5e-324, 1.7976931348623157e308, 2.0 / 3.0,
                           std::numeric_limits<double>::infinity()};
  for (std::size_t i = 0; i < std::size(values); ++i) ck.set_double("d" + std::to_string(i), values[i]);
  ck.set_double("nan", std::nan(""));
  ck.set_u64("u", ~std::uint64_t{0});
  ck.set("s", "free text, \"quoted\"\nand a new line");
  rlhf::rng gen{{.seed = ~std::uint64_t{0}, .stream = 5}};
  (void)gen.next_u32();
  ck.set_rng("rng", gen.state());
  ck.set_kl_controller("kl", {.value = 0.123456789012345, .updates = 17, .last_observed_kl = -1e-7, .last_error = 0.2});
  std::vector<std::int64_t> ids{1, -2, 3};
  ck.set_values("data.ids", std::span<const std::int64_t>(ids));

  const std::string dir = temp_dir();
  ck.save(dir + "/v.safetensors");
  const auto back = rlhf::checkpoint::load(dir + "/v.safetensors");
  for (std::size_t i = 0; i < std::size(values); ++i) {
    const double got = back.get_double("d" + std::to_string(i));
    CHECK(std::memcmp(&got, &values[i], sizeof got) == 0);
  }
  CHECK(std::isnan(back.get_double("nan")));
  CHECK(back.get_u64("u") == ~std::uint64_t{0});
  CHECK(back.get("s") == "free text, \"quoted\"\nand a new line");
  CHECK(back.get_rng("rng") == gen.state());
  rlhf::rng resumed;
  resumed.restore(back.get_rng("rng"));
  CHECK(resumed.next_u64() == gen.next_u64());
  CHECK(back.get_kl_controller("kl") ==
        rlhf::kl_controller_state{.value = 0.123456789012345, .updates = 17, .last_observed_kl = -1e-7, .last_error = 0.2});
  CHECK(back.values<std::int64_t>("data.ids") == ids);
  CHECK(back.contains("u"));
  CHECK_FALSE(back.contains("nope"));
  fs::remove_all(dir);
}

TEST_CASE("checkpoint: errors name the checkpoint and the value") {
  const std::string dir = temp_dir();
  const std::string path = dir + "/e.safetensors";
  rlhf::checkpoint ck;
  ck.set("text", "abc");
  ck.set("rng", "1 2 3");
  std::vector<float> f{1.0f};
  ck.set_values("f", std::span<const float>(f));
  ck.save(path);
  const auto back = rlhf::checkpoint::load(path);
  CHECK_THROWS_WITH_AS((void)back.get("missing"), std::string("rlhf::checkpoint: " + path + ": missing value 'missing'").c_str(),
                       rlhf::format_error);
  CHECK_THROWS_WITH_AS((void)back.get_u64("text"), doctest::Contains("value 'text': \"abc\" is not an unsigned integer"),
                       rlhf::format_error);
  CHECK_THROWS_WITH_AS((void)back.get_rng("rng"), doctest::Contains("value 'rng' is \"1 2 3\", expected 4 number(s)"),
                       rlhf::format_error);
  CHECK_THROWS_WITH_AS((void)back.values<double>("f"), doctest::Contains("tensor 'f' is F32, expected F64"),
                       rlhf::format_error);
  CHECK_THROWS_WITH_AS((void)back.values<float>("g"), doctest::Contains("missing tensor 'g'"), rlhf::format_error);
  rlhf::adamw<float> opt;
  CHECK_THROWS_WITH_AS(rlhf::load_optimizer(back, opt), doctest::Contains("missing value 'optimizer.names'"),
                       rlhf::format_error);
  CHECK_THROWS_AS(ck.set_tensor("x", rlhf::safetensors_dtype::f32, {3}, std::vector<std::byte>(8)), rlhf::invalid_argument);
  // A corrupt checkpoint is a format_error from the reader.
  std::vector<std::byte> bytes = rlhf::read_file(path);
  bytes.pop_back();
  rlhf::write_file_atomic(path, bytes);
  CHECK_THROWS_WITH_AS((void)rlhf::checkpoint::load(path), doctest::Contains("MetadataIncompleteBuffer"),
                       rlhf::format_error);
  fs::remove_all(dir);
}
