#!/usr/bin/env python3
"""Token ids LLaMA-Factory itself produces, for lf-template | lf-tokenize to
match: LLaMA-Factory 0.9.5's loader, converters and Template.encode_* (as in
make-template-goldens.py) with the real tokenizers of ../shared/tokenizers
loaded by transformers' AutoTokenizer, as LLaMA-Factory loads a model's.

Outputs (checked in, compared by tests/tools/token_goldens.py):
  tests/golden/shared-tokens.tsv.gz   template, tokenizer, dataset, stage, row,
                                      and a hash of the record's ids (or
                                      "dropped")
  tests/golden/config-merge.json      ids of a few texts with a tokenizer whose
                                      tokenizer_config.json adds tokens its
                                      tokenizer.json lacks (token_goldens.py
                                      builds it)

The hash is sha256 (first 16 hex digits) of the compact JSON, keys sorted, of
  sft       {"turns": [[source_ids, target_ids], ...]}
  rm        {"prompt": ids, "chosen": ids, "rejected": ids}
  kto       {"prompt": ids, "response": ids}
  pt        {"text": ids}  (LLaMA-Factory's pre-training text before packing)

LLaMA-Factory encodes with tokenizer.encode(text, add_special_tokens=False),
which matches special tokens inside dataset text too: lf's equivalent is
--parse-special-in-content.

transformers 4.x, which LLaMA-Factory 0.9.5 supports (>= 4.55), loads a
tokenizer.json as it is.  transformers 5 does not for tokenizer classes it
rebuilds itself: with 5.5.4 a LlamaTokenizer(Fast) file gets a Metaspace
pre-tokenizer and no normalizer whatever its tokenizer.json says, which
changes llama2's ids around spaces and breaks deepseek_v3's byte-level ids
entirely (" Hello world" -> H, ellow, orld).  lf follows tokenizer.json, as
the tokenizers library, transformers 4 and the models' training did, so the
goldens come from transformers 4.57.1, put in front of the goldens venv:

  bash scripts/goldens/venv.sh
  ~/.cache/lf/goldens-venv/bin/pip install --no-deps --target ~/.cache/lf/goldens-tf4 \
      transformers==4.57.1 huggingface_hub==0.36.0
  PYTHONPATH=~/.cache/lf/goldens-tf4 ~/.cache/lf/goldens-venv/bin/python \
      scripts/goldens/make-token-goldens.py [--shared ../shared]
"""
import argparse
import copy
import hashlib
import importlib.util
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

spec = importlib.util.spec_from_file_location("template_goldens", os.path.join(HERE, "make-template-goldens.py"))
tg = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tg)

import transformers  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

assert transformers.__version__.startswith("4."), "run with transformers 4.x (see the docstring)"

# (template, tokenizer) pairs: each model family with its own template, and
# two templates used with a tokenizer not made for them.
PAIRS = [
    ("qwen3", "qwen3"), ("qwen", "qwen3"), ("llama3", "llama3"), ("llama3", "llama3_1"), ("llama2", "llama2"),
    ("mistral", "llama2"), ("gemma3", "gemma3"), ("deepseek3", "deepseek_v3"),
]
DATASETS = [("identity", "sft"), ("alpaca_en_demo", "sft"), ("glaive_toolcall_en_demo", "sft"), ("dpo_en_demo", "rm"),
            ("kto_en_demo", "kto"), ("c4_demo", "pt")]


def record_hash(rec):
    text = json.dumps(rec, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def encode(template, tok, template_name, stage, ex):
    prompt, response, system, tools = ex["_prompt"], ex["_response"], ex["_system"], ex["_tools"]
    if stage == "pt":
        eos = "<|end_of_text|>" if template_name == "llama3" else tok.eos_token
        text = prompt[0]["content"] + eos
        if getattr(tok, "add_bos_token", False):
            text = tok.bos_token + text
        return {"text": tok(text, add_special_tokens=False)["input_ids"]}
    if stage == "sft":
        if len(prompt) % 2 != 1 or len(response) != 1:
            return None
        pairs = template.encode_multiturn(tok, prompt + response, system, tools)
        return {"turns": [[list(s), list(t)] for s, t in pairs]}
    if stage == "rm":
        if len(prompt) % 2 != 1 or len(response) < 2:
            return None
        p, c = template.encode_oneturn(tok, prompt + [response[0]], system, tools)
        _, r = template.encode_oneturn(tok, prompt + [response[1]], system, tools)
        return {"prompt": list(p), "chosen": list(c), "rejected": list(r)}
    if stage == "kto":
        if len(prompt) % 2 != 1 or len(response) < 2:
            return None
        desirable = bool(response[0]["content"])
        p, r = template.encode_oneturn(tok, prompt + [response[0] if desirable else response[1]], system, tools)
        return {"prompt": list(p), "response": list(r)}
    raise ValueError(stage)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "golden"))
    args = ap.parse_args()
    examples = {ds: tg.load_examples(os.path.join(args.shared, "data"), ds) for ds, _ in DATASETS}
    rows = ["template\ttokenizer\tdataset\tstage\trow\thash"]
    for template_name, model in PAIRS:
        tok = AutoTokenizer.from_pretrained(os.path.join(args.shared, "tokenizers", model))
        tg.TEMPLATES[template_name] = copy.deepcopy(tg.ORIGINAL[template_name])
        template = tg.get_template_and_fix_tokenizer(tok, tg.data_args(template_name, "sft", {}))
        for ds, stage in DATASETS:
            for row, ex in enumerate(examples[ds]):
                try:
                    rec = encode(template, tok, template_name, stage, ex)
                except Exception as e:  # noqa: BLE001 (LLaMA-Factory would stop; lf skips)
                    print("%s/%s %s row %d: %s" % (template_name, model, ds, row, e), file=sys.stderr)
                    rec = None
                rows.append("%s\t%s\t%s\t%s\t%d\t%s" % (template_name, model, ds, stage, row,
                                                        "dropped" if rec is None else record_hash(rec)))
        print("%s/%s: done" % (template_name, model), file=sys.stderr)
    tg.write_gz(os.path.join(args.out, "shared-tokens.tsv.gz"), "\n".join(rows) + "\n")
    print("shared-tokens.tsv.gz: %d records" % (len(rows) - 1), file=sys.stderr)

    sys.path.insert(0, os.path.join(ROOT, "tests", "tools"))
    import tempfile
    import token_goldens
    with tempfile.TemporaryDirectory() as work:
        token_goldens.build_config_case(os.path.join(args.shared, "tokenizers"), work)
        tok = AutoTokenizer.from_pretrained(work)
        ids = [tok.encode(t, add_special_tokens=False) for t in token_goldens.CONFIG_TEXTS]
    with open(os.path.join(args.out, "config-merge.json"), "w", encoding="utf-8") as f:
        json.dump({"texts": token_goldens.CONFIG_TEXTS, "ids": ids}, f, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
