#!/usr/bin/env python3
"""Render lf's template test cases with LLaMA-Factory itself and store goldens.

The oracle is LLaMA-Factory 0.9.5's own code: its dataset loader and
converters (data/loader.py, converter.py), its Template objects with
get_template_and_fix_tokenizer, and its processors' rules for which examples
they drop.  A recording tokenizer stands in for a real one: every string
LLaMA-Factory asks it to encode becomes one "text" element, the bos/eos ids
and convert_tokens_to_ids become "bos"/"eos"/"token" elements, so the goldens
hold exactly the element lists lf-template must write (man 5 lf-stream).

Outputs (checked in, compared by tests/tools/template-goldens.sh):
  tests/golden/templates.jsonl.gz   test datasets of tests/data, every case in full
  tests/golden/shared-data.tsv.gz   ../shared/data datasets, a hash per record

Run (needs LLaMA-Factory; not run in CI), from outside the source tree of any
llamafactory checkout:
  bash scripts/goldens/venv.sh          # once: ~/.cache/lf/goldens-venv
  ~/.cache/lf/goldens-venv/bin/python scripts/goldens/make-template-goldens.py [--shared ../shared/data]
"""
import argparse
import copy
import datetime as _dt
import gzip
import hashlib
import json
import os
import sys
import tempfile
import types

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("DISABLE_VERSION_CHECK", "1")
os.environ.setdefault("HF_DATASETS_CACHE", tempfile.mkdtemp(prefix="lf-goldens-"))

# The llama3 tool prompt prints today's date: freeze it (tests set
# SOURCE_DATE_EPOCH to the same day).
FROZEN_DATE = _dt.datetime(2024, 7, 23, 12, 0, 0)
SOURCE_DATE_EPOCH = int(_dt.datetime(2024, 7, 23, 12, 0, 0, tzinfo=_dt.timezone.utc).timestamp())

_stdout = sys.stdout
sys.stdout = sys.stderr  # llamafactory logs to stdout while importing
import llamafactory.data.tool_utils as tool_utils  # noqa: E402
from llamafactory.data.loader import _load_single_dataset  # noqa: E402
from llamafactory.data.parser import get_dataset_list  # noqa: E402
from llamafactory.data.template import TEMPLATES, get_template_and_fix_tokenizer  # noqa: E402
sys.stdout = _stdout


class _FrozenDatetime(_dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return FROZEN_DATE


tool_utils.datetime = _FrozenDatetime

BOS, EOS = "<bos>", "<eos>"


class RecordingTokenizer:
    """Enough of a PreTrainedTokenizer for LLaMA-Factory's templates: ids stand
    for the elements they were made from."""

    def __init__(self):
        self.elements = []
        self.bos_token, self.eos_token, self.pad_token = BOS, EOS, None
        self.chat_template = None
        self.additional_special_tokens = []
        self.add_bos_token = False

    def _id(self, element):
        self.elements.append(element)
        return len(self.elements) - 1

    @property
    def bos_token_id(self):
        return 10**9 if self.bos_token is not None else None

    @property
    def eos_token_id(self):
        return 10**9 + 1 if self.eos_token is not None else None

    @property
    def pad_token_id(self):
        return None if self.pad_token is None else 10**9 + 2

    def encode(self, text, add_special_tokens=False):
        assert add_special_tokens is False
        return [self._id(["text", text])]

    def convert_tokens_to_ids(self, token):
        return self._id(["token", token])

    def add_special_tokens(self, mapping, replace_additional_special_tokens=True):
        added = 0
        if "eos_token" in mapping:
            self.eos_token = mapping["eos_token"]
        for tok in mapping.get("additional_special_tokens", []):
            if tok not in self.additional_special_tokens:
                self.additional_special_tokens.append(tok)
                added += 1
        return added

    def element(self, i):
        if i == 10**9:
            return ["bos"]
        if i == 10**9 + 1:
            return ["eos"]
        return self.elements[i]

    def elements_of(self, ids):
        return [self.element(i) for i in ids]


def data_args(template, stage, settings):
    return types.SimpleNamespace(
        template=template, train_on_prompt=False, mask_history=settings.get("mask_history", False),
        tool_format=settings.get("tool_format"), default_system=settings.get("default_system"),
        enable_thinking=settings.get("enable_thinking", True),
        preserve_thinking=settings.get("preserve_thinking", False),
        dataset_dir=None, media_dir=None, streaming=False, preprocessing_num_workers=None,
        max_samples=None, overwrite_cache=True, packing=False, cutoff_len=10**9,
    )


def load_examples(dataset_dir, name):
    attr = get_dataset_list([name], dataset_dir)[0]
    model_args = types.SimpleNamespace(cache_dir=None, hf_hub_token=None, ms_hub_token=None, om_hub_token=None)
    dargs = types.SimpleNamespace(dataset_dir=dataset_dir, media_dir=dataset_dir, streaming=False,
                                  preprocessing_num_workers=None, max_samples=None, overwrite_cache=True)
    targs = types.SimpleNamespace(local_process_index=0, dataloader_num_workers=0)
    return list(_load_single_dataset(attr, model_args, dargs, targs))


def render(template_name, stage, settings, examples):
    """One result per example: the record LLaMA-Factory would encode, or
    {"dropped": reason}."""
    TEMPLATES[template_name] = copy.deepcopy(ORIGINAL[template_name])
    tok = RecordingTokenizer()
    template = get_template_and_fix_tokenizer(tok, data_args(template_name, stage, settings))
    out = []
    for ex in examples:
        prompt, response, system, tools = ex["_prompt"], ex["_response"], ex["_system"], ex["_tools"]
        try:
            out.append(encode(template, tok, stage, settings, template_name, prompt, response, system, tools))
        except Exception as e:  # LLaMA-Factory would stop here: lf skips the record
            out.append({"dropped": "error: %s" % type(e).__name__})
    return out


def encode(template, tok, stage, settings, template_name, prompt, response, system, tools):
    E = tok.elements_of
    if stage == "pt":
        eos = "<|end_of_text|>" if template_name == "llama3" else tok.eos_token
        return {"type": "pt", "text": prompt[0]["content"] + eos}
    if stage == "sft":
        if len(prompt) % 2 != 1 or len(response) != 1:
            return {"dropped": "invalid"}
        discard = settings.get("mask_history", False) and not template.preserve_thinking
        pairs = template.encode_multiturn(tok, prompt + response, system, tools, discard)
        return {"type": "sft", "turns": [[E(s), E(t)] for s, t in pairs]}
    if stage == "prompt":
        if len(prompt) % 2 != 1:
            return {"dropped": "invalid"}
        messages = prompt + response if len(response) == 1 else prompt + [{"role": "assistant", "content": ""}]
        p, r = template.encode_oneturn(tok, messages, system, tools)
        return {"type": "prompt", "prompt": E(p), "response": E(r)}
    if stage == "rm":
        if len(prompt) % 2 != 1 or len(response) < 2:
            return {"dropped": "invalid"}
        p, c = template.encode_oneturn(tok, prompt + [response[0]], system, tools)
        _, r = template.encode_oneturn(tok, prompt + [response[1]], system, tools)
        return {"type": "pairwise", "prompt": E(p), "chosen": E(c), "rejected": E(r)}
    if stage == "kto":
        if len(prompt) % 2 != 1 or len(response) < 2:
            return {"dropped": "invalid"}
        desirable = bool(response[0]["content"])
        messages = prompt + [response[0] if desirable else response[1]]
        p, r = template.encode_oneturn(tok, messages, system, tools)
        return {"type": "kto", "prompt": E(p), "response": E(r), "desirable": desirable}
    raise ValueError(stage)


def write_gz(path, text):
    """gzip with no timestamp, so the same goldens give the same bytes."""
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
        f.write(text.encode("utf-8"))


def record_hash(rec):
    text = json.dumps(rec, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# Templates lf implements that LLaMA-Factory 0.9.5 still registers
# (baichuan2 is checked against the reference document instead).
LF_TEMPLATES = [
    "alpaca", "chatglm3", "chatml", "cohere", "deepseek", "deepseek3", "deepseekr1", "default", "empty",
    "exaone", "falcon", "gemma", "gemma2", "gemma3", "glm4", "granite3", "intern2", "llama2", "llama3",
    "llama4", "ministral", "mistral", "mistral_small", "openchat", "phi", "phi4", "phi4_mini", "qwen",
    "qwen3", "qwen3_nothink", "smollm2", "solar", "vicuna", "yi", "yuan", "zephyr",
]
REASONING = ["qwen3", "deepseekr1"]
# The templates the foundation issue names, checked on every shared dataset.
SHARED_TEMPLATES = [
    "default", "empty", "alpaca", "vicuna", "llama2", "llama3", "mistral", "qwen", "chatml", "qwen3",
    "qwen3_nothink", "gemma", "gemma3", "chatglm3", "phi", "yi", "deepseek", "deepseek3", "intern2",
    "cohere", "falcon", "zephyr", "yuan",
]


def cases():
    """(case name, dataset, stage, settings, templates) over tests/data."""
    base = [
        ("conversations", "sft", {}), ("conversations", "prompt", {}), ("alpaca_history", "sft", {}),
        ("pairs", "rm", {}), ("feedback", "kto", {}), ("openai_tools", "sft", {}), ("documents", "pt", {}),
    ]
    for ds, stage, st in base:
        yield ds, stage, st, LF_TEMPLATES
    for st in ({"enable_thinking": False}, {"preserve_thinking": True}, {"mask_history": True},
               {"mask_history": True, "preserve_thinking": True}):
        for ds, stage in (("conversations", "sft"), ("pairs", "rm"), ("feedback", "kto"), ("alpaca_history", "sft")):
            if "mask_history" in st and stage != "sft":
                continue
            yield ds, stage, st, REASONING
    for fmt in ("default", "qwen", "llama3", "mistral", "glm4"):
        yield "conversations", "sft", {"tool_format": fmt}, ["qwen", "llama3", "mistral", "chatglm3", "empty"]
    yield "conversations", "sft", {"default_system": "Custom default system."}, ["qwen", "llama2", "gemma", "vicuna"]


def case_name(ds, stage, st):
    extra = ",".join("%s=%s" % kv for kv in sorted(st.items()))
    return "%s/%s%s" % (ds, stage, "/" + extra if extra else "")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared", "data"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "golden"))
    args = ap.parse_args()
    test_dir = os.path.join(ROOT, "tests", "data")

    lines = []
    cache = {}
    for ds, stage, st, templates in cases():
        if ds not in cache:
            cache[ds] = load_examples(test_dir, ds)
        for t in templates:
            for row, rec in enumerate(render(t, stage, st, cache[ds])):
                lines.append(json.dumps({"template": t, "case": case_name(ds, stage, st), "dataset": ds,
                                         "stage": stage, "settings": st, "row": row, "record": rec},
                                        ensure_ascii=False, sort_keys=True))
    write_gz(os.path.join(args.out, "templates.jsonl.gz"), "\n".join(lines) + "\n")
    print("templates.jsonl.gz: %d records" % len(lines), file=sys.stderr)

    shared = [("alpaca_en_demo", "sft"), ("identity", "sft"), ("glaive_toolcall_en_demo", "sft"),
              ("dpo_en_demo", "rm"), ("kto_en_demo", "kto"), ("c4_demo", "pt"), ("wiki_demo", "pt")]
    rows = ["template\tdataset\tstage\trow\thash"]
    for ds, stage in shared:
        examples = load_examples(args.shared, ds)
        for t in SHARED_TEMPLATES:
            for row, rec in enumerate(render(t, stage, {}, examples)):
                rows.append("%s\t%s\t%s\t%d\t%s" % (t, ds, stage, row,
                                                    "dropped" if "dropped" in rec else record_hash(rec)))
    write_gz(os.path.join(args.out, "shared-data.tsv.gz"), "\n".join(rows) + "\n")
    print("shared-data.tsv.gz: %d records" % (len(rows) - 1), file=sys.stderr)
    print("SOURCE_DATE_EPOCH=%d" % SOURCE_DATE_EPOCH, file=sys.stderr)


ORIGINAL = {name: copy.deepcopy(t) for name, t in TEMPLATES.items()}

if __name__ == "__main__":
    main()
