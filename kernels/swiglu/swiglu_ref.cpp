// Plain CPU reference of swiglu (see swiglu.h for the math). Double arithmetic
// and one rounding per output keep it a trustworthy oracle for the CUDA
// kernel's fp32 registers; exp(-g) overflowing to inf for g << 0 gives sig = 0
// exactly as on the device.
#include <cmath>

#include "kernels/swiglu/swiglu.h"

namespace foak {
namespace {

double Sigmoid(double g) { return 1.0 / (1.0 + std::exp(-g)); }

}  // namespace

void SwiGluForwardRef(const SwiGluParams& p, const float* g, const float* u, float* y) {
  for (int64_t i = 0; i < p.numel; ++i) {
    const double gi = g[i];
    y[i] = static_cast<float>(gi * Sigmoid(gi) * u[i]);
  }
}

void SwiGluBackwardRef(const SwiGluParams& p, const float* g, const float* u, const float* dy,
                       float* dg, float* du) {
  for (int64_t i = 0; i < p.numel; ++i) {
    const double gi = g[i];
    const double sig = Sigmoid(gi);
    if (dg) dg[i] = static_cast<float>(double(dy[i]) * u[i] * sig * (1.0 + gi * (1.0 - sig)));
    if (du) du[i] = static_cast<float>(double(dy[i]) * gi * sig);
  }
}

}  // namespace foak
