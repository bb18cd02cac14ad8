#!/usr/bin/env python3
"""lf-template's templates against the models' own Jinja chat_template (the
tokenizer_config.json files in ../shared/tokenizers), rendered with jinja2 as
transformers' apply_chat_template does.  An oracle independent of
LLaMA-Factory: where the model's template and LLaMA-Factory's agree, lf must
agree with both.  Compared: the prompt of every conversation of
tests/data/chats.json (lf-template --prompt-only against the Jinja template
with add_generation_prompt) and, where the Jinja template renders whole
conversations, the full text."""
import json
import os
import subprocess
import sys

try:
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment
except ImportError:
    print("not ok - jinja2 is importable (run scripts/oracle-venv.sh; tests/run.sh uses its python)")
    sys.exit(1)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("LF_BIN", os.path.join(ROOT, "bin"))
TOK = os.environ.get("LF_SHARED_TOKENIZERS") or next(
    (p for p in (os.path.join(ROOT, "shared", "tokenizers"), os.path.join(ROOT, "..", "shared", "tokenizers"))
     if os.path.isdir(p)), os.path.join(ROOT, "..", "shared", "tokenizers"))

# (tokenizer folder, lf template, extra Jinja variables, compare full conversations too)
MODELS = [
    ("llama3", "llama3", {}, False),            # its template always ends with the assistant header
    ("gemma3", "gemma3", {}, True),
    ("deepseek_v3", "deepseek3", {}, True),
    ("qwen3", "qwen3", {"enable_thinking": True}, False),    # Qwen3 puts thoughts on the last turn only
    ("qwen3", "qwen3_nothink", {"enable_thinking": True}, False),
]


def token_text(v):
    return v["content"] if isinstance(v, dict) else v


def jinja_render(template, messages, add_generation_prompt, bos, eos, extra):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env.globals["raise_exception"] = raise_exception
    env.filters["tojson"] = lambda x, indent=None: json.dumps(x, ensure_ascii=False, indent=indent)
    return env.from_string(template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                            bos_token=bos or "", eos_token=eos or "", **extra)


def lf_texts(template, tokdir, prompt_only, specials):
    cmd = [os.path.join(BIN, "lf-template"), "-t", template, "--dataset-dir", os.path.join(ROOT, "tests", "data"),
           "--dataset", "chats"] + (["--prompt-only"] if prompt_only else [])
    p1 = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    p2 = subprocess.run([os.path.join(BIN, "lf-inspect"), "--tokenizer", tokdir], stdin=p1.stdout, capture_output=True)
    p1.stdout.close()
    p1.wait()
    out = {}
    for line in p2.stdout.decode().splitlines():
        r = json.loads(line)
        if prompt_only:  # the prompt alone: drop what the response added
            resp = "".join(e.get("text", e.get("token", specials.get(e.get("special")))) for e in r["response"])
            out[r["row"]] = r["text"][: len(r["text"]) - len(resp)] if resp else r["text"]
        else:
            out[r["row"]] = r["text"]
    return out


def messages_of(row):
    msgs = []
    if row.get("system"):
        msgs.append({"role": "system", "content": row["system"]})
    for m in row["conversations"]:
        msgs.append({"role": "user" if m["from"] == "human" else "assistant", "content": m["value"]})
    return msgs


def main():
    chats = json.load(open(os.path.join(ROOT, "tests", "data", "chats.json")))
    bad = 0
    for tokname, template, extra, full in MODELS:
        tokdir = os.path.join(TOK, tokname)
        cfg = json.load(open(os.path.join(tokdir, "tokenizer_config.json")))
        bos, eos = token_text(cfg.get("bos_token")), token_text(cfg.get("eos_token"))
        modes = [True, False] if full else [True]
        for prompt_only in modes:
            ours = lf_texts(template, tokdir, prompt_only, {"bos": bos or "", "eos": eos or "<|endoftext|>"})
            problems = []
            for row, chat in enumerate(chats):
                msgs = messages_of(chat)
                want = jinja_render(cfg["chat_template"], msgs[:-1] if prompt_only else msgs, prompt_only, bos, eos, extra)
                if ours.get(row) != want:
                    problems.append("row %d:\n#   lf    %r\n#   jinja %r" % (row, ours.get(row), want))
            desc = "%s %s matches %s's own chat_template" % (template, "prompts" if prompt_only else "conversations", tokname)
            if problems:
                bad += 1
                print("not ok - " + desc)
                print("#   " + "\n#   ".join(problems[:2]))
            else:
                print("ok - " + desc)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
