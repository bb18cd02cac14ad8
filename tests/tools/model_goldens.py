#!/usr/bin/env python3
"""lf-eval --task logits against transformers itself: tests/golden/models
(made by scripts/goldens/make-model-goldens.py) holds tiny random models of
every architecture lf runs, saved by transformers, and the float32 logits
transformers computed for them with eager attention; tests/golden/adapters
(scripts/goldens/make-adapter-goldens.py) holds PEFT LoRA adapters for some
of them, saved by PEFT, with the logits of transformers + PEFT unmerged.
For every model (and adapter) and sequence: the logits agree within 1e-4 of
their scale (the largest |logit|), and greedy decoding teacher-forced along
the sequence picks the same token wherever the oracle's top-2 margin
exceeds 1e-4 of that scale.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from safetensors.numpy import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("LF_BIN", os.path.join(ROOT, "bin"))
MODELS = os.path.join(ROOT, "tests", "golden", "models")
ADAPTERS = os.path.join(ROOT, "tests", "golden", "adapters")


def compare(mine, want):
    problems = []
    for key in sorted(want):
        y = want[key]
        x = mine.get(key)
        if x is None or x.shape != y.shape:
            problems.append("%s: shape %s, oracle %s" % (key, None if x is None else x.shape, y.shape))
            continue
        scale = float(np.abs(y).max())
        err = float(np.abs(x - y).max())
        if not err <= 1e-4 * scale:
            problems.append("%s: max error %.3g > 1e-4 x scale %.3g" % (key, err, scale))
        top2 = np.sort(y, axis=1)[:, -2:]
        clear = (top2[:, 1] - top2[:, 0]) > 1e-4 * scale
        differ = np.nonzero(clear & (x.argmax(axis=1) != y.argmax(axis=1)))[0]
        if len(differ):
            problems.append("%s: greedy token differs at positions %s" % (key, differ[:5].tolist()))
    return problems


def run_eval(model, ids, out, adapter=None):
    cmd = [os.path.join(BIN, "lf-eval"), "--model-name-or-path", model, "--task", "logits", "--input", ids, "-o", out]
    if adapter:
        cmd += ["--adapter-name-or-path", adapter]
    return subprocess.run(cmd, capture_output=True, text=True)


def main():
    index = json.load(open(os.path.join(MODELS, "index.json")))["models"]
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in sorted(index):
            d = os.path.join(MODELS, name)
            out = os.path.join(tmp, name + ".safetensors")
            r = run_eval(d, os.path.join(d, "ids.jsonl"), out)
            if r.returncode:
                print("not ok - %s: lf-eval failed: %s" % (name, r.stderr.strip()[-300:]))
                failed += 1
                continue
            problems = compare(load_file(out), load_file(os.path.join(d, "logits.safetensors")))
            if problems:
                failed += 1
                print("not ok - %s (%s): %s" % (name, index[name].get("model_type", "?"), "; ".join(problems)))
            else:
                print("ok - %s: logits within 1e-4 of scale, greedy tokens equal (%s)" % (
                    name, index[name].get("covers", "")[:100]))
        adapters = {}
        if os.path.exists(os.path.join(ADAPTERS, "index.json")):
            adapters = json.load(open(os.path.join(ADAPTERS, "index.json")))
            adapters = adapters.get("adapters", adapters)
        for name in sorted(adapters):
            info = adapters[name]
            d = os.path.join(ADAPTERS, name)
            base = os.path.join(MODELS, info["base"])
            ids = os.path.join(d, "ids.jsonl") if os.path.exists(os.path.join(d, "ids.jsonl")) else \
                os.path.join(base, "ids.jsonl")
            out = os.path.join(tmp, "adapter-" + name + ".safetensors")
            r = run_eval(base, ids, out, d)
            if r.returncode:
                print("not ok - adapter %s: lf-eval failed: %s" % (name, r.stderr.strip()[-300:]))
                failed += 1
                continue
            problems = compare(load_file(out), load_file(os.path.join(d, "logits.safetensors")))
            if problems:
                failed += 1
                print("not ok - adapter %s on %s: %s" % (name, info["base"], "; ".join(problems)))
            else:
                print("ok - adapter %s on %s: logits within 1e-4 of scale (%s)" % (
                    name, info["base"], info.get("covers", "")[:100]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
