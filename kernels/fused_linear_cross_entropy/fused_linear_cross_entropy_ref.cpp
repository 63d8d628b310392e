// Plain CPU reference of the fused linear cross-entropy: logits one row at a
// time in double, the cross-entropy row math of cross_entropy_ref.cpp, then
// dx and dW from that row's gradient. The oracle for the CUDA path.
#include <algorithm>
#include <vector>

#include "kernels/cross_entropy/cross_entropy.h"
#include "kernels/fused_linear_cross_entropy/fused_linear_cross_entropy.h"

namespace foak {

int64_t FusedLinearCrossEntropyChunkRows(int64_t rows, int64_t vocab, int64_t element_bytes,
                                         int64_t budget_bytes) {
  const int64_t per_row = std::max<int64_t>(1, vocab) * element_bytes;
  const int64_t c = std::max<int64_t>(budget_bytes / per_row / 64 * 64, 64);
  if (rows <= 0) return c;
  const int64_t chunks = (rows + c - 1) / c;
  const int64_t even = (rows + chunks - 1) / chunks;
  return std::min(c, (even + 63) / 64 * 64);
}

void FusedLinearCrossEntropyRef(const FusedLinearCrossEntropyParams& p, const float* x,
                                const float* w, const int64_t* labels, float grad_scale,
                                const float* row_scale, float* loss_rows, float* z_rows,
                                float* dx, float* dw) {
  const int64_t m = p.ce.rows, v = p.ce.vocab, h = p.hidden;
  std::vector<double> dw_acc(dw ? v * h : 0, 0.0);
  std::vector<float> logits(v), grad(v);
  CrossEntropyParams row = p.ce;
  row.rows = 1;
  const bool want_grad = dx != nullptr || dw != nullptr;
  for (int64_t i = 0; i < m; ++i) {
    const float* xi = x + i * h;
    for (int64_t j = 0; j < v; ++j) {
      double acc = 0.0;
      const float* wj = w + j * h;
      for (int64_t k = 0; k < h; ++k) acc += double(xi[k]) * wj[k];
      logits[j] = float(acc);
    }
    const float scale = grad_scale * (row_scale ? row_scale[i] : 1.0f);
    CrossEntropyRef(row, logits.data(), v, labels + i, scale, loss_rows + i, z_rows + i,
                    want_grad ? grad.data() : nullptr);
    if (!want_grad) continue;
    if (dx) {
      for (int64_t k = 0; k < h; ++k) {
        double acc = 0.0;
        for (int64_t j = 0; j < v; ++j) acc += double(grad[j]) * w[j * h + k];
        dx[i * h + k] = float(acc);
      }
    }
    if (dw) {
      for (int64_t j = 0; j < v; ++j) {
        if (grad[j] == 0.0f) continue;
        for (int64_t k = 0; k < h; ++k) dw_acc[j * h + k] += double(grad[j]) * xi[k];
      }
    }
  }
  if (dw) {
    for (int64_t e = 0; e < v * h; ++e) dw[e] = float(dw_acc[e]);
  }
}

}  // namespace foak
