// Tests for <rlhf/detail/parallel.hpp>: the chunking depends only on n and the thread count,
// every index is visited once, exceptions come back to the caller (the first chunk's), and
// recursive and concurrent calls neither deadlock nor change the chunks.
#include <rlhf/detail/parallel.hpp>

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using chunk_list = std::vector<std::pair<std::ptrdiff_t, std::ptrdiff_t>>;

/// The chunks one call hands to its body, sorted.
chunk_list chunks_of(int threads, std::ptrdiff_t n, std::ptrdiff_t min_per_thread = 1) {
  chunk_list chunks;
  std::mutex m;
  rlhf::detail::parallel_for(
      rlhf::cpu_backend{.threads = threads}, n,
      [&](std::ptrdiff_t begin, std::ptrdiff_t end) {
        std::lock_guard<std::mutex> lock(m);
        chunks.emplace_back(begin, end);
      },
      min_per_thread);
  std::sort(chunks.begin(), chunks.end());
  return chunks;
}

/// What the chunking must be: with p = min(threads, n / min_per_thread) participating threads,
/// one chunk [0, n) when p ≤ 1, else [n·t/k, n·(t+1)/k) for t < k = min(n, 4·p).
chunk_list expected_chunks(int threads, std::ptrdiff_t n, std::ptrdiff_t min_per_thread = 1) {
  const std::ptrdiff_t p = std::min<std::ptrdiff_t>(std::max(1, threads), std::max<std::ptrdiff_t>(1, n / min_per_thread));
  chunk_list chunks;
  if (p <= 1 || n <= 1) {
    if (n > 0) chunks.emplace_back(0, n);
    return chunks;
  }
  const std::ptrdiff_t k = std::min(n, p * rlhf::detail::chunks_per_thread);
  for (std::ptrdiff_t t = 0; t < k; ++t)
    if (n * t / k < n * (t + 1) / k) chunks.emplace_back(n * t / k, n * (t + 1) / k);
  return chunks;
}

}  // namespace

TEST_CASE("parallel_for: the chunks depend only on n and the thread count") {
  for (int threads : {1, 2, 3, 4, 7, 16, 64})
    for (std::ptrdiff_t n : {0, 1, 2, 3, 5, 10, 64, 1000}) {
      CAPTURE(threads);
      CAPTURE(n);
      CHECK(chunks_of(threads, n) == expected_chunks(threads, n));
      CHECK(chunks_of(threads, n, 8) == expected_chunks(threads, n, 8));
      CHECK(chunks_of(threads, n) == chunks_of(threads, n));  // again, with warm workers
    }
}

TEST_CASE("parallel_for: every index once, over many back-to-back calls") {
  std::vector<int> hits(997);
  for (int call = 0; call < 500; ++call)
    rlhf::detail::parallel_for(rlhf::cpu_backend{.threads = 2 + call % 3}, 997, [&](std::ptrdiff_t b, std::ptrdiff_t e) {
      for (std::ptrdiff_t i = b; i < e; ++i) ++hits[static_cast<std::size_t>(i)];
    });
  CHECK(std::all_of(hits.begin(), hits.end(), [](int h) { return h == 500; }));
}

TEST_CASE("parallel_for: too little work runs on the calling thread") {
  const auto caller = std::this_thread::get_id();
  bool on_caller = false;
  rlhf::detail::parallel_for(
      rlhf::cpu_backend{.threads = 4}, 15,
      [&](std::ptrdiff_t b, std::ptrdiff_t e) {
        on_caller = std::this_thread::get_id() == caller && b == 0 && e == 15;
      },
      /*min_per_thread=*/8);
  CHECK(on_caller);
}

#if RLHF_HAS_EXCEPTIONS
TEST_CASE("parallel_for: an exception from a chunk is rethrown on the caller, the first chunk's") {
  std::atomic<int> finished{0};
  const auto body = [&](std::ptrdiff_t b, std::ptrdiff_t) {
    if (b == 3) throw std::runtime_error("chunk at 3");
    if (b == 6) throw std::logic_error("chunk at 6");
    ++finished;
  };
  // n = 12, 3 threads: 12 chunks of one item, 0 … 11.
  CHECK_THROWS_WITH_AS(rlhf::detail::parallel_for(rlhf::cpu_backend{.threads = 3}, 12, body), "chunk at 3",
                       std::runtime_error);
  CHECK(finished == 10);  // the other chunks still ran to the end
  // The pool is usable afterwards.
  CHECK(chunks_of(4, 12) == expected_chunks(4, 12));
}
#endif

TEST_CASE("parallel_for: a chunk may call parallel_for (recursion), with the same chunks") {
  std::vector<int> hits(40 * 30);
  std::vector<chunk_list> inner(40);
  rlhf::detail::parallel_for(rlhf::cpu_backend{.threads = 3}, 40, [&](std::ptrdiff_t b, std::ptrdiff_t e) {
    for (std::ptrdiff_t row = b; row < e; ++row) {
      inner[static_cast<std::size_t>(row)] = chunks_of(3, 30);
      rlhf::detail::parallel_for(rlhf::cpu_backend{.threads = 3}, 30, [&](std::ptrdiff_t b2, std::ptrdiff_t e2) {
        for (std::ptrdiff_t i = b2; i < e2; ++i) ++hits[static_cast<std::size_t>(row * 30 + i)];
      });
    }
  });
  CHECK(std::all_of(hits.begin(), hits.end(), [](int h) { return h == 1; }));
  for (const auto& c : inner) CHECK(c == expected_chunks(3, 30));
}

TEST_CASE("parallel_for: concurrent calls from several application threads") {
  constexpr int callers = 4, calls = 200;
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int c = 0; c < callers; ++c)
    threads.emplace_back([&, c] {
      for (int k = 0; k < calls; ++k) {
        const std::ptrdiff_t n = 50 + (k * 7 + c) % 100;
        std::vector<int> hits(static_cast<std::size_t>(n));
        rlhf::detail::parallel_for(rlhf::cpu_backend{.threads = 2 + k % 3}, n, [&](std::ptrdiff_t b, std::ptrdiff_t e) {
          for (std::ptrdiff_t i = b; i < e; ++i) ++hits[static_cast<std::size_t>(i)];
        });
        if (!std::all_of(hits.begin(), hits.end(), [](int h) { return h == 1; })) ++bad;
        if (chunks_of(3, n) != expected_chunks(3, n)) ++bad;
      }
    });
  for (auto& t : threads) t.join();
  CHECK(bad == 0);
}
