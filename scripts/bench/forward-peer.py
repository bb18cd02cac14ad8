#!/usr/bin/env python3
r"""PyTorch eager (transformers, float32, CPU) forward pass, timed: the peer of
lf-generate in scripts/bench/forward.sh.  One process per repetition.

Reads the prompts' token ids as lf made them (lf-inspect's JSON lines of the
benchmark's token stream: record 0 is the warm-up prompt, records 1..N the
measured ones, all of the same length T) and, under torch.inference_mode()
with torch.set_num_threads(--threads):

  warm-up    model(record 0, logits_to_keep=1) and one model(batch of N) call,
             untimed (lf's warm-up is its record 0, untimed too)
  prefill_batch_s   model(input_ids [N, T], logits_to_keep=1): the N prompts
             at once, no padding (all have T tokens)
  prefill_single_s  the same prompts one at a time, model(input_ids [1, T],
             logits_to_keep=1), the sum of the N calls
             (both with the model's default use_cache=True: the KV cache is
             filled, as lf's prefill fills its own)
  decode_s   a manual greedy loop with the KV cache (DynamicCache) on record
             --decode-record: an untimed prefill, then, timed, argmax of the
             last logits, and --new-tokens - 1 times model(next [1, 1],
             past_key_values=cache, logits_to_keep=1) + argmax; EOS is not a
             stop (as generate(min_new_tokens=max_new_tokens)).  The same
             steps as lf-generate's decode_seconds: new_tokens samplings and
             new_tokens - 1 one-token forwards.

Memory: rss_peak_kib is the process's ru_maxrss at the end (torch, transformers
and their libraries included); rss_import_kib is ru_maxrss after the imports,
before the model is loaded.

With --lf-output (lf-generate's JSON lines of the same decode run) it says
whether lf's greedy answer decodes to the same text as the ids found here.

Writes one JSON object to --result.
"""
import time

T0 = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402


def maxrss_kib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--ids", required=True, help="lf-inspect JSON lines: record 0 warm-up, then the prompts")
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--decode-record", type=int, default=1)
    ap.add_argument("--attn", default="eager", help="attn_implementation: eager (default) or sdpa")
    ap.add_argument("--lf-output", help="lf-generate's output of the decode run, to compare answers")
    ap.add_argument("--result", required=True)
    a = ap.parse_args()

    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(a.threads)
    import_s = time.perf_counter() - T0
    rss_import = maxrss_kib()

    recs = [json.loads(line) for line in open(a.ids)]
    ids = [r["prompt_ids"] for r in recs]
    warm, prompts = ids[0], ids[1:]
    T = len(prompts[0])
    if any(len(p) != T for p in prompts):
        sys.exit("forward-peer: the prompts differ in length: %s" % [len(p) for p in prompts])

    t = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32, attn_implementation=a.attn)
    model.eval()
    load_s = time.perf_counter() - t
    n_params = sum(p.numel() for p in model.parameters())
    n_embed = model.get_input_embeddings().weight.numel()
    head = model.get_output_embeddings()
    if head is not None and head.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr():
        n_embed += head.weight.numel()

    res = {"torch": torch.__version__, "transformers": transformers.__version__, "threads": torch.get_num_threads(),
           "attn": a.attn, "params": n_params, "params_non_embedding": n_params - n_embed, "prompt_tokens": T,
           "prompts": len(prompts), "import_s": import_s, "load_s": load_s}
    with torch.inference_mode():
        batch = torch.tensor(prompts, dtype=torch.long)
        model(torch.tensor([warm], dtype=torch.long), logits_to_keep=1)
        model(batch, logits_to_keep=1)

        t = time.perf_counter()
        out = model(batch, logits_to_keep=1)
        res["prefill_batch_s"] = time.perf_counter() - t
        batch_argmax = out.logits[:, -1].argmax(-1).tolist()

        single = 0.0
        single_argmax = []
        for p in prompts:
            x = torch.tensor([p], dtype=torch.long)
            t = time.perf_counter()
            out = model(x, logits_to_keep=1)
            single += time.perf_counter() - t
            single_argmax.append(int(out.logits[0, -1].argmax()))
        res["prefill_single_s"] = single
        res["batch_single_same_argmax"] = batch_argmax == single_argmax

        x = torch.tensor([ids[a.decode_record]], dtype=torch.long)
        out = model(x, use_cache=True, logits_to_keep=1)
        cache = out.past_key_values
        logits = out.logits[:, -1]
        toks = []
        t = time.perf_counter()
        while True:
            nxt = logits.argmax(-1)
            toks.append(int(nxt))
            if len(toks) == a.new_tokens:
                break
            out = model(nxt.view(1, 1), past_key_values=cache, use_cache=True, logits_to_keep=1)
            cache = out.past_key_values
            logits = out.logits[:, -1]
        res["decode_s"] = time.perf_counter() - t
        res["decode_prompt_tokens"] = len(ids[a.decode_record])
        res["new_tokens"] = len(toks)

    res["same_answer"] = None
    if a.lf_output:
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(a.model + "/tokenizer.json")
        lines = [json.loads(line) for line in open(a.lf_output) if line.strip()]
        if lines:
            res["same_answer"] = lines[0]["predict"] == tok.decode(toks, skip_special_tokens=True)
    res["rss_import_kib"] = rss_import
    res["rss_peak_kib"] = maxrss_kib()
    json.dump(res, open(a.result, "w"))


if __name__ == "__main__":
    main()
