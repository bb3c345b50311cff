// rlhf::gpt models every model concept of the library. Compiling this file is the test.
#include <rlhf/concepts.hpp>
#include <rlhf/models/gpt.hpp>

static_assert(rlhf::Trainable<rlhf::gpt>);
static_assert(rlhf::CausalLM<rlhf::gpt>);
static_assert(rlhf::FusedLogProbs<rlhf::gpt>);
static_assert(rlhf::Policy<rlhf::gpt>);
static_assert(rlhf::ValueModel<rlhf::gpt>);
static_assert(rlhf::RewardModel<rlhf::gpt>);

// The double instantiation (gradient checks) models them too.
static_assert(rlhf::Policy<rlhf::basic_gpt<double>>);
static_assert(rlhf::FusedLogProbs<rlhf::basic_gpt<double>>);
static_assert(rlhf::ValueModel<rlhf::basic_gpt<double>>);
static_assert(rlhf::RewardModel<rlhf::basic_gpt<double>>);

// A const model is not trainable (parameters() and the passes mutate it).
static_assert(!rlhf::Trainable<const rlhf::gpt>);
