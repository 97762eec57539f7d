/* The pool of worker threads of the compiled module: work items run on persistent
 * workers (each with a scratch buffer that only grows) or, when another call holds the
 * pool, on threads started for the call alone; the scratch of a work item. Used by
 * the job runner (kernel_jobs.c) through kernel_internal.h. */
/* clock_gettime, sched_yield, pthread_sigmask under -std=c11 (Python.h defines it in
 * _kernel.c). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernel_internal.h"

static size_t scratch_bytes(const smk_job *job)
{
    size_t bytes = (size_t)smk_scratch_doubles(job) * sizeof(double);
    return (bytes + 63) & ~(size_t)63;
}

/* A work item with a scratch buffer of its own, freed afterwards. */
void run_with_fresh_scratch(smk_work *w)
{
    double *buf = (double *)aligned_alloc(64, scratch_bytes(w->job));
    if (!buf) {
        w->failed = 1;
        return;
    }
    unsigned fp = ieee_subnormals_begin();
    w->fn(w, buf);
    ieee_subnormals_end(fp);
    free(buf);
}

static void *fresh_thread_main(void *arg)
{
    run_with_fresh_scratch((smk_work *)arg);
    return NULL;
}

/* work[0 .. n - 1] on threads started for this call alone, work[0] in the calling thread. */
static void run_on_fresh_threads(smk_work *work, int n)
{
    pthread_t threads[SMK_MAX_THREADS];
    int started[SMK_MAX_THREADS] = {0};
    for (int i = 1; i < n; i++)
        started[i] = pthread_create(&threads[i], NULL, fresh_thread_main, &work[i]) == 0;
    for (int i = 1; i < n; i++)
        if (!started[i])
            run_with_fresh_scratch(&work[i]);
    run_with_fresh_scratch(&work[0]);
    for (int i = 1; i < n; i++)
        if (started[i])
            pthread_join(threads[i], NULL);
}

/* ---- the pool of persistent workers ----
 * Starting and joining threads and allocating their scratch for every call cost some
 * 30 us, a fifth of the time of softmax over 64 x 1000 float32 on two threads, so the
 * workers persist between calls, each with a scratch buffer that only grows. Worker i (slot i, from 1)
 * waits for its slot's count of work items to change, runs the work item it was handed,
 * and counts itself off; the calling thread runs work[0] with slot 0's scratch. Both
 * sides poll for SMK_SPIN_NS (calls in a loop find their workers awake: waking a
 * sleeping worker added some 15 us a call on two cores) and then sleep on a condition
 * variable, so an idle pool costs nothing.
 *
 * One call at a time uses the pool (pool.use). A call from another Python thread that
 * finds it busy starts threads of its own, as before the pool existed, rather than
 * waiting: its work is independent, waiting would serialise threads that a larger
 * machine runs side by side, and the fallback cannot deadlock.
 *
 * After fork() the child has none of the workers: the pthread_atfork child handler
 * forgets them (and their scratch, which may have been in use by another thread at
 * the fork), and the child's first parallel call starts new ones. The workers are
 * detached and never stopped; at exit the process ends them. */

#define SMK_SPIN_NS 50000

typedef struct {
    /* Work items handed to this slot so far (the worker waits for a change; the
     * caller hands the next only after the last is done, so no change is missed). */
    _Alignas(64) atomic_uint go;
    /* Whether the worker sleeps on wake (or is about to); set under pool.lock. */
    atomic_int sleeping;
    unsigned go_at_start;
    smk_work *work;
    double *buf;
    size_t cap;
    pthread_cond_t wake;
} smk_slot;

static struct {
    pthread_mutex_t use;  /* held by the call using the pool */
    pthread_mutex_t lock; /* the mutex of the condition variables */
    pthread_cond_t done;  /* the caller sleeps here until pending is 0 */
    atomic_int pending;   /* work items handed to workers and not finished */
    atomic_int caller_sleeping;
    int size;             /* workers started: slots 1 .. size */
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};

static smk_slot slots[SMK_MAX_THREADS];

/* ---- another library's OpenMP team ----
 * In a process that runs PyTorch, torch's OpenMP threads keep polling for some time
 * after each torch operation. On a machine with as many cores as threads they hold the
 * cores that the pool's workers would run on: softmax over float32 (64, 1000) right
 * after torch.softmax took 73 us on two threads (the time of one thread) against 50 us
 * alone. Once smk_openmp_attach() has found that runtime's GOMP_parallel (its plain C
 * entry, which GNU libgomp and LLVM's libomp both export), the pool's calls run their
 * work items on its team instead, with the team's threads using the slots' scratch:
 * one set of threads for the process, and threads that are awake when torch's are. */
typedef void (*gomp_parallel_fn)(void (*)(void *), void *, unsigned, unsigned);
static struct {
    gomp_parallel_fn parallel;
    int (*thread_num)(void);
    int (*num_threads)(void);
} team;

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* One step of a bounded poll: returns 0 once SMK_SPIN_NS have passed since *start.
 * Every few steps the thread yields its CPU, so that on a machine with fewer cores
 * than threads a polling thread does not hold back the ones still working. */
static int keep_polling(unsigned *step, uint64_t *start)
{
    unsigned k = ++*step;
    if (k & 15) {
        cpu_relax();
        return 1;
    }
    uint64_t now = now_ns();
    if (k == 16)
        *start = now;
    else if (now - *start > SMK_SPIN_NS)
        return 0;
    sched_yield();
    return 1;
}

/* A scratch buffer of the job's size from the slot, grown when it is too small. */
static void run_in_slot(smk_slot *s, smk_work *w)
{
    size_t bytes = scratch_bytes(w->job);
    if (s->cap < bytes) {
        free(s->buf);
        s->buf = (double *)aligned_alloc(64, bytes);
        s->cap = s->buf ? bytes : 0;
    }
    if (!s->buf) {
        w->failed = 1;
        return;
    }
    unsigned fp = ieee_subnormals_begin();
    w->fn(w, s->buf);
    ieee_subnormals_end(fp);
}

static unsigned wait_for_work(smk_slot *s, unsigned seen)
{
    unsigned step = 0, go;
    uint64_t start = 0;
    do {
        go = atomic_load(&s->go);
        if (go != seen)
            return go;
    } while (keep_polling(&step, &start));
    pthread_mutex_lock(&pool.lock);
    /* sleeping is stored before go is read again, and the caller stores go before it
     * reads sleeping (both sequentially consistent): one of the two sees the other. */
    atomic_store(&s->sleeping, 1);
    while ((go = atomic_load(&s->go)) == seen)
        pthread_cond_wait(&s->wake, &pool.lock);
    atomic_store(&s->sleeping, 0);
    pthread_mutex_unlock(&pool.lock);
    return go;
}

static void *worker_main(void *arg)
{
    smk_slot *s = (smk_slot *)arg;
    unsigned seen = s->go_at_start;
    for (;;) {
        seen = wait_for_work(s, seen);
        run_in_slot(s, s->work);
        if (atomic_fetch_sub(&pool.pending, 1) == 1 && atomic_load(&pool.caller_sleeping)) {
            pthread_mutex_lock(&pool.lock);
            pthread_cond_signal(&pool.done);
            pthread_mutex_unlock(&pool.lock);
        }
    }
    return NULL;
}

static void pool_after_fork_in_child(void)
{
    pthread_mutex_init(&pool.use, NULL);
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.done, NULL);
    atomic_store(&pool.pending, 0);
    atomic_store(&pool.caller_sleeping, 0);
    pool.size = 0;
    /* An OpenMP runtime's team does not survive fork() either: the child uses workers
     * of its own. */
    team.parallel = NULL;
    for (int i = 0; i < SMK_MAX_THREADS; i++) {
        atomic_store(&slots[i].sleeping, 0);
        slots[i].buf = NULL;
        slots[i].cap = 0;
    }
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static int atfork_status = -1;

static void register_atfork(void)
{
    atfork_status = pthread_atfork(NULL, NULL, pool_after_fork_in_child);
}

/* 1 once the OpenMP runtime at path (already loaded in the process) is used, else 0. */
int smk_openmp_attach(const char *path)
{
    void *lib = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (!lib)
        return 0;
    gomp_parallel_fn parallel = (gomp_parallel_fn)dlsym(lib, "GOMP_parallel");
    int (*thread_num)(void) = (int (*)(void))dlsym(lib, "omp_get_thread_num");
    int (*num_threads)(void) = (int (*)(void))dlsym(lib, "omp_get_num_threads");
    if (!parallel || !thread_num || !num_threads)
        return 0; /* the handle stays open: the library was loaded before, and stays */
    pthread_once(&atfork_once, register_atfork);
    if (atfork_status != 0)
        return 0; /* a child would call into a team that it does not have */
    pthread_mutex_lock(&pool.use); /* no call is using the pool while the road changes */
    team.thread_num = thread_num;
    team.num_threads = num_threads;
    team.parallel = parallel;
    pthread_mutex_unlock(&pool.use);
    return 1;
}

int smk_openmp_attached(void) { return team.parallel != NULL; }

typedef struct {
    smk_work *work;
    int n;
} team_call;

/* Each thread of the team runs the work items i, i + team size, ... with slot i's
 * scratch (the caller is thread 0; the pool is held, so no worker uses the slots). */
static void team_body(void *arg)
{
    team_call *call = (team_call *)arg;
    int size = team.num_threads(), i = team.thread_num();
    for (int k = i; k < call->n; k += size)
        run_in_slot(&slots[i], &call->work[k]);
}

static unsigned long long team_runs;

static void run_on_team(smk_work *work, int n)
{
    team_call call = {work, n};
    team.parallel(team_body, &call, (unsigned)n, 0);
    team_runs++; /* the pool is held */
}

unsigned long long smk_openmp_team_runs(void) { return team_runs; }

/* Starts workers until there are n (at most SMK_MAX_THREADS - 1); pool.use is held. */
static void pool_grow(int n)
{
    pthread_once(&atfork_once, register_atfork);
    if (atfork_status != 0)
        return; /* a child would wait for workers that do not exist */
    if (n > SMK_MAX_THREADS - 1)
        n = SMK_MAX_THREADS - 1;
    pthread_attr_t attr;
    if (pthread_attr_init(&attr))
        return;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    /* Signals go to the Python threads, which handle them. */
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    while (pool.size < n) {
        smk_slot *s = &slots[pool.size + 1];
        if (pthread_cond_init(&s->wake, NULL))
            break;
        atomic_store(&s->sleeping, 0);
        s->go_at_start = atomic_load(&s->go);
        pthread_t thread;
        if (pthread_create(&thread, &attr, worker_main, s)) {
            pthread_cond_destroy(&s->wake);
            break;
        }
        pool.size++;
    }
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    pthread_attr_destroy(&attr);
}

/* Takes the pool for a call with n work items, unless another call uses it. */
int pool_acquire(int n)
{
    if (pthread_mutex_trylock(&pool.use))
        return 0;
    if (team.parallel)
        return 1; /* the team's threads run the work: no workers of our own */
    if (pool.size < n - 1)
        pool_grow(n - 1);
    if (pool.size == 0) {
        pthread_mutex_unlock(&pool.use);
        return 0;
    }
    return 1;
}

void pool_release(void)
{
    pthread_mutex_unlock(&pool.use);
}

/* work[0 .. n - 1] on the pool (held), work[0] in the calling thread. */
static void run_on_pool(smk_work *work, int n)
{
    int handed = n - 1 < pool.size ? n - 1 : pool.size;
    atomic_store(&pool.pending, handed);
    for (int i = 1; i <= handed; i++) {
        slots[i].work = &work[i];
        atomic_fetch_add(&slots[i].go, 1);
    }
    int asleep = 0;
    for (int i = 1; i <= handed && !asleep; i++)
        asleep = atomic_load(&slots[i].sleeping);
    if (asleep) {
        pthread_mutex_lock(&pool.lock);
        for (int i = 1; i <= handed; i++)
            if (atomic_load(&slots[i].sleeping))
                pthread_cond_signal(&slots[i].wake);
        pthread_mutex_unlock(&pool.lock);
    }
    /* Items beyond the workers that could be started run here, one after another. */
    for (int i = handed + 1; i < n; i++)
        run_in_slot(&slots[0], &work[i]);
    run_in_slot(&slots[0], &work[0]);
    unsigned step = 0;
    uint64_t start = 0;
    do {
        if (atomic_load(&pool.pending) == 0)
            return;
    } while (keep_polling(&step, &start));
    pthread_mutex_lock(&pool.lock);
    atomic_store(&pool.caller_sleeping, 1);
    while (atomic_load(&pool.pending) != 0)
        pthread_cond_wait(&pool.done, &pool.lock);
    atomic_store(&pool.caller_sleeping, 0);
    pthread_mutex_unlock(&pool.lock);
}

/* Runs work[0 .. n - 1], on the pool when pooled; -1 when a scratch buffer could not
 * be allocated. */
int run_parallel(smk_work *work, int n, int pooled)
{
    if (pooled && team.parallel)
        run_on_team(work, n);
    else if (pooled)
        run_on_pool(work, n);
    else
        run_on_fresh_threads(work, n);
    int failed = 0;
    for (int i = 0; i < n; i++)
        failed |= work[i].failed;
    return failed ? -1 : 0;
}
