// Activation checkpointing ("gradient checkpointing" in transformers): each
// decoder layer keeps only its input for backward and runs its forward again
// there, so activation memory falls from L layers' worth of intermediates
// (attention and MLP inputs, the (N, I) gate/up products, ...) to one (B, T,
// H) tensor per layer plus one layer's intermediates at a time, for about
// one more forward of the layers (~1/3 more compute).
//
// How: the model's LlamaBackbone::layer_runner runs each layer inside a
// custom autograd function whose forward runs without a graph and whose
// backward recomputes the layer with grad enabled and backpropagates through
// it (the reentrant scheme of torch.utils.checkpoint): parameter gradients
// accumulate into .grad as usual, the input's gradient is returned. The
// random state (CPU and the input's device) is saved before the forward and
// restored for the recomputation, so dropout (LoRA) draws the same masks and
// the gradients equal those without checkpointing. A layer input that needs
// no gradient (the frozen embedding's output under LoRA) is made to need one,
// or backward would never reach the layer's adapters -- the trap that
// transformers' enable_input_require_grads exists for.
#ifndef FOAK_WORKER_TRAIN_ACTIVATION_CHECKPOINTING_H_
#define FOAK_WORKER_TRAIN_ACTIVATION_CHECKPOINTING_H_

#include "worker/model/llama.h"

namespace foak {

// Turns checkpointing on (or off) for every decoder layer of `model`.
void SetActivationCheckpointing(LlamaForCausalLM& model, bool enabled);

}  // namespace foak

#endif  // FOAK_WORKER_TRAIN_ACTIVATION_CHECKPOINTING_H_
