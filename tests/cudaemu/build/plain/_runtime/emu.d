/work/main/tests/cudaemu/build/plain/_runtime/emu.o: \
 /work/main/tests/cudaemu/src/emu.cpp \
 /work/main/tests/cudaemu/include/cuda_runtime.h \
 /work/main/tests/cudaemu/include/vector_types.h \
 /work/main/tests/cudaemu/include/library_types.h
