/* The Python entry of cross_entropy's plain call (softmaxkit.losses._plain_index):
 * class-index targets, no weight, temperature, mask, z_loss or softcap; label
 * smoothing on float32 logits.
 *
 * Small batches are the common case of a loss, and for them the Python around one
 * kernel run (checking the targets, picking each row's target logit, the gradient's
 * target entries, the reduction) cost several times the run itself. This entry does
 * all of it in one call: one scan of the targets, one run of the kernel (softmax times
 * each row's gain into the gradient, and each row's maximum m and log-normalizer s),
 * and one pass over the rows: loss (m - x_t) + s, gradient entry
 * gain * expm1(-loss) at the target (p_t - 1 without cancellation), and a compensated
 * sum of the losses. Label smoothing eps adds (eps / k) sum_c (m - x_c) + eps s to the
 * loss (each gap exact in float64 for float32 logits, all of one sign) and takes
 * eps / k off every gradient entry. These are the operations of the fused block of
 * losses/_numpy_blocks.py in the same order; only the sums differ (compensated here,
 * pairwise there; both within a few units of the last place). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernel.h"
#include "kernel_entry.h"
#include "kernel_internal.h"

enum { PLAIN_MEAN = 0, PLAIN_SUM = 1, PLAIN_NONE = 2 };

/* The target's index at row r of a 1-D int8/16/32/64 buffer. */
static long long target_at(const Py_buffer *t, Py_ssize_t r)
{
    const char *p = (const char *)t->buf + r * t->strides[0];
    switch (t->itemsize) {
    case 1: return *(const int8_t *)p;
    case 2: return *(const int16_t *)p;
    case 4: return *(const int32_t *)p;
    default: return *(const int64_t *)p;
    }
}

/* Whether a buffer's format is a native signed integer of its item size. */
static int signed_integer_format(const Py_buffer *t)
{
    const char *f = t->format;
    if (f == NULL)
        return 0;
    if (f[0] == '@' || f[0] == '=')
        f++;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    else if (f[0] == '<')
        f++;
#endif
    if (f[0] == '\0' || f[1] != '\0')
        return 0;
    switch (f[0]) {
    case 'b': return t->itemsize == 1;
    case 'h': return t->itemsize == 2;
    case 'i': case 'l': case 'q': return t->itemsize == 4 || t->itemsize == 8;
    default: return 0;
    }
}

/* bfloat16 (its bits) to float, and a double to bfloat16 rounded once to nearest even
 * (outside the normal range: rounded to odd in float32 first, 24 bits, two more than
 * enough, then to 8 bits). */
static inline float bf16_value(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static uint16_t bf16_of_slowly(double d)
{
    float f = (float)d;
    if ((double)f != d && isfinite(f)) {
        if (fabs((double)f) > fabs(d))
            f = nextafterf(f, 0.0f);
        uint32_t odd;
        memcpy(&odd, &f, sizeof odd);
        odd |= 1u;
        memcpy(&f, &odd, sizeof f);
    }
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    if ((bits & 0x7f800000u) == 0x7f800000u)
        return (uint16_t)(bits >> 16); /* inf keeps its bits */
    return (uint16_t)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

static inline uint16_t bf16_of(double d)
{
    double size = fabs(d);
    if (!(size >= 0x1p-126 && size <= 0x1.fefffffffffffp+127))
        return bf16_of_slowly(d); /* 0, subnormal, near the top, not finite */
    /* The normal range: the double's 52 fraction bits rounded to bfloat16's 7 (to
     * nearest even, in the integer bits), then exactly a float. */
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    u += 0xfffffffffffull + ((u >> 45) & 1u);
    u &= ~((1ull << 45) - 1u);
    double rounded;
    memcpy(&rounded, &u, sizeof rounded);
    float f = (float)rounded;
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    return (uint16_t)(bits >> 16);
}

/* Entry c of a row of the type, as a double; and a double stored into it (rounded). */
static inline double load_at(const char *row, int type, Py_ssize_t c)
{
    if (type == SMK_F64)
        return ((const double *)row)[c];
    if (type == SMK_BF16)
        return (double)bf16_value(((const uint16_t *)row)[c]);
    return (double)((const float *)row)[c];
}

static inline void store_at(char *row, int type, Py_ssize_t c, double v)
{
    if (type == SMK_F64)
        ((double *)row)[c] = v;
    else if (type == SMK_BF16)
        ((uint16_t *)row)[c] = bf16_of(v);
    else
        ((float *)row)[c] = (float)v;
}

/* A 2-D buffer of x's type: float32 and float64 by smk_matrix_buffer; bfloat16 as any
 * buffer of 2-byte items (its bits: an int16 view), each row contiguous, aligned. */
static int typed_matrix(PyObject *obj, const char *name, int type, int writable,
                        Py_buffer *view)
{
    if (type != SMK_BF16)
        return smk_matrix_buffer(obj, name, type == SMK_F64 ? 'd' : 'f', writable, view);
    int flags = PyBUF_STRIDES | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0)
        return -1;
    if (view->itemsize != 2 || view->ndim != 2 ||
        (view->shape[1] > 1 && view->strides[1] != 2) || view->strides[0] % 2 ||
        (uintptr_t)view->buf % 2) {
        PyErr_Format(PyExc_ValueError,
                     "%s must be 2-D, of 2-byte items, aligned, with contiguous rows", name);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* Runs the kernel: stats (pairs per row), and with out the softmax times gain. */
static int run_stats(const Py_buffer *x, int type, Py_buffer *out, const double *gain,
                     double *stats, int n_threads)
{
    smk_job job;
    memset(&job, 0, sizeof job);
    int size = type == SMK_F64 ? 8 : type == SMK_BF16 ? 2 : 4;
    job.op = out ? SMK_SOFTMAX : SMK_LOGSUMEXP;
    job.in_type = job.out_type = job.lse_type = type;
    job.in_size = job.out_size = size;
    job.compensate = type == SMK_F64;
    job.ndim = 1;
    job.shape[0] = x->shape[0];
    job.n_rows = x->shape[0];
    job.len = x->shape[1];
    job.x = (char *)x->buf;
    job.xs[0] = x->strides[0];
    job.x_es = size;
    job.l = (char *)stats;
    job.ls[0] = 2 * sizeof(double);
    job.l_es = sizeof(double);
    job.t_value = 1.0;
    if (out) {
        job.o = (char *)out->buf;
        job.os[0] = out->strides[0];
        job.o_es = size;
        job.g = (char *)gain;
        job.gs[0] = sizeof(double);
    }
    return run_job(&job, n_threads < 1 ? 1 : n_threads);
}

/* Each gap m - x_c of a float32 row, summed in float64 (exact terms of one sign; eight
 * accumulators); inf where an entry is -inf (fewer classes take part). */
static double summed_gaps(const char *row, int type, Py_ssize_t n, double top)
{
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    Py_ssize_t c = 0;
    if (type == SMK_BF16) {
        const uint16_t *h = (const uint16_t *)row;
        for (; c + 8 <= n; c += 8)
            for (int j = 0; j < 8; j++)
                acc[j] += top - (double)bf16_value(h[c + j]);
    } else {
        const float *f = (const float *)row;
        for (; c + 8 <= n; c += 8)
            for (int j = 0; j < 8; j++)
                acc[j] += top - (double)f[c + j];
    }
    for (; c < n; c++)
        acc[0] += top - load_at(row, type, c);
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* The smoothing pass over rows [t0, t1): each active row's spread (eps / k) sum of its
 * gaps, and eps / k times the gain off each of its gradient entries. */
typedef struct {
    smk_job base; /* zeroed: what the pool reads of a work item's job (its scratch) */
    const Py_buffer *x, *t;
    Py_buffer *out;    /* or NULL */
    long long ignore_index;
    const double *stats;
    double *spread;
    double share, off; /* eps / k, and scale * eps / k */
    int type;          /* SMK_F32 or SMK_BF16 */
} smooth_job;

static void smooth_rows(const smooth_job *j, ptrdiff_t r0, ptrdiff_t r1)
{
    Py_ssize_t n = j->x->shape[1];
    for (ptrdiff_t r = r0; r < r1; r++) {
        if (target_at(j->t, r) == j->ignore_index)
            continue;
        const char *row = (const char *)j->x->buf + r * j->x->strides[0];
        j->spread[r] = summed_gaps(row, j->type, n, j->stats[2 * r]) * j->share;
        if (!j->out)
            continue;
        char *grad_row = (char *)j->out->buf + r * j->out->strides[0];
        if (j->type == SMK_BF16) {
            /* Rounded to float32, then to bfloat16 (to nearest even both times; the
             * entries are finite): a loop without branches. */
            uint16_t *h = (uint16_t *)grad_row;
            for (Py_ssize_t c = 0; c < n; c++) {
                float f = (float)((double)bf16_value(h[c]) - j->off);
                uint32_t bits;
                memcpy(&bits, &f, sizeof bits);
                h[c] = (uint16_t)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
            }
        } else {
            float *f = (float *)grad_row;
            for (Py_ssize_t c = 0; c < n; c++)
                f[c] = (float)((double)f[c] - j->off);
        }
    }
}

static void smooth_work(smk_work *w, double *buf)
{
    (void)buf;
    smooth_rows((const smooth_job *)(const void *)w->job, w->t0, w->t1);
}

/* The smoothing pass on up to n_threads threads; -1 when a scratch buffer could not be
 * allocated. Called without the GIL. */
static int run_smoothing(const smooth_job *job, int n_threads)
{
    ptrdiff_t n_rows = job->x->shape[0];
    n_threads = smk_useful_threads(n_rows * job->x->shape[1], n_threads);
    if (n_threads > n_rows)
        n_threads = (int)n_rows;
    if (n_threads <= 1) {
        unsigned fp = ieee_subnormals_begin();
        smooth_rows(job, 0, n_rows);
        ieee_subnormals_end(fp);
        return 0;
    }
    smk_work work[SMK_MAX_THREADS];
    for (int i = 0; i < n_threads; i++) {
        memset(&work[i], 0, sizeof work[i]);
        work[i].fn = smooth_work;
        work[i].job = &job->base;
        work[i].t0 = n_rows * i / n_threads;
        work[i].t1 = n_rows * (i + 1) / n_threads;
    }
    int pooled = pool_acquire(n_threads);
    int status = run_parallel(work, n_threads, pooled);
    if (pooled)
        pool_release();
    return status;
}

/* plain_cross_entropy(x, target, ignore_index, reduction, out, row_loss, n_threads,
 *                     smoothing=0.0, type=-1) -> float or NotImplemented
 *
 * x: (rows, classes), float32 or float64, each row contiguous, aligned, rows >= 1 and
 * classes >= 1; target: 1-D signed integers, one per row; reduction 0 (mean), 1 (sum)
 * or 2 (none); out: None or a writeable array of x's shape and dtype, each row
 * contiguous, overlapping nothing, which receives the gradient of the loss (of its sum
 * for "none"); row_loss: None or, for "none", a writeable contiguous float64 array of
 * one loss per row. Returns the mean or the sum of the losses in float64 (0.0 for
 * "none"), or NotImplemented, having written nothing that counts, where a target that
 * is not ignore_index is out of range or a row is not finite (a NaN, a +inf, every
 * entry -inf; with smoothing, any entry -inf): the general path then computes the
 * call, and names the bad target. smoothing: in [0, 1], above 0 for float32 and
 * bfloat16 x only. type: -1 (float32 or float64 by the item size) or 3, bfloat16 x and
 * out given as their bits (int16 views). */
PyObject *smk_plain_cross_entropy_entry(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *x_obj, *t_obj, *out_obj, *loss_obj;
    long long ignore_index;
    int reduction, n_threads;
    double smoothing = 0.0;
    int type = -1;
    if (!PyArg_ParseTuple(args, "OOLiOOi|di:plain_cross_entropy", &x_obj, &t_obj,
                          &ignore_index, &reduction, &out_obj, &loss_obj, &n_threads,
                          &smoothing, &type))
        return NULL;
    if (type != -1 && type != SMK_BF16) {
        PyErr_Format(PyExc_ValueError, "type must be -1 or 3 (bfloat16), got %d", type);
        return NULL;
    }
    if (!(smoothing >= 0.0 && smoothing <= 1.0)) {
        PyErr_Format(PyExc_ValueError, "smoothing must be in [0, 1], got %g", smoothing);
        return NULL;
    }
    if (reduction < PLAIN_MEAN || reduction > PLAIN_NONE) {
        PyErr_Format(PyExc_ValueError, "reduction must be 0, 1 or 2, got %d", reduction);
        return NULL;
    }
    if ((reduction == PLAIN_NONE) != (loss_obj != Py_None)) {
        PyErr_SetString(PyExc_ValueError, "row_loss is needed by reduction 2 and taken by no other");
        return NULL;
    }
    Py_buffer x, t, out, loss;
    int have_out = 0, have_loss = 0;
    PyObject *result = NULL;
    double *gain = NULL, *stats = NULL, *spread = NULL;
    if (type == -1) {
        Py_buffer probe;
        if (PyObject_GetBuffer(x_obj, &probe, PyBUF_STRIDES | PyBUF_FORMAT) < 0)
            return NULL;
        type = probe.itemsize == 8 ? SMK_F64 : SMK_F32;
        PyBuffer_Release(&probe);
    }
    if (typed_matrix(x_obj, "x", type, 0, &x))
        return NULL;
    if (smoothing > 0.0 && type == SMK_F64) {
        PyBuffer_Release(&x);
        PyErr_SetString(PyExc_ValueError, "smoothing is taken with float32 or bfloat16 x only");
        return NULL;
    }
    if (PyObject_GetBuffer(t_obj, &t, PyBUF_STRIDES | PyBUF_FORMAT) < 0) {
        PyBuffer_Release(&x);
        return NULL;
    }
    Py_ssize_t n_rows = x.shape[0], n_classes = x.shape[1];
    if (t.ndim != 1 || t.shape[0] != n_rows || !signed_integer_format(&t) ||
        t.strides[0] % t.itemsize || (uintptr_t)t.buf % (uintptr_t)t.itemsize) {
        PyErr_SetString(PyExc_ValueError,
                        "target must be 1-D aligned signed integers, one per row of x");
        goto done;
    }
    if (n_rows < 1 || n_classes < 1) {
        PyErr_SetString(PyExc_ValueError, "x must have rows and classes");
        goto done;
    }
    if (out_obj != Py_None) {
        if (typed_matrix(out_obj, "out", type, 1, &out))
            goto done;
        have_out = 1;
        if (out.shape[0] != n_rows || out.shape[1] != n_classes) {
            PyErr_SetString(PyExc_ValueError, "out must have the shape of x");
            goto done;
        }
    }
    if (loss_obj != Py_None) {
        if (PyObject_GetBuffer(loss_obj, &loss, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT |
                                                    PyBUF_WRITABLE) < 0)
            goto done;
        have_loss = 1;
        if (loss.ndim != 1 || loss.shape[0] != n_rows || loss.itemsize != 8 ||
            !loss.format || strcmp(loss.format, "d") != 0) {
            PyErr_SetString(PyExc_ValueError, "row_loss must be float64, one per row of x");
            goto done;
        }
    }
    /* The targets: every one in range or ignored; how many take part. */
    Py_ssize_t count = 0;
    for (Py_ssize_t r = 0; r < n_rows; r++) {
        long long c = target_at(&t, r);
        if (c == ignore_index)
            continue;
        if (c < 0 || c >= n_classes) {
            result = Py_NewRef(Py_NotImplemented);
            goto done;
        }
        count++;
    }
    double scale = reduction != PLAIN_MEAN ? 1.0 : count == 0 ? 0.0 : 1.0 / (double)count;
    stats = malloc(2 * (size_t)n_rows * sizeof(double));
    if (have_out)
        gain = malloc((size_t)n_rows * sizeof(double));
    if (!stats || (have_out && !gain)) {
        PyErr_NoMemory();
        goto done;
    }
    if (have_out)
        for (Py_ssize_t r = 0; r < n_rows; r++)
            gain[r] = target_at(&t, r) != ignore_index ? scale : 0.0;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = run_stats(&x, type, have_out ? &out : NULL, gain, stats, n_threads);
    Py_END_ALLOW_THREADS
    if (status) {
        PyErr_NoMemory();
        goto done;
    }
    if (smoothing > 0.0) {
        /* Rows not finite are handed back below: their gradient rows do not count. */
        smooth_job sj;
        memset(&sj, 0, sizeof sj);
        sj.x = &x;
        sj.t = &t;
        sj.out = have_out ? &out : NULL;
        sj.ignore_index = ignore_index;
        sj.stats = stats;
        sj.share = smoothing / (double)n_classes;
        sj.off = scale * sj.share;
        sj.type = type;
        sj.spread = spread = malloc((size_t)n_rows * sizeof(double));
        if (!spread) {
            PyErr_NoMemory();
            goto done;
        }
        Py_BEGIN_ALLOW_THREADS
        status = run_smoothing(&sj, n_threads);
        Py_END_ALLOW_THREADS
        if (status) {
            PyErr_NoMemory();
            goto done;
        }
    }
    /* The losses, their compensated sum (Neumaier) and the gradient's target entries. */
    double sum = 0.0, carry = 0.0;
    double *row_loss = have_loss ? (double *)loss.buf : NULL;
    double share = smoothing / (double)n_classes;
    for (Py_ssize_t r = 0; r < n_rows; r++) {
        double s = stats[2 * r + 1];
        if (isnan(s)) {
            result = Py_NewRef(Py_NotImplemented);
            goto done;
        }
        long long c = target_at(&t, r);
        double value = 0.0;
        if (c != ignore_index) {
            const char *row = (const char *)x.buf + r * x.strides[0];
            double logit = load_at(row, type, c);
            double shifted = stats[2 * r] - logit;
            value = shifted + s;
            double entry = expm1(-value);
            if (smoothing > 0.0) {
                /* q = (1 - eps) onehot + eps / k; the entries of the gradient row have
                 * eps / k times the gain off already (smooth_rows). */
                if (isinf(spread[r])) {
                    result = Py_NewRef(Py_NotImplemented);
                    goto done;
                }
                double kept = 1.0 - smoothing;
                value = (kept == 0.0 && isinf(value) ? 0.0 : kept * value) +
                        (spread[r] + smoothing * s);
                entry += smoothing - share;
            }
            if (have_out) {
                store_at((char *)out.buf + r * out.strides[0], type, c, scale * entry);
            }
        }
        if (row_loss)
            row_loss[r] = value;
        double next = sum + value;
        carry += fabs(sum) >= fabs(value) ? (sum - next) + value : (value - next) + sum;
        sum = next;
    }
    sum += isfinite(sum) ? carry : 0.0;
    if (reduction == PLAIN_MEAN)
        sum = count == 0 ? 0.0 : sum / (double)count;
    result = PyFloat_FromDouble(reduction == PLAIN_NONE ? 0.0 : sum);
done:
    free(spread);
    free(stats);
    free(gain);
    PyBuffer_Release(&x);
    PyBuffer_Release(&t);
    if (have_out)
        PyBuffer_Release(&out);
    if (have_loss)
        PyBuffer_Release(&loss);
    return result;
}
