#!/usr/bin/env python3
"""PiSSA goldens: PEFT 0.18.1's PiSSA initialisation (init_lora_weights
"pissa", the full SVD) of tests/golden/train/models/llama (f32) with
LLaMA-Factory's LoRA settings for lora_target all, r 4, alpha 8, so that
lf-train --pissa-init --pissa-iter -1 can be checked against it.

Output: tests/golden/pissa.safetensors, F32:
  "delta.<module>"     scale * B0 @ A0 [out, in] for every adapted module
                       (<module> as model.layers.N.self_attn.q_proj): the
                       part of W the adapter takes, independent of the
                       singular vectors' signs;
  "residual.<module>"  the base weight PEFT leaves, W - scale * B0 @ A0.

Run (deterministic, no randomness involved):
  ~/.cache/lf/goldens-venv/bin/python scripts/goldens/make-pissa-goldens.py
"""
import os

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASE = os.path.join(ROOT, "tests", "golden", "train", "models", "llama")
OUT = os.path.join(ROOT, "tests", "golden", "pissa.safetensors")


def main():
    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(BASE, dtype=torch.float32, attn_implementation="eager")
    cfg = LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, lora_dropout=0.0, init_lora_weights="pissa",
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    peft = get_peft_model(model, cfg)
    out = {}
    for name, module in peft.named_modules():
        if not hasattr(module, "lora_A") or "default" not in module.lora_A:
            continue
        key = name.replace("base_model.model.", "")
        scale = module.scaling["default"]
        a = module.lora_A["default"].weight.detach()
        b = module.lora_B["default"].weight.detach()
        out["delta." + key] = (scale * (b @ a)).contiguous()
        out["residual." + key] = module.base_layer.weight.detach().clone().contiguous()
    save_file(out, OUT, metadata={"peft": "0.18.1", "base": "tests/golden/train/models/llama", "r": "4",
                                  "lora_alpha": "8", "init_lora_weights": "pissa"})
    print("wrote %s: %d tensors" % (OUT, len(out)))


if __name__ == "__main__":
    main()
