// Wrapping your own model so the library's trainers take it: a bigram language model (logits of
// the next token = one row of a V×V table) that models rlhf::Policy, rlhf::ValueModel and
// rlhf::RewardModel. A libtorch or ggml model is wrapped the same way: the members below copy
// between its tensors and the library's views. See docs/concepts.md, "Wrapping your own model".
#include <rlhf/concepts.hpp>
#include <rlhf/tensor.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string_view>
#include <vector>

class bigram_model {
 public:
  using scalar_type = float;

  explicit bigram_model(std::ptrdiff_t vocab) : vocab_(vocab), table_(vocab, vocab), grad_(vocab, vocab) {
    for (std::ptrdiff_t a = 0; a < vocab; ++a)
      for (std::ptrdiff_t b = 0; b < vocab; ++b) table_(a, b) = a == b ? 0.0f : 1.0f / float(1 + (b - a + vocab) % vocab);
  }

  // Trainable: every tensor as {name, values, gradients}.
  std::vector<rlhf::parameter_ref<float>> parameters() {
    return {{"table", rlhf::vector_view<float>(table_.data(), table_.size()),
             rlhf::vector_view<float>(grad_.data(), grad_.size())}};
  }

  // CausalLM: logits (B, T, V) for every position, and their backward.
  std::ptrdiff_t vocab_size() const { return vocab_; }
  void forward(const rlhf::token_batch& batch, rlhf::cube_view<float> logits) {
    last_ = batch;
    for (std::ptrdiff_t b = 0; b < logits.extent(0); ++b)
      for (std::ptrdiff_t t = 0; t < logits.extent(1); ++t)
        for (std::ptrdiff_t v = 0; v < vocab_; ++v) logits(b, t, v) = table_(batch.tokens(b, t), v);
  }
  void backward(rlhf::cube_view<const float> dlogits) {
    for (std::ptrdiff_t b = 0; b < dlogits.extent(0); ++b)
      for (std::ptrdiff_t t = 0; t < dlogits.extent(1); ++t)
        for (std::ptrdiff_t v = 0; v < vocab_; ++v) grad_(last_.tokens(b, t), v) += dlogits(b, t, v);
  }

  // Policy: generate() returns tokens, logp, mask and end_index in the RL layout.
  struct generation {
    rlhf::tensor<rlhf::token_id, 2> tokens;
    rlhf::tensor<float, 2> logp;
    rlhf::tensor<std::uint8_t, 2> mask;
    rlhf::tensor<std::ptrdiff_t, 1> end_index;
  };
  generation generate(const rlhf::token_batch& prompts, const rlhf::generation_options& options) {
    const std::ptrdiff_t rows = prompts.tokens.extent(0), n = options.max_new_tokens;
    generation out{rlhf::tensor<rlhf::token_id, 2>(rows, n), rlhf::tensor<float, 2>(rows, n),
                   rlhf::tensor<std::uint8_t, 2>(rows, n), rlhf::tensor<std::ptrdiff_t, 1>(rows)};
    for (std::ptrdiff_t b = 0; b < rows; ++b) {
      rlhf::token_id last = prompts.tokens(b, prompts.tokens.extent(1) - 1);
      for (std::ptrdiff_t s = 0; s < n; ++s) {  // greedy: the arg-max of the row
        rlhf::token_id best = 0;
        for (rlhf::token_id v = 1; v < vocab_; ++v)
          if (table_(last, v) > table_(last, best)) best = v;
        out.tokens(b, s) = last = best;
        out.mask(b, s) = 1;
        out.end_index(b) = s;
      }
    }
    return out;
  }

  // ValueModel and RewardModel: here the value of a position is its token's self-logit.
  void values(const rlhf::token_batch& batch, rlhf::matrix_view<float> out) {
    for (std::ptrdiff_t b = 0; b < out.extent(0); ++b)
      for (std::ptrdiff_t t = 0; t < out.extent(1); ++t) out(b, t) = table_(batch.tokens(b, t), batch.tokens(b, t));
    last_ = batch;
  }
  void backward_values(rlhf::matrix_view<const float> dvalues) {
    for (std::ptrdiff_t b = 0; b < dvalues.extent(0); ++b)
      for (std::ptrdiff_t t = 0; t < dvalues.extent(1); ++t)
        grad_(last_.tokens(b, t), last_.tokens(b, t)) += dvalues(b, t);
  }
  void scores(const rlhf::token_batch& batch, rlhf::vector_view<const std::ptrdiff_t> end_index,
              rlhf::vector_view<float> out) {
    for (std::ptrdiff_t b = 0; b < out.extent(0); ++b) {
      const rlhf::token_id tok = batch.tokens(b, end_index(b));
      out(b) = table_(tok, tok);
    }
  }
  void backward_scores(rlhf::vector_view<const float>) {}

 private:
  std::ptrdiff_t vocab_;
  rlhf::tensor<float, 2> table_, grad_;
  rlhf::token_batch last_{};
};

static_assert(rlhf::Policy<bigram_model>);
static_assert(rlhf::ValueModel<bigram_model>);
static_assert(rlhf::RewardModel<bigram_model>);
static_assert(!rlhf::FusedLogProbs<bigram_model>);  // optional: no hidden() / unembedding()

int main() {
  bigram_model model(5);
  const std::vector<rlhf::token_id> tokens{0, 3, 2, 4}, positions{0, 1, 0, 1};
  const std::vector<std::uint8_t> mask{1, 1, 1, 1};
  const rlhf::token_batch prompts{rlhf::matrix_view<const rlhf::token_id>(tokens.data(), 2, 2),
                                  rlhf::matrix_view<const rlhf::token_id>(positions.data(), 2, 2),
                                  rlhf::mask_view(mask.data(), 2, 2)};
  const auto out = model.generate(prompts, {.max_new_tokens = 3, .greedy = true});
  for (std::ptrdiff_t b = 0; b < 2; ++b) {
    std::printf("row %td:", b);
    for (std::ptrdiff_t s = 0; s < 3; ++s) std::printf(" %d", out.tokens(b, s));
    std::printf(" (end_index %td)\n", out.end_index(b));
  }
  std::printf("parameters: %zu tensor(s), first '%.*s' with %td values\n", model.parameters().size(),
              static_cast<int>(model.parameters()[0].name.size()), model.parameters()[0].name.data(),
              model.parameters()[0].value.extent(0));
}
