#!/usr/bin/env python3
"""Write about SIZE MB of generated mixed text as JSON lines {"text": ...}
for scripts/bench/tokenize.sh: English prose (a word bigram chain over
LLaMA-Factory's alpaca_en_demo), source code (chunks of this repository's C
and Python with identifiers varied) and CJK text (a character bigram chain
over the Chinese of identity.json and the shared tokenizer corpus), about
50/30/20 by bytes, in documents of 0.5-4 KB.  Spellings of special tokens
are left out of the code, so the text is ordinary text for every peer.  Deterministic for a seed.

Usage: gen-mixed-text.py SHARED_DATA_DIR SIZE_MB OUT.jsonl [SEED]"""
import glob
import json
import os
import random
import re
import sys


def chain(tokens):
    nxt = {}
    for a, b in zip(tokens, tokens[1:]):
        nxt.setdefault(a, []).append(b)
    return nxt


def walk(nxt, starts, rng, n):
    out = [rng.choice(starts)]
    while len(out) < n:
        follow = nxt.get(out[-1])
        out.append(rng.choice(follow) if follow else rng.choice(starts))
    return out


def main():
    data, size_mb, out_path = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    rng = random.Random(int(sys.argv[4]) if len(sys.argv) > 4 else 1)
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")

    prose = []
    for row in json.load(open(os.path.join(data, "alpaca_en_demo.json"), encoding="utf-8")):
        prose += (row.get("instruction", "") + " " + row.get("output", "")).split()
    words = chain(prose)
    capital = [w for w in prose if w[:1].isupper()] or prose

    code_files = sorted(glob.glob(os.path.join(root, "libcommon", "*.c")) + glob.glob(os.path.join(root, "tools", "*.c")) +
                        glob.glob(os.path.join(root, "tests", "tools", "*.py")) + glob.glob(os.path.join(root, "scripts", "**", "*.py"), recursive=True))
    code_lines = []
    for path in code_files:
        code_lines += open(path, encoding="utf-8").read().split("\n")
    ident = re.compile(r"\b([a-z_][a-z0-9_]{3,})\b")
    # spellings of special tokens (this repository's tests hold many): the
    # peers that encode "ordinary" text would treat them differently
    tag = re.compile(r"<\|[^|\n]*\|>|</?[A-Za-z_][A-Za-z0-9_]*>|<0x[0-9A-F]{2}>|\[/?INST\]")

    cjk_text = ""
    for row in json.load(open(os.path.join(data, "identity.json"), encoding="utf-8")):
        cjk_text += "".join(c for c in row.get("instruction", "") + row.get("output", "") if ord(c) > 0x2e80)
    corpus = os.path.join(data, "..", "tokenizers", "corpus-public.jsonl")
    if os.path.exists(corpus):
        for line in open(corpus, encoding="utf-8"):
            t = json.loads(line)["text"]
            cjk_text += "".join(c for c in t if 0x3040 <= ord(c) <= 0x9fff or 0xac00 <= ord(c) <= 0xd7a3)
    chars = list(cjk_text)
    cjk = chain(chars)

    def english():
        sentences = []
        for _ in range(rng.randint(4, 30)):
            ws = walk(words, capital, rng, rng.randint(6, 28))
            s = " ".join(ws)
            sentences.append(s if s[-1] in ".!?" else s + ".")
        return " ".join(sentences) + "\n"

    def code():
        start = rng.randrange(max(1, len(code_lines) - 80))
        chunk = "\n".join(code_lines[start:start + rng.randint(15, 80)])
        suffix = str(rng.randint(0, 99))
        chunk = tag.sub("", chunk)
        return ident.sub(lambda m: m.group(1) + suffix if rng.random() < 0.15 else m.group(1), chunk) + "\n"

    def cjk_doc():
        paras = []
        for _ in range(rng.randint(1, 5)):
            paras.append("".join(walk(cjk, chars, rng, rng.randint(40, 300))))
        return "\n".join(paras) + "\n"

    target = int(size_mb * 1e6)
    written = 0
    with open(out_path + ".tmp", "w", encoding="utf-8") as f:
        while written < target:
            r = rng.random()
            doc = english() if r < 0.5 else code() if r < 0.8 else cjk_doc()
            f.write(json.dumps({"text": doc}, ensure_ascii=False) + "\n")
            written += len(doc.encode("utf-8"))
    os.replace(out_path + ".tmp", out_path)


if __name__ == "__main__":
    main()
