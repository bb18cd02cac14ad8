#!/usr/bin/env python3
"""lf-template | lf-tokenize against LLaMA-Factory 0.9.5 with transformers'
tokenizers (TAP-style): for each (template, tokenizer) pair of
scripts/goldens/make-token-goldens.py and each shared dataset, every record's
ids must hash to the golden's (tests/golden/shared-tokens.tsv.gz), and the
records LLaMA-Factory drops must be the ones lf-template skips.

With --parse-special-in-content (LLaMA-Factory's behaviour) every record
must match.  Without it (lf's default) exactly the records whose dataset text
spells one of the tokenizer's special tokens must differ.  One check per
(pair, dataset, mode)."""
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


# tokenizer_config.json merged as transformers merges it: a qwen3 whose
# tokenizer.json lost two added tokens the config still lists, plus config
# entries of its own (make-token-goldens.py records transformers' ids)
CONFIG_GOLDEN = os.path.join(ROOT, "tests", "golden", "config-merge.json")
CONFIG_TEXTS = ["<|im_start|>user hello world<tool_call> <new_cfg>x<|im_end|>", "hello<|im_start|>world",
                "<tool_call>{\"a\": 1}</tool_call> <new_cfg><new_cfg>"]


def build_config_case(tokenizers_dir, out):
    os.makedirs(out, exist_ok=True)
    t = json.load(open(os.path.join(tokenizers_dir, "qwen3", "tokenizer.json"), encoding="utf-8"))
    t["added_tokens"] = [a for a in t["added_tokens"] if a["content"] not in ("<|im_start|>", "<tool_call>")]
    json.dump(t, open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8"))
    c = json.load(open(os.path.join(tokenizers_dir, "qwen3", "tokenizer_config.json"), encoding="utf-8"))
    c["additional_special_tokens"] = c.get("additional_special_tokens", []) + ["hello"]
    flags = {"lstrip": False, "rstrip": False, "single_word": False, "normalized": False}
    c["added_tokens_decoder"]["151700"] = dict(flags, content="<new_cfg>", special=False)
    c["added_tokens_decoder"]["99999"] = dict(flags, content="world", special=True)
    json.dump(c, open(os.path.join(out, "tokenizer_config.json"), "w", encoding="utf-8"))


def check_config_merge():
    import tempfile
    want = json.load(open(CONFIG_GOLDEN, encoding="utf-8"))
    with tempfile.TemporaryDirectory() as work:
        build_config_case(TOKDIR, work)
        lines = "".join(json.dumps({"text": t}) + "\n" for t in want["texts"]).encode()
        out = subprocess.run([os.path.join(BIN, "lf-tokenize"), "--tokenizer", work, "--text", "--no-special"],
                             input=lines, capture_output=True)
    got = [json.loads(l)["ids"] for l in out.stdout.decode().split("\n") if l]
    name = "tokenizer_config.json merged into tokenizer.json as transformers 4.57 does (%d texts)" % len(want["ids"])
    if got == want["ids"]:
        print("ok - " + name)
        return 0
    print("not ok - " + name)
    print("#   lf %s\n#   transformers %s\n#   %s" % (got, want["ids"], out.stderr.decode().strip()))
    return 1


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


def specials(model, template_stream):
    """The tokenizer's special tokens and the template's stop words."""
    spec = json.load(open(os.path.join(TOKDIR, model, "tokenizer.json"), encoding="utf-8"))
    out = {a["content"] for a in spec.get("added_tokens", []) if a.get("special")}
    head = subprocess.run([os.path.join(BIN, "lf-inspect"), "--header"], input=template_stream, capture_output=True)
    return out | set(json.loads(head.stdout)["template"]["stop_words"])


def user_texts(elements):
    for e in elements:
        if isinstance(e, dict) and "text" in e:
            data = e["text"].encode("utf-8")
            spans = e.get("user", [])
            for k in range(0, len(spans), 2):
                yield data[spans[k]:spans[k + 1]].decode("utf-8")


def rows_spelling_specials(model, template_stream):
    """Rows whose user content spells a special token."""
    toks = specials(model, template_stream)
    ins = subprocess.run([os.path.join(BIN, "lf-inspect")], input=template_stream, capture_output=True)
    rows = set()
    for line in ins.stdout.decode().split("\n"):
        if not line:
            continue
        r = json.loads(line)
        lists = [r.get(k, []) for k in ("prompt", "response", "chosen", "rejected", "text")]
        lists += [t[k] for t in r.get("turns", []) for k in ("source", "target")]
        if any(s in u for lst in lists for u in user_texts(lst) for s in toks):
            rows.add(r["row"])
    return rows


def ours(template, model, dataset, stage, parse_special):
    flag = ["--parse-special-in-content"] if parse_special else []
    tpl = subprocess.run([os.path.join(BIN, "lf-template"), "-t", template, "--dataset-dir", DATA, "--dataset", dataset,
                          "--stage", stage] + flag, capture_output=True, env=ENV)
    if tpl.returncode:
        return None, tpl.stderr.decode()
    tok = subprocess.run([os.path.join(BIN, "lf-tokenize"), "--tokenizer", os.path.join(TOKDIR, model)] + flag,
                         input=tpl.stdout, capture_output=True)
    if tok.returncode:
        return None, tok.stderr.decode()
    ins = subprocess.run([os.path.join(BIN, "lf-inspect")], input=tok.stdout, capture_output=True)
    head = subprocess.run([os.path.join(BIN, "lf-inspect"), "--header"], input=tok.stdout, capture_output=True)
    if ins.returncode or head.returncode:
        return None, ins.stderr.decode() + head.stderr.decode()
    header = json.loads(head.stdout)
    recs = [json.loads(l) for l in ins.stdout.decode().split("\n") if l]
    expect_diff = set() if parse_special else rows_spelling_specials(model, tpl.stdout)
    return {r["row"]: record_hash(shape(r, header)) for r in recs}, expect_diff


def main():
    golden = {}
    with gzip.open(GOLDEN, "rt", encoding="utf-8") as f:
        next(f)
        for line in f:
            template, model, dataset, stage, row, h = line.rstrip("\n").split("\t")
            golden.setdefault((template, model, dataset, stage), {})[int(row)] = h
    failed = 0
    for (template, model, dataset, stage), want in golden.items():
        for parse_special in (True, False):
            name = "%s template, %s tokenizer, %s (%s)%s: ids of %d rows match LLaMA-Factory" % (
                template, model, dataset, stage, " with --parse-special-in-content" if parse_special else "", len(want))
            got, expect_diff = ours(template, model, dataset, stage, parse_special)
            if got is None:
                print("not ok - " + name)
                print("#   " + expect_diff.strip()[:400])
                failed += 1
                continue
            if expect_diff:
                name += ", but the %d that spell special tokens" % len(expect_diff)
            bad = [row for row, h in sorted(want.items()) if (got.get(row, "dropped") != h) != (row in expect_diff)]
            extra = sorted(set(got) - set(want))
            if bad or extra:
                failed += 1
                print("not ok - " + name)
                for row in bad[:5]:
                    print("#   row %d: lf %s, LLaMA-Factory %s%s" % (row, got.get(row, "dropped"), want[row],
                                                                  " (should differ)" if row in expect_diff else ""))
                if extra:
                    print("#   rows LLaMA-Factory does not have: %s" % extra[:5])
                print("#   %d of %d rows wrong" % (len(bad), len(want)))
            else:
                print("ok - " + name)
    failed += check_config_merge()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
