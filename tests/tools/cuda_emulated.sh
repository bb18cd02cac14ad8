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

# lf-train's GPU branch as a user runs it: lf-train --device cuda execs the
# lf-train-cuda beside it, here built under the emulator, against the same
# runs on the CPU (the tool's own paths: the model and state to the device
# and back, checkpoints, resuming across devices, --dump-grads, outputs)
mkdir -p "$T/bin"
cp "$(command -v lf-train)" "$T/bin/lf-train"
check "lf-train-cuda builds under the emulator" sh -c '
	EMU_BUILD_DIR="'"$OUTD"'/tool-objs" EMU_CFLAGS="-DLF_HAVE_CUDA -DLF_VERSION=\"emulated\"" \
		"'"$EMU"'/build.sh" "'"$T"'/bin/lf-train-cuda" "'"$ROOT"'/tools/lf-train.c" \
		"'"$ROOT"'/libcommon/train_cuda.cu" '"$(echo $KERNELS)"' -- $(pkg-config --libs ompi-c) -ldl \
		>"'"$T"'/tool.build" 2>&1 || { tail -20 "'"$T"'/tool.build"; exit 1; }'
lf-template -t qwen --dataset-dir "$SHARED" --dataset identity --max-samples 20 2>/dev/null |
	lf-tokenize --tokenizer "$T/models/llama" 2>/dev/null | lf-pack --cutoff-len 64 --val-size 4 -o "$T/sh" 2>/dev/null
TRAIN="-m $T/models/llama -d $T/sh --per-device-train-batch-size 2 --gradient-accumulation-steps 2 --max-steps 4"
TRAIN="$TRAIN --learning-rate 0.01 --logging-steps 1 --save-steps 2 --eval-steps 2 --overwrite-output-dir"
export OMP_NUM_THREADS=1

# same.py LOG REF TOL: every logged loss, grad_norm and eval_loss of two
# trainer_log.jsonl within TOL relative, and as many lines
cat >"$T/same.py" <<'PY'
import json, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
tol = float(sys.argv[3])
assert len(a) == len(b) > 0, "%d vs %d log lines" % (len(a), len(b))
for x, y in zip(a, b):
    for k in ("loss", "grad_norm", "eval_loss"):
        if k in x or k in y:
            d = abs(x[k] - y[k]) / max(abs(y[k]), 1e-30)
            assert d <= tol, "step %s %s: %r vs %r (%.2g relative)" % (x.get("current_steps"), k, x[k], y[k], d)
PY

for ft in lora full; do
	check "lf-train --device cuda --finetuning-type $ft (f32) logs the CPU's losses, grad norms and eval losses \
within 1e-5" sh -c '
		"'"$T"'/bin/lf-train" '"$TRAIN"' --finetuning-type '"$ft"' --device cpu -o "'"$T/$ft"'-cpu" 2>/dev/null &&
		"'"$T"'/bin/lf-train" '"$TRAIN"' --finetuning-type '"$ft"' --device cuda -o "'"$T/$ft"'-gpu" \
			2>"'"$T/$ft"'-gpu.err" || { tail -3 "'"$T/$ft"'-gpu.err"; exit 1; }
		grep -q "training on GPU 0: .*(cudaemu CPU emulation) in f32" "'"$T/$ft"'-gpu.err" &&
		python3 "'"$T"'/same.py" "'"$T/$ft"'-gpu/trainer_log.jsonl" "'"$T/$ft"'-cpu/trainer_log.jsonl" 1e-5'
done
check "a GPU run's checkpoint resumed on the CPU, and a CPU run's on the GPU, log as the uninterrupted runs" sh -c '
	mkdir -p "'"$T"'/g2c" "'"$T"'/c2g" && cp -r "'"$T"'/lora-gpu/checkpoint-2" "'"$T"'/g2c/" &&
	cp -r "'"$T"'/full-cpu/checkpoint-2" "'"$T"'/c2g/" &&
	"'"$T"'/bin/lf-train" '"$(echo "$TRAIN" | sed s/--overwrite-output-dir//)"' --finetuning-type lora --device cpu \
		-o "'"$T"'/g2c" 2>/dev/null &&
	"'"$T"'/bin/lf-train" '"$(echo "$TRAIN" | sed s/--overwrite-output-dir//)"' --finetuning-type full --device cuda \
		-o "'"$T"'/c2g" 2>/dev/null &&
	python3 "'"$T"'/same.py" "'"$T"'/g2c/trainer_log.jsonl" "'"$T"'/lora-gpu/trainer_log.jsonl" 1e-5 &&
	python3 "'"$T"'/same.py" "'"$T"'/c2g/trainer_log.jsonl" "'"$T"'/full-cpu/trainer_log.jsonl" 1e-5'
# dumps.py A B TOL: the same tensors in two safetensors files of f32, each
# within TOL of its largest element in B
cat >"$T/dumps.py" <<'PY'
import json, struct, sys, array
def load(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    return {k: array.array("f", b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]])
            for k, v in h.items() if k != "__metadata__"}
a, b, tol = load(sys.argv[1]), load(sys.argv[2]), float(sys.argv[3])
assert sorted(a) == sorted(b) and len(a) > 1, "tensors differ: %s" % sorted(set(a) ^ set(b))
for k in a:
    big = max(abs(x) for x in b[k]) or 1.0
    worst = max(abs(x - y) for x, y in zip(a[k], b[k])) / big
    assert worst <= tol, "%s: %.2g of its largest" % (k, worst)
PY
check "--dump-grads on the GPU: the CPU's loss and gradients (LoRA, every tensor within 1e-4 of its largest)" sh -c '
	for dev in cpu cuda; do
		"'"$T"'/bin/lf-train" '"$TRAIN"' --finetuning-type lora --max-steps 1 --device $dev \
			--dump-grads "'"$T"'/g-$dev.safetensors" -o "'"$T"'/dump-$dev" 2>/dev/null || exit 1
	done
	python3 "'"$T"'/dumps.py" "'"$T"'/g-cuda.safetensors" "'"$T"'/g-cpu.safetensors" 1e-4'
check "the adapter the GPU run writes: PEFT's names, the CPU run's values within 1e-4" \
	python3 "$T/dumps.py" "$T/lora-gpu/adapter_model.safetensors" "$T/lora-cpu/adapter_model.safetensors" 1e-4
check "lf-train --device cuda --bf16 trains in the bf16 mode: losses within 2e-2 of the CPU's f32" sh -c '
	"'"$T"'/bin/lf-train" '"$TRAIN"' --finetuning-type full --bf16 --device cuda -o "'"$T"'/bf16" \
		2>"'"$T"'/bf16.err" && grep -q "in bf16" "'"$T"'/bf16.err" && test -s "'"$T"'/bf16/model.safetensors" &&
	python3 "'"$T"'/same.py" "'"$T"'/bf16/trainer_log.jsonl" "'"$T"'/full-cpu/trainer_log.jsonl" 2e-2'

# lf-eval and lf-generate on the GPU as a user runs them (the -cuda twins
# under the emulator), against the CPU: perplexity over the shards, and
# greedy answers to a batch of prompts (KV caches, prompts of different
# lengths) token for token
for tool in lf-eval lf-generate; do
	cp "$(command -v $tool)" "$T/bin/$tool"
	check "$tool-cuda builds under the emulator" sh -c '
		EMU_BUILD_DIR="'"$OUTD"'/tool-objs" EMU_CFLAGS="-DLF_HAVE_CUDA -DLF_VERSION=\"emulated\"" \
			"'"$EMU"'/build.sh" "'"$T/bin/$tool"'-cuda" "'"$ROOT/tools/$tool"'.c" \
			"'"$ROOT"'/libcommon/train_cuda.cu" '"$(echo $KERNELS)"' -- $(pkg-config --libs ompi-c) -ldl \
			>"'"$T/$tool"'.build" 2>&1 || { tail -20 "'"$T/$tool"'.build"; exit 1; }'
done
check "lf-eval --device cuda: the CPU's perplexity within 1e-5" sh -c '
	for dev in cpu cuda; do
		"'"$T"'/bin/lf-eval" -m "'"$T"'/models/llama" --task perplexity --input "'"$T"'/sh" --device $dev \
			>"'"$T"'/ppl-$dev.json" 2>/dev/null || exit 1
	done
	python3 -c "import json, sys
a, b = (json.load(open(p))[\"loss\"] for p in sys.argv[1:])
assert abs(a - b) <= 1e-5 * abs(b), (a, b)" "'"$T"'/ppl-cuda.json" "'"$T"'/ppl-cpu.json"'
lf-template -t qwen --stage ppo --dataset-dir "$SHARED" --dataset identity --max-samples 3 2>/dev/null |
	lf-tokenize --tokenizer "$T/models/llama" -o "$T/prompts.lfs" 2>/dev/null
check "lf-generate --device cuda: the CPU's greedy answers to 3 prompts, token for token" sh -c '
	for dev in cpu cuda; do
		"'"$T"'/bin/lf-generate" -m "'"$T"'/models/llama" --do-sample=false --max-new-tokens 12 --device $dev \
			<"'"$T"'/prompts.lfs" >"'"$T"'/gen-$dev" 2>/dev/null || exit 1
	done
	test -s "'"$T"'/gen-cpu" && cmp "'"$T"'/gen-cpu" "'"$T"'/gen-cuda"'
printf '{"ids": [1, 5, 9, 200, 33, 7, 81, 64, 12]}\n{"ids": [3, 250, 17]}\n' >"$T/ids.jsonl"
check "lf-eval --task logits --device cuda: the CPU's logits of every position within 1e-4 of their largest" sh -c '
	for dev in cpu cuda; do
		"'"$T"'/bin/lf-eval" -m "'"$T"'/models/llama" --task logits --input "'"$T"'/ids.jsonl" --device $dev \
			-o "'"$T"'/logits-$dev.safetensors" 2>/dev/null || exit 1
	done
	python3 "'"$T"'/dumps.py" "'"$T"'/logits-cuda.safetensors" "'"$T"'/logits-cpu.safetensors" 1e-4'
