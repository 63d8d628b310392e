// Moving weights between a LlamaForCausalLM and a Hugging Face model folder.
//
// Loading checks every expected tensor before copying any: each missing tensor
// or wrong shape is named with the file and the expected shape, and unexpected
// extra tensors are reported (except lm_head.weight of a tied model, and
// rotary inv_freq buffers that some older checkpoints carry). Tensors are
// converted from the file's dtype to the model's while copying from the mapping.
//
// Saving writes config.json and safetensors (sharded past max_shard_bytes)
// with transformers' names into a temp folder beside the target, then renames
// it into place: a crash never leaves a half-written checkpoint under the
// final name. The swap replaces the whole folder: anything else that was in
// model_dir (tokenizer files, say) is gone afterwards, so write those after
// SaveModel returns.
#ifndef FOAK_WORKER_MODEL_WEIGHTS_H_
#define FOAK_WORKER_MODEL_WEIGHTS_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/model/llama.h"
#include "worker/model/safetensors.h"

namespace foak {

absl::Status LoadWeights(LlamaForCausalLM& model, const std::string& model_dir);

// A checkpoint tensor that is not a parameter of the model but that the
// caller loads itself, e.g. a decoder projection whose weight was released to
// be kept in another form (worker/quant/ quantises each one as it is read, so
// no dense copy of the whole model is ever made). LoadWeights checks it with
// the parameters (present, `shape`, a float dtype; every problem in one
// message) and, once all of them fit, calls `load` with the tensor as stored:
// a read-only CPU view of the memory mapping in the file's dtype, valid only
// during the call. An error from `load` stops loading (the parameters copied
// before it stay copied) and is returned naming the file and tensor.
struct ExternalTensor {
  std::string name;             // e.g. "model.layers.0.self_attn.q_proj.weight"
  std::vector<int64_t> shape;
  std::function<absl::Status(const torch::Tensor& stored)> load;
};
absl::Status LoadWeights(LlamaForCausalLM& model, const std::string& model_dir,
                         const std::vector<ExternalTensor>& external);

// The floating-point dtypes safetensors and torch share (F64, F32, F16, BF16):
// nullopt / an error naming the dtype for anything else.
std::optional<torch::Dtype> TorchFloatDtype(DType dtype);
absl::StatusOr<DType> SafetensorsFloatDtype(torch::Dtype dtype);

struct SaveOptions {
  uint64_t max_shard_bytes = 5ull << 30;  // transformers' default "5GB"
  // dtype written to disk; "" keeps each parameter's dtype.
  std::string dtype = "";  // "" | "float32" | "bfloat16" | "float16"
  // The tensor saved for a parameter (name, parameter); unset = the
  // parameter. E.g. the fp32 master weights gathered from sharded state.
  std::function<torch::Tensor(const std::string&, const torch::Tensor&)> tensor_for;
};
absl::Status SaveModel(LlamaForCausalLM& model, const std::string& model_dir,
                       const SaveOptions& options = {});

}  // namespace foak

#endif  // FOAK_WORKER_MODEL_WEIGHTS_H_
