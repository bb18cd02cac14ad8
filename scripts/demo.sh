#!/bin/sh
# scripts/demo.sh — lf on the small datasets it ships (data/demo): render them
# with a chat template into an lf stream, then look at it.  Later issues grow
# this into tokenize -> pack -> train -> chat on a tiny model lf creates.
set -e
cd "$(dirname "$0")/.."
[ -x bin/lf-template ] && [ -x bin/lf-inspect ] || make -s tools
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

echo
echo "The stream is $out/demo.lfs; see lf-inspect(1) and lf-stream(5)."
