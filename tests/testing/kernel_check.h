// What every FOAK kernel test shares: error measures, the dtypes with their
// tolerances, and poisoning of free device memory so an output a kernel
// forgets to write shows up as NaN instead of a lucky zero.
//
// Tolerances are relative to the reference's largest magnitude (RelMaxErr) or
// its norm (RelNormErr), and are written per dtype next to each test: fp32
// sits near 1e-5, fp16 near 2e-3, bf16 near 1e-2 (8 mantissa bits).
#ifndef FOAK_TESTS_TESTING_KERNEL_CHECK_H_
#define FOAK_TESTS_TESTING_KERNEL_CHECK_H_

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <string>
#include <vector>


namespace foak::testing {

// max |got - want| / max(max |want|, floor). Both are compared in fp64 on the CPU.
inline double RelMaxErr(const at::Tensor& got, const at::Tensor& want, double floor = 1e-12) {
  at::Tensor g = got.detach().to(at::kCPU, at::kDouble);
  at::Tensor w = want.detach().to(at::kCPU, at::kDouble);
  if (g.sizes() != w.sizes()) return 1e30;
  if (!at::isfinite(g).all().item<bool>()) return 1e30;  // poisoned or overflowed
  const double scale = std::max(floor, w.abs().max().item<double>());
  return (g - w).abs().max().item<double>() / scale;
}

// ||got - want|| / ||want||.
inline double RelNormErr(const at::Tensor& got, const at::Tensor& want) {
  at::Tensor g = got.detach().to(at::kCPU, at::kDouble);
  at::Tensor w = want.detach().to(at::kCPU, at::kDouble);
  if (g.sizes() != w.sizes()) return 1e30;
  if (!at::isfinite(g).all().item<bool>()) return 1e30;
  return (g - w).norm().item<double>() / std::max(1e-300, w.norm().item<double>());
}

// NaN into the caching allocator's free blocks, so the next allocations on
// `device` start out poisoned: one 256 MiB block (large requests are split
// from it) and 64 blocks of 512 KiB (requests under 1 MiB come from a separate
// pool of 2 MiB blocks). No-op on CPU.
inline void Poison(const at::Device& device) {
  if (!device.is_cuda()) return;
  const auto options = at::TensorOptions().dtype(at::kFloat).device(device);
  std::vector<at::Tensor> blocks;
  blocks.push_back(at::empty({(int64_t{256} << 20) / 4}, options));
  for (int i = 0; i < 64; ++i) blocks.push_back(at::empty({(int64_t{1} << 19) / 4}, options));
  for (at::Tensor& t : blocks) t.fill_(std::numeric_limits<float>::quiet_NaN());
}

// Runs fn, which must throw c10::Error whose message contains `needle`.
template <typename Fn>
void ExpectTorchError(Fn fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "expected an error mentioning " << needle;
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

inline std::string DtypeName(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "fp32";
    case at::kBFloat16: return "bf16";
    case at::kHalf: return "fp16";
    case at::kDouble: return "fp64";
    default: return "other";
  }
}

}  // namespace foak::testing

#endif  // FOAK_TESTS_TESTING_KERNEL_CHECK_H_
