/work/main/tests/cudaemu/build/plain/_runtime/cublaslt.o: \
 /work/main/tests/cudaemu/src/cublaslt.cpp \
 /work/main/tests/cudaemu/include/cublasLt.h \
 /work/main/tests/cudaemu/include/cuda_runtime.h \
 /work/main/tests/cudaemu/include/vector_types.h \
 /work/main/tests/cudaemu/include/library_types.h \
 /work/main/tests/cudaemu/include/cuda_bf16.h \
 /work/main/tests/cudaemu/include/cuda_fp16.h
