// Plain CPU reference of rope (see rope.h for the math). The angle is the fp32
// product the kernel and transformers form; cos/sin are taken in double and
// rounded to fp32, the pair products and sums are double and rounded once, so
// the reference differs from an exact rotation of the fp32 angle by an ulp.
// Each pair is read before it is written, so outputs may alias inputs.
#include <cmath>
#include <vector>

#include "kernels/rope/rope.h"

namespace foak {
namespace {

// Rotates x (tokens, heads, d) by sign * angle into y (may alias x).
void Rotate(const RopeParams& p, int64_t heads, const float* x, float* y,
            const int64_t* position_ids, const float* inv_freq, float sign) {
  if (heads == 0) return;
  const int64_t tokens = p.batch * p.seq;
  const int64_t d = p.head_dim, half = d / 2;
  std::vector<double> c(half), s(half);
  for (int64_t n = 0; n < tokens; ++n) {
    const float position = static_cast<float>(position_ids[n]);
    for (int64_t i = 0; i < half; ++i) {
      const float angle = position * inv_freq[i];  // one fp32 product
      c[i] = static_cast<float>(std::cos(static_cast<double>(angle)));
      s[i] = sign * static_cast<float>(std::sin(static_cast<double>(angle)));
    }
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t row = (n * heads + h) * d;
      for (int64_t i = 0; i < half; ++i) {
        const double x1 = x[row + i], x2 = x[row + half + i];
        y[row + i] = static_cast<float>(x1 * c[i] - x2 * s[i]);
        y[row + half + i] = static_cast<float>(x2 * c[i] + x1 * s[i]);
      }
    }
  }
}

}  // namespace

void RopeForwardRef(const RopeParams& p, float* q, float* k, const int64_t* position_ids,
                    const float* inv_freq) {
  Rotate(p, p.q_heads, q, q, position_ids, inv_freq, 1.0f);
  Rotate(p, p.kv_heads, k, k, position_ids, inv_freq, 1.0f);
}

void RopeBackwardRef(const RopeParams& p, const float* dy_q, const float* dy_k,
                     const int64_t* position_ids, const float* inv_freq, float* dq, float* dk) {
  Rotate(p, p.q_heads, dy_q, dq, position_ids, inv_freq, -1.0f);
  Rotate(p, p.kv_heads, dy_k, dk, position_ids, inv_freq, -1.0f);
}

}  // namespace foak
