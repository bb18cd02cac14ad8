#!/bin/sh
# Tool tests for lf-pack and the shard format: outputs (folder, manifest,
# shard size, bundle, validation split, shuffle), lf-inspect on shards, and
# bad input: corrupted and cut shards, streams cut short, another
# tokenizer's stream, settings that contradict the stream, outputs that must
# not be replaced.  Parity of truncation, labels and packing with
# LLaMA-Factory itself is pack_goldens.py's.
. tests/lib.sh

TOK=$SHARED/../tokenizers
L=$TOK/llama3

lf-template -t llama3 --dataset-dir "$SHARED" --dataset identity 2>/dev/null |
	lf-tokenize --tokenizer "$L" -o "$T/id.lfs" 2>/dev/null
lf-template -t llama3 --dataset-dir "$SHARED" --dataset kto_en_demo --stage kto 2>/dev/null |
	lf-tokenize --tokenizer "$L" -o "$T/kto.lfs" 2>/dev/null

examples() { lf-inspect "$@" | python3 -c "import sys; print(sum(1 for _ in sys.stdin))"; }
same_examples() { # A B: the same examples, ignoring split/index numbering
	lf-inspect "$1" | python3 -c "import json,sys; [print(json.dumps({k:v for k,v in json.loads(l).items() if k not in ('index','split')})) for l in sys.stdin]" >"$T/a.json" &&
	lf-inspect "$2" | python3 -c "import json,sys; [print(json.dumps({k:v for k,v in json.loads(l).items() if k not in ('index','split')})) for l in sys.stdin]" >"$T/b.json" &&
	cmp "$T/a.json" "$T/b.json"
}

# ---- outputs ----
t1() {
	lf-pack --cutoff-len 64 -o "$T/o1" "$T/id.lfs" 2>/dev/null &&
	[ -f "$T/o1/manifest.json" ] && [ -f "$T/o1/train-00000.shard" ] &&
	[ "$(lf-inspect --count "$T/o1")" = 91 ] && ! ls $T | grep -q tmp
}
check "a folder with a manifest and one shard" t1
t2() {
	lf-inspect "$T/o1" | python3 -c "
import json, sys
for l in sys.stdin:
    d = json.loads(l)
    assert len(d[\"input_ids\"]) == len(d[\"labels\"]) <= 64, d
    assert all(b in (a, -100) for a, b in zip(d[\"input_ids\"], d[\"labels\"])), d
"
}
check "every example is cut to cutoff_len and the labels align with the ids" t2
t3() {
	lf-inspect "$T/o1/train-00000.shard" >"$T/s1" && lf-inspect "$T/o1" >"$T/s2" && cmp "$T/s1" "$T/s2"
}
check "a shard file alone reads as the folder does" t3
t4() {
	lf-pack --cutoff-len 64 --shard-size 2K -o "$T/o2" "$T/id.lfs" 2>/dev/null &&
	[ "$(ls $T/o2/train-*.shard | wc -l)" -gt 3 ] && same_examples "$T/o1" "$T/o2"
}
check "--shard-size splits into several shards holding the same examples" t4
t5() {
	lf-pack --cutoff-len 64 --shard-size 2K --bundle "$T/o2.tar" -o "$T/o3" "$T/id.lfs" 2>/dev/null &&
	tar tf "$T/o2.tar" | head -1 | grep -q manifest.json && same_examples "$T/o2" "$T/o2.tar" &&
	lf-inspect --verify "$T/o2.tar"
}
check "--bundle writes one tar that lf-inspect reads in place" t5
t_untar() {
	mkdir "$T/untar" && tar -xf "$T/o2.tar" -C "$T/untar" && diff -r "$T/o3" "$T/untar"
}
check "GNU tar extracts the bundle to the very files of the folder" t_untar
t6() {
	lf-pack --cutoff-len 64 --val-size 0.1 -o "$T/v1" "$T/id.lfs" 2>/dev/null &&
	lf-pack --cutoff-len 64 --val-size 0.1 -o "$T/v2" "$T/id.lfs" 2>/dev/null &&
	[ "$(lf-inspect --count --split validation "$T/v1")" = 10 ] &&
	[ "$(lf-inspect --count --split train "$T/v1")" = 81 ] && same_examples "$T/v1" "$T/v2"
}
check "--val-size 0.1 holds out ceil(10%) of the examples, the same ones every run" t6
t7() {
	lf-pack --cutoff-len 64 --val-size 5 -o "$T/v3" "$T/id.lfs" 2>/dev/null &&
	lf-pack --cutoff-len 64 --val-size 5 --seed 7 -o "$T/v4" "$T/id.lfs" 2>/dev/null &&
	[ "$(lf-inspect --count --split validation "$T/v3")" = 5 ] && ! same_examples "$T/v3" "$T/v4"
}
check "--val-size 5 holds out 5 examples; a different --seed others" t7
t8() {
	lf-pack --cutoff-len 64 --shuffle -o "$T/sh" "$T/id.lfs" 2>/dev/null &&
	! same_examples "$T/o1" "$T/sh" &&
	sort "$T/a.json" >"$T/a.s" && sort "$T/b.json" >"$T/b.s" && cmp "$T/a.s" "$T/b.s"
}
check "--shuffle reorders the same examples" t8
t9() {
	lf-pack --cutoff-len 128 --packing -o "$T/p" "$T/id.lfs" 2>/dev/null &&
	lf-inspect "$T/p" | python3 -c "
import json, sys
n = 0
for l in sys.stdin:
    d = json.loads(l)
    assert len(d[\"input_ids\"]) == 128 and set(d[\"attention_mask\"]) == {1}, d
    starts = [i for i, p in enumerate(d[\"position_ids\"]) if p == 0]
    n += sum(1 for i in starts if d[\"input_ids\"][i] == 128000)
assert n == 91, n
"
}
check "--packing: every sequence is cutoff_len long, positions restart per example" t9
t10() {
	lf-pack --cutoff-len 128 --neat-packing -o "$T/np" "$T/id.lfs" 2>/dev/null &&
	lf-inspect "$T/np" | python3 -c "
import json, sys
for l in sys.stdin:
    d = json.loads(l)
    m = d[\"attention_mask\"]
    assert m[0] == 1 and max(m) >= 1 and all(b in (a, a + 1) or b == 0 for a, b in zip(m, m[1:])), m
"
}
check "--neat-packing numbers the packed examples in attention_mask" t10
t11() {
	lf-pack --cutoff-len 256 -o "$T/k" "$T/kto.lfs" 2>/dev/null &&
	lf-inspect --head 3 "$T/k" | python3 -c "
import json, sys
for l in sys.stdin:
    d = json.loads(l)
    assert {\"kl_input_ids\", \"kl_labels\", \"kto_tags\"} <= set(d) and len(d[\"input_ids\"]) <= 256, d
"
}
check "kto: each example has its KL completion and tag" t11
t12() {
	lf-inspect --stats "$T/p" | python3 -c "
import json, sys
s = json.load(sys.stdin)[\"train\"]
assert s[\"packed_examples\"] == 91 and s[\"longest\"] == 128 and 0.5 < s[\"packing_efficiency\"] < 1, s
"
}
check "--stats reports lengths, padding and packing efficiency" t12
t13() {
	lf-inspect --tokenizer "$L" "$T/p" | python3 -c "
import json, sys
texts = [json.loads(l)[\"text\"] for l in sys.stdin]
assert all(t.startswith(\"\u00ab<|begin_of_text|>\") and \"\u00bb\" in t for t in texts), texts[0]
assert any(\" \u2016 \u00ab<|begin_of_text|>\" in t for t in texts), texts[0]
"
}
check "--tokenizer decodes, ignored labels in guillemets, packed examples apart" t13
t14() {
	lf-pack --cutoff-len 32 -o "$T/o1" "$T/id.lfs" 2>/dev/null && lf-inspect --head 1 "$T/o1" | python3 -c "
import json, sys; assert len(json.loads(sys.stdin.readline())[\"input_ids\"]) <= 32"
}
check "an earlier lf-pack output is replaced" t14

# ---- bad input ----
mkdir "$T/mine" && echo keep >"$T/mine/notes.txt"
t15() {
	fails 1 "not an output of this tool" lf-pack -o "$T/mine" "$T/id.lfs" && [ -f "$T/mine/notes.txt" ]
}
check "a folder that is not an lf-pack output is not replaced" t15
t16() {
	head -c 3000 "$T/id.lfs" >"$T/cut.lfs" &&
	fails 1 "trailer\|truncated\|ends" lf-pack -o "$T/cut" "$T/cut.lfs" && [ ! -e "$T/cut" ] &&
	! ls $T | grep -q "cut.tmp"
}
check "a stream cut short is refused and leaves nothing" t16
check "a stream made with another tokenizer is refused with --tokenizer" \
	fails 1 "fingerprint\|tokenizer" lf-pack --tokenizer "$TOK/qwen3" -o "$T/q" "$T/id.lfs"
check "the stream's own tokenizer is accepted" lf-pack --tokenizer "$L" -o "$T/l" "$T/id.lfs"
t17() {
	lf-template -t llama3 --dataset-dir $SHARED --dataset identity -o "$T/t.lfs" 2>/dev/null &&
	fails 1 "token streams" lf-pack -o "$T/t" "$T/t.lfs"
}
check "a text stream is refused" t17
check "--train-on-prompt contradicting the stream is refused" \
	fails 1 "contradicts the stream" lf-pack --train-on-prompt -o "$T/x" "$T/id.lfs"
check "--neat-packing is for sft streams" fails 2 "sft streams only" lf-pack --neat-packing -o "$T/x" "$T/kto.lfs"
check "--stage must match the records" fails 1 "cannot make stage" lf-pack --stage kto -o "$T/x" "$T/id.lfs"
check "-o is required" fails 2 "-o DIR is required" lf-pack "$T/id.lfs"
check "a bad --shard-size is refused" fails 2 "not a size" lf-pack --shard-size 12Q -o "$T/x" "$T/id.lfs"

# Corruption: flip one byte in every region of a shard (header, data,
# index, metadata, checksum table) and cut it at several lengths; every
# damage is reported by lf-inspect (whole read and --verify) and by opening.
lf-pack --cutoff-len 64 -o "$T/c" "$T/id.lfs" 2>/dev/null
check "every flipped byte and every cut of a shard is detected" python3 - "$T/c/train-00000.shard" "$LF_BIN/lf-inspect" <<'PY'
import os, shutil, struct, subprocess, sys, tempfile
path, inspect = sys.argv[1], sys.argv[2]
data = open(path, "rb").read()
index, meta, meta_len, table = struct.unpack_from("<QQQQ", data, 40)
offsets = [0, 8, 16, 24, 40, 64, 100, 127, 128, 200, index - 8, index, index + 17,
           meta, meta + meta_len // 2, table, len(data) - 1]
d = tempfile.mkdtemp()
bad = []
def detected(blob, what):
    p = os.path.join(d, "x.shard")
    open(p, "wb").write(blob)
    for args in ([inspect, p], [inspect, "--verify", p]):
        r = subprocess.run(args, capture_output=True, text=True)
        if r.returncode != 1 or not any(w in r.stderr for w in ("corrupted", "truncated", "not an lf shard", "shard version")):
            bad.append((what, args[1], r.returncode, r.stderr.strip()[-200:]))
for off in offsets:
    b = bytearray(data)
    b[off] ^= 0x5A
    detected(bytes(b), "flip at %d" % off)
for cut in (0, 7, 127, 128, 500, index, meta, table, len(data) - 1):
    detected(data[:cut], "cut at %d" % cut)
detected(data + b"\0", "one byte appended")
shutil.rmtree(d)
for x in bad:
    print(x)
sys.exit(1 if bad else 0)
PY
t18() {
	cp -r "$T/c" "$T/m" && sed -i "s/\"examples\": 91/\"examples\": 90/" "$T/m/manifest.json" &&
	fails 1 "does not match the manifest" lf-inspect "$T/m"
}
check "a manifest that disagrees with its shards is refused" t18
t19() {
	head -c 5000 "$T/o2.tar" >"$T/cut.tar" && fails 1 "bundle\|corrupted\|truncated\|lacks" lf-inspect "$T/cut.tar"
}
check "a bundle cut short is refused" t19

# ---- recipes, logs, dataset options ----
cat >"$T/recipe.yaml" <<YAML
model_name_or_path: $L
stage: sft
do_train: true
finetuning_type: lora
dataset: identity
template: llama3
cutoff_len: 100
packing: true
val_size: 0.2
max_samples: 60
preprocessing_num_workers: 16
output_dir: saves/llama3/lora/sft
YAML
t_recipe() {
	lf-pack --config "$T/recipe.yaml" -o "$T/r" --log "$T/r.log" "$T/id.lfs" 2>/dev/null &&
	lf-inspect "$T/r" | python3 -c "
import json, sys
rows = [json.loads(l) for l in sys.stdin]
assert {len(r[\"input_ids\"]) for r in rows} == {100}, \"packed to cutoff_len\"
assert {r[\"split\"] for r in rows} == {\"train\", \"validation\"}
" && grep -q '"event": *"packed"' "$T/r.log" &&
	[ "$(lf-inspect --stats "$T/r" | python3 -c "import json,sys; s=json.load(sys.stdin); print(s[\"train\"][\"packed_examples\"] + s[\"validation\"][\"packed_examples\"])")" = 60 ]
}
check "a LLaMA-Factory recipe gives cutoff_len, packing, val_size, max_samples; --log records the counts" t_recipe
t_max() {
	lf-pack --max-samples 10 -o "$T/m10" "$T/id.lfs" 2>/dev/null && [ "$(lf-inspect --count "$T/m10")" = 10 ]
}
check "--max-samples keeps the first rows" t_max
check "an unknown --mix-strategy is refused" fails 2 "not concat" lf-pack --mix-strategy shuffle -o "$T/x" "$T/id.lfs"
check "--interleave-probs needs an interleave strategy" fails 2 "interleave mix strategy" \
	lf-pack --interleave-probs 0.5,0.5 -o "$T/x" "$T/id.lfs"
check "--interleave-probs needs one probability per dataset" fails 2 "2 probabilities for 1 datasets" \
	lf-pack --mix-strategy interleave_under --interleave-probs 0.5,0.5 -o "$T/x" "$T/id.lfs"
check "--val-size must be a fraction or a whole number" fails 2 "fraction below 1" lf-pack --val-size 2.5 -o "$T/x" "$T/id.lfs"
check "--val-size larger than the data is refused" fails 1 "val-size" lf-pack --val-size 500 -o "$T/x" "$T/id.lfs"
t_sigint() {
	mkfifo "$T/fifo" || return 1
	{ cat "$T/id.lfs"; sleep 3; } >"$T/fifo" &
	writer=$!
	lf-pack --shuffle -o "$T/int" "$T/fifo" 2>/dev/null &
	pid=$!
	sleep 1
	kill -INT "$pid"
	wait "$pid"
	rc=$?
	kill "$writer" 2>/dev/null
	wait
	# 130: stopped by SIGINT while it was reading (not failed before)
	[ "$rc" -eq 130 ] && [ ! -e "$T/int" ] && ! ls "$T" | grep -q "int.tmp"
}
check "Ctrl-C while packing leaves no output and no temporary folder" t_sigint
