# kernels/kernels.mk — compute kernels, included by the top-level Makefile
# (which sets OUT, CC, CFLAGS_ALL, LDFLAGS_ALL, STATIC, SANITIZE).
#
#   $(OUT)/libkernels_cpu.a        kernels/cpu/*.c: CPU reference (OpenBLAS)
#   $(OUT)/tests/kernels_cpu_check its check, runnable anywhere
#   $(OUT)/libkernels_cuda.a       kernels/cuda/*.cu (only where nvcc is found)
#   $(OUT)/tests/cuda_smoke        GPU smoke test (only where nvcc is found)
#   $(OUT)/tests/cuda_test_NAME    tests/cuda/test_NAME.cu: GPU checks of
#                                  kernels/cuda against the CPU ops (only
#                                  where nvcc is found)
#
# Programs that use the kernels link $(KERNELS_CPU_LINK) and, with CUDA,
# $(KERNELS_CUDA_LINK) (these include the library archives themselves).
# STATIC=1 links OpenBLAS and libgomp statically; the CUDA runtime is always
# static (nvcc's default) and cuBLASLt is always shared (no static one here),
# found at run time through the rpath below or LD_LIBRARY_PATH.
# `make NVCC=` builds without CUDA even where nvcc exists.

.PHONY: kernels kernels-cpu kernels-cuda
all: kernels

# ---- CPU reference --------------------------------------------------------

OPENBLAS_INC ?= $(firstword $(wildcard /usr/include/x86_64-linux-gnu/openblas-openmp \
                  /usr/include/openblas) /usr/include)
OPENBLAS_DIR ?= $(firstword $(wildcard /usr/lib/x86_64-linux-gnu/openblas-openmp) \
                  /usr/lib/x86_64-linux-gnu)

ifeq ($(STATIC),1)
  # whole static archives: the binary then needs only glibc (and, for CUDA,
  # the driver and libcublasLt)
  # (OpenBLAS's LAPACK, which PiSSA's SVD uses, is Fortran: libgfortran too)
  OPENBLAS_LINK := $(OPENBLAS_DIR)/libopenblas.a $(shell $(CC) -print-file-name=libgomp.a) \
                   $(shell $(CC) -print-file-name=libgfortran.a) $(shell $(CC) -print-file-name=libquadmath.a) \
                   -lpthread -ldl -lm
else
  OPENBLAS_LINK := -L$(OPENBLAS_DIR) -lopenblas -lgomp -lm
endif

KERNELS_CPU_SRC := $(wildcard kernels/cpu/*.c)
KERNELS_CPU_OBJ := $(patsubst %.c,$(OUT)/obj/%.o,$(KERNELS_CPU_SRC))
KERNELS_CPU_LIB := $(OUT)/libkernels_cpu.a
KERNELS_CPU_LINK := $(KERNELS_CPU_LIB) $(OPENBLAS_LINK)
KERNELS_CPU_CHECK := $(OUT)/tests/kernels_cpu_check
KERNELS_TEST_OBJ := $(OUT)/obj/tests/cuda/cpu_ref_check.o

kernels: kernels-cpu
kernels-cpu: $(KERNELS_CPU_LIB) $(KERNELS_CPU_CHECK)

$(KERNELS_CPU_OBJ) $(KERNELS_TEST_OBJ): $(OUT)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -I$(OPENBLAS_INC) -MMD -MP -c $< -o $@

$(KERNELS_CPU_LIB): $(KERNELS_CPU_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(KERNELS_CPU_CHECK): $(KERNELS_TEST_OBJ) $(KERNELS_CPU_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) $< $(KERNELS_CPU_LINK) -o $@

-include $(KERNELS_CPU_OBJ:.o=.d) $(KERNELS_TEST_OBJ:.o=.d)

# ---- CUDA -----------------------------------------------------------------

ifeq ($(origin NVCC),undefined)
  NVCC := $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
endif

# Sanitizer builds leave CUDA out: nvcc objects are not instrumented and the
# GPU test does not run under ASan.
ifneq ($(SANITIZE),1)
ifneq ($(NVCC),)

# sm_90a: H100/H200 (arch-specific features need the "a" target); sm_80:
# A100, compiled so it keeps building, not run here.
NVCC_GENCODE := -gencode=arch=compute_90a,code=sm_90a -gencode=arch=compute_80,code=sm_80
NVCCFLAGS_ALL := -O2 -g -lineinfo -std=c++17 $(NVCC_GENCODE) -Ikernels \
  -Xcompiler -Wall,-Wextra,-Wno-missing-field-initializers $(NVCCFLAGS)
# where libcublasLt.so.13 is looked for at run time, before LD_LIBRARY_PATH
# fails over; gpu-check.sh adds the GPU machine's other locations
CUDA_RPATH := /usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib
CUDA_LINK := -lcublasLt -Xlinker -rpath=$(CUDA_RPATH)

KERNELS_CUDA_SRC := $(wildcard kernels/cuda/*.cu)
KERNELS_CUDA_OBJ := $(patsubst %.cu,$(OUT)/obj/%.o,$(KERNELS_CUDA_SRC))
KERNELS_CUDA_LIB := $(OUT)/libkernels_cuda.a
KERNELS_CUDA_LINK := $(KERNELS_CUDA_LIB) $(CUDA_LINK)
CUDA_SMOKE := $(OUT)/tests/cuda_smoke
CUDA_SMOKE_OBJ := $(OUT)/obj/tests/cuda/smoke.o
CUDA_TEST_SRC := $(wildcard tests/cuda/test_*.cu)
CUDA_TEST_OBJ := $(patsubst %.cu,$(OUT)/obj/%.o,$(CUDA_TEST_SRC))
CUDA_TESTS := $(patsubst tests/cuda/test_%.cu,$(OUT)/tests/cuda_test_%,$(CUDA_TEST_SRC))

kernels: kernels-cuda
kernels-cuda: $(KERNELS_CUDA_LIB) $(CUDA_SMOKE) $(CUDA_TESTS)

$(KERNELS_CUDA_OBJ) $(CUDA_SMOKE_OBJ) $(CUDA_TEST_OBJ): $(OUT)/obj/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS_ALL) -Ilibcommon $(PKG_CFLAGS) -MMD -MP -c $< -o $@

$(KERNELS_CUDA_LIB): $(KERNELS_CUDA_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# nvcc drives the link so the static CUDA runtime comes along
$(CUDA_SMOKE): $(CUDA_SMOKE_OBJ) $(KERNELS_CUDA_LIB) $(KERNELS_CPU_LIB)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCC_GENCODE) $< $(KERNELS_CUDA_LINK) $(KERNELS_CPU_LINK) -o $@

# linked as cuda_smoke is (the CPU ops are their reference)
$(OUT)/tests/cuda_test_%: $(OUT)/obj/tests/cuda/test_%.o $(KERNELS_CUDA_LIB) $(KERNELS_CPU_LIB)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCC_GENCODE) $< $(KERNELS_CUDA_LINK) $(KERNELS_CPU_LINK) -o $@

-include $(KERNELS_CUDA_OBJ:.o=.d) $(CUDA_SMOKE_OBJ:.o=.d) $(CUDA_TEST_OBJ:.o=.d)

# libcommon's GPU half (libcommon/*.cu: the model's training pass on the
# device), for the programs that take --device cuda: their objects get
# -DLF_HAVE_CUDA and they link $(LIB_CUDA_LINK).  The CUDA runtime is
# linked statically, as nvcc links it.
LIB_CUDA_SRC := $(wildcard libcommon/*.cu)
LIB_CUDA_OBJ := $(patsubst %.cu,$(OUT)/obj/%.o,$(LIB_CUDA_SRC))
LIB_CUDA := $(OUT)/libcommon_cuda.a
CUDA_LIBDIR := $(dir $(patsubst %/,%,$(dir $(NVCC))))lib64
LIB_CUDA_LINK := $(LIB_CUDA) $(KERNELS_CUDA_LIB) -L$(CUDA_LIBDIR) -lcudart_static -lcublasLt \
  -Wl,-rpath=$(CUDA_RPATH) -lrt -ldl -lpthread -lstdc++
LIB_CUDA_CFLAGS := -DLF_HAVE_CUDA

$(LIB_CUDA_OBJ): $(OUT)/obj/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS_ALL) -Ilibcommon $(PKG_CFLAGS) -MMD -MP -c $< -o $@

$(LIB_CUDA): $(LIB_CUDA_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

kernels-cuda: $(LIB_CUDA)

# the whole model against the CPU path, and gpu-check's training
# benchmark: libcommon on both sides
CUDA_MODEL_PROGS := $(OUT)/tests/cuda_test_model $(OUT)/tests/cuda_bench_train
CUDA_BENCH_OBJ := $(OUT)/obj/tests/cuda/bench_train.o
kernels-cuda: $(CUDA_MODEL_PROGS)
$(CUDA_BENCH_OBJ): $(OUT)/obj/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS_ALL) -Ilibcommon $(PKG_CFLAGS) -MMD -MP -c $< -o $@
$(CUDA_MODEL_PROGS): $(OUT)/tests/cuda_%: $(OUT)/obj/tests/cuda/%.o $(LIB_CUDA) $(LIB) $(KERNELS_CUDA_LIB) $(KERNELS_CPU_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) $< $(LIB_CUDA_LINK) $(LIB) $(KERNELS_CPU_LINK) $(LDLIBS_ALL) -o $@
-include $(CUDA_BENCH_OBJ:.o=.d)

-include $(LIB_CUDA_OBJ:.o=.d)

else
kernels-cuda:
endif
else
kernels-cuda:
endif
