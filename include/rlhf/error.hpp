// rlhf/error.hpp — the exception hierarchy.
//
//   rlhf::error                 (std::runtime_error)   every failure the library reports
//   ├── rlhf::invalid_argument  bad shapes, sizes or option values passed to an entry point
//   ├── rlhf::format_error      a file or text that does not parse (names the file and position)
//   └── rlhf::cuda_error        a CUDA or cuBLAS call that failed (names the call and the code)
//
// Messages start with the qualified function, then the values involved:
//   "rlhf::gae(): rewards is 4x8 but values is 4x7"
// Numerical events (a NaN loss, a KL blow-up) are not exceptions; they are reported in the
// result structs of the components and the trainers decide what to do.
#pragma once

#include <rlhf/config.hpp>

#include <stdexcept>
#include <string>

namespace rlhf {

/// Base of every exception thrown by the library.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A bad argument value or shape at an entry point. Thrown before any output is written.
class invalid_argument : public error {
 public:
  using error::error;
};

/// A file or text that does not parse. The message names the file (or input) and the position.
class format_error : public error {
 public:
  using error::error;
};

/// A CUDA runtime or cuBLAS failure, converted once at the public boundary.
class cuda_error : public error {
 public:
  cuda_error(const std::string& message, int code) : error(message), code_(code) {}
  /// The raw cudaError_t / cublasStatus_t value.
  [[nodiscard]] int code() const noexcept { return code_; }

 private:
  int code_;
};

}  // namespace rlhf
