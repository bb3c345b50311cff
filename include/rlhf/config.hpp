// rlhf/config.hpp — version, portability and contract macros. Included first by every header.
//
// Every RLHF_ macro of the library is defined here and nowhere else.
#pragma once

#include <cstdio>
#include <cstdlib>

#define RLHF_VERSION_MAJOR 0
#define RLHF_VERSION_MINOR 1
#define RLHF_VERSION_PATCH 0
#define RLHF_VERSION (RLHF_VERSION_MAJOR * 10000 + RLHF_VERSION_MINOR * 100 + RLHF_VERSION_PATCH)

// Functions usable from host and device code. Under nvcc they are __host__ __device__; under
// a host compiler the macro is empty, so math/ headers stay plain C++20.
#if defined(__CUDACC__) || defined(__HIPCC__)
#define RLHF_HOST_DEVICE __host__ __device__
#define RLHF_DEVICE __device__
#else
#define RLHF_HOST_DEVICE
#define RLHF_DEVICE
#endif

#if defined(__GNUC__) || defined(__clang__)
#define RLHF_RESTRICT __restrict__
#define RLHF_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define RLHF_RESTRICT
#define RLHF_ALWAYS_INLINE inline
#endif

// RLHF_THROW(e): throws normally; without exceptions prints e.what() and aborts, so that a
// library built with -fno-exceptions still refuses bad input loudly instead of corrupting data.
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS)
#define RLHF_HAS_EXCEPTIONS 1
#define RLHF_THROW(exception) throw exception
#else
#define RLHF_HAS_EXCEPTIONS 0
#define RLHF_THROW(exception)                                         \
  do {                                                                \
    std::fprintf(stderr, "rlhf: fatal: %s\n", (exception).what());    \
    std::abort();                                                     \
  } while (false)
#endif

// RLHF_EXPECTS(cond): internal invariants and hot-loop preconditions, usable in device code.
// Host-side argument checks never use it: they throw rlhf::invalid_argument instead.
// Define RLHF_EXPECTS_USER(cond) to route violations to your own handler; define NDEBUG to
// compile them out.
#if defined(RLHF_EXPECTS_USER)
#define RLHF_EXPECTS(cond) RLHF_EXPECTS_USER(cond)
#elif defined(NDEBUG)
#define RLHF_EXPECTS(cond) ((void)0)
#else
#define RLHF_EXPECTS(cond)                                                                    \
  ((cond) ? (void)0                                                                           \
          : (std::fprintf(stderr, "rlhf: %s:%d: expectation failed: %s\n", __FILE__, __LINE__, \
                          #cond),                                                             \
             std::abort()))
#endif
