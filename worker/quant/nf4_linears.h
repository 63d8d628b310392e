// QLoRA's frozen base: the decoder projections of a LlamaForCausalLM (q, k, v,
// o, gate, up, down of every layer) held in NF4 (kernels/nf4/nf4_op.h), as
// PEFT over transformers' load_in_4bit with bnb_4bit_quant_type "nf4". The
// embeddings, norms, biases and lm_head stay in their dtype, as bitsandbytes
// leaves them.
//
// How it hooks in, from outside the model (the model knows nothing of NF4):
// the Linear's "weight" parameter is released (LinearImpl::ReleaseWeight
// leaves a zero-element placeholder with the dtype and device, which LoRA
// reads to make its factors) and LinearImpl::base runs ops::Nf4Linear. The
// NF4 tensors belong to the hook, not to the module: named_parameters(),
// SaveModel and the optimizer never see them, and Module::to() does not move
// them, so quantise on the device the model will run on.
//
// Three ways in, by where the dense weight comes from; all give the same
// codes for the same dense weights:
//   LoadNf4Weights          from a Hugging Face folder, one projection at a
//                           time: read from the memory mapping, moved to the
//                           device, quantised, dropped. Peak memory is the NF4
//                           model plus one dense projection, so a 70B base is
//                           never whole in bf16. Build the model with
//                           ReleaseOnCreateHook() so that its uninitialised
//                           dense projections are not kept either.
//   QuantizeOnCreateHook    a randomly initialised model (benchmarks): each
//                           projection is quantised as soon as it is drawn.
//   QuantizeDecoderLinears  a dense model already in memory.
//
// Numerics. Forward and backward dequantise W into the input's dtype for one
// GEMM, so the compute dtype is the activations': bf16 under bf16-mixed (the
// QLoRA recipe's bnb_4bit_compute_dtype=bfloat16), fp32 under fp32. The codes
// are made from the weight in the model's dtype (fp32 for fp32 and
// bf16-mixed, bf16 for pure bf16). W gets no gradient; a bias (qwen2's q/k/v)
// is frozen like the rest of the base.
//
// Merging (save_merged): PEFT merges into a 4-bit layer by dequantising it
// and adding scale * B A; an adapter trained against dequant(W), not W, is
// only right on dequant(W). DequantizeDecoderLinears makes each projection
// dense again with exactly dequant(W), after which MergeLora (worker/lora/)
// folds the adapter in as for plain LoRA.
//
// Bytes per weight: 4 bits of code plus one fp32 absmax per 64-block = 0.5625;
// with double quantisation the absmax are 8-bit codes with one fp32 scale per
// 256 blocks, ~0.516 (the QLoRA paper's 4.127 bits).
#ifndef FOAK_WORKER_QUANT_NF4_LINEARS_H_
#define FOAK_WORKER_QUANT_NF4_LINEARS_H_

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/nf4/nf4_op.h"
#include "worker/model/llama.h"

namespace foak {

struct Nf4Options {
  // Quantise the per-block absmax scales too (bitsandbytes'
  // bnb_4bit_use_double_quant): ~0.047 bits per weight less.
  bool double_quant = true;
};

// What the NF4 projections of a model hold.
struct Nf4Stats {
  int64_t linears = 0;      // projections held in NF4
  int64_t params = 0;       // their weight elements
  int64_t nf4_bytes = 0;    // bytes of NF4 storage (codes and scales)
  int64_t dense_bytes = 0;  // what the same weights take in their dtype
  double BytesPerParam() const {
    return params > 0 ? static_cast<double>(nf4_bytes) / static_cast<double>(params) : 0.0;
  }
};

// Quantises every decoder projection whose weight is dense, on the weight's
// device, installs the NF4 base and frees the dense weight; projections
// already in NF4 stay as they are. INVALID_ARGUMENT (naming the layer and
// shape) when a weight's size is not a multiple of 64, FAILED_PRECONDITION
// for a projection released without a weight (ReleaseOnCreateHook but never
// loaded); checked before any layer changes. Returns the stats of all NF4
// projections.
absl::StatusOr<Nf4Stats> QuantizeDecoderLinears(LlamaForCausalLM& model, const Nf4Options& options);

// ModelInit::on_decoder_linear for a randomly initialised model: each
// projection is quantised right after its weight is drawn (the same random
// stream as a dense model's), and the dense weight freed. Throws c10::Error
// from the model's constructor for a size not a multiple of 64.
std::function<void(LinearImpl&)> QuantizeOnCreateHook(const Nf4Options& options);

// ModelInit::on_decoder_linear for a model whose weights LoadNf4Weights loads
// next (init.random = false): each projection's uninitialised weight is
// released as soon as it is made.
std::function<void(LinearImpl&)> ReleaseOnCreateHook();

// Loads a Hugging Face folder into `model` with every decoder projection in
// NF4, quantised one at a time on the device of the model's placeholder (see
// above); the other parameters load as LoadWeights does. Dense projections
// are released first. `round_through`: round each weight to that dtype before
// quantising (a merge that must reproduce the codes a pure-bf16 run made from
// an fp32 file). Errors name the file and tensor, as LoadWeights; after an
// error the model is partly loaded and should be dropped.
absl::StatusOr<Nf4Stats> LoadNf4Weights(LlamaForCausalLM& model, const std::string& model_dir,
                                        const Nf4Options& options,
                                        std::optional<torch::Dtype> round_through = std::nullopt);

// Makes every NF4 projection dense again: a frozen (requires_grad false)
// "weight" parameter holding the dequantised weight in `dtype` (default: the
// dtype it was quantised from), the NF4 base removed. The parameter is
// registered after the bias, so a saved checkpoint lists it later (names are
// what count). FAILED_PRECONDITION when the model has no NF4 projection.
absl::Status DequantizeDecoderLinears(LlamaForCausalLM& model,
                                      std::optional<torch::Dtype> dtype = std::nullopt);

// The NF4 weight installed on `linear`, or nullptr (dense, or another base).
const ops::Nf4Weight* FindNf4Weight(const LinearImpl& linear);

// The stats of the model's NF4 projections (zeros for a dense model).
Nf4Stats CountNf4(LlamaForCausalLM& model);

}  // namespace foak

#endif  // FOAK_WORKER_QUANT_NF4_LINEARS_H_
