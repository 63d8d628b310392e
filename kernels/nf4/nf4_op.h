// NF4 (4-bit NormalFloat, QLoRA) storage of a frozen weight as LibTorch ops
// (see nf4.h for the format and the math). CUDA tensors run the kernels in
// nf4.cu, CPU tensors the reference in nf4_ref.cpp, and both give the same
// bits: quantising is a max, one correctly rounded division and comparisons
// against fixed thresholds; dequantising is one fp32 multiply, then one
// round-to-nearest-even conversion to the output dtype. Errors (a numel that
// is not a multiple of 64, non-finite weights, a dtype or shape that does not
// fit) throw c10::Error naming the value and what would be right.
#ifndef FOAK_KERNELS_NF4_NF4_OP_H_
#define FOAK_KERNELS_NF4_NF4_OP_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace foak {
namespace ops {

// A weight of shape `shape` (numel a multiple of kNf4BlockSize = 64) held in
// NF4. All tensors live on the device of the weight they were made from.
struct Nf4Weight {
  std::vector<int64_t> shape;   // the original shape, e.g. (out, in)
  at::ScalarType dtype;         // the original dtype (what Dequantize returns by default)
  at::Tensor packed;            // (numel / 2) uint8: two 4-bit codes per byte, see nf4.h
  // Without double quantisation: absmax (numel / 64) fp32, one scale per block.
  // With it: absmax_q (numel / 64) uint8 codes of (absmax - absmax_offset),
  // absmax_scale (ceil(blocks / 256)) fp32, absmax_offset () fp32.
  at::Tensor absmax;
  at::Tensor absmax_q;
  at::Tensor absmax_scale;
  at::Tensor absmax_offset;
  bool double_quant() const { return absmax_q.defined(); }
  int64_t numel() const;
  // Bytes held (packed codes plus scales).
  int64_t nbytes() const;
};

// w (any shape, numel a positive multiple of 64, finite; fp32, bf16 or fp16;
// any strides) -> NF4 on w's device. With double_quant the exact absmax is
// not kept (absmax stays undefined); the 4-bit codes are the same either way.
Nf4Weight Nf4Quantize(const at::Tensor& w, bool double_quant);

// NF4 -> a dense tensor of `w.shape` in `dtype` (fp32, bf16 or fp16).
at::Tensor Nf4Dequantize(const Nf4Weight& w, at::ScalarType dtype);
at::Tensor Nf4Dequantize(const Nf4Weight& w);  // in w.dtype

// y = x W^T + bias with W (out, in) stored in NF4 and frozen: autograd gives a
// gradient to x (and bias, when it requires one) only. Forward and backward
// each dequantise W into a temporary in x's dtype for one GEMM, so nothing of
// size (out, in) outlives the call and nothing but the NF4 weight is kept for
// backward. x (..., in) -> (..., out).
at::Tensor Nf4Linear(const at::Tensor& x, const Nf4Weight& w, const at::Tensor& bias);

}  // namespace ops
}  // namespace foak

#endif  // FOAK_KERNELS_NF4_NF4_OP_H_
