// rlhf/train/detail/lm_head.hpp — how the trainers get per-token log-probs and the LM loss out
// of a CausalLM. Private (no stability promise).
//
// Two paths, chosen at compile time per model type:
//   logits  model.forward(batch, logits (B, T, V)); rlhf::token_logprobs / rlhf::lm_loss on
//           the columns wanted; the backward writes dlogits over the same buffer and calls
//           model.backward(dlogits).
//   fused   when the model models rlhf::FusedLogProbs: model.hidden(batch, h (B, T, D)); the
//           rows wanted are gathered into (N, D) and rlhf::fused_linear_logprobs reads them with
//           model.unembedding() (V, D); the backward turns d/dlogp into dhidden (scattered back
//           to (B, T, D), 0 elsewhere) and dW, and calls model.backward_hidden(dhidden, dW).
//           Nothing of size B·T·V is allocated. dW is accumulated straight into the model's
//           gradient when the model offers `unembedding_grad()` (rlhf::gpt does), otherwise into
//           a (V, D) buffer handed to backward_hidden.
// Both give the same numbers up to float rounding (tests/train/fused_path_test.cpp).
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/concepts.hpp>
#include <rlhf/config.hpp>
#include <rlhf/fused_linear.hpp>
#include <rlhf/lm_loss.hpp>
#include <rlhf/logprobs.hpp>
#include <rlhf/tensor.hpp>
#include <rlhf/tensor_view.hpp>
#include <rlhf/train/batch.hpp>
#include <rlhf/train/detail/common.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace rlhf::train::detail {

/// The LM loss of one batch: token-mean NLL over its targets, argmax accuracy, target count.
struct lm_step {
  double loss = 0;
  double accuracy = 0;
  std::int64_t tokens = 0;
};

/// token NLL of a sequence batch under logits (B, T, V), its gradient (times grad_scale)
/// written over the logits (the last position gets 0), and the argmax accuracy.
template <class T>
lm_step lm_loss_in_place(const cpu_backend& backend, const sequence_batch& batch, tensor<T, 3>& logits,
                         double grad_scale, double temperature, bool with_gradient, bool with_accuracy = true) {
  const std::ptrdiff_t B = batch.rows(), L = batch.length(), V = logits.extent(2);
  lm_step out;
  if (L < 2) return out;
  const auto all = logits.view();
  const auto shifted = columns(all, 0, L - 1);
  const auto labels = columns(batch.tokens.view(), 1, L - 1);
  const auto mask = columns(batch.target_mask.view(), 1, L - 1);
  std::int64_t correct = 0, n = 0;
  if (with_accuracy)
    for (std::ptrdiff_t b = 0; b < B; ++b)
      for (std::ptrdiff_t t = 0; t < L - 1; ++t) {
        if (!mask(b, t)) continue;
        std::ptrdiff_t best = 0;
        for (std::ptrdiff_t v = 1; v < V; ++v)
          if (shifted(b, t, v) > shifted(b, t, best)) best = v;
        correct += best == labels(b, t);
        ++n;
      }
  const auto r = ::rlhf::lm_loss(backend, cube_view<const T>(shifted), labels, mask,
                                 with_gradient ? shifted : cube_view<T>{},
                                 {.temperature = temperature, .grad_scale = grad_scale});
  if (with_gradient)
    for (std::ptrdiff_t b = 0; b < B; ++b)
      for (std::ptrdiff_t v = 0; v < V; ++v) all(b, L - 1, v) = T(0);
  out.loss = r.loss;
  out.tokens = r.tokens;
  out.accuracy = n > 0 ? static_cast<double>(correct) / static_cast<double>(n) : 0.0;
  return out;
}

/// For each row n of hidden (N, D): whether labels(n) is the argmax of hidden_n · Wᵀ (the first
/// maximum on ties, as over materialised logits). Vocabulary blocks of W are transposed once so
/// the inner loop runs along the vocabulary (vectorisable); never holds more than a block.
template <class T>
std::int64_t argmax_hits(matrix_view<const T> hidden, matrix_view<const T> unembedding,
                         vector_view<const token_id> labels) {
  const std::ptrdiff_t N = hidden.extent(0), D = hidden.extent(1), V = unembedding.extent(0);
  constexpr std::ptrdiff_t block = 256;
  std::vector<T> wt(static_cast<std::size_t>(D * block)), acc(static_cast<std::size_t>(block));
  std::vector<T> best(static_cast<std::size_t>(N));
  std::vector<std::ptrdiff_t> arg(static_cast<std::size_t>(N), 0);
  for (std::ptrdiff_t v0 = 0; v0 < V; v0 += block) {
    const std::ptrdiff_t vb = std::min(block, V - v0);
    for (std::ptrdiff_t j = 0; j < vb; ++j)
      for (std::ptrdiff_t d = 0; d < D; ++d) wt[static_cast<std::size_t>(d * block + j)] = unembedding(v0 + j, d);
    for (std::ptrdiff_t n = 0; n < N; ++n) {
      std::fill(acc.begin(), acc.begin() + vb, T(0));
      for (std::ptrdiff_t d = 0; d < D; ++d) {
        const T h = hidden(n, d);
        const T* w = wt.data() + d * block;
        for (std::ptrdiff_t j = 0; j < vb; ++j) acc[static_cast<std::size_t>(j)] += h * w[j];
      }
      const auto ni = static_cast<std::size_t>(n);
      for (std::ptrdiff_t j = 0; j < vb; ++j)
        if ((v0 == 0 && j == 0) || acc[static_cast<std::size_t>(j)] > best[ni]) {
          best[ni] = acc[static_cast<std::size_t>(j)];
          arg[ni] = v0 + j;
        }
    }
  }
  std::int64_t hits = 0;
  for (std::ptrdiff_t n = 0; n < N; ++n) hits += arg[static_cast<std::size_t>(n)] == labels(n);
  return hits;
}

/// Log-probs and LM loss of a CausalLM through its logits or, when it models FusedLogProbs,
/// through the fused linear kernel. Holds the buffers between a forward and its backward; one
/// instance serves several models used one after the other.
template <class T>
class lm_head {
 public:
  /// Per-token log-probs of labels (B, C), label (b, c) being the token predicted by column
  /// first + c of `batch`, into out.logp (and out.entropy / out.logsumexp when given), at
  /// temperature τ. Remembers what logprobs_backward needs.
  template <CausalLM M>
  void logprobs(const cpu_backend& backend, M& model, const token_batch& batch, std::ptrdiff_t first,
                matrix_view<const token_id> labels, const token_logprob_outputs<T>& out, double temperature) {
    const std::ptrdiff_t B = batch.tokens.extent(0), L = batch.tokens.extent(1), C = labels.extent(1);
    first_ = first;
    temperature_ = temperature;
    labels_ = tensor<token_id, 2>(B, C);
    for (std::ptrdiff_t b = 0; b < B; ++b)
      for (std::ptrdiff_t c = 0; c < C; ++c) labels_(b, c) = labels(b, c);
    if constexpr (FusedLogProbs<M>) {
      const matrix_view<const T> W = model.unembedding();
      const std::ptrdiff_t D = W.extent(1), N = B * C;
      ensure_shape(hidden_, B, L, D);
      model.hidden(batch, hidden_.view());
      ensure_shape(rows_, N, D);
      ensure_shape(row_labels_, N);
      ensure_shape(row_logp_, N);
      ensure_shape(row_lse_, N);
      ensure_shape(row_entropy_, out.entropy.empty() ? 0 : N);
      for (std::ptrdiff_t b = 0; b < B; ++b)
        for (std::ptrdiff_t c = 0; c < C; ++c) {
          const std::ptrdiff_t n = b * C + c;
          row_labels_(n) = labels_(b, c);
          for (std::ptrdiff_t d = 0; d < D; ++d) rows_(n, d) = hidden_(b, first + c, d);
        }
      fused_linear_logprobs(backend, rows_.view().as_const(), W, row_labels_.view().as_const(),
                            {.logp = row_logp_.view(),
                             .entropy = out.entropy.empty() ? vector_view<T>{} : row_entropy_.view(),
                             .logsumexp = row_lse_.view()},
                            {.temperature = temperature});
      for (std::ptrdiff_t b = 0; b < B; ++b)
        for (std::ptrdiff_t c = 0; c < C; ++c) {
          const std::ptrdiff_t n = b * C + c;
          out.logp(b, c) = row_logp_(n);
          if (!out.entropy.empty()) out.entropy(b, c) = row_entropy_(n);
          if (!out.logsumexp.empty()) out.logsumexp(b, c) = row_lse_(n);
        }
    } else {
      ensure_shape(logits_, B, L, model.vocab_size());
      model.forward(batch, logits_.view());
      ensure_shape(lse_, B, C);
      token_logprobs(backend, cube_view<const T>(columns(logits_.view(), first, C)), labels_.view().as_const(),
                     {.logp = out.logp, .entropy = out.entropy, .logsumexp = lse_.view()},
                     {.temperature = temperature});
      if (!out.logsumexp.empty())
        for (std::ptrdiff_t b = 0; b < B; ++b)
          for (std::ptrdiff_t c = 0; c < C; ++c) out.logsumexp(b, c) = lse_(b, c);
    }
  }

  /// The backward of the last logprobs() on `model`: accumulates the model's parameter
  /// gradients from grad_logp (B, C) (every other column contributes 0).
  template <CausalLM M>
  void logprobs_backward(const cpu_backend& backend, M& model, matrix_view<const T> grad_logp) {
    const std::ptrdiff_t B = labels_.extent(0), C = labels_.extent(1);
    if constexpr (FusedLogProbs<M>) {
      const std::ptrdiff_t N = B * C, D = rows_.extent(1);
      ensure_shape(row_grad_, N);
      for (std::ptrdiff_t b = 0; b < B; ++b)
        for (std::ptrdiff_t c = 0; c < C; ++c) row_grad_(b * C + c) = grad_logp(b, c);
      ensure_shape(drows_, N, D);
      const auto dW = unembedding_grad(model);
      fused_linear_logprobs_backward(backend, rows_.view().as_const(), model.unembedding(),
                                     row_labels_.view().as_const(), row_lse_.view().as_const(), {},
                                     row_grad_.view().as_const(), {}, drows_.view(), dW,
                                     {.temperature = temperature_});
      ensure_shape(dhidden_, hidden_.extent(0), hidden_.extent(1), D);
      for (std::ptrdiff_t b = 0; b < B; ++b)
        for (std::ptrdiff_t c = 0; c < C; ++c)
          for (std::ptrdiff_t d = 0; d < D; ++d) dhidden_(b, first_ + c, d) = drows_(b * C + c, d);
      model.backward_hidden(dhidden_.view().as_const(), dW.as_const());
    } else {
      const auto cols = columns(logits_.view(), first_, C);
      token_logprobs_backward(backend, cube_view<const T>(cols), labels_.view().as_const(), lse_.view().as_const(),
                              grad_logp, {}, cols, {.temperature = temperature_});
      zero_columns(logits_, 0, first_);
      zero_columns(logits_, first_ + C, logits_.extent(1) - first_ - C);
      model.backward(logits_.view().as_const());
    }
  }

  /// The token-mean NLL of the batch's targets (tokens (b, t) with target_mask (b, t), predicted
  /// by column t − 1) at temperature 1; with_gradient: grad_scale · its gradient accumulated
  /// into the model's parameter gradients (one backward); with_accuracy: the argmax accuracy.
  template <CausalLM M>
  lm_step lm_loss(const cpu_backend& backend, M& model, const sequence_batch& batch, double grad_scale,
                  bool with_gradient, bool with_accuracy) {
    if constexpr (FusedLogProbs<M>) {
      const std::ptrdiff_t B = batch.rows(), L = batch.length();
      const matrix_view<const T> W = model.unembedding();
      const std::ptrdiff_t D = W.extent(1);
      std::ptrdiff_t N = 0;
      for (std::ptrdiff_t b = 0; b < B; ++b)
        for (std::ptrdiff_t t = 1; t < L; ++t) N += batch.target_mask(b, t) != 0;
      ensure_shape(hidden_, B, L, D);
      model.hidden(batch.view(), hidden_.view());
      lm_step out;
      out.tokens = N;
      if (N > 0) {
        ensure_shape(rows_, N, D);
        ensure_shape(row_labels_, N);
        ensure_shape(row_logp_, N);
        ensure_shape(row_lse_, N);
        std::ptrdiff_t n = 0;
        for (std::ptrdiff_t b = 0; b < B; ++b)
          for (std::ptrdiff_t t = 1; t < L; ++t)
            if (batch.target_mask(b, t)) {
              row_labels_(n) = batch.tokens(b, t);
              for (std::ptrdiff_t d = 0; d < D; ++d) rows_(n, d) = hidden_(b, t - 1, d);
              ++n;
            }
        fused_linear_logprobs(backend, rows_.view().as_const(), W, row_labels_.view().as_const(),
                              {.logp = row_logp_.view(), .logsumexp = row_lse_.view()});
        double sum = 0;
        for (std::ptrdiff_t i = 0; i < N; ++i) sum -= static_cast<double>(row_logp_(i));
        out.loss = sum / static_cast<double>(N);
        if (with_accuracy)
          out.accuracy = static_cast<double>(argmax_hits(rows_.view().as_const(), W, row_labels_.view().as_const())) /
                         static_cast<double>(N);
      }
      if (with_gradient) {
        ensure_shape(dhidden_, B, L, D);
        const auto dW = unembedding_grad(model);
        if (N > 0) {
          ensure_shape(row_grad_, N);
          row_grad_.fill(static_cast<T>(-grad_scale / static_cast<double>(N)));
          ensure_shape(drows_, N, D);
          fused_linear_logprobs_backward(backend, rows_.view().as_const(), W, row_labels_.view().as_const(),
                                         row_lse_.view().as_const(), {}, row_grad_.view().as_const(), {},
                                         drows_.view(), dW);
          std::ptrdiff_t n = 0;
          for (std::ptrdiff_t b = 0; b < B; ++b)
            for (std::ptrdiff_t t = 1; t < L; ++t)
              if (batch.target_mask(b, t)) {
                for (std::ptrdiff_t d = 0; d < D; ++d) dhidden_(b, t - 1, d) = drows_(n, d);
                ++n;
              }
        }
        model.backward_hidden(dhidden_.view().as_const(), dW.as_const());
      }
      return out;
    } else {
      ensure_shape(logits_, batch.rows(), batch.length(), model.vocab_size());
      model.forward(batch.view(), logits_.view());
      const auto out = lm_loss_in_place(backend, batch, logits_, grad_scale, 1.0, with_gradient, with_accuracy);
      if (with_gradient) model.backward(logits_.view().as_const());
      return out;
    }
  }

 private:
  /// Where the fused backward accumulates dW: the model's own gradient when it exposes it
  /// (backward_hidden then skips the add), else a zeroed (V, D) buffer.
  template <class M>
  matrix_view<T> unembedding_grad(M& model) {
    if constexpr (requires { { model.unembedding_grad() } -> std::convertible_to<matrix_view<T>>; }) {
      return model.unembedding_grad();
    } else {
      const matrix_view<const T> W = model.unembedding();
      ensure_shape(dunembedding_, W.extent(0), W.extent(1));
      return dunembedding_.view();
    }
  }

  static void zero_columns(tensor<T, 3>& x, std::ptrdiff_t first, std::ptrdiff_t count) {
    for (std::ptrdiff_t b = 0; b < x.extent(0); ++b)
      for (std::ptrdiff_t t = first; t < first + count; ++t)
        for (std::ptrdiff_t v = 0; v < x.extent(2); ++v) x(b, t, v) = T(0);
  }

  std::ptrdiff_t first_ = 0;
  double temperature_ = 1.0;
  tensor<token_id, 2> labels_;
  // logits path
  tensor<T, 3> logits_;
  tensor<T, 2> lse_;
  // fused path
  tensor<T, 3> hidden_, dhidden_;
  tensor<T, 2> rows_, drows_, dunembedding_;
  tensor<token_id, 1> row_labels_;
  tensor<T, 1> row_logp_, row_lse_, row_entropy_, row_grad_;
};

}  // namespace rlhf::train::detail
