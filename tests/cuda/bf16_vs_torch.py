#!/usr/bin/env python3
"""The CUDA path's bf16 mode against PyTorch's bf16 on the same GPU (run by
scripts/gpu-check.sh on the GPU machine, which has PyTorch and
transformers).

Both compute full training's first step on the same rows of random token
ids (labels = ids; the padding token among them: transformers gives its
embedding row no gradient) of an lf-init model folder: lf through `cuda_test_model
--dump` (f32 and bf16 modes), PyTorch + transformers (eager attention) in
f32 without TF32 (the reference) and in pure bf16 (weights and activations,
as LLaMA-Factory's bf16 runs).  Checks, one PASS/FAIL line each:
  - lf's f32 mode equals the f32 reference: loss within 1e-5 relative,
    every gradient within 1e-4 of its largest element;
  - lf's bf16 mode is no further from the reference than PyTorch's bf16:
    the loss's error at most twice PyTorch's (plus 1e-4 relative), the
    worst tensor's gradient error at most twice PyTorch's worst.

usage: bf16_vs_torch.py CUDA_TEST_MODEL MODEL_DIR WORKDIR
"""
import json
import os
import subprocess
import sys

failures = 0


def result(ok, name, detail):
    global failures
    print(f"{'PASS' if ok else 'FAIL'} {name} {detail}", flush=True)
    failures += 0 if ok else 1


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    binary, model_dir, work = sys.argv[1:]
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    os.makedirs(work, exist_ok=True)
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, cfg["vocab_size"], (2, 96), generator=g)
    if cfg.get("pad_token_id") is not None:  # nn.Embedding's padding_idx: that row gets no gradient
        ids[0, 10], ids[1, 40] = cfg["pad_token_id"], cfg["pad_token_id"]
    rows = os.path.join(work, "rows.json")
    json.dump(ids.tolist(), open(rows, "w"))
    prefix = os.path.join(work, "lf")
    subprocess.run([binary, "--dump", model_dir, rows, prefix], check=True)
    lf = {mode: load_file(f"{prefix}.{mode}.safetensors") for mode in ("f32", "bf16")}

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    items = ids.numel()  # labels = ids: every position counts (transformers' num_items_in_batch)

    def step(dtype):
        model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32,
                                                     attn_implementation="eager")
        model = model.to("cuda", dtype=dtype)
        x = ids.to("cuda")
        logits = model(input_ids=x).logits.float()
        ce = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1),
                                               reduction="sum")
        loss = ce / items
        loss.backward()
        grads = {n: p.grad.float().cpu() for n, p in model.named_parameters() if p.grad is not None}
        return loss.item(), grads

    ref_loss, ref = step(torch.float32)
    bf_loss, bf = step(torch.bfloat16)

    def rel(a, b):
        return (a - b).abs().max().item() / max(b.abs().max().item(), 1e-30)

    name = os.path.basename(os.path.normpath(model_dir))
    f32_loss = lf["f32"]["loss"].item()
    result(abs(f32_loss - ref_loss) <= 1e-5 * abs(ref_loss), f"{name}/f32_loss",
           f"lf {f32_loss:.7g} torch {ref_loss:.7g}")
    worst, where = 0.0, ""
    for n, r in ref.items():
        e = rel(lf["f32"]["grad." + n], r)
        if e > worst:
            worst, where = e, n
    result(worst <= 1e-4, f"{name}/f32_grads", f"{len(ref)} tensors, worst {worst:.3g} ({where})")

    bf16_loss = lf["bf16"]["loss"].item()
    e_lf, e_pt = abs(bf16_loss - ref_loss), abs(bf_loss - ref_loss)
    result(e_lf <= 2 * e_pt + 1e-4 * abs(ref_loss), f"{name}/bf16_loss",
           f"|lf - f32| {e_lf:.3g}, |torch bf16 - f32| {e_pt:.3g}")
    w_lf = max(rel(lf["bf16"]["grad." + n], r) for n, r in ref.items())
    w_pt = max(rel(bf[n], r) for n, r in ref.items())
    result(w_lf <= 2 * w_pt, f"{name}/bf16_grads", f"worst tensor error: lf {w_lf:.3g}, torch bf16 {w_pt:.3g}")
    print(f"bf16_vs_torch: {4 - failures} passed, {failures} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
