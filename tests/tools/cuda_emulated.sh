#!/bin/sh
# The CUDA code run on the CPU: tests/cudaemu (an emulation of the CUDA
# runtime, cuBLASLt, NCCL's sums and a block's threads as fibers) builds
# the GPU checks of tests/cuda with kernels/cuda and libcommon's GPU path
# and runs them here, so that CI executes every kernel and the whole
# model's GPU path (against the CPU path) where no GPU is.  The emulation
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
