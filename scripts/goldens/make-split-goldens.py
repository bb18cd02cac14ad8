#!/usr/bin/env python3
"""Rows that Hugging Face `datasets` 4.0.0 itself selects, for libcommon/
nprandom to match: Dataset.train_test_split(test_size, seed) and
interleave_datasets(datasets, probabilities, seed, stopping_strategy) on
small in-memory tables (Dataset.from_dict with the dataset number and the row
number as columns), plus a few runs of LLaMA-Factory 0.9.5's own
split_dataset / merge_dataset (val_size, mix_strategy interleave_*).

datasets 4.0.0 (the newest LLaMA-Factory 0.9.5 allows) has no
"all_exhausted_without_replacement": its interleave_datasets raises, and the
golden records that error.  lf computes that strategy as datasets 4.3 and
later do; with --newer DIR (a directory holding a later datasets, e.g.
  ~/.cache/lf/goldens-venv/bin/pip install --no-deps --target ~/.cache/lf/datasets-new datasets==4.8.5)
the same cases are also run there and recorded as "newer".

Output (checked in, compared by tests/tools/nprandom.py):
  tests/golden/hf-split-interleave.json
    {"datasets": "4.0.0", "numpy": ..., "newer": version or null,
     "split": [{"n", "test_size", "seed", "test", "train"} or {..., "error"}],
     "interleave": [{"lengths", "probabilities", "seed", "strategy",
                     "picks"} or {..., "error"}, optional "newer_picks" /
                     "newer_error"],
     "llamafactory": [{"what": "split", "n", "val_size", "seed", "test", "train"},
                      {"what": "merge", "lengths", "mix_strategy",
                       "interleave_probs", "seed", "picks" or "error"}]}
  Row lists are space-separated decimals; picks are "DATASET:ROW" tokens,
  space-separated (what tests/helpers/nprandom-dump prints).  Lists longer
  than 4000 characters are replaced by "sha256:" and the hex digest of that
  text.

Usage:
  ~/.cache/lf/goldens-venv/bin/python scripts/goldens/make-split-goldens.py [--newer DIR]
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "tests", "golden", "hf-split-interleave.json")

SPLITS = [
    # (n_rows, test_size, seed): floats are fractions, ints row counts
    (1000, 0.1, 42),  # LLaMA-Factory's val_size 0.1 with its default seed
    (1000, 0.1, 0),
    (1000, 0.1, 2**32 + 5),
    (1000, 0.1, 2**63),
    (1000, 0.1, 2**64 - 1),
    (1000, 50, 42),
    (10, 0.25, 42),
    (10, 0.3, 7),
    (7, 3, 42),
    (2, 0.5, 42),
    (2, 1, 42),
    (3, 0.01, 1),
    (101, 0.333, 42),
    (65539, 0.01, 42),  # n > 2**16: a wider rejection mask
    (12345, 0.2, 12345),
    (0, 0.1, 42),  # empty: two empty splits, no checks
    (1, 0.5, 42),  # empty train split
    (10, 0.95, 42),  # ceil(9.5) = 10: empty train split
    (10, 1.0, 42),
    (10, 0.0, 42),
    (10, 10, 42),
    (10, 0, 42),
]

STRATEGIES = ["first_exhausted", "all_exhausted", "all_exhausted_without_replacement"]

INTERLEAVES = [
    # (lengths, probabilities or None, seed)
    ([3, 4, 5], None, 42),
    ([3, 4, 3], None, 42),
    ([10, 1, 7], None, 42),
    ([5], None, 42),
    ([3, 0, 4], None, 42),
    ([3, 4, 5], [0.5, 0.25, 0.25], 42),
    ([3, 4, 5], [0.7, 0.2, 0.1], 0),
    ([10, 1, 7], [0.1, 0.1, 0.8], 42),
    ([10, 1, 7], [1 / 3, 1 / 3, 1 / 3], 2**32 + 5),
    ([1000, 300], [0.9, 0.1], 42),
    ([300, 1000], [0.5, 0.5], 2**63),
    ([50, 50, 50, 50], [0.25, 0.25, 0.25, 0.25], 42),
    ([20, 30, 40], [0.2, 0.0, 0.8], 42),  # a dataset never drawn (first_exhausted only)
    ([5], [1.0], 42),
    ([3, 0, 4], [0.3, 0.3, 0.4], 42),  # an empty dataset drawn: next dataset's row 0
    ([3, 4, 0], [0.3, 0.3, 0.4], 42),  # ... or past the end: IndexError
    ([2, 3], [0.5, 0.6], 42),  # probabilities do not sum to 1
    ([1500, 2500], [0.4, 0.6], 7),  # more than one chunk of 1000 draws
]

MERGES = [
    # LLaMA-Factory merge_dataset: (lengths, mix_strategy, interleave_probs, seed)
    ([3, 4, 5], "interleave_under", None, 42),
    ([3, 4, 5], "interleave_over", None, 42),
    ([3, 4, 5], "interleave_once", None, 42),
    ([30, 40], "interleave_under", [0.3, 0.7], 42),
    ([30, 40], "interleave_over", [0.3, 0.7], 42),
    ([30, 40], "interleave_once", [0.3, 0.7], 42),
]


def pack(tokens):
    text = " ".join(tokens)
    return text if len(text) <= 4000 else "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def table(i, n):
    from datasets import Dataset
    return Dataset.from_dict({"ds": [i] * n, "row": list(range(n))})


def picks_of(ds):
    return pack("%d:%d" % (d, r) for d, r in zip(list(ds["ds"]), list(ds["row"])))


def run_interleaves(cases):
    """[(lengths, probs, seed, strategy)] -> [{"picks"} or {"error"}] with the datasets imported here."""
    from datasets import interleave_datasets
    out = []
    for lengths, probs, seed, strategy in cases:
        try:
            ds = interleave_datasets([table(i, n) for i, n in enumerate(lengths)], probabilities=probs,
                                     seed=seed, stopping_strategy=strategy)
            out.append({"picks": picks_of(ds)})
        except Exception as e:  # noqa: BLE001 - the error is the golden
            out.append({"error": str(e)})
    return out


def child_main():
    """--child: run interleave cases from stdin with whatever datasets is importable."""
    import datasets
    cases = json.load(sys.stdin)
    json.dump({"version": datasets.__version__, "results": run_interleaves(cases)}, sys.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--newer", help="directory with a later datasets (for all_exhausted_without_replacement)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child_main()
    warnings.simplefilter("ignore")
    import datasets
    import numpy
    assert datasets.__version__ == "4.0.0", "run with datasets 4.0.0 (the goldens venv)"

    golden = {"datasets": datasets.__version__, "numpy": numpy.__version__, "newer": None,
              "split": [], "interleave": [], "llamafactory": []}

    for n, test_size, seed in SPLITS:
        case = {"n": n, "test_size": test_size, "seed": seed}
        try:
            parts = table(0, n).train_test_split(test_size=test_size, seed=seed)
            case["test"] = pack(str(r) for r in parts["test"]["row"])
            case["train"] = pack(str(r) for r in parts["train"]["row"])
        except ValueError as e:
            case["error"] = str(e)
        golden["split"].append(case)

    cases = [(lengths, probs, seed, strategy) for lengths, probs, seed in INTERLEAVES for strategy in STRATEGIES
             if not (probs and 0.0 in probs and strategy != "first_exhausted")]  # those would never stop
    for (lengths, probs, seed, strategy), res in zip(cases, run_interleaves(cases)):
        golden["interleave"].append(dict({"lengths": lengths, "probabilities": probs, "seed": seed,
                                          "strategy": strategy}, **res))

    if args.newer:
        wr = [c for c in cases if c[3] == "all_exhausted_without_replacement"]
        env = dict(os.environ, PYTHONPATH=os.path.abspath(args.newer))
        got = subprocess.run([sys.executable, os.path.abspath(__file__), "--child"], input=json.dumps(wr),
                             capture_output=True, text=True, env=env, check=True)
        newer = json.loads(got.stdout)
        golden["newer"] = newer["version"]
        at = {json.dumps(c): r for c, r in zip(wr, newer["results"])}
        for case in golden["interleave"]:
            key = json.dumps([case["lengths"], case["probabilities"], case["seed"], case["strategy"]])
            for k, v in at.get(key, {}).items():
                case["newer_" + k] = v

    from types import SimpleNamespace
    from llamafactory.data.data_utils import merge_dataset, split_dataset
    for n, val_size, seed in [(1000, 0.1, 42), (1000, 50.0, 42), (200, 0.05, 1234)]:
        train, evals = split_dataset(table(0, n), None, SimpleNamespace(val_size=val_size, streaming=False), seed)
        golden["llamafactory"].append({"what": "split", "n": n, "val_size": val_size, "seed": seed,
                                       "test": pack(str(r) for r in evals["validation"]["row"]),
                                       "train": pack(str(r) for r in train["train"]["row"])})
    for lengths, mix, probs, seed in MERGES:
        case = {"what": "merge", "lengths": lengths, "mix_strategy": mix, "interleave_probs": probs, "seed": seed}
        data_args = SimpleNamespace(mix_strategy=mix, interleave_probs=probs, streaming=False)
        try:
            case["picks"] = picks_of(merge_dataset([table(i, n) for i, n in enumerate(lengths)], data_args, seed))
        except ValueError as e:
            case["error"] = str(e)
        golden["llamafactory"].append(case)

    with open(OUT, "w") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")
    print("wrote %s (%d splits, %d interleaves, %d LLaMA-Factory runs)"
          % (OUT, len(golden["split"]), len(golden["interleave"]), len(golden["llamafactory"])))


if __name__ == "__main__":
    main()
