#!/usr/bin/env python3
"""lf-eval --task logits against transformers itself: tests/golden/models
(made by scripts/goldens/make-model-goldens.py) holds tiny random models of
every architecture lf runs, saved by transformers, and the float32 logits
transformers computed for them with eager attention.  For every model and
sequence: the logits agree within 1e-4 of their scale (the largest |logit|),
and greedy decoding teacher-forced along the sequence picks the same token
wherever transformers' top-2 margin exceeds 1e-4 of that scale.
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


def main():
    index = json.load(open(os.path.join(MODELS, "index.json")))["models"]
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in sorted(index):
            d = os.path.join(MODELS, name)
            out = os.path.join(tmp, name + ".safetensors")
            r = subprocess.run([os.path.join(BIN, "lf-eval"), "--model-name-or-path", d, "--task", "logits",
                                "--input", os.path.join(d, "ids.jsonl"), "-o", out], capture_output=True, text=True)
            if r.returncode:
                print("not ok - %s: lf-eval failed: %s" % (name, r.stderr.strip()[-300:]))
                failed += 1
                continue
            mine, want = load_file(out), load_file(os.path.join(d, "logits.safetensors"))
            problems = []
            for key in sorted(want):
                y = want[key]
                x = mine.get(key)
                if x is None or x.shape != y.shape:
                    problems.append("%s: shape %s, transformers %s" % (key, None if x is None else x.shape, y.shape))
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
            if problems:
                failed += 1
                print("not ok - %s (%s): %s" % (name, index[name].get("model_type", "?"), "; ".join(problems)))
            else:
                print("ok - %s: logits within 1e-4 of scale, greedy tokens equal (%s)" % (
                    name, index[name].get("covers", "")[:100]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
