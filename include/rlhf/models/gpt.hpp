// rlhf/models/gpt.hpp — the library's reference GPT: a GPT-2-style decoder that trains and
// generates on CPUs and models Policy, ValueModel, RewardModel (and FusedLogProbs).
//
//   rlhf::gpt policy{{.vocab_size = 50257, .context = 1024, .layers = 12, .heads = 12, .width = 768}};
//   policy.forward(batch, logits);          // logits (B, T, V)
//   policy.backward(dlogits);               // accumulates into every parameter's grad
//   auto out = policy.generate(prompts, {.max_new_tokens = 64, .stop_tokens = {eos}, .seed = 1});
//   auto rm = policy.with_head(rlhf::gpt_head::reward);   // SFT trunk + a fresh reward head
//   auto vf = rm.with_head(rlhf::gpt_head::value);        // trunk and head copied from the RM
//
// Architecture (GPT-2): x = wte[token] + wpe[position]; L pre-LN blocks
//   x += c_proj(attn(ln_1(x)));  x += mlp.c_proj(gelu_tanh(mlp.c_fc(ln_2(x))))
// then ln_f, and one head: `lm` logits = ln_f(x)·wteᵀ (tied unembedding); `value` one scalar per
// position and `reward` one per sequence, read at end_index, both score(ln_f(x)) = ⟨·, w⟩ + b.
// Attention: query t sees key s when s ≤ t and mask[b, s] ≠ 0; a query that sees no key (left
// padding) outputs 0, never NaN. Positions come from token_batch.positions, so left padding is
// exact.
//
// Parameters carry Hugging Face GPT-2's names and layouts (Conv1D weights stored (in, out)):
//   wte.weight (V, D), wpe.weight (context, D), h.{l}.ln_1.{weight,bias} (D),
//   h.{l}.attn.c_attn.weight (D, 3D), .bias (3D), h.{l}.attn.c_proj.weight (D, D), .bias (D),
//   h.{l}.ln_2.*, h.{l}.mlp.c_fc.weight (D, 4D), .bias (4D), h.{l}.mlp.c_proj.weight (4D, D),
//   .bias (D), ln_f.{weight,bias}; value and reward heads add score.weight (1, D), score.bias (1).
// They live in one contiguous buffer (values) and one for gradients, in that order.
//
// Buffers: every activation of the last forward is kept in a workspace sized for the largest
// (B, T) seen, so a training step at a fixed shape allocates nothing. Threads: cpu_backend's
// count splits GEMMs, attention (over B·H) and the row-wise layers; results do not depend on
// how the work was scheduled. basic_gpt<double> exists for gradient checks.
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/concepts.hpp>
#include <rlhf/config.hpp>
#include <rlhf/cpu/gpt_kernels.hpp>
#include <rlhf/detail/checks.hpp>
#include <rlhf/error.hpp>
#include <rlhf/reward_head.hpp>
#include <rlhf/rng.hpp>
#include <rlhf/sampler.hpp>
#include <rlhf/tensor.hpp>
#include <rlhf/tensor_view.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rlhf {

/// Which head sits on the trunk.
enum class gpt_head {
  lm,      ///< tied unembedding: logits (B, T, V) — the policy
  value,   ///< linear D → 1 at every position: values (B, T)
  reward,  ///< linear D → 1 at end_index: scores (B)
};

/// Shape and initialisation of a GPT. Defaults: GPT-2 small (124M) with an LM head.
struct gpt_config {
  std::ptrdiff_t vocab_size = 50257;
  std::ptrdiff_t context = 1024;  ///< positions 0 … context − 1
  std::ptrdiff_t layers = 12;
  std::ptrdiff_t heads = 12;
  std::ptrdiff_t width = 768;  ///< D; a multiple of heads
  gpt_head head = gpt_head::lm;
  double layer_norm_eps = 1e-5;  ///< GPT-2's layer_norm_epsilon
  std::uint64_t seed = 0;        ///< initial weights: rng{{.seed = seed}} in parameter order
  double init_std = 0.02;        ///< N(0, init_std²); residual projections / √(2·layers)
};

/// What generate() returns, in the layout the RL components take. T_resp is the longest
/// response produced (≤ max_new_tokens).
///   tokens (B, T_resp)  — response ids; 0 after a row's end;
///   logp (B, T_resp)    — log-prob of each sampled token under softmax(logits / temperature),
///                         0 after the end;
///   mask (B, T_resp)    — 1 on response tokens (stop token included), 0 after;
///   end_index (B)       — index of the last response token (the stop token when one came).
template <class T>
struct gpt_generation {
  tensor<token_id, 2> tokens;
  tensor<T, 2> logp;
  tensor<std::uint8_t, 2> mask;
  tensor<std::ptrdiff_t, 1> end_index;
};

template <class T>
class basic_gpt {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                "rlhf::basic_gpt<T>: T is float (rlhf::gpt) or double (gradient checks)");
  using index = std::ptrdiff_t;

 public:
  using scalar_type = T;

  /// A model of the given shape with GPT-2 / nanoGPT initial weights drawn from config.seed.
  explicit basic_gpt(const gpt_config& config, cpu_backend backend = cpu)
      : config_(config), backend_(backend) {
    check_config(config);
    build_layout();
    init_weights(config.seed);
  }

  /// A deep copy of the weights and gradients (e.g. the frozen reference policy); the copy
  /// starts with an empty workspace, so backward needs a forward on it first.
  basic_gpt(const basic_gpt& other)
      : config_(other.config_), backend_(other.backend_), params_(other.params_), layers_(other.layers_),
        total_(other.total_), trunk_size_(other.trunk_size_), lnf_w_(other.lnf_w_), lnf_b_(other.lnf_b_),
        values_(other.values_), grads_(other.grads_) {}
  basic_gpt(basic_gpt&&) noexcept = default;
  basic_gpt& operator=(const basic_gpt& other) {
    if (this != &other) *this = basic_gpt(other);
    return *this;
  }
  basic_gpt& operator=(basic_gpt&&) noexcept = default;
  ~basic_gpt() = default;

  // ---- configuration ----------------------------------------------------------------------
  [[nodiscard]] const gpt_config& config() const noexcept { return config_; }
  [[nodiscard]] index vocab_size() const noexcept { return config_.vocab_size; }
  [[nodiscard]] index width() const noexcept { return config_.width; }
  [[nodiscard]] gpt_head head() const noexcept { return config_.head; }
  [[nodiscard]] cpu_backend backend() const noexcept { return backend_; }
  void set_backend(cpu_backend backend) noexcept { backend_ = backend; }

  /// Re-draws every weight: N(0, init_std²) for embeddings and linear weights (the two residual
  /// projections of each block scaled by 1/√(2·layers)), layer norms 1 and 0, biases 0, the
  /// score head N(0, 1/(D+1)) with bias 0 (rlhf::init_head). Gradients are zeroed.
  void init_weights(std::uint64_t seed) {
    rng gen{{.seed = seed}};
    const double residual = config_.init_std / std::sqrt(2.0 * static_cast<double>(config_.layers));
    for (const auto& p : params_) {
      T* v = values_.data() + p.offset;
      const std::string_view name = p.name;
      const auto ends = [&](std::string_view s) {
        return name.size() >= s.size() && name.substr(name.size() - s.size()) == s;
      };
      if (name == "score.weight" || name == "score.bias") continue;
      if (ends("ln_1.weight") || ends("ln_2.weight") || name == "ln_f.weight") {
        std::fill(v, v + p.size, T(1));
      } else if (ends(".bias")) {
        std::fill(v, v + p.size, T(0));
      } else {
        const double sd = ends("c_proj.weight") ? residual : config_.init_std;
        for (index i = 0; i < p.size; ++i) v[i] = static_cast<T>(sd * gen.normal<double>());
      }
    }
    if (config_.head != gpt_head::lm) init_head(gen, score_weight(), score_bias());
    zero_grad();
  }

  /// A copy of this model's trunk under another head. The score head (weight and bias) is
  /// copied when both models have one (reward → value: InstructGPT initialises the value
  /// function from the reward model); otherwise a new one is drawn from `seed`.
  [[nodiscard]] basic_gpt with_head(gpt_head head, std::uint64_t seed = 0) const {
    gpt_config c = config_;
    c.head = head;
    basic_gpt out(c, backend_);
    out.init_weights(seed);
    std::copy(values_.data(), values_.data() + trunk_size_, out.values_.data());
    if (head != gpt_head::lm && config_.head != gpt_head::lm)
      std::copy(values_.data() + trunk_size_, values_.data() + values_.size(), out.values_.data() + trunk_size_);
    return out;
  }

  // ---- parameters -------------------------------------------------------------------------
  /// Every tensor, in storage order: {name, value, grad}, flattened row-major.
  [[nodiscard]] std::vector<parameter_ref<T>> parameters() {
    std::vector<parameter_ref<T>> out;
    out.reserve(params_.size());
    for (const auto& p : params_)
      out.push_back({p.name, vector_view<T>(values_.data() + p.offset, p.size),
                     vector_view<T>(grads_.data() + p.offset, p.size)});
    return out;
  }

  /// The shape of a parameter, e.g. {768, 2304} for "h.0.attn.c_attn.weight".
  [[nodiscard]] std::vector<std::int64_t> shape(std::string_view parameter_name) const {
    for (const auto& p : params_)
      if (p.name == parameter_name) return p.shape;
    detail::fail("rlhf::gpt::shape()", "no parameter named '" + std::string(parameter_name) + "'");
  }

  /// Number of scalar parameters.
  [[nodiscard]] index parameter_count() const noexcept { return values_.size(); }

  /// All values / all gradients as one vector each (storage order of parameters()).
  [[nodiscard]] vector_view<T> flat_values() noexcept { return values_.view(); }
  [[nodiscard]] vector_view<T> flat_grads() noexcept { return grads_.view(); }

  void zero_grad() noexcept { grads_.fill(T(0)); }

  // ---- LM head (CausalLM, Policy) -----------------------------------------------------------
  /// logits (B, T, V), contiguous: position t predicts token t + 1.
  void forward(const token_batch& batch, cube_view<T> logits) {
    constexpr const char* function = "rlhf::gpt::forward()";
    require_head(function, gpt_head::lm);
    check_batch(function, batch);
    require_output(function, "logits", logits, batch, config_.vocab_size, "V");
    trunk_forward(batch);
    cpu_impl::gpt_kernels::gemm<false, true>(backend_, n_, config_.vocab_size, config_.width, ws_.lnf, config_.width,
                                   wte(), config_.width, logits.data_handle(), config_.vocab_size, false);
    last_ = pass::logits;
  }

  /// Accumulates parameter gradients from dlogits (B, T, V) of the last forward().
  void backward(cube_view<const T> dlogits) {
    constexpr const char* function = "rlhf::gpt::backward()";
    require_last(function, pass::logits, "forward()");
    require_grad_input(function, "dlogits", dlogits, config_.vocab_size, "V");
    const index d = config_.width, v = config_.vocab_size;
    cpu_impl::gpt_kernels::gemm<false, false>(backend_, n_, d, v, dlogits.data_handle(), v, wte(), d, ws_.dlnf, d, false);
    cpu_impl::gpt_kernels::gemm<true, false>(backend_, v, d, n_, dlogits.data_handle(), v, ws_.lnf, d,
                                   grad_of(wte_offset()), d, true);
    trunk_backward();
  }

  // ---- FusedLogProbs ------------------------------------------------------------------------
  /// The final hidden states (after ln_f), out (B, T, D), any strides. Any head.
  void hidden(const token_batch& batch, cube_view<T> out) {
    constexpr const char* function = "rlhf::gpt::hidden()";
    check_batch(function, batch);
    detail::require_lazy(out.extent(0) == batch.tokens.extent(0) && out.extent(1) == batch.tokens.extent(1) &&
                             out.extent(2) == config_.width,
                         function, [&] {
                           return "out is " + shape_string(out) + " but must be " + std::to_string(batch.tokens.extent(0)) +
                                  "x" + std::to_string(batch.tokens.extent(1)) + "x" + std::to_string(config_.width) +
                                  " (B x T x D)";
                         });
    trunk_forward(batch);
    for (index b = 0; b < b_; ++b)
      for (index t = 0; t < t_; ++t)
        for (index c = 0; c < config_.width; ++c) out(b, t, c) = ws_.lnf[(b * t_ + t) * config_.width + c];
    last_ = pass::hidden;
  }

  /// The unembedding W = wte (V, D): logits = hidden · Wᵀ.
  [[nodiscard]] matrix_view<const T> unembedding() const noexcept {
    return matrix_view<const T>(values_.data() + wte_offset(), config_.vocab_size, config_.width);
  }
  /// wte's gradient (V, D): a fused kernel may accumulate dW straight into it and then pass
  /// this same view (or an empty one) to backward_hidden.
  [[nodiscard]] matrix_view<T> unembedding_grad() noexcept {
    return matrix_view<T>(grads_.data() + wte_offset(), config_.vocab_size, config_.width);
  }

  /// Backward from dhidden (B, T, D) of the last hidden(); dunembedding (V, D) is added to wte's
  /// gradient (skipped when empty or when it is unembedding_grad() itself).
  void backward_hidden(cube_view<const T> dhidden, matrix_view<const T> dunembedding) {
    constexpr const char* function = "rlhf::gpt::backward_hidden()";
    require_last(function, pass::hidden, "hidden()");
    detail::require_lazy(dhidden.extent(0) == b_ && dhidden.extent(1) == t_ && dhidden.extent(2) == config_.width,
                         function, [&] {
                           return "dhidden is " + shape_string(dhidden) + " but the last hidden() was " +
                                  std::to_string(b_) + "x" + std::to_string(t_) + "x" + std::to_string(config_.width);
                         });
    if (!dunembedding.empty()) {
      detail::require_lazy(dunembedding.extent(0) == config_.vocab_size && dunembedding.extent(1) == config_.width,
                           function, [&] {
                             return "dunembedding is " + shape_string(dunembedding) + " but must be " +
                                    std::to_string(config_.vocab_size) + "x" + std::to_string(config_.width) +
                                    " (V x D)";
                           });
      T* g = grad_of(wte_offset());
      if (dunembedding.data_handle() != g)
        for (index r = 0; r < config_.vocab_size; ++r)
          for (index c = 0; c < config_.width; ++c) g[r * config_.width + c] += dunembedding(r, c);
    }
    for (index b = 0; b < b_; ++b)
      for (index t = 0; t < t_; ++t)
        for (index c = 0; c < config_.width; ++c) ws_.dlnf[(b * t_ + t) * config_.width + c] = dhidden(b, t, c);
    trunk_backward();
  }

  // ---- value head (ValueModel) ----------------------------------------------------------------
  /// out (B, T): score(ln_f(x)) at every position (padding positions included; mask them).
  void values(const token_batch& batch, matrix_view<T> out) {
    constexpr const char* function = "rlhf::gpt::values()";
    require_scalar_head(function);
    check_batch(function, batch);
    trunk_forward(batch);
    value_head_forward(backend_, lnf_view(), score_weight(), score_bias(), out);
    last_ = pass::values;
  }

  /// Accumulates parameter gradients from dvalues (B, T) of the last values().
  void backward_values(matrix_view<const T> dvalues) {
    constexpr const char* function = "rlhf::gpt::backward_values()";
    require_last(function, pass::values, "values()");
    value_head_backward(backend_, lnf_view(), score_weight(), dvalues, dlnf_view(), score_weight_grad(),
                        score_bias_grad());
    trunk_backward();
  }

  // ---- reward head (RewardModel) --------------------------------------------------------------
  /// out (B): score(ln_f(x)) at end_index[b] (the last response token, EOS included).
  void scores(const token_batch& batch, vector_view<const std::ptrdiff_t> end_index, vector_view<T> out) {
    constexpr const char* function = "rlhf::gpt::scores()";
    require_scalar_head(function);
    check_batch(function, batch);
    trunk_forward(batch);
    reward_head_forward(backend_, lnf_view(), score_weight(), score_bias(), end_index, out);
    end_index_.assign(end_index.extent(0), 0);
    for (index b = 0; b < end_index.extent(0); ++b) end_index_[static_cast<std::size_t>(b)] = end_index(b);
    last_ = pass::scores;
  }

  /// Accumulates parameter gradients from dscores (B) of the last scores().
  void backward_scores(vector_view<const T> dscores) {
    constexpr const char* function = "rlhf::gpt::backward_scores()";
    require_last(function, pass::scores, "scores()");
    const vector_view<const std::ptrdiff_t> end(end_index_.data(), static_cast<index>(end_index_.size()));
    reward_head_backward(backend_, lnf_view(), score_weight(), end, dscores, dlnf_view(), score_weight_grad(),
                         score_bias_grad());
    trunk_backward();
  }

  // ---- generation (Policy) --------------------------------------------------------------------
  /// Prefill the left-padded prompts (B, T_prompt) — every row's last column must be a real
  /// token — then decode up to max_new_tokens tokens a row with a KV cache. Tokens are drawn by
  /// rlhf::sample_tokens; row b uses rlhf::rng{{.seed = options.seed, .stream = b}}, so its
  /// tokens do not depend on its batch mates. A row ends at its first stop token (kept, mask 1)
  /// or after max_new_tokens tokens; the rows that ended leave the decode batch. The KV cache and
  /// the decode buffers live in a workspace reused by later calls (growing only).
  [[nodiscard]] gpt_generation<T> generate(const token_batch& prompts, const generation_options& options) {
    constexpr const char* function = "rlhf::gpt::generate()";
    require_head(function, gpt_head::lm);
    check_batch(function, prompts);
    check_generation(function, prompts, options);
    const index batch = prompts.tokens.extent(0), prompt_len = prompts.tokens.extent(1);
    const index d = config_.width, v = config_.vocab_size, layers = config_.layers, heads = config_.heads;
    const index hd = d / heads, capacity = prompt_len + options.max_new_tokens, steps = options.max_new_tokens;
    const sampling_options sampling{.temperature = options.temperature, .top_k = options.top_k,
                                    .top_p = options.top_p, .greedy = options.greedy};
    last_ = pass::none;

    // Prefill: the training forward over the prompts, then K and V copied into the cache.
    trunk_forward(prompts);
    last_ = pass::none;
    generation_workspace& g = gen_;
    g.prepare(batch, d, v, layers * batch * heads * capacity * hd, capacity, steps, backend_);
    T* k_cache = g.k_cache.data();
    T* v_cache = g.v_cache.data();
    for (index b = 0; b < batch; ++b) {
      std::copy(ws_.valid + b * prompt_len, ws_.valid + (b + 1) * prompt_len, g.valid.data() + b * capacity);
      std::fill(g.valid.data() + b * capacity + prompt_len, g.valid.data() + (b + 1) * capacity, std::uint8_t{1});
    }
    for (index l = 0; l < layers; ++l) {
      const T* qkv = ws_.qkv + l * n_ * 3 * d;
      for (index b = 0; b < batch; ++b)
        for (index h = 0; h < heads; ++h) {
          const index item = (l * batch + b) * heads + h;
          for (index t = 0; t < prompt_len; ++t) {
            const T* row = qkv + (b * prompt_len + t) * 3 * d + h * hd;
            std::copy(row + d, row + d + hd, k_cache + (item * capacity + t) * hd);
            std::copy(row + 2 * d, row + 2 * d + hd, v_cache + (item * capacity + t) * hd);
          }
        }
    }
    // Logits of the last prompt position only.
    cpu_impl::gpt_kernels::gemm<false, true>(backend_, batch, v, d, ws_.lnf + (prompt_len - 1) * d, prompt_len * d,
                                             wte(), d, g.logits.data(), v, false);

    // Decode: the active rows (those not stopped yet) are packed at the front of every buffer;
    // rows[i] is the batch row of active slot i (its KV-cache row and its generator's stream).
    for (index b = 0; b < batch; ++b) {
      g.rows[static_cast<std::size_t>(b)] = b;
      g.generators[static_cast<std::size_t>(b)] = rng{{.seed = options.seed, .stream = static_cast<std::uint64_t>(b)}};
      g.length[static_cast<std::size_t>(b)] = 0;
    }
    std::fill(g.out_tokens.begin(), g.out_tokens.end(), token_id{0});
    std::fill(g.out_logp.begin(), g.out_logp.end(), T(0));
    index active = batch, produced = 0;
    for (index step = 0; step < steps && active > 0; ++step) {
      if (step > 0)
        decode_step(g, k_cache, v_cache, batch, active, capacity, prompt_len + step - 1);
      const std::span<rng> generators(g.generators.data(), static_cast<std::size_t>(active));
      sample_tokens(backend_, matrix_view<const T>(g.logits.data(), active, v), generators,
                    vector_view<token_id>(g.next.data(), active), vector_view<T>(g.next_logp.data(), active), sampling);
      produced = step + 1;
      index kept = 0;
      for (index i = 0; i < active; ++i) {
        const auto ui = static_cast<std::size_t>(i);
        const index b = g.rows[ui];
        const token_id tok = g.next[ui];
        g.out_tokens[static_cast<std::size_t>(b * steps + step)] = tok;
        g.out_logp[static_cast<std::size_t>(b * steps + step)] = g.next_logp[ui];
        g.length[static_cast<std::size_t>(b)] = step + 1;
        if (std::find(options.stop_tokens.begin(), options.stop_tokens.end(), tok) != options.stop_tokens.end())
          continue;
        // Row b goes on: packed into slot `kept` with its token, position and generator.
        const auto uk = static_cast<std::size_t>(kept);
        g.rows[uk] = b;
        g.next[uk] = tok;
        g.positions[uk] = static_cast<token_id>(prompts.positions(b, prompt_len - 1) + step + 1);
        if (kept != i) g.generators[uk] = g.generators[ui];
        ++kept;
      }
      active = kept;
    }

    gpt_generation<T> result{tensor<token_id, 2>(batch, produced), tensor<T, 2>(batch, produced),
                             tensor<std::uint8_t, 2>(batch, produced), tensor<std::ptrdiff_t, 1>(batch)};
    for (index b = 0; b < batch; ++b) {
      const index len = g.length[static_cast<std::size_t>(b)];
      for (index s = 0; s < produced; ++s) {
        const auto i = static_cast<std::size_t>(b * steps + s);
        const bool in = s < len;
        result.tokens(b, s) = in ? g.out_tokens[i] : token_id{0};
        result.logp(b, s) = in ? g.out_logp[i] : T(0);
        result.mask(b, s) = in ? 1 : 0;
      }
      result.end_index(b) = len - 1;
    }
    return result;
  }

 private:
  enum class pass { none, logits, hidden, values, scores };

  struct param_info {
    std::string name;
    index offset = 0;
    index size = 0;
    std::vector<std::int64_t> shape;
  };
  struct layer_offsets {
    index ln1_w, ln1_b, attn_w, attn_b, proj_w, proj_b, ln2_w, ln2_b, fc_w, fc_b, fcproj_w, fcproj_b;
  };

  /// Activations of the last trunk forward (pointers into one buffer) and backward scratch.
  struct workspace {
    tensor<T, 1> storage;
    std::vector<std::int32_t> tokens, positions;
    std::vector<std::uint8_t> valid_storage;
    const std::uint8_t* valid = nullptr;
    T *x = nullptr, *ln1 = nullptr, *ln1_mean = nullptr, *ln1_rstd = nullptr, *qkv = nullptr, *att = nullptr,
      *atty = nullptr, *mid = nullptr, *ln2 = nullptr, *ln2_mean = nullptr, *ln2_rstd = nullptr, *fch = nullptr,
      *fcg = nullptr, *lnf = nullptr, *lnf_mean = nullptr, *lnf_rstd = nullptr, *dres = nullptr, *dln = nullptr,
      *dqkv = nullptr, *datty = nullptr, *dfc = nullptr, *dlnf = nullptr, *scratch = nullptr;
  };

  /// Everything generate() needs besides the training workspace: the KV cache, the decode
  /// step's row buffers and the sampler's inputs and outputs. Grows only; reused by later calls.
  struct generation_workspace {
    std::vector<T> k_cache, v_cache, logits, x, ln, qkv, atty, fch, fcg, scratch, next_logp, out_logp;
    std::vector<std::uint8_t> valid;
    std::vector<index> rows, length;
    std::vector<token_id> next, positions, out_tokens;
    std::vector<rng> generators;

    template <class V>
    static void grow(V& v, index count) {
      if (static_cast<index>(v.size()) < count) v.resize(static_cast<std::size_t>(count));
    }
    void prepare(index batch, index d, index vocab, index cache, index capacity, index steps,
                 const cpu_backend& backend) {
      grow(k_cache, cache);
      grow(v_cache, cache);
      grow(logits, batch * vocab);
      grow(x, batch * d);
      grow(ln, batch * d);
      grow(qkv, batch * 3 * d);
      grow(atty, batch * d);
      grow(fch, batch * 4 * d);
      grow(fcg, batch * 4 * d);
      grow(scratch, std::max(1, backend.threads) * capacity);
      grow(next_logp, batch);
      grow(out_logp, batch * steps);
      grow(valid, batch * capacity);
      grow(rows, batch);
      grow(length, batch);
      grow(next, batch);
      grow(positions, batch);
      grow(out_tokens, batch * steps);
      if (static_cast<index>(generators.size()) < batch) generators.resize(static_cast<std::size_t>(batch), rng{});
    }
  };

  static void check_config(const gpt_config& c) {
    constexpr const char* function = "rlhf::gpt";
    const auto positive = [&](index value, const char* name) {
      detail::require(value > 0, function, std::string(name) + " must be positive, got " + std::to_string(value));
    };
    positive(c.vocab_size, "vocab_size");
    positive(c.context, "context");
    positive(c.layers, "layers");
    positive(c.heads, "heads");
    positive(c.width, "width");
    detail::require(c.width % c.heads == 0, function,
                    "width " + std::to_string(c.width) + " is not a multiple of heads " + std::to_string(c.heads));
    detail::require(c.vocab_size <= index{1} << 31, function,
                    "vocab_size " + std::to_string(c.vocab_size) + " does not fit rlhf::token_id");
    detail::require(std::isfinite(c.layer_norm_eps) && c.layer_norm_eps > 0, function,
                    "layer_norm_eps must be finite and > 0, got " + detail::number_string(c.layer_norm_eps));
    detail::require(std::isfinite(c.init_std) && c.init_std >= 0, function,
                    "init_std must be finite and >= 0, got " + detail::number_string(c.init_std));
  }

  void add_param(std::string name, std::vector<std::int64_t> shape) {
    index size = 1;
    for (auto s : shape) size *= static_cast<index>(s);
    params_.push_back({std::move(name), total_, size, std::move(shape)});
    total_ += size;
  }

  void build_layout() {
    const std::int64_t d = config_.width;
    add_param("wte.weight", {config_.vocab_size, d});
    add_param("wpe.weight", {config_.context, d});
    for (index l = 0; l < config_.layers; ++l) {
      const std::string p = "h." + std::to_string(l) + ".";
      layer_offsets o{};
      o.ln1_w = total_;
      add_param(p + "ln_1.weight", {d});
      o.ln1_b = total_;
      add_param(p + "ln_1.bias", {d});
      o.attn_w = total_;
      add_param(p + "attn.c_attn.weight", {d, 3 * d});
      o.attn_b = total_;
      add_param(p + "attn.c_attn.bias", {3 * d});
      o.proj_w = total_;
      add_param(p + "attn.c_proj.weight", {d, d});
      o.proj_b = total_;
      add_param(p + "attn.c_proj.bias", {d});
      o.ln2_w = total_;
      add_param(p + "ln_2.weight", {d});
      o.ln2_b = total_;
      add_param(p + "ln_2.bias", {d});
      o.fc_w = total_;
      add_param(p + "mlp.c_fc.weight", {d, 4 * d});
      o.fc_b = total_;
      add_param(p + "mlp.c_fc.bias", {4 * d});
      o.fcproj_w = total_;
      add_param(p + "mlp.c_proj.weight", {4 * d, d});
      o.fcproj_b = total_;
      add_param(p + "mlp.c_proj.bias", {d});
      layers_.push_back(o);
    }
    lnf_w_ = total_;
    add_param("ln_f.weight", {d});
    lnf_b_ = total_;
    add_param("ln_f.bias", {d});
    trunk_size_ = total_;
    if (config_.head != gpt_head::lm) {
      add_param("score.weight", {1, d});
      add_param("score.bias", {1});
    }
    values_ = tensor<T, 1>(total_);
    grads_ = tensor<T, 1>(total_);
  }

  [[nodiscard]] static constexpr index wte_offset() noexcept { return 0; }
  [[nodiscard]] index wpe_offset() const noexcept { return config_.vocab_size * config_.width; }
  [[nodiscard]] const T* wte() const noexcept { return values_.data() + wte_offset(); }
  [[nodiscard]] const T* value_of(index offset) const noexcept { return values_.data() + offset; }
  [[nodiscard]] T* grad_of(index offset) noexcept { return grads_.data() + offset; }

  [[nodiscard]] vector_view<T> score_weight() noexcept {
    return vector_view<T>(values_.data() + trunk_size_, config_.width);
  }
  [[nodiscard]] vector_view<T> score_bias() noexcept {
    return vector_view<T>(values_.data() + trunk_size_ + config_.width, 1);
  }
  [[nodiscard]] vector_view<T> score_weight_grad() noexcept {
    return vector_view<T>(grads_.data() + trunk_size_, config_.width);
  }
  [[nodiscard]] vector_view<T> score_bias_grad() noexcept {
    return vector_view<T>(grads_.data() + trunk_size_ + config_.width, 1);
  }
  [[nodiscard]] cube_view<const T> lnf_view() const noexcept { return cube_view<const T>(ws_.lnf, b_, t_, config_.width); }
  [[nodiscard]] cube_view<T> dlnf_view() noexcept { return cube_view<T>(ws_.dlnf, b_, t_, config_.width); }

  static const char* head_name(gpt_head h) noexcept {
    switch (h) {
      case gpt_head::lm: return "lm";
      case gpt_head::value: return "value";
      case gpt_head::reward: return "reward";
    }
    return "?";
  }

  void require_head(const char* function, gpt_head wanted) const {
    detail::require_lazy(config_.head == wanted, function, [&] {
      return std::string("needs the ") + head_name(wanted) + " head but this model has the " + head_name(config_.head) +
             " head (see with_head())";
    });
  }
  void require_scalar_head(const char* function) const {
    detail::require_lazy(config_.head != gpt_head::lm, function, [&] {
      return std::string("needs a value or reward head but this model has the lm head (see with_head())");
    });
  }
  void require_last(const char* function, pass wanted, const char* forward_name) const {
    detail::require_lazy(last_ == wanted, function, [&] {
      return std::string("needs a preceding ") + forward_name + " (the last pass was another one, or none)";
    });
  }

  void check_batch(const char* function, const token_batch& batch) const {
    detail::require_not_empty(function, "tokens", batch.tokens);
    detail::require_same_shape(function, "tokens", batch.tokens, "positions", batch.positions);
    detail::require_same_shape(function, "tokens", batch.tokens, "mask", batch.mask);
    const index len = batch.tokens.extent(1);
    detail::require_lazy(len <= config_.context, function, [&] {
      return "tokens has " + std::to_string(len) + " columns but the context is " + std::to_string(config_.context);
    });
    for (index b = 0; b < batch.tokens.extent(0); ++b)
      for (index t = 0; t < len; ++t) {
        if (!batch.mask(b, t)) continue;
        const token_id tok = batch.tokens(b, t), pos = batch.positions(b, t);
        detail::require_lazy(tok >= 0 && tok < config_.vocab_size, function, [&] {
          return "tokens[" + std::to_string(b) + "][" + std::to_string(t) + "] = " + std::to_string(tok) +
                 " is outside [0, " + std::to_string(config_.vocab_size) + ")";
        });
        detail::require_lazy(pos >= 0 && pos < config_.context, function, [&] {
          return "positions[" + std::to_string(b) + "][" + std::to_string(t) + "] = " + std::to_string(pos) +
                 " is outside [0, " + std::to_string(config_.context) + ")";
        });
      }
  }

  template <class U>
  void require_output(const char* function, const char* name, const cube_view<U>& out, const token_batch& batch,
                      index last, const char* last_name) const {
    detail::require_lazy(out.extent(0) == batch.tokens.extent(0) && out.extent(1) == batch.tokens.extent(1) &&
                             out.extent(2) == last,
                         function, [&] {
                           return std::string(name) + " is " + shape_string(out) + " but must be " +
                                  std::to_string(batch.tokens.extent(0)) + "x" + std::to_string(batch.tokens.extent(1)) +
                                  "x" + std::to_string(last) + " (B x T x " + last_name + ")";
                         });
    detail::require_lazy(out.is_contiguous(), function,
                         [&] { return std::string(name) + " must be contiguous (row-major, no padding)"; });
  }
  template <class U>
  void require_grad_input(const char* function, const char* name, const cube_view<U>& g, index last,
                          const char* last_name) const {
    detail::require_lazy(g.extent(0) == b_ && g.extent(1) == t_ && g.extent(2) == last, function, [&] {
      return std::string(name) + " is " + shape_string(g) + " but the last forward was " + std::to_string(b_) + "x" +
             std::to_string(t_) + "x" + std::to_string(last) + " (B x T x " + last_name + ")";
    });
    detail::require_lazy(g.is_contiguous(), function,
                         [&] { return std::string(name) + " must be contiguous (row-major, no padding)"; });
  }

  void check_generation(const char* function, const token_batch& prompts, const generation_options& o) const {
    detail::require_lazy(o.max_new_tokens >= 1, function,
                         [&] { return "max_new_tokens must be >= 1, got " + std::to_string(o.max_new_tokens); });
    detail::require_lazy(std::isfinite(o.temperature) && o.temperature > 0, function,
                         [&] { return "temperature must be finite and > 0, got " + detail::number_string(o.temperature); });
    detail::require_lazy(o.top_k >= 0, function, [&] { return "top_k must be >= 0, got " + std::to_string(o.top_k); });
    detail::require_lazy(o.top_p > 0 && o.top_p <= 1, function,
                         [&] { return "top_p must be in (0, 1], got " + detail::number_string(o.top_p); });
    const index last = prompts.tokens.extent(1) - 1;
    for (index b = 0; b < prompts.tokens.extent(0); ++b) {
      detail::require_lazy(prompts.mask(b, last) != 0, function, [&] {
        return "prompt row " + std::to_string(b) + " ends with padding: prompts must be left-padded";
      });
      const index final_pos = index{prompts.positions(b, last)} + o.max_new_tokens - 1;
      detail::require_lazy(final_pos < config_.context, function, [&] {
        return "prompt row " + std::to_string(b) + " ends at position " + std::to_string(prompts.positions(b, last)) +
               " and max_new_tokens " + std::to_string(o.max_new_tokens) + " would reach position " +
               std::to_string(final_pos) + " >= the context " + std::to_string(config_.context);
      });
    }
    for (auto s : o.stop_tokens)
      detail::require_lazy(s >= 0 && s < config_.vocab_size, function, [&] {
        return "stop token " + std::to_string(s) + " is outside [0, " + std::to_string(config_.vocab_size) + ")";
      });
  }

  /// Sizes the workspace for (B, T) (growing only) and sets the pointers.
  void prepare_workspace(index batch, index tokens) {
    const index d = config_.width, l = config_.layers, h = config_.heads, n = batch * tokens;
    const index need = (l + 1) * n * d                      // x
                       + l * (n * d * 4 + n * 4 + n * 3 * d + batch * h * tokens * tokens + n * 8 * d)  // per layer
                       + n * d + 2 * n                      // lnf
                       + n * d * 4 + n * 3 * d + n * 4 * d  // dres, dln, datty, dlnf, dqkv, dfc
                       + cpu_impl::gpt_kernels::attention_scratch_size(backend_, tokens);
    if (ws_.storage.size() < need) ws_.storage = tensor<T, 1>(need);
    T* p = ws_.storage.data();
    const auto take = [&](index count) {
      T* q = p;
      p += count;
      return q;
    };
    ws_.x = take((l + 1) * n * d);
    ws_.ln1 = take(l * n * d);
    ws_.ln1_mean = take(l * n);
    ws_.ln1_rstd = take(l * n);
    ws_.qkv = take(l * n * 3 * d);
    ws_.att = take(l * batch * h * tokens * tokens);
    ws_.atty = take(l * n * d);
    ws_.mid = take(l * n * d);
    ws_.ln2 = take(l * n * d);
    ws_.ln2_mean = take(l * n);
    ws_.ln2_rstd = take(l * n);
    ws_.fch = take(l * n * 4 * d);
    ws_.fcg = take(l * n * 4 * d);
    ws_.lnf = take(n * d);
    ws_.lnf_mean = take(n);
    ws_.lnf_rstd = take(n);
    ws_.dres = take(n * d);
    ws_.dln = take(n * d);
    ws_.datty = take(n * d);
    ws_.dlnf = take(n * d);
    ws_.dqkv = take(n * 3 * d);
    ws_.dfc = take(n * 4 * d);
    ws_.scratch = take(cpu_impl::gpt_kernels::attention_scratch_size(backend_, tokens));
    ws_.tokens.resize(static_cast<std::size_t>(n));
    ws_.positions.resize(static_cast<std::size_t>(n));
    ws_.valid_storage.resize(static_cast<std::size_t>(n));
    ws_.valid = ws_.valid_storage.data();
    b_ = batch;
    t_ = tokens;
    n_ = n;
  }

  /// Embedding, the blocks and ln_f over a checked batch; every activation saved.
  void trunk_forward(const token_batch& batch) {
    namespace k = cpu_impl::gpt_kernels;
    last_ = pass::none;
    prepare_workspace(batch.tokens.extent(0), batch.tokens.extent(1));
    const index d = config_.width, n = n_;
    for (index b = 0; b < b_; ++b)
      for (index t = 0; t < t_; ++t) {
        const auto i = static_cast<std::size_t>(b * t_ + t);
        const bool ok = batch.mask(b, t) != 0;
        ws_.valid_storage[i] = ok ? 1 : 0;
        // Padding entries may hold any id: out-of-range ones read row 0 (they reach no valid query).
        const token_id tok = batch.tokens(b, t), pos = batch.positions(b, t);
        ws_.tokens[i] = (tok >= 0 && tok < config_.vocab_size) ? tok : 0;
        ws_.positions[i] = (pos >= 0 && pos < config_.context) ? pos : 0;
      }
    k::embedding_forward(backend_, ws_.x, ws_.tokens.data(), ws_.positions.data(), wte(), value_of(wpe_offset()), n, d);
    for (index l = 0; l < config_.layers; ++l) {
      const layer_offsets& o = layers_[static_cast<std::size_t>(l)];
      const T* x = ws_.x + l * n * d;
      T* ln1 = ws_.ln1 + l * n * d;
      T* qkv = ws_.qkv + l * n * 3 * d;
      T* atty = ws_.atty + l * n * d;
      T* mid = ws_.mid + l * n * d;
      T* ln2 = ws_.ln2 + l * n * d;
      T* fch = ws_.fch + l * n * 4 * d;
      T* fcg = ws_.fcg + l * n * 4 * d;
      T* y = ws_.x + (l + 1) * n * d;
      k::layernorm_forward(backend_, ln1, ws_.ln1_mean + l * n, ws_.ln1_rstd + l * n, x, value_of(o.ln1_w),
                           value_of(o.ln1_b), n, d, config_.layer_norm_eps);
      k::linear_forward(backend_, qkv, ln1, value_of(o.attn_w), value_of(o.attn_b), n, d, 3 * d);
      k::attention_forward(backend_, atty, ws_.att + l * b_ * config_.heads * t_ * t_, qkv, ws_.valid, b_, t_, d,
                           config_.heads);
      k::linear_forward(backend_, mid, atty, value_of(o.proj_w), value_of(o.proj_b), n, d, d);
      add_into(mid, x, n * d);
      k::layernorm_forward(backend_, ln2, ws_.ln2_mean + l * n, ws_.ln2_rstd + l * n, mid, value_of(o.ln2_w),
                           value_of(o.ln2_b), n, d, config_.layer_norm_eps);
      k::linear_forward(backend_, fch, ln2, value_of(o.fc_w), value_of(o.fc_b), n, d, 4 * d);
      k::gelu_forward(backend_, fcg, fch, n * 4 * d);
      k::linear_forward(backend_, y, fcg, value_of(o.fcproj_w), value_of(o.fcproj_b), n, 4 * d, d);
      add_into(y, mid, n * d);
    }
    k::layernorm_forward(backend_, ws_.lnf, ws_.lnf_mean, ws_.lnf_rstd, ws_.x + config_.layers * n * d,
                         value_of(lnf_w_), value_of(lnf_b_), n, d, config_.layer_norm_eps);
  }

  /// Backward from ws_.dlnf through ln_f, the blocks and the embeddings (gradients accumulated).
  void trunk_backward() {
    namespace k = cpu_impl::gpt_kernels;
    last_ = pass::none;  // a second backward needs a new forward
    const index d = config_.width, n = n_;
    std::fill(ws_.dres, ws_.dres + n * d, T(0));
    k::layernorm_backward(backend_, ws_.dres, grad_of(lnf_w_), grad_of(lnf_b_), ws_.dlnf,
                          ws_.x + config_.layers * n * d, ws_.lnf_mean, ws_.lnf_rstd, value_of(lnf_w_), n, d);
    for (index l = config_.layers; l-- > 0;) {
      const layer_offsets& o = layers_[static_cast<std::size_t>(l)];
      const T* x = ws_.x + l * n * d;
      const T* ln1 = ws_.ln1 + l * n * d;
      const T* qkv = ws_.qkv + l * n * 3 * d;
      const T* atty = ws_.atty + l * n * d;
      const T* mid = ws_.mid + l * n * d;
      const T* ln2 = ws_.ln2 + l * n * d;
      const T* fch = ws_.fch + l * n * 4 * d;
      const T* fcg = ws_.fcg + l * n * 4 * d;
      // MLP: y = mid + c_proj(gelu(c_fc(ln_2(mid))))
      k::linear_backward(backend_, ws_.dfc, grad_of(o.fcproj_w), grad_of(o.fcproj_b), ws_.dres, fcg,
                         value_of(o.fcproj_w), n, 4 * d, d, false);
      k::gelu_backward(backend_, ws_.dfc, ws_.dfc, fch, n * 4 * d);
      k::linear_backward(backend_, ws_.dln, grad_of(o.fc_w), grad_of(o.fc_b), ws_.dfc, ln2, value_of(o.fc_w), n, d,
                         4 * d, false);
      k::layernorm_backward(backend_, ws_.dres, grad_of(o.ln2_w), grad_of(o.ln2_b), ws_.dln, mid,
                            ws_.ln2_mean + l * n, ws_.ln2_rstd + l * n, value_of(o.ln2_w), n, d);
      // Attention: mid = x + c_proj(attn(c_attn(ln_1(x))))
      k::linear_backward(backend_, ws_.datty, grad_of(o.proj_w), grad_of(o.proj_b), ws_.dres, atty,
                         value_of(o.proj_w), n, d, d, false);
      k::attention_backward(backend_, ws_.dqkv, ws_.scratch, ws_.datty, qkv,
                            ws_.att + l * b_ * config_.heads * t_ * t_, b_, t_, d, config_.heads);
      k::linear_backward(backend_, ws_.dln, grad_of(o.attn_w), grad_of(o.attn_b), ws_.dqkv, ln1, value_of(o.attn_w),
                         n, d, 3 * d, false);
      k::layernorm_backward(backend_, ws_.dres, grad_of(o.ln1_w), grad_of(o.ln1_b), ws_.dln, x,
                            ws_.ln1_mean + l * n, ws_.ln1_rstd + l * n, value_of(o.ln1_w), n, d);
    }
    k::embedding_backward(grad_of(wte_offset()), grad_of(wpe_offset()), ws_.dres, ws_.tokens.data(),
                          ws_.positions.data(), n, d);
  }

  void add_into(T* dst, const T* src, index count) const {
    cpu_impl::gpt_kernels::split(backend_, count, cpu_impl::gpt_kernels::parts_for(backend_, double(count) * 2.0),
                       [&](index, index i0, index i1) {
                         cpu_impl::gpt_kernels::row_map<T>(dst + i0, i1 - i0) += cpu_impl::gpt_kernels::const_row_map<T>(src + i0, i1 - i0);
                       });
  }

  /// One token for each of the `active` packed rows of g (g.next at g.positions, cache rows
  /// g.rows of `batch`) through every block against the cache, then their logits (active, V) into g.logits.
  void decode_step(generation_workspace& g, T* k_cache, T* v_cache, index batch, index active, index capacity,
                   index pos) {
    namespace k = cpu_impl::gpt_kernels;
    const index d = config_.width, heads = config_.heads, hd = d / heads;
    k::embedding_forward(backend_, g.x.data(), g.next.data(), g.positions.data(), wte(), value_of(wpe_offset()), active,
                         d);
    for (index l = 0; l < config_.layers; ++l) {
      const layer_offsets& o = layers_[static_cast<std::size_t>(l)];
      const index cache_offset = l * batch * heads * capacity * hd;
      k::layernorm_forward(backend_, g.ln.data(), static_cast<T*>(nullptr), static_cast<T*>(nullptr), g.x.data(),
                           value_of(o.ln1_w), value_of(o.ln1_b), active, d, config_.layer_norm_eps);
      k::linear_forward(backend_, g.qkv.data(), g.ln.data(), value_of(o.attn_w), value_of(o.attn_b), active, d, 3 * d);
      k::attention_decode(backend_, g.atty.data(), k_cache + cache_offset, v_cache + cache_offset, g.scratch.data(),
                          g.qkv.data(), g.valid.data(), g.rows.data(), active, d, heads, capacity, pos);
      k::linear_forward(backend_, g.ln.data(), g.atty.data(), value_of(o.proj_w), value_of(o.proj_b), active, d, d);
      add_into(g.x.data(), g.ln.data(), active * d);
      k::layernorm_forward(backend_, g.ln.data(), static_cast<T*>(nullptr), static_cast<T*>(nullptr), g.x.data(),
                           value_of(o.ln2_w), value_of(o.ln2_b), active, d, config_.layer_norm_eps);
      k::linear_forward(backend_, g.fch.data(), g.ln.data(), value_of(o.fc_w), value_of(o.fc_b), active, d, 4 * d);
      k::gelu_forward(backend_, g.fcg.data(), g.fch.data(), active * 4 * d);
      k::linear_forward(backend_, g.ln.data(), g.fcg.data(), value_of(o.fcproj_w), value_of(o.fcproj_b), active,
                        4 * d, d);
      add_into(g.x.data(), g.ln.data(), active * d);
    }
    k::layernorm_forward(backend_, g.ln.data(), static_cast<T*>(nullptr), static_cast<T*>(nullptr), g.x.data(),
                         value_of(lnf_w_), value_of(lnf_b_), active, d, config_.layer_norm_eps);
    if (active <= k::small_rows)
      k::small_rows_times_transposed(backend_, active, config_.vocab_size, d, g.ln.data(), d, wte(), d,
                                     g.logits.data(), config_.vocab_size);
    else
      k::gemm<false, true>(backend_, active, config_.vocab_size, d, g.ln.data(), d, wte(), d, g.logits.data(),
                           config_.vocab_size, false);
  }

  gpt_config config_;
  cpu_backend backend_;
  std::vector<param_info> params_;
  std::vector<layer_offsets> layers_;
  index total_ = 0, trunk_size_ = 0, lnf_w_ = 0, lnf_b_ = 0;
  tensor<T, 1> values_, grads_;
  workspace ws_;
  generation_workspace gen_;
  index b_ = 0, t_ = 0, n_ = 0;
  pass last_ = pass::none;
  std::vector<std::ptrdiff_t> end_index_;
};

/// The float GPT: the library's reference Policy / ValueModel / RewardModel.
using gpt = basic_gpt<float>;

}  // namespace rlhf
