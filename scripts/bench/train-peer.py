#!/usr/bin/env python3
r"""The PyTorch peer of lf-train in scripts/bench/train.sh: the same training
work with transformers (+ PEFT for LoRA), float32 on the CPU, timed step by
step.  One process per measurement.

  train-peer.py train --model DIR --data IN.jsonl --mode full|lora-qv|lora-all
                 --steps N --batch 4 --threads 2 --attn eager|sdpa --result OUT.json

The model folder is loaded with AutoModelForCausalLM (dtype float32,
attn_implementation --attn), model.train(), gradient checkpointing off (the
default).  LoRA: PEFT's LoraConfig(r, lora_alpha = 2 r as lf-train's default,
lora_dropout 0, bias "none") on q_proj,v_proj (lora-qv, r 8) or on every linear
layer of the decoder layers, q,k,v,o,gate,up,down (lora-all, r 16), as
LLaMA-Factory resolves "all"; the base is frozen.  The data: IN.jsonl's
rows ({"input_ids": [...], "labels": [...]}, the file train.sh also turns into
lf's shard), taken --batch at a time in file order, cycling; labels = the
input ids, so transformers' shifted loss counts every token but each row's
first (as lf-train's pt stage does).  Each step is what the Hugging Face
Trainer does with these settings (optim adamw_torch, max_grad_norm 1.0,
linear schedule): loss = model(input_ids, labels).loss; loss.backward();
clip_grad_norm_(trainable, 1.0); AdamW(trainable, lr 1e-5, weight decay 0)
.step(); the scheduler's step; zero_grad(set_to_none=True).  The result has
every step's wall time (time.perf_counter() around the whole step, the loss's
.item() included); the caller leaves out the first (warm-up) step.  With
--profile FILE, steps 2..N run under torch.profiler (CPU) and FILE gets its
table of operators by self CPU time (the step times are then the profiler's,
not for comparison).

Memory: rss_peak_kib is ru_maxrss at the end (torch, transformers, PEFT and
their libraries included); rss_import_kib is ru_maxrss after the imports.

  train-peer.py sgemm --blas torch|openblas --threads 2 --result OUT.json

The sgemm peak of the machine on --threads threads: C = A B^T (the forward
product of a linear layer), A B and A^T B (its two backward products) on the
shapes of this benchmark's training (1024 token rows; 384 -> 1024, 1024 -> 384,
384 -> 384 and the 384 -> 32000 head), each the best of several timed calls
after a warm-up; GFLOP/s = 2 M N K / seconds.  torch: torch.matmul (MKL in
PyPI's wheel); openblas: cblas_sgemm of the system's libopenblas (what lf
links; OpenMP build), called through ctypes without torch in the process.
"""
import time

T0 = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402


def maxrss_kib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


# (M, N, K, form): out[M, N] over a K-long inner dimension.  nt: x W^T,
# nn: dy W, tn: dy^T x (the weight's gradient, M = out features, K = tokens).
SHAPES = [(1024, 1024, 384, "nt"), (1024, 384, 1024, "nt"), (1024, 384, 384, "nt"), (1024, 32000, 384, "nt"),
          (1024, 384, 1024, "nn"), (1024, 384, 32000, "nn"), (1024, 384, 1024, "tn"), (32000, 384, 1024, "tn")]


def sgemm(a):
    res = {"blas": a.blas, "threads": a.threads, "shapes": []}
    if a.blas == "torch":
        import torch

        torch.set_num_threads(a.threads)
        res["version"] = "torch " + torch.__version__
        for M, N, K, form in SHAPES:
            A = torch.randn(K, M) if form == "tn" else torch.randn(M, K)
            B = torch.randn(N, K) if form == "nt" else torch.randn(K, N)
            C = torch.empty(M, N)

            def f():
                if form == "nt":
                    torch.matmul(A, B.t(), out=C)
                elif form == "tn":
                    torch.matmul(A.t(), B, out=C)
                else:
                    torch.matmul(A, B, out=C)

            res["shapes"].append(best(f, M, N, K, form))
    else:
        import array
        import ctypes
        import ctypes.util
        import random

        lib = ctypes.CDLL(a.lib or "libopenblas.so.0")
        lib.openblas_set_num_threads(a.threads)
        try:
            lib.openblas_get_config.restype = ctypes.c_char_p
            res["version"] = "OpenBLAS " + lib.openblas_get_config().decode()
        except AttributeError:
            res["version"] = "OpenBLAS"
        P = ctypes.POINTER(ctypes.c_float)
        lib.cblas_sgemm.argtypes = [ctypes.c_int] * 6 + [ctypes.c_float, P, ctypes.c_int, P, ctypes.c_int,
                                                         ctypes.c_float, P, ctypes.c_int]
        rnd = random.Random(0)
        for M, N, K, form in SHAPES:
            def buf(n):
                b = array.array("f", (rnd.uniform(-1, 1) for _ in range(min(n, 4096))))
                b = b * (n // len(b) + 1)
                return (ctypes.c_float * n).from_buffer(b[:n]), b

            A, _ka = buf(M * K)
            B, _kb = buf(N * K)
            C, _kc = buf(M * N)
            pa, pb, pc = ctypes.cast(A, P), ctypes.cast(B, P), ctypes.cast(C, P)
            RowMajor, NoTrans, Trans = 101, 111, 112
            ta = Trans if form == "tn" else NoTrans
            tb = Trans if form == "nt" else NoTrans
            lda = M if form == "tn" else K
            ldb = K if form == "nt" else N

            def f():
                lib.cblas_sgemm(RowMajor, ta, tb, M, N, K, 1.0, pa, lda, pb, ldb, 0.0, pc, N)

            res["shapes"].append(best(f, M, N, K, form))
    res["peak_gflops"] = max(s["gflops"] for s in res["shapes"])
    json.dump(res, open(a.result, "w"))


def best(f, M, N, K, form):
    f()
    reps = max(3, int(2e9 / (2 * M * N * K)))
    ts = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(reps):
            f()
        ts.append((time.perf_counter() - t) / reps)
    return {"M": M, "N": N, "K": K, "form": form, "gflops": 2 * M * N * K / min(ts) / 1e9}


def train(a):
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    import_s = time.perf_counter() - T0
    rss_import = maxrss_kib()
    rows = [json.loads(line)["input_ids"] for line in open(a.data)]
    T = len(rows[0])
    if any(len(r) != T for r in rows):
        sys.exit("train-peer: the rows differ in length")

    t = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32, attn_implementation=a.attn)
    res = {"torch": torch.__version__, "transformers": transformers.__version__, "threads": torch.get_num_threads(),
           "attn": a.attn, "mode": a.mode, "batch": a.batch, "seq": T}
    if a.mode != "full":
        import peft

        res["peft"] = peft.__version__
        r = 8 if a.mode == "lora-qv" else 16
        targets = ["q_proj", "v_proj"] if a.mode == "lora-qv" else \
            ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        cfg = peft.LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0, bias="none", target_modules=targets,
                              task_type="CAUSAL_LM")
        model = peft.get_peft_model(model, cfg)
        res["lora_rank"] = r
        res["lora_targets"] = targets
    model.train()
    if getattr(model, "is_gradient_checkpointing", False):
        sys.exit("train-peer: gradient checkpointing is on")
    params = [p for p in model.parameters() if p.requires_grad]
    res["params"] = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    res["trainable"] = sum(p.numel() for p in params)
    opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / a.steps))
    res["load_s"] = time.perf_counter() - t

    step_s, losses = [], []
    prof = None
    for s in range(a.steps):
        batch = [rows[(s * a.batch + i) % len(rows)] for i in range(a.batch)]
        x = torch.tensor(batch, dtype=torch.long)
        if a.profile and s == 1:
            prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            prof.__enter__()
        t = time.perf_counter()
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        step_s.append(time.perf_counter() - t)
    if prof is not None:
        prof.__exit__(None, None, None)
        with open(a.profile, "w") as f:
            f.write("torch.profiler, steps 2..%d of %s (%s attention), %d threads\n" % (
                a.steps, a.mode, a.attn, torch.get_num_threads()))
            f.write(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=40))
    res["step_s"] = step_s
    res["losses"] = losses
    res["import_s"] = import_s
    res["rss_import_kib"] = rss_import
    res["rss_peak_kib"] = maxrss_kib()
    json.dump(res, open(a.result, "w"))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--model", required=True)
    t.add_argument("--data", required=True, help="JSON lines with input_ids")
    t.add_argument("--mode", choices=["full", "lora-qv", "lora-all"], required=True)
    t.add_argument("--steps", type=int, required=True)
    t.add_argument("--batch", type=int, default=4)
    t.add_argument("--threads", type=int, required=True)
    t.add_argument("--attn", default="eager", help="attn_implementation: eager or sdpa")
    t.add_argument("--result", required=True)
    t.add_argument("--profile", help="write torch.profiler's table of steps 2..N (self CPU time) to this file")
    g = sub.add_parser("sgemm")
    g.add_argument("--blas", choices=["torch", "openblas"], required=True)
    g.add_argument("--lib", help="the OpenBLAS library (default libopenblas.so.0)")
    g.add_argument("--threads", type=int, required=True)
    g.add_argument("--result", required=True)
    a = ap.parse_args()
    train(a) if a.cmd == "train" else sgemm(a)


if __name__ == "__main__":
    main()
