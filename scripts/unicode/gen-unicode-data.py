#!/usr/bin/env python3
"""Write libcommon/unicode_data.c: the Unicode tables lf-tokenize needs to
match the Hugging Face tokenizers library exactly.  Each component of that
library carries its own Unicode version, so the tables do too:

  general categories    Unicode 16.0: Oniguruma's \\p{..} classes in Split and
                        Replace patterns, Rust's char::is_numeric
  normalization         Unicode 9.0: the library's NFC/NFD/NFKC/NFKD come from
                        the unicode-normalization-alignments crate, whose
                        tables are Unicode 9.0.  Normalization data of a code
                        point never changes once assigned, so these are the
                        current data restricted to code points assigned by 9.0.
  Alphabetic            Oniguruma's \w (Alphabetic, Mark, Decimal_Number,
                        Connector_Punctuation, Join_Control): general
                        category L or Nl at 16.0, plus ICU's Alphabetic
                        property (Other_Alphabetic: circled letters, ...)
  multi-character case folding   the characters whose full case folding is
                        more than one character (CaseFolding.txt status F,
                        from Python's str.casefold), and those foldings:
                        Oniguruma's (?i) matches them ("STRASSE" for
                        "straße"), PCRE2 does not, so lf refuses such patterns
  old punctuation       Unicode 8.0: the unicode_categories crate behind the
                        Punctuation and Bert pre-tokenizers (ASCII
                        punctuation, plus general category P as of 8.0)

Sources: the unicodedata2 package, version 16.0.0 (Unicode 16.0 character
data); the Unicode 8.0 database in the source of unicodedata2 8.0.0 (its
unicodedata_db.h, which no longer builds, is read as data); and ICU's
u_charAge (libicuuc, any version >= 9.0) for the version in which each code
point was assigned.  Run once when the tables must change:

    python3 -m venv /tmp/ud && /tmp/ud/bin/pip install unicodedata2==16.0.0
    /tmp/ud/bin/pip download --no-deps --no-binary :all: unicodedata2==8.0.0 -d /tmp/ud8
    tar xf /tmp/ud8/unicodedata2-8.0.0.tar.gz -C /tmp/ud8
    UNICODE8_DB=/tmp/ud8/unicodedata2-8.0.0/unicodedata2/unicodedata_db.h \
        /tmp/ud/bin/python scripts/unicode/gen-unicode-data.py > libcommon/unicode_data.c

tests/tools/tokenize_oracle.py checks the tables against the tokenizers library.
"""
import ctypes
import ctypes.util
import glob
import os
import re
import sys

import unicodedata2 as ud

assert ud.unidata_version == "16.0.0", ud.unidata_version

CATS = ["Cn", "Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc", "Pd", "Ps", "Pe",
        "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co"]


def icu():
    paths = sorted(glob.glob("/usr/lib/*/libicuuc.so.*")) + sorted(glob.glob("/usr/lib/libicuuc.so.*"))
    lib = ctypes.CDLL(paths[-1])
    major = paths[-1].rsplit(".so.", 1)[1].split(".")[0]
    return lib, major


def icu_age():
    lib, major = icu()
    fn = getattr(lib, "u_charAge_" + major)
    buf = (ctypes.c_uint8 * 4)()

    def age(cp):
        fn(cp, buf)
        return (buf[0], buf[1])
    return age


def icu_alphabetic():
    lib, major = icu()
    fn = getattr(lib, "u_hasBinaryProperty_" + major)
    fn.restype = ctypes.c_int8
    return lambda cp: bool(fn(cp, 0))  # UCHAR_ALPHABETIC


def unicode8_category():
    """The general category function of the Unicode 8.0 database in
    unicodedata2 8.0.0's unicodedata_db.h (CPython's two-level index)."""
    text = open(os.environ["UNICODE8_DB"]).read()
    assert '#define UNIDATA_VERSION "8.0.0"' in text

    def array(name):
        body = re.search(r"%s\[\] = \{(.*?)\};" % name, text, re.S).group(1)
        return body

    records = [int(m.group(1)) for m in re.finditer(r"\{(\d+),", array("_PyUnicode_Database_Records"))]
    names = re.findall(r'"(\w*)"', array("_PyUnicode_CategoryNames"))
    index1 = [int(x) for x in re.findall(r"\d+", array("index1"))]
    index2 = [int(x) for x in re.findall(r"\d+", array("index2"))]
    shift = int(re.search(r"#define SHIFT (\d+)", text).group(1))

    def category(cp):
        i = index2[(index1[cp >> shift] << shift) + (cp & ((1 << shift) - 1))]
        return names[records[i]]
    return category


age = icu_age()
CODEPOINTS = [cp for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]


def ranges(pred):
    out, start = [], None
    for cp in range(0x110001):
        ok = cp < 0x110000 and not 0xD800 <= cp <= 0xDFFF and pred(cp)
        if ok and start is None:
            start = cp
        elif not ok and start is not None:
            out.append((start, cp - 1))
            start = None
    return out


def emit_ranges(name, rs, comment):
    print("/* %s */" % comment)
    print("const struct lf_uni_range %s[] = {" % name)
    for a, b in rs:
        print("\t{ 0x%x, 0x%x }," % (a, b))
    print("};")
    print("const size_t %s_len = %d;\n" % (name, len(rs)))


def main():
    print("/* unicode_data.c — generated by scripts/unicode/gen-unicode-data.py; do not edit.")
    print(" * General categories: Unicode 16.0.  Normalization: Unicode 9.0 (see unicode.h). */")
    print('#include "unicode.h"\n')

    # ---- general categories (16.0): one sorted range list with a category each ----
    runs, prev, start = [], None, 0
    for cp in range(0x110001):
        c = CATS.index(ud.category(chr(cp))) if cp < 0x110000 else -1
        if c != prev:
            if prev is not None and prev != 0:
                runs.append((start, cp - 1, prev))
            prev, start = c, cp
    print("/* General category of every assigned code point, Unicode 16.0 (unlisted: Cn). */")
    print("const struct lf_uni_cat_range lf_uni_categories[] = {")
    for a, b, c in runs:
        print("\t{ 0x%x, 0x%x, LF_GC_%s }," % (a, b, CATS[c].upper()))
    print("};")
    print("const size_t lf_uni_categories_len = %d;\n" % len(runs))

    # ---- Alphabetic: L and Nl at 16.0, and ICU's Alphabetic ----
    alpha = icu_alphabetic()
    emit_ranges("lf_uni_alphabetic", ranges(lambda cp: ud.category(chr(cp))[:1] == "L" or ud.category(chr(cp)) == "Nl"
                                            or alpha(cp)),
                "Alphabetic: general category L or Nl (Unicode 16.0) or ICU's Alphabetic property")

    # ---- multi-character case folding ----
    multi = lambda cp: not 0xD800 <= cp <= 0xDFFF and len(chr(cp).casefold()) > 1
    emit_ranges("lf_uni_multi_fold", ranges(multi), "Characters whose full case folding is several characters")
    targets = sorted({chr(cp).casefold() for cp in CODEPOINTS if multi(cp)})
    print("/* Their foldings, UTF-8. */")
    print("const char *const lf_uni_multi_fold_targets[] = {")
    for t in targets:
        print('\t"%s",' % "".join("\\x%02x" % b for b in t.encode("utf-8")))
    print("};")
    print("const size_t lf_uni_multi_fold_targets_len = %d;\n" % len(targets))

    # ---- old punctuation: ASCII punctuation + P as of 8.0 ----
    cat8 = unicode8_category()
    ascii_punct = set(range(0x21, 0x30)) | set(range(0x3a, 0x41)) | set(range(0x5b, 0x61)) | set(range(0x7b, 0x7f))
    emit_ranges("lf_uni_punct_8", ranges(lambda cp: cp in ascii_punct or cat8(cp).startswith("P")),
                "ASCII punctuation and general category P in Unicode 8.0")
    old = (9, 0)

    # ---- normalization, Unicode 9.0 ----
    assigned9 = lambda cp: age(cp) != (0, 0) and age(cp) <= old
    ccc, canon, compat, comps = {}, {}, {}, []
    for cp in CODEPOINTS:
        if not assigned9(cp) or 0xAC00 <= cp <= 0xD7A3:
            continue
        ch = chr(cp)
        c = ud.combining(ch)
        if c:
            ccc[cp] = c
        d = ud.normalize("NFD", ch)
        if d != ch:
            canon[cp] = [ord(x) for x in d]
        k = ud.normalize("NFKD", ch)
        if k != d:
            compat[cp] = [ord(x) for x in k]
        dm = ud.decomposition(ch)
        if dm and not dm.startswith("<"):
            parts = [int(x, 16) for x in dm.split()]
            if len(parts) == 2 and ud.normalize("NFC", chr(parts[0]) + chr(parts[1])) == ch:
                comps.append((parts[0], parts[1], cp))
    comps.sort()

    print("/* Canonical combining classes (Unicode 9.0), sorted. */")
    print("const struct lf_uni_ccc lf_uni_ccc_table[] = {")
    for cp in sorted(ccc):
        print("\t{ 0x%x, %d }," % (cp, ccc[cp]))
    print("};")
    print("const size_t lf_uni_ccc_table_len = %d;\n" % len(ccc))

    pool = []

    def intern(seq):
        off = len(pool)
        pool.extend(seq)
        return off

    entries = []
    for cp in sorted(set(canon) | set(compat)):
        c = canon.get(cp)
        k = compat.get(cp)
        co = intern(c) if c else 0
        ko = intern(k) if k else 0
        entries.append((cp, co, len(c) if c else 0, ko, len(k) if k else 0))
    print("/* Full decompositions (Unicode 9.0): canonical (NFD) and, where it differs, */")
    print("/* compatibility (NFKD); offsets into lf_uni_decomp_pool. Hangul is algorithmic. */")
    print("const struct lf_uni_decomp lf_uni_decomp_table[] = {")
    for cp, co, cn, ko, kn in entries:
        print("\t{ 0x%x, %d, %d, %d, %d }," % (cp, co, cn, ko, kn))
    print("};")
    print("const size_t lf_uni_decomp_table_len = %d;\n" % len(entries))
    print("const uint32_t lf_uni_decomp_pool[] = {")
    for i in range(0, len(pool), 8):
        print("\t" + " ".join("0x%x," % x for x in pool[i:i + 8]))
    print("};\n")

    print("/* Primary composites (Unicode 9.0): (first, second) -> composite, sorted. */")
    print("const struct lf_uni_comp lf_uni_comp_table[] = {")
    for a, b, c in comps:
        print("\t{ 0x%x, 0x%x, 0x%x }," % (a, b, c))
    print("};")
    print("const size_t lf_uni_comp_table_len = %d;" % len(comps))


if __name__ == "__main__":
    main()
