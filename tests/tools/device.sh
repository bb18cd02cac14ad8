#!/bin/sh
# --device: every program that runs a model takes cpu or cuda; this machine
# has no GPU, so --device cuda must stop before any work with one clear
# line (PROGRAM-cuda, built where nvcc is, finds no device; a build without
# CUDA says it has none) and write nothing.  The GPU path itself is checked
# on a GPU machine (scripts/gpu-check.sh: tests/cuda/test_model.cu).
. tests/lib.sh

lf-init -t llama --hidden-size 32 --intermediate-size 64 --num-hidden-layers 2 -o "$T/m" 2>/dev/null
lf-template -t qwen --dataset-dir "$SHARED" --dataset identity --max-samples 8 2>/dev/null |
	lf-tokenize --tokenizer "$T/m" -o "$T/id.lfs" 2>/dev/null
lf-pack --cutoff-len 64 -o "$T/shards" "$T/id.lfs" 2>/dev/null
lf-template -t qwen --stage ppo --dataset-dir "$SHARED" --dataset identity --max-samples 2 2>/dev/null |
	lf-tokenize --tokenizer "$T/m" -o "$T/prompts.lfs" 2>/dev/null

# one_line_error NAME OUT COMMAND...: COMMAND fails with at most two lines
# on stderr naming --device cuda's missing GPU or CUDA, and OUT is not made
one_line_error() {
	name=$1 out=$2
	shift 2
	"$@" >"$T/$name.out" 2>"$T/$name.err" </dev/null
	rc=$?
	cat "$T/$name.err"
	test $rc != 0 && test "$(wc -l <"$T/$name.err")" -le 2 && test ! -e "$out" &&
		grep -q -e "--device cuda: no CUDA device" -e "--device cuda: this lf was built without CUDA" "$T/$name.err"
}

check "lf-train --device cuda without a GPU stops at once and writes nothing" \
	one_line_error train "$T/out" lf-train -m "$T/m" -d "$T/shards" --max-steps 1 --device cuda -o "$T/out"
check "lf-eval --device cuda without a GPU stops at once and writes nothing" \
	one_line_error eval "$T/ev.json" lf-eval -m "$T/m" --task perplexity --input "$T/shards" --device cuda \
	-o "$T/ev.json"
check "lf-generate --device cuda without a GPU stops at once and writes nothing" \
	one_line_error gen "$T/gen.jsonl" lf-generate -m "$T/m" --device cuda -o "$T/gen.jsonl" "$T/prompts.lfs"
check "lf-chat --device cuda without a GPU stops at once" \
	one_line_error chat "$T/none" lf-chat -m "$T/m" -t qwen --device cuda
for tool in lf-train lf-eval lf-generate lf-chat; do
	check "$tool --device other than cpu or cuda is a usage error naming it" \
		fails 2 "'tpu' is not cpu or cuda" $tool -m "$T/m" --device tpu
done
# (a build without CUDA, such as the sanitizer build, says that instead)
check "lf-train --device cuda refuses what the GPU path has not built yet" \
	fails 2 "--use-dora with --device cuda is not built\|this lf was built without CUDA" \
	lf-train -m "$T/m" -d "$T/shards" --use-dora --device cuda -o "$T/x"
check "--bf16 on the CPU: lf-eval computes in f32 and says so" sh -c '
	lf-eval -m "'"$T"'/m" --task perplexity --input "'"$T"'/shards" --bf16 2>&1 >/dev/null |
		grep -q "computes in f32 on the CPU"'
