// Plain CPU reference of the cross-entropy row math (see cross_entropy.h),
// in double precision: the oracle for the CUDA row kernel and for the fused
// linear cross-entropy.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cross_entropy/cross_entropy.h"

namespace foak {

void CrossEntropyRef(const CrossEntropyParams& p, const float* logits, int64_t ld,
                     const int64_t* labels, float grad_scale, float* loss_rows, float* z_rows,
                     float* grad) {
  const int64_t v = p.vocab;
  const double eps = p.label_smoothing, lambda = p.z_loss, cap = p.softcap;
  std::vector<double> t(v);
  for (int64_t n = 0; n < p.rows; ++n) {
    const float* z = logits + n * ld;
    const int64_t y = labels[n];
    if (y == p.ignore_index) {
      loss_rows[n] = 0.0f;
      z_rows[n] = 0.0f;
      if (grad) std::fill(grad + n * ld, grad + n * ld + v, 0.0f);
      continue;
    }
    double max_t = -std::numeric_limits<double>::infinity(), sum_t = 0.0;
    for (int64_t j = 0; j < v; ++j) {
      double s = double(z[j]) * p.logit_scale;
      t[j] = cap > 0 ? cap * std::tanh(s / cap) : s;
      max_t = std::max(max_t, t[j]);
      sum_t += t[j];
    }
    double sum_exp = 0.0;
    for (int64_t j = 0; j < v; ++j) sum_exp += std::exp(t[j] - max_t);
    const double lse = max_t + std::log(sum_exp);
    if (y < 0 || y >= v) {
      loss_rows[n] = std::numeric_limits<float>::quiet_NaN();
      z_rows[n] = 0.0f;
      if (grad) std::fill(grad + n * ld, grad + n * ld + v, 0.0f);
      continue;
    }
    const double zl = lambda * lse * lse;
    loss_rows[n] = float(lse - (1.0 - eps) * t[y] - eps / double(v) * sum_t + zl);
    z_rows[n] = float(zl);
    if (!grad) continue;
    for (int64_t j = 0; j < v; ++j) {
      double g = std::exp(t[j] - lse) * (1.0 + 2.0 * lambda * lse) - eps / double(v);
      if (j == y) g -= 1.0 - eps;
      if (cap > 0) g *= 1.0 - (t[j] / cap) * (t[j] / cap);
      grad[n * ld + j] = float(g * p.logit_scale * p.grad_multiplier * grad_scale);
    }
  }
}

}  // namespace foak
