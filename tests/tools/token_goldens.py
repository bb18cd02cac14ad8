#!/usr/bin/env python3
"""lf-template | lf-tokenize against LLaMA-Factory 0.9.5 with transformers'
tokenizers (TAP-style): for each (template, tokenizer) pair of
scripts/goldens/make-token-goldens.py and each shared dataset, every record's
ids must hash to the golden's (tests/golden/shared-tokens.tsv.gz), and the
records LLaMA-Factory drops must be the ones lf-template skips.  One check
per (pair, dataset)."""
import gzip
import hashlib
import json
import os
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
BIN = os.environ.get("LF_BIN", os.path.join(ROOT, "bin"))
DATA = os.environ.get("LF_SHARED_DATA") or next(
    (p for p in (os.path.join(ROOT, "shared", "data"), os.path.join(ROOT, "..", "shared", "data")) if os.path.isdir(p)),
    os.path.join(ROOT, "..", "shared", "data"))
TOKDIR = os.path.join(os.path.dirname(os.path.abspath(DATA)), "tokenizers")
GOLDEN = os.path.join(ROOT, "tests", "golden", "shared-tokens.tsv.gz")


def record_hash(rec):
    text = json.dumps(rec, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def shape(r, header):
    """The golden's shape of a record.  A pt record holds the document's ids;
    the bos LLaMA-Factory puts before it (add_bos_token, without packing) is
    lf-pack's to add, from the header."""
    if r["type"] == "sft":
        return {"turns": [[t["source_ids"], t["target_ids"]] for t in r["turns"]]}
    if r["type"] == "pairwise":
        return {"prompt": r["prompt_ids"], "chosen": r["chosen_ids"], "rejected": r["rejected_ids"]}
    if r["type"] == "kto":
        return {"prompt": r["prompt_ids"], "response": r["response_ids"]}
    tok = header["tokenizer"]
    return {"text": ([tok["bos_id"]] if tok["add_bos_token"] else []) + r["ids"]}


# the day scripts/goldens/make-template-goldens.py freezes (the llama3 tool prompt prints it)
ENV = dict(os.environ, SOURCE_DATE_EPOCH="1721736000")


def ours(template, model, dataset, stage):
    tpl = subprocess.run([os.path.join(BIN, "lf-template"), "-t", template, "--dataset-dir", DATA, "--dataset", dataset,
                          "--stage", stage, "--parse-special-in-content"], capture_output=True, env=ENV)
    if tpl.returncode:
        return None, tpl.stderr.decode()
    tok = subprocess.run([os.path.join(BIN, "lf-tokenize"), "--tokenizer", os.path.join(TOKDIR, model),
                          "--parse-special-in-content"], input=tpl.stdout, capture_output=True)
    if tok.returncode:
        return None, tok.stderr.decode()
    ins = subprocess.run([os.path.join(BIN, "lf-inspect")], input=tok.stdout, capture_output=True)
    head = subprocess.run([os.path.join(BIN, "lf-inspect"), "--header"], input=tok.stdout, capture_output=True)
    if ins.returncode or head.returncode:
        return None, ins.stderr.decode() + head.stderr.decode()
    header = json.loads(head.stdout)
    recs = [json.loads(l) for l in ins.stdout.decode().split("\n") if l]
    return {r["row"]: record_hash(shape(r, header)) for r in recs}, ""


def main():
    golden = {}
    with gzip.open(GOLDEN, "rt", encoding="utf-8") as f:
        next(f)
        for line in f:
            template, model, dataset, stage, row, h = line.rstrip("\n").split("\t")
            golden.setdefault((template, model, dataset, stage), {})[int(row)] = h
    failed = 0
    for (template, model, dataset, stage), want in golden.items():
        name = "%s template, %s tokenizer, %s (%s): ids of %d rows match LLaMA-Factory" % (
            template, model, dataset, stage, len(want))
        got, err = ours(template, model, dataset, stage)
        if got is None:
            print("not ok - " + name)
            print("#   " + err.strip()[:400])
            failed += 1
            continue
        bad = [row for row, h in sorted(want.items()) if got.get(row, "dropped") != h]
        extra = sorted(set(got) - set(want))
        if bad or extra:
            failed += 1
            print("not ok - " + name)
            for row in bad[:5]:
                print("#   row %d: lf %s, LLaMA-Factory %s" % (row, got.get(row, "dropped"), want[row]))
            if extra:
                print("#   rows LLaMA-Factory does not have: %s" % extra[:5])
            print("#   %d of %d rows differ" % (len(bad), len(want)))
        else:
            print("ok - " + name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
