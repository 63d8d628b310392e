// The plain LibTorch composite of the cross-entropy with all the options the
// FOAK loss kernels take (see kernels/cross_entropy/cross_entropy.h), for
// tests to differentiate in fp64 with autograd: the independent reference the
// fused ops are compared against.
#ifndef FOAK_TESTS_TESTING_LOSS_REFERENCE_H_
#define FOAK_TESTS_TESTING_LOSS_REFERENCE_H_

#include <ATen/ATen.h>

#include "kernels/cross_entropy/cross_entropy_op.h"

namespace foak::testing {

// logits (N, V), labels (N) -> per-row losses (N) (0 for ignored rows) and the
// z-loss terms, in the logits' dtype.
inline std::pair<at::Tensor, at::Tensor> CompositeRowLosses(const at::Tensor& logits,
                                                            const at::Tensor& labels,
                                                            const ops::LossOptions& o) {
  const int64_t v = logits.size(-1);
  at::Tensor t = logits * o.logit_scale;
  if (o.softcap > 0) t = at::tanh(t / o.softcap) * o.softcap;
  at::Tensor lse = at::logsumexp(t, {-1});
  at::Tensor valid = labels.ne(o.ignore_index);
  at::Tensor safe = at::where(valid, labels, at::zeros_like(labels));
  at::Tensor t_y = t.gather(1, safe.unsqueeze(1)).squeeze(1);
  at::Tensor z = o.z_loss * lse * lse;
  at::Tensor loss = lse - (1.0 - o.label_smoothing) * t_y -
                    (o.label_smoothing / static_cast<double>(v)) * t.sum(-1) + z;
  at::Tensor mask = valid.to(logits.scalar_type());
  return {loss * mask, z * mask};
}

// The reduction the ops apply to row losses.
inline at::Tensor CompositeReduce(const at::Tensor& rows, const at::Tensor& labels,
                                  const ops::LossOptions& o) {
  if (o.normalizer > 0) return rows.sum() / o.normalizer;
  switch (o.reduction) {
    case ops::LossReduction::kNone: return rows;
    case ops::LossReduction::kSum: return rows.sum();
    case ops::LossReduction::kMean:
      return rows.sum() / labels.ne(o.ignore_index).sum().clamp_min(1).to(rows.scalar_type());
  }
  return rows;
}

}  // namespace foak::testing

#endif  // FOAK_TESTS_TESTING_LOSS_REFERENCE_H_
