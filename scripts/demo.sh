#!/bin/sh
# scripts/demo.sh — lf on the small datasets it ships (data/demo): render them
# with a chat template into an lf stream, look at it, and tokenize it with
# Qwen3's tokenizer from the shared reference files (../shared/tokenizers,
# when present), and pack it into training shards as LLaMA-Factory's
# preprocessing would.  Later issues grow this into tokenize -> pack ->
# train -> chat on a tiny model lf creates.
set -e
cd "$(dirname "$0")/.."
[ -x bin/lf-template ] && [ -x bin/lf-inspect ] && [ -x bin/lf-tokenize ] && [ -x bin/lf-pack ] || make -s tools
out=build/demo
mkdir -p "$out"
PATH=$PWD/bin:$PATH

echo "== lf-template: data/demo (lf_identity, lf_chats) with the llama3 template"
lf-template -t llama3 --dataset-dir data/demo --dataset lf_identity,lf_chats -o "$out/demo.lfs"

echo
echo "== lf-inspect --stats"
lf-inspect --stats "$out/demo.lfs"

echo
echo "== the first record, as the model will read it"
lf-inspect --head 1 "$out/demo.lfs" | python3 -c 'import json, sys; print(json.loads(sys.stdin.readline())["text"])'

echo
echo "== a tool-calling conversation with the qwen3 template"
lf-template -t qwen3 --dataset-dir data/demo --dataset lf_chats 2>/dev/null | lf-inspect --head 1 |
	python3 -c 'import json, sys; print(json.loads(sys.stdin.readline())["text"])'

tokenizers=${LF_SHARED_DATA:-../shared/data}/../tokenizers
if [ -f "$tokenizers/qwen3/tokenizer.json" ]; then
	echo
	echo "== lf-tokenize: the same datasets with the qwen3 template and Qwen3's tokenizer"
	lf-template -t qwen3 --dataset-dir data/demo --dataset lf_identity,lf_chats 2>/dev/null |
		lf-tokenize --tokenizer "$tokenizers/qwen3" -o "$out/demo-qwen3.lfs"
	lf-inspect --stats "$out/demo-qwen3.lfs"
	echo "the first record's ids, decoded again:"
	lf-inspect --head 1 --tokenizer "$tokenizers/qwen3" "$out/demo-qwen3.lfs" |
		python3 -c 'import json, sys; r = json.loads(sys.stdin.readline()); print(r["turns"][0]["source_ids"][:12], "..."); print(r["text"])'
	echo '{"text": "Hello, world!"}' | lf-tokenize --tokenizer "$tokenizers/qwen3" --text 2>/dev/null

	echo
	echo "== lf-pack: cut to 256 tokens, labels, packed into 256-token sequences, 10% held out"
	lf-pack --cutoff-len 256 --packing --val-size 0.1 -o "$out/demo-shards" "$out/demo-qwen3.lfs"
	lf-inspect --stats "$out/demo-shards"
	echo "the first packed sequence (ignored labels in guillemets, packed examples apart):"
	lf-inspect --head 1 --tokenizer "$tokenizers/qwen3" "$out/demo-shards" |
		python3 -c 'import json, sys; print(json.loads(sys.stdin.readline())["text"])'
	lf-inspect --verify "$out/demo-shards"
else
	echo
	echo "(no $tokenizers/qwen3: tokenization left out; any model folder with a tokenizer.json works)"
fi

echo
echo "The streams and shards are in $out; see lf-inspect(1), lf-tokenize(1), lf-pack(1), lf-stream(5) and lf-shard(5)."
