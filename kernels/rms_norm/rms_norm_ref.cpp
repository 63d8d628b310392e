// Plain CPU reference of rms_norm (see rms_norm.h for the math). Double
// accumulators keep it a trustworthy oracle for the CUDA kernel's fp32 sums.
#include <cmath>
#include <vector>

#include "kernels/rms_norm/rms_norm.h"

namespace foak {

void RmsNormForwardRef(const RmsNormParams& p, const float* x, const float* w, float* y,
                       float* rstd) {
  for (int64_t n = 0; n < p.rows; ++n) {
    const float* xr = x + n * p.hidden;
    double ss = 0.0;
    for (int64_t h = 0; h < p.hidden; ++h) ss += double(xr[h]) * xr[h];
    float r = 1.0f / std::sqrt(float(ss / p.hidden) + p.eps);
    rstd[n] = r;
    for (int64_t h = 0; h < p.hidden; ++h) y[n * p.hidden + h] = w[h] * (xr[h] * r);
  }
}

void RmsNormBackwardRef(const RmsNormParams& p, const float* x, const float* w,
                        const float* rstd, const float* dy, float* dx, float* dw) {
  std::vector<double> dw_acc(dw ? p.hidden : 0, 0.0);
  for (int64_t n = 0; n < p.rows; ++n) {
    const float* xr = x + n * p.hidden;
    const float* dyr = dy + n * p.hidden;
    double dot = 0.0;
    for (int64_t h = 0; h < p.hidden; ++h) dot += double(dyr[h]) * w[h] * xr[h] * rstd[n];
    double mean = dot / p.hidden;
    for (int64_t h = 0; h < p.hidden; ++h) {
      double xhat = double(xr[h]) * rstd[n];
      dx[n * p.hidden + h] = float(rstd[n] * (double(dyr[h]) * w[h] - xhat * mean));
      if (dw) dw_acc[h] += double(dyr[h]) * xhat;
    }
  }
  if (dw) {
    for (int64_t h = 0; h < p.hidden; ++h) dw[h] = float(dw_acc[h]);
  }
}

}  // namespace foak
