# lf — build every program into bin/, the shared library libcommon into build/,
# CUDA parts where nvcc is found.  `make STATIC=1` links our Debian libraries
# statically (into build/static/bin) so the binaries run on a machine that has
# only the CUDA driver and runtime.

VERSION := $(shell cat VERSION)
STATIC ?= 0
SANITIZE ?= 0
CC ?= cc

ifeq ($(SANITIZE),1)
  OUT := build/asan
  BINDIR := build/asan/bin
  OPT := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else ifeq ($(STATIC),1)
  OUT := build/static
  BINDIR := build/static/bin
  OPT := -O2 -g
else
  OUT := build/dyn
  BINDIR := bin
  OPT := -O2 -g
endif

# Debian libraries the product links (scripts/install-deps.sh installs them).
PKGS := msgpack libarchive yaml-0.1 jansson libutf8proc libpcre2-8 libxxhash libpng
ifeq ($(STATIC),1)
  PKG_LIBS := -Wl,-Bstatic -Wl,--start-group $(shell pkg-config --static --libs $(PKGS)) -Wl,--end-group -Wl,-Bdynamic
else
  PKG_LIBS := $(shell pkg-config --libs $(PKGS))
endif
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))

# Open MPI, where its development files are (and not in the static build:
# the GPU machines have no Open MPI): lf-train's data-parallel runs.
# `make MPI=0` builds without it.
ifeq ($(STATIC),1)
  MPI := 0
endif
MPI ?= $(shell pkg-config --exists ompi-c && echo 1 || echo 0)
ifeq ($(MPI),1)
  MPI_CFLAGS := -DLF_HAVE_MPI $(shell pkg-config --cflags ompi-c)
  MPI_LIBS := $(shell pkg-config --libs ompi-c)
endif

CFLAGS_ALL := $(OPT) -fopenmp -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Wno-missing-field-initializers \
  -Ilibcommon -Ikernels $(PKG_CFLAGS) -DLF_VERSION='"$(VERSION)"' $(CFLAGS)
LDFLAGS_ALL := $(OPT) $(LDFLAGS)
LDLIBS_ALL := $(PKG_LIBS) -lm $(LDLIBS)

LIB_SRC := $(wildcard libcommon/*.c)
LIB_OBJ := $(patsubst %.c,$(OUT)/obj/%.o,$(LIB_SRC))
LIB := $(OUT)/libcommon.a

TOOL_SRC := $(wildcard tools/lf-*.c)
TOOLS := $(patsubst tools/%.c,$(BINDIR)/%,$(TOOL_SRC))

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNITS := $(patsubst tests/unit/%.c,$(OUT)/tests/%,$(UNIT_SRC))
HELPER_SRC := $(wildcard tests/helpers/*.c)
HELPERS := $(patsubst tests/helpers/%.c,$(OUT)/tests/helpers/%,$(HELPER_SRC))

.PHONY: all tools tests test test-asan clean
all: tools tests

tools: $(TOOLS)
tests: $(UNITS) $(HELPERS)

$(OUT)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(OUT)/obj/libcommon/dist.o: CFLAGS_ALL += $(MPI_CFLAGS)
$(BINDIR)/lf-train: LDLIBS_ALL += $(MPI_LIBS)

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# CUDA and CPU compute kernels (built where nvcc is found); every program
# links the CPU ones (the model runtime in libcommon calls them).
include kernels/kernels.mk

$(BINDIR)/%: $(OUT)/obj/tools/%.o $(LIB) $(KERNELS_CPU_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) $< $(LIB) $(KERNELS_CPU_LINK) $(LDLIBS_ALL) -o $@

# PROGRAM-cuda: the programs that take --device cuda, built again with
# their GPU path where CUDA is built (libcommon/device.h: a program of its
# own because loading cuBLASLt costs ~0.15 s and 200 MB at every start;
# PROGRAM starts it for --device cuda).
CUDA_TOOLS := lf-train lf-eval lf-generate lf-chat
ifdef LIB_CUDA
tools: $(patsubst %,$(BINDIR)/%-cuda,$(CUDA_TOOLS))
$(patsubst %,$(OUT)/obj/tools/%-cuda.o,$(CUDA_TOOLS)): $(OUT)/obj/tools/%-cuda.o: tools/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(LIB_CUDA_CFLAGS) -MMD -MP -c $< -o $@
$(patsubst %,$(BINDIR)/%-cuda,$(CUDA_TOOLS)): $(BINDIR)/%-cuda: $(OUT)/obj/tools/%-cuda.o $(LIB_CUDA) \
		$(KERNELS_CUDA_LIB) $(LIB) $(KERNELS_CPU_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) $< $(LIB_CUDA_LINK) $(LIB) $(KERNELS_CPU_LINK) $(LDLIBS_ALL) -o $@
$(BINDIR)/lf-train-cuda: LDLIBS_ALL += $(MPI_LIBS)
-include $(patsubst %,$(OUT)/obj/tools/%-cuda.d,$(CUDA_TOOLS))
endif

$(OUT)/tests/%: $(OUT)/obj/tests/unit/%.o $(LIB) $(KERNELS_CPU_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) $< $(LIB) $(KERNELS_CPU_LINK) $(LDLIBS_ALL) -o $@

$(OUT)/tests/helpers/%: $(OUT)/obj/tests/helpers/%.o $(LIB) $(KERNELS_CPU_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) $< $(LIB) $(KERNELS_CPU_LINK) $(LDLIBS_ALL) -o $@

# `make test`: every suite, ending with "N passed, N failed".
test: all
	@LF_BIN=$(abspath $(BINDIR)) LF_UNITS=$(abspath $(OUT)/tests) sh tests/run.sh

# `make test-asan`: every suite again with AddressSanitizer + UBSan builds of
# every program and test (the oracle comparisons included: they drive the
# tools through the most code).
test-asan:
	@$(MAKE) --no-print-directory SANITIZE=1 all
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
	  LF_BIN=$(abspath build/asan/bin) LF_UNITS=$(abspath build/asan/tests) sh tests/run.sh

clean:
	rm -rf build bin

-include $(LIB_OBJ:.o=.d) $(patsubst %,$(OUT)/obj/tools/%.d,$(notdir $(TOOLS))) $(patsubst %,$(OUT)/obj/tests/unit/%.d,$(notdir $(UNITS)))
# keep objects of helpers and tests between builds
.SECONDARY:
