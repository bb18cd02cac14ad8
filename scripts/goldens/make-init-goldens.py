#!/usr/bin/env python3
"""Goldens that lf-init's model folders load in transformers and run there
as in lf: for each architecture, lf-init (bin/lf-init, fixed options and
seed) writes a tiny model; transformers 4.57.1 loads it with
AutoModelForCausalLM (float32, eager attention) and AutoTokenizer, and the
script stores, under tests/golden/init/TYPE/: args (the lf-init options),
sha256 (of the model.safetensors lf-init wrote: lf-init must write the same
bytes again), ids.jsonl (the ids AutoTokenizer gives for a text, with the
text) and logits.safetensors (logits.0, transformers' logits for them).
tests/tools/model_runtime.py reruns lf-init and compares.

  PYTHONPATH=~/.cache/lf/goldens-tf4 ~/.cache/lf/goldens-venv/bin/python \\
      scripts/goldens/make-init-goldens.py
"""
import hashlib
import json
import os
import shutil
import subprocess
import tempfile

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "golden", "init")
TYPES = ["llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "mixtral"]
ARGS = ["--hidden-size", "32", "--intermediate-size", "48", "--num-hidden-layers", "2", "--initializer-range", "0.4",
        "--sliding-window", "8", "--seed", "11", "--dtype", "bfloat16"]
TEXT = "Hello <|im_start|>wörld, this is lf-init's tokenizer: 123 <think>ok</think> ✓"


def main():
    tmp = tempfile.mkdtemp()
    try:
        for t in TYPES:
            model = os.path.join(tmp, t)
            args = ["-t", t] + ARGS
            subprocess.run([os.path.join(ROOT, "bin", "lf-init")] + args + ["-o", model], check=True,
                           stderr=subprocess.DEVNULL)
            tok = AutoTokenizer.from_pretrained(model)
            ids = tok(TEXT, add_special_tokens=False)["input_ids"]
            m = AutoModelForCausalLM.from_pretrained(model, torch_dtype=torch.float32, attn_implementation="eager")
            with torch.no_grad():
                logits = m(torch.tensor([ids])).logits[0].contiguous()
            d = os.path.join(OUT, t)
            os.makedirs(d, exist_ok=True)
            json.dump(args, open(os.path.join(d, "args.json"), "w"))
            sha = hashlib.sha256(open(os.path.join(model, "model.safetensors"), "rb").read()).hexdigest()
            open(os.path.join(d, "sha256"), "w").write(sha + "\n")
            open(os.path.join(d, "ids.jsonl"), "w").write(json.dumps({"ids": ids, "text": TEXT}) + "\n")
            save_file({"logits.0": logits}, os.path.join(d, "logits.safetensors"), metadata={"format": "pt"})
            print(t, len(ids), "ids", "max |logit| %.3f" % float(logits.abs().max()))
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
