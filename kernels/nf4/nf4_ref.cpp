// Plain CPU reference of NF4 (see nf4.h for the format). It shares the
// per-element helpers of nf4.h with the CUDA kernels and walks the blocks and
// groups in the order nf4.h defines, so CUDA must match it bit for bit; the
// format itself is checked against an independent Python implementation
// (scripts/make_nf4_fixture.py, tests/unit/nf4_ref_test.cc).
#include <algorithm>
#include <cmath>

#include "kernels/nf4/nf4.h"

namespace foak {
namespace {

// Each threshold lies strictly between its two codes (so the codes are sorted
// and every code is reachable).
constexpr bool ThresholdsSeparateCodes() {
  for (int k = 0; k < 15; ++k) {
    if (!(Nf4CodeValue(k) < Nf4Threshold(k) && Nf4Threshold(k) < Nf4CodeValue(k + 1))) {
      return false;
    }
  }
  return true;
}
static_assert(ThresholdsSeparateCodes(), "NF4 thresholds out of order");
static_assert(Nf4CodeValue(kNf4ZeroCode) == 0.0f, "code 7 is zero");

constexpr float kCodes[16] = {
    Nf4CodeValue(0),  Nf4CodeValue(1),  Nf4CodeValue(2),  Nf4CodeValue(3),
    Nf4CodeValue(4),  Nf4CodeValue(5),  Nf4CodeValue(6),  Nf4CodeValue(7),
    Nf4CodeValue(8),  Nf4CodeValue(9),  Nf4CodeValue(10), Nf4CodeValue(11),
    Nf4CodeValue(12), Nf4CodeValue(13), Nf4CodeValue(14), Nf4CodeValue(15)};

}  // namespace

void Nf4QuantizeRef(const Nf4Params& p, const float* w, uint8_t* packed, float* absmax) {
  const int64_t blocks = Nf4Blocks(p.numel);
  for (int64_t b = 0; b < blocks; ++b) {
    const float* wb = w + b * kNf4BlockSize;
    float m = 0.0f;
    for (int64_t i = 0; i < kNf4BlockSize; ++i) m = std::max(m, std::fabs(wb[i]));
    absmax[b] = m;
    uint8_t* out = packed + b * (kNf4BlockSize / 2);
    for (int64_t i = 0; i < kNf4BlockSize / 2; ++i) {
      const int hi = Nf4QuantizeValue(wb[2 * i], m);
      const int lo = Nf4QuantizeValue(wb[2 * i + 1], m);
      out[i] = static_cast<uint8_t>(hi << 4 | lo);
    }
  }
}

void Nf4DoubleQuantizeRef(int64_t blocks, const float* absmax, uint8_t* absmax_q,
                          float* absmax_scale, float* absmax_offset) {
  const int64_t groups = Nf4Groups(blocks);
  // Per-group double sums, then their sum, both left to right (the CUDA
  // kernels: one thread per group, then one thread over the groups).
  double total = 0.0;
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t end = std::min(blocks, (g + 1) * kNf4GroupSize);
    double s = 0.0;
    for (int64_t j = g * kNf4GroupSize; j < end; ++j) s += static_cast<double>(absmax[j]);
    total += s;
  }
  const float offset = static_cast<float>(total / static_cast<double>(blocks));
  *absmax_offset = offset;
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t begin = g * kNf4GroupSize;
    const int64_t end = std::min(blocks, begin + kNf4GroupSize);
    float m = 0.0f;
    for (int64_t j = begin; j < end; ++j) m = std::max(m, std::fabs(absmax[j] - offset));
    const float scale = Nf4AbsmaxScale(m);
    absmax_scale[g] = scale;
    for (int64_t j = begin; j < end; ++j) {
      absmax_q[j] = Nf4QuantizeAbsmax(absmax[j] - offset, scale);
    }
  }
}

void Nf4DequantizeAbsmaxRef(int64_t blocks, const uint8_t* absmax_q, const float* absmax_scale,
                            float absmax_offset, float* absmax) {
  for (int64_t j = 0; j < blocks; ++j) {
    absmax[j] = Nf4DequantizeAbsmax(absmax_q[j], absmax_scale[j / kNf4GroupSize], absmax_offset);
  }
}

void Nf4DequantizeRef(const Nf4Params& p, const uint8_t* packed, const Nf4Scales& scales,
                      float* w) {
  const int64_t blocks = Nf4Blocks(p.numel);
  for (int64_t b = 0; b < blocks; ++b) {
    const float a = scales.double_quant()
                        ? Nf4DequantizeAbsmax(scales.absmax_q[b],
                                              scales.absmax_scale[b / kNf4GroupSize],
                                              *scales.absmax_offset)
                        : scales.absmax[b];
    const uint8_t* in = packed + b * (kNf4BlockSize / 2);
    float* out = w + b * kNf4BlockSize;
    for (int64_t i = 0; i < kNf4BlockSize / 2; ++i) {
      out[2 * i] = kCodes[in[i] >> 4] * a;
      out[2 * i + 1] = kCodes[in[i] & 15] * a;
    }
  }
}

}  // namespace foak
