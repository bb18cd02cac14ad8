#!/usr/bin/env bash
# scripts/gpu-check.sh — build here, check on a GPU machine.
#
# Two phases, because the GPU machine has none of our Debian libraries and no
# compiler set up for us:
#
#   scripts/gpu-check.sh --build
#       On the build machine (here): `make STATIC=1 kernels` and lf-init,
#       run the CPU reference check, and pack what the GPU machine runs
#       (build/static/tests/cuda_smoke, the tests cuda_test_*, the benchmark
#       cuda_bench_train, kernels_cpu_check, build/static/bin/lf-init:
#       static except for glibc, libstdc++ and libcublasLt; stripped) into
#       build/gpu-check.tar.xz, the one file to carry (~14 MB: each binary
#       holds its own static OpenBLAS and device code, ~200 MB unpacked).
#
#   scripts/gpu-check.sh [--quick]
#       On the GPU machine, from the repo root, with $OUT set to a results
#       folder (default build/gpu-check): unpack build/gpu-check.tar.xz
#       when it is there, print the nvidia-smi summary, point
#       LD_LIBRARY_PATH at a libcublasLt.so.13, run the CPU check, the GPU
#       smoke test and every build/static/tests/cuda_test_* (each 60 s at
#       most; under 5 minutes in all; cuda_test_model gets one small random
#       model per architecture, made there with lf-init), then
#       tests/cuda/bf16_vs_torch.py (the bf16 mode against PyTorch's bf16 on
#       the same GPU), and write
#       $OUT/gpu-check.log and $OUT/summary.txt.  --quick skips the GEMM
#       timing and the training benchmarks.  Exits 0 when every check
#       passes, 1 when one fails (or a test exits non-zero), 2 when it
#       could not run at all (no device).
#
# The training benchmarks (not with --quick): tests/cuda/bench_train.cu
# (cuda_bench_train, the CUDA path) and scripts/bench/gpu-train-peer.py
# (PyTorch + transformers + PEFT, pure bf16, sdpa) on the same work in the
# same run: full fine-tuning of a ~1B llama config (TinyLlama's shape) and
# LoRA r=16 on every linear layer of an 8B one (Llama 3's), seq 2048,
# gradient checkpointing, random weights made there; tokens/s, MFU, device
# memory and the ratios, into $OUT/bench.txt.

set -u -o pipefail

cd "$(dirname "$0")/.." || exit 2
BUILD=build/static/tests
INIT=build/static/bin/lf-init
SMOKE=$BUILD/cuda_smoke
CPU_CHECK=$BUILD/kernels_cpu_check

usage() {
    echo "usage: scripts/gpu-check.sh --build | [--quick]" >&2
    exit 2
}

phase=check
quick=
for arg in "$@"; do
    case $arg in
        --build) phase=build ;;
        --quick) quick=--quick ;;
        -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) usage ;;
    esac
done

# ---- phase 1: build here ---------------------------------------------------
if [ "$phase" = build ]; then
    make --no-print-directory STATIC=1 -j2 kernels "$INIT" || exit 1
    for f in "$SMOKE" "$INIT" $(ls tests/cuda/test_*.cu | sed "s|tests/cuda/test_\(.*\)\.cu|$BUILD/cuda_test_\1|"); do
        if [ ! -x "$f" ]; then
            echo "gpu-check: $f was not built (is nvcc on PATH?)" >&2
            exit 1
        fi
    done
    "$CPU_CHECK" | tail -n 1 || exit 1
    pack=$(mktemp -d) || exit 1
    for f in "$SMOKE" "$BUILD"/cuda_test_* "$BUILD/cuda_bench_train" "$CPU_CHECK" "$INIT"; do
        [ -x "$f" ] || continue
        mkdir -p "$pack/$(dirname "$f")" && strip -o "$pack/$f" "$f" || exit 1
    done
    tar -C "$pack" -cJf build/gpu-check.tar.xz.tmp build && mv build/gpu-check.tar.xz.tmp build/gpu-check.tar.xz ||
        exit 1
    rm -rf "$pack"
    echo
    echo "carry to the GPU machine: build/gpu-check.tar.xz ($(du -h build/gpu-check.tar.xz | cut -f1)), holding:"
    tar -tJf build/gpu-check.tar.xz | grep -v '/$' | sed 's/^/  /'
    echo "then run there: scripts/gpu-check.sh [--quick]"
    exit 0
fi

# ---- phase 2: check on the GPU machine --------------------------------------
if [ -f build/gpu-check.tar.xz ]; then
    tar -xJf build/gpu-check.tar.xz 2>/dev/null ||
        python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(".")' build/gpu-check.tar.xz ||
        { echo "gpu-check: cannot unpack build/gpu-check.tar.xz" >&2; exit 2; }
fi
if [ ! -x "$SMOKE" ]; then
    echo "gpu-check: $SMOKE not found; run 'scripts/gpu-check.sh --build' on the" \
         "build machine first and carry $BUILD here" >&2
    exit 2
fi

RESULTS=${OUT:-build/gpu-check}
mkdir -p "$RESULTS" || exit 2
LOG=$RESULTS/gpu-check.log
SUMMARY=$RESULTS/summary.txt
: > "$LOG"

log() { printf '%s\n' "$*" | tee -a "$LOG"; }

# directories on this machine holding libcublasLt.so.13, CUDA installs first
# then the pip wheels (nvidia/cublas/lib, nvidia/cu13/lib, ...)
# lib_dirs NAME: directories on this machine holding the shared library
# NAME, CUDA installs first then the pip wheels (nvidia/cublas/lib,
# nvidia/nccl/lib, nvidia/cu13/lib, ...)
lib_dirs() {
    local d py sp
    for d in /usr/local/cuda*/lib64 /usr/local/cuda*/targets/*/lib \
             /usr/lib/x86_64-linux-gnu /usr/lib64; do
        [ -e "$d/$1" ] && echo "$d"
    done
    for py in python3 python; do
        command -v "$py" >/dev/null 2>&1 || continue
        for sp in $("$py" -c 'import site, sys
print("\n".join(site.getsitepackages() + [site.getusersitepackages()]))' 2>/dev/null); do
            [ -d "$sp/nvidia" ] || continue
            find "$sp/nvidia" -maxdepth 4 -name "$1*" -printf '%h\n' 2>/dev/null
        done
        break
    done
}

# libcublasLt (linked) and libnccl (loaded when a group is joined)
extra=
while IFS= read -r d; do
    [ -z "$d" ] && continue
    d=$(readlink -f "$d")
    case ":$extra:" in *":$d:"*) ;; *) extra=${extra:+$extra:}$d ;; esac
done < <({ lib_dirs libcublasLt.so.13; lib_dirs libnccl.so.2; } | awk '!seen[$0]++')
export LD_LIBRARY_PATH=${extra}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

log "== gpu-check $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
log "== nvidia-smi"
if command -v nvidia-smi >/dev/null 2>&1; then
    timeout 30 nvidia-smi --query-gpu=index,name,driver_version,compute_cap,memory.total,memory.used,temperature.gpu,power.draw,clocks.sm \
        --format=csv 2>&1 | tee -a "$LOG"
else
    log "nvidia-smi not found"
fi
log "== libcublasLt.so.13 / libnccl.so.2 directories: ${extra:-none found, relying on the rpath of the binary}"
ldd "$SMOKE" 2>&1 | grep -E 'cublasLt|not found' | sed 's/^[[:space:]]*/  /' | tee -a "$LOG"

rc_cpu=0
log "== $CPU_CHECK"
if [ -x "$CPU_CHECK" ]; then
    timeout 60 "$CPU_CHECK" > "$RESULTS/kernels_cpu_check.log" 2>&1
    rc_cpu=$?
    grep -v '^ok ' "$RESULTS/kernels_cpu_check.log" | tee -a "$LOG"
else
    log "(not carried; skipped)"
fi

log "== $SMOKE $quick"
timeout 150 "$SMOKE" $quick 2>&1 | tee -a "$LOG"
rc_smoke=${PIPESTATUS[0]}
[ "$rc_smoke" = 124 ] && log "gpu-check: cuda_smoke timed out after 150 s"

# the whole-model check's models: every architecture the GPU path runs,
# small, with sliding windows shorter than its rows
MODELS=$RESULTS/models
rm -rf "$MODELS"
models=
if [ -x "$INIT" ]; then
    mkdir -p "$MODELS"
    for spec in "llama" "llama_tied --tie-word-embeddings" "mistral --sliding-window 16" \
                "qwen2 --sliding-window 16" "qwen3" "gemma" "gemma2 --sliding-window 16" "phi3" \
                "mixtral --num-local-experts 4 --num-experts-per-tok 2"; do
        name=${spec%% *}
        type=${name%_tied}
        opts=${spec#"$name"}
        # shellcheck disable=SC2086
        if "$INIT" -t "$type" --hidden-size 64 --intermediate-size 96 --num-hidden-layers 2 \
               --num-attention-heads 4 --num-key-value-heads 2 --initializer-range 0.1 $opts \
               -o "$MODELS/$name" >> "$LOG" 2>&1; then
            models="$models $MODELS/$name"
        else
            log "gpu-check: lf-init could not make the $name model"
        fi
    done
else
    log "gpu-check: $INIT not carried: cuda_test_model has no models"
fi

# the GPU tests: each exits 0 (all pass), 1 (one failed) or 2 (no device)
tests_run=0
tests_bad=0
tests_rc=
for t in "$BUILD"/cuda_test_*; do
    [ -x "$t" ] || continue
    args=
    # shellcheck disable=SC2086
    [ "$(basename "$t")" = cuda_test_model ] && args=$models
    log "== $t${args:+ (models:$args)}"
    # shellcheck disable=SC2086
    timeout 60 "$t" $args 2>&1 | tee -a "$LOG"
    rc_t=${PIPESTATUS[0]}
    [ "$rc_t" = 124 ] && log "gpu-check: $(basename "$t") timed out after 60 s"
    tests_run=$((tests_run + 1))
    [ "$rc_t" = 0 ] || tests_bad=$((tests_bad + 1))
    tests_rc="$tests_rc, $(basename "$t") exit $rc_t"
done
[ "$tests_run" = 0 ] && log "gpu-check: no $BUILD/cuda_test_* found (not carried?)"

# the bf16 mode against PyTorch's bf16 on this GPU (PyTorch, transformers
# and safetensors are on the GPU machine)
if [ -x "$BUILD/cuda_test_model" ] && [ -d "$MODELS/llama" ] &&
   python3 -c 'import torch, transformers, safetensors' 2>/dev/null; then
    log "== tests/cuda/bf16_vs_torch.py"
    timeout 120 python3 tests/cuda/bf16_vs_torch.py "$BUILD/cuda_test_model" "$MODELS/llama" \
        "$RESULTS/bf16-vs-torch" 2>&1 | grep -v -i warn | tee -a "$LOG"
    rc_t=${PIPESTATUS[0]}
    tests_run=$((tests_run + 1))
    [ "$rc_t" = 0 ] || tests_bad=$((tests_bad + 1))
    tests_rc="$tests_rc, bf16_vs_torch exit $rc_t"
else
    log "gpu-check: bf16_vs_torch skipped (no cuda_test_model, llama model or PyTorch + transformers)"
fi

# ---- training benchmarks ----
if [ -z "$quick" ]; then
    B=$RESULTS/bench-models
    mkdir -p "$B/llama-1b" "$B/llama-8b"
    cat > "$B/llama-1b/config.json" <<'JSON'
{"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 2048, "intermediate_size": 5632,
 "num_hidden_layers": 22, "num_attention_heads": 32, "num_key_value_heads": 4, "vocab_size": 32000,
 "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu",
 "tie_word_embeddings": false, "torch_dtype": "bfloat16"}
JSON
    cat > "$B/llama-8b/config.json" <<'JSON'
{"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336,
 "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
 "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "hidden_act": "silu",
 "tie_word_embeddings": false, "torch_dtype": "bfloat16"}
JSON
    BENCH=$RESULTS/bench.txt
    : > "$BENCH"
    log "== training benchmarks (seq 2048; lf: the bf16 mode; torch: pure bf16)"
    for run in "llama-1b full 2048 4 3 16" "llama-8b lora 2048 2 3 16"; do
        set -- $run
        # shellcheck disable=SC2086
        timeout 150 "$BUILD/cuda_bench_train" "$B/$1" ${run#* } bf16 2>&1 | tee -a "$LOG" "$BENCH"
        # shellcheck disable=SC2086
        timeout 150 python3 scripts/bench/gpu-train-peer.py "$B/$1" ${run#* } bf16 2>&1 | tail -n 3 |
            tee -a "$LOG" "$BENCH"
        lf_tps=$(grep "^BENCH lf $1-$2-bf16 " "$BENCH" | grep -oE 'tokens_per_s=[0-9.]+' | cut -d= -f2)
        pt_tps=$(grep "^BENCH torch $1-$2-bf16 " "$BENCH" | grep -oE 'tokens_per_s=[0-9.]+' | cut -d= -f2)
        if [ -n "$lf_tps" ] && [ -n "$pt_tps" ]; then
            log "ratio $1-$2: lf/torch tokens/s = $(awk -v a="$lf_tps" -v b="$pt_tps" 'BEGIN { printf "%.3f", a / b }')"
            grep "^ratio $1-$2" "$LOG" | tail -n 1 >> "$BENCH"
        fi
    done
fi

npass=$(grep -c '^PASS ' "$LOG")
nfail=$(grep -c '^FAIL ' "$LOG")
if [ -x "$CPU_CHECK" ]; then
    if [ "$rc_cpu" = 0 ]; then npass=$((npass + 1)); else nfail=$((nfail + 1)); fi
fi
device=$(grep -m1 '^device ' "$LOG" | sed 's/^device [0-9]*: //')
cc=$(grep -m1 'compute capability' "$LOG" | sed 's/^[[:space:]]*//')
tflops=$(grep -E '^(PASS|FAIL) gemm_.*_timing' "$LOG" | grep -oE '[0-9.]+ TFLOP/s' | head -n 1)

if [ "$rc_smoke" = 0 ] && [ "$rc_cpu" = 0 ] && [ "$tests_bad" = 0 ]; then
    status=ok; rc=0
elif [ "$rc_smoke" = 2 ]; then
    status="no CUDA device"; rc=2
else
    status=failed; rc=1
    [ "$rc_smoke" = 124 ] && status="failed (cuda_smoke timed out)"
    [ "$rc_smoke" = 0 ] && [ "$rc_cpu" = 0 ] && status="failed ($tests_bad of $tests_run kernel tests)"
fi
{
    echo "status: $status"
    echo "device: ${device:-unknown}"
    echo "${cc:-compute capability: unknown}"
    echo "checks: $npass passed, $nfail failed (cuda_smoke exit $rc_smoke, kernels_cpu_check exit $rc_cpu$tests_rc)"
    echo "gemm 4096^3 bf16: ${tflops:-not timed}"
    [ -s "$RESULTS/bench.txt" ] && grep -E '^(BENCH|ratio)' "$RESULTS/bench.txt"
} > "$SUMMARY"
log "== summary ($SUMMARY)"
tee -a "$LOG" < "$SUMMARY"
exit $rc
