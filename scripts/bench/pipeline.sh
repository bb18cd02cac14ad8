#!/bin/bash
# scripts/bench/pipeline.sh — the whole lf pipeline against LLaMA-Factory's own
# preprocessing, per stage, on LLaMA-Factory's demo data scaled up.
#
# Input: the six datasets of ../shared/data (alpaca_en_demo, identity,
# glaive_toolcall_en_demo (sharegpt with tools), dpo_en_demo (ranking),
# kto_en_demo, c4_demo), each repeated (whole copies, same layout: a JSON
# array, c4 JSON lines) to an equal share of LF_BENCH_MB, next to a
# dataset_info.json whose lfbench_* entries copy the demo entries (columns,
# formatting, ranking, tags).  Built once and kept under
# ~/.cache/lf/bench/pipeline-<MB>mb (LF_BENCH_CACHE), with a second set of
# half the size for the memory check.
#
# Cases (llama3 template and tokenizer, cutoff 1024):
#   alpaca sft, alpaca sft --packing, identity sft, glaive sft, dpo rm,
#   kto kto, c4 pt (packed: lf-pack's and LLaMA-Factory's default for pt)
#
#   lf   lf-template -t llama3 --dataset-dir DIR --dataset NAME --stage S
#          | lf-tokenize --tokenizer llama3 (its default: one thread per core)
#          | lf-pack --cutoff-len 1024 [--packing] -o OUT
#        wall time of the whole pipe; MB/s = the dataset file's bytes / that
#        time; each stage's peak RSS (GNU time's %M; the three run at once,
#        so lf's footprint is about their sum).
#   LF   LLaMA-Factory 0.9.5: scripts/bench/lf-preprocess.py, one process per
#        case, calling llamafactory.data.loader.get_dataset as
#        scripts/goldens/make-pack-goldens.py does, with
#        preprocessing_num_workers = nproc (the cores lf-tokenize uses) and the
#        same stage, cutoff and packing.  "LF s" is get_train_args + loading
#        the tokenizer and template + get_dataset (load_dataset into Arrow,
#        convert, tokenize, truncate, label, pack); the import of
#        llamafactory/transformers/datasets/torch is not in it and is shown
#        apart ("LF imp").  (load_dataset itself reads a single file in one
#        process whatever num_proc says; the maps use all the workers.)  Its
#        memory: the main process's peak RSS, and the sampled peak of main +
#        worker processes' summed PSS.
#   ratio  LF s / lf s.
#
# Then the memory check: lf's per-stage peak RSS on the half-size input next
# to the full size (flat = the same at both), and a warning wherever lf and
# LLaMA-Factory do not make the same number of examples (lf-inspect --count
# against len(train_dataset)).  Packed cases may differ by design: with N
# workers datasets.map gives each worker a contiguous shard that it packs in
# batches of its own, so LLaMA-Factory's pack boundaries depend on N, while lf
# packs as LLaMA-Factory does in one process (the goldens' setting).
#
# The lf tools are copied from bin/ (after make) into a temporary folder first,
# so a rebuild during the run does not change them halfway.
#
# Usage: [LF_BENCH_MB=200] scripts/bench/pipeline.sh
#   LF_BENCH_MB         total input size in MB (10^6 bytes) for the table (default 200)
#   LF_BENCH_SMALL_MB   the second, smaller size for the memory check (default LF_BENCH_MB/2; 0: skip)
#   LF_BENCH_CASES      run only these cases (comma-separated names as above, e.g. alpaca,c4)
#   LF_BENCH_PEER=0     skip LLaMA-Factory
#   LF_BENCH_NO_MAKE=1  use bin/ as it is (no make first)
#   LF_BENCH_CACHE      where the inputs are kept (default ~/.cache/lf/bench)
#   LF_PEER_PYTHON      python with llamafactory (default ~/.cache/lf/goldens-venv/bin/python,
#                       scripts/goldens/venv.sh), run with LF_PEER_TF4 (default
#                       ~/.cache/lf/goldens-tf4, transformers 4.57.1: see
#                       scripts/goldens/make-token-goldens.py) first on PYTHONPATH
# LLaMA-Factory takes most of the time: the default 200 MB took 4 minutes on 2
# cores (building the inputs the first time included).
set -euo pipefail
cd "$(dirname "$0")/../.."
t_start=$(date +%s.%N)
mb=${LF_BENCH_MB:-200}
small_mb=${LF_BENCH_SMALL_MB:-$((mb / 2))}
shared=${LF_SHARED_DATA:-../shared/data}
tok=${LF_BENCH_TOKENIZER:-$shared/../tokenizers/llama3}
cache=${LF_BENCH_CACHE:-$HOME/.cache/lf/bench}
peer=${LF_PEER_PYTHON:-$HOME/.cache/lf/goldens-venv/bin/python}
tf4=${LF_PEER_TF4:-$HOME/.cache/lf/goldens-tf4}
only=${LF_BENCH_CASES:-}
cutoff=1024
cores=$(nproc)
now() { date +%s.%N; }

[ "${LF_BENCH_NO_MAKE:-0}" = 1 ] || make -s tools
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/bin"
cp bin/lf-template bin/lf-tokenize bin/lf-pack bin/lf-inspect "$work/bin/"
B=$work/bin

if [ -x /usr/bin/time ]; then
	peak() { /usr/bin/time -f %M -o "$@"; }  # peak FILE CMD...: CMD's peak RSS (KiB) into FILE
else
	echo "note: /usr/bin/time (GNU time) not found, lf's peak RSS not measured: apt-get install time" >&2
	peak() { local f=$1; shift; echo 0 >"$f"; "$@"; }
fi

# build DIR MB: the repeated datasets and their dataset_info.json, unless DIR has them
build() {
	python3 - "$shared" "$1" "$2" <<'PY'
import json, math, os, sys
shared, out, mb = sys.argv[1], sys.argv[2], float(sys.argv[3])
SETS = [("alpaca", "alpaca_en_demo"), ("identity", "identity"), ("glaive", "glaive_toolcall_en_demo"),
        ("dpo", "dpo_en_demo"), ("kto", "kto_en_demo"), ("c4", "c4_demo")]
stamp = os.path.join(out, ".complete")
want = json.dumps({"mb": mb, "sets": SETS, "v": 1})
if os.path.exists(stamp) and open(stamp).read() == want:
    sys.exit(0)
os.makedirs(out, exist_ok=True)
info = json.load(open(os.path.join(shared, "dataset_info.json")))
share = math.ceil(mb * 1e6 / len(SETS))  # bytes per dataset
new_info = {}
for short, name in SETS:
    entry = dict(info[name])
    src = os.path.join(shared, entry["file_name"])
    if src.endswith(".jsonl"):
        rows = [json.dumps(json.loads(l), ensure_ascii=False) for l in open(src, encoding="utf-8") if l.strip()]
        head, sep, tail, ext = "", "\n", "\n", ".jsonl"
    else:
        rows = [json.dumps(r, ensure_ascii=False, indent=2) for r in json.load(open(src, encoding="utf-8"))]
        rows = ["  " + r.replace("\n", "\n  ") for r in rows]
        head, sep, tail, ext = "[\n", ",\n", "\n]\n", ".json"
    one = sep.join(rows)
    copies = max(1, math.ceil((share - len(head) - len(tail)) / len((one + sep).encode("utf-8"))))
    fname = "lfbench_%s%s" % (short, ext)
    tmp = os.path.join(out, fname + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(head)
        for i in range(copies):
            f.write(one)
            f.write(sep if i + 1 < copies else tail)
    os.replace(tmp, os.path.join(out, fname))
    entry["file_name"] = fname
    new_info["lfbench_" + short] = entry
json.dump(new_info, open(os.path.join(out, "dataset_info.json"), "w"), indent=2)
open(stamp, "w").write(want)
PY
}

big=$cache/pipeline-${mb}mb
echo "building inputs: $big" >&2
build "$big" "$mb"
if [ "$small_mb" != 0 ]; then
	small=$cache/pipeline-${small_mb}mb
	echo "building inputs: $small" >&2
	build "$small" "$small_mb"
fi

peer_ok=0
if [ "${LF_BENCH_PEER:-1}" != 0 ]; then
	if [ -x "$peer" ] && PYTHONPATH=$tf4 "$peer" -c "import llamafactory, transformers; assert transformers.__version__.startswith('4.')" 2>/dev/null; then
		peer_ok=1
	else
		echo "LLaMA-Factory peer not run: $peer with $tf4 first on PYTHONPATH must import llamafactory and transformers 4.x" >&2
	fi
fi

# file_of DIR NAME: the dataset's file
file_of() { python3 -c 'import json,sys; print(sys.argv[1] + "/" + json.load(open(sys.argv[1] + "/dataset_info.json"))[sys.argv[2]]["file_name"])' "$1" "$2"; }

# run_lf DIR NAME STAGE PACKING: "seconds rss_template rss_tokenize rss_pack count" (RSS in KiB)
run_lf() {
	local out=$work/out pack=
	[ "$4" = 1 ] && pack=--packing
	rm -rf "$out"
	local t0 t1
	t0=$(now)
	if ! peak "$work/m.t" "$B/lf-template" -t llama3 --dataset-dir "$1" --dataset "$2" --stage "$3" 2>"$work/e.t" |
		peak "$work/m.k" "$B/lf-tokenize" --tokenizer "$tok" 2>"$work/e.k" |
		peak "$work/m.p" "$B/lf-pack" --cutoff-len "$cutoff" $pack -o "$out" 2>"$work/e.p"; then
		echo "lf pipeline failed on $2 ($3):" >&2
		tail -n 5 "$work/e.t" "$work/e.k" "$work/e.p" >&2
		exit 1
	fi
	t1=$(now)
	echo "$(awk "BEGIN { printf \"%.3f\", $t1 - $t0 }") $(tail -n 1 "$work/m.t") $(tail -n 1 "$work/m.k") $(tail -n 1 "$work/m.p") $("$B/lf-inspect" --count "$out")"
	rm -rf "$out"
}

# run_peer DIR NAME STAGE PACKING: LLaMA-Factory's JSON result (lf-preprocess.py), or "null"
run_peer() {
	local pack=
	[ "$4" = 1 ] && pack=--packing
	rm -f "$work/peer.json"
	if PYTHONPATH=$tf4 "$peer" scripts/bench/lf-preprocess.py --dataset-dir "$1" --dataset "$2" --stage "$3" \
		--tokenizer "$tok" --cutoff-len "$cutoff" $pack --workers "$cores" --result "$work/peer.json" \
		>"$work/peer.log" 2>&1; then
		cat "$work/peer.json"
	else
		echo "LLaMA-Factory failed on $2 ($3):" >&2
		tail -n 5 "$work/peer.log" >&2
		echo null
	fi
}

cases="alpaca:sft:lfbench_alpaca:0 alpaca-packed:sft:lfbench_alpaca:1 identity:sft:lfbench_identity:0
glaive:sft:lfbench_glaive:0 dpo:rm:lfbench_dpo:0 kto:kto:lfbench_kto:0 c4:pt:lfbench_c4:0"
results=$work/results.jsonl
: >"$results"
for c in $cases; do
	IFS=: read -r label stage name packing <<<"$c"
	if [ -n "$only" ] && [[ ",$only," != *",$label,"* ]]; then
		continue
	fi
	bytes=$(stat -c %s "$(file_of "$big" "$name")")
	echo "[$label] lf, $((bytes / 1000000)) MB ..." >&2
	read -r s rt rk rp n <<<"$(run_lf "$big" "$name" "$stage" "$packing")"
	small_line=null
	if [ "$small_mb" != 0 ]; then
		sbytes=$(stat -c %s "$(file_of "$small" "$name")")
		echo "[$label] lf, $((sbytes / 1000000)) MB (memory check) ..." >&2
		read -r ss srt srk srp sn <<<"$(run_lf "$small" "$name" "$stage" "$packing")"
		small_line="{\"bytes\":$sbytes,\"s\":$ss,\"rss\":[$srt,$srk,$srp],\"count\":$sn}"
	fi
	peer_line=null
	if [ "$peer_ok" = 1 ]; then
		echo "[$label] LLaMA-Factory, $cores workers ..." >&2
		peer_line=$(run_peer "$big" "$name" "$stage" "$packing")
	fi
	echo "{\"case\":\"$label\",\"stage\":\"$stage\",\"packing\":$packing,\"bytes\":$bytes,\"s\":$s,\"rss\":[$rt,$rk,$rp],\"count\":$n,\"small\":$small_line,\"peer\":$peer_line}" >>"$results"
done

python3 - "$results" "$mb" "$small_mb" "$cores" "$(awk "BEGIN { printf \"%.1f\", $(now) - $t_start }")" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
mb, small_mb, cores, elapsed = sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
M = 1e6
def kib(x): return "%d" % round(x / 1024)
def f(x, fmt): return "-" if x is None else fmt % x

print("lf pipeline vs LLaMA-Factory 0.9.5 get_dataset: llama3 template + tokenizer, cutoff 1024, %d cores"
      " (lf-tokenize -j %d, preprocessing_num_workers %d), input ~%s MB" % (cores, cores, cores, mb))
print("RSS in MB; lf: peak of each stage (template/tokenize/pack, running at once); LF: main process peak /"
      " peak summed PSS of main + workers; LF imp: import time, not in LF s")
hdr = "%-14s %8s %8s %8s %16s %8s %8s %13s %7s %7s" % (
    "case", "in MB", "lf s", "lf MB/s", "lf RSS t/k/p", "LF s", "LF MB/s", "LF RSS m/tree", "LF imp", "ratio")
print(hdr)
print("-" * len(hdr))
tot = {"mb": 0.0, "s": 0.0, "ps": 0.0, "pmb": 0.0, "rss": [0, 0, 0], "prss": [0, 0], "imp": 0.0, "np": 0}
warn = []
for r in rows:
    p = r["peer"]
    inmb = r["bytes"] / M
    tot["mb"] += inmb
    tot["s"] += r["s"]
    tot["rss"] = [max(a, b) for a, b in zip(tot["rss"], r["rss"])]
    name = r["case"] + ("" if r["stage"] == "sft" else " (%s)" % r["stage"])
    lf_rss = "/".join(kib(x) for x in r["rss"])
    if p:
        tot["ps"] += p["run_s"]
        tot["pmb"] += inmb
        tot["imp"] += p["import_s"]
        tot["np"] += 1
        tot["prss"] = [max(tot["prss"][0], p["main_rss_mb"]), max(tot["prss"][1], p["tree_pss_mb"])]
        lfr = "%d/%d" % (p["main_rss_mb"], p["tree_pss_mb"])
        print("%-14s %8.1f %8.2f %8.2f %16s %8.1f %8.2f %13s %7.1f %6.1fx" % (
            name, inmb, r["s"], inmb / r["s"], lf_rss, p["run_s"], inmb / p["run_s"], lfr, p["import_s"],
            p["run_s"] / r["s"]))
        if p["count"] != r["count"]:
            why = ""
            if r["packing"] or r["stage"] == "pt":
                why = (" (packed: with preprocessing_num_workers %d LLaMA-Factory's datasets.map packs each worker's"
                       " contiguous shard in batches of its own, so its batch boundaries, and so its packs, differ"
                       " from one process's; lf packs as one process does)" % p["workers"])
            warn.append("WARNING: %s: lf made %d examples, LLaMA-Factory %d%s" % (r["case"], r["count"], p["count"], why))
    else:
        print("%-14s %8.1f %8.2f %8.2f %16s %8s %8s %13s %7s %7s" % (
            name, inmb, r["s"], inmb / r["s"], lf_rss, "-", "-", "-", "-", "-"))
print("-" * len(hdr))
if tot["s"]:  # sums of MB and seconds, largest RSS
    line = "%-14s %8.1f %8.2f %8.2f %16s" % ("total", tot["mb"], tot["s"], tot["mb"] / tot["s"],
                                             "/".join(kib(x) for x in tot["rss"]))
    if tot["np"] == len(rows):
        line += " %8.1f %8.2f %13s %7.1f %6.1fx" % (tot["ps"], tot["pmb"] / tot["ps"], "%d/%d" % tuple(tot["prss"]),
                                                    tot["imp"], tot["ps"] / tot["s"])
    print(line)
print("examples: " + ", ".join("%s %d%s" % (r["case"], r["count"], "" if not r["peer"] or r["peer"]["count"] == r["count"]
                                           else " (LF %d)" % r["peer"]["count"]) for r in rows))

if any(r["small"] for r in rows):
    print()
    print("lf memory vs input size: peak RSS MB per stage (template/tokenize/pack) at both sizes")
    h2 = "%-14s %10s %16s %10s %16s" % ("case", "small MB", "RSS t/k/p", "full MB", "RSS t/k/p")
    print(h2)
    print("-" * len(h2))
    for r in rows:
        sm = r["small"]
        if sm:
            print("%-14s %10.1f %16s %10.1f %16s" % (r["case"], sm["bytes"] / M, "/".join(kib(x) for x in sm["rss"]),
                                                    r["bytes"] / M, "/".join(kib(x) for x in r["rss"])))
for w in warn:
    print(w)
if not warn and all(r["peer"] for r in rows):
    print("lf and LLaMA-Factory made the same number of examples in every case")
print("whole run: %.0f s" % elapsed)
PY
