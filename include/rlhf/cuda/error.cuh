// rlhf/cuda/error.cuh — turn CUDA runtime failures into rlhf::cuda_error, once, at the boundary.
#pragma once
#if !defined(__CUDACC__)
#error "<rlhf/cuda/error.cuh> needs nvcc: include the component's <rlhf/X.hpp> from a .cu file"
#endif

#include <rlhf/error.hpp>

#include <cuda_runtime.h>

#include <source_location>
#include <string>

namespace rlhf::cuda_impl {

/// Throws rlhf::cuda_error naming `function`, the CUDA error and where it was detected.
inline void throw_on_error(cudaError_t status, const char* function,
                           std::source_location where = std::source_location::current()) {
  if (status == cudaSuccess) return;
  RLHF_THROW(cuda_error(std::string(function) + ": " + cudaGetErrorName(status) + " (" +
                            cudaGetErrorString(status) + ") at " + where.file_name() + ":" +
                            std::to_string(where.line()),
                        static_cast<int>(status)));
}

/// Reads and clears the launch error state (so it does not leak into unrelated launches).
inline void check_launch(const char* function,
                         std::source_location where = std::source_location::current()) {
  throw_on_error(cudaGetLastError(), function, where);
}

}  // namespace rlhf::cuda_impl
