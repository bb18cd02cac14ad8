# scripts/bench/lib.sh — what the benchmarks share (sourced): the machine's
# busy CPU time, a command timed with its peak memory and the load others put
# on the machine meanwhile, waiting for a quiet machine, sgemm's peak rate,
# and the training benchmarks' model and data (train.sh, dp.sh).  The caller sets
# $work (a scratch folder), $noise (cores others may use and still count as
# quiet) and $quiet_wait (seconds to wait at most); sgemm_peak also $threads
# and $peer (a python with torch).

# busy: the machine's busy CPU time so far, in jiffies (1/100 s): user nice system irq softirq steal
busy() { awk '/^cpu /{ print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }

# timed TAG CMD...: run CMD under GNU time ("peak-RSS-KiB wall user sys" into $work/TAG.time) with the
# machine's busy jiffies before and after in $work/TAG.busy: their difference less CMD's own user + sys
# is what other processes took meanwhile
timed() {
	local tag=$1 b0 rc=0
	shift
	b0=$(busy)
	/usr/bin/time -f "%M %e %U %S" -o "$work/$tag.time" "$@" || rc=$?
	echo "$b0 $(busy)" >"$work/$tag.busy"
	return $rc
}

# quiet: wait (up to $quiet_wait s) until the other processes take under $noise of a core for 2 s running
quiet() {
	local waited=0 b0 b1
	while :; do
		b0=$(busy)
		sleep 2
		b1=$(busy)
		awk "BEGIN { exit !(($b1 - $b0) / 200 < $noise) }" && return 0
		waited=$((waited + 2))
		[ "$waited" = 2 ] && echo "  waiting for a quiet machine (others use $(awk "BEGIN { print ($b1 - $b0) / 200 }") cores) ..." >&2
		[ "$waited" -ge "$quiet_wait" ] && { echo "  still busy after $quiet_wait s: going on" >&2; return 0; }
	done
}

# sgemm_peak TAG: sgemm's GFLOP/s on $threads threads right now, OpenBLAS's
# (what lf links, through ctypes) and torch's ($peer's python), into
# $work/sgemm-openblas-TAG.json and $work/sgemm-torch-TAG.json
# (train-peer.py sgemm: the training benchmark's product shapes)
sgemm_peak() {
	python3 scripts/bench/train-peer.py sgemm --blas openblas --threads "$threads" --result "$work/sgemm-openblas-$1.json"
	"$peer" scripts/bench/train-peer.py sgemm --blas torch --threads "$threads" --result "$work/sgemm-torch-$1.json"
}

# bench_train_model BIN CACHE TOKDIR VOCAB: the training benchmarks' llama (21.73M parameters) in
# CACHE/model, made once with BIN/lf-init; sets $model
bench_train_model() {
	local margs="-t llama --vocab-size $4 --hidden-size 384 --num-hidden-layers 6 --num-attention-heads 6 --num-key-value-heads 2 --intermediate-size 1024 --tie-word-embeddings --seed 42"
	model=$2/model
	if [ ! -f "$model/.complete" ] || [ "$(cat "$model/.complete")" != "$margs" ]; then
		echo "making $model: lf-init $margs" >&2
		rm -rf "$model"
		mkdir -p "$2"
		# shellcheck disable=SC2086
		"$1/lf-init" $margs --tokenizer "$3" -o "$model" >/dev/null
		echo "$margs" >"$model/.complete"
	fi
}

# bench_train_rows BIN CACHE ROWS SEQ VOCAB: ROWS rows of SEQ random ids (Python's random.Random(0)),
# labels = ids, as JSON lines (rows.jsonl) and a pt shard (train.shard, by BIN/shard-from-jsonl) in
# CACHE/data-ROWSxSEQ, made once; sets $data
bench_train_rows() {
	data=$2/data-$3x$4
	if [ ! -f "$data/.complete" ]; then
		rm -rf "$data"
		mkdir -p "$data"
		python3 - "$3" "$4" "$5" "$data/rows.jsonl" <<'PY'
import json, random, sys
n, T, V = map(int, sys.argv[1:4])
r = random.Random(0)
with open(sys.argv[4], "w") as f:
    for _ in range(n):
        ids = [r.randrange(V) for _ in range(T)]
        f.write(json.dumps({"input_ids": ids, "labels": ids}) + "\n")
PY
		"$1/shard-from-jsonl" pt train "$4" "$5" "$data/rows.jsonl" "$data/train.shard" >/dev/null
		touch "$data/.complete"
	fi
}
