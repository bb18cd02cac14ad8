#!/usr/bin/env bash
# scripts/goldens/venv.sh — the virtualenv in which LLaMA-Factory 0.9.5 itself
# runs on the CPU, for the scripts that write goldens from it
# (make-template-goldens.py, list-recipe-keys.py) and for the benchmarks' peer.
# Not used by CI: the goldens it makes are checked in.
# Usage: bash scripts/goldens/venv.sh [VENV_DIR]   (default ~/.cache/lf/goldens-venv)
# Needs: python3 >= 3.11 (LLaMA-Factory uses StrEnum), PyPI reachable. Result is ~6.1 GB.
#
# Everything is installed with --no-deps and exact pins, so pip never pulls in
# the rest of torch's CUDA stack or llamafactory's full (webui/train) dependency set.
# PyPI's x86_64 torch wheel is CUDA-linked: libtorch_cuda.so / libtorch_python.so have
# DT_NEEDED on cudart, cublas(Lt), cudnn, cufft, cufile, curand, cusparse(+nvjitlink),
# cusparseLt, nccl, nvshmem, cupti, so those nvidia wheels are required just to
# `import torch` (even with no GPU). Left out on purpose, since they are only loaded lazily:
# nvidia-cusolver-cu12 (libtorch_cuda_linalg.so), nvidia-cuda-nvrtc-cu12 (libcaffe2_nvrtc.so),
# nvidia-nvtx-cu12 (optional) and triton. `pip check` therefore reports those four
# missing for torch, plus llamafactory's unused extras (gradio, trl, omegaconf, ...). That is expected.
set -euo pipefail
VENV="${1:-${LF_GOLDENS_VENV:-$HOME/.cache/lf/goldens-venv}}"
PIP="$VENV/bin/pip"

python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q pip==26.3

# 1) torch + torchaudio (same version), without their dependency lists
"$PIP" install --no-deps torch==2.9.1 torchaudio==2.9.1

# 2) the CUDA runtime libs that libtorch links at load time (exact versions from torch 2.9.1's metadata)
"$PIP" install --no-deps \
  nvidia-cuda-runtime-cu12==12.8.90 nvidia-cuda-cupti-cu12==12.8.90 nvidia-cudnn-cu12==9.10.2.21 \
  nvidia-cublas-cu12==12.8.4.1 nvidia-cufft-cu12==11.3.3.83 nvidia-curand-cu12==10.3.9.90 \
  nvidia-cusparse-cu12==12.5.8.93 nvidia-cusparselt-cu12==0.7.1 nvidia-nccl-cu12==2.27.5 \
  nvidia-nvshmem-cu12==3.3.20 nvidia-nvjitlink-cu12==12.8.93 nvidia-cufile-cu12==1.13.1.3

# 3) torch's pure-python deps
"$PIP" install --no-deps typing_extensions==4.16.0 filelock==4.3.1 fsspec==2025.3.0 \
  Jinja2==3.1.6 MarkupSafe==3.0.4 networkx==3.6.1 sympy==1.14.0 mpmath==1.3.0

# 4) llamafactory itself plus exactly what the llamafactory.data import chain needs
#    (transformers, peft, datasets, accelerate, numpy, huggingface_hub and their deps),
#    versions resolved by `pip install --dry-run --report` within llamafactory's pins
"$PIP" install --no-deps llamafactory==0.9.5 \
  transformers==5.5.4 peft==0.18.1 datasets==4.0.0 accelerate==1.11.0 \
  numpy==2.4.6 huggingface_hub==1.33.0 hf-xet==1.8.0 tokenizers==0.22.2 safetensors==0.8.0 \
  regex==2026.11.19 PyYAML==6.0.4 packaging==26.4 tqdm==4.70.1 psutil==7.2.2 \
  dill==0.3.8 multiprocess==0.70.16 xxhash==4.1.0 pyarrow==26.0.1 pandas==3.1.1 \
  python-dateutil==4.0.0 tzdata==2026.6 requests==2.34.2 charset-normalizer==3.5.3 \
  urllib3==2.8.0 certifi==2026.10.19.post1 idna==3.20 \
  aiohttp==3.14.5 multidict==7.2.1 yarl==1.25.1 aiohappyeyeballs==2.7.1 aiosignal==1.4.0 \
  attrs==26.1.0 frozenlist==1.8.0 propcache==0.5.4 \
  httpx==0.28.1 httpcore==1.0.9 h11==0.16.0 anyio==4.16.0 \
  typer==0.29.2 click==8.5.1 rich==15.0.0 Pygments==2.21.0 markdown-it-py==4.3.0 mdurl==0.1.2 \
  shellingham==1.5.4 annotated-doc==0.0.7 \
  pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5

# 5) llamafactory.hparams (list-recipe-keys.py) also needs omegaconf
"$PIP" install --no-deps omegaconf==2.3.0 antlr4-python3-runtime==4.9.3

# 6) smoke test
cd /tmp
"$VENV/bin/python" -c "from llamafactory.data.template import TEMPLATES, get_template_and_fix_tokenizer; from llamafactory.data.converter import SharegptDatasetConverter, AlpacaDatasetConverter, OpenAIDatasetConverter; from llamafactory.data.parser import DatasetAttr; print(len(TEMPLATES))"
"$VENV/bin/python" -c "from llamafactory.data.template import TEMPLATES; t = TEMPLATES['qwen3']; print(t.format_user.apply(content='hi'))"
