/* The C interface between the parts of the compiled module outside the kernels
 * proper: the CPython glue (_kernel.c), the job runner (kernel_jobs.c) and the pool
 * of worker threads (kernel_pool.c). Internal to the module (hidden symbols); the
 * kernels' own declarations are in kernel.h. */
#ifndef SOFTMAXKIT_KERNEL_INTERNAL_H
#define SOFTMAXKIT_KERNEL_INTERNAL_H

#include <stddef.h>

#include "kernel.h"

#define SMK_INTERNAL __attribute__((visibility("hidden")))

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
/* Subnormal numbers as IEEE 754 has them, whatever the caller set: XLA's CPU threads
 * run with flush-to-zero and denormals-are-zero on, which would round subnormal
 * results to 0 and read subnormal inputs as 0. Threads started by such a thread
 * inherit its setting, so every worker sets it too. Returns the previous state. */
static inline unsigned ieee_subnormals_begin(void)
{
    unsigned previous = _mm_getcsr();
    unsigned wanted = previous & ~(0x8000u | 0x0040u); /* FTZ, DAZ */
    if (wanted != previous)
        _mm_setcsr(wanted);
    return previous;
}
static inline void ieee_subnormals_end(unsigned previous)
{
    if (_mm_getcsr() != previous)
        _mm_setcsr(previous);
}
#else
static inline unsigned ieee_subnormals_begin(void) { return 0; }
static inline void ieee_subnormals_end(unsigned previous) { (void)previous; }
#endif

/* Below this many elements per thread, the calling thread works alone. With the pool
 * (below), two threads pay from some 8000 float32 elements when the workers are awake
 * (float32 (16, 1000): 48 -> 25 us); a worker that has to be woken starts some 15 us
 * late, which a share of 6144 elements (about 20 us of work) still repays. */
#define SMK_MIN_PER_THREAD 6144
/* Threads per call, the calling one included. */
#define SMK_MAX_THREADS 256

/* A work item: fn(work, scratch) on a thread of the pool, a fresh thread or the
 * calling one. */
typedef struct smk_work smk_work;
struct smk_work {
    void (*fn)(smk_work *, double *);
    const smk_job *job;
    ptrdiff_t t0, t1;
    /* claimed mode: tasks [*next, t1) taken grain at a time by whichever thread comes */
    _Atomic ptrdiff_t *next;
    ptrdiff_t grain;
    /* within-row mode */
    smk_row *row;
    int phase;
    smk_partial part;
    int failed;
};

/* The chosen variant of the kernels (_kernel.c sets it when the module loads). */
extern SMK_INTERNAL const smk_impl *smk_active;

/* kernel_pool.c: a work item with a scratch buffer of its own, freed afterwards;
 * taking the pool for a call with n work items (0: another call uses it) and giving
 * it back; running work[0 .. n - 1] (on the pool when pooled), -1 when a scratch
 * buffer could not be allocated. */
SMK_INTERNAL void run_with_fresh_scratch(smk_work *w);
SMK_INTERNAL int pool_acquire(int n);
SMK_INTERNAL void pool_release(void);
SMK_INTERNAL int run_parallel(smk_work *work, int n, int pooled);
/* kernel_pool.c: runs the pool's calls on the team of the OpenMP runtime at path, which
 * the process has loaded already (1), or leaves them on the pool's workers (0); and
 * whether they run on such a team; how many calls ran on it. */
SMK_INTERNAL int smk_openmp_attach(const char *path);
SMK_INTERNAL int smk_openmp_attached(void);
SMK_INTERNAL unsigned long long smk_openmp_team_runs(void); /* calls run on the team */

/* kernel_jobs.c: runs a job on up to n_threads threads (IEEE subnormals on); -1 when a
 * scratch buffer could not be allocated. */
SMK_INTERNAL int run_job(const smk_job *job, int n_threads);
/* kernel_jobs.c: the threads worth starting for size entries (at least
 * SMK_MIN_PER_THREAD each, at most n_threads and SMK_MAX_THREADS; at least 1). */
SMK_INTERNAL int smk_useful_threads(ptrdiff_t size, int n_threads);

#endif
