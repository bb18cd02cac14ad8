#!/usr/bin/env python3
# list-recipe-keys.py — print every key LLaMA-Factory accepts in a YAML recipe,
# one per line, sorted.  Its output is tests/golden/llamafactory-keys.txt, the
# list that libcommon/recipe_keys.c must cover exactly (one entry per key).
#
# Run it from outside the source tree (so the installed package is imported)
# with the Python of scripts/goldens/venv.sh (llamafactory 0.9.5, transformers
# 5.5.4, omegaconf), from the repository root:
#
#   DISABLE_VERSION_CHECK=1 ~/.cache/lf/goldens-venv/bin/python \
#       scripts/goldens/list-recipe-keys.py > tests/golden/llamafactory-keys.txt
#
# The keys are the init fields of the dataclasses LLaMA-Factory's parser maps a
# recipe onto (HfArgumentParser ignores fields with init=False): ModelArguments
# and its bases, DataArguments, TrainingArguments (which includes
# transformers.Seq2SeqTrainingArguments), FinetuningArguments and its bases,
# GeneratingArguments and EvaluationArguments.

import contextlib
import dataclasses
import os
import sys


os.environ.setdefault("DISABLE_VERSION_CHECK", "1")
os.environ.pop("USE_MCA", None)  # keep the plain HF TrainingArguments base

# llamafactory's logger writes to stdout (e.g. the "version checking has been
# disabled" warning at import): keep stdout for the key list alone.
with contextlib.redirect_stdout(sys.stderr):
    import transformers
    from llamafactory.extras.env import VERSION
    from llamafactory.hparams import (
        DataArguments,
        EvaluationArguments,
        FinetuningArguments,
        GeneratingArguments,
        ModelArguments,
        TrainingArguments,
    )


def main() -> None:
    print(f"llamafactory {VERSION}, transformers {transformers.__version__}", file=sys.stderr)
    classes = [
        ModelArguments,
        DataArguments,
        TrainingArguments,
        transformers.Seq2SeqTrainingArguments,
        FinetuningArguments,
        GeneratingArguments,
        EvaluationArguments,
    ]
    keys = set()
    for cls in classes:
        keys.update(f.name for f in dataclasses.fields(cls) if f.init)
    for key in sorted(keys):
        print(key)


if __name__ == "__main__":
    main()
