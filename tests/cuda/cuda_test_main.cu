// doctest main for the GPU tests: exits 77 (ctest's SKIP_RETURN_CODE) when no GPU is present,
// so a machine without one reports them as skipped, not passed.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cuda_runtime.h>

#include <cstdio>

int main(int argc, char** argv) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("no CUDA device: skipping\n");
    return 77;
  }
  doctest::Context context(argc, argv);
  return context.run();
}
