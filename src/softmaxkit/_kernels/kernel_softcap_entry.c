/* The Python entry of the soft cap (kernel_softcap.h): softcap(mode, x, out, cap,
 * n_threads, d=None), its checks, and its run split over the pool of worker threads
 * (kernel_pool.c). The arrays come through the buffer protocol; _kernel.c lists the
 * entry in the module's method table. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernel_entry.h"
#include "kernel_internal.h"

/* Whether a buffer's format is the native one of the letter (float32 'f', float64 'd'). */
static int native_format(const char *format, char letter)
{
    if (format == NULL)
        return 0;
    if (format[0] == '@' || format[0] == '=')
        format++;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    else if (format[0] == '<')
        format++;
#endif
    return format[0] == letter && format[1] == '\0';
}

int smk_matrix_buffer(PyObject *obj, const char *name, char letter, int writable,
                         Py_buffer *view)
{
    int flags = PyBUF_STRIDES | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0)
        return -1;
    Py_ssize_t size = letter == 'd' ? 8 : 4;
    const char *problem = NULL;
    if (!native_format(view->format, letter) || view->itemsize != size)
        problem = letter == 'd' ? "float64" : "float32";
    else if (view->ndim != 2)
        problem = "2-D";
    else if ((view->shape[1] > 1 && view->strides[1] != size) || view->strides[0] % size ||
             (uintptr_t)view->buf % (uintptr_t)size)
        problem = "aligned, with contiguous rows";
    if (problem) {
        PyErr_Format(PyExc_ValueError, "%s must be %s", name, problem);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static void softcap_work(smk_work *w, double *buf)
{
    (void)buf;
    smk_active->softcap_range((const smk_softcap *)(const void *)w->job, w->t0, w->t1);
}

/* The job on up to n_threads threads; -1 when a scratch buffer could not be allocated.
 * Called without the GIL. */
static int run_softcap(const smk_softcap *job, int n_threads)
{
    ptrdiff_t total = job->n_rows * job->len;
    n_threads = smk_useful_threads(total, n_threads);
    if (n_threads <= 1) {
        unsigned fp = ieee_subnormals_begin();
        smk_active->softcap_range(job, 0, total);
        ieee_subnormals_end(fp);
        return 0;
    }
    smk_work work[SMK_MAX_THREADS];
    for (int i = 0; i < n_threads; i++) {
        memset(&work[i], 0, sizeof work[i]);
        work[i].fn = softcap_work;
        work[i].job = &job->base;
        /* whole cache lines of float32 entries to each thread, where the rows allow */
        work[i].t0 = i == 0 ? 0 : (total * i / n_threads) & ~(ptrdiff_t)15;
        work[i].t1 = i == n_threads - 1 ? total : (total * (i + 1) / n_threads) & ~(ptrdiff_t)15;
    }
    int pooled = pool_acquire(n_threads);
    int status = run_parallel(work, n_threads, pooled);
    if (pooled)
        pool_release();
    return status;
}

/* softcap(mode, x, out, cap, n_threads, d=None) -> None
 *
 * The modes of smk_softcap (kernel.h). x: (rows, len), float32 (float64 for
 * SMK_SOFTCAP_SCALE_BY), each row contiguous; out: of x's shape, each row contiguous,
 * writeable, float32 (float64 for SMK_SOFTCAP_DERIVATIVE); d, for SMK_SOFTCAP_BOTH
 * alone: float64 of x's shape, each row contiguous, writeable; none of them
 * overlapping another (the caller sees to it); cap a float in [2^-64, 2^64]. Bad
 * arguments raise TypeError or ValueError. */
PyObject *smk_softcap_entry(PyObject *self, PyObject *args)
{
    (void)self;
    int mode, n_threads;
    PyObject *x_obj, *out_obj, *d_obj = Py_None;
    double cap;
    if (!PyArg_ParseTuple(args, "iOOdi|O:softcap", &mode, &x_obj, &out_obj, &cap, &n_threads,
                          &d_obj))
        return NULL;
    if (mode < SMK_SOFTCAP_VALUES || mode > SMK_SOFTCAP_SCALE_BY) {
        PyErr_Format(PyExc_ValueError, "mode must be 0 to 4, got %d", mode);
        return NULL;
    }
    if ((mode == SMK_SOFTCAP_BOTH) != (d_obj != Py_None)) {
        PyErr_SetString(PyExc_ValueError, "d is needed by mode 3 and taken by no other");
        return NULL;
    }
    if (!(cap >= 0x1p-64 && cap <= 0x1p64)) {
        PyErr_Format(PyExc_ValueError, "cap must be in [2**-64, 2**64], got %g", cap);
        return NULL;
    }
    if (n_threads < 1)
        n_threads = 1;
    Py_buffer x, out, d;
    int have_d = 0;
    if (smk_matrix_buffer(x_obj, "x", mode == SMK_SOFTCAP_SCALE_BY ? 'd' : 'f', 0, &x))
        return NULL;
    if (smk_matrix_buffer(out_obj, "out", mode == SMK_SOFTCAP_DERIVATIVE ? 'd' : 'f', 1, &out)) {
        PyBuffer_Release(&x);
        return NULL;
    }
    if (d_obj != Py_None) {
        if (smk_matrix_buffer(d_obj, "d", 'd', 1, &d)) {
            PyBuffer_Release(&x);
            PyBuffer_Release(&out);
            return NULL;
        }
        have_d = 1;
    }
    if (out.shape[0] != x.shape[0] || out.shape[1] != x.shape[1] ||
        (have_d && (d.shape[0] != x.shape[0] || d.shape[1] != x.shape[1]))) {
        PyErr_SetString(PyExc_ValueError, "out and d must have the shape of x");
        PyBuffer_Release(&x);
        PyBuffer_Release(&out);
        if (have_d)
            PyBuffer_Release(&d);
        return NULL;
    }
    smk_softcap job;
    memset(&job, 0, sizeof job);
    job.mode = mode;
    job.x = (const char *)x.buf;
    job.o = (char *)out.buf;
    job.d = have_d ? (char *)d.buf : NULL;
    job.n_rows = x.shape[0];
    job.len = x.shape[1];
    job.x_rs = x.strides[0];
    job.o_rs = out.strides[0];
    job.d_rs = have_d ? d.strides[0] : 0;
    job.cap = cap;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = run_softcap(&job, n_threads);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&x);
    PyBuffer_Release(&out);
    if (have_d)
        PyBuffer_Release(&d);
    if (status)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}
