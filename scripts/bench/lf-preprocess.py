#!/usr/bin/env python3
r"""LLaMA-Factory 0.9.5's own preprocessing of one dataset, timed: the peer of
`lf-template | lf-tokenize | lf-pack` in scripts/bench/pipeline.sh.

It calls llamafactory.data.loader.get_dataset as
scripts/goldens/make-pack-goldens.py does (arguments from LLaMA-Factory's own
parser, llamafactory.hparams.get_train_args; the tokenizer loaded as
llamafactory.model.load_tokenizer loads it; the template from
get_template_and_fix_tokenizer; processor None; a temporary output_dir and
HF datasets cache, overwrite_cache), except that preprocessing_num_workers is
--workers (pipeline.sh passes nproc: lf-tokenize's thread count), so loading
the JSON, converting and tokenizing run in that many processes.

Timed separately:
  import_s  importing llamafactory, transformers, datasets, torch (what any
            LLaMA-Factory run pays before it touches data)
  run_s     get_train_args, loading the tokenizer and template, get_dataset
            (load_dataset into Arrow, align/convert, tokenize, truncate,
            labels, packing), i.e. all the work on the data
Memory:
  main_rss_mb     the main process's peak RSS (VmHWM)
  worker_rss_mb   the largest peak RSS of a worker process (RUSAGE_CHILDREN)
  tree_pss_mb     the peak of main + workers' summed PSS (shared pages split
                  between the processes that share them), sampled every 0.2 s

Writes one JSON object to --result.  Run with transformers 4.x in front of the
goldens venv (see make-token-goldens.py's docstring):

  PYTHONPATH=~/.cache/lf/goldens-tf4 ~/.cache/lf/goldens-venv/bin/python \
      scripts/bench/lf-preprocess.py --dataset-dir DIR --dataset NAME --stage sft \
      --tokenizer ../shared/tokenizers/llama3 --cutoff-len 1024 [--packing] \
      --workers 2 --result out.json
"""
import time

T_START = time.time()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--dataset-dir", required=True)
ap.add_argument("--dataset", required=True)
ap.add_argument("--stage", required=True, choices=["pt", "sft", "rm", "kto"])
ap.add_argument("--tokenizer", required=True, help="model folder (LLaMA-Factory's model_name_or_path)")
ap.add_argument("--template", default="llama3")
ap.add_argument("--cutoff-len", type=int, default=1024)
ap.add_argument("--packing", action="store_true", help="packing: true (else LLaMA-Factory's default)")
ap.add_argument("--workers", type=int, default=os.cpu_count())
ap.add_argument("--result", required=True)
args = ap.parse_args()

# Temporary HF caches before anything imports datasets/transformers.
TMP = tempfile.mkdtemp(prefix="lf-bench-peer-")
os.environ["HF_DATASETS_CACHE"] = os.path.join(TMP, "datasets")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DISABLE_VERSION_CHECK", "1")

try:
    import datasets  # noqa: E402
    import transformers  # noqa: E402
    from transformers import AutoTokenizer  # noqa: E402

    assert transformers.__version__.startswith("4."), "run with transformers 4.x (see the docstring)"
    with contextlib.redirect_stdout(sys.stderr):  # llamafactory logs to stdout while importing
        from llamafactory.data.loader import get_dataset  # noqa: E402
        from llamafactory.data.template import get_template_and_fix_tokenizer  # noqa: E402
        from llamafactory.hparams import get_train_args  # noqa: E402
    datasets.disable_progress_bars()
    T_IMPORTED = time.time()

    def pss_kb(pid):
        try:
            with open("/proc/%d/smaps_rollup" % pid) as f:
                for line in f:
                    if line.startswith("Pss:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def descendants(root):
        kids = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open("/proc/%s/stat" % d) as f:
                        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                    kids.setdefault(ppid, []).append(int(d))
                except (OSError, ValueError, IndexError):
                    pass
        out, todo = [], [root]
        while todo:
            p = todo.pop()
            out.append(p)
            todo.extend(kids.get(p, []))
        return out

    peak_tree_kb = 0
    stop = threading.Event()

    def sample():
        global peak_tree_kb
        me = os.getpid()
        while not stop.wait(0.2):
            peak_tree_kb = max(peak_tree_kb, sum(pss_kb(p) for p in descendants(me)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()

    t0 = time.time()
    output_dir = os.path.join(TMP, "out")
    d = {
        "model_name_or_path": os.path.abspath(args.tokenizer), "stage": args.stage, "do_train": True,
        "finetuning_type": "full", "output_dir": output_dir, "report_to": "none", "seed": 42,
        "dataset": args.dataset, "dataset_dir": os.path.abspath(args.dataset_dir), "template": args.template,
        "cutoff_len": args.cutoff_len, "overwrite_cache": True, "preprocessing_num_workers": args.workers,
    }
    if args.packing:
        d["packing"] = True
    with contextlib.redirect_stdout(sys.stderr):
        model_args, data_args, training_args, finetuning_args, _ = get_train_args(d)
    assert data_args.preprocessing_num_workers == args.workers and not data_args.streaming
    tokenizer = AutoTokenizer.from_pretrained(model_args.model_name_or_path, use_fast=model_args.use_fast_tokenizer,
                                              split_special_tokens=model_args.split_special_tokens,
                                              padding_side="right")
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):  # its "training example:" dump
        module = get_dataset(template, model_args, data_args, training_args, stage=finetuning_args.stage,
                             tokenizer=tokenizer, processor=None)
    n = len(module["train_dataset"])
    t1 = time.time()
    stop.set()
    sampler.join()
    peak_tree_kb = max(peak_tree_kb, pss_kb(os.getpid()))
    with open("/proc/self/status") as f:
        hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    result = {
        "count": n, "import_s": T_IMPORTED - T_START, "run_s": t1 - t0,
        "main_rss_mb": hwm / 1024, "worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "tree_pss_mb": peak_tree_kb / 1024, "cutoff_len": data_args.cutoff_len, "packing": data_args.packing,
        "workers": args.workers,
    }
    with open(args.result, "w") as f:
        json.dump(result, f)
finally:
    shutil.rmtree(TMP, ignore_errors=True)
