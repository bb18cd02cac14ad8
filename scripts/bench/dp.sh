#!/bin/bash
# scripts/bench/dp.sh — lf-train data-parallel: the same training work in one
# process and in two (mpirun -np 2), on this machine's cores, repetitions
# interleaved; prints tokens/s of each and the ratio.
#
# Model and data: train.sh's (llama, vocab 32000, hidden 384, 6 layers,
#   21.73M parameters; LF_BENCH_STEPS x 4 rows of 256 random ids, loss on
#   every token), no gradient checkpointing.
# Runs, each step 4 x 256 tokens (the group's batch):
#   1x2  one process, OMP_NUM_THREADS=2, --per-device-train-batch-size 4
#   2x1  mpirun -np 2 --bind-to core, OMP_NUM_THREADS=1 each, batch 2 each
#        (gradients, losses and token counts summed over MPI every step)
#   2x1z the same with --zero-stage 1 (gradient sums in halves, each process
#        updates its half of the tensors and sends them to the other)
# for full fine-tuning and LoRA r 16 on every linear layer.
# tokens/s = 4 x 256 / the median time of steps 2..N, from rank 0's --log
#   machine log (as train.sh); ratios = 2x1 / 1x2 and 2x1z / 1x2 (> 1: two
#   processes faster).
#   The first-step losses are printed: they agree (the same step).
# Peak RSS: GNU time's %M (for 2x1, of mpirun's process tree: the largest
#   process, not the sum).
#
# Usage: scripts/bench/dp.sh
#   LF_BENCH_CONFIGS    full,lora-all (default)
#   LF_BENCH_REPEATS    repetitions (default 3)
#   LF_BENCH_STEPS      steps per run (default 8: 1 warm-up + 7 timed)
#   LF_BENCH_NOISE, LF_BENCH_QUIET_WAIT, LF_BENCH_CACHE: as train.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
tokdir=${LF_SHARED_DATA:-../shared/data}/../tokenizers/llama2
cache=${LF_BENCH_CACHE:-$HOME/.cache/lf/bench}/train
configs=${LF_BENCH_CONFIGS:-full,lora-all}
reps=${LF_BENCH_REPEATS:-3}
steps=${LF_BENCH_STEPS:-8}
noise=${LF_BENCH_NOISE:-0.1}
quiet_wait=${LF_BENCH_QUIET_WAIT:-60}
batch=4 seq=256 vocab=32000
helper=build/dyn/tests/helpers/shard-from-jsonl
make -s bin/lf-init bin/lf-train "$helper"
command -v mpirun >/dev/null || { echo "dp.sh: needs mpirun (apt-get install openmpi-bin)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "dp.sh: needs GNU time (/usr/bin/time): apt-get install time" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/bin"
cp bin/lf-init bin/lf-train "$helper" "$work/bin/"
B=$work/bin
. scripts/bench/lib.sh
bench_train_model "$B" "$cache" "$tokdir" "$vocab"
bench_train_rows "$B" "$cache" "$((steps * batch))" "$seq" "$vocab"

run() { # TAG CONFIG: one run into $work/TAG.log
	local tag=$1 cfg=$2 largs
	case $cfg in
	full) largs=(--finetuning-type full) ;;
	lora-all) largs=(--finetuning-type lora --lora-rank 16 --lora-target all) ;;
	*) echo "dp.sh: unknown configuration $cfg (full, lora-all)" >&2; exit 2 ;;
	esac
	local common=(-m "$model" -d "$data/train.shard" --stage pt "${largs[@]}" --max-steps "$steps"
		--disable-gradient-checkpointing --save-steps 0 --logging-steps 1 --learning-rate 1e-5
		-o "$work/out-$tag" --log "$work/$tag.log")
	rm -rf "$work/out-$tag" "$work/$tag.log"
	case $tag in
	1x2) OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 timed "$tag" "$B/lf-train" "${common[@]}" \
		--per-device-train-batch-size 4 >/dev/null 2>"$work/err" ;;
	2x1 | 2x1z) OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMPI_MCA_btl_vader_single_copy_mechanism=none \
		timed "$tag" mpirun --allow-run-as-root --oversubscribe --bind-to core -np 2 "$B/lf-train" \
		"${common[@]}" --per-device-train-batch-size 2 --zero-stage "$([ $tag = 2x1z ] && echo 1 || echo 0)" \
		>/dev/null 2>"$work/err" ;;
	esac || { cat "$work/err" >&2; exit 1; }
}

IFS=, read -ra clist <<<"$configs"
results=$work/results.jsonl
: >"$results"
echo "$batch x $seq tokens per step, $steps steps per run, $reps repetitions" >&2
for rep in $(seq 1 "$reps"); do
	for cfg in "${clist[@]}"; do
		for tag in 1x2 2x1 2x1z; do
			quiet
			echo "[rep $rep/$reps $cfg] $tag ..." >&2
			run "$tag" "$cfg"
		done
		python3 - "$rep" "$cfg" "$work" "$batch" "$seq" "$results" <<'PY'
import json, statistics, sys
rep, cfg, work, batch, seq, results = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
row = {"rep": int(rep), "config": cfg}
for tag in ("1x2", "2x1", "2x1z"):
    ev = [json.loads(l) for l in open("%s/%s.log" % (work, tag))]
    logs = [e for e in ev if e.get("event") == "log" and "loss" in e]
    steps = [b["time"] - a["time"] for a, b in zip(logs, logs[1:])]
    rss, wall, user, sys_ = map(float, open("%s/%s.time" % (work, tag)).read().split()[-4:])
    b0, b1 = map(int, open("%s/%s.busy" % (work, tag)).read().split())
    row[tag] = {"tok_s": batch * seq / statistics.median(steps), "loss1": logs[0]["loss"], "rss_kib": int(rss),
                "others": max(0.0, ((b1 - b0) / 100 - user - sys_) / max(wall, 0.01))}
open(results, "a").write(json.dumps(row) + "\n")
print("  " + ", ".join("%s %.1f tok/s" % (t, row[t]["tok_s"]) for t in ("1x2", "2x1", "2x1z")), file=sys.stderr)
PY
	done
done

python3 - "$results" "$noise" <<'PY'
import json, statistics, sys
rows, noise = [json.loads(l) for l in open(sys.argv[1])], float(sys.argv[2])
med = statistics.median
tags = ("1x2", "2x1", "2x1z")
print("lf-train data-parallel on this machine: 1 process x 2 threads (batch 4) vs mpirun -np 2 x 1 thread (batch 2 each),"
      " without and with --zero-stage 1")
print("%-9s %s  %s  %s  %s" % ("config", " ".join("%10s" % (t + " tok/s") for t in tags), "2x1/1x2 2x1z/1x2",
                               " ".join("%8s" % (t + " RSS") for t in tags), "first-step losses"))
for cfg in dict.fromkeys(r["config"] for r in rows):
    every = [r for r in rows if r["config"] == cfg]
    rs = [r for r in every if max(r[t]["others"] for t in tags) < noise] or every
    print("%-9s %s  %6.2fx %8.2fx   %s  %s  (%d of %d repetitions clean; 2x1/1x2 ratios %s)" % (
        cfg, " ".join("%10.1f" % med([r[t]["tok_s"] for r in rs]) for t in tags),
        med([r["2x1"]["tok_s"] / r["1x2"]["tok_s"] for r in rs]), med([r["2x1z"]["tok_s"] / r["1x2"]["tok_s"] for r in rs]),
        " ".join("%6.0fMB" % (med([r[t]["rss_kib"] for r in rs]) / 1024) for t in tags),
        " / ".join("%.6f" % rs[0][t]["loss1"] for t in tags), len(rs), len(every),
        " ".join("%.2f" % (r["2x1"]["tok_s"] / r["1x2"]["tok_s"]) for r in every)))
PY
