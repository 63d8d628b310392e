// nf4: 4-bit NormalFloat storage of a frozen weight (QLoRA, Dettmers et al.
// 2023; the format of bitsandbytes' quant_type="nf4"). A Llama-3-8B linear
// weight in bf16 costs 2 bytes per element; in NF4 it costs 0.5 + 4/64 =
// 0.5625 (0.5 + 1/64 + 4/(64*256) ~ 0.516 with double quantisation), which is
// what lets the ~7e9 frozen linear weights of an 8B model sit in under 4 GiB
// while LoRA adapters train next to them.
//
// Format. The weight is read as one flat array of `numel` elements in memory
// order (numel a multiple of 64) and cut into blocks of kNf4BlockSize = 64
// consecutive elements. Per block b:
//   absmax[b] = max |w_i| over the block                (fp32, exact)
//   xn_i      = w_i / absmax[b]                         (fp32, correctly rounded
//                                                        division, in [-1, 1])
//   code_i    = the index of the NF4 value nearest xn_i (4 bits)
// The 16 NF4 values (bitsandbytes' table; code 7 is exactly 0) are the
// quantiles of N(0, 1) rescaled to [-1, 1], with 8 values above 0 and 7
// below, so each code is used about equally often by normally distributed
// weights (the "information-theoretically optimal" claim of the paper):
//   -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
//   -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
//   0.07958029955625534, 0.16093020141124725, 0.24611230194568634,
//   0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
//   0.7229568362236023, 1.0
// Nearest is decided by 15 midpoint thresholds t_0 < ... < t_14, the fp32
// literals of bitsandbytes' dQuantizeNF4 decision tree (t_k is within half an
// fp32 ulp of (c_k + c_{k+1}) / 2; see Nf4Threshold for the four that are not
// the even-rounded midpoint): code_i is the number of t_k with xn_i > t_k, so
// a value exactly on a threshold takes the lower code. A block whose absmax is 0 (all zeros) gets code 7 everywhere
// (no division). Block 64 is the QLoRA choice: the scale of a block follows
// the local magnitude (outliers spoil at most 63 neighbours) while the fp32
// scale costs 0.5 bit per element.
//
// Packing (as bitsandbytes): byte i = code(2i) << 4 | code(2i + 1), so the
// first element of each pair sits in the high nibble.
//
// Dequantisation: w'_i = fp32(c[code_i] * absmax[b]) -- one fp32 multiply --
// then converted to the output dtype (identity for fp32, round-to-nearest-even
// for bf16/fp16). NF4 values round-trip: a weight equal to
// fp32(c_k * absmax) comes back bit for bit.
//
// Double quantisation (QLoRA's "DQ", defined here; bitsandbytes uses its
// dynamic 8-bit map instead of the linear one below). The fp32 block scales
// are themselves quantised to 8 bits in groups of kNf4GroupSize = 256 blocks
// (16384 elements), saving 0.5 - 0.127 = 0.373 bit per element:
//   B blocks, G = ceil(B / 256) groups; group g holds blocks 256g .. 256g+255
//   (the last group may be shorter).
//   S_g    = absmax[256g] + absmax[256g+1] + ...      double, left to right
//   offset = fp32((S_0 + S_1 + ... + S_{G-1}) / B)     double sum left to right,
//                                                      one double division
//   c_j    = fp32(absmax[j] - offset)
//   m_g    = max |c_j| over group g                     (fp32, exact)
//   scale_g = fp32(m_g / 127)                           (correctly rounded)
//   q_j    = scale_g > 0 ? clamp(rint(fp32(c_j / scale_g)), -127, 127) : 0
//            (rint: round half to even), stored as the byte q_j + 128 (1..255)
//   absmax'_j = fp32(fp32(float(q_j) * scale_g) + offset)  (two roundings,
//                                                          never fused to FMA)
// Subtracting the mean centres the (all positive, clustered) scales so the
// signed 8-bit code spends its range on their spread rather than their level.
// The 4-bit codes are computed from the exact fp32 absmax, as bitsandbytes
// does; only dequantisation sees absmax'. The mean is a fixed-order double sum
// so the CPU reference and the CUDA kernels (one thread per group, then one
// thread over the groups) produce the same offset bit for bit.
//
// Bitwise agreement. Everything above is max (exact), IEEE-correctly-rounded
// fp32/double +, *, / and comparisons against constants, so the CPU reference
// and the CUDA kernels give identical codes, scales, offsets and dequantised
// values. That needs no fast-math anywhere and no FMA contraction: the shared
// helpers below use __fdiv_rn / __fmul_rn / __fadd_rn on the device, and the
// host side relies on -ffp-contract=off (GCC in ISO mode, this project's
// setting; CMAKE_CXX_EXTENSIONS OFF).
//
// This header is free of torch types so the CPU reference, the CUDA kernels
// and the LibTorch binding share it; the helpers marked FOAK_NF4_HD compile for
// both host and device.
#ifndef FOAK_KERNELS_NF4_NF4_H_
#define FOAK_KERNELS_NF4_NF4_H_

#include <cmath>
#include <cstdint>

#include "kernels/common/scalar_kind.h"

#if defined(__CUDACC__)
#define FOAK_NF4_HD __host__ __device__ __forceinline__
#else
#define FOAK_NF4_HD inline
#endif

namespace foak {

constexpr int64_t kNf4BlockSize = 64;   // elements per absmax scale
constexpr int64_t kNf4GroupSize = 256;  // block scales per double-quant group
constexpr int kNf4ZeroCode = 7;         // the code of 0.0
constexpr int kNf4AbsmaxQZero = 128;    // stored byte of q_j = 0

// The NF4 value of `code` (0..15).
FOAK_NF4_HD constexpr float Nf4CodeValue(int code) {
  switch (code) {
    case 0: return -1.0f;
    case 1: return -0.6961928009986877f;
    case 2: return -0.5250730514526367f;
    case 3: return -0.39491748809814453f;
    case 4: return -0.28444138169288635f;
    case 5: return -0.18477343022823334f;
    case 6: return -0.09105003625154495f;
    case 7: return 0.0f;
    case 8: return 0.07958029955625534f;
    case 9: return 0.16093020141124725f;
    case 10: return 0.24611230194568634f;
    case 11: return 0.33791524171829224f;
    case 12: return 0.44070982933044434f;
    case 13: return 0.5626170039176941f;
    case 14: return 0.7229568362236023f;
    default: return 1.0f;
  }
}

// t_k, the boundary between codes k and k + 1 (k = 0..14): bitsandbytes'
// dQuantizeNF4 literals, the double midpoints (c_k + c_{k+1}) / 2 printed to
// 16-17 digits and read as fp32 literals. For k = 0, 8, 12 and 14 the exact
// midpoint of the two fp32 values is a tie between two floats and the printed
// digits fall on one side of it, so t_k is the literal's nearest float, not
// the even-rounded midpoint; using the literals keeps the codes bitsandbytes'.
FOAK_NF4_HD constexpr float Nf4Threshold(int k) {
  switch (k) {
    case 0: return -0.8480964004993439f;
    case 1: return -0.6106329262256622f;
    case 2: return -0.4599952697753906f;
    case 3: return -0.33967943489551544f;
    case 4: return -0.23460740596055984f;
    case 5: return -0.13791173323988914f;
    case 6: return -0.045525018125772476f;
    case 7: return 0.03979014977812767f;
    case 8: return 0.1202552504837513f;
    case 9: return 0.2035212516784668f;
    case 10: return 0.2920137718319893f;
    case 11: return 0.3893125355243683f;
    case 12: return 0.5016634166240692f;
    case 13: return 0.6427869200706482f;
    default: return 0.8614784181118011f;
  }
}

// The code of a normalised value xn in [-1, 1]: the number of thresholds below
// it (ties go to the lower code). Fully unrolled to 15 compares with constants.
FOAK_NF4_HD int Nf4Encode(float xn) {
  int code = 0;
#if defined(__CUDACC__)
#pragma unroll
#endif
  for (int k = 0; k < 15; ++k) code += xn > Nf4Threshold(k) ? 1 : 0;
  return code;
}

// The 4-bit code of w in a block of largest magnitude absmax (>= |w|).
FOAK_NF4_HD int Nf4QuantizeValue(float w, float absmax) {
  if (!(absmax > 0.0f)) return kNf4ZeroCode;
#if defined(__CUDA_ARCH__)
  return Nf4Encode(__fdiv_rn(w, absmax));
#else
  return Nf4Encode(w / absmax);
#endif
}

// scale_g = fp32(m_g / 127).
FOAK_NF4_HD float Nf4AbsmaxScale(float group_max) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(group_max, 127.0f);
#else
  return group_max / 127.0f;
#endif
}

// The stored byte (q_j + 128) of a centred block scale c_j = absmax_j - offset.
FOAK_NF4_HD uint8_t Nf4QuantizeAbsmax(float centred, float scale) {
  if (!(scale > 0.0f)) return static_cast<uint8_t>(kNf4AbsmaxQZero);
#if defined(__CUDA_ARCH__)
  float q = rintf(__fdiv_rn(centred, scale));
#else
  float q = std::nearbyint(centred / scale);  // default rounding: half to even
#endif
  q = q < -127.0f ? -127.0f : (q > 127.0f ? 127.0f : q);
  return static_cast<uint8_t>(static_cast<int>(q) + kNf4AbsmaxQZero);
}

// absmax'_j from its stored byte, the group's scale and the offset.
FOAK_NF4_HD float Nf4DequantizeAbsmax(uint8_t q, float scale, float offset) {
  const float qf = static_cast<float>(static_cast<int>(q) - kNf4AbsmaxQZero);
#if defined(__CUDA_ARCH__)
  return __fadd_rn(__fmul_rn(qf, scale), offset);
#else
  const float scaled = qf * scale;  // rounded to fp32 before the add (no FMA)
  return scaled + offset;
#endif
}

// Blocks of 64 and double-quant groups of 256 blocks.
constexpr int64_t Nf4Blocks(int64_t numel) { return numel / kNf4BlockSize; }
constexpr int64_t Nf4Groups(int64_t blocks) {
  return (blocks + kNf4GroupSize - 1) / kNf4GroupSize;
}

struct Nf4Params {
  int64_t numel = 0;                   // elements of the weight, a positive multiple of 64
  ScalarKind kind = ScalarKind::kF32;  // dtype of the dense side (quantise input,
                                       // dequantise output); CUDA only, the
                                       // references take fp32
};

// The block scales of an NF4 weight: either absmax (single quantisation) or
// absmax_q + absmax_scale + absmax_offset (double), the other left null.
struct Nf4Scales {
  const float* absmax = nullptr;          // (blocks) fp32
  const uint8_t* absmax_q = nullptr;      // (blocks) q_j + 128
  const float* absmax_scale = nullptr;    // (groups) fp32
  const float* absmax_offset = nullptr;   // (1) fp32
  FOAK_NF4_HD bool double_quant() const { return absmax == nullptr; }
};

// ------------------------------------------------------- CPU reference --
// Preconditions (checked by the binding, not here): numel a positive
// multiple of 64, finite weights.

// w (numel) -> packed (numel / 2) codes, absmax (blocks) exact scales.
void Nf4QuantizeRef(const Nf4Params& p, const float* w, uint8_t* packed, float* absmax);
// absmax (blocks) -> absmax_q (blocks), absmax_scale (groups), *absmax_offset.
void Nf4DoubleQuantizeRef(int64_t blocks, const float* absmax, uint8_t* absmax_q,
                          float* absmax_scale, float* absmax_offset);
// absmax_q (blocks), absmax_scale (groups), offset -> absmax' (blocks).
void Nf4DequantizeAbsmaxRef(int64_t blocks, const uint8_t* absmax_q, const float* absmax_scale,
                            float absmax_offset, float* absmax);
// packed (numel / 2) + scales -> w' (numel) fp32.
void Nf4DequantizeRef(const Nf4Params& p, const uint8_t* packed, const Nf4Scales& scales,
                      float* w);

// -------------------------------------------------------- CUDA (nf4.cu) --
// Device pointers; `stream` is a cudaStream_t. w / out are of p.kind.

// w (numel) -> packed (numel / 2), absmax (blocks).
void Nf4QuantizeCuda(const Nf4Params& p, const void* w, uint8_t* packed, float* absmax,
                     void* stream);
// Doubles of workspace Nf4DoubleQuantizeCuda needs: one per group.
constexpr int64_t Nf4DoubleQuantWorkspace(int64_t blocks) { return Nf4Groups(blocks); }
// absmax (blocks) -> absmax_q (blocks), absmax_scale (groups), absmax_offset
// (1); workspace holds Nf4DoubleQuantWorkspace(blocks) doubles.
void Nf4DoubleQuantizeCuda(int64_t blocks, const float* absmax, uint8_t* absmax_q,
                           float* absmax_scale, float* absmax_offset, double* workspace,
                           void* stream);
// packed (numel / 2) + scales -> out (numel) of p.kind. 16-byte aligned
// `out` and 4-byte aligned `packed` take the vector path, others a byte loop.
void Nf4DequantizeCuda(const Nf4Params& p, const uint8_t* packed, const Nf4Scales& scales,
                       void* out, void* stream);

}  // namespace foak

#endif  // FOAK_KERNELS_NF4_NF4_H_
