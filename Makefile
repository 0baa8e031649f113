# gemma-shear — `make` builds every program on CPU (BLIS + OpenMP); `make test` runs the tests;
# `make demo` runs the whole pipeline on the embedded default; `make bench` measures.
# Missing Debian/npm packages are installed by `make deps` (called by test and demo) when possible.

CC      ?= gcc
OPT     ?= -O3 -march=native
CFLAGS  += $(OPT) -std=gnu11 -fopenmp -Wall -Wextra -Wno-unused-parameter -Wno-unused-function -I.
LDLIBS  += -lcjson -lm
DEBUG_FLAGS = -O0 -g -fsanitize=address,undefined -fno-omit-frame-pointer

# --- what we found (one line each) -----------------------------------------------------------------
BLIS_INC ?= /usr/include/x86_64-linux-gnu/blis-openmp
BLIS_LIB ?= /usr/lib/x86_64-linux-gnu/blis-openmp
NO_BLIS  ?=
ifeq ($(NO_BLIS),)
  ifneq ($(wildcard $(BLIS_INC)/blis.h),)
    CFLAGS += -isystem $(BLIS_INC) -DUSE_BLIS
    LDLIBS += -L$(BLIS_LIB) -Wl,-rpath,$(BLIS_LIB) -lblis
    $(info [build] BLIS     found   ($(BLIS_INC)))
  else
    $(info [build] BLIS     missing (make deps installs libblis-openmp-dev; NO_BLIS=1 builds the slow plain-C matmul))
  endif
else
  $(info [build] BLIS     off     (NO_BLIS=1: plain-C matmul))
endif
$(if $(shell echo 'int main(){return 0;}' | $(CC) -fopenmp -x c - -o /dev/null 2>/dev/null && echo y),\
  $(info [build] OpenMP   found),$(info [build] OpenMP   missing (gcc -fopenmp failed)))
$(if $(wildcard /usr/include/stb/stb_image_write.h),$(info [build] stb      found   (/usr/include/stb)),\
  $(info [build] stb      missing (make deps installs libstb-dev)))
CFLAGS += -I/usr/include/stb
$(if $(wildcard /usr/include/cjson/cJSON.h),$(info [build] cJSON    found),\
  $(info [build] cJSON    missing (make deps installs libcjson-dev)))
NVCC  ?= $(firstword $(wildcard /usr/local/cuda/bin/nvcc) $(shell command -v nvcc 2>/dev/null))
HIPCC ?= $(shell command -v hipcc 2>/dev/null)
$(if $(NVCC),$(info [build] nvcc     found   ($(NVCC))),$(info [build] nvcc     missing (GPU path for NVIDIA not built)))
$(if $(HIPCC),$(info [build] hipcc    found   ($(HIPCC))),$(info [build] hipcc    missing (make deps installs hipcc)))

PROGRAMS = prune train profile export data/tokenize data/mkshards
HEADERS  = model.h util.h plot.h

.PHONY: all deps test bench demo evidence data debug clean check-hip
all: $(PROGRAMS)

# --- dependencies: install what is missing, say what was done ----------------------------------------
DEB_PKGS = libblis-openmp-dev libstb-dev libcjson-dev
deps:
	@sh test/deps.sh $(DEB_PKGS)

# --- programs ------------------------------------------------------------------------------------------
prune: prune.c $(HEADERS) data/shard.h data/mixture.h
	$(CC) $(CFLAGS) -o $@ prune.c $(LDLIBS)
train: train.c $(HEADERS) data/shard.h data/mixture.h data/tokenizer.h
	$(CC) $(CFLAGS) -o $@ train.c $(LDLIBS)
profile: profile.c $(HEADERS) data/shard.h data/mixture.h
	$(CC) $(CFLAGS) -o $@ profile.c $(LDLIBS)
export: export.c $(HEADERS) data/tokenizer.h
	$(CC) $(CFLAGS) -o $@ export.c $(LDLIBS)
data/tokenize: data/tokenize.c data/tokenizer.h util.h
	$(CC) $(CFLAGS) -o $@ data/tokenize.c $(LDLIBS)
data/mkshards: data/mkshards.c data/tokenizer.h data/shard.h util.h
	$(CC) $(CFLAGS) -o $@ data/mkshards.c $(LDLIBS)

debug:
	$(MAKE) clean && $(MAKE) OPT="$(DEBUG_FLAGS)" all

# --- tests ---------------------------------------------------------------------------------------------
test/test_model: test/test_model.c $(HEADERS)
	$(CC) $(CFLAGS) -o $@ test/test_model.c $(LDLIBS)

# every stage's C test: test/test_<stage>.c -> test/test_<stage> (run by test/test_<stage>.sh)
test/test_%: test/test_%.c $(HEADERS) data/shard.h data/tokenizer.h data/mixture.h
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)
test/test_profile: profile.c  # the test builds profile.c in
test/test_prune: prune.c  # test_prune.c includes prune.c
test/test_train: train.c  # test_train.c includes train.c

TEST_BINS = test/test_model
test: deps
	@$(MAKE) --no-print-directory all $(TEST_BINS)
	@sh test/run.sh

# --- benchmarks, data, demo ----------------------------------------------------------------------------
test/bench_model: test/bench_model.c $(HEADERS)
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

bench: deps
	@$(MAKE) --no-print-directory test/bench_model
	@sh test/bench.sh

data: deps data/tokenize data/mkshards
	@sh data/prepare.sh

demo: deps
	@$(MAKE) --no-print-directory all
	@sh test/demo.sh

clean:
	rm -f $(PROGRAMS) $(TEST_BINS) test/bench_model test/test_data test/test_prune test/test_train test/test_export test/test_profile
	rm -rf hip/build
