// Training behaviour of <rlhf/models/gpt.hpp>: a tiny model overfits a fixed batch (Adam written
// in the test), and forward / backward do not depend on the thread count.
#include <rlhf/models/gpt.hpp>

#include <doctest/doctest.h>

#include <support/random.hpp>
#include <support/token_batches.hpp>
#include <support/tolerances.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace {

using ix = std::ptrdiff_t;
using rlhf::token_id;
using rlhf::test::batch_data;
using rlhf::test::log_softmax_at;

}  // namespace

TEST_CASE("gpt: a tiny model overfits a fixed batch (Adam written here)") {
  rlhf::gpt model({.vocab_size = 13, .context = 16, .layers = 2, .heads = 2, .width = 8, .seed = 1});
  const auto data = batch_data::left_padded({{1, 5, 9, 2, 7, 3, 11, 4}, {6, 6, 0, 12, 8, 10}});
  const ix b = data.rows, t = data.cols, v = model.vocab_size();
  std::vector<float> logits(static_cast<std::size_t>(b * t * v)), dlogits(logits.size());
  auto params = model.parameters();
  std::vector<float> m(static_cast<std::size_t>(model.parameter_count())), s(m.size());
  const auto values = model.flat_values();
  const auto grads = model.flat_grads();
  double first = 0, loss = 0;
  for (int step = 1; step <= 100; ++step) {
    model.zero_grad();
    model.forward(data.view(), rlhf::cube_view<float>(logits.data(), b, t, v));
    loss = 0;
    int count = 0;
    std::fill(dlogits.begin(), dlogits.end(), 0.0f);
    for (ix r = 0; r < b; ++r)
      for (ix i = 0; i + 1 < t; ++i) {
        const auto at = static_cast<std::size_t>(r * t + i);
        if (!data.mask[at] || !data.mask[at + 1]) continue;
        ++count;
      }
    for (ix r = 0; r < b; ++r)
      for (ix i = 0; i + 1 < t; ++i) {
        const auto at = static_cast<std::size_t>(r * t + i);
        if (!data.mask[at] || !data.mask[at + 1]) continue;
        const float* row = logits.data() + at * static_cast<std::size_t>(v);
        const token_id target = data.tokens[at + 1];
        loss -= log_softmax_at(row, v, target) / count;
        for (ix j = 0; j < v; ++j) {
          const double p = std::exp(log_softmax_at(row, v, static_cast<token_id>(j)));
          dlogits[at * static_cast<std::size_t>(v) + static_cast<std::size_t>(j)] =
              static_cast<float>((p - (j == target ? 1.0 : 0.0)) / count);
        }
      }
    if (step == 1) first = loss;
    model.backward(rlhf::cube_view<const float>(dlogits.data(), b, t, v));
    const double lr = 2e-2, b1 = 0.9, b2 = 0.999;
    for (ix i = 0; i < values.extent(0); ++i) {
      const auto u = static_cast<std::size_t>(i);
      m[u] = static_cast<float>(b1 * m[u] + (1 - b1) * grads(i));
      s[u] = static_cast<float>(b2 * s[u] + (1 - b2) * grads(i) * grads(i));
      const double mh = m[u] / (1 - std::pow(b1, step)), sh = s[u] / (1 - std::pow(b2, step));
      values(i) = static_cast<float>(values(i) - lr * mh / (std::sqrt(sh) + 1e-8));
    }
  }
  INFO("loss " << first << " -> " << loss);
  CHECK(first > 2.0);
  CHECK(loss < 0.02);
}

TEST_CASE("gpt: results do not depend on the thread count") {
  rlhf::gpt one({.vocab_size = 128, .context = 32, .layers = 2, .heads = 4, .width = 64, .seed = 2});
  rlhf::gpt two = one;
  two.set_backend({.threads = 2});
  std::vector<std::vector<token_id>> rows;
  for (int r = 0; r < 3; ++r) {
    rows.emplace_back();
    for (int t = 0; t < 16 - 4 * r; ++t) rows.back().push_back(static_cast<token_id>((r * 31 + t * 7) % 128));
  }
  const auto data = batch_data::left_padded(rows);
  const ix n = data.rows * data.cols * 128;
  std::vector<float> l1(static_cast<std::size_t>(n)), l2(l1.size());
  one.forward(data.view(), rlhf::cube_view<float>(l1.data(), data.rows, data.cols, 128));
  two.forward(data.view(), rlhf::cube_view<float>(l2.data(), data.rows, data.cols, 128));
  RLHF_CHECK_CLOSE(l2, l1, (rlhf::test::tolerance{.rtol = 1e-5, .atol = 1e-6}));
  one.backward(rlhf::cube_view<const float>(l1.data(), data.rows, data.cols, 128));
  two.backward(rlhf::cube_view<const float>(l1.data(), data.rows, data.cols, 128));
  const auto g1 = one.flat_grads(), g2 = two.flat_grads();
  std::vector<float> a(g1.data_handle(), g1.data_handle() + g1.extent(0)), b(g2.data_handle(), g2.data_handle() + g2.extent(0));
  RLHF_CHECK_CLOSE(b, a, (rlhf::test::tolerance{.rtol = 1e-4, .atol = 1e-5}));
}

