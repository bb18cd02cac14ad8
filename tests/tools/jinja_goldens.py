#!/usr/bin/env python3
"""lf-template --jinja against LLaMA-Factory's own Jinja chat_templates
(tests/golden/jinja-templates.json, scripts/goldens/make-jinja-goldens.py),
and lf's Jinja rendered with jinja2 against lf-template's own text.

1. For every golden case (each template lf has x each tokenizer of
   ../shared/tokenizers, a few with --default-system): lf-template -t T
   --jinja DIR prints exactly LLaMA-Factory's _get_jinja_template string (and
   one newline), notes on stderr exactly when LLaMA-Factory's
   fix_jinja_template would keep the tokenizer's own chat_template, and fails
   (status 1) where LLaMA-Factory raises.
2. The goldens cover every template of lf-template --list-templates.
3. Independently of LLaMA-Factory: lf's Jinja rendered with jinja2 (as
   transformers' apply_chat_template renders) on the conversations of
   tests/data/chats.json equals lf-template's text for them, the bos and
   eos spelled as the golden's tokenizer has them: the prompt
   (--prompt-only, the Jinja given the conversation without its last
   answer) for every template, and the whole conversation where the two
   agree by design: not for reasoning templates, whose Jinja has no empty
   thought.  (efficient_eos templates agree: the eos LLaMA-Factory adds after
   the last answer is lf-pack's, not in lf-template's records.)
"""
import concurrent.futures
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
GOLDEN = os.path.join(ROOT, "tests", "golden", "jinja-templates.json")
LF_TEMPLATE = os.path.join(BIN, "lf-template")

bad = 0


def report(ok, desc, detail=None):
    global bad
    print(("ok - " if ok else "not ok - ") + desc)
    if not ok:
        bad += 1
        if detail:
            print("#   " + "\n#   ".join(str(detail).splitlines()[:6]))


def case_name(c):
    extra = " --default-system %r" % c["settings"]["default_system"] if c["settings"].get("default_system") else ""
    return "%s with %s%s" % (c["template"], c["tokenizer"], extra)


def run_jinja(c):
    cmd = [LF_TEMPLATE, "-t", c["template"], "--jinja", os.path.join(TOK, c["tokenizer"])]
    if c["settings"].get("default_system") is not None:
        cmd += ["--default-system", c["settings"]["default_system"]]
    p = subprocess.run(cmd, capture_output=True)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def check_case(c, result):
    rc, out, err = result
    name = case_name(c)
    if c["error"] is not None:
        ok = rc == 1 and out == "" and "Dict is not supported" in err
        report(ok, "%s: lf-template --jinja fails as LLaMA-Factory does (%s)" % (name, c["error"]),
               "status %d, stderr %r" % (rc, err))
        return None
    if rc != 0 or out != c["jinja"] + "\n":
        detail = "status %d, stderr %r" % (rc, err)
        if rc == 0:
            got = out[:-1] if out.endswith("\n") else out
            i = next((k for k in range(min(len(got), len(c["jinja"]))) if got[k] != c["jinja"][k]),
                     min(len(got), len(c["jinja"])))
            detail = "first difference at %d:\nlf  %r\nLLaMA-Factory %r" % (i, got[max(0, i - 40):i + 60],
                                                                           c["jinja"][max(0, i - 40):i + 60])
        report(False, "%s: lf-template --jinja equals LLaMA-Factory's" % name, detail)
        return None
    noted = "chat_template of its own" in err
    report(noted == (not c["written"]),
           "%s: lf-template --jinja equals LLaMA-Factory's%s" %
           (name, "" if c["written"] else " (LLaMA-Factory keeps the tokenizer's own, as lf notes)"),
           "stderr %r, LLaMA-Factory writes it: %s" % (err, c["written"]))
    return out[:-1]


def jinja_render(template, messages, bos, eos):
    """As transformers' apply_chat_template renders (its environment and globals)."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env.globals["raise_exception"] = raise_exception
    env.filters["tojson"] = lambda x, indent=None: json.dumps(x, ensure_ascii=False, indent=indent)
    return env.from_string(template).render(messages=messages, add_generation_prompt=False,
                                            bos_token=bos or "", eos_token=eos or "")


def messages_of(row):
    msgs = []
    if row.get("system"):
        msgs.append({"role": "system", "content": row["system"]})
    for m in row["conversations"]:
        msgs.append({"role": "user" if m["from"] == "human" else "assistant", "content": m["value"]})
    return msgs


def lf_records(template):
    """lf-template --prompt-only's records of chats.json, by row."""
    cmd = [LF_TEMPLATE, "-t", template, "--prompt-only", "--dataset-dir", os.path.join(ROOT, "tests", "data"),
           "--dataset", "chats"]
    p1 = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    p2 = subprocess.run([os.path.join(BIN, "lf-inspect")], stdin=p1.stdout, capture_output=True)
    p1.stdout.close()
    p1.wait()
    if p1.returncode or p2.returncode:
        return None
    return {r["row"]: r for r in map(json.loads, p2.stdout.decode().splitlines())}


def elements_text(elements, bos, eos):
    out = []
    for e in elements:
        if "text" in e:
            out.append(e["text"])
        elif "token" in e:
            out.append(e["token"])
        elif e.get("special") == "bos":
            out.append(bos or "")
        elif e.get("special") == "eos":
            out.append(eos or "")
        else:
            raise ValueError("unexpected element %r" % (e,))
    return "".join(out)


def main():
    golden = json.load(open(GOLDEN, encoding="utf-8"))
    cases = golden["cases"]
    if not os.path.isdir(TOK):
        report(False, "the shared tokenizers are at %s (set LF_SHARED_TOKENIZERS)" % TOK)
        return 1

    # 1. lf-template --jinja, every case (in parallel: each loads a tokenizer)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        results = list(pool.map(run_jinja, cases))
    ours = {}
    for c, res in zip(cases, results):
        j = check_case(c, res)
        if j is not None and not c["settings"]:
            ours[(c["template"], c["tokenizer"])] = j

    # 2. every template lf has is in the goldens
    p = subprocess.run([LF_TEMPLATE, "--list-templates"], capture_output=True, text=True)
    listed = sorted(line.split("\t")[0] for line in p.stdout.splitlines() if line)
    covered = sorted({c["template"] for c in cases})
    report(p.returncode == 0 and listed == covered,
           "the goldens cover every template of lf-template --list-templates (%d)" % len(listed),
           "listed %s\ngoldens %s" % (sorted(set(listed) - set(covered)), sorted(set(covered) - set(listed))))

    # 3. lf's Jinja rendered with jinja2 against lf-template's own text
    chats = json.load(open(os.path.join(ROOT, "tests", "data", "chats.json"), encoding="utf-8"))
    toks = golden["tokenizers"]
    templates = sorted({t for t, _ in ours})
    info = {}
    p = subprocess.run([LF_TEMPLATE, "--list-templates"], capture_output=True, text=True)
    for line in p.stdout.splitlines():
        fields = line.split("\t")
        info[fields[0]] = set(fields[1:])
    eos_of = {(c["template"], c["tokenizer"]): c["eos_token"] for c in cases if not c["settings"]}
    for t in templates:
        recs = lf_records(t)
        if recs is None:
            report(False, "%s: lf-template --prompt-only renders tests/data/chats.json" % t)
            continue
        full = "reasoning" not in info.get(t, set())
        problems = []
        ntok = 0
        for (tt, tokname), jinja in sorted(ours.items()):
            if tt != t:
                continue
            ntok += 1
            bos, eos = toks[tokname]["bos_token"], eos_of[(t, tokname)]
            for row, chat in enumerate(chats):
                msgs = messages_of(chat)
                r = recs.get(row)
                if r is None:
                    problems.append("%s row %d: no record" % (tokname, row))
                    continue
                prompt = elements_text(r["prompt"], bos, eos)
                try:
                    want = jinja_render(jinja, msgs[:-1], bos, eos)
                    want_full = jinja_render(jinja, msgs, bos, eos) if full else None
                except jinja2.exceptions.TemplateError as e:
                    problems.append("%s: jinja2: %s" % (tokname, e))
                    break
                if prompt != want:
                    problems.append("%s row %d prompt:\n  lf    %r\n  jinja %r" % (tokname, row, prompt, want))
                if full:
                    text = prompt + elements_text(r["response"], bos, eos)
                    if text != want_full:
                        problems.append("%s row %d conversation:\n  lf    %r\n  jinja %r" %
                                        (tokname, row, text, want_full))
        report(not problems and ntok > 0,
               "%s: its Jinja rendered with jinja2 equals lf-template's %s of chats.json (%d tokenizers)" %
               (t, "prompts and conversations" if full else "prompts", ntok), "\n".join(problems[:2]))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
