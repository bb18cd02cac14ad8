#!/usr/bin/env python3
"""lf-template on random rows: values of every JSON type where strings,
lists and objects belong, broken tool JSON, odd role orders.  lf-template
must skip or render each row and exit cleanly (status 0 or 1, never a
signal); under `make test-asan` the sanitizers watch every run."""
import json
import os
import random
import subprocess
import sys
import tempfile

BIN = os.environ.get("LF_BIN", os.path.join(os.path.dirname(__file__), "..", "..", "bin"))
rng = random.Random(7)
WORDS = ["hi", "", "<|im_end|>", "<think>\nx\n</think>\n\n", "{{content}}", "é中🌍", "\n", "<tool_call>{}</tool_call>"]


def scalar():
    return rng.choice([rng.choice(WORDS), 0, 1.5, True, None, [], {}, [rng.choice(WORDS)], {"a": 1}])


def call():
    return rng.choice([
        json.dumps({"name": rng.choice(["f", 3, None]), "arguments": rng.choice([{"x": 1}, "s", [1], None])}),
        json.dumps([{"name": "f", "arguments": {}}, {"name": "g", "arguments": {"y": [1.5, None]}}]),
        "not json", json.dumps({"name": "f"}), "[]", json.dumps("str"),
        "<think>\nplan\n</think>\n\n" + json.dumps({"name": "f", "arguments": {}}),
        "pre<tool_call>" + json.dumps({"name": "f", "arguments": {"q": "é"}}) + "</tool_call>post",
    ])


def tools():
    tool = {"name": rng.choice(["f", 7]), "description": scalar(),
            "parameters": rng.choice([{"type": "object", "properties": {"p": {"type": scalar(), "enum": scalar(),
                                       "items": scalar(), "description": scalar()}}, "required": scalar()},
                                      scalar()])}
    return rng.choice([json.dumps([tool]), json.dumps([{"type": "function", "function": tool}]), "[", json.dumps({}),
                       json.dumps([1]), "", json.dumps("x"), scalar()])


def sharegpt_row():
    roles = ["human", "gpt", "function_call", "observation", "system", "other", 5]
    msgs = []
    for i in range(rng.randint(0, 5)):
        role = rng.choice(roles) if rng.random() < 0.3 else ["human", "gpt"][i % 2]
        value = call() if role == "function_call" else (scalar() if rng.random() < 0.2 else rng.choice(WORDS))
        m = {"from": role, "value": value}
        if rng.random() < 0.05:
            del m["value"]
        msgs.append(m if rng.random() > 0.05 else scalar())
    row = {"conversations": msgs if rng.random() > 0.05 else scalar()}
    if rng.random() < 0.5:
        row["tools"] = tools()
    if rng.random() < 0.3:
        row["system"] = scalar()
    return row


def alpaca_row():
    row = {}
    for k in ("instruction", "input", "output", "system", "history"):
        if rng.random() < 0.9:
            row[k] = rng.choice(WORDS) if rng.random() < 0.7 else scalar()
    if rng.random() < 0.3:
        row["history"] = [[rng.choice(WORDS), rng.choice(WORDS)], scalar()]
    return row


def main():
    d = tempfile.mkdtemp()
    with open(os.path.join(d, "share.json"), "w") as f:
        json.dump([sharegpt_row() for _ in range(400)], f)
    with open(os.path.join(d, "alp.json"), "w") as f:
        json.dump([alpaca_row() for _ in range(400)], f)
    bad = 0
    runs = [("sharegpt", "share.json", t) for t in ("qwen", "qwen3", "llama3", "chatglm3", "mistral", "glm4", "default",
                                                     "phi4_mini", "gemma")]
    runs += [("alpaca", "alp.json", t) for t in ("qwen", "llama2", "empty")]
    runs += [("openai", "share.json", "qwen")]
    for fmt, file, t in runs:
        cmd = [os.path.join(BIN, "lf-template"), "-t", t, "-f", fmt, "--columns",
               "prompt=instruction,query=input,response=output,system=system,history=history,messages=conversations,tools=tools",
               "-o", os.path.join(d, "out.lfs"), os.path.join(d, file)]
        p = subprocess.run(cmd, capture_output=True)
        err = p.stderr.decode(errors="replace")
        ok = p.returncode in (0, 1) and "Sanitizer" not in err and "runtime error" not in err
        print(("ok - " if ok else "not ok - ") + "lf-template -t %s -f %s on 400 random rows exits cleanly (%d)" % (t, fmt, p.returncode))
        if not ok:
            bad += 1
            print("#   " + err[-1500:].replace("\n", "\n#   "))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
