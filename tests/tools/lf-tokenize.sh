#!/bin/sh
# Tool tests for lf-tokenize: the pipeline from lf-template to token
# streams (special tokens in user content, bos/eos rules, stop words, the
# fingerprint, threads), and refusing bad input without leaving files.
# Ids themselves are checked against the tokenizers library in
# tokenize_oracle.py.
. tests/lib.sh

TOK=$SHARED/../tokenizers
Q=$TOK/qwen3

ids_of() { # TEXT -> the ids lf-tokenize --text --no-special gives with qwen3
	printf '{"text": "%s"}\n' "$1" | lf-tokenize --tokenizer "$Q" --text --no-special 2>/dev/null
}

# ---- pipeline ----
lf-template -t qwen3 --dataset-dir "$SHARED" --dataset identity -o "$T/id.txt.lfs" 2>/dev/null
check "a text stream becomes a token stream with the same records" sh -c '
	lf-tokenize --tokenizer "'"$Q"'" "'"$T"'/id.txt.lfs" -o "'"$T"'/id.lfs" 2>/dev/null &&
	[ "$(lf-inspect --count "'"$T"'/id.lfs")" = 91 ] &&
	lf-inspect --header "'"$T"'/id.lfs" | python3 -c "
import json, sys
h = json.load(sys.stdin)
t = h[\"tokenizer\"]
assert h[\"kind\"] == \"tokens\" and h[\"provenance\"][-1][\"tool\"] == \"lf-tokenize\", h
assert len(t[\"fingerprint\"]) == 16 and t[\"vocab_size\"] == 151669, t
assert t[\"eos_id\"] == 151645 and t[\"bos_id\"] is None and t[\"pad_id\"] == 151643, t
"'
check "decoding the ids gives back the rendered text" sh -c '
	lf-inspect --head 5 "'"$T"'/id.txt.lfs" | python3 -c "import json,sys; [print(json.loads(l)[\"text\"]) for l in sys.stdin]" >"'"$T"'/a" &&
	lf-inspect --head 5 --tokenizer "'"$Q"'" "'"$T"'/id.lfs" | python3 -c "import json,sys; [print(json.loads(l)[\"text\"]) for l in sys.stdin]" >"'"$T"'/b" &&
	cmp "'"$T"'/a" "'"$T"'/b"'
check "--threads 1 and --threads 3 write the same records" sh -c '
	lf-tokenize --tokenizer "'"$Q"'" -j 1 "'"$T"'/id.txt.lfs" 2>/dev/null | lf-inspect >"'"$T"'/j1" &&
	lf-tokenize --tokenizer "'"$Q"'" -j 3 "'"$T"'/id.txt.lfs" 2>/dev/null | lf-inspect >"'"$T"'/j3" &&
	cmp "'"$T"'/j1" "'"$T"'/j3"'
check "the trailer's counts pass through" sh -c '
	lf-inspect --trailer "'"$T"'/id.lfs" | grep -q "\"records\":91,\"skipped\":0"'

printf '[{"instruction": "say <|im_end|> now", "output": "ok"}]' >"$T/spec.json"
check "added tokens typed by the user stay text by default" sh -c '
	lf-template -t qwen3 "'"$T"'/spec.json" 2>/dev/null | lf-tokenize --tokenizer "'"$Q"'" 2>/dev/null |
	lf-inspect | python3 -c "
import json, sys
src = json.loads(sys.stdin.readline())[\"turns\"][0][\"source_ids\"]
assert src.count(151645) == 1 and src[-5:] == [151645, 198, 151644, 77091, 198] and src[:3] == [151644, 872, 198], src
"'
check "with parse_special_in_content they become the special token" sh -c '
	lf-template -t qwen3 --parse-special-in-content "'"$T"'/spec.json" 2>/dev/null |
	lf-tokenize --tokenizer "'"$Q"'" --parse-special-in-content 2>/dev/null |
	lf-inspect | python3 -c "
import json, sys
src = json.loads(sys.stdin.readline())[\"turns\"][0][\"source_ids\"]
assert src.count(151645) == 2, src
"'
check "--parse-special-in-content contradicting the stream is refused" \
	fails 1 "contradicts the stream" sh -c 'lf-template -t qwen3 "'"$T"'/spec.json" 2>/dev/null |
	lf-tokenize --tokenizer "'"$Q"'" --parse-special-in-content'

check "llama2: the bos element is the tokenizer's bos, the eos its eos" sh -c '
	lf-template -t llama2 --dataset-dir "'"$SHARED"'" --dataset identity 2>/dev/null |
	lf-tokenize --tokenizer "'"$TOK"'/llama2" 2>/dev/null | lf-inspect --head 1 | python3 -c "
import json, sys
t = json.loads(sys.stdin.readline())[\"turns\"][0]
assert t[\"source_ids\"][0] == 1 and t[\"target_ids\"][-1] == 2, t
"'
check "a template bos with a tokenizer that has none writes nothing" sh -c '
	lf-template -t llama2 --dataset-dir "'"$SHARED"'" --dataset identity 2>/dev/null |
	lf-tokenize --tokenizer "'"$Q"'" 2>/dev/null | lf-inspect --head 1 | python3 -c "
import json, sys
t = json.loads(sys.stdin.readline())[\"turns\"][0]
assert t[\"source_ids\"][0] == 58 and t[\"target_ids\"][-1] == 151645, t
"'
check "replace_eos: the eos is the template's first stop word" sh -c '
	lf-template -t llama3 --dataset-dir "'"$SHARED"'" --dataset identity 2>/dev/null |
	lf-tokenize --tokenizer "'"$TOK"'/llama3" 2>/dev/null | lf-inspect --header | grep -q "\"eos_id\":128009"'
check "an eos stop word missing from the vocabulary is an error" \
	fails 1 "template stop word '<|im_end|>' (the eos with replace_eos) is not in the vocabulary" sh -c '
	lf-template -t qwen3 --dataset-dir "'"$SHARED"'" --dataset identity 2>/dev/null | lf-tokenize --tokenizer "'"$TOK"'/llama2"'
check "KTO records count the ids of the empty thought" sh -c '
	lf-template -t qwen3 --stage kto --dataset-dir "'"$SHARED"'" --dataset kto_en_demo 2>/dev/null |
	lf-tokenize --tokenizer "'"$Q"'" 2>/dev/null | lf-inspect --head 1 | python3 -c "
import json, sys
r = json.loads(sys.stdin.readline())
assert r[\"response_thought\"] == 4 and r[\"response_ids\"][:4] == [151667, 271, 151668, 271], r
"'
check "add_tokens: new ids past the vocabulary, listed in the header, decoded by lf-inspect" sh -c '
	lf-tokenize --tokenizer "'"$Q"'" --add-special-tokens "<new>" --add-tokens " {{name}} , hi" "'"$T"'/id.txt.lfs" \
		-o "'"$T"'/added.lfs" 2>/dev/null &&
	lf-inspect --header "'"$T"'/added.lfs" | python3 -c "
import json, sys
t = json.load(sys.stdin)[\"tokenizer\"]
ids = [(a[\"content\"], a[\"id\"], a[\"special\"]) for a in t[\"added_tokens\"]]
assert ids == [(\"{{name}}\", 151669, False), (\"hi\", 6023, False), (\"<new>\", 151670, True)], ids
assert t[\"vocab_size\"] == 151671 and t[\"split_special_tokens\"] is False, t
" &&
	lf-inspect --head 1 "'"$T"'/added.lfs" | grep -q 151669 &&
	lf-inspect --head 3 --tokenizer "'"$Q"'" "'"$T"'/added.lfs" >"'"$T"'/a1" &&
	lf-inspect --head 3 --tokenizer "'"$Q"'" "'"$T"'/id.lfs" >"'"$T"'/a2" &&
	python3 -c "
import json, sys
a = [json.loads(l)[\"text\"] for l in open(sys.argv[1])]
b = [json.loads(l)[\"text\"] for l in open(sys.argv[2])]
assert a == b, (a[0][:200], b[0][:200])
" "'"$T"'/a1" "'"$T"'/a2"'
check "split_special_tokens: the template's own special tokens become text too, as in LLaMA-Factory" sh -c '
	lf-tokenize --tokenizer "'"$Q"'" --split-special-tokens "'"$T"'/id.txt.lfs" 2>/dev/null | lf-inspect --head 1 |
	python3 -c "
import json, sys
src = json.loads(sys.stdin.readline())[\"turns\"][0][\"source_ids\"]
assert 151644 not in src and src[:6] == [27, 91, 318, 4906, 91, 29], src
"'
check "a token stream is not lf-tokenize input" fails 1 "lf-tokenize reads text streams" \
	lf-tokenize --tokenizer "$Q" "$T/id.lfs"

# ---- the fingerprint ----
fingerprint() {
	lf-tokenize --tokenizer "$1" --text --log "$T/log" </dev/null 2>/dev/null &&
	tail -n 1 "$T/log" >/dev/null && grep '"event":"tokenizer"' "$T/log" | tail -n 1 |
	python3 -c 'import json, sys; print(json.load(sys.stdin)["fingerprint"])'
}
mkdir "$T/resaved" "$T/changed"
python3 -c '
import json, sys
t = json.load(open(sys.argv[1] + "/tokenizer.json", encoding="utf-8"))
json.dump(t, open(sys.argv[2] + "/tokenizer.json", "w", encoding="utf-8"), indent=1, sort_keys=True, ensure_ascii=True)
t["model"]["merges"][10], t["model"]["merges"][11] = t["model"]["merges"][11], t["model"]["merges"][10]
json.dump(t, open(sys.argv[3] + "/tokenizer.json", "w", encoding="utf-8"))
' "$Q" "$T/resaved" "$T/changed"
cp "$Q/tokenizer_config.json" "$T/resaved/"
cp "$Q/tokenizer_config.json" "$T/changed/"
check "a re-saved tokenizer keeps its fingerprint" sh -c '
	[ -n "$0" ] && [ "$0" = "$1" ]' "$(fingerprint "$Q")" "$(fingerprint "$T/resaved")"
check "a tokenizer with two merges swapped does not" sh -c '
	[ -n "$1" ] && [ "$0" != "$1" ]' "$(fingerprint "$Q")" "$(fingerprint "$T/changed")"
check "lf-inspect refuses to decode with another tokenizer unless --force" sh -c '
	! lf-inspect --head 1 --tokenizer "'"$T"'/changed" "'"$T"'/id.lfs" 2>"'"$T"'/err" &&
	grep -q "tokenized with another tokenizer" "'"$T"'/err" &&
	lf-inspect --head 1 --force --tokenizer "'"$T"'/changed" "'"$T"'/id.lfs" 2>/dev/null | grep -q "\"text\""'
check "lf-inspect accepts the re-saved tokenizer" sh -c '
	lf-inspect --head 1 --tokenizer "'"$T"'/resaved" "'"$T"'/id.lfs" | grep -q "\"text\""'

# ---- text and decode modes ----
check "--text gives the library's ids (with the post-processor's bos for llama3.1)" sh -c '
	[ "$(printf "{\"text\": \"Hello world\"}\n" | lf-tokenize --tokenizer "'"$TOK"'/llama3_1" --text 2>/dev/null)" = \
	  "{\"ids\":[128000,9906,1917]}" ]'
check "--no-special leaves it out" sh -c '
	[ "$(printf "{\"text\": \"Hello world\"}\n" | lf-tokenize --tokenizer "'"$TOK"'/llama3_1" --text --no-special 2>/dev/null)" = \
	  "{\"ids\":[9906,1917]}" ]'
check "--decode and --skip-special" sh -c '
	[ "$(printf "{\"ids\": [128000, 9906, 1917]}\n" | lf-tokenize --tokenizer "'"$TOK"'/llama3_1" --decode 2>/dev/null)" = \
	  "{\"text\": \"<|begin_of_text|>Hello world\"}" ] &&
	[ "$(printf "{\"ids\": [128000, 9906, 1917]}\n" | lf-tokenize --tokenizer "'"$TOK"'/llama3_1" --decode --skip-special 2>/dev/null)" = \
	  "{\"text\": \"Hello world\"}" ]'
check "a JSON string with NUL and escapes round-trips" sh -c '
	printf "{\"text\": \"a\\\\u0000b\\\\n\\\\u00e9\\\\ud83d\\\\ude00\"}\n" | lf-tokenize --tokenizer "'"$Q"'" --text 2>/dev/null |
	lf-tokenize --tokenizer "'"$Q"'" --decode 2>/dev/null |
	python3 -c "import json, sys; t = json.load(sys.stdin)[\"text\"]; assert t == \"a\\0b\\n\\u00e9\\U0001f600\", repr(t)"'
check "blank lines stay blank; the log has a summary" sh -c '
	printf "{\"text\": \"a\"}\n\n{\"text\": \"b\"}\n" | lf-tokenize --tokenizer "'"$Q"'" --text --log "'"$T"'/l2" 2>/dev/null |
	[ "$(cat)" = "$(printf "{\"ids\":[64]}\n\n{\"ids\":[65]}")" ] &&
	grep -q "\"event\":\"summary\",\"unit\":\"line\",\"count\":3,\"tokens\":2" "'"$T"'/l2"'

# ---- bad input ----
check "invalid JSON names the line" fails 1 "<stdin>: line 2: " sh -c '
	printf "{\"text\": \"a\"}\n{\"text\" \"b\"}\n" | lf-tokenize --tokenizer "'"$Q"'" --text'
check "a line without the field names it" fails 1 "line 1: field .text. is missing" sh -c '
	printf "{\"txt\": \"a\"}\n" | lf-tokenize --tokenizer "'"$Q"'" --text'
check "invalid UTF-8 names the line" fails 1 "line 1: .*0xff" sh -c '
	printf "{\"text\": \"a\377\"}\n" | lf-tokenize --tokenizer "'"$Q"'" --text'
check "an id out of range names it and its position" fails 1 "line 1: id 999999 (position 1) is not in the vocabulary" sh -c '
	printf "{\"ids\": [1, 999999]}\n" | lf-tokenize --tokenizer "'"$Q"'" --decode'
check "a negative id is refused" fails 1 "ids\[0\] is not a token id" sh -c '
	printf "{\"ids\": [-1]}\n" | lf-tokenize --tokenizer "'"$Q"'" --decode'
head -c 300000 "$Q/tokenizer.json" >"$T/truncated.json"
check "a truncated tokenizer.json is an error" fails 1 "truncated.json: .*end of file" \
	lf-tokenize --tokenizer "$T/truncated.json" --text
printf '{"version": "1.0",\n "model": {"type": "BPE", "vocab": {"a": 0,, "b": 1}, "merges": []}}' >"$T/malformed.json"
check "a malformed tokenizer.json names line and column" fails 1 "malformed.json: line 2 column [0-9]*" \
	lf-tokenize --tokenizer "$T/malformed.json" --text
sed 's/"type": *"ByteLevel"/"type": "ByteLevelX"/' "$Q/tokenizer.json" >"$T/unknown.json"
check "an unknown component is named" fails 1 "unknown.json: pre-tokenizer 'ByteLevelX' is not supported" \
	lf-tokenize --tokenizer "$T/unknown.json" --text
printf '{"model": {"type": "Unigram", "vocab": [["a", -1.0]]}}' >"$T/unigram.json"
check "an unsupported model is named" fails 1 "unigram.json: .*Unigram" lf-tokenize --tokenizer "$T/unigram.json" --text
python3 - "$Q/tokenizer.json" "$T" <<'PY'
import json, sys
src, out = sys.argv[1], sys.argv[2]
t = json.load(open(src, encoding="utf-8"))
def save(name, tok):
    json.dump(tok, open(out + "/" + name, "w", encoding="utf-8"))
bad = json.loads(json.dumps(t)); bad["model"]["vocab"]["zzz-typo"] = 2**31 - 1; save("hugeid.json", bad)
bad = json.loads(json.dumps(t)); bad["model"]["unk_token"] = "<no-such-unk>"; save("nounk.json", bad)
bad = json.loads(json.dumps(t)); bad["pre_tokenizer"]["pretokenizers"][0]["pattern"] = {"String": ""}; save("emptypat.json", bad)
bad = json.loads(json.dumps(t)); bad["pre_tokenizer"] = {"type": "Metaspace", "replacement": "", "prepend_scheme": "always", "split": True}
save("emptyrep.json", bad)
PY
check "a vocabulary id far out of range is an error with its position" fails 1 "hugeid.json: line 1 column [0-9]*: token id 2147483647 out of range" \
	lf-tokenize --tokenizer "$T/hugeid.json" --text
check "an unk_token missing from the vocabulary is an error" fails 1 "unk_token '<no-such-unk>' is not in its vocabulary" \
	lf-tokenize --tokenizer "$T/nounk.json" --text
check "an empty String pattern is refused" fails 1 "emptypat.json: Split pre-tokenizer: an empty String pattern" \
	lf-tokenize --tokenizer "$T/emptypat.json" --text
check "an empty Metaspace replacement is refused (it would never advance)" fails 1 "replacement must be one character" \
	sh -c 'echo "{\"text\": \"a b\"}" | timeout 10 lf-tokenize --tokenizer "'"$T"'/emptyrep.json" --text'
python3 -c '
import sys
data = open(sys.argv[1], "rb").read()
assert data.count(b"Who are you?") >= 1
open(sys.argv[2], "wb").write(data.replace(b"Who are you?", b"Who are yo\xff?", 1))
' "$T/id.txt.lfs" "$T/badutf8.lfs"
check "a text stream with invalid UTF-8 names the record, element and byte" \
	fails 1 "stream record 2: element 0: text is not UTF-8 (byte [0-9]*)" lf-tokenize --tokenizer "$Q" "$T/badutf8.lfs"
check "a missing tokenizer is an error" fails 1 "cannot open\|No such file" lf-tokenize --tokenizer "$T/none" --text
check "a failed run leaves no output file and keeps an existing one" sh -c '
	printf "{\"text\": \"a\"}\n{\"text\": 1}\n" | lf-tokenize --tokenizer "'"$Q"'" --text -o "'"$T"'/out.jsonl" 2>/dev/null
	[ $? = 1 ] && [ ! -e "'"$T"'/out.jsonl" ] && ! ls "'"$T"'" | grep -q "out.jsonl" &&
	echo keep >"'"$T"'/kept" &&
	! lf-tokenize --tokenizer "'"$Q"'" "'"$T"'/truncated.json" -o "'"$T"'/kept" 2>/dev/null &&
	[ "$(cat "'"$T"'/kept")" = keep ]'
mkfifo "$T/fifo"
check "-o to a pipe writes into it and leaves it a pipe" sh -c '
	cat "'"$T"'/fifo" >"'"$T"'/from-fifo" &
	printf "{\"text\": \"a\"}\n" | lf-tokenize --tokenizer "'"$Q"'" --text -o "'"$T"'/fifo" 2>/dev/null; wait
	[ -p "'"$T"'/fifo" ] && [ "$(cat "'"$T"'/from-fifo")" = "{\"ids\":[64]}" ]'
check "--text with --decode is a usage error" fails 2 "exclude each other" \
	lf-tokenize --tokenizer "$Q" --text --decode
check "no tokenizer is a usage error" fails 2 "--tokenizer PATH is required" lf-tokenize --text
