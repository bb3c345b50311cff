// Machine-limit probes for compute-bound benchmarks: Eigen SGEMM and the FP32 FMA peak, on 1 and
// 2 threads. `benchmarks/run` runs them beside any benchmark labelled `limit=sgemm` or
// `limit=fma` and divides that benchmark's FLOP rate (its `flops` counter per second) by the
// fastest probe of the same thread count ("fraction of the measured limit").
//
//   BM_sgemm/m:M/n:N/k:K   C (M×N) = A (M×K) · B (K×N), row-major float, Eigen's own
//                          single-threaded GEMM (the library never turns on Eigen's OpenMP
//                          threads); square 1024 and 2048, and the panel shapes of the fused
//                          linear kernel at B2b's largest case (N = 4096 rows, D = 768,
//                          vocabulary blocks of 1024, row blocks of 256, dW slices of 128 rows):
//                            256×1024×768   logits tile = hidden rows · W blockᵀ
//                            256×768×1024   dhidden rows += dlogits tile · W block
//                            128×768×4096   dW slice += dlogits sliceᵀ · hidden
//   BM_fma_peak            independent FMA chains in vector registers (the widest the build
//                          targets: 16 floats with AVX-512, 8 with AVX2+FMA, else scalar fma):
//                          2 FLOPs per lane per FMA.
//
// With 2 threads each thread runs its own GEMM on its own matrices (what the library does: a
// thread owns its tiles), so the rate is the machine's aggregate. Counter `flops` = FLOPs per
// iteration summed over threads; the time is wall-clock (UseRealTime).
#include <Eigen/Core>
#include <benchmark/benchmark.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace {

using row_major = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

void BM_sgemm(benchmark::State& state) {
  const auto m = static_cast<Eigen::Index>(state.range(0));
  const auto n = static_cast<Eigen::Index>(state.range(1));
  const auto k = static_cast<Eigen::Index>(state.range(2));
  row_major a = row_major::Random(m, k), b = row_major::Random(k, n), c = row_major::Zero(m, n);
  for (auto _ : state) {
    c.noalias() = a * b;
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  state.counters["flops"] = 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
}

#if defined(__AVX512F__)
using fma_vec = __m512;
constexpr int fma_lanes = 16;
inline fma_vec fma_set(float x) { return _mm512_set1_ps(x); }
inline fma_vec fma_step(fma_vec a, fma_vec b, fma_vec c) { return _mm512_fmadd_ps(a, b, c); }
inline float fma_sum(fma_vec a) { return _mm512_reduce_add_ps(a); }
#elif defined(__AVX2__) && defined(__FMA__)
using fma_vec = __m256;
constexpr int fma_lanes = 8;
inline fma_vec fma_set(float x) { return _mm256_set1_ps(x); }
inline fma_vec fma_step(fma_vec a, fma_vec b, fma_vec c) { return _mm256_fmadd_ps(a, b, c); }
inline float fma_sum(fma_vec a) {
  alignas(32) float v[8];
  _mm256_store_ps(v, a);
  float s = 0;
  for (float x : v) s += x;
  return s;
}
#else
using fma_vec = float;
constexpr int fma_lanes = 1;
inline fma_vec fma_set(float x) { return x; }
inline fma_vec fma_step(fma_vec a, fma_vec b, fma_vec c) { return std::fma(a, b, c); }
inline float fma_sum(fma_vec a) { return a; }
#endif

/// 12 independent accumulators (more than FMA latency × issue width on current cores), each
/// updated `steps` times: acc = acc·a + b with a slightly below 1, so nothing overflows.
void BM_fma_peak(benchmark::State& state) {
  constexpr int chains = 12;
  constexpr std::int64_t steps = 1 << 16;
  const fma_vec a = fma_set(0.999999f), b = fma_set(1e-7f);
  float sink = 0;
  for (auto _ : state) {
    fma_vec acc[chains];
    for (int i = 0; i < chains; ++i) acc[i] = fma_set(static_cast<float>(i));
    for (std::int64_t s = 0; s < steps; ++s) {
      for (int i = 0; i < chains; ++i) acc[i] = fma_step(acc[i], a, b);
      // Keeps the compiler from folding the loop (the values stay in registers).
      asm volatile("" : "+x"(acc[0]), "+x"(acc[1]), "+x"(acc[2]), "+x"(acc[3]), "+x"(acc[4]), "+x"(acc[5]),
                   "+x"(acc[6]), "+x"(acc[7]), "+x"(acc[8]), "+x"(acc[9]), "+x"(acc[10]), "+x"(acc[11]));
    }
    for (int i = 0; i < chains; ++i) sink += fma_sum(acc[i]);
  }
  benchmark::DoNotOptimize(sink);
  state.counters["flops"] = 2.0 * fma_lanes * chains * static_cast<double>(steps);
}

void sgemm_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"m", "n", "k"});
  for (auto [m, n, k] : {std::array<std::int64_t, 3>{1024, 1024, 1024}, {2048, 2048, 2048},
                         {256, 1024, 768}, {256, 768, 1024}, {128, 768, 4096}})
    b->Args({m, n, k});
}

BENCHMARK(BM_sgemm)->Apply(sgemm_shapes)->UseRealTime()->Threads(1)->Threads(2);
BENCHMARK(BM_fma_peak)->UseRealTime()->Threads(1)->Threads(2);

}  // namespace
