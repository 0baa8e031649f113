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
# MPI (OpenMPI's mpicc): data parallel over several processes (mpirun -np N); without it every program
# runs as one process. NO_MPI=1 builds without.
MPICC  ?= $(shell command -v mpicc 2>/dev/null)
NO_MPI ?=
ifeq ($(NO_MPI),)
  MPI_FLAGS := $(if $(MPICC),$(shell $(MPICC) --showme:compile 2>/dev/null))
  MPI_LIBS  := $(if $(MPICC),$(shell $(MPICC) --showme:link 2>/dev/null))
  ifneq ($(MPI_LIBS),)
    CFLAGS += $(MPI_FLAGS) -DUSE_MPI
    LDLIBS += $(MPI_LIBS)
    $(info [build] MPI      found   ($(MPICC)))
  else
    $(info [build] MPI      missing (make deps installs openmpi-bin, libopenmpi-dev; one process per run without))
  endif
else
  $(info [build] MPI      off     (NO_MPI=1: one process per run))
endif
NVCC  ?= $(firstword $(wildcard /usr/local/cuda/bin/nvcc) $(shell command -v nvcc 2>/dev/null))
HIPCC ?= $(shell command -v hipcc 2>/dev/null)
$(if $(NVCC),$(info [build] nvcc     found   ($(NVCC))),$(info [build] nvcc     missing (GPU path for NVIDIA not built)))
$(if $(HIPCC),$(info [build] hipcc    found   ($(HIPCC))),$(info [build] hipcc    missing (make deps installs hipcc)))
FUZZ_CC ?= clang
$(if $(shell command -v $(FUZZ_CC) 2>/dev/null),$(info [build] clang    found   (libFuzzer targets: make fuzz)),\
  $(info [build] clang    missing (make deps installs it; make fuzz and the fuzz test skip)))

PROGRAMS = prune train profile export data/tokenize data/mkshards
HEADERS  = model.h shape.h util.h plot.h hip/comm.h

.PHONY: all deps test bench demo evidence data data-large evidence-gpu evidence-gpu-pack debug clean check-hip fuzz \
        fuzz-bins
all: $(PROGRAMS)

# --- dependencies: install what is missing, say what was done ----------------------------------------
# the text packages: the large corpus's sources, of which test_data.sh builds a slice (data/prepare_large.sh;
# its largest source, linux-source-6.1, only `make data-large` installs)
DEB_TEXT = libpython3.11-stdlib python3.11-doc perl-doc manpages manpages-dev dict-gcide dict-wn bible-kjv bible-kjv-text
# clang, libclang-rt-14-dev (Debian 12's libFuzzer runtime) and libomp-dev (clang's omp.h): the fuzz targets
DEB_FUZZ = clang libclang-rt-14-dev libomp-dev
DEB_PKGS = libblis-openmp-dev libstb-dev libcjson-dev openmpi-bin libopenmpi-dev $(DEB_TEXT) $(DEB_FUZZ)
deps:
	@sh test/deps.sh $(DEB_PKGS)

# --- programs ------------------------------------------------------------------------------------------
prune: prune.c $(HEADERS) data/shard.h data/mixture.h hip/comm.h
	$(CC) $(CFLAGS) -o $@ prune.c $(LDLIBS)
train: train.c $(HEADERS) data/shard.h data/mixture.h data/tokenizer.h hip/comm.h
	$(CC) $(CFLAGS) -o $@ train.c $(LDLIBS)
profile: profile.c $(HEADERS) data/shard.h data/mixture.h hip/comm.h hip/gpu.h hip/plan.h
	$(CC) $(CFLAGS) -o $@ profile.c $(LDLIBS)
export: export.c $(HEADERS) data/tokenizer.h
	$(CC) $(CFLAGS) -o $@ export.c $(LDLIBS)
data/tokenize: data/tokenize.c data/tokenizer.h util.h
	$(CC) $(CFLAGS) -o $@ data/tokenize.c $(LDLIBS)
data/mkshards: data/mkshards.c data/tokenizer.h data/shard.h util.h
	$(CC) $(CFLAGS) -o $@ data/mkshards.c $(LDLIBS)

# every program under AddressSanitizer and UBSan (in place), then the hostile-input tests against them: a
# sanitizer report or a leak at exit fails a case
debug:
	$(MAKE) clean && $(MAKE) OPT="$(DEBUG_FLAGS)" all
	sh test/test_badinput.sh

# --- fuzzing: libFuzzer targets for every reader of untrusted bytes (test/fuzz/); FUZZ_TIME seconds each ------
FUZZ_TARGETS = config safetensors shard tokenizer gguf
FUZZ_TIME   ?= 60
FUZZ_FLAGS   = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fopenmp -std=gnu11 \
               -I. -I/usr/include/stb
fuzz-bins: $(FUZZ_TARGETS:%=test/fuzz/fuzz_%)
test/fuzz/fuzz_%: test/fuzz/fuzz_%.c test/fuzz/fuzz.h $(HEADERS) data/shard.h data/tokenizer.h export.c
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< -lcjson -lm
fuzz:
	@sh test/fuzz/run.sh $(FUZZ_TIME)

# --- tests ---------------------------------------------------------------------------------------------
test/test_model: test/test_model.c test/check.h $(HEADERS)
	$(CC) $(CFLAGS) -o $@ test/test_model.c $(LDLIBS)

# every stage's C test: test/test_<stage>.c -> test/test_<stage> (run by test/test_<stage>.sh)
test/test_%: test/test_%.c test/check.h $(HEADERS) data/shard.h data/tokenizer.h data/mixture.h hip/comm.h
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)
test/test_profile: profile.c hip/gpu.h hip/plan.h  # the test builds profile.c in
test/test_prune: prune.c  # test_prune.c includes prune.c
test/test_train: train.c  # test_train.c includes train.c

TEST_BINS = test/test_model
test: deps
	@$(MAKE) --no-print-directory all $(TEST_BINS)
	@sh data/prepare.sh > data/prepare.log 2>&1 || { cat data/prepare.log; echo "make test: make data failed"; exit 1; }
	@echo "[test] corpus shards ready in data/shards (make data; log in data/prepare.log)"
	@sh test/run.sh

# --- benchmarks, data, demo ----------------------------------------------------------------------------
test/bench_model: test/bench_model.c $(HEADERS)
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

BENCH_PKGS = python3-torch  # make bench's yardstick: Debian's PyTorch, on the same system BLIS
bench:
	@NO_NPM=1 sh test/deps.sh $(DEB_PKGS) $(BENCH_PKGS)
	@$(MAKE) --no-print-directory test/bench_model
	@sh test/bench.sh

data: deps data/tokenize data/mkshards
	@sh data/prepare.sh

# the large corpus (data/prepare_large.sh): data/text-large, data/shards-large; not part of `make test`
data-large: deps data/mkshards
	@sh data/prepare_large.sh

# the method comparison at 100M parameters (test/evidence_gpu.sh): on the GPU machine, from what
# `make evidence-gpu-pack` put in .carry/evidence-gpu; SIZE=tiny runs the same pipeline here on the CPU
evidence-gpu:
	@sh test/evidence_gpu.sh
evidence-gpu-pack: gpu data-large
	@sh test/evidence_gpu.sh pack

demo: deps
	@$(MAKE) --no-print-directory all
	@sh test/demo.sh

evidence: deps
	@$(MAKE) --no-print-directory all
	@sh test/evidence.sh

# ==================================================================================================
# GPU (hip/) — owned by the GPU path. `make gpu` builds the NVIDIA binaries with nvcc (hip/common.h
# maps HIP onto CUDA); `make check-hip` compiles every hip source for NVIDIA (nvcc) and AMD (hipcc,
# gfx90a) and runs nothing (CI); `make check-gpu` / `make bench-gpu` run on a machine with a GPU.
# The host side of these binaries is built without -march=native: they travel to the GPU machine, with
# libcjson, libgomp and (when found) libblis copied into hip/build/lib (found through the rpath).
# ==================================================================================================
NVCC_ARCH  ?= -gencode=arch=compute_90a,code=sm_90a
NVCC_FLAGS  = -O3 -std=c++17 -I. -I/usr/include/stb $(NVCC_ARCH) -Xcompiler -fopenmp
GPU_CFLAGS  = -O2 -std=gnu11 -fopenmp -Wall -Wextra -Wno-unused-parameter -Wno-unused-function -I. -I/usr/include/stb
GPU_LDLIBS  = -lcublasLt -lcublas -lnccl -lcjson -lm -lgomp -Xlinker -rpath -Xlinker '$$ORIGIN/lib'
# GPU_MPI=1: the GPU programs start under mpirun too (a machine with OpenMPI). Without it they take RANK,
# WORLD_SIZE, LOCAL_RANK and GS_COMM_DIR from any launcher (hip/comm.h): the GPU machines have no OpenMPI.
ifneq ($(GPU_MPI),)
  GPU_CFLAGS += $(MPI_FLAGS) -DUSE_MPI
  GPU_LDLIBS += $(MPI_LIBS)
endif
ifneq ($(filter -DUSE_BLIS,$(CFLAGS)),)
  GPU_CFLAGS += -isystem $(BLIS_INC) -DUSE_BLIS
  GPU_LDLIBS += -L$(BLIS_LIB) -lblis
  GPU_LIBS    = libcjson.so.1 libgomp.so.1 libblis.so.4
else
  GPU_LIBS    = libcjson.so.1 libgomp.so.1
endif
HIP_HDR     = hip/common.h hip/blas.h hip/gpu.h hip/plan.h hip/comm.h $(HIP_OPS:%=hip/%.h)
HIP_OPS     = attention colsum embed rmsnorm rope masks gelu xent adamw elementwise  # hip/<op>.h: one per op
HIP_DEV     = attention rmsnorm rope gelu embed xent adamw masks gemm comm  # hip/dev/<op>.hip: the workbenches
GPU_BINS    = hip/build/train hip/build/prune hip/build/profile hip/build/mkshards hip/build/bench hip/build/check_step \
              $(HIP_DEV:%=hip/build/dev_%)

.PHONY: gpu check-gpu bench-gpu
gpu: $(GPU_BINS)
	@mkdir -p hip/build/lib
	@for l in $(GPU_LIBS); do cp -L "$$($(CC) -print-file-name=$$l)" hip/build/lib/ 2>/dev/null || \
	  cp -L /usr/lib/x86_64-linux-gnu/$$l hip/build/lib/ 2>/dev/null || cp -L $(BLIS_LIB)/$$l hip/build/lib/; done
hip/build/%.o: hip/%.hip $(HIP_HDR)
	@mkdir -p hip/build
	$(NVCC) $(NVCC_FLAGS) -x cu -c $< -o $@
hip/build/dev_%: hip/dev/%.hip hip/dev/bench.h hip/build/blas.o $(HIP_HDR) model.h util.h
	@mkdir -p hip/build
	$(NVCC) $(NVCC_FLAGS) -x cu -c $< -o $@.o
	$(NVCC) $(NVCC_ARCH) -Xcompiler -fopenmp -o $@ $@.o hip/build/blas.o $(GPU_LDLIBS)
hip/build/dev_comm: hip/dev/comm.hip hip/dev/bench.h hip/build/comm.o $(HIP_HDR) model.h util.h
	@mkdir -p hip/build
	$(NVCC) $(NVCC_FLAGS) $(if $(GPU_MPI),$(MPI_FLAGS) -DUSE_MPI) -x cu -c $< -o $@.o
	$(NVCC) $(NVCC_ARCH) -Xcompiler -fopenmp -o $@ $@.o hip/build/comm.o $(GPU_LDLIBS)
# train (and prune) with --device gpu: the same programs, host side built as below, linked with the GPU path;
# USE_GPU: linked with hip/gpu.hip (model.h then takes the step of --device gpu from hip/gpu.h)
hip/build/train: train.c hip/build/gpu.o hip/build/blas.o hip/build/comm.o model.h shape.h util.h plot.h data/mixture.h data/shard.h data/tokenizer.h hip/gpu.h hip/comm.h
	$(CC) $(GPU_CFLAGS) -DUSE_GPU -c train.c -o hip/build/train.c.o
	$(NVCC) $(NVCC_ARCH) -o $@ hip/build/train.c.o hip/build/gpu.o hip/build/blas.o hip/build/comm.o $(GPU_LDLIBS)
hip/build/prune: prune.c hip/build/gpu.o hip/build/blas.o hip/build/comm.o model.h shape.h util.h plot.h data/mixture.h data/shard.h hip/gpu.h hip/comm.h
	$(CC) $(GPU_CFLAGS) -DUSE_GPU -c prune.c -o hip/build/prune.c.o
	$(NVCC) $(NVCC_ARCH) -o $@ hip/build/prune.c.o hip/build/gpu.o hip/build/blas.o hip/build/comm.o $(GPU_LDLIBS)
hip/build/profile: profile.c hip/build/gpu.o hip/build/blas.o hip/build/comm.o model.h util.h plot.h data/mixture.h data/shard.h hip/gpu.h hip/plan.h hip/comm.h
	$(CC) $(GPU_CFLAGS) -DUSE_GPU -c profile.c -o hip/build/profile.c.o
	$(NVCC) $(NVCC_ARCH) -o $@ hip/build/profile.c.o hip/build/gpu.o hip/build/blas.o hip/build/comm.o $(GPU_LDLIBS)
# host only: the GPU machine makes its shards from the packed corpus (test/evidence_gpu.sh)
hip/build/mkshards: data/mkshards.c data/tokenizer.h data/shard.h util.h
	@mkdir -p hip/build
	$(CC) $(GPU_CFLAGS) -o $@ data/mkshards.c -lcjson -lm -Wl,-rpath,'$$ORIGIN/lib'
hip/build/bench: hip/bench.c hip/build/gpu.o hip/build/blas.o hip/build/comm.o model.h util.h hip/gpu.h hip/comm.h
	$(CC) $(GPU_CFLAGS) -DUSE_GPU -c hip/bench.c -o hip/build/bench.c.o
	$(NVCC) $(NVCC_ARCH) -o $@ hip/build/bench.c.o hip/build/gpu.o hip/build/blas.o hip/build/comm.o $(GPU_LDLIBS)
hip/build/check_step: hip/dev/check_step.c hip/build/gpu.o hip/build/blas.o hip/build/comm.o model.h util.h hip/gpu.h hip/comm.h
	$(CC) $(GPU_CFLAGS) -DUSE_GPU -c hip/dev/check_step.c -o hip/build/check_step.c.o
	$(NVCC) $(NVCC_ARCH) -o $@ hip/build/check_step.c.o hip/build/gpu.o hip/build/blas.o hip/build/comm.o $(GPU_LDLIBS)
check-hip:
	@sh test/test_hip.sh
check-gpu: gpu
	hip/build/check_step
	@for d in $(HIP_DEV); do hip/build/dev_$$d --no-time || exit 1; done
bench-gpu: gpu
	hip/build/bench --model 270m && hip/build/bench --model 1b
# ==================================================================================================

clean:
	rm -f $(PROGRAMS) $(TEST_BINS) test/bench_model test/test_data test/test_prune test/test_train test/test_export test/test_profile \
	  test/test_comm
	rm -rf hip/build
	rm -f $(FUZZ_TARGETS:%=test/fuzz/fuzz_%)
