#!/usr/bin/env python3
"""libcommon/nprandom against numpy and datasets (TAP-style), through
tests/helpers/nprandom-dump.

1. numpy live (numpy.random.default_rng): raw next_uint64 / next_uint32
   streams and their interleaving (the buffered half of a 64-bit draw), seeds
   from 0 to 2**64-1 and larger ones given as 32-bit words, random(),
   permutation(n) for n up to 10**6, choice(k, size, p) and its errors.
2. datasets' train_test_split and map-style interleave_datasets, written
   here with numpy the way datasets 4.0.0 computes them (and, for
   all_exhausted_without_replacement, datasets 4.3 and later), on many
   random cases.
3. The golden tests/golden/hf-split-interleave.json, made once by the real
   datasets 4.0.0 and LLaMA-Factory 0.9.5 (scripts/goldens/make-split-goldens.py).
"""
import hashlib
import json
import os
import random
import subprocess
import sys

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
UNITS = os.environ.get("LF_UNITS", os.path.join(ROOT, "build", "dyn", "tests"))
DUMP = os.path.join(UNITS, "helpers", "nprandom-dump")
GOLDEN = os.path.join(ROOT, "tests", "golden", "hf-split-interleave.json")

SEEDS = [0, 1, 42, 2**32 - 1, 2**32 + 5, 2**63, 2**64 - 1]
BIG_SEEDS = [2**64, 2**96 + 3, 2**128 + 7, 2**200 + 12345, 3**200]  # given as words

failures = 0


def report(good, name, detail=()):
    global failures
    print(("ok - " if good else "not ok - ") + name)
    if not good:
        failures += 1
        for d in detail:
            print("#   " + str(d)[:400])


def dump(*args):
    """Run the helper: (stdout lines, None) or (None, error message)."""
    out = subprocess.run([DUMP] + [str(a) for a in args], capture_output=True, text=True)
    if out.returncode != 0:
        err = out.stderr.strip()
        prefix = "nprandom-dump: error: "
        return None, err[len(prefix):] if err.startswith(prefix) else err
    return out.stdout.split("\n")[:-1], None


def seed_arg(seed):
    if seed < 2**64:
        return str(seed)
    words = []
    while seed:
        words.append(seed & 0xFFFFFFFF)
        seed >>= 32
    return "w:" + ",".join(map(str, words))


def ints(line):
    return [int(t) for t in line.split()]


def first_diff(got, want):
    for i, (g, w) in enumerate(zip(got, want)):
        if g != w:
            return ["first difference at %d: lf %r, numpy %r" % (i, g, w)]
    return ["lengths differ: lf %d, numpy %d" % (len(got), len(want))]


def compare(name, got, want, err=None):
    if got is None:
        report(False, name, [err])
    else:
        report(got == want, name, [] if got == want else first_diff(got, want))


def pack(tokens):
    """As make-split-goldens.py: the text, or its sha256 when long."""
    text = " ".join(tokens)
    return text if len(text) <= 4000 else "sha256:" + hashlib.sha256(text.encode()).hexdigest()


# ---- 1. numpy ----

def raw_calls(bg, ops):
    """The draws ops ('a' next_uint32, 'b' next_uint64, 'd' random) make through
    the bit generator's own C functions."""
    c = bg.ctypes
    out = []
    for op in ops:
        if op == "a":
            out.append(int(c.next_uint32(c.state)))
        elif op == "b":
            out.append(int(c.next_uint64(c.state)))
        else:
            out.append(float(c.next_double(c.state)))
    return out


def check_streams():
    for seed in SEEDS + BIG_SEEDS:
        s = seed_arg(seed)
        lines, err = dump("u64", s, 3000)
        want = [int(v) for v in np.random.default_rng(seed).bit_generator.random_raw(3000)]
        compare("next_uint64 stream, seed %d" % seed, lines and ints(lines[0]), want, err)

        lines, err = dump("u32", s, 3001)
        want = raw_calls(np.random.default_rng(seed).bit_generator, "a" * 3001)
        compare("next_uint32 stream, seed %d" % seed, lines and ints(lines[0]), want, err)

        lines, err = dump("random", s, 3000)
        want = np.random.default_rng(seed).random(3000).tolist()
        compare("random() stream, seed %d" % seed, lines and [float(t) for t in lines[0].split()], want, err)

    rnd = random.Random(5)
    for seed in [0, 42, 2**63]:
        for trial in range(4):
            ops = "".join(rnd.choice("aab" if trial % 2 else "abd") for _ in range(500))
            lines, err = dump("mixed", seed, ops)
            got = lines and [float(t) if op == "d" else int(t) for op, t in zip(ops, lines[0].split())]
            want = raw_calls(np.random.default_rng(seed).bit_generator, ops)
            compare("mixed 32/64-bit draws (buffered half), seed %d, pattern %d" % (seed, trial), got, want, err)


def check_interval():
    # random_interval is numpy-internal; max < 2**32 is covered by the
    # permutations, this checks the 64-bit branch by its definition on raw draws
    for seed in [0, 42]:
        for mx in [2**32, 2**40 + 12345, 2**63 + 1, 2**64 - 1]:
            lines, err = dump("interval", seed, mx, 200)
            bg = np.random.default_rng(seed).bit_generator
            mask = (1 << mx.bit_length()) - 1
            want = []
            while len(want) < 200:
                v = int(bg.random_raw()) & mask
                if v <= mx:
                    want.append(v)
            compare("random_interval(%d), seed %d (rejection on next_uint64)" % (mx, seed),
                    lines and ints(lines[0]), want, err)


def check_permutations():
    for seed in [0, 42, 2**32 + 5, 2**63, 2**64 - 1, 2**128 + 7]:
        for n in [0, 1, 2, 3, 10, 17, 1000, 65537, 10**6]:
            if seed >= 2**64 and n > 1000:
                continue
            lines, err = dump("perm", seed_arg(seed), n)
            want = np.random.default_rng(seed).permutation(n).tolist()
            compare("permutation(%d), seed %d" % (n, seed), lines and ints(lines[0]), want, err)
    # shuffle of a 1-d array is the same draws
    arr = np.arange(5000)
    np.random.default_rng(7).shuffle(arr)
    lines, err = dump("perm", 7, 5000)
    compare("shuffle(arange(5000)) equals permutation(5000), seed 7", lines and ints(lines[0]), arr.tolist(), err)


def check_choice():
    ps = [
        [0.5, 0.5],
        [0.7, 0.2, 0.1],
        [0.1] * 10,
        [0.0, 0.3, 0.0, 0.7],
        [1.0],
        [1 / 3, 1 / 3, 1 / 3],
        [0.25, 0.25, 0.25, 0.25 + 1e-9],  # within numpy's tolerance
        [1e-300, 1 - 1e-300],
        [0.9999999, 1e-7],
        [0.0, 0.0, 1.0],
    ]
    rnd = random.Random(11)
    for _ in range(10):
        k = rnd.randint(1, 40)
        w = [rnd.random() ** 3 for _ in range(k)]
        ps.append([x / sum(w) for x in w])
    for seed in [0, 42, 2**63]:
        for p in ps:
            lines, err = dump("choice", seed, 5000, ",".join(repr(x) for x in p))
            want = np.random.default_rng(seed).choice(len(p), size=5000, p=p).tolist()
            compare("choice(%d, 5000, p=%s), seed %d" % (len(p), ("%r" % p)[:60], seed),
                    lines and ints(lines[0]), want, err)
    for p in [[0.5, 0.6], [-0.1, 1.1], [float("nan"), 1.0], [0.5, 0.5 - 1e-7], [float("inf"), 1.0]]:
        _, err = dump("choice", 42, 10, ",".join(repr(x) for x in p))
        try:
            np.random.default_rng(42).choice(len(p), size=10, p=p)
            want = None
        except ValueError as e:
            want = str(e)
        report(err == want, "choice error for p=%r" % (p,), ["lf %r" % err, "numpy %r" % want])


# ---- 2. datasets, re-done with numpy ----

def py_train_test_split(n, test_size, seed):
    """datasets 4.0.0 Dataset.train_test_split(test_size=..., seed=...)."""
    from math import ceil
    if n == 0:
        return [], []
    if (isinstance(test_size, int) and (test_size >= n or test_size <= 0)
            or isinstance(test_size, float) and (test_size <= 0 or test_size >= 1)):
        raise ValueError("test_size=%s should be either positive and smaller than the number of samples %d or a "
                         "float in the (0, 1) range" % (test_size, n))
    n_test = ceil(test_size * n) if isinstance(test_size, float) else test_size
    n_train = n - n_test
    if n_train == 0:
        raise ValueError("With n_samples=%d, test_size=%s and train_size=None, the resulting train set will be "
                         "empty. Adjust any of the aforementioned parameters." % (n, test_size))
    perm = np.random.default_rng(seed).permutation(n)
    return perm[:n_test].tolist(), perm[n_test:n_test + n_train].tolist()


def py_interleave(lengths, probabilities, seed, strategy):
    """datasets' _interleave_map_style_datasets, as (dataset, row) pairs:
    4.0.0 for first_exhausted / all_exhausted, 4.3+ for
    all_exhausted_without_replacement."""
    offsets = np.cumsum([0] + lengths[:-1])
    oversampling = strategy == "all_exhausted"
    if probabilities is None and strategy == "all_exhausted_without_replacement":
        indices = [int(offsets[i]) + r for r in range(max(lengths)) for i in range(len(lengths)) if lengths[i] > r]
    elif probabilities is None and not oversampling:
        indices = (offsets.reshape(1, -1) + np.arange(min(lengths)).reshape(-1, 1)).flatten().tolist()
    elif probabilities is None:
        with np.errstate(divide="ignore"):
            idx = np.mod(np.arange(max(lengths)).reshape(-1, 1), np.array(lengths).reshape(1, -1))
        indices = (idx + offsets).flatten().tolist()
    else:
        is_exhausted = np.full(len(lengths), False)
        stop = np.all if strategy != "first_exhausted" else np.any
        rng = np.random.default_rng(seed)
        current = [0] * len(lengths)
        indices = []
        while not stop(is_exhausted):
            for s in (int(i) for i in rng.choice(len(lengths), size=1000, p=probabilities)):
                if stop(is_exhausted):
                    break
                if strategy != "all_exhausted_without_replacement" or not is_exhausted[s]:
                    indices.append(current[s] + int(offsets[s]))
                    current[s] += 1
                if current[s] >= lengths[s]:
                    is_exhausted[s] = True
                    if strategy != "all_exhausted_without_replacement":
                        current[s] = 0
    total = sum(lengths)
    for g in indices:
        if g >= total:
            raise IndexError("Index %d out of range for dataset of size %d." % (g, total))
    # the concatenation's (dataset, row) of each index
    pairs = []
    for g in indices:
        d = int(np.searchsorted(np.cumsum(lengths), g, side="right"))
        pairs.append("%d:%d" % (d, g - int(offsets[d])))
    return pairs


def check_datasets_live():
    rnd = random.Random(2024)
    cases = [(1000, 0.1, 42), (1000, 50, 42), (999, 0.1, 42), (10**6, 0.01, 42), (5, 0.5, 3)]
    for _ in range(60):
        n = rnd.choice([2, 3, 10, 99, 1000, 4321])
        ts = rnd.choice([rnd.random(), round(rnd.random(), 2), rnd.randint(1, n - 1), 0.999, 1e-5])
        cases.append((n, ts, rnd.choice([0, 42, rnd.randrange(2**64)])))
    bad = []
    for n, ts, seed in cases:
        try:
            want = py_train_test_split(n, ts, seed)
        except ValueError as e:
            want = str(e)
        lines, err = dump("split", n, repr(ts), seed)
        got = err if lines is None else (ints(lines[0]), ints(lines[1]))
        if got != want:
            bad.append("n=%d test_size=%r seed=%d: lf %s / numpy %s" % (n, ts, seed, str(got)[:120], str(want)[:120]))
    report(not bad, "train_test_split, %d cases, against a numpy rendering of datasets' code" % len(cases), bad[:5])

    bad = []
    ncases = 0
    for _ in range(150):
        k = rnd.randint(1, 5)
        lengths = [rnd.choice([1, 2, 3, 7, 20, 100, 1500]) for _ in range(k)]
        if rnd.random() < 0.1:
            lengths[rnd.randrange(k)] = 0
        probs = None
        if rnd.random() < 0.8:
            w = [rnd.random() + 0.05 for _ in range(k)]
            probs = [x / sum(w) for x in w]
        seed = rnd.choice([0, 42, rnd.randrange(2**64)])
        for strategy in ["first_exhausted", "all_exhausted", "all_exhausted_without_replacement"]:
            ncases += 1
            try:
                want = " ".join(py_interleave(lengths, probs, seed, strategy))
            except (ValueError, IndexError) as e:
                want = str(e)
            args = ["interleave", seed, strategy, ",".join(map(str, lengths))]
            if probs:
                args.append(",".join(repr(x) for x in probs))
            lines, err = dump(*args)
            got = err if lines is None else lines[0]
            if got != want:
                bad.append("%r %r %d %s: lf %s / numpy %s" % (lengths, probs, seed, strategy, got[:100], want[:100]))
    report(not bad, "interleave_datasets, %d cases, against a numpy rendering of datasets' code" % ncases, bad[:5])

    # a strategy that needs every dataset to run out, with one never drawn
    _, err = dump("interleave", 42, "all_exhausted", "3,4", "1.0,0.0")
    report(err is not None and "never" in err, "all_exhausted with a zero probability fails instead of looping",
           [err])


# ---- 3. the golden from datasets 4.0.0 and LLaMA-Factory ----

def check_golden():
    with open(GOLDEN) as f:
        g = json.load(f)
    bad = []
    for c in g["split"]:
        lines, err = dump("split", c["n"], repr(c["test_size"]), c["seed"])
        if "error" in c:
            ok = err == c["error"]
        else:
            ok = lines is not None and pack(lines[0].split()) == c["test"] and pack(lines[1].split()) == c["train"]
        if not ok:
            bad.append("n=%d test_size=%r seed=%d: lf %s" % (c["n"], c["test_size"], c["seed"],
                                                              err or (lines[0][:60], lines[1][:60])))
    report(not bad, "train_test_split matches datasets %s (%d goldens)" % (g["datasets"], len(g["split"])), bad[:5])

    bad = []
    refused = newer = 0
    for c in g["interleave"]:
        want_picks, want_err = c.get("picks"), c.get("error")
        if c["strategy"] == "all_exhausted_without_replacement":
            # datasets 4.0.0 refuses it; lf follows later datasets
            refused += want_err is not None and "not supported" in want_err
            if "newer_picks" not in c and "newer_error" not in c:
                continue
            newer += 1
            want_picks, want_err = c.get("newer_picks"), c.get("newer_error")
        args = ["interleave", c["seed"], c["strategy"], ",".join(map(str, c["lengths"]))]
        if c["probabilities"]:
            args.append(",".join(repr(x) for x in c["probabilities"]))
        lines, err = dump(*args)
        got_picks = None if lines is None else pack(lines[0].split())
        if (got_picks, err) != (want_picks, want_err):
            bad.append("%r %r seed %d %s: lf %s / datasets %s" % (c["lengths"], c["probabilities"], c["seed"],
                                                                   c["strategy"], (got_picks or err)[:80],
                                                                   (want_picks or want_err)[:80]))
    report(not bad, "interleave_datasets matches datasets %s (%d goldens, %d of them with %s)"
           % (g["datasets"], len(g["interleave"]) - refused + newer, newer, g["newer"]), bad[:5])
    report(refused == sum(c["strategy"] == "all_exhausted_without_replacement" for c in g["interleave"]),
           "datasets %s refuses all_exhausted_without_replacement in every golden" % g["datasets"])

    bad = []
    strategies = {"interleave_under": "first_exhausted", "interleave_over": "all_exhausted",
                  "interleave_once": "all_exhausted_without_replacement"}
    for c in g["llamafactory"]:
        if c["what"] == "split":
            vs = c["val_size"]
            ts = int(vs) if vs > 1 else vs  # LLaMA-Factory's split_dataset
            lines, err = dump("split", c["n"], repr(ts), c["seed"])
            ok = lines is not None and pack(lines[0].split()) == c["test"] and pack(lines[1].split()) == c["train"]
        else:
            if "error" in c:  # interleave_once under datasets 4.0.0
                ok = "not supported" in c["error"] and c["mix_strategy"] == "interleave_once"
            else:
                args = ["interleave", c["seed"], strategies[c["mix_strategy"]], ",".join(map(str, c["lengths"]))]
                if c["interleave_probs"]:
                    args.append(",".join(repr(x) for x in c["interleave_probs"]))
                lines, err = dump(*args)
                ok = lines is not None and pack(lines[0].split()) == c["picks"]
        if not ok:
            bad.append(repr(c)[:200])
    report(not bad, "LLaMA-Factory's split_dataset and merge_dataset (%d goldens)" % len(g["llamafactory"]), bad[:5])


def main():
    if not os.access(DUMP, os.X_OK):
        report(False, "%s is built (run make)" % DUMP)
        return 1
    check_streams()
    check_interval()
    check_permutations()
    check_choice()
    check_datasets_live()
    check_golden()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
