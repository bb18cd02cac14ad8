#!/bin/sh
# Tool tests for lf-template: inputs, datasets, bad records, outputs, recipes.
. tests/lib.sh

# ---- the program ----
check "--help and --version exit 0" sh -c 'lf-template --help | grep -q -- --template && lf-template --version | grep -q "lf-template (lf)"'
check "--list-templates lists every template the foundation names" sh -c '
	l=$(lf-template --list-templates | cut -f1)
	for t in default empty alpaca vicuna llama2 llama3 mistral qwen chatml qwen3 qwen3_nothink gemma gemma3 \
		chatglm3 phi yi baichuan2 deepseek deepseek3 intern2 cohere falcon zephyr yuan; do
		echo "$l" | grep -qx "$t" || { echo "missing $t"; exit 1; }
	done'
check "every active lf-template key of the owner table is an option" sh -c '
	lf-template --recipe-keys | awk -F"\t" "\$2 == \"lf-template\" && \$4 == \"active\" {print \$1}" | while read k; do
		lf-template --help | grep -q -- "--$(echo $k | tr _ -)" || { echo "no option for $k"; exit 1; }
	done'
check "no input is a usage error" fails 2 "no input" lf-template -t qwen

# ---- the shared datasets: every row renders, as LLaMA-Factory keeps them all ----
count_rows() { # file -> rows as LLaMA-Factory's loader counts them
	python3 -c '
import json, sys
p = sys.argv[1]
if p.endswith(".txt"):
    print(len(open(p, newline=None).read().splitlines()))
elif p.endswith(".jsonl"):
    print(sum(1 for l in open(p) if l.strip()))
else:
    print(len(json.load(open(p))))' "$1"
}
for ds in alpaca_en_demo:alpaca_en_demo.json:sft identity:identity.json:sft \
	glaive_toolcall_en_demo:glaive_toolcall_en_demo.json:sft dpo_en_demo:dpo_en_demo.json:rm \
	kto_en_demo:kto_en_demo.json:kto c4_demo:c4_demo.jsonl:pt wiki_demo:wiki_demo.txt:pt; do
	name=${ds%%:*}; rest=${ds#*:}; file=${rest%%:*}; stage=${rest#*:}
	check "shared dataset $name: one record per row ($stage)" sh -c "
		n=\$(lf-template -t qwen3 --dataset-dir '$SHARED' --dataset $name --stage $stage 2>/dev/null | lf-inspect --count)
		want=\$(count_rows() { :; }; true)
		[ \"\$n\" = \"$(count_rows "$SHARED/$file")\" ] || { echo \"got \$n records\"; exit 1; }"
done

# ---- bad records: skipped with a warning naming file, record and reason ----
cat >"$T/bad.json" <<'JSON'
[
 {"instruction": "ok", "input": "", "output": "fine"},
 {"input": "no instruction", "output": "x"},
 "not an object",
 {"instruction": "history", "output": "x", "history": [["only one"]]},
 {"instruction": 5, "output": "x"},
 {"instruction": "no output"},
 {"instruction": "also ok", "output": "fine"}
]
JSON
check "bad rows are skipped with a warning naming file, record and reason" sh -c '
	lf-template -t qwen --columns prompt=instruction,query=input,response=output,history=history "'"$T"'/bad.json" 2>"'"$T"'/err" | lf-inspect --count >"'"$T"'/n"
	[ "$(cat "'"$T"'/n")" = 2 ] &&
	grep -q "bad.json: record 1: missing column .instruction. (skipped)" "'"$T"'/err" &&
	grep -q "bad.json: record 2: not a JSON object" "'"$T"'/err" &&
	grep -q "bad.json: record 3: column .history.: item 0 is not a \[prompt, response\] pair" "'"$T"'/err" &&
	grep -q "bad.json: record 4: column .instruction. is not a string" "'"$T"'/err" &&
	grep -q "bad.json: record 5: missing column for the response" "'"$T"'/err" &&
	grep -q "2 records from 1 dataset (5 skipped)" "'"$T"'/err"'
check "skipped records are counted in the trailer" sh -c '
	lf-template -t qwen --columns prompt=instruction,query=input,response=output,history=history "'"$T"'/bad.json" 2>/dev/null |
	lf-inspect --trailer | grep -q "\"skipped\":5"'
check "--strict stops at the first bad record with file, record and field" \
	fails 1 "lf-template: error: $T/bad.json: record 1: missing column 'instruction'" \
	lf-template -t qwen --strict -o "$T/strict.lfs" "$T/bad.json"
check "-o is all-or-nothing: a failed run leaves no file and no temporary" sh -c '
	! ls "'"$T"'"/strict.lfs* 2>/dev/null'
check "a failure upstream reaches the next tool through the pipe" sh -c '
	lf-template -t qwen --strict "'"$T"'/bad.json" 2>/dev/null | lf-inspect >/dev/null 2>"'"$T"'/err"; rc=$?
	[ $rc = 1 ] && grep -q "failed after 1 records: .*record 1: missing column" "'"$T"'/err"'
check "a run with no valid record fails" fails 1 "no valid records" sh -c \
	"echo '[{\"input\": \"x\"}]' | lf-template -t qwen -o '$T/none.lfs' -"
check "the summary and every skip go to --log as JSON lines" sh -c '
	lf-template -t qwen --columns prompt=instruction,query=input,response=output,history=history --log "'"$T"'/log.jsonl" "'"$T"'/bad.json" 2>/dev/null >/dev/null
	python3 -c "
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
assert sum(e[\"event\"] == \"skip\" for e in ev) == 5, ev
s = [e for e in ev if e[\"event\"] == \"summary\"][0]
assert s[\"records\"] == 2 and s[\"skipped\"] == 5
" "'"$T"'/log.jsonl"'

# ---- input files ----
printf 'instruction,input,output\n"a, quoted","",one\n"multi\nline","x ""q""",two\n' >"$T/d.csv"
check "csv: quoted fields, embedded newlines and quotes" sh -c '
	lf-template -t empty "'"$T"'/d.csv" 2>/dev/null | lf-inspect | python3 -c "
import json, sys
r = [json.loads(l) for l in sys.stdin]
assert [x[\"text\"] for x in r] == [\"a, quotedone\", \"multi\nline\nx \\\"q\\\"two\"], r
"'
printf '{"instruction": "a", "output": "b"}\n\n{"instruction": "c", "output": "d"}\n' >"$T/l.jsonl"
cp "$T/l.jsonl" "$T/lines.json"
check "jsonl, and JSON lines in a .json file" sh -c '
	[ "$(lf-template -t empty "'"$T"'/l.jsonl" 2>/dev/null | lf-inspect --count)" = 2 ] &&
	[ "$(lf-template -t empty "'"$T"'/lines.json" 2>/dev/null | lf-inspect --count)" = 2 ]'
check "stdin: JSON by default, --file-type for others" sh -c '
	[ "$(lf-template -t empty - <"'"$T"'/bad.json" 2>/dev/null | lf-inspect --count)" = 3 ] &&
	[ "$(lf-template -t empty --file-type jsonl - <"'"$T"'/l.jsonl" 2>/dev/null | lf-inspect --count)" = 2 ]'
printf 'doc one\r\ndoc two\rdoc three\n\nlast' >"$T/docs.txt"
check "txt: one document per line (LF, CRLF or CR ends a line), empty lines kept, as datasets reads them" sh -c '
	lf-template --stage pt --columns prompt=text "'"$T"'/docs.txt" 2>/dev/null | lf-inspect | python3 -c "
import json, sys
t = [json.loads(l)[\"text\"] for l in sys.stdin]
assert t == [\"doc one<eos>\", \"doc two<eos>\", \"doc three<eos>\", \"<eos>\", \"last<eos>\"], t
"'
mkdir -p "$T/folder"
printf '[{"instruction": "second", "output": "2"}]' >"$T/folder/b.json"
printf '[{"instruction": "first", "output": "1"}]' >"$T/folder/a.json"
check "a folder is read file by file in name order" sh -c '
	lf-template -t empty "'"$T"'/folder" 2>/dev/null | lf-inspect | python3 -c "
import json, sys
t = [json.loads(l)[\"text\"] for l in sys.stdin]
assert t == [\"first1\", \"second2\"], t
"'
check "tar.gz, zip and .json.gz archives are read directly" sh -c '
	cd "'"$T"'" && tar czf data.tar.gz -C folder a.json b.json && gzip -c folder/a.json >one.json.gz &&
	python3 -c "
import zipfile
with zipfile.ZipFile(\"data.zip\", \"w\") as z:
    z.write(\"folder/a.json\", \"a.json\"); z.write(\"folder/b.json\", \"b.json\")
" &&
	[ "$(lf-template -t empty data.tar.gz 2>/dev/null | lf-inspect --count)" = 2 ] &&
	[ "$(lf-template -t empty data.zip 2>/dev/null | lf-inspect --count)" = 2 ] &&
	[ "$(lf-template -t empty one.json.gz 2>/dev/null | lf-inspect --count)" = 1 ]'
touch "$T/x.parquet"
check "parquet is refused clearly" fails 1 "parquet files are not supported" lf-template -t qwen "$T/x.parquet"
check "a missing file is an error naming it" fails 1 "$T/missing.json: cannot open" lf-template -t qwen "$T/missing.json"
printf '[{"instruction": "a", "output": ' >"$T/broken.json"
check "a broken JSON file is an error with its line and column" fails 1 "broken.json: line 1 column" \
	lf-template -t qwen "$T/broken.json"

# ---- dataset_info.json ----
mkdir -p "$T/info"
cp "$T/bad.json" "$T/info/local.json"
cat >"$T/info/dataset_info.json" <<'JSON'
{
 "local": {"file_name": "local.json"},
 "sampled": {"file_name": "local.json", "num_samples": 9},
 "hub": {"hf_hub_url": "org/name"},
 "pictures": {"file_name": "local.json", "columns": {"prompt": "instruction", "images": "images"}}
}
JSON
check "a hub dataset is refused: lf reads local files" fails 1 "lf reads local files only" \
	lf-template -t qwen --dataset-dir "$T/info" --dataset hub
check "an unknown dataset name is an error" fails 1 "no dataset named 'nope'" \
	lf-template -t qwen --dataset-dir "$T/info" --dataset nope
check "multimodal columns are refused clearly" fails 1 "image, video and audio columns are not supported yet" \
	lf-template -t qwen --dataset-dir "$T/info" --dataset pictures
check "num_samples resamples with replacement, deterministic per --seed" sh -c '
	a=$(lf-template -t qwen --dataset-dir "'"$T"'/info" --dataset sampled --seed 1 2>/dev/null | lf-inspect | md5sum)
	b=$(lf-template -t qwen --dataset-dir "'"$T"'/info" --dataset sampled --seed 1 2>/dev/null | lf-inspect | md5sum)
	c=$(lf-template -t qwen --dataset-dir "'"$T"'/info" --dataset sampled --seed 2 2>/dev/null | lf-inspect | md5sum)
	n=$(lf-template -t qwen --dataset-dir "'"$T"'/info" --dataset sampled 2>&1 >/dev/null | grep -o "[0-9]* skipped")
	[ "$a" = "$b" ] && [ "$a" != "$c" ] &&
	lf-template -t qwen --dataset-dir "'"$T"'/info" --dataset sampled 2>/dev/null | lf-inspect | grep -q source_row'
check "--max-samples keeps the first N rows of each dataset" sh -c '
	[ "$(lf-template -t qwen --dataset-dir "'"$SHARED"'" --dataset identity,alpaca_en_demo --max-samples 7 | lf-inspect --count)" = 14 ]'

# ---- record types and their checks ----
check "a preference dataset needs stage rm or dpo" fails 2 "holds preference pairs" \
	lf-template -t qwen --dataset-dir "$SHARED" --dataset dpo_en_demo --stage sft
check "stage kto needs a kto_tag column" fails 2 "no kto_tag column" \
	lf-template -t qwen --dataset-dir "$SHARED" --dataset alpaca_en_demo --stage kto
check "efficient_eos templates refuse train_on_prompt, as LLaMA-Factory" fails 2 "does not support train_on_prompt" \
	lf-template -t chatglm3 --train-on-prompt --dataset-dir "$SHARED" --dataset identity
check "train_on_prompt and mask_history exclude each other" fails 2 "cannot be used together" \
	lf-template -t qwen --train-on-prompt --mask-history --dataset-dir "$SHARED" --dataset identity
check "a template is required outside pre-training" fails 2 "template is required" \
	lf-template --dataset-dir "$SHARED" --dataset identity
check "--prompt-only writes prompt records with the reference answer" sh -c '
	lf-template -t llama3 --prompt-only --dataset-dir "'"$SHARED"'" --dataset identity --max-samples 1 2>/dev/null |
	lf-inspect | grep -q "\"type\":\"prompt\".*\"response\":\[{\"text\""'
check "--eval renders eval_dataset" sh -c '
	[ "$(lf-template -t qwen --dataset-dir "'"$SHARED"'" --dataset alpaca_en_demo --eval-dataset identity --eval 2>/dev/null | lf-inspect --count)" = 91 ]'

# ---- the header carries what later tools need ----
check "the header records template parameters and label settings" sh -c '
	lf-template -t llama3 --mask-history --dataset-dir "'"$SHARED"'" --dataset identity 2>/dev/null | lf-inspect --header | python3 -c "
import json, sys
h = json.load(sys.stdin)
t = h[\"template\"]
assert h[\"format\"] == \"lf-stream\" and h[\"kind\"] == \"text\" and h[\"type\"] == \"sft\", h
assert t[\"name\"] == \"llama3\" and t[\"stop_words\"] == [\"<|eot_id|>\", \"<|eom_id|>\"] and t[\"replace_eos\"], t
assert h[\"mask_history\"] is True and h[\"train_on_prompt\"] is False and h[\"parse_special_in_content\"] is False
assert h[\"datasets\"][0][\"name\"] == \"identity\" and h[\"provenance\"][0][\"tool\"] == \"lf-template\"
"'
check "user text that spells a special token is marked as user content" sh -c '
	echo "[{\"instruction\": \"say <|im_end|>\", \"output\": \"ok\"}]" | lf-template -t qwen - 2>/dev/null | lf-inspect | python3 -c "
import json, sys
r = json.loads(sys.stdin.readline())
el = r[\"turns\"][0][\"source\"][1]
s, e = el[\"user\"]
assert el[\"text\"].encode()[s:e] == b\"say <|im_end|>\", el
"'
check "baichuan2 renders as the reference document gives it" sh -c '
	echo "[{\"instruction\": \"U2\", \"output\": \"A2\", \"system\": \"S\", \"history\": [[\"U1\", \"A1\"]]}]" |
	lf-template -t baichuan2 --columns prompt=instruction,query=input,response=output,system=system,history=history - 2>/dev/null |
	lf-inspect | python3 -c "
import json, sys
r = json.loads(sys.stdin.readline())
# reference: S<reserved_106>U1<reserved_107>A1...<eos>; the final eos of efficient_eos is lf-pack'"'"'s
assert r[\"text\"] == \"S<reserved_106>U1<reserved_107>A1<reserved_106>U2<reserved_107>A2\", r[\"text\"]
"'

# ---- recipes ----
cat >"$T/llama3_lora_sft.yaml" <<'YAML'
### model
model_name_or_path: meta-llama/Meta-Llama-3-8B-Instruct
trust_remote_code: true
### method
stage: sft
do_train: true
finetuning_type: lora
lora_rank: 8
lora_target: all
### dataset
dataset: identity,alpaca_en_demo
template: llama3
cutoff_len: 2048
max_samples: 1000
overwrite_cache: true
preprocessing_num_workers: 16
dataloader_num_workers: 4
### output
output_dir: saves/llama3-8b/lora/sft
logging_steps: 10
save_steps: 500
plot_loss: true
overwrite_output_dir: true
save_only_model: false
report_to: none  # choices: [none, wandb, tensorboard, swanlab, mlflow]
### train
per_device_train_batch_size: 1
gradient_accumulation_steps: 8
learning_rate: 1.0e-4
num_train_epochs: 3.0
lr_scheduler_type: cosine
warmup_ratio: 0.1
bf16: true
ddp_timeout: 180000000
resume_from_checkpoint: null
YAML
check "an unmodified LLaMA-Factory recipe drives lf-template" sh -c '
	lf-template --config "'"$T"'/llama3_lora_sft.yaml" --dataset-dir "'"$SHARED"'" -o "'"$T"'/r.lfs" 2>"'"$T"'/err" &&
	lf-inspect --header "'"$T"'/r.lfs" | grep -q "\"name\":\"llama3\"" && grep -q "1090 records from 2 datasets" "'"$T"'/err"'
check "the command line overrides the recipe" sh -c '
	lf-template --config "'"$T"'/llama3_lora_sft.yaml" --dataset-dir "'"$SHARED"'" -t qwen 2>/dev/null | lf-inspect --header | grep -q "\"name\":\"qwen\""'
printf 'template: qwen\nlearning_rat: 1.0e-4\n' >"$T/typo.yaml"
check "an unknown recipe key is an error naming file, line and key" \
	fails 2 "typo.yaml: line 2: unknown key 'learning_rat'" lf-template --config "$T/typo.yaml" "$T/bad.json"
printf 'template: qwen\nimage_max_pixels: 1000\n' >"$T/mm.yaml"
check "a key lf-template owns but does not implement yet stops it" \
	fails 2 "key 'image_max_pixels' is not supported by lf-template yet" lf-template --config "$T/mm.yaml" "$T/bad.json"
printf 'template: qwen\nmask_history: yes\npush_to_hub: false\ntokenized_path: null\n' >"$T/own.yaml"
check "owned keys apply; false or null for unbuilt features asks nothing" sh -c '
	lf-template --config "'"$T"'/own.yaml" "'"$T"'/bad.json" 2>/dev/null | lf-inspect --header | grep -q "\"mask_history\":true"'
printf 'template: qwen\nmask_history: perhaps\n' >"$T/badval.yaml"
check "a bad value names the key" fails 2 "key 'mask_history': 'perhaps' is not a boolean" \
	lf-template --config "$T/badval.yaml" "$T/bad.json"

# ---- interruption and terminals ----
mkfifo "$T/slow.jsonl"
check "Ctrl-C while writing -o leaves neither the output nor its temporary" sh -c '
	( printf "{\"instruction\": \"a\", \"output\": \"b\"}\n"; sleep 5 ) >"'"$T"'/slow.jsonl" &
	writer=$!
	lf-template -t qwen -o "'"$T"'/int.lfs" "'"$T"'/slow.jsonl" 2>/dev/null &
	pid=$!
	sleep 0.5
	ls "'"$T"'"/int.lfs.tmp.* >/dev/null 2>&1 || { echo "no temporary while running"; kill $writer; exit 1; }
	kill -INT $pid; wait $pid; rc=$?
	kill $writer 2>/dev/null
	[ $rc -ne 0 ] && ! ls "'"$T"'"/int.lfs* 2>/dev/null'
if command -v script >/dev/null; then
	check "a binary stream is never written to a terminal" sh -c '
		script -qec "lf-template -t qwen \"'"$T"'/l.jsonl\"" /dev/null | grep -q "refusing to write a binary stream to a terminal"'
fi

# JSON array files are read element by element
printf '[{"instruction":"a]\\"}{","output":"b"} ,\n {"instruction":"c","output":"d[{"}, 7]' >"$T/arr.json"
t_arr() {
	[ "$(lf-template -t llama3 --format alpaca "$T/arr.json" 2>/dev/null | lf-inspect --count)" = 2 ] &&
	lf-template -t llama3 --format alpaca "$T/arr.json" 2>/dev/null | lf-inspect --head 1 | grep -q 'a]\\"}{'
}
check "a JSON array with brackets and quotes inside strings gives its rows; a bare value is skipped" t_arr
printf '[{"instruction":"x","output":"y"},\n  {"instruction": , "output":"z"}]' >"$T/bad1.json"
check "invalid JSON in an array element names its line and column" \
	fails 1 "bad1.json: line 2 column 19: invalid JSON" lf-template -t llama3 --format alpaca "$T/bad1.json"
printf '[{"instruction":"x","output":"y"}] junk' >"$T/bad2.json"
check "data after the array is an error" fails 1 "line 1 column 36: invalid JSON: data after the array" \
	lf-template -t llama3 --format alpaca "$T/bad2.json"
printf '[{"instruction":"x","output":"y"},' >"$T/bad3.json"
check "an array that is not closed is an error" fails 1 "the array is not closed" \
	lf-template -t llama3 --format alpaca "$T/bad3.json"
