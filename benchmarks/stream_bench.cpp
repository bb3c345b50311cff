// Machine-limit probes, STREAM-like: read-only sum, copy and triad over float arrays, on 1 and
// 2 threads, for working sets from 16 KiB (L1) to 16 MiB (L3) and a 768 MiB DRAM set.
// `benchmarks/run` runs the sizes that match each benchmark's working set in the same run and
// divides the benchmark's bytes/s by them ("fraction of the measured limit").
//
// Argument `bytes` is the working set: the total size of the arrays touched (read: one array;
// copy: two of bytes/2; triad: three of bytes/3). Bytes moved per pass follow STREAM: every
// array counted once, the write-allocate read of the destination not counted. With 2 threads
// each thread works on its own half of every array. Counter `bytes` = bytes moved per pass
// (summed over threads); the time is wall-clock (UseRealTime).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

namespace {

constexpr std::int64_t kib = 1024, mib = 1024 * kib;
constexpr std::int64_t dram_bytes = 768 * mib;

/// One buffer for every probe, large enough for the DRAM set, touched once when first used.
float* pool() {
  static float* data = [] {
    const auto n = static_cast<std::size_t>(dram_bytes) / sizeof(float);
    auto* p = static_cast<float*>(::operator new(n * sizeof(float), std::align_val_t{64}));
    std::fill(p, p + n, 1.0f);
    return p;
  }();
  return data;
}

// 8-float vectors written as GCC/Clang vector extensions: four independent accumulators keep the
// read probe from being add-latency-bound; the compiler emits AVX/AVX2 with -march=native.
// (No function takes or returns these types: that would change the ABI without AVX, -Wpsabi.)
using v8 = float __attribute__((vector_size(32)));
using v8_unaligned = float __attribute__((vector_size(32), aligned(4), may_alias));
#define STREAM_V8(p) (*reinterpret_cast<const v8_unaligned*>(p))
#define STREAM_V8_OUT(p) (*reinterpret_cast<v8_unaligned*>(p))

/// This thread's slice [begin, end) of an array of n floats, rounded to 32 floats.
std::pair<std::int64_t, std::int64_t> slice(const benchmark::State& state, std::int64_t n) {
  const std::int64_t per = (n / state.threads() / 32) * 32;
  return {per * state.thread_index(), per * (state.thread_index() + 1)};
}

void BM_read(benchmark::State& state) {
  const std::int64_t n = state.range(0) / static_cast<std::int64_t>(sizeof(float));
  const float* a = pool();
  const auto [begin, end] = slice(state, n);
  for (auto _ : state) {
    v8 s0{}, s1{}, s2{}, s3{};
    for (std::int64_t i = begin; i < end; i += 32) {
      s0 += STREAM_V8(a + i);
      s1 += STREAM_V8(a + i + 8);
      s2 += STREAM_V8(a + i + 16);
      s3 += STREAM_V8(a + i + 24);
    }
    v8 s = (s0 + s1) + (s2 + s3);
    benchmark::DoNotOptimize(s);
  }
  state.counters["bytes"] = static_cast<double>((end - begin) * 4);
}

void BM_copy(benchmark::State& state) {
  const std::int64_t n = state.range(0) / static_cast<std::int64_t>(2 * sizeof(float));
  const float* a = pool();
  float* c = pool() + n;
  const auto [begin, end] = slice(state, n);
  for (auto _ : state) {
    for (std::int64_t i = begin; i < end; i += 8) STREAM_V8_OUT(c + i) = STREAM_V8(a + i);
    benchmark::ClobberMemory();
  }
  state.counters["bytes"] = static_cast<double>((end - begin) * 8);
}

void BM_triad(benchmark::State& state) {
  const std::int64_t n = state.range(0) / static_cast<std::int64_t>(3 * sizeof(float));
  const float* a = pool();
  const float* b = pool() + n;
  float* c = pool() + 2 * n;
  const auto [begin, end] = slice(state, n);
  const v8 scalar = {3.0f, 3.0f, 3.0f, 3.0f, 3.0f, 3.0f, 3.0f, 3.0f};
  for (auto _ : state) {
    for (std::int64_t i = begin; i < end; i += 8)
      STREAM_V8_OUT(c + i) = STREAM_V8(a + i) + scalar * STREAM_V8(b + i);
    benchmark::ClobberMemory();
  }
  state.counters["bytes"] = static_cast<double>((end - begin) * 12);
}

void sizes(benchmark::internal::Benchmark* b) {
  b->ArgName("bytes");
  for (std::int64_t bytes = 16 * kib; bytes <= 16 * mib; bytes *= 2) b->Arg(bytes);
  b->Arg(dram_bytes);
}

BENCHMARK(BM_read)->Apply(sizes)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_copy)->Apply(sizes)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_triad)->Apply(sizes)->Threads(1)->Threads(2)->UseRealTime();

}  // namespace
