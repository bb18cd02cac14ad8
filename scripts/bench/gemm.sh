#!/bin/bash
# scripts/bench/gemm.sh — lf's own f32 product (kernels/cpu/gemm.c) against
# OpenBLAS's cblas_sgemm on the products of scripts/bench/train.sh's training
# step and of its LoRA adapters, same threads, interleaved (scripts/bench/gemm.c
# has the details).  Prints GFLOP/s per shape and the ratio OpenBLAS time /
# lf time (> 1: lf faster), and each block's total per step.
#
# Usage: scripts/bench/gemm.sh
#   LF_BENCH_THREADS   threads on both sides (default 2)
set -euo pipefail
cd "$(dirname "$0")/../.."
threads=${LF_BENCH_THREADS:-2}
[ "${LF_BENCH_NO_MAKE:-0}" = 1 ] || make -s kernels-cpu
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# OpenBLAS's OpenMP build where it is, as kernels/kernels.mk finds it
blas_inc=/usr/include blas_dir=/usr/lib/x86_64-linux-gnu
[ -d /usr/include/x86_64-linux-gnu/openblas-openmp ] && blas_inc=/usr/include/x86_64-linux-gnu/openblas-openmp
[ -d /usr/lib/x86_64-linux-gnu/openblas-openmp ] && blas_dir=/usr/lib/x86_64-linux-gnu/openblas-openmp
cc -O2 -fopenmp -Ikernels -I"$blas_inc" scripts/bench/gemm.c build/dyn/libkernels_cpu.a -L"$blas_dir" -lopenblas \
	-lgomp -lm -o "$work/gemm"
echo "lf_cpu_sgemm_f32 vs OpenBLAS $(python3 -c 'import ctypes; l=ctypes.CDLL("libopenblas.so.0"); l.openblas_get_config.restype=ctypes.c_char_p; print(l.openblas_get_config().decode())' 2>/dev/null || true), $threads threads"
OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads "$work/gemm"
