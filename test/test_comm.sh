#!/bin/sh
# test/test_comm.sh — hip/comm.h on the CPU (test/test_comm.c says what each check is): one process, then
# `mpirun -np 2 --oversubscribe` (2 cores: one thread per rank); the launch errors; a build without MPI still
# builds and runs as one process and refuses mpirun's environment in one line.
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
# CI runs as root: OpenMPI refuses that unless asked
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
T=$(mktemp -d /tmp/test_comm_sh.XXXXXX)
trap 'rm -rf "$T"' EXIT
. test/lib.sh

make --no-print-directory -s test/test_comm > "$T/build.log" 2>&1 || { cat "$T/build.log"; bad "build test/test_comm"; }
check "test_comm, one process" quiet ./test/test_comm
if ! grep -q "MPI      found" "$T/build.log" && ! command -v mpirun > /dev/null; then
  bad "MPI missing: make deps installs openmpi-bin and libopenmpi-dev"
else
  check "test_comm, mpirun -np 2" quiet mpirun -np 2 --oversubscribe ./test/test_comm
  grep -h -E "^(ok|FAIL)" "$T/q.log" | head -40
fi

expect_error "WORLD_SIZE=2 without mpirun" "mpirun -np 2" env WORLD_SIZE=2 RANK=0 ./test/test_comm
expect_error "RANK=2 of WORLD_SIZE=2" "0 <= RANK < WORLD_SIZE" env WORLD_SIZE=2 RANK=2 ./test/test_comm
expect_error "RANK=x" "RANK=x" env WORLD_SIZE=2 RANK=x ./test/test_comm

# without MPI: the same source, compiled with no USE_MPI, is one process and says so under a launcher
if cc -O1 -std=gnu11 -fopenmp -I. -I/usr/include/stb -o "$T/nompi" test/test_comm.c -lcjson -lm > "$T/nompi.log" 2>&1; then
  ok "test_comm builds without MPI"
  check "test_comm without MPI, one process" quiet "$T/nompi"
  expect_error "a build without MPI under mpirun" "has no MPI" env OMPI_COMM_WORLD_SIZE=2 "$T/nompi"
else cat "$T/nompi.log"; bad "test_comm builds without MPI"; fi

echo "test_comm: $pass passed, $fail failed"
[ $fail -eq 0 ]
