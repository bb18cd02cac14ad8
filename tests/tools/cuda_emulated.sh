#!/bin/sh
# The CUDA code run on the CPU: tests/cudaemu (an emulation of the CUDA
# runtime, cuBLASLt, NCCL's sums and a block's threads as fibers) builds
# the GPU checks of tests/cuda with kernels/cuda and libcommon's GPU path
# and runs them here, so that CI executes every kernel and the whole
# model's GPU path (against the CPU path) where no GPU is, and lf-train's
# GPU branch end to end (lf-train --device cuda against --device cpu:
# logs, cross-device resumption, --dump-grads, outputs, --bf16), and
# lf-eval's and lf-generate's (perplexity, logits, greedy answers).  The emulation
# says nothing of speed, and runs blocks one after another (races between
# blocks go unseen); scripts/gpu-check.sh runs the same checks on a GPU.
. tests/lib.sh
EMU=$ROOT/tests/cudaemu
OUTD=$ROOT/build/cudaemu
mkdir -p "$OUTD"
KERNELS=$(ls "$ROOT"/kernels/cuda/*.cu)

# emulated NAME SOURCE...: build tests/cuda's NAME under the emulator
emulated() {
	name=$1
	shift
	# shellcheck disable=SC2086
	"$EMU/build.sh" "$OUTD/$name" "$@" $KERNELS -- -ldl >"$T/$name.build" 2>&1 ||
		{ tail -20 "$T/$name.build"; return 1; }
}

# runs NAME [ARGS]: the emulated check passes (exit 0), its failures shown
runs() {
	name=$1
	shift
	"$OUTD/$name" "$@" >"$T/$name.out" 2>&1
	rc=$?
	tail -1 "$T/$name.out"
	[ $rc = 0 ] || { grep '^FAIL' "$T/$name.out" | head -20; return 1; }
}

for t in ops loss_optim attention attention_tc sample; do
	check "cuda_test_$t builds under the emulator" emulated "test_$t" "$ROOT/tests/cuda/test_$t.cu"
	check "cuda_test_$t passes under the emulator (the kernels against the CPU ops)" runs "test_$t"
done
check "cuda_smoke builds under the emulator" emulated smoke "$ROOT/tests/cuda/smoke.cu"
check "cuda_smoke --quick passes under the emulator (conversions, the bf16 GEMM)" runs smoke --quick

# the whole model: one small model per architecture, as gpu-check makes them
mkdir -p "$T/models"
for spec in "llama" "llama_tied --tie-word-embeddings" "mistral --sliding-window 16" \
	"qwen2 --sliding-window 16" "qwen3" "gemma" "gemma2 --sliding-window 16" "phi3" \
	"mixtral --num-local-experts 4 --num-experts-per-tok 2"; do
	name=${spec%% *}
	# shellcheck disable=SC2086
	lf-init -t "${name%_tied}" --hidden-size 64 --intermediate-size 96 --num-hidden-layers 2 \
		--num-attention-heads 4 --num-key-value-heads 2 --initializer-range 0.1 ${spec#"$name"} \
		-o "$T/models/$name" 2>/dev/null
done
# NCCL's sums in a group of one, by a stand-in libnccl.so.2 (the emulator's
# device memory is host memory)
mkdir -p "$OUTD/nccl"
check "the stand-in libnccl.so.2 builds" sh -c '
	mpicc -shared -fPIC -o "'"$OUTD"'/nccl/libnccl.so.2" "'"$EMU"'/fakenccl.c" 2>&1'
check "cuda_test_model builds under the emulator" emulated test_model "$ROOT/tests/cuda/test_model.cu" \
	"$ROOT/libcommon/train_cuda.cu"
export LD_LIBRARY_PATH="$OUTD/nccl${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
check "cuda_test_model passes under the emulator: every architecture, full, LoRA and LoRA dropout, f32 and \
bf16, decode, NCCL, AdamW, against the CPU path" runs test_model "$T"/models/*

# The tools' GPU branches as a user runs them: PROGRAM --device cuda execs
# the PROGRAM-cuda beside it, here built under the emulator, against the
# same runs on the CPU (the tools' own paths: the model and state to the
# device and back, checkpoints, resuming across devices, --dump-grads,
# outputs; lf-eval's perplexity and logits, lf-generate's KV caches over a
# batch of prompts of different lengths)
mkdir -p "$T/bin"
export OMP_NUM_THREADS=1

# emulated_tool NAME: bin/NAME copied into $T/bin, NAME-cuda built beside it
emulated_tool() {
	cp "$(command -v "$1")" "$T/bin/$1" &&
		EMU_BUILD_DIR="$OUTD/tool-objs" EMU_CFLAGS="-DLF_HAVE_CUDA -DLF_VERSION=\"emulated\"" \
			"$EMU/build.sh" "$T/bin/$1-cuda" "$ROOT/tools/$1.c" "$ROOT/libcommon/train_cuda.cu" $KERNELS -- \
			$(pkg-config --libs ompi-c) -ldl >"$T/$1.build" 2>&1 || { tail -20 "$T/$1.build"; return 1; }
}
for tool in lf-train lf-eval lf-generate; do
	check "$tool-cuda builds under the emulator" emulated_tool $tool
done

lf-template -t qwen --dataset-dir "$SHARED" --dataset identity --max-samples 20 2>/dev/null |
	lf-tokenize --tokenizer "$T/models/llama" 2>/dev/null | lf-pack --cutoff-len 64 --val-size 4 -o "$T/sh" 2>/dev/null
TRAIN="-m $T/models/llama -d $T/sh --per-device-train-batch-size 2 --gradient-accumulation-steps 2 --max-steps 4"
TRAIN="$TRAIN --learning-rate 0.01 --logging-steps 1 --save-steps 2 --eval-steps 2"

# train DEVICE OUT ARGS...: lf-train on DEVICE into a fresh OUT
train() {
	dev=$1
	out=$2
	shift 2
	# shellcheck disable=SC2086
	"$T/bin/lf-train" $TRAIN --device "$dev" --overwrite-output-dir -o "$out" "$@" 2>"$out.err" ||
		{ tail -3 "$out.err"; return 1; }
}

# gpu_like_cpu FT: --finetuning-type FT on both, the GPU's log within 1e-5
gpu_like_cpu() {
	train cpu "$T/$1-cpu" --finetuning-type "$1" && train cuda "$T/$1-gpu" --finetuning-type "$1" &&
		grep -q "training on GPU 0: .*(cudaemu CPU emulation) in f32" "$T/$1-gpu.err" &&
		same_log "$T/$1-gpu/trainer_log.jsonl" "$T/$1-cpu/trainer_log.jsonl" 1e-5
}
for ft in lora full; do
	check "lf-train --device cuda --finetuning-type $ft (f32) logs the CPU's losses, grad norms and eval losses \
within 1e-5" gpu_like_cpu $ft
done

# resumed FROM FT DEVICE: FROM's checkpoint-2 resumed by FT on DEVICE logs as FROM
resumed() {
	mkdir -p "$T/re-$3" && cp -r "$T/$1/checkpoint-2" "$T/re-$3/" &&
		# shellcheck disable=SC2086
		"$T/bin/lf-train" $TRAIN --finetuning-type "$2" --device "$3" -o "$T/re-$3" 2>/dev/null &&
		same_log "$T/re-$3/trainer_log.jsonl" "$T/$1/trainer_log.jsonl" 1e-5
}
check "a GPU run's checkpoint resumed on the CPU logs as the uninterrupted run" resumed lora-gpu lora cpu
check "a CPU run's checkpoint resumed on the GPU logs as the uninterrupted run" resumed full-cpu full cuda

dumps_agree() {
	train cpu "$T/dump-cpu" --finetuning-type lora --max-steps 1 --dump-grads "$T/g-cpu.safetensors" &&
		train cuda "$T/dump-gpu" --finetuning-type lora --max-steps 1 --dump-grads "$T/g-cuda.safetensors" &&
		same_tensors "$T/g-cuda.safetensors" "$T/g-cpu.safetensors" 1e-4 2
}
check "--dump-grads on the GPU: the CPU's loss and gradients (LoRA, every tensor within 1e-4 of its largest)" \
	dumps_agree
check "the adapter the GPU run writes: PEFT's names, the CPU run's values within 1e-4" \
	same_tensors "$T/lora-gpu/adapter_model.safetensors" "$T/lora-cpu/adapter_model.safetensors" 1e-4 2
bf16_runs() {
	train cuda "$T/bf16" --finetuning-type full --bf16 && grep -q "in bf16" "$T/bf16.err" &&
		test -s "$T/bf16/model.safetensors" &&
		same_log "$T/bf16/trainer_log.jsonl" "$T/full-cpu/trainer_log.jsonl" 2e-2
}
check "lf-train --device cuda --bf16 trains in the bf16 mode: losses within 2e-2 of the CPU's f32" bf16_runs

# on_both TOOL OUT ARGS...: TOOL ARGS on the CPU into OUT-cpu, on the GPU into OUT-cuda (stdout)
on_both() {
	tool=$1
	out=$2
	shift 2
	for dev in cpu cuda; do
		"$T/bin/$tool" "$@" --device $dev >"$out-$dev" 2>/dev/null || return 1
	done
}
ppl_agrees() {
	on_both lf-eval "$T/ppl" -m "$T/models/llama" --task perplexity --input "$T/sh" &&
		python3 -c "import json, sys
a, b = (json.load(open(p))['loss'] for p in sys.argv[1:])
assert abs(a - b) <= 1e-5 * abs(b), (a, b)" "$T/ppl-cuda" "$T/ppl-cpu"
}
check "lf-eval --device cuda: the CPU's perplexity within 1e-5" ppl_agrees
lf-template -t qwen --stage ppo --dataset-dir "$SHARED" --dataset identity --max-samples 3 2>/dev/null |
	lf-tokenize --tokenizer "$T/models/llama" -o "$T/prompts.lfs" 2>/dev/null
answers_agree() {
	on_both lf-generate "$T/gen" -m "$T/models/llama" --do-sample=false --max-new-tokens 12 "$T/prompts.lfs" &&
		test -s "$T/gen-cpu" && cmp "$T/gen-cpu" "$T/gen-cuda"
}
check "lf-generate --device cuda: the CPU's greedy answers to 3 prompts, token for token" answers_agree
printf '{"ids": [1, 5, 9, 200, 33, 7, 81, 64, 12]}\n{"ids": [3, 250, 17]}\n' >"$T/ids.jsonl"
logits_agree() {
	for dev in cpu cuda; do
		"$T/bin/lf-eval" -m "$T/models/llama" --task logits --input "$T/ids.jsonl" --device $dev \
			-o "$T/logits-$dev.safetensors" 2>/dev/null || return 1
	done
	same_tensors "$T/logits-cuda.safetensors" "$T/logits-cpu.safetensors" 1e-4 2
}
check "lf-eval --task logits --device cuda: the CPU's logits of every position within 1e-4 of their largest" \
	logits_agree
