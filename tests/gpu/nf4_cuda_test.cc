// NF4 on CUDA against the CPU reference, bit for bit: quantise (codes,
// absmax, and with double quantisation the 8-bit scale codes, group scales
// and offset) from fp32, bf16 and fp16 weights at odd shapes, and the
// dequantised values in every output dtype, on the vector and the unaligned
// byte path. Then Nf4Linear forward and backward on CUDA against fp64 from
// the same dequantised weight, per dtype, and its memory: nothing of the
// dense weight's size outlives forward. Skips without a GPU.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/cuda.h>

#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/nf4/nf4.h"
#include "kernels/nf4/nf4_op.h"
#include "tests/testing/kernel_check.h"

#ifdef FOAK_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace foak {
namespace {

using testing::DtypeName;
using testing::RelMaxErr;

// Bitwise equality (so -0.0 != 0.0 and NaN patterns count), on the CPU.
bool SameBits(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  at::Tensor x = a.contiguous().cpu(), y = b.contiguous().cpu();
  const at::ScalarType as_int = x.element_size() == 4   ? at::kInt
                                : x.element_size() == 2 ? at::kShort
                                                        : at::kByte;
  return at::equal(x.view(as_int), y.view(as_int));
}

// The first index where a and b differ, for the failure message.
std::string FirstDiff(const at::Tensor& a, const at::Tensor& b) {
  at::Tensor x = a.contiguous().cpu().to(at::kDouble).flatten();
  at::Tensor y = b.contiguous().cpu().to(at::kDouble).flatten();
  if (x.numel() != y.numel()) return "sizes differ";
  at::Tensor ne = x.ne(y).nonzero();
  if (ne.numel() == 0) return "values equal (sign of zero differs?)";
  const int64_t i = ne[0][0].item<int64_t>();
  return "first difference at " + std::to_string(i) + ": " +
         std::to_string(x[i].item<double>()) + " vs " + std::to_string(y[i].item<double>());
}

#define EXPECT_SAME_BITS(got, want, what) \
  EXPECT_TRUE(SameBits(got, want)) << what << ": " << FirstDiff(got, want)

// A weight of `shape` in `dtype` whose blocks have widely different scales,
// with all-zero blocks and (fp32) a block of subnormals.
at::Tensor AwkwardWeight(const std::vector<int64_t>& shape, at::ScalarType dtype) {
  at::Tensor w = at::randn(shape, at::kFloat).flatten();
  const int64_t blocks = w.numel() / kNf4BlockSize;
  at::Tensor scale = at::exp(2.0 * at::randn({blocks, 1}));  // 1e-3 .. 1e3
  w = (w.view({blocks, kNf4BlockSize}) * scale).flatten();
  if (blocks > 3) w.narrow(0, 2 * kNf4BlockSize, kNf4BlockSize).zero_();
  if (blocks > 7 && dtype == at::kFloat) {
    w.narrow(0, 6 * kNf4BlockSize, kNf4BlockSize).mul_(1e-40);  // subnormal scale
  }
  return w.view(shape).to(dtype);
}

struct Case {
  std::vector<int64_t> shape;
  at::ScalarType dtype;
};

class Nf4Cuda : public ::testing::TestWithParam<Case> {};

TEST_P(Nf4Cuda, QuantizeAndDequantizeMatchReferenceBitwise) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const Case c = GetParam();
  at::manual_seed(11);
  const at::Tensor w_cpu = AwkwardWeight(c.shape, c.dtype);
  const at::Tensor w_gpu = w_cpu.to(at::kCUDA);
  for (bool dq : {false, true}) {
    SCOPED_TRACE(dq ? "double quant" : "single quant");
    testing::Poison(w_gpu.device());
    const ops::Nf4Weight ref = ops::Nf4Quantize(w_cpu, dq);
    const ops::Nf4Weight got = ops::Nf4Quantize(w_gpu, dq);
    ASSERT_TRUE(got.packed.is_cuda());
    EXPECT_SAME_BITS(got.packed, ref.packed, "packed");
    if (dq) {
      EXPECT_SAME_BITS(got.absmax_q, ref.absmax_q, "absmax_q");
      EXPECT_SAME_BITS(got.absmax_scale, ref.absmax_scale, "absmax_scale");
      EXPECT_SAME_BITS(got.absmax_offset, ref.absmax_offset, "absmax_offset");
    } else {
      EXPECT_SAME_BITS(got.absmax, ref.absmax, "absmax");
    }
    for (at::ScalarType out : {at::kFloat, at::kBFloat16, at::kHalf}) {
      SCOPED_TRACE("dequantise to " + DtypeName(out));
      testing::Poison(w_gpu.device());
      const at::Tensor d_gpu = ops::Nf4Dequantize(got, out);
      ASSERT_TRUE(d_gpu.is_cuda());
      ASSERT_EQ(d_gpu.scalar_type(), out);
      ASSERT_EQ(d_gpu.sizes(), w_cpu.sizes());
      EXPECT_SAME_BITS(d_gpu, ops::Nf4Dequantize(ref, out), "dequantised");
    }
  }
}

// Packed codes at storage offset 1 (not 4-byte aligned): the byte kernel.
TEST_P(Nf4Cuda, UnalignedPackedTakesTheBytePath) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const Case c = GetParam();
  at::manual_seed(12);
  const at::Tensor w = AwkwardWeight(c.shape, c.dtype).to(at::kCUDA);
  for (bool dq : {false, true}) {
    const ops::Nf4Weight q = ops::Nf4Quantize(w, dq);
    ops::Nf4Weight shifted = q;
    at::Tensor buf = at::empty({q.packed.numel() + 1}, q.packed.options());
    shifted.packed = buf.narrow(0, 1, q.packed.numel());
    shifted.packed.copy_(q.packed);
    ASSERT_NE(reinterpret_cast<uintptr_t>(shifted.packed.data_ptr()) % 4, 0u);
    for (at::ScalarType out : {at::kFloat, at::kBFloat16}) {
      testing::Poison(w.device());
      EXPECT_SAME_BITS(ops::Nf4Dequantize(shifted, out), ops::Nf4Dequantize(q, out),
                       std::string("unaligned ") + (dq ? "dq " : "") + DtypeName(out));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    OddShapes, Nf4Cuda,
    ::testing::Values(
        Case{{123, 192}, at::kFloat}, Case{{123, 192}, at::kBFloat16},
        Case{{123, 192}, at::kHalf},
        Case{{1, 64}, at::kFloat}, Case{{1, 64}, at::kBFloat16},  // one block
        Case{{5, 7, 320}, at::kHalf},                              // 3-D, 175 blocks
        Case{{1031, 4096}, at::kBFloat16}, Case{{1031, 4096}, at::kFloat},  // 258 groups
        Case{{3, 11008}, at::kHalf}),
    [](const ::testing::TestParamInfo<Case>& info) {
      std::string name;
      for (int64_t d : info.param.shape) name += std::to_string(d) + "x";
      return name + DtypeName(info.param.dtype);
    });

struct LinearCase {
  std::vector<int64_t> x_shape;  // (..., in)
  int64_t out;
  at::ScalarType dtype;
  double tol;  // vs fp64, relative to the largest reference magnitude
};

class Nf4LinearCuda : public ::testing::TestWithParam<LinearCase> {};

TEST_P(Nf4LinearCuda, ForwardBackwardMatchFp64) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const LinearCase c = GetParam();
  at::manual_seed(13);
  const int64_t in = c.x_shape.back();
  auto opts = at::TensorOptions().dtype(c.dtype).device(at::kCUDA);
  const at::Tensor w = at::randn({c.out, in}, opts);
  std::vector<int64_t> y_shape = c.x_shape;
  y_shape.back() = c.out;
  const at::Tensor x0 = at::randn(c.x_shape, opts);
  const at::Tensor b0 = at::randn({c.out}, opts);
  const at::Tensor dy = at::randn(y_shape, opts);
  for (bool dq : {false, true}) {
    SCOPED_TRACE(dq ? "double quant" : "single quant");
    const ops::Nf4Weight q = ops::Nf4Quantize(w, dq);
    // fp64 on the CPU from the same dequantised weight and rounded inputs.
    const at::Tensor w64 =
        ops::Nf4Dequantize(ops::Nf4Quantize(w.cpu(), dq), c.dtype).to(at::kDouble);
    at::Tensor x64 = x0.to(at::kCPU, at::kDouble).requires_grad_(true);
    at::Tensor b64 = b0.to(at::kCPU, at::kDouble).requires_grad_(true);
    at::Tensor y64 = at::linear(x64, w64, b64);
    y64.backward(dy.to(at::kCPU, at::kDouble));

    testing::Poison(w.device());
    at::Tensor x = x0.clone().requires_grad_(true);
    at::Tensor b = b0.clone().requires_grad_(true);
    at::Tensor y = ops::Nf4Linear(x, q, b);
    ASSERT_EQ(y.sizes(), at::IntArrayRef(y_shape));
    ASSERT_EQ(y.scalar_type(), c.dtype);
    y.backward(dy);
    EXPECT_LE(RelMaxErr(y, y64), c.tol) << "y";
    EXPECT_LE(RelMaxErr(x.grad(), x64.grad()), c.tol) << "dx";
    EXPECT_LE(RelMaxErr(b.grad(), b64.grad()), c.tol) << "dbias";
    EXPECT_TRUE(at::equal(x.detach(), x0)) << "x overwritten";

    // The same op on the CPU (reference dequantisation) agrees too.
    const ops::Nf4Weight q_cpu = ops::Nf4Quantize(w.cpu(), dq);
    at::Tensor xc = x0.cpu().to(at::kFloat).requires_grad_(true);
    at::Tensor yc = ops::Nf4Linear(xc, q_cpu, b0.cpu().to(at::kFloat));
    yc.backward(dy.cpu().to(at::kFloat));
    EXPECT_LE(RelMaxErr(y, yc), 2 * c.tol) << "y vs CPU op";
    EXPECT_LE(RelMaxErr(x.grad(), xc.grad()), 2 * c.tol) << "dx vs CPU op";
  }
}

INSTANTIATE_TEST_SUITE_P(
    OddShapes, Nf4LinearCuda,
    ::testing::Values(LinearCase{{5, 7, 192}, 123, at::kFloat, 1e-5},
                      LinearCase{{5, 7, 192}, 123, at::kBFloat16, 1e-2},
                      LinearCase{{5, 7, 192}, 123, at::kHalf, 2e-3},
                      LinearCase{{333, 4096}, 1024, at::kBFloat16, 1e-2},
                      LinearCase{{64}, 3, at::kFloat, 1e-5}),
    [](const ::testing::TestParamInfo<LinearCase>& info) {
      std::string name;
      for (int64_t d : info.param.x_shape) name += std::to_string(d) + "x";
      return name + "out" + std::to_string(info.param.out) + "_" + DtypeName(info.param.dtype);
    });

// Forward keeps only y and the NF4 weight alive: the dense (out, in)
// temporary is freed before it returns, and backward frees its own.
TEST(Nf4LinearCudaMemory, NoDenseWeightOutlivesTheCall) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
#ifdef FOAK_WITH_CUDA
  auto opts = at::TensorOptions().dtype(at::kBFloat16).device(at::kCUDA);
  const ops::Nf4Weight q = ops::Nf4Quantize(at::randn({4096, 4096}, opts), true);
  at::Tensor x = at::randn({16, 4096}, opts).requires_grad_(true);
  // One call first: cuBLAS takes its workspaces (32 MiB each on Hopper, one
  // per handle: forward's thread and autograd's) from the caching allocator.
  ops::Nf4Linear(x, q, at::Tensor()).sum().backward();
  x.mutable_grad() = at::Tensor();
  torch::cuda::synchronize();
  auto allocated = [] {
    return c10::cuda::CUDACachingAllocator::getDeviceStats(0).allocated_bytes[0].current;
  };
  const int64_t before = allocated();
  at::Tensor y = ops::Nf4Linear(x, q, at::Tensor());
  torch::cuda::synchronize();
  const int64_t dense = int64_t{4096} * 4096 * 2;
  // y (16 x 4096 bf16 = 128 KiB) and allocator rounding, far below 32 MiB.
  EXPECT_LT(allocated() - before, dense / 8) << "forward kept something of W's size";
  y.sum().backward();
  y = at::Tensor();
  x.mutable_grad() = at::Tensor();
  torch::cuda::synchronize();
  EXPECT_LT(allocated() - before, dense / 8) << "backward kept something of W's size";
#endif
}

}  // namespace
}  // namespace foak
