#!/usr/bin/env python3
"""Training goldens for lf-train: one optimizer step's loss and gradients and
a 10-step AdamW trajectory, computed by transformers + PEFT (+ LLaMA-Factory
0.9.5's own parameter-selection code) on the CPU in float32, eager attention,
for tiny random models of every architecture lf supports, with full, freeze,
LoRA, rsLoRA, DoRA fine-tuning, a PEFT modules_to_save case, a mixtral
router-aux-loss case and a pre-training case.

Layout of tests/golden/train/ (every path below is relative to it)
-------------------------------------------------------------------
  models/NAME/config.json, generation_config.json, model.safetensors
        base models, saved by transformers 4.57.1 save_pretrained, every tensor
        F32.  NAME: llama (untied), llama-tied, llama-bias (attention_bias +
        mlp_bias), mistral (sliding_window 8), qwen2 (q/k/v biases; layer 0
        full, layer 1 sliding 8), qwen3 (q_norm/k_norm, tied), gemma (tied,
        GeGLU tanh, (1+w) norms, embeddings * sqrt(32)), gemma2 (attn softcap
        4, final softcap 8, 4 norms per layer, query_pre_attn_scalar 24, layer
        0 sliding 8, tied), phi3 (fused qkv_proj / gate_up_proj,
        partial_rotary_factor 0.5, no rope scaling), mixtral (4 experts, top 2,
        intermediate 16 per expert; block_sparse_moe.gate /
        .experts.N.w1,w2,w3).  Untied: llama, llama-bias, mistral, qwen2, phi3,
        mixtral.  All but llama-wide: vocab 256, hidden 32, intermediate 48
        (not square, so a transposed weight shows), 2 layers, 4 q heads, 2 kv
        heads, head_dim 8, rope_theta 1e4, pad 0 / bos 1 / eos 2.  Every
        parameter random: matrices N(0, 0.25^2), biases N(0, 0.3^2), norm
        weights 1 + N(0, 0.3^2) (gemma/gemma2 zero-centred norms N(0, 0.3^2)).
        llama-wide (tied, for data-long.jsonl): hidden 128, intermediate 192,
        1 layer, 2 q heads and 1 kv head of 64, matrices N(0, 0.125^2) (the
        same scale of activations as 0.25 at hidden 32).  Its products and
        sequences are large enough for lf's own CPU matrix product (at least
        16 rows, 64 columns) and for the attention backward's key blocks of
        64 and more, which the hidden-32 models and their 9..40-token
        examples never reach.
  data.jsonl      6 supervised examples, one JSON object a line:
                  {"input_ids": [...], "labels": [...]}, exactly as LLaMA-Factory's
                  supervised processor gives them (labels -100 on prompt tokens,
                  = input_ids on response tokens); lengths 9..40 (longer than the
                  sliding windows); ids in [3, 256); line 3 has a single label
                  token, line 1 two turns (-100 / labels / -100 / labels).  Every
                  example's first label is -100.
  data-pt.jsonl   6 pre-training examples, labels == input_ids, lengths 9..40.
  data-long.jsonl 6 supervised examples as data.jsonl's, lengths 72..160
                  (micro-batches padded to 136, 160, 128), line 1 two turns.
  cases/CASE/case.json          everything about the case (below)
  cases/CASE/grads.safetensors  F32 "loss" shape [1]: the step's loss (see Loss);
                  F32 "grad.<name>" for every trainable tensor: the gradient
                  accumulated over the 3 micro-batches of step 0, BEFORE clipping.
  cases/CASE/after.safetensors  F32 "<name>": every trainable tensor after the
                  10 optimizer steps.
  cases/CASE/adapter-init/adapter_config.json, adapter_model.safetensors
                  (LoRA family only) the adapter training starts from, saved by
                  PEFT 0.18.1 save_pretrained (README.md deleted).  lf-train is to
                  be started with it as --adapter (LLaMA-Factory:
                  adapter_name_or_path, i.e. resume training that adapter).
  index.json      per base model: checks; per case: what it covers, loss, max |g|
                  per tensor ("max_abs_grad", saved names), knockouts, checks
                  (f64, trainer, tf5, deterministic: see below), bytes.

Cases (CASE): MODEL-full for the 11 models; llama-freeze, llama-freeze-mlp,
qwen2-freeze;
MODEL-lora for the 11 models (lora_target all); llama-rslora, qwen3-rslora;
llama-dora, qwen2-dora, phi3-dora; llama-lora-dropout, llama-dora-dropout,
phi3-dora-dropout (lora_dropout 0.25, see LoRA dropout below); qwen2-lora-qv-embed (lora_target
q_proj,v_proj + additional_target embed_tokens); mixtral-aux (full,
moe_aux_loss_coef 0.01); llama-pt (stage pt, full, data-pt.jsonl);
llama-wide-full and llama-wide-lora (on data-long.jsonl, the model's data
set: its spec's "data").  Every case but llama-pt is stage sft, on
data.jsonl unless named.

<name>: full/freeze: the tensor's name in models/NAME/model.safetensors (tied
models have no lm_head.weight: the tied weight is model.embed_tokens.weight and
its gradient is the sum of both uses).  LoRA family: the name in
adapter-init/adapter_model.safetensors as PEFT saves it:
  base_model.model.<module path>.lora_A.weight   [r, in]
  base_model.model.<module path>.lora_B.weight   [out, r]
  base_model.model.<module path>.lora_magnitude_vector   [out]  (DoRA; no ".weight")
  base_model.model.model.embed_tokens.weight     (modules_to_save copy of embed_tokens;
                                                  PEFT drops "modules_to_save.default")
The base weights are frozen in the LoRA cases.

case.json keys: case, stage ("sft"|"pt"), covers, model ("models/NAME", relative
to tests/golden/train), model_from_repo_root, adapter ("cases/CASE/adapter-init"
or null), data ("data.jsonl"|"data-pt.jsonl"|"data-long.jsonl"), recipe (the LLaMA-Factory YAML
keys that define the case), hparams (every LLaMA-Factory hyper-parameter named
in the spec: finetuning_type, lora_rank, lora_alpha, lora_dropout, lora_target,
additional_target, use_rslora, use_dora, freeze_trainable_layers,
freeze_trainable_modules, freeze_extra_modules, learning_rate,
lr_scheduler_type, warmup_steps, weight_decay, max_grad_norm,
per_device_train_batch_size, gradient_accumulation_steps, max_steps,
moe_aux_loss_coef, adam_beta1, adam_beta2, adam_epsilon; LLaMA-Factory's
defaults where the recipe does not set them), trainable (saved names, sorted),
no_decay (the trainable names with weight decay 0), target_modules (as
adapter_config.json has them), adapter_config (adapter-init's
adapter_config.json), micro_batches (per micro-batch: examples, padded_len,
label_tokens), num_items_in_batch, losses[10], grad_norms[10] (pre-clip total
L2 norm of the trainable gradients, as the HF Trainer logs it),
learning_rates[10] (the lr each optimizer step used), aux_losses (mixtral-aux:
[step][micro-batch]), ce_losses[10] (mixtral-aux), notes.

Step semantics (what lf-train must reproduce)
---------------------------------------------
* One optimizer step = all 6 examples of the data file, in file order, as 3
  micro-batches of 2 (per_device_train_batch_size 2, gradient_accumulation_steps
  3): [0,1], [2,3], [4,5].  The SAME 6 examples make every one of the 10 steps.
* Padding (LLaMA-Factory's collators, right padding): sft pads each micro-batch
  to the next multiple of 8 of its longest example (SFTDataCollatorWith4DAttention
  Mask, pad_to_multiple_of=8 when training), pt to its longest example
  (DataCollatorForLanguageModeling); input pad id 0, attention_mask 1/0, labels
  -100 on padding.  position_ids are 0..T-1 (transformers' default); padding is
  to the right, so padded positions change nothing for real tokens.
* Loss (transformers Trainer with num_items_in_batch; LLaMA-Factory 0.9.5 keeps
  model_accepts_loss_kwargs for text models): N = number of labels != -100 in
  the 3 micro-batches counted BEFORE the shift (Trainer._get_num_items_in_batch:
  sum(labels.ne(-100))); each micro-batch's loss = sum over its shifted targets
  (position t predicts labels[t+1]; the last position has no target) of token
  cross-entropy / N; gradients of the 3 summed; the step's loss = sum of the 3 =
  total CE / N.  For sft the first label of every example is -100, so counting
  before or after the shift is the same; for pt it is NOT: N = all tokens
  (sum of lengths) while only sum(length - 1) targets exist.
* mixtral-aux (moe_aux_loss_coef 0.01 -> config.output_router_logits = True,
  router_aux_loss_coef = 0.01): each micro-batch's loss = its CE sum / N + 0.01 *
  aux_mb, aux_mb = transformers' load_balancing_loss_func over that micro-batch
  (router logits of both layers concatenated, softmax, top-2 one-hot, padding
  excluded with the attention mask: tokens_per_expert [2, 4] = mean over real
  tokens of the one-hot of the k-th choice, router_prob [4] = mean softmax over
  real tokens, aux = 4 * sum(tokens_per_expert * router_prob)).  The Trainer
  does NOT divide by gradient_accumulation_steps (model_accepts_loss_kwargs), so
  the step's loss = CE / N + 0.01 * (aux_1 + aux_2 + aux_3).
* Optimizer (HF Trainer + torch): the gradients of step s are clipped with
  torch.nn.utils.clip_grad_norm_(trainable, 1.0) (total L2 norm g; if g > 1 all
  scaled by 1/(g + 1e-6)); then torch.optim.AdamW(lr_s, betas (0.9, 0.999), eps
  1e-8, weight_decay 0.01 for the names not in no_decay, 0 for those):
      p *= 1 - lr_s * wd;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
      p -= lr_s / (1 - b1^k) * m / (sqrt(v) / sqrt(1 - b2^k) + eps)   (k = s + 1)
  then the scheduler: lr_s = 1e-3 * s / 2 for s < 2 (so step 0 has lr 0 and
  changes no weight, but does update m and v), else 1e-3 * 0.5 * (1 + cos(pi *
  (s - 2) / 8)) (transformers get_scheduler("cosine", 2, 10)).  no_decay:
  Trainer.get_decay_parameter_names: names containing "bias", "layernorm",
  "rmsnorm", a ".norm." / "norm" component, or "_norm" before "." or the end
  (the LoRA A/B, DoRA magnitude and modules_to_save tensors are decayed).
* Trainable tensors: full: all; freeze: LLaMA-Factory's _setup_freeze_tuning
  (substring rule, see notes of the freeze cases); lora: PEFT's.
* Sliding-window layers: a padded query whose whole window is padding has no
  visible key; transformers (f32 eager) adds finfo(f32).min, not -inf, so the
  row is finite (uniform) and, being padding, changes nothing.  An
  implementation must just not produce NaN there.

LoRA dropout (the *-dropout cases): torch's random masks cannot be reproduced,
so PEFT's dropout modules are replaced by lf's documented masks
(libcommon/backprop.h lf_lora_dropout_key; dropout_keep below): for optimizer
step s and micro-batch k, each module's mask over its input [tokens of the
micro-batch's rows, without padding, in order; features] comes from a hash of
(seed 42, s, k, the name of the module's lora_A as PEFT saves it).  Padded
positions keep their input (they change no real token).  Everything else is
PEFT's: under dropout its DoRA computes W x + (g - 1) W xd + g s B A xd + b
with xd the dropped input (not g (W x + s B A x) + b as without dropout).
Knockouts: no dropout; every micro-batch given the next one's masks.

Knockouts (index.json): the same computation with one feature done wrong
(loss averaged per micro-batch, pt tokens counted after the shift, DoRA's norm
not detached, rsLoRA scale alpha/r, alpha/sqrt(r) on plain LoRA, no / averaged /
unmasked aux loss, sliding windows off, softcaps off, partial rotary off, top-1,
erf GELU, rms_norm_eps, decay on norms, no clipping, linear schedule); "grads" =
max over tensors of
max|g_ko - g| / max|g| (tolerance 1e-4), "after" = max over tensors of
||W_ko - W|| / ||W|| (tolerance 1e-5), "over_tol" = number of tensors above
the tolerance.  Checks: "f64": the whole case re-run in float64 (how far f32
rounding alone moves the goldens; the script fails above 0.3 x the tolerances;
"*_near_tol" lists tensors above 0.1 x; run without the padding mask except
mixtral-aux, see the code); AdamW makes a weight whose gradient is ~0 (below
f32 noise) move by +-lr per step in a noise-chosen direction, which is why
qwen2 uses rope_theta 1e4 and the LoRA init is moderate (below);
"trainer": the same 10 steps by transformers.Trainer itself (sequential
sampler, default optim adamw_torch_fused) vs the goldens; "tf5": step-0
gradients and the 10-step result under transformers 5.5.4 (5.x fuses mixtral's
experts into 3-D gate_up_proj / down_proj: mapped back to w1/w3/w2; mixtral's
LoRA cannot load there; 5.5.4's aux loss softmaxes the router probabilities a
second time, so mixtral-aux differs there, and agrees once that is undone);
"deterministic": the 10-step run repeated bit-exactly.

Oracle details: transformers 4.57.1 (the version that saved the base models;
its mixtral experts are per-expert nn.Linear, matching the checkpoint names),
peft 0.18.1, torch 2.9.1, one CPU thread, deterministic algorithms, model.train()
(all dropouts 0; the script checks train-mode loss == eval-mode loss).  LoRA
cases: the adapter is made by LLaMA-Factory's init_adapter (LoraConfig as it
builds it, lora_target all resolved by its find_all_linear_modules), every
lora_A / lora_B then overwritten with seeded N(0, sigma^2) values, sigma =
sqrt(0.1 / (scaling * sqrt(r))) so that scaling * B @ A has entries of std 0.1
(the base matrices: 0.25): sigma 0.158 for LoRA (scaling 2), 0.112 for rsLoRA
(scaling 4); case.json has lora_init_sigma and lora_scaling.  (sigma 0.3 made
the adapter dominate -- hidden states ~470 -- and f32 rounding alone moved the
rsLoRA gradients by 6e-5 of the 1e-4 tolerance.)  DoRA's magnitude (PEFT
initialises it to the row norms of W) is multiplied by 1 + N(0, 0.1^2).  The
adapter is saved, and the model trained is a fresh
base + init_adapter(adapter_name_or_path=adapter-init) (PeftModel.from_pretrained
is_trainable=True), as LLaMA-Factory resumes an adapter.  LLaMA-Factory is
imported with a stub "trl" module (not installed; only its value-head loader
needs it) and DISABLE_VERSION_CHECK=1.

Deterministic: fixed seeds, one thread, PYTHONHASHSEED=0 in the workers
(adapter_config.json's target_modules is a set), no timestamps; running it twice
gives identical files.  Environment: scripts/goldens/venv.sh plus the 4.57.1
overlay (see make-model-goldens.py).  From the repository root:

  ~/.cache/lf/goldens-venv/bin/python scripts/goldens/make-train-goldens.py \\
      [--tf4 ~/.cache/lf/goldens-tf4] [--out tests/golden/train] [--only CASE,...]

(run it WITHOUT PYTHONPATH: it starts the 4.57.1 worker with PYTHONPATH=--tf4
itself, and the 5.5.4 cross-check worker without).  Takes a few minutes.
"""
import argparse
import contextlib
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import types
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

V, H, I, NH, NKV = 256, 32, 48, 4, 2
STD_MAT, STD_BIAS, STD_NORM = 0.25, 0.3, 0.3
DELTA_STD, MAG_STD = 0.1, 0.1
GRAD_TOL, AFTER_TOL = 1e-4, 1e-5

HP = dict(learning_rate=1e-3, lr_scheduler_type="cosine", warmup_steps=2, weight_decay=0.01, max_grad_norm=1.0,
          per_device_train_batch_size=2, gradient_accumulation_steps=3, max_steps=10,
          adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8)


def base(**kw):
    c = dict(vocab_size=V, hidden_size=H, intermediate_size=I, num_hidden_layers=2, num_attention_heads=NH,
             num_key_value_heads=NKV, head_dim=H // NH, max_position_embeddings=128, bos_token_id=1, eos_token_id=2,
             pad_token_id=0, tie_word_embeddings=False)
    c.update(kw)
    return c


MODELS = [
    dict(name="llama", model_type="llama", config=base(),
         covers="llama, untied lm_head, no biases"),
    dict(name="llama-tied", model_type="llama", config=base(tie_word_embeddings=True),
         covers="llama, tied embeddings (no lm_head.weight in the file)"),
    dict(name="llama-bias", model_type="llama", config=base(attention_bias=True, mlp_bias=True),
         covers="llama attention_bias (q,k,v,o biases) and mlp_bias (gate,up,down biases)"),
    dict(name="mistral", model_type="mistral", config=base(sliding_window=8),
         covers="mistral, sliding_window 8 on both layers (query i sees keys i-7..i)"),
    dict(name="qwen2", model_type="qwen2",
         config=base(use_sliding_window=True, max_window_layers=1, sliding_window=8),
         covers="qwen2: q/k/v biases, untied, layer 0 full attention, layer 1 sliding 8 (rope_theta 1e4: with "
                "1e6 the k_proj bias gradient of the slowest rotary pair is ~0 and its 10-step AdamW result is set "
                "by f32 rounding noise)"),
    dict(name="qwen3", model_type="qwen3", config=base(tie_word_embeddings=True),
         covers="qwen3: q_norm/k_norm over each head's 8 features, no biases, tied (as Qwen3-0.6B..4B)"),
    dict(name="gemma", model_type="gemma", zero_norm=True,
         config=base(hidden_act="gelu_pytorch_tanh", tie_word_embeddings=True),
         covers="gemma: tied, GeGLU gelu_pytorch_tanh, (1+w) RMSNorm, embeddings * sqrt(32)"),
    dict(name="gemma2", model_type="gemma2", zero_norm=True,
         config=base(hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=24, attn_logit_softcapping=4.0,
                     final_logit_softcapping=8.0, sliding_window=8, tie_word_embeddings=True),
         covers="gemma2: attn softcap 4, final softcap 8, 4 norms per layer, query_pre_attn_scalar 24, "
                "layer 0 sliding 8 / layer 1 full, tied"),
    dict(name="phi3", model_type="phi3", config=base(partial_rotary_factor=0.5),
         covers="phi3: fused qkv_proj [64,32] (q 32 rows, k 16, v 16) and gate_up_proj [128,32] (gate 64, up 64), "
                "partial_rotary_factor 0.5 (rotary dims 0..3 of each head), untied"),
    dict(name="llama-wide", model_type="llama", std_mat=0.125, data="long",
         config=base(hidden_size=128, intermediate_size=192, num_hidden_layers=1, num_attention_heads=2,
                     num_key_value_heads=1, head_dim=64, max_position_embeddings=256, tie_word_embeddings=True),
         covers="llama, tied, hidden 128, 2 heads and 1 kv head of 64, intermediate 192, 1 layer: products and "
                "sequences (data-long.jsonl) large enough for lf's own CPU matrix product and the attention "
                "backward's longer key blocks"),
    dict(name="mixtral", model_type="mixtral", config=base(num_local_experts=4, num_experts_per_tok=2,
                                                           intermediate_size=16),
         covers="mixtral: 4 experts (w1 gate [16,32], w3 up [16,32], w2 down [32,16]), router "
                "block_sparse_moe.gate [4,32], top 2 renormalised, untied"),
]
MODEL = {m["name"]: m for m in MODELS}

# knockouts by config change, for the full case of the model
CONFIG_KO = {
    "mistral": [("sliding_window=None", dict(sliding_window=None))],
    "qwen2": [("all layers full attention", dict(layer_types=["full_attention"] * 2))],
    "gemma2": [("attn_logit_softcapping=None", dict(attn_logit_softcapping=None)),
               ("final_logit_softcapping=None", dict(final_logit_softcapping=None)),
               ("all layers full attention", dict(layer_types=["full_attention"] * 2))],
    "gemma": [("hidden_act=gelu (erf)", dict(hidden_act="gelu"))],
    "phi3": [("partial_rotary_factor=1", dict(partial_rotary_factor=1.0))],
    "mixtral": [("num_experts_per_tok=1", dict(num_experts_per_tok=1))],
    "qwen3": [("rms_norm_eps=1e-2", dict(rms_norm_eps=1e-2))],
}


def full(m, **kw):
    d = dict(name=f"{m}-full", model=m, finetuning_type="full",
             covers=f"full fine-tuning of {m}: every tensor trained")
    if "data" in MODEL[m]:   # the model's own data set
        d["data"] = MODEL[m]["data"]
    d.update(kw)
    return d


def lora(m, **kw):
    d = dict(name=f"{m}-lora", model=m, finetuning_type="lora", lora_rank=4, lora_alpha=8, lora_target="all",
             covers=f"LoRA r 4 alpha 8 (scale 2) on every linear layer of {m} but lm_head (lora_target all)")
    if "data" in MODEL[m]:
        d["data"] = MODEL[m]["data"]
    d.update(kw)
    return d


CASES = (
    [full(m["name"]) for m in MODELS]
    + [dict(name="llama-freeze", model="llama", finetuning_type="freeze", freeze_trainable_layers=1,
            freeze_trainable_modules="all",
            covers="freeze: the last layer (freeze_trainable_layers 1), all its modules; embeddings, norm, lm_head "
                   "frozen"),
       dict(name="llama-freeze-mlp", model="llama", finetuning_type="freeze", freeze_trainable_layers=1,
            freeze_trainable_modules="mlp",
            covers="freeze: the last layer's mlp only (freeze_trainable_layers 1, modules mlp): the backward "
                   "stops inside that layer (nothing below it, not even its attention, trains)"),
       dict(name="qwen2-freeze", model="qwen2", finetuning_type="freeze", freeze_trainable_layers=-1,
            freeze_trainable_modules="mlp", freeze_extra_modules="embed_tokens,norm",
            covers="freeze: the first layer's mlp (freeze_trainable_layers -1, modules mlp) plus extra modules "
                   "embed_tokens,norm, which by LLaMA-Factory's substring rule also trains every layer's "
                   "input_layernorm and post_attention_layernorm")]
    + [lora(m["name"]) for m in MODELS]
    + [lora("llama", name="llama-rslora", use_rslora=True,
            covers="rsLoRA r 4 alpha 8: scale alpha/sqrt(r) = 4 (not alpha/r = 2), lora_target all, llama"),
       lora("qwen3", name="qwen3-rslora", use_rslora=True,
            covers="rsLoRA r 4 alpha 8: scale alpha/sqrt(r) = 4, lora_target all, qwen3"),
       lora("llama", name="llama-dora", use_dora=True,
            covers="DoRA r 4 alpha 8, lora_target all, llama: magnitude vectors trained, weight norm detached"),
       lora("qwen2", name="qwen2-dora", use_dora=True,
            covers="DoRA r 4 alpha 8, lora_target all, qwen2 (q/k/v biases: the magnitude scales W x, not the "
                   "bias)"),
       lora("phi3", name="phi3-dora", use_dora=True,
            covers="DoRA r 4 alpha 8, lora_target all, phi3 (fused qkv_proj / gate_up_proj: one magnitude per "
                   "fused output row)"),
       lora("llama", name="llama-lora-dropout", lora_dropout=0.25,
            covers="LoRA r 4 alpha 8 with lora_dropout 0.25 on every adapter's input, llama; the masks are lf's "
                   "(lf_lora_dropout_key), given to PEFT in place of torch's random ones"),
       lora("llama", name="llama-dora-dropout", use_dora=True, lora_dropout=0.25,
            covers="DoRA with lora_dropout 0.25, llama: PEFT's W x + (g - 1) W xd + g s B A xd, xd the dropped "
                   "input, with lf's masks"),
       lora("phi3", name="phi3-dora-dropout", use_dora=True, lora_dropout=0.25,
            covers="DoRA with lora_dropout 0.25, phi3: one mask per fused module (qkv_proj, gate_up_proj), "
                   "with lf's masks"),
       lora("qwen2", name="qwen2-lora-qv-embed", lora_target="q_proj,v_proj", additional_target="embed_tokens",
            covers="LoRA on q_proj,v_proj only plus additional_target embed_tokens (PEFT modules_to_save: a full "
                   "trainable copy of embed_tokens, saved as base_model.model.model.embed_tokens.weight)"),
       full("mixtral", name="mixtral-aux", moe_aux_loss_coef=0.01,
            covers="mixtral full fine-tuning with moe_aux_loss_coef 0.01: router load-balancing loss per "
                   "micro-batch added to the loss"),
       full("llama", name="llama-pt", stage="pt",
            covers="pre-training stage (labels == input_ids, num_items_in_batch counts every token), llama full")]
)

# the data files: the sets cases name ("data", else their stage)
DATA_FILES = {"sft": "data.jsonl", "pt": "data-pt.jsonl", "long": "data-long.jsonl"}


def seed_of(name, what):
    return zlib.crc32(f"train/{name}/{what}".encode())


def g6(x):
    return float(f"{x:.6g}")


# ---------------------------------------------------------------- data

SFT_SHAPES = [  # (length, [(start, end) of label spans])
    (9, [(5, 9)]),
    (40, [(10, 19), (30, 40)]),     # two turns
    (23, [(12, 23)]),
    (17, [(16, 17)]),               # a single label token
    (31, [(14, 31)]),
    (12, [(7, 12)]),
]
PT_LENS = [12, 33, 9, 40, 20, 27]
LONG_SHAPES = [
    (130, [(40, 130)]),
    (97, [(30, 60), (70, 97)]),     # two turns
    (160, [(100, 160)]),
    (72, [(20, 72)]),
    (121, [(60, 121)]),
    (88, [(44, 88)]),
]


def supervised(torch, what, shapes):
    g = torch.Generator().manual_seed(seed_of("data", what))
    rows = []
    for n, spans in shapes:
        ids = torch.randint(3, V, (n,), generator=g).tolist()
        labels = [-100] * n
        for a, b in spans:
            labels[a:b] = ids[a:b]
        rows.append({"input_ids": ids, "labels": labels})
    return rows


def make_data(torch):
    """The data sets by DATA_FILES key"""
    g = torch.Generator().manual_seed(seed_of("data", "pt"))
    pt = []
    for n in PT_LENS:
        ids = torch.randint(3, V, (n,), generator=g).tolist()
        pt.append({"input_ids": ids, "labels": list(ids)})
    return {"sft": supervised(torch, "sft", SFT_SHAPES), "pt": pt, "long": supervised(torch, "long", LONG_SHAPES)}


def collate(torch, examples, multiple_of):
    """LLaMA-Factory's collators: right padding, pad id 0, labels -100."""
    n = max(len(e["input_ids"]) for e in examples)
    if multiple_of:
        n = (n + multiple_of - 1) // multiple_of * multiple_of
    ids, mask, labels = [], [], []
    for e in examples:
        k = len(e["input_ids"])
        ids.append(e["input_ids"] + [0] * (n - k))
        mask.append([1] * k + [0] * (n - k))
        labels.append(e["labels"] + [-100] * (n - k))
    return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask), "labels": torch.tensor(labels)}


def micro_batches(torch, data, stage):
    bs, ga = HP["per_device_train_batch_size"], HP["gradient_accumulation_steps"]
    assert len(data) == bs * ga
    return [collate(torch, data[i * bs:(i + 1) * bs], 8 if stage == "sft" else None) for i in range(ga)]


# ---------------------------------------------------------------- worker side

def worker_setup():
    os.environ.setdefault("DISABLE_VERSION_CHECK", "1")
    import torch
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    import transformers
    transformers.logging.set_verbosity_error()
    if hasattr(transformers.logging, "disable_progress_bar"):
        transformers.logging.disable_progress_bar()
    return torch, transformers


def import_llamafactory():
    """LLaMA-Factory's adapter/freeze code.  trl is not installed: its value-head
    class is only needed by the loader, so a stub module stands in."""
    if "trl" not in sys.modules:
        stub = types.ModuleType("trl")
        stub.AutoModelForCausalLMWithValueHead = object
        sys.modules["trl"] = stub
    import logging
    import llamafactory.hparams as hp
    from llamafactory.model.adapter import init_adapter
    from llamafactory.model.model_utils.moe import configure_moe
    logging.getLogger("llamafactory").setLevel(logging.ERROR)
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("llamafactory"):
            logging.getLogger(name).setLevel(logging.ERROR)
    return hp, init_adapter, configure_moe


def dtype_kw(torch, transformers, dtype):
    return {("torch_dtype" if transformers.__version__.startswith("4.") else "dtype"): dtype}


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
                v = r * spec.get("std_mat", STD_MAT)
            p.copy_(v)


def build_model(torch, transformers, spec, out):
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForCausalLM
    path = os.path.join(out, "models", spec["name"])
    shutil.rmtree(path, ignore_errors=True)
    cfg = AutoConfig.for_model(spec["model_type"], **json.loads(json.dumps(spec["config"])))
    torch.manual_seed(seed_of(spec["name"], "init"))
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    randomize(torch, model, spec)
    model.to(torch.float32)
    model.save_pretrained(path, safe_serialization=True)
    # check: the loaded model's parameters are the file's tensors, all F32
    errs = []
    loaded = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager",
                                                  **dtype_kw(torch, transformers, torch.float32))
    params = dict(loaded.named_parameters())
    with safe_open(os.path.join(path, "model.safetensors"), "pt") as f:
        names = set(f.keys())
        for n in names:
            if f.get_slice(n).get_dtype() != "F32":
                errs.append(f"{n} is {f.get_slice(n).get_dtype()}")
            if n not in params or not torch.equal(params[n].detach(), f.get_tensor(n)):
                errs.append(f"{n}: not a parameter equal to the file")
    for n in params:
        if n not in names:
            errs.append(f"parameter {n} not in the file")
    with open(os.path.join(path, "config.json")) as f:
        c = json.load(f)
    return {"model_type": spec["model_type"], "covers": spec["covers"], "transformers": transformers.__version__,
            "num_tensors": len(names), "tie_word_embeddings": c.get("tie_word_embeddings", "class default"),
            "check_errors": errs}


def load_base(torch, transformers, path, dtype, cfg_mod=None, aux_coef=None):
    from transformers import AutoConfig, AutoModelForCausalLM
    cfg = AutoConfig.from_pretrained(path)
    if aux_coef:
        # LLaMA-Factory configure_moe: output_router_logits True, router_aux_loss_coef
        cfg.output_router_logits = True
        cfg.router_aux_loss_coef = aux_coef
    for k, v in (cfg_mod or {}).items():
        setattr(cfg, k, v)
    return AutoModelForCausalLM.from_pretrained(path, config=cfg, attn_implementation="eager",
                                                **dtype_kw(torch, transformers, dtype))


def ft_args(hp, case):
    kw = {k: case[k] for k in ("finetuning_type", "lora_rank", "lora_alpha", "lora_dropout", "lora_target",
                               "additional_target", "use_rslora", "use_dora", "freeze_trainable_layers",
                               "freeze_trainable_modules", "freeze_extra_modules") if k in case}
    kw.setdefault("lora_dropout", 0.0)
    return hp.FinetuningArguments(**kw)


def saved_name(n):
    """PEFT parameter name -> the name PEFT saves in adapter_model.safetensors."""
    if ".modules_to_save.default." in n:
        return n.replace(".modules_to_save.default.", ".")
    if ".lora_magnitude_vector.default.weight" in n:
        return n.replace(".lora_magnitude_vector.default.weight", ".lora_magnitude_vector")
    if ".default." in n and (".lora_A." in n or ".lora_B." in n):
        return n.replace(".default.", ".")
    return n


def is_peft(case):
    return case["finetuning_type"] == "lora"


def case_paths(out, case):
    cdir = os.path.join(out, "cases", case["name"])
    base_path = os.path.relpath(os.path.join(out, "models", case["model"]), ROOT)   # cwd is ROOT
    return cdir, base_path, os.path.join(cdir, "adapter-init")


def lora_scale(case):
    return case["lora_alpha"] / (math.sqrt(case["lora_rank"]) if case.get("use_rslora") else case["lora_rank"])


def lora_sigma(case):
    """std of the lora_A / lora_B entries such that scale * B @ A has entries of std DELTA_STD."""
    return math.sqrt(DELTA_STD / (lora_scale(case) * math.sqrt(case["lora_rank"])))


def make_adapter(torch, transformers, out, case):
    """LLaMA-Factory init_adapter creates the LoRA; randomised; saved with PEFT."""
    hp, init_adapter, _ = import_llamafactory()
    cdir, base_path, adir = case_paths(out, case)
    shutil.rmtree(adir, ignore_errors=True)
    model = load_base(torch, transformers, base_path, torch.float32)
    margs = hp.ModelArguments(model_name_or_path=base_path)
    torch.manual_seed(seed_of(case["name"], "peft-init"))
    pm = init_adapter(model.config, model, margs, ft_args(hp, case), True)
    g = torch.Generator().manual_seed(seed_of(case["name"], "lora"))
    sigma = lora_sigma(case)
    n = 0
    with torch.no_grad():
        for name, p in sorted(pm.named_parameters()):
            if ".lora_A." in name or ".lora_B." in name:
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32) * sigma)
                n += 1
            elif ".lora_magnitude_vector." in name:
                p.mul_(1.0 + torch.randn(p.shape, generator=g, dtype=torch.float32) * MAG_STD)
    pm.save_pretrained(adir, safe_serialization=True)
    readme = os.path.join(adir, "README.md")
    if os.path.exists(readme):
        os.remove(readme)
    return n


# ---------------------------------------------------------------- lf's LoRA dropout masks

SEED = 42          # lf-train's --seed default, LLaMA-Factory's seed default
M64 = (1 << 64) - 1


def mix64(z, np):
    """splitmix64's finaliser over a numpy uint64 array (wrapping)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xbf58476d1ce4e5b9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94d049bb133111eb)
    return z ^ (z >> np.uint64(31))


def dropout_keep(np, a_name, step, k, p, n):
    """lf's mask (libcommon/backprop.h lf_lora_dropout_key): element i of a module's input, the micro-batch's tokens
    in row order without padding, is kept (and scaled by 1 / (1 - p) in f32) when (mix(key + i) >> 11) * 2^-53 >= p
    (p as f32), key = mix(noise_seed ^ mix(fnv1a64(name of the module's lora_A) + 0x9e3779b97f4a7c15)),
    noise_seed = SEED << 40 ^ rank 0 << 28 ^ step << 8 ^ micro-batch k."""
    h = 0xcbf29ce484222325
    for c in a_name.encode():
        h = ((h ^ c) * 0x100000001b3) & M64
    seed = (SEED << 40) ^ (step << 8) ^ k
    with np.errstate(over="ignore"):
        inner = int(mix64(np.array([(h + 0x9e3779b97f4a7c15) & M64], dtype=np.uint64), np)[0])
        key = int(mix64(np.array([seed ^ inner], dtype=np.uint64), np)[0])
        u = (mix64(np.uint64(key) + np.arange(n, dtype=np.uint64), np) >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
    scale = np.float32(1.0) / (np.float32(1.0) - np.float32(p))
    return np.where(u >= float(np.float32(p)), scale, np.float32(0.0)).astype(np.float32)


def install_masks(torch, model, case):
    """Every LoRA module's dropout becomes lf's mask of the micro-batch being run: a forward pre-hook on the model
    counts the training forwards (micro-batch c is step c // GA, micro-batch c % GA) and takes each row's length
    from input_ids (pad id 0; ids are >= 3)."""
    import numpy as np
    from peft.tuners.lora import LoraLayer
    state = {"calls": 0, "lens": None, "step": 0, "k": 0, "on": True}
    ga, p = HP["gradient_accumulation_steps"], case["lora_dropout"]

    class LfMask(torch.nn.Module):
        def __init__(self, a_name):
            super().__init__()
            self.a_name = a_name

        def forward(self, x):
            if not state["on"]:
                return x
            lens = state["lens"]
            keep = dropout_keep(np, self.a_name, state["step"], state["k"], p, sum(lens) * x.shape[-1])
            keep = torch.from_numpy(keep).view(sum(lens), x.shape[-1])
            mask = torch.ones(x.shape, dtype=torch.float32)
            off = 0
            for b, n in enumerate(lens):
                mask[b, :n] = keep[off:off + n]
                off += n
            return x * mask.to(x.dtype)

    n = 0
    for name, mod in model.named_modules():
        if isinstance(mod, LoraLayer) and "default" in mod.lora_dropout:
            mod.lora_dropout["default"] = LfMask(name + ".lora_A.weight")
            n += 1
    assert n > 0

    def pre(module, args, kwargs):
        if module.training and torch.is_grad_enabled():
            state["lens"] = [int(r) for r in kwargs["input_ids"].ne(0).sum(1)]
            state["step"], state["k"] = divmod(state["calls"], ga)
            state["calls"] += 1
    model.register_forward_pre_hook(pre, with_kwargs=True)
    model.lf_mask_state = state
    return model


def setup_model(torch, transformers, out, case, dtype=None, cfg_mod=None, use_llamafactory=True, aux_coef=None):
    """The model as LLaMA-Factory prepares it for training: trainable flags set."""
    dtype = dtype or torch.float32
    cdir, base_path, adir = case_paths(out, case)
    if aux_coef is None:
        aux_coef = case.get("moe_aux_loss_coef")
    model = load_base(torch, transformers, base_path, dtype, cfg_mod, aux_coef)
    if use_llamafactory:
        hp, init_adapter, _ = import_llamafactory()
        margs = hp.ModelArguments(model_name_or_path=base_path,
                                  adapter_name_or_path=adir if is_peft(case) else None)
        model = init_adapter(model.config, model, margs, ft_args(hp, case), True)
    else:   # version cross-check: trainable set from case.json
        if is_peft(case):
            from peft import PeftModel
            model = PeftModel.from_pretrained(model, adir, is_trainable=True)
        else:
            with open(os.path.join(cdir, "case.json")) as f:
                trainable = set(json.load(f)["trainable"])
            for n, p in model.named_parameters():
                p.requires_grad_(n in trainable)
    model.to(dtype)
    model.train()
    if case.get("lora_dropout"):
        install_masks(torch, model, case)
    return model


def decay_names(model):
    from transformers import Trainer
    return set(Trainer.get_decay_parameter_names(None, model))


def run(torch, model, mbs, steps=10, count_after_shift=False, per_mb_mean=False, decay_all=False, no_clip=False,
        scheduler="cosine", aux_scale=1.0):
    """HF Trainer's loop (see the docstring).  Returns step-0 grads (pre-clip), per-step losses,
    grad norms, lrs, aux losses and the trainable tensors after `steps` steps (internal names)."""
    from transformers import get_scheduler
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    dn = decay_names(model)
    groups = [{"params": [p for n, p in named if n in dn or decay_all], "weight_decay": HP["weight_decay"]},
              {"params": [p for n, p in named if not (n in dn or decay_all)], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=HP["learning_rate"], betas=(HP["adam_beta1"], HP["adam_beta2"]),
                            eps=HP["adam_epsilon"], foreach=False)
    sched = get_scheduler(scheduler, opt, num_warmup_steps=HP["warmup_steps"], num_training_steps=HP["max_steps"])
    n_items = sum(int(mb["labels"].ne(-100).sum()) for mb in mbs)
    if count_after_shift:
        n_items = sum(int(mb["labels"][:, 1:].ne(-100).sum()) for mb in mbs)
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    coef0 = getattr(inner, "router_aux_loss_coef", None)
    if coef0 is not None:
        inner.router_aux_loss_coef = coef0 * aux_scale
    res = {"losses": [], "grad_norms": [], "learning_rates": [], "aux_losses": [], "ce_losses": [],
           "num_items_in_batch": n_items}
    for step in range(steps):
        model.zero_grad(set_to_none=True)
        total, ce, auxs = 0.0, 0.0, []
        for mb in mbs:
            kw = {} if per_mb_mean else {"num_items_in_batch": torch.tensor(n_items)}
            o = model(**mb, use_cache=False, **kw)
            loss = o.loss / len(mbs) if per_mb_mean else o.loss
            loss.backward()
            total += float(loss.detach())
            if getattr(o, "aux_loss", None) is not None:
                auxs.append(float(o.aux_loss.detach()))
                ce += float(o.loss.detach()) - inner.router_aux_loss_coef * float(o.aux_loss.detach())
        if step == 0:
            res["grads"] = {n: p.grad.detach().clone() for n, p in named}
        params = [p for _, p in named]
        if no_clip:
            gn = torch.nn.utils.clip_grad_norm_(params, float("inf"))
        else:
            gn = torch.nn.utils.clip_grad_norm_(params, HP["max_grad_norm"])
        res["learning_rates"].append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        res["losses"].append(total)
        res["grad_norms"].append(float(gn))
        if auxs:
            res["aux_losses"].append(auxs)
            res["ce_losses"].append(ce)
    if coef0 is not None:
        inner.router_aux_loss_coef = coef0
    res["after"] = {n: p.detach().clone() for n, p in named}
    return res


def compare(torch, ref, other, key_map=None, with_worst=False):
    """grads: max over tensors of max|d| / max|g_ref|; after: max over tensors of ||d|| / ||W_ref||."""
    out = {"loss_rel": g6(abs(other["losses"][0] - ref["losses"][0]) / abs(ref["losses"][0]))}
    key_map = key_map or {}
    for what, tol in (("grads", GRAD_TOL), ("after", AFTER_TOL)):
        worst, over, missing, wname = 0.0, 0, 0, None
        for n, a in ref[what].items():
            b = other[what].get(key_map.get(n, n))
            if b is None:
                missing += 1
                continue
            a64, b64 = a.double(), b.double()
            if not torch.isfinite(b64).all():
                d = math.inf
            elif what == "grads":
                d = float((a64 - b64).abs().max()) / max(float(a64.abs().max()), 1e-30)
            else:
                d = float((a64 - b64).norm()) / max(float(a64.norm()), 1e-30)
            if d > worst:
                worst, wname = d, n
            over += d > tol
            if with_worst and d > 0.1 * tol:
                out.setdefault(what + "_near_tol", {})[saved_name(n)] = g6(d)
        out[what] = g6(worst)
        if with_worst and wname is not None:
            out[what + "_worst"] = saved_name(wname)
        out[what + "_over_tol"] = over
        if missing:
            out[what + "_missing"] = missing
    return out


def dora_no_detach(torch):
    """Knockout: PEFT's DoraLinearLayer.forward without the two .detach() calls."""
    import torch.nn.functional as F
    from peft.tuners.lora.dora import DoraLinearLayer
    from peft.utils.integrations import dequantize_module_weight
    from peft.utils.other import transpose

    def forward(self, x, *, lora_A, lora_B, scaling, base_layer, base_result=None):
        x_eye = torch.eye(lora_A.weight.shape[1], device=lora_A.weight.device, dtype=x.dtype)
        lora_weight = lora_B(lora_A(x_eye)).T
        magnitude = self.weight
        weight = dequantize_module_weight(base_layer).to(x.dtype)
        weight_norm = self.get_weight_norm(weight, lora_weight, scaling)
        mag_norm_scale = (magnitude / weight_norm).view(1, -1)
        lora_result = lora_B(lora_A(x))
        if base_result is not None:
            if base_layer.bias is not None:
                base_result = base_result - base_layer.bias
        else:
            base_result = F.linear(x, transpose(weight, self.fan_in_fan_out))
        return (mag_norm_scale - 1) * base_result + mag_norm_scale * lora_result * scaling

    return DoraLinearLayer, forward


def aux_without_mask(torch):
    """Knockout: mixtral's load-balancing loss with attention_mask=None (padding counted)."""
    from transformers.models.mixtral import modeling_mixtral as mm
    orig = mm.load_balancing_loss_func

    def f(gate_logits, num_experts=None, top_k=2, attention_mask=None):
        return orig(gate_logits, num_experts, top_k, None)
    return mm, orig, f


def set_scaling(model, value):
    from peft.tuners.lora import LoraLayer
    for mod in model.modules():
        if isinstance(mod, LoraLayer):
            for k in mod.scaling:
                mod.scaling[k] = value


def trainer_run(torch, transformers, model, data, stage, tmp):
    """The same 10 steps by transformers.Trainer (sequential sampler, default optimizer)."""
    from torch.utils.data import SequentialSampler
    from transformers import Trainer, TrainingArguments

    class SeqTrainer(Trainer):
        def _get_train_sampler(self, *a, **k):
            return SequentialSampler(self.train_dataset)

    args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=HP["per_device_train_batch_size"],
                             gradient_accumulation_steps=HP["gradient_accumulation_steps"],
                             max_steps=HP["max_steps"], learning_rate=HP["learning_rate"],
                             lr_scheduler_type=HP["lr_scheduler_type"], warmup_steps=HP["warmup_steps"],
                             weight_decay=HP["weight_decay"], max_grad_norm=HP["max_grad_norm"], logging_steps=1,
                             save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
                             dataloader_num_workers=0, remove_unused_columns=False, seed=0)
    tr = SeqTrainer(model=model, args=args, train_dataset=data,
                    data_collator=lambda ex: collate(torch, ex, 8 if stage == "sft" else None))
    with contextlib.redirect_stdout(io.StringIO()):   # its PrinterCallback prints every log
        tr.train()
    logs = [e for e in tr.state.log_history if "grad_norm" in e]
    return {"optim": str(args.optim), "model_accepts_loss_kwargs": tr.model_accepts_loss_kwargs,
            "grad_norms": [float(e["grad_norm"]) for e in logs], "logged_losses": [e["loss"] for e in logs],
            "after": {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}}


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")


def chmod_tree(path):
    """save_file / save_pretrained leave some files 0600: make every file 0644."""
    for dp, _, fns in os.walk(path):
        for fn in fns:
            os.chmod(os.path.join(dp, fn), 0o644)


def build_case(torch, transformers, out, case, data_sets):
    from safetensors import safe_open
    from safetensors.torch import save_file
    hp, _, _ = import_llamafactory()
    name = case["name"]
    stage = case.get("stage", "sft")
    cdir, base_path, adir = case_paths(out, case)
    shutil.rmtree(cdir, ignore_errors=True)
    os.makedirs(cdir)
    errs = []
    if is_peft(case):
        make_adapter(torch, transformers, out, case)
    data = data_sets[case.get("data", stage)]
    mbs = micro_batches(torch, data, stage)

    model = setup_model(torch, transformers, out, case)
    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    smap = {n: saved_name(n) for n in named}
    # the trainable tensors are exactly the adapter file's (lora) / a subset of the model file's
    if is_peft(case):
        with safe_open(os.path.join(adir, "adapter_model.safetensors"), "pt") as f:
            fkeys = set(f.keys())
            for n, p in named.items():
                if smap[n] not in fkeys:
                    errs.append(f"trainable {n} ({smap[n]}) not in adapter_model.safetensors")
                elif not torch.equal(p.detach(), f.get_tensor(smap[n])):
                    errs.append(f"trainable {n} differs from the adapter file")
            if fkeys != set(smap.values()):
                errs.append(f"adapter file tensors {sorted(fkeys - set(smap.values()))[:3]} not trainable")
        with open(os.path.join(adir, "adapter_config.json")) as f:
            acfg = json.load(f)
    else:
        acfg = None
        with safe_open(os.path.join(out, "models", case["model"], "model.safetensors"), "pt") as f:
            fkeys = set(f.keys())
        for n in named:
            if n not in fkeys:
                errs.append(f"trainable {n} is not a tensor of model.safetensors")
    # no dropout / jitter but lf's masks: the train-mode loss equals the eval-mode one
    if case.get("lora_dropout"):
        model.lf_mask_state["on"] = False
    with torch.no_grad():
        l_train = float(model(**mbs[0], use_cache=False).loss)
        model.eval()
        l_eval = float(model(**mbs[0], use_cache=False).loss)
        model.train()
    if l_train != l_eval:
        errs.append(f"train-mode loss {l_train} != eval-mode loss {l_eval}")
    if case.get("lora_dropout"):
        model.lf_mask_state["on"] = True

    ref = run(torch, model, mbs)
    dn = decay_names(model)
    # determinism: the same run again on a fresh model
    again = run(torch, setup_model(torch, transformers, out, case), mbs)
    deterministic = (again["losses"] == ref["losses"] and again["grad_norms"] == ref["grad_norms"]
                     and all(torch.equal(ref["after"][n], again["after"][n]) for n in ref["after"])
                     and all(torch.equal(ref["grads"][n], again["grads"][n]) for n in ref["grads"]))
    if not deterministic:
        errs.append("10-step run not bit-exactly repeatable")
    for n, gr in ref["grads"].items():
        if not torch.isfinite(gr).all():
            errs.append(f"non-finite gradient {n}")
        elif float(gr.abs().max()) == 0.0:
            errs.append(f"zero gradient {n}")

    loss = torch.tensor([ref["losses"][0]], dtype=torch.float32)
    save_file({"loss": loss, **{f"grad.{smap[n]}": g.float().contiguous() for n, g in ref["grads"].items()}},
              os.path.join(cdir, "grads.safetensors"))
    save_file({smap[n]: t.float().contiguous() for n, t in ref["after"].items()},
              os.path.join(cdir, "after.safetensors"))

    # ---- knockouts
    ko = {}

    def fresh(**kw):
        return setup_model(torch, transformers, out, case, **kw)

    ko["loss averaged per micro-batch (no num_items_in_batch)"] = compare(torch, ref, run(torch, fresh(), mbs,
                                                                                           per_mb_mean=True))
    if stage == "pt":
        ko["num_items_in_batch counted after the shift"] = compare(torch, ref, run(torch, fresh(), mbs,
                                                                                   count_after_shift=True))
    if case.get("use_rslora"):
        m = fresh()
        set_scaling(m, case["lora_alpha"] / case["lora_rank"])
        ko["rsLoRA ignored (scale alpha/r)"] = compare(torch, ref, run(torch, m, mbs))
    if is_peft(case) and not case.get("use_rslora") and not case.get("use_dora") and name == "llama-lora":
        m = fresh()
        set_scaling(m, case["lora_alpha"] / math.sqrt(case["lora_rank"]))
        ko["scale alpha/sqrt(r) (rsLoRA wrongly on)"] = compare(torch, ref, run(torch, m, mbs))
    if case.get("use_dora"):
        cls, fwd = dora_no_detach(torch)
        orig = cls.forward
        cls.forward = fwd
        try:
            ko["DoRA weight norm not detached"] = compare(torch, ref, run(torch, fresh(), mbs))
        finally:
            cls.forward = orig
    if case.get("lora_dropout"):
        m = fresh()
        m.lf_mask_state["on"] = False
        ko["no LoRA dropout"] = compare(torch, ref, run(torch, m, mbs))
        m = fresh()
        m.lf_mask_state["calls"] = 1
        ko["each micro-batch given the next one's masks"] = compare(torch, ref, run(torch, m, mbs))
    if case.get("moe_aux_loss_coef"):
        ko["no aux loss"] = compare(torch, ref, run(torch, fresh(aux_coef=0.0), mbs))
        ko["aux loss averaged over micro-batches (coef / GA)"] = compare(
            torch, ref, run(torch, fresh(), mbs, aux_scale=1.0 / HP["gradient_accumulation_steps"]))
        mm, orig, f = aux_without_mask(torch)
        mm.load_balancing_loss_func = f
        try:
            ko["aux loss without the attention mask (padding counted)"] = compare(torch, ref,
                                                                                  run(torch, fresh(), mbs))
        finally:
            mm.load_balancing_loss_func = orig
    if case["finetuning_type"] == "full" and stage == "sft" and not case.get("moe_aux_loss_coef"):
        for label, mod in CONFIG_KO.get(case["model"], []):
            ko[label] = compare(torch, ref, run(torch, fresh(cfg_mod=mod), mbs))
    if name == "llama-full":
        ko["weight decay on every tensor (norms too)"] = compare(torch, ref, run(torch, fresh(), mbs, decay_all=True))
        ko["no gradient clipping"] = compare(torch, ref, run(torch, fresh(), mbs, no_clip=True))
        ko["linear instead of cosine schedule"] = compare(torch, ref, run(torch, fresh(), mbs, scheduler="linear"))

    # ---- checks: float64, HF Trainer
    # float64 re-run.  Without the padding mask (with right padding it changes nothing for real tokens) except
    # for the aux loss, which uses it: transformers' eager softmax runs in f32, where f64's finfo.min mask becomes
    # -inf and a padded query whose sliding window holds only padding would give NaN.
    mbs64 = mbs if case.get("moe_aux_loss_coef") else [
        {**mb, "attention_mask": torch.ones_like(mb["attention_mask"])} for mb in mbs]
    r64 = run(torch, setup_model(torch, transformers, out, case, dtype=torch.float64), mbs64)
    f64 = compare(torch, r64, ref, with_worst=True)
    f64["grad_norm_rel"] = g6(max(abs(a - b) / b for a, b in zip(ref["grad_norms"], r64["grad_norms"])))
    with tempfile.TemporaryDirectory() as tmp:
        tr = trainer_run(torch, transformers, fresh(), data, stage, tmp)
    trainer = {"optim": tr["optim"], "model_accepts_loss_kwargs": tr["model_accepts_loss_kwargs"],
               "logged_losses": tr["logged_losses"],
               "grad_norm_rel": g6(max(abs(a - b) / b for a, b in zip(ref["grad_norms"], tr["grad_norms"]))),
               "after": compare(torch, {"losses": [1.0], "grads": {}, "after": ref["after"]},
                                {"losses": [1.0], "grads": {}, "after": tr["after"]})["after"]}
    if trainer["after"] > 0.3 * AFTER_TOL or trainer["grad_norm_rel"] > 1e-4:
        errs.append(f"HF Trainer differs: {trainer}")
    if f64["grads"] > 0.3 * GRAD_TOL or f64["after"] > 0.3 * AFTER_TOL:
        errs.append(f"float64 re-run differs a lot: {f64}")

    trainable = sorted(smap.values())
    no_decay = sorted(smap[n] for n in named if n not in dn)
    recipe = {"stage": stage, "finetuning_type": case["finetuning_type"]}
    for k in ("lora_rank", "lora_alpha", "lora_target", "additional_target", "use_rslora", "use_dora",
              "freeze_trainable_layers", "freeze_trainable_modules", "freeze_extra_modules", "moe_aux_loss_coef"):
        if k in case:
            recipe[k] = case[k]
    if is_peft(case):
        recipe["lora_dropout"] = case.get("lora_dropout", 0.0)
        recipe["adapter_name_or_path"] = f"cases/{name}/adapter-init"
    recipe.update(HP)
    fa = ft_args(hp, case)
    hparams = {
        "stage": stage, "finetuning_type": case["finetuning_type"],
        "lora_rank": fa.lora_rank, "lora_alpha": fa.lora_alpha, "lora_dropout": fa.lora_dropout,
        "lora_target": case.get("lora_target", "all"), "additional_target": case.get("additional_target"),
        "use_rslora": fa.use_rslora, "use_dora": fa.use_dora,
        "freeze_trainable_layers": fa.freeze_trainable_layers,
        "freeze_trainable_modules": case.get("freeze_trainable_modules", "all"),
        "freeze_extra_modules": case.get("freeze_extra_modules"),
        "moe_aux_loss_coef": case.get("moe_aux_loss_coef"),
        **HP,
    }
    notes = []
    if stage == "pt":
        notes.append("pt: num_items_in_batch = labels != -100 counted before the shift = every token "
                     f"({ref['num_items_in_batch']}), although only {ref['num_items_in_batch'] - len(data)} "
                     "targets exist after the shift (transformers Trainer._get_num_items_in_batch); padding: to the "
                     "longest example of the micro-batch (DataCollatorForLanguageModeling, no multiple of 8)")
    if case.get("moe_aux_loss_coef"):
        notes.append("LLaMA-Factory configure_moe sets config.output_router_logits = True and "
                     "config.router_aux_loss_coef = moe_aux_loss_coef; MixtralForCausalLM.forward adds "
                     "router_aux_loss_coef * load_balancing_loss_func(router_logits of all layers, 4, 2, "
                     "attention_mask) to the CE loss (CE sum / num_items_in_batch) of EACH micro-batch; the Trainer "
                     "sums the 3 micro-batch losses without dividing by gradient_accumulation_steps (it accepts "
                     "loss kwargs), so every micro-batch's aux loss enters with weight 0.01 (not 0.01/3). "
                     "aux per micro-batch: logits [2 layers * 2 rows * T, 4] concatenated layer-major, softmax, "
                     "top-2 experts one-hot [.., 2, 4]; tokens_per_expert = sum(one_hot * mask) / sum(mask) over "
                     "tokens [2, 4]; router_prob = sum(softmax * mask) / sum(mask) [4]; aux = 4 * sum(tokens_per_"
                     "expert * router_prob). ce_losses = losses - 0.01 * sum(aux_losses).")
        notes.append("transformers 5.5.4 differs: its router returns softmax probabilities as router_logits and "
                     "load_balancing_loss_func applies softmax to them again (index.json tf5: loss 1.3e-4 "
                     "relative, gradients 5.6e-3); the goldens follow 4.57.1 (one softmax).")
    if case["finetuning_type"] == "freeze":
        notes.append("LLaMA-Factory _setup_freeze_tuning: trainable layer ids = the last n layers if "
                     "freeze_trainable_layers n > 0, the first -n if n < 0; a parameter is trainable iff its name "
                     "CONTAINS one of the substrings '.{id}.{module}' (module '' for 'all') for each trainable id "
                     "and module of freeze_trainable_modules, or one of freeze_extra_modules verbatim (so extra "
                     "module 'norm' also matches every '*_layernorm' of every layer).")
        extra = [m.strip() for m in (case.get("freeze_extra_modules") or "").split(",") if m.strip()]
        by_substring = sorted(t for t in trainable if any(m in t for m in extra)
                              and not any(m in t.split(".") for m in extra))
        if by_substring:
            notes.append("trainable only because an extra module is a SUBSTRING of their names (an exact "
                         "name-component match would freeze them): " + ", ".join(by_substring))
    if is_peft(case):
        notes.append("adapter: PEFT names (…lora_A.default.weight) are saved without the adapter name; DoRA "
                     "magnitude '…lora_magnitude_vector'; modules_to_save copy '…embed_tokens.weight'. LLaMA-Factory "
                     "resumes it with PeftModel.from_pretrained(is_trainable=True); base weights frozen.")
    if case["model"] == "mixtral" and is_peft(case):
        notes.append("lora_target all on mixtral under transformers 4.57.1 = q,k,v,o_proj + the router "
                     "block_sparse_moe.gate + every expert's w1,w2,w3 (all nn.Linear); under 5.x the experts are "
                     "fused 3-D parameters and the router is not nn.Linear, so it would be q,k,v,o_proj only.")
    doc = {
        "case": name, "stage": stage, "covers": case["covers"],
        "model": f"models/{case['model']}", "model_from_repo_root": base_path,
        "adapter": f"cases/{name}/adapter-init" if is_peft(case) else None,
        "data": DATA_FILES[case.get("data", stage)],
        "recipe": recipe, "hparams": hparams, "trainable": trainable, "no_decay": no_decay,
        "target_modules": sorted(acfg["target_modules"]) if acfg else None,
        "adapter_config": acfg,
        "micro_batches": [{"examples": [2 * i, 2 * i + 1], "padded_len": int(mb["input_ids"].shape[1]),
                           "label_tokens": int(mb["labels"].ne(-100).sum())} for i, mb in enumerate(mbs)],
        "num_items_in_batch": ref["num_items_in_batch"],
        "losses": ref["losses"], "grad_norms": ref["grad_norms"], "learning_rates": ref["learning_rates"],
        "notes": notes,
        "transformers": transformers.__version__,
    }
    if is_peft(case):
        doc["lora_scaling"] = lora_scale(case)
        doc["lora_init_sigma"] = g6(lora_sigma(case))
    if ref["aux_losses"]:
        doc["aux_losses"] = ref["aux_losses"]
        doc["ce_losses"] = ref["ce_losses"]
    import peft
    doc["peft"] = peft.__version__
    write_json(os.path.join(cdir, "case.json"), doc)
    return {
        "covers": case["covers"], "model": case["model"], "stage": stage,
        "finetuning_type": case["finetuning_type"], "loss": ref["losses"][0],
        "final_loss": ref["losses"][-1],
        "max_abs_grad": {smap[n]: g6(float(g.abs().max())) for n, g in ref["grads"].items()},
        "num_trainable": len(trainable),
        "knockouts": ko, "f64": f64, "trainer": trainer, "deterministic": deterministic,
        "check_errors": errs,
    }


def unfuse_mixtral(tensors):
    """transformers 5.x mixtral names -> the checkpoint's (4.x) names: mlp.gate -> block_sparse_moe.gate,
    mlp.experts.gate_up_proj [E, 2I, H] -> experts.e.w1 (rows :I) / w3 (rows I:), down_proj [E, H, I] -> w2."""
    out = {}
    for n, t in tensors.items():
        if ".mlp.experts.gate_up_proj" in n:
            pre = n.split(".mlp.experts.")[0] + ".block_sparse_moe.experts."
            half = t.shape[1] // 2
            for e in range(t.shape[0]):
                out[f"{pre}{e}.w1.weight"] = t[e, :half]
                out[f"{pre}{e}.w3.weight"] = t[e, half:]
        elif ".mlp.experts.down_proj" in n:
            pre = n.split(".mlp.experts.")[0] + ".block_sparse_moe.experts."
            for e in range(t.shape[0]):
                out[f"{pre}{e}.w2.weight"] = t[e]
        else:
            out[n.replace(".mlp.gate.", ".block_sparse_moe.gate.")] = t
    return out


def cross_case(torch, transformers, out, case, data_sets):
    """Under transformers 5.x: step-0 grads and the 10 steps from the same files."""
    from safetensors.torch import load_file
    moe = case["model"] == "mixtral"
    if moe and is_peft(case):
        return {"transformers": transformers.__version__,
                "skipped": "5.x fuses mixtral's experts into 3-D parameters and its router is not nn.Linear: the "
                           "adapter's w1/w2/w3/gate LoRA tensors have no module to load into"}
    stage = case.get("stage", "sft")
    cdir, base_path, _ = case_paths(out, case)
    try:
        if moe:   # full: everything trainable; 5.x names mapped back to the checkpoint's below
            model = load_base(torch, transformers, base_path, torch.float32, aux_coef=case.get("moe_aux_loss_coef"))
            model.train()
        else:
            model = setup_model(torch, transformers, out, case, use_llamafactory=False)
        mine = run(torch, model, micro_batches(torch, data_sets[case.get("data", stage)], stage))
        if moe:
            for what in ("grads", "after"):
                mine[what] = unfuse_mixtral(mine[what])
        smap = {n: saved_name(n) for n in mine["grads"]}
        gold_g = load_file(os.path.join(cdir, "grads.safetensors"))
        gold_a = load_file(os.path.join(cdir, "after.safetensors"))
        gold = {"losses": [float(gold_g["loss"][0])],
                "grads": {n: gold_g["grad." + n] for n in gold_a},
                "after": gold_a}
        other = {"losses": mine["losses"], "grads": {smap[n]: t for n, t in mine["grads"].items()},
                 "after": {smap[n]: t for n, t in mine["after"].items()}}
        res = compare(torch, gold, other)
        res["transformers"] = transformers.__version__
        if case.get("moe_aux_loss_coef") and not transformers.__version__.startswith("4."):
            # 5.x's MixtralTopKRouter returns softmax probabilities as "router_logits" and
            # load_balancing_loss_func applies softmax again; undo the second one (log) to show
            # that this is the only difference
            from transformers.models.mixtral import modeling_mixtral as mm
            orig = mm.load_balancing_loss_func
            mm.load_balancing_loss_func = lambda g, n=None, k=2, a=None: orig(tuple(torch.log(x) for x in g), n, k, a)
            try:
                model = load_base(torch, transformers, base_path, torch.float32, aux_coef=case["moe_aux_loss_coef"])
                model.train()
                fixed = run(torch, model, micro_batches(torch, data_sets[case.get("data", stage)], stage))
            finally:
                mm.load_balancing_loss_func = orig
            fixed = {"losses": fixed["losses"], "grads": unfuse_mixtral(fixed["grads"]),
                     "after": unfuse_mixtral(fixed["after"])}
            res["with_the_second_softmax_undone"] = compare(torch, gold, fixed)
            res["note"] = ("transformers 5.x computes the aux loss on softmax(softmax(router logits)) (the router "
                           "records probabilities, load_balancing_loss_func softmaxes again); the goldens follow "
                           "4.57.1 (one softmax)")
        extra = sorted(set(other["grads"]) - set(gold["grads"]))
        if extra:
            res["extra_trainable"] = extra[:5]
        return res
    except Exception as e:  # noqa: BLE001 - reported, not fatal
        return {"transformers": transformers.__version__, "error": f"{type(e).__name__}: {e}"[:300]}


def read_data(out):
    import torch
    sets = {}
    for key, fn in DATA_FILES.items():
        with open(os.path.join(out, fn)) as f:
            sets[key] = [json.loads(line) for line in f]
    return sets


def worker(args):
    torch, transformers = worker_setup()
    os.chdir(ROOT)
    only = set(args.only.split(",")) if args.only else None
    cases = [c for c in CASES if not only or c["name"] in only]
    res = {"models": {}, "cases": {}}
    if args.phase == "build":
        for spec in MODELS:
            if not only or any(c["model"] == spec["name"] for c in cases):
                res["models"][spec["name"]] = build_model(torch, transformers, spec, args.out)
        for key, rows in make_data(torch).items():
            with open(os.path.join(args.out, DATA_FILES[key]), "w") as f:
                for r in rows:
                    f.write(json.dumps({"input_ids": r["input_ids"], "labels": r["labels"]}) + "\n")
        data_sets = read_data(args.out)
        for case in cases:
            print(f"[{transformers.__version__}] {case['name']}", file=sys.stderr, flush=True)
            res["cases"][case["name"]] = build_case(torch, transformers, args.out, case, data_sets)
    else:
        data_sets = read_data(args.out)
        for case in cases:
            res["cases"][case["name"]] = cross_case(torch, transformers, args.out, case, data_sets)
    with open(args.result, "w") as f:
        json.dump(res, f)


# ---------------------------------------------------------------- driver side

def run_worker(args, tf, phase, tmp):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env["PYTHONHASHSEED"] = "0"
    env["DISABLE_VERSION_CHECK"] = "1"
    env["OMP_NUM_THREADS"] = "1"
    if tf == 4:
        env["PYTHONPATH"] = os.path.expanduser(args.tf4)
    result = os.path.join(tmp, f"{phase}-{tf}.json")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--phase", phase, "--out", args.out,
           "--result", result]
    if args.only:
        cmd += ["--only", args.only]
    subprocess.run(cmd, env=env, check=True, cwd=ROOT)
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
        built = run_worker(args, 4, "build", tmp)
        crossed = run_worker(args, 5, "cross", tmp)
    cases = {}
    for name, e in built["cases"].items():
        e["tf5"] = crossed["cases"][name]
        e["bytes"] = dir_size(os.path.join(args.out, "cases", name))
        cases[name] = e
    for name, e in built["models"].items():
        e["bytes"] = dir_size(os.path.join(args.out, "models", name))
    doc = {
        "generator": "scripts/goldens/make-train-goldens.py (its docstring describes every file)",
        "oracle": "transformers 4.57.1 + peft 0.18.1 + LLaMA-Factory 0.9.5 adapter/freeze code, torch 2.9.1, CPU, "
                  "float32, eager attention, 1 thread",
        "tolerance": {"loss": "1e-5 relative", "grads": f"max|g - g_ref| <= {GRAD_TOL} * max|g_ref| per tensor",
                      "after": f"||W - W_ref|| / ||W_ref|| <= {AFTER_TOL} per tensor"},
        "knockouts": "the same case with one feature done wrong: loss_rel, grads = max over tensors of "
                     "max|g_ko - g| / max|g|, after = max over tensors of ||W_ko - W|| / ||W||, *_over_tol = "
                     "tensors above the tolerance",
        "f64": "the case re-run in float64 vs the f32 goldens (same metrics): f32 rounding alone",
        "trainer": "transformers.Trainer's own 10 steps (sequential sampler, its default optimizer) vs the goldens",
        "tf5": "step-0 gradients and 10 steps under transformers 5.5.4 vs the goldens (same metrics)",
        "models": built["models"],
        "cases": cases,
    }
    index = os.path.join(args.out, "index.json")
    if args.only and os.path.exists(index):   # the other cases' entries stay as they were
        with open(index) as f:
            old = json.load(f)
        doc["models"] = {**old.get("models", {}), **doc["models"]}
        doc["cases"] = {**old.get("cases", {}), **doc["cases"]}
    write_json(index, doc)
    chmod_tree(args.out)

    bad = False
    for name, e in built["models"].items():
        for err in e["check_errors"]:
            bad = True
            print(f"model {name}: CHECK FAILED: {err}")
    print(f"{'case':22} {'loss':>9} {'bytes':>7}  f64(grads/after)     trainer(after/gn)    tf5(grads/after)")
    for name, e in cases.items():
        t5 = e["tf5"]
        t5s = t5.get("skipped", t5.get("error", ""))[:30] or f"{t5['grads']:.2g}/{t5['after']:.2g}"
        if "with_the_second_softmax_undone" in t5:
            u = t5["with_the_second_softmax_undone"]
            t5s += f" (one softmax: {u['grads']:.2g}/{u['after']:.2g})"
        print(f"{name:22} {e['loss']:9.5f} {e['bytes']:7}  {e['f64']['grads']:.2g}/{e['f64']['after']:.2g}"
              f"{'':12} {e['trainer']['after']:.2g}/{e['trainer']['grad_norm_rel']:.2g}{'':12} {t5s}")
        for label, d in e["knockouts"].items():
            weak = d["grads"] < 10 * GRAD_TOL and d["after"] < 10 * AFTER_TOL
            print(f"{'':24}knockout {label}: loss {d['loss_rel']:.3g} grads {d['grads']:.3g} after "
                  f"{d['after']:.3g}{'  <-- WEAK' if weak else ''}")
        for err in e["check_errors"]:
            bad = True
            print(f"{'':24}CHECK FAILED: {err}")
        if not e["deterministic"]:
            bad = True
    print(f"total {dir_size(args.out)} bytes in {args.out}")
    if bad:
        sys.exit(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "golden", "train"))
    ap.add_argument("--tf4", default="~/.cache/lf/goldens-tf4", help="directory with transformers 4.57.1")
    ap.add_argument("--only", help="comma-separated case names: rebuilds those (and their models) and updates their "
                                   "entries in an existing index.json")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
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
