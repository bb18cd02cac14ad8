#!/usr/bin/env python3
"""Goldens for lf-train's optimizer module (libcommon/optim.c), made by the
real thing: torch 2.9.1's torch.optim.AdamW and clip_grad_norm_, and
transformers 5.5.4's get_scheduler, TrainingArguments.get_warmup_steps and
Trainer.get_decay_parameter_names (peft 0.18.1 for the adapter names).
tests/unit/test_optim.c reads the result, tests/golden/optim.json:

  versions    torch / transformers / peft that made it
  adamw       AdamW traces: a few tensors of odd sizes (1, 5, 37, 70: AVX-512
              torch runs 32-wide vector loops, so every size has a scalar
              tail), two param groups (the first two tensors in the weight
              decay group, the others with weight_decay 0, as the HF Trainer
              groups them), random grads each step (some exact zeros), 10
              steps with the lr of a schedule (LambdaLR, stepped after the
              optimizer as the Trainer does).  Per case: hyper-parameters,
              per tensor n / decay / initial params, per step the lr the
              optimizer used, the grads and the params after the step, and
              the final exp_avg / exp_avg_sq.  The traces are torch's
              single-tensor AdamW (foreach=False, CPU's default) run with
              Tensor.sqrt made the correctly rounded one (see ieee_sqrt: stock
              torch's CPU float sqrt goes through MKL and is one ulp off for
              about a fifth of its inputs; the fused CPU kernel's sqrt is
              the IEEE one).  "stock_params" are the final params of stock
              torch, and counts of (step, element) params that differ from
              the traces: "stock_params_differing" (stock single-tensor),
              "fused_params_differing" (fused=True, the HF Trainer's default
              "adamw_torch_fused" under torch >= 2.8: its 16-wide vector body
              is the traces' arithmetic, its scalar tail of n % 16 elements
              rounds differently now and then) and "foreach_params_differing"
              (foreach=True against stock single-tensor).
  clip        clip_grad_norm_(grads, max_norm) (norm_type 2, foreach=None):
              the grads, the total norm torch returned (float32) and the
              grads after clipping; cases that clip, that do not (coef clamped
              to 1), and all-zero grads.
  schedules   get_scheduler(name, opt, warmup, total=20, kwargs): the lr of
              scheduler steps 0..20 (lr of optimizer step k is entry k-1),
              base lr 2e-4; warmup given as steps 0 and 3 and as
              warmup_ratio 0.1 (resolved by TrainingArguments).
  warmup      TrainingArguments(warmup_steps=..., warmup_ratio=...)
              .get_warmup_steps(total) for a few combinations (5.x: a
              warmup_steps < 1 is a ratio; warmup_ratio, deprecated, replaces
              warmup_steps when given).
  decay       Trainer.get_decay_parameter_names on tiny random models of
              every architecture lf supports (transformers 5.5.4 classes)
              and on PEFT LoRA / DoRA models: every parameter name and the
              ones that get weight decay.

Floats of tensors are float32 bit patterns, 8 hex digits each (big-endian
IEEE, as struct.pack(">f")), concatenated in one string per tensor; lrs and
norms are JSON numbers (Python repr, exact).  Deterministic: fixed seeds, one
thread, no timestamps.  Run from anywhere (needs the goldens venv, not CI):

  ~/.cache/lf/goldens-venv/bin/python scripts/goldens/make-optim-goldens.py
"""
import json
import os
import struct
import tempfile

import torch

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

import peft  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModelForCausalLM, Trainer, TrainingArguments  # noqa: E402
from transformers.optimization import get_scheduler  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "golden", "optim.json")


def hexf(t):
    return "".join(struct.pack(">f", x).hex() for x in t.detach().reshape(-1).tolist())


def warmup_for(total, warmup_steps=0, warmup_ratio=None):
    with tempfile.TemporaryDirectory() as d:
        args = TrainingArguments(output_dir=d, warmup_steps=warmup_steps, warmup_ratio=warmup_ratio,
                                 report_to=[], use_cpu=True)
        return args.get_warmup_steps(total)


# ---------------------------------------------------------------- AdamW
ADAMW = [
    dict(name="wd0-default-betas", lr=1e-3, betas=(0.9, 0.999), eps=1e-8, wd=0.0,
         sched="cosine", warmup=3, kwargs={}),
    dict(name="wd0.1-default-betas", lr=5e-4, betas=(0.9, 0.999), eps=1e-8, wd=0.1,
         sched="linear", warmup=2, kwargs={}),
    dict(name="wd0.1-betas0.8-0.95-eps1e-6", lr=2e-3, betas=(0.8, 0.95), eps=1e-6, wd=0.1,
         sched="constant_with_warmup", warmup=3, kwargs={}),
    dict(name="wd0-betas0.8-0.95-eps1e-6-lr0.05", lr=0.05, betas=(0.8, 0.95), eps=1e-6, wd=0.0,
         sched="cosine_with_restarts", warmup=0, kwargs={"num_cycles": 2}),
    dict(name="wd0.01-lr0.3-small-grads", lr=0.3, betas=(0.9, 0.999), eps=1e-8, wd=0.01,
         sched="polynomial", warmup=1, kwargs={"power": 2.0}, grad_scale=1e-5),
]
SIZES = [1, 5, 37, 70]
DECAY = [True, True, False, False]
STEPS = 10


class ieee_sqrt:
    """Within it, Tensor.sqrt (what adam.py's single-tensor path calls on
    exp_avg_sq) is the correctly rounded square root: torch 2.9.1's CPU float
    sqrt goes through MKL's vector math and is off by one ulp for about a fifth
    of its inputs (whatever ATEN_CPU_CAPABILITY / MKL_ENABLE_INSTRUCTIONS say);
    float sqrt rounded from double is the IEEE one."""

    def __enter__(self):
        self.saved = torch.Tensor.sqrt
        torch.Tensor.sqrt = lambda t: torch.sqrt(t.double()).to(t.dtype)

    def __exit__(self, *exc):
        torch.Tensor.sqrt = self.saved


def adamw_case(c, seed):
    gen = torch.Generator().manual_seed(seed)
    init = [torch.randn(n, generator=gen) * 0.5 for n in SIZES]
    grads = []
    for _ in range(STEPS):
        step = []
        for n in SIZES:
            g = torch.randn(n, generator=gen) * c.get("grad_scale", 1.0) * (1 + 3 * torch.rand(1, generator=gen))
            g[torch.rand(n, generator=gen) < 0.1] = 0.0
            step.append(g)
        grads.append(step)

    def run(**flavour):
        ps = [torch.nn.Parameter(t.clone()) for t in init]
        groups = [{"params": [p for p, d in zip(ps, DECAY) if d], "weight_decay": c["wd"]},
                  {"params": [p for p, d in zip(ps, DECAY) if not d], "weight_decay": 0.0}]
        opt = torch.optim.AdamW(groups, lr=c["lr"], betas=c["betas"], eps=c["eps"], **flavour)
        sched = get_scheduler(c["sched"], opt, num_warmup_steps=c["warmup"], num_training_steps=STEPS,
                              scheduler_specific_kwargs=c["kwargs"])
        steps = []
        for k in range(STEPS):
            for p, g in zip(ps, grads[k]):
                p.grad = g.clone()
            lr = opt.param_groups[0]["lr"]
            assert lr == opt.param_groups[1]["lr"]
            opt.step()
            sched.step()
            steps.append({"lr": lr, "grads": [hexf(g) for g in grads[k]], "params": [hexf(p) for p in ps]})
        final = {"exp_avg": [hexf(opt.state[p]["exp_avg"]) for p in ps],
                 "exp_avg_sq": [hexf(opt.state[p]["exp_avg_sq"]) for p in ps]}
        return steps, final

    with ieee_sqrt():
        steps, final = run(foreach=False)
    stock, stock_final = run(foreach=False)
    fused, _ = run(fused=True)
    foreach, _ = run(foreach=True)
    assert stock_final == final, "only the sqrt differs: the moments must be the same"
    return {
        "name": c["name"], "lr": c["lr"], "beta1": c["betas"][0], "beta2": c["betas"][1], "eps": c["eps"],
        "weight_decay": c["wd"], "schedule": c["sched"], "warmup_steps": c["warmup"], "kwargs": c["kwargs"],
        "tensors": [{"n": n, "decay": d, "init": hexf(t)} for n, d, t in zip(SIZES, DECAY, init)],
        "steps": steps, **final,
        "stock_params": stock[-1]["params"],
        "stock_params_differing": differing(stock, steps),
        "fused_params_differing": differing(fused, steps),
        "foreach_params_differing": differing(foreach, stock),
    }


def differing(a, b):
    """How many (step, element) params differ between two traces."""
    count = 0
    for sa, sb in zip(a, b):
        for ha, hb in zip(sa["params"], sb["params"]):
            count += sum(ha[i:i + 8] != hb[i:i + 8] for i in range(0, len(ha), 8))
    return count


# ---------------------------------------------------------------- clipping
CLIP = [
    dict(name="clips", sizes=[3, 40, 129], scale=1.0, max_norm=1.0),
    dict(name="clips-large-tensor", sizes=[1000, 17], scale=0.3, max_norm=0.5),
    dict(name="no-clip", sizes=[7, 33], scale=0.01, max_norm=1.0),
    dict(name="no-clip-large-max", sizes=[64], scale=2.0, max_norm=1000.0),
    dict(name="zero-grads", sizes=[4, 9], scale=0.0, max_norm=1.0),
    dict(name="one-tensor-max-norm-0.3", sizes=[100], scale=1.0, max_norm=0.3),
]


def clip_case(c, seed):
    gen = torch.Generator().manual_seed(seed)
    grads = [torch.randn(n, generator=gen) * c["scale"] for n in c["sizes"]]
    ps = [torch.nn.Parameter(torch.zeros(n)) for n in c["sizes"]]
    for p, g in zip(ps, grads):
        p.grad = g.clone()
    total = torch.nn.utils.clip_grad_norm_(ps, c["max_norm"])
    return {"name": c["name"], "max_norm": c["max_norm"], "grads": [hexf(g) for g in grads],
            "total_norm": total.item(), "clipped": [hexf(p.grad) for p in ps]}


# ---------------------------------------------------------------- schedules
SCHEDULES = [
    ("linear", {}), ("cosine", {}), ("cosine_with_restarts", {}), ("cosine_with_restarts", {"num_cycles": 3}),
    ("cosine", {"num_cycles": 1.5}), ("polynomial", {}), ("polynomial", {"power": 2.0, "lr_end": 1e-5}),
    ("constant", {}), ("constant_with_warmup", {}), ("inverse_sqrt", {}), ("inverse_sqrt", {"timescale": 4}),
    ("cosine_with_min_lr", {"min_lr_rate": 0.1}), ("cosine_with_min_lr", {"min_lr": 1e-5}),
    ("cosine_warmup_with_min_lr", {"min_lr_rate": 0.1}),
    ("cosine_warmup_with_min_lr", {"min_lr_rate": 0.05, "warmup_lr_rate": 0.2}),
    ("warmup_stable_decay", {"num_decay_steps": 6}),
    ("warmup_stable_decay", {"num_decay_steps": 5, "warmup_type": "cosine", "decay_type": "linear",
                             "min_lr_ratio": 0.1}),
    ("warmup_stable_decay", {"num_decay_steps": 8, "num_stable_steps": 4, "warmup_type": "1-sqrt",
                             "decay_type": "1-sqrt", "min_lr_ratio": 0.05}),
]
SCHED_TOTAL = 20
SCHED_LR = 2e-4


def schedule_case(name, kwargs, warmup_arg):
    warmup = warmup_for(SCHED_TOTAL, **warmup_arg)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=SCHED_LR)
    sched = get_scheduler(name, opt, num_warmup_steps=warmup, num_training_steps=SCHED_TOTAL,
                          scheduler_specific_kwargs=dict(kwargs))
    lrs = []
    for _ in range(SCHED_TOTAL + 1):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return {"type": name, "kwargs": kwargs, "base_lr": SCHED_LR, "total_steps": SCHED_TOTAL,
            "warmup_arg": warmup_arg, "warmup_steps": warmup, "lr": lrs}


WARMUPS = [
    (20, {"warmup_steps": 0}), (20, {"warmup_steps": 3}), (20, {"warmup_steps": 0.1}),
    (20, {"warmup_ratio": 0.1}), (30, {"warmup_ratio": 0.1}), (30, {"warmup_steps": 0.1}),
    (20, {"warmup_steps": 5, "warmup_ratio": 0.1}), (20, {"warmup_ratio": 1.0}), (20, {"warmup_steps": 2.7}),
    (20, {"warmup_ratio": 0.0}), (7, {"warmup_steps": 0.5}), (1000, {"warmup_ratio": 0.03}),
    (333, {"warmup_steps": 0.07}), (100, {"warmup_ratio": 0.07}), (100, {"warmup_steps": 0.07}),
    (10, {"warmup_steps": 12}),
]


# ---------------------------------------------------------------- decay names
COMMON = dict(vocab_size=64, hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2)
MODELS = [
    ("llama", dict(attention_bias=True, mlp_bias=True)),
    ("mistral", {}),
    ("qwen2", {}),
    ("qwen3", dict(head_dim=4)),
    ("gemma", dict(head_dim=4)),
    ("gemma2", dict(head_dim=4)),
    ("phi3", dict(pad_token_id=0, bos_token_id=1, eos_token_id=2)),
    ("mixtral", dict(num_local_experts=4, num_experts_per_tok=2)),
]


def decay_names(model):
    # every name, tied ones too (gemma ties lm_head.weight to the embeddings:
    # get_parameter_names walks modules and lists both)
    names = [n for n, _ in model.named_parameters(remove_duplicate=False)]
    decay = set(Trainer.get_decay_parameter_names(None, model))
    assert decay <= set(names), sorted(decay - set(names))
    return {"names": names, "decay": [n for n in names if n in decay]}


def decay_cases():
    out = []
    for mtype, extra in MODELS:
        torch.manual_seed(0)
        cfg = transformers.AutoConfig.for_model(mtype, **COMMON, **extra)
        model = AutoModelForCausalLM.from_config(cfg)
        out.append({"model": mtype, **decay_names(model)})
    for label, mtype, lora in [
        ("peft-lora-qwen2", "qwen2", dict(r=4, target_modules="all-linear", modules_to_save=["embed_tokens"])),
        ("peft-dora-llama", "llama", dict(r=4, target_modules=["q_proj", "v_proj", "down_proj"], use_dora=True,
                                          bias="all", modules_to_save=["norm"])),
    ]:
        torch.manual_seed(0)
        cfg = transformers.AutoConfig.for_model(mtype, **COMMON, **dict(MODELS)[mtype])
        model = peft.get_peft_model(AutoModelForCausalLM.from_config(cfg),
                                    peft.LoraConfig(task_type="CAUSAL_LM", lora_alpha=8, **lora))
        out.append({"model": label, **decay_names(model)})
    return out


def main():
    doc = {"versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                        "peft": peft.__version__}}
    doc["adamw"] = [adamw_case(c, 1000 + i) for i, c in enumerate(ADAMW)]
    doc["clip"] = [clip_case(c, 2000 + i) for i, c in enumerate(CLIP)]
    doc["schedules"] = [schedule_case(name, kw, w)
                        for name, kw in SCHEDULES
                        for w in ({"warmup_steps": 0}, {"warmup_steps": 3}, {"warmup_ratio": 0.1})]
    doc["warmup"] = [{"total_steps": t, **a, "resolved": warmup_for(t, **a)} for t, a in WARMUPS]
    doc["decay"] = decay_cases()
    # one line per case: small, and a diff shows which case changed
    parts = []
    for key, val in doc.items():
        body = json.dumps(val) if not isinstance(val, list) else \
            "[\n  " + ",\n  ".join(json.dumps(v) for v in val) + "\n ]"
        parts.append(f" {json.dumps(key)}: {body}")
    with open(OUT, "w") as f:
        f.write("{\n" + ",\n".join(parts) + "\n}\n")
    print(f"wrote {OUT}: {os.path.getsize(OUT)} bytes; (step, element) params differing from the IEEE-sqrt "
          f"reference: stock {[c['stock_params_differing'] for c in doc['adamw']]}, "
          f"fused {[c['fused_params_differing'] for c in doc['adamw']]}; "
          f"foreach vs stock {[c['foreach_params_differing'] for c in doc['adamw']]}")


if __name__ == "__main__":
    main()
