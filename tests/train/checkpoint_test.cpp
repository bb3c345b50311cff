// Tests of rlhf/train/checkpoint.hpp: a stage saved to a directory at step k and loaded into
// freshly constructed objects continues bitwise like the uninterrupted run — SFT, reward model
// and PPO-ptx (adaptive KL, EMA), on the toy models and on a tiny rlhf::gpt with AdamW.
#include <rlhf/models/gpt.hpp>
#include <rlhf/optim/adamw.hpp>
#include <rlhf/train/checkpoint.hpp>
#include <rlhf/train/ppo.hpp>
#include <rlhf/train/reward_model.hpp>
#include <rlhf/train/sft.hpp>

#include <doctest/doctest.h>

#include "support/toy_models.hpp"

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <unistd.h>

using rlhf::token_id;
using rlhf::train::token_sequence;

namespace {

/// A fresh directory under the system's temporary directory, removed at the end.
struct temp_dir {
  std::filesystem::path path;
  explicit temp_dir(const std::string& name)
      : path(std::filesystem::temp_directory_path() /
             ("rlhf-train-checkpoint-" + std::to_string(::getpid()) + "-" + name)) {
    std::filesystem::remove_all(path);
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  [[nodiscard]] std::string str() const { return path.string(); }
};

template <class M>
bool same_bits(M& a, M& b) {
  const auto pa = a.parameters(), pb = b.parameters();
  if (pa.size() != pb.size()) return false;
  for (std::size_t k = 0; k < pa.size(); ++k) {
    if (pa[k].value.extent(0) != pb[k].value.extent(0)) return false;
    if (std::memcmp(pa[k].value.data_handle(), pb[k].value.data_handle(),
                    static_cast<std::size_t>(pa[k].value.extent(0)) * sizeof(*pa[k].value.data_handle())) != 0)
      return false;
  }
  return true;
}

constexpr token_id eos = 0;

std::vector<rlhf::train::sft_example> demonstrations(token_id vocab) {
  std::vector<rlhf::train::sft_example> data;
  for (token_id k = 0; k < 7; ++k)
    data.push_back({{static_cast<token_id>(1 + k % (vocab - 1))},
                    {static_cast<token_id>(1 + (k + 1) % (vocab - 1)), static_cast<token_id>(1 + (k + 3) % (vocab - 1))}});
  return data;
}

std::vector<rlhf::train::ranking_example> rankings(token_id vocab) {
  rlhf::rng gen{{.seed = 4}};
  std::vector<rlhf::train::ranking_example> out;
  for (int i = 0; i < 9; ++i) {
    rlhf::train::ranking_example e;
    e.prompt = {static_cast<token_id>(1 + gen.uniform_index(static_cast<std::uint64_t>(vocab - 1)))};
    for (int j = 0; j < 3; ++j) {
      std::vector<token_id> c(2 + gen.uniform_index(3));
      for (auto& t : c) t = static_cast<token_id>(1 + gen.uniform_index(static_cast<std::uint64_t>(vocab - 1)));
      e.completions.push_back(c);
    }
    e.ranks = {static_cast<std::int32_t>(gen.uniform_index(2)), 1, 2};
    out.push_back(e);
  }
  return out;
}

std::vector<token_sequence> prompts() { return {{1}, {2, 3}, {3}, {1, 2}, {2}, {3, 1}, {1, 1}, {2, 2}}; }
std::vector<token_sequence> pretraining() { return {{1, 2, 3, 1}, {3, 3, 2}, {2, 1}, {1, 3, 2, 2, 1}, {3, 2, 1}}; }

rlhf::train::ppo_options ppo_ptx_options(std::size_t batch) {
  rlhf::train::ppo_options o;
  o.generation = {.max_new_tokens = 3, .stop_tokens = {eos}};
  o.batch_size = batch;
  o.minibatches = 2;
  o.ppo_epochs = 2;
  o.seed = 5;
  o.pad_id = eos;
  o.kl = rlhf::adaptive_kl{.init = 0.1, .target = 0.5, .horizon = 100};
  o.objective.ptx_coef = 2.0;
  o.ptx_batch_size = 2;
  o.ema_decay = 0.992;
  return o;
}

rlhf::gpt_config tiny(rlhf::gpt_head head = rlhf::gpt_head::lm) {
  return {.vocab_size = 13, .context = 16, .layers = 1, .heads = 2, .width = 8, .head = head, .seed = 3};
}

rlhf::adamw_options adam() {
  return {.lr = 3e-3,
          .weight_decay = 0.01,
          .schedule = rlhf::lr_schedule_options{.kind = rlhf::schedule_kind::cosine, .warmup_steps = 2,
                                                .warmup_start = 0.1, .total_steps = 12}};
}

}  // namespace

TEST_CASE("save_stage / load_stage: SFT resumed from disk at step k is bitwise the uninterrupted run (toy, gpt)") {
  SUBCASE("toy model, SGD with momentum") {
    const auto data = demonstrations(5);
    rlhf::test::toy_lm<float> full(5, 6), half(5, 6), resumed(5, 6);
    full.randomize(5, 0.3);
    half.randomize(5, 0.3);
    resumed.randomize(99, 1.0);  // the load must overwrite every weight
    rlhf::test::toy_sgd s_full(0.3, 0.9), s_half(0.3, 0.9), s_resumed(0.3, 0.9);
    rlhf::train::sft_trainer a(full, s_full, {.batch_size = 2, .seed = 4});
    a.fit(data, {.epochs = 100, .max_steps = 11});
    rlhf::train::sft_trainer b(half, s_half, {.batch_size = 2, .seed = 4});
    b.fit(data, {.epochs = 100, .max_steps = 4});
    temp_dir dir("sft-toy");
    rlhf::train::save_stage(dir.str(), half, s_half, b);
    CHECK(std::filesystem::exists(rlhf::train::stage_file(dir.str())));
    rlhf::train::sft_trainer c(resumed, s_resumed, {.batch_size = 2, .seed = 4});
    rlhf::train::load_stage(dir.str(), resumed, s_resumed, c);
    CHECK(c.state() == b.state());
    c.fit(data, {.epochs = 100, .max_steps = 11});
    CHECK(c.state() == a.state());
    CHECK(resumed == full);
    CHECK(s_resumed == s_full);
    CHECK_FALSE(half == full);
  }
  SUBCASE("tiny gpt, AdamW with warm-up and cosine decay") {
    const auto data = demonstrations(13);
    rlhf::gpt full(tiny()), half(tiny()), resumed(tiny());
    resumed.init_weights(77);
    rlhf::adamw<float> o_full(adam()), o_half(adam()), o_resumed(adam());
    rlhf::train::sft_trainer a(full, o_full, {.batch_size = 3, .seed = 1});
    a.fit(data, {.epochs = 100, .max_steps = 7});
    rlhf::train::sft_trainer b(half, o_half, {.batch_size = 3, .seed = 1});
    b.fit(data, {.epochs = 100, .max_steps = 3});
    temp_dir dir("sft-gpt");
    rlhf::train::save_stage(dir.str(), half, o_half, b);
    rlhf::train::sft_trainer c(resumed, o_resumed, {.batch_size = 3, .seed = 1});
    rlhf::train::load_stage(dir.str(), resumed, o_resumed, c);
    CHECK(o_resumed.learning_rate() == o_half.learning_rate());  // the schedule's position
    c.fit(data, {.epochs = 100, .max_steps = 7});
    CHECK(c.state() == a.state());
    CHECK(same_bits(resumed, full));
    CHECK(o_resumed.steps() == o_full.steps());
    CHECK(o_resumed.state() == o_full.state());
    CHECK_FALSE(same_bits(half, full));
  }
}

TEST_CASE("save_stage / load_stage: the reward model resumed from disk is bitwise (toy, gpt)") {
  SUBCASE("toy bag-of-tokens model") {
    const auto data = rankings(8);
    rlhf::test::toy_bow_reward<double> full(8), half(8), resumed(8);
    resumed.weight(2) = 5.0;
    rlhf::test::toy_sgd s_full(0.2, 0.8), s_half(0.2, 0.8), s_resumed(0.2, 0.8);
    rlhf::train::reward_model_trainer a(full, s_full, {.batch_size = 2, .seed = 3});
    a.fit(data, {.epochs = 100, .max_steps = 9});
    rlhf::train::reward_model_trainer b(half, s_half, {.batch_size = 2, .seed = 3});
    b.fit(data, {.epochs = 100, .max_steps = 5});
    temp_dir dir("rm-toy");
    rlhf::train::save_stage(dir.str(), half, s_half, b);
    rlhf::train::reward_model_trainer c(resumed, s_resumed, {.batch_size = 2, .seed = 3});
    rlhf::train::load_stage(dir.str(), resumed, s_resumed, c);
    c.fit(data, {.epochs = 100, .max_steps = 9});
    CHECK(c.state() == a.state());
    CHECK(resumed == full);
    CHECK(s_resumed == s_full);
    CHECK_FALSE(half == full);
  }
  SUBCASE("tiny gpt with a reward head, AdamW") {
    const auto data = rankings(13);
    rlhf::gpt full(tiny(rlhf::gpt_head::reward)), half(tiny(rlhf::gpt_head::reward)),
        resumed(tiny(rlhf::gpt_head::reward));
    resumed.init_weights(5);
    rlhf::adamw<float> o_full(adam()), o_half(adam()), o_resumed(adam());
    rlhf::train::reward_model_trainer a(full, o_full, {.batch_size = 2, .seed = 3});
    a.fit(data, {.epochs = 100, .max_steps = 6});
    rlhf::train::reward_model_trainer b(half, o_half, {.batch_size = 2, .seed = 3});
    b.fit(data, {.epochs = 100, .max_steps = 2});
    temp_dir dir("rm-gpt");
    rlhf::train::save_stage(dir.str(), half, o_half, b);
    rlhf::train::reward_model_trainer c(resumed, o_resumed, {.batch_size = 2, .seed = 3});
    rlhf::train::load_stage(dir.str(), resumed, o_resumed, c);
    c.fit(data, {.epochs = 100, .max_steps = 6});
    CHECK(c.state() == a.state());
    CHECK(same_bits(resumed, full));
    CHECK(o_resumed.state() == o_full.state());
    CHECK_FALSE(same_bits(half, full));
  }
}

TEST_CASE("save_stage / load_stage: PPO-ptx with an adaptive controller and an EMA resumed from disk is bitwise (toy)") {
  const auto o = ppo_ptx_options(8);
  const auto p = prompts();
  const auto texts = pretraining();
  constexpr std::ptrdiff_t vocab = 4, positions = 8;
  const auto make_policy = [&] {
    rlhf::test::toy_lm<float> m(vocab, positions);
    m.randomize(21, 0.3);
    return m;
  };
  rlhf::test::toy_lm<float> full = make_policy(), half = make_policy(), resumed(vocab, positions);
  const auto reference = make_policy();
  rlhf::test::toy_lm<float> ref_full = reference, ref_half = reference, ref_resumed = reference;
  rlhf::test::toy_value<float> v_full(vocab, positions), v_half(vocab, positions), v_resumed(vocab, positions);
  rlhf::test::toy_bow_reward<float> reward(vocab);
  reward.weight(3) = 1.0f;
  rlhf::test::toy_sgd fp(0.2, 0.9), fv(0.1, 0.9), hp(0.2, 0.9), hv(0.1, 0.9), rp(0.2, 0.9), rv(0.1, 0.9);
  rlhf::train::ppo_trainer a(full, fp, v_full, fv, reward, ref_full, o);
  a.fit(p, texts, {.epochs = 100, .max_steps = 5});
  rlhf::train::ppo_trainer b(half, hp, v_half, hv, reward, ref_half, o);
  b.fit(p, texts, {.epochs = 100, .max_steps = 2});
  temp_dir dir("ppo-toy");
  rlhf::train::save_stage(dir.str(), half, hp, v_half, hv, b);
  rlhf::train::ppo_trainer c(resumed, rp, v_resumed, rv, reward, ref_resumed, o);
  rlhf::train::load_stage(dir.str(), resumed, rp, v_resumed, rv, c);
  CHECK(c.kl_coefficient() == b.kl_coefficient());
  REQUIRE(c.ema() != nullptr);
  CHECK(c.ema()->averages() == b.ema()->averages());
  c.fit(p, texts, {.epochs = 100, .max_steps = 5});
  CHECK(c.state() == a.state());
  CHECK(resumed == full);
  CHECK(v_resumed == v_full);
  CHECK(rp == fp);
  CHECK(rv == fv);
  CHECK(c.ema()->updates() == a.ema()->updates());
  CHECK(c.ema()->averages() == a.ema()->averages());
  CHECK_FALSE(half == full);
  CHECK(a.state().kl.updates == 5);
}

TEST_CASE("save_stage / load_stage: PPO-ptx on a tiny gpt (policy, value, AdamW, EMA) resumed from disk is bitwise") {
  const auto o = ppo_ptx_options(4);
  std::vector<token_sequence> p{{1, 2}, {3}, {4, 5, 6}, {7}, {8, 9}, {10}};
  std::vector<token_sequence> texts{{1, 2, 3, 4}, {5, 6, 7}, {8, 9, 10, 11, 12}, {3, 1}};
  const rlhf::gpt sft(tiny());
  const auto rm = sft.with_head(rlhf::gpt_head::reward, 9);
  rlhf::gpt full = sft, half = sft, resumed(tiny());
  resumed.init_weights(123);
  rlhf::gpt ref_full = sft, ref_half = sft, ref_resumed = sft, rm_full = rm, rm_half = rm, rm_resumed = rm;
  rlhf::gpt v_full = rm.with_head(rlhf::gpt_head::value), v_half = v_full, v_resumed = v_full;
  rlhf::adamw<float> fp(adam()), fv(adam()), hp(adam()), hv(adam()), rp(adam()), rv(adam());
  rlhf::train::ppo_trainer a(full, fp, v_full, fv, rm_full, ref_full, o);
  a.fit(p, texts, {.epochs = 100, .max_steps = 3});
  rlhf::train::ppo_trainer b(half, hp, v_half, hv, rm_half, ref_half, o);
  b.fit(p, texts, {.epochs = 100, .max_steps = 1});
  temp_dir dir("ppo-gpt");
  rlhf::train::save_stage(dir.str(), half, hp, v_half, hv, b);
  rlhf::train::ppo_trainer c(resumed, rp, v_resumed, rv, rm_resumed, ref_resumed, o);
  rlhf::train::load_stage(dir.str(), resumed, rp, v_resumed, rv, c);
  c.fit(p, texts, {.epochs = 100, .max_steps = 3});
  CHECK(c.state() == a.state());
  CHECK(same_bits(resumed, full));
  CHECK(same_bits(v_resumed, v_full));
  CHECK(rp.state() == fp.state());
  CHECK(rv.state() == fv.state());
  CHECK(c.ema()->averages() == a.ema()->averages());
  CHECK_FALSE(same_bits(half, full));
}

TEST_CASE("load_stage: a checkpoint of another stage, a missing directory or a missing key is a format_error") {
  const auto data = demonstrations(5);
  rlhf::test::toy_lm<float> model(5, 6);
  rlhf::test::toy_sgd sgd(0.1);
  rlhf::train::sft_trainer sft(model, sgd, {.batch_size = 2});
  sft.fit(data, {.max_steps = 1});
  temp_dir dir("errors");
  rlhf::train::save_stage(dir.str(), model, sgd, sft);
  rlhf::test::toy_bow_reward<float> rm(5);
  rlhf::train::reward_model_trainer rmt(rm, sgd);
  CHECK_THROWS_WITH_AS(rlhf::train::load_stage(dir.str(), rm, sgd, rmt),
                       ("rlhf::train::load_stage(): " + rlhf::train::stage_file(dir.str()) +
                        " holds a 'sft' stage, not 'reward_model'")
                           .c_str(),
                       rlhf::format_error);
  CHECK_THROWS_AS(rlhf::train::load_stage(dir.str() + "-absent", model, sgd, sft), rlhf::error);

  auto ck = rlhf::checkpoint::load(rlhf::train::stage_file(dir.str()));
  CHECK(rlhf::train::load_trainer_state(ck) == sft.state());
  ck.set("trainer.data", "3");
  CHECK_THROWS_WITH_AS((void)rlhf::train::load_trainer_state(ck),
                       ("rlhf::train::load_trainer_state(): " + rlhf::train::stage_file(dir.str()) +
                        ": value 'trainer.data' is \"3\", expected \"<epoch> <offset>\"")
                           .c_str(),
                       rlhf::format_error);
}
