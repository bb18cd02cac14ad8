#!/bin/sh
# Tool tests for lf-inspect: printing, counting, statistics, and refusing
# streams that are truncated, corrupted or not streams at all.
. tests/lib.sh

lf-template -t qwen3 --dataset-dir "$SHARED" --dataset glaive_toolcall_en_demo -o "$T/g.lfs" 2>/dev/null
lf-template --stage pt --dataset-dir "$SHARED" --dataset c4_demo -o "$T/pt.lfs" 2>/dev/null

check "--head N prints N JSON lines" sh -c '[ "$(lf-inspect --head 3 "'"$T"'/g.lfs" | wc -l)" = 3 ]'
check "each line is a JSON object with the record, its dataset and the rendered text" sh -c '
	lf-inspect --head 1 "'"$T"'/g.lfs" | python3 -c "
import json, sys
r = json.loads(sys.stdin.readline())
assert r[\"dataset_name\"] == \"glaive_toolcall_en_demo\" and r[\"type\"] == \"sft\" and r[\"row\"] == 0, r
assert r[\"text\"].startswith(\"<|im_start|>system\n\n\n# Tools\") and r[\"text\"].endswith(\"<|im_end|>\n\"), r[\"text\"][:80]
assert all(\"source\" in t and \"target\" in t for t in r[\"turns\"])
"'
check "--count reads the whole stream" sh -c '[ "$(lf-inspect --count <"'"$T"'/g.lfs")" = 300 ]'
check "--stats gives records, turns and lengths per dataset" sh -c '
	lf-inspect --stats "'"$T"'/g.lfs" | python3 -c "
import json, sys
s = json.load(sys.stdin)
d = s[\"datasets\"][0]
assert s[\"type\"] == \"sft\" and d[\"name\"] == \"glaive_toolcall_en_demo\" and d[\"records\"] == 300, s
assert d[\"turns\"] > 300 and d[\"min_text_bytes\"] <= d[\"mean_text_bytes\"] <= d[\"max_text_bytes\"], d
"'
check "--header and --trailer print the stream's ends" sh -c '
	lf-inspect --header "'"$T"'/g.lfs" | grep -q "\"format\":\"lf-stream\"" &&
	lf-inspect --trailer "'"$T"'/g.lfs" | grep -q "\"records\":300,\"skipped\":0,\"status\":\"ok\""'
check "pre-training text ends with the eos" sh -c 'lf-inspect --head 1 "'"$T"'/pt.lfs" | grep -q "<eos>\"}$"'
check "with replace_eos the eos is written as the template's stop word" sh -c '
	lf-inspect --head 1 "'"$T"'/g.lfs" | grep -q "<|im_end|>"'
check "--tokenizer writes bos and eos as the tokenizer's tokens" sh -c '
	lf-template -t llama2 --dataset-dir "'"$SHARED"'" --dataset identity 2>/dev/null |
	lf-inspect --head 1 --tokenizer "'"$SHARED"'/../tokenizers/llama2" | grep -q "\"text\":\"<s>\[INST\]"'

size=$(wc -c <"$T/g.lfs")
head -c $((size / 2)) "$T/g.lfs" >"$T/half.lfs"
check "a truncated stream is an error naming the record and byte offset" \
	fails 1 "stream record [0-9]* (byte offset [0-9]*): input ends inside it" lf-inspect --count "$T/half.lfs"
head -c $((size - 5)) "$T/g.lfs" >"$T/notrailer.lfs"
check "a stream cut in its trailer is an error" fails 1 "error" lf-inspect --count "$T/notrailer.lfs"
check "a JSON file is not a stream" fails 1 "not an lf stream" lf-inspect "$SHARED/identity.json"
head -c 5000 /dev/urandom >"$T/random.bin"
check "random bytes are refused without a crash" fails 1 "lf-inspect: error:" lf-inspect "$T/random.bin"
check "empty input is an error" fails 1 "empty input" sh -c 'lf-inspect </dev/null'
check "a missing stream file is an error" fails 1 "cannot open" lf-inspect "$T/none.lfs"
check "two streams at once is a usage error" fails 2 "one STREAM" lf-inspect "$T/g.lfs" "$T/pt.lfs"
check "--head 0 prints nothing; a negative N is a usage error" sh -c '
	[ -z "$(lf-inspect --head 0 "'"$T"'/g.lfs")" ] && ! lf-inspect --head -1 "'"$T"'/g.lfs" 2>/dev/null'
