#!/usr/bin/env python3
"""Tiny random Hugging Face decoder models, saved by transformers itself, and
the logits transformers computes for them, for lf's C model runtime to load
and reproduce (within 1e-4 of the logits' scale).

Outputs (checked in):
  tests/golden/models/NAME/config.json             as save_pretrained wrote them
  tests/golden/models/NAME/generation_config.json
  tests/golden/models/NAME/model.safetensors       (bf16, f16 or f32, see index)
  tests/golden/models/NAME/ids.jsonl               one line per sequence: {"ids": [...]}
  tests/golden/models/NAME/logits.safetensors      F32 "logits.K" [T, V] for line K
  tests/golden/models/index.json                   per model: model_type, architecture,
      transformers version that saved it, dtype on disk, what it covers, the
      sequence lengths, max |logit| and std of the logits per sequence, and two
      checks described below (knockouts, cross_version)

Every model: vocab 256, hidden 32, intermediate 64 (mixtral: 32 per expert),
4 query heads, 2 kv heads, 2 layers (qwen2, qwen2-v5: 3); see MODELS.  After construction every parameter (norms,
biases and the router too) is overwritten with seeded random values: matrices
N(0, 0.25^2), biases N(0, 0.3^2), norm weights 1 + N(0, 0.3^2) (gemma's
zero-centred norms N(0, 0.3^2)), so a missing norm or bias shows.  The model
is converted to its on-disk dtype and saved with save_pretrained; the oracle is
the model loaded back from that folder with
  AutoModelForCausalLM.from_pretrained(dir, dtype=torch.float32, attn_implementation="eager")
(4.x: torch_dtype=), i.e. exactly the stored weights computed in float32.
The script checks that the loaded parameters equal the file's tensors.

Logits: per model 2 sequences of seeded random ids, lengths 72 and 40 (longer
than every sliding window and original rope length); llama-dynamic and phi3
have a third one of length 24, below their rope threshold (32), so the
short/unscaled branch is covered too.  Each sequence is one forward, batch 1,
no cache, no attention mask, position_ids 0..T-1, logits [T, V] in float32, by
a freshly loaded model: transformers' dynamic-NTK rotary embedding is stateful
(after a 72-token forward it keeps the 72-token frequencies for a following
40-token one), the goldens use the frequencies of the sequence's own length.

Most models are saved by transformers 4.57.1 (most Hub checkpoints have 4.x
configs: top-level rope_theta / rope_scaling); llama-v5 and qwen2-v5 by 5.5.4
(rope_parameters, layer_types).  Both versions cannot be imported in one
process, so the script re-runs itself in workers: one under 4.57.1 (PYTHONPATH
put in front), one under 5.5.4, each making its own models; then each worker
recomputes the logits of the OTHER version's folders ("cross_version" in the
index: max |difference| / max |logit|; a large value means the two versions
read that config.json differently).

Knockouts: for each feature a model covers, the logits are recomputed with
that feature switched off in the config (e.g. sliding_window off or off by
one, softcapping off, rope_scaling removed, top-1 instead of top-2).  The
index records max |difference| / max |logit| for each: they must be far above
1e-4, or the golden would not catch an implementation that ignores the feature.

The script also checks each saved config.json for the keys intended (4.57.1:
rope_scaling + rope_theta, "dtype"; 5.5.4: rope_parameters, no rope_scaling)
and each model.safetensors for the tensor names and dtype intended.

Deterministic: fixed seeds, one CPU thread, safetensors, no timestamps; running
it twice gives identical files.  Environment (see make-token-goldens.py):

  bash scripts/goldens/venv.sh
  ~/.cache/lf/goldens-venv/bin/pip install --no-deps --target ~/.cache/lf/goldens-tf4 \\
      transformers==4.57.1 huggingface_hub==0.36.0
  ~/.cache/lf/goldens-venv/bin/python scripts/goldens/make-model-goldens.py \\
      [--tf4 ~/.cache/lf/goldens-tf4] [--out tests/golden/models]

(run it with the venv's python WITHOUT PYTHONPATH: it starts the 4.57.1
worker with PYTHONPATH=--tf4 itself).
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

V, H, I, NH, NKV = 256, 32, 64, 4, 2
SEQ_LENS = [72, 40]
SHORT_LEN = 24          # third sequence for models with a length threshold at 32
STD_MAT, STD_BIAS, STD_NORM = 0.25, 0.3, 0.3


def base(**kw):
    c = dict(vocab_size=V, hidden_size=H, intermediate_size=I, num_hidden_layers=2, num_attention_heads=NH,
             num_key_value_heads=NKV, max_position_embeddings=128, bos_token_id=1, eos_token_id=2, pad_token_id=0,
             tie_word_embeddings=False)
    c.update(kw)
    return c


def set_(**kw):
    """Knockout: set config attributes."""
    def f(cfg):
        for k, v in kw.items():
            setattr(cfg, k, v)
    return f


def rope_scaling_set(**kw):
    def f(cfg):
        rs = dict(cfg.rope_scaling)
        rs.update(kw)
        cfg.rope_scaling = rs
    return f


# expect: config.json keys with the exact value intended; absent: keys that must not be there.
# tensors: names that must be in model.safetensors; no_tensors: names that must not be.
MODELS = [
    dict(name="llama-tied", tf=4, model_type="llama", dtype="float32",
         config=base(tie_word_embeddings=True),
         covers="llama baseline: tied embeddings (no lm_head.weight in the file), default rope, GQA 4q/2kv, head_dim 8; "
                "saved in float32",
         expect={"tie_word_embeddings": True, "rope_scaling": None, "rope_theta": 10000.0},
         no_tensors=["lm_head.weight"],
         knockouts=[]),
    dict(name="llama-bias", tf=4, model_type="llama", dtype="bfloat16",
         config=base(attention_bias=True, mlp_bias=True, rope_scaling={"type": "linear", "factor": 2.0}),
         covers="llama attention_bias (q,k,v,o biases) and mlp_bias (gate,up,down biases); linear rope factor 2 "
                "given with the legacy key \"type\"",
         expect={"attention_bias": True, "mlp_bias": True},
         expect_sub={"rope_scaling": {"type": "linear", "rope_type": "linear", "factor": 2.0}},
         tensors=["model.layers.0.self_attn.o_proj.bias", "model.layers.0.mlp.down_proj.bias", "lm_head.weight"],
         knockouts=[("rope_scaling=None", set_(rope_scaling=None))]),
    dict(name="llama-dynamic", tf=4, model_type="llama", dtype="bfloat16",
         config=base(max_position_embeddings=32, rope_scaling={"rope_type": "dynamic", "factor": 2.0},
                     tie_word_embeddings=True),
         short=True,
         covers="dynamic NTK rope factor 2, max_position_embeddings 32: sequences 72 and 40 use "
                "theta*((factor*T/32)-(factor-1))^(D/(D-2)) with T the sequence length; the 24 one plain rope",
         expect={"max_position_embeddings": 32},
         expect_sub={"rope_scaling": {"rope_type": "dynamic", "factor": 2.0}},
         knockouts=[("rope_scaling=None (24-token seq must not change)", set_(rope_scaling=None))]),
    dict(name="llama-yarn", tf=4, model_type="llama", dtype="bfloat16",
         config=base(rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16},
                     tie_word_embeddings=True),
         covers="yarn factor 4, original_max_position_embeddings 16, max_position_embeddings 128 (so the configured "
                "factor 4 != max_pos/orig 8: transformers 4.57.1 and 5.5.4 both use 4; attention_factor "
                "0.1*ln(4)+1)",
         expect={"max_position_embeddings": 128},
         expect_sub={"rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16}},
         knockouts=[("rope_scaling=None", set_(rope_scaling=None)),
                    ("factor=max_pos/orig=8 (the claimed 4.x trap)", rope_scaling_set(factor=8.0))]),
    dict(name="llama-llama3rope", tf=4, model_type="llama", dtype="bfloat16",
         config=base(rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                   "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
                     tie_word_embeddings=True),
         covers="llama3 rope factor 8, low 1, high 4, original 16, theta 1e4, head_dim 8: frequency 0 "
                "(wavelength 2pi) is in the smoothed band, the other three are divided by 8",
         expect_sub={"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                      "high_freq_factor": 4.0, "original_max_position_embeddings": 16}},
         knockouts=[("rope_scaling=None", set_(rope_scaling=None))]),
    dict(name="mistral", tf=4, model_type="mistral", dtype="float16",
         config=base(head_dim=16, sliding_window=8),
         covers="mistral: sliding_window 8 on every layer (query i sees keys i-7..i), explicit head_dim 16 "
                "(q_proj [64,32], o_proj [32,64]); saved in float16",
         expect={"head_dim": 16, "sliding_window": 8},
         tensors=["model.layers.0.self_attn.q_proj.weight"],
         knockouts=[("sliding_window=None", set_(sliding_window=None)),
                    ("sliding_window=9 (off by one)", set_(sliding_window=9))]),
    dict(name="qwen2", tf=4, model_type="qwen2", dtype="bfloat16",
         config=base(num_hidden_layers=3, use_sliding_window=True, max_window_layers=1, sliding_window=8,
                     rope_theta=1000000.0, tie_word_embeddings=True),
         covers="qwen2: q/k/v biases (no o bias), rope_theta 1e6, 3 layers, use_sliding_window true, "
                "max_window_layers 1, sliding_window 8: layer 0 full, layers 1-2 sliding",
         expect={"use_sliding_window": True, "max_window_layers": 1, "sliding_window": 8, "rope_theta": 1000000.0,
                 "layer_types": ["full_attention", "sliding_attention", "sliding_attention"]},
         tensors=["model.layers.0.self_attn.q_proj.bias", "model.layers.0.self_attn.v_proj.bias"],
         no_tensors=["model.layers.0.self_attn.o_proj.bias"],
         knockouts=[("all layers full", set_(layer_types=["full_attention"] * 3)),
                    ("sliding_window=9 (off by one)", set_(sliding_window=9))]),
    dict(name="qwen3", tf=4, model_type="qwen3", dtype="bfloat16",
         config=base(head_dim=16),
         covers="qwen3: q_norm/k_norm (RMSNorm over each head's 16 features before rope), explicit head_dim 16 "
                "(not hidden/heads), no biases",
         expect={"head_dim": 16, "attention_bias": False},
         tensors=["model.layers.0.self_attn.q_norm.weight", "model.layers.0.self_attn.k_norm.weight"],
         knockouts=[("rms_norm_eps=1e-2", set_(rms_norm_eps=1e-2))]),
    dict(name="gemma", tf=4, model_type="gemma", dtype="bfloat16",
         config=base(head_dim=16, hidden_act="gelu_pytorch_tanh", tie_word_embeddings=True),
         zero_norm=True,
         covers="gemma: GeGLU with gelu_pytorch_tanh (read from hidden_act), (1+w) RMSNorm with zero-centred "
                "weights, embeddings * sqrt(32) (rounded to the activation dtype), tied, head_dim 16",
         expect={"hidden_act": "gelu_pytorch_tanh", "head_dim": 16},
         absent=["tie_word_embeddings"],  # equals the class default (true): 4.57.1 leaves it out
         no_tensors=["lm_head.weight"],
         knockouts=[("hidden_act=gelu (erf)", set_(hidden_act="gelu"))]),
    dict(name="gemma2", tf=4, model_type="gemma2", dtype="float32",
         config=base(head_dim=16, hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=24,
                     attn_logit_softcapping=4.0, final_logit_softcapping=8.0, sliding_window=8,
                     tie_word_embeddings=True),
         zero_norm=True,
         covers="gemma2: attn_logit_softcapping 4, final_logit_softcapping 8, four norms per layer, "
                "query_pre_attn_scalar 24 (scale 24^-0.5, head_dim 16), layer 0 sliding 8 / layer 1 global; "
                "saved in float32",
         expect={"query_pre_attn_scalar": 24, "attn_logit_softcapping": 4.0, "final_logit_softcapping": 8.0,
                 "sliding_window": 8, "head_dim": 16, "layer_types": ["sliding_attention", "full_attention"]},
         absent=["tie_word_embeddings"],
         tensors=["model.layers.0.pre_feedforward_layernorm.weight", "model.layers.0.post_feedforward_layernorm.weight"],
         no_tensors=["lm_head.weight"],
         knockouts=[("attn_logit_softcapping=None", set_(attn_logit_softcapping=None)),
                    ("final_logit_softcapping=None", set_(final_logit_softcapping=None)),
                    ("query_pre_attn_scalar=head_dim", set_(query_pre_attn_scalar=16)),
                    ("all layers full", set_(layer_types=["full_attention"] * 2))]),
    dict(name="phi3", tf=4, model_type="phi3", dtype="bfloat16",
         config=base(partial_rotary_factor=0.5, original_max_position_embeddings=32, max_position_embeddings=128,
                     rope_scaling={"type": "longrope", "short_factor": [1.0, 1.5], "long_factor": [3.0, 12.0]}),
         short=True,
         covers="phi3: fused qkv_proj [64,32] (q 32 rows, k 16, v 16) and gate_up_proj [128,32], head_dim 8, "
                "partial_rotary_factor 0.5 (rotary dims 0..3 of each head), longrope short/long factors (length 2), "
                "original_max_position_embeddings 32 (top level), max_position_embeddings 128: attention_factor "
                "sqrt(1+ln(4)/ln(32)); 72/40 use long_factor, 24 short_factor",
         expect={"partial_rotary_factor": 0.5, "original_max_position_embeddings": 32,
                 "max_position_embeddings": 128},
         expect_sub={"rope_scaling": {"type": "longrope", "short_factor": [1.0, 1.5], "long_factor": [3.0, 12.0]}},
         tensors=["model.layers.0.self_attn.qkv_proj.weight", "model.layers.0.mlp.gate_up_proj.weight"],
         knockouts=[("rope_scaling=None", set_(rope_scaling=None)),
                    ("long_factor=short_factor (24-token seq must not change)",
                     rope_scaling_set(long_factor=[1.0, 1.5])),
                    ("partial_rotary_factor=1 (and factors x2 length)",
                     lambda c: (setattr(c, "partial_rotary_factor", 1.0),
                                setattr(c, "rope_scaling", {"type": "longrope", "short_factor": [1.0, 1.5, 1.5, 1.5],
                                                            "long_factor": [3.0, 12.0, 12.0, 12.0]})))]),
    dict(name="mixtral", tf=4, model_type="mixtral", dtype="bfloat16",
         config=base(num_local_experts=4, num_experts_per_tok=2, intermediate_size=32),
         covers="mixtral: intermediate 32 per expert, 4 experts (block_sparse_moe.experts.N.w1/w2/w3), router block_sparse_moe.gate, top-2 "
                "with the two softmax weights renormalised",
         expect={"num_local_experts": 4, "num_experts_per_tok": 2},
         tensors=["model.layers.0.block_sparse_moe.gate.weight", "model.layers.1.block_sparse_moe.experts.3.w3.weight"],
         knockouts=[("num_experts_per_tok=1", set_(num_experts_per_tok=1)),
                    ("num_experts_per_tok=4", set_(num_experts_per_tok=4))]),
    dict(name="llama-v5", tf=5, model_type="llama", dtype="bfloat16",
         config=base(rope_parameters={"rope_type": "llama3", "rope_theta": 100.0, "factor": 8.0,
                                      "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                      "original_max_position_embeddings": 64},
                     tie_word_embeddings=True),
         covers="llama saved by transformers 5.5.4 (tied): rope_parameters only (rope_theta 100 inside it, no top-level "
                "rope_theta/rope_scaling), llama3 rope factor 8, low 1, high 4, original 64: wavelengths "
                "2pi (kept), 19.9 and 62.8 (smoothed), 199 (divided by 8)",
         expect_sub={"rope_parameters": {"rope_type": "llama3", "rope_theta": 100.0, "factor": 8.0,
                                         "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                         "original_max_position_embeddings": 64}},
         knockouts=[("rope_parameters default theta 100",
                     set_(rope_parameters={"rope_type": "default", "rope_theta": 100.0}))]),
    dict(name="qwen2-v5", tf=5, model_type="qwen2", dtype="bfloat16",
         config=base(num_hidden_layers=3, use_sliding_window=True, max_window_layers=1, sliding_window=8,
                     layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                     rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, tie_word_embeddings=True),
         covers="qwen2 saved by transformers 5.5.4: explicit layer_types sliding/full/sliding (layer_types wins; "
                "max_window_layers 1 would say full/sliding/sliding), sliding_window 8, rope_parameters "
                "theta 1e6, q/k/v biases",
         expect={"layer_types": ["sliding_attention", "full_attention", "sliding_attention"], "sliding_window": 8,
                 "use_sliding_window": True, "max_window_layers": 1},
         expect_sub={"rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}},
         tensors=["model.layers.0.self_attn.q_proj.bias"],
         knockouts=[("layer_types from max_window_layers",
                     set_(layer_types=["full_attention", "sliding_attention", "sliding_attention"])),
                    ("all layers full", set_(layer_types=["full_attention"] * 3))]),
]


def seed_of(name, what):
    return zlib.crc32(f"{name}/{what}".encode())


def seq_lens(spec):
    return SEQ_LENS + ([SHORT_LEN] if spec.get("short") else [])


def g6(x):
    return float(f"{x:.6g}")


# ---------------------------------------------------------------- worker side

def worker_setup():
    import torch
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    import transformers
    transformers.logging.set_verbosity_error()
    return torch, transformers


def load(torch, transformers, path, config=None):
    from transformers import AutoModelForCausalLM
    kw = {"attn_implementation": "eager"}
    kw["torch_dtype" if transformers.__version__.startswith("4.") else "dtype"] = torch.float32
    if config is not None:
        kw["config"] = config
    model = AutoModelForCausalLM.from_pretrained(path, **kw)
    model.eval()
    return model


def forward_all(torch, transformers, path, id_lists, config_fn=None):
    """Logits [T, V] float32 per sequence, each by a freshly loaded model."""
    from transformers import AutoConfig
    out = []
    for ids in id_lists:
        cfg = None
        if config_fn is not None:
            cfg = AutoConfig.from_pretrained(path)
            config_fn(cfg)
        model = load(torch, transformers, path, cfg)
        x = torch.tensor([ids], dtype=torch.long)
        pos = torch.arange(len(ids), dtype=torch.long)[None]
        with torch.no_grad():
            logits = model(input_ids=x, position_ids=pos, use_cache=False).logits
        assert logits.dtype == torch.float32
        out.append(logits[0].contiguous())
    return out


def randomize(torch, model, spec):
    g = torch.Generator().manual_seed(seed_of(spec["name"], "weights"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if p.ndim == 1 and "norm" in name:
                v = r * STD_NORM if spec.get("zero_norm") else 1.0 + r * STD_NORM
            elif name.endswith(".bias"):
                v = r * STD_BIAS
            else:
                v = r * STD_MAT
            p.copy_(v)


def check_files(torch, spec, path, model):
    """Config keys and tensor names/dtypes as intended; loaded params == file tensors."""
    from safetensors import safe_open
    errs = []
    with open(os.path.join(path, "config.json")) as f:
        cfg = json.load(f)
    v4 = spec["tf"] == 4
    want = dict(spec.get("expect", {}))
    want.update({"model_type": spec["model_type"], "dtype": spec["dtype"], "vocab_size": V})
    for k, v in want.items():
        if k not in cfg:
            errs.append(f"config.json lacks {k}")
        elif cfg[k] != v:
            errs.append(f"config.json {k} = {cfg[k]!r}, intended {v!r}")
    for k, sub in spec.get("expect_sub", {}).items():
        got = cfg.get(k)
        if not isinstance(got, dict):
            errs.append(f"config.json {k} = {got!r}, intended a dict with {sub!r}")
            continue
        for kk, vv in sub.items():
            if got.get(kk) != vv:
                errs.append(f"config.json {k}.{kk} = {got.get(kk)!r}, intended {vv!r}")
    absent = ["torch_dtype"] + (["rope_parameters"] if v4 else ["rope_scaling", "rope_theta"])
    for k in absent + spec.get("absent", []):
        if k in cfg:
            errs.append(f"config.json has {k} = {cfg[k]!r}")
    if v4 and "rope_theta" not in cfg:
        errs.append("config.json lacks rope_theta")
    if not v4 and "rope_parameters" not in cfg:
        errs.append("config.json lacks rope_parameters")
    st_dtype = {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}[spec["dtype"]]
    params = dict(model.named_parameters())
    with safe_open(os.path.join(path, "model.safetensors"), "pt") as f:
        names = list(f.keys())
        for t in spec.get("tensors", []):
            if t not in names:
                errs.append(f"model.safetensors lacks {t}")
        for t in spec.get("no_tensors", []):
            if t in names:
                errs.append(f"model.safetensors has {t}")
        for n in names:
            if f.get_slice(n).get_dtype() != st_dtype:
                errs.append(f"{n} is {f.get_slice(n).get_dtype()}, intended {st_dtype}")
            if n not in params:
                errs.append(f"{n} is not a parameter of the loaded model")
            elif not torch.equal(params[n].detach(), f.get_tensor(n).to(torch.float32)):
                errs.append(f"{n}: loaded parameter differs from the file")
        n_file = len(names)
    # every model parameter comes from the file (tied lm_head is the embedding)
    for n in params:
        if n not in names and not (n == "lm_head.weight" and cfg.get("tie_word_embeddings")):
            errs.append(f"parameter {n} is not in the file")
    return errs, cfg, n_file


def rel_diff(a_list, b_list):
    return [g6(float((a - b).abs().max()) / float(a.abs().max())) for a, b in zip(a_list, b_list)]


def build(spec, out):
    torch, transformers = worker_setup()
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM
    name = spec["name"]
    path = os.path.join(out, name)
    shutil.rmtree(path, ignore_errors=True)
    cfg = AutoConfig.for_model(spec["model_type"], **json.loads(json.dumps(spec["config"])))
    torch.manual_seed(seed_of(name, "init"))
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    randomize(torch, model, spec)
    model.to(getattr(torch, spec["dtype"]))
    model.save_pretrained(path, safe_serialization=True)
    del model

    g = torch.Generator().manual_seed(seed_of(name, "ids"))
    id_lists = [torch.randint(0, V, (n,), generator=g).tolist() for n in seq_lens(spec)]
    logits = forward_all(torch, transformers, path, id_lists)
    save_file({f"logits.{k}": t for k, t in enumerate(logits)}, os.path.join(path, "logits.safetensors"))
    with open(os.path.join(path, "ids.jsonl"), "w") as f:
        for ids in id_lists:
            f.write(json.dumps({"ids": ids}) + "\n")

    errs, cfgjson, n_tensors = check_files(torch, spec, path, load(torch, transformers, path))
    knock = {}
    for label, fn in spec.get("knockouts", []):
        knock[label] = rel_diff(logits, forward_all(torch, transformers, path, id_lists, fn))
    files = sorted(os.listdir(path))
    return {
        "model_type": spec["model_type"],
        "architectures": cfgjson.get("architectures"),
        "transformers": transformers.__version__,
        "dtype": spec["dtype"],
        "covers": spec["covers"],
        "num_hidden_layers": cfgjson["num_hidden_layers"],
        "files": files,
        "num_tensors": n_tensors,
        "seq_lens": [len(x) for x in id_lists],
        "max_abs_logit": [g6(float(t.abs().max())) for t in logits],
        "std_logit": [g6(float(t.std())) for t in logits],
        "knockouts": knock,
        "config_check_errors": errs,
    }


def cross(spec, out):
    """Logits of a folder saved by the other transformers version, computed by this one."""
    torch, transformers = worker_setup()
    from safetensors.torch import load_file
    path = os.path.join(out, spec["name"])
    with open(os.path.join(path, "ids.jsonl")) as f:
        id_lists = [json.loads(line)["ids"] for line in f]
    gold = load_file(os.path.join(path, "logits.safetensors"))
    gold = [gold[f"logits.{k}"] for k in range(len(id_lists))]
    try:
        mine = forward_all(torch, transformers, path, id_lists)
        return {"transformers": transformers.__version__, "max_rel_diff": rel_diff(gold, mine)}
    except Exception as e:  # noqa: BLE001 - reported, not fatal
        return {"transformers": transformers.__version__, "error": f"{type(e).__name__}: {e}"[:300]}


def worker(args):
    import transformers
    major = int(transformers.__version__.split(".")[0])
    assert major == args.tf, f"worker for {args.tf}.x runs transformers {transformers.__version__}"
    res = {}
    for spec in MODELS:
        if args.phase == "build" and spec["tf"] == major:
            res[spec["name"]] = build(spec, args.out)
        elif args.phase == "cross" and spec["tf"] != major:
            res[spec["name"]] = cross(spec, args.out)
    with open(args.result, "w") as f:
        json.dump(res, f)


# ---------------------------------------------------------------- driver side

def run_worker(args, tf, phase, tmp):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if tf == 4:
        env["PYTHONPATH"] = os.path.expanduser(args.tf4)
    result = os.path.join(tmp, f"{phase}-{tf}.json")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--tf", str(tf), "--phase", phase,
           "--out", args.out, "--result", result]
    subprocess.run(cmd, env=env, check=True)
    with open(result) as f:
        return json.load(f)


def dir_size(path):
    total = 0
    for dp, _, fns in os.walk(path):
        total += sum(os.path.getsize(os.path.join(dp, fn)) for fn in fns)
    return total


def driver(args):
    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        built = {}
        for tf in (4, 5):
            built.update(run_worker(args, tf, "build", tmp))
        crossed = {}
        for tf in (4, 5):
            crossed.update(run_worker(args, tf, "cross", tmp))
    index = {}
    for spec in MODELS:
        e = built[spec["name"]]
        e["cross_version"] = crossed[spec["name"]]
        e["bytes"] = dir_size(os.path.join(args.out, spec["name"]))
        index[spec["name"]] = e
    doc = {
        "generator": "scripts/goldens/make-model-goldens.py",
        "oracle": "AutoModelForCausalLM.from_pretrained(dir, dtype=float32, attn_implementation='eager'), "
                  "batch 1, no cache, no attention mask, position_ids 0..T-1, CPU, 1 thread",
        "tolerance": "max |lf - golden| <= 1e-4 * max |golden logit|, per sequence",
        "knockouts": "max |golden - logits with the feature switched off| / max |golden logit|, per sequence",
        "cross_version": "max |golden - logits the other transformers version computes| / max |golden logit|",
        "models": index,
    }
    with open(os.path.join(args.out, "index.json"), "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")

    bad = False
    print(f"{'model':18} {'tf':7} {'dtype':9} {'bytes':>7}  {'max|logit|':22} {'std':22} cross")
    for name, e in index.items():
        cv = e["cross_version"]
        cvs = cv.get("error", "")[:40] or str(cv["max_rel_diff"])
        print(f"{name:18} {e['transformers']:7} {e['dtype']:9} {e['bytes']:7}  {str(e['max_abs_logit']):22} "
              f"{str(e['std_logit']):22} {cv['transformers']}: {cvs}")
        for label, d in e["knockouts"].items():
            weak = any(x < 1e-3 for x in d) and "must not change" not in label
            print(f"{'':20}knockout {label}: {d}{'  <-- WEAK (< 10x the 1e-4 tolerance)' if weak else ''}")
        for err in e["config_check_errors"]:
            bad = True
            print(f"{'':20}CHECK FAILED: {err}")
        if min(e["std_logit"]) < 0.5:
            bad = True
            print(f"{'':20}CHECK FAILED: logits nearly flat")
    print(f"total {dir_size(args.out)} bytes in {args.out}")
    if bad:
        sys.exit(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "golden", "models"))
    ap.add_argument("--tf4", default="~/.cache/lf/goldens-tf4", help="directory with transformers 4.57.1")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--tf", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.out = os.path.abspath(args.out)
    if args.worker:
        worker(args)
    else:
        driver(args)


if __name__ == "__main__":
    main()
