#!/bin/sh
# lf-train data-parallel under mpirun -np 2 (and over TCP under torchrun's
# variables): the same loss curve, gradients
# and evaluation as one process with the group's batch (full and LoRA, a
# micro-batch that leaves one process empty), the same under srun on a
# one-node Slurm cluster, rank 0 alone writes, checkpoints resume on another
# world size, ZeRO stage 1 gives the same steps, and a process that dies,
# hangs or is interrupted stops the group with a clear error or a checkpoint.
. tests/lib.sh
HELP=${LF_UNITS:-$ROOT/build/dyn/tests}/helpers
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
# shellcheck disable=SC2086
export $MPI_TEST_ENV
MPI="mpirun --allow-run-as-root --oversubscribe"

check "mpirun is installed and lf-train was built with MPI" sh -c '
	command -v mpirun && ldd "'"$LF_BIN"'/lf-train" | grep -q libmpi'

lf-init -t llama --hidden-size 32 --intermediate-size 64 --num-hidden-layers 2 -o "$T/m" 2>/dev/null
lf-template -t qwen --dataset-dir "$SHARED" --dataset identity --max-samples 24 2>/dev/null |
	lf-tokenize --tokenizer "$T/m" -o "$T/id.lfs" 2>/dev/null
lf-pack --cutoff-len 96 --val-size 4 -o "$T/shards" "$T/id.lfs" 2>/dev/null # 20 training examples

# 20 examples, 2 processes x 3 = 6 per micro-batch: the last micro-batch of
# each epoch (2 examples) leaves process 1 nothing
FULL="-m $T/m -d $T/shards --finetuning-type full --learning-rate 0.003 --max-steps 8 --save-steps 4"
FULL="$FULL --gradient-accumulation-steps 2 --weight-decay 0.1 --warmup-steps 2 --lr-scheduler-type cosine"
FULL="$FULL --logging-steps 1 --eval-steps 3 --per-device-eval-batch-size 1"
lf-train $FULL --per-device-train-batch-size 6 --dump-grads "$T/g1.safetensors" -o "$T/one" 2>/dev/null
$MPI -np 2 lf-train $FULL --per-device-train-batch-size 3 --dump-grads "$T/g2.safetensors" -o "$T/two" \
	>"$T/two.out" 2>&1
check "full: 2 processes x batch 3 log the same losses, gradient norms and eval losses as 1 x batch 6" \
	same_log "$T/one/trainer_log.jsonl" "$T/two/trainer_log.jsonl"
check "full: the first step's gradients are the group's sum (within 1e-5 of the largest)" \
	same_tensors "$T/g2.safetensors" "$T/g1.safetensors" 1e-5 11
check "full: the final evaluation and weights agree" sh -c '
	a=$(sed -n "s/.*\"eval_loss\": \([0-9.]*\).*/\1/p" "'"$T"'/one/all_results.json")
	b=$(sed -n "s/.*\"eval_loss\": \([0-9.]*\).*/\1/p" "'"$T"'/two/all_results.json")
	echo "$a $b"; awk -v a="$a" -v b="$b" "BEGIN { d = a - b; exit !(a > 0 && d * d < 1e-12 * a * a) }"'
check "rank 0 alone writes: one log line per step and evaluation, one set of checkpoints, no notes from rank 1" sh -c '
	test "$(wc -l <"'"$T"'/two/trainer_log.jsonl")" = 10 &&
	test "$(ls "'"$T"'/two" | grep -c checkpoint)" = 1 && test -s "'"$T"'/two/model.safetensors" &&
	! grep -q "lf-train\[1\]" "'"$T"'/two.out" && grep -q "\"world_size\": 2" "'"$T"'/two/trainer_state.json"'

# Slurm: a one-node cluster on this machine (tests/slurm-local.sh)
if env=$(sh tests/slurm-local.sh start "$T/slurm" 2>"$T/slurm.err"); then
	trap 'sh tests/slurm-local.sh stop "$T/slurm"; rm -rf "$T"' EXIT
	eval "$env"
	check "srun --mpi=pmix -n 2: the same log as 1 process" sh -c '
		srun --mpi=pmix -n 2 lf-train '"$FULL"' --per-device-train-batch-size 3 -o "'"$T"'/srun" 2>"'"$T"'/srun.err" ||
			{ cat "'"$T"'/srun.err"; exit 1; }' &&
		check "  (its log)" same_log "$T/one/trainer_log.jsonl" "$T/srun/trainer_log.jsonl"
	check "srun with no MPI plugin: a clear error" \
		fails 1 "srun started 2 tasks with no MPI plugin: start lf-train with srun --mpi=pmix" \
		srun --mpi=none -n 2 lf-train $FULL -o "$T/srun0"
	sh tests/slurm-local.sh stop "$T/slurm"
	trap 'rm -rf "$T"' EXIT
else
	check "a one-node Slurm cluster starts (tests/slurm-local.sh)" sh -c 'cat "'"$T"'/slurm.err"; false'
fi

# resumption on another world size: the examples per step stay the same
mkdir "$T/re1" "$T/re2"
cp -r "$T/two/checkpoint-4" "$T/re1/"
cp -r "$T/one/checkpoint-4" "$T/re2/"
check "a 2-process checkpoint resumes in 1 process (batch 3 x accumulation 4) and ends as the uninterrupted run" sh -c '
	lf-train '"$FULL"' --per-device-train-batch-size 3 --gradient-accumulation-steps 4 -o "'"$T"'/re1" \
		2>"'"$T"'/re1.err" && grep -q "resuming from .*checkpoint-4" "'"$T"'/re1.err"' &&
	check "  (its log)" same_log "$T/one/trainer_log.jsonl" "$T/re1/trainer_log.jsonl"
check "a 1-process checkpoint resumes in 2 processes" sh -c '
	'"$MPI"' -np 2 lf-train '"$FULL"' --per-device-train-batch-size 3 -o "'"$T"'/re2" >"'"$T"'/re2.err" 2>&1 &&
	grep -q "resuming from .*checkpoint-4" "'"$T"'/re2.err"' &&
	check "  (its log)" same_log "$T/one/trainer_log.jsonl" "$T/re2/trainer_log.jsonl"
check "a checkpoint whose steps took other numbers of examples is refused" \
	fails 1 "steps took 12 examples each (processes x batch size x accumulation), this run.s take 8" \
	$MPI -np 2 lf-train $FULL --per-device-train-batch-size 2 -o "$T/two"

# ZeRO stage 1: each process keeps and updates the AdamW state of its share
# of the tensors; the weights it updates go to the others
$MPI -np 2 lf-train $FULL --per-device-train-batch-size 3 --zero-stage 1 --dump-grads "$T/gz.safetensors" \
	-o "$T/zero" >"$T/zero.out" 2>&1
check "--zero-stage 1: the same losses, gradient norms and eval losses as 1 process" \
	same_log "$T/one/trainer_log.jsonl" "$T/zero/trainer_log.jsonl"
check "--zero-stage 1: --dump-grads still writes every summed gradient" cmp "$T/g2.safetensors" "$T/gz.safetensors"
check "--zero-stage 1: checkpoints hold one optimizer file per process and their index" sh -c '
	cd "'"$T"'/zero/checkpoint-4" && test -s optimizer-00001-of-00002.safetensors &&
	test -s optimizer-00002-of-00002.safetensors && grep -q "\"exp_avg.model.layers.1.mlp.down_proj.weight\": \"optimizer-00002-of-00002" \
		optimizer.safetensors.index.json && ! test -e optimizer.safetensors'
mkdir "$T/re3" "$T/re4"
cp -r "$T/zero/checkpoint-4" "$T/re3/"
cp -r "$T/one/checkpoint-4" "$T/re4/"
check "a ZeRO checkpoint resumes in 1 process" sh -c '
	lf-train '"$FULL"' --per-device-train-batch-size 6 -o "'"$T"'/re3" 2>/dev/null' &&
	check "  (its log)" same_log "$T/one/trainer_log.jsonl" "$T/re3/trainer_log.jsonl"
check "a 1-process checkpoint resumes under --zero-stage 1 (each process reads its share)" sh -c '
	'"$MPI"' -np 2 lf-train '"$FULL"' --per-device-train-batch-size 3 --zero-stage 1 -o "'"$T"'/re4" >/dev/null 2>&1' &&
	check "  (its log)" same_log "$T/one/trainer_log.jsonl" "$T/re4/trainer_log.jsonl"
check "--zero-stage 2 is not built yet" fails 2 "zero-stage 2 (sharded gradients) is not built yet" \
	lf-train $FULL --zero-stage 2 -o "$T/z2"

LORA="-m $T/m -d $T/shards --lora-rank 4 --learning-rate 0.01 --max-steps 6 --logging-steps 1"
LORA="$LORA --additional-target norm --lora-dropout 0.1 --eval-steps 3"
lf-train $LORA --per-device-train-batch-size 4 --lora-dropout 0 -o "$T/lone" 2>/dev/null
$MPI -np 2 lf-train $LORA --per-device-train-batch-size 2 --lora-dropout 0 -o "$T/ltwo" >/dev/null 2>&1
check "LoRA: 2 processes x batch 2 log the same losses as 1 x batch 4" \
	same_log "$T/lone/trainer_log.jsonl" "$T/ltwo/trainer_log.jsonl"
$MPI -np 2 lf-train $LORA --per-device-train-batch-size 2 --lora-dropout 0 --zero-stage 1 -o "$T/lzero" \
	>/dev/null 2>&1
check "LoRA under --zero-stage 1: the same losses" same_log "$T/lone/trainer_log.jsonl" "$T/lzero/trainer_log.jsonl"
check "LoRA: the adapter is written once, by rank 0" sh -c '
	test -s "'"$T"'/ltwo/adapter_model.safetensors" && test -s "'"$T"'/ltwo/adapter_config.json"'
check "LoRA with dropout trains under mpirun (each process its own masks)" sh -c '
	'"$MPI"' -np 2 lf-train '"$LORA"' --per-device-train-batch-size 2 -o "'"$T"'/ldrop" >/dev/null 2>&1 &&
	test "$(wc -l <"'"$T"'/ldrop/trainer_log.jsonl")" = 8'

# faults: run until stopped, find the process of rank R
LONG="-m $T/m -d $T/shards --lora-rank 4 --max-steps 100000000 --save-steps 0 --logging-steps 1"
LONG="$LONG --per-device-train-batch-size 2"
rank_pid() { # OUTPUT_DIR RANK
	for p in $(pgrep -f "lf-train .*-o $1\$"); do
		tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2" && echo "$p"
	done
}
start_long() { # OUTPUT_DIR [OPTION...]: mpirun in the background, once training has begun
	dir=$1
	shift
	$MPI -np 2 lf-train $LONG "$@" -o "$dir" >"$dir.out" 2>&1 &
	mp=$!
	i=0
	while [ "$i" -lt 400 ] && ! [ -s "$dir/trainer_log.jsonl" ]; do sleep 0.05; i=$((i + 1)); done
}
# waits for mpirun at most 60 s; rc is its status, or "hang"
wait_mpirun() {
	i=0
	while [ "$i" -lt 600 ] && kill -0 "$mp" 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
	hung=0
	if kill -0 "$mp" 2>/dev/null; then
		hung=1
		pkill -9 -f "lf-train .*-o $dir\$"
	fi
	wait "$mp"
	rc=$?
	[ "$hung" = 0 ] || rc=hang
}

start_long "$T/k9"
kill -9 "$(rank_pid "$T/k9" 1)"
wait_mpirun
check "a process killed with -9: the group stops (mpirun exits non-zero, no process left)" sh -c '
	echo "status '"$rc"'"; test "'"$rc"'" != hang && test "'"$rc"'" != 0 && ! pgrep -f "lf-train .*-o '"$T"'/k9\$"'

start_long "$T/hang" --ddp-timeout 2
kill -STOP "$(rank_pid "$T/hang" 1)"
wait_mpirun
check "a process that hangs: the others stop after --ddp-timeout with an error naming it" sh -c '
	echo "status '"$rc"'"; test "'"$rc"'" = 1 &&
	grep -q "lf-train: error: process 0 of 2: the others did not join the sum within 2 s (--ddp-timeout)" \
		"'"$T"'/hang.out" && ! pgrep -f "lf-train .*-o '"$T"'/hang\$"'

start_long "$T/int"
kill -INT $(rank_pid "$T/int" 0) $(rank_pid "$T/int" 1)
wait_mpirun
check "SIGINT to the processes: the step ends, rank 0 saves a checkpoint, status 130" sh -c '
	test "'"$rc"'" = 130 && ls "'"$T"'/int" | grep -q "^checkpoint-[0-9]*$" &&
	grep -q "stopped by signal 2 after step" "'"$T"'/int.out" && ! test -e "'"$T"'/int/adapter_model.safetensors"'
check "and the group resumes from it" sh -c '
	step=$(ls "'"$T"'/int" | sed -n "s/^checkpoint-//p")
	'"$MPI"' -np 2 lf-train '"$LONG"' --max-steps $((step + 2)) -o "'"$T"'/int" >"'"$T"'/int2.out" 2>&1 &&
	grep -q "resuming from .*checkpoint-$step" "'"$T"'/int2.out" && test -s "'"$T"'/int/adapter_model.safetensors"'

# torchrun's variables alone (other launchers): the group over TCP through
# rank 0, on a port of this run's
PORT=$((20000 + $$ % 20000))
torchrun_like() {
	out=$1
	shift
	for r in 0 1; do
		RANK=$r LOCAL_RANK=$r WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$PORT lf-train "$@" -o "$out" \
			>"$out.$r.out" 2>&1 &
	done
	wait
}
torchrun_like "$T/tcp" $FULL --per-device-train-batch-size 3
check "torchrun-style variables (TCP through rank 0): 2 x batch 3 log the same steps as 1 x batch 6" \
	same_log "$T/one/trainer_log.jsonl" "$T/tcp/trainer_log.jsonl"
check "  (and only rank 0 wrote)" sh -c 'test ! -s "'"$T"'/tcp.1.out" || { cat "'"$T"'/tcp.1.out"; exit 1; }'
check "torchrun-style: a rank that never comes stops rank 0 within --ddp-timeout, naming what is missing" \
	fails 1 "process 0: 1 of 2 processes joined within 2 s" \
	env RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$((PORT + 1)) lf-train $FULL --ddp-timeout 2 \
	-o "$T/tr"
check "torchrun-style: a rank with no rank 0 to join stops within --ddp-timeout" \
	fails 1 "process 1: no process 0 listening at 127.0.0.1:$((PORT + 2))" \
	env RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$((PORT + 2)) lf-train $FULL --ddp-timeout 2 \
	-o "$T/tr"
check "torchrun-style: WORLD_SIZE without RANK is a clear error" \
	fails 1 "sets WORLD_SIZE but not RANK" env WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$PORT \
	lf-train $FULL -o "$T/tr"
check "torchrun-style: a process that dies mid-run stops the other with an error, not a hang" sh -c '
	RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT='$((PORT + 3))' lf-train '"$FULL"' \
		--per-device-train-batch-size 3 --max-steps 100000 -o "'"$T"'/die" >"'"$T"'/die.1" 2>&1 &
	pid=$!
	RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT='$((PORT + 3))' timeout 60 lf-train '"$FULL"' \
		--per-device-train-batch-size 3 --max-steps 100000 -o "'"$T"'/die" >"'"$T"'/die.0" 2>&1 &
	p0=$!
	sleep 2; kill -9 $pid; wait $p0; rc=$?
	cat "'"$T"'/die.0"
	test $rc = 1 && grep -q "process 1 closed its connection\|connection to process 1 broke" "'"$T"'/die.0"'
check "--ddp-timeout must be positive" fails 2 "ddp-timeout" lf-train $FULL --ddp-timeout 0 -o "$T/tr"
