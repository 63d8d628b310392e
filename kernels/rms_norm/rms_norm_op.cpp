// LibTorch binding of rms_norm: shape and dtype checks, the autograd Function,
// and the choice between the CUDA kernel and the CPU reference. Saved for
// backward: x (the residual stream, which the caller keeps anyway), w and the
// N fp32 rstd values; nothing of size N x H is added.
#include "kernels/rms_norm/rms_norm_op.h"

#include <ATen/ATen.h>
#include <c10/core/DeviceGuard.h>
#include <torch/autograd.h>

#include "kernels/common/op_util.h"
#include "kernels/rms_norm/rms_norm.h"

namespace foak {
namespace ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

RmsNormParams ParamsFor(const at::Tensor& x2d, double eps) {
  RmsNormParams p;
  p.rows = x2d.size(0);
  p.hidden = x2d.size(1);
  p.eps = static_cast<float>(eps);
  p.kind = KindOf(x2d, "rms_norm input");
  return p;
}

// x2d (N, H) contiguous -> {y (N, H), rstd (N) fp32}.
std::pair<at::Tensor, at::Tensor> Forward(const at::Tensor& x2d, const at::Tensor& w,
                                          double eps) {
  const RmsNormParams p = ParamsFor(x2d, eps);
  if (x2d.is_cuda()) {
#ifdef FOAK_WITH_CUDA
    at::Tensor y = at::empty_like(x2d);
    at::Tensor rstd = at::empty({p.rows}, x2d.options().dtype(at::kFloat));
    RmsNormForwardCuda(p, x2d.data_ptr(), w.data_ptr(), y.data_ptr(), rstd.data_ptr<float>(),
                       CurrentStream(x2d));
    CheckLaunch("rms_norm forward");
    return {y, rstd};
#else
    CurrentStream(x2d);  // throws: no CUDA in this build
#endif
  }
  at::Tensor xf = CpuFloat(x2d), wf = CpuFloat(w);
  at::Tensor y = at::empty_like(xf);
  at::Tensor rstd = at::empty({p.rows}, xf.options());
  RmsNormForwardRef(p, xf.data_ptr<float>(), wf.data_ptr<float>(), y.data_ptr<float>(),
                    rstd.data_ptr<float>());
  return {Restore(y, x2d), rstd};
}

// -> {dx (N, H), dw (H) or undefined}.
std::pair<at::Tensor, at::Tensor> Backward(const at::Tensor& x2d, const at::Tensor& w,
                                           const at::Tensor& rstd, const at::Tensor& dy2d,
                                           double eps, bool weight_grad) {
  const RmsNormParams p = ParamsFor(x2d, eps);
  if (x2d.is_cuda()) {
#ifdef FOAK_WITH_CUDA
    at::Tensor dx = at::empty_like(x2d);
    at::Tensor dw, workspace;
    if (weight_grad) {
      dw = at::empty_like(w);
      workspace = at::empty({RmsNormBackwardWorkspaceRows(p), p.hidden},
                            x2d.options().dtype(at::kFloat));
    }
    RmsNormBackwardCuda(p, x2d.data_ptr(), w.data_ptr(), rstd.data_ptr<float>(), dy2d.data_ptr(),
                        dx.data_ptr(), weight_grad ? workspace.data_ptr<float>() : nullptr,
                        weight_grad ? dw.data_ptr() : nullptr, CurrentStream(x2d));
    CheckLaunch("rms_norm backward");
    return {dx, dw};
#else
    CurrentStream(x2d);  // throws: no CUDA in this build
#endif
  }
  at::Tensor xf = CpuFloat(x2d), wf = CpuFloat(w), dyf = CpuFloat(dy2d);
  at::Tensor dx = at::empty_like(xf);
  at::Tensor dw = weight_grad ? at::empty_like(wf) : at::Tensor();
  RmsNormBackwardRef(p, xf.data_ptr<float>(), wf.data_ptr<float>(), rstd.data_ptr<float>(),
                     dyf.data_ptr<float>(), dx.data_ptr<float>(),
                     weight_grad ? dw.data_ptr<float>() : nullptr);
  return {Restore(dx, x2d), weight_grad ? Restore(dw, w) : at::Tensor()};
}

class RmsNormFunction : public torch::autograd::Function<RmsNormFunction> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w,
                            double eps) {
    const int64_t hidden = x.size(-1);
    at::Tensor x2d = x.reshape({-1, hidden}).contiguous();
    at::Tensor wc = w.contiguous();
    auto [y, rstd] = Forward(x2d, wc, eps);
    ctx->save_for_backward({x2d, wc, rstd});
    ctx->saved_data["eps"] = eps;
    return y.view(x.sizes());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& x2d = saved[0];
    const at::Tensor& w = saved[1];
    const at::Tensor& rstd = saved[2];
    const double eps = ctx->saved_data["eps"].toDouble();
    at::Tensor dy2d = grads[0].reshape({-1, x2d.size(1)}).contiguous();
    auto [dx, dw] = Backward(x2d, w, rstd, dy2d, eps, ctx->needs_input_grad(1));
    return {dx.view(grads[0].sizes()), dw, at::Tensor()};
  }
};

}  // namespace

at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& w, double eps) {
  TORCH_CHECK(x.dim() >= 1, "rms_norm input must have a hidden dimension, got ", x.sizes());
  CheckLike(w, x, "rms_norm weight", 1);
  TORCH_CHECK(w.size(0) == x.size(-1), "rms_norm weight has ", w.size(0),
              " elements but the input's hidden size is ", x.size(-1));
  c10::DeviceGuard device_guard(x.device());  // launches go to the tensors' GPU
  return RmsNormFunction::apply(x, w, eps);
}

}  // namespace ops
}  // namespace foak
