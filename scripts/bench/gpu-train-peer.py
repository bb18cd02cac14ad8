#!/usr/bin/env python3
"""The peer of tests/cuda/bench_train.cu (gpu-check's training benchmark):
PyTorch + transformers (+ PEFT for LoRA) training the model config.json in
DIR describes, with random weights made on the GPU, pure bf16 (weights,
activations and AdamW state), sdpa attention, gradient checkpointing, on
batches of random token rows; warm-up steps, then STEPS timed steps.
Prints the line bench_train prints, with "torch" for "lf":

  BENCH torch NAME-METHOD-bf16 tokens_per_s=X step_s=X mfu=X model_tflops=X mem_gib=X

usage: gpu-train-peer.py DIR full|lora SEQ BATCH STEPS RANK bf16
"""
import os
import sys
import time


def main():
    if len(sys.argv) != 8 or sys.argv[7] != "bf16":
        sys.exit(__doc__)
    path, method = sys.argv[1], sys.argv[2]
    seq, batch, steps = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    rank = int(sys.argv[6])
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(path)
    torch.manual_seed(1)
    t0 = time.perf_counter()
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(cfg, torch_dtype=torch.bfloat16, attn_implementation="sdpa")
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    n_lin = sum(p.numel() for n, p in model.named_parameters() if p.dim() == 2 and "embed_tokens" not in n)
    if cfg.tie_word_embeddings:
        n_lin += cfg.vocab_size * cfg.hidden_size
    n_lora = 0
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        model.enable_input_require_grads()
        model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0,
                                                 target_modules="all-linear"))
        n_lora = sum(p.numel() for p in model.parameters() if p.requires_grad)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, fused=True)
    ids = torch.randint(0, cfg.vocab_size, (batch, seq), device="cuda")
    setup = time.perf_counter() - t0
    warmup = 2
    loss = None
    for s in range(warmup + steps):
        if s == warmup:
            torch.cuda.synchronize()
            t_steps = time.perf_counter()
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss = out.loss
    torch.cuda.synchronize()
    step_s = (time.perf_counter() - t_steps) / steps
    tok_s = batch * seq / step_s
    qd = cfg.num_attention_heads * getattr(cfg, "head_dim", cfg.hidden_size // cfg.num_attention_heads)
    attn = 6.0 * cfg.num_hidden_layers * seq * qd
    flops = (4.0 * n_lin + 6.0 * n_lora if method == "lora" else 6.0 * n_lin) + attn
    free, total = torch.cuda.mem_get_info()
    mem = (total - free) / 2**30
    name = os.path.basename(os.path.normpath(path))
    print(f"BENCH torch {name}-{method}-bf16 tokens_per_s={tok_s:.1f} step_s={step_s:.3f} mfu={tok_s * flops / 989e12:.4f} "
          f"model_tflops={tok_s * flops / 1e12:.2f} mem_gib={mem:.2f} loss={loss.item():.4f} setup_s={setup:.1f} "
          f"params={n_lin / 1e9:.3g}B lora_params={n_lora / 1e6:.3g}M torch={torch.__version__}", flush=True)


if __name__ == "__main__":
    main()
