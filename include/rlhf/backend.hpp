// rlhf/backend.hpp — backend tags, the first argument of every entry point.
//
//   rlhf::gae(rlhf::cpu, ...)                              reference CPU backend, one thread
//   rlhf::gae(rlhf::cpu_backend{.threads = 2}, ...)        CPU backend over two threads
//   rlhf::gae(rlhf::cuda_backend{stream, handle}, ...)     CUDA backend (from a .cu file)
//
// Tags are small values, passed by value, never global state: a CUDA stream and cuBLAS handle
// travel inside cuda_backend. This header includes no CUDA header; the stream and handle types
// are the opaque structs that cudaStream_t and cublasHandle_t point to.
#pragma once

#include <rlhf/config.hpp>
#include <rlhf/tensor_view.hpp>

#include <concepts>
#include <type_traits>

struct CUstream_st;
struct cublasContext;

namespace rlhf {

/// The reference CPU backend. `threads` ≤ 1 runs on the calling thread; larger values split
/// independent rows over that many threads. Results do not depend on `threads` for row-wise
/// components; reductions over a whole batch are summed in a fixed order per thread count.
struct cpu_backend {
  int threads = 1;
};

/// The CPU backend on the calling thread.
inline constexpr cpu_backend cpu{};

/// The CUDA backend: work is enqueued on `stream` (nullptr = the legacy default stream) and
/// GEMMs go through `cublas`. Its overloads are visible only to nvcc (include the component's
/// header from a .cu file); calling one from a .cpp file is a compile error that says so.
struct cuda_backend {
  CUstream_st* stream = nullptr;  // a cudaStream_t
  cublasContext* cublas = nullptr;  // a cublasHandle_t
};

/// What each backend reads and writes.
template <class B>
struct backend_traits;
template <>
struct backend_traits<cpu_backend> {
  using memory_space = host_memory;
};
template <>
struct backend_traits<cuda_backend> {
  using memory_space = device_memory;
};

/// A backend tag the library knows.
template <class B>
concept Backend = requires { typename backend_traits<std::remove_cvref_t<B>>::memory_space; };

/// A view whose memory the backend can touch.
template <class View, class B>
concept ViewFor =
    Backend<B> && std::same_as<typename std::remove_cvref_t<View>::memory_space,
                               typename backend_traits<std::remove_cvref_t<B>>::memory_space>;

}  // namespace rlhf
