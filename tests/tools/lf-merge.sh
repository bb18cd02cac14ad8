#!/bin/sh
# lf-merge: a merged model computes what base + adapter compute (f32 base),
# keeps the base's dtype, and refuses a mismatched base or an output folder
# it did not make.
. tests/lib.sh
HELP=${LF_UNITS:-$ROOT/build/dyn/tests}/helpers
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

lf-init -t qwen2 --hidden-size 32 --intermediate-size 64 -o "$T/m" 2>/dev/null
lf-init -t qwen2 --hidden-size 32 --intermediate-size 64 --dtype bfloat16 -o "$T/m16" 2>/dev/null
lf-init -t qwen2 --hidden-size 48 --intermediate-size 64 -o "$T/other" 2>/dev/null
lf-template -t qwen --dataset-dir "$SHARED" --dataset identity --max-samples 8 2>/dev/null |
	lf-tokenize --tokenizer "$T/m" 2>/dev/null | lf-pack --cutoff-len 64 -o "$T/shards" 2>/dev/null
lf-train -m "$T/m" -d "$T/shards" --lora-rank 4 --learning-rate 0.05 --max-steps 4 -o "$T/lora" 2>/dev/null
printf '%s\n' '{"ids": [1, 20, 30, 40, 50, 60, 70, 80, 90]}' >"$T/ids.jsonl"

check "the merged model's logits are base + adapter's (f32 base, within 1e-5 of their scale)" sh -c '
	lf-merge -m "'"$T"'/m" -a "'"$T"'/lora" -o "'"$T"'/merged" 2>/dev/null &&
	lf-eval -m "'"$T"'/merged" --task logits --input "'"$T"'/ids.jsonl" -o "'"$T"'/a.safetensors" &&
	lf-eval -m "'"$T"'/m" --adapter-name-or-path "'"$T"'/lora" --task logits --input "'"$T"'/ids.jsonl" \
		-o "'"$T"'/b.safetensors" &&
	lf-eval -m "'"$T"'/m" --task logits --input "'"$T"'/ids.jsonl" -o "'"$T"'/c.safetensors" &&
	'"$LF_PYTHON"' -c "
import sys
import numpy as np
from safetensors.numpy import load_file
a, b, c = (load_file(\"'"$T"'/%s.safetensors\" % n)[\"logits.0\"] for n in \"abc\")
scale = np.abs(b).max(); d = np.abs(a - b).max(); e = np.abs(b - c).max()
print(d, e, scale)
sys.exit(not (a.shape == b.shape and d <= 1e-5 * scale and e > 1e-3 * scale))
"'
dora_merge() { # case: a DoRA adapter of the training goldens, made by PEFT
	g=$ROOT/tests/golden/train
	lf-merge -m "$g/models/$1" -a "$g/cases/$1-dora/adapter-init" -o "$T/dm-$1" 2>/dev/null &&
	lf-eval -m "$T/dm-$1" --task logits --input "$T/ids.jsonl" -o "$T/dm-$1-a.safetensors" &&
	lf-eval -m "$g/models/$1" --adapter-name-or-path "$g/cases/$1-dora/adapter-init" --task logits \
		--input "$T/ids.jsonl" -o "$T/dm-$1-b.safetensors" &&
	"$LF_PYTHON" -c "
import sys
import numpy as np
from safetensors.numpy import load_file
a = load_file('$T/dm-$1-a.safetensors')['logits.0']; b = load_file('$T/dm-$1-b.safetensors')['logits.0']
print(np.abs(a - b).max(), np.abs(b).max())
sys.exit(not np.abs(a - b).max() <= 1e-5 * np.abs(b).max())
"
}
check "DoRA (PEFT's adapter on llama): lf-eval merged equals unmerged within 1e-5" dora_merge llama
check "DoRA on phi3's fused projections: merged equals unmerged" dora_merge phi3
check "the folder holds the config, the tokenizer and the provenance" sh -c '
	cd "'"$T"'/merged" && test -s config.json && test -s tokenizer.json && test -s model.safetensors &&
	grep -q "lf-merge" lf-merge.json'
check "a bf16 base gives a bf16 merged model" sh -c '
	lf-train -m "'"$T"'/m16" -d "'"$T"'/shards" --lora-rank 4 --max-steps 1 -o "'"$T"'/lora16" 2>/dev/null &&
	lf-merge -m "'"$T"'/m16" -a "'"$T"'/lora16" -o "'"$T"'/merged16" 2>/dev/null &&
	"'"$HELP"'/st-dump" read "'"$T"'/merged16/model.safetensors" | grep -q "\"dtype\":\"BF16\"" &&
	! "'"$HELP"'/st-dump" read "'"$T"'/merged16/model.safetensors" | grep -q "\"dtype\":\"F32\""'
check "merging again replaces lf-merge's own folder" \
	lf-merge -m "$T/m" -a "$T/lora" -o "$T/merged"
template_files() {
	lf-merge -m "$T/m" -a "$T/lora" -t alpaca -o "$T/merged-alpaca" 2>/dev/null &&
		lf-template -t alpaca --jinja "$T/m" >"$T/alpaca.jinja" 2>/dev/null &&
		"$LF_PYTHON" -c "
import json, sys
c = json.load(open('$T/merged-alpaca/tokenizer_config.json'))['chat_template']
sys.exit(c != open('$T/alpaca.jinja').read().rstrip(chr(10)))
" && cmp "$T/lora/tokenizer_config.json" "$T/merged/tokenizer_config.json"
}
check "--template writes that template as the chat_template; without it the adapter's tokenizer files go along" template_files
check "an adapter of another base is refused" fails 1 "adapter's base model" \
	lf-merge -m "$T/other" -a "$T/lora" -o "$T/x"
check "a folder lf-merge did not make is not overwritten" fails 1 "" \
	lf-merge -m "$T/m" -a "$T/lora" -o "$T/m"
check "... and the base model is intact" sh -c 'test -s "'"$T"'/m/model.safetensors" && test -s "'"$T"'/m/config.json"'
check "missing --adapter-name-or-path is a usage error" fails 2 "required" lf-merge -m "$T/m" -o "$T/x"
