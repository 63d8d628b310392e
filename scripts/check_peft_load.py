#!/usr/bin/env python3
"""Checks that PEFT loads a LoRA adapter saved by foak and computes foak's logits.

Run where torch, transformers and peft are installed (the GPU host):
    python3 scripts/check_peft_load.py --base BASE_MODEL_DIR --adapter ADAPTER_DIR \
        --logits FOAK_LOGITS.safetensors [--tol 1e-5]

BASE_MODEL_DIR is a Hugging Face model folder, ADAPTER_DIR the folder foak's
SaveLoraAdapter wrote (adapter_config.json + adapter_model.safetensors), and
FOAK_LOGITS a safetensors file with "input_ids" (B, T) int64 and "logits"
(B, T, V) that foak computed with base + adapter. The base model is loaded in
fp32 on CPU with eager attention, the adapter with peft.PeftModel.from_pretrained
(which fails on keys or shapes it does not expect), and the logits are compared
with a max-norm relative error: max |peft - foak| / max |foak|. Exits 1 above
--tol, or when PEFT reports missing or unexpected adapter weights.

The foak side of the check: FOAK_PEFT_EXPORT_DIR=DIR build/tests/unit/lora_peft_parity_test
writes DIR/adapter/ and DIR/logits.safetensors for tests/testdata/parity/llama3_gqa.
"""
import argparse
import json
import os
import sys

import peft
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="Hugging Face base model folder")
    parser.add_argument("--adapter", required=True, help="adapter folder saved by foak")
    parser.add_argument("--logits", required=True,
                        help="safetensors with input_ids and foak's logits")
    parser.add_argument("--tol", type=float, default=1e-5)
    args = parser.parse_args()

    with open(os.path.join(args.adapter, "adapter_config.json")) as f:
        adapter_config = json.load(f)
    print(f"peft {peft.__version__}; adapter r={adapter_config.get('r')} "
          f"alpha={adapter_config.get('lora_alpha')} "
          f"targets={adapter_config.get('target_modules')}")

    base = AutoModelForCausalLM.from_pretrained(args.base, attn_implementation="eager",
                                                dtype=torch.float32)
    model = PeftModel.from_pretrained(base, args.adapter)
    model.eval()

    # PEFT warns (rather than fails) on adapter keys it cannot place; check
    # that every tensor in the file became a parameter and every LoRA
    # parameter came from the file.
    saved = load_file(os.path.join(args.adapter, "adapter_model.safetensors"))
    params = {n.replace(".default.", "."): p for n, p in model.named_parameters()
              if ".lora_" in n}
    missing = sorted(set(params) - set(saved))
    unexpected = sorted(set(saved) - set(params))
    if missing or unexpected:
        print(f"FAIL: adapter weights missing {missing[:5]} unexpected {unexpected[:5]}")
        return 1
    for name, tensor in saved.items():
        if not torch.equal(params[name].detach().to(tensor.dtype), tensor):
            print(f"FAIL: {name} was not loaded as saved")
            return 1

    data = load_file(args.logits)
    input_ids, want = data["input_ids"].long(), data["logits"].float()
    with torch.no_grad():
        got = model(input_ids=input_ids).logits.float()
    if got.shape != want.shape:
        print(f"FAIL: logits shape {tuple(got.shape)} vs foak's {tuple(want.shape)}")
        return 1
    rel = ((got - want).abs().max() / want.abs().max().clamp_min(1e-30)).item()
    # The adapter must matter, or the comparison proves nothing.
    with torch.no_grad(), model.disable_adapter():
        plain = model(input_ids=input_ids).logits.float()
    effect = ((got - plain).abs().max() / want.abs().max().clamp_min(1e-30)).item()
    status = "OK" if rel <= args.tol else "FAIL"
    print(f"{status}: {len(saved)} adapter tensors; logits max rel err {rel:.3e} "
          f"(tol {args.tol:.0e}); adapter changes logits by {effect:.3e}")
    if effect == 0.0:
        print("FAIL: the adapter does not change the logits (lora_B all zero?)")
        return 1
    return 0 if rel <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
