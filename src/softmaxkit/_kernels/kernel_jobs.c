/* The job runner of the compiled module: the tasks and scratch size of a job, and its
 * run on the calling thread or split over the pool (kernel_pool.c), by tasks (rows or
 * column blocks) or, for few long rows, within the rows, phase by phase. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_internal.h"

ptrdiff_t smk_n_tasks(const smk_job *job)
{
    if (!job->block)
        return job->n_rows;
    ptrdiff_t inner = job->shape[job->ndim - 1];
    return (job->n_rows / inner) * ((inner + job->block - 1) / job->block);
}

ptrdiff_t smk_scratch_doubles(const smk_job *job)
{
    ptrdiff_t n = job->len < SMK_CHUNK ? job->len : SMK_CHUNK;
    n = (n + 3) & ~(ptrdiff_t)3;
    if (job->stream) /* the state of the rows, and the 32-row path's scratch */
        n = 8 * SMK_STREAM_ROWS + SMK_BLOCK_F32 * (((job->len + 3) & ~(ptrdiff_t)3));
    else if (job->block)
        n = job->block * (((job->len + 3) & ~(ptrdiff_t)3));
    return n + 8;
}

static void run_task_range(smk_work *w, double *buf)
{
    smk_active->run_tasks(w->job, w->t0, w->t1, buf);
}

/* Tasks claimed grain by grain from the counter that all the call's work items share,
 * until none is left. A thread that starts late (a worker woken from sleep, or kept
 * off its core by another library's spinning threads, such as PyTorch's OpenMP pool
 * just after a torch call) takes fewer tasks instead of holding back the call: with
 * a fixed half each, softmax over float32 (64, 1000) right after torch.softmax took
 * 73 us instead of 50 us alone. Each task is computed the same way whichever thread
 * takes it, so the result does not depend on the split. */
static void run_claimed_tasks(smk_work *w, double *buf)
{
    for (;;) {
        ptrdiff_t t0 = atomic_fetch_add(w->next, w->grain);
        if (t0 >= w->t1)
            return;
        ptrdiff_t t1 = t0 + w->grain < w->t1 ? t0 + w->grain : w->t1;
        smk_active->run_tasks(w->job, t0, t1, buf);
    }
}

/* Tasks per claim: some eight claims per thread, in multiples of 64 rows where there
 * are many (the short-row kernels take rows 8 or 16 at a time). */
static ptrdiff_t claim_grain(ptrdiff_t tasks, int n_threads)
{
    ptrdiff_t g = (tasks + 8 * (ptrdiff_t)n_threads - 1) / (8 * (ptrdiff_t)n_threads);
    if (g > 64)
        g = (g + 63) & ~(ptrdiff_t)63;
    return g < 1 ? 1 : g;
}

/* The output rows t0 .. t1 - 1 of a streamed column job, one byte of each page read
 * and written back: a fresh output is faulted in by the threads side by side, each on
 * pages of its own, before the column blocks (which share every page) are computed.
 * float32 (4096, 4096) softmax over axis 0 into a new array: 8.6 -> 4.8 ms more than
 * with out=, as over axis -1. */
static void touch_output_rows(smk_work *w, double *buf)
{
    (void)buf;
    const smk_job *job = w->job;
    volatile char *p = (volatile char *)job->o + w->t0 * job->o_es;
    volatile char *end = (volatile char *)job->o + w->t1 * job->o_es;
    for (; p < end; p += 4096)
        *p = *p;
}

static void run_row_phase(smk_work *w, double *buf)
{
    smk_active->row_phase(w->job, w->row, w->phase, w->t0, w->t1, buf, &w->part);
}

static void combine(smk_partial *into, const smk_partial *p)
{
    if (p->max > into->max)
        into->max = p->max;
    if (p->min < into->min)
        into->min = p->min;
    into->has_nan |= p->has_nan;
    into->count += p->count;
    double t = into->hi + p->hi, bp = t - into->hi;
    into->lo += ((into->hi - (t - bp)) + (p->hi - bp)) + p->lo;
    into->hi = t;
}

/* Few long rows: each row in two (logsumexp) or three passes, each split over threads,
 * with the partial maxima and sums combined between the passes. */
static int run_within_rows(const smk_job *job, int n_threads, int pooled)
{
    smk_work work[SMK_MAX_THREADS];
    ptrdiff_t per = (job->len + n_threads - 1) / n_threads;
    per = (per + 3) & ~(ptrdiff_t)3;
    for (ptrdiff_t r = 0; r < job->n_rows; r++) {
        smk_row row;
        smk_active->row_begin(job, r, &row);
        for (int phase = 1; phase <= 3; phase++) {
            if (phase == 3 && job->op == SMK_LOGSUMEXP)
                break;
            for (int i = 0; i < n_threads; i++) {
                memset(&work[i], 0, sizeof work[i]);
                work[i].fn = run_row_phase;
                work[i].job = job;
                work[i].row = &row;
                work[i].phase = phase;
                work[i].t0 = i * per < job->len ? i * per : job->len;
                work[i].t1 = (i + 1) * per < job->len ? (i + 1) * per : job->len;
            }
            if (run_parallel(work, n_threads, pooled))
                return -1;
            smk_partial total = work[0].part;
            for (int i = 1; i < n_threads; i++)
                combine(&total, &work[i].part);
            if (phase == 1)
                smk_active->row_decide(job, &row, &total);
            else if (phase == 2)
                smk_active->row_sums(job, &row, &total);
        }
    }
    return 0;
}

/* Scratch (doubles) that a single-threaded run takes on the stack (16 KiB). */
#define SMALL_SCRATCH 2048

static int run_job_here(const smk_job *job, int n_threads);

int run_job(const smk_job *job, int n_threads)
{
    unsigned fp = ieee_subnormals_begin();
    int status = run_job_here(job, n_threads);
    ieee_subnormals_end(fp);
    return status;
}

int smk_useful_threads(ptrdiff_t size, int n_threads)
{
    ptrdiff_t useful = size / SMK_MIN_PER_THREAD;
    if (n_threads > useful)
        n_threads = (int)(useful > 1 ? useful : 1);
    return n_threads > SMK_MAX_THREADS ? SMK_MAX_THREADS : n_threads;
}

static int run_job_here(const smk_job *job, int n_threads)
{
    n_threads = smk_useful_threads(job->n_rows * job->len, n_threads);
    ptrdiff_t tasks = smk_n_tasks(job);
    int within_rows = n_threads > 1 && tasks < n_threads && job->len >= 2 * SMK_CHUNK &&
                      !job->block && !job->bsum;
    if (!within_rows && n_threads > tasks)
        n_threads = (int)tasks;
    if (n_threads <= 1) {
        /* Small inputs: the scratch on the stack, since malloc and free cost about as
         * much as a short row. */
        if (smk_scratch_doubles(job) <= SMALL_SCRATCH) {
            double small[SMALL_SCRATCH] __attribute__((aligned(64)));
            smk_active->run_tasks(job, 0, tasks, small);
            return 0;
        }
        smk_work w;
        memset(&w, 0, sizeof w);
        w.fn = run_task_range;
        w.job = job;
        w.t0 = 0;
        w.t1 = tasks;
        run_with_fresh_scratch(&w);
        return w.failed ? -1 : 0;
    }
    int pooled = pool_acquire(n_threads), status;
    /* (only where the output is one contiguous matrix: no byte outside it is touched) */
    if (job->stream && job->o && job->ndim == 1 && job->os[0] == job->out_size &&
        job->o_es == job->shape[0] * job->out_size) {
        smk_work work[SMK_MAX_THREADS];
        for (int i = 0; i < n_threads; i++) {
            memset(&work[i], 0, sizeof work[i]);
            work[i].fn = touch_output_rows;
            work[i].job = job;
            work[i].t0 = job->len * i / n_threads;
            work[i].t1 = job->len * (i + 1) / n_threads;
        }
        run_parallel(work, n_threads, pooled);
    }
    if (within_rows) {
        status = run_within_rows(job, n_threads, pooled);
    } else {
        smk_work work[SMK_MAX_THREADS];
        _Atomic ptrdiff_t next = 0;
        ptrdiff_t grain = claim_grain(tasks, n_threads);
        for (int i = 0; i < n_threads; i++) {
            memset(&work[i], 0, sizeof work[i]);
            work[i].fn = run_claimed_tasks;
            work[i].job = job;
            work[i].t1 = tasks;
            work[i].next = &next;
            work[i].grain = grain;
        }
        status = run_parallel(work, n_threads, pooled);
    }
    if (pooled)
        pool_release();
    return status;
}
