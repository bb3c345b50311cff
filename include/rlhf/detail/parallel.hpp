// rlhf/detail/parallel.hpp — split independent rows over the CPU backend's threads (private).
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/config.hpp>

#include <algorithm>
#include <cstddef>
#include <exception>
#include <thread>
#include <vector>

namespace rlhf::detail {

/// Calls body(begin, end) on contiguous chunks of [0, n). With threads ≤ 1, or too little work
/// (fewer than `min_per_thread` items a thread), runs on the calling thread. The chunking
/// depends only on n and the thread count, so results are reproducible for a given count.
/// An exception thrown by any chunk is rethrown on the calling thread after all have joined.
template <class Body>
void parallel_for(const cpu_backend& backend, std::ptrdiff_t n, Body&& body,
                  std::ptrdiff_t min_per_thread = 1) {
  const std::ptrdiff_t wanted = std::max<std::ptrdiff_t>(1, backend.threads);
  const std::ptrdiff_t useful = std::max<std::ptrdiff_t>(1, n / std::max<std::ptrdiff_t>(1, min_per_thread));
  const std::ptrdiff_t threads = std::min(wanted, useful);
  if (threads <= 1 || n <= 1) {
    if (n > 0) body(std::ptrdiff_t{0}, n);
    return;
  }
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(threads));
  std::vector<std::thread> workers;
  workers.reserve(static_cast<std::size_t>(threads - 1));
  const auto chunk = [&](std::ptrdiff_t t) {
    const std::ptrdiff_t begin = n * t / threads, end = n * (t + 1) / threads;
#if RLHF_HAS_EXCEPTIONS
    try {
      if (begin < end) body(begin, end);
    } catch (...) {
      errors[static_cast<std::size_t>(t)] = std::current_exception();
    }
#else
    if (begin < end) body(begin, end);
#endif
  };
  for (std::ptrdiff_t t = 1; t < threads; ++t) workers.emplace_back(chunk, t);
  chunk(0);
  for (auto& w : workers) w.join();
#if RLHF_HAS_EXCEPTIONS
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
#endif
}

}  // namespace rlhf::detail
