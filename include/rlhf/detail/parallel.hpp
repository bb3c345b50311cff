// rlhf/detail/parallel.hpp — split independent rows over the CPU backend's threads (private).
//
// parallel_for(backend, n, body, min_per_thread) cuts [0, n) into `threads` contiguous chunks
// (the same cut for a given n and thread count, whoever runs them) and runs them on the calling
// thread plus the workers of one process-wide pool. The pool starts its workers on first use
// (at most hardware_concurrency − 1 of them: chunks beyond that are picked up by whichever
// thread is free, so `threads` above the core count only changes the cut, not the result) and
// keeps them: handing a call to a warm worker costs microseconds, not the ≈ 30 µs of starting a
// std::thread. A worker spins briefly after each job (back-to-back calls are common: a loss runs
// two or three parallel passes) and then sleeps on a condition variable. Chunks are claimed one
// at a time by whichever thread is free, and the caller closes the job once every chunk is
// claimed, so a worker that wakes late (a sleeping vCPU can take 100 µs) finds nothing to do and
// the caller never waits for it: a call is never slower than running alone, plus a wake-up.
//
// One call owns the pool at a time. A call made while the pool is busy — from inside a chunk
// (recursion) or from another application thread — runs its chunks on its own calling thread,
// in chunk order: never a deadlock, and the same chunks, so the same results. Exceptions thrown
// by chunks are caught per chunk and the first one in chunk order is rethrown on the calling
// thread after every chunk has finished (without exceptions, -fno-exceptions, nothing is caught).
// At exit the pool's destructor stops and joins its workers; calls made after that (from other
// static destructors) run on the calling thread.
#pragma once

#include <rlhf/backend.hpp>
#include <rlhf/config.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#if (defined(__x86_64__) || defined(__i386__)) && !defined(__CUDACC__)
#include <immintrin.h>
#endif

namespace rlhf::detail {

/// A hint to the core that the thread is spinning (x86 `pause`; nothing elsewhere).
inline void cpu_relax() noexcept {
#if (defined(__x86_64__) || defined(__i386__)) && !defined(__CUDACC__)
  _mm_pause();
#endif
}

/// The process-wide worker pool behind parallel_for. Not part of the API.
class thread_pool {
 public:
  using task_fn = void (*)(void* context, std::ptrdiff_t chunk);

  thread_pool() = default;
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  ~thread_pool() {
    alive().store(false, std::memory_order_release);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_.store(true, std::memory_order_release);
    }
    work_ready_.notify_all();
    for (auto& w : workers_)
      if (w.joinable()) w.join();
  }

  /// The pool, or nullptr once it has been destroyed (static destruction at exit).
  static thread_pool* instance() {
    if (!alive().load(std::memory_order_acquire)) return nullptr;
    static thread_pool pool;
    return alive().load(std::memory_order_acquire) ? &pool : nullptr;
  }

  /// Runs task(context, c) for every c in [0, chunks) on the calling thread and up to
  /// `helpers` workers; returns false without running anything when the pool is owned by
  /// another call (the caller then runs the chunks itself). Chunks are claimed one at a time,
  /// so a worker that wakes late finds them done and the caller never waits for it.
  bool try_run(std::ptrdiff_t chunks, std::ptrdiff_t helpers, task_fn task, void* context) {
    if (in_worker() || busy_.exchange(true, std::memory_order_acquire)) return false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      helpers = std::min(helpers, max_workers());
      while (static_cast<std::ptrdiff_t>(workers_.size()) < helpers) {
#if RLHF_HAS_EXCEPTIONS
        try {
          workers_.emplace_back([this] { worker_main(); });
        } catch (...) {  // no more threads: use those there are
          break;
        }
#else
        workers_.emplace_back([this] { worker_main(); });
#endif
      }
      helpers = std::min(helpers, static_cast<std::ptrdiff_t>(workers_.size()));
      if (helpers <= 0) {
        busy_.store(false, std::memory_order_release);
        return false;
      }
      task_ = task;
      context_ = context;
      chunks_ = chunks;
      helpers_ = helpers;
      joined_ = 0;
      closed_ = false;
      next_.store(0, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
    }
    work_ready_.notify_all();
    run_chunks();
    // Every chunk is claimed: close the job to late workers, then wait for those inside it.
    {
      std::lock_guard<std::mutex> lock(mutex_);
      closed_ = true;
    }
    if (!spin_until([this] { return active_.load(std::memory_order_acquire) == 0; })) {
      std::unique_lock<std::mutex> lock(mutex_);
      job_done_.wait(lock, [this] { return active_.load(std::memory_order_acquire) == 0; });
    }
    busy_.store(false, std::memory_order_release);
    return true;
  }

 private:
  /// Spins (pause instructions) for up to ≈ 50 µs until done() holds; false if it did not.
  template <class Done>
  static bool spin_until(Done&& done) {
    if (done()) return true;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(50);
    for (int spin = 1;; ++spin) {
      cpu_relax();
      if (done()) return true;
      if (spin % 32 == 0 && std::chrono::steady_clock::now() > deadline) return false;
    }
  }

  static std::atomic<bool>& alive() {
    static std::atomic<bool> flag{true};  // trivially destructible: usable during exit
    return flag;
  }
  static bool& in_worker() {
    static thread_local bool flag = false;
    return flag;
  }
  static std::ptrdiff_t max_workers() {
    const unsigned hw = std::thread::hardware_concurrency();
    return std::min<std::ptrdiff_t>(63, hw > 1 ? static_cast<std::ptrdiff_t>(hw) - 1 : 0);
  }

  void run_chunks() {
    for (;;) {
      const std::ptrdiff_t c = next_.fetch_add(1, std::memory_order_relaxed);
      if (c >= chunks_) return;
      task_(context_, c);
    }
  }

  void worker_main() {
    in_worker() = true;
    std::uint64_t seen = 0;
    for (;;) {
      const auto news = [&] {
        return stop_.load(std::memory_order_acquire) ||
               generation_.load(std::memory_order_acquire) != seen;
      };
      if (!spin_until(news)) {
        std::unique_lock<std::mutex> lock(mutex_);
        work_ready_.wait(lock, news);
      }
      bool take_part = false;
      {
        // Join the job published under this lock, unless it is closed or has its helpers.
        std::lock_guard<std::mutex> lock(mutex_);
        if (stop_.load(std::memory_order_relaxed)) return;
        seen = generation_.load(std::memory_order_relaxed);
        if (!closed_ && joined_ < helpers_) {
          ++joined_;
          active_.fetch_add(1, std::memory_order_relaxed);
          take_part = true;
        }
      }
      if (!take_part) continue;
      run_chunks();
      if (active_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lock(mutex_);
        job_done_.notify_all();
      }
    }
  }

  std::mutex mutex_;
  std::condition_variable work_ready_, job_done_;
  std::vector<std::thread> workers_;
  std::atomic<bool> busy_{false};
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<std::ptrdiff_t> next_{0};
  std::atomic<std::ptrdiff_t> active_{0};
  // The current job; written under mutex_ by its owner, read by the workers that joined it.
  task_fn task_ = nullptr;
  void* context_ = nullptr;
  std::ptrdiff_t chunks_ = 0;
  std::ptrdiff_t helpers_ = 0;  ///< workers that may join
  std::ptrdiff_t joined_ = 0;   ///< workers that joined (under mutex_)
  bool closed_ = false;         ///< every chunk claimed: no more joins (under mutex_)
};

/// Calls body(begin, end) on contiguous chunks of [0, n). With threads ≤ 1, or too little work
/// (fewer than `min_per_thread` items a thread), runs on the calling thread. The chunking
/// depends only on n and the thread count, so results are reproducible for a given count.
/// An exception thrown by any chunk is rethrown on the calling thread after all have finished.
/// Chunks a participating thread gets on average (see parallel_for).
inline constexpr std::ptrdiff_t chunks_per_thread = 4;

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
  struct job {
    Body& body;
    std::ptrdiff_t n, threads;
#if RLHF_HAS_EXCEPTIONS
    std::unique_ptr<std::exception_ptr[]> errors;
#endif
    void run(std::ptrdiff_t t) {
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
    }
  };
  // Four chunks a thread: a thread that starts late (or runs on a busy core) leaves its share
  // to the others. The cut still depends only on n and the thread count.
  const std::ptrdiff_t chunks = std::min(n, threads * chunks_per_thread);
  job j{body, n, chunks
#if RLHF_HAS_EXCEPTIONS
        , std::make_unique<std::exception_ptr[]>(static_cast<std::size_t>(chunks))
#endif
  };
  const auto task = [](void* context, std::ptrdiff_t t) { static_cast<job*>(context)->run(t); };
  thread_pool* pool = thread_pool::instance();
  if (pool == nullptr || !pool->try_run(chunks, threads - 1, task, &j))
    for (std::ptrdiff_t t = 0; t < chunks; ++t) j.run(t);
#if RLHF_HAS_EXCEPTIONS
  for (std::ptrdiff_t t = 0; t < chunks; ++t)
    if (j.errors[static_cast<std::size_t>(t)]) std::rethrow_exception(j.errors[static_cast<std::size_t>(t)]);
#endif
}

}  // namespace rlhf::detail
