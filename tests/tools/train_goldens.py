#!/usr/bin/env python3
"""lf-train against transformers + PEFT (tests/golden/train, made by
scripts/goldens/make-train-goldens.py; its docstring has the layout and the
step rules).  For every case lf builds: the examples of its data file
(data.jsonl, data-pt.jsonl or data-long.jsonl) as a shard
(tests/helpers/shard-from-jsonl), one lf-train run
with the case's LLaMA-Factory hyper-parameters (LoRA cases continue the
adapter PEFT saved, adapter-init/), 10 optimizer steps of all 6 examples
each in file order (batch 2, accumulation 3, --disable-shuffling: the
micro-batches matter for mixtral's per-micro-batch router loss), and:
  * the first step's loss within 1e-5 relative (--dump-grads "loss");
  * every trained gradient within max|d| <= 1e-4 * max|g_ref| per tensor
    (--dump-grads "grad.NAME": the same names, no more, no fewer);
  * the 10 logged losses within 1e-5 relative and grad norms within 1e-4;
  * every trained tensor after the 10 AdamW steps within
    ||W - W_ref|| / ||W_ref|| <= 1e-5 (the adapter or model lf writes).
The LoRA dropout cases gave PEFT lf's masks (seed 42; see the generator).
Cases of features lf-train does not build yet are listed as skipped, not
counted."""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from safetensors.numpy import load_file

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("LF_BIN", os.path.join(ROOT, "bin"))
UNITS = os.environ.get("LF_UNITS", os.path.join(ROOT, "build", "dyn", "tests"))
GOLD = os.path.join(ROOT, "tests", "golden", "train")
NOT_BUILT = {}


def report(ok, what, detail=""):
    print(("ok - " if ok else "not ok - ") + what)
    if not ok and detail:
        print("#   " + str(detail)[:600].replace("\n", "\n#   "))


def flags(case, tmp):
    h = case["hparams"]
    args = ["-m", os.path.join(GOLD, case["model"]), "--finetuning-type", h["finetuning_type"],
            "--learning-rate", repr(h["learning_rate"]), "--lr-scheduler-type", h["lr_scheduler_type"],
            "--warmup-steps", str(h["warmup_steps"]), "--weight-decay", repr(h["weight_decay"]),
            "--max-grad-norm", repr(h["max_grad_norm"]), "--max-steps", str(h["max_steps"]),
            "--per-device-train-batch-size", str(h["per_device_train_batch_size"]),
            "--gradient-accumulation-steps", str(h["gradient_accumulation_steps"]),
            "--adam-beta1", repr(h["adam_beta1"]), "--adam-beta2", repr(h["adam_beta2"]),
            "--adam-epsilon", repr(h["adam_epsilon"]), "--logging-steps", "1", "--save-steps", "0",
            "--stage", h["stage"], "--disable-shuffling"]
    if h["finetuning_type"] == "freeze":
        args += ["--freeze-trainable-layers", str(h["freeze_trainable_layers"]),
                 "--freeze-trainable-modules", h["freeze_trainable_modules"]]
        if h["freeze_extra_modules"]:
            args += ["--freeze-extra-modules", h["freeze_extra_modules"]]
    if h.get("moe_aux_loss_coef"):
        args += ["--moe-aux-loss-coef", repr(h["moe_aux_loss_coef"])]
    if case["adapter"]:
        args += ["--adapter-name-or-path", os.path.join(GOLD, case["adapter"])]
    if h["lora_dropout"]:
        args += ["--lora-dropout", repr(h["lora_dropout"]), "--seed", "42"]
    return args


def rel(a, b):
    return float(np.abs(a - b).max()) / max(float(np.abs(b).max()), 1e-30)


def main():
    cases = sorted(os.listdir(os.path.join(GOLD, "cases")))
    with tempfile.TemporaryDirectory() as tmp:
        for name in cases:
            skip = [why for key, why in NOT_BUILT.items() if key in name]
            if skip:
                print("# skipped %s: %s is not built yet" % (name, skip[0]))
                continue
            case = json.load(open(os.path.join(GOLD, "cases", name, "case.json")))
            shard = os.path.join(tmp, name + ".shard")
            kind = case["stage"]
            data = os.path.join(GOLD, case["data"])
            cutoff = max([64] + [len(json.loads(line)["input_ids"]) for line in open(data)])
            subprocess.run([os.path.join(UNITS, "helpers", "shard-from-jsonl"), kind, "train", str(cutoff), "256",
                            data, shard], check=True)
            out, dump = os.path.join(tmp, name), os.path.join(tmp, name + "-grads.safetensors")
            env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
            r = subprocess.run([os.path.join(BIN, "lf-train")] + flags(case, tmp) +
                               ["-d", shard, "--dump-grads", dump, "-o", out], capture_output=True, text=True,
                               env=env)
            if r.returncode != 0:
                report(False, "%s: lf-train runs" % name, r.stderr)
                continue
            ref = load_file(os.path.join(GOLD, "cases", name, "grads.safetensors"))
            got = load_file(dump)
            lr, lg = float(ref["loss"][0]), float(got["loss"][0])
            report(abs(lg - lr) <= 1e-5 * abs(lr), "%s: loss %.7f equals transformers' %.7f" % (name, lg, lr))
            want = {k[5:] for k in ref if k.startswith("grad.")}
            have = {k[5:] for k in got if k.startswith("grad.")}
            report(want == have, "%s: the %d trained tensors are transformers' + PEFT's" % (name, len(want)),
                   "missing %s, extra %s" % (sorted(want - have)[:4], sorted(have - want)[:4]))
            worst = max((rel(got["grad." + k], ref["grad." + k]), k) for k in want & have)
            report(worst[0] <= 1e-4, "%s: every gradient within 1e-4 of its largest (worst %.2e, %s)" %
                   (name, worst[0], worst[1]))
            log = [json.loads(l) for l in open(os.path.join(out, "trainer_log.jsonl"))]
            losses = [l["loss"] for l in log]
            norms = [l["grad_norm"] for l in log]
            ok = len(losses) == 10 and all(abs(a - b) <= 1e-5 * abs(b) for a, b in zip(losses, case["losses"])) \
                and all(abs(a - b) <= 1e-4 * abs(b) for a, b in zip(norms, case["grad_norms"]))
            report(ok, "%s: the 10 steps' losses and grad norms are transformers'" % name,
                   "%s vs %s" % (losses[-3:], case["losses"][-3:]))
            after = load_file(os.path.join(GOLD, "cases", name, "after.safetensors"))
            mine = load_file(os.path.join(out, "adapter_model.safetensors" if case["adapter"] else
                                          "model.safetensors"))
            bad = [(float(np.linalg.norm(mine[k] - after[k]) / np.linalg.norm(after[k])), k) for k in after
                   if k not in mine or mine[k].shape != after[k].shape or
                   np.linalg.norm(mine[k] - after[k]) > 1e-5 * np.linalg.norm(after[k])]
            report(not bad, "%s: every trained tensor after 10 AdamW steps within 1e-5 (%d tensors)" %
                   (name, len(after)), sorted(bad, reverse=True)[:3])


def pissa():
    """PiSSA's starting adapter against PEFT's (tests/golden/pissa.safetensors,
    scripts/goldens/make-pissa-goldens.py): scale * B0 A0 per module, from the
    full SVD (--pissa-iter -1) and from 16 subspace iterations (PEFT's default,
    which draws its own random start: the same subspace, not the same numbers)."""
    ref = load_file(os.path.join(ROOT, "tests", "golden", "pissa.safetensors"))
    with tempfile.TemporaryDirectory() as tmp:
        shard = os.path.join(tmp, "d.shard")
        subprocess.run([os.path.join(UNITS, "helpers", "shard-from-jsonl"), "sft", "train", "64", "256",
                        os.path.join(GOLD, "data.jsonl"), shard], check=True)
        w = load_file(os.path.join(GOLD, "models", "llama", "model.safetensors"))
        for it, tol in ((-1, 1e-4), (16, 0.03)):
            out = os.path.join(tmp, "p%d" % it)
            r = subprocess.run([os.path.join(BIN, "lf-train"), "-m", os.path.join(GOLD, "models", "llama"), "-d",
                                shard, "--pissa-init", "--pissa-iter", str(it), "--lora-rank", "4", "--lora-alpha",
                                "8", "--max-steps", "1", "--save-steps", "0", "-o", out], capture_output=True,
                               text=True)
            if r.returncode != 0:
                report(False, "pissa (iter %d): lf-train runs" % it, r.stderr)
                continue
            got = load_file(os.path.join(out, "pissa_init", "adapter_model.safetensors"))
            worst, n = 0.0, 0
            for key in [k for k in ref if k.startswith("delta.")]:
                mod = key[len("delta."):]
                d = 2.0 * got["base_model.model." + mod + ".lora_B.weight"] @ \
                    got["base_model.model." + mod + ".lora_A.weight"]
                if it < 0:  # the same rank-4 part of W as PEFT's
                    worst = max(worst, rel(d, ref[key]))
                else:  # nearly as good a rank-4 approximation (Eckart-Young: the full SVD's is the best)
                    best = np.linalg.norm(ref["residual." + mod])
                    worst = max(worst, (np.linalg.norm(w[mod + ".weight"] - d) - best) / best)
                n += 1
            what = "takes PEFT's part of every weight" if it < 0 else \
                "leaves a residual within 3% of the best rank-4 one (PEFT's random start differs)"
            report(n == 14 and worst <= tol, "pissa (iter %d): the starting adapter %s (%d modules, worst %.2e)" %
                   (it, what, n, worst))


if __name__ == "__main__":
    main()
    pissa()
