/* Python entry point of the softmaxkit kernels (the CPython module glue): argument
 * unpacking and checks, the choice of the instruction set, the module's counters and
 * thread setting; also smk_run_dense, the entry of the XLA foreign functions
 * (jax_ffi.cc). The job runner is kernel_jobs.c and the pool of worker threads
 * kernel_pool.c, behind kernel_internal.h.
 *
 * Why this file is long (about 900 lines): CPython's module glue is one translation
 * unit by nature (the method table, the module state and every entry's argument
 * parsing share static helpers), and each entry's checks are written out in full so
 * that an array the kernel cannot take is declined before any thread starts. The
 * arithmetic lives elsewhere. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernel_entry.h"
#include "kernel_internal.h"

const smk_impl *smk_active = &smk_impl_baseline;
static const char *impl_name = "baseline";
/* Completed kernel runs, read by softmaxkit._kernels.dispatch_counts. Updated with the
 * GIL held. */
static unsigned long long kernel_runs = 0;
long long smk_streamed_blocks_count = 0;
/* Whether softmaxkit._kernels.generic_only() is in force: the fast entries decline. */
static int forced_generic = 0;
/* softmaxkit._threads._setting, a list holding the number of threads to use. */
static PyObject *thread_setting = NULL;

static int type_size(int type)
{
    return type == SMK_F64 ? 8 : type == SMK_F32 ? 4 : 2;
}

static const char *const type_names[] = {"float32", "float64", "float16", "bfloat16"};

/* The type code of a's dtype among float32, float64 and float16 in native byte order
 * (the dtypes of the fast entries), or -1. */
static int code_of(PyArrayObject *a)
{
    if (!PyArray_ISNOTSWAPPED(a))
        return -1;
    switch (PyArray_TYPE(a)) {
    case NPY_FLOAT:
        return SMK_F32;
    case NPY_DOUBLE:
        return SMK_F64;
    case NPY_HALF:
        return SMK_F16;
    default:
        return -1;
    }
}

/* code_of, and bfloat16 as softmaxkit._kernels._code recognises it (a user-defined
 * dtype named bfloat16 of two bytes, ml_dtypes' among others). */
static int type_code(PyArrayObject *a)
{
    int code = code_of(a);
    if (code < 0 && PyArray_ISNOTSWAPPED(a) && PyArray_TYPE(a) >= NPY_USERDEF &&
        PyArray_ITEMSIZE(a) == 2) {
        const char *name = PyArray_DESCR(a)->typeobj->tp_name;
        const char *dot = strrchr(name, '.');
        if (strcmp(dot ? dot + 1 : name, "bfloat16") == 0)
            code = SMK_BF16;
    }
    return code;
}

/* The lowest and one past the highest byte an array touches. */
static void byte_bounds(PyArrayObject *a, char **low, char **high)
{
    char *lo = PyArray_BYTES(a), *hi = PyArray_BYTES(a);
    for (int d = 0; d < PyArray_NDIM(a); d++) {
        npy_intp extent = (PyArray_DIMS(a)[d] - 1) * PyArray_STRIDES(a)[d];
        if (extent < 0)
            lo += extent;
        else
            hi += extent;
    }
    *low = lo;
    *high = hi + PyArray_ITEMSIZE(a);
}

/* Whether out, which has x's shape, may receive the result in place of a fresh array:
 * either the same memory layout or no overlap. */
static int out_is_usable(PyArrayObject *x, PyArrayObject *out)
{
    int nd = PyArray_NDIM(x);
    int same_layout = PyArray_BYTES(x) == PyArray_BYTES(out);
    for (int d = 0; d < nd; d++)
        if (PyArray_DIMS(x)[d] > 1 && PyArray_STRIDES(x)[d] != PyArray_STRIDES(out)[d])
            same_layout = 0;
    if (same_layout)
        return 1;
    char *xl, *xh, *ol, *oh;
    byte_bounds(x, &xl, &xh);
    byte_bounds(out, &ol, &oh);
    return oh <= xl || xh <= ol;
}

/* ---- the checks of run's arguments ----
 * run is private, but Python code can reach it with anything: every array is checked
 * against what the kernel will read or write through it (dtype, byte order, shape,
 * writeability, alignment for the typed loads of x and out), so that no argument
 * makes it touch a byte outside the arrays. */

/* An int argument from lo to hi, into *value. */
static int int_argument(PyObject *obj, const char *name, long lo, long hi, long *value)
{
    if (!PyLong_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, got %.100s", name,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    int overflow;
    long v = PyLong_AsLongAndOverflow(obj, &overflow);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (overflow || v < lo || v > hi) {
        PyErr_Format(PyExc_ValueError, "%s must be from %ld to %ld, got %R", name, lo, hi, obj);
        return -1;
    }
    *value = v;
    return 0;
}

/* None, or an ndarray with nd dimensions (into *array). */
static int array_argument(PyObject *obj, const char *name, int nd, PyArrayObject **array)
{
    *array = NULL;
    if (obj == Py_None)
        return 0;
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be an ndarray or None, got %.100s", name,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    if (PyArray_NDIM((PyArrayObject *)obj) != nd) {
        PyErr_Format(PyExc_ValueError, "%s must have %d dimensions (as x), got %d", name, nd,
                     PyArray_NDIM((PyArrayObject *)obj));
        return -1;
    }
    *array = (PyArrayObject *)obj;
    return 0;
}

/* a's shape is x's, except along the last axis where it is last (x's own: last < 0). */
static int check_shape(PyArrayObject *a, const char *name, PyArrayObject *x, npy_intp last)
{
    int nd = PyArray_NDIM(x);
    const npy_intp *ad = PyArray_DIMS(a), *xd = PyArray_DIMS(x);
    int same = ad[nd - 1] == (last < 0 ? xd[nd - 1] : last);
    for (int d = 0; d < nd - 1; d++)
        same &= ad[d] == xd[d];
    if (!same) {
        if (last < 0)
            PyErr_Format(PyExc_ValueError, "%s must have the shape of x", name);
        else
            PyErr_Format(PyExc_ValueError,
                         "%s must have the shape of x with %zd along the last axis", name,
                         (Py_ssize_t)last);
        return -1;
    }
    return 0;
}

/* a's dtype is the kernel's type code (-1: float64 for the auxiliary arrays). */
static int check_dtype(PyArrayObject *a, const char *name, int code)
{
    int ok = code < 0 ? PyArray_TYPE(a) == NPY_DOUBLE && PyArray_ISNOTSWAPPED(a)
                      : type_code(a) == code;
    if (!ok) {
        PyErr_Format(PyExc_TypeError, "%s must be %s in native byte order, got %R", name,
                     code < 0 ? "float64" : type_names[code], (PyObject *)PyArray_DESCR(a));
        return -1;
    }
    return 0;
}

static int check_writeable(PyArrayObject *a, const char *name)
{
    if (!PyArray_ISWRITEABLE(a)) {
        PyErr_Format(PyExc_ValueError, "%s is read-only", name);
        return -1;
    }
    return 0;
}

/* x and out are read and written by typed loads and stores in places. */
static int check_aligned(PyArrayObject *a, const char *name)
{
    if (!PyArray_ISALIGNED(a)) {
        PyErr_Format(PyExc_ValueError, "%s is not aligned for its dtype", name);
        return -1;
    }
    return 0;
}

/* Whether every entry of a float64 array is >= 0 (NaN excluded). */
static int all_non_negative(PyArrayObject *a)
{
    int nd = PyArray_NDIM(a);
    const npy_intp *dims = PyArray_DIMS(a), *strides = PyArray_STRIDES(a);
    npy_intp index[NPY_MAXDIMS] = {0}, n = PyArray_SIZE(a);
    const char *p = PyArray_BYTES(a);
    for (npy_intp i = 0; i < n; i++) {
        double v;
        memcpy(&v, p, sizeof v);
        if (!(v >= 0.0))
            return 0;
        for (int d = nd - 1; d >= 0; d--) {
            if (++index[d] < dims[d]) {
                p += strides[d];
                break;
            }
            p -= strides[d] * (dims[d] - 1);
            index[d] = 0;
        }
    }
    return 1;
}

/* run(op, x, in_type, out, out_type, where, temperature_array, temperature, lse,
 *     n_threads[, gain[, blocks, block_size]]) -> bool
 * All arrays have the reduced axis last and x's outer shape; the results are written
 * into out or lse. out: x's shape, type out_type; where: bool, x's shape; the
 * temperature array: float64, length 1 along the last axis, entries >= 0; lse (for
 * logsumexp): type out_type with length 1 there. softmax may also take lse as float64
 * with length 2 there, which receives each row's (max, log-normalizer), and gain,
 * float64 with length 1 there, which multiplies each row of the result; logsumexp may
 * take lse so, and blocks, float64 with one entry per block of block_size entries,
 * which receives the sums of exp by blocks. Bad arguments raise TypeError or
 * ValueError. Returns False, without computing anything, when out overlaps x without
 * being x; the caller then computes aside. */
static PyObject *run_arrays(int op, PyArrayObject *x, int in_type, PyArrayObject *out,
                            int out_type, PyArrayObject *mask, PyArrayObject *t, double t_value,
                            PyArrayObject *lse, int n_threads, PyArrayObject *gain,
                            PyArrayObject *blocks, Py_ssize_t block_size);

static PyObject *smk_run(PyObject *self, PyObject *args)
{
    PyObject *op_obj, *x_obj, *in_obj, *out_obj, *out_type_obj, *mask_obj, *t_obj, *lse_obj;
    PyObject *threads_obj, *gain_obj = Py_None, *blocks_obj = Py_None, *size_obj = NULL;
    double t_value;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOOOdOO|OOO:run", &op_obj, &x_obj, &in_obj, &out_obj,
                          &out_type_obj, &mask_obj, &t_obj, &t_value, &lse_obj, &threads_obj,
                          &gain_obj, &blocks_obj, &size_obj))
        return NULL;
    long op, in_type, out_type, n_threads, block_size = 0;
    if (int_argument(op_obj, "op", 0, 2, &op) ||
        int_argument(in_obj, "in_type", 0, 3, &in_type) ||
        int_argument(out_type_obj, "out_type", 0, 3, &out_type) ||
        int_argument(threads_obj, "n_threads", 1, SMK_MAX_THREADS, &n_threads))
        return NULL;
    if (!PyArray_Check(x_obj)) {
        PyErr_Format(PyExc_TypeError, "x must be an ndarray, got %.100s",
                     Py_TYPE(x_obj)->tp_name);
        return NULL;
    }
    PyArrayObject *x = (PyArrayObject *)x_obj, *out, *mask, *t, *lse, *gain, *blocks;
    int nd = PyArray_NDIM(x);
    if (nd < 1 || nd > SMK_MAX_DIMS + 1) {
        PyErr_Format(PyExc_ValueError, "x must have 1 to %d dimensions, got %d",
                     SMK_MAX_DIMS + 1, nd);
        return NULL;
    }
    if (check_dtype(x, "x", (int)in_type) || check_aligned(x, "x"))
        return NULL;
    if (!(t_value >= 0.0)) {
        PyErr_Format(PyExc_ValueError, "temperature must be >= 0, got %R",
                     PyTuple_GET_ITEM(args, 7));
        return NULL;
    }
    if (array_argument(out_obj, "out", nd, &out) ||
        array_argument(mask_obj, "where", nd, &mask) ||
        array_argument(t_obj, "temperature", nd, &t) ||
        array_argument(lse_obj, "lse", nd, &lse) || array_argument(gain_obj, "gain", nd, &gain) ||
        array_argument(blocks_obj, "blocks", nd, &blocks))
        return NULL;
    /* What each operation writes, and the arrays it may take. */
    int stats = lse && PyArray_DIMS(lse)[nd - 1] == 2;
    int takes = op == SMK_LOGSUMEXP ? lse && !out && !gain
                                    : out && !blocks && (!lse || (stats && op == SMK_SOFTMAX)) &&
                                          (!gain || op == SMK_SOFTMAX);
    if (!takes) {
        PyErr_SetString(PyExc_ValueError,
                        op == SMK_LOGSUMEXP
                            ? "logsumexp takes lse and no out or gain"
                            : "softmax and log_softmax take out and no blocks; lse (row "
                              "statistics, float64 pairs) and gain: softmax only");
        return NULL;
    }
    if (out && (check_shape(out, "out", x, -1) || check_dtype(out, "out", (int)out_type) ||
                check_writeable(out, "out") || check_aligned(out, "out")))
        return NULL;
    if (mask && check_shape(mask, "where", x, -1))
        return NULL;
    if (mask && PyArray_TYPE(mask) != NPY_BOOL) {
        PyErr_Format(PyExc_TypeError, "where must be bool, got %R",
                     (PyObject *)PyArray_DESCR(mask));
        return NULL;
    }
    if (t && (check_shape(t, "temperature", x, 1) || check_dtype(t, "temperature", -1)))
        return NULL;
    if (t && !all_non_negative(t)) {
        PyErr_SetString(PyExc_ValueError, "the temperatures must be >= 0");
        return NULL;
    }
    if (lse && (check_shape(lse, "lse", x, stats ? 2 : 1) ||
                check_dtype(lse, "lse", stats ? -1 : (int)out_type) ||
                check_writeable(lse, "lse")))
        return NULL;
    /* The kernel tells the pairs from a typed lse by their stride (job.l_es). */
    if (stats && PyArray_STRIDES(lse)[nd - 1] == 0) {
        PyErr_SetString(PyExc_ValueError, "lse pairs must not share their memory");
        return NULL;
    }
    if (gain && (check_shape(gain, "gain", x, 1) || check_dtype(gain, "gain", -1)))
        return NULL;
    if (blocks) {
        npy_intp len = PyArray_DIMS(x)[nd - 1];
        if (!size_obj) {
            PyErr_SetString(PyExc_TypeError, "blocks needs block_size");
            return NULL;
        }
        if (int_argument(size_obj, "block_size", 1, LONG_MAX, &block_size) ||
            check_shape(blocks, "blocks", x, len / block_size + (len % block_size != 0)) ||
            check_dtype(blocks, "blocks", -1) || check_writeable(blocks, "blocks"))
            return NULL;
    }
    return run_arrays((int)op, x, (int)in_type, out, (int)out_type, mask, t, t_value, lse,
                      (int)n_threads, gain, blocks, (Py_ssize_t)block_size);
}

/* The strides of an array argument, or NULL. */
/* Chooses the row or column mode of a filled-in job (the reduced axis last, any
 * strides) and runs it; 0, or -1 when memory ran out. Called without the GIL. */
static int choose_mode_and_run(smk_job *job, int n_threads)
{
    /* Column mode: the rows, not the entries of a row, are adjacent in memory. */
    if (!job->bsum && job->ndim >= 1 && job->xs[job->ndim - 1] == job->in_size &&
        job->x_es != job->in_size &&
        job->shape[job->ndim - 1] > 1 && job->len <= SMK_BLOCK_MAX_LEN)
        /* Whole cache lines of each row per step: two for the 16-lane paths of float64
         * and float32 (32 columns), one otherwise; the scratch of a block stays in L2
         * or close to it. */
        job->block = job->in_type == SMK_F64 && !job->m &&
                            (job->op == SMK_LOGSUMEXP || job->out_type == SMK_F64) ? SMK_BLOCK
                    : job->in_size == 8                                 ? 8
                    : job->in_type == SMK_F32 && !job->m &&
                            (job->op == SMK_LOGSUMEXP || job->out_type == SMK_F32) ? SMK_BLOCK_F32
                                                                         : SMK_BLOCK;
    /* Many adjacent float32 or float64 rows, one scalar temperature: the streaming
     * column mode. */
    int lanes_block = (job->in_type == SMK_F32 && job->block == SMK_BLOCK_F32) ||
                      (job->in_type == SMK_F64 && job->block == SMK_BLOCK && !job->m &&
                       (job->op == SMK_LOGSUMEXP || job->out_type == SMK_F64));
    if (lanes_block && job->shape[job->ndim - 1] >= 256 && !job->t && !job->g && !job->l_es &&
        job->t_value > 0x1p-900 && job->t_value < 0x1p900 &&
        (job->op == SMK_LOGSUMEXP ||
         (job->os[job->ndim - 1] == job->in_size && job->o_es % job->in_size == 0))) {
        ptrdiff_t inner = job->shape[job->ndim - 1], threads = n_threads < 1 ? 1 : n_threads;
        ptrdiff_t per = ((inner + threads - 1) / threads + 63) & ~(ptrdiff_t)63;
        job->block = (int)(per < SMK_STREAM_ROWS ? per : SMK_STREAM_ROWS);
        job->stream = 1;
    }
    return run_job(job, n_threads < 1 ? 1 : n_threads);
}

static npy_intp *strides_of(PyArrayObject *a, char **data)
{
    *data = a ? PyArray_BYTES(a) : NULL;
    return a ? PyArray_STRIDES(a) : NULL;
}

static PyObject *run_arrays(int op, PyArrayObject *x, int in_type, PyArrayObject *out,
                            int out_type, PyArrayObject *mask, PyArrayObject *t, double t_value,
                            PyArrayObject *lse, int n_threads, PyArrayObject *gain,
                            PyArrayObject *blocks, Py_ssize_t block_size)
{
    int nd = PyArray_NDIM(x);
    smk_job job;
    memset(&job, 0, sizeof job);
    job.op = op;
    job.in_type = in_type;
    job.out_type = out_type;
    job.lse_type = out_type;
    job.in_size = type_size(in_type);
    job.out_size = type_size(out_type);
    job.compensate = in_type == SMK_F64;
    job.ndim = nd - 1;
    job.t_value = t_value;
    npy_intp *dims = PyArray_DIMS(x), *xs = PyArray_STRIDES(x);
    npy_intp *os = strides_of(out, &job.o), *ms = strides_of(mask, &job.m),
             *ts = strides_of(t, &job.t), *ls = strides_of(lse, &job.l),
             *gs = strides_of(gain, &job.g), *bs = strides_of(blocks, &job.bsum);
    /* lse as (max, log-normalizer) pairs: float64 with length 2 along the last axis. */
    if (lse && PyArray_DIMS(lse)[nd - 1] == 2)
        job.l_es = ls[nd - 1];
    if (blocks) {
        job.b_es = bs[nd - 1];
        job.bsize = block_size;
    }
    if (out && !out_is_usable(x, out))
        Py_RETURN_FALSE;
    job.x = PyArray_BYTES(x);
    job.len = dims[nd - 1];
    job.x_es = xs[nd - 1];
    job.o_es = job.o ? os[nd - 1] : 0;
    job.m_es = job.m ? ms[nd - 1] : 0;
    job.n_rows = 1;
    for (int d = 0; d < nd - 1; d++) {
        job.shape[d] = dims[d];
        job.n_rows *= dims[d];
        job.xs[d] = xs[d];
        job.os[d] = job.o ? os[d] : 0;
        job.ms[d] = job.m ? ms[d] : 0;
        job.ts[d] = job.t ? ts[d] : 0;
        job.ls[d] = job.l ? ls[d] : 0;
        job.gs[d] = job.g ? gs[d] : 0;
        job.bs[d] = job.bsum ? bs[d] : 0;
    }
    if (job.n_rows == 0 || job.len == 0)
        Py_RETURN_TRUE;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = choose_mode_and_run(&job, n_threads);
    Py_END_ALLOW_THREADS
    if (status) {
        PyErr_NoMemory();
        return NULL;
    }
    __atomic_fetch_add(&kernel_runs, 1, __ATOMIC_RELAXED);
    Py_RETURN_TRUE;
}

/* op along the middle axis of a dense row-major (outer, len, inner) array x of the
 * given type, into out: x's shape for softmax and log_softmax, (outer, inner) for
 * logsumexp, of x's type; mask (bool, x's shape) or NULL; a scalar temperature. For
 * the XLA foreign functions of jax_ffi.cc, which call it without the GIL. Returns 0,
 * or -1 when memory ran out. */
int smk_run_dense(int op, int type, const void *x, void *out, const unsigned char *mask,
                  ptrdiff_t outer, ptrdiff_t len, ptrdiff_t inner, double t_value,
                  int n_threads)
{
    smk_job job;
    memset(&job, 0, sizeof job);
    ptrdiff_t size = type_size(type);
    job.op = op;
    job.in_type = job.out_type = job.lse_type = type;
    job.in_size = job.out_size = (int)size;
    job.compensate = type == SMK_F64;
    job.t_value = t_value;
    job.x = (char *)x;
    job.m = (char *)mask;
    job.len = len;
    job.x_es = inner * size;
    job.m_es = mask ? inner : 0;
    /* The outer dimensions: (outer, inner), the reduced axis moved last by strides. */
    job.ndim = inner == 1 ? 1 : 2;
    job.shape[0] = outer;
    job.xs[0] = len * inner * size;
    job.ms[0] = mask ? len * inner : 0;
    if (job.ndim == 2) {
        job.shape[1] = inner;
        job.xs[1] = size;
        job.ms[1] = mask ? 1 : 0;
    }
    job.n_rows = outer * inner;
    if (op == SMK_LOGSUMEXP) {
        job.l = (char *)out;
        job.ls[0] = inner * size;
        job.ls[1] = size;
    } else {
        job.o = (char *)out;
        job.o_es = job.x_es;
        job.os[0] = job.xs[0];
        job.os[1] = job.xs[1];
    }
    if (job.n_rows == 0 || len == 0)
        return 0;
    if (n_threads > SMK_MAX_THREADS)
        n_threads = SMK_MAX_THREADS;
    if (choose_mode_and_run(&job, n_threads))
        return -1;
    __atomic_fetch_add(&kernel_runs, 1, __ATOMIC_RELAXED);
    return 0;
}

/* The number of threads in softmaxkit._threads._setting, or 1. */
static int threads_wanted(void)
{
    if (!thread_setting)
        return 1;
    long n = PyLong_AsLong(PyList_GET_ITEM(thread_setting, 0));
    if (n < 1) {
        PyErr_Clear();
        return 1;
    }
    return n > SMK_MAX_THREADS ? SMK_MAX_THREADS : (int)n;
}

/* Whether t is a Python float or int >= 0 (NaN excluded), and its value. */
static int scalar_temperature(PyObject *t, double *value)
{
    if (PyFloat_CheckExact(t)) {
        *value = PyFloat_AS_DOUBLE(t);
    } else if (PyLong_CheckExact(t)) {
        *value = PyLong_AsDouble(t);
        if (*value == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
    } else {
        return 0;
    }
    return *value >= 0.0;
}

/* Whether x (an ndarray), axis (an int) and the temperature make the common call of
 * the fast entries: a float dtype in native byte order, aligned, at most
 * SMK_MAX_DIMS + 1 dimensions, at least one entry, the last axis, a scalar temperature
 * >= 0; with x's type code and the temperature. */
static int common_call(PyArrayObject *x, PyObject *axis_obj, PyObject *t_obj, int *code,
                       double *t_value)
{
    int nd = PyArray_NDIM(x), overflow;
    *code = code_of(x);
    if (*code < 0 || nd < 1 || nd > SMK_MAX_DIMS + 1 || PyArray_SIZE(x) == 0 ||
        !PyArray_ISALIGNED(x))
        return 0;
    long axis = PyLong_AsLongAndOverflow(axis_obj, &overflow);
    if (overflow || (axis != -1 && axis != nd - 1))
        return 0;
    return scalar_temperature(t_obj, t_value);
}

/* Whether out can take the fast entry's result for x of type code: x's shape and
 * dtype, writeable, aligned. Otherwise the Python dispatch checks it (and raises, with
 * the same exceptions as the generic path: ValueError for a wrong shape). */
static int out_takes(PyArrayObject *x, PyArrayObject *out, int code)
{
    int nd = PyArray_NDIM(x);
    if (PyArray_NDIM(out) != nd || code_of(out) != code || !PyArray_ISWRITEABLE(out) ||
        !PyArray_ISALIGNED(out))
        return 0;
    for (int d = 0; d < nd; d++)
        if (PyArray_DIMS(x)[d] != PyArray_DIMS(out)[d])
            return 0;
    return 1;
}

/* normalize(op, x, axis, temperature, where, dtype, out) -> array or NotImplemented
 *
 * softmax (op 0) or log_softmax (op 1) of the common call, checked and run without a
 * Python frame (small inputs are dominated by the dispatch): x exactly an ndarray of
 * float16/32/64 in native byte order, the last axis given as an int, a temperature
 * that is a Python float or int >= 0, no where, no dtype, out None or an ndarray that
 * can take the result (out_takes). Anything else returns NotImplemented, and the
 * Python dispatch takes it from there (it raises the errors). */
static PyObject *smk_normalize(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "normalize takes 7 arguments");
        return NULL;
    }
    PyObject *x_obj = args[1], *axis_obj = args[2], *t_obj = args[3], *out_obj = args[6];
    if (forced_generic || !PyArray_CheckExact(x_obj) || args[4] != Py_None ||
        args[5] != Py_None || !PyLong_CheckExact(axis_obj) ||
        (out_obj != Py_None && !PyArray_CheckExact(out_obj)))
        Py_RETURN_NOTIMPLEMENTED;
    long op = PyLong_AsLong(args[0]);
    if (op != SMK_SOFTMAX && op != SMK_LOG_SOFTMAX) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "op must be 0 (softmax) or 1 (log_softmax)");
        return NULL;
    }
    PyArrayObject *x = (PyArrayObject *)x_obj;
    int code;
    double t_value;
    if (!common_call(x, axis_obj, t_obj, &code, &t_value) ||
        (out_obj != Py_None && !out_takes(x, (PyArrayObject *)out_obj, code)))
        Py_RETURN_NOTIMPLEMENTED;
    int n_threads = threads_wanted();
    PyObject *target = out_obj;
    if (target == Py_None) {
        target = PyArray_NewLikeArray(x, NPY_KEEPORDER, NULL, 0);
        if (!target)
            return NULL;
    } else {
        Py_INCREF(target);
    }
    PyObject *done = run_arrays((int)op, x, code, (PyArrayObject *)target, code, NULL, NULL,
                                t_value, NULL, n_threads, NULL, NULL, 0);
    if (done != Py_True) {
        Py_DECREF(target);
        if (done == Py_False) {
            Py_DECREF(done);
            Py_RETURN_NOTIMPLEMENTED; /* out overlaps x: the Python dispatch copies */
        }
        return done;
    }
    Py_DECREF(done);
    return target;
}

/* reduce(x, axis, temperature, where, dtype, keepdims, out) -> array or NotImplemented
 *
 * logsumexp of the common call, as normalize does for softmax: x exactly a float
 * ndarray, the last axis, a scalar temperature >= 0, no where, no dtype, no out (b and
 * return_sign are the caller's to exclude). */
static PyObject *smk_reduce(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "reduce takes 7 arguments");
        return NULL;
    }
    PyObject *x_obj = args[0], *axis_obj = args[1], *t_obj = args[2];
    if (forced_generic || !PyArray_CheckExact(x_obj) || args[3] != Py_None ||
        args[4] != Py_None || args[6] != Py_None || !PyLong_CheckExact(axis_obj))
        Py_RETURN_NOTIMPLEMENTED;
    int keepdims = PyObject_IsTrue(args[5]);
    if (keepdims < 0)
        return NULL;
    PyArrayObject *x = (PyArrayObject *)x_obj;
    int nd = PyArray_NDIM(x), code;
    double t_value;
    if (!common_call(x, axis_obj, t_obj, &code, &t_value))
        Py_RETURN_NOTIMPLEMENTED;
    npy_intp dims[SMK_MAX_DIMS + 1];
    memcpy(dims, PyArray_DIMS(x), (size_t)nd * sizeof(npy_intp));
    dims[nd - 1] = 1;
    PyObject *kept = PyArray_SimpleNew(nd, dims, PyArray_TYPE(x));
    if (!kept)
        return NULL;
    PyObject *done = run_arrays(SMK_LOGSUMEXP, x, code, NULL, code, NULL, NULL, t_value,
                                (PyArrayObject *)kept, threads_wanted(), NULL, NULL, 0);
    if (!done) {
        Py_DECREF(kept);
        return NULL;
    }
    Py_DECREF(done);
    if (keepdims)
        return kept;
    PyArray_Dims shape = {dims, nd - 1};
    PyObject *result = PyArray_Newshape((PyArrayObject *)kept, &shape, NPY_CORDER);
    Py_DECREF(kept);
    return result;
}

static PyObject *smk_streamed_blocks(PyObject *self, PyObject *args)
{
    (void)self;
    (void)args;
    return PyLong_FromLongLong(__atomic_load_n(&smk_streamed_blocks_count, __ATOMIC_RELAXED));
}

static PyObject *smk_runs(PyObject *self, PyObject *args)
{
    (void)self;
    (void)args;
    return PyLong_FromUnsignedLongLong(kernel_runs);
}

static PyObject *smk_set_generic(PyObject *self, PyObject *arg)
{
    (void)self;
    int flag = PyObject_IsTrue(arg);
    if (flag < 0)
        return NULL;
    forced_generic = flag;
    Py_RETURN_NONE;
}

static PyObject *smk_set_thread_setting(PyObject *self, PyObject *arg)
{
    (void)self;
    if (!PyList_CheckExact(arg) || PyList_GET_SIZE(arg) != 1) {
        PyErr_SetString(PyExc_TypeError, "the thread setting is a list of one int");
        return NULL;
    }
    Py_INCREF(arg);
    Py_XSETREF(thread_setting, arg);
    Py_RETURN_NONE;
}

static PyObject *smk_share_openmp(PyObject *self, PyObject *arg)
{
    (void)self;
    PyObject *bytes = NULL;
    if (!PyUnicode_FSConverter(arg, &bytes))
        return NULL;
    int attached;
    Py_BEGIN_ALLOW_THREADS /* it waits for a call that holds the pool */
    attached = smk_openmp_attach(PyBytes_AS_STRING(bytes));
    Py_END_ALLOW_THREADS
    Py_DECREF(bytes);
    return PyBool_FromLong(attached);
}

static PyObject *smk_threads_on(PyObject *self, PyObject *args)
{
    (void)self;
    (void)args;
    return Py_BuildValue("sK", smk_openmp_attached() ? "openmp" : "pool",
                         smk_openmp_team_runs());
}

static PyObject *smk_simd(PyObject *self, PyObject *args)
{
    (void)self;
    (void)args;
    return PyUnicode_FromString(impl_name);
}

/* The variants, best last; simd_impls[i] is NULL where the build lacks variant i. */
enum { SIMD_BASELINE = 0, SIMD_AVX2 = 1, SIMD_AVX512 = 2, SIMD_COUNT = 3 };
static const char *const simd_names[SIMD_COUNT] = {"baseline", "avx2", "avx512"};
static const smk_impl *const simd_impls[SIMD_COUNT] = {
    &smk_impl_baseline,
#if defined(SMK_HAVE_AVX2)
    &smk_impl_avx2,
#else
    NULL,
#endif
#if defined(SMK_HAVE_AVX512)
    &smk_impl_avx512,
#else
    NULL,
#endif
};

/* The variant to run for the value of SOFTMAXKIT_SIMD (NULL, empty or "auto": the best
 * one that is built and that the CPU supports; "avx512", "avx2" or "baseline": that one
 * where it is usable, else the best usable one below it) and the CPU's support. An
 * unknown value, or one that cannot be honoured, writes a message (else message is
 * ""): the caller warns, and runs the variant returned. */
static int simd_choose(const char *request, int have_avx2, int have_avx512, char *message,
                       size_t size)
{
    int usable[SIMD_COUNT] = {1, have_avx2 && simd_impls[SIMD_AVX2] != NULL,
                              have_avx2 && have_avx512 && simd_impls[SIMD_AVX512] != NULL};
    int best = SIMD_BASELINE;
    for (int i = 0; i < SIMD_COUNT; i++)
        if (usable[i])
            best = i;
    message[0] = '\0';
    if (request == NULL || request[0] == '\0' || strcmp(request, "auto") == 0)
        return best;
    int wanted = -1;
    for (int i = 0; i < SIMD_COUNT; i++)
        if (strcmp(request, simd_names[i]) == 0)
            wanted = i;
    if (wanted < 0) {
        snprintf(message, size,
                 "SOFTMAXKIT_SIMD=%.40s is not one of avx512, avx2, baseline, auto; "
                 "using %s", request, simd_names[best]);
        return best;
    }
    int chosen = wanted;
    while (!usable[chosen])
        chosen--;
    if (chosen != wanted)
        snprintf(message, size,
                 "SOFTMAXKIT_SIMD=%s: %s; using %s", simd_names[wanted],
                 simd_impls[wanted] == NULL ? "this build of softmaxkit does not have it"
                                            : "this CPU does not support it",
                 simd_names[chosen]);
    return chosen;
}

/* simd_choice(request, have_avx2, have_avx512) -> (name, message): the choice that the
 * import makes, for the tests of CPUs other than this one. */
static PyObject *smk_simd_choice(PyObject *self, PyObject *args)
{
    (void)self;
    const char *request;
    int have_avx2, have_avx512;
    if (!PyArg_ParseTuple(args, "zpp", &request, &have_avx2, &have_avx512))
        return NULL;
    char message[256];
    int choice = simd_choose(request, have_avx2, have_avx512, message, sizeof message);
    return Py_BuildValue("(ss)", simd_names[choice], message);
}

/* The variants of this build, best first (a CPU may support fewer). */
static PyObject *smk_simd_built(PyObject *self, PyObject *args)
{
    (void)self;
    (void)args;
    PyObject *names = PyList_New(0);
    for (int i = SIMD_COUNT - 1; names && i >= 0; i--) {
        if (simd_impls[i] == NULL)
            continue;
        PyObject *name = PyUnicode_FromString(simd_names[i]);
        if (name == NULL || PyList_Append(names, name) < 0) {
            Py_XDECREF(name);
            Py_CLEAR(names);
            break;
        }
        Py_DECREF(name);
    }
    return names;
}

static PyObject *smk_cpu_count(PyObject *self, PyObject *args)
{
    (void)self;
    (void)args;
    long n = 0;
#if defined(__linux__) && defined(CPU_COUNT)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        n = CPU_COUNT(&set);
#endif
    if (n <= 0)
        n = sysconf(_SC_NPROCESSORS_ONLN);
    return PyLong_FromLong(n > 0 ? n : 1);
}

#if defined(SMK_HAVE_JAX_FFI)
struct XLA_FFI_Error;
struct XLA_FFI_CallFrame;
extern struct XLA_FFI_Error *smk_xla_normalize(struct XLA_FFI_CallFrame *);
extern struct XLA_FFI_Error *smk_xla_normalize_masked(struct XLA_FFI_CallFrame *);
#endif

/* jax_handlers() -> {name: capsule} of the XLA foreign functions (jax_ffi.cc), empty
 * where they were not built (no jaxlib headers at build time). */
static PyObject *smk_jax_handlers(PyObject *self, PyObject *args)
{
    (void)self;
    (void)args;
    PyObject *handlers = PyDict_New();
#if defined(SMK_HAVE_JAX_FFI)
    struct {
        const char *name;
        void *fn;
    } table[] = {
        {"normalize", (void *)smk_xla_normalize},
        {"normalize_masked", (void *)smk_xla_normalize_masked},
    };
    for (size_t i = 0; handlers && i < sizeof table / sizeof table[0]; i++) {
        PyObject *capsule = PyCapsule_New(table[i].fn, NULL, NULL);
        if (!capsule || PyDict_SetItemString(handlers, table[i].name, capsule) < 0) {
            Py_XDECREF(capsule);
            Py_CLEAR(handlers);
            break;
        }
        Py_DECREF(capsule);
    }
#endif
    return handlers;
}

static PyMethodDef methods[] = {
    {"run", smk_run, METH_VARARGS, "Run a kernel (internal)."},
    {"normalize", (PyCFunction)(void (*)(void))smk_normalize, METH_FASTCALL,
     "softmax or log_softmax of the common call, or NotImplemented (internal)."},
    {"reduce", (PyCFunction)(void (*)(void))smk_reduce, METH_FASTCALL,
     "logsumexp of the common call, or NotImplemented (internal)."},
    {"streamed_blocks", smk_streamed_blocks, METH_NOARGS,
     "How many blocks the streaming column mode took (tests)."},
    {"runs", smk_runs, METH_NOARGS, "How many kernel runs completed."},
    {"softcap", smk_softcap_entry, METH_VARARGS,
     "The soft cap of float32 logits, or its derivative (internal)."},
    {"plain_cross_entropy", smk_plain_cross_entropy_entry, METH_VARARGS,
     "cross_entropy of the plain call with class indices, or NotImplemented (internal)."},
    {"set_generic", smk_set_generic, METH_O, "Whether the fast entries decline (tests)."},
    {"set_thread_setting", smk_set_thread_setting, METH_O,
     "The list [n] holding the number of threads to use."},
    {"share_openmp", smk_share_openmp, METH_O,
     "Run the parallel calls on the team of the loaded OpenMP runtime at this path."},
    {"threads_on", smk_threads_on, METH_NOARGS,
     "(road, runs): parallel calls run on 'openmp' (a shared OpenMP team) or the 'pool'; "
     "how many ran on the team."},
    {"simd", smk_simd, METH_NOARGS,
     "The instruction set in use: 'avx512', 'avx2' or 'baseline'."},
    {"simd_choice", smk_simd_choice, METH_VARARGS,
     "The variant and warning for (SOFTMAXKIT_SIMD, has AVX2+FMA, has AVX-512) (tests)."},
    {"simd_built", smk_simd_built, METH_NOARGS, "The variants of this build, best first."},
    {"cpu_count", smk_cpu_count, METH_NOARGS, "CPUs this process may run on."},
    {"jax_handlers", smk_jax_handlers, METH_NOARGS,
     "The XLA foreign functions, {name: capsule}; empty where not built (internal)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_kernel", "The compiled kernels of softmaxkit (internal).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__kernel(void)
{
    import_array();
    int have_avx2 = 0, have_avx512 = 0;
#if defined(SMK_HAVE_AVX2)
    __builtin_cpu_init();
    have_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#if defined(SMK_HAVE_AVX512)
    have_avx512 = have_avx2 && __builtin_cpu_supports("avx512f") &&
                  __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
                  __builtin_cpu_supports("avx512vl");
#endif
#endif
    char message[256];
    int choice = simd_choose(getenv("SOFTMAXKIT_SIMD"), have_avx2, have_avx512, message,
                             sizeof message);
    smk_active = simd_impls[choice];
    impl_name = simd_names[choice];
    /* A value that could not be honoured is said, not silently replaced: the kernels
     * still run (on the variant named in the warning, which simd() returns). */
    if (message[0] && PyErr_WarnEx(PyExc_RuntimeWarning, message, 1) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    /* The most dimensions of x, and of threads per call (softmaxkit._threads caps the
     * setting at the latter). */
    if (m && (PyModule_AddIntConstant(m, "MAX_NDIM", SMK_MAX_DIMS + 1) ||
              PyModule_AddIntConstant(m, "MAX_THREADS", SMK_MAX_THREADS))) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
