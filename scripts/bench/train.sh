#!/bin/bash
# scripts/bench/train.sh — lf-train (CPU, f32, OpenBLAS + OpenMP) against
# PyTorch (transformers + PEFT, f32, CPU) on the same training work, same
# thread count, repetitions interleaved.
#
# Model: lf-init -t llama --vocab-size 32000 --hidden-size 384
#   --num-hidden-layers 6 --num-attention-heads 6 --num-key-value-heads 2
#   --intermediate-size 1024 --tie-word-embeddings --seed 42 --tokenizer
#   ../shared/tokenizers/llama2 (head_dim 64; 21.73M parameters, 9.44M in the
#   decoder layers' linear layers, 12.29M in the tied embedding/head), kept
#   under ~/.cache/lf/bench/train (LF_BENCH_CACHE) and re-used.
# Data: LF_BENCH_STEPS x 4 rows of 256 random token ids (Python's
#   random.Random(0)), labels = ids, written as JSON lines and turned into a
#   pt shard by the test helper build/dyn/tests/helpers/shard-from-jsonl; lf
#   takes the rows in its own shuffled order, torch in file order (the same
#   tokens; a step's work does not depend on which ids it holds).  Loss on
#   every token (255 next-token targets per row on both sides).
# Configurations (both sides the same):
#   full      every parameter trained
#   lora-qv   LoRA r 8, alpha 16 on q_proj,v_proj
#   lora-all  LoRA r 16, alpha 32 on q,k,v,o,gate,up,down (LLaMA-Factory's "all")
# lf:    bin/lf-train -m MODEL -d SHARD --stage pt --finetuning-type full|lora
#        [--lora-rank R --lora-target T] --per-device-train-batch-size 4
#        --max-steps N --disable-gradient-checkpointing --save-steps 0
#        --logging-steps 1 --learning-rate 1e-5 -o OUT --log LOG
#        Step times: the differences of the --log machine log's "time" of
#        consecutive step log events, steps 2..N (each: forward, backward,
#        gradient clipping, AdamW, the log line; the first step is the
#        warm-up and is left out; its own time, train_runtime minus steps
#        2..N, is printed).
# torch: scripts/bench/train-peer.py train (its header has the details):
#        AutoModelForCausalLM f32, attn_implementation eager AND sdpa (both
#        run, each in its own process; the faster one's median is the peer),
#        PEFT for LoRA, loss.backward, clip_grad_norm_ 1.0, AdamW step,
#        zero_grad; steps 2..N timed (perf_counter per step).
# tokens/s = 4 x 256 input tokens / the median time of steps 2..N (the
#   median: a burst of other load during one step does not move it; the
#   mean, (N - 1) x 4 x 256 / their sum, is printed per repetition too);
#   ratio = lf / torch (> 1: lf faster).  The table's figures are the medians over the
#   repetitions; the ratio is the median of each repetition's own ratio (lf and
#   torch of that repetition ran back to back: lf first in odd repetitions,
#   last in even ones, so that the machine's speed drifting during a
#   repetition does not favour one side).
# Peak RSS: GNU time's %M of the lf-train process; torch: the python process's
#   ru_maxrss at the end, which includes torch, transformers and PEFT
#   themselves (the figure after the imports alone is printed too).
# MFU = achieved FLOP/s / the measured sgemm peak: train-peer.py sgemm times
#   sgemm on this benchmark's shapes (1024 token rows; x W^T, dy W and dy^T x
#   of the 384x1024, 1024x384, 384x384 and 384x32000 products) with the
#   system OpenBLAS (what lf links) and with torch (MKL), on the same threads,
#   before and after the runs; the peak is the best of all of them.
#   FLOP per token (T = 256 tokens per row, L layers, qd = heads x head_dim):
#     N_lin  = L (hidden qd + 2 hidden kv_dim + qd hidden + 3 hidden inter)
#              (the decoder layers' linear layers), N_head = vocab x hidden
#              (the tied head's product; the embedding lookup is no FLOP)
#     attn   = 6 L T qd: forward QK^T and PV are 2 x 2 T qd per token over
#              all T keys, causal masking halves that to 2 T qd, the
#              backward is twice the forward
#     full   = 6 (N_lin + N_head) + attn
#     lora   = 4 (N_lin + N_head) + 6 N_lora + attn   (frozen base: forward
#              2 N and the input gradient 2 N, no weight gradient;
#              N_lora = the adapters' parameters, r (in + out) per module)
#   Norms, RoPE, activations, softmax, the optimizer: not counted.
#
# Other load: on a 2-core machine one busy process elsewhere slows a
# 2-thread run several times over (OpenMP threads spin at barriers waiting
# for the one that lost its core), on both sides but not equally.  Before
# each repetition the script waits (up to LF_BENCH_QUIET_WAIT s) until
# others use under LF_BENCH_NOISE cores, and for every timed process it
# compares the machine's busy CPU time (/proc/stat) with the process's own
# (GNU time's user + sys): the cores others took meanwhile are printed per
# run; repetitions in which others took LF_BENCH_NOISE cores or more are
# "noisy" and left out of the medians while there are clean ones.
#
# Usage: scripts/bench/train.sh
#   LF_BENCH_CONFIGS       which configurations (default full,lora-qv,lora-all)
#   LF_BENCH_REPEATS       repetitions (default 3)
#   LF_BENCH_STEPS         steps per run (default 8: 1 warm-up + 7 timed)
#   LF_BENCH_THREADS       threads on both sides (default 2): OMP_NUM_THREADS,
#                          OPENBLAS_NUM_THREADS, MKL_NUM_THREADS, torch.set_num_threads
#   LF_BENCH_ATTN          torch attention implementations (default eager,sdpa)
#   LF_BENCH_WAIT_POLICY   OMP_WAIT_POLICY for both sides (default: unset)
#   LF_BENCH_NOISE         others' load, in cores, that makes a run noisy (default 0.1)
#   LF_BENCH_QUIET_WAIT    seconds to wait for a quiet machine before a repetition (default 60)
#   LF_BENCH_NO_MAKE=1     use bin/ as it is (no make first)
#   LF_BENCH_BIN           take lf-init and lf-train from this folder instead (no make)
#   LF_BENCH_CACHE         where the model and data are kept (default ~/.cache/lf/bench)
#   LF_PEER_PYTHON         the peer's python (default ~/.cache/lf/goldens-venv/bin/python:
#                          torch 2.9.1 from PyPI, transformers 5.5.4, peft 0.18.1)
# The lf binaries are copied from bin/ (after make) into a temporary folder
# first, so a rebuild during the run does not change them halfway.
set -euo pipefail
cd "$(dirname "$0")/../.."
t_start=$(date +%s.%N)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
tokdir=${LF_SHARED_DATA:-../shared/data}/../tokenizers/llama2
cache=${LF_BENCH_CACHE:-$HOME/.cache/lf/bench}/train
peer=${LF_PEER_PYTHON:-$HOME/.cache/lf/goldens-venv/bin/python}
configs=${LF_BENCH_CONFIGS:-full,lora-qv,lora-all}
reps=${LF_BENCH_REPEATS:-3}
steps=${LF_BENCH_STEPS:-8}
threads=${LF_BENCH_THREADS:-2}
attns=${LF_BENCH_ATTN:-eager,sdpa}
noise=${LF_BENCH_NOISE:-0.1}
quiet_wait=${LF_BENCH_QUIET_WAIT:-60}
batch=4 seq=256 vocab=32000
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads MKL_NUM_THREADS=$threads
[ -n "${LF_BENCH_WAIT_POLICY:-}" ] && export OMP_WAIT_POLICY=$LF_BENCH_WAIT_POLICY
[ "$steps" -ge 2 ] || { echo "train.sh: LF_BENCH_STEPS must be 2 or more" >&2; exit 2; }

helper=build/dyn/tests/helpers/shard-from-jsonl
bindir=${LF_BENCH_BIN:-bin}
[ "${LF_BENCH_NO_MAKE:-0}" = 1 ] || [ -n "${LF_BENCH_BIN:-}" ] || make -s bin/lf-init bin/lf-train "$helper"
[ -x /usr/bin/time ] || { echo "train.sh: needs GNU time (/usr/bin/time): apt-get install time" >&2; exit 1; }
"$peer" -c "import torch, transformers, peft" 2>/dev/null ||
	{ echo "train.sh: $peer cannot import torch, transformers and peft (scripts/goldens/venv.sh makes that venv)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/bin"
cp "$bindir/lf-init" "$bindir/lf-train" "$helper" "$work/bin/"
B=$work/bin

. scripts/bench/lib.sh # (the working directory is the repository root)

bench_train_model "$B" "$cache" "$tokdir" "$vocab"
bench_train_rows "$B" "$cache" "$((steps * batch))" "$seq" "$vocab"

echo "sgemm peak ..." >&2
quiet
sgemm_peak 0

IFS=, read -ra clist <<<"$configs"
IFS=, read -ra alist <<<"$attns"
results=$work/results.jsonl
: >"$results"
echo "$batch x $seq tokens per step, $steps steps per run ($((steps - 1)) timed), $threads threads, $reps repetitions" >&2
for rep in $(seq 1 "$reps"); do
	for cfg in "${clist[@]}"; do
		case $cfg in
		full) largs=(--finetuning-type full) ;;
		lora-qv) largs=(--finetuning-type lora --lora-rank 8 --lora-target "q_proj,v_proj") ;;
		lora-all) largs=(--finetuning-type lora --lora-rank 16 --lora-target all) ;;
		*) echo "train.sh: unknown configuration $cfg (full, lora-qv, lora-all)" >&2; exit 2 ;;
		esac
		# odd repetitions: lf, then torch's attentions; even ones the reverse
		order=(lf "${alist[@]}")
		if [ $((rep % 2)) = 0 ]; then
			order=()
			for ((i = ${#alist[@]} - 1; i >= 0; i--)); do order+=("${alist[i]}"); done
			order+=(lf)
		fi
		quiet
		for run in "${order[@]}"; do
			if [ "$run" = lf ]; then
				echo "[rep $rep/$reps $cfg] lf ..." >&2
				rm -rf "$work/out" "$work/lf.log"
				timed lf "$B/lf-train" -m "$model" -d "$data/train.shard" --stage pt "${largs[@]}" \
					--per-device-train-batch-size "$batch" --max-steps "$steps" --disable-gradient-checkpointing \
					--save-steps 0 --logging-steps 1 --learning-rate 1e-5 -o "$work/out" --log "$work/lf.log" \
					>/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
				continue
			fi
			echo "[rep $rep/$reps $cfg] torch $run ..." >&2
			rm -f "$work/peer-$run.json"
			timed "t-$run" "$peer" scripts/bench/train-peer.py train --model "$model" --data "$data/rows.jsonl" \
				--mode "$cfg" --steps "$steps" --batch "$batch" --threads "$threads" --attn "$run" \
				--result "$work/peer-$run.json" >"$work/peer.log" 2>&1 || { tail -n 20 "$work/peer.log" >&2; exit 1; }
		done
		python3 - "$rep" "$cfg" "$work" "$attns" "$batch" "$seq" "$results" <<'PY'
import json, statistics, sys
rep, cfg, work, attns, batch, seq, results = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(","), \
    int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
def proc(tag):  # peak RSS KiB, wall s, and the cores other processes used on average while it ran
    rss, wall, user, sys_ = map(float, open("%s/%s.time" % (work, tag)).read().split()[-4:])
    b0, b1 = map(int, open("%s/%s.busy" % (work, tag)).read().split())
    return int(rss), wall, max(0.0, ((b1 - b0) / 100 - user - sys_) / max(wall, 0.01))
ev = [json.loads(l) for l in open(work + "/lf.log")]
logs = [e for e in ev if e.get("event") == "log" and "loss" in e]
res = [e for e in ev if e.get("event") == "result"][0]
steady = logs[-1]["time"] - logs[0]["time"]
steps = [b["time"] - a["time"] for a, b in zip(logs, logs[1:])]
rss, wall, others = proc("lf")
row = {"rep": int(rep), "config": cfg,
       "lf": {"steps": len(logs), "steady_s": steady, "step_s": steps,
              "tok_s": batch * seq / statistics.median(steps), "mean_tok_s": len(steps) * batch * seq / steady,
              "first_step_s": res["train_runtime"] - steady, "rss_kib": rss, "wall_s": wall, "others": others,
              "loss1": logs[0]["loss"]},
       "torch": {}}
for at in attns:
    t = json.load(open("%s/peer-%s.json" % (work, at)))
    rss, wall, others = proc("t-" + at)
    st = sum(t["step_s"][1:])
    row["torch"][at] = {"steady_s": st, "tok_s": batch * seq / statistics.median(t["step_s"][1:]),
                        "mean_tok_s": (len(t["step_s"]) - 1) * batch * seq / st, "step_s": t["step_s"][1:],
                        "first_step_s": t["step_s"][0], "rss_kib": t["rss_peak_kib"], "rss_gnu_kib": rss,
                        "rss_import_kib": t["rss_import_kib"], "wall_s": wall, "others": others,
                        "trainable": t["trainable"], "version": "torch %s, transformers %s%s" % (
                            t["torch"], t["transformers"], ", peft " + t["peft"] if "peft" in t else ""),
                        "loss1": t["losses"][0]}
open(results, "a").write(json.dumps(row) + "\n")
print("  lf %.1f tok/s (others %.2f cores); " % (row["lf"]["tok_s"], row["lf"]["others"]) +
      "; ".join("torch %s %.1f tok/s (others %.2f)" % (at, v["tok_s"], v["others"]) for at, v in row["torch"].items()),
      file=sys.stderr)
PY
	done
done
echo "sgemm peak again ..." >&2
sgemm_peak 1

python3 - "$results" "$work" "$model/config.json" "$threads" "$steps" "$batch" "$seq" "$noise" \
	"$(awk "BEGIN { printf \"%.0f\", $(date +%s.%N) - $t_start }")" "$load_start" "$(cut -d' ' -f1-3 /proc/loadavg)" \
	"${OMP_WAIT_POLICY:-unset}" <<'PY'
import glob, json, statistics, sys
results, work, cfgfile = sys.argv[1:4]
threads, steps, batch, seq = map(int, sys.argv[4:8])
noise, elapsed = float(sys.argv[8]), float(sys.argv[9])
load0, load1, waitp = sys.argv[10], sys.argv[11], sys.argv[12]
rows = [json.loads(l) for l in open(results)]
med = statistics.median
c = json.load(open(cfgfile))
H, I, L, V = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
nh, nkv = c["num_attention_heads"], c["num_key_value_heads"]
d = c.get("head_dim") or H // nh
qd, kd = nh * d, nkv * d
n_lin = L * (H * qd + 2 * H * kd + qd * H + 3 * H * I)
n_head = V * H
attn = 6 * L * seq * qd
shapes = {"q_proj": (H, qd), "k_proj": (H, kd), "v_proj": (H, kd), "o_proj": (qd, H),
          "gate_proj": (H, I), "up_proj": (H, I), "down_proj": (I, H)}
def n_lora(r, mods):
    return L * sum(r * (shapes[m][0] + shapes[m][1]) for m in mods)
flops = {"full": 6 * (n_lin + n_head) + attn,
         "lora-qv": 4 * (n_lin + n_head) + 6 * n_lora(8, ["q_proj", "v_proj"]) + attn,
         "lora-all": 4 * (n_lin + n_head) + 6 * n_lora(16, list(shapes)) + attn}
lora_n = {"lora-qv": n_lora(8, ["q_proj", "v_proj"]), "lora-all": n_lora(16, list(shapes))}
peaks = {}
for f in glob.glob(work + "/sgemm-*.json"):
    s = json.load(open(f))
    peaks.setdefault(s["blas"], []).append(s)
peak = max(s["peak_gflops"] for v in peaks.values() for s in v)

versions = [v["version"] for r in rows for v in r["torch"].values()]
print("lf-train vs PyTorch (%s), float32 CPU, %d threads (OMP_WAIT_POLICY %s)" % (
    max(versions, key=len), threads, waitp))
print("llama: vocab %d, hidden %d, %d layers, %d heads of %d, %d kv heads, MLP %d, tied embeddings; "
      "%d x %d random tokens per step, loss on every token, no gradient checkpointing; %d steps per run, "
      "the first left out" % (V, H, L, nh, d, nkv, I, batch, seq, steps))
hdr = "%-9s %9s %11s %8s %9s %7s %7s %8s %8s  %s" % ("config", "lf tok/s", "torch tok/s", "(attn)", "lf/torch",
                                                    "lf MFU", "torch", "lf RSS", "torch RSS", "goals: 1.5x MFU>65% RSS")
print(hdr)
print("-" * len(hdr))
notes, details = [], []
for cfg in dict.fromkeys(r["config"] for r in rows):
    every = [r for r in rows if r["config"] == cfg]
    def clean(r):
        return max([r["lf"]["others"]] + [v["others"] for v in r["torch"].values()]) < noise
    rs = [r for r in every if clean(r)]
    if not rs:
        notes.append("WARNING: %s: no repetition without other load (under %.2f cores): the medians are of all %d"
                     % (cfg, noise, len(every)))
        rs = every
    attns = list(rs[0]["torch"])
    tmed = {at: med([r["torch"][at]["tok_s"] for r in rs]) for at in attns}
    best = max(attns, key=lambda at: tmed[at])
    lf_tps = med([r["lf"]["tok_s"] for r in rs])
    ratio = med([r["lf"]["tok_s"] / r["torch"][best]["tok_s"] for r in rs])
    lf_mfu = lf_tps * flops[cfg] / 1e9 / peak
    t_mfu = tmed[best] * flops[cfg] / 1e9 / peak
    lf_rss = med([r["lf"]["rss_kib"] for r in rs]) / 1024
    t_rss = med([r["torch"][best]["rss_kib"] for r in rs]) / 1024
    print("%-9s %9.1f %11.1f %8s %8.2fx %6.1f%% %6.1f%% %6.0fMB %7.0fMB  %-4s %-4s %s" % (
        cfg, lf_tps, tmed[best], best, ratio, 100 * lf_mfu, 100 * t_mfu, lf_rss, t_rss,
        "ok" if ratio >= 1.5 else "no", "ok" if lf_mfu > 0.65 else "no", "ok" if lf_rss < t_rss else "no"))
    details.append("%s: %.2f MFLOP/token%s; %d of %d repetitions clean" % (
        cfg, flops[cfg] / 1e6, " (N_lora %d)" % lora_n[cfg] if cfg in lora_n else "",
        len([r for r in every if clean(r)]), len(every)))
    details.append("  torch by attention: %s; lf/torch ratio per repetition: %s" % (
        ", ".join("%s %.1f tok/s (%s)" % (at, tmed[at], "-".join("%.0f" % r["torch"][at]["tok_s"] for r in rs))
                  for at in attns),
        " ".join("%.2f" % (r["lf"]["tok_s"] / r["torch"][best]["tok_s"]) for r in every)))
    details.append("  lf tok/s per repetition %s (from the mean step: %s), torch %s %s (mean: %s); first step: lf %.2f s,"
                   " torch %s %.2f s; torch RSS after imports %.0f MB"
                   % (" ".join("%.0f" % r["lf"]["tok_s"] for r in every),
                      " ".join("%.0f" % r["lf"]["mean_tok_s"] for r in every), best,
                      " ".join("%.0f" % r["torch"][best]["tok_s"] for r in every),
                      " ".join("%.0f" % r["torch"][best]["mean_tok_s"] for r in every),
                      med([r["lf"]["first_step_s"] for r in rs]),
                      best, med([r["torch"][best]["first_step_s"] for r in rs]),
                      med([r["torch"][best]["rss_import_kib"] for r in rs]) / 1024))
    details.append("  others' load per repetition, cores (lf / torch %s): %s" % (
        "/".join(attns), ", ".join("/".join("%.2f" % x for x in [r["lf"]["others"]] +
                                            [r["torch"][at]["others"] for at in attns]) for r in every)))
    if cfg != "full" and rs[0]["torch"][best]["trainable"] != lora_n[cfg]:
        notes.append("WARNING: %s: PEFT trains %d parameters, the formula counts %d" % (
            cfg, rs[0]["torch"][best]["trainable"], lora_n[cfg]))
print("-" * len(hdr))
print("ratio: lf tokens/s / torch tokens/s (> 1: lf faster), median over repetitions of each one's ratio; torch:"
      " the faster of its attention implementations; RSS: peak, torch's includes torch itself")
print("MFU = tokens/s x FLOP/token / sgemm peak %.1f GFLOP/s (best on %d threads of: %s)" % (
    peak, threads, "; ".join("%s %s" % (b, "/".join("%.1f" % s["peak_gflops"] for s in v)) for b, v in sorted(peaks.items()))))
print("FLOP/token: full 6 (N_lin + N_head) + attn; LoRA 4 (N_lin + N_head) + 6 N_lora + attn; N_lin = %d (the"
      " layers' linear weights), N_head = vocab x hidden = %d (the tied head's product), attn = 6 L T qd = %d"
      " (causal QK^T and PV, forward 2 T qd, backward twice that); N_lora = r (in + out) per adapted module"
      % (n_lin, n_head, attn))
print("medians of the clean repetitions: those during which other processes took under %.2f cores (LF_BENCH_NOISE)"
      % noise)
for dl in details:
    print(dl)
for n in notes:
    print(n)
print("whole run: %.0f s; load average (1/5/15 min) at the start %s, at the end %s" % (elapsed, load0, load1))
PY
