#!/usr/bin/env python3
"""libcommon/safetensors against the safetensors Python package (0.8.0, the
Rust reader and writer) and numpy, through tests/helpers/st-dump.
TAP-style output.

1. Python writes, lf reads: safetensors.numpy.save_file with every dtype
   both know (F32 F16 F64 I8 U8 I16 I32 I64 BOOL), 0-d, empty and 8-d
   tensors, random bit patterns (f16 subnormals, infinities, NaNs), names
   and metadata with escapes and UTF-8; lf gives the same names, dtypes,
   shapes and f32 values (bit for bit against numpy's astype(float32)) and
   metadata.  BF16 (numpy has none) from a file built by hand.  A sharded
   folder made by hand (a save_file per shard plus an index).
2. lf writes, Python reads: the same bytes as safetensors.numpy.save for
   the same tensors (one metadata key: the Rust writer orders several in
   hash order), metadata kept, values identical; sharded writes split as
   huggingface_hub splits, the index as transformers writes it
   (json.dumps(indent=2, sort_keys=True) + newline), every shard loadable
   and byte-identical to Python's save of its tensors.
3. Odd files: what the Rust reader refuses (holes, overlaps, trailing
   bytes, truncation, bad JSON, ...) lf refuses; what it accepts (blanks
   around the header, null metadata, unknown fields) lf accepts.
"""
import json
import os
import random
import struct
import subprocess
import sys
import tempfile

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save, save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
UNITS = os.environ.get("LF_UNITS", os.path.join(ROOT, "build", "dyn", "tests"))
DUMP = os.path.join(UNITS, "helpers", "st-dump")

rng = np.random.default_rng(20261203)
failures = 0


def report(good, name, detail=()):
    global failures
    print(("ok - " if good else "not ok - ") + name)
    if not good:
        failures += 1
        for d in detail:
            print("#   " + str(d)[:400])


def st_read(path, keys=()):
    """(parsed JSON of st-dump read, None) or (None, error message)."""
    out = subprocess.run([DUMP, "read", path] + list(keys), capture_output=True, text=True)
    if out.returncode != 0:
        return None, out.stderr.strip()
    return json.loads(out.stdout), None


def st_write(folder, tensors, metadata=(), max_shard=0, base="model"):
    """Have lf write tensors (a list of (name, dtype string, shape, bytes))."""
    spec = {"metadata": [list(kv) for kv in metadata],
            "tensors": [{"name": n, "dtype": d, "shape": list(s), "hex": b.hex()} for n, d, s, b in tensors]}
    path = folder.rstrip("/") + ".spec.json"
    with open(path, "w") as f:
        json.dump(spec, f)
    out = subprocess.run([DUMP, "write", folder, base, str(max_shard), path], capture_output=True, text=True)
    os.unlink(path)
    return out.stderr.strip() if out.returncode else None


DTYPE_NAMES = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.float64): "F64",
               np.dtype(np.int8): "I8", np.dtype(np.uint8): "U8", np.dtype(np.int16): "I16",
               np.dtype(np.int32): "I32", np.dtype(np.int64): "I64", np.dtype(np.bool_): "BOOL"}


def f32_bits(a):
    with np.errstate(over="ignore"):  # f64 beyond f32: inf, as in C
        f = np.ascontiguousarray(a).astype(np.float32)
    return [int(x) for x in f.reshape(-1).view(np.uint32)]


def random_array(dtype, shape):
    """Random bit patterns for floats (quiet NaNs only: a signalling NaN's
    f32 image depends on the converting instruction), full-range integers."""
    n = int(np.prod(shape, dtype=np.int64))
    if dtype == np.bool_:
        return rng.integers(0, 2, n).astype(np.bool_).reshape(shape)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, n, dtype=dtype, endpoint=True).reshape(shape)
    width = np.dtype(dtype).itemsize * 8
    udt = {16: np.uint16, 32: np.uint32, 64: np.uint64}[width]
    bits = rng.integers(0, 2**width - 1, n, dtype=udt, endpoint=True)
    mant = {16: 10, 32: 23, 64: 52}[width]
    expo = (bits >> udt(mant)) & udt((1 << (width - mant - 1)) - 1)
    nan = (expo == udt((1 << (width - mant - 1)) - 1)) & ((bits & udt((1 << mant) - 1)) != 0)
    bits[nan] |= udt(1 << (mant - 1))  # quiet
    return bits.view(dtype).reshape(shape)


def python_tensors():
    t = {}
    for dt in [np.float32, np.float16, np.float64, np.int8, np.uint8, np.int16, np.int32, np.int64, np.bool_]:
        name = np.dtype(dt).name
        t["rand." + name] = random_array(dt, (int(rng.integers(1, 9)), int(rng.integers(1, 9))))
        t["scalar." + name] = random_array(dt, ())
        t["empty." + name] = np.zeros((0, 3), dtype=dt)
    t["f16.special"] = np.array([0x0001, 0x03FF, 0x0400, 0x3C00, 0x7BFF, 0x7C00, 0xFC00, 0x8000, 0x7E00, 0xFE01],
                                dtype=np.uint16).view(np.float16)
    t["f64.rounding"] = np.array([1 + 2**-24, 1 + 3 * 2**-25, 1e39, -1e-46, 3.4028235e38, 2**-149, 2**-150],
                                 dtype=np.float64)
    t["i64.rounding"] = np.array([2**24 + 1, 2**53 + 1, -(2**63), 2**63 - 1, 16777217 * 3], dtype=np.int64)
    t["eight.dims"] = random_array(np.float32, (1, 2, 1, 3, 1, 2, 1, 2))
    t["layers.10.w"] = random_array(np.float16, (4,))
    t["layers.2.w"] = random_array(np.float16, (4,))
    t['quote"back\\slash\ttab'] = random_array(np.int32, (2,))
    t["ünïcödé.中文"] = random_array(np.float32, (3,))
    return t


def compare(got, tensors, label, files=None):
    """got: st-dump's output; tensors: name -> numpy array (or (dtype, shape,
    bits) for hand-made BF16)."""
    bad = []
    by_name = {t["name"]: t for t in got["tensors"]}
    if sorted(by_name) != sorted(tensors) or len(got["tensors"]) != len(tensors):
        bad.append("names: %r vs %r" % (sorted(by_name), sorted(tensors)))
    for name, want in tensors.items():
        g = by_name.get(name)
        if g is None:
            continue
        if isinstance(want, tuple):
            dtype, shape, bits = want
        else:
            dtype, shape, bits = DTYPE_NAMES[want.dtype], list(want.shape), f32_bits(want)
        if g["dtype"] != dtype or g["shape"] != shape or g["bits"] != bits:
            bad.append("%s: %s %s %s vs %s %s %s" % (name, g["dtype"], g["shape"], g["bits"][:6], dtype, shape,
                                                     bits[:6]))
        if files and g["file"] != files[name]:
            bad.append("%s: in %s, expected %s" % (name, g["file"], files[name]))
    report(not bad, label, bad[:5])


def check_python_writes(tmp):
    tensors = python_tensors()
    meta = {"format": "pt", "note": 'a "quoted"\nvalue é 中', "empty": ""}
    path = os.path.join(tmp, "py.safetensors")
    save_file(tensors, path, metadata=meta)
    got, err = st_read(path, list(meta) + ["absent"])
    if not got:
        report(False, "lf reads a file safetensors.numpy.save_file wrote", [err])
        return
    compare(got, tensors, "lf reads what save_file wrote: %d tensors, every dtype, 0-d, empty, 8-d, "
                          "special and random values bit for bit" % len(tensors))
    want_meta = dict(meta, absent=None)
    report(got["metadata"] == want_meta, "lf reads save_file's metadata", [got["metadata"]])
    # the reader keeps the file's order: save_file's (dtype width, then name)
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    order = [k for k in header if k != "__metadata__"]
    report([t["name"] for t in got["tensors"]] == order, "lf lists tensors in the file's order")

    # BF16 by hand: a header and the raw upper halves of f32 values
    values = random_array(np.float32, (5, 3))
    halves = (values.view(np.uint32) >> 16).astype(np.uint16)
    raw = halves.tobytes()
    hdr = json.dumps({"__metadata__": {"format": "pt"},
                      "w": {"dtype": "BF16", "shape": [5, 3], "data_offsets": [0, len(raw)]}},
                     separators=(",", ":")).encode()
    hdr += b" " * (-len(hdr) % 8)
    path = os.path.join(tmp, "bf16.safetensors")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hdr)) + hdr + raw)
    with safe_open(path, "np") as f:
        py_ok = f.get_slice("w").get_dtype() == "BF16" and f.get_slice("w").get_shape() == [5, 3]
    want = [int(h) << 16 for h in halves.reshape(-1)]
    got, err = st_read(path)
    if got:
        compare(got, {"w": ("BF16", [5, 3], want)}, "BF16: lf reads the upper halves of f32 (the file "
                                                    "safetensors opens as BF16 [5, 3]: %s)" % py_ok)
    else:
        report(False, "BF16 file read", [err])

    # a sharded folder made by hand, as transformers saves one
    folder = os.path.join(tmp, "handmade")
    os.mkdir(folder)
    names = sorted(tensors)
    shards = [names[0:10], names[10:25], names[25:]]
    files = {}
    for i, part in enumerate(shards):
        fname = "model-%05d-of-%05d.safetensors" % (i + 1, len(shards))
        save_file({k: tensors[k] for k in part}, os.path.join(folder, fname), metadata={"format": "pt"})
        files.update({k: fname for k in part})
    index = {"metadata": {"total_size": sum(t.nbytes for t in tensors.values())}, "weight_map": files}
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")
    got, err = st_read(folder, ["format"])
    if got:
        compare(got, tensors, "lf reads a hand-made sharded folder (3 shards + index)", files)
        report(got["metadata"] == {"format": "pt"}, "sharded folder: metadata of the first shard")
    else:
        report(False, "lf reads a hand-made sharded folder", [err])


def as_spec(tensors):
    return [(n, DTYPE_NAMES[a.dtype], a.shape, np.ascontiguousarray(a).tobytes()) for n, a in tensors.items()]


def same_arrays(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def check_lf_writes(tmp):
    tensors = python_tensors()
    folder = os.path.join(tmp, "lf-single")
    err = st_write(folder, as_spec(tensors), [("format", "pt")])
    if err:
        report(False, "lf writes a single file", [err])
        return
    path = os.path.join(folder, "model.safetensors")
    with open(path, "rb") as f:
        mine = f.read()
    theirs = save(tensors, metadata={"format": "pt"})
    report(mine == theirs, "lf's file is byte-identical to safetensors.numpy.save's (%d bytes)" % len(theirs),
           ["lf %d bytes, Python %d" % (len(mine), len(theirs)), mine[:200], theirs[:200]])
    loaded = load_file(path)
    bad = [k for k in tensors if k not in loaded or not same_arrays(loaded[k], tensors[k])]
    report(not bad and len(loaded) == len(tensors), "load_file reads lf's file with identical values", bad)
    n = struct.unpack("<Q", mine[:8])[0]
    report(n % 8 == 0 and mine[8 + n - 1:8 + n] in (b"}", b" "), "lf's header is padded to a multiple of 8")

    # several metadata keys and BF16
    meta = [("format", "pt"), ("zeta", "1"), ("alpha", 'x "y"\n\u00e9'), ("empty", "")]
    halves = rng.integers(0, 2**16, 12, dtype=np.uint16)
    spec = as_spec({"a": tensors["rand.float32"]}) + [("w.bf16", "BF16", (3, 4), halves.tobytes())]
    folder = os.path.join(tmp, "lf-meta")
    err = st_write(folder, spec, meta)
    path = os.path.join(folder, "model.safetensors")
    if err:
        report(False, "lf writes metadata and BF16", [err])
        return
    with safe_open(path, "np") as f:
        got_meta = f.metadata()
        sl = f.get_slice("w.bf16")
        bf = (sl.get_dtype(), sl.get_shape())
        a_ok = same_arrays(f.get_tensor("a"), tensors["rand.float32"])
    report(got_meta == dict(meta), "safe_open reads lf's metadata (4 keys, escapes, UTF-8)", [got_meta])
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        body = f.read()
    b, e = header["w.bf16"]["data_offsets"]
    report(bf == ("BF16", [3, 4]) and body[b:e] == halves.tobytes() and a_ok,
           "BF16 written by lf: dtype, shape and bytes as given", [bf])

    check_lf_shards(tmp, tensors)


def split(sizes, limit):
    """huggingface_hub's split_state_dict_into_shards_factory, in order."""
    shards, cur, size = [], [], 0
    for i, s in enumerate(sizes):
        if cur and size + s > limit:
            shards.append(cur)
            cur, size = [], 0
        cur.append(i)
        size += s
    if cur:
        shards.append(cur)
    return shards


def check_lf_shards(tmp, tensors):
    names = list(tensors)
    sizes = [tensors[k].nbytes for k in names]
    for limit in (64, 200, max(sizes), sum(sizes) // 2):
        folder = os.path.join(tmp, "lf-shards-%d" % limit)
        err = st_write(folder, as_spec(tensors), [("format", "pt")], max_shard=limit)
        if err:
            report(False, "lf writes shards of at most %d bytes" % limit, [err])
            continue
        parts = split(sizes, limit)
        bad = []
        fnames = ["model-%05d-of-%05d.safetensors" % (i + 1, len(parts)) for i in range(len(parts))]
        if len(parts) == 1:
            fnames = ["model.safetensors"]
        listing = sorted(os.listdir(folder))
        want_listing = sorted(fnames + (["model.safetensors.index.json"] if len(parts) > 1 else []))
        if listing != want_listing:
            bad.append("files %r, expected %r" % (listing, want_listing))
        weight_map = {}
        for fname, part in zip(fnames, parts):
            sub = {names[i]: tensors[names[i]] for i in part}
            weight_map.update({k: fname for k in sub})
            path = os.path.join(folder, fname)
            if not os.path.exists(path):
                continue
            with open(path, "rb") as f:
                if f.read() != save(sub, metadata={"format": "pt"}):
                    bad.append("%s differs from save() of its tensors" % fname)
            loaded = load_file(path)
            if set(loaded) != set(sub) or any(not same_arrays(loaded[k], sub[k]) for k in sub):
                bad.append("%s: load_file values differ" % fname)
        if len(parts) > 1:
            index = {"metadata": {"total_size": sum(sizes)}, "weight_map": weight_map}
            want = json.dumps(index, indent=2, sort_keys=True) + "\n"
            path = os.path.join(folder, "model.safetensors.index.json")
            got = open(path, encoding="utf-8").read() if os.path.exists(path) else None
            if got != want:
                bad.append("index differs: %r" % (got or "")[:300])
        got, err = st_read(folder)
        if not got:
            bad.append("lf cannot read its own folder: %s" % err)
        elif sorted(t["name"] for t in got["tensors"]) != sorted(names):
            bad.append("lf reads back other names")
        report(not bad, "lf's shards of at most %d bytes: %d files split as huggingface_hub, index as "
                        "transformers writes it, each shard identical to save() of its tensors"
               % (limit, len(parts)), bad[:5])


def raw_file(path, header, data):
    h = header if isinstance(header, bytes) else header.encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


def python_accepts(path):
    try:
        load_file(path)
        return True
    except Exception:
        return False


F32x2 = struct.pack("<2f", 1, 2)
ENTRY = '{"dtype":"F32","shape":[2],"data_offsets":[0,8]}'
ODD = [
    ("a hole", '{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', F32x2),
    ("bytes after the last tensor", '{"a":%s}' % ENTRY, F32x2 + b"\0\0\0\0"),
    ("overlapping tensors", '{"a":%s,"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}' % ENTRY, F32x2),
    ("truncated data", '{"a":%s}' % ENTRY, F32x2[:6]),
    ("size not numel * dtype size", '{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', F32x2),
    ("end before begin", '{"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}', F32x2),
    ("NUL padding", '{"a":%s}\0\0' % ENTRY, F32x2),
    ("text after the object", '{"a":%s} x' % ENTRY, F32x2),
    ("unknown dtype", '{"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}}', F32x2),
    ("shape with a fraction", '{"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}', F32x2),
    ("negative shape", '{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}', F32x2),
    ("metadata with a number", '{"__metadata__":{"k":1},"a":%s}' % ENTRY, F32x2),
    ("missing shape", '{"a":{"dtype":"F32","data_offsets":[0,8]}}', F32x2),
    ("malformed JSON", '{"a":%s' % ENTRY, F32x2),
    ("a JSON array", '[]', b""),
    ("blanks around the header", ' \n{"a":%s}\t\r\n  ' % ENTRY, F32x2),
    ("null metadata", '{"__metadata__":null,"a":%s}' % ENTRY, F32x2),
    ("unknown fields, any field order",
     '{"a":{"data_offsets":[0,8],"x":{"y":[1]},"shape":[2],"dtype":"F32"}}', F32x2),
    ("empty tensors sharing an offset", '{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},'
                                        '"b":{"dtype":"I64","shape":[2,0],"data_offsets":[0,0]},'
                                        '"c":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}', F32x2[:4]),
    ("no tensors", '{}', b""),
]


def check_odd_files(tmp):
    for label, header, data in ODD:
        path = os.path.join(tmp, "odd.safetensors")
        raw_file(path, header, data)
        py = python_accepts(path)
        got, err = st_read(path)
        named = got is not None or "odd.safetensors" in err
        report((got is not None) == py and named,
               "%s: safetensors %s it, lf too" % (label, "accepts" if py else "refuses"),
               ["lf: %s" % (err or "accepted")])


def main():
    if not os.access(DUMP, os.X_OK):
        report(False, "%s is built (run make)" % DUMP)
        return 1
    with tempfile.TemporaryDirectory(prefix="lf-st-oracle-") as tmp:
        check_python_writes(tmp)
        check_lf_writes(tmp)
        check_odd_files(tmp)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
