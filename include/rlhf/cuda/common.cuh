// rlhf/cuda/common.cuh — what the CUDA backend's components share: the workspace protocol,
// deterministic block reductions, and reading results back at the public boundary.
//
// Workspace protocol. A component that needs scratch memory has a `*_workspace_bytes(...)`
// function of its shapes and takes a trailing `cuda_workspace` argument:
//
//   const std::size_t bytes = rlhf::ppo_policy_workspace_bytes(B);   // 1. query the size
//   void* scratch; cudaMalloc(&scratch, bytes);                      //    (allocate once)
//   rlhf::ppo_policy_loss(backend, in, dlogp, opts, {scratch, bytes}); // 2. run (any number of times)
//
// An empty workspace (the default) makes the call allocate it stream-ordered
// (cudaMallocAsync / cudaFreeAsync on backend.stream), which is simple but not free; a
// workspace smaller than the query is an rlhf::invalid_argument. The memory must be device
// memory usable on backend.stream and may not be shared by two calls in flight at once.
//
// Determinism. Every reduction is a fixed tree (butterfly shuffles inside a warp, then the
// warps' partials added in warp order) over a fixed assignment of elements to threads, and
// rows are combined by one block in a fixed order: no floating-point atomics, the same bits
// run to run for the same GPU model, toolkit and launch shapes.
#pragma once
#if !defined(__CUDACC__)
#error "<rlhf/cuda/common.cuh> needs nvcc: include the component's <rlhf/X.hpp> from a .cu file"
#endif

#include <rlhf/config.hpp>
#include <rlhf/cuda/error.cuh>
#include <rlhf/detail/checks.hpp>
#include <rlhf/error.hpp>
#include <rlhf/tensor_view.hpp>

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace rlhf {

/// Caller-provided scratch memory for the CUDA backend (device memory; see the header comment).
/// {} = let the call allocate it on the stream.
struct cuda_workspace {
  void* data = nullptr;
  std::size_t bytes = 0;
};

/// A (B, T) mask in device memory: nonzero = valid; an empty view = every position valid.
using device_mask_view = device_view<const std::uint8_t, 2>;

namespace cuda_impl {

/// Threads of the row kernels (one block per row) and of the one-block combine kernels.
inline constexpr int row_threads = 256;
inline constexpr int combine_threads = 512;

/// Bytes of `count` objects of T rounded up to 256 (every carved piece stays 256-byte aligned).
template <class T>
constexpr std::size_t aligned_bytes(std::size_t count) noexcept {
  return (count * sizeof(T) + 255) / 256 * 256;
}

/// The workspace of one call: the caller's, or one allocated on the stream and freed (stream-
/// ordered) when the lease ends. carve<T>(n) hands out consecutive aligned pieces.
class workspace_lease {
 public:
  workspace_lease(const char* function, cudaStream_t stream, cuda_workspace given,
                  std::size_t needed)
      : stream_(stream) {
    if (given.data == nullptr) {
      if (needed > 0)
        throw_on_error(cudaMallocAsync(&base_, needed, stream), function);
      owned_ = true;
    } else {
      detail::require_lazy(given.bytes >= needed, function, [&] {
        return "the workspace has " + std::to_string(given.bytes) + " bytes but the call needs " +
               std::to_string(needed) + " (query it with the *_workspace_bytes function)";
      });
      base_ = given.data;
    }
  }
  workspace_lease(const workspace_lease&) = delete;
  workspace_lease& operator=(const workspace_lease&) = delete;
  ~workspace_lease() {
    if (owned_ && base_ != nullptr) (void)cudaFreeAsync(base_, stream_);
  }

  template <class T>
  T* carve(std::size_t count) noexcept {
    T* p = reinterpret_cast<T*>(static_cast<char*>(base_) + offset_);
    offset_ += aligned_bytes<T>(count);
    return p;
  }

 private:
  cudaStream_t stream_;
  void* base_ = nullptr;
  std::size_t offset_ = 0;
  bool owned_ = false;
};

/// Copies `count` objects from device memory to the host and waits for the stream: the one
/// synchronisation of the calls that return host statistics.
template <class T>
void read_back(const char* function, cudaStream_t stream, const T* device, T* host,
               std::size_t count = 1) {
  throw_on_error(cudaMemcpyAsync(host, device, count * sizeof(T), cudaMemcpyDeviceToHost, stream),
                 function);
  throw_on_error(cudaStreamSynchronize(stream), function);
}

struct sum_op {
  template <class T>
  __device__ T operator()(T a, T b) const noexcept {
    return a + b;
  }
};
/// max that keeps a NaN (as the CPU reference's `r > max || isnan(r)`).
struct nan_max_op {
  __device__ double operator()(double a, double b) const noexcept {
    if (a != a) return a;
    if (b != b) return b;
    return b > a ? b : a;
  }
};
struct min_op {
  template <class T>
  __device__ T operator()(T a, T b) const noexcept {
    return b < a ? b : a;
  }
};
struct max_op {
  template <class T>
  __device__ T operator()(T a, T b) const noexcept {
    return a < b ? b : a;
  }
};

/// Reduces `v` over the block (blockDim.x a multiple of 32, ≤ 1024) in a fixed order; every
/// thread gets the result. Every thread of the block must call it.
template <class T, class Op>
__device__ T block_reduce(T v, Op op) {
  __shared__ T partial[32];
  for (int offset = 16; offset > 0; offset >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  const int warp = static_cast<int>(threadIdx.x) >> 5, lane = static_cast<int>(threadIdx.x) & 31;
  const int warps = static_cast<int>(blockDim.x) >> 5;
  __syncthreads();  // the previous call's readers are done with `partial`
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  T r = partial[0];
  for (int w = 1; w < warps; ++w) r = op(r, partial[w]);
  return r;
}

template <class T>
__device__ T block_sum(T v) {
  return block_reduce(v, sum_op{});
}

/// Launch-size helper: blocks of `threads` covering n elements (at least one block).
inline unsigned blocks_for(std::ptrdiff_t n, int threads) noexcept {
  const std::ptrdiff_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(b > 0 ? b : 1);
}

/// Rows are one block each; gridDim.x allows 2^31 − 1 of them.
inline unsigned row_blocks(const char* function, std::ptrdiff_t rows) {
  detail::require_lazy(rows <= 0x7fffffff, function,
                       [&] { return "too many rows for one launch: " + std::to_string(rows); });
  return static_cast<unsigned>(rows > 0 ? rows : 1);
}

}  // namespace cuda_impl
}  // namespace rlhf
