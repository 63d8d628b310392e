// LibTorch binding of NF4: checks with messages that name the wrong value,
// the CUDA-or-reference dispatch, and Nf4Linear's autograd Function.
//
// Nf4Linear saves nothing but the NF4 weight (its packed codes and scales,
// which live anyway): not x, not the dense W. Forward and backward each
// dequantise W into a temporary of x's dtype, run one GEMM and drop it, so
// the only (out, in) dense tensor is transient. The weight is frozen: it is
// not an autograd input (a plain struct argument), so nothing can ask for its
// gradient; x and bias are the Function's only tensor inputs.
#include "kernels/nf4/nf4_op.h"

#include <ATen/ATen.h>
#include <c10/core/DeviceGuard.h>
#include <torch/autograd.h>

#include <string>
#include <utility>

#include "kernels/common/op_util.h"
#include "kernels/nf4/nf4.h"

namespace foak {
namespace ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

ScalarKind KindOfDtype(at::ScalarType dtype, const char* what) {
  switch (dtype) {
    case at::kFloat: return ScalarKind::kF32;
    case at::kBFloat16: return ScalarKind::kBF16;
    case at::kHalf: return ScalarKind::kF16;
    default:
      TORCH_CHECK(false, what, " is ", dtype,
                  "; NF4 dequantises to float32, bfloat16 or float16");
  }
  return ScalarKind::kF32;
}

// One tensor of an Nf4Weight: defined, `dtype`, `numel` elements, contiguous,
// on `device`.
void CheckPart(const at::Tensor& t, const char* what, at::ScalarType dtype, int64_t numel,
               const at::Device& device, const std::vector<int64_t>& shape) {
  TORCH_CHECK(t.defined(), "nf4 weight of shape ", ShapeString(shape), ": ", what,
              " is undefined");
  TORCH_CHECK(t.scalar_type() == dtype, "nf4 weight of shape ", ShapeString(shape), ": ", what,
              " has dtype ", t.scalar_type(), ", expected ", dtype);
  TORCH_CHECK(t.numel() == numel, "nf4 weight of shape ", ShapeString(shape), ": ", what,
              " has ", t.numel(), " elements, expected ", numel);
  TORCH_CHECK(t.device() == device, "nf4 weight: ", what, " is on ", t.device(),
              " but the packed codes are on ", device);
}

// Throws unless w's tensors agree with its shape and with each other.
void CheckWeight(const Nf4Weight& w) {
  TORCH_CHECK(w.packed.defined(), "nf4 weight has no packed codes (default-constructed?); "
              "make it with Nf4Quantize");
  const int64_t numel = w.numel();
  TORCH_CHECK(numel > 0 && numel % kNf4BlockSize == 0, "nf4 weight of shape ",
              ShapeString(w.shape), " has ", numel, " elements; NF4 needs a positive multiple of ",
              kNf4BlockSize);
  const at::Device device = w.packed.device();
  const int64_t blocks = Nf4Blocks(numel);
  CheckPart(w.packed, "packed", at::kByte, numel / 2, device, w.shape);
  if (w.double_quant()) {
    CheckPart(w.absmax_q, "absmax_q", at::kByte, blocks, device, w.shape);
    CheckPart(w.absmax_scale, "absmax_scale", at::kFloat, Nf4Groups(blocks), device, w.shape);
    CheckPart(w.absmax_offset, "absmax_offset", at::kFloat, 1, device, w.shape);
  } else {
    CheckPart(w.absmax, "absmax", at::kFloat, blocks, device, w.shape);
  }
}

// Raw pointers of w's scales (tensors contiguous, on the device that runs).
Nf4Scales ScalesOf(const Nf4Weight& w, at::Tensor* keep) {
  Nf4Scales s;
  if (w.double_quant()) {
    keep[0] = w.absmax_q.contiguous();
    keep[1] = w.absmax_scale.contiguous();
    keep[2] = w.absmax_offset.contiguous();
    s.absmax_q = keep[0].data_ptr<uint8_t>();
    s.absmax_scale = keep[1].data_ptr<float>();
    s.absmax_offset = keep[2].data_ptr<float>();
  } else {
    keep[0] = w.absmax.contiguous();
    s.absmax = keep[0].data_ptr<float>();
  }
  return s;
}

// Dequantise a checked weight into `dtype` on its device.
at::Tensor Dequantize(const Nf4Weight& w, at::ScalarType dtype) {
  Nf4Params p;
  p.numel = w.numel();
  p.kind = KindOfDtype(dtype, "nf4 dequantize: the requested dtype");
  at::Tensor packed = w.packed.contiguous();
  at::Tensor keep[3];
  const Nf4Scales scales = ScalesOf(w, keep);
  if (packed.is_cuda()) {
#ifdef FOAK_WITH_CUDA
    at::Tensor out = at::empty(w.shape, packed.options().dtype(dtype));
    Nf4DequantizeCuda(p, packed.data_ptr<uint8_t>(), scales, out.data_ptr(),
                      CurrentStream(packed));
    CheckLaunch("nf4 dequantize");
    return out;
#else
    CurrentStream(packed);  // throws: no CUDA in this build
#endif
  }
  TORCH_CHECK(packed.is_cpu(), "nf4 dequantize: the weight is on ", packed.device(),
              "; NF4 runs on CPU or CUDA");
  at::Tensor out = at::empty(w.shape, at::TensorOptions().dtype(at::kFloat));
  Nf4DequantizeRef(p, packed.data_ptr<uint8_t>(), scales, out.data_ptr<float>());
  return dtype == at::kFloat ? out : out.to(dtype);
}

class Nf4LinearFunction : public torch::autograd::Function<Nf4LinearFunction> {
 public:
  // x (..., in), bias (out) or nullopt (an optional, not an undefined tensor:
  // autograd takes only defined tensors as inputs); the weight is not an
  // autograd input.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x,
                            const c10::optional<at::Tensor>& bias, const Nf4Weight& w) {
    at::Tensor wd = Dequantize(w, x.scalar_type());  // (out, in), dropped on return
    at::Tensor y = at::linear(x, wd, bias);
    // The NF4 weight only (constants: saved_data, not save_for_backward).
    auto& d = ctx->saved_data;
    d["packed"] = w.packed;
    d["absmax"] = w.absmax;
    d["absmax_q"] = w.absmax_q;
    d["absmax_scale"] = w.absmax_scale;
    d["absmax_offset"] = w.absmax_offset;
    d["shape"] = c10::IValue(w.shape);
    d["dtype"] = static_cast<int64_t>(w.dtype);
    d["x_dtype"] = static_cast<int64_t>(x.scalar_type());
    d["has_bias"] = bias.has_value();
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto& d = ctx->saved_data;
    const bool x_grad = ctx->needs_input_grad(0);
    // needs_input_grad counts tensor inputs only: bias is input 1 when given.
    const bool bias_grad = d.at("has_bias").toBool() && ctx->needs_input_grad(1);
    const auto x_dtype = static_cast<at::ScalarType>(d.at("x_dtype").toInt());
    at::Tensor dy = grads[0].to(x_dtype);  // (..., out)
    at::Tensor dx, dbias;
    if (x_grad) {
      Nf4Weight w;
      w.shape = d.at("shape").toIntVector();
      w.dtype = static_cast<at::ScalarType>(d.at("dtype").toInt());
      w.packed = d.at("packed").toTensor();
      w.absmax = d.at("absmax").toTensor();
      w.absmax_q = d.at("absmax_q").toTensor();
      w.absmax_scale = d.at("absmax_scale").toTensor();
      w.absmax_offset = d.at("absmax_offset").toTensor();
      dx = at::matmul(dy, Dequantize(w, x_dtype));  // (..., out) x (out, in)
    }
    if (bias_grad) dbias = dy.reshape({-1, dy.size(-1)}).sum(0);  // (out)
    return {dx, dbias, at::Tensor()};
  }
};

}  // namespace

int64_t Nf4Weight::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

int64_t Nf4Weight::nbytes() const {
  int64_t n = 0;
  for (const at::Tensor* t : {&packed, &absmax, &absmax_q, &absmax_scale, &absmax_offset}) {
    if (t->defined()) n += static_cast<int64_t>(t->nbytes());
  }
  return n;
}

Nf4Weight Nf4Quantize(const at::Tensor& w, bool double_quant) {
  TORCH_CHECK(w.defined(), "nf4 quantize: the weight is undefined");
  Nf4Params p;
  p.kind = KindOf(w, "nf4 quantize: the weight");
  p.numel = w.numel();
  TORCH_CHECK(p.numel > 0 && p.numel % kNf4BlockSize == 0, "nf4 quantize: weight of shape ",
              w.sizes(), " has ", p.numel, " elements, not a positive multiple of the NF4 block "
              "size ", kNf4BlockSize, "; NF4 scales whole blocks of ", kNf4BlockSize,
              " consecutive elements (keep this weight dense, or pad it to ",
              (p.numel / kNf4BlockSize + 1) * kNf4BlockSize, " elements)");
  TORCH_CHECK(w.is_cpu() || w.is_cuda(), "nf4 quantize: the weight is on ", w.device(),
              "; NF4 runs on CPU or CUDA");
  c10::DeviceGuard device_guard(w.device());
  // A NaN or inf would become the block's absmax and wipe its 63 neighbours.
  TORCH_CHECK(at::isfinite(w).all().item<bool>(), "nf4 quantize: weight of shape ", w.sizes(),
              " has NaN or infinite values; NF4 scales each block by its largest magnitude, "
              "which must be finite");
  const int64_t blocks = Nf4Blocks(p.numel);
  at::Tensor wc = w.contiguous();

  Nf4Weight out;
  out.shape = w.sizes().vec();
  out.dtype = w.scalar_type();
  auto byte_opts = wc.options().dtype(at::kByte);
  auto float_opts = wc.options().dtype(at::kFloat);
  out.packed = at::empty({p.numel / 2}, byte_opts);
  at::Tensor absmax = at::empty({blocks}, float_opts);
  if (double_quant) {
    out.absmax_q = at::empty({blocks}, byte_opts);
    out.absmax_scale = at::empty({Nf4Groups(blocks)}, float_opts);
    out.absmax_offset = at::empty({}, float_opts);
  }
  if (wc.is_cuda()) {
#ifdef FOAK_WITH_CUDA
    void* stream = CurrentStream(wc);
    Nf4QuantizeCuda(p, wc.data_ptr(), out.packed.data_ptr<uint8_t>(), absmax.data_ptr<float>(),
                    stream);
    CheckLaunch("nf4 quantize");
    if (double_quant) {
      at::Tensor ws = at::empty({Nf4DoubleQuantWorkspace(blocks)}, wc.options().dtype(at::kDouble));
      Nf4DoubleQuantizeCuda(blocks, absmax.data_ptr<float>(), out.absmax_q.data_ptr<uint8_t>(),
                            out.absmax_scale.data_ptr<float>(),
                            out.absmax_offset.data_ptr<float>(), ws.data_ptr<double>(), stream);
      CheckLaunch("nf4 double quantize");
    }
#else
    CurrentStream(wc);  // throws: no CUDA in this build
#endif
  } else {
    at::Tensor wf = CpuFloat(wc);  // exact for bf16 and fp16
    Nf4QuantizeRef(p, wf.data_ptr<float>(), out.packed.data_ptr<uint8_t>(),
                   absmax.data_ptr<float>());
    if (double_quant) {
      Nf4DoubleQuantizeRef(blocks, absmax.data_ptr<float>(), out.absmax_q.data_ptr<uint8_t>(),
                           out.absmax_scale.data_ptr<float>(),
                           out.absmax_offset.data_ptr<float>());
    }
  }
  if (!double_quant) out.absmax = absmax;  // with DQ the exact scales are dropped
  return out;
}

at::Tensor Nf4Dequantize(const Nf4Weight& w, at::ScalarType dtype) {
  CheckWeight(w);
  c10::DeviceGuard device_guard(w.packed.device());
  return Dequantize(w, dtype);
}

at::Tensor Nf4Dequantize(const Nf4Weight& w) { return Nf4Dequantize(w, w.dtype); }

at::Tensor Nf4Linear(const at::Tensor& x, const Nf4Weight& w, const at::Tensor& bias) {
  TORCH_CHECK(x.defined(), "nf4 linear: x is undefined");
  CheckWeight(w);
  TORCH_CHECK(w.shape.size() == 2, "nf4 linear: the weight has shape ", ShapeString(w.shape),
              "; a linear weight is (out, in)");
  const int64_t out_features = w.shape[0], in_features = w.shape[1];
  KindOf(x, "nf4 linear: x");
  TORCH_CHECK(x.dim() >= 1 && x.size(-1) == in_features, "nf4 linear: x has shape ", x.sizes(),
              " but the weight has shape ", ShapeString(w.shape), "; x must be (..., ",
              in_features, ")");
  TORCH_CHECK(x.device() == w.packed.device(), "nf4 linear: x is on ", x.device(),
              " but the weight is on ", w.packed.device());
  if (bias.defined()) {
    CheckLike(bias, x, "nf4 linear: bias", 1);
    TORCH_CHECK(bias.size(0) == out_features, "nf4 linear: bias has shape ", bias.sizes(),
                " but the weight has ", out_features, " output features");
  }
  c10::DeviceGuard device_guard(x.device());
  return Nf4LinearFunction::apply(
      x, bias.defined() ? c10::optional<at::Tensor>(bias) : c10::optional<at::Tensor>(), w);
}

}  // namespace ops
}  // namespace foak
