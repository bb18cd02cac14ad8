#!/usr/bin/env python3
"""lf-template --parse-special-in-content | lf-tokenize | lf-pack against
LLaMA-Factory 0.9.5's own tokenized datasets (tests/golden/pack-goldens.jsonl.gz,
made by scripts/goldens/make-pack-goldens.py): for every configuration the
same number of examples per split and, example by example, the same
input_ids, labels, position_ids and attention_mask (or the pairwise / KTO
columns), compared by hash in LLaMA-Factory's order.

One "ok" line per configuration.  LF_BIN holds the programs; the data and
tokenizers come from ../shared (or LF_SHARED_DATA).
"""
import gzip
import hashlib
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("LF_BIN", os.path.join(ROOT, "bin"))
DATA = os.environ.get("LF_SHARED_DATA") or (
    os.path.join(ROOT, "shared", "data") if os.path.isdir(os.path.join(ROOT, "shared", "data"))
    else os.path.join(ROOT, "..", "shared", "data"))
TOKS = os.path.join(DATA, "..", "tokenizers")
GOLDEN = os.path.join(ROOT, "tests", "golden", "pack-goldens.jsonl.gz")
# the llama3 tool prompt prints today's date: the goldens froze it at 2024-07-23
os.environ["SOURCE_DATE_EPOCH"] = "1721736000"


def ex_hash(example):
    blob = json.dumps(example, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load():
    configs, order = {}, []
    with gzip.open(GOLDEN, "rt") as f:
        for line in f:
            d = json.loads(line)
            name = d["config"]
            if "args" in d:
                configs[name] = {"args": d["args"], "counts": d["counts"], "hashes": {}, "keys": None,
                                 "examples": {}}
                order.append(name)
                continue
            c = configs[name]
            c["hashes"].setdefault(d["split"], []).append(d["hash"])
            if "example" in d:
                c["keys"] = sorted(d["example"])
                c["examples"][(d["split"], d["index"])] = d["example"]
    return configs, order


def lf_run(args, tmp):
    a = args
    tmpl = [os.path.join(BIN, "lf-template"), "-t", a["template"], "--dataset-dir", DATA, "--dataset", a["dataset"],
            "--stage", a["stage"], "--parse-special-in-content"]
    if a["train_on_prompt"]:
        tmpl.append("--train-on-prompt")
    if a["mask_history"]:
        tmpl.append("--mask-history")
    if a["max_samples"] is not None:
        tmpl += ["--max-samples", str(a["max_samples"])]
    tok = [os.path.join(BIN, "lf-tokenize"), "--tokenizer", os.path.join(TOKS, a["tokenizer"])]
    out = os.path.join(tmp, "out")
    pack = [os.path.join(BIN, "lf-pack"), "--cutoff-len", str(a["cutoff_len"]), "--preprocessing-batch-size",
            str(a["preprocessing_batch_size"]), "-o", out]
    if a["packing"] is not None:
        pack.append("--packing=%s" % ("true" if a["packing"] else "false"))
    if a["neat_packing"]:
        pack.append("--neat-packing")
    if a["val_size"]:
        pack += ["--val-size", "%g" % a["val_size"]]
    if a["max_samples"] is not None:
        pack += ["--max-samples", str(a["max_samples"])]
    if a["mix_strategy"] != "concat":
        pack += ["--mix-strategy", a["mix_strategy"]]
    if a.get("interleave_probs"):
        pack += ["--interleave-probs", a["interleave_probs"]]
    p1 = subprocess.Popen(tmpl, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p2 = subprocess.Popen(tok, stdin=p1.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p1.stdout.close()
    p3 = subprocess.run(pack, stdin=p2.stdout, capture_output=True, text=True)
    p2.stdout.close()
    e1, e2 = p1.stderr.read().decode(), p2.stderr.read().decode()
    p1.wait()
    p2.wait()
    if p1.returncode or p2.returncode or p3.returncode:
        raise RuntimeError("pipeline failed: %s %s %s" % (e1[-300:], e2[-300:], p3.stderr[-300:]))
    r = subprocess.run([os.path.join(BIN, "lf-inspect"), out], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError("lf-inspect failed: " + r.stderr[-300:])
    return [json.loads(l) for l in r.stdout.splitlines()]


def main():
    configs, order = load()
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in order:
            c = configs[name]
            try:
                got = lf_run(c["args"], tmp)
            except RuntimeError as e:
                print("not ok - %s: %s" % (name, e))
                failed += 1
                continue
            keys = c["keys"]
            mine = {}
            for d in got:
                mine.setdefault(d["split"], []).append({k: d[k] for k in keys})
            problems = []
            for split, want in c["hashes"].items():
                have = mine.get(split, [])
                if len(have) != len(want):
                    problems.append("%s: %d examples, LLaMA-Factory %d" % (split, len(have), len(want)))
                bad = [i for i, (h, w) in enumerate(zip(have, want)) if ex_hash(h) != w]
                if bad:
                    i = bad[0]
                    detail = ""
                    ref = c["examples"].get((split, i))
                    if ref:
                        for k in keys:
                            if ref[k] != have[i][k]:
                                a, b = ref[k], have[i][k]
                                at = next((j for j, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
                                detail += "; %s differs at %d (len %d vs %d): lf %s, LF %s" % (
                                    k, at, len(b), len(a), b[at:at + 6], a[at:at + 6])
                    problems.append("%s: %d of %d examples differ, first %d%s" % (split, len(bad), len(want), i,
                                                                                  detail))
            for split in mine:
                if split not in c["hashes"]:
                    problems.append("unexpected split %s" % split)
            if problems:
                failed += 1
                print("not ok - %s: %s" % (name, "; ".join(problems)))
            else:
                n = sum(len(v) for v in c["hashes"].values())
                print("ok - %s: %d examples equal to LLaMA-Factory's" % (name, n))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
