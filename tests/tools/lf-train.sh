#!/bin/sh
# lf-train: the pipeline from data to a trained adapter that PEFT's layout
# and lf-eval read, exact resumption (from a copied checkpoint and after
# SIGINT), freeze tuning's parameter choice, outputs in the base dtype,
# recipes, and clear errors for bad input and what is not built.
# (Gradients against transformers + PEFT: tests/tools/train_goldens.py.)
. tests/lib.sh
HELP=${LF_UNITS:-$ROOT/build/dyn/tests}/helpers
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

# a tiny llama with lf-init's byte-level tokenizer, and identity's sft shards
lf-init -t llama --hidden-size 32 --intermediate-size 64 --num-hidden-layers 2 -o "$T/m" 2>/dev/null
lf-init -t llama --hidden-size 32 --intermediate-size 64 --num-hidden-layers 2 --dtype bfloat16 -o "$T/m16" \
	2>/dev/null
lf-template -t qwen --dataset-dir "$SHARED" --dataset identity --max-samples 24 2>/dev/null |
	lf-tokenize --tokenizer "$T/m" -o "$T/id.lfs" 2>/dev/null
lf-pack --cutoff-len 96 --val-size 4 -o "$T/shards" "$T/id.lfs" 2>/dev/null

check "lf-train --finetuning-type lora writes a PEFT adapter, logs and results" sh -c '
	lf-train -m "'"$T"'/m" -d "'"$T"'/shards" --lora-rank 4 --learning-rate 0.01 --max-steps 8 \
		--per-device-train-batch-size 4 --logging-steps 2 --save-steps 4 -o "'"$T"'/lora" 2>/dev/null &&
	cd "'"$T"'/lora" && test -s adapter_model.safetensors && test -s tokenizer.json && test -d checkpoint-4 &&
	test -s checkpoint-4/optimizer.safetensors && test -s checkpoint-4/adapter_model.safetensors &&
	test "$(wc -l <trainer_log.jsonl)" = 4 &&
	grep -q "\"peft_type\": \"LORA\"" adapter_config.json && grep -q "\"r\": 4" adapter_config.json &&
	grep -q "\"lora_alpha\": 8" adapter_config.json && grep -q eval_loss all_results.json'
check "the adapter holds PEFT names for every linear layer of every layer (2 x 7 x A, B)" sh -c '
	"'"$HELP"'/st-dump" read "'"$T"'/lora/adapter_model.safetensors" | grep -o "\"name\":\"[^\"]*\"" >"'"$T"'/names"
	test "$(wc -l <"'"$T"'/names")" = 28 &&
	grep -q "base_model.model.model.layers.1.mlp.down_proj.lora_B.weight" "'"$T"'/names" &&
	grep -q "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" "'"$T"'/names"'
check "training lowers the loss, and lf-eval runs the adapter: lower perplexity than the base" sh -c '
	first=$(head -1 "'"$T"'/lora/trainer_log.jsonl" | sed "s/.*\"loss\":\([0-9.]*\).*/\1/")
	last=$(tail -1 "'"$T"'/lora/trainer_log.jsonl" | sed "s/.*\"loss\":\([0-9.]*\).*/\1/")
	a=$(lf-eval -m "'"$T"'/m" --task perplexity --input "'"$T"'/shards" | sed "s/.*\"loss\":\([0-9.]*\).*/\1/")
	b=$(lf-eval -m "'"$T"'/m" --adapter-name-or-path "'"$T"'/lora" --task perplexity --input "'"$T"'/shards" |
		sed "s/.*\"loss\":\([0-9.]*\).*/\1/")
	echo "train $first -> $last, eval $a -> $b"
	awk -v f="$first" -v l="$last" -v a="$a" -v b="$b" "BEGIN { exit !(l < f && b < a) }"'

# resumption: 8 steps at once equal 4 steps, a copied checkpoint, 4 more
FULL="-m $T/m -d $T/shards --finetuning-type full --learning-rate 0.003 --max-steps 8 --save-steps 4"
FULL="$FULL --per-device-train-batch-size 3 --gradient-accumulation-steps 2 --weight-decay 0.1 --warmup-steps 2"
FULL="$FULL --lr-scheduler-type cosine --logging-steps 1"
check "a run resumed from checkpoint-4 ends with the same weights as an uninterrupted one" sh -c '
	lf-train '"$FULL"' -o "'"$T"'/full" 2>/dev/null && mkdir "'"$T"'/resumed" &&
	cp -r "'"$T"'/full/checkpoint-4" "'"$T"'/resumed/" &&
	lf-train '"$FULL"' -o "'"$T"'/resumed" 2>"'"$T"'/resume.err" && grep -q "resuming from" "'"$T"'/resume.err" &&
	cmp "'"$T"'/full/model.safetensors" "'"$T"'/resumed/model.safetensors"' &&
	check "  (its log: the same losses, gradient norms and learning rates, exactly)" \
		same_log "$T/full/trainer_log.jsonl" "$T/resumed/trainer_log.jsonl" 0
check "--overwrite-output-dir starts afresh (the old checkpoints go)" sh -c '
	lf-train '"$FULL"' --max-steps 2 --save-steps 1 --overwrite-output-dir -o "'"$T"'/resumed" 2>/dev/null &&
	test -d "'"$T"'/resumed/checkpoint-1" && ! test -d "'"$T"'/resumed/checkpoint-4" &&
	test "$(wc -l <"'"$T"'/resumed/trainer_log.jsonl")" = 2'
check "--save-total-limit keeps the last checkpoints only" sh -c '
	lf-train '"$FULL"' --save-steps 2 --save-total-limit 2 -o "'"$T"'/limit" 2>/dev/null &&
	ls "'"$T"'/limit" | grep checkpoint | tr "\n" " " | grep -x "checkpoint-4 checkpoint-6 "'
check "a checkpoint made with another batch size is refused" \
	fails 1 "took 6 examples each (processes x batch size x accumulation), this run.s take 4" lf-train $FULL --per-device-train-batch-size 2 -o "$T/full"

# SIGINT: the step finishes, a checkpoint is saved, no final model, 130
LONG="-m $T/m -d $T/shards --lora-rank 4 --max-steps 100000 --save-steps 0 --logging-steps 1"
LONG="$LONG --per-device-train-batch-size 4"
lf-train $LONG -o "$T/int" 2>/dev/null &
pid=$!
i=0
while [ "$i" -lt 200 ] && ! [ -s "$T/int/trainer_log.jsonl" ]; do sleep 0.05; i=$((i + 1)); done
kill -INT "$pid"
wait "$pid"
rc=$?
check "SIGINT: exit status 130, a resumable checkpoint, no final adapter" sh -c '
	test '"$rc"' = 130 && ls "'"$T"'/int" | grep -q "^checkpoint-[0-9]*$" &&
	! test -e "'"$T"'/int/adapter_model.safetensors" && ! ls "'"$T"'/int" | grep -q tmp'
check "and the next run resumes from it" sh -c '
	step=$(ls "'"$T"'/int" | sed -n "s/^checkpoint-//p")
	lf-train '"$LONG"' --max-steps $((step + 2)) -o "'"$T"'/int" 2>"'"$T"'/int.err";
	grep -q "resuming from .*checkpoint-$step" "'"$T"'/int.err" && test -s "'"$T"'/int/adapter_model.safetensors"'

# kill -9 while checkpoints are being written: every checkpoint-N left is
# whole (each is built under a temporary name), and the next run resumes
lf-train $LONG --save-steps 1 -o "$T/k9" 2>/dev/null &
pid=$!
i=0
while [ "$i" -lt 200 ] && [ "$(ls "$T/k9" 2>/dev/null | grep -c '^checkpoint-[0-9]*$')" -lt 3 ]; do
	sleep 0.02
	i=$((i + 1))
done
kill -9 "$pid"
wait "$pid" 2>/dev/null
k9() {
	n=0
	for c in "$T"/k9/checkpoint-*; do
		case ${c##*/} in *.tmp.*) continue ;; esac
		test -s "$c/trainer_state.json" && test -s "$c/optimizer.safetensors" &&
			test -s "$c/adapter_model.safetensors" || return 1
		n=$((n + 1))
	done
	last=$(ls "$T/k9" | sed -n 's/^checkpoint-\([0-9]*\)$/\1/p' | sort -n | tail -1)
	test "$n" -ge 3 && lf-train $LONG --max-steps $((last + 1)) -o "$T/k9" 2>"$T/k9.err" &&
		grep -q "resuming from .*checkpoint-$last " "$T/k9.err" && test -s "$T/k9/adapter_model.safetensors"
}
check "kill -9 during saves leaves whole checkpoints only, and the last one resumes" k9

# freeze tuning chooses parameters as LLaMA-Factory: a substring match
check "freeze: the last layer's parameters only (--dump-grads names them)" sh -c '
	lf-train -m "'"$T"'/m" -d "'"$T"'/shards" --finetuning-type freeze --freeze-trainable-layers 1 \
		--max-steps 1 --dump-grads "'"$T"'/fz.safetensors" -o "'"$T"'/fz" 2>/dev/null &&
	"'"$HELP"'/st-dump" read "'"$T"'/fz.safetensors" | grep -o "\"name\":\"[^\"]*\"" >"'"$T"'/fz.names" &&
	test "$(grep -c "layers\.1\." "'"$T"'/fz.names")" = 9 && ! grep -q "layers\.0\.\|embed" "'"$T"'/fz.names" &&
	grep -q "\"loss\"" "'"$T"'/fz.names"'
check "freeze: an extra module 'norm' also trains every norm whose name contains it (LLaMA-Factory's rule)" sh -c '
	lf-train -m "'"$T"'/m" -d "'"$T"'/shards" --finetuning-type freeze --freeze-trainable-layers 1 \
		--freeze-trainable-modules mlp --freeze-extra-modules norm --max-steps 1 \
		--dump-grads "'"$T"'/fz2.safetensors" -o "'"$T"'/fz2" 2>/dev/null &&
	"'"$HELP"'/st-dump" read "'"$T"'/fz2.safetensors" | grep -o "\"name\":\"[^\"]*\"" >"'"$T"'/fz2.names" &&
	grep -q "layers.0.input_layernorm" "'"$T"'/fz2.names" && grep -q "model.norm.weight" "'"$T"'/fz2.names" &&
	grep -q "layers.1.mlp.up_proj" "'"$T"'/fz2.names" && ! grep -q "self_attn" "'"$T"'/fz2.names"'
check "full fine-tuning of a bf16 model writes bf16 weights that lf-eval loads" sh -c '
	lf-train -m "'"$T"'/m16" -d "'"$T"'/shards" --finetuning-type full --max-steps 2 -o "'"$T"'/f16" 2>/dev/null &&
	"'"$HELP"'/st-dump" read "'"$T"'/f16/model.safetensors" | grep -q "\"dtype\":\"BF16\"" &&
	! "'"$HELP"'/st-dump" read "'"$T"'/f16/model.safetensors" | grep -q "\"dtype\":\"F32\"" &&
	lf-eval -m "'"$T"'/f16" --task perplexity --input "'"$T"'/shards" >/dev/null'
check "a LLaMA-Factory recipe's keys drive the run (--config)" sh -c '
	printf "%s\n" "stage: sft" "finetuning_type: lora" "lora_rank: 2" "lora_target: q_proj,v_proj" \
		"learning_rate: 1.0e-3" "max_steps: 2" "per_device_train_batch_size: 2" "output_dir: '"$T"'/rec" \
		"model_name_or_path: '"$T"'/m" >"'"$T"'/r.yaml" &&
	lf-train --config "'"$T"'/r.yaml" -d "'"$T"'/shards" 2>/dev/null &&
	grep -q "\"r\": 2" "'"$T"'/rec/adapter_config.json" &&
	test "$("'"$HELP"'/st-dump" read "'"$T"'/rec/adapter_model.safetensors" | grep -o "lora_A" | wc -l)" = 4'
check "--adapter-name-or-path trains an adapter further (its rank and targets kept)" sh -c '
	lf-train -m "'"$T"'/m" -d "'"$T"'/shards" --adapter-name-or-path "'"$T"'/rec" --max-steps 1 -o "'"$T"'/more" \
		2>/dev/null && grep -q "\"r\": 2" "'"$T"'/more/adapter_config.json" && grep -q q_proj "'"$T"'/more/adapter_config.json"'

# without gradient checkpointing: the same steps as with it (the layers
# not recomputed; a LoRA layer's merged W + s B A packed once in its
# forward for the backward's product too, on a model wide enough for
# lf's own product: 64 and over)
no_ckpt() {
	lf-init -t llama --hidden-size 64 --intermediate-size 128 --num-hidden-layers 2 -o "$T/m64" 2>/dev/null &&
	for ft in lora full; do
		for ck in on off; do
			set -- -m "$T/m64" -d "$T/shards" --finetuning-type $ft --lora-rank 4 --learning-rate 0.01 \
				--max-steps 3 --per-device-train-batch-size 4 --logging-steps 1 --save-steps 0 \
				-o "$T/ck-$ft-$ck"
			[ $ck = off ] && set -- "$@" --disable-gradient-checkpointing
			lf-train "$@" 2>/dev/null || return 1
		done
		same_log "$T/ck-$ft-on/trainer_log.jsonl" "$T/ck-$ft-off/trainer_log.jsonl" 0 || return 1
	done
	cmp "$T/ck-lora-on/adapter_model.safetensors" "$T/ck-lora-off/adapter_model.safetensors" &&
	cmp "$T/ck-full-on/model.safetensors" "$T/ck-full-off/model.safetensors"
}
check "--disable-gradient-checkpointing: the same losses, gradient norms and weights (LoRA, full)" no_ckpt

# LoRA+, NEFTune, LoRA dropout, DoRA
loraplus() {
	lf-train -m "$T/m" -d "$T/shards" --adapter-name-or-path "$T/lora" --loraplus-lr-ratio 16 --learning-rate 1e-3 \
		--lr-scheduler-type constant --max-grad-norm 0 --max-steps 1 -o "$T/lp" 2>/dev/null &&
	"$LF_PYTHON" -c "
import sys
import numpy as np
from safetensors.numpy import load_file
a, b = load_file('$T/lora/adapter_model.safetensors'), load_file('$T/lp/adapter_model.safetensors')
dA = max(np.abs(b[k] - a[k]).max() for k in a if 'lora_A' in k)
dB = max(np.abs(b[k] - a[k]).max() for k in a if 'lora_B' in k)
print(dA, dB)
sys.exit(not (0.9e-3 < dA < 1.1e-3 and 15 < dB / dA < 17))
"
}
check "LoRA+: a first AdamW step moves B 16 times as far as A (--loraplus-lr-ratio 16)" loraplus
noise_runs() { # name options...: a 2-step run's first loss
	name=$1
	shift
	lf-train -m "$T/m" -d "$T/shards" --lora-rank 4 --max-steps 2 --save-steps 1 --learning-rate 0.01 \
		--dump-grads "$T/$name.safetensors" "$@" -o "$T/$name" 2>/dev/null
}
noise() {
	noise_runs plain && noise_runs nef --neftune-noise-alpha 5 && noise_runs nef2 --neftune-noise-alpha 5 &&
		noise_runs drop --lora-dropout 0.3 && noise_runs drop2 --lora-dropout 0.3 &&
		! cmp -s "$T/plain/adapter_model.safetensors" "$T/nef/adapter_model.safetensors" &&
		! cmp -s "$T/plain/adapter_model.safetensors" "$T/drop/adapter_model.safetensors" &&
		cmp "$T/nef/adapter_model.safetensors" "$T/nef2/adapter_model.safetensors" &&
		cmp "$T/drop/adapter_model.safetensors" "$T/drop2/adapter_model.safetensors"
}
check "NEFTune and LoRA dropout change training and repeat exactly with the same seed" noise
resume_noise() {
	mkdir -p "$T/dropr" && cp -r "$T/drop/checkpoint-1" "$T/dropr/" &&
		lf-train -m "$T/m" -d "$T/shards" --lora-rank 4 --max-steps 2 --save-steps 1 --learning-rate 0.01 \
			--lora-dropout 0.3 -o "$T/dropr" 2>/dev/null &&
		cmp "$T/drop/adapter_model.safetensors" "$T/dropr/adapter_model.safetensors"
}
check "a run with LoRA dropout resumes to the same adapter (the masks are a function of the step)" resume_noise
adapter_dropout() {
	lf-train -m "$T/m" -d "$T/shards" --adapter-name-or-path "$T/drop" --lora-dropout 0.1 --max-steps 1 \
		-o "$T/dropmore" 2>"$T/dropmore.err" && grep -q "lora_dropout 0.3 is kept" "$T/dropmore.err" &&
		grep -q '"lora_dropout": 0.3' "$T/dropmore/adapter_config.json" &&
		mkdir -p "$T/badrop" && cp "$T/drop/adapter_model.safetensors" "$T/badrop/" &&
		sed 's/"lora_dropout": 0.3/"lora_dropout": 1.5/' "$T/drop/adapter_config.json" >"$T/badrop/adapter_config.json" &&
		! lf-train -m "$T/m" -d "$T/shards" --adapter-name-or-path "$T/badrop" --max-steps 1 -o "$T/badropo" \
			2>"$T/badrop.err" && grep -q "badrop/adapter_config.json: field 'lora_dropout': 1.5 is not in" \
			"$T/badrop.err" && test ! -e "$T/badropo/adapter_model.safetensors"
}
check "--adapter-name-or-path keeps the adapter's lora_dropout as PEFT does (a different one gets a note; a bad one an error)" adapter_dropout
eval_clean() {
	a=$(sed -n 's/.*"eval_loss": \([0-9.e-]*\).*/\1/p' "$T/nef/all_results.json")
	b=$(lf-eval -m "$T/m" --adapter-name-or-path "$T/nef" --task perplexity --input "$T/shards" |
		sed 's/.*"loss":\([0-9.e-]*\).*/\1/')
	echo "$a $b"
	awk -v a="$a" -v b="$b" 'BEGIN { d = a - b; exit !(a > 0 && d < 1e-5 && d > -1e-5) }'
}
check "evaluation runs without the noise: eval_loss equals lf-eval's" eval_clean
dora() {
	lf-train -m "$T/m" -d "$T/shards" --use-dora --lora-rank 4 --max-steps 2 --learning-rate 0.01 -o "$T/dora" \
		2>/dev/null && grep -q '"use_dora": true' "$T/dora/adapter_config.json" &&
		test "$("$HELP/st-dump" read "$T/dora/adapter_model.safetensors" | grep -o lora_magnitude_vector | wc -l)" = 14 &&
		lf-merge -m "$T/m" -a "$T/dora" -o "$T/dora-merged" 2>/dev/null &&
		lf-train -m "$T/m" -d "$T/shards" --use-dora --lora-dropout 0.3 --lora-rank 4 --max-steps 2 \
			--learning-rate 0.01 -o "$T/dorad" 2>/dev/null &&
		! cmp -s "$T/dora/adapter_model.safetensors" "$T/dorad/adapter_model.safetensors"
}
check "--use-dora writes a DoRA adapter (a magnitude per module) that lf-merge merges; with --lora-dropout too" dora

extra() {
	lf-train -m "$T/m" -d "$T/shards" --lora-rank 4 --lora-target q_proj,v_proj --additional-target embed_tokens \
		--max-steps 2 --learning-rate 0.01 -o "$T/extra" 2>/dev/null &&
		"$HELP/st-dump" read "$T/extra/adapter_model.safetensors" |
		grep -q '"name":"base_model.model.model.embed_tokens.weight"' &&
		grep -A1 modules_to_save "$T/extra/adapter_config.json" | grep -q embed_tokens &&
		lf-eval -m "$T/m" --adapter-name-or-path "$T/extra" --task perplexity --input "$T/shards" >/dev/null
}
check "--additional-target embed_tokens: a trained copy in the adapter (PEFT's modules_to_save) lf-eval runs" extra

pissa() { # name options...
	name=$1
	shift
	lf-train -m "$T/m" -d "$T/shards" --pissa-init --pissa-convert --lora-rank 4 --max-steps 4 \
		--learning-rate 0.01 "$@" -o "$T/$name" 2>/dev/null &&
		test -s "$T/$name/pissa_init/adapter_model.safetensors" &&
		grep -q '"r": 8' "$T/$name/pissa_converted/adapter_config.json" &&
		grep -q '"init_lora_weights": "pissa_niter_16"' "$T/$name/adapter_config.json" &&
		a=$(sed -n 's/.*"eval_loss": \([0-9.e-]*\).*/\1/p' "$T/$name/all_results.json") &&
		b=$(lf-eval -m "$T/m" --adapter-name-or-path "$T/$name/pissa_converted" --task perplexity \
			--input "$T/shards" | sed 's/.*"loss":\([0-9.e-]*\).*/\1/') &&
		echo "$a $b" && awk -v a="$a" -v b="$b" 'BEGIN { d = a - b; exit !(d < 1e-5 && d > -1e-5) }'
}
check "PiSSA: the converted adapter on the original base computes what training saw (eval loss equal)" pissa pissa
check "PiSSA with --additional-target embed_tokens: the trained copy goes into pissa_converted/ (eval loss equal)" \
	pissa pissax --lora-target q_proj,v_proj --additional-target embed_tokens
check "PiSSA with --use-dora: the converted DoRA adapter is exact on the original base (eval loss equal)" \
	pissa pissad --use-dora
check "the raw PiSSA adapter (for the residual base) is refused, pointing at pissa_converted" \
	fails 1 "use the converted adapter" lf-eval -m "$T/m" --adapter-name-or-path "$T/pissa" --task perplexity \
	--input "$T/shards"

# what inference reads: the training template as chat_template (where
# LLaMA-Factory writes it) and its stop words among the eos ids
TOKS=$SHARED/../tokenizers
lf-init -t llama --hidden-size 16 --intermediate-size 32 --tokenizer "$TOKS/llama3" -o "$T/l3" 2>/dev/null
for tpl in llama3 alpaca; do
	lf-template -t $tpl --dataset-dir "$SHARED" --dataset identity --max-samples 4 2>/dev/null |
		lf-tokenize --tokenizer "$T/l3" 2>/dev/null | lf-pack --cutoff-len 32 -o "$T/l3-$tpl" 2>/dev/null
	lf-train -m "$T/l3" -d "$T/l3-$tpl" --lora-rank 2 --max-steps 1 -o "$T/l3run-$tpl" 2>/dev/null
done
chat_files() {
	lf-template -t alpaca --jinja "$T/l3" >"$T/alpaca.jinja" 2>/dev/null &&
	"$LF_PYTHON" -c "
import json, sys
t = '$T'
base = json.load(open(t + '/l3/tokenizer_config.json'))['chat_template']
kept = json.load(open(t + '/l3run-llama3/tokenizer_config.json'))['chat_template']
written = json.load(open(t + '/l3run-alpaca/tokenizer_config.json'))['chat_template']
gen = json.load(open(t + '/l3run-llama3/generation_config.json'))['eos_token_id']
print(gen)
sys.exit(not (kept == base and written == open(t + '/alpaca.jinja').read().rstrip('\\n') and written != base
              and isinstance(gen, list) and 128009 in gen))
"
}
check "outputs carry the training template: alpaca's Jinja replaces the chat_template, llama3's keeps it; <|eot_id|> joins eos" chat_files

# reports: TensorBoard event files tensorboard reads, LLaMA-Factory's loss plots
reports() {
	lf-train -m "$T/m" -d "$T/shards" --lora-rank 4 --max-steps 6 --logging-steps 2 --eval-steps 3 \
		--report-to tensorboard --plot-loss -o "$T/rep" 2>/dev/null &&
		test -s "$T/rep/training_loss.png" && test -s "$T/rep/training_eval_loss.png" &&
		"$LF_PYTHON" -c "
import glob, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
files = glob.glob('$T/rep/runs/*/events.out.tfevents.*')
ea = EventAccumulator(files[0]); ea.Reload()
tags = ea.Tags()['scalars']
loss = [(e.step, round(e.value, 4)) for e in ea.Scalars('train/loss')]
print(tags, loss)
need = {'train/loss', 'train/grad_norm', 'train/learning_rate', 'train/epoch', 'eval/loss'}
sys.exit(not (len(files) == 1 and need <= set(tags) and [s for s, _ in loss] == [2, 4, 6] and
              [s.step for s in ea.Scalars('eval/loss')] == [3, 6]))
"
}
check "--report-to tensorboard: the Trainer's tags at the right steps (read by tensorboard); --plot-loss: PNGs" reports
check "--report-to wandb is refused, naming it" fails 2 "'wandb' is not none or tensorboard" \
	lf-train -m "$T/m" -d "$T/shards" --report-to wandb -o "$T/x"

# errors
check "no --data: a usage error" fails 2 "required" lf-train -m "$T/m" -o "$T/x"
check "an unknown fine-tuning type is named" fails 2 "'oft' is not full" \
	lf-train -m "$T/m" -d "$T/shards" --finetuning-type oft -o "$T/x"
check "--pissa-convert without --pissa-init is a usage error" fails 2 "it needs --pissa-init" \
	lf-train -m "$T/m" -d "$T/shards" --pissa-convert -o "$T/x"
# lr_scheduler_kwargs: the learning rates logged against transformers'
# get_scheduler (tests/golden/optim.json's schedules with kwargs)
sched_kwargs() {
	"$LF_PYTHON" - "$T" "$ROOT/tests/golden/optim.json" <<'PY'
import json, subprocess, sys
T, gold = sys.argv[1], json.load(open(sys.argv[2]))
cases = [e for e in gold["schedules"] if e["kwargs"]]
bad = []
for i, e in enumerate(cases):
    w = e["warmup_arg"]
    warm = ["--warmup-steps", str(w["warmup_steps"])] if "warmup_steps" in w else ["--warmup-ratio", str(w["warmup_ratio"])]
    out = "%s/sk%d" % (T, i)
    if i == 0:  # the recipe form: a YAML mapping under lr_scheduler_kwargs
        with open(out + ".yaml", "w") as f:
            f.write("lr_scheduler_type: %s\nlr_scheduler_kwargs:\n" % e["type"])
            f.write("".join("  %s: %s\n" % (k, v) for k, v in e["kwargs"].items()))
        how = ["--config", out + ".yaml"]
    else:
        how = ["--lr-scheduler-type", e["type"], "--lr-scheduler-kwargs", json.dumps(e["kwargs"])]
    subprocess.run(["lf-train", "-m", T + "/m", "-d", T + "/shards", "--lora-rank", "2", "--per-device-train-batch-size",
                    "1", "--max-steps", str(e["total_steps"]), "--learning-rate", repr(e["base_lr"]), "--logging-steps",
                    "1", "--save-steps", "0", "-o", out] + warm + how, check=True, stderr=subprocess.DEVNULL)
    lrs = [json.loads(l)["lr"] for l in open(out + "/trainer_log.jsonl") if '"lr"' in l]
    if len(lrs) != e["total_steps"] or any(abs(a - b) > 1e-9 * e["base_lr"] for a, b in zip(lrs, e["lr"])):
        bad.append((e["type"], e["kwargs"], lrs[:4], e["lr"][:4]))
print(len(cases), "schedules", bad[:2])
sys.exit(1 if bad else 0)
PY
}
check "--lr-scheduler-kwargs (and a recipe's lr_scheduler_kwargs mapping): every lr as transformers' get_scheduler" \
	sched_kwargs
check "--lr-scheduler-kwargs names a key the schedule does not take" fails 2 "'power' is not a parameter" \
	lf-train -m "$T/m" -d "$T/shards" --lr-scheduler-type cosine --lr-scheduler-kwargs '{"power": 2}' -o "$T/x"
check "--lr-scheduler-kwargs that is not a JSON object is a usage error" fails 2 "not a JSON object" \
	lf-train -m "$T/m" -d "$T/shards" --lr-scheduler-kwargs '[1' -o "$T/x"
check "a recipe key lf-train does not build yet is named" sh -c '
	printf "use_galore: true\n" >"'"$T"'/bad.yaml"
	lf-train --config "'"$T"'/bad.yaml" -m "'"$T"'/m" -d "'"$T"'/shards" -o "'"$T"'/x" 2>&1 | grep -q "use_galore"'
check "an unknown lora target is named" fails 2 "'qq_proj' is not a linear module" \
	lf-train -m "$T/m" -d "$T/shards" --lora-target q_proj,qq_proj -o "$T/x"
lf-template -t qwen --dataset-dir "$SHARED" --dataset kto_en_demo --stage kto --max-samples 4 2>/dev/null |
	lf-tokenize --tokenizer "$T/m" 2>/dev/null | lf-pack -o "$T/kto" 2>/dev/null
check "kto shards are refused, naming their kind" fails 1 "shards of kto examples" \
	lf-train -m "$T/m" -d "$T/kto" -o "$T/x"
check "--stage pt on sft shards is refused" fails 1 "sft shards, but --stage pt" \
	lf-train -m "$T/m" -d "$T/shards" --stage pt -o "$T/x"
printf '%s\n' '{"input_ids": [1, 2, 300], "labels": [-100, 2, 300]}' >"$T/big.jsonl"
"$HELP/shard-from-jsonl" sft train 16 400 "$T/big.jsonl" "$T/big.shard"
check "a token id outside the model's vocabulary names the micro-batch and the id" \
	fails 1 "micro-batch 0: row 0: token id 300 is outside the vocabulary" \
	lf-train -m "$T/m" -d "$T/big.shard" --max-steps 1 -o "$T/x"

# lf-train starts itself again with OMP_WAIT_POLICY=passive; where binding
# is asked for, libgomp has bound the first process's thread to one place by
# then, and the new process must still get every place (it once put all its
# threads on the first CPU)
if [ "$(env -u OMP_NUM_THREADS nproc)" -ge 2 ]; then
	check "OMP_PROC_BIND=true: lf-train's 2 threads run bound to 2 different CPUs" sh -c '
		OMP_NUM_THREADS=2 OMP_PROC_BIND=true OMP_DISPLAY_AFFINITY=true OMP_AFFINITY_FORMAT="bound to %A" \
			lf-train -m "'"$T"'/m" -d "'"$T"'/shards" --max-steps 1 -o "'"$T"'/bind" 2>&1 >/dev/null |
			grep "^bound to" | sort -u >"'"$T"'/bound"
		cat "'"$T"'/bound"; test "$(wc -l <"'"$T"'/bound")" = 2'
fi
