#!/usr/bin/env python3
r"""Tokenized training datasets LLaMA-Factory itself produces, for lf-pack to
match: the output of LLaMA-Factory 0.9.5's llamafactory.data.loader.get_dataset
(dataset loading, converters, merging, val split, templates, the real
tokenizers of ../shared/tokenizers, and its dataset processors: truncation,
labels, KTO's KL rotation, packing) for a list of configurations.

Output (checked in): tests/golden/pack-goldens.jsonl.gz, gzip'd JSON lines.
For each configuration, first a config line
  {"config": NAME, "args": {"stage", "template", "tokenizer" (directory under
   shared/tokenizers), "dataset" ("a,b"), "cutoff_len" (as the user gives it,
   before LLaMA-Factory's packing -1), "packing" (true/false/null as given),
   "neat_packing", "train_on_prompt", "mask_history",
   "preprocessing_batch_size", "max_samples" (or null), "mix_strategy",
   "val_size"}, "counts": {"train": n[, "validation": n]},
   "columns": [sorted column names of LLaMA-Factory's dataset]}
then one line per example of each split, in the dataset's order:
  {"config": NAME, "split": "train"|"validation", "index": i, "hash": H}
and the first 2 examples of each split also carry "example": {...}.  H is
sha256 (first 16 hex digits) of json.dumps(example, sort_keys=True,
separators=(",", ":")); the example holds only these columns, as plain lists
of ints (kto_tags: one bool):
  sft            input_ids, labels
  sft packed     input_ids, labels, position_ids, attention_mask
   (and neat)
  pt             input_ids
  ppo            input_ids (the prompt), labels (the reference answer)
  rm             chosen_input_ids, chosen_labels, rejected_input_ids,
                 rejected_labels
  kto            input_ids, labels, kl_input_ids, kl_labels, kto_tags
The script checks, and fails otherwise, that every attention mask it leaves
out (attention_mask, chosen_/rejected_attention_mask, kl_attention_mask) is
all ones, that pt's attention_mask is all ones too (it is: the tokenizer's own
mask, so it is not stored), and that a neat-packed example's
packing_params.sequence_boundaries are exactly the runs of its attention_mask
(1, 2, ... per sub-sequence, 0 for the padding, which is one more "run" at
the end) with right_padding_length the length of the 0 run; packing_params,
images, videos and audios are left out.

How the arguments are made: LLaMA-Factory's own parser,
llamafactory.hparams.get_train_args(dict) (HfArgumentParser over its
dataclasses, DataArguments.__post_init__, its checks, the packing default
`packing = packing if packing is not None else stage == "pt"` applied after
__post_init__, transformers.set_seed(42)), with do_train, finetuning_type
full, a temporary output_dir, overwrite_cache, no tokenized_path, no
streaming, preprocessing_num_workers None (single process).  So packing
given as true (or neat_packing) makes cutoff_len one less and a packed
sequence cutoff_len long (cutoff_len - 1 real tokens at most + at least one
pad), while pt's default packing keeps cutoff_len whole: pt blocks are
cutoff_len tokens.  The tokenizer is loaded as LLaMA-Factory's
llamafactory.model.load_tokenizer loads it (AutoTokenizer.from_pretrained(dir,
use_fast=True, split_special_tokens=False, padding_side="right"); that module
itself needs trl, which the goldens venv lacks), the
template from get_template_and_fix_tokenizer (a fresh copy of LLaMA-Factory's
template per configuration, as make-template-goldens.py does, with the llama3
tool prompt's date frozen at 2024-07-23), and get_dataset is called with
processor None.  The HF datasets cache and output_dir are temporary
directories, removed at the end; nothing is written under ../shared.

Configurations (pairs: llama3 template + llama3 tokenizer, qwen3 + qwen3;
for pt also llama2 + llama2, whose tokenizer has add_bos_token true):
  sft  alpaca_en_demo, identity, glaive_toolcall_en_demo, each:
       c1024; c128; c128 train_on_prompt; c128 packing; c1024 packing;
       c1024 neat_packing; and for glaive_toolcall_en_demo (multi-turn) also
       c128 mask_history (the other two are single-turn)
  rm   dpo_en_demo c1024, c128
  kto  kto_en_demo c1024, c128
  pt   c4_demo c1024 and c128 with packing left to its default (None -> true
       for pt, without the -1), c128 packing false, and c128 packing true
       (explicit: with the -1, blocks of 127)
  llama3 only: sft identity,alpaca_en_demo max_samples 50 (per dataset)
       concat c128; sft alpaca_en_demo c128 packing with
       preprocessing_batch_size 100 (packing works per batch); kto c128 with
       preprocessing_batch_size 100 (KL responses rotate per batch); sft
       alpaca_en_demo c128 val_size 0.1 (both splits; the split is
       datasets' train_test_split with seed 42, before tokenizing).
LLaMA-Factory refuses none of these (train_on_prompt is refused only for
templates with efficient_eos, and llama3/qwen3 have none); a configuration it
refused would be reported on stderr and left out of the file.

What LLaMA-Factory does here that lf must copy (see also the stderr summary):
  - pt: the text is content + eos ("<|end_of_text|>" for the llama3
    template, else tokenizer.eos_token), tokenized with
    add_special_tokens=False.  Not packed: bos_token is prepended as text when
    the tokenizer has add_bos_token (llama2; llama3's PreTrainedTokenizerFast
    and qwen3 have none), then truncated to cutoff_len.  Packed: all texts of
    a preprocessing batch are concatenated, cut into blocks of cutoff_len, the
    remainder of the batch dropped, and with add_bos_token the FIRST TOKEN OF
    EVERY BLOCK IS OVERWRITTEN with bos (replacing a real token; no bos is
    added otherwise).
  - sft packed: each example is first truncated as unpacked ones are, but to
    the reduced cutoff_len (user's - 1), so LLaMA-Factory's "dropped lengthy
    example" never fires here and no example is lost; the examples of a
    preprocessing batch are packed by greedy_knapsack (lengths sorted
    ascending, each pack takes the largest length that still fits, repeated;
    of examples with the same length the last one is taken first) and each
    pack is padded with pad_token_id (llama3: <|eot_id|> 128009, the
    template's fix sets pad = eos; qwen3: <|endoftext|> 151643) to cutoff_len + 1 (=
    the cutoff_len the user gave), always by at least one token, with
    position_ids 0 and labels -100 there and attention_mask 1 (0 with
    neat_packing, whose mask numbers the sub-sequences 1, 2, ...).
    position_ids restart at 0 for every sub-sequence.
  - sft/rm/kto drop examples with an even number of prompt messages or the
    wrong number of responses (none of these datasets has one); kto's KL
    response for example i is batch example i-1's (the batch's last for
    i = 0), taken before dropping: with preprocessing_batch_size 100 only
    examples 0, 100 and 200 differ from the default batch of 1000.
  - qwen3 is a reasoning template (enable_thinking true): an assistant reply
    without <think> gets an empty "<think>\n\n</think>\n\n" in front of it,
    inside the response (so it is trained on).  Without mask_history every
    turn's reply gets it; WITH mask_history (discarding_history_cot) only the
    last turn's does, and the reasoning of earlier replies is removed, so
    mask_history changes the earlier turns' input_ids, not only their labels.
    rm/kto (encode_oneturn) add it to the response.

transformers 4.x, as in make-token-goldens.py (transformers 5 rebuilds
LlamaTokenizer files with a different pre-tokenizer); run with
transformers 4.57.1 in front of the goldens venv:

  bash scripts/goldens/venv.sh
  ~/.cache/lf/goldens-venv/bin/pip install --no-deps --target ~/.cache/lf/goldens-tf4 \
      transformers==4.57.1 huggingface_hub==0.36.0
  PYTHONPATH=~/.cache/lf/goldens-tf4 ~/.cache/lf/goldens-venv/bin/python \
      scripts/goldens/make-pack-goldens.py [--shared ../shared]

(--only SUBSTRING --out FILE runs just the configurations whose name has
SUBSTRING, for trying things without touching the checked-in file.)

It takes about a minute on one CPU core; a line per configuration on stderr
says what LLaMA-Factory made of it (counts, cutoff_len and packing after its
parser, sequences per pack).
"""
import argparse
import atexit
import contextlib
import copy
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# Temporary HF caches before anything imports datasets/transformers.
TMP = tempfile.mkdtemp(prefix="lf-pack-goldens-")
atexit.register(shutil.rmtree, TMP, ignore_errors=True)
os.environ["HF_DATASETS_CACHE"] = os.path.join(TMP, "datasets")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DISABLE_VERSION_CHECK", "1")

# make-template-goldens.py: LLaMA-Factory's TEMPLATES, pristine copies
# (ORIGINAL), the frozen date of the llama3 tool prompt, write_gz.
spec = importlib.util.spec_from_file_location("template_goldens", os.path.join(HERE, "make-template-goldens.py"))
tg = importlib.util.module_from_spec(spec)
tempfile.tempdir = TMP  # its import makes a temporary directory: make it in ours
spec.loader.exec_module(tg)
tempfile.tempdir = None

import datasets  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

assert transformers.__version__.startswith("4."), "run with transformers 4.x (see the docstring)"

_stdout = sys.stdout
sys.stdout = sys.stderr  # llamafactory logs to stdout while importing
from llamafactory.data.loader import get_dataset  # noqa: E402
from llamafactory.data.template import get_template_and_fix_tokenizer  # noqa: E402
from llamafactory.hparams import get_train_args  # noqa: E402
sys.stdout = _stdout
datasets.disable_progress_bars()

SHORT = {"alpaca_en_demo": "alpaca", "identity": "identity", "glaive_toolcall_en_demo": "glaive",
         "dpo_en_demo": "dpo", "kto_en_demo": "kto", "c4_demo": "c4"}
PAIRS = [("llama3", "llama3"), ("qwen3", "qwen3")]
PT_PAIRS = PAIRS + [("llama2", "llama2")]
N_EXAMPLES = 2  # full examples stored per split


def cfg(stage, template, tokenizer, dataset, cutoff_len, suffix="", **kw):
    args = {"stage": stage, "template": template, "tokenizer": tokenizer, "dataset": dataset,
            "cutoff_len": cutoff_len, "packing": None, "neat_packing": False, "train_on_prompt": False,
            "mask_history": False, "preprocessing_batch_size": 1000, "max_samples": None,
            "mix_strategy": "concat", "interleave_probs": None, "val_size": 0.0}
    for k, v in kw.items():
        assert k in args, k
        args[k] = v
    short = "+".join(SHORT[d] for d in dataset.split(","))
    name = "%s-%s-%s-c%d%s" % (stage, short, template, cutoff_len, suffix)
    return name, args


def configurations():
    out = []
    for t, k in PAIRS:
        for ds in ("alpaca_en_demo", "identity", "glaive_toolcall_en_demo"):
            out.append(cfg("sft", t, k, ds, 1024))
            out.append(cfg("sft", t, k, ds, 128))
            out.append(cfg("sft", t, k, ds, 128, "-top", train_on_prompt=True))
            if ds == "glaive_toolcall_en_demo":
                out.append(cfg("sft", t, k, ds, 128, "-mh", mask_history=True))
            out.append(cfg("sft", t, k, ds, 128, "-pack", packing=True))
            out.append(cfg("sft", t, k, ds, 1024, "-pack", packing=True))
            out.append(cfg("sft", t, k, ds, 1024, "-neat", neat_packing=True))
        out.append(cfg("rm", t, k, "dpo_en_demo", 1024))
        out.append(cfg("rm", t, k, "dpo_en_demo", 128))
        out.append(cfg("kto", t, k, "kto_en_demo", 1024))
        out.append(cfg("kto", t, k, "kto_en_demo", 128))
    for t, k in PT_PAIRS:
        out.append(cfg("pt", t, k, "c4_demo", 1024))
        out.append(cfg("pt", t, k, "c4_demo", 128))
        out.append(cfg("pt", t, k, "c4_demo", 128, "-nopack", packing=False))
        out.append(cfg("pt", t, k, "c4_demo", 128, "-packtrue", packing=True))
    out.append(cfg("sft", "llama3", "llama3", "identity,alpaca_en_demo", 128, "-max50", max_samples=50))
    out.append(cfg("sft", "llama3", "llama3", "alpaca_en_demo", 128, "-pack-bs100", packing=True,
                   preprocessing_batch_size=100))
    out.append(cfg("kto", "llama3", "llama3", "kto_en_demo", 128, "-bs100", preprocessing_batch_size=100))
    out.append(cfg("sft", "llama3", "llama3", "alpaca_en_demo", 128, "-val0.1", val_size=0.1))
    # the split comes before preprocessing: packing, pt blocks and KL pairs are per split
    out.append(cfg("sft", "llama3", "llama3", "alpaca_en_demo", 128, "-pack-val0.1", packing=True, val_size=0.1))
    out.append(cfg("kto", "llama3", "llama3", "kto_en_demo", 128, "-val20", val_size=20))
    out.append(cfg("pt", "llama3", "llama3", "c4_demo", 128, "-val0.05", val_size=0.05))
    # prompts and reference answers (ppo, generation): the Unsupervised processor
    out.append(cfg("ppo", "llama3", "llama3", "alpaca_en_demo", 128))
    out.append(cfg("ppo", "qwen3", "qwen3", "glaive_toolcall_en_demo", 128))
    out.append(cfg("ppo", "falcon", "llama3", "glaive_toolcall_en_demo", 128))
    # efficient_eos templates: eos labels on later turns' first source token, eos after responses
    for t in ("falcon", "solar"):
        out.append(cfg("sft", t, "llama3", "glaive_toolcall_en_demo", 1024))
        out.append(cfg("sft", t, "llama3", "glaive_toolcall_en_demo", 128, "-mh", mask_history=True))
        out.append(cfg("sft", t, "llama3", "glaive_toolcall_en_demo", 128, "-pack", packing=True))
        out.append(cfg("rm", t, "llama3", "dpo_en_demo", 128))
        out.append(cfg("kto", t, "llama3", "kto_en_demo", 128))
    # interleave_datasets before everything
    both = "identity,alpaca_en_demo"
    out.append(cfg("sft", "llama3", "llama3", both, 128, "-under", max_samples=200, mix_strategy="interleave_under"))
    out.append(cfg("sft", "llama3", "llama3", both, 128, "-over-p37", max_samples=200,
                   mix_strategy="interleave_over", interleave_probs="0.3,0.7"))
    out.append(cfg("sft", "llama3", "llama3", both, 128, "-under-p55-val", max_samples=200,
                   mix_strategy="interleave_under", interleave_probs="0.5,0.5", val_size=0.1))
    names = [n for n, _ in out]
    assert len(names) == len(set(names))
    return out


def lf_args(args, shared, output_dir):
    """The dict a user would give llamafactory-cli train; None/False options left out."""
    d = {
        "model_name_or_path": os.path.join(shared, "tokenizers", args["tokenizer"]),
        # ppo's parser wants a reward model; its data are the sft arguments'
        # with get_dataset(stage="ppo") (LLaMA-Factory's Unsupervised processor)
        "stage": "sft" if args["stage"] == "ppo" else args["stage"], "do_train": True, "finetuning_type": "full", "output_dir": output_dir,
        "report_to": "none", "seed": 42,
        "dataset": args["dataset"], "dataset_dir": os.path.join(shared, "data"), "template": args["template"],
        "cutoff_len": args["cutoff_len"], "overwrite_cache": True,
        "preprocessing_batch_size": args["preprocessing_batch_size"], "mix_strategy": args["mix_strategy"],
        "val_size": args["val_size"],
    }
    if args.get("interleave_probs"):
        d["interleave_probs"] = args["interleave_probs"]
    if args["packing"] is not None:
        d["packing"] = args["packing"]
    for k in ("neat_packing", "train_on_prompt", "mask_history"):
        if args[k]:
            d[k] = True
    if args["max_samples"] is not None:
        d["max_samples"] = args["max_samples"]
    return d


def all_ones(xs):
    return all(x == 1 for x in xs)


def check_neat(row, where):
    mask, pp = row["attention_mask"], row["packing_params"]
    runs, start = [], 0  # (value, start, end)
    for i in range(1, len(mask) + 1):
        if i == len(mask) or mask[i] != mask[start]:
            runs.append((mask[start], start, i))
            start = i
    values = [v for v, _, _ in runs]
    pad = runs[-1][2] - runs[-1][1] if values[-1] == 0 else 0
    real = values[:-1] if pad else values
    assert real == list(range(1, len(real) + 1)), where
    assert pp["sequence_boundaries"] == [0] + [e for _, _, e in runs], where
    assert pp["right_padding_length"] == pad and pad >= 1, where


def extract(stage, packed, neat, row, where):
    """The stored example, after checking what is left out."""
    if stage == "sft":
        keys = ["input_ids", "labels"]
        if packed:
            keys += ["position_ids", "attention_mask"]
            if neat:
                check_neat(row, where)
            else:
                assert all_ones(row["attention_mask"]), where
        else:
            assert all_ones(row["attention_mask"]), where
    elif stage == "pt":
        keys = ["input_ids"]
        assert all_ones(row["attention_mask"]), where
    elif stage == "rm":
        keys = ["chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels"]
        assert all_ones(row["chosen_attention_mask"]) and all_ones(row["rejected_attention_mask"]), where
    elif stage == "ppo":
        keys = ["input_ids", "labels"]
        assert all_ones(row["attention_mask"]), where
    elif stage == "kto":
        keys = ["input_ids", "labels", "kl_input_ids", "kl_labels", "kto_tags"]
        assert all_ones(row["attention_mask"]) and all_ones(row["kl_attention_mask"]), where
    else:
        raise ValueError(stage)
    ex = {}
    for k in keys:
        v = row[k]
        if k == "kto_tags":
            assert isinstance(v, bool), where
            ex[k] = v
        else:
            assert isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v), (where, k)
            ex[k] = list(v)
    return ex


def example_hash(ex):
    text = json.dumps(ex, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def run_config(name, args, shared):
    """LLaMA-Factory's datasets for one configuration: {split: Dataset}, or raises."""
    tg.TEMPLATES[args["template"]] = copy.deepcopy(tg.ORIGINAL[args["template"]])
    output_dir = tempfile.mkdtemp(prefix="out-", dir=TMP)
    with contextlib.redirect_stdout(sys.stderr):
        model_args, data_args, training_args, finetuning_args, _ = get_train_args(lf_args(args, shared, output_dir))
    given = args["packing"]
    expect_packing = True if args["neat_packing"] else (given if given is not None else args["stage"] == "pt")
    assert data_args.packing == expect_packing, name
    assert data_args.cutoff_len == args["cutoff_len"] - (1 if args["neat_packing"] or given else 0), name
    assert data_args.preprocessing_num_workers is None and not data_args.streaming
    assert data_args.tokenized_path is None and training_args.seed == 42
    # llamafactory.model.load_tokenizer's call (that module needs trl, not in the venv); its
    # patch_tokenizer only enlarges model_max_length, which get_dataset does not use.
    tokenizer = AutoTokenizer.from_pretrained(model_args.model_name_or_path, use_fast=model_args.use_fast_tokenizer,
                                              split_special_tokens=model_args.split_special_tokens,
                                              padding_side="right")
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):  # its "training example:" dump
        module = get_dataset(template, model_args, data_args, training_args, stage=args["stage"],
                             tokenizer=tokenizer, processor=None)
    splits = {"train": module["train_dataset"]}
    if module.get("eval_dataset") is not None:
        splits["validation"] = module["eval_dataset"]
    info = {"lf_cutoff_len": data_args.cutoff_len, "lf_packing": data_args.packing}
    return splits, info


def summarize(name, args, splits, info):
    """A line for stderr: what LLaMA-Factory made of the configuration."""
    parts = ["%s: %s" % (k, len(v)) for k, v in splits.items()]
    parts.append("cutoff_len->%d packing->%s" % (info["lf_cutoff_len"], info["lf_packing"]))
    train = splits["train"]
    if args["stage"] == "sft" and info["lf_packing"]:
        # a sub-sequence starts where position_ids go 0, 1; the padding is all 0
        nseq = sum(1 for r in train for i, p in enumerate(r["position_ids"][:-1])
                   if p == 0 and r["position_ids"][i + 1] == 1)
        lens = sorted(set(len(r["input_ids"]) for r in train))
        parts.append("%d sequences packed, pack length %s" % (nseq, lens))
    if args["stage"] == "pt":
        lens = [len(r["input_ids"]) for r in train]
        parts.append("lengths %d..%d" % (min(lens), max(lens)))
    return "%s: %s" % (name, ", ".join(parts))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "golden", "pack-goldens.jsonl.gz"))
    ap.add_argument("--only", help="only configurations whose name contains this (for trying; writes --out)")
    args = ap.parse_args()
    shared = os.path.abspath(args.shared)
    t0 = time.time()
    lines = []
    refused = []
    for name, cargs in configurations():
        if args.only and args.only not in name:
            continue
        t1 = time.time()
        try:
            splits, info = run_config(name, cargs, shared)
        except ValueError as e:  # LLaMA-Factory refuses the configuration
            refused.append("%s: %s" % (name, e))
            print("%s: REFUSED by LLaMA-Factory: %s" % (name, e), file=sys.stderr)
            continue
        stage = cargs["stage"]
        packed = bool(info["lf_packing"])
        columns = sorted(splits["train"].column_names)
        for ds in splits.values():
            assert sorted(ds.column_names) == columns
        lines.append({"config": name, "args": cargs, "counts": {k: len(v) for k, v in splits.items()},
                      "columns": columns})
        for split, ds in splits.items():
            for i, row in enumerate(ds):
                ex = extract(stage, packed, cargs["neat_packing"], row, (name, split, i))
                line = {"config": name, "split": split, "index": i, "hash": example_hash(ex)}
                if i < N_EXAMPLES:
                    line["example"] = ex
                lines.append(line)
        print("%s  [%.1fs]" % (summarize(name, cargs, splits, info), time.time() - t1), file=sys.stderr)
    text = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
    tg.write_gz(args.out, text)
    print("%s: %d lines, %d bytes gzip'd; %d configurations refused; %.0fs" % (
        args.out, len(lines), os.path.getsize(args.out), len(refused), time.time() - t0), file=sys.stderr)


if __name__ == "__main__":
    main()
