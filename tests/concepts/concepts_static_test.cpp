// Concept conformance: one conforming type per concept and one near-miss per requirement.
// Compiling this file is the test.
#include <rlhf/backend.hpp>
#include <rlhf/concepts.hpp>

#include <string>
#include <vector>

namespace {

using rlhf::cube_view;
using rlhf::matrix_view;
using rlhf::token_batch;
using rlhf::token_id;
using rlhf::vector_view;

// ---- Tokenizer --------------------------------------------------------------------------
struct good_tokenizer {
  std::vector<token_id> encode(std::string_view) const;
  std::string decode(std::span<const token_id>) const;
  std::size_t vocab_size() const;
  token_id eos_id() const;
  token_id pad_id() const;
};
struct tokenizer_encode_wrong_type {
  std::vector<long> encode(std::string_view) const;
  std::string decode(std::span<const token_id>) const;
  std::size_t vocab_size() const;
  token_id eos_id() const;
  token_id pad_id() const;
};
struct tokenizer_no_pad {
  std::vector<token_id> encode(std::string_view) const;
  std::string decode(std::span<const token_id>) const;
  std::size_t vocab_size() const;
  token_id eos_id() const;
};
struct tokenizer_mutating_encode {  // encode must be callable on a const tokenizer
  std::vector<token_id> encode(std::string_view);
  std::string decode(std::span<const token_id>) const;
  std::size_t vocab_size() const;
  token_id eos_id() const;
  token_id pad_id() const;
};
static_assert(rlhf::Tokenizer<good_tokenizer>);
static_assert(!rlhf::Tokenizer<tokenizer_encode_wrong_type>, "encode returns std::vector<token_id>");
static_assert(!rlhf::Tokenizer<tokenizer_no_pad>, "a Tokenizer names its pad id");
static_assert(!rlhf::Tokenizer<tokenizer_mutating_encode>, "encode is const");

// ---- CausalLM / FusedLogProbs / Policy ---------------------------------------------------
struct params_base {
  using scalar_type = float;
  std::vector<rlhf::parameter_ref<float>> parameters();
};
struct good_lm : params_base {
  std::ptrdiff_t vocab_size() const;
  void forward(const token_batch&, cube_view<float> logits);
  void backward(cube_view<const float> dlogits);
};
struct lm_no_scalar_type {
  std::vector<rlhf::parameter_ref<float>> parameters();
  std::ptrdiff_t vocab_size() const;
  void forward(const token_batch&, cube_view<float>);
  void backward(cube_view<const float>);
};
struct lm_no_backward : params_base {
  std::ptrdiff_t vocab_size() const;
  void forward(const token_batch&, cube_view<float>);
};
struct lm_wrong_logits_rank : params_base {
  std::ptrdiff_t vocab_size() const;
  void forward(const token_batch&, matrix_view<float>);
  void backward(cube_view<const float>);
};
struct lm_double_logits : params_base {  // scalar_type float but logits of double
  std::ptrdiff_t vocab_size() const;
  void forward(const token_batch&, cube_view<double>);
  void backward(cube_view<const double>);
};
static_assert(rlhf::CausalLM<good_lm>);
static_assert(rlhf::Trainable<good_lm>);
static_assert(!rlhf::CausalLM<lm_no_scalar_type>, "a CausalLM names its scalar_type");
static_assert(!rlhf::CausalLM<lm_no_backward>, "a CausalLM has backward(dlogits)");
static_assert(!rlhf::CausalLM<lm_wrong_logits_rank>, "logits are (B, T, V)");
static_assert(!rlhf::CausalLM<lm_double_logits>, "logits are of scalar_type");

struct good_fused_lm : good_lm {
  void hidden(const token_batch&, cube_view<float>);
  matrix_view<const float> unembedding() const;
  void backward_hidden(cube_view<const float>, matrix_view<const float>);
};
struct fused_lm_no_unembedding : good_lm {
  void hidden(const token_batch&, cube_view<float>);
  void backward_hidden(cube_view<const float>, matrix_view<const float>);
};
static_assert(rlhf::FusedLogProbs<good_fused_lm>);
static_assert(!rlhf::FusedLogProbs<good_lm>, "the fused path is optional");
static_assert(!rlhf::FusedLogProbs<fused_lm_no_unembedding>, "the fused path needs unembedding()");

struct rollout_result {
  std::vector<token_id> tokens;
  std::vector<float> logp;
  std::vector<unsigned char> mask;
  std::vector<std::ptrdiff_t> end_index;
};
struct result_without_end_index {
  std::vector<token_id> tokens;
  std::vector<float> logp;
  std::vector<unsigned char> mask;
};
struct good_policy : good_lm {
  rollout_result generate(const token_batch&, const rlhf::generation_options&);
};
struct policy_without_end_index : good_lm {
  result_without_end_index generate(const token_batch&, const rlhf::generation_options&);
};
struct generator_not_lm {
  rollout_result generate(const token_batch&, const rlhf::generation_options&);
};
static_assert(rlhf::Policy<good_policy>);
static_assert(!rlhf::Policy<good_lm>, "a Policy generates");
static_assert(!rlhf::Policy<policy_without_end_index>, "generation reports end indices");
static_assert(!rlhf::Policy<generator_not_lm>, "a Policy is a CausalLM");

// ---- ValueModel / RewardModel ------------------------------------------------------------
struct good_value_model : params_base {
  void values(const token_batch&, matrix_view<float>);
  void backward_values(matrix_view<const float>);
};
struct value_model_no_backward : params_base {
  void values(const token_batch&, matrix_view<float>);
};
struct good_reward_model : params_base {
  void scores(const token_batch&, vector_view<const std::ptrdiff_t>, vector_view<float>);
  void backward_scores(vector_view<const float>);
};
struct reward_model_without_end_index : params_base {
  void scores(const token_batch&, vector_view<float>);
  void backward_scores(vector_view<const float>);
};
static_assert(rlhf::ValueModel<good_value_model>);
static_assert(!rlhf::ValueModel<value_model_no_backward>, "a ValueModel trains");
static_assert(rlhf::RewardModel<good_reward_model>);
static_assert(!rlhf::RewardModel<reward_model_without_end_index>, "scores are read at an explicit end index");
static_assert(!rlhf::RewardModel<good_value_model>);

// ---- Optimizer ---------------------------------------------------------------------------
struct good_optimizer {
  void step(std::vector<rlhf::parameter_ref<float>>);
  void zero_grad(std::vector<rlhf::parameter_ref<float>>);
  double learning_rate() const;
};
struct optimizer_no_lr {
  void step(std::vector<rlhf::parameter_ref<float>>);
  void zero_grad(std::vector<rlhf::parameter_ref<float>>);
};
static_assert(rlhf::Optimizer<good_optimizer, good_lm>);
static_assert(!rlhf::Optimizer<optimizer_no_lr, good_lm>, "an Optimizer reports its learning rate");

// ---- Backend -----------------------------------------------------------------------------
static_assert(rlhf::Backend<rlhf::cpu_backend>);
static_assert(rlhf::Backend<rlhf::cuda_backend>);
static_assert(!rlhf::Backend<int>);
static_assert(rlhf::ViewFor<rlhf::matrix_view<float>, rlhf::cpu_backend>);
static_assert(!rlhf::ViewFor<rlhf::matrix_view<float>, rlhf::cuda_backend>, "host views are not for the GPU");
static_assert(rlhf::ViewFor<rlhf::device_view<float, 2>, rlhf::cuda_backend>);

}  // namespace
