#!/usr/bin/env python3
"""Compare lf-template with LLaMA-Factory's own rendering (the goldens that
scripts/goldens/make-template-goldens.py wrote).  Prints TAP-style lines:
one per (template, case) and one per (template, shared dataset)."""
import gzip
import hashlib
import json
import os
import subprocess
import sys
from collections import defaultdict

BIN = os.environ.get("LF_BIN", os.path.join(os.path.dirname(__file__), "..", "..", "bin"))
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SHARED = os.environ.get("LF_SHARED_DATA") or next(
    (p for p in (os.path.join(ROOT, "shared", "data"), os.path.join(ROOT, "..", "shared", "data")) if os.path.isdir(p)),
    os.path.join(ROOT, "..", "shared", "data"))
ENV = dict(os.environ, SOURCE_DATE_EPOCH="1721736000")


def elems(lst):
    out = []
    for e in lst:
        if "text" in e:
            out.append(["text", e["text"]])
        elif "special" in e:
            out.append([e["special"]])
        else:
            out.append(["token", e["token"]])
    return out


def canonical(rec):
    t = rec["type"]
    if t == "sft":
        return {"type": t, "turns": [[elems(x["source"]), elems(x["target"])] for x in rec["turns"]]}
    if t == "pairwise":
        return {"type": t, "prompt": elems(rec["prompt"]), "chosen": elems(rec["chosen"]),
                "rejected": elems(rec["rejected"])}
    if t == "kto":
        return {"type": t, "prompt": elems(rec["prompt"]), "response": elems(rec["response"]),
                "desirable": rec["desirable"]}
    if t == "prompt":
        return {"type": t, "prompt": elems(rec["prompt"]), "response": elems(rec["response"])}
    return {"type": "pt", "text": rec["text"]}


def record_hash(rec):
    text = json.dumps(rec, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def run_lf(template, dataset_dir, dataset, stage, settings):
    cmd = [os.path.join(BIN, "lf-template"), "-t", template, "--dataset-dir", dataset_dir, "--dataset", dataset]
    cmd += ["--prompt-only"] if stage == "prompt" else ["--stage", stage]
    if settings.get("enable_thinking") is False:
        cmd.append("--enable-thinking=false")
    if settings.get("preserve_thinking"):
        cmd.append("--preserve-thinking")
    if settings.get("mask_history"):
        cmd.append("--mask-history")
    if "tool_format" in settings:
        cmd += ["--tool-format", settings["tool_format"]]
    if "default_system" in settings:
        cmd += ["--default-system", settings["default_system"]]
    p1 = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    p2 = subprocess.run([os.path.join(BIN, "lf-inspect")], stdin=p1.stdout, capture_output=True, env=ENV)
    p1.stdout.close()
    err = p1.stderr.read().decode()
    p1.wait()
    if p2.returncode != 0 and p1.returncode == 0:
        raise RuntimeError("lf-inspect failed: " + p2.stderr.decode())
    recs = {}
    for line in p2.stdout.decode().splitlines():
        r = json.loads(line)
        recs[r["row"]] = canonical(r)
    return recs, p1.returncode, err


def first_difference(a, b):
    sa = json.dumps(a, ensure_ascii=False, sort_keys=True)
    sb = json.dumps(b, ensure_ascii=False, sort_keys=True)
    i = next((k for k in range(min(len(sa), len(sb))) if sa[k] != sb[k]), min(len(sa), len(sb)))
    return "lf: ...%s...\n#   LLaMA-Factory: ...%s..." % (sa[max(0, i - 60):i + 80], sb[max(0, i - 60):i + 80])


def main():
    n_ok = n_bad = 0

    def report(ok, desc, detail=None):
        nonlocal n_ok, n_bad
        if ok:
            n_ok += 1
            print("ok - " + desc)
        else:
            n_bad += 1
            print("not ok - " + desc)
            if detail:
                print("#   " + detail.replace("\n", "\n#   "))

    groups = defaultdict(list)
    with gzip.open(os.path.join(ROOT, "tests", "golden", "templates.jsonl.gz"), "rt", encoding="utf-8") as f:
        for line in f:
            g = json.loads(line)
            groups[(g["template"], g["case"])].append(g)
    for (template, case), golden in sorted(groups.items()):
        g0 = golden[0]
        ours, rc, err = run_lf(template, os.path.join(ROOT, "tests", "data"), g0["dataset"], g0["stage"], g0["settings"])
        problems = []
        for g in golden:
            row, want = g["row"], g["record"]
            if "dropped" in want:
                if row in ours:
                    problems.append("row %d: LLaMA-Factory drops it (%s), lf-template kept it" % (row, want["dropped"]))
            elif row not in ours:
                problems.append("row %d: lf-template skipped it, LLaMA-Factory renders it" % row)
            elif ours[row] != want:
                problems.append("row %d differs:\n%s" % (row, first_difference(ours[row], want)))
        if rc != 0 and any("dropped" not in g["record"] for g in golden):
            problems.append("lf-template failed: " + err.strip())
        report(not problems, "template %s on %s matches LLaMA-Factory" % (template, case),
               "\n".join(problems[:3]))

    shared = defaultdict(dict)
    with gzip.open(os.path.join(ROOT, "tests", "golden", "shared-data.tsv.gz"), "rt", encoding="utf-8") as f:
        next(f)
        for line in f:
            t, ds, stage, row, h = line.rstrip("\n").split("\t")
            shared[(t, ds, stage)][int(row)] = h
    if not os.path.isdir(SHARED):
        report(False, "shared datasets at %s" % SHARED, "not found: set LF_SHARED_DATA")
    else:
        for (t, ds, stage), want in sorted(shared.items()):
            ours, rc, err = run_lf(t, SHARED, ds, stage, {})
            problems = []
            for row, h in sorted(want.items()):
                if h == "dropped":
                    if row in ours:
                        problems.append("row %d: LLaMA-Factory drops it" % row)
                elif row not in ours:
                    problems.append("row %d: lf-template skipped it" % row)
                elif record_hash(ours[row]) != h:
                    problems.append("row %d differs (rerun make-template-goldens.py to see it)" % row)
            report(not problems, "template %s on shared dataset %s (%d records) matches LLaMA-Factory"
                   % (t, ds, len(want)), "\n".join(problems[:3]))
    return 1 if n_bad else 0


if __name__ == "__main__":
    sys.exit(main())
