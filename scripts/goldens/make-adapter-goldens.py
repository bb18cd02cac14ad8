#!/usr/bin/env python3
"""PEFT LoRA adapters for some of the tiny models of tests/golden/models/,
saved by PEFT itself, and the logits transformers + PEFT compute with the
adapter applied (NOT merged), for lf's runtime (lf-eval
--adapter-name-or-path DIR) to reproduce within 1e-4 of the logits' scale.

Outputs (checked in):
  tests/golden/adapters/NAME/adapter_config.json        as PeftModel.save_pretrained wrote it
  tests/golden/adapters/NAME/adapter_model.safetensors  as PeftModel.save_pretrained wrote it (F32)
  tests/golden/adapters/NAME/logits.safetensors         F32 "logits.K" [T, V] for line K of the
      base model's ids.jsonl (tests/golden/models/BASE/ids.jsonl; every sequence)
  tests/golden/adapters/index.json                      per adapter: base model folder, peft and
      transformers versions, r, lora_alpha, use_rslora, scaling, target_modules as saved, tensor
      names/shapes (examples), what it covers, max |logit| per sequence, effect size, checks
The README.md (model card) save_pretrained also writes is deleted: boilerplate a loader never reads.

Adapters (see ADAPTERS): llama-tied-all, qwen2-qv, phi3-fused, mixtral-experts,
gemma2-rslora, llama-bias-all.  Each is made with transformers 4.57.1 (the
version that saved every base model used here, see tests/golden/models/
index.json; under 4.57.1 mixtral's experts are nn.Linear w1/w2/w3):
  base = AutoModelForCausalLM.from_pretrained("tests/golden/models/BASE", dtype float32, eager)
  peft = get_peft_model(base, LoraConfig(task_type="CAUSAL_LM", r, lora_alpha, target_modules, ...))
then EVERY lora_A / lora_B is overwritten with seeded N(0, sigma^2) values
(PEFT's default B = 0 would make the adapter a no-op); sigma is chosen per
adapter so that scaling * (B @ A) has entries of std DELTA_STD (the base
matrices have std 0.25), i.e. sigma = sqrt(DELTA_STD / (scaling * sqrt(r))).
Saved with peft.save_pretrained(dir) (safetensors).  The base is loaded from
the repo-relative path, so adapter_config.json's base_model_name_or_path is
"tests/golden/models/BASE" (the script runs with cwd = repo root).

The oracle: for each sequence a fresh
  PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype float32, eager), adapter_dir)
(unmerged), batch 1, no cache, no attention mask, position_ids 0..T-1, CPU, 1 thread.

Checks (in the index, and printed):
  effect: max |logits(adapter) - logits(base)| / max |logits(adapter)| per sequence (must be >> 1e-4;
      the base logits are recomputed and compared with tests/golden/models/BASE/logits.safetensors)
  knockouts: the same relative difference with one piece of the adapter switched off (each target
      module's LoRA zeroed in turn; rsLoRA's scale replaced by alpha/r): each must be >> 1e-4, or the
      golden would not catch an implementation that skips it
  merged_vs_unmerged: relative difference of the merged model (merge_and_unload) -- what lf may expect
      if it merges the adapter into the weights at load time
  loaded: every tensor of adapter_model.safetensors is a parameter of the loaded PeftModel (with the
      adapter name ".default" put back) with exactly the file's values, and every LoRA parameter is in
      the file
  cross_version: the same oracle under transformers 5.5.4 (same peft 0.18.1); an error is recorded,
      not fatal (5.x fuses mixtral's experts into 3-D parameters, so w1/w2/w3 LoRA cannot apply)

Deterministic: fixed seeds, one CPU thread, PYTHONHASHSEED=0 in the workers
(adapter_config.json's target_modules is a Python set dumped as a list: its
order depends on string hashing), safetensors, no timestamps.  Environment
(see make-model-goldens.py; peft 0.18.1 is in the venv):

  ~/.cache/lf/goldens-venv/bin/python scripts/goldens/make-adapter-goldens.py \\
      [--tf4 ~/.cache/lf/goldens-tf4] [--out tests/golden/adapters] [--models tests/golden/models]

(run it with the venv's python WITHOUT PYTHONPATH: it starts the 4.57.1
worker with PYTHONPATH=--tf4 itself, and the 5.5.4 cross-check worker without).
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

DELTA_STD = 0.03         # std of the entries of scaling * B @ A
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

ADAPTERS = [
    dict(name="llama-tied-all", base="llama-tied", r=4, alpha=8, targets=ALL_LINEAR,
         covers="LoRA on every linear layer but lm_head (LLaMA-Factory lora_target=all for llama), r 4, alpha 8 "
                "(scale 2), tied embeddings (lm_head not adapted), base saved in float32"),
    dict(name="qwen2-qv", base="qwen2", r=8, alpha=16, targets=["q_proj", "v_proj"],
         covers="LoRA on q_proj and v_proj only (the pre-2024-06 default target) of qwen2, whose q/k/v have "
                "biases (y = W x + b + s B A x), r 8, alpha 16 (scale 2), 3 layers, base in bfloat16"),
    dict(name="phi3-fused", base="phi3", r=4, alpha=4, targets=["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
         covers="LoRA on phi3's fused qkv_proj (lora_B [64,4]: rows 0-31 q, 32-47 k, 48-63 v) and gate_up_proj "
                "(lora_B [128,4]: rows 0-63 gate, 64-127 up), o_proj, down_proj; r 4, alpha 4 (scale 1); "
                "the delta is added to the fused output before it is split"),
    dict(name="mixtral-experts", base="mixtral", r=4, alpha=8,
         targets=["q_proj", "k_proj", "v_proj", "o_proj", "w1", "w2", "w3"],
         covers="LoRA on mixtral's attention and on every expert's w1/w2/w3 (separate nn.Linear modules under "
                "transformers 4.57.1: block_sparse_moe.experts.N.wK), NOT the router block_sparse_moe.gate; "
                "r 4, alpha 8 (scale 2); a token's expert output uses that expert's LoRA"),
    dict(name="gemma2-rslora", base="gemma2", r=4, alpha=8, targets=ALL_LINEAR, rslora=True,
         covers="rsLoRA (use_rslora true: scale alpha/sqrt(r) = 4, not alpha/r = 2) on every linear layer of "
                "gemma2 (softcapping, sliding layer 0), r 4, alpha 8"),
    dict(name="llama-bias-all", base="llama-bias", r=8, alpha=16, targets=ALL_LINEAR,
         covers="LLaMA-Factory's defaults (lora_rank 8, lora_alpha 16, lora_target all) on llama with "
                "attention_bias and mlp_bias (the base biases stay; LoRA adds no bias: lora_bias false), "
                "linear rope factor 2, base in bfloat16"),
]


def seed_of(name, what):
    return zlib.crc32(f"{name}/{what}".encode())


def g6(x):
    return float(f"{x:.6g}")


def scaling(spec):
    return spec["alpha"] / (math.sqrt(spec["r"]) if spec.get("rslora") else spec["r"])


# ---------------------------------------------------------------- worker side

def worker_setup():
    import torch
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    import transformers
    transformers.logging.set_verbosity_error()
    if hasattr(transformers.logging, "disable_progress_bar"):
        transformers.logging.disable_progress_bar()
    import peft  # noqa: F401
    return torch, transformers


def load_base(torch, transformers, path):
    from transformers import AutoModelForCausalLM
    kw = {"attn_implementation": "eager"}
    kw["torch_dtype" if transformers.__version__.startswith("4.") else "dtype"] = torch.float32
    model = AutoModelForCausalLM.from_pretrained(path, **kw)
    model.eval()
    return model


def load_peft(torch, transformers, base_path, adapter_dir):
    from peft import PeftModel
    model = PeftModel.from_pretrained(load_base(torch, transformers, base_path), adapter_dir)
    model.eval()
    return model


def forward(torch, model, ids):
    x = torch.tensor([ids], dtype=torch.long)
    pos = torch.arange(len(ids), dtype=torch.long)[None]
    with torch.no_grad():
        logits = model(input_ids=x, position_ids=pos, use_cache=False).logits
    assert logits.dtype == torch.float32
    return logits[0].contiguous()


def forward_all(torch, make_model, id_lists, modify=None):
    """Logits [T, V] per sequence, each by a freshly loaded model (optionally modified first)."""
    out = []
    for ids in id_lists:
        model = make_model()
        if modify is not None:
            model = modify(model) or model
        out.append(forward(torch, model, ids))
    return out


def rel_diff(gold, other):
    return [g6(float((a - b).abs().max()) / float(a.abs().max())) for a, b in zip(gold, other)]


def read_ids(models, base):
    with open(os.path.join(models, base, "ids.jsonl")) as f:
        return [json.loads(line)["ids"] for line in f]


def zero_lora_of(torch, suffix):
    """Knockout: zero lora_B of every module whose name ends with .suffix."""
    def f(model):
        from peft.tuners.lora import LoraLayer
        n = 0
        with torch.no_grad():
            for name, mod in model.named_modules():
                if isinstance(mod, LoraLayer) and name.split(".")[-1] == suffix:
                    for b in mod.lora_B.values():
                        b.weight.zero_()
                    n += 1
        assert n > 0, suffix
    return f


def scale_as(value):
    def f(model):
        from peft.tuners.lora import LoraLayer
        for mod in model.modules():
            if isinstance(mod, LoraLayer):
                for k in mod.scaling:
                    mod.scaling[k] = value
    return f


def randomize_lora(torch, model, spec):
    g = torch.Generator().manual_seed(seed_of(spec["name"], "lora"))
    sigma = math.sqrt(DELTA_STD / (scaling(spec) * math.sqrt(spec["r"])))
    n = 0
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if "lora_A" in name or "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32) * sigma)
                n += 1
    return sigma, n


def check_loaded(torch, model, adapter_dir):
    """File tensors == loaded PeftModel parameters (adapter name put back); no LoRA param missing."""
    from safetensors import safe_open
    errs = []
    params = dict(model.named_parameters())
    lora_params = {n for n in params if "lora_" in n}
    seen = set()
    with safe_open(os.path.join(adapter_dir, "adapter_model.safetensors"), "pt") as f:
        meta = f.metadata()
        names = sorted(f.keys())
        for n in names:
            if f.get_slice(n).get_dtype() != "F32":
                errs.append(f"{n} is {f.get_slice(n).get_dtype()}")
            assert n.endswith(".weight"), n
            pn = n[: -len(".weight")] + ".default.weight"
            if pn not in params:
                errs.append(f"{n}: no parameter {pn}")
                continue
            seen.add(pn)
            if not torch.equal(params[pn].detach(), f.get_tensor(n)):
                errs.append(f"{n}: loaded parameter differs from the file")
        shapes = {n: list(f.get_slice(n).get_shape()) for n in names}
    for n in sorted(lora_params - seen):
        errs.append(f"LoRA parameter {n} is not in the file")
    return errs, names, shapes, meta


def build(spec, out, models):
    torch, transformers = worker_setup()
    import peft
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import save_file, load_file
    name, base = spec["name"], spec["base"]
    base_path = os.path.relpath(os.path.join(models, base), ROOT)   # cwd is ROOT
    adir = os.path.join(out, name)
    shutil.rmtree(adir, ignore_errors=True)

    model = load_base(torch, transformers, base_path)
    cfg = LoraConfig(task_type="CAUSAL_LM", r=spec["r"], lora_alpha=spec["alpha"],
                     target_modules=list(spec["targets"]), lora_dropout=0.0, bias="none",
                     use_rslora=bool(spec.get("rslora")))
    torch.manual_seed(seed_of(name, "init"))
    pm = get_peft_model(model, cfg)
    sigma, n_lora = randomize_lora(torch, pm, spec)
    pm.save_pretrained(adir, safe_serialization=True)
    del pm, model
    readme = os.path.join(adir, "README.md")
    if os.path.exists(readme):
        os.remove(readme)

    id_lists = read_ids(models, base)
    adapted = lambda: load_peft(torch, transformers, base_path, adir)  # noqa: E731
    logits = forward_all(torch, adapted, id_lists)
    save_file({f"logits.{k}": t for k, t in enumerate(logits)}, os.path.join(adir, "logits.safetensors"))

    # effect vs the base model, and the base golden reproduced
    base_logits = forward_all(torch, lambda: load_base(torch, transformers, base_path), id_lists)
    base_gold = load_file(os.path.join(models, base, "logits.safetensors"))
    base_gold = [base_gold[f"logits.{k}"] for k in range(len(id_lists))]
    errs = []
    if rel_diff(base_gold, base_logits) != [0.0] * len(id_lists):
        errs.append(f"base logits differ from the base golden: {rel_diff(base_gold, base_logits)}")

    knock = {}
    for t in spec["targets"]:
        knock[f"no LoRA on {t}"] = rel_diff(logits, forward_all(torch, adapted, id_lists, zero_lora_of(torch, t)))
    if spec.get("rslora"):
        knock["scale alpha/r (rsLoRA ignored)"] = rel_diff(
            logits, forward_all(torch, adapted, id_lists, scale_as(spec["alpha"] / spec["r"])))
    merged = forward_all(torch, lambda: adapted().merge_and_unload(), id_lists)

    pm = adapted()
    lerrs, names, shapes, meta = check_loaded(torch, pm, adir)
    errs += lerrs
    loaded_scaling = sorted({float(v) for m in pm.modules() if hasattr(m, "scaling") and isinstance(m.scaling, dict)
                             for v in m.scaling.values()})
    if loaded_scaling != [scaling(spec)]:
        errs.append(f"loaded scaling {loaded_scaling}, intended {scaling(spec)}")
    wrapped = sorted({n.split(".")[-1] for n, m in pm.named_modules() if hasattr(m, "lora_A")})
    if wrapped != sorted(spec["targets"]):
        errs.append(f"wrapped modules {wrapped}, intended {sorted(spec['targets'])}")
    n_wrapped = sum(1 for _, m in pm.named_modules() if hasattr(m, "lora_A") and len(m.lora_A) > 0)
    if 2 * n_wrapped != len(names) or n_lora != len(names):
        errs.append(f"{n_wrapped} wrapped modules, {n_lora} LoRA parameters, {len(names)} tensors in the file")
    with open(os.path.join(adir, "adapter_config.json")) as f:
        acfg = json.load(f)
    with open(os.path.join(models, base, "config.json")) as f:
        base_cfg = json.load(f)

    # examples: the first layer's tensors
    examples = {n: shapes[n] for n in names if ".layers.0." in n and (".experts." not in n or ".experts.0." in n)}
    return {
        "base": base,
        "base_path": base_path,
        "base_transformers": base_cfg.get("transformers_version"),
        "base_dtype": base_cfg.get("dtype"),
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "covers": spec["covers"],
        "r": acfg["r"],
        "lora_alpha": acfg["lora_alpha"],
        "use_rslora": acfg["use_rslora"],
        "scaling": scaling(spec),
        "target_modules": acfg["target_modules"],
        "fan_in_fan_out": acfg["fan_in_fan_out"],
        "init_sigma": g6(sigma),
        "num_tensors": len(names),
        "tensor_examples": examples,
        "safetensors_metadata": meta,
        "files": sorted(os.listdir(adir)),
        "seq_lens": [len(x) for x in id_lists],
        "max_abs_logit": [g6(float(t.abs().max())) for t in logits],
        "std_logit": [g6(float(t.std())) for t in logits],
        "effect": rel_diff(logits, base_logits),
        "knockouts": knock,
        "merged_vs_unmerged": rel_diff(logits, merged),
        "check_errors": errs,
    }


def cross(spec, out, models):
    """The same oracle under the other transformers version."""
    torch, transformers = worker_setup()
    from safetensors.torch import load_file
    base_path = os.path.relpath(os.path.join(models, spec["base"]), ROOT)
    adir = os.path.join(out, spec["name"])
    id_lists = read_ids(models, spec["base"])
    gold = load_file(os.path.join(adir, "logits.safetensors"))
    gold = [gold[f"logits.{k}"] for k in range(len(id_lists))]
    import warnings
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        try:
            mine = forward_all(torch, lambda: load_peft(torch, transformers, base_path, adir), id_lists)
            res = {"transformers": transformers.__version__, "max_rel_diff": rel_diff(gold, mine)}
            # which file tensors did not become parameters (e.g. LoRA on modules this version lacks)
            from safetensors import safe_open
            params = dict(load_peft(torch, transformers, base_path, adir).named_parameters())
            with safe_open(os.path.join(adir, "adapter_model.safetensors"), "pt") as f:
                unused = [n for n in f.keys() if n[: -len(".weight")] + ".default.weight" not in params]
            if unused:
                res["file_tensors_not_loaded"] = len(unused)
                res["file_tensors_not_loaded_examples"] = sorted(unused)[:3]
        except Exception as e:  # noqa: BLE001 - reported, not fatal
            res = {"transformers": transformers.__version__, "error": f"{type(e).__name__}: {e}"[:300]}
    msgs = sorted({str(x.message)[:300] for x in w})
    if msgs:
        res["warnings"] = msgs
    return res


def worker(args):
    import transformers
    os.chdir(ROOT)
    major = int(transformers.__version__.split(".")[0])
    assert major == args.tf, f"worker for {args.tf}.x runs transformers {transformers.__version__}"
    res = {}
    for spec in ADAPTERS:
        if args.only and spec["name"] not in args.only.split(","):
            continue
        res[spec["name"]] = (build if args.phase == "build" else cross)(spec, args.out, args.models)
    with open(args.result, "w") as f:
        json.dump(res, f)


# ---------------------------------------------------------------- driver side

def run_worker(args, tf, phase, tmp):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env["PYTHONHASHSEED"] = "0"
    if tf == 4:
        env["PYTHONPATH"] = os.path.expanduser(args.tf4)
    result = os.path.join(tmp, f"{phase}-{tf}.json")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--tf", str(tf), "--phase", phase,
           "--out", args.out, "--models", args.models, "--result", result]
    if args.only:
        cmd += ["--only", args.only]
    subprocess.run(cmd, env=env, check=True)
    with open(result) as f:
        return json.load(f)


def dir_size(path):
    total = 0
    for dp, _, fns in os.walk(path):
        total += sum(os.path.getsize(os.path.join(dp, fn)) for fn in fns)
    return total


def driver(args):
    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        built = run_worker(args, 4, "build", tmp)
        crossed = run_worker(args, 5, "cross", tmp)
    index = {}
    for name, e in built.items():
        e["cross_version"] = crossed[name]
        e["bytes"] = dir_size(os.path.join(args.out, name))
        index[name] = e
    doc = {
        "generator": "scripts/goldens/make-adapter-goldens.py",
        "oracle": "PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_path, dtype=float32, "
                  "attn_implementation='eager'), adapter_dir), unmerged, batch 1, no cache, no attention mask, "
                  "position_ids 0..T-1, CPU, 1 thread, transformers 4.57.1 + peft 0.18.1; sequences = the base "
                  "model's ids.jsonl",
        "tolerance": "max |lf - golden| <= 1e-4 * max |golden logit|, per sequence",
        "effect": "max |golden - logits of the base model without the adapter| / max |golden logit|, per sequence",
        "knockouts": "max |golden - logits with one part of the adapter switched off| / max |golden logit|",
        "merged_vs_unmerged": "max |golden - logits of merge_and_unload()| / max |golden logit|",
        "cross_version": "max |golden - logits the same oracle computes under transformers 5.5.4| / max |golden logit|",
        "init": f"every lora_A and lora_B ~ N(0, init_sigma^2), seeded; init_sigma = sqrt({DELTA_STD} / "
                "(scaling * sqrt(r))) so scaling * B @ A has entries of std ~" + str(DELTA_STD),
        "tensor_names": "base_model.model.<parameter path of the module>.lora_A.weight [r, in] and "
                        ".lora_B.weight [out, r], F32; no adapter name ('default') in the file; PEFT puts it "
                        "back (...lora_A.default.weight) when loading",
        "adapters": index,
    }
    with open(os.path.join(args.out, "index.json"), "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")

    bad = False
    print(f"{'adapter':16} {'base':11} {'bytes':>7} {'scale':>5}  {'effect':30} {'merged':24} cross 5.5.4")
    for name, e in index.items():
        cv = e["cross_version"]
        cvs = cv.get("error", "")[:60] or str(cv["max_rel_diff"])
        print(f"{name:16} {e['base']:11} {e['bytes']:7} {e['scaling']:5.3g}  {str(e['effect']):30} "
              f"{str(e['merged_vs_unmerged']):24} {cvs}")
        for label, d in e["knockouts"].items():
            weak = any(x < 1e-3 for x in d)
            print(f"{'':18}knockout {label}: {d}{'  <-- WEAK (< 10x the 1e-4 tolerance)' if weak else ''}")
        for err in e["check_errors"]:
            bad = True
            print(f"{'':18}CHECK FAILED: {err}")
        if min(e["effect"]) < 0.05:
            bad = True
            print(f"{'':18}CHECK FAILED: adapter effect below 0.05")
    print(f"total {dir_size(args.out)} bytes in {args.out}")
    if bad:
        sys.exit(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "golden", "adapters"))
    ap.add_argument("--models", default=os.path.join(ROOT, "tests", "golden", "models"))
    ap.add_argument("--tf4", default="~/.cache/lf/goldens-tf4", help="directory with transformers 4.57.1")
    ap.add_argument("--only", help="comma-separated adapter names (debugging; the index then lists only those)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--tf", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.out = os.path.abspath(args.out)
    args.models = os.path.abspath(args.models)
    if args.worker:
        worker(args)
    else:
        driver(args)


if __name__ == "__main__":
    main()
