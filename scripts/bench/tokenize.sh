#!/bin/bash
# scripts/bench/tokenize.sh — lf-tokenize against the Hugging Face tokenizers
# library (and tiktoken, where it has the same vocabulary) on the same ~20 MB
# of generated mixed text (English prose, code, CJK: gen-mixed-text.py), with
# the llama3 and qwen3 tokenizers of ../shared/tokenizers.
#
#   single thread  lf-tokenize --text --no-special -j 1, the whole process
#                  (loading the tokenizer, reading and writing JSON lines);
#                  against Tokenizer.encode_batch(add_special_tokens=False)
#                  with TOKENIZERS_PARALLELISM=false (one thread), timing the
#                  call only; and for llama3 tiktoken's encode_ordinary_batch
#                  with num_threads=1 on an Encoding made from the same
#                  tokenizer.json (same pattern, same ranks).
#   all cores      lf-tokenize -j N against encode_batch on N rayon threads.
#
# Every peer's ids are compared with lf's, so the work is the same.  Prints
# MB/s (of UTF-8 text) and the ratios.  The peers come from
# scripts/bench/requirements.txt (a cached virtualenv, ~/.cache/lf/bench-venv).
#
# Usage: scripts/bench/tokenize.sh [SIZE_MB]   (default 20)
set -euo pipefail
cd "$(dirname "$0")/../.."
size=${1:-20}
shared=${LF_SHARED_DATA:-../shared/data}
toks=$shared/../tokenizers
venv=${LF_BENCH_VENV:-$HOME/.cache/lf/bench-venv}
sh scripts/oracle-venv.sh scripts/bench/requirements.txt "$venv"
make -s tools
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cores=$(nproc)

python3 scripts/bench/gen-mixed-text.py "$shared" "$size" "$work/text.jsonl"
echo "input: $(wc -l <"$work/text.jsonl") documents, $size MB of text (50% English, 30% code, 20% CJK by bytes); $cores cores"
now() { date +%s.%N; }

for model in llama3 qwen3; do
	t0=$(now)
	bin/lf-tokenize --tokenizer "$toks/$model" --text --no-special -j 1 "$work/text.jsonl" -o "$work/lf1.jsonl" 2>/dev/null
	t1=$(now)
	bin/lf-tokenize --tokenizer "$toks/$model" --text --no-special -j "$cores" "$work/text.jsonl" -o "$work/lfn.jsonl" 2>/dev/null
	t2=$(now)
	cmp -s "$work/lf1.jsonl" "$work/lfn.jsonl" || { echo "lf-tokenize -j 1 and -j $cores differ" >&2; exit 1; }
	"$venv/bin/python" - "$toks/$model" "$work" "$model" "$cores" "$(echo "$t1 - $t0" | bc -l)" \
		"$(echo "$t2 - $t1" | bc -l)" <<'PY'
import json, os, sys, time
path, work, model, cores, lf1, lfn = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6])
texts = [json.loads(l)["text"] for l in open(work + "/text.jsonl", encoding="utf-8")]
mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
ours = [json.loads(l)["ids"] for l in open(work + "/lf1.jsonl")]
ntok = sum(len(x) for x in ours)

def run_hf(threads):
    # the library reads these when its thread pool first starts: one fresh process per setting
    import subprocess
    code = r'''
import json, sys, time
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1] + "/tokenizer.json")
texts = [json.loads(l)["text"] for l in open(sys.argv[2], encoding="utf-8")]
t0 = time.perf_counter()
enc = tok.encode_batch(texts, add_special_tokens=False)
dt = time.perf_counter() - t0
json.dump({"seconds": dt, "ids": [e.ids for e in enc]}, open(sys.argv[3], "w"))
'''
    env = dict(os.environ)
    if threads == 1:
        env["TOKENIZERS_PARALLELISM"] = "false"
    else:
        env["TOKENIZERS_PARALLELISM"] = "true"
        env["RAYON_NUM_THREADS"] = str(threads)
    subprocess.run([sys.executable, "-c", code, path, work + "/text.jsonl", work + "/hf.json"], env=env, check=True)
    r = json.load(open(work + "/hf.json"))
    return r["seconds"], r["ids"]

def row(name, seconds, note=""):
    print("  %-34s %8.3f s %8.2f MB/s %11.0f tokens/s%s" % (name, seconds, mb / seconds, ntok / seconds, note))

print("%s (%d tokens)" % (model, ntok))
hf1, ids = run_hf(1)
same = "ids identical" if ids == ours else "IDS DIFFER"
row("lf-tokenize -j 1 (whole process)", lf1)
row("tokenizers encode_batch, 1 thread", hf1, "  (%s)" % same)
print("  ratio lf/tokenizers, 1 thread: %.2fx" % (hf1 / lf1))
if model == "llama3":
    import tiktoken
    from tokenizers import Tokenizer
    spec = json.load(open(path + "/tokenizer.json", encoding="utf-8"))
    # ByteLevel's alphabet back to bytes: the ranks tiktoken wants
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    unbyte = {chr(c): b for b, c in zip(bs, cs)}
    ranks = {bytes(unbyte[ch] for ch in tok): i for tok, i in spec["model"]["vocab"].items()}
    pattern = spec["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"]
    enc = tiktoken.Encoding("llama3-from-tokenizer-json", pat_str=pattern, mergeable_ranks=ranks, special_tokens={})
    t0 = time.perf_counter()
    tk = enc.encode_ordinary_batch(texts, num_threads=1)
    tt = time.perf_counter() - t0
    row("tiktoken encode_ordinary_batch, 1 thr", tt, "  (%s)" % ("ids identical" if tk == ours else "IDS DIFFER"))
    print("  ratio lf/tiktoken, 1 thread: %.2fx" % (tt / lf1))
hfn, ids = run_hf(cores)
row("lf-tokenize -j %d" % cores, lfn, "  (%.2fx its 1-thread speed)" % (lf1 / lfn))
row("tokenizers encode_batch, %d threads" % cores, hfn, "  (%.2fx its 1-thread speed)" % (hf1 / hfn))
print("  ratio lf/tokenizers, %d threads: %.2fx" % (cores, hfn / lfn))
PY
done
