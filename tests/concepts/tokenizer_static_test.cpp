// rlhf::bpe_tokenizer models rlhf::Tokenizer. Compiling this file is the test.
#include <rlhf/concepts.hpp>
#include <rlhf/tokenizer.hpp>

static_assert(rlhf::Tokenizer<rlhf::bpe_tokenizer>);
static_assert(rlhf::Tokenizer<const rlhf::bpe_tokenizer>);
// The streaming decoder is not a tokenizer (no encode); a near-miss for the concept.
static_assert(!rlhf::Tokenizer<rlhf::streaming_decoder>);
