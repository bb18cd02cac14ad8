#!/usr/bin/env python3
"""The Jinja chat_template LLaMA-Factory writes into a tokenizer, for every
template lf has and every tokenizer of ../shared/tokenizers.

The oracle is LLaMA-Factory 0.9.5 itself: for each (template, tokenizer) the
tokenizer is loaded as llamafactory.model.load_tokenizer loads it
(AutoTokenizer.from_pretrained(dir, use_fast=True, split_special_tokens=False,
padding_side="right"), as make-pack-goldens.py does), a fresh copy of the
registered template is given to get_template_and_fix_tokenizer (which fixes
the eos / stop words with fix_special_tokens and then, through
fix_jinja_template, sets tokenizer.chat_template where the tokenizer had none
or the template has replace_jinja_template), and the template's
_get_jinja_template(tokenizer) is called on the fixed tokenizer: the string
LLaMA-Factory saves with the tokenizer after training, or the ValueError it
raises (fix_jinja_template then logs it and leaves the tokenizer's own
chat_template alone).

Template names are read from lf's libcommon/template_defs.c.  baichuan2,
which LLaMA-Factory removed in January 2026, is registered here with
LLaMA-Factory's own register_template exactly as 0.9.4 registered it
(user "<reserved_106>{{content}}<reserved_107>", efficient_eos); its cases
carry "registered_here": true.  A few cases repeat three templates with
data_args.default_system set (a system with a single quote, which
_jinja_escape escapes).

Output (checked in, compared by tests/tools/jinja_goldens.py):
tests/golden/jinja-templates.json, an object
  {"llamafactory": version, "transformers": version,
   "tokenizers": {NAME: {"bos_token", "bos_token_id", "eos_token",
                         "eos_token_id", "chat_template": bool}},  (as loaded)
   "cases": [{"template", "tokenizer" (folder under shared/tokenizers),
              "settings" ({} or {"default_system": S}),
              "jinja" (string, or null), "error" (ValueError text, or null),
              "eos_token" (the tokenizer's eos after fix_special_tokens),
              "replace_jinja_template", "had_chat_template",
              "written" (whether the tokenizer's chat_template is now "jinja"),
              ["registered_here": true]}, ...]}
sorted by template, tokenizer, settings; deterministic (json, sorted keys).

Run (needs LLaMA-Factory; not run in CI; about 4 minutes on one core):
  bash scripts/goldens/venv.sh          # once: ~/.cache/lf/goldens-venv
  ~/.cache/lf/goldens-venv/bin/python scripts/goldens/make-jinja-goldens.py [--shared ../shared]
"""
import argparse
import contextlib
import copy
import json
import os
import re
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DISABLE_VERSION_CHECK", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("LLAMAFACTORY_VERBOSITY", "ERROR")  # its "Add pad token" notes, once per case

with contextlib.redirect_stdout(sys.stderr):  # llamafactory logs to stdout while importing
    import llamafactory  # noqa: E402
    import transformers  # noqa: E402
    from transformers import AutoTokenizer  # noqa: E402
    from llamafactory.data.formatter import StringFormatter  # noqa: E402
    from llamafactory.data.template import TEMPLATES, get_template_and_fix_tokenizer, register_template  # noqa: E402

REGISTERED_HERE = set()
if "baichuan2" not in TEMPLATES:
    register_template(
        name="baichuan2",
        format_user=StringFormatter(slots=["<reserved_106>{{content}}<reserved_107>"]),
        efficient_eos=True,
    )
    REGISTERED_HERE.add("baichuan2")

ORIGINAL = {name: copy.deepcopy(t) for name, t in TEMPLATES.items()}

# data_args.default_system cases: a plain template, a system-in-first-turn one, one with a default system
DEFAULT_SYSTEM = "Custom 'quoted' system."
DEFAULT_SYSTEM_TEMPLATES = ["qwen", "llama2", "vicuna"]


def lf_template_names():
    src = open(os.path.join(ROOT, "libcommon", "template_defs.c"), encoding="utf-8").read()
    names = re.findall(r'\{ \.name = "([a-z0-9_]+)"', src)
    if not names:
        sys.exit("no template names found in libcommon/template_defs.c")
    return names


def load_tokenizer(path):
    return AutoTokenizer.from_pretrained(path, use_fast=True, split_special_tokens=False, padding_side="right")


def data_args(template, settings):
    return types.SimpleNamespace(template=template, train_on_prompt=False, tool_format=None,
                                 default_system=settings.get("default_system"), enable_thinking=True,
                                 preserve_thinking=False)


def one_case(name, tokname, path, settings):
    TEMPLATES[name] = copy.deepcopy(ORIGINAL[name])
    tok = load_tokenizer(path)
    had = tok.chat_template is not None
    with contextlib.redirect_stdout(sys.stderr):
        template = get_template_and_fix_tokenizer(tok, data_args(name, settings))
    case = {"template": name, "tokenizer": tokname, "settings": settings, "jinja": None, "error": None,
            "eos_token": tok.eos_token, "replace_jinja_template": bool(template.replace_jinja_template),
            "had_chat_template": had}
    try:
        case["jinja"] = template._get_jinja_template(tok)
    except ValueError as e:
        case["error"] = str(e)
    case["written"] = case["jinja"] is not None and tok.chat_template == case["jinja"]
    # fix_jinja_template's rule, checked against what it did
    assert case["written"] == (case["jinja"] is not None and (not had or case["replace_jinja_template"])), case
    if name in REGISTERED_HERE:
        case["registered_here"] = True
    return case


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "golden", "jinja-templates.json"))
    args = ap.parse_args()
    tokroot = os.path.join(args.shared, "tokenizers")
    toknames = sorted(d for d in os.listdir(tokroot) if os.path.isfile(os.path.join(tokroot, d, "tokenizer.json")))
    names = lf_template_names()
    missing = [n for n in names if n not in TEMPLATES]
    if missing:
        sys.exit("LLaMA-Factory has no template %s" % ", ".join(missing))

    tokenizers = {}
    for tokname in toknames:
        tok = load_tokenizer(os.path.join(tokroot, tokname))
        tokenizers[tokname] = {"bos_token": tok.bos_token, "bos_token_id": tok.bos_token_id,
                               "eos_token": tok.eos_token, "eos_token_id": tok.eos_token_id,
                               "chat_template": tok.chat_template is not None}
    cases = []
    for name in sorted(names):
        settings_list = [{}] + ([{"default_system": DEFAULT_SYSTEM}] if name in DEFAULT_SYSTEM_TEMPLATES else [])
        for tokname in toknames:
            for settings in settings_list:
                cases.append(one_case(name, tokname, os.path.join(tokroot, tokname), settings))
        print("%s: %s" % (name, cases[-1]["error"] or "ok"), file=sys.stderr)
    out = {"llamafactory": llamafactory.__version__, "transformers": transformers.__version__,
           "tokenizers": tokenizers, "cases": cases}
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, sort_keys=True, indent=1)
        f.write("\n")
    nerr = sum(1 for c in cases if c["error"])
    print("%s: %d cases (%d templates x %d tokenizers + default_system), %d raise" %
          (os.path.relpath(args.out, ROOT), len(cases), len(names), len(toknames), nerr), file=sys.stderr)


if __name__ == "__main__":
    main()
