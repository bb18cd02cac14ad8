#!/bin/sh
# lf-run: a LLaMA-Factory training recipe runs end to end through the lf
# tools (and gives what the printed pipeline gives), an export recipe runs
# lf-merge, --dry-run runs nothing, unbuilt stages and failing steps stop it.
. tests/lib.sh
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
lf-init -t qwen3 --hidden-size 32 --intermediate-size 64 -o "$T/m" 2>/dev/null
recipe() { # output_dir extra-lines...
	out=$1
	shift
	printf '%s\n' "model_name_or_path: $T/m" "trust_remote_code: true" "stage: sft" "do_train: true" \
		"finetuning_type: lora" "lora_rank: 4" "lora_target: all" "dataset: identity" \
		"dataset_dir: $SHARED" "template: qwen3" "cutoff_len: 128" "max_samples: 8" \
		"overwrite_cache: true" "preprocessing_num_workers: 16" "output_dir: $out" "logging_steps: 1" \
		"save_steps: 500" "plot_loss: false" "overwrite_output_dir: true" "per_device_train_batch_size: 2" \
		"gradient_accumulation_steps: 2" "learning_rate: 1.0e-3" "num_train_epochs: 1.0" \
		"lr_scheduler_type: cosine" "warmup_ratio: 0.1" "bf16: true" "ddp_timeout: 180000000" \
		"resume_from_checkpoint: null" "$@"
}
recipe "$T/out" >"$T/train.yaml"
end_to_end() {
	lf-run "$T/train.yaml" >"$T/printed" 2>/dev/null &&
		test -s "$T/out/adapter_model.safetensors" && test -s "$T/out/lf-shards/manifest.json" &&
		test "$(wc -l <"$T/out/trainer_log.jsonl")" -ge 1
}
check "a LLaMA-Factory sft recipe runs end to end: shards, adapter, logs" end_to_end
printed() {
	grep -q "^lf-template --config .*train.yaml |" "$T/printed" &&
		grep -q "lf-pack --config .*train.yaml -o .*/out/lf-shards" "$T/printed" &&
		grep -q "^lf-train --config .*train.yaml --data .*/out/lf-shards" "$T/printed"
}
check "it prints the pipeline it runs" printed
by_hand() {
	sed "s#$T/out#$T/again#g; s#train.yaml#again.yaml#g" "$T/printed" >"$T/again.sh" &&
		sed "s#$T/out#$T/again#g" "$T/train.yaml" >"$T/again.yaml" && mkdir -p "$T/again" &&
		sh -e "$T/again.sh" 2>/dev/null &&
		cmp "$T/out/adapter_model.safetensors" "$T/again/adapter_model.safetensors"
}
check "the printed commands, run by the shell, give the same adapter" by_hand
dry() {
	sed "s#$T/out#$T/dry#" "$T/train.yaml" >"$T/dry.yaml" &&
		lf-run --dry-run "$T/dry.yaml" | grep -q lf-train && ! test -e "$T/dry"
}
check "--dry-run prints and runs nothing" dry
printf '%s\n' "model_name_or_path: $T/m" "adapter_name_or_path: $T/out" "template: qwen3" \
	"trust_remote_code: true" "export_dir: $T/merged" "export_size: 5" "export_device: cpu" \
	"export_legacy_format: false" >"$T/export.yaml"
export_recipe() {
	lf-run "$T/export.yaml" 2>/dev/null | grep -q "^lf-merge --config" &&
		test -s "$T/merged/model.safetensors" && test -s "$T/merged/config.json"
}
check "an export recipe runs lf-merge" export_recipe
recipe "$T/dpo" | sed 's/^stage: sft/stage: dpo/' >"$T/dpo.yaml"
check "a stage lf does not build yet is refused, named" fails 1 "stage 'dpo' is not built yet" lf-run "$T/dpo.yaml"
recipe "$T/bad" "use_galore: true" >"$T/bad.yaml"
check "a step that refuses a key stops lf-run with its status" fails 2 "a step exited with status 2" \
	lf-run "$T/bad.yaml"
check "no recipe: a usage error" fails 2 "one recipe file" lf-run

# --nproc-per-node / NPROC_PER_NODE: lf-train as N processes under mpirun
sed "s#$T/out#$T/dp#" "$T/train.yaml" >"$T/dp.yaml"
data_parallel() {
	# shellcheck disable=SC2086
	env $MPI_TEST_ENV NPROC_PER_NODE=2 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 lf-run "$T/dp.yaml" \
		>"$T/dp.printed" 2>"$T/dp.err" || { cat "$T/dp.err"; return 1; }
	grep -q "^mpirun -np 2 .*lf-train --config .*dp.yaml --data .*/dp/lf-shards" "$T/dp.printed" &&
		grep -q '"world_size": 2' "$T/dp/trainer_state.json" && test -s "$T/dp/adapter_model.safetensors" &&
		test "$(wc -l <"$T/dp/trainer_log.jsonl")" = 1 # 8 examples, 2 x 2 x accumulation 2 a step
}
check "NPROC_PER_NODE=2: lf-train runs as 2 processes under mpirun, and the command says so" data_parallel
check "--nproc-per-node 0 is refused" fails 2 "nproc-per-node" lf-run --nproc-per-node 0 "$T/dp.yaml"
check "lf-run under mpirun is refused: it starts the processes itself" \
	fails 1 "lf-run starts the processes itself" env OMPI_COMM_WORLD_SIZE=2 lf-run "$T/dp.yaml"
