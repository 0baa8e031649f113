// hip/dev/shim/omp.h — only for test_hip.sh's AMD compile check: Debian's hipcc (clang) has no OpenMP
// headers, and the workbenches include model.h (CPU references) which includes <omp.h>. These are the
// declarations model.h uses; nothing is linked (a real ROCm install ships its own omp.h).
#pragma once
#ifdef __cplusplus
extern "C" {
#endif
int omp_get_max_threads(void);
int omp_in_parallel(void);
int omp_get_thread_num(void);
int omp_get_num_procs(void);
void omp_set_num_threads(int n);
#ifdef __cplusplus
}
#endif
