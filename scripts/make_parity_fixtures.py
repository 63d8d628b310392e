#!/usr/bin/env python3
"""Makes the parity fixtures in tests/testdata/parity/ with Hugging Face transformers.

Run on the GPU host (it has torch + transformers; the CPU machines have neither):
    python3 scripts/make_parity_fixtures.py OUT_DIR
and copy OUT_DIR/<case>/ into tests/testdata/parity/<case>/.

For each case it builds a tiny random model of one family (2 layers, hidden 64,
GQA where the family has it, vocab 250: not a multiple of 64), perturbs every
parameter (norm weights and biases included, so a mistake in their use shows),
saves it with save_pretrained, and records on a fixed batch, in fp32 on CPU:
  reference.safetensors: input_ids, labels, logits, loss, grad.<param> for every
    parameter, and packed_input_ids / packed_position_ids / packed_logits for a
    row that packs two sequences (position ids restarting at 0; the expected
    logits are those of each sequence run alone);
  reference.json: versions, the AdamW settings, the losses of 3 AdamW steps
    on the same batch (decay on all but norms and biases, global-norm clipping),
    and a greedy generate() of 12 tokens from an 8-token prompt.
The C++ tests (tests/unit/parity_test.cc, adamw_parity_test.cc) assert that foak
reproduces these numbers.
"""
import json
import os
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModelForCausalLM

VOCAB = 250
B, T = 2, 16
ADAMW = {"lr": 1e-2, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1,
         "max_grad_norm": 1.0}

COMMON = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=160,
              num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              max_position_embeddings=256, rms_norm_eps=1e-5,
              bos_token_id=1, eos_token_id=2, pad_token_id=0)


def rope(theta, **scaling):
    params = {"rope_type": scaling.pop("rope_type", "default"), "rope_theta": theta}
    params.update(scaling)
    return params


CASES = {
    "llama3_gqa": ("llama", dict(COMMON, rope_parameters=rope(
        500000.0, rope_type="llama3", factor=8.0, low_freq_factor=1.0,
        high_freq_factor=4.0, original_max_position_embeddings=32))),
    "llama_tied_bias": ("llama", dict(COMMON, num_key_value_heads=4,
                                      tie_word_embeddings=True, attention_bias=True,
                                      mlp_bias=True, rope_parameters=rope(10000.0))),
    "mistral_window": ("mistral", dict(COMMON, sliding_window=6, head_dim=16,
                                       tie_word_embeddings=False,
                                       rope_parameters=rope(1000000.0))),
    "qwen2_bias": ("qwen2", dict(COMMON, tie_word_embeddings=False,
                                 rope_parameters=rope(1000000.0))),
    "granite_multipliers": ("granite", dict(COMMON, tie_word_embeddings=False,
                                            embedding_multiplier=4.0,
                                            residual_multiplier=0.5,
                                            attention_multiplier=0.2,
                                            logits_scaling=2.5,
                                            rope_parameters=rope(10000.0))),
}


def build(model_type, kwargs, seed):
    config = AutoConfig.for_model(model_type, **kwargs)
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager",
                                             dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.05 * torch.randn_like(p))
            else:
                p.copy_(0.08 * torch.randn_like(p))
    return model.eval()


def decay_groups(model):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        lname = name.lower()
        if lname.endswith(".bias") or "norm" in lname:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": ADAMW["weight_decay"]},
            {"params": no_decay, "weight_decay": 0.0}]


def make_case(out_dir, name, model_type, kwargs, seed):
    case_dir = os.path.join(out_dir, name)
    os.makedirs(case_dir, exist_ok=True)
    model = build(model_type, kwargs, seed)
    model.save_pretrained(case_dir, safe_serialization=True)

    g = torch.Generator().manual_seed(1000 + seed)
    input_ids = torch.randint(3, VOCAB, (B, T), generator=g)
    labels = input_ids.clone()
    labels[1, :3] = -100  # ignored targets
    labels[0, 7] = -100

    out = model(input_ids=input_ids, labels=labels)
    out.loss.backward()
    tensors = {
        "input_ids": input_ids,
        "labels": labels,
        "logits": out.logits.detach().float().contiguous(),
        "loss": out.loss.detach().float().reshape([]),
    }
    for pname, p in model.named_parameters():
        tensors["grad." + pname] = p.grad.detach().float().contiguous()
    model.zero_grad(set_to_none=True)

    # Packed row: sequences of 6 and 10 tokens, position ids restarting at 0.
    lens = [6, T - 6]
    packed = torch.randint(3, VOCAB, (1, T), generator=g)
    pos = torch.cat([torch.arange(n) for n in lens]).unsqueeze(0)
    with torch.no_grad():
        packed_logits = model(input_ids=packed, position_ids=pos).logits.float()
        separate = []
        start = 0
        for n in lens:
            separate.append(model(input_ids=packed[:, start:start + n]).logits.float())
            start += n
        separate = torch.cat(separate, dim=1)
    # transformers' eager attention does not isolate packed sequences (it keeps
    # one causal mask over the row), so the reference for a packed row is each
    # sequence run on its own: the semantics foak implements for packing.
    packed_err = (packed_logits - separate).abs().max().item()
    tensors["packed_input_ids"] = packed.contiguous()
    tensors["packed_position_ids"] = pos.contiguous()
    tensors["packed_logits"] = separate.contiguous()
    packed_ok = True
    print(f"  {name}: transformers' own packed row differs from separate runs by "
          f"{packed_err:.3e} (expected: eager attention does not split packed rows)")
    save_file(tensors, os.path.join(case_dir, "reference.safetensors"))

    # Greedy generation (transformers' generate, KV cache on) from a short
    # prompt: foak-worker generate must pick the same tokens.
    prompt = torch.randint(3, VOCAB, (1, 8), generator=g)
    with torch.no_grad():
        generated = model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt),
                                   do_sample=False, num_beams=1, max_new_tokens=12,
                                   eos_token_id=COMMON["eos_token_id"],
                                   pad_token_id=COMMON["pad_token_id"])
    greedy = {"prompt": prompt[0].tolist(), "output": generated[0, prompt.shape[1]:].tolist(),
              "max_new_tokens": 12, "eos_token_id": COMMON["eos_token_id"]}

    # Three AdamW steps on the same batch, from a fresh copy of the saved model.
    model = AutoModelForCausalLM.from_pretrained(case_dir, attn_implementation="eager",
                                                 dtype=torch.float32)
    model.train()
    opt = torch.optim.AdamW(decay_groups(model), lr=ADAMW["lr"],
                            betas=tuple(ADAMW["betas"]), eps=ADAMW["eps"],
                            foreach=False, fused=False)
    losses, norms = [], []
    for _ in range(3):
        loss = model(input_ids=input_ids, labels=labels).loss
        losses.append(loss.item())
        loss.backward()
        norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(),
                                                    ADAMW["max_grad_norm"]).item())
        opt.step()
        opt.zero_grad(set_to_none=True)

    meta = {
        "case": name,
        "model_type": model_type,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "attn_implementation": "eager",
        "dtype": "float32",
        "batch": [B, T],
        "loss": out.loss.item(),
        "packed_logits_from": "each packed sequence run alone",
        "adamw": ADAMW,
        "adamw_schedule": "constant",
        "adamw_no_decay": "parameters whose name ends in .bias or contains 'norm'",
        "adamw_losses": losses,
        "adamw_grad_norms_before_clip": norms,
        "greedy_generation": greedy,
    }
    with open(os.path.join(case_dir, "reference.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    print(f"  {name}: loss {out.loss.item():.6f} adamw {losses} packed_ok {packed_ok}")


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    out_dir = sys.argv[1]
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    for i, (name, (model_type, kwargs)) in enumerate(CASES.items()):
        make_case(out_dir, name, model_type, kwargs, seed=i + 1)


if __name__ == "__main__":
    main()
