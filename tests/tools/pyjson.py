#!/usr/bin/env python3
"""lf's Python-compatible JSON writer (libcommon/pyjson.c) against Python
itself: json.dumps(ensure_ascii=False), with indent=4, str() and repr() of
random and hand-picked values.  TAP-style output."""
import json
import os
import random
import struct
import subprocess
import sys

UNITS = os.environ.get("LF_UNITS", os.path.join(os.path.dirname(__file__), "..", "..", "build", "dyn", "tests"))
HELPER = os.path.join(UNITS, "helpers", "pyjson-dump")

rng = random.Random(20261127)
ALPHABET = ["a", "Z", " ", "'", '"', "\\", "\n", "\t", "\r", "\x00", "\x01", "\x1f", "\x7f", "\x85", "\xa0",
            "é", "中", "🌍", "\u2028", "\u200b", "\ufeff", "\U0001f600", "{", "}", "\u0301", "\u3000"]


def rand_str(key=False):
    # jansson cannot hold NUL in object keys (such rows are refused as bad records)
    chars = [c for c in ALPHABET if not (key and c == "\x00")]
    return "".join(rng.choice(chars) for _ in range(rng.randint(0, 12)))


def rand_float():
    kind = rng.random()
    if kind < 0.3:
        return struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
    if kind < 0.6:
        return rng.uniform(-1e6, 1e6)
    return rng.choice([0.0, -0.0, 1.0, 0.1, 1e16, 1e15, 1e-4, 1e-5, 123456789012345678.0, 5e-324,
                       1.7976931348623157e308, 2.5, 0.30000000000000004, 100.0, 1e22, 9.999999999999999e15])


def rand_value(depth=0):
    r = rng.random()
    if depth > 3 or r < 0.5:
        choice = rng.randrange(6)
        if choice == 0:
            return rand_str()
        if choice == 1:
            return rng.randint(-2**63, 2**63 - 1)
        if choice == 2:
            f = rand_float()
            return f if f == f and abs(f) != float("inf") else 1.5
        return [True, False, None][choice - 3]
    if r < 0.75:
        return [rand_value(depth + 1) for _ in range(rng.randint(0, 4))]
    return {rand_str(key=True): rand_value(depth + 1) for _ in range(rng.randint(0, 4))}


def main():
    values = [rand_value() for _ in range(3000)]
    values += [{"name": "get_weather", "arguments": {"city": "Paris", "days": [1, 2.5, 1e20]}}, [], {}, "", 0, -0.0]
    lines = [json.dumps(v, ensure_ascii=False) for v in values]
    out = subprocess.run([HELPER], input=("\n".join(lines) + "\n").encode(), capture_output=True)
    if out.returncode != 0:
        print("not ok - pyjson-dump runs: " + out.stderr.decode().strip())
        return 1
    data = out.stdout
    pos = 0

    def take():
        nonlocal pos
        nl = data.index(b"\n", pos)
        n = int(data[pos:nl])
        s = data[nl + 1:nl + 1 + n].decode("utf-8")
        pos = nl + 2 + n
        return s

    bad = {"dumps": [], "indent": [], "str": [], "repr": []}
    for line in lines:
        v = json.loads(line)
        want = {"dumps": json.dumps(v, ensure_ascii=False), "indent": json.dumps(v, ensure_ascii=False, indent=4),
                "str": str(v), "repr": repr(v)}
        for k in ("dumps", "indent", "str", "repr"):
            got = take()
            if got != want[k] and len(bad[k]) < 3:
                bad[k].append((line, got, want[k]))
    status = 0
    for k, desc in (("dumps", "json.dumps(v, ensure_ascii=False)"), ("indent", "json.dumps(v, indent=4)"),
                    ("str", "str(v)"), ("repr", "repr(v)")):
        if bad[k]:
            status = 1
            print("not ok - %s matches Python on %d values" % (desc, len(lines)))
            for line, got, want in bad[k]:
                print("#   input %s\n#   lf     %r\n#   python %r" % (line[:200], got[:200], want[:200]))
        else:
            print("ok - %s matches Python on %d values" % (desc, len(lines)))
    return status


if __name__ == "__main__":
    sys.exit(main())
