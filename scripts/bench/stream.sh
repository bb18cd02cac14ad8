#!/bin/bash
# scripts/bench/stream.sh — lf-template and the lf stream against
# LLaMA-Factory doing the same work, on LLaMA-Factory's demo data scaled up.
#
#   1. lf-template: read JSON, convert rows, apply the llama3 template, write
#      the stream (records/s, input MB/s).  Peer: LLaMA-Factory 0.9.5's own
#      loader, converter and Template.encode_multiturn on the same file (with
#      a tokenizer that only records its inputs, so both sides do templating
#      and nothing else), when it can be imported ($LF_PEER_PYTHON, default
#      scripts/goldens/venv.sh's virtualenv).
#   2. The stream reader: lf-inspect --count over the stream (records/s,
#      MB/s).  Peer: Python's msgpack Unpacker over the same bytes, when the
#      msgpack package is importable.
#
# Usage: scripts/bench/stream.sh [COPIES]   (default 40 copies of
# alpaca_en_demo + glaive_toolcall_en_demo: ~52k rows, ~64 MB)
set -euo pipefail
cd "$(dirname "$0")/../.."
copies=${1:-40}
shared=${LF_SHARED_DATA:-../shared/data}
peer=${LF_PEER_PYTHON:-$HOME/.cache/lf/goldens-venv/bin/python}
make -s tools
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 - "$shared" "$work" "$copies" <<'PY'
import json, sys
shared, work, copies = sys.argv[1], sys.argv[2], int(sys.argv[3])
alpaca = json.load(open(shared + "/alpaca_en_demo.json"))
glaive = json.load(open(shared + "/glaive_toolcall_en_demo.json"))
with open(work + "/alpaca.jsonl", "w") as f:
    for _ in range(copies):
        for r in alpaca:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
with open(work + "/glaive.jsonl", "w") as f:
    for _ in range(copies):
        for r in glaive:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
json.dump({"alpaca": {"file_name": "alpaca.jsonl"},
           "glaive": {"file_name": "glaive.jsonl", "formatting": "sharegpt",
                      "columns": {"messages": "conversations", "tools": "tools"}}},
          open(work + "/dataset_info.json", "w"))
PY
in_mb=$(du -m -c "$work"/*.jsonl | tail -1 | cut -f1)
now() { date +%s.%N; }

echo "input: $(cat "$work"/*.jsonl | wc -l) rows, ${in_mb} MB (alpaca_en_demo + glaive_toolcall_en_demo x $copies)"
t0=$(now)
bin/lf-template -t llama3 --dataset-dir "$work" --dataset alpaca,glaive -o "$work/s.lfs" 2>/dev/null
t1=$(now)
n=$(bin/lf-inspect --count "$work/s.lfs")
t2=$(now)
bin/lf-inspect --count "$work/s.lfs" >/dev/null
t3=$(now)
stream_mb=$(du -m "$work/s.lfs" | cut -f1)
lf_tpl=$(echo "$t1 - $t0" | bc -l)
lf_read=$(echo "$t3 - $t2" | bc -l)
printf 'lf-template     %8.3f s  %10.0f records/s  %7.1f MB/s in\n' "$lf_tpl" "$(echo "$n / $lf_tpl" | bc -l)" \
	"$(echo "$in_mb / $lf_tpl" | bc -l)"
printf 'lf stream read  %8.3f s  %10.0f records/s  %7.1f MB/s (%s MB stream)\n' "$lf_read" \
	"$(echo "$n / $lf_read" | bc -l)" "$(echo "$stream_mb / $lf_read" | bc -l)" "$stream_mb"

if [ -x "$peer" ] && "$peer" -c "import llamafactory" 2>/dev/null; then
	peer_tpl=$(cd /tmp && "$peer" - "$work" 2>/dev/null <<'PY'
import os, sys, time, types
os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", DISABLE_VERSION_CHECK="1")
import tempfile
os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp()
sys.stdout, out = sys.stderr, sys.stdout
from llamafactory.data.loader import _load_single_dataset
from llamafactory.data.parser import get_dataset_list
from llamafactory.data.template import get_template_and_fix_tokenizer
sys.stdout = out
work = sys.argv[1]

class Tok:  # records inputs only: templating cost, no tokenizing
    bos_token, eos_token, pad_token, chat_template = "<bos>", "<eos>", None, None
    bos_token_id, eos_token_id, pad_token_id = 1, 2, 0
    def encode(self, text, add_special_tokens=False): return [3]
    def convert_tokens_to_ids(self, t): return 4
    def add_special_tokens(self, d, replace_additional_special_tokens=False): return 0

t0 = time.time()
tok = Tok()
args = types.SimpleNamespace(template="llama3", train_on_prompt=False, tool_format=None, default_system=None,
                             enable_thinking=True, preserve_thinking=False)
template = get_template_and_fix_tokenizer(tok, args)
n = 0
for name in ("alpaca", "glaive"):
    attr = get_dataset_list([name], work)[0]
    ds = _load_single_dataset(attr, types.SimpleNamespace(cache_dir=None, hf_hub_token=None),
                              types.SimpleNamespace(dataset_dir=work, media_dir=work, streaming=False,
                                                    preprocessing_num_workers=None, max_samples=None,
                                                    overwrite_cache=True),
                              types.SimpleNamespace(local_process_index=0, dataloader_num_workers=0))
    for ex in ds:
        if len(ex["_prompt"]) % 2 != 1 or len(ex["_response"]) != 1:
            continue
        template.encode_multiturn(tok, ex["_prompt"] + ex["_response"], ex["_system"], ex["_tools"])
        n += 1
print("%.3f %d" % (time.time() - t0, n))
PY
)
	read -r pt pn <<<"$peer_tpl"
	printf 'LLaMA-Factory   %8.3f s  %10.0f records/s  (load, convert, template; %s records)\n' "$pt" \
		"$(echo "$pn / $pt" | bc -l)" "$pn"
	printf 'ratio: lf-template is %.1fx LLaMA-Factory\n' "$(echo "$pt / $lf_tpl" | bc -l)"
else
	echo "LLaMA-Factory peer not run: set LF_PEER_PYTHON to a python that imports llamafactory"
fi

if python3 -c "import msgpack" 2>/dev/null || { [ -x "$peer" ] && "$peer" -c "import msgpack" 2>/dev/null; }; then
	py=python3
	python3 -c "import msgpack" 2>/dev/null || py=$peer
	pr=$("$py" - "$work/s.lfs" <<'PY'
import sys, time, msgpack
t0 = time.time()
n = 0
with open(sys.argv[1], "rb") as f:
    for obj in msgpack.Unpacker(f, raw=False, max_buffer_size=1 << 30):
        n += 1
print("%.3f %d" % (time.time() - t0, n))
PY
)
	read -r mt mn <<<"$pr"
	printf 'python msgpack  %8.3f s  %10.0f objects/s\n' "$mt" "$(echo "$mn / $mt" | bc -l)"
	printf 'ratio: lf stream read is %.1fx python msgpack (lf also checks every record)\n' "$(echo "$mt / $lf_read" | bc -l)"
else
	echo "python msgpack peer not run: pip install msgpack to compare the stream reader"
fi
