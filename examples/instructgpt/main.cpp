// examples/instructgpt — the InstructGPT recipe end to end, in miniature, on the CPU.
//
//   1. a byte-level BPE trained on the corpus          (rlhf::bpe_trainer)
//   2. a small and a larger base GPT pretrained on it  (rlhf::gpt, rlhf::train::sft_trainer, all tokens)
//   3. SFT of both on labeler demonstrations            (sft_trainer, loss on the response)
//   4. K completions per prompt from the small SFT model, ranked by the labeler
//   5. the reward model (K-wise loss) from the small SFT model, normalised on demonstrations
//   6. PPO and PPO-ptx from the small SFT model; value model initialised from the RM
//   7. the paper's evaluation: labeler win-rate against SFT, the larger SFT model against the
//      small PPO-ptx one, held-out pretraining loss, KL to SFT, RM accuracy, score histograms,
//      reward / KL / β curves — printed, and written to OUT/report.md with SVG figures.
//
// Usage: instructgpt [--quick] [--out DIR] [--threads N] [--seed S] [--corpus FILE] [--backend cpu]
#include "svg.hpp"
#include "task.hpp"

#include <rlhf/io/safetensors.hpp>
#include <rlhf/logprobs.hpp>
#include <rlhf/lm_loss.hpp>
#include <rlhf/models/gpt.hpp>
#include <rlhf/optim/adamw.hpp>
#include <rlhf/optim/schedule.hpp>
#include <rlhf/tokenizer.hpp>
#include <rlhf/tokenizer/trainer.hpp>
#include <rlhf/train/batch.hpp>
#include <rlhf/train/metrics.hpp>
#include <rlhf/train/ppo.hpp>
#include <rlhf/train/reward_model.hpp>
#include <rlhf/train/sft.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#ifndef RLHF_DEMO_CORPUS
#define RLHF_DEMO_CORPUS "data/austen.txt"
#endif

namespace {

namespace fs = std::filesystem;
using rlhf::token_id;
using rlhf::train::token_sequence;
using clock_type = std::chrono::steady_clock;

// ---- settings ---------------------------------------------------------------------------------

struct model_size {
  std::ptrdiff_t layers, heads, width;
};

struct settings {
  bool quick = false;
  std::string out = "instructgpt-out";
  int threads = 2;
  std::uint64_t seed = 1;
  std::string corpus = RLHF_DEMO_CORPUS;

  // Sizes: the full run fits about five minutes on two cores; --quick is a smoke run for CI.
  std::size_t vocab = 1024;
  std::ptrdiff_t context = 64;  ///< positions the models have (prompt + response fit)
  std::ptrdiff_t window = 48;   ///< tokens per pretraining window
  model_size small{2, 4, 96};
  model_size large{4, 4, 192};
  std::uint64_t pretrain_steps_small = 400;
  std::uint64_t pretrain_steps_large = 250;
  std::size_t demonstrations = 2000;
  std::uint64_t sft_epochs = 3;
  std::size_t ranking_prompts = 800;
  std::size_t k = 4;
  std::uint64_t rm_epochs = 2;
  std::uint64_t ppo_steps = 80;
  std::size_t ppo_batch = 32;
  std::size_t eval_prompts = 400;
  int max_new_tokens = 10;
  double ppo_lr = 5e-5;  ///< policy; the value model uses twice this

  void make_quick() {
    quick = true;
    vocab = 400;
    small = {1, 2, 64};
    large = {2, 2, 128};
    pretrain_steps_small = 60;
    pretrain_steps_large = 40;
    demonstrations = 400;
    sft_epochs = 2;
    ranking_prompts = 160;
    rm_epochs = 1;
    ppo_steps = 40;
    ppo_lr = 5e-4;  // the one-layer quick models barely move at the full run's rate
    ppo_batch = 16;
    eval_prompts = 64;
  }
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "instructgpt: %s\nusage: instructgpt [--quick] [--out DIR] [--threads N] [--seed S] "
               "[--corpus FILE] [--backend cpu]\n",
               why);
  std::exit(2);
}

settings parse_arguments(int argc, char** argv) {
  settings s;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(("missing value after " + a).c_str());
      return argv[++i];
    };
    if (a == "--quick") {
      s.make_quick();
    } else if (a == "--out") {
      s.out = value();
    } else if (a == "--threads") {
      s.threads = std::atoi(value().c_str());
      if (s.threads < 1) usage("--threads must be at least 1");
    } else if (a == "--seed") {
      s.seed = std::strtoull(value().c_str(), nullptr, 10);
    } else if (a == "--corpus") {
      s.corpus = value();
    } else if (a == "--backend") {
      const std::string b = value();
      if (b == "cuda")
        usage("--backend cuda: this build of the demo has the CPU backend only (the CUDA backend of the "
              "models and trainers is not implemented yet)");
      if (b != "cpu") usage(("unknown backend '" + b + "' (cpu)").c_str());
    } else if (a == "-h" || a == "--help") {
      usage("the InstructGPT recipe in miniature");
    } else {
      usage(("unknown argument '" + a + "'").c_str());
    }
  }
  return s;
}

// ---- small helpers ----------------------------------------------------------------------------

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

void say(const char* format, auto... args) {
  std::printf(format, args...);
  std::fflush(stdout);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "instructgpt: cannot read the corpus '%s' (use --corpus FILE)\n", path.c_str());
    std::exit(1);
  }
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

std::string fixed(double v, int digits = 3) {
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", digits, v);
  return b;
}

std::string percent(double v) { return fixed(100.0 * v, 1) + " %"; }

/// A metrics log that also keeps chosen series in memory for the figures.
struct recorder {
  rlhf::train::metrics_log log;
  std::vector<std::string> keys;
  std::map<std::string, std::vector<double>> series;
  std::vector<double> steps;

  recorder(const fs::path& path, std::vector<std::string> keep, std::uint64_t print_every)
      : log(path.string(), {.print_every = print_every}), keys(std::move(keep)) {}

  void operator()(std::uint64_t step, const rlhf::train::metrics& m) {
    log(step, m);
    steps.push_back(static_cast<double>(step));
    for (const auto& k : keys) series[k].push_back(m.get(k).value_or(NAN));
  }
};

// ---- models -----------------------------------------------------------------------------------

rlhf::gpt make_model(const settings& s, const model_size& m, std::size_t vocab, std::uint64_t seed) {
  return rlhf::gpt({.vocab_size = static_cast<std::ptrdiff_t>(vocab),
                    .context = s.context,
                    .layers = m.layers,
                    .heads = m.heads,
                    .width = m.width,
                    .seed = seed},
                   rlhf::cpu_backend{.threads = s.threads});
}

rlhf::adamw<float> make_optimizer(double lr, std::uint64_t total_steps, std::uint64_t warmup, bool cosine,
                                  double weight_decay = 0.0) {
  return rlhf::adamw<float>({.lr = lr,
                             .weight_decay = weight_decay,
                             .schedule = rlhf::lr_schedule_options{.kind = cosine ? rlhf::schedule_kind::cosine
                                                                                  : rlhf::schedule_kind::constant,
                                                                   .warmup_steps = warmup,
                                                                   .warmup_start = 0.1,
                                                                   .total_steps = std::max(total_steps, warmup),
                                                                   .min_ratio = 0.1}});
}

// ---- text <-> tokens ----------------------------------------------------------------------------

struct text_codec {
  rlhf::bpe_tokenizer tokenizer;
  token_id eos;

  token_sequence encode(const std::string& s) const { return tokenizer.encode(s); }

  /// A generated response as the labeler sees it: text before end-of-text, and whether it came.
  instructgpt::completion completion_of(std::span<const token_id> response) const {
    instructgpt::completion c;
    std::size_t n = response.size();
    if (n > 0 && response[n - 1] == eos) {
      c.stopped = true;
      --n;
    }
    c.text = tokenizer.decode_lossy(response.subspan(0, n));
    return c;
  }

  token_sequence response_tokens(const instructgpt::completion& c) const {
    token_sequence t = encode(c.text);
    if (c.stopped) t.push_back(eos);
    return t;
  }
};

/// Generation in batches; returns each prompt's response tokens (through end_index).
std::vector<token_sequence> generate(rlhf::gpt& policy, const text_codec& codec, std::span<const token_sequence> prompts,
                                     int max_new_tokens, std::uint64_t seed, std::size_t batch = 64) {
  std::vector<token_sequence> out;
  for (std::size_t i = 0; i < prompts.size(); i += batch) {
    const std::size_t n = std::min(batch, prompts.size() - i);
    const auto pb = rlhf::train::make_prompt_batch(prompts.subspan(i, n), codec.eos);
    const auto g = policy.generate(pb.view(), {.max_new_tokens = max_new_tokens,
                                               .stop_tokens = {codec.eos},
                                               .seed = seed + i});
    for (std::ptrdiff_t b = 0; b < static_cast<std::ptrdiff_t>(n); ++b) {
      token_sequence r;
      for (std::ptrdiff_t t = 0; t <= g.end_index(b); ++t) r.push_back(g.tokens(b, t));
      out.push_back(std::move(r));
    }
  }
  return out;
}

/// Σ_t log p(response_t | prompt, response_<t) for each (prompt, response) under `model`.
std::vector<double> sequence_logprobs(rlhf::gpt& model, std::span<const token_sequence> prompts,
                                      std::span<const token_sequence> responses, token_id pad, int threads,
                                      std::size_t batch = 64) {
  std::vector<double> out;
  for (std::size_t i = 0; i < prompts.size(); i += batch) {
    const std::size_t n = std::min(batch, prompts.size() - i);
    std::vector<rlhf::train::sft_example> ex;
    for (std::size_t k = 0; k < n; ++k) ex.push_back({prompts[i + k], responses[i + k]});
    const auto sb = rlhf::train::make_sft_batch(std::span<const rlhf::train::sft_example>(ex), pad);
    const std::ptrdiff_t B = sb.rows(), L = sb.length(), V = model.vocab_size();
    rlhf::tensor<float, 3> logits(B, L, V);
    model.forward(sb.view(), logits.view());
    rlhf::tensor<float, 2> logp(B, L - 1);
    rlhf::tensor<token_id, 2> labels(B, L - 1);
    for (std::ptrdiff_t b = 0; b < B; ++b)
      for (std::ptrdiff_t t = 0; t + 1 < L; ++t) labels(b, t) = sb.tokens(b, t + 1);
    const rlhf::cube_view<const float> shifted(logits.data(), {B, L - 1, V}, {L * V, V, 1});
    rlhf::token_logprobs(rlhf::cpu_backend{.threads = threads}, shifted, labels.view(), {.logp = logp.view()});
    for (std::ptrdiff_t b = 0; b < B; ++b) {
      double s = 0;
      for (std::ptrdiff_t t = 0; t + 1 < L; ++t)
        if (sb.target_mask(b, t + 1)) s += logp(b, t);
      out.push_back(s);
    }
  }
  return out;
}

/// Mean token NLL of held-out pretraining windows.
double heldout_loss(rlhf::gpt& model, std::span<const token_sequence> windows, token_id pad, int threads) {
  double total = 0;
  std::ptrdiff_t tokens = 0;
  for (std::size_t i = 0; i < windows.size(); i += 32) {
    const std::size_t n = std::min<std::size_t>(32, windows.size() - i);
    const auto lb = rlhf::train::make_lm_batch(windows.subspan(i, n), pad);
    const std::ptrdiff_t B = lb.rows(), L = lb.length(), V = model.vocab_size();
    rlhf::tensor<float, 3> logits(B, L, V);
    model.forward(lb.view(), logits.view());
    rlhf::tensor<token_id, 2> labels(B, L - 1);
    rlhf::tensor<std::uint8_t, 2> mask(B, L - 1);
    for (std::ptrdiff_t b = 0; b < B; ++b)
      for (std::ptrdiff_t t = 0; t + 1 < L; ++t) {
        labels(b, t) = lb.tokens(b, t + 1);
        mask(b, t) = lb.target_mask(b, t + 1);
      }
    const rlhf::cube_view<const float> shifted(logits.data(), {B, L - 1, V}, {L * V, V, 1});
    const auto r = rlhf::lm_loss(rlhf::cpu_backend{.threads = threads}, shifted, labels.view(), mask.view(), {},
                                 {.reduction = rlhf::lm_loss_reduction::sum});
    total += r.loss;
    tokens += r.tokens;
  }
  return tokens > 0 ? total / static_cast<double>(tokens) : 0.0;
}

/// Normalised reward-model scores of (prompt, response) pairs.
std::vector<double> reward_scores(rlhf::gpt& rm, std::span<const token_sequence> prompts,
                                  std::span<const token_sequence> responses, token_id pad, double bias,
                                  std::size_t batch = 64) {
  std::vector<double> out;
  for (std::size_t i = 0; i < prompts.size(); i += batch) {
    const std::size_t n = std::min(batch, prompts.size() - i);
    std::vector<rlhf::train::sft_example> ex;
    for (std::size_t k = 0; k < n; ++k) ex.push_back({prompts[i + k], responses[i + k]});
    const auto sb = rlhf::train::make_sft_batch(std::span<const rlhf::train::sft_example>(ex), pad);
    rlhf::tensor<std::ptrdiff_t, 1> end(static_cast<std::ptrdiff_t>(n));
    for (std::size_t k = 0; k < n; ++k)
      end(static_cast<std::ptrdiff_t>(k)) = static_cast<std::ptrdiff_t>(prompts[i + k].size() + responses[i + k].size()) - 1;
    rlhf::tensor<float, 1> s(static_cast<std::ptrdiff_t>(n));
    rm.scores(sb.view(), end.view(), s.view());
    for (std::size_t k = 0; k < n; ++k) out.push_back(s(static_cast<std::ptrdiff_t>(k)) + bias);
  }
  return out;
}

// ---- evaluation -------------------------------------------------------------------------------

struct evaluation {
  std::string name;
  std::size_t parameters = 0;
  std::vector<token_sequence> responses;  // one per eval prompt
  std::vector<instructgpt::completion> completions;
  double correct = 0, stops = 0, full_stop = 0, labeler_score = 0;
  double win_vs_sft = 0.5;
  double kl_to_sft = 0;
  double heldout = 0;
  std::vector<double> rm_scores;
};

}  // namespace

int main(int argc, char** argv) {
  const settings s = parse_arguments(argc, argv);
  const auto t_start = clock_type::now();
  fs::create_directories(fs::path(s.out) / "checkpoints");
  const fs::path out(s.out);
  const std::uint64_t print_every = s.quick ? 20 : 50;
  say("InstructGPT in miniature%s: output in %s/, %d thread(s), seed %llu\n", s.quick ? " (--quick)" : "",
      s.out.c_str(), s.threads, static_cast<unsigned long long>(s.seed));

  // ---- corpus and tokenizer ---------------------------------------------------------------------
  const std::string corpus = read_text(s.corpus);
  const std::size_t split = corpus.size() * 95 / 100;
  const std::string train_text = corpus.substr(0, split);
  const std::string heldout_text = corpus.substr(split);

  auto t0 = clock_type::now();
  rlhf::bpe_trainer bpe(rlhf::pretokenizer::gpt2(), {"<|endoftext|>"});
  bpe.add_text(train_text);
  const rlhf::bpe_vocabulary vocabulary = bpe.train({.vocab_size = s.vocab, .min_frequency = 2});
  write_text(out / "tokenizer.tiktoken", vocabulary.to_tiktoken());
#if defined(RLHF_TOKENIZER_HAS_HF_JSON)
  write_text(out / "tokenizer.json", vocabulary.to_hf_json());
#endif
  text_codec codec{vocabulary.tokenizer(), 0};
  codec.eos = codec.tokenizer.eos_id();
  const std::size_t vocab = codec.tokenizer.vocab_size();
  const token_sequence train_tokens = codec.encode(train_text);
  const token_sequence heldout_tokens = codec.encode(heldout_text);
  say("[1] tokenizer: byte-level BPE, %zu tokens, trained in %.1f s; corpus %zu tokens (%.2f bytes/token)\n", vocab,
      seconds_since(t0), train_tokens.size(), static_cast<double>(train_text.size()) / static_cast<double>(train_tokens.size()));

  auto windows_of = [&](const token_sequence& tokens, std::size_t stride) {
    std::vector<token_sequence> w;
    const auto len = static_cast<std::size_t>(s.window);
    for (std::size_t i = 0; i + len <= tokens.size(); i += stride)
      w.emplace_back(tokens.begin() + static_cast<std::ptrdiff_t>(i), tokens.begin() + static_cast<std::ptrdiff_t>(i + len));
    return w;
  };
  const std::vector<token_sequence> pretrain_windows = windows_of(train_tokens, static_cast<std::size_t>(s.window) / 2);
  std::vector<token_sequence> heldout_windows = windows_of(heldout_tokens, static_cast<std::size_t>(s.window));
  if (heldout_windows.size() > (s.quick ? 32u : 160u)) heldout_windows.resize(s.quick ? 32 : 160);

  // ---- pretraining ------------------------------------------------------------------------------
  auto pretrain = [&](rlhf::gpt& model, std::uint64_t steps, const char* name) {
    const auto t = clock_type::now();
    std::vector<rlhf::train::sft_example> ex;
    ex.reserve(pretrain_windows.size());
    for (const auto& w : pretrain_windows) ex.push_back({{}, w});
    auto opt = make_optimizer(1e-3, steps, steps / 10, true, 0.01);
    rlhf::train::sft_trainer trainer(model, opt,
                                     {.loss_on = rlhf::train::sft_loss_tokens::all,
                                      .batch_size = 16,
                                      .seed = s.seed,
                                      .pad_id = codec.eos,
                                      .backend = {.threads = s.threads}});
    recorder rec(out / ("pretrain_" + std::string(name) + ".jsonl"), {"loss"}, print_every);
    trainer.fit(ex, {.epochs = 1000, .max_steps = steps, .on_step = std::ref(rec)});
    say("[2] pretrain %-5s: %zu parameters, %llu steps of 16x%td tokens in %.1f s, held-out loss %.3f\n", name,
        static_cast<std::size_t>(model.parameter_count()), static_cast<unsigned long long>(steps), s.window,
        seconds_since(t), heldout_loss(model, heldout_windows, codec.eos, s.threads));
  };
  rlhf::gpt small = make_model(s, s.small, vocab, s.seed);
  rlhf::gpt large = make_model(s, s.large, vocab, s.seed + 1);
  pretrain(small, s.pretrain_steps_small, "small");
  pretrain(large, s.pretrain_steps_large, "large");

  // ---- task, demonstrations and SFT -----------------------------------------------------------
  const instructgpt::task task(train_text);
  const instructgpt::task heldout_task(heldout_text);
  const instructgpt::labeler labeler;
  rlhf::rng data_rng({.seed = s.seed, .stream = 1});
  std::vector<rlhf::train::sft_example> demos;
  for (std::size_t i = 0; i < s.demonstrations; ++i) {
    const auto e = task.sample(data_rng);
    demos.push_back({codec.encode(e.prompt), codec.response_tokens(instructgpt::demonstrate(e, data_rng))});
  }
  auto sft = [&](rlhf::gpt& model, const char* name) {
    const auto t = clock_type::now();
    const std::uint64_t steps = s.sft_epochs * ((demos.size() + 15) / 16);
    auto opt = make_optimizer(3e-4, steps, steps / 20, true);
    rlhf::train::sft_trainer trainer(model, opt,
                                     {.batch_size = 16, .seed = s.seed + 2, .pad_id = codec.eos,
                                      .backend = {.threads = s.threads}});
    recorder rec(out / ("sft_" + std::string(name) + ".jsonl"), {"loss"}, print_every);
    trainer.fit(demos, {.epochs = s.sft_epochs, .on_step = std::ref(rec)});
    say("[3] SFT %-5s: %zu demonstrations x %llu epochs in %.1f s, final loss %.3f\n", name, demos.size(),
        static_cast<unsigned long long>(s.sft_epochs), seconds_since(t),
        rec.series["loss"].empty() ? NAN : rec.series["loss"].back());
  };
  sft(small, "small");
  sft(large, "large");
  rlhf::save_safetensors((out / "checkpoints" / "sft_small.safetensors").string(), small);
  rlhf::save_safetensors((out / "checkpoints" / "sft_large.safetensors").string(), large);

  // ---- rankings and the reward model ----------------------------------------------------------
  t0 = clock_type::now();
  std::vector<rlhf::train::ranking_example> rankings;
  {
    std::vector<instructgpt::example> examples;
    std::vector<token_sequence> prompts;
    for (std::size_t i = 0; i < s.ranking_prompts; ++i) {
      examples.push_back(task.sample(data_rng));
      for (std::size_t k = 0; k < s.k; ++k) prompts.push_back(codec.encode(examples.back().prompt));
    }
    const auto responses = generate(small, codec, prompts, s.max_new_tokens, s.seed + 3);
    for (std::size_t i = 0; i < examples.size(); ++i) {
      std::vector<instructgpt::completion> c;
      rlhf::train::ranking_example r;
      r.prompt = prompts[i * s.k];
      for (std::size_t k = 0; k < s.k; ++k) {
        c.push_back(codec.completion_of(responses[i * s.k + k]));
        r.completions.push_back(responses[i * s.k + k]);
      }
      const auto order = labeler.rank(examples[i], c, data_rng);
      r.ranks.assign(s.k, 0);
      for (std::size_t pos = 0; pos < order.size(); ++pos) r.ranks[static_cast<std::size_t>(order[pos])] = static_cast<std::int32_t>(pos);
      rankings.push_back(std::move(r));
    }
  }
  const std::size_t rm_heldout = rankings.size() / 10;
  const std::span<const rlhf::train::ranking_example> rm_train(rankings.data() + rm_heldout, rankings.size() - rm_heldout);
  const std::span<const rlhf::train::ranking_example> rm_eval(rankings.data(), rm_heldout);
  say("[4] rankings: %zu prompts x K=%zu completions from the small SFT model, ranked by the labeler in %.1f s\n",
      rankings.size(), s.k, seconds_since(t0));

  t0 = clock_type::now();
  rlhf::gpt rm = small.with_head(rlhf::gpt_head::reward, s.seed + 4);
  double rm_accuracy = 0, rm_bias = 0;
  {
    const std::uint64_t steps = s.rm_epochs * ((rm_train.size() + 15) / 16);
    auto opt = make_optimizer(1e-4, steps, steps / 20, true);
    rlhf::train::reward_model_trainer trainer(rm, opt, {.batch_size = 16, .seed = s.seed + 5, .pad_id = codec.eos});
    recorder rec(out / "reward_model.jsonl", {"loss", "accuracy"}, print_every);
    trainer.fit(rm_train, {.epochs = s.rm_epochs, .on_step = std::ref(rec)});
    rm_accuracy = trainer.evaluate(rm_eval).at("eval/accuracy");
    const auto normaliser = rlhf::train::fit_reward_normalizer(rm, std::span<const rlhf::train::sft_example>(demos),
                                                               codec.eos);
    rm_bias = normaliser.bias;
  }
  rlhf::save_safetensors((out / "checkpoints" / "reward_model.safetensors").string(), rm);
  say("[5] reward model: %zu rankings (%zu pairs each) x %llu epochs in %.1f s; held-out pair accuracy %s\n",
      rm_train.size(), s.k * (s.k - 1) / 2, static_cast<unsigned long long>(s.rm_epochs), seconds_since(t0),
      percent(rm_accuracy).c_str());

  // ---- PPO and PPO-ptx ----------------------------------------------------------------------------
  std::vector<token_sequence> ppo_prompts;
  for (std::size_t i = 0; i < s.ppo_steps * s.ppo_batch; ++i) ppo_prompts.push_back(codec.encode(task.sample(data_rng).prompt));
  const std::vector<std::string> curve_keys{"objective/scores", "objective/kl", "kl_ctl/beta", "objective/ptx_loss"};
  auto run_ppo = [&](double ptx_coef, const char* name, recorder& rec) {
    const auto t = clock_type::now();
    rlhf::gpt policy = small;
    rlhf::gpt reference = small;
    rlhf::gpt value = rm.with_head(rlhf::gpt_head::value);
    auto policy_opt = make_optimizer(s.ppo_lr, s.ppo_steps, 10, false);
    auto value_opt = make_optimizer(2 * s.ppo_lr, s.ppo_steps, 10, false);
    rlhf::train::ppo_options o;
    o.generation = {.max_new_tokens = s.max_new_tokens, .stop_tokens = {codec.eos}};
    o.batch_size = s.ppo_batch;
    o.minibatches = 4;
    o.ppo_epochs = 1;
    o.kl = rlhf::adaptive_kl{.init = 0.05, .target = 2.0, .horizon = 10000};
    o.score_normalizer = {.gain = 1.0, .bias = rm_bias};
    o.objective.ptx_coef = ptx_coef;
    o.ptx_batch_size = 8;
    o.seed = s.seed + 6;
    o.pad_id = codec.eos;
    o.backend = {.threads = s.threads};
    rlhf::train::ppo_trainer trainer(policy, policy_opt, value, value_opt, rm, reference, o);
    trainer.fit(ppo_prompts, ptx_coef > 0 ? std::span<const token_sequence>(pretrain_windows) : std::span<const token_sequence>{},
                {.epochs = 1, .max_steps = s.ppo_steps, .on_step = std::ref(rec)});
    say("[6] %-7s: %llu iterations of %zu prompts in %.1f s; reward %.3f -> %.3f, KL %.3f\n", name,
        static_cast<unsigned long long>(s.ppo_steps), s.ppo_batch, seconds_since(t), rec.series["objective/scores"].front(),
        rec.series["objective/scores"].back(), rec.series["objective/kl"].back());
    return policy;
  };
  recorder ppo_rec(out / "ppo.jsonl", curve_keys, print_every / 5);
  recorder ptx_rec(out / "ppo_ptx.jsonl", curve_keys, print_every / 5);
  rlhf::gpt ppo = run_ppo(0.0, "PPO", ppo_rec);
  rlhf::gpt ppo_ptx = run_ppo(s.quick ? 1.0 : 1.0, "PPO-ptx", ptx_rec);
  rlhf::save_safetensors((out / "checkpoints" / "ppo.safetensors").string(), ppo);
  rlhf::save_safetensors((out / "checkpoints" / "ppo_ptx.safetensors").string(), ppo_ptx);

  // ---- evaluation ---------------------------------------------------------------------------------
  t0 = clock_type::now();
  rlhf::rng eval_rng({.seed = s.seed, .stream = 7});
  std::vector<instructgpt::example> eval_examples;
  std::vector<token_sequence> eval_prompts;
  for (std::size_t i = 0; i < s.eval_prompts; ++i) {
    eval_examples.push_back(heldout_task.sample(eval_rng));
    eval_prompts.push_back(codec.encode(eval_examples.back().prompt));
  }
  std::vector<evaluation> results;
  auto evaluate = [&](rlhf::gpt& model, const char* name) {
    evaluation e;
    e.name = name;
    e.parameters = static_cast<std::size_t>(model.parameter_count());
    e.responses = generate(model, codec, eval_prompts, s.max_new_tokens, s.seed + 100);
    for (std::size_t i = 0; i < eval_examples.size(); ++i) {
      const auto c = codec.completion_of(e.responses[i]);
      e.correct += instructgpt::labeler::correctness(eval_examples[i], c.text) == 1.0;
      e.stops += instructgpt::labeler::stops_after_answer(eval_examples[i], c);
      e.full_stop += instructgpt::labeler::has_full_stop(eval_examples[i], c);
      e.labeler_score += labeler.score(eval_examples[i], c);
      e.completions.push_back(c);
    }
    const auto n = static_cast<double>(eval_examples.size());
    e.correct /= n, e.stops /= n, e.full_stop /= n, e.labeler_score /= n;
    e.heldout = heldout_loss(model, heldout_windows, codec.eos, s.threads);
    e.rm_scores = reward_scores(rm, eval_prompts, e.responses, codec.eos, rm_bias);
    const auto own = sequence_logprobs(model, eval_prompts, e.responses, codec.eos, s.threads);
    const auto ref = sequence_logprobs(small, eval_prompts, e.responses, codec.eos, s.threads);
    for (std::size_t i = 0; i < own.size(); ++i) e.kl_to_sft += (own[i] - ref[i]) / n;
    results.push_back(std::move(e));
  };
  evaluate(small, "SFT");
  evaluate(large, "SFT large");
  evaluate(ppo, "PPO");
  evaluate(ppo_ptx, "PPO-ptx");
  auto win_rate = [&](const evaluation& a, const evaluation& b) {
    double w = 0;
    for (std::size_t i = 0; i < eval_examples.size(); ++i) w += labeler.prefers(eval_examples[i], a.completions[i], b.completions[i]);
    return w / static_cast<double>(eval_examples.size());
  };
  for (auto& e : results) e.win_vs_sft = win_rate(e, results[0]);
  const double large_vs_ptx = win_rate(results[1], results[3]);
  say("[7] evaluation on %zu held-out prompts in %.1f s\n\n", eval_examples.size(), seconds_since(t0));

  // ---- report -------------------------------------------------------------------------------------
  std::ostringstream table;
  table << "| model | parameters | win rate vs SFT | labeler score | correct | stops after answer | full stop | "
           "RM score | KL to SFT (nats/seq) | held-out pretraining loss |\n"
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const auto& e : results) {
    const double mean_rm = std::accumulate(e.rm_scores.begin(), e.rm_scores.end(), 0.0) / static_cast<double>(e.rm_scores.size());
    table << "| " << e.name << " | " << e.parameters << " | " << percent(e.win_vs_sft) << " | " << fixed(e.labeler_score, 2)
          << " | " << percent(e.correct) << " | " << percent(e.stops) << " | " << percent(e.full_stop) << " | "
          << fixed(mean_rm, 2) << " | " << fixed(e.kl_to_sft, 2) << " | " << fixed(e.heldout, 3) << " |\n";
  }
  const evaluation& sft_e = results[0];
  const evaluation& ppo_e = results[2];
  const evaluation& ptx_e = results[3];
  std::ostringstream findings;
  findings << "- PPO-ptx against SFT: labeler win rate " << percent(ptx_e.win_vs_sft)
           << (ptx_e.win_vs_sft > 0.5 ? " — preferred to SFT." : " — NOT preferred to SFT in this run.") << "\n";
  findings << "- PPO against SFT: " << percent(ppo_e.win_vs_sft) << ".\n";
  findings << "- The larger SFT model (" << results[1].parameters << " parameters, "
           << fixed(static_cast<double>(results[1].parameters) / static_cast<double>(sft_e.parameters), 1)
           << "x) against the small PPO-ptx model: it wins " << percent(large_vs_ptx) << " of comparisons"
           << (large_vs_ptx < 0.5   ? " — the small RLHF model is preferred, as in the paper's 1.3B vs 175B finding."
               : large_vs_ptx > 0.5 ? " — the larger SFT model is preferred in this run."
                                    : " — a tie in this run.")
           << "\n";
  const double tax_ppo = ppo_e.heldout - sft_e.heldout, tax_ptx = ptx_e.heldout - sft_e.heldout;
  findings << "- Alignment tax (held-out pretraining loss minus SFT's): PPO " << fixed(tax_ppo, 3) << ", PPO-ptx "
           << fixed(tax_ptx, 3)
           << (tax_ptx < tax_ppo ? " — the pretraining mix reduces the regression."
                                 : " — the pretraining mix did NOT reduce the regression in this run.")
           << "\n";
  findings << "- Reward model: held-out pair accuracy " << percent(rm_accuracy) << " (labelers with noise; the paper's "
           << "RM reaches 72-73 % on its held-out labelers).\n";

  auto curve = [&](const recorder& r, const std::string& key) {
    return instructgpt::svg::series{"", r.steps, r.series.at(key)};
  };
  auto two = [&](const std::string& key) {
    auto a = curve(ppo_rec, key);
    a.name = "PPO";
    auto b = curve(ptx_rec, key);
    b.name = "PPO-ptx";
    return std::vector<instructgpt::svg::series>{a, b};
  };
  write_text(out / "reward.svg", instructgpt::svg::line_chart("Reward-model score of the rollouts", "PPO iteration",
                                                              "mean score", two("objective/scores")));
  write_text(out / "kl.svg", instructgpt::svg::line_chart("KL to the SFT model", "PPO iteration", "nats per sequence",
                                                          two("objective/kl")));
  write_text(out / "beta.svg", instructgpt::svg::line_chart("Adaptive KL coefficient", "PPO iteration", "beta",
                                                            two("kl_ctl/beta")));
  std::vector<std::pair<std::string, std::vector<double>>> hist;
  for (const auto& e : results) hist.emplace_back(e.name, e.rm_scores);
  write_text(out / "scores.svg", instructgpt::svg::histogram("Reward-model scores on held-out prompts", "score", hist));

  std::ostringstream report;
  report << "# InstructGPT in miniature\n\n"
         << "One run of `examples/instructgpt`" << (s.quick ? " (`--quick`)" : "") << ", seed " << s.seed << ", "
         << s.threads << " thread(s), " << fixed(seconds_since(t_start), 0) << " s. Every number below is measured on "
         << eval_examples.size() << " held-out prompts (drawn from the last 5 % of the corpus) with fixed seeds; "
         << "the labeler judges without noise here.\n\n"
         << "## Findings\n\n" << findings.str() << "\n## Models\n\n" << table.str()
         << "\n`win rate vs SFT`: how often the labeler prefers the model's completion to the small SFT model's "
         << "(ties count half). `correct`: the exact answer; `stops after answer`: nothing after it, then end-of-text; "
         << "`full stop`: the format the demonstrations rarely show and the labeler likes.\n\n"
         << "## Figures\n\n![reward](reward.svg)\n\n![KL](kl.svg)\n\n![beta](beta.svg)\n\n![scores](scores.svg)\n\n"
         << "## Samples\n\n| prompt | SFT | PPO-ptx |\n|---|---|---|\n";
  auto cell = [](const instructgpt::completion& c) {
    std::string t;
    for (char ch : c.text) t += ch == '|' ? '/' : (ch == '\n' ? ' ' : ch);
    return "`" + t + "`" + (c.stopped ? " ⏹" : " …");
  };
  for (std::size_t i = 0; i < std::min<std::size_t>(8, eval_examples.size()); ++i) {
    std::string p = eval_examples[i].prompt;
    std::replace(p.begin(), p.end(), '\n', ' ');
    report << "| `" << p << "` | " << cell(sft_e.completions[i]) << " | " << cell(ptx_e.completions[i]) << " |\n";
  }
  write_text(out / "report.md", report.str());

  auto quarter_means = [](const std::vector<double>& v) {
    const std::size_t q = std::max<std::size_t>(1, v.size() / 4);
    double first = 0, last = 0;
    for (std::size_t i = 0; i < q; ++i) first += v[i] / static_cast<double>(q), last += v[v.size() - 1 - i] / static_cast<double>(q);
    return std::pair{first, last};
  };
  std::ostringstream summary;
  summary << "{";
  for (const auto* r : {&ppo_rec, &ptx_rec}) {
    const auto [first, last] = quarter_means(r->series.at("objective/scores"));
    summary << (r == &ppo_rec ? "\"ppo\"" : ", \"ppo_ptx\"") << ": {\"reward_first_quarter\": " << first
            << ", \"reward_last_quarter\": " << last << "}";
  }
  for (const auto& e : results)
    summary << ", \"" << e.name << "\": {\"win_rate_vs_sft\": " << e.win_vs_sft << ", \"heldout_loss\": " << e.heldout
            << ", \"kl_to_sft\": " << e.kl_to_sft << ", \"correct\": " << e.correct << "}";
  summary << ", \"large_sft_vs_ppo_ptx\": " << large_vs_ptx << ", \"rm_accuracy\": " << rm_accuracy << "}\n";
  write_text(out / "summary.json", summary.str());

  std::printf("%s\n%s\n", table.str().c_str(), findings.str().c_str());
  say("report: %s/report.md (figures reward.svg kl.svg beta.svg scores.svg); metrics: %s/*.jsonl; total %.0f s\n",
      s.out.c_str(), s.out.c_str(), seconds_since(t_start));
  return 0;
}
