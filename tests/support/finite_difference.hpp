// tests/support/finite_difference.hpp — central finite differences for gradient checks.
//
// gradcheck-style: double precision, eps 1e-6, |analytic − numeric| ≤ atol + rtol·|numeric|
// with atol 1e-5, rtol 1e-3 (PyTorch's torch.autograd.gradcheck defaults).
#pragma once

#include <cstddef>
#include <functional>
#include <vector>

namespace rlhf::test {

/// d f / d x_i for every i, by (f(x + eps e_i) − f(x − eps e_i)) / 2eps. `x` is restored.
inline std::vector<double> numeric_gradient(const std::function<double()>& f, std::vector<double>& x,
                                            double eps = 1e-6) {
  std::vector<double> g(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double saved = x[i];
    x[i] = saved + eps;
    const double plus = f();
    x[i] = saved - eps;
    const double minus = f();
    x[i] = saved;
    g[i] = (plus - minus) / (2 * eps);
  }
  return g;
}

}  // namespace rlhf::test
