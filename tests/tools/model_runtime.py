#!/usr/bin/env python3
"""The model runtime end to end without an outside oracle (model_goldens.py
compares with transformers): lf-init makes a tiny model of every
architecture, whose files the runtime reads back; lf-generate's greedy
answers, computed with the KV cache one token at a time, equal the argmax of
lf-eval's full forward over the growing sequence, bare and through LoRA
adapters that lf-train made (DoRA, phi3's fused projections, mixtral's
experts); lf-eval's perplexity over
lf-pack shards equals the loss computed from its logits; bad model folders
(a missing tensor, a wrong shape, an unknown model_type, a truncated file)
give one clear error line.
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np
from safetensors.numpy import load_file, save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("LF_BIN", os.path.join(ROOT, "bin"))
DATA = os.environ.get("LF_SHARED_DATA") or os.path.join(ROOT, "..", "shared", "data")
ARCHS = ["llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "mixtral"]
failed = 0


def report(ok, what, detail=""):
    global failed
    print(("ok - " if ok else "not ok - ") + what + ("" if ok or not detail else ": " + detail))
    failed += 0 if ok else 1


def run(*args, **kw):
    return subprocess.run([os.path.join(BIN, args[0])] + list(args[1:]), capture_output=True, text=True, **kw)


def logits_of(model, seqs, tmp, adapter=None):
    path = os.path.join(tmp, "ids.jsonl")
    with open(path, "w") as f:
        for s in seqs:
            f.write(json.dumps({"ids": s}) + "\n")
    out = os.path.join(tmp, "out.safetensors")
    extra = ["--adapter-name-or-path", adapter] if adapter else []
    r = run("lf-eval", "-m", model, "--task", "logits", "--input", path, "-o", out, *extra)
    if r.returncode:
        raise RuntimeError(r.stderr)
    got = load_file(out)
    return [got["logits.%d" % i] for i in range(len(seqs))]


def greedy_mismatch(model, stream, tmp, adapter=None):
    """lf-generate's greedy answers (the KV cache, one token at a time, the
    last layer narrowed to the last tokens) against the argmax of lf-eval's
    full forwards over the growing sequence: None when they agree, else
    what differs."""
    extra = ["--adapter-name-or-path", adapter] if adapter else []
    r = run("lf-generate", "-m", model, "--do-sample=false", "--max-new-tokens", "10", stream, *extra)
    prompts = [json.loads(l)["prompt_ids"] for l in run("lf-inspect", stream).stdout.splitlines()]
    if r.returncode or len(r.stdout.splitlines()) != len(prompts):
        return "lf-generate: " + r.stderr.strip()
    # the generated ids, from the tokenizer: re-encode is ambiguous, so
    # rebuild the greedy chain from full forwards and compare texts
    for prompt, line in zip(prompts, r.stdout.splitlines()):
        seq = list(prompt)
        for _ in range(10):
            nxt = int(logits_of(model, [seq], tmp, adapter)[0][-1].argmax())
            if nxt in (256, 258):  # <|endoftext|>, <|im_end|>: stop ids of the model and template
                break
            seq.append(nxt)
        dec = run("lf-tokenize", "--tokenizer", model, "--decode", "--skip-special",
                  input=json.dumps({"ids": seq[len(prompt):]}) + "\n")
        want = json.loads(dec.stdout)["text"]
        got = json.loads(line)["predict"]
        if got != want:
            return "cached %r, full forward %r" % (got, want)
    return None


def train_adapter(model, arch, tmp, extra):
    """A LoRA adapter on every linear layer, 3 steps of lf-train at a high
    learning rate on identity: (its folder, None), or (None, the error)."""
    shard, out = os.path.join(tmp, arch + "-sft.shard"), os.path.join(tmp, arch + "-lora")
    p1 = subprocess.Popen([os.path.join(BIN, "lf-template"), "-t", "qwen", "--dataset-dir", DATA, "--dataset",
                           "identity", "--max-samples", "8"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    p2 = subprocess.Popen([os.path.join(BIN, "lf-tokenize"), "--tokenizer", model], stdin=p1.stdout,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    pack = subprocess.run([os.path.join(BIN, "lf-pack"), "--cutoff-len", "128", "-o", shard], stdin=p2.stdout,
                          capture_output=True, text=True)
    p1.wait()
    p2.wait()
    if pack.returncode:
        return None, "lf-pack: " + pack.stderr.strip()
    r = run("lf-train", "-m", model, "-d", shard, "--stage", "sft", "--finetuning-type", "lora", "--lora-target",
            "all", "--lora-rank", "4", "--learning-rate", "0.05", "--max-steps", "3", "--save-steps", "0", "-o", out,
            *extra)
    return (out, None) if r.returncode == 0 else (None, "lf-train: " + r.stderr.strip()[-300:])


def main():
    tmp = tempfile.mkdtemp()
    try:
        for arch in ARCHS:
            model = os.path.join(tmp, arch)
            r = run("lf-init", "-t", arch, "--hidden-size", "32", "--intermediate-size", "48", "--num-hidden-layers",
                    "2", "--initializer-range", "0.5", "--sliding-window", "6", "--seed", "3", "-o", model)
            if r.returncode:
                report(False, "%s: lf-init" % arch, r.stderr.strip())
                continue
            # greedy with the cache against full forwards
            p1 = subprocess.Popen([os.path.join(BIN, "lf-template"), "-t", "qwen", "--stage", "ppo", "--dataset-dir",
                                   DATA, "--dataset", "identity", "--max-samples", "2"], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL)
            stream = os.path.join(tmp, arch + ".lfs")
            subprocess.run([os.path.join(BIN, "lf-tokenize"), "--tokenizer", model, "-o", stream], stdin=p1.stdout,
                           stderr=subprocess.DEVNULL, check=True)
            p1.wait()
            r = run("lf-generate", "-m", model, "--do-sample=false", "--max-new-tokens", "10", stream)
            if r.returncode or len(r.stdout.splitlines()) != 2:
                report(False, "%s: lf-generate" % arch, r.stderr.strip())
                continue
            bad = greedy_mismatch(model, stream, tmp)
            report(bad is None, "%s: greedy generation with the KV cache equals full forwards" % arch, bad or "")
            # the same through a LoRA adapter that lf-train made (DoRA on
            # llama; phi3's fused projections; mixtral's experts)
            if arch in ("llama", "phi3", "mixtral"):
                adapter, err = train_adapter(model, arch, tmp, ["--use-dora"] if arch == "llama" else [])
                bad = err or greedy_mismatch(model, stream, tmp, adapter)
                if not bad and run("lf-generate", "-m", model, "--do-sample=false", "--max-new-tokens", "10", stream,
                                   "--adapter-name-or-path", adapter).stdout == r.stdout:
                    bad = "the adapter changes no answer (nothing checked)"
                report(bad is None, "%s: greedy generation through a LoRA adapter equals full forwards" % arch,
                       bad or "")
            # lf-chat renders and tokenizes a conversation as lf-template |
            # lf-tokenize do: its greedy answer to identity's first row
            # ("hi") is lf-generate's; after /clear it starts over
            # prompts of different lengths answered together equal answered
            # one by one, sampled too (each record has its own draws)
            b1 = run("lf-generate", "-m", model, "--max-new-tokens", "6", "--batch-size", "1", "--top-k", "0", stream)
            b8 = run("lf-generate", "-m", model, "--max-new-tokens", "6", "--batch-size", "8", "--top-k", "0", stream)
            report(b1.returncode == 0 and b1.stdout == b8.stdout and len(b1.stdout.splitlines()) == 2,
                   "%s: batched sampling equals one prompt at a time" % arch, b8.stderr.strip()[-200:])

            def chat(lines):
                return subprocess.run([os.path.join(BIN, "lf-chat"), "-m", model, "-t", "qwen", "--do-sample=false",
                                       "--max-new-tokens", "10"], input=lines, capture_output=True, text=True)
            one, many = chat("hi\n"), chat("hi\nsecond turn\n/clear\nhi\n")
            first = json.loads(r.stdout.splitlines()[0])["predict"]
            report(one.returncode == 0 and many.returncode == 0 and one.stdout == first + "\n" and
                   many.stdout.startswith(first + "\n") and many.stdout.endswith("\n" + first + "\n") and
                   len(many.stdout) > 2 * len(one.stdout),
                   "%s: lf-chat answers as lf-generate does, and /clear starts over" % arch,
                   "chat %r, generate %r, %s" % (one.stdout, first, one.stderr.strip()[-200:]))
            # the second turn, answered from the cache kept since the first,
            # equals lf-generate's answer to the two-turn conversation
            two = chat("hi\nsecond turn\n")
            second = two.stdout[len(one.stdout):-1] if two.stdout.startswith(one.stdout) else None
            conv = os.path.join(tmp, arch + "-conv.json")
            json.dump([{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": first},
                                          {"from": "human", "value": "second turn"}, {"from": "gpt", "value": "x"}]}],
                      open(conv, "w"))
            q1 = subprocess.Popen([os.path.join(BIN, "lf-template"), "-t", "qwen", "--stage", "ppo", "--format",
                                   "sharegpt", conv], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            q2 = subprocess.run([os.path.join(BIN, "lf-tokenize"), "--tokenizer", model], stdin=q1.stdout,
                                capture_output=True)
            q1.wait()
            g = subprocess.run([os.path.join(BIN, "lf-generate"), "-m", model, "--do-sample=false",
                                "--max-new-tokens", "10"], input=q2.stdout, capture_output=True)
            want = json.loads(g.stdout.decode().splitlines()[0])["predict"] if g.returncode == 0 else "(failed)"
            report(second == want, "%s: lf-chat's second turn from its kept cache equals a fresh run" % arch,
                   "chat %r, generate %r %s" % (second, want, g.stderr.decode()[-200:]))
            # batched equals one by one: two sequences in one file
            a, b = list(range(5, 40)), list(range(60, 75))
            both = logits_of(model, [a, b], tmp)
            alone = logits_of(model, [b], tmp)[0]
            report(np.array_equal(both[1], alone), "%s: each sequence's logits are its own" % arch)

        # a head larger than the tokenizer (padded vocabularies): the ids
        # past it give no text, as transformers' decode, instead of an error
        big = os.path.join(tmp, "big-vocab")
        run("lf-init", "-t", "llama", "--hidden-size", "32", "--vocab-size", "4000", "--initializer-range", "0.5",
            "-o", big)
        p1 = subprocess.Popen([os.path.join(BIN, "lf-template"), "-t", "qwen", "--stage", "ppo", "--dataset-dir", DATA,
                               "--dataset", "identity", "--max-samples", "3"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)
        toks = subprocess.run([os.path.join(BIN, "lf-tokenize"), "--tokenizer", big], stdin=p1.stdout,
                              capture_output=True).stdout
        p1.wait()
        g = subprocess.run([os.path.join(BIN, "lf-generate"), "-m", big, "--max-new-tokens", "20", "--log",
                            os.path.join(tmp, "big.log")], input=toks, capture_output=True)
        new = sum(e.get("new_tokens", 0) for e in map(json.loads, open(os.path.join(tmp, "big.log")))
                  if e.get("event") == "answer") if g.returncode == 0 else 0
        report(g.returncode == 0 and len(g.stdout.splitlines()) == 3 and new > 0,
               "ids past the tokenizer's vocabulary give no text instead of an error", g.stderr.decode()[-200:])
        c = subprocess.run([os.path.join(BIN, "lf-chat"), "-m", big, "-t", "qwen", "--max-new-tokens", "20"],
                           input="hi\n", capture_output=True, text=True)
        report(c.returncode == 0, "lf-chat too", c.stderr[-200:])

        # lf-init's folders load in transformers (goldens made there by
        # scripts/goldens/make-init-goldens.py): the same bytes again, the
        # same token ids as AutoTokenizer, the same logits within 1e-4
        import hashlib
        gold = os.path.join(ROOT, "tests", "golden", "init")
        for arch in sorted(os.listdir(gold)):
            g = os.path.join(gold, arch)
            model = os.path.join(tmp, "init-" + arch)
            r = run("lf-init", *json.load(open(os.path.join(g, "args.json"))), "-o", model)
            sha = hashlib.sha256(open(os.path.join(model, "model.safetensors"), "rb").read()).hexdigest() \
                if r.returncode == 0 else r.stderr
            report(sha == open(os.path.join(g, "sha256")).read().strip(),
                   "%s: lf-init writes the same model.safetensors for the same options and seed" % arch)
            want = json.loads(open(os.path.join(g, "ids.jsonl")).readline())
            tok = run("lf-tokenize", "--tokenizer", model, "--text", "--no-special",
                      input=json.dumps({"text": want["text"]}) + "\n")
            report(tok.returncode == 0 and json.loads(tok.stdout)["ids"] == want["ids"],
                   "%s: lf-init's tokenizer gives AutoTokenizer's ids" % arch, tok.stdout.strip())
            mine = logits_of(model, [want["ids"]], tmp)[0]
            y = load_file(os.path.join(g, "logits.safetensors"))["logits.0"]
            err, scale = float(np.abs(mine - y).max()), float(np.abs(y).max())
            report(err <= 1e-4 * scale, "%s: transformers runs lf-init's model as lf does" % arch,
                   "max error %.3g, scale %.3g" % (err, scale))

        # perplexity over shards equals the loss from the logits
        model = os.path.join(tmp, "llama")
        p1 = subprocess.Popen([os.path.join(BIN, "lf-template"), "-t", "qwen", "--dataset-dir", DATA, "--dataset",
                               "identity", "--max-samples", "4"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        stream = os.path.join(tmp, "identity.tokens")
        with open(stream, "wb") as f:
            subprocess.run([os.path.join(BIN, "lf-tokenize"), "--tokenizer", model], stdin=p1.stdout, stdout=f,
                           stderr=subprocess.DEVNULL, check=True)
        shards = os.path.join(tmp, "shards")
        subprocess.run([os.path.join(BIN, "lf-pack"), "--cutoff-len", "64", "-o", shards], stdin=open(stream, "rb"),
                       stderr=subprocess.DEVNULL, check=True)
        r = run("lf-eval", "-m", model, "--task", "perplexity", "--input", shards)
        rows = [json.loads(l) for l in run("lf-inspect", shards).stdout.splitlines()]
        total, count = 0.0, 0
        for row, lg in zip(rows, logits_of(model, [row["input_ids"] for row in rows], tmp)):
            lab = np.array(row["labels"][1:])
            lg = lg[:-1].astype(np.float64)
            lse = np.log(np.exp(lg - lg.max(axis=1, keepdims=True)).sum(axis=1)) + lg.max(axis=1)
            keep = lab >= 0
            total += float((lse[keep] - lg[keep, lab[keep]]).sum())
            count += int(keep.sum())
        res = json.loads(r.stdout) if r.returncode == 0 else {}
        report(r.returncode == 0 and res.get("label_tokens") == count and abs(res["loss"] - total / count) < 1e-4 and
               abs(res["perplexity"] - np.exp(total / count)) < 1e-3 * np.exp(total / count),
               "perplexity over shards is the mean next-token loss over label tokens",
               "%s vs loss %.6f over %d" % (r.stdout.strip() or r.stderr.strip(), total / max(count, 1), count))
        # the token stream itself, from a file and from standard input, cut
        # as lf-pack cuts: the same examples, the same numbers
        for args, src in (([stream], None), (["-"], stream)):
            with open(src or os.devnull, "rb") as f:
                s = run("lf-eval", "-m", model, "--task", "perplexity", "--cutoff-len", "64", "--input", *args,
                        stdin=f)
            got = json.loads(s.stdout) if s.returncode == 0 else {}
            report(s.returncode == 0 and got.get("split") == "stream" and
                   got.get("label_tokens") == res.get("label_tokens") and got.get("tokens") == res.get("tokens") and
                   abs(got["loss"] - res["loss"]) < 1e-6,
                   "perplexity over a token stream%s equals perplexity over its shards" % (" on stdin" if src else ""),
                   s.stdout.strip() or s.stderr.strip())
        s = run("lf-eval", "-m", model, "--task", "perplexity", "--cutoff-len", "16", "--max-samples", "2", "--input",
                stream)
        got = json.loads(s.stdout) if s.returncode == 0 else {}
        report(s.returncode == 0 and got.get("examples") == 2 and got.get("tokens") == 32,
               "perplexity over a stream: --cutoff-len cuts, --max-samples stops", s.stdout.strip() or s.stderr)
        kto = os.path.join(tmp, "kto.tokens")
        with open(kto, "wb") as f:
            p1 = subprocess.Popen([os.path.join(BIN, "lf-template"), "-t", "qwen", "--dataset-dir", DATA, "--dataset",
                                   "kto_en_demo", "--stage", "kto", "--max-samples", "2"], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL)
            subprocess.run([os.path.join(BIN, "lf-tokenize"), "--tokenizer", model], stdin=p1.stdout, stdout=f,
                           stderr=subprocess.DEVNULL)
        s = run("lf-eval", "-m", model, "--task", "perplexity", "--input", kto)
        report(s.returncode != 0 and "kto" in s.stderr and "lf-pack" in s.stderr and not s.stdout,
               "perplexity refuses a stream of kto records, naming them", s.stderr.strip())

        # bad model folders
        def broken(name, edit):
            d = os.path.join(tmp, "bad-" + name)
            shutil.copytree(model, d)
            edit(d)
            return run("lf-eval", "-m", d, "--task", "logits", "--input", os.path.join(tmp, "ids.jsonl"), "-o",
                       os.path.join(tmp, "x.safetensors"))

        def drop_tensor(d):
            t = load_file(os.path.join(d, "model.safetensors"))
            del t["model.layers.1.mlp.up_proj.weight"]
            save_file(t, os.path.join(d, "model.safetensors"))

        def reshape_tensor(d):
            t = load_file(os.path.join(d, "model.safetensors"))
            t["model.norm.weight"] = np.zeros(31, dtype=t["model.norm.weight"].dtype)
            save_file(t, os.path.join(d, "model.safetensors"))

        def unknown_type(d):
            c = json.load(open(os.path.join(d, "config.json")))
            c["model_type"] = "falcon_mamba"
            json.dump(c, open(os.path.join(d, "config.json"), "w"))

        def truncate(d):
            p = os.path.join(d, "model.safetensors")
            data = open(p, "rb").read()
            open(p, "wb").write(data[:len(data) // 2])

        cases = [("drop", drop_tensor, "model.layers.1.mlp.up_proj.weight"),
                 ("shape", reshape_tensor, "model.norm.weight"),
                 ("type", unknown_type, "falcon_mamba"),
                 ("cut", truncate, "model.safetensors")]
        for name, edit, needle in cases:
            r = broken(name, edit)
            lines = r.stderr.strip().splitlines()
            report(r.returncode == 1 and len(lines) == 1 and needle in lines[0] and "error" in lines[0],
                   "a bad model folder (%s) is one error line naming %s" % (name, needle), r.stderr.strip())
    finally:
        shutil.rmtree(tmp)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
