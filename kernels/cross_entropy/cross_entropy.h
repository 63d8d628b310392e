// cross_entropy: per-row loss and gradient over logits, with the options the
// fused linear cross-entropy shares (it runs the same row kernel on each chunk
// of logits it computes).
//
// Math, per row with label y != ignore_index (V logits z, all in fp32):
//   s_j = z_j * logit_scale                  (Granite: logit_scale = 1/logits_scaling)
//   t_j = cap * tanh(s_j / cap) if softcap = cap > 0, else s_j
//   lse = log sum_j exp(t_j)                  (max-shifted)
//   loss = lse - (1 - eps) t_y - (eps / V) sum_j t_j + lambda lse^2
//          (label smoothing eps as in torch.nn.functional.cross_entropy;
//           z-loss lambda lse^2 as in PaLM; z_loss reports that term alone)
//   d loss / d z_j = [p_j (1 + 2 lambda lse) - (1 - eps) [j = y] - eps / V]
//                    * (1 - (t_j / cap)^2 if softcap) * logit_scale,  p = softmax(t)
// Ignored rows have loss 0 and a zero gradient. A label outside [0, V) that is
// not ignore_index gives a NaN loss (the kernel cannot raise; the trainer
// validates labels before they reach it).
//
// Memory: the gradient is written over the logits (in place), so no (N, V)
// buffer is added; the row kernel reads each row twice (max/sum, then the
// gradient) and writes it once. The fused linear cross-entropy runs it in
// place over each chunk of logits it computes, in the inputs' dtype, and feeds
// the result to its GEMMs.
#ifndef FOAK_KERNELS_CROSS_ENTROPY_CROSS_ENTROPY_H_
#define FOAK_KERNELS_CROSS_ENTROPY_CROSS_ENTROPY_H_

#include <cstdint>

#include "kernels/common/scalar_kind.h"

namespace foak {

struct CrossEntropyParams {
  int64_t rows = 0;   // N
  int64_t vocab = 0;  // V
  int64_t ignore_index = -100;
  float label_smoothing = 0.0f;  // eps in [0, 1)
  float z_loss = 0.0f;           // lambda >= 0
  float softcap = 0.0f;          // cap > 0 turns softcapping on
  float logit_scale = 1.0f;
  // Multiplies the written gradient only (not the loss): the fused linear
  // cross-entropy keeps fp16 gradients out of fp16's subnormal range with a
  // power of two here and divides it back out in its GEMMs.
  float grad_multiplier = 1.0f;
};

// CPU reference, double accumulators. logits (N, V) with row stride ld;
// labels (N); loss_rows, z_rows (N). grad (N, V) with row stride ld, or null;
// it may alias logits. Gradients are multiplied by grad_scale.
void CrossEntropyRef(const CrossEntropyParams& p, const float* logits, int64_t ld,
                     const int64_t* labels, float grad_scale, float* loss_rows, float* z_rows,
                     float* grad);

// CUDA. logits and grad: elements of `kind`, row stride ld; grad may be null
// (loss only) or alias logits (in place).
// grad_scale: one fp32 on the device (e.g. 1 / number of target tokens), or
// null for 1; row_scale: (N) fp32 on the device multiplying each row's
// gradient (reduction 'none' in backward), or null. lse_rows may be null.
void CrossEntropyForwardCuda(const CrossEntropyParams& p, ScalarKind kind, const void* logits,
                             int64_t ld, const int64_t* labels, const float* grad_scale,
                             const float* row_scale, float* loss_rows, float* z_rows,
                             float* lse_rows, void* grad, void* stream);

// data (n elements of `kind`) *= *scale, in place, on the device; every block
// returns at once when *scale == 1 (the usual grad_output of a loss), so the
// common case costs no pass over the data and needs no host synchronisation.
// row_len > 0 with a per-row scale: scale points to (n / row_len) values.
void ScaleByDeviceScalarCuda(ScalarKind kind, void* data, int64_t n, const float* scale,
                             int64_t row_len, void* stream);

}  // namespace foak

#endif  // FOAK_KERNELS_CROSS_ENTROPY_CROSS_ENTROPY_H_
