#!/usr/bin/env python3
"""Makes the LoRA fixtures in tests/testdata/peft/ with the real PEFT library.

Run on the GPU host (it has torch, transformers and peft; the CPU machines have
none of them):
    python3 scripts/make_peft_fixtures.py --out OUT_DIR
and copy OUT_DIR/<case>/ into tests/testdata/peft/<case>/.

Each case wraps one committed tiny transformers model of tests/testdata/parity/
with peft.get_peft_model, sets every lora_B to small random values (PEFT starts
B at zero, which would make the adapter a no-op and hide mistakes in its use),
saves the adapter with save_pretrained (adapter_config.json +
adapter_model.safetensors: what foak must load) and records, in fp32 on CPU:
  reference.safetensors: input_ids, labels, logits, loss, grad.<name> of every
    lora_A / lora_B parameter (names as foak's named_parameters() gives them:
    PEFT's "base_model.model." prefix and ".default" adapter name dropped), and
    merged_logits: the logits of merge_and_unload() on the same input;
  reference.json: versions, the LoRA settings, the base case, and the dtype
    PEFT gives the adapter weights of a bf16 base (foak follows it).
The script asserts that no base parameter receives a gradient. The C++ test
tests/unit/lora_peft_parity_test.cc asserts that foak reproduces these numbers.
"""
import argparse
import json
import os

import peft
import torch
import transformers
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
PARITY_DIR = os.path.join(HERE, "..", "tests", "testdata", "parity")
ALL_SEVEN = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
VOCAB = 250
B, T = 2, 16

# case -> (base case under tests/testdata/parity, LoraConfig kwargs)
CASES = {
    "llama3_gqa": ("llama3_gqa", dict(r=4, lora_alpha=8, target_modules=ALL_SEVEN)),
    "qwen2_bias": ("qwen2_bias", dict(r=4, lora_alpha=8, target_modules=ALL_SEVEN)),
    # rsLoRA scale alpha/sqrt(r) (4 here, against alpha/r = 2) on a subset of
    # the projections: checks the scale and that untargeted layers stay plain.
    "llama3_gqa_rslora": ("llama3_gqa", dict(r=4, lora_alpha=8, use_rslora=True,
                                             target_modules=["q_proj", "v_proj", "down_proj"])),
}


def foak_name(peft_name):
    name = peft_name[len("base_model.model."):]
    return name.replace(".lora_A.default.", ".lora_A.").replace(".lora_B.default.", ".lora_B.")


def load_base(base_dir, dtype):
    return AutoModelForCausalLM.from_pretrained(base_dir, attn_implementation="eager",
                                                dtype=dtype)


def make_case(out_dir, name, base_case, lora_kwargs, seed):
    case_dir = os.path.join(out_dir, name)
    os.makedirs(case_dir, exist_ok=True)
    base_dir = os.path.join(PARITY_DIR, base_case)
    lora_config = LoraConfig(lora_dropout=0.0, task_type="CAUSAL_LM", **lora_kwargs)

    torch.manual_seed(seed)
    model = get_peft_model(load_base(base_dir, torch.float32), lora_config)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if ".lora_B." in pname:
                p.copy_(0.05 * torch.randn_like(p))
    model.eval()
    model.save_pretrained(case_dir)

    g = torch.Generator().manual_seed(2000 + seed)
    input_ids = torch.randint(3, VOCAB, (B, T), generator=g)
    labels = input_ids.clone()
    labels[1, :2] = -100
    labels[0, 9] = -100

    out = model(input_ids=input_ids, labels=labels)
    out.loss.backward()
    tensors = {
        "input_ids": input_ids,
        "labels": labels,
        "logits": out.logits.detach().float().contiguous(),
        "loss": out.loss.detach().float().reshape([]),
    }
    num_lora = 0
    for pname, p in model.named_parameters():
        if ".lora_A." in pname or ".lora_B." in pname:
            assert p.requires_grad and p.grad is not None, pname
            tensors["grad." + foak_name(pname)] = p.grad.detach().float().contiguous()
            num_lora += 1
        else:
            assert not p.requires_grad and p.grad is None, f"base parameter {pname} got a grad"
    model.zero_grad(set_to_none=True)

    with torch.no_grad():
        merged = model.merge_and_unload()
        tensors["merged_logits"] = merged(input_ids=input_ids).logits.float().contiguous()
    save_file(tensors, os.path.join(case_dir, "reference.safetensors"))

    # What PEFT does with a bf16 base: the dtype of its adapter weights and of
    # the layer output.
    bf16 = get_peft_model(load_base(base_dir, torch.bfloat16), lora_config)
    a_dtypes = sorted({str(p.dtype) for n, p in bf16.named_parameters() if ".lora_" in n})
    with torch.no_grad():
        bf16_logits_dtype = str(bf16(input_ids=input_ids).logits.dtype)

    meta = {
        "case": name,
        "base_case": base_case,
        "peft_version": peft.__version__,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "dtype": "float32",
        "batch": [B, T],
        "lora": {k: v for k, v in lora_kwargs.items()},
        "lora_dropout": 0.0,
        "lora_B_init": "0.05 * randn (PEFT starts at zeros)",
        "num_lora_parameters": num_lora,
        "loss": out.loss.item(),
        "bf16_base_adapter_dtypes": a_dtypes,
        "bf16_base_logits_dtype": bf16_logits_dtype,
    }
    with open(os.path.join(case_dir, "reference.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    print(f"  {name}: loss {out.loss.item():.6f}, {num_lora} lora tensors, "
          f"bf16 base -> adapter {a_dtypes}, logits {bf16_logits_dtype}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    print(f"peft {peft.__version__}, transformers {transformers.__version__}, "
          f"torch {torch.__version__}")
    for i, (name, (base_case, kwargs)) in enumerate(CASES.items()):
        make_case(args.out, name, base_case, kwargs, seed=i + 1)


if __name__ == "__main__":
    main()
