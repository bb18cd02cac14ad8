#!/usr/bin/env python3
"""lf-tokenize against the Hugging Face tokenizers library (TAP-style).

1. The shared goldens: ids with and without special tokens, and both
   decodings, for every tokenizer in ../shared/tokenizers on its corpus.
2. The library itself, live, on hard cases of our own for the same
   tokenizers: code points assigned in Unicode 15, 16 and 17, NFD text,
   special-token spellings, long words and runs, byte fallback, random mixes.
3. Tokenizers the library builds and trains here, one per family of
   components the shared files do not use (Metaspace, Digits, Punctuation,
   Whitespace, WhitespaceSplit, Bert, Split behaviours, Strip, Prepend,
   Replace, Lowercase, NFKC/NFKD, unk, subword prefix/suffix, Roberta and
   Template post-processors, added tokens with lstrip/rstrip/single_word).
4. Character classes, code point by code point: normalizers (tests/helpers/
   unicode-dump) and pre-tokenizers (tests/helpers/tok-dump) on every code
   point of planes 0-3 and 14 and a sample of the rest.
5. Oniguruma patterns as lf rewrites them for PCRE2: the split patterns of
   well-known tokenizers (GPT-2, cl100k and o200k, possessive forms) and
   constructs whose meaning differs between the two engines ($, \h, \w,
   (?i), classes with escapes), as Split pre-tokenizers.
"""
import json
import os
import random
import subprocess
import sys
import tempfile
import unicodedata

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
BIN = os.environ.get("LF_BIN", os.path.join(ROOT, "bin"))
UNITS = os.environ.get("LF_UNITS", os.path.join(ROOT, "build", "dyn", "tests"))
DATA = os.environ.get("LF_SHARED_DATA") or next(
    (p for p in (os.path.join(ROOT, "shared", "data"), os.path.join(ROOT, "..", "shared", "data")) if os.path.isdir(p)),
    os.path.join(ROOT, "..", "shared", "data"))
TOKDIR = os.path.join(os.path.dirname(os.path.abspath(DATA)), "tokenizers")
LF_TOKENIZE = os.path.join(BIN, "lf-tokenize")
TOK_DUMP = os.path.join(UNITS, "helpers", "tok-dump")
UNICODE_DUMP = os.path.join(UNITS, "helpers", "unicode-dump")

failures = 0


def report(good, name, detail=()):
    global failures
    print(("ok - " if good else "not ok - ") + name)
    if not good:
        failures += 1
        for d in detail:
            print("#   " + d[:400])


def run_lines(argv, objs):
    """Run argv on JSON lines, give the parsed output lines (None on failure)."""
    data = "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs).encode("utf-8")
    out = subprocess.run(argv, input=data, capture_output=True)
    if out.returncode != 0:
        return None, out.stderr.decode(errors="replace").strip()
    # split on LF only: str.splitlines would break at U+2028 and U+0085 too
    return [json.loads(l) for l in out.stdout.decode("utf-8").split("\n") if l], ""


def compare(name, texts, got, want, what):
    """One check: lists got and want agree line by line."""
    if got is None:
        report(False, name, [what[1] if isinstance(what, tuple) else "failed"])
        return
    bad = [i for i in range(len(want)) if i >= len(got) or got[i] != want[i]]
    detail = []
    for i in bad[:3]:
        g, w, at = got[i] if i < len(got) else None, want[i], 0
        if isinstance(g, list) and isinstance(w, list):
            while at < min(len(g), len(w)) and g[at] == w[at]:
                at += 1
            at = max(0, at - 3)
            g, w = g[at:at + 12], w[at:at + 12]
        detail.append("input %r" % (texts[i][:120],))
        detail.append("  lf      %s%r" % ("[%d:] " % at if at else "", g))
        detail.append("  library %s%r" % ("[%d:] " % at if at else "", w))
    if len(got) != len(want):
        detail.append("%d outputs for %d inputs" % (len(got), len(want)))
    report(not bad and len(got) == len(want), "%s (%d texts)" % (name, len(want)), detail)


def lf_encode(path, texts, special, extra=()):
    argv = [LF_TOKENIZE, "--tokenizer", path, "--text", "--threads", "2"] + ([] if special else ["--no-special"])
    argv += list(extra)
    out, err = run_lines(argv, [{"text": t} for t in texts])
    return (None, err) if out is None else ([o["ids"] for o in out], err)


def lf_decode(path, idss, skip, extra=()):
    argv = [LF_TOKENIZE, "--tokenizer", path, "--decode"] + (["--skip-special"] if skip else []) + list(extra)
    out, err = run_lines(argv, [{"ids": ids} for ids in idss])
    return (None, err) if out is None else ([o["text"] for o in out], err)


def check_tokenizer(label, path, tok, texts, extra=()):
    """Encode (both modes) and decode (both modes) texts with lf and the library
    (extra: lf options that do what was done to tok)."""
    want_sp = [e.ids for e in tok.encode_batch(texts, add_special_tokens=True)]
    want_ns = [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
    for special, want in ((True, want_sp), (False, want_ns)):
        got, err = lf_encode(path, texts, special, extra)
        compare("%s: ids%s match the library" % (label, "" if special else " without special tokens"),
                texts, got, want, (None, err))
    got, err = lf_decode(path, want_ns, False, extra)
    compare("%s: decode matches the library" % label, texts, got, tok.decode_batch(want_ns, skip_special_tokens=False),
            (None, err))
    got, err = lf_decode(path, want_sp, True, extra)
    compare("%s: decode with --skip-special matches the library" % label, texts, got,
            tok.decode_batch(want_sp, skip_special_tokens=True), (None, err))


# ---- 1. shared goldens ----

def shared_models():
    return sorted(d for d in os.listdir(TOKDIR) if os.path.isfile(os.path.join(TOKDIR, d, "tokenizer.json")))


def check_goldens():
    for model in shared_models():
        path = os.path.join(TOKDIR, model)
        gold = [json.loads(l) for l in open(os.path.join(path, "golden-public.jsonl"), encoding="utf-8")]
        texts = [g["text"] for g in gold]
        for special, key in ((True, "ids"), (False, "ids_nospecial")):
            got, err = lf_encode(path, texts, special)
            compare("golden %s: %s" % (model, key), texts, got, [g[key] for g in gold], (None, err))
        got, err = lf_decode(path, [g["ids_nospecial"] for g in gold], False)
        compare("golden %s: decoded" % model, texts, got, [g["decoded"] for g in gold], (None, err))
        got, err = lf_decode(path, [g["ids"] for g in gold], True)
        compare("golden %s: decoded_skip" % model, texts, got, [g["decoded_skip"] for g in gold], (None, err))


# ---- 2. hard cases against the live library ----

# Blocks new in Unicode 15.0, 15.1, 16.0 and 17.0 (letters, marks, digits,
# symbols), and single new characters with case mappings.
RECENT_RANGES = [
    (0x11F00, 0x11F5F), (0x1E4D0, 0x1E4FF), (0x31350, 0x313AF), (0x1FAE8, 0x1FAE8), (0x11B00, 0x11B09),  # 15.0
    (0x2EBF0, 0x2EC2F), (0x2FFC, 0x2FFF), (0x31EF, 0x31EF),  # 15.1
    (0x10D40, 0x10D8F), (0x16100, 0x1613F), (0x16D40, 0x16D7F), (0x1E5D0, 0x1E5FF), (0x11BC0, 0x11BFF),
    (0x105C0, 0x105FF), (0x11380, 0x113FF), (0x1CC00, 0x1CCFF), (0x116D0, 0x116E3), (0xA7CB, 0xA7DC),
    (0x1C89, 0x1C8A), (0x13460, 0x1347F),  # 16.0
    (0x10940, 0x1095F), (0x11DB0, 0x11DEF), (0x16EA0, 0x16EDF), (0x1E6C0, 0x1E6FF), (0x323B0, 0x3240F),
    (0xA7CE, 0xA7CF), (0xA7D2, 0xA7D2), (0xA7D4, 0xA7D4), (0xA7F1, 0xA7F1), (0x11B60, 0x11B67),  # 17.0
]


def hard_cases(tok, rng):
    texts = []
    for lo, hi in RECENT_RANGES:
        chars = "".join(chr(c) for c in range(lo, hi + 1))
        texts.append(chars)
        texts.append(" ".join(chars[i:i + 3] for i in range(0, len(chars), 3)))
        texts.append("x" + "1 ".join(chars[i:i + 2] for i in range(0, len(chars), 2)) + "'S")
    prose = ["Café déjà vu, naïve façade; Ångström's crème brûlée.", "Ελληνικά ἀρχή ᾯ", "Tiếng Việt có dấu: Hà Nội",
             "한국어 텍스트 각 글자", "ﬁ ﬂ Ⅻ ① ㍿ ｶﾀｶﾅ ＡＢＣ", "मानक हिन्दी क़ि", "אָלֶף בֵּית"]
    for p in prose:
        for form in ("NFD", "NFKD", "NFC", "NFKC"):
            texts.append(unicodedata.normalize(form, p))
    added = [a.content for a in tok.get_added_tokens_decoder().values()][:40]
    for a in added:
        texts += [a, " " + a + " ", "x" + a + "y", a + a + a, "  " + a + "\n\n", a[:-1], a.upper(), "\t" + a + " word"]
    texts += [
        "a" * 3000, "ab" * 1500 + " end", "1234567890" * 300, " " * 1000 + "x", "\n" * 500, "\t \n\r\n " * 200,
        "\u3000\u00a0\u0085\u2028\u2029\u200b\ufeff" * 10, "x\u0085y\u2028z", "'s 'S 'LL 'Ll 're 've 'd 'm 't", "don't WON'T",
        "\ue000\uf8ff\U000f0000\U0010fffd\u0378\u0380", "👩‍👩‍👧‍👦🏳️‍🌈🇫🇷🧑🏽‍💻", "\x00\x01\x1f\x7f", "a\x00b",
        "▁ ▁▁ x▁y", "<0x41> <unk> [UNK]", "ﷺ ﷽ ꙮ 𒐫", "😀" * 200, "a\u0301" * 300, "\u0301\u0301 \u0301x",
        "def f(x):\n    return x**2  # square\n\n\tif x:\n\t\tpass\n", "  leading", "trailing  ", "", " ", "  ",
    ]
    alphabet = (list("abcXYZ019 ,.!?'\"-_/\\\n\t") + ["  ", "\r\n", "中", "文", "の", "한", "é", "e\u0301", "ß", "İ",
                "ﬁ", "٣", "२", "½", "Ⅷ", "😀", "👍🏽", "\u200d", "\u00a0", "\u3000", "\u0085", "'s", "'LL", "<", ">",
                "|", "𝔘", "\U0001d7d8", "\ue000"] + [chr(c) for c in (0x10D41, 0x16131, 0x1E5F2, 0x11DE3, 0x1CCF4)])
    for _ in range(300):
        texts.append("".join(rng.choice(alphabet + added[:8]) for _ in range(rng.randint(1, 60))))
    return texts


NEW_TOKENS = ["hello", "wor ld", "🙂x", "Straße"]
NEW_SPECIAL = ["<x>", "[SPECIAL]", "<tool_call>"]  # qwen3 has <tool_call> as a non-special added token


def check_live_shared():
    rng = random.Random(20261127)
    for model in shared_models():
        path = os.path.join(TOKDIR, model)
        tok = Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
        texts = hard_cases(tok, rng)
        check_tokenizer("live %s" % model, path, tok, texts)
        # LLaMA-Factory's add_tokens, add_special_tokens and split_special_tokens
        tok.add_tokens(NEW_TOKENS)
        tok.add_special_tokens(NEW_SPECIAL)
        texts = texts[::3] + ["say hello, wor ld!<x> 🙂x [SPECIAL]x <x><x>Straße strasse", "hello" * 5, " wor ld ", "a<tool_call>b"]
        extra = ["--add-tokens", ", ".join(NEW_TOKENS), "--add-special-tokens", ",".join(NEW_SPECIAL)]
        check_tokenizer("live %s with add_tokens and add_special_tokens" % model, path, tok, texts, extra)
        tok.encode_special_tokens = True
        check_tokenizer("live %s with split_special_tokens" % model, path, tok, texts,
                        extra + ["--split-special-tokens"])


# ---- 3. tokenizers built and trained here ----

def training_text():
    texts = [json.loads(l)["text"] for l in open(os.path.join(TOKDIR, "corpus-public.jsonl"), encoding="utf-8")]
    for name in ("alpaca_en_demo.json", "identity.json"):
        for row in json.load(open(os.path.join(DATA, name), encoding="utf-8"))[:400]:
            texts += [str(row.get("instruction", "")), str(row.get("output", ""))]
    return texts


def built_tokenizers():
    """(label, Tokenizer, trainer) for each component family."""
    specials = ["<s>", "</s>", "<unk>", "<pad>", "<mask>"]
    out = []

    t = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    t.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase(), normalizers.Strip(left=True, right=False)])
    t.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    t.decoder = decoders.Sequence([decoders.Metaspace(replacement="▁", prepend_scheme="always"), decoders.ByteFallback(),
                                   decoders.Fuse()])
    t.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> $B </s>",
                                                     special_tokens=[("<s>", 0), ("</s>", 1)])
    out.append(("metaspace-always", t, trainers.BpeTrainer(show_progress=False, vocab_size=1200, special_tokens=specials,
                                                          initial_alphabet=["<0x%02X>" % b for b in range(256)])))

    for scheme, split in (("first", False), ("never", True)):
        t = Tokenizer(models.BPE(unk_token="<unk>"))
        t.normalizer = normalizers.Sequence([normalizers.NFKD(), normalizers.Replace(Regex(r"\s+"), " "),
                                             normalizers.Strip()])
        t.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme, split=split)
        t.decoder = decoders.Metaspace(replacement="▁", prepend_scheme=scheme)
        out.append(("metaspace-%s" % scheme, t, trainers.BpeTrainer(show_progress=False, vocab_size=900, special_tokens=specials)))

    t = Tokenizer(models.BPE(unk_token="[UNK]", continuing_subword_prefix="##", fuse_unk=True))
    t.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.Lowercase()])
    t.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    t.post_processor = processors.BertProcessing(("[SEP]", 2), ("[CLS]", 1))
    t.decoder = decoders.Sequence([decoders.Replace(" ##", ""), decoders.Strip(" ", 0, 0)])
    out.append(("bert-prefix", t, trainers.BpeTrainer(show_progress=False, vocab_size=1000, special_tokens=["[PAD]", "[CLS]", "[SEP]", "[UNK]"],
                                                      continuing_subword_prefix="##")))

    t = Tokenizer(models.BPE(unk_token="<unk>", end_of_word_suffix="</w>"))
    t.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    t.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                               pre_tokenizers.Digits(individual_digits=True),
                                               pre_tokenizers.Punctuation(behavior="isolated")])
    out.append(("suffix-digits-punct", t, trainers.BpeTrainer(show_progress=False, vocab_size=900, special_tokens=specials,
                                                              end_of_word_suffix="</w>")))

    t = Tokenizer(models.BPE())
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=False),
        pre_tokenizers.Punctuation(behavior="merged_with_next"),
        pre_tokenizers.Split(Regex(r"[aeiou]+"), behavior="merged_with_previous"),
        pre_tokenizers.Split("th", behavior="contiguous"),
        pre_tokenizers.Split(Regex(r"\p{Lu}"), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=False)])
    t.decoder = decoders.ByteLevel()
    t.post_processor = processors.RobertaProcessing(("</s>", 1), ("<s>", 0))
    out.append(("split-behaviours-bytelevel", t, trainers.BpeTrainer(show_progress=False, 
        vocab_size=1500, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())))

    t = Tokenizer(models.BPE(ignore_merges=True))
    t.normalizer = normalizers.NFKC()
    t.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\d|[\s\p{P}]+"), behavior="isolated"),
        pre_tokenizers.Split(Regex(r"x+"), behavior="merged_with_next", invert=True),
        pre_tokenizers.Punctuation(behavior="removed"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    t.decoder = decoders.ByteLevel()
    t.post_processor = processors.Sequence([processors.ByteLevel(trim_offsets=True),
                                            processors.TemplateProcessing(single="$A </s> </s>", special_tokens=[("</s>", 1)])])
    out.append(("split-regex-ignore-merges", t, trainers.BpeTrainer(show_progress=False, 
        vocab_size=1500, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())))
    return out


ADDED = [AddedToken("<tool>", special=True), AddedToken("[LSTRIP]", lstrip=True, special=True),
         AddedToken("[RSTRIP]", rstrip=True, special=False), AddedToken("word", single_word=True, special=False),
         AddedToken("ÉTÉ", normalized=True, special=False), AddedToken("Straße", normalized=False, special=False),
         AddedToken("  ", normalized=False, special=False)]


def check_built(work):
    train = training_text()
    rng = random.Random(7)
    extra = ["<tool>x", "a [LSTRIP] b", "a  [LSTRIP]b", "a[RSTRIP]   b", "word words sword word_ w0rd", "été ÉTÉ e\u0301te\u0301",
             "Straße STRASSE strasse", "a    b", "x<tool><tool> [LSTRIP][RSTRIP] word", "  <s> </s> <unk> <pad>  "]
    for label, tok, trainer in built_tokenizers():
        tok.train_from_iterator(train, trainer)
        tok.add_tokens(ADDED)
        path = os.path.join(work, label + ".json")
        tok.save(path)
        texts = hard_cases(tok, rng)[:400] + train[:150] + extra
        check_tokenizer("built %s" % label, path, tok, texts)


# ---- 4. character classes, code point by code point ----

def code_points():
    cps = [c for c in range(0x40000) if not 0xD800 <= c <= 0xDFFF] + list(range(0xE0000, 0xE1000))
    cps += list(range(0x40000, 0x110000, 97))
    return cps


def class_lines(cps, width=48):
    # each code point after a letter, before a digit, after a space and doubled:
    # where its class is wrong, the pre-tokens differ
    lines = []
    for i in range(0, len(cps), width):
        lines.append("".join("a%s1 %s%s'" % (chr(c), chr(c), chr(c)) for c in cps[i:i + width]))
    return lines


def check_classes(work):
    cps = code_points()
    lines = class_lines(cps)
    data = "".join(json.dumps(l) + "\n" for l in lines).encode()
    pretoks = [("llama3", os.path.join(TOKDIR, "llama3", "tokenizer.json")),
               ("qwen3", os.path.join(TOKDIR, "qwen3", "tokenizer.json")),
               ("deepseek_v3", os.path.join(TOKDIR, "deepseek_v3", "tokenizer.json"))]
    for label, pt in (("Whitespace", pre_tokenizers.Whitespace()), ("Digits", pre_tokenizers.Digits()),
                      ("Punctuation", pre_tokenizers.Punctuation()), ("Bert", pre_tokenizers.BertPreTokenizer()),
                      ("WhitespaceSplit", pre_tokenizers.WhitespaceSplit()),
                      ("Metaspace", pre_tokenizers.Metaspace())):
        t = Tokenizer(models.BPE())
        t.pre_tokenizer = pt
        path = os.path.join(work, "pretok-%s.json" % label)
        t.save(path)
        pretoks.append((label, path))
    for label, path in pretoks:
        tok = Tokenizer.from_file(path)
        out = subprocess.run([TOK_DUMP, "pretok", path], input=data, capture_output=True)
        if out.returncode:
            report(False, "pre-tokenizer %s: classes of %d code points" % (label, len(cps)), [out.stderr.decode()])
            continue
        got = [json.loads(l) for l in out.stdout.decode().split("\n") if l]
        norm = tok.normalizer
        want = [[p for p, _ in tok.pre_tokenizer.pre_tokenize_str(norm.normalize_str(l) if norm else l)] for l in lines]
        compare("pre-tokenizer %s: classes of %d code points" % (label, len(cps)), lines, got, want, (None, ""))

    # normalizers: every code point alone, and random runs of combining marks
    rng = random.Random(3)
    singles = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF and c != 0x0A]
    marks = [0x300, 0x301, 0x323, 0x328, 0x315, 0x31B, 0x334, 0x345, 0x5B0, 0x93C, 0x94D, 0x3099, 0x309A, 0x1AB0,
             0x1DC0, 0x20D0, 0x1E000, 0x16FF0, 0x1D165, 0x1D16D]
    bases = [0x41, 0x45, 0x61, 0x3B1, 0x3C9, 0x1100, 0x1161, 0x11A8, 0xAC00, 0x928, 0x915, 0x304B, 0x30CF, 0x1E36,
             0x21D0, 0x3D2, 0x226E, 0x1B05, 0x1135E, 0x11347]
    runs = ["".join(chr(rng.choice(bases + marks)) for _ in range(rng.randint(1, 6))) for _ in range(20000)]
    lines = singles + runs
    text = "\n".join(lines).encode()
    for op, n in (("nfd", normalizers.NFD()), ("nfc", normalizers.NFC()), ("nfkd", normalizers.NFKD()),
                  ("nfkc", normalizers.NFKC()), ("lower", normalizers.Lowercase())):
        out = subprocess.run([UNICODE_DUMP, op], input=text, capture_output=True)
        got = out.stdout.decode().split("\n") if out.returncode == 0 else None
        want = n.normalize_str("\n".join(lines)).split("\n")
        compare("normalizer %s: every code point and %d combining runs" % (op, len(runs)), lines, got, want,
                (None, out.stderr.decode()))


PATTERNS = [
    # GPT-2 / ByteLevel's own
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
    # cl100k (as Llama 3's tokenizer.json has it) and tiktoken's possessive form
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""",
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
    # o200k
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+""",
    # constructs
    r"""\h+|\H""", r"""\w+|\W""", r"""\d+|\D""", r"""^\s*\S|\S$""", r"""[\-\[\]\\^a-c]+""", r"""(?i)k+|σ+|ǆ|(?-i:x)X""",
    r"""\p{Nd}+|\p{No}|\p{Sc}\p{Sk}?|\P{L}{2}|[^\P{Lu}]+""", r""".+""", r"""(?:a|b)+|(?:x|yy?)*z""", r"""(?m:a.b)|(?x) c d # comment""", r"""[一-龥\u3040-ゟ゠-ヿ]+""", r"""\A.|.\z|x\b|\by""",
]


# Oniguruma's (?i) folds ß to ss and back; PCRE2 cannot: lf must refuse these
REFUSED = [r"""(?i)straße""", r"""(?i:'s|ss)""", r"""(?i)ﬁ"""]


def check_patterns(work):
    for i, pattern in enumerate(REFUSED):
        t = Tokenizer(models.BPE())
        t.pre_tokenizer = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
        path = os.path.join(work, "refused-%d.json" % i)
        t.save(path)
        out = subprocess.run([TOK_DUMP, "pretok", path], input=b'"a"\n', capture_output=True)
        err = out.stderr.decode()
        report(out.returncode == 1 and "case-insensitive" in err and path in err,
               "pattern %s is refused (multi-character case folding)" % pattern, [err or "accepted"])
    lines = class_lines(code_points()[::13], width=40)
    texts = lines + ["a\nb\n\nc  \n", "line one  \nline two\n", "ÆØÅ æøå KKk ǅungla ǄǅǆXx xX ΣΣσς İstanbul ıi",
                     "0x1F 0xff deadBEEF 12,345.67 ٣٤ ५६", "[a-c] \\ ^ -", "x y xy yx", "\r\n\r\n  \t", "a\nb axb cd c d",
                     "ab" * 30000 + " " + "xy" * 20000]
    for i, pattern in enumerate(PATTERNS):
        t = Tokenizer(models.BPE())
        t.pre_tokenizer = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
        path = os.path.join(work, "pattern-%d.json" % i)
        t.save(path)
        data = "".join(json.dumps(l) + "\n" for l in texts).encode()
        out = subprocess.run([TOK_DUMP, "pretok", path], input=data, capture_output=True)
        name = "pattern %s" % (pattern if len(pattern) < 60 else pattern[:57] + "...")
        if out.returncode:
            report(False, name, [out.stderr.decode()])
            continue
        got = [json.loads(l) for l in out.stdout.decode().split("\n") if l]
        want = [[p for p, _ in t.pre_tokenizer.pre_tokenize_str(l)] for l in texts]
        compare(name, texts, got, want, (None, ""))


def main():
    check_goldens()
    check_live_shared()
    with tempfile.TemporaryDirectory() as work:
        check_built(work)
        check_classes(work)
        check_patterns(work)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
