#!/bin/bash
# cudaemu: build CUDA test programs for the CPU emulator.
#   build.sh OUTBIN FILE.cu [FILE2.cu|.cpp|.c|.o|.a ...] [-- extra link args]
# env: EMU_ASAN=1 (ASan+UBSan build), EMU_SHRINK=0 (keep the tests' timing
# loops and big shapes), EMU_SUBST='regex=>repl;;...', EMU_CXXFLAGS,
# EMU_CFLAGS, EMU_BUILD_DIR, EMU_ROOT (default: the repository), EMU_NICE.
# See tests/cudaemu/README.
exec python3 "$(dirname "$(readlink -f "$0")")/build.py" "$@"
